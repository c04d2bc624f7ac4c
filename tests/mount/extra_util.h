// Helpers for the destage, crash, capacity, clone, fsck and CLI mounted tests,
// on top of mount_fixture.h (which they do not change):
//
//   GetXattr / Destage*  the daemon's destage figures (user.chainswap.destage.*
//                        on the mount root, SPEC §5 "visible in the xattrs").
//   Cli()                `chainswap ARGS...` (CHAINSWAP_BIN).
//   Daemon               a chainswapfs process on a MountedFs's backing and
//                        mountpoint that the test starts with any options,
//                        stops cleanly, or kills with SIGKILL (then lazily
//                        unmounts the dead mount) — the fixture's MountedFs
//                        only mounts with one option set and never crashes;
//                        SetExtraEnv() adds environment variables (the
//                        power-cut test preloads its shim that way).
//   DaemonTest           gtest fixture: a formatted, *unmounted* MountedFs and a
//                        Daemon for it; the daemon log is printed on failure.
//   RawFd                a file descriptor whose close(2) result is ignored
//                        (descriptors on a mount whose daemon was killed fail
//                        to close with ENOTCONN, which the fixture's Fd would
//                        record as a failure).
//   CatalogRw            a read-write sqlite3 connection to an unmounted
//                        backing directory's catalog, for deliberate damage.
//   BackingLocked()      whether a daemon holds the lock on BACKING.
//   ListDir / Exists     a directory's names (without . and ..); whether a
//                        path exists.
//   ProcInt / StatusKib  /proc/PID/FILE as one integer; a "Key: N kB" field
//                        of /proc/PID/status.
//
// Everything is header-only (inline) so that several test files can share it.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest::extra {

using Clock = std::chrono::steady_clock;

// ------------------------------------------------------------------ xattrs

// getxattr(2) into a string; nullopt on failure (errno set).
inline std::optional<std::string> GetXattr(const std::string& path, const std::string& name) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    ssize_t n = ::getxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (n < 0) return std::nullopt;
    std::string v(static_cast<size_t>(n) + 64, '\0');  // live figures may grow between the calls
    n = ::getxattr(path.c_str(), name.c_str(), v.data(), v.size());
    if (n < 0) {
      if (errno == ERANGE) continue;
      return std::nullopt;
    }
    v.resize(static_cast<size_t>(n));
    return v;
  }
  return std::nullopt;
}

// user.chainswap.destage.<key> of the mount root as a number; -1 when absent
// or not a number.
inline double DestageDouble(const std::string& mnt, const std::string& key) {
  auto v = GetXattr(mnt, "user.chainswap.destage." + key);
  if (!v || v->empty()) return -1;
  char* end = nullptr;
  double d = std::strtod(v->c_str(), &end);
  if (end == v->c_str()) return -1;
  return d;
}
inline int64_t DestageInt(const std::string& mnt, const std::string& key) {
  auto v = GetXattr(mnt, "user.chainswap.destage." + key);
  if (!v || v->empty()) return -1;
  char* end = nullptr;
  long long n = std::strtoll(v->c_str(), &end, 10);
  if (end == v->c_str()) return -1;
  return n;
}
// The journal is empty: every acknowledged op has been destaged.
inline bool DestageIdle(const std::string& mnt) {
  return DestageInt(mnt, "pending_records") == 0 && DestageInt(mnt, "journal_bytes") == 0;
}
// "pending_records=.. journal_bytes=.. ..." for failure messages.
inline std::string DestageSummary(const std::string& mnt) {
  std::string out;
  for (const char* k : {"w_bucket", "x_bucket", "delete_slots", "journal_bytes", "pending_records",
                        "staged_write_blocks", "writes_absorbed", "blocks_stored", "blocks_deduped", "blocks_freed",
                        "enospc", "store_usage"}) {
    auto v = GetXattr(mnt, std::string("user.chainswap.destage.") + k);
    out += std::string(k) + "=" + (v ? *v : "?") + " ";
  }
  return out;
}

// --------------------------------------------------------------- commands

// `chainswap ARGS...`.
inline CommandResult Cli(const std::vector<std::string>& args,
                         std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
  std::vector<std::string> argv = {CHAINSWAP_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, timeout);
}

// "exit N: <output>" for failure messages.
inline std::string Describe(const CommandResult& r) {
  return "exit status " + std::to_string(r.status) + (r.timed_out ? " (timed out)" : "") + ", output:\n" + r.output;
}

// Whether a process holds the flock on the backing directory (a daemon is
// running on it).
inline std::set<std::string> ListDir(const std::string& path) {
  std::set<std::string> names;
  DIR* d = ::opendir(path.c_str());
  EXPECT_NE(d, nullptr) << "opendir " << path << ": " << ErrnoName(errno);
  if (!d) return names;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.insert(n);
  }
  ::closedir(d);
  return names;
}

