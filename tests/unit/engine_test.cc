// The block engine's byte-level API: Write/Read/Zero/Truncate/Reclaim/Sync
// (destage/engine.h). The engine journals every op and destages in the
// background; reads are checked both while ops are staged and after Drain(),
// and catalog state is only inspected after Drain() (destagers idle).
#include "destage/engine.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "test_util.h"

namespace chainswap {
namespace {

using test::ExpectCatalogInvariants;
using test::PatternBlock;

// One swap file driven through the engine, with the size kept the way the
// FUSE edge keeps it, and an in-memory model of its bytes.
struct ModelFile {
  FileRef ref;
  uint64_t size = 0;
  std::vector<uint8_t> bytes;  // model contents, bytes.size() == size
};

// Fails the test (fatally) unless the engine drains; never hangs the binary.
#define SETTLE() ASSERT_NO_FATAL_FAILURE(Settle())

class EngineTest : public test::BackingFixture {
 protected:
  void SetUp() override {
    test::BackingFixture::SetUp();
    chain_ = NewChain("pool");
    MakeEngine();
  }
  void TearDown() override {
    engine_.reset();
    test::BackingFixture::TearDown();
  }

  // (Re)creates the engine over the current backing directory, replays its
  // journal and starts the destagers.
  void MakeEngine(EngineOptions opts = EngineOptions{}) {
    engine_.reset();
    opts.journal_dir = backing_->paths().journal;
    engine_ = std::make_unique<Engine>(cat(), opts);
    replayed_.clear();
    Status st = engine_->Open(&replayed_);
    ASSERT_TRUE(st.ok()) << st.ToString();
    engine_->Start();
  }

  // Sync, then wait until everything acknowledged is destaged and retired.
  // A destage that never finishes is a failure, reported after a generous
  // watchdog (a liveness guard, not a performance assertion).
  void Settle() {
    Status st = engine_->Sync();
    ASSERT_TRUE(st.ok()) << st.ToString();
    auto fut = std::async(std::launch::async, [this] { return engine_->Drain(); });
    if (fut.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
      (void)engine_->Stop();  // makes Drain return
      (void)fut.get();
      FAIL() << "Engine::Drain() did not return: acknowledged ops are stuck in the journal";
    }
    st = fut.get();
    ASSERT_TRUE(st.ok()) << "Drain: " << st.ToString();
  }

  ModelFile NewModelFile(const std::string& name, int64_t chain = 0) {
    ModelFile m;
    m.ref.dedup_id = chain ? chain : chain_;
    m.ref.file_id = NewFile(m.ref.dedup_id, name);
    return m;
  }

  FileMetaUpdate Meta(const ModelFile& m, uint64_t new_size) {
    ++clock_;
    return FileMetaUpdate{m.ref.file_id, new_size, clock_, clock_};
  }

  Status TryWrite(ModelFile& m, uint64_t off, const std::vector<uint8_t>& data) {
    uint64_t new_size = std::max(m.size, off + data.size());
    Status st = engine_->Write(m.ref, off, data, m.size, Meta(m, new_size));
    if (st.ok()) {
      m.size = new_size;
      m.bytes.resize(new_size, 0);
      std::copy(data.begin(), data.end(), m.bytes.begin() + static_cast<ptrdiff_t>(off));
    }
    return st;
  }
  // Writes through the engine and the model.
  void Write(ModelFile& m, uint64_t off, const std::vector<uint8_t>& data) {
    Status st = TryWrite(m, off, data);
    ASSERT_TRUE(st.ok()) << "write " << off << "+" << data.size() << ": " << st.ToString();
  }

  Status TryZero(ModelFile& m, uint64_t off, uint64_t len) {
    Status st = engine_->Zero(m.ref, off, len, m.size, Meta(m, m.size));
    if (st.ok())
      for (uint64_t i = off; i < std::min(m.size, off + len); ++i) m.bytes[i] = 0;
    return st;
  }
  void Zero(ModelFile& m, uint64_t off, uint64_t len) {
    Status st = TryZero(m, off, len);
    ASSERT_TRUE(st.ok()) << "zero " << off << "+" << len << ": " << st.ToString();
  }

  Status TryTruncate(ModelFile& m, uint64_t new_size) {
    Status st = engine_->Truncate(m.ref, m.size, new_size, Meta(m, new_size));
    if (st.ok()) {
      m.size = new_size;
      m.bytes.resize(new_size, 0);
    }
    return st;
  }
  void Truncate(ModelFile& m, uint64_t new_size) {
    uint64_t old = m.size;
    Status st = TryTruncate(m, new_size);
    ASSERT_TRUE(st.ok()) << "truncate " << old << " -> " << new_size << ": " << st.ToString();
  }

  // Reads [off, off+len) through the engine.
  std::vector<uint8_t> Read(const ModelFile& m, uint64_t off, size_t len) {
    std::vector<uint8_t> out(len, 0xEE);
    auto r = engine_->Read(m.ref, off, len, m.size, out.data());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return {};
    out.resize(*r);
    return out;
  }

  // The whole file read back equals the model.
  void ExpectMatchesModel(const ModelFile& m) {
    std::vector<uint8_t> got = Read(m, 0, m.size + kBlockSize);
    ASSERT_EQ(got.size(), m.size);
    for (size_t i = 0; i < m.size; ++i) {
      ASSERT_EQ(got[i], m.bytes[i]) << "file " << m.ref.file_id << " byte " << i;
    }
  }

