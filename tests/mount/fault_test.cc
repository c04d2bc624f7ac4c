// Fault injection (SPEC §5 back-pressure and crash safety, §7 reliability;
// docs/OPERATIONS.md "Capacity planning" and "After a crash"): what happens
// when the backing directory's filesystem is full or read-only, when the
// content store, the catalog or the journal is damaged while unmounted, and
// when the daemon is started on the wrong paths.
//
// Every case must end either in a clear error — the daemon or the CLI exits
// non-zero with a message naming the problem, or an I/O call fails with a
// precise errno (ENOSPC, EROFS, EIO) — or in a clean recovery, and never in
// silently wrong data: a read of a block whose data is gone must fail, not
// return other bytes. After each fault the original state is restored and
// the data must read back exactly again.
//
// The filesystem-level faults put BACKING on a small tmpfs that the test
// mounts (as root) under its temp dir: BACKING becomes a symlink to
// TMPFS/backing, so that the tmpfs can also hold a foreign "filler" file next
// to the backing directory. Every tmpfs is unmounted in TearDown, after the
// daemon has let go of it.
//
// Daemons that are expected to refuse are started by TryStart(), which tells
// a refusal (exit status and output) from a daemon that mounted after all
// (then unmounts it again at once); the fixture's Daemon runs the mounts the
// test works through.
#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/mount/extra_util.h"
#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

namespace fsys = std::filesystem;
using extra::Clock;
using extra::Cli;
using extra::DestageIdle;
using extra::DestageInt;
using extra::DestageSummary;
using extra::Describe;
using extra::RawFd;

// ------------------------------------------------------------------ helpers

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// `text` contains one of `needles` (case-insensitive).
::testing::AssertionResult MentionsAny(const std::string& text, const std::vector<std::string>& needles) {
  const std::string t = Lower(text);
  for (const auto& n : needles)
    if (t.find(Lower(n)) != std::string::npos) return ::testing::AssertionSuccess();
  auto r = ::testing::AssertionFailure() << "the message names none of {";
  for (size_t i = 0; i < needles.size(); ++i) r << (i ? ", " : "") << '"' << needles[i] << '"';
  return r << "}; it was:\n" << text;
}

std::vector<uint8_t> ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

bool WriteWhole(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(out);
}

// Overwrites `len` bytes at `off` of `path` with bytes from a seeded stream
// (in place, the file keeps its length).
::testing::AssertionResult Scribble(const std::string& path, uint64_t off, size_t len, uint64_t seed) {
  std::vector<uint8_t> junk(len);
  std::mt19937_64 rng(seed);
  for (auto& b : junk) b = static_cast<uint8_t>(rng());
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ::testing::AssertionFailure() << "open " << path << ": " << ErrnoName(errno);
  ssize_t n = ::pwrite(fd, junk.data(), len, static_cast<off_t>(off));
  int e = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(len))
    return ::testing::AssertionFailure() << "pwrite " << path << ": " << (n < 0 ? ErrnoName(e) : "short write");
  return ::testing::AssertionSuccess();
}

// "name size" of every entry under `path` (recursively); "" when absent.
std::string Listing(const std::string& path) {
  std::error_code ec;
  if (!fsys::is_directory(path, ec)) return fsys::exists(path, ec) ? "file " + std::to_string(fsys::file_size(path, ec)) : "";
  std::vector<std::string> out;
  for (auto it = fsys::recursive_directory_iterator(path, ec); !ec && it != fsys::recursive_directory_iterator();
       it.increment(ec)) {
    std::error_code ec2;
    out.push_back(it->path().string() + " " +
                  (it->is_regular_file(ec2) ? std::to_string(fsys::file_size(it->path(), ec2)) : "dir"));
  }
  std::sort(out.begin(), out.end());
  std::string s;
  for (const auto& l : out) s += l + "\n";
  return s;
}

// The mount table of this process lists `path` as a mountpoint.
bool InMountTable(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string f[5];
    for (auto& x : f) ss >> x;
    if (f[4] == path) return true;
  }
  return false;
}

// O_DIRECT pwrites of all of `data` at `off`, continuing after a short
// write (the kernel splits a large write into max_write requests; one that
// fails after others succeeded makes a short write, as on any filesystem).
// 0 or the errno; *done (if given) = the bytes written, acknowledged either way.
int DirectWrite(int fd, uint64_t off, std::span<const uint8_t> data, size_t* done = nullptr) {
  AlignedBuf buf(data.size());
  std::memcpy(buf.data(), data.data(), data.size());
  size_t pos = 0;
  int err = 0;
  while (pos < data.size()) {
    ssize_t n = ::pwrite(fd, buf.data() + pos, data.size() - pos, static_cast<off_t>(off + pos));
    if (n < 0) {
      err = errno;
      break;
    }
    if (n == 0) {
      ADD_FAILURE() << "O_DIRECT write of " << data.size() - pos << " bytes at " << off + pos << " returned 0";
      err = EIO;
      break;
    }
    pos += static_cast<size_t>(n);
  }
  if (done) *done = pos;
  return err;
}

// Block by block O_DIRECT reads of a file whose expected content is known:
// each block either reads back exactly, or fails with EIO (the data is
// known to be gone), or — the one thing that must never happen — succeeds
// with other bytes.
struct BlockReads {
  uint64_t exact = 0, eio = 0, wrong = 0, wrong_zero = 0, other = 0;
  std::string first_wrong, first_other;
  std::string Summary() const {
    return std::to_string(exact) + " exact, " + std::to_string(eio) + " EIO, " + std::to_string(wrong) +
           " WRONG (" + std::to_string(wrong_zero) + " of them all zeros" +
           (first_wrong.empty() ? "" : "; first: " + first_wrong) + "), " + std::to_string(other) +
           " other errors" + (first_other.empty() ? "" : " (first: " + first_other + ")");
  }
};

BlockReads ReadBlocks(const std::string& path, std::span<const uint8_t> expected) {
  BlockReads r;
  const uint64_t blocks = expected.size() / kBlock;
  RawFd fd = RawFd::Open(path, O_RDONLY | O_DIRECT);
  if (!fd.ok()) {
    if (errno == EIO) {
      r.eio = blocks;
    } else {
      r.other = blocks;
      r.first_other = "open " + path + ": " + ErrnoName(errno);
    }
    return r;
  }
  AlignedBuf buf(kBlock);
  for (uint64_t b = 0; b < blocks; ++b) {
    ssize_t n = ::pread(fd.get(), buf.data(), kBlock, static_cast<off_t>(b * kBlock));
    if (n == static_cast<ssize_t>(kBlock) && std::memcmp(buf.data(), expected.data() + b * kBlock, kBlock) == 0) {
      ++r.exact;
    } else if (n < 0 && errno == EIO) {
      ++r.eio;
    } else if (n < 0) {
      if (r.other++ == 0) r.first_other = "block " + std::to_string(b) + ": " + ErrnoName(errno);
    } else {
      const bool zeros = n > 0 && std::all_of(buf.data(), buf.data() + n, [](uint8_t c) { return c == 0; });
      if (zeros) ++r.wrong_zero;
      if (r.wrong++ == 0)
        r.first_wrong = path + " block " + std::to_string(b) + ": read returned " + std::to_string(n) +
                        " bytes" + (zeros ? ", all zeros" : ", other data");
    }
  }
  return r;
}

