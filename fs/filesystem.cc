#include "fs/filesystem.h"

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
                                       "stored_bytes", "saved_bytes", "dedup_ratio"};
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
  std::vector<std::shared_ptr<FileNode>> orphans;
  {
    std::unique_lock lk(ns_.mu);
    for (auto& c : *chains) {
      ns_.chain_by_name[c.name] = c.dedup_id;
      ns_.chains[c.dedup_id].info = c;
    }
    for (auto& f : *files) {
      if (auto it = replayed.find(f.file_id); it != replayed.end()) {
        f.size = it->second.size;
        f.mtime_ns = it->second.mtime_ns;
      }
      auto node = std::make_shared<FileNode>(f);
      ns_.files[f.file_id] = node;
      ChainNode* chain = ns_.Chain(f.dedup_id);
      if (f.unlinked || !chain) {
        node->info.unlinked = true;
        orphans.push_back(node);
      } else {
        chain->files[f.name] = node;
      }
    }
  }
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
  st->st_nlink = 2 + ns_.chains.size();
  st->st_size = 4096;
  st->st_blksize = kBlockSize;
}

void ChainswapFs::FillChainAttr(const ChainNode& c, struct stat* st) {
  std::memset(st, 0, sizeof(*st));
  st->st_ino = ChainIno(c.info.dedup_id);
  st->st_mode = S_IFDIR | (c.info.mode & 07777);
  st->st_nlink = 2;
  st->st_uid = c.info.uid;
  st->st_gid = c.info.gid;
  st->st_size = 4096;
  st->st_blksize = kBlockSize;
  st->st_mtim = st->st_atim = ToTimespec(c.info.mtime_ns);
  st->st_ctim = ToTimespec(c.info.ctime_ns);
}

void ChainswapFs::FillFileAttr(const FileNode& f, uint64_t mapped_blocks, struct stat* st) {
  std::memset(st, 0, sizeof(*st));
  st->st_ino = FileIno(f.info.file_id);
  st->st_mode = S_IFREG | (f.info.mode & 07777);
  st->st_nlink = f.info.unlinked ? 0 : 1;
  st->st_uid = f.info.uid;
  st->st_gid = f.info.gid;
  st->st_size = static_cast<off_t>(f.info.size);
  st->st_blksize = kBlockSize;
  const uint64_t max_blocks = (f.info.size + kBlockSize - 1) / kBlockSize;
  st->st_blocks = static_cast<blkcnt_t>(std::min(mapped_blocks, max_blocks) * (kBlockSize / 512));
  st->st_atim = ToTimespec(f.info.atime_ns);
  st->st_mtim = ToTimespec(f.info.mtime_ns);
  st->st_ctim = ToTimespec(f.info.ctime_ns);
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
  std::shared_ptr<FileNode> file;
  {
    std::shared_lock lk(ns_.mu);
    if (parent == kRootIno) {
      auto it = ns_.chain_by_name.find(name);
      if (it == ns_.chain_by_name.end()) return ENOENT;
      FillChainAttr(*ns_.Chain(it->second), &e->attr);
      e->ino = e->attr.st_ino;
      return 0;
    }
    if (!IsChainIno(parent)) return ENOTDIR;
    ChainNode* c = ns_.Chain(DedupIdOf(parent));
    if (!c) return ENOENT;
    auto it = c->files.find(name);
    if (it == c->files.end()) return ENOENT;
    file = it->second;
  }
  // file_id never changes: readable without the lock.
  const uint64_t mapped = MappedBlocks(file->file_id);
  std::shared_lock lk(ns_.mu);
  FillFileAttr(*file, mapped, &e->attr);
  e->ino = e->attr.st_ino;
  return 0;
}

