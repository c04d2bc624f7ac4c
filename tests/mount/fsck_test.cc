// `chainswap fsck` (SPEC §5 invariants, §6, OPERATIONS "After a crash"):
// clean after a mixed workload; each kind of deliberate catalog damage (made
// with the sqlite3 C API while unmounted) is detected (exit 4), repaired
// (exit 1) and gone on the next run (exit 0), and the repaired backing
// directory mounts and serves the surviving data; a corrupt block in the
// store is detected and not "repaired"; a mounted backing directory is only
// checked with --read-only.
//
// Exit codes: 0 clean, 1 all repaired, 4 problems left, 8 could not check.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/mount/extra_util.h"
#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

using extra::CatalogRw;
using extra::Cli;
using extra::Describe;
using extra::DestageIdle;
using extra::DestageSummary;

class FsckTest : public MountTest {
 protected:
  // Chain "pool": a and b equal (shared blocks, refcount 2), c different
  // with a hole, d written then partly punched and truncated; chain "other":
  // e, and f unlinked. Waits for destage, then unmounts.
  void PopulateAndUnmount() {
    ASSERT_TRUE(fs().MakeChain("pool"));
    ASSERT_TRUE(fs().MakeChain("other"));
    const auto shared = MakeData(400, 4 * kMiB);
    Write("pool", "a", 0, shared);
    Write("pool", "b", 0, shared);
    Write("pool", "c", 0, MakeData(401, 2 * kMiB));
    Write("pool", "c", 3 * kMiB, MakeData(402, 1 * kMiB));
    Write("pool", "d", 0, MakeData(403, 2 * kMiB));
    {
      Fd fd = Fd::Open(fs().Path("pool", "d"), O_RDWR);
      ASSERT_TRUE(fd.ok());
      ASSERT_TRUE(Succeeds(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100 * kKiB + 7, 300 * kKiB)));
      model_["pool/d"].Zero(100 * kKiB + 7, 300 * kKiB, true);
      ASSERT_TRUE(Succeeds(::ftruncate(fd.get(), 1 * kMiB + 123)));
      model_["pool/d"].Truncate(1 * kMiB + 123);
    }
    Write("other", "e", 0, shared);
    Write("other", "f", 0, MakeData(404, 1 * kMiB));
    ASSERT_TRUE(Succeeds(::unlink(fs().Path("other", "f").c_str())));
    model_.erase("other/f");
    ASSERT_TRUE(WaitUntil([&] {
      if (!DestageIdle(fs().mnt()) || fs().FileRows("other") != 1) return false;
      int64_t lat = 0;
      for (const auto& [p, m] : model_) lat += static_cast<int64_t>(m.NonZeroBlocks());
      return fs().TotalLatRows() == lat;
    })) << DestageSummary(fs().mnt());
    ASSERT_TRUE(fs().CatalogInvariantsHold());
    ASSERT_TRUE(fs().Unmount());
  }

  void Write(const std::string& chain, const std::string& file, uint64_t off, const std::vector<uint8_t>& data) {
    ASSERT_TRUE(WriteFile(fs().Path(chain, file), off, data, O_DIRECT));
    model_[chain + "/" + file].Write(off, data);
  }

  void VerifyAll() {
    for (const auto& [p, m] : model_) EXPECT_TRUE(FileEquals(fs().mnt() + "/" + p, m.bytes())) << p;
  }

  int64_t FileId(const std::string& chain, const std::string& file) {
    return fs().QueryInt(
        "SELECT f.file_id FROM swap_file f JOIN chain c ON c.dedup_id = f.dedup_id WHERE c.name = ?1 AND f.name = ?2",
        {chain, file});
  }

  ::testing::AssertionResult Damage(const std::string& sql) {
    CatalogRw db(fs().catalog_path());
    int changes = 0;
    auto r = db.Exec(sql, &changes);
    if (!r) return r;
    if (changes < 1) return ::testing::AssertionFailure() << "the damage changed nothing: " << sql;
    return ::testing::AssertionSuccess();
  }

  // fsck finds `kind` (exit 4), --repair repairs it (exit 1), then clean (0).
  void DetectRepairClean(const std::string& kind) {
    CommandResult r = Cli({"fsck", fs().backing()});
    EXPECT_EQ(r.status, 4) << Describe(r);
    EXPECT_NE(r.output.find(kind), std::string::npos) << "fsck does not report " << kind << ": " << Describe(r);
    r = Cli({"fsck", fs().backing(), "--json"});
    EXPECT_EQ(r.status, 4) << Describe(r);
    auto j = nlohmann::json::parse(r.output, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "fsck --json is not JSON: " << r.output;
    EXPECT_EQ(j.value("clean", true), false);
    bool listed = false;
    if (j.contains("issues"))
      for (const auto& i : j["issues"]) listed = listed || i.value("kind", "") == kind;
    EXPECT_TRUE(listed) << "fsck --json lists no issue of kind " << kind << ": " << r.output;
    r = Cli({"fsck", fs().backing(), "--repair"});
    EXPECT_EQ(r.status, 1) << Describe(r);
    EXPECT_NE(r.output.find(kind), std::string::npos) << Describe(r);
    EXPECT_NE(r.output.find("[repaired]"), std::string::npos) << Describe(r);
    r = Cli({"fsck", fs().backing()});
    EXPECT_EQ(r.status, 0) << "not clean after --repair: " << Describe(r);
  }

  std::map<std::string, FileModel> model_;
};

