// The delete-slot policy of the logical queue (SPEC §5, patent 2): a pure
// function from a snapshot of the destage state to D, the number of the
// queue's N slots dedicated to delete I/Os.
//
//  - W ahead of X (deletes lag behind): D grows with the larger of journal
//    usage and content-store usage;
//  - W equal to X: D follows the share of pending delete bytes among pending
//    delete + write bytes in that bucket, scaled up by content-store usage;
//  - W behind X (deletes are ahead): D follows content-store usage alone.
//  D is always clamped to [d_min, N - 1] so that neither kind starves.
//
// Usage factors ramp linearly from 0 at `low` to 1 at `high` (fractions).
#pragma once

#include <cstdint>

namespace chainswap {

struct SlotPolicyConfig {
  uint32_t n = 64;          // queue slots
  uint32_t d_min = 4;       // at least this many delete slots (>= 1)
  double low = 0.50;        // usage below which pressure is 0
  double high = 0.90;       // usage at which pressure is 1
  uint32_t fixed_d = 0;     // nonzero: D is this constant (benchmark baselines)
};

struct DestageSnapshot {
  uint64_t w_bucket = 0;             // bucket the write destager is on
  uint64_t x_bucket = 0;             // bucket the delete destager is on
  double journal_usage = 0;          // journal bytes / journal limit
  double store_usage = 0;            // content-store used / capacity (or backing fs used)
  uint64_t pending_delete_bytes = 0; // in bucket W (= X), logical bytes to delete
  uint64_t pending_write_bytes = 0;  // in bucket W (= X)
};

// Returns D in [cfg.d_min, cfg.n - 1]. REQUIRES: 1 <= d_min <= n - 1.
uint32_t ComputeDeleteSlots(const SlotPolicyConfig& cfg, const DestageSnapshot& s);

// Linear ramp of `usage` between cfg.low and cfg.high, in [0, 1].
double Pressure(const SlotPolicyConfig& cfg, double usage);

}  // namespace chainswap
