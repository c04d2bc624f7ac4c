// Catalog schema versions: a version-1 catalog (chain.name NOT NULL) is
// upgraded to version 2 at a read-write open, keeping every row; read-only
// opens leave it as it is.
#include <gtest/gtest.h>

#include "catalog/schema.h"
#include "tests/unit/test_util.h"

namespace chainswap {
namespace {

using test::QueryInt;
using test::QueryRows;

class SchemaTest : public test::BackingFixture {
 protected:
  // Turns the current catalog back into version 1 as a version-1 chainswap
  // created it: the chain table with name NOT NULL, user_version 1.
  void MakeVersion1() {
    sql::Db& d = db();
    CS_ASSERT_OK(d.Exec("PRAGMA foreign_keys=OFF"));
    CS_ASSERT_OK(d.Exec(
        "BEGIN; DROP VIEW chain_hash; DROP VIEW file_stats; DROP VIEW chain_stats;"
        "CREATE TABLE chain_old (dedup_id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,"
        " hash_seed BLOB NOT NULL, mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,"
        " mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL);"
        "INSERT INTO chain_old SELECT * FROM chain; DROP TABLE chain; ALTER TABLE chain_old RENAME TO chain;"
        "CREATE VIEW chain_hash AS SELECT dedup_id, hash, pblock FROM pat;"
        "CREATE VIEW file_stats AS SELECT file_id FROM swap_file;"
        "CREATE VIEW chain_stats AS SELECT dedup_id FROM chain;"
        "PRAGMA user_version = 1; COMMIT;"));
    CS_ASSERT_OK(d.Exec("PRAGMA foreign_keys=ON"));
    ASSERT_EQ(QueryInt(d, "SELECT \"notnull\" FROM pragma_table_info('chain') WHERE name = 'name'"), 1);
  }
};

TEST_F(SchemaTest, Version1IsUpgradedKeepingEveryRow) {
  const int64_t a = NewChain("a");
  const int64_t b = NewChain("b");
  const int64_t f = NewFile(a, "vm.swap");
  const std::vector<std::string> seeds = QueryRows(db(), "SELECT hex(hash_seed) FROM chain ORDER BY dedup_id");
  MakeVersion1();

  Reopen(CatalogOptions{});
  EXPECT_EQ(QueryInt(db(), "PRAGMA user_version"), kSchemaVersion);
  EXPECT_EQ(QueryInt(db(), "SELECT \"notnull\" FROM pragma_table_info('chain') WHERE name = 'name'"), 0);
  EXPECT_EQ(QueryRows(db(), "SELECT hex(hash_seed) FROM chain ORDER BY dedup_id"), seeds);
  EXPECT_EQ(QueryRows(db(), "SELECT dedup_id || ' ' || name FROM chain ORDER BY dedup_id"),
            (std::vector<std::string>{std::to_string(a) + " a", std::to_string(b) + " b"}));
  EXPECT_EQ(QueryInt(db(), "SELECT count(*) FROM pragma_foreign_key_check"), 0);
  EXPECT_EQ(QueryInt(db(), "SELECT count(*) FROM chain_stats"), 2) << "the views are version 2's again";
  EXPECT_EQ(QueryInt(db(), "SELECT count(*) FROM file_stats WHERE file_id = " + std::to_string(f)), 1);
  // The foreign key still points at the (new) chain table.
  EXPECT_FALSE(cat().CreateFile(9999, "orphan", 0600, 0, 0, 1).ok());
  // Version 2's point: a chain whose only file is unlinked is removed by name.
  CS_ASSERT_OK(cat().RenameFile(NewFile(a, "other"), "other", f));
  CS_ASSERT_OK(cat().DropFile(QueryInt(db(), "SELECT file_id FROM swap_file WHERE name = 'other'")));
  auto removed = cat().RemoveChain(a);
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_FALSE(*removed);
  EXPECT_EQ(QueryInt(db(), "SELECT count(*) FROM chain WHERE name IS NULL"), 1);
}

TEST_F(SchemaTest, ReadOnlyOpenLeavesVersion1AsItIs) {
  NewChain("a");
  MakeVersion1();
  CatalogOptions ro;
  ro.read_only = true;
  backing_.reset();
  auto b = BackingDir::Open(root_, LockMode::kNone, ro);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  auto chains = (*b)->catalog().ListChains();
  ASSERT_TRUE(chains.ok());
  EXPECT_EQ(chains->size(), 1u);
  b->reset();
  Reopen(CatalogOptions{});  // and a mount upgrades it
  EXPECT_EQ(QueryInt(db(), "PRAGMA user_version"), kSchemaVersion);
}

}  // namespace
}  // namespace chainswap
