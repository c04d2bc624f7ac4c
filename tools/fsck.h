// chainswap fsck (SPEC §5, §6): proves the catalog's invariants against the
// content store and the journal, and repairs what is safely repairable.
//
// Checks: every refcount equals the number of LAT entries pointing at the
// block; every LAT entry points at a PAT entry of its own chain; every PAT
// hash key (and whole hash in block_hash) matches its slot's content keyed by
// its chain's seed; the chain hash index (hash_index with the changes of
// hash_log applied, the last change of a pair winning) has exactly one entry
// per PAT row with a hash key, under that key, and nothing else (a block
// without a key, pat.hash_key NULL, is valid: pruned or stored at the
// quota; it is counted, and its content cannot be checked against a
// hash); the counters hash_entries and hash_unindexed (meta) match the
// PAT; every block_hash row
// belongs to a PAT row; no referenced slot is outside the store;
// mapped_blocks of every file equals its LAT entries; every file belongs to
// a chain; every journal segment is readable. (Since schema v3 a slot is
// free exactly when the PAT has no row for it: there is no free list to
// disagree with the PAT.) A catalog of an older schema version is checked
// only after a read-write open has upgraded it (--repair does).
//
// Repairs (--repair): drop LAT entries that point nowhere, across chains,
// outside the store or at files that do not exist (they become holes); recount
// refcounts (blocks at 0 are freed and punched); rebuild the chain hash
// index from the PAT when it is wrong or a block was freed (and drop
// block_hash rows of no block); recount mapped_blocks and the hash
// table's counters. A hash mismatch or a
// damaged journal is reported, never "repaired" by guessing.
//
// A catalog whose blocks are in a RADOS pool (meta store = 'rados') has no
// slots: the checks of store.dat (outside_store, extent_overlap, leaked
// pages, the slot hash pass) do not run; the refcount repair moves a freed
// block's reference to rados_unref instead of punching; and the catalog's
// rados_* rows are cross-checked with the pool (tools/fsck_rados.h, which
// lists its issue kinds). The backing directory must be opened connected
// (BackingDir::rados()).
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
  // RADOS mode, --repair: the rows of rados_intent and rados_unref that the
  // read-write open resolved before the check ran (Catalog::Open does, as a
  // mount does), counted by the caller beforehand for the report.
  uint64_t rados_intents_resolved_at_open = 0;
  uint64_t rados_unrefs_resolved_at_open = 0;
};

struct FsckIssue {
  std::string kind;      // refcount, dangling, cross_chain, hash, outside_store, index_missing,
                         // index_dangling, block_hash_orphan, mapped_blocks, file_chain,
                         // lat_orphan_file, journal, hash_counters; RADOS mode: see
                         // tools/fsck_rados.h (rados_block_missing, rados_ref_missing, ...)
  std::string detail;
  bool repaired = false;
};

struct FsckReport {
  std::vector<FsckIssue> issues;
  uint64_t blocks_checked = 0, lat_entries = 0, files = 0, chains = 0, segments = 0;
  uint64_t unindexed = 0;  // blocks without a hash entry (valid; their content is not hash-checked)
  // Store pages holding data that no block uses (offline runs only): space
  // a crash left behind, not damage; the next mount punches it, and so
  // does --repair (leaked_pages_punched).
  uint64_t leaked_pages = 0;
  bool leaked_pages_punched = false;
  // RADOS mode (meta store = 'rados'): what the cross-check with the pool
  // saw (tools/fsck_rados.h). blocks_checked then counts the objects read
  // and hashed.
  bool rados = false;
  std::string rados_pool, rados_host;
  uint64_t rados_blocks = 0;   // rados_block rows checked against their objects
  uint64_t rados_objects = 0;  // objects of this host's chains listed in the pool
  uint64_t rados_refs = 0;     // references of this host found on them
  // rados_intent / rados_unref rows found (references being taken, or still
  // to drop, left by an interrupted run or in flight in a live daemon):
  // information, not damage. Resolved (dropped) by --repair, or by the
  // read-write open before it, as by the next mount.
  uint64_t rados_intents = 0, rados_unrefs = 0;
  bool rados_pending_resolved = false;
  bool clean() const { return issues.empty(); }
  bool all_repaired() const;
};

// Runs the checks (and repairs) on an open backing directory.
// REQUIRES: no daemon writes to it when opts.repair (hold the lock).
Result<FsckReport> RunFsck(BackingDir& backing, const FsckOptions& opts);

}  // namespace chainswap
