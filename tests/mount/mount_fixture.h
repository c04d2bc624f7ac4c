// Mounted tests (SPEC §3-§5): a throwaway chainswap instance per test,
// exercised only through syscalls on the mountpoint, the CLI tools and
// read-only queries of the documented catalog tables. Nothing here includes
// or calls the daemon's internals, so the suite keeps its meaning while
// fs/ and destage/ change underneath it.
//
//   MountedFs        RAII: temp dir, `chainswap format`, the daemon in the
//                    foreground (fork/exec, stderr to a log), unmount and
//                    clean-up. Also remount, store/du accounting, catalog
//                    queries and the catalog invariants.
//   MountTest        gtest fixture: a fresh, mounted MountedFs per test.
//   Fd               RAII file descriptor.
//   FileModel        the expected bytes of one swap file, for comparisons.
//   MakeData()       deterministic data whose 4 KiB blocks are all distinct
//                    and non-zero.
//
// Destage is asynchronous (SPEC §5): reads must always see acknowledged data,
// but the catalog and the content store catch up in the background. Tests
// therefore *wait* (WaitUntil, bounded by a generous deadline) for a state
// the model predicts exactly, then assert on it; no sleep is an assertion and
// no test asserts on timing. Settle() is a barrier for "nothing should have
// happened" checks.
//
// Thread-safety: none; one test thread uses one MountedFs.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace chainswap::mounttest {

inline constexpr size_t kBlock = 4096;
inline constexpr uint64_t kKiB = 1024;
inline constexpr uint64_t kMiB = 1024 * 1024;

// Deadline for background work (destage, reclaim) to reach a predicted
// state. Generous: sanitizer builds run the daemon several times slower.
inline constexpr std::chrono::seconds kSettleTimeout{120};

// ---------------------------------------------------------------- data

// Fills `out` (kBlock bytes) with block `index` of stream `seed`: random
// bytes from std::mt19937_64, with (seed, index) stamped into the first 16
// bytes so that no two blocks of any streams are equal and none is zero.
void FillBlock(uint64_t seed, uint64_t index, uint8_t* out);
// `bytes` (a multiple of kBlock) of stream `seed`, blocks 0, 1, 2, ...
std::vector<uint8_t> MakeData(uint64_t seed, size_t bytes);

// ---------------------------------------------------------------- errno

// For a syscall's return value: succeeds when it is -1 with errno `expected`,
// e.g. EXPECT_TRUE(FailsWith(::mkdir(p, 0755), EPERM)). Reads errno on entry,
// so call it directly around the syscall.
::testing::AssertionResult FailsWith(long rc, int expected);
// For a syscall's return value: succeeds when it is not -1, else names errno.
::testing::AssertionResult Succeeds(long rc);
// "EPERM (Operation not permitted)".
std::string ErrnoName(int e);

// ---------------------------------------------------------------- files

// Owns a file descriptor; closes it on destruction (EXPECTs success).
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd();
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  // open(2); check ok() and errno on failure.
  static Fd Open(const std::string& path, int flags, mode_t mode = 0644);
  bool ok() const { return fd_ >= 0; }
  int get() const { return fd_; }
  // close(2) now; returns its result (0 or -1 with errno).
  int Close();

 private:
  int fd_ = -1;
};

// A heap buffer aligned to kBlock, as O_DIRECT wants.
struct AlignedBuf {
  explicit AlignedBuf(size_t n);
  ~AlignedBuf();
  AlignedBuf(const AlignedBuf&) = delete;
  AlignedBuf& operator=(const AlignedBuf&) = delete;
  uint8_t* data() { return p; }
  size_t size() const { return n; }
  uint8_t* p;
  size_t n;
};

// pwrite(2) all of `data` at `off`, looping over short writes.
::testing::AssertionResult PwriteAll(int fd, uint64_t off, std::span<const uint8_t> data);
// Opens `path` (O_CREAT|O_WRONLY plus `extra_flags`), writes `data` at `off`
// in chunks of at most `chunk` bytes, closes.
::testing::AssertionResult WriteFile(const std::string& path, uint64_t off,
                                     std::span<const uint8_t> data, int extra_flags = 0,
                                     size_t chunk = 1 * kMiB);
