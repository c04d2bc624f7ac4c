// Journal segment files (destage/journal.h): append and read back, torn
// tails cut off (and later appends readable), an op of several records cut
// anywhere dropped whole, corruption in the middle
// refused with EUCLEAN, ListSegments ordering and filtering.
#include "destage/journal.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "catalog/block.h"
#include "test_util.h"

namespace chainswap {
namespace {

using test::TempDir;

std::shared_ptr<const uint8_t[]> RandomPayload(uint64_t blocks, std::mt19937_64& rng) {
  std::shared_ptr<uint8_t[]> p(new uint8_t[blocks * kBlockSize]);
  for (uint64_t i = 0; i < blocks * kBlockSize; i += 8) {
    uint64_t v = rng();
    std::memcpy(p.get() + i, &v, 8);
  }
  return p;
}

Record MakeWrite(uint64_t seq, uint64_t lba, uint64_t blocks, std::mt19937_64& rng) {
  Record r;
  r.seq = seq;
  r.kind = RecordKind::kWrite;
  r.file_id = 5;
  r.dedup_id = 2;
  r.lba = lba;
  r.count = blocks;
  r.file_size = (lba + blocks) * kBlockSize;
  r.mtime_ns = static_cast<int64_t>(seq) * 1000;
  r.data = RandomPayload(blocks, rng);
  return r;
}

Record MakeDelete(uint64_t seq, uint64_t lba, uint64_t count) {
  Record r;
  r.seq = seq;
  r.kind = RecordKind::kDelete;
  r.file_id = 5;
  r.dedup_id = 2;
  r.lba = lba;
  r.count = count;
  r.file_size = 100 * kBlockSize;
  r.mtime_ns = static_cast<int64_t>(seq) * 1000;
  return r;
}

Status AppendRecord(Segment& seg, const Record& r) {
  uint8_t h[kRecordHeaderSize];
  EncodeHeader(r, PayloadChecksum(r), h);
  const size_t payload = r.kind == RecordKind::kWrite ? r.count * kBlockSize : 0;
  return seg.Append(h, r.data.get(), payload).status();
}

uint64_t FileSize(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return static_cast<uint64_t>(st.st_size);
}

void AppendRaw(const std::string& path, const std::vector<uint8_t>& bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

void FlipByte(const std::string& path, uint64_t offset) {
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << path;
  uint8_t b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, static_cast<off_t>(offset)), 1);
  b ^= 0x40;
  ASSERT_EQ(::pwrite(fd, &b, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
}

void ExpectSameRecords(const std::vector<Record>& want, const std::vector<Record>& got) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE("record " + std::to_string(i));
    EXPECT_EQ(got[i].seq, want[i].seq);
    EXPECT_EQ(got[i].kind, want[i].kind);
    EXPECT_EQ(got[i].lba, want[i].lba);
    EXPECT_EQ(got[i].count, want[i].count);
    EXPECT_EQ(got[i].file_id, want[i].file_id);
    EXPECT_EQ(got[i].file_size, want[i].file_size);
    EXPECT_EQ(got[i].mtime_ns, want[i].mtime_ns);
    if (want[i].kind == RecordKind::kWrite) {
      ASSERT_NE(got[i].data, nullptr);
      EXPECT_EQ(std::memcmp(got[i].data.get(), want[i].data.get(), want[i].count * kBlockSize), 0);
    }
  }
}

uint64_t TotalSize(const std::vector<Record>& recs) {
  uint64_t s = 0;
  for (const Record& r : recs) s += r.EncodedSize();
  return s;
}

// Reads a segment through a fresh OpenExisting, as replay does.
Status ReadFresh(const std::string& dir, uint64_t id, std::vector<Record>* out, bool* torn,
                 std::shared_ptr<Segment>* seg_out = nullptr) {
  auto seg = Segment::OpenExisting(dir, id);
  if (!seg.ok()) return seg.status();
  Status st = (*seg)->ReadAll(out, torn);
  if (seg_out) *seg_out = *seg;
  return st;
}

class JournalSegmentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.Sub("journal");
    ASSERT_EQ(::mkdir(dir_.c_str(), 0700), 0);
  }

  // Creates segment `id` holding `recs`.
  std::shared_ptr<Segment> Make(uint64_t id, const std::vector<Record>& recs) {
    auto seg = Segment::Create(dir_, id);
    EXPECT_TRUE(seg.ok()) << seg.status().ToString();
    if (!seg.ok()) return nullptr;
    for (const Record& r : recs) {
      Status st = AppendRecord(**seg, r);
      EXPECT_TRUE(st.ok()) << st.ToString();
    }
    return *seg;
  }

  std::vector<Record> SomeRecords(uint64_t first_seq, int n) {
    std::vector<Record> recs;
    for (int i = 0; i < n; ++i) {
      uint64_t seq = first_seq + static_cast<uint64_t>(i);
      if (i % 3 == 2) recs.push_back(MakeDelete(seq, seq, 4));
      else recs.push_back(MakeWrite(seq, seq * 2, 1 + static_cast<uint64_t>(i % 3), rng_));
    }
    return recs;
  }

  TempDir tmp_;
  std::string dir_;
  std::mt19937_64 rng_{123};
};

