// Block compression (issue 14): LZ4 of one 4 KiB block, stored in whole
// 512-byte sectors.
//
// The rule, shared by `chainswap estimate` and the content store, so that
// an estimate is what a mount stores:
//   - a block is compressed with LZ4_compress_default;
//   - its stored form is a kCompressedHeaderBytes header (the LZ4 length,
//     and a checksum of the uncompressed block, docs/FORMAT.md) followed by
//     the LZ4 bytes; if that fits in kMaxCompressedBytes (3584, seven
//     sectors) it occupies ceil(stored form / 512) sectors;
//   - otherwise the block is stored raw in 8 sectors (a saving of at most one
//     sector is not worth a decompression on every read).
// All-zero blocks are never stored (block.h) and have no compressed form.
//
// Thread-safety: BlockCompressor holds no state between calls and may be used
// from any number of threads at once; each call uses only its arguments and
// the stack.
#pragma once

#include <cstdint>
#include <span>

#include "catalog/block.h"
#include "catalog/status.h"

namespace chainswap {

inline constexpr uint32_t kSectorSize = 512;
inline constexpr uint32_t kSectorsPerBlock = kBlockSize / kSectorSize;
inline constexpr uint32_t kMaxCompressedBytes = kBlockSize - kSectorSize;  // 3584
// Header of a compressed block's stored form: LZ4 length (u16 LE), then the
// low 32 bits of XXH3-64 of the uncompressed block (u32 LE). Decompression
// checks both: a damaged block is an error, never wrong bytes.
inline constexpr uint32_t kCompressedHeaderBytes = 6;
inline constexpr uint32_t kMaxLz4Bytes = kMaxCompressedBytes - kCompressedHeaderBytes;  // 3578

// Sectors of a block whose LZ4 form is `lz4_bytes` long (0 when the block
// did not compress at all), header included: 1..7, or kSectorsPerBlock when
// stored raw.
inline uint32_t SectorsFor(uint32_t lz4_bytes) {
  if (lz4_bytes == 0 || lz4_bytes > kMaxLz4Bytes) return kSectorsPerBlock;
  return (lz4_bytes + kCompressedHeaderBytes + kSectorSize - 1) / kSectorSize;
}

// The outcome of compressing one block.
struct CompressedBlock {
  uint32_t bytes = 0;    // LZ4 bytes (after the header); 0 when the block is stored raw
  uint32_t sectors = 0;  // sectors it occupies in the store (SectorsFor)
  bool raw() const { return bytes == 0; }
  // Length of the stored form (header + LZ4 bytes) in the output buffer.
  uint32_t stored_bytes() const { return raw() ? 0 : bytes + kCompressedHeaderBytes; }
};

class BlockCompressor {
 public:
  // Compresses one kBlockSize block into its stored form in `out` (at least
  // kMaxCompressedBytes long): header, then LZ4 bytes. When that would not
  // fit in kMaxCompressedBytes the result is raw() and `out` holds nothing
  // useful.
  static CompressedBlock Compress(const uint8_t* block, std::span<uint8_t> out);

  // LZ4_compress_default's size for the block when it fits in out.size()
  // bytes, else 0 (out holds the LZ4 bytes). For the ideal (LZ4
  // alone rounded up to 512 bytes, raw above 3584: `chainswap estimate`).
  static uint32_t Lz4Bytes(const uint8_t* block, std::span<uint8_t> out);

  // Decompresses `in` (a stored form, possibly followed by padding: the
  // block's whole sectors) into `block` (kBlockSize). A damaged input (a
  // length past `in`, LZ4 that does not decompress to exactly kBlockSize
  // bytes, or a checksum that does not match) is an EIO error naming
  // `what`; `block` is then unspecified and must not be returned to anyone.
  static Status Decompress(std::span<const uint8_t> in, uint8_t* block, const char* what);
};

}  // namespace chainswap
