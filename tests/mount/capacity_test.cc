// A capped content store (SPEC §5 back-pressure, OPERATIONS "Capacity
// planning"): with capacity=16M (4096 slots) writes of new data fail with
// ENOSPC once the store is full, nothing acknowledged before is lost (also
// across a remount), punches and zero writes still succeed at full capacity,
// and once deletes have given space back new writes succeed again.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "tests/mount/extra_util.h"
#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

using extra::DestageIdle;
using extra::DestageInt;
using extra::DestageSummary;

constexpr uint64_t kCapacity = 16 * kMiB;
constexpr uint64_t kChunk = 256 * kKiB;

class CapacityTest : public MountTest {
 protected:
  std::vector<std::string> MountOptions() const override { return {"capacity=16M"}; }

  std::string PathOf(int i) { return fs().Path("pool", "f" + std::to_string(i)); }

  // O_DIRECT pwrite of `data` (the daemon answers every write itself);
  // returns 0 or errno.
  int DirectWrite(int fd, uint64_t off, const std::vector<uint8_t>& data) {
    AlignedBuf buf(data.size());
    std::memcpy(buf.data(), data.data(), data.size());
    ssize_t n = ::pwrite(fd, buf.data(), data.size(), static_cast<off_t>(off));
    if (n == static_cast<ssize_t>(data.size())) return 0;
    if (n < 0) return errno;
    ADD_FAILURE() << "short write: " << n << " of " << data.size();
    return EIO;
  }

  void VerifyAll(bool direct) {
    for (const auto& [i, m] : model_) EXPECT_TRUE(FileEquals(PathOf(i), m.bytes(), direct)) << "f" << i;
  }

  std::map<int, FileModel> model_;
};

