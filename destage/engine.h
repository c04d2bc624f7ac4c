// The block engine (SPEC §3-§5): the byte-level API of swap files. The FUSE
// edge talks to swap files only through this class:
//
//   Write / Zero / Truncate / Reclaim  build whole-block operations (with
//       read-modify-write of partial blocks) and append them to the bucket
//       journal (destage/bucket_journal.h): the op is acknowledged.
//   Read  overlays the staging index (latest unretired op per LBA) on the
//       catalog, so it always returns the latest acknowledged data.
//   Sync  makes every acknowledged op durable (journal, then catalog).
//
// The engine owns its three parts and holds no lock of its own: the bucket
// journal (appends, admission, fsync, replay), the staging index, and the
// destagers (destage/destagers.h) that apply sealed buckets to the catalog
// in the background and retire them. Their locks, in order: Destagers'
// retire_mu_ and stripes, then Destagers::mu_ / BucketJournal's append_mu_
// or sync_mu_ then BucketJournal::mu_, then the staging index's, the
// logical queue's and the catalog's locks (leaves).
//
// REQUIRES (callers): for one file, a mutation never runs concurrently with
// any other operation on that file (fs/ holds the file's io lock).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "catalog/status.h"
#include "destage/bucket_journal.h"
#include "destage/destagers.h"
#include "destage/staging_index.h"

namespace chainswap {

struct FileRef {
  int64_t file_id = 0;
  int64_t dedup_id = 0;
};

struct EngineOptions {
  std::string journal_dir;                   // BACKING/journal
  uint64_t bucket_bytes = 16ull << 20;       // seal a bucket at this size
  uint64_t journal_limit = 256ull << 20;     // writers wait above this
  uint32_t idle_seal_ms = 20;                // seal a non-empty bucket after this idle time
  // Write-back delay (DestagerOptions::write_delay_ms; its byte trigger is
  // half of journal_limit). 0: destage at once.
  uint32_t write_delay_ms = 0;
  uint64_t backing_reserve = 64ull << 20;    // keep this much of the backing fs free
  SlotPolicyConfig queue;                    // N, D_min, thresholds
  bool start_destagers = true;               // tests may drive destage by hand
  // An fsync that finds at least this much journal not yet durable, and
  // that at least half of the unretired journal up to it, makes it durable
  // by destaging it (waiting for its buckets to retire, up to
  // kFsyncDestageWait) instead of syncing the journal; 0: always the journal.
  uint64_t fsync_destage_bytes = 16ull << 20;
};

// How long an fsync waits for the destagers before it syncs the journal.
inline constexpr std::chrono::milliseconds kFsyncDestageWait{5000};

// Returns the problems with `o` (empty when valid).
std::vector<std::string> ValidateEngineOptions(const EngineOptions& o);

struct EngineStats {
  uint64_t w_bucket = 0, x_bucket = 0;   // next bucket of each destager
  uint32_t n = 0, d = 0;                 // logical queue
  uint64_t journal_bytes = 0, journal_limit = 0;
  uint64_t buckets = 0;                  // unretired
  uint64_t journal_syncs = 0;            // segment fdatasyncs done
  uint64_t fsyncs_destaged = 0;          // fsyncs made durable by destage (EngineOptions::fsync_destage_bytes)
  uint64_t staged_write_blocks = 0, staged_delete_ranges = 0;
  uint64_t pending_records = 0;          // not yet destaged by their destager
  uint64_t writes_absorbed = 0, ops_destaged = 0, blocks_stored = 0, blocks_deduped = 0,
           blocks_freed = 0, enospc = 0, policy_changes = 0;
  double store_usage = 0;
  std::string error;                     // sticky background error, if any
};

class Engine {
 public:
  Engine(Catalog& catalog, EngineOptions options);
  ~Engine();  // stops the destagers
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Replays the journal (SPEC §5 crash safety): reads every segment in order,
  // cuts a torn tail, rebuilds buckets and the staging index, and reports the
  // newest size of every file with records in *meta. Reads and writes work
  // from here on. EUCLEAN for a journal corrupt in the middle.
  Status Open(std::map<int64_t, ReplayedMeta>* meta);
  // Starts the destager and retirer threads (after fuse_daemonize: threads do not
  // survive its fork). No-op when options.start_destagers is false.
  void Start();
  // Destages everything (when the destagers run), stops them and syncs. What
  // cannot be destaged (after a background error) stays in the journal.
  // REQUIRES: called once the FUSE session no longer calls in.
  Status Stop();

