// Memory pressure with the daemon inside a memory cgroup (docs/OPERATIONS.md
// "Memory pressure: why the daemon is protected"; docs/RELIABILITY.md).
//
// The first case makes a child memory cgroup, starts the daemon inside it
// (mounted with journal_limit=64M, see below), runs fio --verify through the
// mount from outside the cgroup, and once fio is writing, a "hog" process
// joins the cgroup and touches anonymous memory until the cgroup's limit
// (the daemon's usage at start + 768 MiB) is exceeded: quickly up to 64 MiB
// below the limit, then 1 MiB every 20 ms, so that the kernel reclaims in
// the cgroup for a few seconds (the page cache of the daemon's backing files,
// and any page of the daemon it may take) before the OOM killer acts.
// Expected:
//
//   - the hog dies of SIGKILL, the cgroup counts an OOM kill and its peak
//     usage reached the limit;
//   - the daemon is alive and still serves the mount (a new file written and
//     read back through it afterwards);
//   - fio exits 0, having written and verified all its bytes (crc32c), and a
//     second fio pass (--verify_only) verifies them all again;
//   - the daemon took at most 5 major page faults from just before fio
//     started until after the second pass: its memory is mlock()ed, so
//     reclaim cannot take its pages and no request waits for a page-in of
//     the daemon itself. Measured on the machine this was written on: 0 in
//     every run with the default mlock; 12, 44, 122, 47 and 74 in five runs
//     of this case mounted with no_mlock (the VmLck check then fails too),
//     so the bound tells the two apart, where 50 would not;
//   - the daemon's score is as expected (below), and VmLck > 0;
//   - the daemon unmounts cleanly (exit 0) and `chainswap fsck` is clean.
//
// A cgroup limit stands in for a host short of memory, with two differences
// that decide what the fault count can show. (1) A cgroup's limit reclaims
// only pages charged to the cgroup, and a file page is charged to whoever
// first read it: the daemon's binary is therefore dropped from the page
// cache before the mount, so that its code is read in (and charged) inside
// the cgroup; its shared libraries (libc, libstdc++, SQLite, libfuse) stay
// charged wherever other processes read them first, out of this pressure's
// reach. (2) Without swap (none on that machine) anonymous memory — the
// daemon's heap and stacks — cannot be reclaimed at all, locked or not. So
// what the pressure can take from an unlocked daemon here is its code, and
// that is what the bound checks; with swap, its heap would be at stake too.
//
// Who the OOM killer takes. Lowering an oom_score_adj needs
// CAP_SYS_RESOURCE; raising one does not.
//   - Without the capability (the machine this was written on: root without
//     it), the daemon cannot lower its score: it logs a warning naming
//     CAP_SYS_RESOURCE and keeps the inherited score (asserted). Neither
//     the daemon nor the hog can then be given an advantage, and the OOM
//     killer's choice of the hog rests only on sizes: the hog fills the
//     768 MiB of headroom (VmRSS 732-758 MiB at its largest sample in seven
//     runs), while the daemon had 34-59 MiB (about 25-45 MiB of it charged
//     to the cgroup), its growth bounded by journal_limit (64 MiB) and
//     SQLite's page cache (64 MiB). What the case proves there: the daemon keeps serving correct
//     data through reclaim and an OOM kill next to it, and mlock keeps its
//     major faults at zero — not that its score protects it.
//   - The second case shows that the score decides in this setting, and that
//     the first case can fail: the same cgroup and hog with the daemon at
//     oom_score_adj=1000 (raising works without the capability). Its badness
//     is then its RSS plus the whole limit, above the hog's, so the OOM
//     killer takes the daemon and the mount answers ENOTCONN (or
//     ECONNABORTED), as every guest's swap would.
//   - With CAP_SYS_RESOURCE (a normal root; the systemd unit's
//     OOMScoreAdjust=-1000 works either way) the first case asserts that
//     the daemon's score is -1000, and the hog lowers its own score to -999:
//     its badness is then its RSS minus 99.9 % of the limit, i.e. about the
//     RSS it inherited from this process at fork (printed), normally well
//     below the badness the daemon would have unprotected (its own RSS,
//     also printed), so without its -1000 the OOM killer would take the
//     daemon: its survival then rests on the protection, not on sizes.
//     (Not exercised on the machine this was written on.)
//
// The cgroup: cgroup v1 with the memory controller (memory.limit_in_bytes,
// memory.max_usage_in_bytes, memory.oom_control's oom_kill) or cgroup v2
// with memory in cgroup.controllers (memory.max, memory.peak, memory.events),
// whichever has the memory controller; made under this process's own memory
// cgroup (or the hierarchy's root if the controller is not available there)
// and removed at the end, also on failure; no swap inside it. Only v1 was
// available to run it. Without a memory cgroup the test fails and says so
// (the suite never skips). The daemon is started inside the cgroup (this
// process joins it only around the fork of the daemon and goes back) rather
// than moved into it after the mount: moving a process never moves the
// memory already charged to it (cgroup v2; v1 only with the deprecated
// memory.move_charge_at_immigrate), so its start-up memory would stay
// outside the limit. fio runs outside the cgroup (with O_DIRECT it leaves no
// page cache of the swap file anyway).
//
// Why journal_limit=64M: the daemon keeps the payloads of journal records
// not yet retired on its heap (up to journal_limit, 256 MiB by default), and
// that heap is locked. Bounding it keeps the daemon's footprint in the cgroup
// small and known next to the hog's, whatever destage's pace on a loaded
// machine.
//
// Sanitizer builds (CHAINSWAP_SANITIZE=address or thread) never lock memory
// (fs/memory_guard.cc) and use several times the memory. Relaxed there, and
// only there: the limit's headroom is 2 GiB or 8 × the daemon's measured
// usage at start, whichever is more (Headroom()), so that the hog still
// dwarfs the daemon; and the major-fault bound is not asserted, only
// printed, since without mlock reclaim may take the daemon's code, which is
// exactly what the bound is about (VmLck is asserted to be 0 instead, as in
// MemoryTest). Everything else is asserted in every build.
#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/mount/extra_util.h"
#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

