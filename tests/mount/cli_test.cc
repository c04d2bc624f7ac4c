// The command-line surface (SPEC §3, §6, OPERATIONS): usage errors, clear
// one-line failures on wrong directories, `format` refusing to overwrite,
// the daemon rejecting bad options, `chainswap chain` both unmounted (on the
// catalog) and mounted (through the mount), and a mount the way fstab and
// mount(8) do it: `mount -t fuse "/path/chainswapfs#BACKING" MNT`.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/mount/extra_util.h"
#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

using extra::BackingLocked;
using extra::Cli;
using extra::Describe;
using extra::IsMounted;

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\n");
  size_t e = s.find_last_not_of(" \t\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// No C++ exception or abort text leaks to the user.
::testing::AssertionResult NoCrashText(const CommandResult& r) {
  for (const char* bad : {"terminate called", "exception", "what():", "Aborted", "Segmentation"})
    if (r.output.find(bad) != std::string::npos)
      return ::testing::AssertionFailure() << "output contains \"" << bad << "\": " << Describe(r);
  if (r.status >= 128) return ::testing::AssertionFailure() << "killed by a signal: " << Describe(r);
  return ::testing::AssertionSuccess();
}

// A line of the output starts with "usage" (any case).
bool HasUsageLine(const std::string& out) {
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line))
    if (Lower(Trim(line)).rfind("usage", 0) == 0) return true;
  return false;
}

// A temp dir removed at the end (never descending into mounts).
struct TempDir {
  TempDir() {
    char t[] = "/tmp/chainswap-cli-XXXXXX";
    path = ::mkdtemp(t) ? t : "";
    EXPECT_FALSE(path.empty());
  }
  ~TempDir() {
    if (!path.empty() && !IsMounted(path)) RunCommand({"rm", "-rf", "--one-file-system", path});
  }
  std::string path;
};

TEST(CliTest, UsageErrorsExitTwoWithAUsageLine) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {}, {"bogus"}, {"stats"}, {"fsck", "--frobnicate", "/tmp"}, {"chain"}, {"chain", "explode", "/tmp"}}) {
    std::string shown = "chainswap";
    for (const auto& a : args) shown += " " + a;
    CommandResult r = Cli(args, std::chrono::seconds(20));
    EXPECT_EQ(r.status, 2) << shown << ": " << Describe(r);
    EXPECT_TRUE(HasUsageLine(r.output)) << shown << " prints no usage line: " << Describe(r);
    EXPECT_TRUE(NoCrashText(r)) << shown;
  }
  CommandResult r = Cli({"--help"}, std::chrono::seconds(20));
  EXPECT_EQ(r.status, 0) << Describe(r);
  for (const char* sub : {"format", "stats", "fsck", "clone", "chain"})
    EXPECT_NE(r.output.find(sub), std::string::npos) << "--help does not mention " << sub << ": " << r.output;
}

TEST(CliTest, StatsOnAMissingOrForeignDirectoryFailsWithOneClearLine) {
  TempDir tmp;
  const std::string missing = tmp.path + "/does-not-exist";
  CommandResult r = Cli({"stats", missing}, std::chrono::seconds(20));
  EXPECT_EQ(r.status, 1) << Describe(r);
  EXPECT_TRUE(NoCrashText(r));
  EXPECT_EQ(Trim(r.output).find('\n'), std::string::npos) << "not one line: " << Describe(r);
  EXPECT_NE(r.output.find(missing), std::string::npos) << "does not name the directory: " << Describe(r);
  struct stat st;
  EXPECT_NE(::stat(missing.c_str(), &st), 0) << "stats created " << missing;

  const std::string plain = tmp.path + "/plain";
  ASSERT_EQ(::mkdir(plain.c_str(), 0755), 0);
  r = Cli({"stats", plain}, std::chrono::seconds(20));
  EXPECT_EQ(r.status, 1) << Describe(r);
  EXPECT_TRUE(NoCrashText(r));
  EXPECT_EQ(Trim(r.output).find('\n'), std::string::npos) << "not one line: " << Describe(r);
  EXPECT_NE(r.output.find("not a chainswap"), std::string::npos) << Describe(r);
  r = Cli({"stats", plain, "--json"}, std::chrono::seconds(20));
  EXPECT_EQ(r.status, 1) << Describe(r);
  EXPECT_TRUE(NoCrashText(r));
  // Looking must not write: the plain directory stays empty.
  auto listing = Popen("ls -A '" + plain + "'");
  ASSERT_TRUE(listing.has_value());
  EXPECT_EQ(*listing, "") << "stats left files in a foreign directory";
  // fsck on it cannot check (8), clearly.
  r = Cli({"fsck", plain}, std::chrono::seconds(20));
  EXPECT_EQ(r.status, 8) << Describe(r);
  EXPECT_TRUE(NoCrashText(r));
}

