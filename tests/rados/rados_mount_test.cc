// The RADOS content-store mode (SPEC §8, issue #15, docs/RADOS.md) mounted
// for real: `chainswap format BACKING --store rados:POOL --ceph-conf CONF`,
// `chainswapfs BACKING MNT -f`, against a single-node Ceph cluster each test
// starts itself (tests/rados/ceph_cluster.h). Two backing directories
// formatted onto one pool stand for two hosts.
//
// Like the mounted tests (tests/mount/), these drive the filesystem through
// syscalls on the mountpoint and read the catalog read-only through its
// documented tables (meta keys store, rados_pool, rados_conf, rados_user,
// rados_host; rados_block, rados_intent, rados_unref; chain.rados_id). The
// pool is inspected through catalog/rados_store.h (List, Stat, Holders): a
// block of chain ID with hash H is the object blk.ID.H (private ones:
// blk.ID.H.HOST.PBLOCK), and the one reference a host holds on it for its
// PAT row `pblock` is held by ref.HOST.PBLOCK.
//
// Background work is waited for (WaitUntil) until the catalog reaches the
// state the test predicts exactly, then asserted on; no sleep is an
// assertion. A cluster that does not start fails the test (never a skip).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "catalog/rados_store.h"
#include "tests/mount/extra_util.h"
#include "tests/mount/mount_fixture.h"
#include "tests/rados/ceph_cluster.h"

namespace chainswap {
namespace {

using mounttest::AlignedBuf;
using mounttest::FileEquals;
using mounttest::FillBlock;
using mounttest::kBlock;
using mounttest::kKiB;
using mounttest::kMiB;
using mounttest::kSettleTimeout;
using mounttest::MakeData;
using mounttest::MountedFs;
using mounttest::WaitUntil;
using mounttest::extra::Daemon;
using mounttest::extra::RawFd;
using radostest::CephTestCluster;
using Clock = std::chrono::steady_clock;

constexpr const char* kNoCluster = "the test cluster did not start (see the script's output above)";

// ---------------------------------------------------------------- helpers

// `chainswap format` arguments that put a backing directory on `pool`.
std::vector<std::string> RadosFormatArgs(const std::string& pool, const std::string& conf) {
  return {"--store", "rados:" + pool, "--ceph-conf", conf};
}

// A connection of the test itself, to inspect the pool.
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

// chain.rados_id of chain `name`.
std::string ChainRadosId(const MountedFs& fs, const std::string& name) {
  auto rows = fs.Query("SELECT rados_id FROM chain WHERE name = ?1", {name});
  if (rows.empty() || rows[0].empty() || !rows[0][0]) return "<absent>";
  return *rows[0][0];
}

bool IsHex(const std::string& s, size_t digits) {
  return s.size() == digits && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// Whether the catalog has the RADOS tables (checked once, so that a missing
// table is one clear failure instead of one per poll of a WaitUntil).
::testing::AssertionResult HasRadosTables(const MountedFs& fs) {
  const int64_t n = fs.QueryInt(
      "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
      "('rados_block', 'rados_intent', 'rados_unref')");
  if (n != 3) return ::testing::AssertionFailure() << fs.catalog_path() << " has " << n << " of the 3 RADOS tables";
  return ::testing::AssertionSuccess();
}

// The catalog's counts that a settled RADOS backing directory predicts.
struct Counts {
  int64_t pat = -1, lat = -1, blocks = -1, intent = -1, unref = -1, files = -1;
  std::string ToString() const {
    std::ostringstream o;
    o << "pat " << pat << ", lat " << lat << ", rados_block " << blocks << ", rados_intent " << intent
      << ", rados_unref " << unref << ", swap_file " << files;
    return o.str();
  }
};

Counts CountsOf(const MountedFs& fs) {
  Counts c;
  auto rows = fs.Query(
      "SELECT (SELECT count(*) FROM pat), (SELECT count(*) FROM lat), (SELECT count(*) FROM rados_block), "
      "(SELECT count(*) FROM rados_intent), (SELECT count(*) FROM rados_unref), (SELECT count(*) FROM swap_file)");
  if (rows.empty() || rows[0].size() != 6) return c;
  auto v = [&](int i) { return rows[0][i] ? std::stoll(*rows[0][i]) : -1; };
  c.pat = v(0), c.lat = v(1), c.blocks = v(2), c.intent = v(3), c.unref = v(4), c.files = v(5);
  return c;
}

// Settled with `blocks` blocks, each mapped once (no sharing inside a host
// in these tests), in `files` swap files.
bool SettledAt(const Counts& c, int64_t blocks, int64_t files) {
  return c.pat == blocks && c.lat == blocks && c.blocks == blocks && c.intent == 0 && c.unref == 0 &&
         c.files == files;
}

// One rados_block row with the name of its object.
struct BlockRow {
  int64_t pblock = 0;
  std::string object;
  bool priv = false;
};

std::vector<BlockRow> BlockRows(const MountedFs& fs, const std::string& host) {
  std::vector<BlockRow> out;
  for (const auto& r : fs.Query(
           "SELECT r.pblock, c.rados_id, lower(hex(r.hash)), r.private FROM rados_block r "
           "JOIN pat p ON p.pblock = r.pblock JOIN chain c ON c.dedup_id = p.dedup_id ORDER BY r.pblock")) {
    BlockRow b;
    b.pblock = std::stoll(r[0].value_or("-1"));
    b.priv = r[3].value_or("0") != "0";
    b.object = "blk." + r[1].value_or("<no rados_id>") + "." + r[2].value_or("<no hash>");
    if (b.priv) b.object += "." + host + "." + std::to_string(b.pblock);
    out.push_back(std::move(b));
  }
  return out;
}

// Runs f(i) for i in [0, n) on 4 threads (RadosStore is thread-safe).
template <class F>
void ParallelFor(size_t n, F f) {
  constexpr size_t kThreads = 4;
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = t; i < n; i += kThreads) f(i);
    });
  for (auto& th : threads) th.join();
}

