// The bucket journal (SPEC §5): the write-back journal as a sequence of
// buckets, one segment file each, and everything about getting a record
// into it and making it durable:
//
//   admission  a writer waits while the journal is over its limit, and is
//              refused (ENOSPC) when the content store could not take the
//              blocks it stages, or (EIO) once destage has stopped;
//   append     a sequence number, the segment write, the staging index;
//   sealing    a bucket is sealed at its size, on demand, or when idle, and
//              only sealed buckets are handed to the destagers;
//   fsync      a durable watermark per bucket, advanced only after an
//              fdatasync succeeded; a failed one is sticky;
//   replay     Open rebuilds the buckets and the staging index from the
//              segment files;
//   retirement Retire drops the oldest bucket once the destagers (which
//              decide when) have made its effects durable in the catalog.
//
// It does not apply anything to the catalog: destage/destagers.h does.
//
// Thread-safety: all public methods are thread-safe. Locks, in order:
// append_mu_ (one append at a time, so sequence order = file order) and
// sync_mu_ (one round of fdatasyncs at a time) are each taken before mu_,
// never together; mu_ guards the bucket list and the figures below and is
// never held across file I/O: the segment write, the fdatasync and the
// statvfs all run without it. The staging index's lock is a leaf.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "catalog/mutex.h"
#include "catalog/status.h"
#include "destage/journal.h"
#include "destage/staging_index.h"

namespace chainswap {

// Size and mtime of a file as its newest journal record left it.
struct ReplayedMeta {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};

struct JournalOptions {
  std::string dir;                        // BACKING/journal
  uint64_t bucket_bytes = 16ull << 20;    // seal a bucket at this size
  uint64_t limit = 256ull << 20;          // writers wait above this
  uint64_t backing_reserve = 64ull << 20; // keep this much of the backing fs free
};

// A bucket: one segment and its records in sequence order. Records are
// appended under BucketJournal::mu_ while the bucket is open; once `sealed`
// is set (under that lock) they never change, and the destagers read them
// without a lock. The other fields are BucketJournal's, under its mu_.
struct Bucket {
  uint64_t id = 0;
  std::shared_ptr<Segment> segment;
  std::vector<Record> records;
  uint64_t bytes = 0;           // appended and written (an fdatasync after covers them)
  uint64_t durable_bytes = 0;   // prefix of the segment a successful fdatasync covered
  uint64_t write_bytes = 0;     // logical bytes of write records
  uint64_t delete_bytes = 0;    // logical bytes of delete records (bounded ranges only)
  bool sealed = false;
  bool retired = false;         // its effects are durable in the catalog; segment deleted
  bool appending = false;       // an append is writing to the segment
  bool seal_requested = false;  // seal once that append completes
  // Set by the destagers (no lock) when they skipped an op of this bucket
  // because a newer op superseded it: retirement may then have to make the
  // journal durable first (BucketJournal::PrepareRetire).
  mutable std::atomic<bool> skipped_superseded{false};
  // Came back from a previous daemon's segment (Open): which of its bytes
  // an fsync covered is not known, so all of them count as covered.
  bool replayed = false;
  // When the bucket was created (MonoNs), i.e. about when its oldest op was
  // appended; 0 for a replayed bucket. Set before the bucket is shared.
  int64_t created_ns = 0;
};

// One record of an op as handed to BucketJournal::Append.
struct PendingRecord {
  Record record;              // write payloads in record.data until appended
  bool space_exempt = false;  // a delete, or a rewrite that replaces a block: never refused for space
  std::vector<uint8_t> zero;  // the write's zero-block flags when the caller has them (else scanned)
};

struct JournalFigures {
  uint64_t journal_bytes = 0, limit = 0;
  uint64_t buckets = 0;            // unretired
  uint64_t next_bucket = 0;        // ID the next bucket will get
  uint64_t segment_syncs = 0;      // segment fdatasyncs done (fsync rounds and retirements)
  double backing_usage = 0;        // used fraction of the backing fs
  std::string error;               // sticky errors, if any
};

class BucketJournal {
 public:
  BucketJournal(Catalog& catalog, StagingIndex& index, JournalOptions options);
  BucketJournal(const BucketJournal&) = delete;
  BucketJournal& operator=(const BucketJournal&) = delete;

