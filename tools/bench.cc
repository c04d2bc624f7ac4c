#include "tools/bench.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "tools/bench_data.h"
#include "tools/format_table.h"

namespace chainswap {

using bench::BenchError;
using bench::kPage;
using bench::Mix;
using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint64_t kChunkPages = 256;  // 1 MiB: ingest writes and discard ranges
constexpr uint64_t kMiB = 1 << 20;
constexpr double kReclaimDone = 0.99;  // share of the expected space back that ends the reclaim wait

double Since(Clock::time_point t0, Clock::time_point t1 = Clock::now()) {
  return std::chrono::duration<double>(t1 - t0).count();
}
uint64_t NsBetween(Clock::time_point t0, Clock::time_point t1) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
}

[[noreturn]] void Throw(const std::string& what, int err) { throw BenchError(what + ": " + std::strerror(err)); }

std::string Fixed(double v, int prec) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

// ---------------------------------------------------------------------------
// Progress: one updating line on stderr, only on a terminal.

class Progress {
 public:
  Progress() : on_(::isatty(2) == 1) {}
  void Show(const std::string& text, bool force = false) {
    if (!on_) return;
    std::lock_guard lk(mu_);
    auto now = Clock::now();
    if (!force && shown_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    shown_ = true;
    std::fprintf(stderr, "\r\033[K%s", text.c_str());
    std::fflush(stderr);
  }
  void Clear() {
    if (!on_) return;
    std::lock_guard lk(mu_);
    if (shown_) std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
    shown_ = false;
  }

 private:
  bool on_;
  std::mutex mu_;
  bool shown_ = false;
  Clock::time_point last_{};
};

// ---------------------------------------------------------------------------
// Latency percentiles.

struct Latency {
  uint64_t n = 0;
  double mean_us = 0, p50_us = 0, p99_us = 0, p999_us = 0, max_us = 0;
};

Latency Summarize(std::vector<uint64_t> ns) {
  Latency l;
  l.n = ns.size();
  if (ns.empty()) return l;
  std::sort(ns.begin(), ns.end());
  auto rank = [&](double q) {
    size_t i = static_cast<size_t>(std::ceil(q * double(ns.size())));
    return double(ns[std::min(ns.size(), std::max<size_t>(i, 1)) - 1]) / 1000.0;
  };
  double sum = 0;
  for (uint64_t v : ns) sum += double(v);
  l.mean_us = sum / double(ns.size()) / 1000.0;
  l.p50_us = rank(0.50);
  l.p99_us = rank(0.99);
  l.p999_us = rank(0.999);
  l.max_us = double(ns.back()) / 1000.0;
  return l;
}

Json ToJson(const Latency& l) {
  return Json{{"samples", l.n},  {"mean", l.mean_us},  {"p50", l.p50_us},
              {"p99", l.p99_us}, {"p99_9", l.p999_us}, {"max", l.max_us}};
}

// ---------------------------------------------------------------------------
// The model: what every page of every file holds, and the exact dedup ideal
// (distinct non-zero contents, by XXH3-128, with reference counts).

struct H128Hash {
  size_t operator()(const XXH128_hash_t& h) const {
    return static_cast<size_t>(h.low64 ^ (h.high64 * 0x9e3779b97f4a7c15ULL));
  }
};
struct H128Eq {
  bool operator()(const XXH128_hash_t& a, const XXH128_hash_t& b) const { return XXH128_isEqual(a, b) != 0; }
};

class Model {
 public:
  Model(std::shared_ptr<const bench::Workload> w) : w_(std::move(w)), discarded_(w_->files()) {
    for (auto& d : discarded_) d.assign(w_->pages(), false);
  }
  void Add(const uint8_t* page) {
    if (bench::IsZero(page)) return;
    ++nonzero_;
    ++refs_[XXH3_128bits(page, kPage)];
  }
  void Remove(const uint8_t* page) {
    if (bench::IsZero(page)) return;
    --nonzero_;
    auto it = refs_.find(XXH3_128bits(page, kPage));
    if (it != refs_.end() && --it->second == 0) refs_.erase(it);
  }
  // What (file, page) must read as now.
  void Expected(bench::PageGen& g, unsigned file, uint64_t page, uint8_t* out) const {
    if (discarded_[file][page]) {
      std::memset(out, 0, kPage);
      return;
    }
    auto it = overrides_.find(Key(file, page));
    if (it != overrides_.end())
      g.RandomWrite(it->second, out);
    else
      g.Ingested(file, page, out);
  }
  // Random write `op` landed on (file, page).
  void Overwrite(bench::PageGen& g, unsigned file, uint64_t page, uint64_t op, uint8_t* scratch) {
    Expected(g, file, page, scratch);
    Remove(scratch);
    g.RandomWrite(op, scratch);
    Add(scratch);
    overrides_[Key(file, page)] = op;
    discarded_[file][page] = false;
  }
  void Discard(bench::PageGen& g, unsigned file, uint64_t page, uint8_t* scratch) {
    Expected(g, file, page, scratch);
    Remove(scratch);
    overrides_.erase(Key(file, page));
    discarded_[file][page] = true;
  }
  uint64_t nonzero_blocks() const { return nonzero_; }
  uint64_t distinct_blocks() const { return refs_.size(); }

 private:
  static uint64_t Key(unsigned file, uint64_t page) { return (uint64_t{file} << 44) | page; }
  std::shared_ptr<const bench::Workload> w_;
  std::unordered_map<XXH128_hash_t, uint32_t, H128Hash, H128Eq> refs_;
  uint64_t nonzero_ = 0;
  std::unordered_map<uint64_t, uint64_t> overrides_;  // (file, page) -> random write op
  std::vector<std::vector<bool>> discarded_;
};

// ---------------------------------------------------------------------------
// The target: a chainswap mount or a plain directory, and how to measure it.

struct AlignedBuf {
  explicit AlignedBuf(size_t bytes) : p(static_cast<uint8_t*>(std::aligned_alloc(kPage, bytes))) {
    if (!p) throw std::bad_alloc();
  }
  ~AlignedBuf() { std::free(p); }
  AlignedBuf(const AlignedBuf&) = delete;
  AlignedBuf& operator=(const AlignedBuf&) = delete;
  uint8_t* p;
};

struct DestageState {
  uint64_t pending_records = 0, journal_bytes = 0;
  bool idle() const { return pending_records == 0 && journal_bytes == 0; }
};

struct WaitResult {
  bool available = false;  // a destage source exists (chainswap mount)
  bool timed_out = false;
  double seconds = 0;
  DestageState at_start;
};

std::optional<uint64_t> FileSize(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return static_cast<uint64_t>(st.st_size);
}

class Target {
 public:
  Target(const BenchOptions& o) : o_(o) {}

