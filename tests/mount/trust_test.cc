// Tests written after an independent check found bugs that the rest of the
// suite let through (tests/README.md, "Trust tests"). Each one drives the
// mount only through syscalls and CLI tools, as the other mounted tests do,
// and states the behaviour ext4 has:
//
//   ShortLivedChains*        chains made and removed in a loop (the same
//                            name and fresh names) while another chain's
//                            file is written and read all the time: no
//                            error anywhere, and the removed chains leave
//                            nothing in the catalog
//   OTruncTruncates*         open(O_TRUNC) in every form (O_WRONLY, O_RDWR,
//                            O_CREAT, O_DIRECT, `: >`, `cp` over a longer
//                            file, O_TRUNC then copy_file_range) empties the
//                            file, seen by the daemon, by reads and after a
//                            remount
//   ConcurrentFsyncs*        fsyncs racing from 8 threads all succeed and the
//                            data reads back (durability itself is the
//                            power-cut tests' business)
//   LookupsAndGetattrs*      stat/lookup storms on files being written; a
//                            stress for ThreadSanitizer builds
//   RmdirOfAChainWhose*      rmdir of a chain whose last file is unlinked but
//                            still open succeeds; the fd keeps working
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/mount/extra_util.h"
#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

using Clock = std::chrono::steady_clock;
using extra::RawFd;

class TrustTest : public MountTest {};

using extra::Exists;
using extra::ListDir;