TEST_F(JournalSegmentTest, CreateAppendReadAllRoundTrip) {
  std::vector<Record> recs = SomeRecords(1, 7);
  auto seg = Make(3, recs);
  ASSERT_NE(seg, nullptr);
  EXPECT_EQ(seg->id(), 3u);
  EXPECT_EQ(seg->bytes(), TotalSize(recs));
  EXPECT_EQ(FileSize(seg->path()), TotalSize(recs));
  EXPECT_NE(seg->path().find("bucket-00000000000000000003.log"), std::string::npos) << seg->path();
  CS_ASSERT_OK(seg->Sync());

  // Through the same object.
  std::vector<Record> got;
  bool torn = true;
  CS_ASSERT_OK(seg->ReadAll(&got, &torn));
  EXPECT_FALSE(torn);
  ExpectSameRecords(recs, got);

  // Through a fresh open, as on replay.
  got.clear();
  torn = true;
  std::shared_ptr<Segment> reopened;
  CS_ASSERT_OK(ReadFresh(dir_, 3, &got, &torn, &reopened));
  EXPECT_FALSE(torn);
  ExpectSameRecords(recs, got);
  EXPECT_EQ(reopened->bytes(), TotalSize(recs));

  // Appending to a reopened segment continues after the last record.
  Record more = MakeWrite(100, 9, 2, rng_);
  CS_ASSERT_OK(AppendRecord(*reopened, more));
  recs.push_back(more);
  got.clear();
  CS_ASSERT_OK(ReadFresh(dir_, 3, &got, &torn));
  EXPECT_FALSE(torn);
  ExpectSameRecords(recs, got);
}

TEST_F(JournalSegmentTest, EmptySegmentReadsNothing) {
  auto seg = Make(1, {});
  ASSERT_NE(seg, nullptr);
  std::vector<Record> got;
  bool torn = true;
  CS_ASSERT_OK(ReadFresh(dir_, 1, &got, &torn));
  EXPECT_TRUE(got.empty());
  EXPECT_FALSE(torn);
}

TEST_F(JournalSegmentTest, OpenMissingFails) {
  auto seg = Segment::OpenExisting(dir_, 77);
  ASSERT_FALSE(seg.ok());
  EXPECT_EQ(seg.status().code(), ENOENT);
}

