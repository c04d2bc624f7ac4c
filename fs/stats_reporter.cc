#include "fs/stats_reporter.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>

namespace chainswap {

StatsReporter::StatsReporter(Engine& engine, std::string path)
    : engine_(engine), path_(std::move(path)), thread_([this] { Loop(); }) {}

StatsReporter::~StatsReporter() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  std::remove(path_.c_str());  // no stale figures once unmounted
}

PublishedStats StatsReporter::Latest() {
  PublishedStats p;
  p.engine = engine_.Stats();
  std::lock_guard lk(mu_);
  p.ops_per_sec = rate_;
  return p;
}

void StatsReporter::Publish() {
  PublishedStats p;
  p.engine = engine_.Stats();
  double rate = static_cast<double>(p.engine.ops_destaged - last_ops_);
  last_ops_ = p.engine.ops_destaged;
  {
    std::lock_guard lk(mu_);
    rate_ = rate;
  }
  p.ops_per_sec = rate;
  std::string tmp = path_ + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return;
  std::string text = StatsToJson(p);
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) spdlog::debug("stats: cannot publish {}", path_);
}

void StatsReporter::Loop() {
  std::unique_lock lk(mu_);
  while (!stop_) {
    lk.unlock();
    Publish();
    lk.lock();
    cv_.wait_for(lk, std::chrono::seconds(1), [this] { return stop_; });
  }
}

}  // namespace chainswap
