// The compressed blocks' sector allocator (issue 14, docs/FORMAT.md
// "Compressed blocks"): which 512-byte sectors of the content store's *pack
// pages* are in use, which are free, and which were freed by commits not
// yet durable.
//
// Sector s lives at byte s * 512 of the store; page (= slot) p holds
// sectors [8p, 8p + 8). A compressed block occupies an extent of 1..8
// consecutive sectors, which may run across the boundary of two adjacent
// pack pages. Pack pages are slots the allocator took from the slot
// allocator (AcquirePageFn); a pack page whose sectors are all free again,
// durably, goes back to it (ReleasePageFn), which reuses or punches it.
//
// Contract (the slot allocator's cycle, for sectors):
//   in use ──Free(), Commit()──▶ pending ──Synced()──▶ free
//   free ──Allocate()──▶ in use
//   a pack page with every sector free at Synced() ──▶ released
//  - A freed extent is *pending* after Commit() until the caller's next
//    Synced() (every commit so far durable): a power cut can bring back the
//    catalog state that references it, so its bytes must stay.
//  - Allocate(n) takes the first n sectors of the smallest free run of at
//    least n sectors (the lowest such run among equals: best fit), runs
//    being maximal across adjacent pack pages. When no run fits it acquires
//    a page, asking first for the page right after the last one it
//    acquired, so that a stream of blocks packs with no gap; a run at the
//    end of that page then merges with the new page.
//  - Transactions: Begin(), Allocate()/Free() as the caller's database
//    transaction uses and drops extents, then Commit() after the database
//    commit, or Abort() after a rollback: the transaction's allocations
//    become free again, its frees are forgotten, and the pages it acquired
//    are forgotten (the caller's slot allocator takes them back in its own
//    Abort()). At most one transaction is open at a time.
//  - The allocator keeps no tables: Load() gets the extents of every
//    compressed block (the PAT's negative pblocks, docs/FORMAT.md); the
//    pages they touch are the pack pages, the sectors of those pages that no
//    extent covers are free.
//  - Memory: proportional to the free runs (pages with free sectors), not to
//    the pages in use.
//
// Thread-safety: every method is thread-safe (one internal mutex; usage()
// and HasPending() read atomics without it). Transactions are not
// interleaved: the caller serializes Begin() .. Commit()/Abort() (the
// catalog holds its writer mutex throughout, and for Synced()). The
// callbacks run under the internal mutex: they may take the slot
// allocator's lock (lock order: catalog writer mutex, then this, then the
// slot allocator's) and must not call back into this allocator.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <utility>
#include <vector>

#include "catalog/compression.h"
#include "catalog/mutex.h"
#include "catalog/status.h"
#include "catalog/thread_annotations.h"

namespace chainswap {

inline constexpr uint32_t kSectorsPerPage = kSectorsPerBlock;  // a page is a slot

struct SectorExtent {
  uint64_t first = 0;  // first sector
  uint32_t count = 0;  // 1..kSectorsPerPage
  uint64_t end() const { return first + count; }
  bool operator==(const SectorExtent&) const = default;
};

class SectorAllocator {
 public:
  // A slot for a new pack page; `want`, when set, is the slot the
  // allocator would rather have (the slot allocator gives it when it is
  // free, or next at its high-water mark, and any slot otherwise). ENOSPC
  // (or another error) when none can be had: Allocate() returns it.
  using AcquirePageFn = std::function<Result<uint64_t>(std::optional<uint64_t> want)>;
  // Gives back a pack page whose sectors are all free, and whose frees
  // are durable (called from Synced()).
  using ReleasePageFn = std::function<void(uint64_t page)>;

  struct Usage {
    uint64_t used_sectors = 0;     // in use by extents (pending ones included)
    uint64_t free_sectors = 0;     // free sectors of pack pages (reusable now)
    uint64_t pending_sectors = 0;  // freed by commits not yet durable
    uint64_t pages = 0;            // pack pages held
  };

  SectorAllocator(AcquirePageFn acquire, ReleasePageFn release);
  SectorAllocator(const SectorAllocator&) = delete;
  SectorAllocator& operator=(const SectorAllocator&) = delete;

  // Start-up state: the extents in use, sorted by first sector, not
  // overlapping (EUCLEAN naming the two otherwise). REQUIRES: no
  // transaction open; nothing loaded or allocated before.
  Status Load(std::span<const SectorExtent> extents) EXCLUDES(mu_);
  // The same, streamed: LoadExtent() for each extent in order, then
  // LoadDone().
  Status LoadExtent(SectorExtent e) EXCLUDES(mu_);
  void LoadDone() EXCLUDES(mu_);

