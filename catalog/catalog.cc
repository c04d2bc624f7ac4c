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
#include <cstring>

#include "catalog/schema.h"

namespace chainswap {

// Every SQL statement the catalog runs, prepared once.
struct Catalog::Statements {
  sql::Stmt lat_get;          // (file, lba) -> pblock
  sql::Stmt lat_put;          // upsert (file, lba, pblock)
  sql::Stmt lat_del_range;    // delete [lba, end) returning pblock
  sql::Stmt lat_range;        // (file, lba, end) -> lba, pblock
  sql::Stmt lat_next;         // first mapped lba >= x
  sql::Stmt hash_find;        // (dedup_id, hash) -> pblock
  sql::Stmt pat_insert;       // (pblock, dedup_id, hash)
  sql::Stmt pat_addref;       // pblock, n
  sql::Stmt pat_refcount;     // pblock -> refcount
  sql::Stmt pat_delete;       // pblock
  sql::Stmt free_insert;      // slot
  sql::Stmt free_delete;      // slot
  sql::Stmt file_mapped;      // file, delta
  sql::Stmt file_meta;        // file, size, mtime, ctime
  sql::Stmt file_mapped_get;  // file -> mapped_blocks
};

// A read-only use of its own connection, so that reads run in parallel with
// each other and with a destager's transaction (WAL readers never block).
struct Catalog::Reader {
  sql::Db db;
  sql::Stmt lat_range;
  sql::Stmt file_mapped;  // mapped_blocks of a file
  sql::Stmt lat_count;    // LAT entries of a file in an LBA range
};

namespace {

int64_t SlotToPblock(uint64_t s) { return static_cast<int64_t>(s); }
uint64_t PblockToSlot(int64_t p) { return static_cast<uint64_t>(p); }

}  // namespace

Catalog::Catalog(sql::Db db, ContentStore* store, const CatalogOptions& options, std::string path)
    : options_(options), path_(std::move(path)), store_(store), db_(std::move(db)) {}

Catalog::~Catalog() {
  st_.reset();  // finalize statements before the connection closes
  if (wal_fd_ >= 0) ::close(wal_fd_);
}

Status Catalog::Create(const std::string& path) {
  if (::access(path.c_str(), F_OK) == 0) return Status::Error(EEXIST, path + " already exists");
  // Create the file 0600 before SQLite opens it so the mode is never wider.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno("create " + path);
  ::close(fd);
  auto db = sql::Db::Open(path, SQLITE_OPEN_READWRITE);
  if (!db.ok()) return db.status();
  CS_RETURN_IF_ERROR(db->Exec("PRAGMA journal_mode=WAL"));
  return CreateSchema(*db);
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
    // No auto-checkpoint: a checkpoint syncs the WAL, and a commit must not
    // become durable before the store bytes it references (SyncLocked).
    Status st = db->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; "
                         "PRAGMA journal_size_limit=" + std::to_string(kWalReserveBytes) + ";");
    if (!st.ok()) return Status::Error(st.code() == EIO ? EUCLEAN : st.code(),
                                       "catalog " + path + ": " + st.message());
  }
  CS_RETURN_IF_ERROR(db->Exec("PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY; PRAGMA foreign_keys=ON;"));
  Status st = CheckAndUpgradeSchema(*db, options.read_only);
  if (!st.ok()) return Status::Error(st.code(), path + ": " + st.message());
  std::unique_ptr<Catalog> cat(new Catalog(std::move(*db), store, options, path));
  Status ps = cat->PrepareStatements();
  if (ps.ok()) ps = cat->LoadAllocator();  // only with the statements prepared
  if (!ps.ok()) return Status::Error(ps.code(), "catalog " + path + ": " + ps.message());
  return cat;
}

Status Catalog::PrepareStatements() {
  st_ = std::make_unique<Statements>();
  struct Item {
    sql::Stmt* stmt;
    const char* sql;
  } items[] = {
      {&st_->lat_get, "SELECT pblock FROM lat WHERE file_id = ?1 AND lba = ?2"},
      {&st_->lat_put,
       "INSERT INTO lat(file_id, lba, pblock) VALUES (?1, ?2, ?3) "
       "ON CONFLICT(file_id, lba) DO UPDATE SET pblock = excluded.pblock"},
      {&st_->lat_del_range,
       "DELETE FROM lat WHERE file_id = ?1 AND lba >= ?2 AND lba < ?3 RETURNING pblock"},
      {&st_->lat_range,
       "SELECT lba, pblock FROM lat WHERE file_id = ?1 AND lba >= ?2 AND lba < ?3 ORDER BY lba"},
      {&st_->lat_next, "SELECT min(lba) FROM lat WHERE file_id = ?1 AND lba >= ?2"},
      {&st_->hash_find, "SELECT pblock FROM pat WHERE dedup_id = ?1 AND hash = ?2 ORDER BY pblock"},
      {&st_->pat_insert, "INSERT INTO pat(pblock, dedup_id, hash, refcount) VALUES (?1, ?2, ?3, 1)"},
      {&st_->pat_addref, "UPDATE pat SET refcount = refcount + ?2 WHERE pblock = ?1"},
      {&st_->pat_refcount, "SELECT refcount FROM pat WHERE pblock = ?1"},
      {&st_->pat_delete, "DELETE FROM pat WHERE pblock = ?1"},
      {&st_->free_insert, "INSERT OR IGNORE INTO free_slot(slot) VALUES (?1)"},
      {&st_->free_delete, "DELETE FROM free_slot WHERE slot = ?1"},
      {&st_->file_mapped,
       "UPDATE swap_file SET mapped_blocks = max(mapped_blocks + ?2, 0) WHERE file_id = ?1"},
      {&st_->file_mapped_get, "SELECT mapped_blocks FROM swap_file WHERE file_id = ?1"},
      {&st_->file_meta,
       "UPDATE swap_file SET size = ?2, mtime_ns = ?3, ctime_ns = ?4 WHERE file_id = ?1"},
  };
  for (auto& it : items) {
    auto s = sql::Stmt::Prepare(db_, it.sql);
    if (!s.ok()) return s.status();
    *it.stmt = std::move(*s);
  }
  return Status::Ok();
}

