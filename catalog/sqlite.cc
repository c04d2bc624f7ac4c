#include "catalog/sqlite.h"

#include <string>

namespace chainswap::sql {

Status FromSqlite(int rc, sqlite3* db, std::string_view context) {
  int err = EIO;
  switch (rc & 0xff) {
    case SQLITE_FULL: err = ENOSPC; break;
    case SQLITE_READONLY: err = EROFS; break;
    case SQLITE_PERM:
    case SQLITE_AUTH: err = EACCES; break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: err = EUCLEAN; break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: err = EBUSY; break;
    case SQLITE_NOMEM: err = ENOMEM; break;
    case SQLITE_CANTOPEN: err = ENOENT; break;
    case SQLITE_CONSTRAINT: err = EEXIST; break;
    default: break;
  }
  std::string msg(context);
  msg += ": ";
  msg += db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return Status::Error(err, msg);
}

Db::~Db() {
  if (db_) sqlite3_close_v2(db_);
}

Db& Db::operator=(Db&& o) noexcept {
  if (this != &o) {
    if (db_) sqlite3_close_v2(db_);
    db_ = o.db_;
    o.db_ = nullptr;
  }
  return *this;
}

Result<Db> Db::Open(const std::string& path, int flags) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  Db db(raw);  // closes on every path
  if (rc != SQLITE_OK) return FromSqlite(rc, raw, "open " + path);
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, 5000);
  return db;
}

Status Db::Exec(std::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    Status st = FromSqlite(rc, nullptr, "exec");
    return Status::Error(st.code(), "sqlite: " + msg);
  }
  return Status::Ok();
}

Stmt::~Stmt() {
  if (st_) sqlite3_finalize(st_);
}

Stmt& Stmt::operator=(Stmt&& o) noexcept {
  if (this != &o) {
    if (st_) sqlite3_finalize(st_);
    st_ = o.st_;
    db_ = o.db_;
    o.st_ = nullptr;
  }
  return *this;
}

Result<Stmt> Stmt::Prepare(const Db& db, std::string_view sql) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v3(db.get(), sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &st, nullptr);
  if (rc != SQLITE_OK) return FromSqlite(rc, db.get(), "prepare '" + std::string(sql) + "'");
  return Stmt(st, db.get());
}

Stmt& Stmt::Reset() {
  sqlite3_reset(st_);
  sqlite3_clear_bindings(st_);
  return *this;
}

Stmt& Stmt::Bind(int i, int64_t v) {
  sqlite3_bind_int64(st_, i, v);
  return *this;
}

Stmt& Stmt::Bind(int i, std::string_view text) {
  sqlite3_bind_text(st_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  return *this;
}

Stmt& Stmt::BindBlob(int i, std::span<const uint8_t> blob) {
  sqlite3_bind_blob(st_, i, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
  return *this;
}

Stmt& Stmt::BindNull(int i) {
  sqlite3_bind_null(st_, i);
  return *this;
}

Result<bool> Stmt::Step() {
  int rc = sqlite3_step(st_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return FromSqlite(rc, db_, std::string("step '") + sqlite3_sql(st_) + "'");
}

Status Stmt::Run() {
  for (;;) {
    Result<bool> r = Step();
    if (!r.ok()) return r.status();
    if (!*r) return Status::Ok();
  }
}

std::string Stmt::Text(int col) const {
  const unsigned char* p = sqlite3_column_text(st_, col);
  return p ? std::string(reinterpret_cast<const char*>(p),
                         static_cast<size_t>(sqlite3_column_bytes(st_, col)))
           : std::string();
}

std::span<const uint8_t> Stmt::Blob(int col) const {
  const void* p = sqlite3_column_blob(st_, col);
  int n = sqlite3_column_bytes(st_, col);
  return {static_cast<const uint8_t*>(p), static_cast<size_t>(n)};
}

Transaction::~Transaction() {
  if (open_) (void)db_.Exec("ROLLBACK");
}

Status Transaction::Begin() {
  CS_RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE"));
  open_ = true;
  return Status::Ok();
}

Status Transaction::BeginRead() {
  CS_RETURN_IF_ERROR(db_.Exec("BEGIN"));
  open_ = true;
  return Status::Ok();
}

Status Transaction::Commit() {
  Status st = db_.Exec("COMMIT");
  if (st.ok()) open_ = false;
  return st;
}

}  // namespace chainswap::sql