using Clock = std::chrono::steady_clock;
using extra::Cli;
using extra::Describe;

constexpr uint64_t kFioMib = 128;
constexpr int64_t kMajorFaultBound = 5;
constexpr const char* kChain = "c";

// ------------------------------------------------------------ small helpers

bool Sanitized() {
  const std::string mode = CHAINSWAP_SANITIZE_MODE;
  return mode == "address" || mode == "thread";
}

bool HasCapSysResource() {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &hdr, data) != 0) return false;
  return (data[CAP_SYS_RESOURCE / 32].effective >> (CAP_SYS_RESOURCE % 32)) & 1;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes `text` to an existing file (cgroup and /proc control files).
::testing::AssertionResult WriteText(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ::testing::AssertionFailure() << "open " << path << ": " << ErrnoName(errno);
  ssize_t n = ::write(fd, text.data(), text.size());
  const int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size()))
    return ::testing::AssertionFailure() << "write \"" << text << "\" to " << path << ": " << ErrnoName(err);
  return ::testing::AssertionSuccess();
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep)) out.push_back(item);
  return out;
}

bool HasToken(const std::string& list, const std::string& token, char sep) {
  for (const auto& t : Split(list, sep))
    if (t == token) return true;
  return false;
}

// "key value" lines (memory.stat, memory.events, memory.oom_control): the
// value of `key`, or -1.
int64_t KeyedValue(const std::string& text, const std::string& key) {
  std::stringstream ss(text);
  std::string k;
  int64_t v;
  while (ss >> k >> v)
    if (k == key) return v;
  return -1;
}

int64_t FileInt(const std::string& path) {
  std::ifstream in(path);
  int64_t v = -1;
  in >> v;
  return in ? v : -1;
}

// Fields of /proc/PID/stat after the command name: [0] is field 3 (state),
// so field N is at [N - 3].
std::vector<std::string> ProcStat(pid_t pid) {
  const std::string s = ReadText("/proc/" + std::to_string(pid) + "/stat");
  const size_t close = s.rfind(')');
  if (close == std::string::npos) return {};
  std::stringstream ss(s.substr(close + 1));
  std::vector<std::string> f;
  std::string x;
  while (ss >> x) f.push_back(x);
  return f;
}
char ProcState(pid_t pid) {
  auto f = ProcStat(pid);
  return f.empty() ? '?' : f[0][0];
}
int64_t MajorFaults(pid_t pid) {  // field 12, majflt (all threads)
  auto f = ProcStat(pid);
  return f.size() > 9 ? std::stoll(f[9]) : -1;
}
int ExitCodeOfZombie(pid_t pid) {  // field 52, exit_code, as waitpid reports it
  auto f = ProcStat(pid);
  return f.size() > 49 ? std::stoi(f[49]) : -1;
}

using extra::ProcInt;
using extra::StatusKib;

// The first executable `name` in $PATH, or "".
std::string FindInPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  for (const auto& dir : Split(path ? path : "/usr/local/bin:/usr/bin:/bin", ':')) {
    if (dir.empty()) continue;
    std::string p = dir + "/" + name;
    struct stat st;
    if (::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

std::string Mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / static_cast<double>(kMiB));
  return buf;
}

// ------------------------------------------------------------ the cgroup

// A child memory cgroup, removed on destruction (any process still in it is
// first moved back to the cgroup this test process started in).
class MemoryCgroup {
 public:
  MemoryCgroup() { Create(); }
  ~MemoryCgroup() { Remove(); }
  MemoryCgroup(const MemoryCgroup&) = delete;
  MemoryCgroup& operator=(const MemoryCgroup&) = delete;

  bool ok() const { return !dir_.empty(); }
  const std::string& why() const { return why_; }
  const std::string& dir() const { return dir_; }
  bool v2() const { return v2_; }
  std::string Describe() const { return std::string(v2_ ? "cgroup v2 " : "cgroup v1 ") + dir_; }
  std::string procs_file() const { return dir_ + "/cgroup.procs"; }
  std::string usage_file() const { return dir_ + (v2_ ? "/memory.current" : "/memory.usage_in_bytes"); }

  ::testing::AssertionResult Enter(pid_t pid) const { return WriteText(procs_file(), std::to_string(pid)); }
  ::testing::AssertionResult Leave(pid_t pid) const { return WriteText(origin_ + "/cgroup.procs", std::to_string(pid)); }

