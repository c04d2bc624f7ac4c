// The slot allocator (catalog/slot_allocator.h): reuse only after the sync
// that makes a free durable, lowest first, unpunched before punched, the
// reserve under load and everything punched when idle, capacity, and a
// randomized run against a simple model. No SQLite, no store: punches go
// to a recording fake.
#include "catalog/slot_allocator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace chainswap {
namespace {

// Records every punch: (first, count) per call.
struct PunchLog {
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  SlotAllocator::PunchFn Fn() {
    return [this](uint64_t first, uint64_t count) {
      calls.emplace_back(first, count);
      return Status::Ok();
    };
  }
  std::set<uint64_t> Slots() const {
    std::set<uint64_t> s;
    for (auto [first, count] : calls)
      for (uint64_t i = 0; i < count; ++i) s.insert(first + i);
    return s;
  }
};

// An allocator with slots 0 .. n-1 in use (one committed transaction).
class SlotAllocatorTest : public ::testing::Test {
 protected:
  void Make(uint64_t capacity, uint64_t reserve, uint64_t n_used) {
    alloc_ = std::make_unique<SlotAllocator>(capacity, reserve, punches_.Fn());
    alloc_->Begin();
    for (uint64_t i = 0; i < n_used; ++i) ASSERT_EQ(Take(), i);
    alloc_->Commit();
  }
  // Allocates in the open transaction; UINT64_MAX on failure.
  uint64_t Take() {
    auto a = alloc_->Allocate();
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    return a.ok() ? a->slot : UINT64_MAX;
  }
  // One committed transaction that frees `slots`.
  void FreeCommitted(std::initializer_list<uint64_t> slots) {
    alloc_->Begin();
    for (uint64_t s : slots) alloc_->Free(s);
    alloc_->Commit();
  }
  // One committed transaction that allocates one slot.
  uint64_t TakeCommitted() {
    alloc_->Begin();
    uint64_t s = Take();
    alloc_->Commit();
    return s;
  }