// ------------------------------------------------------------ kernel mounts

// A tmpfs mounted on `dir` (created if needed); unmounted on destruction.
class TmpfsMount {
 public:
  TmpfsMount(std::string dir, std::string size) : dir_(std::move(dir)), size_(std::move(size)) {
    ::mkdir(dir_.c_str(), 0755);
    if (::mount("chainswap-fault-test", dir_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, Data().c_str()) != 0) {
      ADD_FAILURE() << "mount -t tmpfs -o " << Data() << " " << dir_ << ": " << ErrnoName(errno);
      return;
    }
    mounted_ = true;
  }
  ~TmpfsMount() { Unmount(); }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;

  bool ok() const { return mounted_; }
  const std::string& dir() const { return dir_; }

  // mount -o remount,ro (or rw).
  ::testing::AssertionResult Remount(bool read_only) {
    unsigned long flags = MS_REMOUNT | MS_NOSUID | MS_NODEV | (read_only ? MS_RDONLY : 0);
    if (::mount("chainswap-fault-test", dir_.c_str(), "tmpfs", flags, Data().c_str()) != 0)
      return ::testing::AssertionFailure() << "mount -o remount," << (read_only ? "ro " : "rw ") << dir_ << ": "
                                           << ErrnoName(errno);
    return ::testing::AssertionSuccess();
  }

