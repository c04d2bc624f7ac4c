#include "tests/mount/mount_fixture.h"

#include <fcntl.h>
#include <ftw.h>
#include <linux/falloc.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>
#include <unordered_set>

#ifndef CHAINSWAPFS_BIN
#error "CHAINSWAPFS_BIN must give the absolute path of the chainswapfs daemon"
#endif
#ifndef CHAINSWAP_BIN
#error "CHAINSWAP_BIN must give the absolute path of the chainswap CLI"
#endif

namespace chainswap::mounttest {

namespace {

using Clock = std::chrono::steady_clock;

std::string ErrnoText(int e) { return std::string(std::strerror(e)) + " (errno " + std::to_string(e) + ")"; }

std::string Tail(const std::string& s, size_t n = 6000) {
  return s.size() <= n ? s : "[...]\n" + s.substr(s.size() - n);
}

// Status as reported by waitpid: exit code, or 128 + signal.
int DecodeStatus(int wstatus) {
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
  return -1;
}

// Waits for `pid` until `deadline`; returns true with *status set once it exited.
bool WaitPidUntil(pid_t pid, Clock::time_point deadline, int* status) {
  for (;;) {
    int ws = 0;
    pid_t r = ::waitpid(pid, &ws, WNOHANG);
    if (r == pid) {
      *status = DecodeStatus(ws);
      return true;
    }
    if (r < 0 && errno != EINTR) {
      *status = -1;
      return true;  // not our child any more: nothing to wait for
    }
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// argv as char* for exec, built before fork (nothing allocates in the child).
struct Argv {
  explicit Argv(const std::vector<std::string>& v) : storage(v) {
    for (auto& s : storage) ptrs.push_back(s.data());
    ptrs.push_back(nullptr);
  }
  std::vector<std::string> storage;
  std::vector<char*> ptrs;
};

std::string Join(const std::vector<std::string>& v, const char* sep = " ") {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

// st_dev of a path, or 0.
dev_t DevOf(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? st.st_dev : 0;
}

int RemoveEntry(const char* path, const struct stat*, int type, struct FTW*) {
  if (type == FTW_DP || type == FTW_D) ::rmdir(path);
  else ::unlink(path);
  return 0;
}

// A read-only connection to the catalog; failures are recorded.
class ReadOnlyDb {
 public:
  explicit ReadOnlyDb(const std::string& path) {
    int rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr);
    if (rc != SQLITE_OK) {
      ADD_FAILURE() << "sqlite3_open_v2(" << path << ", READONLY): " << (db_ ? sqlite3_errmsg(db_) : "?");
      sqlite3_close(db_);
      db_ = nullptr;
      return;
    }
    sqlite3_busy_timeout(db_, 10000);
  }
  ~ReadOnlyDb() { sqlite3_close(db_); }
  ReadOnlyDb(const ReadOnlyDb&) = delete;
  ReadOnlyDb& operator=(const ReadOnlyDb&) = delete;
  bool ok() const { return db_ != nullptr; }

  std::vector<Row> Query(const std::string& sql, const std::vector<std::string>& params = {}) {
    std::vector<Row> rows;
    if (!db_) return rows;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << "catalog query failed to prepare: " << sqlite3_errmsg(db_) << "\n  " << sql;
      return rows;
    }
    for (size_t i = 0; i < params.size(); ++i)
      sqlite3_bind_text(st, static_cast<int>(i + 1), params[i].c_str(), -1, SQLITE_TRANSIENT);
    for (;;) {
      int rc = sqlite3_step(st);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) {
        ADD_FAILURE() << "catalog query failed: " << sqlite3_errmsg(db_) << "\n  " << sql;
        break;
      }
      Row row;
      for (int c = 0; c < sqlite3_column_count(st); ++c) {
        if (sqlite3_column_type(st, c) == SQLITE_NULL) row.emplace_back();
        else row.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, c)));
      }
      rows.push_back(std::move(row));
    }
    sqlite3_finalize(st);
    return rows;
  }

  bool Exec(const char* sql) {
    if (!db_) return false;
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      ADD_FAILURE() << "catalog: " << sql << ": " << (err ? err : "?");
      sqlite3_free(err);
      return false;
    }
    return true;
  }

 private:
  sqlite3* db_ = nullptr;
};