  // The memory limit, and no swap beyond it (so that the hog cannot escape
  // the OOM killer into swap on a machine that has some).
  ::testing::AssertionResult SetLimit(uint64_t bytes) const {
    const std::string v = std::to_string(bytes);
    if (v2_) {
      auto r = WriteText(dir_ + "/memory.max", v);
      if (!r) return r;
      if (::access((dir_ + "/memory.swap.max").c_str(), F_OK) == 0) return WriteText(dir_ + "/memory.swap.max", "0");
      return r;
    }
    auto r = WriteText(dir_ + "/memory.limit_in_bytes", v);
    if (!r) return r;
    if (::access((dir_ + "/memory.memsw.limit_in_bytes").c_str(), F_OK) == 0)
      return WriteText(dir_ + "/memory.memsw.limit_in_bytes", v);
    return r;
  }
  int64_t Limit() const { return FileInt(dir_ + (v2_ ? "/memory.max" : "/memory.limit_in_bytes")); }
  int64_t Usage() const { return FileInt(usage_file()); }
  // Highest usage so far; -1 when the kernel does not say (v2 before 5.19).
  int64_t Peak() const { return FileInt(dir_ + (v2_ ? "/memory.peak" : "/memory.max_usage_in_bytes")); }
  // Times a charge hit the limit (v1 memory.failcnt; v2 memory.events max).
  int64_t LimitHits() const {
    return v2_ ? KeyedValue(ReadText(dir_ + "/memory.events"), "max") : FileInt(dir_ + "/memory.failcnt");
  }
  // memory.stat's "mapped_file" (v1) / "file_mapped" (v2): file pages
  // mapped by the cgroup's processes and charged to it (the daemon's code).
  int64_t MappedFile() const { return KeyedValue(ReadText(dir_ + "/memory.stat"), v2_ ? "file_mapped" : "mapped_file"); }
  int64_t OomKills() const {
    return KeyedValue(ReadText(dir_ + (v2_ ? "/memory.events" : "/memory.oom_control")), "oom_kill");
  }
  // A few memory.stat figures, for the log.
  std::string StatSummary() const {
    const std::string s = ReadText(dir_ + "/memory.stat");
    std::string out;
    const std::vector<const char*> keys = v2_ ? std::vector<const char*>{"anon", "file", "file_mapped", "unevictable",
                                                                         "file_dirty", "file_writeback", "pgmajfault"}
                                              : std::vector<const char*>{"rss", "cache", "mapped_file", "unevictable",
                                                                         "dirty", "writeback", "pgmajfault"};
    for (const char* k : keys) {
      const int64_t v = KeyedValue(s, k);
      out += std::string(out.empty() ? "" : ", ") + k + " " +
             (std::string(k) == "pgmajfault" ? std::to_string(v) : Mib(v));
    }
    return out;
  }

 private:
  void Create() {
    // Where the memory controller is: /proc/self/mountinfo, fields
    // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPEROPTS".
    std::string v1_mount, v1_root = "/", v2_mount, v2_root = "/";
    std::ifstream mi("/proc/self/mountinfo");
    for (std::string line; std::getline(mi, line);) {
      const size_t dash = line.find(" - ");
      if (dash == std::string::npos) continue;
      std::stringstream l(line.substr(0, dash)), r(line.substr(dash + 3));
      std::string id, parent, dev, root, mnt, fstype, source, super;
      l >> id >> parent >> dev >> root >> mnt;
      r >> fstype >> source >> super;
      if (fstype == "cgroup" && HasToken(super, "memory", ',') && v1_mount.empty()) {
        v1_mount = mnt;
        v1_root = root;
      } else if (fstype == "cgroup2" && v2_mount.empty()) {
        v2_mount = mnt;
        v2_root = root;
      }
    }
    // This process's cgroups: "ID:CONTROLLERS:PATH" (v2: "0::PATH").
    std::string v1_path, v2_path;
    std::ifstream pc("/proc/self/cgroup");
    for (std::string line; std::getline(pc, line);) {
      const size_t a = line.find(':'), b = line.find(':', a + 1);
      if (a == std::string::npos || b == std::string::npos) continue;
      const std::string ctl = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
      if (ctl.empty() && line.compare(0, a, "0") == 0) v2_path = path;
      else if (HasToken(ctl, "memory", ',')) v1_path = path;
    }
    auto under = [](const std::string& mnt, const std::string& root, std::string path) {
      if (root != "/" && path.compare(0, root.size(), root) == 0) path = path.substr(root.size());
      if (path.empty() || path == "/") return mnt;
      return mnt + path;
    };
    const std::string name = "chainswap-pressure-" + std::to_string(::getpid());
    std::string tried;
    if (!v1_mount.empty() && !v1_path.empty()) {
      v2_ = false;
      origin_ = under(v1_mount, v1_root, v1_path);
      for (const std::string& parent : {origin_, v1_mount})
        if (TryMake(parent + "/" + name, "memory.limit_in_bytes", &tried)) return;
    }
    if (!v2_mount.empty() && HasToken(ReadText(v2_mount + "/cgroup.controllers"), "memory", ' ')) {
      v2_ = true;
      origin_ = under(v2_mount, v2_root, v2_path);
      // A v2 cgroup gets the memory controller only if its parent enables it
      // in cgroup.subtree_control, which a cgroup holding processes (ours)
      // usually cannot: the hierarchy's root is the fallback.
      for (const std::string& parent : {origin_, v2_mount})
        if (TryMake(parent + "/" + name, "memory.max", &tried)) return;
    }
    why_ = "no memory cgroup to run in: this test needs the kernel's memory cgroup controller (CONFIG_MEMCG), "
           "mounted as cgroup v1 (a 'cgroup' mount with the memory option) or cgroup v2 with 'memory' in "
           "cgroup.controllers, and a cgroup it may create. Found: cgroup v1 memory hierarchy " +
           (v1_mount.empty() ? std::string("none") : v1_mount + " (this process in " + v1_path + ")") +
           "; cgroup v2 " +
           (v2_mount.empty() ? std::string("none")
                             : v2_mount + " with controllers '" + ReadText(v2_mount + "/cgroup.controllers") + "'") +
           (tried.empty() ? "" : "; tried: " + tried);
    for (auto& c : why_)
      if (c == '\n') c = ' ';
  }

  bool TryMake(const std::string& dir, const char* probe, std::string* tried) {
    if (::mkdir(dir.c_str(), 0755) != 0) {
      *tried += "mkdir " + dir + ": " + ErrnoName(errno) + "; ";
      return false;
    }
    if (::access((dir + "/" + probe).c_str(), F_OK) != 0) {
      *tried += dir + " has no " + probe + " (memory controller not enabled there); ";
      ::rmdir(dir.c_str());
      return false;
    }
    dir_ = dir;
    return true;
  }

