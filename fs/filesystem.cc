#include "fs/filesystem.h"

#include "fs/migration.h"

#include <linux/falloc.h>
#include <spdlog/spdlog.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <ctime>
#include <mutex>
#include <optional>

namespace chainswap {

namespace {

int64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

struct timespec ToTimespec(int64_t ns) {
  struct timespec ts;
  ts.tv_sec = ns / 1000000000;
  ts.tv_nsec = ns % 1000000000;
  return ts;
}

int64_t FromTimespec(const struct timespec& ts) { return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec; }

bool ValidName(const std::string& n) { return !n.empty() && n.size() <= 255 && n.find('/') == std::string::npos; }

constexpr const char* kXattrPrefix = "user.chainswap.";
constexpr const char* kXattrNames[] = {"dedup_id", "files", "logical_bytes", "nonzero_bytes",
                                       "stored_bytes", "saved_bytes", "dedup_ratio", "blocks",
                                       "compressed_blocks", "compress_ratio"};
constexpr const char* kDestagePrefix = "destage.";
constexpr const char* kDestageNames[] = {"w_bucket", "x_bucket", "queue_slots", "delete_slots",
                                         "journal_bytes", "journal_limit", "buckets", "pending_records",
                                         "staged_write_blocks", "writes_absorbed", "ops_destaged",
                                         "ops_per_sec", "blocks_stored", "blocks_deduped", "blocks_freed",
                                         "enospc", "store_usage", "error"};

// Value of one destage figure, or nullopt for an unknown name.
std::optional<std::string> DestageValue(const PublishedStats& p, const std::string& key) {
  const EngineStats& s = p.engine;
  auto num = [](auto v) { return std::to_string(v); };
  if (key == "w_bucket") return num(s.w_bucket);
  if (key == "x_bucket") return num(s.x_bucket);
  if (key == "queue_slots") return num(s.n);
  if (key == "delete_slots") return num(s.d);
  if (key == "journal_bytes") return num(s.journal_bytes);
  if (key == "journal_limit") return num(s.journal_limit);
  if (key == "buckets") return num(s.buckets);
  if (key == "pending_records") return num(s.pending_records);
  if (key == "staged_write_blocks") return num(s.staged_write_blocks);
  if (key == "writes_absorbed") return num(s.writes_absorbed);
  if (key == "ops_destaged") return num(s.ops_destaged);
  if (key == "blocks_stored") return num(s.blocks_stored);
  if (key == "blocks_deduped") return num(s.blocks_deduped);
  if (key == "blocks_freed") return num(s.blocks_freed);
  if (key == "enospc") return num(s.enospc);
  // A sticky error (destage stopped by an I/O error of the backing store,
  // or a failed journal fdatasync), or "none".
  if (key == "error") return s.error.empty() ? std::string("none") : s.error;
  char buf[32];
  if (key == "ops_per_sec") {
    std::snprintf(buf, sizeof buf, "%.1f", p.ops_per_sec);
    return std::string(buf);
  }
  if (key == "store_usage") {
    std::snprintf(buf, sizeof buf, "%.4f", s.store_usage);
    return std::string(buf);
  }
  return std::nullopt;
}

// The io locks of a copy_file_range: the destination's exclusively, the
// source's shared (one lock when they are the same file), in file ID order
// so that two opposite copies cannot deadlock. The analysis cannot follow
// the conditional order; io guards no annotated field.
class CopyLocks {
 public:
  CopyLocks(FileNode& src, FileNode& dst) NO_THREAD_SAFETY_ANALYSIS : src_(src), dst_(dst) {
    if (&src_ == &dst_) {
      dst_.io.Lock();
    } else if (src_.file_id < dst_.file_id) {
      src_.io.LockShared();
      dst_.io.Lock();
    } else {
      dst_.io.Lock();
      src_.io.LockShared();
    }
  }
  ~CopyLocks() NO_THREAD_SAFETY_ANALYSIS {
    dst_.io.Unlock();
    if (&src_ != &dst_) src_.io.UnlockShared();
  }
  CopyLocks(const CopyLocks&) = delete;
  CopyLocks& operator=(const CopyLocks&) = delete;

