// The block engine and destage coordinator (SPEC §3-§5).
//
// The FUSE edge talks to swap files only through this class:
//
//   Write / Zero / Truncate / Reclaim  build whole-block operations (with
//       read-modify-write of partial blocks), append them to the write-back
//       journal (one record per op, a sequence number each), record them in
//       the staging index and return: the op is acknowledged.
//   Read  overlays the staging index (latest unretired op per LBA) on the
//       catalog, so it always returns the latest acknowledged data.
//   Sync  fdatasyncs the journal: every acknowledged op survives power loss.
//
// Two background threads destage the journal, bucket by bucket, oldest
// first: the write destager applies writes, the delete destager applies
// deletes, each skipping ops superseded by a newer one and applying the rest
// through Catalog::ApplyBlockOps, in batches sized by the logical queue.
// A bucket retires (index entries dropped, segment deleted) once both have
// passed it and their effects are durable (store and catalog synced).
//
// Threads and what they own:
//   FUSE workers   call the public API; append under append_mu_.
//   write destager owns w_cursor_ advances; delete destager owns x_cursor_.
//   Retirement runs on whichever destager passes a bucket last (retire_mu_).
// Locks (order: file stripe -> mu_; append_mu_ -> mu_; index and catalog
// locks are leaves): see the fields below.
//
// REQUIRES (callers): for one file, a mutation never runs concurrently with
// any other operation on that file (fs/ holds the file's io lock).
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>

#include "catalog/catalog.h"
#include "catalog/status.h"
#include "destage/journal.h"
#include "destage/logical_queue.h"
#include "destage/staging_index.h"

namespace chainswap {

struct FileRef {
  int64_t file_id = 0;
  int64_t dedup_id = 0;
};

struct EngineOptions {
  std::string journal_dir;                   // BACKING/journal
  uint64_t bucket_bytes = 16ull << 20;       // seal a bucket at this size
  uint64_t journal_limit = 256ull << 20;     // writers wait above this
  uint32_t idle_seal_ms = 20;                // seal a non-empty bucket after this idle time
  uint64_t backing_reserve = 64ull << 20;    // keep this much of the backing fs free
  SlotPolicyConfig queue;                    // N, D_min, thresholds
  bool start_destagers = true;               // tests may drive destage by hand
};

// Returns the problems with `o` (empty when valid).
std::vector<std::string> ValidateEngineOptions(const EngineOptions& o);

struct EngineCounters {
  std::atomic<uint64_t> blocks_written{0};   // whole blocks acknowledged
  std::atomic<uint64_t> blocks_stored{0};    // new blocks in the content store
  std::atomic<uint64_t> blocks_deduped{0};   // writes matched to an existing block
  std::atomic<uint64_t> blocks_freed{0};     // blocks whose refcount fell to 0
  std::atomic<uint64_t> collisions{0};       // verified hash collisions
  std::atomic<uint64_t> writes_absorbed{0};  // staged write blocks superseded before destage
  std::atomic<uint64_t> ops_destaged{0};     // records fully handled by a destager
  std::atomic<uint64_t> enospc{0};           // writes refused for lack of space
};

struct EngineStats {
  uint64_t w_bucket = 0, x_bucket = 0;   // next bucket of each destager
  uint32_t n = 0, d = 0;                 // logical queue
  uint64_t journal_bytes = 0, journal_limit = 0;
  uint64_t buckets = 0;                  // unretired
  uint64_t staged_write_blocks = 0, staged_delete_ranges = 0;
  uint64_t pending_records = 0;          // not yet destaged by their destager
  uint64_t writes_absorbed = 0, ops_destaged = 0, blocks_stored = 0, blocks_deduped = 0,
           blocks_freed = 0, enospc = 0, policy_changes = 0;
  double store_usage = 0;
  std::string error;                     // sticky background error, if any
};

// Size and mtime of a file as its newest journal record left it.
struct ReplayedMeta {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};

class Engine {
 public:
  Engine(Catalog& catalog, EngineOptions options);
  ~Engine();  // stops the destagers
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Replays the journal (SPEC §5 crash safety): reads every segment in order,
  // cuts a torn tail, rebuilds buckets and the staging index, and reports the
  // newest size of every file with records in *meta. Reads and writes work
  // from here on. EUCLEAN for a journal corrupt in the middle.
  Status Open(std::map<int64_t, ReplayedMeta>* meta);
  // Starts the two destager threads (after fuse_daemonize: threads do not
  // survive its fork). No-op when options.start_destagers is false.
  void Start();
  // Destages everything (when the destagers run), stops them and syncs. What
  // cannot be destaged (after a background error) stays in the journal.
  Status Stop();