inline bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// /proc/PID/FILE holding one integer (oom_score_adj, ...); INT64_MIN when
// unreadable.
inline int64_t ProcInt(pid_t pid, const std::string& file) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
  int64_t v = INT64_MIN;
  in >> v;
  return v;
}

// "VmLck:   1234 kB" of /proc/PID/status -> 1234; -1 when absent.
inline int64_t StatusKib(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1));
  return -1;
}

inline bool BackingLocked(const std::string& backing) {
  int fd = ::open(backing.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  bool locked = ::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);  // releases our lock if we got it
  return locked;
}

inline dev_t DevOf(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? st.st_dev : 0;
}

// Whether `mnt` is a mountpoint (its st_dev differs from its parent's).
inline bool IsMounted(const std::string& mnt) {
  std::string parent = mnt.substr(0, mnt.find_last_of('/'));
  dev_t d = DevOf(mnt), p = DevOf(parent);
  // A dead FUSE mount fails stat with ENOTCONN: still mounted.
  if (d == 0) return true;
  return d != p;
}

// ------------------------------------------------------------------- files

// An fd whose close result does not matter (the daemon may be dead).
class RawFd {
 public:
  RawFd() = default;
  explicit RawFd(int fd) : fd_(fd) {}
  ~RawFd() { Reset(); }
  RawFd(RawFd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  RawFd& operator=(RawFd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  RawFd(const RawFd&) = delete;
  RawFd& operator=(const RawFd&) = delete;
  static RawFd Open(const std::string& path, int flags, mode_t mode = 0644) {
    return RawFd(::open(path.c_str(), flags | O_CLOEXEC, mode));
  }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  // close(2) now and return its result.
  int Close() {
    int fd = fd_;
    fd_ = -1;
    return fd >= 0 ? ::close(fd) : 0;
  }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// ----------------------------------------------------------------- catalog

// A read-write connection to BACKING/catalog.db of an unmounted backing dir.
class CatalogRw {
 public:
  explicit CatalogRw(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << "sqlite3_open_v2(" << path << "): " << (db_ ? sqlite3_errmsg(db_) : "?");
      sqlite3_close(db_);
      db_ = nullptr;
      return;
    }
    sqlite3_busy_timeout(db_, 10000);
  }
  ~CatalogRw() { sqlite3_close(db_); }
  CatalogRw(const CatalogRw&) = delete;
  CatalogRw& operator=(const CatalogRw&) = delete;

  // Runs `sql` (one or more statements); returns the rows changed by the last.
  ::testing::AssertionResult Exec(const std::string& sql, int* changes = nullptr) {
    if (!db_) return ::testing::AssertionFailure() << "no catalog connection";
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      auto r = ::testing::AssertionFailure() << sql << ": " << (err ? err : "?");
      sqlite3_free(err);
      return r;
    }
    if (changes) *changes = sqlite3_changes(db_);
    return ::testing::AssertionSuccess();
  }

 private:
  sqlite3* db_ = nullptr;
};

// ------------------------------------------------------------------ daemon

// "a,b,c".
inline std::string JoinOptions(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + v[i];
  return out;
}

inline int DecodeWaitStatus(int ws) {
  if (WIFEXITED(ws)) return WEXITSTATUS(ws);
  if (WIFSIGNALED(ws)) return 128 + WTERMSIG(ws);
  return -1;
}

// Waits for child `pid` until `deadline`; true with *status once it exited.
inline bool WaitChild(pid_t pid, Clock::time_point deadline, int* status) {
  for (;;) {
    int ws = 0;
    pid_t r = ::waitpid(pid, &ws, WNOHANG);
    if (r == pid) {
      *status = DecodeWaitStatus(ws);
      return true;
    }
    if (r < 0 && errno != EINTR) {
      *status = -1;
      return true;
    }
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// A chainswapfs daemon in the foreground on fs.backing() / fs.mnt(), logging
// (appending) to the same daemon.log as the fixture, so that MountedFs::
// DaemonLog() shows every run. The MountedFs must outlive it and must not be
// mounted through its own Mount().
class Daemon {
 public:
  explicit Daemon(const MountedFs& fs) : dir_(fs.dir()), backing_(fs.backing()), mnt_(fs.mnt()), log_(fs.dir() + "/daemon.log") {}
  ~Daemon() {
    if (running()) {
      auto r = Stop();
      if (!r) ADD_FAILURE() << r.message();
    }
  }
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // Extra "NAME=value" environment entries for every later Start() (they
  // override inherited ones of the same name); empty = inherit unchanged.
  void SetExtraEnv(std::vector<std::string> env) { extra_env_ = std::move(env); }
  const std::string& mnt() const { return mnt_; }

  // Starts `chainswapfs BACKING MNT -f [-o opts]` and waits until MNT is
  // mounted (journal replay happens before the mount, so the deadline is long).
  ::testing::AssertionResult Start(const std::vector<std::string>& opts,
                                   std::chrono::seconds timeout = std::chrono::seconds(120)) {
    if (running()) return ::testing::AssertionFailure() << "daemon already running";
    std::vector<std::string> argv = {CHAINSWAPFS_BIN, backing_, mnt_, "-f"};
    if (!opts.empty()) {
      argv.push_back("-o");
      argv.push_back(JoinOptions(opts));
    }
    int log_fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) return ::testing::AssertionFailure() << "open " << log_ << ": " << std::strerror(errno);
    std::string banner = "===";
    for (const auto& a : argv) banner += " " + a;
    banner += "\n";
    (void)!::write(log_fd, banner.data(), banner.size());
    // The environment: the inherited one with extra_env_ overriding.
    std::vector<std::string> env_store;
    for (char** e = environ; e && *e; ++e) {
      std::string entry(*e);
      const std::string name = entry.substr(0, entry.find('=') + 1);
      bool overridden = false;
      for (const auto& x : extra_env_) overridden |= x.compare(0, name.size(), name) == 0;
      if (!overridden) env_store.push_back(std::move(entry));
    }
    env_store.insert(env_store.end(), extra_env_.begin(), extra_env_.end());
    const dev_t parent = DevOf(dir_);
    pid_t pid = SpawnLogged(argv, log_fd, &env_store);
    if (pid < 0) return ::testing::AssertionFailure() << "fork: " << std::strerror(errno);
    pid_ = pid;
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      int status = 0;
      if (WaitChild(pid_, Clock::now(), &status)) {
        pid_ = -1;
        return ::testing::AssertionFailure() << "chainswapfs exited with " << status << " before mounting; log:\n"
                                             << Tail(Log());
      }
      dev_t d = DevOf(mnt_);
      if (d != 0 && d != parent) return ::testing::AssertionSuccess();
      if (Clock::now() >= deadline) {
        auto k = Kill9();
        return ::testing::AssertionFailure() << "chainswapfs did not mount within " << timeout.count() << " s ("
                                             << k.message() << "); log:\n" << Tail(Log());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

  // Clean unmount: fusermount3 -u (retried while busy), then the daemon must
  // destage its journal and exit 0.
  ::testing::AssertionResult Stop(std::chrono::seconds exit_timeout = std::chrono::seconds(180)) {
    if (!running()) return ::testing::AssertionSuccess();
    std::string why;
    bool unmounted = false;
    for (int attempt = 0; attempt < 50 && !unmounted; ++attempt) {
      if (!IsMounted(mnt_)) {
        unmounted = true;
        break;
      }
      CommandResult r = RunCommand({"fusermount3", "-u", mnt_}, std::chrono::seconds(30));
      if (r.status == 0) unmounted = true;
      else {
        why = r.output;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    if (!unmounted) RunCommand({"fusermount3", "-uz", mnt_}, std::chrono::seconds(30));
    int status = -1;
    bool exited = WaitChild(pid_, Clock::now() + exit_timeout, &status);
    std::string killed;
    if (!exited) {
      ::kill(pid_, SIGKILL);
      WaitChild(pid_, Clock::now() + std::chrono::seconds(10), &status);
      killed = "the daemon did not exit within " + std::to_string(exit_timeout.count()) +
               " s of the unmount (killed); ";
    }
    pid_ = -1;
    if (!unmounted || !killed.empty() || status != 0)
      return ::testing::AssertionFailure() << "clean unmount of " << mnt_ << ": "
                                           << (unmounted ? "" : "fusermount3 -u kept failing: " + why + "; ") << killed
                                           << "exit status " << status << "; log:\n" << Tail(Log());
    return ::testing::AssertionSuccess();
  }

  // kill -9 of the daemon (no clean-up of any kind), then `fusermount3 -uz`
  // of the dead mount, as an operator would after a crash.
  ::testing::AssertionResult Kill9() {
    if (!running()) return ::testing::AssertionFailure() << "no daemon to kill";
    ::kill(pid_, SIGKILL);
    int status = -1;
    bool exited = WaitChild(pid_, Clock::now() + std::chrono::seconds(30), &status);
    pid_ = -1;
    if (!exited) return ::testing::AssertionFailure() << "the daemon survived SIGKILL for 30 s";
    CommandResult r = RunCommand({"fusermount3", "-uz", mnt_}, std::chrono::seconds(30));
    if (r.status != 0 && IsMounted(mnt_))
      return ::testing::AssertionFailure() << "fusermount3 -uz " << mnt_ << ": " << r.output;
    if (!WaitUntil([&] { return !IsMounted(mnt_); }, std::chrono::seconds(30)))
      return ::testing::AssertionFailure() << mnt_ << " still mounted after fusermount3 -uz";
    if (!WaitUntil([&] { return !BackingLocked(backing_); }, std::chrono::seconds(30)))
      return ::testing::AssertionFailure() << backing_ << " still locked after the daemon died";
    return ::testing::AssertionSuccess();
  }

  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static std::string Tail(const std::string& s, size_t n = 8000) {
    return s.size() <= n ? s : "[...]\n" + s.substr(s.size() - n);
  }

 private:
  std::string dir_, backing_, mnt_, log_;
  std::vector<std::string> extra_env_;
  pid_t pid_ = -1;
};

// A formatted, unmounted backing directory and a Daemon for it. Tests start
// the daemon themselves (with the options they need, as often as they need).
class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs_ = std::make_unique<MountedFs>();
    ASSERT_TRUE(fs_->formatted());
    daemon_ = std::make_unique<Daemon>(*fs_);
  }
  void TearDown() override {
    if (daemon_ && daemon_->running()) {
      EXPECT_TRUE(daemon_->Stop());
    }
    if (HasFailure() && fs_)
      std::fprintf(stderr, "---- daemon log (%s) ----\n%s\n", fs_->dir().c_str(),
                   Daemon::Tail(fs_->DaemonLog(), 20000).c_str());
    daemon_.reset();
    fs_.reset();
  }
  MountedFs& fs() { return *fs_; }
  Daemon& daemon() { return *daemon_; }

 private:
  std::unique_ptr<MountedFs> fs_;
  std::unique_ptr<Daemon> daemon_;
};

// ------------------------------------------------------- random workloads

// The random workloads of the crash and power-cut tests stay below kSpan
// in each file; one write is at most kMaxWrite (one FUSE request, one op of
// the journal, which may take several records).
inline constexpr uint64_t kSpan = 4 * kMiB;
inline constexpr uint64_t kMaxWrite = 192 * kKiB;

// `n` random bytes, never zero — except one time in ten all zeros (a write of
// zeros is a punch), and one time in five with runs of 4-12 KiB-pages of
// zeros inside (guest memory: the journal stores such runs as delete records,
// so one write becomes several records that a crash must not split). Shared
// by the crash and power-cut tests.
inline std::vector<uint8_t> RandomBytes(std::mt19937_64& rng, size_t n) {
  std::vector<uint8_t> v(n);
  const unsigned kind = rng() % 10;
  if (kind == 0) return v;
  for (size_t i = 0; i < n; i += 8) {
    uint64_t x = rng() | 1;
    std::memcpy(v.data() + i, &x, std::min<size_t>(8, n - i));
  }
  if (kind <= 2 && n > 6 * kBlock) {
    for (int runs = 1 + static_cast<int>(rng() % 3); runs > 0; --runs) {
      const size_t len = std::min<size_t>(n, (4 + rng() % 9) * kBlock);
      const size_t at = rng() % (n - len + 1);
      std::memset(v.data() + at, 0, len);
    }
  }
  return v;
}

// Offset and length of a random write or punch below `span`: block-aligned
// or not, at most `max_len` bytes.
inline std::pair<uint64_t, uint64_t> RandomRange(std::mt19937_64& rng, uint64_t span, uint64_t max_len) {
  if (rng() % 2) {
    uint64_t blocks = 1 + rng() % (max_len / kBlock);
    uint64_t off = (rng() % (span / kBlock - blocks + 1)) * kBlock;
    return {off, blocks * kBlock};
  }
  uint64_t len = 1 + rng() % max_len;
  uint64_t off = rng() % (span - len + 1);
  return {off, len};
}

// A model holding exactly `bytes`.
inline FileModel ModelOf(const std::vector<uint8_t>& bytes) {
  FileModel m;
  m.Write(0, bytes);
  if (bytes.empty()) m.Truncate(0);
  return m;
}

// "size X, expected Y" / "first difference at byte N" / "equal".
inline std::string DescribeDiff(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want) {
  if (got.size() != want.size())
    return "size " + std::to_string(got.size()) + ", expected " + std::to_string(want.size());
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != want[i]) return "first difference at byte " + std::to_string(i);
  return "equal";
}

// ------------------------------------------------------------------- misc

// A seed for randomized tests: $CHAINSWAP_TEST_SEED if set, else random.
inline uint64_t TestSeed() {
  if (const char* s = std::getenv("CHAINSWAP_TEST_SEED"); s && *s) return std::strtoull(s, nullptr, 0);
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

}  // namespace chainswap::mounttest::extra
