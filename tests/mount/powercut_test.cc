// Power-cut simulation for the fsync guarantee (SPEC §5 "Crash safety":
// every write acknowledged before an fsync that returned reads back exactly
// after a power cut).
//
// The daemon runs with tests/powercut/sync_shadow.cc preloaded (LD_PRELOAD,
// through the environment; see that file for the exact model). The shim
// keeps a shadow copy of the backing directory holding only what a power cut
// would leave: each file's content as of the start of its last
// fsync/fdatasync that returned 0, names as of their directory's last fsync (or the file's own fsync, as Linux
// journaling filesystems do), unlinks and renames at once. "Cutting the
// power" = kill -9 of the daemon, lazy unmount, then the backing directory
// is replaced by the shadow (SQLite's -shm dropped: it is rebuilt at open)
// and mounted again: replay runs on exactly what was synced.
//
// Model per swap file: `durable` = the file as of its last fsync that
// returned (every byte guaranteed); `pending` = every op since (writes,
// punches, truncates, acknowledged or in flight) — after the cut each byte
// those ops touched may hold the durable value or a value one of them put
// there, and the size may be any size the file had since that fsync
// (between the smallest and largest for the buffered file, whose pages the
// kernel writes back in its own order). Bytes no pending op touched must be
// exactly the durable ones. After each check, what was read becomes the new
// durable state (it is what the backing directory holds now).
//
// The seed is printed; CHAINSWAP_TEST_SEED=<seed> repeats a run,
// CHAINSWAP_POWERCUT_CYCLES=<n> sets the number of cuts (soaks),
// CHAINSWAP_SHADOW_NAMES=strict uses POSIX directory semantics (a new file
// is not named after a cut unless its directory was fsynced),
// CHAINSWAP_SHADOW_VERBOSE=1 logs every modelled sync into the daemon log,
// CHAINSWAP_POWERCUT_SYNC_DELAY_US=<us> sets how long each journal fdatasync
// takes in ConcurrentFsyncsLoseNoFsyncedWrite (default 20 ms).
//
// ConcurrentFsyncsLoseNoFsyncedWrite: several threads write and fsync at
// once; for each thread, what it wrote before an fsync that returned 0 must
// survive. FailedJournalSyncFailsEveryLaterFsyncUntilRemount: the shim fails
// the journal's fdatasync; every later fsync of that mount must fail too.
#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/mount/extra_util.h"
#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

using extra::RawFd;

using extra::kMaxWrite;
using extra::kSpan;
constexpr int kDefaultCycles = 8;

int Cycles() {
  if (const char* s = std::getenv("CHAINSWAP_POWERCUT_CYCLES"); s && *s) return std::max(1, std::atoi(s));
  return kDefaultCycles;
}

// One op since the last fsync of a file.
struct Op {
  enum Kind { kWrite, kZero, kTruncate } kind;
  uint64_t off = 0;  // kTruncate: the new size
  uint64_t len = 0;
  std::vector<uint8_t> data;  // kWrite
};

struct PcFile {
  std::string name;
  bool direct = false;
  FileModel durable;             // as of the last fsync that returned
  FileModel current;             // every op applied: what reads show while mounted
  std::vector<Op> pending;       // ops since that fsync
  std::vector<uint64_t> sizes;   // sizes the file had since that fsync
  RawFd fd;

  void Apply(Op op) {
    switch (op.kind) {
      case Op::kWrite: current.Write(op.off, op.data); break;
      case Op::kZero: current.Zero(op.off, op.len, /*keep_size=*/true); break;
      case Op::kTruncate: current.Truncate(op.off); break;
    }
    sizes.push_back(current.size());
    pending.push_back(std::move(op));
  }
  // An fsync of this file returned: everything before it is durable.
  void Synced() {
    durable = current;
    pending.clear();
    sizes = {durable.size()};
  }
  void Adopt(const std::vector<uint8_t>& bytes) {
    durable = current = extra::ModelOf(bytes);
    pending.clear();
    sizes = {durable.size()};
  }
};

// The daemon's options in a cycle (one backing directory throughout):
// frequent sealing and retirement, or a journal that stays; fsyncs made
// durable by destage (fsync_destage= small) or always by a journal sync;
// writes destaged at once, after the default write-back delay, or only when
// something waits for them; new blocks compressed into shared pack pages
// (compress=lz4) or raw.
std::vector<std::string> OptionsFor(int cycle) {
  switch (cycle % 5) {
    case 0: return {"idle_seal_ms=1", "bucket_size=8M", "fsync_destage=off", "destage_delay=0", "compress=lz4"};
    // Writes destaged only at half the journal or for an fsync by destage.
    case 1: return {"bucket_size=8M", "journal_limit=16M", "fsync_destage=64K", "destage_delay=60000"};
    case 2: return {};
    case 3: return {"idle_seal_ms=2000", "bucket_size=32M", "fsync_destage=4K", "compress=lz4"};  // fsyncs seal and destage
    default: return {"idle_seal_ms=2000", "bucket_size=32M", "fsync_destage=off"};  // the journal stays a while
  }
}

struct Figures {
  int cuts = 0, mid_stream = 0, after_drain = 0;
  uint64_t guaranteed_bytes = 0;  // checked against the durable state
  uint64_t uncertain_bytes = 0;   // touched by unsynced ops: old or new accepted
  uint64_t pending_ops = 0;       // unsynced ops at the cuts
};

class PowerCutTest : public extra::DaemonTest {
 protected:
  std::string Shadow() { return fs().dir() + "/shadow"; }
  std::string PathOf(const PcFile& f) { return fs().Path("pool", f.name); }

  ::testing::AssertionResult Shell(const std::vector<std::string>& argv) {
    CommandResult r = RunCommand(argv, std::chrono::seconds(120));
    if (r.status != 0) {
      std::string cmd;
      for (const auto& a : argv) cmd += a + " ";
      return ::testing::AssertionFailure() << cmd << ": " << extra::Describe(r);
    }
    return ::testing::AssertionSuccess();
  }

  // The shadow starts as an exact copy of the (unmounted) backing directory:
  // all of it is durable.
  ::testing::AssertionResult ResetShadow() {
    if (auto r = Shell({"rm", "-rf", Shadow()}); !r) return r;
    return Shell({"cp", "-a", "--sparse=always", fs().backing(), Shadow()});
  }