  // Replays the journal (SPEC §5 crash safety): removes segments the catalog
  // already retired, reads every other segment in order, cuts a torn tail,
  // rebuilds buckets and the staging index (records of reclaimed files are
  // skipped), and reports the newest size of every file with records in
  // *meta. Returns the ID of the oldest bucket (or of the next one). EUCLEAN
  // for a journal damaged in the middle.
  Result<uint64_t> Open(std::map<int64_t, ReplayedMeta>* meta) EXCLUDES(mu_);

  // Appends the records of one op after admission (the op as a whole: its
  // blocks must fit the store and its bytes the journal limit). They get
  // consecutive sequence numbers and go into one segment in one write, all
  // but the last with Record::continues set, so that replay sees all of the
  // op or none of it. Nothing keeps the callers' payload buffers.
  Status Append(std::span<PendingRecord> op) EXCLUDES(append_mu_, mu_);
  // Bytes of the unretired buckets (what counts against the limit).
  uint64_t UnretiredBytes() EXCLUDES(mu_);
  // Append of an op of one record.
  Status Append(Record r, bool space_exempt, std::vector<uint8_t> zero = {}) EXCLUDES(append_mu_, mu_);
  // A sequence number for an op that could not be journaled (a reclaim run
  // from memory), and the newest bucket holding records: the op must be
  // applied only after the destagers passed that bucket.
  std::pair<uint64_t, uint64_t> TakeSequence() EXCLUDES(mu_);

  // Makes every record appended before the call durable (see Engine::Sync).
  Status Sync() EXCLUDES(sync_mu_, mu_);
  // What a Sync called now would have to make durable: bytes appended to
  // unretired buckets and not covered by an fdatasync yet, the newest
  // bucket holding such bytes (meaningful when bytes > 0), and all the
  // bytes of the unretired buckets up to it (what destage has to get
  // through before that bucket retires).
  struct Unsynced {
    uint64_t bytes = 0;
    uint64_t newest_bucket = 0;
    uint64_t unretired_bytes = 0;
  };
  Unsynced PendingSync() EXCLUDES(mu_);

  // Seals the open bucket (once its running append is in) and wakes the
  // destagers.
  void Seal() EXCLUDES(mu_);
  // The oldest sealed bucket with ID >= cursor. Seals an open bucket that
  // has been idle for idle_seal. Waits up to `wait` for one when there is
  // none (returns nullptr then, or when stopping).
  std::shared_ptr<const Bucket> NextSealed(uint64_t cursor, std::chrono::milliseconds idle_seal,
                                           std::chrono::milliseconds wait) EXCLUDES(mu_);
  // Wakes every waiting destager.
  void Wake();

  // The oldest unretired bucket if it is sealed and older than `before`.
  std::shared_ptr<const Bucket> RetirementCandidate(uint64_t before) EXCLUDES(mu_);
  // Before the catalog marks bucket `b` retired, when the destagers
  // skipped ops of it that newer ops superseded: if an fsync covered any of
  // `b`, syncs every other bucket (the newer ops must be durable before `b`
  // goes); if none did, syncs nothing and makes every later Sync cover all
  // buckets (see Sync). An error is sticky, as Sync's.
  Status PrepareRetire(const std::shared_ptr<const Bucket>& b) EXCLUDES(sync_mu_, mu_);
  // Drops the oldest bucket (its effects are durable in the catalog, and
  // the catalog records it as retired): the staging index forgets its
  // records, its segment is deleted, its bytes leave the journal.
  void Retire(const std::shared_ptr<const Bucket>& b) EXCLUDES(mu_);