  std::string chain_dir;
  std::vector<std::string> files;
  bool chainswap = false;
  std::string dedup_id;
  bool has_backing() const { return !o_.backing.empty(); }
  std::string store_path() const { return o_.backing + "/store.dat"; }
  std::string catalog_path() const { return o_.backing + "/catalog.db"; }

  std::optional<std::string> Xattr(const std::string& path, const std::string& name) const {
    char buf[256];
    ssize_t n = ::getxattr(path.c_str(), ("user.chainswap." + name).c_str(), buf, sizeof buf - 1);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }
  std::optional<uint64_t> XattrU64(const std::string& name) const {
    auto v = Xattr(chain_dir, name);
    if (!v) return std::nullopt;
    return std::strtoull(v->c_str(), nullptr, 10);
  }

  uint64_t StoreAllocated() const {
    struct stat st;
    if (::stat(store_path().c_str(), &st) != 0) Throw("stat " + store_path(), errno);
    return static_cast<uint64_t>(st.st_blocks) * 512;
  }
  // catalog.db and its WAL on disk.
  uint64_t CatalogFileBytes() const {
    return FileSize(catalog_path()).value_or(0) + FileSize(catalog_path() + "-wal").value_or(0);
  }
  // Bytes of the catalog's pages in use (page_count - freelist_count, as a
  // reader sees it, WAL included): grows with what was added, whatever the
  // file sizes, free pages and checkpoints do.
  std::optional<uint64_t> CatalogUsedBytes() const {
    sqlite3* db = nullptr;
    std::optional<uint64_t> out;
    if (sqlite3_open_v2(catalog_path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
      sqlite3_busy_timeout(db, 5000);
      auto pragma = [&](const char* sql) -> std::optional<uint64_t> {
        sqlite3_stmt* st = nullptr;
        std::optional<uint64_t> v;
        if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
          v = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
        sqlite3_finalize(st);
        return v;
      };
      auto pages = pragma("PRAGMA page_count"), free_pages = pragma("PRAGMA freelist_count"),
           size = pragma("PRAGMA page_size");
      if (pages && free_pages && size) out = (*pages - std::min(*pages, *free_pages)) * *size;
    }
    sqlite3_close(db);
    return out;
  }
  uint64_t FilesAllocated() const {
    uint64_t sum = 0;
    for (const std::string& f : files) {
      struct stat st;
      if (::stat(f.c_str(), &st) == 0) sum += static_cast<uint64_t>(st.st_blocks) * 512;
    }
    return sum;
  }
  // What the bench's data occupies, by the best means at hand.
  std::string space_source() const {
    if (has_backing()) return "store.dat";
    if (chainswap) return "chain stored_bytes";
    return "files st_blocks";
  }
  uint64_t Space() const {
    if (has_backing()) {
      uint64_t a = StoreAllocated();
      return a > store_base ? a - store_base : 0;
    }
    if (chainswap) return XattrU64("stored_bytes").value_or(0);
    return FilesAllocated();
  }
  uint64_t store_base = 0;

  // Live destage figures of a chainswap mount: its xattrs, else
  // BACKING/destage.json (published once a second: only figures written
  // after `since` count).
  std::optional<DestageState> Destage(std::chrono::system_clock::time_point since) const {
    if (!chainswap) return std::nullopt;  // a plain directory: nothing to wait for
    auto pending = XattrU64("destage.pending_records"), journal = XattrU64("destage.journal_bytes");
    if (pending && journal) return DestageState{*pending, *journal};
    if (!has_backing()) return std::nullopt;
    const std::string path = o_.backing + "/destage.json";
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    auto mtime = std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
        std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
    std::ifstream in(path);
    Json j = Json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return DestageState{1, 1};  // mid-rename: not idle yet
    DestageState s{j.value("pending_records", uint64_t{1}), j.value("journal_bytes", uint64_t{1})};
    if (mtime < since && s.idle()) s.pending_records = 1;  // stale: wait for a newer publication
    return s;
  }

  WaitResult WaitDestage(Clock::time_point t0, std::chrono::system_clock::time_point since, Progress& progress,
                         const char* what) const {
    WaitResult r;
    auto first = Destage(since);
    if (!first) return r;
    r.available = true;
    r.at_start = *first;
    for (;;) {
      auto s = Destage(since);
      if (!s) break;
      if (s->idle()) break;
      if (Since(t0) > o_.destage_timeout) {
        r.timed_out = true;
        break;
      }
      progress.Show(std::string("waiting for destage (") + what + "): " + std::to_string(s->pending_records) +
                    " pending record(s), journal " + HumanBytes(s->journal_bytes));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    r.seconds = Since(t0);
    progress.Clear();
    return r;
  }

 private:
  const BenchOptions& o_;
};

Json WaitJson(const WaitResult& w) {
  if (!w.available) return nullptr;
  return Json{{"seconds", w.timed_out ? Json(nullptr) : Json(w.seconds)},
              {"timed_out", w.timed_out},
              {"pending_records_at_start", w.at_start.pending_records},
              {"journal_bytes_at_start", w.at_start.journal_bytes}};
}
std::string WaitText(const WaitResult& w) {
  if (!w.available) return "n/a";
  if (w.timed_out) return "timed out";
  return Fixed(w.seconds, 3) + " s";
}

// ---------------------------------------------------------------------------
// Space at one stage.

struct SpaceStage {
  std::string name, measured_by;
  uint64_t nonzero_bytes = 0, ideal_bytes = 0, stored_bytes = 0;
  std::optional<uint64_t> catalog_nonzero, catalog_stored;  // the chain's own figures (chainswap)
  double ideal_ratio() const { return ideal_bytes ? double(nonzero_bytes) / double(ideal_bytes) : 1.0; }
  double achieved_ratio() const { return stored_bytes ? double(nonzero_bytes) / double(stored_bytes) : 0.0; }
  double stored_over_ideal() const { return ideal_bytes ? double(stored_bytes) / double(ideal_bytes) : 0.0; }
};

SpaceStage MeasureSpace(const std::string& name, const Target& t, const Model& m) {
  SpaceStage s;
  s.name = name;
  s.measured_by = t.space_source();
  s.nonzero_bytes = m.nonzero_blocks() * kPage;
  s.ideal_bytes = m.distinct_blocks() * kPage;
  s.stored_bytes = t.Space();
  if (t.chainswap) {
    s.catalog_nonzero = t.XattrU64("nonzero_bytes");
    s.catalog_stored = t.XattrU64("stored_bytes");
  }
  return s;
}

Json ToJson(const SpaceStage& s) {
  auto opt = [](const std::optional<uint64_t>& v) { return v ? Json(*v) : Json(nullptr); };
  return Json{{"measured_by", s.measured_by},
              {"logical_nonzero_bytes", s.nonzero_bytes},
              {"ideal_bytes", s.ideal_bytes},
              {"stored_bytes", s.stored_bytes},
              {"stored_over_ideal", s.stored_over_ideal()},
              {"ideal_dedup_ratio", s.ideal_ratio()},
              {"achieved_dedup_ratio", s.achieved_ratio()},
              {"chain_nonzero_bytes", opt(s.catalog_nonzero)},
              {"chain_stored_bytes", opt(s.catalog_stored)}};
}

// ---------------------------------------------------------------------------
// I/O helpers.

void WriteFull(int fd, const uint8_t* buf, size_t len, off_t off, const std::string& what) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pwrite(fd, buf + done, len - done, off + static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      Throw(what, errno);
    }
    if (n == 0) Throw(what, EIO);
    done += static_cast<size_t>(n);
  }
}


int OpenOrThrow(const std::string& path, int flags, bool direct) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC | (direct ? O_DIRECT : 0), 0600);
  if (fd < 0) {
    int err = errno;
    if (direct && err == EINVAL)
      throw BenchError("open " + path + " with O_DIRECT: the filesystem does not support it (drop --direct)");
    Throw("open " + path, err);
  }
  return fd;
}

