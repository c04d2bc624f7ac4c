// chainswap-catalog-bench: the write destager's inner loop without FUSE or
// the journal. Fills one swap file with N distinct random blocks through
// Catalog::ApplyBlockOps, then (optionally) applies M random overwrites of
// it with fresh content, B blocks per call, syncing the catalog every 4096
// blocks as bucket retirement does; reports blocks/s for each phase.
//   chainswap-catalog-bench [N [DIR [M [B]]]]
//   (DIR is formatted; defaults 65536 /var/tmp/cs-catalog-bench 0 64)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "catalog/backing_dir.h"

using namespace chainswap;

int main(int argc, char** argv) {
  const int n = argc > 1 ? atoi(argv[1]) : 65536;
  const std::string dir = argc > 2 ? argv[2] : "/var/tmp/cs-catalog-bench";
  const int m = argc > 3 ? atoi(argv[3]) : 0;
  const int batch = argc > 4 ? atoi(argv[4]) : 64;
  if (n <= 0 || m < 0 || batch <= 0) {
    fprintf(stderr, "usage: chainswap-catalog-bench [N [DIR [M [B]]]]\n");
    return 2;
  }
  if (std::system(("rm -rf '" + dir + "'").c_str()) != 0) return 1;
  if (auto st = BackingDir::Format(dir); !st.ok()) {
    fprintf(stderr, "%s\n", st.ToString().c_str());
    return 1;
  }
  auto b = BackingDir::Open(dir, LockMode::kExclusive, CatalogOptions{});
  if (!b.ok()) {
    fprintf(stderr, "%s\n", b.status().ToString().c_str());
    return 1;
  }
  Catalog& c = (*b)->catalog();
  auto ch = c.CreateChain("c", 0700, 0, 0, 1);
  auto f = c.CreateFile(ch->dedup_id, "f", 0600, 0, 0, 1);
  auto h = c.HasherFor(ch->dedup_id);
  std::mt19937_64 rng(1);
  std::vector<uint64_t> data(size_t(batch) * 512);

  // Applies `count` blocks, batch by batch; lba_of(i) names the i-th LBA.
  auto run = [&](const char* what, int count, auto lba_of) -> bool {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<BlockOp> ops;
    int since_sync = 0;
    for (int i = 0; i < count; i += batch) {
      const int k = std::min(batch, count - i);
      for (auto& w : data) w = rng();
      ops.assign(k, BlockOp{});
      for (int j = 0; j < k; ++j) {
        ops[j].file_id = f->file_id;
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
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    printf("%s: %d blocks in %.2fs: %.0f blocks/s (%.1f MB/s)\n", what, count, s, count / s,
           count * 4096.0 / s / 1e6);
    return true;
  };
  if (!run("unique blocks", n, [](int i) { return uint64_t(i); })) return 1;
  std::uniform_int_distribution<int> pick(0, n - 1);
  if (m > 0 && !run("random overwrites", m, [&](int) { return uint64_t(pick(rng)); })) return 1;
  return 0;
}
