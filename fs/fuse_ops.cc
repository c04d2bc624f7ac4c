#include "fs/fuse_ops.h"

#include <spdlog/spdlog.h>

#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "fs/filesystem.h"

namespace chainswap {

namespace {

// userdata is a ChainswapFs** (the daemon opens the filesystem after
// daemonizing, so the session is made before the object exists).
ChainswapFs& Fs(fuse_req_t req) { return **static_cast<ChainswapFs**>(fuse_req_userdata(req)); }

// Runs a Do* body; an exception never crosses into libfuse (ENOMEM/EIO).
template <typename F>
int Guard(const char* op, F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    spdlog::error("{}: out of memory", op);
    return ENOMEM;
  } catch (const std::exception& e) {
    spdlog::error("{}: unexpected exception: {}", op, e.what());
    return EIO;
  }
}

void ReplyEntryOrErr(fuse_req_t req, int err, const fuse_entry_param& e) {
  if (err) fuse_reply_err(req, err);
  else fuse_reply_entry(req, &e);
}

void Init(void* /*userdata*/, fuse_conn_info* conn) {
  // Large requests: one 1 MiB write costs far less than 256 small ones.
  conn->max_write = 1u << 20;
  conn->max_read = 0;
  conn->max_readahead = 1u << 20;
  // Write-through page cache: the daemon owns size and mtime (no writeback cache).
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  spdlog::debug("FUSE init: proto {}.{}, max_write {}", conn->proto_major, conn->proto_minor, conn->max_write);
}

void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_entry_param e;
  int err = Guard("lookup", [&] { return Fs(req).DoLookup(parent, name, &e); });
  ReplyEntryOrErr(req, err, e);
}

void Forget(fuse_req_t req, fuse_ino_t, uint64_t) { fuse_reply_none(req); }

void ForgetMulti(fuse_req_t req, size_t, fuse_forget_data*) { fuse_reply_none(req); }

void Getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  struct stat st;
  int err = Guard("getattr", [&] { return Fs(req).DoGetattr(ino, &st); });
  if (err) fuse_reply_err(req, err);
  else fuse_reply_attr(req, &st, ChainswapFs::kAttrTimeout);
}

void Setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  struct stat out;
  int err = Guard("setattr", [&] { return Fs(req).DoSetattr(ino, *attr, to_set, &out); });
  if (err) fuse_reply_err(req, err);
  else fuse_reply_attr(req, &out, ChainswapFs::kAttrTimeout);
}

void Mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  fuse_entry_param e;
  int err = Guard("mkdir", [&] {
    return Fs(req).DoMkdir(parent, name, mode & ~ctx->umask, ctx->uid, ctx->gid, &e);
  });
  ReplyEntryOrErr(req, err, e);
}

void Mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  fuse_entry_param e;
  int err = Guard("mknod", [&] {
    return Fs(req).DoCreate(parent, name, mode & ~ctx->umask, ctx->uid, ctx->gid, &e);
  });
  ReplyEntryOrErr(req, err, e);
}

void Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  fuse_entry_param e;
  int err = Guard("create", [&] {
    int r = Fs(req).DoCreate(parent, name, S_IFREG | (mode & 07777 & ~ctx->umask), ctx->uid, ctx->gid, &e);
    return r ? r : Fs(req).DoOpen(e.ino, fi->flags);
  });
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  if (fi->flags & O_DIRECT) fi->direct_io = 1;
  fuse_reply_create(req, &e, fi);
}

void Symlink(fuse_req_t req, const char*, fuse_ino_t, const char*) { fuse_reply_err(req, EPERM); }

void Link(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) { fuse_reply_err(req, EPERM); }

void Rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, Guard("rmdir", [&] { return Fs(req).DoRmdir(parent, name); }));
}

void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, Guard("unlink", [&] { return Fs(req).DoUnlink(parent, name); }));
}

void Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
            const char* newname, unsigned flags) {
  fuse_reply_err(req, Guard("rename", [&] {
                   return Fs(req).DoRename(parent, name, newparent, newname, flags);
                 }));
}

void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  int err = Guard("open", [&] { return Fs(req).DoOpen(ino, fi->flags); });
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  // O_DIRECT opens (QEMU cache=none) bypass the page cache; others use it
  // write-through, so shared writable mmap works.
  if (fi->flags & O_DIRECT) fi->direct_io = 1;
  fuse_reply_open(req, fi);
}

void Release(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  fuse_reply_err(req, Guard("release", [&] { return Fs(req).DoRelease(ino); }));
}

void Flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  // Not zero-filled: the engine writes every byte it reports.
  std::unique_ptr<uint8_t[]> buf(new uint8_t[std::max<size_t>(size, 1)]);
  size_t got = 0;
  int err = Guard("read", [&] { return Fs(req).DoRead(ino, static_cast<uint64_t>(off), size, buf.get(), &got); });
  if (err) fuse_reply_err(req, err);
  else fuse_reply_buf(req, reinterpret_cast<const char*>(buf.get()), got);
}