TEST_F(JournalSegmentTest, GarbageTailIsIgnoredAndCutOff) {
  std::vector<Record> recs = SomeRecords(1, 4);
  auto seg = Make(1, recs);
  ASSERT_NE(seg, nullptr);
  const uint64_t good = TotalSize(recs);
  const std::string path = seg->path();
  seg.reset();

  // Garbage of several shapes: random bytes, a partial header, a full header
  // of a record whose payload never made it, zeros.
  std::vector<std::vector<uint8_t>> tails;
  {
    std::vector<uint8_t> g(300);
    for (auto& b : g) b = static_cast<uint8_t>(rng_());
    tails.push_back(g);
  }
  {
    std::vector<uint8_t> enc;
    EncodeRecord(MakeWrite(50, 1, 2, rng_), &enc);
    tails.push_back(std::vector<uint8_t>(enc.begin(), enc.begin() + 40));
    tails.push_back(std::vector<uint8_t>(enc.begin(), enc.begin() + kRecordHeaderSize + kBlockSize + 7));
  }
  tails.push_back(std::vector<uint8_t>(4096, 0));

  uint64_t next_seq = 10;
  for (size_t t = 0; t < tails.size(); ++t) {
    SCOPED_TRACE("tail " + std::to_string(t));
    AppendRaw(path, tails[t]);
    ASSERT_EQ(FileSize(path), TotalSize(recs) + tails[t].size());
    std::vector<Record> got;
    bool torn = false;
    std::shared_ptr<Segment> s;
    CS_ASSERT_OK(ReadFresh(dir_, 1, &got, &torn, &s));
    EXPECT_TRUE(torn);
    ExpectSameRecords(recs, got);
    EXPECT_EQ(FileSize(path), TotalSize(recs)) << "torn tail not cut off";
    EXPECT_EQ(s->bytes(), TotalSize(recs));

    // A later append lands right after the last good record and reads back.
    Record more = MakeWrite(next_seq++, 3, 1, rng_);
    CS_ASSERT_OK(AppendRecord(*s, more));
    recs.push_back(more);
    got.clear();
    CS_ASSERT_OK(ReadFresh(dir_, 1, &got, &torn));
    EXPECT_FALSE(torn);
    ExpectSameRecords(recs, got);
  }
  EXPECT_GT(TotalSize(recs), good);
}

TEST_F(JournalSegmentTest, TruncatedMidRecordIsCutOff) {
  std::vector<Record> recs = SomeRecords(1, 3);
  Record last = MakeWrite(4, 40, 3, rng_);
  std::vector<Record> all = recs;
  all.push_back(last);
  const uint64_t good = TotalSize(recs);
  // Cut points inside the last record: in its header, at the header's end,
  // inside the payload, one byte short of complete.
  for (uint64_t cut : {uint64_t{1}, uint64_t{40}, uint64_t{kRecordHeaderSize}, uint64_t{kRecordHeaderSize + 1},
                       uint64_t{kRecordHeaderSize + kBlockSize * 2 + 5}, last.EncodedSize() - 1}) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    auto seg = Make(2, all);
    ASSERT_NE(seg, nullptr);
    const std::string path = seg->path();
    seg.reset();
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(good + cut)), 0);
    std::vector<Record> got;
    bool torn = false;
    std::shared_ptr<Segment> s;
    CS_ASSERT_OK(ReadFresh(dir_, 2, &got, &torn, &s));
    EXPECT_TRUE(torn);
    ExpectSameRecords(recs, got);
    EXPECT_EQ(FileSize(path), good);
    EXPECT_EQ(s->bytes(), good);
    Record more = MakeDelete(9, 0, 1);
    CS_ASSERT_OK(AppendRecord(*s, more));
    got.clear();
    CS_ASSERT_OK(ReadFresh(dir_, 2, &got, &torn));
    EXPECT_FALSE(torn);
    std::vector<Record> want = recs;
    want.push_back(more);
    ExpectSameRecords(want, got);
  }
}