int ChainswapFs::DoGetattr(fuse_ino_t ino, struct stat* st) {
  if (ino == kRootIno) {
    std::shared_lock lk(ns_.mu);
    FillRootAttr(st);
    return 0;
  }
  if (IsChainIno(ino)) {
    std::shared_lock lk(ns_.mu);
    ChainNode* c = ns_.Chain(DedupIdOf(ino));
    if (!c) return ENOENT;
    FillChainAttr(*c, st);
    return 0;
  }
  std::shared_ptr<FileNode> f;
  {
    std::shared_lock lk(ns_.mu);
    f = ns_.File(FileIdOf(ino));
  }
  if (!f) return ENOENT;
  const uint64_t mapped = MappedBlocks(f->file_id);
  std::shared_lock lk(ns_.mu);
  FillFileAttr(*f, mapped, st);
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
    std::lock_guard change(ns_.change_mu);
    ChainInfo info;
    {
      std::shared_lock lk(ns_.mu);
      ChainNode* c = ns_.Chain(DedupIdOf(ino));
      if (!c) return ENOENT;
      info = c->info;
    }
    if (to_set & FUSE_SET_ATTR_MODE) info.mode = attr.st_mode & 07777;
    if (to_set & FUSE_SET_ATTR_UID) info.uid = attr.st_uid;
    if (to_set & FUSE_SET_ATTR_GID) info.gid = attr.st_gid;
    set_time(FUSE_SET_ATTR_MTIME_NOW, FUSE_SET_ATTR_MTIME, attr.st_mtim, &info.mtime_ns);
    info.ctime_ns = now;
    if (int e = ToErrno(catalog_.UpdateChain(info), "setattr")) return e;
    std::unique_lock lk(ns_.mu);
    ChainNode* c = ns_.Chain(info.dedup_id);  // change_mu kept it
    c->info = info;
    FillChainAttr(*c, out);
    return 0;
  }
  std::shared_ptr<FileNode> f;
  {
    std::shared_lock lk(ns_.mu);
    f = ns_.File(FileIdOf(ino));
  }
  if (!f) return ENOENT;
  std::unique_lock io(f->io);
  FileInfo info;
  {
    std::shared_lock lk(ns_.mu);
    info = f->info;
  }
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
  std::unique_lock lk(ns_.mu);
  info.name = f->info.name;          // a concurrent rename may have changed these
  info.unlinked = f->info.unlinked;
  f->info = info;
  FillFileAttr(*f, mapped, out);
  return 0;
}

int ChainswapFs::DoMkdir(fuse_ino_t parent, const std::string& name, mode_t mode, uid_t uid,
                         gid_t gid, fuse_entry_param* e) {
  if (parent != kRootIno) return EPERM;  // chains hold swap files only
  if (!ValidName(name)) return EINVAL;
  std::lock_guard change(ns_.change_mu);
  {
    std::shared_lock lk(ns_.mu);
    if (ns_.chain_by_name.count(name)) return EEXIST;
  }
  auto c = catalog_.CreateChain(name, mode & 07777, uid, gid, NowNs());
  if (!c.ok()) return ToErrno(c.status(), "mkdir");
  std::unique_lock lk(ns_.mu);
  ChainNode& node = ns_.chains[c->dedup_id];
  node.info = *c;
  ns_.chain_by_name[name] = c->dedup_id;
  spdlog::info("created chain '{}' with dedup ID {}", name, c->dedup_id);
  std::memset(e, 0, sizeof(*e));
  e->attr_timeout = e->entry_timeout = kAttrTimeout;
  FillChainAttr(node, &e->attr);
  e->ino = e->attr.st_ino;
  return 0;
}

int ChainswapFs::DoRmdir(fuse_ino_t parent, const std::string& name) {
  if (parent != kRootIno) {
    if (!IsChainIno(parent)) return ENOTDIR;
    std::shared_lock lk(ns_.mu);
    ChainNode* c = ns_.Chain(DedupIdOf(parent));
    if (!c) return ENOENT;
    return c->files.count(name) ? ENOTDIR : ENOENT;
  }
  std::lock_guard change(ns_.change_mu);
  int64_t id;
  {
    std::shared_lock lk(ns_.mu);
    auto it = ns_.chain_by_name.find(name);
    if (it == ns_.chain_by_name.end()) return ENOENT;
    id = it->second;
    // As on ext4, unlinked files (still open, or still being reclaimed) do
    // not keep a directory from going: the catalog keeps the chain's row
    // and seed, nameless, until the last of them is reclaimed.
    if (!ns_.Chain(id)->files.empty()) return ENOTEMPTY;
  }
  auto dropped = catalog_.RemoveChain(id);
  if (int e = ToErrno(dropped.status(), "rmdir")) return e;
  {
    std::unique_lock lk(ns_.mu);
    ns_.chains.erase(id);
    ns_.chain_by_name.erase(name);
  }
  spdlog::info("removed chain '{}' (dedup ID {}){}", name, id,
               *dropped ? "" : "; its row stays until its unlinked files are reclaimed");
  return 0;
}

