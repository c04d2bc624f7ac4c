// Compression of a batch's new blocks ahead of the catalog transaction that
// stores them (issue 14: ingest with compress=lz4 near compress=off).
//
// The write destager applies a batch under the catalog mutex, one op after
// the other; compressing each new unique block there (LZ4, ~5 µs) sat on the
// ingest's critical path. Instead, before the transaction, the destager asks
// the catalog which of the batch's blocks are probably new
// (Catalog::PredictNew), and a WritePrep compresses those, in op order, on
// its own worker thread while the transaction runs. When the transaction
// reaches a new block, PreparedBlock::Get() returns its stored form: ready,
// or compressed by the caller right then when the worker has not claimed it
// yet (a block is compressed once, by whichever thread claims it first), or,
// if the worker is compressing it at that moment, once the worker is done.
// A prediction that was wrong costs one compression on the worker (a block
// predicted new that turned out a duplicate) or nothing (a block predicted
// duplicate is compressed inline, as without WritePrep).
//
// Thread-safety: Start() and Finish() are called by one thread (the write
// destager), alternately. PreparedBlock::Get() may be called from any thread
// between them; the claim of each block is one atomic compare-and-swap, its
// result published by a release store. The worker's job fields are guarded
// by WritePrep::mu_ (a leaf lock: nothing is taken while it is held).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "catalog/compression.h"
#include "catalog/mutex.h"
#include "catalog/thread_annotations.h"

namespace chainswap {

struct BlockOp;

// One block's stored form, compressed once by whichever thread claims it.
class PreparedBlock {
 public:
  // The block's compression (BlockCompressor::Compress of `data`); when not
  // raw(), form() holds its stored form. Claims the block if nobody has.
  const CompressedBlock& Get();
  // The stored form (header and LZ4 bytes); valid after Get().
  std::span<const uint8_t> form() const { return {form_, result_.stored_bytes()}; }

 private:
  friend class WritePrep;
  enum State : uint8_t { kPending, kBusy, kDone };
  // Compresses the block if this call claims it; true when it did.
  bool TryCompress();

  const uint8_t* data_ = nullptr;
  std::atomic<uint8_t> state_{kPending};
  CompressedBlock result_;  // written by the claimer before state_ = kDone
  alignas(64) uint8_t form_[kMaxCompressedBytes];
};

class WritePrep {
 public:
  WritePrep();
  ~WritePrep();  // stops and joins the worker
  WritePrep(const WritePrep&) = delete;
  WritePrep& operator=(const WritePrep&) = delete;

  // Points ops[i].prepared, for every i in `fresh` (writes whose data stays
  // valid until Finish()), at a PreparedBlock and starts compressing them
  // in that order on the worker. REQUIRES: Finish() since the last Start().
  void Start(std::span<BlockOp> ops, std::span<const size_t> fresh) EXCLUDES(mu_);
  // Stops the worker from claiming more of the batch and waits until it
  // touches none of it; the ops' prepared pointers are then invalid.
  void Finish() EXCLUDES(mu_);

  // Blocks the worker compressed (for tests and counters).
  uint64_t worker_compressed() const { return worker_compressed_.load(std::memory_order_relaxed); }

 private:
  void Run() EXCLUDES(mu_);

  std::unique_ptr<PreparedBlock[]> blocks_;  // capacity_ of them, reused per batch
  size_t capacity_ = 0;                      // touched by the Start/Finish thread only

  Mutex mu_;
  CondVar cv_{&mu_};
  PreparedBlock* job_ GUARDED_BY(mu_) = nullptr;  // the batch's blocks
  size_t job_size_ GUARDED_BY(mu_) = 0;
  uint64_t job_seq_ GUARDED_BY(mu_) = 0;    // Start() count
  uint64_t done_seq_ GUARDED_BY(mu_) = 0;   // batches the worker has left
  bool stop_ GUARDED_BY(mu_) = false;
  std::atomic<bool> cancel_{false};         // Finish(): claim nothing more
  std::atomic<uint64_t> worker_compressed_{0};
  std::thread worker_;
};

}  // namespace chainswap