  // Writes `data` at byte `offset` of a file whose size is `size`; `meta`
  // carries the size and times after the write. Waits while the journal is
  // full; ENOSPC when the content store cannot take more.
  Status Write(FileRef f, uint64_t offset, std::span<const uint8_t> data, uint64_t size,
               const FileMetaUpdate& meta);
  // Reads up to `len` bytes at `offset` of a file of `size` bytes; returns
  // the number of bytes read. Holes read as zeros.
  Result<size_t> Read(FileRef f, uint64_t offset, size_t len, uint64_t size, uint8_t* out);
  // Makes [offset, offset+len) (clipped to `size`) read as zeros.
  Status Zero(FileRef f, uint64_t offset, uint64_t len, uint64_t size, const FileMetaUpdate& meta);
  // Changes the size; shrinking deletes what lies past the new end.
  Status Truncate(FileRef f, uint64_t old_size, uint64_t new_size, const FileMetaUpdate& meta);
  // Queues the reclaim of an unlinked file: all its blocks, then its row.
  // Returns at once; the delete destager does the work.
  Status Reclaim(FileRef f, uint64_t size);
  // O(metadata) clone of whole blocks: after it, dst's [dst_lba, +count)
  // reads as src's [src_lba, +count). Drains the journal first so both
  // files' ops are in the catalog, clones there, syncs the catalog, and
  // journals dst's new size (`meta`). EXDEV across chains.
  // REQUIRES: the caller holds both files' io locks (dst exclusively).
  Status CloneBlocks(FileRef src, FileRef dst, uint64_t src_lba, uint64_t dst_lba, uint64_t count,
                     const FileMetaUpdate& meta);

  // Makes every op acknowledged before the call durable: journal segments,
  // then the catalog (namespace changes) and the store. Returns only once an
  // fdatasync that started after those appends has succeeded (concurrent
  // callers share rounds). After a failed journal fdatasync, returns EIO
  // from then on (sticky until the next mount).
  Status Sync();
  // First offset >= `offset` that may hold data (SEEK_DATA), or nullopt.
  Result<std::optional<uint64_t>> NextData(FileRef f, uint64_t offset, uint64_t size);

  // Blocks until every bucket sealed so far is retired (tests, tools, bench).
  // With give_up_when_store_full, returns ENOSPC instead of waiting while the
  // write destager waits for space (used by Stop: the journal keeps them).
  Status Drain(bool give_up_when_store_full = false);

  EngineStats Stats();
  // Write blocks of a file still in the staging index.
  uint64_t StagedWriteBlocks(int64_t file_id) const { return index_.StagedWrites(file_id); }
  // What the staged ops of a file cover (see StagingIndex::StagedFootprint).
  std::optional<StagingIndex::Footprint> StagedFootprint(int64_t file_id, size_t max_ranges) const {
    return index_.StagedFootprint(file_id, max_ranges);
  }
  const EngineCounters& counters() const { return counters_; }
  Catalog& catalog() { return catalog_; }

