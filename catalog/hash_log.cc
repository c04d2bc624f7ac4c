#include "catalog/hash_log.h"

#include <algorithm>
#include <bit>
#include <cassert>

namespace chainswap {

namespace {

// A Change's code (hash_log.h).
int64_t CodeOf(int64_t pblock, bool add) { return pblock * 2 + (add ? 1 : 0); }

// Table slots for n entries at a load of at most 3/4 (a power of two).
size_t SlotsFor(size_t n) { return std::bit_ceil(std::max<size_t>(64, n + n / 3 + 1)); }

bool ByKeyThenPblock(const HashLog::Change& a, const HashLog::Change& b) {
  return a.key != b.key ? a.key < b.key : a.pblock() < b.pblock();
}

}  // namespace

HashLog::HashLog(size_t max_entries) : max_entries_(std::max<size_t>(max_entries, 1)) {
  Resize(SlotsFor(max_entries_));
}

size_t HashLog::MemoryFor(size_t max_entries) {
  return SlotsFor(max_entries) * sizeof(Change) + max_entries * sizeof(Change);
}

size_t HashLog::EntriesFor(size_t bytes) {
  size_t lo = 1024, hi = 1024;
  while (MemoryFor(hi * 2) <= bytes) hi *= 2;
  // MemoryFor is monotonic: the largest n in [hi, 2 hi) that fits.
  lo = hi;
  hi *= 2;
  while (hi - lo > 1) {
    const size_t mid = lo + (hi - lo) / 2;
    (MemoryFor(mid) <= bytes ? lo : hi) = mid;
  }
  return lo;
}

// ------------------------------------------------------------ the table

void HashLog::Resize(size_t slots) {
  std::vector<Change> old;
  old.swap(table_);
  table_.assign(slots, Change{kEmpty, 0});
  shift_ = 64u - static_cast<unsigned>(std::countr_zero(slots));
  count_ = 0;
  for (const Change& c : old)
    if (c.key != kEmpty) Insert(c.key, c.code);
}

ptrdiff_t HashLog::Find(int64_t key, int64_t pblock) const {
  const size_t mask = table_.size() - 1;
  for (size_t i = Home(key);; i = (i + 1) & mask) {
    const Change& c = table_[i];
    if (c.key == kEmpty) return -1;
    if (c.key == key && c.pblock() == pblock) return static_cast<ptrdiff_t>(i);
  }
}

void HashLog::Insert(int64_t key, int64_t code) {
  if ((count_ + 1) * 4 > table_.size() * 3) Resize(table_.size() * 2);
  const size_t mask = table_.size() - 1;
  size_t i = Home(key);
  while (table_[i].key != kEmpty) i = (i + 1) & mask;
  table_[i] = Change{key, code};
  ++count_;
}

void HashLog::EraseAt(size_t i) {
  // Backward-shift deletion: later members of the probe run move up unless
  // their home lies cyclically in (i, j].
  const size_t mask = table_.size() - 1;
  size_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (table_[j].key == kEmpty) break;
    const size_t h = Home(table_[j].key);
    const bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
    if (!stays) {
      table_[i] = table_[j];
      i = j;
    }
  }
  table_[i].key = kEmpty;
  --count_;
}

void HashLog::Set(int64_t key, int64_t pblock, int64_t code) {
  const ptrdiff_t at = Find(key, pblock);
  if (code == kEmpty) {
    if (at >= 0) EraseAt(static_cast<size_t>(at));
  } else if (at >= 0) {
    table_[static_cast<size_t>(at)].code = code;
  } else {
    Insert(key, code);
  }
}

// ------------------------------------------------------------- changes

int64_t HashLog::Record(int64_t key, int64_t pblock, bool add) {
  assert(in_txn_);
  const ptrdiff_t at = Find(key, pblock);
  const int64_t prev = at >= 0 ? table_[static_cast<size_t>(at)].code : kEmpty;
  undo_.push_back(Undo{key, pblock, prev});
  // Net per pair within the active generation, which hash_index has not
  // seen: an add and a remove of the same pair cancel, whichever came first
  // (add then remove: the block never reached the index; remove then add:
  // the block the index (or the frozen generation) has is back).
  const int64_t code = CodeOf(pblock, add);
  if (prev == kEmpty) {
    Insert(key, code);
  } else if (Change{key, prev}.add() != add) {
    EraseAt(static_cast<size_t>(at));
  }
  ++rows_;
  ++active_rows_;
  return next_seq_++;
}

