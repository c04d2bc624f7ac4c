// The staging index (destage/staging_index.h): supersede rules between
// writes and deletes, splitting and trimming of delete ranges, the live parts
// of a delete, retirement that only removes what a record still owns, and a
// seeded randomized comparison against a per-LBA model.
#include "destage/staging_index.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "catalog/block.h"
#include "destage/journal.h"
#include "test_util.h"

namespace chainswap {
namespace {

using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;

// One journal segment for the whole test program, in a temporary directory.
const std::shared_ptr<Segment>& TestSegment() {
  static test::TempDir* dir = new test::TempDir();
  static std::shared_ptr<Segment> seg = [] {
    auto s = Segment::Create(dir->path(), 1);
    if (!s.ok()) throw std::runtime_error(s.status().ToString());
    return *s;
  }();
  return seg;
}

// `r` written to the test segment: the index reads a write's bytes back
// from there.
Record Journaled(Record r, const std::shared_ptr<Segment>& seg = TestSegment()) {
  uint8_t h[kRecordHeaderSize];
  EncodeHeader(r, PayloadChecksum(r), h);
  auto at = seg->Append(h, r.data.get(), r.count * kBlockSize);
  EXPECT_TRUE(at.ok()) << at.status().ToString();
  r.segment = seg;
  r.payload_offset = (at.ok() ? *at : 0) + kRecordHeaderSize;
  return r;
}

// A write record of `count` blocks with `data` as its payload, journaled.
Record Write(uint64_t seq, int64_t file, uint64_t lba, uint64_t count, std::shared_ptr<uint8_t[]> data) {
  Record r;
  r.seq = seq;
  r.kind = RecordKind::kWrite;
  r.file_id = file;
  r.dedup_id = 1;
  r.lba = lba;
  r.count = count;
  r.data = std::move(data);
  return Journaled(std::move(r));
}

// Every block of a write record is tagged with (seq, index) in its first 16
// bytes, so a hit can be traced back to the record and block it came from.
Record W(uint64_t seq, int64_t file, uint64_t lba, uint64_t count) {
  std::shared_ptr<uint8_t[]> d(new uint8_t[count * kBlockSize]);
  for (uint64_t i = 0; i < count; ++i) {
    uint8_t* b = d.get() + i * kBlockSize;
    std::memset(b, static_cast<int>(0x11 + seq), kBlockSize);
    std::memcpy(b, &seq, 8);
    std::memcpy(b + 8, &i, 8);
  }
  return Write(seq, file, lba, count, std::move(d));
}

Record D(uint64_t seq, int64_t file, uint64_t lba, uint64_t count, bool drop = false) {
  Record r;
  r.seq = seq;
  r.kind = RecordKind::kDelete;
  r.drop_file = drop;
  r.file_id = file;
  r.dedup_id = 1;
  r.lba = lba;
  r.count = count;
  return r;
}

// Expected view of one LBA: '.' not staged, 'D' delete, or a write hit from
// the record with `seq`, block `idx`.
struct Want {
  char kind = '.';
  uint64_t seq = 0, idx = 0;
};
Want None() { return {}; }
Want Del() { return {'D', 0, 0}; }
Want Wr(uint64_t seq, uint64_t idx) { return {'W', seq, idx}; }

// Reads the (seq, index) tag of a write hit's block back from its segment.
bool ReadTag(const StagingIndex::Hit& h, uint64_t* seq, uint64_t* idx) {
  uint8_t block[kBlockSize];
  if (!h.segment || !h.segment->ReadAt(h.offset, kBlockSize, block).ok()) return false;
  std::memcpy(seq, block, 8);
  std::memcpy(idx, block + 8, 8);
  return true;
}

std::string Describe(const std::optional<StagingIndex::Hit>& h) {
  if (!h) return ".";
  if (!h->is_write) return "D";
  if (h->zero) return "Z";
  uint64_t seq, idx;
  if (!ReadTag(*h, &seq, &idx)) return "W-unreadable";
  return "W" + std::to_string(seq) + "/" + std::to_string(idx);
}
std::string Describe(const Want& w) {
  if (w.kind == '.') return ".";
  if (w.kind == 'D') return "D";
  return "W" + std::to_string(w.seq) + "/" + std::to_string(w.idx);
}

// Lookup over [lba, lba + want.size()) shows exactly `want`.
void ExpectLookup(const StagingIndex& ix, int64_t file, uint64_t lba, const std::vector<Want>& want) {
  std::vector<std::optional<StagingIndex::Hit>> out(3);  // must be resized by Lookup
  ix.Lookup(file, lba, want.size(), &out);
  ASSERT_EQ(out.size(), want.size());
  std::string got_s, want_s;
  for (size_t i = 0; i < want.size(); ++i) {
    got_s += Describe(out[i]) + " ";
    want_s += Describe(want[i]) + " ";
  }
  EXPECT_EQ(got_s, want_s) << "file " << file << " LBAs from " << lba;
}

std::vector<Want> Repeat(size_t n, Want w) { return std::vector<Want>(n, w); }
std::vector<Want> Cat(std::initializer_list<std::vector<Want>> parts) {
  std::vector<Want> v;
  for (auto& p : parts) v.insert(v.end(), p.begin(), p.end());
  return v;
}
std::vector<Want> Writes(uint64_t seq, uint64_t first_idx, uint64_t n) {
  std::vector<Want> v;
  for (uint64_t i = 0; i < n; ++i) v.push_back(Wr(seq, first_idx + i));
  return v;
}

TEST(StagingIndexTest, EmptyIndex) {
  StagingIndex ix;
  ExpectLookup(ix, 1, 0, Repeat(4, None()));
  EXPECT_FALSE(ix.IsLatestWrite(1, 0, 1));
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{0}, uint64_t{0}));
  EXPECT_EQ(ix.LiveDeleteRanges(1, 5, 9, 1), (Ranges{{5, 9}}));
  ix.Retire(W(1, 1, 0, 1));  // retiring something unknown is harmless
  ix.Retire(D(2, 1, 0, 10));
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{0}, uint64_t{0}));
}