  void Unmount() {
    if (!mounted_) return;
    for (int attempt = 0; attempt < 50; ++attempt) {
      if (::umount2(dir_.c_str(), 0) == 0) {
        mounted_ = false;
        return;
      }
      if (errno != EBUSY) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "umount " << dir_ << ": " << ErrnoName(errno) << "; detaching it";
    ::umount2(dir_.c_str(), MNT_DETACH);
    mounted_ = false;
  }

 private:
  std::string Data() const { return "size=" + size_ + ",mode=0755"; }
  std::string dir_, size_;
  bool mounted_ = false;
};

// ---------------------------------------------------------- refused starts

struct StartAttempt {
  bool mounted = false;    // it mounted after all (the helper unmounted it again)
  bool timed_out = false;  // neither exited nor mounted in time (killed)
  int status = -1;         // exit status (128 + signal)
  std::string output;      // its stdout and stderr
  std::string Describe() const {
    return std::string(mounted ? "it MOUNTED; " : "") + (timed_out ? "it hung (killed); " : "") + "exit status " +
           std::to_string(status) + ", output:\n" + output;
  }
};

// Runs `chainswapfs BACKING MNT -f [-o opts]` and waits until it exits or
// mounts. A daemon that mounts is unmounted again (fusermount3 -u) and waited
// for. The output goes to `log` (truncated first).
StartAttempt TryStart(const std::string& backing, const std::string& mnt, const std::vector<std::string>& opts,
                      const std::string& log) {
  StartAttempt a;
  std::vector<std::string> argv = {CHAINSWAPFS_BIN, backing, mnt, "-f"};
  if (!opts.empty()) {
    argv.push_back("-o");
    argv.push_back(extra::JoinOptions(opts));
  }
  int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    a.output = "open " + log + ": " + ErrnoName(errno);
    return a;
  }
  pid_t pid = SpawnLogged(argv, log_fd);
  if (pid < 0) {
    a.output = "fork: " + ErrnoName(errno);
    return a;
  }
  std::error_code ec;
  const fsys::path canonical = fsys::weakly_canonical(mnt, ec);
  const std::string mnt_real = ec ? mnt : canonical.string();
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  bool exited = false;
  for (;;) {
    if (extra::WaitChild(pid, Clock::now(), &a.status)) {
      exited = true;
      break;
    }
    if (InMountTable(mnt_real)) {
      a.mounted = true;
      break;
    }
    if (Clock::now() >= deadline) {
      a.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!exited) {
    if (a.mounted) {
      for (int i = 0; i < 20 && InMountTable(mnt_real); ++i) {
        if (RunCommand({"fusermount3", "-u", mnt_real}, std::chrono::seconds(30)).status == 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      exited = extra::WaitChild(pid, Clock::now() + std::chrono::seconds(60), &a.status);
    }
    if (!exited) {
      ::kill(pid, SIGKILL);
      extra::WaitChild(pid, Clock::now() + std::chrono::seconds(10), &a.status);
    }
    if (InMountTable(mnt_real)) RunCommand({"fusermount3", "-uz", mnt_real}, std::chrono::seconds(30));
  }
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  a.output = ss.str();
  return a;
}

// ------------------------------------------------------------------ fixture

class FaultTest : public extra::DaemonTest {
 protected:
  void TearDown() override {
    // The daemon first (it holds files on the tmpfs), then the tmpfs.
    if (fs().formatted() && daemon().running()) {
      EXPECT_TRUE(daemon().Stop(std::chrono::seconds(60)));
    }
    tmpfs_.reset();
    extra::DaemonTest::TearDown();
  }

  // Moves BACKING onto a fresh tmpfs of `size` (mounted on DIR/backing-fs):
  // BACKING becomes a symlink to DIR/backing-fs/backing, formatted there.
  void BackingOnTmpfs(const std::string& size) {
    tmpfs_ = std::make_unique<TmpfsMount>(fs().dir() + "/backing-fs", size);
    ASSERT_TRUE(tmpfs_->ok());
    ASSERT_TRUE(Succeeds(::rename(fs().backing().c_str(), (fs().dir() + "/backing.unused").c_str())));
    ASSERT_TRUE(Succeeds(::symlink(BackingReal().c_str(), fs().backing().c_str())));
    CommandResult r = Cli({"format", BackingReal()});
    ASSERT_EQ(r.status, 0) << Describe(r);
  }
  std::string TmpfsDir() const { return tmpfs_->dir(); }
  std::string BackingReal() const { return tmpfs_->dir() + "/backing"; }

  StartAttempt TryStartOn(const std::string& backing, const std::string& mnt,
                          const std::vector<std::string>& opts = {}) {
    return TryStart(backing, mnt, opts, fs().dir() + "/attempt-" + std::to_string(++attempts_) + ".log");
  }
  StartAttempt TryStartHere(const std::vector<std::string>& opts = {}) {
    return TryStartOn(fs().backing(), fs().mnt(), opts);
  }

  std::string PathOf(const std::string& name) { return fs().Path("pool", name); }

  // Every file of the model reads back exactly (O_DIRECT: from the daemon).
  void VerifyAll(const char* when, bool direct = true) {
    for (const auto& [name, m] : model_) EXPECT_TRUE(FileEquals(PathOf(name), m.bytes(), direct)) << when;
  }

  // Writes `bytes` of distinct data (stream `seed`) to pool/<name> with
  // O_DIRECT in 1 MiB requests; records it in the model.
  void WriteNew(const std::string& name, uint64_t seed, uint64_t bytes) {
    const auto data = MakeData(seed, bytes);
    ASSERT_TRUE(WriteFile(PathOf(name), model_[name].size(), data, O_DIRECT));
    model_[name].Write(model_[name].size(), data);
  }

  // Non-zero blocks in the model (all test data is distinct: = PAT rows).
  int64_t ModelBlocks() const {
    int64_t n = 0;
    for (const auto& [name, m] : model_) n += static_cast<int64_t>(m.NonZeroBlocks());
    return n;
  }

  // ---- 3. content store
  // pool/a and pool/b with distinct data, cleanly unmounted; a copy of the
  // intact store kept aside.
  void SetUpStoreData() {
    ASSERT_TRUE(daemon().Start({}));
    ASSERT_TRUE(fs().MakeChain("pool"));
    WriteNew("a", 0xF0130001, 4 * kMiB);
    WriteNew("b", 0xF0130002, 2 * kMiB + 3 * kBlock);
    ASSERT_TRUE(daemon().Stop());
    saved_ = fs().dir() + "/store.saved";
    ASSERT_EQ(RunCommand({"cp", "--sparse=always", fs().store_path(), saved_}).status, 0);
  }
  void RestoreStore() {
    ASSERT_EQ(RunCommand({"cp", "--sparse=always", saved_, fs().store_path()}).status, 0);
  }
  // After a refused or failed mount: put the intact store back; the data is
  // all there again.
  void ExpectRecoveryWithTheIntactStore(const char* after) {
    ASSERT_NO_FATAL_FAILURE(RestoreStore());
    ASSERT_TRUE(daemon().Start({})) << after;
    VerifyAll(after);
    ASSERT_TRUE(daemon().Stop());
    CommandResult r = Cli({"fsck", fs().backing()});
    EXPECT_EQ(r.status, 0) << after << ": " << Describe(r);
  }
  // The daemon either refuses (non-zero, naming the content store) or mounts
  // and every block whose data is gone fails with EIO. Never other bytes.
  void ExpectNoSilentlyWrongReads(const std::string& fault) {
    StartAttempt a = TryStartHere();
    if (!a.mounted) {
      EXPECT_NE(a.status, 0) << fault << ": " << a.Describe();
      EXPECT_FALSE(a.timed_out) << fault << ": " << a.Describe();
      EXPECT_TRUE(MentionsAny(a.output, {"store.dat", "content store"})) << fault << ": the daemon's refusal";
      std::fprintf(stderr, "[ info ] %s: the daemon refuses: %s", fault.c_str(), a.output.c_str());
      return;
    }
    std::fprintf(stderr, "[ info ] %s: the daemon mounts\n", fault.c_str());
    ASSERT_TRUE(daemon().Start({})) << fault;
    for (const auto& [name, m] : model_) {
      BlockReads br = ReadBlocks(PathOf(name), m.bytes());
      EXPECT_EQ(br.wrong, 0u) << fault << ": reads of pool/" << name
                              << " whose data is gone must fail with EIO, never return other bytes: " << br.Summary();
      EXPECT_EQ(br.exact, 0u) << fault << ": pool/" << name << " cannot read back data that is gone: " << br.Summary();
      EXPECT_EQ(br.other, 0u) << fault << ": expected EIO: " << br.Summary();
    }
    ASSERT_TRUE(daemon().Stop());
  }
  std::string saved_;

  // ---- 4. catalog
  // Three files of distinct data, a clean unmount, the WAL checkpointed into
  // catalog.db (truncated to 0), and the intact catalog kept aside.
  void SetUpCatalogData() {
    ASSERT_TRUE(daemon().Start({}));
    ASSERT_TRUE(fs().MakeChain("pool"));
    for (int i = 0; i < 3; ++i) WriteNew("f" + std::to_string(i), 0xF0140000 + i, 4 * kMiB);
    // The hash index's changes are merged into hash_index by the idle
    // daemon (schema v3): wait for it, so that hash_index has leaves.
    ASSERT_TRUE(WaitUntil([&] {
      return fs().QueryInt("SELECT (SELECT count(*) FROM pat) >= 3 * 1024 AND (SELECT count(*) FROM hash_log) = 0") == 1;
    })) << fs().QueryInt("SELECT count(*) FROM pat") << " blocks, " << fs().QueryInt("SELECT count(*) FROM hash_log")
        << " changes not merged";
    ASSERT_TRUE(daemon().Stop());
    CommandResult r = RunCommand({"sqlite3", fs().catalog_path(), "pragma wal_checkpoint(truncate)"});
    ASSERT_EQ(r.status, 0) << Describe(r);
    ASSERT_TRUE(!fsys::exists(fs().catalog_path() + "-wal") || fsys::file_size(fs().catalog_path() + "-wal") == 0);
    pristine_ = ReadWhole(fs().catalog_path());
    ASSERT_GT(pristine_.size(), 16 * kBlock);
    page_size_ = static_cast<uint64_t>(fs().QueryInt("PRAGMA page_size"));
    ASSERT_EQ(page_size_, 1024u) << "catalogs are created with 1 KiB pages";
  }

  // Pages (1-based) of `table`'s B-tree leaves, from SQLite's dbstat.
  std::vector<uint64_t> LeafPages(const std::string& table) {
    CommandResult r = RunCommand({"sqlite3", "-readonly", fs().catalog_path(),
                                  "select pageno from dbstat where name = '" + table +
                                      "' and pagetype = 'leaf' order by pageno"});
    EXPECT_EQ(r.status, 0) << Describe(r);
    std::vector<uint64_t> pages;
    std::istringstream ss(r.output);
    for (uint64_t p; ss >> p;) pages.push_back(p);
    return pages;
  }

  // Overwrites the middle leaf page of `table` with random bytes, then: the
  // daemon refuses naming the catalog, or it mounts and each block reads back
  // exactly or fails with EIO; fsck reports the damage. Finally the intact
  // catalog is put back and everything reads back.
  void CorruptAndCheck(const std::string& table) {
    ASSERT_TRUE(WriteWhole(fs().catalog_path(), pristine_));
    auto pages = LeafPages(table);
    ASSERT_GE(pages.size(), 3u) << table;
    const uint64_t page = pages[pages.size() / 2];
    const std::string fault = "catalog.db page " + std::to_string(page) + " (a " + table + " leaf) overwritten";
    ASSERT_TRUE(Scribble(fs().catalog_path(), (page - 1) * page_size_, page_size_, 0xF014BAD0 + page));

    StartAttempt a = TryStartHere();
    if (!a.mounted) {
      EXPECT_NE(a.status, 0) << fault << ": " << a.Describe();
      EXPECT_FALSE(a.timed_out) << fault << ": " << a.Describe();
      EXPECT_TRUE(MentionsAny(a.output, {"catalog"})) << fault << ": the daemon's refusal must name the catalog";
      std::fprintf(stderr, "[ info ] %s: the daemon refuses: %s", fault.c_str(), a.output.c_str());
    } else {
      std::fprintf(stderr, "[ info ] %s: the daemon mounts\n", fault.c_str());
      ASSERT_TRUE(daemon().Start({})) << fault;
      BlockReads all;
      for (const auto& [name, m] : model_) {
        BlockReads br = ReadBlocks(PathOf(name), m.bytes());
        EXPECT_EQ(br.wrong, 0u) << fault << ": pool/" << name << ": " << br.Summary();
        EXPECT_EQ(br.other, 0u) << fault << ": pool/" << name << " (expected EIO): " << br.Summary();
        all.exact += br.exact;
        all.eio += br.eio;
      }
      std::fprintf(stderr, "[ info ] %s: %llu blocks exact, %llu EIO\n", fault.c_str(),
                   static_cast<unsigned long long>(all.exact), static_cast<unsigned long long>(all.eio));
      ASSERT_TRUE(daemon().Stop()) << fault;
    }
    CommandResult r = Cli({"fsck", fs().backing()});
    EXPECT_TRUE(r.status == 4 || r.status == 8) << fault << ": fsck must report it: " << Describe(r);
    EXPECT_TRUE(MentionsAny(r.output, {"catalog", "malformed", "corrupt"})) << fault << ": fsck";

    ASSERT_TRUE(WriteWhole(fs().catalog_path(), pristine_));
    ASSERT_TRUE(daemon().Start({})) << "intact catalog put back";
    VerifyAll("intact catalog put back");
    ASSERT_TRUE(daemon().Stop());
    RunCommand({"sqlite3", fs().catalog_path(), "pragma wal_checkpoint(truncate)"});
    pristine_ = ReadWhole(fs().catalog_path());  // the same catalog, checkpointed again
  }

  std::vector<uint8_t> pristine_;
  uint64_t page_size_ = 0;  // the catalog's, once SetUpCatalogData ran

  // ---- 6. journal
  // bucket_size=8M, and a partly filled bucket is never sealed by idling: the
  // newest bucket stays in the journal until the daemon stops.
  const std::vector<std::string> kJournalOpts = {"bucket_size=8M", "idle_seal_ms=600000"};

  std::vector<std::string> Segments() {
    std::vector<std::string> out;
    for (const auto& e : fsys::directory_iterator(fs().backing() + "/journal")) out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  // Writes `bytes` of new data to pool/<name> in 1 MiB O_DIRECT requests as
  // fast as possible, then kill -9: destage lags behind, the journal keeps
  // several segments.
  void BurstThenKill(const std::string& name, uint64_t seed, uint64_t bytes) {
    ASSERT_NO_FATAL_FAILURE(WriteNew(name, seed, bytes));
    ASSERT_TRUE(daemon().Kill9());
  }

  std::unique_ptr<TmpfsMount> tmpfs_;
  std::map<std::string, FileModel> model_;
  int attempts_ = 0;
};

// ============================================================ 1. full backing

// SPEC §5: "when the content store cannot grow (backing filesystem full ...)
// writes fail with ENOSPC and nothing already acknowledged is lost; deletes
// still proceed and give space back". OPERATIONS: chainswap keeps 64 MiB of
// the backing filesystem free for the journal and catalog.
TEST_F(FaultTest, FullBackingFilesystemFailsWritesWithEnospcAndRecoversAfterDeletes) {
  ASSERT_NO_FATAL_FAILURE(BackingOnTmpfs("160m"));
  ASSERT_TRUE(daemon().Start({}));
  const std::string mnt = fs().mnt();
  ASSERT_TRUE(fs().MakeChain("pool"));
  constexpr int kFiles = 4;
  std::vector<RawFd> fds;
  for (int i = 0; i < kFiles; ++i) {
    const std::string name = "f" + std::to_string(i);
    fds.push_back(RawFd::Open(PathOf(name), O_CREAT | O_RDWR | O_DIRECT));
    ASSERT_TRUE(fds.back().ok()) << PathOf(name) << ": " << ErrnoName(errno);
    model_[name];
  }
  std::vector<uint64_t> next_off(kFiles, 0);
  uint64_t seq = 0, acked = 0;
  // One write of new data to file `f`; 0 or its errno (anything but ENOSPC fails the test).
  auto write_new = [&](int f, uint64_t size) -> int {
    const std::string name = "f" + std::to_string(f);
    const auto data = MakeData((0xF011ull << 32) + seq++, size);
    size_t done = 0;
    int e = DirectWrite(fds[f].get(), next_off[f], data, &done);
    if (e == 0) {
      model_[name].Write(next_off[f], data);
      next_off[f] += size;
      acked += size;
    } else {
      // A short write: its first part is acknowledged (the next write to
      // this file overwrites it).
      if (done) model_[name].Write(next_off[f], std::span(data).subspan(0, done));
      EXPECT_EQ(e, ENOSPC) << "a write of new data on a filling backing filesystem failed with " << ErrnoName(e)
                           << " after " << acked << " bytes; " << DestageSummary(mnt);
    }
    return e;
  };

  // Fill: distinct data round robin, 1 MiB writes until the first ENOSPC,
  // then 4 KiB writes, until a 4 KiB write still fails once the journal is
  // destaged (the space the journal held is back then).
  int f = 0, e = 0;
  do {
    ASSERT_LT(acked, 160 * kMiB) << "no ENOSPC after writing 160 MiB of distinct data to a 160 MiB tmpfs";
    e = write_new(f, 1 * kMiB);
    f = (f + 1) % kFiles;
  } while (e == 0);
  ASSERT_EQ(e, ENOSPC);
  const uint64_t first_enospc = acked;
  for (int round = 0;; ++round) {
    ASSERT_LT(round, 64) << "the backing filesystem never stays full; " << DestageSummary(mnt);
    while ((e = write_new(f, kBlock)) == 0) f = (f + 1) % kFiles;
    ASSERT_EQ(e, ENOSPC);
    ASSERT_TRUE(WaitUntil([&] { return DestageIdle(mnt); })) << DestageSummary(mnt);
    std::this_thread::sleep_for(std::chrono::milliseconds(150));  // the daemon re-reads statvfs every 100 ms
    if ((e = write_new(f, kBlock)) == ENOSPC) break;
    ASSERT_EQ(e, 0);
  }
  struct statvfs sv;
  ASSERT_EQ(::statvfs(BackingReal().c_str(), &sv), 0);
  const uint64_t free_left = uint64_t{sv.f_bavail} * sv.f_frsize;
  std::fprintf(stderr, "[ info ] first ENOSPC after %llu MiB; %llu KiB acknowledged in all; %llu MiB of the tmpfs left free\n",
               static_cast<unsigned long long>(first_enospc / kMiB), static_cast<unsigned long long>(acked / kKiB),
               static_cast<unsigned long long>(free_left / kMiB));
  EXPECT_GE(acked, 32 * kMiB) << "ENOSPC came far earlier than the 64 MiB reserve explains";
  EXPECT_GT(DestageInt(mnt, "enospc"), 0) << DestageSummary(mnt);
  EXPECT_EQ(write_new(0, 64 * kKiB), ENOSPC) << "still full";

  VerifyAll("after filling the backing filesystem");
  EXPECT_EQ(fs().TotalPatRows(), ModelBlocks());
  EXPECT_TRUE(fs().CatalogInvariantsHold());

  // Across a remount: everything acknowledged, and still full.
  for (auto& fd : fds) fd.Reset();
  ASSERT_TRUE(daemon().Stop());
  ASSERT_TRUE(daemon().Start({}));
  VerifyAll("after a remount of the full backing filesystem");
  VerifyAll("after a remount of the full backing filesystem (buffered)", false);
  for (int i = 0; i < kFiles; ++i) {
    fds[i] = RawFd::Open(PathOf("f" + std::to_string(i)), O_RDWR | O_DIRECT);
    ASSERT_TRUE(fds[i].ok());
  }
  // Still full (the clean stop may have given back a few MiB of catalog WAL).
  {
    const uint64_t start = acked;
    while ((e = write_new(f, kBlock)) == 0) {
      f = (f + 1) % kFiles;
      ASSERT_LT(acked - start, 16 * kMiB) << "after a remount the full backing filesystem took 16 MiB more";
    }
    EXPECT_EQ(e, ENOSPC);
  }

  // Deletes at full: punch 4 MiB of f0 and unlink f1; their blocks are freed
  // and new data fits again.
  ASSERT_TRUE(Succeeds(::fallocate(fds[0].get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4 * kMiB)))
      << "punch on a full backing filesystem";
  model_["f0"].Zero(0, 4 * kMiB, true);
  fds[1].Reset();
  ASSERT_TRUE(Succeeds(::unlink(PathOf("f1").c_str()))) << "unlink on a full backing filesystem";
  model_.erase("f1");
  ASSERT_TRUE(WaitUntil([&] { return fs().TotalPatRows() == ModelBlocks(); }))
      << "PAT rows " << fs().TotalPatRows() << ", expected " << ModelBlocks() << "; " << DestageSummary(mnt);
  ASSERT_TRUE(WaitUntil([&] { return DirectWrite(fds[2].get(), next_off[2], MakeData((0xF012ull << 32) + 1, 4 * kMiB)) == 0; },
                        std::chrono::seconds(10)))
      << "a 4 MiB write still fails after 8 MiB were freed; " << DestageSummary(mnt);
  model_["f2"].Write(next_off[2], MakeData((0xF012ull << 32) + 1, 4 * kMiB));
  next_off[2] += 4 * kMiB;
  VerifyAll("after deletes and new writes");

  // A foreign file fills the backing filesystem to the last byte (chainswap's
  // reserve is gone). New data fails with ENOSPC and reads still work.
  // Deletes must need a journal record: they either go through or fail with
  // ENOSPC, nothing else. Once the filler is gone, a clean unmount (with no
  // write in between) must work, and so must the deletes and new writes.
  ASSERT_TRUE(WaitUntil([&] { return DestageIdle(mnt); })) << DestageSummary(mnt);
  const std::string filler = TmpfsDir() + "/filler";
  struct RemoveOnExit {
    std::string path;
    ~RemoveOnExit() { ::unlink(path.c_str()); }
  } remove_filler{filler};
  {
    RawFd ff = RawFd::Open(filler, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    ASSERT_TRUE(ff.ok()) << ErrnoName(errno);
    std::vector<uint8_t> chunk(1 * kMiB, 0xAB);
    uint64_t off = 0;
    for (size_t step : {size_t{1 * kMiB}, size_t{kBlock}}) {
      for (;;) {
        ssize_t n = ::pwrite(ff.get(), chunk.data(), step, static_cast<off_t>(off));
        if (n <= 0) {
          ASSERT_EQ(errno, ENOSPC) << "filler: " << ErrnoName(errno);
          break;
        }
        off += static_cast<uint64_t>(n);
      }
    }
    std::fprintf(stderr, "[ info ] filler: %llu MiB\n", static_cast<unsigned long long>(off / kMiB));
  }
  ASSERT_EQ(::statvfs(BackingReal().c_str(), &sv), 0);
  EXPECT_EQ(sv.f_bavail, 0u) << "the filler left space";
  std::this_thread::sleep_for(std::chrono::milliseconds(150));  // statvfs cache in the daemon
  int enospc_seen = 0;
  for (int i = 0; i < 8; ++i) {
    e = write_new(3, kBlock);
    if (e == ENOSPC) ++enospc_seen;
  }
  EXPECT_EQ(enospc_seen, 8) << "writes of new data on a backing filesystem with no free byte";
  VerifyAll("with the backing filesystem full to the last byte");
  const uint64_t punch_at = next_off[2] - 2 * kMiB;
  const int punch_rc = ::fallocate(fds[2].get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                   static_cast<off_t>(punch_at), 1 * kMiB);
  const int punch_errno = punch_rc == 0 ? 0 : errno;
  EXPECT_TRUE(punch_errno == 0 || punch_errno == ENOSPC)
      << "a punch with no free byte on the backing filesystem failed with " << ErrnoName(punch_errno);
  if (punch_errno == 0) model_["f2"].Zero(punch_at, 1 * kMiB, true);
  std::fprintf(stderr, "[ info ] punch with no free byte: %s\n",
               punch_errno ? ErrnoName(punch_errno).c_str() : "done");
  fds[3].Reset();
  const int unlink_rc = ::unlink(PathOf("f3").c_str());
  const int unlink_errno = unlink_rc == 0 ? 0 : errno;
  EXPECT_TRUE(unlink_errno == 0 || unlink_errno == ENOSPC)
      << "an unlink with no free byte on the backing filesystem failed with " << ErrnoName(unlink_errno);
  if (unlink_errno == 0) model_.erase("f3");
  std::fprintf(stderr, "[ info ] unlink with no free byte: %s\n",
               unlink_errno ? ErrnoName(unlink_errno).c_str() : "done");
  VerifyAll("after deletes with the backing filesystem full to the last byte");

  // The filler goes. Acknowledged deletes then give their space back, and the
  // daemon stops cleanly (destaging everything) with no write in between.
  ASSERT_TRUE(Succeeds(::unlink(filler.c_str())));
  for (auto& fd : fds) fd.Reset();
  EXPECT_TRUE(WaitUntil([&] { return fs().TotalPatRows() == ModelBlocks(); }, std::chrono::seconds(10)))
      << "acknowledged deletes did not give their space back once the backing filesystem had room again: PAT rows "
      << fs().TotalPatRows() << ", expected " << ModelBlocks() << "; " << DestageSummary(mnt);
  EXPECT_TRUE(daemon().Stop(std::chrono::seconds(30)))
      << "clean unmount after the backing filesystem was full to the last byte"
      << (punch_errno || unlink_errno ? " and a delete was refused with ENOSPC" : "");
  CommandResult r = Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 0) << Describe(r);
  ASSERT_TRUE(daemon().Start({}));
  VerifyAll("after a remount once the filler was removed");
  EXPECT_TRUE(WaitUntil([&] { return fs().TotalPatRows() == ModelBlocks(); }, std::chrono::seconds(30)))
      << "after the remount: PAT rows " << fs().TotalPatRows() << ", expected " << ModelBlocks();
  // Now the deletes (again, if refused) and new writes go through.
  {
    RawFd fd = RawFd::Open(PathOf("f2"), O_RDWR | O_DIRECT);
    ASSERT_TRUE(fd.ok());
    ASSERT_TRUE(Succeeds(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                     static_cast<off_t>(punch_at), 1 * kMiB)));
    model_["f2"].Zero(punch_at, 1 * kMiB, true);
  }
  if (model_.count("f3")) {
    ASSERT_TRUE(Succeeds(::unlink(PathOf("f3").c_str())));
    model_.erase("f3");
  }
  ASSERT_TRUE(WaitUntil([&] { return fs().TotalPatRows() == ModelBlocks(); }))
      << "PAT rows " << fs().TotalPatRows() << ", expected " << ModelBlocks() << "; " << DestageSummary(mnt);
  {
    RawFd fd = RawFd::Open(PathOf("f0"), O_RDWR | O_DIRECT);
    ASSERT_TRUE(fd.ok());
    const auto data = MakeData((0xF012ull << 32) + 2, 2 * kMiB);
    ASSERT_TRUE(WaitUntil([&] { return DirectWrite(fd.get(), 0, data) == 0; }, std::chrono::seconds(10)))
        << "writes still fail after the filler was removed; " << DestageSummary(mnt);
    model_["f0"].Write(0, data);
  }
  VerifyAll("after deletes and writes once the filler was removed");
  ASSERT_TRUE(daemon().Stop());
  r = Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 0) << Describe(r);
  ASSERT_TRUE(daemon().Start({}));
  VerifyAll("after the final remount");
  EXPECT_TRUE(fs().CatalogInvariantsHold());
}

// ======================================================= 2. read-only backing

// The backing filesystem is read-only (remounted ro while unmounted). The
// daemon may refuse to start with a message saying so, or start and serve
// reads while writes fail with EROFS; either way nothing is silently lost,
// and once the filesystem is writable again everything works.
TEST_F(FaultTest, ReadOnlyBackingFilesystemIsRefusedClearlyAndWorksAgainWhenWritable) {
  ASSERT_NO_FATAL_FAILURE(BackingOnTmpfs("128m"));
  ASSERT_TRUE(daemon().Start({}));
  ASSERT_TRUE(fs().MakeChain("pool"));
  WriteNew("a", 0xF0120001, 2 * kMiB);
  WriteNew("b", 0xF0120002, 3 * kMiB + 5 * kBlock);
  ASSERT_TRUE(daemon().Stop());

  ASSERT_TRUE(tmpfs_->Remount(true));
  // The offline tools that only read work on a read-only backing directory.
  CommandResult r = Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 0) << "fsck (which only reads) on a read-only backing filesystem: " << Describe(r)
                         << "backing directory:\n" << Listing(BackingReal());
  r = Cli({"format", TmpfsDir() + "/another"});
  EXPECT_NE(r.status, 0) << Describe(r);
  EXPECT_TRUE(MentionsAny(r.output, {"read-only", "EROFS"})) << "chainswap format on a read-only filesystem";

  StartAttempt a = TryStartHere();
  if (!a.mounted) {
    EXPECT_NE(a.status, 0) << a.Describe();
    EXPECT_FALSE(a.timed_out) << a.Describe();
    EXPECT_TRUE(MentionsAny(a.output, {"read-only", "EROFS"})) << "the daemon's refusal on a read-only backing filesystem";
    std::fprintf(stderr, "[ info ] read-only backing: the daemon refuses: %s", a.output.c_str());
  } else {
    // It serves the data read-only: reads exact, every change fails with EROFS.
    std::fprintf(stderr, "[ info ] read-only backing: the daemon mounts\n");
    ASSERT_TRUE(daemon().Start({}));
    VerifyAll("on a read-only backing filesystem");
    RawFd fd = RawFd::Open(PathOf("a"), O_RDWR | O_DIRECT);
    if (fd.ok()) {
      EXPECT_EQ(DirectWrite(fd.get(), 0, MakeData(0xF01200FF, kBlock)), EROFS);
    } else {
      EXPECT_EQ(errno, EROFS) << "open for writing";
    }
    fd.Reset();
    EXPECT_TRUE(FailsWith(::mkdir(fs().Path("pool2").c_str(), 0755), EROFS));
    VerifyAll("on a read-only backing filesystem, after refused changes");
    ASSERT_TRUE(daemon().Stop());
  }

  ASSERT_TRUE(tmpfs_->Remount(false));
  ASSERT_TRUE(daemon().Start({}));
  VerifyAll("after the backing filesystem became writable again");
  WriteNew("a", 0xF0120003, 1 * kMiB);
  VerifyAll("after a write on the writable backing filesystem");
  ASSERT_TRUE(daemon().Stop());
  r = Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 0) << Describe(r);
}

