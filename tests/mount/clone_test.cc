// Clones (SPEC §3, §6): `chainswap clone` and copy_file_range(2) between two
// swap files of one chain share blocks — a LAT copy plus refcount increments,
// no new bytes in the store — and the copies are independent afterwards.
// Across chains the clone is refused (blocks never cross dedup domains);
// unaligned copy_file_range copies bytes.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <span>
#include <string>
#include <vector>

#include "tests/mount/extra_util.h"
#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

using extra::Cli;
using extra::DestageIdle;
using extra::DestageSummary;
using extra::Describe;

class CloneTest : public MountTest {
 protected:
  int64_t FileId(const std::string& name) {
    return fs().QueryInt(
        "SELECT f.file_id FROM swap_file f JOIN chain c ON c.dedup_id = f.dedup_id WHERE c.name = 'pool' AND "
        "f.name = ?1",
        {name});
  }
  // Waits until the journal is empty and every file of `model` has as many
  // LAT rows as non-zero blocks and the chain stores its distinct blocks.
  ::testing::AssertionResult WaitForCatalog(const std::map<std::string, FileModel>& model) {
    std::vector<const FileModel*> files;
    for (const auto& [n, m] : model) files.push_back(&m);
    const int64_t distinct = static_cast<int64_t>(DistinctNonZeroBlocks(files));
    bool ok = WaitUntil([&] {
      if (!DestageIdle(fs().mnt())) return false;
      for (const auto& [n, m] : model)
        if (fs().LatRows("pool", n) != static_cast<int64_t>(m.NonZeroBlocks())) return false;
      return fs().PatRows("pool") == distinct;
    });
    if (ok) return ::testing::AssertionSuccess();
    auto r = ::testing::AssertionFailure() << "catalog never matched the model: PAT rows " << fs().PatRows("pool")
                                           << " (expected " << distinct << ")";
    for (const auto& [n, m] : model) r << ", " << n << " LAT rows " << fs().LatRows("pool", n) << "/" << m.NonZeroBlocks();
    return r << "; " << DestageSummary(fs().mnt());
  }
  // copy_file_range(2) of `len` bytes, looping over short copies.
  ::testing::AssertionResult CopyRange(const std::string& src, uint64_t off_in, const std::string& dst,
                                       uint64_t off_out, uint64_t len) {
    Fd in = Fd::Open(src, O_RDONLY);
    Fd out = Fd::Open(dst, O_WRONLY);
    if (!in.ok() || !out.ok()) return ::testing::AssertionFailure() << "open: " << ErrnoName(errno);
    loff_t i = static_cast<loff_t>(off_in), o = static_cast<loff_t>(off_out);
    while (len > 0) {
      ssize_t n = ::copy_file_range(in.get(), &i, out.get(), &o, len, 0);
      if (n < 0) return ::testing::AssertionFailure() << "copy_file_range: " << ErrnoName(errno);
      if (n == 0) return ::testing::AssertionFailure() << "copy_file_range copied nothing with " << len << " bytes left";
      len -= static_cast<uint64_t>(n);
    }
    return ::testing::AssertionSuccess();
  }
};

TEST_F(CloneTest, ChainswapCloneSharesEveryBlockAndCopiesStayIndependent) {
  constexpr uint64_t kBytes = 32 * kMiB;
  constexpr int64_t kBlocks = kBytes / kBlock;
  ASSERT_TRUE(fs().MakeChain("pool"));
  ASSERT_TRUE(fs().MakeChain("other"));
  std::map<std::string, FileModel> model;
  const auto data = MakeData(300, kBytes);
  ASSERT_TRUE(WriteFile(fs().Path("pool", "vm01"), 0, data, O_DIRECT));
  model["vm01"].Write(0, data);
  ASSERT_TRUE(WaitForCatalog(model));
  const uint64_t store_before = fs().StoreAllocated();
  ASSERT_GE(store_before, kBytes);

  CommandResult r = Cli({"clone", fs().Path("pool", "vm01"), fs().Path("pool", "vm02")});
  ASSERT_EQ(r.status, 0) << Describe(r);
  model["vm02"] = model["vm01"];
  EXPECT_TRUE(FileEquals(fs().Path("pool", "vm02"), data));
  EXPECT_TRUE(FileEquals(fs().Path("pool", "vm02"), data, /*direct=*/false));
  ASSERT_TRUE(WaitForCatalog(model));
  // One stored copy: every block of the chain is referenced by both files.
  EXPECT_EQ(fs().PatRows("pool"), kBlocks);
  EXPECT_EQ(fs().QueryInt("SELECT count(*) FROM pat p JOIN chain c ON c.dedup_id = p.dedup_id "
                          "WHERE c.name = 'pool' AND p.refcount = 2"),
            kBlocks);
  EXPECT_EQ(fs().StoreAllocated(), store_before) << "the clone wrote to the content store";
  EXPECT_TRUE(fs().CatalogInvariantsHold());

  // Later writes to one copy do not show in the other.
  const auto patch = MakeData(301, 1 * kMiB);
  ASSERT_TRUE(WriteFile(fs().Path("pool", "vm02"), 4 * kMiB, patch, O_DIRECT));
  model["vm02"].Write(4 * kMiB, patch);
  const auto small = MakeData(302, 8 * kKiB);
  ASSERT_TRUE(WriteFile(fs().Path("pool", "vm01"), 10 * kMiB + 5, std::span(small).subspan(0, 5000)));
  model["vm01"].Write(10 * kMiB + 5, std::span(small).subspan(0, 5000));
  for (const auto& [n, m] : model) EXPECT_TRUE(FileEquals(fs().Path("pool", n), m.bytes())) << n;
  ASSERT_TRUE(WaitForCatalog(model));
  EXPECT_TRUE(fs().CatalogInvariantsHold());

  // Across chains: refused, nothing created.
  r = Cli({"clone", fs().Path("pool", "vm01"), fs().Path("other", "vm01")});
  EXPECT_NE(r.status, 0) << Describe(r);
  EXPECT_NE(r.output.find("chain"), std::string::npos) << Describe(r);
  struct stat st;
  EXPECT_TRUE(FailsWith(::stat(fs().Path("other", "vm01").c_str(), &st), ENOENT));

  // An existing destination needs --force.
  r = Cli({"clone", fs().Path("pool", "vm01"), fs().Path("pool", "vm02")});
  EXPECT_NE(r.status, 0) << Describe(r);
  EXPECT_NE(r.output.find("exists"), std::string::npos) << Describe(r);
  EXPECT_TRUE(FileEquals(fs().Path("pool", "vm02"), model["vm02"].bytes())) << "a refused clone changed DST";
  r = Cli({"clone", fs().Path("pool", "vm01"), fs().Path("pool", "vm02"), "--force"});
  ASSERT_EQ(r.status, 0) << Describe(r);
  model["vm02"] = model["vm01"];
  EXPECT_TRUE(FileEquals(fs().Path("pool", "vm02"), model["vm02"].bytes()));
  ASSERT_TRUE(WaitForCatalog(model));
  EXPECT_TRUE(fs().CatalogInvariantsHold());

  // Survives a remount.
  ASSERT_TRUE(fs().Remount());
  for (const auto& [n, m] : model) EXPECT_TRUE(FileEquals(fs().Path("pool", n), m.bytes(), false)) << n;
  EXPECT_TRUE(fs().CatalogInvariantsHold());
}