// Reads the whole file (its st_size) with pread. With `direct`, the file is
// opened O_DIRECT so that every byte comes from the daemon, not from the
// kernel's page cache.
::testing::AssertionResult ReadFile(const std::string& path, std::vector<uint8_t>* out,
                                    bool direct = true);
// The file's size is expected.size() and its bytes are `expected` (read in
// 1 MiB chunks, O_DIRECT with `direct`); on a mismatch, names the first
// differing offset.
::testing::AssertionResult FileEquals(const std::string& path, std::span<const uint8_t> expected,
                                      bool direct = true);

// The expected content of one swap file, byte by byte.
class FileModel {
 public:
  uint64_t size() const { return bytes_.size(); }
  const std::vector<uint8_t>& bytes() const { return bytes_; }
  void Write(uint64_t off, std::span<const uint8_t> data);
  void Zero(uint64_t off, uint64_t len, bool keep_size);  // ZERO_RANGE / PUNCH_HOLE
  void Truncate(uint64_t size);
  // Number of 4 KiB blocks (inside the size) that are not all zero.
  uint64_t NonZeroBlocks() const;
  // Adds each distinct non-zero block to `distinct` (keyed by content).
  void CollectDistinctBlocks(std::vector<std::string>* distinct) const;

 private:
  std::vector<uint8_t> bytes_;
};
// Distinct non-zero block contents across files (one chain's ideal store).
uint64_t DistinctNonZeroBlocks(const std::vector<const FileModel*>& files);

// ---------------------------------------------------------------- processes

struct CommandResult {
  int status = -1;        // exit status, or 128 + signal; -1 if it could not run
  bool timed_out = false; // killed after the timeout
  std::string output;     // stdout and stderr, interleaved
};
struct RunOptions {
  // The command runs in its own process group with no descriptor of the
  // test process beyond stdin, stdout and stderr, and the whole group is
  // killed (SIGKILL) at the timeout: for scripts that start daemons (the
  // test Ceph cluster), which must not hold the test's sockets or pipes.
  // Otherwise the command alone gets SIGTERM (a mounted daemon unmounts),
  // then SIGKILL 10 s later.
  bool own_process_group = false;
};
// Runs argv[0] (an absolute path or a name looked up in PATH) with stdin from
// /dev/null; kills it after `timeout`.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout = std::chrono::seconds(60), RunOptions options = {});
// Starts argv[0] (an absolute path) in the background: stdin /dev/null,
// stdout and stderr to `log_fd`, SIGTERM when the test process dies. `env`
// replaces the environment when given ("NAME=value" entries). Closes
// `log_fd` in the parent. Returns the child's pid, or -1 (errno set).
pid_t SpawnLogged(const std::vector<std::string>& argv, int log_fd, const std::vector<std::string>* env = nullptr);
// Runs a shell command line through popen(3) and returns its stdout.
std::optional<std::string> Popen(const std::string& command, int* status = nullptr);

// Polls `pred` every few milliseconds until it holds or `timeout` passes;
// returns the last value of `pred`. For waiting on background work only.
bool WaitUntil(const std::function<bool()>& pred,
               std::chrono::milliseconds timeout = kSettleTimeout);

// Allocated bytes of a file (st_blocks * 512), or 0 on error.
uint64_t AllocatedBytes(const std::string& path);
// `du -sk path`, in KiB; nullopt when du fails.
std::optional<uint64_t> DuKib(const std::string& path);

// ---------------------------------------------------------------- catalog

// One row of a query result; NULL columns are nullopt.
using Row = std::vector<std::optional<std::string>>;

// ---------------------------------------------------------------- mount

class MountedFs {
 public:
  // Makes a temp dir under /tmp and formats BACKING inside it (failures are
  // recorded with ADD_FAILURE; check formatted()). Does not mount.
  // `format_args` follow BACKING on the `chainswap format` command line
  // (e.g. {"--store", "rados:POOL", "--ceph-conf", CONF}).
  explicit MountedFs(std::vector<std::string> mount_options = {}, std::vector<std::string> format_args = {});
  // Unmounts if mounted (recording a failure if the daemon exits badly) and
  // removes the temp dir.
  ~MountedFs();
  MountedFs(const MountedFs&) = delete;
  MountedFs& operator=(const MountedFs&) = delete;