Status Catalog::LoadAllocator() {
  std::lock_guard lk(mu_);
  auto q = sql::Stmt::Prepare(db_, "SELECT slot FROM free_slot");
  if (!q.ok()) return q.status();
  uint64_t top = 0;
  for (;;) {
    auto r = q->Step();
    if (!r.ok()) return r.status();
    if (!*r) break;
    uint64_t s = static_cast<uint64_t>(q->Int(0));
    free_slots_.insert(s);
    top = std::max(top, s + 1);
  }
  auto p = sql::Stmt::Prepare(db_, "SELECT count(*), coalesce(max(pblock) + 1, 0) FROM pat");
  if (!p.ok()) return p.status();
  auto r = p->Step();
  if (!r.ok()) return r.status();
  used_slots_ = static_cast<uint64_t>(p->Int(0));
  high_water_ = std::max(top, static_cast<uint64_t>(p->Int(1)));
  PublishUsageLocked();
  return Status::Ok();
}

// ---------------------------------------------------------------- namespace

Result<std::vector<ChainInfo>> Catalog::ListChains() {
  std::lock_guard lk(mu_);
  auto q = sql::Stmt::Prepare(
      db_, "SELECT dedup_id, name, mode, uid, gid, mtime_ns, ctime_ns FROM chain WHERE name IS NOT NULL "
          "ORDER BY dedup_id");
  if (!q.ok()) return q.status();
  std::vector<ChainInfo> out;
  for (;;) {
    auto r = q->Step();
    if (!r.ok()) return r.status();
    if (!*r) break;
    ChainInfo c;
    c.dedup_id = q->Int(0);
    c.name = q->Text(1);
    c.mode = static_cast<uint32_t>(q->Int(2));
    c.uid = static_cast<uint32_t>(q->Int(3));
    c.gid = static_cast<uint32_t>(q->Int(4));
    c.mtime_ns = q->Int(5);
    c.ctime_ns = q->Int(6);
    out.push_back(std::move(c));
  }
  return out;
}

Result<std::vector<FileInfo>> Catalog::ListFiles() {
  std::lock_guard lk(mu_);
  auto q = sql::Stmt::Prepare(db_,
                              "SELECT file_id, dedup_id, name, size, mapped_blocks, mode, uid, gid, "
                              "atime_ns, mtime_ns, ctime_ns FROM swap_file ORDER BY file_id");
  if (!q.ok()) return q.status();
  std::vector<FileInfo> out;
  for (;;) {
    auto r = q->Step();
    if (!r.ok()) return r.status();
    if (!*r) break;
    FileInfo f;
    f.file_id = q->Int(0);
    f.dedup_id = q->Int(1);
    f.unlinked = q->IsNull(2);
    f.name = f.unlinked ? std::string() : q->Text(2);
    f.size = static_cast<uint64_t>(q->Int(3));
    f.mapped_blocks = static_cast<uint64_t>(q->Int(4));
    f.mode = static_cast<uint32_t>(q->Int(5));
    f.uid = static_cast<uint32_t>(q->Int(6));
    f.gid = static_cast<uint32_t>(q->Int(7));
    f.atime_ns = q->Int(8);
    f.mtime_ns = q->Int(9);
    f.ctime_ns = q->Int(10);
    out.push_back(std::move(f));
  }
  return out;
}

Result<ChainInfo> Catalog::CreateChain(const std::string& name, uint32_t mode, uint32_t uid,
                                       uint32_t gid, int64_t now_ns) {
  std::lock_guard lk(mu_);
  HashSeed seed = NewHashSeed();
  auto q = sql::Stmt::Prepare(db_,
                              "INSERT INTO chain(name, hash_seed, mode, uid, gid, mtime_ns, ctime_ns) "
                              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)");
  if (!q.ok()) return q.status();
  q->Bind(1, name).BindBlob(2, seed).Bind(3, mode).Bind(4, uid).Bind(5, gid).Bind(6, now_ns);
  Status st = q->Run();
  if (!st.ok()) {
    if (st.code() == EEXIST) return Status::Error(EEXIST, "chain '" + name + "' exists");
    return st;
  }
  ChainInfo c{db_.LastInsertRowid(), name, mode, uid, gid, now_ns, now_ns};
  hashers_[c.dedup_id] = std::make_shared<const BlockHasher>(seed);
  return c;
}

Status Catalog::UpdateChain(const ChainInfo& c) {
  std::lock_guard lk(mu_);
  auto q = sql::Stmt::Prepare(db_,
                              "UPDATE chain SET name = ?2, mode = ?3, uid = ?4, gid = ?5, "
                              "mtime_ns = ?6, ctime_ns = ?7 WHERE dedup_id = ?1");
  if (!q.ok()) return q.status();
  q->Bind(1, c.dedup_id).Bind(2, c.name).Bind(3, c.mode).Bind(4, c.uid).Bind(5, c.gid);
  q->Bind(6, c.mtime_ns).Bind(7, c.ctime_ns);
  return q->Run();
}

