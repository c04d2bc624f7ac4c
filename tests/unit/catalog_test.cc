// The catalog: namespace calls, the one apply routine (SPEC §4, §5), dedup,
// refcounts, the free list, capacity and opening (catalog/catalog.h).
#include "catalog/catalog.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "catalog/backing_dir.h"
#include "catalog/schema.h"
#include "test_util.h"

namespace chainswap {
namespace {

using test::Block;
using test::CatalogDump;
using test::DeleteOp;
using test::DumpCatalog;
using test::ExpectCatalogInvariants;
using test::ForcedCollisions;
using test::Join;
using test::PatternBlock;
using test::QueryInt;
using test::QueryRows;
using test::TempDir;
using test::WriteOp;

class CatalogTest : public test::BackingFixture {};

// ---------------------------------------------------------------- namespace

TEST_F(CatalogTest, NewCatalogIsEmpty) {
  auto chains = cat().ListChains();
  ASSERT_TRUE(chains.ok());
  EXPECT_TRUE(chains->empty());
  auto files = cat().ListFiles();
  ASSERT_TRUE(files.ok());
  EXPECT_TRUE(files->empty());
  StoreUsage u = cat().Usage();
  EXPECT_EQ(u.used_slots, 0u);
  EXPECT_EQ(u.free_slots, 0u);
  EXPECT_EQ(u.high_water, 0u);
  EXPECT_EQ(u.capacity_slots, 0u);
  EXPECT_EQ(QueryInt(db(), "PRAGMA user_version"), kSchemaVersion);
  EXPECT_EQ(QueryRows(db(), "PRAGMA journal_mode"), std::vector<std::string>{"wal"});
}

TEST_F(CatalogTest, CreateChainTwiceSameNameIsEexist) {
  auto a = cat().CreateChain("pool", 0755, 1, 2, 1000);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  auto b = cat().CreateChain("pool", 0700, 3, 4, 2000);
  EXPECT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), EEXIST) << b.status().ToString();
  auto chains = cat().ListChains();
  ASSERT_TRUE(chains.ok());
  ASSERT_EQ(chains->size(), 1u);
  EXPECT_EQ((*chains)[0].dedup_id, a->dedup_id);
  EXPECT_EQ((*chains)[0].mode, 0755u);
}

TEST_F(CatalogTest, ChainsGetDistinctDedupIds) {
  std::set<int64_t> ids;
  for (int i = 0; i < 5; ++i) {
    auto c = cat().CreateChain("chain" + std::to_string(i), 0755, 0, 0, 1000 + i);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_GT(c->dedup_id, 0);
    ids.insert(c->dedup_id);
  }
  EXPECT_EQ(ids.size(), 5u);
  auto chains = cat().ListChains();
  ASSERT_TRUE(chains.ok());
  ASSERT_EQ(chains->size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ((*chains)[i].name, "chain" + std::to_string(i));
    EXPECT_EQ((*chains)[i].mtime_ns, 1000 + i);
    EXPECT_EQ((*chains)[i].ctime_ns, 1000 + i);
  }
  // Each chain has its own secret seed.
  EXPECT_EQ(QueryInt(db(), "SELECT count(DISTINCT hash_seed) FROM chain"), 5);
  EXPECT_EQ(QueryInt(db(), "SELECT min(length(hash_seed)) FROM chain"), int64_t{kSeedSize});
}

TEST_F(CatalogTest, DedupIdsAreNotReusedAfterRemove) {
  int64_t a = NewChain("a");
  CS_ASSERT_OK(cat().RemoveChain(a).status());
  int64_t b = NewChain("b");
  EXPECT_NE(a, b) << "a removed chain's dedup ID was handed out again";
  // And the name of a removed chain can be taken again.
  int64_t a2 = NewChain("a");
  EXPECT_NE(a2, a);
}

TEST_F(CatalogTest, UpdateChain) {
  auto c = cat().CreateChain("old", 0755, 0, 0, 1000);
  ASSERT_TRUE(c.ok());
  ChainInfo ci = *c;
  ci.name = "new";
  ci.mode = 0700;
  ci.uid = 12;
  ci.gid = 34;
  ci.mtime_ns = 5;
  ci.ctime_ns = 6;
  CS_ASSERT_OK(cat().UpdateChain(ci));
  auto chains = cat().ListChains();
  ASSERT_TRUE(chains.ok());
  ASSERT_EQ(chains->size(), 1u);
  const ChainInfo& got = (*chains)[0];
  EXPECT_EQ(got.name, "new");
  EXPECT_EQ(got.mode, 0700u);
  EXPECT_EQ(got.uid, 12u);
  EXPECT_EQ(got.gid, 34u);
  EXPECT_EQ(got.mtime_ns, 5);
  EXPECT_EQ(got.ctime_ns, 6);
}

TEST_F(CatalogTest, CreateListUpdateRenameDropFiles) {
  int64_t chain = NewChain("pool");
  auto f1 = cat().CreateFile(chain, "vm01.vswp", 0600, 10, 20, 111);
  ASSERT_TRUE(f1.ok()) << f1.status().ToString();
  auto f2 = cat().CreateFile(chain, "vm02.vswp", 0640, 11, 21, 222);
  ASSERT_TRUE(f2.ok());
  EXPECT_NE(f1->file_id, f2->file_id);
  EXPECT_EQ(f1->dedup_id, chain);
  EXPECT_EQ(f1->size, 0u);
  EXPECT_FALSE(f1->unlinked);

  // Same name in the same chain: EEXIST.
  auto dup = cat().CreateFile(chain, "vm01.vswp", 0600, 0, 0, 1);
  EXPECT_EQ(dup.status().code(), EEXIST) << dup.status().ToString();
  // Same name in another chain is fine.
  int64_t other = NewChain("other");
  auto f3 = cat().CreateFile(other, "vm01.vswp", 0600, 0, 0, 1);
  ASSERT_TRUE(f3.ok()) << f3.status().ToString();

  auto files = cat().ListFiles();
  ASSERT_TRUE(files.ok());
  ASSERT_EQ(files->size(), 3u);
  EXPECT_EQ((*files)[0].name, "vm01.vswp");
  EXPECT_EQ((*files)[0].mode, 0600u);
  EXPECT_EQ((*files)[0].uid, 10u);
  EXPECT_EQ((*files)[0].gid, 20u);
  EXPECT_EQ((*files)[0].atime_ns, 111);
  EXPECT_EQ((*files)[0].mtime_ns, 111);
  EXPECT_EQ((*files)[0].ctime_ns, 111);
  EXPECT_EQ((*files)[1].name, "vm02.vswp");

  // UpdateFile persists size, mode, owner and times.
  FileInfo u = *f1;
  u.size = 8192;
  u.mode = 0644;
  u.uid = 99;
  u.gid = 98;
  u.atime_ns = 1;
  u.mtime_ns = 2;
  u.ctime_ns = 3;
  CS_ASSERT_OK(cat().UpdateFile(u));
  files = cat().ListFiles();
  ASSERT_TRUE(files.ok());
  const FileInfo& g = (*files)[0];
  EXPECT_EQ(g.size, 8192u);
  EXPECT_EQ(g.mode, 0644u);
  EXPECT_EQ(g.uid, 99u);
  EXPECT_EQ(g.gid, 98u);
  EXPECT_EQ(g.atime_ns, 1);
  EXPECT_EQ(g.mtime_ns, 2);
  EXPECT_EQ(g.ctime_ns, 3);

  // Rename within the chain.
  CS_ASSERT_OK(cat().RenameFile(f1->file_id, "vm01-renamed.vswp", std::nullopt));
  files = cat().ListFiles();
  ASSERT_TRUE(files.ok());
  EXPECT_EQ((*files)[0].name, "vm01-renamed.vswp");

  // Rename over an existing file unlinks the replaced one atomically.
  CS_ASSERT_OK(cat().RenameFile(f1->file_id, "vm02.vswp", f2->file_id));
  files = cat().ListFiles();
  ASSERT_TRUE(files.ok());
  ASSERT_EQ(files->size(), 3u);
  EXPECT_EQ((*files)[0].name, "vm02.vswp");
  EXPECT_FALSE((*files)[0].unlinked);
  EXPECT_TRUE((*files)[1].unlinked);
  EXPECT_EQ((*files)[1].name, "");

  // The freed name can be used again although an unlinked file is around.
  auto f4 = cat().CreateFile(chain, "vm01.vswp", 0600, 0, 0, 1);
  ASSERT_TRUE(f4.ok()) << f4.status().ToString();

  // UpdateFile with unlinked=true clears the name.
  FileInfo un = *f4;
  un.unlinked = true;
  CS_ASSERT_OK(cat().UpdateFile(un));
  EXPECT_EQ(QueryInt(db(), "SELECT count(*) FROM swap_file WHERE name IS NULL"), 2);

  // Dropping files (no blocks) removes their rows.
  CS_ASSERT_OK(cat().DropFile(f2->file_id));
  CS_ASSERT_OK(cat().DropFile(f4->file_id));
  files = cat().ListFiles();
  ASSERT_TRUE(files.ok());
  ASSERT_EQ(files->size(), 2u);
  EXPECT_EQ((*files)[0].file_id, f1->file_id);
  EXPECT_EQ((*files)[1].file_id, f3->file_id);
}