  void Remove() {
    if (dir_.empty()) return;
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    std::string left;
    for (;;) {
      left.clear();
      for (const auto& p : Split(ReadText(procs_file()), '\n')) {
        if (p.empty()) continue;
        left += p + " ";
        (void)WriteText(origin_ + "/cgroup.procs", p);  // ESRCH for one that just exited
      }
      if (::rmdir(dir_.c_str()) == 0) return;
      if (Clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "could not remove the cgroup " << dir_ << ": " << ErrnoName(errno)
                  << (left.empty() ? "" : "; processes still in it: " + left);
  }

  std::string dir_, origin_, why_;
  bool v2_ = false;
};

// This process inside `cg` for the scope's lifetime: a child forked meanwhile
// (the daemon) starts there, with all its memory charged to it.
class InsideCgroup {
 public:
  explicit InsideCgroup(const MemoryCgroup& cg) : cg_(cg) { entered_ = cg_.Enter(::getpid()); }
  ~InsideCgroup() {
    if (!entered_) return;
    auto r = cg_.Leave(::getpid());
    if (!r) ADD_FAILURE() << "leaving " << cg_.dir() << ": " << r.message();
  }
  const ::testing::AssertionResult& entered() const { return entered_; }

 private:
  const MemoryCgroup& cg_;
  ::testing::AssertionResult entered_ = ::testing::AssertionFailure();
};

// ------------------------------------------------------------ the hog

// A forked child that joins the cgroup and touches anonymous memory, 1 MiB at
// a time: as fast as it can until the cgroup's usage is within 64 MiB of
// `limit`, then 1 MiB every 20 ms, so that the cgroup stays at its limit
// (and the kernel reclaims) for a while before the OOM killer acts. It stops
// by itself (exit 0) after `max_bytes` or 60 s: if it ever does, the limit
// was not enforced. Killed (SIGKILL) on destruction if still running, and by
// the kernel if this process dies (PR_SET_PDEATHSIG).
class Hog {
 public:
  // Progress shared with the parent (a MAP_SHARED page).
  struct Shared {
    std::atomic<int> stage;        // 1 = in the cgroup, 2 = touching memory
    std::atomic<int> err;          // errno of a failed step (exit status says which)
    std::atomic<uint64_t> mib;     // MiB touched so far
    std::atomic<int64_t> fast_ms;  // when the slow phase began (ms after start), -1 before
  };

  // `oom_score_adj` INT_MIN: keep the inherited score.
  Hog(const MemoryCgroup& cg, uint64_t limit, uint64_t max_bytes, int oom_score_adj = INT_MIN) {
    void* p = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      ADD_FAILURE() << "mmap: " << ErrnoName(errno);
      return;
    }
    shared_ = new (p) Shared{};
    shared_->fast_ms = -1;
    // Everything the child needs, prepared before fork: it only makes
    // async-signal-safe calls.
    char procs[512], usage[512], pid_buf[32];
    std::snprintf(procs, sizeof procs, "%s", cg.procs_file().c_str());
    std::snprintf(usage, sizeof usage, "%s", cg.usage_file().c_str());
    char adj[16];
    std::snprintf(adj, sizeof adj, "%d", oom_score_adj);
    const uint64_t max_mib = max_bytes / kMiB;
    Shared* sh = shared_;
    start_ = Clock::now();
    pid_ = ::fork();
    if (pid_ < 0) {
      ADD_FAILURE() << "fork: " << ErrnoName(errno);
      return;
    }
    if (pid_ != 0) return;
    // ---- child
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const int n = Format(pid_buf, static_cast<uint64_t>(::getpid()));
    int fd = ::open(procs, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::write(fd, pid_buf, n) != n) Die(sh, 3);
    ::close(fd);
    sh->stage = 1;
    if (oom_score_adj != INT_MIN) {
      fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
      const int len = static_cast<int>(std::strlen(adj));
      if (fd < 0 || ::write(fd, adj, len) != len) Die(sh, 4);
      ::close(fd);
    }
    sh->stage = 2;
    struct timespec t0;
    ::clock_gettime(CLOCK_MONOTONIC, &t0);
    bool slow = false;
    for (uint64_t i = 0; i < max_mib; ++i) {
      struct timespec t;
      ::clock_gettime(CLOCK_MONOTONIC, &t);
      const int64_t ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
      if (ms > 60000) ::_exit(0);
      if (!slow) {
        const int64_t used = ReadUsage(usage);
        if (used >= 0 && static_cast<uint64_t>(used) + 64 * kMiB >= limit) {
          slow = true;
          sh->fast_ms = ms;
        }
      }
      if (slow) {
        struct timespec pause = {0, 20 * 1000 * 1000};
        ::nanosleep(&pause, nullptr);
      }
      void* m = ::mmap(nullptr, kMiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m == MAP_FAILED) Die(sh, 5);
      volatile uint8_t* b = static_cast<uint8_t*>(m);
      for (size_t off = 0; off < kMiB; off += kBlock) b[off] = static_cast<uint8_t>(i | 1);
      sh->mib = i + 1;
    }
    ::_exit(0);
  }
  ~Hog() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (shared_) ::munmap(shared_, sizeof(Shared));
  }
  Hog(const Hog&) = delete;
  Hog& operator=(const Hog&) = delete;

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // Waits until the hog exits or `timeout` passes; the waitpid status, or
  // nullopt on a timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      int ws = 0;
      pid_t r = ::waitpid(pid_, &ws, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        lifetime_ = std::chrono::duration<double>(Clock::now() - start_).count();
        return ws;
      }
      if (Clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  uint64_t mib() const { return shared_ ? shared_->mib.load() : 0; }
  int stage() const { return shared_ ? shared_->stage.load() : 0; }
  int64_t slow_after_ms() const { return shared_ ? shared_->fast_ms.load() : -1; }
  double lifetime_s() const { return lifetime_; }
  // How the hog ended, in words.
  std::string Describe(int ws) const {
    if (WIFSIGNALED(ws)) return "killed by signal " + std::to_string(WTERMSIG(ws)) + " (" + strsignal(WTERMSIG(ws)) + ")";
    if (!WIFEXITED(ws)) return "status " + std::to_string(ws);
    switch (WEXITSTATUS(ws)) {
      case 0: return "exited by itself at its bound (" + std::to_string(mib()) + " MiB): the limit was not enforced";
      case 3: return "could not join the cgroup: " + ErrnoName(shared_->err);
      case 4: return "could not set its oom_score_adj: " + ErrnoName(shared_->err);
      case 5: return "mmap failed: " + ErrnoName(shared_->err);
      default: return "exit status " + std::to_string(WEXITSTATUS(ws));
    }
  }

 private:
  [[noreturn]] static void Die(Shared* sh, int code) {
    sh->err = errno;
    ::_exit(code);
  }
  static int Format(char* out, uint64_t v) {
    char tmp[24];
    int n = 0;
    do tmp[n++] = static_cast<char>('0' + v % 10);
    while ((v /= 10) != 0);
    for (int i = 0; i < n; ++i) out[i] = tmp[n - 1 - i];
    return n;
  }
  static int64_t ReadUsage(const char* path) {
    char buf[32];
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = ::read(fd, buf, sizeof buf);
    ::close(fd);
    int64_t v = 0;
    bool any = false;
    for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i, any = true) v = v * 10 + (buf[i] - '0');
    return any ? v : -1;
  }

