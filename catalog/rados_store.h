// The RADOS side of a chain's content store (SPEC §8, issue #15,
// docs/RADOS.md): a Ceph pool that every host running a chain's clones
// shares, through librados.
//
// What lives in the pool:
//   chain.NAME          a chain's identity: its cluster-wide ID and its secret
//                       hash seed (RadosChainRecord). Created once, atomically
//                       (an exclusive create), by the first host that joins;
//                       every later host reads it and hashes with that seed,
//                       so the same block gets the same hash on every host.
//   blk.ID.HASH         one block of chain ID, named by its 128-bit keyed hash
//                       (32 hex digits). Its data is the block's stored form.
//                       References to it are counted by Ceph's `cas` object
//                       class (chunk_create_or_get_ref / chunk_put_ref), which
//                       creates the object with its first reference and
//                       deletes it with its last, atomically, in the OSD.
//
// A reference names its holder (a RadosRef: the host's ID and a local
// number the host chooses, in practice the pblock of its catalog). One host
// holds at most one reference per block, whatever the number of its files
// that share it: the per-file counts stay in the host's SQLite catalog, and
// `cas` keeps one entry per host (its cost grows with the entries, see
// ../shared/RADOS-FACTS.md). A holder that is unique per (host, local
// number) makes every reference operation checkable after a crash: a put by
// a holder that holds nothing fails with ENOLINK instead of dropping
// someone else's reference.
//
// Errors: librados's negative errnos become Status codes. ETIMEDOUT when the
// cluster does not answer within the client timeouts (`rados osd op
// timeout`, `rados mon op timeout`, `client mount timeout` in the conf);
// ENOMSG from a verifying put means the object holds other bytes under the
// same name (a hash collision, SPEC §4): never shared.
//
// librados's C API (librados.h): its C++ API's headers do not compile as
// C++20 with clang (an ambiguous rewritten operator== in buffer.h), and the
// thread-safety build is clang's.
//
// Thread-safety: a RadosStore is safe to use from any number of threads
// (librados's ioctx is). A RadosBatch belongs to one thread at a time.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <rados/librados.h>

#include "catalog/block.h"
#include "catalog/status.h"


namespace chainswap {

// Where a store lives: `chainswap format BACKING --store rados:POOL` plus
// the Ceph client options.
struct RadosTarget {
  std::string pool;
  std::string conf_path;          // empty: librados's default search
  std::string client_id = "admin";  // the cephx user, without "client."
  // Seconds before a connect or an operation gives ETIMEDOUT (0: keep the
  // conf file's values).
  int timeout_seconds = 30;
};

// Parses "rados:POOL" (the --store argument). EINVAL for anything else.
Result<std::string> ParseRadosStoreSpec(const std::string& spec);

// A chain's identity in the pool.
struct RadosChainRecord {
  std::string id;  // 32 hex digits, random, fixed for the chain's life
  HashSeed seed{};
};

// The holder of one reference (see the file comment).
struct RadosRef {
  std::string host;  // the host's ID (hex, no dots), unique per backing directory
  int64_t local = 0;
  bool operator==(const RadosRef&) const = default;
};

class RadosBatch;

class RadosStore {
 public:
  ~RadosStore();
  RadosStore(const RadosStore&) = delete;
  RadosStore& operator=(const RadosStore&) = delete;

  // Connects to the cluster and opens the pool. ETIMEDOUT when the monitors
  // do not answer in time, ENOENT when the pool does not exist, EACCES for a
  // key the cluster refuses; the message names the conf file and the pool.
  static Result<std::unique_ptr<RadosStore>> Connect(const RadosTarget& target);

  // Joins chain `name`: creates chain.NAME with a fresh ID and `proposed`
  // seed if no host has, else reads the record that is there. Two hosts
  // joining at once get the same record (the create is exclusive). EIO for
  // a record that does not parse (named in the message).
  Result<RadosChainRecord> JoinChain(const std::string& name, const HashSeed& proposed);
  // Reads chain.NAME. ENOENT when no host has created it.
  Result<RadosChainRecord> ReadChain(const std::string& name);

  // The object that holds the block of chain `chain_id` with hash `h`.
  static std::string BlockObjectName(const std::string& chain_id, const BlockHash& h);

  // Synchronous single operations (tools, tests, fsck).
  Status Read(const std::string& object, std::span<uint8_t> out);
  // Size of an object. ENOENT when absent.
  Result<uint64_t> Stat(const std::string& object);
  // The holders of the references to `object`, as `cas` keeps them (a
  // multiset: a holder that took two references appears twice). ENOENT
  // when the object is absent; EPROTO when `cas` keeps them in a form other
  // than one entry per holder (it may switch to counts for heavily shared
  // objects; one reference per host keeps it from doing so). For fsck and
  // tests, never the I/O path.
  Result<std::vector<RadosRef>> Holders(const std::string& object);
  // Names of the objects whose names start with `prefix` (a full listing of
  // the pool, filtered: for tests, fsck and stats, never the I/O path).
  Result<std::vector<std::string>> List(const std::string& prefix);

  int64_t pool_id() const { return pool_id_; }

 private:
  friend class RadosBatch;
  RadosStore(RadosTarget t, rados_t cluster, rados_ioctx_t io);
  const RadosTarget target_;
  rados_t cluster_;
  rados_ioctx_t io_;
  int64_t pool_id_ = -1;
};

// Many operations in flight at once: Add* submits an operation at once
// (waiting first for the oldest when `window` are in flight), Wait waits for
// all and reports each one's outcome in submission order. Destage never
// makes one synchronous round trip per block.
class RadosBatch {
 public:
  RadosBatch(RadosStore& store, size_t window = 64);
  ~RadosBatch();  // waits for whatever is still in flight
  RadosBatch(const RadosBatch&) = delete;
  RadosBatch& operator=(const RadosBatch&) = delete;

  // Creates `object` holding `data` with `ref` as its first reference, or
  // adds `ref` to the object already there. With `verify`, an object already
  // there must hold exactly `data` (else ENOMSG, nothing changed).
  // Returns the operation's index in the batch.
  size_t CreateOrRef(const std::string& object, const RadosRef& ref, std::span<const uint8_t> data, bool verify);
  // Adds `ref` to an existing object (ENOENT if there is none).
  size_t Ref(const std::string& object, const RadosRef& ref);
  // Drops `ref`; the last reference deletes the object. ENOLINK when `ref`
  // holds none, ENOENT when the object is gone.
  size_t Unref(const std::string& object, const RadosRef& ref);
  // Reads out.size() bytes of `object` from offset 0 into out (which must
  // stay valid until Wait). EIO when the object is shorter.
  size_t Read(const std::string& object, std::span<uint8_t> out);

  // Waits for every operation submitted since the last Wait. Returns one
  // Status per operation, in submission order.
  std::vector<Status> Wait();
  // Operations submitted since the last Wait.
  size_t size() const { return ops_.size(); }

 private:
  struct Op;
  size_t Submit(std::unique_ptr<Op> op);
  size_t Exec(const std::string& object, const char* what, const char* method, const std::string& input);
  void Reap(Op& op);
  RadosStore& store_;
  const size_t window_;
  std::vector<std::unique_ptr<Op>> ops_;
  std::deque<size_t> in_flight_;  // indexes into ops_, oldest first
};

}  // namespace chainswap
