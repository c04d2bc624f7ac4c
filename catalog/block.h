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
