// Durability and exclusivity of a backing directory (SPEC §3, §5 crash
// safety for clean unmounts, §10 the daemon's lock): acknowledged data
// survives unmount and mount; a second daemon refuses a backing directory in
// use.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

class PersistenceTest : public MountTest {};

TEST_F(PersistenceTest, FsyncedAndClosedDataSurvivesRemount) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  ASSERT_TRUE(fs().MakeChain("other"));
  std::map<std::string, FileModel> model;
  const auto data = MakeData(70, 8 * kMiB);
  const auto more = MakeData(71, 1 * kMiB);

  // a: written and fsync'ed.
  {
    Fd fd = Fd::Open(fs().Path("pool", "a.vswp"), O_CREAT | O_RDWR);
    ASSERT_TRUE(fd.ok());
    ASSERT_TRUE(PwriteAll(fd.get(), 0, data));
    ASSERT_TRUE(Succeeds(::fsync(fd.get())));
    model["pool/a.vswp"].Write(0, data);
    ASSERT_TRUE(PwriteAll(fd.get(), 100, std::span(more).subspan(0, 5000)));  // then fdatasync'ed
    ASSERT_TRUE(Succeeds(::fdatasync(fd.get())));
    model["pool/a.vswp"].Write(100, std::span(more).subspan(0, 5000));
  }
  // b: unaligned buffered writes, only closed.
  {
    Fd fd = Fd::Open(fs().Path("pool", "b.vswp"), O_CREAT | O_RDWR);
    ASSERT_TRUE(fd.ok());
    ASSERT_TRUE(PwriteAll(fd.get(), 3, std::span(data).subspan(0, 3 * kMiB)));
    ASSERT_TRUE(PwriteAll(fd.get(), 5 * kMiB + 17, std::span(more).subspan(0, 777)));
    ASSERT_EQ(fd.Close(), 0);
    model["pool/b.vswp"].Write(3, std::span(data).subspan(0, 3 * kMiB));
    model["pool/b.vswp"].Write(5 * kMiB + 17, std::span(more).subspan(0, 777));
  }
  // c: O_DIRECT writes (acknowledged when the write returns), a punch and a
  // truncate, in the other chain.
  {
    Fd fd = Fd::Open(fs().Path("other", "c.vswp"), O_CREAT | O_RDWR | O_DIRECT);
    ASSERT_TRUE(fd.ok());
    AlignedBuf buf(1 * kMiB);
    std::memcpy(buf.data(), more.data(), more.size());
    ASSERT_TRUE(PwriteAll(fd.get(), 0, {buf.data(), 1 * kMiB}));
    ASSERT_TRUE(PwriteAll(fd.get(), 2 * kMiB, {buf.data(), 1 * kMiB}));
    model["other/c.vswp"].Write(0, more);
    model["other/c.vswp"].Write(2 * kMiB, more);
    ASSERT_TRUE(Succeeds(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 64 * kKiB, 128 * kKiB)));
    model["other/c.vswp"].Zero(64 * kKiB, 128 * kKiB, true);
    ASSERT_TRUE(Succeeds(::ftruncate(fd.get(), 2 * kMiB + 5000)));
    model["other/c.vswp"].Truncate(2 * kMiB + 5000);
  }
  // d: created empty, then grown thin.
  {
    Fd fd = Fd::Open(fs().Path("pool", "d.vswp"), O_CREAT | O_RDWR, 0600);
    ASSERT_TRUE(fd.ok());
    ASSERT_TRUE(Succeeds(::ftruncate(fd.get(), 16 * kMiB)));
    model["pool/d.vswp"].Truncate(16 * kMiB);
  }
  auto verify = [&](bool direct) {
    for (const auto& [rel, m] : model) EXPECT_TRUE(FileEquals(fs().mnt() + "/" + rel, m.bytes(), direct)) << rel;
  };
  verify(true);
  const auto pool_id = fs().DedupIdOf("pool");
  const auto other_id = fs().DedupIdOf("other");

  ASSERT_TRUE(fs().Remount());
  verify(false);
  verify(true);
  struct stat st;
  ASSERT_EQ(::stat(fs().Path("pool", "d.vswp").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(fs().DedupIdOf("pool"), pool_id);
  EXPECT_EQ(fs().DedupIdOf("other"), other_id);
  EXPECT_TRUE(fs().CatalogInvariantsHold());

  // A second cycle (nothing written in between) changes nothing.
  ASSERT_TRUE(fs().Remount());
  verify(false);
  int64_t lat_expected = 0;
  for (const auto& [rel, m] : model) lat_expected += static_cast<int64_t>(m.NonZeroBlocks());
  EXPECT_TRUE(WaitUntil([&] { return fs().TotalLatRows() == lat_expected; }))
      << "LAT rows " << fs().TotalLatRows() << ", expected " << lat_expected;
  EXPECT_TRUE(fs().CatalogInvariantsHold());
}

TEST_F(PersistenceTest, SecondDaemonOnTheSameBackingDirectoryRefusesToStart) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  const auto data = MakeData(72, 64 * kKiB);
  ASSERT_TRUE(WriteFile(fs().Path("pool", "vm.vswp"), 0, data));

  const std::string mnt2 = fs().dir() + "/mnt2";
  ASSERT_EQ(::mkdir(mnt2.c_str(), 0755), 0);
  CommandResult r = RunCommand({CHAINSWAPFS_BIN, fs().backing(), mnt2, "-f"}, std::chrono::seconds(20));
  struct stat m2, parent;
  ASSERT_EQ(::stat(fs().dir().c_str(), &parent), 0);
  if (::stat(mnt2.c_str(), &m2) != 0 || m2.st_dev != parent.st_dev) {
    RunCommand({"fusermount3", "-uz", mnt2}, std::chrono::seconds(10));
    ADD_FAILURE() << "the second daemon mounted " << mnt2;
  }
  EXPECT_FALSE(r.timed_out) << "the second daemon kept running:\n" << r.output;
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("in use"), std::string::npos) << "the refusal does not say the directory is in use:\n"
                                                         << r.output;

  // The first daemon carries on undisturbed.
  EXPECT_TRUE(FileEquals(fs().Path("pool", "vm.vswp"), data));
  ASSERT_TRUE(WriteFile(fs().Path("pool", "vm2.vswp"), 0, data));
  EXPECT_TRUE(FileEquals(fs().Path("pool", "vm2.vswp"), data));
  ASSERT_TRUE(fs().Remount());
  EXPECT_TRUE(FileEquals(fs().Path("pool", "vm2.vswp"), data));
}

}  // namespace
}  // namespace chainswap::mounttest
