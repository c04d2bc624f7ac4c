// Observability while mounted (SPEC §3, §6): the catalog answers the sqlite3
// CLI, `chainswap stats` reports per-chain savings, and chain directories
// expose their dedup ID and live statistics as extended attributes.
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

// Chain "pool": two equal 4 MiB files and a 3 MiB file with 2 MiB of other
// data and a 1 MiB hole; chain "idle": empty.
constexpr int64_t kNonZeroBlocks = 1024 + 1024 + 512;
constexpr int64_t kStoredBlocks = 1024 + 512;
constexpr int64_t kLogicalBytes = 11 * kMiB;
constexpr double kRatio = double(kNonZeroBlocks) / double(kStoredBlocks);

class StatsTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(fs().MakeChain("pool"));
    ASSERT_TRUE(fs().MakeChain("idle"));
    const auto shared = MakeData(60, 4 * kMiB);
    ASSERT_TRUE(WriteFile(fs().Path("pool", "vm01.vswp"), 0, shared));
    ASSERT_TRUE(WriteFile(fs().Path("pool", "vm02.vswp"), 0, shared));
    ASSERT_TRUE(WriteFile(fs().Path("pool", "vm03.vswp"), 0, MakeData(61, 2 * kMiB)));
    ASSERT_TRUE(Succeeds(::truncate(fs().Path("pool", "vm03.vswp").c_str(), 3 * kMiB)));
    // The sizes reach the catalog when their bucket retires, after the
    // blocks (which the destager applies first): wait for both.
    ASSERT_TRUE(WaitUntil([&] {
      return fs().PatRows("pool") == kStoredBlocks && fs().TotalLatRows() == kNonZeroBlocks &&
             fs().QueryInt("SELECT coalesce(sum(size), 0) FROM swap_file WHERE name IS NOT NULL") == kLogicalBytes;
    })) << "PAT rows " << fs().PatRows("pool") << ", LAT rows " << fs().TotalLatRows();
  }
};

// getxattr(2) into a string; nullopt with errno on failure.
std::optional<std::string> GetXattr(const std::string& path, const std::string& name) {
  ssize_t n = ::getxattr(path.c_str(), name.c_str(), nullptr, 0);
  if (n < 0) return std::nullopt;
  std::string v(static_cast<size_t>(n), '\0');
  n = ::getxattr(path.c_str(), name.c_str(), v.data(), v.size());
  if (n < 0) return std::nullopt;
  v.resize(static_cast<size_t>(n));
  return v;
}

// Output of the sqlite3 CLI in its default list mode with -header, as
// one map column -> value per row.
std::vector<std::map<std::string, std::string>> ParseListMode(const std::string& out) {
  std::vector<std::map<std::string, std::string>> rows;
  std::istringstream in(out);
  std::string line;
  std::vector<std::string> header;
  auto split = [](const std::string& l) {
    std::vector<std::string> cells;
    std::string cell;
    std::istringstream ls(l);
    while (std::getline(ls, cell, '|')) cells.push_back(cell);
    if (!l.empty() && l.back() == '|') cells.push_back("");
    return cells;
  };
  while (std::getline(in, line)) {
    if (header.empty()) {
      header = split(line);
      continue;
    }
    auto cells = split(line);
    std::map<std::string, std::string> row;
    for (size_t i = 0; i < header.size() && i < cells.size(); ++i) row[header[i]] = cells[i];
    rows.push_back(std::move(row));
  }
  return rows;
}

TEST_F(StatsTest, Sqlite3CliReadsChainStatsWhileMounted) {
  int status = -1;
  auto out = Popen("sqlite3 -header '" + fs().catalog_path() + "' 'select * from chain_stats' 2>&1", &status);
  ASSERT_TRUE(out.has_value());
  ASSERT_EQ(status, 0) << *out;
  auto rows = ParseListMode(*out);
  std::map<std::string, std::string> pool, idle;
  for (auto& r : rows) {
    if (r["chain"] == "pool") pool = r;
    if (r["chain"] == "idle") idle = r;
  }
  ASSERT_FALSE(pool.empty()) << "no row for chain 'pool' in:\n" << *out;
  ASSERT_FALSE(idle.empty()) << "no row for chain 'idle' in:\n" << *out;
  EXPECT_EQ(pool["files"], "3") << *out;
  EXPECT_EQ(pool["stored_bytes"], std::to_string(kStoredBlocks * kBlock)) << *out;
  EXPECT_EQ(pool["nonzero_bytes"], std::to_string(kNonZeroBlocks * kBlock)) << *out;
  EXPECT_EQ(pool["logical_bytes"], std::to_string(kLogicalBytes)) << *out;
  EXPECT_EQ(pool["dedup_id"], std::to_string(fs().DedupIdOf("pool"))) << *out;
  EXPECT_EQ(idle["files"], "0") << *out;
  EXPECT_EQ(idle["stored_bytes"], "0") << *out;

  // file_stats answers too, one row per swap file.
  out = Popen("sqlite3 '" + fs().catalog_path() + "' 'select count(*) from file_stats' 2>&1", &status);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(status, 0) << *out;
  EXPECT_EQ(*out, "3\n");
}

