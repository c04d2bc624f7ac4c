#include "destage/engine.h"

#include "destage/journal.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace chainswap {

namespace {

constexpr uint64_t kMaxLba = static_cast<uint64_t>(INT64_MAX) >> kBlockShift;

uint64_t DivUp(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

// The bytes of a partial block that a punch or truncate zeroes.
alignas(64) const uint8_t kZeroBlock[kBlockSize] = {};

// Whole-block scratch of the calling thread (an unaligned read): grown to the largest request
// the thread served (FUSE bounds those: max_write, max_read) and reused, so
// that serving a request allocates nothing under memory pressure. Its pages
// are locked with the rest of the daemon (fs/memory_guard.h).
uint8_t* ScratchBlocks(uint64_t n) {
  thread_local std::vector<uint8_t> scratch;
  if (scratch.size() < n * kBlockSize) scratch.resize(n * kBlockSize);
  return scratch.data();
}

}  // namespace

std::vector<std::string> ValidateEngineOptions(const EngineOptions& o) {
  std::vector<std::string> errs;
  const uint64_t max_record = kRecordHeaderSize + uint64_t{kMaxRecordBlocks} * kBlockSize;
  if (o.bucket_bytes < max_record)
    errs.push_back("bucket size must be at least " + std::to_string(max_record) + " bytes (one record of " +
                   std::to_string(kMaxRecordBlocks) + " blocks and its header; e.g. " +
                   std::to_string((max_record >> 20) + 1) + "M)");
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
      journal_(catalog_, index_,
               JournalOptions{options_.journal_dir, options_.bucket_bytes, options_.journal_limit,
                              options_.backing_reserve}),
      destagers_(catalog_, index_, journal_, counters_, DestagerOptions{options_.queue, options_.idle_seal_ms, options_.write_delay_ms,
                                                           options_.journal_limit / 2}) {}

Engine::~Engine() { (void)Stop(); }

Status Engine::Open(std::map<int64_t, ReplayedMeta>* meta) {
  auto first = journal_.Open(meta);
  if (!first.ok()) return first.status();
  destagers_.Reset(*first);
  return Status::Ok();
}

void Engine::Start() {
  if (options_.start_destagers) destagers_.Start();
}

Status Engine::Stop() {
  if (stopped_) return Status::Ok();
  stopped_ = true;
  // A clean stop destages everything first, so the journal is left empty.
  if (destagers_.running()) {
    Status ds = destagers_.Drain(/*give_up_when_store_full=*/true);
    if (!ds.ok() && ds.code() != ECANCELED) spdlog::warn("stop: journal not fully destaged: {}", ds.ToString());
  }
  destagers_.Join();
  Status st = Sync();
  Status cs = catalog_.Sync();
  return st.ok() ? cs : st;
}

Status Engine::Commit(Op& op) {
  Status st = journal_.Append(op.records);
  if (st.code() == ENOSPC) ++counters_.enospc;
  return st;
}

Status Engine::Append(Record r, bool space_exempt) {
  Op op;
  op.records.push_back({std::move(r), space_exempt, {}});
  return Commit(op);
}

// ------------------------------------------------------------ public ops

Status Engine::ReadBlocks(int64_t file_id, uint64_t lba, uint64_t n, uint8_t* out) {
  std::vector<std::optional<StagingIndex::Hit>> hits;
  index_.Lookup(file_id, lba, n, &hits);
  uint64_t i = 0;
  while (i < n) {
    if (hits[i]) {
      const StagingIndex::Hit& h = *hits[i];
      if (!h.is_write || h.zero) {
        std::memset(out + i * kBlockSize, 0, kBlockSize);
        ++i;
        continue;
      }
      // Staged blocks are read back from their journal segment (page cache),
      // consecutive ones of one record in one read.
      uint64_t j = i + 1;
      while (j < n && hits[j] && hits[j]->is_write && !hits[j]->zero && hits[j]->segment == h.segment &&
             hits[j]->offset == h.offset + (j - i) * kBlockSize)
        ++j;
      CS_RETURN_IF_ERROR(h.segment->ReadAt(h.offset, (j - i) * kBlockSize, out + i * kBlockSize));
      i = j;
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
  if (data.empty()) return Truncate(f, size, meta.size, meta);
  Op op;
  CS_RETURN_IF_ERROR(AddWrite(f, offset, data, size, meta, /*space_exempt=*/false, &op));
  return Commit(op);
}

Status Engine::AddWrite(FileRef f, uint64_t offset, std::span<const uint8_t> data, uint64_t size,
                        const FileMetaUpdate& meta, bool space_exempt, Op* op) {
  const uint64_t end = offset + data.size();
  const uint64_t first = offset >> kBlockShift;
  const uint64_t last = (end - 1) >> kBlockShift;
  if (last > kMaxLba) return Status::Error(EFBIG, "write beyond the largest supported offset");
  const uint32_t head = offset & (kBlockSize - 1);
  const uint32_t tail = end & (kBlockSize - 1);
  size_t consumed = 0;
  // A partial block: read-modify-written into one of the op's edge buffers
  // (zeros beyond the file's size).
  auto edge = [&](uint64_t lba, uint32_t at, size_t len) -> Status {
    uint8_t* e = op->edges[op->edges_used++];
    if ((lba << kBlockShift) < size) CS_RETURN_IF_ERROR(ReadBlocks(f.file_id, lba, 1, e));
    else std::memset(e, 0, kBlockSize);
    std::memcpy(e + at, data.data() + consumed, len);
    consumed += len;
    AddBlocks(f, lba, 1, e, meta, space_exempt, op);
    return Status::Ok();
  };
  uint64_t lba = first;
  if (head != 0 || (first == last && tail != 0)) {
    CS_RETURN_IF_ERROR(edge(first, head, std::min<size_t>(data.size(), kBlockSize - head)));
    ++lba;
  }
  // Whole blocks: journaled straight from the request's buffer (no copy).
  const uint64_t whole_end = tail != 0 ? last : last + 1;  // exclusive
  while (lba < whole_end) {
    const uint64_t n = std::min<uint64_t>(whole_end - lba, kMaxRecordBlocks);
    AddBlocks(f, lba, n, data.data() + consumed, meta, space_exempt, op);
    consumed += n * kBlockSize;
    lba += n;
  }
  if (lba == last && tail != 0) CS_RETURN_IF_ERROR(edge(last, 0, tail));
  counters_.blocks_written += last - first + 1;
  return Status::Ok();
}

void Engine::AddBlocks(FileRef f, uint64_t lba, uint64_t n, const uint8_t* buf, const FileMetaUpdate& meta,
                       bool space_exempt, Op* op) {
  // A zero block is a hole once destaged: long runs of them are journaled
  // as deletes, without their 4 KiB each (guest memory is often zeros).
  constexpr uint64_t kZeroRunBlocks = 4;
  std::vector<uint8_t> zero(n);
  for (uint64_t i = 0; i < n; ++i) zero[i] = IsZeroBlock(buf + i * kBlockSize);
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
      // Points into buf without owning it (aliasing an empty owner: no
      // allocation, no copy). The journal drops it once the op is in its
      // segment, before Commit returns.
      r.data = std::shared_ptr<const uint8_t[]>(std::shared_ptr<const uint8_t[]>(), buf + from * kBlockSize);
      op->records.push_back({std::move(r), space_exempt, std::vector<uint8_t>(zero.begin() + from, zero.begin() + to)});
    } else {
      op->records.push_back({std::move(r), /*space_exempt=*/true, {}});
    }
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
    if (zs > i) record(RecordKind::kWrite, i, zs);
    if (zs < n) record(RecordKind::kDelete, zs, ze);
    i = ze;
  }
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
  uint8_t* buf = ScratchBlocks(n);
  CS_RETURN_IF_ERROR(ReadBlocks(f.file_id, first, n, buf));
  std::memcpy(out, buf + head, len);
  return len;
}

Status Engine::Zero(FileRef f, uint64_t offset, uint64_t len, uint64_t size, const FileMetaUpdate& meta) {
  const uint64_t end = std::min(offset + len, size);
  if (offset >= end) return Truncate(f, size, meta.size, meta);
  const uint64_t first_whole = DivUp(offset, kBlockSize);
  const uint64_t end_whole = end >> kBlockShift;  // exclusive
  Op op;
  // Whole blocks are deleted; they free space, so a punch is never refused
  // for space, even when the store is full.
  if (first_whole < end_whole) {
    Record r;
    r.kind = RecordKind::kDelete;
    r.file_id = f.file_id;
    r.dedup_id = f.dedup_id;
    r.lba = first_whole;
    r.count = end_whole - first_whole;
    r.file_size = meta.size;
    r.mtime_ns = meta.mtime_ns;
    op.records.push_back({std::move(r), /*space_exempt=*/true, {}});
  }
  // Partial edge blocks are rewritten with zeros; they replace a block, so
  // they are not refused for space either.
  auto zero_bytes = [&](uint64_t from, uint64_t to) {
    return AddWrite(f, from, std::span<const uint8_t>(kZeroBlock, to - from), size, meta, /*space_exempt=*/true,
                    &op);
  };
  if (first_whole > end_whole) {
    CS_RETURN_IF_ERROR(zero_bytes(offset, end));  // inside one block
  } else {
    if ((offset & (kBlockSize - 1)) != 0) CS_RETURN_IF_ERROR(zero_bytes(offset, first_whole << kBlockShift));
    if ((end & (kBlockSize - 1)) != 0) CS_RETURN_IF_ERROR(zero_bytes(end_whole << kBlockShift, end));
  }
  return Commit(op);
}

Status Engine::Truncate(FileRef f, uint64_t old_size, uint64_t new_size, const FileMetaUpdate& meta) {
  Op op;
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
      FileMetaUpdate m = meta;
      m.size = old_size;
      CS_RETURN_IF_ERROR(AddWrite(f, new_size, std::span<const uint8_t>(kZeroBlock, block_end - new_size), old_size,
                                  m, /*space_exempt=*/true, &op));
    }
    r.lba = DivUp(new_size, kBlockSize);
    r.count = kMaxLba + 1 - r.lba;
  }
  // Growing (or no change) is a size-only record: count 0.
  op.records.push_back({std::move(r), /*space_exempt=*/true, {}});
  return Commit(op);
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
  if (!st.ok() && journal_.destage_error().ok()) {
    // No room for the record (a full backing filesystem). The unlink is in
    // the catalog already, which is all a crash needs (the next mount
    // reclaims unlinked files), so the reclaim runs from memory instead,
    // after everything appended so far.
    spdlog::warn("reclaim of swap file {}: journal append failed ({}); reclaiming without a journal record",
                 f.file_id, st.ToString());
    auto [seq, after] = journal_.TakeSequence();
    r.seq = seq;
    destagers_.DeferReclaim(std::move(r), after);
    st = Status::Ok();
  }
  journal_.Seal();  // unlink: start giving space back now
  return st;
}