 private:
  FileNode& src_;
  FileNode& dst_;
};

}  // namespace

int ToErrno(const Status& st, const char* op) {
  if (st.ok()) return 0;
  switch (st.code()) {
    case ENOSPC:
    case EDQUOT:
      spdlog::warn("{}: {}", op, st.ToString());
      break;
    case EIO:
    case EUCLEAN:
      spdlog::error("{}: {}", op, st.ToString());
      return EIO;
    default:
      spdlog::debug("{}: {}", op, st.ToString());
  }
  return st.code();
}

ChainswapFs::ChainswapFs(BackingDir& backing, Engine& engine)
    : backing_(backing), catalog_(backing.catalog()), engine_(engine) {}

Status ChainswapFs::Load(const std::map<int64_t, ReplayedMeta>& replayed) {
  auto chains = catalog_.ListChains();
  if (!chains.ok()) return chains.status();
  auto files = catalog_.ListFiles();
  if (!files.ok()) return files.status();
  for (auto& f : *files) {
    if (auto it = replayed.find(f.file_id); it != replayed.end()) {
      f.size = it->second.size;
      f.mtime_ns = it->second.mtime_ns;
    }
  }
  std::vector<std::shared_ptr<FileNode>> orphans = ns_.Load(*chains, *files);
  spdlog::info("loaded {} chain(s) and {} swap file(s)", chains->size(), files->size() - orphans.size());
  for (auto& n : orphans) {
    spdlog::info("reclaiming blocks of unlinked swap file {}", n->file_id);
    MaybeReclaim(n);
  }
  return Status::Ok();
}

void ChainswapFs::FillRootAttr(struct stat* st) {
  std::memset(st, 0, sizeof(*st));
  st->st_ino = kRootIno;
  st->st_mode = S_IFDIR | 0755;
  st->st_nlink = 2 + ns_.chain_count();
  st->st_size = 4096;
  st->st_blksize = kBlockSize;
}

void ChainswapFs::FillChainAttr(const ChainInfo& c, struct stat* st) {
  std::memset(st, 0, sizeof(*st));
  st->st_ino = ChainIno(c.dedup_id);
  st->st_mode = S_IFDIR | (c.mode & 07777);
  st->st_nlink = 2;
  st->st_uid = c.uid;
  st->st_gid = c.gid;
  st->st_size = 4096;
  st->st_blksize = kBlockSize;
  st->st_mtim = st->st_atim = ToTimespec(c.mtime_ns);
  st->st_ctim = ToTimespec(c.ctime_ns);
}

void ChainswapFs::FillFileAttr(const FileInfo& f, uint64_t mapped_blocks, struct stat* st) {
  std::memset(st, 0, sizeof(*st));
  st->st_ino = FileIno(f.file_id);
  st->st_mode = S_IFREG | (f.mode & 07777);
  st->st_nlink = f.unlinked ? 0 : 1;
  st->st_uid = f.uid;
  st->st_gid = f.gid;
  st->st_size = static_cast<off_t>(f.size);
  st->st_blksize = kBlockSize;
  const uint64_t max_blocks = (f.size + kBlockSize - 1) / kBlockSize;
  st->st_blocks = static_cast<blkcnt_t>(std::min(mapped_blocks, max_blocks) * (kBlockSize / 512));
  st->st_atim = ToTimespec(f.atime_ns);
  st->st_mtim = ToTimespec(f.mtime_ns);
  st->st_ctim = ToTimespec(f.ctime_ns);
}

uint64_t ChainswapFs::MappedBlocks(int64_t file_id) {
  // Exact before destage too: the catalog's mapping outside the LBAs that
  // staged ops cover, plus the staged writes that hold data. With very
  // scattered staged ops (more ranges than are worth a query each), an upper
  // bound instead (FillFileAttr clips it to the size).
  constexpr size_t kMaxExactRanges = 256;
  if (auto fp = engine_.StagedFootprint(file_id, kMaxExactRanges)) {
    auto c = catalog_.MappedBlocksWithin(file_id, fp->covered);
    if (c.ok()) return c->total - std::min(c->total, c->within) + fp->data_blocks;
  }
  auto r = catalog_.MappedBlocks(file_id);
  return (r.ok() ? *r : 0) + engine_.StagedWriteBlocks(file_id);
}

int ChainswapFs::DoLookup(fuse_ino_t parent, const std::string& name, fuse_entry_param* e) {
  std::memset(e, 0, sizeof(*e));
  e->attr_timeout = e->entry_timeout = kAttrTimeout;
  if (parent == kRootIno) {
    auto c = ns_.ChainNamed(name);
    if (!c) return ENOENT;
    FillChainAttr(*c, &e->attr);
    e->ino = e->attr.st_ino;
    return 0;
  }
  if (!IsChainIno(parent)) return ENOTDIR;
  auto file = ns_.FileIn(DedupIdOf(parent), name);
  if (!file.ok()) return ENOENT;
  const uint64_t mapped = MappedBlocks((*file)->file_id);
  FillFileAttr((*file)->Info(), mapped, &e->attr);
  e->ino = e->attr.st_ino;
  return 0;
}

int ChainswapFs::DoGetattr(fuse_ino_t ino, struct stat* st) {
  if (ino == kRootIno) {
    FillRootAttr(st);
    return 0;
  }
  if (IsChainIno(ino)) {
    auto c = ns_.Chain(DedupIdOf(ino));
    if (!c) return ENOENT;
    FillChainAttr(*c, st);
    return 0;
  }
  std::shared_ptr<FileNode> f = ns_.File(FileIdOf(ino));
  if (!f) return ENOENT;
  const uint64_t mapped = MappedBlocks(f->file_id);
  FillFileAttr(f->Info(), mapped, st);
  return 0;
}

int ChainswapFs::DoSetattr(fuse_ino_t ino, const struct stat& attr, int to_set, struct stat* out) {
  const int64_t now = NowNs();
  auto set_time = [&](int flag_now, int flag_set, const struct timespec& ts, int64_t* field) {
    if (to_set & flag_now) *field = now;
    else if (to_set & flag_set) *field = FromTimespec(ts);
  };
  if (ino == kRootIno) return EPERM;
  if (IsChainIno(ino)) {
    if (to_set & FUSE_SET_ATTR_SIZE) return EISDIR;
    MutexLock change(&ns_.change_mu);
    auto c = ns_.Chain(DedupIdOf(ino));
    if (!c) return ENOENT;
    ChainInfo info = *c;
    if (to_set & FUSE_SET_ATTR_MODE) info.mode = attr.st_mode & 07777;
    if (to_set & FUSE_SET_ATTR_UID) info.uid = attr.st_uid;
    if (to_set & FUSE_SET_ATTR_GID) info.gid = attr.st_gid;
    set_time(FUSE_SET_ATTR_MTIME_NOW, FUSE_SET_ATTR_MTIME, attr.st_mtim, &info.mtime_ns);
    info.ctime_ns = now;
    if (int e = ToErrno(catalog_.UpdateChain(info), "setattr")) return e;
    ns_.UpdateChain(info);
    FillChainAttr(info, out);
    return 0;
  }
  std::shared_ptr<FileNode> f = ns_.File(FileIdOf(ino));
  if (!f) return ENOENT;
  WriterLock io(&f->io);
  FileInfo info = f->Info();
  if (to_set & FUSE_SET_ATTR_MODE) info.mode = attr.st_mode & kFileModeBits;
  if (to_set & FUSE_SET_ATTR_UID) info.uid = attr.st_uid;
  if (to_set & FUSE_SET_ATTR_GID) info.gid = attr.st_gid;
  set_time(FUSE_SET_ATTR_ATIME_NOW, FUSE_SET_ATTR_ATIME, attr.st_atim, &info.atime_ns);
  set_time(FUSE_SET_ATTR_MTIME_NOW, FUSE_SET_ATTR_MTIME, attr.st_mtim, &info.mtime_ns);
  info.ctime_ns = now;
  if (to_set & FUSE_SET_ATTR_SIZE) {
    if (attr.st_size < 0) return EINVAL;
    uint64_t new_size = static_cast<uint64_t>(attr.st_size);
    if (!(to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW))) info.mtime_ns = now;
    FileMetaUpdate meta{info.file_id, new_size, info.mtime_ns, info.ctime_ns};
    if (int e = ToErrno(ResizeLocked(*f, info.size, meta), "truncate")) return e;
    info.size = new_size;
  }
  if (int e = ToErrno(catalog_.UpdateFile(info), "setattr")) return e;
  const uint64_t mapped = MappedBlocks(info.file_id);
  {
    MutexLock fl(&f->mu);
    info.name = f->info.name;          // a concurrent rename may have changed these
    info.unlinked = f->info.unlinked;
    f->info = info;
  }
  FillFileAttr(info, mapped, out);
  return 0;
}

