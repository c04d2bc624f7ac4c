// Permissions (SPEC §7 security): the mount always enforces file modes and
// owners (default_permissions), also for other users let in by allow_other.
// A child process drops to nobody (uid/gid 65534) and tries what the modes
// forbid and allow; on a failure each check runs again alone to name it.
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

constexpr uid_t kNobody = 65534;

class PermissionTest : public MountTest {
 protected:
  std::vector<std::string> MountOptions() const override { return {"allow_other"}; }
};

// One check run as nobody: true when the outcome is the expected one.
struct Check {
  std::string what;
  std::function<bool()> ok;
};

// Runs the checks in a child that has become nobody; returns the names of
// the checks that failed (or why the child could not run them).
std::vector<std::string> RunAsNobody(const std::vector<Check>& checks) {
  const pid_t pid = ::fork();
  if (pid < 0) return {"fork failed"};
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(kNobody, kNobody, kNobody) != 0 ||
        ::setresuid(kNobody, kNobody, kNobody) != 0)
      ::_exit(255);
    bool all = true;
    for (const Check& c : checks) all = c.ok() && all;
    ::_exit(all ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status)) return {"the child died"};
  if (WEXITSTATUS(status) == 255) return {"could not become nobody"};
  if (WEXITSTATUS(status) == 0) return {};
  // Run again, one check per child, to name the failures.
  std::vector<std::string> names;
  for (const Check& c : checks) {
    const pid_t one = ::fork();
    if (one == 0) {
      if (::setgroups(0, nullptr) != 0 || ::setresgid(kNobody, kNobody, kNobody) != 0 ||
          ::setresuid(kNobody, kNobody, kNobody) != 0)
        ::_exit(255);
      ::_exit(c.ok() ? 0 : 1);
    }
    int st = 0;
    ::waitpid(one, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) names.push_back(c.what);
  }
  return names;
}

bool OpenFails(const std::string& path, int flags, int expected) {
  int fd = ::open(path.c_str(), flags, 0644);
  if (fd >= 0) {
    ::close(fd);
    return false;
  }
  return errno == expected;
}

bool OpenReadsBack(const std::string& path, size_t n) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return false;
  std::vector<uint8_t> buf(n);
  const ssize_t got = ::pread(fd, buf.data(), n, 0);
  ::close(fd);
  return got == static_cast<ssize_t>(n);
}

TEST_F(PermissionTest, ModesAndOwnersAreEnforcedForOtherUsers) {
  // Let nobody reach the mountpoint (the fixture's temp dir is 0700).
  ASSERT_TRUE(Succeeds(::chmod(fs().dir().c_str(), 0755)));
  ASSERT_TRUE(fs().MakeChain("private"));
  ASSERT_TRUE(fs().MakeChain("shared"));
  ASSERT_TRUE(Succeeds(::chmod(fs().Path("private").c_str(), 0700)));
  ASSERT_TRUE(Succeeds(::chmod(fs().Path("shared").c_str(), 0755)));
  const auto data = MakeData(90, 2 * kBlock);
  const std::string secret = fs().Path("private", "vm.vswp");
  const std::string readable = fs().Path("shared", "vm.vswp");
  const std::string owned = fs().Path("shared", "nobody.vswp");
  for (const std::string& p : {secret, readable, owned}) ASSERT_TRUE(WriteFile(p, 0, data));
  ASSERT_TRUE(Succeeds(::chmod(secret.c_str(), 0600)));
  ASSERT_TRUE(Succeeds(::chmod(readable.c_str(), 0644)));
  ASSERT_TRUE(Succeeds(::chmod(owned.c_str(), 0600)));
  ASSERT_TRUE(Succeeds(::chown(owned.c_str(), kNobody, kNobody)));

  const std::vector<Check> checks = {
      {"open a file in a 0700 chain of root's: EACCES", [&] { return OpenFails(secret, O_RDONLY, EACCES); }},
      {"list a 0700 chain of root's: EACCES",
       [&] { return ::access(fs().Path("private").c_str(), R_OK) != 0 && errno == EACCES; }},
      {"read a 0644 file: allowed", [&] { return OpenReadsBack(readable, data.size()); }},
      {"write a 0644 file of root's: EACCES", [&] { return OpenFails(readable, O_WRONLY, EACCES); }},
      {"create in a 0755 chain of root's: EACCES",
       [&] { return OpenFails(fs().Path("shared", "new.vswp"), O_CREAT | O_WRONLY, EACCES); }},
      {"mkdir a chain at the root: EACCES", [&] {
         return ::mkdir(fs().Path("mine").c_str(), 0755) != 0 && errno == EACCES;
       }},
      {"unlink in a 0755 chain of root's: EACCES", [&] { return ::unlink(readable.c_str()) != 0 && errno == EACCES; }},
      {"chmod a file of root's: EPERM", [&] { return ::chmod(readable.c_str(), 0666) != 0 && errno == EPERM; }},
      {"write its own 0600 file: allowed", [&] {
         int fd = ::open(owned.c_str(), O_WRONLY);
         if (fd < 0) return false;
         const bool ok = ::pwrite(fd, data.data(), kBlock, 0) == static_cast<ssize_t>(kBlock);
         ::close(fd);
         return ok;
       }},
      {"chown its own file to root: EPERM", [&] { return ::chown(owned.c_str(), 0, 0) != 0 && errno == EPERM; }},
  };
  const std::vector<std::string> failed = RunAsNobody(checks);
  for (const std::string& f : failed) ADD_FAILURE() << "as nobody: " << f;
  EXPECT_TRUE(FileEquals(readable, data)) << "root's file changed";
  EXPECT_TRUE(FileEquals(secret, data)) << "root's private file changed";
}

}  // namespace
}  // namespace chainswap::mounttest
