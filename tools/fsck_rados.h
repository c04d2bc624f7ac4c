// chainswap fsck of a catalog whose blocks are in a RADOS pool (meta store =
// 'rados'; docs/RADOS.md, catalog/rados_backend.h): the cross-check of the
// catalog's rados_* rows with the pool. Called by RunFsck (fsck.h), which
// runs the catalog's own checks (refcounts, LAT, hash index) as for a local
// store and skips those of store.dat (slots, extents, leaked pages).
//
// What it proves, for this host (meta rados_host = HOST):
//   rows     every PAT row has exactly one rados_block row and every
//            rados_block row a PAT row;
//   refs     for every rados_block row of block P, its object
//            (blk.<chain rados_id>.<hash>[.HOST.P]) exists and lists the
//            holder ref.HOST.P exactly once (Holders);
//   hashes   (FsckOptions::verify_hashes) the object's bytes hash, with the
//            chain's seed, to rados_block.hash (and to pat.hash_key);
//   leaks    no object of this host's chains (blk.<rados_id>. of every chain
//            row) lists a holder ref.HOST.N that the catalog does not
//            account for: N a block of the PAT (on its own object), or a row
//            of rados_intent or rados_unref (references being taken or still
//            to drop: information, not damage).
//
// Issue kinds: rados_block_missing (a PAT row without rados_block: rebuilt
// from the pool when the block's one reference is found on an object whose
// bytes match the name's hash, else not repairable), rados_block_orphan
// (a rados_block row of no block: the row goes to rados_unref and its
// reference is dropped), rados_ref_missing (re-taken with Ref),
// rados_object_missing (the data is lost: not repairable), rados_ref_duplicate
// (one Unref per extra entry), rados_ref_leaked (Unref), rados_refs_unreadable
// (an object's cas references do not decode: not repairable), chain_rados_id
// (a chain without its cluster-wide ID: not repairable), hash (not
// repairable), rados_queue_conflict (a rados_intent or rados_unref row whose
// holder a PAT row uses: the next mount would drop that block's reference;
// --repair's open already has, and the refs check takes it again),
// rados_unref (--repair: a pending reference whose put failed; its row stays).
//
// Offline (--repair) the rows of rados_intent and rados_unref are resolved
// first (a put each; OK, ENOLINK and ENOENT all mean done; the rows go), as a
// mount does. On a mounted backing directory (FsckOptions::journal_live) the
// daemon takes and drops references meanwhile: every finding is checked
// again against the catalog as it is afterwards (and the pool) before it is
// reported.
//
// An unreachable cluster is an error (the check stops: exit 8), never an
// issue.
#pragma once

#include <cstdint>
#include <map>
#include <memory>

#include "catalog/backing_dir.h"
#include "catalog/block.h"
#include "catalog/sqlite.h"
#include "tools/fsck.h"

namespace chainswap {

// Inside RunFsck's repair transaction: the refcount repair frees block
// `pblock` of chain `dedup_id` (its PAT row is gone): its rados_block row
// moves to rados_unref (as the catalog's free does), and RunRadosFsck drops
// the reference. Nothing when the block has no rados_block row (its
// reference, if any, is then a leak that RunRadosFsck finds).
Status RadosFsckFreeBlock(sql::Db& db, const RadosBackend& rados, int64_t pblock, int64_t dedup_id);

// The rows of rados_intent and rados_unref (one snapshot of `db`).
Result<std::pair<uint64_t, uint64_t>> RadosPendingRows(sql::Db& db);

// The cross-check (and, with opts.repair, its repairs). Adds its issues and
// its counts (rados_*, blocks_checked) to `rep`. `hashers`: the chains' by
// dedup ID (RunFsck's, from the chain table). REQUIRES: backing.rados().
Status RunRadosFsck(BackingDir& backing, const FsckOptions& opts,
                    const std::map<int64_t, std::shared_ptr<const BlockHasher>>& hashers, FsckReport& rep);

}  // namespace chainswap
