// Migration of a swap file between two hosts on one RADOS pool (issue #15,
// docs/RADOS.md "Migration"): `chainswap migrate SRC DST` through two mounted
// daemons ("hosts", each with its own backing directory) on a single-node
// cluster the test starts. What the issue asks to show: the destination reads
// the same bytes, the pool's object count is unchanged, and the migration
// itself reads no data from RADOS (the OSD's read counters, from its admin
// socket, do not move). Also: import refuses a chain of another name, and a
// manifest whose objects are gone.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "catalog/rados_store.h"
#include "tests/mount/mount_fixture.h"
#include "tests/rados/ceph_cluster.h"

namespace chainswap {
namespace {

using mounttest::FileEquals;
using mounttest::kBlock;
using mounttest::kMiB;
using mounttest::MakeData;
using mounttest::MountedFs;
using mounttest::WaitUntil;
using mounttest::WriteFile;
using radostest::CephTestCluster;

std::vector<std::string> RadosFormatArgs(const CephTestCluster& c) {
  return {"--store", "rados:" + c.pool(), "--ceph-conf", c.conf_path()};
}

std::unique_ptr<RadosStore> Connect(const CephTestCluster& c) {
  RadosTarget t;
  t.pool = c.pool();
  t.conf_path = c.conf_path();
  auto s = RadosStore::Connect(t);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

int64_t BlockObjects(RadosStore& store) {
  auto names = store.List("blk.");
  EXPECT_TRUE(names.ok()) << names.status().ToString();
  return names.ok() ? static_cast<int64_t>(names->size()) : -1;
}

// The OSD's read figures (ops that read, bytes they returned), from its
// admin socket's perf counters.
struct OsdReads {
  int64_t ops = -1, bytes = -1;
};
OsdReads ReadCounters(const CephTestCluster& c) {
  auto r = mounttest::RunCommand({"ceph", "--admin-daemon", c.dir() + "/run/osd.0.asok", "perf", "dump"});
  OsdReads out;
  if (r.status != 0) {
    ADD_FAILURE() << "perf dump: " << r.output;
    return out;
  }
  try {
    const auto j = nlohmann::json::parse(r.output);
    out.ops = j.at("osd").at("op_r").get<int64_t>();
    out.bytes = j.at("osd").at("op_r_out_bytes").get<int64_t>();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "perf dump is not the JSON expected: " << e.what();
  }
  return out;
}

// Settled: `blocks` PAT rows and nothing queued.
bool Settled(const MountedFs& fs, int64_t blocks) {
  return fs.QueryInt("SELECT count(*) FROM pat") == blocks && fs.QueryInt("SELECT count(*) FROM rados_intent") == 0 &&
         fs.QueryInt("SELECT count(*) FROM rados_unref") == 0;
}

class RadosMigrateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = CephTestCluster::Start();
    ASSERT_NE(cluster_, nullptr) << "the test cluster did not start";
    a_ = std::make_unique<MountedFs>(std::vector<std::string>{"destage_delay=0"}, RadosFormatArgs(*cluster_));
    b_ = std::make_unique<MountedFs>(std::vector<std::string>{"destage_delay=0"}, RadosFormatArgs(*cluster_));
    ASSERT_TRUE(a_->formatted() && b_->formatted());
    ASSERT_TRUE(a_->Mount());
    ASSERT_TRUE(b_->Mount());
    ASSERT_TRUE(a_->MakeChain("vm"));
    ASSERT_TRUE(b_->MakeChain("vm"));
    store_ = Connect(*cluster_);
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override {
    if (HasFailure()) {
      if (a_) std::fprintf(stderr, "host A's log:\n%s\n", a_->DaemonLog().c_str());
      if (b_) std::fprintf(stderr, "host B's log:\n%s\n", b_->DaemonLog().c_str());
    }
  }
  std::unique_ptr<CephTestCluster> cluster_;
  std::unique_ptr<MountedFs> a_, b_;
  std::unique_ptr<RadosStore> store_;
};

TEST_F(RadosMigrateTest, AFileMovesByteExactWithNoBlockCopiedOrRead) {
  // 256 MiB as the issue asks; sanitizer builds (several times slower) move
  // 64 MiB, the same code path.
  const uint64_t bytes = std::string(CHAINSWAP_SANITIZE_MODE).empty() ? 256 * kMiB : 64 * kMiB;
  const int64_t blocks = static_cast<int64_t>(bytes / kBlock);
  const auto data = MakeData(42, bytes);
  ASSERT_TRUE(WriteFile(a_->Path("vm", "guest.swap"), 0, data));
  ASSERT_TRUE(WaitUntil([&] { return Settled(*a_, blocks); })) << "host A did not destage";
  ASSERT_EQ(BlockObjects(*store_), blocks);
  // Permission bits move with the file (import creates it 0600).
  ASSERT_EQ(::chmod(a_->Path("vm", "guest.swap").c_str(), 0640), 0) << std::strerror(errno);

  const OsdReads before = ReadCounters(*cluster_);
  auto r = mounttest::RunCommand(
      {CHAINSWAP_BIN, "migrate", a_->Path("vm", "guest.swap"), b_->Path("vm", "guest.swap")}, std::chrono::seconds(240));
  ASSERT_EQ(r.status, 0) << r.output;
  const OsdReads after = ReadCounters(*cluster_);
  // The migration's own work: export, references taken, the source unlinked.
  EXPECT_EQ(after.bytes, before.bytes) << "the migration read data from RADOS (" << (after.ops - before.ops)
                                        << " read ops)";

  // The destination holds every block, the source none, and the pool is
  // as it was: no object created, none deleted.
  EXPECT_TRUE(WaitUntil([&] { return Settled(*b_, blocks) && Settled(*a_, 0); }))
      << "B: " << b_->QueryInt("SELECT count(*) FROM pat") << " blocks, A: " << a_->QueryInt("SELECT count(*) FROM pat");
  EXPECT_EQ(BlockObjects(*store_), blocks);
  EXPECT_FALSE(::access(a_->Path("vm", "guest.swap").c_str(), F_OK) == 0) << "the source is still there";
  struct stat st {};
  ASSERT_EQ(::stat(b_->Path("vm", "guest.swap").c_str(), &st), 0) << std::strerror(errno);
  EXPECT_EQ(st.st_mode & 07777, 0640u) << "the destination did not take the source's mode";
  EXPECT_TRUE(b_->CatalogInvariantsHold());
  // Every object lists B's holder for its block, and nothing of A.
  const std::string host_b = *b_->Query("SELECT value FROM meta WHERE key = 'rados_host'")[0][0];
  const auto rows = b_->Query(
      "SELECT r.pblock, c.rados_id, lower(hex(r.hash)) FROM rados_block r JOIN pat p ON p.pblock = r.pblock "
      "JOIN chain c ON c.dedup_id = p.dedup_id ORDER BY r.pblock LIMIT 64");
  ASSERT_EQ(rows.size(), 64u);
  for (const auto& row : rows) {
    const std::string object = "blk." + *row[1] + "." + *row[2];
    auto holders = store_->Holders(object);
    ASSERT_TRUE(holders.ok()) << object << ": " << holders.status().ToString();
    ASSERT_EQ(holders->size(), 1u) << object;
    EXPECT_EQ((*holders)[0].host, host_b) << object;
    EXPECT_EQ((*holders)[0].local, std::stoll(*row[0])) << object;
  }
  // Byte-exact on the destination, also once its daemon serves every block
  // from the pool after a remount.
  EXPECT_TRUE(FileEquals(b_->Path("vm", "guest.swap"), data));
  ASSERT_TRUE(b_->Remount());
  ASSERT_EQ(::stat(b_->Path("vm", "guest.swap").c_str(), &st), 0) << std::strerror(errno);
  EXPECT_EQ(st.st_mode & 07777, 0640u) << "the imported mode is not in the catalog";
  const OsdReads before_read = ReadCounters(*cluster_);
  EXPECT_TRUE(FileEquals(b_->Path("vm", "guest.swap"), data));
  // The counter the migration left alone does count reads of block data:
  // this read of the whole file moved it by at least the file's bytes.
  EXPECT_GE(ReadCounters(*cluster_).bytes - before_read.bytes, static_cast<int64_t>(bytes));
}

TEST_F(RadosMigrateTest, ImportRefusesAnotherChainAndObjectsThatAreGone) {
  const auto data = MakeData(7, 4 * kMiB);
  ASSERT_TRUE(WriteFile(a_->Path("vm", "f"), 0, data));
  ASSERT_TRUE(WaitUntil([&] { return Settled(*a_, 1024); }));
  const std::string manifest = a_->dir() + "/f.manifest";
  auto ex = mounttest::RunCommand({CHAINSWAP_BIN, "export", a_->Path("vm", "f"), manifest});
  ASSERT_EQ(ex.status, 0) << ex.output;

  // Into a chain of another name: another cluster-wide chain (EXDEV), and
  // the destination file the import created is gone again.
  ASSERT_TRUE(b_->MakeChain("other"));
  auto wrong = mounttest::RunCommand({CHAINSWAP_BIN, "import", manifest, b_->Path("other", "f")});
  EXPECT_EQ(wrong.status, 1) << wrong.output;
  EXPECT_NE(wrong.output.find("another chain"), std::string::npos) << wrong.output;
  EXPECT_NE(::access(b_->Path("other", "f").c_str(), F_OK), 0);

  // The source drops its blocks: the manifest's objects are gone (ENOENT),
  // and B is left as it was: no row, no reference, no queued put.
  ASSERT_EQ(::unlink(a_->Path("vm", "f").c_str()), 0);
  ASSERT_TRUE(WaitUntil([&] { return Settled(*a_, 0) && BlockObjects(*store_) == 0; }));
  auto gone = mounttest::RunCommand({CHAINSWAP_BIN, "import", manifest, b_->Path("vm", "f")});
  EXPECT_EQ(gone.status, 1) << gone.output;
  EXPECT_NE(gone.output.find("gone from the pool"), std::string::npos) << gone.output;
  EXPECT_TRUE(WaitUntil([&] { return Settled(*b_, 0); }));
  EXPECT_EQ(BlockObjects(*store_), 0);

  // A control xattr of another name is refused (EOPNOTSUPP), never taken
  // as a command.
  auto fd = ::open(b_->Path("vm", "g").c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  const std::string path = manifest;
  EXPECT_EQ(::setxattr(b_->Path("vm", "g").c_str(), "user.chainswap.other", path.data(), path.size(), 0), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
}

}  // namespace
}  // namespace chainswap
