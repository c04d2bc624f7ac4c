// Catalog schema versions. Version-1 and version-2 catalogs are built by
// hand here, with the DDL those versions created (verbatim, as released),
// and rows a daemon of that version would have written; a read-write open
// upgrades them to the current version in one transaction, keeping every
// row: the tests check every row, the hash lookups (writing a block the
// old catalog holds deduplicates against it) and the refcounts. A
// read-only open leaves an older catalog as it is and still reads it; fsck
// refuses it with a clear message; a failing upgrade changes nothing.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "catalog/schema.h"
#include "tests/unit/test_util.h"
#include "tools/fsck.h"

namespace chainswap {
namespace {

using test::Block;
using test::Join;
using test::PatternBlock;
using test::QueryInt;
using test::QueryRows;
using test::WriteOp;

// The tables of versions 1 and 2 (version 1: chain.name NOT NULL UNIQUE).
constexpr const char* kV2Tables = R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE swap_file (
  file_id        INTEGER PRIMARY KEY AUTOINCREMENT,
  dedup_id       INTEGER NOT NULL REFERENCES chain(dedup_id),
  name           TEXT,
  size           INTEGER NOT NULL DEFAULT 0,
  mapped_blocks  INTEGER NOT NULL DEFAULT 0,
  mode           INTEGER NOT NULL,
  uid            INTEGER NOT NULL,
  gid            INTEGER NOT NULL,
  atime_ns       INTEGER NOT NULL,
  mtime_ns       INTEGER NOT NULL,
  ctime_ns       INTEGER NOT NULL
);
CREATE UNIQUE INDEX swap_file_name ON swap_file(dedup_id, name);
CREATE TABLE lat (
  file_id  INTEGER NOT NULL,
  lba      INTEGER NOT NULL,
  pblock   INTEGER NOT NULL,
  PRIMARY KEY (file_id, lba)
) WITHOUT ROWID;
CREATE TABLE pat (
  pblock    INTEGER PRIMARY KEY,
  dedup_id  INTEGER NOT NULL,
  hash      BLOB NOT NULL,
  refcount  INTEGER NOT NULL CHECK (refcount > 0)
);
CREATE INDEX chain_hash_index ON pat(dedup_id, hash);
CREATE TABLE free_slot (
  slot INTEGER PRIMARY KEY
);
)sql";
constexpr const char* kV2Chain = R"sql(
CREATE TABLE chain (
  dedup_id   INTEGER PRIMARY KEY AUTOINCREMENT,
  name       TEXT UNIQUE,
  hash_seed  BLOB NOT NULL,
  mode       INTEGER NOT NULL,
  uid        INTEGER NOT NULL,
  gid        INTEGER NOT NULL,
  mtime_ns   INTEGER NOT NULL,
  ctime_ns   INTEGER NOT NULL
);
)sql";
constexpr const char* kV1Chain = R"sql(
CREATE TABLE chain (
  dedup_id   INTEGER PRIMARY KEY AUTOINCREMENT,
  name       TEXT NOT NULL UNIQUE,
  hash_seed  BLOB NOT NULL,
  mode       INTEGER NOT NULL,
  uid        INTEGER NOT NULL,
  gid        INTEGER NOT NULL,
  mtime_ns   INTEGER NOT NULL,
  ctime_ns   INTEGER NOT NULL
);
)sql";
constexpr const char* kV2Views = R"sql(
CREATE VIEW chain_hash AS SELECT dedup_id, hash, pblock FROM pat;
CREATE VIEW file_stats AS
SELECT f.file_id AS file_id, c.dedup_id AS dedup_id, c.name AS chain, f.name AS file, f.size AS logical_bytes,
       f.mapped_blocks * 4096 AS nonzero_bytes, max((f.size + 4095) / 4096 - f.mapped_blocks, 0) AS zero_blocks,
       CAST(coalesce((SELECT sum(4096.0 / p.refcount) FROM lat l JOIN pat p ON p.pblock = l.pblock
                      WHERE l.file_id = f.file_id), 0) AS INTEGER) AS stored_bytes