  std::vector<std::string> ShimEnv() {
    std::string preload = CHAINSWAP_SYNC_SHADOW_LIB;
    if (const char* p = std::getenv("LD_PRELOAD"); p && *p) preload = std::string(p) + ":" + preload;
    std::vector<std::string> env = {"LD_PRELOAD=" + preload, "CHAINSWAP_SHADOW_BACKING=" + fs().backing(),
                                    "CHAINSWAP_SHADOW_DIR=" + Shadow()};
    const char* names = std::getenv("CHAINSWAP_SHADOW_NAMES");
    env.push_back(std::string("CHAINSWAP_SHADOW_NAMES=") + (names && *names ? names : "linux"));
    if (const char* v = std::getenv("CHAINSWAP_SHADOW_VERBOSE"); v && *v) env.push_back("CHAINSWAP_SHADOW_VERBOSE=1");
    env.insert(env.end(), shim_extra_env_.begin(), shim_extra_env_.end());
    // An ASan daemon refuses a preloaded library ahead of its runtime; the
    // shim is not instrumented and only calls libc, so the order is harmless.
    if (std::string(CHAINSWAP_SANITIZE_MODE) == "address") {
      const char* a = std::getenv("ASAN_OPTIONS");
      env.push_back(std::string("ASAN_OPTIONS=") + (a && *a ? std::string(a) + ":" : "") +
                    "verify_asan_link_order=0");
    }
    return env;
  }

  // Starts the daemon with the shim and checks that the shim is loaded.
  ::testing::AssertionResult Start(const std::vector<std::string>& opts) {
    daemon().SetExtraEnv(ShimEnv());
    if (auto r = daemon().Start(opts); !r) return r;
    std::ifstream maps("/proc/" + std::to_string(daemon().pid()) + "/maps");
    std::string line;
    const std::string lib = std::filesystem::path(CHAINSWAP_SYNC_SHADOW_LIB).filename();
    while (std::getline(maps, line))
      if (line.find(lib) != std::string::npos) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "the sync_shadow shim (" << CHAINSWAP_SYNC_SHADOW_LIB
                                         << ") is not loaded in chainswapfs: the power cut would not be simulated";
  }

  // kill -9, then the backing directory becomes what the shadow held, and
  // the shadow a fresh copy of that (for the next run of the daemon).
  // Descriptors on the dead mount stay open until the caller resets them
  // (a writer thread may still be using them).
  ::testing::AssertionResult PowerCut() {
    if (auto r = daemon().Kill9(); !r) return r;
    const std::string b = fs().backing();
    if (auto r = Shell({"rm", "-rf", b}); !r) return r;
    if (auto r = Shell({"cp", "-a", "--sparse=always", Shadow(), b}); !r) return r;
    // SQLite rebuilds the shared-memory index from the WAL at open; the
    // shim's own bookkeeping is not part of the backing directory.
    if (auto r = Shell({"rm", "-rf", b + "/catalog.db-shm", b + "/.pending", b + "/.failed"}); !r) return r;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(b, ec))  // a copy the kill interrupted
      if (e.path().filename().string().rfind(".tmp-", 0) == 0) std::filesystem::remove(e.path(), ec);
    if (const char* keep = std::getenv("CHAINSWAP_POWERCUT_KEEP"); keep && *keep) {
      Shell({"rm", "-rf", std::string(keep) + "/cut-" + std::to_string(figures_.cuts)});
      Shell({"mkdir", "-p", keep});
      Shell({"cp", "-a", "--sparse=always", b, std::string(keep) + "/cut-" + std::to_string(figures_.cuts)});
    }
    ++figures_.cuts;
    return ResetShadow();
  }

  void OpenAll() {
    for (auto& f : files_) {
      f.fd = RawFd::Open(PathOf(f), O_CREAT | O_RDWR | (f.direct ? O_DIRECT : 0));
      ASSERT_TRUE(f.fd.ok()) << "open " << PathOf(f) << ": " << ErrnoName(errno);
    }
  }

  void Fsync(PcFile& f) {
    if (rng_() % 2) ASSERT_TRUE(Succeeds(::fsync(f.fd.get()))) << "fsync " << f.name;
    else ASSERT_TRUE(Succeeds(::fdatasync(f.fd.get()))) << "fdatasync " << f.name;
    f.Synced();
  }

  // One random op on a random file; sometimes an fsync after it.
  void RandomOp() {
    PcFile& f = files_[rng_() % files_.size()];
    const unsigned kind = rng_() % 100;
    if (kind < 60) {
      auto [off, len] = extra::RandomRange(rng_, kSpan, kMaxWrite);
      auto data = extra::RandomBytes(rng_, len);
      std::memcpy(buf_.data(), data.data(), len);
      ssize_t n = ::pwrite(f.fd.get(), buf_.data(), len, static_cast<off_t>(off));
      ASSERT_EQ(n, static_cast<ssize_t>(len)) << "pwrite " << f.name << " " << len << " at " << off << ": "
                                               << ErrnoName(errno);
      f.Apply({Op::kWrite, off, len, std::move(data)});
    } else if (kind < 82) {
      auto [off, len] = extra::RandomRange(rng_, kSpan, 512 * kKiB);
      ASSERT_TRUE(Succeeds(::fallocate(f.fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                       static_cast<off_t>(off), static_cast<off_t>(len))))
          << "punch " << f.name << " " << len << " at " << off;
      f.Apply({Op::kZero, off, len, {}});
    } else if (kind < 92) {
      uint64_t size = rng_() % (kSpan + 1);
      if (rng_() % 2) size &= ~(kBlock - 1);
      ASSERT_TRUE(Succeeds(::ftruncate(f.fd.get(), static_cast<off_t>(size)))) << "truncate " << f.name;
      f.Apply({Op::kTruncate, size, 0, {}});
    } else if (!f.direct) {
      // close: acknowledged for kill -9, not durable: stays pending.
      ASSERT_EQ(f.fd.Close(), 0) << "close " << f.name << ": " << ErrnoName(errno);
      f.fd = RawFd::Open(PathOf(f), O_RDWR);
      ASSERT_TRUE(f.fd.ok()) << "reopen " << f.name;
    }
    if (rng_() % 6 == 0) Fsync(f);
  }

  // Checks a file read after a cut against its model, then adopts it.
  void VerifyAndAdopt(PcFile& f) {
    std::vector<uint8_t> actual;
    ASSERT_TRUE(ReadFile(PathOf(f), &actual, /*direct=*/true)) << f.name << " after the cut";
    const auto& d = f.durable.bytes();
    figures_.pending_ops += f.pending.size();
    if (f.pending.empty()) {
      ASSERT_TRUE(actual == d) << f.name << " (no unsynced op): " << extra::DescribeDiff(actual, d);
      figures_.guaranteed_bytes += d.size();
    } else {
      const uint64_t lo = *std::min_element(f.sizes.begin(), f.sizes.end());
      const uint64_t hi = *std::max_element(f.sizes.begin(), f.sizes.end());
      if (f.direct)
        ASSERT_NE(std::find(f.sizes.begin(), f.sizes.end(), actual.size()), f.sizes.end())
            << f.name << ": size " << actual.size() << " is none of the sizes it had since its last fsync (durable "
            << d.size() << ", range " << lo << ".." << hi << ")";
      else
        ASSERT_TRUE(actual.size() >= lo && actual.size() <= hi)
            << f.name << ": size " << actual.size() << " outside " << lo << ".." << hi << " since its last fsync";
      // Blocks each pending op may have changed.
      const uint64_t nblocks = (std::max<uint64_t>(hi, actual.size()) + kBlock - 1) / kBlock;
      std::vector<std::vector<uint32_t>> touch(nblocks);
      for (uint32_t k = 0; k < f.pending.size(); ++k) {
        const Op& op = f.pending[k];
        uint64_t b0 = 0, b1 = 0;
        if (op.kind == Op::kTruncate) b0 = op.off / kBlock, b1 = nblocks;
        else b0 = op.off / kBlock, b1 = std::min<uint64_t>(nblocks, (op.off + op.len + kBlock - 1) / kBlock);
        for (uint64_t b = b0; b < b1; ++b) touch[b].push_back(k);
      }
      auto may_hold = [&](uint64_t i, uint8_t v, bool* touched) {
        *touched = false;
        for (uint32_t k : touch[i / kBlock]) {
          const Op& op = f.pending[k];
          if (op.kind == Op::kTruncate) {
            if (i >= op.off) {
              *touched = true;
              if (v == 0) return true;
            }
          } else if (i >= op.off && i < op.off + op.len) {
            *touched = true;
            if (v == (op.kind == Op::kWrite ? op.data[i - op.off] : 0)) return true;
          }
        }
        return false;
      };
      for (uint64_t i = 0; i < actual.size(); ++i) {
        const uint8_t base = i < d.size() ? d[i] : 0;
        bool touched = false;
        const bool by_op = may_hold(i, actual[i], &touched);
        if (!touched && i < d.size()) ++figures_.guaranteed_bytes;
        else ++figures_.uncertain_bytes;
        if (actual[i] == base || by_op) continue;
        ASSERT_TRUE(false) << f.name << ": byte " << i << " is 0x" << std::hex << int{actual[i]} << ", fsynced 0x"
                           << int{base} << std::dec << (touched ? ", and no unsynced op put that value there"
                                                                : ", and no unsynced op touched it (an fsynced byte lost)")
                           << " [" << f.pending.size() << " unsynced ops, durable size " << d.size() << "]";
      }
    }
    f.Adopt(actual);
  }

  void VerifyAll() {
    for (auto& f : files_) {
      VerifyAndAdopt(f);
      if (HasFatalFailure()) return;
    }
  }

  // After a mount: every file checked, the replayed journal destaged, the
  // catalog consistent, a read-only fsck clean.
  void CheckAfterCut() {
    VerifyAll();
    ASSERT_FALSE(HasFatalFailure());
    CheckCatalogAfterCut();
  }
  void CheckCatalogAfterCut() {
    ASSERT_TRUE(WaitUntil([&] { return extra::DestageIdle(fs().mnt()); })) << extra::DestageSummary(fs().mnt());
    EXPECT_TRUE(fs().CatalogInvariantsHold());
    CommandResult r = extra::Cli({"fsck", fs().backing(), "--read-only"});
    EXPECT_EQ(r.status, 0) << "fsck --read-only after the cut: " << extra::Describe(r);
  }

  std::mt19937_64 rng_;
  std::vector<std::string> shim_extra_env_;  // e.g. the shim's delay or failure injection
  std::vector<PcFile> files_;
  AlignedBuf buf_{kMaxWrite + kBlock};
  Figures figures_;
};

