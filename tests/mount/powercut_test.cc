// Power-cut simulation for the fsync guarantee (SPEC §5 "Crash safety":
// every write acknowledged before an fsync that returned reads back exactly
// after a power cut).
//
// The daemon runs with tests/powercut/sync_shadow.cc preloaded (LD_PRELOAD,
// through the environment; see that file for the exact model). The shim
// keeps a shadow copy of the backing directory holding only what a power cut
// would leave: each file's content as of its last fsync/fdatasync, names as
// of their directory's last fsync (or the file's own fsync, as Linux
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
// CHAINSWAP_SHADOW_VERBOSE=1 logs every modelled sync into the daemon log.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
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
// frequent sealing and retirement, or a journal that stays.
std::vector<std::string> OptionsFor(int cycle) {
  switch (cycle % 4) {
    case 0: return {"idle_seal_ms=1", "bucket_size=8M"};
    case 1: return {"bucket_size=8M", "journal_limit=16M"};
    case 2: return {};
    default: return {"idle_seal_ms=2000", "bucket_size=32M"};  // the journal stays a while
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
    if (auto r = Shell({"rm", "-rf", b + "/catalog.db-shm", b + "/.pending"}); !r) return r;
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
    ASSERT_TRUE(WaitUntil([&] { return extra::DestageIdle(fs().mnt()); })) << extra::DestageSummary(fs().mnt());
    EXPECT_TRUE(fs().CatalogInvariantsHold());
    CommandResult r = extra::Cli({"fsck", fs().backing(), "--read-only"});
    EXPECT_EQ(r.status, 0) << "fsck --read-only after the cut: " << extra::Describe(r);
  }

  std::mt19937_64 rng_;
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

}  // namespace
}  // namespace chainswap::mounttest
