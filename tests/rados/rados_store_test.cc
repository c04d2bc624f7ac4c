// The RADOS content store's primitives (catalog/rados_store.h) against a
// real single-node Ceph cluster that the test starts itself
// (scripts/ceph-test-cluster.sh through tests/rados/ceph_cluster.h).
// Two RadosStore connections stand for two hosts.
#include "catalog/rados_store.h"

#include <gtest/gtest.h>
#include <rados/librados.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/rados/ceph_cluster.h"

namespace chainswap {
namespace {

using radostest::CephTestCluster;

std::vector<uint8_t> Block(uint32_t tag) {
  std::vector<uint8_t> b(kBlockSize);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>((tag * 2654435761u + i * 7) >> 3);
  return b;
}

BlockHash HashOf(uint32_t tag) {
  BlockHash h;
  for (size_t i = 0; i < h.bytes.size(); ++i) h.bytes[i] = static_cast<uint8_t>(tag >> (8 * (i % 4)) ^ i);
  return h;
}

class RadosStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = CephTestCluster::Start();
    ASSERT_NE(cluster_, nullptr) << "the test cluster did not start (see the script's output above)";
    host_a_ = ConnectOrDie();
    host_b_ = ConnectOrDie();
  }
  std::unique_ptr<RadosStore> ConnectOrDie() {
    auto s = RadosStore::Connect(Target());
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }
  RadosTarget Target() const {
    RadosTarget t;
    t.pool = cluster_->pool();
    t.conf_path = cluster_->conf_path();
    t.timeout_seconds = 10;
    return t;
  }
  std::unique_ptr<CephTestCluster> cluster_;
  std::unique_ptr<RadosStore> host_a_, host_b_;
  const RadosRef ref_a_{"aaaa", 1}, ref_b_{"bbbb", 7};
};

TEST(RadosStoreSpecTest, ParsesRadosPoolAndRefusesAnythingElse) {
  auto ok = ParseRadosStoreSpec("rados:swap");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, "swap");
  for (const char* bad : {"rados:", "rados", "file:x", "", "RADOS:swap"}) {
    auto r = ParseRadosStoreSpec(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), EINVAL) << bad;
  }
}

TEST_F(RadosStoreTest, AMissingPoolIsENOENTNamingThePool) {
  RadosTarget t = Target();
  t.pool = "no-such-pool";
  auto s = RadosStore::Connect(t);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), ENOENT) << s.status().ToString();
  EXPECT_NE(s.status().message().find("no-such-pool"), std::string::npos) << s.status().ToString();
}

TEST_F(RadosStoreTest, AnUnreachableClusterIsAnErrorNotAHang) {
  // The same keyring and user, but monitors on a port nothing listens on.
  const std::string conf = cluster_->dir() + "/unreachable.conf";
  std::string text;
  {
    std::ifstream in(cluster_->conf_path());
    std::string line;
    while (std::getline(in, line)) {
      if (line.find("mon host") != std::string::npos || line.find("mon_host") != std::string::npos) {
        line = "mon host = v2:127.0.0.1:1";
      }
      text += line + "\n";
    }
  }
  std::ofstream(conf) << text;
  RadosTarget t = Target();
  t.conf_path = conf;
  t.timeout_seconds = 3;
  auto s = RadosStore::Connect(t);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find(conf), std::string::npos) << s.status().ToString();
}

TEST_F(RadosStoreTest, TwoHostsJoiningAChainGetTheFirstHostsRecord) {
  HashSeed seed_a{}, seed_b{};
  seed_a.fill(0xa1);
  seed_b.fill(0xb2);
  auto a = host_a_->JoinChain("vm-base", seed_a);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  auto b = host_b_->JoinChain("vm-base", seed_b);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(a->id, b->id);
  EXPECT_EQ(b->seed, seed_a);
  EXPECT_EQ(a->id.size(), 32u);
  // Another name is another chain.
  auto c = host_b_->JoinChain("vm-other", seed_b);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(c->id, a->id);
  EXPECT_EQ(c->seed, seed_b);
}