// Write, fsync, write more without fsync, cut: the fsynced bytes are exactly
// there. Nothing seals or retires buckets on its own here (idle_seal_ms is a
// minute), so nothing but the fsync made anything durable, and the unsynced
// writes are gone after the cut — which also proves the simulation drops
// what was not synced. Then the same across retirement: fsynced, destaged,
// journal deleted, cut.
TEST_F(PowerCutTest, FsyncedDataSurvivesAndUnsyncedDataIsDropped) {
  const std::vector<std::string> quiet = {"idle_seal_ms=60000", "bucket_size=64M"};
  ASSERT_TRUE(ResetShadow());
  ASSERT_TRUE(Start(quiet));
  ASSERT_TRUE(fs().MakeChain("pool"));
  files_.resize(2);
  files_[0].name = "direct.vswp";
  files_[0].direct = true;
  files_[1].name = "buffered.vswp";
  files_[1].direct = false;
  OpenAll();
  ASSERT_FALSE(HasFatalFailure());

  const auto a = MakeData(101, 1 * kMiB), b = MakeData(102, 1 * kMiB);
  // fsync makes every file's journal durable at once (the journal is
  // shared), so all fsyncs come before all unsynced writes.
  AlignedBuf big(2 * kMiB);  // a, b, then c below
  for (auto& f : files_) {
    std::memcpy(big.data(), a.data(), a.size());
    ASSERT_TRUE(PwriteAll(f.fd.get(), 0, {big.data(), a.size()}));
    ASSERT_TRUE(Succeeds(::fsync(f.fd.get()))) << f.name;
  }
  std::memcpy(big.data(), b.data(), b.size());
  for (auto& f : files_)  // over the second half of a, and past its end
    ASSERT_TRUE(PwriteAll(f.fd.get(), 512 * kKiB, {big.data(), b.size()}));
  // Through the mount, both versions are the latest one.
  std::vector<uint8_t> latest(a.begin(), a.begin() + 512 * kKiB);
  latest.insert(latest.end(), b.begin(), b.end());
  for (auto& f : files_) ASSERT_TRUE(FileEquals(PathOf(f), latest)) << f.name << " before the cut";

  ASSERT_TRUE(PowerCut());
  for (auto& f : files_) f.fd.Reset();
  ASSERT_TRUE(Start(quiet));
  for (auto& f : files_) {
    std::vector<uint8_t> got;
    ASSERT_TRUE(ReadFile(PathOf(f), &got, true));
    ASSERT_EQ(got.size(), a.size()) << f.name << ": the size as of the fsync (the unsynced growth is dropped)";
    ASSERT_TRUE(got == a) << f.name << ": fsynced data: " << extra::DescribeDiff(got, a);
  }
  EXPECT_TRUE(fs().CatalogInvariantsHold());

  // Across retirement: fsynced, destaged and retired (segments deleted after
  // the store and the catalog WAL were synced), then a cut.
  ASSERT_TRUE(daemon().Stop());
  ASSERT_TRUE(ResetShadow());
  ASSERT_TRUE(Start({"idle_seal_ms=1", "bucket_size=8M"}));
  OpenAll();
  ASSERT_FALSE(HasFatalFailure());
  const auto c = MakeData(103, 2 * kMiB);
  std::vector<uint8_t> want = a;
  want.resize(4 * kMiB);
  std::copy(c.begin(), c.end(), want.begin() + 2 * kMiB);
  std::memcpy(big.data(), c.data(), c.size());
  for (auto& f : files_) {
    ASSERT_TRUE(PwriteAll(f.fd.get(), 2 * kMiB, {big.data(), c.size()}));
    ASSERT_TRUE(Succeeds(::fdatasync(f.fd.get()))) << f.name;
  }
  ASSERT_TRUE(WaitUntil([&] { return extra::DestageIdle(fs().mnt()); })) << extra::DestageSummary(fs().mnt());
  ASSERT_TRUE(PowerCut());
  for (auto& f : files_) f.fd.Reset();
  ASSERT_TRUE(Start({}));
  for (auto& f : files_) ASSERT_TRUE(FileEquals(PathOf(f), want)) << f.name << " after a cut following retirement";
  ASSERT_TRUE(WaitUntil([&] { return extra::DestageIdle(fs().mnt()); })) << extra::DestageSummary(fs().mnt());
  EXPECT_TRUE(fs().CatalogInvariantsHold());
  ASSERT_TRUE(daemon().Stop());
  CommandResult r = extra::Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 0) << extra::Describe(r);
}

