// The namespace of the mount (SPEC §3): the root holds chain directories,
// each chain directory holds swap files. Inode numbers are derived from
// catalog IDs, which are never reused (AUTOINCREMENT), so they are stable
// across remounts:
//
//   root                 1
//   chain  (dedup ID d)  kChainInoBase + d
//   swap file (ID f)     f + 1        (f < kChainInoBase - 1)
//
// Namespace is the in-memory picture of what the catalog holds: chains by
// ID and name, each chain's linked swap files by name, and every file still
// known by ID (unlinked ones too, until their reclaim is queued). It does no
// I/O; ChainswapFs writes a change to the catalog first and then publishes it
// here.
//
// Thread-safety and lock order (checked by clang -Wthread-safety):
//   Namespace::change_mu  serializes namespace changes (mkdir, rmdir, create,
//       unlink, rename, chain attributes). ChainswapFs holds it across the
//       catalog write of the change, which may wait behind a destage
//       transaction; nothing on the data path takes it.
//   FileNode::io  serializes data operations on one file: held exclusively
//       by writes, punches, truncates and reclaim, shared by reads. Held
//       across engine calls (journal appends, catalog reads).
//   Namespace::mu_  guards the maps. Held only inside Namespace's methods,
//       never across I/O, so lookups, getattr, reads and writes of every
//       chain never wait behind a neighbour's namespace change.
//   FileNode::mu  guards one file's attributes; a leaf, held for a copy.
//   Order: change_mu, then io (a file's, taken by reclaim after a change
//   released change_mu: they are never held together in practice), then
//   mu_, then FileNode::mu.
#pragma once

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 314
#endif
#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "catalog/catalog.h"
#include "catalog/mutex.h"

namespace chainswap {

inline constexpr fuse_ino_t kRootIno = FUSE_ROOT_ID;
inline constexpr fuse_ino_t kChainInoBase = fuse_ino_t{1} << 32;

inline fuse_ino_t ChainIno(int64_t dedup_id) { return kChainInoBase + static_cast<fuse_ino_t>(dedup_id); }
inline fuse_ino_t FileIno(int64_t file_id) { return static_cast<fuse_ino_t>(file_id) + 1; }
inline bool IsChainIno(fuse_ino_t ino) { return ino >= kChainInoBase; }
inline bool IsFileIno(fuse_ino_t ino) { return ino > kRootIno && ino < kChainInoBase; }
inline int64_t DedupIdOf(fuse_ino_t ino) { return static_cast<int64_t>(ino - kChainInoBase); }
inline int64_t FileIdOf(fuse_ino_t ino) { return static_cast<int64_t>(ino - 1); }

// One swap file, shared by the namespace and the requests working on it.
struct FileNode {
  explicit FileNode(FileInfo i) : file_id(i.file_id), dedup_id(i.dedup_id), info(std::move(i)) {}
  FileNode(const FileNode&) = delete;
  FileNode& operator=(const FileNode&) = delete;

  const int64_t file_id;   // immutable: read without a lock
  const int64_t dedup_id;  // immutable: read without a lock
  SharedMutex io;          // see the lock order above
  mutable Mutex mu;
  // Name, size, mode, owner and times (mapped_blocks is not kept here: it is
  // asked at each getattr). The size changes only with io held exclusively.
  FileInfo info GUARDED_BY(mu);
  uint32_t open_count GUARDED_BY(mu) = 0;
  bool reclaiming GUARDED_BY(mu) = false;  // its reclaim is queued (or running)

  FileInfo Info() const EXCLUDES(mu) {
    MutexLock lk(&mu);
    return info;
  }
  uint64_t Size() const EXCLUDES(mu) {
    MutexLock lk(&mu);
    return info.size;
  }
  // After a write, punch or truncate: the new size and mtime = ctime = now.
  void SetSizeAndTimes(uint64_t size, int64_t now_ns) EXCLUDES(mu) {
    MutexLock lk(&mu);
    info.size = size;
    info.mtime_ns = info.ctime_ns = now_ns;
  }
};

struct DirEntry {
  std::string name;
  fuse_ino_t ino;
  mode_t type;
};

class Namespace {
 public:
  // Serializes namespace changes; see the lock order above. The methods
  // that change the namespace REQUIRE it, so that what a change checked
  // before its catalog write still holds when it publishes.
  Mutex change_mu ACQUIRED_BEFORE(mu_);

