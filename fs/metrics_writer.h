// The daemon's metrics file (mount options metrics_file=PATH,
// metrics_interval=SECONDS): every interval, the figures of `chainswap stats`
// (fs/figures.h) in the Prometheus text format (fs/metrics.h), written to
// PATH atomically for node_exporter's textfile collector: a temporary file
// PATH.tmp in the same directory (mode 0644), then rename(2) over PATH, so a
// reader sees the old file or the new one, never part of one. No fsync:
// after a crash the file may be old or missing, never torn.
//
// A round that cannot write (disk full, directory removed, permissions) is
// logged as a warning, at most once every 5 minutes while it keeps failing
// (then once when it works again), and retried at the next interval; it never
// stops the daemon. When the writer stops (unmount), PATH is rewritten with
// chainswap_up 0.
//
// Locks: the writer thread holds its own mutex only to read its stop flag.
// Gathering takes no lock a request needs beyond the catalog's writer mutex
// inside Catalog::ListFiles (one row per swap file); the chain statistics
// run on the writer's own read connection; the file I/O runs with no lock
// held. Memory: one text buffer, reused, and the figures of one round, both
// proportional to the number of chains and swap files.
//
// Thread-safety: the constructor starts the thread, the destructor stops
// it; writes() and failures() may be read from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include "catalog/backing_dir.h"
#include "catalog/mutex.h"
#include "catalog/status.h"
#include "catalog/thread_annotations.h"

namespace chainswap {

class StatsReporter;

// Mount-time check of metrics_file=PATH (run before mounting, so that the
// operator sees the error on the terminal): PATH absolute, naming a file
// (not a directory) in an existing directory the daemon can create files
// in, and not under the mountpoint. EINVAL/ENOENT/ENOTDIR/EACCES... with a
// message naming PATH and the problem.
Status CheckMetricsFile(const std::string& path, const std::string& mountpoint);

// Writes `text` to `path` atomically: PATH.tmp (0644, truncated), then
// rename over PATH. On failure the temporary file is removed and `path` is
// left as it was.
Status WriteFileAtomically(const std::string& path, std::string_view text);

class MetricsWriter {
 public:
  // Fills *out (empty on entry) with the metrics text. An error skips the
  // round's write (and is logged like a write failure).
  using Render = std::function<Status(std::string* out)>;

  // Starts the thread: a first round at once, then one every `interval`.
  // `down_text` is written when the writer stops.
  MetricsWriter(std::string path, std::chrono::milliseconds interval, Render render, std::string down_text);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  // Rounds that wrote the file, and rounds that failed, so far.
  uint64_t writes() const { return writes_.load(); }
  uint64_t failures() const { return failures_.load(); }

 private:
  void Loop() EXCLUDES(mu_);
  void Round();
  // Logs a failed round (rate-limited) or a recovery.
  void Report(const Status& st);

  // Constant after construction.
  const std::string path_;
  const std::chrono::milliseconds interval_;
  const Render render_;
  const std::string down_text_;

  Mutex mu_;
  CondVar cv_{&mu_};
  bool stop_ GUARDED_BY(mu_) = false;

  // The writer thread's alone.
  std::string text_;                       // reused across rounds
  uint64_t failing_since_warning_ = 0;     // failures since the last warning
  uint64_t failing_streak_ = 0;            // consecutive failures
  std::chrono::steady_clock::time_point last_warning_{};

  std::atomic<uint64_t> writes_{0}, failures_{0};
  std::thread thread_;  // last: started once everything above is set
};

// The daemon's render: the served backing directory's catalog figures
// (through a read connection of its own, opened at the first round) and the
// reporter's live engine figures, as RenderMetrics prints them. Call its
// result on one thread only (the writer's).
MetricsWriter::Render DaemonMetricsRender(BackingDir& backing, StatsReporter& reporter);

}  // namespace chainswap
