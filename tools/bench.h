// `chainswap bench` (SPEC §6): a realistic clone-chain swap workload against
// a chainswap mount (or, for comparison, any directory), with the figures
// of SPEC §7: ingest MB/s, 4 KiB random write and read IOPS and latency
// percentiles, achieved dedup against the exact ideal of the data written,
// catalog bytes per block, destage lag and reclaim time after discards.
//
// Phases: build the data (tools/bench_data.h) → ingest the parent and K
// clones sequentially in 1 MiB writes → wait for destage → measure space →
// 4 KiB random writes → wait for destage → 4 KiB random reads, each checked
// byte for byte → discards (PUNCH_HOLE in 1 MiB ranges) → reclaim time →
// a read-back sample → remove the chain (unless --keep).
//
// Exit status: 0, or 1 on any error or any byte read back wrong.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace chainswap {

struct BenchOptions {
  std::string target;  // a chainswap mountpoint, or a plain directory for comparison
  std::string chain = "bench";
  std::string backing;  // chainswap backing directory (store.dat, catalog.db), optional
  unsigned clones = 4;
  uint64_t image_mib = 256;  // parent image size
  double zero_share = 0.30;
  double shared_share = 0.10;  // non-zero parent pages that repeat another page of the image
  double record_share = 0.15;  // non-zero parent pages of synthesized records
  double mutation = 0.05;      // non-zero pages each clone rewrites
  double discard = 0.10;       // pages discarded at the end (1 MiB ranges)
  uint64_t random_ops = 20000;
  uint64_t seed = 1;
  unsigned threads = 1;
  bool direct = false;
  bool json = false;
  bool keep = false;
  double destage_timeout = 600;      // seconds to wait for destage before giving up
  std::vector<std::string> sources;  // directories of real files (default: libraries, binaries, docs)
};

void AddBenchOptions(CLI::App* sub, BenchOptions* o);
int RunBench(const BenchOptions& o);

}  // namespace chainswap