int ChainswapFs::DoMkdir(fuse_ino_t parent, const std::string& name, mode_t mode, uid_t uid,
                         gid_t gid, fuse_entry_param* e) {
  if (parent != kRootIno) return EPERM;  // chains hold swap files only
  if (!ValidName(name)) return EINVAL;
  MutexLock change(&ns_.change_mu);
  if (ns_.ChainNamed(name)) return EEXIST;
  auto c = catalog_.CreateChain(name, mode & 07777, uid, gid, NowNs());
  if (!c.ok()) return ToErrno(c.status(), "mkdir");
  ns_.AddChain(*c);
  spdlog::info("created chain '{}' with dedup ID {}", name, c->dedup_id);
  std::memset(e, 0, sizeof(*e));
  e->attr_timeout = e->entry_timeout = kAttrTimeout;
  FillChainAttr(*c, &e->attr);
  e->ino = e->attr.st_ino;
  return 0;
}

int ChainswapFs::DoRmdir(fuse_ino_t parent, const std::string& name) {
  if (parent != kRootIno) {
    if (!IsChainIno(parent)) return ENOTDIR;
    if (!ns_.Chain(DedupIdOf(parent))) return ENOENT;
    return ns_.FileIn(DedupIdOf(parent), name).ok() ? ENOTDIR : ENOENT;
  }
  MutexLock change(&ns_.change_mu);
  auto c = ns_.ChainNamed(name);
  if (!c) return ENOENT;
  // As on ext4, unlinked files (still open, or still being reclaimed) do not
  // keep a directory from going: the catalog keeps the chain's row and seed,
  // nameless, until the last of them is reclaimed.
  if (ns_.ChainHasFiles(c->dedup_id)) return ENOTEMPTY;
  auto dropped = catalog_.RemoveChain(c->dedup_id);
  if (int e = ToErrno(dropped.status(), "rmdir")) return e;
  ns_.RemoveChain(c->dedup_id);
  spdlog::info("removed chain '{}' (dedup ID {}){}", name, c->dedup_id,
               *dropped ? "" : "; its row stays until its unlinked files are reclaimed");
  return 0;
}

