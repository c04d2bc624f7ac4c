// The chainswap catalog (SPEC §2, §4): chains, swap files, LATs, the chain
// hash table, the PAT with refcounts and the content-store free list, kept in
// one SQLite database in WAL mode, plus the one routine that applies block
// operations (ApplyBlockOps) to the catalog and the content store.
//
// Contract of the apply routine: an op *sets* the state of an LBA (written
// with these bytes, or a hole). Applying the same op twice, or ops of
// different LBAs in any order, gives the same catalog; this is what lets the
// destagers run concurrently and lets the journal be replayed.
//
// Crash safety: data of a newly allocated slot is written to the store before
// the transaction that references it commits; a slot freed by a transaction is
// only punched and reused after a Sync made that transaction durable
// (SlotAllocator). So the catalog never references a slot whose bytes were
// overwritten.
//
// Parts (each in its own file; docs/ARCHITECTURE.md, "The catalog"):
//   catalog.cc            opening, the journal mark, Sync and the WAL, usage
//   catalog_namespace.cc  chain and swap-file rows, the hasher cache
//   catalog_apply.cc      the apply routine: ApplyBlockOps, CloneRange,
//                         refcounts, the hash index and the merge of its log,
//                         its quota and prune
//   catalog_read.cc       reads and statistics
//   catalog_sql.h         every SQL statement they run
//   slot_allocator.h      the free list and its pending -> free -> punched cycle
//   hash_log.h            the hash index's changes not merged yet, in memory
//   reader_pool.h         the reader connections
//
// Thread-safety: every public method is thread-safe. The writer mutex (mu_)
// owns the main SQLite connection, its prepared statements, the hasher
// cache and the WAL's file descriptor; it is held for whole transactions
// and for Sync. The slot allocator and the reader pool each have their own
// lock: the allocator's is taken inside mu_ only, the pool's never together
// with it. Reads on a reader connection (ReadBlocks, MappedBlocksWithin)
// never take mu_, and Usage() and HasSlotsToRelease() read atomics. Store
// I/O for reads happens outside every lock (ReadBlocks), safe because a
// referenced slot is never rewritten.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "catalog/block.h"
#include "catalog/content_store.h"
#include "catalog/hash_log.h"
#include "catalog/mutex.h"
#include "catalog/reader_pool.h"
#include "catalog/sector_allocator.h"
#include "catalog/slot_allocator.h"
#include "catalog/sqlite.h"
#include "catalog/status.h"
#include "catalog/thread_annotations.h"
#include "catalog/write_prep.h"

