// chainswap fsck (SPEC §5, §6): proves the catalog's invariants against the
// content store and the journal, and repairs what is safely repairable.
//
// Checks: every refcount equals the number of LAT entries pointing at the
// block; every LAT entry points at a PAT entry of its own chain; every PAT
// hash matches its slot's content keyed by its chain's seed; no slot is both
// free and referenced; no referenced slot is outside the store; no slot below
// the high-water mark is neither used nor free (leaked); mapped_blocks of
// every file equals its LAT entries; every file belongs to a chain; every
// journal segment is readable.
//
// Repairs (--repair): drop LAT entries that point nowhere, across chains,
// outside the store or at files that do not exist (they become holes); recount
// refcounts (blocks at 0 are freed and punched); take referenced slots off the
// free list; put leaked slots on it (punched); recount mapped_blocks. A hash
// mismatch or a damaged journal is reported, never "repaired" by guessing.
#pragma once

#include <string>
#include <vector>

#include "catalog/backing_dir.h"

namespace chainswap {

struct FsckOptions {
  bool repair = false;
  bool verify_hashes = true;   // reads every referenced slot
  bool progress = false;       // a progress line on stderr
  bool journal_live = false;   // a daemon is appending: a torn tail is not damage
};

struct FsckIssue {
  std::string kind;      // refcount, dangling, cross_chain, hash, free_and_used, outside_store,
                         // leaked_slot, mapped_blocks, file_chain, lat_orphan_file, journal
  std::string detail;
  bool repaired = false;
};

struct FsckReport {
  std::vector<FsckIssue> issues;
  uint64_t blocks_checked = 0, lat_entries = 0, files = 0, chains = 0, segments = 0;
  bool clean() const { return issues.empty(); }
  bool all_repaired() const;
};

// Runs the checks (and repairs) on an open backing directory.
// REQUIRES: no daemon writes to it when opts.repair (hold the lock).
Result<FsckReport> RunFsck(BackingDir& backing, const FsckOptions& opts);

}  // namespace chainswap
