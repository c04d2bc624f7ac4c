// Monotonic time for the destage engine's idle and rate decisions.
//
// Thread-safety: a plain function.
#pragma once

#include <cstdint>
#include <ctime>

namespace chainswap {

// Nanoseconds of CLOCK_MONOTONIC.
inline int64_t MonoNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

}  // namespace chainswap
