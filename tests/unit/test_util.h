// Shared helpers for chainswap unit tests: temporary directories, block
// buffers, a formatted backing directory, catalog table dumps and the
// catalog invariants that `chainswap fsck` proves (SPEC §5).
#pragma once

#include <gtest/gtest.h>
#include <lz4.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "catalog/backing_dir.h"
#include "catalog/block.h"
#include "catalog/catalog.h"
#include "catalog/sqlite.h"
#include "catalog/stored_block.h"
#include "catalog/status.h"

namespace chainswap::test {

// gtest helpers that print the Status on failure.
#define CS_ASSERT_OK(expr)                                              \
  do {                                                                  \
    ::chainswap::Status cs_st_ = (expr);                                \
    ASSERT_TRUE(cs_st_.ok()) << #expr << " -> " << cs_st_.ToString();   \
  } while (0)
#define CS_EXPECT_OK(expr)                                              \
  do {                                                                  \
    ::chainswap::Status cs_st_ = (expr);                                \
    EXPECT_TRUE(cs_st_.ok()) << #expr << " -> " << cs_st_.ToString();   \
  } while (0)
#define CS_EXPECT_ERRNO(expr, err)                                      \
  do {                                                                  \
    ::chainswap::Status cs_st_ = (expr);                                \
    EXPECT_EQ(cs_st_.code(), (err)) << #expr << " -> " << cs_st_.ToString(); \
  } while (0)

// A fresh directory under /tmp, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/chainswap-unit-XXXXXX";
    char* p = ::mkdtemp(tmpl);
    if (p == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// One 4 KiB block, 64-byte aligned (IsZeroBlock reads 64-bit words).
struct Block {
  alignas(64) uint8_t b[kBlockSize];
  Block() { std::memset(b, 0, sizeof b); }
  uint8_t* data() { return b; }
  const uint8_t* data() const { return b; }
  bool operator==(const Block& o) const { return std::memcmp(b, o.b, sizeof b) == 0; }
};

// A deterministic non-zero block distinct for every `id` (and every seed).
inline Block PatternBlock(uint64_t id, uint64_t seed = 0) {
  Block blk;
  uint64_t x = (id + 1) * 0x9E3779B97F4A7C15ull ^ (seed * 0xD1B54A32D192ED03ull) ^ 0x5bd1e995ull;
  for (size_t i = 0; i < kBlockSize; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(blk.b + i, &x, 8);
  }
  blk.b[0] = static_cast<uint8_t>(id | 1);  // never all zero
  std::memcpy(blk.b + 8, &id, sizeof id);   // distinct ids -> distinct bytes
  return blk;
}

inline BlockOp WriteOp(int64_t file_id, int64_t dedup_id, uint64_t lba, const Block& blk) {
  BlockOp op;
  op.kind = BlockOp::Kind::kWrite;
  op.file_id = file_id;
  op.dedup_id = dedup_id;
  op.lba = lba;
  op.data = blk.data();
  return op;
}

inline BlockOp DeleteOp(int64_t file_id, int64_t dedup_id, uint64_t lba, uint64_t count) {
  BlockOp op;
  op.kind = BlockOp::Kind::kDelete;
  op.file_id = file_id;
  op.dedup_id = dedup_id;
  op.lba = lba;
  op.count = count;
  return op;
}

// Runs `sql` against the catalog's connection and returns every row as a
// string ("a|b|c"), in the order the query gives.
inline std::vector<std::string> QueryRows(sql::Db& db, const std::string& sql) {
  std::vector<std::string> rows;
  auto q = sql::Stmt::Prepare(db, sql);
  EXPECT_TRUE(q.ok()) << sql << " -> " << q.status().ToString();
  if (!q.ok()) return rows;
  for (;;) {
    auto r = q->Step();
    EXPECT_TRUE(r.ok()) << sql << " -> " << r.status().ToString();
    if (!r.ok() || !*r) break;
    // Stmt does not expose the column count: callers select one column, built
    // with SQL string concatenation when they need several values.
    rows.push_back(q->IsNull(0) ? "NULL" : q->Text(0));
  }
  return rows;
}

// A single integer result (first column of the first row); -1 on no row.
inline int64_t QueryInt(sql::Db& db, const std::string& sql) {
  auto q = sql::Stmt::Prepare(db, sql);
  EXPECT_TRUE(q.ok()) << sql << " -> " << q.status().ToString();
  if (!q.ok()) return -1;
  auto r = q->Step();
  EXPECT_TRUE(r.ok()) << sql << " -> " << r.status().ToString();
  if (!r.ok() || !*r) return -1;
  return q->Int(0);
}

// Full dumps of the catalog tables that describe block state.
struct CatalogDump {
  std::vector<std::string> lat, pat, free_slot, files;
  bool operator==(const CatalogDump&) const = default;
};

// The free slots (schema v3: the gaps in the PAT below the allocator's
// high-water mark), ascending, as strings.
inline std::vector<std::string> FreeSlots(Catalog& cat) {
  std::vector<std::string> out;
  const std::vector<std::string> used = QueryRows(cat.db_for_tools(), "SELECT pblock FROM pat ORDER BY pblock");
  size_t u = 0;
  for (uint64_t s = 0; s < cat.Usage().high_water; ++s) {
    if (u < used.size() && used[u] == std::to_string(s)) {
      ++u;
      continue;
    }
    out.push_back(std::to_string(s));
  }
  return out;
}

// The chain hash index as lookups see it: hash_index with hash_log's
// changes applied (the last change of a pair wins), as "key|pblock" rows.
inline std::vector<std::string> EffectiveHashIndex(sql::Db& db) {
  return QueryRows(db,
                   "WITH last AS (SELECT hash_key, pblock, op FROM (SELECT hash_key, pblock, op, row_number() OVER "
                   "(PARTITION BY hash_key, pblock ORDER BY seq DESC) AS rn FROM hash_log) WHERE rn = 1) "
                   "SELECT hash_key || '|' || pblock FROM ("
                   "SELECT hash_key, pblock FROM hash_index i WHERE NOT EXISTS "
                   "(SELECT 1 FROM last WHERE last.hash_key = i.hash_key AND last.pblock = i.pblock AND last.op = 0) "
                   "UNION SELECT hash_key, pblock FROM last WHERE op = 1) ORDER BY hash_key, pblock");
}

inline CatalogDump DumpCatalog(Catalog& cat) {
  Catalog::ToolsHold hold(cat);  // one committed state, even with an engine running
  sql::Db& db = cat.db_for_tools();
  CatalogDump d;
  d.lat = QueryRows(db, "SELECT file_id || '|' || lba || '|' || pblock FROM lat ORDER BY file_id, lba");
  d.pat = QueryRows(db,
                    "SELECT pblock || '|' || dedup_id || '|' || hash_key || '|' || refcount "
                    "FROM pat ORDER BY pblock");
  d.free_slot = FreeSlots(cat);
  d.files = QueryRows(db,
                      "SELECT file_id || '|' || coalesce(name, 'NULL') || '|' || size || '|' || "
                      "mapped_blocks FROM swap_file ORDER BY file_id");
  return d;
}

inline std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}

// The invariants `chainswap fsck` proves (SPEC §5) plus the catalog's own
// bookkeeping: refcount == LAT references, no dangling LAT entry, no slot
// both free and referenced, mapped_blocks == LAT rows per file, the
// in-memory allocator agrees with the tables, every hash matches its block.
inline void ExpectCatalogInvariants(Catalog& cat, ContentStore& store, bool check_hashes = true) {
  // The counters as of the last commit; after a settle only idle merges of
  // the hash log run, which leave them as they are.
  const HashTableFigures ht = cat.HashTable();
  // No destage or idle merge while we look.
  auto hold = std::make_optional<Catalog::ToolsHold>(cat);
  sql::Db& db = cat.db_for_tools();
  EXPECT_EQ(Join(QueryRows(db,
                           "SELECT p.pblock || ' refcount=' || p.refcount || ' refs=' || "
                           "coalesce(l.c, 0) FROM pat p LEFT JOIN "
                           "(SELECT pblock, count(*) AS c FROM lat GROUP BY pblock) l "
                           "ON l.pblock = p.pblock WHERE p.refcount != coalesce(l.c, 0)")),
            "")
      << "refcount differs from the number of LAT entries";
  EXPECT_EQ(Join(QueryRows(db,
                           "SELECT l.file_id || ':' || l.lba || '->' || l.pblock FROM lat l "
                           "WHERE NOT EXISTS (SELECT 1 FROM pat p WHERE p.pblock = l.pblock)")),
            "")
      << "LAT entries pointing at no PAT entry";
  EXPECT_EQ(Join(EffectiveHashIndex(db)),
            Join(QueryRows(db, "SELECT hash_key || '|' || pblock FROM pat WHERE hash_key IS NOT NULL "
                               "ORDER BY hash_key, pblock")))
      << "the chain hash index (hash_index + hash_log) differs from the PAT's indexed blocks";
  EXPECT_EQ(QueryInt(db, "SELECT count(*) FROM pat WHERE (hash_key IS NULL) != (born IS NULL)"), 0)
      << "a block with a hash key and no birth day, or the reverse";
  EXPECT_EQ(static_cast<int64_t>(ht.entries), QueryInt(db, "SELECT count(hash_key) FROM pat"))
      << "the hash entry counter differs from the PAT";
  EXPECT_EQ(static_cast<int64_t>(ht.unindexed), QueryInt(db, "SELECT count(*) - count(hash_key) FROM pat"))
      << "the unindexed block counter differs from the PAT";
  EXPECT_EQ(static_cast<int64_t>(ht.entries),
            QueryInt(db, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'hash_entries'"));
  EXPECT_EQ(static_cast<int64_t>(ht.unindexed),
            QueryInt(db, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'hash_unindexed'"));
  EXPECT_EQ(Join(QueryRows(db, "SELECT pblock FROM block_hash WHERE pblock NOT IN (SELECT pblock FROM pat)")), "")
      << "block_hash rows of no stored block";
  EXPECT_EQ(Join(QueryRows(db,
                           "SELECT f.file_id || ' mapped=' || f.mapped_blocks || ' lat=' || "
                           "(SELECT count(*) FROM lat l WHERE l.file_id = f.file_id) FROM swap_file f "
                           "WHERE f.mapped_blocks != (SELECT count(*) FROM lat l WHERE l.file_id = f.file_id)")),
            "")
      << "swap_file.mapped_blocks differs from the LAT";
  EXPECT_EQ(Join(QueryRows(db,
                           "SELECT l.file_id || ':' || l.lba FROM lat l JOIN swap_file f ON "
                           "f.file_id = l.file_id JOIN pat p ON p.pblock = l.pblock "
                           "WHERE p.dedup_id != f.dedup_id")),
            "")
      << "LAT entries sharing a block across chains";
  StoreUsage u = cat.Usage();
  const int64_t packed = QueryInt(db, "SELECT count(*) FROM pat WHERE pblock < 0");
  if (packed == 0) {  // raw blocks only: one slot each
    EXPECT_EQ(static_cast<int64_t>(u.used_slots), QueryInt(db, "SELECT count(*) FROM pat"));
    EXPECT_EQ(u.free_slots, FreeSlots(cat).size());
  } else {  // packed blocks: their sectors, in pack pages
    EXPECT_EQ(static_cast<int64_t>(u.packed_sectors),
              QueryInt(db, "SELECT coalesce(sum(sectors), 0) FROM block_extent WHERE pblock < 0"));
    EXPECT_EQ(u.pack_pages * 8, u.packed_sectors + u.free_sectors) << "sectors of pack pages leaked";
  }
  int64_t max_pat = QueryInt(db, "SELECT coalesce(max(pblock), -1) FROM pat");
  // Every slot below the high-water mark is either used or free: none leaked.
  EXPECT_EQ(u.used_slots + u.free_slots, u.high_water) << "slots leaked or double-counted";
  EXPECT_GT(static_cast<int64_t>(u.high_water), max_pat);
  if (!check_hashes) return;
  // The stored blocks, read under the hold; their bytes are checked after it
  // (HasherFor takes the writer mutex).
  struct StoredBlock {
    int64_t pblock = 0, dedup_id = 0;
    std::optional<int64_t> key;
    std::vector<uint8_t> whole_hash;
  };
  std::vector<StoredBlock> blocks;
  {
    auto q = sql::Stmt::Prepare(db,
                                "SELECT p.pblock, p.dedup_id, p.hash_key, h.hash FROM pat p "
                                "LEFT JOIN block_hash h ON h.pblock = p.pblock ORDER BY p.pblock");
    ASSERT_TRUE(q.ok());
    for (;;) {
      auto r = q->Step();
      ASSERT_TRUE(r.ok());
      if (!*r) break;
      StoredBlock b;
      b.pblock = q->Int(0);
      b.dedup_id = q->Int(1);
      if (!q->IsNull(2)) b.key = q->Int(2);
      if (!q->IsNull(3)) {
        auto whole = q->Blob(3);
        b.whole_hash.assign(whole.begin(), whole.end());
      }
      blocks.push_back(std::move(b));
    }
  }
  hold.reset();
  for (const StoredBlock& b : blocks) {
    auto hasher = cat.HasherFor(b.dedup_id);
    ASSERT_TRUE(hasher.ok()) << hasher.status().ToString();
    Block blk;
    CS_ASSERT_OK(ReadStoredBlock(store, b.pblock, blk.data()));
    EXPECT_FALSE(IsZeroBlock(blk.data())) << "stored block " << b.pblock << " is all zero";
    if (!b.key) continue;  // an unindexed block: no hash kept
    BlockHash h = (*hasher)->Hash(blk.data());
    EXPECT_EQ(*b.key, HashKey(h)) << "hash key of block " << b.pblock << " does not match its content";
    if (!b.whole_hash.empty()) {
      ASSERT_EQ(b.whole_hash.size(), h.bytes.size());
      EXPECT_TRUE(std::equal(b.whole_hash.begin(), b.whole_hash.end(), h.bytes.begin()))
          << "block_hash of block " << b.pblock << " does not match its content";
    }
  }
}

// Resets the collision hook on scope exit, whatever the test does.
class ForcedCollisions {
 public:
  ForcedCollisions() { BlockHasher::ForceCollisionsForTesting(true); }
  ~ForcedCollisions() { BlockHasher::ForceCollisionsForTesting(false); }
  ForcedCollisions(const ForcedCollisions&) = delete;
  ForcedCollisions& operator=(const ForcedCollisions&) = delete;
};

// A formatted and opened backing directory in a temp dir.
class BackingFixture : public ::testing::Test {
 protected:
  void SetUp() override { OpenBacking(CatalogOptions{}); }
  void TearDown() override {
    BlockHasher::ForceCollisionsForTesting(false);
    backing_.reset();
    tmp_.reset();
  }

  // (Re)formats a fresh backing directory and opens it with `opts`.
  void OpenBacking(const CatalogOptions& opts) {
    backing_.reset();
    tmp_ = std::make_unique<TempDir>();
    root_ = tmp_->Sub("backing");
    Status st = BackingDir::Format(root_);
    ASSERT_TRUE(st.ok()) << st.ToString();
    Reopen(opts);
  }

  // Closes and reopens the same backing directory.
  void Reopen(const CatalogOptions& opts) {
    backing_.reset();
    auto b = BackingDir::Open(root_, LockMode::kExclusive, opts);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    backing_ = std::move(*b);
  }

  Catalog& cat() { return backing_->catalog(); }
  ContentStore& store() { return backing_->store(); }
  sql::Db& db() { return cat().db_for_tools(); }

  int64_t NewChain(const std::string& name) {
    auto c = cat().CreateChain(name, 0755, 0, 0, 1000);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? c->dedup_id : -1;
  }
  int64_t NewFile(int64_t dedup_id, const std::string& name) {
    auto f = cat().CreateFile(dedup_id, name, 0600, 0, 0, 1000);
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    return f.ok() ? f->file_id : -1;
  }

  Result<ApplyResult> Apply(std::vector<BlockOp> ops) { return cat().ApplyBlockOps(ops); }

  Block ReadBlock(int64_t file_id, uint64_t lba) {
    Block b;
    std::memset(b.b, 0xAA, sizeof b.b);  // make sure holes are really filled with zeros
    Status st = cat().ReadBlocks(file_id, lba, 1, b.data());
    EXPECT_TRUE(st.ok()) << st.ToString();
    return b;
  }

  // The pblock the LAT maps (file, lba) to, or -1 for a hole.
  int64_t PblockOf(int64_t file_id, uint64_t lba) {
    return QueryInt(db(), "SELECT coalesce((SELECT pblock FROM lat WHERE file_id = " +
                              std::to_string(file_id) + " AND lba = " + std::to_string(lba) +
                              "), -1)");
  }
  int64_t RefcountOf(int64_t pblock) {
    return QueryInt(db(), "SELECT coalesce((SELECT refcount FROM pat WHERE pblock = " +
                              std::to_string(pblock) + "), 0)");
  }

  std::unique_ptr<TempDir> tmp_;
  std::string root_;
  std::unique_ptr<BackingDir> backing_;
};

// Sectors of 512 B that issue 14's rule gives a block, computed from LZ4
// with an unbounded output buffer (independently of BlockCompressor): its
// LZ4_compress_default size plus the 6-byte header rounded up to 512, or 8
// sectors above 3584 bytes.
inline uint32_t Lz4Sectors(const uint8_t* block) {
  std::vector<char> out(static_cast<size_t>(LZ4_compressBound(kBlockSize)));
  const int n = LZ4_compress_default(reinterpret_cast<const char*>(block), out.data(), kBlockSize,
                                     static_cast<int>(out.size()));
  if (n <= 0 || n + 6 > 3584) return 8;
  return static_cast<uint32_t>((n + 6 + 511) / 512);
}

}  // namespace chainswap::test