Result<bool> Catalog::RemoveChain(int64_t dedup_id) {
  std::lock_guard lk(mu_);
  sql::Transaction txn(db_);
  CS_RETURN_IF_ERROR(txn.Begin());
  auto cnt = sql::Stmt::Prepare(db_,
                                "SELECT count(*), count(name) FROM swap_file WHERE dedup_id = ?1");
  if (!cnt.ok()) return cnt.status();
  cnt->Bind(1, dedup_id);
  auto r = cnt->Step();
  if (!r.ok()) return r.status();
  if (cnt->Int(1) != 0) return Status::Error(ENOTEMPTY, "chain still has swap files");
  const bool drop = cnt->Int(0) == 0;
  // With unlinked files still being reclaimed, the row (and its seed) stays,
  // nameless, until the last of them is dropped.
  auto q = sql::Stmt::Prepare(db_, drop ? "DELETE FROM chain WHERE dedup_id = ?1"
                                        : "UPDATE chain SET name = NULL WHERE dedup_id = ?1");
  if (!q.ok()) return q.status();
  q->Bind(1, dedup_id);
  CS_RETURN_IF_ERROR(q->Run());
  if (db_.Changes() == 0) return Status::Error(ENOENT, "no chain with dedup ID " + std::to_string(dedup_id));
  CS_RETURN_IF_ERROR(txn.Commit());
  if (drop) hashers_.erase(dedup_id);
  return drop;
}

Result<FileInfo> Catalog::CreateFile(int64_t dedup_id, const std::string& name, uint32_t mode,
                                     uint32_t uid, uint32_t gid, int64_t now_ns) {
  std::lock_guard lk(mu_);
  auto q = sql::Stmt::Prepare(
      db_,
      "INSERT INTO swap_file(dedup_id, name, size, mapped_blocks, mode, uid, gid, atime_ns, "
      "mtime_ns, ctime_ns) VALUES (?1, ?2, 0, 0, ?3, ?4, ?5, ?6, ?6, ?6)");
  if (!q.ok()) return q.status();
  q->Bind(1, dedup_id).Bind(2, name).Bind(3, mode).Bind(4, uid).Bind(5, gid).Bind(6, now_ns);
  Status st = q->Run();
  if (!st.ok()) {
    if (st.code() == EEXIST) return Status::Error(EEXIST, "swap file '" + name + "' exists");
    return st;
  }
  FileInfo f;
  f.file_id = db_.LastInsertRowid();
  f.dedup_id = dedup_id;
  f.name = name;
  f.mode = mode;
  f.uid = uid;
  f.gid = gid;
  f.atime_ns = f.mtime_ns = f.ctime_ns = now_ns;
  return f;
}

Status Catalog::UpdateFile(const FileInfo& f) {
  std::lock_guard lk(mu_);
  auto q = sql::Stmt::Prepare(db_,
                              "UPDATE swap_file SET name = ?2, size = ?3, mode = ?4, uid = ?5, "
                              "gid = ?6, atime_ns = ?7, mtime_ns = ?8, ctime_ns = ?9 "
                              "WHERE file_id = ?1");
  if (!q.ok()) return q.status();
  q->Bind(1, f.file_id);
  if (f.unlinked) q->BindNull(2); else q->Bind(2, f.name);
  q->Bind(3, static_cast<int64_t>(f.size)).Bind(4, f.mode).Bind(5, f.uid).Bind(6, f.gid);
  q->Bind(7, f.atime_ns).Bind(8, f.mtime_ns).Bind(9, f.ctime_ns);
  return q->Run();
}

Status Catalog::RenameFile(int64_t file_id, const std::string& new_name,
                           std::optional<int64_t> replaced_id) {
  std::lock_guard lk(mu_);
  sql::Transaction txn(db_);
  CS_RETURN_IF_ERROR(txn.Begin());
  if (replaced_id) {
    auto u = sql::Stmt::Prepare(db_, "UPDATE swap_file SET name = NULL WHERE file_id = ?1");
    if (!u.ok()) return u.status();
    u->Bind(1, *replaced_id);
    CS_RETURN_IF_ERROR(u->Run());
  }
  auto q = sql::Stmt::Prepare(db_, "UPDATE swap_file SET name = ?2 WHERE file_id = ?1");
  if (!q.ok()) return q.status();
  q->Bind(1, file_id).Bind(2, new_name);
  CS_RETURN_IF_ERROR(q->Run());
  return txn.Commit();
}

Status Catalog::DropFile(int64_t file_id) {
  std::lock_guard lk(mu_);
  sql::Transaction txn(db_);
  CS_RETURN_IF_ERROR(txn.Begin());
  auto chain = sql::Stmt::Prepare(db_, "SELECT dedup_id FROM swap_file WHERE file_id = ?1");
  if (!chain.ok()) return chain.status();
  chain->Bind(1, file_id);
  auto found = chain->Step();
  if (!found.ok()) return found.status();
  if (!*found) return Status::Error(ENOENT, "no swap file " + std::to_string(file_id));
  const int64_t dedup_id = chain->Int(0);
  auto q = sql::Stmt::Prepare(
      db_, "DELETE FROM swap_file WHERE file_id = ?1 AND NOT EXISTS "
           "(SELECT 1 FROM lat WHERE file_id = ?1)");
  if (!q.ok()) return q.status();
  q->Bind(1, file_id);
  CS_RETURN_IF_ERROR(q->Run());
  if (db_.Changes() == 0) return Status::Error(EBUSY, "swap file still has blocks");
  // The last file of a removed chain takes the chain's row with it.
  auto c = sql::Stmt::Prepare(db_,
                              "DELETE FROM chain WHERE dedup_id = ?1 AND name IS NULL AND NOT EXISTS "
                              "(SELECT 1 FROM swap_file WHERE dedup_id = ?1)");
  if (!c.ok()) return c.status();
  c->Bind(1, dedup_id);
  CS_RETURN_IF_ERROR(c->Run());
  const bool chain_dropped = db_.Changes() != 0;
  CS_RETURN_IF_ERROR(txn.Commit());
  if (chain_dropped) {
    hashers_.erase(dedup_id);
    spdlog::info("removed chain (dedup ID {}): its last swap file is reclaimed", dedup_id);
  }
  return Status::Ok();
}

// ------------------------------------------------------------------ journal