std::string RefName(const RadosRef& r) { return "ref." + r.host + "." + std::to_string(r.local); }

std::string RefNames(std::vector<RadosRef> refs) {
  std::sort(refs.begin(), refs.end(), [](const RadosRef& a, const RadosRef& b) {
    return std::tie(a.host, a.local) < std::tie(b.host, b.local);
  });
  std::string s = "{";
  for (size_t i = 0; i < refs.size(); ++i) s += (i ? ", " : "") + RefName(refs[i]);
  return s + "}";
}

// The references of one host in the pool are exactly its catalog's: every
// rados_block row's object exists and lists ref.HOST.PBLOCK exactly once,
// and the holders of HOST over every blk. object number the PAT rows (no
// leaked and no double-counted reference). With `only_host`, no other host
// holds anything, so the pool's blk. objects number the PAT rows too.
::testing::AssertionResult ReferencesAreExact(RadosStore& store, const MountedFs& fs, bool only_host) {
  const std::string host = Meta(fs, "rados_host");
  const int64_t pat = fs.QueryInt("SELECT count(*) FROM pat");
  const auto rows = BlockRows(fs, host);
  std::string problems;
  std::mutex mu;
  auto note = [&](const std::string& what) {
    std::lock_guard<std::mutex> lock(mu);
    if (std::count(problems.begin(), problems.end(), '\n') < 20) problems += "  " + what + "\n";
  };
  if (static_cast<int64_t>(rows.size()) != pat)
    note(std::to_string(rows.size()) + " rados_block rows (joined to pat and chain) for " + std::to_string(pat) +
         " PAT rows");
  ParallelFor(rows.size(), [&](size_t i) {
    const BlockRow& b = rows[i];
    auto holders = store.Holders(b.object);
    if (!holders.ok()) {
      note("pblock " + std::to_string(b.pblock) + ": Holders(" + b.object + "): " + holders.status().ToString());
      return;
    }
    const RadosRef mine{host, b.pblock};
    const auto n = std::count(holders->begin(), holders->end(), mine);
    if (n != 1)
      note("pblock " + std::to_string(b.pblock) + ": " + b.object + " lists " + RefName(mine) + " " +
           std::to_string(n) + " times; holders " + RefNames(*holders));
  });
  auto listed = store.List("blk.");
  if (!listed.ok()) return ::testing::AssertionFailure() << "List(blk.): " << listed.status().ToString();
  std::atomic<int64_t> held{0};
  ParallelFor(listed->size(), [&](size_t i) {
    auto holders = store.Holders((*listed)[i]);
    if (!holders.ok()) {
      note("Holders(" + (*listed)[i] + "): " + holders.status().ToString());
      return;
    }
    int64_t n = 0;
    for (const RadosRef& r : *holders) n += r.host == host;
    held += n;
    if (only_host && n == 0) note((*listed)[i] + " holds no reference of host " + host + ": " + RefNames(*holders));
  });
  if (held.load() != pat)
    note("host " + host + " holds " + std::to_string(held.load()) + " references over " +
         std::to_string(listed->size()) + " blk. objects, its catalog has " + std::to_string(pat) + " PAT rows");
  if (only_host && static_cast<int64_t>(listed->size()) != pat)
    note("the pool holds " + std::to_string(listed->size()) + " blk. objects, the only host's catalog " +
         std::to_string(pat) + " PAT rows");
  if (!problems.empty())
    return ::testing::AssertionFailure() << "references in RADOS differ from the catalog of " << fs.backing()
                                         << ":\n" << problems;
  return ::testing::AssertionSuccess();
}

void PrintLogsOnFailure(const std::vector<const MountedFs*>& all, const CephTestCluster* cluster) {
  if (!::testing::Test::HasFailure()) return;
  for (const MountedFs* fs : all)
    if (fs) std::fprintf(stderr, "---- daemon log (%s) ----\n%s\n", fs->dir().c_str(),
                         Daemon::Tail(fs->DaemonLog(), 20000).c_str());
  if (cluster) std::fprintf(stderr, "---- cluster logs ----\n%s\n", cluster->LogTails(20).c_str());
}

// Prints the daemons' and the cluster's logs when the test has failed, on
// leaving its scope.
struct FailureLogs {
  std::vector<const MountedFs*> all;
  const CephTestCluster* cluster;
  ~FailureLogs() { PrintLogsOnFailure(all, cluster); }
};

// ------------------------------------------------------------- test 1

