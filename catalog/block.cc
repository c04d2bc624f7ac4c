#include "catalog/block.h"

#include <sys/random.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <atomic>
#include <cstring>
#include <stdexcept>

namespace chainswap {

namespace {
std::atomic<bool> g_force_collisions{false};
}

bool IsZeroBlock(const uint8_t* block) {
  // Compare 64-bit words (loaded with memcpy: a request's buffer need not
  // be 8-byte aligned); the compiler vectorizes this loop.
  uint64_t acc = 0;
  for (size_t i = 0; i < kBlockSize; i += sizeof(uint64_t)) {
    uint64_t w;
    std::memcpy(&w, block + i, sizeof w);
    acc |= w;
  }
  return acc == 0;
}

HashSeed NewHashSeed() {
  HashSeed seed{};
  size_t got = 0;
  while (got < seed.size()) {
    ssize_t n = getrandom(seed.data() + got, seed.size() - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("getrandom failed");
    }
    got += static_cast<size_t>(n);
  }
  return seed;
}

BlockHasher::BlockHasher(const HashSeed& seed) {
  static_assert(sizeof(secret_) >= XXH3_SECRET_SIZE_MIN);
  XXH3_generateSecret(secret_.data(), secret_.size(), seed.data(), seed.size());
}

BlockHash BlockHasher::Hash(const uint8_t* block) const {
  BlockHash out;
  if (g_force_collisions.load(std::memory_order_relaxed)) return out;
  XXH128_hash_t h = XXH3_128bits_withSecret(block, kBlockSize, secret_.data(), secret_.size());
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  std::memcpy(out.bytes.data(), c.digest, sizeof(c.digest));
  return out;
}

void BlockHasher::ForceCollisionsForTesting(bool on) { g_force_collisions.store(on); }

}  // namespace chainswap
