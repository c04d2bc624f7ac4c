// The catalog's RADOS mode (SPEC §8, docs/RADOS.md): a backing directory
// formatted with `--store rados:POOL` keeps its catalog and journal on the
// host, and its blocks as objects of a Ceph pool shared by every host that
// runs the chain's clones.
//
// The content store behind the catalog is one of two backends, chosen at
// format time and recorded in the catalog's meta table (key `store`):
//   local  BACKING/store.dat (content_store.h): slots and packed sectors,
//          allocated by the catalog (slot_allocator.h, sector_allocator.h),
//          freed by punching, made durable by fdatasync.
//   rados  this file: a block is the object blk.<chain rados_id>.<hash>
//          (rados_store.h), which the catalog's PAT row references once,
//          through the holder ref.<host>.<pblock>; a pblock is a number the
//          host never reuses (meta rados_next_holder), not a location. A
//          new block's reference is taken before the transaction that
//          records it commits, a freed block's reference is dropped after
//          (catalog_rados.cc; the rados_* tables of schema.cc).
//
// RadosConfig is what a catalog records; RadosBackend is the connection the
// daemon (or a tool that needs the cluster) opens from it.
//
// Thread-safety: RadosBackend is immutable after Connect; its RadosStore is
// thread-safe itself.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "catalog/block.h"
#include "catalog/rados_store.h"
#include "catalog/sqlite.h"
#include "catalog/status.h"

namespace chainswap {

// A catalog's RADOS settings (meta rados_pool, rados_conf, rados_user,
// rados_host). target.timeout_seconds is not recorded: a mount option.
struct RadosConfig {
  RadosTarget target;
  std::string host;  // this backing directory's ID in the pool: 16 hex digits
};

// Whether an error means the cluster did not answer (it may later):
// ETIMEDOUT and the connection errors. The destagers then keep the batch in
// the journal and retry; it is never a reason to stop destage.
bool IsStoreUnreachable(const Status& st);

// A fresh host ID (16 random hex digits).
std::string NewRadosHostId();

// The RADOS settings a catalog records: nullopt for a local store (meta
// store absent or 'local'). EUCLEAN for a RADOS catalog whose settings are
// incomplete.
Result<std::optional<RadosConfig>> ReadRadosConfig(const sql::Db& db);
// Records `config` (and store = 'rados', rados_next_holder = 1) in a new
// catalog's meta table.
Status WriteRadosConfig(sql::Db& db, const RadosConfig& config);

class RadosBackend {
 public:
  // Connects to the pool of `config` (RadosStore::Connect: ETIMEDOUT within
  // the timeout when the cluster does not answer, ENOENT for a missing
  // pool; the message names the conf file, the user and the pool).
  static Result<std::unique_ptr<RadosBackend>> Connect(const RadosConfig& config);

  RadosStore& store() const { return *store_; }
  const RadosConfig& config() const { return config_; }
  const std::string& host() const { return config_.host; }

  // The holder of this host's reference for block `pblock`.
  RadosRef Holder(int64_t pblock) const { return RadosRef{config_.host, pblock}; }
  // The object of a block: shared by every host (blk.ID.HASH), or private to
  // this host's block `pblock` when the shared name holds other bytes.
  std::string ObjectName(const std::string& chain_id, const BlockHash& h, bool private_name, int64_t pblock) const;

 private:
  RadosBackend(RadosConfig c, std::unique_ptr<RadosStore> s) : config_(std::move(c)), store_(std::move(s)) {}
  const RadosConfig config_;
  const std::unique_ptr<RadosStore> store_;
};

}  // namespace chainswap
