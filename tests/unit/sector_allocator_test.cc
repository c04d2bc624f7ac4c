// The sector allocator of compressed blocks (catalog/sector_allocator.h): a
// stream of extents packs with no gap across pack pages, best fit among the
// free runs, reuse only after the sync that makes a free durable, wholly
// free pages released at that sync and never earlier (nor by a sync inside
// a transaction), Abort, Load, a failed page acquisition, and a randomized
// run against a model of every sector.
// No SQLite, no store: pack pages come from, and go back to, a tiny fake
// slot allocator (free slots plus a high-water mark).
#include "catalog/sector_allocator.h"

#include <gtest/gtest.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace chainswap {
namespace {

// An extent as (first sector, count): gtest prints pairs readably.
using Ext = std::pair<uint64_t, uint64_t>;
Ext AsExt(SectorExtent e) { return {e.first, e.count}; }
SectorExtent AsExtent(Ext e) { return SectorExtent{e.first, static_cast<uint32_t>(e.second)}; }

// usage() as {used_sectors, free_sectors, pending_sectors, pages}.
using Figures = std::array<uint64_t, 4>;
Figures FiguresOf(const SectorAllocator& a) {
  const SectorAllocator::Usage u = a.usage();
  return {u.used_sectors, u.free_sectors, u.pending_sectors, u.pages};
}

// The slot allocator, as small as can be: the free slots below a
// high-water mark. `want` is honoured when it is free or the high-water
// mark; otherwise the lowest free slot, then the high-water mark.
struct FakeSlots {
  std::set<uint64_t> free;
  uint64_t high = 0;
  uint64_t capacity = 0;         // slots in use at most (0: unlimited)
  std::set<uint64_t> held;       // given to the sector allocator and not back
  std::vector<std::optional<uint64_t>> wants;  // every AcquirePageFn call's `want`
  std::vector<uint64_t> acquired;              // pages handed out, in order
  std::vector<uint64_t> released;              // pages given back by ReleasePageFn
  std::optional<Status> fail;                  // the next Acquire's error, once
  Status last_error;                           // the error Acquire returned last

  uint64_t InUse() const { return high - free.size(); }
  // Takes a slot (for anyone), preferring `want`.
  uint64_t Take(std::optional<uint64_t> want) {
    uint64_t s;
    if (want && (*want == high || free.count(*want) != 0)) {
      s = *want;
    } else if (!free.empty()) {
      s = *free.begin();
    } else {
      s = high;
    }
    if (s == high) {
      ++high;
    } else {
      free.erase(s);
    }
    return s;
  }
  Result<uint64_t> Acquire(std::optional<uint64_t> want) {
    wants.push_back(want);
    if (fail) {
      last_error = *fail;
      fail.reset();
      return last_error;
    }
    if (capacity != 0 && InUse() >= capacity) {
      last_error = Status::Error(ENOSPC, "fake slots: the store is full");
      return last_error;
    }
    const uint64_t s = Take(want);
    held.insert(s);
    acquired.push_back(s);
    return s;
  }
  void Release(uint64_t page) {
    EXPECT_EQ(held.count(page), 1u) << "page " << page << " released, but the sector allocator does not hold it";
    held.erase(page);
    free.insert(page);
    released.push_back(page);
  }
  // The slot allocator's own Abort() taking back a page an aborted
  // transaction acquired.
  void TakeBack(uint64_t page) {
    EXPECT_EQ(held.count(page), 1u) << "page " << page;
    held.erase(page);
    free.insert(page);
  }
  SectorAllocator::AcquirePageFn AcquireFn() {
    return [this](std::optional<uint64_t> want) { return Acquire(want); };
  }
  SectorAllocator::ReleasePageFn ReleaseFn() {
    return [this](uint64_t page) { Release(page); };
  }
};

class SectorAllocatorTest : public ::testing::Test {
 protected:
  SectorAllocatorTest() : alloc_(slots_.AcquireFn(), slots_.ReleaseFn()) {}

  // Allocates in the open transaction; {UINT64_MAX, 0} on failure.
  Ext Take(uint32_t count) {
    auto r = alloc_.Allocate(count);
    EXPECT_TRUE(r.ok()) << "Allocate(" << count << ") -> " << r.status().ToString();
    if (!r.ok()) return {UINT64_MAX, 0};
    EXPECT_EQ(r->count, count);
    return AsExt(*r);
  }
  // One committed transaction allocating extents of these sizes.
  std::vector<Ext> TakeCommitted(std::initializer_list<uint32_t> counts) {
    alloc_.Begin();
    std::vector<Ext> out;
    for (uint32_t c : counts) out.push_back(Take(c));
    alloc_.Commit();
    return out;
  }
  // One committed transaction freeing these extents.
  void FreeCommitted(std::initializer_list<Ext> extents) {
    alloc_.Begin();
    for (Ext e : extents) alloc_.Free(AsExtent(e));
    alloc_.Commit();
  }
  std::set<uint64_t> Released() const { return {slots_.released.begin(), slots_.released.end()}; }

