// ChainswapFs: the logic of every FUSE operation, one Do* function each,
// returning 0 or an errno (SPEC §3). fs/fuse_ops.cc holds the thin handlers
// that call these and send exactly one reply. No exception leaves a Do*.
//
// Thread-safety: all Do* functions are called concurrently by libfuse's
// worker threads; see fs/namespace.h for the locks and their order.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "catalog/backing_dir.h"
#include "destage/engine.h"
#include "fs/namespace.h"
#include "fs/stats_reporter.h"

namespace chainswap {

// Maps a Status to the errno answered at the FUSE edge, logging real faults.
int ToErrno(const Status& st, const char* op);

class ChainswapFs {
 public:
  ChainswapFs(BackingDir& backing, Engine& engine);
  // The source of the destage xattrs. REQUIRES: called before the session
  // loop starts (not synchronized).
  void set_reporter(StatsReporter* r) { reporter_ = r; }

  // Loads chains and files from the catalog, applies the sizes the journal
  // replay found newer (`replayed`), and queues the reclaim of files that
  // were unlinked but not yet reclaimed when the last daemon stopped.
  Status Load(const std::map<int64_t, ReplayedMeta>& replayed);

  int DoLookup(fuse_ino_t parent, const std::string& name, fuse_entry_param* e);
  int DoGetattr(fuse_ino_t ino, struct stat* st);
  int DoSetattr(fuse_ino_t ino, const struct stat& attr, int to_set, struct stat* out);
  int DoMkdir(fuse_ino_t parent, const std::string& name, mode_t mode, uid_t uid, gid_t gid,
              fuse_entry_param* e);
  int DoRmdir(fuse_ino_t parent, const std::string& name);
  int DoCreate(fuse_ino_t parent, const std::string& name, mode_t mode, uid_t uid, gid_t gid,
               fuse_entry_param* e);
  int DoUnlink(fuse_ino_t parent, const std::string& name);
  int DoRename(fuse_ino_t parent, const std::string& name, fuse_ino_t newparent,
               const std::string& newname, unsigned flags);
  int DoOpen(fuse_ino_t ino, int flags);
  int DoRelease(fuse_ino_t ino);
  // Reads into out (at least `size` bytes); *got is the byte count.
  int DoRead(fuse_ino_t ino, uint64_t off, size_t size, uint8_t* out, size_t* got);
  int DoWrite(fuse_ino_t ino, uint64_t off, const char* buf, size_t size);
  int DoFsync(fuse_ino_t ino);
  int DoFallocate(fuse_ino_t ino, int mode, off_t off, off_t len);
  int DoReaddir(fuse_ino_t ino, std::vector<DirEntry>* out);
  int DoStatfs(struct statvfs* st);
  // Chain directories: user.chainswap.{dedup_id,files,...}; the root and
  // chain directories: user.chainswap.destage.{w_bucket,x_bucket,...}.
  int DoGetxattr(fuse_ino_t ino, const std::string& name, std::string* value);
  int DoListxattr(fuse_ino_t ino, std::string* names);
  // The migration control xattrs of a swap file (fs/migration.h), for root
  // (`uid` 0) only; any other name is EOPNOTSUPP.
  int DoSetxattr(fuse_ino_t ino, const std::string& name, const std::string& value, uid_t uid);
  int DoLseek(fuse_ino_t ino, off_t off, int whence, off_t* out);
  // copy_file_range within one chain: block-aligned ranges are cloned in
  // O(metadata) (LAT copy + refcounts); others are copied through the engine.
  // EXDEV across chains.
  int DoCopyFileRange(fuse_ino_t in, uint64_t off_in, fuse_ino_t out, uint64_t off_out, size_t len,
                      size_t* copied);

  // Attributes/entry timeouts handed to the kernel.
  static constexpr double kAttrTimeout = 1.0;
  // Mode bits a swap file may carry: never setuid or setgid (they are
  // dropped on create and chmod), so there is nothing for the kernel to
  // clear on write, and the mount can take over that duty
  // (FUSE_HANDLE_KILLPRIV_V2, see fs/fuse_io.h).
  static constexpr mode_t kFileModeBits = 01777;

 private:
  void FillChainAttr(const ChainInfo& c, struct stat* st);
  void FillFileAttr(const FileInfo& f, uint64_t mapped_blocks, struct stat* st);
  void FillRootAttr(struct stat* st);
  uint64_t MappedBlocks(int64_t file_id);
  // Truncates a file to 0 for an open with O_TRUNC (takes f's io lock).
  int TruncateOnOpen(const std::shared_ptr<FileNode>& f);
  // Changes the size of `f` from old_size to meta.size through the engine.
  // REQUIRES: f.io held exclusively.
  Status ResizeLocked(FileNode& f, uint64_t old_size, const FileMetaUpdate& meta);
  // Reclaims an unlinked file's blocks unless it is still open.
  void MaybeReclaim(const std::shared_ptr<FileNode>& node);

  BackingDir& backing_;
  Catalog& catalog_;
  Engine& engine_;
  StatsReporter* reporter_ = nullptr;
  Namespace ns_;
};

}  // namespace chainswap
