// Swap files are POSIX regular files (SPEC §3): reads and writes at any
// offset and length, holes, truncate, fallocate modes, O_DIRECT, and the
// zero-block rule (§4 step 1). Every check compares with a byte model and
// reads through O_DIRECT (straight from the daemon, not the page cache), and
// again through a buffered open.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

class IoTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(fs().MakeChain("pool"));
  }
  std::string Path(const std::string& f = "vm.vswp") { return fs().Path("pool", f); }

  // Both read paths agree with the model.
  void ExpectContent(const std::string& path, const FileModel& m) {
    EXPECT_TRUE(FileEquals(path, m.bytes(), /*direct=*/true));
    EXPECT_TRUE(FileEquals(path, m.bytes(), /*direct=*/false));
  }
  // The catalog maps exactly the model's non-zero blocks (once destaged).
  void ExpectMappedBlocks(const std::string& file, const FileModel& m) {
    const int64_t want = static_cast<int64_t>(m.NonZeroBlocks());
    EXPECT_TRUE(WaitUntil([&] { return fs().LatRows("pool", file) == want; }))
        << file << ": LAT rows " << fs().LatRows("pool", file) << ", expected " << want;
    EXPECT_TRUE(fs().CatalogInvariantsHold());
  }
};

uint64_t SizeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return static_cast<uint64_t>(st.st_size);
}

// pwrite through `fd` and into the model.
void Write(int fd, FileModel& m, uint64_t off, std::span<const uint8_t> data) {
  ASSERT_TRUE(PwriteAll(fd, off, data)) << "at " << off;
  m.Write(off, data);
}

TEST_F(IoTest, PartialBlockWritesPreserveSurroundingBytes) {
  FileModel m;
  const auto base = MakeData(30, 16 * kBlock);
  const auto patch = MakeData(31, 8 * kBlock);
  {
    Fd fd = Fd::Open(Path(), O_CREAT | O_RDWR);
    ASSERT_TRUE(fd.ok());
    Write(fd.get(), m, 0, base);
    Write(fd.get(), m, 0, std::span(patch).subspan(0, 1));                    // first byte
    Write(fd.get(), m, kBlock + 17, std::span(patch).subspan(1, 100));        // inside one block
    Write(fd.get(), m, 2 * kBlock + 2048, std::span(patch).subspan(200, kBlock));  // straddles blocks 2-3
    Write(fd.get(), m, 5 * kBlock + 4000, std::span(patch).subspan(5000, 10000));  // spans 4 blocks
    Write(fd.get(), m, 11 * kBlock - 1, std::span(patch).subspan(20000, 2));  // the two bytes around a boundary
    Write(fd.get(), m, 16 * kBlock - 1, std::span(patch).subspan(30000, 3));  // last byte, and 2 past EOF
  }
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(SizeOf(Path()), 16 * kBlock + 2);
  ExpectContent(Path(), m);
  ExpectMappedBlocks("vm.vswp", m);
  ASSERT_TRUE(fs().Remount());
  ExpectContent(Path(), m);
}

TEST_F(IoTest, WritesPastEndOfFileLeaveHolesThatReadAsZeros) {
  FileModel m;
  const auto data = MakeData(32, 4 * kBlock);
  {
    Fd fd = Fd::Open(Path(), O_CREAT | O_RDWR);
    ASSERT_TRUE(fd.ok());
    Write(fd.get(), m, 0, std::span(data).subspan(0, 5000));              // EOF inside block 1
    Write(fd.get(), m, 9000, std::span(data).subspan(5000, 10));          // gap inside block 2
    Write(fd.get(), m, 3 * kMiB + 5, std::span(data).subspan(6000, 100));  // far past EOF
  }
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(SizeOf(Path()), 3 * kMiB + 105);
  ExpectContent(Path(), m);
  ExpectMappedBlocks("vm.vswp", m);  // the hole maps nothing

  // lseek(SEEK_DATA) from inside the hole finds the last block.
  Fd fd = Fd::Open(Path(), O_RDONLY);
  ASSERT_TRUE(fd.ok());
  off_t data_at = ::lseek(fd.get(), 64 * kKiB, SEEK_DATA);
  EXPECT_GE(data_at, static_cast<off_t>(64 * kKiB));
  EXPECT_LE(data_at, static_cast<off_t>(3 * kMiB + 5));
}

