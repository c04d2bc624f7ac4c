// The bounded chain hash table (issue 16): the quota (hash_table_limit=,
// CatalogOptions::hash_table_limit), blocks without a hash entry
// (pat.hash_key NULL), Catalog::PruneHashIndex, and fsck's view of them.
#include <gtest/gtest.h>

#include <climits>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "test_util.h"
#include "tools/fsck.h"

namespace chainswap {
namespace {

using test::Block;
using test::DeleteOp;
using test::ExpectCatalogInvariants;
using test::PatternBlock;
using test::QueryInt;
using test::WriteOp;

// ------------------------------------------------------------------ quota

class CatalogHashQuotaTest : public test::BackingFixture {
 protected:
  void SetUp() override {
    CatalogOptions o;
    o.hash_table_limit = 3;
    OpenBacking(o);
    chain_ = NewChain("pool");
    f_ = NewFile(chain_, "a");
  }
  int64_t Unindexed() { return QueryInt(db(), "SELECT count(*) FROM pat WHERE hash_key IS NULL"); }
  int64_t chain_ = 0, f_ = 0;
};

TEST_F(CatalogHashQuotaTest, AtTheQuotaNewBlocksAreStoredWithoutAnEntryAndWritesSucceed) {
  std::vector<BlockOp> ops;
  std::vector<Block> blocks;
  for (int i = 0; i < 5; ++i) blocks.push_back(PatternBlock(100 + i));
  for (int i = 0; i < 5; ++i) ops.push_back(WriteOp(f_, chain_, i, blocks[i]));
  auto r = Apply(ops);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->blocks_stored, 5u);
  EXPECT_EQ(r->blocks_unindexed, 2u);
  HashTableFigures h = cat().HashTable();
  EXPECT_EQ(h.entries, 3u);
  EXPECT_EQ(h.unindexed, 2u);
  EXPECT_EQ(h.limit_entries, 3u);
  EXPECT_EQ(Unindexed(), 2);
  // The first three, in op order, have the entries.
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(QueryInt(db(), "SELECT hash_key IS NULL FROM pat WHERE pblock = " + std::to_string(PblockOf(f_, i))),
              i < 3 ? 0 : 1)
        << "LBA " << i;

  // An indexed block still deduplicates; an unindexed one does not.
  r = Apply({WriteOp(f_, chain_, 10, blocks[0]), WriteOp(f_, chain_, 11, blocks[4])});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->blocks_deduped, 1u);
  EXPECT_EQ(r->blocks_stored, 1u);
  EXPECT_EQ(r->blocks_unindexed, 1u);
  EXPECT_EQ(PblockOf(f_, 10), PblockOf(f_, 0));
  EXPECT_NE(PblockOf(f_, 11), PblockOf(f_, 4));
  EXPECT_EQ(RefcountOf(PblockOf(f_, 0)), 2);
  EXPECT_EQ(RefcountOf(PblockOf(f_, 4)), 1);
  EXPECT_TRUE(ReadBlock(f_, 11) == blocks[4]);
  EXPECT_TRUE(ReadBlock(f_, 4) == blocks[4]);
  ExpectCatalogInvariants(cat(), store());

