// chainswapfs: the FUSE daemon. Start-up in order (options -> backing
// directory -> namespace -> session -> signals -> mount -> daemonize -> loop)
// and clean-up in reverse.
#include <fuse_lowlevel.h>
#include <malloc.h>
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
#include "fs/fuse_ops.h"
#include "fs/logging.h"
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

int Run(MountConfig cfg) {
  if (!MakeAbsolute(&cfg.backing, "backing directory") || !MakeAbsolute(&cfg.mountpoint, "mountpoint"))
    return 1;
  SetUpLogging(cfg.foreground, cfg.log_level);
  CatalogOptions copts;
  copts.dedup_verify = cfg.dedup_verify;
  copts.capacity_slots = cfg.capacity_bytes / kBlockSize;
  auto backing = BackingDir::Open(cfg.backing, LockMode::kExclusive, copts);
  if (!backing.ok()) {
    std::fprintf(stderr, "chainswapfs: %s\n", backing.status().ToString().c_str());
    return 1;
  }
  if (Status st = (*backing)->catalog().CheckStoreLength(); !st.ok()) {
    std::fprintf(stderr, "chainswapfs: %s\n", st.ToString().c_str());
    return 1;
  }
  EngineOptions eopts;
  eopts.journal_dir = (*backing)->paths().journal;
  eopts.bucket_bytes = cfg.bucket_bytes;
  eopts.journal_limit = cfg.journal_limit;
  eopts.queue.n = cfg.queue_slots;
  eopts.queue.d_min = cfg.delete_slots_min;
  eopts.queue.low = cfg.pressure_low;
  eopts.queue.high = cfg.pressure_high;
  eopts.queue.fixed_d = cfg.delete_slots_fixed;
  eopts.idle_seal_ms = cfg.idle_seal_ms;
  if (auto errs = ValidateEngineOptions(eopts); !errs.empty()) {
    for (const auto& e : errs) std::fprintf(stderr, "chainswapfs: %s\n", e.c_str());
    return 2;
  }
  Engine engine((*backing)->catalog(), eopts);
  std::map<int64_t, ReplayedMeta> replayed;
  if (Status st = engine.Open(&replayed); !st.ok()) {
    std::fprintf(stderr, "chainswapfs: cannot replay the journal: %s\n", st.ToString().c_str());
    return 1;
  }
  ChainswapFs fs(**backing, engine);
  if (Status st = fs.Load(replayed); !st.ok()) {
    std::fprintf(stderr, "chainswapfs: cannot load catalog: %s\n", st.ToString().c_str());
    return 1;
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
  fuse_session* se = fuse_session_new(&args.args, &ops, sizeof(ops), &fs);
  if (!se) {
    std::fprintf(stderr, "chainswapfs: invalid FUSE options (see above)\n");
    return 2;
  }
  int rc = 1;
  if (fuse_set_signal_handlers(se) == 0) {
    if (fuse_session_mount(se, cfg.mountpoint.c_str()) == 0) {
      spdlog::info("mounted {} on {} (dedup_verify={}, capacity={})", cfg.backing, cfg.mountpoint,
                   cfg.dedup_verify, cfg.capacity_bytes ? std::to_string(cfg.capacity_bytes) : "backing fs");
      fuse_daemonize(cfg.foreground ? 1 : 0);
      // Threads start only now: they would not survive daemonize's fork.
      engine.Start();
      auto reporter = std::make_unique<StatsReporter>(engine, cfg.backing + "/destage.json");
      fs.set_reporter(reporter.get());
      if (cfg.single_thread) {
        rc = fuse_session_loop(se);
      } else {
        fuse_loop_config* lc = fuse_loop_cfg_create();
        fuse_loop_cfg_set_clone_fd(lc, 1);
        fuse_loop_cfg_set_max_threads(lc, cfg.threads);
        fuse_loop_cfg_set_idle_threads(lc, std::min(4u, cfg.threads));
        rc = fuse_session_loop_mt(se, lc);
        fuse_loop_cfg_destroy(lc);
      }
      if (rc != 0) spdlog::error("FUSE loop ended with {}", rc);
      Status st = engine.Stop();
      if (!st.ok()) spdlog::error("final sync: {}", st.ToString());
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
