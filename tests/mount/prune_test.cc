// The bounded chain hash table through the mount and the CLI (issue 16):
// hash_table_limit= (at the quota, writes keep succeeding and new blocks get
// no hash entry), `chainswap prune` on an unmounted backing directory, and
// what `chainswap stats` and `chainswap fsck` say about it.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

constexpr int64_t kBlocks = 1024;  // 4 MiB of distinct blocks

int64_t Unindexed(const MountedFs& fs) { return fs.QueryInt("SELECT count(*) FROM pat WHERE hash_key IS NULL"); }

CommandResult Chainswap(std::vector<std::string> args) {
  args.insert(args.begin(), CHAINSWAP_BIN);
  return RunCommand(args);
}

TEST(PruneMountTest, AtTheQuotaWritesKeepSucceedingAndStatsShowIt) {
  MountedFs fs({"hash_table_limit=256"});
  ASSERT_TRUE(fs.formatted());
  ASSERT_TRUE(fs.Mount());
  ASSERT_TRUE(fs.MakeChain("pool"));
  const auto data = MakeData(80, kBlocks * kBlock);
  ASSERT_TRUE(WriteFile(fs.Path("pool", "vm01.vswp"), 0, data));
  ASSERT_TRUE(WaitUntil([&] { return fs.PatRows("pool") == kBlocks; })) << fs.PatRows("pool");
  EXPECT_EQ(Unindexed(fs), kBlocks - 256);
  // The same data again: only the 256 blocks with an entry deduplicate.
  ASSERT_TRUE(WriteFile(fs.Path("pool", "vm02.vswp"), 0, data));
  ASSERT_TRUE(WaitUntil([&] { return fs.TotalLatRows() == 2 * kBlocks; })) << fs.TotalLatRows();
  EXPECT_EQ(fs.PatRows("pool"), 2 * kBlocks - 256);
  EXPECT_EQ(Unindexed(fs), 2 * (kBlocks - 256));
  EXPECT_TRUE(FileEquals(fs.Path("pool", "vm01.vswp"), data));
  EXPECT_TRUE(FileEquals(fs.Path("pool", "vm02.vswp"), data));
  EXPECT_TRUE(fs.CatalogInvariantsHold());
  EXPECT_NE(fs.DaemonLog().find("at its quota"), std::string::npos) << "the quota is logged when reached";

  CommandResult r = Chainswap({"stats", "--json", fs.backing()});
  ASSERT_EQ(r.status, 0) << r.output;
  auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_EQ(j["hash_table"]["entries"], 256);
  EXPECT_EQ(j["hash_table"]["unindexed_blocks"], 2 * (kBlocks - 256));
  EXPECT_EQ(j["hash_table"]["limit_entries"], 256);
  r = Chainswap({"stats", "--prometheus", fs.backing()});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("chainswap_hash_entries{backing="), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("} 256\n"), std::string::npos);
  EXPECT_NE(r.output.find("chainswap_hash_unindexed_blocks{"), std::string::npos);
  EXPECT_NE(r.output.find("chainswap_hash_table_limit_entries{"), std::string::npos);
  r = Chainswap({"stats", fs.backing()});
  EXPECT_NE(r.output.find("hash table: 256 entries, 1536 block(s) without one"), std::string::npos) << r.output;

  // Punch vm01: its blocks without a second reference are freed, entry or not.
  ASSERT_TRUE(Succeeds(::truncate(fs.Path("pool", "vm01.vswp").c_str(), 0)));
  ASSERT_TRUE(WaitUntil([&] { return fs.PatRows("pool") == kBlocks; })) << fs.PatRows("pool");
  EXPECT_EQ(Unindexed(fs), kBlocks - 256);
  EXPECT_TRUE(fs.CatalogInvariantsHold());

  ASSERT_TRUE(fs.Unmount());
  r = Chainswap({"fsck", "--json", fs.backing()});
  ASSERT_EQ(r.status, 0) << r.output;
  j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_EQ(j["unindexed_blocks"], kBlocks - 256);
}

