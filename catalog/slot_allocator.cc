#include "catalog/slot_allocator.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cassert>
#include <iterator>

namespace chainswap {

SlotAllocator::SlotAllocator(uint64_t capacity_slots, uint64_t unpunched_reserve, PunchFn punch)
    : capacity_(capacity_slots), reserve_(unpunched_reserve), punch_(std::move(punch)) {}

void SlotAllocator::Load(std::span<const uint64_t> free_slots, uint64_t used_slots, uint64_t end_slot) {
  MutexLock lock(&mu_);
  assert(!in_txn_);
  free_.clear();
  unpunched_.clear();
  pending_.clear();
  uint64_t top = 0;
  // Free slots may still hold bytes (of blocks freed by commits a crash
  // made durable before their punch): punched by the first Synced().
  for (uint64_t s : free_slots) {
    free_.insert(s);
    unpunched_.insert(s);
    top = std::max(top, s + 1);
  }
  to_release_.store(!unpunched_.empty(), std::memory_order_relaxed);
  used_ = used_slots;
  high_water_ = std::max(top, end_slot);
  PublishLocked();
}

void SlotAllocator::Begin() {
  MutexLock lock(&mu_);
  assert(!in_txn_);
  in_txn_ = true;
  txn_allocated_.clear();
  txn_freed_.clear();
  txn_saved_high_water_ = high_water_;
  txn_saved_used_ = used_;
}

bool SlotAllocator::NeedsSyncToAllocate() {
  MutexLock lock(&mu_);
  return free_.empty() && !pending_.empty() && capacity_ != 0 && high_water_ >= capacity_;
}

Result<SlotAllocator::Allocation> SlotAllocator::Allocate(std::optional<uint64_t> want) {
  MutexLock lock(&mu_);
  assert(in_txn_);
  // used_ already counts the slots this transaction allocated, and not yet
  // the ones it freed.
  if (capacity_ != 0 && used_ - txn_freed_.size() >= capacity_) {
    return Status::Error(ENOSPC, "content store capacity reached");
  }
  Allocation a;
  a.from_free = !free_.empty();
  if (want && free_.count(*want)) {
    a.slot = *want;
  } else if (want && *want == high_water_) {
    a.slot = *want;
    a.from_free = false;
  } else if (!unpunched_.empty()) {
    a.slot = *unpunched_.begin();  // its old bytes are overwritten, no punch needed
  } else if (a.from_free) {
    a.slot = *free_.begin();
  } else {
    a.slot = high_water_;
  }
  if (a.from_free) {
    free_.erase(a.slot);
    unpunched_.erase(a.slot);
  } else {
    ++high_water_;
  }
  ++used_;
  txn_allocated_.push_back(a);
  return a;
}

void SlotAllocator::Free(uint64_t slot) {
  MutexLock lock(&mu_);
  assert(in_txn_);
  txn_freed_.push_back(slot);
}

void SlotAllocator::Release(uint64_t slot) {
  MutexLock lock(&mu_);
  assert(!in_txn_);
  // Its frees are durable already; like a pending slot it becomes free
  // (and unpunched) at the next Synced().
  --used_;
  pending_.push_back(slot);
  to_release_.store(true, std::memory_order_relaxed);
  PublishLocked();
}

void SlotAllocator::Commit() {
  MutexLock lock(&mu_);
  assert(in_txn_);
  // Committed, but the commit is not durable yet: until the next Synced()
  // a power cut may bring back the state that references these slots, so
  // they are neither reused nor punched before then.
  used_ -= txn_freed_.size();
  pending_.insert(pending_.end(), txn_freed_.begin(), txn_freed_.end());
  if (!pending_.empty()) to_release_.store(true, std::memory_order_relaxed);
  in_txn_ = false;
  txn_allocated_.clear();
  txn_freed_.clear();
  PublishLocked();
}

void SlotAllocator::Abort() {
  MutexLock lock(&mu_);
  assert(in_txn_);
  for (const Allocation& a : txn_allocated_) {
    if (a.from_free) {
      free_.insert(a.slot);
      unpunched_.insert(a.slot);  // its bytes may have been written: at worst punched twice
    }
  }
  high_water_ = txn_saved_high_water_;
  used_ = txn_saved_used_;
  in_txn_ = false;
  txn_allocated_.clear();
  txn_freed_.clear();
  PublishLocked();
}

void SlotAllocator::Synced(bool idle) {
  MutexLock lock(&mu_);
  // What stayed free since the previous Synced() goes back to the backing
  // fs (under load, all but a reserve that the next overwrites reuse); what
  // was freed since becomes reusable (first, while its bytes are still
  // allocated).
  PunchLocked(idle ? 0 : reserve_);
  free_.insert(pending_.begin(), pending_.end());
  unpunched_.insert(pending_.begin(), pending_.end());
  pending_.clear();
  to_release_.store(!unpunched_.empty(), std::memory_order_relaxed);
  PublishLocked();
}

void SlotAllocator::PunchLocked(uint64_t keep) {
  if (unpunched_.size() <= keep) return;
  const auto from = std::next(unpunched_.begin(), static_cast<std::ptrdiff_t>(keep));
  // Adjacent slots go back to the backing fs in one call.
  auto it = from;
  while (it != unpunched_.end()) {
    const uint64_t first = *it;
    uint64_t n = 1;
    for (++it; it != unpunched_.end() && *it == first + n; ++it) ++n;
    Status ps = punch_(first, n);
    if (!ps.ok()) spdlog::warn("catalog: {}", ps.ToString());
  }
  unpunched_.erase(from, unpunched_.end());
}

SlotAllocator::Usage SlotAllocator::usage() const {
  return Usage{pub_used_.load(std::memory_order_relaxed), pub_free_.load(std::memory_order_relaxed),
               pub_high_.load(std::memory_order_relaxed)};
}

void SlotAllocator::PublishLocked() {
  pub_used_.store(used_, std::memory_order_relaxed);
  pub_free_.store(free_.size() + pending_.size(), std::memory_order_relaxed);
  pub_high_.store(high_water_, std::memory_order_relaxed);
}

}  // namespace chainswap
