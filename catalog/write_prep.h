// The compression work of a batch of writes, done ahead of the catalog
// transaction that applies it (issue 14: ingest with compress=lz4 near
// compress=off).
//
// The write destager applies a batch under the catalog mutex, one op after
// the other. With compression on, two kinds of work there sat on the
// ingest's critical path: compressing each new unique block (LZ4, ~5 µs),
// and, with dedup_verify, reading and decompressing the stored block each
// duplicate matched (~2 µs). So before the transaction the destager asks the
// catalog what each write probably is (Catalog::PredictWrites: new, or a
// duplicate of a given compressed block), and a WritePrep does that work, in
// op order, on its own thread: it starts on the first items while the
// catalog still predicts the rest (a lead on the transaction), and goes on
// while the transaction runs:
//   - a probably new block is compressed; when the transaction stores it,
//     PreparedBlock::Get() returns the stored form;
//   - a probable duplicate is compared with the candidate's stored bytes;
//     PreparedBlock::VerifiedEqual(candidate) says whether they were equal.
// Each item is claimed once, by one compare-and-swap: by the worker, or by
// the transaction when it gets there first (it then does the work itself,
// as without WritePrep); when the worker is in the middle of an item the
// transaction waits for it (microseconds). A wrong prediction costs the
// worker's effort, never a wrong result: the transaction still decides
// everything under the catalog mutex (the catalog accepts a verification
// only while no Sync has made freed space reusable since the prediction:
// PredictWrites' store epoch).
//
// Thread-safety: Begin(), Add(), Publish() and Finish() are called by one
// thread (the write destager, through the catalog's prediction for the
// first three), in that order per batch. PreparedBlock's methods may be called from any
// thread between them; an item's claim is one atomic compare-and-swap, its
// result published by a release store. The worker's job fields are guarded
// by WritePrep::mu_ (a leaf lock: nothing else is taken while it is held).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "catalog/compression.h"
#include "catalog/mutex.h"
#include "catalog/thread_annotations.h"

namespace chainswap {

struct BlockOp;
class ContentStore;

// One op's work, done once by whichever thread claims it.
class PreparedBlock {
 public:
  // A probably new block: its compression (BlockCompressor::Compress of the
  // op's data); when not raw(), form() then holds the stored form.
  const CompressedBlock& Get();
  std::span<const uint8_t> form() const { return {form_, result_.stored_bytes()}; }

  // A probable duplicate: true when the worker found `candidate`'s stored
  // bytes equal to the op's data; false when they differ, when it could not
  // read them, when the item was for another candidate or when the worker
  // had not started it (the caller verifies itself).
  bool VerifiedEqual(int64_t candidate);
  // The catalog's store epoch at the prediction (WritePrep::Begin).
  uint64_t store_epoch() const { return store_epoch_; }
  // What was predicted: a duplicate of candidate() (else new).
  bool verifies() const { return kind_ == Kind::kVerify; }
  int64_t candidate() const { return candidate_; }

 private:
  friend class WritePrep;
  enum State : uint8_t { kPending, kBusy, kDone };
  enum class Kind : uint8_t { kCompress, kVerify };
  // Claims the item and does its work; false when another thread had
  // claimed it. `run` false only claims it (the work is left undone).
  bool Claim(bool run);
  void WaitDone() const;

  Kind kind_ = Kind::kCompress;
  const uint8_t* data_ = nullptr;
  const ContentStore* store_ = nullptr;  // kVerify
  int64_t candidate_ = 0;                // kVerify
  uint64_t store_epoch_ = 0;
  std::atomic<uint8_t> state_{kPending};
  // Written by the claimer before state_ = kDone.
  CompressedBlock result_;  // kCompress
  bool equal_ = false;      // kVerify: the worker found them equal
  alignas(64) uint8_t form_[kMaxCompressedBytes];
};

class WritePrep {
 public:
  // `store`: where the candidates of verifications are read.
  explicit WritePrep(const ContentStore& store);
  ~WritePrep();  // stops and joins the worker
  WritePrep(const WritePrep&) = delete;
  WritePrep& operator=(const WritePrep&) = delete;

  // A batch, filled by the catalog's prediction (Catalog::PredictWrites):
  // Begin() with at most `max_items` items and the catalog's store epoch,
  // then Add() per predicted op, in op order, with Publish() now and then
  // (the worker starts on what is published) and Publish(/*last=*/true) at
  // the end. The ops' data must stay valid until Finish(). REQUIRES:
  // Finish() since the last Begin().
  void Begin(size_t max_items, uint64_t store_epoch) EXCLUDES(mu_);
  // An item for `op`: its compression (no candidate) or its comparison with
  // `candidate`; points op.prepared at it.
  void Add(BlockOp& op, std::optional<int64_t> candidate);
  void Publish(bool last) EXCLUDES(mu_);
  // Stops the worker from claiming more of the batch and waits until it
  // touches none of it; the ops' prepared pointers are then invalid.
  void Finish() EXCLUDES(mu_);

  // Items the worker did (for tests and counters).
  uint64_t worker_items() const { return worker_items_.load(std::memory_order_relaxed); }

 private:
  void Run() EXCLUDES(mu_);

  const ContentStore& store_;
  // Touched by the Begin/Add/Finish thread only (the worker reads the
  // items below job_size_).
  std::unique_ptr<PreparedBlock[]> blocks_;  // capacity_ of them, reused per batch
  size_t capacity_ = 0;
  size_t added_ = 0;       // items of the batch so far
  uint64_t epoch_ = 0;     // the batch's store epoch

  Mutex mu_;
  CondVar cv_{&mu_};
  PreparedBlock* job_ GUARDED_BY(mu_) = nullptr;  // the batch's items, in op order
  size_t job_size_ GUARDED_BY(mu_) = 0;    // items published
  bool job_last_ GUARDED_BY(mu_) = false;  // all of them
  uint64_t job_seq_ GUARDED_BY(mu_) = 0;   // Begin() count
  uint64_t done_seq_ GUARDED_BY(mu_) = 0;  // batches the worker has left
  bool stop_ GUARDED_BY(mu_) = false;
  std::atomic<bool> cancel_{false};  // Finish(): claim nothing more
  std::atomic<uint64_t> worker_items_{0};
  std::thread worker_;
};

}  // namespace chainswap
