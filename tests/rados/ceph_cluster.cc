#include "tests/rados/ceph_cluster.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>
#include <vector>

#ifndef CEPH_TEST_CLUSTER_SCRIPT
#error "CEPH_TEST_CLUSTER_SCRIPT must give the absolute path of scripts/ceph-test-cluster.sh"
#endif

// ThreadSanitizer builds: the suppressions for librados's own threads are
// in catalog/rados_store.cc, linked into every binary that uses librados
// through RadosStore (this one does).

namespace chainswap::radostest {

CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::seconds timeout) {
  CommandResult res;
  std::vector<std::string> copy = argv;
  std::vector<char*> ptrs;
  for (auto& a : copy) ptrs.push_back(a.data());
  ptrs.push_back(nullptr);
  if (copy.empty()) {
    res.output = "RunCommand: empty argv";
    return res;
  }
  int pfd[2];
  if (::pipe2(pfd, O_CLOEXEC) != 0) {
    res.output = std::string("pipe2: ") + std::strerror(errno);
    return res;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    res.output = std::string("fork: ") + std::strerror(errno);
    ::close(pfd[0]);
    ::close(pfd[1]);
    return res;
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(pfd[1], 1);
    ::dup2(pfd[1], 2);
    // Nothing else of the test process (librados sockets, ...) may reach
    // the command, or daemons it starts.
    ::close_range(3, ~0U, 0);
    ::execvp(ptrs[0], ptrs.data());
    static const char msg[] = "exec failed\n";
    (void)!::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::close(pfd[1]);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool killed = false;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0 && !killed) {
      ::kill(-pid, SIGKILL);
      killed = true;
      res.output += "\n[" + copy[0] + " killed after " + std::to_string(timeout.count()) + " s]\n";
    }
    struct pollfd p = {pfd[0], POLLIN, 0};
    int pr = ::poll(&p, 1, killed ? 1000 : static_cast<int>(std::clamp<int64_t>(left, 1, 1000)));
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
  int ws = 0;
  while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  res.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  return res;
}

namespace {

using Clock = std::chrono::steady_clock;

// Generous: the script bounds its own waits (60 s for the pools), BlueStore's
// mkfs takes a few seconds, and sanitizer builds share the machine.
constexpr std::chrono::seconds kScriptTimeout{240};

CommandResult RunScript(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/bin/bash", CEPH_TEST_CLUSTER_SCRIPT};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, kScriptTimeout);
}

bool KeepDirs() {
  const char* v = std::getenv("CHAINSWAP_KEEP_CEPH");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

std::string Quote(const std::vector<std::string>& args) {
  std::string s = "ceph-test-cluster.sh";
  for (const auto& a : args) s += " " + a;
  return s;
}

}  // namespace

CephTestCluster::CephTestCluster(std::string dir, std::string pool, bool bluestore)
    : dir_(std::move(dir)), conf_(dir_ + "/ceph.conf"), pool_(std::move(pool)), bluestore_(bluestore) {}

std::unique_ptr<CephTestCluster> CephTestCluster::Start(const std::string& pool, bool bluestore) {
  char tmpl[] = "/tmp/chainswap-ceph.XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    std::fprintf(stderr, "CephTestCluster: mkdtemp: %s\n", std::strerror(errno));
    return nullptr;
  }
  std::string dir = tmpl;
  std::vector<std::string> args = {"start", dir, pool, "--owner", std::to_string(::getpid())};
  if (bluestore) args.push_back("--bluestore");
  const auto t0 = Clock::now();
  CommandResult r = RunScript(args);
  if (r.status != 0) {
    std::fprintf(stderr, "CephTestCluster: `%s` exited %d:\n%s\n", Quote(args).c_str(), r.status,
                 r.output.c_str());
    if (KeepDirs()) {
      std::fprintf(stderr, "CephTestCluster: CHAINSWAP_KEEP_CEPH=1: keeping %s\n", dir.c_str());
      RunScript({"stop", dir});
    } else {
      RunScript({"stop", dir, "--purge"});
    }
    return nullptr;
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::fprintf(stderr, "CephTestCluster: %s cluster up in %.1f s, conf %s/ceph.conf\n",
               bluestore ? "bluestore" : "memstore", secs, dir.c_str());
  return std::unique_ptr<CephTestCluster>(new CephTestCluster(dir, pool, bluestore));
}

CephTestCluster::~CephTestCluster() {
  std::vector<std::string> args = {"stop", dir_};
  if (KeepDirs()) {
    std::fprintf(stderr, "CephTestCluster: CHAINSWAP_KEEP_CEPH=1: keeping %s\n", dir_.c_str());
  } else {
    args.push_back("--purge");
  }
  CommandResult r = RunScript(args);
  if (r.status != 0) {
    std::fprintf(stderr, "CephTestCluster: `%s` exited %d:\n%s\n", Quote(args).c_str(), r.status,
                 r.output.c_str());
  }
}

::testing::AssertionResult CephTestCluster::Invoke(const std::string& what,
                                                std::initializer_list<std::string> args) const {
  std::vector<std::string> v(args);
  CommandResult r = RunScript(v);
  if (r.status == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": `" << Quote(v) << "` exited " << r.status << ":\n"
                                       << r.output;
}

::testing::AssertionResult CephTestCluster::KillOsd() { return Invoke("KillOsd", {"kill-osd", dir_}); }
::testing::AssertionResult CephTestCluster::StartOsd() { return Invoke("StartOsd", {"start-osd", dir_}); }
::testing::AssertionResult CephTestCluster::CreatePool(const std::string& name) {
  return Invoke("CreatePool", {"create-pool", dir_, name});
}
::testing::AssertionResult CephTestCluster::Status() { return Invoke("Status", {"status", dir_}); }

std::string CephTestCluster::LogTails(int lines) const {
  std::string logdir = dir_ + "/log";
  std::vector<std::string> names;
  if (DIR* d = ::opendir(logdir.c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') names.push_back(e->d_name);
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  std::ostringstream out;
  for (const auto& n : names) {
    std::ifstream in(logdir + "/" + n);
    std::deque<std::string> tail;
    for (std::string line; std::getline(in, line);) {
      tail.push_back(line);
      if (tail.size() > static_cast<size_t>(std::max(lines, 0))) tail.pop_front();
    }
    out << "---- tail of " << logdir << "/" << n << "\n";
    for (const auto& l : tail) out << l << "\n";
  }
  return out.str();
}

CephTestCluster* SharedCluster() {
  // Destroyed at exit, after the tests: stops the cluster.
  static std::unique_ptr<CephTestCluster> cluster = CephTestCluster::Start();
  return cluster.get();
}

}  // namespace chainswap::radostest
