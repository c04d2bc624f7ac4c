// Prometheus metrics: the text-format writer (fs/prometheus.h), the families
// rendered from the figures (fs/metrics.h), the figures read from a catalog
// (fs/figures.h), the published destage figures' JSON, and the daemon's
// metrics-file writer (fs/metrics_writer.h): atomic rewrite, mode 0644,
// failures that are counted and retried, never fatal.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "fs/figures.h"
#include "fs/metrics.h"
#include "fs/metrics_writer.h"
#include "fs/prometheus.h"
#include "test_util.h"

namespace chainswap {
namespace {

using test::PatternBlock;
using test::TempDir;
using test::WriteOp;

// A strict reading of the text format 0.0.4 (what the Go parser and promtool
// insist on, which the Python parser lets pass): every line is a HELP, a
// TYPE or a sample; each family has exactly one HELP and one TYPE, both
// before its samples; a family's samples are together; sample names equal
// their family's; counters end in _total; label values are quoted with only
// \\, \" and \n escapes; no series twice; values parse as floats.
std::vector<std::string> StrictProblems(const std::string& text) {
  static const std::regex kHelp(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$)");
  static const std::regex kType(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$)");
  static const std::regex kSample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")*\})? (\S+)$)");
  std::vector<std::string> problems;
  std::set<std::string> done, series;
  std::string family;
  bool help = false, type = false;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  if (!text.empty() && text.back() != '\n') problems.push_back("the text does not end with a newline");
  while (std::getline(in, line)) {
    ++n;
    const std::string at = "line " + std::to_string(n) + " '" + line + "': ";
    std::smatch m;
    if (std::regex_match(line, m, kHelp) || std::regex_match(line, m, kType)) {
      const bool is_help = line.compare(0, 6, "# HELP") == 0;
      const std::string name = m[1];
      if (name != family) {
        if (done.count(name)) problems.push_back(at + "family " + name + " appears again");
        if (!family.empty()) done.insert(family);
        family = name;
        help = type = false;
      }
      if ((is_help && help) || (!is_help && type)) problems.push_back(at + "second HELP/TYPE");
      if (!is_help && m[2] == "counter" && name.size() < 6) problems.push_back(at + "counter name too short");
      if (!is_help && m[2] == "counter" && name.substr(name.size() - 6) != "_total")
        problems.push_back(at + "counter not named *_total");
      (is_help ? help : type) = true;
      continue;
    }
    if (!std::regex_match(line, m, kSample)) {
      problems.push_back(at + "not a HELP, TYPE or sample line");
      continue;
    }
    if (m[1] != family) problems.push_back(at + "sample outside its family " + family);
    if (!help || !type) problems.push_back(at + "sample before its family's HELP and TYPE");
    if (!series.insert(std::string(m[1]) + std::string(m[2])).second) problems.push_back(at + "series twice");
    const std::string v = m[m.size() - 1];
    if (v != "NaN" && v != "+Inf" && v != "-Inf") {
      char* end = nullptr;
      std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0') problems.push_back(at + "value is not a float");
    }
  }
  return problems;
}

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}

// name{labels} -> value text, for every sample line.
std::map<std::string, std::string> Samples(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.rfind(' ');
    out[line.substr(0, sp)] = line.substr(sp + 1);
  }
  return out;
}

// ------------------------------------------------------------ the writer

