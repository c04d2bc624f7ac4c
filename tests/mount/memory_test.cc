// The daemon protects itself from the memory pressure it exists for
// (docs/OPERATIONS.md): by default it asks for oom_score_adj -1000 and locks
// its memory in RAM; oom_score_adj=N / =keep and no_mlock change that. Read
// from /proc/PID/oom_score_adj and /proc/PID/status of the running daemon.
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "tests/mount/extra_util.h"
#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

using extra::ProcInt;
using extra::StatusKib;

// Whether this process (and so the daemon it starts) may lower an
// oom_score_adj: that needs CAP_SYS_RESOURCE, which some containers drop.
bool HasCapSysResource() {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &hdr, data) != 0) return false;
  return (data[CAP_SYS_RESOURCE / 32].effective >> (CAP_SYS_RESOURCE % 32)) & 1;
}

bool Sanitized() {
  const std::string mode = CHAINSWAP_SANITIZE_MODE;
  return mode == "address" || mode == "thread";
}

TEST(MemoryTest, DefaultsProtectTheDaemon) {
  MountedFs fs;
  ASSERT_TRUE(fs.Mount());
  const pid_t pid = fs.daemon_pid();
  ASSERT_TRUE(fs.MakeChain("c"));
  {
    std::ofstream f(fs.Path("c", "vm.swap"), std::ios::binary);
    f << std::string(1 << 20, 'x');
  }
  const int64_t adj = ProcInt(pid, "oom_score_adj");
  if (HasCapSysResource()) {
    EXPECT_EQ(adj, -1000) << fs.DaemonLog();
  } else {
    // Without the capability the daemon cannot lower its score: it says so
    // and keeps the inherited one (the systemd unit sets OOMScoreAdjust=).
    EXPECT_EQ(adj, ProcInt(::getpid(), "oom_score_adj"));
    EXPECT_NE(fs.DaemonLog().find("CAP_SYS_RESOURCE"), std::string::npos) << fs.DaemonLog();
  }
  const int64_t locked = StatusKib(pid, "VmLck");
  if (Sanitized()) {
    EXPECT_EQ(locked, 0) << "a sanitizer build must not lock its shadow memory";
    EXPECT_NE(fs.DaemonLog().find("memory not locked"), std::string::npos) << fs.DaemonLog();
  } else {
    EXPECT_GT(locked, 0) << fs.DaemonLog();
    EXPECT_NE(fs.DaemonLog().find("memory locked in RAM"), std::string::npos) << fs.DaemonLog();
  }
}

TEST(MemoryTest, OptionsChooseTheScoreOrKeepTheInheritedOne) {
  {
    // Raising the score needs no capability: proves the option reaches the
    // kernel.
    MountedFs fs({"oom_score_adj=500", "no_mlock"});
    ASSERT_TRUE(fs.Mount());
    EXPECT_EQ(ProcInt(fs.daemon_pid(), "oom_score_adj"), 500);
    EXPECT_EQ(StatusKib(fs.daemon_pid(), "VmLck"), 0);
  }
  {
    MountedFs fs({"oom_score_adj=keep", "no_mlock"});
    ASSERT_TRUE(fs.Mount());
    EXPECT_EQ(ProcInt(fs.daemon_pid(), "oom_score_adj"), ProcInt(::getpid(), "oom_score_adj"));
    EXPECT_EQ(StatusKib(fs.daemon_pid(), "VmLck"), 0);
    EXPECT_EQ(fs.DaemonLog().find("memory locked"), std::string::npos);
  }
}

}  // namespace
}  // namespace chainswap::mounttest