FROM swap_file f JOIN chain c ON c.dedup_id = f.dedup_id
WHERE f.name IS NOT NULL AND c.name IS NOT NULL;
CREATE VIEW chain_stats AS
SELECT c.dedup_id AS dedup_id, c.name AS chain,
       (SELECT count(*) FROM swap_file f WHERE f.dedup_id = c.dedup_id AND f.name IS NOT NULL) AS files,
       coalesce((SELECT sum(size) FROM swap_file f WHERE f.dedup_id = c.dedup_id AND f.name IS NOT NULL), 0) AS logical_bytes,
       coalesce((SELECT sum(mapped_blocks) FROM swap_file f WHERE f.dedup_id = c.dedup_id), 0) * 4096 AS nonzero_bytes,
       coalesce((SELECT sum(max((size + 4095) / 4096 - mapped_blocks, 0)) FROM swap_file f
                 WHERE f.dedup_id = c.dedup_id AND f.name IS NOT NULL), 0) AS zero_blocks,
       (SELECT count(*) FROM pat p WHERE p.dedup_id = c.dedup_id) * 4096 AS stored_bytes,
       coalesce((SELECT sum(mapped_blocks) FROM swap_file f WHERE f.dedup_id = c.dedup_id), 0) * 4096
         - (SELECT count(*) FROM pat p WHERE p.dedup_id = c.dedup_id) * 4096 AS saved_bytes,
       CASE WHEN (SELECT count(*) FROM pat p WHERE p.dedup_id = c.dedup_id) = 0 THEN NULL
            ELSE round(coalesce((SELECT sum(mapped_blocks) FROM swap_file f WHERE f.dedup_id = c.dedup_id), 0) * 1.0
                       / (SELECT count(*) FROM pat p WHERE p.dedup_id = c.dedup_id), 3) END AS dedup_ratio
FROM chain c
WHERE c.name IS NOT NULL;
)sql";

// What the hand-built catalog holds.
struct OldCatalog {
  HashSeed seed_a{}, seed_b{};
  // Chain a (dedup 1): file 1 "vm.swap" maps LBA 0..5 onto pblocks 0, 1, 3,
  // 3, 4, 5 (block 3 shared twice); file 2 "clone" maps LBA 0 onto pblock 0
  // (refcount 2). Chain b (dedup 2): file 3 maps LBA 7 onto pblock 6, whose
  // content equals pblock 0's (another chain: stored again). Slots 2 and 9
  // are on the free list (9 above every PAT entry).
  std::vector<Block> blocks;  // by pblock (empty for free slots)
};