namespace chainswap {

namespace catalog_sql {
struct WriterStatements;
}  // namespace catalog_sql

// The catalog's WAL is checkpointed at a Sync once it grows past
// kWalCheckpointBytes; when it starts over, the file is cut back to
// kWalReserveBytes. When idle, a WAL longer than kWalReserveBytes is folded
// into the database and emptied.
inline constexpr uint64_t kWalCheckpointBytes = 16u << 20;
inline constexpr uint64_t kWalReserveBytes = 1u << 20;
// Free slots whose bytes are still allocated in the store are reused before
// punched ones: an overwrite into them costs the backing fs no new extent.
// A Sync under load keeps up to this many of them (the lowest, reused
// first) and punches the rest; an idle Sync punches them all.
inline constexpr uint64_t kUnpunchedReserveSlots = 4096;  // 16 MiB

// Memory (docs/OPERATIONS.md, "Memory"). The catalog's anonymous memory is
// CatalogOptions::cache_bytes — half of it the writer connection's SQLite
// page cache, half the hash index's unmerged changes (HashLog) — plus
// kReaderCacheBytes of page cache per reader connection (one per thread
// that reads at once), plus the slot allocator's free list.
inline constexpr uint64_t kDefaultCatalogCacheBytes = 16u << 20;
inline constexpr uint64_t kMinCatalogCacheBytes = 1u << 20;
inline constexpr uint64_t kReaderCacheBytes = 1u << 20;
// The hash log is merged into hash_index by the apply transactions, each
// at least kHashMergeChunk changes (and twice as many as it logged), and by
// an idle Sync, up to kIdleHashMergeChunk changes each.
inline constexpr size_t kHashMergeChunk = 64;
inline constexpr size_t kIdleHashMergeChunk = 16384;
// PredictWrites hands its items to the WritePrep worker in groups of this
// many (and after the first 8, so that the worker starts at once).
inline constexpr size_t kPredictPublishItems = 32;

// The chain hash table's quota (hash_table_limit=, OpenZFS's
// dedup_table_quota): once the catalog holds this many hash entries, a new
// block that matches nothing is stored without one (pat.hash_key NULL,
// "unindexed"): it is valid, keeps its refcount and its data, and is only
// never deduplicated against. A size is converted to entries at
// kHashEntryBytes each: what one entry costs the catalog file (its
// hash_index row, and the key and birth day in its PAT row), as measured by
// tools/catalog_bench (docs/BENCHMARKS.md, "Catalog growth").
inline constexpr uint64_t kHashEntryBytes = 25;
// Compaction of packed blocks (Catalog::CompactPackedLocked): an idle Sync
// moves the packed blocks out of the emptiest pack pages into new pages
// filled with no gap, when the free sectors inside pack pages are at least
// kCompactMinFreeSectors and 1/kCompactFreeShare of the sectors in use; at
// most kCompactBlocks blocks per pass (one pass over the LAT each).
inline constexpr uint64_t kCompactMinFreeSectors = 16;  // 8 KiB
inline constexpr uint64_t kCompactFreeShare = 64;        // about 1.6 %
inline constexpr size_t kCompactBlocks = 8192;
// Prune (Catalog::PruneHashIndex) unindexes this many blocks per
// transaction.
inline constexpr size_t kPruneChunk = 16384;

// Days since 1970-01-01 UTC, by the real-time clock: the unit of pat.born.
int64_t DayNumberNow();

class RadosBackend;
struct RadosConfig;
struct RadosPlan;

// RADOS mode: a swap file's blocks as another host's catalog can take them
// over (chainswap migrate, docs/RADOS.md "Migration"): its chain's name and
// cluster-wide ID, and each mapped LBA's block by its whole hash, which
// names the block's object in the pool.
struct ExportedBlock {
  uint64_t lba = 0;
  BlockHash hash;
};
struct FileExport {
  std::string pool;
  std::string chain_name;
  std::string chain_id;  // chain.rados_id
  std::vector<ExportedBlock> blocks;  // by LBA
};

struct CatalogOptions {
  bool dedup_verify = true;      // compare bytes on a hash match (SPEC §4.3)
  uint64_t capacity_slots = 0;   // 0: unlimited (bounded by the backing fs)
  bool read_only = false;
  // The catalog's memory budget (see kDefaultCatalogCacheBytes); at least
  // kMinCatalogCacheBytes.
  uint64_t cache_bytes = kDefaultCatalogCacheBytes;
  // Bytes of the catalog file SQLite may memory-map for reads (PRAGMA
  // mmap_size; file-backed pages the kernel can reclaim). 0: none. Off by
  // default: the daemon mlocks what it maps (fs/memory_guard.h), which
  // would pin the mapped catalog in RAM.
  uint64_t mmap_bytes = 0;
  // The hash table's quota in entries (0: none), recorded in the catalog
  // (meta hash_table_limit) by a read-write open for the statistics. Unset:
  // the recorded one applies (offline tools, which do not store blocks).
  std::optional<uint64_t> hash_table_limit;
  // Compression of new unique blocks (compress=lz4|off): true stores them
  // LZ4-compressed in sectors (stored_block.h), false raw in slots. Blocks
  // already stored stay as they are. Unset: the catalog's setting (meta
  // compress, chosen at format time).
  std::optional<bool> compress;
  // A catalog whose store is RADOS (meta store = 'rados', rados_backend.h):
  // the connection its blocks are stored through, which must outlive the
  // catalog. Required by a read-write open of such a catalog; a read-only
  // open without one reads the catalog only (ReadBlocks fails ENOTCONN).
  RadosBackend* rados = nullptr;
  // For BackingDir::Open, which makes that connection from the catalog's
  // settings: the client timeout in seconds (mount option rados_timeout=),
  // and whether to connect at all (false: a read-only tool that reads the
  // catalog only).
  int rados_timeout_seconds = 30;
  bool rados_connect = true;
};

struct ChainInfo {
  int64_t dedup_id = 0;
  std::string name;
  uint32_t mode = 0, uid = 0, gid = 0;
  int64_t mtime_ns = 0, ctime_ns = 0;
};

struct FileInfo {
  int64_t file_id = 0;
  int64_t dedup_id = 0;
  std::string name;        // empty when unlinked
  bool unlinked = false;
  uint64_t size = 0;
  uint64_t mapped_blocks = 0;  // number of LAT entries
  uint32_t mode = 0, uid = 0, gid = 0;
  int64_t atime_ns = 0, mtime_ns = 0, ctime_ns = 0;
};

// One block operation. kWrite sets one LBA to the block at `data` (an all-zero
// block makes a hole); kDelete makes holes of [lba, lba + count).
struct BlockOp {
  enum class Kind : uint8_t { kWrite, kDelete };
  Kind kind = Kind::kWrite;
  int64_t file_id = 0;
  int64_t dedup_id = 0;
  uint64_t lba = 0;
  uint64_t count = 1;              // kDelete only
  const uint8_t* data = nullptr;   // kWrite only: kBlockSize bytes
  // kWrite: the keyed hash, precomputed by a caller that has found the
  // block not all zeros (the zero test is then not repeated).
  std::optional<BlockHash> hash;
  // kWrite, optional: the block's stored form, compressed ahead of the
  // transaction (write_prep.h); used when the block is stored compressed,
  // else left alone.
  PreparedBlock* prepared = nullptr;
};

// Size/time changes committed in the same transaction as a batch of ops.
struct FileMetaUpdate {
  int64_t file_id = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
};

struct ChainStats {
  int64_t dedup_id = 0;
  std::string name;
  uint64_t files = 0;
  uint64_t logical_bytes = 0;   // sum of file sizes
  uint64_t nonzero_bytes = 0;   // LAT entries * 4 KiB
  uint64_t zero_blocks = 0;     // holes inside file sizes
  uint64_t stored_bytes = 0;    // bytes its blocks occupy: 4 KiB raw, their sectors packed
  uint64_t blocks = 0;          // PAT entries (distinct non-zero blocks)
  uint64_t compressed_blocks = 0;  // of them, stored compressed (1..7 sectors)
};

// One row of the file_stats view. stored_bytes is the file's fair share:
// each of its blocks counts its stored bytes / refcount; uncompressed_bytes
// the same share counting every block as 4 KiB (their ratio is the file's
// compression ratio).
struct FileStats {
  int64_t file_id = 0;
  int64_t dedup_id = 0;
  std::string chain, name;
  uint64_t logical_bytes = 0, nonzero_bytes = 0, zero_blocks = 0, stored_bytes = 0, uncompressed_bytes = 0;
};

struct StoreUsage {
  uint64_t used_slots = 0;      // PAT entries
  uint64_t free_slots = 0;      // on the free list
  uint64_t high_water = 0;      // slots ever used (store length)
  uint64_t capacity_slots = 0;  // 0: unlimited
  // Of used_slots, the pack pages of compressed blocks, and their sectors.
  uint64_t pack_pages = 0;
  uint64_t packed_sectors = 0;  // in use by blocks (pending frees included)
  uint64_t free_sectors = 0;    // free inside pack pages
};

// The result of ApplyBlockOps, for counters.
struct ApplyResult {
  uint64_t blocks_stored = 0;    // new PAT entries (data written)
  uint64_t blocks_deduped = 0;   // writes that matched an existing block
  uint64_t blocks_freed = 0;     // PAT entries dropped at refcount 0
  uint64_t collisions = 0;       // hash matched, bytes differed
  uint64_t blocks_unindexed = 0; // of blocks_stored: without a hash entry (the quota was reached)
};

// The chain hash table's figures (meta rows kept by the apply transactions;
// docs/FORMAT.md).
struct HashTableFigures {
  bool known = false;           // false: a catalog older than these counters
  uint64_t entries = 0;         // blocks with a hash entry
  uint64_t unindexed = 0;       // blocks without one (pruned, or stored at the quota)
  uint64_t limit_entries = 0;   // the quota of the last read-write open; 0: none
};

// What Catalog::PruneHashIndex did.
struct PruneResult {
  uint64_t pruned = 0;          // hash entries dropped
  uint64_t entries_left = 0;    // hash entries after it
  uint64_t unindexed = 0;       // blocks without a hash entry after it
};

// The chain_stats view's rows on any connection of a catalog database
// (Catalog::Stats runs it on the writer's; `chainswap stats` and the
// metrics writer on a read connection of their own, so that the count of
// every chain's blocks does not hold the writer mutex).
Result<std::vector<ChainStats>> QueryChainStats(const sql::Db& db);
// The hash table's figures on any connection of a catalog database (read
// in one statement: the counters agree with each other).
Result<HashTableFigures> QueryHashTableFigures(const sql::Db& db);

class Catalog {
 public:
  ~Catalog();
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  // Creates a new, empty catalog database at `path` (0600). EEXIST if present.
  // `compress`: the compression of new blocks (meta compress).
  // `rados`: the catalog's blocks go to that pool (meta store = 'rados');
  // compression is then off.
  static Status Create(const std::string& path, bool compress = false, const RadosConfig* rados = nullptr);
  // Opens an existing catalog; `store` must outlive the catalog. Fails with
  // EUCLEAN for a file that is not a chainswap catalog or is corrupt, EPROTO
  // for a newer schema, ENOENT when missing.
  static Result<std::unique_ptr<Catalog>> Open(const std::string& path, ContentStore* store,
                                               const CatalogOptions& options);

