// The catalog's RADOS mode (rados_backend.h, docs/RADOS.md): the apply of a
// destage batch with its references taken in the pool, the drain of the
// references to drop, reads from the pool, chains joined in the pool, and
// the resolution of a crash's leftovers at open.
//
// Write ordering, for the new blocks of a batch (ApplyRados):
//   1. plan (mu_): a holder and a committed rados_intent row per reference
//      to take;
//   2. take (no lock): create-or-reference of every one, all in flight;
//   3. apply (mu_): the usual transaction, whose new blocks take their
//      pblock = holder from the plan and whose rados_intent rows go.
// A crash after 1 or 2 leaves intent rows: the next open drops their
// references (a put by a holder that holds none is ENOLINK: done too), then
// the journal's replay takes new ones under new holders. Holders are never
// reused, so such a put never drops a reference a committed row needs.
// Freeing mirrors it: the transaction moves the block's row to rados_unref,
// and the put runs after the commit (DrainRadosUnrefs).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstring>

#include "catalog/apply_txn.h"
#include "catalog/catalog.h"
#include "catalog/catalog_sql.h"
#include "catalog/rados_backend.h"
#include "catalog/rados_plan.h"

namespace chainswap {

namespace {

// Planning rounds of one batch before the apply gives up (a round is
// needed again only when a compare found other bytes, or a create was
// refused).
constexpr int kMaxPlanRounds = 4;
// References dropped per drain round (a transaction deletes their rows).
constexpr int64_t kDrainChunk = 4096;
// Operations in flight per RadosBatch.
constexpr size_t kRadosWindow = 64;

RadosPlan::Key PlanKey(int64_t dedup_id, const BlockHash& h) { return {dedup_id, h.bytes}; }

// Every reference of a plan.
std::vector<RadosPlannedRef*> PlannedRefs(RadosPlan& plan) {
  std::vector<RadosPlannedRef*> out;
  for (auto& [k, ref] : plan.shared) out.push_back(&ref);
  for (auto& [k, ref] : plan.privates) out.push_back(&ref);
  return out;
}

bool PutDone(const Status& st) {
  // OK: dropped. ENOLINK: the holder held none (never taken, or dropped by
  // an earlier drain). ENOENT: the object is gone (its last put was made).
  return st.ok() || st.code() == ENOLINK || st.code() == ENOENT;
}

}  // namespace

// ------------------------------------------------------------------ apply

Result<ApplyResult> Catalog::ApplyRados(std::span<const BlockOp> ops, std::span<const FileMetaUpdate> meta) {
  if (!rados_) return Status::Error(ENOTCONN, "catalog " + path_ + " stores its blocks in RADOS: not connected");
  RadosPlan plan;
  Result<ApplyResult> res = Status::Error(EIO, "unplanned");
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  for (int round = 0;; ++round) {
    const auto t0 = Clock::now();
    {
      MutexLock lock(&mu_);
      CS_RETURN_IF_ERROR(PlanRadosLocked(ops, plan));
    }
    const auto t1 = Clock::now();
    const size_t takes = plan.to_take.size(), compares = plan.to_compare.size();
    // Take the planned references and compare the local matches, every
    // call in flight at once, outside mu_.
    Status failed = Status::Ok();
    if (!plan.to_take.empty() || !plan.to_compare.empty()) {
      RadosBatch batch(rados_->store(), kRadosWindow);
      for (RadosPlannedRef* ref : plan.to_take)
        batch.CreateOrRef(ref->object, rados_->Holder(ref->holder), std::span<const uint8_t>(ref->data, kBlockSize),
                          /*verify=*/true);
      // One read per local block compared.
      std::map<int64_t, std::vector<uint8_t>> stored;
      std::vector<int64_t> read_order;
      for (const RadosPlan::Compare& c : plan.to_compare) {
        auto [it, fresh] = stored.try_emplace(c.pblock);
        if (!fresh) continue;
        it->second.resize(kBlockSize);
        batch.Read(c.object, it->second);
        read_order.push_back(c.pblock);
      }
      const std::vector<Status> sts = batch.Wait();
      size_t i = 0;
      for (RadosPlannedRef* ref : plan.to_take) {
        const Status& st = sts[i++];
        if (st.ok()) {
          ref->state = RadosPlannedRef::State::kTaken;
        } else if (st.code() == ENOMSG && !ref->private_name) {
          // Another block under this name (a hash collision, or damage):
          // this block gets a private object in the next round.
          ref->state = RadosPlannedRef::State::kRefused;
          plan.collided.insert(ref->key);
          spdlog::warn("RADOS: object {} holds other bytes than a block of the same hash; storing it under a "
                       "private name", ref->object);
        } else if (failed.ok()) {
          failed = st;
        }
      }
      std::map<int64_t, Status> read_status;
      for (int64_t pb : read_order) read_status.emplace(pb, sts[i++]);
      for (const RadosPlan::Compare& c : plan.to_compare) {
        const Status& st = read_status[c.pblock];
        if (!st.ok()) {
          if (failed.ok())
            failed = st.code() == ENOENT ? Status::Error(EIO, "RADOS object " + c.object + " of block " +
                                                                  std::to_string(c.pblock) +
                                                                  " is missing though this host references it "
                                                                  "(run chainswap fsck)")
                                         : st;
          continue;
        }
        if (std::memcmp(stored[c.pblock].data(), c.data, kBlockSize) == 0) {
          plan.verified[c.data] = c.pblock;
        } else {
          plan.unequal.insert(c.data);
          spdlog::warn("RADOS: hash collision: block {} ({}) holds other bytes; storing separately", c.pblock,
                       c.object);
        }
      }
    }
    if (!failed.ok()) {
      MutexLock lock(&mu_);
      Status ab = AbandonPlanLocked(plan);
      if (!ab.ok()) spdlog::warn("RADOS: giving up a batch's references: {}", ab.ToString());
      return failed;
    }
    const auto t2 = Clock::now();
    {
      MutexLock lock(&mu_);
      res = ApplyLocked(ops, meta, std::nullopt, &plan);
      spdlog::debug("RADOS batch: {} ops, round {}: {} references taken, {} compared; plan {:.1f} ms, RADOS {:.1f} "
                    "ms, apply {:.1f} ms", ops.size(), round, takes, compares, ms(t1 - t0), ms(t2 - t1),
                    ms(Clock::now() - t2));
      if (!res.ok() && res.status().code() == EAGAIN && round + 1 < kMaxPlanRounds) continue;
      if (!res.ok()) {
        Status ab = AbandonPlanLocked(plan);
        if (!ab.ok()) spdlog::warn("RADOS: giving up a batch's references: {}", ab.ToString());
        if (res.status().code() == EAGAIN)
          return Status::Error(EIO, "RADOS: a destage batch still lacked references after " +
                                        std::to_string(kMaxPlanRounds) + " rounds: " + res.status().message());
        return res.status();
      }
    }
    break;
  }
  (void)DrainRadosUnrefs();  // logs its own failure; retried by the idle Sync
  return res;
}

Status Catalog::PlanRadosLocked(std::span<const BlockOp> ops, RadosPlan& plan) {
  plan.to_take.clear();
  plan.to_compare.clear();
  const bool verify = options_.dedup_verify || force_verify_.load(std::memory_order_relaxed);
  sql::Transaction txn(db_);
  CS_RETURN_IF_ERROR(txn.Begin());
  bool wrote = false;
  for (const BlockOp& op : ops) {
    if (op.kind != BlockOp::Kind::kWrite) continue;
    BlockHash hash;
    if (op.hash) {
      hash = *op.hash;
    } else {
      if (IsZeroBlock(op.data)) continue;
      auto h = HasherForLocked(op.dedup_id);
      if (!h.ok()) {
        if (h.status().code() == ENOENT) continue;  // a chain gone: the apply skips it too
        return h.status();
      }
      hash = (*h)->Hash(op.data);
    }
    const RadosPlan::Key key = PlanKey(op.dedup_id, hash);
    if (plan.privates.count(op.data)) continue;
    const bool needs_private = plan.unequal.count(op.data) || plan.collided.count(key);
    if (!needs_private) {
      if (plan.shared.count(key) || plan.verified.count(op.data)) continue;
      auto local = RadosLocalBlockLocked(op.dedup_id, hash);
      if (!local.ok()) return local.status();
      if (*local) {
        if (verify) {
          auto id = RadosIdLocked(op.dedup_id);
          if (!id.ok()) return id.status();
          plan.to_compare.push_back({op.data, **local, rados_->ObjectName(*id, hash, false, **local)});
        }
        continue;
      }
    }
    // A new reference.
    auto id = RadosIdLocked(op.dedup_id);
    if (!id.ok()) {
      if (id.status().code() == ENOENT) continue;
      return id.status();
    }
    RadosPlannedRef ref;
    ref.holder = next_holder_++;
    ref.private_name = needs_private;
    ref.object = rados_->ObjectName(*id, hash, needs_private, ref.holder);
    ref.data = op.data;
    ref.key = key;
    st_->rados_intent_insert.Reset().Bind(1, ref.holder).Bind(2, std::string_view(ref.object));
    CS_RETURN_IF_ERROR(st_->rados_intent_insert.Run());
    wrote = true;
    RadosPlannedRef& placed = needs_private ? plan.privates[op.data] : plan.shared[key];
    placed = std::move(ref);
    plan.to_take.push_back(&placed);
  }
  if (wrote) {
    const std::string next = std::to_string(next_holder_);
    CS_RETURN_IF_ERROR(st_->set_rados_next_holder.Reset().Bind(1, std::string_view(next)).Run());
  }
  return txn.Commit();
}

Result<std::optional<Catalog::RadosBlockRow>> Catalog::RadosBlockLocked(int64_t pblock) {
  auto& get = st_->rados_block_get;
  get.Reset().Bind(1, pblock);
  auto r = get.Step();
  if (!r.ok()) return r.status();
  if (!*r) {
    get.Reset();
    return std::optional<RadosBlockRow>();
  }
  RadosBlockRow row;
  const auto blob = get.Blob(0);
  const bool whole = blob.size() == row.hash.bytes.size();
  if (whole) std::memcpy(row.hash.bytes.data(), blob.data(), row.hash.bytes.size());
  row.private_name = get.Int(1) != 0;
  get.Reset();
  if (!whole) return Status::Error(EUCLEAN, "rados_block row of block " + std::to_string(pblock) +
                                               " has a malformed hash (run chainswap fsck)");
  return std::optional<RadosBlockRow>(row);
}

Result<std::optional<int64_t>> Catalog::RadosLocalBlockLocked(int64_t dedup_id, const BlockHash& hash) {
  std::vector<int64_t> cands;
  const int64_t key = HashKey(hash);
  CS_RETURN_IF_ERROR(HashCandidatesLocked(key, &cands));
  for (int64_t cand : cands) {
    auto same = IsBlockOfKeyLocked(cand, dedup_id, key);
    if (!same.ok()) return same.status();
    if (!*same) continue;
    auto row = RadosBlockLocked(cand);
    if (!row.ok()) return row.status();
    if (*row && (*row)->hash == hash && !(*row)->private_name) return std::optional<int64_t>(cand);
  }
  return std::optional<int64_t>();
}

Status Catalog::AbandonPlanLocked(RadosPlan& plan) {
  sql::Transaction txn(db_);
  CS_RETURN_IF_ERROR(txn.Begin());
  for (RadosPlannedRef* ref : PlannedRefs(plan)) {
    if (ref->used) continue;
    CS_RETURN_IF_ERROR(st_->rados_intent_delete.Reset().Bind(1, ref->holder).Run());
    if (ref->state == RadosPlannedRef::State::kRefused) continue;  // nothing was taken
    // Taken, or maybe taken (a call that timed out may still be applied).
    CS_RETURN_IF_ERROR(
        st_->rados_unref_insert.Reset().Bind(1, ref->holder).Bind(2, std::string_view(ref->object)).Run());
  }
  CS_RETURN_IF_ERROR(txn.Commit());
  rados_unrefs_pending_.store(true, std::memory_order_relaxed);  // dropped by the next drain
  plan.shared.clear();
  plan.privates.clear();
  return Status::Ok();
}

Result<int64_t> Catalog::RadosNewBlockLocked(const BlockOp& op, const BlockHash& hash, ApplyTxn& txn) {
  RadosPlan* plan = txn.plan;
  if (!plan) return Status::Error(EAGAIN, "no RADOS plan");
  RadosPlannedRef* ref = nullptr;
  if (auto p = plan->privates.find(op.data); p != plan->privates.end()) {
    ref = &p->second;
  } else if (auto s = plan->shared.find(PlanKey(op.dedup_id, hash)); s != plan->shared.end()) {
    ref = &s->second;
  }
  if (!ref || ref->state != RadosPlannedRef::State::kTaken || txn.used_holders.count(ref->holder))
    return Status::Error(EAGAIN, "a new block of chain " + std::to_string(op.dedup_id) + " has no planned reference");
  txn.used_holders.insert(ref->holder);
  st_->rados_block_insert.Reset().Bind(1, ref->holder).BindBlob(2, hash.bytes).Bind(3, ref->private_name ? 1 : 0);
  CS_RETURN_IF_ERROR(st_->rados_block_insert.Run());
  CS_RETURN_IF_ERROR(st_->rados_intent_delete.Reset().Bind(1, ref->holder).Run());
  return ref->holder;
}

Result<bool> Catalog::RadosSameBlockLocked(int64_t cand, const BlockOp& op, const BlockHash& hash, ApplyTxn& txn) {
  auto row = RadosBlockLocked(cand);
  if (!row.ok()) return row.status();
  if (!*row || (*row)->hash != hash) return false;  // another block with the same hash key
  const bool priv = (*row)->private_name;
  if (auto pending = txn.new_data.find(cand); pending != txn.new_data.end())
    return std::memcmp(pending->second, op.data, kBlockSize) == 0;  // stored by this transaction
  if (priv) return false;  // a private block is never matched again (its hash's shared name differs)
  if (!options_.dedup_verify && !force_verify_.load(std::memory_order_relaxed)) return true;
  RadosPlan* plan = txn.plan;
  if (plan) {
    if (auto v = plan->verified.find(op.data); v != plan->verified.end() && v->second == cand) return true;
    if (plan->unequal.count(op.data)) return false;
  }
  return Status::Error(EAGAIN, "block " + std::to_string(cand) + " was not compared");
}

Status Catalog::RadosFreeLocked(int64_t pblock, int64_t dedup_id, ApplyTxn& txn) {
  auto row = RadosBlockLocked(pblock);
  if (!row.ok()) return row.status();
  if (!*row) {
    // A damaged catalog: the block goes, its reference (whatever object it
    // is on) is left for fsck to find as leaked; destage goes on.
    spdlog::error("catalog: freed block {} has no rados_block row: its reference in the pool is left (run chainswap "
                  "fsck --repair)", pblock);
    return Status::Ok();
  }
  const BlockHash h = (*row)->hash;
  const bool priv = (*row)->private_name;
  auto id = RadosIdLocked(dedup_id);
  if (!id.ok()) return id.status();
  if (!rados_) return Status::Error(ENOTCONN, "catalog " + path_ + " stores its blocks in RADOS: not connected");
  const std::string object = rados_->ObjectName(*id, h, priv, pblock);
  CS_RETURN_IF_ERROR(st_->rados_block_delete.Reset().Bind(1, pblock).Run());
  CS_RETURN_IF_ERROR(st_->rados_unref_insert.Reset().Bind(1, pblock).Bind(2, std::string_view(object)).Run());
  txn.rados_unrefs = true;
  return Status::Ok();
}

Status Catalog::SettlePlanLocked(ApplyTxn& txn) {
  RadosPlan* plan = txn.plan;
  if (!plan) return Status::Ok();
  for (RadosPlannedRef* ref : PlannedRefs(*plan)) {
    if (ref->used || txn.used_holders.count(ref->holder)) continue;
    CS_RETURN_IF_ERROR(st_->rados_intent_delete.Reset().Bind(1, ref->holder).Run());
    if (ref->state == RadosPlannedRef::State::kRefused) continue;
    // Taken but not needed (another op of the batch, or a block that
    // appeared meanwhile, holds the bytes): dropped after the commit.
    txn.rados_unrefs = true;
    CS_RETURN_IF_ERROR(
        st_->rados_unref_insert.Reset().Bind(1, ref->holder).Bind(2, std::string_view(ref->object)).Run());
  }
  return Status::Ok();
}

Result<std::string> Catalog::RadosIdLocked(int64_t dedup_id) {
  if (auto it = rados_ids_.find(dedup_id); it != rados_ids_.end()) return it->second;
  auto q = sql::Stmt::Prepare(db_, catalog_sql::kChainRadosId);
  if (!q.ok()) return q.status();
  q->Bind(1, dedup_id);
  auto r = q->Step();
  if (!r.ok()) return r.status();
  if (!*r) return Status::Error(ENOENT, "no chain with dedup ID " + std::to_string(dedup_id));
  if (q->IsNull(0))
    return Status::Error(EUCLEAN, "chain " + std::to_string(dedup_id) + " of a RADOS catalog has no rados_id");
  std::string id = q->Text(0);
  rados_ids_[dedup_id] = id;
  return id;
}

// ---------------------------------------------------------- migration

Result<FileExport> Catalog::ExportFile(int64_t file_id) {
  if (!rados_mode_)
    return Status::Error(EOPNOTSUPP, "migration needs a backing directory on RADOS (chainswap format --store "
                                     "rados:POOL): a local store's blocks are on this host only");
  MutexLock lock(&mu_);
  auto chain = ChainOfFileLocked(file_id);
  if (!chain.ok()) return chain.status();
  FileExport exp;
  exp.pool = rados_ ? rados_->config().target.pool : std::string();
  {
    auto q = sql::Stmt::Prepare(db_, catalog_sql::kChainNameAndRadosId);
    if (!q.ok()) return q.status();
    q->Bind(1, *chain);
    auto r = q->Step();
    if (!r.ok()) return r.status();
    if (!*r || q->IsNull(1)) return Status::Error(EUCLEAN, "chain " + std::to_string(*chain) + " has no rados_id");
    exp.chain_name = q->IsNull(0) ? std::string() : q->Text(0);
    exp.chain_id = q->Text(1);
  }
  sql::Transaction read(db_);
  CS_RETURN_IF_ERROR(read.BeginRead());
  auto q = sql::Stmt::Prepare(db_, catalog_sql::kExportFileBlocks);
  if (!q.ok()) return q.status();
  q->Bind(1, file_id);
  bool priv = false;
  CS_RETURN_IF_ERROR(q->ForEachRow([&](const sql::Stmt& row) {
    ExportedBlock b;
    b.lba = static_cast<uint64_t>(row.Int(0));
    const auto blob = row.Blob(1);
    std::memcpy(b.hash.bytes.data(), blob.data(), std::min(blob.size(), b.hash.bytes.size()));
    priv = priv || row.Int(2) != 0;
    exp.blocks.push_back(b);
  }));
  if (priv)
    return Status::Error(EOPNOTSUPP, "a block of this file is stored under a private name (a hash collision): "
                                     "copy the file instead of migrating it");
  CS_RETURN_IF_ERROR(read.Commit());
  return exp;
}

Status Catalog::ImportFile(int64_t file_id, const FileExport& exp) {
  if (!rados_mode_ || !rados_)
    return Status::Error(EOPNOTSUPP, "migration needs a backing directory on RADOS (chainswap format --store "
                                     "rados:POOL)");
  if (options_.read_only) return Status::Error(EROFS, "catalog opened read-only");
  if (exp.pool != rados_->config().target.pool)
    return Status::Error(EXDEV, "the export is of pool '" + exp.pool + "', this host stores in pool '" +
                                    rados_->config().target.pool + "'");
  // The distinct blocks: hash -> the local pblock that will hold it.
  std::map<std::array<uint8_t, 16>, int64_t> target;
  RadosPlan plan;  // the new references (plan.shared, by block)
  auto abandon = [&]() {
    MutexLock lock(&mu_);
    Status ab = AbandonPlanLocked(plan);
    if (!ab.ok()) spdlog::warn("RADOS: giving up an import's references: {}", ab.ToString());
  };
  for (int round = 0; round < kMaxPlanRounds; ++round) {
    std::vector<RadosPlannedRef*> to_take;
    int64_t dedup_id = 0;
    {
      MutexLock lock(&mu_);
      auto chain = ChainOfFileLocked(file_id);
      if (!chain.ok()) return chain.status();
      dedup_id = *chain;
      auto id = RadosIdLocked(dedup_id);
      if (!id.ok()) return id.status();
      if (*id != exp.chain_id)
        return Status::Error(EXDEV, "the export is of RADOS chain " + exp.chain_id + ", the destination's chain is " +
                                        *id + " (a chain of another name)");
      st_->file_mapped.Reset().Bind(1, file_id);
      auto r = st_->file_mapped.Step();
      if (!r.ok()) return r.status();
      const int64_t mapped = *r ? st_->file_mapped.Int(0) : 0;
      st_->file_mapped.Reset();
      if (mapped != 0) return Status::Error(ENOTEMPTY, "the destination file already maps blocks");
      sql::Transaction txn(db_);
      CS_RETURN_IF_ERROR(txn.Begin());
      bool wrote = false;
      for (const ExportedBlock& b : exp.blocks) {
        if (target.count(b.hash.bytes) || plan.shared.count({dedup_id, b.hash.bytes})) continue;
        auto local = RadosLocalBlockLocked(dedup_id, b.hash);
        if (!local.ok()) return local.status();
        if (*local) {
          target[b.hash.bytes] = **local;
          continue;
        }
        RadosPlannedRef ref;
        ref.holder = next_holder_++;
        ref.object = rados_->ObjectName(exp.chain_id, b.hash, false, ref.holder);
        ref.key = {dedup_id, b.hash.bytes};
        st_->rados_intent_insert.Reset().Bind(1, ref.holder).Bind(2, std::string_view(ref.object));
        CS_RETURN_IF_ERROR(st_->rados_intent_insert.Run());
        wrote = true;
        RadosPlannedRef& placed = plan.shared[ref.key];
        placed = std::move(ref);
        to_take.push_back(&placed);
      }
      if (wrote) {
        const std::string next = std::to_string(next_holder_);
        CS_RETURN_IF_ERROR(st_->set_rados_next_holder.Reset().Bind(1, std::string_view(next)).Run());
      }
      CS_RETURN_IF_ERROR(txn.Commit());
    }
    // A reference on each object, no data: every call in flight at once.
    if (!to_take.empty()) {
      RadosBatch batch(rados_->store(), kRadosWindow);
      for (RadosPlannedRef* ref : to_take) batch.Ref(ref->object, rados_->Holder(ref->holder));
      const std::vector<Status> sts = batch.Wait();
      Status failed = Status::Ok();
      for (size_t i = 0; i < to_take.size(); ++i) {
        if (sts[i].ok()) to_take[i]->state = RadosPlannedRef::State::kTaken;
        else if (failed.ok())
          failed = sts[i].code() == ENOENT
                       ? Status::Error(ENOENT, "RADOS object " + to_take[i]->object +
                                                   " is gone: the source no longer references that block")
                       : sts[i];
      }
      if (!failed.ok()) {
        abandon();
        return failed;
      }
    }
    // The apply: one transaction.
    MutexLock lock(&mu_);
    ApplyTxn txn;
    sql::Transaction db_txn(db_);
    Status st = BeginApplyLocked(db_txn);
    bool replan = false;
    // A local block the plan chose may have been freed since: plan again.
    for (auto it = target.begin(); st.ok() && it != target.end();) {
      BlockHash h;
      h.bytes = it->first;
      auto same = IsBlockOfKeyLocked(it->second, dedup_id, HashKey(h));
      if (!same.ok()) st = same.status();
      else if (!*same) {
        it = target.erase(it);
        replan = true;
        continue;
      }
      ++it;
    }
    if (st.ok() && replan) {
      (void)CommitApplyLocked(db_txn, Status::Error(EAGAIN, "replan"), std::nullopt, &txn);
      continue;
    }
    std::map<int64_t, int64_t> added;  // pblock -> references added
    for (auto& [k, ref] : plan.shared) {
      if (!st.ok()) break;
      if (ref.used) continue;
      BlockHash hash;
      hash.bytes = k.second;
      const int64_t key = HashKey(hash);
      auto& ins = st_->pat_insert;
      ins.Reset().Bind(1, ref.holder).Bind(2, dedup_id).Bind(3, key).Bind(4, txn.today);
      st = ins.Run();
      if (st.ok()) st = LogIndexChangeLocked(key, ref.holder, /*add=*/true);
      if (st.ok()) st = st_->rados_block_insert.Reset().Bind(1, ref.holder).BindBlob(2, hash.bytes).Bind(3, 0).Run();
      if (st.ok()) st = st_->rados_intent_delete.Reset().Bind(1, ref.holder).Run();
      ++txn.entries_delta;
      ++txn.res.blocks_stored;
      txn.used_holders.insert(ref.holder);
      target[k.second] = ref.holder;
      added[ref.holder] = -1;  // the PAT row starts at 1
    }
    for (const ExportedBlock& b : exp.blocks) {
      if (!st.ok()) break;
      const int64_t pb = target.at(b.hash.bytes);
      added[pb] += 1;
      st = st_->lat_put.Reset().Bind(1, file_id).Bind(2, static_cast<int64_t>(b.lba)).Bind(3, pb).Run();
    }
    for (auto [pb, n] : added) {
      if (!st.ok()) break;
      if (n != 0) st = st_->pat_add_ref.Reset().Bind(1, pb).Bind(2, n).Run();
    }
    txn.mapped_delta[file_id] += static_cast<int64_t>(exp.blocks.size());
    if (st.ok()) st = AddMappedLocked(txn);
    std::optional<size_t> merged;
    if (st.ok()) st = MergeHashLogLocked(std::max(kHashMergeChunk, 2 * hash_log_.txn_rows()), &merged);
    st = CommitApplyLocked(db_txn, st, merged, &txn);
    if (!st.ok()) {
      Status ab = AbandonPlanLocked(plan);
      if (!ab.ok()) spdlog::warn("RADOS: giving up an import's references: {}", ab.ToString());
      return st;
    }
    for (auto& [k, ref] : plan.shared) ref.used = true;
    spdlog::info("imported {} blocks of RADOS chain {} ({} new references)", exp.blocks.size(), exp.chain_id,
                 txn.used_holders.size());
    return Status::Ok();
  }
  abandon();
  return Status::Error(EAGAIN, "the import's blocks kept changing under it; try again");
}

// ------------------------------------------------------------ unrefs

Status Catalog::DrainRadosUnrefs() {
  if (!rados_mode_ || !rados_ || options_.read_only) return Status::Ok();
  MutexLock drain(&drain_mu_);
  if (!rados_unrefs_pending_.exchange(false)) return Status::Ok();
  Status st = DrainRadosUnrefsLocked();
  if (!st.ok()) {
    rados_unrefs_pending_.store(true);  // retried by the next drain
    if (!drain_failing_)
      spdlog::warn("RADOS: dropping references of freed blocks failed: {}; retrying while idle", st.ToString());
    drain_failing_ = true;
  } else if (drain_failing_) {
    spdlog::info("RADOS: references of freed blocks are dropped again");
    drain_failing_ = false;
  }
  return st;
}

Status Catalog::DrainRadosUnrefsLocked() {
  for (;;) {
    std::vector<std::pair<int64_t, std::string>> rows;
    {
      MutexLock lock(&mu_);
      auto q = sql::Stmt::Prepare(db_, catalog_sql::kRadosUnrefs);
      if (!q.ok()) return q.status();
      q->Bind(1, kDrainChunk);
      for (;;) {
        auto r = q->Step();
        if (!r.ok()) return r.status();
        if (!*r) break;
        rows.emplace_back(q->Int(0), q->Text(1));
      }
    }
    if (rows.empty()) return Status::Ok();
    RadosBatch batch(rados_->store(), kRadosWindow);
    for (const auto& [holder, object] : rows) batch.Unref(object, rados_->Holder(holder));
    const std::vector<Status> sts = batch.Wait();
    Status first = Status::Ok();
    std::vector<int64_t> done;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (PutDone(sts[i])) done.push_back(rows[i].first);
      else if (first.ok()) first = sts[i];
    }
    {
      MutexLock lock(&mu_);
      sql::Transaction txn(db_);
      CS_RETURN_IF_ERROR(txn.Begin());
      auto del = sql::Stmt::Prepare(db_, catalog_sql::kRadosUnrefDelete);
      if (!del.ok()) return del.status();
      for (int64_t h : done) CS_RETURN_IF_ERROR(del->Reset().Bind(1, h).Run());
      CS_RETURN_IF_ERROR(txn.Commit());
    }
    if (!first.ok()) return first;
    if (rows.size() < static_cast<size_t>(kDrainChunk)) return Status::Ok();
  }
}

