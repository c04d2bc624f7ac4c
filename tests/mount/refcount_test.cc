// Reference counting and space reclaim (SPEC §2 PAT, §4 step 5, §5 delete
// path): after any mix of overwrites, punches, truncates, renames and
// unlinks, every PAT refcount equals the LAT references to the block, the
// store holds exactly the chain's distinct non-zero blocks, and punching
// everything gives the space back to the backing filesystem.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

class RefcountTest : public MountTest {};

constexpr uint64_t kFileBytes = 8 * kMiB;

std::span<const uint8_t> Slice(const std::vector<uint8_t>& v, uint64_t off, uint64_t len) {
  return std::span<const uint8_t>(v).subspan(off, len);
}

TEST_F(RefcountTest, MixedOperationsKeepRefcountsEqualToLatReferences) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  const auto base = MakeData(10, kFileBytes);
  const auto other = MakeData(11, kFileBytes);
  const auto extra = MakeData(12, 64 * kKiB);
  std::map<std::string, FileModel> model;
  auto path = [&](const std::string& f) { return fs().Path("pool", f); };
  auto write = [&](const std::string& f, uint64_t off, std::span<const uint8_t> d) {
    ASSERT_TRUE(WriteFile(path(f), off, d));
    model[f].Write(off, d);
  };
  auto fallocate = [&](const std::string& f, int mode, uint64_t off, uint64_t len) {
    Fd fd = Fd::Open(path(f), O_RDWR);
    ASSERT_TRUE(fd.ok()) << path(f);
    ASSERT_TRUE(Succeeds(::fallocate(fd.get(), mode, static_cast<off_t>(off), static_cast<off_t>(len))))
        << "fallocate(" << f << ", mode " << mode << ", " << off << ", " << len << ")";
    model[f].Zero(off, len, mode & FALLOC_FL_KEEP_SIZE);
  };
  auto truncate = [&](const std::string& f, uint64_t size) {
    ASSERT_TRUE(Succeeds(::truncate(path(f).c_str(), static_cast<off_t>(size)))) << "truncate " << f << " " << size;
    model[f].Truncate(size);
  };

  // a and b share every block (refcount 2); c is different; d shares half
  // with a/b and half with c; e shares with a/b and is unlinked later.
  write("a", 0, base);
  write("b", 0, base);
  write("c", 0, other);
  write("d", 0, Slice(base, 0, kFileBytes / 2));
  write("d", kFileBytes / 2, Slice(other, kFileBytes / 2, kFileBytes / 2));
  write("e", 0, Slice(base, 0, 2 * kMiB));

  // Overwrites: whole blocks moving to blocks that exist elsewhere, the same
  // content again, partial blocks, and a write straddling three blocks.
  write("a", 0, Slice(other, 0, 1 * kMiB));
  write("c", 100 * kBlock, Slice(other, 100 * kBlock, 100 * kBlock));
  write("b", 10 * kBlock + 7, Slice(extra, 0, 100));
  write("b", 20 * kBlock - 1000, Slice(extra, 100, 2 * kBlock + 1500));
  write("d", 1 * kMiB, Slice(base, 3 * kMiB, 1 * kMiB));
  // Zeros over data are a punch.
  const std::vector<uint8_t> zeros(10 * kBlock, 0);
  write("d", 50 * kBlock, zeros);

  // Punches: aligned, unaligned (partial edge blocks rewritten), zero range.
  fallocate("a", FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 * kMiB, 1 * kMiB);
  fallocate("b", FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 300 * kBlock + 123, 5 * kBlock);
  fallocate("c", FALLOC_FL_ZERO_RANGE, 500 * kBlock, 2 * kBlock);
  fallocate("c", FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 600 * kBlock + 1, kBlock);

  // Truncates: unaligned shrink then grow, shrink to a block boundary.
  truncate("c", 6 * kMiB + 1000);
  truncate("c", 7 * kMiB);
  truncate("d", 1 * kMiB);

  // Unlink, and rename over an existing file (which drops it).
  ASSERT_TRUE(Succeeds(::unlink(path("e").c_str())));
  model.erase("e");
  ASSERT_TRUE(Succeeds(::rename(path("c").c_str(), path("d").c_str())));
  model["d"] = model["c"];
  model.erase("c");
  ASSERT_FALSE(HasFatalFailure());

  // Every read reflects the model right away.
  for (const auto& [name, m] : model) EXPECT_TRUE(FileEquals(path(name), m.bytes())) << name;

  std::vector<const FileModel*> files;
  int64_t lat_expected = 0;
  for (const auto& [name, m] : model) {
    files.push_back(&m);
    lat_expected += static_cast<int64_t>(m.NonZeroBlocks());
  }
  const int64_t pat_expected = static_cast<int64_t>(DistinctNonZeroBlocks(files));
  auto catalog_matches_model = [&] {
    for (const auto& [name, m] : model)
      if (fs().LatRows("pool", name) != static_cast<int64_t>(m.NonZeroBlocks())) return false;
    return fs().FileRows("pool") == static_cast<int64_t>(model.size()) && fs().TotalLatRows() == lat_expected &&
           fs().PatRows("pool") == pat_expected;
  };
  ASSERT_TRUE(WaitUntil(catalog_matches_model))
      << "catalog never matched the model: LAT rows " << fs().TotalLatRows() << " (expected " << lat_expected
      << "), PAT rows " << fs().PatRows("pool") << " (expected " << pat_expected << "), swap_file rows "
      << fs().FileRows("pool") << " (expected " << model.size() << ")";
  EXPECT_TRUE(fs().CatalogInvariantsHold());
  // Blocks shared by several files carry refcounts above 1.
  EXPECT_GT(fs().QueryInt("SELECT count(*) FROM pat WHERE refcount > 1"), 0);
  EXPECT_EQ(fs().QueryInt("SELECT sum(refcount) FROM pat"), lat_expected);
  // The store holds the distinct blocks and nothing more once freed slots
  // are punched (the destager's idle catalog sync does that, shortly after
  // the catalog matched: SlotAllocator's cycle needs two syncs).
  EXPECT_TRUE(WaitUntil(
      [&] { return fs().StoreAllocated() <= static_cast<uint64_t>(pat_expected) * kBlock + 256 * kKiB; }))
      << "store allocated " << fs().StoreAllocated() << " bytes for " << pat_expected << " distinct blocks";
  EXPECT_GE(fs().StoreAllocated(), static_cast<uint64_t>(pat_expected) * kBlock);

  ASSERT_TRUE(fs().Remount());
  EXPECT_TRUE(fs().CatalogInvariantsHold());
  for (const auto& [name, m] : model) EXPECT_TRUE(FileEquals(path(name), m.bytes(), /*direct=*/false)) << name;
  EXPECT_TRUE(catalog_matches_model());
}