// The size the daemon reports right now (statx AT_STATX_FORCE_SYNC: a
// GETATTR, not the kernel's cached inode); -1 on error.
int64_t DaemonSize(const std::string& path) {
  struct statx stx;
  if (::statx(AT_FDCWD, path.c_str(), AT_STATX_FORCE_SYNC, STATX_SIZE, &stx) != 0) return -1;
  return static_cast<int64_t>(stx.stx_size);
}
int64_t DaemonSizeOfFd(int fd) {
  struct statx stx;
  if (::statx(fd, "", AT_EMPTY_PATH | AT_STATX_FORCE_SYNC, STATX_SIZE, &stx) != 0) return -1;
  return static_cast<int64_t>(stx.stx_size);
}
int64_t FstatSize(int fd) {
  struct stat st;
  return ::fstat(fd, &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

// user.chainswap.dedup_id of a chain directory (the user-visible ID); -1
// when absent.
int64_t XattrDedupId(const std::string& chain_dir) {
  auto v = extra::GetXattr(chain_dir, "user.chainswap.dedup_id");
  return v && !v->empty() ? std::strtoll(v->c_str(), nullptr, 10) : -1;
}

// The file is exactly `want`: the size the daemon reports, stat, and the
// bytes through O_DIRECT (from the daemon) and through the page cache. The
// first difference only.
::testing::AssertionResult FileIs(const std::string& path, const std::vector<uint8_t>& want) {
  const int64_t daemon = DaemonSize(path);
  if (daemon != static_cast<int64_t>(want.size()))
    return ::testing::AssertionFailure() << path << ": the daemon reports size " << daemon
                                         << " (statx AT_STATX_FORCE_SYNC), expected " << want.size();
  if (auto r = FileEquals(path, want, /*direct=*/true); !r) return r;
  return FileEquals(path, want, /*direct=*/false);
}

std::string IdList(const std::vector<int64_t>& ids) {
  std::string out;
  for (int64_t id : ids) out += (out.empty() ? "" : ",") + std::to_string(id);
  return out.empty() ? "-1" : out;
}

// ------------------------------------------------- a long-lived writer

// Writes and reads back one file of a long-lived chain from a thread, with
// O_DIRECT (every request reaches the daemon), until stopped; fsyncs now
// and then. Keeps the model of what it wrote. Records the first error; no
// gtest calls in the thread.
class SteadyIo {
 public:
  static constexpr uint64_t kChunk = 64 * kKiB;
  static constexpr uint64_t kSlots = 32;  // the file is 2 MiB

  explicit SteadyIo(std::string path) : path_(std::move(path)) {}
  ~SteadyIo() { Stop(); }

  void Start() {
    thread_ = std::thread([this] { Run(); });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t ops() const { return ops_; }
  uint64_t errors() const { return errors_; }
  std::string first_error() {
    std::lock_guard lk(mu_);
    return first_error_;
  }
  // Only after Stop().
  const FileModel& model() const { return model_; }

 private:
  void Fail(const std::string& what) {
    ++errors_;
    std::lock_guard lk(mu_);
    if (first_error_.empty()) first_error_ = what;
  }

  void Run() {
    RawFd fd = RawFd::Open(path_, O_RDWR | O_DIRECT);
    if (!fd.ok()) return Fail("open " + path_ + ": " + ErrnoName(errno));
    AlignedBuf w(kChunk), r(kChunk);
    for (uint64_t i = 0; !stop_; ++i) {
      const uint64_t off = (i % kSlots) * kChunk;
      for (uint64_t b = 0; b < kChunk / kBlock; ++b) FillBlock(0x57EAD1000000ull + i, b, w.data() + b * kBlock);
      ssize_t n = ::pwrite(fd.get(), w.data(), kChunk, static_cast<off_t>(off));
      if (n != static_cast<ssize_t>(kChunk)) {
        Fail("write #" + std::to_string(i) + " of " + path_ + " at " + std::to_string(off) + ": " +
             (n < 0 ? ErrnoName(errno) : "short write " + std::to_string(n)));
        // Keep going: every later error is counted too.
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      model_.Write(off, {w.data(), kChunk});
      n = ::pread(fd.get(), r.data(), kChunk, static_cast<off_t>(off));
      if (n != static_cast<ssize_t>(kChunk))
        Fail("read #" + std::to_string(i) + " at " + std::to_string(off) + ": " +
             (n < 0 ? ErrnoName(errno) : "short read " + std::to_string(n)));
      else if (std::memcmp(r.data(), w.data(), kChunk) != 0)
        Fail("read #" + std::to_string(i) + " at " + std::to_string(off) + ": not the bytes just written");
      if (i % 8 == 7 && ::fsync(fd.get()) != 0) Fail("fsync after write #" + std::to_string(i) + ": " + ErrnoName(errno));
      ++ops_;
    }
    if (fd.Close() != 0) Fail("close " + path_ + ": " + ErrnoName(errno));
  }

  const std::string path_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> ops_{0}, errors_{0};
  std::mutex mu_;
  std::string first_error_;
  FileModel model_;
};

// One short-lived chain: mkdir, create a file, pwrite 8 KiB at 4096, read
// it back, then close + unlink + rmdir, or (keep_open) unlink + rmdir with
// the file still open, use the fd, close. `*dedup_id` gets the chain's ID.
::testing::AssertionResult ChainCycle(MountedFs& fs, int cycle, const std::string& name, bool keep_open,
                                      int64_t* dedup_id) {
  const std::string at = "cycle " + std::to_string(cycle) + " (chain " + name + "): ";
  const std::string dir = fs.Path(name), file = fs.Path(name, "vm.vswp");
  if (::mkdir(dir.c_str(), 0755) != 0) return ::testing::AssertionFailure() << at << "mkdir: " << ErrnoName(errno);
  *dedup_id = XattrDedupId(dir);
  if (*dedup_id < 0) return ::testing::AssertionFailure() << at << "no user.chainswap.dedup_id: " << ErrnoName(errno);
  const bool direct = cycle % 2 == 0;
  RawFd fd = RawFd::Open(file, O_CREAT | O_EXCL | O_RDWR | (direct ? O_DIRECT : 0), 0600);
  if (!fd.ok()) return ::testing::AssertionFailure() << at << "create: " << ErrnoName(errno);
  AlignedBuf w(2 * kBlock), r(3 * kBlock);
  for (uint64_t b = 0; b < 2; ++b) FillBlock(0xC4A1000000ull + static_cast<uint64_t>(cycle), b, w.data() + b * kBlock);
  std::vector<uint8_t> want(3 * kBlock, 0);
  std::memcpy(want.data() + kBlock, w.data(), 2 * kBlock);
  auto read_back = [&](const char* when) -> ::testing::AssertionResult {
    ssize_t n = ::pread(fd.get(), r.data(), 3 * kBlock, 0);
    if (n != static_cast<ssize_t>(3 * kBlock))
      return ::testing::AssertionFailure() << at << "pread " << when << ": "
                                           << (n < 0 ? ErrnoName(errno) : "read " + std::to_string(n) + " bytes, expected 12288");
    if (std::memcmp(r.data(), want.data(), want.size()) != 0)
      return ::testing::AssertionFailure() << at << "pread " << when << ": not the bytes written";
    return ::testing::AssertionSuccess();
  };
  ssize_t n = ::pwrite(fd.get(), w.data(), 2 * kBlock, static_cast<off_t>(kBlock));
  if (n != static_cast<ssize_t>(2 * kBlock))
    return ::testing::AssertionFailure() << at << "pwrite 8 KiB at 4096: "
                                         << (n < 0 ? ErrnoName(errno) : "short write " + std::to_string(n));
  if (auto rb = read_back("after the write"); !rb) return rb;
  if (FstatSize(fd.get()) != static_cast<int64_t>(3 * kBlock))
    return ::testing::AssertionFailure() << at << "fstat size " << FstatSize(fd.get()) << ", expected 12288";
  if (!keep_open && fd.Close() != 0) return ::testing::AssertionFailure() << at << "close: " << ErrnoName(errno);
  if (::unlink(file.c_str()) != 0) return ::testing::AssertionFailure() << at << "unlink: " << ErrnoName(errno);
  if (::rmdir(dir.c_str()) != 0)
    return ::testing::AssertionFailure() << at << "rmdir" << (keep_open ? " (its unlinked file still open)" : "")
                                         << ": " << ErrnoName(errno);
  if (keep_open) {
    // The unlinked file outlives its chain directory, as on ext4.
    if (auto rb = read_back("through the fd after rmdir"); !rb) return rb;
    for (uint64_t b = 0; b < 1; ++b) FillBlock(0xC4A2000000ull + static_cast<uint64_t>(cycle), b, w.data());
    n = ::pwrite(fd.get(), w.data(), kBlock, 0);
    if (n != static_cast<ssize_t>(kBlock))
      return ::testing::AssertionFailure() << at << "pwrite through the fd after rmdir: "
                                           << (n < 0 ? ErrnoName(errno) : "short write " + std::to_string(n));
    std::memcpy(want.data(), w.data(), kBlock);
    if (::fsync(fd.get()) != 0) return ::testing::AssertionFailure() << at << "fsync after rmdir: " << ErrnoName(errno);
    if (auto rb = read_back("after a write through the fd after rmdir"); !rb) return rb;
    if (fd.Close() != 0) return ::testing::AssertionFailure() << at << "close after rmdir: " << ErrnoName(errno);
  }
  return ::testing::AssertionSuccess();
}

// The body of both short-lived chain tests.
void ShortLivedChains(MountedFs& fs, bool keep_open) {
  ASSERT_TRUE(fs.MakeChain("steady"));
  const std::string steady_path = fs.Path("steady", "steady.vswp");
  ASSERT_TRUE(WriteFile(steady_path, 0, std::vector<uint8_t>(SteadyIo::kSlots * SteadyIo::kChunk, 0)));
  SteadyIo steady(steady_path);
  steady.Start();

  constexpr int kCycles = 40;
  std::vector<int64_t> removed;
  ::testing::AssertionResult loop = ::testing::AssertionSuccess();
  for (int i = 0; i < kCycles && loop; ++i) {
    // The same name every other cycle (a name freed by rmdir is taken again
    // at once), fresh names in between.
    const std::string name = i % 2 == 0 ? "short" : "short-" + std::to_string(i);
    int64_t id = -1;
    loop = ChainCycle(fs, i, name, keep_open, &id);
    if (id >= 0) removed.push_back(id);
    if (loop && steady.errors() > 0)
      loop = ::testing::AssertionFailure() << "after cycle " << i << ": the long-lived chain's I/O failed "
                                           << steady.errors() << " time(s), first: " << steady.first_error();
  }
  EXPECT_TRUE(loop) << "(" << removed.size() << " chains made so far)";
  // The removed chains leave the catalog: chain rows, files and blocks.
  const std::string ids = IdList(removed);
  auto rows = [&](const char* table) {
    return fs.QueryInt(std::string("SELECT count(*) FROM ") + table + " WHERE dedup_id IN (" + ids + ")");
  };
  if (loop) {
    EXPECT_EQ(ListDir(fs.mnt()), std::set<std::string>{"steady"});
    EXPECT_TRUE(WaitUntil([&] { return rows("chain") == 0 && rows("swap_file") == 0 && rows("pat") == 0; }))
        << "catalog rows of the removed chains (dedup IDs " << ids << "): chain " << rows("chain")
        << ", swap_file " << rows("swap_file") << ", pat " << rows("pat");
    EXPECT_TRUE(fs.CatalogInvariantsHold());
  }
  steady.Stop();
  EXPECT_EQ(steady.errors(), 0u) << "the long-lived chain's I/O failed; first error: " << steady.first_error();
  EXPECT_GT(steady.ops(), 0u) << "the long-lived chain's writer did nothing";
  // Writes to the long-lived chain still work, and everything it wrote is there.
  FileModel m = steady.model();
  m.Truncate(SteadyIo::kSlots * SteadyIo::kChunk);
  EXPECT_TRUE(FileEquals(steady_path, m.bytes(), /*direct=*/true))
      << "what the long-lived chain's writer wrote (" << steady.ops() << " writes)";
  const auto tail = MakeData(0x57EAD2, 4 * kBlock);
  const auto wrote = WriteFile(steady_path, 0, tail);
  EXPECT_TRUE(wrote) << "a write to the long-lived chain after the loop";
  if (wrote) m.Write(0, tail);
  EXPECT_TRUE(FileEquals(steady_path, m.bytes(), /*direct=*/true));
  ASSERT_TRUE(fs.Remount());
  EXPECT_TRUE(FileEquals(steady_path, m.bytes(), /*direct=*/false)) << "after a remount";
  EXPECT_EQ(ListDir(fs.mnt()), std::set<std::string>{"steady"});
}

// ===================================================================== 1

TEST_F(TrustTest, ShortLivedChainsComeAndGoWhileAnotherChainIsWritten) { ShortLivedChains(fs(), false); }

TEST_F(TrustTest, ShortLivedChainsRemovedWithTheirFileStillOpen) { ShortLivedChains(fs(), true); }

// ===================================================================== 2

// Every way of opening with O_TRUNC empties the file (the kernel passes
// O_TRUNC to the daemon's open, FUSE atomic_o_trunc): the daemon's size,
// stat, O_DIRECT and buffered reads, and after a remount.
TEST_F(TrustTest, OTruncTruncatesEveryWay) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  auto path = [&](const std::string& f) { return fs().Path("pool", f); };
  const auto old_data = MakeData(0x07A0, 16 * kBlock + 100);
  struct Case {
    std::string file, what;
    std::vector<uint8_t> want;
  };
  std::vector<Case> cases;

  // (a) open(O_WRONLY|O_TRUNC), then grown again with ftruncate: zeros.
  {
    const std::string f = path("a.vswp");
    ASSERT_TRUE(WriteFile(f, 0, old_data));
    Fd fd = Fd::Open(f, O_WRONLY | O_TRUNC);
    ASSERT_TRUE(fd.ok()) << ErrnoName(errno);
    EXPECT_EQ(FstatSize(fd.get()), 0) << "(a) fstat right after open(O_WRONLY|O_TRUNC)";
    EXPECT_EQ(DaemonSizeOfFd(fd.get()), 0) << "(a) the daemon's size right after open(O_WRONLY|O_TRUNC)";
    ASSERT_EQ(fd.Close(), 0);
    EXPECT_TRUE(FileIs(f, {})) << "(a) open(O_WRONLY|O_TRUNC)";
    ASSERT_TRUE(Succeeds(::truncate(f.c_str(), static_cast<off_t>(old_data.size()))));
    cases.push_back({"a.vswp", "(a) open(O_WRONLY|O_TRUNC) then truncate back to the old size: zeros",
                     std::vector<uint8_t>(old_data.size(), 0)});
    EXPECT_TRUE(FileIs(f, cases.back().want)) << cases.back().what;
  }
  // (b) shell redirects: `: > file` and `printf hello > file`.
  {
    const std::string f = path("b.vswp"), g = path("b2.vswp");
    ASSERT_TRUE(WriteFile(f, 0, old_data));
    ASSERT_TRUE(WriteFile(g, 0, old_data));
    CommandResult r = RunCommand({"sh", "-c", ": > '" + f + "' && printf hello > '" + g + "'"});
    ASSERT_EQ(r.status, 0) << extra::Describe(r);
    cases.push_back({"b.vswp", "(b) sh -c ': > file'", {}});
    EXPECT_TRUE(FileIs(f, {})) << cases.back().what;
    cases.push_back({"b2.vswp", "(b) sh -c 'printf hello > file'", {'h', 'e', 'l', 'l', 'o'}});
    EXPECT_TRUE(FileIs(g, cases.back().want)) << cases.back().what;
  }
  // (c) cp of a shorter file onto an existing longer one, from outside the
  // mount and from the same chain (coreutils may use copy_file_range there).
  {
    const auto longer = MakeData(0x07A1, 64 * kBlock);
    const auto shorter = MakeData(0x07A2, 10 * kBlock + 5);
    const std::string outside = fs().dir() + "/short-source.bin";
    ASSERT_TRUE(WriteFile(outside, 0, shorter));
    ASSERT_TRUE(WriteFile(path("c.vswp"), 0, longer));
    CommandResult r = RunCommand({"cp", outside, path("c.vswp")});
    ASSERT_EQ(r.status, 0) << "cp " << outside << " c.vswp: " << extra::Describe(r);
    cases.push_back({"c.vswp", "(c) cp SHORTER (outside the mount) LONGER", shorter});
    EXPECT_TRUE(FileIs(path("c.vswp"), shorter)) << cases.back().what;

    ASSERT_TRUE(WriteFile(path("c-src.vswp"), 0, shorter));
    ASSERT_TRUE(WriteFile(path("c2.vswp"), 0, longer));
    r = RunCommand({"cp", path("c-src.vswp"), path("c2.vswp")});
    ASSERT_EQ(r.status, 0) << "cp c-src.vswp c2.vswp: " << extra::Describe(r);
    cases.push_back({"c-src.vswp", "(c) the cp source", shorter});
    cases.push_back({"c2.vswp", "(c) cp SHORTER LONGER within a chain", shorter});
    EXPECT_TRUE(FileIs(path("c2.vswp"), shorter)) << cases.back().what;
  }
  // (d) open(O_RDWR|O_TRUNC), then copy_file_range from a file of the chain.
  {
    const auto src = MakeData(0x07A3, 5 * kBlock + 100);
    ASSERT_TRUE(WriteFile(path("d-src.vswp"), 0, src));
    ASSERT_TRUE(WriteFile(path("d.vswp"), 0, MakeData(0x07A4, 32 * kBlock)));
    Fd in = Fd::Open(path("d-src.vswp"), O_RDONLY);
    Fd out = Fd::Open(path("d.vswp"), O_RDWR | O_TRUNC);
    ASSERT_TRUE(in.ok() && out.ok()) << ErrnoName(errno);
    EXPECT_EQ(DaemonSizeOfFd(out.get()), 0) << "(d) the daemon's size right after open(O_RDWR|O_TRUNC)";
    loff_t oi = 0, oo = 0;
    uint64_t done = 0;
    while (done < src.size()) {
      ssize_t n = ::copy_file_range(in.get(), &oi, out.get(), &oo, src.size() - done, 0);
      ASSERT_GT(n, 0) << "(d) copy_file_range at " << done << ": " << ErrnoName(errno);
      done += static_cast<uint64_t>(n);
    }
    ASSERT_EQ(out.Close(), 0);
    cases.push_back({"d-src.vswp", "(d) the copy_file_range source", src});
    cases.push_back({"d.vswp", "(d) open(O_RDWR|O_TRUNC) then copy_file_range of a shorter file", src});
    EXPECT_TRUE(FileIs(path("d.vswp"), src)) << cases.back().what;
  }
  // (e) open(O_RDWR|O_TRUNC|O_CREAT) of an existing file, then a short write.
  {
    const std::string f = path("e.vswp");
    ASSERT_TRUE(WriteFile(f, 0, old_data));
    Fd fd = Fd::Open(f, O_RDWR | O_TRUNC | O_CREAT, 0644);
    ASSERT_TRUE(fd.ok()) << ErrnoName(errno);
    EXPECT_EQ(DaemonSizeOfFd(fd.get()), 0) << "(e) the daemon's size right after open(O_RDWR|O_TRUNC|O_CREAT)";
    const auto head = MakeData(0x07A5, kBlock);
    ASSERT_TRUE(PwriteAll(fd.get(), 0, std::span(head).subspan(0, 100)));
    ASSERT_EQ(fd.Close(), 0);
    cases.push_back({"e.vswp", "(e) open(O_RDWR|O_TRUNC|O_CREAT) of an existing file, then 100 bytes",
                     std::vector<uint8_t>(head.begin(), head.begin() + 100)});
    EXPECT_TRUE(FileIs(f, cases.back().want)) << cases.back().what;
  }
  // (f) O_TRUNC on an O_DIRECT open, then one aligned block.
  {
    const std::string f = path("f.vswp");
    ASSERT_TRUE(WriteFile(f, 0, old_data));
    Fd fd = Fd::Open(f, O_RDWR | O_DIRECT | O_TRUNC);
    ASSERT_TRUE(fd.ok()) << ErrnoName(errno);
    EXPECT_EQ(DaemonSizeOfFd(fd.get()), 0) << "(f) the daemon's size right after open(O_RDWR|O_DIRECT|O_TRUNC)";
    AlignedBuf buf(2 * kBlock);
    FillBlock(0x07A6, 0, buf.data());
    std::vector<uint8_t> block(buf.data(), buf.data() + kBlock);
    ASSERT_EQ(::pwrite(fd.get(), buf.data(), kBlock, 0), static_cast<ssize_t>(kBlock)) << ErrnoName(errno);
    std::memset(buf.data(), 0, 2 * kBlock);
    EXPECT_EQ(::pread(fd.get(), buf.data(), 2 * kBlock, 0), static_cast<ssize_t>(kBlock))
        << "(f) an O_DIRECT read of 2 blocks after O_TRUNC and a 1-block write";
    EXPECT_EQ(std::memcmp(buf.data(), block.data(), kBlock), 0);
    ASSERT_EQ(fd.Close(), 0);
    cases.push_back({"f.vswp", "(f) open(O_RDWR|O_DIRECT|O_TRUNC), then one block", block});
    EXPECT_TRUE(FileIs(f, block)) << cases.back().what;
  }
  // The catalog drops the truncated blocks: once everything acknowledged
  // is destaged (Settle), LAT rows = the non-zero blocks.
  ASSERT_TRUE(fs().Settle("pool"));
  for (const Case& c : cases) {
    const int64_t want = static_cast<int64_t>(extra::ModelOf(c.want).NonZeroBlocks());
    EXPECT_EQ(fs().LatRows("pool", c.file), want) << c.what << ": LAT rows of " << c.file;
  }
  EXPECT_TRUE(fs().CatalogInvariantsHold());
  ASSERT_TRUE(fs().Remount());
  for (const Case& c : cases) EXPECT_TRUE(FileIs(path(c.file), c.want)) << c.what << ", after a remount";
}

// ===================================================================== 3

// 8 threads each write their own file and fsync/fdatasync after every
// write, all at once (a barrier per round): every fsync returns 0 and the
// data reads back, also after a remount. Whether fsynced data reached the
// disk is the power-cut tests' business; this is a stress of racing fsyncs.
TEST_F(TrustTest, ConcurrentFsyncsAllSucceedAndTheDataReadsBack) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  constexpr int kThreads = 8;
  constexpr int kMaxRounds = 200;
  constexpr uint64_t kWrite = 16 * kKiB, kSlots = 32;
  const auto deadline = Clock::now() + std::chrono::seconds(3);
  std::vector<FileModel> models(kThreads);
  std::vector<std::string> errors(kThreads);
  std::vector<uint64_t> syncs(kThreads, 0);
  std::atomic<bool> stop{false};
  std::barrier round(kThreads, [&]() noexcept {
    if (Clock::now() >= deadline) stop = true;
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string p = fs().Path("pool", "t" + std::to_string(t) + ".vswp");
      RawFd fd = RawFd::Open(p, O_CREAT | O_RDWR, 0600);
      if (!fd.ok()) errors[t] = "create " + p + ": " + ErrnoName(errno);
      for (int i = 0; i < kMaxRounds; ++i) {
        round.arrive_and_wait();
        if (stop) break;
        if (!errors[t].empty()) continue;  // stay in the barrier's rhythm
        const auto data = MakeData(0xF5C0000 + static_cast<uint64_t>(t) * 1000 + static_cast<uint64_t>(i), kWrite);
        const uint64_t off = (static_cast<uint64_t>(i) * 7 + static_cast<uint64_t>(t)) % kSlots * kWrite;
        if (!PwriteAll(fd.get(), off, data)) {
          errors[t] = "round " + std::to_string(i) + ": pwrite: " + ErrnoName(errno);
          continue;
        }
        models[t].Write(off, data);
        const bool data_only = (i + t) % 2;
        if ((data_only ? ::fdatasync(fd.get()) : ::fsync(fd.get())) != 0) {
          errors[t] = "round " + std::to_string(i) + ": " + (data_only ? "fdatasync: " : "fsync: ") + ErrnoName(errno);
          continue;
        }
        ++syncs[t];
      }
      round.arrive_and_drop();
      if (fd.ok() && fd.Close() != 0 && errors[t].empty()) errors[t] = "close: " + ErrnoName(errno);
    });
  }
  for (auto& th : threads) th.join();
  uint64_t total = 0;
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_TRUE(errors[t].empty()) << "thread " << t << ": " << errors[t];
    EXPECT_GT(syncs[t], 0u) << "thread " << t << " never synced";
    total += syncs[t];
  }
  RecordProperty("fsyncs", std::to_string(total));
  for (int t = 0; t < kThreads; ++t) {
    const std::string p = fs().Path("pool", "t" + std::to_string(t) + ".vswp");
    EXPECT_TRUE(FileEquals(p, models[t].bytes(), /*direct=*/true)) << "thread " << t;
  }
  ASSERT_TRUE(fs().Remount());
  for (int t = 0; t < kThreads; ++t) {
    const std::string p = fs().Path("pool", "t" + std::to_string(t) + ".vswp");
    EXPECT_TRUE(FileEquals(p, models[t].bytes(), /*direct=*/false)) << "thread " << t << ", after a remount";
  }
}