TEST_F(PowerCutTest, RandomCutsLoseNoFsyncedWrite) {
  const uint64_t seed = extra::TestSeed();
  const int cycles = Cycles();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (CHAINSWAP_TEST_SEED=" + std::to_string(seed) + " repeats this run)");
  RecordProperty("seed", std::to_string(seed));
  std::fprintf(stderr, "[ info ] PowerCutTest seed %llu, %d cycles\n", static_cast<unsigned long long>(seed), cycles);
  rng_.seed(seed);

  files_.resize(3);
  files_[0].name = "d0.vswp";
  files_[0].direct = true;
  files_[1].name = "d1.vswp";
  files_[1].direct = true;
  files_[2].name = "b0.vswp";
  files_[2].direct = false;

  ASSERT_TRUE(ResetShadow());
  ASSERT_TRUE(Start(OptionsFor(0)));
  ASSERT_TRUE(fs().MakeChain("pool"));
  OpenAll();
  ASSERT_FALSE(HasFatalFailure());
  for (auto& f : files_) {  // the chain and the files exist durably
    ASSERT_TRUE(Succeeds(::fsync(f.fd.get())));
    f.Synced();
  }

  for (int cycle = 0; cycle < cycles; ++cycle) {
    SCOPED_TRACE("cycle " + std::to_string(cycle));
    if (cycle > 0) {
      ASSERT_TRUE(Start(OptionsFor(cycle)));
      CheckAfterCut();
      ASSERT_FALSE(HasFatalFailure());
      OpenAll();
      ASSERT_FALSE(HasFatalFailure());
    }
    const int ops = 10 + static_cast<int>(rng_() % 60);
    for (int i = 0; i < ops; ++i) {
      RandomOp();
      ASSERT_FALSE(HasFatalFailure()) << "op " << i;
    }
    switch (rng_() % 4) {
      case 0:  // at once: the destagers are wherever they are
        break;
      case 1:
        std::this_thread::sleep_for(std::chrono::milliseconds(rng_() % 60));
        break;
      case 2: {  // after the journal drained (retired), plus a few unsynced ops
        ++figures_.after_drain;
        ASSERT_TRUE(WaitUntil([&] { return extra::DestageIdle(fs().mnt()); })) << extra::DestageSummary(fs().mnt());
        const int more = static_cast<int>(rng_() % 8);
        for (int i = 0; i < more; ++i) {
          RandomOp();
          ASSERT_FALSE(HasFatalFailure());
        }
        break;
      }
      default: {  // while a thread streams O_DIRECT writes and fsyncs
        ++figures_.mid_stream;
        struct StreamOp {
          int file;
          bool fsync;  // an fsync that returned
          uint64_t off;
          std::vector<uint8_t> data;
        };
        std::vector<StreamOp> done;
        std::optional<StreamOp> inflight;  // the write or fsync the cut interrupted
        std::string writer_error;
        std::atomic<bool> started{false};
        const uint64_t wseed = rng_();
        std::thread writer([&] {
          std::mt19937_64 wr(wseed);
          AlignedBuf wbuf(kMaxWrite + kBlock);
          for (int k = 0; k < 200000; ++k) {
            started = true;
            const int fi = static_cast<int>(wr() % 2);  // the O_DIRECT files
            if (wr() % 8 == 0) {
              if (::fdatasync(files_[fi].fd.get()) == 0) {
                done.push_back({fi, true, 0, {}});
                continue;
              }
              inflight = StreamOp{fi, true, 0, {}};
              return;
            }
            auto [off, len] = extra::RandomRange(wr, kSpan, kMaxWrite);
            auto data = extra::RandomBytes(wr, len);
            std::memcpy(wbuf.data(), data.data(), len);
            ssize_t n = ::pwrite(files_[fi].fd.get(), wbuf.data(), len, static_cast<off_t>(off));
            if (n == static_cast<ssize_t>(len)) {
              done.push_back({fi, false, off, std::move(data)});
              continue;
            }
            if (n < 0) inflight = StreamOp{fi, false, off, std::move(data)};
            else writer_error = "short O_DIRECT write: " + std::to_string(n) + " of " + std::to_string(len);
            return;
          }
          writer_error = "the writer ran out of ops before the cut";
        });
        while (!started) std::this_thread::yield();
        std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng_() % 150));
        auto cut = PowerCut();  // kills the daemon: the writer's next call fails
        writer.join();
        for (auto& f : files_) f.fd.Reset();
        ASSERT_TRUE(cut);
        ASSERT_TRUE(writer_error.empty()) << writer_error;
        for (auto& op : done) {
          if (op.fsync) files_[op.file].Synced();
          else files_[op.file].Apply({Op::kWrite, op.off, op.data.size(), std::move(op.data)});
        }
        // A write in flight may or may not have landed: pending either way;
        // an fsync in flight did not return: promises nothing.
        if (inflight && !inflight->fsync)
          files_[inflight->file].Apply({Op::kWrite, inflight->off, inflight->data.size(), std::move(inflight->data)});
        continue;
      }
    }
    ASSERT_TRUE(PowerCut());
    for (auto& f : files_) f.fd.Reset();
  }

  // The last cut, then a clean unmount, an offline fsck, and the data once more.
  ASSERT_TRUE(Start({}));
  CheckAfterCut();
  ASSERT_FALSE(HasFatalFailure());
  int64_t lat_expected = 0;
  for (const auto& f : files_) lat_expected += static_cast<int64_t>(f.durable.NonZeroBlocks());
  EXPECT_EQ(fs().TotalLatRows(), lat_expected);
  ASSERT_TRUE(daemon().Stop());
  CommandResult r = extra::Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 0) << extra::Describe(r);
  ASSERT_TRUE(Start({}));
  for (auto& f : files_) ASSERT_TRUE(FileEquals(PathOf(f), f.durable.bytes())) << f.name << " after a clean remount";
  std::fprintf(stderr,
               "[ info ] %d power cuts (%d mid-stream, %d after a drained journal), %llu unsynced ops at the cuts, "
               "%llu guaranteed bytes checked, %llu bytes in doubt (old or new accepted)\n",
               figures_.cuts, figures_.mid_stream, figures_.after_drain,
               static_cast<unsigned long long>(figures_.pending_ops),
               static_cast<unsigned long long>(figures_.guaranteed_bytes),
               static_cast<unsigned long long>(figures_.uncertain_bytes));
}

