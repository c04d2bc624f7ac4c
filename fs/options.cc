#include "fs/options.h"

#include <cctype>
#include <sstream>

#include "catalog/catalog.h"

namespace chainswap {

bool ParseSize(const std::string& text, uint64_t* out) {
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0]))) return false;
  size_t pos = 0;
  unsigned long long v;
  try {
    v = std::stoull(text, &pos, 10);
  } catch (...) {
    return false;
  }
  std::string suffix = text.substr(pos);
  uint64_t mul = 1;
  if (suffix.empty() || suffix == "B") mul = 1;
  else if (suffix == "K" || suffix == "k" || suffix == "KiB") mul = 1ull << 10;
  else if (suffix == "M" || suffix == "m" || suffix == "MiB") mul = 1ull << 20;
  else if (suffix == "G" || suffix == "g" || suffix == "GiB") mul = 1ull << 30;
  else if (suffix == "T" || suffix == "t" || suffix == "TiB") mul = 1ull << 40;
  else return false;
  if (v > UINT64_MAX / mul) return false;
  *out = v * mul;
  return true;
}

namespace {

bool Ignorable(const std::string& o) {
  static const char* kIgnored[] = {"defaults", "auto", "noauto", "nofail", "_netdev",
                                   "user", "users", "nouser", "owner", "comment"};
  for (const char* k : kIgnored)
    if (o == k) return true;
  return o.rfind("x-", 0) == 0 || o.rfind("comment=", 0) == 0;
}

// *interval_given: metrics_interval= was seen (it needs metrics_file=).
void ParseOption(const std::string& o, ParseResult& r, bool* interval_given) {
  MountConfig& c = r.config;
  auto value = [&](const char* key) -> const char* {
    size_t n = std::char_traits<char>::length(key);
    return o.size() > n && o.compare(0, n, key) == 0 && o[n] == '=' ? o.c_str() + n + 1 : nullptr;
  };
  if (o.empty() || Ignorable(o)) return;
  if (o == "dedup_verify") {
    c.dedup_verify = true;
  } else if (o == "no_dedup_verify" || o == "dedup_verify=0" || o == "dedup_verify=off") {
    c.dedup_verify = false;
  } else if (const char* v = value("capacity")) {
    if (!ParseSize(v, &c.capacity_bytes) || (c.capacity_bytes != 0 && c.capacity_bytes < 4096))
      r.errors.push_back("capacity=" + std::string(v) + ": expected a size such as 64G (at least 4K)");
  } else if (const char* vc = value("catalog_cache")) {
    if (!ParseSize(vc, &c.catalog_cache_bytes) || c.catalog_cache_bytes < (1u << 20))
      r.errors.push_back("catalog_cache=" + std::string(vc) + ": expected a size such as 16M (at least 1M)");
  } else if (const char* vmap = value("catalog_mmap")) {
    if (!ParseSize(vmap, &c.catalog_mmap_bytes))
      r.errors.push_back("catalog_mmap=" + std::string(vmap) + ": expected a size such as 8G, or 0 (off)");
  } else if (const char* vh = value("hash_table_limit")) {
    // Digits only: entries; with a unit: bytes of catalog.
    const std::string t = vh;
    uint64_t n = 0;
    const bool entries = !t.empty() && t.find_first_not_of("0123456789") == std::string::npos;
    if (!ParseSize(t, &n) || (!entries && n / kHashEntryBytes == 0))
      r.errors.push_back("hash_table_limit=" + t + ": expected a number of entries such as 1000000, a size such as "
                         "64M (" + std::to_string(kHashEntryBytes) + " bytes per entry), or 0 (no quota)");
    else c.hash_table_limit_entries = entries ? n : n / kHashEntryBytes;
  } else if (const char* vz = value("compress")) {
    const std::string z = vz;
    if (z == "lz4") c.compress = true;
    else if (z == "off") c.compress = false;
    else r.errors.push_back("compress=" + z + ": expected lz4 or off");
  } else if (const char* vrt = value("rados_timeout")) {
    uint64_t n = 0;
    if (!ParseSize(vrt, &n) || n < 1 || n > 600) r.errors.push_back("rados_timeout=" + std::string(vrt) + ": expected seconds, 1..600");
    else c.rados_timeout_s = static_cast<int>(n);
  } else if (const char* v2 = value("log_level")) {
    std::string lv = v2;
    if (lv != "trace" && lv != "debug" && lv != "info" && lv != "warn" && lv != "error" && lv != "off")
      r.errors.push_back("log_level=" + lv + ": expected trace, debug, info, warn, error or off");
    else c.log_level = lv;
  } else if (const char* vb = value("bucket_size")) {
    if (!ParseSize(vb, &c.bucket_bytes)) r.errors.push_back("bucket_size=" + std::string(vb) + ": expected a size such as 16M");
  } else if (const char* vj = value("journal_limit")) {
    if (!ParseSize(vj, &c.journal_limit)) r.errors.push_back("journal_limit=" + std::string(vj) + ": expected a size such as 256M");
  } else if (const char* vfd = value("fsync_destage")) {
    if (std::string(vfd) == "off") c.fsync_destage_bytes = 0;
    else if (!ParseSize(vfd, &c.fsync_destage_bytes) || c.fsync_destage_bytes == 0)
      r.errors.push_back("fsync_destage=" + std::string(vfd) + ": expected a size such as 16M, or off");
  } else if (const char* vq = value("queue_slots")) {
    uint64_t n = 0;
    if (!ParseSize(vq, &n) || n < 2 || n > 65536) r.errors.push_back("queue_slots=" + std::string(vq) + ": expected 2..65536");
    else c.queue_slots = static_cast<uint32_t>(n);
  } else if (const char* vd = value("delete_slots_min")) {
    uint64_t n = 0;
    if (!ParseSize(vd, &n) || n < 1 || n > 65535) r.errors.push_back("delete_slots_min=" + std::string(vd) + ": expected 1..N-1");
    else c.delete_slots_min = static_cast<uint32_t>(n);
  } else if (const char* vf = value("delete_slots_fixed")) {
    uint64_t n = 0;
    if (!ParseSize(vf, &n) || n > 65535) r.errors.push_back("delete_slots_fixed=" + std::string(vf) + ": expected 0 (adaptive) or 1..N-1");
    else c.delete_slots_fixed = static_cast<uint32_t>(n);
  } else if (const char* vi = value("idle_seal_ms")) {
    uint64_t n = 0;
    if (!ParseSize(vi, &n) || n < 1 || n > 600000) r.errors.push_back("idle_seal_ms=" + std::string(vi) + ": expected 1..600000");
    else c.idle_seal_ms = static_cast<uint32_t>(n);
  } else if (const char* vdd = value("destage_delay")) {
    uint64_t n = 0;
    if (!ParseSize(vdd, &n) || n > 60000)
      r.errors.push_back("destage_delay=" + std::string(vdd) + ": expected milliseconds, 0..60000");
    else
      c.destage_delay_ms = static_cast<uint32_t>(n);
  } else if (const char* vl = value("pressure_low")) {
    try { c.pressure_low = std::stod(vl); } catch (...) { r.errors.push_back("pressure_low=" + std::string(vl) + ": expected a fraction"); }
  } else if (const char* vph = value("pressure_high")) {
    try { c.pressure_high = std::stod(vph); } catch (...) { r.errors.push_back("pressure_high=" + std::string(vph) + ": expected a fraction"); }
  } else if (o == "metrics_file=" || o == "metrics_interval=" || o == "metrics_file" || o == "metrics_interval") {
    r.errors.push_back(o + ": needs a value (metrics_file=PATH, metrics_interval=SECONDS)");
    if (o.rfind("metrics_interval", 0) == 0) *interval_given = true;
  } else if (const char* vm = value("metrics_file")) {
    std::string path = vm;
    if (path.empty() || path[0] != '/' || path.back() == '/')
      r.errors.push_back("metrics_file=" + path + ": expected the absolute path of a file, e.g. "
                         "/var/lib/node_exporter/textfile_collector/chainswap.prom");
    else c.metrics_file = path;
  } else if (const char* vs = value("metrics_interval")) {
    uint64_t n = 0;
    if (!ParseSize(vs, &n) || std::string(vs).find_first_not_of("0123456789") != std::string::npos || n < 1 ||
        n > kMaxMetricsIntervalS)
      r.errors.push_back("metrics_interval=" + std::string(vs) + ": expected whole seconds from 1 to " +
                         std::to_string(kMaxMetricsIntervalS));
    else c.metrics_interval_s = static_cast<uint32_t>(n);
    *interval_given = true;
  } else if (o == "mlock") {
    c.mlock = true;
  } else if (o == "no_mlock" || o == "mlock=0" || o == "mlock=off") {
    c.mlock = false;
  } else if (const char* vo = value("oom_score_adj")) {
    if (std::string(vo) == "keep") {
      c.oom_score_adj.reset();
    } else {
      try {
        size_t pos = 0;
        int adj = std::stoi(vo, &pos);
        if (vo[pos] != '\0' || adj < -1000 || adj > 1000) throw std::out_of_range("oom_score_adj");
        c.oom_score_adj = adj;
      } catch (...) {
        r.errors.push_back("oom_score_adj=" + std::string(vo) + ": expected -1000..1000 or keep");
      }
    }
  } else if (const char* v3 = value("threads")) {
    try {
      size_t pos = 0;
      unsigned long t = std::stoul(v3, &pos);
      if (v3[pos] != '\0' || t < 1 || t > 256) throw std::out_of_range("threads");
      c.threads = static_cast<unsigned>(t);
    } catch (...) {
      r.errors.push_back("threads=" + std::string(v3) + ": expected a number from 1 to 256");
    }
  } else {
    c.fuse_options.push_back(o);
  }
}

}  // namespace

