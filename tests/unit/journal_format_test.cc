// Journal record encoding (destage/journal_format.h): round trips of write and
// delete records, and detection of every kind of torn or corrupt record
// (truncation at every length, single bit flips in header and payload,
// malformed but correctly checksummed headers).
#include "destage/journal_format.h"

#include <gtest/gtest.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "catalog/block.h"

namespace chainswap {
namespace {

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
  r.file_id = 42;
  r.dedup_id = 7;
  r.lba = lba;
  r.count = blocks;
  r.file_size = (lba + blocks) * kBlockSize + 123;
  r.mtime_ns = 1'700'000'000'123'456'789;
  r.data = RandomPayload(blocks, rng);
  return r;
}

Record MakeDelete(uint64_t seq, uint64_t lba, uint64_t count, bool drop_file) {
  Record r;
  r.seq = seq;
  r.kind = RecordKind::kDelete;
  r.drop_file = drop_file;
  r.file_id = -3;  // IDs are signed: make sure the sign survives
  r.dedup_id = 99;
  r.lba = lba;
  r.count = count;
  r.file_size = 5 * kBlockSize + 1;
  r.mtime_ns = -1;
  return r;
}

std::vector<uint8_t> Encode(const Record& r) {
  std::vector<uint8_t> out;
  EncodeRecord(r, &out);
  return out;
}

void ExpectSameRecord(const Record& want, const Record& got) {
  EXPECT_EQ(got.seq, want.seq);
  EXPECT_EQ(got.kind, want.kind);
  EXPECT_EQ(got.drop_file, want.drop_file);
  EXPECT_EQ(got.file_id, want.file_id);
  EXPECT_EQ(got.dedup_id, want.dedup_id);
  EXPECT_EQ(got.lba, want.lba);
  EXPECT_EQ(got.count, want.count);
  EXPECT_EQ(got.file_size, want.file_size);
  EXPECT_EQ(got.mtime_ns, want.mtime_ns);
  if (want.kind == RecordKind::kWrite) {
    ASSERT_NE(got.data, nullptr);
    EXPECT_NE(got.data.get(), want.data.get()) << "decoded payload must be its own copy";
    EXPECT_EQ(std::memcmp(got.data.get(), want.data.get(), want.count * kBlockSize), 0)
        << "payload differs after the round trip";
  } else {
    EXPECT_EQ(got.data, nullptr);
  }
}

DecodeStatus Decode(std::span<const uint8_t> in, Record* r = nullptr, size_t* used = nullptr) {
  Record tmp;
  size_t u = 0;
  return DecodeRecord(in, r ? r : &tmp, used ? used : &u);
}

std::string Name(DecodeStatus s) {
  switch (s) {
    case DecodeStatus::kOk: return "kOk";
    case DecodeStatus::kEnd: return "kEnd";
    case DecodeStatus::kTorn: return "kTorn";
  }
  return "?";
}

// Rewrites the header checksum so that a deliberately malformed header is
// only caught by the structural checks.
void Reseal(std::vector<uint8_t>& buf) {
  uint64_t sum = XXH3_64bits(buf.data(), 80);
  std::memcpy(buf.data() + 80, &sum, 8);
}

TEST(JournalFormatTest, WriteRoundTripOneBlock) {
  std::mt19937_64 rng(1);
  Record w = MakeWrite(17, 1000, 1, rng);
  std::vector<uint8_t> buf = Encode(w);
  ASSERT_EQ(buf.size(), kRecordHeaderSize + kBlockSize);
  EXPECT_EQ(w.EncodedSize(), buf.size());
  uint32_t magic;
  std::memcpy(&magic, buf.data(), 4);
  EXPECT_EQ(magic, kRecordMagic);
  EXPECT_EQ(std::memcmp(buf.data(), "CSJ1", 4), 0);
  Record got;
  size_t used = 0;
  ASSERT_EQ(Decode(buf, &got, &used), DecodeStatus::kOk);
  EXPECT_EQ(used, buf.size());
  ExpectSameRecord(w, got);
}

TEST(JournalFormatTest, WriteRoundTripSeveralBlocks) {
  std::mt19937_64 rng(2);
  for (uint64_t blocks : {2u, 3u, 17u, 256u}) {
    SCOPED_TRACE("blocks=" + std::to_string(blocks));
    Record w = MakeWrite(1000 + blocks, blocks * 31, blocks, rng);
    std::vector<uint8_t> buf = Encode(w);
    ASSERT_EQ(buf.size(), kRecordHeaderSize + blocks * kBlockSize);
    EXPECT_EQ(w.EncodedSize(), buf.size());
    Record got;
    size_t used = 0;
    ASSERT_EQ(Decode(buf, &got, &used), DecodeStatus::kOk);
    EXPECT_EQ(used, buf.size());
    ExpectSameRecord(w, got);
  }
}

TEST(JournalFormatTest, WriteRoundTripMaxBlocksAndExtremeFields) {
  std::mt19937_64 rng(3);
  Record w = MakeWrite(UINT64_MAX - 1, (uint64_t{1} << 51) - kMaxRecordBlocks, kMaxRecordBlocks, rng);
  w.file_id = INT64_MAX;
  w.dedup_id = INT64_MIN;
  w.file_size = UINT64_MAX;
  w.mtime_ns = INT64_MIN;
  std::vector<uint8_t> buf = Encode(w);
  Record got;
  size_t used = 0;
  ASSERT_EQ(Decode(buf, &got, &used), DecodeStatus::kOk);
  EXPECT_EQ(used, buf.size());
  ExpectSameRecord(w, got);
}

TEST(JournalFormatTest, DeleteRoundTrip) {
  const Record cases[] = {
      MakeDelete(5, 10, 20, false),
      MakeDelete(6, 0, (uint64_t{1} << 51), true),  // unlink reclaim: whole file, drop it
      MakeDelete(7, 3, 0, false),                   // size-only record (truncate that grows)
      MakeDelete(8, 0, 0, true),
  };
  for (const Record& d : cases) {
    SCOPED_TRACE("seq=" + std::to_string(d.seq));
    std::vector<uint8_t> buf = Encode(d);
    ASSERT_EQ(buf.size(), kRecordHeaderSize) << "a delete has no payload";
    EXPECT_EQ(d.EncodedSize(), kRecordHeaderSize);
    Record got;
    got.data = std::shared_ptr<const uint8_t[]>(new uint8_t[1]);  // must be reset by decode
    size_t used = 0;
    ASSERT_EQ(Decode(buf, &got, &used), DecodeStatus::kOk);
    EXPECT_EQ(used, kRecordHeaderSize);
    ExpectSameRecord(d, got);
  }
}

TEST(JournalFormatTest, EmptyInputIsEnd) {
  EXPECT_EQ(Decode(std::span<const uint8_t>()), DecodeStatus::kEnd);
  std::vector<uint8_t> none;
  EXPECT_EQ(Decode(none), DecodeStatus::kEnd);
}

TEST(JournalFormatTest, TruncatedAtEveryLengthIsTorn) {
  std::mt19937_64 rng(4);
  const Record recs[] = {MakeWrite(1, 0, 1, rng), MakeWrite(2, 9, 3, rng), MakeDelete(3, 4, 8, true)};
  for (const Record& r : recs) {
    std::vector<uint8_t> buf = Encode(r);
    for (size_t len = 1; len < buf.size(); ++len) {
      DecodeStatus s = Decode(std::span<const uint8_t>(buf.data(), len));
      ASSERT_EQ(s, DecodeStatus::kTorn) << "seq " << r.seq << " truncated to " << len << " of "
                                        << buf.size() << " bytes decoded as " << Name(s);
    }
    EXPECT_EQ(Decode(buf), DecodeStatus::kOk);
  }
}

// Every single-bit flip in the header, and in a sample of payload bytes
// (first, middle, last and random ones), is detected.
TEST(JournalFormatTest, BitFlipsAreTorn) {
  std::mt19937_64 rng(5);
  Record w = MakeWrite(11, 77, 3, rng);
  const std::vector<uint8_t> orig = Encode(w);
  std::vector<size_t> positions;
  for (size_t i = 0; i < kRecordHeaderSize; ++i) positions.push_back(i);  // every header byte/field
  const size_t payload = orig.size() - kRecordHeaderSize;
  for (size_t p : {size_t{0}, size_t{1}, size_t{kBlockSize} - 1, size_t{kBlockSize}, payload / 2, payload - 2,
                   payload - 1})
    positions.push_back(kRecordHeaderSize + p);
  for (int i = 0; i < 64; ++i) positions.push_back(kRecordHeaderSize + rng() % payload);
  std::vector<uint8_t> buf = orig;
  for (size_t pos : positions) {
    for (int bit = 0; bit < 8; ++bit) {
      buf[pos] ^= static_cast<uint8_t>(1u << bit);
      DecodeStatus s = Decode(buf);
      EXPECT_EQ(s, DecodeStatus::kTorn) << "bit " << bit << " of byte " << pos << " flipped decoded as " << Name(s);
      buf[pos] = orig[pos];
    }
  }
  ASSERT_EQ(buf, orig);
  EXPECT_EQ(Decode(buf), DecodeStatus::kOk);
}

TEST(JournalFormatTest, DeleteBitFlipsAreTorn) {
  Record d = MakeDelete(12, 100, 50, true);
  const std::vector<uint8_t> orig = Encode(d);
  std::vector<uint8_t> buf = orig;
  for (size_t pos = 0; pos < orig.size(); ++pos) {
    for (int bit = 0; bit < 8; ++bit) {
      buf[pos] ^= static_cast<uint8_t>(1u << bit);
      DecodeStatus s = Decode(buf);
      EXPECT_EQ(s, DecodeStatus::kTorn) << "bit " << bit << " of byte " << pos << " decoded as " << Name(s);
      buf[pos] = orig[pos];
    }
  }
}

TEST(JournalFormatTest, RecordsBackToBackDecodeInOrder) {
  std::mt19937_64 rng(6);
  std::vector<Record> recs;
  recs.push_back(MakeWrite(1, 0, 2, rng));
  recs.push_back(MakeDelete(2, 1, 1, false));
  recs.push_back(MakeWrite(3, 5, 1, rng));
  recs.push_back(MakeDelete(4, 0, 0, false));
  recs.push_back(MakeWrite(5, 1, 4, rng));
  std::vector<uint8_t> buf;
  for (const Record& r : recs) EncodeRecord(r, &buf);
  size_t off = 0;
  for (const Record& want : recs) {
    SCOPED_TRACE("seq=" + std::to_string(want.seq));
    Record got;
    size_t used = 0;
    ASSERT_EQ(Decode(std::span<const uint8_t>(buf).subspan(off), &got, &used), DecodeStatus::kOk);
    EXPECT_EQ(used, want.EncodedSize());
    ExpectSameRecord(want, got);
    off += used;
  }
  EXPECT_EQ(off, buf.size());
  EXPECT_EQ(Decode(std::span<const uint8_t>(buf).subspan(off)), DecodeStatus::kEnd);
}

TEST(JournalFormatTest, TrailingBytesAfterRecordAreNotConsumed) {
  std::mt19937_64 rng(7);
  Record w = MakeWrite(9, 3, 1, rng);
  std::vector<uint8_t> buf = Encode(w);
  buf.resize(buf.size() + 100, 0xAB);
  Record got;
  size_t used = 0;
  ASSERT_EQ(Decode(buf, &got, &used), DecodeStatus::kOk);
  EXPECT_EQ(used, kRecordHeaderSize + kBlockSize);
  EXPECT_EQ(Decode(std::span<const uint8_t>(buf).subspan(used)), DecodeStatus::kTorn);
}

TEST(JournalFormatTest, EncodeHeaderMatchesEncodeRecord) {
  std::mt19937_64 rng(8);
  Record w = MakeWrite(21, 8, 2, rng);
  std::vector<uint8_t> buf = Encode(w);
  uint8_t h[kRecordHeaderSize];
  EncodeHeader(w, PayloadChecksum(w), h);
  EXPECT_EQ(std::memcmp(h, buf.data(), kRecordHeaderSize), 0);
  EXPECT_EQ(PayloadChecksum(MakeDelete(1, 0, 5, false)), 0u);
}

TEST(JournalFormatTest, TooManyBlocksRejected) {
  std::mt19937_64 rng(9);
  // A record one block over the limit, with correct checksums throughout.
  Record w = MakeWrite(1, 0, kMaxRecordBlocks + 1, rng);
  std::vector<uint8_t> buf = Encode(w);
  ASSERT_EQ(buf.size(), kRecordHeaderSize + (kMaxRecordBlocks + 1) * size_t{kBlockSize});
  EXPECT_EQ(Decode(buf), DecodeStatus::kTorn);
  // A header claiming a huge block count (length field consistent with it)
  // but with only a little data behind it.
  std::vector<uint8_t> small = Encode(MakeWrite(2, 0, 1, rng));
  const uint32_t blocks = 0xFFFFFFFFu;
  std::memcpy(small.data() + 20, &blocks, 4);
  const uint64_t count = blocks;
  std::memcpy(small.data() + 48, &count, 8);
  Reseal(small);
  EXPECT_EQ(Decode(small), DecodeStatus::kTorn);
}

TEST(JournalFormatTest, MalformedButChecksummedHeadersAreTorn) {
  std::mt19937_64 rng(10);
  const std::vector<uint8_t> orig = Encode(MakeWrite(3, 4, 2, rng));
  {
    SCOPED_TRACE("unknown kind");
    std::vector<uint8_t> b = orig;
    b[16] = 3;
    Reseal(b);
    EXPECT_EQ(Decode(b), DecodeStatus::kTorn);
    b[16] = 0;
    Reseal(b);
    EXPECT_EQ(Decode(b), DecodeStatus::kTorn);
  }
  {
    SCOPED_TRACE("length field disagrees with block count");
    for (uint32_t len : {uint32_t(kRecordHeaderSize + kBlockSize), uint32_t(kRecordHeaderSize + 3 * kBlockSize),
                         uint32_t(orig.size() - 8), uint32_t(orig.size() + 8), 0u}) {
      std::vector<uint8_t> b = orig;
      b.resize(std::max<size_t>(b.size(), len));
      std::memcpy(b.data() + 4, &len, 4);
      Reseal(b);
      EXPECT_EQ(Decode(b), DecodeStatus::kTorn) << "length " << len;
    }
  }
  {
    SCOPED_TRACE("write whose LBA count differs from its block count");
    std::vector<uint8_t> b = orig;
    const uint64_t count = 3;
    std::memcpy(b.data() + 48, &count, 8);
    Reseal(b);
    EXPECT_EQ(Decode(b), DecodeStatus::kTorn);
  }
  {
    SCOPED_TRACE("write with zero blocks");
    Record w;
    w.seq = 4;
    w.kind = RecordKind::kWrite;
    w.count = 0;
    std::vector<uint8_t> b = Encode(w);
    EXPECT_EQ(Decode(b), DecodeStatus::kTorn);
  }
  {
    SCOPED_TRACE("wrong payload checksum, header resealed");
    std::vector<uint8_t> b = orig;
    b[72] ^= 0x10;
    Reseal(b);
    EXPECT_EQ(Decode(b), DecodeStatus::kTorn);
  }
  {
    SCOPED_TRACE("all zeros (a preallocated or punched tail)");
    std::vector<uint8_t> b(orig.size(), 0);
    EXPECT_EQ(Decode(b), DecodeStatus::kTorn);
  }
}

TEST(JournalFormatTest, PeekHeaderReportsDeclaredLength) {
  std::mt19937_64 rng(11);
  std::vector<uint8_t> w = Encode(MakeWrite(1, 0, 3, rng));
  uint32_t len = 0;
  ASSERT_TRUE(PeekHeader(w, &len));
  EXPECT_EQ(len, w.size());
  // Only the header is needed, and the payload is not judged.
  len = 0;
  ASSERT_TRUE(PeekHeader(std::span<const uint8_t>(w.data(), kRecordHeaderSize), &len));
  EXPECT_EQ(len, w.size());
  std::vector<uint8_t> bad_payload = w;
  bad_payload[kRecordHeaderSize + 5] ^= 1;
  ASSERT_TRUE(PeekHeader(bad_payload, &len));
  EXPECT_EQ(Decode(bad_payload), DecodeStatus::kTorn);
  std::vector<uint8_t> d = Encode(MakeDelete(2, 1, 2, false));
  ASSERT_TRUE(PeekHeader(d, &len));
  EXPECT_EQ(len, kRecordHeaderSize);
}

TEST(JournalFormatTest, PeekHeaderRejectsShortOrDamagedHeaders) {
  std::mt19937_64 rng(12);
  const std::vector<uint8_t> w = Encode(MakeWrite(1, 0, 1, rng));
  uint32_t len = 12345;
  EXPECT_FALSE(PeekHeader(std::span<const uint8_t>(), &len));
  EXPECT_FALSE(PeekHeader(std::span<const uint8_t>(w.data(), kRecordHeaderSize - 1), &len));
  for (size_t pos = 0; pos < kRecordHeaderSize; ++pos) {
    std::vector<uint8_t> b = w;
    b[pos] ^= 0x20;
    EXPECT_FALSE(PeekHeader(b, &len)) << "flipped byte " << pos;
  }
  EXPECT_FALSE(PeekHeader(std::vector<uint8_t>(kRecordHeaderSize, 0), &len));
  EXPECT_EQ(len, 12345u) << "length written although the header is not intact";
}

}  // namespace
}  // namespace chainswap