TEST_F(RadosStoreTest, HostsJoiningAtOnceAllGetOneRecord) {
  constexpr int kHosts = 6;
  std::vector<std::unique_ptr<RadosStore>> hosts;
  for (int i = 0; i < kHosts; ++i) hosts.push_back(ConnectOrDie());
  std::vector<Result<RadosChainRecord>> got(kHosts, Status::Error(EIO, "not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kHosts; ++i) {
    threads.emplace_back([&, i] {
      HashSeed s{};
      s.fill(static_cast<uint8_t>(i + 1));
      got[static_cast<size_t>(i)] = hosts[static_cast<size_t>(i)]->JoinChain("raced", s);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kHosts; ++i) {
    ASSERT_TRUE(got[static_cast<size_t>(i)].ok()) << got[static_cast<size_t>(i)].status().ToString();
    EXPECT_EQ(got[static_cast<size_t>(i)]->id, got[0]->id);
    EXPECT_EQ(got[static_cast<size_t>(i)]->seed, got[0]->seed);
  }
}

TEST_F(RadosStoreTest, AChainRecordThatDoesNotParseIsEIONamingIt) {
  librados::Rados r;
  ASSERT_EQ(r.init2("client.admin", "ceph", 0), 0);
  ASSERT_EQ(r.conf_read_file(cluster_->conf_path().c_str()), 0);
  ASSERT_EQ(r.connect(), 0);
  librados::IoCtx io;
  ASSERT_EQ(r.ioctx_create(cluster_->pool().c_str(), io), 0);
  librados::bufferlist bl;
  bl.append("chainswap-chain 1\nid zz\nseed 00\n");
  ASSERT_EQ(io.write_full("chain.broken", bl), 0);
  auto rec = host_a_->ReadChain("broken");
  ASSERT_FALSE(rec.ok());
  EXPECT_EQ(rec.status().code(), EIO);
  EXPECT_NE(rec.status().message().find("chain.broken"), std::string::npos);
  EXPECT_EQ(host_a_->ReadChain("never-made").status().code(), ENOENT);
  io.close();
  r.shutdown();
}

TEST_F(RadosStoreTest, TheSameBlockFromTwoHostsIsStoredOnceAndFreedWithTheLastReference) {
  const auto data = Block(1);
  const std::string name = RadosStore::BlockObjectName("c0ffee", HashOf(1));
  {
    RadosBatch a(*host_a_);
    a.CreateOrRef(name, ref_a_, data, true);
    auto st = a.Wait();
    ASSERT_TRUE(st[0].ok()) << st[0].ToString();
  }
  {
    RadosBatch b(*host_b_);
    b.CreateOrRef(name, ref_b_, data, true);
    auto st = b.Wait();
    ASSERT_TRUE(st[0].ok()) << st[0].ToString();
  }
  auto listed = host_a_->List("blk.c0ffee.");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(*listed, std::vector<std::string>{name});
  auto size = host_b_->Stat(name);
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, kBlockSize);
  auto holders = host_a_->Holders(name);
  ASSERT_TRUE(holders.ok()) << holders.status().ToString();
  EXPECT_EQ(*holders, (std::vector<RadosRef>{ref_a_, ref_b_}));

  // Host a lets go: host b still reads the bytes.
  {
    RadosBatch a(*host_a_);
    a.Unref(name, ref_a_);
    auto st = a.Wait();
    ASSERT_TRUE(st[0].ok()) << st[0].ToString();
  }
  std::vector<uint8_t> back(kBlockSize);
  ASSERT_TRUE(host_b_->Read(name, back).ok());
  EXPECT_EQ(back, data);
  // A second drop by a is refused (it holds nothing), and changes nothing.
  {
    RadosBatch a(*host_a_);
    a.Unref(name, ref_a_);
    auto st = a.Wait();
    EXPECT_EQ(st[0].code(), ENOLINK) << st[0].ToString();
  }
  ASSERT_TRUE(host_b_->Stat(name).ok());
  holders = host_a_->Holders(name);
  ASSERT_TRUE(holders.ok()) << holders.status().ToString();
  EXPECT_EQ(*holders, std::vector<RadosRef>{ref_b_});
  // The last reference deletes the object.
  {
    RadosBatch b(*host_b_);
    b.Unref(name, ref_b_);
    auto st = b.Wait();
    ASSERT_TRUE(st[0].ok()) << st[0].ToString();
  }
  EXPECT_EQ(host_a_->Stat(name).status().code(), ENOENT);
}

// Why docs/RADOS.md's write ordering needs intents and never-reused holders:
// cas counts a holder's references (a multiset), so repeating a
// create-or-reference after a crash would count it twice.
TEST_F(RadosStoreTest, ARepeatedReferenceByOneHolderCountsTwiceAndHoldersShowIt) {
  const std::string name = RadosStore::BlockObjectName("c0ffee", HashOf(4));
  const auto data = Block(4);
  RadosBatch a(*host_a_);
  a.CreateOrRef(name, ref_a_, data, true);
  a.CreateOrRef(name, ref_a_, data, true);
  for (const Status& st : a.Wait()) ASSERT_TRUE(st.ok()) << st.ToString();
  auto holders = host_b_->Holders(name);
  ASSERT_TRUE(holders.ok()) << holders.status().ToString();
  EXPECT_EQ(*holders, (std::vector<RadosRef>{ref_a_, ref_a_}));
  a.Unref(name, ref_a_);
  ASSERT_TRUE(a.Wait()[0].ok());
  ASSERT_TRUE(host_b_->Stat(name).ok()) << "one drop left the second count";
  a.Unref(name, ref_a_);
  ASSERT_TRUE(a.Wait()[0].ok());
  EXPECT_EQ(host_b_->Holders(name).status().code(), ENOENT);
}

TEST_F(RadosStoreTest, AVerifyingPutOfOtherBytesUnderTheSameNameIsRefused) {
  const std::string name = RadosStore::BlockObjectName("c0ffee", HashOf(2));
  const auto first = Block(2), other = Block(3);
  RadosBatch a(*host_a_);
  a.CreateOrRef(name, ref_a_, first, true);
  ASSERT_TRUE(a.Wait()[0].ok());
  RadosBatch b(*host_b_);
  b.CreateOrRef(name, ref_b_, other, true);
  auto st = b.Wait();
  EXPECT_EQ(st[0].code(), ENOMSG) << st[0].ToString();
  std::vector<uint8_t> back(kBlockSize);
  ASSERT_TRUE(host_a_->Read(name, back).ok());
  EXPECT_EQ(back, first);
  // b took no reference: its drop is refused, a's drop frees the object.
  b.Unref(name, ref_b_);
  EXPECT_EQ(b.Wait()[0].code(), ENOLINK);
  a.Unref(name, ref_a_);
  ASSERT_TRUE(a.Wait()[0].ok());
  EXPECT_EQ(host_a_->Stat(name).status().code(), ENOENT);
}

TEST_F(RadosStoreTest, ABatchKeepsManyOperationsInFlightAndReportsEachInOrder) {
  constexpr uint32_t kBlocks = 600;
  RadosBatch batch(*host_a_, 64);
  std::vector<std::string> names;
  std::vector<std::vector<uint8_t>> datas;
  for (uint32_t i = 0; i < kBlocks; ++i) {
    names.push_back(RadosStore::BlockObjectName("batch", HashOf(1000 + i)));
    datas.push_back(Block(1000 + i));
    EXPECT_EQ(batch.CreateOrRef(names.back(), ref_a_, datas.back(), true), i);
  }
  // One more that must fail: a reference to an object that does not exist.
  batch.Ref(RadosStore::BlockObjectName("batch", HashOf(99999)), ref_a_);
  auto st = batch.Wait();
  ASSERT_EQ(st.size(), kBlocks + 1);
  for (uint32_t i = 0; i < kBlocks; ++i) ASSERT_TRUE(st[i].ok()) << i << ": " << st[i].ToString();
  EXPECT_EQ(st[kBlocks].code(), ENOENT) << st[kBlocks].ToString();
  EXPECT_EQ(batch.size(), 0u);

  std::vector<std::vector<uint8_t>> back(kBlocks, std::vector<uint8_t>(kBlockSize));
  for (uint32_t i = 0; i < kBlocks; ++i) batch.Read(names[i], back[i]);
  st = batch.Wait();
  for (uint32_t i = 0; i < kBlocks; ++i) {
    ASSERT_TRUE(st[i].ok()) << st[i].ToString();
    ASSERT_EQ(back[i], datas[i]) << i;
  }
  auto listed = host_b_->List("blk.batch.");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), kBlocks);

  for (uint32_t i = 0; i < kBlocks; ++i) batch.Unref(names[i], ref_a_);
  st = batch.Wait();
  for (uint32_t i = 0; i < kBlocks; ++i) ASSERT_TRUE(st[i].ok()) << st[i].ToString();
  listed = host_b_->List("blk.batch.");
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());
}