// A tracked write record learns which of its blocks newer ops superseded
// (a newer write or a delete), without the index lock; it agrees with
// IsLatestWrite, including across more than 64 blocks.
TEST(StagingIndexTest, SupersessionBitsFollowNewerOps) {
  StagingIndex ix;
  Record w1 = W(1, 7, 0, 70);
  Record w2 = W(2, 7, 2, 1);
  Record d3 = D(3, 7, 65, 3);
  Record w4 = W(4, 7, 66, 1);
  for (Record* r : {&w1, &w2, &w4}) StagingIndex::Track(r);
  ix.Add(w1);
  for (uint64_t i = 0; i < 70; ++i) EXPECT_FALSE(StagingIndex::IsSuperseded(w1, i)) << i;
  ix.Add(w2);
  ix.Add(d3);
  ix.Add(w4);
  for (uint64_t i = 0; i < 70; ++i) {
    const bool newer = i == 2 || (i >= 65 && i < 68);
    EXPECT_EQ(StagingIndex::IsSuperseded(w1, i), newer) << i;
    EXPECT_EQ(ix.IsLatestWrite(7, i, 1), !newer) << i;
  }
  EXPECT_FALSE(StagingIndex::IsSuperseded(w2, 0));
  EXPECT_FALSE(StagingIndex::IsSuperseded(w4, 0));
  // Retiring them all, in order, empties the index.
  std::vector<Record> bucket = {w1, w2, d3, w4};
  ix.RetireAll(bucket);
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{0}, uint64_t{0}));
  ExpectLookup(ix, 7, 0, Repeat(70, None()));
}

// A fully superseded record has no entry of its own: retiring it (without
// taking the lock) leaves the newer write in place.
TEST(StagingIndexTest, RetiringAFullySupersededRecordKeepsTheNewerWrite) {
  StagingIndex ix;
  Record w1 = W(1, 3, 5, 2);
  Record w2 = W(2, 3, 5, 2);
  StagingIndex::Track(&w1);
  StagingIndex::Track(&w2);
  ix.Add(w1);
  ix.Add(w2);
  std::vector<Record> older = {w1};
  ix.RetireAll(older);
  EXPECT_TRUE(ix.IsLatestWrite(3, 5, 2));
  EXPECT_TRUE(ix.IsLatestWrite(3, 6, 2));
  ExpectLookup(ix, 3, 5, Writes(2, 0, 2));
  ix.Retire(w2);
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{0}, uint64_t{0}));
}

