#include "catalog/schema.h"

#include <spdlog/spdlog.h>

#include <cstring>
#include <string>
#include <string_view>

#include "catalog/block.h"
#include "catalog/catalog.h"
#include "catalog/catalog_sql.h"

namespace chainswap {

namespace {

// Comments here are the reference for docs/FORMAT.md.
// Tables unchanged since version 1.
constexpr const char* kTables = R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

-- One row per swap file. name is NULL once the file is unlinked and its
-- blocks are being reclaimed. mapped_blocks counts its LAT entries.
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

-- Logical addressing table: (file, LBA) -> physical block. No row = hole.
CREATE TABLE lat (
  file_id  INTEGER NOT NULL,
  lba      INTEGER NOT NULL,
  pblock   INTEGER NOT NULL,
  PRIMARY KEY (file_id, lba)
) WITHOUT ROWID;
)sql";

// The block tables, version 3 (versions 1 and 2: pat with the whole
// 16-byte hash and chain_hash_index on it, and a free_slot table).
constexpr const char* kBlockTables = R"sql(
-- Physical addressing table: physical block (= content-store slot) ->
-- owning chain, reference count (number of LAT rows), hash key, birth day.
-- The hash key is the first 48 bits of the block's keyed hash (its 16-byte
-- canonical form), as a signed integer; NULL for an *unindexed* block, one
-- with no entry in the chain hash index (stored while the hash table was at
-- its quota, or pruned): it is valid, only never deduplicated against.
-- born is the day (since 1970-01-01 UTC) the block was stored, NULL for an
-- unindexed block: prune drops entries oldest first. A content-store slot
-- below the highest pblock that has no row here is free.
CREATE TABLE pat (
  pblock    INTEGER PRIMARY KEY,
  dedup_id  INTEGER NOT NULL,
  refcount  INTEGER NOT NULL CHECK (refcount > 0),
  hash_key  INTEGER,
  born      INTEGER
);

-- The chain hash index: hash key -> physical block, for every PAT row
-- with a hash key.
-- Not unique: keys of different chains, and of different contents, may be
-- equal; a lookup checks each candidate's PAT row (chain, key) and then
-- its bytes (verify-on-match). It is the merge of two tables: hash_index,
-- the bulk of it, and hash_log, the changes not merged into it yet.
CREATE TABLE hash_index (
  hash_key  INTEGER NOT NULL,
  pblock    INTEGER NOT NULL,
  PRIMARY KEY (hash_key, pblock)
) WITHOUT ROWID;

-- Changes to the chain hash index in the order they were made (seq):
-- op 1 adds (hash_key, pblock), op 0 removes it. Appended in the
-- transaction that stores or frees the block, merged into hash_index in
-- sorted batches (the last change of a pair wins), then deleted.
CREATE TABLE hash_log (
  seq       INTEGER PRIMARY KEY,
  hash_key  INTEGER NOT NULL,
  pblock    INTEGER NOT NULL,
  op        INTEGER NOT NULL CHECK (op IN (0, 1))
);

-- The whole 16-byte keyed hash of blocks stored while dedup_verify was
-- off: a hash-key match is trusted without reading the stored bytes only
-- when the whole hash is known and equal.
CREATE TABLE block_hash (
  pblock  INTEGER PRIMARY KEY,
  hash    BLOB NOT NULL
);
)sql";

// The chain table, version 2 (version 1: name TEXT NOT NULL UNIQUE).
constexpr const char* kChainTable = R"sql(
-- One row per chain (the dedup domain). hash_seed keys the chain's block hash.
-- name is NULL once the chain directory is removed (rmdir) while swap files
-- of it are still being reclaimed (unlinked, maybe still open): the row and
-- its seed outlive every file, journal record and block of the chain, and
-- go with the row of its last file (Catalog::DropFile). rados_id (version
-- 5): in RADOS mode, the chain's cluster-wide ID (32 hex digits, from the
-- pool's chain.NAME object, whose seed is then hash_seed); NULL otherwise.
CREATE TABLE chain (
  dedup_id   INTEGER PRIMARY KEY AUTOINCREMENT,
  name       TEXT UNIQUE,
  hash_seed  BLOB NOT NULL,
  mode       INTEGER NOT NULL,
  uid        INTEGER NOT NULL,
  gid        INTEGER NOT NULL,
  mtime_ns   INTEGER NOT NULL,
  ctime_ns   INTEGER NOT NULL,
  rados_id   TEXT
);
)sql";