TEST_F(RadosStoreTest, AShortObjectReadIsEIONeverPartialBytes) {
  const std::string name = RadosStore::BlockObjectName("short", HashOf(5));
  const std::vector<uint8_t> half(kBlockSize / 2, 0x5a);
  RadosBatch a(*host_a_);
  a.CreateOrRef(name, ref_a_, half, false);
  ASSERT_TRUE(a.Wait()[0].ok());
  std::vector<uint8_t> back(kBlockSize, 0);
  a.Read(name, back);
  EXPECT_EQ(a.Wait()[0].code(), EIO);
  EXPECT_EQ(host_a_->Read(name, back).code(), EIO);
  a.Read(RadosStore::BlockObjectName("short", HashOf(6)), back);
  EXPECT_EQ(a.Wait()[0].code(), ENOENT);
}

// The building block of "destage resumes when the cluster is back": one
// connection, kept across an OSD kill -9 and restart (BlueStore keeps the
// data), gets an error (not a hang) while the OSD is down and works again
// after. Without the objecter timeout that Connect sets below the operation
// timeout, the connection never sees the restarted OSD.
TEST(RadosStoreFaultTest, AConnectionOutlivesAnOsdRestart) {
  auto cluster = CephTestCluster::Start("chainswap", /*bluestore=*/true);
  ASSERT_NE(cluster, nullptr) << "the test cluster did not start (see the script's output above)";
  // The conf file's own objecter timeout is dropped: only Connect's counts.
  const std::string conf = cluster->dir() + "/no-objecter.conf";
  {
    std::ifstream in(cluster->conf_path());
    std::ofstream out(conf);
    std::string line;
    while (std::getline(in, line))
      if (line.find("objecter") == std::string::npos) out << line << "\n";
  }
  RadosTarget t;
  t.pool = cluster->pool();
  t.conf_path = conf;
  t.timeout_seconds = 6;
  auto s = RadosStore::Connect(t);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  RadosStore& store = **s;
  const std::string before = RadosStore::BlockObjectName("fault", HashOf(1));
  const auto data = Block(1);
  const RadosRef ref{"host-a", 1};
  {
    RadosBatch b(store);
    b.CreateOrRef(before, ref, data, true);
    ASSERT_TRUE(b.Wait()[0].ok());
  }
  ASSERT_TRUE(cluster->KillOsd());
  const std::string during = RadosStore::BlockObjectName("fault", HashOf(2));
  {
    RadosBatch b(store);
    b.CreateOrRef(during, ref, Block(2), true);
    const Status st = b.Wait()[0];
    EXPECT_EQ(st.code(), ETIMEDOUT) << st.ToString();
  }
  ASSERT_TRUE(cluster->StartOsd());
  // Retried as a destager would: a few attempts, each bounded by the timeout.
  Status st = Status::Error(EIO, "not tried");
  for (int attempt = 0; attempt < 5 && !st.ok(); ++attempt) {
    RadosBatch b(store);
    b.CreateOrRef(during, ref, Block(2), true);
    st = b.Wait()[0];
  }
  ASSERT_TRUE(st.ok()) << "the connection did not recover after the OSD restart: " << st.ToString();
  std::vector<uint8_t> back(kBlockSize);
  ASSERT_TRUE(store.Read(before, back).ok());
  EXPECT_EQ(back, data);
  auto holders = store.Holders(during);
  ASSERT_TRUE(holders.ok()) << holders.status().ToString();
  // The write that timed out was sent to a dead OSD and cancelled by the
  // client: it was never applied, so the holder is there once.
  EXPECT_EQ(*holders, std::vector<RadosRef>{ref});
}

}  // namespace
}  // namespace chainswap