TEST_F(CatalogTest, DropFileWithBlocksIsEbusy) {
  int64_t chain = NewChain("pool");
  int64_t f = NewFile(chain, "a");
  Block b = PatternBlock(1);
  ASSERT_TRUE(Apply({WriteOp(f, chain, 3, b)}).ok());
  CS_EXPECT_ERRNO(cat().DropFile(f), EBUSY);
  auto files = cat().ListFiles();
  ASSERT_TRUE(files.ok());
  EXPECT_EQ(files->size(), 1u);
  ASSERT_TRUE(Apply({DeleteOp(f, chain, 0, 100)}).ok());
  CS_EXPECT_OK(cat().DropFile(f));
  files = cat().ListFiles();
  ASSERT_TRUE(files.ok());
  EXPECT_TRUE(files->empty());
}

TEST_F(CatalogTest, RemoveChainWithFilesIsEnotempty) {
  int64_t chain = NewChain("pool");
  int64_t f = NewFile(chain, "a");
  CS_EXPECT_ERRNO(cat().RemoveChain(chain).status(), ENOTEMPTY);
  // Once only an unlinked file (still being reclaimed) is left, the chain is
  // removed by name at once; its row and seed stay until that file goes.
  CS_ASSERT_OK(cat().RenameFile(NewFile(chain, "b"), "b", f));  // unlinks f
  auto files = cat().ListFiles();
  ASSERT_TRUE(files.ok());
  ASSERT_EQ(files->size(), 2u);
  CS_ASSERT_OK(cat().DropFile((*files)[1].file_id));
  ASSERT_EQ(QueryInt(db(), "SELECT count(*) FROM swap_file WHERE name IS NULL"), 1);
  auto removed = cat().RemoveChain(chain);
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_FALSE(*removed) << "the row must stay while a file of the chain is reclaimed";
  auto chains = cat().ListChains();
  ASSERT_TRUE(chains.ok());
  EXPECT_TRUE(chains->empty());
  EXPECT_TRUE(cat().HasherFor(chain).ok()) << "the seed outlives the chain's files";
  EXPECT_EQ(QueryInt(db(), "SELECT count(*) FROM chain_stats"), 0);
  int64_t again = NewChain("pool");  // the name is free at once
  EXPECT_NE(again, chain);
  CS_ASSERT_OK(cat().DropFile(f));
  EXPECT_EQ(QueryInt(db(), "SELECT count(*) FROM chain WHERE dedup_id = " + std::to_string(chain)), 0)
      << "the last file's drop takes the removed chain's row with it";
  CS_EXPECT_ERRNO(cat().HasherFor(chain).status(), ENOENT);
  auto gone = cat().RemoveChain(again);
  ASSERT_TRUE(gone.ok());
  EXPECT_TRUE(*gone);
  chains = cat().ListChains();
  ASSERT_TRUE(chains.ok());
  EXPECT_TRUE(chains->empty());
}

TEST_F(CatalogTest, HasherForUnknownChainIsEnoent) {
  auto h = cat().HasherFor(12345);
  EXPECT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), ENOENT);
  int64_t chain = NewChain("pool");
  auto h2 = cat().HasherFor(chain);
  ASSERT_TRUE(h2.ok()) << h2.status().ToString();
  EXPECT_NE(h2->get(), nullptr);
}

TEST_F(CatalogTest, WriteToUnknownChainFailsAndChangesNothing) {
  int64_t chain = NewChain("pool");
  int64_t f = NewFile(chain, "a");
  CatalogDump before = DumpCatalog(cat());
  Block b = PatternBlock(1);
  auto r = Apply({WriteOp(f, 999, 0, b)});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ENOENT) << r.status().ToString();
  EXPECT_EQ(DumpCatalog(cat()), before);
  EXPECT_EQ(cat().Usage().used_slots, 0u);
}

// ------------------------------------------------------------------- blocks