 private:
  struct Bucket;
  // Appends one record. space_exempt: a delete, or a rewrite that replaces a
  // block (edges of a punch/truncate), never refused for space. `zero`: the
  // write's zero-block flags when the caller has them (else scanned here).
  Status Append(Record r, bool space_exempt, std::vector<uint8_t> zero = {});
  // Appends blocks [lba, lba + n) of a write held in buf: runs of zero
  // blocks as delete records, the rest as write records sharing buf.
  Status AppendBlocks(FileRef f, uint64_t lba, uint64_t n, std::shared_ptr<uint8_t[]> buf,
                      const FileMetaUpdate& meta, bool space_exempt);
  Status WriteRecords(FileRef f, uint64_t offset, std::span<const uint8_t> data, uint64_t size,
                      const FileMetaUpdate& meta, bool space_exempt);
  Status ReadBlocks(int64_t file_id, uint64_t lba, uint64_t n, uint8_t* out);
  Status CheckSpaceLocked(uint64_t new_blocks);      // REQUIRES: mu_
  void SealLocked();                                 // REQUIRES: mu_
  // Re-reads the backing fs's free space when the cached figure is older
  // than 100 ms. REQUIRES: mu_
  void RefreshBackingLocked();
  void DestagerLoop(IoKind kind);
  Status ProcessWrites(const Bucket& b, size_t* next_record);
  // The keyed hasher of a chain, through a per-batch cache. ENOENT once the
  // chain is gone (then so are all its files: their records are obsolete).
  using HasherCache = std::map<int64_t, std::shared_ptr<const BlockHasher>>;
  Result<const BlockHasher*> HasherFor(int64_t dedup_id, HasherCache* cache);
  Status ProcessDeletes(const Bucket& b, size_t* next_record);
  // Applies one delete record to the catalog (the parts no newer write
  // superseded), then drops the file when the record says so.
  Status ApplyDelete(const Record& r);
  // Delete destager, when it has no sealed bucket: runs the oldest deferred
  // reclaim once both destagers have passed every bucket appended before
  // it. True when one ran.
  bool RunDeferredReclaim();
  void TryRetire();
  DestageSnapshot Snapshot();
  void SetBackgroundError(const Status& st);
  std::mutex& Stripe(int64_t file_id) { return stripes_[static_cast<uint64_t>(file_id) % stripes_.size()]; }

  Catalog& catalog_;
  const EngineOptions options_;
  EngineCounters counters_;
  StagingIndex index_;      // thread-safe itself
  LogicalQueue queue_;      // thread-safe itself

  // Serializes destager check-and-apply per file, so a superseded op can
  // never be applied after the op that superseded it.
  std::array<std::mutex, 64> stripes_;
  // Serializes appends: sequence order = file order within a segment.
  std::mutex append_mu_;
  // Serializes retirement.
  std::mutex retire_mu_;
  // One round of journal fdatasyncs at a time (Sync); taken before mu_.
  std::mutex sync_mu_;

  std::mutex mu_;
  std::condition_variable work_cv_;   // destagers wait for sealed buckets
  std::condition_variable space_cv_;  // writers wait for journal space; Drain waits
  // --- guarded by mu_ ---
  std::deque<std::shared_ptr<Bucket>> buckets_;  // unretired, oldest first
  // Reclaims whose journal record could not be appended (backing fs full);
  // safe without one because the unlink is already in the catalog.
  struct DeferredReclaim {
    uint64_t after_bucket;  // run once both cursors are past this bucket
    Record record;
    bool failed = false;    // an attempt failed (logged once); retried when idle
  };
  std::deque<DeferredReclaim> deferred_reclaims_;
  uint64_t next_seq_ = 1;
  uint64_t next_bucket_ = 1;
  uint64_t journal_bytes_ = 0;
  uint64_t w_cursor_ = 1;      // first bucket the write destager has not passed
  uint64_t x_cursor_ = 1;      // first bucket the delete destager has not passed
  uint64_t w_record_ = 0;      // progress inside bucket w_cursor_ (records)
  uint64_t x_record_ = 0;
  uint64_t staged_write_blocks_ = 0;  // appended, not yet passed by the write destager
  bool store_full_ = false;           // the write destager hit ENOSPC
  bool delete_blocked_ = false;       // the delete destager hit ENOSPC (logged once)
  bool stop_ = false;
  Status bg_error_;                   // sticky
  Status journal_error_;              // a journal fdatasync failed: sticky, every Sync reports it
  int64_t last_append_ns_ = 0;
  int64_t backing_checked_ns_ = 0;
  uint64_t backing_free_ = UINT64_MAX;
  double backing_usage_ = 0.0;        // used fraction of the backing fs

  std::atomic<bool> stopping_{false};  // mirror of stop_ for lock-free checks
  // --- owned by the delete destager thread (its idle work) ---
  uint64_t idle_synced_ops_ = 0;      // ops_destaged at the last idle catalog sync
  int64_t idle_wal_try_ns_ = 0;       // when the last idle catalog sync ran
  std::thread write_thread_, delete_thread_;
};

}  // namespace chainswap