  static std::vector<uint8_t> Bytes(size_t len, uint8_t seed) {
    std::vector<uint8_t> v(len);
    for (size_t i = 0; i < len; ++i) v[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 9));
    for (auto& x : v)
      if (x == 0) x = 1;  // never zero, so zeroed bytes are recognizable
    return v;
  }

  // REQUIRES: settled (destagers idle).
  uint64_t Mapped(const ModelFile& m) {
    auto r = cat().MappedBlocks(m.ref.file_id);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : ~0ull;
  }
  uint64_t CatalogSize(const ModelFile& m) {
    auto files = cat().ListFiles();
    EXPECT_TRUE(files.ok());
    if (!files.ok()) return ~0ull;
    for (const FileInfo& f : *files)
      if (f.file_id == m.ref.file_id) return f.size;
    ADD_FAILURE() << "file " << m.ref.file_id << " not in the catalog";
    return ~0ull;
  }

  int64_t chain_ = 0;
  int64_t clock_ = 1000;
  std::unique_ptr<Engine> engine_;
  std::map<int64_t, ReplayedMeta> replayed_;
};

TEST_F(EngineTest, AlignedWriteReadBack) {
  ModelFile f = NewModelFile("a");
  Write(f, 0, Bytes(3 * kBlockSize, 1));
  ExpectMatchesModel(f);
  SETTLE();
  ExpectMatchesModel(f);
  EXPECT_EQ(Mapped(f), 3u);
  EXPECT_EQ(CatalogSize(f), 3u * kBlockSize);
  EXPECT_EQ(cat().Usage().used_slots, 3u);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(EngineTest, UnalignedWritesKeepSurroundingBytes) {
  ModelFile f = NewModelFile("a");
  Write(f, 0, Bytes(4 * kBlockSize, 3));
  // Inside one block.
  Write(f, 100, Bytes(200, 50));
  // Across a block boundary.
  Write(f, kBlockSize - 10, Bytes(30, 60));
  // Spanning partial + whole + partial.
  Write(f, 2 * kBlockSize - 1, Bytes(kBlockSize + 2, 70));
  // A single byte at the very end of the file.
  Write(f, 4 * kBlockSize - 1, {0x42});
  ExpectMatchesModel(f);
  // Unaligned reads too.
  for (uint64_t off : {uint64_t{1}, uint64_t{4095}, uint64_t{4097}, uint64_t{10000}}) {
    std::vector<uint8_t> got = Read(f, off, 5000);
    size_t want = static_cast<size_t>(std::min<uint64_t>(5000, f.size - off));
    ASSERT_EQ(got.size(), want);
    EXPECT_TRUE(std::equal(got.begin(), got.end(), f.bytes.begin() + static_cast<ptrdiff_t>(off)))
        << "offset " << off;
  }
  SETTLE();
  ExpectMatchesModel(f);
  // The same edits once the first write is destaged: RMW reads the catalog.
  Write(f, 3 * kBlockSize + 5, Bytes(10, 90));
  Write(f, 7, Bytes(3 * kBlockSize, 91));
  ExpectMatchesModel(f);
  SETTLE();
  ExpectMatchesModel(f);
  EXPECT_EQ(Mapped(f), 4u);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(EngineTest, UnalignedWritePastEofReadsZerosBefore) {
  ModelFile f = NewModelFile("a");
  Write(f, 5000, Bytes(10, 9));  // starts inside block 1, file was empty
  EXPECT_EQ(f.size, 5010u);
  ExpectMatchesModel(f);
  std::vector<uint8_t> head = Read(f, 0, 5000);
  EXPECT_TRUE(std::all_of(head.begin(), head.end(), [](uint8_t x) { return x == 0; }));
  SETTLE();
  EXPECT_EQ(Mapped(f), 1u);  // block 0 is a hole
  // Grow with a write further out: the gap is a hole too.
  Write(f, 20 * kBlockSize + 3, Bytes(5, 1));
  ExpectMatchesModel(f);
  SETTLE();
  ExpectMatchesModel(f);
  EXPECT_EQ(Mapped(f), 2u);
  EXPECT_EQ(CatalogSize(f), 20u * kBlockSize + 8);
}

TEST_F(EngineTest, ReadClampsAtSize) {
  ModelFile f = NewModelFile("a");
  Write(f, 0, Bytes(5000, 4));
  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE(pass == 0 ? "staged" : "destaged");
    std::vector<uint8_t> got = Read(f, 4096, 8192);
    EXPECT_EQ(got.size(), 904u);
    EXPECT_TRUE(std::equal(got.begin(), got.end(), f.bytes.begin() + 4096));
    EXPECT_EQ(Read(f, 5000, 10).size(), 0u);
    EXPECT_EQ(Read(f, 6000, 10).size(), 0u);
    EXPECT_EQ(Read(f, 4999, 10).size(), 1u);
    EXPECT_EQ(Read(f, 0, 0).size(), 0u);
    // The output buffer past the returned length is not written.
    std::vector<uint8_t> out(8192, 0xEE);
    auto r = engine_->Read(f.ref, 4096, out.size(), f.size, out.data());
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, 904u);
    EXPECT_TRUE(std::all_of(out.begin() + 904, out.end(), [](uint8_t x) { return x == 0xEE; }));
    SETTLE();
  }
}

TEST_F(EngineTest, SameDataInTwoFilesIsStoredOnce) {
  ModelFile a = NewModelFile("a");
  ModelFile b = NewModelFile("b");
  std::vector<uint8_t> data = Bytes(8 * kBlockSize, 5);
  Write(a, 0, data);
  Write(b, 4 * kBlockSize, data);
  SETTLE();
  EXPECT_EQ(cat().Usage().used_slots, 8u);
  ExpectMatchesModel(a);
  ExpectMatchesModel(b);
  // Zero data writes make holes, not blocks.
  ModelFile c = NewModelFile("c");
  Write(c, 0, std::vector<uint8_t>(4 * kBlockSize, 0));
  SETTLE();
  EXPECT_EQ(Mapped(c), 0u);
  EXPECT_EQ(CatalogSize(c), 4u * kBlockSize);
  EXPECT_EQ(cat().Usage().used_slots, 8u);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(EngineTest, ZeroPartialBlockKeepsTheRest) {
  ModelFile f = NewModelFile("a");
  Write(f, 0, Bytes(3 * kBlockSize, 8));
  Zero(f, 100, 200);
  ExpectMatchesModel(f);
  SETTLE();
  ExpectMatchesModel(f);
  EXPECT_EQ(Mapped(f), 3u);
  // Zeroing across a boundary: two partial blocks rewritten.
  Zero(f, kBlockSize - 50, 100);
  ExpectMatchesModel(f);
  SETTLE();
  ExpectMatchesModel(f);
  EXPECT_EQ(Mapped(f), 3u);
  EXPECT_EQ(CatalogSize(f), 3u * kBlockSize);
}

TEST_F(EngineTest, ZeroWholeBlocksDeletesThem) {
  ModelFile f = NewModelFile("a");
  Write(f, 0, Bytes(6 * kBlockSize, 9));
  SETTLE();
  EXPECT_EQ(cat().Usage().used_slots, 6u);
  Zero(f, kBlockSize, 2 * kBlockSize);  // blocks 1 and 2 exactly
  ExpectMatchesModel(f);
  SETTLE();
  ExpectMatchesModel(f);
  EXPECT_EQ(Mapped(f), 4u);
  EXPECT_EQ(cat().Usage().used_slots, 4u);
  // Partial + whole + partial: block 3 goes, blocks 2 (a hole) and 4 are rewritten.
  Zero(f, 3 * kBlockSize - 10, kBlockSize + 20);
  ExpectMatchesModel(f);
  SETTLE();
  ExpectMatchesModel(f);
  EXPECT_EQ(Mapped(f), 3u);
  // Zeroing the remaining bytes of a partly zeroed block makes it a hole.
  Zero(f, 0, 100);
  Zero(f, 100, kBlockSize - 100);
  ExpectMatchesModel(f);
  SETTLE();
  ExpectMatchesModel(f);
  EXPECT_EQ(Mapped(f), 2u);
  EXPECT_EQ(CatalogSize(f), 6u * kBlockSize);
  ExpectCatalogInvariants(cat(), store());
}

// Runs of zero blocks inside a write are journaled as deletes: the journal
// holds only the non-zero blocks' bytes, reads and the destaged catalog are
// what the write said, and a short zero run stays inline.
TEST_F(EngineTest, ZeroRunsInAWriteAreNotJournaledAsBytes) {
  EngineOptions held;
  held.start_destagers = false;  // the journal keeps everything until reopened
  MakeEngine(held);
  ModelFile f = NewModelFile("a");
  std::vector<uint8_t> data = Bytes(20 * kBlockSize, 3);
  std::fill(data.begin() + 4 * kBlockSize, data.begin() + 12 * kBlockSize, 0);   // 8 zero blocks
  std::fill(data.begin() + 14 * kBlockSize, data.begin() + 16 * kBlockSize, 0);  // 2: below the run length
  Write(f, 0, data);
  ExpectMatchesModel(f);
  // Blocks 0-3 and 12-19 (two short zero blocks inline) as writes, 4-11 as a delete.
  const uint64_t written = engine_->Stats().journal_bytes;
  EXPECT_EQ(written, 3 * kRecordHeaderSize + 12 * kBlockSize);
  // A write of nothing but zeros past the end costs one header.
  Write(f, 20 * kBlockSize, std::vector<uint8_t>(6 * kBlockSize, 0));
  EXPECT_EQ(engine_->Stats().journal_bytes, written + kRecordHeaderSize);
  ExpectMatchesModel(f);
  MakeEngine();  // replays the journal, then destages it
  ExpectMatchesModel(f);
  SETTLE();
  ExpectMatchesModel(f);
  EXPECT_EQ(Mapped(f), 10u);
  EXPECT_EQ(CatalogSize(f), 26u * kBlockSize);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(EngineTest, ZeroPastSizeTouchesNothing) {
  ModelFile f = NewModelFile("a");
  Write(f, 0, Bytes(kBlockSize + 100, 10));
  Zero(f, kBlockSize + 100, 10 * kBlockSize);  // entirely past EOF
  ExpectMatchesModel(f);
  Zero(f, kBlockSize + 50, 10 * kBlockSize);   // straddles EOF: only up to size
  ExpectMatchesModel(f);
  EXPECT_EQ(f.size, kBlockSize + 100u);
  SETTLE();
  ExpectMatchesModel(f);
  EXPECT_EQ(CatalogSize(f), kBlockSize + 100u);
}

TEST_F(EngineTest, TruncateShrinkThenGrowReadsZerosInTheCutTail) {
  ModelFile f = NewModelFile("a");
  Write(f, 0, Bytes(3 * kBlockSize, 11));
  SETTLE();
  EXPECT_EQ(Mapped(f), 3u);
  Truncate(f, 5000);
  ExpectMatchesModel(f);
  SETTLE();
  ExpectMatchesModel(f);
  EXPECT_EQ(Mapped(f), 2u);
  EXPECT_EQ(cat().Usage().used_slots, 2u);
  EXPECT_EQ(CatalogSize(f), 5000u);
  Truncate(f, 3 * kBlockSize);
  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE(pass == 0 ? "staged" : "destaged");
    ExpectMatchesModel(f);
    std::vector<uint8_t> tail = Read(f, 5000, 3 * kBlockSize - 5000);
    ASSERT_EQ(tail.size(), 3 * kBlockSize - 5000u);
    EXPECT_TRUE(std::all_of(tail.begin(), tail.end(), [](uint8_t x) { return x == 0; }));
    std::vector<uint8_t> head = Read(f, 0, 5000);
    std::vector<uint8_t> want = Bytes(5000, 11);
    EXPECT_TRUE(std::equal(head.begin(), head.end(), want.begin()));
    SETTLE();
  }
  EXPECT_EQ(CatalogSize(f), 3u * kBlockSize);

  // Shrink and grow again before anything is destaged.
  Truncate(f, kBlockSize);
  Truncate(f, 2 * kBlockSize);
  Truncate(f, 100);
  Truncate(f, 2 * kBlockSize);
  ExpectMatchesModel(f);
  SETTLE();
  ExpectMatchesModel(f);
  EXPECT_EQ(Mapped(f), 1u);
  Truncate(f, 0);
  SETTLE();
  EXPECT_EQ(Mapped(f), 0u);
  EXPECT_EQ(cat().Usage().used_slots, 0u);
  Truncate(f, 10 * kBlockSize);
  ExpectMatchesModel(f);
  SETTLE();
  ExpectMatchesModel(f);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(EngineTest, SmallLogicalQueueStillDestagesEverything) {
  EngineOptions opts;
  opts.queue.n = 2;
  opts.queue.d_min = 1;
  MakeEngine(opts);
  ModelFile f = NewModelFile("a");
  Write(f, 0, Bytes(200 * kBlockSize, 12));
  Zero(f, 2 * kBlockSize, 5 * kBlockSize);   // leaves holes among the blocks
  Write(f, 300 * kBlockSize, Bytes(kBlockSize, 13));
  ExpectMatchesModel(f);
  SETTLE();
  ExpectMatchesModel(f);
  EXPECT_EQ(Mapped(f), 196u);
  Truncate(f, kBlockSize + 1);
  ExpectMatchesModel(f);
  SETTLE();
  ExpectMatchesModel(f);
  EXPECT_EQ(Mapped(f), 2u);
  EXPECT_EQ(cat().Usage().used_slots, 2u);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(EngineTest, ReclaimDropsEveryBlockAndTheFileRow) {
  ModelFile a = NewModelFile("a");
  ModelFile b = NewModelFile("b");
  Write(a, 0, Bytes(10 * kBlockSize, 14));
  Write(a, 100 * kBlockSize + 7, Bytes(3 * kBlockSize, 15));
  Write(b, 0, Bytes(5 * kBlockSize, 14));  // shares 5 blocks with a
  SETTLE();
  EXPECT_EQ(cat().Usage().used_slots, 14u);

  // Unlink a (as the FUSE edge does), then reclaim it.
  auto files = cat().ListFiles();
  ASSERT_TRUE(files.ok());
  FileInfo fa = (*files)[0];
  ASSERT_EQ(fa.file_id, a.ref.file_id);
  fa.unlinked = true;
  CS_ASSERT_OK(cat().UpdateFile(fa));
  CS_ASSERT_OK(engine_->Reclaim(a.ref, a.size));
  SETTLE();
  files = cat().ListFiles();
  ASSERT_TRUE(files.ok());
  ASSERT_EQ(files->size(), 1u);
  EXPECT_EQ((*files)[0].file_id, b.ref.file_id);
  EXPECT_EQ(cat().Usage().used_slots, 5u);  // b's blocks are still there
  ExpectMatchesModel(b);

  // Reclaim of a file whose writes are still staged.
  Write(b, 50 * kBlockSize, Bytes(4 * kBlockSize, 16));
  CS_ASSERT_OK(engine_->Reclaim(b.ref, b.size));
  SETTLE();
  files = cat().ListFiles();
  ASSERT_TRUE(files.ok());
  EXPECT_TRUE(files->empty());
  EXPECT_EQ(cat().Usage().used_slots, 0u);
  {
    Catalog::ToolsHold hold(cat());  // the destagers are running
    EXPECT_EQ(test::QueryInt(db(), "SELECT count(*) FROM lat"), 0);
    EXPECT_EQ(test::QueryInt(db(), "SELECT count(*) FROM pat"), 0);
  }
  ExpectCatalogInvariants(cat(), store());
  // The chain is empty now and can be removed.
  CS_EXPECT_OK(cat().RemoveChain(chain_).status());
}

// An unlink whose reclaim record cannot be journaled (a full backing
// filesystem; here the journal directory cannot take a new segment) is
// reclaimed from memory once the destagers have passed everything appended
// before it: the file row goes, its blocks are freed, the rest is intact.
TEST_F(EngineTest, ReclaimWithoutAJournalRecordRunsFromMemory) {
  ModelFile a = NewModelFile("a");
  ModelFile b = NewModelFile("b");
  Write(a, 0, Bytes(6 * kBlockSize, 21));
  Write(b, 0, Bytes(2 * kBlockSize, 22));
  SETTLE();
  EXPECT_EQ(cat().Usage().used_slots, 8u);

  const std::string journal = backing_->paths().journal;
  const std::string aside = journal + ".aside";
  ASSERT_EQ(::rename(journal.c_str(), aside.c_str()), 0);
  { std::ofstream(journal) << "not a directory"; }
  auto files = cat().ListFiles();
  ASSERT_TRUE(files.ok());
  FileInfo fa = (*files)[0];
  ASSERT_EQ(fa.file_id, a.ref.file_id);
  fa.unlinked = true;
  CS_ASSERT_OK(cat().UpdateFile(fa));
  CS_EXPECT_OK(engine_->Reclaim(a.ref, a.size));  // the unlink stands even without its record

  auto fut = std::async(std::launch::async, [this] { return engine_->Drain(); });
  const bool drained = fut.wait_for(std::chrono::seconds(60)) == std::future_status::ready;
  if (!drained) (void)engine_->Stop();
  Status st = fut.get();
  ::unlink(journal.c_str());
  ASSERT_EQ(::rename(aside.c_str(), journal.c_str()), 0);
  ASSERT_TRUE(drained) << "the deferred reclaim never ran";
  CS_ASSERT_OK(st);
  files = cat().ListFiles();
  ASSERT_TRUE(files.ok());
  ASSERT_EQ(files->size(), 1u);
  EXPECT_EQ((*files)[0].file_id, b.ref.file_id);
  EXPECT_EQ(cat().Usage().used_slots, 2u);
  ExpectMatchesModel(b);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(EngineTest, WritesInDifferentChainsDoNotShare) {
  int64_t other = NewChain("other");
  ModelFile a = NewModelFile("a");
  ModelFile b = NewModelFile("b", other);
  std::vector<uint8_t> data = Bytes(4 * kBlockSize, 16);
  Write(a, 0, data);
  Write(b, 0, data);
  SETTLE();
  EXPECT_EQ(cat().Usage().used_slots, 8u);
  ExpectMatchesModel(a);
  ExpectMatchesModel(b);
}

// Reads see acknowledged data before any destage; a write discarded before
// destage never reaches the store; the journal is replayed on the next open.
TEST_F(EngineTest, StagedOpsAreReadableAndReplayed) {
  EngineOptions manual;
  manual.start_destagers = false;
  MakeEngine(manual);
  ModelFile f = NewModelFile("a");
  ModelFile g = NewModelFile("b");
  Write(f, 0, Bytes(4 * kBlockSize, 20));
  Write(f, 123, Bytes(3 * kBlockSize, 21));
  Zero(f, 2000, 3000);
  Write(g, 0, Bytes(2 * kBlockSize, 22));
  Zero(g, 0, 2 * kBlockSize);               // discarded before destage
  Truncate(g, kBlockSize);
  ExpectMatchesModel(f);
  ExpectMatchesModel(g);
  CS_ASSERT_OK(engine_->Sync());
  // Nothing reached the catalog yet (no destager runs).
  EXPECT_EQ(Mapped(f), 0u);
  EXPECT_EQ(cat().Usage().high_water, 0u);

  // "Crash": drop the engine and the backing dir, then open again.
  engine_.reset();
  Reopen(CatalogOptions{});
  MakeEngine();
  ASSERT_EQ(replayed_.count(f.ref.file_id), 1u);
  EXPECT_EQ(replayed_[f.ref.file_id].size, f.size);
  ASSERT_EQ(replayed_.count(g.ref.file_id), 1u);
  EXPECT_EQ(replayed_[g.ref.file_id].size, g.size);
  ExpectMatchesModel(f);
  ExpectMatchesModel(g);
  SETTLE();
  ExpectMatchesModel(f);
  ExpectMatchesModel(g);
  EXPECT_EQ(Mapped(g), 0u);
  EXPECT_EQ(cat().Usage().used_slots, Mapped(f));
  // g's blocks were superseded before destage: only f's blocks were ever stored.
  EXPECT_EQ(cat().Usage().high_water, Mapped(f));
  EXPECT_EQ(CatalogSize(f), f.size);
  EXPECT_EQ(CatalogSize(g), g.size);
  ExpectCatalogInvariants(cat(), store());
}

// Retirement syncs the journal only when the destagers skipped an op of the
// bucket that a newer op in a later bucket superseded, and an fsync may have
// covered the skipped op: the newer op is then the only record of the file's
// state and must be durable before the segment goes. Replayed buckets count
// as fsynced (the previous daemon's fsyncs are unknown). Otherwise the
// catalog holds every op the bucket needs, and the segment may be deleted
// without ever being written back. Ops are staged with the destagers
// stopped, in buckets of the smallest size (a 4 MiB write fills one), then
// replayed into an engine that destages them: Drain without Sync, so every
// segment fdatasync counted is a retirement's.
TEST_F(EngineTest, RetirementSyncsTheJournalOnlyAfterSkippingOpsANewerBucketSuperseded) {
  struct Case {
    const char* what;
    bool sync;
  };
  const std::vector<Case> cases = {{"distinct writes", false},
                                   {"an overwrite in the same bucket", false},
                                   {"an overwrite in a later bucket", true},
                                   {"a write into a range punched in a later bucket", true}};
  const size_t fill = kMaxRecordBlocks * kBlockSize;  // fills a bucket
  int n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    EngineOptions manual;
    manual.start_destagers = false;
    manual.bucket_bytes = kRecordHeaderSize + fill;
    MakeEngine(manual);
    ModelFile f = NewModelFile("f" + std::to_string(n++));
    switch (n) {
      case 1:
        Write(f, 0, Bytes(fill, 1));
        Write(f, fill, Bytes(8 * kBlockSize, 2));
        break;
      case 2:
        Write(f, 0, Bytes(8 * kBlockSize, 3));
        Write(f, 2 * kBlockSize, Bytes(kBlockSize, 4));
        break;
      case 3:
        Write(f, 0, Bytes(fill, 3));
        Write(f, 2 * kBlockSize, Bytes(kBlockSize, 4));
        break;
      default:
        Write(f, 0, Bytes(fill, 5));
        Zero(f, 0, 8 * kBlockSize);
        Write(f, 3 * kBlockSize, Bytes(kBlockSize, 6));
    }
    ASSERT_FALSE(HasFatalFailure());
    engine_.reset();  // a crash: the records stay in the journal
    Reopen(CatalogOptions{});
    MakeEngine(EngineOptions{.bucket_bytes = manual.bucket_bytes});
    CS_ASSERT_OK(engine_->Drain());
    ExpectMatchesModel(f);
    const uint64_t syncs = engine_->Stats().journal_syncs;
    if (c.sync) EXPECT_GT(syncs, 0u) << "a replayed bucket with a skipped op retired without a journal sync";
    else EXPECT_EQ(syncs, 0u) << "a bucket whose ops the catalog holds was synced at retirement";
    ExpectCatalogInvariants(cat(), store());
  }
}

// A stream of overwrites that no fsync covers never syncs the journal: the
// destagers skip the superseded ops, and their buckets retire without a
// sync (their segments need never reach the disk). The data is all there.
// Rounds go on until the destagers did skip ops (they run concurrently, so
// one round may find them already past the overwritten bucket): the check
// is never vacuous.
TEST_F(EngineTest, OverwritesNoFsyncCoveredRetireWithoutJournalSyncs) {
  const size_t fill = kMaxRecordBlocks * kBlockSize;
  EngineOptions small;
  small.bucket_bytes = kRecordHeaderSize + fill;
  MakeEngine(small);
  ModelFile f = NewModelFile("f");
  std::mt19937_64 rng(7);
  for (int round = 0; round < 3 || (engine_->Stats().writes_absorbed == 0 && round < 50); ++round) {
    Write(f, 0, Bytes(fill, static_cast<uint8_t>(round + 1)));
    for (int i = 0; i < 200; ++i)
      Write(f, (rng() % kMaxRecordBlocks) * kBlockSize, Bytes(kBlockSize, static_cast<uint8_t>(rng())));
  }
  CS_ASSERT_OK(engine_->Drain());
  ASSERT_GT(engine_->Stats().writes_absorbed, 0u) << "no op was ever skipped: nothing was tested";
  ExpectMatchesModel(f);
  EXPECT_EQ(engine_->Stats().journal_syncs, 0u);
  ExpectCatalogInvariants(cat(), store());
}

// Write-back delay (write_delay_ms): a sealed bucket's writes wait, so an
// overwrite appended meanwhile supersedes them and the first version is
// never written to the store; a caller waiting for destage (Drain here, as
// an fsync by destage or the unmount) does not wait out the delay, which is
// an hour: without that, Drain would not return.
TEST_F(EngineTest, WriteBackDelayLetsOverwritesSupersedeAndDrainDoesNotWaitItOut) {
  const size_t fill = kMaxRecordBlocks * kBlockSize;
  EngineOptions o;
  o.bucket_bytes = kRecordHeaderSize + fill;  // a record of kMaxRecordBlocks seals a bucket
  o.write_delay_ms = 3'600'000;
  MakeEngine(o);
  ModelFile f = NewModelFile("f");
  ModelFile g = NewModelFile("g");
  Write(f, 0, Bytes(kBlockSize, 1));  // version 1 of f's block 0
  Write(g, 0, Bytes(fill, 2));        // fills and seals bucket 1 (and more)
  Write(f, 0, Bytes(kBlockSize, 3));  // version 2, in a later bucket
  ASSERT_FALSE(HasFatalFailure());
  const uint64_t stored_before = engine_->Stats().blocks_stored;
  CS_ASSERT_OK(engine_->Drain());
  const EngineStats s = engine_->Stats();
  EXPECT_EQ(stored_before, 0u) << "destaged during the delay";
  EXPECT_GE(s.writes_absorbed, 1u);
  // g's 32 distinct blocks (Bytes repeats every 32 blocks) and f's
  // version 2; version 1 was never written.
  EXPECT_EQ(s.blocks_stored, 33u);
  ExpectMatchesModel(f);
  ExpectMatchesModel(g);
  ExpectCatalogInvariants(cat(), store());
}

// fsync_destage: an fsync that finds a large backlog waits for the
// destagers (the data then lives in the store and the catalog, written once)
// instead of syncing the journal; below the threshold, with the option off
// and without running destagers it syncs the journal. Each way the data is
// there after the engine is dropped and the journal replayed.
TEST_F(EngineTest, FsyncOfALargeBacklogDestagesItInsteadOfSyncingTheJournal) {
  struct Case {
    const char* what;
    uint64_t threshold;
    uint64_t bytes;
    bool destagers;
    bool destaged;  // expected: made durable by destage
  };
  const std::vector<Case> cases = {{"backlog over the threshold", 1u << 20, 2u << 20, true, true},
                                   {"backlog under the threshold", 1u << 20, 256u << 10, true, false},
                                   {"option off", 0, 2u << 20, true, false},
                                   {"destagers not running", 1u << 20, 2u << 20, false, false}};
  int n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    EngineOptions o;
    o.fsync_destage_bytes = c.threshold;
    o.start_destagers = c.destagers;
    o.idle_seal_ms = 600000;  // only the fsync seals the open bucket
    MakeEngine(o);
    ModelFile f = NewModelFile("f" + std::to_string(n++));
    // Half of it twice: duplicates too.
    const auto half = Bytes(c.bytes / 2, static_cast<uint8_t>(10 + n));
    Write(f, 0, half);
    Write(f, c.bytes / 2, half);
    ASSERT_FALSE(HasFatalFailure());
    CS_ASSERT_OK(engine_->Sync());
    const EngineStats s = engine_->Stats();
    if (c.destaged) {
      EXPECT_EQ(s.fsyncs_destaged, 1u);
      EXPECT_EQ(s.journal_syncs, 0u) << "the journal was synced although destage made the data durable";
      EXPECT_EQ(s.journal_bytes, 0u) << "the fsync returned before its buckets retired";
    } else {
      EXPECT_EQ(s.fsyncs_destaged, 0u);
      EXPECT_GT(s.journal_syncs, 0u);
    }
    engine_.reset();  // a crash after the fsync returned
    Reopen(CatalogOptions{});
    MakeEngine();
    ExpectMatchesModel(f);
    SETTLE();
    ExpectMatchesModel(f);
    ExpectCatalogInvariants(cat(), store());
  }
}

// An fsync whose own new bytes are a small part of what destage would have
// to get through first (earlier fsyncs synced the rest through the journal)
// syncs the journal: it does not wait for everybody's backlog.
TEST_F(EngineTest, FsyncAfterEarlierFsyncsSyncsTheJournalRatherThanWaitForTheBacklog) {
  EngineOptions o;
  o.fsync_destage_bytes = 1u << 20;
  o.idle_seal_ms = 600000;  // the bucket stays open: nothing retires behind the test's back
  MakeEngine(o);
  ModelFile f = NewModelFile("f");
  uint64_t off = 0;
  for (int i = 0; i < 4; ++i) {  // 3.6 MiB synced through the journal, 0.9 MiB at a time
    Write(f, off, Bytes(900 * 1024, static_cast<uint8_t>(i + 1)));
    off += 900 * 1024;
    CS_ASSERT_OK(engine_->Sync());
  }
  EXPECT_EQ(engine_->Stats().fsyncs_destaged, 0u);
  const uint64_t syncs = engine_->Stats().journal_syncs;
  Write(f, off, Bytes(1200 * 1024, 9));  // over the threshold, but under half of the unretired bytes
  CS_ASSERT_OK(engine_->Sync());
  EXPECT_EQ(engine_->Stats().fsyncs_destaged, 0u) << "waited for a backlog that was synced already";
  EXPECT_GT(engine_->Stats().journal_syncs, syncs);
  EXPECT_GT(engine_->Stats().journal_bytes, 0u);
  engine_.reset();
  Reopen(CatalogOptions{});
  MakeEngine();
  ExpectMatchesModel(f);
}

TEST_F(EngineTest, DataSurvivesReopen) {
  ModelFile f = NewModelFile("a");
  Write(f, 123, Bytes(3 * kBlockSize, 17));
  Zero(f, 2000, 3000);
  CS_ASSERT_OK(engine_->Sync());
  engine_.reset();  // stops the destagers wherever they are
  Reopen(CatalogOptions{});
  MakeEngine();
  ExpectMatchesModel(f);
  SETTLE();
  ExpectMatchesModel(f);
  engine_.reset();
  Reopen(CatalogOptions{});
  MakeEngine();
  EXPECT_TRUE(replayed_.empty()) << "a drained journal replays nothing";
  ExpectMatchesModel(f);
  ExpectCatalogInvariants(cat(), store());
}

// Random byte-level operations over two files of one chain, checked against
// the model after every operation, while the destagers run.
TEST_F(EngineTest, RandomizedOpsMatchModel) {
  std::mt19937_64 rng(77);
  auto pick = [&](uint64_t n) { return static_cast<uint64_t>(rng() % n); };
  std::vector<ModelFile> files = {NewModelFile("a"), NewModelFile("b")};
  constexpr uint64_t kMaxSize = 24 * kBlockSize;
  // A few block-sized patterns, so that writes often repeat content (dedup).
  std::vector<std::vector<uint8_t>> palette;
  for (int i = 0; i < 4; ++i) {
    test::Block b = PatternBlock(static_cast<uint64_t>(i));
    palette.emplace_back(b.b, b.b + kBlockSize);
  }
  palette.emplace_back(kBlockSize, 0);
  for (int step = 0; step < 400; ++step) {
    ModelFile& f = files[pick(files.size())];
    uint64_t kind = pick(10);
    SCOPED_TRACE("step " + std::to_string(step) + " kind " + std::to_string(kind));
    if (kind < 6) {
      uint64_t len = 1 + pick(3 * kBlockSize);
      uint64_t off = pick(kMaxSize - len);
      if (pick(2) == 0) off &= ~uint64_t{kBlockSize - 1};
      std::vector<uint8_t> data(len);
      const auto& p = palette[pick(palette.size())];
      for (uint64_t i = 0; i < len; ++i) data[i] = p[(off + i) % kBlockSize];
      ASSERT_NO_FATAL_FAILURE(Write(f, off, data));
    } else if (kind < 8) {
      uint64_t off = pick(kMaxSize);
      ASSERT_NO_FATAL_FAILURE(Zero(f, off, 1 + pick(4 * kBlockSize)));
    } else {
      ASSERT_NO_FATAL_FAILURE(Truncate(f, pick(kMaxSize)));
    }
    ASSERT_NO_FATAL_FAILURE(ExpectMatchesModel(f));
    if (step % 100 == 99) {
      SETTLE();
      for (const ModelFile& m : files) ASSERT_NO_FATAL_FAILURE(ExpectMatchesModel(m));
    }
  }
  SETTLE();
  ExpectCatalogInvariants(cat(), store());
  for (const ModelFile& f : files) {
    ASSERT_NO_FATAL_FAILURE(ExpectMatchesModel(f));
    EXPECT_EQ(CatalogSize(f), f.size);
    // Every non-zero block of the model is mapped; zero blocks are holes.
    uint64_t nonzero = 0;
    for (uint64_t lba = 0; lba * kBlockSize < f.size; ++lba) {
      uint64_t end = std::min<uint64_t>(f.size, (lba + 1) * kBlockSize);
      nonzero += std::any_of(f.bytes.begin() + static_cast<ptrdiff_t>(lba * kBlockSize),
                             f.bytes.begin() + static_cast<ptrdiff_t>(end),
                             [](uint8_t x) { return x != 0; });
    }
    EXPECT_EQ(Mapped(f), nonzero) << "file " << f.ref.file_id;
  }
}

// ------------------------------------------------------------- capacity

class EngineCapacityTest : public EngineTest {
 protected:
  void SetUp() override {
    EngineTest::SetUp();
    engine_.reset();
    CatalogOptions opts;
    opts.capacity_slots = 4;
    OpenBacking(opts);
    chain_ = NewChain("pool");
    MakeEngine();
  }
  // Fills the store: 4 distinct blocks, one write each.
  void Fill(ModelFile& f) {
    for (uint64_t i = 0; i < 4; ++i) {
      test::Block b = PatternBlock(i);
      ASSERT_NO_FATAL_FAILURE(Write(f, i * kBlockSize, std::vector<uint8_t>(b.b, b.b + kBlockSize)));
    }
    SETTLE();
    ASSERT_EQ(cat().Usage().used_slots, 4u);
  }
  static std::vector<uint8_t> Distinct(uint64_t id) {
    test::Block b = PatternBlock(100 + id);
    return std::vector<uint8_t>(b.b, b.b + kBlockSize);
  }
};

TEST_F(EngineCapacityTest, WriteBeyondCapacityIsEnospcAndDeletesGiveSpaceBack) {
  ModelFile f = NewModelFile("a");
  ASSERT_NO_FATAL_FAILURE(Fill(f));
  Status st = TryWrite(f, 4 * kBlockSize, Distinct(1));
  EXPECT_EQ(st.code(), ENOSPC) << st.ToString();
  ExpectMatchesModel(f);
  // Whole-block deletes proceed and give space back.
  Zero(f, kBlockSize, kBlockSize);
  SETTLE();
  EXPECT_EQ(cat().Usage().used_slots, 3u);
  Write(f, 4 * kBlockSize, Distinct(1));
  SETTLE();
  EXPECT_EQ(cat().Usage().used_slots, 4u);
  ExpectMatchesModel(f);
  // Shrinking to a block boundary is a pure delete: it works at capacity.
  Truncate(f, 2 * kBlockSize);
  SETTLE();
  EXPECT_EQ(cat().Usage().used_slots, 1u);
  ExpectMatchesModel(f);
  ExpectCatalogInvariants(cat(), store());
}

// SPEC §5: "when the content store cannot grow ... writes fail with ENOSPC
// ...; deletes still proceed and give space back." A punch-hole whose range
// starts inside a block is a delete too.
TEST_F(EngineCapacityTest, UnalignedPunchAtFullCapacityGivesSpaceBack) {
  ModelFile f = NewModelFile("a");
  ASSERT_NO_FATAL_FAILURE(Fill(f));
  Status st = TryZero(f, 100, 3 * kBlockSize - 100);  // partial block 0, whole blocks 1 and 2
  ASSERT_TRUE(st.ok()) << "punch [100, 12288) at full capacity: " << st.ToString();
  ExpectMatchesModel(f);
  SETTLE();
  ExpectMatchesModel(f);
  EXPECT_EQ(cat().Usage().used_slots, 2u);
}

// SPEC §3: "Zero blocks are never stored: writing zeros is the same as
// punching." A zero write needs no slot, so a full store must not refuse it.
TEST_F(EngineCapacityTest, ZeroBlockWriteAtFullCapacityIsAPunch) {
  ModelFile f = NewModelFile("a");
  ASSERT_NO_FATAL_FAILURE(Fill(f));
  Status st = TryWrite(f, kBlockSize, std::vector<uint8_t>(kBlockSize, 0));
  ASSERT_TRUE(st.ok()) << "4 KiB of zeros over block 1 at full capacity: " << st.ToString();
  ExpectMatchesModel(f);
  SETTLE();
  EXPECT_EQ(cat().Usage().used_slots, 3u);
  ExpectMatchesModel(f);
}

// The capacity is a number of slots, whether they are filled by four 4 KiB
// writes or by one 16 KiB write.
TEST_F(EngineCapacityTest, OneWriteFillingTheCapacityIsDestaged) {
  ModelFile f = NewModelFile("a");
  std::vector<uint8_t> data;
  for (uint64_t i = 0; i < 4; ++i) {
    auto b = Distinct(i);
    data.insert(data.end(), b.begin(), b.end());
  }
  Write(f, 0, data);
  SETTLE();
  EXPECT_EQ(cat().Usage().used_slots, 4u);
  ExpectMatchesModel(f);
}

}  // namespace
}  // namespace chainswap