// ====================================================== 3. lost content store


// rm store.dat: the daemon must not start on nothing (nor recreate an empty
// store); fsck reports the lost store as a problem (exit 4).
TEST_F(FaultTest, DeletedContentStoreIsRefusedAndReportedByFsck) {
  ASSERT_NO_FATAL_FAILURE(SetUpStoreData());
  ASSERT_TRUE(Succeeds(::unlink(fs().store_path().c_str())));
  ASSERT_NO_FATAL_FAILURE(ExpectNoSilentlyWrongReads("store.dat deleted"));
  if (!HasFailure()) {
    EXPECT_FALSE(fsys::exists(fs().store_path())) << "a refused daemon created a new empty store.dat";
  }
  CommandResult r = Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 4) << "fsck with store.dat deleted must report problems left (exit 4): " << Describe(r);
  EXPECT_TRUE(MentionsAny(r.output, {"store.dat", "content store"})) << "fsck with store.dat deleted";
  ASSERT_NO_FATAL_FAILURE(ExpectRecoveryWithTheIntactStore("store.dat restored"));
}

// truncate -s 0 store.dat.
TEST_F(FaultTest, TruncatedContentStoreIsRefusedAndReportedByFsck) {
  ASSERT_NO_FATAL_FAILURE(SetUpStoreData());
  ASSERT_TRUE(Succeeds(::truncate(fs().store_path().c_str(), 0)));
  ASSERT_NO_FATAL_FAILURE(ExpectNoSilentlyWrongReads("store.dat truncated to 0"));
  CommandResult r = Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 4) << "fsck with store.dat truncated: " << Describe(r);
  EXPECT_TRUE(MentionsAny(r.output, {"outside_store", "beyond the store"})) << "fsck with store.dat truncated";
  ASSERT_NO_FATAL_FAILURE(ExpectRecoveryWithTheIntactStore("store.dat restored after truncation"));
}