// ===================================================================== 4

// Many threads stat the same files (lookups once the daemon's 1 s entry
// timeout expires, GETATTRs once the attr timeout does, forced GETATTRs
// through statx AT_STATX_FORCE_SYNC, open+fstat+close, and lookups of names
// never seen before) while another thread writes to those files. Every call
// succeeds with the right size. The daemon answering a lookup updates the
// file's cached attributes: in a ThreadSanitizer build of the suite, a
// data race there makes the daemon exit non-zero (TSan's exitcode 66),
// which the fixture's unmount check reports with the daemon log. TSan only
// sees a race between two lookups of one file that are in the daemon at
// the same time (libfuse's worker loop takes a mutex around every
// request), so the stat threads go through the files in step and the
// test runs past five expiries; it is a stress, not a proof.
TEST_F(TrustTest, LookupsAndGetattrsRaceWithWritesToTheSameFiles) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  // Each file's entry expires once a second; each expiry is a chance for
  // the stat threads' lookups of it to be in the daemon at the same time.
  // (Not 64 files or more: a TSan daemon whose destager then locks all 64
  // file stripes at once dies in TSan's deadlock detector, which allows at
  // most 64 locks held per thread.)
  constexpr int kFiles = 16, kStatThreads = 6;
  constexpr uint64_t kSize = 64 * kBlock;
  std::vector<std::string> paths;
  for (int i = 0; i < kFiles; ++i) {
    paths.push_back(fs().Path("pool", "f" + std::to_string(i) + ".vswp"));
    ASSERT_TRUE(WriteFile(paths.back(), 0, MakeData(0x100C0 + static_cast<uint64_t>(i), kSize)));
  }
  // Five expiries of the 1 s timeouts: on a loaded two-core machine, a TSan
  // build caught the race in 7 runs of 8 (in about 5 of 8 with three).
  const auto deadline = Clock::now() + std::chrono::milliseconds(5500);
  std::atomic<bool> stop{false};
  // The stat threads go through the files in step (a barrier before each
  // call): when a file's entry expires, they all look it up at once.
  std::barrier step(kStatThreads, [&]() noexcept {
    if (Clock::now() >= deadline) stop = true;
  });
  std::mutex mu;
  std::vector<std::string> errors;
  auto fail = [&](const std::string& e) {
    std::lock_guard lk(mu);
    if (errors.size() < 10) errors.push_back(e);
  };
  std::atomic<uint64_t> calls{0}, writes{0};
  std::vector<std::thread> threads;
  // The writer: whole blocks at changing offsets, never past the size.
  threads.emplace_back([&] {
    std::vector<RawFd> fds;
    for (const auto& p : paths) fds.push_back(RawFd::Open(p, O_RDWR));
    AlignedBuf buf(kBlock);
    for (uint64_t i = 0; !stop; ++i) {
      const size_t f = i % kFiles;
      FillBlock(0x100D0, i, buf.data());
      const uint64_t off = (i * 13) % (kSize / kBlock) * kBlock;
      if (::pwrite(fds[f].get(), buf.data(), kBlock, static_cast<off_t>(off)) != static_cast<ssize_t>(kBlock))
        fail("write " + paths[f] + " at " + std::to_string(off) + ": " + ErrnoName(errno));
      ++writes;
    }
  });
  for (int t = 0; t < kStatThreads; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t i = 0;; ++i) {
        step.arrive_and_wait();
        if (stop) break;
        const std::string& p = paths[i % kFiles];
        struct stat st;
        int64_t size = -1;
        switch ((i / kFiles + static_cast<uint64_t>(t)) % 4) {
          case 0:
          case 1:
            if (::stat(p.c_str(), &st) == 0) size = st.st_size;
            else fail("stat " + p + ": " + ErrnoName(errno));
            break;
          case 2: {
            RawFd fd = RawFd::Open(p, O_RDONLY);
            if (!fd.ok()) fail("open " + p + ": " + ErrnoName(errno));
            else size = FstatSize(fd.get());
            break;
          }
          default:
            size = DaemonSize(p);
            if (size < 0) fail("statx FORCE_SYNC " + p + ": " + ErrnoName(errno));
            break;
        }
        if (size >= 0 && size != static_cast<int64_t>(kSize))
          fail(p + ": size " + std::to_string(size) + ", expected " + std::to_string(kSize));
        if (i % 64 == static_cast<uint64_t>(t)) {
          // A name never seen before: a lookup the dcache cannot answer.
          const std::string missing = fs().Path("pool", "none-" + std::to_string(t) + "-" + std::to_string(i));
          if (::stat(missing.c_str(), &st) == 0 || errno != ENOENT)
            fail("stat of a missing name " + missing + ": " + (errno ? ErrnoName(errno) : "exists"));
        }
        ++calls;
      }
    });
  }
  for (size_t i = 1; i < threads.size(); ++i) threads[i].join();  // the stat threads stop at the deadline
  threads[0].join();  // the writer stops with them
  RecordProperty("stat_calls", std::to_string(calls.load()));
  EXPECT_TRUE(errors.empty()) << "first of " << errors.size() << " errors: " << (errors.empty() ? "" : errors[0]);
  EXPECT_GT(writes.load(), 0u);
  EXPECT_GT(calls.load(), 0u);
  for (const auto& p : paths) EXPECT_EQ(DaemonSize(p), static_cast<int64_t>(kSize)) << p;
}