TEST_F(IoTest, TruncateGrowsWithZerosAndShrinkDropsTheTail) {
  FileModel m;
  const auto data = MakeData(33, 5 * kBlock);
  ASSERT_TRUE(WriteFile(Path(), 0, data));
  m.Write(0, data);

  // Grow by path: the new range reads as zeros.
  ASSERT_TRUE(Succeeds(::truncate(Path().c_str(), 10 * kBlock)));
  m.Truncate(10 * kBlock);
  EXPECT_EQ(SizeOf(Path()), 10 * kBlock);
  ExpectContent(Path(), m);

  Fd fd = Fd::Open(Path(), O_RDWR);
  ASSERT_TRUE(fd.ok());
  // Shrink into the middle of block 2, then grow again: the cut-off tail
  // reads as zeros, including the rest of block 2.
  ASSERT_TRUE(Succeeds(::ftruncate(fd.get(), 2 * kBlock + 100)));
  m.Truncate(2 * kBlock + 100);
  EXPECT_EQ(SizeOf(Path()), 2 * kBlock + 100);
  ExpectContent(Path(), m);
  ASSERT_TRUE(Succeeds(::ftruncate(fd.get(), 4 * kBlock)));
  m.Truncate(4 * kBlock);
  ExpectContent(Path(), m);
  ExpectMappedBlocks("vm.vswp", m);

  // Shrink, then write past the new EOF without truncating: the gap (part
  // of the old data) reads as zeros too.
  ASSERT_TRUE(Succeeds(::ftruncate(fd.get(), kBlock + 10)));
  m.Truncate(kBlock + 10);
  Write(fd.get(), m, 3 * kBlock + 1, std::span(data).subspan(0, 1));
  ExpectContent(Path(), m);

  // Shrink to zero and grow: nothing of the old data survives.
  ASSERT_TRUE(Succeeds(::ftruncate(fd.get(), 0)));
  m.Truncate(0);
  ASSERT_TRUE(Succeeds(::ftruncate(fd.get(), 8 * kBlock + 1)));
  m.Truncate(8 * kBlock + 1);
  ASSERT_EQ(fd.Close(), 0);
  ExpectContent(Path(), m);
  ExpectMappedBlocks("vm.vswp", m);
  EXPECT_EQ(m.NonZeroBlocks(), 0u);

  ASSERT_TRUE(fs().Remount());
  ExpectContent(Path(), m);
}

TEST_F(IoTest, ZeroRangeZeroesPartialAndWholeBlocks) {
  FileModel m;
  const auto data = MakeData(34, 16 * kBlock);
  ASSERT_TRUE(WriteFile(Path(), 0, data));
  m.Write(0, data);
  Fd fd = Fd::Open(Path(), O_RDWR);
  ASSERT_TRUE(fd.ok());
  struct Op {
    int mode;
    uint64_t off, len;
  } ops[] = {
      {FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, kBlock + 10, 100},                  // inside one block
      {FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 3 * kBlock + 4000, 2 * kBlock + 200}, // partial edges
      {FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 8 * kBlock, 2 * kBlock},            // whole blocks
      {FALLOC_FL_ZERO_RANGE, 12 * kBlock, kBlock},                                      // whole, in size
      {FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 16 * kBlock - 10, 10000},           // past EOF, keep
      {FALLOC_FL_ZERO_RANGE, 15 * kBlock + 5, 3 * kBlock},                              // past EOF, grow
  };
  for (const Op& op : ops) {
    ASSERT_TRUE(Succeeds(::fallocate(fd.get(), op.mode, static_cast<off_t>(op.off), static_cast<off_t>(op.len))))
        << "ZERO_RANGE mode " << op.mode << " at " << op.off << " len " << op.len;
    m.Zero(op.off, op.len, op.mode & FALLOC_FL_KEEP_SIZE);
    EXPECT_EQ(SizeOf(Path()), m.size()) << "after mode " << op.mode << " at " << op.off;
  }
  ASSERT_EQ(fd.Close(), 0);
  EXPECT_EQ(m.size(), 18 * kBlock + 5);
  ExpectContent(Path(), m);
  ExpectMappedBlocks("vm.vswp", m);
}

