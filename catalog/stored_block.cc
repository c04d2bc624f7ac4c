#include "catalog/stored_block.h"

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>

namespace chainswap {

Status ReadStoredBlock(const ContentStore& store, int64_t pblock, uint8_t* out, bool log_damage) {
  if (!IsPacked(pblock)) return store.ReadSlots(static_cast<uint64_t>(pblock), 1, out);
  const SectorExtent e = PackedExtent(pblock);
  if (e.count == kSectorsPerPage) return store.ReadSectors(e.first, e.count, out);
  alignas(64) uint8_t buf[kMaxCompressedBytes];
  CS_RETURN_IF_ERROR(store.ReadSectors(e.first, e.count, buf));
  static constexpr std::string_view kWhat = "stored block";
  Status st = BlockCompressor::Decompress(std::span<const uint8_t>(buf, size_t{e.count} * kSectorSize), out,
                                          kWhat.data());
  if (st.ok()) return st;
  // Named in full only when damaged: no string work on the read path.
  st = Status::Error(st.code(), "stored block " + std::to_string(pblock) + " (sectors " + std::to_string(e.first) +
                                    "+" + std::to_string(e.count) + ")" + st.message().substr(kWhat.size()));
  if (log_damage) spdlog::error("content store: {} (run chainswap fsck)", st.message());
  return st;
}

}  // namespace chainswap
