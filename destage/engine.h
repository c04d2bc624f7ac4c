// The block engine: byte-level swap-file I/O on top of the catalog's block
// operations (SPEC §3, §4, §5).
//
// The FUSE edge talks to swap files only through this class. It turns byte
// ranges into whole-block operations (read-modify-write of partial blocks),
// writes and deletes blocks, and reads the latest acknowledged data.
//
// In this version every operation is applied to the catalog synchronously
// through Catalog::ApplyBlockOps; the write-back journal, the staging index
// and the two destagers slot in behind the same interface.
//
// Thread-safety: all methods may be called concurrently for different files.
// REQUIRES: for one file, the caller excludes a write/delete/truncate running
// concurrently with any other operation on that file (fs/ holds the file's
// io lock exclusively for mutations and shared for reads).
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <string>

#include "catalog/catalog.h"
#include "catalog/status.h"

namespace chainswap {

struct FileRef {
  int64_t file_id = 0;
  int64_t dedup_id = 0;
};

struct EngineOptions {
  // Blocks per catalog transaction when deleting large ranges.
  uint64_t delete_batch_blocks = 1u << 16;
};

struct EngineCounters {
  std::atomic<uint64_t> blocks_written{0};   // whole blocks accepted by Write
  std::atomic<uint64_t> blocks_stored{0};    // new blocks in the content store
  std::atomic<uint64_t> blocks_deduped{0};   // writes matched to an existing block
  std::atomic<uint64_t> blocks_freed{0};     // blocks whose refcount fell to 0
  std::atomic<uint64_t> collisions{0};       // verified hash collisions
};

class Engine {
 public:
  Engine(Catalog& catalog, EngineOptions options);
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Writes `data` at byte `offset`. `size` is the file size before the write;
  // bytes of partial blocks outside the range are preserved (bytes at or past
  // `size` read as zeros). `meta` (new size and times) commits atomically
  // with the data.
  Status Write(FileRef f, uint64_t offset, std::span<const uint8_t> data, uint64_t size,
               const FileMetaUpdate& meta);

  // Reads up to `len` bytes at `offset` of a file of `size` bytes into out;
  // returns the number of bytes read (0 at or past EOF). Holes read as zeros.
  Result<size_t> Read(FileRef f, uint64_t offset, size_t len, uint64_t size, uint8_t* out);

  // Makes [offset, offset+len) read as zeros (punch hole / zero range / the
  // tail of a truncate): partial blocks are rewritten, whole blocks deleted.
  // `size` is the file size; nothing at or past it is touched.
  Status Zero(FileRef f, uint64_t offset, uint64_t len, uint64_t size, const FileMetaUpdate& meta);

  // Changes the size: shrinking deletes the blocks past the new end and zeroes
  // the tail of the last partial block, so a later grow reads zeros.
  Status Truncate(FileRef f, uint64_t old_size, uint64_t new_size, const FileMetaUpdate& meta);

  // Deletes every block of an unlinked file and then its catalog row.
  Status Reclaim(FileRef f, uint64_t size);

  // Makes every acknowledged operation durable.
  Status Sync();

  // First offset >= `offset` holding data (SEEK_DATA), or nullopt past the last.
  Result<std::optional<uint64_t>> NextData(FileRef f, uint64_t offset);

  const EngineCounters& counters() const { return counters_; }
  Catalog& catalog() { return catalog_; }

 private:
  Status DeleteRange(FileRef f, uint64_t first_lba, uint64_t end_lba, const FileMetaUpdate* meta);
  Status WriteWholeBlocks(FileRef f, uint64_t lba, const uint8_t* blocks, uint64_t count,
                          const FileMetaUpdate* meta);
  void Count(const ApplyResult& r);

  Catalog& catalog_;
  const EngineOptions options_;
  EngineCounters counters_;
};

}  // namespace chainswap
