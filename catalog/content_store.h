// The content store (SPEC §2): one file of 4 KiB slots shared by all chains.
//
// Slot s lives at byte offset s * kBlockSize. The store only does slot I/O;
// which slots are free is the catalog's business (SlotAllocator), because
// allocation must be transactional with the PAT. A freed slot is given back
// to the backing filesystem with fallocate(PUNCH_HOLE|KEEP_SIZE).
//
// Errors: every call returns a Status whose code is the errno of the failed
// syscall (ENOSPC when the backing filesystem is full, EIO otherwise).
//
// Thread-safety: all methods are safe to call concurrently (positional I/O on
// one file descriptor); callers ensure they do not write a slot that another
// thread is reading (the catalog's refcounts guarantee it).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "catalog/status.h"

namespace chainswap {

class ContentStore {
 public:
  ~ContentStore();
  ContentStore(const ContentStore&) = delete;
  ContentStore& operator=(const ContentStore&) = delete;

  // Opens an existing store file read-write (or read-only).
  static Result<std::unique_ptr<ContentStore>> Open(const std::string& path, bool read_only = false);
  // Creates an empty store file (0600); fails with EEXIST if present.
  static Status Create(const std::string& path);
  // A store that keeps nothing, for benchmarks of the catalog alone
  // (chainswap-catalog-bench): writes, punches and syncs succeed and drop
  // their data, reads fail with EIO, the length is one past the highest
  // slot written. Never used by the daemon or the tools.
  static std::unique_ptr<ContentStore> OpenDiscarding();

  // Reads `count` consecutive slots starting at `slot` into out (count*4 KiB).
  // EIO when the file ends before them (a damaged store: never zeros).
  Status ReadSlots(uint64_t slot, uint32_t count, uint8_t* out) const;
  // Writes `count` consecutive slots.
  Status WriteSlots(uint64_t slot, uint32_t count, const uint8_t* data);
  // Writes blocks.size() consecutive slots from `slot` on, slot + i from
  // blocks[i] (each kBlockSize bytes): a gather write, no copy.
  Status WriteSlots(uint64_t slot, std::span<const uint8_t* const> blocks);
  // Sector I/O for compressed blocks (sector s at byte s * 512, slot p
  // holding sectors [8p, 8p + 8); catalog/sector_allocator.h). Reads
  // `count` sectors from `first` into out; EIO when the file ends first.
  Status ReadSectors(uint64_t first, uint32_t count, uint8_t* out) const;
  // Writes `count` sectors from `first` on from `data` (count * 512 bytes).
  Status WriteSectors(uint64_t first, uint64_t count, const uint8_t* data);
  // Gives a slot's space back to the backing filesystem.
  Status PunchSlot(uint64_t slot);
  // Punches `count` consecutive slots in one call.
  Status PunchSlots(uint64_t slot, uint64_t count);
  // Shrinks the file so that it ends at slot `end_slot` (exclusive).
  Status TruncateToSlots(uint64_t end_slot);
  // fdatasync of the store file.
  Status Sync();

  // Bytes the backing filesystem has allocated for the store (st_blocks*512).
  Result<uint64_t> AllocatedBytes() const;
  // The slots the backing filesystem holds data for, as [first, end)
  // ranges (SEEK_DATA / SEEK_HOLE; a filesystem without holes reports the
  // whole file). For fsck's leak check.
  Result<std::vector<std::pair<uint64_t, uint64_t>>> DataSlotRanges() const;
  // File length in slots (rounded up).
  Result<uint64_t> LengthSlots() const;
  const std::string& path() const { return path_; }

 private:
  ContentStore(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;  // -1: a discarding store
  std::string path_;
  std::atomic<uint64_t> discard_end_{0};  // a discarding store's length in slots
};

}  // namespace chainswap
