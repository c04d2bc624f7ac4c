#include "destage/slot_policy.h"

#include <algorithm>
#include <cmath>

namespace chainswap {

double Pressure(const SlotPolicyConfig& cfg, double usage) {
  if (!(usage > cfg.low)) return 0.0;
  if (usage >= cfg.high || cfg.high <= cfg.low) return 1.0;
  return (usage - cfg.low) / (cfg.high - cfg.low);
}

uint32_t ComputeDeleteSlots(const SlotPolicyConfig& cfg, const DestageSnapshot& s) {
  if (cfg.fixed_d) return std::clamp<uint32_t>(cfg.fixed_d, 1, cfg.n - 1);
  const double lo = cfg.d_min;
  const double hi = cfg.n - 1;
  double d;
  if (s.w_bucket > s.x_bucket) {
    // Deletes lag: give them more as the journal or the store fills.
    double p = std::max(Pressure(cfg, s.journal_usage), Pressure(cfg, s.store_usage));
    d = lo + (hi - lo) * p;
  } else if (s.w_bucket == s.x_bucket) {
    const double total = double(s.pending_delete_bytes) + double(s.pending_write_bytes);
    const double share = total > 0 ? double(s.pending_delete_bytes) / total : 0.0;
    // A full store doubles the deletes' share.
    d = cfg.n * share * (1.0 + Pressure(cfg, s.store_usage));
  } else {
    // Deletes are ahead: only a filling store justifies more delete slots.
    d = lo + (hi - lo) * Pressure(cfg, s.store_usage);
  }
  d = std::clamp(std::round(d), lo, hi);
  return static_cast<uint32_t>(d);
}

}  // namespace chainswap