  // ---- Namespace -------------------------------------------------------
  // The chain directories (removed chains whose files are still being
  // reclaimed are not listed).
  Result<std::vector<ChainInfo>> ListChains() EXCLUDES(mu_);
  // Every swap file, including unlinked ones still being reclaimed.
  Result<std::vector<FileInfo>> ListFiles() EXCLUDES(mu_);
  // Creates a chain with a new dedup ID and a fresh secret seed. EEXIST.
  Result<ChainInfo> CreateChain(const std::string& name, uint32_t mode, uint32_t uid,
                                uint32_t gid, int64_t now_ns) EXCLUDES(mu_);
  Status UpdateChain(const ChainInfo& chain) EXCLUDES(mu_);  // name, mode, owner, times
  // Removes a chain directory: ENOTEMPTY while it has linked files. Its row
  // goes at once when it has no files at all (returns true); with unlinked
  // files still being reclaimed it stays, nameless (a new chain may take the
  // name at once), until DropFile drops the last of them (returns false).
  Result<bool> RemoveChain(int64_t dedup_id) EXCLUDES(mu_);
  Result<FileInfo> CreateFile(int64_t dedup_id, const std::string& name, uint32_t mode,
                              uint32_t uid, uint32_t gid, int64_t now_ns) EXCLUDES(mu_);
  // Persists name/size/mode/owner/times of `file` (mapped_blocks is the
  // catalog's own). A file with unlinked=true gets name NULL.
  Status UpdateFile(const FileInfo& file) EXCLUDES(mu_);
  // Atomically renames `file_id` and, if `replaced_id` is set, unlinks it.
  Status RenameFile(int64_t file_id, const std::string& new_name, std::optional<int64_t> replaced_id)
      EXCLUDES(mu_);
  // Deletes the row of a file, and the row of its chain when the chain was
  // removed and this was its last file. ENOENT when there is no such file,
  // EBUSY while its LAT still has entries.
  Status DropFile(int64_t file_id) EXCLUDES(mu_);

