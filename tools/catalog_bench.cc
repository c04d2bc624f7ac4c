// chainswap-catalog-bench: applies N distinct random blocks through
// Catalog::ApplyBlockOps in batches of 64 (the write destager's inner loop,
// without FUSE or the journal) and reports blocks/s.
//   chainswap-catalog-bench [N] [DIR]   (DIR is formatted; default /var/tmp/cs-catalog-bench)
#include "catalog/backing_dir.h"
#include <chrono>
#include <cstdio>
#include <random>
#include <cstdlib>
#include <vector>
using namespace chainswap;
int main(int argc, char** argv) {
  std::string dir = argc > 2 ? argv[2] : "/var/tmp/cs-catalog-bench";
  if (std::system(("rm -rf '" + dir + "'").c_str()) != 0) return 1;
  (void)BackingDir::Format(dir);
  auto b = BackingDir::Open(dir, LockMode::kExclusive, CatalogOptions{});
  Catalog& c = (*b)->catalog();
  auto ch = c.CreateChain("c", 0700, 0, 0, 1);
  auto f = c.CreateFile(ch->dedup_id, "f", 0600, 0, 0, 1);
  auto h = c.HasherFor(ch->dedup_id);
  const int N = argc > 1 ? atoi(argv[1]) : 65536, B = 64;
  std::vector<uint64_t> data(size_t(N) * 512);
  std::mt19937_64 rng(1);
  for (auto& w : data) w = rng();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < N; i += B) {
    std::vector<BlockOp> ops(B);
    for (int j = 0; j < B; ++j) {
      ops[j].file_id = f->file_id; ops[j].dedup_id = ch->dedup_id; ops[j].lba = i + j;
      ops[j].data = reinterpret_cast<const uint8_t*>(&data[size_t(i + j) * 512]);
      ops[j].hash = (*h)->Hash(ops[j].data);
    }
    auto r = c.ApplyBlockOps(ops);
    if (!r.ok()) { printf("%s\n", r.status().ToString().c_str()); return 1; }
  }
  auto t1 = std::chrono::steady_clock::now();
  double s = std::chrono::duration<double>(t1 - t0).count();
  printf("%d unique blocks in %.2fs: %.0f blocks/s (%.1f MB/s)\n", N, s, N / s, N * 4096.0 / s / 1e6);
}
