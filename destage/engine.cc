#include "destage/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

namespace chainswap {

namespace {

constexpr uint64_t kMaxLba = static_cast<uint64_t>(INT64_MAX) >> kBlockShift;

// A block-aligned heap buffer.
struct BlockBuf {
  explicit BlockBuf(uint64_t blocks)
      : p(static_cast<uint8_t*>(std::aligned_alloc(kBlockSize, std::max<uint64_t>(blocks, 1) * kBlockSize))) {
    if (!p) throw std::bad_alloc();
  }
  ~BlockBuf() { std::free(p); }
  BlockBuf(const BlockBuf&) = delete;
  BlockBuf& operator=(const BlockBuf&) = delete;
  uint8_t* p;
};

uint64_t DivUp(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

}  // namespace

Engine::Engine(Catalog& catalog, EngineOptions options) : catalog_(catalog), options_(options) {}

void Engine::Count(const ApplyResult& r) {
  counters_.blocks_stored += r.blocks_stored;
  counters_.blocks_deduped += r.blocks_deduped;
  counters_.blocks_freed += r.blocks_freed;
  counters_.collisions += r.collisions;
}

Status Engine::WriteWholeBlocks(FileRef f, uint64_t lba, const uint8_t* blocks, uint64_t count,
                                const FileMetaUpdate* meta) {
  // Hash outside the catalog lock: the expensive part runs in parallel.
  auto hasher = catalog_.HasherFor(f.dedup_id);
  if (!hasher.ok()) return hasher.status();
  std::vector<BlockOp> ops(count);
  for (uint64_t i = 0; i < count; ++i) {
    BlockOp& op = ops[i];
    op.kind = BlockOp::Kind::kWrite;
    op.file_id = f.file_id;
    op.dedup_id = f.dedup_id;
    op.lba = lba + i;
    op.data = blocks + i * kBlockSize;
    if (!IsZeroBlock(op.data)) op.hash = (*hasher)->Hash(op.data);
  }
  auto r = catalog_.ApplyBlockOps(ops, meta ? std::span<const FileMetaUpdate>(meta, 1)
                                            : std::span<const FileMetaUpdate>());
  if (!r.ok()) return r.status();
  counters_.blocks_written += count;
  Count(*r);
  return Status::Ok();
}

Status Engine::Write(FileRef f, uint64_t offset, std::span<const uint8_t> data, uint64_t size,
                     const FileMetaUpdate& meta) {
  if (data.empty()) {
    auto r = catalog_.ApplyBlockOps({}, std::span<const FileMetaUpdate>(&meta, 1));
    return r.status();
  }
  const uint64_t end = offset + data.size();
  const uint64_t first = offset >> kBlockShift;
  const uint64_t last = (end - 1) >> kBlockShift;
  if (last > kMaxLba) return Status::Error(EFBIG, "write beyond the largest supported offset");
  const uint64_t n = last - first + 1;
  BlockBuf buf(n);
  const uint32_t head = offset & (kBlockSize - 1);
  const uint32_t tail = end & (kBlockSize - 1);
  // Read-modify-write of partial edge blocks that hold data.
  if (head != 0) {
    if ((first << kBlockShift) < size) CS_RETURN_IF_ERROR(catalog_.ReadBlocks(f.file_id, first, 1, buf.p));
    else std::memset(buf.p, 0, kBlockSize);
  }
  if (tail != 0 && (last != first || head == 0)) {
    uint8_t* lastp = buf.p + (n - 1) * kBlockSize;
    if ((last << kBlockShift) < size) CS_RETURN_IF_ERROR(catalog_.ReadBlocks(f.file_id, last, 1, lastp));
    else std::memset(lastp, 0, kBlockSize);
  }
  std::memcpy(buf.p + head, data.data(), data.size());
  return WriteWholeBlocks(f, first, buf.p, n, &meta);
}

Result<size_t> Engine::Read(FileRef f, uint64_t offset, size_t len, uint64_t size, uint8_t* out) {
  if (offset >= size || len == 0) return size_t{0};
  len = static_cast<size_t>(std::min<uint64_t>(len, size - offset));
  const uint64_t first = offset >> kBlockShift;
  const uint64_t last = (offset + len - 1) >> kBlockShift;
  const uint64_t n = last - first + 1;
  const uint32_t head = offset & (kBlockSize - 1);
  if (head == 0 && (len & (kBlockSize - 1)) == 0) {
    CS_RETURN_IF_ERROR(catalog_.ReadBlocks(f.file_id, first, static_cast<uint32_t>(n), out));
    return len;
  }
  BlockBuf buf(n);
  CS_RETURN_IF_ERROR(catalog_.ReadBlocks(f.file_id, first, static_cast<uint32_t>(n), buf.p));
  std::memcpy(out, buf.p + head, len);
  return len;
}

Status Engine::DeleteRange(FileRef f, uint64_t first_lba, uint64_t end_lba, const FileMetaUpdate* meta) {
  uint64_t lba = first_lba;
  for (;;) {
    auto next = catalog_.NextMapped(f.file_id, lba);
    if (!next.ok()) return next.status();
    if (!*next || **next >= end_lba) break;
    lba = **next;
    uint64_t chunk_end = std::min(end_lba, lba + options_.delete_batch_blocks);
    BlockOp op;
    op.kind = BlockOp::Kind::kDelete;
    op.file_id = f.file_id;
    op.dedup_id = f.dedup_id;
    op.lba = lba;
    op.count = chunk_end - lba;
    auto r = catalog_.ApplyBlockOps(std::span<const BlockOp>(&op, 1));
    if (!r.ok()) return r.status();
    Count(*r);
    lba = chunk_end;
    if (lba >= end_lba) break;
  }
  if (meta) return catalog_.ApplyBlockOps({}, std::span<const FileMetaUpdate>(meta, 1)).status();
  return Status::Ok();
}

Status Engine::Zero(FileRef f, uint64_t offset, uint64_t len, uint64_t size, const FileMetaUpdate& meta) {
  uint64_t end = std::min(offset + len, size);
  if (offset >= end) return catalog_.ApplyBlockOps({}, std::span<const FileMetaUpdate>(&meta, 1)).status();
  uint64_t first_whole = DivUp(offset, kBlockSize);
  uint64_t end_whole = end >> kBlockShift;  // exclusive
  // A range inside one block: rewrite that block.
  if (first_whole > end_whole) {
    std::vector<uint8_t> zeros(end - offset, 0);
    return Write(f, offset, zeros, size, meta);
  }
  if ((offset & (kBlockSize - 1)) != 0) {
    std::vector<uint8_t> zeros((first_whole << kBlockShift) - offset, 0);
    CS_RETURN_IF_ERROR(Write(f, offset, zeros, size, meta));
  }
  if ((end & (kBlockSize - 1)) != 0) {
    std::vector<uint8_t> zeros(end - (end_whole << kBlockShift), 0);
    CS_RETURN_IF_ERROR(Write(f, end_whole << kBlockShift, zeros, size, meta));
  }
  return DeleteRange(f, first_whole, end_whole, &meta);
}

Status Engine::Truncate(FileRef f, uint64_t old_size, uint64_t new_size, const FileMetaUpdate& meta) {
  if (new_size >= old_size) {
    return catalog_.ApplyBlockOps({}, std::span<const FileMetaUpdate>(&meta, 1)).status();
  }
  // Zero the tail of the new last block so that growing again reads zeros.
  if ((new_size & (kBlockSize - 1)) != 0) {
    uint64_t block_end = std::min(old_size, DivUp(new_size, kBlockSize) << kBlockShift);
    std::vector<uint8_t> zeros(block_end - new_size, 0);
    CS_RETURN_IF_ERROR(Write(f, new_size, zeros, old_size, meta));
  }
  return DeleteRange(f, DivUp(new_size, kBlockSize), kMaxLba + 1, &meta);
}

Status Engine::Reclaim(FileRef f, uint64_t /*size*/) {
  CS_RETURN_IF_ERROR(DeleteRange(f, 0, kMaxLba + 1, nullptr));
  return catalog_.DropFile(f.file_id);
}

Status Engine::Sync() { return catalog_.Sync(); }

Result<std::optional<uint64_t>> Engine::NextData(FileRef f, uint64_t offset) {
  auto r = catalog_.NextMapped(f.file_id, offset >> kBlockShift);
  if (!r.ok()) return r.status();
  if (!*r) return std::optional<uint64_t>();
  return std::optional<uint64_t>(std::max(offset, **r << kBlockShift));
}

}  // namespace chainswap
