// The namespace of the mount (SPEC §3): the root holds chain directories,
// each chain directory holds swap files. Inode numbers are derived from
// catalog IDs, which are never reused (AUTOINCREMENT), so they are stable
// across remounts:
//
//   root                 1
//   chain  (dedup ID d)  kChainInoBase + d
//   swap file (ID f)     f + 1        (f < kChainInoBase - 1)
//
// Thread-safety and lock order:
//   Namespace::change_mu serializes namespace changes (mkdir, rmdir, create,
//   unlink, rename, chain setattr). It is held across the catalog write of
//   the change, which may wait behind a destage transaction; nothing on the
//   data path takes it.
//   Namespace::mu (shared_mutex) guards the maps and every field of
//   ChainNode/FileNode marked "guarded by Namespace::mu". It is never held
//   across catalog or engine I/O: a change takes it exclusively only to
//   publish what the catalog already holds, so lookups, getattr, reads and
//   writes of every chain never wait behind a neighbour's namespace change.
//   FileNode::io serializes data operations on one file: held exclusively by
//   writes, punches, truncates and reclaim, shared by reads.
//   Order: change_mu before mu; FileNode::io before mu; change_mu and io are
//   never held together.
#pragma once

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 314
#endif
#include <fuse_lowlevel.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "catalog/catalog.h"

namespace chainswap {

inline constexpr fuse_ino_t kRootIno = FUSE_ROOT_ID;
inline constexpr fuse_ino_t kChainInoBase = fuse_ino_t{1} << 32;

inline fuse_ino_t ChainIno(int64_t dedup_id) { return kChainInoBase + static_cast<fuse_ino_t>(dedup_id); }
inline fuse_ino_t FileIno(int64_t file_id) { return static_cast<fuse_ino_t>(file_id) + 1; }
inline bool IsChainIno(fuse_ino_t ino) { return ino >= kChainInoBase; }
inline bool IsFileIno(fuse_ino_t ino) { return ino > kRootIno && ino < kChainInoBase; }
inline int64_t DedupIdOf(fuse_ino_t ino) { return static_cast<int64_t>(ino - kChainInoBase); }
inline int64_t FileIdOf(fuse_ino_t ino) { return static_cast<int64_t>(ino - 1); }

struct FileNode {
  explicit FileNode(FileInfo i) : file_id(i.file_id), dedup_id(i.dedup_id), info(std::move(i)) {}
  const int64_t file_id;    // immutable: read without a lock
  const int64_t dedup_id;   // immutable: read without a lock
  std::shared_mutex io;     // see the lock order above
  FileInfo info;            // guarded by Namespace::mu (size also needs io held exclusively to change);
                            // info.mapped_blocks is not kept here (asked at each getattr)
  uint32_t open_count = 0;  // guarded by Namespace::mu_
  bool reclaiming = false;  // guarded by Namespace::mu_
};

struct ChainNode {
  ChainInfo info;                                          // guarded by Namespace::mu_
  std::map<std::string, std::shared_ptr<FileNode>> files;  // guarded by Namespace::mu_
};

struct Namespace {
  std::mutex change_mu;
  std::shared_mutex mu;
  std::map<int64_t, ChainNode> chains;                               // by dedup ID
  std::map<std::string, int64_t> chain_by_name;
  std::unordered_map<int64_t, std::shared_ptr<FileNode>> files;      // by file ID, unlinked too

  // REQUIRES: mu held (shared or exclusive).
  ChainNode* Chain(int64_t dedup_id) {
    auto it = chains.find(dedup_id);
    return it == chains.end() ? nullptr : &it->second;
  }
  std::shared_ptr<FileNode> File(int64_t file_id) {
    auto it = files.find(file_id);
    return it == files.end() ? nullptr : it->second;
  }
};

}  // namespace chainswap