  // Writes `data` at byte `offset` of a file whose size is `size`; `meta`
  // carries the size and times after the write. Waits while the journal is
  // full; ENOSPC when the content store cannot take more.
  Status Write(FileRef f, uint64_t offset, std::span<const uint8_t> data, uint64_t size,
               const FileMetaUpdate& meta);
  // Reads up to `len` bytes at `offset` of a file of `size` bytes; returns
  // the number of bytes read. Holes read as zeros.
  Result<size_t> Read(FileRef f, uint64_t offset, size_t len, uint64_t size, uint8_t* out);
  // Makes [offset, offset+len) (clipped to `size`) read as zeros.
  Status Zero(FileRef f, uint64_t offset, uint64_t len, uint64_t size, const FileMetaUpdate& meta);
  // Changes the size; shrinking deletes what lies past the new end.
  Status Truncate(FileRef f, uint64_t old_size, uint64_t new_size, const FileMetaUpdate& meta);
  // Queues the reclaim of an unlinked file: all its blocks, then its row.
  // Returns at once; the delete destager does the work.
  Status Reclaim(FileRef f, uint64_t size);
  // O(metadata) clone of whole blocks: after it, dst's [dst_lba, +count)
  // reads as src's [src_lba, +count). Drains the journal first so both
  // files' ops are in the catalog, clones there, syncs the catalog, and
  // journals dst's new size (`meta`). EXDEV across chains.
  // REQUIRES: the caller holds both files' io locks (dst exclusively).
  Status CloneBlocks(FileRef src, FileRef dst, uint64_t src_lba, uint64_t dst_lba, uint64_t count,
                     const FileMetaUpdate& meta);

  // Migration (RADOS mode; Catalog::ExportFile, ImportFile): drains the
  // journal so that the file's ops are in the catalog, then exports its LAT.
  // REQUIRES: the caller holds the file's io lock exclusively.
  Result<FileExport> ExportFile(FileRef f);
  // Drains, maps the empty file `dst` onto the export's blocks, syncs the
  // catalog, and journals dst's size (`meta`), as CloneBlocks does.
  // REQUIRES: the caller holds dst's io lock exclusively.
  Status ImportFile(FileRef dst, const FileExport& exp, const FileMetaUpdate& meta);

  // Makes every op acknowledged before the call durable: journal segments,
  // then the catalog (namespace changes) and the store. Returns only once an
  // fdatasync that started after those appends has succeeded (concurrent
  // callers share rounds). After a failed journal fdatasync, returns EIO
  // from then on (sticky until the next mount).
  Status Sync();
  // First offset >= `offset` that may hold data (SEEK_DATA), or nullopt.
  Result<std::optional<uint64_t>> NextData(FileRef f, uint64_t offset, uint64_t size);

  // Blocks until every bucket sealed so far is retired (tests, tools, bench).
  // With give_up_when_store_full, returns ENOSPC instead of waiting while the
  // write destager waits for space (used by Stop: the journal keeps them).
  Status Drain(bool give_up_when_store_full = false);

  EngineStats Stats();
  // Write blocks of a file still in the staging index.
  uint64_t StagedWriteBlocks(int64_t file_id) const { return index_.StagedWrites(file_id); }
  // What the staged ops of a file cover (see StagingIndex::StagedFootprint).
  std::optional<StagingIndex::Footprint> StagedFootprint(int64_t file_id, size_t max_ranges) const {
    return index_.StagedFootprint(file_id, max_ranges);
  }
  const EngineCounters& counters() const { return counters_; }
  Catalog& catalog() { return catalog_; }

 private:
  // The records of one op (a write, punch or truncate), appended together
  // by Commit: a crash leaves all of them or none (BucketJournal::Append).
  // It holds the op's read-modify-written edge blocks (two at most).
  struct Op {
    std::vector<PendingRecord> records;
    alignas(64) uint8_t edges[2][kBlockSize];
    int edges_used = 0;
  };
  // Adds blocks [lba, lba + n) of a write held in buf to `op`: runs of zero
  // blocks as delete records, the rest as write records. buf must live
  // until the op is committed.
  void AddBlocks(FileRef f, uint64_t lba, uint64_t n, const uint8_t* buf, const FileMetaUpdate& meta,
                 bool space_exempt, Op* op);
  // Adds the records of writing `data` at `offset` to `op`: whole blocks
  // straight from `data`, partial edge blocks read-modify-written into the
  // op's edge buffers. `size`: the file's size before the write.
  Status AddWrite(FileRef f, uint64_t offset, std::span<const uint8_t> data, uint64_t size,
                  const FileMetaUpdate& meta, bool space_exempt, Op* op);
  // Appends the op's records (BucketJournal::Append), counting refusals for
  // space.
  Status Commit(Op& op);
  Status ReadBlocks(int64_t file_id, uint64_t lba, uint64_t n, uint8_t* out);
  // Commit of an op of one record.
  Status Append(Record r, bool space_exempt);
  // A size-only record of `f` (exempt from space checks): after a clone or
  // an import changed the file in the catalog directly.
  Status AppendSize(FileRef f, const FileMetaUpdate& meta);

  Catalog& catalog_;
  const EngineOptions options_;
  EngineCounters counters_;
  StagingIndex index_;
  BucketJournal journal_;
  Destagers destagers_;
  bool stopped_ = false;  // touched only by the thread that owns the engine (Open, Stop)
};

}  // namespace chainswap