  // ---- Journal ---------------------------------------------------------
  // The newest journal bucket whose effects the catalog holds (meta key
  // journal_retired_through; 0 when none). A bucket is recorded here, and
  // the catalog synced, before its segment is deleted: a segment that comes
  // back after a power cut (its unlink was not durable) is recognized as
  // retired and never replayed over newer state.
  Result<uint64_t> JournalRetiredThrough() EXCLUDES(mu_);
  Status SetJournalRetiredThrough(uint64_t bucket) EXCLUDES(mu_);
  // What retiring journal bucket `bucket` leaves in the catalog, in one
  // transaction: the sizes and times its records left (`meta`) and the
  // mark above. The caller syncs (Sync) before it deletes the segment.
  Status RetireBucket(std::span<const FileMetaUpdate> meta, uint64_t bucket) EXCLUDES(mu_);

  // ---- Blocks ----------------------------------------------------------
  // Keyed hasher of a chain (cached). ENOENT for an unknown chain.
  Result<std::shared_ptr<const BlockHasher>> HasherFor(int64_t dedup_id) EXCLUDES(mu_);

  // The one apply routine (SPEC §4, §5): applies every op and every meta
  // update in one transaction. On error nothing is applied (ENOSPC when no
  // slot can be had, EIO for store I/O errors).
  Result<ApplyResult> ApplyBlockOps(std::span<const BlockOp> ops,
                                    std::span<const FileMetaUpdate> meta = {}) EXCLUDES(mu_);

  // With compression on, predicts what the writes among `ops` (those with
  // a precomputed hash) are, and hands each to `prep` to do its compression
  // work ahead (write_prep.h), setting its `prepared`: new (no block of the
  // hash index or of the hash log has its key, and no earlier op of the
  // batch does): compressed; or, with verify-on-match, a duplicate of a
  // compressed block (a live block of its chain with its key, which the
  // transaction would read and decompress to compare): compared. Hints,
  // never trusted for correctness (the transaction decides, and takes a
  // comparison only under this store epoch). Nothing with compression off.
  // Lock order: mu_, then WritePrep's (a leaf).
  Status PredictWrites(std::span<BlockOp> ops, WritePrep& prep) EXCLUDES(mu_);

  // O(metadata) copy (SPEC §6 clone): makes [dst_lba, dst_lba + count) of
  // dst map exactly what [src_lba, src_lba + count) of src maps (LAT copy and
  // refcount increments, one transaction). EXDEV across chains, EINVAL for
  // overlapping ranges of one file.
  Status CloneRange(int64_t src_file, int64_t dst_file, uint64_t src_lba, uint64_t dst_lba, uint64_t count)
      EXCLUDES(mu_);

  // ---- Migration (RADOS mode; catalog_rados.cc) -------------------------
  // The file's LAT as an export. EOPNOTSUPP for a local store, or for a
  // file with a block stored under a private name (a hash collision).
  // REQUIRES: the file's ops are in the catalog (the engine drains first).
  Result<FileExport> ExportFile(int64_t file_id) EXCLUDES(mu_, drain_mu_);
  // Maps an empty file of a chain with the export's chain ID onto the
  // exported blocks: a reference (no data) on each object this host does
  // not reference yet, taken outside mu_ behind intent rows as a destage
  // batch's are, then PAT, LAT and rados_block rows in one transaction. No
  // block is read or written. EXDEV when the file's chain is another
  // cluster-wide chain (or the pool differs), ENOTEMPTY when the file maps
  // blocks, ENOENT when an object is gone (the source dropped it).
  Status ImportFile(int64_t file_id, const FileExport& exp) EXCLUDES(mu_, drain_mu_);

  // Reads `count` blocks of a file starting at `lba` into out; holes read as
  // zeros. REQUIRES: the caller excludes concurrent writes to this range.
  Status ReadBlocks(int64_t file_id, uint64_t lba, uint32_t count, uint8_t* out) EXCLUDES(mu_);
  // Number of LAT entries of a file (its allocated blocks).
  Result<uint64_t> MappedBlocks(int64_t file_id) EXCLUDES(mu_);
  // In one read snapshot: the file's LAT entries in total, and how many of
  // them lie inside `ranges` (sorted, disjoint [first, last) LBA ranges).
  struct MappedCount {
    uint64_t total = 0;
    uint64_t within = 0;
  };
  Result<MappedCount> MappedBlocksWithin(int64_t file_id, std::span<const std::pair<uint64_t, uint64_t>> ranges)
      EXCLUDES(mu_);
  // Lowest LBA >= lba that is mapped, if any (for SEEK_DATA).
  Result<std::optional<uint64_t>> NextMapped(int64_t file_id, uint64_t lba) EXCLUDES(mu_);