// The RADOS tables, version 5 (docs/RADOS.md): empty in a catalog whose
// content store is the local file (meta store absent or 'local').
constexpr const char* kRadosTables = R"sql(
-- RADOS mode: one row per PAT row, naming the block's object in the pool:
-- blk.<chain.rados_id>.<hash as 32 hex digits>, or, for a block whose
-- shared name holds other bytes (a hash collision), the private name
-- blk.<rados_id>.<hash>.<meta rados_host>.<pblock> (private = 1). The
-- block's one reference in the pool is held by ref.<rados_host>.<pblock>.
CREATE TABLE rados_block (
  pblock   INTEGER PRIMARY KEY,
  hash     BLOB NOT NULL,
  private  INTEGER NOT NULL DEFAULT 0
);

-- References being taken: written (and committed) before the
-- create-or-reference calls of a destage batch, deleted by the transaction
-- that applies the batch. Rows left by a crash are dropped at the next
-- mount (a put by their holder: done whether or not it held a reference).
CREATE TABLE rados_intent (
  holder  INTEGER PRIMARY KEY,
  object  TEXT NOT NULL
);

-- References to drop: written by the transaction that frees a block (or
-- gives up a planned reference), deleted once the put is acknowledged.
CREATE TABLE rados_unref (
  holder  INTEGER PRIMARY KEY,
  object  TEXT NOT NULL
);
)sql";

// The views, version 4 (removed chains are not shown since version 2;
// chain_hash.hash is the 48-bit hash key since version 3, the 16-byte hash
// before; block_extent and the compression columns since version 4).
// A block's stored bytes: 4096 for a raw block (pblock >= 0), its sectors
// * 512 for a packed one (pblock = -1 - (first_sector * 8 + sectors - 1)).
constexpr const char* kViews = R"sql(
CREATE VIEW chain_hash AS SELECT dedup_id, hash_key AS hash, pblock FROM pat WHERE hash_key IS NOT NULL;
CREATE VIEW block_extent AS
SELECT pblock, dedup_id, refcount,
       CASE WHEN pblock >= 0 THEN pblock * 8 ELSE (-1 - pblock) / 8 END AS first_sector,
       CASE WHEN pblock >= 0 THEN 8 ELSE (-1 - pblock) % 8 + 1 END   AS sectors,
       CASE WHEN pblock < 0 AND (-1 - pblock) % 8 < 7 THEN 1 ELSE 0 END AS compressed
FROM pat;
CREATE VIEW file_stats AS
SELECT f.file_id                                   AS file_id,
       c.dedup_id                                  AS dedup_id,
       c.name                                      AS chain,
       f.name                                      AS file,
       f.size                                      AS logical_bytes,
       f.mapped_blocks * 4096                      AS nonzero_bytes,
       max((f.size + 4095) / 4096 - f.mapped_blocks, 0) AS zero_blocks,
       CAST(coalesce((SELECT sum(b.sectors * 512.0 / b.refcount) FROM lat l JOIN block_extent b ON b.pblock = l.pblock
                      WHERE l.file_id = f.file_id), 0) AS INTEGER) AS stored_bytes,
       CAST(coalesce((SELECT sum(4096.0 / p.refcount) FROM lat l JOIN pat p ON p.pblock = l.pblock
                      WHERE l.file_id = f.file_id), 0) AS INTEGER) AS uncompressed_bytes
FROM swap_file f JOIN chain c ON c.dedup_id = f.dedup_id
WHERE f.name IS NOT NULL AND c.name IS NOT NULL;