TEST(MetricsTextTest, LabelValuesAndHelpAreEscaped) {
  EXPECT_EQ(EscapeLabelValue("plain"), "plain");
  EXPECT_EQ(EscapeLabelValue("a\\b"), "a\\\\b");
  EXPECT_EQ(EscapeLabelValue("say \"hi\""), "say \\\"hi\\\"");
  EXPECT_EQ(EscapeLabelValue("two\nlines"), "two\\nlines");
  EXPECT_EQ(EscapeLabelValue("\\\"\n"), "\\\\\\\"\\n");
  // HELP escapes backslash and newline, not the double quote.
  EXPECT_EQ(EscapeHelp("a \"b\" \\ c\nd"), "a \"b\" \\\\ c\\nd");
  // Valid UTF-8 stays; invalid bytes (a file name may hold any) become U+FFFD.
  EXPECT_EQ(EscapeLabelValue("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"), "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
  EXPECT_EQ(EscapeLabelValue("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(EscapeLabelValue("\xC3"), "\xEF\xBF\xBD");              // truncated sequence
  EXPECT_EQ(EscapeLabelValue("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong '/'
  EXPECT_EQ(EscapeLabelValue("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
}

TEST(MetricsTextTest, FamiliesHaveHelpAndTypeBeforeTheirSamples) {
  std::string out;
  ExpositionWriter w(&out);
  ASSERT_TRUE(w.Family("chainswap_x_bytes", MetricType::kGauge, "Help with \\ and\nnewline"));
  w.Sample({{"chain", "a\"b"}, {"file", "c\\d\ne"}}, uint64_t{18446744073709551615ull});
  w.Sample({{"chain", "z"}}, 0.25);
  ASSERT_TRUE(w.Family("chainswap_y_total", MetricType::kCounter, "Count"));
  w.Sample({}, uint64_t{7});
  EXPECT_TRUE(w.problems().empty()) << Join(w.problems());
  EXPECT_EQ(out,
            "# HELP chainswap_x_bytes Help with \\\\ and\\nnewline\n"
            "# TYPE chainswap_x_bytes gauge\n"
            "chainswap_x_bytes{chain=\"a\\\"b\",file=\"c\\\\d\\ne\"} 18446744073709551615\n"
            "chainswap_x_bytes{chain=\"z\"} 0.25\n"
            "# HELP chainswap_y_total Count\n"
            "# TYPE chainswap_y_total counter\n"
            "chainswap_y_total 7\n");
  EXPECT_TRUE(StrictProblems(out).empty()) << Join(StrictProblems(out));
}

TEST(MetricsTextTest, RefusesWhatWouldBreakTheFormat) {
  std::string out;
  ExpositionWriter w(&out);
  w.Sample({}, uint64_t{1});  // before any family
  EXPECT_FALSE(w.Family("chainswap_blocks", MetricType::kCounter, "no _total"));
  w.Sample({}, uint64_t{1});  // dropped with its family
  EXPECT_FALSE(w.Family("9starts_with_a_digit", MetricType::kGauge, "h"));
  EXPECT_FALSE(w.Family("has-dash", MetricType::kGauge, "h"));
  ASSERT_TRUE(w.Family("chainswap_ok", MetricType::kGauge, "h"));
  w.Sample({{"__reserved", "x"}}, uint64_t{1});
  w.Sample({{"bad-label", "x"}}, uint64_t{1});
  w.Sample({{"a", "1"}, {"a", "2"}}, uint64_t{1});
  w.Sample({{"a", "1"}}, uint64_t{1});
  w.Sample({{"a", "1"}}, uint64_t{2});  // the same series again
  EXPECT_FALSE(w.Family("chainswap_ok", MetricType::kGauge, "opened twice: samples would be split"));
  EXPECT_EQ(w.problems().size(), 9u) << Join(w.problems());
  EXPECT_EQ(out, "# HELP chainswap_ok h\n# TYPE chainswap_ok gauge\nchainswap_ok{a=\"1\"} 1\n");
  EXPECT_TRUE(StrictProblems(out).empty()) << Join(StrictProblems(out));
}

TEST(MetricsTextTest, ValuesReadBackExactly) {
  EXPECT_EQ(FormatValue(0.0), "0");
  EXPECT_EQ(FormatValue(1.0), "1");
  EXPECT_EQ(FormatValue(0.5), "0.5");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
  EXPECT_EQ(FormatValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(FormatValue(-1.0 / 0.0), "-Inf");
  for (double v : {1.0 / 3.0, 2.0 / 3.0, 1e-300, 12345.678, 4.0 / 3.0})
    EXPECT_EQ(std::strtod(FormatValue(v).c_str(), nullptr), v) << FormatValue(v);
  EXPECT_TRUE(ValidMetricName("chainswap_up"));
  EXPECT_TRUE(ValidMetricName("a:b_c"));
  EXPECT_FALSE(ValidMetricName(""));
  EXPECT_TRUE(ValidLabelName("chain"));
  EXPECT_FALSE(ValidLabelName("a:b"));
}

// ------------------------------------------------------------ the families

Figures SampleFigures(bool live) {
  Figures f;
  f.backing = "/var/lib/chainswap";
  f.mounted = live;
  ChainStats pool;
  pool.dedup_id = 1;
  pool.name = "pool";
  pool.files = 2;
  pool.logical_bytes = 10 * kBlockSize;
  pool.nonzero_bytes = 8 * kBlockSize;
  pool.zero_blocks = 2;
  pool.stored_bytes = 2 * kBlockSize;
  pool.blocks = 2;  // raw blocks: stored bytes = blocks x 4096
  ChainStats empty;
  empty.dedup_id = 2;
  empty.name = "idle \"q\"";
  f.chains = {pool, empty};
  f.files = {{1, 1, "pool", "vm\\1\n", 5 * kBlockSize, 4 * kBlockSize}, {2, 1, "pool", "vm2", 5 * kBlockSize, 4 * kBlockSize}};
  f.usage = {3, 1, 4, 0};
  f.store_allocated_bytes = 3 * kBlockSize;
  f.catalog_bytes = 1000;
  f.catalog_wal_bytes = 400;
  f.journal_segments = 1;
  f.oldest_bucket_age_seconds = 2.5;
  if (live) {
    PublishedStats p;
    p.engine.w_bucket = 7;
    p.engine.x_bucket = 6;
    p.engine.n = 64;
    p.engine.d = 4;
    p.engine.journal_bytes = 4096;
    p.engine.journal_limit = 1 << 20;
    p.engine.pending_records = 3;
    p.engine.blocks_stored = 11;
    p.engine.blocks_deduped = 12;
    p.engine.blocks_freed = 13;
    p.engine.writes_absorbed = 14;
    p.engine.enospc = 15;
    p.engine.store_usage = 0.25;
    p.engine.error = "pwrite store.dat: EIO";
    f.destage = p;
  }
  return f;
}

TEST(MetricsRenderTest, LiveFiguresFollowTheConventions) {
  std::string out;
  const auto problems = RenderMetrics(SampleFigures(true), &out);
  EXPECT_TRUE(problems.empty()) << Join(problems);
  EXPECT_TRUE(StrictProblems(out).empty()) << Join(StrictProblems(out)) << out;
  // Names: one prefix; counters *_total (StrictProblems), gauges never.
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) != 0) continue;
    std::istringstream ls(line.substr(7));
    std::string name, type;
    ls >> name >> type;
    EXPECT_EQ(name.rfind("chainswap_", 0), 0u) << line;
    if (type == "gauge") {
      EXPECT_EQ(name.find("_total"), std::string::npos) << line;
    }
  }
  auto s = Samples(out);
  const std::string b = "backing=\"/var/lib/chainswap\"";
  EXPECT_EQ(s["chainswap_up{" + b + "}"], "1");
  EXPECT_EQ(s["chainswap_chain_stored_bytes{" + b + ",chain=\"pool\"}"], "8192");
  EXPECT_EQ(s["chainswap_chain_nonzero_bytes{" + b + ",chain=\"pool\"}"], "32768");
  EXPECT_EQ(s["chainswap_chain_saved_bytes{" + b + ",chain=\"pool\"}"], "24576");
  EXPECT_EQ(s["chainswap_chain_zero_bytes{" + b + ",chain=\"pool\"}"], "8192");
  EXPECT_EQ(s["chainswap_chain_dedup_saved_ratio{" + b + ",chain=\"pool\"}"], "0.75");
  EXPECT_EQ(s["chainswap_chain_dedup_factor{" + b + ",chain=\"pool\"}"], "4");
  // An empty chain: nothing saved, factor 1.
  EXPECT_EQ(s["chainswap_chain_dedup_saved_ratio{" + b + ",chain=\"idle \\\"q\\\"\"}"], "0");
  EXPECT_EQ(s["chainswap_chain_dedup_factor{" + b + ",chain=\"idle \\\"q\\\"\"}"], "1");
  EXPECT_EQ(s["chainswap_file_nonzero_bytes{" + b + ",chain=\"pool\",file=\"vm\\\\1\\n\"}"], "16384");
  EXPECT_EQ(s["chainswap_store_used_bytes{" + b + "}"], "12288");
  EXPECT_EQ(s["chainswap_journal_oldest_bucket_age_seconds{" + b + "}"], "2.5");
  EXPECT_EQ(s["chainswap_destage_error{" + b + "}"], "1");
  EXPECT_EQ(s["chainswap_blocks_deduplicated_total{" + b + "}"], "12");
  EXPECT_EQ(s["chainswap_blocks_absorbed_total{" + b + "}"], "14");
  EXPECT_EQ(s["chainswap_enospc_total{" + b + "}"], "15");
  EXPECT_EQ(s["chainswap_queue_delete_slots{" + b + "}"], "4");
  EXPECT_EQ(s["chainswap_destage_w_bucket{" + b + "}"], "7");
  EXPECT_EQ(s["chainswap_store_usage_ratio{" + b + "}"], "0.25");
  // No capacity= given: no capacity family. The error message is no label.
  EXPECT_EQ(out.find("chainswap_store_capacity_bytes"), std::string::npos);
  EXPECT_EQ(out.find("pwrite store.dat"), std::string::npos);
}

TEST(MetricsRenderTest, WithoutLiveFiguresOnlyTheCatalogIsShownAndUpIsZero) {
  std::string out;
  Figures f = SampleFigures(false);
  f.usage.capacity_slots = 100;
  EXPECT_TRUE(RenderMetrics(f, &out).empty());
  EXPECT_TRUE(StrictProblems(out).empty()) << Join(StrictProblems(out));
  auto s = Samples(out);
  EXPECT_EQ(s["chainswap_up{backing=\"/var/lib/chainswap\"}"], "0");
  EXPECT_EQ(s["chainswap_store_capacity_bytes{backing=\"/var/lib/chainswap\"}"], "409600");
  EXPECT_NE(out.find("chainswap_chain_stored_bytes{"), std::string::npos);
  for (const char* live_only : {"chainswap_journal_bytes", "chainswap_destage_error", "_total"})
    EXPECT_EQ(out.find(live_only), std::string::npos) << live_only;
  // A stopped daemon's last word.
  const std::string down = RenderDown("/b");
  EXPECT_TRUE(StrictProblems(down).empty()) << Join(StrictProblems(down));
  EXPECT_EQ(Samples(down), (std::map<std::string, std::string>{{"chainswap_up{backing=\"/b\"}", "0"}}));
}

TEST(MetricsRenderTest, PublishedStatsJsonRoundTrips) {
  PublishedStats p = *SampleFigures(true).destage;
  p.ops_per_sec = 123.5;
  p.engine.staged_delete_ranges = 9;
  p.engine.policy_changes = 10;
  auto back = StatsFromJson(StatsToJson(p));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(StatsToJson(*back), StatsToJson(p));
  EXPECT_EQ(back->engine.error, "pwrite store.dat: EIO");
  EXPECT_FALSE(StatsFromJson("not json").has_value());
  EXPECT_FALSE(StatsFromJson("[1, 2]").has_value());
  auto partial = StatsFromJson(R"({"w_bucket": 3})");
  ASSERT_TRUE(partial.has_value());
  EXPECT_EQ(partial->engine.w_bucket, 3u);
  EXPECT_EQ(partial->engine.journal_bytes, 0u);
}

// ------------------------------------------------------------ the figures

TEST(MetricsFiguresTest, CatalogFiguresMatchTheCatalogsOwnStatistics) {
  TempDir tmp;
  const std::string root = tmp.Sub("b");
  CS_ASSERT_OK(BackingDir::Format(root));
  auto b = BackingDir::Open(root, LockMode::kExclusive, CatalogOptions{});
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  Catalog& cat = (*b)->catalog();
  auto pool = cat.CreateChain("pool", 0700, 0, 0, 1);
  auto other = cat.CreateChain("other", 0700, 0, 0, 1);
  ASSERT_TRUE(pool.ok() && other.ok());
  auto f1 = cat.CreateFile(pool->dedup_id, "vm1", 0600, 0, 0, 1);
  auto f2 = cat.CreateFile(pool->dedup_id, "vm\"2", 0600, 0, 0, 1);
  auto f3 = cat.CreateFile(other->dedup_id, "gone", 0600, 0, 0, 1);
  ASSERT_TRUE(f1.ok() && f2.ok() && f3.ok());
  // vm1: blocks 0..3; vm2: the same 4 blocks and 2 of its own; sizes 8 blocks.
  std::vector<test::Block> blocks;
  for (uint64_t i = 0; i < 6; ++i) blocks.push_back(PatternBlock(i));
  std::vector<BlockOp> ops;
  for (uint64_t i = 0; i < 4; ++i) ops.push_back(WriteOp(f1->file_id, pool->dedup_id, i, blocks[i]));
  for (uint64_t i = 0; i < 6; ++i) ops.push_back(WriteOp(f2->file_id, pool->dedup_id, i, blocks[i]));
  ops.push_back(WriteOp(f3->file_id, other->dedup_id, 0, blocks[0]));
  std::vector<FileMetaUpdate> meta = {{f1->file_id, 8 * kBlockSize, 1, 1}, {f2->file_id, 8 * kBlockSize, 1, 1}};
  ASSERT_TRUE(cat.ApplyBlockOps(ops, meta).ok());
  FileInfo gone = *f3;
  gone.unlinked = true;
  CS_ASSERT_OK(cat.UpdateFile(gone));  // unlinked, being reclaimed: not listed

  auto reader = OpenStatsReader((*b)->paths().catalog);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  Figures fig;
  fig.backing = root;
  CS_ASSERT_OK(GatherCatalogFigures(**b, *reader, &fig));
  // The read connection sees what Catalog::Stats sees, field by field.
  auto want = cat.Stats();
  ASSERT_TRUE(want.ok());
  ASSERT_EQ(fig.chains.size(), want->size());
  for (size_t i = 0; i < want->size(); ++i) {
    const ChainStats &g = fig.chains[i], &w = (*want)[i];
    EXPECT_EQ(g.dedup_id, w.dedup_id);
    EXPECT_EQ(g.name, w.name);
    EXPECT_EQ(g.files, w.files);
    EXPECT_EQ(g.logical_bytes, w.logical_bytes);
    EXPECT_EQ(g.nonzero_bytes, w.nonzero_bytes);
    EXPECT_EQ(g.zero_blocks, w.zero_blocks);
    EXPECT_EQ(g.stored_bytes, w.stored_bytes);
  }
  ASSERT_EQ(fig.chains.size(), 2u);
  EXPECT_EQ(fig.chains[0].stored_bytes, 6 * kBlockSize);
  EXPECT_EQ(fig.chains[0].nonzero_bytes, 10 * kBlockSize);
  ASSERT_EQ(fig.files.size(), 2u);
  EXPECT_EQ(fig.files[0].name, "vm\"2");  // by chain, then name
  EXPECT_EQ(fig.files[0].nonzero_bytes, 6 * kBlockSize);
  EXPECT_EQ(fig.files[1].name, "vm1");
  EXPECT_EQ(fig.files[1].logical_bytes, 8 * kBlockSize);
  EXPECT_EQ(fig.usage.used_slots, 7u);
  EXPECT_GT(fig.catalog_bytes, 0u);
  EXPECT_EQ(fig.journal_segments, 0u);
  std::string out;
  EXPECT_TRUE(RenderMetrics(fig, &out).empty());
  EXPECT_TRUE(StrictProblems(out).empty()) << Join(StrictProblems(out));
}

TEST(MetricsFiguresTest, TheOldestJournalSegmentGivesTheAge) {
  TempDir tmp;
  uint64_t segments = 9;
  double age = -1;
  ScanJournal(tmp.Sub("missing"), &segments, &age);
  EXPECT_EQ(segments, 0u);
  EXPECT_EQ(age, 0.0);
  const std::string older = tmp.Sub("bucket-00000000000000000007.log");
  const std::string newer = tmp.Sub("bucket-00000000000000000012.log");
  std::ofstream(older) << "x";
  std::ofstream(newer) << "x";
  std::ofstream(tmp.Sub("bucket-12.log")) << "not a segment name";
  std::ofstream(tmp.Sub("notes.txt")) << "x";
  struct timespec times[2] = {{0, UTIME_OMIT}, {::time(nullptr) - 100, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, older.c_str(), times, 0), 0);
  ScanJournal(tmp.path(), &segments, &age);
  EXPECT_EQ(segments, 2u);
  EXPECT_GE(age, 99.0);
  EXPECT_LT(age, 200.0);
  std::filesystem::remove(older);  // retired: the next one is the oldest
  ScanJournal(tmp.path(), &segments, &age);
  EXPECT_EQ(segments, 1u);
  EXPECT_LT(age, 50.0);
}

// ------------------------------------------------------------ the file

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(MetricsWriterTest, AtomicWriteIsMode0644AndLeavesNoTemporaryFile) {
  TempDir tmp;
  const std::string path = tmp.Sub("chainswap.prom");
  const mode_t old = ::umask(077);
  CS_ASSERT_OK(WriteFileAtomically(path, "first\n"));
  CS_ASSERT_OK(WriteFileAtomically(path, "second\n"));
  ::umask(old);
  EXPECT_EQ(ReadAll(path), "second\n");
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  // A failed write leaves the old file as it was.
  CS_EXPECT_ERRNO(WriteFileAtomically(tmp.Sub("missing/x.prom"), "x"), ENOENT);
  ASSERT_EQ(::mkdir(tmp.Sub("dir.prom").c_str(), 0755), 0);
  EXPECT_FALSE(WriteFileAtomically(tmp.Sub("dir.prom"), "x").ok());  // rename over a directory
  EXPECT_FALSE(std::filesystem::exists(tmp.Sub("dir.prom.tmp")));
  EXPECT_EQ(ReadAll(path), "second\n");
}

TEST(MetricsWriterTest, MountTimeCheckNamesTheProblem) {
  TempDir tmp;
  CS_EXPECT_OK(CheckMetricsFile(tmp.Sub("chainswap.prom"), "/mnt/swap"));
  auto says = [&](const std::string& path, const std::string& mnt, const std::string& text) {
    Status st = CheckMetricsFile(path, mnt);
    EXPECT_FALSE(st.ok()) << path;
    EXPECT_NE(st.ToString().find(text), std::string::npos) << st.ToString();
  };
  says(tmp.Sub("missing/chainswap.prom"), "/mnt/swap", "does not exist");
  says("relative.prom", "/mnt/swap", "absolute");
  says(tmp.path() + "/..", "/mnt/swap", "not of a directory");
  std::ofstream(tmp.Sub("file")) << "x";
  says(tmp.Sub("file/chainswap.prom"), "/mnt/swap", "not a directory");
  ASSERT_EQ(::mkdir(tmp.Sub("d.prom").c_str(), 0755), 0);
  says(tmp.Sub("d.prom"), "/mnt/swap", "is a directory");
  ASSERT_EQ(::mkdir(tmp.Sub("mnt").c_str(), 0755), 0);
  says(tmp.Sub("mnt/chainswap.prom"), tmp.Sub("mnt"), "under the mountpoint");
}

// Waits up to 10 s for pred.
bool Eventually(const std::function<bool()>& pred) {
  for (int i = 0; i < 1000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

TEST(MetricsWriterTest, FailuresAreRetriedAndNeverStopTheWriter) {
  TempDir tmp;
  const std::string dir = tmp.Sub("textfile");
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  const std::string path = dir + "/chainswap.prom";
  std::atomic<int> rounds{0};
  std::atomic<bool> render_fails{false};
  {
    MetricsWriter w(
        path, std::chrono::milliseconds(20),
        [&](std::string* out) {
          if (render_fails) return Status::Error(EIO, "catalog unreadable");
          *out = "# HELP t t\n# TYPE t gauge\nt " + std::to_string(++rounds) + "\n";
          return Status::Ok();
        },
        RenderDown("/b"));
    ASSERT_TRUE(Eventually([&] { return w.writes() >= 2; }));
    // The directory goes away: rounds fail, the writer carries on.
    std::filesystem::remove_all(dir);
    const uint64_t failures = w.failures();
    ASSERT_TRUE(Eventually([&] { return w.failures() >= failures + 3; }));
    // It comes back: the next round writes again.
    ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
    const uint64_t writes = w.writes();
    ASSERT_TRUE(Eventually([&] { return w.writes() > writes && std::filesystem::exists(path); }));
    // A round whose figures cannot be gathered writes nothing.
    render_fails = true;
    const uint64_t f2 = w.failures();
    ASSERT_TRUE(Eventually([&] { return w.failures() >= f2 + 2; }));
    const std::string kept = ReadAll(path);
    EXPECT_NE(kept.find("\nt "), std::string::npos) << kept;
    EXPECT_EQ(ReadAll(path), kept);
  }
  // Stopped: chainswap_up 0.
  EXPECT_EQ(ReadAll(path), RenderDown("/b"));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

}  // namespace
}  // namespace chainswap