// One op of several records (a write whose zero runs are deletes, with
// edge blocks of its own) is written by one Append; a crash can cut it at
// any byte, between its records too. Replay must drop the whole op, never
// apply its first records alone, and cut the file back to where it began.
TEST_F(JournalSegmentTest, AnOpCutShortAnywhereIsDroppedWhole) {
  std::vector<Record> before = SomeRecords(1, 2);
  std::vector<Record> op = {MakeWrite(3, 50, 1, rng_), MakeDelete(4, 51, 6), MakeWrite(5, 57, 2, rng_),
                            MakeWrite(6, 59, 1, rng_)};
  for (size_t i = 0; i + 1 < op.size(); ++i) op[i].continues = true;
  const uint64_t good = TotalSize(before);
  const uint64_t op_bytes = TotalSize(op);
  std::vector<uint64_t> cuts;
  uint64_t boundary = 0;
  for (const Record& r : op) {
    cuts.insert(cuts.end(), {boundary + 1, boundary + kRecordHeaderSize, boundary + r.EncodedSize() - 1});
    boundary += r.EncodedSize();
    if (boundary < op_bytes) cuts.push_back(boundary);  // between two records of the op
  }
  for (uint64_t cut : cuts) {
    SCOPED_TRACE("cut " + std::to_string(cut) + " bytes into the op");
    auto seg = Segment::Create(dir_, 7);
    ASSERT_TRUE(seg.ok());
    for (const Record& r : before) CS_ASSERT_OK(AppendRecord(**seg, r));
    // The op as the journal writes it: one Append of all its parts.
    std::vector<uint8_t> headers(op.size() * kRecordHeaderSize);
    std::vector<iovec> parts;
    for (size_t i = 0; i < op.size(); ++i) {
      EncodeHeader(op[i], PayloadChecksum(op[i]), headers.data() + i * kRecordHeaderSize);
      parts.push_back({headers.data() + i * kRecordHeaderSize, kRecordHeaderSize});
      if (op[i].kind == RecordKind::kWrite)
        parts.push_back({const_cast<uint8_t*>(op[i].data.get()), op[i].count * kBlockSize});
    }
    auto at = (*seg)->Append(parts);
    ASSERT_TRUE(at.ok()) << at.status().ToString();
    EXPECT_EQ(*at, good);
    const std::string path = (*seg)->path();
    seg->reset();
    // Uncut, the whole op reads back, each record with its continues bit.
    std::vector<Record> got;
    bool torn = true;
    {
      auto whole = Segment::OpenExisting(dir_, 7);
      ASSERT_TRUE(whole.ok());
      CS_ASSERT_OK((*whole)->ReadAll(&got, &torn, /*cut_torn=*/false));
      EXPECT_FALSE(torn);
      std::vector<Record> want = before;
      want.insert(want.end(), op.begin(), op.end());
      ExpectSameRecords(want, got);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i].continues, want[i].continues) << "record " << i;
    }
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(good + cut)), 0);
    got.clear();
    std::shared_ptr<Segment> s;
    CS_ASSERT_OK(ReadFresh(dir_, 7, &got, &torn, &s));
    EXPECT_TRUE(torn);
    ExpectSameRecords(before, got);
    EXPECT_EQ(FileSize(path), good);
    EXPECT_EQ(s->bytes(), good);
    // Later appends follow the records before the op.
    Record more = MakeDelete(9, 0, 1);
    CS_ASSERT_OK(AppendRecord(*s, more));
    got.clear();
    CS_ASSERT_OK(ReadFresh(dir_, 7, &got, &torn));
    EXPECT_FALSE(torn);
    std::vector<Record> want = before;
    want.push_back(more);
    ExpectSameRecords(want, got);
    ASSERT_EQ(::unlink(path.c_str()), 0);
  }
}

TEST_F(JournalSegmentTest, TruncatedInsideFirstRecordLeavesEmptySegment) {
  std::vector<Record> recs = SomeRecords(1, 1);
  auto seg = Make(4, recs);
  ASSERT_NE(seg, nullptr);
  const std::string path = seg->path();
  seg.reset();
  ASSERT_EQ(::truncate(path.c_str(), 50), 0);
  std::vector<Record> got;
  bool torn = false;
  CS_ASSERT_OK(ReadFresh(dir_, 4, &got, &torn));
  EXPECT_TRUE(torn);
  EXPECT_TRUE(got.empty());
  EXPECT_EQ(FileSize(path), 0u);
}

TEST_F(JournalSegmentTest, CorruptRecordInTheMiddleIsEuclean) {
  std::vector<Record> recs = SomeRecords(1, 6);
  // Record 0 and 1 are writes (1 and 2 blocks), record 2 a delete.
  uint64_t rec2 = recs[0].EncodedSize() + recs[1].EncodedSize();
  ASSERT_EQ(recs[2].kind, RecordKind::kDelete);
  uint64_t rec1 = recs[0].EncodedSize();
  ASSERT_EQ(recs[1].kind, RecordKind::kWrite);
  struct Case {
    const char* what;
    uint64_t offset;
  } cases[] = {
      {"first record's magic", 0},
      {"a write's seq", rec1 + 8},
      {"a write's payload", rec1 + kRecordHeaderSize + 100},
      {"a write's last payload byte", rec1 + recs[1].EncodedSize() - 1},
      {"a delete's LBA", rec2 + 40},
      {"a delete's header checksum", rec2 + 80},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    auto seg = Make(7, recs);
    ASSERT_NE(seg, nullptr);
    const std::string path = seg->path();
    seg.reset();
    FlipByte(path, c.offset);
    std::vector<Record> got;
    bool torn = false;
    Status st = ReadFresh(dir_, 7, &got, &torn);
    EXPECT_EQ(st.code(), EUCLEAN) << st.ToString();
    EXPECT_EQ(FileSize(path), TotalSize(recs)) << "a segment refused as corrupt must not be truncated";
  }
}

