// The two destagers (SPEC §5): background threads that take the bucket
// journal's sealed buckets oldest first and apply them to the catalog —
// the write destager the writes, the delete destager the deletes (and the
// reclaims of unlinked files) — each skipping ops a newer op superseded, in
// batches sized by the logical queue. A bucket retires (the journal drops
// it) once both have passed it and the catalog holds its effects durably.
//
// An op whose target no longer exists is obsolete, never an error: a chain's
// row outlives every record of its files, so a missing chain means the file
// was reclaimed. Only a real I/O error of the backing store stops destage
// (sticky: BucketJournal::SetDestageError, shown in stats and xattrs); a
// full store or backing fs only pauses it.
//
// Threads: cs-destage-w and cs-destage-x run Loop(); cs-retire runs
// RetireLoop(), woken by a destager that passed a bucket, so that the syncs
// of a retirement never stall destage; Drain may be called from any
// thread.
//
// Retirement first lets the journal make the newer ops that superseded
// skipped ops of the bucket durable when an fsync covered the bucket
// (BucketJournal::PrepareRetire), then commits and syncs the catalog, then
// drops the bucket.
//
// Thread-safety: all public methods are thread-safe. Locks, in order:
// retire_mu_ (one retirement at a time; the journal's sync_mu_ is taken
// under it), then the file stripes (write
// destager: every stripe of a batch, in increasing index order; delete
// destager: one at a time), then mu_ (cursors, deferred reclaims); the
// journal's, the staging index's, the logical queue's and the catalog's
// locks are leaves below them. mu_ is never held across catalog or file
// I/O; the stripes are (they order a file's check-and-apply), but no
// request path takes them.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <thread>

#include "catalog/catalog.h"
#include "catalog/write_prep.h"
#include "catalog/mutex.h"
#include "destage/bucket_journal.h"
#include "destage/logical_queue.h"
#include "destage/staging_index.h"

namespace chainswap {

struct EngineCounters {
  std::atomic<uint64_t> blocks_written{0};   // whole blocks acknowledged
  std::atomic<uint64_t> blocks_stored{0};    // new blocks in the content store
  std::atomic<uint64_t> blocks_deduped{0};   // writes matched to an existing block
  std::atomic<uint64_t> blocks_freed{0};     // blocks whose refcount fell to 0
  std::atomic<uint64_t> collisions{0};       // verified hash collisions
  std::atomic<uint64_t> writes_absorbed{0};  // staged write blocks superseded before destage
  std::atomic<uint64_t> ops_destaged{0};     // records fully handled by a destager
  std::atomic<uint64_t> enospc{0};           // writes refused for lack of space
  std::atomic<uint64_t> fsyncs_destaged{0};  // fsyncs made durable by destage, not by a journal sync
};

struct DestagerOptions {
  SlotPolicyConfig queue;      // N, D_min, thresholds
  uint32_t idle_seal_ms = 20;  // seal a non-empty bucket after this idle time
  // Write-back delay (lazy write destage): the write destager leaves a
  // sealed bucket alone until it is this old (from its creation), so that
  // overwrites appended meanwhile supersede its ops and they are skipped
  // instead of written to the store; 0 destages at once. It goes ahead
  // earlier when the journal holds write_high_water bytes or more, when
  // someone waits for destage (Drain, WaitRetiredThrough: fsync by
  // destage, unmount) and when stopping.
  uint32_t write_delay_ms = 0;
  uint64_t write_high_water = 0;  // 0: no byte trigger (the delay alone)
};

class Destagers {
 public:
  Destagers(Catalog& catalog, StagingIndex& index, BucketJournal& journal, EngineCounters& counters,
            DestagerOptions options);
  ~Destagers();  // stops the threads
  Destagers(const Destagers&) = delete;
  Destagers& operator=(const Destagers&) = delete;

  // Both cursors start at `first_bucket` (BucketJournal::Open's answer).
  void Reset(uint64_t first_bucket) EXCLUDES(mu_);
  // Starts the three threads (after fuse_daemonize: threads do not survive
  // its fork).
  void Start();
  // Stops and joins the threads (the journal is told to stop first).
  void Join();
  bool running() const { return write_thread_.joinable(); }

  // Blocks until every bucket sealed so far is retired and every deferred
  // reclaim ran. With give_up_when_store_full, returns ENOSPC instead of
  // waiting while destage waits for space (used by Stop: the journal keeps
  // the rest). ETIMEDOUT while the content store (RADOS) does not answer.
  // ECANCELED when stopping.
  Status Drain(bool give_up_when_store_full = false) EXCLUDES(mu_);

  // Waits until every bucket up to `bucket` is retired (sealing the open
  // one if it is among them), i.e. their effects are durable in the catalog
  // and the store, for at most `max_wait`. True once they are; false on
  // timeout, while destage waits for space, when stopping or after a
  // destage error (the caller then makes them durable another way).
  bool WaitRetiredThrough(uint64_t bucket, std::chrono::milliseconds max_wait) EXCLUDES(mu_);

  // A reclaim that could not be journaled (backing fs full): run from
  // memory once both destagers passed bucket `after_bucket`.
  void DeferReclaim(Record r, uint64_t after_bucket) EXCLUDES(mu_);

  // What the logical queue's policy looks at.
  DestageSnapshot Snapshot() EXCLUDES(mu_);
  uint32_t queue_slots() const { return queue_.n(); }
  uint32_t delete_slots() const { return queue_.delete_slots(); }
  uint64_t policy_changes() const { return queue_.policy_changes(); }
  // Next bucket of each destager.
  std::pair<uint64_t, uint64_t> Cursors() EXCLUDES(mu_);

