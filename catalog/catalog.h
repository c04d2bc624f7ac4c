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
// only punched and reused after that transaction committed. So the catalog
// never references a slot whose bytes were overwritten.
//
// Thread-safety: every public method is thread-safe; one internal mutex (mu_)
// serializes use of the SQLite connection and the slot allocator. Store I/O
// for reads happens outside the lock (ReadBlocks), safe because a referenced
// slot is never rewritten.
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
#include "catalog/sqlite.h"
#include "catalog/status.h"

namespace chainswap {

// The catalog's WAL is checkpointed at a Sync once it grows past
// kWalCheckpointBytes; when it starts over, the file is cut back to
// kWalReserveBytes. When idle, a WAL longer than kWalReserveBytes is folded
// into the database and emptied.
inline constexpr uint64_t kWalCheckpointBytes = 4u << 20;
inline constexpr uint64_t kWalReserveBytes = 1u << 20;
// Free slots whose bytes are still allocated in the store are reused before
// punched ones: an overwrite into them costs the backing fs no new extent.
// A Sync under load keeps up to this many of them (the lowest, reused
// first) and punches the rest; an idle Sync punches them all.
inline constexpr uint64_t kUnpunchedReserveSlots = 4096;  // 16 MiB

struct CatalogOptions {
  bool dedup_verify = true;      // compare bytes on a hash match (SPEC §4.3)
  uint64_t capacity_slots = 0;   // 0: unlimited (bounded by the backing fs)
  bool read_only = false;
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
  uint64_t stored_bytes = 0;    // PAT entries * 4 KiB
};

// One row of the file_stats view. stored_bytes is the file's fair share:
// each of its blocks counts 4 KiB / refcount.
struct FileStats {
  int64_t file_id = 0;
  int64_t dedup_id = 0;
  std::string chain, name;
  uint64_t logical_bytes = 0, nonzero_bytes = 0, zero_blocks = 0, stored_bytes = 0;
};

struct StoreUsage {
  uint64_t used_slots = 0;      // PAT entries
  uint64_t free_slots = 0;      // on the free list
  uint64_t high_water = 0;      // slots ever used (store length)
  uint64_t capacity_slots = 0;  // 0: unlimited
};

// The result of ApplyBlockOps, for counters.
struct ApplyResult {
  uint64_t blocks_stored = 0;    // new PAT entries (data written)
  uint64_t blocks_deduped = 0;   // writes that matched an existing block
  uint64_t blocks_freed = 0;     // PAT entries dropped at refcount 0
  uint64_t collisions = 0;       // hash matched, bytes differed
};

class Catalog {
 public:
  ~Catalog();
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  // Creates a new, empty catalog database at `path` (0600). EEXIST if present.
  static Status Create(const std::string& path);
  // Opens an existing catalog; `store` must outlive the catalog. Fails with
  // EUCLEAN for a file that is not a chainswap catalog or is corrupt, EPROTO
  // for a newer schema, ENOENT when missing.
  static Result<std::unique_ptr<Catalog>> Open(const std::string& path, ContentStore* store,
                                               const CatalogOptions& options);

  // ---- Namespace -------------------------------------------------------
  // The chain directories (removed chains whose files are still being
  // reclaimed are not listed).
  Result<std::vector<ChainInfo>> ListChains();
  // Every swap file, including unlinked ones still being reclaimed.
  Result<std::vector<FileInfo>> ListFiles();
  // Creates a chain with a new dedup ID and a fresh secret seed. EEXIST.
  Result<ChainInfo> CreateChain(const std::string& name, uint32_t mode, uint32_t uid,
                                uint32_t gid, int64_t now_ns);
  Status UpdateChain(const ChainInfo& chain);  // name, mode, owner, times
  // Removes a chain directory: ENOTEMPTY while it has linked files. Its row
  // goes at once when it has no files at all (returns true); with unlinked
  // files still being reclaimed it stays, nameless (a new chain may take the
  // name at once), until DropFile drops the last of them (returns false).
  Result<bool> RemoveChain(int64_t dedup_id);
  Result<FileInfo> CreateFile(int64_t dedup_id, const std::string& name, uint32_t mode,
                              uint32_t uid, uint32_t gid, int64_t now_ns);
  // Persists name/size/mode/owner/times of `file` (mapped_blocks is the
  // catalog's own). A file with unlinked=true gets name NULL.
  Status UpdateFile(const FileInfo& file);
  // Atomically renames `file_id` and, if `replaced_id` is set, unlinks it.
  Status RenameFile(int64_t file_id, const std::string& new_name, std::optional<int64_t> replaced_id);
  // Deletes the row of a file, and the row of its chain when the chain was
  // removed and this was its last file. ENOENT when there is no such file,
  // EBUSY while its LAT still has entries.
  Status DropFile(int64_t file_id);