  // ---- The hash table's quota and prune ---------------------------------
  // Unindexes blocks with refcount 1 born on or before `last_born_day`
  // (DayNumberNow() minus an age; INT64_MAX: any), oldest first (by birth
  // day, then block number), at most `max_entries` of them, in
  // transactions of kPruneChunk: their PAT rows lose the hash key, their
  // index entries are removed (through the hash log, merged before this
  // returns), their block_hash rows go. Their data and refcounts stay; a
  // later write of the same bytes is stored anew. Memory: 16 bytes per
  // candidate. EROFS on a read-only catalog. On error, the transactions
  // committed so far stay (each is whole).
  Result<PruneResult> PruneHashIndex(int64_t last_born_day, uint64_t max_entries) EXCLUDES(mu_);
  // Indexed blocks with refcount 1 (what prune may drop; counts the PAT).
  Result<uint64_t> UniqueHashEntries() EXCLUDES(mu_);
  // The counters as of the last commit.
  HashTableFigures HashTable() EXCLUDES(mu_);

  // ---- Statistics ------------------------------------------------------
  Result<std::vector<ChainStats>> Stats() EXCLUDES(mu_);
  Result<std::vector<FileStats>> PerFileStats() EXCLUDES(mu_);
  // Lock-free: the allocator's figures as of its last commit or Sync.
  StoreUsage Usage();
  // True while freed slots wait for a Sync (to become reusable, or to be
  // punched), or changes to the hash index wait to be merged: the engine
  // calls Sync(idle) when idle so that space comes back and the index is
  // compacted. Lock-free.
  bool HasSlotsToRelease() const {
    return slots_.HasSlotsToRelease() || sectors_.HasPending() || hash_log_pending_.load(std::memory_order_relaxed) ||
           compact_wanted_.load(std::memory_order_relaxed) || rados_unrefs_pending_.load(std::memory_order_relaxed);
  }
  // Whether new unique blocks are stored compressed (CatalogOptions::compress
  // or the catalog's setting).
  bool compress() const { return compress_.load(std::memory_order_relaxed); }
  // Whether the catalog's blocks are in a RADOS pool (meta store = 'rados').
  bool rados_mode() const { return rados_mode_; }
  // RADOS mode: the rows of rados_intent and rados_unref (references being
  // taken, references still to drop); both 0 when settled. Lock-free of
  // mu_'s transactions (a read of the writer connection under mu_).
  struct RadosQueues {
    uint64_t intents = 0;
    uint64_t unrefs = 0;
  };
  Result<RadosQueues> RadosQueueRows() EXCLUDES(mu_);
  // RADOS mode: the chains' cluster-wide IDs (chain.rados_id), by dedup ID.
  Result<std::map<int64_t, std::string>> RadosChainIds() EXCLUDES(mu_);
  // RADOS mode: drops the references queued in rados_unref (puts, up to
  // 64 in flight, outside mu_), and deletes the rows of those that are
  // done (OK, or the holder holds none, or the object is gone). The first
  // other error is returned; its rows stay for the next drain. Run after
  // every apply that freed blocks, by an idle Sync (Sync(true)), and at
  // open.
  Status DrainRadosUnrefs() EXCLUDES(mu_, drain_mu_);
 private:
  Status DrainRadosUnrefsLocked() REQUIRES(drain_mu_) EXCLUDES(mu_);

 public:
  // The content store the catalog maps blocks onto (thread-safe itself).
  const ContentStore& store() const { return *store_; }
  // Verify bytes on every hash match even with dedup_verify off. Set after a
  // crash: committed catalog rows may reference slots whose bytes never
  // reached the disk (the store is synced only at retirement and fsync), and
  // replaying the journal through verification heals them.
  void ForceVerify(bool on) { force_verify_.store(on); }
  // Checks that the store file is long enough for every slot the PAT
  // references: EUCLEAN naming both lengths otherwise.
  Status CheckStoreLength() EXCLUDES(mu_);
  // fdatasync of the store, then of the catalog's WAL (both under the
  // catalog mutex): every committed transaction is durable when this
  // returns OK, never before the store bytes it references. Then slots
  // whose frees are now durable become reusable, and free slots left
  // unused since the previous Sync are punched beyond the lowest
  // kUnpunchedReserveSlots. `idle` (nothing is being destaged): first
  // merges up to kIdleHashMergeChunk changes of the hash log into the hash
  // index, runs a pass of compaction when the pack pages hold enough free
  // sectors (kCompactMinFreeSectors), punches every free slot, and folds a WAL longer than
  // kWalReserveBytes into the database and empties it (gives up after 50 ms
  // if a reader is in it).
  Status Sync(bool idle = false) EXCLUDES(mu_);
  // Size of the WAL file (0 before the first Sync opened it).
  uint64_t WalBytes() EXCLUDES(mu_);

