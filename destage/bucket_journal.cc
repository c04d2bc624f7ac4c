#include "destage/bucket_journal.h"

#include <spdlog/spdlog.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <set>

#include "catalog/block.h"
#include "destage/clock.h"

namespace chainswap {

namespace {

// Deletes of unbounded ranges (truncate, reclaim) count as at most this
// many blocks in a bucket's pending delete bytes (the slot policy's input).
constexpr uint64_t kMaxCountedDeleteBlocks = 1u << 20;

}  // namespace

BucketJournal::BucketJournal(Catalog& catalog, StagingIndex& index, JournalOptions options)
    : catalog_(catalog), index_(index), options_(std::move(options)) {}

void BucketJournal::AccountLocked(Bucket& b, const Record& r) {
  if (r.kind == RecordKind::kWrite) {
    staged_write_blocks_ += r.count;
    b.write_bytes += r.count * kBlockSize;
  } else {
    b.delete_bytes += std::min<uint64_t>(r.count, kMaxCountedDeleteBlocks) * kBlockSize;
  }
}

// ------------------------------------------------------------------ replay

Result<uint64_t> BucketJournal::Open(std::map<int64_t, ReplayedMeta>* meta) {
  auto ids = ListSegments(options_.dir);
  if (!ids.ok()) return ids.status();
  auto files = catalog_.ListFiles();
  if (!files.ok()) return files.status();
  std::set<int64_t> live;
  for (const FileInfo& f : *files) live.insert(f.file_id);

  // Segments the catalog already holds came back after a power cut lost
  // their unlink: replaying them would roll newer state back.
  auto retired = catalog_.JournalRetiredThrough();
  if (!retired.ok()) return retired.status();
  MutexLock lk(&mu_);
  next_bucket_ = *retired + 1;  // bucket IDs are never reused
  while (!ids->empty() && ids->front() <= *retired) {
    auto seg = Segment::OpenExisting(options_.dir, ids->front());
    Status rm = seg.ok() ? (*seg)->Remove() : seg.status();
    if (!rm.ok()) return rm;
    spdlog::info("journal: removed segment {} (retired already, its deletion was lost)", ids->front());
    ids->erase(ids->begin());
  }

  uint64_t replayed = 0, skipped = 0;
  for (size_t i = 0; i < ids->size(); ++i) {
    auto seg = Segment::OpenExisting(options_.dir, (*ids)[i]);
    if (!seg.ok()) return seg.status();
    bool torn = false;
    // Only the newest segment may end in a torn tail, which is cut off; any
    // damage elsewhere is refused and left untouched for the operator.
    const bool last = i + 1 == ids->size();
    auto b = std::make_shared<Bucket>();
    b->id = (*ids)[i];
    b->segment = *seg;
    b->sealed = true;
    b->replayed = true;
    // Payloads stay in the segment (read through a mapping here): only their
    // zero flags are taken, for the staging index.
    std::vector<std::pair<Record, std::vector<uint8_t>>> recs;
    CS_RETURN_IF_ERROR((*seg)->Scan(
        [&](Record&& r, std::span<const uint8_t> payload) {
          std::vector<uint8_t> zero(r.kind == RecordKind::kWrite ? r.count : 0);
          for (size_t k = 0; k < zero.size(); ++k) zero[k] = IsZeroBlock(payload.data() + k * kBlockSize);
          recs.emplace_back(std::move(r), std::move(zero));
          return Status::Ok();
        },
        &torn, /*cut_torn=*/last));
    if (torn && !last) {
      return Status::Error(EUCLEAN, "journal segment " + (*seg)->path() +
                                        " is damaged but newer segments follow; refusing to drop "
                                        "acknowledged writes (see docs/OPERATIONS.md)");
    }
    for (auto& [r, zero] : recs) {
      if (r.seq < next_seq_) {
        return Status::Error(EUCLEAN, "journal sequence numbers go backwards in " + (*seg)->path());
      }
      next_seq_ = r.seq + 1;
      if (!live.count(r.file_id)) {  // its file was reclaimed already
        ++skipped;
        continue;
      }
      r.segment = *seg;
      StagingIndex::Track(&r);
      index_.Add(r, zero);
      AccountLocked(*b, r);
      (*meta)[r.file_id] = ReplayedMeta{r.file_size, r.mtime_ns};
      b->records.push_back(std::move(r));
      ++replayed;
    }
    b->bytes = (*seg)->bytes();
    journal_bytes_ += b->bytes;
    buckets_.push_back(std::move(b));
    next_bucket_ = (*ids)[i] + 1;
  }
  // Records left in the journal mean the last daemon did not stop cleanly.
  if (replayed) catalog_.ForceVerify(true);
  if (!ids->empty())
    spdlog::info("journal: replayed {} record(s) from {} bucket(s) ({} for reclaimed files skipped)", replayed,
                 ids->size(), skipped);
  return buckets_.empty() ? next_bucket_ : buckets_.front()->id;
}

// ------------------------------------------------------------------ append

Status BucketJournal::CheckSpaceLocked(uint64_t new_blocks) {
  if (store_full_) return Status::Error(ENOSPC, "content store full; waiting for deletes to free space");
  StoreUsage u = catalog_.Usage();
  if (u.capacity_slots && u.used_slots + staged_write_blocks_ + new_blocks > u.capacity_slots)
    return Status::Error(ENOSPC, "content store capacity reached");
  RefreshBackingLocked();
  // The journal and the store share the backing fs: staged blocks may each
  // need one more block of store when destaged.
  uint64_t need = (staged_write_blocks_ + new_blocks) * kBlockSize + options_.backing_reserve;
  if (backing_free_ < need) return Status::Error(ENOSPC, "backing filesystem full");
  return Status::Ok();
}

void BucketJournal::RefreshBackingLocked() {
  const int64_t now = MonoNs();
  if (now - backing_checked_ns_ <= 100'000'000) return;  // statvfs at most every 100 ms
  struct statvfs sv;
  if (::statvfs(options_.dir.c_str(), &sv) == 0) {
    backing_free_ = uint64_t{sv.f_bavail} * sv.f_frsize;
    backing_usage_ = sv.f_blocks ? 1.0 - double(sv.f_bavail) / double(sv.f_blocks) : 0.0;
  }
  backing_checked_ns_ = now;
}

void BucketJournal::SealLocked() {
  if (buckets_.empty()) return;
  Bucket& b = *buckets_.back();
  if (b.sealed) return;
  if (b.appending) {
    b.seal_requested = true;  // the appender seals it when its record is in
    return;
  }
  if (!b.records.empty()) {
    b.sealed = true;
    work_cv_.SignalAll();
  }
}

void BucketJournal::Seal() {
  MutexLock lk(&mu_);
  SealLocked();
  work_cv_.SignalAll();
}

void BucketJournal::Wake() { work_cv_.SignalAll(); }

Status BucketJournal::Append(Record r, bool space_exempt, std::vector<uint8_t> zero) {
  PendingRecord op[1] = {{std::move(r), space_exempt, std::move(zero)}};
  return Append(op);
}

Status BucketJournal::Append(std::span<PendingRecord> op) {
  if (op.empty()) return Status::Ok();
  // Checksums, zero flags and supersession bits outside every lock. Zero
  // blocks are holes: they never need a slot; the staging index takes the
  // flags.
  std::vector<uint64_t> payload_sums(op.size());
  uint64_t size = 0, new_blocks = 0;
  for (size_t i = 0; i < op.size(); ++i) {
    PendingRecord& p = op[i];
    Record& r = p.record;
    r.continues = i + 1 < op.size();
    size += r.EncodedSize();
    payload_sums[i] = PayloadChecksum(r);
    if (r.kind == RecordKind::kWrite && p.zero.size() != r.count) p.zero = ZeroBlockFlags(r);
    StagingIndex::Track(&r);
    if (!p.space_exempt)
      for (uint8_t z : p.zero) new_blocks += z ? 0 : 1;
  }
  MutexLock alk(&append_mu_);
  MutexLock lk(&mu_);
  for (;;) {
    if (!destage_error_.ok())
      return Status::Error(EIO, "destage stopped after an error: " + destage_error_.message());
    if (new_blocks) {
      Status sp = CheckSpaceLocked(new_blocks);
      if (!sp.ok()) return sp;
    }
    if (journal_bytes_ + size <= options_.limit || stopping_) break;
    SealLocked();  // let the destagers get at everything
    space_cv_.WaitFor(std::chrono::milliseconds(100));
  }
  if (buckets_.empty() || buckets_.back()->sealed) {
    // The segment file is created without mu_ (a create is disk I/O);
    // append_mu_ keeps other appenders out, and only appenders add buckets.
    const uint64_t id = next_bucket_;
    lk.Unlock();
    auto seg = Segment::Create(options_.dir, id);
    lk.Lock();
    if (!seg.ok()) return seg.status();
    auto b = std::make_shared<Bucket>();
    b->id = id;
    b->segment = *seg;
    b->created_ns = MonoNs();
    next_bucket_ = id + 1;
    buckets_.push_back(std::move(b));
  }
  std::shared_ptr<Bucket> bp = buckets_.back();
  Bucket& b = *bp;
  for (PendingRecord& p : op) p.record.seq = next_seq_++;
  b.appending = true;  // no seal while the op is being written
  lk.Unlock();

  // The segment write runs without mu_ (append_mu_ keeps appends in order),
  // so destagers and readers of journal state are not held up by it.
  std::vector<uint8_t> headers(op.size() * kRecordHeaderSize);
  std::vector<iovec> parts;
  parts.reserve(op.size() * 2);
  for (size_t i = 0; i < op.size(); ++i) {
    const Record& r = op[i].record;
    uint8_t* h = headers.data() + i * kRecordHeaderSize;
    EncodeHeader(r, payload_sums[i], h);
    parts.push_back({h, kRecordHeaderSize});
    if (r.kind == RecordKind::kWrite && r.count)
      parts.push_back({const_cast<uint8_t*>(r.data.get()), r.count * kBlockSize});
  }
  auto at = b.segment->Append(parts);
  Status st = at.status();
  if (at.ok()) {
    // From here on payloads are read back from the segment (page cache):
    // the writer's buffers go when the writer returns.
    uint64_t pos = *at;
    for (PendingRecord& p : op) {
      Record& r = p.record;
      r.segment = b.segment;
      r.payload_offset = pos + kRecordHeaderSize;
      pos += r.EncodedSize();
      r.data.reset();
    }
  }

  lk.Lock();
  b.appending = false;
  if (st.ok()) {
    for (PendingRecord& p : op) {
      index_.Add(p.record, p.zero);
      AccountLocked(b, p.record);
      b.records.push_back(std::move(p.record));
    }
    b.bytes += size;
    journal_bytes_ += size;
    last_append_ns_ = MonoNs();
  }
  if ((b.seal_requested || b.bytes >= options_.bucket_bytes) && !b.records.empty()) {
    b.seal_requested = false;
    b.sealed = true;
    work_cv_.SignalAll();
  }
  return st;
}

std::pair<uint64_t, uint64_t> BucketJournal::TakeSequence() {
  MutexLock lk(&mu_);
  uint64_t after = 0;
  for (auto& b : buckets_)
    if (!b->records.empty()) after = b->id;
  return {next_seq_++, after};
}

// ------------------------------------------------------------------- fsync

Status BucketJournal::Sync() {
  // What this caller needs durable: every record acknowledged before it
  // called (Bucket::bytes counts only appends whose write returned).
  std::vector<std::pair<std::shared_ptr<Bucket>, uint64_t>> need;
  uint64_t retirements_seen;
  {
    MutexLock lk(&mu_);
    if (!sync_error_.ok()) return sync_error_;
    need = UnsyncedLocked();
    retirements_seen = unsynced_retirements_;
  }
  // One round of fdatasyncs at a time. A caller that waited here finds what
  // the round before it covered and syncs only the rest; the watermark moves
  // only after an fdatasync succeeded, so no caller returns while the
  // fdatasync it relies on is still running.
  MutexLock sl(&sync_mu_);
  {
    MutexLock lk(&mu_);
    // A bucket retired meanwhile without a sync (PrepareRetire) took records this
    // caller may need whose only other trace is a newer record, perhaps
    // appended after the snapshot above, in any bucket: sync them all.
    if (unsynced_retirements_ != retirements_seen) need = UnsyncedLocked();
  }
  return SyncBucketsLocked(need);
}

std::vector<std::pair<std::shared_ptr<Bucket>, uint64_t>> BucketJournal::UnsyncedLocked(const Bucket* except) {
  std::vector<std::pair<std::shared_ptr<Bucket>, uint64_t>> out;
  for (auto& b : buckets_)
    if (b.get() != except && b->durable_bytes < b->bytes) out.emplace_back(b, b->bytes);
  return out;
}

Status BucketJournal::SyncBucketsLocked(std::span<const std::pair<std::shared_ptr<Bucket>, uint64_t>> need) {
  for (auto& [b, target] : need) {
    uint64_t upto;
    {
      MutexLock lk(&mu_);
      if (!sync_error_.ok()) return sync_error_;
      // A retired bucket's effects are durable in the catalog already.
      if (b->retired || b->durable_bytes >= target) continue;
      upto = b->bytes;  // covers appends since the caller's snapshot too
    }
    Status st = b->segment->Sync();
    MutexLock lk(&mu_);
    ++segment_syncs_;
    if (!st.ok()) {
      // Sticky: after a failed fdatasync the kernel may have dropped the
      // dirty pages, and a retry would "succeed" on data that is gone.
      if (sync_error_.ok()) {
        sync_error_ = Status::Error(EIO, "journal fdatasync failed (" + st.ToString() +
                                             "); writes acknowledged since the last successful fsync may not "
                                             "be durable; every fsync fails until a remount");
        spdlog::error("{}", sync_error_.message());
      }
      return sync_error_;
    }
    b->durable_bytes = std::max(b->durable_bytes, upto);
  }
  return Status::Ok();
}

BucketJournal::Unsynced BucketJournal::PendingSync() {
  MutexLock lk(&mu_);
  Unsynced u;
  uint64_t unretired = 0;
  for (auto& b : buckets_) {
    if (b->retired) continue;
    unretired += b->bytes;
    if (b->durable_bytes >= b->bytes) continue;
    u.bytes += b->bytes - b->durable_bytes;
    u.newest_bucket = b->id;
    u.unretired_bytes = unretired;
  }
  return u;
}

// ------------------------------------------------------------- destage side

std::shared_ptr<const Bucket> BucketJournal::NextSealed(uint64_t cursor, std::chrono::milliseconds idle_seal,
                                                         std::chrono::milliseconds wait) {
  MutexLock lk(&mu_);
  for (int round = 0; round < 2; ++round) {
    if (stopping_ || !destage_error_.ok()) return nullptr;
    std::shared_ptr<Bucket> b;
    for (auto& c : buckets_)
      if (c->id >= cursor) {
        b = c;
        break;
      }
    if (b && !b->sealed && !b->records.empty() &&
        MonoNs() - last_append_ns_ > std::chrono::nanoseconds(idle_seal).count()) {
      SealLocked();
    }
    if (b && b->sealed) return b;
    if (round == 0) work_cv_.WaitFor(wait);
  }
  return nullptr;
}

std::shared_ptr<const Bucket> BucketJournal::RetirementCandidate(uint64_t before) {
  MutexLock lk(&mu_);
  if (buckets_.empty()) return nullptr;
  const auto& b = buckets_.front();
  if (!b->sealed || b->id >= before) return nullptr;
  return b;
}

Status BucketJournal::PrepareRetire(const std::shared_ptr<const Bucket>& b) {
  // The destagers skipped ops of this bucket that newer ops superseded; once
  // the segment is gone (and once the catalog marks the bucket retired,
  // since replay skips it then), those newer ops are the only record of the
  // file's state. If an fsync covered any of this bucket (a round synced
  // part of it), they must be durable before, or a power cut would bring
  // back the data from before the fsynced write. If none did, none of the
  // skipped ops was promised durable yet: nothing is synced, and every
  // round of fdatasyncs from now on makes the newer ops durable before any
  // fsync relying on it returns (Sync: a caller that looked at the buckets
  // before this syncs them all, since the newer ops may have been appended
  // after its look, to any bucket). Decided under sync_mu_, so no round runs
  // in between.
  MutexLock sl(&sync_mu_);
  std::vector<std::pair<std::shared_ptr<Bucket>, uint64_t>> rest;
  {
    MutexLock lk(&mu_);
    if (b->durable_bytes == 0 && !b->replayed) {
      ++unsynced_retirements_;
      return Status::Ok();
    }
    rest = UnsyncedLocked(b.get());
  }
  return SyncBucketsLocked(rest);
}

void BucketJournal::Retire(const std::shared_ptr<const Bucket>& b) {
  // The index lets appenders in between (RetireAll takes its lock in steps).
  index_.RetireAll(b->records);
  Status st = b->segment->Remove();
  if (!st.ok()) spdlog::warn("journal: {}", st.ToString());
  MutexLock lk(&mu_);
  if (buckets_.empty() || buckets_.front() != b) return;  // REQUIRES: b is the oldest
  buckets_.front()->retired = true;
  journal_bytes_ -= std::min(journal_bytes_, b->bytes);
  buckets_.pop_front();
  space_cv_.SignalAll();
}

bool BucketJournal::PendingBefore(uint64_t target) {
  MutexLock lk(&mu_);
  // An open bucket without records (its only append failed) has nothing to
  // destage and is never sealed: it does not count.
  for (auto& b : buckets_)
    if (b->id < target && !(b->records.empty() && !b->sealed && !b->appending)) return true;
  return false;
}

std::pair<uint64_t, uint64_t> BucketJournal::PendingBytes(uint64_t id) {
  MutexLock lk(&mu_);
  for (auto& b : buckets_)
    if (b->id == id) return {b->write_bytes, b->delete_bytes};
  return {0, 0};
}

uint64_t BucketJournal::RecordsFrom(uint64_t from) {
  MutexLock lk(&mu_);
  uint64_t n = 0;
  for (auto& b : buckets_)
    if (b->id >= from) n += b->records.size();
  return n;
}

void BucketJournal::WriteBlocksDestaged(uint64_t n) {
  MutexLock lk(&mu_);
  staged_write_blocks_ -= std::min(staged_write_blocks_, n);
}

void BucketJournal::SetStoreFull(bool full) {
  MutexLock lk(&mu_);
  store_full_ = full;
}

bool BucketJournal::store_full() {
  MutexLock lk(&mu_);
  return store_full_;
}

void BucketJournal::SetDestageError(const Status& st) {
  MutexLock lk(&mu_);
  if (destage_error_.ok()) {
    spdlog::error("destage stopped: {}; acknowledged data stays in the journal", st.ToString());
    destage_error_ = st;
  }
  space_cv_.SignalAll();
  work_cv_.SignalAll();
}

Status BucketJournal::destage_error() {
  MutexLock lk(&mu_);
  return destage_error_;
}

void BucketJournal::SetStopping() {
  MutexLock lk(&mu_);
  stopping_ = true;
  space_cv_.SignalAll();
  work_cv_.SignalAll();
}

bool BucketJournal::stopping() {
  MutexLock lk(&mu_);
  return stopping_;
}

uint64_t BucketJournal::staged_write_blocks() {
  MutexLock lk(&mu_);
  return staged_write_blocks_;
}

uint64_t BucketJournal::UnretiredBytes() {
  MutexLock lk(&mu_);
  return journal_bytes_;
}

JournalFigures BucketJournal::Figures() {
  MutexLock lk(&mu_);
  RefreshBackingLocked();
  JournalFigures f;
  f.journal_bytes = journal_bytes_;
  f.limit = options_.limit;
  f.buckets = buckets_.size();
  f.next_bucket = next_bucket_;
  f.segment_syncs = segment_syncs_;
  f.backing_usage = backing_usage_;
  if (!destage_error_.ok()) f.error = destage_error_.ToString();
  if (!sync_error_.ok()) f.error += (f.error.empty() ? "" : "; ") + sync_error_.ToString();
  return f;
}

}  // namespace chainswap