ParseResult ParseMountArgs(const std::vector<std::string>& args) {
  ParseResult r;
  bool interval_given = false;
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-f") r.config.foreground = true;
    else if (a == "-d" || a == "--debug") r.config.debug = r.config.foreground = true;
    else if (a == "-s") r.config.single_thread = true;
    else if (a == "-h" || a == "--help") r.config.show_help = true;
    else if (a == "-V" || a == "--version") r.config.show_version = true;
    else if (a == "-o" || a.rfind("-o", 0) == 0) {
      std::string list;
      if (a == "-o") {
        if (i + 1 >= args.size()) {
          r.errors.push_back("-o needs an option list");
          break;
        }
        list = args[++i];
      } else {
        list = a.substr(2);
      }
      std::stringstream ss(list);
      std::string item;
      while (std::getline(ss, item, ',')) ParseOption(item, r, &interval_given);
    } else if (!a.empty() && a[0] == '-') {
      r.errors.push_back("unknown argument " + a);
    } else {
      positional.push_back(a);
    }
  }
  if (interval_given && r.config.metrics_file.empty())
    r.errors.push_back("metrics_interval= needs metrics_file=PATH (where to write the metrics)");
  if (r.config.show_help || r.config.show_version) return r;
  if (positional.size() != 2) {
    r.errors.push_back("expected BACKING and MOUNTPOINT, got " + std::to_string(positional.size()) +
                       " positional argument(s)");
  } else {
    r.config.backing = positional[0];
    r.config.mountpoint = positional[1];
  }
  return r;
}