  // Direct access for offline tools (fsck) that run their own queries.
  // REQUIRES: no concurrent use of the catalog (hence unchecked), or a
  // ToolsHold in scope.
  sql::Db& db_for_tools() NO_THREAD_SAFETY_ANALYSIS { return db_; }

  // Holds the writer mutex while a test or tool queries db_for_tools() of a
  // catalog that is in use (an engine's destagers apply batches and, when
  // idle, merge the hash log and checkpoint on the same connection): no
  // transaction runs meanwhile, so the queries see one committed state.
  // Methods that take the writer mutex must not be called in its scope;
  // the lock-free ones (Usage) may.
  class SCOPED_CAPABILITY ToolsHold {
   public:
    explicit ToolsHold(Catalog& c) ACQUIRE(c.mu_) : lock_(&c.mu_) {}
    ~ToolsHold() RELEASE() {}

   private:
    MutexLock lock_;
  };

 private:
  // The apply routine's per-transaction scratch (catalog_apply.cc).
  struct ApplyTxn;

  Catalog(sql::Db db, ContentStore* store, const CatalogOptions& options, std::string path);
  // Prepares the writer's statements, loads the slot allocator from the PAT
  // (free slots are its gaps) and the hash log, and cuts the store back to
  // the highest slot in use. Called once, by Open.
  Status Init() EXCLUDES(mu_);

  // ---- The apply routine (catalog_apply.cc). REQUIRES: a transaction open
  // on db_ and in slots_.
  Status ApplyWriteLocked(const BlockOp& op, ApplyTxn& txn) REQUIRES(mu_);
  Status ApplyDeleteLocked(const BlockOp& op, ApplyTxn& txn) REQUIRES(mu_);
  // Drops n references to a block; at zero its PAT row goes, its index
  // entry is removed (logged) and its slot is freed (reusable after the
  // next Sync).
  Status UnrefLocked(int64_t pblock, int64_t n, ApplyTxn& txn) REQUIRES(mu_);
  // The chain's stored block with these bytes (hash key `key`, hash
  // `hash`), if any: candidates from the hash log and hash_index, checked
  // against their PAT rows, then verified (dedup_verify) or trusted on a
  // whole-hash match (block_hash).
  // The hash-index candidates of `key`: the hash log's unmerged adds and
  // hash_index's entries, sorted, without repeats. Hints only (see below).
  Status HashCandidatesLocked(int64_t key, std::vector<int64_t>* cands) REQUIRES(mu_);
  // Whether the PAT has `pblock` as a block of chain `dedup_id` with hash
  // key `key`: what makes a candidate one.
  Result<bool> IsBlockOfKeyLocked(int64_t pblock, int64_t dedup_id, int64_t key) REQUIRES(mu_);
  Result<std::optional<int64_t>> FindDuplicateLocked(const BlockOp& op, const BlockHash& hash, int64_t key,
                                                     ApplyTxn& txn) REQUIRES(mu_);
  // Appends a change of the hash index to hash_log and the HashLog.
  Status LogIndexChangeLocked(int64_t key, int64_t pblock, bool add) REQUIRES(mu_);
  // Merges up to `max` changes of the frozen generation of the hash log
  // into hash_index (and, with its last chunk, deletes its log rows);
  // *merged: how many (none when nothing is frozen), for
  // HashLog::ChunkMerged after the commit.
  // REQUIRES: a transaction open on db_ and in hash_log_.
  Status MergeHashLogLocked(size_t max, std::optional<size_t>* merged) REQUIRES(mu_);
  // ApplyBlockOps' and RetireBucket's transaction: `ops`, `meta` and, when
  // given, the journal mark.
  // `plan`: RADOS mode, the batch's references (catalog_rados.cc); EAGAIN
  // (the transaction rolled back) when it lacks one.
  Result<ApplyResult> ApplyLocked(std::span<const BlockOp> ops, std::span<const FileMetaUpdate> meta,
                                  std::optional<uint64_t> retired_through, RadosPlan* plan = nullptr) REQUIRES(mu_);
  // Writes meta.journal_retired_through (in the caller's transaction, if any).
  Status SetJournalRetiredThroughLocked(uint64_t bucket) REQUIRES(mu_);
  // Opens / commits / rolls back the three transactions of an apply:
  // the database's, the allocator's and the hash log's.
  Status BeginApplyLocked(sql::Transaction& db_txn) REQUIRES(mu_);
  // `txn` (null: a transaction that changes no block): its changes of the
  // hash table's counters are written before the commit and kept after it.
  Status CommitApplyLocked(sql::Transaction& db_txn, Status st, std::optional<size_t> merged,
                           const ApplyTxn* txn) REQUIRES(mu_);
  // Reads the hash table's counters (computing them when a catalog lacks
  // them) and records the quota. Called once, by Init.
  Status LoadHashCountersLocked() REQUIRES(mu_);
  // One prune transaction over `blocks` (pblock, hash key).
  Status PruneChunkLocked(std::span<const std::pair<int64_t, int64_t>> blocks, uint64_t* pruned) REQUIRES(mu_);
  // A merge transaction of its own, for an idle Sync: freezes whatever the
  // active generation has, merges up to kIdleHashMergeChunk changes.
  Status IdleMergeLocked() REQUIRES(mu_);
  // A slot for a new block (a sync first when only pending frees could make
  // room at capacity). ENOSPC at capacity.
  Result<uint64_t> AllocSlotLocked() REQUIRES(mu_);
  // One pass of compaction (see kCompactBlocks), in a transaction of its
  // own: the packed blocks touching the emptiest pack pages are copied
  // (their stored form as it is) into pages filled with no gap, their PAT
  // rows, hash-index entries, block_hash rows and every LAT row move to the
  // new pblocks, and the old extents are freed (reusable after the Sync
  // that follows, which releases the emptied pages). After the commit it
  // waits for the reads that may have looked up an old pblock (moving_mu_).
  // *moved: blocks moved.
  Status CompactPackedLocked(uint64_t* moved) REQUIRES(mu_);
  // An extent of `sectors` for a new packed block (a sync first when only
  // pending frees could make room at capacity). ENOSPC at capacity.
  Result<SectorExtent> AllocSectorsLocked(uint32_t sectors) REQUIRES(mu_);
  // Loads the slot and sector allocators from the PAT (Init).
  Status LoadAllocatorsLocked() REQUIRES(mu_);
  // Adds the transaction's LAT entry deltas to swap_file.mapped_blocks.
  Status AddMappedLocked(const ApplyTxn& txn) REQUIRES(mu_);

