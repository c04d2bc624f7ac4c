#include "catalog/write_prep.h"

#include <pthread.h>

#include <algorithm>
#include <cstring>

#include "catalog/catalog.h"
#include "catalog/stored_block.h"

namespace chainswap {

bool PreparedBlock::Claim(bool run) {
  uint8_t expected = kPending;
  if (!state_.compare_exchange_strong(expected, kBusy, std::memory_order_acquire)) return false;
  if (run && kind_ == Kind::kCompress) {
    result_ = BlockCompressor::Compress(data_, std::span<uint8_t>(form_, sizeof form_));
  } else if (run) {
    // Quietly: should the candidate's space have been reused meanwhile,
    // its bytes are not what the prediction saw, and the catalog drops
    // this result (store epoch) rather than report damage.
    alignas(64) uint8_t buf[kBlockSize];
    equal_ = ReadStoredBlock(*store_, candidate_, buf, /*log_damage=*/false).ok() &&
             std::memcmp(buf, data_, kBlockSize) == 0;
  }
  state_.store(kDone, std::memory_order_release);
  return true;
}

void PreparedBlock::WaitDone() const {
  // The other thread is in the middle of this item: microseconds.
  while (state_.load(std::memory_order_acquire) != kDone) std::this_thread::yield();
}

const CompressedBlock& PreparedBlock::Get() {
  if (kind_ != Kind::kCompress) {
    // Predicted a duplicate, but new: compressed here, once the item is
    // this thread's alone.
    if (!Claim(/*run=*/false)) WaitDone();
    result_ = BlockCompressor::Compress(data_, std::span<uint8_t>(form_, sizeof form_));
    return result_;
  }
  if (!Claim(/*run=*/true)) WaitDone();
  return result_;
}

bool PreparedBlock::VerifiedEqual(int64_t candidate) {
  if (kind_ != Kind::kVerify || candidate != candidate_) return false;
  if (Claim(/*run=*/false)) return false;  // not started: the caller reads it itself
  WaitDone();
  return equal_;
}

WritePrep::WritePrep(const ContentStore& store) : store_(store), worker_([this] { Run(); }) {}

WritePrep::~WritePrep() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    cv_.SignalAll();
  }
  worker_.join();
}

void WritePrep::Start(std::span<BlockOp> ops, const WritePrediction& p) {
  const size_t n = p.fresh.size() + p.duplicates.size();
  if (n == 0) return;
  if (n > capacity_) {
    capacity_ = n;
    blocks_ = std::make_unique<PreparedBlock[]>(capacity_);
  }
  // Both lists are in op order: merge them, so that the worker goes the
  // transaction's way.
  size_t f = 0, d = 0;
  for (size_t k = 0; k < n; ++k) {
    PreparedBlock& b = blocks_[k];
    size_t op;
    if (d == p.duplicates.size() || (f < p.fresh.size() && p.fresh[f] < p.duplicates[d].first)) {
      op = p.fresh[f++];
      b.kind_ = PreparedBlock::Kind::kCompress;
    } else {
      op = p.duplicates[d].first;
      b.kind_ = PreparedBlock::Kind::kVerify;
      b.candidate_ = p.duplicates[d++].second;
      b.store_ = &store_;
      b.equal_ = false;
    }
    b.data_ = ops[op].data;
    b.store_epoch_ = p.store_epoch;
    b.result_ = CompressedBlock{};
    b.state_.store(PreparedBlock::kPending, std::memory_order_relaxed);
    ops[op].prepared = &b;
  }
  cancel_.store(false, std::memory_order_relaxed);
  MutexLock lock(&mu_);  // publishes the items to the worker
  job_ = blocks_.get();
  job_size_ = n;
  ++job_seq_;
  cv_.SignalAll();
}

void WritePrep::Finish() {
  cancel_.store(true, std::memory_order_relaxed);
  MutexLock lock(&mu_);
  while (done_seq_ != job_seq_) cv_.Wait();
  job_ = nullptr;
  job_size_ = 0;
}

void WritePrep::Run() {
  ::pthread_setname_np(::pthread_self(), "cs-compress");
  MutexLock lock(&mu_);
  for (;;) {
    while (!stop_ && done_seq_ == job_seq_) cv_.Wait();
    if (stop_) return;
    PreparedBlock* items = job_;
    const size_t n = job_size_;
    const uint64_t seq = job_seq_;
    lock.Unlock();
    uint64_t done = 0;
    for (size_t k = 0; k < n && !cancel_.load(std::memory_order_relaxed); ++k) done += items[k].Claim(/*run=*/true);
    worker_items_.fetch_add(done, std::memory_order_relaxed);
    lock.Lock();
    done_seq_ = seq;
    cv_.SignalAll();
  }
}

}  // namespace chainswap
