// Block geometry, the zero-block test and the keyed block hash (catalog/block.h).
#include "catalog/block.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "test_util.h"

namespace chainswap {
namespace {

using test::Block;
using test::ForcedCollisions;
using test::PatternBlock;

HashSeed SeedOf(uint8_t fill) {
  HashSeed s;
  s.fill(fill);
  return s;
}

std::string Hex(const BlockHash& h) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  for (uint8_t b : h.bytes) {
    s += kDigits[b >> 4];
    s += kDigits[b & 15];
  }
  return s;
}

TEST(BlockTest, Geometry) {
  EXPECT_EQ(kBlockSize, 4096u);
  EXPECT_EQ(1u << kBlockShift, kBlockSize);
  EXPECT_EQ(kSeedSize, 32u);
}

TEST(IsZeroBlockTest, AllZero) {
  Block b;
  EXPECT_TRUE(IsZeroBlock(b.data()));
}

TEST(IsZeroBlockTest, OneByteSetAnywhereIsNotZero) {
  for (size_t pos : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{2048}, size_t{2049},
                     size_t{kBlockSize - 8}, size_t{kBlockSize - 1}}) {
    for (uint8_t v : {uint8_t{1}, uint8_t{0x80}, uint8_t{0xff}}) {
      Block b;
      b.b[pos] = v;
      EXPECT_FALSE(IsZeroBlock(b.data())) << "byte " << pos << " = " << int(v);
    }
  }
}

TEST(IsZeroBlockTest, EveryPositionDetected) {
  Block b;
  for (size_t pos = 0; pos < kBlockSize; ++pos) {
    b.b[pos] = 1;
    ASSERT_FALSE(IsZeroBlock(b.data())) << "byte " << pos;
    b.b[pos] = 0;
  }
  EXPECT_TRUE(IsZeroBlock(b.data()));
}

TEST(NewHashSeedTest, SeedsAreRandom) {
  HashSeed a = NewHashSeed();
  HashSeed b = NewHashSeed();
  EXPECT_NE(a, b);
  EXPECT_NE(a, HashSeed{});
}

TEST(BlockHasherTest, SameSeedSameHash) {
  Block blk = PatternBlock(1);
  BlockHasher h1(SeedOf(7));
  BlockHasher h2(SeedOf(7));
  EXPECT_EQ(h1.Hash(blk.data()), h2.Hash(blk.data()));
  EXPECT_EQ(h1.Hash(blk.data()), h1.Hash(blk.data()));
}

TEST(BlockHasherTest, DifferentSeedsDifferentHash) {
  Block blk = PatternBlock(1);
  BlockHasher h1(SeedOf(7));
  BlockHasher h2(SeedOf(8));
  EXPECT_NE(Hex(h1.Hash(blk.data())), Hex(h2.Hash(blk.data())));
  // A seed differing in one byte only.
  HashSeed s = SeedOf(7);
  s[31] ^= 1;
  BlockHasher h3(s);
  EXPECT_NE(Hex(h1.Hash(blk.data())), Hex(h3.Hash(blk.data())));
}

TEST(BlockHasherTest, DifferentBlocksDiffer) {
  BlockHasher h(NewHashSeed());
  std::set<std::string> seen;
  for (uint64_t i = 0; i < 64; ++i) seen.insert(Hex(h.Hash(PatternBlock(i).data())));
  EXPECT_EQ(seen.size(), 64u);
  // Blocks that differ in a single bit hash differently.
  Block a = PatternBlock(3);
  Block b = a;
  b.b[kBlockSize - 1] ^= 0x01;
  EXPECT_NE(Hex(h.Hash(a.data())), Hex(h.Hash(b.data())));
  Block z;
  Block one;
  one.b[100] = 1;
  EXPECT_NE(Hex(h.Hash(z.data())), Hex(h.Hash(one.data())));
}

TEST(BlockHasherTest, ForceCollisionsMakesAllHashesEqual) {
  BlockHasher h1(SeedOf(1));
  BlockHasher h2(SeedOf(2));
  Block a = PatternBlock(1);
  Block b = PatternBlock(2);
  const BlockHash before = h1.Hash(a.data());
  {
    ForcedCollisions forced;
    EXPECT_EQ(h1.Hash(a.data()), h1.Hash(b.data()));
    EXPECT_EQ(h1.Hash(a.data()), h2.Hash(b.data()));
  }
  // Reset: real hashes again, and the same as before the hook was set.
  EXPECT_NE(h1.Hash(a.data()), h1.Hash(b.data()));
  EXPECT_EQ(h1.Hash(a.data()), before);
}

}  // namespace
}  // namespace chainswap
