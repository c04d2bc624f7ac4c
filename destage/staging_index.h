// The staging index (SPEC §2, §5): for every (swap file, LBA) with an op in
// the journal that is not yet retired, the latest such op — a write (where
// its bytes lie in a journal segment: they are read back from there, never
// kept in the index) or a delete.
//
// Deletes are kept as LBA ranges (a truncate or unlink covers millions of
// LBAs); writes per LBA. Invariant: if an LBA has a write entry, it is newer
// than any delete range covering the LBA (a delete erases older writes in its
// range; a write after a delete simply shadows it).
//
// Entries leave the index only when their bucket retires (both destagers
// passed it and the catalog holds their effect durably), so a destager can
// always tell whether an op it is about to apply was superseded by a newer
// one, even if that newer one was already destaged.
//
// Thread-safety: all methods are thread-safe (one reader/writer mutex).
// Appenders (FUSE workers, latency-critical) take it exclusively; the
// destagers and readers take it shared. A waiting writer holds off new
// readers (SharedMutex, catalog/mutex.h): with std::shared_mutex (glibc
// prefers readers) a destager's stream of lookups kept an appender waiting
// for milliseconds. Its lock is a leaf: nothing is called with it held.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "destage/journal_format.h"
#include "catalog/mutex.h"

namespace chainswap {

// One flag per block of a write record's payload: 1 when it is all zeros.
// Empty for a delete.
std::vector<uint8_t> ZeroBlockFlags(const Record& r);

class StagingIndex {
 public:
  // What a read of one staged LBA sees: a delete (zeros), or a write whose
  // 4 KiB lie at `offset` of `segment` (which the hit keeps open), or are
  // all zeros (`zero`: nothing to read).
  struct Hit {
    bool is_write = false;
    bool zero = false;
    std::shared_ptr<Segment> segment;
    uint64_t offset = 0;
  };

  // Gives a write record its supersession bits (all clear), so that Add of
  // a newer op flags the blocks it supersedes in the record itself and a
  // destager can test them without the index lock (IsSuperseded).
  static void Track(Record* r);
  // True when block i of a tracked write record has been superseded by a
  // newer op. Lock-free. REQUIRES: Track(r) before Add(r).
  static bool IsSuperseded(const Record& r, uint64_t i) {
    return (r.superseded[i / 64].load(std::memory_order_acquire) >> (i % 64)) & 1;
  }

  // Records a journaled op as the latest for its LBAs. REQUIRES: ops arrive
  // in increasing seq order; a write is in its segment (r.segment and
  // r.payload_offset set). `zero[i]` says whether block i of a write's
  // payload is all zeros (the caller scanned the payload, outside the lock);
  // without it, Add scans r.data itself (REQUIRES then: r.data set).
  void Add(const Record& r, std::span<const uint8_t> zero = {}) EXCLUDES(mu_);

  // For each LBA of [lba, lba + n): the staged op, or nullopt when the
  // catalog holds the latest state. out is resized to n.
  void Lookup(int64_t file_id, uint64_t lba, uint64_t n, std::vector<std::optional<Hit>>* out) const;

  // True when the write with `seq` is still the latest op for (file, lba).
  bool IsLatestWrite(int64_t file_id, uint64_t lba, uint64_t seq) const;

  // The parts of [lba, end) where the delete with `seq` is not superseded by a
  // newer write, as [first, last) ranges in increasing order.
  std::vector<std::pair<uint64_t, uint64_t>> LiveDeleteRanges(int64_t file_id, uint64_t lba,
                                                              uint64_t end, uint64_t seq) const;

  // Removes the entries that `r` put in and that are still its own.
  void Retire(const Record& r);
  // Retire() of every record of a bucket, a few records per lock hold; an
  // appender waiting for the lock goes first (a retirement is not urgent,
  // an acknowledgement is).
  void RetireAll(std::span<const Record> records);

  // Number of staged write blocks of one file.
  uint64_t StagedWrites(int64_t file_id) const;

  // What the staged ops of one file do to its allocated blocks: the LBAs
  // they cover (writes and deletes, merged into sorted disjoint [first,
  // last) ranges) and how many of them end up holding data (non-zero
  // writes). Together with the catalog's mapping of the covered ranges this
  // gives the exact allocated-block count before destage. nullopt when the
  // ranges would be more than `max_ranges` (the caller estimates instead).
  struct Footprint {
    std::vector<std::pair<uint64_t, uint64_t>> covered;
    uint64_t data_blocks = 0;
  };
  std::optional<Footprint> StagedFootprint(int64_t file_id, size_t max_ranges) const;

  // Number of staged write blocks and delete ranges (for stats and tests).
  std::pair<uint64_t, uint64_t> Size() const;

 private:
  struct WriteEntry {
    uint64_t seq;
    std::shared_ptr<Segment> segment;  // holds the record
    uint64_t offset;                   // of the block's bytes in the segment
    std::shared_ptr<std::atomic<uint64_t>[]> superseded;  // the record's bits (may be null)
    uint32_t block;  // index of the block inside its record
    bool zero;       // the block is all zeros (a hole once destaged)
  };
  // Flags e's block in its record as superseded (an atomic in the record:
  // called with mu_ held, which it needs for nothing else).
  static void MarkSuperseded(const WriteEntry& e);
  struct DeleteRange {
    uint64_t end;  // exclusive
    uint64_t seq;
  };
  struct FileIndex {
    std::map<uint64_t, WriteEntry> writes;    // by LBA
    std::map<uint64_t, DeleteRange> deletes;  // by first LBA; non-overlapping
    uint64_t zero_writes = 0;                 // entries of `writes` with zero set
  };

  // The delete range of f covering lba, if any (f is a value the caller
  // reads under mu_).
  static const DeleteRange* Covering(const FileIndex& f, uint64_t lba, uint64_t* start);

  // Retire() of one record.
  void RetireLocked(const Record& r) REQUIRES(mu_);
  // True when none of r's entries can still be its own (all superseded).
  static bool FullySuperseded(const Record& r);

  mutable SharedMutex mu_;
  std::atomic<int> adders_waiting_{0};  // Add calls waiting for mu_ (read lock-free by RetireAll)
  std::unordered_map<int64_t, FileIndex> files_ GUARDED_BY(mu_);
  uint64_t write_entries_ GUARDED_BY(mu_) = 0;
};

}  // namespace chainswap
