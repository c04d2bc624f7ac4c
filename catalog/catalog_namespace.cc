// The catalog's namespace rows: chains and swap files, and the cache of the
// chains' keyed hashers. Every call runs on the writer connection under mu_
// (catalog.h); the SQL is in catalog_sql.h.
#include "catalog/catalog.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>

#include "catalog/catalog_sql.h"

namespace chainswap {

Result<std::vector<ChainInfo>> Catalog::ListChains() {
  MutexLock lock(&mu_);
  return sql::QueryAll(db_, catalog_sql::kListChains, [](const sql::Stmt& row) {
    ChainInfo c;
    c.dedup_id = row.Int(0);
    c.name = row.Text(1);
    c.mode = static_cast<uint32_t>(row.Int(2));
    c.uid = static_cast<uint32_t>(row.Int(3));
    c.gid = static_cast<uint32_t>(row.Int(4));
    c.mtime_ns = row.Int(5);
    c.ctime_ns = row.Int(6);
    return c;
  });
}

Result<std::vector<FileInfo>> Catalog::ListFiles() {
  MutexLock lock(&mu_);
  return sql::QueryAll(db_, catalog_sql::kListFiles, [](const sql::Stmt& row) {
    FileInfo f;
    f.file_id = row.Int(0);
    f.dedup_id = row.Int(1);
    f.unlinked = row.IsNull(2);
    f.name = f.unlinked ? std::string() : row.Text(2);
    f.size = static_cast<uint64_t>(row.Int(3));
    f.mapped_blocks = static_cast<uint64_t>(row.Int(4));
    f.mode = static_cast<uint32_t>(row.Int(5));
    f.uid = static_cast<uint32_t>(row.Int(6));
    f.gid = static_cast<uint32_t>(row.Int(7));
    f.atime_ns = row.Int(8);
    f.mtime_ns = row.Int(9);
    f.ctime_ns = row.Int(10);
    return f;
  });
}

Result<ChainInfo> Catalog::CreateChain(const std::string& name, uint32_t mode, uint32_t uid,
                                       uint32_t gid, int64_t now_ns) {
  if (rados_mode_) return CreateRadosChain(name, mode, uid, gid, now_ns);
  MutexLock lock(&mu_);
  HashSeed seed = NewHashSeed();
  auto q = sql::Stmt::Prepare(db_, catalog_sql::kInsertChain);
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
  MutexLock lock(&mu_);
  auto q = sql::Stmt::Prepare(db_, catalog_sql::kUpdateChain);
  if (!q.ok()) return q.status();
  q->Bind(1, c.dedup_id).Bind(2, c.name).Bind(3, c.mode).Bind(4, c.uid).Bind(5, c.gid);
  q->Bind(6, c.mtime_ns).Bind(7, c.ctime_ns);
  return q->Run();
}

Result<bool> Catalog::RemoveChain(int64_t dedup_id) {
  MutexLock lock(&mu_);
  sql::Transaction txn(db_);
  CS_RETURN_IF_ERROR(txn.Begin());
  auto cnt = sql::Stmt::Prepare(db_, catalog_sql::kCountChainFiles);
  if (!cnt.ok()) return cnt.status();
  cnt->Bind(1, dedup_id);
  auto r = cnt->Step();
  if (!r.ok()) return r.status();
  if (cnt->Int(1) != 0) return Status::Error(ENOTEMPTY, "chain still has swap files");
  const bool drop = cnt->Int(0) == 0;
  // With unlinked files still being reclaimed, the row (and its seed) stays,
  // nameless, until the last of them is dropped.
  auto q = sql::Stmt::Prepare(db_, drop ? catalog_sql::kDeleteChain : catalog_sql::kUnnameChain);
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
  MutexLock lock(&mu_);
  auto q = sql::Stmt::Prepare(db_, catalog_sql::kInsertFile);
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
  MutexLock lock(&mu_);
  auto q = sql::Stmt::Prepare(db_, catalog_sql::kUpdateFile);
  if (!q.ok()) return q.status();
  q->Bind(1, f.file_id);
  if (f.unlinked) q->BindNull(2); else q->Bind(2, f.name);
  q->Bind(3, static_cast<int64_t>(f.size)).Bind(4, f.mode).Bind(5, f.uid).Bind(6, f.gid);
  q->Bind(7, f.atime_ns).Bind(8, f.mtime_ns).Bind(9, f.ctime_ns);
  return q->Run();
}

Status Catalog::RenameFile(int64_t file_id, const std::string& new_name,
                           std::optional<int64_t> replaced_id) {
  MutexLock lock(&mu_);
  sql::Transaction txn(db_);
  CS_RETURN_IF_ERROR(txn.Begin());
  if (replaced_id) {
    auto u = sql::Stmt::Prepare(db_, catalog_sql::kUnlinkFile);
    if (!u.ok()) return u.status();
    u->Bind(1, *replaced_id);
    CS_RETURN_IF_ERROR(u->Run());
  }
  auto q = sql::Stmt::Prepare(db_, catalog_sql::kRenameFile);
  if (!q.ok()) return q.status();
  q->Bind(1, file_id).Bind(2, new_name);
  CS_RETURN_IF_ERROR(q->Run());
  return txn.Commit();
}

Status Catalog::DropFile(int64_t file_id) {
  MutexLock lock(&mu_);
  sql::Transaction txn(db_);
  CS_RETURN_IF_ERROR(txn.Begin());
  auto chain = ChainOfFileLocked(file_id);
  if (!chain.ok()) return chain.status();
  const int64_t dedup_id = *chain;
  auto q = sql::Stmt::Prepare(db_, catalog_sql::kDeleteFileIfEmpty);
  if (!q.ok()) return q.status();
  q->Bind(1, file_id);
  CS_RETURN_IF_ERROR(q->Run());
  if (db_.Changes() == 0) return Status::Error(EBUSY, "swap file still has blocks");
  // The last file of a removed chain takes the chain's row with it.
  auto c = sql::Stmt::Prepare(db_, catalog_sql::kDeleteRemovedChainIfEmpty);
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

Result<int64_t> Catalog::ChainOfFileLocked(int64_t file_id) {
  auto q = sql::Stmt::Prepare(db_, catalog_sql::kFileChain);
  if (!q.ok()) return q.status();
  q->Bind(1, file_id);
  auto r = q->Step();
  if (!r.ok()) return r.status();
  if (!*r) return Status::Error(ENOENT, "no swap file " + std::to_string(file_id));
  return q->Int(0);
}

// ------------------------------------------------------------------ hashers

Result<std::shared_ptr<const BlockHasher>> Catalog::HasherFor(int64_t dedup_id) {
  MutexLock lock(&mu_);
  return HasherForLocked(dedup_id);
}

Result<std::shared_ptr<const BlockHasher>> Catalog::HasherForLocked(int64_t dedup_id) {
  auto it = hashers_.find(dedup_id);
  if (it != hashers_.end()) return it->second;
  auto q = sql::Stmt::Prepare(db_, catalog_sql::kChainSeed);
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

}  // namespace chainswap
