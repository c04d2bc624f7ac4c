// Compressed blocks in the catalog (issue 14): packed blocks stored and read
// back, and the compaction an idle Sync runs when frees leave pack pages
// sparse (Catalog::CompactPackedLocked): the store shrinks back towards the
// sectors in use, every block reads back the same (also while a reader
// thread reads throughout), the catalog's invariants hold, and a reopen
// gives the same state.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "catalog/compression.h"
#include "catalog/stored_block.h"
#include "catalog/write_prep.h"
#include "test_util.h"

namespace chainswap {
namespace {

// A block whose first `random_bytes` are random and the rest text-like:
// its compressed size grows with random_bytes (1..8 sectors).
test::Block MixedBlock(uint64_t id, size_t random_bytes) {
  test::Block b;
  std::mt19937_64 rng(id * 7919 + 17);
  for (size_t i = 0; i < kBlockSize; ++i)
    b.data()[i] = i < random_bytes ? static_cast<uint8_t>(rng()) : static_cast<uint8_t>("swap page "[i % 10]);
  std::memcpy(b.data() + kBlockSize - 8, &id, sizeof id);  // distinct
  return b;
}

class CompactionTest : public test::BackingFixture {
 protected:
  void SetUp() override {
    CatalogOptions o;
    o.compress = true;
    OpenBacking(o);
  }
  // Idle Syncs until nothing is left to release, merge or compact.
  void IdleUntilQuiet() {
    for (int i = 0; i < 200 && cat().HasSlotsToRelease(); ++i) CS_ASSERT_OK(cat().Sync(/*idle=*/true));
    EXPECT_FALSE(cat().HasSlotsToRelease());
  }
  void ExpectContents(int64_t file, const std::map<uint64_t, test::Block>& model, uint64_t lbas) {
    std::vector<uint8_t> buf(lbas * kBlockSize);
    CS_ASSERT_OK(cat().ReadBlocks(file, 0, static_cast<uint32_t>(lbas), buf.data()));
    const test::Block zero;
    for (uint64_t l = 0; l < lbas; ++l) {
      auto it = model.find(l);
      const test::Block& want = it == model.end() ? zero : it->second;
      ASSERT_EQ(std::memcmp(buf.data() + l * kBlockSize, want.data(), kBlockSize), 0) << "lba " << l;
    }
  }
};

TEST_F(CompactionTest, PackedBlocksAreStoredInTheirSectorsAndReadBack) {
  const int64_t c = NewChain("c");
  const int64_t f = NewFile(c, "f");
  std::map<uint64_t, test::Block> model;
  std::vector<BlockOp> ops;
  for (uint64_t l = 0; l < 64; ++l) model[l] = MixedBlock(l, (l * 97) % kBlockSize);
  for (auto& [l, b] : model) ops.push_back(test::WriteOp(f, c, l, b));
  ASSERT_TRUE(Apply(ops).ok());
  uint64_t sectors = 0;
  for (auto& [l, b] : model) {
    std::vector<uint8_t> out(kMaxCompressedBytes);
    sectors += BlockCompressor::Compress(b.data(), out).sectors;
  }
  EXPECT_EQ(cat().Usage().packed_sectors, sectors);
  EXPECT_EQ(test::QueryInt(db(), "SELECT count(*) FROM pat WHERE pblock >= 0"), 0) << "every block is packed";
  ExpectContents(f, model, 64);
  CS_ASSERT_OK(cat().Sync());
  test::ExpectCatalogInvariants(cat(), store());
}

// Frees of random halves leave pack pages with holes; idle Syncs compact
// them: the pack pages shrink to within a page or so of the sectors in use
// (below the compaction threshold), nothing is lost, and a reader that
// reads throughout never sees other bytes than the model's.
TEST_F(CompactionTest, IdleSyncsCompactSparsePackPagesWithoutLosingABlock) {
  const int64_t c = NewChain("c");
  const int64_t f = NewFile(c, "f");
  const int64_t g = NewFile(c, "g");  // shares blocks with f: refcounts 2
  constexpr uint64_t kLbas = 3000;
  std::mt19937_64 rng(42);
  std::map<uint64_t, test::Block> mf, mg;
  for (uint64_t l = 0; l < kLbas; ++l) mf[l] = MixedBlock(l, rng() % kBlockSize);
  for (uint64_t l = 0; l < kLbas; l += 3) mg[l] = mf[l];
  for (uint64_t first = 0; first < kLbas; first += 64) {
    std::vector<BlockOp> ops;
    for (uint64_t l = first; l < std::min(kLbas, first + 64); ++l) {
      ops.push_back(test::WriteOp(f, c, l, mf[l]));
      if (mg.count(l)) ops.push_back(test::WriteOp(g, c, l, mg[l]));
    }
    ASSERT_TRUE(Apply(ops).ok());
  }
  IdleUntilQuiet();
  const StoreUsage full = cat().Usage();
  EXPECT_LT(full.free_sectors, 8u) << "a stream of new blocks packs with no gap";
  // Delete a random half of f's blocks (g keeps a third of them).
  for (uint64_t first = 0; first < kLbas; first += 64) {
    std::vector<BlockOp> ops;
    for (uint64_t l = first; l < std::min(kLbas, first + 64); ++l) {
      if (rng() % 2) continue;
      ops.push_back(test::DeleteOp(f, c, l, 1));
      mf.erase(l);
    }
    ASSERT_TRUE(Apply(ops).ok());
  }
  CS_ASSERT_OK(cat().Sync());
  const StoreUsage sparse = cat().Usage();
  ASSERT_GE(sparse.free_sectors, kCompactMinFreeSectors) << "the frees left holes to compact";
  const int64_t pat_before = test::QueryInt(db(), "SELECT count(*) FROM pat");

  // A reader throughout the compaction.
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0}, wrong{0};
  std::thread reader([&] {
    std::mt19937_64 r(7);
    std::vector<uint8_t> buf(kBlockSize);
    const test::Block zero;
    while (!stop.load()) {
      const uint64_t l = r() % kLbas;
      Status st = cat().ReadBlocks(f, l, 1, buf.data());
      auto it = mf.find(l);  // mf does not change while the reader runs
      const test::Block& want = it == mf.end() ? zero : it->second;
      if (!st.ok() || std::memcmp(buf.data(), want.data(), kBlockSize) != 0) wrong.fetch_add(1);
      reads.fetch_add(1);
    }
  });
  IdleUntilQuiet();
  stop.store(true);
  reader.join();
  EXPECT_EQ(wrong.load(), 0u) << "of " << reads.load() << " reads during compaction";
  EXPECT_GT(reads.load(), 0u);