int ChainswapFs::DoCreate(fuse_ino_t parent, const std::string& name, mode_t mode, uid_t uid,
                          gid_t gid, fuse_entry_param* e) {
  if (parent == kRootIno) return EPERM;  // the root holds chain directories only
  if (!IsChainIno(parent)) return ENOTDIR;
  if (!S_ISREG(mode)) return EPERM;      // swap files are regular files
  if (!ValidName(name)) return EINVAL;
  std::lock_guard change(ns_.change_mu);
  {
    std::shared_lock lk(ns_.mu);
    ChainNode* c = ns_.Chain(DedupIdOf(parent));
    if (!c) return ENOENT;
    if (c->files.count(name)) return EEXIST;
  }
  auto f = catalog_.CreateFile(DedupIdOf(parent), name, mode & kFileModeBits, uid, gid, NowNs());
  if (!f.ok()) return ToErrno(f.status(), "create");
  std::unique_lock lk(ns_.mu);
  ChainNode* c = ns_.Chain(DedupIdOf(parent));  // change_mu kept it
  auto node = std::make_shared<FileNode>(*f);
  c->files[name] = node;
  ns_.files[f->file_id] = node;
  c->info.mtime_ns = c->info.ctime_ns = f->mtime_ns;
  std::memset(e, 0, sizeof(*e));
  e->attr_timeout = e->entry_timeout = kAttrTimeout;
  FillFileAttr(*node, 0, &e->attr);
  e->ino = e->attr.st_ino;
  return 0;
}

void ChainswapFs::DetachLocked(ChainNode& chain, const std::shared_ptr<FileNode>& node) {
  chain.files.erase(node->info.name);
  node->info.unlinked = true;
  node->info.ctime_ns = chain.info.mtime_ns = chain.info.ctime_ns = NowNs();
}

int ChainswapFs::DoUnlink(fuse_ino_t parent, const std::string& name) {
  if (parent == kRootIno) {
    std::shared_lock lk(ns_.mu);
    return ns_.chain_by_name.count(name) ? EISDIR : ENOENT;
  }
  if (!IsChainIno(parent)) return ENOTDIR;
  std::shared_ptr<FileNode> node;
  {
    std::lock_guard change(ns_.change_mu);
    FileInfo unlinked;
    {
      std::shared_lock lk(ns_.mu);
      ChainNode* c = ns_.Chain(DedupIdOf(parent));
      if (!c) return ENOENT;
      auto it = c->files.find(name);
      if (it == c->files.end()) return ENOENT;
      node = it->second;
      unlinked = node->info;
    }
    unlinked.unlinked = true;
    if (int e = ToErrno(catalog_.UpdateFile(unlinked), "unlink")) return e;
    std::unique_lock lk(ns_.mu);
    DetachLocked(*ns_.Chain(DedupIdOf(parent)), node);  // change_mu kept both
  }
  MaybeReclaim(node);
  return 0;
}

void ChainswapFs::MaybeReclaim(const std::shared_ptr<FileNode>& node) {
  {
    std::unique_lock lk(ns_.mu);
    if (!node->info.unlinked || node->open_count > 0 || node->reclaiming) return;
    node->reclaiming = true;
  }
  FileRef ref{node->file_id, node->dedup_id};
  Status st;
  {
    // Queued to the delete destager: returns at once, space comes back in
    // the background.
    std::unique_lock io(node->io);
    uint64_t size;
    {
      std::shared_lock lk(ns_.mu);
      size = node->info.size;
    }
    st = engine_.Reclaim(ref, size);
  }
  std::unique_lock lk(ns_.mu);
  if (!st.ok()) {
    spdlog::error("reclaim of swap file {} failed: {}; retried at next mount", ref.file_id, st.ToString());
    node->reclaiming = false;
    return;
  }
  ns_.files.erase(ref.file_id);
}