Status Engine::CloneBlocks(FileRef src, FileRef dst, uint64_t src_lba, uint64_t dst_lba, uint64_t count,
                           const FileMetaUpdate& meta) {
  if (src.dedup_id != dst.dedup_id) return Status::Error(EXDEV, "clone across chains (different dedup domains)");
  CS_RETURN_IF_ERROR(destagers_.Drain());
  CS_RETURN_IF_ERROR(catalog_.CloneRange(src.file_id, dst.file_id, src_lba, dst_lba, count));
  CS_RETURN_IF_ERROR(catalog_.Sync());
  return AppendSize(dst, meta);
}

Result<FileExport> Engine::ExportFile(FileRef f) {
  CS_RETURN_IF_ERROR(destagers_.Drain());
  return catalog_.ExportFile(f.file_id);
}

Status Engine::ImportFile(FileRef dst, const FileExport& exp, const FileMetaUpdate& meta) {
  CS_RETURN_IF_ERROR(destagers_.Drain());
  CS_RETURN_IF_ERROR(catalog_.ImportFile(dst.file_id, exp));
  CS_RETURN_IF_ERROR(catalog_.Sync());
  return AppendSize(dst, meta);
}

Status Engine::AppendSize(FileRef f, const FileMetaUpdate& meta) {
  Record r;
  r.kind = RecordKind::kDelete;  // count 0: a size-only record
  r.file_id = f.file_id;
  r.dedup_id = f.dedup_id;
  r.file_size = meta.size;
  r.mtime_ns = meta.mtime_ns;
  return Append(std::move(r), /*space_exempt=*/true);
}

