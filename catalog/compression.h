// Block compression (issue 14): LZ4 of one 4 KiB block, stored in whole
// 512-byte sectors.
//
// The rule, shared by `chainswap estimate` and (when it lands) the content
// store, so that an estimate is what a mount stores:
//   - a block is compressed with LZ4_compress_default;
//   - if the result fits in kMaxCompressedBytes (3584, seven sectors) it
//     occupies ceil(size / 512) sectors;
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

// Sectors of a block whose LZ4 form is `compressed_bytes` long (0 when the
// block did not compress at all): 1..7, or kSectorsPerBlock when stored raw.
inline uint32_t SectorsFor(uint32_t compressed_bytes) {
  if (compressed_bytes == 0 || compressed_bytes > kMaxCompressedBytes) return kSectorsPerBlock;
  return (compressed_bytes + kSectorSize - 1) / kSectorSize;
}

// The outcome of compressing one block.
struct CompressedBlock {
  uint32_t bytes = 0;    // LZ4 bytes in the output buffer; 0 when the block is stored raw
  uint32_t sectors = 0;  // sectors it occupies in the store (SectorsFor)
  bool raw() const { return bytes == 0; }
};

class BlockCompressor {
 public:
  // Compresses one kBlockSize block into `out` (at least kMaxCompressedBytes
  // long). When the compressed form would not fit in kMaxCompressedBytes the
  // result is raw() and `out` holds nothing useful.
  static CompressedBlock Compress(const uint8_t* block, std::span<uint8_t> out);

  // Decompresses `in` (the LZ4 bytes of one block) into `block`
  // (kBlockSize). A damaged input, or one that does not decompress to
  // exactly kBlockSize bytes, is an EIO error naming `what`; `block` is then
  // unspecified and must not be returned to anyone.
  static Status Decompress(std::span<const uint8_t> in, uint8_t* block, const char* what);
};

}  // namespace chainswap