// Two hosts (two backing directories on one pool) write the same 64 MiB into
// chain "vm": one object per block with one reference of each host; both
// read back, also after remounts (from RADOS); the first unlink leaves the
// objects with the other host's references, the last one frees them all.
TEST(RadosMountTest, TwoHostsStoreTheSameBlocksOnceAndTheLastUnlinkFreesThem) {
  auto cluster = CephTestCluster::Start();
  ASSERT_NE(cluster, nullptr) << kNoCluster;
  const auto format = RadosFormatArgs(cluster->pool(), cluster->conf_path());
  MountedFs a({}, format), b({}, format);
  a.set_mount_timeout(std::chrono::seconds(60));
  b.set_mount_timeout(std::chrono::seconds(60));
  const FailureLogs logs{{&a, &b}, cluster.get()};
  ASSERT_TRUE(a.formatted());
  ASSERT_TRUE(b.formatted());

  // What format recorded.
  for (const MountedFs* fs : {&a, &b}) {
    SCOPED_TRACE(fs->backing());
    EXPECT_EQ(Meta(*fs, "store"), "rados");
    EXPECT_EQ(Meta(*fs, "rados_pool"), cluster->pool());
    EXPECT_EQ(Meta(*fs, "rados_conf"), cluster->conf_path());
    EXPECT_EQ(Meta(*fs, "rados_user"), "admin");
    EXPECT_TRUE(IsHex(Meta(*fs, "rados_host"), 16)) << Meta(*fs, "rados_host");
    ASSERT_TRUE(HasRadosTables(*fs));
  }
  const std::string host_a = Meta(a, "rados_host"), host_b = Meta(b, "rados_host");
  ASSERT_NE(host_a, host_b) << "two backing directories got the same host ID";

  ASSERT_TRUE(a.Mount());
  ASSERT_TRUE(b.Mount());
  ASSERT_TRUE(a.MakeChain("vm"));
  ASSERT_TRUE(b.MakeChain("vm"));
  const std::string id_a = ChainRadosId(a, "vm"), id_b = ChainRadosId(b, "vm");
  EXPECT_TRUE(IsHex(id_a, 32)) << id_a;
  ASSERT_EQ(id_a, id_b) << "both hosts' chain vm must be the pool's chain.vm";

  constexpr size_t kBytes = 64 * kMiB;
  constexpr int64_t kBlocks = kBytes / kBlock;  // 16384, all distinct
  const auto data = MakeData(0x2a05, kBytes);
  {
    ::testing::AssertionResult wa = ::testing::AssertionSuccess(), wb = ::testing::AssertionSuccess();
    std::thread ta([&] { wa = mounttest::WriteFile(a.Path("vm", "a"), 0, data, O_DIRECT); });
    std::thread tb([&] { wb = mounttest::WriteFile(b.Path("vm", "b"), 0, data, O_DIRECT); });
    ta.join();
    tb.join();
    ASSERT_TRUE(wa);
    ASSERT_TRUE(wb);
  }
  // Acknowledged data reads back whether destaged or not.
  EXPECT_TRUE(FileEquals(a.Path("vm", "a"), data, true));
  EXPECT_TRUE(FileEquals(b.Path("vm", "b"), data, true));

  for (MountedFs* fs : {&a, &b}) {
    ASSERT_TRUE(WaitUntil([&] { return SettledAt(CountsOf(*fs), kBlocks, 1); }))
        << fs->backing() << ": " << CountsOf(*fs).ToString() << "; expected " << kBlocks
        << " PAT, LAT and rados_block rows, no intent or unref row, 1 file";
    EXPECT_EQ(fs->QueryInt("SELECT count(*) FROM rados_block WHERE private != 0"), 0)
        << "distinct test data met a hash collision?";
    EXPECT_TRUE(fs->CatalogInvariantsHold());
    // The blocks live in the pool, not in a local content store.
    EXPECT_EQ(fs->StoreAllocated(), 0u) << fs->store_path();
  }

  auto store = ConnectForChecks(*cluster);
  ASSERT_NE(store, nullptr);
  const std::string prefix = "blk." + id_a + ".";
  {
    auto listed = store->List("blk.");
    ASSERT_TRUE(listed.ok()) << listed.status().ToString();
    ASSERT_EQ(static_cast<int64_t>(listed->size()), kBlocks) << "the same 64 MiB from two hosts is one object per block";
    EXPECT_TRUE(std::all_of(listed->begin(), listed->end(), [&](const std::string& o) { return o.starts_with(prefix); }))
        << "every block object belongs to chain.vm (" << prefix << ")";
    std::atomic<uint64_t> total{0};
    std::atomic<int64_t> bad{0};
    std::string first_bad;
    std::mutex mu;
    ParallelFor(listed->size(), [&](size_t i) {
      auto size = store->Stat((*listed)[i]);
      if (size.ok()) total += *size;
      if (!size.ok() || *size != kBlock) {
        std::lock_guard<std::mutex> lock(mu);
        if (bad++ == 0)
          first_bad = (*listed)[i] + ": " + (size.ok() ? std::to_string(*size) + " bytes" : size.status().ToString());
      }
    });
    EXPECT_EQ(total.load(), kBytes);
    EXPECT_EQ(bad.load(), 0) << "objects that are not one raw 4 KiB block (compression is off); first: " << first_bad;
    auto chains = store->List("chain.");
    ASSERT_TRUE(chains.ok());
    EXPECT_EQ(*chains, std::vector<std::string>{"chain.vm"});
  }

  // 64 sampled LBAs: the two hosts' rows name the same object, which lists
  // exactly ref.A.pblock_a and ref.B.pblock_b.
  struct Sample {
    int64_t lba, pblock_a, pblock_b;
    std::string object;
  };
  const std::string kSampleSql =
      "SELECT l.lba, l.pblock, lower(hex(r.hash)) FROM lat l JOIN swap_file f ON f.file_id = l.file_id "
      "JOIN rados_block r ON r.pblock = l.pblock WHERE f.name = ?1 AND l.lba % 256 = 77 ORDER BY l.lba";
  std::vector<Sample> samples;
  {
    auto ra = a.Query(kSampleSql, {"a"});
    auto rb = b.Query(kSampleSql, {"b"});
    ASSERT_EQ(ra.size(), 64u);
    ASSERT_EQ(rb.size(), 64u);
    for (size_t i = 0; i < ra.size(); ++i) {
      ASSERT_EQ(ra[i][0], rb[i][0]);
      ASSERT_EQ(ra[i][2], rb[i][2]) << "LBA " << *ra[i][0] << ": the same bytes hash differently on the two hosts";
      samples.push_back({std::stoll(*ra[i][0]), std::stoll(*ra[i][1]), std::stoll(*rb[i][1]), prefix + *ra[i][2]});
    }
  }
  auto check_holders = [&](bool with_a) {
    for (const Sample& s : samples) {
      auto holders = store->Holders(s.object);
      ASSERT_TRUE(holders.ok()) << "LBA " << s.lba << ", " << s.object << ": " << holders.status().ToString();
      std::vector<RadosRef> want = {RadosRef{host_b, s.pblock_b}};
      if (with_a) want.push_back(RadosRef{host_a, s.pblock_a});
      EXPECT_EQ(RefNames(*holders), RefNames(want)) << "LBA " << s.lba << ", " << s.object;
    }
  };
  check_holders(true);
  ASSERT_FALSE(HasFatalFailure());

  // A remount: the journals are empty, so every block comes from RADOS.
  ASSERT_TRUE(a.Remount());
  ASSERT_TRUE(b.Remount());
  EXPECT_TRUE(mounttest::extra::DestageIdle(a.mnt())) << mounttest::extra::DestageSummary(a.mnt());
  EXPECT_TRUE(mounttest::extra::DestageIdle(b.mnt())) << mounttest::extra::DestageSummary(b.mnt());
  EXPECT_TRUE(FileEquals(a.Path("vm", "a"), data, true));
  EXPECT_TRUE(FileEquals(b.Path("vm", "b"), data, true));

  // Host A lets go: the objects stay, held by B alone.
  ASSERT_EQ(::unlink(a.Path("vm", "a").c_str()), 0) << mounttest::ErrnoName(errno);
  ASSERT_TRUE(WaitUntil([&] { return SettledAt(CountsOf(a), 0, 0); })) << "A: " << CountsOf(a).ToString();
  {
    auto listed = store->List("blk.");
    ASSERT_TRUE(listed.ok());
    EXPECT_EQ(static_cast<int64_t>(listed->size()), kBlocks) << "B still references every block";
  }
  check_holders(false);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_TRUE(FileEquals(b.Path("vm", "b"), data, true));
  EXPECT_TRUE(SettledAt(CountsOf(b), kBlocks, 1)) << "B: " << CountsOf(b).ToString();

  // Host B lets go: nothing is left in the pool but the chain record.
  ASSERT_EQ(::unlink(b.Path("vm", "b").c_str()), 0) << mounttest::ErrnoName(errno);
  ASSERT_TRUE(WaitUntil([&] { return SettledAt(CountsOf(b), 0, 0); })) << "B: " << CountsOf(b).ToString();
  {
    // rados_unref rows go only once their puts are acknowledged.
    auto listed = store->List("blk.");
    ASSERT_TRUE(listed.ok());
    EXPECT_EQ(listed->size(), 0u) << "first left: " << (listed->empty() ? "" : listed->front());
  }
  EXPECT_TRUE(a.CatalogInvariantsHold());
  EXPECT_TRUE(b.CatalogInvariantsHold());
}