TEST_F(JournalSegmentTest, CorruptLastRecordIsATornTail) {
  std::vector<Record> recs = SomeRecords(1, 4);
  auto seg = Make(8, recs);
  ASSERT_NE(seg, nullptr);
  const std::string path = seg->path();
  seg.reset();
  const uint64_t last_off = TotalSize(recs) - recs.back().EncodedSize();
  FlipByte(path, last_off + 30);
  std::vector<Record> got;
  bool torn = false;
  CS_ASSERT_OK(ReadFresh(dir_, 8, &got, &torn));
  EXPECT_TRUE(torn);
  ExpectSameRecords(std::vector<Record>(recs.begin(), recs.end() - 1), got);
  EXPECT_EQ(FileSize(path), last_off);
}

// A record whose header made it to disk but whose payload was cut short by
// a crash is a torn tail, whatever bytes its (partial) payload holds. Swap
// data is arbitrary guest data: a block may well contain bytes that encode a
// valid journal record (a guest that itself runs chainswap, or a hostile
// one). Those bytes lie inside the torn record's declared length, so they are
// not "intact records after a corrupt one".
TEST_F(JournalSegmentTest, TornTailWhosePayloadEmbedsARecordIsStillTorn) {
  std::vector<Record> recs = SomeRecords(1, 2);
  // Guest data: block 0 begins with an encoded, self-consistent delete record.
  Record tail = MakeWrite(10, 50, 2, rng_);
  std::vector<uint8_t> embedded;
  EncodeRecord(MakeDelete(11, 0, 8), &embedded);
  ASSERT_EQ(embedded.size(), kRecordHeaderSize);
  std::shared_ptr<uint8_t[]> data(new uint8_t[2 * kBlockSize]);
  std::memcpy(data.get(), tail.data.get(), 2 * kBlockSize);
  std::memcpy(data.get(), embedded.data(), embedded.size());
  tail.data = data;
  std::vector<Record> all = recs;
  all.push_back(tail);
  auto seg = Make(12, all);
  ASSERT_NE(seg, nullptr);
  const std::string path = seg->path();
  seg.reset();
  // The crash cut the tail record after its header and 1 KiB of payload.
  const uint64_t good = TotalSize(recs);
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(good + kRecordHeaderSize + 1024)), 0);
  std::vector<Record> got;
  bool torn = false;
  Status st = ReadFresh(dir_, 12, &got, &torn);
  ASSERT_TRUE(st.ok()) << "a torn tail must be ignored, not reported as corruption: " << st.ToString();
  EXPECT_TRUE(torn);
  ExpectSameRecords(recs, got);
  EXPECT_EQ(FileSize(path), good);
}

// fsck reads the journal without changing it: a read-only open and a read
// that reports, but does not cut, a torn tail.
TEST_F(JournalSegmentTest, ReadAllWithoutCuttingLeavesTheFile) {
  std::vector<Record> recs = SomeRecords(1, 3);
  auto seg = Make(13, recs);
  ASSERT_NE(seg, nullptr);
  const std::string path = seg->path();
  seg.reset();
  AppendRaw(path, std::vector<uint8_t>(500, 0x5A));
  const uint64_t size = FileSize(path);
  for (bool read_only : {true, false}) {
    SCOPED_TRACE(read_only ? "read-only" : "read-write");
    auto s = Segment::OpenExisting(dir_, 13, read_only);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    std::vector<Record> got;
    bool torn = false;
    CS_ASSERT_OK((*s)->ReadAll(&got, &torn, /*cut_torn=*/false));
    EXPECT_TRUE(torn);
    ExpectSameRecords(recs, got);
    EXPECT_EQ(FileSize(path), size) << "the torn tail was cut although cut_torn was false";
  }
  // Corruption in the middle is still reported without cutting.
  FlipByte(path, kRecordHeaderSize + 3);
  auto s = Segment::OpenExisting(dir_, 13, /*read_only=*/true);
  ASSERT_TRUE(s.ok());
  std::vector<Record> got;
  bool torn = false;
  EXPECT_EQ((*s)->ReadAll(&got, &torn, /*cut_torn=*/false).code(), EUCLEAN);
  EXPECT_EQ(FileSize(path), size);
}