  // True while a bucket older than `target` has records to destage.
  bool PendingBefore(uint64_t target) EXCLUDES(mu_);
  // Logical bytes to write and delete in bucket `id` (for the slot policy).
  std::pair<uint64_t, uint64_t> PendingBytes(uint64_t id) EXCLUDES(mu_);
  // Records in buckets with ID >= from (not yet passed by both destagers).
  uint64_t RecordsFrom(uint64_t from) EXCLUDES(mu_);

  // Destage feedback for admission.
  // The write destager has n fewer staged blocks to store.
  void WriteBlocksDestaged(uint64_t n) EXCLUDES(mu_);
  // The write destager found the store full (writers are refused until it
  // stored again).
  void SetStoreFull(bool full) EXCLUDES(mu_);
  bool store_full() EXCLUDES(mu_);
  // Destage stopped on an error: writers get EIO from now on. Sticky.
  void SetDestageError(const Status& st) EXCLUDES(mu_);
  Status destage_error() EXCLUDES(mu_);
  // Stopping: waiting writers go ahead (their records stay in the journal),
  // waiting destagers return.
  void SetStopping() EXCLUDES(mu_);
  bool stopping() EXCLUDES(mu_);

  JournalFigures Figures() EXCLUDES(mu_);
  uint64_t staged_write_blocks() EXCLUDES(mu_);

 private:
  Status CheckSpaceLocked(uint64_t new_blocks) REQUIRES(mu_);
  void SealLocked() REQUIRES(mu_);
  // Re-reads the backing fs's free space when the cached figure is older
  // than 100 ms (one statvfs, under mu_: it does not block on the disk).
  void RefreshBackingLocked() REQUIRES(mu_);
  void AccountLocked(Bucket& b, const Record& r) REQUIRES(mu_);
  // The buckets (but `except`) with appended bytes no fdatasync covered
  // yet, each with its current end.
  std::vector<std::pair<std::shared_ptr<Bucket>, uint64_t>> UnsyncedLocked(const Bucket* except = nullptr)
      REQUIRES(mu_);
  // fdatasync of each bucket's segment up to its current end, skipping what
  // a round before covered; moves the durable watermarks.
  Status SyncBucketsLocked(std::span<const std::pair<std::shared_ptr<Bucket>, uint64_t>> need)
      REQUIRES(sync_mu_) EXCLUDES(mu_);

  Catalog& catalog_;
  StagingIndex& index_;  // thread-safe itself
  const JournalOptions options_;

  Mutex append_mu_ ACQUIRED_BEFORE(mu_);
  Mutex sync_mu_ ACQUIRED_BEFORE(mu_);
  Mutex mu_;
  CondVar work_cv_{&mu_};   // destagers wait for sealed buckets
  CondVar space_cv_{&mu_};  // writers wait for journal space

  std::deque<std::shared_ptr<Bucket>> buckets_ GUARDED_BY(mu_);  // unretired, oldest first
  uint64_t next_seq_ GUARDED_BY(mu_) = 1;
  uint64_t next_bucket_ GUARDED_BY(mu_) = 1;
  uint64_t segment_syncs_ GUARDED_BY(mu_) = 0;
  // Buckets retired with skipped ops and no sync (PrepareRetire); Sync compares it
  // before and after it waits for sync_mu_.
  uint64_t unsynced_retirements_ GUARDED_BY(mu_) = 0;
  uint64_t journal_bytes_ GUARDED_BY(mu_) = 0;
  uint64_t staged_write_blocks_ GUARDED_BY(mu_) = 0;  // appended, not yet passed by the write destager
  int64_t last_append_ns_ GUARDED_BY(mu_) = 0;
  int64_t backing_checked_ns_ GUARDED_BY(mu_) = 0;
  uint64_t backing_free_ GUARDED_BY(mu_) = UINT64_MAX;
  double backing_usage_ GUARDED_BY(mu_) = 0.0;
  bool store_full_ GUARDED_BY(mu_) = false;
  bool stopping_ GUARDED_BY(mu_) = false;
  Status destage_error_ GUARDED_BY(mu_);  // sticky
  Status sync_error_ GUARDED_BY(mu_);     // a journal fdatasync failed: sticky
};

}  // namespace chainswap