// ===================================================================== 5

// rmdir of a chain whose last file is unlinked but still open succeeds (as
// on ext4: the directory is empty); the name can be taken by a new chain at
// once; the open fd keeps reading, writing and syncing the old file; after
// close, the old chain's file, blocks and chain row go.
TEST_F(TrustTest, RmdirOfAChainWhoseLastFileIsUnlinkedButStillOpen) {
  ASSERT_TRUE(fs().MakeChain("pool"));
  const int64_t old_id = XattrDedupId(fs().Path("pool"));
  ASSERT_GE(old_id, 0);
  const std::string file = fs().Path("pool", "vm.vswp");
  FileModel m;
  Fd fd = Fd::Open(file, O_CREAT | O_RDWR | O_DIRECT, 0600);
  ASSERT_TRUE(fd.ok()) << ErrnoName(errno);
  const auto data = MakeData(0x5D1, 16 * kBlock);
  AlignedBuf buf(32 * kBlock);
  std::memcpy(buf.data(), data.data(), data.size());
  ASSERT_TRUE(PwriteAll(fd.get(), 0, {buf.data(), data.size()}));
  m.Write(0, data);
  ASSERT_TRUE(Succeeds(::unlink(file.c_str())));
  EXPECT_TRUE(ListDir(fs().Path("pool")).empty()) << "readdir of the chain after the unlink";

  ASSERT_TRUE(Succeeds(::rmdir(fs().Path("pool").c_str())))
      << "rmdir of a chain whose only file is unlinked (but still open)";
  EXPECT_FALSE(Exists(fs().Path("pool")));
  EXPECT_TRUE(ListDir(fs().mnt()).empty());
  // The name is free at once: a new, empty chain with a new dedup ID.
  ASSERT_TRUE(fs().MakeChain("pool"));
  EXPECT_TRUE(ListDir(fs().Path("pool")).empty()) << "the new chain";
  const int64_t new_id = XattrDedupId(fs().Path("pool"));
  EXPECT_GE(new_id, 0);
  EXPECT_NE(new_id, old_id) << "the new chain must not reuse the removed chain's dedup ID";
  const auto other = MakeData(0x5D2, 4 * kBlock);
  ASSERT_TRUE(WriteFile(fs().Path("pool", "vm.vswp"), 0, other)) << "a file of the same name in the new chain";

  // The open fd still reads what was written, and takes writes and fsync.
  auto read_all = [&](const char* when) {
    std::memset(buf.data(), 0, buf.size());
    ssize_t n = ::pread(fd.get(), buf.data(), buf.size(), 0);
    ASSERT_EQ(n, static_cast<ssize_t>(m.size())) << when << ": " << ErrnoName(errno);
    EXPECT_EQ(std::memcmp(buf.data(), m.bytes().data(), m.size()), 0) << when;
  };
  read_all("read through the fd after rmdir");
  const auto more = MakeData(0x5D3, 2 * kBlock);
  std::memcpy(buf.data(), more.data(), more.size());
  ASSERT_TRUE(PwriteAll(fd.get(), 16 * kBlock, {buf.data(), more.size()})) << "a write through the fd after rmdir";
  m.Write(16 * kBlock, more);
  EXPECT_TRUE(Succeeds(::fsync(fd.get()))) << "fsync through the fd after rmdir";
  EXPECT_EQ(FstatSize(fd.get()), static_cast<int64_t>(m.size()));
  read_all("read through the fd after a write after rmdir");
  EXPECT_TRUE(FileEquals(fs().Path("pool", "vm.vswp"), other)) << "the new chain's file is a different file";
  ASSERT_EQ(fd.Close(), 0);

  // Everything of the old chain is reclaimed.
  const std::string id = std::to_string(old_id);
  auto rows = [&](const char* table) {
    return fs().QueryInt(std::string("SELECT count(*) FROM ") + table + " WHERE dedup_id = ?1", {id});
  };
  EXPECT_TRUE(WaitUntil([&] { return rows("pat") == 0 && rows("swap_file") == 0 && rows("chain") == 0; }))
      << "rows of the removed chain (dedup ID " << old_id << "): pat " << rows("pat") << ", swap_file "
      << rows("swap_file") << ", chain " << rows("chain");
  EXPECT_TRUE(WaitUntil([&] { return fs().LatRows("pool", "vm.vswp") == 4; }));
  EXPECT_TRUE(fs().CatalogInvariantsHold());
  ASSERT_TRUE(fs().Remount());
  EXPECT_EQ(ListDir(fs().mnt()), std::set<std::string>{"pool"});
  EXPECT_EQ(XattrDedupId(fs().Path("pool")), new_id);
  EXPECT_TRUE(FileEquals(fs().Path("pool", "vm.vswp"), other, /*direct=*/false)) << "after a remount";
}

}  // namespace
}  // namespace chainswap::mounttest
