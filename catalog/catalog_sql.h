// Every SQL statement the catalog runs, in one place: the connection set-up,
// the one-shot statements of the namespace, journal and statistics calls
// (named constants, prepared per call), and the prepared-statement sets of
// the writer connection (the apply routine's hot path) and of a reader
// connection. The schema's DDL and its upgrades are in schema.cc; the
// BEGIN IMMEDIATE / COMMIT of sql::Transaction are the wrapper's own.
//
// Parameters are numbered (?1, ?2, ...) as the binders of sql::Stmt are;
// each constant lists its parameters -> result columns. Tables and views:
// docs/FORMAT.md and schema.cc.
//
// Thread-safety: the constants are immutable. A statement set belongs to
// the owner of its connection, which serializes its use (sqlite.h).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "catalog/sqlite.h"
#include "catalog/status.h"

namespace chainswap::catalog_sql {

// ---- Connection set-up -------------------------------------------------

// A new catalog database, before the schema is created. 1 KiB pages: a
// destage commit touches PAT rows (refcounts) scattered over the table, and
// every page it touches is a WAL frame, so smaller pages cut the catalog's
// device writes (docs/FORMAT.md); existing catalogs keep their page size.
inline constexpr std::string_view kCreatePragmas = "PRAGMA page_size=1024; PRAGMA journal_mode=WAL";
// A read-write open. No auto-checkpoint: a checkpoint syncs the WAL, and a
// commit must not become durable before the store bytes it references
// (Catalog::SyncLocked); the WAL file is cut back to `journal_size_limit`
// bytes when it starts over.
inline std::string ReadWritePragmas(uint64_t journal_size_limit) {
  return "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; "
         "PRAGMA journal_size_limit=" + std::to_string(journal_size_limit) + ";";
}
// Every open, read-write or not, and every reader connection: a page
// cache of `cache_bytes` (anonymous memory), up to `mmap_bytes` of the
// database file memory-mapped (file-backed).
inline std::string OpenPragmas(uint64_t cache_bytes, uint64_t mmap_bytes) {
  return "PRAGMA cache_size=-" + std::to_string(std::max<uint64_t>(cache_bytes >> 10, 64)) +
         "; PRAGMA mmap_size=" + std::to_string(mmap_bytes) +
         "; PRAGMA temp_store=MEMORY; PRAGMA foreign_keys=ON;";
}
// One read snapshot on a reader connection (deferred: never takes a lock
// that blocks the writer).
inline constexpr std::string_view kBeginRead = "BEGIN";
inline constexpr std::string_view kEndRead = "COMMIT";

// ---- Start-up ----------------------------------------------------------

// -> pblock of every raw PAT entry, ascending (its slot)
inline constexpr std::string_view kPatRawBlocks = "SELECT pblock FROM pat WHERE pblock >= 0 ORDER BY pblock";
// -> pblock of every packed PAT entry by ascending sector (stored_block.h)
inline constexpr std::string_view kPatPackedBlocks = "SELECT pblock FROM pat WHERE pblock < 0 ORDER BY pblock DESC";
// -> the compression of new blocks chosen at format time ('lz4', 'off'; no row: off)
inline constexpr std::string_view kMetaCompress = "SELECT value FROM meta WHERE key = 'compress'";
// -> first slot above every PAT entry
inline constexpr std::string_view kPatEnd =
    "SELECT coalesce((SELECT max(pblock) + 1 FROM pat WHERE pblock >= 0), 0), (SELECT min(pblock) FROM pat WHERE pblock < 0)";
// -> seq, hash_key, pblock, op of every change not merged into hash_index
inline constexpr std::string_view kHashLogRows = "SELECT seq, hash_key, pblock, op FROM hash_log ORDER BY seq";

// ---- Namespace: chains -------------------------------------------------

// -> dedup_id, name, mode, uid, gid, mtime_ns, ctime_ns (removed chains left out)
inline constexpr std::string_view kListChains =
    "SELECT dedup_id, name, mode, uid, gid, mtime_ns, ctime_ns FROM chain WHERE name IS NOT NULL "
    "ORDER BY dedup_id";
// name, hash_seed, mode, uid, gid, now_ns (mtime and ctime)
inline constexpr std::string_view kInsertChain =
    "INSERT INTO chain(name, hash_seed, mode, uid, gid, mtime_ns, ctime_ns) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)";
// dedup_id, name, mode, uid, gid, mtime_ns, ctime_ns
inline constexpr std::string_view kUpdateChain =
    "UPDATE chain SET name = ?2, mode = ?3, uid = ?4, gid = ?5, mtime_ns = ?6, ctime_ns = ?7 "
    "WHERE dedup_id = ?1";
// dedup_id -> swap files, linked swap files
inline constexpr std::string_view kCountChainFiles =
    "SELECT count(*), count(name) FROM swap_file WHERE dedup_id = ?1";
// dedup_id
inline constexpr std::string_view kDeleteChain = "DELETE FROM chain WHERE dedup_id = ?1";
// dedup_id: the chain directory is gone, the row stays while files are reclaimed
inline constexpr std::string_view kUnnameChain = "UPDATE chain SET name = NULL WHERE dedup_id = ?1";
// dedup_id: a removed chain's row, once no file of it is left
inline constexpr std::string_view kDeleteRemovedChainIfEmpty =
    "DELETE FROM chain WHERE dedup_id = ?1 AND name IS NULL AND NOT EXISTS "
    "(SELECT 1 FROM swap_file WHERE dedup_id = ?1)";
// dedup_id -> hash_seed
inline constexpr std::string_view kChainSeed = "SELECT hash_seed FROM chain WHERE dedup_id = ?1";

// ---- Namespace: swap files ---------------------------------------------

// -> file_id, dedup_id, name (NULL: unlinked), size, mapped_blocks, mode,
//    uid, gid, atime_ns, mtime_ns, ctime_ns
inline constexpr std::string_view kListFiles =
    "SELECT file_id, dedup_id, name, size, mapped_blocks, mode, uid, gid, "
    "atime_ns, mtime_ns, ctime_ns FROM swap_file ORDER BY file_id";
// dedup_id, name, mode, uid, gid, now_ns (atime, mtime and ctime)
inline constexpr std::string_view kInsertFile =
    "INSERT INTO swap_file(dedup_id, name, size, mapped_blocks, mode, uid, gid, atime_ns, "
    "mtime_ns, ctime_ns) VALUES (?1, ?2, 0, 0, ?3, ?4, ?5, ?6, ?6, ?6)";
// file_id, name (NULL: unlinked), size, mode, uid, gid, atime_ns, mtime_ns, ctime_ns
inline constexpr std::string_view kUpdateFile =
    "UPDATE swap_file SET name = ?2, size = ?3, mode = ?4, uid = ?5, "
    "gid = ?6, atime_ns = ?7, mtime_ns = ?8, ctime_ns = ?9 WHERE file_id = ?1";
// file_id
inline constexpr std::string_view kUnlinkFile = "UPDATE swap_file SET name = NULL WHERE file_id = ?1";
// file_id, name
inline constexpr std::string_view kRenameFile = "UPDATE swap_file SET name = ?2 WHERE file_id = ?1";
// file_id -> dedup_id
inline constexpr std::string_view kFileChain = "SELECT dedup_id FROM swap_file WHERE file_id = ?1";
// file_id: only while its LAT has no entries
inline constexpr std::string_view kDeleteFileIfEmpty =
    "DELETE FROM swap_file WHERE file_id = ?1 AND NOT EXISTS (SELECT 1 FROM lat WHERE file_id = ?1)";

// ---- Journal -----------------------------------------------------------

// -> value
inline constexpr std::string_view kJournalRetiredThrough =
    "SELECT value FROM meta WHERE key = 'journal_retired_through'";
// value
inline constexpr std::string_view kSetJournalRetiredThrough =
    "INSERT INTO meta(key, value) VALUES ('journal_retired_through', ?1) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value";

// ---- Blocks ------------------------------------------------------------

// file_id, lba -> pblock
inline constexpr std::string_view kLatGet = "SELECT pblock FROM lat WHERE file_id = ?1 AND lba = ?2";
// file_id, lba, pblock (insert or replace the mapping)
inline constexpr std::string_view kLatPut =
    "INSERT INTO lat(file_id, lba, pblock) VALUES (?1, ?2, ?3) "
    "ON CONFLICT(file_id, lba) DO UPDATE SET pblock = excluded.pblock";
// file_id, first lba, end lba -> pblock of every row deleted
inline constexpr std::string_view kLatDeleteRange =
    "DELETE FROM lat WHERE file_id = ?1 AND lba >= ?2 AND lba < ?3 RETURNING pblock";
// file_id, first lba, end lba -> lba, pblock (ascending lba)
inline constexpr std::string_view kLatRange =
    "SELECT lba, pblock FROM lat WHERE file_id = ?1 AND lba >= ?2 AND lba < ?3 ORDER BY lba";
// file_id, first lba, end lba -> LAT entries in the range
inline constexpr std::string_view kLatCount =
    "SELECT count(*) FROM lat WHERE file_id = ?1 AND lba >= ?2 AND lba < ?3";
// file_id, lba -> lowest mapped lba >= lba (NULL: none)
inline constexpr std::string_view kLatNext = "SELECT min(lba) FROM lat WHERE file_id = ?1 AND lba >= ?2";
// dst file_id, lba delta, src file_id, src first lba, src end lba: copies
// the source range's LAT entries to the destination
inline constexpr std::string_view kLatCopyRange =
    "INSERT INTO lat(file_id, lba, pblock) SELECT ?1, lba + ?2, pblock FROM lat "
    "WHERE file_id = ?3 AND lba >= ?4 AND lba < ?5";
// hash_key -> pblock (candidates of the merged part of the chain hash index)
inline constexpr std::string_view kHashIndexFind = "SELECT pblock FROM hash_index WHERE hash_key = ?1";
// pblock -> dedup_id, refcount, hash_key
inline constexpr std::string_view kPatGet = "SELECT dedup_id, refcount, hash_key FROM pat WHERE pblock = ?1";
// pblock, dedup_id, hash_key, born (refcount 1; hash_key and born NULL:
// an unindexed block)
inline constexpr std::string_view kPatInsert =
    "INSERT INTO pat(pblock, dedup_id, refcount, hash_key, born) VALUES (?1, ?2, 1, ?3, ?4)";
// pblock, n: refcount += n
inline constexpr std::string_view kPatAddRef = "UPDATE pat SET refcount = refcount + ?2 WHERE pblock = ?1";
// src file_id, first lba, end lba: every block the range maps gains one
// reference per LAT entry
inline constexpr std::string_view kPatAddRefsOfRange =
    "UPDATE pat SET refcount = refcount + x.n FROM "
    "(SELECT pblock, count(*) AS n FROM lat WHERE file_id = ?1 AND lba >= ?2 "
    "AND lba < ?3 GROUP BY pblock) AS x WHERE pat.pblock = x.pblock";
// pblock
inline constexpr std::string_view kPatDelete = "DELETE FROM pat WHERE pblock = ?1";
// seq, hash_key, pblock, op (1 add, 0 remove): a change to the hash index
inline constexpr std::string_view kHashLogAppend =
    "INSERT INTO hash_log(seq, hash_key, pblock, op) VALUES (?1, ?2, ?3, ?4)";
// seq: the merged generation's changes, every row below seq
inline constexpr std::string_view kHashLogTruncate = "DELETE FROM hash_log WHERE seq < ?1";
// hash_key, pblock: a merged add
inline constexpr std::string_view kHashIndexAdd =
    "INSERT OR IGNORE INTO hash_index(hash_key, pblock) VALUES (?1, ?2)";
// hash_key, pblock: a merged remove
inline constexpr std::string_view kHashIndexRemove = "DELETE FROM hash_index WHERE hash_key = ?1 AND pblock = ?2";
// pblock, hash (16 bytes)
inline constexpr std::string_view kBlockHashInsert = "INSERT OR REPLACE INTO block_hash(pblock, hash) VALUES (?1, ?2)";
// pblock -> hash
inline constexpr std::string_view kBlockHashGet = "SELECT hash FROM block_hash WHERE pblock = ?1";
// pblock
inline constexpr std::string_view kBlockHashDelete = "DELETE FROM block_hash WHERE pblock = ?1";
// The hash table's counters (meta hash_entries: the PAT rows with a hash
// key; hash_unindexed: those without), computed from the PAT: a new
// catalog, the upgrade to version 3, fsck's repair.
inline constexpr std::string_view kInitHashCounters =
    "INSERT OR REPLACE INTO meta(key, value) VALUES "
    "('hash_entries', (SELECT count(hash_key) FROM pat)), "
    "('hash_unindexed', (SELECT count(*) - count(hash_key) FROM pat))";
// -> indexed blocks with refcount 1 (what prune may drop)
inline constexpr std::string_view kUniqueHashEntries =
    "SELECT count(*) FROM pat WHERE refcount = 1 AND hash_key IS NOT NULL";
// hash_entries, hash_unindexed: the hash table's counters (meta), written
// by the transaction that changed them
inline constexpr std::string_view kSetHashCounters =
    "INSERT INTO meta(key, value) VALUES ('hash_entries', ?1), ('hash_unindexed', ?2) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value";
// -> hash_entries, hash_unindexed, hash_table_limit (NULL when the meta row
//    is missing: a catalog of an older version, or no quota ever set)
inline constexpr std::string_view kHashCounters =
    "SELECT (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'hash_entries'), "
    "(SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'hash_unindexed'), "
    "(SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'hash_table_limit')";
// hash_table_limit: the quota of this (read-write) open, 0 for none
inline constexpr std::string_view kSetHashTableLimit =
    "INSERT INTO meta(key, value) VALUES ('hash_table_limit', ?1) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value";
// born: the last birth day to take -> pblock, hash_key of the indexed
//    blocks with refcount 1 born on or before it, oldest first (prune)
inline constexpr std::string_view kPruneCandidates =
    "SELECT pblock, hash_key FROM pat WHERE refcount = 1 AND hash_key IS NOT NULL AND born <= ?1 "
    "ORDER BY born, pblock";
// pblock: drops the block's hash key and birth day (prune) if it still has
// refcount 1 and a key (one change)
inline constexpr std::string_view kPatUnindex =
    "UPDATE pat SET hash_key = NULL, born = NULL WHERE pblock = ?1 AND refcount = 1 AND hash_key IS NOT NULL";
// file_id, delta: mapped_blocks += delta (never below 0)
inline constexpr std::string_view kFileAddMapped =
    "UPDATE swap_file SET mapped_blocks = max(mapped_blocks + ?2, 0) WHERE file_id = ?1";
// file_id -> mapped_blocks
inline constexpr std::string_view kFileMapped = "SELECT mapped_blocks FROM swap_file WHERE file_id = ?1";
// file_id, size, mtime_ns, ctime_ns
inline constexpr std::string_view kFileSetMeta =
    "UPDATE swap_file SET size = ?2, mtime_ns = ?3, ctime_ns = ?4 WHERE file_id = ?1";

// ---- Compaction of packed blocks (catalog_apply.cc) ----------------------

// lowest pblock, highest pblock -> pblock, hash_key of the packed blocks in
// that range (a range of first sectors: stored_block.h)
inline constexpr std::string_view kPatPackedRange =
    "SELECT pblock, hash_key FROM pat WHERE pblock BETWEEN ?1 AND ?2";
// old pblock, new pblock: the row moves (same chain, refcount, key, birth)
inline constexpr std::string_view kPatMove =
    "INSERT INTO pat(pblock, dedup_id, refcount, hash_key, born) "
    "SELECT ?2, dedup_id, refcount, hash_key, born FROM pat WHERE pblock = ?1";
// old pblock, new pblock
inline constexpr std::string_view kBlockHashMove = "UPDATE block_hash SET pblock = ?2 WHERE pblock = ?1";
// The moves of one compaction transaction, on the writer connection only.
inline constexpr std::string_view kCreateRemap =
    "CREATE TEMP TABLE IF NOT EXISTS cs_remap(old INTEGER PRIMARY KEY, new INTEGER NOT NULL)";
inline constexpr std::string_view kRemapInsert = "INSERT INTO temp.cs_remap(old, new) VALUES (?1, ?2)";
inline constexpr std::string_view kRemapClear = "DELETE FROM temp.cs_remap";
// Every LAT row of a moved block points at its new pblock: one pass over
// the LAT (it has no index by pblock), whatever the number of moves.
inline constexpr std::string_view kLatRemap =
    "UPDATE lat SET pblock = (SELECT new FROM temp.cs_remap WHERE old = lat.pblock) "
    "WHERE pblock IN (SELECT old FROM temp.cs_remap)";

// ---- Statistics --------------------------------------------------------

// The bytes a PAT row's block occupies in the store (as the views count
// them, schema.cc): written out here so that the statistics also work on a
// catalog of an older version opened read-only (whose views lack it).
#define CS_SQL_STORED_BYTES(p) "(CASE WHEN " p ".pblock >= 0 THEN 4096 ELSE ((-1 - " p ".pblock) % 8 + 1) * 512 END)"
// -> dedup_id, chain, files, logical_bytes, nonzero_bytes, zero_blocks,
//    stored_bytes, blocks, compressed_blocks
inline constexpr std::string_view kChainStats =
    "SELECT s.dedup_id, s.chain, s.files, s.logical_bytes, s.nonzero_bytes, s.zero_blocks, "
    "coalesce((SELECT sum(" CS_SQL_STORED_BYTES("p") ") FROM pat p WHERE p.dedup_id = s.dedup_id), 0), "
    "(SELECT count(*) FROM pat p WHERE p.dedup_id = s.dedup_id), "
    "(SELECT count(*) FROM pat p WHERE p.dedup_id = s.dedup_id AND p.pblock < 0 AND (-1 - p.pblock) % 8 < 7) "
    "FROM chain_stats s ORDER BY s.dedup_id";
// -> file_id, dedup_id, chain, file, logical_bytes, nonzero_bytes, zero_blocks, stored_bytes,
//    uncompressed_bytes
inline constexpr std::string_view kFileStats =
    "SELECT s.file_id, s.dedup_id, s.chain, s.file, s.logical_bytes, s.nonzero_bytes, s.zero_blocks, "
    "CAST(coalesce((SELECT sum(" CS_SQL_STORED_BYTES("p") " * 1.0 / p.refcount) FROM lat l JOIN pat p "
    "ON p.pblock = l.pblock WHERE l.file_id = s.file_id), 0) AS INTEGER), "
    "CAST(coalesce((SELECT sum(4096.0 / p.refcount) FROM lat l JOIN pat p ON p.pblock = l.pblock "
    "WHERE l.file_id = s.file_id), 0) AS INTEGER) "
    "FROM file_stats s ORDER BY s.chain, s.file";
#undef CS_SQL_STORED_BYTES

// ---- RADOS mode (rados_backend.h, catalog_rados.cc) --------------------

// -> key, value of the store settings (store, rados_*)
inline constexpr std::string_view kMetaRados =
    "SELECT key, value FROM meta WHERE key = 'store' OR key LIKE 'rados\\_%' ESCAPE '\\'";
// key, value
inline constexpr std::string_view kMetaPut = "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)";
// -> the next holder number (meta rados_next_holder)
inline constexpr std::string_view kRadosNextHolder =
    "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'rados_next_holder'";
// next holder
inline constexpr std::string_view kSetRadosNextHolder =
    "INSERT OR REPLACE INTO meta(key, value) VALUES ('rados_next_holder', ?1)";
// dedup_id -> rados_id
inline constexpr std::string_view kChainRadosId = "SELECT rados_id FROM chain WHERE dedup_id = ?1";
// name, hash_seed, mode, uid, gid, now_ns, rados_id
inline constexpr std::string_view kInsertRadosChain =
    "INSERT INTO chain(name, hash_seed, mode, uid, gid, mtime_ns, ctime_ns, rados_id) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)";
// name -> 1 when a chain directory of that name exists
inline constexpr std::string_view kChainNamed = "SELECT 1 FROM chain WHERE name = ?1";
// holder, object
inline constexpr std::string_view kRadosIntentInsert = "INSERT INTO rados_intent(holder, object) VALUES (?1, ?2)";
// holder
inline constexpr std::string_view kRadosIntentDelete = "DELETE FROM rados_intent WHERE holder = ?1";
// -> holder, object of every intent
inline constexpr std::string_view kRadosIntents = "SELECT holder, object FROM rados_intent ORDER BY holder";
// holder, object
inline constexpr std::string_view kRadosUnrefInsert = "INSERT OR REPLACE INTO rados_unref(holder, object) VALUES (?1, ?2)";
// Rows of rados_intent / rados_unref whose holder is a live block's: a
// damaged catalog (a holder is never reused); deleted without a put, which
// would drop the live block's reference.
inline constexpr std::string_view kDeleteLiveHolderIntents =
    "DELETE FROM rados_intent WHERE holder IN (SELECT pblock FROM pat)";
inline constexpr std::string_view kDeleteLiveHolderUnrefs =
    "DELETE FROM rados_unref WHERE holder IN (SELECT pblock FROM pat)";
// -> rows of rados_intent, of rados_unref
inline constexpr std::string_view kCountRadosIntents = "SELECT count(*) FROM rados_intent";
inline constexpr std::string_view kCountRadosUnrefs = "SELECT count(*) FROM rados_unref";
// holder
inline constexpr std::string_view kRadosUnrefDelete = "DELETE FROM rados_unref WHERE holder = ?1";
// limit -> holder, object of the references to drop, oldest first
inline constexpr std::string_view kRadosUnrefs = "SELECT holder, object FROM rados_unref ORDER BY holder LIMIT ?1";
// pblock, hash, private
inline constexpr std::string_view kRadosBlockInsert = "INSERT INTO rados_block(pblock, hash, private) VALUES (?1, ?2, ?3)";
// pblock -> hash, private
inline constexpr std::string_view kRadosBlockGet = "SELECT hash, private FROM rados_block WHERE pblock = ?1";
// pblock
inline constexpr std::string_view kRadosBlockDelete = "DELETE FROM rados_block WHERE pblock = ?1";
// file_id, first lba, end lba -> lba, pblock, hash, private, the chain's rados_id
// (hash NULL: the block has no rados_block row, a damaged catalog)
inline constexpr std::string_view kLatRangeRados =
    "SELECT l.lba, l.pblock, r.hash, r.private, c.rados_id FROM lat l "
    "LEFT JOIN rados_block r ON r.pblock = l.pblock JOIN swap_file f ON f.file_id = l.file_id "
    "JOIN chain c ON c.dedup_id = f.dedup_id "
    "WHERE l.file_id = ?1 AND l.lba >= ?2 AND l.lba < ?3 ORDER BY l.lba";

// file_id -> lba, hash, private of each LAT entry, by lba (RADOS mode)
inline constexpr std::string_view kExportFileBlocks =
    "SELECT l.lba, r.hash, r.private FROM lat l JOIN rados_block r ON r.pblock = l.pblock "
    "WHERE l.file_id = ?1 ORDER BY l.lba";
// -> dedup_id, rados_id of every chain that has one
inline constexpr std::string_view kChainRadosIds =
    "SELECT dedup_id, rados_id FROM chain WHERE rados_id IS NOT NULL ORDER BY dedup_id";
// dedup_id -> name, rados_id
inline constexpr std::string_view kChainNameAndRadosId = "SELECT name, rados_id FROM chain WHERE dedup_id = ?1";

// ---- Prepared-statement sets -------------------------------------------

// The writer connection's statements, prepared once at open: the apply
// routine runs them for every block. Each is named after its constant.
struct WriterStatements {
  // Reads of tables every schema version has (a read-only open of an older
  // catalog prepares only these).
  sql::Stmt lat_range;   // kLatRange
  sql::Stmt lat_next;    // kLatNext
  sql::Stmt file_mapped; // kFileMapped
  // The apply routine (read-write opens).
  sql::Stmt lat_get;             // kLatGet
  sql::Stmt lat_put;             // kLatPut
  sql::Stmt lat_delete_range;    // kLatDeleteRange
  sql::Stmt hash_index_find;     // kHashIndexFind
  sql::Stmt pat_get;             // kPatGet
  sql::Stmt pat_insert;          // kPatInsert
  sql::Stmt pat_add_ref;         // kPatAddRef
  sql::Stmt pat_delete;          // kPatDelete
  sql::Stmt hash_log_append;     // kHashLogAppend
  sql::Stmt hash_log_truncate;   // kHashLogTruncate
  sql::Stmt hash_index_add;      // kHashIndexAdd
  sql::Stmt hash_index_remove;   // kHashIndexRemove
  sql::Stmt block_hash_insert;   // kBlockHashInsert
  sql::Stmt block_hash_get;      // kBlockHashGet
  sql::Stmt block_hash_delete;   // kBlockHashDelete
  sql::Stmt file_add_mapped;     // kFileAddMapped
  sql::Stmt file_set_meta;       // kFileSetMeta
  sql::Stmt set_hash_counters;   // kSetHashCounters
  sql::Stmt set_journal_retired_through;  // kSetJournalRetiredThrough
  // RADOS mode (prepared on every read-write open; their tables exist
  // from schema version 5 on).
  sql::Stmt rados_intent_insert;  // kRadosIntentInsert
  sql::Stmt rados_intent_delete;  // kRadosIntentDelete
  sql::Stmt rados_unref_insert;   // kRadosUnrefInsert
  sql::Stmt rados_block_insert;   // kRadosBlockInsert
  sql::Stmt rados_block_get;      // kRadosBlockGet
  sql::Stmt rados_block_delete;   // kRadosBlockDelete
  sql::Stmt set_rados_next_holder;  // kSetRadosNextHolder

  // Prepares them on `db` (only the first group when `reads_only`); the
  // set must be destroyed before `db`.
  static Result<std::unique_ptr<WriterStatements>> Prepare(const sql::Db& db, bool reads_only);
};

// A reader connection's statements (ReaderPool).
struct ReaderStatements {
  sql::Stmt lat_range;    // kLatRange
  sql::Stmt file_mapped;  // kFileMapped
  sql::Stmt lat_count;    // kLatCount
  sql::Stmt lat_range_rados;  // kLatRangeRados

  // Prepares them all on `db`; the set must be destroyed before `db`.
  static Result<std::unique_ptr<ReaderStatements>> Prepare(const sql::Db& db);
};

}  // namespace chainswap::catalog_sql
