// chainswapfs: the FUSE daemon. Start-up in order (options -> backing
// directory -> namespace -> session -> signals -> mount -> daemonize ->
// stats reporter and metrics writer -> loop) and clean-up in reverse.
#include <fuse_lowlevel.h>
#include <malloc.h>
#include <sys/stat.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "catalog/backing_dir.h"
#include "destage/engine.h"
#include "fs/filesystem.h"
#include "fs/fuse_io.h"
#include "fs/fuse_ops.h"
#include "fs/logging.h"
#include "fs/memory_guard.h"
#include "fs/metrics.h"
#include "fs/metrics_writer.h"
#include "fs/options.h"

using namespace chainswap;

namespace {

// Owns a fuse_args vector built from strings.
struct FuseArgs {
  explicit FuseArgs(const std::vector<std::string>& v) : storage(v) {
    for (auto& s : storage) ptrs.push_back(s.data());
    args = FUSE_ARGS_INIT(static_cast<int>(ptrs.size()), ptrs.data());
  }
  ~FuseArgs() { fuse_opt_free_args(&args); }
  std::vector<std::string> storage;
  std::vector<char*> ptrs;
  fuse_args args;
};

// fuse_daemonize() changes to "/", so every path is made absolute first.
bool MakeAbsolute(std::string* path, const char* what) {
  char* real = ::realpath(path->c_str(), nullptr);
  if (!real) {
    std::fprintf(stderr, "chainswapfs: %s %s: %s\n", what, path->c_str(), std::strerror(errno));
    return false;
  }
  *path = real;
  std::free(real);
  return true;
}

// Everything the daemon serves from, opened together.
struct Served {
  std::unique_ptr<BackingDir> backing;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<ChainswapFs> fs;
};

// Opens the backing directory, replays the journal and loads the namespace.
// Returns a message for the operator on failure.
Result<Served> OpenServed(const MountConfig& cfg, const EngineOptions& base) {
  CatalogOptions copts;
  copts.dedup_verify = cfg.dedup_verify;
  copts.capacity_slots = cfg.capacity_bytes / kBlockSize;
  copts.cache_bytes = cfg.catalog_cache_bytes;
  copts.mmap_bytes = cfg.catalog_mmap_bytes;
  copts.hash_table_limit = cfg.hash_table_limit_entries;
  copts.compress = cfg.compress;
  copts.rados_timeout_seconds = cfg.rados_timeout_s;
  Served s;
  auto backing = BackingDir::Open(cfg.backing, LockMode::kExclusive, copts);
  if (!backing.ok()) return backing.status();
  s.backing = std::move(*backing);
  CS_RETURN_IF_ERROR(s.backing->catalog().CheckStoreLength());
  EngineOptions eopts = base;
  eopts.journal_dir = s.backing->paths().journal;
  s.engine = std::make_unique<Engine>(s.backing->catalog(), eopts);
  std::map<int64_t, ReplayedMeta> replayed;
  if (Status st = s.engine->Open(&replayed); !st.ok())
    return Status::Error(st.code(), "cannot replay the journal: " + st.message());
  s.fs = std::make_unique<ChainswapFs>(*s.backing, *s.engine);
  if (Status st = s.fs->Load(replayed); !st.ok())
    return Status::Error(st.code(), "cannot load the catalog: " + st.message());
  return s;
}

// Protection from the OOM killer and from reclaim of the daemon's own pages
// (fs/memory_guard.h), in the serving process before it starts threads.
void GuardMemory(const MountConfig& cfg) {
  BoundAllocatorRetention();
  if (cfg.oom_score_adj) {
    Status st = ProtectFromOomKiller(*cfg.oom_score_adj);
    if (st.ok()) spdlog::info("oom_score_adj {}", *cfg.oom_score_adj);
    else spdlog::warn("{}; the OOM killer may pick this daemon", st.ToString());
  }
  if (cfg.mlock) {
    auto locked = LockMemory();
    if (locked.ok()) spdlog::info("memory locked in RAM: {} KiB now, more as it is touched", locked->locked_kib);
    else spdlog::warn("memory not locked ({}); under memory pressure requests may wait for the daemon's own page-ins",
                      locked.status().ToString());
  }
}

int Run(MountConfig cfg) {
  if (!MakeAbsolute(&cfg.backing, "backing directory") || !MakeAbsolute(&cfg.mountpoint, "mountpoint"))
    return 1;
  struct stat mst;
  if (::stat(cfg.mountpoint.c_str(), &mst) != 0 || !S_ISDIR(mst.st_mode)) {
    std::fprintf(stderr, "chainswapfs: mountpoint %s is not a directory (ENOTDIR)\n", cfg.mountpoint.c_str());
    return 1;
  }
  if (!cfg.metrics_file.empty()) {
    if (Status st = CheckMetricsFile(cfg.metrics_file, cfg.mountpoint); !st.ok()) {
      std::fprintf(stderr, "chainswapfs: %s\n", st.ToString().c_str());
      return 1;
    }
  }
  SetUpLogging(cfg.foreground, cfg.log_level);
  EngineOptions eopts;
  eopts.bucket_bytes = cfg.bucket_bytes;
  eopts.journal_limit = cfg.journal_limit;
  eopts.fsync_destage_bytes = cfg.fsync_destage_bytes;
  eopts.queue.n = cfg.queue_slots;
  eopts.queue.d_min = cfg.delete_slots_min;
  eopts.queue.low = cfg.pressure_low;
  eopts.queue.high = cfg.pressure_high;
  eopts.queue.fixed_d = cfg.delete_slots_fixed;
  eopts.idle_seal_ms = cfg.idle_seal_ms;
  eopts.write_delay_ms = cfg.destage_delay_ms;
  if (auto errs = ValidateEngineOptions(eopts); !errs.empty()) {
    for (const auto& e : errs) std::fprintf(stderr, "chainswapfs: %s\n", e.c_str());
    return 2;
  }
  // Preflight on the terminal: every error an operator can fix is reported
  // here, before mounting. Then everything is closed again: SQLite's WAL
  // locks are POSIX locks, which daemonize's fork would silently drop (a
  // later sqlite3 reader would then reset the shared memory under us).
  {
    auto pre = OpenServed(cfg, eopts);
    if (!pre.ok()) {
      std::fprintf(stderr, "chainswapfs: %s\n", pre.status().ToString().c_str());
      return 1;
    }
  }

  std::vector<std::string> fargs = {"chainswapfs", "-o", "default_permissions",
                                    "-o", "fsname=" + cfg.backing, "-o", "subtype=chainswapfs"};
  for (const auto& o : cfg.fuse_options) {
    fargs.push_back("-o");
    fargs.push_back(o);
  }
  if (cfg.debug) fargs.push_back("-d");
  FuseArgs args(fargs);
  fuse_lowlevel_ops ops;
  AssignOperations(ops);
  ChainswapFs* served_fs = nullptr;  // set before the loop serves requests
  fuse_session* se = fuse_session_new(&args.args, &ops, sizeof(ops), &served_fs);
  if (!se) {
    std::fprintf(stderr, "chainswapfs: invalid FUSE options (see above)\n");
    return 2;
  }
  int rc = 1;
  if (fuse_set_signal_handlers(se) == 0) {
    if (fuse_session_mount(se, cfg.mountpoint.c_str()) == 0) {
      InstallKillPrivV2Hooks(se);
      fuse_daemonize(cfg.foreground ? 1 : 0);
      // Opened for real only now, in the process that serves: SQLite locks
      // and threads belong to it.
      GuardMemory(cfg);
      auto served = OpenServed(cfg, eopts);
      if (!served.ok()) {
        spdlog::error("cannot serve {}: {}", cfg.backing, served.status().ToString());
      } else {
        Engine& engine = *served->engine;
        engine.Start();
        auto reporter = std::make_unique<StatsReporter>(engine, cfg.backing + "/destage.json");
        served->fs->set_reporter(reporter.get());
        std::unique_ptr<MetricsWriter> metrics;
        if (!cfg.metrics_file.empty()) {
          metrics = std::make_unique<MetricsWriter>(cfg.metrics_file, std::chrono::seconds(cfg.metrics_interval_s),
                                                    DaemonMetricsRender(*served->backing, *reporter),
                                                    RenderDown(cfg.backing));
          spdlog::info("metrics: {} every {} s", cfg.metrics_file, cfg.metrics_interval_s);
        }
        served_fs = served->fs.get();
        spdlog::info("mounted {} on {} (dedup_verify={}, capacity={})", cfg.backing, cfg.mountpoint,
                     cfg.dedup_verify, cfg.capacity_bytes ? std::to_string(cfg.capacity_bytes) : "backing fs");
        if (cfg.single_thread) {
          rc = fuse_session_loop(se);
        } else {
          fuse_loop_config* lc = fuse_loop_cfg_create();
          fuse_loop_cfg_set_clone_fd(lc, 1);
          fuse_loop_cfg_set_max_threads(lc, cfg.threads);
          fuse_loop_cfg_set_idle_threads(lc, cfg.threads);
          rc = fuse_session_loop_mt(se, lc);
          fuse_loop_cfg_destroy(lc);
        }
        if (rc != 0) spdlog::error("FUSE loop ended with {}", rc);
        Status st = engine.Stop();
        if (!st.ok()) spdlog::error("final sync: {}", st.ToString());
        metrics.reset();  // its last write says chainswap_up 0
      }
      fuse_session_unmount(se);
      spdlog::info("unmounted {}", cfg.mountpoint);
    } else {
      std::fprintf(stderr, "chainswapfs: cannot mount on %s\n", cfg.mountpoint.c_str());
    }
    fuse_remove_signal_handlers(se);
  }
  fuse_session_destroy(se);
  return rc == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  // Journal records hold 4 KiB..4 MiB buffers until they retire; keep them on
  // the heap (reused) instead of an mmap + page faults per request.
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  std::vector<std::string> args(argv + 1, argv + argc);
  ParseResult pr = ParseMountArgs(args);
  if (pr.config.show_help) {
    std::fputs(MountUsage("chainswapfs").c_str(), stdout);
    return 0;
  }
  if (pr.config.show_version) {
    std::printf("chainswapfs %s (libfuse %d)\n", CHAINSWAP_VERSION, fuse_version());
    return 0;
  }
  if (!pr.errors.empty()) {
    for (const auto& e : pr.errors) std::fprintf(stderr, "chainswapfs: %s\n", e.c_str());
    std::fputs(MountUsage("chainswapfs").c_str(), stderr);
    return 2;
  }
  return Run(pr.config);
}