TEST(StagingIndexTest, WriteThenWriteLatestWins) {
  StagingIndex ix;
  ix.Add(W(1, 7, 10, 4));  // LBAs 10..13
  ix.Add(W(2, 7, 12, 4));  // LBAs 12..15
  ExpectLookup(ix, 7, 8, Cat({Repeat(2, None()), Writes(1, 0, 2), Writes(2, 0, 4), Repeat(2, None())}));
  EXPECT_TRUE(ix.IsLatestWrite(7, 10, 1));
  EXPECT_TRUE(ix.IsLatestWrite(7, 11, 1));
  EXPECT_FALSE(ix.IsLatestWrite(7, 12, 1));
  EXPECT_FALSE(ix.IsLatestWrite(7, 13, 1));
  EXPECT_TRUE(ix.IsLatestWrite(7, 12, 2));
  EXPECT_TRUE(ix.IsLatestWrite(7, 15, 2));
  EXPECT_FALSE(ix.IsLatestWrite(7, 16, 2));
  EXPECT_FALSE(ix.IsLatestWrite(7, 10, 2));
  EXPECT_FALSE(ix.IsLatestWrite(8, 12, 2)) << "another file";
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{6}, uint64_t{0}));
  // Same LBA written three times: only the newest counts.
  ix.Add(W(3, 7, 12, 1));
  EXPECT_FALSE(ix.IsLatestWrite(7, 12, 2));
  EXPECT_TRUE(ix.IsLatestWrite(7, 12, 3));
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{6}, uint64_t{0}));
  ExpectLookup(ix, 7, 12, Cat({Writes(3, 0, 1), Writes(2, 1, 3)}));
}

TEST(StagingIndexTest, WriteThenDeleteRange) {
  StagingIndex ix;
  ix.Add(W(1, 3, 0, 8));
  ix.Add(D(2, 3, 2, 3));  // LBAs 2..4
  ExpectLookup(ix, 3, 0, Cat({Writes(1, 0, 2), Repeat(3, Del()), Writes(1, 5, 3), Repeat(1, None())}));
  for (uint64_t l : {2u, 3u, 4u}) EXPECT_FALSE(ix.IsLatestWrite(3, l, 1)) << l;
  for (uint64_t l : {0u, 1u, 5u, 7u}) EXPECT_TRUE(ix.IsLatestWrite(3, l, 1)) << l;
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{5}, uint64_t{1}));
  EXPECT_EQ(ix.LiveDeleteRanges(3, 2, 5, 2), (Ranges{{2, 5}}));
}

TEST(StagingIndexTest, DeleteThenWriteShadowsOnlyItsLba) {
  StagingIndex ix;
  ix.Add(D(1, 3, 0, 10));
  ix.Add(W(2, 3, 4, 1));
  ExpectLookup(ix, 3, 0, Cat({Repeat(4, Del()), Writes(2, 0, 1), Repeat(5, Del()), Repeat(1, None())}));
  EXPECT_TRUE(ix.IsLatestWrite(3, 4, 2));
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{1}, uint64_t{1}));
  EXPECT_EQ(ix.LiveDeleteRanges(3, 0, 10, 1), (Ranges{{0, 4}, {5, 10}}));
  // A delete over the write again hides it.
  ix.Add(D(3, 3, 4, 1));
  ExpectLookup(ix, 3, 0, Cat({Repeat(10, Del()), Repeat(1, None())}));
  EXPECT_FALSE(ix.IsLatestWrite(3, 4, 2));
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{0}, uint64_t{3}));  // [0,4) [4,5) [5,10)
}

TEST(StagingIndexTest, OverlappingDeletesSplitAndTrim) {
  StagingIndex ix;
  const int64_t f = 9;
  ix.Add(D(1, f, 0, 100));  // [0,100)
  ix.Add(D(2, f, 20, 10));  // [20,30) splits it
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{0}, uint64_t{3}));
  ExpectLookup(ix, f, 0, Cat({Repeat(100, Del()), Repeat(2, None())}));
  ix.Add(D(3, f, 10, 15));  // [10,25): trims D1's left piece and D2
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{0}, uint64_t{4}));  // [0,10)1 [10,25)3 [25,30)2 [30,100)1
  ExpectLookup(ix, f, 0, Cat({Repeat(100, Del()), Repeat(1, None())}));

  // Retirement shows who owns which piece.
  ix.Retire(D(2, f, 20, 10));
  ExpectLookup(ix, f, 0, Cat({Repeat(25, Del()), Repeat(5, None()), Repeat(70, Del()), Repeat(1, None())}));
  ix.Retire(D(1, f, 0, 100));
  ExpectLookup(ix, f, 0, Cat({Repeat(10, None()), Repeat(15, Del()), Repeat(76, None())}));
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{0}, uint64_t{1}));
  ix.Retire(D(3, f, 10, 15));
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{0}, uint64_t{0}));
  ExpectLookup(ix, f, 0, Repeat(101, None()));
}

