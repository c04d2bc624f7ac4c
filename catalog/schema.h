// The catalog's SQL schema (SPEC §2, docs/FORMAT.md), in one place.
//
// Version history (PRAGMA user_version):
//   1: chain, swap_file, lat, pat (+ chain_hash_index), free_slot, meta;
//      views chain_hash, file_stats, chain_stats.
//   2: chain.name nullable (NULL: the chain directory was removed while its
//      files are still reclaimed); the views leave removed chains out.
// A database newer than kSchemaVersion is refused; older ones are upgraded
// step by step by CheckAndUpgradeSchema() when opened read-write.
#pragma once

#include "catalog/sqlite.h"

namespace chainswap {

inline constexpr int kSchemaVersion = 2;
inline constexpr const char* kFormatMagic = "chainswap-catalog";

// Creates every table, index and view of the current version in an empty
// database and stamps the version. REQUIRES: db is empty.
Status CreateSchema(sql::Db& db);

// Verifies this is a chainswap catalog (EUCLEAN if not), refuses newer
// versions (EPROTO) and upgrades older ones.
Status CheckAndUpgradeSchema(sql::Db& db, bool read_only);

}  // namespace chainswap
