// The logical queue (SPEC §5): N slots of content-store I/O shared by the
// write destager and the delete destager, D of them dedicated to deletes.
//
// A destager asks for slots before applying a batch of block ops and holds
// them while the batch runs: a write batch may hold at most N - D slots (one
// per block), a delete batch at most D. Grants are handed out in FIFO order
// of requests, so when both destagers have work the store's block I/O is
// shared between writes and deletes in the proportion (N - D) : D. D is
// recomputed by the pure policy (slot_policy.h) from a fresh snapshot at
// every request.
//
// Thread-safety: all methods are thread-safe.
#pragma once

#include <cstdint>
#include <functional>

#include "catalog/mutex.h"

#include "destage/slot_policy.h"

namespace chainswap {

enum class IoKind { kWrite, kDelete };

// What one slot carries: a content-store I/O request. A write request
// stores up to kWriteBlocksPerSlot blocks (one catalog transaction, its new
// blocks written in as few pwrites as their slots allow); a delete request
// covers up to kDeleteLbasPerSlot LBAs of a range (sparse ranges are cheap).
inline constexpr uint64_t kWriteBlocksPerSlot = 64;
inline constexpr uint64_t kDeleteLbasPerSlot = 256;

class LogicalQueue {
 public:
  using SnapshotFn = std::function<DestageSnapshot()>;
  LogicalQueue(SlotPolicyConfig cfg, SnapshotFn snapshot);

  // Blocks until this request's turn and returns the number of slots granted
  // (1 <= granted <= want, bounded by the kind's share).
  uint32_t Acquire(IoKind kind, uint64_t want) EXCLUDES(mu_);
  void Release(IoKind kind, uint32_t slots) EXCLUDES(mu_);

  uint32_t n() const { return cfg_.n; }
  uint32_t delete_slots() const EXCLUDES(mu_);   // current D
  uint64_t policy_changes() const EXCLUDES(mu_);

 private:
  const SlotPolicyConfig cfg_;
  const SnapshotFn snapshot_;
  // A leaf: the snapshot (which takes the destagers' and the journal's
  // locks) is taken before it.
  mutable Mutex mu_;
  CondVar cv_{&mu_};
  uint32_t d_ GUARDED_BY(mu_);
  uint32_t in_use_write_ GUARDED_BY(mu_) = 0;
  uint32_t in_use_delete_ GUARDED_BY(mu_) = 0;
  uint64_t next_ticket_ GUARDED_BY(mu_) = 0;
  uint64_t serving_ GUARDED_BY(mu_) = 0;
  uint64_t changes_ GUARDED_BY(mu_) = 0;
};

}  // namespace chainswap
