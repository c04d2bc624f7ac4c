// The throw-away Ceph cluster itself (tests/rados/ceph_cluster.h,
// scripts/ceph-test-cluster.sh): objects round-trip through librados and
// the rados CLI, an op on a dead OSD fails instead of hanging, and BlueStore
// keeps acknowledged data and `cas` references across an OSD kill -9. The
// `cas` class itself is tested through the product's client in
// rados_store_test.cc.
#include <rados/librados.hpp>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>

#include <memory>
#include <vector>

#include "catalog/rados_store.h"
#include "tests/rados/ceph_cluster.h"

namespace chainswap::radostest {
namespace {

// ------------------------------------------------------------------ client

// A librados client of `cluster` as client.admin, with an IoCtx on `pool`.
struct Client {
  librados::Rados rados;
  librados::IoCtx io;
  bool connected = false;
  ~Client() {
    io.close();
    if (connected) rados.shutdown();
  }
};

::testing::AssertionResult Connect(const CephTestCluster& cluster, const std::string& pool, Client* c) {
  int r = c->rados.init2("client.admin", "ceph", 0);
  if (r < 0) return ::testing::AssertionFailure() << "init2: " << r;
  r = c->rados.conf_read_file(cluster.conf_path().c_str());
  if (r < 0) return ::testing::AssertionFailure() << "conf_read_file(" << cluster.conf_path() << "): " << r;
  r = c->rados.connect();
  if (r < 0) return ::testing::AssertionFailure() << "connect: " << r << "\n" << cluster.LogTails();
  c->connected = true;
  r = c->rados.ioctx_create(pool.c_str(), c->io);
  if (r < 0) return ::testing::AssertionFailure() << "ioctx_create(" << pool << "): " << r;
  return ::testing::AssertionSuccess();
}

// `n` bytes of seeded random data (zero bytes included).
std::string RandomBytes(uint64_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    for (size_t j = 0; j < 8 && i + j < n; ++j) s[i + j] = static_cast<char>(v >> (8 * j));
  }
  return s;
}

librados::bufferlist Bl(const std::string& s) {
  librados::bufferlist bl;
  bl.append(s.data(), s.size());
  return bl;
}

int WriteFull(librados::IoCtx& io, const std::string& oid, const std::string& data) {
  librados::bufferlist bl = Bl(data);
  return io.write_full(oid, bl);
}

// Reads the whole object; the librados return value in *r.
std::string ReadAll(librados::IoCtx& io, const std::string& oid, int* r) {
  librados::bufferlist bl;
  *r = io.read(oid, bl, 0, 0);
  return bl.to_str();
}

// Equal bytes; on a mismatch only the sizes and the first differing offset.
::testing::AssertionResult SameBytes(const std::string& got, const std::string& want) {
  if (got == want) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  return ::testing::AssertionFailure() << "got " << got.size() << " bytes, want " << want.size()
                                       << "; first difference at offset " << i;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A RadosStore (the product's client, catalog/rados_store.h) of `cluster`.
std::unique_ptr<RadosStore> StoreOf(const CephTestCluster& cluster) {
  RadosTarget t;
  t.pool = cluster.pool();
  t.conf_path = cluster.conf_path();
  t.timeout_seconds = 10;
  auto s = RadosStore::Connect(t);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

int Stat(librados::IoCtx& io, const std::string& oid) {
  uint64_t size = 0;
  time_t mtime = 0;
  return io.stat(oid, &size, &mtime);
}

// Waits (at most `limit`) for an aio completion; nullopt if it never came.
std::optional<int> WaitFor(librados::AioCompletion* c, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!c->is_complete()) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return c->get_return_value();
}

// ------------------------------------------------------------------ tests

TEST(RadosClusterTest, ObjectsRoundTripByteExactThroughLibradosAndTheCli) {
  CephTestCluster* cluster = SharedCluster();
  ASSERT_NE(cluster, nullptr) << "the test cluster did not start (its output is above)";
  ASSERT_TRUE(cluster->Status());
  Client c;
  ASSERT_TRUE(Connect(*cluster, cluster->pool(), &c));

  // librados write, librados and CLI reads.
  const std::string data = RandomBytes(1, 1024 * 1024 + 123);
  ASSERT_EQ(WriteFull(c.io, "round-trip", data), 0);
  int r = 0;
  EXPECT_TRUE(SameBytes(ReadAll(c.io, "round-trip", &r), data));
  EXPECT_EQ(r, static_cast<int>(data.size()));
  const std::string out = cluster->dir() + "/cli-get.out";
  CommandResult get = RunCommand({"rados", "-c", cluster->conf_path(), "-p", cluster->pool(), "get", "round-trip", out});
  ASSERT_EQ(get.status, 0) << get.output;
  EXPECT_TRUE(SameBytes(ReadFile(out), data));

  // CLI write, librados read.
  const std::string in = cluster->dir() + "/cli-put.in";
  const std::string data2 = RandomBytes(2, 4096);
  std::ofstream(in, std::ios::binary) << data2;
  CommandResult put = RunCommand({"rados", "-c", cluster->conf_path(), "-p", cluster->pool(), "put", "from-cli", in});
  ASSERT_EQ(put.status, 0) << put.output;
  EXPECT_TRUE(SameBytes(ReadAll(c.io, "from-cli", &r), data2));

  // A second pool.
  ASSERT_TRUE(cluster->CreatePool("second"));
  Client c2;
  ASSERT_TRUE(Connect(*cluster, "second", &c2));
  ASSERT_EQ(WriteFull(c2.io, "round-trip", data2), 0);
  EXPECT_TRUE(SameBytes(ReadAll(c2.io, "round-trip", &r), data2));
  EXPECT_TRUE(SameBytes(ReadAll(c.io, "round-trip", &r), data)) << "the pools are not separate";
}

TEST(RadosClusterTest, OpsOnAKilledOsdFailWithinTheTimeoutInsteadOfHanging) {
  // Its own cluster: a memstore OSD cannot come back after kill -9.
  auto cluster = CephTestCluster::Start();
  ASSERT_NE(cluster, nullptr) << "the test cluster did not start (its output is above)";
  Client c;
  ASSERT_TRUE(Connect(*cluster, cluster->pool(), &c));
  ASSERT_EQ(WriteFull(c.io, "before-the-kill", "x"), 0);

  ASSERT_TRUE(cluster->KillOsd());
  // `rados osd op timeout` = 10 s: each op must come back with an error.
  // The bound here is deliberately loose: "returns at all".
  librados::bufferlist bl = Bl("y");
  librados::AioCompletion* w = librados::Rados::aio_create_completion();
  ASSERT_EQ(c.io.aio_write_full("after-the-kill", w, bl), 0);
  uint64_t size = 0;
  time_t mtime = 0;
  librados::AioCompletion* s = librados::Rados::aio_create_completion();
  ASSERT_EQ(c.io.aio_stat("before-the-kill", s, &size, &mtime), 0);
  const auto t0 = std::chrono::steady_clock::now();
  std::optional<int> wr = WaitFor(w, std::chrono::seconds(60));
  std::optional<int> sr = WaitFor(s, std::chrono::seconds(60));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(wr.has_value() && sr.has_value())
      << "an op on the killed OSD did not return within 60 s\n" << cluster->LogTails();
  w->release();
  s->release();
  EXPECT_LT(*wr, 0) << "a write to a killed OSD succeeded";
  EXPECT_LT(*sr, 0) << "a stat on a killed OSD succeeded";
  std::fprintf(stderr, "ops on the killed OSD returned %d (write) and %d (stat) after %.1f s\n", *wr, *sr, secs);

  // memstore keeps nothing across an OSD restart: the script refuses it.
  ::testing::AssertionResult restart = cluster->StartOsd();
  EXPECT_FALSE(restart) << "start-osd on memstore should refuse";
  EXPECT_NE(std::string(restart.message()).find("--bluestore"), std::string::npos) << restart.message();
}

TEST(RadosClusterTest, BluestoreKeepsAcknowledgedObjectsAcrossAnOsdKill9) {
  auto cluster = CephTestCluster::Start("chainswap", /*bluestore=*/true);
  ASSERT_NE(cluster, nullptr) << "the test cluster did not start (its output is above)";
  Client c;
  ASSERT_TRUE(Connect(*cluster, cluster->pool(), &c));
  std::vector<std::string> data;
  for (int i = 0; i < 8; ++i) {
    data.push_back(RandomBytes(100 + i, 4096 * (1 + 37 * i)));
    ASSERT_EQ(WriteFull(c.io, "obj-" + std::to_string(i), data.back()), 0);
  }
  // A block with a cas reference, through the product's RADOS client.
  const std::string chunk = "blk.kill9.0";
  const RadosRef ref{"host-a", 1};
  const std::vector<uint8_t> block(data[0].begin(), data[0].begin() + 4096);
  {
    auto store = StoreOf(*cluster);
    ASSERT_NE(store, nullptr);
    RadosBatch b(*store);
    b.CreateOrRef(chunk, ref, block, true);
    auto st = b.Wait();
    ASSERT_TRUE(st[0].ok()) << st[0].ToString();
  }

  ASSERT_TRUE(cluster->KillOsd());
  ASSERT_TRUE(cluster->StartOsd());

  // The same client reads everything back, references included.
  int r = 0;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(Stat(c.io, "obj-0"), 0);
  std::fprintf(stderr, "the first op after the OSD restart took %.1f s\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(SameBytes(ReadAll(c.io, "obj-" + std::to_string(i), &r), data[i])) << "object " << i << ", read returned " << r;
  }
  {
    // A client connected after the restart: the reference survived (a put
    // of it deletes the object), and the block's bytes with it.
    auto store = StoreOf(*cluster);
    ASSERT_NE(store, nullptr);
    std::vector<uint8_t> back(4096);
    ASSERT_TRUE(store->Read(chunk, back).ok());
    EXPECT_EQ(back, block);
    RadosBatch b(*store);
    b.Unref(chunk, ref);
    auto st = b.Wait();
    ASSERT_TRUE(st[0].ok()) << st[0].ToString();
  }
  EXPECT_EQ(Stat(c.io, chunk), -ENOENT);
  ASSERT_EQ(WriteFull(c.io, "after-the-restart", data[1]), 0);
  EXPECT_TRUE(SameBytes(ReadAll(c.io, "after-the-restart", &r), data[1]));
}

}  // namespace
}  // namespace chainswap::radostest