// ------------------------------------------------------ concurrent fsyncs

// Journal fdatasyncs in the shim sleep this long by default in
// ConcurrentFsyncsLoseNoFsyncedWrite (CHAINSWAP_POWERCUT_SYNC_DELAY_US), so
// that syncs overlap and cuts land inside them.
constexpr long kDefaultSyncDelayUs = 20000;
constexpr int kDefaultConcurrentCycles = 8;
constexpr uint64_t kConcurrentMaxWrite = 128 * kKiB;

// One writer thread's share of a file: a block-aligned byte range that only
// this thread writes (the threads sharing a file never touch each other's
// blocks, so each range has an exact model).
struct Region {
  std::string name;  // "thread N on FILE [a, b)"
  int file = 0;
  uint64_t base = 0, len = 0;
  std::vector<uint8_t> durable;  // as of this thread's last fsync that returned 0
  struct Write {
    uint64_t off;  // absolute
    std::vector<uint8_t> data;
  };
  std::vector<Write> pending;  // this thread's writes since that fsync started
  int fsyncs = 0;              // this thread's fsyncs that returned 0 since the last check
  int64_t last_fsync_us = -1;  // how long the last of them took
  bool cut_by_it = false;      // the cut was triggered by that fsync returning fast
};

// What a writer thread did before the cut.
struct ThreadLog {
  struct Step {
    bool fsync = false;
    uint64_t off = 0;
    std::vector<uint8_t> data;
    int64_t took_us = 0;  // fsync: how long it took
  };
  std::vector<Step> done;        // calls that returned success, in order
  std::optional<Step> inflight;  // the call the cut interrupted
  std::string error;             // a failure before the cut
  bool killed = false;           // this thread's last fsync returned fast and cut the power
};

// How the power is cut in one cycle of ConcurrentFsyncsLoseNoFsyncedWrite.
struct CutPlan {
  std::atomic<bool> cutting{false};  // set before the daemon is killed
  // Set: the first writer whose fsync (with writes of its own before it)
  // returns in less than `fast` kills the daemon at once (SIGKILL): such an
  // fsync did no journal fdatasync of its own (each takes the shim's delay),
  // so its writes were covered by another thread's sync, which must have
  // *returned* for them to be durable. Otherwise the main thread cuts at a
  // random moment.
  pid_t kill_on_fast_fsync = -1;
  std::chrono::microseconds fast{0};
  std::atomic<int> fast_cuts{0};
  std::atomic<int> fast_fsyncs{0};  // fsyncs after writes that returned in less than `fast`
};

// Writes and fsyncs its region of `fd` until a call fails after the cut;
// sometimes pauses between a write and the next call (so that other
// threads' fsyncs start in between).
void RunWriter(int fd, const Region& r, uint64_t seed, CutPlan* plan, ThreadLog* log) {
  std::mt19937_64 wr(seed);
  AlignedBuf wbuf(kConcurrentMaxWrite + kBlock);
  const std::atomic<bool>& cutting = plan->cutting;
  bool wrote = false;  // since this thread's last fsync
  for (int k = 0; k < 1000000; ++k) {
    if (wr() % 3 == 0) {
      const bool data_only = wr() % 2;
      const auto t0 = std::chrono::steady_clock::now();
      const int rc = data_only ? ::fdatasync(fd) : ::fsync(fd);
      const int e = errno;
      const auto took = std::chrono::steady_clock::now() - t0;
      if (rc == 0) {
        const int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(took).count();
        if (wrote && took < plan->fast) ++plan->fast_fsyncs;
        bool killed = false;
        if (plan->kill_on_fast_fsync > 0 && wrote && took < plan->fast && !plan->cutting.exchange(true)) {
          ::kill(plan->kill_on_fast_fsync, SIGKILL);
          killed = true;
          ++plan->fast_cuts;
        }
        log->done.push_back({true, 0, {}, us});
        log->killed = killed;
        wrote = false;
        continue;
      }
      if (cutting) log->inflight = ThreadLog::Step{true, 0, {}};
      else log->error = r.name + ": " + (data_only ? "fdatasync" : "fsync") + " failed before the cut: " + ErrnoName(e);
      return;
    }
    auto [off, len] = extra::RandomRange(wr, r.len, kConcurrentMaxWrite);
    off += r.base;
    auto data = extra::RandomBytes(wr, len);
    std::memcpy(wbuf.data(), data.data(), len);
    const ssize_t n = ::pwrite(fd, wbuf.data(), len, static_cast<off_t>(off));
    const int e = errno;
    if (n == static_cast<ssize_t>(len)) {
      log->done.push_back({false, off, std::move(data)});
      wrote = true;
      if (wr() % 2) std::this_thread::sleep_for(std::chrono::microseconds(wr() % 10000));
      continue;
    }
    // A cut can end a buffered write part way (the daemon died between two
    // of its FUSE requests): like a failed one, it is in flight.
    if (cutting) log->inflight = ThreadLog::Step{false, off, std::move(data)};
    else if (n >= 0) log->error = r.name + ": short write: " + std::to_string(n) + " of " + std::to_string(len);
    else log->error = r.name + ": pwrite failed before the cut: " + ErrnoName(e);
    return;
  }
  log->error = r.name + ": ran out of ops before the cut";
}

std::string Hex(uint8_t v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", v);
  return buf;
}