TEST_F(IoTest, FallocateModeZeroGrowsTheSizeWithoutStoringAnything) {
  FileModel m;
  const auto data = MakeData(35, kBlock);
  ASSERT_TRUE(WriteFile(Path(), 0, data));
  m.Write(0, data);
  ASSERT_TRUE(fs().Settle("pool"));
  const uint64_t store_before = fs().StoreAllocated();
  const int64_t pat_before = fs().PatRows("pool");
  EXPECT_EQ(pat_before, 1);

  Fd fd = Fd::Open(Path(), O_RDWR);
  ASSERT_TRUE(fd.ok());
  ASSERT_TRUE(Succeeds(::fallocate(fd.get(), 0, 0, 64 * kMiB)));
  m.Truncate(64 * kMiB);
  EXPECT_EQ(SizeOf(Path()), 64 * kMiB);
  ASSERT_TRUE(Succeeds(::fallocate(fd.get(), 0, kMiB, kMiB)));  // inside the size: no change
  ASSERT_TRUE(Succeeds(::fallocate(fd.get(), FALLOC_FL_KEEP_SIZE, 64 * kMiB, 16 * kMiB)));  // keeps the size
  EXPECT_EQ(SizeOf(Path()), 64 * kMiB);
  ASSERT_EQ(fd.Close(), 0);

  ASSERT_TRUE(fs().Settle("pool"));
  EXPECT_EQ(fs().PatRows("pool"), pat_before);
  EXPECT_LE(fs().StoreAllocated(), store_before + 16 * kKiB) << "thin preallocation must not grow the store";
  struct stat st;
  ASSERT_EQ(::stat(Path().c_str(), &st), 0);
  EXPECT_EQ(st.st_blocks, 8);  // only the data block
  ExpectContent(Path(), m);
}

TEST_F(IoTest, UnsupportedFallocateModesFailWithEopnotsuppAndPunchStillWorks) {
  FileModel m;
  const auto data = MakeData(36, 8 * kBlock);
  ASSERT_TRUE(WriteFile(Path(), 0, data));
  m.Write(0, data);
  Fd fd = Fd::Open(Path(), O_RDWR);
  ASSERT_TRUE(fd.ok());
  EXPECT_TRUE(FailsWith(::fallocate(fd.get(), FALLOC_FL_COLLAPSE_RANGE, 0, kBlock), EOPNOTSUPP)) << "COLLAPSE_RANGE";
  EXPECT_TRUE(FailsWith(::fallocate(fd.get(), FALLOC_FL_INSERT_RANGE, 0, kBlock), EOPNOTSUPP)) << "INSERT_RANGE";
  EXPECT_TRUE(FailsWith(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE, 0, kBlock), EOPNOTSUPP)) << "PUNCH_HOLE alone";
  EXPECT_EQ(SizeOf(Path()), 8 * kBlock);
  ExpectContent(Path(), m);  // nothing changed

  // fallocate is still enabled on the connection (the daemon never answered
  // ENOSYS, SPEC §9): punch, zero range and mode 0 all work afterwards.
  ASSERT_TRUE(Succeeds(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 * kBlock, kBlock)));
  m.Zero(2 * kBlock, kBlock, true);
  ASSERT_TRUE(Succeeds(::fallocate(fd.get(), FALLOC_FL_ZERO_RANGE, 5 * kBlock, kBlock)));
  m.Zero(5 * kBlock, kBlock, false);
  ASSERT_TRUE(Succeeds(::fallocate(fd.get(), 0, 0, 9 * kBlock)));
  m.Truncate(9 * kBlock);
  ASSERT_EQ(fd.Close(), 0);
  ExpectContent(Path(), m);
  ExpectMappedBlocks("vm.vswp", m);
}