TEST(StagingIndexTest, DeleteCoveringOlderDeletesReplacesThem) {
  StagingIndex ix;
  const int64_t f = 4;
  ix.Add(D(1, f, 5, 5));    // [5,10)
  ix.Add(D(2, f, 12, 3));   // [12,15)
  ix.Add(D(3, f, 0, 20));   // [0,20) covers both
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{0}, uint64_t{1}));
  ix.Retire(D(1, f, 5, 5));
  ix.Retire(D(2, f, 12, 3));
  ExpectLookup(ix, f, 0, Cat({Repeat(20, Del()), Repeat(1, None())}));
  // Exactly the same range again: the newer one owns it.
  ix.Add(D(4, f, 0, 20));
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{0}, uint64_t{1}));
  ix.Retire(D(3, f, 0, 20));
  ExpectLookup(ix, f, 0, Cat({Repeat(20, Del()), Repeat(1, None())}));
  ix.Retire(D(4, f, 0, 20));
  ExpectLookup(ix, f, 0, Repeat(21, None()));
}

TEST(StagingIndexTest, AdjacentAndPartialOverlaps) {
  StagingIndex ix;
  const int64_t f = 4;
  ix.Add(D(1, f, 0, 10));   // [0,10)
  ix.Add(D(2, f, 10, 10));  // [10,20): adjacent, no trim
  ix.Add(D(3, f, 15, 10));  // [15,25): trims D2's right part
  ix.Add(D(4, f, 25, 5));   // [25,30)
  ix.Add(D(5, f, 8, 4));    // [8,12): trims D1's tail and D2's head
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{0}, uint64_t{5}));  // [0,8)1 [8,12)5 [12,15)2 [15,25)3 [25,30)4
  ix.Retire(D(2, f, 10, 10));
  ExpectLookup(ix, f, 0, Cat({Repeat(12, Del()), Repeat(3, None()), Repeat(15, Del()), Repeat(1, None())}));
  ix.Retire(D(5, f, 8, 4));
  ExpectLookup(ix, f, 0, Cat({Repeat(8, Del()), Repeat(7, None()), Repeat(15, Del())}));
  ix.Retire(D(1, f, 0, 10));
  ix.Retire(D(3, f, 15, 10));
  ExpectLookup(ix, f, 0, Cat({Repeat(25, None()), Repeat(5, Del()), Repeat(1, None())}));
}

TEST(StagingIndexTest, HugeDeleteRange) {
  // Truncate and unlink stage a delete to the largest LBA.
  StagingIndex ix;
  const uint64_t kMaxLba = static_cast<uint64_t>(INT64_MAX) >> kBlockShift;
  ix.Add(W(1, 2, 0, 3));
  ix.Add(D(2, 2, 1, kMaxLba));
  ix.Add(W(3, 2, 1000000, 1));
  ExpectLookup(ix, 2, 0, Cat({Writes(1, 0, 1), Repeat(4, Del())}));
  ExpectLookup(ix, 2, 999999, Cat({Repeat(1, Del()), Writes(3, 0, 1), Repeat(1, Del())}));
  ExpectLookup(ix, 2, kMaxLba - 1, Repeat(2, Del()));
  EXPECT_EQ(ix.LiveDeleteRanges(2, 1, kMaxLba + 1, 2), (Ranges{{1, 1000000}, {1000001, kMaxLba + 1}}));
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{2}, uint64_t{1}));
}

