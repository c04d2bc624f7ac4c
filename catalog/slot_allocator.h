// The content store's slot allocator (SPEC §5): which slots are in use,
// which are free, which free ones still hold their old bytes, and which were
// freed by commits not yet durable. Crash safety rests on its cycle:
//
//   in use ──Free(), Commit()──▶ pending ──Synced()──▶ free, unpunched
//   free, unpunched ──Synced() after that: all but the lowest `reserve`
//                     (Synced(idle): all)──▶ free, punched
//   free ──Allocate()──▶ in use
//
// Contract:
//  - A slot freed by a transaction is *pending* after Commit(): until a sync
//    has made that commit durable, a power cut can bring back the catalog
//    state that references it, so its bytes must stay. It is neither handed
//    out nor punched before the caller's next Synced(), which says "every
//    commit so far is durable".
//  - Allocate() takes, in this order: the lowest free slot whose bytes are
//    still allocated (unpunched: overwriting it costs the backing fs no new
//    extent), the lowest punched free slot, a new slot at the high-water
//    mark.
//  - Synced() first punches the free slots left unpunched since the previous
//    Synced() (under load all but the lowest `unpunched_reserve`, which the
//    next overwrites reuse; when idle all of them), adjacent slots in one
//    call of `punch`; then the pending slots become free and unpunched.
//  - Capacity: with capacity_slots != 0, Allocate() fails with ENOSPC once
//    the slots in use, counting the open transaction's allocations and not
//    its frees, reach it. When nothing is free but frees are pending and
//    the store may not grow, NeedsSyncToAllocate() says so: the caller
//    syncs (and calls Synced()) to reuse them.
//  - Transactions: Begin(), then Allocate()/Free() as the caller's database
//    transaction uses and drops slots, then Commit() after the database
//    commit, or Abort() after a rollback (allocations are undone, frees
//    forgotten). At most one transaction is open at a time.
//  - The allocator keeps no tables: the free slots are the gaps of the
//    PAT's slots, which the caller hands to Load() at start-up.
//
// Thread-safety: every method is thread-safe (one internal mutex; Usage()
// and HasSlotsToRelease() read atomics without it). Transactions are not
// interleaved: the caller serializes Begin() .. Commit()/Abort() (the
// catalog holds its writer mutex throughout, and for Synced()). `punch` runs
// under the internal mutex, so a slot is never handed out while it is being
// punched; it must not call back into the allocator.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <span>
#include <utility>
#include <vector>

#include "catalog/mutex.h"
#include "catalog/status.h"
#include "catalog/thread_annotations.h"

namespace chainswap {

class SlotAllocator {
 public:
  // Gives `count` slots from `first` on back to the backing filesystem
  // (ContentStore::PunchSlots). A failure is logged; the slots stay free.
  using PunchFn = std::function<Status(uint64_t first, uint64_t count)>;

  struct Usage {
    uint64_t used_slots = 0;  // in use
    uint64_t free_slots = 0;  // free or pending
    uint64_t high_water = 0;  // slots ever used (first never-used slot)
  };
  struct Allocation {
    uint64_t slot = 0;
    bool from_free = false;  // taken from the free list (not the high-water mark)
  };

  // capacity_slots 0: unlimited.
  SlotAllocator(uint64_t capacity_slots, uint64_t unpunched_reserve, PunchFn punch);
  SlotAllocator(const SlotAllocator&) = delete;
  SlotAllocator& operator=(const SlotAllocator&) = delete;

  // Start-up state: `free_slots` (the PAT's gaps; taken as unpunched: a
  // crash may have left bytes in them, which the first Synced() punches
  // beyond the reserve), `used_slots` in use, `end_slot` one past the highest slot in
  // use. The high-water mark is the larger of end_slot and the highest free
  // slot + 1. REQUIRES: no transaction open.
  void Load(std::span<const uint64_t> free_slots, uint64_t used_slots, uint64_t end_slot) EXCLUDES(mu_);