int ChainswapFs::DoRename(fuse_ino_t parent, const std::string& name, fuse_ino_t newparent,
                          const std::string& newname, unsigned flags) {
  if (flags & ~static_cast<unsigned>(RENAME_NOREPLACE)) return EINVAL;  // no EXCHANGE/WHITEOUT
  if (!ValidName(newname)) return EINVAL;
  if (parent == kRootIno || newparent == kRootIno) {
    if (parent != newparent) return EPERM;  // chains stay at the root, files in chains
    std::lock_guard change(ns_.change_mu);
    ChainInfo info;
    std::optional<int64_t> replaced_chain;
    {
      std::shared_lock lk(ns_.mu);
      auto it = ns_.chain_by_name.find(name);
      if (it == ns_.chain_by_name.end()) return ENOENT;
      if (name == newname) return 0;
      auto dst = ns_.chain_by_name.find(newname);
      if (dst != ns_.chain_by_name.end()) {
        if (flags & RENAME_NOREPLACE) return EEXIST;
        if (!ns_.Chain(dst->second)->files.empty()) return ENOTEMPTY;
        replaced_chain = dst->second;
      }
      info = ns_.Chain(it->second)->info;
    }
    if (replaced_chain) {
      if (int e = ToErrno(catalog_.RemoveChain(*replaced_chain).status(), "rename")) return e;
      std::unique_lock lk(ns_.mu);
      ns_.chains.erase(*replaced_chain);
      ns_.chain_by_name.erase(newname);
    }
    info.name = newname;
    info.ctime_ns = NowNs();
    if (int e = ToErrno(catalog_.UpdateChain(info), "rename")) return e;
    std::unique_lock lk(ns_.mu);
    ns_.Chain(info.dedup_id)->info = info;  // change_mu kept it
    ns_.chain_by_name.erase(name);
    ns_.chain_by_name[newname] = info.dedup_id;
    return 0;
  }
  if (!IsChainIno(parent) || !IsChainIno(newparent)) return ENOTDIR;
  std::shared_ptr<FileNode> replaced;
  {
    std::lock_guard change(ns_.change_mu);
    std::shared_ptr<FileNode> node;
    std::optional<int64_t> replaced_id;
    {
      std::shared_lock lk(ns_.mu);
      ChainNode* src = ns_.Chain(DedupIdOf(parent));
      ChainNode* dst = ns_.Chain(DedupIdOf(newparent));
      if (!src || !dst) return ENOENT;
      auto it = src->files.find(name);
      if (it == src->files.end()) return ENOENT;
      if (src != dst) return EXDEV;  // different dedup domains
      if (name == newname) return 0;
      node = it->second;
      auto t = dst->files.find(newname);
      if (t != dst->files.end()) {
        if (flags & RENAME_NOREPLACE) return EEXIST;
        replaced = t->second;
        replaced_id = replaced->file_id;
      }
    }
    if (int e = ToErrno(catalog_.RenameFile(node->file_id, newname, replaced_id), "rename")) return e;
    std::unique_lock lk(ns_.mu);
    ChainNode* chain = ns_.Chain(DedupIdOf(parent));  // change_mu kept it
    if (replaced) DetachLocked(*chain, replaced);
    chain->files.erase(name);
    node->info.name = newname;
    node->info.ctime_ns = NowNs();
    chain->files[newname] = node;
  }
  if (replaced) MaybeReclaim(replaced);
  return 0;
}

int ChainswapFs::DoOpen(fuse_ino_t ino, int flags) {
  if (!IsFileIno(ino)) return EISDIR;
  std::shared_ptr<FileNode> f;
  {
    std::unique_lock lk(ns_.mu);
    f = ns_.File(FileIdOf(ino));
    if (!f || f->reclaiming) return ENOENT;
    ++f->open_count;
  }
  // With atomic O_TRUNC (libfuse asks for it by default), the kernel leaves
  // the truncation of `open(O_TRUNC)`, `: > file` and `cp` onto an existing
  // file to the open; the permission checks are the kernel's.
  if (flags & O_TRUNC) {
    if (int e = TruncateOnOpen(f)) {
      DoRelease(ino);
      return e;
    }
  }
  return 0;
}