TEST(StagingIndexTest, LiveDeleteRangesExcludeNewerWrites) {
  StagingIndex ix;
  const int64_t f = 6;
  ix.Add(W(1, f, 0, 20));   // superseded by the delete below
  ix.Add(D(2, f, 0, 20));
  ix.Add(W(3, f, 3, 1));
  ix.Add(W(4, f, 7, 2));
  ix.Add(W(5, f, 19, 1));
  ix.Add(W(6, f, 25, 1));   // outside the delete
  EXPECT_EQ(ix.LiveDeleteRanges(f, 0, 20, 2), (Ranges{{0, 3}, {4, 7}, {9, 19}}));
  // Sub-ranges.
  EXPECT_EQ(ix.LiveDeleteRanges(f, 5, 10, 2), (Ranges{{5, 7}, {9, 10}}));
  EXPECT_EQ(ix.LiveDeleteRanges(f, 7, 9, 2), Ranges{});
  EXPECT_EQ(ix.LiveDeleteRanges(f, 3, 4, 2), Ranges{});
  // A newer write at the very first LBA.
  ix.Add(W(7, f, 0, 1));
  EXPECT_EQ(ix.LiveDeleteRanges(f, 0, 20, 2), (Ranges{{1, 3}, {4, 7}, {9, 19}}));
  // Other files are unaffected.
  EXPECT_EQ(ix.LiveDeleteRanges(f + 1, 0, 20, 2), (Ranges{{0, 20}}));
  // Writes still in the index that are older than a later delete are gone.
  ix.Add(D(8, f, 0, 30));
  EXPECT_EQ(ix.LiveDeleteRanges(f, 0, 30, 8), (Ranges{{0, 30}}));
  ix.Add(W(9, f, 29, 1));
  EXPECT_EQ(ix.LiveDeleteRanges(f, 0, 30, 8), (Ranges{{0, 29}}));
}

TEST(StagingIndexTest, RetireRemovesOnlyWhatTheRecordStillOwns) {
  StagingIndex ix;
  const int64_t f = 1;
  Record w1 = W(1, f, 0, 4);  // 0..3
  Record w2 = W(2, f, 2, 4);  // 2..5
  ix.Add(w1);
  ix.Add(w2);
  ix.Retire(w1);
  ExpectLookup(ix, f, 0, Cat({Repeat(2, None()), Writes(2, 0, 4), Repeat(1, None())}));
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{4}, uint64_t{0}));
  EXPECT_TRUE(ix.IsLatestWrite(f, 2, 2));
  ix.Retire(w1);  // twice: nothing more happens
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{4}, uint64_t{0}));
  ix.Retire(w2);
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{0}, uint64_t{0}));
  ExpectLookup(ix, f, 0, Repeat(7, None()));

  // An old delete shadowed by a newer write: retiring the delete keeps the write.
  Record d3 = D(3, f, 0, 10);
  Record w4 = W(4, f, 3, 1);
  ix.Add(d3);
  ix.Add(w4);
  ix.Retire(d3);
  ExpectLookup(ix, f, 0, Cat({Repeat(3, None()), Writes(4, 0, 1), Repeat(7, None())}));
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{1}, uint64_t{0}));

  // An old write erased by a newer delete: retiring the write keeps the delete.
  Record w5 = W(5, f, 20, 4);
  Record d6 = D(6, f, 20, 2);
  ix.Add(w5);
  ix.Add(d6);
  ix.Retire(w5);
  ExpectLookup(ix, f, 20, Cat({Repeat(2, Del()), Repeat(2, None())}));
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{1}, uint64_t{1}));

  // A write retired while a newer write of the same LBA exists keeps the newer.
  Record w7 = W(7, f, 3, 1);
  ix.Add(w7);
  ix.Retire(w4);
  EXPECT_TRUE(ix.IsLatestWrite(f, 3, 7));
  ExpectLookup(ix, f, 3, Writes(7, 0, 1));
}

TEST(StagingIndexTest, SizeOnlyDeleteStagesNothing) {
  StagingIndex ix;
  ix.Add(W(1, 1, 0, 2));
  ix.Add(D(2, 1, 0, 0));  // truncate that grows: count 0
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{2}, uint64_t{0}));
  ExpectLookup(ix, 1, 0, Cat({Writes(1, 0, 2), Repeat(1, None())}));
  EXPECT_TRUE(ix.IsLatestWrite(1, 0, 1));
  ix.Retire(D(2, 1, 0, 0));
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{2}, uint64_t{0}));
}

