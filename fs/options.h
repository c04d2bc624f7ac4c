// The daemon's typed configuration (SPEC §3, §6): one struct, every field
// validated, every error collected and reported at once before mounting.
//
//   chainswapfs BACKING MOUNTPOINT [-f] [-d] [-s] [-o opt[,opt...]]
//
// chainswap options (-o): dedup_verify / no_dedup_verify, capacity=SIZE
// (K/M/G/T suffixes), log_level=trace|debug|info|warn|error, threads=N.
// Generic mount(8) options that make no sense to FUSE (defaults, auto,
// noauto, nofail, _netdev, user, users, nouser, x-*) are accepted and
// ignored, so the daemon works from /etc/fstab. Everything else is passed to
// libfuse (allow_other, ro, ...).
#pragma once

#include <cstdint>
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
  std::string log_level = "info";
  unsigned threads = 8;          // max FUSE worker threads
  std::vector<std::string> fuse_options;  // passed to libfuse as -o
};

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