// ------------------------------------------------------------- test 2

// A stream of O_DIRECT writes into a ring of `slots` chunks of kChunk bytes
// each (write k goes to slot k % slots; its blocks are stream blocks
// k * kChunkBlocks + j, all distinct), with an fsync every kFsyncEvery
// writes. A writer thread runs it until told to stop or until the mount
// fails under it (the daemon was killed).
constexpr uint64_t kChunk = 128 * kKiB;
constexpr uint64_t kChunkBlocks = kChunk / kBlock;
constexpr uint64_t kFsyncEvery = 8;  // 1 MiB

struct Stream {
  uint64_t seed;
  uint64_t slots;

  void Fill(uint64_t k, uint8_t* out) const {
    for (uint64_t j = 0; j < kChunkBlocks; ++j) FillBlock(seed, k * kChunkBlocks + j, out + j * kBlock);
  }
  // The file after writes [0, n).
  std::vector<uint8_t> State(uint64_t n) const {
    std::vector<uint8_t> v(std::min(n, slots) * kChunk);
    for (uint64_t s = 0; s < std::min(n, slots); ++s) {
      const uint64_t k = s + slots * ((n - 1 - s) / slots);  // the last write to slot s
      Fill(k, v.data() + s * kChunk);
    }
    return v;
  }
  // Index of the last write to `slot` among [0, n) (n > slot).
  uint64_t LastWrite(uint64_t n, uint64_t slot) const { return slot + slots * ((n - 1 - slot) / slots); }
};

class StreamWriter {
 public:
  // Writes k = first, first + 1, ... to `path` (opened O_DIRECT); pauses
  // `pause` after each write.
  StreamWriter(const Stream& s, std::string path, uint64_t first, std::chrono::milliseconds pause = {})
      : s_(s), acked_(first), synced_(first) {
    fd_ = RawFd::Open(path, O_CREAT | O_RDWR | O_DIRECT);
    if (!fd_.ok()) {
      error_ = "open " + path + ": " + mounttest::ErrnoName(errno);
      return;
    }
    thread_ = std::thread([this, first, pause] { Run(first, pause); });
  }
  ~StreamWriter() { Join(); }
  // Asks the writer to stop after its current write, with a last fsync.
  void Stop() { stop_ = true; }
  void Join() {
    if (thread_.joinable()) thread_.join();
    fd_.Reset();
  }
  // Writes acknowledged, and the writes covered by a successful fsync.
  uint64_t acked() const { return acked_; }
  uint64_t synced() const { return synced_; }
  bool running() const { return !finished_; }
  // After Join: whether a write was in flight when the mount died (write
  // acked() is then in doubt: in the file or not), and an unexpected error.
  bool in_doubt() const { return in_doubt_; }
  // Set before killing the daemon: failures after it are the kill's.
  void ExpectFailure() { failure_expected_ = true; }
  const std::string& error() const { return error_; }

