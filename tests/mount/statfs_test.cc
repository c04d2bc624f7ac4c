// Space accounting seen by df and du (SPEC §3): statfs reports the real
// capacity of the backing filesystem in 4 KiB blocks; stat reports a swap
// file's allocated blocks as its mapped (non-hole) blocks.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

class StatfsTest : public MountTest {};

TEST_F(StatfsTest, StatfsReportsTheBackingFilesystemIn4KiBBlocks) {
  struct statvfs m, b;
  ASSERT_EQ(::statvfs(fs().mnt().c_str(), &m), 0) << ErrnoName(errno);
  ASSERT_EQ(::statvfs(fs().backing().c_str(), &b), 0) << ErrnoName(errno);
  EXPECT_EQ(m.f_bsize, 4096u);
  const uint64_t frsize = m.f_frsize ? m.f_frsize : m.f_bsize;
  EXPECT_GT(m.f_blocks, 0u);
  EXPECT_GT(m.f_bavail, 0u);
  EXPECT_LE(m.f_bavail, m.f_bfree);
  EXPECT_LE(m.f_bfree, m.f_blocks);

  const uint64_t mount_total = uint64_t{m.f_blocks} * frsize;
  const uint64_t backing_total = uint64_t{b.f_blocks} * b.f_frsize;
  EXPECT_NEAR(static_cast<double>(mount_total), static_cast<double>(backing_total), backing_total * 0.01)
      << "f_blocks of the mount does not match the backing filesystem";
  // Other processes use the backing filesystem too: allow 1 % of its size.
  const uint64_t mount_avail = uint64_t{m.f_bavail} * frsize;
  const uint64_t backing_avail = uint64_t{b.f_bavail} * b.f_frsize;
  EXPECT_NEAR(static_cast<double>(mount_avail), static_cast<double>(backing_avail), backing_total * 0.01)
      << "f_bavail of the mount does not match the backing filesystem";
}

// st_blocks as the daemon answers it right now: statx with
// AT_STATX_FORCE_SYNC bypasses the kernel's attribute cache, so every check
// sees the daemon's view of the acknowledged operations (destaged or not).
int64_t DaemonStBlocks(const std::string& path) {
  struct statx stx;
  if (::statx(AT_FDCWD, path.c_str(), AT_STATX_FORCE_SYNC, STATX_BLOCKS, &stx) != 0) return -1;
  return static_cast<int64_t>(stx.stx_blocks);
}

TEST_F(StatfsTest, StBlocksCountsMappedBlocks) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  const std::string path = fs().Path("pool", "vm.vswp");
  const auto data = MakeData(50, 2 * kBlock);
  Fd fd = Fd::Open(path, O_CREAT | O_RDWR);
  ASSERT_TRUE(fd.ok());

  // 4 KiB written: 8 sectors of 512 bytes, as soon as the write returned.
  ASSERT_TRUE(PwriteAll(fd.get(), 0, std::span(data).subspan(0, kBlock)));
  EXPECT_EQ(DaemonStBlocks(path), 8) << "after writing block 0";
  // The same content at another LBA is deduplicated in the store but is
  // still a mapped block of this file.
  ASSERT_TRUE(PwriteAll(fd.get(), 4 * kBlock, std::span(data).subspan(0, kBlock)));
  EXPECT_EQ(DaemonStBlocks(path), 16) << "after writing block 4 (same content as block 0)";
  // A 100-byte write far away maps one more block; the hole maps none.
  ASSERT_TRUE(PwriteAll(fd.get(), 1 * kMiB, std::span(data).subspan(kBlock, 100)));
  EXPECT_EQ(DaemonStBlocks(path), 24) << "after writing 100 bytes at 1 MiB";
  // A zero block maps nothing (SPEC §3: writing zeros is punching).
  const std::vector<uint8_t> zeros(kBlock, 0);
  ASSERT_TRUE(PwriteAll(fd.get(), 8 * kBlock, zeros));
  EXPECT_EQ(DaemonStBlocks(path), 24) << "after writing a zero block into the hole at block 8";
  // A punch unmaps.
  ASSERT_TRUE(Succeeds(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, kBlock)));
  EXPECT_EQ(DaemonStBlocks(path), 16) << "after punching block 0";
  ASSERT_EQ(fd.Close(), 0);

  // Once destaged, the same answer, and the catalog agrees.
  ASSERT_TRUE(fs().Settle("pool"));
  EXPECT_EQ(DaemonStBlocks(path), 16);
  EXPECT_EQ(fs().LatRows("pool", "vm.vswp"), 2);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(1 * kMiB + 100));
  EXPECT_EQ(st.st_blocks, 16);

  ASSERT_TRUE(fs().Remount());
  EXPECT_EQ(DaemonStBlocks(path), 16);
}

}  // namespace
}  // namespace chainswap::mounttest