TEST(PruneMountTest, PruneOnTheUnmountedDirectoryThenPrunedBlocksAreNotDeduplicated) {
  MountedFs fs;
  ASSERT_TRUE(fs.formatted());
  ASSERT_TRUE(fs.Mount());
  ASSERT_TRUE(fs.MakeChain("pool"));
  const auto shared = MakeData(81, 512 * kBlock);
  const auto unique = MakeData(82, 512 * kBlock);
  ASSERT_TRUE(WriteFile(fs.Path("pool", "vm01.vswp"), 0, shared));
  ASSERT_TRUE(WriteFile(fs.Path("pool", "vm01.vswp"), 512 * kBlock, unique));
  ASSERT_TRUE(WriteFile(fs.Path("pool", "vm02.vswp"), 0, shared));
  ASSERT_TRUE(WaitUntil([&] { return fs.TotalLatRows() == 1536; })) << fs.TotalLatRows();
  ASSERT_EQ(fs.PatRows("pool"), 1024);

  CommandResult r = Chainswap({"prune", fs.backing(), "--percent", "50"});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("unmount it first"), std::string::npos) << r.output;
  ASSERT_TRUE(fs.Unmount());

  // Wrong arguments: exit 2 and a message.
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"prune", fs.backing()},
        {"prune", fs.backing(), "--percent", "50", "--older-than", "1d"},
        {"prune", fs.backing(), "--older-than", "soon"},
        {"prune", fs.backing(), "--percent", "150"}}) {
    r = Chainswap(bad);
    EXPECT_EQ(r.status, 2) << bad.back() << ": " << r.output;
    EXPECT_FALSE(r.output.empty());
  }
  // Nothing is a week old yet.
  r = Chainswap({"prune", fs.backing(), "--older-than", "1w", "--json"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(nlohmann::json::parse(r.output)["pruned"], 0);
  // Half of the 512 entries of refcount 1; the shared blocks keep theirs.
  r = Chainswap({"prune", fs.backing(), "--percent", "50", "--json"});
  ASSERT_EQ(r.status, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["pruned"], 256);
  EXPECT_EQ(j["hash_entries"], 768);
  EXPECT_EQ(j["unindexed_blocks"], 256);
  EXPECT_EQ(fs.QueryInt("SELECT count(*) FROM pat WHERE hash_key IS NULL AND refcount > 1"), 0);
  EXPECT_EQ(fs.QueryInt("SELECT count(*) FROM hash_log"), 0);
  r = Chainswap({"fsck", fs.backing()});
  EXPECT_EQ(r.status, 0) << r.output;

  ASSERT_TRUE(fs.Mount());
  EXPECT_TRUE(FileEquals(fs.Path("pool", "vm01.vswp"), [&] {
    auto all = shared;
    all.insert(all.end(), unique.begin(), unique.end());
    return all;
  }()));
  // The unique data again: the 256 pruned blocks are stored anew, the
  // other 256 deduplicate; the shared data deduplicates entirely.
  ASSERT_TRUE(WriteFile(fs.Path("pool", "vm03.vswp"), 0, unique));
  ASSERT_TRUE(WriteFile(fs.Path("pool", "vm04.vswp"), 0, shared));
  ASSERT_TRUE(WaitUntil([&] { return fs.TotalLatRows() == 2560; })) << fs.TotalLatRows();
  EXPECT_EQ(fs.PatRows("pool"), 1024 + 256);
  // Unlinking vm01 frees exactly its pruned blocks (the others have a
  // second reference now).
  ASSERT_TRUE(Succeeds(::unlink(fs.Path("pool", "vm01.vswp").c_str())));
  ASSERT_TRUE(WaitUntil([&] { return fs.PatRows("pool") == 1024; })) << fs.PatRows("pool");
  EXPECT_EQ(Unindexed(fs), 0);
  EXPECT_TRUE(fs.CatalogInvariantsHold());
  ASSERT_TRUE(fs.Unmount());
  r = Chainswap({"fsck", fs.backing()});
  EXPECT_EQ(r.status, 0) << r.output;
}

}  // namespace
}  // namespace chainswap::mounttest