Result<uint64_t> Catalog::JournalRetiredThrough() {
  std::lock_guard lk(mu_);
  auto q = sql::Stmt::Prepare(db_, "SELECT value FROM meta WHERE key = 'journal_retired_through'");
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
  std::lock_guard lk(mu_);
  auto q = sql::Stmt::Prepare(db_,
                              "INSERT INTO meta(key, value) VALUES ('journal_retired_through', ?1) "
                              "ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  if (!q.ok()) return q.status();
  const std::string value = std::to_string(bucket);
  q->Bind(1, std::string_view(value));
  return q->Run();
}

// ------------------------------------------------------------------- blocks

Result<std::shared_ptr<const BlockHasher>> Catalog::HasherFor(int64_t dedup_id) {
  std::lock_guard lk(mu_);
  return HasherForLocked(dedup_id);
}

Result<std::shared_ptr<const BlockHasher>> Catalog::HasherForLocked(int64_t dedup_id) {
  auto it = hashers_.find(dedup_id);
  if (it != hashers_.end()) return it->second;
  auto q = sql::Stmt::Prepare(db_, "SELECT hash_seed FROM chain WHERE dedup_id = ?1");
  if (!q.ok()) return q.status();
  q->Bind(1, dedup_id);
  auto r = q->Step();
  if (!r.ok()) return r.status();
  if (!*r) return Status::Error(ENOENT, "no chain with dedup ID " + std::to_string(dedup_id));
  auto blob = q->Blob(0);
  if (blob.size() != kSeedSize)
    return Status::Error(EUCLEAN, "chain " + std::to_string(dedup_id) + " has a malformed hash seed");
  HashSeed seed;
  std::copy(blob.begin(), blob.end(), seed.begin());
  auto h = std::make_shared<const BlockHasher>(seed);
  hashers_[dedup_id] = h;
  return std::shared_ptr<const BlockHasher>(h);
}

Result<uint64_t> Catalog::AllocSlotLocked() {
  if (free_slots_.empty() && !pending_free_.empty() && options_.capacity_slots != 0 &&
      high_water_ >= options_.capacity_slots) {
    // The store may not grow: make the pending frees durable to reuse them.
    CS_RETURN_IF_ERROR(SyncLocked(/*idle=*/false));
  }
  uint64_t slot;
  bool from_free = !free_slots_.empty();
  if (!unpunched_.empty()) {
    slot = *unpunched_.begin();  // its old bytes are overwritten, no punch needed
  } else if (from_free) {
    slot = *free_slots_.begin();
  } else {
    slot = high_water_;
  }
  // used_slots_ already counts the blocks this transaction stored, and not
  // yet the ones it freed.
  if (options_.capacity_slots != 0 && used_slots_ - txn_freed_.size() >= options_.capacity_slots) {
    return Status::Error(ENOSPC, "content store capacity reached");
  }
  if (from_free) {
    free_slots_.erase(slot);
    unpunched_.erase(slot);
    st_->free_delete.Reset().Bind(1, SlotToPblock(slot));
    CS_RETURN_IF_ERROR(st_->free_delete.Run());
  } else {
    ++high_water_;
  }
  txn_allocated_.emplace_back(slot, from_free);
  return slot;
}

Status Catalog::UnrefLocked(int64_t pblock, int64_t n, ApplyResult& res) {
  auto& get = st_->pat_refcount;
  get.Reset().Bind(1, pblock);
  auto r = get.Step();
  if (!r.ok()) return r.status();
  if (!*r) {
    // A LAT entry pointed at a block the PAT does not know: catalog damage.
    spdlog::error("catalog: LAT referenced unknown physical block {}", pblock);
    return Status::Error(EUCLEAN, "LAT references unknown physical block " + std::to_string(pblock));
  }
  int64_t rc = get.Int(0);
  get.Reset();
  if (rc > n) {
    st_->pat_addref.Reset().Bind(1, pblock).Bind(2, -n);
    return st_->pat_addref.Run();
  }
  if (rc < n) spdlog::error("catalog: refcount of block {} was {} < {} references", pblock, rc, n);
  st_->pat_delete.Reset().Bind(1, pblock);
  CS_RETURN_IF_ERROR(st_->pat_delete.Run());
  st_->free_insert.Reset().Bind(1, pblock);
  CS_RETURN_IF_ERROR(st_->free_insert.Run());
  txn_freed_.push_back(PblockToSlot(pblock));
  txn_new_data_.erase(PblockToSlot(pblock));
  ++res.blocks_freed;
  return Status::Ok();
}

Status Catalog::ApplyWriteLocked(const BlockOp& op, ApplyResult& res) {
  if (!op.hash && IsZeroBlock(op.data)) {
    BlockOp del = op;
    del.kind = BlockOp::Kind::kDelete;
    del.count = 1;
    return ApplyDeleteLocked(del, res);
  }
  BlockHash hash;
  if (op.hash) {
    hash = *op.hash;
  } else {
    auto h = HasherForLocked(op.dedup_id);
    if (!h.ok()) return h.status();
    hash = (*h)->Hash(op.data);
  }

  // Current mapping of the LBA.
  std::optional<int64_t> old;
  st_->lat_get.Reset().Bind(1, op.file_id).Bind(2, static_cast<int64_t>(op.lba));
  auto r = st_->lat_get.Step();
  if (!r.ok()) return r.status();
  if (*r) old = st_->lat_get.Int(0);
  st_->lat_get.Reset();

  // Look the content up in the chain hash table; verify candidates' bytes.
  std::optional<int64_t> match;
  std::vector<int64_t> candidates;
  auto& find = st_->hash_find;
  find.Reset().Bind(1, op.dedup_id).BindBlob(2, hash.bytes);
  for (;;) {
    auto fr = find.Step();
    if (!fr.ok()) return fr.status();
    if (!*fr) break;
    candidates.push_back(find.Int(0));
  }
  find.Reset();
  for (int64_t cand : candidates) {
    if (!options_.dedup_verify && !force_verify_.load(std::memory_order_relaxed)) {
      match = cand;
      break;
    }
    alignas(64) uint8_t buf[kBlockSize];
    const uint8_t* bytes;
    auto pending = txn_new_data_.find(PblockToSlot(cand));
    if (pending != txn_new_data_.end()) {
      bytes = pending->second;
    } else {
      CS_RETURN_IF_ERROR(store_->ReadSlots(PblockToSlot(cand), 1, buf));
      bytes = buf;
    }
    if (std::memcmp(bytes, op.data, kBlockSize) == 0) {
      match = cand;
      break;
    }
    ++res.collisions;
    spdlog::warn("catalog: hash collision in chain {} (block {} differs); storing separately",
                 op.dedup_id, cand);
  }

  if (match && old && *match == *old) return Status::Ok();  // already in this state

  // The old block is let go first: rewriting a block nothing else shares
  // needs no extra capacity (its slot is reusable only after the commit).
  if (old) {
    CS_RETURN_IF_ERROR(UnrefLocked(*old, 1, res));
  } else {
    txn_mapped_delta_[op.file_id] += 1;
  }
  int64_t target;
  if (match) {
    st_->pat_addref.Reset().Bind(1, *match).Bind(2, 1);
    CS_RETURN_IF_ERROR(st_->pat_addref.Run());
    target = *match;
    ++res.blocks_deduped;
  } else {
    auto slot = AllocSlotLocked();
    if (!slot.ok()) return slot.status();
    target = SlotToPblock(*slot);
    st_->pat_insert.Reset().Bind(1, target).Bind(2, op.dedup_id).BindBlob(3, hash.bytes);
    CS_RETURN_IF_ERROR(st_->pat_insert.Run());
    txn_new_data_[*slot] = op.data;
    ++used_slots_;
    ++res.blocks_stored;
  }
  st_->lat_put.Reset().Bind(1, op.file_id).Bind(2, static_cast<int64_t>(op.lba)).Bind(3, target);
  return st_->lat_put.Run();
}

Status Catalog::ApplyDeleteLocked(const BlockOp& op, ApplyResult& res) {
  if (op.count == 0) return Status::Ok();
  uint64_t end = op.lba + op.count;
  if (end < op.lba || end > static_cast<uint64_t>(INT64_MAX)) end = static_cast<uint64_t>(INT64_MAX);
  std::map<int64_t, int64_t> unref;  // pblock -> references dropped
  auto& del = st_->lat_del_range;
  del.Reset().Bind(1, op.file_id).Bind(2, static_cast<int64_t>(op.lba)).Bind(3, static_cast<int64_t>(end));
  int64_t removed = 0;
  for (;;) {
    auto r = del.Step();
    if (!r.ok()) return r.status();
    if (!*r) break;
    unref[del.Int(0)] += 1;
    ++removed;
  }
  del.Reset();
  if (removed) txn_mapped_delta_[op.file_id] -= removed;
  for (auto [pblock, n] : unref) CS_RETURN_IF_ERROR(UnrefLocked(pblock, n, res));
  return Status::Ok();
}

Result<ApplyResult> Catalog::ApplyBlockOps(std::span<const BlockOp> ops,
                                           std::span<const FileMetaUpdate> meta) {
  if (options_.read_only) return Status::Error(EROFS, "catalog opened read-only");
  std::lock_guard lk(mu_);
  txn_freed_.clear();
  txn_allocated_.clear();
  txn_new_data_.clear();
  txn_mapped_delta_.clear();
  const uint64_t saved_high_water = high_water_;
  const uint64_t saved_used = used_slots_;
  ApplyResult res;

  auto rollback_allocator = [&] {
    for (auto [slot, from_free] : txn_allocated_) {
      if (from_free) {
        free_slots_.insert(slot);
        unpunched_.insert(slot);  // at worst punched twice
      }
    }
    high_water_ = saved_high_water;
    used_slots_ = saved_used;
    PublishUsageLocked();
    txn_freed_.clear();
    txn_allocated_.clear();
    txn_new_data_.clear();
    txn_mapped_delta_.clear();
  };

  sql::Transaction txn(db_);
  Status st = txn.Begin();
  for (size_t i = 0; st.ok() && i < ops.size(); ++i) {
    st = ops[i].kind == BlockOp::Kind::kWrite ? ApplyWriteLocked(ops[i], res)
                                              : ApplyDeleteLocked(ops[i], res);
  }
  for (auto [file, delta] : txn_mapped_delta_) {
    if (!st.ok()) break;
    st_->file_mapped.Reset().Bind(1, file).Bind(2, delta);
    st = st_->file_mapped.Run();
  }
  for (const auto& m : meta) {
    if (!st.ok()) break;
    st_->file_meta.Reset().Bind(1, m.file_id).Bind(2, static_cast<int64_t>(m.size));
    st_->file_meta.Bind(3, m.mtime_ns).Bind(4, m.ctime_ns);
    st = st_->file_meta.Run();
  }
  // New blocks reach the store before the transaction that references them
  // commits; contiguous slots go out in one gather write, straight from the
  // callers' buffers.
  if (st.ok() && !txn_new_data_.empty()) {
    std::vector<const uint8_t*> run;
    uint64_t run_start = 0;
    for (auto& [slot, data] : txn_new_data_) {
      if (!run.empty() && slot != run_start + run.size()) {
        st = store_->WriteSlots(run_start, run);
        run.clear();
        if (!st.ok()) break;
      }
      if (run.empty()) run_start = slot;
      run.push_back(data);
    }
    if (st.ok() && !run.empty()) st = store_->WriteSlots(run_start, run);
  }
  if (st.ok()) st = txn.Commit();
  if (!st.ok()) {
    rollback_allocator();
    return st;  // txn destructor rolls back
  }
  used_slots_ -= res.blocks_freed;
  // Only now may freed slots be punched and handed out again.
  ReleaseFreedLocked();
  txn_freed_.clear();
  txn_allocated_.clear();
  txn_new_data_.clear();
  txn_mapped_delta_.clear();
  // Bound the WAL between retirements: past twice the checkpoint size, sync
  // (store, then WAL) and checkpoint now; the next commit starts it over.
  struct stat wst;
  if (wal_fd_ >= 0 && ::fstat(wal_fd_, &wst) == 0 && static_cast<uint64_t>(wst.st_size) > 2 * kWalCheckpointBytes) {
    Status ss = SyncLocked(/*idle=*/false);
    if (!ss.ok()) spdlog::warn("catalog sync: {}", ss.ToString());
  }
  return res;
}

Status Catalog::CloneRange(int64_t src_file, int64_t dst_file, uint64_t src_lba, uint64_t dst_lba,
                           uint64_t count) {
  if (options_.read_only) return Status::Error(EROFS, "catalog opened read-only");
  if (count == 0) return Status::Ok();
  if (src_file == dst_file && src_lba < dst_lba + count && dst_lba < src_lba + count)
    return Status::Error(EINVAL, "overlapping clone ranges in one file");
  std::lock_guard lk(mu_);
  auto chain_of = [&](int64_t file) -> Result<int64_t> {
    auto q = sql::Stmt::Prepare(db_, "SELECT dedup_id FROM swap_file WHERE file_id = ?1");
    if (!q.ok()) return q.status();
    q->Bind(1, file);
    auto r = q->Step();
    if (!r.ok()) return r.status();
    if (!*r) return Status::Error(ENOENT, "no swap file " + std::to_string(file));
    return q->Int(0);
  };
  auto sc = chain_of(src_file);
  if (!sc.ok()) return sc.status();
  auto dc = chain_of(dst_file);
  if (!dc.ok()) return dc.status();
  if (*sc != *dc) return Status::Error(EXDEV, "clone across chains (different dedup domains)");

  txn_freed_.clear();
  txn_allocated_.clear();
  txn_new_data_.clear();
  txn_mapped_delta_.clear();
  ApplyResult res;
  sql::Transaction txn(db_);
  Status st = txn.Begin();
  // The destination range becomes a hole first (old blocks unreferenced).
  if (st.ok()) {
    BlockOp del;
    del.kind = BlockOp::Kind::kDelete;
    del.file_id = dst_file;
    del.dedup_id = *dc;
    del.lba = dst_lba;
    del.count = count;
    st = ApplyDeleteLocked(del, res);
  }
  const int64_t delta = static_cast<int64_t>(dst_lba) - static_cast<int64_t>(src_lba);
  if (st.ok()) {
    auto up = sql::Stmt::Prepare(db_,
                                 "UPDATE pat SET refcount = refcount + x.n FROM "
                                 "(SELECT pblock, count(*) AS n FROM lat WHERE file_id = ?1 AND lba >= ?2 "
                                 "AND lba < ?3 GROUP BY pblock) AS x WHERE pat.pblock = x.pblock");
    if (!up.ok()) st = up.status();
    else {
      up->Bind(1, src_file).Bind(2, static_cast<int64_t>(src_lba)).Bind(3, static_cast<int64_t>(src_lba + count));
      st = up->Run();
    }
  }
  if (st.ok()) {
    auto ins = sql::Stmt::Prepare(db_,
                                  "INSERT INTO lat(file_id, lba, pblock) SELECT ?1, lba + ?2, pblock FROM lat "
                                  "WHERE file_id = ?3 AND lba >= ?4 AND lba < ?5");
    if (!ins.ok()) st = ins.status();
    else {
      ins->Bind(1, dst_file).Bind(2, delta).Bind(3, src_file).Bind(4, static_cast<int64_t>(src_lba));
      ins->Bind(5, static_cast<int64_t>(src_lba + count));
      st = ins->Run();
      if (st.ok()) txn_mapped_delta_[dst_file] += db_.Changes();
    }
  }
  for (auto [file, d] : txn_mapped_delta_) {
    if (!st.ok()) break;
    st_->file_mapped.Reset().Bind(1, file).Bind(2, d);
    st = st_->file_mapped.Run();
  }
  if (st.ok()) st = txn.Commit();
  if (!st.ok()) {
    txn_freed_.clear();
    txn_mapped_delta_.clear();
    return st;
  }
  used_slots_ -= res.blocks_freed;
  ReleaseFreedLocked();
  txn_freed_.clear();
  txn_mapped_delta_.clear();
  return Status::Ok();
}

std::unique_ptr<Catalog::Reader, std::function<void(Catalog::Reader*)>> Catalog::AcquireReader() {
  auto give_back = [this](Reader* r) {
    std::lock_guard lk(readers_mu_);
    idle_readers_.emplace_back(r);
  };
  {
    std::lock_guard lk(readers_mu_);
    if (!idle_readers_.empty()) {
      Reader* r = idle_readers_.back().release();
      idle_readers_.pop_back();
      return {r, give_back};
    }
  }
  auto db = sql::Db::Open(path_, SQLITE_OPEN_READWRITE);
  if (!db.ok()) return {nullptr, give_back};
  auto r = std::make_unique<Reader>();
  r->db = std::move(*db);
  struct Item {
    sql::Stmt* stmt;
    const char* sql;
  } items[] = {
      {&r->lat_range, "SELECT lba, pblock FROM lat WHERE file_id = ?1 AND lba >= ?2 AND lba < ?3 ORDER BY lba"},
      {&r->file_mapped, "SELECT mapped_blocks FROM swap_file WHERE file_id = ?1"},
      {&r->lat_count, "SELECT count(*) FROM lat WHERE file_id = ?1 AND lba >= ?2 AND lba < ?3"},
  };
  for (auto& it : items) {
    auto st = sql::Stmt::Prepare(r->db, it.sql);
    if (!st.ok()) return {nullptr, give_back};
    *it.stmt = std::move(*st);
  }
  return {r.release(), give_back};
}

void Catalog::ReleaseFreedLocked() {
  // Committed, but the commit is not durable yet: until the next Sync the
  // slot's old bytes may still be what a power cut brings back as
  // referenced, so it is neither reused nor punched before then.
  pending_free_.insert(pending_free_.end(), txn_freed_.begin(), txn_freed_.end());
  if (!pending_free_.empty()) slots_to_release_.store(true, std::memory_order_relaxed);
  PublishUsageLocked();
}

void Catalog::PublishUsageLocked() {
  pub_used_.store(used_slots_, std::memory_order_relaxed);
  pub_free_.store(free_slots_.size() + pending_free_.size(), std::memory_order_relaxed);
  pub_high_.store(high_water_, std::memory_order_relaxed);
}

void Catalog::PunchFreeSlotsLocked(uint64_t keep) {
  if (unpunched_.size() <= keep) return;
  const auto from = std::next(unpunched_.begin(), static_cast<std::ptrdiff_t>(keep));
  // Adjacent slots go back to the backing fs in one fallocate.
  auto it = from;
  while (it != unpunched_.end()) {
    const uint64_t first = *it;
    uint64_t n = 1;
    for (++it; it != unpunched_.end() && *it == first + n; ++it) ++n;
    Status ps = store_->PunchSlots(first, n);
    if (!ps.ok()) spdlog::warn("catalog: {}", ps.ToString());
  }
  unpunched_.erase(from, unpunched_.end());
}

Status Catalog::ReadBlocks(int64_t file_id, uint64_t lba, uint32_t count, uint8_t* out) {
  std::vector<std::pair<uint64_t, int64_t>> mapped;  // (lba, pblock)
  auto reader = options_.read_only ? nullptr : AcquireReader();
  std::unique_lock<std::mutex> lk(mu_, std::defer_lock);
  if (!reader) lk.lock();  // read-only tools: the main connection
  {
    auto& q = reader ? reader->lat_range : st_->lat_range;
    q.Reset().Bind(1, file_id).Bind(2, static_cast<int64_t>(lba)).Bind(3, static_cast<int64_t>(lba + count));
    for (;;) {
      auto r = q.Step();
      if (!r.ok()) return r.status();
      if (!*r) break;
      mapped.emplace_back(static_cast<uint64_t>(q.Int(0)), q.Int(1));
    }
    q.Reset();
  }
  if (lk.owns_lock()) lk.unlock();
  // Holes are zeros; mapped runs of consecutive slots are read in one pread.
  size_t next_zero_from = 0;
  size_t i = 0;
  while (i < mapped.size()) {
    size_t j = i + 1;
    while (j < mapped.size() && mapped[j].first == mapped[j - 1].first + 1 &&
           mapped[j].second == mapped[j - 1].second + 1)
      ++j;
    size_t first = mapped[i].first - lba;
    if (first > next_zero_from)
      std::memset(out + next_zero_from * kBlockSize, 0, (first - next_zero_from) * kBlockSize);
    CS_RETURN_IF_ERROR(store_->ReadSlots(PblockToSlot(mapped[i].second), static_cast<uint32_t>(j - i),
                                         out + first * kBlockSize));
    // Zero blocks are never stored: a referenced slot reading as zeros is
    // lost data (a zeroed or replaced store), never a valid answer.
    for (size_t k = 0; k < j - i; ++k) {
      if (IsZeroBlock(out + (first + k) * kBlockSize))
        return Status::Error(EIO, "stored block " + std::to_string(mapped[i + k].second) +
                                      " reads as zeros: the content store lost its data (run chainswap fsck)");
    }
    next_zero_from = first + (j - i);
    i = j;
  }
  if (next_zero_from < count)
    std::memset(out + next_zero_from * kBlockSize, 0, (count - next_zero_from) * kBlockSize);
  return Status::Ok();
}

Result<uint64_t> Catalog::MappedBlocks(int64_t file_id) {
  std::lock_guard lk(mu_);
  auto& q = st_->file_mapped_get;
  q.Reset().Bind(1, file_id);
  auto r = q.Step();
  if (!r.ok()) return r.status();
  uint64_t n = *r ? static_cast<uint64_t>(q.Int(0)) : 0;
  q.Reset();
  return n;
}

Result<Catalog::MappedCount> Catalog::MappedBlocksWithin(int64_t file_id,
                                                          std::span<const std::pair<uint64_t, uint64_t>> ranges) {
  auto reader = options_.read_only ? nullptr : AcquireReader();
  if (!reader) {  // read-only tools: nothing is staged, the total is all there is
    auto total = MappedBlocks(file_id);
    if (!total.ok()) return total.status();
    MappedCount c;
    c.total = *total;
    return c;
  }
  // One read transaction: the total and the counts come from one snapshot.
  CS_RETURN_IF_ERROR(reader->db.Exec("BEGIN"));
  struct EndRead {
    sql::Db& db;
    ~EndRead() { (void)db.Exec("COMMIT"); }
  } end_read{reader->db};
  MappedCount c;
  auto one = [](sql::Stmt& q) -> Result<uint64_t> {
    auto r = q.Step();
    if (!r.ok()) return r.status();
    uint64_t n = *r && !q.IsNull(0) ? static_cast<uint64_t>(q.Int(0)) : 0;
    q.Reset();
    return n;
  };
  reader->file_mapped.Reset().Bind(1, file_id);
  auto total = one(reader->file_mapped);
  if (!total.ok()) return total.status();
  c.total = *total;
  for (auto [a, b] : ranges) {
    const int64_t last = static_cast<int64_t>(std::min<uint64_t>(b, uint64_t{INT64_MAX}));
    reader->lat_count.Reset().Bind(1, file_id).Bind(2, static_cast<int64_t>(a)).Bind(3, last);
    auto n = one(reader->lat_count);
    if (!n.ok()) return n.status();
    c.within += *n;
  }
  return c;
}

Result<std::optional<uint64_t>> Catalog::NextMapped(int64_t file_id, uint64_t lba) {
  std::lock_guard lk(mu_);
  auto& q = st_->lat_next;
  q.Reset().Bind(1, file_id).Bind(2, static_cast<int64_t>(lba));
  auto r = q.Step();
  if (!r.ok()) return r.status();
  std::optional<uint64_t> out;
  if (*r && !q.IsNull(0)) out = static_cast<uint64_t>(q.Int(0));
  q.Reset();
  return out;
}

// ---------------------------------------------------------------- statistics

Result<std::vector<ChainStats>> Catalog::Stats() {
  std::lock_guard lk(mu_);
  auto q = sql::Stmt::Prepare(db_,
                              "SELECT dedup_id, chain, files, logical_bytes, nonzero_bytes, "
                              "zero_blocks, stored_bytes FROM chain_stats ORDER BY dedup_id");
  if (!q.ok()) return q.status();
  std::vector<ChainStats> out;
  for (;;) {
    auto r = q->Step();
    if (!r.ok()) return r.status();
    if (!*r) break;
    ChainStats c;
    c.dedup_id = q->Int(0);
    c.name = q->Text(1);
    c.files = static_cast<uint64_t>(q->Int(2));
    c.logical_bytes = static_cast<uint64_t>(q->Int(3));
    c.nonzero_bytes = static_cast<uint64_t>(q->Int(4));
    c.zero_blocks = static_cast<uint64_t>(q->Int(5));
    c.stored_bytes = static_cast<uint64_t>(q->Int(6));
    out.push_back(std::move(c));
  }
  return out;
}

Result<std::vector<FileStats>> Catalog::PerFileStats() {
  std::lock_guard lk(mu_);
  auto q = sql::Stmt::Prepare(db_,
                              "SELECT file_id, dedup_id, chain, file, logical_bytes, nonzero_bytes, zero_blocks, "
                              "stored_bytes FROM file_stats ORDER BY chain, file");
  if (!q.ok()) return q.status();
  std::vector<FileStats> out;
  for (;;) {
    auto r = q->Step();
    if (!r.ok()) return r.status();
    if (!*r) break;
    FileStats f;
    f.file_id = q->Int(0);
    f.dedup_id = q->Int(1);
    f.chain = q->Text(2);
    f.name = q->Text(3);
    f.logical_bytes = static_cast<uint64_t>(q->Int(4));
    f.nonzero_bytes = static_cast<uint64_t>(q->Int(5));
    f.zero_blocks = static_cast<uint64_t>(q->Int(6));
    f.stored_bytes = static_cast<uint64_t>(q->Int(7));
    out.push_back(std::move(f));
  }
  return out;
}

Status Catalog::CheckStoreLength() {
  auto len = store_->LengthSlots();
  if (!len.ok()) return len.status();
  std::lock_guard lk(mu_);
  auto q = sql::Stmt::Prepare(db_, "SELECT coalesce(max(pblock) + 1, 0) FROM pat");
  if (!q.ok()) return q.status();
  auto r = q->Step();
  if (!r.ok()) return r.status();
  uint64_t need = static_cast<uint64_t>(q->Int(0));
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
  return StoreUsage{pub_used_.load(std::memory_order_relaxed), pub_free_.load(std::memory_order_relaxed),
                    pub_high_.load(std::memory_order_relaxed), options_.capacity_slots};
}

uint64_t Catalog::WalBytes() {
  std::lock_guard lk(mu_);
  struct stat st;
  return wal_fd_ >= 0 && ::fstat(wal_fd_, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

Status Catalog::Sync(bool idle) {
  std::lock_guard lk(mu_);
  return SyncLocked(idle);
}

Status Catalog::SyncLocked(bool idle) {
  // Order (SPEC §5, power cuts): the store's bytes, then the WAL that
  // references them, both under mu_ so that no commit slips in between.
  // SQLite never syncs on its own (synchronous=NORMAL, no auto-checkpoint):
  // a commit becomes durable here and only here.
  CS_RETURN_IF_ERROR(store_->Sync());
  if (wal_fd_ < 0) wal_fd_ = ::open((path_ + "-wal").c_str(), O_RDWR | O_CLOEXEC);
  if (wal_fd_ >= 0) {
    if (::fdatasync(wal_fd_) != 0) return Status::FromErrno("catalog WAL fdatasync");
  }
  // Frees are durable now: what stayed free since the previous Sync goes
  // back to the backing fs (under load, all but a reserve that the next
  // overwrites will reuse); what was freed since becomes reusable (first,
  // while its bytes are still allocated).
  PunchFreeSlotsLocked(idle ? 0 : kUnpunchedReserveSlots);
  free_slots_.insert(pending_free_.begin(), pending_free_.end());
  unpunched_.insert(pending_free_.begin(), pending_free_.end());
  pending_free_.clear();
  slots_to_release_.store(!unpunched_.empty(), std::memory_order_relaxed);
  PublishUsageLocked();
  // Keep the WAL short: everything in it is backed by durable store bytes.
  // Under load, a PASSIVE checkpoint past kWalCheckpointBytes (the next
  // commit starts the WAL over and cuts the file to kWalReserveBytes).
  // When idle, a TRUNCATE checkpoint folds it all into the database and
  // empties the file; a reader in the WAL (say, a long sqlite3 query) makes
  // it give up after 50 ms, and the engine retries a second later.
  struct stat st;
  const uint64_t wal_bytes = wal_fd_ >= 0 && ::fstat(wal_fd_, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
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