Result<Catalog::RadosQueues> Catalog::RadosQueueRows() {
  MutexLock lock(&mu_);
  auto count = [](const sql::Stmt& row) { return static_cast<uint64_t>(row.Int(0)); };
  auto i = sql::QueryAll(db_, catalog_sql::kCountRadosIntents, count);
  if (!i.ok()) return i.status();
  auto u = sql::QueryAll(db_, catalog_sql::kCountRadosUnrefs, count);
  if (!u.ok()) return u.status();
  RadosQueues q;
  q.intents = i->empty() ? 0 : i->front();
  q.unrefs = u->empty() ? 0 : u->front();
  return q;
}

Result<std::map<int64_t, std::string>> Catalog::RadosChainIds() {
  MutexLock lock(&mu_);
  auto rows = sql::QueryAll(db_, catalog_sql::kChainRadosIds,
                            [](const sql::Stmt& row) { return std::make_pair(row.Int(0), row.Text(1)); });
  if (!rows.ok()) return rows.status();
  return std::map<int64_t, std::string>(rows->begin(), rows->end());
}

Status Catalog::ResolveRadosAtOpen() {
  if (!rados_mode_ || options_.read_only) return Status::Ok();
  {
    MutexLock drain(&drain_mu_);
    MutexLock lock(&mu_);
    // A crash's intents: whether their reference was taken is unknown; the
    // put of an unused holder is harmless (ENOLINK), so every one is put.
    sql::Transaction txn(db_);
    CS_RETURN_IF_ERROR(txn.Begin());
    CS_RETURN_IF_ERROR(db_.Exec(catalog_sql::kDeleteLiveHolderIntents));
    int64_t live = db_.Changes();
    CS_RETURN_IF_ERROR(db_.Exec(catalog_sql::kDeleteLiveHolderUnrefs));
    live += db_.Changes();
    if (live)
      spdlog::error("catalog: {} queued RADOS reference(s) named a block still in use; dropped from the queues without "
                    "a put (a damaged catalog: run chainswap fsck)", live);
    auto rows = sql::QueryAll(db_, catalog_sql::kRadosIntents,
                              [](const sql::Stmt& row) { return std::make_pair(row.Int(0), row.Text(1)); });
    if (!rows.ok()) return rows.status();
    for (const auto& [holder, object] : *rows) {
      CS_RETURN_IF_ERROR(st_->rados_intent_delete.Reset().Bind(1, holder).Run());
      CS_RETURN_IF_ERROR(st_->rados_unref_insert.Reset().Bind(1, holder).Bind(2, std::string_view(object)).Run());
    }
    CS_RETURN_IF_ERROR(txn.Commit());
    rados_unrefs_pending_.store(true);  // whatever the table holds
    if (!rows->empty())
      spdlog::info("catalog: {} RADOS references of an interrupted destage are dropped (the journal's replay "
                   "takes them again)", rows->size());
  }
  return DrainRadosUnrefs();
}