CREATE VIEW chain_stats AS
SELECT c.dedup_id                                                    AS dedup_id,
       c.name                                                        AS chain,
       (SELECT count(*) FROM swap_file f WHERE f.dedup_id = c.dedup_id AND f.name IS NOT NULL) AS files,
       coalesce((SELECT sum(size) FROM swap_file f WHERE f.dedup_id = c.dedup_id AND f.name IS NOT NULL), 0) AS logical_bytes,
       coalesce((SELECT sum(mapped_blocks) FROM swap_file f WHERE f.dedup_id = c.dedup_id), 0) * 4096 AS nonzero_bytes,
       coalesce((SELECT sum(max((size + 4095) / 4096 - mapped_blocks, 0)) FROM swap_file f
                 WHERE f.dedup_id = c.dedup_id AND f.name IS NOT NULL), 0)   AS zero_blocks,
       coalesce((SELECT sum(sectors) FROM block_extent b WHERE b.dedup_id = c.dedup_id), 0) * 512 AS stored_bytes,
       coalesce((SELECT sum(mapped_blocks) FROM swap_file f WHERE f.dedup_id = c.dedup_id), 0) * 4096
         - coalesce((SELECT sum(sectors) FROM block_extent b WHERE b.dedup_id = c.dedup_id), 0) * 512 AS saved_bytes,
       CASE WHEN (SELECT count(*) FROM pat p WHERE p.dedup_id = c.dedup_id) = 0 THEN NULL
            ELSE round(coalesce((SELECT sum(mapped_blocks) FROM swap_file f WHERE f.dedup_id = c.dedup_id), 0) * 1.0
                       / (SELECT count(*) FROM pat p WHERE p.dedup_id = c.dedup_id), 3) END AS dedup_ratio,
       (SELECT count(*) FROM pat p WHERE p.dedup_id = c.dedup_id)    AS blocks,
       (SELECT count(*) FROM block_extent b WHERE b.dedup_id = c.dedup_id AND b.compressed) AS compressed_blocks,
       coalesce((SELECT sum(sectors) FROM block_extent b WHERE b.dedup_id = c.dedup_id), 0) AS stored_sectors,
       CASE WHEN (SELECT count(*) FROM pat p WHERE p.dedup_id = c.dedup_id) = 0 THEN NULL
            ELSE round((SELECT count(*) * 8.0 FROM pat p WHERE p.dedup_id = c.dedup_id)
                       / (SELECT sum(sectors) FROM block_extent b WHERE b.dedup_id = c.dedup_id), 3) END AS compress_ratio
FROM chain c
WHERE c.name IS NOT NULL;
)sql";

constexpr const char* kDropViews = "DROP VIEW IF EXISTS chain_hash; DROP VIEW IF EXISTS file_stats; "
                                   "DROP VIEW IF EXISTS chain_stats; DROP VIEW IF EXISTS block_extent;";

// Version 1 -> 2: the chain name becomes nullable (a removed chain keeps its
// row while its files are reclaimed). SQLite cannot change a column
// constraint in place: the table is rebuilt (sqlite.org/lang_altertable.html,
// "making other kinds of table schema changes"). REQUIRES: inside a
// transaction, foreign keys off.
Status UpgradeV1ToV2(sql::Db& db) {
  std::string create_new = kChainTable;
  const std::string from = "CREATE TABLE chain (";
  create_new.replace(create_new.find(from), from.size(), "CREATE TABLE chain_v2 (");
  CS_RETURN_IF_ERROR(db.Exec(kDropViews));
  CS_RETURN_IF_ERROR(db.Exec(create_new));
  CS_RETURN_IF_ERROR(db.Exec("INSERT INTO chain_v2(dedup_id, name, hash_seed, mode, uid, gid, mtime_ns, ctime_ns) "
                             "SELECT dedup_id, name, hash_seed, mode, uid, gid, mtime_ns, ctime_ns FROM chain"));
  // swap_file's foreign key names "chain": it points at the new table once
  // that takes the name (foreign keys are off, so the drop checks nothing).
  CS_RETURN_IF_ERROR(db.Exec("DROP TABLE chain"));
  CS_RETURN_IF_ERROR(db.Exec("ALTER TABLE chain_v2 RENAME TO chain"));
  return Status::Ok();  // the views are recreated by the last step
}