void HashLog::Candidates(int64_t key, std::vector<int64_t>* out) const {
  const size_t mask = table_.size() - 1;
  for (size_t i = Home(key); table_[i].key != kEmpty; i = (i + 1) & mask) {
    if (table_[i].key == key && table_[i].add()) out->push_back(table_[i].pblock());
  }
  auto it = std::lower_bound(frozen_.begin(), frozen_.end(), key,
                             [](const Change& c, int64_t k) { return c.key < k; });
  for (; it != frozen_.end() && it->key == key; ++it) {
    if (it->add()) out->push_back(it->pblock());
  }
}

// ------------------------------------------------------------ start-up

void HashLog::LoadRow(int64_t seq, int64_t key, int64_t pblock, bool add) {
  // Last change per pair wins: whatever of the log was merged before a
  // crash is merged again, idempotently.
  Set(key, pblock, CodeOf(pblock, add));
  ++rows_;
  ++active_rows_;
  next_seq_ = std::max(next_seq_, seq + 1);
}

void HashLog::Loaded() {
  // Everything loaded is merged (again) from the start: freeze it now.
  if (count_ > 0 || active_rows_ > 0) {
    frozen_.clear();
    frozen_.reserve(count_);
    for (const Change& c : table_)
      if (c.key != kEmpty) frozen_.push_back(c);
    std::sort(frozen_.begin(), frozen_.end(), ByKeyThenPblock);
    std::vector<Change>().swap(table_);
    Resize(SlotsFor(max_entries_));
    merged_ = 0;
    frozen_end_ = next_seq_;
    active_rows_ = 0;
    frozen_open_ = true;  // even with no change left: its rows go with the first merge
  }
}

// -------------------------------------------------------- transactions

void HashLog::Begin() {
  assert(!in_txn_);
  in_txn_ = true;
  undo_.clear();
  txn_saved_rows_ = rows_;
  txn_saved_active_rows_ = active_rows_;
  txn_saved_seq_ = next_seq_;
}

void HashLog::Commit() {
  assert(in_txn_);
  in_txn_ = false;
  undo_.clear();
}

void HashLog::Abort() {
  assert(in_txn_);
  for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) Set(it->key, it->pblock, it->code);
  undo_.clear();
  rows_ = txn_saved_rows_;
  active_rows_ = txn_saved_active_rows_;
  next_seq_ = txn_saved_seq_;
  in_txn_ = false;
}

// ------------------------------------------------------------- merging

void HashLog::MaybeFreeze(bool force) {
  assert(!in_txn_);
  if (frozen_open_) return;  // the frozen generation is still being merged
  if (force ? active_rows_ == 0 : count_ < max_entries_ && active_rows_ < 2 * max_entries_) return;
  frozen_.clear();
  frozen_.reserve(count_);
  for (Change& c : table_) {
    if (c.key != kEmpty) frozen_.push_back(c);
    c.key = kEmpty;
  }
  count_ = 0;
  std::sort(frozen_.begin(), frozen_.end(), ByKeyThenPblock);
  merged_ = 0;
  frozen_end_ = next_seq_;
  active_rows_ = 0;
  frozen_open_ = true;
}

std::span<const HashLog::Change> HashLog::NextChunk(size_t max) const {
  return std::span<const Change>(frozen_).subspan(merged_, std::min(max, frozen_.size() - merged_));
}

bool HashLog::IsLastChunk(size_t max) const { return frozen_open_ && frozen_.size() - merged_ <= max; }

void HashLog::ChunkMerged(size_t n) {
  assert(!in_txn_ && frozen_open_);
  merged_ = std::min(frozen_.size(), merged_ + n);
  if (merged_ == frozen_.size()) {
    frozen_open_ = false;
    rows_ = active_rows_;  // the frozen generation's rows were deleted
    std::vector<Change>().swap(frozen_);
    merged_ = 0;
  }
}

}  // namespace chainswap
