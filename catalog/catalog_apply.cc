// The catalog's apply routine (SPEC §4, §5): ApplyBlockOps and CloneRange,
// refcounts, and the slots they take from and give back to the allocator.
// Every transaction runs on the writer connection under mu_ and spans one
// database transaction and one allocator transaction (slot_allocator.h):
// both commit, or both roll back. The SQL is in catalog_sql.h.
#include "catalog/catalog.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "catalog/catalog_sql.h"

namespace chainswap {

// What one transaction of the apply routine has done so far.
struct Catalog::ApplyTxn {
  ApplyResult res;
  std::map<uint64_t, const uint8_t*> new_data;  // slot -> bytes to store before the commit
  std::map<int64_t, int64_t> mapped_delta;      // file -> LAT entry delta
};

namespace {

// A PAT entry's pblock is its content-store slot.
int64_t SlotToPblock(uint64_t s) { return static_cast<int64_t>(s); }
uint64_t PblockToSlot(int64_t p) { return static_cast<uint64_t>(p); }

// New blocks reach the store before the transaction that references them
// commits; contiguous slots go out in one gather write, straight from the
// callers' buffers.
Status WriteNewBlocks(ContentStore& store, const std::map<uint64_t, const uint8_t*>& new_data) {
  std::vector<const uint8_t*> run;
  uint64_t run_start = 0;
  for (const auto& [slot, data] : new_data) {
    if (!run.empty() && slot != run_start + run.size()) {
      CS_RETURN_IF_ERROR(store.WriteSlots(run_start, run));
      run.clear();
    }
    if (run.empty()) run_start = slot;
    run.push_back(data);
  }
  if (!run.empty()) return store.WriteSlots(run_start, run);
  return Status::Ok();
}

}  // namespace

Result<uint64_t> Catalog::AllocSlotLocked() {
  if (slots_.NeedsSyncToAllocate()) {
    // The store may not grow: make the pending frees durable to reuse them.
    CS_RETURN_IF_ERROR(SyncLocked(/*idle=*/false));
  }
  auto a = slots_.Allocate();
  if (!a.ok()) return a.status();
  if (a->from_free) {
    st_->free_slot_delete.Reset().Bind(1, SlotToPblock(a->slot));
    CS_RETURN_IF_ERROR(st_->free_slot_delete.Run());
  }
  return a->slot;
}

Status Catalog::UnrefLocked(int64_t pblock, int64_t n, ApplyTxn& txn) {
  auto& get = st_->pat_refcount;
  get.Reset().Bind(1, pblock);
  auto r = get.Step();
  if (!r.ok()) return r.status();
  if (!*r) {
    // A LAT entry pointed at a block the PAT does not know: catalog damage.
    spdlog::error("catalog: LAT referenced unknown physical block {}", pblock);
    return Status::Error(EUCLEAN, "LAT references unknown physical block " + std::to_string(pblock));
  }
  int64_t rc = get.Int(0);
  get.Reset();
  if (rc > n) {
    st_->pat_add_ref.Reset().Bind(1, pblock).Bind(2, -n);
    return st_->pat_add_ref.Run();
  }
  if (rc < n) spdlog::error("catalog: refcount of block {} was {} < {} references", pblock, rc, n);
  st_->pat_delete.Reset().Bind(1, pblock);
  CS_RETURN_IF_ERROR(st_->pat_delete.Run());
  st_->free_slot_insert.Reset().Bind(1, pblock);
  CS_RETURN_IF_ERROR(st_->free_slot_insert.Run());
  slots_.Free(PblockToSlot(pblock));
  txn.new_data.erase(PblockToSlot(pblock));
  ++txn.res.blocks_freed;
  return Status::Ok();
}

Status Catalog::ApplyWriteLocked(const BlockOp& op, ApplyTxn& txn) {
  if (!op.hash && IsZeroBlock(op.data)) {
    BlockOp del = op;
    del.kind = BlockOp::Kind::kDelete;
    del.count = 1;
    return ApplyDeleteLocked(del, txn);
  }
  BlockHash hash;
  if (op.hash) {
    hash = *op.hash;
  } else {
    auto h = HasherForLocked(op.dedup_id);
    if (!h.ok()) return h.status();
    hash = (*h)->Hash(op.data);
  }

  // Current mapping of the LBA.
  std::optional<int64_t> old;
  st_->lat_get.Reset().Bind(1, op.file_id).Bind(2, static_cast<int64_t>(op.lba));
  auto r = st_->lat_get.Step();
  if (!r.ok()) return r.status();
  if (*r) old = st_->lat_get.Int(0);
  st_->lat_get.Reset();

  // Look the content up in the chain hash table; verify candidates' bytes.
  std::optional<int64_t> match;
  std::vector<int64_t> candidates;
  auto& find = st_->hash_find;
  find.Reset().Bind(1, op.dedup_id).BindBlob(2, hash.bytes);
  CS_RETURN_IF_ERROR(find.ForEachRow([&](const sql::Stmt& row) { candidates.push_back(row.Int(0)); }));
  find.Reset();
  for (int64_t cand : candidates) {
    if (!options_.dedup_verify && !force_verify_.load(std::memory_order_relaxed)) {
      match = cand;
      break;
    }
    alignas(64) uint8_t buf[kBlockSize];
    const uint8_t* bytes;
    auto pending = txn.new_data.find(PblockToSlot(cand));
    if (pending != txn.new_data.end()) {
      bytes = pending->second;
    } else {
      CS_RETURN_IF_ERROR(store_->ReadSlots(PblockToSlot(cand), 1, buf));
      bytes = buf;
    }
    if (std::memcmp(bytes, op.data, kBlockSize) == 0) {
      match = cand;
      break;
    }
    ++txn.res.collisions;
    spdlog::warn("catalog: hash collision in chain {} (block {} differs); storing separately",
                 op.dedup_id, cand);
  }

  if (match && old && *match == *old) return Status::Ok();  // already in this state

  // The old block is let go first: rewriting a block nothing else shares
  // needs no extra capacity (its slot is reusable only after the commit).
  if (old) {
    CS_RETURN_IF_ERROR(UnrefLocked(*old, 1, txn));
  } else {
    txn.mapped_delta[op.file_id] += 1;
  }
  int64_t target;
  if (match) {
    st_->pat_add_ref.Reset().Bind(1, *match).Bind(2, 1);
    CS_RETURN_IF_ERROR(st_->pat_add_ref.Run());
    target = *match;
    ++txn.res.blocks_deduped;
  } else {
    auto slot = AllocSlotLocked();
    if (!slot.ok()) return slot.status();
    target = SlotToPblock(*slot);
    st_->pat_insert.Reset().Bind(1, target).Bind(2, op.dedup_id).BindBlob(3, hash.bytes);
    CS_RETURN_IF_ERROR(st_->pat_insert.Run());
    txn.new_data[*slot] = op.data;
    ++txn.res.blocks_stored;
  }
  st_->lat_put.Reset().Bind(1, op.file_id).Bind(2, static_cast<int64_t>(op.lba)).Bind(3, target);
  return st_->lat_put.Run();
}

Status Catalog::ApplyDeleteLocked(const BlockOp& op, ApplyTxn& txn) {
  if (op.count == 0) return Status::Ok();
  uint64_t end = op.lba + op.count;
  if (end < op.lba || end > static_cast<uint64_t>(INT64_MAX)) end = static_cast<uint64_t>(INT64_MAX);
  std::map<int64_t, int64_t> unref;  // pblock -> references dropped
  auto& del = st_->lat_delete_range;
  del.Reset().Bind(1, op.file_id).Bind(2, static_cast<int64_t>(op.lba)).Bind(3, static_cast<int64_t>(end));
  int64_t removed = 0;
  CS_RETURN_IF_ERROR(del.ForEachRow([&](const sql::Stmt& row) {
    unref[row.Int(0)] += 1;
    ++removed;
  }));
  del.Reset();
  if (removed) txn.mapped_delta[op.file_id] -= removed;
  for (auto [pblock, n] : unref) CS_RETURN_IF_ERROR(UnrefLocked(pblock, n, txn));
  return Status::Ok();
}

Status Catalog::AddMappedLocked(const ApplyTxn& txn) {
  for (auto [file, delta] : txn.mapped_delta) {
    st_->file_add_mapped.Reset().Bind(1, file).Bind(2, delta);
    CS_RETURN_IF_ERROR(st_->file_add_mapped.Run());
  }
  return Status::Ok();
}

Result<ApplyResult> Catalog::ApplyBlockOps(std::span<const BlockOp> ops,
                                           std::span<const FileMetaUpdate> meta) {
  if (options_.read_only) return Status::Error(EROFS, "catalog opened read-only");
  MutexLock lock(&mu_);
  ApplyTxn txn;
  slots_.Begin();
  sql::Transaction db_txn(db_);
  Status st = db_txn.Begin();
  for (size_t i = 0; st.ok() && i < ops.size(); ++i) {
    st = ops[i].kind == BlockOp::Kind::kWrite ? ApplyWriteLocked(ops[i], txn)
                                              : ApplyDeleteLocked(ops[i], txn);
  }
  if (st.ok()) st = AddMappedLocked(txn);
  for (const auto& m : meta) {
    if (!st.ok()) break;
    st_->file_set_meta.Reset().Bind(1, m.file_id).Bind(2, static_cast<int64_t>(m.size));
    st_->file_set_meta.Bind(3, m.mtime_ns).Bind(4, m.ctime_ns);
    st = st_->file_set_meta.Run();
  }
  if (st.ok()) st = WriteNewBlocks(*store_, txn.new_data);
  if (st.ok()) st = db_txn.Commit();
  if (!st.ok()) {
    slots_.Abort();
    return st;  // db_txn's destructor rolls back
  }
  // Only now may freed slots be punched and handed out again (once the
  // next Sync has made the commit durable).
  slots_.Commit();
  // Bound the WAL between retirements: past twice the checkpoint size, sync
  // (store, then WAL) and checkpoint now; the next commit starts it over.
  if (WalBytesLocked() > 2 * kWalCheckpointBytes) {
    Status ss = SyncLocked(/*idle=*/false);
    if (!ss.ok()) spdlog::warn("catalog sync: {}", ss.ToString());
  }
  return txn.res;
}

Status Catalog::CloneRange(int64_t src_file, int64_t dst_file, uint64_t src_lba, uint64_t dst_lba,
                           uint64_t count) {
  if (options_.read_only) return Status::Error(EROFS, "catalog opened read-only");
  if (count == 0) return Status::Ok();
  if (src_file == dst_file && src_lba < dst_lba + count && dst_lba < src_lba + count)
    return Status::Error(EINVAL, "overlapping clone ranges in one file");
  MutexLock lock(&mu_);
  auto sc = ChainOfFileLocked(src_file);
  if (!sc.ok()) return sc.status();
  auto dc = ChainOfFileLocked(dst_file);
  if (!dc.ok()) return dc.status();
  if (*sc != *dc) return Status::Error(EXDEV, "clone across chains (different dedup domains)");

  ApplyTxn txn;
  slots_.Begin();
  sql::Transaction db_txn(db_);
  Status st = db_txn.Begin();
  // The destination range becomes a hole first (old blocks unreferenced).
  if (st.ok()) {
    BlockOp del;
    del.kind = BlockOp::Kind::kDelete;
    del.file_id = dst_file;
    del.dedup_id = *dc;
    del.lba = dst_lba;
    del.count = count;
    st = ApplyDeleteLocked(del, txn);
  }
  const int64_t src_first = static_cast<int64_t>(src_lba);
  const int64_t src_end = static_cast<int64_t>(src_lba + count);
  if (st.ok()) {
    auto up = sql::Stmt::Prepare(db_, catalog_sql::kPatAddRefsOfRange);
    if (!up.ok()) st = up.status();
    else {
      up->Bind(1, src_file).Bind(2, src_first).Bind(3, src_end);
      st = up->Run();
    }
  }
  if (st.ok()) {
    auto ins = sql::Stmt::Prepare(db_, catalog_sql::kLatCopyRange);
    if (!ins.ok()) st = ins.status();
    else {
      const int64_t delta = static_cast<int64_t>(dst_lba) - src_first;
      ins->Bind(1, dst_file).Bind(2, delta).Bind(3, src_file).Bind(4, src_first).Bind(5, src_end);
      st = ins->Run();
      if (st.ok()) txn.mapped_delta[dst_file] += db_.Changes();
    }
  }
  if (st.ok()) st = AddMappedLocked(txn);
  if (st.ok()) st = db_txn.Commit();
  if (!st.ok()) {
    slots_.Abort();
    return st;  // db_txn's destructor rolls back
  }
  slots_.Commit();
  return Status::Ok();
}

}  // namespace chainswap
