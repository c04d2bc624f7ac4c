// Journal replay (SPEC §5 crash safety) through the Engine over a real
// backing directory: ops acknowledged by an engine whose destagers never ran
// are replayed by the next engine (sizes, data), then destaged; replay is
// idempotent; torn tails are ignored and corruption in the middle refused;
// a write superseded before destage never reaches the content store.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "destage/engine.h"
#include "destage/journal.h"
#include "test_util.h"

namespace chainswap {
namespace {

namespace fs = std::filesystem;
using test::CatalogDump;
using test::DumpCatalog;
using test::ExpectCatalogInvariants;
using test::Join;

struct ModelFile {
  FileRef ref;
  uint64_t size = 0;
  int64_t mtime = 0;
  std::vector<uint8_t> bytes;  // bytes.size() == size
};

class ReplayTest : public test::BackingFixture {
 protected:
  void SetUp() override {
    test::BackingFixture::SetUp();
    chain_ = NewChain("chain");
  }

  std::string Journal() { return backing_->paths().journal; }

  // An engine over the backing directory, opened (journal replayed).
  std::unique_ptr<Engine> OpenEngine(bool destagers, EngineOptions opts = EngineOptions{}) {
    opts.journal_dir = Journal();
    opts.start_destagers = destagers;
    auto e = std::make_unique<Engine>(cat(), opts);
    meta_.clear();
    Status st = e->Open(&meta_);
    EXPECT_TRUE(st.ok()) << "Engine::Open: " << st.ToString();
    if (!st.ok()) return nullptr;
    return e;
  }

  // Stops an engine without destaging (its destagers never ran) and destroys
  // it: everything it acknowledged stays in the journal.
  void Crash(std::unique_ptr<Engine>& e) {
    Status st = e->Stop();
    EXPECT_TRUE(st.ok()) << st.ToString();
    e.reset();
  }

  // Start + Drain, with a liveness guard (not a performance assertion).
  void StartAndDrain(Engine& e) {
    e.Start();
    auto fut = std::async(std::launch::async, [&e] { return e.Drain(); });
    if (fut.wait_for(std::chrono::seconds(120)) != std::future_status::ready) {
      (void)e.Stop();
      (void)fut.get();
      FAIL() << "Engine::Drain() did not return";
    }
    Status st = fut.get();
    ASSERT_TRUE(st.ok()) << "Drain: " << st.ToString();
  }

  ModelFile NewModelFile(const std::string& name) {
    ModelFile m;
    m.ref.dedup_id = chain_;
    m.ref.file_id = NewFile(chain_, name);
    return m;
  }

  FileMetaUpdate Meta(ModelFile& m, uint64_t new_size) {
    m.mtime = ++clock_;
    return FileMetaUpdate{m.ref.file_id, new_size, m.mtime, m.mtime};
  }

  void Write(Engine& e, ModelFile& m, uint64_t off, const std::vector<uint8_t>& data) {
    const uint64_t new_size = std::max<uint64_t>(m.size, off + data.size());
    Status st = e.Write(m.ref, off, data, m.size, Meta(m, new_size));
    ASSERT_TRUE(st.ok()) << "write " << off << "+" << data.size() << ": " << st.ToString();
    m.size = new_size;
    m.bytes.resize(new_size, 0);
    std::copy(data.begin(), data.end(), m.bytes.begin() + static_cast<ptrdiff_t>(off));
  }

  void Zero(Engine& e, ModelFile& m, uint64_t off, uint64_t len) {
    Status st = e.Zero(m.ref, off, len, m.size, Meta(m, m.size));
    ASSERT_TRUE(st.ok()) << "zero " << off << "+" << len << ": " << st.ToString();
    for (uint64_t i = off; i < std::min(m.size, off + len); ++i) m.bytes[i] = 0;
  }

  void Truncate(Engine& e, ModelFile& m, uint64_t new_size) {
    Status st = e.Truncate(m.ref, m.size, new_size, Meta(m, new_size));
    ASSERT_TRUE(st.ok()) << "truncate " << m.size << " -> " << new_size << ": " << st.ToString();
    m.size = new_size;
    m.bytes.resize(new_size, 0);
  }

  // Distinct non-zero bytes for every call.
  std::vector<uint8_t> Random(size_t len) {
    std::vector<uint8_t> v(len);
    for (size_t i = 0; i < len; i += 8) {
      uint64_t x = rng_() | 1;
      std::memcpy(v.data() + i, &x, std::min<size_t>(8, len - i));
    }
    return v;
  }