  Shared* shared_ = nullptr;
  pid_t pid_ = -1;
  Clock::time_point start_;
  double lifetime_ = 0;
};

// A background process (fio) killed and reaped on destruction if still running.
class Background {
 public:
  Background(const std::vector<std::string>& argv, const std::string& log) : log_(log) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      ADD_FAILURE() << "open " << log << ": " << ErrnoName(errno);
      return;
    }
    pid_ = SpawnLogged(argv, fd);
    if (pid_ < 0) ADD_FAILURE() << "fork: " << ErrnoName(errno);
  }
  ~Background() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  bool running() const { return pid_ > 0; }
  // The exit status (or 128 + signal) once it exited; nullopt on a timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout) {
    int st = -1;
    if (!extra::WaitChild(pid_, Clock::now() + timeout, &st)) return std::nullopt;
    pid_ = -1;
    return st;
  }
  std::string Output() const { return ReadText(log_); }

 private:
  std::string log_;
  pid_t pid_ = -1;
};

// ------------------------------------------------------------ fio

// fio's JSON: bytes written and read (= verified) over all jobs, the worst
// job error; -1s when the output is missing.
struct FioFigures {
  int64_t written = -1, verified = -1;
  int error = -1;
};
FioFigures ParseFio(const std::string& json_path) {
  FioFigures f;
  auto j = nlohmann::json::parse(ReadText(json_path), nullptr, false);
  if (j.is_discarded() || !j.contains("jobs")) return f;
  f.written = f.verified = 0;
  f.error = 0;
  for (const auto& job : j["jobs"]) {
    f.written += job["write"].value("io_bytes", int64_t{0});
    f.verified += job["read"].value("io_bytes", int64_t{0});
    f.error = std::max(f.error, job.value("error", 0));
  }
  return f;
}

const char* const kFioErrorMarks[] = {"verify failed", "bad magic", "bad header", "Expected CRC",
                                      "verify type mismatch", "io_u error"};

// fio exited 0, printed no error mark and wrote (unless verify_only) and
// verified all of its bytes.
::testing::AssertionResult FioClean(const std::string& what, std::optional<int> status, const std::string& output,
                                    const std::string& json_path, bool verify_only) {
  std::string why;
  if (!status) why += "fio did not finish in time; ";
  else if (*status != 0) why += "fio exit status " + std::to_string(*status) + "; ";
  for (const char* m : kFioErrorMarks)
    if (output.find(m) != std::string::npos || ReadText(json_path).find(m) != std::string::npos)
      why += std::string("fio reports \"") + m + "\"; ";
  const FioFigures f = ParseFio(json_path);
  const int64_t want = static_cast<int64_t>(kFioMib * kMiB);
  if (!verify_only && f.written != want) why += "wrote " + std::to_string(f.written) + " bytes, expected " + std::to_string(want) + "; ";
  if (f.verified != want) why += "verified " + std::to_string(f.verified) + " bytes, expected " + std::to_string(want) + "; ";
  if (f.error != 0) why += "job error " + std::to_string(f.error) + "; ";
  if (why.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << why << "\nfio output:\n" << output << "\nfio JSON:\n"
                                       << ReadText(json_path);
}

std::vector<std::string> FioArgs(const std::string& fio, const std::string& file, const std::string& json,
                                 bool verify_only) {
  std::vector<std::string> a = {fio,
                                "--name=pressure",
                                "--filename=" + file,
                                "--size=" + std::to_string(kFioMib) + "M",
                                "--rw=randwrite",
                                "--bs=4k",
                                "--direct=1",
                                "--ioengine=psync",
                                "--iodepth=1",
                                "--verify=crc32c",
                                "--do_verify=1",
                                "--verify_fatal=1",
                                "--exitall_on_error=1",
                                "--verify_state_save=0",
                                "--verify_dump=0",
                                "--fallocate=none",
                                "--randrepeat=1",
                                "--randseed=20261125",
                                "--output-format=json",
                                "--output=" + json};
  if (verify_only) a.push_back("--verify_only");
  return a;
}

std::string Joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
  return s;
}

