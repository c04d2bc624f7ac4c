#include "catalog/compression.h"

#include <lz4.h>

#include <cerrno>
#include <string>

namespace chainswap {

CompressedBlock BlockCompressor::Compress(const uint8_t* block, std::span<uint8_t> out) {
  // Capacity kMaxCompressedBytes: LZ4 gives up (returns 0) as soon as the
  // output would not fit, which is the "store it raw" case, without
  // finishing a compression whose result would be thrown away.
  const int cap = static_cast<int>(std::min<size_t>(out.size(), kMaxCompressedBytes));
  const int n = LZ4_compress_default(reinterpret_cast<const char*>(block), reinterpret_cast<char*>(out.data()),
                                     static_cast<int>(kBlockSize), cap);
  CompressedBlock c;
  c.bytes = n > 0 ? static_cast<uint32_t>(n) : 0;
  c.sectors = SectorsFor(c.bytes);
  return c;
}

Status BlockCompressor::Decompress(std::span<const uint8_t> in, uint8_t* block, const char* what) {
  const int n = LZ4_decompress_safe(reinterpret_cast<const char*>(in.data()), reinterpret_cast<char*>(block),
                                    static_cast<int>(in.size()), static_cast<int>(kBlockSize));
  if (n != static_cast<int>(kBlockSize))
    return Status::Error(EIO, std::string(what) + ": damaged compressed block (" + std::to_string(in.size()) +
                                  " bytes decompress to " + (n < 0 ? std::string("an error") : std::to_string(n)) +
                                  " instead of " + std::to_string(kBlockSize) + ")");
  return Status::Ok();
}

}  // namespace chainswap