  // The whole file reads back as the model (and nothing past its end).
  void ExpectReads(Engine& e, const ModelFile& m) {
    std::vector<uint8_t> got(m.size + 2 * kBlockSize, 0xEE);
    auto r = e.Read(m.ref, 0, got.size(), m.size, got.data());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(*r, m.size);
    got.resize(m.size);
    if (got != m.bytes) {
      for (size_t i = 0; i < m.size; ++i)
        ASSERT_EQ(got[i], m.bytes[i]) << "file " << m.ref.file_id << " byte " << i << " (block " << i / kBlockSize
                                      << ")";
    }
    // An unaligned read in the middle too.
    if (m.size > 3 * kBlockSize) {
      std::vector<uint8_t> part(2 * kBlockSize + 3, 0xEE);
      auto pr = e.Read(m.ref, kBlockSize - 1, part.size(), m.size, part.data());
      ASSERT_TRUE(pr.ok());
      ASSERT_EQ(*pr, part.size());
      ASSERT_TRUE(std::equal(part.begin(), part.end(), m.bytes.begin() + (kBlockSize - 1)));
    }
  }

  // Non-zero blocks of the model: what the catalog must map after destage.
  static uint64_t NonZeroBlocks(const ModelFile& m) {
    uint64_t n = 0;
    for (size_t b = 0; b * kBlockSize < m.size; ++b) {
      size_t end = std::min<size_t>(m.size, (b + 1) * kBlockSize);
      if (std::any_of(m.bytes.begin() + b * kBlockSize, m.bytes.begin() + end, [](uint8_t x) { return x != 0; })) ++n;
    }
    return n;
  }

  void ExpectMeta(const ModelFile& m) {
    auto it = meta_.find(m.ref.file_id);
    ASSERT_NE(it, meta_.end()) << "no replayed size for file " << m.ref.file_id;
    EXPECT_EQ(it->second.size, m.size) << "file " << m.ref.file_id;
    EXPECT_EQ(it->second.mtime_ns, m.mtime) << "file " << m.ref.file_id;
  }

  FileInfo CatalogFile(int64_t id) {
    auto files = cat().ListFiles();
    EXPECT_TRUE(files.ok());
    if (files.ok())
      for (const FileInfo& f : *files)
        if (f.file_id == id) return f;
    ADD_FAILURE() << "file " << id << " not in the catalog";
    return FileInfo{};
  }

  std::vector<std::string> JournalFiles() {
    std::vector<std::string> v;
    for (const auto& e : fs::directory_iterator(Journal())) v.push_back(e.path().filename().string());
    std::sort(v.begin(), v.end());
    return v;
  }

  std::string LastSegmentPath() {
    auto ids = ListSegments(Journal());
    EXPECT_TRUE(ids.ok() && !ids->empty());
    if (!ids.ok() || ids->empty()) return "";
    char name[64];
    std::snprintf(name, sizeof name, "/bucket-%020llu.log", static_cast<unsigned long long>(ids->back()));
    return Journal() + name;
  }

  // As if the crash came before retirement recorded any bucket in the
  // catalog (Catalog::JournalRetiredThrough): segments put back are live.
  void ForgetRetirement() { CS_ASSERT_OK(cat().SetJournalRetiredThrough(0)); }

  static uint64_t FileSize(const std::string& p) {
    struct stat st;
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return static_cast<uint64_t>(st.st_size);
  }