// The headroom above the daemon's start-up usage: 768 MiB; in a sanitizer
// build 2 GiB, or 8 times that usage if more. A sanitizer build's daemon
// grows several times more during the run (measured with this test: VmRSS
// 530 MiB at the end under ASan, whose quarantine keeps freed memory; 240 MiB
// under TSan; 60 MiB in a normal build), so its headroom must leave the hog
// far larger than the daemon even if the OOM comes late in the run.
uint64_t Headroom(uint64_t daemon_usage) {
  if (!Sanitized()) return 768 * kMiB;
  return std::max<uint64_t>(2048 * kMiB, 8 * daemon_usage);
}

// Drops the clean pages of `path` that no process maps from the page cache
// (POSIX_FADV_DONTNEED), so that the next process to run it reads its code
// in again and is charged for it.
::testing::AssertionResult DropFromPageCache(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ::testing::AssertionFailure() << "open " << path << ": " << ErrnoName(errno);
  const int rc = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  if (rc != 0) return ::testing::AssertionFailure() << "posix_fadvise(DONTNEED) " << path << ": " << ErrnoName(rc);
  return ::testing::AssertionSuccess();
}

// The daemon is alive (not a zombie) and the mount answers.
::testing::AssertionResult DaemonServes(pid_t pid, const std::string& mnt) {
  const char st = ProcState(pid);
  if (st == '?' || st == 'Z' || st == 'X')
    return ::testing::AssertionFailure() << "the daemon (pid " << pid << ") is gone (state " << st << ")";
  struct stat s;
  if (::stat(mnt.c_str(), &s) != 0)
    return ::testing::AssertionFailure() << "stat " << mnt << ": " << ErrnoName(errno) << " (the mount is dead)";
  return ::testing::AssertionSuccess();
}

// ------------------------------------------------------------ tests