TEST_F(StatsTest, ChainswapStatsJsonShowsTheDedupRatio) {
  int status = -1;
  auto out = Popen(std::string(CHAINSWAP_BIN) + " stats '" + fs().backing() + "' --json 2>/dev/null", &status);
  ASSERT_TRUE(out.has_value());
  ASSERT_EQ(status, 0) << *out;
  auto j = nlohmann::json::parse(*out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << "not JSON:\n" << *out;
  ASSERT_TRUE(j.contains("chains") && j["chains"].is_array()) << *out;
  const nlohmann::json* pool = nullptr;
  for (const auto& c : j["chains"])
    if (c.value("name", "") == "pool") pool = &c;
  ASSERT_NE(pool, nullptr) << "no chain 'pool' in:\n" << *out;
  ASSERT_TRUE(pool->contains("dedup_ratio")) << pool->dump();
  EXPECT_NEAR((*pool)["dedup_ratio"].get<double>(), kRatio, 0.01) << pool->dump();
  EXPECT_EQ(pool->value("files", -1), 3) << pool->dump();
  EXPECT_EQ(pool->value("stored_bytes", int64_t{-1}), kStoredBlocks * int64_t{kBlock}) << pool->dump();
  EXPECT_EQ(pool->value("dedup_id", int64_t{-1}), fs().DedupIdOf("pool")) << pool->dump();

  // The human table names the chain too.
  out = Popen(std::string(CHAINSWAP_BIN) + " stats '" + fs().backing() + "' 2>&1", &status);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(status, 0) << *out;
  EXPECT_NE(out->find("pool"), std::string::npos) << *out;
}

TEST_F(StatsTest, ChainXattrsExposeDedupIdAndStatistics) {
  const std::string pool = fs().Path("pool");
  const std::string idle = fs().Path("idle");
  auto pool_id = GetXattr(pool, "user.chainswap.dedup_id");
  auto idle_id = GetXattr(idle, "user.chainswap.dedup_id");
  ASSERT_TRUE(pool_id.has_value()) << ErrnoName(errno);
  ASSERT_TRUE(idle_id.has_value()) << ErrnoName(errno);
  EXPECT_EQ(*pool_id, std::to_string(fs().DedupIdOf("pool")));
  EXPECT_EQ(*idle_id, std::to_string(fs().DedupIdOf("idle")));
  EXPECT_NE(*pool_id, *idle_id) << "two chains share a dedup ID";

  // listxattr names every statistic.
  std::string names(4096, '\0');
  ssize_t n = ::listxattr(pool.c_str(), names.data(), names.size());
  ASSERT_GT(n, 0) << ErrnoName(errno);
  names.resize(static_cast<size_t>(n));
  for (const char* key : {"dedup_id", "files", "logical_bytes", "nonzero_bytes", "stored_bytes", "saved_bytes",
                          "dedup_ratio"}) {
    EXPECT_NE(names.find(std::string("user.chainswap.") + key + '\0'), std::string::npos) << key;
  }
  EXPECT_EQ(GetXattr(pool, "user.chainswap.files").value_or("?"), "3");
  EXPECT_EQ(GetXattr(pool, "user.chainswap.logical_bytes").value_or("?"), std::to_string(kLogicalBytes));
  EXPECT_EQ(GetXattr(pool, "user.chainswap.nonzero_bytes").value_or("?"), std::to_string(kNonZeroBlocks * kBlock));
  EXPECT_EQ(GetXattr(pool, "user.chainswap.stored_bytes").value_or("?"), std::to_string(kStoredBlocks * kBlock));
  EXPECT_EQ(GetXattr(pool, "user.chainswap.saved_bytes").value_or("?"),
            std::to_string((kNonZeroBlocks - kStoredBlocks) * kBlock));
  auto ratio = GetXattr(pool, "user.chainswap.dedup_ratio");
  ASSERT_TRUE(ratio.has_value()) << ErrnoName(errno);
  EXPECT_NEAR(std::strtod(ratio->c_str(), nullptr), kRatio, 0.01) << *ratio;
  EXPECT_EQ(GetXattr(idle, "user.chainswap.files").value_or("?"), "0");
  // Swap files carry no chainswap attributes.
  EXPECT_TRUE(FailsWith(::getxattr(fs().Path("pool", "vm01.vswp").c_str(), "user.chainswap.dedup_id", nullptr, 0),
                        ENODATA));

  // The dedup ID is the chain's for good: the same after a remount.
  ASSERT_TRUE(fs().Remount());
  EXPECT_EQ(GetXattr(pool, "user.chainswap.dedup_id").value_or("?"), *pool_id);
  EXPECT_EQ(GetXattr(idle, "user.chainswap.dedup_id").value_or("?"), *idle_id);
}

}  // namespace
}  // namespace chainswap::mounttest
