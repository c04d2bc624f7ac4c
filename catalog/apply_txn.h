// The apply routine's per-transaction scratch (Catalog::ApplyTxn), shared
// by the apply routine (catalog_apply.cc) and its RADOS part
// (catalog_rados.cc). Internal to the catalog.
//
// Thread-safety: none; one transaction, under the catalog's writer mutex.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "catalog/catalog.h"
#include "catalog/rados_plan.h"

namespace chainswap {

// What one transaction of the apply routine has done so far.
struct Catalog::ApplyTxn {
  ApplyResult res;
  std::map<int64_t, const uint8_t*> new_data;   // pblock -> its (uncompressed) bytes, stored before the commit
  // Packed blocks' stored forms by first sector, written before the commit
  // (whole sectors; a compressed form is zero-padded).
  std::map<uint64_t, std::vector<uint8_t>> new_packed;
  std::map<int64_t, int64_t> mapped_delta;      // file -> LAT entry delta
  std::vector<int64_t> candidates;              // scratch of FindDuplicateLocked
  // Changes of the hash table's counters (hash_entries_, hash_unindexed_).
  int64_t entries_delta = 0;
  int64_t unindexed_delta = 0;
  int64_t today = DayNumberNow();  // pat.born of the blocks it stores
  // RADOS mode (catalog_rados.cc): the batch's plan, the holders its new
  // blocks used, and whether it queued references to drop.
  RadosPlan* plan = nullptr;
  std::set<int64_t> used_holders;
  bool rados_unrefs = false;
};

}  // namespace chainswap
