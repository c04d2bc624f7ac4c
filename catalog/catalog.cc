// The catalog: opening, the journal mark, Sync and the WAL, usage. The other
// parts of Catalog are in catalog_namespace.cc, catalog_apply.cc and
// catalog_read.cc; their SQL in catalog_sql.h.
#include "catalog/catalog.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <vector>

#include "catalog/catalog_sql.h"
#include "catalog/rados_backend.h"
#include "catalog/stored_block.h"
#include "catalog/schema.h"

namespace chainswap {

namespace {

// Half of the budget is the writer's page cache, half the hash log.
uint64_t CacheBudget(const CatalogOptions& o) { return std::max(o.cache_bytes, kMinCatalogCacheBytes); }
uint64_t PageCacheBytes(const CatalogOptions& o) { return CacheBudget(o) / 2; }
size_t HashLogEntries(const CatalogOptions& o) { return HashLog::EntriesFor(CacheBudget(o) / 2); }

}  // namespace

Catalog::Catalog(sql::Db db, ContentStore* store, const CatalogOptions& options, std::string path)
    : options_(options),
      path_(std::move(path)),
      store_(store),
      rados_(options.rados),
      db_(std::move(db)),
      hash_log_(HashLogEntries(options)),
      slots_(options.capacity_slots, kUnpunchedReserveSlots,
             [store](uint64_t first, uint64_t count) { return store->PunchSlots(first, count); }),
      sectors_(
          [this](std::optional<uint64_t> want) -> Result<uint64_t> {
            auto a = slots_.Allocate(want);
            if (!a.ok()) return a.status();
            return a->slot;
          },
          [this](uint64_t page) { slots_.Release(page); }),
      readers_(path_, catalog_sql::OpenPragmas(kReaderCacheBytes, options.mmap_bytes)) {}

Catalog::~Catalog() {
  st_.reset();  // finalize statements before the connection closes
  if (wal_fd_ >= 0) ::close(wal_fd_);
}

Status Catalog::Create(const std::string& path, bool compress, const RadosConfig* rados) {
  if (::access(path.c_str(), F_OK) == 0) return Status::Error(EEXIST, path + " already exists");
  // Create the file 0600 before SQLite opens it so the mode is never wider.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno("create " + path);
  ::close(fd);
  auto db = sql::Db::Open(path, SQLITE_OPEN_READWRITE);
  if (!db.ok()) return db.status();
  CS_RETURN_IF_ERROR(db->Exec(catalog_sql::kCreatePragmas));
  CS_RETURN_IF_ERROR(CreateSchema(*db, compress && !rados));
  if (!rados) return Status::Ok();
  return WriteRadosConfig(*db, *rados);
}

namespace {

// A read-only open of a WAL database needs its -shm file, which SQLite cannot
// create on a read-only filesystem. When nothing is in the WAL (a clean stop
// checkpoints and removes it) and nobody can be writing (the filesystem is
// read-only), the database can be opened as immutable instead.
bool CanOpenImmutable(const std::string& path) {
  struct statvfs sv;
  if (::statvfs(path.c_str(), &sv) != 0 || !(sv.f_flag & ST_RDONLY)) return false;
  struct stat st;
  return ::stat((path + "-wal").c_str(), &st) != 0 || st.st_size == 0;
}

std::string ImmutableUri(const std::string& path) {
  std::string uri = "file:";
  for (char c : path) {
    if (c == '%' || c == '?' || c == '#') {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
      uri += buf;
    } else {
      uri += c;
    }
  }
  return uri + "?immutable=1";
}

}  // namespace

Result<std::unique_ptr<Catalog>> Catalog::Open(const std::string& path, ContentStore* store,
                                               const CatalogOptions& options) {
  if (::access(path.c_str(), F_OK) != 0) return Status::FromErrno("catalog " + path);
  const bool immutable = options.read_only && CanOpenImmutable(path);
  if (immutable) spdlog::info("catalog {}: read-only filesystem, opened as immutable", path);
  auto db = immutable ? sql::Db::Open(ImmutableUri(path), SQLITE_OPEN_READONLY | SQLITE_OPEN_URI)
                      : sql::Db::Open(path, options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE);
  if (!db.ok()) return db.status();
  if (!options.read_only) {
    Status st = db->Exec(catalog_sql::ReadWritePragmas(kWalReserveBytes));
    if (!st.ok()) return Status::Error(st.code() == EIO ? EUCLEAN : st.code(),
                                       "catalog " + path + ": " + st.message());
  }
  CS_RETURN_IF_ERROR(db->Exec(catalog_sql::OpenPragmas(PageCacheBytes(options), options.mmap_bytes)));
  auto version = CheckAndUpgradeSchema(*db, options.read_only);
  if (!version.ok()) return Status::Error(version.status().code(), path + ": " + version.status().message());
  // A read-only open of an older version reads only what every version has
  // (Init prepares no apply statement).
  std::unique_ptr<Catalog> cat(new Catalog(std::move(*db), store, options, path));
  Status is = cat->Init();
  if (!is.ok()) return Status::Error(is.code(), "catalog " + path + ": " + is.message());
  // RADOS mode: what an interrupted destage left (rados_intent) and the
  // references still to drop (rados_unref), before anything else runs.
  is = cat->ResolveRadosAtOpen();
  if (!is.ok()) return Status::Error(is.code(), "catalog " + path + ": RADOS references left by the last run: " +
                                                    is.message());
  return cat;
}

Status Catalog::Init() {
  MutexLock lock(&mu_);
  auto st = catalog_sql::WriterStatements::Prepare(db_, /*reads_only=*/options_.read_only);
  if (!st.ok()) return st.status();
  st_ = std::move(*st);

  {
    auto rc = ReadRadosConfig(db_);
    if (!rc.ok()) return rc.status();
    rados_mode_ = rc->has_value();
    if (rados_mode_ && !rados_ && !options_.read_only)
      return Status::Error(ENOTCONN, "its blocks are in RADOS pool '" + (*rc)->target.pool +
                                         "': a read-write open needs a connection");
    if (rados_mode_ && rados_ && rados_->host() != (*rc)->host)
      return Status::Error(EINVAL, "connected as RADOS host " + rados_->host() + ", but the catalog is host " +
                                       (*rc)->host);
  }
  uint64_t end = 0;
  if (rados_mode_) {
    // No slots: a pblock is a holder number (rados_backend.h).
    sectors_.LoadDone();
    slots_.Load({}, 0, 0);
    auto q = sql::Stmt::Prepare(db_, catalog_sql::kRadosNextHolder);
    if (!q.ok()) return q.status();
    auto r = q->Step();
    if (!r.ok()) return r.status();
    if (!*r || q->IsNull(0) || q->Int(0) < 1) return Status::Error(EUCLEAN, "meta rados_next_holder is missing");
    next_holder_ = q->Int(0);
  } else {
    CS_RETURN_IF_ERROR(LoadAllocatorsLocked());
    end = slots_.usage().high_water;
  }
  {
    auto c = sql::Stmt::Prepare(db_, catalog_sql::kMetaCompress);
    if (!c.ok()) return c.status();
    auto r = c->Step();
    if (!r.ok()) return r.status();
    const bool recorded = *r && c->Text(0) == "lz4";
    // RADOS mode stores raw blocks: every host then creates the same bytes
    // under a block's name, which the verifying create compares.
    if (rados_mode_ && options_.compress.value_or(false))
      spdlog::warn("catalog: compression is off for a RADOS store (compress=lz4 ignored)");
    compress_.store(!rados_mode_ && options_.compress.value_or(recorded), std::memory_order_relaxed);
  }
  CS_RETURN_IF_ERROR(LoadHashCountersLocked());
  if (options_.read_only) return Status::Ok();

  // The hash log, replayed (HashLog::LoadRow): it is merged again from its
  // start, whatever of it was merged before.
  auto log = sql::Stmt::Prepare(db_, catalog_sql::kHashLogRows);
  if (!log.ok()) return log.status();
  for (;;) {  // a loop, not ForEachRow: the analysis sees mu_ held here
    auto r = log->Step();
    if (!r.ok()) return r.status();
    if (!*r) break;
    hash_log_.LoadRow(log->Int(0), log->Int(1), log->Int(2), log->Int(3) != 0);
  }
  hash_log_.Loaded();
  hash_log_pending_.store(hash_log_.log_rows() > 0, std::memory_order_relaxed);

  // Slots above the highest one in use hold nothing the catalog references
  // (freed ones, or a crashed transaction's new blocks): give them back.
  auto len = store_->LengthSlots();
  if (len.ok() && *len > end) {
    Status ts = store_->TruncateToSlots(end);
    if (!ts.ok()) spdlog::warn("catalog: {}", ts.ToString());
  }
  return Status::Ok();
}

Status Catalog::LoadAllocatorsLocked() {
  // Raw blocks (pblock >= 0) own their slot; packed blocks (pblock < 0,
  // stored_block.h) own sectors of pack pages, the pages they touch. The
  // free slots are the gaps below the highest slot in use. Two scans,
  // merged: packed blocks by descending pblock (ascending sector), raw ones
  // by ascending pblock; memory stays that of the free list.
  auto packed = sql::Stmt::Prepare(db_, catalog_sql::kPatPackedBlocks);
  if (!packed.ok()) return packed.status();
  auto raw = sql::Stmt::Prepare(db_, catalog_sql::kPatRawBlocks);
  if (!raw.ok()) return raw.status();
  std::optional<uint64_t> next_raw, next_page;  // the next slot in use of each stream
  uint64_t page_end = 0;                        // pages of the current packed extent not yet given out
  auto step_raw = [&]() -> Status {
    auto r = raw->Step();
    if (!r.ok()) return r.status();
    next_raw = *r ? std::optional<uint64_t>(static_cast<uint64_t>(raw->Int(0))) : std::nullopt;
    return Status::Ok();
  };
  std::optional<uint64_t> last_page;
  auto step_page = [&]() -> Status {
    // The next pack page above the last one given out.
    for (;;) {
      if (next_page && *next_page + 1 < page_end) {
        next_page = *next_page + 1;
        return Status::Ok();
      }
      auto r = packed->Step();
      if (!r.ok()) return r.status();
      if (!*r) {
        next_page.reset();
        return Status::Ok();
      }
      const SectorExtent e = PackedExtent(packed->Int(0));
      CS_RETURN_IF_ERROR(sectors_.LoadExtent(e));
      const uint64_t first = e.first / kSectorsPerPage;
      page_end = (e.end() + kSectorsPerPage - 1) / kSectorsPerPage;
      const uint64_t from = last_page ? std::max(first, *last_page + 1) : first;
      if (from < page_end) {
        next_page = from;
        last_page = page_end - 1;
        return Status::Ok();
      }
    }
  };
  CS_RETURN_IF_ERROR(step_raw());
  CS_RETURN_IF_ERROR(step_page());
  std::vector<uint64_t> free_slots;
  uint64_t used = 0, end = 0;
  while (next_raw || next_page) {
    const bool take_raw = next_raw && (!next_page || *next_raw <= *next_page);
    const uint64_t p = take_raw ? *next_raw : *next_page;
    if (take_raw && next_page && *next_raw == *next_page)
      return Status::Error(EUCLEAN, "slot " + std::to_string(p) + " holds a raw block and compressed ones (run "
                                    "chainswap fsck)");
    for (; end < p; ++end) free_slots.push_back(end);
    ++used;
    end = p + 1;
    CS_RETURN_IF_ERROR(take_raw ? step_raw() : step_page());
  }
  sectors_.LoadDone();
  slots_.Load(free_slots, used, end);
  return Status::Ok();
}

Status Catalog::LoadHashCountersLocked() {
  auto f = QueryHashTableFigures(db_);
  if (!f.ok()) return f.status();
  if (!f->known && !options_.read_only) {
    // Counters missing (a damaged or hand-edited meta table): from the PAT.
    CS_RETURN_IF_ERROR(db_.Exec(catalog_sql::kInitHashCounters));
    f = QueryHashTableFigures(db_);
    if (!f.ok()) return f.status();
  }
  hash_entries_ = f->entries;
  hash_unindexed_ = f->unindexed;
  hash_limit_ = options_.hash_table_limit.value_or(f->limit_entries);
  if (options_.read_only || !options_.hash_table_limit) return Status::Ok();
  // Recorded for the statistics (`chainswap stats` reads it from here).
  auto q = sql::Stmt::Prepare(db_, catalog_sql::kSetHashTableLimit);
  if (!q.ok()) return q.status();
  q->Bind(1, static_cast<int64_t>(hash_limit_));
  CS_RETURN_IF_ERROR(q->Run());
  if (hash_limit_ > 0 && hash_entries_ >= hash_limit_) {
    quota_logged_ = true;
    spdlog::warn("catalog: the chain hash table holds {} entries, at or over its quota (hash_table_limit={}): new "
                 "unique blocks are stored without a hash entry (see 'chainswap prune')", hash_entries_, hash_limit_);
  }
  return Status::Ok();
}

int64_t DayNumberNow() { return static_cast<int64_t>(::time(nullptr)) / 86400; }

// ------------------------------------------------------------------ journal

Result<uint64_t> Catalog::JournalRetiredThrough() {
  MutexLock lock(&mu_);
  auto q = sql::Stmt::Prepare(db_, catalog_sql::kJournalRetiredThrough);
  if (!q.ok()) return q.status();
  auto r = q->Step();
  if (!r.ok()) return r.status();
  if (!*r) return uint64_t{0};
  const std::string v = q->Text(0);
  char* end = nullptr;
  errno = 0;
  const unsigned long long id = std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0)
    return Status::Error(EUCLEAN, "catalog meta journal_retired_through is malformed: '" + v + "'");
  return uint64_t{id};
}

