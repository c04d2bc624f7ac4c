// The delete-slot policy (destage/slot_policy.h, SPEC §5): D as a pure
// function of the destage snapshot, case by case, and its bounds.
//
// Most cases use N = 102, D_min = 1, low = 0.25, high = 0.75: every usage
// below is exact in binary and the ramp lo + (hi - lo) * p = 1 + 100 p lands
// on integers, so the expected D does not depend on rounding details.
#include "destage/slot_policy.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>

namespace chainswap {
namespace {

SlotPolicyConfig Cfg() {
  SlotPolicyConfig c;
  c.n = 102;
  c.d_min = 1;
  c.low = 0.25;
  c.high = 0.75;
  return c;
}

DestageSnapshot Ahead(double journal, double store) {  // W ahead of X
  DestageSnapshot s;
  s.w_bucket = 7;
  s.x_bucket = 3;
  s.journal_usage = journal;
  s.store_usage = store;
  s.pending_delete_bytes = 4096;
  s.pending_write_bytes = 8192;
  return s;
}

DestageSnapshot Equal(uint64_t del, uint64_t wr, double store, double journal = 0) {  // W == X
  DestageSnapshot s;
  s.w_bucket = s.x_bucket = 5;
  s.journal_usage = journal;
  s.store_usage = store;
  s.pending_delete_bytes = del;
  s.pending_write_bytes = wr;
  return s;
}

DestageSnapshot Behind(double store, double journal = 0) {  // W behind X
  DestageSnapshot s;
  s.w_bucket = 2;
  s.x_bucket = 9;
  s.journal_usage = journal;
  s.store_usage = store;
  s.pending_delete_bytes = 1 << 20;
  s.pending_write_bytes = 0;
  return s;
}

TEST(SlotPolicyTest, PressureRamp) {
  SlotPolicyConfig c = Cfg();
  EXPECT_EQ(Pressure(c, 0.0), 0.0);
  EXPECT_EQ(Pressure(c, 0.1), 0.0);
  EXPECT_EQ(Pressure(c, 0.25), 0.0);   // at low: still 0
  EXPECT_EQ(Pressure(c, 0.375), 0.25);
  EXPECT_EQ(Pressure(c, 0.5), 0.5);
  EXPECT_EQ(Pressure(c, 0.625), 0.75);
  EXPECT_EQ(Pressure(c, 0.75), 1.0);   // at high: 1
  EXPECT_EQ(Pressure(c, 0.9), 1.0);
  EXPECT_EQ(Pressure(c, 1.0), 1.0);
  EXPECT_EQ(Pressure(c, 7.5), 1.0);    // over-full (usage above the limit)
  EXPECT_EQ(Pressure(c, -1.0), 0.0);
  EXPECT_EQ(Pressure(c, std::numeric_limits<double>::infinity()), 1.0);
  EXPECT_EQ(Pressure(c, -std::numeric_limits<double>::infinity()), 0.0);
  EXPECT_EQ(Pressure(c, std::nan("")), 0.0) << "NaN usage must not produce NaN pressure";
  // Default thresholds (0.5, 0.9).
  SlotPolicyConfig d;
  EXPECT_EQ(Pressure(d, 0.5), 0.0);
  EXPECT_NEAR(Pressure(d, 0.7), 0.5, 1e-12);
  EXPECT_EQ(Pressure(d, 0.9), 1.0);
}

TEST(SlotPolicyTest, PressureIsMonotonicAndInUnitInterval) {
  SlotPolicyConfig c;  // defaults
  double prev = 0;
  for (int i = -10; i <= 130; ++i) {
    double p = Pressure(c, i / 100.0);
    EXPECT_GE(p, 0.0);
    EXPECT_LE(p, 1.0);
    EXPECT_GE(p, prev) << "usage " << i / 100.0;
    prev = p;
  }
}

TEST(SlotPolicyTest, WAheadOfXGrowsWithJournalUsage) {
  SlotPolicyConfig c = Cfg();
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(0.0, 0.0)), 1u);     // journal empty: D_min
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(0.25, 0.0)), 1u);
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(0.375, 0.0)), 26u);  // p = 0.25
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(0.5, 0.0)), 51u);    // mid: p = 0.5
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(0.625, 0.0)), 76u);
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(1.0, 0.0)), 101u);   // full: N - 1
}

