// The logical queue (destage/logical_queue.h, SPEC §5): grants bounded by
// D (deletes) and N - D (writes), D recomputed from a controlled snapshot,
// slots given back by Release, and caps held under concurrent use.
#include "destage/logical_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

namespace chainswap {
namespace {

// N = 16, D_min = 2, ramp 0.25..0.75. With W behind X, D depends on store
// usage alone: 0 -> 2, 0.5 -> 2 + 13 * 0.5 = 8.5 (rounded), 1 -> 15.
SlotPolicyConfig Cfg() {
  SlotPolicyConfig c;
  c.n = 16;
  c.d_min = 2;
  c.low = 0.25;
  c.high = 0.75;
  return c;
}

// A snapshot source the test controls.
class FakeState {
 public:
  void SetStore(double u) {
    std::lock_guard lk(mu_);
    s_.store_usage = u;
  }
  DestageSnapshot Get() {
    std::lock_guard lk(mu_);
    ++calls_;
    return s_;
  }
  uint64_t calls() {
    std::lock_guard lk(mu_);
    return calls_;
  }
  LogicalQueue::SnapshotFn Fn() {
    return [this] { return Get(); };
  }

 private:
  std::mutex mu_;
  DestageSnapshot s_{.w_bucket = 1, .x_bucket = 2};  // W behind X
  uint64_t calls_ = 0;
};

// Waits for a background task; a task that never finishes is reported and
// the binary aborted (a liveness guard against deadlock, not a timing check).
template <typename T>
T JoinOrAbort(std::future<T>& f, const char* what) {
  if (f.wait_for(std::chrono::seconds(120)) != std::future_status::ready) {
    std::fprintf(stderr, "FATAL: %s did not finish: the logical queue deadlocked\n", what);
    std::abort();
  }
  return f.get();
}

// Polls `pred` for a short while. Used only for one-sided checks: a request
// that must stay blocked is given time to (wrongly) get through; a correct
// queue passes however slow the machine is.
template <typename Pred>
bool BecomesTrueSoon(Pred pred) {
  for (int i = 0; i < 40; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

TEST(LogicalQueueTest, GrantsBoundedByDAndNMinusD) {
  FakeState st;
  LogicalQueue q(Cfg(), st.Fn());
  EXPECT_EQ(q.n(), 16u);
  EXPECT_EQ(q.delete_slots(), 2u);  // D_min before any request

  uint32_t d = q.Acquire(IoKind::kDelete, 1000);
  EXPECT_EQ(d, 2u) << "a delete batch holds at most D slots";
  uint32_t w = q.Acquire(IoKind::kWrite, 1000);
  EXPECT_EQ(w, 14u) << "a write batch holds at most N - D slots";
  q.Release(IoKind::kDelete, d);
  q.Release(IoKind::kWrite, w);

  // Small requests get what they ask for; want 0 still gets one slot.
  EXPECT_EQ(q.Acquire(IoKind::kWrite, 3), 3u);
  EXPECT_EQ(q.Acquire(IoKind::kWrite, 0), 1u);
  EXPECT_EQ(q.Acquire(IoKind::kDelete, 1), 1u);
  // What is left of each share.
  EXPECT_EQ(q.Acquire(IoKind::kWrite, 1000), 10u);
  EXPECT_EQ(q.Acquire(IoKind::kDelete, 1000), 1u);
  q.Release(IoKind::kWrite, 14);
  q.Release(IoKind::kDelete, 2);
  EXPECT_EQ(q.Acquire(IoKind::kWrite, 1000), 14u);
  q.Release(IoKind::kWrite, 14);
  EXPECT_GE(st.calls(), 8u) << "D must be recomputed from a snapshot at every request";
}

TEST(LogicalQueueTest, DFollowsTheSnapshot) {
  FakeState st;
  LogicalQueue q(Cfg(), st.Fn());
  st.SetStore(1.0);  // D = N - 1
  uint32_t d = q.Acquire(IoKind::kDelete, 1000);
  EXPECT_EQ(d, 15u);
  EXPECT_EQ(q.delete_slots(), 15u);
  q.Release(IoKind::kDelete, d);
  EXPECT_EQ(q.Acquire(IoKind::kWrite, 1000), 1u) << "writes keep at least one slot";
  q.Release(IoKind::kWrite, 1);

  st.SetStore(0.5);
  d = q.Acquire(IoKind::kDelete, 1000);
  EXPECT_GE(d, 8u);
  EXPECT_LE(d, 9u);
  EXPECT_EQ(q.delete_slots(), d);
  q.Release(IoKind::kDelete, d);
  uint32_t w = q.Acquire(IoKind::kWrite, 1000);
  EXPECT_EQ(w, 16u - d);
  q.Release(IoKind::kWrite, w);
}

TEST(LogicalQueueTest, PolicyChangesCountsChangesOfD) {
  FakeState st;
  LogicalQueue q(Cfg(), st.Fn());
  EXPECT_EQ(q.policy_changes(), 0u);
  q.Release(IoKind::kDelete, q.Acquire(IoKind::kDelete, 1));  // D stays D_min
  EXPECT_EQ(q.policy_changes(), 0u);
  st.SetStore(1.0);
  q.Release(IoKind::kWrite, q.Acquire(IoKind::kWrite, 1));
  EXPECT_EQ(q.policy_changes(), 1u);
  q.Release(IoKind::kWrite, q.Acquire(IoKind::kWrite, 1));  // same snapshot: no change
  q.Release(IoKind::kDelete, q.Acquire(IoKind::kDelete, 1));
  EXPECT_EQ(q.policy_changes(), 1u);
  st.SetStore(0.1);  // back below the ramp: D = D_min again
  q.Release(IoKind::kDelete, q.Acquire(IoKind::kDelete, 1));
  EXPECT_EQ(q.policy_changes(), 2u);
  EXPECT_EQ(q.delete_slots(), 2u);
  st.SetStore(0.2);  // a different snapshot, same D (below the ramp): not a change
  q.Release(IoKind::kDelete, q.Acquire(IoKind::kDelete, 1));
  EXPECT_EQ(q.policy_changes(), 2u);
}

TEST(LogicalQueueTest, ReleaseReturnsSlotsAndUnblocksAWaiter) {
  FakeState st;
  LogicalQueue q(Cfg(), st.Fn());
  ASSERT_EQ(q.Acquire(IoKind::kDelete, 2), 2u);  // the whole delete share
  std::atomic<bool> granted{false};
  auto waiter = std::async(std::launch::async, [&] {
    uint32_t g = q.Acquire(IoKind::kDelete, 5);
    granted = true;
    return g;
  });
  // One-sided check: while every delete slot is held, the waiter cannot have
  // been granted anything (this can only fail if the queue over-grants).
  EXPECT_FALSE(BecomesTrueSoon([&] { return granted.load(); })) << "a delete request was granted while all D slots were held";
  q.Release(IoKind::kDelete, 1);
  uint32_t g = JoinOrAbort(waiter, "Acquire after Release");
  EXPECT_EQ(g, 1u) << "only the one released slot was free";
  q.Release(IoKind::kDelete, 1);
  q.Release(IoKind::kDelete, g);
  EXPECT_EQ(q.Acquire(IoKind::kDelete, 5), 2u);
}

TEST(LogicalQueueTest, ReleasingWritesDoesNotFreeDeleteSlots) {
  FakeState st;
  LogicalQueue q(Cfg(), st.Fn());
  ASSERT_EQ(q.Acquire(IoKind::kDelete, 100), 2u);
  ASSERT_EQ(q.Acquire(IoKind::kWrite, 100), 14u);
  q.Release(IoKind::kWrite, 14);
  EXPECT_EQ(q.Acquire(IoKind::kWrite, 100), 14u);
  std::atomic<bool> granted{false};
  auto waiter = std::async(std::launch::async, [&] {
    uint32_t g = q.Acquire(IoKind::kDelete, 1);
    granted = true;
    return g;
  });
  q.Release(IoKind::kWrite, 14);
  EXPECT_FALSE(BecomesTrueSoon([&] { return granted.load(); })) << "write slots were handed to a delete request";
  q.Release(IoKind::kDelete, 2);
  EXPECT_EQ(JoinOrAbort(waiter, "delete Acquire"), 1u);
}

// The queue has N slots: even when D shrinks while deletes hold their old,
// larger share, no more than N slots may be in use at once.
TEST(LogicalQueueTest, NeverMoreThanNSlotsInUseWhenDShrinks) {
  FakeState st;
  LogicalQueue q(Cfg(), st.Fn());
  st.SetStore(1.0);  // D = 15
  const uint32_t held_deletes = q.Acquire(IoKind::kDelete, 1000);
  ASSERT_EQ(held_deletes, 15u);
  st.SetStore(0.0);  // D = 2: writes may now have up to 14, but 15 slots are busy
  std::atomic<uint32_t> got{0};
  auto writer = std::async(std::launch::async, [&] {
    uint32_t g = q.Acquire(IoKind::kWrite, 1000);
    got = g;
    return g;
  });
  (void)BecomesTrueSoon([&] { return got.load() != 0; });
  const uint32_t early = got.load();
  EXPECT_LE(held_deletes + early, q.n())
      << "write request granted " << early << " slots while deletes held " << held_deletes << " of N=" << q.n();
  q.Release(IoKind::kDelete, held_deletes);
  uint32_t w = JoinOrAbort(writer, "write Acquire");
  EXPECT_GE(w, 1u);
  EXPECT_LE(w, 14u);
  q.Release(IoKind::kWrite, w);
}

// Concurrent destagers (and more): in-use slots observed inside the
// critical section never exceed D for deletes, N - D for writes, N in all.
TEST(LogicalQueueTest, ConcurrentAcquireReleaseRespectsCaps) {
  for (double store : {0.0, 0.5, 1.0}) {
    SCOPED_TRACE("store usage " + std::to_string(store));
    FakeState st;
    st.SetStore(store);
    SlotPolicyConfig cfg = Cfg();
    LogicalQueue q(cfg, st.Fn());
    DestageSnapshot snap = st.Get();
    const uint32_t d = ComputeDeleteSlots(cfg, snap);
    std::atomic<int64_t> in_delete{0}, in_write{0};
    std::atomic<int64_t> max_delete{0}, max_write{0}, max_total{0};
    std::atomic<uint64_t> over_grant{0};
    auto bump_max = [](std::atomic<int64_t>& m, int64_t v) {
      int64_t cur = m.load();
      while (v > cur && !m.compare_exchange_weak(cur, v)) {
      }
    };
    auto worker = [&](IoKind kind, uint64_t seed) {
      std::mt19937_64 rng(seed);
      for (int i = 0; i < 3000; ++i) {
        uint64_t want = 1 + rng() % 20;
        uint32_t g = q.Acquire(kind, want);
        if (g == 0 || g > want) over_grant++;
        auto& mine = kind == IoKind::kDelete ? in_delete : in_write;
        int64_t now = (mine += g);
        bump_max(kind == IoKind::kDelete ? max_delete : max_write, now);
        bump_max(max_total, in_delete.load() + in_write.load());
        if (rng() % 4 == 0) std::this_thread::yield();
        mine -= g;
        q.Release(kind, g);
      }
      return 0;
    };
    std::vector<std::future<int>> fs;
    fs.push_back(std::async(std::launch::async, worker, IoKind::kWrite, 1));
    fs.push_back(std::async(std::launch::async, worker, IoKind::kDelete, 2));
    fs.push_back(std::async(std::launch::async, worker, IoKind::kWrite, 3));
    fs.push_back(std::async(std::launch::async, worker, IoKind::kDelete, 4));
    for (auto& f : fs) JoinOrAbort(f, "concurrent workers");
    EXPECT_EQ(over_grant.load(), 0u) << "grants outside [1, want]";
    EXPECT_LE(max_delete.load(), int64_t{d});
    EXPECT_LE(max_write.load(), int64_t{cfg.n - d});
    EXPECT_LE(max_total.load(), int64_t{cfg.n});
    EXPECT_GE(max_delete.load(), 1);
    EXPECT_GE(max_write.load(), 1);
    EXPECT_EQ(q.delete_slots(), d);
    // Everything was given back: full shares are available again.
    EXPECT_EQ(q.Acquire(IoKind::kDelete, 1000), d);
    EXPECT_EQ(q.Acquire(IoKind::kWrite, 1000), cfg.n - d);
  }
}

// Same with D changing under the workers: grants never exceed the largest
// share the policy can give that kind, and everything finishes.
TEST(LogicalQueueTest, ConcurrentWithChangingDFinishes) {
  FakeState st;
  SlotPolicyConfig cfg = Cfg();
  LogicalQueue q(cfg, st.Fn());
  std::atomic<uint64_t> bad{0};
  // The delete worker moves store usage through 0, 0.25, ..., 1 before each
  // of its requests, so D changes (2 .. 15) while the write worker runs.
  auto worker = [&](IoKind kind, uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 3000; ++i) {
      if (kind == IoKind::kDelete) st.SetStore(static_cast<double>(i % 5) / 4.0);
      uint64_t want = 1 + rng() % 20;
      uint32_t g = q.Acquire(kind, want);
      // The largest share either kind can ever have: N - 1 for deletes
      // (D <= N - 1), N - D_min for writes.
      const uint32_t max_share = kind == IoKind::kDelete ? cfg.n - 1 : cfg.n - cfg.d_min;
      if (g == 0 || g > want || g > max_share) bad++;
      if (rng() % 4 == 0) std::this_thread::yield();
      q.Release(kind, g);
    }
    return 0;
  };
  std::vector<std::future<int>> fs;
  fs.push_back(std::async(std::launch::async, worker, IoKind::kWrite, 11));
  fs.push_back(std::async(std::launch::async, worker, IoKind::kDelete, 12));
  for (auto& f : fs) JoinOrAbort(f, "workers with changing D");
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GE(q.policy_changes(), 1000u) << "D should have changed at most of the delete worker's requests";
  const uint32_t d = q.delete_slots();
  EXPECT_GE(d, cfg.d_min);
  EXPECT_LE(d, cfg.n - 1);
}

}  // namespace
}  // namespace chainswap
