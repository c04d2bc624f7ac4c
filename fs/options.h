// The daemon's typed configuration (SPEC §3, §6): one struct, every field
// validated, every error collected and reported at once before mounting.
//
//   chainswapfs BACKING MOUNTPOINT [-f] [-d] [-s] [-o opt[,opt...]]
//
// chainswap options (-o): dedup_verify / no_dedup_verify, capacity=SIZE
// (K/M/G/T suffixes), catalog_cache=SIZE, catalog_mmap=SIZE, log_level=trace|debug|info|warn|error, threads=N,
// bucket_size=SIZE, journal_limit=SIZE, fsync_destage=SIZE|off, queue_slots=N, delete_slots_min=D,
// pressure_low=F, pressure_high=F (fractions of journal/store usage),
// metrics_file=PATH, metrics_interval=SECONDS (fs/metrics_writer.h),
// hash_table_limit=ENTRIES|SIZE (catalog/catalog.h, kHashEntryBytes),
// compress=lz4|off (CatalogOptions::compress).
// Generic mount(8) options that make no sense to FUSE (defaults, auto,
// noauto, nofail, _netdev, user, users, nouser, x-*) are accepted and
// ignored, so the daemon works from /etc/fstab. Everything else is passed to
// libfuse (allow_other, ro, ...).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace chainswap {

struct MountConfig {
  std::string backing;
  std::string mountpoint;
  bool foreground = false;
  bool debug = false;            // -d: libfuse debug output, implies foreground
  bool single_thread = false;    // -s
  bool show_help = false;
  bool show_version = false;
  bool dedup_verify = true;
  uint64_t capacity_bytes = 0;   // 0: unlimited
  uint64_t catalog_cache_bytes = 16ull << 20;  // catalog_cache= (CatalogOptions::cache_bytes)
  uint64_t catalog_mmap_bytes = 0;             // catalog_mmap= (CatalogOptions::mmap_bytes)
  // hash_table_limit=: the chain hash table's quota in entries (0: none);
  // a size (K/M/G/T suffix) is converted at kHashEntryBytes per entry.
  uint64_t hash_table_limit_entries = 0;
  // compress=lz4|off: compression of new unique blocks; unset: the backing
  // directory's setting (chainswap format --compress).
  std::optional<bool> compress;
  // rados_timeout=SECONDS: the Ceph client timeout of a backing directory
  // whose blocks are in RADOS (connect and every operation; 1..600).
  int rados_timeout_s = 30;
  std::string log_level = "info";
  unsigned threads = 8;          // max FUSE worker threads
  // Destage engine (SPEC §5).
  uint64_t bucket_bytes = 16ull << 20;   // bucket_size=
  uint64_t journal_limit = 256ull << 20; // journal_limit=
  uint64_t fsync_destage_bytes = 16ull << 20;  // fsync_destage= (0: off; EngineOptions::fsync_destage_bytes)
  uint32_t queue_slots = 64;             // queue_slots= (N)
  uint32_t delete_slots_min = 4;         // delete_slots_min= (D_min)
  double pressure_low = 0.5;             // pressure_low= (fraction)
  double pressure_high = 0.9;            // pressure_high=
  uint32_t delete_slots_fixed = 0;       // delete_slots_fixed= (0: adaptive policy)
  uint32_t idle_seal_ms = 20;            // idle_seal_ms= (seal an idle bucket after)
  uint32_t destage_delay_ms = 1000;      // destage_delay= (write-back delay, ms; EngineOptions::write_delay_ms)
  // Memory pressure (docs/OPERATIONS.md): the daemon serves the swap of
  // guests exactly when the host is short of memory.
  std::optional<int> oom_score_adj = -1000;  // oom_score_adj=N (-1000..1000) or =keep (nullopt)
  bool mlock = true;                         // mlock / no_mlock
  // Prometheus metrics for node_exporter's textfile collector
  // (fs/metrics_writer.h): rewritten every metrics_interval seconds.
  std::string metrics_file;                  // metrics_file=PATH (absolute); empty: none
  uint32_t metrics_interval_s = 15;          // metrics_interval=SECONDS, 1..kMaxMetricsIntervalS
  std::vector<std::string> fuse_options;  // passed to libfuse as -o
};

inline constexpr uint32_t kMaxMetricsIntervalS = 3600;

struct ParseResult {
  MountConfig config;
  std::vector<std::string> errors;  // empty when valid
};

// Parses argv (argv[0] excluded by the caller's choice of span start).
ParseResult ParseMountArgs(const std::vector<std::string>& args);

// Parses "64M", "10G", "4096" into bytes; false on junk or overflow.
bool ParseSize(const std::string& text, uint64_t* out);

std::string MountUsage(const std::string& prog);

}  // namespace chainswap