Status Catalog::SetJournalRetiredThrough(uint64_t bucket) {
  if (options_.read_only) return Status::Error(EROFS, "catalog opened read-only");
  MutexLock lock(&mu_);
  return SetJournalRetiredThroughLocked(bucket);
}

Status Catalog::SetJournalRetiredThroughLocked(uint64_t bucket) {
  const std::string value = std::to_string(bucket);
  return st_->set_journal_retired_through.Reset().Bind(1, std::string_view(value)).Run();
}

// -------------------------------------------------------------- store, WAL

Status Catalog::CheckStoreLength() {
  if (rados_mode_) return Status::Ok();  // store.dat holds nothing
  auto len = store_->LengthSlots();
  if (!len.ok()) return len.status();
  MutexLock lock(&mu_);
  auto q = sql::Stmt::Prepare(db_, catalog_sql::kPatEnd);
  if (!q.ok()) return q.status();
  auto r = q->Step();
  if (!r.ok()) return r.status();
  uint64_t need = static_cast<uint64_t>(q->Int(0));
  if (!q->IsNull(1)) need = std::max(need, StoredBlockEndSlot(q->Int(1)));
  if (*len < need)
    return Status::Error(EUCLEAN, "content store " + store_->path() + " holds " + std::to_string(*len) +
                                      " slots but the catalog references slot " + std::to_string(need - 1) +
                                      ": it was truncated or replaced; run 'chainswap fsck' (data in missing "
                                      "slots is lost)");
  return Status::Ok();
}