int ChainswapFs::DoCreate(fuse_ino_t parent, const std::string& name, mode_t mode, uid_t uid,
                          gid_t gid, fuse_entry_param* e) {
  if (parent == kRootIno) return EPERM;  // the root holds chain directories only
  if (!IsChainIno(parent)) return ENOTDIR;
  if (!S_ISREG(mode)) return EPERM;      // swap files are regular files
  if (!ValidName(name)) return EINVAL;
  const int64_t dedup_id = DedupIdOf(parent);
  MutexLock change(&ns_.change_mu);
  if (!ns_.Chain(dedup_id)) return ENOENT;
  if (ns_.FileIn(dedup_id, name).ok()) return EEXIST;
  auto f = catalog_.CreateFile(dedup_id, name, mode & kFileModeBits, uid, gid, NowNs());
  if (!f.ok()) return ToErrno(f.status(), "create");
  auto node = std::make_shared<FileNode>(*f);
  ns_.AddFile(node);
  std::memset(e, 0, sizeof(*e));
  e->attr_timeout = e->entry_timeout = kAttrTimeout;
  FillFileAttr(*f, 0, &e->attr);
  e->ino = e->attr.st_ino;
  return 0;
}

int ChainswapFs::DoUnlink(fuse_ino_t parent, const std::string& name) {
  if (parent == kRootIno) return ns_.ChainNamed(name) ? EISDIR : ENOENT;
  if (!IsChainIno(parent)) return ENOTDIR;
  std::shared_ptr<FileNode> node;
  {
    MutexLock change(&ns_.change_mu);
    auto found = ns_.FileIn(DedupIdOf(parent), name);
    if (!found.ok()) return ENOENT;
    node = *found;
    FileInfo unlinked = node->Info();
    unlinked.unlinked = true;
    if (int e = ToErrno(catalog_.UpdateFile(unlinked), "unlink")) return e;
    ns_.Detach(node, NowNs());
  }
  MaybeReclaim(node);
  return 0;
}

void ChainswapFs::MaybeReclaim(const std::shared_ptr<FileNode>& node) {
  if (!ns_.StartReclaim(node)) return;
  FileRef ref{node->file_id, node->dedup_id};
  Status st;
  {
    // Queued to the delete destager: returns at once, space comes back in
    // the background.
    WriterLock io(&node->io);
    st = engine_.Reclaim(ref, node->Size());
  }
  if (!st.ok()) {
    spdlog::error("reclaim of swap file {} failed: {}; retried at next mount", ref.file_id, st.ToString());
    MutexLock fl(&node->mu);
    node->reclaiming = false;
    return;
  }
  ns_.Forget(ref.file_id);
}