void Write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off, fuse_file_info*) {
  int err = Guard("write", [&] { return Fs(req).DoWrite(ino, static_cast<uint64_t>(off), buf, size); });
  if (err) fuse_reply_err(req, err);
  else fuse_reply_write(req, size);
}

void Fsync(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info*) {
  fuse_reply_err(req, Guard("fsync", [&] { return Fs(req).DoFsync(ino); }));
}

void Fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len, fuse_file_info*) {
  fuse_reply_err(req, Guard("fallocate", [&] { return Fs(req).DoFallocate(ino, mode, off, len); }));
}

void Opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto entries = std::make_unique<std::vector<DirEntry>>();
  int err = Guard("opendir", [&] { return Fs(req).DoReaddir(ino, entries.get()); });
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = reinterpret_cast<uint64_t>(entries.release());
  fuse_reply_open(req, fi);
}

void Readdir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  auto* entries = reinterpret_cast<std::vector<DirEntry>*>(fi->fh);
  std::vector<char> buf(size);
  size_t used = 0;
  for (size_t i = static_cast<size_t>(off); i < entries->size(); ++i) {
    const DirEntry& d = (*entries)[i];
    struct stat st {};
    st.st_ino = d.ino;
    st.st_mode = d.type;
    size_t n = fuse_add_direntry(req, buf.data() + used, size - used, d.name.c_str(), &st,
                                 static_cast<off_t>(i + 1));
    if (n > size - used) break;
    used += n;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void Releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete reinterpret_cast<std::vector<DirEntry>*>(fi->fh);
  fuse_reply_err(req, 0);
}

void Statfs(fuse_req_t req, fuse_ino_t) {
  struct statvfs st;
  int err = Guard("statfs", [&] { return Fs(req).DoStatfs(&st); });
  if (err) fuse_reply_err(req, err);
  else fuse_reply_statfs(req, &st);
}

void Getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  std::string value;
  int err = Guard("getxattr", [&] { return Fs(req).DoGetxattr(ino, name, &value); });
  if (err) fuse_reply_err(req, err);
  else if (size == 0) fuse_reply_xattr(req, value.size());
  else if (value.size() > size) fuse_reply_err(req, ERANGE);
  else fuse_reply_buf(req, value.data(), value.size());
}

void Listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  std::string names;
  int err = Guard("listxattr", [&] { return Fs(req).DoListxattr(ino, &names); });
  if (err) fuse_reply_err(req, err);
  else if (size == 0) fuse_reply_xattr(req, names.size());
  else if (names.size() > size) fuse_reply_err(req, ERANGE);
  else fuse_reply_buf(req, names.data(), names.size());
}

void Setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int) {
  // Only the migration control xattrs (fs/migration.h); anything else is
  // EOPNOTSUPP, never ENOSYS: the kernel would disable xattrs.
  const uid_t uid = fuse_req_ctx(req)->uid;
  int err = Guard("setxattr",
                  [&] { return Fs(req).DoSetxattr(ino, name, std::string(value, size), uid); });
  fuse_reply_err(req, err);
}

void Removexattr(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, EOPNOTSUPP); }

void Lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info*) {
  off_t out = 0;
  int err = Guard("lseek", [&] { return Fs(req).DoLseek(ino, off, whence, &out); });
  if (err) fuse_reply_err(req, err);
  else fuse_reply_lseek(req, out);
}

void CopyFileRange(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info*, fuse_ino_t ino_out,
                   off_t off_out, fuse_file_info*, size_t len, int flags) {
  if (flags != 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  size_t copied = 0;
  int err = Guard("copy_file_range", [&] {
    return Fs(req).DoCopyFileRange(ino_in, static_cast<uint64_t>(off_in), ino_out, static_cast<uint64_t>(off_out),
                                   len, &copied);
  });
  if (err) fuse_reply_err(req, err);
  else fuse_reply_write(req, copied);
}

}  // namespace

void AssignOperations(fuse_lowlevel_ops& ops) {
  std::memset(&ops, 0, sizeof(ops));
  ops.init = Init;
  ops.lookup = Lookup;
  ops.forget = Forget;
  ops.forget_multi = ForgetMulti;
  ops.getattr = Getattr;
  ops.setattr = Setattr;
  ops.mkdir = Mkdir;
  ops.mknod = Mknod;
  ops.create = Create;
  ops.symlink = Symlink;
  ops.link = Link;
  ops.rmdir = Rmdir;
  ops.unlink = Unlink;
  ops.rename = Rename;
  ops.open = Open;
  ops.release = Release;
  ops.flush = Flush;
  ops.read = Read;
  ops.write = Write;
  ops.fsync = Fsync;
  ops.fallocate = Fallocate;
  ops.opendir = Opendir;
  ops.readdir = Readdir;
  ops.releasedir = Releasedir;
  ops.statfs = Statfs;
  ops.getxattr = Getxattr;
  ops.listxattr = Listxattr;
  ops.setxattr = Setxattr;
  ops.removexattr = Removexattr;
  ops.lseek = Lseek;
  ops.copy_file_range = CopyFileRange;
}

}  // namespace chainswap
