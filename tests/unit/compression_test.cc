// BlockCompressor (catalog/compression.h): the sector rule shared by
// `chainswap estimate` and the content store, checked against LZ4 called
// directly with a full-size output buffer.
#include "catalog/compression.h"

#include <gtest/gtest.h>
#include <lz4.h>

#include <random>
#include <vector>

#include "tests/unit/test_util.h"

namespace chainswap {
namespace {

// A block whose first `random_bytes` bytes are random and the rest repeat a
// short phrase: compressibility from none to nearly all.
void MixedBlock(std::mt19937_64& rng, size_t random_bytes, uint8_t* out) {
  for (size_t i = 0; i < kBlockSize; ++i)
    out[i] = i < random_bytes ? static_cast<uint8_t>(rng()) : static_cast<uint8_t>("swap page "[i % 10]);
}

TEST(CompressionTest, IncompressibleBlockIsStoredRawInEightSectors) {
  std::mt19937_64 rng(7);
  test::Block b;
  MixedBlock(rng, kBlockSize, b.data());
  std::vector<uint8_t> out(kMaxCompressedBytes);
  CompressedBlock c = BlockCompressor::Compress(b.data(), out);
  EXPECT_TRUE(c.raw());
  EXPECT_EQ(c.sectors, 8u);
}

TEST(CompressionTest, AllButZeroBlockTakesOneSectorAndRoundTrips) {
  test::Block b;
  b.data()[4000] = 0x5a;
  std::vector<uint8_t> out(kMaxCompressedBytes);
  CompressedBlock c = BlockCompressor::Compress(b.data(), out);
  ASSERT_FALSE(c.raw());
  EXPECT_EQ(c.sectors, 1u);
  test::Block back;
  CS_ASSERT_OK(BlockCompressor::Decompress(std::span(out.data(), c.stored_bytes()), back.data(), "block 1"));
  // Padding after the stored form (the rest of its last sector) is ignored.
  CS_ASSERT_OK(BlockCompressor::Decompress(std::span(out.data(), 512), back.data(), "block 1"));
  EXPECT_EQ(0, std::memcmp(back.data(), b.data(), kBlockSize));
}

// Compressing into a 3584-byte buffer gives exactly LZ4's size whenever that
// fits, and "raw" exactly when it does not; every compressed block decodes
// back to its bytes. Sweeps compressibility across the 3584 boundary.
TEST(CompressionTest, BoundedOutputMatchesLz4AcrossTheRawBoundary) {
  std::mt19937_64 rng(11);
  test::Block b, back;
  std::vector<uint8_t> out(kMaxCompressedBytes);
  int raw = 0, compressed = 0;
  for (size_t r = 0; r <= kBlockSize; r += 8) {
    MixedBlock(rng, r, b.data());
    CompressedBlock c = BlockCompressor::Compress(b.data(), out);
    ASSERT_EQ(c.sectors, test::Lz4Sectors(b.data())) << "random prefix " << r;
    if (c.raw()) {
      ++raw;
      continue;
    }
    ++compressed;
    CS_ASSERT_OK(BlockCompressor::Decompress(std::span(out.data(), c.stored_bytes()), back.data(), "sweep"));
    ASSERT_EQ(0, std::memcmp(back.data(), b.data(), kBlockSize)) << "random prefix " << r;
  }
  EXPECT_GT(raw, 10);
  EXPECT_GT(compressed, 10);
}

TEST(CompressionTest, DamagedOrTruncatedInputIsAnEioNamingTheBlock) {
  std::mt19937_64 rng(3);
  test::Block b, back;
  MixedBlock(rng, 1000, b.data());
  std::vector<uint8_t> out(kMaxCompressedBytes);
  CompressedBlock c = BlockCompressor::Compress(b.data(), out);
  ASSERT_FALSE(c.raw());
  Status st = BlockCompressor::Decompress(std::span(out.data(), c.stored_bytes() / 2), back.data(), "dedup block 42");
  EXPECT_EQ(st.code(), EIO);
  EXPECT_NE(st.message().find("dedup block 42"), std::string::npos) << st.ToString();
  // One flipped bit anywhere in the stored form is an EIO, never wrong bytes.
  for (uint32_t i = 0; i < c.stored_bytes(); i += 7) {
    std::vector<uint8_t> bad(out.begin(), out.begin() + c.stored_bytes());
    bad[i] ^= 0x10;
    st = BlockCompressor::Decompress(bad, back.data(), "flipped");
    ASSERT_EQ(st.code(), EIO) << "byte " << i;
  }
  // A stream that decodes to fewer bytes than a block is damaged too.
  test::Block half;
  std::memcpy(half.data(), b.data(), kBlockSize / 2);
  std::vector<char> small(LZ4_compressBound(kBlockSize / 2));
  const int n = LZ4_compress_default(reinterpret_cast<const char*>(half.data()), small.data(), kBlockSize / 2,
                                     static_cast<int>(small.size()));
  ASSERT_GT(n, 0);
  std::vector<uint8_t> framed(kCompressedHeaderBytes + n);
  framed[0] = static_cast<uint8_t>(n);
  framed[1] = static_cast<uint8_t>(n >> 8);
  std::memcpy(framed.data() + kCompressedHeaderBytes, small.data(), n);
  st = BlockCompressor::Decompress(framed, back.data(), "short");
  EXPECT_EQ(st.code(), EIO);
}

TEST(CompressionTest, SectorsForFollowsTheRule) {
  EXPECT_EQ(SectorsFor(0), 8u);
  EXPECT_EQ(SectorsFor(1), 1u);
  EXPECT_EQ(SectorsFor(506), 1u);  // + the 6-byte header: 512
  EXPECT_EQ(SectorsFor(507), 2u);
  EXPECT_EQ(SectorsFor(3578), 7u);
  EXPECT_EQ(SectorsFor(3579), 8u);
}

}  // namespace
}  // namespace chainswap