TEST(StagingIndexTest, SizeCountsPerFile) {
  StagingIndex ix;
  ix.Add(W(1, 1, 0, 5));
  ix.Add(W(2, 2, 0, 3));
  ix.Add(D(3, 1, 100, 10));
  ix.Add(D(4, 2, 1, 1));  // erases one of file 2's writes
  ix.Add(D(5, 3, 0, 1));
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{7}, uint64_t{3}));
  ExpectLookup(ix, 2, 0, Cat({Writes(2, 0, 1), Repeat(1, Del()), Writes(2, 2, 1)}));
  ExpectLookup(ix, 1, 0, Writes(1, 0, 5));
}

TEST(StagingIndexTest, StagedWritesPerFile) {
  StagingIndex ix;
  EXPECT_EQ(ix.StagedWrites(1), 0u);
  ix.Add(W(1, 1, 0, 5));
  ix.Add(W(2, 2, 0, 3));
  ix.Add(W(3, 1, 3, 4));  // overlaps 3, 4: 7 distinct LBAs
  EXPECT_EQ(ix.StagedWrites(1), 7u);
  EXPECT_EQ(ix.StagedWrites(2), 3u);
  ix.Add(D(4, 1, 0, 2));
  EXPECT_EQ(ix.StagedWrites(1), 5u);
  ix.Retire(W(3, 1, 3, 4));
  EXPECT_EQ(ix.StagedWrites(1), 1u);  // LBA 2 of record 1
  EXPECT_EQ(ix.StagedWrites(3), 0u);
  EXPECT_EQ(ix.Size().first, 4u);
}

// A write record whose blocks are all zeros (a hole once destaged).
Record Z(uint64_t seq, int64_t file, uint64_t lba, uint64_t count) {
  return Write(seq, file, lba, count, std::shared_ptr<uint8_t[]>(new uint8_t[count * kBlockSize]()));
}

TEST(StagingIndexTest, FootprintMergesCoveredLbasAndCountsDataBlocks) {
  StagingIndex ix;
  auto fp = ix.StagedFootprint(1, 16);
  ASSERT_TRUE(fp);
  EXPECT_TRUE(fp->covered.empty());
  EXPECT_EQ(fp->data_blocks, 0u);

  ix.Add(W(1, 1, 0, 3));    // data at 0..2
  ix.Add(Z(2, 1, 3, 1));    // zeros at 3: adjacent, merges
  ix.Add(D(3, 1, 10, 5));   // delete 10..14
  ix.Add(W(4, 1, 12, 1));   // data inside the delete
  ix.Add(W(5, 1, 20, 1));   // data far away
  ix.Add(W(6, 2, 0, 8));    // another file: not counted
  fp = ix.StagedFootprint(1, 16);
  ASSERT_TRUE(fp);
  EXPECT_EQ(fp->covered, (Ranges{{0, 4}, {10, 15}, {20, 21}}));
  EXPECT_EQ(fp->data_blocks, 5u);  // 0, 1, 2, 12, 20

  ix.Add(Z(7, 1, 0, 1));  // data at 0 overwritten by zeros
  EXPECT_EQ(ix.StagedFootprint(1, 16)->data_blocks, 4u);
  ix.Add(W(8, 1, 3, 1));  // zeros at 3 overwritten by data
  EXPECT_EQ(ix.StagedFootprint(1, 16)->data_blocks, 5u);
  ix.Add(D(9, 1, 0, 2));  // deletes the zero write at 0 and the data at 1
  EXPECT_EQ(ix.StagedFootprint(1, 16)->data_blocks, 4u);
  ix.Retire(Z(2, 1, 3, 1));  // no longer its own entry: nothing changes
  EXPECT_EQ(ix.StagedFootprint(1, 16)->data_blocks, 4u);
  ix.Retire(W(8, 1, 3, 1));
  fp = ix.StagedFootprint(1, 16);
  ASSERT_TRUE(fp);
  EXPECT_EQ(fp->data_blocks, 3u);  // 2, 12, 20
  EXPECT_EQ(fp->covered, (Ranges{{0, 3}, {10, 15}, {20, 21}}));

  EXPECT_FALSE(ix.StagedFootprint(1, 1)) << "more ranges than allowed";
  ASSERT_TRUE(ix.StagedFootprint(1, 3));
}