// SQL function chainswap_hash_key(hash BLOB) -> the hash key (HashKey()) of
// a 16-byte hash; an error for any other value.
void HashKeySqlFunction(sqlite3_context* ctx, int, sqlite3_value** argv) {
  if (sqlite3_value_type(argv[0]) != SQLITE_BLOB || sqlite3_value_bytes(argv[0]) != sizeof(BlockHash::bytes)) {
    sqlite3_result_error(ctx, "pat.hash is not a 16-byte hash", -1);
    return;
  }
  BlockHash h;
  std::memcpy(h.bytes.data(), sqlite3_value_blob(argv[0]), h.bytes.size());
  sqlite3_result_int64(ctx, HashKey(h));
}

// Version 2 -> 3: the PAT keeps a 48-bit hash key instead of the 16-byte
// hash; the chain hash index becomes hash_index (+ hash_log), built sorted
// from the PAT; the free list is no longer a table (free slots are the
// gaps in the PAT); block_hash starts empty (blocks stored before the
// upgrade are verified by their bytes even with dedup_verify off).
// REQUIRES: inside a transaction, foreign keys off.
Status UpgradeV2ToV3(sql::Db& db) {
  CS_RETURN_IF_ERROR(db.Exec(kDropViews));
  const int rc = sqlite3_create_function_v2(db.get(), "chainswap_hash_key", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
                                            nullptr, HashKeySqlFunction, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return sql::FromSqlite(rc, db.get(), "register chainswap_hash_key");
  std::string tables = kBlockTables;
  const std::string from = "CREATE TABLE pat (";
  tables.replace(tables.find(from), from.size(), "CREATE TABLE pat_v3 (");
  CS_RETURN_IF_ERROR(db.Exec(tables));
  // Every block is indexed, born the day of the upgrade (its age is not known).
  CS_RETURN_IF_ERROR(db.Exec("INSERT INTO pat_v3(pblock, dedup_id, refcount, hash_key, born) "
                             "SELECT pblock, dedup_id, refcount, chainswap_hash_key(hash), " +
                             std::to_string(DayNumberNow()) + " FROM pat"));
  CS_RETURN_IF_ERROR(db.Exec("DROP INDEX chain_hash_index; DROP TABLE pat; DROP TABLE free_slot; "
                             "ALTER TABLE pat_v3 RENAME TO pat"));
  // Sorted: the index's B-tree is built by appends, its pages full.
  CS_RETURN_IF_ERROR(db.Exec("INSERT INTO hash_index(hash_key, pblock) SELECT hash_key, pblock FROM pat "
                             "ORDER BY hash_key, pblock"));
  sqlite3_create_function_v2(db.get(), "chainswap_hash_key", 1, SQLITE_UTF8, nullptr, nullptr, nullptr, nullptr,
                             nullptr);
  return db.Exec(std::string(catalog_sql::kInitHashCounters));
}

}  // namespace

Status CreateSchema(sql::Db& db, bool compress) {
  sql::Transaction txn(db);
  CS_RETURN_IF_ERROR(txn.Begin());
  CS_RETURN_IF_ERROR(db.Exec(kTables));
  CS_RETURN_IF_ERROR(db.Exec(kBlockTables));
  CS_RETURN_IF_ERROR(db.Exec(kChainTable));
  CS_RETURN_IF_ERROR(db.Exec(kRadosTables));
  CS_RETURN_IF_ERROR(db.Exec(kViews));
  CS_RETURN_IF_ERROR(db.Exec(std::string(catalog_sql::kInitHashCounters)));
  CS_RETURN_IF_ERROR(db.Exec(std::string("INSERT INTO meta(key, value) VALUES ('format', '") +
                             kFormatMagic + "')"));
  CS_RETURN_IF_ERROR(db.Exec(std::string("INSERT INTO meta(key, value) VALUES ('compress', '") +
                             (compress ? "lz4" : "off") + "')"));
  CS_RETURN_IF_ERROR(db.Exec("PRAGMA user_version = " + std::to_string(kSchemaVersion)));
  return txn.Commit();
}