 private:
  void Run(uint64_t k, std::chrono::milliseconds pause) {
    AlignedBuf buf(kChunk);
    for (; !stop_; ++k) {
      s_.Fill(k, buf.data());
      const ssize_t n = ::pwrite(fd_.get(), buf.data(), kChunk, static_cast<off_t>((k % s_.slots) * kChunk));
      if (n != static_cast<ssize_t>(kChunk)) {
        const int e = errno;
        in_doubt_ = true;
        if (!failure_expected_)
          error_ = "write " + std::to_string(k) + ": " +
                   (n < 0 ? mounttest::ErrnoName(e) : "short write of " + std::to_string(n) + " bytes");
        break;
      }
      acked_ = k + 1;
      if ((k + 1) % kFsyncEvery == 0) {
        if (::fsync(fd_.get()) != 0) {
          if (!failure_expected_) error_ = "fsync after write " + std::to_string(k) + ": " + mounttest::ErrnoName(errno);
          break;
        }
        synced_ = k + 1;
      }
      if (pause.count() > 0) std::this_thread::sleep_for(pause);
    }
    if (stop_ && !in_doubt_ && error_.empty()) {
      if (::fsync(fd_.get()) == 0) synced_ = acked_.load();
      else if (!failure_expected_) error_ = "last fsync: " + mounttest::ErrnoName(errno);
    }
    finished_ = true;
  }

  const Stream s_;
  RawFd fd_;
  std::thread thread_;
  std::atomic<uint64_t> acked_, synced_;
  std::atomic<bool> stop_{false}, failure_expected_{false}, in_doubt_{false}, finished_{false};
  std::string error_;
};

// Compares the file with the stream after `n` acknowledged writes (and, if
// `in_doubt`, write n may be in it too); `synced` of them were fsynced.
// Returns whether write n is in the file (false when not in doubt), or a
// failure naming the first wrong slot and whether it held fsynced data.
::testing::AssertionResult CheckStream(const Stream& s, const std::string& path, uint64_t n, uint64_t synced,
                                       bool in_doubt, bool* landed) {
  std::vector<uint8_t> got;
  auto r = mounttest::ReadFile(path, &got, /*direct=*/true);
  if (!r) return r;
  *landed = false;
  const auto without = s.State(n);
  if (got == without) return ::testing::AssertionSuccess();
  if (in_doubt && got == s.State(n + 1)) {
    *landed = true;
    return ::testing::AssertionSuccess();
  }
  auto fail = ::testing::AssertionFailure();
  fail << path << " after " << n << " acknowledged writes (" << synced << " fsynced"
       << (in_doubt ? ", one more in doubt" : "") << "): ";
  if (got.size() != without.size() && !(in_doubt && got.size() == std::min(n + 1, s.slots) * kChunk))
    return fail << "size " << got.size() << ", expected " << without.size();
  for (uint64_t slot = 0; slot * kChunk < without.size(); ++slot) {
    if (std::memcmp(got.data() + slot * kChunk, without.data() + slot * kChunk, kChunk) == 0) continue;
    const uint64_t k = s.LastWrite(n, slot);
    if (in_doubt && n % s.slots == slot) {
      std::vector<uint8_t> alt(kChunk);
      s.Fill(n, alt.data());
      if (std::memcmp(got.data() + slot * kChunk, alt.data(), kChunk) == 0) continue;
    }
    return fail << "slot " << slot << " (offset " << slot * kChunk << ") does not hold write " << k
                << (k < synced ? ", which was FSYNCED before the kill" : ", acknowledged but not fsynced");
  }
  return fail << "differs only in the tail beyond the acknowledged size";
}

