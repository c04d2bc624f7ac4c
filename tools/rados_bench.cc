// chainswap-rados-bench: the RADOS content store's primitives
// (catalog/rados_store.h) at full speed, for the side-by-side with
// `rados bench` in tools/bench-rados.sh (docs/BENCHMARKS.md §10).
//
//   chainswap-rados-bench --conf FILE --pool POOL [--id USER] [--blocks N]
//                         [--window W] [--hosts H] [--seed S]
//
// Phases, each timed on its own, one line of JSON at the end:
//   create   N distinct 4 KiB blocks, each RadosBatch::CreateOrRef (cas
//            chunk_create_or_get_ref with verify) with W operations in flight:
//            the unique-data destage of one host
//   share    the same N blocks referenced by H-1 more hosts (one connection
//            each, one after the other): what a second host's destage of the
//            same data costs (verify compares the bytes in the OSD)
//   read     the N blocks read back in a random order, W in flight, checked
//            byte for byte
//   unref    every reference dropped, W in flight; the last drop of each
//            block deletes its object (checked: nothing is left)
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "catalog/rados_store.h"

using namespace chainswap;

namespace {

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void FillBlock(uint64_t seed, uint64_t i, uint8_t* out) {
  std::mt19937_64 rng(seed * 0x9e3779b97f4a7c15ULL + i);
  for (size_t k = 0; k < kBlockSize; k += 8) {
    const uint64_t v = rng();
    std::memcpy(out + k, &v, 8);
  }
}

BlockHash NameHash(uint64_t seed, uint64_t i) {
  BlockHash h;
  const uint64_t a = seed, b = i;
  std::memcpy(h.bytes.data(), &a, 8);
  std::memcpy(h.bytes.data() + 8, &b, 8);
  return h;
}

bool AllOk(const std::vector<Status>& st, const char* phase) {
  for (const Status& s : st) {
    if (!s.ok()) {
      std::fprintf(stderr, "chainswap-rados-bench: %s: %s\n", phase, s.ToString().c_str());
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"chainswap-rados-bench: the RADOS content store's primitives at full speed"};
  RadosTarget target;
  uint64_t blocks = 20000, seed = 1;
  size_t window = 64;
  int hosts = 2;
  app.add_option("--conf", target.conf_path, "Ceph conf file")->required();
  app.add_option("--pool", target.pool, "pool")->required();
  app.add_option("--id", target.client_id, "cephx user without 'client.'");
  app.add_option("--blocks", blocks, "distinct 4 KiB blocks")->check(CLI::Range(1, 100000000));
  app.add_option("--window", window, "operations in flight")->check(CLI::Range(1, 4096));
  app.add_option("--hosts", hosts, "connections that reference the blocks (>= 1)")->check(CLI::Range(1, 64));
  app.add_option("--seed", seed, "data and name seed (use a new one per run)");
  CLI11_PARSE(app, argc, argv);

  std::vector<std::unique_ptr<RadosStore>> conns;
  for (int h = 0; h < hosts; ++h) {
    auto c = RadosStore::Connect(target);
    if (!c.ok()) {
      std::fprintf(stderr, "chainswap-rados-bench: %s\n", c.status().ToString().c_str());
      return 1;
    }
    conns.push_back(std::move(*c));
  }
  const std::string chain = "bench" + std::to_string(seed);
  std::vector<std::string> names(blocks);
  std::vector<uint8_t> data(blocks * kBlockSize);
  for (uint64_t i = 0; i < blocks; ++i) {
    names[i] = RadosStore::BlockObjectName(chain, NameHash(seed, i));
    FillBlock(seed, i, data.data() + i * kBlockSize);
  }
  auto ref_of = [](int h, uint64_t i) { return RadosRef{"host" + std::to_string(h), static_cast<int64_t>(i)}; };
  nlohmann::json out;
  out["blocks"] = blocks;
  out["window"] = window;
  out["hosts"] = hosts;

  // create
  auto t0 = std::chrono::steady_clock::now();
  {
    RadosBatch b(*conns[0], window);
    for (uint64_t i = 0; i < blocks; ++i)
      b.CreateOrRef(names[i], ref_of(0, i), std::span<const uint8_t>(data.data() + i * kBlockSize, kBlockSize), true);
    if (!AllOk(b.Wait(), "create")) return 1;
  }
  double s = Seconds(t0);
  out["create_s"] = s;
  out["create_ops_per_s"] = static_cast<double>(blocks) / s;

  // share
  if (hosts > 1) {
    t0 = std::chrono::steady_clock::now();
    for (int h = 1; h < hosts; ++h) {
      RadosBatch b(*conns[static_cast<size_t>(h)], window);
      for (uint64_t i = 0; i < blocks; ++i)
        b.CreateOrRef(names[i], ref_of(h, i), std::span<const uint8_t>(data.data() + i * kBlockSize, kBlockSize),
                      true);
      if (!AllOk(b.Wait(), "share")) return 1;
    }
    s = Seconds(t0);
    out["share_s"] = s;
    out["share_ops_per_s"] = static_cast<double>(blocks) * (hosts - 1) / s;
  }

  // read
  std::vector<uint64_t> order(blocks);
  for (uint64_t i = 0; i < blocks; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
  std::vector<uint8_t> back(blocks * kBlockSize);
  t0 = std::chrono::steady_clock::now();
  {
    RadosBatch b(*conns[0], window);
    for (uint64_t i : order) b.Read(names[i], std::span<uint8_t>(back.data() + i * kBlockSize, kBlockSize));
    if (!AllOk(b.Wait(), "read")) return 1;
  }
  s = Seconds(t0);
  out["read_s"] = s;
  out["read_ops_per_s"] = static_cast<double>(blocks) / s;
  if (back != data) {
    std::fprintf(stderr, "chainswap-rados-bench: read: the blocks read back differ from those written\n");
    return 1;
  }

  // unref
  t0 = std::chrono::steady_clock::now();
  for (int h = 0; h < hosts; ++h) {
    RadosBatch b(*conns[static_cast<size_t>(h)], window);
    for (uint64_t i = 0; i < blocks; ++i) b.Unref(names[i], ref_of(h, i));
    if (!AllOk(b.Wait(), "unref")) return 1;
  }
  s = Seconds(t0);
  out["unref_s"] = s;
  out["unref_ops_per_s"] = static_cast<double>(blocks) * hosts / s;
  auto left = conns[0]->List("blk." + chain + ".");
  if (!left.ok() || !left->empty()) {
    std::fprintf(stderr, "chainswap-rados-bench: unref: %s\n",
                 left.ok() ? (std::to_string(left->size()) + " objects left").c_str() : left.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