int ChainswapFs::TruncateOnOpen(const std::shared_ptr<FileNode>& f) {
  std::unique_lock io(f->io);
  uint64_t size;
  {
    std::shared_lock lk(ns_.mu);
    size = f->info.size;
  }
  const int64_t now = NowNs();
  if (size != 0) {
    FileMetaUpdate meta{f->file_id, 0, now, now};
    if (int e = ToErrno(ResizeLocked(*f, size, meta), "open(O_TRUNC)")) return e;
  }
  std::unique_lock lk(ns_.mu);
  f->info.size = 0;
  f->info.mtime_ns = f->info.ctime_ns = now;
  return 0;
}

Status ChainswapFs::ResizeLocked(FileNode& f, uint64_t old_size, const FileMetaUpdate& meta) {
  return engine_.Truncate(FileRef{f.file_id, f.dedup_id}, old_size, meta.size, meta);
}

int ChainswapFs::DoRelease(fuse_ino_t ino) {
  std::shared_ptr<FileNode> f;
  {
    std::unique_lock lk(ns_.mu);
    f = ns_.File(FileIdOf(ino));
    if (!f) return 0;
    if (f->open_count > 0) --f->open_count;
  }
  MaybeReclaim(f);
  return 0;
}

int ChainswapFs::DoRead(fuse_ino_t ino, uint64_t off, size_t size, uint8_t* out, size_t* got) {
  std::shared_ptr<FileNode> f;
  {
    std::shared_lock lk(ns_.mu);
    f = ns_.File(FileIdOf(ino));
  }
  if (!f) return EBADF;
  std::shared_lock io(f->io);
  uint64_t fsize;
  FileRef ref;
  {
    std::shared_lock lk(ns_.mu);
    fsize = f->info.size;
    ref = {f->file_id, f->dedup_id};
  }
  auto r = engine_.Read(ref, off, size, fsize, out);
  if (!r.ok()) return ToErrno(r.status(), "read");
  *got = *r;
  return 0;
}

int ChainswapFs::DoWrite(fuse_ino_t ino, uint64_t off, const char* buf, size_t size) {
  std::shared_ptr<FileNode> f;
  {
    std::shared_lock lk(ns_.mu);
    f = ns_.File(FileIdOf(ino));
  }
  if (!f) return EBADF;
  if (off + size < off) return EFBIG;
  std::unique_lock io(f->io);
  uint64_t fsize;
  FileRef ref;
  {
    std::shared_lock lk(ns_.mu);
    fsize = f->info.size;
    ref = {f->file_id, f->dedup_id};
  }
  const int64_t now = NowNs();
  const uint64_t new_size = std::max<uint64_t>(fsize, off + size);
  FileMetaUpdate meta{ref.file_id, new_size, now, now};
  Status st = engine_.Write(ref, off, {reinterpret_cast<const uint8_t*>(buf), size}, fsize, meta);
  if (int e = ToErrno(st, "write")) return e;
  std::unique_lock lk(ns_.mu);
  f->info.size = new_size;
  f->info.mtime_ns = f->info.ctime_ns = now;
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
  std::shared_ptr<FileNode> f;
  {
    std::shared_lock lk(ns_.mu);
    f = ns_.File(FileIdOf(ino));
  }
  if (!f) return EBADF;
  std::unique_lock io(f->io);
  uint64_t fsize;
  FileRef ref;
  {
    std::shared_lock lk(ns_.mu);
    fsize = f->info.size;
    ref = {f->file_id, f->dedup_id};
  }
  const uint64_t end = static_cast<uint64_t>(off) + static_cast<uint64_t>(len);
  const uint64_t new_size = keep ? fsize : std::max(fsize, end);
  const int64_t now = NowNs();
  FileMetaUpdate meta{ref.file_id, new_size, now, now};
  Status st;
  if (kind == 0) {
    // Thin preallocation: nothing to reserve, the size grows unless KEEP_SIZE.
    st = engine_.Truncate(ref, fsize, new_size, meta);
  } else {
    st = engine_.Zero(ref, static_cast<uint64_t>(off), static_cast<uint64_t>(len), fsize, meta);
  }
  if (int e = ToErrno(st, "fallocate")) return e;
  std::unique_lock lk(ns_.mu);
  f->info.size = new_size;
  f->info.mtime_ns = f->info.ctime_ns = now;
  return 0;
}

