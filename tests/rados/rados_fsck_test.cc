// `chainswap fsck` of a RADOS backing directory (tools/fsck_rados.h) against
// a real single-node cluster that each test starts (tests/rados/
// ceph_cluster.h): the catalog's rados_* rows cross-checked with the pool,
// each kind of damage reported precisely, --repair fixing what it may, and a
// clear refusal when the cluster does not answer.
//
// The backing directory is formatted and mounted through the mounted tests'
// fixture (tests/mount/mount_fixture.h) and written through the mountpoint;
// the damage is made offline, in the pool through catalog/rados_store.h
// (Ref, Unref, Holders) and the `rados` CLI, and in the catalog with SQLite.
// The CLI's verdict is read from `fsck --json` (and its exit status: 0
// clean, 1 all repaired, 4 problems left, 8 could not check). A cluster that
// does not start fails the test (never a skip).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "catalog/rados_store.h"
#include "catalog/sqlite.h"
#include "tests/mount/mount_fixture.h"
#include "tests/rados/ceph_cluster.h"

namespace chainswap {
namespace {

using mounttest::FileEquals;
using mounttest::kBlock;
using mounttest::MakeData;
using mounttest::MountedFs;
using mounttest::WaitUntil;
using radostest::CephTestCluster;
using Clock = std::chrono::steady_clock;

constexpr const char* kNoCluster = "the test cluster did not start (see the script's output above)";
// A holder of another host (its ID: 16 hex digits, as chainswap makes them).
const RadosRef kOtherHost{"0123456789abcdef", 1};

std::vector<std::string> RadosFormatArgs(const std::string& pool, const std::string& conf) {
  return {"--store", "rados:" + pool, "--ceph-conf", conf};
}

std::unique_ptr<RadosStore> ConnectForChecks(const CephTestCluster& cluster) {
  RadosTarget t;
  t.pool = cluster.pool();
  t.conf_path = cluster.conf_path();
  t.timeout_seconds = 30;
  auto s = RadosStore::Connect(t);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

std::string Meta(const MountedFs& fs, const std::string& key) {
  auto rows = fs.Query("SELECT value FROM meta WHERE key = ?1", {key});
  if (rows.empty() || rows[0].empty() || !rows[0][0]) return "<absent>";
  return *rows[0][0];
}

// A block of the catalog: its pblock, its object and its hash (hex).
struct BlockInfo {
  int64_t pblock = -1;
  std::string object, hash_hex;
};

// The block that LBA `lba` of vm/`file` maps.
BlockInfo BlockAt(const MountedFs& fs, const std::string& file, int64_t lba) {
  auto rows = fs.Query(
      "SELECT l.pblock, lower(hex(r.hash)), r.private, c.rados_id FROM lat l "
      "JOIN swap_file f ON f.file_id = l.file_id JOIN chain c ON c.dedup_id = f.dedup_id "
      "JOIN rados_block r ON r.pblock = l.pblock WHERE f.name = ?1 AND l.lba = ?2",
      {file, std::to_string(lba)});
  BlockInfo b;
  if (rows.size() != 1 || rows[0].size() != 4 || !rows[0][0] || !rows[0][1] || !rows[0][3]) {
    ADD_FAILURE() << "no block at " << file << " LBA " << lba;
    return b;
  }
  b.pblock = std::stoll(*rows[0][0]);
  b.hash_hex = *rows[0][1];
  b.object = "blk." + *rows[0][3] + "." + b.hash_hex;
  EXPECT_EQ(*rows[0][2], "0") << "a private block in a test without collisions";
  return b;
}

// Runs `chainswap fsck BACKING --json ARGS...`; the report is the JSON
// object the CLI prints (from its line "{" to its line "}").
struct FsckRun {
  int status = -1;
  std::string output;
  nlohmann::json report;
  double seconds = 0;
  std::string ToString() const { return "exit " + std::to_string(status) + ", output:\n" + output; }
  // The issues of one kind.
  std::vector<nlohmann::json> Issues(const std::string& kind) const {
    std::vector<nlohmann::json> out;
    if (!report.contains("issues")) return out;
    for (const auto& i : report["issues"])
      if (i["kind"] == kind) out.push_back(i);
    return out;
  }
  // kind -> count, of every issue.
  std::map<std::string, int> Kinds() const {
    std::map<std::string, int> out;
    if (!report.contains("issues")) return out;
    for (const auto& i : report["issues"]) ++out[i["kind"].get<std::string>()];
    return out;
  }
};

FsckRun RunFsck(const std::string& backing, const std::vector<std::string>& args = {},
                std::chrono::seconds timeout = std::chrono::seconds(180)) {
  std::vector<std::string> argv = {CHAINSWAP_BIN, "fsck", backing, "--json"};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto t0 = Clock::now();
  auto r = mounttest::RunCommand(argv, timeout);
  FsckRun f;
  f.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  f.status = r.status;
  f.output = r.output;
  const size_t open = r.output.find("{\n");
  const size_t close = r.output.rfind("\n}");
  if (open != std::string::npos && close != std::string::npos && close > open)
    f.report = nlohmann::json::parse(r.output.substr(open, close + 2 - open), nullptr, /*allow_exceptions=*/false);
  return f;
}

std::string Kinds(const std::map<std::string, int>& k) {
  std::string s;
  for (const auto& [kind, n] : k) s += kind + " x" + std::to_string(n) + "; ";
  return s;
}

// Runs one batch operation and returns its outcome.
Status One(RadosStore& store, const std::function<void(RadosBatch&)>& op) {
  RadosBatch b(store);
  op(b);
  auto sts = b.Wait();
  return sts.size() == 1 ? sts[0] : Status::Error(EIO, "expected one operation");
}

size_t CountHolder(RadosStore& store, const std::string& object, const RadosRef& ref) {
  auto h = store.Holders(object);
  EXPECT_TRUE(h.ok()) << object << ": " << h.status().ToString();
  if (!h.ok()) return 0;
  return static_cast<size_t>(std::count(h->begin(), h->end(), ref));
}

// Runs SQL on the catalog (read-write; the backing directory is unmounted).
::testing::AssertionResult CatalogExec(const MountedFs& fs, const std::string& sql) {
  auto db = sql::Db::Open(fs.catalog_path(), SQLITE_OPEN_READWRITE);
  if (!db.ok()) return ::testing::AssertionFailure() << db.status().ToString();
  Status st = db->Exec(sql);
  if (!st.ok()) return ::testing::AssertionFailure() << sql << ": " << st.ToString();
  return ::testing::AssertionSuccess();
}

// ----------------------------------------------------------------- tests

// Two files sharing blocks: clean (also live, mounted, --read-only); then
// one damage of each kind, reported precisely; --repair fixes the
// repairable ones (the file that holds them reads back intact); the next
// check reports only what cannot be repaired.
TEST(RadosFsckTest, ReportsEachDamageRepairsWhatItMayAndLeavesOnlyTheLostData) {
  auto cluster = CephTestCluster::Start();
  ASSERT_NE(cluster, nullptr) << kNoCluster;
  MountedFs fs({}, RadosFormatArgs(cluster->pool(), cluster->conf_path()));
  ASSERT_TRUE(fs.formatted());
  ASSERT_TRUE(fs.Mount());
  ASSERT_TRUE(fs.MakeChain("vm"));
  // a: 8 distinct blocks; b: a's first 4, then 4 of its own. 12 blocks,
  // the first 4 mapped twice.
  const auto a = MakeData(0xa, 8 * kBlock);
  auto b = MakeData(0xb, 8 * kBlock);
  std::copy(a.begin(), a.begin() + 4 * kBlock, b.begin());
  ASSERT_TRUE(mounttest::WriteFile(fs.Path("vm", "a"), 0, a, O_DIRECT));
  ASSERT_TRUE(mounttest::WriteFile(fs.Path("vm", "b"), 0, b, O_DIRECT));
  const std::string settled =
      "SELECT (SELECT count(*) FROM pat) = 12 AND (SELECT count(*) FROM lat) = 16 AND "
      "(SELECT count(*) FROM rados_block) = 12 AND (SELECT count(*) FROM rados_intent) = 0 AND "
      "(SELECT count(*) FROM rados_unref) = 0";
  ASSERT_TRUE(WaitUntil([&] { return fs.QueryInt(settled) == 1; }))
      << "PAT " << fs.TotalPatRows() << ", LAT " << fs.TotalLatRows();

  // Live: a mounted check reads without changing anything.
  {
    auto live = RunFsck(fs.backing(), {"--read-only"});
    EXPECT_EQ(live.status, 0) << live.ToString();
    EXPECT_EQ(live.report.value("clean", false), true) << live.ToString();
  }
  ASSERT_TRUE(fs.Unmount());

  // ---- Clean.
  {
    auto f = RunFsck(fs.backing());
    ASSERT_EQ(f.status, 0) << f.ToString();
    ASSERT_TRUE(f.report.is_object()) << f.ToString();
    EXPECT_EQ(f.report["clean"], true);
    EXPECT_TRUE(f.report["issues"].empty()) << f.ToString();
    EXPECT_EQ(f.report["blocks_hash_checked"], 12) << f.ToString();
    EXPECT_EQ(f.report["lat_entries"], 16);
    EXPECT_EQ(f.report["leaked_pages"], 0);
    ASSERT_TRUE(f.report.contains("rados")) << f.ToString();
    const auto& r = f.report["rados"];
    EXPECT_EQ(r["pool"], cluster->pool());
    EXPECT_EQ(r["host"], Meta(fs, "rados_host"));
    EXPECT_EQ(r["blocks"], 12);
    EXPECT_EQ(r["objects"], 12);
    EXPECT_EQ(r["references"], 12);
    EXPECT_EQ(r["pending_intents"], 0);
    EXPECT_EQ(r["pending_unrefs"], 0);
    // The text report names the pool too.
    auto text = mounttest::RunCommand({CHAINSWAP_BIN, "fsck", fs.backing()}, std::chrono::seconds(120));
    EXPECT_EQ(text.status, 0) << text.output;
    EXPECT_NE(text.output.find("RADOS pool " + cluster->pool()), std::string::npos) << text.output;
    EXPECT_NE(text.output.find("clean"), std::string::npos) << text.output;
  }

  // ---- Damage.
  const std::string host = Meta(fs, "rados_host");
  auto ours = [&](int64_t pblock) { return RadosRef{host, pblock}; };
  const BlockInfo blk_a = BlockAt(fs, "a", 0);  // shared by a and b: loses our reference (another host keeps it)
  const BlockInfo blk_c = BlockAt(fs, "a", 4);  // gets a leaked reference, an orphan's and an intent's
  const BlockInfo blk_d = BlockAt(fs, "a", 5);  // our reference taken twice
  const BlockInfo blk_e = BlockAt(fs, "a", 6);  // its rados_block row deleted
  const BlockInfo blk_b = BlockAt(fs, "b", 4);  // our (only) reference dropped: the object goes
  const BlockInfo blk_g = BlockAt(fs, "b", 5);  // its object's bytes overwritten
  ASSERT_FALSE(HasFailure());
  auto store = ConnectForChecks(*cluster);
  ASSERT_NE(store, nullptr);

  ASSERT_TRUE(One(*store, [&](RadosBatch& x) { x.Ref(blk_a.object, kOtherHost); }).ok());
  ASSERT_TRUE(One(*store, [&](RadosBatch& x) { x.Unref(blk_a.object, ours(blk_a.pblock)); }).ok());
  ASSERT_TRUE(One(*store, [&](RadosBatch& x) { x.Unref(blk_b.object, ours(blk_b.pblock)); }).ok());
  ASSERT_EQ(store->Stat(blk_b.object).status().code(), ENOENT) << "the last put deletes the object";
  ASSERT_TRUE(One(*store, [&](RadosBatch& x) { x.Ref(blk_c.object, ours(999999)); }).ok());  // a leak
  ASSERT_TRUE(One(*store, [&](RadosBatch& x) { x.Ref(blk_c.object, ours(888888)); }).ok());  // an orphan row's
  ASSERT_TRUE(One(*store, [&](RadosBatch& x) { x.Ref(blk_c.object, ours(777777)); }).ok());  // an intent's
  ASSERT_TRUE(One(*store, [&](RadosBatch& x) { x.Ref(blk_d.object, ours(blk_d.pblock)); }).ok());
  ASSERT_EQ(CountHolder(*store, blk_d.object, ours(blk_d.pblock)), 2u);
  {
    const std::string junk = fs.dir() + "/junk.bin";
    std::ofstream(junk, std::ios::binary) << std::string(kBlock, 'Z');
    auto put = mounttest::RunCommand({"rados", "-c", cluster->conf_path(), "-p", cluster->pool(), "put",
                                      blk_g.object, junk});
    ASSERT_EQ(put.status, 0) << put.output;
  }
  ASSERT_TRUE(CatalogExec(fs, "DELETE FROM rados_block WHERE pblock = " + std::to_string(blk_e.pblock)));
  ASSERT_TRUE(CatalogExec(fs, "INSERT INTO rados_block(pblock, hash, private) VALUES (888888, X'" + blk_c.hash_hex +
                                  "', 0)"));
  ASSERT_TRUE(CatalogExec(fs, "INSERT INTO rados_intent(holder, object) VALUES (777777, '" + blk_c.object + "')"));
  ASSERT_TRUE(CatalogExec(fs, "INSERT INTO rados_unref(holder, object) VALUES (666666, '" + blk_d.object + "')"));

  // ---- Reported, each precisely; nothing changed.
  const std::map<std::string, int> all = {
      {"rados_ref_missing", 1}, {"rados_object_missing", 1}, {"rados_ref_leaked", 1}, {"rados_ref_duplicate", 1},
      {"rados_block_missing", 1}, {"rados_block_orphan", 1}, {"hash", 1}};
  {
    auto f = RunFsck(fs.backing());
    ASSERT_EQ(f.status, 4) << f.ToString();
    ASSERT_TRUE(f.report.is_object()) << f.ToString();
    EXPECT_EQ(f.Kinds(), all) << Kinds(f.Kinds()) << "\n" << f.ToString();
    auto detail = [&](const std::string& kind) {
      auto is = f.Issues(kind);
      return is.empty() ? std::string() : is[0]["detail"].get<std::string>();
    };
    auto names = [&](const std::string& kind, const std::string& what) {
      return detail(kind).find(what) != std::string::npos;
    };
    const std::string ref_a = "ref." + host + "." + std::to_string(blk_a.pblock);
    EXPECT_TRUE(names("rados_ref_missing", blk_a.object) && names("rados_ref_missing", ref_a)) << f.ToString();
    EXPECT_TRUE(names("rados_object_missing", blk_b.object)) << f.ToString();
    EXPECT_TRUE(names("rados_ref_leaked", "ref." + host + ".999999") && names("rados_ref_leaked", blk_c.object))
        << f.ToString();
    EXPECT_TRUE(names("rados_ref_duplicate", blk_d.object)) << f.ToString();
    EXPECT_TRUE(names("rados_block_missing", "block " + std::to_string(blk_e.pblock) + " ") &&
                names("rados_block_missing", blk_e.object))
        << f.ToString();
    EXPECT_TRUE(names("rados_block_orphan", "888888")) << f.ToString();
    EXPECT_TRUE(names("hash", blk_g.object)) << f.ToString();
    for (const auto& i : f.report["issues"]) EXPECT_EQ(i["repaired"], false) << i.dump();
    // The intent and the unref are pending work, not damage; the intent's
    // reference is no leak.
    EXPECT_EQ(f.report["rados"]["pending_intents"], 1) << f.ToString();
    EXPECT_EQ(f.report["rados"]["pending_unrefs"], 1) << f.ToString();
    EXPECT_EQ(f.report["rados"]["pending_resolved"], false);
    EXPECT_EQ(f.report["blocks_hash_checked"], 10) << "12 blocks, one without a row, one without an object";

    // --no-hash: the same but the hash.
    auto n = RunFsck(fs.backing(), {"--no-hash"});
    EXPECT_EQ(n.status, 4) << n.ToString();
    auto without_hash = all;
    without_hash.erase("hash");
    EXPECT_EQ(n.Kinds(), without_hash) << Kinds(n.Kinds()) << "\n" << n.ToString();
    EXPECT_EQ(n.report["blocks_hash_checked"], 0);
  }
  EXPECT_EQ(CountHolder(*store, blk_c.object, ours(999999)), 1u) << "a check without --repair changed the pool";
  EXPECT_EQ(fs.QueryInt("SELECT count(*) FROM rados_intent"), 1);

  // ---- --repair: all but the lost object and the wrong bytes.
  {
    auto f = RunFsck(fs.backing(), {"--repair"});
    EXPECT_EQ(f.status, 4) << f.ToString();
    ASSERT_TRUE(f.report.is_object()) << f.ToString();
    EXPECT_EQ(f.Kinds(), all) << Kinds(f.Kinds()) << "\n" << f.ToString();
    for (const auto& i : f.report["issues"]) {
      const bool lost = i["kind"] == "rados_object_missing" || i["kind"] == "hash";
      EXPECT_EQ(i["repaired"], !lost) << i.dump();
    }
    // The read-write open resolved the pending rows, as a mount does.
    EXPECT_EQ(f.report["rados"]["pending_intents"], 1) << f.ToString();
    EXPECT_EQ(f.report["rados"]["pending_unrefs"], 1) << f.ToString();
    EXPECT_EQ(f.report["rados"]["pending_resolved"], true) << f.ToString();
  }
  EXPECT_EQ(CountHolder(*store, blk_a.object, ours(blk_a.pblock)), 1u) << "the missing reference is taken again";
  EXPECT_EQ(CountHolder(*store, blk_a.object, kOtherHost), 1u) << "another host's reference is left alone";
  EXPECT_EQ(CountHolder(*store, blk_c.object, ours(blk_c.pblock)), 1u);
  EXPECT_EQ(CountHolder(*store, blk_c.object, ours(999999)), 0u) << "the leak is dropped";
  EXPECT_EQ(CountHolder(*store, blk_c.object, ours(888888)), 0u) << "the orphan's reference is dropped";
  EXPECT_EQ(CountHolder(*store, blk_c.object, ours(777777)), 0u) << "the intent's reference is dropped";
  EXPECT_EQ(CountHolder(*store, blk_d.object, ours(blk_d.pblock)), 1u) << "the duplicate is dropped";
  EXPECT_EQ(CountHolder(*store, blk_e.object, ours(blk_e.pblock)), 1u);
  {
    auto row = fs.Query("SELECT lower(hex(hash)), private FROM rados_block WHERE pblock = ?1",
                        {std::to_string(blk_e.pblock)});
    ASSERT_EQ(row.size(), 1u) << "the rados_block row is rebuilt";
    EXPECT_EQ(row[0][0].value_or(""), blk_e.hash_hex);
    EXPECT_EQ(row[0][1].value_or(""), "0");
  }
  EXPECT_EQ(fs.QueryInt("SELECT count(*) FROM rados_block WHERE pblock = 888888"), 0);
  EXPECT_EQ(fs.QueryInt("SELECT count(*) FROM rados_intent"), 0);
  EXPECT_EQ(fs.QueryInt("SELECT count(*) FROM rados_unref"), 0);
  EXPECT_EQ(fs.QueryInt("SELECT count(*) FROM rados_block"), 12);

  // ---- Again: only what cannot be repaired.
  {
    auto f = RunFsck(fs.backing());
    EXPECT_EQ(f.status, 4) << f.ToString();
    const std::map<std::string, int> lost = {{"rados_object_missing", 1}, {"hash", 1}};
    EXPECT_EQ(f.Kinds(), lost) << Kinds(f.Kinds()) << "\n" << f.ToString();
    EXPECT_EQ(f.report["rados"]["pending_intents"], 0);
    EXPECT_EQ(f.report["rados"]["references"], 11) << "12 blocks, one object gone";
  }
  // File a (every block repaired) reads back intact through the daemon.
  ASSERT_TRUE(fs.Mount());
  EXPECT_TRUE(FileEquals(fs.Path("vm", "a"), a, true));
  EXPECT_TRUE(fs.CatalogInvariantsHold());
  ASSERT_TRUE(fs.Unmount());
}

// A mounted backing directory checked (--read-only) while the daemon
// takes and drops references: a file overwritten round and round with new
// blocks, each twice in its chunk (deduplicated), the blocks overwritten
// freed. The daemon's work in flight (intents, unrefs, blocks newer
// than fsck's snapshot, blocks freed since) is never reported as damage.
TEST(RadosFsckTest, AMountedCheckWhileTheDaemonWritesFindsNoDamage) {
  auto cluster = CephTestCluster::Start();
  ASSERT_NE(cluster, nullptr) << kNoCluster;
  // Small buckets, destaged at once: a steady writer keeps the destager
  // busy (a bucket is sealed when full, or only once writes pause).
  MountedFs fs({"bucket_size=5M", "destage_delay=0"}, RadosFormatArgs(cluster->pool(), cluster->conf_path()));
  ASSERT_TRUE(fs.formatted());
  ASSERT_TRUE(fs.Mount());
  ASSERT_TRUE(fs.MakeChain("vm"));
  const std::string path = fs.Path("vm", "busy");
  constexpr uint64_t kFileBlocks = 512, kChunkBlocks = 16;
  std::atomic<bool> stop{false};
  std::string error;
  std::thread writer([&] {
    mounttest::Fd fd = mounttest::Fd::Open(path, O_CREAT | O_WRONLY | O_DIRECT, 0600);
    if (!fd.ok()) {
      error = "open " + path + ": " + mounttest::ErrnoName(errno);
      return;
    }
    mounttest::AlignedBuf buf(kChunkBlocks * kBlock);
    uint64_t seq = 0;
    while (!stop.load()) {
      // Chunk `seq` at a rotating offset: new blocks, each twice.
      const uint64_t first = (seq * 7 * kChunkBlocks) % kFileBlocks;
      for (uint64_t i = 0; i < kChunkBlocks; ++i)
        mounttest::FillBlock(0xb5, (seq * kChunkBlocks + i) / 2, buf.data() + i * kBlock);
      auto w = mounttest::PwriteAll(fd.get(), first * kBlock, std::span<const uint8_t>(buf.data(), buf.size()));
      if (!w) {
        error = w.message();
        return;
      }
      if (seq % 8 == 7 && ::fsync(fd.get()) != 0) {
        error = "fsync: " + mounttest::ErrnoName(errno);
        return;
      }
      ++seq;
    }
  });
  struct Join {
    std::thread& t;
    std::atomic<bool>& stop;
    ~Join() {
      stop.store(true);
      if (t.joinable()) t.join();
    }
  } join{writer, stop};
  // Checks while blocks are stored and freed under them.
  ASSERT_TRUE(WaitUntil([&] { return fs.TotalPatRows() >= 32 || !error.empty(); })) << error;
  for (int check = 0; check < 4 && error.empty(); ++check) {
    const int64_t pat_before = fs.QueryInt("SELECT max(pblock) FROM pat");
    auto f = RunFsck(fs.backing(), {"--read-only"});
    EXPECT_EQ(f.status, 0) << "check " << check << ": " << f.ToString();
    EXPECT_EQ(f.report.value("clean", false), true) << f.ToString();
    EXPECT_GT(fs.QueryInt("SELECT max(pblock) FROM pat"), pat_before)
        << "no block was stored during check " << check << " (the test proves nothing)";
  }
  stop.store(true);
  writer.join();
  ASSERT_TRUE(error.empty()) << error;
  // Settled and offline: still clean, with no pending references.
  ASSERT_TRUE(WaitUntil([&] {
    return fs.QueryInt("SELECT (SELECT count(*) FROM rados_intent) + (SELECT count(*) FROM rados_unref)") == 0;
  }));
  ASSERT_TRUE(fs.Unmount());
  auto f = RunFsck(fs.backing());
  EXPECT_EQ(f.status, 0) << f.ToString();
  EXPECT_EQ(f.report["rados"]["blocks"], f.report["rados"]["references"]) << f.ToString();
  EXPECT_LE(f.report["rados"]["blocks"].get<int64_t>(), static_cast<int64_t>(kFileBlocks / 2)) << f.ToString();
  EXPECT_EQ(f.report["rados"]["blocks"], fs.TotalPatRows());
}

// The cluster does not answer: fsck (with and without --repair) exits 8
// within its timeout, naming the pool and the conf file, and changes
// nothing. First with the OSD dead (the monitor answers: the pool's
// operations time out), then with the whole cluster stopped (the connect
// times out).
TEST(RadosFsckTest, AnUnreachableClusterIsAClearErrorWithinTheTimeout) {
  auto cluster = CephTestCluster::Start();
  ASSERT_NE(cluster, nullptr) << kNoCluster;
  MountedFs fs({}, RadosFormatArgs(cluster->pool(), cluster->conf_path()));
  ASSERT_TRUE(fs.formatted());
  ASSERT_TRUE(fs.Mount());
  ASSERT_TRUE(fs.MakeChain("vm"));
  ASSERT_TRUE(mounttest::WriteFile(fs.Path("vm", "f"), 0, MakeData(0xf, 4 * kBlock), O_DIRECT));
  ASSERT_TRUE(WaitUntil([&] { return fs.QueryInt("SELECT count(*) FROM rados_block") == 4; }));
  ASSERT_TRUE(fs.Unmount());
  {
    auto f = RunFsck(fs.backing());
    ASSERT_EQ(f.status, 0) << f.ToString();
  }
  constexpr int kTimeout = 5;
  const auto limit = kTimeout + 20.0;  // seconds: the timeout, with room for the CLI's start and a slow host
  auto expect_refusal = [&](const FsckRun& f, const char* when) {
    EXPECT_EQ(f.status, 8) << when << ": " << f.ToString();
    EXPECT_LE(f.seconds, limit) << when << ": " << f.ToString();
    EXPECT_NE(f.output.find("'" + cluster->pool() + "'"), std::string::npos) << when << ": " << f.ToString();
    EXPECT_FALSE(f.report.is_object()) << when << ": a report was printed: " << f.ToString();
    std::fprintf(stderr, "[ info ] fsck (%s) exited %d after %.1f s\n", when, f.status, f.seconds);
  };

  ASSERT_TRUE(cluster->KillOsd());
  {
    auto f = RunFsck(fs.backing(), {"--rados-timeout", std::to_string(kTimeout)});
    expect_refusal(f, "OSD dead");
    EXPECT_NE(f.output.find("stopped answering"), std::string::npos) << f.ToString();
  }
  {
    auto f = RunFsck(fs.backing(), {"--repair", "--rados-timeout", std::to_string(kTimeout)});
    expect_refusal(f, "OSD dead, --repair");
  }

  // The whole cluster stopped (its conf file and keyring stay).
  auto stop = mounttest::RunCommand({"/bin/bash", CEPH_TEST_CLUSTER_SCRIPT, "stop", cluster->dir()},
                                    std::chrono::seconds(60));
  ASSERT_EQ(stop.status, 0) << stop.output;
  for (const std::vector<std::string>& args : {std::vector<std::string>{}, std::vector<std::string>{"--repair"}}) {
    std::vector<std::string> a = args;
    a.insert(a.end(), {"--rados-timeout", std::to_string(kTimeout)});
    auto f = RunFsck(fs.backing(), a);
    expect_refusal(f, args.empty() ? "cluster stopped" : "cluster stopped, --repair");
    EXPECT_NE(f.output.find(cluster->conf_path()), std::string::npos) << f.ToString();
    EXPECT_NE(f.output.find("nothing was checked"), std::string::npos) << f.ToString();
  }
  EXPECT_EQ(fs.QueryInt("SELECT count(*) FROM rados_block"), 4) << "the catalog changed";
}

}  // namespace
}  // namespace chainswap
