// The catalog's apply routine (SPEC §4, §5): ApplyBlockOps and CloneRange,
// refcounts, the slots they take from and give back to the allocator, and
// the chain hash index (lookups, and the merge of its log). Every
// transaction runs on the writer connection under mu_ and spans one
// database transaction, one allocator transaction (slot_allocator.h) and
// one hash-log transaction (hash_log.h): all commit, or all roll back. The
// SQL is in catalog_sql.h.
#include "catalog/catalog.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "catalog/catalog_sql.h"
#include "catalog/compression.h"
#include "catalog/apply_txn.h"
#include "catalog/stored_block.h"
#include "catalog/write_prep.h"

namespace chainswap {


namespace {

// A raw PAT entry's pblock is its content-store slot (stored_block.h).
int64_t SlotToPblock(uint64_t s) { return static_cast<int64_t>(s); }
uint64_t PblockToSlot(int64_t p) { return static_cast<uint64_t>(p); }

// New blocks reach the store before the transaction that references them
// commits; contiguous raw slots go out in one gather write, straight from
// the callers' buffers, contiguous packed extents in one write.
Status WriteNewBlocks(ContentStore& store, const std::map<int64_t, const uint8_t*>& new_data,
                      const std::map<uint64_t, std::vector<uint8_t>>& new_packed) {
  std::vector<uint8_t> buf;
  uint64_t buf_first = 0;
  for (const auto& [first, bytes] : new_packed) {
    if (!buf.empty() && first != buf_first + buf.size() / kSectorSize) {
      CS_RETURN_IF_ERROR(store.WriteSectors(buf_first, buf.size() / kSectorSize, buf.data()));
      buf.clear();
    }
    if (buf.empty()) buf_first = first;
    buf.insert(buf.end(), bytes.begin(), bytes.end());
  }
  if (!buf.empty()) CS_RETURN_IF_ERROR(store.WriteSectors(buf_first, buf.size() / kSectorSize, buf.data()));
  std::vector<const uint8_t*> run;
  uint64_t run_start = 0;
  for (auto it = new_data.lower_bound(0); it != new_data.end(); ++it) {
    const uint64_t slot = PblockToSlot(it->first);
    const uint8_t* data = it->second;
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
  return a->slot;
}

Result<SectorExtent> Catalog::AllocSectorsLocked(uint32_t sectors) {
  auto e = sectors_.Allocate(sectors);
  if (!e.ok() && e.status().code() == ENOSPC && (sectors_.HasPending() || slots_.HasSlotsToRelease())) {
    // At capacity: make the pending frees durable to reuse them.
    CS_RETURN_IF_ERROR(SyncLocked(/*idle=*/false));
    e = sectors_.Allocate(sectors);
  }
  return e;
}

Status Catalog::LogIndexChangeLocked(int64_t key, int64_t pblock, bool add) {
  const int64_t seq = add ? hash_log_.Add(key, pblock) : hash_log_.Remove(key, pblock);
  st_->hash_log_append.Reset().Bind(1, seq).Bind(2, key).Bind(3, pblock).Bind(4, add ? 1 : 0);
  return st_->hash_log_append.Run();
}

Status Catalog::UnrefLocked(int64_t pblock, int64_t n, ApplyTxn& txn) {
  auto& get = st_->pat_get;
  get.Reset().Bind(1, pblock);
  auto r = get.Step();
  if (!r.ok()) return r.status();
  if (!*r) {
    // A LAT entry pointed at a block the PAT does not know: catalog damage.
    spdlog::error("catalog: LAT referenced unknown physical block {}", pblock);
    return Status::Error(EUCLEAN, "LAT references unknown physical block " + std::to_string(pblock));
  }
  const int64_t dedup_id = get.Int(0);
  const int64_t rc = get.Int(1);
  const bool indexed = !get.IsNull(2);  // an unindexed block has no key
  const int64_t key = indexed ? get.Int(2) : 0;
  get.Reset();
  if (rc > n) {
    st_->pat_add_ref.Reset().Bind(1, pblock).Bind(2, -n);
    return st_->pat_add_ref.Run();
  }
  if (rc < n) spdlog::error("catalog: refcount of block {} was {} < {} references", pblock, rc, n);
  st_->pat_delete.Reset().Bind(1, pblock);
  CS_RETURN_IF_ERROR(st_->pat_delete.Run());
  if (indexed) {
    CS_RETURN_IF_ERROR(LogIndexChangeLocked(key, pblock, /*add=*/false));
    st_->block_hash_delete.Reset().Bind(1, pblock);
    CS_RETURN_IF_ERROR(st_->block_hash_delete.Run());
    --txn.entries_delta;
  } else {
    --txn.unindexed_delta;  // no entry to remove, no whole hash kept
  }
  if (rados_mode_) {
    CS_RETURN_IF_ERROR(RadosFreeLocked(pblock, dedup_id, txn));  // its reference is dropped after the commit
  } else if (IsPacked(pblock)) {
    sectors_.Free(PackedExtent(pblock));
    txn.new_packed.erase(PackedExtent(pblock).first);
  } else {
    slots_.Free(PblockToSlot(pblock));
  }
  txn.new_data.erase(pblock);
  ++txn.res.blocks_freed;
  return Status::Ok();
}

Status Catalog::HashCandidatesLocked(int64_t key, std::vector<int64_t>* cands) {
  // The unmerged adds of the hash log and hash_index's entries.
  cands->clear();
  hash_log_.Candidates(key, cands);
  auto& find = st_->hash_index_find;
  find.Reset().Bind(1, key);
  CS_RETURN_IF_ERROR(find.ForEachRow([&](const sql::Stmt& row) { cands->push_back(row.Int(0)); }));
  find.Reset();
  std::sort(cands->begin(), cands->end());
  cands->erase(std::unique(cands->begin(), cands->end()), cands->end());
  return Status::Ok();
}

Result<bool> Catalog::IsBlockOfKeyLocked(int64_t pblock, int64_t dedup_id, int64_t key) {
  // hash_index may still name a freed (or reused) slot whose remove is not
  // merged yet, and keys of other chains may be equal.
  auto& get = st_->pat_get;
  get.Reset().Bind(1, pblock);
  auto r = get.Step();
  if (!r.ok()) return r.status();
  // (An unindexed block has no key: a stale entry of a pruned block.)
  const bool same = *r && get.Int(0) == dedup_id && !get.IsNull(2) && get.Int(2) == key;
  get.Reset();
  return same;
}

Result<std::optional<int64_t>> Catalog::FindDuplicateLocked(const BlockOp& op, const BlockHash& hash, int64_t key,
                                                            ApplyTxn& txn) {
  std::vector<int64_t>& cands = txn.candidates;
  CS_RETURN_IF_ERROR(HashCandidatesLocked(key, &cands));
  const bool trust_hash = !options_.dedup_verify && !force_verify_.load(std::memory_order_relaxed);
  for (int64_t cand : cands) {
    auto same = IsBlockOfKeyLocked(cand, op.dedup_id, key);
    if (!same.ok()) return same.status();
    if (!*same) continue;
    if (rados_mode_) {  // the whole hash, then the bytes as the plan compared them
      auto r = RadosSameBlockLocked(cand, op, hash, txn);
      if (!r.ok()) return r.status();
      if (*r) return std::optional<int64_t>(cand);
      continue;
    }
    if (trust_hash) {
      // Without verify-on-match: the whole hash decides where it is known
      // (blocks stored with dedup_verify off); otherwise the bytes do.
      auto& bh = st_->block_hash_get;
      bh.Reset().Bind(1, cand);
      auto hr = bh.Step();
      if (!hr.ok()) return hr.status();
      const bool known = *hr;
      const bool equal = known && bh.Blob(0).size() == hash.bytes.size() &&
                         std::memcmp(bh.Blob(0).data(), hash.bytes.data(), hash.bytes.size()) == 0;
      bh.Reset();
      if (equal) return std::optional<int64_t>(cand);
      if (known) {
        ++txn.res.collisions;
        spdlog::warn("catalog: hash key collision in chain {} (block {} has another hash); storing separately",
                     op.dedup_id, cand);
        continue;
      }
    }
    // Compared ahead by WritePrep, if no Sync has made space reusable
    // since (the candidate then still holds what the worker read).
    if (op.prepared && op.prepared->store_epoch() == store_epoch_ && op.prepared->VerifiedEqual(cand))
      return std::optional<int64_t>(cand);
    alignas(64) uint8_t buf[kBlockSize];
    const uint8_t* bytes;
    auto pending = txn.new_data.find(cand);
    if (pending != txn.new_data.end()) {
      bytes = pending->second;
    } else {
      CS_RETURN_IF_ERROR(ReadStoredBlock(*store_, cand, buf));
      bytes = buf;
    }
    if (std::memcmp(bytes, op.data, kBlockSize) == 0) return std::optional<int64_t>(cand);
    ++txn.res.collisions;
    spdlog::warn("catalog: hash collision in chain {} (block {} differs); storing separately", op.dedup_id, cand);
  }
  return std::optional<int64_t>();
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
  const int64_t key = HashKey(hash);

  // Current mapping of the LBA.
  std::optional<int64_t> old;
  st_->lat_get.Reset().Bind(1, op.file_id).Bind(2, static_cast<int64_t>(op.lba));
  auto r = st_->lat_get.Step();
  if (!r.ok()) return r.status();
  if (*r) old = st_->lat_get.Int(0);
  st_->lat_get.Reset();

  auto found = FindDuplicateLocked(op, hash, key, txn);
  if (!found.ok()) return found.status();
  const std::optional<int64_t> match = *found;

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
    // Compressed (when on, and it saves a sector) into sectors; otherwise
    // raw into a slot, or into 8 sectors of the pack pages when compression
    // is on (no gap is left in them).
    std::vector<uint8_t> packed;
    if (rados_mode_) {
      auto t = RadosNewBlockLocked(op, hash, txn);
      if (!t.ok()) return t.status();
      target = *t;
    } else if (compress()) {
      CompressedBlock cb;
      if (op.prepared) {  // compressed ahead (write_prep.h), or now by Get()
        cb = op.prepared->Get();
        const auto form = op.prepared->form();
        packed.assign(form.begin(), form.end());
      } else {
        packed.resize(kBlockSize);
        cb = BlockCompressor::Compress(op.data, packed);
        packed.resize(cb.stored_bytes());
      }
      if (cb.raw()) packed.assign(op.data, op.data + kBlockSize);
      else packed.resize(size_t{cb.sectors} * kSectorSize, uint8_t{0});  // whole sectors, zero-padded
      auto e = AllocSectorsLocked(cb.sectors);
      if (!e.ok()) return e.status();
      target = PackedPblock(*e);
      txn.new_packed[e->first] = std::move(packed);
    } else {
      auto slot = AllocSlotLocked();
      if (!slot.ok()) return slot.status();
      target = SlotToPblock(*slot);
    }
    // At the quota, the block is stored without a hash entry.
    // (In RADOS mode every block is indexed: a block this host stores twice
    // would take a second reference on its object.)
    const bool indexed =
        rados_mode_ || hash_limit_ == 0 || static_cast<int64_t>(hash_entries_) + txn.entries_delta < static_cast<int64_t>(hash_limit_);
    auto& ins = st_->pat_insert;
    ins.Reset().Bind(1, target).Bind(2, op.dedup_id);
    if (indexed) ins.Bind(3, key).Bind(4, txn.today);
    else ins.BindNull(3).BindNull(4);
    CS_RETURN_IF_ERROR(ins.Run());
    if (!indexed) {
      ++txn.unindexed_delta;
      ++txn.res.blocks_unindexed;
      if (!quota_logged_) {
        quota_logged_ = true;
        spdlog::warn("catalog: the chain hash table is at its quota (hash_table_limit={} entries): new unique "
                     "blocks are stored without a hash entry and are not deduplicated against (see 'chainswap "
                     "prune')", hash_limit_);
      }
    } else {
      ++txn.entries_delta;
      CS_RETURN_IF_ERROR(LogIndexChangeLocked(key, target, /*add=*/true));
    }
    if (indexed && !options_.dedup_verify && !rados_mode_) {
      // Without verify-on-match, a later match is trusted on the whole hash.
      st_->block_hash_insert.Reset().Bind(1, target).BindBlob(2, hash.bytes);
      CS_RETURN_IF_ERROR(st_->block_hash_insert.Run());
    }
    txn.new_data[target] = op.data;
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

Status Catalog::MergeHashLogLocked(size_t max, std::optional<size_t>* merged) {
  merged->reset();
  if (!hash_log_.frozen_open()) return Status::Ok();
  // In (key, pblock) order: consecutive changes fall into the same leaf of
  // hash_index, which is then written once for all of them.
  const auto chunk = hash_log_.NextChunk(max);
  for (const HashLog::Change& c : chunk) {
    sql::Stmt& q = c.add() ? st_->hash_index_add : st_->hash_index_remove;
    q.Reset().Bind(1, c.key).Bind(2, c.pblock());
    CS_RETURN_IF_ERROR(q.Run());
  }
  if (hash_log_.IsLastChunk(max)) {
    st_->hash_log_truncate.Reset().Bind(1, hash_log_.FrozenEnd());
    CS_RETURN_IF_ERROR(st_->hash_log_truncate.Run());
  }
  *merged = chunk.size();
  return Status::Ok();
}

Status Catalog::BeginApplyLocked(sql::Transaction& db_txn) {
  hash_log_.MaybeFreeze();
  slots_.Begin();
  sectors_.Begin();
  hash_log_.Begin();
  return db_txn.Begin();
}

Status Catalog::CommitApplyLocked(sql::Transaction& db_txn, Status st, std::optional<size_t> merged,
                                  const ApplyTxn* txn) {
  const bool counters = txn && (txn->entries_delta != 0 || txn->unindexed_delta != 0);
  const int64_t entries = counters ? static_cast<int64_t>(hash_entries_) + txn->entries_delta : 0;
  const int64_t unindexed = counters ? static_cast<int64_t>(hash_unindexed_) + txn->unindexed_delta : 0;
  if (st.ok() && counters) {
    st_->set_hash_counters.Reset().Bind(1, std::max<int64_t>(entries, 0)).Bind(2, std::max<int64_t>(unindexed, 0));
    st = st_->set_hash_counters.Run();
  }
  if (st.ok()) st = db_txn.Commit();
  if (!st.ok()) {
    sectors_.Abort();
    slots_.Abort();
    hash_log_.Abort();
    return st;  // db_txn's destructor rolls back
  }
  // Only now may freed slots be punched and handed out again (once the
  // next Sync has made the commit durable).
  slots_.Commit();
  sectors_.Commit();
  hash_log_.Commit();
  if (counters) {
    hash_entries_ = static_cast<uint64_t>(std::max<int64_t>(entries, 0));
    hash_unindexed_ = static_cast<uint64_t>(std::max<int64_t>(unindexed, 0));
  }
  if (merged) hash_log_.ChunkMerged(*merged);
  if (txn && txn->res.blocks_freed > 0) compact_retry_ = true;  // frees may have made pages sparse
  hash_log_pending_.store(hash_log_.log_rows() > 0, std::memory_order_relaxed);
  return Status::Ok();
}

Status Catalog::IdleMergeLocked() {
  hash_log_.MaybeFreeze(/*force=*/true);
  if (!hash_log_.frozen_open()) return Status::Ok();
  sql::Transaction db_txn(db_);
  Status st = BeginApplyLocked(db_txn);
  std::optional<size_t> merged;
  if (st.ok()) st = MergeHashLogLocked(kIdleHashMergeChunk, &merged);
  return CommitApplyLocked(db_txn, st, merged, /*txn=*/nullptr);
}

Result<ApplyResult> Catalog::ApplyBlockOps(std::span<const BlockOp> ops,
                                           std::span<const FileMetaUpdate> meta) {
  if (options_.read_only) return Status::Error(EROFS, "catalog opened read-only");
  if (rados_mode_) return ApplyRados(ops, meta);
  MutexLock lock(&mu_);
  return ApplyLocked(ops, meta, std::nullopt);
}

Status Catalog::PredictWrites(std::span<BlockOp> ops, WritePrep& prep) {
  if (!compress() || options_.read_only) return Status::Ok();
  std::set<std::pair<int64_t, int64_t>> seen;  // (chain, key) of the batch so far
  std::vector<int64_t> cands;
  MutexLock lock(&mu_);
  const bool verify = options_.dedup_verify || force_verify_.load(std::memory_order_relaxed);
  prep.Begin(ops.size(), store_epoch_);
  // Whatever happens below, the worker is told that no more items come.
  struct Last {
    WritePrep& prep;
    ~Last() { prep.Publish(/*last=*/true); }
  } last{prep};
  // One read transaction for all the lookups (each statement outside one
  // would begin and end its own, with a WAL lock taken and dropped each).
  sql::Transaction read(db_);
  CS_RETURN_IF_ERROR(read.BeginRead());
  size_t items = 0;
  for (BlockOp& op : ops) {
    if (op.kind != BlockOp::Kind::kWrite || !op.hash) continue;
    const int64_t key = HashKey(*op.hash);
    if (!seen.emplace(op.dedup_id, key).second) continue;
    CS_RETURN_IF_ERROR(HashCandidatesLocked(key, &cands));
    std::optional<std::optional<int64_t>> item;  // set: an item, with its candidate if a duplicate
    if (cands.empty()) {
      item.emplace();
    } else if (verify) {
      // The first candidate that is a live block of the chain with this
      // key: the one the transaction would read to compare
      // (FindDuplicateLocked, same order); compared ahead if compressed.
      for (int64_t cand : cands) {
        auto same = IsBlockOfKeyLocked(cand, op.dedup_id, key);
        if (!same.ok()) return same.status();
        if (!*same) continue;
        if (IsPacked(cand)) item.emplace(cand);
        break;
      }
    }
    if (!item) continue;
    prep.Add(op, *item);
    // The worker starts on the first items at once: a lead on the
    // transaction, which starts after the prediction.
    if (++items % kPredictPublishItems == 0 || items == 8) prep.Publish(/*last=*/false);
  }
  return read.Commit();
}

Status Catalog::RetireBucket(std::span<const FileMetaUpdate> meta, uint64_t bucket) {
  if (options_.read_only) return Status::Error(EROFS, "catalog opened read-only");
  MutexLock lock(&mu_);
  return ApplyLocked({}, meta, bucket).status();
}

Result<ApplyResult> Catalog::ApplyLocked(std::span<const BlockOp> ops, std::span<const FileMetaUpdate> meta,
                                         std::optional<uint64_t> retired_through, RadosPlan* plan) {
  ApplyTxn txn;
  txn.plan = plan;
  sql::Transaction db_txn(db_);
  Status st = BeginApplyLocked(db_txn);
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
  if (st.ok() && retired_through) st = SetJournalRetiredThroughLocked(*retired_through);
  // Merge twice as many changes of the hash log as this transaction logged
  // (at least kHashMergeChunk): the frozen generation is merged before the
  // active one fills up.
  std::optional<size_t> merged;
  if (st.ok()) st = MergeHashLogLocked(std::max(kHashMergeChunk, 2 * hash_log_.txn_rows()), &merged);
  if (st.ok() && plan) st = SettlePlanLocked(txn);
  // (In RADOS mode the new blocks' objects were written before: the plan.)
  if (st.ok() && !rados_mode_) st = WriteNewBlocks(*store_, txn.new_data, txn.new_packed);
  CS_RETURN_IF_ERROR(CommitApplyLocked(db_txn, st, merged, &txn));
  if (plan) {
    for (auto& [k, ref] : plan->shared) ref.used = ref.used || txn.used_holders.count(ref.holder) > 0;
    for (auto& [k, ref] : plan->privates) ref.used = ref.used || txn.used_holders.count(ref.holder) > 0;
  }
  if (txn.rados_unrefs) rados_unrefs_pending_.store(true, std::memory_order_relaxed);
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
  sql::Transaction db_txn(db_);
  Status st = BeginApplyLocked(db_txn);
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
  CS_RETURN_IF_ERROR(CommitApplyLocked(db_txn, st, /*merged=*/std::nullopt, &txn));
  if (txn.rados_unrefs) rados_unrefs_pending_.store(true, std::memory_order_relaxed);
  return Status::Ok();
}

// ------------------------------------------------------------- compaction

Status Catalog::CompactPackedLocked(uint64_t* moved) {
  *moved = 0;
  // The packed blocks touching the emptiest pack pages (an extent touches
  // page p when its first sector is in [8p - 7, 8p + 8) and it ends past
  // 8p), up to kCompactBlocks of them.
  std::map<int64_t, std::optional<int64_t>> blocks;  // pblock -> hash key
  {
    auto q = sql::Stmt::Prepare(db_, catalog_sql::kPatPackedRange);
    if (!q.ok()) return q.status();
    for (uint64_t page : sectors_.SparsePages(/*min_free=*/1, kCompactBlocks)) {
      const uint64_t first = page * kSectorsPerPage;
      const uint64_t lo = first >= kSectorsPerPage - 1 ? first - (kSectorsPerPage - 1) : 0;
      const uint64_t hi = first + kSectorsPerPage;  // exclusive
      q->Reset().Bind(1, PackedPblock({hi - 1, kSectorsPerPage})).Bind(2, PackedPblock({lo, 1}));
      CS_RETURN_IF_ERROR(q->ForEachRow([&](const sql::Stmt& row) {
        const int64_t pb = row.Int(0);
        if (PackedExtent(pb).end() <= first) return;  // ends before the page
        blocks[pb] = row.IsNull(1) ? std::nullopt : std::optional<int64_t>(row.Int(1));
      }));
      if (blocks.size() >= kCompactBlocks) break;
    }
  }
  if (blocks.empty()) return Status::Ok();

  // Statements of this pass (once per pass; cs_remap is a table of the
  // writer connection's temp schema, created by the first pass).
  CS_RETURN_IF_ERROR(db_.Exec(catalog_sql::kCreateRemap));
  auto move = sql::Stmt::Prepare(db_, catalog_sql::kPatMove);
  if (!move.ok()) return move.status();
  auto remap = sql::Stmt::Prepare(db_, catalog_sql::kRemapInsert);
  if (!remap.ok()) return remap.status();
  auto bh_move = sql::Stmt::Prepare(db_, catalog_sql::kBlockHashMove);
  if (!bh_move.ok()) return bh_move.status();

  ApplyTxn txn;
  sql::Transaction db_txn(db_);
  Status st = BeginApplyLocked(db_txn);
  // In sector order: the new extents keep the old order.
  for (auto it = blocks.rbegin(); st.ok() && it != blocks.rend(); ++it) {
    const int64_t old_pb = it->first;
    const SectorExtent old_e = PackedExtent(old_pb);
    std::vector<uint8_t> bytes(size_t{old_e.count} * kSectorSize);
    st = store_->ReadSectors(old_e.first, old_e.count, bytes.data());
    if (!st.ok()) break;
    auto e = sectors_.AllocateFresh(old_e.count);
    if (!e.ok()) {
      st = e.status();
      break;
    }
    const int64_t new_pb = PackedPblock(*e);
    st = move->Reset().Bind(1, old_pb).Bind(2, new_pb).Run();
    if (st.ok()) st = st_->pat_delete.Reset().Bind(1, old_pb).Run();
    if (st.ok() && it->second) {
      st = LogIndexChangeLocked(*it->second, old_pb, /*add=*/false);
      if (st.ok()) st = LogIndexChangeLocked(*it->second, new_pb, /*add=*/true);
    }
    if (st.ok()) st = bh_move->Reset().Bind(1, old_pb).Bind(2, new_pb).Run();
    if (st.ok()) st = remap->Reset().Bind(1, old_pb).Bind(2, new_pb).Run();
    sectors_.Free(old_e);
    txn.new_packed[e->first] = std::move(bytes);
  }
  if (st.ok()) st = db_.Exec(catalog_sql::kLatRemap);
  if (st.ok()) st = db_.Exec(catalog_sql::kRemapClear);
  std::optional<size_t> merged;
  if (st.ok()) st = MergeHashLogLocked(std::max(kHashMergeChunk, 2 * hash_log_.txn_rows()), &merged);
  if (st.ok()) st = WriteNewBlocks(*store_, txn.new_data, txn.new_packed);
  CS_RETURN_IF_ERROR(CommitApplyLocked(db_txn, st, merged, &txn));
  // Reads that looked a moved block up before the commit finish before the
  // Sync that follows frees its old extent; later ones see the new pblock.
  { WriterLock grace(&moving_mu_); }
  *moved = blocks.size();
  return Status::Ok();
}

// ------------------------------------------------------------------ prune

Status Catalog::PruneChunkLocked(std::span<const std::pair<int64_t, int64_t>> blocks, uint64_t* pruned) {
  auto up = sql::Stmt::Prepare(db_, catalog_sql::kPatUnindex);
  if (!up.ok()) return up.status();
  ApplyTxn txn;
  sql::Transaction db_txn(db_);
  Status st = BeginApplyLocked(db_txn);
  uint64_t n = 0;
  for (const auto& [pblock, key] : blocks) {
    if (!st.ok()) break;
    up->Reset().Bind(1, pblock);
    st = up->Run();
    // No change: the block is no longer unique, or has no key already.
    if (!st.ok() || db_.Changes() == 0) continue;
    st = LogIndexChangeLocked(key, pblock, /*add=*/false);
    if (st.ok()) {
      st_->block_hash_delete.Reset().Bind(1, pblock);
      st = st_->block_hash_delete.Run();
    }
    --txn.entries_delta;
    ++txn.unindexed_delta;
    ++n;
  }
  std::optional<size_t> merged;
  if (st.ok()) st = MergeHashLogLocked(std::max(kHashMergeChunk, 2 * hash_log_.txn_rows()), &merged);
  CS_RETURN_IF_ERROR(CommitApplyLocked(db_txn, st, merged, &txn));
  *pruned += n;
  return Status::Ok();
}

Result<PruneResult> Catalog::PruneHashIndex(int64_t last_born_day, uint64_t max_entries) {
  if (options_.read_only) return Status::Error(EROFS, "catalog opened read-only");
  MutexLock lock(&mu_);
  // The candidates first (oldest first), then the transactions: a query
  // does not stay open across commits.
  std::vector<std::pair<int64_t, int64_t>> blocks;  // (pblock, hash key)
  {
    auto q = sql::Stmt::Prepare(db_, catalog_sql::kPruneCandidates);
    if (!q.ok()) return q.status();
    q->Bind(1, last_born_day);
    while (blocks.size() < max_entries) {
      auto r = q->Step();
      if (!r.ok()) return r.status();
      if (!*r) break;
      blocks.emplace_back(q->Int(0), q->Int(1));
    }
  }
  PruneResult res;
  for (size_t i = 0; i < blocks.size(); i += kPruneChunk) {
    const size_t n = std::min(kPruneChunk, blocks.size() - i);
    CS_RETURN_IF_ERROR(PruneChunkLocked(std::span(blocks).subspan(i, n), &res.pruned));
  }
  // Merge every remove into hash_index now (the next mount would
  // otherwise), then fold the WAL into the database.
  for (size_t rounds = 0; hash_log_.log_rows() > 0 && rounds < 1000000; ++rounds)
    CS_RETURN_IF_ERROR(IdleMergeLocked());
  CS_RETURN_IF_ERROR(SyncLocked(/*idle=*/true));
  res.entries_left = hash_entries_;
  res.unindexed = hash_unindexed_;
  return res;
}

Result<uint64_t> Catalog::UniqueHashEntries() {
  MutexLock lock(&mu_);
  auto q = sql::Stmt::Prepare(db_, catalog_sql::kUniqueHashEntries);
  if (!q.ok()) return q.status();
  auto r = q->Step();
  if (!r.ok()) return r.status();
  return static_cast<uint64_t>(*r ? q->Int(0) : 0);
}

HashTableFigures Catalog::HashTable() {
  MutexLock lock(&mu_);
  return HashTableFigures{true, hash_entries_, hash_unindexed_, hash_limit_};
}

}  // namespace chainswap