  FakeSlots slots_;
  SectorAllocator alloc_;
};

TEST_F(SectorAllocatorTest, AStreamOfMixedSizesPacksWithNoGapAcrossPageBoundaries) {
  // Slots 0..4 hold other things: the first pack page is slot 5.
  slots_.high = 5;
  const std::vector<uint32_t> sizes{3, 8, 1, 5, 7, 2, 8, 4, 6, 1, 1, 8, 3, 5, 2, 7, 4, 6, 8, 1,
                                    3, 2, 2, 8, 5, 7, 1, 4, 6, 3, 8, 8, 2, 5, 1, 7, 6, 4, 3};
  uint64_t total = 0;
  std::vector<Ext> got;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (i % 3 == 0) alloc_.Begin();
    got.push_back(Take(sizes[i]));
    total += sizes[i];
    if (i % 3 == 2 || i + 1 == sizes.size()) alloc_.Commit();
  }
  ASSERT_FALSE(slots_.acquired.empty());
  EXPECT_EQ(slots_.acquired.front(), 5u);
  EXPECT_EQ(got.front().first, 5u * kSectorsPerPage) << "a new page's run starts at its first sector";
  for (size_t i = 1; i < got.size(); ++i) {
    EXPECT_EQ(got[i].first, got[i - 1].first + got[i - 1].second)
        << "extent " << i << " (" << sizes[i] << " sectors) leaves a gap or overlaps the previous one";
  }
  const uint64_t pages = (total + kSectorsPerPage - 1) / kSectorsPerPage;
  EXPECT_EQ(slots_.acquired.size(), pages) << total << " sectors";
  // The allocator asked each time for the page right after its last one.
  for (size_t i = 1; i < slots_.wants.size(); ++i) {
    EXPECT_EQ(slots_.wants[i], std::optional<uint64_t>(slots_.acquired[i - 1] + 1)) << "acquisition " << i;
    EXPECT_EQ(slots_.acquired[i], slots_.acquired[i - 1] + 1);
  }
  EXPECT_EQ(FiguresOf(alloc_), (Figures{total, pages * kSectorsPerPage - total, 0, pages}));
  EXPECT_TRUE(slots_.released.empty());
}

TEST_F(SectorAllocatorTest, AllocateTakesTheFirstSectorsOfTheSmallestFreeRunThatFits) {
  // Pages 0..3, full: A{0,2} B{2,3} C{5,1} D{6,4} E{10,3} F{13,2} G{15,3}
  // H{18,2} I{20,4} J{24,3} K{27,5}.
  const std::vector<Ext> e = TakeCommitted({2, 3, 1, 4, 3, 2, 3, 2, 4, 3, 5});
  ASSERT_EQ(e[10], (Ext{27, 5}));
  ASSERT_EQ(slots_.acquired.size(), 4u);
  // Free runs [2,5) 3, [6,10) 4 (across pages 0 and 1), [13,15) 2,
  // [18,20) 2, [24,27) 3; no page wholly free.
  FreeCommitted({e[1], e[3], e[5], e[7], e[9]});
  alloc_.Synced();
  EXPECT_TRUE(slots_.released.empty());
  EXPECT_EQ(FiguresOf(alloc_), (Figures{18, 14, 0, 4}));
  alloc_.Begin();
  EXPECT_EQ(Take(2), (Ext{13, 2})) << "the smaller run, not the lower [2,5); the lower of the two runs of 2";
  EXPECT_EQ(Take(1), (Ext{18, 1})) << "the smallest run left is [18,20); its first sector";
  EXPECT_EQ(Take(3), (Ext{2, 3})) << "the lower of the two runs of 3";
  EXPECT_EQ(Take(1), (Ext{19, 1}));
  EXPECT_EQ(Take(4), (Ext{6, 4})) << "a run across a page boundary";
  EXPECT_EQ(Take(2), (Ext{24, 2}));
  EXPECT_EQ(slots_.wants.size(), 4u) << "no page acquired while a free run fits";
  EXPECT_EQ(Take(4), (Ext{32, 4})) << "only [26,27) is left: a new page";
  EXPECT_EQ(slots_.wants.size(), 5u);
  alloc_.Commit();
  EXPECT_EQ(FiguresOf(alloc_), (Figures{35, 5, 0, 5}));
}

