// The figures of `chainswap stats` (human, --json, --prometheus) and of the
// daemon's metrics file (metrics_file=), gathered by the same code for both:
//
//   catalog   per chain: the catalog's chain_stats statement
//             (catalog_sql::kChainStats) run on a read connection, and
//             the hash table's counters and quota (QueryHashTableFigures);
//             per swap file: Catalog::ListFiles (one row per file; size and
//             mapped blocks, cheap); the store: Catalog::Usage (lock-free)
//             and ContentStore::AllocatedBytes (fstat); the sizes of
//             catalog.db and its WAL; the journal's oldest segment.
//   destage   the engine's figures as the stats reporter publishes them
//             (PublishedStats): the daemon passes its own, `chainswap stats`
//             reads BACKING/destage.json, which the daemon rewrites every
//             second while mounted.
//
// Why the chain statistics run on a read connection of their own and not
// through Catalog::Stats(): that call holds the catalog's writer mutex for
// the whole query, which counts every PAT row of each chain (about 0.4 s for
// 4 million blocks); fsync and namespace changes need that mutex. A read
// connection (WAL) never blocks the writer and is never blocked by it.
//
// Thread-safety: the functions are thread-safe as far as their arguments
// are (a sql::Db belongs to one thread at a time).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "catalog/backing_dir.h"
#include "catalog/sqlite.h"
#include "destage/engine.h"

namespace chainswap {

// The engine's figures as published by the stats reporter
// (fs/stats_reporter.h), with the destage rate of the last second.
struct PublishedStats {
  EngineStats engine;
  double ops_per_sec = 0;
};

// JSON text of a snapshot: the content of BACKING/destage.json.
std::string StatsToJson(const PublishedStats& s);
// Parses what StatsToJson wrote; nullopt when `text` is not a JSON object.
// Missing keys read as 0 (or "" for the error).
std::optional<PublishedStats> StatsFromJson(std::string_view text);

// destage.json counts as live (the daemon answered) when it was rewritten
// at most this long ago; the reporter rewrites it every second.
inline constexpr double kPublishedLiveSeconds = 10.0;

// The cheap figures of one linked swap file of a listed chain.
struct FileFigures {
  int64_t file_id = 0;
  int64_t dedup_id = 0;
  std::string chain, name;
  uint64_t logical_bytes = 0;  // its size
  uint64_t nonzero_bytes = 0;  // its LAT entries x 4 KiB
};

struct Figures {
  std::string backing;          // the backing directory as given (the `backing` label)
  bool mounted = false;         // a daemon holds the backing directory's lock
  // The engine's figures when they are live: always in the daemon; for
  // `chainswap stats` when mounted and destage.json is fresh.
  std::optional<PublishedStats> destage;
  // destage.json as found while mounted but older than
  // kPublishedLiveSeconds (the daemon stopped publishing), and its age.
  std::optional<PublishedStats> stale_destage;
  double destage_age_seconds = 0;

  std::vector<ChainStats> chains;  // by dedup ID; removed chains left out
  std::vector<FileFigures> files;  // by chain, then name
  StoreUsage usage;
  HashTableFigures hash_table;     // the chain hash table's counters and quota
  uint64_t store_allocated_bytes = 0;
  uint64_t catalog_bytes = 0;      // catalog.db + catalog.db-wal
  uint64_t catalog_wal_bytes = 0;
  uint64_t journal_segments = 0;   // segment files (unretired buckets)
  // Seconds since the oldest journal segment was last written (its mtime);
  // 0 when the journal is empty.
  double oldest_bucket_age_seconds = 0;

  bool live() const { return destage.has_value(); }
};

// A read connection for QueryChainStats (catalog/catalog.h) in the daemon: opened like the
// catalog's reader connections (read-write, as a WAL reader needs the -shm
// file), query_only, with a 2 MiB page cache so that it never holds more.
Result<sql::Db> OpenStatsReader(const std::string& catalog_path);

// Everything but `destage`, `stale_destage` and `mounted`: chains through
// `db` (a connection to backing's catalog), files, store, catalog and
// journal. Holds the catalog's writer mutex only inside ListFiles.
Status GatherCatalogFigures(BackingDir& backing, const sql::Db& db, Figures* out);

// Reads BACKING/destage.json into out->destage (fresh) or
// out->stale_destage (older than kPublishedLiveSeconds). Missing or
// unparsable: neither is set.
void ReadPublishedStats(const std::string& path, Figures* out);

// Journal segment files in `journal_dir` and the age in seconds of the
// oldest one's last write (mtime; 0 when there is none).
void ScanJournal(const std::string& journal_dir, uint64_t* segments, double* oldest_age_seconds);

}  // namespace chainswap