TEST(PressureTest, DaemonKeepsServingVerifiedDataWhileAHogInItsCgroupIsOomKilled) {
  MemoryCgroup cg;
  ASSERT_TRUE(cg.ok()) << cg.why();
  const std::string fio = FindInPath("fio");
  ASSERT_FALSE(fio.empty()) << "fio is not installed (scripts/install-deps.sh installs it)";
  MountedFs fs({"journal_limit=64M"});
  ASSERT_TRUE(fs.formatted());
  // File pages are charged to the cgroup of the process that first reads
  // them, and a cgroup's limit reclaims only pages charged to it: with the
  // daemon's code still cached from the build, the pressure below could
  // never touch it, locked or not. Dropped from the cache first, the
  // daemon's code is read in (and charged) inside the cgroup. Its shared
  // libraries stay charged wherever other processes first read them.
  ASSERT_TRUE(DropFromPageCache(CHAINSWAPFS_BIN));
  {
    InsideCgroup inside(cg);
    ASSERT_TRUE(inside.entered()) << "joining " << cg.dir() << " to start the daemon there";
    ASSERT_TRUE(fs.Mount());
  }
  const pid_t daemon = fs.daemon_pid();
  ASSERT_TRUE(HasToken(ReadText(cg.procs_file()), std::to_string(daemon), '\n'))
      << "the daemon is not in " << cg.dir() << ": " << ReadText(cg.procs_file());
  ASSERT_TRUE(fs.MakeChain(kChain));
  const std::string file = fs.Path(kChain, "vm.swap");
  {
    Fd fd = Fd::Open(file, O_CREAT | O_EXCL | O_RDWR);
    ASSERT_TRUE(fd.ok()) << "create " << file << ": " << ErrnoName(errno);
    ASSERT_TRUE(Succeeds(::ftruncate(fd.get(), static_cast<off_t>(kFioMib * kMiB))));
  }

  const int64_t usage0 = cg.Usage();
  ASSERT_GT(usage0, 0) << cg.usage_file();
  const uint64_t limit = static_cast<uint64_t>(usage0) + Headroom(static_cast<uint64_t>(usage0));
  ASSERT_TRUE(cg.SetLimit(limit));
  const bool capable = HasCapSysResource();
  const int64_t adj = ProcInt(daemon, "oom_score_adj");
  const int64_t locked = StatusKib(daemon, "VmLck");
  std::fprintf(stderr,
               "[ info ] %s: daemon pid %d started inside it, usage %s (%s of it mapped files); limit %s; daemon "
               "oom_score_adj %lld, VmLck %lld kB, VmRSS %lld kB; CAP_SYS_RESOURCE %s; sanitizer '%s'\n",
               cg.Describe().c_str(), static_cast<int>(daemon), Mib(usage0).c_str(), Mib(cg.MappedFile()).c_str(),
               Mib(static_cast<int64_t>(limit)).c_str(), static_cast<long long>(adj), static_cast<long long>(locked),
               static_cast<long long>(StatusKib(daemon, "VmRSS")), capable ? "yes" : "no", CHAINSWAP_SANITIZE_MODE);

  const int64_t majflt0 = MajorFaults(daemon);
  const std::string json_write = fs.dir() + "/fio-write.json";
  const auto write_args = FioArgs(fio, file, json_write, false);
  std::fprintf(stderr, "[ fio ] %s\n", Joined(write_args).c_str());
  Background writer(write_args, fs.dir() + "/fio-write.log");
  ASSERT_TRUE(writer.running());
  // The hog starts once fio is writing (4 MiB in), so the pressure meets
  // fio's writes and then its verify reads.
  const bool fio_writing = WaitUntil([&] { return AllocatedBytes(file) >= 4 * kMiB; }, std::chrono::seconds(60));
  ASSERT_TRUE(fio_writing) << "fio did not write 4 MiB within 60 s; fio output:\n" << writer.Output();

  // With CAP_SYS_RESOURCE the hog makes itself the least likely victim
  // (-999), so that only the daemon's -1000 keeps the OOM killer off it.
  Hog hog(cg, limit, limit + 512 * kMiB, capable ? -999 : INT_MIN);
  ASSERT_TRUE(hog.started());
  // What the hog inherited at fork (its RSS before it touches anything) and
  // the daemon's RSS: with the hog at -999 the former is about its badness,
  // the latter the daemon's badness if it were unprotected.
  int64_t hog_rss0 = -1;
  if (WaitUntil([&] { return hog.stage() >= 2; }, std::chrono::seconds(10))) hog_rss0 = StatusKib(hog.pid(), "VmRSS");
  const int64_t daemon_rss0 = StatusKib(daemon, "VmRSS");
  // Waits for the hog's end, sampling both RSSes (what the OOM killer
  // compares) every 20 ms; kept: the hog's largest (it only grows until the
  // kill, then the OOM reaper shrinks it) and the daemon's at that moment.
  int64_t hog_rss_max = -1, daemon_rss_then = -1;
  std::optional<int> hog_status;
  for (const auto deadline = Clock::now() + std::chrono::seconds(90); Clock::now() < deadline;) {
    hog_status = hog.Wait(std::chrono::milliseconds(20));
    if (hog_status) break;
    if (const int64_t h = StatusKib(hog.pid(), "VmRSS"); h > hog_rss_max) {
      hog_rss_max = h;
      daemon_rss_then = StatusKib(daemon, "VmRSS");
    }
  }
  ASSERT_TRUE(hog_status.has_value()) << "the hog was neither killed nor stopped by itself within 90 s ("
                                      << hog.mib() << " MiB touched)";
  const int64_t oom_kills = cg.OomKills();
  const int64_t limit_hits = cg.LimitHits();
  const int64_t peak = cg.Peak();
  const std::string stat_at_kill = cg.StatSummary();
  const uint64_t fio_at_kill = AllocatedBytes(file);
  EXPECT_TRUE(WIFSIGNALED(*hog_status) && WTERMSIG(*hog_status) == SIGKILL)
      << "the hog should have been killed by the OOM killer; it " << hog.Describe(*hog_status);
  EXPECT_GE(oom_kills, 1) << "the cgroup counts no OOM kill";
  // The peak usage (not memory.failcnt, which stayed 0 at the limit on the
  // v1 kernel this was written on) says the limit was reached; memory.peak
  // is missing before Linux 5.19, then v2's memory.events "max" says it.
  if (peak >= 0)
    EXPECT_GE(static_cast<uint64_t>(peak) + 4 * kMiB, limit) << "the cgroup never reached its limit";
  else
    EXPECT_GE(limit_hits, 1) << "the cgroup never reached its limit";
  EXPECT_TRUE(DaemonServes(daemon, fs.mnt())) << fs.DaemonLog();

  const std::optional<int> write_status = writer.Wait(std::chrono::seconds(240));
  EXPECT_TRUE(FioClean("fio write + verify under pressure", write_status, writer.Output(), json_write, false));
  const std::string json_verify = fs.dir() + "/fio-verify.json";
  const auto verify_args = FioArgs(fio, file, json_verify, true);
  std::fprintf(stderr, "[ fio ] %s\n", Joined(verify_args).c_str());
  CommandResult verify = RunCommand(verify_args, std::chrono::seconds(240));
  EXPECT_TRUE(FioClean("fio --verify_only after the OOM kill",
                       verify.timed_out ? std::nullopt : std::optional<int>(verify.status), verify.output, json_verify,
                       true));
  const int64_t majflt1 = MajorFaults(daemon);
  const int64_t majflt = majflt1 - majflt0;

  // Still serving: a new file written and read back through the mount.
  const std::vector<uint8_t> after = MakeData(7, 1 * kMiB);
  EXPECT_TRUE(WriteFile(fs.Path(kChain, "after"), 0, after, O_DIRECT));
  EXPECT_TRUE(FileEquals(fs.Path(kChain, "after"), after));

  std::fprintf(stderr,
               "[ info ] hog %s after %.1f s, %llu MiB touched (slow phase from %lld ms), fio %llu MiB into its "
               "writes; cgroup: oom_kill %lld, limit hits counted %lld, peak usage %s of %s; at the kill: %s\n",
               WIFSIGNALED(*hog_status) ? hog.Describe(*hog_status).c_str() : "exited", hog.lifetime_s(),
               static_cast<unsigned long long>(hog.mib()), static_cast<long long>(hog.slow_after_ms()),
               static_cast<unsigned long long>(fio_at_kill / kMiB),
               static_cast<long long>(oom_kills), static_cast<long long>(limit_hits), Mib(peak).c_str(),
               Mib(static_cast<int64_t>(limit)).c_str(), stat_at_kill.c_str());
  std::fprintf(stderr,
               "[ info ] VmRSS when the hog started: hog %lld kB (inherited at fork), daemon %lld kB; at the hog's "
               "largest sample (every 20 ms): hog %lld kB, daemon %lld kB; hog oom_score_adj %s\n",
               static_cast<long long>(hog_rss0), static_cast<long long>(daemon_rss0),
               static_cast<long long>(hog_rss_max), static_cast<long long>(daemon_rss_then),
               capable ? "-999" : "inherited");
  std::fprintf(stderr,
               "[ info ] daemon: alive; major page faults during the run %lld (%lld before, %lld after); "
               "oom_score_adj %lld; VmLck %lld kB; VmRSS %lld kB; VmHWM %lld kB\n",
               static_cast<long long>(majflt), static_cast<long long>(majflt0), static_cast<long long>(majflt1),
               static_cast<long long>(ProcInt(daemon, "oom_score_adj")),
               static_cast<long long>(StatusKib(daemon, "VmLck")), static_cast<long long>(StatusKib(daemon, "VmRSS")),
               static_cast<long long>(StatusKib(daemon, "VmHWM")));

  if (capable) {
    EXPECT_EQ(adj, -1000) << fs.DaemonLog();
  } else {
    // No CAP_SYS_RESOURCE: the daemon keeps the inherited score and says why.
    EXPECT_EQ(adj, ProcInt(::getpid(), "oom_score_adj"));
    EXPECT_NE(fs.DaemonLog().find("CAP_SYS_RESOURCE"), std::string::npos) << fs.DaemonLog();
  }
  if (Sanitized()) {
    // Relaxed: a sanitizer build does not lock its memory, so reclaim may
    // take its pages and the fault count is only printed.
    EXPECT_EQ(locked, 0);
  } else {
    EXPECT_GT(locked, 0) << fs.DaemonLog();
    EXPECT_GE(majflt0, 0);
    EXPECT_LE(majflt, kMajorFaultBound) << "the daemon's memory is locked: reclaim should not make it fault";
  }

  ASSERT_TRUE(fs.Unmount());
  CommandResult fsck = Cli({"fsck", fs.backing()});
  EXPECT_EQ(fsck.status, 0) << "chainswap fsck: " << Describe(fsck);
}

