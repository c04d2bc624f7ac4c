// `chainswap rados-check`: can this host use a Ceph pool as a content store
// (docs/RADOS.md)? The check an operator runs on each host before pointing
// chainswap at a cluster.
//
//   1. connects with the conf file and cephx user (an unreachable cluster is
//      an error within the timeout, a missing pool ENOENT);
//   2. probes the `cas` object class on a throw-away object: created with a
//      first reference, a second reference with verify, other bytes refused
//      (ENOMSG), both references dropped, the object gone with the last;
//   3. lists the chains the pool holds (their records) and the block objects
//      of each.
//
// Thread-safety: a plain function; it opens its own connection.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "catalog/rados_store.h"
#include "catalog/status.h"

namespace chainswap {

struct RadosChainSummary {
  std::string name;
  std::string id;
  uint64_t block_objects = 0;
};

struct RadosCheckReport {
  std::string pool;
  int64_t pool_id = -1;
  bool cas_ok = false;
  std::vector<RadosChainSummary> chains;
  uint64_t objects = 0;  // every object of the pool
};

// Runs the check. The first step that fails ends it with its Status
// (EOPNOTSUPP when the `cas` class is not loaded, with the OSD setting that
// loads it in the message).
Result<RadosCheckReport> RadosCheck(const RadosTarget& target);

std::string RenderRadosCheck(const RadosCheckReport& r);
std::string RadosCheckJson(const RadosCheckReport& r);

}  // namespace chainswap