TEST_F(CloneTest, CopyFileRangeSharesAlignedBlocksAndCopiesUnalignedBytes) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  std::map<std::string, FileModel> model;
  const auto a = MakeData(310, 4 * kMiB);
  const auto b = MakeData(311, 2 * kMiB);
  ASSERT_TRUE(WriteFile(fs().Path("pool", "a"), 0, a, O_DIRECT));
  ASSERT_TRUE(WriteFile(fs().Path("pool", "b"), 0, b, O_DIRECT));
  model["a"].Write(0, a);
  model["b"].Write(0, b);
  ASSERT_TRUE(WaitForCatalog(model));
  const int64_t pat_before = fs().PatRows("pool");
  const uint64_t store_before = fs().StoreAllocated();
  const std::string a_id = std::to_string(FileId("a")), b_id = std::to_string(FileId("b"));

  // 4 KiB-aligned offsets and length: a LAT copy (a's LBAs 256..511 -> b's 1024..1279).
  ASSERT_TRUE(CopyRange(fs().Path("pool", "a"), 1 * kMiB, fs().Path("pool", "b"), 4 * kMiB, 1 * kMiB));
  model["b"].Write(4 * kMiB, std::span(a).subspan(1 * kMiB, 1 * kMiB));
  EXPECT_TRUE(FileEquals(fs().Path("pool", "b"), model["b"].bytes()));
  ASSERT_TRUE(WaitForCatalog(model));
  EXPECT_EQ(fs().PatRows("pool"), pat_before) << "the aligned copy stored new blocks";
  EXPECT_EQ(fs().StoreAllocated(), store_before) << "the aligned copy wrote to the content store";
  EXPECT_EQ(fs().QueryInt("SELECT count(*) FROM lat la JOIN lat lb ON lb.pblock = la.pblock "
                          "JOIN pat p ON p.pblock = la.pblock "
                          "WHERE la.file_id = ?1 AND lb.file_id = ?2 AND lb.lba = la.lba + 768 "
                          "AND la.lba BETWEEN 256 AND 511 AND p.refcount = 2",
                          {a_id, b_id}),
            256)
      << "b's copied blocks do not share a's physical blocks with refcount 2";
  EXPECT_EQ(fs().QueryInt("SELECT count(*) FROM pat WHERE refcount > 1"), 256);
  EXPECT_TRUE(fs().CatalogInvariantsHold());

  // Unaligned offsets, and aligned offsets with a length that ends inside a
  // block before EOF: bytes are copied.
  ASSERT_TRUE(CopyRange(fs().Path("pool", "a"), kBlock + 100, fs().Path("pool", "b"), 6 * kMiB + 3, 10000));
  model["b"].Write(6 * kMiB + 3, std::span(a).subspan(kBlock + 100, 10000));
  ASSERT_TRUE(CopyRange(fs().Path("pool", "a"), 2 * kMiB, fs().Path("pool", "b"), 64 * kKiB, 5000));
  model["b"].Write(64 * kKiB, std::span(a).subspan(2 * kMiB, 5000));
  ASSERT_TRUE(CopyRange(fs().Path("pool", "b"), 100, fs().Path("pool", "a"), 3 * kMiB + 1, 3 * kBlock));
  model["a"].Write(3 * kMiB + 1, std::span(model["b"].bytes()).subspan(100, 3 * kBlock));
  for (const auto& [n, m] : model) EXPECT_TRUE(FileEquals(fs().Path("pool", n), m.bytes())) << n;
  ASSERT_TRUE(WaitForCatalog(model));
  EXPECT_TRUE(fs().CatalogInvariantsHold());

  ASSERT_TRUE(fs().Remount());
  for (const auto& [n, m] : model) EXPECT_TRUE(FileEquals(fs().Path("pool", n), m.bytes(), false)) << n;
}

}  // namespace
}  // namespace chainswap::mounttest