// A reader that found a staged block can still read it after the bucket
// retired and its segment file was deleted: the hit holds the segment open.
TEST(StagingIndexTest, HitOutlivesRetirementAndSegmentRemoval) {
  test::TempDir dir;
  auto seg = Segment::Create(dir.path(), 7);
  ASSERT_TRUE(seg.ok()) << seg.status().ToString();
  Record w = Journaled(W(1, 1, 0, 2), *seg);
  w.data.reset();  // as the journal does: the payload is in the segment only
  StagingIndex ix;
  ix.Add(w, std::vector<uint8_t>{0, 0});
  std::vector<std::optional<StagingIndex::Hit>> out;
  ix.Lookup(1, 1, 1, &out);
  ASSERT_TRUE(out[0] && out[0]->is_write);
  ix.Retire(w);
  CS_ASSERT_OK((*seg)->Remove());
  w.segment.reset();
  seg->reset();  // the index, the record and the bucket let go: only the hit holds it
  uint64_t seq = 0, idx = 0;
  ASSERT_TRUE(ReadTag(*out[0], &seq, &idx));
  EXPECT_EQ(seq, 1u);
  EXPECT_EQ(idx, 1u);
}

// Randomized comparison against a model that keeps, per (file, LBA), the
// newest staged write and, separately, the owner of the delete layer.
TEST(StagingIndexTest, RandomizedAgainstModel) {
  constexpr uint64_t kLbas = 256;
  constexpr int kOps = 5000;
  const int64_t files[2] = {11, 22};
  std::mt19937_64 rng(20240601);

  struct WSlot {
    uint64_t seq = 0, idx = 0;  // seq 0: none
  };
  struct FileModel {
    std::vector<WSlot> w = std::vector<WSlot>(kLbas);
    std::vector<uint64_t> d = std::vector<uint64_t>(kLbas, 0);  // owning delete seq, 0: none
  };
  std::map<int64_t, FileModel> model;
  for (int64_t f : files) model[f];
  std::map<uint64_t, Record> live;  // unretired records by seq
  uint64_t seq = 0;

  auto owns_something = [&](const Record& r) {
    const FileModel& m = model[r.file_id];
    for (uint64_t l = r.lba; l < r.lba + r.count; ++l) {
      if (r.kind == RecordKind::kWrite && m.w[l].seq == r.seq) return true;
      if (r.kind == RecordKind::kDelete && m.d[l] == r.seq) return true;
    }
    return false;
  };
  auto model_retire = [&](const Record& r) {
    FileModel& m = model[r.file_id];
    for (uint64_t l = r.lba; l < r.lba + r.count; ++l) {
      if (r.kind == RecordKind::kWrite && m.w[l].seq == r.seq) m.w[l] = WSlot{};
      if (r.kind == RecordKind::kDelete && m.d[l] == r.seq) m.d[l] = 0;
    }
  };

  StagingIndex ix;
  auto verify = [&](int op) {
    uint64_t writes = 0, ranges = 0;
    for (int64_t f : files) {
      const FileModel& m = model[f];
      for (int pass = 0; pass < 2; ++pass) {
        uint64_t a = 0, n = kLbas + 8;  // past the end too: nothing staged there
        if (pass == 1) {
          a = rng() % kLbas;
          n = 1 + rng() % (kLbas - a);
        }
        std::vector<std::optional<StagingIndex::Hit>> hits;
        ix.Lookup(f, a, n, &hits);
        ASSERT_EQ(hits.size(), n);
        for (uint64_t i = 0; i < n; ++i) {
          const uint64_t l = a + i;
          const auto& h = hits[i];
          if (l >= kLbas) {
            ASSERT_FALSE(h.has_value()) << "op " << op << " file " << f << " LBA " << l;
            continue;
          }
          if (m.w[l].seq) {
            ASSERT_TRUE(h && h->is_write) << "op " << op << " file " << f << " LBA " << l << " want write seq "
                                          << m.w[l].seq << " got " << Describe(h);
            uint64_t s = 0, idx = 0;
            ASSERT_TRUE(ReadTag(*h, &s, &idx)) << "op " << op << " file " << f << " LBA " << l;
            ASSERT_EQ(s, m.w[l].seq) << "op " << op << " file " << f << " LBA " << l;
            ASSERT_EQ(idx, m.w[l].idx) << "op " << op << " file " << f << " LBA " << l;
            ASSERT_EQ(h->offset, live.at(s).payload_offset + idx * kBlockSize);
          } else if (m.d[l]) {
            ASSERT_TRUE(h && !h->is_write) << "op " << op << " file " << f << " LBA " << l << " want delete, got "
                                           << Describe(h);
          } else {
            ASSERT_FALSE(h.has_value()) << "op " << op << " file " << f << " LBA " << l << " want nothing, got "
                                        << Describe(h);
          }
        }
      }
      uint64_t file_writes = 0;
      for (uint64_t l = 0; l < kLbas; ++l) {
        if (m.w[l].seq) ++file_writes;
        if (m.d[l] && (l == 0 || m.d[l - 1] != m.d[l])) ++ranges;
      }
      ASSERT_EQ(ix.StagedWrites(f), file_writes) << "op " << op << " file " << f;
      writes += file_writes;
    }
    ASSERT_EQ(ix.Size(), std::make_pair(writes, ranges)) << "op " << op;
  };

  auto verify_records = [&](int op) {
    for (auto& [s, r] : live) {
      const FileModel& m = model[r.file_id];
      if (r.kind == RecordKind::kWrite) {
        for (uint64_t l = r.lba; l < r.lba + r.count; ++l)
          ASSERT_EQ(ix.IsLatestWrite(r.file_id, l, s), m.w[l].seq == s) << "op " << op << " seq " << s << " LBA " << l;
      } else {
        Ranges want;
        for (uint64_t l = r.lba; l < r.lba + r.count; ++l) {
          const bool live_lba = !(m.w[l].seq > s);
          if (!live_lba) continue;
          if (!want.empty() && want.back().second == l) want.back().second = l + 1;
          else want.emplace_back(l, l + 1);
        }
        ASSERT_EQ(ix.LiveDeleteRanges(r.file_id, r.lba, r.lba + r.count, s), want) << "op " << op << " seq " << s;
      }
    }
  };

  uint64_t retired_fully_superseded = 0, retired_oldest = 0;
  for (int op = 0; op < kOps; ++op) {
    const int64_t f = files[rng() % 2];
    const uint32_t dice = rng() % 100;
    if (dice < 45) {
      uint64_t lba = rng() % kLbas;
      uint64_t count = 1 + rng() % std::min<uint64_t>(8, kLbas - lba);
      Record r = W(++seq, f, lba, count);
      ix.Add(r);
      for (uint64_t i = 0; i < count; ++i) model[f].w[lba + i] = WSlot{seq, i};
      live.emplace(seq, std::move(r));
    } else if (dice < 75) {
      uint64_t lba = rng() % kLbas;
      uint64_t count = (rng() % 8 == 0) ? 0 : 1 + rng() % std::min<uint64_t>(64, kLbas - lba);
      Record r = D(++seq, f, lba, count);
      ix.Add(r);
      for (uint64_t l = lba; l < lba + count; ++l) {
        model[f].w[l] = WSlot{};
        model[f].d[l] = seq;
      }
      live.emplace(seq, std::move(r));
    } else if (dice < 90) {
      // Retire a random record, but only one the model says is no longer the
      // latest op anywhere: the index must not change at all.
      if (live.empty()) continue;
      auto it = live.begin();
      std::advance(it, static_cast<long>(rng() % live.size()));
      if (owns_something(it->second)) continue;
      ix.Retire(it->second);
      live.erase(it);
      ++retired_fully_superseded;
    } else {
      // Retire the oldest record, as bucket retirement does: what it still
      // owns leaves the index (the catalog has it now).
      if (live.empty()) continue;
      auto it = live.begin();
      ix.Retire(it->second);
      model_retire(it->second);
      live.erase(it);
      ++retired_oldest;
    }
    ASSERT_NO_FATAL_FAILURE(verify(op));
    if (op % 50 == 0) {
      ASSERT_NO_FATAL_FAILURE(verify_records(op));
    }
  }
  ASSERT_NO_FATAL_FAILURE(verify_records(kOps));
  // The test exercised both kinds of retirement.
  EXPECT_GT(retired_fully_superseded, 100u);
  EXPECT_GT(retired_oldest, 100u);
  // Retiring everything empties the index.
  for (auto& [s, r] : live) {
    ix.Retire(r);
  }
  EXPECT_EQ(ix.Size(), std::make_pair(uint64_t{0}, uint64_t{0}));
  for (int64_t f : files) ExpectLookup(ix, f, 0, Repeat(kLbas, None()));
}

}  // namespace
}  // namespace chainswap
