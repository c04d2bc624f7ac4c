#include "catalog/compression.h"

#include <lz4.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace chainswap {

namespace {

uint32_t Checksum(const uint8_t* block) { return static_cast<uint32_t>(XXH3_64bits(block, kBlockSize)); }

}  // namespace

CompressedBlock BlockCompressor::Compress(const uint8_t* block, std::span<uint8_t> out) {
  // Capacity kMaxLz4Bytes: LZ4 gives up (returns 0) as soon as the output
  // would not fit, which is the "store it raw" case, without finishing a
  // compression whose result would be thrown away.
  CompressedBlock c;
  if (out.size() < kMaxCompressedBytes) {
    c.sectors = kSectorsPerBlock;
    return c;
  }
  const int n = LZ4_compress_default(reinterpret_cast<const char*>(block),
                                     reinterpret_cast<char*>(out.data() + kCompressedHeaderBytes),
                                     static_cast<int>(kBlockSize), static_cast<int>(kMaxLz4Bytes));
  c.bytes = n > 0 ? static_cast<uint32_t>(n) : 0;
  c.sectors = SectorsFor(c.bytes);
  if (!c.raw()) {
    const uint32_t sum = Checksum(block);
    out[0] = static_cast<uint8_t>(c.bytes);
    out[1] = static_cast<uint8_t>(c.bytes >> 8);
    for (int i = 0; i < 4; ++i) out[2 + i] = static_cast<uint8_t>(sum >> (8 * i));
  }
  return c;
}

uint32_t BlockCompressor::Lz4Bytes(const uint8_t* block, std::span<uint8_t> out) {
  const int n = LZ4_compress_default(reinterpret_cast<const char*>(block), reinterpret_cast<char*>(out.data()),
                                     static_cast<int>(kBlockSize), static_cast<int>(out.size()));
  return n > 0 ? static_cast<uint32_t>(n) : 0;
}

Status BlockCompressor::Decompress(std::span<const uint8_t> in, uint8_t* block, const char* what) {
  auto damaged = [&](const std::string& why) {
    return Status::Error(EIO, std::string(what) + ": damaged compressed block (" + why + ")");
  };
  if (in.size() < kCompressedHeaderBytes) return damaged(std::to_string(in.size()) + " bytes, no header");
  const uint32_t len = in[0] | (uint32_t{in[1]} << 8);
  uint32_t sum = 0;
  for (int i = 0; i < 4; ++i) sum |= uint32_t{in[2 + i]} << (8 * i);
  if (len == 0 || len > kMaxLz4Bytes || len + kCompressedHeaderBytes > in.size())
    return damaged("LZ4 length " + std::to_string(len) + " in " + std::to_string(in.size()) + " bytes");
  const int n = LZ4_decompress_safe(reinterpret_cast<const char*>(in.data() + kCompressedHeaderBytes),
                                    reinterpret_cast<char*>(block), static_cast<int>(len),
                                    static_cast<int>(kBlockSize));
  if (n != static_cast<int>(kBlockSize))
    return damaged(std::to_string(len) + " LZ4 bytes decompress to " +
                   (n < 0 ? std::string("an error") : std::to_string(n)) + " instead of " +
                   std::to_string(kBlockSize));
  if (Checksum(block) != sum) return damaged("checksum mismatch");
  return Status::Ok();
}

}  // namespace chainswap
