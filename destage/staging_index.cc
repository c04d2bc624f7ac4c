#include "destage/staging_index.h"

#include <mutex>
#include <shared_mutex>
#include <thread>

#include "catalog/block.h"

namespace chainswap {

const StagingIndex::DeleteRange* StagingIndex::Covering(const FileIndex& f, uint64_t lba, uint64_t* start) {
  auto it = f.deletes.upper_bound(lba);
  if (it == f.deletes.begin()) return nullptr;
  --it;
  if (it->second.end <= lba) return nullptr;
  if (start) *start = it->first;
  return &it->second;
}

std::vector<uint8_t> ZeroBlockFlags(const Record& r) {
  std::vector<uint8_t> zero;
  if (r.kind != RecordKind::kWrite) return zero;
  zero.resize(r.count);
  for (uint64_t i = 0; i < r.count; ++i) zero[i] = IsZeroBlock(r.data.get() + i * kBlockSize);
  return zero;
}

void StagingIndex::Track(Record* r) {
  if (r->kind != RecordKind::kWrite || r->count == 0) return;
  const size_t words = (r->count + 63) / 64;
  r->superseded = std::shared_ptr<std::atomic<uint64_t>[]>(new std::atomic<uint64_t>[words]);
  for (size_t i = 0; i < words; ++i) r->superseded[i].store(0, std::memory_order_relaxed);
}

void StagingIndex::MarkSuperseded(const WriteEntry& e) {
  if (e.superseded) e.superseded[e.block / 64].fetch_or(uint64_t{1} << (e.block % 64), std::memory_order_release);
}

void StagingIndex::Add(const Record& r, std::span<const uint8_t> zero_flags) {
  std::vector<uint8_t> scanned;  // before the lock
  if (r.kind == RecordKind::kWrite && zero_flags.size() != r.count) {
    scanned = ZeroBlockFlags(r);
    zero_flags = scanned;
  }
  std::span<const uint8_t> zero = zero_flags;
  adders_waiting_.fetch_add(1, std::memory_order_acq_rel);
  WriterLock lk(&mu_);
  adders_waiting_.fetch_sub(1, std::memory_order_acq_rel);
  FileIndex& f = files_[r.file_id];
  const uint64_t end = r.lba + r.count;
  if (r.kind == RecordKind::kWrite) {
    for (uint64_t i = 0; i < r.count; ++i) {
      auto [it, inserted] = f.writes.try_emplace(r.lba + i);
      if (inserted) {
        ++write_entries_;
      } else {
        if (it->second.zero) --f.zero_writes;
        MarkSuperseded(it->second);
      }
      it->second = WriteEntry{r.seq,       r.segment, r.payload_offset + i * kBlockSize, r.superseded,
                              static_cast<uint32_t>(i), zero[i] != 0};
      if (zero[i]) ++f.zero_writes;
    }
    return;
  }
  if (r.count == 0) return;  // a size-only record
  // Older writes in the range are superseded.
  auto wb = f.writes.lower_bound(r.lba);
  auto we = f.writes.lower_bound(end);
  for (auto it = wb; it != we; ++it) {
    --write_entries_;
    if (it->second.zero) --f.zero_writes;
    MarkSuperseded(it->second);
  }
  f.writes.erase(wb, we);
  // Trim or split overlapping older delete ranges, then insert this one.
  auto it = f.deletes.upper_bound(r.lba);
  if (it != f.deletes.begin()) --it;
  while (it != f.deletes.end() && it->first < end) {
    uint64_t s = it->first;
    DeleteRange d = it->second;
    if (d.end <= r.lba) {
      ++it;
      continue;
    }
    it = f.deletes.erase(it);
    if (s < r.lba) f.deletes.emplace(s, DeleteRange{r.lba, d.seq});
    if (d.end > end) it = f.deletes.emplace(end, DeleteRange{d.end, d.seq}).first;
  }
  f.deletes.emplace(r.lba, DeleteRange{end, r.seq});
}

void StagingIndex::Lookup(int64_t file_id, uint64_t lba, uint64_t n,
                          std::vector<std::optional<Hit>>* out) const {
  out->assign(n, std::nullopt);
  ReaderLock lk(&mu_);
  auto fit = files_.find(file_id);
  if (fit == files_.end()) return;
  const FileIndex& f = fit->second;
  const uint64_t end = lba + n;
  // Delete ranges first, then writes shadow them.
  auto it = f.deletes.upper_bound(lba);
  if (it != f.deletes.begin()) --it;
  for (; it != f.deletes.end() && it->first < end; ++it) {
    uint64_t a = std::max(it->first, lba), b = std::min(it->second.end, end);
    for (uint64_t l = a; l < b; ++l) (*out)[l - lba] = Hit{};
  }
  for (auto w = f.writes.lower_bound(lba); w != f.writes.end() && w->first < end; ++w) {
    Hit h;
    h.is_write = true;
    h.zero = w->second.zero;
    if (!h.zero) {
      h.segment = w->second.segment;
      h.offset = w->second.offset;
    }
    (*out)[w->first - lba] = std::move(h);
  }
}

bool StagingIndex::IsLatestWrite(int64_t file_id, uint64_t lba, uint64_t seq) const {
  ReaderLock lk(&mu_);
  auto fit = files_.find(file_id);
  if (fit == files_.end()) return false;
  auto w = fit->second.writes.find(lba);
  return w != fit->second.writes.end() && w->second.seq == seq;
}

std::vector<std::pair<uint64_t, uint64_t>> StagingIndex::LiveDeleteRanges(int64_t file_id, uint64_t lba,
                                                                          uint64_t end, uint64_t seq) const {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  ReaderLock lk(&mu_);
  uint64_t from = lba;
  auto fit = files_.find(file_id);
  if (fit != files_.end()) {
    for (auto w = fit->second.writes.lower_bound(lba); w != fit->second.writes.end() && w->first < end; ++w) {
      if (w->second.seq < seq) continue;  // cannot happen (erased by the delete); harmless
      if (w->first > from) out.emplace_back(from, w->first);
      from = w->first + 1;
    }
  }
  if (from < end) out.emplace_back(from, end);
  return out;
}

bool StagingIndex::FullySuperseded(const Record& r) {
  if (r.kind != RecordKind::kWrite || !r.superseded) return false;
  for (uint64_t i = 0; i < r.count; ++i)
    if (!IsSuperseded(r, i)) return false;
  return true;
}

void StagingIndex::Retire(const Record& r) {
  if (FullySuperseded(r)) return;  // no entry of its own left: no lock needed
  WriterLock lk(&mu_);
  RetireLocked(r);
}

void StagingIndex::RetireAll(std::span<const Record> records) {
  constexpr size_t kPerHold = 32;
  size_t i = 0;
  while (i < records.size()) {
    // Appenders first: a releasing thread can take the lock straight back
    // before a woken waiter runs, so a loop of short holds could keep one
    // waiting.
    while (adders_waiting_.load(std::memory_order_acquire) > 0) std::this_thread::yield();
    WriterLock lk(&mu_);
    for (size_t held = 0; i < records.size() && held < kPerHold; ++i) {
      if (FullySuperseded(records[i])) continue;
      RetireLocked(records[i]);
      ++held;
    }
  }
}

void StagingIndex::RetireLocked(const Record& r) {
  auto fit = files_.find(r.file_id);
  if (fit == files_.end()) return;
  FileIndex& f = fit->second;
  if (r.kind == RecordKind::kWrite) {
    for (uint64_t i = 0; i < r.count; ++i) {
      auto w = f.writes.find(r.lba + i);
      if (w != f.writes.end() && w->second.seq == r.seq) {
        if (w->second.zero) --f.zero_writes;
        f.writes.erase(w);
        --write_entries_;
      }
    }
  } else if (r.count) {
    const uint64_t end = r.lba + r.count;
    auto it = f.deletes.lower_bound(r.lba);
    while (it != f.deletes.end() && it->first < end) {
      if (it->second.seq == r.seq) it = f.deletes.erase(it);
      else ++it;
    }
  }
  if (f.writes.empty() && f.deletes.empty()) files_.erase(fit);
}

std::optional<StagingIndex::Footprint> StagingIndex::StagedFootprint(int64_t file_id, size_t max_ranges) const {
  Footprint fp;
  ReaderLock lk(&mu_);
  auto fit = files_.find(file_id);
  if (fit == files_.end()) return fp;
  const FileIndex& f = fit->second;
  fp.data_blocks = f.writes.size() - f.zero_writes;
  // Merge the two sorted sequences (write LBAs, delete ranges) into runs.
  auto w = f.writes.begin();
  auto d = f.deletes.begin();
  while (w != f.writes.end() || d != f.deletes.end()) {
    uint64_t a, b;
    if (d == f.deletes.end() || (w != f.writes.end() && w->first < d->first)) {
      a = w->first;
      b = a + 1;
      ++w;
    } else {
      a = d->first;
      b = d->second.end;
      ++d;
    }
    if (!fp.covered.empty() && a <= fp.covered.back().second) {
      fp.covered.back().second = std::max(fp.covered.back().second, b);
    } else {
      if (fp.covered.size() == max_ranges) return std::nullopt;
      fp.covered.emplace_back(a, b);
    }
  }
  return fp;
}

uint64_t StagingIndex::StagedWrites(int64_t file_id) const {
  ReaderLock lk(&mu_);
  auto it = files_.find(file_id);
  return it == files_.end() ? 0 : it->second.writes.size();
}

std::pair<uint64_t, uint64_t> StagingIndex::Size() const {
  ReaderLock lk(&mu_);
  uint64_t ranges = 0;
  for (auto& [id, f] : files_) ranges += f.deletes.size();
  return {write_entries_, ranges};
}

}  // namespace chainswap