TEST_F(CatalogTest, WriteAndReadBack) {
  int64_t chain = NewChain("pool");
  int64_t f = NewFile(chain, "a");
  Block a = PatternBlock(1), b = PatternBlock(2);
  auto r = Apply({WriteOp(f, chain, 0, a), WriteOp(f, chain, 5, b)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->blocks_stored, 2u);
  EXPECT_EQ(r->blocks_deduped, 0u);
  EXPECT_TRUE(ReadBlock(f, 0) == a);
  EXPECT_TRUE(ReadBlock(f, 5) == b);
  EXPECT_TRUE(IsZeroBlock(ReadBlock(f, 1).data()));
  // A multi-block read with holes in between and past the last entry.
  std::vector<uint8_t> buf(8 * kBlockSize, 0xEE);
  CS_ASSERT_OK(cat().ReadBlocks(f, 0, 8, buf.data()));
  EXPECT_EQ(std::memcmp(buf.data(), a.data(), kBlockSize), 0);
  EXPECT_EQ(std::memcmp(buf.data() + 5 * kBlockSize, b.data(), kBlockSize), 0);
  for (int i : {1, 2, 3, 4, 6, 7}) {
    EXPECT_TRUE(std::all_of(buf.begin() + i * kBlockSize, buf.begin() + (i + 1) * kBlockSize,
                            [](uint8_t x) { return x == 0; }))
        << "block " << i;
  }
  auto mapped = cat().MappedBlocks(f);
  ASSERT_TRUE(mapped.ok());
  EXPECT_EQ(*mapped, 2u);
  auto next = cat().NextMapped(f, 1);
  ASSERT_TRUE(next.ok());
  ASSERT_TRUE(next->has_value());
  EXPECT_EQ(**next, 5u);
  next = cat().NextMapped(f, 6);
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->has_value());
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(CatalogTest, ReadBlocksAcrossConsecutiveSlots) {
  // Consecutive LBAs in consecutive slots are read in one run; make sure the
  // run logic keeps every block in place, also when the slots are not in LBA order.
  int64_t chain = NewChain("pool");
  int64_t f = NewFile(chain, "a");
  std::vector<Block> blocks;
  for (int i = 0; i < 6; ++i) blocks.push_back(PatternBlock(100 + i));
  // lba 0..2 -> slots 0..2; lba 3 -> slot 4 ; lba 4 -> slot 3; lba 5 -> slot 5
  ASSERT_TRUE(Apply({WriteOp(f, chain, 0, blocks[0]), WriteOp(f, chain, 1, blocks[1]),
                     WriteOp(f, chain, 2, blocks[2]), WriteOp(f, chain, 4, blocks[4]),
                     WriteOp(f, chain, 3, blocks[3]), WriteOp(f, chain, 5, blocks[5])})
                  .ok());
  std::vector<uint8_t> buf(6 * kBlockSize);
  CS_ASSERT_OK(cat().ReadBlocks(f, 0, 6, buf.data()));
  for (int i = 0; i < 6; ++i)
    EXPECT_EQ(std::memcmp(buf.data() + i * kBlockSize, blocks[i].data(), kBlockSize), 0) << "lba " << i;
  // A read starting in the middle.
  CS_ASSERT_OK(cat().ReadBlocks(f, 2, 3, buf.data()));
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(std::memcmp(buf.data() + i * kBlockSize, blocks[2 + i].data(), kBlockSize), 0)
        << "lba " << 2 + i;
}

TEST_F(CatalogTest, SameBlockInTwoFilesOfOneChainIsStoredOnce) {
  int64_t chain = NewChain("pool");
  int64_t f1 = NewFile(chain, "vm01");
  int64_t f2 = NewFile(chain, "vm02");
  Block a = PatternBlock(7);
  auto r = Apply({WriteOp(f1, chain, 0, a), WriteOp(f2, chain, 9, a)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->blocks_stored, 1u);
  EXPECT_EQ(r->blocks_deduped, 1u);
  EXPECT_EQ(cat().Usage().used_slots, 1u);
  EXPECT_EQ(QueryInt(db(), "SELECT count(*) FROM pat"), 1);
  EXPECT_EQ(QueryInt(db(), "SELECT refcount FROM pat"), 2);
  EXPECT_EQ(PblockOf(f1, 0), PblockOf(f2, 9));
  EXPECT_TRUE(ReadBlock(f1, 0) == a);
  EXPECT_TRUE(ReadBlock(f2, 9) == a);

  // Across separate transactions as well.
  r = Apply({WriteOp(f2, chain, 10, a)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks_deduped, 1u);
  EXPECT_EQ(r->blocks_stored, 0u);
  EXPECT_EQ(cat().Usage().used_slots, 1u);
  EXPECT_EQ(QueryInt(db(), "SELECT refcount FROM pat"), 3);
  // And in the chain_stats view.
  auto stats = cat().Stats();
  ASSERT_TRUE(stats.ok());
  ASSERT_EQ(stats->size(), 1u);
  EXPECT_EQ((*stats)[0].nonzero_bytes, 3u * kBlockSize);
  EXPECT_EQ((*stats)[0].stored_bytes, 1u * kBlockSize);
  EXPECT_EQ((*stats)[0].files, 2u);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(CatalogTest, SameBlockInTwoChainsIsStoredTwice) {
  int64_t c1 = NewChain("one");
  int64_t c2 = NewChain("two");
  int64_t f1 = NewFile(c1, "vm");
  int64_t f2 = NewFile(c2, "vm");
  Block a = PatternBlock(7);
  auto r = Apply({WriteOp(f1, c1, 0, a), WriteOp(f2, c2, 0, a)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->blocks_stored, 2u);
  EXPECT_EQ(r->blocks_deduped, 0u);
  EXPECT_EQ(cat().Usage().used_slots, 2u);
  EXPECT_NE(PblockOf(f1, 0), PblockOf(f2, 0));
  EXPECT_EQ(QueryInt(db(), "SELECT count(DISTINCT dedup_id) FROM pat"), 2);
  EXPECT_EQ(QueryInt(db(), "SELECT max(refcount) FROM pat"), 1);
  // Keyed hashes: the same content hashes differently in the two chains.
  EXPECT_EQ(QueryInt(db(), "SELECT count(DISTINCT hash_key) FROM pat"), 2);
  EXPECT_TRUE(ReadBlock(f1, 0) == a);
  EXPECT_TRUE(ReadBlock(f2, 0) == a);
  ExpectCatalogInvariants(cat(), store());
}

// Random overwrites free and allocate a slot per block: a slot freed since
// the last Sync (bytes still allocated) is reused before a punched one, so
// the overwrite costs no fallocate; Sync punches what stays free.
TEST_F(CatalogTest, UnpunchedFreeSlotIsReusedBeforeAPunchedOne) {
  int64_t chain = NewChain("pool");
  int64_t f = NewFile(chain, "a");
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Apply({WriteOp(f, chain, i, PatternBlock(10 + i))}).ok());
  ASSERT_TRUE(Apply({DeleteOp(f, chain, 0, 1)}).ok());  // slot 0 freed
  // Not reusable before a Sync has made the free durable: a new block grows the store.
  ASSERT_TRUE(Apply({WriteOp(f, chain, 7, PatternBlock(19))}).ok());
  EXPECT_EQ(PblockOf(f, 7), 4);
  CS_ASSERT_OK(cat().Sync());                            // slot 0 reusable
  CS_ASSERT_OK(cat().Sync(/*idle=*/true));               // ... and punched
  ASSERT_TRUE(Apply({DeleteOp(f, chain, 2, 1)}).ok());  // slot 2 freed
  CS_ASSERT_OK(cat().Sync());                            // reusable, not punched
  ASSERT_TRUE(Apply({WriteOp(f, chain, 8, PatternBlock(20))}).ok());
  EXPECT_EQ(PblockOf(f, 8), 2) << "the unpunched slot first";
  ASSERT_TRUE(Apply({WriteOp(f, chain, 9, PatternBlock(21))}).ok());
  EXPECT_EQ(PblockOf(f, 9), 0) << "then the lowest free slot";
  EXPECT_TRUE(ReadBlock(f, 8) == PatternBlock(20));
  EXPECT_TRUE(ReadBlock(f, 9) == PatternBlock(21));
  ExpectCatalogInvariants(cat(), store());
}

// Under load a Sync punches only the free slots beyond the reserve (the
// highest first: allocation reuses the lowest), so that steady random
// overwrites do not punch a slot and then fill the hole again.
TEST_F(CatalogTest, SyncUnderLoadKeepsAReserveOfUnpunchedSlots) {
  int64_t chain = NewChain("pool");
  int64_t f = NewFile(chain, "a");
  const uint64_t n = kUnpunchedReserveSlots + 8;
  std::vector<Block> blocks;
  blocks.reserve(n);
  std::vector<BlockOp> ops;
  for (uint64_t i = 0; i < n; ++i) {
    blocks.push_back(PatternBlock(1000 + i));
    ops.push_back(WriteOp(f, chain, i, blocks.back()));
  }
  ASSERT_TRUE(cat().ApplyBlockOps(ops).ok());
  ASSERT_TRUE(Apply({DeleteOp(f, chain, 0, n)}).ok());
  CS_ASSERT_OK(cat().Sync());  // all n free, reusable, none punched yet
  auto before = store().AllocatedBytes();
  ASSERT_TRUE(before.ok());
  CS_ASSERT_OK(cat().Sync());  // under load: the 8 highest go
  auto after = store().AllocatedBytes();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after + 8 * kBlockSize, *before);
  Block z;
  CS_ASSERT_OK(store().ReadSlots(n - 1, 1, z.data()));
  EXPECT_TRUE(IsZeroBlock(z.data())) << "the highest slot was punched";
  CS_ASSERT_OK(store().ReadSlots(0, 1, z.data()));
  EXPECT_TRUE(z == blocks[0]) << "the lowest slot keeps its bytes for reuse";
  EXPECT_TRUE(cat().HasSlotsToRelease());
  CS_ASSERT_OK(cat().Sync(/*idle=*/true));  // idle: everything goes back
  EXPECT_FALSE(cat().HasSlotsToRelease());
  auto idle = store().AllocatedBytes();
  ASSERT_TRUE(idle.ok());
  EXPECT_EQ(*idle, 0u);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(CatalogTest, OverwriteFreesOldBlockAndSlotsAreReusedLowestFirst) {
  int64_t chain = NewChain("pool");
  int64_t f = NewFile(chain, "a");
  Block a = PatternBlock(1), b = PatternBlock(2), c = PatternBlock(3), d = PatternBlock(4);
  ASSERT_TRUE(Apply({WriteOp(f, chain, 0, a)}).ok());
  ASSERT_TRUE(Apply({WriteOp(f, chain, 1, b)}).ok());
  ASSERT_TRUE(Apply({WriteOp(f, chain, 2, c)}).ok());
  EXPECT_EQ(PblockOf(f, 0), 0);
  EXPECT_EQ(PblockOf(f, 1), 1);
  EXPECT_EQ(PblockOf(f, 2), 2);
  // Share a so that overwriting one reference only decrements.
  ASSERT_TRUE(Apply({WriteOp(f, chain, 3, a)}).ok());
  EXPECT_EQ(RefcountOf(0), 2);

  auto r = Apply({WriteOp(f, chain, 3, d)});  // a: 2 -> 1, d new at slot 3
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->blocks_freed, 0u);
  EXPECT_EQ(RefcountOf(0), 1);
  EXPECT_EQ(PblockOf(f, 3), 3);
  EXPECT_EQ(static_cast<int64_t>(test::FreeSlots(cat()).size()), 0);

  auto alloc_before = store().AllocatedBytes();
  ASSERT_TRUE(alloc_before.ok());
  // Overwrite lba 2 (c, slot 2) and lba 0 (a, slot 0) with the existing b:
  // both old blocks drop to 0 and are freed.
  r = Apply({WriteOp(f, chain, 2, b)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks_freed, 1u);
  r = Apply({WriteOp(f, chain, 0, b)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks_freed, 1u);
  EXPECT_EQ(RefcountOf(1), 3);
  EXPECT_EQ(RefcountOf(0), 0);
  EXPECT_EQ(RefcountOf(2), 0);
  EXPECT_EQ(Join(test::FreeSlots(cat())), "0\n2\n");
  StoreUsage u = cat().Usage();
  EXPECT_EQ(u.used_slots, 2u);
  EXPECT_EQ(u.free_slots, 2u);
  EXPECT_EQ(u.high_water, 4u);
  // Freed slots keep their bytes until a Sync has made the frees durable
  // (before that a power cut could bring the old references back); the
  // first Sync makes them reusable, still allocated (a slot reused soon
  // after costs no punch); under load they stay so (within the reserve),
  // and the next idle Sync punches what stayed free.
  auto alloc_unsynced = store().AllocatedBytes();
  ASSERT_TRUE(alloc_unsynced.ok());
  EXPECT_EQ(*alloc_unsynced, *alloc_before);
  EXPECT_TRUE(cat().HasSlotsToRelease());
  CS_ASSERT_OK(cat().Sync());
  EXPECT_EQ(*store().AllocatedBytes(), *alloc_before);
  EXPECT_TRUE(cat().HasSlotsToRelease());
  CS_ASSERT_OK(cat().Sync());
  EXPECT_EQ(*store().AllocatedBytes(), *alloc_before) << "kept within the reserve under load";
  CS_ASSERT_OK(cat().Sync(/*idle=*/true));
  EXPECT_FALSE(cat().HasSlotsToRelease());
  auto alloc_after = store().AllocatedBytes();
  ASSERT_TRUE(alloc_after.ok());
  EXPECT_LE(*alloc_after + 2 * kBlockSize, *alloc_before);
  Block z;
  CS_ASSERT_OK(store().ReadSlots(0, 1, z.data()));
  EXPECT_TRUE(IsZeroBlock(z.data()));

  // New blocks take the lowest free slot first, then the next, then grow.
  Block e = PatternBlock(5), g = PatternBlock(6), h = PatternBlock(7);
  ASSERT_TRUE(Apply({WriteOp(f, chain, 10, e)}).ok());
  EXPECT_EQ(PblockOf(f, 10), 0);
  ASSERT_TRUE(Apply({WriteOp(f, chain, 11, g)}).ok());
  EXPECT_EQ(PblockOf(f, 11), 2);
  ASSERT_TRUE(Apply({WriteOp(f, chain, 12, h)}).ok());
  EXPECT_EQ(PblockOf(f, 12), 4);
  EXPECT_EQ(static_cast<int64_t>(test::FreeSlots(cat()).size()), 0);
  EXPECT_TRUE(ReadBlock(f, 10) == e);
  EXPECT_TRUE(ReadBlock(f, 11) == g);
  EXPECT_TRUE(ReadBlock(f, 12) == h);
  EXPECT_TRUE(ReadBlock(f, 0) == b);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(CatalogTest, ZeroBlockWriteMakesAHole) {
  int64_t chain = NewChain("pool");
  int64_t f = NewFile(chain, "a");
  Block a = PatternBlock(1);
  Block zero;
  // A zero block on a hole stores nothing.
  auto r = Apply({WriteOp(f, chain, 0, zero)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks_stored, 0u);
  EXPECT_EQ(QueryInt(db(), "SELECT count(*) FROM lat"), 0);
  EXPECT_EQ(cat().Usage().used_slots, 0u);

  ASSERT_TRUE(Apply({WriteOp(f, chain, 0, a), WriteOp(f, chain, 1, a)}).ok());
  EXPECT_EQ(RefcountOf(PblockOf(f, 0)), 2);
  r = Apply({WriteOp(f, chain, 0, zero)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(PblockOf(f, 0), -1);
  EXPECT_EQ(RefcountOf(PblockOf(f, 1)), 1);
  EXPECT_EQ(r->blocks_freed, 0u);
  r = Apply({WriteOp(f, chain, 1, zero)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks_freed, 1u);
  EXPECT_EQ(QueryInt(db(), "SELECT count(*) FROM lat"), 0);
  EXPECT_EQ(QueryInt(db(), "SELECT count(*) FROM pat"), 0);
  EXPECT_EQ(cat().Usage().used_slots, 0u);
  auto mapped = cat().MappedBlocks(f);
  ASSERT_TRUE(mapped.ok());
  EXPECT_EQ(*mapped, 0u);
  EXPECT_TRUE(IsZeroBlock(ReadBlock(f, 0).data()));
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(CatalogTest, DeleteRangeRemovesEntriesAndFrees) {
  int64_t chain = NewChain("pool");
  int64_t f = NewFile(chain, "a");
  int64_t g = NewFile(chain, "b");
  std::vector<Block> blocks;
  for (int i = 0; i < 10; ++i) blocks.push_back(PatternBlock(i));
  std::vector<BlockOp> ops;
  for (int i = 0; i < 10; ++i) ops.push_back(WriteOp(f, chain, i, blocks[i]));
  ops.push_back(WriteOp(g, chain, 0, blocks[4]));  // keeps block 4 alive
  ASSERT_TRUE(Apply(ops).ok());
  EXPECT_EQ(cat().Usage().used_slots, 10u);

  auto r = Apply({DeleteOp(f, chain, 2, 5)});  // lbas 2..6
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->blocks_freed, 4u);
  EXPECT_EQ(Join(QueryRows(db(), "SELECT lba FROM lat WHERE file_id = " + std::to_string(f) +
                                     " ORDER BY lba")),
            "0\n1\n7\n8\n9\n");
  EXPECT_EQ(cat().Usage().used_slots, 6u);
  EXPECT_EQ(cat().Usage().free_slots, 4u);
  EXPECT_TRUE(ReadBlock(g, 0) == blocks[4]);
  auto mapped = cat().MappedBlocks(f);
  ASSERT_TRUE(mapped.ok());
  EXPECT_EQ(*mapped, 5u);
  for (int i = 2; i < 7; ++i) EXPECT_TRUE(IsZeroBlock(ReadBlock(f, i).data())) << i;
  EXPECT_TRUE(ReadBlock(f, 7) == blocks[7]);

  // Deleting holes is a no-op; count 0 is a no-op.
  r = Apply({DeleteOp(f, chain, 2, 5), DeleteOp(f, chain, 0, 0)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks_freed, 0u);
  EXPECT_EQ(cat().MappedBlocks(f).value(), 5u);

  // A range reaching to the end of the address space (count overflows).
  r = Apply({DeleteOp(f, chain, 1, UINT64_MAX)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Join(QueryRows(db(), "SELECT lba FROM lat WHERE file_id = " + std::to_string(f))), "0\n");
  EXPECT_EQ(cat().MappedBlocks(f).value(), 1u);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(CatalogTest, DeleteRangeWithSharedBlocksDropsRefcountsByCount) {
  int64_t chain = NewChain("pool");
  int64_t f = NewFile(chain, "a");
  Block a = PatternBlock(1);
  std::vector<BlockOp> ops;
  for (int i = 0; i < 8; ++i) ops.push_back(WriteOp(f, chain, i, a));
  ASSERT_TRUE(Apply(ops).ok());
  EXPECT_EQ(QueryInt(db(), "SELECT refcount FROM pat"), 8);
  ASSERT_TRUE(Apply({DeleteOp(f, chain, 0, 5)}).ok());
  EXPECT_EQ(QueryInt(db(), "SELECT refcount FROM pat"), 3);
  auto r = Apply({DeleteOp(f, chain, 0, 8)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks_freed, 1u);
  EXPECT_EQ(QueryInt(db(), "SELECT count(*) FROM pat"), 0);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(CatalogTest, MetaUpdatesCommitWithOps) {
  int64_t chain = NewChain("pool");
  int64_t f = NewFile(chain, "a");
  Block a = PatternBlock(1);
  std::vector<BlockOp> ops = {WriteOp(f, chain, 1, a)};
  std::vector<FileMetaUpdate> meta = {FileMetaUpdate{f, 3 * kBlockSize, 77, 88}};
  ASSERT_TRUE(cat().ApplyBlockOps(ops, meta).ok());
  auto files = cat().ListFiles();
  ASSERT_TRUE(files.ok());
  ASSERT_EQ(files->size(), 1u);
  EXPECT_EQ((*files)[0].size, 3u * kBlockSize);
  EXPECT_EQ((*files)[0].mtime_ns, 77);
  EXPECT_EQ((*files)[0].ctime_ns, 88);
  EXPECT_EQ((*files)[0].mapped_blocks, 1u);
  // A meta-only batch.
  meta[0].size = 10;
  ASSERT_TRUE(cat().ApplyBlockOps({}, meta).ok());
  EXPECT_EQ(cat().ListFiles().value()[0].size, 10u);

  auto stats = cat().Stats();
  ASSERT_TRUE(stats.ok());
  ASSERT_EQ(stats->size(), 1u);
  EXPECT_EQ((*stats)[0].logical_bytes, 10u);
}

TEST_F(CatalogTest, StatsCountHolesAndSharing) {
  int64_t chain = NewChain("pool");
  int64_t f1 = NewFile(chain, "a");
  int64_t f2 = NewFile(chain, "b");
  Block a = PatternBlock(1), b = PatternBlock(2);
  std::vector<BlockOp> ops = {WriteOp(f1, chain, 0, a), WriteOp(f1, chain, 1, b),
                              WriteOp(f2, chain, 0, a), WriteOp(f2, chain, 3, b)};
  std::vector<FileMetaUpdate> meta = {FileMetaUpdate{f1, 4 * kBlockSize, 1, 1},
                                      FileMetaUpdate{f2, 8 * kBlockSize, 1, 1}};
  ASSERT_TRUE(cat().ApplyBlockOps(ops, meta).ok());
  auto stats = cat().Stats();
  ASSERT_TRUE(stats.ok());
  ASSERT_EQ(stats->size(), 1u);
  const ChainStats& s = (*stats)[0];
  EXPECT_EQ(s.dedup_id, chain);
  EXPECT_EQ(s.name, "pool");
  EXPECT_EQ(s.files, 2u);
  EXPECT_EQ(s.logical_bytes, 12u * kBlockSize);
  EXPECT_EQ(s.nonzero_bytes, 4u * kBlockSize);
  EXPECT_EQ(s.zero_blocks, 8u);
  EXPECT_EQ(s.stored_bytes, 2u * kBlockSize);
  EXPECT_EQ(QueryInt(db(), "SELECT saved_bytes FROM chain_stats"), 2 * kBlockSize);
  EXPECT_EQ(QueryRows(db(), "SELECT dedup_ratio FROM chain_stats"), std::vector<std::string>{"2.0"});
  // file_stats splits stored bytes among sharers.
  EXPECT_EQ(QueryInt(db(), "SELECT sum(stored_bytes) FROM file_stats"), 2 * kBlockSize);
}

// Applying the same batch twice leaves identical tables (SPEC §5: applying
// an op sets the LBA's state, so it is idempotent).
TEST_F(CatalogTest, ApplyingTheSameBatchTwiceIsIdempotent) {
  int64_t chain = NewChain("pool");
  int64_t other = NewChain("other");
  int64_t f1 = NewFile(chain, "a");
  int64_t f2 = NewFile(chain, "b");
  int64_t f3 = NewFile(other, "c");
  std::vector<Block> blocks;
  for (int i = 0; i < 6; ++i) blocks.push_back(PatternBlock(i));
  Block zero;
  // Pre-existing state that the batch partly overwrites and deletes.
  ASSERT_TRUE(Apply({WriteOp(f1, chain, 0, blocks[0]), WriteOp(f1, chain, 1, blocks[1]),
                     WriteOp(f1, chain, 2, blocks[2]), WriteOp(f2, chain, 0, blocks[0]),
                     WriteOp(f2, chain, 5, blocks[3])})
                  .ok());
  std::vector<BlockOp> batch = {
      WriteOp(f1, chain, 0, blocks[4]),  // overwrite: 0 loses a reference
      WriteOp(f2, chain, 1, blocks[4]),  // dedup against the block just stored
      WriteOp(f1, chain, 1, zero),       // zero -> hole, frees 1
      DeleteOp(f2, chain, 4, 3),         // frees 3
      WriteOp(f2, chain, 7, blocks[2]),  // dedup against existing 2
      WriteOp(f1, chain, 9, blocks[1]),  // 1 was freed above: stored again
      WriteOp(f2, chain, 8, blocks[5]),  // new
      WriteOp(f3, other, 0, blocks[4]),  // other chain: its own copy
      DeleteOp(f1, chain, 2, 1),         // 2 survives: f2:7 references it
  };
  std::vector<FileMetaUpdate> meta = {FileMetaUpdate{f1, 10 * kBlockSize, 5, 5}};
  auto r1 = cat().ApplyBlockOps(batch, meta);
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  CatalogDump once = DumpCatalog(cat());
  StoreUsage u1 = cat().Usage();
  ExpectCatalogInvariants(cat(), store());

  auto r2 = cat().ApplyBlockOps(batch, meta);
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  CatalogDump twice = DumpCatalog(cat());
  EXPECT_EQ(Join(twice.lat), Join(once.lat));
  EXPECT_EQ(Join(twice.pat), Join(once.pat));
  EXPECT_EQ(Join(twice.free_slot), Join(once.free_slot));
  EXPECT_EQ(Join(twice.files), Join(once.files));
  StoreUsage u2 = cat().Usage();
  EXPECT_EQ(u2.used_slots, u1.used_slots);
  EXPECT_EQ(u2.free_slots, u1.free_slots);
  ExpectCatalogInvariants(cat(), store());

  // Expected contents.
  EXPECT_TRUE(ReadBlock(f1, 0) == blocks[4]);
  EXPECT_TRUE(IsZeroBlock(ReadBlock(f1, 1).data()));
  EXPECT_TRUE(IsZeroBlock(ReadBlock(f1, 2).data()));
  EXPECT_TRUE(ReadBlock(f1, 9) == blocks[1]);
  EXPECT_TRUE(ReadBlock(f2, 0) == blocks[0]);
  EXPECT_TRUE(ReadBlock(f2, 1) == blocks[4]);
  EXPECT_TRUE(IsZeroBlock(ReadBlock(f2, 5).data()));
  EXPECT_TRUE(ReadBlock(f2, 7) == blocks[2]);
  EXPECT_TRUE(ReadBlock(f2, 8) == blocks[5]);
  EXPECT_TRUE(ReadBlock(f3, 0) == blocks[4]);

  // Each single op of the batch applied again, one per transaction, changes nothing either.
  for (const BlockOp& op : batch) {
    auto r = cat().ApplyBlockOps(std::span<const BlockOp>(&op, 1));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->blocks_stored, 0u) << "op on lba " << op.lba;
    EXPECT_EQ(r->blocks_freed, 0u) << "op on lba " << op.lba;
  }
  EXPECT_EQ(DumpCatalog(cat()), once);
}

// The staging index hands the apply routine only the latest op per LBA, but a
// replayed batch may still hold two writes of one LBA: re-applying it must
// give the same contents and a consistent catalog (slots may differ).
TEST_F(CatalogTest, ReapplyingBatchWithRepeatedLbaKeepsContents) {
  int64_t chain = NewChain("pool");
  int64_t f = NewFile(chain, "a");
  Block a = PatternBlock(1), b = PatternBlock(2);
  std::vector<BlockOp> batch = {WriteOp(f, chain, 0, a), WriteOp(f, chain, 0, b),
                                WriteOp(f, chain, 1, a), DeleteOp(f, chain, 1, 1)};
  for (int round = 0; round < 3; ++round) {
    auto r = Apply(batch);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(ReadBlock(f, 0) == b) << "round " << round;
    EXPECT_TRUE(IsZeroBlock(ReadBlock(f, 1).data())) << "round " << round;
    EXPECT_EQ(cat().Usage().used_slots, 1u);
    ExpectCatalogInvariants(cat(), store());
  }
}

// Randomized operations over 3 files (2 chains) with 16 block contents,
// checked against an in-memory model, with the refcount invariant.
TEST_F(CatalogTest, RandomizedOpsKeepRefcountInvariantAndContents) {
  constexpr int kOps = 2000;
  constexpr int kContents = 16;  // content 0 is the zero block
  constexpr uint64_t kLbas = 24;
  int64_t c1 = NewChain("one");
  int64_t c2 = NewChain("two");
  struct F {
    int64_t id, chain;
  };
  std::array<F, 3> files = {F{NewFile(c1, "a"), c1}, F{NewFile(c1, "b"), c1}, F{NewFile(c2, "c"), c2}};
  std::vector<Block> contents(kContents);
  for (int i = 1; i < kContents; ++i) contents[i] = PatternBlock(static_cast<uint64_t>(i));
  // model[file][lba] = content index (0 = hole)
  std::array<std::array<int, kLbas>, 3> model{};

  std::mt19937_64 rng(20240611);
  auto pick = [&](uint64_t n) { return static_cast<uint64_t>(rng() % n); };
  int ops_done = 0;
  uint64_t stored = 0, freed = 0;
  while (ops_done < kOps) {
    // Batches of 1..4 ops, so intra-transaction interactions are covered.
    int n = static_cast<int>(1 + pick(4));
    std::vector<BlockOp> batch;
    for (int k = 0; k < n && ops_done < kOps; ++k, ++ops_done) {
      size_t fi = pick(3);
      const F& f = files[fi];
      if (pick(10) < 8) {
        uint64_t lba = pick(kLbas);
        int content = static_cast<int>(pick(kContents));
        batch.push_back(WriteOp(f.id, f.chain, lba, contents[content]));
        model[fi][lba] = content;
      } else {
        uint64_t lba = pick(kLbas);
        uint64_t count = 1 + pick(6);
        batch.push_back(DeleteOp(f.id, f.chain, lba, count));
        for (uint64_t l = lba; l < std::min(kLbas, lba + count); ++l) model[fi][l] = 0;
      }
    }
    auto r = cat().ApplyBlockOps(batch);
    ASSERT_TRUE(r.ok()) << "after " << ops_done << " ops: " << r.status().ToString();
    EXPECT_EQ(r->collisions, 0u);
    stored += r->blocks_stored;
    freed += r->blocks_freed;
    if (ops_done % 250 == 0 || ops_done == kOps) {
      SCOPED_TRACE("after " + std::to_string(ops_done) + " ops");
      ExpectCatalogInvariants(cat(), store(), /*check_hashes=*/ops_done == kOps);
      for (size_t fi = 0; fi < files.size(); ++fi) {
        std::vector<uint8_t> buf(kLbas * kBlockSize);
        CS_ASSERT_OK(cat().ReadBlocks(files[fi].id, 0, kLbas, buf.data()));
        uint64_t mapped = 0;
        for (uint64_t l = 0; l < kLbas; ++l) {
          mapped += model[fi][l] != 0;
          ASSERT_EQ(std::memcmp(buf.data() + l * kBlockSize, contents[model[fi][l]].data(), kBlockSize), 0)
              << "file " << fi << " lba " << l << " expected content " << model[fi][l];
        }
        EXPECT_EQ(cat().MappedBlocks(files[fi].id).value(), mapped) << "file " << fi;
      }
      // Ideal dedup: exactly one stored block per distinct (chain, content).
      std::set<std::pair<int64_t, int>> distinct;
      for (size_t fi = 0; fi < files.size(); ++fi)
        for (uint64_t l = 0; l < kLbas; ++l)
          if (model[fi][l] != 0) distinct.insert({files[fi].chain, model[fi][l]});
      EXPECT_EQ(cat().Usage().used_slots, distinct.size());
      EXPECT_EQ(stored - freed, distinct.size());
    }
  }
  // The catalog reloads to the same state.
  CatalogDump before = DumpCatalog(cat());
  StoreUsage ub = cat().Usage();
  Reopen(CatalogOptions{});
  EXPECT_EQ(DumpCatalog(cat()), before);
  StoreUsage ua = cat().Usage();
  EXPECT_EQ(ua.used_slots, ub.used_slots);
  EXPECT_EQ(ua.free_slots, ub.free_slots);
  EXPECT_EQ(ua.high_water, ub.high_water);
}

TEST_F(CatalogTest, DedupSurvivesReopen) {
  int64_t chain = NewChain("pool");
  int64_t f = NewFile(chain, "a");
  Block a = PatternBlock(1), b = PatternBlock(2);
  ASSERT_TRUE(Apply({WriteOp(f, chain, 0, a), WriteOp(f, chain, 1, b)}).ok());
  Block z = PatternBlock(9);
  ASSERT_TRUE(Apply({WriteOp(f, chain, 2, z)}).ok());  // slot 2
  ASSERT_TRUE(Apply({WriteOp(f, chain, 1, a)}).ok());  // frees b's slot 1
  CS_ASSERT_OK(cat().Sync());
  Reopen(CatalogOptions{});
  StoreUsage u = cat().Usage();
  EXPECT_EQ(u.used_slots, 2u);
  EXPECT_EQ(u.free_slots, 1u) << "the gap in the PAT is free";
  EXPECT_EQ(u.high_water, 3u);
  // The chain's seed is reloaded: the same content still dedups.
  auto r = Apply({WriteOp(f, chain, 5, a)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->blocks_deduped, 1u);
  EXPECT_EQ(r->blocks_stored, 0u);
  // The free list is rebuilt from the PAT: a new block takes slot 1.
  Block c = PatternBlock(3);
  ASSERT_TRUE(Apply({WriteOp(f, chain, 6, c)}).ok());
  EXPECT_EQ(PblockOf(f, 6), 1);
  EXPECT_TRUE(ReadBlock(f, 0) == a);
  EXPECT_TRUE(ReadBlock(f, 6) == c);
  ExpectCatalogInvariants(cat(), store());
}

// ------------------------------------------------------ verify-on-match

TEST_F(CatalogTest, DedupVerifyStoresCollidingBlocksSeparately) {
  ForcedCollisions forced;
  int64_t chain = NewChain("pool");
  int64_t f1 = NewFile(chain, "a");
  int64_t f2 = NewFile(chain, "b");
  Block a = PatternBlock(1), b = PatternBlock(2);
  auto r = Apply({WriteOp(f1, chain, 0, a)});
  ASSERT_TRUE(r.ok());
  r = Apply({WriteOp(f1, chain, 1, b)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->collisions, 1u);
  EXPECT_EQ(r->blocks_stored, 1u);
  EXPECT_EQ(r->blocks_deduped, 0u);
  EXPECT_EQ(cat().Usage().used_slots, 2u);
  EXPECT_TRUE(ReadBlock(f1, 0) == a);
  EXPECT_TRUE(ReadBlock(f1, 1) == b);

  // A real duplicate of b still dedups, after skipping the colliding a.
  r = Apply({WriteOp(f2, chain, 0, b)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks_deduped, 1u);
  EXPECT_EQ(r->collisions, 1u);
  EXPECT_EQ(PblockOf(f2, 0), PblockOf(f1, 1));
  // Inside one transaction: a third block colliding with two pending/stored ones.
  Block c = PatternBlock(3);
  r = Apply({WriteOp(f2, chain, 1, c), WriteOp(f2, chain, 2, c)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blocks_stored, 1u);
  EXPECT_EQ(r->blocks_deduped, 1u);
  EXPECT_EQ(cat().Usage().used_slots, 3u);
  EXPECT_TRUE(ReadBlock(f2, 0) == b);
  EXPECT_TRUE(ReadBlock(f2, 1) == c);
  EXPECT_TRUE(ReadBlock(f2, 2) == c);
  EXPECT_TRUE(ReadBlock(f1, 0) == a);
  ExpectCatalogInvariants(cat(), store(), /*check_hashes=*/false);
}

TEST_F(CatalogTest, DedupVerifyOffTrustsTheHash) {
  CatalogOptions opts;
  opts.dedup_verify = false;
  OpenBacking(opts);
  ForcedCollisions forced;
  int64_t chain = NewChain("pool");
  int64_t f = NewFile(chain, "a");
  Block a = PatternBlock(1), b = PatternBlock(2);
  ASSERT_TRUE(Apply({WriteOp(f, chain, 0, a)}).ok());
  auto r = Apply({WriteOp(f, chain, 1, b)});
  ASSERT_TRUE(r.ok());
  // Without verification a hash match is taken as a match: no bytes compared.
  EXPECT_EQ(r->blocks_deduped, 1u);
  EXPECT_EQ(r->collisions, 0u);
  EXPECT_EQ(cat().Usage().used_slots, 1u);
}

// ------------------------------------------------------------- capacity

class CatalogCapacityTest : public test::BackingFixture {
 protected:
  void SetUp() override {
    CatalogOptions opts;
    opts.capacity_slots = 4;
    OpenBacking(opts);
    chain_ = NewChain("pool");
    f_ = NewFile(chain_, "a");
    for (int i = 0; i < 8; ++i) blocks_.push_back(PatternBlock(i));
  }
  int64_t chain_ = 0, f_ = 0;
  std::vector<Block> blocks_;
};

TEST_F(CatalogCapacityTest, FifthDistinctBlockIsEnospcAndChangesNothing) {
  for (int i = 0; i < 4; ++i) {
    auto r = Apply({WriteOp(f_, chain_, i, blocks_[i])});
    ASSERT_TRUE(r.ok()) << "block " << i << ": " << r.status().ToString();
  }
  EXPECT_EQ(cat().Usage().used_slots, 4u);
  EXPECT_EQ(cat().Usage().capacity_slots, 4u);
  CatalogDump full = DumpCatalog(cat());

  auto r = Apply({WriteOp(f_, chain_, 4, blocks_[4])});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ENOSPC) << r.status().ToString();
  EXPECT_EQ(DumpCatalog(cat()), full);
  EXPECT_EQ(cat().Usage().used_slots, 4u);
  EXPECT_EQ(cat().Usage().high_water, 4u);

  // A batch that dedups, deletes and frees before hitting ENOSPC rolls back
  // entirely. (The block it frees counts: one new block would fit, two do not.)
  std::vector<FileMetaUpdate> meta = {FileMetaUpdate{f_, 123456, 9, 9}};
  std::vector<BlockOp> batch = {WriteOp(f_, chain_, 10, blocks_[0]),  // dedup
                                DeleteOp(f_, chain_, 1, 1),           // frees block 1
                                WriteOp(f_, chain_, 11, blocks_[5]),  // takes its place
                                WriteOp(f_, chain_, 13, blocks_[6])}; // no slot left
  auto r2 = cat().ApplyBlockOps(batch, meta);
  EXPECT_EQ(r2.status().code(), ENOSPC) << r2.status().ToString();
  EXPECT_EQ(DumpCatalog(cat()), full);
  EXPECT_EQ(cat().Usage().used_slots, 4u);
  EXPECT_EQ(cat().Usage().free_slots, 0u);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(ReadBlock(f_, i) == blocks_[i]) << i;

  // Writes that dedup still succeed at capacity.
  auto r3 = Apply({WriteOp(f_, chain_, 12, blocks_[2])});
  ASSERT_TRUE(r3.ok()) << r3.status().ToString();
  EXPECT_EQ(r3->blocks_deduped, 1u);

  // A delete gives space back; then a new block fits (in the freed slot).
  ASSERT_TRUE(Apply({DeleteOp(f_, chain_, 1, 1)}).ok());
  EXPECT_EQ(cat().Usage().used_slots, 3u);
  auto r4 = Apply({WriteOp(f_, chain_, 4, blocks_[4])});
  ASSERT_TRUE(r4.ok()) << r4.status().ToString();
  EXPECT_EQ(PblockOf(f_, 4), 1);
  EXPECT_EQ(cat().Usage().used_slots, 4u);
  EXPECT_TRUE(ReadBlock(f_, 4) == blocks_[4]);
  EXPECT_EQ(Apply({WriteOp(f_, chain_, 5, blocks_[5])}).status().code(), ENOSPC);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(CatalogCapacityTest, FailedBatchGivesFreeListSlotsBack) {
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Apply({WriteOp(f_, chain_, i, blocks_[i])}).ok());
  ASSERT_TRUE(Apply({DeleteOp(f_, chain_, 1, 2)}).ok());  // frees slots 1 and 2
  StoreUsage u = cat().Usage();
  ASSERT_EQ(u.used_slots, 2u);
  ASSERT_EQ(u.free_slots, 2u);
  CatalogDump before = DumpCatalog(cat());
  // Three new blocks for two free slots: takes both free slots, then fails.
  auto r = Apply({WriteOp(f_, chain_, 4, blocks_[4]), WriteOp(f_, chain_, 5, blocks_[5]),
                  WriteOp(f_, chain_, 6, blocks_[6])});
  EXPECT_EQ(r.status().code(), ENOSPC) << r.status().ToString();
  EXPECT_EQ(DumpCatalog(cat()), before);
  u = cat().Usage();
  EXPECT_EQ(u.used_slots, 2u);
  EXPECT_EQ(u.free_slots, 2u);
  EXPECT_EQ(u.high_water, 4u);
  // The slots taken by the failed batch are handed out again, lowest first.
  ASSERT_TRUE(Apply({WriteOp(f_, chain_, 7, blocks_[7])}).ok());
  EXPECT_EQ(PblockOf(f_, 7), 1);
  ASSERT_TRUE(Apply({WriteOp(f_, chain_, 6, blocks_[6])}).ok());
  EXPECT_EQ(PblockOf(f_, 6), 2);
  EXPECT_TRUE(ReadBlock(f_, 7) == blocks_[7]);
  EXPECT_TRUE(ReadBlock(f_, 6) == blocks_[6]);
  ExpectCatalogInvariants(cat(), store());
}

// The capacity is the number of slots the store may hold, whether they are
// filled one transaction at a time or by one batch (a 16 KiB write).
TEST_F(CatalogCapacityTest, FullCapacityUsableInOneBatch) {
  std::vector<BlockOp> batch;
  for (int i = 0; i < 4; ++i) batch.push_back(WriteOp(f_, chain_, i, blocks_[i]));
  auto r = Apply(batch);
  ASSERT_TRUE(r.ok()) << "4 new blocks into an empty store of capacity 4: " << r.status().ToString();
  EXPECT_EQ(r->blocks_stored, 4u);
  EXPECT_EQ(cat().Usage().used_slots, 4u);
  // And one more in a batch is refused.
  batch.clear();
  ASSERT_TRUE(Apply({DeleteOp(f_, chain_, 0, 2)}).ok());
  for (int i = 4; i < 7; ++i) batch.push_back(WriteOp(f_, chain_, i, blocks_[i]));
  EXPECT_EQ(Apply(batch).status().code(), ENOSPC);
  batch.pop_back();
  auto r2 = Apply(batch);
  EXPECT_TRUE(r2.ok()) << "2 new blocks into 2 free slots: " << r2.status().ToString();
}

// ------------------------------------------------------------------ opening

class CatalogOpenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.Sub("b");
    CS_ASSERT_OK(BackingDir::Format(root_));
    auto s = ContentStore::Open(root_ + "/store.dat");
    ASSERT_TRUE(s.ok());
    store_ = std::move(*s);
  }
  TempDir tmp_;
  std::string root_;
  std::unique_ptr<ContentStore> store_;
};

TEST_F(CatalogOpenTest, OpenFormattedCatalog) {
  auto c = Catalog::Open(root_ + "/catalog.db", store_.get(), CatalogOptions{});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
}

TEST_F(CatalogOpenTest, CreateOnExistingIsEexist) {
  CS_EXPECT_ERRNO(Catalog::Create(root_ + "/catalog.db"), EEXIST);
}

TEST_F(CatalogOpenTest, OpenMissingIsEnoent) {
  auto c = Catalog::Open(tmp_.Sub("missing.db"), store_.get(), CatalogOptions{});
  EXPECT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), ENOENT) << c.status().ToString();
}

TEST_F(CatalogOpenTest, OpenGarbageFileIsEuclean) {
  std::string path = tmp_.Sub("garbage.db");
  {
    FILE* fp = std::fopen(path.c_str(), "wb");
    ASSERT_NE(fp, nullptr);
    std::string junk(8192, '\0');
    for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<char>((i * 131 + 7) & 0xff);
    std::fwrite(junk.data(), 1, junk.size(), fp);
    std::fclose(fp);
  }
  auto c = Catalog::Open(path, store_.get(), CatalogOptions{});
  EXPECT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), EUCLEAN) << c.status().ToString();
}

TEST_F(CatalogOpenTest, OpenForeignSqliteDatabaseIsEuclean) {
  std::string path = tmp_.Sub("foreign.db");
  {
    auto db = sql::Db::Open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    ASSERT_TRUE(db.ok());
    CS_ASSERT_OK(db->Exec("CREATE TABLE something (x); INSERT INTO something VALUES (1);"));
  }
  auto c = Catalog::Open(path, store_.get(), CatalogOptions{});
  EXPECT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), EUCLEAN) << c.status().ToString();
  // A meta table with the wrong magic too.
  {
    auto db = sql::Db::Open(path, SQLITE_OPEN_READWRITE);
    ASSERT_TRUE(db.ok());
    CS_ASSERT_OK(db->Exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT); "
                          "INSERT INTO meta VALUES ('format', 'something-else');"));
  }
  c = Catalog::Open(path, store_.get(), CatalogOptions{});
  EXPECT_EQ(c.status().code(), EUCLEAN) << c.status().ToString();
}

TEST_F(CatalogOpenTest, NewerSchemaIsEproto) {
  std::string path = root_ + "/catalog.db";
  {
    auto db = sql::Db::Open(path, SQLITE_OPEN_READWRITE);
    ASSERT_TRUE(db.ok());
    CS_ASSERT_OK(db->Exec("PRAGMA user_version = " + std::to_string(kSchemaVersion + 1)));
  }
  auto c = Catalog::Open(path, store_.get(), CatalogOptions{});
  EXPECT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), EPROTO) << c.status().ToString();
  // Through the backing directory as well.
  auto b = BackingDir::Open(root_, LockMode::kExclusive, CatalogOptions{});
  EXPECT_EQ(b.status().code(), EPROTO) << b.status().ToString();
}

TEST_F(CatalogOpenTest, InvalidSchemaVersionIsEuclean) {
  std::string path = root_ + "/catalog.db";
  {
    auto db = sql::Db::Open(path, SQLITE_OPEN_READWRITE);
    ASSERT_TRUE(db.ok());
    CS_ASSERT_OK(db->Exec("PRAGMA user_version = 0"));
  }
  auto c = Catalog::Open(path, store_.get(), CatalogOptions{});
  EXPECT_EQ(c.status().code(), EUCLEAN) << c.status().ToString();
}

}  // namespace
}  // namespace chainswap
