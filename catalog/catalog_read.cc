// The catalog's reads and statistics. ReadBlocks and MappedBlocksWithin run
// on a reader connection (reader_pool.h) and never take mu_ (a read-only
// catalog has no reader connections: they use the writer connection); the
// others run on the writer connection under mu_. The SQL is in
// catalog_sql.h.
#include "catalog/catalog.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "catalog/catalog_sql.h"
#include "catalog/stored_block.h"

namespace chainswap {

namespace {

// The LAT entries of [lba, end) of a file, as (lba, pblock), by lba.
// `q` is a prepared kLatRange.
Status QueryLatRange(sql::Stmt& q, int64_t file_id, uint64_t lba, uint64_t end,
                     std::vector<std::pair<uint64_t, int64_t>>& out) {
  q.Reset().Bind(1, file_id).Bind(2, static_cast<int64_t>(lba)).Bind(3, static_cast<int64_t>(end));
  CS_RETURN_IF_ERROR(
      q.ForEachRow([&](const sql::Stmt& row) { out.emplace_back(static_cast<uint64_t>(row.Int(0)), row.Int(1)); }));
  q.Reset();
  return Status::Ok();
}

}  // namespace

Status Catalog::ReadBlocks(int64_t file_id, uint64_t lba, uint32_t count, uint8_t* out) {
  if (rados_mode_) return ReadBlocksRados(file_id, lba, count, out);
  std::vector<std::pair<uint64_t, int64_t>> mapped;  // (lba, pblock)
  // From the LAT lookup to the last store read: compaction does not free
  // an extent this read may have looked up (moving_mu_).
  ReaderLock moving(&moving_mu_);
  auto reader = options_.read_only ? nullptr : readers_.Acquire();
  if (reader) {
    CS_RETURN_IF_ERROR(QueryLatRange(reader->st->lat_range, file_id, lba, lba + count, mapped));
  } else {  // read-only tools: the main connection
    MutexLock lock(&mu_);
    CS_RETURN_IF_ERROR(QueryLatRange(st_->lat_range, file_id, lba, lba + count, mapped));
  }
  // Holes are zeros; mapped runs of consecutive raw slots are read in one
  // pread, a packed block alone (its own sectors only), all outside every
  // lock (a referenced slot or sector is never rewritten).
  size_t next_zero_from = 0;
  size_t i = 0;
  while (i < mapped.size()) {
    const int64_t pb = mapped[i].second;
    size_t j = i + 1;
    while (!IsPacked(pb) && j < mapped.size() && mapped[j].first == mapped[j - 1].first + 1 &&
           mapped[j].second == mapped[j - 1].second + 1)
      ++j;
    size_t first = mapped[i].first - lba;
    if (first > next_zero_from)
      std::memset(out + next_zero_from * kBlockSize, 0, (first - next_zero_from) * kBlockSize);
    if (IsPacked(pb)) {
      CS_RETURN_IF_ERROR(ReadStoredBlock(*store_, pb, out + first * kBlockSize));
    } else {
      CS_RETURN_IF_ERROR(store_->ReadSlots(static_cast<uint64_t>(pb), static_cast<uint32_t>(j - i),
                                           out + first * kBlockSize));
    }
    // Zero blocks are never stored: a referenced block reading as zeros is
    // lost data (a zeroed or replaced store), never a valid answer.
    for (size_t k = 0; k < j - i; ++k) {
      if (IsZeroBlock(out + (first + k) * kBlockSize))
        return Status::Error(EIO, "stored block " + std::to_string(mapped[i + k].second) +
                                      " reads as zeros: the content store lost its data (run chainswap fsck)");
    }
    next_zero_from = first + (j - i);
    i = j;
  }
  if (next_zero_from < count)
    std::memset(out + next_zero_from * kBlockSize, 0, (count - next_zero_from) * kBlockSize);
  return Status::Ok();
}

Result<uint64_t> Catalog::MappedBlocks(int64_t file_id) {
  MutexLock lock(&mu_);
  auto& q = st_->file_mapped;
  q.Reset().Bind(1, file_id);
  auto r = q.Step();
  if (!r.ok()) return r.status();
  uint64_t n = *r ? static_cast<uint64_t>(q.Int(0)) : 0;
  q.Reset();
  return n;
}

Result<Catalog::MappedCount> Catalog::MappedBlocksWithin(int64_t file_id,
                                                          std::span<const std::pair<uint64_t, uint64_t>> ranges) {
  auto reader = options_.read_only ? nullptr : readers_.Acquire();
  if (!reader) {  // read-only tools: nothing is staged, the total is all there is
    auto total = MappedBlocks(file_id);
    if (!total.ok()) return total.status();
    MappedCount c;
    c.total = *total;
    return c;
  }
  // One read transaction: the total and the counts come from one snapshot.
  CS_RETURN_IF_ERROR(reader->db.Exec(catalog_sql::kBeginRead));
  struct EndRead {
    sql::Db& db;
    ~EndRead() { (void)db.Exec(catalog_sql::kEndRead); }
  } end_read{reader->db};
  MappedCount c;
  auto one = [](sql::Stmt& q) -> Result<uint64_t> {
    auto r = q.Step();
    if (!r.ok()) return r.status();
    uint64_t n = *r && !q.IsNull(0) ? static_cast<uint64_t>(q.Int(0)) : 0;
    q.Reset();
    return n;
  };
  reader->st->file_mapped.Reset().Bind(1, file_id);
  auto total = one(reader->st->file_mapped);
  if (!total.ok()) return total.status();
  c.total = *total;
  for (auto [a, b] : ranges) {
    const int64_t last = static_cast<int64_t>(std::min<uint64_t>(b, uint64_t{INT64_MAX}));
    reader->st->lat_count.Reset().Bind(1, file_id).Bind(2, static_cast<int64_t>(a)).Bind(3, last);
    auto n = one(reader->st->lat_count);
    if (!n.ok()) return n.status();
    c.within += *n;
  }
  return c;
}

Result<std::optional<uint64_t>> Catalog::NextMapped(int64_t file_id, uint64_t lba) {
  MutexLock lock(&mu_);
  auto& q = st_->lat_next;
  q.Reset().Bind(1, file_id).Bind(2, static_cast<int64_t>(lba));
  auto r = q.Step();
  if (!r.ok()) return r.status();
  std::optional<uint64_t> out;
  if (*r && !q.IsNull(0)) out = static_cast<uint64_t>(q.Int(0));
  q.Reset();
  return out;
}

// ---------------------------------------------------------------- statistics

Result<std::vector<ChainStats>> Catalog::Stats() {
  MutexLock lock(&mu_);
  return QueryChainStats(db_);
}

Result<std::vector<ChainStats>> QueryChainStats(const sql::Db& db) {
  return sql::QueryAll(db, catalog_sql::kChainStats, [](const sql::Stmt& row) {
    ChainStats c;
    c.dedup_id = row.Int(0);
    c.name = row.Text(1);
    c.files = static_cast<uint64_t>(row.Int(2));
    c.logical_bytes = static_cast<uint64_t>(row.Int(3));
    c.nonzero_bytes = static_cast<uint64_t>(row.Int(4));
    c.zero_blocks = static_cast<uint64_t>(row.Int(5));
    c.stored_bytes = static_cast<uint64_t>(row.Int(6));
    c.blocks = static_cast<uint64_t>(row.Int(7));
    c.compressed_blocks = static_cast<uint64_t>(row.Int(8));
    return c;
  });
}

Result<HashTableFigures> QueryHashTableFigures(const sql::Db& db) {
  auto q = sql::Stmt::Prepare(db, catalog_sql::kHashCounters);
  if (!q.ok()) return q.status();
  auto r = q->Step();
  if (!r.ok()) return r.status();
  HashTableFigures f;
  if (!*r) return f;
  f.known = !q->IsNull(0) && !q->IsNull(1);
  if (f.known) {
    f.entries = static_cast<uint64_t>(std::max<int64_t>(q->Int(0), 0));
    f.unindexed = static_cast<uint64_t>(std::max<int64_t>(q->Int(1), 0));
  }
  if (!q->IsNull(2)) f.limit_entries = static_cast<uint64_t>(std::max<int64_t>(q->Int(2), 0));
  return f;
}

Result<std::vector<FileStats>> Catalog::PerFileStats() {
  MutexLock lock(&mu_);
  return sql::QueryAll(db_, catalog_sql::kFileStats, [](const sql::Stmt& row) {
    FileStats f;
    f.file_id = row.Int(0);
    f.dedup_id = row.Int(1);
    f.chain = row.Text(2);
    f.name = row.Text(3);
    f.logical_bytes = static_cast<uint64_t>(row.Int(4));
    f.nonzero_bytes = static_cast<uint64_t>(row.Int(5));
    f.zero_blocks = static_cast<uint64_t>(row.Int(6));
    f.stored_bytes = static_cast<uint64_t>(row.Int(7));
    f.uncompressed_bytes = static_cast<uint64_t>(row.Int(8));
    return f;
  });
}

}  // namespace chainswap
