// Prometheus metrics (issue 16): the daemon's metrics file (mount options
// metrics_file=, metrics_interval=) and `chainswap stats --prometheus`,
// parsed with a real parser — Debian's python3-prometheus-client
// (prometheus_client.parser.text_string_to_metric_families, run under
// /usr/bin/python3) — and checked against the catalog; a bad metrics_file is
// a clear mount error; the file is replaced atomically, never seen torn.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/mount/extra_util.h"
#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

using extra::Cli;
using extra::Describe;
using extra::Exists;
using extra::IsMounted;
using extra::ListDir;

// Parses every file named (one path a line in argv[1]) with prometheus_client and prints, as JSON, one
// list per file of its families {name, type, help, samples: [{name, labels,
// value}]}. Exits non-zero naming the problem when the parser fails, or when
// a family is untyped (the parser makes a sample that does not follow its
// family's HELP/TYPE an untyped family of its own), has no HELP, or comes
// twice (its samples were not together).
constexpr const char* kParser = R"py(
import json, sys
from prometheus_client.parser import text_string_to_metric_families
result = []
for path in sys.argv[1].split("\n"):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    families, seen = [], set()
    for fam in text_string_to_metric_families(text):
        where = "%s: family %s" % (path, fam.name)
        if fam.name in seen:
            sys.exit(where + " appears twice (its samples are not together)")
        seen.add(fam.name)
        if fam.type not in ("gauge", "counter"):
            sys.exit(where + " has type " + fam.type + " (a sample outside its family, or no TYPE)")
        if not fam.documentation:
            sys.exit(where + " has no HELP")
        families.append({"name": fam.name, "type": fam.type, "help": fam.documentation,
                         "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in fam.samples]})
    result.append(families)
print(json.dumps(result))
)py";

// One file's parsed families.
struct Parsed {
  nlohmann::json families = nlohmann::json::array();

  // The value of the sample `name` with exactly these labels (besides
  // `backing`), or nullopt.
  std::optional<double> Value(const std::string& name, const std::map<std::string, std::string>& labels = {}) const {
    for (const auto& fam : families)
      for (const auto& s : fam["samples"]) {
        if (s["name"] != name) continue;
        std::map<std::string, std::string> got = s["labels"].get<std::map<std::string, std::string>>();
        got.erase("backing");
        if (got == labels) return s["value"].get<double>();
      }
    return std::nullopt;
  }
  const nlohmann::json* Family(const std::string& name) const {
    for (const auto& fam : families)
      if (fam["name"] == name) return &fam;
    return nullptr;
  }
  // Every sample name with its labels (backing included) -> value, for
  // comparing two outputs.
  std::map<std::string, double> All() const {
    std::map<std::string, double> out;
    for (const auto& fam : families)
      for (const auto& s : fam["samples"]) out[s["name"].get<std::string>() + s["labels"].dump()] = s["value"];
    return out;
  }
};

// Runs the parser over `paths`; on success fills *out (one per path).
::testing::AssertionResult ParseWithPrometheusClient(const std::vector<std::string>& paths, std::vector<Parsed>* out) {
  std::string lines;
  for (const std::string& p : paths) lines += (lines.empty() ? "" : "\n") + p;
  CommandResult r = RunCommand({"/usr/bin/python3", "-c", kParser, lines}, std::chrono::seconds(60));
  if (r.status != 0) return ::testing::AssertionFailure() << "prometheus_client parser: " << Describe(r);
  auto j = nlohmann::json::parse(r.output, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_array() || j.size() != paths.size())
    return ::testing::AssertionFailure() << "parser output is not what it should be: " << r.output;
  out->clear();
  for (auto& files : j) out->push_back(Parsed{files});
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult ParseOne(const std::string& path, Parsed* out) {
  std::vector<Parsed> v;
  auto r = ParseWithPrometheusClient({path}, &v);
  if (r) *out = v[0];
  return r;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  return static_cast<bool>(out);
}

// A directory for node_exporter's textfile collector, outside the mount's
// temp dir (the mount options name it before MountedFs exists).
class TextfileDir {
 public:
  TextfileDir() {
    char tmpl[] = "/tmp/chainswap-textfile-XXXXXX";
    if (::mkdtemp(tmpl)) path_ = tmpl;
    else ADD_FAILURE() << "mkdtemp: " << ErrnoName(errno);
  }
  ~TextfileDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Chain "pool": vm01 = 4 MiB shared + 1 MiB of its own, and a file with an
// awkward name (quote, backslash, newline: every escape of a label value)
// holding the same 4 MiB; its size is 6 MiB (a 2 MiB hole at the end).
constexpr int64_t kSharedBlocks = 1024;
constexpr int64_t kOwnBlocks = 256;
const std::string kOddName = "vm \"02\"\\\nb";

class MetricsTest : public MountTest {
 protected:
  std::vector<std::string> MountOptions() const override {
    return {"metrics_file=" + prom(), "metrics_interval=1", "journal_limit=64M"};
  }
  std::string prom() const { return textfile_.path() + "/chainswap.prom"; }

  // Writes the chain and waits until the catalog holds it all.
  void WriteChain() {
    ASSERT_TRUE(fs().MakeChain("pool"));
    const auto shared = MakeData(160, kSharedBlocks * kBlock);
    ASSERT_TRUE(WriteFile(fs().Path("pool", "vm01"), 0, shared));
    ASSERT_TRUE(WriteFile(fs().Path("pool", "vm01"), shared.size(), MakeData(161, kOwnBlocks * kBlock)));
    ASSERT_TRUE(WriteFile(fs().Path("pool", kOddName), 0, shared));
    ASSERT_TRUE(Succeeds(::truncate(fs().Path("pool", kOddName).c_str(), 6 * kMiB)));
    ASSERT_TRUE(WaitUntil([&] {
      return fs().PatRows("pool") == kSharedBlocks + kOwnBlocks && fs().TotalLatRows() == 2 * kSharedBlocks + kOwnBlocks &&
             fs().QueryInt("select count(*) from swap_file where size = ?1", {std::to_string(6 * kMiB)}) == 1;
    })) << "PAT rows " << fs().PatRows("pool") << ", LAT rows " << fs().TotalLatRows();
  }

  // Checks every figure of `p` that the catalog can confirm. `live`: the
  // daemon's figures are expected too.
  void ExpectMatchesCatalog(const Parsed& p, bool live) {
    const int64_t stored = fs().PatRows("pool") * int64_t{kBlock};
    const int64_t nonzero = fs().QueryInt(
        "select count(*) from lat join swap_file using (file_id) join chain using (dedup_id) where chain.name = 'pool'") *
                            int64_t{kBlock};
    const int64_t logical = fs().QueryInt(
        "select sum(size) from swap_file join chain using (dedup_id) where chain.name = 'pool' and swap_file.name is not null");
    ASSERT_EQ(stored, (kSharedBlocks + kOwnBlocks) * int64_t{kBlock});
    const std::map<std::string, std::string> pool = {{"chain", "pool"}};
    EXPECT_EQ(p.Value("chainswap_up"), live ? 1.0 : 0.0);
    EXPECT_EQ(p.Value("chainswap_chain_files", pool), 2.0);
    EXPECT_EQ(p.Value("chainswap_chain_stored_bytes", pool), double(stored));
    EXPECT_EQ(p.Value("chainswap_chain_nonzero_bytes", pool), double(nonzero));
    EXPECT_EQ(p.Value("chainswap_chain_logical_bytes", pool), double(logical));
    EXPECT_EQ(p.Value("chainswap_chain_saved_bytes", pool), double(nonzero - stored));
    EXPECT_EQ(p.Value("chainswap_chain_zero_bytes", pool), double(2 * kMiB));
    const double saved_ratio = p.Value("chainswap_chain_dedup_saved_ratio", pool).value_or(-1);
    EXPECT_NEAR(saved_ratio, double(nonzero - stored) / double(nonzero), 1e-9);
    EXPECT_GE(saved_ratio, 0.0);
    EXPECT_LE(saved_ratio, 1.0);
    EXPECT_NEAR(p.Value("chainswap_chain_dedup_factor", pool).value_or(-1), double(nonzero) / double(stored), 1e-9);
    for (const std::string& file : {std::string("vm01"), kOddName}) {
      const std::map<std::string, std::string> l = {{"chain", "pool"}, {"file", file}};
      EXPECT_EQ(p.Value("chainswap_file_nonzero_bytes", l), double(fs().LatRows("pool", file) * int64_t{kBlock})) << file;
      EXPECT_EQ(p.Value("chainswap_file_logical_bytes", l),
                double(fs().QueryInt("select size from swap_file where name = ?1", {file})))
          << file;
    }
    EXPECT_EQ(p.Value("chainswap_store_used_bytes"), double(fs().TotalPatRows() * int64_t{kBlock}));
    EXPECT_GT(p.Value("chainswap_catalog_bytes").value_or(0), 0.0);
    EXPECT_GE(p.Value("chainswap_catalog_bytes").value_or(0), p.Value("chainswap_catalog_wal_bytes").value_or(-1));
    EXPECT_TRUE(p.Value("chainswap_journal_oldest_bucket_age_seconds").has_value());
    // HELP and TYPE as the conventions want them.
    for (const auto& fam : p.families) {
      const std::string name = fam["name"];
      EXPECT_EQ(name.rfind("chainswap_", 0), 0u) << name;
      if (fam["type"] == "counter") {
        for (const auto& s : fam["samples"]) EXPECT_EQ(s["name"], name + "_total");
      }
    }
    ASSERT_NE(p.Family("chainswap_chain_dedup_factor"), nullptr);
    EXPECT_NE((*p.Family("chainswap_chain_dedup_factor"))["help"].get<std::string>().find("not a 0-1 ratio"),
              std::string::npos);
    if (!live) {
      EXPECT_EQ(p.Family("chainswap_journal_bytes"), nullptr);
      EXPECT_EQ(p.Family("chainswap_blocks_stored"), nullptr);
      return;
    }
    // The daemon's counters since this mount: every block was written once.
    EXPECT_EQ(p.Value("chainswap_blocks_stored_total"), double(stored / int64_t{kBlock}));
    EXPECT_EQ(p.Value("chainswap_blocks_deduplicated_total"), double((nonzero - stored) / int64_t{kBlock}));
    EXPECT_EQ(p.Value("chainswap_blocks_freed_total"), 0.0);
    EXPECT_EQ(p.Value("chainswap_enospc_total"), 0.0);
    ASSERT_NE(p.Family("chainswap_blocks_stored"), nullptr);  // prometheus_client drops _total from a counter family
    EXPECT_EQ((*p.Family("chainswap_blocks_stored"))["type"], "counter");
    EXPECT_EQ(p.Value("chainswap_journal_limit_bytes"), double(64 * kMiB));
    EXPECT_EQ(p.Value("chainswap_journal_pending_records"), 0.0);
    EXPECT_EQ(p.Value("chainswap_queue_slots"), 64.0);
    EXPECT_TRUE(p.Value("chainswap_queue_delete_slots").has_value());
    EXPECT_TRUE(p.Value("chainswap_destage_w_bucket").has_value());
    EXPECT_TRUE(p.Value("chainswap_destage_x_bucket").has_value());
    EXPECT_EQ(p.Value("chainswap_destage_error"), 0.0);
  }

  TextfileDir textfile_;
};

TEST_F(MetricsTest, MetricsFileAndStatsPrometheusParseAndMatchTheCatalog) {
  WriteChain();
  if (HasFatalFailure()) return;
  // The file follows within a few intervals; wait for one written after the
  // destage settled (the counters included).
  Parsed file;
  ASSERT_TRUE(WaitUntil([&] {
    Parsed p;
    if (!ParseOne(prom(), &p)) return false;
    file = p;
    return p.Value("chainswap_chain_stored_bytes", {{"chain", "pool"}}) == double(fs().PatRows("pool") * int64_t{kBlock}) &&
           p.Value("chainswap_chain_logical_bytes", {{"chain", "pool"}}) == double(11 * kMiB) &&
           p.Value("chainswap_blocks_stored_total") == double(kSharedBlocks + kOwnBlocks) &&
           p.Value("chainswap_journal_pending_records") == 0.0;
  }, std::chrono::seconds(60))) << ReadAll(prom());
  ExpectMatchesCatalog(file, /*live=*/true);
  struct stat st;
  ASSERT_EQ(::stat(prom().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);

  // `chainswap stats --prometheus` on the mounted backing dir: the same
  // figures (the catalog has settled; destage.json is rewritten every second).
  const std::string cli_out = textfile_.path() + "/cli.txt";
  CommandResult r = Cli({"stats", fs().backing(), "--prometheus"});
  ASSERT_EQ(r.status, 0) << Describe(r);
  ASSERT_TRUE(WriteText(cli_out, r.output));
  Parsed cli;
  ASSERT_TRUE(ParseOne(cli_out, &cli)) << r.output;
  ExpectMatchesCatalog(cli, /*live=*/true);
  std::map<std::string, double> from_file = file.All(), from_cli = cli.All();
  for (const auto& [series, value] : from_file) {
    const bool catalog_only = series.rfind("chainswap_chain_", 0) == 0 || series.rfind("chainswap_file_", 0) == 0 ||
                              series.rfind("chainswap_store_used", 0) == 0 || series.rfind("chainswap_blocks_", 0) == 0;
    if (!catalog_only) continue;
    ASSERT_TRUE(from_cli.count(series)) << series << " is missing from chainswap stats --prometheus";
    EXPECT_EQ(from_cli[series], value) << series;
  }
  // The same families in the same order.
  ASSERT_EQ(file.families.size(), cli.families.size());
  for (size_t i = 0; i < file.families.size(); ++i) EXPECT_EQ(file.families[i]["name"], cli.families[i]["name"]);

  // Unmounted: the daemon's last write says it is down; the CLI still reads
  // the catalog, without the engine's figures.
  ASSERT_TRUE(fs().Unmount());
  Parsed down;
  ASSERT_TRUE(ParseOne(prom(), &down)) << ReadAll(prom());
  EXPECT_EQ(down.Value("chainswap_up"), 0.0) << ReadAll(prom());
  EXPECT_FALSE(Exists(prom() + ".tmp"));
  r = Cli({"stats", fs().backing(), "--prometheus"});
  ASSERT_EQ(r.status, 0) << Describe(r);
  ASSERT_TRUE(WriteText(cli_out, r.output));
  ASSERT_TRUE(ParseOne(cli_out, &cli)) << r.output;
  ExpectMatchesCatalog(cli, /*live=*/false);
  ASSERT_TRUE(fs().Mount());  // for the fixture's clean unmount
}

TEST_F(MetricsTest, TheFileIsReplacedAtomicallyWhileTheDaemonRewritesIt) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  // Content that changes every round: data being written and destaged.
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    uint64_t seed = 500;
    while (!stop) {
      if (!WriteFile(fs().Path("pool", "vm" + std::to_string(seed % 3)), (seed % 16) * kMiB, MakeData(seed, 256 * kKiB)))
        break;
      ++seed;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  // Read it over and over for a few rewrites (metrics_interval=1).
  std::set<ino_t> inodes;
  std::set<std::string> contents;
  uint64_t reads = 0;
  std::string bad;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(6);
  while (std::chrono::steady_clock::now() < deadline && bad.empty()) {
    int fd = ::open(prom().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;  // before the first write
    struct stat st;
    ::fstat(fd, &st);
    std::string text;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
    ::close(fd);
    ++reads;
    inodes.insert(st.st_ino);
    // Whole: from the first family to the last, ending with a newline.
    if (text.empty() || text.rfind("# HELP chainswap_up ", 0) != 0 || text.back() != '\n' ||
        text.find("\nchainswap_queue_policy_changes_total{") == std::string::npos)
      bad = text;
    contents.insert(text);
    std::this_thread::sleep_for(std::chrono::microseconds(200));  // leave the daemon some CPU
  }
  stop = true;
  writer.join();
  EXPECT_TRUE(bad.empty()) << "a torn read after " << reads << " reads:\n" << bad;
  EXPECT_GE(inodes.size(), 3u) << "the file was not rewritten (rename gives a new inode) in " << reads << " reads";
  EXPECT_GE(reads, 100u);
  // Every distinct content read parses.
  std::vector<std::string> paths;
  for (const std::string& c : contents) {
    paths.push_back(textfile_.path() + "/read-" + std::to_string(paths.size()) + ".txt");
    ASSERT_TRUE(WriteText(paths.back(), c));
  }
  std::vector<Parsed> parsed;
  ASSERT_TRUE(ParseWithPrometheusClient(paths, &parsed));
  for (const Parsed& p : parsed) EXPECT_EQ(p.Value("chainswap_up"), 1.0);
  // No temporary file is left for the textfile collector to trip over; the
  // collector reads only *.prom, and the temporary name does not match.
  EXPECT_EQ(ListDir(textfile_.path()).count("chainswap.prom"), 1u);
}

TEST(MetricsMountTest, BadMetricsOptionsAreClearMountErrors) {
  MountedFs fs;
  ASSERT_TRUE(fs.formatted());
  struct Case {
    std::string options;
    int status;
    std::vector<std::string> says;
  };
  const std::string missing = fs.dir() + "/no-such-dir";
  const std::vector<Case> cases = {
      {"metrics_file=" + missing + "/chainswap.prom", 1, {"metrics_file=", missing, "does not exist"}},
      {"metrics_file=" + fs.mnt() + "/chainswap.prom", 1, {"metrics_file=", "under the mountpoint"}},
      {"metrics_file=chainswap.prom", 2, {"metrics_file=chainswap.prom", "absolute"}},
      {"metrics_file=" + fs.dir() + "/m.prom,metrics_interval=0", 2, {"metrics_interval=0", "1 to 3600"}},
      {"metrics_interval=30", 2, {"metrics_interval= needs metrics_file="}},
  };
  for (const Case& c : cases) {
    CommandResult r = RunCommand({CHAINSWAPFS_BIN, fs.backing(), fs.mnt(), "-f", "-o", c.options}, std::chrono::seconds(20));
    if (IsMounted(fs.mnt())) {
      RunCommand({"fusermount3", "-uz", fs.mnt()}, std::chrono::seconds(10));
      ADD_FAILURE() << c.options << " mounted";
    }
    EXPECT_FALSE(r.timed_out) << c.options << ": " << Describe(r);
    EXPECT_EQ(r.status, c.status) << c.options << ": " << Describe(r);
    for (const std::string& s : c.says)
      EXPECT_NE(r.output.find(s), std::string::npos) << c.options << " does not say \"" << s << "\": " << Describe(r);
  }
  EXPECT_FALSE(Exists(missing));  // nothing created
  ASSERT_TRUE(fs.Mount());
}

}  // namespace
}  // namespace chainswap::mounttest
