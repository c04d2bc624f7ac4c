#include "destage/logical_queue.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace chainswap {

LogicalQueue::LogicalQueue(SlotPolicyConfig cfg, SnapshotFn snapshot)
    : cfg_(cfg), snapshot_(std::move(snapshot)), d_(cfg.d_min) {}

uint32_t LogicalQueue::Acquire(IoKind kind, uint64_t want) {
  // Snapshot outside the lock: it takes the engine's own locks.
  DestageSnapshot snap = snapshot_();
  uint32_t d = ComputeDeleteSlots(cfg_, snap);
  MutexLock lk(&mu_);
  if (d != d_) {
    spdlog::debug("logical queue: D {} -> {} (W={} X={} journal={:.2f} store={:.2f} pend_del={} pend_wr={})",
                  d_, d, snap.w_bucket, snap.x_bucket, snap.journal_usage, snap.store_usage,
                  snap.pending_delete_bytes, snap.pending_write_bytes);
    d_ = d;
    ++changes_;
    cv_.SignalAll();
  }
  const uint64_t ticket = next_ticket_++;
  uint32_t granted = 0;
  for (;;) {
    if (serving_ == ticket) {
      const uint32_t cap = kind == IoKind::kDelete ? d_ : cfg_.n - d_;
      const uint32_t used = kind == IoKind::kDelete ? in_use_delete_ : in_use_write_;
      // Never more than N in use in all, even right after D changed.
      const uint32_t total = in_use_write_ + in_use_delete_;
      if (used < cap && total < cfg_.n) {
        granted = static_cast<uint32_t>(std::min<uint64_t>({want == 0 ? 1 : want, cap - used, cfg_.n - total}));
        break;
      }
    }
    cv_.Wait();
  }
  (kind == IoKind::kDelete ? in_use_delete_ : in_use_write_) += granted;
  ++serving_;
  cv_.SignalAll();
  return granted;
}

void LogicalQueue::Release(IoKind kind, uint32_t slots) {
  MutexLock lk(&mu_);
  uint32_t& used = kind == IoKind::kDelete ? in_use_delete_ : in_use_write_;
  used -= std::min(used, slots);
  cv_.SignalAll();
}

uint32_t LogicalQueue::delete_slots() const {
  MutexLock lk(&mu_);
  return d_;
}

uint64_t LogicalQueue::policy_changes() const {
  MutexLock lk(&mu_);
  return changes_;
}

}  // namespace chainswap