TEST_F(SectorAllocatorTest, FreedExtentIsReusedOnlyAfterTheSyncThatMakesTheFreeDurable) {
  const std::vector<Ext> e = TakeCommitted({4, 4, 4, 4});  // pages 0 and 1, full
  ASSERT_EQ(e[1], (Ext{4, 4}));
  EXPECT_FALSE(alloc_.HasPending());
  alloc_.Begin();
  alloc_.Free(AsExtent(e[1]));
  EXPECT_EQ(Take(4), (Ext{16, 4})) << "freed by this very transaction: not reusable";
  alloc_.Commit();
  EXPECT_TRUE(alloc_.HasPending());
  EXPECT_EQ(FiguresOf(alloc_), (Figures{20, 4, 4, 3}));
  alloc_.Begin();
  EXPECT_EQ(Take(4), (Ext{20, 4})) << "pending: committed, not durable";
  EXPECT_EQ(Take(2), (Ext{24, 2})) << "pending: committed, not durable";
  alloc_.Commit();
  EXPECT_TRUE(alloc_.HasPending());
  EXPECT_EQ(FiguresOf(alloc_), (Figures{26, 6, 4, 4}));
  alloc_.Synced();
  EXPECT_FALSE(alloc_.HasPending());
  EXPECT_EQ(FiguresOf(alloc_), (Figures{22, 10, 0, 4}));
  alloc_.Begin();
  EXPECT_EQ(Take(4), (Ext{4, 4})) << "durably free since this sync, and the best fit";
  alloc_.Commit();
  EXPECT_TRUE(slots_.released.empty());
}