 private:
  void Loop(IoKind kind) EXCLUDES(mu_);
  // Write destager, before bucket `b`: waits while the write-back delay
  // says to (DestagerOptions::write_delay_ms).
  void DelayWrites(const Bucket& b) EXCLUDES(mu_);
  // Held while a caller waits for destage: the write destager stops
  // delaying (DelayWrites) as long as one is alive.
  class Urgency {
   public:
    explicit Urgency(Destagers* d);
    ~Urgency();
    Urgency(const Urgency&) = delete;
    Urgency& operator=(const Urgency&) = delete;

   private:
    Destagers* d_;
  };
  Status ProcessWrites(const Bucket& b, size_t* next_record) EXCLUDES(mu_);
  Status ProcessDeletes(const Bucket& b, size_t* next_record) EXCLUDES(mu_);
  // Applies one delete record to the catalog (the parts no newer write
  // superseded), then drops the file when the record says so.
  // *skipped is set when newer writes superseded part of the range (those
  // LBAs are left as the catalog has them).
  Status ApplyDelete(const Record& r, bool* skipped) EXCLUDES(mu_);
  // Delete destager, when it has no sealed bucket: runs the oldest deferred
  // reclaim once both destagers have passed every bucket appended before
  // it. True when one ran.
  bool RunDeferredReclaim() EXCLUDES(mu_);
  // Delete destager, idle with an empty journal: makes recent frees durable
  // so space comes back, and shrinks the catalog's WAL.
  void IdleCatalogSync();
  // cs-retire: retires whatever both destagers passed, each time one of
  // them passes a bucket (WakeRetirer), until stopping or a destage error.
  void RetireLoop() EXCLUDES(mu_);
  void WakeRetirer() EXCLUDES(mu_);
  void TryRetire() EXCLUDES(mu_);
  // The keyed hasher of a chain, through a per-batch cache. ENOENT once the
  // chain is gone (then so are all its files: their records are obsolete).
  using HasherCache = std::map<int64_t, std::shared_ptr<const BlockHasher>>;
  Result<const BlockHasher*> HasherFor(int64_t dedup_id, HasherCache* cache);
  Mutex& Stripe(int64_t file_id) { return stripes_[static_cast<uint64_t>(file_id) % stripes_.size()]; }

  Catalog& catalog_;
  StagingIndex& index_;      // thread-safe itself
  BucketJournal& journal_;   // thread-safe itself
  EngineCounters& counters_;
  const DestagerOptions options_;
  LogicalQueue queue_;       // thread-safe itself

  Mutex retire_mu_ ACQUIRED_BEFORE(mu_);
  // Serialize the check-and-apply of one file (by file ID modulo 64) so a
  // superseded op can never be applied after the op that superseded it.
  // The analysis does not follow array elements: their order (after
  // retire_mu_, before mu_, increasing index) is by convention.
  std::array<Mutex, 64> stripes_;

  Mutex mu_;
  CondVar progress_cv_{&mu_};  // Drain waits for retirement and reclaims
  uint64_t w_cursor_ GUARDED_BY(mu_) = 1;  // first bucket the write destager has not passed
  uint64_t x_cursor_ GUARDED_BY(mu_) = 1;  // first bucket the delete destager has not passed
  uint64_t w_record_ GUARDED_BY(mu_) = 0;  // progress inside bucket w_cursor_ (records)
  uint64_t x_record_ GUARDED_BY(mu_) = 0;
  bool delete_blocked_ GUARDED_BY(mu_) = false;  // the delete destager hit ENOSPC (logged once)
  // Each destager's thread only: its last batch found the content store
  // unreachable (IsStoreUnreachable; logged once per outage).
  std::atomic<bool> w_unreachable_{false};
  std::atomic<bool> x_unreachable_{false};
  bool StoreUnreachable() const {
    return w_unreachable_.load(std::memory_order_relaxed) || x_unreachable_.load(std::memory_order_relaxed);
  }
  CondVar retire_cv_{&mu_};                      // wakes cs-retire
  bool retire_wanted_ GUARDED_BY(mu_) = false;   // a destager passed a bucket since cs-retire looked
  struct DeferredReclaim {
    uint64_t after_bucket;  // run once both cursors are past this bucket
    Record record;
    bool failed = false;    // an attempt failed (logged once); retried when idle
  };
  std::deque<DeferredReclaim> deferred_reclaims_ GUARDED_BY(mu_);

  // Mirror of the journal's stopping flag, read lock-free between batches.
  std::atomic<bool> stopping_{false};
  // Callers waiting for destage now (Urgency): no write-back delay.
  std::atomic<int> urgent_{0};
  // Owned by the write destager thread: a batch's payloads, read from its
  // sealed segment with pread (sized once; no mapping whose pages reclaim
  // could evict and the destager would then fault back in, see
  // fs/memory_guard.h). kBatchBufferBytes in destagers.cc.
  std::unique_ptr<uint8_t[]> batch_buf_;
  // With compression on: compresses each batch's probably new blocks on
  // its own thread while the write destager applies the batch. Created by
  // Start(), dropped by Join(); used by the write destager only.
  std::unique_ptr<WritePrep> prep_;
  // Owned by the delete destager thread (its idle work): no lock.
  uint64_t idle_synced_ops_ = 0;  // ops_destaged at the last idle catalog sync
  int64_t idle_wal_try_ns_ = 0;   // when the last idle catalog sync ran
  std::thread write_thread_, delete_thread_, retire_thread_;
};

}  // namespace chainswap