int ChainswapFs::DoRename(fuse_ino_t parent, const std::string& name, fuse_ino_t newparent,
                          const std::string& newname, unsigned flags) {
  if (flags & ~static_cast<unsigned>(RENAME_NOREPLACE)) return EINVAL;  // no EXCHANGE/WHITEOUT
  if (!ValidName(newname)) return EINVAL;
  if (parent == kRootIno || newparent == kRootIno) {
    if (parent != newparent) return EPERM;  // chains stay at the root, files in chains
    MutexLock change(&ns_.change_mu);
    auto src = ns_.ChainNamed(name);
    if (!src) return ENOENT;
    if (name == newname) return 0;
    if (auto dst = ns_.ChainNamed(newname)) {
      if (flags & RENAME_NOREPLACE) return EEXIST;
      if (ns_.ChainHasFiles(dst->dedup_id)) return ENOTEMPTY;
      if (int e = ToErrno(catalog_.RemoveChain(dst->dedup_id).status(), "rename")) return e;
      ns_.RemoveChain(dst->dedup_id);
    }
    ChainInfo info = *src;
    info.name = newname;
    info.ctime_ns = NowNs();
    if (int e = ToErrno(catalog_.UpdateChain(info), "rename")) return e;
    ns_.RenameChain(name, info);
    return 0;
  }
  if (!IsChainIno(parent) || !IsChainIno(newparent)) return ENOTDIR;
  std::shared_ptr<FileNode> replaced;
  {
    MutexLock change(&ns_.change_mu);
    if (!ns_.Chain(DedupIdOf(parent)) || !ns_.Chain(DedupIdOf(newparent))) return ENOENT;
    auto node = ns_.FileIn(DedupIdOf(parent), name);
    if (!node.ok()) return ENOENT;
    if (parent != newparent) return EXDEV;  // different dedup domains
    if (name == newname) return 0;
    std::optional<int64_t> replaced_id;
    if (auto t = ns_.FileIn(DedupIdOf(newparent), newname); t.ok()) {
      if (flags & RENAME_NOREPLACE) return EEXIST;
      replaced = *t;
      replaced_id = replaced->file_id;
    }
    if (int e = ToErrno(catalog_.RenameFile((*node)->file_id, newname, replaced_id), "rename")) return e;
    ns_.RenameFile(*node, newname, replaced, NowNs());
  }
  if (replaced) MaybeReclaim(replaced);
  return 0;
}

int ChainswapFs::DoOpen(fuse_ino_t ino, int flags) {
  if (!IsFileIno(ino)) return EISDIR;
  auto f = ns_.Open(FileIdOf(ino));
  if (!f.ok()) return ENOENT;
  // With atomic O_TRUNC (libfuse asks for it by default), the kernel leaves
  // the truncation of `open(O_TRUNC)`, `: > file` and `cp` onto an existing
  // file to the open; the permission checks are the kernel's.
  if (flags & O_TRUNC) {
    if (int e = TruncateOnOpen(*f)) {
      DoRelease(ino);
      return e;
    }
  }
  return 0;
}

int ChainswapFs::TruncateOnOpen(const std::shared_ptr<FileNode>& f) {
  WriterLock io(&f->io);
  const uint64_t size = f->Size();
  const int64_t now = NowNs();
  if (size != 0) {
    FileMetaUpdate meta{f->file_id, 0, now, now};
    if (int e = ToErrno(ResizeLocked(*f, size, meta), "open(O_TRUNC)")) return e;
  }
  f->SetSizeAndTimes(0, now);
  return 0;
}

Status ChainswapFs::ResizeLocked(FileNode& f, uint64_t old_size, const FileMetaUpdate& meta) {
  return engine_.Truncate(FileRef{f.file_id, f.dedup_id}, old_size, meta.size, meta);
}

int ChainswapFs::DoRelease(fuse_ino_t ino) {
  if (std::shared_ptr<FileNode> f = ns_.Release(FileIdOf(ino))) MaybeReclaim(f);
  return 0;
}

int ChainswapFs::DoRead(fuse_ino_t ino, uint64_t off, size_t size, uint8_t* out, size_t* got) {
  std::shared_ptr<FileNode> f = ns_.File(FileIdOf(ino));
  if (!f) return EBADF;
  ReaderLock io(&f->io);
  auto r = engine_.Read(FileRef{f->file_id, f->dedup_id}, off, size, f->Size(), out);
  if (!r.ok()) return ToErrno(r.status(), "read");
  *got = *r;
  return 0;
}