  // Opens a transaction. REQUIRES: none is open.
  void Begin() EXCLUDES(mu_);
  // True when Allocate() can only reuse a slot after a Synced(): nothing is
  // free, frees are pending, and the store is at capacity.
  bool NeedsSyncToAllocate() EXCLUDES(mu_);
  // A slot for a new block (see the order above). ENOSPC at capacity.
  // `want`: a slot the caller would rather have (the sector allocator's
  // next pack page), taken when it is free or is the high-water mark.
  // REQUIRES: a transaction is open.
  Result<Allocation> Allocate(std::optional<uint64_t> want = std::nullopt) EXCLUDES(mu_);
  // The open transaction dropped the last reference to `slot`.
  // REQUIRES: a transaction is open; `slot` is in use.
  void Free(uint64_t slot) EXCLUDES(mu_);
  // A slot in use that its user gave up outside a transaction, its bytes
  // no longer referenced by any durable state (the sector allocator's pack
  // page whose frees a sync made durable): free and unpunched at the next
  // Synced(), like a pending slot. REQUIRES: no transaction open.
  void Release(uint64_t slot) EXCLUDES(mu_);
  // The transaction committed: its frees become pending.
  void Commit() EXCLUDES(mu_);
  // The transaction rolled back: its allocations return to where they came
  // from (a slot from the free list counts as unpunched: at worst it is
  // punched twice), its frees are forgotten.
  void Abort() EXCLUDES(mu_);

  // REQUIRES: every Commit() so far is durable. Punches, then releases the
  // pending slots (see above); `idle` punches every free slot.
  void Synced(bool idle) EXCLUDES(mu_);

  // The allocator's mutex, for owners' lock-order annotations
  // (ACQUIRED_BEFORE); nobody locks it from outside.
  const Mutex* mutex() const RETURN_CAPABILITY(mu_) { return &mu_; }

  // The figures as of the last Load/Commit/Abort/Synced. Lock-free.
  Usage usage() const;
  // True while slots wait for a Synced() to become reusable or be punched:
  // set by a Commit() that freed slots, and by each Synced() to whether
  // unpunched free slots remain. Lock-free.
  bool HasSlotsToRelease() const { return to_release_.load(std::memory_order_relaxed); }

 private:
  // Copies the figures to the atomics usage() reads.
  void PublishLocked() REQUIRES(mu_);
  // Punches the unpunched free slots, all but the lowest `keep`.
  void PunchLocked(uint64_t keep) REQUIRES(mu_);

  // Constant after construction.
  const uint64_t capacity_;
  const uint64_t reserve_;
  const PunchFn punch_;

  Mutex mu_;
  std::set<uint64_t> free_ GUARDED_BY(mu_);       // reusable now, lowest first
  std::set<uint64_t> unpunched_ GUARDED_BY(mu_);  // free slots not punched yet (subset of free_)
  std::vector<uint64_t> pending_ GUARDED_BY(mu_);  // freed by commits not yet durable
  uint64_t high_water_ GUARDED_BY(mu_) = 0;       // first never-used slot
  uint64_t used_ GUARDED_BY(mu_) = 0;             // in use, the open transaction's allocations included
  // The open transaction.
  bool in_txn_ GUARDED_BY(mu_) = false;
  std::vector<Allocation> txn_allocated_ GUARDED_BY(mu_);
  std::vector<uint64_t> txn_freed_ GUARDED_BY(mu_);
  uint64_t txn_saved_high_water_ GUARDED_BY(mu_) = 0;
  uint64_t txn_saved_used_ GUARDED_BY(mu_) = 0;

  // Published figures, written under mu_ and read without it: write
  // admission checks capacity on FUSE threads while a destager holds the
  // catalog across a whole transaction. Relaxed: each figure is a hint on
  // its own; nothing else is ordered by them.
  std::atomic<uint64_t> pub_used_{0}, pub_free_{0}, pub_high_{0};
  std::atomic<bool> to_release_{false};  // see HasSlotsToRelease()
};

}  // namespace chainswap