TEST(SlotPolicyTest, WAheadOfXUsesTheLargerOfJournalAndStoreUsage) {
  SlotPolicyConfig c = Cfg();
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(0.0, 0.5)), 51u);     // store mid, journal empty
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(0.375, 0.625)), 76u); // store larger
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(0.625, 0.375)), 76u); // journal larger
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(0.5, 0.5)), 51u);
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(1.0, 0.5)), 101u);
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(0.5, 1.0)), 101u);
  // Pending bytes do not matter when W is ahead.
  DestageSnapshot s = Ahead(0.5, 0.0);
  s.pending_delete_bytes = 0;
  s.pending_write_bytes = 1ull << 40;
  EXPECT_EQ(ComputeDeleteSlots(c, s), 51u);
}

TEST(SlotPolicyTest, WAheadOfXIsMonotonic) {
  SlotPolicyConfig c;  // defaults: N 64, D_min 4
  uint32_t prev = 0;
  for (int j = 0; j <= 100; ++j) {
    uint32_t d = ComputeDeleteSlots(c, Ahead(j / 100.0, 0.3));
    EXPECT_GE(d, prev) << "journal usage " << j / 100.0;
    prev = d;
  }
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(0.0, 0.0)), c.d_min);
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(1.0, 0.0)), c.n - 1);
}

TEST(SlotPolicyTest, WEqualXFollowsPendingDeleteShare) {
  SlotPolicyConfig c = Cfg();
  // Share 0: no pending deletes -> D_min.
  EXPECT_EQ(ComputeDeleteSlots(c, Equal(0, 1 << 20, 0.0)), 1u);
  // Share 0.5 -> N / 2.
  EXPECT_EQ(ComputeDeleteSlots(c, Equal(1 << 20, 1 << 20, 0.0)), 51u);
  // Share 1: only deletes -> N - 1 (never all N).
  EXPECT_EQ(ComputeDeleteSlots(c, Equal(1 << 20, 0, 0.0)), 101u);
  // Share 0.25 -> 25.5 before rounding.
  uint32_t quarter = ComputeDeleteSlots(c, Equal(1 << 20, 3 << 20, 0.0));
  EXPECT_GE(quarter, 25u);
  EXPECT_LE(quarter, 26u);
  // Monotonic in the share.
  uint32_t prev = 0;
  for (uint64_t del = 0; del <= 100; ++del) {
    uint32_t d = ComputeDeleteSlots(c, Equal(del * 4096, (100 - del) * 4096, 0.0));
    EXPECT_GE(d, prev) << "share " << del << "%";
    prev = d;
  }
}

TEST(SlotPolicyTest, WEqualXIsScaledByStoreUsage) {
  SlotPolicyConfig c = Cfg();
  // Share 0.25: 25.5 at no store pressure, x1.5 at half pressure, x2 when full.
  const uint32_t at0 = ComputeDeleteSlots(c, Equal(1 << 20, 3 << 20, 0.0));
  const uint32_t mid = ComputeDeleteSlots(c, Equal(1 << 20, 3 << 20, 0.5));
  const uint32_t full = ComputeDeleteSlots(c, Equal(1 << 20, 3 << 20, 1.0));
  EXPECT_EQ(mid, 38u);   // 102 * 0.25 * 1.5 = 38.25
  EXPECT_EQ(full, 51u);  // 102 * 0.25 * 2
  EXPECT_LT(at0, mid);
  EXPECT_LT(mid, full);
  // Share 0.5 and a quarter of the pressure: 51 * 1.25 = 63.75.
  EXPECT_EQ(ComputeDeleteSlots(c, Equal(1 << 20, 1 << 20, 0.375)), 64u);
  // Scaling never goes past N - 1.
  EXPECT_EQ(ComputeDeleteSlots(c, Equal(1 << 20, 1 << 20, 1.0)), 101u);
  // Share 0 stays at D_min however full the store is.
  EXPECT_EQ(ComputeDeleteSlots(c, Equal(0, 1 << 20, 1.0)), 1u);
}