struct Fds {
  std::vector<int> fds;
  ~Fds() {
    for (int fd : fds)
      if (fd >= 0) ::close(fd);
  }
};

// First error of a multi-threaded phase.
struct ErrorSlot {
  std::mutex mu;
  std::string text;  // read once the threads are joined
  std::atomic<bool> failed{false};
  void Set(const std::string& t) {
    std::lock_guard lk(mu);
    if (text.empty()) text = t;
    failed = true;
  }
};

// Runs `threads` workers while the main thread draws progress.
template <typename Work>
void RunThreads(unsigned threads, Work work, const std::atomic<uint64_t>& done, uint64_t total, Progress& progress,
                const std::string& what, ErrorSlot& err) {
  std::vector<std::thread> ts;
  std::atomic<unsigned> finished{0};
  auto t0 = Clock::now();
  for (unsigned i = 0; i < threads; ++i) {
    ts.emplace_back([&, i] {
      try {
        work(i);
      } catch (const std::exception& e) {
        err.Set(e.what());
      }
      ++finished;
    });
  }
  while (finished.load() < threads) {
    uint64_t d = done.load();
    double s = Since(t0);
    progress.Show(what + ": " + std::to_string(d) + "/" + std::to_string(total) + " (" +
                  Fixed(s > 0 ? double(d) / s : 0, 0) + " ops/s)");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (auto& t : ts) t.join();
  progress.Clear();
}

struct Mismatch {
  unsigned file;
  uint64_t page;
  std::string detail;
};

// Compares a page read back with the expectation; "" when equal.
std::string Compare(const uint8_t* got, ssize_t n, const uint8_t* want) {
  if (n < 0) return std::string("read error: ") + std::strerror(errno);
  if (static_cast<size_t>(n) != kPage) return "short read (" + std::to_string(n) + " bytes)";
  if (std::memcmp(got, want, kPage) == 0) return "";
  size_t i = 0;
  while (i < kPage && got[i] == want[i]) ++i;
  char buf[96];
  std::snprintf(buf, sizeof buf, "first difference at byte %zu (got 0x%02x, want 0x%02x)", i, got[i], want[i]);
  return buf;
}

struct PhaseResult {
  uint64_t ops = 0, bytes = 0;
  double wall_seconds = 0, io_seconds = 0, sync_seconds = 0;
  Latency lat;
  double iops() const { return io_seconds > 0 ? double(ops) / io_seconds : 0; }
  double mbps() const { return io_seconds > 0 ? double(bytes) / 1e6 / io_seconds : 0; }
};

Json ToJson(const PhaseResult& p) {
  return Json{{"ops", p.ops},
              {"bytes", p.bytes},
              {"wall_seconds", p.wall_seconds},
              {"io_seconds", p.io_seconds},
              {"sync_seconds", p.sync_seconds},
              {"mb_per_s", p.mbps()},
              {"iops", p.iops()},
              {"latency_us", ToJson(p.lat)}};
}

std::string FileName(unsigned f) {
  if (f == 0) return "parent.vswp";
  char buf[32];
  std::snprintf(buf, sizeof buf, "clone-%02u.vswp", f);
  return buf;
}

std::vector<std::string> DefaultSources() {
  std::vector<std::string> d;
  struct stat st;
  if (::stat("/usr/lib/x86_64-linux-gnu", &st) == 0)
    d.push_back("/usr/lib/x86_64-linux-gnu");
  else
    d.push_back("/usr/lib");
  d.push_back("/usr/bin");
  d.push_back("/usr/share/doc");
  return d;
}

// ---------------------------------------------------------------------------
// The run.

int Run(const BenchOptions& o) {
  Progress progress;
  Target t(o);
  const bool quiet_human = o.json;

  // Checks before touching anything.
  struct stat st;
  if (::stat(o.target.c_str(), &st) != 0) Throw(o.target, errno);
  if (!S_ISDIR(st.st_mode)) throw BenchError(o.target + ": not a directory");
  if (o.chain.empty() || o.chain.find('/') != std::string::npos || o.chain == "." || o.chain == "..")
    throw BenchError("--chain: a plain name is needed (got \"" + o.chain + "\")");
  if (t.has_backing()) {
    if (::stat(t.store_path().c_str(), &st) != 0 || ::stat(t.catalog_path().c_str(), &st) != 0)
      throw BenchError(o.backing + ": not a chainswap backing directory (no store.dat or catalog.db)");
  }
  if (o.image_mib == 0) throw BenchError("--image-mib must be at least 1");
  if (::lstat((o.target + "/" + o.chain).c_str(), &st) == 0)
    throw BenchError(o.target + "/" + o.chain + " already exists (remove it or pick another --chain)");
  const uint64_t pages = o.image_mib * kMiB / kPage;
  const unsigned nfiles = o.clones + 1;
  const unsigned threads = std::max(1u, o.threads);

  // The data.
  bench::WorkloadSpec spec;
  spec.image_pages = pages;
  spec.clones = o.clones;
  spec.zero_share = o.zero_share;
  spec.shared_share = o.shared_share;
  spec.record_share = o.record_share;
  spec.mutation = o.mutation;
  spec.seed = o.seed;
  spec.source_dirs = o.sources.empty() ? DefaultSources() : o.sources;
  auto w = bench::Workload::Build(spec, [&](const std::string& s) { progress.Show(s); });
  progress.Clear();
  Model model(w);
  bench::PageGen gen(w);

  // The chain directory.
  t.chain_dir = o.target + "/" + o.chain;
  for (unsigned f = 0; f < nfiles; ++f) t.files.push_back(t.chain_dir + "/" + FileName(f));
  if (::mkdir(t.chain_dir.c_str(), 0700) != 0) {
    int err = errno;
    if (err == EEXIST) throw BenchError(t.chain_dir + " already exists (remove it or pick another --chain)");
    if (err == EPERM)
      throw BenchError("mkdir " + t.chain_dir + ": " + std::strerror(err) +
                       " (on a chainswap mount, give the mountpoint itself, not a chain directory)");
    Throw("mkdir " + t.chain_dir, err);
  }
  // From here on, remove what was made, whatever happens (unless --keep).
  struct Cleanup {
    Target& tt;
    bool keep;
    bool done = false;
    void Run() {
      if (done || keep) return;
      done = true;
      for (const std::string& f : tt.files) ::unlink(f.c_str());
      if (::rmdir(tt.chain_dir.c_str()) != 0 && errno != ENOENT)
        std::fprintf(stderr, "chainswap bench: warning: rmdir %s: %s\n", tt.chain_dir.c_str(), std::strerror(errno));
    }
    ~Cleanup() { Run(); }
  } cleanup{t, o.keep};
  if (auto id = t.Xattr(t.chain_dir, "dedup_id")) {
    t.chainswap = true;
    t.dedup_id = *id;
  }
  // Earlier work still destaging (an earlier run's unlinks, say) would move
  // the store under the figures: wait for the daemon to be idle first.
  WaitResult lag_before = t.WaitDestage(Clock::now(), std::chrono::system_clock::now(), progress, "earlier work");
  if (lag_before.timed_out) throw BenchError("the daemon's destage did not go idle before the run (--destage-timeout)");
  const std::optional<uint64_t> catalog_base_opt = t.has_backing() ? t.CatalogUsedBytes() : std::nullopt;
  const bool have_catalog_base = catalog_base_opt.has_value();
  const uint64_t catalog_base = catalog_base_opt.value_or(0);
  if (t.has_backing()) t.store_base = t.StoreAllocated();

  Json j;
  j["target"] = o.target;
  j["chain"] = o.chain;
  j["mode"] = t.chainswap ? "chainswap" : "directory";
  j["dedup_id"] = t.chainswap ? Json(std::strtoll(t.dedup_id.c_str(), nullptr, 10)) : Json(nullptr);
  j["backing"] = t.has_backing() ? Json(o.backing) : Json(nullptr);
  j["options"] = {{"clones", o.clones},
                  {"image_mib", o.image_mib},
                  {"zero_share", o.zero_share},
                  {"shared_share", o.shared_share},
                  {"record_share", o.record_share},
                  {"mutation", o.mutation},
                  {"discard", o.discard},
                  {"random_ops", o.random_ops},
                  {"threads", threads},
                  {"direct", o.direct},
                  {"seed", o.seed},
                  {"sources", spec.source_dirs}};

  // (1) Ingest: the parent, then each clone, in 1 MiB writes; fsync at each end.
  PhaseResult ingest;
  std::vector<uint64_t> lat;
  AlignedBuf chunk(kChunkPages * kPage);
  auto ingest_t0 = Clock::now();
  const uint64_t total_bytes = uint64_t{nfiles} * pages * kPage;
  for (unsigned f = 0; f < nfiles; ++f) {
    const std::string& path = t.files[f];
    int fd = OpenOrThrow(path, O_WRONLY | O_CREAT | O_TRUNC, false);
    Fds guard{{fd}};
    for (uint64_t p0 = 0; p0 < pages; p0 += kChunkPages) {
      uint64_t n = std::min(kChunkPages, pages - p0);
      for (uint64_t i = 0; i < n; ++i) {
        uint8_t* page = chunk.p + i * kPage;
        gen.Ingested(f, p0 + i, page);
        model.Add(page);
      }
      auto a = Clock::now();
      WriteFull(fd, chunk.p, n * kPage, static_cast<off_t>(p0 * kPage), "ingest: write " + path);
      auto b = Clock::now();
      lat.push_back(NsBetween(a, b));
      ingest.io_seconds += Since(a, b);
      ingest.bytes += n * kPage;
      ++ingest.ops;
      double s = Since(ingest_t0);
      progress.Show("ingest " + FileName(f) + ": " + HumanBytes(ingest.bytes) + " of " + HumanBytes(total_bytes) +
                    " (" + Fixed(s > 0 ? double(ingest.bytes) / 1e6 / s : 0, 1) + " MB/s)");
    }
    auto a = Clock::now();
    if (::fsync(fd) != 0) Throw("ingest: fsync " + path, errno);
    double sync = Since(a);
    ingest.sync_seconds += sync;
    ingest.io_seconds += sync;
  }
  auto ingest_end = Clock::now();
  auto ingest_end_wall = std::chrono::system_clock::now();
  ingest.wall_seconds = Since(ingest_t0, ingest_end);
  ingest.lat = Summarize(std::move(lat));
  progress.Clear();
  const uint64_t ingested_nonzero = model.nonzero_blocks();
  const uint64_t ingested_distinct = model.distinct_blocks();

  // (2) Destage lag after ingest.
  WaitResult lag_ingest = t.WaitDestage(ingest_end, ingest_end_wall, progress, "after ingest");

  // (3) Space and catalog after ingest.
  SpaceStage space_ingest = MeasureSpace("after ingest", t, model);
  std::optional<uint64_t> catalog_bytes, catalog_files;
  if (t.has_backing()) {
    catalog_files = t.CatalogFileBytes();
    auto used = t.CatalogUsedBytes();
    if (used && have_catalog_base) catalog_bytes = *used > catalog_base ? *used - catalog_base : 0;
  }

  // (4) 4 KiB random writes at random pages of random files, each (file,
  // page) owned by one thread so that the last write of a page is known.
  struct Op {
    unsigned file;
    uint64_t page;
    uint64_t id;
  };
  std::vector<std::vector<Op>> wops(threads);
  std::vector<Op> all_wops;
  for (uint64_t i = 0; i < o.random_ops; ++i) {
    uint64_t r = Mix(o.seed ^ 0x3717e5ULL, i);
    Op op{static_cast<unsigned>(r % nfiles), Mix(r) % pages, i};
    wops[Mix(op.file, op.page) % threads].push_back(op);
    all_wops.push_back(op);
  }
  PhaseResult rw;
  std::vector<std::vector<uint64_t>> tlat(threads);
  std::vector<double> tio(threads, 0), tsync(threads, 0);
  ErrorSlot err;
  std::atomic<uint64_t> done{0};
  auto rw_t0 = Clock::now();
  if (o.random_ops > 0) {
    RunThreads(
        threads,
        [&](unsigned ti) {
          Fds fds;
          for (unsigned f = 0; f < nfiles; ++f) fds.fds.push_back(OpenOrThrow(t.files[f], O_RDWR, o.direct));
          AlignedBuf buf(kPage);
          bench::PageGen g(w);
          for (const Op& op : wops[ti]) {
            if (err.failed) return;
            g.RandomWrite(op.id, buf.p);
            auto a = Clock::now();
            WriteFull(fds.fds[op.file], buf.p, kPage, static_cast<off_t>(op.page * kPage),
                      "random write: " + t.files[op.file]);
            auto b = Clock::now();
            tlat[ti].push_back(NsBetween(a, b));
            tio[ti] += Since(a, b);
            ++done;
          }
          auto a = Clock::now();
          for (unsigned f = 0; f < nfiles; ++f)
            if (::fsync(fds.fds[f]) != 0) Throw("random write: fsync " + t.files[f], errno);
          tsync[ti] = Since(a);
        },
        done, o.random_ops, progress, "random writes", err);
    if (!err.text.empty()) throw BenchError(err.text);
  }
  auto rw_end = Clock::now();
  auto rw_end_wall = std::chrono::system_clock::now();
  rw.wall_seconds = Since(rw_t0, rw_end);
  rw.ops = o.random_ops;
  rw.bytes = o.random_ops * kPage;
  {
    std::vector<uint64_t> all;
    for (unsigned i = 0; i < threads; ++i) {
      all.insert(all.end(), tlat[i].begin(), tlat[i].end());
      rw.io_seconds = std::max(rw.io_seconds, tio[i]);
      rw.sync_seconds = std::max(rw.sync_seconds, tsync[i]);
    }
    rw.lat = Summarize(std::move(all));
  }
  {
    AlignedBuf scratch(kPage);
    for (const Op& op : all_wops) model.Overwrite(gen, op.file, op.page, op.id, scratch.p);
  }
  WaitResult lag_rw;
  if (o.random_ops > 0) lag_rw = t.WaitDestage(rw_end, rw_end_wall, progress, "after random writes");
  SpaceStage space_rw = MeasureSpace("after random writes", t, model);

  // (5) 4 KiB random reads, each checked byte for byte. The page cache is
  // dropped first and read-ahead switched off, so each read reaches the
  // filesystem (for a plain directory too, as far as the kernel lets it).
  for (const std::string& f : t.files) {
    int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
      ::close(fd);
    }
  }
  PhaseResult rr;
  std::vector<uint64_t> tmis(threads, 0);
  std::vector<Mismatch> mismatches;
  std::mutex mis_mu;
  std::fill(tio.begin(), tio.end(), 0.0);
  for (auto& v : tlat) v.clear();
  done = 0;
  auto rr_t0 = Clock::now();
  if (o.random_ops > 0) {
    RunThreads(
        threads,
        [&](unsigned ti) {
          Fds fds;
          for (unsigned f = 0; f < nfiles; ++f) {
            fds.fds.push_back(OpenOrThrow(t.files[f], O_RDONLY, o.direct));
            ::posix_fadvise(fds.fds.back(), 0, 0, POSIX_FADV_RANDOM);
          }
          AlignedBuf got(kPage), want(kPage);
          bench::PageGen g(w);
          for (uint64_t i = ti; i < o.random_ops; i += threads) {
            if (err.failed) return;
            uint64_t r = Mix(o.seed ^ 0x7ead5ULL, i);
            unsigned f = static_cast<unsigned>(r % nfiles);
            uint64_t page = Mix(r) % pages;
            auto a = Clock::now();
            ssize_t n = bench::PreadFull(fds.fds[f], got.p, kPage, static_cast<off_t>(page * kPage));
            auto b = Clock::now();
            int rerr = errno;
            tlat[ti].push_back(NsBetween(a, b));
            tio[ti] += Since(a, b);
            ++done;
            model.Expected(g, f, page, want.p);
            errno = rerr;
            std::string d = Compare(got.p, n, want.p);
            if (!d.empty()) {
              ++tmis[ti];
              std::lock_guard lk(mis_mu);
              if (mismatches.size() < 10) mismatches.push_back({f, page, d});
            }
          }
        },
        done, o.random_ops, progress, "random reads", err);
    if (!err.text.empty()) throw BenchError(err.text);
  }
  rr.wall_seconds = Since(rr_t0);
  rr.ops = o.random_ops;
  rr.bytes = o.random_ops * kPage;
  uint64_t read_mismatches = 0;
  {
    std::vector<uint64_t> all;
    for (unsigned i = 0; i < threads; ++i) {
      all.insert(all.end(), tlat[i].begin(), tlat[i].end());
      rr.io_seconds = std::max(rr.io_seconds, tio[i]);
      read_mismatches += tmis[i];
    }
    rr.lat = Summarize(std::move(all));
  }

  // (6) Discards: the --discard share of each file's 1 MiB ranges, punched
  // (PUNCH_HOLE|KEEP_SIZE), then the time until the space is back.
  struct Range {
    unsigned file;
    uint64_t first, count;
  };
  std::vector<Range> ranges;
  const uint64_t nranges = (pages + kChunkPages - 1) / kChunkPages;
  const uint64_t per_file =
      std::min<uint64_t>(nranges, static_cast<uint64_t>(std::llround(o.discard * double(nranges))));
  for (unsigned f = 0; f < nfiles && per_file > 0; ++f) {
    std::vector<uint64_t> idx(nranges);
    for (uint64_t i = 0; i < nranges; ++i) idx[i] = i;
    uint64_t r = Mix(o.seed ^ 0xd15cULL, f);
    for (uint64_t i = 0; i < per_file; ++i) {
      uint64_t k = i + Mix(r += 0x9e3779b97f4a7c15ULL) % (nranges - i);
      std::swap(idx[i], idx[k]);
    }
    std::sort(idx.begin(), idx.begin() + static_cast<ptrdiff_t>(per_file));
    for (uint64_t i = 0; i < per_file; ++i) {
      uint64_t first = idx[i] * kChunkPages;
      ranges.push_back({f, first, std::min(kChunkPages, pages - first)});
    }
  }
  const uint64_t distinct_before = model.distinct_blocks();
  uint64_t discarded_pages = 0, discarded_nonzero = model.nonzero_blocks();
  {
    AlignedBuf scratch(kPage);
    for (const Range& r : ranges) {
      for (uint64_t p = r.first; p < r.first + r.count; ++p) model.Discard(gen, r.file, p, scratch.p);
      discarded_pages += r.count;
    }
  }
  discarded_nonzero -= model.nonzero_blocks();
  const uint64_t expected_reclaim =
      t.chainswap || t.has_backing() ? (distinct_before - model.distinct_blocks()) * kPage : discarded_pages * kPage;
  PhaseResult disc;
  double reclaim_seconds = -1, reclaim_half = -1, reclaim_90 = -1;
  uint64_t reclaimed = 0;
  bool reclaim_complete = false, reclaim_gave_up = false;
  if (!ranges.empty()) {
    const uint64_t space_before = t.Space();
    Fds fds;
    for (unsigned f = 0; f < nfiles; ++f) fds.fds.push_back(OpenOrThrow(t.files[f], O_RDWR, false));
    std::vector<uint64_t> dl;
    auto d0 = Clock::now();
    for (const Range& r : ranges) {
      auto a = Clock::now();
      if (::fallocate(fds.fds[r.file], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(r.first * kPage),
                      static_cast<off_t>(r.count * kPage)) != 0)
        Throw("discard: fallocate(PUNCH_HOLE) " + t.files[r.file], errno);
      auto b = Clock::now();
      dl.push_back(NsBetween(a, b));
      disc.io_seconds += Since(a, b);
      disc.bytes += r.count * kPage;
      ++disc.ops;
    }
    auto d1 = Clock::now();
    disc.wall_seconds = Since(d0, d1);
    disc.lat = Summarize(std::move(dl));
    // Reclaim: poll every 20 ms until 99% of the expected space is back, or
    // until it has stopped going down for a second with destage idle; 30 s
    // at most. The time reported is that of the last decrease seen.
    uint64_t low = space_before;
    auto last_drop = d1;
    for (;;) {
      uint64_t s = t.Space();
      auto now = Clock::now();
      if (s < low) {
        low = s;
        last_drop = now;
      }
      reclaimed = space_before > low ? space_before - low : 0;
      if (reclaim_half < 0 && double(reclaimed) >= 0.5 * double(expected_reclaim)) reclaim_half = Since(d1, now);
      if (reclaim_90 < 0 && double(reclaimed) >= 0.9 * double(expected_reclaim)) reclaim_90 = Since(d1, now);
      // 99%: the store's allocation keeps a page or two of slack (file tail,
      // filesystem extents) that no discard gives back.
      if (double(reclaimed) >= kReclaimDone * double(expected_reclaim)) {
        reclaim_complete = true;
        break;
      }
      bool idle = true;
      if (auto ds = t.Destage(std::chrono::system_clock::time_point{})) idle = ds->idle();
      if (idle && Since(last_drop, now) >= 1.0) break;
      if (Since(d1, now) >= 30.0) {
        reclaim_gave_up = true;
        break;
      }
      progress.Show("reclaim: " + HumanBytes(reclaimed) + " of " + HumanBytes(expected_reclaim) + " back after " +
                    Fixed(Since(d1, now), 2) + " s");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    progress.Clear();
    if (reclaimed > 0 || expected_reclaim == 0) reclaim_seconds = Since(d1, last_drop);
  }
  SpaceStage space_disc = MeasureSpace("after discards", t, model);

  // (7) Read back a sample after the discards: one page of every discarded
  // range and as many random pages, not timed.
  uint64_t verify_pages = 0, verify_mismatches = 0;
  {
    Fds fds;
    for (unsigned f = 0; f < nfiles; ++f) fds.fds.push_back(OpenOrThrow(t.files[f], O_RDONLY, false));
    AlignedBuf got(kPage), want(kPage);
    auto check = [&](unsigned f, uint64_t page) {
      ssize_t n = bench::PreadFull(fds.fds[f], got.p, kPage, static_cast<off_t>(page * kPage));
      model.Expected(gen, f, page, want.p);
      std::string d = Compare(got.p, n, want.p);
      ++verify_pages;
      if (!d.empty()) {
        ++verify_mismatches;
        if (mismatches.size() < 10) mismatches.push_back({f, page, "after discards: " + d});
      }
    };
    for (const Range& r : ranges) check(r.file, r.first + Mix(o.seed, r.first) % r.count);
    const uint64_t extra = std::max<uint64_t>(ranges.size(), 256);
    for (uint64_t i = 0; i < extra; ++i) {
      uint64_t r = Mix(o.seed ^ 0x5a3bULL, i);
      check(static_cast<unsigned>(r % nfiles), Mix(r) % pages);
    }
  }

  // (8) Remove the chain (unless --keep).
  cleanup.Run();

  // Report.
  const bool ok = read_mismatches == 0 && verify_mismatches == 0;
  const bench::LayoutStats& ls = w->layout_stats();
  const bench::SourceStats& ss = w->sources();
  j["data"] = {{"page_size", kPage},
               {"files", nfiles},
               {"image_pages", pages},
               {"logical_bytes", uint64_t{nfiles} * pages * kPage},
               {"parent",
                {{"zero_pages", ls.zero_pages},
                 {"file_pages", ls.file_pages},
                 {"record_pages", ls.record_pages},
                 {"repeat_pages", ls.repeat_pages}}},
               {"sources",
                {{"files_seen", ss.files_seen},
                 {"files_used", ss.files_used},
                 {"pages", ss.pages},
                 {"zero_pages_skipped", ss.zero_skipped},
                 {"wrapped_pages", ss.wraps}}},
               {"ingested_nonzero_blocks", ingested_nonzero},
               {"ingested_distinct_blocks", ingested_distinct},
               {"ideal_bytes", ingested_distinct * kPage},
               {"ideal_dedup_ratio", ingested_distinct ? double(ingested_nonzero) / double(ingested_distinct) : 1.0}};
  j["ingest"] = ToJson(ingest);
  j["destage_lag"] = {{"before_run", WaitJson(lag_before)},
                      {"after_ingest", WaitJson(lag_ingest)},
                      {"after_random_writes", WaitJson(lag_rw)}};
  j["space"] = {{"after_ingest", ToJson(space_ingest)},
                {"after_random_writes", o.random_ops ? ToJson(space_rw) : Json(nullptr)},
                {"after_discards", ranges.empty() ? Json(nullptr) : ToJson(space_disc)}};
  j["catalog"] =
      catalog_bytes
          ? Json{{"bytes", *catalog_bytes},
                 {"file_bytes", *catalog_files},
                 {"nonzero_blocks", ingested_nonzero},
                 {"bytes_per_block", ingested_nonzero ? double(*catalog_bytes) / double(ingested_nonzero) : 0.0}}
          : Json(nullptr);
  j["random_write"] = ToJson(rw);
  j["random_read"] = ToJson(rr);
  j["random_read"]["mismatches"] = read_mismatches;
  j["discard"] = ToJson(disc);
  j["discard"]["ranges"] = ranges.size();
  j["discard"]["pages"] = discarded_pages;
  j["discard"]["nonzero_pages"] = discarded_nonzero;
  j["reclaim"] = {{"expected_bytes", expected_reclaim},
                  {"reclaimed_bytes", reclaimed},
                  {"seconds", reclaim_seconds >= 0 ? Json(reclaim_seconds) : Json(nullptr)},
                  {"seconds_to_50pct", reclaim_half >= 0 ? Json(reclaim_half) : Json(nullptr)},
                  {"seconds_to_90pct", reclaim_90 >= 0 ? Json(reclaim_90) : Json(nullptr)},
                  {"complete", reclaim_complete},
                  {"complete_at_share", kReclaimDone},
                  {"gave_up", reclaim_gave_up}};
  j["verify"] = {{"random_reads", rr.ops},
                 {"read_back_at_end", verify_pages},
                 {"mismatches", read_mismatches + verify_mismatches}};
  j["kept"] = o.keep;
  j["ok"] = ok;

  for (const Mismatch& m : mismatches)
    std::fprintf(stderr, "chainswap bench: MISMATCH %s page %" PRIu64 ": %s\n", FileName(m.file).c_str(), m.page,
                 m.detail.c_str());

  if (quiet_human) {
    std::printf("%s\n", j.dump(2).c_str());
    return ok ? 0 : 1;
  }

  auto pct = [](uint64_t part, uint64_t whole) {
    return whole ? Fixed(100.0 * double(part) / double(whole), 0) + "%" : "0%";
  };
  std::printf("chainswap bench: %s (%s%s), chain \"%s\"%s, seed %" PRIu64 "\n", o.target.c_str(),
              t.chainswap ? "chainswap mount" : "plain directory",
              t.has_backing() ? (", backing " + o.backing).c_str() : "", o.chain.c_str(),
              t.chainswap ? (" (dedup ID " + t.dedup_id + ")").c_str() : "", o.seed);
  std::string file_text;
  if (ss.pages == 0) {
    file_text = "synthesized (no readable source files)";
  } else {
    file_text = "real file pages (" + std::to_string(ss.pages) + " from " + std::to_string(ss.files_used) + " files";
    if (ss.wraps) file_text += ", " + std::to_string(ss.wraps) + " reused with a tag: too few source pages";
    file_text += ")";
  }
  std::printf(
      "data: parent %s + %u clone(s) = %s logical; parent pages %s zero, %s %s, %s records, %s repeats; "
      "each clone rewrites %s of non-zero pages\n",
      HumanBytes(pages * kPage).c_str(), o.clones, HumanBytes(uint64_t{nfiles} * pages * kPage).c_str(),
      pct(ls.zero_pages, pages).c_str(), pct(ls.file_pages, pages).c_str(), file_text.c_str(),
      pct(ls.record_pages, pages).c_str(), pct(ls.repeat_pages, pages).c_str(),
      (Fixed(100 * o.mutation, 1) + "%").c_str());
  std::printf("ideal: %" PRIu64 " distinct of %" PRIu64 " non-zero blocks written = %s, dedup %.2fx\n\n",
              ingested_distinct, ingested_nonzero, HumanBytes(ingested_distinct * kPage).c_str(),
              ingested_distinct ? double(ingested_nonzero) / double(ingested_distinct) : 1.0);

  Table perf({"phase", "op", "ops", "bytes", "seconds", "MB/s", "IOPS", "p50 us", "p99 us", "p99.9 us"});
  auto row = [&](const char* phase, const char* op, const PhaseResult& p, bool show_iops) {
    perf.Add({phase, op, std::to_string(p.ops), HumanBytes(p.bytes), Fixed(p.io_seconds, 3), Fixed(p.mbps(), 1),
              show_iops ? Fixed(p.iops(), 0) : "-", Fixed(p.lat.p50_us, 1), Fixed(p.lat.p99_us, 1),
              Fixed(p.lat.p999_us, 1)});
  };
  row("ingest", "1 MiB write+fsync", ingest, false);
  std::string rw_op = std::string("4 KiB pwrite") + (o.direct ? " O_DIRECT" : "");
  std::string rr_op = std::string("4 KiB pread") + (o.direct ? " O_DIRECT" : "");
  if (o.random_ops > 0) {
    row("random write", rw_op.c_str(), rw, true);
    row("random read", rr_op.c_str(), rr, true);
  }
  if (!ranges.empty()) row("discard", "1 MiB punch", disc, true);
  std::printf("%s", perf.Render().c_str());
  std::printf("(seconds: time in the I/O calls; MB/s and IOPS from it, per thread, %u thread(s))\n\n", threads);

  Table space({"stage", "measured by", "non-zero", "ideal", "stored", "stored/ideal", "ideal dedup", "achieved"});
  for (const SpaceStage* s : {&space_ingest, &space_rw, &space_disc}) {
    if ((s == &space_rw && o.random_ops == 0) || (s == &space_disc && ranges.empty())) continue;
    space.Add({s->name, s->measured_by, HumanBytes(s->nonzero_bytes), HumanBytes(s->ideal_bytes),
               HumanBytes(s->stored_bytes), Fixed(s->stored_over_ideal(), 3), Fixed(s->ideal_ratio(), 2) + "x",
               Fixed(s->achieved_ratio(), 2) + "x"});
  }
  std::printf("%s", space.Render().c_str());
  if (t.chainswap && space_ingest.catalog_nonzero)
    std::printf(
        "chain catalog after ingest: %s non-zero (%s), %s stored\n", HumanBytes(*space_ingest.catalog_nonzero).c_str(),
        *space_ingest.catalog_nonzero == space_ingest.nonzero_bytes ? "as written" : "DIFFERS from what was written",
        HumanBytes(space_ingest.catalog_stored.value_or(0)).c_str());
  std::printf("\n");
  if (catalog_bytes)
    std::printf("catalog: %s of pages added for %" PRIu64
                " non-zero blocks = %.1f bytes/block (goal <= 64); "
                "catalog.db + WAL on disk %s\n",
                HumanBytes(*catalog_bytes).c_str(), ingested_nonzero,
                ingested_nonzero ? double(*catalog_bytes) / double(ingested_nonzero) : 0.0,
                HumanBytes(*catalog_files).c_str());
  else
    std::printf("catalog: n/a (%s)\n", t.has_backing() ? "catalog.db unreadable" : "give --backing");
  std::printf("destage lag: %s after ingest, %s after random writes", WaitText(lag_ingest).c_str(),
              o.random_ops ? WaitText(lag_rw).c_str() : "n/a");
  if (lag_before.available && lag_before.at_start.pending_records > 0)
    std::printf(" (waited %s for earlier work first)", WaitText(lag_before).c_str());
  std::printf("\n");
  if (!ranges.empty())
    std::printf("reclaim: %s of %s expected (%s) back %s%s%s (goal <= 1 s)\n", HumanBytes(reclaimed).c_str(),
                HumanBytes(expected_reclaim).c_str(),
                expected_reclaim ? (Fixed(100.0 * double(reclaimed) / double(expected_reclaim), 1) + "%").c_str() : "-",
                reclaim_seconds >= 0 ? ("in " + Fixed(reclaim_seconds, 3) + " s").c_str() : "(none seen)",
                reclaim_90 >= 0 ? (" (90% in " + Fixed(reclaim_90, 3) + " s)").c_str() : "",
                reclaim_complete  ? ""
                : reclaim_gave_up ? ", gave up after 30 s"
                                  : ", then steady for 1 s");
  else
    std::printf("reclaim: n/a (nothing discarded)\n");
  std::printf("verify: %" PRIu64 " random reads + %" PRIu64 " pages read back at the end, %" PRIu64 " mismatch(es)%s\n",
              rr.ops, verify_pages, read_mismatches + verify_mismatches, ok ? "" : "  FAILED");
  if (o.keep) std::printf("kept: %s\n", t.chain_dir.c_str());
  return ok ? 0 : 1;
}

}  // namespace