TEST_F(CapacityTest, FullStoreRefusesNewDataKeepsOldDataAndRecoversAfterDeletes) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  constexpr int kFiles = 4;
  std::vector<Fd> fds;
  for (int i = 0; i < kFiles; ++i) {
    fds.push_back(Fd::Open(PathOf(i), O_CREAT | O_RDWR | O_DIRECT));
    ASSERT_TRUE(fds.back().ok()) << PathOf(i);
    model_[i];
  }

  // Distinct random data, round robin over the files, until ENOSPC: first in
  // 256 KiB writes, then block by block to fill the store to the last slot.
  uint64_t acked = 0, seq = 0;
  int failed_errno = 0;
  std::vector<uint64_t> next_off(kFiles, 0);
  for (uint64_t size : {kChunk, uint64_t{kBlock}}) {
    for (;;) {
      ASSERT_LT(acked, 64 * kMiB) << "no ENOSPC after 64 MiB of distinct data on a 16 MiB store";
      const int f = static_cast<int>(seq % kFiles);
      const auto data = MakeData(0xCA9000 + seq++, size);
      int e = DirectWrite(fds[f].get(), next_off[f], data);
      if (e != 0) {
        failed_errno = e;
        break;
      }
      model_[f].Write(next_off[f], data);
      next_off[f] += size;
      acked += size;
    }
    ASSERT_EQ(failed_errno, ENOSPC) << "a write failed with " << ErrnoName(failed_errno) << " after " << acked
                                    << " bytes; " << DestageSummary(fs().mnt());
  }
  std::fprintf(stderr, "[ info ] %llu KiB acknowledged before ENOSPC\n", static_cast<unsigned long long>(acked / kKiB));
  EXPECT_LE(acked, kCapacity) << "more distinct data acknowledged than the capacity can hold";
  EXPECT_GE(acked, kCapacity - 1 * kMiB) << "the store refused writes well before its capacity";
  EXPECT_GT(DestageInt(fs().mnt(), "enospc"), 0) << DestageSummary(fs().mnt());
  // Still full: the same kind of write fails again.
  EXPECT_EQ(DirectWrite(fds[0].get(), next_off[0], MakeData(0xCA9000 + seq++, kChunk)), ENOSPC);

  // Everything acknowledged reads back, before and after destage.
  VerifyAll(true);
  ASSERT_TRUE(WaitUntil([&] { return DestageIdle(fs().mnt()); })) << DestageSummary(fs().mnt());
  VerifyAll(true);
  EXPECT_EQ(fs().TotalPatRows(), static_cast<int64_t>(acked / kBlock));
  EXPECT_TRUE(fs().CatalogInvariantsHold());

  // Deletes at full capacity: a punch of whole blocks, zeros written over
  // data (the same as a punch), and a punch inside one block (its edge block
  // is rewritten with zeros).
  ASSERT_TRUE(Succeeds(::fallocate(fds[1].get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 64 * kKiB)))
      << "whole-block punch at full capacity";
  model_[1].Zero(0, 64 * kKiB, true);
  EXPECT_EQ(DirectWrite(fds[2].get(), 0, std::vector<uint8_t>(kChunk, 0)), 0) << "zero write at full capacity";
  model_[2].Write(0, std::vector<uint8_t>(kChunk, 0));
  VerifyAll(true);
  ASSERT_TRUE(WaitUntil([&] { return DestageIdle(fs().mnt()); })) << DestageSummary(fs().mnt());

  // Fill the slots those deletes gave back, so that the store is full again.
  for (;;) {
    ASSERT_LT(acked, 64 * kMiB);
    const auto data = MakeData(0xCA9000 + seq++, kBlock);
    int e = DirectWrite(fds[3].get(), next_off[3], data);
    if (e != 0) {
      ASSERT_EQ(e, ENOSPC) << ErrnoName(e);
      break;
    }
    model_[3].Write(next_off[3], data);
    next_off[3] += kBlock;
    acked += kBlock;
  }
  // A punch of 100 bytes inside a block: only that block is rewritten.
  const uint64_t inside = next_off[0] / 2 / kBlock * kBlock + 1000;
  ASSERT_TRUE(Succeeds(::fallocate(fds[0].get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                   static_cast<off_t>(inside), 100)))
      << "punch inside a block at full capacity";
  model_[0].Zero(inside, 100, true);
  VerifyAll(true);
  if (!WaitUntil([&] { return DestageIdle(fs().mnt()); }, std::chrono::seconds(30))) {
    ADD_FAILURE() << "a partial-block punch acknowledged at full capacity is never destaged: "
                  << DestageSummary(fs().mnt());
    // What an operator would do: free whole blocks. The stuck edge-block
    // rewrite must then go through.
    const uint64_t last = next_off[0] - kBlock;
    ASSERT_TRUE(Succeeds(::fallocate(fds[0].get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                     static_cast<off_t>(last), kBlock)));
    model_[0].Zero(last, kBlock, true);
    ASSERT_TRUE(WaitUntil([&] { return DestageIdle(fs().mnt()); })) << DestageSummary(fs().mnt());
    VerifyAll(true);
  }

  // Across a remount (the unmount destages the journal).
  for (auto& fd : fds) ASSERT_EQ(fd.Close(), 0);
  fds.clear();
  ASSERT_TRUE(fs().Remount());
  VerifyAll(false);
  VerifyAll(true);
  EXPECT_TRUE(fs().CatalogInvariantsHold());

  // Give half back: unlink f2, punch all of f3. blocks_freed (since this
  // mount) must grow by their stored blocks, then new data fits again.
  const int64_t freed_before = DestageInt(fs().mnt(), "blocks_freed");
  const int64_t to_free = static_cast<int64_t>(model_[2].NonZeroBlocks() + model_[3].NonZeroBlocks());
  ASSERT_GT(to_free, 1024);
  ASSERT_TRUE(Succeeds(::unlink(PathOf(2).c_str())));
  model_.erase(2);
  {
    Fd fd = Fd::Open(PathOf(3), O_RDWR);
    ASSERT_TRUE(fd.ok());
    ASSERT_TRUE(Succeeds(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                                     static_cast<off_t>(model_[3].size()))));
    model_[3].Zero(0, model_[3].size(), true);
  }
  ASSERT_TRUE(WaitUntil([&] { return DestageInt(fs().mnt(), "blocks_freed") >= freed_before + to_free; }))
      << "blocks_freed went from " << freed_before << " to " << DestageInt(fs().mnt(), "blocks_freed")
      << ", expected +" << to_free << "; " << DestageSummary(fs().mnt());
  {
    Fd fd = Fd::Open(PathOf(1), O_RDWR | O_DIRECT);
    ASSERT_TRUE(fd.ok());
    const auto data = MakeData(0xCA9F00, 2 * kMiB);
    const uint64_t off = model_[1].size();
    EXPECT_EQ(DirectWrite(fd.get(), off, data), 0) << "a write after deletes gave space back";
    model_[1].Write(off, data);
  }
  VerifyAll(true);
  ASSERT_TRUE(WaitUntil([&] { return DestageIdle(fs().mnt()); })) << DestageSummary(fs().mnt());
  EXPECT_TRUE(fs().CatalogInvariantsHold());
  int64_t stored = 0;
  for (const auto& [i, m] : model_) stored += static_cast<int64_t>(m.NonZeroBlocks());
  EXPECT_EQ(fs().TotalPatRows(), stored);

  ASSERT_TRUE(fs().Unmount());
  CommandResult r = extra::Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 0) << extra::Describe(r);
}

}  // namespace
}  // namespace chainswap::mounttest