  const StoreUsage after = cat().Usage();
  EXPECT_EQ(test::QueryInt(db(), "SELECT count(*) FROM pat"), pat_before) << "compaction moves, never drops";
  EXPECT_EQ(after.packed_sectors, sparse.packed_sectors) << "moved blocks keep their sizes";
  // Compaction stops under its threshold, or once a pass gains less than a
  // page: either way within 3 % of the sectors in use.
  EXPECT_LE(after.free_sectors * 100, after.packed_sectors * 3)
      << after.free_sectors << " free sectors of " << after.pack_pages << " pack pages";
  EXPECT_LE(after.free_sectors * 4, sparse.free_sectors) << "from " << sparse.free_sectors << " free sectors";
  EXPECT_LT(after.pack_pages, sparse.pack_pages) << "emptied pages went back to the slot allocator";
  // The store gives the emptied pages back to the filesystem.
  auto alloc = store().AllocatedBytes();
  ASSERT_TRUE(alloc.ok());
  EXPECT_LE(*alloc, (after.pack_pages + 1) * kBlockSize);
  ExpectContents(f, mf, kLbas);
  ExpectContents(g, mg, kLbas);
  test::ExpectCatalogInvariants(cat(), store());

  // The same after a reopen.
  Reopen([] {
    CatalogOptions o;
    o.compress = true;
    return o;
  }());
  const StoreUsage re = cat().Usage();
  EXPECT_EQ(re.packed_sectors, after.packed_sectors);
  EXPECT_EQ(re.pack_pages, after.pack_pages);
  ExpectContents(f, mf, kLbas);
  ExpectContents(g, mg, kLbas);
  test::ExpectCatalogInvariants(cat(), store());
}

// The write destager's compression ahead of the transaction (write_prep.h):
// PredictNew names exactly the writes whose keys neither the catalog nor an
// earlier op of the batch has; blocks compressed by the worker or claimed
// by the caller store the same sectors and read back the same as blocks
// compressed inline.
TEST_F(CompactionTest, BlocksCompressedAheadStoreWhatInlineCompressionStores) {
  const int64_t c = NewChain("c");
  const int64_t f = NewFile(c, "f");
  auto hasher = cat().HasherFor(c);
  ASSERT_TRUE(hasher.ok());
  std::map<uint64_t, test::Block> model;
  std::vector<BlockOp> first;
  for (uint64_t l = 0; l < 200; ++l) {
    model[l] = MixedBlock(l, (l * 131) % kBlockSize);
    first.push_back(test::WriteOp(f, c, l, model[l]));
  }
  ASSERT_TRUE(Apply(first).ok());
  // A batch: 100 duplicates of stored blocks, 150 new blocks, then 50
  // repeats of new blocks of the batch.
  std::vector<BlockOp> ops;
  std::vector<size_t> want;
  for (uint64_t l = 200; l < 300; ++l) {
    model[l] = model[l - 200];
    ops.push_back(test::WriteOp(f, c, l, model[l]));
  }
  for (uint64_t l = 300; l < 450; ++l) {
    model[l] = MixedBlock(l, (l * 131) % kBlockSize);
    want.push_back(ops.size());
    ops.push_back(test::WriteOp(f, c, l, model[l]));
  }
  for (uint64_t l = 450; l < 500; ++l) {
    model[l] = model[l - 150];
    ops.push_back(test::WriteOp(f, c, l, model[l]));
  }
  for (auto& op : ops) op.hash = (*hasher)->Hash(op.data);
  WritePrep prep(store());
  CS_ASSERT_OK(cat().PredictWrites(ops, prep));
  std::vector<size_t> got_fresh, got_dups;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (!ops[i].prepared) continue;
    if (ops[i].prepared->verifies()) got_dups.push_back(i);
    else got_fresh.push_back(i);
  }
  const std::vector<size_t>* fresh = &got_fresh;
  EXPECT_EQ(*fresh, want);
  // The first 100 repeat stored compressed blocks: duplicates to compare.
  ASSERT_EQ(got_dups.size(), 100u);
  for (size_t k = 0; k < 100; ++k) {
    EXPECT_EQ(got_dups[k], k);
    EXPECT_EQ(ops[k].prepared->candidate(),
              test::QueryInt(db(), "SELECT pblock FROM lat WHERE file_id = " + std::to_string(f) + " AND lba = " +
                                       std::to_string(k)));
  }
  // Claim every other block from this thread while the worker runs: each is
  // compressed once, by one of them, to what Compress gives.
  for (size_t k = 0; k < fresh->size(); k += 2) {
    const BlockOp& op = ops[(*fresh)[k]];
    std::vector<uint8_t> out(kMaxCompressedBytes);
    const CompressedBlock cb = BlockCompressor::Compress(op.data, out);
    const CompressedBlock& got = op.prepared->Get();
    ASSERT_EQ(got.sectors, cb.sectors);
    ASSERT_EQ(got.bytes, cb.bytes);
    ASSERT_EQ(std::memcmp(op.prepared->form().data(), out.data(), cb.stored_bytes()), 0);
  }
  ASSERT_TRUE(Apply(ops).ok());
  prep.Finish();
  EXPECT_LE(prep.worker_items(), fresh->size() + 100);