TEST_F(FsckTest, HealthyStoreAfterMixedWorkloadIsClean) {
  PopulateAndUnmount();
  ASSERT_FALSE(HasFatalFailure());
  CommandResult r = Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 0) << Describe(r);
  EXPECT_NE(r.output.find("clean"), std::string::npos) << Describe(r);
  r = Cli({"fsck", fs().backing(), "--json"});
  EXPECT_EQ(r.status, 0) << Describe(r);
  auto j = nlohmann::json::parse(r.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.output;
  EXPECT_EQ(j.value("clean", false), true) << r.output;
  EXPECT_TRUE(j.contains("issues") && j["issues"].empty()) << r.output;
  EXPECT_EQ(j.value("blocks_hash_checked", int64_t{-1}), fs().TotalPatRows()) << "not every stored block was verified";
  EXPECT_EQ(j.value("lat_entries", int64_t{-1}), fs().TotalLatRows());
  r = Cli({"fsck", fs().backing(), "--no-hash"});
  EXPECT_EQ(r.status, 0) << Describe(r);
  // --repair on a clean store changes nothing and says so.
  r = Cli({"fsck", fs().backing(), "--repair"});
  EXPECT_EQ(r.status, 0) << Describe(r);
  ASSERT_TRUE(fs().Mount());
  VerifyAll();
}

TEST_F(FsckTest, RefcountOffByOneIsRepaired) {
  PopulateAndUnmount();
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(Damage("UPDATE pat SET refcount = refcount + 1 WHERE pblock = (SELECT min(pblock) FROM pat)"));
  DetectRepairClean("refcount");
  ASSERT_TRUE(fs().Mount());
  VerifyAll();
  EXPECT_TRUE(fs().CatalogInvariantsHold());
}

TEST_F(FsckTest, DanglingLatEntryIsRepairedToAHole) {
  PopulateAndUnmount();
  ASSERT_FALSE(HasFatalFailure());
  const std::string c = std::to_string(FileId("pool", "c"));
  ASSERT_TRUE(Damage("UPDATE lat SET pblock = 99999999 WHERE file_id = " + c + " AND lba = 5"));
  DetectRepairClean("dangling");
  model_["pool/c"].Zero(5 * kBlock, kBlock, true);  // the repaired entry is a hole
  ASSERT_TRUE(fs().Mount());
  VerifyAll();
  EXPECT_EQ(fs().LatRows("pool", "c"), static_cast<int64_t>(model_["pool/c"].NonZeroBlocks()));
  EXPECT_TRUE(fs().CatalogInvariantsHold());
}