  PunchLog punches_;
  std::unique_ptr<SlotAllocator> alloc_;
};

TEST_F(SlotAllocatorTest, FreedSlotIsReusedOnlyAfterTheSyncThatMakesTheFreeDurable) {
  Make(0, 16, 4);
  FreeCommitted({1});
  EXPECT_TRUE(alloc_->HasSlotsToRelease());
  EXPECT_EQ(TakeCommitted(), 4u) << "a free not yet durable must not be reused";
  // A sync during a transaction (the catalog's at-capacity path) makes the
  // earlier commits durable, not the open transaction's own frees.
  alloc_->Begin();
  alloc_->Free(2);
  alloc_->Synced(/*idle=*/false);
  EXPECT_EQ(Take(), 1u) << "durable since this sync";
  EXPECT_EQ(Take(), 5u) << "slot 2's free is not even committed";
  alloc_->Commit();
  EXPECT_EQ(TakeCommitted(), 6u) << "slot 2's free is committed, not durable";
  alloc_->Synced(/*idle=*/false);
  EXPECT_EQ(TakeCommitted(), 2u);
  EXPECT_TRUE(punches_.calls.empty()) << "reused slots are never punched";
}

TEST_F(SlotAllocatorTest, LowestFreeSlotFirstThenTheHighWaterMark) {
  Make(0, 16, 8);
  FreeCommitted({5});
  FreeCommitted({2, 7});
  alloc_->Synced(/*idle=*/false);  // reusable, unpunched
  alloc_->Synced(/*idle=*/true);   // punched
  ASSERT_EQ(punches_.Slots(), (std::set<uint64_t>{2, 5, 7}));
  alloc_->Begin();
  EXPECT_EQ(Take(), 2u);
  EXPECT_EQ(Take(), 5u);
  EXPECT_EQ(Take(), 7u);
  EXPECT_EQ(Take(), 8u);
  alloc_->Commit();
}

TEST_F(SlotAllocatorTest, UnpunchedSlotIsReusedBeforeALowerPunchedOne) {
  Make(0, 16, 6);
  FreeCommitted({0});
  alloc_->Synced(/*idle=*/false);  // 0 reusable, unpunched
  alloc_->Synced(/*idle=*/true);   // ... and punched
  EXPECT_EQ(punches_.Slots(), std::set<uint64_t>{0});
  FreeCommitted({3});
  alloc_->Synced(/*idle=*/false);  // 3 reusable, unpunched
  alloc_->Begin();
  EXPECT_EQ(Take(), 3u) << "its bytes are still allocated: overwriting costs no extent";
  EXPECT_EQ(Take(), 0u);
  EXPECT_EQ(Take(), 6u);
  alloc_->Commit();
  EXPECT_EQ(punches_.Slots(), std::set<uint64_t>{0});
}

TEST_F(SlotAllocatorTest, SyncUnderLoadKeepsTheLowestReserveAndIdlePunchesAll) {
  Make(0, /*reserve=*/2, 8);
  FreeCommitted({0, 1, 2, 3, 5, 6});
  alloc_->Synced(/*idle=*/false);
  EXPECT_TRUE(punches_.calls.empty()) << "pending slots become free, unpunched, at this sync";
  alloc_->Synced(/*idle=*/false);
  // The lowest two stay; adjacent slots go in one call.
  EXPECT_EQ(punches_.calls, (std::vector<std::pair<uint64_t, uint64_t>>{{2, 2}, {5, 2}}));
  EXPECT_TRUE(alloc_->HasSlotsToRelease()) << "the reserve is still unpunched";
  alloc_->Synced(/*idle=*/false);
  EXPECT_EQ(punches_.calls.size(), 2u) << "the reserve stays under load";
  alloc_->Synced(/*idle=*/true);
  EXPECT_EQ(punches_.calls.back(), (std::pair<uint64_t, uint64_t>{0, 2}));
  EXPECT_FALSE(alloc_->HasSlotsToRelease());
  EXPECT_EQ(punches_.Slots(), (std::set<uint64_t>{0, 1, 2, 3, 5, 6}));
  alloc_->Synced(/*idle=*/true);
  EXPECT_EQ(punches_.calls.size(), 3u) << "a slot is punched once";
}

TEST_F(SlotAllocatorTest, FailedPunchIsLoggedAndTheSlotStaysFree) {
  alloc_ = std::make_unique<SlotAllocator>(0, 0, [](uint64_t, uint64_t) {
    return Status::Error(EIO, "punch failed");
  });
  alloc_->Begin();
  ASSERT_EQ(Take(), 0u);
  alloc_->Commit();
  FreeCommitted({0});
  alloc_->Synced(/*idle=*/true);
  alloc_->Synced(/*idle=*/true);
  EXPECT_EQ(alloc_->usage().free_slots, 1u);
  EXPECT_EQ(TakeCommitted(), 0u);
}

TEST_F(SlotAllocatorTest, CapacityCountsSlotsInUseNotTheHighWaterMark) {
  Make(/*capacity=*/3, 16, 3);
  alloc_->Begin();
  auto a = alloc_->Allocate();
  EXPECT_EQ(a.status().code(), ENOSPC) << a.status().ToString();
  // Rewriting a block nothing else shares needs no extra capacity: the
  // transaction's own free makes room, though its slot is not reusable yet.
  alloc_->Free(1);
  EXPECT_EQ(Take(), 3u);
  EXPECT_EQ(alloc_->Allocate().status().code(), ENOSPC);
  alloc_->Commit();
  SlotAllocator::Usage u = alloc_->usage();
  EXPECT_EQ(u.used_slots, 3u);
  EXPECT_EQ(u.free_slots, 1u);
  EXPECT_EQ(u.high_water, 4u);
}

TEST_F(SlotAllocatorTest, AtCapacityPendingFreesNeedASync) {
  Make(/*capacity=*/2, 16, 2);
  EXPECT_FALSE(alloc_->NeedsSyncToAllocate());
  FreeCommitted({0});
  EXPECT_TRUE(alloc_->NeedsSyncToAllocate()) << "nothing free, a free pending, the store may not grow";
  alloc_->Synced(/*idle=*/false);
  EXPECT_FALSE(alloc_->NeedsSyncToAllocate());
  EXPECT_EQ(TakeCommitted(), 0u);
  // Unlimited: the store grows instead.
  Make(0, 16, 2);
  FreeCommitted({0});
  EXPECT_FALSE(alloc_->NeedsSyncToAllocate());
  EXPECT_EQ(TakeCommitted(), 2u);
}

TEST_F(SlotAllocatorTest, AbortReturnsAllocationsAndForgetsFrees) {
  Make(0, 16, 4);
  FreeCommitted({1});
  alloc_->Synced(/*idle=*/false);  // 1 reusable
  alloc_->Synced(/*idle=*/true);   // ... and punched
  ASSERT_EQ(punches_.calls.size(), 1u);
  const SlotAllocator::Usage before = alloc_->usage();
  alloc_->Begin();
  EXPECT_EQ(Take(), 1u);
  EXPECT_EQ(Take(), 4u);
  alloc_->Free(2);
  alloc_->Abort();
  const SlotAllocator::Usage after = alloc_->usage();
  EXPECT_EQ(after.used_slots, before.used_slots);
  EXPECT_EQ(after.free_slots, before.free_slots);
  EXPECT_EQ(after.high_water, before.high_water);
  // Slot 1's bytes may have been written before the rollback: it counts as
  // unpunched again, and the next idle sync punches it a second time.
  alloc_->Synced(/*idle=*/true);
  EXPECT_EQ(punches_.calls, (std::vector<std::pair<uint64_t, uint64_t>>{{1, 1}, {1, 1}}));
  alloc_->Begin();
  EXPECT_EQ(Take(), 1u) << "back on the free list";
  EXPECT_EQ(Take(), 4u) << "the high-water mark was restored";
  EXPECT_EQ(Take(), 5u) << "slot 2's free was rolled back";
  alloc_->Commit();
}

// The PAT's gaps may still hold bytes after a crash (a block freed by a
// durable commit whose punch never ran): loaded as unpunched, they are
// punched by the first idle Synced(), and reused lowest first.
TEST_F(SlotAllocatorTest, LoadTakesTheGapsAsUnpunchedAndTheFirstSyncPunchesThem) {
  alloc_ = std::make_unique<SlotAllocator>(0, 16, punches_.Fn());
  const std::vector<uint64_t> free_slots{7, 2};
  alloc_->Load(free_slots, /*used_slots=*/4, /*end_slot=*/6);
  SlotAllocator::Usage u = alloc_->usage();
  EXPECT_EQ(u.used_slots, 4u);
  EXPECT_EQ(u.free_slots, 2u);
  EXPECT_EQ(u.high_water, 8u) << "above the highest free slot";
  EXPECT_TRUE(alloc_->HasSlotsToRelease());
  alloc_->Synced(/*idle=*/true);
  EXPECT_EQ(punches_.calls.size(), 2u) << "slots 2 and 7, not adjacent";
  EXPECT_FALSE(alloc_->HasSlotsToRelease());
  alloc_->Begin();
  EXPECT_EQ(Take(), 2u);
  EXPECT_EQ(Take(), 7u);
  EXPECT_EQ(Take(), 8u);
  alloc_->Commit();
}

// ---------------------------------------------------------------- the model

// The contract written as plainly as possible: sets of slots per state.
struct Model {
  uint64_t capacity = 0, reserve = 0;
  std::set<uint64_t> in_use, pending, unpunched, punched;
  uint64_t high = 0;
  bool to_release = false;
  // The open transaction.
  std::vector<std::pair<uint64_t, bool>> txn_alloc;  // (slot, from free)
  std::vector<uint64_t> txn_freed;
  uint64_t saved_high = 0;