TEST_F(IoTest, ODirectAlignedWritesReadBack) {
  FileModel m;
  const auto a = MakeData(37, 256 * kKiB);
  const auto b = MakeData(38, 64 * kKiB);
  AlignedBuf buf(256 * kKiB);
  {
    Fd fd = Fd::Open(Path(), O_CREAT | O_RDWR | O_DIRECT);
    ASSERT_TRUE(fd.ok()) << "open O_DIRECT: " << ErrnoName(errno);
    std::memcpy(buf.data(), a.data(), a.size());
    Write(fd.get(), m, 0, {buf.data(), a.size()});
    std::memcpy(buf.data(), b.data(), b.size());
    Write(fd.get(), m, 1 * kMiB, {buf.data(), b.size()});
    std::memcpy(buf.data(), a.data(), 4 * kBlock);  // an overwrite with other content
    Write(fd.get(), m, 8 * kBlock, {buf.data(), 4 * kBlock});

    // Read back through the same O_DIRECT descriptor.
    AlignedBuf rd(256 * kKiB);
    ASSERT_EQ(::pread(fd.get(), rd.data(), 256 * kKiB, 0), static_cast<ssize_t>(256 * kKiB));
    EXPECT_EQ(std::memcmp(rd.data(), m.bytes().data(), 256 * kKiB), 0);
    ASSERT_EQ(::pread(fd.get(), rd.data(), 256 * kKiB, 1 * kMiB), static_cast<ssize_t>(64 * kKiB));  // short: EOF
    EXPECT_EQ(std::memcmp(rd.data(), b.data(), b.size()), 0);
    ASSERT_EQ(::pread(fd.get(), rd.data(), 64 * kKiB, 512 * kKiB), static_cast<ssize_t>(64 * kKiB));  // the hole
    EXPECT_TRUE(std::all_of(rd.data(), rd.data() + 64 * kKiB, [](uint8_t x) { return x == 0; }));
  }
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(SizeOf(Path()), 1 * kMiB + 64 * kKiB);
  ExpectContent(Path(), m);
  ExpectMappedBlocks("vm.vswp", m);
  ASSERT_TRUE(fs().Remount());
  ExpectContent(Path(), m);
}

TEST_F(IoTest, ZeroBlocksAreNeverStored) {
  ASSERT_TRUE(fs().Settle("pool"));
  const uint64_t store_before = fs().StoreAllocated();
  const std::vector<uint8_t> zeros(1 * kMiB, 0);
  ASSERT_TRUE(WriteFile(Path("zeros.vswp"), 0, zeros));
  {
    Fd fd = Fd::Open(Path("zeros.vswp"), O_RDWR);
    ASSERT_TRUE(fd.ok());
    ASSERT_EQ(::fsync(fd.get()), 0);
  }
  ASSERT_TRUE(fs().Settle("pool"));
  // Tolerance far below the 1 MiB written: room for the backing
  // filesystem's own metadata, not for stored data.
  EXPECT_LE(fs().StoreAllocated(), store_before + 16 * kKiB);
  EXPECT_EQ(fs().PatRows("pool"), 0);
  EXPECT_EQ(fs().LatRows("pool", "zeros.vswp"), 0);
  struct stat st;
  ASSERT_EQ(::stat(Path("zeros.vswp").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(1 * kMiB));
  EXPECT_EQ(st.st_blocks, 0);
  EXPECT_TRUE(FileEquals(Path("zeros.vswp"), zeros));

  // Zeros written over data are a punch: the blocks leave the store.
  const auto data = MakeData(39, 1 * kMiB);
  ASSERT_TRUE(WriteFile(Path("data.vswp"), 0, data));
  ASSERT_TRUE(WaitUntil([&] { return fs().PatRows("pool") == 256; })) << "PAT rows " << fs().PatRows("pool");
  ASSERT_TRUE(WriteFile(Path("data.vswp"), 0, zeros));
  EXPECT_TRUE(FileEquals(Path("data.vswp"), zeros));
  EXPECT_TRUE(WaitUntil([&] {
    return fs().PatRows("pool") == 0 && fs().LatRows("pool", "data.vswp") == 0 &&
           fs().StoreAllocated() <= store_before + 16 * kKiB;
  })) << "PAT rows " << fs().PatRows("pool") << ", store allocated " << fs().StoreAllocated();
  EXPECT_TRUE(fs().CatalogInvariantsHold());
}

}  // namespace
}  // namespace chainswap::mounttest
