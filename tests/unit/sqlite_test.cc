// Status/Result and the RAII SQLite layer (catalog/status.h, catalog/sqlite.h).
#include "catalog/sqlite.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>
#include <vector>

#include "catalog/status.h"
#include "test_util.h"

namespace chainswap {
namespace {

using test::TempDir;

// ------------------------------------------------------------------ Status

TEST(StatusTest, DefaultIsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), 0);
  EXPECT_EQ(s.ToString(), "OK");
  EXPECT_TRUE(Status::Ok().ok());
}

TEST(StatusTest, ErrorCarriesCodeAndMessage) {
  Status s = Status::Error(ENOSPC, "store full");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ENOSPC);
  EXPECT_EQ(s.message(), "store full");
  EXPECT_NE(s.ToString().find("store full"), std::string::npos);
  EXPECT_NE(s.ToString().find("ENOSPC"), std::string::npos);
}

TEST(StatusTest, ErrorWithZeroCodeIsStillAnError) {
  Status s = Status::Error(0, "unknown failure");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), EIO);
}

TEST(StatusTest, FromErrnoUsesGivenCodeAndStrerror) {
  Status s = Status::FromErrno(ENOENT, "open /nowhere");
  EXPECT_EQ(s.code(), ENOENT);
  EXPECT_EQ(s.message(), "open /nowhere: No such file or directory");
}

TEST(StatusTest, FromErrnoReadsCurrentErrno) {
  errno = EACCES;
  Status s = Status::FromErrno("ctx");
  EXPECT_EQ(s.code(), EACCES);
  EXPECT_EQ(s.message().rfind("ctx: ", 0), 0u);
}

Status FailsWith(int code) { return code ? Status::Error(code, "x") : Status::Ok(); }

Status ReturnIfErrorChain(int first, int second, int* reached) {
  CS_RETURN_IF_ERROR(FailsWith(first));
  ++*reached;
  CS_RETURN_IF_ERROR(FailsWith(second));
  ++*reached;
  return Status::Ok();
}

TEST(StatusTest, ReturnIfErrorStopsAtFirstError) {
  int reached = 0;
  EXPECT_TRUE(ReturnIfErrorChain(0, 0, &reached).ok());
  EXPECT_EQ(reached, 2);
  reached = 0;
  EXPECT_EQ(ReturnIfErrorChain(EBUSY, 0, &reached).code(), EBUSY);
  EXPECT_EQ(reached, 0);
  reached = 0;
  EXPECT_EQ(ReturnIfErrorChain(0, EROFS, &reached).code(), EROFS);
  EXPECT_EQ(reached, 1);
}

TEST(ResultTest, HoldsValue) {
  Result<int> r(42);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), 42);
  EXPECT_EQ(*r, 42);
  EXPECT_TRUE(r.status().ok());
  *r = 7;
  EXPECT_EQ(r.value(), 7);
}

TEST(ResultTest, HoldsError) {
  Result<std::string> r(Status::Error(ENOENT, "missing"));
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ENOENT);
  EXPECT_EQ(r.status().message(), "missing");
}

TEST(ResultTest, ArrowReachesValue) {
  Result<std::string> r(std::string("abc"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->size(), 3u);
}

// ------------------------------------------------------------- FromSqlite

TEST(FromSqliteTest, MapsResultCodesToErrno) {
  struct Case {
    int rc;
    int err;
  } cases[] = {
      {SQLITE_FULL, ENOSPC},
      {SQLITE_CORRUPT, EUCLEAN},
      {SQLITE_NOTADB, EUCLEAN},
      {SQLITE_CONSTRAINT, EEXIST},
      {SQLITE_CONSTRAINT_UNIQUE, EEXIST},       // extended codes map by primary code
      {SQLITE_CONSTRAINT_PRIMARYKEY, EEXIST},
      {SQLITE_BUSY, EBUSY},
      {SQLITE_LOCKED, EBUSY},
      {SQLITE_READONLY, EROFS},
      {SQLITE_PERM, EACCES},
      {SQLITE_NOMEM, ENOMEM},
      {SQLITE_CANTOPEN, ENOENT},
      {SQLITE_IOERR, EIO},
      {SQLITE_ERROR, EIO},
  };
  for (const Case& c : cases) {
    Status s = sql::FromSqlite(c.rc, nullptr, "ctx");
    EXPECT_FALSE(s.ok()) << c.rc;
    EXPECT_EQ(s.code(), c.err) << "sqlite rc " << c.rc << " (" << sqlite3_errstr(c.rc) << ")";
    EXPECT_EQ(s.message().rfind("ctx: ", 0), 0u) << s.message();
  }
}

// ------------------------------------------------------------ Db and Stmt

class SqliteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = tmp_.Sub("t.db");
    auto db = sql::Db::Open(path_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    db_ = std::move(*db);
    CS_ASSERT_OK(db_.Exec("CREATE TABLE t (k INTEGER PRIMARY KEY, s TEXT, b BLOB, d REAL)"));
  }

  int64_t Count() { return test::QueryInt(db_, "SELECT count(*) FROM t"); }

  TempDir tmp_;
  std::string path_;
  sql::Db db_;
};

TEST_F(SqliteTest, OpenMissingWithoutCreateFails) {
  auto db = sql::Db::Open(tmp_.Sub("missing.db"), SQLITE_OPEN_READWRITE);
  EXPECT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), ENOENT) << db.status().ToString();
}