// A block missing from the chain hash index (schema v3: hash_index plus
// hash_log) could never be deduplicated against again: fsck rebuilds the
// index from the PAT.
TEST_F(FsckTest, BlockMissingFromTheHashIndexIsRepaired) {
  PopulateAndUnmount();
  ASSERT_FALSE(HasFatalFailure());
  // A spurious remove in the log: the index, with the log applied, lacks the block.
  ASSERT_TRUE(Damage("INSERT INTO hash_log(seq, hash_key, pblock, op) SELECT "
                     "(SELECT coalesce(max(seq), 0) + 1 FROM hash_log), hash_key, pblock, 0 FROM pat "
                     "WHERE pblock = (SELECT min(pblock) FROM pat)"));
  DetectRepairClean("index_missing");
  EXPECT_EQ(fs().QueryInt("SELECT count(*) FROM hash_index WHERE pblock = (SELECT min(pblock) FROM pat)"), 1);
  EXPECT_EQ(fs().QueryInt("SELECT count(*) FROM hash_log"), 0);
  ASSERT_TRUE(fs().Mount());
  VerifyAll();
  EXPECT_TRUE(fs().CatalogInvariantsHold());
}

// A PAT row deleted with its LAT rows (schema v3: the slot is free, as no
// PAT row has it; the index still names it): fsck drops the dangling index
// entry, and the slot is reused.
TEST_F(FsckTest, DanglingHashIndexEntryIsRepaired) {
  PopulateAndUnmount();
  ASSERT_FALSE(HasFatalFailure());
  const std::string c = std::to_string(FileId("pool", "c"));
  const int64_t slot = fs().QueryInt("SELECT min(pblock) FROM lat WHERE file_id = " + c);
  const int64_t lba = fs().QueryInt("SELECT lba FROM lat WHERE file_id = " + c + " AND pblock = " + std::to_string(slot));
  ASSERT_GE(slot, 0);
  ASSERT_LT(slot, fs().QueryInt("SELECT max(pblock) FROM pat")) << "the freed slot must lie below the high-water mark";
  ASSERT_EQ(fs().QueryInt("SELECT refcount FROM pat WHERE pblock = " + std::to_string(slot)), 1);
  ASSERT_TRUE(Damage("DELETE FROM lat WHERE pblock = " + std::to_string(slot) + "; DELETE FROM pat WHERE pblock = " +
                     std::to_string(slot) + "; UPDATE swap_file SET mapped_blocks = mapped_blocks - 1 WHERE file_id = " +
                     c));
  DetectRepairClean("index_dangling");
  EXPECT_EQ(fs().QueryInt("SELECT count(*) FROM hash_index WHERE pblock = " + std::to_string(slot)), 0);
  model_["pool/c"].Zero(static_cast<uint64_t>(lba) * kBlock, kBlock, true);
  ASSERT_TRUE(fs().Mount());
  VerifyAll();
  EXPECT_TRUE(fs().CatalogInvariantsHold());
}

TEST_F(FsckTest, CorruptStoredBlockIsDetectedAndNotRepaired) {
  PopulateAndUnmount();
  ASSERT_FALSE(HasFatalFailure());
  const std::string c = std::to_string(FileId("pool", "c"));
  const int64_t slot = fs().QueryInt("SELECT pblock FROM lat WHERE file_id = " + c + " AND lba = 7");
  ASSERT_GE(slot, 0);
  {
    Fd fd = Fd::Open(fs().store_path(), O_WRONLY);
    ASSERT_TRUE(fd.ok());
    const std::vector<uint8_t> junk(64, 0xA5);
    ASSERT_TRUE(PwriteAll(fd.get(), static_cast<uint64_t>(slot) * kBlock + 1000, junk));
  }
  CommandResult r = Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 4) << Describe(r);
  EXPECT_NE(r.output.find("hash"), std::string::npos) << Describe(r);
  r = Cli({"fsck", fs().backing(), "--repair"});
  EXPECT_EQ(r.status, 4) << "wrong data cannot be repaired: " << Describe(r);
  EXPECT_NE(r.output.find("NOT repaired"), std::string::npos) << Describe(r);
  r = Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 4) << "the corruption must still be reported: " << Describe(r);
  r = Cli({"fsck", fs().backing(), "--no-hash"});
  EXPECT_EQ(r.status, 0) << "without hashes nothing else is wrong: " << Describe(r);
}