  // Freeing an indexed block makes room: the next new block gets an entry.
  // Freeing an unindexed one gives back no entry.
  r = Apply({DeleteOp(f_, chain_, 1, 1), DeleteOp(f_, chain_, 3, 1)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->blocks_freed, 2u);
  h = cat().HashTable();
  EXPECT_EQ(h.entries, 2u);
  EXPECT_EQ(h.unindexed, 2u);
  const Block fresh = PatternBlock(200);
  r = Apply({WriteOp(f_, chain_, 20, fresh)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks_unindexed, 0u);
  EXPECT_EQ(cat().HashTable().entries, 3u);
  r = Apply({WriteOp(f_, chain_, 21, fresh)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks_deduped, 1u);
  ExpectCatalogInvariants(cat(), store());

  // The counters persist; a reopen without a quota lifts it.
  Reopen(CatalogOptions{});
  EXPECT_EQ(cat().HashTable().entries, 3u);
  EXPECT_EQ(cat().HashTable().unindexed, 2u);
  EXPECT_EQ(cat().HashTable().limit_entries, 3u) << "no quota given: the recorded one applies";
  CatalogOptions none;
  none.hash_table_limit = 0;
  Reopen(none);
  EXPECT_EQ(cat().HashTable().limit_entries, 0u);
  r = Apply({WriteOp(f_, chain_, 30, PatternBlock(300))});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks_unindexed, 0u);
  EXPECT_EQ(cat().HashTable().entries, 4u);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(CatalogHashQuotaTest, ARolledBackBatchLeavesTheCountersAsTheyWere) {
  auto r = Apply({WriteOp(f_, chain_, 0, PatternBlock(1)), WriteOp(f_, chain_, 1, PatternBlock(2))});
  ASSERT_TRUE(r.ok());
  // A write to a file of no chain fails the batch after two new blocks.
  r = Apply({WriteOp(f_, chain_, 2, PatternBlock(3)), WriteOp(f_, chain_, 3, PatternBlock(4)),
             WriteOp(f_, chain_ + 99, 4, PatternBlock(5))});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(cat().HashTable().entries, 2u);
  EXPECT_EQ(cat().HashTable().unindexed, 0u);
  ExpectCatalogInvariants(cat(), store());
}

// ------------------------------------------------------------------ prune

class CatalogPruneTest : public test::BackingFixture {
 protected:
  void SetUp() override {
    test::BackingFixture::SetUp();
    chain_ = NewChain("pool");
    f1_ = NewFile(chain_, "vm01");
    f2_ = NewFile(chain_, "vm02");
  }
  // Makes the block at (file, lba) `days` days older.
  void Age(int64_t file, uint64_t lba, int64_t days) {
    CS_ASSERT_OK(db().Exec("UPDATE pat SET born = born - " + std::to_string(days) +
                           " WHERE pblock = " + std::to_string(PblockOf(file, lba))));
  }
  bool Indexed(int64_t file, uint64_t lba) {
    return QueryInt(db(), "SELECT hash_key IS NOT NULL FROM pat WHERE pblock = " +
                              std::to_string(PblockOf(file, lba))) == 1;
  }
  int64_t chain_ = 0, f1_ = 0, f2_ = 0;
};

TEST_F(CatalogPruneTest, PruneDropsOldUniqueEntriesAndKeepsDataAndRefcounts) {
  std::vector<Block> b;
  for (int i = 0; i < 6; ++i) b.push_back(PatternBlock(10 + i));
  std::vector<BlockOp> ops;
  for (int i = 0; i < 6; ++i) ops.push_back(WriteOp(f1_, chain_, i, b[i]));
  ops.push_back(WriteOp(f2_, chain_, 0, b[0]));  // block 0 is shared: refcount 2
  ASSERT_TRUE(Apply(ops).ok());
  Age(f1_, 0, 10);  // old but shared: kept
  Age(f1_, 1, 10);
  Age(f1_, 2, 7);
  Age(f1_, 3, 2);   // too young for a cutoff of 5 days
  const int64_t today = DayNumberNow();

  auto pr = cat().PruneHashIndex(today - 5, UINT64_MAX);
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  EXPECT_EQ(pr->pruned, 2u);
  EXPECT_EQ(pr->entries_left, 4u);
  EXPECT_EQ(pr->unindexed, 2u);
  EXPECT_TRUE(Indexed(f1_, 0));
  EXPECT_FALSE(Indexed(f1_, 1));
  EXPECT_FALSE(Indexed(f1_, 2));
  EXPECT_TRUE(Indexed(f1_, 3));
  EXPECT_EQ(QueryInt(db(), "SELECT count(*) FROM hash_log"), 0) << "the removes are merged before prune returns";
  EXPECT_EQ(QueryInt(db(), "SELECT count(*) FROM hash_index"), 4);
  // Data and refcounts stay.
  for (int i = 0; i < 6; ++i) EXPECT_TRUE(ReadBlock(f1_, i) == b[i]) << i;
  EXPECT_EQ(RefcountOf(PblockOf(f1_, 0)), 2);
  EXPECT_EQ(RefcountOf(PblockOf(f1_, 1)), 1);
  ExpectCatalogInvariants(cat(), store());

  // A pruned block is no longer deduplicated against; one that kept its
  // entry still is.
  auto r = Apply({WriteOp(f2_, chain_, 1, b[1]), WriteOp(f2_, chain_, 3, b[3])});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks_stored, 1u);
  EXPECT_EQ(r->blocks_deduped, 1u);
  EXPECT_NE(PblockOf(f2_, 1), PblockOf(f1_, 1));
  EXPECT_EQ(PblockOf(f2_, 3), PblockOf(f1_, 3));
  // The new copy of b[1] has an entry: now it deduplicates.
  r = Apply({WriteOp(f2_, chain_, 9, b[1])});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks_deduped, 1u);
  EXPECT_EQ(PblockOf(f2_, 9), PblockOf(f2_, 1));

  // Overwrite, punch and unlink free pruned blocks like any other.
  const int64_t p1 = PblockOf(f1_, 1), p2 = PblockOf(f1_, 2);
  const uint64_t used = cat().Usage().used_slots;
  r = Apply({WriteOp(f1_, chain_, 1, PatternBlock(99))});  // overwrite the pruned b[1]
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks_freed, 1u);
  EXPECT_EQ(RefcountOf(p1), 0);
  r = Apply({DeleteOp(f1_, chain_, 2, 1)});  // punch the pruned b[2]
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks_freed, 1u);
  EXPECT_EQ(RefcountOf(p2), 0);
  EXPECT_EQ(cat().Usage().used_slots, used + 1 - 2);
  EXPECT_EQ(cat().HashTable().unindexed, 0u);
  ExpectCatalogInvariants(cat(), store());
  // Unlink (the whole file's range deleted, then the row dropped).
  ASSERT_TRUE(cat().PruneHashIndex(INT64_MAX, UINT64_MAX).ok());
  EXPECT_GT(cat().HashTable().unindexed, 0u);
  r = Apply({DeleteOp(f1_, chain_, 0, 1u << 20)});
  ASSERT_TRUE(r.ok());
  CS_ASSERT_OK(cat().DropFile(f1_));
  r = Apply({DeleteOp(f2_, chain_, 0, 1u << 20)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(cat().Usage().used_slots, 0u);
  EXPECT_EQ(cat().HashTable().entries, 0u);
  EXPECT_EQ(cat().HashTable().unindexed, 0u);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(CatalogPruneTest, AtMostNEntriesOldestFirst) {
  std::vector<BlockOp> ops;
  std::vector<Block> b;
  for (int i = 0; i < 10; ++i) b.push_back(PatternBlock(50 + i));
  for (int i = 0; i < 10; ++i) ops.push_back(WriteOp(f1_, chain_, i, b[i]));
  ASSERT_TRUE(Apply(ops).ok());
  for (int i = 0; i < 10; ++i) Age(f1_, i, i);  // LBA 9 is the oldest
  auto unique = cat().UniqueHashEntries();
  ASSERT_TRUE(unique.ok());
  EXPECT_EQ(*unique, 10u);
  auto pr = cat().PruneHashIndex(INT64_MAX, 4);
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  EXPECT_EQ(pr->pruned, 4u);
  EXPECT_EQ(pr->entries_left, 6u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(Indexed(f1_, i), i < 6) << "LBA " << i;
  // Again: nothing pruned twice.
  pr = cat().PruneHashIndex(INT64_MAX, 100);
  ASSERT_TRUE(pr.ok());
  EXPECT_EQ(pr->pruned, 6u);
  EXPECT_EQ(pr->entries_left, 0u);
  EXPECT_EQ(pr->unindexed, 10u);
  ExpectCatalogInvariants(cat(), store());
  // Survives a reopen (the counters are in the catalog).
  Reopen(CatalogOptions{});
  EXPECT_EQ(cat().HashTable().unindexed, 10u);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(CatalogPruneTest, ReadOnlyCatalogRefusesPrune) {
  CatalogOptions ro;
  ro.read_only = true;
  backing_.reset();
  auto b = BackingDir::Open(root_, LockMode::kNone, ro);
  ASSERT_TRUE(b.ok());
  auto pr = (*b)->catalog().PruneHashIndex(INT64_MAX, 1);
  EXPECT_FALSE(pr.ok());
  EXPECT_EQ(pr.status().code(), EROFS);
}

// ------------------------------------------------------------------ fsck

TEST_F(CatalogPruneTest, FsckAcceptsBlocksWithoutAnEntryAndChecksTheCounters) {
  std::vector<Block> b;
  for (int i = 0; i < 6; ++i) b.push_back(PatternBlock(70 + i));
  std::vector<BlockOp> ops;
  for (int i = 0; i < 6; ++i) ops.push_back(WriteOp(f1_, chain_, i, b[i]));
  ASSERT_TRUE(Apply(ops).ok());
  ASSERT_TRUE(cat().PruneHashIndex(INT64_MAX, 4).ok());
  FsckOptions fo;
  auto rep = RunFsck(*backing_, fo);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_TRUE(rep->clean()) << (rep->issues.empty() ? "" : rep->issues[0].kind + ": " + rep->issues[0].detail);
  EXPECT_EQ(rep->unindexed, 4u);
  EXPECT_EQ(rep->blocks_checked, 2u) << "only blocks with a key have a hash to check";

  // A wrong counter is found and repaired.
  CS_ASSERT_OK(db().Exec("UPDATE meta SET value = '5' WHERE key = 'hash_entries'"));
  rep = RunFsck(*backing_, fo);
  ASSERT_TRUE(rep.ok());
  ASSERT_EQ(rep->issues.size(), 1u);
  EXPECT_EQ(rep->issues[0].kind, "hash_counters");
  fo.repair = true;
  rep = RunFsck(*backing_, fo);
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->all_repaired());
  EXPECT_EQ(QueryInt(db(), "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'hash_entries'"), 2);

  // A repair that rebuilds the index leaves the unindexed blocks out of it.
  CS_ASSERT_OK(db().Exec("DELETE FROM hash_index"));
  rep = RunFsck(*backing_, fo);
  ASSERT_TRUE(rep.ok());
  EXPECT_FALSE(rep->clean());
  EXPECT_EQ(QueryInt(db(), "SELECT count(*) FROM hash_index"), 2);
  fo.repair = false;
  rep = RunFsck(*backing_, fo);
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->clean()) << (rep->issues.empty() ? "" : rep->issues[0].kind + ": " + rep->issues[0].detail);
}

}  // namespace
}  // namespace chainswap