int ChainswapFs::DoWrite(fuse_ino_t ino, uint64_t off, const char* buf, size_t size) {
  std::shared_ptr<FileNode> f = ns_.File(FileIdOf(ino));
  if (!f) return EBADF;
  if (off + size < off) return EFBIG;
  WriterLock io(&f->io);
  const uint64_t fsize = f->Size();
  const int64_t now = NowNs();
  const uint64_t new_size = std::max<uint64_t>(fsize, off + size);
  FileMetaUpdate meta{f->file_id, new_size, now, now};
  Status st = engine_.Write(FileRef{f->file_id, f->dedup_id}, off, {reinterpret_cast<const uint8_t*>(buf), size},
                            fsize, meta);
  if (int e = ToErrno(st, "write")) return e;
  f->SetSizeAndTimes(new_size, now);
  return 0;
}

int ChainswapFs::DoFsync(fuse_ino_t /*ino*/) { return ToErrno(engine_.Sync(), "fsync"); }

int ChainswapFs::DoFallocate(fuse_ino_t ino, int mode, off_t off, off_t len) {
  if (off < 0 || len <= 0) return EINVAL;
  const bool keep = mode & FALLOC_FL_KEEP_SIZE;
  const int kind = mode & ~FALLOC_FL_KEEP_SIZE;
  if (kind != 0 && kind != FALLOC_FL_PUNCH_HOLE && kind != FALLOC_FL_ZERO_RANGE) return EOPNOTSUPP;
  if (kind == FALLOC_FL_PUNCH_HOLE && !keep) return EOPNOTSUPP;  // Linux requires KEEP_SIZE
  if (!IsFileIno(ino)) return EISDIR;
  std::shared_ptr<FileNode> f = ns_.File(FileIdOf(ino));
  if (!f) return EBADF;
  WriterLock io(&f->io);
  const uint64_t fsize = f->Size();
  const FileRef ref{f->file_id, f->dedup_id};
  const uint64_t end = static_cast<uint64_t>(off) + static_cast<uint64_t>(len);
  const uint64_t new_size = keep ? fsize : std::max(fsize, end);
  const int64_t now = NowNs();
  FileMetaUpdate meta{ref.file_id, new_size, now, now};
  Status st;
  if (kind == 0) {
    // Thin preallocation: nothing to reserve, the size grows unless KEEP_SIZE.
    st = ResizeLocked(*f, fsize, meta);
  } else {
    st = engine_.Zero(ref, static_cast<uint64_t>(off), static_cast<uint64_t>(len), fsize, meta);
  }
  if (int e = ToErrno(st, "fallocate")) return e;
  f->SetSizeAndTimes(new_size, now);
  return 0;
}

int ChainswapFs::DoReaddir(fuse_ino_t ino, std::vector<DirEntry>* out) {
  if (ino == kRootIno) {
    *out = ns_.RootEntries();
    return 0;
  }
  if (!IsChainIno(ino)) return ENOTDIR;
  auto entries = ns_.ChainEntries(DedupIdOf(ino));
  if (!entries.ok()) return ENOENT;
  *out = std::move(*entries);
  return 0;
}

int ChainswapFs::DoStatfs(struct statvfs* out) {
  struct statvfs b;
  if (::statvfs(backing_.paths().root.c_str(), &b) != 0) return errno;
  StoreUsage u = catalog_.Usage();
  std::memset(out, 0, sizeof(*out));
  out->f_bsize = out->f_frsize = kBlockSize;
  const uint64_t backing_total = uint64_t{b.f_blocks} * b.f_frsize / kBlockSize;
  const uint64_t backing_avail = uint64_t{b.f_bavail} * b.f_frsize / kBlockSize;
  const uint64_t backing_free = uint64_t{b.f_bfree} * b.f_frsize / kBlockSize;
  if (u.capacity_slots) {
    uint64_t cap_free = u.capacity_slots > u.used_slots ? u.capacity_slots - u.used_slots : 0;
    out->f_blocks = std::min(u.capacity_slots, backing_total);
    out->f_bfree = std::min(cap_free, backing_free);
    out->f_bavail = std::min(cap_free, backing_avail);
  } else {
    out->f_blocks = backing_total;
    out->f_bfree = backing_free;
    out->f_bavail = backing_avail;
  }
  out->f_files = ns_.file_count() + ns_.chain_count() + 1 + b.f_ffree;
  out->f_ffree = out->f_favail = b.f_ffree;
  out->f_namemax = 255;
  return 0;
}

