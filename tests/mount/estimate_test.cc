// `chainswap estimate` against a real mount (issue 14): the images of a
// chain, estimated before adoption, then copied into a chain with cp; what
// the mount stores (chainswap stats, the PAT) is what the estimate said.
#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

// Runs the CLI and parses its JSON output (records a failure otherwise).
nlohmann::json CliJson(const std::vector<std::string>& args) {
  std::vector<std::string> argv{CHAINSWAP_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r = RunCommand(argv, std::chrono::seconds(120));
  EXPECT_EQ(r.status, 0) << r.output;
  // Everything before the first '{' is logging on stderr, if any.
  const size_t brace = r.output.find('{');
  auto j = nlohmann::json::parse(brace == std::string::npos ? "" : r.output.substr(brace), nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON:\n" << r.output;
  return j;
}

// A parent image as a guest's swap looks: runs of zero pages, unique pages,
// compressible text pages and pages repeated within the image; two clones
// that rewrite a share of it, one with a size that is not a whole number of
// blocks.
struct Images {
  std::vector<uint8_t> parent, clone1, clone2;
};

Images MakeImages() {
  constexpr size_t kBlocks = 1024;  // 4 MiB
  std::mt19937_64 rng(2026);
  Images im;
  im.parent.assign(kBlocks * kBlock, 0);
  const std::vector<uint8_t> unique = MakeData(90, kBlocks * kBlock);
  for (size_t i = 0; i < kBlocks; ++i) {
    uint8_t* b = im.parent.data() + i * kBlock;
    const uint64_t x = rng() % 100;
    if (x < 25) continue;  // zero
    if (x < 55) {          // text: compresses well
      for (size_t k = 0; k < kBlock; ++k) b[k] = static_cast<uint8_t>("struct page *p = alloc(); "[k % 26]);
      std::memcpy(b, &i, sizeof i);
    } else if (x < 65 && i > 0) {  // a repeat of an earlier page
      std::memcpy(b, im.parent.data() + (rng() % i) * kBlock, kBlock);
    } else {
      std::memcpy(b, unique.data() + i * kBlock, kBlock);
    }
  }
  im.clone1 = im.parent;
  im.clone2 = im.parent;
  const std::vector<uint8_t> own1 = MakeData(91, kBlocks * kBlock), own2 = MakeData(92, kBlocks * kBlock);
  for (size_t i = 0; i < kBlocks; ++i) {
    if (rng() % 10 == 0) std::memcpy(im.clone1.data() + i * kBlock, own1.data() + i * kBlock, kBlock);
    if (rng() % 10 == 0) std::memcpy(im.clone2.data() + i * kBlock, own2.data() + i * kBlock, kBlock);
  }
  im.clone2.resize(im.clone2.size() - 1000);  // a partial last block
  return im;
}

TEST_F(MountTest, EstimateOfImagesIsWhatTheMountStores) {
  const Images im = MakeImages();
  const std::string src = fs().dir() + "/images";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  const std::vector<std::pair<std::string, const std::vector<uint8_t>*>> files = {
      {"parent.vswp", &im.parent}, {"clone1.vswp", &im.clone1}, {"clone2.vswp", &im.clone2}};
  std::vector<std::string> paths;
  for (const auto& [name, data] : files) {
    paths.push_back(src + "/" + name);
    ASSERT_TRUE(WriteFile(paths.back(), 0, *data));
  }
  std::vector<std::string> args{"estimate", "--json", "--no-progress"};
  args.insert(args.end(), paths.begin(), paths.end());
  const nlohmann::json est = CliJson(args);
  ASSERT_TRUE(est.contains("distinct_blocks")) << est.dump();

  // Adopt: cp the images into a chain, as an operator would.
  ASSERT_TRUE(fs().MakeChain("est"));
  for (const auto& [name, data] : files) {
    CommandResult r = RunCommand({"cp", src + "/" + name, fs().Path("est", name)});
    ASSERT_EQ(r.status, 0) << r.output;
  }
  ASSERT_TRUE(fs().Settle("est"));
  ASSERT_TRUE(WaitUntil([&] { return fs().PatRows("est") == est["distinct_blocks"].get<int64_t>(); }))
      << "PAT rows " << fs().PatRows("est") << ", estimate " << est.dump();

  const nlohmann::json stats = CliJson({"stats", fs().backing(), "--json"});
  const nlohmann::json* chain = nullptr;
  for (const auto& c : stats["chains"])
    if (c.value("name", "") == "est") chain = &c;
  ASSERT_NE(chain, nullptr) << stats.dump();
  // Exact, although the issue allows 1 %: the estimate hashes and counts
  // the same 4 KiB blocks the mount deduplicates.
  EXPECT_EQ((*chain)["stored_bytes"].get<uint64_t>(), est["stored_bytes_compress_off"].get<uint64_t>())
      << chain->dump() << "\n" << est.dump();
  EXPECT_EQ((*chain)["nonzero_bytes"].get<uint64_t>(), est["nonzero_bytes"].get<uint64_t>()) << chain->dump();
  EXPECT_NEAR((*chain)["dedup_ratio"].get<double>(), est["dedup_ratio"].get<double>(), 0.005);
  EXPECT_GT(est["compress_ratio"].get<double>(), 1.2) << "the text pages compress";
  EXPECT_LT(est["stored_bytes_compress_lz4"].get<uint64_t>(), est["stored_bytes_compress_off"].get<uint64_t>());

  // Estimating the copies through the mount reads the same blocks back.
  args = {"estimate", "--json", "--no-progress"};
  for (const auto& [name, data] : files) args.push_back(fs().Path("est", name));
  nlohmann::json through = CliJson(args);
  for (const char* key : {"seconds", "table_bytes", "spill_runs"}) {
    through.erase(key);
  }
  nlohmann::json local = est;
  for (const char* key : {"seconds", "table_bytes", "spill_runs"}) local.erase(key);
  EXPECT_EQ(through, local);
}

TEST(EstimateCliTest, BadArgumentsExitTwoAndUnreadableImagesExitOne) {
  CommandResult r = RunCommand({CHAINSWAP_BIN, "estimate"}, std::chrono::seconds(20));
  EXPECT_EQ(r.status, 2) << r.output;
  r = RunCommand({CHAINSWAP_BIN, "estimate", "/etc/hostname", "--memory", "lots"}, std::chrono::seconds(20));
  EXPECT_EQ(r.status, 2) << r.output;
  r = RunCommand({CHAINSWAP_BIN, "estimate", "/etc/hostname", "--memory", "1M"}, std::chrono::seconds(20));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("too small"), std::string::npos) << r.output;
  r = RunCommand({CHAINSWAP_BIN, "estimate", "/nonexistent/image"}, std::chrono::seconds(20));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("/nonexistent/image"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << "not one line: " << r.output;
}

}  // namespace
}  // namespace chainswap::mounttest