// kill -9 of the daemon while a write stream runs (and while the blocks of
// an unlinked file are being released), three times, one of them right
// after a remount: afterwards the catalog is consistent, nothing is left in
// rados_intent or rados_unref, every acknowledged (and so every fsynced)
// write reads back, and the pool holds exactly the catalog's references.
TEST(RadosMountTest, KillDashNineDuringAWriteStreamLeavesExactlyTheCatalogsReferences) {
  auto cluster = CephTestCluster::Start();
  ASSERT_NE(cluster, nullptr) << kNoCluster;
  MountedFs fs({}, RadosFormatArgs(cluster->pool(), cluster->conf_path()));
  const FailureLogs logs{{&fs}, cluster.get()};
  ASSERT_TRUE(fs.formatted());
  ASSERT_TRUE(HasRadosTables(fs));
  Daemon daemon(fs);
  const uint64_t seed = mounttest::extra::TestSeed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (CHAINSWAP_TEST_SEED=" + std::to_string(seed) + " repeats it)");
  std::mt19937_64 rng(seed);
  // destage_delay=0: destage (and so RADOS operations) runs right behind
  // the writes, so that the kills find operations in flight.
  const std::vector<std::string> opts = {"destage_delay=0"};

  ASSERT_TRUE(daemon.Start(opts));
  ASSERT_TRUE(fs.MakeChain("vm"));
  // A file whose blocks are released (rados_unref) while the first stream
  // runs.
  const auto old_data = MakeData(seed ^ 0x01d, 4 * kMiB);
  ASSERT_TRUE(mounttest::WriteFile(fs.Path("vm", "old"), 0, old_data, O_DIRECT));
  ASSERT_TRUE(WaitUntil([&] { return SettledAt(CountsOf(fs), 1024, 1); })) << CountsOf(fs).ToString();

  const Stream stream{seed | 1, /*slots=*/128};  // a 16 MiB ring
  const std::string path = fs.Path("vm", "stream");
  uint64_t n = 0, synced = 0;
  bool in_doubt = false;
  auto verify = [&](const char* when) {
    SCOPED_TRACE(when);
    bool landed = false;
    EXPECT_TRUE(CheckStream(stream, path, n, synced, in_doubt, &landed));
    if (landed) ++n;
    in_doubt = false;
    EXPECT_TRUE(fs.CatalogInvariantsHold());
  };

  for (int cycle = 0; cycle < 3; ++cycle) {
    SCOPED_TRACE("cycle " + std::to_string(cycle));
    if (cycle > 0) {
      ASSERT_TRUE(daemon.Start(opts));
      verify("after the restart");
      ASSERT_FALSE(HasFatalFailure());
    }
    StreamWriter w(stream, path, n);
    if (cycle == 0) {
      ASSERT_EQ(::unlink(fs.Path("vm", "old").c_str()), 0) << mounttest::ErrnoName(errno);
    }
    // Past some writes (destage is working behind them), then a random moment.
    const uint64_t target = n + (cycle == 2 ? 64 : 24 + rng() % 48);
    ASSERT_TRUE(WaitUntil([&] { return w.acked() >= target || !w.running(); }, std::chrono::seconds(60)))
        << "the writer made " << w.acked() - n << " writes in 60 s";
    ASSERT_TRUE(w.running()) << w.error();
    if (cycle == 2) {
      // Stopped cleanly, then killed with most of the stream not destaged;
      // then killed again right after the next mount (whose journal replay
      // precedes it), while the replayed writes are being destaged.
      w.Stop();
      w.Join();
      ASSERT_TRUE(w.error().empty()) << w.error();
      ASSERT_TRUE(daemon.Kill9());
      ASSERT_TRUE(daemon.Start(opts));
      ASSERT_TRUE(daemon.Kill9());
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 200));
      w.ExpectFailure();
      auto killed = daemon.Kill9();
      w.Join();
      ASSERT_TRUE(killed);
      ASSERT_TRUE(w.error().empty()) << w.error();
    }
    n = w.acked();
    synced = w.synced();
    in_doubt = w.in_doubt();
    // What the crash left for the next mount to resolve (for the record:
    // intent or unref rows mean RADOS work was cut short).
    std::fprintf(stderr, "[ info ] cycle %d: killed after %llu writes (%llu fsynced%s); catalog: %s\n", cycle,
                 static_cast<unsigned long long>(n), static_cast<unsigned long long>(synced),
                 in_doubt ? ", one in flight" : "", CountsOf(fs).ToString().c_str());
  }

  ASSERT_TRUE(daemon.Start(opts));
  verify("after the last restart");
  ASSERT_FALSE(HasFatalFailure());
  const int64_t blocks = static_cast<int64_t>(std::min(n, stream.slots) * kChunkBlocks);
  ASSERT_TRUE(WaitUntil([&] {
    return SettledAt(CountsOf(fs), blocks, 1) && mounttest::extra::DestageIdle(fs.mnt());
  })) << CountsOf(fs).ToString() << "; expected " << blocks << " blocks in 1 file; "
      << mounttest::extra::DestageSummary(fs.mnt());
  EXPECT_TRUE(fs.CatalogInvariantsHold());
  EXPECT_EQ(fs.QueryInt("SELECT count(*) FROM rados_block WHERE private != 0"), 0);
  auto store = ConnectForChecks(*cluster);
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(ReferencesAreExact(*store, fs, /*only_host=*/true));
  // Settled: the journal is empty, these reads come from RADOS.
  bool landed = false;
  EXPECT_TRUE(CheckStream(stream, path, n, synced, false, &landed));
  EXPECT_TRUE(daemon.Stop());
}

// ------------------------------------------------------------- test 3

// Replaces the `mon host` line of conf file `from`, writing `to`.
void WriteConfWithMonHost(const std::string& from, const std::string& to, const std::string& mon_host) {
  std::ifstream in(from);
  std::string text, line;
  while (std::getline(in, line)) {
    if (line.find("mon host") != std::string::npos || line.find("mon_host") != std::string::npos)
      line = "mon host = " + mon_host;
    text += line + "\n";
  }
  std::ofstream(to) << text;
}