  // ---- RADOS mode (catalog_rados.cc; docs/RADOS.md, "Write ordering").
  // ApplyBlockOps of a RADOS catalog: plans the references the batch's new
  // blocks need (intent rows, committed), takes them with every call in
  // flight at once and verifies local matches by reading their objects,
  // both outside mu_, then applies the batch (ApplyLocked with the plan),
  // replanning when the apply meets a block the plan did not foresee; then
  // drops the references the batch freed.
  Result<ApplyResult> ApplyRados(std::span<const BlockOp> ops, std::span<const FileMetaUpdate> meta)
      EXCLUDES(mu_, drain_mu_);
  // One planning round: what the batch needs that `plan` does not hold yet.
  // New references get holders and intent rows (committed here); local
  // matches to verify are listed. *work_left: whether anything was added.
  Status PlanRadosLocked(std::span<const BlockOp> ops, RadosPlan& plan) REQUIRES(mu_);
  // Moves the plan's references that no committed row uses to rados_unref
  // (in its own transaction), when an apply is given up.
  Status AbandonPlanLocked(RadosPlan& plan) REQUIRES(mu_);
  // The apply transaction's part of a new block in RADOS mode: its pblock
  // (the holder of the reference the plan took), its rados_block row, its
  // intent row gone. EAGAIN when the plan holds no reference for it.
  Result<int64_t> RadosNewBlockLocked(const BlockOp& op, const BlockHash& hash, ApplyTxn& txn) REQUIRES(mu_);
  // Whether local block `cand` (of the op's chain and hash key) is the op's
  // block: the same whole hash, and (verify-on-match) the same bytes, as
  // the plan read them. EAGAIN when the plan did not compare them.
  Result<bool> RadosSameBlockLocked(int64_t cand, const BlockOp& op, const BlockHash& hash, ApplyTxn& txn)
      REQUIRES(mu_);
  // A freed block: its rados_block row becomes a rados_unref row.
  Status RadosFreeLocked(int64_t pblock, int64_t dedup_id, ApplyTxn& txn) REQUIRES(mu_);
  // At the end of an apply transaction with a plan: the plan's references
  // that no row of it uses go to rados_unref (refused ones just lose their
  // intent row).
  Status SettlePlanLocked(ApplyTxn& txn) REQUIRES(mu_);
  // The chain's cluster-wide ID (chain.rados_id), cached. EUCLEAN if unset.
  Result<std::string> RadosIdLocked(int64_t dedup_id) REQUIRES(mu_);
  // The rados_block row of `pblock`: its whole hash and whether its object
  // has a private name. nullopt when it has none; EUCLEAN for a malformed hash.
  struct RadosBlockRow {
    BlockHash hash;
    bool private_name = false;
  };
  Result<std::optional<RadosBlockRow>> RadosBlockLocked(int64_t pblock) REQUIRES(mu_);
  // A block of this host with the chain and whole hash, referencing the
  // shared object, if any.
  Result<std::optional<int64_t>> RadosLocalBlockLocked(int64_t dedup_id, const BlockHash& hash) REQUIRES(mu_);
  // ReadBlocks of a RADOS catalog.
  Status ReadBlocksRados(int64_t file_id, uint64_t lba, uint32_t count, uint8_t* out) EXCLUDES(mu_);
  // CreateChain of a RADOS catalog: joins chain.NAME in the pool (outside
  // mu_), then inserts the row with the pool's ID and seed.
  Result<ChainInfo> CreateRadosChain(const std::string& name, uint32_t mode, uint32_t uid, uint32_t gid,
                                     int64_t now_ns) EXCLUDES(mu_);
  // At a read-write open: every rados_intent row is a crash's leftover; its
  // reference (taken or not) is dropped, then the unref queue is drained.
  Status ResolveRadosAtOpen() EXCLUDES(mu_, drain_mu_);