namespace {

// The schema version of a chainswap catalog; EUCLEAN for anything else.
// Its statements are finalized on return (an open one would keep the
// upgrade's DROP TABLE from running).
Result<int64_t> SchemaVersion(sql::Db& db) {
  auto magic = sql::Stmt::Prepare(db, "SELECT value FROM meta WHERE key = 'format'");
  if (!magic.ok()) {
    return Status::Error(EUCLEAN, "not a chainswap catalog (" + magic.status().message() + ")");
  }
  auto row = magic->Step();
  if (!row.ok()) return row.status();
  if (!*row || magic->Text(0) != kFormatMagic) {
    return Status::Error(EUCLEAN, "not a chainswap catalog (meta.format missing)");
  }
  auto ver = sql::Stmt::Prepare(db, "PRAGMA user_version");
  if (!ver.ok()) return ver.status();
  auto vrow = ver->Step();
  if (!vrow.ok()) return vrow.status();
  return ver->Int(0);
}

}  // namespace

Result<int> CheckAndUpgradeSchema(sql::Db& db, bool read_only) {
  auto version = SchemaVersion(db);
  if (!version.ok()) return version.status();
  const int64_t v = *version;
  if (v > kSchemaVersion) {
    return Status::Error(EPROTO, "catalog schema version " + std::to_string(v) +
                                     " is newer than this chainswap supports (" +
                                     std::to_string(kSchemaVersion) + "); upgrade chainswap");
  }
  if (v < 1) return Status::Error(EUCLEAN, "catalog schema version " + std::to_string(v) + " is invalid");
  if (v == kSchemaVersion) return kSchemaVersion;
  // Read-only opens (stats, a read-only mount) leave an older version as it
  // is and read what has not changed (catalog.h); a read-write open
  // upgrades it, step by step, in one transaction.
  if (read_only) return static_cast<int>(v);
  CS_RETURN_IF_ERROR(db.Exec("PRAGMA foreign_keys=OFF"));  // no effect inside a transaction
  Status st = [&]() -> Status {
    sql::Transaction txn(db);
    CS_RETURN_IF_ERROR(txn.Begin());
    if (v < 2) CS_RETURN_IF_ERROR(UpgradeV1ToV2(db));
    if (v < 3) CS_RETURN_IF_ERROR(UpgradeV2ToV3(db));
    // Version 3 -> 4: packed blocks (negative pblocks) and the views that
    // count their sectors; no table changes.
    if (v < 4) CS_RETURN_IF_ERROR(db.Exec(kDropViews));
    // Version 4 -> 5: the RADOS tables and chain.rados_id (a local catalog
    // keeps them empty).
    if (v < 5) {
      CS_RETURN_IF_ERROR(db.Exec(kRadosTables));
      // (A version-1 chain table was rebuilt with the column by step 1 -> 2.)
      if (v >= 2) CS_RETURN_IF_ERROR(db.Exec("ALTER TABLE chain ADD COLUMN rados_id TEXT"));
    }
    CS_RETURN_IF_ERROR(db.Exec(kViews));
    auto fk = sql::Stmt::Prepare(db, "PRAGMA foreign_key_check");
    if (!fk.ok()) return fk.status();
    auto bad = fk->Step();
    if (!bad.ok()) return bad.status();
    if (*bad) return Status::Error(EUCLEAN, "catalog upgrade: foreign key check failed in table " + fk->Text(0));
    CS_RETURN_IF_ERROR(db.Exec("PRAGMA user_version = " + std::to_string(kSchemaVersion)));
    return txn.Commit();
  }();
  Status on = db.Exec("PRAGMA foreign_keys=ON");
  if (!st.ok()) return Status::Error(st.code(), "catalog upgrade from schema version " + std::to_string(v) +
                                                    " to " + std::to_string(kSchemaVersion) + ": " + st.message());
  spdlog::info("catalog upgraded from schema version {} to {}", v, kSchemaVersion);
  if (!on.ok()) return on;
  return kSchemaVersion;
}

}  // namespace chainswap