int ChainswapFs::DoGetxattr(fuse_ino_t ino, const std::string& name, std::string* value) {
  if (!IsChainIno(ino) && ino != kRootIno) return ENODATA;
  if (name.rfind(kXattrPrefix, 0) != 0) return ENODATA;
  std::string key = name.substr(std::strlen(kXattrPrefix));
  if (key.rfind(kDestagePrefix, 0) == 0) {
    if (!reporter_) return ENODATA;
    auto v = DestageValue(reporter_->Latest(), key.substr(std::strlen(kDestagePrefix)));
    if (!v) return ENODATA;
    *value = *v;
    return 0;
  }
  if (!IsChainIno(ino)) return ENODATA;
  int64_t id = DedupIdOf(ino);
  if (!ns_.Chain(id)) return ENOENT;
  if (key == "dedup_id") {
    *value = std::to_string(id);
    return 0;
  }
  auto stats = catalog_.Stats();
  if (!stats.ok()) return ToErrno(stats.status(), "getxattr");
  for (const ChainStats& s : *stats) {
    if (s.dedup_id != id) continue;
    uint64_t saved = s.nonzero_bytes > s.stored_bytes ? s.nonzero_bytes - s.stored_bytes : 0;
    if (key == "files") *value = std::to_string(s.files);
    else if (key == "logical_bytes") *value = std::to_string(s.logical_bytes);
    else if (key == "nonzero_bytes") *value = std::to_string(s.nonzero_bytes);
    else if (key == "stored_bytes") *value = std::to_string(s.stored_bytes);
    else if (key == "saved_bytes") *value = std::to_string(saved);
    else if (key == "blocks") *value = std::to_string(s.blocks);
    else if (key == "compressed_blocks") *value = std::to_string(s.compressed_blocks);
    else if (key == "dedup_ratio" || key == "compress_ratio") {
      // dedup: references per stored block; compress: 4 KiB per stored
      // block over the bytes it occupies.
      const double num = key == "dedup_ratio" ? double(s.nonzero_bytes) : double(s.blocks) * kBlockSize;
      const double den = key == "dedup_ratio" ? double(s.blocks) * kBlockSize : double(s.stored_bytes);
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.3f", den > 0 ? num / den : 1.0);
      *value = buf;
    } else return ENODATA;
    return 0;
  }
  return ENOENT;
}

int ChainswapFs::DoListxattr(fuse_ino_t ino, std::string* names) {
  names->clear();
  if (IsChainIno(ino)) {
    for (const char* n : kXattrNames) {
      names->append(kXattrPrefix);
      names->append(n);
      names->push_back('\0');
    }
  }
  if ((IsChainIno(ino) || ino == kRootIno) && reporter_) {
    for (const char* n : kDestageNames) {
      names->append(kXattrPrefix);
      names->append(kDestagePrefix);
      names->append(n);
      names->push_back('\0');
    }
  }
  return 0;
}

int ChainswapFs::DoSetxattr(fuse_ino_t ino, const std::string& name, const std::string& value, uid_t uid) {
  const bool exporting = name == kExportXattr;
  if (!exporting && name != kImportXattr) return EOPNOTSUPP;
  if (!IsFileIno(ino)) return EISDIR;
  if (uid != 0) return EPERM;  // the daemon reads or writes the path it is given
  std::shared_ptr<FileNode> f = ns_.File(FileIdOf(ino));
  if (!f) return ENOENT;
  WriterLock io(&f->io);
  const FileRef ref{f->file_id, f->dedup_id};
  if (exporting) {
    auto exp = engine_.ExportFile(ref);
    if (!exp.ok()) {
      spdlog::warn("export of swap file {}: {}", f->file_id, exp.status().ToString());
      return ToErrno(exp.status(), "export");
    }
    Manifest m;
    m.file = std::move(*exp);
    const FileInfo info = f->Info();
    m.size = info.size;
    m.mode = info.mode & 07777;
    if (Status ws = WriteManifest(value, m); !ws.ok()) {
      spdlog::warn("export of swap file {}: {}", f->file_id, ws.ToString());
      return ToErrno(ws, "export");
    }
    spdlog::info("exported swap file {} ({} blocks, {} bytes) to {}", f->file_id, m.file.blocks.size(), m.size, value);
    return 0;
  }
  auto m = ReadManifest(value);
  if (!m.ok()) {
    spdlog::warn("import into swap file {}: {}", f->file_id, m.status().ToString());
    return ToErrno(m.status(), "import");
  }
  if (f->Size() != 0 || engine_.StagedWriteBlocks(f->file_id) != 0) return ENOTEMPTY;
  const int64_t now = NowNs();
  const FileMetaUpdate meta{f->file_id, m->size, now, now};
  if (Status is = engine_.ImportFile(ref, m->file, meta); !is.ok()) {
    spdlog::warn("import into swap file {}: {}", f->file_id, is.ToString());
    return ToErrno(is, "import");
  }
  f->SetSizeAndTimes(m->size, now);
  // The source's permission bits go with it (the file was created by
  // `chainswap import` with 0600).
  FileInfo info = f->Info();
  info.mode = m->mode & kFileModeBits;
  if (int e = ToErrno(catalog_.UpdateFile(info), "import")) return e;
  {
    MutexLock fl(&f->mu);
    f->info.mode = info.mode;
  }
  spdlog::info("imported swap file {} ({} blocks, {} bytes, mode {:o}) from {}", f->file_id, m->file.blocks.size(),
               m->size, info.mode, value);
  return 0;
}

