// Compression of a chain's unique blocks (issue 14, compress=lz4) through a
// real mount: the dedup tests of today with compression on; a chain written
// with compress=off, remounted with compress=lz4 (and back); churn with
// compression on and the store's allocated bytes after it; kill -9 with
// compression on; `chainswap estimate` against a mount on the same images;
// a damaged compressed block.
//
// The expected stored size of every block is computed independently of the
// daemon, with test::Lz4Sectors (tests/unit/test_util.h: LZ4 with an
// unbounded buffer, the 6-byte header, whole 512-byte sectors, 8 sectors
// above 3584 bytes; it calls liblz4 alone, nothing of the daemon's, though
// its header brings the catalog's declarations along), and compared
// *exactly* with the catalog's chain_stats view (stored_bytes, blocks,
// compressed_blocks, stored_sectors). A packed
// block's location is its pblock (catalog/stored_block.h): pblock < 0 is
// -1 - (first_sector * 8 + sectors - 1); the tests decode it themselves.
//
// The data is mixed as a guest's swap is: zero pages (never stored), nearly
// all-zero pages (1 sector), random pages (incompressible: 8 sectors, raw),
// text-like pages with a varying share of random bytes (1..8 sectors), and
// repeats of earlier pages (deduplicated).
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "tests/mount/extra_util.h"
#include "tests/mount/mount_fixture.h"
#include "tests/unit/test_util.h"  // test::Lz4Sectors