// Region `r` of a file read after a cut: every byte is the value it had at
// the thread's last fsync that returned 0, or one a write since then put
// there (applied in the thread's order, any of them may have landed).
::testing::AssertionResult CheckRegion(const Region& r, const std::vector<uint8_t>& actual, uint64_t* guaranteed,
                                       uint64_t* uncertain) {
  const uint64_t nblocks = (r.len + kBlock - 1) / kBlock;
  std::vector<std::vector<uint32_t>> touch(nblocks);
  for (uint32_t k = 0; k < r.pending.size(); ++k) {
    const auto& w = r.pending[k];
    for (uint64_t b = (w.off - r.base) / kBlock; b < (w.off - r.base + w.data.size() + kBlock - 1) / kBlock; ++b)
      touch[b].push_back(k);
  }
  for (uint64_t i = 0; i < r.len; ++i) {
    const uint8_t got = actual[r.base + i], base = r.durable[i];
    bool touched = false, by_write = false;
    for (uint32_t k : touch[i / kBlock]) {
      const auto& w = r.pending[k];
      const uint64_t abs = r.base + i;
      if (abs >= w.off && abs < w.off + w.data.size()) {
        touched = true;
        by_write |= w.data[abs - w.off] == got;
      }
    }
    ++*(touched ? uncertain : guaranteed);
    if (got == base || by_write) continue;
    return ::testing::AssertionFailure()
           << r.name << ": byte " << r.base + i << " reads " << Hex(got) << " after the cut; it was " << Hex(base)
           << " when this thread's last fsync that returned 0 was called, and "
           << (touched ? "none of the thread's later writes put that value there"
                       : "no later write touched it: a write acknowledged before an fsync that returned 0 is lost")
           << " [" << r.fsyncs << " fsyncs of this thread returned 0 in the cycle before the cut, the last one in "
           << r.last_fsync_us << " us" << (r.cut_by_it ? ", which cut the power as it returned" : "") << "; "
           << r.pending.size() << " writes since]";
  }
  return ::testing::AssertionSuccess();
}