int ChainswapFs::DoCopyFileRange(fuse_ino_t in, uint64_t off_in, fuse_ino_t out, uint64_t off_out,
                                 size_t len, size_t* copied) {
  *copied = 0;
  if (!IsFileIno(in) || !IsFileIno(out)) return EISDIR;
  std::shared_ptr<FileNode> src = ns_.File(FileIdOf(in));
  std::shared_ptr<FileNode> dst = ns_.File(FileIdOf(out));
  if (!src || !dst) return EBADF;
  if (src->dedup_id != dst->dedup_id) return EXDEV;  // different dedup domains
  CopyLocks io(*src, *dst);
  const uint64_t src_size = src->Size();
  const uint64_t dst_size = dst->Size();
  const FileRef sref{src->file_id, src->dedup_id};
  const FileRef dref{dst->file_id, dst->dedup_id};
  if (off_in >= src_size) return 0;
  len = static_cast<size_t>(std::min<uint64_t>(len, src_size - off_in));
  if (src == dst && off_in < off_out + len && off_out < off_in + len) return EINVAL;
  const uint64_t new_size = std::max<uint64_t>(dst_size, off_out + len);
  const int64_t now = NowNs();
  FileMetaUpdate meta{dref.file_id, new_size, now, now};
  const uint64_t mask = kBlockSize - 1;
  const bool aligned = (off_in & mask) == 0 && (off_out & mask) == 0 &&
                       ((len & mask) == 0 || (off_in + len == src_size && off_out + len >= dst_size));
  Status st;
  if (aligned) {
    st = engine_.CloneBlocks(sref, dref, off_in >> kBlockShift, off_out >> kBlockShift,
                             (len + mask) >> kBlockShift, meta);
  } else {
    // Unaligned: copy the bytes (still deduplicated on destage).
    std::vector<uint8_t> buf(std::min<size_t>(len, 1u << 20));
    uint64_t done = 0, cur_size = dst_size;
    while (st.ok() && done < len) {
      size_t n = std::min<size_t>(buf.size(), len - done);
      auto r = engine_.Read(sref, off_in + done, n, src_size, buf.data());
      if (!r.ok()) {
        st = r.status();
        break;
      }
      uint64_t end = off_out + done + n;
      FileMetaUpdate m{dref.file_id, std::max(cur_size, end), now, now};
      st = engine_.Write(dref, off_out + done, {buf.data(), n}, cur_size, m);
      cur_size = m.size;
      done += n;
    }
  }
  if (int e = ToErrno(st, "copy_file_range")) return e;
  dst->SetSizeAndTimes(new_size, now);
  *copied = len;
  return 0;
}

int ChainswapFs::DoLseek(fuse_ino_t ino, off_t off, int whence, off_t* out) {
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return EINVAL;
  std::shared_ptr<FileNode> f = ns_.File(FileIdOf(ino));
  if (!f) return EBADF;
  ReaderLock io(&f->io);
  const uint64_t fsize = f->Size();
  const FileRef ref{f->file_id, f->dedup_id};
  if (off < 0 || static_cast<uint64_t>(off) >= fsize) return ENXIO;
  if (whence == SEEK_HOLE) {
    // Conservative and valid: data runs are reported up to EOF.
    *out = static_cast<off_t>(fsize);
    return 0;
  }
  auto r = engine_.NextData(ref, static_cast<uint64_t>(off), fsize);
  if (!r.ok()) return ToErrno(r.status(), "lseek");
  if (!*r || **r >= fsize) return ENXIO;
  *out = static_cast<off_t>(**r);
  return 0;
}

}  // namespace chainswap