  // ---- Journal ---------------------------------------------------------
  // The newest journal bucket whose effects the catalog holds (meta key
  // journal_retired_through; 0 when none). A bucket is recorded here, and
  // the catalog synced, before its segment is deleted: a segment that comes
  // back after a power cut (its unlink was not durable) is recognized as
  // retired and never replayed over newer state.
  Result<uint64_t> JournalRetiredThrough();
  Status SetJournalRetiredThrough(uint64_t bucket);

  // ---- Blocks ----------------------------------------------------------
  // Keyed hasher of a chain (cached). ENOENT for an unknown chain.
  Result<std::shared_ptr<const BlockHasher>> HasherFor(int64_t dedup_id);

  // The one apply routine (SPEC §4, §5): applies every op and every meta
  // update in one transaction. On error nothing is applied (ENOSPC when no
  // slot can be had, EIO for store I/O errors).
  Result<ApplyResult> ApplyBlockOps(std::span<const BlockOp> ops,
                                    std::span<const FileMetaUpdate> meta = {});

  // O(metadata) copy (SPEC §6 clone): makes [dst_lba, dst_lba + count) of
  // dst map exactly what [src_lba, src_lba + count) of src maps (LAT copy and
  // refcount increments, one transaction). EXDEV across chains, EINVAL for
  // overlapping ranges of one file.
  Status CloneRange(int64_t src_file, int64_t dst_file, uint64_t src_lba, uint64_t dst_lba, uint64_t count);

  // Reads `count` blocks of a file starting at `lba` into out; holes read as
  // zeros. REQUIRES: the caller excludes concurrent writes to this range.
  Status ReadBlocks(int64_t file_id, uint64_t lba, uint32_t count, uint8_t* out);
  // Number of LAT entries of a file (its allocated blocks).
  Result<uint64_t> MappedBlocks(int64_t file_id);
  // In one read snapshot: the file's LAT entries in total, and how many of
  // them lie inside `ranges` (sorted, disjoint [first, last) LBA ranges).
  struct MappedCount {
    uint64_t total = 0;
    uint64_t within = 0;
  };
  Result<MappedCount> MappedBlocksWithin(int64_t file_id, std::span<const std::pair<uint64_t, uint64_t>> ranges);
  // Lowest LBA >= lba that is mapped, if any (for SEEK_DATA).
  Result<std::optional<uint64_t>> NextMapped(int64_t file_id, uint64_t lba);

  // ---- Statistics ------------------------------------------------------
  Result<std::vector<ChainStats>> Stats();
  Result<std::vector<FileStats>> PerFileStats();
  StoreUsage Usage();
  // True while freed slots wait for a Sync (to become reusable, or to be
  // punched): the engine calls Sync when idle so space comes back. Lock-free.
  bool HasSlotsToRelease() const { return slots_to_release_.load(std::memory_order_relaxed); }
  // Verify bytes on every hash match even with dedup_verify off. Set after a
  // crash: committed catalog rows may reference slots whose bytes never
  // reached the disk (the store is synced only at retirement and fsync), and
  // replaying the journal through verification heals them.
  void ForceVerify(bool on) { force_verify_.store(on); }
  // Checks that the store file is long enough for every slot the PAT
  // references: EUCLEAN naming both lengths otherwise.
  Status CheckStoreLength();
  // fdatasync of the store, then of the catalog's WAL (both under the
  // catalog mutex): every committed transaction is durable when this
  // returns OK, never before the store bytes it references. Then slots
  // whose frees are now durable become reusable, and free slots left
  // unused since the previous Sync are punched beyond the lowest
  // kUnpunchedReserveSlots. `idle` (nothing is being destaged): punches
  // them all, and folds a WAL longer than kWalReserveBytes into the
  // database and empties it (gives up after 50 ms if a reader is in it).
  Status Sync(bool idle = false);
  // Size of the WAL file (0 before the first Sync opened it).
  uint64_t WalBytes();