TEST_F(JournalSegmentTest, ReadOnlySegmentRefusesAppends) {
  auto seg = Make(14, SomeRecords(1, 1));
  ASSERT_NE(seg, nullptr);
  const uint64_t size = FileSize(seg->path());
  seg.reset();
  auto s = Segment::OpenExisting(dir_, 14, /*read_only=*/true);
  ASSERT_TRUE(s.ok());
  Record more = MakeDelete(5, 0, 1);
  EXPECT_FALSE(AppendRecord(**s, more).ok());
  EXPECT_EQ(FileSize((*s)->path()), size);
}

// A corrupt payload in a record whose header is intact, followed by intact
// records, is still corruption in the middle (the next record sits exactly
// where the bad one's header says it ends).
TEST_F(JournalSegmentTest, CorruptPayloadWithIntactHeaderFollowedByRecordsIsEuclean) {
  std::vector<Record> recs = SomeRecords(1, 5);
  ASSERT_EQ(recs[1].kind, RecordKind::kWrite);
  auto seg = Make(15, recs);
  ASSERT_NE(seg, nullptr);
  const std::string path = seg->path();
  seg.reset();
  FlipByte(path, recs[0].EncodedSize() + kRecordHeaderSize + kBlockSize + 9);
  std::vector<Record> got;
  bool torn = false;
  EXPECT_EQ(ReadFresh(dir_, 15, &got, &torn).code(), EUCLEAN);
  EXPECT_EQ(FileSize(path), TotalSize(recs));
}

TEST_F(JournalSegmentTest, RemoveDeletesTheFile) {
  auto seg = Make(5, SomeRecords(1, 2));
  ASSERT_NE(seg, nullptr);
  const std::string path = seg->path();
  CS_ASSERT_OK(seg->Remove());
  struct stat st;
  EXPECT_NE(::stat(path.c_str(), &st), 0);
  CS_EXPECT_OK(seg->Remove());  // already gone: still fine
}

TEST_F(JournalSegmentTest, ListSegmentsSortsAndIgnoresForeignFiles) {
  for (uint64_t id : {10u, 2u, 300u, 11u, 1u}) ASSERT_NE(Make(id, {}), nullptr);
  for (const char* name : {"notes.txt", "bucket-abc.log", "bucket-00000000000000000005.tmp",
                           "bucket-00000000000000000006.log.bak", "bucket-00000000000000000007.logx",
                           "journal.log", ".bucket-00000000000000000008.log"}) {
    std::ofstream(dir_ + "/" + name) << "x";
  }
  ASSERT_EQ(::mkdir((dir_ + "/subdir").c_str(), 0700), 0);
  auto ids = ListSegments(dir_);
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  EXPECT_EQ(*ids, (std::vector<uint64_t>{1, 2, 10, 11, 300}));
}

TEST_F(JournalSegmentTest, ListSegmentsOfEmptyAndMissingDir) {
  auto ids = ListSegments(dir_);
  ASSERT_TRUE(ids.ok());
  EXPECT_TRUE(ids->empty());
  auto missing = ListSegments(dir_ + "/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), ENOENT);
}

TEST_F(JournalSegmentTest, ListSegmentsOrdersNumericallyAcrossDigitCounts) {
  // 20-digit zero-padded names sort as numbers; check large IDs too.
  const std::vector<uint64_t> want = {9, 99, 1000000, 18446744073709551615ull};
  for (uint64_t id : {want[3], want[1], want[0], want[2]}) ASSERT_NE(Make(id, {}), nullptr);
  auto ids = ListSegments(dir_);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, want);
}

}  // namespace
}  // namespace chainswap