TEST(SlotPolicyTest, WEqualXIgnoresJournalUsage) {
  SlotPolicyConfig c = Cfg();
  for (double j : {0.0, 0.5, 1.0, 3.0}) {
    EXPECT_EQ(ComputeDeleteSlots(c, Equal(1 << 20, 1 << 20, 0.0, j)), 51u) << "journal " << j;
    EXPECT_EQ(ComputeDeleteSlots(c, Equal(0, 1 << 20, 0.0, j)), 1u) << "journal " << j;
  }
}

TEST(SlotPolicyTest, WBehindXDependsOnStoreUsageOnly) {
  SlotPolicyConfig c = Cfg();
  EXPECT_EQ(ComputeDeleteSlots(c, Behind(0.0)), 1u);
  EXPECT_EQ(ComputeDeleteSlots(c, Behind(0.375)), 26u);
  EXPECT_EQ(ComputeDeleteSlots(c, Behind(0.5)), 51u);
  EXPECT_EQ(ComputeDeleteSlots(c, Behind(1.0)), 101u);
  // Journal usage is ignored.
  for (double j : {0.0, 0.5, 1.0, 2.0}) {
    EXPECT_EQ(ComputeDeleteSlots(c, Behind(0.0, j)), 1u) << "journal " << j;
    EXPECT_EQ(ComputeDeleteSlots(c, Behind(0.5, j)), 51u) << "journal " << j;
  }
  // Pending bytes are ignored.
  DestageSnapshot s = Behind(0.5);
  s.pending_delete_bytes = 0;
  s.pending_write_bytes = 12345;
  EXPECT_EQ(ComputeDeleteSlots(c, s), 51u);
  s.pending_delete_bytes = 1ull << 50;
  s.pending_write_bytes = 0;
  EXPECT_EQ(ComputeDeleteSlots(c, s), 51u);
}

TEST(SlotPolicyTest, OnlyTheOrderOfWAndXMatters) {
  SlotPolicyConfig c = Cfg();
  DestageSnapshot a = Ahead(0.5, 0.0), b = a;
  b.w_bucket = 1000000;
  b.x_bucket = 999999;
  EXPECT_EQ(ComputeDeleteSlots(c, a), ComputeDeleteSlots(c, b));
  DestageSnapshot e = Behind(0.5), f = e;
  f.w_bucket = 0;
  f.x_bucket = UINT64_MAX;
  EXPECT_EQ(ComputeDeleteSlots(c, e), ComputeDeleteSlots(c, f));
}

TEST(SlotPolicyTest, ExtremeInputsStayInBounds) {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::nan("");
  const double usages[] = {0.0, -1.0, 0.49, 0.5, 0.9, 1.0, 1.5, 1e300, inf, -inf, nan};
  const uint64_t bytes[] = {0, 1, 4096, 1ull << 40, UINT64_MAX};
  const std::pair<uint64_t, uint64_t> wx[] = {{1, 1}, {2, 1}, {1, 2}, {0, UINT64_MAX}, {UINT64_MAX, 0}};
  struct NDmin {
    uint32_t n, d_min;
  } sizes[] = {{2, 1}, {3, 1}, {3, 2}, {64, 4}, {64, 63}, {65536, 1}, {65536, 65535}};
  for (auto [n, d_min] : sizes) {
    SlotPolicyConfig c;
    c.n = n;
    c.d_min = d_min;
    for (auto [w, x] : wx)
      for (double j : usages)
        for (double st : usages)
          for (uint64_t del : bytes)
            for (uint64_t wr : bytes) {
              DestageSnapshot s;
              s.w_bucket = w;
              s.x_bucket = x;
              s.journal_usage = j;
              s.store_usage = st;
              s.pending_delete_bytes = del;
              s.pending_write_bytes = wr;
              uint32_t d = ComputeDeleteSlots(c, s);
              ASSERT_GE(d, d_min) << "n=" << n << " d_min=" << d_min << " w=" << w << " x=" << x << " j=" << j
                                  << " store=" << st << " del=" << del << " wr=" << wr;
              ASSERT_LE(d, n - 1) << "n=" << n << " d_min=" << d_min << " w=" << w << " x=" << x << " j=" << j
                                  << " store=" << st << " del=" << del << " wr=" << wr;
            }
  }
}