TEST(CliTest, FormatRefusesAnExistingBackingDirectory) {
  MountedFs fs;  // formatted, not mounted
  ASSERT_TRUE(fs.formatted());
  ASSERT_TRUE(fs.Mount());
  ASSERT_TRUE(fs.MakeChain("pool"));
  const auto data = MakeData(500, 1 * kMiB);
  ASSERT_TRUE(WriteFile(fs.Path("pool", "vm"), 0, data));
  ASSERT_TRUE(fs.Unmount());
  CommandResult r = Cli({"format", fs.backing()});
  EXPECT_NE(r.status, 0) << Describe(r);
  EXPECT_NE(r.output.find("already"), std::string::npos) << Describe(r);
  EXPECT_TRUE(NoCrashText(r));
  // Nothing was lost.
  r = Cli({"fsck", fs.backing()});
  EXPECT_EQ(r.status, 0) << Describe(r);
  ASSERT_TRUE(fs.Mount());
  EXPECT_TRUE(FileEquals(fs.Path("pool", "vm"), data));
  // Also while mounted.
  r = Cli({"format", fs.backing()});
  EXPECT_NE(r.status, 0) << Describe(r);
  EXPECT_TRUE(FileEquals(fs.Path("pool", "vm"), data));
}

TEST(CliTest, DaemonRejectsBadOptionsAndAMissingBackingDirectory) {
  MountedFs fs;
  ASSERT_TRUE(fs.formatted());
  struct Case {
    std::vector<std::string> args;
    int status;          // expected exit status; -1: any non-zero
    std::string says;    // expected in the output
  };
  const std::string missing = fs.dir() + "/no-such-backing";
  const std::vector<Case> cases = {
      {{fs.backing(), fs.mnt(), "-f", "-o", "capacity=abc"}, 2, "capacity=abc"},
      {{fs.backing(), fs.mnt(), "-f", "-o", "bucket_size=8M,journal_limit=8M"}, 2, "journal"},
      {{fs.backing(), fs.mnt(), "-f", "-o", "idle_seal_ms=0"}, 2, "idle_seal_ms"},
      {{fs.backing(), fs.mnt(), "-f", "--bogus"}, 2, "--bogus"},
      {{fs.backing(), "-f"}, 2, "MOUNTPOINT"},
      {{missing, fs.mnt(), "-f"}, -1, missing},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {CHAINSWAPFS_BIN};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    std::string shown = "chainswapfs";
    for (const auto& a : c.args) shown += " " + a;
    CommandResult r = RunCommand(argv, std::chrono::seconds(20));
    if (IsMounted(fs.mnt())) {
      RunCommand({"fusermount3", "-uz", fs.mnt()}, std::chrono::seconds(10));
      ADD_FAILURE() << shown << " mounted";
    }
    EXPECT_FALSE(r.timed_out) << shown << " kept running: " << Describe(r);
    if (c.status >= 0) EXPECT_EQ(r.status, c.status) << shown << ": " << Describe(r);
    else EXPECT_NE(r.status, 0) << shown << ": " << Describe(r);
    EXPECT_NE(r.output.find(c.says), std::string::npos) << shown << " does not say \"" << c.says << "\": " << Describe(r);
    EXPECT_TRUE(NoCrashText(r)) << shown;
  }
  // The backing directory is still fine and mounts.
  ASSERT_TRUE(fs.Mount());
}