TEST_F(RefcountTest, PunchingEveryBlockGivesTheSpaceBack) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  const std::vector<std::pair<std::string, uint64_t>> files = {{"f0", 20}, {"f1", 20}, {"f2", 21}, {"f3", 22}};
  for (const auto& [name, seed] : files) ASSERT_TRUE(WriteFile(fs().Path("pool", name), 0, MakeData(seed, kFileBytes)));
  const int64_t blocks_per_file = kFileBytes / kBlock;
  const int64_t distinct = 3 * blocks_per_file;  // f0 and f1 are equal
  ASSERT_TRUE(WaitUntil([&] { return fs().TotalLatRows() == 4 * blocks_per_file && fs().PatRows("pool") == distinct; }))
      << "LAT rows " << fs().TotalLatRows() << ", PAT rows " << fs().PatRows("pool");
  const uint64_t store_before = fs().StoreAllocated();
  EXPECT_GE(store_before, static_cast<uint64_t>(distinct) * kBlock);
  const auto du_before = DuKib(fs().backing());
  ASSERT_TRUE(du_before.has_value());

  // f0 block by block, the others in one call each.
  {
    Fd fd = Fd::Open(fs().Path("pool", "f0"), O_RDWR);
    ASSERT_TRUE(fd.ok());
    for (uint64_t off = 0; off < kFileBytes; off += kBlock)
      ASSERT_TRUE(Succeeds(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off), kBlock)))
          << "punch f0 at " << off;
  }
  for (const char* name : {"f1", "f2", "f3"}) {
    Fd fd = Fd::Open(fs().Path("pool", name), O_RDWR);
    ASSERT_TRUE(fd.ok());
    ASSERT_TRUE(Succeeds(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, kFileBytes))) << name;
  }

  const std::vector<uint8_t> zeros(kFileBytes, 0);
  for (const auto& [name, seed] : files) {
    EXPECT_TRUE(FileEquals(fs().Path("pool", name), zeros)) << name;  // KEEP_SIZE: size unchanged
  }
  ASSERT_TRUE(WaitUntil([&] {
    return fs().TotalLatRows() == 0 && fs().TotalPatRows() == 0 && fs().StoreAllocated() < 64 * kKiB;
  })) << "LAT rows " << fs().TotalLatRows() << ", PAT rows " << fs().TotalPatRows() << ", store allocated "
      << fs().StoreAllocated() << " bytes";
  EXPECT_TRUE(fs().CatalogInvariantsHold());
  const uint64_t store_after = fs().StoreAllocated();
  EXPECT_LT(store_after, 64 * kKiB);
  for (const auto& [name, seed] : files) {
    struct stat st;
    ASSERT_EQ(::stat(fs().Path("pool", name).c_str(), &st), 0);
    EXPECT_EQ(st.st_blocks, 0) << name;
  }

  // The backing filesystem got the space back: du shrinks by (nearly) what
  // the store gave back. Slack for catalog WAL growth from the deletes; the
  // daemon folds the WAL back when idle, right after the punches.
  const uint64_t freed_kib = (store_before - store_after) / 1024;
  std::optional<uint64_t> du_after;
  WaitUntil([&] {
    du_after = DuKib(fs().backing());
    return du_after && *du_after < *du_before && *du_before - *du_after >= freed_kib * 3 / 4;
  });
  ASSERT_TRUE(du_after.has_value());
  EXPECT_LT(*du_after, *du_before);
  EXPECT_GE(*du_before - std::min(*du_before, *du_after), freed_kib * 3 / 4)
      << "du -sk " << fs().backing() << ": " << *du_before << " KiB before, " << *du_after
      << " KiB after; the store gave back " << freed_kib << " KiB\n"
      << Popen("du -ak '" + fs().backing() + "'").value_or("");
}

}  // namespace
}  // namespace chainswap::mounttest