  void Begin() {
    txn_alloc.clear();
    txn_freed.clear();
    saved_high = high;
  }
  bool NeedsSync() const {
    return unpunched.empty() && punched.empty() && !pending.empty() && capacity != 0 && high >= capacity;
  }
  // The slot Allocate must return; nullopt for ENOSPC.
  std::optional<uint64_t> Allocate() {
    if (capacity != 0 && in_use.size() >= capacity) return std::nullopt;
    uint64_t s;
    bool from_free = true;
    if (!unpunched.empty()) {
      s = *unpunched.begin();
      unpunched.erase(s);
    } else if (!punched.empty()) {
      s = *punched.begin();
      punched.erase(s);
    } else {
      s = high++;
      from_free = false;
    }
    in_use.insert(s);
    txn_alloc.emplace_back(s, from_free);
    return s;
  }
  void Free(uint64_t s) {
    in_use.erase(s);
    txn_freed.push_back(s);
  }
  void Commit() {
    pending.insert(txn_freed.begin(), txn_freed.end());
    if (!pending.empty()) to_release = true;
    txn_alloc.clear();
    txn_freed.clear();
  }
  void Abort() {
    in_use.insert(txn_freed.begin(), txn_freed.end());
    for (auto [s, from_free] : txn_alloc) {  // after: a slot may be allocated, then freed
      in_use.erase(s);
      if (from_free) unpunched.insert(s);
    }
    high = saved_high;
    txn_alloc.clear();
    txn_freed.clear();
  }
  // The slots Synced must punch.
  std::set<uint64_t> Synced(bool idle) {
    const uint64_t keep = idle ? 0 : reserve;
    std::set<uint64_t> out;
    if (unpunched.size() > keep) out.insert(std::next(unpunched.begin(), static_cast<long>(keep)), unpunched.end());
    for (uint64_t s : out) {
      unpunched.erase(s);
      punched.insert(s);
    }
    unpunched.insert(pending.begin(), pending.end());
    pending.clear();
    to_release = !unpunched.empty();
    return out;
  }
};

// REQUIRES: no transaction open.
void ExpectSameUsage(const SlotAllocator& a, const Model& m) {
  SlotAllocator::Usage u = a.usage();
  EXPECT_EQ(u.used_slots, m.in_use.size());
  EXPECT_EQ(u.free_slots, m.pending.size() + m.unpunched.size() + m.punched.size());
  EXPECT_EQ(u.high_water, m.high);
  EXPECT_EQ(a.HasSlotsToRelease(), m.to_release);
}

void RunAgainstModel(uint64_t capacity, uint64_t reserve, uint32_t seed) {
  SCOPED_TRACE("capacity " + std::to_string(capacity) + ", reserve " + std::to_string(reserve) +
               ", seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  PunchLog log;
  SlotAllocator alloc(capacity, reserve, log.Fn());
  Model m;
  m.capacity = capacity;
  m.reserve = reserve;
  auto one_in = [&](uint32_t n) { return rng() % n == 0; };
  // The allocator's punches must be exactly the model's, and only ever hit
  // a free slot: never one in use, pending, or freed by the open transaction.
  auto synced = [&](bool idle) {
    for (uint64_t s : m.pending) ASSERT_EQ(m.in_use.count(s), 0u);
    log.calls.clear();
    const std::set<uint64_t> want = m.Synced(idle);
    alloc.Synced(idle);
    ASSERT_EQ(log.Slots(), want);
    for (uint64_t s : want) {
      ASSERT_EQ(m.in_use.count(s), 0u) << "punched slot " << s << " is in use";
      ASSERT_EQ(std::count(m.txn_freed.begin(), m.txn_freed.end(), s), 0) << "punched slot " << s
                                                                          << " is not durably free";
    }
  };
  for (int step = 0; step < 3000; ++step) {
    if (one_in(6)) {
      ASSERT_NO_FATAL_FAILURE(synced(one_in(4)));
      ExpectSameUsage(alloc, m);
      continue;
    }
    alloc.Begin();
    m.Begin();
    const int n_ops = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < n_ops; ++i) {
      if (!m.in_use.empty() && one_in(2)) {
        // Free a random slot in use.
        auto it = std::next(m.in_use.begin(), static_cast<long>(rng() % m.in_use.size()));
        const uint64_t s = *it;
        m.Free(s);
        alloc.Free(s);
        continue;
      }
      ASSERT_EQ(alloc.NeedsSyncToAllocate(), m.NeedsSync());
      if (m.NeedsSync()) {
        ASSERT_NO_FATAL_FAILURE(synced(false));  // the catalog's at-capacity sync
      }
      const std::optional<uint64_t> want = m.Allocate();
      auto got = alloc.Allocate();
      if (!want) {
        ASSERT_FALSE(got.ok()) << "got slot " << got->slot << ", the model is at capacity";
        ASSERT_EQ(got.status().code(), ENOSPC);
      } else {
        ASSERT_TRUE(got.ok()) << got.status().ToString();
        ASSERT_EQ(got->slot, *want);
        ASSERT_EQ(got->from_free, m.txn_alloc.back().second);
      }
    }
    if (one_in(7)) {
      alloc.Abort();
      m.Abort();
    } else {
      alloc.Commit();
      m.Commit();
    }
    ExpectSameUsage(alloc, m);
    if (::testing::Test::HasFailure()) return;
  }
}

TEST(SlotAllocatorModelTest, RandomTransactionsAndSyncsMatchTheModel) {
  RunAgainstModel(/*capacity=*/0, /*reserve=*/3, 1);
  RunAgainstModel(/*capacity=*/0, /*reserve=*/0, 2);
  RunAgainstModel(/*capacity=*/24, /*reserve=*/4, 3);
  RunAgainstModel(/*capacity=*/6, /*reserve=*/1, 4);
  RunAgainstModel(/*capacity=*/1, /*reserve=*/2, 5);
}

}  // namespace
}  // namespace chainswap
