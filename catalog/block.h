// Block geometry and the keyed block hash (SPEC §2, §4).
//
// A block is 4 KiB; a swap file is an array of blocks addressed by
// LBA = offset / kBlockSize. Block contents are identified inside a chain by
// XXH3-128 keyed with the chain's secret seed, so collisions cannot be
// precomputed across installations. All-zero blocks are never stored.
//
// Thread-safety: BlockHasher is immutable after construction and may be used
// from any number of threads at once.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace chainswap {

inline constexpr uint32_t kBlockSize = 4096;
inline constexpr uint32_t kBlockShift = 12;
inline constexpr size_t kSeedSize = 32;

using HashSeed = std::array<uint8_t, kSeedSize>;

struct BlockHash {
  std::array<uint8_t, 16> bytes{};
  bool operator==(const BlockHash&) const = default;
};

// The hash key of a block (schema v3, pat.hash_key and the chain hash
// index): the first 48 bits of the hash's canonical form, read big-endian
// as a signed 48-bit integer (SQLite stores it in 6 bytes).
inline int64_t HashKey(const BlockHash& h) {
  uint64_t v = 0;
  for (int i = 0; i < 6; ++i) v = (v << 8) | h.bytes[static_cast<size_t>(i)];
  return static_cast<int64_t>(v << 16) >> 16;
}

// True when every byte of the block is zero.
bool IsZeroBlock(const uint8_t* block);

// Fills a seed with bytes from the kernel's CSPRNG (getrandom).
HashSeed NewHashSeed();

class BlockHasher {
 public:
  explicit BlockHasher(const HashSeed& seed);
  // Keyed XXH3-128 of one kBlockSize block.
  BlockHash Hash(const uint8_t* block) const;

  // Test hook (SPEC §4 verify-on-match): when set, every block hashes to the
  // same value, forcing collisions. Never set outside tests.
  static void ForceCollisionsForTesting(bool on);

 private:
  std::array<uint8_t, 192> secret_{};
};

}  // namespace chainswap