// -------------------------------------------------------------- reads

Status Catalog::ReadBlocksRados(int64_t file_id, uint64_t lba, uint32_t count, uint8_t* out) {
  if (!rados_) return Status::Error(ENOTCONN, "catalog " + path_ + " stores its blocks in RADOS: not connected");
  struct Mapped {
    uint64_t lba;
    int64_t pblock;
    std::string object;
  };
  std::vector<Mapped> mapped;
  auto collect = [&](sql::Stmt& q) -> Status {
    q.Reset().Bind(1, file_id).Bind(2, static_cast<int64_t>(lba)).Bind(3, static_cast<int64_t>(lba + count));
    CS_RETURN_IF_ERROR(q.ForEachRow([&](const sql::Stmt& row) {
      if (row.IsNull(2)) {  // never a hole: the block's object is unknown
        mapped.push_back({static_cast<uint64_t>(row.Int(0)), row.Int(1), std::string()});
        return;
      }
      BlockHash h;
      const auto blob = row.Blob(2);
      std::memcpy(h.bytes.data(), blob.data(), std::min(blob.size(), h.bytes.size()));
      const int64_t pb = row.Int(1);
      mapped.push_back({static_cast<uint64_t>(row.Int(0)), pb, rados_->ObjectName(row.Text(4), h, row.Int(3) != 0, pb)});
    }));
    q.Reset();
    return Status::Ok();
  };
  auto reader = options_.read_only ? nullptr : readers_.Acquire();
  if (reader) {
    CS_RETURN_IF_ERROR(collect(reader->st->lat_range_rados));
  } else {
    MutexLock lock(&mu_);
    auto q = sql::Stmt::Prepare(db_, catalog_sql::kLatRangeRados);
    if (!q.ok()) return q.status();
    CS_RETURN_IF_ERROR(collect(*q));
  }
  reader.reset();
  for (const Mapped& m : mapped) {
    if (m.object.empty()) {
      spdlog::error("catalog: block {} has no rados_block row: its object is unknown (run chainswap fsck)", m.pblock);
      return Status::Error(EIO, "block " + std::to_string(m.pblock) + " has no rados_block row (run chainswap fsck)");
    }
  }
  std::memset(out, 0, size_t{count} * kBlockSize);
  if (mapped.empty()) return Status::Ok();
  RadosBatch batch(rados_->store(), kRadosWindow);
  for (const Mapped& m : mapped)
    batch.Read(m.object, std::span<uint8_t>(out + (m.lba - lba) * kBlockSize, kBlockSize));
  const std::vector<Status> sts = batch.Wait();
  for (size_t i = 0; i < mapped.size(); ++i) {
    if (!sts[i].ok()) {
      if (sts[i].code() == ENOENT)
        return Status::Error(EIO, "RADOS object " + mapped[i].object + " of block " +
                                      std::to_string(mapped[i].pblock) + " is missing (run chainswap fsck)");
      return sts[i];
    }
    if (IsZeroBlock(out + (mapped[i].lba - lba) * kBlockSize))
      return Status::Error(EIO, "RADOS object " + mapped[i].object + " reads as zeros: its data is lost");
  }
  return Status::Ok();
}