// truncate -s 0 then truncate -s <old length>: the length is right but every
// slot is a hole. No stored block is ever all zeros (zero blocks are holes in
// the LAT, never stored), so a read of a referenced slot that finds zeros
// knows its data is gone.
TEST_F(FaultTest, ContentStoreZeroedAtItsOldLengthNeverReadsAsZeros) {
  ASSERT_NO_FATAL_FAILURE(SetUpStoreData());
  struct stat st;
  ASSERT_EQ(::stat(fs().store_path().c_str(), &st), 0);
  ASSERT_TRUE(Succeeds(::truncate(fs().store_path().c_str(), 0)));
  ASSERT_TRUE(Succeeds(::truncate(fs().store_path().c_str(), st.st_size)));
  ASSERT_NO_FATAL_FAILURE(ExpectNoSilentlyWrongReads("store.dat zeroed at its old length"));
  CommandResult r = Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 4) << "fsck with store.dat zeroed: " << Describe(r);
  EXPECT_TRUE(MentionsAny(r.output, {"hash"})) << "fsck with store.dat zeroed";
  ASSERT_NO_FATAL_FAILURE(ExpectRecoveryWithTheIntactStore("store.dat restored after zeroing"));
}

// ======================================================== 4. corrupt catalog


TEST_F(FaultTest, CorruptLatPageIsNeverServedAsWrongData) {
  ASSERT_NO_FATAL_FAILURE(SetUpCatalogData());
  ASSERT_NO_FATAL_FAILURE(CorruptAndCheck("lat"));
}

