#include "catalog/write_prep.h"

#include <pthread.h>

#include "catalog/catalog.h"

namespace chainswap {

bool PreparedBlock::TryCompress() {
  uint8_t expected = kPending;
  if (!state_.compare_exchange_strong(expected, kBusy, std::memory_order_acquire)) return false;
  result_ = BlockCompressor::Compress(data_, std::span<uint8_t>(form_, sizeof form_));
  state_.store(kDone, std::memory_order_release);
  return true;
}

const CompressedBlock& PreparedBlock::Get() {
  if (!TryCompress()) {
    // Done, or the worker is compressing it now (a few microseconds).
    while (state_.load(std::memory_order_acquire) != kDone) std::this_thread::yield();
  }
  return result_;
}

WritePrep::WritePrep() : worker_([this] { Run(); }) {}

WritePrep::~WritePrep() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    cv_.SignalAll();
  }
  worker_.join();
}

void WritePrep::Start(std::span<BlockOp> ops, std::span<const size_t> fresh) {
  if (fresh.empty()) return;
  if (fresh.size() > capacity_) {
    capacity_ = fresh.size();
    blocks_ = std::make_unique<PreparedBlock[]>(capacity_);
  }
  for (size_t k = 0; k < fresh.size(); ++k) {
    PreparedBlock& b = blocks_[k];
    b.data_ = ops[fresh[k]].data;
    b.state_.store(PreparedBlock::kPending, std::memory_order_relaxed);
    ops[fresh[k]].prepared = &b;
  }
  cancel_.store(false, std::memory_order_relaxed);
  MutexLock lock(&mu_);  // publishes the blocks to the worker
  job_ = blocks_.get();
  job_size_ = fresh.size();
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
    PreparedBlock* blocks = job_;
    const size_t n = job_size_;
    lock.Unlock();
    uint64_t compressed = 0;
    for (size_t k = 0; k < n && !cancel_.load(std::memory_order_relaxed); ++k) compressed += blocks[k].TryCompress();
    worker_compressed_.fetch_add(compressed, std::memory_order_relaxed);
    lock.Lock();
    done_seq_ = job_seq_;
    cv_.SignalAll();
  }
}

}  // namespace chainswap
