#include "fs/metrics.h"

#include "fs/prometheus.h"

#ifndef CHAINSWAP_VERSION
#define CHAINSWAP_VERSION "unknown"
#endif

namespace chainswap {

namespace {

constexpr MetricType kGauge = MetricType::kGauge;
constexpr MetricType kCounter = MetricType::kCounter;

void Up(ExpositionWriter& w, const std::string& backing, bool up) {
  w.Family("chainswap_up", kGauge,
           "1 when the figures are live: written by the running daemon, or read by chainswap stats from a "
           "mounted backing directory whose daemon published its figures in the last 10 s; 0 otherwise "
           "(catalog figures are still given)");
  w.Sample({{"backing", backing}}, uint64_t{up ? 1u : 0u});
}

}  // namespace

std::string RenderDown(const std::string& backing) {
  std::string out;
  ExpositionWriter w(&out);
  Up(w, backing, false);
  return out;
}

std::vector<std::string> RenderMetrics(const Figures& f, std::string* out) {
  ExpositionWriter w(out);
  const std::string& b = f.backing;
  Up(w, b, f.live());
  w.Family("chainswap_build_info", kGauge, "Always 1; the label version is the chainswap version that wrote this");
  w.Sample({{"backing", b}, {"version", CHAINSWAP_VERSION}}, uint64_t{1});

  // ---- Per chain (the catalog: destaged state).
  auto per_chain = [&](const char* name, const char* help, auto value) {
    w.Family(name, kGauge, help);
    for (const ChainStats& c : f.chains) w.Sample({{"backing", b}, {"chain", c.name}}, value(c));
  };
  auto saved = [](const ChainStats& c) { return c.nonzero_bytes > c.stored_bytes ? c.nonzero_bytes - c.stored_bytes : 0; };
  per_chain("chainswap_chain_files", "Swap files in the chain",
            [](const ChainStats& c) { return c.files; });
  per_chain("chainswap_chain_logical_bytes", "Sum of the sizes of the chain's swap files, in bytes",
            [](const ChainStats& c) { return c.logical_bytes; });
  per_chain("chainswap_chain_nonzero_bytes",
            "Bytes of the chain's files that hold data (mapped 4 KiB blocks; zero blocks are holes), as destaged",
            [](const ChainStats& c) { return c.nonzero_bytes; });
  per_chain("chainswap_chain_zero_bytes", "Bytes of holes (unmapped 4 KiB blocks) inside the sizes of the chain's files",
            [](const ChainStats& c) { return c.zero_blocks * kBlockSize; });
  per_chain("chainswap_chain_stored_bytes",
            "Bytes the chain occupies in the content store (raw blocks 4096 each, compressed blocks their 512-byte "
            "sectors)",
            [](const ChainStats& c) { return c.stored_bytes; });
  per_chain("chainswap_chain_stored_blocks", "Distinct non-zero blocks the chain stores (PAT entries)",
            [](const ChainStats& c) { return c.blocks; });
  per_chain("chainswap_chain_compressed_blocks", "Of the chain's stored blocks, those stored LZ4-compressed (1-7 sectors)",
            [](const ChainStats& c) { return c.compressed_blocks; });
  per_chain("chainswap_chain_saved_bytes", "Bytes deduplication and compression save in the chain: nonzero minus stored",
            saved);
  per_chain("chainswap_chain_dedup_saved_ratio",
            "Fraction of the chain's nonzero bytes that deduplication saves: saved / nonzero, 0 to 1 (0 when the "
            "chain holds no data)",
            [&](const ChainStats& c) { return c.nonzero_bytes ? double(saved(c)) / double(c.nonzero_bytes) : 0.0; });
  per_chain("chainswap_chain_dedup_factor",
            "Deduplication factor of the chain: nonzero bytes / (stored blocks x 4096) (1 when nothing is stored); 1 or "
            "more, not a 0-1 ratio: 4 means four references per stored block",
            [](const ChainStats& c) { return c.blocks ? double(c.nonzero_bytes) / double(c.blocks * kBlockSize) : 1.0; });
  per_chain("chainswap_chain_compress_factor",
            "Compression factor of the chain: stored blocks x 4096 / stored bytes (1 for raw blocks, or when nothing is "
            "stored)",
            [](const ChainStats& c) { return c.stored_bytes ? double(c.blocks * kBlockSize) / double(c.stored_bytes) : 1.0; });

  // ---- Per swap file (cheap figures only: a file's fair share of stored
  // bytes would read all its LAT entries).
  w.Family("chainswap_file_logical_bytes", kGauge, "Size of the swap file, in bytes, as destaged");
  for (const FileFigures& x : f.files) w.Sample({{"backing", b}, {"chain", x.chain}, {"file", x.name}}, x.logical_bytes);
  w.Family("chainswap_file_nonzero_bytes", kGauge,
           "Bytes of the swap file that hold data (mapped 4 KiB blocks), as destaged; blocks shared with other files "
           "count in each");
  for (const FileFigures& x : f.files) w.Sample({{"backing", b}, {"chain", x.chain}, {"file", x.name}}, x.nonzero_bytes);

  // ---- Content store, catalog, journal on disk.
  w.Family("chainswap_store_used_bytes", kGauge, "Content-store slots holding a block, in bytes (all chains)");
  w.Sample({{"backing", b}}, f.usage.used_slots * kBlockSize);
  w.Family("chainswap_store_free_bytes", kGauge,
           "Content-store slots below the high-water mark that hold no block (reused first), in bytes");
  w.Sample({{"backing", b}}, f.usage.free_slots * kBlockSize);
  w.Family("chainswap_store_high_water_bytes", kGauge, "Content-store slots ever used (the store's length), in bytes");
  w.Sample({{"backing", b}}, f.usage.high_water * kBlockSize);
  w.Family("chainswap_store_pack_pages", kGauge,
           "Content-store slots holding compressed blocks' sectors (pack pages; counted in chainswap_store_used_bytes)");
  w.Sample({{"backing", b}}, f.usage.pack_pages);
  w.Family("chainswap_store_free_sectors", kGauge,
           "Free 512-byte sectors inside pack pages: reused first; a page goes back to the backing filesystem once all "
           "its sectors are free");
  w.Sample({{"backing", b}}, f.usage.free_sectors);
  w.Family("chainswap_store_allocated_bytes", kGauge,
           "Bytes store.dat occupies on the backing filesystem (freed slots are punched out)");
  w.Sample({{"backing", b}}, f.store_allocated_bytes);
  if (f.usage.capacity_slots > 0) {
    w.Family("chainswap_store_capacity_bytes", kGauge, "The capacity= mount option: the content store's limit, in bytes");
    w.Sample({{"backing", b}}, f.usage.capacity_slots * kBlockSize);
  }
  if (f.hash_table.known) {
    w.Family("chainswap_hash_entries", kGauge,
             "Entries of the chain hash table: stored blocks that later writes can be deduplicated against");
    w.Sample({{"backing", b}}, f.hash_table.entries);
    w.Family("chainswap_hash_unindexed_blocks", kGauge,
             "Stored blocks without a hash entry (pruned by chainswap prune, or stored while the hash table was at "
             "its quota): valid, never deduplicated against");
    w.Sample({{"backing", b}}, f.hash_table.unindexed);
    if (f.hash_table.limit_entries > 0) {
      w.Family("chainswap_hash_table_limit_entries", kGauge,
               "The hash_table_limit= mount option (of the last mount): the hash table's quota, in entries");
      w.Sample({{"backing", b}}, f.hash_table.limit_entries);
    }
  }
  w.Family("chainswap_catalog_bytes", kGauge, "Size of the SQLite catalog: catalog.db plus its WAL, in bytes");
  w.Sample({{"backing", b}}, f.catalog_bytes);
  w.Family("chainswap_catalog_wal_bytes", kGauge, "Size of the catalog's WAL file (catalog.db-wal), in bytes");
  w.Sample({{"backing", b}}, f.catalog_wal_bytes);
  w.Family("chainswap_journal_segments", kGauge,
           "Journal segment files, one per bucket not yet retired (while unmounted: to be replayed at the next mount)");
  w.Sample({{"backing", b}}, f.journal_segments);
  w.Family("chainswap_journal_oldest_bucket_age_seconds", kGauge,
           "Seconds since the oldest journal bucket not yet retired was last written to (its segment's mtime); 0 "
           "when the journal is empty. Grows while destage falls behind or is stopped");
  w.Sample({{"backing", b}}, f.oldest_bucket_age_seconds);

  if (!f.destage) return w.problems();
  // ---- The running engine (live figures only).
  const EngineStats& s = f.destage->engine;
  auto gauge = [&](const char* name, const char* help, auto value) {
    w.Family(name, kGauge, help);
    w.Sample({{"backing", b}}, value);
  };
  auto counter = [&](const char* name, const char* help, uint64_t value) {
    w.Family(name, kCounter, help);
    w.Sample({{"backing", b}}, value);
  };
  gauge("chainswap_journal_bytes", "Bytes in the write-back journal (unretired buckets)", s.journal_bytes);
  gauge("chainswap_journal_limit_bytes", "The journal_limit= mount option: above it new writes wait for destage",
        s.journal_limit);
  gauge("chainswap_journal_pending_records", "Journal records not yet destaged by their destager", s.pending_records);
  gauge("chainswap_destage_w_bucket", "W: the bucket the write destager works on next (a bucket ID)", s.w_bucket);
  gauge("chainswap_destage_x_bucket", "X: the bucket the delete destager works on next (a bucket ID)", s.x_bucket);
  gauge("chainswap_queue_slots", "N: slots of the logical queue (the queue_slots= mount option)", uint64_t{s.n});
  gauge("chainswap_queue_delete_slots", "D: slots of the logical queue dedicated to deletes now", uint64_t{s.d});
  gauge("chainswap_store_usage_ratio",
        "Used fraction of the content store's limit (capacity= or the backing filesystem), 0 to 1", s.store_usage);
  gauge("chainswap_destage_error",
        "1 after destage stopped on an error or a journal fdatasync failed (sticky until the next mount: writes and "
        "fsync fail with EIO); the message is in chainswap stats and the xattr user.chainswap.destage.error",
        uint64_t{s.error.empty() ? 0u : 1u});
  counter("chainswap_blocks_stored_total", "New blocks written to the content store since the mount", s.blocks_stored);
  counter("chainswap_blocks_deduplicated_total",
          "Written blocks that matched a block already stored in their chain (not stored again) since the mount",
          s.blocks_deduped);
  counter("chainswap_blocks_freed_total", "Stored blocks freed (reference count 0) since the mount", s.blocks_freed);
  counter("chainswap_blocks_absorbed_total",
          "Written blocks superseded in the journal before destage (never stored) since the mount", s.writes_absorbed);
  counter("chainswap_destaged_records_total", "Journal records fully handled by a destager since the mount",
          s.ops_destaged);
  counter("chainswap_enospc_total", "Writes refused with ENOSPC (content store or backing filesystem full) since the mount",
          s.enospc);
  counter("chainswap_journal_syncs_total", "fdatasyncs of journal segments (fsyncs, retirements) since the mount",
          s.journal_syncs);
  counter("chainswap_fsyncs_destaged_total",
          "fsyncs made durable by destaging the journal instead of syncing it (fsync_destage=) since the mount",
          s.fsyncs_destaged);
  counter("chainswap_queue_policy_changes_total", "Changes of D, the delete share of the logical queue, since the mount",
          s.policy_changes);
  return w.problems();
}

}  // namespace chainswap