TEST(CliTest, ChainCreateListRemoveUnmountedAndMounted) {
  MountedFs fs;
  ASSERT_TRUE(fs.formatted());
  const std::string& b = fs.backing();

  // Unmounted: on the catalog.
  CommandResult r = Cli({"chain", "create", b, "vdi"});
  ASSERT_EQ(r.status, 0) << Describe(r);
  r = Cli({"chain", "create", b, "vdi"});
  EXPECT_NE(r.status, 0) << "a second chain with the same name: " << Describe(r);
  EXPECT_TRUE(NoCrashText(r));
  r = Cli({"chain", "create", b, "a/b"});
  EXPECT_NE(r.status, 0) << Describe(r);
  r = Cli({"chain", "list", b});
  EXPECT_EQ(r.status, 0) << Describe(r);
  EXPECT_NE(r.output.find("vdi"), std::string::npos) << Describe(r);
  EXPECT_NE(r.output.find("not mounted"), std::string::npos) << Describe(r);
  r = Cli({"chain", "list", b, "--json"});
  EXPECT_EQ(r.status, 0) << Describe(r);
  auto j = nlohmann::json::parse(r.output, nullptr, false);
  ASSERT_TRUE(j.is_array()) << r.output;
  ASSERT_EQ(j.size(), 1u) << r.output;
  EXPECT_EQ(j[0].value("name", ""), "vdi");
  const int64_t vdi_id = j[0].value("dedup_id", int64_t{-1});
  EXPECT_GT(vdi_id, 0);

  // Mounted: the chain is a directory; create/rm go through the mount.
  ASSERT_TRUE(fs.Mount());
  struct stat st;
  ASSERT_EQ(::stat(fs.Path("vdi").c_str(), &st), 0) << "the chain made offline is not on the mount";
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  r = Cli({"chain", "create", b, "pool2"});
  ASSERT_EQ(r.status, 0) << Describe(r);
  ASSERT_EQ(::stat(fs.Path("pool2").c_str(), &st), 0) << "chain created while mounted is not on the mount";
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_GT(fs.DedupIdOf("pool2"), vdi_id);
  r = Cli({"chain", "list", b});
  EXPECT_EQ(r.status, 0) << Describe(r);
  EXPECT_NE(r.output.find(fs.Path("vdi")), std::string::npos) << Describe(r);
  EXPECT_NE(r.output.find(fs.Path("pool2")), std::string::npos) << Describe(r);
  const auto data = MakeData(501, 64 * kKiB);
  ASSERT_TRUE(WriteFile(fs.Path("pool2", "vm"), 0, data));
  r = Cli({"chain", "rm", b, "pool2"});
  EXPECT_NE(r.status, 0) << "removed a chain that holds a swap file: " << Describe(r);
  EXPECT_TRUE(FileEquals(fs.Path("pool2", "vm"), data));
  ASSERT_EQ(::unlink(fs.Path("pool2", "vm").c_str()), 0);
  r = Cli({"chain", "rm", b, "pool2"});
  EXPECT_EQ(r.status, 0) << Describe(r);
  EXPECT_NE(::stat(fs.Path("pool2").c_str(), &st), 0) << "pool2 still on the mount";
  r = Cli({"chain", "rm", b, "nope"});
  EXPECT_NE(r.status, 0) << Describe(r);
  EXPECT_TRUE(NoCrashText(r));
  // A chain with a file, for the offline refusal below.
  ASSERT_TRUE(fs.MakeChain("full"));
  ASSERT_TRUE(WriteFile(fs.Path("full", "vm"), 0, data));
  ASSERT_TRUE(fs.Unmount());

  // Unmounted again.
  r = Cli({"chain", "rm", b, "full"});
  EXPECT_NE(r.status, 0) << "removed a non-empty chain offline: " << Describe(r);
  r = Cli({"chain", "rm", b, "vdi"});
  EXPECT_EQ(r.status, 0) << Describe(r);
  r = Cli({"chain", "rm", b, "vdi"});
  EXPECT_NE(r.status, 0) << Describe(r);
  r = Cli({"chain", "list", b});
  EXPECT_EQ(r.status, 0) << Describe(r);
  EXPECT_EQ(r.output.find("vdi"), std::string::npos) << Describe(r);
  EXPECT_NE(r.output.find("full"), std::string::npos) << Describe(r);
  ASSERT_TRUE(fs.Mount());
  EXPECT_NE(::stat(fs.Path("vdi").c_str(), &st), 0);
  EXPECT_NE(::stat(fs.Path("pool2").c_str(), &st), 0);
  EXPECT_TRUE(FileEquals(fs.Path("full", "vm"), data));
  ASSERT_TRUE(fs.Unmount());
  r = Cli({"fsck", b});
  EXPECT_EQ(r.status, 0) << Describe(r);
}