namespace chainswap::mounttest {
namespace {

constexpr uint64_t kSector = 512;

// ------------------------------------------------------------------ data

enum class BlockKind { kZero, kSparse, kRandom, kText, kRepeat };

std::mt19937_64 RngFor(uint64_t seed, uint64_t index, uint64_t salt) {
  return std::mt19937_64(seed * 0x9E3779B97F4A7C15ull ^ (index + 0x632BE59BD9B4E019ull) ^ (salt << 40));
}

// The kind of block `index` of mixed stream `seed`: 10 % zero, 15 % nearly
// all zero, 20 % random, 45 % text-like, 10 % a repeat of an earlier block.
BlockKind KindOf(uint64_t seed, uint64_t index) {
  const uint64_t x = RngFor(seed, index, 1)() % 100;
  if (x < 10) return BlockKind::kZero;
  if (x < 25) return BlockKind::kSparse;
  if (x < 45) return BlockKind::kRandom;
  if (x < 90 || index == 0) return BlockKind::kText;
  return BlockKind::kRepeat;
}

// Text of a program's heap: words drawn from the first `vocabulary` words of
// a small list, then `noise_pct` percent of the bytes replaced by random ones
// (one word and no noise compress to a sector, 60 % noise not at all).
// Stamped with (seed, index): distinct across streams.
void FillText(uint64_t seed, uint64_t index, size_t vocabulary, unsigned noise_pct, uint8_t* out) {
  static const char* const kWords[] = {
      "page ", "struct ", "kmalloc(", "); ", "return ", "0x", "ffff", "8800", "swap_entry ", "mm->", "vma ",
      "if (", "NULL", "\n", "\t", "int ", "= ", "unsigned long ", "pte_t *", "spin_lock(&", "}", "{", "; ", "/* ",
      " */", "->next", "list_head ", "GFP_KERNEL", "0", "1", "2", "3"};
  constexpr size_t kWordCount = sizeof kWords / sizeof kWords[0];
  vocabulary = std::clamp<size_t>(vocabulary, 1, kWordCount);
  std::mt19937_64 rng = RngFor(seed, index, 2);
  size_t pos = 0;
  while (pos < kBlock) {
    const char* w = kWords[rng() % vocabulary];
    const size_t n = std::min(std::strlen(w), kBlock - pos);
    std::memcpy(out + pos, w, n);
    pos += n;
  }
  for (size_t i = 0; i < kBlock; ++i)
    if (rng() % 100 < noise_pct) out[i] = static_cast<uint8_t>(rng());
  const uint64_t tag = index | (uint64_t{1} << 62);
  std::memcpy(out, &seed, 8);
  std::memcpy(out + 8, &tag, 8);
}

// A text-like block whose vocabulary and share of noise are drawn from the
// block's own random stream: the stored sizes spread over 1..8 sectors.
void FillTextBlock(uint64_t seed, uint64_t index, uint8_t* out) {
  static const size_t kVocabulary[] = {1, 2, 4, 8, 32};
  static const unsigned kNoise[] = {0, 2, 6, 10, 16, 22, 30, 60};
  std::mt19937_64 rng = RngFor(seed, index, 3);
  const size_t vocabulary = kVocabulary[rng() % 5];
  FillText(seed, index, vocabulary, kNoise[rng() % 8], out);
}

// Zeros but for a 16-byte stamp and 8 random bytes: one sector.
void FillSparseBlock(uint64_t seed, uint64_t index, uint8_t* out) {
  std::memset(out, 0, kBlock);
  std::mt19937_64 rng = RngFor(seed, index, 4);
  const size_t at = (rng() % (kBlock / 8 - 3)) * 8;
  const uint64_t tag = index | (uint64_t{3} << 61);
  const uint64_t noise = rng() | 1;
  std::memcpy(out + at, &seed, 8);
  std::memcpy(out + at + 8, &tag, 8);
  std::memcpy(out + at + 16, &noise, 8);
}

// Block `index` of mixed stream `seed` of the given kind (kRepeat and kZero
// give zeros here: MixedData fills repeats from earlier blocks).
void FillMixedBlock(uint64_t seed, uint64_t index, BlockKind kind, uint8_t* out) {
  switch (kind) {
    case BlockKind::kSparse: return FillSparseBlock(seed, index, out);
    case BlockKind::kRandom: return FillBlock(seed ^ 0xC0FFEE0000000000ull, index, out);
    case BlockKind::kText: return FillTextBlock(seed, index, out);
    default: std::memset(out, 0, kBlock);
  }
}

// `blocks` blocks of mixed stream `seed`; a repeat copies an earlier block
// of the same data.
std::vector<uint8_t> MixedData(uint64_t seed, size_t blocks) {
  std::vector<uint8_t> v(blocks * kBlock, 0);
  for (size_t i = 0; i < blocks; ++i) {
    uint8_t* b = v.data() + i * kBlock;
    const BlockKind kind = KindOf(seed, i);
    if (kind == BlockKind::kRepeat) std::memcpy(b, v.data() + (RngFor(seed, i, 5)() % i) * kBlock, kBlock);
    else FillMixedBlock(seed, i, kind, b);
  }
  return v;
}

// ------------------------------------------------------------ the ideal

// What a chain holding `files` stores with compress=lz4: its distinct
// non-zero blocks, each in test::Lz4Sectors(block) sectors.
struct Ideal {
  int64_t blocks = 0;      // distinct non-zero blocks (PAT rows)
  int64_t compressed = 0;  // of them, stored in 1..7 sectors
  uint64_t sectors = 0;    // sum of their sectors
  std::map<uint32_t, int64_t> histogram;  // sectors -> blocks
  uint64_t bytes() const { return sectors * kSector; }
  std::string Describe() const {
    std::string s = std::to_string(blocks) + " blocks (" + std::to_string(compressed) + " compressed), " +
                    std::to_string(sectors) + " sectors, sectors histogram";
    for (auto [k, n] : histogram) s += " " + std::to_string(k) + ":" + std::to_string(n);
    return s;
  }
};

Ideal IdealOf(const std::vector<const FileModel*>& files) {
  std::vector<std::string> all;
  for (const FileModel* f : files) f->CollectDistinctBlocks(&all);
  const std::unordered_set<std::string> distinct(all.begin(), all.end());
  Ideal ideal;
  for (const std::string& b : distinct) {
    const uint32_t s = test::Lz4Sectors(reinterpret_cast<const uint8_t*>(b.data()));
    ++ideal.blocks;
    ideal.sectors += s;
    if (s < 8) ++ideal.compressed;
    ++ideal.histogram[s];
  }
  return ideal;
}

// ------------------------------------------------------------ the catalog

int64_t ToInt(const std::optional<std::string>& v) { return v ? std::stoll(*v) : -1; }

// chain_stats of one chain.
struct ChainFigures {
  int64_t blocks = -1, compressed_blocks = -1, stored_sectors = -1, stored_bytes = -1;
  std::string Describe() const {
    return "blocks " + std::to_string(blocks) + ", compressed_blocks " + std::to_string(compressed_blocks) +
           ", stored_sectors " + std::to_string(stored_sectors) + ", stored_bytes " + std::to_string(stored_bytes);
  }
};

ChainFigures FiguresOf(const MountedFs& fs, const std::string& chain) {
  ChainFigures c;
  auto rows = fs.Query("SELECT blocks, compressed_blocks, stored_sectors, stored_bytes FROM chain_stats "
                       "WHERE chain = ?1",
                       {chain});
  if (rows.size() != 1 || rows[0].size() != 4) {
    ADD_FAILURE() << "chain_stats has " << rows.size() << " row(s) for chain " << chain;
    return c;
  }
  c.blocks = ToInt(rows[0][0]);
  c.compressed_blocks = ToInt(rows[0][1]);
  c.stored_sectors = ToInt(rows[0][2]);
  c.stored_bytes = ToInt(rows[0][3]);
  return c;
}

// chain_stats of `chain` is exactly what the rule gives its distinct blocks.
::testing::AssertionResult StoresExactly(const MountedFs& fs, const std::string& chain, const Ideal& ideal) {
  const ChainFigures c = FiguresOf(fs, chain);
  if (c.blocks == ideal.blocks && c.compressed_blocks == ideal.compressed &&
      c.stored_sectors == static_cast<int64_t>(ideal.sectors) &&
      c.stored_bytes == static_cast<int64_t>(ideal.bytes()))
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "chain " << chain << ": chain_stats says " << c.Describe()
                                       << "; the rule gives " << ideal.Describe() << " = "
                                       << ideal.bytes() << " bytes";
}

// The pblock MNT/chain/file's block `lba` maps to (nullopt for a hole; -1
// is a valid packed pblock, so QueryInt's -1 will not do).
std::optional<int64_t> PblockAt(const MountedFs& fs, const std::string& chain, const std::string& file,
                                uint64_t lba) {
  auto rows = fs.Query("SELECT l.pblock FROM lat l JOIN swap_file f ON f.file_id = l.file_id "
                       "JOIN chain c ON c.dedup_id = f.dedup_id WHERE c.name = ?1 AND f.name = ?2 AND l.lba = ?3",
                       {chain, file, std::to_string(lba)});
  if (rows.empty() || rows[0].empty() || !rows[0][0]) return std::nullopt;
  return std::stoll(*rows[0][0]);
}

int64_t RefcountOf(const MountedFs& fs, int64_t pblock) {
  return fs.QueryInt("SELECT refcount FROM pat WHERE pblock = ?1", {std::to_string(pblock)});
}

// Raw-slot (pblock >= 0) and packed (pblock < 0) PAT rows of a chain.
int64_t RawRows(const MountedFs& fs, const std::string& chain) {
  return fs.QueryInt("SELECT count(*) FROM pat p JOIN chain c ON c.dedup_id = p.dedup_id "
                     "WHERE c.name = ?1 AND p.pblock >= 0",
                     {chain});
}
int64_t PackedRows(const MountedFs& fs, const std::string& chain) {
  return fs.QueryInt("SELECT count(*) FROM pat p JOIN chain c ON c.dedup_id = p.dedup_id "
                     "WHERE c.name = ?1 AND p.pblock < 0",
                     {chain});
}

// The sector extent of a packed pblock, decoded as docs/FORMAT.md says.
struct Extent {
  uint64_t first = 0;
  uint32_t count = 0;
};
Extent ExtentOf(int64_t pblock) {
  const auto v = static_cast<uint64_t>(-1 - pblock);
  return Extent{v / 8, static_cast<uint32_t>(v % 8) + 1};
}

// Runs the CLI and parses its JSON output (records a failure otherwise).
nlohmann::json CliJson(const std::vector<std::string>& args) {
  CommandResult r = extra::Cli(args);
  EXPECT_EQ(r.status, 0) << extra::Describe(r);
  const size_t brace = r.output.find('{');  // anything before it is logging
  auto j = nlohmann::json::parse(brace == std::string::npos ? "" : r.output.substr(brace), nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON:\n" << r.output;
  return j;
}

// The data of the dedup tests holds every shape of stored block.
::testing::AssertionResult CoversEverySize(const Ideal& ideal) {
  for (uint32_t s = 1; s <= 8; ++s)
    if (!ideal.histogram.count(s))
      return ::testing::AssertionFailure() << "the test data has no " << s << "-sector block: " << ideal.Describe();
  return ::testing::AssertionSuccess();
}

// ------------------------------------------------------------ fixtures

// A fresh mount with compress=lz4 (the backing directory is formatted with
// the default, compress off: the mount option overrides it).
class CompressionTest : public MountTest {
 protected:
  std::vector<std::string> MountOptions() const override { return {"compress=lz4"}; }
};

// An unmounted backing directory; the test starts the daemon with the
// compress option it needs, kills it, starts it again.
class CompressionDaemonTest : public extra::DaemonTest {};

// ============================================================ 1. dedup

// Proves DedupTest.FourFilesInOneChainStoreOneCopy with compress=lz4: the
// four files' blocks are stored once (PAT rows = distinct blocks), every one
// packed (pblock < 0), the chain's stored bytes are exactly the rule's
// sectors of its distinct blocks, and everything reads back byte for byte
// after a remount (from the compressed store, not from any cache).
TEST_F(CompressionTest, FilesOfOneChainWithTheSameDataStoreOneCompressedCopy) {
  const std::vector<uint8_t> data = MixedData(1401, 1024);  // 4 MiB
  const FileModel model = extra::ModelOf(data);
  const Ideal ideal = IdealOf({&model});
  ASSERT_TRUE(CoversEverySize(ideal));
  ASSERT_TRUE(fs().MakeChain("pool"));
  const std::vector<std::string> files = {"vm01.vswp", "vm02.vswp", "vm03.vswp", "vm04.vswp"};
  for (const auto& f : files) ASSERT_TRUE(WriteFile(fs().Path("pool", f), 0, data));
  for (const auto& f : files) ASSERT_TRUE(FileEquals(fs().Path("pool", f), data, /*direct=*/true));

  ASSERT_TRUE(fs().Settle("pool"));
  ASSERT_TRUE(WaitUntil([&] { return fs().PatRows("pool") == ideal.blocks; }))
      << "PAT rows " << fs().PatRows("pool") << ", distinct blocks " << ideal.blocks;
  EXPECT_EQ(fs().TotalLatRows(), 4 * static_cast<int64_t>(model.NonZeroBlocks()));
  EXPECT_EQ(fs().TotalPatRows(), ideal.blocks);
  EXPECT_EQ(RawRows(fs(), "pool"), 0) << "a block was stored in a raw slot with compress=lz4";
  EXPECT_TRUE(StoresExactly(fs(), "pool", ideal));
  // Each distinct block is referenced by every occurrence in every file.
  EXPECT_EQ(fs().QueryInt("SELECT sum(refcount) FROM pat"), 4 * static_cast<int64_t>(model.NonZeroBlocks()));
  EXPECT_TRUE(fs().CatalogInvariantsHold());
  std::fprintf(stderr, "[ info ] %s; store.dat allocated %llu bytes\n", ideal.Describe().c_str(),
               static_cast<unsigned long long>(fs().StoreAllocated()));

  ASSERT_TRUE(fs().Remount());
  for (const auto& f : files) EXPECT_TRUE(FileEquals(fs().Path("pool", f), data, /*direct=*/false));
  EXPECT_TRUE(StoresExactly(fs(), "pool", ideal));
  EXPECT_TRUE(fs().CatalogInvariantsHold());
}

// Proves DedupTest.SameDataInTwoChainsIsStoredTwice with compress=lz4: each
// chain stores its own compressed copy (exactly the rule's sectors each),
// no block is shared across chains, and both read back after a remount.
TEST_F(CompressionTest, SameDataInTwoChainsIsStoredCompressedTwice) {
  const std::vector<uint8_t> data = MixedData(1402, 1024);
  const FileModel model = extra::ModelOf(data);
  const Ideal ideal = IdealOf({&model});
  ASSERT_TRUE(CoversEverySize(ideal));
  ASSERT_TRUE(fs().MakeChain("pool-a"));
  ASSERT_TRUE(fs().MakeChain("pool-b"));
  ASSERT_TRUE(WriteFile(fs().Path("pool-a", "vm01.vswp"), 0, data));
  ASSERT_TRUE(WriteFile(fs().Path("pool-b", "vm01.vswp"), 0, data));
  ASSERT_TRUE(FileEquals(fs().Path("pool-a", "vm01.vswp"), data));
  ASSERT_TRUE(FileEquals(fs().Path("pool-b", "vm01.vswp"), data));

  ASSERT_TRUE(fs().Settle("pool-a"));
  ASSERT_TRUE(fs().Settle("pool-b"));
  ASSERT_TRUE(WaitUntil([&] { return fs().TotalPatRows() == 2 * ideal.blocks; }))
      << "PAT rows " << fs().TotalPatRows() << ", expected " << 2 * ideal.blocks;
  for (const char* chain : {"pool-a", "pool-b"}) {
    EXPECT_EQ(fs().PatRows(chain), ideal.blocks) << chain;
    EXPECT_EQ(RawRows(fs(), chain), 0) << chain;
    EXPECT_TRUE(StoresExactly(fs(), chain, ideal));
  }
  EXPECT_EQ(fs().QueryInt("SELECT count(*) FROM (SELECT l.pblock FROM lat l JOIN swap_file f "
                          "ON f.file_id = l.file_id GROUP BY l.pblock HAVING count(DISTINCT f.dedup_id) > 1)"),
            0);
  EXPECT_TRUE(fs().CatalogInvariantsHold());

  ASSERT_TRUE(fs().Remount());
  EXPECT_TRUE(FileEquals(fs().Path("pool-a", "vm01.vswp"), data, /*direct=*/false));
  EXPECT_TRUE(FileEquals(fs().Path("pool-b", "vm01.vswp"), data, /*direct=*/false));
}

// ============================================== 2. off -> lz4 -> off

// Proves that the compress option only concerns new blocks: a chain written
// raw (compress=off, pblock >= 0) reads back exactly under compress=lz4; new
// distinct blocks are then packed with exactly the rule's sectors; a block
// equal to an old raw block deduplicates to it (refcount 2, no new PAT row:
// dedup is keyed on the uncompressed bytes); and back under compress=off
// every block, raw or packed, still reads back, new blocks go to raw slots
// and a block equal to a packed one deduplicates to the packed one.
TEST_F(CompressionDaemonTest, RawChainRemountedWithLz4ReadsBackAndOnlyNewBlocksCompress) {
  ASSERT_TRUE(daemon().Start({"compress=off"}));
  ASSERT_TRUE(fs().MakeChain("pool"));
  const std::vector<uint8_t> old = MixedData(1410, 512);  // 2 MiB
  const FileModel old_model = extra::ModelOf(old);
  const Ideal old_ideal = IdealOf({&old_model});
  ASSERT_TRUE(WriteFile(fs().Path("pool", "old.vswp"), 0, old));
  ASSERT_TRUE(fs().Settle("pool"));
  ASSERT_TRUE(WaitUntil([&] { return fs().PatRows("pool") == old_ideal.blocks; }))
      << "PAT rows " << fs().PatRows("pool") << ", distinct blocks " << old_ideal.blocks;
  ASSERT_EQ(PackedRows(fs(), "pool"), 0) << "compress=off stored packed blocks";
  {
    const ChainFigures c = FiguresOf(fs(), "pool");
    EXPECT_EQ(c.stored_bytes, old_ideal.blocks * 4096) << c.Describe();
    EXPECT_EQ(c.compressed_blocks, 0) << c.Describe();
  }

  // An old block that compresses and occurs once: a copy of it must dedup
  // to the raw block, not be stored packed beside it.
  std::unordered_map<std::string, int> occurrences;
  for (size_t i = 0; i < old.size() / kBlock; ++i)
    ++occurrences[std::string(reinterpret_cast<const char*>(old.data() + i * kBlock), kBlock)];
  std::optional<uint64_t> chosen;
  for (size_t i = 0; i < old.size() / kBlock && !chosen; ++i) {
    const uint8_t* b = old.data() + i * kBlock;
    const uint32_t s = test::Lz4Sectors(b);
    if (s >= 2 && s <= 6 && occurrences[std::string(reinterpret_cast<const char*>(b), kBlock)] == 1) chosen = i;
  }
  ASSERT_TRUE(chosen.has_value()) << "no compressible block occurring once in the old data";
  const std::span<const uint8_t> chosen_block(old.data() + *chosen * kBlock, kBlock);
  const std::optional<int64_t> raw_pblock = PblockAt(fs(), "pool", "old.vswp", *chosen);
  ASSERT_TRUE(raw_pblock.has_value());
  ASSERT_GE(*raw_pblock, 0);
  ASSERT_EQ(RefcountOf(fs(), *raw_pblock), 1);
  ASSERT_TRUE(daemon().Stop());

  // compress=lz4: the raw chain reads back, from the store.
  ASSERT_TRUE(daemon().Start({"compress=lz4"}));
  EXPECT_TRUE(FileEquals(fs().Path("pool", "old.vswp"), old, /*direct=*/false));
  const std::vector<uint8_t> fresh = MixedData(1411, 256);
  const FileModel fresh_model = extra::ModelOf(fresh);
  const Ideal fresh_ideal = IdealOf({&fresh_model});
  ASSERT_EQ(IdealOf({&old_model, &fresh_model}).blocks, old_ideal.blocks + fresh_ideal.blocks)
      << "the fresh data shares blocks with the old";
  ASSERT_TRUE(WriteFile(fs().Path("pool", "fresh.vswp"), 0, fresh));
  ASSERT_TRUE(WriteFile(fs().Path("pool", "dup.vswp"), 0, chosen_block));
  ASSERT_TRUE(fs().Settle("pool"));
  ASSERT_TRUE(WaitUntil([&] { return fs().PatRows("pool") == old_ideal.blocks + fresh_ideal.blocks; }))
      << "PAT rows " << fs().PatRows("pool") << ", expected " << old_ideal.blocks + fresh_ideal.blocks
      << " (the copy of an old block must add none)";
  EXPECT_EQ(RawRows(fs(), "pool"), old_ideal.blocks) << "the old raw blocks must stay as stored";
  EXPECT_EQ(PackedRows(fs(), "pool"), fresh_ideal.blocks) << "every new distinct block is packed";
  EXPECT_EQ(PblockAt(fs(), "pool", "dup.vswp", 0), raw_pblock) << "the copy did not dedup to the raw block";
  EXPECT_EQ(RefcountOf(fs(), *raw_pblock), 2);
  {
    const ChainFigures c = FiguresOf(fs(), "pool");
    EXPECT_EQ(c.compressed_blocks, fresh_ideal.compressed) << c.Describe() << "; fresh: " << fresh_ideal.Describe();
    EXPECT_EQ(c.stored_sectors, old_ideal.blocks * 8 + static_cast<int64_t>(fresh_ideal.sectors))
        << c.Describe() << "; fresh: " << fresh_ideal.Describe();
    EXPECT_EQ(c.stored_bytes, c.stored_sectors * 512) << c.Describe();
  }
  EXPECT_EQ(fs().QueryInt("SELECT coalesce(sum(sectors), 0) FROM block_extent WHERE pblock < 0"),
            static_cast<int64_t>(fresh_ideal.sectors));
  EXPECT_TRUE(fs().CatalogInvariantsHold());
  ASSERT_TRUE(daemon().Stop());

  // compress=off again: raw and packed blocks read back; new blocks are raw;
  // a copy of a packed block deduplicates to it.
  ASSERT_TRUE(daemon().Start({"compress=off"}));
  EXPECT_TRUE(FileEquals(fs().Path("pool", "old.vswp"), old, /*direct=*/false));
  EXPECT_TRUE(FileEquals(fs().Path("pool", "fresh.vswp"), fresh, /*direct=*/false));
  EXPECT_TRUE(FileEquals(fs().Path("pool", "dup.vswp"), chosen_block, /*direct=*/false));
  std::optional<uint64_t> packed_lba;
  for (size_t i = 0; i < fresh.size() / kBlock && !packed_lba; ++i) {
    auto p = PblockAt(fs(), "pool", "fresh.vswp", i);
    if (p && *p < 0 && ExtentOf(*p).count < 8) packed_lba = i;
  }
  ASSERT_TRUE(packed_lba.has_value());
  const int64_t packed_pblock = *PblockAt(fs(), "pool", "fresh.vswp", *packed_lba);
  const int64_t packed_refs = RefcountOf(fs(), packed_pblock);
  const std::vector<uint8_t> later = MixedData(1412, 64);
  const FileModel later_model = extra::ModelOf(later);
  const Ideal later_ideal = IdealOf({&later_model});
  ASSERT_TRUE(WriteFile(fs().Path("pool", "later.vswp"), 0, later));
  ASSERT_TRUE(WriteFile(fs().Path("pool", "dup2.vswp"), 0,
                        std::span<const uint8_t>(fresh.data() + *packed_lba * kBlock, kBlock)));
  ASSERT_TRUE(fs().Settle("pool"));
  ASSERT_TRUE(WaitUntil([&] {
    return fs().PatRows("pool") == old_ideal.blocks + fresh_ideal.blocks + later_ideal.blocks;
  })) << "PAT rows " << fs().PatRows("pool");
  EXPECT_EQ(RawRows(fs(), "pool"), old_ideal.blocks + later_ideal.blocks) << "compress=off stores raw";
  EXPECT_EQ(PackedRows(fs(), "pool"), fresh_ideal.blocks);
  EXPECT_EQ(PblockAt(fs(), "pool", "dup2.vswp", 0), packed_pblock) << "the copy did not dedup to the packed block";
  EXPECT_EQ(RefcountOf(fs(), packed_pblock), packed_refs + 1);
  EXPECT_TRUE(fs().CatalogInvariantsHold());
  ASSERT_TRUE(daemon().Stop());
  ASSERT_TRUE(daemon().Start({}));  // the recorded default (off)
  EXPECT_TRUE(FileEquals(fs().Path("pool", "old.vswp"), old, /*direct=*/false));
  EXPECT_TRUE(FileEquals(fs().Path("pool", "fresh.vswp"), fresh, /*direct=*/false));
  EXPECT_TRUE(FileEquals(fs().Path("pool", "later.vswp"), later, /*direct=*/false));
}

// Proves that `chainswap format --compress lz4` records compression as the
// backing directory's default (meta 'compress'): a mount without the option
// packs new blocks, and compress=off on the mount line overrides it.
TEST_F(CompressionDaemonTest, FormatCompressLz4IsTheDefaultOfTheBackingDirectory) {
  EXPECT_EQ(fs().Query("SELECT value FROM meta WHERE key = 'compress'"),
            std::vector<Row>{Row{std::string("off")}});
  std::error_code ec;
  std::filesystem::remove_all(fs().backing(), ec);
  ASSERT_FALSE(ec) << ec.message();
  CommandResult r = extra::Cli({"format", "--compress", "lz4", fs().backing()});
  ASSERT_EQ(r.status, 0) << extra::Describe(r);
  EXPECT_EQ(fs().Query("SELECT value FROM meta WHERE key = 'compress'"),
            std::vector<Row>{Row{std::string("lz4")}});

  ASSERT_TRUE(daemon().Start({}));
  ASSERT_TRUE(fs().MakeChain("pool"));
  const std::vector<uint8_t> a = MixedData(1420, 128);
  const FileModel a_model = extra::ModelOf(a);
  ASSERT_TRUE(WriteFile(fs().Path("pool", "a.vswp"), 0, a));
  ASSERT_TRUE(fs().Settle("pool"));
  const Ideal a_ideal = IdealOf({&a_model});
  ASSERT_TRUE(WaitUntil([&] { return fs().PatRows("pool") == a_ideal.blocks; })) << fs().PatRows("pool");
  EXPECT_EQ(RawRows(fs(), "pool"), 0);
  EXPECT_TRUE(StoresExactly(fs(), "pool", a_ideal));
  ASSERT_TRUE(daemon().Stop());

  ASSERT_TRUE(daemon().Start({"compress=off"}));
  const std::vector<uint8_t> b = MixedData(1421, 128);
  const FileModel b_model = extra::ModelOf(b);
  ASSERT_TRUE(WriteFile(fs().Path("pool", "b.vswp"), 0, b));
  ASSERT_TRUE(fs().Settle("pool"));
  const Ideal b_ideal = IdealOf({&b_model});
  ASSERT_TRUE(WaitUntil([&] { return fs().PatRows("pool") == a_ideal.blocks + b_ideal.blocks; }))
      << fs().PatRows("pool");
  EXPECT_EQ(RawRows(fs(), "pool"), b_ideal.blocks);
  EXPECT_TRUE(FileEquals(fs().Path("pool", "a.vswp"), a, /*direct=*/false));
  EXPECT_TRUE(FileEquals(fs().Path("pool", "b.vswp"), b, /*direct=*/false));
}

// ======================================================== 3. churn

constexpr int kChurnFiles = 4;
constexpr size_t kChurnBlocks = 1024;  // 4 MiB per file, 16 MiB working set
constexpr int kChurnRounds = 10;

// Proves that overwrites, punches (PUNCH_HOLE | KEEP_SIZE), O_TRUNC and
// unlink with compress=lz4 keep every file's content as the model says
// (checked each round, and after a remount), keep chain_stats exact (the
// rule's sectors of the distinct blocks left), and leave no garbage behind
// in the store: once the daemon is idle (its syncs give freed pack pages
// back and punch them), store.dat's allocated bytes are at most 1.10 x the
// chain's stored_bytes + 1 MiB. Each round rewrites a random half of each
// file's blocks one by one (the worst case for sector packing: holes of
// every size all over the pack pages), and one file a round is instead
// punched, rewritten through O_TRUNC, or unlinked and written anew.
// Measured on this build (fixed seed; the "[ info ] churn" line prints the
// figures): stored_bytes 8,947,712; store.dat 9.1-11.9 MB right after the
// settle, 9,117,696-9,273,344 bytes (1.02-1.04 x) once idle, within about a
// second; the bound is 10,891,059. The daemon's idle syncs also merge the
// hash log into hash_index, after which the catalog invariants are checked
// again.
TEST_F(CompressionTest, ChurnWithCompressionKeepsContentAndTheStoreBounded) {
  std::mt19937_64 rng(1430);
  ASSERT_TRUE(fs().MakeChain("pool"));
  std::vector<FileModel> models(kChurnFiles);
  auto name = [](int f) { return "vm" + std::to_string(f) + ".vswp"; };
  uint64_t stream = 1430000;  // a fresh mixed stream for each write of a round
  auto fresh_file = [&](int f) {
    auto d = MixedData(++stream, kChurnBlocks);
    models[f] = extra::ModelOf(d);
    return d;
  };
  for (int f = 0; f < kChurnFiles; ++f) ASSERT_TRUE(WriteFile(fs().Path("pool", name(f)), 0, fresh_file(f)));

  for (int round = 0; round < kChurnRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const int special = round % kChurnFiles;  // this file is punched, truncated or replaced
    for (int f = 0; f < kChurnFiles; ++f) {
      const std::string path = fs().Path("pool", name(f));
      if (f == special && round % 3 == 1) {  // O_TRUNC, then new content
        Fd fd = Fd::Open(path, O_WRONLY | O_TRUNC);
        ASSERT_TRUE(fd.ok()) << "open O_TRUNC " << path << ": " << ErrnoName(errno);
        models[f].Truncate(0);
        ASSERT_TRUE(PwriteAll(fd.get(), 0, fresh_file(f)));
        continue;
      }
      if (f == special && round % 3 == 2) {  // unlink, then a new file
        ASSERT_TRUE(Succeeds(::unlink(path.c_str()))) << path;
        ASSERT_TRUE(WriteFile(path, 0, fresh_file(f)));
        continue;
      }
      // A random half of the blocks rewritten, block by block: fresh mixed
      // blocks, zero blocks among them, and copies of other files' blocks.
      std::vector<uint64_t> lbas(kChurnBlocks);
      std::iota(lbas.begin(), lbas.end(), 0);
      std::shuffle(lbas.begin(), lbas.end(), rng);
      lbas.resize(kChurnBlocks / 2);
      const uint64_t s = ++stream;
      Fd fd = Fd::Open(path, O_RDWR);
      ASSERT_TRUE(fd.ok()) << path << ": " << ErrnoName(errno);
      uint8_t block[kBlock];
      for (uint64_t lba : lbas) {
        const BlockKind kind = KindOf(s, lba);
        if (kind == BlockKind::kRepeat) {
          const FileModel& other = models[rng() % kChurnFiles];
          const uint64_t from = (rng() % kChurnBlocks) * kBlock;
          if (from + kBlock > other.size()) continue;
          std::memcpy(block, other.bytes().data() + from, kBlock);
        } else {
          FillMixedBlock(s, lba, kind, block);
        }
        ASSERT_TRUE(PwriteAll(fd.get(), lba * kBlock, {block, kBlock}));
        models[f].Write(lba * kBlock, {block, kBlock});
      }
      if (f == special) {  // round % 3 == 0: a punch, aligned or not
        auto [off, len] = extra::RandomRange(rng, kChurnBlocks * kBlock, 1 * kMiB);
        ASSERT_TRUE(Succeeds(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                         static_cast<off_t>(off), static_cast<off_t>(len))))
            << "punch " << len << " at " << off;
        models[f].Zero(off, len, /*keep_size=*/true);
      }
    }
    for (int f = 0; f < kChurnFiles; ++f)
      ASSERT_TRUE(FileEquals(fs().Path("pool", name(f)), models[f].bytes(), /*direct=*/true)) << name(f);
  }

  std::vector<const FileModel*> all;
  for (const auto& m : models) all.push_back(&m);
  const Ideal ideal = IdealOf(all);
  ASSERT_TRUE(fs().Settle("pool"));
  ASSERT_TRUE(WaitUntil([&] { return fs().PatRows("pool") == ideal.blocks; }))
      << "PAT rows " << fs().PatRows("pool") << ", distinct blocks " << ideal.blocks;
  EXPECT_EQ(fs().TotalPatRows(), ideal.blocks) << "blocks of unlinked files are left";
  EXPECT_EQ(RawRows(fs(), "pool"), 0);
  EXPECT_TRUE(StoresExactly(fs(), "pool", ideal));
  EXPECT_TRUE(fs().CatalogInvariantsHold());

  // Idle: the daemon syncs, pack pages wholly free go back and are punched.
  const uint64_t stored = ideal.bytes();
  const uint64_t bound = stored + stored / 10 + 1 * kMiB;
  const uint64_t before = fs().StoreAllocated();
  const auto t0 = std::chrono::steady_clock::now();
  const bool within = WaitUntil([&] { return fs().StoreAllocated() <= bound; }, std::chrono::seconds(20));
  const uint64_t after = fs().StoreAllocated();
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string figures =
      "stored_bytes " + std::to_string(stored) + ", store.dat allocated " + std::to_string(before) +
      " right after the settle, " + std::to_string(after) + " after " + std::to_string(waited) + " s (" +
      std::to_string(stored ? double(after) / double(stored) : 0.0) + " x), bound " + std::to_string(bound) +
      "; " + ideal.Describe();
  std::fprintf(stderr, "[ info ] churn: %s\n", figures.c_str());
  RecordProperty("store_allocated_bytes", std::to_string(after));
  RecordProperty("stored_bytes", std::to_string(stored));
  EXPECT_TRUE(within) << figures << "\n" << extra::DestageSummary(fs().mnt());
  // Idle, the daemon also merges the hash log into hash_index: the index
  // it leaves names each block under its own key, and nothing else.
  const bool merged = WaitUntil([&] { return fs().QueryInt("SELECT count(*) FROM hash_log") == 0; },
                                std::chrono::seconds(20));
  std::fprintf(stderr, "[ info ] churn: hash_log rows %lld after the idle wait%s\n",
               static_cast<long long>(fs().QueryInt("SELECT count(*) FROM hash_log")),
               merged ? " (merged)" : " (not merged within 20 s)");
  EXPECT_TRUE(fs().CatalogInvariantsHold()) << "after the idle merge of the hash log";

  ASSERT_TRUE(fs().Remount());
  for (int f = 0; f < kChurnFiles; ++f)
    EXPECT_TRUE(FileEquals(fs().Path("pool", name(f)), models[f].bytes(), /*direct=*/false)) << name(f);
  EXPECT_TRUE(StoresExactly(fs(), "pool", ideal));
  EXPECT_TRUE(fs().CatalogInvariantsHold());
}

// ======================================================== 4. kill -9

constexpr int kCrashCycles = 5;
constexpr uint64_t kStreamSpan = 2 * kMiB;
constexpr uint64_t kStreamChunk = 64 * kKiB;

// The daemon's options in a crash cycle: compression always, the destage
// timing varied so that the kill meets compressed writes at every stage.
std::vector<std::string> CrashOptions(int cycle) {
  switch (cycle % 4) {
    case 0: return {"compress=lz4"};
    case 1: return {"compress=lz4", "destage_delay=0", "bucket_size=8M"};
    case 2: return {"compress=lz4", "idle_seal_ms=1", "bucket_size=8M", "destage_delay=0"};
    default: return {"compress=lz4", "destage_delay=60000"};
  }
}

// Proves crash safety with compress=lz4 (crash_test.cc's pattern): each
// cycle writes and fsyncs a new file of mixed blocks (with copies of older
// files' blocks), rewrites half of an older file and punches another, fsync
// each, then streams O_DIRECT writes of compressible blocks while the test
// kills the daemon with SIGKILL. After every restart each fsynced file reads
// back exactly and each streamed file holds every acknowledged write (the
// one in flight may or may not have landed). At the end the chain stores
// exactly the rule's sectors of its distinct blocks (nothing leaked by the
// crashes), and after a clean unmount `chainswap fsck` exits 0.
TEST_F(CompressionDaemonTest, KillDashNineDuringCompressedWritesLosesNoAcknowledgedWrite) {
  const uint64_t seed = extra::TestSeed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (CHAINSWAP_TEST_SEED=" + std::to_string(seed) + " repeats this run)");
  RecordProperty("seed", std::to_string(seed));
  std::fprintf(stderr, "[ info ] CompressionDaemonTest crash seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);

  std::map<std::string, FileModel> durable;  // name -> what must read back
  struct Streamed {
    std::string name;
    FileModel acked;
    std::optional<FileModel> alt;  // with the in-doubt write landed
  };
  std::optional<Streamed> streamed;  // the previous cycle's stream file, to check
  uint64_t stream_seed = seed * 1000;

  auto verify = [&] {
    for (const auto& [n, m] : durable)
      EXPECT_TRUE(FileEquals(fs().Path("pool", n), m.bytes(), /*direct=*/true)) << n;
    if (streamed) {
      std::vector<uint8_t> actual;
      ASSERT_TRUE(ReadFile(fs().Path("pool", streamed->name), &actual, /*direct=*/true));
      const bool ok = actual == streamed->acked.bytes() || (streamed->alt && actual == streamed->alt->bytes());
      ASSERT_TRUE(ok) << streamed->name << ": without the in-flight write "
                      << extra::DescribeDiff(actual, streamed->acked.bytes()) << "; with it "
                      << (streamed->alt ? extra::DescribeDiff(actual, streamed->alt->bytes()) : "(none in doubt)");
      durable[streamed->name] = extra::ModelOf(actual);
      streamed.reset();
    }
  };

  ASSERT_TRUE(daemon().Start(CrashOptions(0)));
  ASSERT_TRUE(fs().MakeChain("pool"));
  for (int cycle = 0; cycle < kCrashCycles; ++cycle) {
    SCOPED_TRACE("cycle " + std::to_string(cycle));
    if (cycle > 0) {
      ASSERT_TRUE(daemon().Start(CrashOptions(cycle)));
      verify();
      ASSERT_FALSE(HasFatalFailure());
      EXPECT_TRUE(fs().CatalogInvariantsHold());
    }
    // A new file, fsynced: mixed blocks and copies of older files' blocks.
    const std::string fresh_name = "c" + std::to_string(cycle) + ".vswp";
    std::vector<uint8_t> fresh = MixedData(++stream_seed, 256);
    for (const auto& [n, m] : durable) {
      for (int k = 0; k < 16 && m.size() >= kBlock; ++k) {
        const uint64_t from = (rng() % (m.size() / kBlock)) * kBlock;
        const uint64_t to = (rng() % 256) * kBlock;
        std::memcpy(fresh.data() + to, m.bytes().data() + from, kBlock);
      }
    }
    {
      Fd fd = Fd::Open(fs().Path("pool", fresh_name), O_CREAT | O_RDWR);
      ASSERT_TRUE(fd.ok());
      ASSERT_TRUE(PwriteAll(fd.get(), 0, fresh));
      ASSERT_TRUE(Succeeds(::fsync(fd.get())));
      durable[fresh_name] = extra::ModelOf(fresh);
    }
    // Half of an older file rewritten, another punched; fsynced.
    if (durable.size() > 1) {
      auto it = durable.begin();
      std::advance(it, static_cast<long>(rng() % durable.size()));
      FileModel& m = it->second;
      Fd fd = Fd::Open(fs().Path("pool", it->first), O_RDWR);
      ASSERT_TRUE(fd.ok()) << it->first;
      const uint64_t s = ++stream_seed;
      uint8_t block[kBlock];
      for (uint64_t lba = 0; lba * kBlock < m.size(); ++lba) {
        if (rng() % 2) continue;
        FillMixedBlock(s, lba, KindOf(s, lba), block);
        ASSERT_TRUE(PwriteAll(fd.get(), lba * kBlock, {block, kBlock}));
        m.Write(lba * kBlock, {block, kBlock});
      }
      ASSERT_TRUE(Succeeds(::fsync(fd.get())));
      auto jt = durable.begin();
      std::advance(jt, static_cast<long>(rng() % durable.size()));
      Fd pfd = Fd::Open(fs().Path("pool", jt->first), O_RDWR);
      ASSERT_TRUE(pfd.ok()) << jt->first;
      if (jt->second.size() > 0) {
        auto [off, len] = extra::RandomRange(rng, jt->second.size(), std::min<uint64_t>(jt->second.size(), 256 * kKiB));
        ASSERT_TRUE(Succeeds(::fallocate(pfd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                         static_cast<off_t>(off), static_cast<off_t>(len))));
        jt->second.Zero(off, len, /*keep_size=*/true);
      }
      ASSERT_TRUE(Succeeds(::fsync(pfd.get())));
    }

    // O_DIRECT writes of compressible blocks streamed until the kill: each
    // that returned is acknowledged.
    Streamed st;
    st.name = "s" + std::to_string(cycle) + ".vswp";
    extra::RawFd sfd = extra::RawFd::Open(fs().Path("pool", st.name), O_CREAT | O_RDWR | O_DIRECT);
    ASSERT_TRUE(sfd.ok()) << ErrnoName(errno);
    struct Op {
      uint64_t off;
      std::vector<uint8_t> data;
    };
    std::vector<Op> done;
    std::optional<Op> inflight;
    std::string writer_error;
    const uint64_t wseed = ++stream_seed;
    std::thread writer([&] {
      std::mt19937_64 wr(wseed);
      AlignedBuf buf(kStreamChunk);
      for (uint64_t k = 0; k < 100000; ++k) {
        const uint64_t off = (wr() % (kStreamSpan / kStreamChunk)) * kStreamChunk;
        std::vector<uint8_t> data(kStreamChunk);
        for (uint64_t b = 0; b < kStreamChunk / kBlock; ++b) {
          const uint64_t index = k * (kStreamChunk / kBlock) + b;
          BlockKind kind = KindOf(wseed, index);
          if (kind == BlockKind::kRepeat) kind = BlockKind::kText;
          FillMixedBlock(wseed, index, kind, data.data() + b * kBlock);
        }
        std::memcpy(buf.data(), data.data(), kStreamChunk);
        const ssize_t n = ::pwrite(sfd.get(), buf.data(), kStreamChunk, static_cast<off_t>(off));
        if (n == static_cast<ssize_t>(kStreamChunk)) {
          done.push_back({off, std::move(data)});
          continue;
        }
        if (n < 0) inflight = Op{off, std::move(data)};
        else writer_error = "short O_DIRECT write: " + std::to_string(n);
        return;
      }
      writer_error = "the writer ran out of ops before the kill";
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 200));
    auto killed = daemon().Kill9();
    writer.join();
    ASSERT_TRUE(killed);
    ASSERT_TRUE(writer_error.empty()) << writer_error;
    for (const auto& op : done) st.acked.Write(op.off, op.data);
    if (inflight) {
      st.alt = st.acked;
      st.alt->Write(inflight->off, inflight->data);
    }
    std::fprintf(stderr, "[ info ] cycle %d: killed after %zu acknowledged stream writes%s\n", cycle, done.size(),
                 inflight ? " (one in flight)" : "");
    streamed = std::move(st);
    sfd.Reset();
  }

  ASSERT_TRUE(daemon().Start({"compress=lz4"}));
  verify();
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(WaitUntil([&] { return extra::DestageIdle(fs().mnt()); })) << extra::DestageSummary(fs().mnt());
  std::vector<const FileModel*> all;
  int64_t lat_expected = 0;
  for (const auto& [n, m] : durable) {
    all.push_back(&m);
    lat_expected += static_cast<int64_t>(m.NonZeroBlocks());
  }
  const Ideal ideal = IdealOf(all);
  EXPECT_EQ(fs().TotalLatRows(), lat_expected);
  EXPECT_EQ(fs().PatRows("pool"), ideal.blocks);
  EXPECT_EQ(RawRows(fs(), "pool"), 0);
  EXPECT_TRUE(StoresExactly(fs(), "pool", ideal));
  EXPECT_TRUE(fs().CatalogInvariantsHold());
  ASSERT_TRUE(daemon().Stop());
  CommandResult r = extra::Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 0) << extra::Describe(r);
  std::fprintf(stderr, "[ info ] fsck: %s\n", extra::Describe(r).c_str());
  // And the data is still there after the clean cycle.
  ASSERT_TRUE(daemon().Start({"compress=lz4"}));
  verify();
}

// ======================================================== 5. estimate

// Images as a guest's swap looks: a parent of mixed blocks and two clones
// that rewrite a tenth of it, one with a partial last block.
struct Images {
  std::vector<uint8_t> parent, clone1, clone2;
};

Images MakeMixedImages() {
  constexpr size_t kBlocks = 1024;  // 4 MiB
  std::mt19937_64 rng(1450);
  Images im;
  im.parent = MixedData(1450, kBlocks);
  im.clone1 = im.parent;
  im.clone2 = im.parent;
  const std::vector<uint8_t> own1 = MixedData(1451, kBlocks), own2 = MixedData(1452, kBlocks);
  for (size_t i = 0; i < kBlocks; ++i) {
    if (rng() % 10 == 0) std::memcpy(im.clone1.data() + i * kBlock, own1.data() + i * kBlock, kBlock);
    if (rng() % 10 == 0) std::memcpy(im.clone2.data() + i * kBlock, own2.data() + i * kBlock, kBlock);
  }
  im.clone2.resize(im.clone2.size() - 1000);
  return im;
}

// Proves that `chainswap estimate` of image files predicts exactly what a
// compress=lz4 mount stores once the same images are copied (cp) into one
// chain: distinct blocks = PAT rows, stored_bytes_compress_lz4 = the
// chain's stored_bytes (chain_stats and `chainswap stats --json`), raw
// blocks = blocks not compressed, and both equal the test's own rule.
TEST_F(CompressionTest, EstimateOfImagesIsWhatALz4MountStores) {
  const Images im = MakeMixedImages();
  const std::string src = fs().dir() + "/images";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  const std::vector<std::pair<std::string, const std::vector<uint8_t>*>> files = {
      {"parent.vswp", &im.parent}, {"clone1.vswp", &im.clone1}, {"clone2.vswp", &im.clone2}};
  std::vector<std::string> args{"estimate", "--json", "--no-progress"};
  std::vector<FileModel> models;
  for (const auto& [name, data] : files) {
    args.push_back(src + "/" + name);
    ASSERT_TRUE(WriteFile(args.back(), 0, *data));
    models.push_back(extra::ModelOf(*data));
  }
  const nlohmann::json est = CliJson(args);
  ASSERT_TRUE(est.contains("stored_bytes_compress_lz4")) << est.dump();
  std::vector<const FileModel*> all;
  for (const auto& m : models) all.push_back(&m);
  const Ideal ideal = IdealOf(all);

  ASSERT_TRUE(fs().MakeChain("est"));
  for (const auto& [name, data] : files) {
    CommandResult r = RunCommand({"cp", src + "/" + name, fs().Path("est", name)});
    ASSERT_EQ(r.status, 0) << r.output;
  }
  ASSERT_TRUE(fs().Settle("est"));
  ASSERT_TRUE(WaitUntil([&] { return fs().PatRows("est") == est["distinct_blocks"].get<int64_t>(); }))
      << "PAT rows " << fs().PatRows("est") << ", estimate " << est.dump();
  const ChainFigures c = FiguresOf(fs(), "est");
  EXPECT_EQ(c.stored_bytes, est["stored_bytes_compress_lz4"].get<int64_t>()) << c.Describe() << "\n" << est.dump();
  EXPECT_EQ(c.blocks - c.compressed_blocks, est["raw_blocks"].get<int64_t>()) << c.Describe() << "\n" << est.dump();
  EXPECT_EQ(est["distinct_blocks"].get<int64_t>(), ideal.blocks);
  EXPECT_EQ(est["stored_bytes_compress_lz4"].get<uint64_t>(), ideal.bytes()) << ideal.Describe();
  EXPECT_TRUE(StoresExactly(fs(), "est", ideal));

  const nlohmann::json stats = CliJson({"stats", fs().backing(), "--json"});
  const nlohmann::json* chain = nullptr;
  for (const auto& ch : stats["chains"])
    if (ch.value("name", "") == "est") chain = &ch;
  ASSERT_NE(chain, nullptr) << stats.dump();
  EXPECT_EQ((*chain)["stored_bytes"].get<uint64_t>(), est["stored_bytes_compress_lz4"].get<uint64_t>())
      << chain->dump() << "\n" << est.dump();
  EXPECT_EQ((*chain)["nonzero_bytes"].get<uint64_t>(), est["nonzero_bytes"].get<uint64_t>()) << chain->dump();
}

// ======================================================== 6. damage

// Proves that a damaged compressed block is an error, never wrong bytes:
// bytes flipped in store.dat inside the block's extent (first_sector * 512,
// decoded from its pblock) make read() of it fail with EIO, buffered or
// O_DIRECT; the daemon logs an error naming "stored block <pblock>"; the
// file's other blocks and the other files still read back exactly.
TEST_F(CompressionTest, DamagedCompressedBlockReadsAsEioNeverWrongBytes) {
  constexpr uint64_t kVictimLba = 5;
  // A text block that packs into 2..7 sectors, and room around it.
  std::vector<uint8_t> a = MixedData(1460, 64);
  FillText(1460, 999, 32, 2, a.data() + kVictimLba * kBlock);
  const uint32_t victim_sectors = test::Lz4Sectors(a.data() + kVictimLba * kBlock);
  ASSERT_GE(victim_sectors, 2u);
  ASSERT_LE(victim_sectors, 7u);
  const std::vector<uint8_t> b = MixedData(1461, 256);
  ASSERT_TRUE(fs().MakeChain("pool"));
  ASSERT_TRUE(WriteFile(fs().Path("pool", "a.vswp"), 0, a));
  ASSERT_TRUE(WriteFile(fs().Path("pool", "b.vswp"), 0, b));
  ASSERT_TRUE(fs().Settle("pool"));
  const std::optional<int64_t> pblock = PblockAt(fs(), "pool", "a.vswp", kVictimLba);
  ASSERT_TRUE(pblock.has_value());
  ASSERT_LT(*pblock, 0) << "the block is not packed";
  const Extent e = ExtentOf(*pblock);
  ASSERT_EQ(e.count, victim_sectors) << "pblock " << *pblock;
  ASSERT_EQ(RefcountOf(fs(), *pblock), 1);
  ASSERT_TRUE(fs().Unmount());

  // Flip 32 bytes of its LZ4 stream (past the 6-byte header).
  {
    extra::RawFd fd = extra::RawFd::Open(fs().store_path(), O_RDWR);
    ASSERT_TRUE(fd.ok()) << ErrnoName(errno);
    std::vector<uint8_t> ext(e.count * kSector);
    const off_t at = static_cast<off_t>(e.first * kSector);
    ASSERT_EQ(::pread(fd.get(), ext.data(), ext.size(), at), static_cast<ssize_t>(ext.size()));
    for (size_t i = 16; i < 48; ++i) ext[i] ^= 0xA5;
    ASSERT_EQ(::pwrite(fd.get(), ext.data(), ext.size(), at), static_cast<ssize_t>(ext.size()));
    ASSERT_EQ(::fsync(fd.get()), 0);
  }
  ASSERT_TRUE(fs().Mount());

  {  // O_DIRECT: the daemon answers this very read.
    Fd fd = Fd::Open(fs().Path("pool", "a.vswp"), O_RDONLY | O_DIRECT);
    ASSERT_TRUE(fd.ok());
    AlignedBuf buf(kBlock);
    const ssize_t n = ::pread(fd.get(), buf.data(), kBlock, static_cast<off_t>(kVictimLba * kBlock));
    const int err = errno;
    if (n >= 0) {
      ADD_FAILURE() << "O_DIRECT read of the damaged block returned " << n << " bytes, "
                    << (n == static_cast<ssize_t>(kBlock) &&
                                std::memcmp(buf.data(), a.data() + kVictimLba * kBlock, kBlock) == 0
                            ? "the original ones"
                            : "WRONG BYTES");
    } else {
      EXPECT_EQ(err, EIO) << ErrnoName(err);
    }
    // The other blocks of the file read back, each on its own.
    for (uint64_t lba = 0; lba < a.size() / kBlock; ++lba) {
      if (lba == kVictimLba) continue;
      ASSERT_EQ(::pread(fd.get(), buf.data(), kBlock, static_cast<off_t>(lba * kBlock)),
                static_cast<ssize_t>(kBlock))
          << "lba " << lba << ": " << ErrnoName(errno);
      EXPECT_EQ(std::memcmp(buf.data(), a.data() + lba * kBlock, kBlock), 0) << "lba " << lba;
    }
  }
  {  // Buffered read(): EIO too.
    Fd fd = Fd::Open(fs().Path("pool", "a.vswp"), O_RDONLY);
    ASSERT_TRUE(fd.ok());
    ASSERT_EQ(::lseek(fd.get(), static_cast<off_t>(kVictimLba * kBlock), SEEK_SET),
              static_cast<off_t>(kVictimLba * kBlock));
    std::vector<uint8_t> buf(kBlock);
    const ssize_t n = ::read(fd.get(), buf.data(), kBlock);
    const int err = errno;
    if (n >= 0) {
      ADD_FAILURE() << "read() of the damaged block returned " << n << " bytes, "
                    << (n == static_cast<ssize_t>(kBlock) &&
                                std::memcmp(buf.data(), a.data() + kVictimLba * kBlock, kBlock) == 0
                            ? "the original ones"
                            : "WRONG BYTES");
    } else {
      EXPECT_EQ(err, EIO) << ErrnoName(err);
    }
  }
  const std::string log = fs().DaemonLog();
  const std::string needle = "stored block " + std::to_string(*pblock);
  EXPECT_NE(log.find(needle), std::string::npos) << "no error naming \"" << needle << "\" in the daemon log";
  EXPECT_TRUE(FileEquals(fs().Path("pool", "b.vswp"), b, /*direct=*/false));
  EXPECT_TRUE(FileEquals(fs().Path("pool", "b.vswp"), b, /*direct=*/true));
}

}  // namespace
}  // namespace chainswap::mounttest
