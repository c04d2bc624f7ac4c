// chainswap-destage-bench: a mixed swap-out / discard workload against a
// mounted chain directory, for comparing delete-slot policies (SPEC §5).
//
//   chainswap-destage-bench --dir /mnt/swap/bench --store BACKING/store.dat \
//       [--files 4] [--file-mib 128] [--seconds 20] [--write-kib 64] [--discard-kib 1024]
//
// One writer thread swaps out random (non-dedupable) chunks at random
// offsets; one discard thread punches random ranges, as a guest freeing
// memory does. Reports write throughput, write latency percentiles, ENOSPC
// count and peak content-store allocation, as a table and --json.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

uint64_t Allocated(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? uint64_t(st.st_blocks) * 512 : 0;
}

double Pct(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * double(v.size())));
  std::nth_element(v.begin(), v.begin() + long(i), v.end());
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mixed swap-out and discard workload for the destage policies"};
  std::string dir, store, label = "run";
  unsigned files = 4, file_mib = 128, seconds = 20, write_kib = 64, discard_kib = 1024, discard_every_ms = 2;
  bool json = false;
  app.add_option("--dir", dir, "chain directory on the mount")->required();
  app.add_option("--store", store, "BACKING/store.dat, sampled for peak allocation")->required();
  app.add_option("--label", label, "name of this run in the output");
  app.add_option("--files", files, "swap files");
  app.add_option("--file-mib", file_mib, "size of each swap file (MiB)");
  app.add_option("--seconds", seconds, "duration");
  app.add_option("--write-kib", write_kib, "swap-out chunk (KiB, multiple of 4)");
  app.add_option("--discard-kib", discard_kib, "discard range (KiB, multiple of 4)");
  app.add_option("--discard-every-ms", discard_every_ms, "pause between discards");
  app.add_flag("--json", json, "JSON output");
  CLI11_PARSE(app, argc, argv);

  std::vector<int> fds;
  for (unsigned i = 0; i < files; ++i) {
    std::string p = dir + "/bench" + std::to_string(i) + ".vswp";
    int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ::ftruncate(fd, off_t(file_mib) << 20) != 0) {
      std::perror(p.c_str());
      return 1;
    }
    fds.push_back(fd);
  }
  const uint64_t file_bytes = uint64_t(file_mib) << 20;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> peak{0}, enospc{0}, written{0}, discards{0};
  std::vector<double> lat_us;
  lat_us.reserve(1 << 20);

  std::thread sampler([&] {
    while (!stop) {
      uint64_t a = Allocated(store), p = peak.load();
      while (a > p && !peak.compare_exchange_weak(p, a)) {}
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  std::thread discarder([&] {
    std::mt19937_64 rng(2);
    const uint64_t len = uint64_t(discard_kib) << 10;
    while (!stop) {
      int fd = fds[rng() % fds.size()];
      uint64_t off = (rng() % (file_bytes / len)) * len;
      if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(off), off_t(len)) == 0) ++discards;
      std::this_thread::sleep_for(std::chrono::milliseconds(discard_every_ms));
    }
  });
  std::mt19937_64 rng(1);
  const size_t chunk = size_t(write_kib) << 10;
  std::vector<uint64_t> buf(chunk / 8);
  const auto start = Clock::now();
  const auto end = start + std::chrono::seconds(seconds);
  while (Clock::now() < end) {
    for (auto& w : buf) w = rng();
    int fd = fds[rng() % fds.size()];
    uint64_t off = (rng() % (file_bytes / chunk)) * chunk;
    auto t0 = Clock::now();
    ssize_t n = ::pwrite(fd, buf.data(), chunk, off_t(off));
    auto t1 = Clock::now();
    if (n == ssize_t(chunk)) {
      written += chunk;
      lat_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    } else if (n < 0 && errno == ENOSPC) {
      ++enospc;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    } else {
      std::perror("pwrite");
      break;
    }
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  stop = true;
  discarder.join();
  sampler.join();
  for (int fd : fds) ::close(fd);

  nlohmann::json j = {{"label", label},
                      {"seconds", secs},
                      {"write_mb_s", double(written) / 1e6 / secs},
                      {"writes", lat_us.size()},
                      {"write_p50_us", Pct(lat_us, 0.50)},
                      {"write_p99_us", Pct(lat_us, 0.99)},
                      {"write_p999_us", Pct(lat_us, 0.999)},
                      {"enospc", enospc.load()},
                      {"discards", discards.load()},
                      {"peak_store_mib", double(peak) / 1048576.0}};
  if (json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("%-14s %8.1f MB/s  p50 %7.0f us  p99 %8.0f us  p99.9 %8.0f us  ENOSPC %6llu  discards %6llu  peak store %7.1f MiB\n",
                label.c_str(), j["write_mb_s"].get<double>(), j["write_p50_us"].get<double>(),
                j["write_p99_us"].get<double>(), j["write_p999_us"].get<double>(),
                (unsigned long long)enospc.load(), (unsigned long long)discards.load(), double(peak) / 1048576.0);
  }
  return 0;
}