int ChainswapFs::DoReaddir(fuse_ino_t ino, std::vector<DirEntry>* out) {
  std::shared_lock lk(ns_.mu);
  if (ino == kRootIno) {
    out->push_back({".", kRootIno, S_IFDIR});
    out->push_back({"..", kRootIno, S_IFDIR});
    for (auto& [name, id] : ns_.chain_by_name) out->push_back({name, ChainIno(id), S_IFDIR});
    return 0;
  }
  if (!IsChainIno(ino)) return ENOTDIR;
  ChainNode* c = ns_.Chain(DedupIdOf(ino));
  if (!c) return ENOENT;
  out->push_back({".", ino, S_IFDIR});
  out->push_back({"..", kRootIno, S_IFDIR});
  for (auto& [name, node] : c->files) out->push_back({name, FileIno(node->file_id), S_IFREG});
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
  std::shared_lock lk(ns_.mu);
  out->f_files = ns_.files.size() + ns_.chains.size() + 1 + b.f_ffree;
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
  {
    std::shared_lock lk(ns_.mu);
    if (!ns_.Chain(id)) return ENOENT;
  }
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
    else if (key == "dedup_ratio") {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.3f",
                    s.stored_bytes ? double(s.nonzero_bytes) / double(s.stored_bytes) : 1.0);
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

int ChainswapFs::DoCopyFileRange(fuse_ino_t in, uint64_t off_in, fuse_ino_t out, uint64_t off_out,
                                 size_t len, size_t* copied) {
  *copied = 0;
  if (!IsFileIno(in) || !IsFileIno(out)) return EISDIR;
  std::shared_ptr<FileNode> src, dst;
  {
    std::shared_lock lk(ns_.mu);
    src = ns_.File(FileIdOf(in));
    dst = ns_.File(FileIdOf(out));
  }
  if (!src || !dst) return EBADF;
  if (src->dedup_id != dst->dedup_id) return EXDEV;  // different dedup domains
  // io locks in file ID order (no deadlock between two opposite copies).
  std::shared_lock<std::shared_mutex> src_lock;
  std::unique_lock<std::shared_mutex> dst_lock;
  if (src == dst) {
    dst_lock = std::unique_lock(dst->io);
  } else if (src->file_id < dst->file_id) {
    src_lock = std::shared_lock(src->io);
    dst_lock = std::unique_lock(dst->io);
  } else {
    dst_lock = std::unique_lock(dst->io);
    src_lock = std::shared_lock(src->io);
  }
  uint64_t src_size, dst_size;
  FileRef sref, dref;
  {
    std::shared_lock lk(ns_.mu);
    src_size = src->info.size;
    dst_size = dst->info.size;
    sref = {src->file_id, src->dedup_id};
    dref = {dst->file_id, dst->dedup_id};
  }
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
  std::unique_lock lk(ns_.mu);
  dst->info.size = new_size;
  dst->info.mtime_ns = dst->info.ctime_ns = now;
  *copied = len;
  return 0;
}

int ChainswapFs::DoLseek(fuse_ino_t ino, off_t off, int whence, off_t* out) {
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return EINVAL;
  std::shared_ptr<FileNode> f;
  {
    std::shared_lock lk(ns_.mu);
    f = ns_.File(FileIdOf(ino));
  }
  if (!f) return EBADF;
  std::shared_lock io(f->io);
  uint64_t fsize;
  FileRef ref;
  {
    std::shared_lock lk(ns_.mu);
    fsize = f->info.size;
    ref = {f->file_id, f->dedup_id};
  }
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