int64_t FirstInt(const std::vector<Row>& rows) {
  if (rows.empty() || rows[0].empty() || !rows[0][0]) return -1;
  return std::strtoll(rows[0][0]->c_str(), nullptr, 10);
}

std::string FormatRows(const std::vector<Row>& rows) {
  std::string out;
  for (const Row& r : rows) {
    out += "    ";
    for (size_t i = 0; i < r.size(); ++i) out += (i ? "|" : "") + (r[i] ? *r[i] : std::string("NULL"));
    out += "\n";
  }
  return out;
}

}  // namespace

// ------------------------------------------------------------------ errno

std::string ErrnoName(int e) {
  const char* name = ::strerrorname_np(e);
  return std::string(name ? name : "errno " + std::to_string(e)) + " (" + std::strerror(e) + ")";
}

::testing::AssertionResult FailsWith(long rc, int expected) {
  const int e = errno;
  if (rc != -1) return ::testing::AssertionFailure() << "succeeded (returned " << rc << "), expected " << ErrnoName(expected);
  if (e != expected) return ::testing::AssertionFailure() << "failed with " << ErrnoName(e) << ", expected " << ErrnoName(expected);
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Succeeds(long rc) {
  const int e = errno;
  if (rc == -1) return ::testing::AssertionFailure() << "failed with " << ErrnoName(e);
  return ::testing::AssertionSuccess();
}

// ------------------------------------------------------------------- data

void FillBlock(uint64_t seed, uint64_t index, uint8_t* out) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull ^ (index + 0x632BE59BD9B4E019ull));
  for (size_t i = 0; i < kBlock; i += 8) {
    uint64_t v = rng();
    std::memcpy(out + i, &v, 8);
  }
  uint64_t tag = index | (uint64_t{1} << 63);  // never zero: no block is all zeros
  std::memcpy(out, &seed, 8);
  std::memcpy(out + 8, &tag, 8);
}

std::vector<uint8_t> MakeData(uint64_t seed, size_t bytes) {
  std::vector<uint8_t> v(bytes);
  for (size_t b = 0; b * kBlock < bytes; ++b) {
    if ((b + 1) * kBlock <= bytes) {
      FillBlock(seed, b, v.data() + b * kBlock);
    } else {
      uint8_t tmp[kBlock];
      FillBlock(seed, b, tmp);
      std::memcpy(v.data() + b * kBlock, tmp, bytes - b * kBlock);
    }
  }
  return v;
}

// ------------------------------------------------------------------ files

