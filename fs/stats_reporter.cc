#include "fs/stats_reporter.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace chainswap {

std::string StatsToJson(const PublishedStats& p) {
  const EngineStats& s = p.engine;
  nlohmann::json j = {{"w_bucket", s.w_bucket},
                      {"x_bucket", s.x_bucket},
                      {"queue_slots", s.n},
                      {"delete_slots", s.d},
                      {"journal_bytes", s.journal_bytes},
                      {"journal_limit", s.journal_limit},
                      {"buckets", s.buckets},
                      {"pending_records", s.pending_records},
                      {"staged_write_blocks", s.staged_write_blocks},
                      {"staged_delete_ranges", s.staged_delete_ranges},
                      {"writes_absorbed", s.writes_absorbed},
                      {"ops_destaged", s.ops_destaged},
                      {"ops_per_sec", p.ops_per_sec},
                      {"blocks_stored", s.blocks_stored},
                      {"blocks_deduped", s.blocks_deduped},
                      {"blocks_freed", s.blocks_freed},
                      {"enospc", s.enospc},
                      {"policy_changes", s.policy_changes},
                      {"store_usage", s.store_usage},
                      {"error", s.error}};
  return j.dump(2);
}

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