TEST_F(SqliteTest, ExecSyntaxErrorIsError) {
  Status s = db_.Exec("THIS IS NOT SQL");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), EIO);
}

TEST_F(SqliteTest, BindStepAndTypedGetters) {
  auto ins = sql::Stmt::Prepare(db_, "INSERT INTO t(k, s, b, d) VALUES (?1, ?2, ?3, ?4)");
  ASSERT_TRUE(ins.ok()) << ins.status().ToString();
  const std::vector<uint8_t> blob = {0, 1, 2, 0xff, 0};
  ins->Bind(1, int64_t{1}).Bind(2, std::string_view("hello")).BindBlob(3, blob);
  ins->BindNull(4);
  CS_ASSERT_OK(ins->Run());
  EXPECT_EQ(db_.Changes(), 1);
  EXPECT_EQ(db_.LastInsertRowid(), 1);
  // Reset clears bindings: k is NULL -> rowid chosen by SQLite, s/b NULL.
  ins->Reset().Bind(4, int64_t{3});
  CS_ASSERT_OK(ins->Run());
  EXPECT_EQ(db_.LastInsertRowid(), 2);

  auto q = sql::Stmt::Prepare(db_, "SELECT k, s, b, d FROM t ORDER BY k");
  ASSERT_TRUE(q.ok());
  auto r = q->Step();
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(*r);
  EXPECT_EQ(q->Int(0), 1);
  EXPECT_EQ(q->Text(1), "hello");
  auto b = q->Blob(2);
  EXPECT_EQ(std::vector<uint8_t>(b.begin(), b.end()), blob);
  EXPECT_TRUE(q->IsNull(3));
  r = q->Step();
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(*r);
  EXPECT_EQ(q->Int(0), 2);
  EXPECT_TRUE(q->IsNull(1));
  EXPECT_EQ(q->Text(1), "");
  EXPECT_DOUBLE_EQ(q->Double(3), 3.0);
  r = q->Step();
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
}

TEST_F(SqliteTest, PrepareErrorIsReported) {
  auto q = sql::Stmt::Prepare(db_, "SELECT nope FROM nowhere");
  EXPECT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("nowhere"), std::string::npos) << q.status().message();
}

TEST_F(SqliteTest, ConstraintViolationIsEexist) {
  CS_ASSERT_OK(db_.Exec("INSERT INTO t(k) VALUES (5)"));
  auto ins = sql::Stmt::Prepare(db_, "INSERT INTO t(k) VALUES (?1)");
  ASSERT_TRUE(ins.ok());
  ins->Bind(1, int64_t{5});
  Status s = ins->Run();
  EXPECT_EQ(s.code(), EEXIST) << s.ToString();
  // Through Exec as well.
  EXPECT_EQ(db_.Exec("INSERT INTO t(k) VALUES (5)").code(), EEXIST);
  EXPECT_EQ(Count(), 1);
}

TEST_F(SqliteTest, StmtIsMovable) {
  auto q = sql::Stmt::Prepare(db_, "SELECT 41 + 1");
  ASSERT_TRUE(q.ok());
  sql::Stmt moved = std::move(*q);
  sql::Stmt assigned;
  assigned = std::move(moved);
  auto r = assigned.Step();
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(*r);
  EXPECT_EQ(assigned.Int(0), 42);
}

TEST_F(SqliteTest, DbIsMovable) {
  sql::Db other = std::move(db_);
  EXPECT_EQ(db_.get(), nullptr);
  ASSERT_NE(other.get(), nullptr);
  CS_EXPECT_OK(other.Exec("INSERT INTO t(k) VALUES (1)"));
  EXPECT_EQ(test::QueryInt(other, "SELECT count(*) FROM t"), 1);
}

TEST_F(SqliteTest, TransactionNotCommittedRollsBack) {
  {
    sql::Transaction txn(db_);
    CS_ASSERT_OK(txn.Begin());
    CS_ASSERT_OK(db_.Exec("INSERT INTO t(k) VALUES (1); INSERT INTO t(k) VALUES (2);"));
    EXPECT_EQ(Count(), 2);  // visible inside the transaction
  }
  EXPECT_EQ(Count(), 0);
  // The connection is usable again: no transaction left open.
  CS_EXPECT_OK(db_.Exec("BEGIN; COMMIT;"));
}

TEST_F(SqliteTest, TransactionCommitPersists) {
  {
    sql::Transaction txn(db_);
    CS_ASSERT_OK(txn.Begin());
    CS_ASSERT_OK(db_.Exec("INSERT INTO t(k) VALUES (1)"));
    CS_ASSERT_OK(txn.Commit());
  }
  EXPECT_EQ(Count(), 1);
  // Visible from a second connection: really committed.
  auto other = sql::Db::Open(path_, SQLITE_OPEN_READWRITE);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(test::QueryInt(*other, "SELECT count(*) FROM t"), 1);
}

TEST_F(SqliteTest, TransactionBeginInsideTransactionFails) {
  sql::Transaction outer(db_);
  CS_ASSERT_OK(outer.Begin());
  sql::Transaction inner(db_);
  EXPECT_FALSE(inner.Begin().ok());
}

TEST_F(SqliteTest, TransactionWithoutBeginIsHarmless) {
  CS_ASSERT_OK(db_.Exec("INSERT INTO t(k) VALUES (9)"));
  { sql::Transaction txn(db_); }  // never begun: must not roll anything back
  EXPECT_EQ(Count(), 1);
}

}  // namespace
}  // namespace chainswap