Fd::~Fd() {
  if (fd_ >= 0) {
    EXPECT_EQ(::close(fd_), 0) << "close: " << ErrnoText(errno);
  }
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

Fd Fd::Open(const std::string& path, int flags, mode_t mode) {
  return Fd(::open(path.c_str(), flags | O_CLOEXEC, mode));
}

int Fd::Close() {
  int fd = fd_;
  fd_ = -1;
  return fd >= 0 ? ::close(fd) : 0;
}

AlignedBuf::AlignedBuf(size_t size) : n(size) {
  void* mem = nullptr;
  if (::posix_memalign(&mem, kBlock, std::max<size_t>(size, kBlock)) != 0) throw std::bad_alloc();
  p = static_cast<uint8_t*>(mem);
  std::memset(p, 0, std::max<size_t>(size, kBlock));
}

AlignedBuf::~AlignedBuf() { std::free(p); }

::testing::AssertionResult PwriteAll(int fd, uint64_t off, std::span<const uint8_t> data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ::testing::AssertionFailure()
             << "pwrite(" << data.size() - done << " bytes at " << off + done << "): " << ErrnoText(errno);
    }
    if (n == 0) return ::testing::AssertionFailure() << "pwrite returned 0 at " << off + done;
    done += static_cast<size_t>(n);
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult WriteFile(const std::string& path, uint64_t off, std::span<const uint8_t> data,
                                     int extra_flags, size_t chunk) {
  Fd fd = Fd::Open(path, O_CREAT | O_WRONLY | extra_flags);
  if (!fd.ok()) return ::testing::AssertionFailure() << "open " << path << ": " << ErrnoText(errno);
  const bool direct = extra_flags & O_DIRECT;
  std::unique_ptr<AlignedBuf> buf;
  if (direct) buf = std::make_unique<AlignedBuf>(chunk);
  for (size_t done = 0; done < data.size(); done += chunk) {
    auto piece = data.subspan(done, std::min(chunk, data.size() - done));
    if (direct) {
      std::memcpy(buf->data(), piece.data(), piece.size());
      piece = std::span<const uint8_t>(buf->data(), piece.size());
    }
    auto r = PwriteAll(fd.get(), off + done, piece);
    if (!r) return r << " (" << path << ")";
  }
  if (fd.Close() != 0) return ::testing::AssertionFailure() << "close " << path << ": " << ErrnoText(errno);
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult ReadFile(const std::string& path, std::vector<uint8_t>* out, bool direct) {
  out->clear();
  Fd fd = Fd::Open(path, O_RDONLY | (direct ? O_DIRECT : 0));
  if (!fd.ok()) return ::testing::AssertionFailure() << "open " << path << ": " << ErrnoText(errno);
  constexpr size_t kChunk = 1 * kMiB;
  AlignedBuf buf(kChunk);
  uint64_t off = 0;
  for (;;) {
    ssize_t n = ::pread(fd.get(), buf.data(), kChunk, static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ::testing::AssertionFailure() << "pread " << path << " at " << off << ": " << ErrnoText(errno);
    }
    if (n == 0) break;
    out->insert(out->end(), buf.data(), buf.data() + n);
    off += static_cast<uint64_t>(n);
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult FileEquals(const std::string& path, std::span<const uint8_t> expected, bool direct) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return ::testing::AssertionFailure() << "stat " << path << ": " << ErrnoText(errno);
  if (static_cast<uint64_t>(st.st_size) != expected.size())
    return ::testing::AssertionFailure() << path << ": st_size " << st.st_size << ", expected " << expected.size();
  Fd fd = Fd::Open(path, O_RDONLY | (direct ? O_DIRECT : 0));
  if (!fd.ok()) return ::testing::AssertionFailure() << "open " << path << ": " << ErrnoText(errno);
  constexpr size_t kChunk = 1 * kMiB;
  AlignedBuf buf(kChunk);
  uint64_t off = 0;
  for (;;) {
    ssize_t n = ::pread(fd.get(), buf.data(), kChunk, static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ::testing::AssertionFailure() << "pread " << path << " at " << off << ": " << ErrnoText(errno);
    }
    if (n == 0) break;
    size_t got = static_cast<size_t>(n);
    if (off + got > expected.size())
      return ::testing::AssertionFailure() << path << ": read past the expected size " << expected.size()
                                           << " (got bytes up to " << off + got << ")";
    if (std::memcmp(buf.data(), expected.data() + off, got) != 0) {
      size_t i = 0;
      while (buf.data()[i] == expected[off + i]) ++i;
      uint64_t at = off + i;
      // Formatted here: a manipulator streamed into an AssertionResult
      // only reaches a temporary stream (std::hex printed nothing).
      char bytes[64];
      std::snprintf(bytes, sizeof bytes, "got 0x%02x, expected 0x%02x", buf.data()[i], expected[at]);
      return ::testing::AssertionFailure()
             << path << (direct ? " (O_DIRECT)" : "") << ": first difference at byte " << at << " (block "
             << at / kBlock << ", offset " << at % kBlock << " in it): " << bytes;
    }
    off += got;
  }
  if (off != expected.size())
    return ::testing::AssertionFailure() << path << ": read " << off << " bytes, expected " << expected.size();
  return ::testing::AssertionSuccess();
}

// -------------------------------------------------------------- FileModel

void FileModel::Write(uint64_t off, std::span<const uint8_t> data) {
  if (off + data.size() > bytes_.size()) bytes_.resize(off + data.size(), 0);
  std::copy(data.begin(), data.end(), bytes_.begin() + static_cast<ptrdiff_t>(off));
}

void FileModel::Zero(uint64_t off, uint64_t len, bool keep_size) {
  uint64_t end = off + len;
  if (!keep_size && end > bytes_.size()) bytes_.resize(end, 0);
  end = std::min<uint64_t>(end, bytes_.size());
  if (off < end) std::fill(bytes_.begin() + static_cast<ptrdiff_t>(off), bytes_.begin() + static_cast<ptrdiff_t>(end), 0);
}

void FileModel::Truncate(uint64_t size) { bytes_.resize(size, 0); }

uint64_t FileModel::NonZeroBlocks() const {
  uint64_t n = 0;
  for (uint64_t off = 0; off < bytes_.size(); off += kBlock) {
    uint64_t end = std::min<uint64_t>(off + kBlock, bytes_.size());
    if (std::any_of(bytes_.begin() + static_cast<ptrdiff_t>(off), bytes_.begin() + static_cast<ptrdiff_t>(end),
                    [](uint8_t b) { return b != 0; }))
      ++n;
  }
  return n;
}

void FileModel::CollectDistinctBlocks(std::vector<std::string>* out) const {
  for (uint64_t off = 0; off < bytes_.size(); off += kBlock) {
    std::string block(kBlock, '\0');
    uint64_t end = std::min<uint64_t>(off + kBlock, bytes_.size());
    std::copy(bytes_.begin() + static_cast<ptrdiff_t>(off), bytes_.begin() + static_cast<ptrdiff_t>(end), block.begin());
    if (block.find_first_not_of('\0') != std::string::npos) out->push_back(std::move(block));
  }
}

uint64_t DistinctNonZeroBlocks(const std::vector<const FileModel*>& files) {
  std::vector<std::string> blocks;
  for (const FileModel* f : files) f->CollectDistinctBlocks(&blocks);
  std::unordered_set<std::string> distinct(blocks.begin(), blocks.end());
  return distinct.size();
}

// -------------------------------------------------------------- processes

CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout, RunOptions options) {
  CommandResult res;
  int pfd[2];
  if (::pipe2(pfd, O_CLOEXEC) != 0) {
    res.output = "pipe2: " + ErrnoText(errno);
    return res;
  }
  Argv args(argv);
  pid_t pid = ::fork();
  if (pid < 0) {
    res.output = "fork: " + ErrnoText(errno);
    ::close(pfd[0]);
    ::close(pfd[1]);
    return res;
  }
  if (pid == 0) {
    if (options.own_process_group) ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(pfd[1], 1);
    ::dup2(pfd[1], 2);
    if (options.own_process_group) ::close_range(3, ~0U, 0);
    ::execvp(args.ptrs[0], args.ptrs.data());
    static const char msg[] = "exec failed\n";
    (void)!::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::close(pfd[1]);
  const auto deadline = Clock::now() + timeout;
  bool killed = false;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0 && !killed) {
      if (options.own_process_group) {
        ::kill(-pid, SIGKILL);  // the command and every process it started
        ::waitpid(pid, nullptr, 0);
      } else {
        // Politely first: a daemon that mounted unmounts itself on SIGTERM.
        ::kill(pid, SIGTERM);
        int st;
        if (!WaitPidUntil(pid, Clock::now() + std::chrono::seconds(10), &st)) {
          ::kill(pid, SIGKILL);
          ::waitpid(pid, nullptr, 0);
        }
      }
      res.output += "\n[" + argv[0] + " killed after " + std::to_string(timeout.count()) + " ms]\n";
      res.timed_out = killed = true;
      pid = -1;
    }
    struct pollfd p = {pfd[0], POLLIN, 0};
    int pr = ::poll(&p, 1, killed ? 100 : static_cast<int>(std::min<int64_t>(std::max<int64_t>(left, 1), 1000)));
    if (pr < 0 && errno == EINTR) continue;
    if (pr > 0) {
      ssize_t n = ::read(pfd[0], buf, sizeof buf);
      if (n > 0) {
        res.output.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      break;  // EOF: every holder of the pipe is gone
    }
    if (killed) break;
  }
  ::close(pfd[0]);
  if (pid > 0) {
    int ws = 0;
    while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    res.status = DecodeStatus(ws);
  } else {
    res.status = 128 + SIGKILL;
  }
  return res;
}

std::optional<std::string> Popen(const std::string& command, int* status) {
  FILE* f = ::popen(command.c_str(), "r");
  if (!f) return std::nullopt;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  int ws = ::pclose(f);
  if (status) *status = ws < 0 ? -1 : DecodeStatus(ws);
  return out;
}

bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto pause = std::chrono::milliseconds(2);
  for (;;) {
    if (pred()) return true;
    if (Clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

uint64_t AllocatedBytes(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

std::optional<uint64_t> DuKib(const std::string& path) {
  int status = 0;
  auto out = Popen("du -sk '" + path + "' 2>&1", &status);
  if (!out || status != 0) return std::nullopt;
  char* end = nullptr;
  unsigned long long v = std::strtoull(out->c_str(), &end, 10);
  if (end == out->c_str()) return std::nullopt;
  return v;
}

// -------------------------------------------------------------- MountedFs

MountedFs::MountedFs(std::vector<std::string> mount_options, std::vector<std::string> format_args)
    : mount_options_(std::move(mount_options)) {
  char tmpl[] = "/tmp/chainswap-mount-XXXXXX";
  if (!::mkdtemp(tmpl)) {
    ADD_FAILURE() << "mkdtemp: " << ErrnoText(errno);
    return;
  }
  dir_ = tmpl;
  backing_ = dir_ + "/backing";
  mnt_ = dir_ + "/mnt";
  log_ = dir_ + "/daemon.log";
  if (::mkdir(mnt_.c_str(), 0755) != 0) {
    ADD_FAILURE() << "mkdir " << mnt_ << ": " << ErrnoText(errno);
    return;
  }
  std::vector<std::string> format = {CHAINSWAP_BIN, "format", backing_};
  format.insert(format.end(), format_args.begin(), format_args.end());
  CommandResult r = RunCommand(format);
  if (r.status != 0) {
    ADD_FAILURE() << Join(format) << " exited " << r.status << ":\n" << r.output;
    return;
  }
  formatted_ = true;
}

MountedFs::~MountedFs() {
  if (mounted()) {
    auto r = Unmount();
    if (!r) ADD_FAILURE() << r.message();
  }
  if (dir_.empty()) return;
  if (DevOf(mnt_) != DevOf(dir_)) {
    RunCommand({"fusermount3", "-uz", mnt_}, std::chrono::seconds(10));
    if (DevOf(mnt_) != DevOf(dir_)) {
      ADD_FAILURE() << mnt_ << " is still mounted; leaving " << dir_ << " in place";
      return;
    }
  }
  // FTW_MOUNT: never descend into another filesystem, whatever happens.
  ::nftw(dir_.c_str(), RemoveEntry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

std::string MountedFs::Path(const std::string& chain, const std::string& file) const {
  std::string p = mnt_ + "/" + chain;
  if (!file.empty()) p += "/" + file;
  return p;
}

std::string MountedFs::DaemonLog() const {
  std::ifstream in(log_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

pid_t SpawnLogged(const std::vector<std::string>& argv, int log_fd, const std::vector<std::string>* env) {
  // Everything the child needs is built before fork: it only calls
  // async-signal-safe functions.
  Argv args(argv);
  std::optional<Argv> envs;
  if (env) envs.emplace(*env);
  pid_t pid = ::fork();
  if (pid == 0) {
    // If the test process dies, SIGTERM makes the daemon unmount and exit.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    if (envs) ::execve(args.ptrs[0], args.ptrs.data(), envs->ptrs.data());
    else ::execv(args.ptrs[0], args.ptrs.data());
    static const char msg[] = "exec failed\n";
    (void)!::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  const int saved = errno;
  ::close(log_fd);
  errno = saved;
  return pid;
}

::testing::AssertionResult MountedFs::Mount() {
  if (!formatted_) return ::testing::AssertionFailure() << "backing directory was not formatted";
  if (mounted()) return ::testing::AssertionFailure() << "already mounted";
  std::vector<std::string> argv = {CHAINSWAPFS_BIN, backing_, mnt_, "-f"};
  if (!mount_options_.empty()) {
    argv.push_back("-o");
    argv.push_back(Join(mount_options_, ","));
  }
  int log_fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return ::testing::AssertionFailure() << "open " << log_ << ": " << ErrnoText(errno);
  std::string banner = "=== " + Join(argv) + "\n";
  (void)!::write(log_fd, banner.data(), banner.size());
  const dev_t parent_dev = DevOf(dir_);
  pid_t pid = SpawnLogged(argv, log_fd);
  if (pid < 0) return ::testing::AssertionFailure() << "fork: " << ErrnoText(errno);
  pid_ = pid;
  const auto deadline = Clock::now() + mount_timeout_;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return ::testing::AssertionFailure() << "chainswapfs exited with " << DecodeStatus(status)
                                           << " before mounting; daemon log:\n" << Tail(DaemonLog());
    }
    dev_t d = DevOf(mnt_);
    if (d != 0 && d != parent_dev) return ::testing::AssertionSuccess();
    if (Clock::now() >= deadline) {
      auto u = Unmount();
      return ::testing::AssertionFailure() << "chainswapfs did not mount " << mnt_ << " within "
                                           << mount_timeout_.count() << " s ("
                                           << u.message() << "); daemon log:\n" << Tail(DaemonLog());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

::testing::AssertionResult MountedFs::Unmount() {
  if (!mounted()) return ::testing::AssertionSuccess();
  std::string unmount_log;
  bool unmounted = false;
  for (int attempt = 0; attempt < 50 && !unmounted; ++attempt) {
    if (DevOf(mnt_) == DevOf(dir_)) break;  // not mounted (daemon never got there)
    CommandResult r = RunCommand({"fusermount3", "-u", mnt_}, std::chrono::seconds(30));
    if (r.status == 0) unmounted = true;
    else {
      unmount_log = r.output;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  if (!unmounted && DevOf(mnt_) != DevOf(dir_)) {
    RunCommand({"fusermount3", "-uz", mnt_}, std::chrono::seconds(30));
    unmount_log = "fusermount3 -u kept failing (" + unmount_log + "); used -uz";
  }
  // The daemon may finish background work (destage) before it exits.
  int status = -1;
  bool exited = WaitPidUntil(pid_, Clock::now() + std::chrono::seconds(120), &status);
  std::string killed;
  if (!exited) {
    ::kill(pid_, SIGTERM);
    exited = WaitPidUntil(pid_, Clock::now() + std::chrono::seconds(10), &status);
    killed = "did not exit within 120 s of the unmount; sent SIGTERM";
    if (!exited) {
      ::kill(pid_, SIGKILL);
      WaitPidUntil(pid_, Clock::now() + std::chrono::seconds(10), &status);
      killed += ", then SIGKILL";
    }
  }
  pid_ = -1;
  if (!killed.empty() || status != 0 || !unmounted) {
    return ::testing::AssertionFailure()
           << "unmount of " << mnt_ << ": " << (unmounted ? "" : unmount_log + "; ") << killed
           << " daemon exit status " << status << "; daemon log:\n" << Tail(DaemonLog());
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult MountedFs::Remount() {
  auto u = Unmount();
  if (!u) return u;
  return Mount();
}

::testing::AssertionResult MountedFs::MakeChain(const std::string& name) {
  if (::mkdir(Path(name).c_str(), 0755) != 0)
    return ::testing::AssertionFailure() << "mkdir " << Path(name) << ": " << ErrnoText(errno);
  return ::testing::AssertionSuccess();
}

std::vector<Row> MountedFs::Query(const std::string& sql, const std::vector<std::string>& params) const {
  ReadOnlyDb db(catalog_path());
  return db.Query(sql, params);
}

int64_t MountedFs::QueryInt(const std::string& sql, const std::vector<std::string>& params) const {
  return FirstInt(Query(sql, params));
}

int64_t MountedFs::LatRows(const std::string& chain, const std::string& file) const {
  return QueryInt(
      "SELECT (SELECT count(*) FROM lat l WHERE l.file_id = f.file_id) FROM swap_file f "
      "JOIN chain c ON c.dedup_id = f.dedup_id WHERE c.name = ?1 AND f.name = ?2",
      {chain, file});
}

int64_t MountedFs::PatRows(const std::string& chain) const {
  return QueryInt("SELECT count(*) FROM pat p JOIN chain c ON c.dedup_id = p.dedup_id WHERE c.name = ?1", {chain});
}

int64_t MountedFs::TotalPatRows() const { return QueryInt("SELECT count(*) FROM pat"); }
int64_t MountedFs::TotalLatRows() const { return QueryInt("SELECT count(*) FROM lat"); }

int64_t MountedFs::FileRows(const std::string& chain) const {
  return QueryInt("SELECT count(*) FROM swap_file f JOIN chain c ON c.dedup_id = f.dedup_id WHERE c.name = ?1",
                  {chain});
}

int64_t MountedFs::DedupIdOf(const std::string& chain) const {
  return QueryInt("SELECT dedup_id FROM chain WHERE name = ?1", {chain});
}

::testing::AssertionResult MountedFs::CatalogInvariantsHold() const {
  ReadOnlyDb db(catalog_path());
  if (!db.ok()) return ::testing::AssertionFailure() << "cannot open the catalog";
  // One read transaction: every check sees the same snapshot.
  if (!db.Exec("BEGIN")) return ::testing::AssertionFailure() << "BEGIN failed";
  struct Check {
    const char* what;
    const char* sql;
  } checks[] = {
      {"pat.refcount differs from the number of LAT rows pointing at the block (pblock|refcount|lat_refs)",
       "SELECT p.pblock, p.refcount, coalesce(r.n, 0) FROM pat p "
       "LEFT JOIN (SELECT pblock, count(*) AS n FROM lat GROUP BY pblock) r ON r.pblock = p.pblock "
       "WHERE p.refcount != coalesce(r.n, 0) LIMIT 10"},
      {"LAT rows pointing at a pblock absent from pat (file_id|lba|pblock)",
       "SELECT l.file_id, l.lba, l.pblock FROM lat l LEFT JOIN pat p ON p.pblock = l.pblock "
       "WHERE p.pblock IS NULL LIMIT 10"},
      {"LAT rows of a file absent from swap_file (file_id|rows)",
       "SELECT l.file_id, count(*) FROM lat l LEFT JOIN swap_file f ON f.file_id = l.file_id "
       "WHERE f.file_id IS NULL GROUP BY l.file_id LIMIT 10"},
      {"LAT rows pointing at another chain's block (file_id|lba|pblock|file chain|block chain)",
       "SELECT l.file_id, l.lba, l.pblock, f.dedup_id, p.dedup_id FROM lat l "
       "JOIN swap_file f ON f.file_id = l.file_id JOIN pat p ON p.pblock = l.pblock "
       "WHERE p.dedup_id != f.dedup_id LIMIT 10"},
      {"pat rows missing from the chain hash index, hash_index with hash_log applied (pblock|hash_key)",
       "WITH last AS (SELECT hash_key, pblock, op FROM (SELECT hash_key, pblock, op, row_number() OVER "
       "(PARTITION BY hash_key, pblock ORDER BY seq DESC) AS rn FROM hash_log) WHERE rn = 1), "
       "eff AS (SELECT hash_key, pblock FROM hash_index i WHERE NOT EXISTS (SELECT 1 FROM last WHERE "
       "last.hash_key = i.hash_key AND last.pblock = i.pblock AND last.op = 0) "
       "UNION SELECT hash_key, pblock FROM last WHERE op = 1) "
       "SELECT p.pblock, p.hash_key FROM pat p WHERE p.hash_key IS NOT NULL AND NOT EXISTS "
       "(SELECT 1 FROM eff WHERE eff.hash_key = p.hash_key AND eff.pblock = p.pblock) LIMIT 10"},
      {"chain hash index entries naming no block under that key (hash_key|pblock)",
       "WITH last AS (SELECT hash_key, pblock, op FROM (SELECT hash_key, pblock, op, row_number() OVER "
       "(PARTITION BY hash_key, pblock ORDER BY seq DESC) AS rn FROM hash_log) WHERE rn = 1), "
       "eff AS (SELECT hash_key, pblock FROM hash_index i WHERE NOT EXISTS (SELECT 1 FROM last WHERE "
       "last.hash_key = i.hash_key AND last.pblock = i.pblock AND last.op = 0) "
       "UNION SELECT hash_key, pblock FROM last WHERE op = 1) "
       "SELECT e.hash_key, e.pblock FROM eff e WHERE NOT EXISTS "
       "(SELECT 1 FROM pat p WHERE p.pblock = e.pblock AND p.hash_key = e.hash_key) LIMIT 10"},
      {"swap_file.mapped_blocks differs from its LAT rows (file_id|mapped_blocks|lat_rows)",
       "SELECT f.file_id, f.mapped_blocks, coalesce(r.n, 0) FROM swap_file f "
       "LEFT JOIN (SELECT file_id, count(*) AS n FROM lat GROUP BY file_id) r ON r.file_id = f.file_id "
       "WHERE f.mapped_blocks != coalesce(r.n, 0) LIMIT 10"},
  };
  std::string problems;
  for (const Check& c : checks) {
    auto rows = db.Query(c.sql);
    if (!rows.empty()) problems += std::string("  ") + c.what + ":\n" + FormatRows(rows);
  }
  db.Exec("COMMIT");
  if (!problems.empty()) return ::testing::AssertionFailure() << "catalog invariants violated:\n" << problems;
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult MountedFs::Settle(const std::string& chain) {
  const std::string name = ".settle-" + std::to_string(++settle_seq_);
  const std::string path = Path(chain, name);
  uint8_t block[kBlock];
  FillBlock(0x5E771E0000000000ull + static_cast<uint64_t>(settle_seq_), 0, block);
  Fd fd = Fd::Open(path, O_CREAT | O_EXCL | O_RDWR);
  if (!fd.ok()) return ::testing::AssertionFailure() << "settle: create " << path << ": " << ErrnoText(errno);
  auto w = PwriteAll(fd.get(), 0, {block, kBlock});
  if (!w) return w << " (settle)";
  if (::fsync(fd.get()) != 0) return ::testing::AssertionFailure() << "settle: fsync: " << ErrnoText(errno);
  if (!WaitUntil([&] { return LatRows(chain, name) == 1; }))
    return ::testing::AssertionFailure() << "settle: the marker write never reached the catalog (LAT rows "
                                         << LatRows(chain, name) << ")";
  if (::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, kBlock) != 0)
    return ::testing::AssertionFailure() << "settle: punch: " << ErrnoText(errno);
  if (::fsync(fd.get()) != 0) return ::testing::AssertionFailure() << "settle: fsync: " << ErrnoText(errno);
  if (!WaitUntil([&] { return LatRows(chain, name) == 0; }))
    return ::testing::AssertionFailure() << "settle: the marker punch never reached the catalog (LAT rows "
                                         << LatRows(chain, name) << ")";
  const std::string file_id = std::to_string(QueryInt(
      "SELECT f.file_id FROM swap_file f JOIN chain c ON c.dedup_id = f.dedup_id WHERE c.name = ?1 AND f.name = ?2",
      {chain, name}));
  if (fd.Close() != 0) return ::testing::AssertionFailure() << "settle: close: " << ErrnoText(errno);
  if (::unlink(path.c_str()) != 0) return ::testing::AssertionFailure() << "settle: unlink: " << ErrnoText(errno);
  if (!WaitUntil([&] { return QueryInt("SELECT count(*) FROM swap_file WHERE file_id = ?1", {file_id}) == 0; }))
    return ::testing::AssertionFailure() << "settle: the unlinked marker file " << file_id
                                         << " never left the catalog";
  return ::testing::AssertionSuccess();
}

// -------------------------------------------------------------- MountTest

void MountTest::SetUp() {
  fs_ = std::make_unique<MountedFs>(MountOptions());
  ASSERT_TRUE(fs_->formatted());
  ASSERT_TRUE(fs_->Mount());
}

void MountTest::TearDown() {
  if (!fs_) return;
  EXPECT_TRUE(fs_->Unmount());
  if (HasFailure()) std::fprintf(stderr, "---- daemon log (%s) ----\n%s\n", fs_->dir().c_str(), Tail(fs_->DaemonLog(), 20000).c_str());
  fs_.reset();
}

}  // namespace chainswap::mounttest
