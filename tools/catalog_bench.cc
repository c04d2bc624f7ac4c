// chainswap-catalog-bench: the write destager's inner loop without FUSE or
// the journal. Fills one swap file with N distinct random blocks through
// Catalog::ApplyBlockOps, B blocks per call, syncing the catalog every 4096
// blocks as bucket retirement does, and reports blocks/s.
//
//   chainswap-catalog-bench [options] [N [DIR [M [B]]]]
//
// The classic form (no options) fills N blocks (default 65536) into a
// formatted DIR (default /var/tmp/cs-catalog-bench) with a real content
// store, then applies M random overwrites of them with fresh content
// (default 0), B blocks per call (default 64).
//
// Options:
//   --window W        print the rate of every W-block window of the fill
//                     (growth mode; 0 = only the whole fill)
//   --marks A,B,...   catalog sizes (blocks) at which to report the catalog:
//                     a TRUNCATE checkpoint, then page_count * page_size
//                     per block, the WAL and the process's RssAnon
//   --overwrite-at A,B,...
//                     at these catalog sizes pause the fill and apply M
//                     random overwrites of the blocks filled so far
//   --store file|discard
//                     content store: a real store.dat (default), or one
//                     that keeps nothing (the catalog alone; growth runs)
//   --clones K        clone data: after the fill, K clones of the file
//                     (Catalog::CloneRange), each then overwritten at
//                     --mutate F of its blocks (default 0.1) with new data;
//                     reports catalog bytes per LAT entry
//   --cache-mib C     CatalogOptions cache size (when the catalog has one)
//   --mmap-mib X      CatalogOptions mmap size (when the catalog has one)
//   --hash-table-limit E
//                     CatalogOptions::hash_table_limit: the hash table's
//                     quota in entries (new blocks beyond it get none)
//   --seed S          random seed (default 1)
#include <sys/resource.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "catalog/backing_dir.h"

using namespace chainswap;

namespace {

std::vector<uint64_t> ParseList(const char* s) {
  std::vector<uint64_t> v;
  while (*s) {
    char* end = nullptr;
    v.push_back(std::strtoull(s, &end, 10));
    if (*end == 'K' || *end == 'k') v.back() <<= 10, ++end;
    else if (*end == 'M' || *end == 'm') v.back() <<= 20, ++end;
    s = *end == ',' ? end + 1 : end;
    if (end == s && *s) break;
  }
  return v;
}

uint64_t ParseCount(const char* s) {
  auto v = ParseList(s);
  return v.empty() ? 0 : v[0];
}

// A field of /proc/self/status in KiB (0 when absent).
uint64_t StatusKib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(in, line)) {
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':')
      return std::strtoull(line.c_str() + n + 1, nullptr, 10);
  }
  return 0;
}

// Bytes this process passed to write(2)-like calls (/proc/self/io wchar):
// with a discarding store, the catalog's WAL and checkpoint writes.
uint64_t WrittenBytes() {
  std::ifstream in("/proc/self/io");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, 6, "wchar:") == 0) return std::strtoull(line.c_str() + 6, nullptr, 10);
  }
  return 0;
}

// User + system CPU seconds of this process.
double CpuSeconds() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Block contents: a fast generator (mt19937 cost more than the catalog).
struct Xorshift {
  uint64_t s;
  uint64_t operator()() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
};

int64_t Pragma(sql::Db& db, const char* q) {
  auto s = sql::Stmt::Prepare(db, q);
  if (!s.ok()) return -1;
  auto r = s->Step();
  return r.ok() && *r ? s->Int(0) : -1;
}