// A backing directory whose cluster does not answer: chainswapfs exits
// non-zero within its client timeout (rados_timeout=5) with an error naming
// the conf file, mounts nothing and keeps no lock; with the cluster
// reachable again it mounts and the data is there.
TEST(RadosMountTest, AnUnreachableClusterFailsTheMountWithinTheTimeoutNamingTheConfFile) {
  auto cluster = CephTestCluster::Start();
  ASSERT_NE(cluster, nullptr) << kNoCluster;
  // The catalog records this conf file; the test then points it at a dead
  // monitor address (the same keyring and user).
  char tmpl[] = "/tmp/chainswap-rados-conf-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string conf_dir = tmpl, conf = conf_dir + "/ceph.conf";
  struct RemoveDir {
    std::string dir;
    ~RemoveDir() { mounttest::RunCommand({"rm", "-rf", dir}); }
  } remove_dir{conf_dir};
  {
    std::ifstream in(cluster->conf_path());
    std::ofstream out(conf);
    out << in.rdbuf();
  }
  constexpr int kTimeout = 5;
  MountedFs fs({"rados_timeout=" + std::to_string(kTimeout)}, RadosFormatArgs(cluster->pool(), conf));
  fs.set_mount_timeout(std::chrono::seconds(60));
  const FailureLogs logs{{&fs}, cluster.get()};
  ASSERT_TRUE(fs.formatted());
  EXPECT_EQ(Meta(fs, "rados_conf"), conf);
  ASSERT_TRUE(fs.Mount());
  ASSERT_TRUE(fs.MakeChain("vm"));
  const auto data = MakeData(0x0dead, 1 * kMiB);
  ASSERT_TRUE(mounttest::WriteFile(fs.Path("vm", "f"), 0, data, O_DIRECT));
  ASSERT_TRUE(fs.Unmount());

  WriteConfWithMonHost(cluster->conf_path(), conf, "v2:127.0.0.1:1");
  const std::string log = fs.dir() + "/unreachable.log";
  int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(log_fd, 0);
  const std::vector<std::string> argv = {CHAINSWAPFS_BIN, fs.backing(), fs.mnt(), "-f",
                                         "-o", "rados_timeout=" + std::to_string(kTimeout)};
  const auto start = Clock::now();
  const pid_t pid = mounttest::SpawnLogged(argv, log_fd);
  ASSERT_GT(pid, 0) << mounttest::ErrnoName(errno);
  const auto limit = std::chrono::seconds(kTimeout + 15);
  int status = -1;
  const bool exited = mounttest::extra::WaitChild(pid, start + limit, &status);
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  if (!exited) {
    ::kill(pid, SIGTERM);
    if (!mounttest::extra::WaitChild(pid, Clock::now() + std::chrono::seconds(10), &status)) {
      ::kill(pid, SIGKILL);
      mounttest::extra::WaitChild(pid, Clock::now() + std::chrono::seconds(10), &status);
    }
  }
  const bool was_mounted = mounttest::extra::IsMounted(fs.mnt());
  if (was_mounted) mounttest::RunCommand({"fusermount3", "-uz", fs.mnt()}, std::chrono::seconds(10));
  std::string text;
  {
    std::ifstream in(log);
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  ASSERT_TRUE(exited) << "chainswapfs was still running " << limit.count() << " s after it started on an "
                      << "unreachable cluster (rados_timeout=" << kTimeout << "); log:\n" << text;
  EXPECT_NE(status, 0) << "log:\n" << text;
  EXPECT_LT(status, 128) << "it died of signal " << status - 128 << " instead of exiting; log:\n" << text;
  EXPECT_LE(elapsed, limit);
  std::fprintf(stderr, "[ info ] chainswapfs on an unreachable cluster exited %d after %.1f s\n", status,
               elapsed.count() / 1000.0);
  EXPECT_NE(text.find(conf), std::string::npos) << "the error does not name " << conf << "; log:\n" << text;
  EXPECT_FALSE(was_mounted) << fs.mnt() << " was mounted";
  EXPECT_FALSE(mounttest::extra::BackingLocked(fs.backing()));

  // The cluster is reachable again: it mounts, and the data is there.
  {
    std::ifstream in(cluster->conf_path());
    std::ofstream out(conf);
    out << in.rdbuf();
  }
  ASSERT_TRUE(fs.Mount());
  EXPECT_TRUE(FileEquals(fs.Path("vm", "f"), data, true));
  EXPECT_TRUE(fs.CatalogInvariantsHold());
}

// ------------------------------------------------------------- test 4

// kill -9 of the (BlueStore) OSD during a write stream: the writes and
// fsyncs keep succeeding into the local journal while it is dead, the
// destager waits (its intent rows stay), and once the OSD is back every
// block destages, the references are exact and the file reads back, also
// after a remount.
TEST(RadosMountTest, WritesAreAcknowledgedWhileAnOsdIsDeadAndDestageOnceItIsBack) {
  auto cluster = CephTestCluster::Start("chainswap", /*bluestore=*/true);
  ASSERT_NE(cluster, nullptr) << kNoCluster;
  // rados_timeout=5: RADOS operations on the dead OSD time out (and are
  // retried) several times during the outage.
  MountedFs fs({"rados_timeout=5"}, RadosFormatArgs(cluster->pool(), cluster->conf_path()));
  fs.set_mount_timeout(std::chrono::seconds(60));
  const FailureLogs logs{{&fs}, cluster.get()};
  ASSERT_TRUE(fs.formatted());
  ASSERT_TRUE(HasRadosTables(fs));
  ASSERT_TRUE(fs.Mount());
  ASSERT_TRUE(fs.MakeChain("vm"));
  const std::string path = fs.Path("vm", "stream");
  const Stream stream{0x05d, /*slots=*/1u << 20};  // sequential, never wraps

  // 4 MiB stored in the pool before the OSD dies.
  uint64_t n = 0;
  {
    StreamWriter w(stream, path, 0);
    ASSERT_TRUE(WaitUntil([&] { return w.acked() >= 32 || !w.running(); }));
    w.Stop();
    w.Join();
    ASSERT_TRUE(w.error().empty()) << w.error();
    n = w.acked();
  }
  ASSERT_TRUE(WaitUntil([&] {
    const int64_t b = static_cast<int64_t>(n * kChunkBlocks);
    return SettledAt(CountsOf(fs), b, 1);
  })) << CountsOf(fs).ToString();

  // A paced stream (128 KiB every 40 ms, about 3 MiB/s) across the outage.
  StreamWriter w(stream, path, n, std::chrono::milliseconds(40));
  ASSERT_TRUE(WaitUntil([&] { return w.acked() >= n + 8 || !w.running(); }));
  ASSERT_TRUE(cluster->KillOsd());
  const uint64_t at_kill = w.acked();
  // The destager has taken up writes made after the kill and waits on the
  // dead OSD: its intent rows (or, once an operation has timed out, the
  // unref rows of references it may have taken) stay.
  auto outstanding = [&] {
    const Counts c = CountsOf(fs);
    return c.intent + c.unref;
  };
  ASSERT_TRUE(WaitUntil([&] { return outstanding() > 0 || !w.running(); }, std::chrono::seconds(60)))
      << "no destage batch started after the OSD died: " << CountsOf(fs).ToString();
  // The outage lasts past two RADOS timeouts (rados_timeout=5), so that the
  // destager's operations fail and are retried; meanwhile the writes go on.
  std::this_thread::sleep_for(std::chrono::seconds(12));
  const uint64_t at_restart = w.acked();
  ASSERT_TRUE(w.running()) << "the writer stopped while the OSD was dead: " << w.error();
  EXPECT_GE(at_restart - at_kill, 64u) << "only " << (at_restart - at_kill) * kChunk / kKiB
                                       << " KiB acknowledged in the 12 s the OSD was dead";
  EXPECT_GT(outstanding(), 0) << "the RADOS work of the writes made while the OSD was dead is done already? "
                              << CountsOf(fs).ToString();
  std::fprintf(stderr, "[ info ] %llu KiB acknowledged while the OSD was dead; catalog at its restart: %s\n",
               static_cast<unsigned long long>((at_restart - at_kill) * kChunk / kKiB), CountsOf(fs).ToString().c_str());
  ASSERT_TRUE(cluster->StartOsd());
  // A little more after the restart, then the last fsync.
  ASSERT_TRUE(WaitUntil([&] { return w.acked() >= at_restart + 16 || !w.running(); }));
  w.Stop();
  w.Join();
  ASSERT_TRUE(w.error().empty()) << w.error();
  n = w.acked();
  EXPECT_EQ(w.synced(), n);

  const int64_t blocks = static_cast<int64_t>(n * kChunkBlocks);
  ASSERT_TRUE(WaitUntil([&] { return SettledAt(CountsOf(fs), blocks, 1) && mounttest::extra::DestageIdle(fs.mnt()); }))
      << CountsOf(fs).ToString() << "; expected " << blocks << " blocks; " << mounttest::extra::DestageSummary(fs.mnt());
  EXPECT_TRUE(fs.CatalogInvariantsHold());
  auto store = ConnectForChecks(*cluster);
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(ReferencesAreExact(*store, fs, /*only_host=*/true));
  const auto expected = stream.State(n);
  EXPECT_TRUE(FileEquals(path, expected, true));
  ASSERT_TRUE(fs.Remount());
  EXPECT_TRUE(FileEquals(path, expected, true));
  EXPECT_TRUE(FileEquals(path, expected, false));
}

}  // namespace
}  // namespace chainswap

