// The RADOS work of one destage batch, planned ahead of its apply
// transaction (catalog_rados.cc; docs/RADOS.md, "Write ordering"). Internal
// to the catalog.
//
// A plan lives for one Catalog::ApplyRados call: rounds of planning (under
// the catalog mutex: holders and intent rows for the references the batch's
// new blocks need, the local matches to compare) and of RADOS calls
// (outside it: create-or-reference, reads to compare), until the apply
// transaction finds everything it needs in the plan.
//
// Thread-safety: none; one thread (the caller of ApplyRados) uses a plan.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace chainswap {

struct RadosPlannedRef {
  // (dedup ID, whole hash): a block of a chain.
  using Key = std::pair<int64_t, std::array<uint8_t, 16>>;
  enum class State : uint8_t {
    kPlanned,  // holder and intent row committed, the call not made yet
    kTaken,    // the reference is held (create-or-reference succeeded)
    kRefused,  // the object holds other bytes (ENOMSG): nothing was taken
  };
  int64_t holder = 0;     // also the pblock of the block that uses it
  std::string object;
  const uint8_t* data = nullptr;  // the block's bytes (the op's)
  Key key;
  bool private_name = false;
  State state = State::kPlanned;
  bool used = false;  // a committed PAT row references it (set after the commit)
};

struct RadosPlan {
  using Key = RadosPlannedRef::Key;
  // References under the shared name, by block.
  std::map<Key, RadosPlannedRef> shared;
  // References under a private name, by op data: blocks whose shared name
  // holds other bytes.
  std::map<const uint8_t*, RadosPlannedRef> privates;
  // Blocks whose shared object holds other bytes (a refused create).
  std::set<Key> collided;
  // Local matches compared: op data -> the local pblock found to hold the
  // same bytes; op data whose local block of the same hash differs.
  std::map<const uint8_t*, int64_t> verified;
  std::set<const uint8_t*> unequal;

  // The work of the last planning round, for the calls outside the mutex.
  std::vector<RadosPlannedRef*> to_take;
  struct Compare {
    const uint8_t* data;
    int64_t pblock;
    std::string object;
  };
  std::vector<Compare> to_compare;
};

}  // namespace chainswap