// ------------------------------------------------------------- chains

Result<ChainInfo> Catalog::CreateRadosChain(const std::string& name, uint32_t mode, uint32_t uid, uint32_t gid,
                                            int64_t now_ns) {
  if (!rados_) return Status::Error(ENOTCONN, "catalog " + path_ + " stores its blocks in RADOS: not connected");
  {
    MutexLock lock(&mu_);
    auto q = sql::Stmt::Prepare(db_, catalog_sql::kChainNamed);
    if (!q.ok()) return q.status();
    q->Bind(1, name);
    auto r = q->Step();
    if (!r.ok()) return r.status();
    if (*r) return Status::Error(EEXIST, "chain '" + name + "' exists");
  }
  // Outside mu_: a round trip to the cluster (up to its timeout).
  auto rec = rados_->store().JoinChain(name, NewHashSeed());
  if (!rec.ok()) return rec.status();
  MutexLock lock(&mu_);
  auto q = sql::Stmt::Prepare(db_, catalog_sql::kInsertRadosChain);
  if (!q.ok()) return q.status();
  q->Bind(1, name).BindBlob(2, rec->seed).Bind(3, mode).Bind(4, uid).Bind(5, gid).Bind(6, now_ns);
  q->Bind(7, std::string_view(rec->id));
  Status st = q->Run();
  if (!st.ok()) {
    if (st.code() == EEXIST) return Status::Error(EEXIST, "chain '" + name + "' exists");
    return st;
  }
  ChainInfo c{db_.LastInsertRowid(), name, mode, uid, gid, now_ns, now_ns};
  hashers_[c.dedup_id] = std::make_shared<const BlockHasher>(rec->seed);
  rados_ids_[c.dedup_id] = rec->id;
  spdlog::info("chain '{}' joined RADOS chain {} in pool {}", name, rec->id, rados_->config().target.pool);
  return c;
}

}  // namespace chainswap