StoreUsage Catalog::Usage() {
  // Lock-free: writers check capacity on the FUSE thread while a destager
  // holds mu_ across a whole transaction.
  const SlotAllocator::Usage u = slots_.usage();
  const SectorAllocator::Usage su = sectors_.usage();
  return StoreUsage{u.used_slots, u.free_slots, u.high_water, options_.capacity_slots,
                    su.pages,     su.used_sectors, su.free_sectors};
}

uint64_t Catalog::WalBytes() {
  MutexLock lock(&mu_);
  return WalBytesLocked();
}

uint64_t Catalog::WalBytesLocked() {
  struct stat st;
  return wal_fd_ >= 0 && ::fstat(wal_fd_, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

Status Catalog::Sync(bool idle) {
  // RADOS mode: the references a cluster outage left to drop (outside mu_).
  if (idle) (void)DrainRadosUnrefs();
  MutexLock lock(&mu_);
  return SyncLocked(idle);
}

Status Catalog::SyncLocked(bool idle) {
  std::optional<uint64_t> free_before_compaction;  // set when a compaction pass runs
  if (idle && !options_.read_only) {
    Status ms = IdleMergeLocked();
    if (!ms.ok()) spdlog::warn("catalog: hash index merge: {}", ms.ToString());
    if (compact_wanted_.load(std::memory_order_relaxed)) {
      free_before_compaction = sectors_.usage().free_sectors;
      uint64_t moved = 0;
      Status cs = CompactPackedLocked(&moved);
      if (!cs.ok()) spdlog::warn("catalog: compaction of packed blocks: {}", cs.ToString());
      else if (moved) spdlog::info("catalog: compaction moved {} packed blocks out of sparse pack pages", moved);
      compact_retry_ = cs.ok() && moved > 0;
    }
  }
  // Order (SPEC §5, power cuts): the store's bytes, then the WAL that
  // references them, both under mu_ so that no commit slips in between (a
  // commit made between the two would reach the durable WAL without its
  // store bytes; releasing mu_ here was tried and the concurrent-fsync
  // power-cut test read stale slot bytes after cuts).
  // SQLite never syncs on its own (synchronous=NORMAL, no auto-checkpoint):
  // a commit becomes durable here and only here.
  CS_RETURN_IF_ERROR(store_->Sync());
  if (wal_fd_ < 0) wal_fd_ = ::open((path_ + "-wal").c_str(), O_RDWR | O_CLOEXEC);
  if (wal_fd_ >= 0) {
    if (::fdatasync(wal_fd_) != 0) return Status::FromErrno("catalog WAL fdatasync");
  }
  // Frees are durable now: the allocator punches what stayed free since the
  // previous Sync (under load beyond its reserve) and makes what was freed
  // since reusable.
  // Sectors first: the pack pages they free wholly go back to the slot
  // allocator, which then makes them reusable.
  // Pending frees become reusable, and compaction moved blocks: locations
  // the PAT names may get other bytes from now on (store_epoch_).
  if (sectors_.HasPending() || slots_.HasSlotsToRelease() || free_before_compaction) ++store_epoch_;
  sectors_.Synced();
  slots_.Synced(idle);
  const SectorAllocator::Usage su = sectors_.usage();
  // A pass that gained less than a page (blocks straddling into pages it
  // did not empty leave holes there) ends compaction until blocks are
  // freed again: passes never chase each other's holes.
  if (free_before_compaction && su.free_sectors + kSectorsPerPage > *free_before_compaction) compact_retry_ = false;
  compact_wanted_.store(!options_.read_only && compact_retry_ && su.free_sectors >= kCompactMinFreeSectors &&
                            su.free_sectors * kCompactFreeShare >= su.used_sectors,
                        std::memory_order_relaxed);
  // Keep the WAL short: everything in it is backed by durable store bytes.
  // Under load, a PASSIVE checkpoint past kWalCheckpointBytes (the next
  // commit starts the WAL over and cuts the file to kWalReserveBytes).
  // When idle, a TRUNCATE checkpoint folds it all into the database and
  // empties the file; a reader in the WAL (say, a long sqlite3 query) makes
  // it give up after 50 ms, and the engine retries a second later.
  const uint64_t wal_bytes = WalBytesLocked();
  if (idle ? wal_bytes > kWalReserveBytes : (wal_fd_ < 0 || wal_bytes > kWalCheckpointBytes)) {
    int log_frames = -1, done_frames = -1;
    if (idle) sqlite3_busy_timeout(db_.get(), 50);
    const int rc = sqlite3_wal_checkpoint_v2(db_.get(), nullptr,
                                             idle ? SQLITE_CHECKPOINT_TRUNCATE : SQLITE_CHECKPOINT_PASSIVE,
                                             &log_frames, &done_frames);
    if (idle) sqlite3_busy_timeout(db_.get(), 5000);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) spdlog::warn("catalog checkpoint: {}", sqlite3_errmsg(db_.get()));
  }
  return Status::Ok();
}

}  // namespace chainswap
