// Thin RAII layer over the SQLite C API.
//
//  - Db owns one connection (sqlite3*); closed in the destructor.
//  - Stmt owns one prepared statement; finalized in the destructor, reset
//    automatically before each new binding round (Reset()).
//  - Transaction is a BEGIN IMMEDIATE guard that rolls back in its destructor
//    unless Commit() succeeded.
//
// Thread-safety: none of these objects is thread-safe. A Db and all of its
// Stmts belong to one owner that serializes access (see Catalog).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "catalog/status.h"

namespace chainswap::sql {

// Maps a SQLite result code to a Status with a meaningful errno:
// SQLITE_FULL -> ENOSPC, SQLITE_READONLY/PERM -> EROFS/EACCES,
// SQLITE_CORRUPT/NOTADB -> EUCLEAN, SQLITE_BUSY/LOCKED -> EBUSY, others -> EIO.
Status FromSqlite(int rc, sqlite3* db, std::string_view context);

class Db {
 public:
  Db() = default;
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  Db(Db&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  Db& operator=(Db&& o) noexcept;

  // Opens (flags as for sqlite3_open_v2) and sets a busy timeout.
  static Result<Db> Open(const std::string& path, int flags);

  // Runs one or more statements without results.
  Status Exec(std::string_view sql);
  sqlite3* get() const { return db_; }
  int64_t LastInsertRowid() const { return sqlite3_last_insert_rowid(db_); }
  int Changes() const { return sqlite3_changes(db_); }

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_ = nullptr;
};

class Stmt {
 public:
  Stmt() = default;
  ~Stmt();
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt(Stmt&& o) noexcept : st_(o.st_), db_(o.db_) { o.st_ = nullptr; }
  Stmt& operator=(Stmt&& o) noexcept;

  static Result<Stmt> Prepare(const Db& db, std::string_view sql);

  // Resets the statement and clears bindings; returns *this for chaining.
  Stmt& Reset();
  // Binders use 1-based parameter indexes, as SQLite does.
  Stmt& Bind(int i, int64_t v);
  Stmt& Bind(int i, std::string_view text);
  Stmt& BindBlob(int i, std::span<const uint8_t> blob);
  Stmt& BindNull(int i);

  // Steps once. Returns true with a row available, false when done.
  Result<bool> Step();
  // Steps to completion, expecting no row.
  Status Run();
  // Steps to completion, calling row(stmt) with each row's columns.
  template <typename F>
  Status ForEachRow(F&& row) {
    for (;;) {
      auto r = Step();
      if (!r.ok()) return r.status();
      if (!*r) return Status::Ok();
      row(static_cast<const Stmt&>(*this));
    }
  }

  int64_t Int(int col) const { return sqlite3_column_int64(st_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(st_, col) == SQLITE_NULL; }
  std::string Text(int col) const;
  std::span<const uint8_t> Blob(int col) const;
  double Double(int col) const { return sqlite3_column_double(st_, col); }

 private:
  Stmt(sqlite3_stmt* st, sqlite3* db) : st_(st), db_(db) {}
  sqlite3_stmt* st_ = nullptr;
  sqlite3* db_ = nullptr;
};

// Prepares `sql` on `db`, steps it to completion and returns read(row) for
// every row, in order.
template <typename F>
auto QueryAll(const Db& db, std::string_view sql, F&& read)
    -> Result<std::vector<std::invoke_result_t<F&, const Stmt&>>> {
  auto q = Stmt::Prepare(db, sql);
  if (!q.ok()) return q.status();
  std::vector<std::invoke_result_t<F&, const Stmt&>> out;
  Status st = q->ForEachRow([&](const Stmt& row) { out.push_back(read(row)); });
  if (!st.ok()) return st;
  return out;
}

// BEGIN IMMEDIATE ... COMMIT, rolled back on destruction unless committed.
class Transaction {
 public:
  explicit Transaction(Db& db) : db_(db) {}
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  Status Begin();      // BEGIN IMMEDIATE: a write transaction
  Status BeginRead();  // BEGIN (deferred): one snapshot and one WAL read lock for many reads
  Status Commit();

 private:
  Db& db_;
  bool open_ = false;
};

}  // namespace chainswap::sql
