// On-disk format of journal records (docs/FORMAT.md). Pure encode/decode,
// no I/O, so it can be fuzzed on its own.
//
// A segment file (one bucket) is a sequence of records:
//
//   offset size field
//   0      4    magic "CSJ1" (0x314a5343 little-endian)
//   4      4    record length in bytes (header + payload)
//   8      8    sequence number (strictly increasing across the journal)
//   16     1    kind: 1 write, 2 delete
//   17     1    flags: bit 0 = drop file after the delete (unlink reclaim)
//   18     1    op flags: bit 0 = the op continues in the next record
//   19     1    reserved (0)
//   20     4    block count of the payload (writes)
//   24     8    file ID
//   32     8    dedup ID
//   40     8    first LBA
//   48     8    LBA count (deletes; writes: = block count)
//   56     8    file size after the op
//   64     8    file mtime after the op (ns since the epoch)
//   72     8    payload checksum: XXH3-64 of the payload (0 without one)
//   80     8    header checksum: XXH3-64 of bytes [0, 80)
//   88     ...  payload: block count * 4096 bytes (writes)
//
// A record that is truncated or whose checksum does not match ends the
// segment (a torn tail): it and everything after it are ignored.
//
// One op (a write, punch or truncate) may take several records (runs of
// zero blocks are deletes, partial edge blocks records of their own). They
// are written together, in one segment, and all but the last carry the
// "continues" bit: replay applies an op only when its last record is
// intact, so a crash leaves all of an op or none of it. Segments written
// before the bit existed have it clear everywhere (every record an op).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace chainswap {

class Segment;  // destage/journal.h

inline constexpr uint32_t kRecordMagic = 0x314a5343;  // "CSJ1"
inline constexpr size_t kRecordHeaderSize = 88;
inline constexpr uint32_t kMaxRecordBlocks = 1024;    // 4 MiB payload at most

enum class RecordKind : uint8_t { kWrite = 1, kDelete = 2 };

struct Record {
  uint64_t seq = 0;
  RecordKind kind = RecordKind::kWrite;
  bool drop_file = false;
  bool continues = false;   // the op goes on in the next record (see above)
  int64_t file_id = 0;
  int64_t dedup_id = 0;
  uint64_t lba = 0;
  uint64_t count = 0;       // LBAs covered
  uint64_t file_size = 0;   // after the op
  int64_t mtime_ns = 0;     // after the op
  // Write payload in memory: count * 4096 bytes. Set by the writer until the
  // record is in its segment, and by Segment::ReadAll (tools, tests). Null
  // for a journaled record of the engine: its payload is read back from the
  // segment (page cache, reclaimable), never kept in the daemon's heap.
  std::shared_ptr<const uint8_t[]> data;
  // In memory only, never encoded: the segment holding the record and the
  // offset of its payload there (writes; set once the record is written).
  std::shared_ptr<Segment> segment;
  uint64_t payload_offset = 0;
  // In memory only, never encoded: one bit per block of a write, set by the
  // staging index once a newer op covers the block (StagingIndex::Track).
  std::shared_ptr<std::atomic<uint64_t>[]> superseded;

  uint64_t EncodedSize() const;
};

// XXH3-64 of a write payload (count * 4096 bytes), computed once per record,
// outside any lock.
uint64_t PayloadChecksum(const Record& r);

// Encodes the header of `r` (payload checksum given) into h[kRecordHeaderSize].
// The payload itself is written after it, unchanged.
void EncodeHeader(const Record& r, uint64_t payload_checksum, uint8_t* h);

// Appends the encoded record (header + payload) to out.
void EncodeRecord(const Record& r, std::vector<uint8_t>* out);

enum class DecodeStatus { kOk, kEnd, kTorn };

// True when `in` starts with an intact record header (magic and header
// checksum); *length is then the record's declared length.
bool PeekHeader(std::span<const uint8_t> in, uint32_t* length);

// Decodes the record at the start of `in`. kEnd when `in` is empty; kTorn
// for a short, malformed or corrupt record. On kOk, *consumed is its size.
DecodeStatus DecodeRecord(std::span<const uint8_t> in, Record* out, size_t* consumed);
// DecodeRecord without a copy of the payload: out->data stays null and
// *payload views the (checksummed) payload inside `in`.
DecodeStatus DecodeRecordView(std::span<const uint8_t> in, Record* out, std::span<const uint8_t>* payload,
                              size_t* consumed);

}  // namespace chainswap
