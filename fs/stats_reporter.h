// Publishes the destage engine's figures once a second (SPEC §5 visibility):
// keeps the latest snapshot (with destaged ops per second) for the xattrs and
// writes it atomically to BACKING/destage.json for `chainswap stats`.
//
// Thread-safety: Latest() may be called from any thread; the reporter owns
// one background thread, stopped by the destructor.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "destage/engine.h"
#include "fs/figures.h"  // PublishedStats, StatsToJson

namespace chainswap {

class StatsReporter {
 public:
  StatsReporter(Engine& engine, std::string path);
  ~StatsReporter();
  StatsReporter(const StatsReporter&) = delete;
  StatsReporter& operator=(const StatsReporter&) = delete;

  // A fresh snapshot (engine figures now, rate from the last second).
  PublishedStats Latest();

 private:
  void Loop();
  void Publish();

  Engine& engine_;
  const std::string path_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;        // guarded by mu_
  double rate_ = 0;          // guarded by mu_
  uint64_t last_ops_ = 0;    // reporter thread only
  std::thread thread_;
};

}  // namespace chainswap
