#include "fs/metrics_writer.h"

#include <fcntl.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>

#include "fs/figures.h"
#include "fs/metrics.h"
#include "fs/stats_reporter.h"

namespace chainswap {

namespace {

// While rounds keep failing, one warning per this interval.
constexpr std::chrono::minutes kWarnEvery{5};

std::string DirOf(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

Status CheckMetricsFile(const std::string& path, const std::string& mountpoint) {
  const std::string what = "metrics_file=" + path;
  if (path.empty() || path[0] != '/') return Status::Error(EINVAL, what + ": expected an absolute path");
  const std::string base = path.substr(path.find_last_of('/') + 1);
  if (base.empty() || base == "." || base == "..")
    return Status::Error(EINVAL, what + ": expected the path of a file, not of a directory");
  const std::string dir = DirOf(path);
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) return Status::Error(ENOENT, what + ": directory " + dir + " does not exist");
    return Status::FromErrno(err, what + ": directory " + dir);
  }
  if (!S_ISDIR(st.st_mode)) return Status::Error(ENOTDIR, what + ": " + dir + " is not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    return Status::FromErrno(errno, what + ": cannot create files in " + dir);
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    return Status::Error(EISDIR, what + ": is a directory");
  // Not on the mount itself: the daemon would serve its own writes (and a
  // file at the mount root is refused anyway).
  char* real = ::realpath(dir.c_str(), nullptr);
  if (real) {
    const std::string r = real;
    std::free(real);
    if (r == mountpoint || r.rfind(mountpoint + "/", 0) == 0)
      return Status::Error(EINVAL, what + ": is under the mountpoint " + mountpoint + "; choose a directory elsewhere");
  }
  return Status::Ok();
}

Status WriteFileAtomically(const std::string& path, std::string_view text) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return Status::FromErrno("create " + tmp);
  Status st;
  if (::fchmod(fd, 0644) != 0) st = Status::FromErrno("chmod " + tmp);  // whatever the umask
  size_t done = 0;
  while (st.ok() && done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) st = Status::FromErrno("write " + tmp);
    else done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0 && st.ok()) st = Status::FromErrno("close " + tmp);
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) st = Status::FromErrno("rename " + tmp + " to " + path);
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

MetricsWriter::MetricsWriter(std::string path, std::chrono::milliseconds interval, Render render,
                             std::string down_text)
    : path_(std::move(path)),
      interval_(interval),
      render_(std::move(render)),
      down_text_(std::move(down_text)),
      thread_([this] { Loop(); }) {}

MetricsWriter::~MetricsWriter() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  thread_.join();
  Status st = WriteFileAtomically(path_, down_text_);
  if (!st.ok()) spdlog::warn("metrics: cannot write the final {}: {}", path_, st.ToString());
}

void MetricsWriter::Loop() {
  ::pthread_setname_np(::pthread_self(), "cs-metrics");
  MutexLock lock(&mu_);
  while (!stop_) {
    lock.Unlock();
    Round();  // no lock held: gathering and the file I/O
    lock.Lock();
    const auto until = std::chrono::steady_clock::now() + interval_;
    while (!stop_ && std::chrono::steady_clock::now() < until) cv_.WaitFor(until - std::chrono::steady_clock::now());
  }
}

void MetricsWriter::Round() {
  text_.clear();
  Status st = render_(&text_);
  if (st.ok()) st = WriteFileAtomically(path_, text_);
  if (st.ok()) writes_.fetch_add(1);
  else failures_.fetch_add(1);
  Report(st);
}

void MetricsWriter::Report(const Status& st) {
  const auto now = std::chrono::steady_clock::now();
  if (st.ok()) {
    if (failing_streak_ > 0)
      spdlog::info("metrics: {} written again after {} failed round(s)", path_, failing_streak_);
    failing_streak_ = 0;
    failing_since_warning_ = 0;
    return;
  }
  ++failing_streak_;
  ++failing_since_warning_;
  if (failing_streak_ == 1 || now - last_warning_ >= kWarnEvery) {
    spdlog::warn("metrics: cannot update {} ({} failed round(s) since the last warning): {}; retrying every {} ms",
                 path_, failing_since_warning_, st.ToString(), interval_.count());
    last_warning_ = now;
    failing_since_warning_ = 0;
  }
}

MetricsWriter::Render DaemonMetricsRender(BackingDir& backing, StatsReporter& reporter) {
  // The read connection lives with the render (the writer thread's).
  auto reader = std::make_shared<std::optional<sql::Db>>();
  return [&backing, &reporter, reader](std::string* out) -> Status {
    if (!reader->has_value()) {
      auto db = OpenStatsReader(backing.paths().catalog);
      if (!db.ok()) return db.status();
      reader->emplace(std::move(*db));
    }
    Figures f;
    f.backing = backing.paths().root;
    f.mounted = true;
    f.destage = reporter.Latest();
    Status st = GatherCatalogFigures(backing, **reader, &f);
    if (!st.ok()) {
      reader->reset();  // reopened at the next round
      return st;
    }
    auto problems = RenderMetrics(f, out);
    if (!problems.empty()) return Status::Error(EINVAL, "metrics text: " + problems.front());
    return Status::Ok();
  };
}

}  // namespace chainswap