TEST_F(FaultTest, CorruptPatPageIsNeverServedAsWrongData) {
  ASSERT_NO_FATAL_FAILURE(SetUpCatalogData());
  ASSERT_NO_FATAL_FAILURE(CorruptAndCheck("pat"));
}

// The chain hash index (schema v3: hash_index) is not read at start-up: the
// daemon mounts and serves exact data (or refuses, naming the catalog), and
// fsck reports the damage.
TEST_F(FaultTest, CorruptHashIndexPageIsRefusedNamingTheCatalog) {
  ASSERT_NO_FATAL_FAILURE(SetUpCatalogData());
  ASSERT_NO_FATAL_FAILURE(CorruptAndCheck("hash_index"));
}

// ================================================ 5. schema version mismatch

TEST_F(FaultTest, NewerCatalogSchemaVersionIsRefused) {
  ASSERT_TRUE(daemon().Start({}));
  ASSERT_TRUE(fs().MakeChain("pool"));
  WriteNew("a", 0xF0150001, 1 * kMiB);
  ASSERT_TRUE(daemon().Stop());
  const int64_t version = fs().QueryInt("PRAGMA user_version");
  ASSERT_GE(version, 1);
  auto set_version = [&](int64_t v) {
    CommandResult r = RunCommand({"sqlite3", fs().catalog_path(), "pragma user_version=" + std::to_string(v)});
    ASSERT_EQ(r.status, 0) << Describe(r);
  };

  ASSERT_NO_FATAL_FAILURE(set_version(99));
  StartAttempt a = TryStartHere();
  EXPECT_FALSE(a.mounted) << a.Describe();
  EXPECT_NE(a.status, 0) << a.Describe();
  EXPECT_TRUE(MentionsAny(a.output, {"newer"})) << "user_version=99: the refusal must say the catalog is newer";
  EXPECT_TRUE(MentionsAny(a.output, {"99"})) << "user_version=99: the refusal names the version";
  EXPECT_EQ(fs().QueryInt("PRAGMA user_version"), 99) << "the refused daemon changed the schema version";
  CommandResult r = Cli({"fsck", fs().backing()});
  EXPECT_NE(r.status, 0) << Describe(r);
  EXPECT_TRUE(MentionsAny(r.output, {"newer"})) << "fsck on a newer catalog";

  ASSERT_NO_FATAL_FAILURE(set_version(0));
  a = TryStartHere();
  EXPECT_FALSE(a.mounted) << a.Describe();
  EXPECT_NE(a.status, 0) << a.Describe();
  EXPECT_TRUE(MentionsAny(a.output, {"version"})) << "user_version=0: the refusal names the schema version";

  ASSERT_NO_FATAL_FAILURE(set_version(version));
  ASSERT_TRUE(daemon().Start({}));
  VerifyAll("with the schema version restored");
}

