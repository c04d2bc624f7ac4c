// `chainswap rados-check` (tools/rados_check.h) against a real cluster: the
// function's report, and the CLI's output and exit statuses.
#include "tools/rados_check.h"

#include <gtest/gtest.h>
#include <memory>
#include <string>

#include "tests/rados/ceph_cluster.h"

namespace chainswap {
namespace {

using radostest::CephTestCluster;
using radostest::RunCommand;

class RadosCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = CephTestCluster::Start();
    ASSERT_NE(cluster_, nullptr) << "the test cluster did not start (see the script's output above)";
    target_.pool = cluster_->pool();
    target_.conf_path = cluster_->conf_path();
    target_.timeout_seconds = 10;
  }
  std::unique_ptr<CephTestCluster> cluster_;
  RadosTarget target_;
};

TEST_F(RadosCheckTest, ReportsTheChainsAndTheirBlocksAndLeavesNothingBehind) {
  auto empty = RadosCheck(target_);
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_TRUE(empty->cas_ok);
  EXPECT_TRUE(empty->chains.empty());
  EXPECT_EQ(empty->objects, 0u) << "the cas probe left its object behind";

  auto store = RadosStore::Connect(target_);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  HashSeed seed{};
  auto base = (*store)->JoinChain("base", seed);
  ASSERT_TRUE(base.ok());
  auto other = (*store)->JoinChain("other", seed);
  ASSERT_TRUE(other.ok());
  {
    RadosBatch b(**store);
    std::vector<std::vector<uint8_t>> blocks;
    for (uint8_t i = 0; i < 3; ++i) {
      blocks.emplace_back(kBlockSize, static_cast<uint8_t>(i + 1));
      BlockHash h;
      h.bytes[0] = i;
      b.CreateOrRef(RadosStore::BlockObjectName(base->id, h), RadosRef{"h", i}, blocks.back(), true);
    }
    for (const Status& st : b.Wait()) ASSERT_TRUE(st.ok()) << st.ToString();
  }
  auto r = RadosCheck(target_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->chains.size(), 2u);
  EXPECT_EQ(r->chains[0].name, "base");
  EXPECT_EQ(r->chains[0].id, base->id);
  EXPECT_EQ(r->chains[0].block_objects, 3u);
  EXPECT_EQ(r->chains[1].name, "other");
  EXPECT_EQ(r->chains[1].block_objects, 0u);
  EXPECT_EQ(r->objects, 5u);  // two chain records, three blocks
  const std::string text = RenderRadosCheck(*r);
  EXPECT_NE(text.find(base->id), std::string::npos) << text;
}

TEST_F(RadosCheckTest, TheCliExitsZeroOneOrTwoWithTheReasonOnStderr) {
  const std::string bin = CHAINSWAP_BIN, conf = cluster_->conf_path();
  auto r = RunCommand({bin, "rados-check", "rados:" + cluster_->pool(), "--ceph-conf", conf, "--json"});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("\"cas_ok\":true"), std::string::npos) << r.output;
  r = RunCommand({bin, "rados-check", "rados:no-such-pool", "--ceph-conf", conf});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("no-such-pool"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ENOENT"), std::string::npos) << r.output;
  r = RunCommand({bin, "rados-check", "swap", "--ceph-conf", conf});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("rados:POOL"), std::string::npos) << r.output;
  r = RunCommand({bin, "rados-check", "rados:x", "--ceph-conf", "/nonexistent/ceph.conf", "--timeout", "3"});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("/nonexistent/ceph.conf"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace chainswap
