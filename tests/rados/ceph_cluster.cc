#include "tests/rados/ceph_cluster.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
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