// ========================================================= 6. damaged journal


TEST_F(FaultTest, DamageInTheMiddleIsRefusedAndATornTailIsCut) {
  ASSERT_TRUE(daemon().Start(kJournalOpts));
  ASSERT_TRUE(fs().MakeChain("pool"));
  // A journal left by a kill -9 whose oldest segment holds several records
  // (at least 3 MiB): damage at a third of it then has intact records after
  // it. Destage keeps up with the burst, so the sealed buckets are usually
  // retired already; the open one (idle_seal_ms is long) always stays.
  std::vector<std::string> segs;
  for (int attempt = 0;; ++attempt) {
    ASSERT_LT(attempt, 5) << "no journal segment of 3 MiB after a kill -9";
    ASSERT_NO_FATAL_FAILURE(BurstThenKill("f" + std::to_string(attempt), 0xF0160000 + attempt, 36 * kMiB + 5 * kBlock));
    segs = Segments();
    // A segment the catalog already marks retired (the kill came between
    // that mark and the unlink) is deleted at replay, never read: drop it,
    // as replay would, and damage a live one.
    const int64_t retired = fs().QueryInt(
        "SELECT coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'journal_retired_through'), 0)");
    while (!segs.empty() &&
           std::stoll(fsys::path(segs.front()).stem().string().substr(std::strlen("bucket-"))) <= retired) {
      fsys::remove(segs.front());
      segs.erase(segs.begin());
    }
    if (!segs.empty() && fsys::file_size(segs.front()) >= 3 * kMiB) break;
    ASSERT_TRUE(daemon().Start(kJournalOpts));
  }
  std::fprintf(stderr, "[ info ] %zu journal segments after kill -9\n", segs.size());

  // Damage in the middle of the oldest segment: 16 bytes at a third of it.
  std::map<std::string, std::vector<uint8_t>> before;
  for (const auto& s : segs) before[s] = ReadWhole(s);
  const std::string first = segs.front();
  const uint64_t at = before[first].size() / 3 / 8 * 8;
  {
    std::vector<uint8_t> damaged = before[first];
    for (uint64_t i = at; i < at + 16; ++i) damaged[i] ^= 0xFF;
    ASSERT_TRUE(WriteWhole(first, damaged));
    before[first] = damaged;
  }
  StartAttempt a = TryStartHere(kJournalOpts);
  EXPECT_FALSE(a.mounted) << "a journal damaged in the middle must not be mounted: " << a.Describe();
  EXPECT_NE(a.status, 0) << a.Describe();
  EXPECT_TRUE(MentionsAny(a.output, {"journal"})) << "the refusal must be about the journal";
  EXPECT_TRUE(MentionsAny(a.output, {fsys::path(first).filename().string()})) << "the refusal names the segment";
  std::fprintf(stderr, "[ info ] damaged journal: the daemon refuses: %s", a.output.c_str());
  EXPECT_EQ(Segments(), segs) << "the refused daemon added or removed journal segments";
  for (const auto& s : segs) EXPECT_TRUE(ReadWhole(s) == before[s]) << s << " was changed by the refused daemon";
  CommandResult r = Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 4) << Describe(r);
  EXPECT_TRUE(MentionsAny(r.output, {"journal"})) << "fsck on a journal damaged in the middle";

  // The intact segment back: everything acknowledged reads back.
  {
    std::vector<uint8_t> intact = before[first];
    for (uint64_t i = at; i < at + 16; ++i) intact[i] ^= 0xFF;
    ASSERT_TRUE(WriteWhole(first, intact));
  }
  ASSERT_TRUE(daemon().Start(kJournalOpts));
  VerifyAll("after the intact segment was put back");

  // A torn tail: garbage appended to the newest segment after a kill -9 is
  // cut off at the next mount and nothing acknowledged is lost.
  ASSERT_NO_FATAL_FAILURE(BurstThenKill("tail", 0xF0160100, 12 * kMiB + 7 * kBlock));
  segs = Segments();
  ASSERT_FALSE(segs.empty()) << "the unsealed newest bucket must still be in the journal";
  const std::string last = segs.back();
  const uint64_t last_size = fsys::file_size(last);
  {
    std::vector<uint8_t> garbage(3000);
    std::mt19937_64 rng(0xF016DEAD);
    for (auto& b : garbage) b = static_cast<uint8_t>(rng());
    std::ofstream out(last, std::ios::binary | std::ios::app);
    out.write(reinterpret_cast<const char*>(garbage.data()), static_cast<std::streamsize>(garbage.size()));
    ASSERT_TRUE(static_cast<bool>(out));
  }
  ASSERT_TRUE(daemon().Start(kJournalOpts)) << "a torn tail must not stop the mount";
  VerifyAll("after a mount with a torn journal tail");
  {
    std::error_code ec;
    const uint64_t now = fsys::file_size(last, ec);  // the daemon may have retired it already
    if (!ec) {
      EXPECT_LE(now, last_size) << "the torn tail was not cut";
    }
  }
  ASSERT_TRUE(daemon().Stop());
  r = Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 0) << Describe(r);
  ASSERT_TRUE(daemon().Start({}));
  VerifyAll("after a clean remount");
}

