// The namespace of the mount (SPEC §3): the root holds only chains, a chain
// holds only swap files; rename within a chain, EXDEV across chains; rmdir
// of empty chains; unlink of open files.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "tests/mount/extra_util.h"
#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

class NamespaceTest : public MountTest {};

using extra::Exists;
using extra::ListDir;

TEST_F(NamespaceTest, RootHoldsOnlyChains) {
  const std::string f = fs().mnt() + "/file";
  EXPECT_TRUE(FailsWith(::open(f.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644), EPERM)) << "create at the root";
  EXPECT_TRUE(FailsWith(::mknod(f.c_str(), S_IFREG | 0644, 0), EPERM)) << "mknod at the root";
  EXPECT_TRUE(FailsWith(::symlink("pool", (fs().mnt() + "/link").c_str()), EPERM)) << "symlink at the root";
  ASSERT_TRUE(fs().MakeChain("pool"));
  struct stat st;
  ASSERT_EQ(::stat(fs().Path("pool").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(ListDir(fs().mnt()), std::set<std::string>{"pool"});
}

TEST_F(NamespaceTest, ChainsHoldOnlySwapFiles) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  ASSERT_TRUE(WriteFile(fs().Path("pool", "vm01.vswp"), 0, MakeData(40, kBlock)));
  EXPECT_TRUE(FailsWith(::mkdir(fs().Path("pool", "sub").c_str(), 0755), EPERM)) << "mkdir inside a chain";
  EXPECT_TRUE(FailsWith(::symlink("vm01.vswp", fs().Path("pool", "link").c_str()), EPERM)) << "symlink in a chain";
  EXPECT_TRUE(FailsWith(::link(fs().Path("pool", "vm01.vswp").c_str(), fs().Path("pool", "hard").c_str()), EPERM))
      << "link in a chain";
  EXPECT_TRUE(FailsWith(::mknod(fs().Path("pool", "fifo").c_str(), S_IFIFO | 0644, 0), EPERM)) << "mkfifo";
  EXPECT_EQ(ListDir(fs().Path("pool")), std::set<std::string>{"vm01.vswp"});
}

// Swap files never carry setuid/setgid bits (the mount clears privileges on
// write for the kernel, FUSE_HANDLE_KILLPRIV_V2, and so keeps none to clear):
// they are dropped on create and chmod; the sticky and rwx bits are kept.
TEST_F(NamespaceTest, SwapFilesNeverCarrySetuidOrSetgid) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  const std::string path = fs().Path("pool", "vm.vswp");
  const mode_t mask = ::umask(0);
  ::umask(mask);
  Fd fd = Fd::Open(path, O_CREAT | O_RDWR, 06750);
  ASSERT_TRUE(fd.ok()) << ErrnoName(errno);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u & ~static_cast<unsigned>(mask));
  ASSERT_TRUE(Succeeds(::chmod(path.c_str(), 06755)));
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  ASSERT_TRUE(Succeeds(::chmod(path.c_str(), 01600)));
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 01600u);
  // Writes work as before (no privilege check round trip is needed).
  const auto data = MakeData(77, 4 * kBlock);
  ASSERT_TRUE(PwriteAll(fd.get(), 0, data));
  EXPECT_TRUE(FileEquals(path, data));
}

TEST_F(NamespaceTest, RenameAcrossChainsFailsWithExdev) {
  ASSERT_TRUE(fs().MakeChain("pool-a"));
  ASSERT_TRUE(fs().MakeChain("pool-b"));
  const auto data = MakeData(41, 16 * kBlock);
  ASSERT_TRUE(WriteFile(fs().Path("pool-a", "vm.vswp"), 0, data));
  EXPECT_TRUE(FailsWith(::rename(fs().Path("pool-a", "vm.vswp").c_str(), fs().Path("pool-b", "vm.vswp").c_str()), EXDEV));
  EXPECT_TRUE(FileEquals(fs().Path("pool-a", "vm.vswp"), data));
  EXPECT_FALSE(Exists(fs().Path("pool-b", "vm.vswp")));
  // A file may not become a chain, nor a chain a file.
  EXPECT_TRUE(FailsWith(::rename(fs().Path("pool-a", "vm.vswp").c_str(), (fs().mnt() + "/vm.vswp").c_str()), EPERM));
}

TEST_F(NamespaceTest, RenameWithinAChainKeepsTheData) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  const auto data = MakeData(42, 64 * kBlock + 100);
  ASSERT_TRUE(WriteFile(fs().Path("pool", "old.vswp"), 0, data));
  ASSERT_TRUE(Succeeds(::rename(fs().Path("pool", "old.vswp").c_str(), fs().Path("pool", "new.vswp").c_str())));
  EXPECT_TRUE(FailsWith(::access(fs().Path("pool", "old.vswp").c_str(), F_OK), ENOENT));
  EXPECT_TRUE(FileEquals(fs().Path("pool", "new.vswp"), data));
  EXPECT_EQ(ListDir(fs().Path("pool")), std::set<std::string>{"new.vswp"});
  ASSERT_TRUE(WaitUntil([&] { return fs().LatRows("pool", "new.vswp") == 65; }))
      << "LAT rows of new.vswp: " << fs().LatRows("pool", "new.vswp");
  EXPECT_EQ(fs().LatRows("pool", "old.vswp"), -1);  // no such name in the catalog

  ASSERT_TRUE(fs().Remount());
  EXPECT_TRUE(FileEquals(fs().Path("pool", "new.vswp"), data, /*direct=*/false));
  EXPECT_FALSE(Exists(fs().Path("pool", "old.vswp")));
}

