#include "destage/engine.h"

#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <map>
#include <set>
#include <vector>

namespace chainswap {

namespace {

constexpr uint64_t kMaxLba = static_cast<uint64_t>(INT64_MAX) >> kBlockShift;

int64_t MonoNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

uint64_t DivUp(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

std::shared_ptr<uint8_t[]> NewBlocks(uint64_t n) {
  return std::shared_ptr<uint8_t[]>(new uint8_t[n * kBlockSize]);
}

}  // namespace

// A bucket: one journal segment and its records in sequence order. Records
// are appended under mu_ while the bucket is open; once sealed they never
// change, and destagers read them without a lock.
struct Engine::Bucket {
  uint64_t id = 0;
  std::shared_ptr<Segment> segment;
  std::vector<Record> records;
  uint64_t bytes = 0;
  uint64_t write_bytes = 0;   // logical bytes of write records
  uint64_t delete_bytes = 0;  // logical bytes of delete records (bounded ranges only)
  bool sealed = false;
  bool retired = false;         // its effects are durable in the catalog; segment deleted
  uint64_t durable_bytes = 0;   // prefix of the segment a successful fdatasync covered
  bool appending = false;       // an append is writing to the segment
  bool seal_requested = false;  // seal once that append completes
};

std::vector<std::string> ValidateEngineOptions(const EngineOptions& o) {
  std::vector<std::string> errs;
  const uint64_t max_record = kRecordHeaderSize + uint64_t{kMaxRecordBlocks} * kBlockSize;
  if (o.bucket_bytes < max_record)
    errs.push_back("bucket size must be at least " + std::to_string(max_record >> 20) + " MiB");
  if (o.journal_limit < 2 * o.bucket_bytes) errs.push_back("journal limit must be at least twice the bucket size");
  if (o.queue.n < 2 || o.queue.n > 65536) errs.push_back("queue slots N must be in [2, 65536]");
  if (o.queue.d_min < 1 || o.queue.d_min > o.queue.n - 1) errs.push_back("D_min must be in [1, N-1]");
  if (!(o.queue.low >= 0 && o.queue.low < o.queue.high && o.queue.high <= 1.0))
    errs.push_back("policy thresholds must satisfy 0 <= low < high <= 1");
  return errs;
}

Engine::Engine(Catalog& catalog, EngineOptions options)
    : catalog_(catalog),
      options_(std::move(options)),
      queue_(options_.queue, [this] { return Snapshot(); }) {}

Engine::~Engine() { (void)Stop(); }

// ------------------------------------------------------------------ replay

Status Engine::Open(std::map<int64_t, ReplayedMeta>* meta) {
  auto ids = ListSegments(options_.journal_dir);
  if (!ids.ok()) return ids.status();
  auto files = catalog_.ListFiles();
  if (!files.ok()) return files.status();
  std::set<int64_t> live;
  for (const FileInfo& f : *files) live.insert(f.file_id);

  // Segments the catalog already holds came back after a power cut lost
  // their unlink: replaying them would roll newer state back.
  auto retired = catalog_.JournalRetiredThrough();
  if (!retired.ok()) return retired.status();
  next_bucket_ = *retired + 1;  // bucket IDs are never reused
  while (!ids->empty() && ids->front() <= *retired) {
    auto seg = Segment::OpenExisting(options_.journal_dir, ids->front());
    Status rm = seg.ok() ? (*seg)->Remove() : seg.status();
    if (!rm.ok()) return rm;
    spdlog::info("journal: removed segment {} (retired already, its deletion was lost)", ids->front());
    ids->erase(ids->begin());
  }

  uint64_t replayed = 0, skipped = 0;
  for (size_t i = 0; i < ids->size(); ++i) {
    auto seg = Segment::OpenExisting(options_.journal_dir, (*ids)[i]);
    if (!seg.ok()) return seg.status();
    std::vector<Record> recs;
    bool torn = false;
    // Only the newest segment may end in a torn tail, which is cut off; any
    // damage elsewhere is refused and left untouched for the operator.
    const bool last = i + 1 == ids->size();
    CS_RETURN_IF_ERROR((*seg)->ReadAll(&recs, &torn, /*cut_torn=*/last));
    if (torn && i + 1 < ids->size()) {
      return Status::Error(EUCLEAN, "journal segment " + (*seg)->path() +
                                        " is damaged but newer segments follow; refusing to drop "
                                        "acknowledged writes (see docs/OPERATIONS.md)");
    }
    auto b = std::make_shared<Bucket>();
    b->id = (*ids)[i];
    b->segment = *seg;
    b->sealed = true;
    b->bytes = (*seg)->bytes();
    for (Record& r : recs) {
      if (r.seq < next_seq_) {
        return Status::Error(EUCLEAN, "journal sequence numbers go backwards in " + (*seg)->path());
      }
      next_seq_ = r.seq + 1;
      if (!live.count(r.file_id)) {  // its file was reclaimed already
        ++skipped;
        continue;
      }
      StagingIndex::Track(&r);
      index_.Add(r);
      if (r.kind == RecordKind::kWrite) {
        staged_write_blocks_ += r.count;
        b->write_bytes += r.count * kBlockSize;
      } else if (r.count <= kMaxLba) {
        b->delete_bytes += std::min<uint64_t>(r.count, 1u << 20) * kBlockSize;
      }
      (*meta)[r.file_id] = ReplayedMeta{r.file_size, r.mtime_ns};
      b->records.push_back(std::move(r));
      ++replayed;
    }
    journal_bytes_ += b->bytes;
    buckets_.push_back(std::move(b));
    next_bucket_ = (*ids)[i] + 1;
  }
  w_cursor_ = x_cursor_ = buckets_.empty() ? next_bucket_ : buckets_.front()->id;
  // Records left in the journal mean the last daemon did not stop cleanly.
  if (replayed) catalog_.ForceVerify(true);
  if (!ids->empty())
    spdlog::info("journal: replayed {} record(s) from {} bucket(s) ({} for reclaimed files skipped)", replayed,
                 ids->size(), skipped);
  return Status::Ok();
}

void Engine::Start() {
  if (!options_.start_destagers || write_thread_.joinable()) return;
  write_thread_ = std::thread([this] { DestagerLoop(IoKind::kWrite); });
  delete_thread_ = std::thread([this] { DestagerLoop(IoKind::kDelete); });
}

Status Engine::Stop() {
  // A clean stop destages everything first, so the journal is left empty.
  if (write_thread_.joinable()) {
    Status ds = Drain(/*give_up_when_store_full=*/true);
    if (!ds.ok() && ds.code() != ECANCELED) spdlog::warn("stop: journal not fully destaged: {}", ds.ToString());
  }
  {
    std::lock_guard lk(mu_);
    if (stop_) return Status::Ok();
    stop_ = true;
    stopping_ = true;
  }
  work_cv_.notify_all();
  space_cv_.notify_all();
  if (write_thread_.joinable()) write_thread_.join();
  if (delete_thread_.joinable()) delete_thread_.join();
  Status st = Sync();
  Status cs = catalog_.Sync();
  return st.ok() ? cs : st;
}

// ------------------------------------------------------------------ append

Status Engine::CheckSpaceLocked(uint64_t new_blocks) {
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

void Engine::RefreshBackingLocked() {
  const int64_t now = MonoNs();
  if (now - backing_checked_ns_ <= 100'000'000) return;  // statvfs at most every 100 ms
  struct statvfs sv;
  if (::statvfs(options_.journal_dir.c_str(), &sv) == 0) {
    backing_free_ = uint64_t{sv.f_bavail} * sv.f_frsize;
    backing_usage_ = sv.f_blocks ? 1.0 - double(sv.f_bavail) / double(sv.f_blocks) : 0.0;
  }
  backing_checked_ns_ = now;
}

void Engine::SealLocked() {
  if (buckets_.empty()) return;
  Bucket& b = *buckets_.back();
  if (b.sealed) return;
  if (b.appending) {
    b.seal_requested = true;  // the appender seals it when its record is in
    return;
  }
  if (!b.records.empty()) {
    b.sealed = true;
    work_cv_.notify_all();
  }
}

Status Engine::Append(Record r, bool space_exempt, std::vector<uint8_t> zero) {
  const uint64_t size = r.EncodedSize();
  const uint64_t payload_sum = PayloadChecksum(r);  // outside every lock
  // Zero blocks are holes: they never need a slot. Scanned once, here,
  // outside every lock; the staging index takes the flags.
  if (r.kind == RecordKind::kWrite && zero.size() != r.count) zero = ZeroBlockFlags(r);
  StagingIndex::Track(&r);
  uint64_t new_blocks = 0;
  if (!space_exempt) {
    for (uint8_t z : zero) new_blocks += z ? 0 : 1;
  }
  std::lock_guard alk(append_mu_);
  std::unique_lock lk(mu_);
  for (;;) {
    if (!bg_error_.ok()) return Status::Error(EIO, "destage stopped after an error: " + bg_error_.message());
    if (new_blocks) {
      Status sp = CheckSpaceLocked(new_blocks);
      if (!sp.ok()) {
        ++counters_.enospc;
        return sp;
      }
    }
    if (journal_bytes_ + size <= options_.journal_limit || stop_) break;
    SealLocked();  // let the destagers get at everything
    space_cv_.wait_for(lk, std::chrono::milliseconds(100));
  }
  if (buckets_.empty() || buckets_.back()->sealed) {
    auto seg = Segment::Create(options_.journal_dir, next_bucket_);
    if (!seg.ok()) return seg.status();
    auto b = std::make_shared<Bucket>();
    b->id = next_bucket_++;
    b->segment = *seg;
    buckets_.push_back(std::move(b));
  }
  std::shared_ptr<Bucket> bp = buckets_.back();
  Bucket& b = *bp;
  r.seq = next_seq_++;
  b.appending = true;  // no seal while the record is being written
  lk.unlock();

  // The segment write runs without mu_ (append_mu_ keeps appends in order),
  // so destagers and readers of engine state are not held up by it.
  uint8_t header[kRecordHeaderSize];
  EncodeHeader(r, payload_sum, header);
  const size_t payload = r.kind == RecordKind::kWrite ? r.count * kBlockSize : 0;
  Status st = b.segment->Append(header, r.data.get(), payload);

  lk.lock();
  b.appending = false;
  if (st.ok()) {
    index_.Add(r, zero);
    b.bytes += size;
    journal_bytes_ += size;
    if (r.kind == RecordKind::kWrite) {
      staged_write_blocks_ += r.count;
      b.write_bytes += r.count * kBlockSize;
    } else {
      b.delete_bytes += std::min<uint64_t>(r.count, 1u << 20) * kBlockSize;
    }
    b.records.push_back(std::move(r));
    last_append_ns_ = MonoNs();
  }
  if ((b.seal_requested || b.bytes >= options_.bucket_bytes) && !b.records.empty()) {
    b.seal_requested = false;
    b.sealed = true;
    work_cv_.notify_all();
  }
  return st;
}

// ------------------------------------------------------------ public ops

Status Engine::ReadBlocks(int64_t file_id, uint64_t lba, uint64_t n, uint8_t* out) {
  std::vector<std::optional<StagingIndex::Hit>> hits;
  index_.Lookup(file_id, lba, n, &hits);
  uint64_t i = 0;
  while (i < n) {
    if (hits[i]) {
      if (hits[i]->is_write) std::memcpy(out + i * kBlockSize, hits[i]->block, kBlockSize);
      else std::memset(out + i * kBlockSize, 0, kBlockSize);
      ++i;
      continue;
    }
    uint64_t j = i + 1;
    while (j < n && !hits[j]) ++j;
    CS_RETURN_IF_ERROR(catalog_.ReadBlocks(file_id, lba + i, static_cast<uint32_t>(j - i), out + i * kBlockSize));
    i = j;
  }
  return Status::Ok();
}

Status Engine::Write(FileRef f, uint64_t offset, std::span<const uint8_t> data, uint64_t size,
                     const FileMetaUpdate& meta) {
  return WriteRecords(f, offset, data, size, meta, /*space_exempt=*/false);
}

Status Engine::WriteRecords(FileRef f, uint64_t offset, std::span<const uint8_t> data, uint64_t size,
                            const FileMetaUpdate& meta, bool space_exempt) {
  if (data.empty()) return Truncate(f, size, meta.size, meta);
  const uint64_t end = offset + data.size();
  const uint64_t first = offset >> kBlockShift;
  const uint64_t last = (end - 1) >> kBlockShift;
  if (last > kMaxLba) return Status::Error(EFBIG, "write beyond the largest supported offset");
  const uint32_t head = offset & (kBlockSize - 1);
  const uint32_t tail = end & (kBlockSize - 1);
  uint64_t done_lba = first;
  size_t consumed = 0;
  while (done_lba <= last) {
    const uint64_t n = std::min<uint64_t>(last - done_lba + 1, kMaxRecordBlocks);
    auto buf = NewBlocks(n);
    const bool first_rec = done_lba == first;
    const bool last_rec = done_lba + n - 1 == last;
    // Read-modify-write of partial edge blocks that hold data.
    if (first_rec && head != 0) {
      if ((first << kBlockShift) < size) CS_RETURN_IF_ERROR(ReadBlocks(f.file_id, first, 1, buf.get()));
      else std::memset(buf.get(), 0, kBlockSize);
    }
    if (last_rec && tail != 0 && !(first_rec && n == 1 && head != 0)) {
      uint8_t* lastp = buf.get() + (n - 1) * kBlockSize;
      if ((last << kBlockShift) < size) CS_RETURN_IF_ERROR(ReadBlocks(f.file_id, last, 1, lastp));
      else std::memset(lastp, 0, kBlockSize);
    }
    const uint32_t dst = first_rec ? head : 0;
    const size_t take = std::min<size_t>(data.size() - consumed, n * kBlockSize - dst);
    std::memcpy(buf.get() + dst, data.data() + consumed, take);
    consumed += take;
    CS_RETURN_IF_ERROR(AppendBlocks(f, done_lba, n, std::move(buf), meta, space_exempt));
    counters_.blocks_written += n;
    done_lba += n;
  }
  return Status::Ok();
}

Status Engine::AppendBlocks(FileRef f, uint64_t lba, uint64_t n, std::shared_ptr<uint8_t[]> buf,
                            const FileMetaUpdate& meta, bool space_exempt) {
  // A zero block is a hole once destaged: long runs of them are journaled
  // as deletes, without their 4 KiB each (guest memory is often zeros).
  constexpr uint64_t kZeroRunBlocks = 4;
  std::vector<uint8_t> zero(n);
  for (uint64_t i = 0; i < n; ++i) zero[i] = IsZeroBlock(buf.get() + i * kBlockSize);
  auto record = [&](RecordKind kind, uint64_t from, uint64_t to) {
    Record r;
    r.kind = kind;
    r.file_id = f.file_id;
    r.dedup_id = f.dedup_id;
    r.lba = lba + from;
    r.count = to - from;
    r.file_size = meta.size;
    r.mtime_ns = meta.mtime_ns;
    if (kind == RecordKind::kWrite) {
      // Shares buf (aliasing pointer): no copy of the payload.
      r.data = std::shared_ptr<const uint8_t[]>(buf, buf.get() + from * kBlockSize);
      return Append(std::move(r), space_exempt, std::vector<uint8_t>(zero.begin() + from, zero.begin() + to));
    }
    return Append(std::move(r), /*space_exempt=*/true);
  };
  uint64_t i = 0;
  while (i < n) {
    // The next zero run long enough to stand alone, from i on.
    uint64_t zs = n, ze = n;
    for (uint64_t k = i; k < n;) {
      if (!zero[k]) {
        ++k;
        continue;
      }
      uint64_t e = k;
      while (e < n && zero[e]) ++e;
      if (e - k >= kZeroRunBlocks) {
        zs = k;
        ze = e;
        break;
      }
      k = e;
    }
    if (zs > i) CS_RETURN_IF_ERROR(record(RecordKind::kWrite, i, zs));
    if (zs < n) CS_RETURN_IF_ERROR(record(RecordKind::kDelete, zs, ze));
    i = ze;
  }
  return Status::Ok();
}

Result<size_t> Engine::Read(FileRef f, uint64_t offset, size_t len, uint64_t size, uint8_t* out) {
  if (offset >= size || len == 0) return size_t{0};
  len = static_cast<size_t>(std::min<uint64_t>(len, size - offset));
  const uint64_t first = offset >> kBlockShift;
  const uint64_t last = (offset + len - 1) >> kBlockShift;
  const uint64_t n = last - first + 1;
  const uint32_t head = offset & (kBlockSize - 1);
  if (head == 0 && (len & (kBlockSize - 1)) == 0) {
    CS_RETURN_IF_ERROR(ReadBlocks(f.file_id, first, n, out));
    return len;
  }
  auto buf = NewBlocks(n);
  CS_RETURN_IF_ERROR(ReadBlocks(f.file_id, first, n, buf.get()));
  std::memcpy(out, buf.get() + head, len);
  return len;
}

Status Engine::Zero(FileRef f, uint64_t offset, uint64_t len, uint64_t size, const FileMetaUpdate& meta) {
  const uint64_t end = std::min(offset + len, size);
  if (offset >= end) return Truncate(f, size, meta.size, meta);
  const uint64_t first_whole = DivUp(offset, kBlockSize);
  const uint64_t end_whole = end >> kBlockShift;  // exclusive
  // Whole blocks first: a punch gives space back even when the store is full.
  if (first_whole < end_whole) {
    Record r;
    r.kind = RecordKind::kDelete;
    r.file_id = f.file_id;
    r.dedup_id = f.dedup_id;
    r.lba = first_whole;
    r.count = end_whole - first_whole;
    r.file_size = meta.size;
    r.mtime_ns = meta.mtime_ns;
    CS_RETURN_IF_ERROR(Append(std::move(r), /*space_exempt=*/true));
  }
  // Partial edge blocks are rewritten with zeros; they replace a block, so
  // they are not refused for space.
  auto zero_bytes = [&](uint64_t from, uint64_t to) {
    std::vector<uint8_t> zeros(to - from, 0);
    return WriteRecords(f, from, zeros, size, meta, /*space_exempt=*/true);
  };
  if (first_whole > end_whole) return zero_bytes(offset, end);  // inside one block
  if ((offset & (kBlockSize - 1)) != 0) CS_RETURN_IF_ERROR(zero_bytes(offset, first_whole << kBlockShift));
  if ((end & (kBlockSize - 1)) != 0) CS_RETURN_IF_ERROR(zero_bytes(end_whole << kBlockShift, end));
  return Status::Ok();
}

Status Engine::Truncate(FileRef f, uint64_t old_size, uint64_t new_size, const FileMetaUpdate& meta) {
  Record r;
  r.kind = RecordKind::kDelete;
  r.file_id = f.file_id;
  r.dedup_id = f.dedup_id;
  r.file_size = new_size;
  r.mtime_ns = meta.mtime_ns;
  if (new_size < old_size) {
    // Zero the tail of the new last block so that growing again reads zeros.
    if ((new_size & (kBlockSize - 1)) != 0) {
      uint64_t block_end = std::min(old_size, DivUp(new_size, kBlockSize) << kBlockShift);
      std::vector<uint8_t> zeros(block_end - new_size, 0);
      FileMetaUpdate m = meta;
      m.size = old_size;
      CS_RETURN_IF_ERROR(WriteRecords(f, new_size, zeros, old_size, m, /*space_exempt=*/true));
    }
    r.lba = DivUp(new_size, kBlockSize);
    r.count = kMaxLba + 1 - r.lba;
  }
  // Growing (or no change) is a size-only record: count 0.
  return Append(std::move(r), /*space_exempt=*/true);
}

Status Engine::Reclaim(FileRef f, uint64_t size) {
  Record r;
  r.kind = RecordKind::kDelete;
  r.drop_file = true;
  r.file_id = f.file_id;
  r.dedup_id = f.dedup_id;
  r.lba = 0;
  r.count = kMaxLba + 1;
  r.file_size = size;
  Status st = Append(r, /*space_exempt=*/true);
  std::lock_guard lk(mu_);
  if (!st.ok() && bg_error_.ok()) {
    // No room for the record (a full backing filesystem). The unlink is in
    // the catalog already, which is all a crash needs (the next mount
    // reclaims unlinked files), so the reclaim runs from memory instead,
    // after everything appended so far.
    spdlog::warn("reclaim of swap file {}: journal append failed ({}); reclaiming without a journal record",
                 f.file_id, st.ToString());
    r.seq = next_seq_++;
    uint64_t after = 0;
    for (auto& b : buckets_)
      if (!b->records.empty()) after = b->id;
    deferred_reclaims_.push_back(DeferredReclaim{after, std::move(r), false});
    st = Status::Ok();
  }
  SealLocked();  // unlink: start giving space back now
  work_cv_.notify_all();
  return st;
}

Status Engine::CloneBlocks(FileRef src, FileRef dst, uint64_t src_lba, uint64_t dst_lba, uint64_t count,
                           const FileMetaUpdate& meta) {
  if (src.dedup_id != dst.dedup_id) return Status::Error(EXDEV, "clone across chains (different dedup domains)");
  CS_RETURN_IF_ERROR(Drain());
  CS_RETURN_IF_ERROR(catalog_.CloneRange(src.file_id, dst.file_id, src_lba, dst_lba, count));
  CS_RETURN_IF_ERROR(catalog_.Sync());
  Record r;
  r.kind = RecordKind::kDelete;  // count 0: a size-only record
  r.file_id = dst.file_id;
  r.dedup_id = dst.dedup_id;
  r.file_size = meta.size;
  r.mtime_ns = meta.mtime_ns;
  return Append(std::move(r), /*space_exempt=*/true);
}

Status Engine::Sync() {
  // What this caller needs durable: every record acknowledged before it
  // called (b->bytes counts only appends whose write returned).
  std::vector<std::pair<std::shared_ptr<Bucket>, uint64_t>> need;
  {
    std::lock_guard lk(mu_);
    if (!journal_error_.ok()) return journal_error_;
    for (auto& b : buckets_)
      if (b->durable_bytes < b->bytes) need.emplace_back(b, b->bytes);
  }
  {
    // One round of fdatasyncs at a time. A caller that waited here finds
    // what the round before it covered and syncs only the rest; the
    // watermark moves only after an fdatasync succeeded, so no caller
    // returns while the fdatasync it relies on is still running.
    std::lock_guard sl(sync_mu_);
    for (auto& [b, target] : need) {
      uint64_t upto;
      {
        std::lock_guard lk(mu_);
        if (!journal_error_.ok()) return journal_error_;
        if (b->retired || b->durable_bytes >= target) continue;
        upto = b->bytes;  // covers appends since the caller's snapshot too
      }
      Status st = b->segment->Sync();
      std::lock_guard lk(mu_);
      if (!st.ok()) {
        // Sticky: after a failed fdatasync the kernel may have dropped the
        // dirty pages, and a retry would "succeed" on data that is gone.
        if (journal_error_.ok()) {
          journal_error_ = Status::Error(EIO, "journal fdatasync failed (" + st.ToString() +
                                                  "); writes acknowledged since the last successful fsync may "
                                                  "not be durable; every fsync fails until a remount");
          spdlog::error("{}", journal_error_.message());
        }
        return journal_error_;
      }
      b->durable_bytes = std::max(b->durable_bytes, upto);
    }
  }
  // The catalog holds the namespace (a file created since the last sync):
  // journal records of a file whose row was lost would be skipped at replay.
  return catalog_.Sync();
}

Result<std::optional<uint64_t>> Engine::NextData(FileRef f, uint64_t offset, uint64_t size) {
  // Staged ops make the catalog's answer stale; report data from here on
  // when any is staged (valid: SEEK_DATA may be conservative).
  uint64_t lba = offset >> kBlockShift;
  uint64_t n = std::min<uint64_t>(DivUp(size, kBlockSize) - lba, 1u << 16);
  std::vector<std::optional<StagingIndex::Hit>> hits;
  index_.Lookup(f.file_id, lba, n, &hits);
  for (auto& h : hits)
    if (h) return std::optional<uint64_t>(offset);
  auto r = catalog_.NextMapped(f.file_id, lba);
  if (!r.ok()) return r.status();
  if (!*r) return std::optional<uint64_t>();
  return std::optional<uint64_t>(std::max(offset, **r << kBlockShift));
}

// ------------------------------------------------------------- destagers

DestageSnapshot Engine::Snapshot() {
  DestageSnapshot s;
  StoreUsage u = catalog_.Usage();
  std::lock_guard lk(mu_);
  s.w_bucket = w_cursor_;
  s.x_bucket = x_cursor_;
  s.journal_usage = double(journal_bytes_) / double(options_.journal_limit);
  if (u.capacity_slots) {
    s.store_usage = double(u.used_slots) / double(u.capacity_slots);
  } else {
    RefreshBackingLocked();
    s.store_usage = backing_usage_;
  }
  for (auto& b : buckets_) {
    if (b->id == w_cursor_) {
      s.pending_write_bytes = b->write_bytes;
      s.pending_delete_bytes = b->delete_bytes;
    }
  }
  return s;
}

void Engine::SetBackgroundError(const Status& st) {
  std::lock_guard lk(mu_);
  if (bg_error_.ok()) {
    spdlog::error("destage stopped: {}; acknowledged data stays in the journal", st.ToString());
    bg_error_ = st;
  }
  space_cv_.notify_all();
}

void Engine::DestagerLoop(IoKind kind) {
  const bool writes = kind == IoKind::kWrite;
  // Named for operators (top -H, perf): "cs-destage-w" / "cs-destage-x".
  ::pthread_setname_np(::pthread_self(), writes ? "cs-destage-w" : "cs-destage-x");
  bool idle_work_done = false;  // delete destager: idle work ran since the last wait
  for (;;) {
    std::shared_ptr<Bucket> b;
    size_t next_record;
    {
      std::unique_lock lk(mu_);
      for (;;) {
        if (stop_ || !bg_error_.ok()) return;
        const uint64_t cursor = writes ? w_cursor_ : x_cursor_;
        for (auto& c : buckets_)
          if (c->id >= cursor) {
            b = c;
            break;
          }
        if (b && !b->sealed && !b->records.empty() &&
            MonoNs() - last_append_ns_ > int64_t{options_.idle_seal_ms} * 1000000) {
          SealLocked();
        }
        if (b && b->sealed) break;
        b.reset();
        if (!writes && !idle_work_done) {
          // Idle work drops mu_: afterwards everything is checked again
          // (stop, new sealed buckets) before waiting, so no wakeup is lost.
          idle_work_done = true;
          if (!deferred_reclaims_.empty()) {
            lk.unlock();
            RunDeferredReclaim();
            lk.lock();
          }
          if (journal_bytes_ == 0) {
            // The journal is empty: make recent frees durable, punch what
            // stays free and shrink the catalog's WAL, so that space comes
            // back without waiting for more work. The catalog is asked
            // without mu_ (its lock is a leaf: the write destager holds it
            // for whole transactions, and appenders wait for mu_).
            lk.unlock();
            const uint64_t destaged = counters_.ops_destaged.load(std::memory_order_relaxed);
            // A WAL left long (a reader kept the checkpoint from finishing)
            // is retried once a second.
            const int64_t now = MonoNs();
            const bool wal_retry = now - idle_wal_try_ns_ > 1'000'000'000 && catalog_.WalBytes() > kWalReserveBytes;
            if (catalog_.HasSlotsToRelease() || destaged != idle_synced_ops_ || wal_retry) {
              idle_wal_try_ns_ = now;
              idle_synced_ops_ = destaged;
              Status ss = catalog_.Sync(/*idle=*/true);
              if (!ss.ok()) spdlog::warn("idle catalog sync: {}", ss.ToString());
            }
            lk.lock();
          }
          continue;
        }
        idle_work_done = false;
        work_cv_.wait_for(lk, std::chrono::milliseconds(options_.idle_seal_ms));
      }
      next_record = writes ? w_record_ : x_record_;
    }
    Status st = writes ? ProcessWrites(*b, &next_record) : ProcessDeletes(*b, &next_record);
    {
      std::lock_guard lk(mu_);
      (writes ? w_record_ : x_record_) = next_record;
      if (st.ok()) {
        (writes ? w_cursor_ : x_cursor_) = b->id + 1;
        (writes ? w_record_ : x_record_) = 0;
        if (writes) store_full_ = false;
        else delete_blocked_ = false;
      }
    }
    if (st.ok()) {
      TryRetire();
      continue;
    }
    if (st.code() == ENOSPC && writes) {
      // Nothing acknowledged is lost: the write stays in the journal and is
      // retried once deletes have given space back.
      std::unique_lock lk(mu_);
      if (!store_full_) spdlog::warn("write destager: content store full; retrying after deletes");
      store_full_ = true;
      work_cv_.wait_for(lk, std::chrono::milliseconds(50));
      continue;
    }
    if (st.code() == ENOSPC) {
      // The catalog could not grow (backing filesystem full to the last
      // byte): the delete stays in the journal and is retried.
      std::unique_lock lk(mu_);
      if (!delete_blocked_) spdlog::warn("delete destager: {}; retrying", st.ToString());
      delete_blocked_ = true;
      work_cv_.wait_for(lk, std::chrono::milliseconds(50));
      continue;
    }
    if (st.code() == ECANCELED) return;  // stopping
    SetBackgroundError(st);
    return;
  }
}

Status Engine::ProcessWrites(const Bucket& b, size_t* next_record) {
  // Consecutive records are applied together, up to kBatchBlocks blocks, so
  // that small random writes do not cost one catalog transaction each: a
  // transaction rewrites each B-tree page it touches once, however many of
  // its rows changed, so wide transactions cut the catalog's WAL traffic.
  constexpr uint64_t kBatchBlocks = 4096;
  std::vector<BlockOp> ops;
  std::vector<size_t> stripes;
  HasherCache hashers;
  size_t i = *next_record;
  while (i < b.records.size()) {
    if (stopping_.load(std::memory_order_relaxed)) return Status::Error(ECANCELED, "stopping");
    size_t j = i;
    uint64_t blocks = 0, records = 0;
    stripes.clear();
    while (j < b.records.size()) {
      const Record& r = b.records[j];
      if (r.kind == RecordKind::kWrite) {
        if (records > 0 && blocks + r.count > kBatchBlocks) break;
        blocks += r.count;
        ++records;
        stripes.push_back(static_cast<uint64_t>(r.file_id) % stripes_.size());
      }
      ++j;
    }
    // Every file of the batch is locked for its check-and-apply, in stripe
    // order (the delete destager holds one stripe at a time: no cycle).
    std::sort(stripes.begin(), stripes.end());
    stripes.erase(std::unique(stripes.begin(), stripes.end()), stripes.end());
    std::vector<std::unique_lock<std::mutex>> locks;
    locks.reserve(stripes.size());
    for (size_t s : stripes) locks.emplace_back(stripes_[s]);
    ops.clear();
    for (size_t k = i; k < j; ++k) {
      const Record& r = b.records[k];
      if (r.kind != RecordKind::kWrite) continue;
      const BlockHasher* hasher = nullptr;
      for (uint64_t n = 0; n < r.count; ++n) {
        // Every record the engine holds was tracked (Append, Open).
        if (StagingIndex::IsSuperseded(r, n)) continue;
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
        op.data = r.data.get() + n * kBlockSize;
        if (!IsZeroBlock(op.data)) op.hash = hasher->Hash(op.data);
        ops.push_back(op);
      }
    }
    counters_.writes_absorbed += blocks - ops.size();
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
    std::lock_guard lk(mu_);
    staged_write_blocks_ -= std::min(staged_write_blocks_, blocks);
  }
  return Status::Ok();
}

Result<const BlockHasher*> Engine::HasherFor(int64_t dedup_id, HasherCache* cache) {
  auto it = cache->find(dedup_id);
  if (it == cache->end()) {
    auto h = catalog_.HasherFor(dedup_id);
    if (!h.ok()) return h.status();
    it = cache->emplace(dedup_id, *h).first;
  }
  return it->second.get();
}

Status Engine::ProcessDeletes(const Bucket& b, size_t* next_record) {
  for (size_t i = *next_record; i < b.records.size(); ++i, *next_record = i) {
    const Record& r = b.records[i];
    if (r.kind != RecordKind::kDelete) continue;
    CS_RETURN_IF_ERROR(ApplyDelete(r));
    ++counters_.ops_destaged;
  }
  return Status::Ok();
}

Status Engine::ApplyDelete(const Record& r) {
  if (r.count > 0) {
    std::lock_guard stripe(Stripe(r.file_id));
    const uint64_t end = std::min<uint64_t>(r.lba + r.count, kMaxLba + 1);
    for (auto [a, e] : index_.LiveDeleteRanges(r.file_id, r.lba, end, r.seq)) {
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
    Status st = catalog_.DropFile(r.file_id);
    if (st.ok()) spdlog::debug("reclaimed swap file {}", r.file_id);
    else if (st.code() == ENOENT) spdlog::debug("swap file {} was reclaimed already", r.file_id);
    else spdlog::warn("reclaim of swap file {}: {}", r.file_id, st.ToString());
  }
  return Status::Ok();
}

bool Engine::RunDeferredReclaim() {
  Record r;
  {
    std::lock_guard lk(mu_);
    if (deferred_reclaims_.empty()) return false;
    const DeferredReclaim& d = deferred_reclaims_.front();
    // Every earlier op of the file must be in the catalog first.
    if (std::min(w_cursor_, x_cursor_) <= d.after_bucket) return false;
    r = d.record;
  }
  Status st = ApplyDelete(r);
  std::lock_guard lk(mu_);
  DeferredReclaim& d = deferred_reclaims_.front();
  if (st.ok()) {
    if (d.failed) spdlog::info("deferred reclaim of swap file {}: done", r.file_id);
    deferred_reclaims_.pop_front();
    ++counters_.ops_destaged;
    space_cv_.notify_all();
  } else if (st.code() != ECANCELED && !d.failed) {
    // Kept and retried (the backing fs may still be full); the file stays
    // unlinked in the catalog, so a stop before it succeeds is harmless too.
    spdlog::warn("deferred reclaim of swap file {}: {}; retrying", r.file_id, st.ToString());
    d.failed = true;
  }
  return st.ok();
}

void Engine::TryRetire() {
  std::lock_guard rl(retire_mu_);
  for (;;) {
    std::shared_ptr<Bucket> b;
    {
      std::lock_guard lk(mu_);
      if (buckets_.empty()) return;
      b = buckets_.front();
      if (!b->sealed || b->id >= std::min(w_cursor_, x_cursor_)) return;
    }
    // Sizes as this bucket left them, then make everything durable.
    std::map<int64_t, FileMetaUpdate> metas;
    for (const Record& r : b->records) metas[r.file_id] = FileMetaUpdate{r.file_id, r.file_size, r.mtime_ns, r.mtime_ns};
    std::vector<FileMetaUpdate> mv;
    for (auto& [id, m] : metas) mv.push_back(m);
    auto res = catalog_.ApplyBlockOps({}, mv);
    // Recorded before the segment goes (see Catalog::JournalRetiredThrough).
    Status st = res.ok() ? catalog_.SetJournalRetiredThrough(b->id) : res.status();
    if (st.ok()) st = catalog_.Sync();
    if (!st.ok()) {
      SetBackgroundError(st);
      return;
    }
    index_.RetireAll(b->records);
    st = b->segment->Remove();
    if (!st.ok()) spdlog::warn("journal: {}", st.ToString());
    std::lock_guard lk(mu_);
    b->retired = true;
    journal_bytes_ -= std::min(journal_bytes_, b->bytes);
    buckets_.pop_front();
    space_cv_.notify_all();
  }
}

Status Engine::Drain(bool give_up_when_store_full) {
  std::unique_lock lk(mu_);
  SealLocked();
  const uint64_t target = next_bucket_;
  // An open bucket without records (its only append failed) has nothing to
  // destage and is never sealed: it does not count.
  auto pending = [&] {
    for (auto& b : buckets_)
      if (b->id < target && !(b->records.empty() && !b->sealed && !b->appending)) return true;
    return false;
  };
  for (;;) {
    if (!bg_error_.ok()) return bg_error_;
    if (give_up_when_store_full && store_full_)
      return Status::Error(ENOSPC, "content store full: writes stay in the journal until space is freed");
    if (give_up_when_store_full && delete_blocked_)
      return Status::Error(ENOSPC, "backing filesystem full: deletes stay in the journal until space is freed");
    if (!pending()) {
      if (deferred_reclaims_.empty()) return Status::Ok();
      if (deferred_reclaims_.front().failed)
        return Status::Error(ENOSPC, "the reclaim of an unlinked swap file is waiting for space on the backing "
                                     "filesystem (done at the latest at the next mount)");
    }
    if (stop_) return Status::Error(ECANCELED, "engine stopped");
    SealLocked();
    work_cv_.notify_all();
    space_cv_.wait_for(lk, std::chrono::milliseconds(20));
  }
}

EngineStats Engine::Stats() {
  EngineStats s;
  DestageSnapshot snap = Snapshot();
  s.store_usage = snap.store_usage;
  s.n = queue_.n();
  s.d = queue_.delete_slots();
  s.policy_changes = queue_.policy_changes();
  auto [w, d] = index_.Size();
  s.staged_write_blocks = w;
  s.staged_delete_ranges = d;
  {
    std::lock_guard lk(mu_);
    s.w_bucket = w_cursor_;
    s.x_bucket = x_cursor_;
    s.journal_bytes = journal_bytes_;
    s.journal_limit = options_.journal_limit;
    s.buckets = buckets_.size();
    for (auto& b : buckets_) {
      if (b->id >= std::min(w_cursor_, x_cursor_)) s.pending_records += b->records.size();
    }
    if (!bg_error_.ok()) s.error = bg_error_.ToString();
    if (!journal_error_.ok()) s.error += (s.error.empty() ? "" : "; ") + journal_error_.ToString();
  }
  s.writes_absorbed = counters_.writes_absorbed;
  s.ops_destaged = counters_.ops_destaged;
  s.blocks_stored = counters_.blocks_stored;
  s.blocks_deduped = counters_.blocks_deduped;
  s.blocks_freed = counters_.blocks_freed;
  s.enospc = counters_.enospc;
  return s;
}

}  // namespace chainswap