  // Fills the namespace from the catalog's chains and files (before the
  // session starts). Files that are unlinked, or whose chain is removed,
  // are returned: they are to be reclaimed.
  std::vector<std::shared_ptr<FileNode>> Load(const std::vector<ChainInfo>& chains,
                                              const std::vector<FileInfo>& files) EXCLUDES(mu_);

  // ---- queries (mu_ shared) ----
  std::optional<ChainInfo> Chain(int64_t dedup_id) const EXCLUDES(mu_);
  std::optional<ChainInfo> ChainNamed(const std::string& name) const EXCLUDES(mu_);
  // A known file by ID (linked, or unlinked and not yet forgotten).
  std::shared_ptr<FileNode> File(int64_t file_id) const EXCLUDES(mu_);
  // The linked file `name` of a chain: ENOENT without the chain or the name.
  Result<std::shared_ptr<FileNode>> FileIn(int64_t dedup_id, const std::string& name) const EXCLUDES(mu_);
  bool ChainHasFiles(int64_t dedup_id) const EXCLUDES(mu_);
  // Entries of the root (chains) and of a chain (its files); ENOENT for a
  // chain that is gone.
  std::vector<DirEntry> RootEntries() const EXCLUDES(mu_);
  Result<std::vector<DirEntry>> ChainEntries(int64_t dedup_id) const EXCLUDES(mu_);
  size_t chain_count() const EXCLUDES(mu_);
  size_t file_count() const EXCLUDES(mu_);

  // ---- changes, once the catalog holds them ----
  void AddChain(const ChainInfo& c) REQUIRES(change_mu) EXCLUDES(mu_);
  void UpdateChain(const ChainInfo& c) REQUIRES(change_mu) EXCLUDES(mu_);
  // Renames chain `c` (its info carries the new name).
  void RenameChain(const std::string& old_name, const ChainInfo& c) REQUIRES(change_mu) EXCLUDES(mu_);
  void RemoveChain(int64_t dedup_id) REQUIRES(change_mu) EXCLUDES(mu_);
  // A new linked file; its chain's mtime and ctime become the file's.
  void AddFile(const std::shared_ptr<FileNode>& f) REQUIRES(change_mu) EXCLUDES(mu_);
  // Unlinks `f` from its chain (it stays known by ID until Forget).
  void Detach(const std::shared_ptr<FileNode>& f, int64_t now_ns) REQUIRES(change_mu) EXCLUDES(mu_);
  // Renames `f` within its chain to new_name, detaching `replaced` if set.
  void RenameFile(const std::shared_ptr<FileNode>& f, const std::string& new_name,
                  const std::shared_ptr<FileNode>& replaced, int64_t now_ns) REQUIRES(change_mu) EXCLUDES(mu_);

  // ---- open files ----
  // Counts an open of file `file_id`: ENOENT when unknown or being
  // reclaimed.
  Result<std::shared_ptr<FileNode>> Open(int64_t file_id) EXCLUDES(mu_);
  // Counts a release; returns the file when it is now closed, unlinked and
  // not yet being reclaimed (the caller queues its reclaim).
  std::shared_ptr<FileNode> Release(int64_t file_id) EXCLUDES(mu_);
  // True when `f` is unlinked, closed and not yet being reclaimed; marks it
  // as being reclaimed.
  bool StartReclaim(const std::shared_ptr<FileNode>& f) EXCLUDES(mu_);
  // The reclaim of `f` is queued: the file is no longer known by ID.
  void Forget(int64_t file_id) EXCLUDES(mu_);

 private:
  struct ChainNode {
    ChainInfo info;
    std::map<std::string, std::shared_ptr<FileNode>> files;  // linked files by name
  };
  ChainNode* ChainLocked(int64_t dedup_id) REQUIRES(mu_);
  const ChainNode* ChainLocked(int64_t dedup_id) const REQUIRES_SHARED(mu_);
  void DetachLocked(ChainNode& chain, const std::shared_ptr<FileNode>& f, int64_t now_ns) REQUIRES(mu_);

  mutable SharedMutex mu_;
  std::map<int64_t, ChainNode> chains_ GUARDED_BY(mu_);               // by dedup ID
  std::map<std::string, int64_t> chain_by_name_ GUARDED_BY(mu_);
  std::unordered_map<int64_t, std::shared_ptr<FileNode>> files_ GUARDED_BY(mu_);  // by file ID, unlinked too
};

}  // namespace chainswap