TEST_F(SectorAllocatorTest, WhollyFreePageIsReleasedAtTheSyncAfterItsFreesCommitted) {
  // Page 0: a{0,6} b{6,2}; page 1: c{8,8}; page 2: d{16,2} e{18,6}.
  const std::vector<Ext> x = TakeCommitted({6, 2, 8, 2, 6});
  const Ext a = x[0], b = x[1], c = x[2], d = x[3], e = x[4];
  ASSERT_EQ(c, (Ext{8, 8}));
  ASSERT_EQ(e, (Ext{18, 6}));

  FreeCommitted({b});
  alloc_.Synced();
  EXPECT_TRUE(slots_.released.empty()) << "page 0 still has a in use";
  EXPECT_EQ(FiguresOf(alloc_), (Figures{22, 2, 0, 3}));

  alloc_.Begin();
  alloc_.Free(AsExtent(c));
  EXPECT_TRUE(slots_.released.empty());
  EXPECT_EQ(Take(8), (Ext{24, 8})) << "page 1 is pending, not free";
  alloc_.Commit();
  EXPECT_TRUE(slots_.released.empty()) << "not at Commit: page 1's free is not durable";
  EXPECT_EQ(FiguresOf(alloc_), (Figures{30, 2, 8, 4}));
  alloc_.Synced();
  EXPECT_EQ(slots_.released, (std::vector<uint64_t>{1})) << "wholly free, durably";
  EXPECT_EQ(FiguresOf(alloc_), (Figures{22, 2, 0, 3})) << "page 1 is no longer counted";
  alloc_.Synced();
  EXPECT_EQ(slots_.released.size(), 1u) << "released once";

  FreeCommitted({d});
  alloc_.Synced();
  EXPECT_EQ(slots_.released.size(), 1u) << "page 2 still has e in use";
  // Free runs [6,8) and [16,18): page 1 between them is gone, so they do
  // not make one run of 12.
  alloc_.Begin();
  EXPECT_EQ(Take(3), (Ext{32, 3})) << "a run through the released page 1";
  alloc_.Commit();
  EXPECT_EQ(slots_.acquired.back(), 4u);

  // Two frees of one page in two commits, one sync.
  FreeCommitted({a});
  FreeCommitted({e});
  EXPECT_EQ(slots_.released.size(), 1u);
  alloc_.Synced();
  EXPECT_EQ(Released(), (std::set<uint64_t>{0, 1, 2}));
  EXPECT_EQ(slots_.released.size(), 3u);
  FreeCommitted({{24, 8}, {32, 3}});
  alloc_.Synced();
  EXPECT_EQ(Released(), (std::set<uint64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(slots_.released.size(), 5u);
  EXPECT_TRUE(slots_.held.empty());
  EXPECT_EQ(FiguresOf(alloc_), (Figures{0, 0, 0, 0}));
}

// The catalog's at-capacity path syncs inside a transaction: the earlier
// commits' frees become reusable at once, the transaction's own do not, and
// a page that became wholly free waits for the next Synced() outside one.
TEST_F(SectorAllocatorTest, SyncInsideATransactionFreesEarlierCommitsAndDefersReleases) {
  const std::vector<Ext> x = TakeCommitted({8, 8});  // page 0: a, page 1: b
  const Ext a = x[0], b = x[1];
  ASSERT_EQ(b, (Ext{8, 8}));
  FreeCommitted({a});
  alloc_.Begin();
  alloc_.Free(AsExtent(b));
  alloc_.Synced();
  EXPECT_TRUE(slots_.released.empty()) << "page 0 is wholly free, but a transaction is open";
  EXPECT_FALSE(alloc_.HasPending());
  EXPECT_EQ(FiguresOf(alloc_), (Figures{8, 8, 0, 2})) << "b's free is not even committed";
  EXPECT_EQ(Take(4), (Ext{0, 4})) << "durably free since this sync";
  EXPECT_EQ(Take(8), (Ext{16, 8})) << "b was freed by this very transaction: not reusable";
  alloc_.Commit();
  EXPECT_EQ(FiguresOf(alloc_), (Figures{20, 4, 8, 3}));
  alloc_.Synced();
  EXPECT_EQ(slots_.released, (std::vector<uint64_t>{1})) << "page 0 has {0,4} in use";

  FreeCommitted({{0, 4}});
  alloc_.Begin();
  alloc_.Synced();
  EXPECT_EQ(slots_.released.size(), 1u) << "page 0 is wholly free, but a transaction is open";
  alloc_.Commit();
  EXPECT_EQ(slots_.released.size(), 1u) << "released by a Synced(), not by Commit()";
  alloc_.Synced();
  EXPECT_EQ(slots_.released, (std::vector<uint64_t>{1, 0})) << "the next Synced() outside a transaction";

  // Wholly free at a sync inside a transaction that then reuses it: kept.
  FreeCommitted({{16, 8}});
  alloc_.Begin();
  alloc_.Synced();
  EXPECT_EQ(Take(2), (Ext{16, 2}));
  alloc_.Commit();
  alloc_.Synced();
  EXPECT_EQ(slots_.released.size(), 2u) << "page 2 is in use again";
  EXPECT_EQ(FiguresOf(alloc_), (Figures{2, 6, 0, 1}));
  // ... and if that transaction aborts, the page goes at the next sync.
  FreeCommitted({{16, 2}});
  alloc_.Begin();
  alloc_.Synced();
  EXPECT_EQ(Take(8), (Ext{16, 8}));
  alloc_.Abort();
  EXPECT_TRUE(slots_.held.count(2)) << "not acquired by the aborted transaction";
  alloc_.Synced();
  EXPECT_EQ(slots_.released, (std::vector<uint64_t>{1, 0, 2}));
  EXPECT_EQ(FiguresOf(alloc_), (Figures{0, 0, 0, 0}));
}

TEST_F(SectorAllocatorTest, AbortFreesTheAllocationsForgetsTheFreesAndTheAcquiredPages) {
  const std::vector<Ext> e = TakeCommitted({3, 3});  // page 0: {0,3} {3,3}, [6,8) free
  ASSERT_EQ(e[1], (Ext{3, 3}));
  const Figures before = FiguresOf(alloc_);
  EXPECT_EQ(before, (Figures{6, 2, 0, 1}));

  alloc_.Begin();
  EXPECT_EQ(Take(2), (Ext{6, 2}));
  EXPECT_EQ(Take(5), (Ext{8, 5}));
  ASSERT_EQ(slots_.acquired, (std::vector<uint64_t>{0, 1}));
  alloc_.Free(AsExtent(e[0]));
  alloc_.Free({6, 2});  // allocated and dropped by the same transaction
  alloc_.Abort();
  slots_.TakeBack(1);  // the slot allocator's own Abort()
  EXPECT_EQ(FiguresOf(alloc_), before);
  EXPECT_FALSE(alloc_.HasPending());
  EXPECT_TRUE(slots_.released.empty()) << "an aborted acquisition is not released";
  alloc_.Synced();
  EXPECT_TRUE(slots_.released.empty()) << "page 1 was forgotten; page 0 is in use";

  alloc_.Begin();
  EXPECT_EQ(Take(2), (Ext{6, 2})) << "free again";
  EXPECT_EQ(Take(5), (Ext{8, 5})) << "page 1 again, asked for after page 0";
  EXPECT_EQ(slots_.wants.back(), std::optional<uint64_t>(1));
  // Were {0,3} free, it would be the lower of two runs of 3.
  EXPECT_EQ(Take(3), (Ext{13, 3})) << "the aborted free of {0,3} is forgotten";
  alloc_.Commit();
  EXPECT_EQ(FiguresOf(alloc_), (Figures{16, 0, 0, 2}));
}

TEST_F(SectorAllocatorTest, LoadTakesTheExtentsAndReusesTheGapsOfTheirPagesFirst) {
  // Pages 0, 1, 2 and 5 are pack pages, 3 and 4 hold other things.
  slots_.held = {0, 1, 2, 5};
  slots_.high = 6;
  const std::vector<SectorExtent> extents{{0, 3}, {6, 4}, {20, 2}, {40, 8}};
  const Status st = alloc_.Load(extents);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(FiguresOf(alloc_), (Figures{17, 15, 0, 4}));
  EXPECT_FALSE(alloc_.HasPending());
  alloc_.Synced();
  EXPECT_TRUE(slots_.released.empty()) << "every loaded page has a sector in use";
  // Free runs: [3,6) 3, [10,20) 10 (pages 1 and 2), [22,24) 2.
  alloc_.Begin();
  EXPECT_EQ(Take(2), (Ext{22, 2}));
  EXPECT_EQ(Take(3), (Ext{3, 3}));
  EXPECT_EQ(Take(8), (Ext{10, 8})) << "a run across pages 1 and 2";
  EXPECT_EQ(Take(2), (Ext{18, 2}));
  EXPECT_TRUE(slots_.wants.empty()) << "no page acquired while a gap fits";
  EXPECT_EQ(Take(1), (Ext{48, 1})) << "pages 3 and 4 are not pack pages";
  EXPECT_EQ(slots_.wants.size(), 1u);
  alloc_.Commit();
  EXPECT_EQ(FiguresOf(alloc_), (Figures{33, 7, 0, 5}));

  // Streamed, the same.
  SectorAllocator streamed(slots_.AcquireFn(), slots_.ReleaseFn());
  for (const SectorExtent& e : extents) {
    const Status est = streamed.LoadExtent(e);
    ASSERT_TRUE(est.ok()) << est.ToString();
  }
  streamed.LoadDone();
  EXPECT_EQ(FiguresOf(streamed), (Figures{17, 15, 0, 4}));
  streamed.Begin();
  auto first = streamed.Allocate(2);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(AsExt(*first), (Ext{22, 2}));
  streamed.Abort();
}

TEST_F(SectorAllocatorTest, LoadRejectsOverlappingExtentsWithEUCLEAN) {
  auto load = [&](std::vector<SectorExtent> extents) {
    SectorAllocator a(slots_.AcquireFn(), slots_.ReleaseFn());
    return a.Load(extents);
  };
  const Status across = load({{1000, 2}, {1006, 4}, {1009, 1}});  // 1006..1009 runs into page 126
  EXPECT_EQ(across.code(), EUCLEAN) << across.ToString();
  EXPECT_NE(across.message().find("1006"), std::string::npos) << "names both: " << across.message();
  EXPECT_NE(across.message().find("1009"), std::string::npos) << "names both: " << across.message();
  const Status same_first = load({{16, 2}, {16, 1}});
  EXPECT_EQ(same_first.code(), EUCLEAN) << same_first.ToString();
  const Status tail = load({{0, 8}, {8, 8}, {15, 2}});
  EXPECT_EQ(tail.code(), EUCLEAN) << tail.ToString();
  const Status adjacent = load({{0, 8}, {8, 8}, {16, 2}});
  EXPECT_TRUE(adjacent.ok()) << "adjacent extents do not overlap: " << adjacent.ToString();
  // Streamed: the extent that overlaps its predecessor is refused.
  SectorAllocator streamed(slots_.AcquireFn(), slots_.ReleaseFn());
  EXPECT_TRUE(streamed.LoadExtent({1006, 4}).ok());
  const Status st = streamed.LoadExtent({1009, 1});
  EXPECT_EQ(st.code(), EUCLEAN) << st.ToString();
  EXPECT_TRUE(slots_.wants.empty());
  EXPECT_TRUE(slots_.released.empty());
}

TEST_F(SectorAllocatorTest, FailedPageAcquisitionIsReturnedAndLeavesTheAllocatorConsistent) {
  slots_.capacity = 1;
  alloc_.Begin();
  EXPECT_EQ(Take(5), (Ext{0, 5}));
  auto full = alloc_.Allocate(4);
  ASSERT_FALSE(full.ok()) << "got " << full->first << "+" << full->count;
  EXPECT_EQ(full.status().code(), ENOSPC);
  EXPECT_EQ(full.status().message(), slots_.last_error.message());
  EXPECT_EQ(Take(3), (Ext{5, 3})) << "the run the failed call could not use";
  alloc_.Commit();
  EXPECT_EQ(FiguresOf(alloc_), (Figures{8, 0, 0, 1}));

  slots_.fail = Status::Error(EIO, "fake slots: cannot read the free list");
  alloc_.Begin();
  auto broken = alloc_.Allocate(1);
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.status().code(), EIO);
  EXPECT_EQ(broken.status().message(), "fake slots: cannot read the free list");
  alloc_.Commit();
  EXPECT_EQ(FiguresOf(alloc_), (Figures{8, 0, 0, 1}));

  slots_.capacity = 0;
  alloc_.Begin();
  EXPECT_EQ(Take(4), (Ext{8, 4}));
  EXPECT_EQ(Take(4), (Ext{12, 4}));
  alloc_.Commit();
  EXPECT_EQ(slots_.acquired, (std::vector<uint64_t>{0, 1}));
  EXPECT_EQ(FiguresOf(alloc_), (Figures{16, 0, 0, 2}));
}

// ---------------------------------------------------------------- the model

enum class Sector : uint8_t { kFree, kInUse, kPending };

// The contract written as plainly as possible: the state of every sector of
// every pack page.
struct Model {
  std::map<uint64_t, Sector> sectors;  // every sector of every pack page
  std::set<uint64_t> pages;            // the pack pages
  std::map<uint64_t, uint32_t> live;   // extents in use, first -> count (the open transaction's frees out)
  std::optional<uint64_t> last_page;   // the page acquired last, when known
  // The open transaction.
  std::vector<SectorExtent> txn_allocated, txn_freed;
  std::vector<uint64_t> txn_pages;
  std::optional<uint64_t> saved_last_page;

  void AddPage(uint64_t p) {
    pages.insert(p);
    for (uint64_t s = p * kSectorsPerPage; s < (p + 1) * kSectorsPerPage; ++s) sectors[s] = Sector::kFree;
  }
  void Set(SectorExtent e, Sector state) {
    for (uint64_t s = e.first; s < e.end(); ++s) sectors.at(s) = state;
  }
  void Load(const std::vector<SectorExtent>& extents) {
    for (const SectorExtent& e : extents) {
      for (uint64_t p = e.first / kSectorsPerPage; p <= (e.end() - 1) / kSectorsPerPage; ++p) {
        if (pages.count(p) == 0) AddPage(p);
      }
      Set(e, Sector::kInUse);
      live[e.first] = e.count;
    }
  }
  // The first n sectors of the smallest free run of at least n (the lowest
  // among equals), runs maximal across adjacent pack pages.
  std::optional<SectorExtent> BestFit(uint32_t n) const {
    std::optional<SectorExtent> best;
    uint64_t best_len = 0, run_first = 0, run_len = 0;
    auto close = [&] {
      if (run_len >= n && (!best || run_len < best_len)) {
        best = SectorExtent{run_first, n};
        best_len = run_len;
      }
      run_len = 0;
    };
    for (auto [s, state] : sectors) {
      if (run_len > 0 && (state != Sector::kFree || s != run_first + run_len)) close();
      if (state == Sector::kFree) {
        if (run_len == 0) run_first = s;
        ++run_len;
      }
    }
    close();
    return best;
  }
  uint64_t Count(Sector state) const {
    uint64_t n = 0;
    for (auto [s, st] : sectors) n += st == state;
    return n;
  }

  void Begin() {
    txn_allocated.clear();
    txn_freed.clear();
    txn_pages.clear();
    saved_last_page = last_page;
  }
  void Acquired(uint64_t page) {
    AddPage(page);
    txn_pages.push_back(page);
    last_page = page;
  }
  void Allocated(SectorExtent e) {
    Set(e, Sector::kInUse);
    live[e.first] = e.count;
    txn_allocated.push_back(e);
  }
  void Free(SectorExtent e) {  // its sectors stay in use until Commit
    live.erase(e.first);
    txn_freed.push_back(e);
  }
  void Commit() {
    for (const SectorExtent& e : txn_freed) Set(e, Sector::kPending);
    Begin();
  }
  // The pages the transaction acquired: the caller's slot allocator takes
  // them back.
  std::vector<uint64_t> Abort() {
    for (const SectorExtent& e : txn_freed) live[e.first] = e.count;
    for (const SectorExtent& e : txn_allocated) {  // after: an extent may be allocated, then freed
      live.erase(e.first);
      Set(e, Sector::kFree);
    }
    for (uint64_t p : txn_pages) {
      for (uint64_t s = p * kSectorsPerPage; s < (p + 1) * kSectorsPerPage; ++s) {
        EXPECT_EQ(sectors.at(s), Sector::kFree) << "model: aborted page " << p;
        sectors.erase(s);
      }
      pages.erase(p);
    }
    std::vector<uint64_t> out = std::move(txn_pages);
    last_page = saved_last_page;
    Begin();
    return out;
  }
  // The pages Synced must release: none inside a transaction (they wait
  // for the next Synced() outside one).
  std::set<uint64_t> Synced(bool in_txn) {
    for (auto& [s, state] : sectors) {
      if (state == Sector::kPending) state = Sector::kFree;
    }
    std::set<uint64_t> out;
    if (in_txn) return out;
    for (uint64_t p : pages) {
      bool all_free = true;
      for (uint64_t s = p * kSectorsPerPage; s < (p + 1) * kSectorsPerPage; ++s) {
        all_free = all_free && sectors.at(s) == Sector::kFree;
      }
      if (all_free) out.insert(p);
    }
    for (uint64_t p : out) {
      for (uint64_t s = p * kSectorsPerPage; s < (p + 1) * kSectorsPerPage; ++s) sectors.erase(s);
      pages.erase(p);
    }
    return out;
  }
};

// Right after a Load/Commit/Abort/Synced (usage() is as of the last one).
void ExpectSameUsage(const SectorAllocator& a, const Model& m) {
  const uint64_t pending = m.Count(Sector::kPending);
  EXPECT_EQ(FiguresOf(a), (Figures{m.Count(Sector::kInUse) + pending, m.Count(Sector::kFree), pending,
                                   m.pages.size()}))
      << "{used, free, pending, pages}";
  EXPECT_EQ(a.HasPending(), pending != 0);
}

// The live extents do not overlap, are in use in the model, and lie in
// pages the sector allocator holds (acquired or loaded, not released or
// forgotten); the model's pack pages are the ones the fake handed out.
void ExpectConsistent(const Model& m, const FakeSlots& slots) {
  EXPECT_EQ(m.pages, slots.held) << "pack pages vs pages the slot allocator gave";
  uint64_t prev_end = 0;
  for (auto [first, count] : m.live) {
    EXPECT_LE(prev_end, first) << "live extents overlap at sector " << first;
    prev_end = first + count;
    for (uint64_t s = first; s < first + count; ++s) {
      auto it = m.sectors.find(s);
      ASSERT_NE(it, m.sectors.end()) << "extent " << first << "+" << count << " outside the pack pages";
      EXPECT_EQ(it->second, Sector::kInUse) << "sector " << s;
      EXPECT_EQ(slots.held.count(s / kSectorsPerPage), 1u) << "extent " << first << "+" << count;
    }
  }
}

void RunAgainstModel(uint32_t seed, bool load, int steps) {
  SCOPED_TRACE("seed " + std::to_string(seed) + (load ? ", from a Load" : ", from empty"));
  std::mt19937 rng(seed);
  auto one_in = [&](uint32_t n) { return rng() % n == 0; };
  FakeSlots slots;
  Model m;
  std::set<uint64_t> others;  // slots other users of the slot allocator hold
  enum class Phase { kNone, kAllocate, kSynced, kSyncedInTxn } phase = Phase::kNone;
  int acquire_calls = 0;
  std::vector<uint64_t> released_now;

  auto acquire = [&](std::optional<uint64_t> want) -> Result<uint64_t> {
    EXPECT_EQ(phase, Phase::kAllocate) << "AcquirePageFn outside Allocate()";
    ++acquire_calls;
    // The page right after the last one acquired (when that one is still
    // held: the contract does not say what follows a release).
    if (m.last_page && m.pages.count(*m.last_page) != 0) {
      EXPECT_EQ(want, std::optional<uint64_t>(*m.last_page + 1)) << "the page after the last acquired";
    }
    if (one_in(25)) {
      slots.fail = Status::Error(ENOSPC, "injected: store full (seed " + std::to_string(seed) + ")");
    } else if (one_in(5)) {
      others.insert(slots.Take(want));  // someone else got there first
    }
    return slots.Acquire(want);
  };
  auto release = [&](uint64_t page) {
    EXPECT_EQ(phase, Phase::kSynced) << "ReleasePageFn outside a Synced() outside a transaction, page " << page;
    EXPECT_EQ(m.pages.count(page), 1u) << "released page " << page << " is not a pack page";
    for (uint64_t s = page * kSectorsPerPage; s < (page + 1) * kSectorsPerPage; ++s) {
      auto it = m.sectors.find(s);
      // Free, or pending: freed by a commit, durable as of this Synced().
      EXPECT_TRUE(it != m.sectors.end() && it->second != Sector::kInUse)
          << "released page " << page << " has sector " << s << " in use";
    }
    released_now.push_back(page);
    slots.Release(page);
  };
  SectorAllocator alloc(acquire, release);

  if (load) {
    std::vector<SectorExtent> init;
    std::set<uint64_t> touched;
    uint64_t s = rng() % 8;
    const int n = 10 + static_cast<int>(rng() % 40);
    for (int i = 0; i < n; ++i) {
      const uint32_t c = 1 + rng() % kSectorsPerPage;
      init.push_back({s, c});
      for (uint64_t p = s / kSectorsPerPage; p <= (s + c - 1) / kSectorsPerPage; ++p) touched.insert(p);
      s += c + rng() % 4;
      if (one_in(6)) s += kSectorsPerPage * (1 + rng() % 3);
    }
    slots.high = *touched.rbegin() + 1 + rng() % 3;
    for (uint64_t p = 0; p < slots.high; ++p) {
      if (touched.count(p) != 0) {
        slots.held.insert(p);
      } else if (one_in(2)) {
        others.insert(p);
      } else {
        slots.free.insert(p);
      }
    }
    m.Load(init);
    if (seed % 4 == 0) {  // streamed
      for (const SectorExtent& e : init) {
        const Status st = alloc.LoadExtent(e);
        ASSERT_TRUE(st.ok()) << st.ToString();
      }
      alloc.LoadDone();
    } else {
      const Status st = alloc.Load(init);
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
    ExpectSameUsage(alloc, m);
  } else {
    slots.high = rng() % 4;
    for (uint64_t p = 0; p < slots.high; ++p) others.insert(p);
  }

  auto synced = [&](bool in_txn) {
    released_now.clear();
    phase = in_txn ? Phase::kSyncedInTxn : Phase::kSynced;
    alloc.Synced();
    phase = Phase::kNone;
    const std::set<uint64_t> want = m.Synced(in_txn);
    const std::set<uint64_t> got(released_now.begin(), released_now.end());
    ASSERT_EQ(got.size(), released_now.size()) << "a page released twice in one Synced()";
    ASSERT_EQ(got, want) << "the pages wholly and durably free";
  };
  auto allocate = [&] {
    const uint32_t n = 1 + rng() % kSectorsPerPage;
    std::optional<SectorExtent> fit = m.BestFit(n);
    const size_t acquired_before = slots.acquired.size();
    acquire_calls = 0;
    phase = Phase::kAllocate;
    auto got = alloc.Allocate(n);
    phase = Phase::kNone;
    if (fit) {
      ASSERT_EQ(acquire_calls, 0) << "Allocate(" << n << ") acquired a page, but a free run fits at "
                                  << fit->first;
    } else {
      ASSERT_EQ(acquire_calls, 1) << "Allocate(" << n << "): no free run fits, one page to acquire";
      if (slots.acquired.size() == acquired_before) {
        ASSERT_FALSE(got.ok()) << "the acquisition failed, yet Allocate gave " << got->first << "+" << got->count;
        ASSERT_EQ(got.status().code(), slots.last_error.code());
        ASSERT_EQ(got.status().message(), slots.last_error.message());
        return;
      }
      m.Acquired(slots.acquired.back());
      fit = m.BestFit(n);
      ASSERT_TRUE(fit.has_value());
    }
    ASSERT_TRUE(got.ok()) << "Allocate(" << n << ") -> " << got.status().ToString();
    const SectorExtent e = *got;
    ASSERT_EQ(e.count, n);
    for (uint64_t s = e.first; s < e.end(); ++s) {
      auto it = m.sectors.find(s);
      ASSERT_NE(it, m.sectors.end()) << "gave " << e.first << "+" << e.count << ": sector " << s
                                     << " is not in a pack page it holds";
      ASSERT_NE(it->second, Sector::kInUse) << "gave " << e.first << "+" << e.count << ": sector " << s
                                            << " is in use (overlap)";
      ASSERT_NE(it->second, Sector::kPending) << "gave " << e.first << "+" << e.count << ": sector " << s
                                              << " is pending (its free is not durable)";
    }
    ASSERT_EQ(AsExt(e), AsExt(*fit)) << "Allocate(" << n << "): best fit";
    m.Allocated(e);
  };

  for (int step = 0; step < steps; ++step) {
    if (!others.empty() && one_in(4)) {  // another user frees a slot
      auto it = std::next(others.begin(), static_cast<long>(rng() % others.size()));
      slots.free.insert(*it);
      others.erase(it);
    }
    if (one_in(6)) {
      ASSERT_NO_FATAL_FAILURE(synced(/*in_txn=*/false));
      ExpectSameUsage(alloc, m);
      ASSERT_NO_FATAL_FAILURE(ExpectConsistent(m, slots));
      if (::testing::Test::HasFailure()) return;
      continue;
    }
    alloc.Begin();
    m.Begin();
    const int n_ops = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < n_ops; ++i) {
      const bool do_free = !m.live.empty() && (m.live.size() > 48 ? !one_in(3) : one_in(2));
      if (do_free) {
        auto it = std::next(m.live.begin(), static_cast<long>(rng() % m.live.size()));
        const SectorExtent e{it->first, it->second};
        m.Free(e);
        alloc.Free(e);
        continue;
      }
      if (one_in(10)) {  // the catalog's at-capacity sync
        ASSERT_NO_FATAL_FAILURE(synced(/*in_txn=*/true)) << "step " << step << ", op " << i;
        ExpectSameUsage(alloc, m);  // as of this Synced(): the open transaction's allocations count
        continue;
      }
      ASSERT_NO_FATAL_FAILURE(allocate()) << "step " << step << ", op " << i;
    }
    if (one_in(7)) {
      alloc.Abort();
      for (uint64_t p : m.Abort()) slots.TakeBack(p);
    } else {
      alloc.Commit();
      m.Commit();
    }
    ExpectSameUsage(alloc, m);
    ASSERT_NO_FATAL_FAILURE(ExpectConsistent(m, slots));
    if (::testing::Test::HasFailure()) return;
  }

  // Everything freed and durable: every page goes back.
  alloc.Begin();
  m.Begin();
  const std::map<uint64_t, uint32_t> live = m.live;
  for (auto [first, count] : live) {
    m.Free({first, count});
    alloc.Free({first, count});
  }
  alloc.Commit();
  m.Commit();
  ExpectSameUsage(alloc, m);
  ASSERT_NO_FATAL_FAILURE(synced(/*in_txn=*/false));
  EXPECT_TRUE(m.pages.empty());
  EXPECT_TRUE(slots.held.empty()) << slots.held.size() << " pages never released";
  EXPECT_EQ(FiguresOf(alloc), (Figures{0, 0, 0, 0}));
  EXPECT_FALSE(alloc.HasPending());
}

TEST(SectorAllocatorModelTest, RandomTransactionsAndSyncsMatchTheModel) {
  for (uint32_t seed = 1; seed <= 8; ++seed) {
    RunAgainstModel(seed, /*load=*/seed % 2 == 0, /*steps=*/3000);
    if (::testing::Test::HasFailure()) return;
  }
}

}  // namespace
}  // namespace chainswap