std::string MountUsage(const std::string& prog) {
  return "usage: " + prog + " BACKING MOUNTPOINT [-f] [-d] [-s] [-o opt[,opt...]]\n"
         "\n"
         "Mounts the chainswap backing directory BACKING (made by 'chainswap format') on MOUNTPOINT.\n"
         "\n"
         "  -f                 stay in the foreground, log to stderr (otherwise syslog)\n"
         "  -d                 libfuse debug output (implies -f)\n"
         "  -s                 single-threaded request loop\n"
         "chainswap options:\n"
         "  -o dedup_verify    compare bytes when hashes match (default)\n"
         "  -o no_dedup_verify trust the keyed 128-bit hash alone\n"
         "  -o capacity=SIZE   limit the content store (e.g. 64G); default: the backing fs\n"
         "  -o catalog_cache=SIZE  the catalog's memory: SQLite page cache and unmerged hash\n"
         "                     index changes (default 16M, at least 1M; docs/OPERATIONS.md)\n"
         "  -o catalog_mmap=SIZE   let SQLite map this much of the catalog for reads (default 0;\n"
         "                     the memory lock pins mapped pages too: use with no_mlock)\n"
         "  -o rados_timeout=SECONDS  a backing directory on RADOS (chainswap format --store):\n"
         "                     the Ceph client timeout for connecting and every operation\n"
         "                     (default 30; 1..600)\n"
         "  -o compress=lz4|off  store new unique blocks LZ4-compressed in 512-byte sectors, or\n"
         "                     raw (default: as chosen by chainswap format --compress; blocks\n"
         "                     already stored stay as they are)\n"
         "  -o hash_table_limit=ENTRIES|SIZE  quota of the chain hash table: at it, new unique\n"
         "                     blocks are stored without a hash entry (never deduplicated against);\n"
         "                     a size such as 64M counts " + std::to_string(kHashEntryBytes) + " bytes per entry (default: none)\n"
         "  -o log_level=LEVEL trace, debug, info (default), warn, error, off\n"
         "  -o threads=N       maximum FUSE worker threads (default 8)\n"
         "  -o oom_score_adj=N the daemon's OOM score adjustment, -1000..1000 (default -1000:\n"
         "                     never chosen by the OOM killer), or keep (inherit it)\n"
         "  -o no_mlock        do not lock the daemon's memory in RAM (default: locked)\n"
         "  -o metrics_file=PATH  rewrite PATH (absolute; its directory must exist) with the\n"
         "                     figures of 'chainswap stats' in the Prometheus text format, for\n"
         "                     node_exporter's textfile collector (atomically: PATH.tmp, rename)\n"
         "  -o metrics_interval=SECONDS  how often, 1..3600 (default 15)\n"
         "destage engine:\n"
         "  -o bucket_size=SIZE      journal bucket (segment) size (default 16M)\n"
         "  -o journal_limit=SIZE    writes wait above this much journal (default 256M)\n"
         "  -o fsync_destage=SIZE|off  an fsync that finds at least SIZE of journal not yet\n"
         "                           durable (and that at least half of the journal before it)\n"
         "                           destages it (unique blocks written once, duplicates never)\n"
         "                           instead of syncing the journal, waiting up to 5 s\n"
         "                           (default 16M; off: always sync the journal)\n"
         "  -o destage_delay=MS       write-back delay: a journal bucket's writes are destaged\n"
         "                           once it is MS old (or the journal is half full, or an\n"
         "                           fsync or the unmount waits for them), so overwrites made\n"
         "                           meanwhile are never written to the store (default 1000;\n"
         "                           0: at once)\n"
         "  -o queue_slots=N         logical queue slots N (default 64)\n"
         "  -o delete_slots_min=D    minimum delete slots D_min (default 4)\n"
         "  -o pressure_low=F, pressure_high=F  usage fractions where delete pressure\n"
         "                           starts and saturates (default 0.5, 0.9)\n"
         "  -o delete_slots_fixed=D  fixed D instead of the adaptive policy (benchmarks)\n"
         "  -o idle_seal_ms=MS       destage a partly filled bucket after MS idle (default 20)\n"
         "FUSE options: allow_other (lets other users, e.g. the hypervisor's, open files;\n"
         "  every open is still checked against file permissions: default_permissions is always on)\n";
}

}  // namespace chainswap