template <typename O>
void SetCacheOptions(O& o, uint64_t cache_mib, uint64_t mmap_mib, bool set_cache, bool set_mmap) {
  if constexpr (requires { o.cache_bytes; }) {
    if (set_cache) o.cache_bytes = cache_mib << 20;
  } else if (set_cache) {
    fprintf(stderr, "note: this catalog has no cache option; --cache-mib ignored\n");
  }
  if constexpr (requires { o.mmap_bytes; }) {
    if (set_mmap) o.mmap_bytes = mmap_mib << 20;
  } else if (set_mmap) {
    fprintf(stderr, "note: this catalog has no mmap option; --mmap-mib ignored\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t window = 0, clones = 0, cache_mib = 0, mmap_mib = 0, seed = 1, hash_limit = 0;
  double mutate = 0.1;
  bool set_cache = false, set_mmap = false, discard = false;
  std::vector<uint64_t> marks, overwrite_at;
  std::vector<const char*> pos;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> const char* {
      if (i + 1 >= argc) {
        fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--window") window = ParseCount(val());
    else if (a == "--marks") marks = ParseList(val());
    else if (a == "--overwrite-at") overwrite_at = ParseList(val());
    else if (a == "--store") discard = std::string(val()) == "discard";
    else if (a == "--clones") clones = ParseCount(val());
    else if (a == "--mutate") mutate = std::atof(val());
    else if (a == "--cache-mib") cache_mib = ParseCount(val()), set_cache = true;
    else if (a == "--mmap-mib") mmap_mib = ParseCount(val()), set_mmap = true;
    else if (a == "--seed") seed = ParseCount(val());
    else if (a == "--hash-table-limit") hash_limit = ParseCount(val());
    else if (a.size() > 1 && a[0] == '-') {
      fprintf(stderr, "unknown option %s (see the head of tools/catalog_bench.cc)\n", a.c_str());
      return 2;
    } else pos.push_back(argv[i]);
  }
  const uint64_t n = pos.size() > 0 ? ParseCount(pos[0]) : 65536;
  const std::string dir = pos.size() > 1 ? pos[1] : "/var/tmp/cs-catalog-bench";
  const uint64_t m = pos.size() > 2 ? ParseCount(pos[2]) : 0;
  const int batch = pos.size() > 3 ? atoi(pos[3]) : 64;
  if (n == 0 || batch <= 0) {
    fprintf(stderr, "usage: chainswap-catalog-bench [options] [N [DIR [M [B]]]]\n");
    return 2;
  }
  if (std::system(("rm -rf '" + dir + "'").c_str()) != 0) return 1;
  if (auto st = BackingDir::Format(dir); !st.ok()) {
    fprintf(stderr, "%s\n", st.ToString().c_str());
    return 1;
  }
  CatalogOptions copts;
  SetCacheOptions(copts, cache_mib, mmap_mib, set_cache, set_mmap);
  if (hash_limit) copts.hash_table_limit = hash_limit;
  std::unique_ptr<BackingDir> backing;
  std::unique_ptr<ContentStore> discard_store;
  std::unique_ptr<Catalog> discard_catalog;
  Catalog* cp = nullptr;
  if (discard) {
    discard_store = ContentStore::OpenDiscarding();
    auto c = Catalog::Open(BackingPaths(dir).catalog, discard_store.get(), copts);
    if (!c.ok()) {
      fprintf(stderr, "%s\n", c.status().ToString().c_str());
      return 1;
    }
    discard_catalog = std::move(*c);
    cp = discard_catalog.get();
  } else {
    auto b = BackingDir::Open(dir, LockMode::kExclusive, copts);
    if (!b.ok()) {
      fprintf(stderr, "%s\n", b.status().ToString().c_str());
      return 1;
    }
    backing = std::move(*b);
    cp = &backing->catalog();
  }
  Catalog& c = *cp;
  auto ch = c.CreateChain("c", 0700, 0, 0, 1);
  auto f = c.CreateFile(ch->dedup_id, "f", 0600, 0, 0, 1);
  if (!ch.ok() || !f.ok()) {
    fprintf(stderr, "cannot create the chain or file\n");
    return 1;
  }
  auto h = c.HasherFor(ch->dedup_id);
  std::mt19937_64 rng(seed);
  Xorshift fill{seed * 0x9E3779B97F4A7C15ull + 1};
  std::vector<uint64_t> data(size_t(batch) * 512);
  printf("# chainswap-catalog-bench: N=%" PRIu64 " B=%d M=%" PRIu64 " store=%s dir=%s hash_table_limit=%" PRIu64 "\n",
         n, batch, m, discard ? "discard" : "file", dir.c_str(), hash_limit);
  fflush(stdout);

  using Clock = std::chrono::steady_clock;
  uint64_t since_sync = 0;
  // Applies `count` blocks of file `file`, batch by batch; lba_of(i) names
  // the i-th LBA. Calls tick(done) after each batch.
  auto run = [&](int64_t file, uint64_t count, auto lba_of, auto tick) -> bool {
    std::vector<BlockOp> ops;
    for (uint64_t i = 0; i < count; i += batch) {
      const uint64_t k = std::min<uint64_t>(batch, count - i);
      for (auto& w : data) w = fill();
      ops.assign(k, BlockOp{});
      for (uint64_t j = 0; j < k; ++j) {
        ops[j].file_id = file;
        ops[j].dedup_id = ch->dedup_id;
        ops[j].lba = lba_of(i + j);
        ops[j].data = reinterpret_cast<const uint8_t*>(&data[size_t(j) * 512]);
        ops[j].hash = (*h)->Hash(ops[j].data);
      }
      auto r = c.ApplyBlockOps(ops);
      if (!r.ok()) {
        fprintf(stderr, "%s\n", r.status().ToString().c_str());
        return false;
      }
      if ((since_sync += k) >= 4096) {
        since_sync = 0;
        if (auto st = c.Sync(); !st.ok()) {
          fprintf(stderr, "%s\n", st.ToString().c_str());
          return false;
        }
      }
      tick(i + k);
    }
    return true;
  };
  auto report_size = [&](const char* what, uint64_t blocks, uint64_t lat_rows) -> bool {
    // Idle Syncs until nothing waits (freed slots, unmerged index changes):
    // the catalog at rest, its WAL folded in and emptied.
    const auto t0 = Clock::now();
    int syncs = 0;
    do {
      if (auto st = c.Sync(/*idle=*/true); !st.ok()) {
        fprintf(stderr, "%s\n", st.ToString().c_str());
        return false;
      }
    } while (++syncs < 100000 && c.HasSlotsToRelease());
    if (auto st = c.Sync(/*idle=*/true); !st.ok()) return false;  // the WAL, after the last merge
    printf("at rest after %d idle syncs in %.2fs\n", syncs + 1,
           std::chrono::duration<double>(Clock::now() - t0).count());
    sql::Db& db = c.db_for_tools();
    const int64_t pages = Pragma(db, "PRAGMA page_count");
    const int64_t page_size = Pragma(db, "PRAGMA page_size");
    const int64_t free_pages = Pragma(db, "PRAGMA freelist_count");
    const double bytes = double(pages) * double(page_size);
    printf("size %s: blocks=%" PRIu64 " lat=%" PRIu64 " db=%.1f MiB (%" PRId64 " free pages) wal=%" PRIu64
           " B: %.1f B/block, %.1f B/LAT entry; RssAnon %" PRIu64 " KiB, VmHWM %" PRIu64 " KiB\n",
           what, blocks, lat_rows, bytes / 1048576.0, free_pages, c.WalBytes(), bytes / double(blocks),
           bytes / double(lat_rows), StatusKib("RssAnon"), StatusKib("VmHWM"));
    const HashTableFigures ht = c.HashTable();
    printf("hash table: %" PRIu64 " entries, %" PRIu64 " blocks without one, quota %" PRIu64 "\n", ht.entries,
           ht.unindexed, ht.limit_entries);
    fflush(stdout);
    return true;
  };
  auto overwrite = [&](uint64_t filled) -> bool {
    if (m == 0) return true;
    std::uniform_int_distribution<uint64_t> pick(0, filled - 1);
    const auto t0 = Clock::now();
    const double cpu0 = CpuSeconds();
    const uint64_t w0 = WrittenBytes();
    if (!run(f->file_id, m, [&](uint64_t) { return pick(rng); }, [](uint64_t) {})) return false;
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    printf("random overwrites at %" PRIu64 " blocks: %" PRIu64 " in %.2fs: %.0f blocks/s, %.1f CPU us/block, "
           "%.0f B written/block\n",
           filled, m, s, double(m) / s, (CpuSeconds() - cpu0) * 1e6 / double(m),
           double(WrittenBytes() - w0) / double(m));
    fflush(stdout);
    return true;
  };

  // The fill, in windows; marks and overwrite points stop it where they fall.
  std::set<uint64_t> stops(marks.begin(), marks.end());
  stops.insert(overwrite_at.begin(), overwrite_at.end());
  if (window) {
    for (uint64_t w = window; w < n; w += window) stops.insert(w);
  }
  stops.insert(n);
  const std::set<uint64_t> mark_set(marks.begin(), marks.end());
  const std::set<uint64_t> ow_set(overwrite_at.begin(), overwrite_at.end());
  uint64_t filled = 0;
  double fill_seconds = 0;
  uint64_t win_start = 0;
  double win_seconds = 0, win_cpu = 0;
  uint64_t win_written = 0;
  for (uint64_t stop : stops) {
    if (stop > n) break;
    const uint64_t base = filled;
    const auto t0 = Clock::now();
    const double cpu0 = CpuSeconds();
    const uint64_t w0 = WrittenBytes();
    if (!run(f->file_id, stop - filled, [&](uint64_t i) { return base + i; }, [](uint64_t) {})) return 1;
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    fill_seconds += s;
    win_seconds += s;
    win_cpu += CpuSeconds() - cpu0;
    win_written += WrittenBytes() - w0;
    filled = stop;
    if (window && (filled % window == 0 || filled == n)) {
      const double blocks = double(filled - win_start);
      printf("window %" PRIu64 "..%" PRIu64 ": %.0f blocks/s, %.1f CPU us/block, %.0f B written/block "
             "(RssAnon %" PRIu64 " KiB)\n",
             win_start, filled, blocks / win_seconds, win_cpu * 1e6 / blocks, double(win_written) / blocks,
             StatusKib("RssAnon"));
      fflush(stdout);
      win_start = filled;
      win_seconds = win_cpu = 0;
      win_written = 0;
    }
    if (mark_set.count(filled) && !report_size("unique", filled, filled)) return 1;
    if (ow_set.count(filled) && !overwrite(filled)) return 1;
  }
  printf("unique blocks: %" PRIu64 " blocks in %.2fs: %.0f blocks/s (%.1f MB/s)\n", n, fill_seconds,
         double(n) / fill_seconds, double(n) * 4096.0 / fill_seconds / 1e6);
  if (ow_set.empty() && !overwrite(n)) return 1;
  if (clones) {
    std::uniform_real_distribution<double> u(0, 1);
    const auto t0 = Clock::now();
    for (uint64_t k = 0; k < clones; ++k) {
      auto cf = c.CreateFile(ch->dedup_id, "clone" + std::to_string(k), 0600, 0, 0, 1);
      if (!cf.ok()) return 1;
      for (uint64_t at = 0; at < n; at += 65536) {
        if (auto st = c.CloneRange(f->file_id, cf->file_id, at, at, std::min<uint64_t>(65536, n - at)); !st.ok()) {
          fprintf(stderr, "%s\n", st.ToString().c_str());
          return 1;
        }
      }
      std::vector<uint64_t> lbas;
      for (uint64_t l = 0; l < n; ++l)
        if (u(rng) < mutate) lbas.push_back(l);
      if (!run(cf->file_id, lbas.size(), [&](uint64_t i) { return lbas[i]; }, [](uint64_t) {})) return 1;
    }
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    printf("clones: %" PRIu64 " clones of %" PRIu64 " blocks, %.0f%% rewritten, in %.2fs\n", clones, n,
           mutate * 100, s);
    if (!report_size("clone chain", c.Usage().used_slots, n * (clones + 1))) return 1;
  } else if (mark_set.count(n) == 0 && (window || !marks.empty())) {
    if (!report_size("unique", n, n)) return 1;
  }
  return 0;
}