  int64_t chain_ = 0;
  int64_t clock_ = 5000;
  std::map<int64_t, ReplayedMeta> meta_;
  std::mt19937_64 rng_{4242};
};

TEST_F(ReplayTest, ReplayRestoresStagedOpsThenDestages) {
  ModelFile a = NewModelFile("a"), b = NewModelFile("b"), c = NewModelFile("c");
  {
    auto e = OpenEngine(false);
    ASSERT_NE(e, nullptr);
    EXPECT_TRUE(meta_.empty()) << "empty journal replays nothing";
    // a: data, unaligned overwrite, a whole zeroed block, an unaligned zero,
    // a shrinking truncate to the middle of a block.
    Write(*e, a, 0, Random(5 * kBlockSize));
    Write(*e, a, 2 * kBlockSize + 50, Random(100));
    Zero(*e, a, 3 * kBlockSize, kBlockSize);
    Zero(*e, a, 100, 200);
    Truncate(*e, a, 4 * kBlockSize + 1000);
    // b: shrink, grow again (size-only record), write past the old end.
    Write(*e, b, 0, Random(3 * kBlockSize));
    Truncate(*e, b, kBlockSize + 100);
    Truncate(*e, b, 10 * kBlockSize);
    Write(*e, b, 8 * kBlockSize, Random(kBlockSize));
    // c: written, then truncated away entirely.
    Write(*e, c, 0, Random(2 * kBlockSize));
    Truncate(*e, c, 0);
    ExpectReads(*e, a);
    ExpectReads(*e, b);
    Crash(e);
  }
  EXPECT_FALSE(JournalFiles().empty());
  EXPECT_EQ(cat().Usage().used_slots, 0u) << "nothing may be destaged by an engine without destagers";

  auto e = OpenEngine(true);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(meta_.size(), 3u);
  ExpectMeta(a);
  ExpectMeta(b);
  ExpectMeta(c);
  // Readable from the replayed staging index before any destage.
  ExpectReads(*e, a);
  ExpectReads(*e, b);
  ExpectReads(*e, c);
  EngineStats before = e->Stats();
  EXPECT_GT(before.staged_write_blocks, 0u);
  EXPECT_GT(before.staged_delete_ranges, 0u);
  EXPECT_GT(before.pending_records, 0u);

  ASSERT_NO_FATAL_FAILURE(StartAndDrain(*e));
  ExpectReads(*e, a);
  ExpectReads(*e, b);
  ExpectReads(*e, c);
  EngineStats after = e->Stats();
  EXPECT_EQ(after.buckets, 0u);
  EXPECT_EQ(after.staged_write_blocks, 0u);
  EXPECT_EQ(after.staged_delete_ranges, 0u);
  EXPECT_EQ(after.journal_bytes, 0u);
  EXPECT_EQ(after.error, "");
  EXPECT_EQ(Join(JournalFiles()), "") << "retired buckets must leave no segment behind";
  // Blocks superseded before destage: a's 0 (unaligned zero), 2 (unaligned
  // write), 3 (zeroed), 4 (truncate's zero tail); b's 1 (truncate's zero
  // tail) and 2 (truncated away); c's 0 and 1.
  EXPECT_EQ(e->counters().writes_absorbed.load(), 8u);
  e.reset();

  // Catalog: sizes from the journal, one slot per distinct non-zero block.
  for (const ModelFile* m : {&a, &b, &c}) {
    FileInfo fi = CatalogFile(m->ref.file_id);
    EXPECT_EQ(fi.size, m->size) << "file " << m->ref.file_id;
    EXPECT_EQ(fi.mtime_ns, m->mtime) << "file " << m->ref.file_id;
    EXPECT_EQ(fi.mapped_blocks, NonZeroBlocks(*m)) << "file " << m->ref.file_id;
  }
  EXPECT_EQ(cat().Usage().used_slots, NonZeroBlocks(a) + NonZeroBlocks(b) + NonZeroBlocks(c));
  ExpectCatalogInvariants(cat(), store());

  // And a fresh engine reads the same from the catalog alone.
  auto e2 = OpenEngine(true);
  ASSERT_NE(e2, nullptr);
  EXPECT_TRUE(meta_.empty());
  ExpectReads(*e2, a);
  ExpectReads(*e2, b);
  ExpectReads(*e2, c);
}

TEST_F(ReplayTest, ReplayIsIdempotent) {
  ModelFile a = NewModelFile("a"), b = NewModelFile("b");
  // Phase 0: destaged state to delete from: 16 distinct blocks, 8 duplicates.
  {
    auto e = OpenEngine(true);
    ASSERT_NE(e, nullptr);
    std::vector<uint8_t> data = Random(16 * kBlockSize);
    data.insert(data.end(), data.begin(), data.begin() + 8 * kBlockSize);  // blocks 16..23 = 0..7
    Write(*e, a, 0, data);
    Write(*e, b, 0, Random(4 * kBlockSize));
    ASSERT_NO_FATAL_FAILURE(StartAndDrain(*e));
  }
  ASSERT_EQ(cat().Usage().used_slots, 20u);
  // Phase 1: staged only: frees 8 slots entirely, drops references of others,
  // writes 2 new blocks, truncates and rewrites b.
  {
    auto e = OpenEngine(false);
    ASSERT_NE(e, nullptr);
    Zero(*e, a, 0, 4 * kBlockSize);            // 0..3: their copies 16..19 keep them
    Zero(*e, a, 8 * kBlockSize, 8 * kBlockSize);  // 8..15: freed
    Write(*e, a, 5 * kBlockSize, Random(kBlockSize));
    Write(*e, a, 30 * kBlockSize + 7, Random(20));
    Truncate(*e, a, 31 * kBlockSize);
    Truncate(*e, b, kBlockSize + 1);
    Write(*e, b, 2 * kBlockSize, std::vector<uint8_t>(a.bytes.begin() + 16 * kBlockSize,
                                                      a.bytes.begin() + 17 * kBlockSize));  // dedups with a
    Crash(e);
  }
  const fs::path aside = tmp_->Sub("journal-copy");
  fs::create_directory(aside);
  std::vector<std::string> segs = JournalFiles();
  ASSERT_FALSE(segs.empty());
  for (const std::string& s : segs) fs::copy_file(Journal() + "/" + s, aside / s);

  auto replay = [&](const char* what) -> CatalogDump {
    SCOPED_TRACE(what);
    auto e = OpenEngine(true);
    EXPECT_NE(e, nullptr);
    if (!e) return {};
    ExpectMeta(a);
    ExpectMeta(b);
    StartAndDrain(*e);
    ExpectReads(*e, a);
    ExpectReads(*e, b);
    EXPECT_EQ(Join(JournalFiles()), "");
    e.reset();
    ExpectCatalogInvariants(cat(), store());
    return DumpCatalog(cat());
  };

  CatalogDump first = replay("first replay");
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_GE(first.free_slot.size(), 6u) << "the journal freed 8 slots and allocated at most 2";
  EXPECT_EQ(first.lat.size(), NonZeroBlocks(a) + NonZeroBlocks(b));

  // Crash after the catalog committed (and synced) the destaged effects but
  // before retirement recorded the buckets: the same journal is replayed
  // again on top of its own effects.
  ForgetRetirement();
  for (const std::string& s : segs) fs::copy_file(aside / s, Journal() + "/" + s);
  CatalogDump second = replay("second replay");
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(Join(second.lat), Join(first.lat)) << "LAT changed by a second replay";
  EXPECT_EQ(Join(second.pat), Join(first.pat)) << "PAT changed by a second replay";
  EXPECT_EQ(Join(second.free_slot), Join(first.free_slot)) << "free list changed by a second replay";
  EXPECT_EQ(Join(second.files), Join(first.files)) << "swap_file rows changed by a second replay";
  EXPECT_EQ(cat().Usage().used_slots, first.pat.size());
}

// Shared by the torn-tail tests: three records on file a, the segment size
// after each, and the model before the last record.
struct ThreeRecords {
  ModelFile before_last, after_last;
  uint64_t size_before_last = 0, size_after_last = 0;
  std::string segment;
};

class ReplayTornTest : public ReplayTest {
 protected:
  ThreeRecords Make() {
    ThreeRecords t;
    ModelFile a = NewModelFile("a");
    auto e = OpenEngine(false);
    EXPECT_NE(e, nullptr);
    if (!e) return t;
    Write(*e, a, 0, Random(4 * kBlockSize));
    Write(*e, a, kBlockSize, Random(kBlockSize));
    t.segment = LastSegmentPath();
    t.before_last = a;
    t.size_before_last = FileSize(t.segment);
    Write(*e, a, 2 * kBlockSize, Random(kBlockSize));
    t.after_last = a;
    t.size_after_last = FileSize(t.segment);
    EXPECT_EQ(t.size_after_last - t.size_before_last, kRecordHeaderSize + kBlockSize);
    Crash(e);
    return t;
  }
};

TEST_F(ReplayTornTest, GarbageTailIgnoredOnOpen) {
  ThreeRecords t = Make();
  ASSERT_FALSE(HasFailure());
  {
    int fd = ::open(t.segment.c_str(), O_WRONLY | O_APPEND);
    ASSERT_GE(fd, 0);
    std::vector<uint8_t> junk = Random(1000);
    ASSERT_EQ(::write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
    ::close(fd);
  }
  auto e = OpenEngine(true);
  ASSERT_NE(e, nullptr);
  ExpectMeta(t.after_last);
  ExpectReads(*e, t.after_last);
  EXPECT_EQ(FileSize(t.segment), t.size_after_last) << "the torn tail is cut off on replay";
  // Writes after the replay go on; everything destages.
  ModelFile a = t.after_last;
  Write(*e, a, 6 * kBlockSize, Random(kBlockSize));
  ASSERT_NO_FATAL_FAILURE(StartAndDrain(*e));
  ExpectReads(*e, a);
  EXPECT_EQ(Join(JournalFiles()), "");
  e.reset();
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(ReplayTornTest, TruncatedLastRecordIgnoredOnOpen) {
  ThreeRecords t = Make();
  ASSERT_FALSE(HasFailure());
  const uint64_t cut = t.size_before_last + (t.size_after_last - t.size_before_last) / 2;
  ASSERT_EQ(::truncate(t.segment.c_str(), static_cast<off_t>(cut)), 0);
  auto e = OpenEngine(true);
  ASSERT_NE(e, nullptr);
  // The last write is lost (it was never fully written); the rest is intact.
  ExpectMeta(t.before_last);
  ExpectReads(*e, t.before_last);
  EXPECT_EQ(FileSize(t.segment), t.size_before_last);
  ASSERT_NO_FATAL_FAILURE(StartAndDrain(*e));
  ExpectReads(*e, t.before_last);
  e.reset();
  EXPECT_EQ(CatalogFile(t.before_last.ref.file_id).mapped_blocks, 4u);
  ExpectCatalogInvariants(cat(), store());
}

// The same torn tail, but the lost write's data happens to contain bytes
// that encode a journal record (swap data is arbitrary guest data). The
// crash still only tore the tail: the next mount must come up.
TEST_F(ReplayTornTest, TornTailWithRecordLikeGuestDataStillOpens) {
  ModelFile a = NewModelFile("a");
  std::string segment;
  uint64_t before_last = 0;
  ModelFile model_before;
  {
    auto e = OpenEngine(false);
    ASSERT_NE(e, nullptr);
    Write(*e, a, 0, Random(2 * kBlockSize));
    segment = LastSegmentPath();
    before_last = FileSize(segment);
    model_before = a;
    std::vector<uint8_t> guest = Random(2 * kBlockSize);
    Record fake;
    fake.seq = 1u << 20;
    fake.kind = RecordKind::kDelete;
    fake.file_id = a.ref.file_id;
    fake.dedup_id = a.ref.dedup_id;
    fake.lba = 0;
    fake.count = 2;
    std::vector<uint8_t> enc;
    EncodeRecord(fake, &enc);
    std::copy(enc.begin(), enc.end(), guest.begin() + kBlockSize);  // at the start of the 2nd block
    Write(*e, a, 4 * kBlockSize, guest);
    Crash(e);
  }
  // Power cut while the last record's payload was being written: its header
  // and 1.5 blocks of payload reached the disk.
  ASSERT_EQ(::truncate(segment.c_str(), static_cast<off_t>(before_last + kRecordHeaderSize + kBlockSize +
                                                           kBlockSize / 2)),
            0);
  EngineOptions opts;
  opts.journal_dir = Journal();
  Engine e(cat(), opts);
  std::map<int64_t, ReplayedMeta> meta;
  Status st = e.Open(&meta);
  ASSERT_TRUE(st.ok()) << "mount after a torn append refused: " << st.ToString();
  ASSERT_EQ(meta.count(a.ref.file_id), 1u);
  EXPECT_EQ(meta[a.ref.file_id].size, model_before.size);
  ExpectReads(e, model_before);
}

TEST_F(ReplayTornTest, CorruptionInTheMiddleRefusesToOpen) {
  ThreeRecords t = Make();
  ASSERT_FALSE(HasFailure());
  // Flip a payload byte of the first record; intact records follow it.
  int fd = ::open(t.segment.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t byte;
  ASSERT_EQ(::pread(fd, &byte, 1, kRecordHeaderSize + 10), 1);
  byte ^= 1;
  ASSERT_EQ(::pwrite(fd, &byte, 1, kRecordHeaderSize + 10), 1);
  ::close(fd);
  EngineOptions opts;
  opts.journal_dir = Journal();
  Engine e(cat(), opts);
  std::map<int64_t, ReplayedMeta> meta;
  Status st = e.Open(&meta);
  EXPECT_EQ(st.code(), EUCLEAN) << st.ToString();
  EXPECT_EQ(FileSize(t.segment), t.size_after_last) << "a refused journal must be left as it was";
}

// Buckets of the smallest valid size: one maximal write record fills one.
EngineOptions SmallBuckets() {
  EngineOptions o;
  o.bucket_bytes = kRecordHeaderSize + uint64_t{kMaxRecordBlocks} * kBlockSize;
  o.journal_limit = 4 * o.bucket_bytes;
  return o;
}

// A crash right after a new bucket's file was created leaves an empty last
// segment: replay treats it as an empty bucket and retires it.
TEST_F(ReplayTest, EmptyLastSegmentIsHarmless) {
  ModelFile a = NewModelFile("a");
  {
    auto e = OpenEngine(false);
    ASSERT_NE(e, nullptr);
    Write(*e, a, 0, Random(2 * kBlockSize));
    Crash(e);
  }
  auto ids = ListSegments(Journal());
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->size(), 1u);
  auto empty = Segment::Create(Journal(), ids->back() + 1);
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  empty->reset();
  auto e = OpenEngine(true);
  ASSERT_NE(e, nullptr);
  ExpectMeta(a);
  ExpectReads(*e, a);
  // New writes go to a bucket after the empty one.
  Write(*e, a, 4 * kBlockSize, Random(kBlockSize));
  ASSERT_NO_FATAL_FAILURE(StartAndDrain(*e));
  ExpectReads(*e, a);
  EXPECT_EQ(Join(JournalFiles()), "");
  e.reset();
  EXPECT_EQ(cat().Usage().used_slots, 3u);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(ReplayTest, SeveralSegmentsReplayInOrder) {
  EngineOptions opts = SmallBuckets();
  opts.journal_dir = Journal();
  ASSERT_EQ(Join(ValidateEngineOptions(opts)), "");
  ModelFile a = NewModelFile("a");
  {
    auto e = OpenEngine(false, opts);
    ASSERT_NE(e, nullptr);
    Write(*e, a, 0, Random(kMaxRecordBlocks * size_t{kBlockSize}));  // fills bucket 1
    Write(*e, a, 10 * kBlockSize, Random(2 * kBlockSize));          // bucket 2 overwrites part of it
    Zero(*e, a, 100 * kBlockSize, 50 * kBlockSize);
    Crash(e);
  }
  auto ids = ListSegments(Journal());
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->size(), 2u);
  auto e = OpenEngine(true, opts);
  ASSERT_NE(e, nullptr);
  ExpectMeta(a);
  ExpectReads(*e, a);
  ASSERT_NO_FATAL_FAILURE(StartAndDrain(*e));
  ExpectReads(*e, a);
  EXPECT_EQ(Join(JournalFiles()), "");
  // The overwritten blocks of bucket 1 were superseded by bucket 2 (and the
  // zeroed ones by the delete) before destage.
  EXPECT_EQ(e->counters().writes_absorbed.load(), 52u);
  e.reset();
  EXPECT_EQ(cat().Usage().used_slots, NonZeroBlocks(a));
  ExpectCatalogInvariants(cat(), store());
}

// A power cut can lose a segment's unlink (the directory was not synced
// after it) while the catalog already holds the bucket's effects and newer
// ones. Such a segment must not be replayed over the newer state, and
// bucket IDs must never be reused once retired.
TEST_F(ReplayTest, RetiredSegmentThatComesBackIsNotReplayed) {
  ModelFile a = NewModelFile("a");
  const std::vector<uint8_t> old_data = Random(2 * kBlockSize);
  std::string saved_name;
  std::vector<char> saved;
  {
    auto e = OpenEngine(false);
    ASSERT_NE(e, nullptr);
    Write(*e, a, 0, old_data);
    Crash(e);
  }
  {
    // Keep a copy of bucket 1 as it was before retirement.
    ASSERT_EQ(JournalFiles().size(), 1u);
    saved_name = JournalFiles()[0];
    std::ifstream in(Journal() + "/" + saved_name, std::ios::binary);
    saved.assign(std::istreambuf_iterator<char>(in), {});
    ASSERT_FALSE(saved.empty());
  }
  const ModelFile before_newer = a;
  {
    auto e = OpenEngine(true);
    ASSERT_NE(e, nullptr);
    ASSERT_NO_FATAL_FAILURE(StartAndDrain(*e));
    Write(*e, a, kBlockSize, Random(kBlockSize));  // newer data over the old record's block 1
    Write(*e, a, 0, Random(3 * kBlockSize));       // ... and a newer size
    ASSERT_NO_FATAL_FAILURE(StartAndDrain(*e));
    ASSERT_TRUE(e->Stop().ok());
  }
  ASSERT_EQ(Join(JournalFiles()), "");
  auto through = cat().JournalRetiredThrough();
  ASSERT_TRUE(through.ok()) << through.status().ToString();
  EXPECT_GE(*through, 2u);
  {
    // The lost unlink: bucket 1 is back.
    std::ofstream out(Journal() + "/" + saved_name, std::ios::binary);
    out.write(saved.data(), static_cast<std::streamsize>(saved.size()));
  }
  auto e = OpenEngine(true);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(Join(JournalFiles()), "") << "the retired segment is removed, not replayed";
  EXPECT_EQ(meta_.count(a.ref.file_id), 0u) << "no size rolled back to " << before_newer.size;
  ExpectReads(*e, a);
  // New buckets continue after the retired ones.
  Write(*e, a, 0, Random(kBlockSize));
  Crash(e);
  auto ids = ListSegments(Journal());
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->size(), 1u);
  EXPECT_GT(ids->front(), *through);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(ReplayTest, TornSegmentFollowedByNewerSegmentRefusesToOpen) {
  EngineOptions opts = SmallBuckets();
  ModelFile a = NewModelFile("a");
  {
    auto e = OpenEngine(false, opts);
    ASSERT_NE(e, nullptr);
    Write(*e, a, 0, Random(kMaxRecordBlocks * size_t{kBlockSize}));
    Write(*e, a, 0, Random(kBlockSize));
    Crash(e);
  }
  auto ids = ListSegments(Journal());
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->size(), 2u);
  char name[64];
  std::snprintf(name, sizeof name, "/bucket-%020llu.log", static_cast<unsigned long long>(ids->front()));
  const std::string first = Journal() + name;
  const uint64_t size = FileSize(first);
  ASSERT_EQ(::truncate(first.c_str(), static_cast<off_t>(size / 2)), 0);
  opts.journal_dir = Journal();
  Engine e(cat(), opts);
  std::map<int64_t, ReplayedMeta> meta;
  Status st = e.Open(&meta);
  EXPECT_EQ(st.code(), EUCLEAN) << st.ToString();
}

// A damaged record at the end of a segment that newer segments follow is
// corruption, not a crash's torn tail: the mount is refused (EUCLEAN), and
// the refusal must leave the journal exactly as it was, so that the operator
// can keep a copy (docs/OPERATIONS.md) and so that simply mounting again does
// not succeed with the damaged record silently dropped.
TEST_F(ReplayTest, RefusedJournalIsLeftIntactAndStaysRefused) {
  EngineOptions opts = SmallBuckets();
  ModelFile a = NewModelFile("a");
  {
    auto e = OpenEngine(false, opts);
    ASSERT_NE(e, nullptr);
    Write(*e, a, 0, Random(kMaxRecordBlocks * size_t{kBlockSize}));  // the whole of bucket 1
    Write(*e, a, 0, Random(kBlockSize));                             // bucket 2
    Crash(e);
  }
  auto ids = ListSegments(Journal());
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->size(), 2u);
  char name[64];
  std::snprintf(name, sizeof name, "/bucket-%020llu.log", static_cast<unsigned long long>(ids->front()));
  const std::string first = Journal() + name;
  const uint64_t size = FileSize(first);
  // One flipped bit in the payload of bucket 1's (only) record.
  {
    int fd = ::open(first.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint8_t byte;
    const off_t at = static_cast<off_t>(size / 2);
    ASSERT_EQ(::pread(fd, &byte, 1, at), 1);
    byte ^= 0x08;
    ASSERT_EQ(::pwrite(fd, &byte, 1, at), 1);
    ::close(fd);
  }
  opts.journal_dir = Journal();
  for (int attempt = 1; attempt <= 2; ++attempt) {
    SCOPED_TRACE("mount attempt " + std::to_string(attempt));
    Engine e(cat(), opts);
    std::map<int64_t, ReplayedMeta> meta;
    Status st = e.Open(&meta);
    EXPECT_EQ(st.code(), EUCLEAN) << "a journal damaged in the middle was accepted: " << st.ToString();
    EXPECT_EQ(FileSize(first), size) << "the refused mount truncated the damaged segment";
  }
}

TEST_F(ReplayTest, WriteThenDeleteBeforeDestageIsAbsorbed) {
  ModelFile a = NewModelFile("a"), b = NewModelFile("b");
  {
    auto e = OpenEngine(false);
    ASSERT_NE(e, nullptr);
    Write(*e, a, 0, Random(8 * kBlockSize));
    Zero(*e, a, 0, 8 * kBlockSize);
    Write(*e, b, 0, Random(4 * kBlockSize));
    Truncate(*e, b, 0);
    Crash(e);
  }
  auto e = OpenEngine(true);
  ASSERT_NE(e, nullptr);
  ExpectReads(*e, a);
  ASSERT_NO_FATAL_FAILURE(StartAndDrain(*e));
  ExpectReads(*e, a);
  ExpectReads(*e, b);
  EXPECT_EQ(e->counters().writes_absorbed.load(), 12u);
  EXPECT_EQ(e->counters().blocks_stored.load(), 0u);
  EXPECT_EQ(e->Stats().writes_absorbed, 12u);
  e.reset();
  StoreUsage u = cat().Usage();
  EXPECT_EQ(u.used_slots, 0u) << "superseded writes reached the content store";
  EXPECT_EQ(u.high_water, 0u) << "a slot was allocated for a superseded write";
  EXPECT_EQ(CatalogFile(a.ref.file_id).mapped_blocks, 0u);
  EXPECT_EQ(CatalogFile(a.ref.file_id).size, 8u * kBlockSize);
  EXPECT_EQ(CatalogFile(b.ref.file_id).size, 0u);
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(ReplayTest, PartlySupersededWriteStoresOnlyLiveBlocks) {
  // Live engine; buckets are sealed only by Drain (no idle sealing), so the
  // delete is staged before the destagers can see the write.
  EngineOptions opts;
  opts.idle_seal_ms = 1u << 30;
  ModelFile a = NewModelFile("a");
  auto e = OpenEngine(true, opts);
  ASSERT_NE(e, nullptr);
  e->Start();
  Write(*e, a, 0, Random(8 * kBlockSize));
  Zero(*e, a, 2 * kBlockSize, 4 * kBlockSize);
  ExpectReads(*e, a);
  ASSERT_NO_FATAL_FAILURE(StartAndDrain(*e));
  ExpectReads(*e, a);
  EXPECT_EQ(e->counters().writes_absorbed.load(), 4u);
  EXPECT_EQ(e->counters().blocks_stored.load(), 4u);
  e.reset();
  EXPECT_EQ(cat().Usage().used_slots, 4u);
  EXPECT_EQ(CatalogFile(a.ref.file_id).mapped_blocks, 4u);
  ExpectCatalogInvariants(cat(), store());
}

// A reclaim replayed after the file's row was already dropped (crash after
// the catalog committed, before the segment was deleted): its records are
// skipped and nothing changes.
TEST_F(ReplayTest, ReclaimReplayedTwiceIsHarmless) {
  ModelFile a = NewModelFile("a"), keep = NewModelFile("keep");
  {
    auto e = OpenEngine(false);
    ASSERT_NE(e, nullptr);
    Write(*e, a, 0, Random(3 * kBlockSize));
    Write(*e, keep, 0, Random(2 * kBlockSize));
    CS_ASSERT_OK(e->Reclaim(a.ref, a.size));
    Crash(e);
  }
  const fs::path aside = tmp_->Sub("journal-copy");
  fs::create_directory(aside);
  std::vector<std::string> segs = JournalFiles();
  ASSERT_FALSE(segs.empty());
  for (const std::string& s : segs) fs::copy_file(Journal() + "/" + s, aside / s);
  {
    auto e = OpenEngine(true);
    ASSERT_NE(e, nullptr);
    ASSERT_NO_FATAL_FAILURE(StartAndDrain(*e));
  }
  CatalogDump first = DumpCatalog(cat());
  ASSERT_EQ(first.files.size(), 1u);
  ForgetRetirement();  // the crash came before retirement recorded the bucket
  for (const std::string& s : segs) fs::copy_file(aside / s, Journal() + "/" + s);
  auto e = OpenEngine(true);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(meta_.count(a.ref.file_id), 0u) << "records of a dropped file must be skipped";
  ExpectMeta(keep);
  ASSERT_NO_FATAL_FAILURE(StartAndDrain(*e));
  ExpectReads(*e, keep);
  EXPECT_EQ(e->Stats().error, "");
  e.reset();
  CatalogDump second = DumpCatalog(cat());
  EXPECT_EQ(Join(second.lat), Join(first.lat));
  EXPECT_EQ(Join(second.pat), Join(first.pat));
  EXPECT_EQ(Join(second.free_slot), Join(first.free_slot));
  EXPECT_EQ(Join(second.files), Join(first.files));
  ExpectCatalogInvariants(cat(), store());
}

TEST_F(ReplayTest, ReplayedReclaimDropsTheFile) {
  ModelFile a = NewModelFile("a"), keep = NewModelFile("keep");
  {
    auto e = OpenEngine(false);
    ASSERT_NE(e, nullptr);
    Write(*e, a, 0, Random(3 * kBlockSize));
    Write(*e, keep, 0, Random(2 * kBlockSize));
    CS_ASSERT_OK(e->Reclaim(a.ref, a.size));
    Crash(e);
  }
  auto e = OpenEngine(true);
  ASSERT_NE(e, nullptr);
  ASSERT_NO_FATAL_FAILURE(StartAndDrain(*e));
  ExpectReads(*e, keep);
  EXPECT_EQ(e->counters().writes_absorbed.load(), 3u);
  e.reset();
  auto files = cat().ListFiles();
  ASSERT_TRUE(files.ok());
  ASSERT_EQ(files->size(), 1u);
  EXPECT_EQ((*files)[0].file_id, keep.ref.file_id);
  EXPECT_EQ(cat().Usage().used_slots, 2u);
  ExpectCatalogInvariants(cat(), store());
}

}  // namespace
}  // namespace chainswap
