// Chain-wide deduplication (SPEC §1, §2, §4, §7 space target): identical
// blocks are stored once per chain, never shared across chains.
#include <string>
#include <vector>

#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

constexpr uint64_t kDataBytes = 64 * kMiB;
constexpr int64_t kDataBlocks = kDataBytes / kBlock;

class DedupTest : public MountTest {};

// |actual - ideal| <= 2 % of ideal.
::testing::AssertionResult WithinTwoPercent(uint64_t actual, uint64_t ideal) {
  uint64_t diff = actual > ideal ? actual - ideal : ideal - actual;
  if (diff * 50 <= ideal) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << actual << " bytes is not within 2 % of " << ideal << " bytes";
}

TEST_F(DedupTest, FourFilesInOneChainStoreOneCopy) {
  const std::vector<uint8_t> data = MakeData(1, kDataBytes);
  ASSERT_TRUE(fs().MakeChain("pool"));
  const std::vector<std::string> files = {"vm01.vswp", "vm02.vswp", "vm03.vswp", "vm04.vswp"};
  for (const auto& f : files) ASSERT_TRUE(WriteFile(fs().Path("pool", f), 0, data));

  // Reads return the data at once, destaged or not.
  for (const auto& f : files) ASSERT_TRUE(FileEquals(fs().Path("pool", f), data, /*direct=*/true));

  // The catalog catches up: every LBA of every file mapped, one block each.
  ASSERT_TRUE(WaitUntil([&] { return fs().TotalLatRows() == 4 * kDataBlocks; }))
      << "LAT rows: " << fs().TotalLatRows() << ", expected " << 4 * kDataBlocks;
  EXPECT_EQ(fs().PatRows("pool"), kDataBlocks);
  EXPECT_TRUE(WithinTwoPercent(fs().StoreAllocated(), kDataBytes));
  EXPECT_TRUE(fs().CatalogInvariantsHold());
  // Each block is referenced by the four files.
  EXPECT_EQ(fs().QueryInt("SELECT count(*) FROM pat WHERE refcount != 4"), 0);

  ASSERT_TRUE(fs().Remount());
  for (const auto& f : files) EXPECT_TRUE(FileEquals(fs().Path("pool", f), data, /*direct=*/false));
  EXPECT_TRUE(WithinTwoPercent(fs().StoreAllocated(), kDataBytes));
  EXPECT_TRUE(fs().CatalogInvariantsHold());
}

TEST_F(DedupTest, SameDataInTwoChainsIsStoredTwice) {
  const std::vector<uint8_t> data = MakeData(2, kDataBytes);
  ASSERT_TRUE(fs().MakeChain("pool-a"));
  ASSERT_TRUE(fs().MakeChain("pool-b"));
  ASSERT_TRUE(WriteFile(fs().Path("pool-a", "vm01.vswp"), 0, data));
  ASSERT_TRUE(WriteFile(fs().Path("pool-b", "vm01.vswp"), 0, data));
  ASSERT_TRUE(FileEquals(fs().Path("pool-a", "vm01.vswp"), data));
  ASSERT_TRUE(FileEquals(fs().Path("pool-b", "vm01.vswp"), data));

  ASSERT_TRUE(WaitUntil([&] { return fs().TotalLatRows() == 2 * kDataBlocks; }))
      << "LAT rows: " << fs().TotalLatRows() << ", expected " << 2 * kDataBlocks;
  EXPECT_EQ(fs().PatRows("pool-a"), kDataBlocks);
  EXPECT_EQ(fs().PatRows("pool-b"), kDataBlocks);
  EXPECT_TRUE(WithinTwoPercent(fs().StoreAllocated(), 2 * kDataBytes));
  // No physical block is shared across chains: the block's owner is the
  // chain of every LAT row pointing at it.
  EXPECT_EQ(fs().QueryInt("SELECT count(*) FROM lat l JOIN swap_file f ON f.file_id = l.file_id "
                          "JOIN pat p ON p.pblock = l.pblock WHERE p.dedup_id != f.dedup_id"),
            0);
  EXPECT_EQ(fs().QueryInt("SELECT count(*) FROM (SELECT l.pblock FROM lat l JOIN swap_file f "
                          "ON f.file_id = l.file_id GROUP BY l.pblock HAVING count(DISTINCT f.dedup_id) > 1)"),
            0);
  EXPECT_EQ(fs().QueryInt("SELECT count(*) FROM pat WHERE refcount != 1"), 0);
  EXPECT_TRUE(fs().CatalogInvariantsHold());

  ASSERT_TRUE(fs().Remount());
  EXPECT_TRUE(FileEquals(fs().Path("pool-a", "vm01.vswp"), data, /*direct=*/false));
  EXPECT_TRUE(FileEquals(fs().Path("pool-b", "vm01.vswp"), data, /*direct=*/false));
}

}  // namespace
}  // namespace chainswap::mounttest