  bool formatted() const { return formatted_; }
  bool mounted() const { return pid_ > 0; }

  // Starts `chainswapfs BACKING MNT -f [-o opts]` and waits (10 s, or
  // set_mount_timeout()) until MNT is a different filesystem from its
  // parent. Fails with the daemon log if it does not mount or exits.
  ::testing::AssertionResult Mount();
  // How long Mount() waits for the mount (default 10 s).
  void set_mount_timeout(std::chrono::seconds t) { mount_timeout_ = t; }
  // fusermount3 -u (retried while busy, then -uz), then waits for the daemon
  // to exit. Fails unless it exits with status 0.
  ::testing::AssertionResult Unmount();
  ::testing::AssertionResult Remount();

  const std::string& dir() const { return dir_; }          // the temp dir
  const std::string& backing() const { return backing_; }  // BACKING
  const std::string& mnt() const { return mnt_; }          // MOUNTPOINT
  std::string store_path() const { return backing_ + "/store.dat"; }
  std::string catalog_path() const { return backing_ + "/catalog.db"; }
  // MNT/chain or MNT/chain/file.
  std::string Path(const std::string& chain, const std::string& file = "") const;
  // The daemon's log so far (all mounts of this instance).
  std::string DaemonLog() const;
  pid_t daemon_pid() const { return pid_; }

  // mkdir MNT/name, with a failure naming errno.
  ::testing::AssertionResult MakeChain(const std::string& name);
  // Allocated bytes of BACKING/store.dat.
  uint64_t StoreAllocated() const { return AllocatedBytes(store_path()); }

  // ---- Catalog (read-only sqlite3 connection per call) ----
  // Runs one statement with text parameters ?1, ?2, ... bound in order.
  // Failures are recorded with ADD_FAILURE and give an empty result.
  std::vector<Row> Query(const std::string& sql, const std::vector<std::string>& params = {}) const;
  // First column of the first row as an integer (-1 on error or NULL).
  int64_t QueryInt(const std::string& sql, const std::vector<std::string>& params = {}) const;
  // LAT rows of MNT/chain/file (-1 when the file is not in the catalog).
  int64_t LatRows(const std::string& chain, const std::string& file) const;
  // PAT rows (stored blocks) owned by a chain.
  int64_t PatRows(const std::string& chain) const;
  // All PAT rows, all LAT rows.
  int64_t TotalPatRows() const;
  int64_t TotalLatRows() const;
  // swap_file rows of a chain, including unlinked ones not yet reclaimed.
  int64_t FileRows(const std::string& chain) const;
  // The dedup ID of a chain in the catalog (-1 when absent).
  int64_t DedupIdOf(const std::string& chain) const;
  // In one read snapshot: every pat.refcount equals the number of LAT rows
  // pointing at it; no LAT row points at a pblock absent from the PAT or
  // belongs to a file absent from swap_file; every LAT row points at a block
  // of its own chain; no PAT block is on the free list. Lists offenders.
  ::testing::AssertionResult CatalogInvariantsHold() const;

  // Barrier (REQUIRES mounted): makes every operation acknowledged before
  // the call reach the catalog. Writes a unique block to a scratch file of
  // `chain`, waits for its LAT row, punches it, waits for the row to go,
  // unlinks the file and waits for its catalog row to go. Relies on the
  // destagers processing the journal oldest first (SPEC §5).
  ::testing::AssertionResult Settle(const std::string& chain);

 private:
  std::vector<std::string> mount_options_;
  std::chrono::seconds mount_timeout_{10};
  std::string dir_, backing_, mnt_, log_;
  bool formatted_ = false;
  pid_t pid_ = -1;
  int settle_seq_ = 0;
};

// A fresh formatted and mounted filesystem per test. Tests that need mount
// options override MountOptions(). On failure the daemon log is printed.
class MountTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  virtual std::vector<std::string> MountOptions() const { return {}; }
  MountedFs& fs() { return *fs_; }

 private:
  std::unique_ptr<MountedFs> fs_;
};

}  // namespace chainswap::mounttest
