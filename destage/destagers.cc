#include "destage/destagers.h"

#include "catalog/rados_backend.h"

#include "destage/journal.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <vector>

#include "destage/clock.h"

namespace chainswap {

namespace {

constexpr uint64_t kMaxLba = static_cast<uint64_t>(INT64_MAX) >> kBlockShift;
// The write destager applies consecutive records together, up to this many
// blocks, so that small random writes do not cost one catalog transaction
// each: a transaction rewrites each B-tree page it touches once, however many
// of its rows changed, so wide transactions cut the catalog's WAL traffic.
constexpr uint64_t kBatchBlocks = 1024;
// A batch's payloads and the record headers between them: its read buffer,
// allocated once (one record is at most kMaxRecordBlocks blocks, which fits).
constexpr uint64_t kBatchBufferBytes = kBatchBlocks * kBlockSize + (1u << 20);
static_assert(kMaxRecordBlocks * uint64_t{kBlockSize} <= kBatchBufferBytes);
// At most this many files' stripes held at once (ThreadSanitizer's deadlock
// detector aborts a thread that holds 64 locks).
constexpr size_t kMaxBatchStripes = 16;

}  // namespace

Destagers::Destagers(Catalog& catalog, StagingIndex& index, BucketJournal& journal, EngineCounters& counters,
                     DestagerOptions options)
    : catalog_(catalog),
      index_(index),
      journal_(journal),
      counters_(counters),
      options_(std::move(options)),
      queue_(options_.queue, [this] { return Snapshot(); }),
      batch_buf_(new uint8_t[kBatchBufferBytes]) {}

Destagers::~Destagers() { Join(); }

void Destagers::Reset(uint64_t first_bucket) {
  MutexLock lk(&mu_);
  w_cursor_ = x_cursor_ = first_bucket;
  w_record_ = x_record_ = 0;
}

void Destagers::Start() {
  if (write_thread_.joinable()) return;
  if (catalog_.compress()) prep_ = std::make_unique<WritePrep>(catalog_.store());
  write_thread_ = std::thread([this] { Loop(IoKind::kWrite); });
  delete_thread_ = std::thread([this] { Loop(IoKind::kDelete); });
  retire_thread_ = std::thread([this] { RetireLoop(); });
}

void Destagers::Join() {
  {
    MutexLock lk(&mu_);  // so that no waiter misses it
    stopping_ = true;
  }
  journal_.SetStopping();
  progress_cv_.SignalAll();
  retire_cv_.SignalAll();
  if (write_thread_.joinable()) write_thread_.join();
  if (delete_thread_.joinable()) delete_thread_.join();
  if (retire_thread_.joinable()) retire_thread_.join();
  prep_.reset();
}

std::pair<uint64_t, uint64_t> Destagers::Cursors() {
  MutexLock lk(&mu_);
  return {w_cursor_, x_cursor_};
}

DestageSnapshot Destagers::Snapshot() {
  DestageSnapshot s;
  const StoreUsage u = catalog_.Usage();
  const JournalFigures j = journal_.Figures();
  std::tie(s.w_bucket, s.x_bucket) = Cursors();
  s.journal_usage = double(j.journal_bytes) / double(j.limit);
  s.store_usage = u.capacity_slots ? double(u.used_slots) / double(u.capacity_slots) : j.backing_usage;
  std::tie(s.pending_write_bytes, s.pending_delete_bytes) = journal_.PendingBytes(s.w_bucket);
  return s;
}

void Destagers::DeferReclaim(Record r, uint64_t after_bucket) {
  {
    MutexLock lk(&mu_);
    deferred_reclaims_.push_back(DeferredReclaim{after_bucket, std::move(r), false});
  }
  journal_.Wake();
}

// ------------------------------------------------------------------- loop

void Destagers::IdleCatalogSync() {
  // The journal is empty: make recent frees durable, punch what stays free
  // and shrink the catalog's WAL, so that space comes back without waiting
  // for more work. A WAL left long (a reader kept the checkpoint from
  // finishing) is retried once a second.
  const uint64_t destaged = counters_.ops_destaged.load(std::memory_order_relaxed);
  const int64_t now = MonoNs();
  const bool wal_retry = now - idle_wal_try_ns_ > 1'000'000'000 && catalog_.WalBytes() > kWalReserveBytes;
  if (catalog_.HasSlotsToRelease() || destaged != idle_synced_ops_ || wal_retry) {
    idle_wal_try_ns_ = now;
    idle_synced_ops_ = destaged;
    Status ss = catalog_.Sync(/*idle=*/true);
    if (!ss.ok()) spdlog::warn("idle catalog sync: {}", ss.ToString());
  }
}

void Destagers::Loop(IoKind kind) {
  const bool writes = kind == IoKind::kWrite;
  // Named for operators (top -H, perf): "cs-destage-w" / "cs-destage-x".
  ::pthread_setname_np(::pthread_self(), writes ? "cs-destage-w" : "cs-destage-x");
  const auto idle_seal = std::chrono::milliseconds(options_.idle_seal_ms);
  while (!stopping_) {
    uint64_t cursor;
    size_t next_record;
    {
      MutexLock lk(&mu_);
      cursor = writes ? w_cursor_ : x_cursor_;
      next_record = writes ? w_record_ : x_record_;
    }
    // Idle work of the delete destager, done before it waits, without any
    // destager lock (its locks are the catalog's).
    std::shared_ptr<const Bucket> b = journal_.NextSealed(cursor, idle_seal, std::chrono::milliseconds(0));
    if (!b && !writes) {
      if (RunDeferredReclaim()) continue;
      if (journal_.Figures().journal_bytes == 0) IdleCatalogSync();
    }
    if (!b) b = journal_.NextSealed(cursor, idle_seal, idle_seal);
    if (!b) {
      if (!journal_.destage_error().ok()) return;
      continue;
    }
    if (writes && next_record == 0) DelayWrites(*b);
    Status st = writes ? ProcessWrites(*b, &next_record) : ProcessDeletes(*b, &next_record);
    {
      MutexLock lk(&mu_);
      (writes ? w_record_ : x_record_) = next_record;
      if (st.ok()) {
        (writes ? w_cursor_ : x_cursor_) = b->id + 1;
        (writes ? w_record_ : x_record_) = 0;
        if (!writes) delete_blocked_ = false;
      }
    }
    if (st.ok()) {
      if ((writes ? w_unreachable_ : x_unreachable_).exchange(false))
        spdlog::info("{} destager: content store reachable again", writes ? "write" : "delete");
      if (writes) journal_.SetStoreFull(false);
      WakeRetirer();
      continue;
    }
    if (st.code() == ENOSPC && writes) {
      // Nothing acknowledged is lost: the write stays in the journal and is
      // retried once deletes have given space back.
      if (!journal_.store_full()) spdlog::warn("write destager: content store full; retrying after deletes");
      journal_.SetStoreFull(true);
      MutexLock lk(&mu_);
      progress_cv_.WaitFor(std::chrono::milliseconds(50));
      continue;
    }
    if (st.code() == ENOSPC) {
      // The catalog could not grow (backing filesystem full to the last
      // byte): the delete stays in the journal and is retried.
      MutexLock lk(&mu_);
      if (!delete_blocked_) spdlog::warn("delete destager: {}; retrying", st.ToString());
      delete_blocked_ = true;
      progress_cv_.WaitFor(std::chrono::milliseconds(50));
      continue;
    }
    if (st.code() == ECANCELED) return;  // stopping
    if (IsStoreUnreachable(st)) {
      // A content store in RADOS that does not answer (cluster down, an
      // OSD gone): nothing acknowledged is lost, the batch stays in the
      // journal and is retried; guests' writes go on into the journal until
      // it fills, then wait (its back-pressure).
      if (!(writes ? w_unreachable_ : x_unreachable_).exchange(true))
        spdlog::warn("{} destager: content store unreachable ({}); retrying every second, writes wait in the journal",
                     writes ? "write" : "delete", st.ToString());
      MutexLock lk(&mu_);
      progress_cv_.WaitFor(std::chrono::seconds(1));
      continue;
    }
    journal_.SetDestageError(st);
    progress_cv_.SignalAll();
    return;
  }
}

Result<const BlockHasher*> Destagers::HasherFor(int64_t dedup_id, HasherCache* cache) {
  auto it = cache->find(dedup_id);
  if (it == cache->end()) {
    auto h = catalog_.HasherFor(dedup_id);
    if (!h.ok()) return h.status();
    it = cache->emplace(dedup_id, *h).first;
  }
  return it->second.get();
}

Status Destagers::ProcessWrites(const Bucket& b, size_t* next_record) {
  std::vector<BlockOp> ops;
  std::vector<size_t> stripes;
  HasherCache hashers;
  size_t i = *next_record;
  while (i < b.records.size()) {
    if (stopping_.load(std::memory_order_relaxed)) return Status::Error(ECANCELED, "stopping");
    size_t j = i;
    uint64_t blocks = 0, records = 0;
    stripes.clear();
    uint64_t held = 0;  // bit s: stripe s is in the batch
    // The batch's payloads lie in [span_begin, span_end) of the segment
    // (records are appended in order; delete headers in between are read
    // along).
    uint64_t span_begin = 0, span_end = 0;
    while (j < b.records.size()) {
      const Record& r = b.records[j];
      if (r.kind == RecordKind::kWrite) {
        const size_t s = static_cast<uint64_t>(r.file_id) % stripes_.size();
        const bool new_stripe = !((held >> s) & 1);
        const uint64_t end = r.payload_offset + uint64_t{r.count} * kBlockSize;
        if (end > b.bytes || end < r.payload_offset)
          return Status::Error(EIO, "journal record of swap file " + std::to_string(r.file_id) +
                                        " lies beyond its segment " + b.segment->path());
        if (records > 0 && (blocks + r.count > kBatchBlocks || end - span_begin > kBatchBufferBytes ||
                            (new_stripe && stripes.size() >= kMaxBatchStripes)))
          break;
        if (records == 0) span_begin = r.payload_offset;
        span_end = end;
        blocks += r.count;
        ++records;
        if (new_stripe) {
          held |= uint64_t{1} << s;
          stripes.push_back(s);
        }
      }
      ++j;
    }
    // One read for the batch, before any lock is taken.
    if (records > 0) CS_RETURN_IF_ERROR(b.segment->ReadAt(span_begin, span_end - span_begin, batch_buf_.get()));
    // Every file of the batch is locked for its check-and-apply, in stripe
    // order (the delete destager holds one stripe at a time: no cycle).
    std::sort(stripes.begin(), stripes.end());
    std::vector<std::unique_ptr<MutexLock>> locks;
    locks.reserve(stripes.size());
    for (size_t s : stripes) locks.push_back(std::make_unique<MutexLock>(&stripes_[s]));
    ops.clear();
    for (size_t k = i; k < j; ++k) {
      const Record& r = b.records[k];
      if (r.kind != RecordKind::kWrite) continue;
      const BlockHasher* hasher = nullptr;
      for (uint64_t n = 0; n < r.count; ++n) {
        // Every record the journal holds was tracked (Append, Open).
        if (StagingIndex::IsSuperseded(r, n)) {
          b.skipped_superseded.store(true, std::memory_order_relaxed);
          continue;
        }
        if (!hasher) {
          // Looked up only for a record with a live block: a chain's row
          // outlives every file of it, so a chain that is gone means the
          // file is gone too (reclaimed), and the record is obsolete.
          auto h = HasherFor(r.dedup_id, &hashers);
          if (!h.ok() && h.status().code() == ENOENT) {
            spdlog::debug("write destager: skipping a record of swap file {}: {}", r.file_id,
                          h.status().ToString());
            break;
          }
          if (!h.ok()) return h.status();
          hasher = *h;
        }
        BlockOp op;
        op.kind = BlockOp::Kind::kWrite;
        op.file_id = r.file_id;
        op.dedup_id = r.dedup_id;
        op.lba = r.lba + n;
        op.data = batch_buf_.get() + (r.payload_offset - span_begin) + n * kBlockSize;
        // The journal tested each block for zeros once: a precomputed hash
        // means non-zero (Catalog::ApplyBlockOps).
        if (!IsZeroBlock(op.data)) op.hash = hasher->Hash(op.data);
        ops.push_back(op);
      }
    }
    counters_.writes_absorbed += blocks - ops.size();
    // With compression on, the batch's probably new blocks are compressed,
    // and its probable duplicates of compressed blocks compared, on prep_'s
    // thread while the catalog applies the batch (write_prep.h).
    struct PrepFinish {
      WritePrep* prep;
      ~PrepFinish() {
        if (prep) prep->Finish();
      }
    } prep_finish{nullptr};
    if (prep_) {
      prep_finish.prep = prep_.get();
      CS_RETURN_IF_ERROR(catalog_.PredictWrites(ops, *prep_));
    }
    size_t done = 0;
    while (done < ops.size()) {
      const uint64_t left = ops.size() - done;
      const uint32_t slots = queue_.Acquire(IoKind::kWrite, (left + kWriteBlocksPerSlot - 1) / kWriteBlocksPerSlot);
      const size_t n = std::min<uint64_t>(left, slots * kWriteBlocksPerSlot);
      auto res = catalog_.ApplyBlockOps(std::span<const BlockOp>(ops).subspan(done, n));
      queue_.Release(IoKind::kWrite, slots);
      if (!res.ok()) return res.status();  // the batch is retried from its start
      counters_.blocks_stored += res->blocks_stored;
      counters_.blocks_deduped += res->blocks_deduped;
      counters_.blocks_freed += res->blocks_freed;
      counters_.collisions += res->collisions;
      done += n;
    }
    locks.clear();
    counters_.ops_destaged += records;
    i = j;
    *next_record = i;
    journal_.WriteBlocksDestaged(blocks);
  }
  return Status::Ok();
}

Status Destagers::ProcessDeletes(const Bucket& b, size_t* next_record) {
  for (size_t i = *next_record; i < b.records.size(); ++i, *next_record = i) {
    const Record& r = b.records[i];
    if (r.kind != RecordKind::kDelete) continue;
    bool skipped = false;
    CS_RETURN_IF_ERROR(ApplyDelete(r, &skipped));
    if (skipped) b.skipped_superseded.store(true, std::memory_order_relaxed);
    ++counters_.ops_destaged;
  }
  return Status::Ok();
}

Status Destagers::ApplyDelete(const Record& r, bool* skipped) {
  if (r.count > 0) {
    MutexLock stripe(&Stripe(r.file_id));
    const uint64_t end = std::min<uint64_t>(r.lba + r.count, kMaxLba + 1);
    const auto live = index_.LiveDeleteRanges(r.file_id, r.lba, end, r.seq);
    if (!(live.size() == 1 && live[0] == std::make_pair(r.lba, end))) *skipped = true;
    for (auto [a, e] : live) {
      uint64_t lba = a;
      while (lba < e) {
        if (stopping_.load(std::memory_order_relaxed)) return Status::Error(ECANCELED, "stopping");
        auto next = catalog_.NextMapped(r.file_id, lba);
        if (!next.ok()) return next.status();
        if (!*next || **next >= e) break;
        lba = **next;
        uint32_t slots = queue_.Acquire(IoKind::kDelete, (e - lba + kDeleteLbasPerSlot - 1) / kDeleteLbasPerSlot);
        BlockOp op;
        op.kind = BlockOp::Kind::kDelete;
        op.file_id = r.file_id;
        op.dedup_id = r.dedup_id;
        op.lba = lba;
        op.count = std::min<uint64_t>(e - lba, uint64_t{slots} * kDeleteLbasPerSlot);
        auto res = catalog_.ApplyBlockOps(std::span<const BlockOp>(&op, 1));
        queue_.Release(IoKind::kDelete, slots);
        if (!res.ok()) return res.status();
        counters_.blocks_freed += res->blocks_freed;
        lba += op.count;
      }
    }
  }
  if (r.drop_file) {
    // ENOENT: reclaimed already (a replayed record, or a deferred reclaim
    // that raced its record): obsolete, not an error.
    Status st = catalog_.DropFile(r.file_id);
    if (st.ok()) spdlog::debug("reclaimed swap file {}", r.file_id);
    else if (st.code() == ENOENT) spdlog::debug("swap file {} was reclaimed already", r.file_id);
    else spdlog::warn("reclaim of swap file {}: {}", r.file_id, st.ToString());
  }
  return Status::Ok();
}

bool Destagers::RunDeferredReclaim() {
  Record r;
  {
    MutexLock lk(&mu_);
    if (deferred_reclaims_.empty()) return false;
    const DeferredReclaim& d = deferred_reclaims_.front();
    // Every earlier op of the file must be in the catalog first.
    if (std::min(w_cursor_, x_cursor_) <= d.after_bucket) return false;
    r = d.record;
  }
  bool skipped = false;  // run from memory: no bucket to retire
  Status st = ApplyDelete(r, &skipped);
  MutexLock lk(&mu_);
  DeferredReclaim& d = deferred_reclaims_.front();
  if (st.ok()) {
    if (d.failed) spdlog::info("deferred reclaim of swap file {}: done", r.file_id);
    deferred_reclaims_.pop_front();
    ++counters_.ops_destaged;
    progress_cv_.SignalAll();
  } else if (st.code() != ECANCELED && !d.failed) {
    // Kept and retried (the backing fs may still be full); the file stays
    // unlinked in the catalog, so a stop before it succeeds is harmless too.
    spdlog::warn("deferred reclaim of swap file {}: {}; retrying", r.file_id, st.ToString());
    d.failed = true;
  }
  return st.ok();
}

void Destagers::WakeRetirer() {
  MutexLock lk(&mu_);
  retire_wanted_ = true;
  retire_cv_.Signal();
}

void Destagers::RetireLoop() {
  ::pthread_setname_np(::pthread_self(), "cs-retire");
  for (;;) {
    {
      MutexLock lk(&mu_);
      while (!retire_wanted_ && !stopping_) retire_cv_.Wait();
      if (stopping_) return;
      retire_wanted_ = false;
    }
    if (!journal_.destage_error().ok()) return;
    TryRetire();
  }
}

void Destagers::TryRetire() {
  MutexLock rl(&retire_mu_);
  for (;;) {
    auto [w, x] = Cursors();
    std::shared_ptr<const Bucket> b = journal_.RetirementCandidate(std::min(w, x));
    if (!b) return;
    // Sizes as this bucket left them, then make everything durable.
    std::map<int64_t, FileMetaUpdate> metas;
    for (const Record& r : b->records) metas[r.file_id] = FileMetaUpdate{r.file_id, r.file_size, r.mtime_ns, r.mtime_ns};
    std::vector<FileMetaUpdate> mv;
    for (auto& [id, m] : metas) mv.push_back(m);
    // The sizes and the retirement mark in one transaction, made durable
    // (with the store) before the segment goes (see
    // Catalog::JournalRetiredThrough). When the destagers skipped ops of
    // this bucket that newer ops superseded (an overwrite, a punch), the
    // journal decides whether those newer ops must be synced first (if an
    // fsync covered part of the bucket) or not (BucketJournal::PrepareRetire): a
    // segment retired before the kernel wrote it back then never reaches
    // the disk, so a random-write stream that does not fsync costs the
    // device only its unique blocks and the catalog. (The flag is read after
    // both destagers passed the bucket: their cursors, read under mu_, order
    // it.)
    Status st = b->skipped_superseded.load(std::memory_order_relaxed) ? journal_.PrepareRetire(b) : Status::Ok();
    if (st.ok()) st = catalog_.RetireBucket(mv, b->id);
    if (st.ok()) st = catalog_.Sync();
    if (!st.ok()) {
      journal_.SetDestageError(st);
      progress_cv_.SignalAll();
      return;
    }
    journal_.Retire(b);
    progress_cv_.SignalAll();
  }
}

Destagers::Urgency::Urgency(Destagers* d) : d_(d) {
  d_->urgent_.fetch_add(1);
  MutexLock lk(&d_->mu_);
  d_->progress_cv_.SignalAll();  // a write destager in DelayWrites
}

Destagers::Urgency::~Urgency() { d_->urgent_.fetch_sub(1); }

void Destagers::DelayWrites(const Bucket& b) {
  if (options_.write_delay_ms == 0 || b.created_ns == 0) return;  // 0: replayed, destaged at once
  const int64_t due = b.created_ns + int64_t{options_.write_delay_ms} * 1'000'000;
  for (;;) {
    if (stopping_ || urgent_.load() > 0) return;
    const int64_t now = MonoNs();
    if (now >= due) return;
    if (options_.write_high_water && journal_.UnretiredBytes() >= options_.write_high_water) return;
    if (!journal_.destage_error().ok()) return;
    MutexLock lk(&mu_);
    if (stopping_ || urgent_.load() > 0) return;
    progress_cv_.WaitFor(std::chrono::nanoseconds(std::min<int64_t>(due - now, 20'000'000)));
  }
}

bool Destagers::WaitRetiredThrough(uint64_t bucket, std::chrono::milliseconds max_wait) {
  const auto deadline = std::chrono::steady_clock::now() + max_wait;
  Urgency urgent(this);
  journal_.Seal();
  for (;;) {
    if (!journal_.destage_error().ok() || journal_.store_full() || StoreUnreachable()) return false;
    if (!journal_.PendingBefore(bucket + 1)) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    MutexLock lk(&mu_);
    if (stopping_ || delete_blocked_) return false;
    progress_cv_.WaitFor(std::chrono::milliseconds(20));
  }
}

Status Destagers::Drain(bool give_up_when_store_full) {
  Urgency urgent(this);
  journal_.Seal();
  const uint64_t target = journal_.Figures().next_bucket;
  for (;;) {
    if (Status e = journal_.destage_error(); !e.ok()) return e;
    if (give_up_when_store_full && journal_.store_full())
      return Status::Error(ENOSPC, "content store full: writes stay in the journal until space is freed");
    // Whoever waits for destage (unmount, clone, migration) is told, not
    // held, while the content store does not answer.
    if (StoreUnreachable())
      return Status::Error(ETIMEDOUT, "the content store (RADOS) does not answer: ops stay in the journal and are "
                                      "destaged when it does");
    MutexLock lk(&mu_);
    if (give_up_when_store_full && delete_blocked_)
      return Status::Error(ENOSPC, "backing filesystem full: deletes stay in the journal until space is freed");
    if (stopping_) return Status::Error(ECANCELED, "destage stopped");
    lk.Unlock();
    const bool pending = journal_.PendingBefore(target);
    lk.Lock();
    if (!pending) {
      if (deferred_reclaims_.empty()) return Status::Ok();
      if (deferred_reclaims_.front().failed)
        return Status::Error(ENOSPC, "the reclaim of an unlinked swap file is waiting for space on the backing "
                                     "filesystem (done at the latest at the next mount)");
    }
    lk.Unlock();
    journal_.Seal();
    lk.Lock();
    progress_cv_.WaitFor(std::chrono::milliseconds(20));
  }
}

}  // namespace chainswap