Status Engine::Sync() {
  // A large backlog is made durable by destaging it rather than by an
  // fdatasync of the journal: the destagers write each unique block once to
  // the store and the duplicates not at all, and a retired segment that the
  // kernel has not written back never reaches the disk. Only when most of
  // what destage must get through first is unsynced too: an fsync that
  // follows an earlier one closely (a guest that flushes often next to
  // others that stream) syncs the little it added through the journal
  // rather than waiting for everybody's backlog. Bounded: after
  // kFsyncDestageWait, or when destage cannot go on (space, error, stop),
  // the journal is synced as usual, which skips the buckets retired
  // meanwhile.
  if (options_.fsync_destage_bytes && destagers_.running()) {
    const BucketJournal::Unsynced u = journal_.PendingSync();
    if (u.bytes >= options_.fsync_destage_bytes && 2 * u.bytes >= u.unretired_bytes) {
      if (destagers_.WaitRetiredThrough(u.newest_bucket, kFsyncDestageWait)) ++counters_.fsyncs_destaged;
    }
  }
  CS_RETURN_IF_ERROR(journal_.Sync());
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

Status Engine::Drain(bool give_up_when_store_full) { return destagers_.Drain(give_up_when_store_full); }

EngineStats Engine::Stats() {
  EngineStats s;
  const DestageSnapshot snap = destagers_.Snapshot();
  s.store_usage = snap.store_usage;
  s.w_bucket = snap.w_bucket;
  s.x_bucket = snap.x_bucket;
  s.n = destagers_.queue_slots();
  s.d = destagers_.delete_slots();
  s.policy_changes = destagers_.policy_changes();
  auto [w, d] = index_.Size();
  s.staged_write_blocks = w;
  s.staged_delete_ranges = d;
  const JournalFigures j = journal_.Figures();
  s.journal_bytes = j.journal_bytes;
  s.journal_syncs = j.segment_syncs;
  s.fsyncs_destaged = counters_.fsyncs_destaged.load(std::memory_order_relaxed);
  s.journal_limit = j.limit;
  s.buckets = j.buckets;
  s.pending_records = journal_.RecordsFrom(std::min(snap.w_bucket, snap.x_bucket));
  s.error = j.error;
  s.writes_absorbed = counters_.writes_absorbed;
  s.ops_destaged = counters_.ops_destaged;
  s.blocks_stored = counters_.blocks_stored;
  s.blocks_deduped = counters_.blocks_deduped;
  s.blocks_freed = counters_.blocks_freed;
  s.enospc = counters_.enospc;
  return s;
}

}  // namespace chainswap
