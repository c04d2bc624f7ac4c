// `chainswap estimate` (tools/estimate.h): exact counts on images built
// block by block, the same result whether or not the table spilled to disk
// and with any number of threads, and clear errors for bad input.
#include "tools/estimate.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "catalog/compression.h"
#include "tests/unit/test_util.h"

namespace chainswap {
namespace {

// Block contents by id: 0 is the zero block; 1..999 compress well (a short
// repeated text with the id); 1000+ are random (incompressible).
void Fill(uint64_t id, uint8_t* out) {
  std::memset(out, 0, kBlockSize);
  if (id == 0) return;
  if (id < 1000) {
    for (size_t i = 0; i < kBlockSize; ++i) out[i] = static_cast<uint8_t>("page of a guest "[i % 16] + id % 7);
    std::memcpy(out, &id, sizeof id);
    return;
  }
  std::mt19937_64 rng(id);
  for (size_t i = 0; i < kBlockSize; i += 8) {
    uint64_t v = rng();
    std::memcpy(out + i, &v, 8);
  }
}

void WriteImage(const std::string& path, const std::vector<uint64_t>& ids, size_t tail_bytes = 0) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  test::Block b;
  for (uint64_t id : ids) {
    Fill(id, b.data());
    ASSERT_EQ(::write(fd, b.data(), kBlockSize), ssize_t(kBlockSize));
  }
  if (tail_bytes) {
    std::memset(b.data(), 0x77, tail_bytes);
    ASSERT_EQ(::write(fd, b.data(), tail_bytes), ssize_t(tail_bytes));
  }
  ::close(fd);
}

// What the report must say, computed from the ids without the estimator.
struct Expected {
  uint64_t zero = 0, nonzero = 0;
  std::map<uint64_t, uint64_t> refs;          // id -> references
  std::map<uint64_t, uint32_t> sectors;       // id -> sectors
};

void Count(const std::vector<uint64_t>& ids, Expected* e) {
  test::Block b;
  for (uint64_t id : ids) {
    if (id == 0) {
      ++e->zero;
      continue;
    }
    ++e->nonzero;
    ++e->refs[id];
    Fill(id, b.data());
    e->sectors[id] = test::Lz4Sectors(b.data());
  }
}

TEST(EstimateTest, CountsZeroDistinctAndSectorsExactly) {
  test::TempDir dir;
  const std::vector<uint64_t> a = {1, 2, 0, 1, 1001, 0, 3, 1, 1};
  const std::vector<uint64_t> b = {2, 1002, 0, 0, 1001, 4, 4, 4};
  WriteImage(dir.Sub("a"), a);
  WriteImage(dir.Sub("b"), b, /*tail_bytes=*/100);  // a partial last block, zero-padded
  Expected e;
  Count(a, &e);
  Count(b, &e);
  // The tail block: 100 bytes of 0x77 then zeros.
  test::Block tail;
  std::memset(tail.data(), 0x77, 100);
  ++e.nonzero;
  e.refs[5000] = 1;
  e.sectors[5000] = test::Lz4Sectors(tail.data());

  EstimateOptions o;
  o.images = {dir.Sub("a"), dir.Sub("b")};
  Result<EstimateReport> r = Estimate(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->images, 2u);
  EXPECT_EQ(r->image_bytes, (a.size() + b.size()) * kBlockSize + 100);
  EXPECT_EQ(r->blocks, a.size() + b.size() + 1);
  EXPECT_EQ(r->zero_blocks, e.zero);
  EXPECT_EQ(r->nonzero_blocks, e.nonzero);
  EXPECT_EQ(r->distinct_blocks, e.refs.size());
  uint64_t sectors = 0, raw = 0;
  std::map<uint64_t, RefcountRow> rows;  // min_refs -> expected row
  for (const auto& [id, n] : e.refs) {
    const uint32_t s = e.sectors[id];
    sectors += s;
    raw += s == kSectorsPerBlock ? 1 : 0;
    uint64_t min = 1;
    while (min * 2 <= n) min *= 2;
    RefcountRow& w = rows[min];
    w.blocks += 1;
    w.ref_blocks += n;
    w.dsize += s * kSectorSize;
    w.ref_dsize += n * s * kSectorSize;
  }
  EXPECT_EQ(r->stored_bytes_off, e.refs.size() * kBlockSize);
  EXPECT_EQ(r->stored_bytes_lz4, sectors * kSectorSize);
  EXPECT_EQ(r->raw_blocks, raw);
  EXPECT_GE(raw, 2u);  // 1001 and 1002 are random
  ASSERT_EQ(r->rows.size(), rows.size());
  for (const RefcountRow& got : r->rows) {
    ASSERT_TRUE(rows.count(got.min_refs)) << got.min_refs;
    const RefcountRow& want = rows[got.min_refs];
    EXPECT_EQ(got.blocks, want.blocks) << "row " << got.min_refs;
    EXPECT_EQ(got.ref_blocks, want.ref_blocks) << "row " << got.min_refs;
    EXPECT_EQ(got.dsize, want.dsize) << "row " << got.min_refs;
    EXPECT_EQ(got.ref_dsize, want.ref_dsize) << "row " << got.min_refs;
    EXPECT_EQ(got.lsize, want.blocks * kBlockSize);
  }
  // Rows 1 (ids 3, 1002, tail), 2 (2, 1001), 4 (1: four times; 4: three times -> row 2).
  EXPECT_TRUE(rows.count(4));
}

// The figures that must not depend on how the table was kept.
nlohmann::json Figures(const EstimateReport& r) {
  nlohmann::json j = nlohmann::json::parse(EstimateJson(r));
  j.erase("seconds");
  j.erase("spill_runs");
  j.erase("table_bytes");
  return j;
}

TEST(EstimateTest, SpillingToDiskAndThreadCountsDoNotChangeTheResult) {
  test::TempDir dir;
  // Three images of 6 MiB each from a pool of ids with a skewed reuse, so
  // that rows up to 64+ exist; 20 % zero blocks.
  std::mt19937_64 rng(5);
  std::vector<std::string> images;
  for (int i = 0; i < 3; ++i) {
    std::vector<uint64_t> ids;
    for (int k = 0; k < 1536; ++k) {
      const uint64_t x = rng() % 100;
      ids.push_back(x < 20 ? 0 : x < 40 ? 1 + rng() % 8 : x < 70 ? 1 + rng() % 900 : 1000 + rng() % 3000);
    }
    images.push_back(dir.Sub("img" + std::to_string(i)));
    WriteImage(images.back(), ids);
  }
  EstimateOptions o;
  o.images = images;
  o.threads = 1;
  Result<EstimateReport> base = Estimate(o);
  ASSERT_TRUE(base.ok()) << base.status().ToString();
  EXPECT_EQ(base->spill_runs, 0u);
  EXPECT_GT(base->distinct_blocks, 1500u);

  o.threads = 3;
  Result<EstimateReport> threaded = Estimate(o);
  ASSERT_TRUE(threaded.ok()) << threaded.status().ToString();
  EXPECT_EQ(Figures(*threaded), Figures(*base));

  // A table of 256 shards x 16 slots (96 KiB) holds a few thousand blocks
  // before it must spill: several runs, merged at the end.
  o.table_bytes_for_testing = 1;
  o.tmpdir = dir.path();
  for (unsigned threads : {1u, 2u}) {
    o.threads = threads;
    Result<EstimateReport> spilled = Estimate(o);
    ASSERT_TRUE(spilled.ok()) << spilled.status().ToString();
    EXPECT_GE(spilled->spill_runs, 2u) << threads << " thread(s)";
    EXPECT_EQ(Figures(*spilled), Figures(*base)) << threads << " thread(s)";
  }
}

TEST(EstimateTest, BadInputIsAClearErrorNamingIt) {
  test::TempDir dir;
  EstimateOptions o;
  o.images = {dir.Sub("missing")};
  Result<EstimateReport> r = Estimate(o);
  EXPECT_EQ(r.status().code(), ENOENT);
  EXPECT_NE(r.status().message().find(dir.Sub("missing")), std::string::npos) << r.status().ToString();

  o.images = {dir.path()};
  EXPECT_EQ(Estimate(o).status().code(), EISDIR);

  WriteImage(dir.Sub("a"), {1, 2});
  o.images = {dir.Sub("a")};
  o.memory_bytes = 1 << 20;
  r = Estimate(o);
  EXPECT_EQ(r.status().code(), EINVAL);
  EXPECT_NE(r.status().message().find("too small"), std::string::npos) << r.status().ToString();

  o = EstimateOptions{};
  o.images = {dir.Sub("a")};
  o.table_bytes_for_testing = 1;
  o.tmpdir = dir.Sub("no-such-dir");
  // Small enough not to spill: the missing tmpdir does not matter.
  EXPECT_TRUE(Estimate(o).ok());
}

TEST(EstimateTest, EmptyImagesGiveAnEmptyReport) {
  test::TempDir dir;
  WriteImage(dir.Sub("empty"), {});
  EstimateOptions o;
  o.images = {dir.Sub("empty")};
  Result<EstimateReport> r = Estimate(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->blocks, 0u);
  EXPECT_EQ(r->distinct_blocks, 0u);
  EXPECT_EQ(r->dedup_ratio(), 0.0);
  EXPECT_NE(RenderEstimate(*r).find("Total"), std::string::npos);
}

}  // namespace
}  // namespace chainswap