TEST(SlotPolicyTest, TwoSlotsAlwaysSplitOneOne) {
  SlotPolicyConfig c;
  c.n = 2;
  c.d_min = 1;
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(1.0, 1.0)), 1u);
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(0.0, 0.0)), 1u);
  EXPECT_EQ(ComputeDeleteSlots(c, Equal(1 << 20, 0, 1.0)), 1u);
  EXPECT_EQ(ComputeDeleteSlots(c, Equal(0, 0, 0.0)), 1u);
  EXPECT_EQ(ComputeDeleteSlots(c, Behind(1.0)), 1u);
}

TEST(SlotPolicyTest, ZeroPendingBytesGivesDMin) {
  SlotPolicyConfig c;  // N 64, D_min 4
  EXPECT_EQ(ComputeDeleteSlots(c, Equal(0, 0, 0.0)), 4u);
  EXPECT_EQ(ComputeDeleteSlots(c, Equal(0, 0, 1.0)), 4u);
  EXPECT_EQ(ComputeDeleteSlots(c, DestageSnapshot{}), 4u);  // all zero: W == X, nothing pending
}

TEST(SlotPolicyTest, RandomSnapshotsStayInBounds) {
  std::mt19937_64 rng(77);
  std::uniform_real_distribution<double> u(-0.5, 2.0);
  for (int i = 0; i < 20000; ++i) {
    SlotPolicyConfig c;
    c.n = 2 + static_cast<uint32_t>(rng() % 200);
    c.d_min = 1 + static_cast<uint32_t>(rng() % (c.n - 1));
    c.low = std::uniform_real_distribution<double>(0.0, 0.9)(rng);
    c.high = std::uniform_real_distribution<double>(c.low + 0.01, 1.0)(rng);
    DestageSnapshot s;
    s.w_bucket = rng() % 4;
    s.x_bucket = rng() % 4;
    s.journal_usage = u(rng);
    s.store_usage = u(rng);
    s.pending_delete_bytes = rng() >> (rng() % 64);
    s.pending_write_bytes = rng() >> (rng() % 64);
    uint32_t d = ComputeDeleteSlots(c, s);
    ASSERT_GE(d, c.d_min) << "case " << i;
    ASSERT_LE(d, c.n - 1) << "case " << i;
  }
}

TEST(SlotPolicyTest, FixedDOverridesThePolicy) {
  SlotPolicyConfig c;  // N 64, D_min 4
  c.fixed_d = 10;
  for (const DestageSnapshot& s : {Ahead(0.0, 0.0), Ahead(1.0, 1.0), Equal(0, 1, 0.0), Equal(1, 0, 1.0),
                                   Behind(0.0), Behind(1.0)}) {
    EXPECT_EQ(ComputeDeleteSlots(c, s), 10u);
  }
  c.fixed_d = 63;
  EXPECT_EQ(ComputeDeleteSlots(c, Behind(0.0)), 63u);
  c.fixed_d = 64;  // clamped to N - 1
  EXPECT_EQ(ComputeDeleteSlots(c, Behind(0.0)), 63u);
  c.fixed_d = 1000000;
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(1.0, 1.0)), 63u);
  // The mount option accepts any fixed D in 1..N-1 (fs/options.cc), even
  // below D_min: benchmark baselines may pin D to 1.
  c.fixed_d = 1;
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(1.0, 1.0)), 1u);
  c.n = 2;
  c.d_min = 1;
  c.fixed_d = 5;
  EXPECT_EQ(ComputeDeleteSlots(c, Ahead(0.0, 0.0)), 1u);
}

}  // namespace
}  // namespace chainswap