// ========================================================== 7. wrong paths

// chainswapfs on paths that are not what it needs: non-zero exit, one clear
// message, nothing mounted and nothing created.
TEST_F(FaultTest, WrongPathsAreRefusedWithClearMessages) {
  const std::string d = fs().dir();
  struct Case {
    std::string what, backing, mnt;
    std::vector<std::string> says;  // the message names one of these
  };
  ASSERT_TRUE(Succeeds(::mkdir((d + "/plain-dir").c_str(), 0755)));
  ASSERT_TRUE(WriteWhole(d + "/plain-dir/notes.txt", {'h', 'i', '\n'}));
  ASSERT_TRUE(Succeeds(::mkdir((d + "/fake").c_str(), 0755)));
  ASSERT_TRUE(Succeeds(::mkdir((d + "/fake/journal").c_str(), 0755)));
  ASSERT_TRUE(WriteWhole(d + "/fake/store.dat", {}));
  ASSERT_TRUE(WriteWhole(d + "/fake/catalog.db", MakeData(0xF0170001, 64 * kKiB)));
  ASSERT_TRUE(WriteWhole(d + "/a-file", {'x', '\n'}));
  const std::vector<Case> cases = {
      {"missing backing directory", d + "/no-such-backing", fs().mnt(), {"no-such-backing"}},
      {"not a chainswap directory", d + "/plain-dir", fs().mnt(), {"not a chainswap"}},
      {"catalog.db that is not a catalog", d + "/fake", fs().mnt(), {"catalog"}},
      {"backing path is a file", d + "/a-file", fs().mnt(), {"not a directory"}},
      {"missing mountpoint", fs().backing(), d + "/no-such-mnt", {"no-such-mnt"}},
      {"mountpoint is a regular file", fs().backing(), d + "/a-file", {"a-file"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const auto listing_before = Listing(c.backing);
    StartAttempt a = TryStartOn(c.backing, c.mnt);
    EXPECT_FALSE(a.mounted) << c.what << ": " << a.Describe();
    EXPECT_FALSE(a.timed_out) << c.what << ": " << a.Describe();
    EXPECT_NE(a.status, 0) << c.what << ": " << a.Describe();
    EXPECT_TRUE(MentionsAny(a.output, c.says)) << c.what;
    EXPECT_FALSE(a.output.empty()) << c.what << ": no message";
    EXPECT_EQ(Listing(c.backing), listing_before) << c.what << ": the refused daemon changed " << c.backing;
    std::fprintf(stderr, "[ info ] %s: exit %d: %s", c.what.c_str(), a.status, a.output.c_str());
  }
  EXPECT_FALSE(fsys::exists(d + "/no-such-backing"));
  EXPECT_FALSE(fsys::exists(d + "/no-such-mnt"));
  // The real backing directory still mounts.
  ASSERT_TRUE(daemon().Start({}));
}

}  // namespace
}  // namespace chainswap::mounttest
