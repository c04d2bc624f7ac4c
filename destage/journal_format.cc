#include "destage/journal_format.h"

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <cstring>

#include "catalog/block.h"

namespace chainswap {

namespace {

template <typename T>
void Put(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));  // x86-64 and arm64 Linux: little-endian
}
template <typename T>
T Get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace

uint64_t Record::EncodedSize() const {
  return kRecordHeaderSize + (kind == RecordKind::kWrite ? count * kBlockSize : 0);
}

uint64_t PayloadChecksum(const Record& r) {
  if (r.kind != RecordKind::kWrite || r.count == 0) return 0;
  return XXH3_64bits(r.data.get(), r.count * kBlockSize);
}

void EncodeHeader(const Record& r, uint64_t payload_checksum, uint8_t* h) {
  const size_t payload = r.kind == RecordKind::kWrite ? r.count * kBlockSize : 0;
  std::memset(h, 0, kRecordHeaderSize);
  Put<uint32_t>(h + 0, kRecordMagic);
  Put<uint32_t>(h + 4, static_cast<uint32_t>(kRecordHeaderSize + payload));
  Put<uint64_t>(h + 8, r.seq);
  h[16] = static_cast<uint8_t>(r.kind);
  h[17] = r.drop_file ? 1 : 0;
  h[18] = r.continues ? 1 : 0;
  Put<uint32_t>(h + 20, r.kind == RecordKind::kWrite ? static_cast<uint32_t>(r.count) : 0);
  Put<int64_t>(h + 24, r.file_id);
  Put<int64_t>(h + 32, r.dedup_id);
  Put<uint64_t>(h + 40, r.lba);
  Put<uint64_t>(h + 48, r.count);
  Put<uint64_t>(h + 56, r.file_size);
  Put<int64_t>(h + 64, r.mtime_ns);
  Put<uint64_t>(h + 72, payload_checksum);
  Put<uint64_t>(h + 80, XXH3_64bits(h, 80));
}

void EncodeRecord(const Record& r, std::vector<uint8_t>* out) {
  const size_t payload = r.kind == RecordKind::kWrite ? r.count * kBlockSize : 0;
  const size_t start = out->size();
  out->resize(start + kRecordHeaderSize + payload);
  uint8_t* h = out->data() + start;
  EncodeHeader(r, PayloadChecksum(r), h);
  if (payload) std::memcpy(h + kRecordHeaderSize, r.data.get(), payload);
}

bool PeekHeader(std::span<const uint8_t> in, uint32_t* length) {
  if (in.size() < kRecordHeaderSize) return false;
  const uint8_t* h = in.data();
  if (Get<uint32_t>(h) != kRecordMagic || Get<uint64_t>(h + 80) != XXH3_64bits(h, 80)) return false;
  *length = Get<uint32_t>(h + 4);
  return true;
}

DecodeStatus DecodeRecord(std::span<const uint8_t> in, Record* out, size_t* consumed) {
  std::span<const uint8_t> payload;
  DecodeStatus ds = DecodeRecordView(in, out, &payload, consumed);
  if (ds == DecodeStatus::kOk && !payload.empty()) {
    std::shared_ptr<uint8_t[]> data(new uint8_t[payload.size()]);
    std::memcpy(data.get(), payload.data(), payload.size());
    out->data = std::move(data);
  }
  return ds;
}

DecodeStatus DecodeRecordView(std::span<const uint8_t> in, Record* out, std::span<const uint8_t>* payload_out,
                              size_t* consumed) {
  if (in.empty()) return DecodeStatus::kEnd;
  if (in.size() < kRecordHeaderSize) return DecodeStatus::kTorn;
  const uint8_t* h = in.data();
  if (Get<uint32_t>(h) != kRecordMagic) return DecodeStatus::kTorn;
  const uint32_t len = Get<uint32_t>(h + 4);
  const uint8_t kind = h[16];
  const uint32_t blocks = Get<uint32_t>(h + 20);
  if (kind != 1 && kind != 2) return DecodeStatus::kTorn;
  if (blocks > kMaxRecordBlocks) return DecodeStatus::kTorn;
  const size_t payload = kind == 1 ? size_t{blocks} * kBlockSize : 0;
  if (Get<uint64_t>(h + 80) != XXH3_64bits(h, 80)) return DecodeStatus::kTorn;
  if (len != kRecordHeaderSize + payload || in.size() < len) return DecodeStatus::kTorn;
  const uint64_t pc = payload ? XXH3_64bits(h + kRecordHeaderSize, payload) : 0;
  if (Get<uint64_t>(h + 72) != pc) return DecodeStatus::kTorn;
  Record r;
  r.seq = Get<uint64_t>(h + 8);
  r.kind = static_cast<RecordKind>(kind);
  r.drop_file = h[17] & 1;
  r.continues = h[18] & 1;
  r.file_id = Get<int64_t>(h + 24);
  r.dedup_id = Get<int64_t>(h + 32);
  r.lba = Get<uint64_t>(h + 40);
  r.count = Get<uint64_t>(h + 48);
  r.file_size = Get<uint64_t>(h + 56);
  r.mtime_ns = Get<int64_t>(h + 64);
  if (r.kind == RecordKind::kWrite) {
    if (r.count != blocks || blocks == 0) return DecodeStatus::kTorn;
  }
  *payload_out = in.subspan(kRecordHeaderSize, payload);
  *out = std::move(r);
  *consumed = len;
  return DecodeStatus::kOk;
}

}  // namespace chainswap