  // Direct access for offline tools (fsck) that run their own queries.
  // REQUIRES: no concurrent use of the catalog.
  sql::Db& db_for_tools() { return db_; }

 private:
  struct Statements;
  struct Reader;
  // A reader connection from the pool (created on demand), returned by the
  // deleter. Readers see committed state only and never take mu_.
  std::unique_ptr<Reader, std::function<void(Reader*)>> AcquireReader();
  Catalog(sql::Db db, ContentStore* store, const CatalogOptions& options, std::string path);
  Status LoadAllocator();
  Status PrepareStatements();
  // Helpers below REQUIRE mu_ held and a transaction open.
  Status ApplyWriteLocked(const BlockOp& op, ApplyResult& res);
  Status ApplyDeleteLocked(const BlockOp& op, ApplyResult& res);
  Status UnrefLocked(int64_t pblock, int64_t n, ApplyResult& res);
  Result<uint64_t> AllocSlotLocked();
  // Queues the slots freed by the committed transaction until the next
  // Sync makes the frees durable. REQUIRES: mu_ held, after the commit.
  void ReleaseFreedLocked();
  // Sync with mu_ held (also used by the allocator to recycle pending frees).
  Status SyncLocked(bool idle);
  // Punches the free slots whose old bytes are still allocated in the
  // store, all but the lowest `keep`. REQUIRES: mu_ held.
  void PunchFreeSlotsLocked(uint64_t keep);
  // Copies the allocator's committed figures to the pub_* atomics that
  // Usage() reads. REQUIRES: mu_ held, outside a transaction.
  void PublishUsageLocked();
  Result<std::shared_ptr<const BlockHasher>> HasherForLocked(int64_t dedup_id);

  const CatalogOptions options_;
  const std::string path_;
  ContentStore* const store_;

  std::mutex mu_;
  // --- guarded by mu_ ---
  sql::Db db_;
  std::unique_ptr<Statements> st_;
  std::set<uint64_t> free_slots_;          // reusable now, lowest first
  std::set<uint64_t> unpunched_;           // free slots not yet punched (subset), reused first
  std::vector<uint64_t> pending_free_;     // freed by commits not yet synced: not reusable yet
  uint64_t high_water_ = 0;                // first never-used slot
  uint64_t used_slots_ = 0;                // PAT entries
  std::map<int64_t, std::shared_ptr<const BlockHasher>> hashers_;
  // Per-transaction scratch (valid only inside ApplyBlockOps):
  std::vector<uint64_t> txn_freed_;                      // punched + freed after commit
  std::vector<std::pair<uint64_t, bool>> txn_allocated_; // (slot, came from free list)
  std::map<uint64_t, const uint8_t*> txn_new_data_;      // slot -> bytes to write
  std::map<int64_t, int64_t> txn_mapped_delta_;          // file -> LAT entry delta
  int wal_fd_ = -1;
  // Committed allocator figures, written under mu_, read without it.
  std::atomic<uint64_t> pub_used_{0}, pub_free_{0}, pub_high_{0};
  std::atomic<bool> slots_to_release_{false};  // pending_free_ or unpunched_ non-empty
  std::atomic<bool> force_verify_{false};

  std::mutex readers_mu_;
  std::vector<std::unique_ptr<Reader>> idle_readers_;  // guarded by readers_mu_
};

}  // namespace chainswap