void AddBenchOptions(CLI::App* sub, BenchOptions* o) {
  sub->add_option("TARGET", o->target, "chainswap mountpoint (or a plain directory, for comparison)")->required();
  sub->add_option("--chain", o->chain, "chain directory to create in TARGET (removed at the end)")
      ->capture_default_str();
  sub->add_option("--backing", o->backing,
                  "the mount's backing directory: store.dat allocation and catalog.db size (else n/a)");
  sub->add_option("--clones", o->clones, "clones of the parent image")
      ->capture_default_str()
      ->check(CLI::Range(0u, 1000u));
  sub->add_option("--image-mib", o->image_mib, "parent image size in MiB")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 24));
  sub->add_option("--zero-share", o->zero_share, "share of zero pages in the parent")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--shared-share", o->shared_share,
                  "share of the parent's non-zero pages that repeat another page of the image")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--record-share", o->record_share, "share of the parent's non-zero pages of synthesized records")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--mutation", o->mutation, "share of non-zero pages each clone rewrites with its own data")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--discard", o->discard, "share of each file discarded (PUNCH_HOLE, 1 MiB ranges) at the end")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--random-ops", o->random_ops, "4 KiB random writes, and as many random reads")
      ->capture_default_str();
  sub->add_option("--threads", o->threads, "threads for the random I/O phases")
      ->capture_default_str()
      ->check(CLI::Range(1u, 256u));
  sub->add_flag("--direct", o->direct, "O_DIRECT for the random I/O phases");
  sub->add_option("--seed", o->seed, "seed of every choice (same seed, same files: same data)")->capture_default_str();
  sub->add_option("--source", o->sources,
                  "directory of real files to take pages from (repeatable; default: "
                  "/usr/lib/x86_64-linux-gnu, /usr/bin, /usr/share/doc)")
      ->allow_extra_args(false);
  sub->add_option("--destage-timeout", o->destage_timeout, "seconds to wait for destage to finish")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_flag("--keep", o->keep, "keep the chain directory and its files");
  sub->add_flag("--json", o->json, "machine-readable output");
}

int RunBench(const BenchOptions& o) {
  try {
    return Run(o);
  } catch (const BenchError& e) {
    if (::isatty(2)) std::fputs("\r\033[K", stderr);
    std::fprintf(stderr, "chainswap bench: %s\n", e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "chainswap bench: out of memory (try a smaller --image-mib)\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chainswap bench: %s\n", e.what());
  }
  return 1;
}

}  // namespace chainswap