  // ---- Shared by the parts.
  // The keyed hasher of a chain, from the cache or the chain's seed. ENOENT.
  Result<std::shared_ptr<const BlockHasher>> HasherForLocked(int64_t dedup_id) REQUIRES(mu_);
  // The chain of a swap file. ENOENT.
  Result<int64_t> ChainOfFileLocked(int64_t file_id) REQUIRES(mu_);
  // Sync (also used by the apply routine: to bound the WAL, and to recycle
  // pending frees when the store is at capacity).
  Status SyncLocked(bool idle) REQUIRES(mu_);
  // Size of the WAL file (0 before the first Sync opened it).
  uint64_t WalBytesLocked() REQUIRES(mu_);

  // Constant after construction.
  const CatalogOptions options_;
  const std::string path_;
  ContentStore* const store_;
  RadosBackend* const rados_;  // options_.rados
  // Set by Init from meta store (constant afterwards).
  bool rados_mode_ = false;

  // One drain of rados_unref at a time (DrainRadosUnrefs): held across its
  // RADOS calls, never by a request; taken before mu_.
  Mutex drain_mu_ ACQUIRED_BEFORE(mu_);

  // The writer mutex: the main connection and what only its holder
  // touches. Held for whole transactions (across a batch's new-block store
  // writes) and across Sync's fdatasyncs.
  Mutex mu_ ACQUIRED_BEFORE(sectors_.mutex());
  sql::Db db_ GUARDED_BY(mu_);
  std::unique_ptr<catalog_sql::WriterStatements> st_ GUARDED_BY(mu_);
  std::map<int64_t, std::shared_ptr<const BlockHasher>> hashers_ GUARDED_BY(mu_);  // by dedup ID
  int wal_fd_ GUARDED_BY(mu_) = -1;  // the WAL, opened by the first Sync
  // The hash index's changes not merged into hash_index yet (hash_log).
  HashLog hash_log_ GUARDED_BY(mu_);
  // Whether hash_log has rows (to merge, or to delete): set under mu_ after
  // each commit, read lock-free by HasSlotsToRelease().
  std::atomic<bool> hash_log_pending_{false};
  // The hash table's counters as committed (meta hash_entries,
  // hash_unindexed), its quota (0: none) and whether reaching it was
  // logged since the open.
  uint64_t hash_entries_ GUARDED_BY(mu_) = 0;
  uint64_t hash_unindexed_ GUARDED_BY(mu_) = 0;
  uint64_t hash_limit_ GUARDED_BY(mu_) = 0;
  bool quota_logged_ GUARDED_BY(mu_) = false;
  // Counts the Syncs that made freed space reusable or moved blocks
  // (compaction): while it stays the same, a block the PAT has keeps its
  // location and bytes. WritePrep's verifications made since a prediction
  // are accepted only under the prediction's epoch.
  uint64_t store_epoch_ GUARDED_BY(mu_) = 0;

  // Whether new blocks are compressed (set by Init).
  std::atomic<bool> compress_{false};
  // The free list; its own lock, taken inside mu_ only (and inside
  // sectors_'s, whose pages it hands out).
  SlotAllocator slots_;
  // The packed blocks' sectors; its own lock, taken inside mu_ only.
  SectorAllocator sectors_;
  // The reader connections; their own lock, never held with mu_.
  ReaderPool readers_;

  // Set by the engine's thread, read by the apply routine on every hash
  // match: an atomic flag, no lock.
  std::atomic<bool> force_verify_{false};

  // Compaction moves blocks without a newer staged op shadowing them: a
  // read that looked up a moved block's old pblock must finish before the
  // old extent can be reused. Reads (ReadBlocks) hold it shared from their
  // LAT lookup to their last store read; compaction takes it exclusively,
  // once, between its commit and the Sync that frees the old extents
  // (inside mu_). A read holds it without mu_, except on a read-only
  // catalog (no reader connections: it takes mu_ for its lookup), which
  // never compacts: no wait between the two can form a cycle.
  SharedMutex moving_mu_;
  // Whether an idle Sync should run a compaction pass (the free sectors are
  // over the threshold, and the last pass moved blocks or blocks were freed
  // since): set under mu_ by Sync, read lock-free by HasSlotsToRelease().
  std::atomic<bool> compact_wanted_{false};
  bool compact_retry_ GUARDED_BY(mu_) = true;

  // RADOS mode: the next holder number (meta rados_next_holder; a holder,
  // and the pblock of the block it references, is never reused), and the
  // chains' cluster-wide IDs by dedup ID.
  int64_t next_holder_ GUARDED_BY(mu_) = 1;
  std::map<int64_t, std::string> rados_ids_ GUARDED_BY(mu_);
  // Whether rados_unref may have rows (set after a commit that queued some,
  // cleared by a drain that emptied it): read lock-free by
  // HasSlotsToRelease(), so that an idle Sync drains what a cluster outage
  // left.
  std::atomic<bool> rados_unrefs_pending_{false};
  // Whether the last drain failed (its warning is logged once per outage).
  bool drain_failing_ GUARDED_BY(drain_mu_) = false;
};

}  // namespace chainswap