class SchemaTest : public test::BackingFixture {
 protected:
  // Replaces the formatted catalog with a hand-built one of `version` (1 or
  // 2) and fills the store with the blocks it references.
  OldCatalog BuildOld(int version) {
    backing_.reset();
    const std::string path = root_ + "/catalog.db";
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
    ::close(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600));
    OldCatalog old;
    auto db = sql::Db::Open(path, SQLITE_OPEN_READWRITE);
    EXPECT_TRUE(db.ok());
    if (!db.ok()) return old;
    auto exec = [&](const std::string& q) {
      Status st = db->Exec(q);
      EXPECT_TRUE(st.ok()) << q << " -> " << st.ToString();
    };
    exec("PRAGMA journal_mode=WAL");
    exec(std::string("BEGIN;") + kV2Tables + (version == 1 ? kV1Chain : kV2Chain) + kV2Views + "COMMIT;");
    exec("INSERT INTO meta(key, value) VALUES ('format', 'chainswap-catalog'), ('journal_retired_through', '41')");
    for (size_t i = 0; i < kSeedSize; ++i) {
      old.seed_a[i] = static_cast<uint8_t>(i + 1);
      old.seed_b[i] = static_cast<uint8_t>(200 - i);
    }
    auto insert_chain = [&](const char* name, const HashSeed& seed) {
      auto q = sql::Stmt::Prepare(*db,
                                  "INSERT INTO chain(name, hash_seed, mode, uid, gid, mtime_ns, ctime_ns) "
                                  "VALUES (?1, ?2, 493, 10, 20, 1000, 2000)");
      ASSERT_TRUE(q.ok());
      q->Bind(1, std::string_view(name)).BindBlob(2, seed);
      CS_ASSERT_OK(q->Run());
    };
    insert_chain("a", old.seed_a);
    insert_chain("b", old.seed_b);
    exec("INSERT INTO swap_file(dedup_id, name, size, mapped_blocks, mode, uid, gid, atime_ns, mtime_ns, ctime_ns) "
         "VALUES (1, 'vm.swap', 40960, 6, 384, 10, 20, 1, 2, 3), (1, 'clone', 4096, 1, 384, 10, 20, 4, 5, 6), "
         "(2, 'other', 65536, 1, 384, 0, 0, 7, 8, 9)");
    // Blocks by pblock; 6 has the content of 0.
    old.blocks.resize(7);
    for (int p : {0, 1, 3, 4, 5}) old.blocks[p] = PatternBlock(500 + p);
    old.blocks[6] = old.blocks[0];
    const BlockHasher ha(old.seed_a), hb(old.seed_b);
    auto insert_pat = [&](int64_t pblock, int64_t dedup, int64_t refcount) {
      const BlockHash h = (dedup == 1 ? ha : hb).Hash(old.blocks[pblock].data());
      auto q = sql::Stmt::Prepare(*db, "INSERT INTO pat(pblock, dedup_id, hash, refcount) VALUES (?1, ?2, ?3, ?4)");
      ASSERT_TRUE(q.ok());
      q->Bind(1, pblock).Bind(2, dedup).BindBlob(3, h.bytes).Bind(4, refcount);
      CS_ASSERT_OK(q->Run());
    };
    insert_pat(0, 1, 2);
    insert_pat(1, 1, 1);
    insert_pat(3, 1, 2);
    insert_pat(4, 1, 1);
    insert_pat(5, 1, 1);
    insert_pat(6, 2, 1);
    exec("INSERT INTO lat(file_id, lba, pblock) VALUES (1, 0, 0), (1, 1, 1), (1, 2, 3), (1, 3, 3), (1, 4, 4), "
         "(1, 5, 5), (2, 0, 0), (3, 7, 6)");
    exec("INSERT INTO free_slot(slot) VALUES (2), (9)");
    exec("PRAGMA user_version = " + std::to_string(version));
    exec("PRAGMA wal_checkpoint(TRUNCATE)");
    for (size_t p = 0; p < old.blocks.size(); ++p) {
      if (p == 2) continue;
      CS_EXPECT_OK(WriteStore(p, old.blocks[p]));
    }
    return old;
  }

  Status WriteStore(uint64_t slot, const Block& b) {
    auto s = ContentStore::Open(root_ + "/store.dat");
    if (!s.ok()) return s.status();
    return (*s)->WriteSlots(slot, 1, b.data());
  }

  // Every row a version-1/2 catalog built by BuildOld holds, in version-3
  // terms, and what the upgrade derives from them.
  void ExpectUpgraded(const OldCatalog& old) {
    sql::Db& d = db();
    EXPECT_EQ(QueryInt(d, "PRAGMA user_version"), kSchemaVersion);
    EXPECT_EQ(QueryInt(d, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
    EXPECT_EQ(QueryInt(d, "SELECT \"notnull\" FROM pragma_table_info('chain') WHERE name = 'name'"), 0);
    EXPECT_EQ(Join(QueryRows(d, "SELECT value FROM meta WHERE key = 'journal_retired_through'")), "41\n");
    EXPECT_EQ(Join(QueryRows(d, "SELECT dedup_id || ' ' || name || ' ' || hex(hash_seed) || ' ' || mode || ' ' || "
                                "uid || ' ' || gid || ' ' || mtime_ns || ' ' || ctime_ns FROM chain ORDER BY dedup_id")),
              "1 a " + Hex(old.seed_a) + " 493 10 20 1000 2000\n2 b " + Hex(old.seed_b) + " 493 10 20 1000 2000\n");
    EXPECT_EQ(Join(QueryRows(d, "SELECT file_id || ' ' || dedup_id || ' ' || name || ' ' || size || ' ' || "
                                "mapped_blocks || ' ' || mode || ' ' || uid || ' ' || gid || ' ' || atime_ns || ' ' || "
                                "mtime_ns || ' ' || ctime_ns FROM swap_file ORDER BY file_id")),
              "1 1 vm.swap 40960 6 384 10 20 1 2 3\n2 1 clone 4096 1 384 10 20 4 5 6\n"
              "3 2 other 65536 1 384 0 0 7 8 9\n");
    EXPECT_EQ(Join(QueryRows(d, "SELECT file_id || ' ' || lba || ' ' || pblock FROM lat ORDER BY file_id, lba")),
              "1 0 0\n1 1 1\n1 2 3\n1 3 3\n1 4 4\n1 5 5\n2 0 0\n3 7 6\n");
    // PAT: every row, its hash key derived from the old 16-byte hash.
    const BlockHasher ha(old.seed_a), hb(old.seed_b);
    std::string want_pat, want_index;
    std::vector<std::pair<int64_t, int64_t>> index;
    for (auto [p, dedup, rc] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {0, 1, 2}, {1, 1, 1}, {3, 1, 2}, {4, 1, 1}, {5, 1, 1}, {6, 2, 1}}) {
      const int64_t key = HashKey((dedup == 1 ? ha : hb).Hash(old.blocks[p].data()));
      want_pat += std::to_string(p) + " " + std::to_string(dedup) + " " + std::to_string(rc) + " " +
                  std::to_string(key) + "\n";
      index.emplace_back(key, p);
    }
    EXPECT_EQ(Join(QueryRows(d, "SELECT pblock || ' ' || dedup_id || ' ' || refcount || ' ' || hash_key FROM pat "
                                "ORDER BY pblock")),
              want_pat);
    std::sort(index.begin(), index.end());
    for (auto [k, p] : index) want_index += std::to_string(k) + " " + std::to_string(p) + "\n";
    EXPECT_EQ(Join(QueryRows(d, "SELECT hash_key || ' ' || pblock FROM hash_index ORDER BY hash_key, pblock")),
              want_index)
        << "the index has every PAT row, under its key";
    EXPECT_EQ(QueryInt(d, "SELECT count(*) FROM hash_log"), 0);
    EXPECT_EQ(QueryInt(d, "SELECT count(*) FROM block_hash"), 0);
    // Every block indexed, born the day of the upgrade; the counters from the PAT.
    EXPECT_EQ(QueryInt(d, "SELECT count(*) FROM pat WHERE born = " + std::to_string(DayNumberNow())), 6);
    EXPECT_EQ(QueryInt(d, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'hash_entries'"), 6);
    EXPECT_EQ(QueryInt(d, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'hash_unindexed'"), 0);
    EXPECT_EQ(QueryInt(d, "SELECT count(*) FROM sqlite_master WHERE name IN ('free_slot', 'chain_hash_index')"), 0);
    // The views, with the same columns.
    EXPECT_EQ(Join(QueryRows(d, "SELECT chain || ' ' || files || ' ' || stored_bytes || ' ' || dedup_ratio "
                                "FROM chain_stats ORDER BY dedup_id")),
              "a 2 20480 1.4\nb 1 4096 1.0\n");
    EXPECT_EQ(Join(QueryRows(d, "SELECT file || ' ' || nonzero_bytes || ' ' || stored_bytes FROM file_stats "
                                "ORDER BY file_id")),
              "vm.swap 24576 18432\nclone 4096 2048\nother 4096 4096\n");
    EXPECT_EQ(QueryInt(d, "SELECT count(*) FROM chain_hash WHERE dedup_id = 1"), 5);
    for (auto [k, p] : index) {
      EXPECT_EQ(QueryInt(d, "SELECT hash FROM chain_hash WHERE pblock = " + std::to_string(p)), k);
    }
    // The free list: slot 2 (a gap); slot 9 was above every block, the store is cut back.
    StoreUsage u = cat().Usage();
    EXPECT_EQ(u.used_slots, 6u);
    EXPECT_EQ(u.free_slots, 1u);
    EXPECT_EQ(u.high_water, 7u);
    test::ExpectCatalogInvariants(cat(), store());
    // Reads.
    for (int lba = 0; lba < 6; ++lba) {
      const int p = lba == 2 || lba == 3 ? 3 : lba;
      EXPECT_TRUE(ReadBlock(1, lba) == old.blocks[p]) << "lba " << lba;
    }
    EXPECT_TRUE(ReadBlock(3, 7) == old.blocks[6]);

    // Lookups: the old blocks are found by content (verify-on-match reads
    // them), within their chain only; a new block takes the free slot.
    auto r = Apply({WriteOp(2, 1, 1, old.blocks[4]), WriteOp(2, 1, 2, old.blocks[3]), WriteOp(3, 2, 8, old.blocks[6]),
                    WriteOp(3, 2, 9, old.blocks[1])});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->blocks_deduped, 3u);
    EXPECT_EQ(r->blocks_stored, 1u) << "chain b has no copy of block 1's content";
    EXPECT_EQ(r->collisions, 0u);
    EXPECT_EQ(PblockOf(2, 1), 4);
    EXPECT_EQ(PblockOf(2, 2), 3);
    EXPECT_EQ(PblockOf(3, 8), 6);
    EXPECT_EQ(RefcountOf(4), 2);
    EXPECT_EQ(RefcountOf(3), 3);
    EXPECT_EQ(RefcountOf(6), 2);
    EXPECT_EQ(RefcountOf(0), 2);
    EXPECT_EQ(PblockOf(3, 9), 2) << "the new block takes the free slot";
    test::ExpectCatalogInvariants(cat(), store());
    // Freeing an old block takes it out of the index too.
    ASSERT_TRUE(Apply({test::DeleteOp(1, 1, 0, 6), test::DeleteOp(2, 1, 0, 3)}).ok());
    EXPECT_EQ(RefcountOf(0), 0);
    EXPECT_EQ(RefcountOf(3), 0);
    test::ExpectCatalogInvariants(cat(), store());
  }

  static std::string Hex(const HashSeed& s) {
    static const char* d = "0123456789ABCDEF";
    std::string out;
    for (uint8_t b : s) {
      out += d[b >> 4];
      out += d[b & 15];
    }
    return out;
  }
};

TEST_F(SchemaTest, Version2IsUpgradedKeepingEveryRow) {
  const OldCatalog old = BuildOld(2);
  Reopen(CatalogOptions{});
  ASSERT_NO_FATAL_FAILURE(ExpectUpgraded(old));
}

TEST_F(SchemaTest, Version1IsUpgradedThroughVersion2) {
  const OldCatalog old = BuildOld(1);
  Reopen(CatalogOptions{});
  ASSERT_NO_FATAL_FAILURE(ExpectUpgraded(old));
  // Version 2's point: a chain whose files are all unlinked loses its name
  // and keeps its row.
  const int64_t c = NewChain("c");
  CS_ASSERT_OK(cat().RenameFile(NewFile(c, "x"), "y", NewFile(c, "y")));
  auto files = cat().ListFiles();
  ASSERT_TRUE(files.ok());
  for (FileInfo f : *files) {
    if (f.dedup_id != c || f.unlinked) continue;
    f.unlinked = true;
    CS_ASSERT_OK(cat().UpdateFile(f));
  }
  auto removed = cat().RemoveChain(c);
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_FALSE(*removed);
  EXPECT_EQ(QueryInt(db(), "SELECT count(*) FROM chain WHERE name IS NULL"), 1);
}

TEST_F(SchemaTest, UpgradedCatalogSurvivesReopenAndFsck) {
  const OldCatalog old = BuildOld(2);
  Reopen(CatalogOptions{});
  ASSERT_NO_FATAL_FAILURE(ExpectUpgraded(old));
  CS_ASSERT_OK(cat().Sync(/*idle=*/true));
  Reopen(CatalogOptions{});
  test::ExpectCatalogInvariants(cat(), store());
  FsckOptions fo;
  auto rep = RunFsck(*backing_, fo);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  std::string issues;
  for (const auto& i : rep->issues) issues += i.kind + ": " + i.detail + "\n";
  EXPECT_TRUE(rep->clean()) << issues;
}

TEST_F(SchemaTest, ReadOnlyOpenReadsVersion2AsItIsAndFsckRefusesIt) {
  const OldCatalog old = BuildOld(2);
  CatalogOptions ro;
  ro.read_only = true;
  {
    auto b = BackingDir::Open(root_, LockMode::kNone, ro);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    Catalog& c = (*b)->catalog();
    auto chains = c.ListChains();
    ASSERT_TRUE(chains.ok()) << chains.status().ToString();
    EXPECT_EQ(chains->size(), 2u);
    auto stats = c.Stats();
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    ASSERT_EQ(stats->size(), 2u);
    EXPECT_EQ((*stats)[0].stored_bytes, 5u * kBlockSize);
    auto files = c.PerFileStats();
    ASSERT_TRUE(files.ok()) << files.status().ToString();
    EXPECT_EQ(c.Usage().used_slots, 6u);
    Block got;
    CS_ASSERT_OK(c.ReadBlocks(1, 2, 1, got.data()));
    EXPECT_TRUE(got == old.blocks[3]);
    auto next = c.NextMapped(3, 0);
    ASSERT_TRUE(next.ok());
    EXPECT_EQ(next->value_or(0), 7u);
    auto w = c.ApplyBlockOps(std::vector<BlockOp>{WriteOp(1, 1, 9, old.blocks[1])});
    EXPECT_EQ(w.status().code(), EROFS);
    FsckOptions fo;
    fo.verify_hashes = false;
    auto rep = RunFsck(**b, fo);
    ASSERT_FALSE(rep.ok());
    EXPECT_EQ(rep.status().code(), EPROTO);
    EXPECT_NE(rep.status().message().find("older"), std::string::npos) << rep.status().ToString();
    EXPECT_NE(rep.status().message().find("--repair"), std::string::npos) << rep.status().ToString();
  }
  {
    auto raw = sql::Db::Open(root_ + "/catalog.db", SQLITE_OPEN_READONLY);
    ASSERT_TRUE(raw.ok());
    EXPECT_EQ(QueryInt(*raw, "PRAGMA user_version"), 2) << "a read-only open upgraded the catalog";
    EXPECT_EQ(QueryInt(*raw, "SELECT count(*) FROM free_slot"), 2);
  }
  Reopen(CatalogOptions{});  // and a mount upgrades it
  ASSERT_NO_FATAL_FAILURE(ExpectUpgraded(old));
}

// A catalog the upgrade cannot convert (a hash that is not 16 bytes): the
// open fails naming both versions, and the catalog is left as it was.
TEST_F(SchemaTest, FailedUpgradeChangesNothing) {
  BuildOld(2);
  {
    auto raw = sql::Db::Open(root_ + "/catalog.db", SQLITE_OPEN_READWRITE);
    ASSERT_TRUE(raw.ok());
    CS_ASSERT_OK(raw->Exec("UPDATE pat SET hash = x'0102' WHERE pblock = 4"));
  }
  backing_.reset();
  auto b = BackingDir::Open(root_, LockMode::kExclusive, CatalogOptions{});
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("from schema version 2 to " + std::to_string(kSchemaVersion)),
            std::string::npos)
      << b.status().ToString();
  auto raw = sql::Db::Open(root_ + "/catalog.db", SQLITE_OPEN_READONLY);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(QueryInt(*raw, "PRAGMA user_version"), 2);
  EXPECT_EQ(QueryInt(*raw, "SELECT count(*) FROM pat"), 6);
  EXPECT_EQ(QueryInt(*raw, "SELECT count(*) FROM free_slot"), 2);
  EXPECT_EQ(QueryInt(*raw, "SELECT count(*) FROM sqlite_master WHERE name IN ('hash_index', 'hash_log', 'pat_v3')"),
            0);
  EXPECT_EQ(QueryInt(*raw, "SELECT count(*) FROM chain_hash"), 6) << "the old views are back";
}

}  // namespace
}  // namespace chainswap
