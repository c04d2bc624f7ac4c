// The in-memory half of the chain hash index's log (schema v3,
// docs/ARCHITECTURE.md "The hash index"): the changes to the index that
// are in the hash_log table and not yet merged into hash_index.
//
// The index maps a 48-bit hash key to physical blocks. Each change is an
// *add* (key, pblock) when a block is stored or a *remove* when it is
// freed; the catalog appends it to hash_log (sequential: the rowid is the
// order of the changes) in the transaction that makes it, and records it
// here. Changes are merged into hash_index in sorted batches, so that a
// B-tree leaf of the index is written once for all the changes that fall
// into it rather than once per change.
//
// Two generations:
//  - *active*: the changes since the last freeze, net per (key, pblock)
//    (an add then a remove of the same pair cancel: the add never reached
//    hash_index), in an open-addressing hash table that lookups probe.
//  - *frozen*: an earlier active generation, sorted by (key, pblock), being
//    merged into hash_index a chunk at a time (NextChunk / ChunkMerged).
//    Its log rows are deleted once all of it is merged.
// A lookup takes candidates from both generations and from hash_index.
// Candidates are hints: the caller checks each against its PAT row (same
// chain, same key) — a remove that is not merged yet leaves a stale entry
// in hash_index, which that check rejects.
//
// Merging is idempotent (an add is INSERT OR IGNORE, a remove a DELETE):
// after a crash, Load() replays every log row in order, last change per
// pair wins, into one frozen generation that is merged again from the
// start.
//
// Transactions: Begin(), changes, then Commit() or Abort() (which undoes
// the changes since Begin()); at most one open at a time, as the catalog's
// database transactions. MaybeFreeze() and ChunkMerged() run outside
// transactions, ChunkMerged() after the commit of the transaction that
// merged the chunk into hash_index.
//
// Thread-safety: none; the catalog's writer mutex owns it.
#pragma once

#include <cstddef>
#include <climits>
#include <cstdint>
#include <span>
#include <vector>

namespace chainswap {

class HashLog {
 public:
  // One net change: an add of (key, pblock()), or a remove.
  struct Change {
    int64_t key;
    // pblock * 2 + 1 for an add, pblock * 2 for a remove (a pblock may be
    // negative: a packed block, stored_block.h; arithmetic shifts are
    // defined for negatives since C++20).
    int64_t code;
    bool add() const { return (code & 1) != 0; }
    int64_t pblock() const { return code >> 1; }
  };

  // `max_entries`: the active generation is frozen once it holds this many
  // net changes (or twice as many log rows). Memory: MemoryFor().
  explicit HashLog(size_t max_entries);
  HashLog(const HashLog&) = delete;
  HashLog& operator=(const HashLog&) = delete;

  // Bytes of memory for `max_entries` (for the option's arithmetic).
  static size_t MemoryFor(size_t max_entries);
  // The largest max_entries whose MemoryFor() is at most `bytes` (at least 1024).
  static size_t EntriesFor(size_t bytes);

  // ---- Start-up: the log rows in seq order, then Loaded(). Every change
  // becomes part of the frozen generation (last change per pair wins).
  void LoadRow(int64_t seq, int64_t key, int64_t pblock, bool add);
  void Loaded();

  // ---- Transactions.
  void Begin();
  void Commit();
  void Abort();

  // Records a change (REQUIRES: a transaction open); returns the log
  // sequence number the caller gives its hash_log row.
  int64_t Add(int64_t key, int64_t pblock) { return Record(key, pblock, true); }
  int64_t Remove(int64_t key, int64_t pblock) { return Record(key, pblock, false); }

  // Appends to `out` the pblocks of both generations' adds of `key`
  // (unsorted, maybe repeated).
  void Candidates(int64_t key, std::vector<int64_t>* out) const;

  // ---- Merging.
  // Freezes the active generation when nothing is frozen and it is due
  // (full, or its log rows many), or, with `force`, has anything at all.
  // REQUIRES: no transaction open.
  void MaybeFreeze(bool force = false);
  // True while a frozen generation is being merged (its rows, seq <
  // FrozenEnd(), are still in hash_log; it may have no change left).
  bool frozen_open() const { return frozen_open_; }
  // The next up to `max` changes of the frozen generation to merge, in
  // (key, pblock) order.
  std::span<const Change> NextChunk(size_t max) const;
  // True when the chunk NextChunk(max) returns is the frozen generation's
  // last: its transaction also deletes the log rows below FrozenEnd().
  bool IsLastChunk(size_t max) const;
  // Log rows with seq < FrozenEnd() belong to the frozen generation.
  int64_t FrozenEnd() const { return frozen_end_; }
  // The transaction that merged NextChunk(n) (and, for the last chunk,
  // deleted the generation's rows) committed.
  // REQUIRES: no transaction open, frozen_open().
  void ChunkMerged(size_t n);

  // Figures, for tests and statistics.
  size_t active_entries() const { return count_; }
  size_t frozen_entries() const { return frozen_.size() - merged_; }
  size_t log_rows() const { return rows_; }  // rows in hash_log (both generations)
  size_t txn_rows() const { return rows_ - txn_saved_rows_; }  // logged by the open transaction
  size_t max_entries() const { return max_entries_; }

 private:
  // The open-addressing table holds Changes; key kEmpty marks a free slot.
  static constexpr int64_t kEmpty = INT64_MIN;  // never a 48-bit key
  // Undo record of the open transaction: the pair's previous state.
  struct Undo {
    int64_t key;
    int64_t pblock;
    int64_t code;  // as in Change, or kEmpty: the pair was absent
  };

  int64_t Record(int64_t key, int64_t pblock, bool add);
  // The slot holding (key, pblock) as an add or a remove, or -1.
  ptrdiff_t Find(int64_t key, int64_t pblock) const;
  // Sets the pair's state: `code` (add or remove) or kEmpty (absent).
  void Set(int64_t key, int64_t pblock, int64_t code);
  void Insert(int64_t key, int64_t code);
  void EraseAt(size_t i);
  void Resize(size_t slots);
  size_t Home(int64_t key) const { return static_cast<size_t>((static_cast<uint64_t>(key) * 0x9E3779B97F4A7C15ull) >> shift_); }

  const size_t max_entries_;
  std::vector<Change> table_;  // the active generation
  unsigned shift_ = 0;       // 64 - log2(table_.size())
  size_t count_ = 0;         // occupied slots
  size_t active_rows_ = 0;   // log rows of the active generation
  size_t rows_ = 0;          // log rows of both generations
  int64_t next_seq_ = 1;

  bool frozen_open_ = false;
  std::vector<Change> frozen_;  // sorted by (key, pblock)
  size_t merged_ = 0;           // frozen_[0, merged_) are in hash_index
  int64_t frozen_end_ = 0;      // first seq of the active generation

  bool in_txn_ = false;
  std::vector<Undo> undo_;
  size_t txn_saved_rows_ = 0, txn_saved_active_rows_ = 0;
  int64_t txn_saved_seq_ = 0;
};

}  // namespace chainswap
