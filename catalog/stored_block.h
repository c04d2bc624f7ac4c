// Where a PAT entry's bytes are in the content store (docs/FORMAT.md,
// "Compressed blocks"), and the one routine that reads them back.
//
// A pblock >= 0 is a raw block: 4 KiB at slot pblock. A pblock < 0 is a
// block of the sector space: pblock = -1 - (first_sector * 8 + sectors - 1),
// an extent of 1..8 sectors of pack pages (sector_allocator.h); 1..7
// sectors hold its compressed form (compression.h), 8 sectors its raw
// bytes. So the location is the identity: a packed block moves only by
// compaction (Catalog::CompactPackedLocked), which gives it a new pblock and
// rewrites every row that names it.
//
// Thread-safety: pure functions; ReadStoredBlock only does positional reads.
#pragma once

#include <cstdint>

#include "catalog/block.h"
#include "catalog/compression.h"
#include "catalog/content_store.h"
#include "catalog/sector_allocator.h"
#include "catalog/status.h"

namespace chainswap {

inline bool IsPacked(int64_t pblock) { return pblock < 0; }
inline int64_t PackedPblock(SectorExtent e) {
  return -1 - static_cast<int64_t>(e.first * kSectorsPerPage + (e.count - 1));
}
// The extent of a packed block (REQUIRES: IsPacked(pblock)).
inline SectorExtent PackedExtent(int64_t pblock) {
  const auto v = static_cast<uint64_t>(-1 - pblock);
  return SectorExtent{v / kSectorsPerPage, static_cast<uint32_t>(v % kSectorsPerPage) + 1};
}
// Bytes a block occupies in the store: 4 KiB raw, its sectors packed.
inline uint64_t StoredBlockBytes(int64_t pblock) {
  return IsPacked(pblock) ? uint64_t{PackedExtent(pblock).count} * kSectorSize : kBlockSize;
}
// One past the last slot a block touches.
inline uint64_t StoredBlockEndSlot(int64_t pblock) {
  if (!IsPacked(pblock)) return static_cast<uint64_t>(pblock) + 1;
  return (PackedExtent(pblock).end() + kSectorsPerPage - 1) / kSectorsPerPage;
}

// Reads block `pblock` into out (kBlockSize bytes), decompressing a
// compressed one. Reads only the block's own sectors. EIO for a damaged
// block (logged at error, naming the block, unless `log_damage` is false:
// a speculative read that may race a reuse, write_prep.h), never wrong
// bytes.
Status ReadStoredBlock(const ContentStore& store, int64_t pblock, uint8_t* out, bool log_damage = true);

}  // namespace chainswap