TEST_F(NamespaceTest, RenameReplacesAnExistingFileAndFreesItsBlocks) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  const auto a = MakeData(43, 32 * kBlock);
  const auto b = MakeData(44, 48 * kBlock);
  ASSERT_TRUE(WriteFile(fs().Path("pool", "a.vswp"), 0, a));
  ASSERT_TRUE(WriteFile(fs().Path("pool", "b.vswp"), 0, b));
  ASSERT_TRUE(Succeeds(::rename(fs().Path("pool", "a.vswp").c_str(), fs().Path("pool", "b.vswp").c_str())));
  EXPECT_FALSE(Exists(fs().Path("pool", "a.vswp")));
  EXPECT_TRUE(FileEquals(fs().Path("pool", "b.vswp"), a));
  EXPECT_EQ(ListDir(fs().Path("pool")), std::set<std::string>{"b.vswp"});
  // The replaced file's blocks are reclaimed.
  EXPECT_TRUE(WaitUntil([&] {
    return fs().FileRows("pool") == 1 && fs().PatRows("pool") == 32 && fs().TotalLatRows() == 32;
  })) << "swap_file rows " << fs().FileRows("pool") << ", PAT rows " << fs().PatRows("pool");
  EXPECT_TRUE(fs().CatalogInvariantsHold());
}

TEST_F(NamespaceTest, RmdirRefusesNonEmptyChainsAndRemovesEmptyOnes) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  const int64_t first_id = fs().DedupIdOf("pool");
  ASSERT_TRUE(WriteFile(fs().Path("pool", "vm.vswp"), 0, MakeData(45, 16 * kBlock)));
  EXPECT_TRUE(FailsWith(::rmdir(fs().Path("pool").c_str()), ENOTEMPTY));
  EXPECT_TRUE(Exists(fs().Path("pool", "vm.vswp")));
  ASSERT_TRUE(Succeeds(::unlink(fs().Path("pool", "vm.vswp").c_str())));
  // Empty as far as anyone can see: rmdir works at once (rm -r), even if the
  // unlinked file's blocks are still being reclaimed in the background.
  EXPECT_TRUE(Succeeds(::rmdir(fs().Path("pool").c_str())));
  EXPECT_FALSE(Exists(fs().Path("pool")));
  EXPECT_TRUE(ListDir(fs().mnt()).empty());
  EXPECT_TRUE(WaitUntil([&] { return fs().TotalPatRows() == 0 && fs().DedupIdOf("pool") == -1; }))
      << "PAT rows " << fs().TotalPatRows() << ", chain row " << fs().DedupIdOf("pool");
  EXPECT_TRUE(fs().CatalogInvariantsHold());
  // The name can be used again, by a new chain with a new dedup ID.
  ASSERT_TRUE(fs().MakeChain("pool"));
  EXPECT_NE(fs().DedupIdOf("pool"), first_id);
  EXPECT_TRUE(Succeeds(::rmdir(fs().Path("pool").c_str())));
}

TEST_F(NamespaceTest, UnlinkWhileOpenKeepsDataUntilClose) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  const auto data = MakeData(46, 1 * kMiB);
  ASSERT_TRUE(WriteFile(fs().Path("pool", "vm.vswp"), 0, data));
  ASSERT_TRUE(WaitUntil([&] { return fs().PatRows("pool") == 256; })) << "PAT rows " << fs().PatRows("pool");
  const uint64_t store_full = fs().StoreAllocated();

  Fd direct = Fd::Open(fs().Path("pool", "vm.vswp"), O_RDWR | O_DIRECT);
  ASSERT_TRUE(direct.ok());
  ASSERT_TRUE(Succeeds(::unlink(fs().Path("pool", "vm.vswp").c_str())));
  EXPECT_FALSE(Exists(fs().Path("pool", "vm.vswp")));
  EXPECT_TRUE(ListDir(fs().Path("pool")).empty());
  struct stat st;
  ASSERT_EQ(::fstat(direct.get(), &st), 0);
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_EQ(st.st_size, static_cast<off_t>(data.size()));

  // The data is still there through the descriptor (O_DIRECT: from the daemon).
  ASSERT_TRUE(fs().Settle("pool"));
  AlignedBuf buf(data.size());
  ASSERT_EQ(::pread(direct.get(), buf.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
  EXPECT_EQ(std::memcmp(buf.data(), data.data(), data.size()), 0);
  EXPECT_EQ(fs().PatRows("pool"), 256) << "blocks of an open unlinked file were reclaimed";
  // A new file may take the name meanwhile; it is a different file.
  ASSERT_TRUE(WriteFile(fs().Path("pool", "vm.vswp"), 0, MakeData(47, kBlock)));
  ASSERT_EQ(::pread(direct.get(), buf.data(), kBlock, 0), static_cast<ssize_t>(kBlock));
  EXPECT_EQ(std::memcmp(buf.data(), data.data(), kBlock), 0);
  ASSERT_TRUE(Succeeds(::unlink(fs().Path("pool", "vm.vswp").c_str())));

  // Closing the last descriptor gives the space back.
  ASSERT_EQ(direct.Close(), 0);
  EXPECT_TRUE(WaitUntil([&] {
    return fs().FileRows("pool") == 0 && fs().TotalPatRows() == 0 && fs().StoreAllocated() < 64 * kKiB;
  })) << "swap_file rows " << fs().FileRows("pool") << ", PAT rows " << fs().TotalPatRows()
      << ", store allocated " << fs().StoreAllocated() << " (was " << store_full << " while open)";
  EXPECT_TRUE(fs().CatalogInvariantsHold());
}

}  // namespace
}  // namespace chainswap::mounttest
