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

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>

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
  uint32_t Acquire(IoKind kind, uint64_t want);
  void Release(IoKind kind, uint32_t slots);

  uint32_t n() const { return cfg_.n; }
  uint32_t delete_slots() const;   // current D
  uint64_t policy_changes() const;

 private:
  const SlotPolicyConfig cfg_;
  const SnapshotFn snapshot_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint32_t d_;                 // guarded by mu_
  uint32_t in_use_write_ = 0;  // guarded by mu_
  uint32_t in_use_delete_ = 0; // guarded by mu_
  uint64_t next_ticket_ = 0;   // guarded by mu_
  uint64_t serving_ = 0;       // guarded by mu_
  uint64_t changes_ = 0;       // guarded by mu_
};

}  // namespace chainswap