  void Begin() EXCLUDES(mu_);
  // An extent of `count` (1..kSectorsPerPage) sectors. REQUIRES: a
  // transaction is open.
  Result<SectorExtent> Allocate(uint32_t count) EXCLUDES(mu_);
  // Compaction's allocation: an extent in pages acquired by this
  // transaction for it, packed one after the other with no gap, never in a
  // hole of an older page (the pages being emptied keep theirs). REQUIRES:
  // a transaction is open.
  Result<SectorExtent> AllocateFresh(uint32_t count) EXCLUDES(mu_);
  // Up to `max_pages` pack pages with at least `min_free` free sectors, the
  // emptiest first: compaction's candidates.
  std::vector<uint64_t> SparsePages(uint32_t min_free, size_t max_pages) EXCLUDES(mu_);
  // The open transaction dropped the last reference to `e` (an extent in
  // use). REQUIRES: a transaction is open.
  void Free(SectorExtent e) EXCLUDES(mu_);
  void Commit() EXCLUDES(mu_);
  void Abort() EXCLUDES(mu_);
  // REQUIRES: every Commit() so far is durable. Pending extents become
  // free; pack pages now wholly free are released, unless a transaction is
  // open (then at the next Synced() outside one).
  void Synced() EXCLUDES(mu_);

  // The allocator's mutex, for owners' lock-order annotations; nobody
  // locks it from outside.
  const Mutex* mutex() const RETURN_CAPABILITY(mu_) { return &mu_; }

  // True while extents wait for a Synced() (to become free). Lock-free.
  bool HasPending() const { return has_pending_.load(std::memory_order_relaxed); }
  // As of the last Load/Commit/Abort/Synced. Lock-free.
  Usage usage() const;

 private:
  // Adds [first, first + count) to the free runs (merging with neighbours)
  // and to the pages' free counts.
  void AddFree(uint64_t first, uint64_t count) REQUIRES(mu_);
  // Removes [first, first + count) (all free) from the free runs and the
  // pages' free counts.
  void TakeFree(uint64_t first, uint64_t count) REQUIRES(mu_);
  // Makes page p a pack page with every sector free.
  void AddPage(uint64_t page) REQUIRES(mu_);
  // Forgets page p, whose sectors are all free.
  void DropPage(uint64_t page) REQUIRES(mu_);
  void Publish() REQUIRES(mu_);

  // Constant after construction.
  const AcquirePageFn acquire_;
  const ReleasePageFn release_;

  Mutex mu_;  // before the slot allocator's (the callbacks take it)

  std::map<uint64_t, uint64_t> runs_ GUARDED_BY(mu_); // free runs: first sector -> length
  std::set<std::pair<uint64_t, uint64_t>> by_len_ GUARDED_BY(mu_); // (length, first sector) of each run
  std::map<uint64_t, uint32_t> page_free_ GUARDED_BY(mu_); // pack page -> free sectors (pages with any)
  std::vector<SectorExtent> pending_ GUARDED_BY(mu_); // freed by commits not yet durable
  std::optional<uint64_t> last_page_ GUARDED_BY(mu_); // the page acquired last
  std::set<uint64_t> releasable_ GUARDED_BY(mu_); // pages to release when wholly free
  std::optional<SectorExtent> load_prev_ GUARDED_BY(mu_); // Load: the previous extent
  uint64_t load_covered_to_ GUARDED_BY(mu_) = 0; // Load: sectors below are covered or not packed
  uint64_t pages_ GUARDED_BY(mu_) = 0;
  uint64_t used_ GUARDED_BY(mu_) = 0; // sectors in use (pending ones included)
  uint64_t free_ GUARDED_BY(mu_) = 0;
  uint64_t pending_sectors_ GUARDED_BY(mu_) = 0; // sectors of pending_

  bool in_txn_ GUARDED_BY(mu_) = false;
  std::vector<SectorExtent> txn_allocated_ GUARDED_BY(mu_);
  std::vector<SectorExtent> txn_freed_ GUARDED_BY(mu_);
  std::vector<uint64_t> txn_pages_ GUARDED_BY(mu_); // pages acquired by the transaction
  std::optional<uint64_t> txn_saved_last_page_ GUARDED_BY(mu_);
  // AllocateFresh's run: [fresh_first_, fresh_end_), free, in pages the
  // open transaction acquired (empty at Begin()).
  uint64_t fresh_first_ GUARDED_BY(mu_) = 0;
  uint64_t fresh_end_ GUARDED_BY(mu_) = 0;

  // Published figures, written under mu_ and read without it (the
  // catalog's Usage() runs on FUSE threads). Relaxed: each is a hint.
  std::atomic<uint64_t> pub_used_{0}, pub_free_{0}, pub_pending_{0}, pub_pages_{0};
  std::atomic<bool> has_pending_{false};
};

}  // namespace chainswap
