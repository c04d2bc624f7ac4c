// A throw-away single-node Ceph cluster (one mon, one OSD, cephx on) for the
// RADOS tests, started and stopped by scripts/ceph-test-cluster.sh (its
// header has the details: ports, object stores, measured times).
//
//   CephTestCluster::Start()   a fresh cluster in a new temp dir under /tmp
//                              with one pool; nullptr when it does not come up
//                              (the script's output, with the tails of the
//                              daemons' logs, is printed on stderr). A test
//                              that gets nullptr must fail, never skip:
//                                auto c = CephTestCluster::Start();
//                                ASSERT_NE(c, nullptr);
//   SharedCluster()            one memstore cluster per test process, started
//                              on first use and stopped at exit. Under
//                              gtest_discover_tests every test case is its
//                              own process, so this is one cluster per test
//                              (about 1 s to start); running the binary by
//                              hand shares it across the test cases.
//
// Clients connect with the conf file alone (librados: conf_read_file(
// conf_path()) then connect() as client.admin; the CLI: rados -c conf_path()).
// Ops time out after 10 s (`rados osd op timeout`), so an op on a dead OSD
// fails with -ETIMEDOUT instead of hanging.
//
// The cluster is removed when the object is destroyed (its dir too, unless
// CHAINSWAP_KEEP_CEPH=1, which keeps it and prints its path). If the test
// process dies without running the destructor, a watchdog started by the
// script stops the daemons once the process is gone.
//
// Thread-safety: none; one test thread uses one CephTestCluster.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "tests/mount/mount_fixture.h"

namespace chainswap::radostest {

class CephTestCluster {
 public:
  // Starts a cluster with `pool` (size 1, application "rados"); memstore
  // (about 1 s), or BlueStore on a sparse file (about 4 s) when `bluestore`:
  // only BlueStore keeps its data across KillOsd() + StartOsd().
  static std::unique_ptr<CephTestCluster> Start(const std::string& pool = "chainswap",
                                                bool bluestore = false);
  // Stops the daemons; removes dir() unless CHAINSWAP_KEEP_CEPH=1.
  ~CephTestCluster();
  CephTestCluster(const CephTestCluster&) = delete;
  CephTestCluster& operator=(const CephTestCluster&) = delete;

  const std::string& dir() const { return dir_; }
  const std::string& conf_path() const { return conf_; }
  const std::string& pool() const { return pool_; }
  bool bluestore() const { return bluestore_; }

  // kill -9 of the OSD; returns once it is gone. Clients then get
  // -ETIMEDOUT after 10 s.
  ::testing::AssertionResult KillOsd();
  // Starts the OSD again on its data and waits until every pool answers.
  // BlueStore only: memstore keeps nothing across a restart, so on a
  // memstore cluster this fails (saying so) and starts nothing.
  ::testing::AssertionResult StartOsd();
  // Creates another pool (size 1, application "rados") and waits until it
  // answers.
  ::testing::AssertionResult CreatePool(const std::string& name);
  // Every pool answers (a stat gives ENOENT).
  ::testing::AssertionResult Status();
  // The last `lines` lines of each log under dir()/log, for a failure message.
  std::string LogTails(int lines = 30) const;

 private:
  CephTestCluster(std::string dir, std::string pool, bool bluestore);
  ::testing::AssertionResult Invoke(const std::string& what, std::initializer_list<std::string> args) const;

  std::string dir_;
  std::string conf_;
  std::string pool_;
  bool bluestore_;
};

using mounttest::CommandResult;
// Runs argv[0] (an absolute path or a name looked up in PATH) with stdin
// from /dev/null and no other descriptor of the test process, in its own
// process group, which is killed after `timeout` (mounttest::RunCommand).
inline CommandResult RunCommand(const std::vector<std::string>& argv,
                                std::chrono::seconds timeout = std::chrono::seconds(120)) {
  return mounttest::RunCommand(argv, timeout, mounttest::RunOptions{.own_process_group = true});
}

// The process's memstore cluster with pool "chainswap", started on the first
// call; nullptr (on every call) if it did not start.
CephTestCluster* SharedCluster();

}  // namespace chainswap::radostest