  uint64_t sectors = 0;
  for (auto& [l, b] : model) {
    if (l >= 200) continue;  // every later block repeats one of these or is among 300..449
    std::vector<uint8_t> out(kMaxCompressedBytes);
    sectors += BlockCompressor::Compress(b.data(), out).sectors;
  }
  for (uint64_t l = 300; l < 450; ++l) {
    std::vector<uint8_t> out(kMaxCompressedBytes);
    sectors += BlockCompressor::Compress(model[l].data(), out).sectors;
  }
  EXPECT_EQ(cat().Usage().packed_sectors, sectors);
  ExpectContents(f, model, 500);
  CS_ASSERT_OK(cat().Sync());
  test::ExpectCatalogInvariants(cat(), store());

  // A second batch of the same blocks: all known, none predicted new.
  for (auto& op : ops) op.prepared = nullptr;
  CS_ASSERT_OK(cat().PredictWrites(ops, prep));
  size_t again_fresh = 0, again_dups = 0;
  for (auto& op : ops) {
    if (op.prepared) ++(op.prepared->verifies() ? again_dups : again_fresh);
  }
  prep.Finish();
  EXPECT_EQ(again_fresh, 0u);
  EXPECT_EQ(again_dups, 250u);
}

// A duplicate compared ahead (WritePrep) is taken without reading the
// candidate again only while the catalog's store epoch is the prediction's:
// here the candidate's sectors are damaged after the worker compared them.
// Under the same epoch the transaction trusts the comparison (it never reads
// the damage); after a Sync that made frees reusable, it reads the candidate
// itself and finds the damage (EIO), as it would without WritePrep.
TEST_F(CompactionTest, ComparisonsAheadCountOnlyUnderThePredictionsStoreEpoch) {
  const int64_t c = NewChain("c");
  const int64_t f = NewFile(c, "f");
  auto hasher = cat().HasherFor(c);
  ASSERT_TRUE(hasher.ok());
  const test::Block a = MixedBlock(1, 300), x = MixedBlock(2, 300), y = MixedBlock(3, 300);
  ASSERT_TRUE(Apply({test::WriteOp(f, c, 0, a), test::WriteOp(f, c, 1, x), test::WriteOp(f, c, 2, y)}).ok());
  CS_ASSERT_OK(cat().Sync());
  const int64_t cand = test::QueryInt(db(), "SELECT pblock FROM lat WHERE file_id = " + std::to_string(f) + " AND lba = 0");
  ASSERT_TRUE(IsPacked(cand));
  const std::vector<uint8_t> garbage(size_t{PackedExtent(cand).count} * kSectorSize, 0xA5);

  for (bool sync_between : {false, true}) {
    SCOPED_TRACE(sync_between ? "a Sync between" : "same epoch");
    const uint64_t lba = sync_between ? 20 : 10;
    std::vector<BlockOp> ops{test::WriteOp(f, c, lba, a)};
    ops[0].hash = (*hasher)->Hash(ops[0].data);
    WritePrep prep(store());
    CS_ASSERT_OK(cat().PredictWrites(ops, prep));
    ASSERT_NE(ops[0].prepared, nullptr);
    ASSERT_TRUE(ops[0].prepared->verifies());
    EXPECT_EQ(ops[0].prepared->candidate(), cand);
    for (int i = 0; i < 10000 && prep.worker_items() == 0; ++i) std::this_thread::sleep_for(std::chrono::microseconds(100));
    ASSERT_EQ(prep.worker_items(), 1u) << "the worker compared the block";
    // Damage the candidate (saving its sectors to restore them).
    std::vector<uint8_t> saved(garbage.size());
    CS_ASSERT_OK(store().ReadSectors(PackedExtent(cand).first, PackedExtent(cand).count, saved.data()));
    CS_ASSERT_OK(store().WriteSectors(PackedExtent(cand).first, PackedExtent(cand).count, garbage.data()));
    if (sync_between) {
      ASSERT_TRUE(Apply({test::DeleteOp(f, c, 2, 1)}).ok());  // a pending free
      CS_ASSERT_OK(cat().Sync());                               // made reusable: a new epoch
    }
    auto res = Apply(ops);
    prep.Finish();
    CS_ASSERT_OK(store().WriteSectors(PackedExtent(cand).first, PackedExtent(cand).count, saved.data()));
    if (sync_between) {
      ASSERT_FALSE(res.ok()) << "the candidate was read again and found damaged";
      EXPECT_EQ(res.status().code(), EIO);
    } else {
      ASSERT_TRUE(res.ok()) << res.status().ToString();
      EXPECT_EQ(res->blocks_deduped, 1u);
    }
  }
  std::map<uint64_t, test::Block> model{{0, a}, {1, x}, {10, a}};
  ExpectContents(f, model, 21);
  test::ExpectCatalogInvariants(cat(), store());
}

class PredictOffTest : public test::BackingFixture {};  // compression off (the format default)

TEST_F(PredictOffTest, NothingIsPredictedWithCompressionOff) {
  const int64_t c = NewChain("c");
  const int64_t f = NewFile(c, "f");
  auto hasher = cat().HasherFor(c);
  ASSERT_TRUE(hasher.ok());
  const test::Block blk = MixedBlock(1, 100);
  std::vector<BlockOp> ops{test::WriteOp(f, c, 0, blk)};
  ops[0].hash = (*hasher)->Hash(ops[0].data);
  WritePrep prep(store());
  CS_ASSERT_OK(cat().PredictWrites(ops, prep));
  EXPECT_EQ(ops[0].prepared, nullptr);
  prep.Finish();
}

}  // namespace
}  // namespace chainswap
