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

void WritePrep::Begin(size_t max_items, uint64_t store_epoch) {
  if (max_items > capacity_) {
    capacity_ = max_items;
    blocks_ = std::make_unique<PreparedBlock[]>(capacity_);
  }
  added_ = 0;
  epoch_ = store_epoch;
  cancel_.store(false, std::memory_order_relaxed);
  MutexLock lock(&mu_);
  job_ = blocks_.get();
  job_size_ = 0;
  job_last_ = false;
  ++job_seq_;
}

void WritePrep::Add(BlockOp& op, std::optional<int64_t> candidate) {
  PreparedBlock& b = blocks_[added_++];  // Begin's max_items bounds added_
  b.kind_ = candidate ? PreparedBlock::Kind::kVerify : PreparedBlock::Kind::kCompress;
  b.candidate_ = candidate.value_or(0);
  b.store_ = &store_;
  b.equal_ = false;
  b.data_ = op.data;
  b.store_epoch_ = epoch_;
  b.result_ = CompressedBlock{};
  b.state_.store(PreparedBlock::kPending, std::memory_order_relaxed);
  op.prepared = &b;
}

void WritePrep::Publish(bool last) {
  MutexLock lock(&mu_);  // the items added so far reach the worker
  job_size_ = added_;
  job_last_ = last;
  cv_.SignalAll();
}

void WritePrep::Finish() {
  cancel_.store(true, std::memory_order_relaxed);
  MutexLock lock(&mu_);
  cv_.SignalAll();  // a worker waiting for more items
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
    const uint64_t seq = job_seq_;
    uint64_t done = 0;
    size_t k = 0;
    for (;;) {
      // Items [k, job_size_) are published; more may come until job_last_.
      while (k == job_size_ && !job_last_ && !stop_ && !cancel_.load(std::memory_order_relaxed)) cv_.Wait();
      const size_t end = job_size_;
      if (k == end || stop_ || cancel_.load(std::memory_order_relaxed)) break;
      lock.Unlock();
      for (; k < end && !cancel_.load(std::memory_order_relaxed); ++k) done += items[k].Claim(/*run=*/true);
      lock.Lock();
    }
    worker_items_.fetch_add(done, std::memory_order_relaxed);
    done_seq_ = seq;
    cv_.SignalAll();
  }
}

}  // namespace chainswap