// The other side, and proof that the first case can fail: the same cgroup
// and hog with the daemon at oom_score_adj=1000 (raising a score needs no
// capability). Its badness is then its RSS plus the whole limit, above any
// task of the cgroup, so the OOM killer takes the daemon: the mount is dead
// (ENOTCONN or ECONNABORTED), as every guest's swap would be. (The hog goes
// on and is usually killed too once it fills the limit again.)
TEST(PressureTest, ADaemonWithoutProtectionIsWhatTheOomKillerTakes) {
  MemoryCgroup cg;
  ASSERT_TRUE(cg.ok()) << cg.why();
  MountedFs fs;  // formats; the daemon is run by extra::Daemon (which may reap a killed one)
  ASSERT_TRUE(fs.formatted());
  extra::Daemon d(fs);
  {
    InsideCgroup inside(cg);
    ASSERT_TRUE(inside.entered());
    ASSERT_TRUE(d.Start({"journal_limit=64M", "oom_score_adj=1000"}));
  }
  const pid_t daemon = d.pid();
  ASSERT_EQ(ProcInt(daemon, "oom_score_adj"), 1000) << d.Log();
  ASSERT_TRUE(fs.MakeChain(kChain));
  ASSERT_TRUE(WriteFile(fs.Path(kChain, "vm.swap"), 0, MakeData(1, 8 * kMiB), O_DIRECT));
  const int64_t usage0 = cg.Usage();
  const uint64_t limit = static_cast<uint64_t>(usage0) + Headroom(static_cast<uint64_t>(usage0));
  ASSERT_TRUE(cg.SetLimit(limit));

  Hog hog(cg, limit, limit + 512 * kMiB);
  ASSERT_TRUE(hog.started());
  const bool daemon_died = WaitUntil([&] { return ProcState(daemon) == 'Z'; }, std::chrono::seconds(90));
  const uint64_t hog_mib = hog.mib();
  const int64_t oom_kills = cg.OomKills();
  ASSERT_TRUE(daemon_died) << "the daemon at oom_score_adj 1000 survived 90 s next to the hog (" << hog_mib
                           << " MiB touched; cgroup oom_kill " << oom_kills << ")";
  const int exit_code = ExitCodeOfZombie(daemon);
  struct stat st;
  const int stat_rc = ::stat(fs.mnt().c_str(), &st);
  const int stat_errno = errno;
  std::fprintf(stderr,
               "[ info ] %s, limit %s: with oom_score_adj 1000 the daemon was %s while the hog held %llu MiB; "
               "cgroup oom_kill %lld; stat of the mountpoint: %s\n",
               cg.Describe().c_str(), Mib(static_cast<int64_t>(limit)).c_str(),
               WIFSIGNALED(exit_code) ? (std::string("killed by signal ") + std::to_string(WTERMSIG(exit_code)) + " (" +
                                         strsignal(WTERMSIG(exit_code)) + ")")
                                            .c_str()
                                      : "exited",
               static_cast<unsigned long long>(hog_mib), static_cast<long long>(oom_kills),
               stat_rc == 0 ? "ok" : ErrnoName(stat_errno).c_str());
  EXPECT_TRUE(WIFSIGNALED(exit_code) && WTERMSIG(exit_code) == SIGKILL) << "exit_code " << exit_code << "\n"
                                                                          << d.Log();
  EXPECT_GE(oom_kills, 1);
  // ENOTCONN once the connection is gone; ECONNABORTED for a request that
  // was pending when the kernel aborted it (seen once in a few runs).
  EXPECT_TRUE(stat_rc != 0 && (stat_errno == ENOTCONN || stat_errno == ECONNABORTED))
      << "a mount whose daemon died answers ENOTCONN or ECONNABORTED, got "
      << (stat_rc == 0 ? std::string("success") : ErrnoName(stat_errno));
  ASSERT_TRUE(d.Kill9());  // reaps the dead daemon, lazily unmounts the dead mount
}

}  // namespace
}  // namespace chainswap::mounttest
