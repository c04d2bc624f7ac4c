// The catalog's SQL schema (SPEC §2, docs/FORMAT.md), in one place.
//
// Version history (PRAGMA user_version):
//   1: chain, swap_file, lat, pat (+ chain_hash_index), free_slot, meta;
//      views chain_hash, file_stats, chain_stats.
//   2: chain.name nullable (NULL: the chain directory was removed while its
//      files are still reclaimed); the views leave removed chains out.
//   3: pat keeps a 48-bit hash key (pat.hash_key) instead of the 16-byte
//      hash; the chain hash index is hash_index (WITHOUT ROWID, keyed by
//      (hash_key, pblock)) plus hash_log, its changes not merged yet;
//      block_hash keeps whole hashes of blocks stored without
//      verify-on-match; free_slot is gone (a slot is free when the PAT has
//      no row for it); chain_hash.hash is the hash key. A block may have
//      no hash entry (pat.hash_key NULL: stored at the hash table's quota,
//      or pruned); pat.born is the day an indexed block was stored; meta
//      keeps the counts hash_entries and hash_unindexed, and the quota
//      hash_table_limit of the last mount.
//   4: packed blocks: a negative pblock names 1..8 sectors of the content
//      store (catalog/stored_block.h), a compressed block or a raw one in
//      the sector space; meta compress ('lz4' or 'off', set at format
//      time); the view block_extent and the compression columns of
//      chain_stats and file_stats.
//   5: the RADOS mode (docs/RADOS.md): chain.rados_id, tables rados_block,
//      rados_intent and rados_unref; meta store ('local' or 'rados'),
//      rados_pool, rados_conf, rados_user, rados_host, rados_next_holder.
// A database newer than kSchemaVersion is refused; older ones are upgraded
// step by step by CheckAndUpgradeSchema() when opened read-write.
#pragma once

#include "catalog/sqlite.h"

namespace chainswap {

inline constexpr int kSchemaVersion = 5;
inline constexpr const char* kFormatMagic = "chainswap-catalog";

// Creates every table, index and view of the current version in an empty
// database and stamps the version. REQUIRES: db is empty.
Status CreateSchema(sql::Db& db, bool compress = false);

// Verifies this is a chainswap catalog (EUCLEAN if not), refuses newer
// versions (EPROTO) and upgrades older ones, all steps in one transaction
// (read-write opens only: a read-only open leaves an older version as it
// is). Returns the schema version the database has now.
Result<int> CheckAndUpgradeSchema(sql::Db& db, bool read_only);

}  // namespace chainswap