namespace chainswap {
namespace {

// ------------------------------------------------------------- test 5

// A copy of conf file `from` whose [client] keyring is `keyring`: what an
// operator's /etc/ceph/ceph.conf names for a host's own user.
void WriteConfWithKeyring(const std::string& from, const std::string& to, const std::string& keyring) {
  std::ifstream in(from);
  std::string text, line, section;
  while (std::getline(in, line)) {
    if (line.starts_with("[")) section = line;
    if (section == "[client]" && line.starts_with("keyring")) line = "keyring = " + keyring;
    text += line + "\n";
  }
  std::ofstream(to) << text;
}

// The README's instructions for a host, followed literally: a cephx user
// with the caps it names (mon 'allow r' osd 'allow rwx pool=POOL') passes
// rados-check, formats, mounts, destages into the pool and reads its blocks
// back from the pool after a remount. A user without the class-call right
// ('rwx' less the x) is refused by rados-check with EPERM named, before any
// backing directory is formatted with it.
TEST(RadosMountTest, AHostUserWithTheReadmesCapsStoresAndReadsItsBlocks) {
  auto cluster = CephTestCluster::Start();
  ASSERT_NE(cluster, nullptr) << kNoCluster;
  const std::string pool = cluster->pool();
  auto make_user = [&](const std::string& name, const std::string& osd_caps) {
    const std::string keyring = cluster->dir() + "/" + name + ".keyring";
    auto r = radostest::RunCommand({"ceph", "-c", cluster->conf_path(), "auth", "get-or-create", "client." + name,
                                    "mon", "allow r", "osd", osd_caps, "-o", keyring});
    EXPECT_EQ(r.status, 0) << r.output;
    const std::string conf = cluster->dir() + "/" + name + ".conf";
    WriteConfWithKeyring(cluster->conf_path(), conf, keyring);
    return conf;
  };
  const std::string host_conf = make_user("host1", "allow rwx pool=" + pool);
  const std::string norx_conf = make_user("nox", "allow rw pool=" + pool);

  auto check = radostest::RunCommand(
      {CHAINSWAP_BIN, "rados-check", "rados:" + pool, "--ceph-conf", host_conf, "--ceph-id", "host1"});
  ASSERT_EQ(check.status, 0) << check.output;
  auto refused = radostest::RunCommand(
      {CHAINSWAP_BIN, "rados-check", "rados:" + pool, "--ceph-conf", norx_conf, "--ceph-id", "nox"});
  EXPECT_NE(refused.status, 0) << refused.output;
  EXPECT_NE(refused.output.find("EPERM"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("allow rwx pool="), std::string::npos) << "the error names the caps: "
                                                                        << refused.output;
  std::fprintf(stderr, "[ info ] rados-check as a user without 'x': %s\n", refused.output.c_str());

  MountedFs fs({}, {"--store", "rados:" + pool, "--ceph-conf", host_conf, "--ceph-id", "host1"});
  fs.set_mount_timeout(std::chrono::seconds(60));
  const FailureLogs logs{{&fs}, cluster.get()};
  ASSERT_TRUE(fs.formatted());
  EXPECT_EQ(Meta(fs, "rados_user"), "host1");
  ASSERT_TRUE(fs.Mount());
  ASSERT_TRUE(fs.MakeChain("vm"));
  constexpr size_t kBytes = 4 * kMiB;
  constexpr int64_t kBlocks = kBytes / kBlock;
  const auto data = MakeData(0x5ca1, kBytes);
  ASSERT_TRUE(mounttest::WriteFile(fs.Path("vm", "guest.swap"), 0, data, O_DIRECT));
  ASSERT_TRUE(WaitUntil([&] { return SettledAt(CountsOf(fs), kBlocks, 1); }))
      << CountsOf(fs).ToString() << "; expected " << kBlocks << " blocks destaged into the pool";
  auto store = ConnectForChecks(*cluster);
  ASSERT_NE(store, nullptr);
  auto listed = store->List("blk." + ChainRadosId(fs, "vm") + ".");
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  EXPECT_EQ(static_cast<int64_t>(listed->size()), kBlocks);
  ASSERT_TRUE(fs.Remount());
  EXPECT_TRUE(FileEquals(fs.Path("vm", "guest.swap"), data, true));
}

}  // namespace
}  // namespace chainswap