// mount(8) with the fstab "fuse" type and the daemon named by path: the
// daemon daemonizes (no -f) and is no child of the test; its exit is seen
// when it releases BACKING/lock.
TEST(CliTest, MountDashTFuseWorksLikeFstab) {
  MountedFs fs;
  ASSERT_TRUE(fs.formatted());
  struct Guard {
    const MountedFs& fs;
    bool active = true;  // until umount succeeded
    ~Guard() {
      if (!active) return;
      if (IsMounted(fs.mnt())) {
        RunCommand({"umount", "-l", fs.mnt()}, std::chrono::seconds(30));
        ADD_FAILURE() << "left mounted by mount(8); lazily unmounted";
      }
      WaitUntil([&] { return !BackingLocked(fs.backing()); }, std::chrono::seconds(60));
    }
  } guard{fs};
  CommandResult r = RunCommand({"mount", "-t", "fuse", std::string(CHAINSWAPFS_BIN) + "#" + fs.backing(), fs.mnt(),
                                "-o", "allow_other"},
                               std::chrono::seconds(30));
  ASSERT_EQ(r.status, 0) << Describe(r);
  ASSERT_TRUE(WaitUntil([&] { return IsMounted(fs.mnt()); }, std::chrono::seconds(10)));
  {
    std::ifstream mounts("/proc/self/mounts");
    std::string dev, dir, type, rest;
    bool found = false;
    while (mounts >> dev >> dir >> type && std::getline(mounts, rest)) {
      if (dir != fs.mnt()) continue;
      found = true;
      EXPECT_EQ(type, "fuse.chainswapfs");
      EXPECT_EQ(dev, fs.backing());
      EXPECT_NE(rest.find("allow_other"), std::string::npos) << rest;
    }
    EXPECT_TRUE(found) << fs.mnt() << " not in /proc/self/mounts";
  }
  EXPECT_TRUE(BackingLocked(fs.backing()));
  ASSERT_TRUE(fs.MakeChain("pool"));
  const auto data = MakeData(502, 3 * kMiB + 100);
  ASSERT_TRUE(WriteFile(fs.Path("pool", "vm01.vswp"), 0, data));
  EXPECT_TRUE(FileEquals(fs.Path("pool", "vm01.vswp"), data));
  EXPECT_TRUE(FileEquals(fs.Path("pool", "vm01.vswp"), data, false));

  r = RunCommand({"umount", fs.mnt()}, std::chrono::seconds(60));
  EXPECT_EQ(r.status, 0) << Describe(r);
  EXPECT_FALSE(IsMounted(fs.mnt()));
  // The daemon destages, releases its lock and exits.
  ASSERT_TRUE(WaitUntil([&] { return !BackingLocked(fs.backing()); })) << "the daemon never exited after umount";
  guard.active = IsMounted(fs.mnt());
  r = Cli({"fsck", fs.backing()});
  EXPECT_EQ(r.status, 0) << Describe(r);
  ASSERT_TRUE(fs.Mount());
  EXPECT_TRUE(FileEquals(fs.Path("pool", "vm01.vswp"), data));
}

}  // namespace
}  // namespace chainswap::mounttest