// Threads write and fsync concurrently — two each on their own file (one
// O_DIRECT, one buffered) and two on one shared file (disjoint halves, one
// descriptor each) — and the power is cut at a random moment. For each
// thread, every write it issued before one of its fsyncs started must read
// back once that fsync returned 0, whatever the other threads' fsyncs were
// doing. The shim delays every fdatasync of a journal segment
// (CHAINSWAP_SHADOW_SYNC_DELAY_US) and makes a sync durable only when it
// returns 0 (as of its start), so one thread's fsync that returns while
// another thread's fdatasync of the same segment is still running is caught
// when the cut lands inside that fdatasync. One cycle in four cuts at a
// random moment (30-430 ms in); the others as soon as an fsync that follows
// writes of its thread returns in less than the delay (it did no journal
// fdatasync of its own, so its writes are durable only if a sync that
// covered them has already returned), or at a random moment 0.2-1.2 s in if
// none does. The trigger only chooses the moment; the check after the cut
// is the same.
TEST_F(PowerCutTest, ConcurrentFsyncsLoseNoFsyncedWrite) {
  const uint64_t seed = extra::TestSeed();
  int cycles = kDefaultConcurrentCycles;
  if (const char* c = std::getenv("CHAINSWAP_POWERCUT_CYCLES"); c && *c) cycles = std::max(1, std::atoi(c));
  long delay_us = kDefaultSyncDelayUs;
  if (const char* d = std::getenv("CHAINSWAP_POWERCUT_SYNC_DELAY_US"); d && *d) delay_us = std::atol(d);
  SCOPED_TRACE("seed " + std::to_string(seed) + " (CHAINSWAP_TEST_SEED=" + std::to_string(seed) + " repeats this run)");
  RecordProperty("seed", std::to_string(seed));
  std::fprintf(stderr, "[ info ] ConcurrentFsyncs seed %llu, %d cycles, journal fdatasync delay %ld us\n",
               static_cast<unsigned long long>(seed), cycles, delay_us);
  rng_.seed(seed);
  shim_extra_env_ = {"CHAINSWAP_SHADOW_SYNC_DELAY_US=" + std::to_string(delay_us)};

  struct CFile {
    std::string name;
    bool direct;
    uint64_t size;
  };
  const std::vector<CFile> cfiles = {
      {"own0.vswp", true, 2 * kMiB}, {"own1.vswp", false, 2 * kMiB}, {"shared.vswp", true, 4 * kMiB}};
  std::vector<Region> regions(4);
  const int region_file[4] = {0, 1, 2, 2};
  const uint64_t region_base[4] = {0, 0, 0, 2 * kMiB};
  for (int t = 0; t < 4; ++t) {
    Region& r = regions[t];
    r.file = region_file[t];
    r.base = region_base[t];
    r.len = 2 * kMiB;
    r.durable.assign(r.len, 0);
    r.name = "thread " + std::to_string(t) + " on " + cfiles[r.file].name + " [" + std::to_string(r.base) + ", " +
             std::to_string(r.base + r.len) + ")";
  }
  auto path = [&](int file) { return fs().Path("pool", cfiles[file].name); };

  ASSERT_TRUE(ResetShadow());
  ASSERT_TRUE(Start(OptionsFor(0)));
  ASSERT_TRUE(fs().MakeChain("pool"));
  for (int i = 0; i < 3; ++i) {  // each file exists durably at its full size, zeros
    RawFd fd = RawFd::Open(path(i), O_CREAT | O_RDWR);
    ASSERT_TRUE(fd.ok()) << path(i) << ": " << ErrnoName(errno);
    ASSERT_TRUE(Succeeds(::ftruncate(fd.get(), static_cast<off_t>(cfiles[i].size))));
    ASSERT_TRUE(Succeeds(::fsync(fd.get())));
  }

  uint64_t guaranteed = 0, uncertain = 0, returned_fsyncs = 0, inflight_fsyncs = 0, writes = 0;
  int cuts_inside_fsync = 0, fast_cuts = 0, fast_fsyncs = 0;
  int64_t fsync_us = 0;
  auto verify = [&](int cut_cycle) {
    SCOPED_TRACE("checking after the cut that ended cycle " + std::to_string(cut_cycle));
    for (int i = 0; i < 3; ++i) {
      std::vector<uint8_t> actual;
      ASSERT_TRUE(ReadFile(path(i), &actual, /*direct=*/true)) << cfiles[i].name << " after the cut";
      ASSERT_EQ(actual.size(), cfiles[i].size) << cfiles[i].name << ": no write changes the size";
      for (auto& r : regions) {
        if (r.file != i) continue;
        ASSERT_TRUE(CheckRegion(r, actual, &guaranteed, &uncertain));
        r.durable.assign(actual.begin() + static_cast<ptrdiff_t>(r.base),
                         actual.begin() + static_cast<ptrdiff_t>(r.base + r.len));
        r.pending.clear();
        r.fsyncs = 0;
        r.last_fsync_us = -1;
        r.cut_by_it = false;
      }
    }
  };

  for (int cycle = 0; cycle < cycles; ++cycle) {
    SCOPED_TRACE("cycle " + std::to_string(cycle));
    if (cycle > 0) {
      ASSERT_TRUE(Start(OptionsFor(cycle)));
      verify(cycle - 1);
      ASSERT_FALSE(HasFatalFailure());
    }
    std::vector<RawFd> fds;
    for (auto& r : regions) {
      fds.push_back(RawFd::Open(path(r.file), O_RDWR | (cfiles[r.file].direct ? O_DIRECT : 0)));
      ASSERT_TRUE(fds.back().ok()) << r.name << ": open: " << ErrnoName(errno);
    }
    std::vector<ThreadLog> logs(regions.size());
    CutPlan plan;
    uint64_t cut_after_ms = 30 + rng_() % 400;
    if (cycle % 4 != 0) {  // cut right after a suspiciously fast fsync, if there is one
      cut_after_ms = 200 + rng_() % 1000;
      plan.kill_on_fast_fsync = daemon().pid();
      plan.fast = std::chrono::microseconds(delay_us);
    }
    std::vector<std::thread> threads;
    for (size_t t = 0; t < regions.size(); ++t) {
      const uint64_t tseed = rng_();
      threads.emplace_back([&, t, tseed] { RunWriter(fds[t].get(), regions[t], tseed, &plan, &logs[t]); });
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(cut_after_ms);
    while (!plan.cutting && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    plan.cutting = true;
    auto cut = PowerCut();  // kills the daemon (if a writer has not): every thread's next call fails
    for (auto& th : threads) th.join();
    fds.clear();
    ASSERT_TRUE(cut);
    bool any_fsync_inflight = false;
    for (size_t t = 0; t < regions.size(); ++t) {
      ASSERT_TRUE(logs[t].error.empty()) << logs[t].error;
      Region& r = regions[t];
      for (auto& step : logs[t].done) {
        if (step.fsync) {  // everything this thread wrote before it is durable
          for (const auto& w : r.pending)
            std::copy(w.data.begin(), w.data.end(), r.durable.begin() + static_cast<ptrdiff_t>(w.off - r.base));
          r.pending.clear();
          ++r.fsyncs;
          r.last_fsync_us = step.took_us;
          fsync_us += step.took_us;
          ++returned_fsyncs;
        } else {
          r.pending.push_back({step.off, std::move(step.data)});
          ++writes;
        }
      }
      // A write in flight may or may not have landed; an fsync in flight
      // did not return: it promises nothing.
      r.cut_by_it = logs[t].killed;
      if (logs[t].inflight && !logs[t].inflight->fsync)
        r.pending.push_back({logs[t].inflight->off, std::move(logs[t].inflight->data)});
      if (logs[t].inflight && logs[t].inflight->fsync) {
        ++inflight_fsyncs;
        any_fsync_inflight = true;
      }
    }
    cuts_inside_fsync += any_fsync_inflight;
    fast_cuts += plan.fast_cuts;
    fast_fsyncs += plan.fast_fsyncs;
  }

  ASSERT_TRUE(Start({}));
  verify(cycles - 1);
  ASSERT_FALSE(HasFatalFailure());
  CheckCatalogAfterCut();
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(daemon().Stop());
  CommandResult r = extra::Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 0) << extra::Describe(r);
  std::fprintf(stderr,
               "[ info ] %d power cuts (%d right after a fast fsync, %d with an fsync in flight, %llu such fsyncs), "
               "%llu acknowledged writes, %llu fsyncs returned 0 (%.1f ms on average; %d of them after writes in "
               "less than the delay), %llu guaranteed bytes checked, %llu bytes in doubt (old or new accepted)\n",
               figures_.cuts, fast_cuts, cuts_inside_fsync, static_cast<unsigned long long>(inflight_fsyncs),
               static_cast<unsigned long long>(writes), static_cast<unsigned long long>(returned_fsyncs),
               returned_fsyncs ? static_cast<double>(fsync_us) / 1000.0 / static_cast<double>(returned_fsyncs) : 0.0,
               fast_fsyncs,
               static_cast<unsigned long long>(guaranteed), static_cast<unsigned long long>(uncertain));
}

// ------------------------------------------------ failed journal fdatasync

// After a failed fdatasync the kernel may have dropped the dirty pages (they
// are marked clean), so retrying it can "succeed" without the data ever
// reaching the disk. A failed fdatasync of the journal must therefore fail
// every later fsync of the mount with EIO (sticky, as PostgreSQL does since
// "fsyncgate"), while reads of acknowledged data still work; a new mount
// (after a power cut or a clean unmount) starts afresh, and what was fsynced
// before the failure reads back. The shim fails every journal fsync/fdatasync
// while the control file exists (CHAINSWAP_SHADOW_FAIL_FILE) and models the
// dropped pages (a later successful sync of that segment makes only pages
// rewritten since durable).
TEST_F(PowerCutTest, FailedJournalSyncFailsEveryLaterFsyncUntilRemount) {
  const std::string fail = fs().dir() + "/fail-journal-sync";
  shim_extra_env_ = {"CHAINSWAP_SHADOW_FAIL_FILE=" + fail};
  auto set_failing = [&](bool on) {
    if (on) std::ofstream(fail) << "journal fdatasync fails while this file exists\n";
    else std::filesystem::remove(fail);
  };
  const std::vector<std::string> quiet = {"idle_seal_ms=60000", "bucket_size=64M"};
  ASSERT_TRUE(ResetShadow());
  ASSERT_TRUE(Start(quiet));
  ASSERT_TRUE(fs().MakeChain("pool"));
  files_.resize(2);
  files_[0].name = "a.vswp";
  files_[0].direct = true;
  files_[1].name = "b.vswp";
  files_[1].direct = true;
  OpenAll();
  ASSERT_FALSE(HasFatalFailure());
  PcFile& a = files_[0];
  PcFile& b = files_[1];
  AlignedBuf buf(1 * kMiB);

  // A write, acknowledged or refused with EIO (after the failure, refusing
  // writes is allowed); returns whether it was acknowledged.
  auto write = [&](PcFile& f, uint64_t off, uint64_t seed, size_t len, bool may_fail) {
    const auto data = MakeData(seed, len);
    std::memcpy(buf.data(), data.data(), len);
    const ssize_t n = ::pwrite(f.fd.get(), buf.data(), len, static_cast<off_t>(off));
    const int e = errno;
    if (n == static_cast<ssize_t>(len)) {
      f.Apply({Op::kWrite, off, len, data});
      return true;
    }
    if (may_fail && n < 0) EXPECT_EQ(e, EIO) << f.name << ": a write after a failed journal sync: " << ErrnoName(e);
    else ADD_FAILURE() << f.name << ": pwrite of " << len << " at " << off << " returned " << n << ": " << ErrnoName(e);
    return false;
  };
  // An fsync after the failure: must fail with EIO. One that returns 0
  // promised durability, so the model takes it at its word (the check after
  // the cut then shows what that promise was worth).
  int false_successes = 0;
  auto fsync_must_fail = [&](PcFile& f, bool data_only, const std::string& when) {
    const int rc = data_only ? ::fdatasync(f.fd.get()) : ::fsync(f.fd.get());
    const int e = errno;
    if (rc == 0) {
      ADD_FAILURE() << f.name << ": " << (data_only ? "fdatasync" : "fsync") << " " << when
                    << " returned 0; after a failed fdatasync of the journal every later fsync of this mount must "
                       "fail with EIO (the failed writeback may have dropped the pages, a retry succeeds on lost data)";
      ++false_successes;
      f.Synced();
    } else {
      EXPECT_EQ(e, EIO) << f.name << ": " << (data_only ? "fdatasync" : "fsync") << " " << when;
    }
  };

  // Durable before the failure.
  ASSERT_TRUE(write(a, 0, 201, 1 * kMiB, false));
  ASSERT_TRUE(write(b, 0, 202, 1 * kMiB, false));
  for (auto* f : {&a, &b}) {
    ASSERT_TRUE(Succeeds(::fsync(f->fd.get()))) << f->name << ": fsync before any failure";
    f->Synced();
  }
  const std::vector<uint8_t> a_synced = a.durable.bytes(), b_synced = b.durable.bytes();

  // The journal's fdatasync fails once.
  ASSERT_TRUE(write(a, 1 * kMiB, 203, 1 * kMiB, false));
  set_failing(true);
  {
    const int rc = ::fsync(a.fd.get());
    const int e = errno;
    ASSERT_EQ(rc, -1) << "fsync of a.vswp while the journal's fdatasync fails returned 0";
    EXPECT_EQ(e, EIO) << "fsync of a.vswp while the journal's fdatasync fails: " << ErrnoName(e);
  }
  set_failing(false);
  // Sticky: the disk works again, yet nothing written before may be
  // reported durable, on any file (the journal is shared).
  fsync_must_fail(a, false, "after the failed one (the disk works again)");
  fsync_must_fail(b, true, "of another file after the failed journal sync");
  const bool c_acked = write(a, 2 * kMiB, 204, 1 * kMiB, true);
  const bool d_acked = write(b, 1 * kMiB, 205, 512 * kKiB, true);
  fsync_must_fail(a, true, "after a write that followed the failed sync");
  fsync_must_fail(b, false, "after a write that followed the failed sync");
  fsync_must_fail(a, false, "once more");

  // The daemon stays up and serves every acknowledged byte.
  ASSERT_EQ(::waitpid(daemon().pid(), nullptr, WNOHANG), 0) << "the daemon exited after the failed journal sync";
  for (auto* f : {&a, &b})
    EXPECT_TRUE(FileEquals(PathOf(*f), f->current.bytes())) << f->name << ": acknowledged data after the failed sync";

  // The sticky error is visible to an operator: in `chainswap stats` (the
  // published figures, rewritten every second) and in the xattr.
  std::string stats_error = "(no \"error\" in destage figures)";
  const bool in_stats = WaitUntil(
      [&] {
        CommandResult r = extra::Cli({"stats", fs().backing(), "--json"});
        const auto k = r.output.find("\"error\": \"");
        if (k == std::string::npos) return false;
        const auto end = r.output.find('"', k + 10);
        stats_error = "\"" + r.output.substr(k + 10, end - k - 10) + "\"";
        return end > k + 10;
      },
      std::chrono::seconds(3));
  auto x = extra::GetXattr(fs().mnt(), "user.chainswap.destage.error");
  const std::string xattr_error = x ? "\"" + *x + "\"" : "absent (" + ErrnoName(errno) + ")";
  std::fprintf(stderr,
               "[ info ] after the failed journal fdatasync: %d later fsync(s) returned 0; writes after it %s/%s; "
               "`chainswap stats --json` destage.error = %s; xattr user.chainswap.destage.error: %s\n",
               false_successes, c_acked ? "acknowledged" : "refused", d_acked ? "acknowledged" : "refused",
               stats_error.c_str(), xattr_error.c_str());
  RecordProperty("stats_error", stats_error);
  RecordProperty("xattr_error", xattr_error);
  EXPECT_TRUE(in_stats && stats_error.find("fdatasync") != std::string::npos)
      << "chainswap stats does not show the sticky journal error: " << stats_error;
  EXPECT_TRUE(x && x->find("fdatasync") != std::string::npos)
      << "user.chainswap.destage.error does not show the sticky journal error: " << xattr_error;

  // A power cut: the new mount starts without the sticky error, and what was
  // fsynced before the failure is there.
  ASSERT_TRUE(PowerCut());
  for (auto& f : files_) f.fd.Reset();
  ASSERT_TRUE(Start(quiet));
  for (auto [f, want] : {std::pair{&a, &a_synced}, std::pair{&b, &b_synced}}) {
    std::vector<uint8_t> got;
    ASSERT_TRUE(ReadFile(PathOf(*f), &got, /*direct=*/true));
    std::vector<uint8_t> head(got.begin(), got.begin() + static_cast<ptrdiff_t>(std::min(got.size(), want->size())));
    EXPECT_TRUE(head == *want) << f->name << ": data fsynced before the failure, after a power cut: "
                               << extra::DescribeDiff(head, *want);
  }
  // Everything else as the model allows (an fsync that returned 0 above is
  // held to its promise).
  VerifyAll();
  ASSERT_FALSE(HasFatalFailure());
  OpenAll();
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(write(a, 3 * kMiB, 206, 1 * kMiB, false));
  ASSERT_TRUE(Succeeds(::fsync(a.fd.get()))) << "fsync on a new mount after a power cut (the error is per mount)";
  a.Synced();

  // The failure once more, then a clean unmount instead of a cut.
  ASSERT_TRUE(write(b, 0, 207, 512 * kKiB, false));
  set_failing(true);
  EXPECT_TRUE(FailsWith(::fdatasync(b.fd.get()), EIO)) << "fdatasync of b.vswp while the journal's fdatasync fails";
  set_failing(false);
  fsync_must_fail(b, false, "after the failed one, second mount");
  fsync_must_fail(a, true, "of another file after the failed journal sync, second mount");
  for (auto& f : files_) f.fd.Reset();
  ASSERT_TRUE(daemon().Stop()) << "clean unmount after a failed journal sync";
  ASSERT_TRUE(Start(quiet));
  // Nothing crashed: every acknowledged byte is there, and fsync works again.
  for (auto& f : files_) EXPECT_TRUE(FileEquals(PathOf(f), f.current.bytes())) << f.name << " after a clean remount";
  {
    RawFd fd = RawFd::Open(PathOf(b), O_RDWR);
    ASSERT_TRUE(fd.ok());
    EXPECT_TRUE(Succeeds(::fsync(fd.get()))) << "fsync after a clean remount (the error is per mount)";
  }
  CheckCatalogAfterCut();
}

}  // namespace
}  // namespace chainswap::mounttest
