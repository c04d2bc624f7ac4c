// Lock types the compiler can check (catalog/thread_annotations.h), after
// LevelDB's port::Mutex and abseil's MutexLock. libstdc++'s std::mutex and
// std::shared_mutex carry no annotations, so every lock of chainswap is one
// of these:
//
//   Mutex        exclusive lock (std::mutex underneath).
//   SharedMutex  reader/writer lock whose waiting writers hold off new
//                readers (glibc's PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP):
//                with std::shared_mutex (glibc prefers readers) a stream of
//                short shared holds kept a writer waiting for milliseconds.
//                ThreadSanitizer understands pthread rwlocks.
//   MutexLock, WriterLock, ReaderLock  scoped holders (RAII); Unlock() and
//                Lock() drop and retake the lock inside the scope.
//   CondVar      a condition variable bound to one Mutex.
//
// Thread-safety: that is their job. None is recursive.
#pragma once

#include <pthread.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "catalog/thread_annotations.h"

namespace chainswap {

class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  bool TryLock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // Tells the analysis the caller holds the lock (no run-time check).
  void AssertHeld() ASSERT_CAPABILITY(this) {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

class CAPABILITY("shared_mutex") SharedMutex {
 public:
  SharedMutex() {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&rw_, &attr);
    pthread_rwlockattr_destroy(&attr);
  }
  ~SharedMutex() { pthread_rwlock_destroy(&rw_); }
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void Lock() ACQUIRE() { pthread_rwlock_wrlock(&rw_); }
  void Unlock() RELEASE() { pthread_rwlock_unlock(&rw_); }
  void LockShared() ACQUIRE_SHARED() { pthread_rwlock_rdlock(&rw_); }
  void UnlockShared() RELEASE_SHARED() { pthread_rwlock_unlock(&rw_); }
  void AssertHeld() ASSERT_CAPABILITY(this) {}
  void AssertReaderHeld() ASSERT_SHARED_CAPABILITY(this) {}

 private:
  pthread_rwlock_t rw_;
};

// Holds a Mutex for its scope.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() {
    if (held_) mu_->Unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  // Drops the lock inside the scope (it is not released again at its end
  // unless Lock() took it back).
  void Unlock() RELEASE() {
    mu_->Unlock();
    held_ = false;
  }
  void Lock() ACQUIRE() {
    mu_->Lock();
    held_ = true;
  }

 private:
  Mutex* const mu_;
  bool held_ = true;
};

// Holds a SharedMutex exclusively for its scope.
class SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~WriterLock() RELEASE() { mu_->Unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex* const mu_;
};

// Holds a SharedMutex shared for its scope.
class SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex* mu) ACQUIRE_SHARED(mu) : mu_(mu) { mu_->LockShared(); }
  ~ReaderLock() RELEASE() { mu_->UnlockShared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex* const mu_;
};

// A condition variable whose waits release and retake one Mutex.
// REQUIRES (not expressible to the analysis, as in LevelDB): the caller of a
// wait holds that Mutex.
class CondVar {
 public:
  explicit CondVar(Mutex* mu) : mu_(mu) {}
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  void Wait() {
    std::unique_lock<std::mutex> lk(mu_->mu_, std::adopt_lock);
    cv_.wait(lk);
    lk.release();
  }
  // Waits at most `d`; spurious and timed-out wakeups look alike, so
  // callers re-check their condition.
  template <typename Rep, typename Period>
  void WaitFor(std::chrono::duration<Rep, Period> d) {
    std::unique_lock<std::mutex> lk(mu_->mu_, std::adopt_lock);
    cv_.wait_for(lk, d);
    lk.release();
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  Mutex* const mu_;
  std::condition_variable cv_;
};

}  // namespace chainswap