TEST_F(FsckTest, MountedBackingIsCheckedOnlyReadOnly) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  Write("pool", "a", 0, MakeData(406, 4 * kMiB));
  ASSERT_TRUE(WaitUntil([&] { return DestageIdle(fs().mnt()) && fs().LatRows("pool", "a") == 1024; }));
  CommandResult r = Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 8) << Describe(r);
  EXPECT_NE(r.output.find("mounted"), std::string::npos) << Describe(r);
  r = Cli({"fsck", fs().backing(), "--repair"});
  EXPECT_EQ(r.status, 8) << Describe(r);
  r = Cli({"fsck", fs().backing(), "--read-only"});
  EXPECT_EQ(r.status, 0) << Describe(r);
  // The daemon is undisturbed.
  VerifyAll();
  Write("pool", "b", 0, MakeData(407, 1 * kMiB));
  VerifyAll();
}

// --read-only on a mounted backing directory while the destagers commit:
// fsck must judge one consistent state of the catalog, not report the
// daemon's ordinary progress as damage.
TEST_F(FsckTest, ReadOnlyCheckDuringWritesReportsNoFalseProblems) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  const auto base = MakeData(408, 4 * kMiB);
  Write("pool", "a", 0, base);
  ASSERT_TRUE(WaitUntil([&] { return DestageIdle(fs().mnt()); }));
  std::atomic<bool> stop{false};
  std::string writer_error;
  std::thread writer([&] {
    int fd = ::open(fs().Path("pool", "w").c_str(), O_CREAT | O_RDWR | O_DIRECT | O_CLOEXEC, 0644);
    if (fd < 0) {
      writer_error = "open: " + ErrnoName(errno);
      return;
    }
    AlignedBuf buf(256 * kKiB);
    for (uint64_t i = 0; !stop; ++i) {
      // Shared blocks (copies of a) and new ones, then punches: refcounts and
      // the free list change all the time.
      const uint64_t off = (i % 16) * 256 * kKiB;
      if (i % 3 == 2) {
        if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off), 256 * kKiB) != 0) {
          writer_error = "punch: " + ErrnoName(errno);
          break;
        }
        continue;
      }
      const auto d = i % 3 == 0 ? std::vector<uint8_t>(base.begin() + off, base.begin() + off + 256 * kKiB)
                                : MakeData(0xF5C000 + i, 256 * kKiB);
      std::memcpy(buf.data(), d.data(), d.size());
      if (::pwrite(fd, buf.data(), d.size(), static_cast<off_t>(off)) != static_cast<ssize_t>(d.size())) {
        writer_error = "pwrite: " + ErrnoName(errno);
        break;
      }
    }
    ::close(fd);
  });
  int runs = 0, unclean = 0;
  std::string first;
  for (; runs < 10; ++runs) {
    CommandResult r = Cli({"fsck", fs().backing(), "--read-only"});
    if (r.status != 0) {
      ++unclean;
      if (first.empty()) first = Describe(r);
    }
  }
  stop = true;
  writer.join();
  EXPECT_TRUE(writer_error.empty()) << writer_error;
  EXPECT_EQ(unclean, 0) << unclean << " of " << runs << " read-only checks during writes reported problems; first:\n"
                        << first;
  ASSERT_TRUE(WaitUntil([&] { return DestageIdle(fs().mnt()); }));
  EXPECT_TRUE(fs().CatalogInvariantsHold());
  CommandResult r = Cli({"fsck", fs().backing(), "--read-only"});
  EXPECT_EQ(r.status, 0) << "idle: " << Describe(r);
}

}  // namespace
}  // namespace chainswap::mounttest
