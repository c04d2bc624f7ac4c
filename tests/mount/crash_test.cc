// Crash safety after kill -9 (SPEC §5): every acknowledged op reads back
// after the daemon is killed and the backing directory mounted again.
//
// A seeded random workload runs on three swap files: two opened O_DIRECT (a
// write is acknowledged when pwrite returned: the daemon answered it) and one
// opened buffered (its writes count as acknowledged only once fsync or close
// returned; before that each byte may hold the old or any newer written
// value). Punches and truncates are acknowledged when they return. The daemon
// is then killed with SIGKILL — between ops, or from the test thread while a
// second thread streams O_DIRECT writes (the one write in flight may or may
// not have landed: both outcomes are accepted) — the dead mount is lazily
// unmounted, the daemon restarted on the same backing directory (with varying
// bucket and idle-seal options, so replay meets every journal shape), and
// every file's size and bytes are compared with the model. One cycle kills
// the daemon again right after it mounted, while it destages the journal it
// just replayed. Finally a clean unmount must leave `chainswap fsck` clean.
//
// The seed is printed; CHAINSWAP_TEST_SEED=<seed> repeats a run.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
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
constexpr int kCycles = 12;
constexpr int kKillAfterRemountCycle = 6;         // cycle 5 leaves a large journal

struct Pending {
  uint64_t off;
  std::vector<uint8_t> data;
};

struct CrashFile {
  std::string name;
  bool direct = false;
  FileModel acked;               // what must read back
  std::vector<Pending> pending;  // buffered writes not yet made durable by fsync/close
  RawFd fd;
};

// The options of the daemon in a cycle (same backing directory throughout).
std::vector<std::string> OptionsFor(int cycle) {
  if (cycle == kKillAfterRemountCycle - 1) return {"idle_seal_ms=60000", "bucket_size=64M"};  // keep the journal
  switch (cycle % 4) {
    case 0: return {};
    case 1: return {"bucket_size=8M", "journal_limit=16M"};
    case 2: return {"idle_seal_ms=60000", "bucket_size=32M"};
    default: return {"idle_seal_ms=1", "bucket_size=8M"};
  }
}

using extra::ModelOf;
using extra::RandomBytes;

// Offset and length of a random write or punch below kSpan.
std::pair<uint64_t, uint64_t> RandomRange(std::mt19937_64& rng, uint64_t max_len) {
  return extra::RandomRange(rng, kSpan, max_len);
}

class CrashTest : public extra::DaemonTest {
 protected:
  std::string PathOf(const CrashFile& f) { return fs().Path("pool", f.name); }

  void OpenAll() {
    for (auto& f : files_) {
      f.fd = RawFd::Open(PathOf(f), O_CREAT | O_RDWR | (f.direct ? O_DIRECT : 0));
      ASSERT_TRUE(f.fd.ok()) << "open " << PathOf(f) << ": " << ErrnoName(errno);
    }
  }

  // Buffered writes become acknowledged: fsync or close returned.
  static void Commit(CrashFile& f) {
    for (const auto& p : f.pending) f.acked.Write(p.off, p.data);
    f.pending.clear();
  }

  void Fsync(CrashFile& f) {
    ASSERT_TRUE(Succeeds(::fsync(f.fd.get()))) << "fsync " << f.name;
    Commit(f);
  }

  // One random acknowledged op on a random file.
  void RandomOp(std::mt19937_64& rng) {
    CrashFile& f = files_[rng() % files_.size()];
    const unsigned kind = rng() % 100;
    if (kind < 60) {  // write
      auto [off, len] = RandomRange(rng, kMaxWrite);
      auto data = RandomBytes(rng, len);
      std::memcpy(buf_.data(), data.data(), len);
      ssize_t n = ::pwrite(f.fd.get(), buf_.data(), len, static_cast<off_t>(off));
      ASSERT_EQ(n, static_cast<ssize_t>(len)) << "pwrite " << f.name << " " << len << " at " << off << ": "
                                               << ErrnoName(errno);
      if (f.direct) f.acked.Write(off, data);
      else f.pending.push_back({off, std::move(data)});
      if (rng() % 5 == 0) Fsync(f);
      if (!f.direct && rng() % 8 == 0) {  // close: acknowledged too
        ASSERT_EQ(f.fd.Close(), 0) << "close " << f.name << ": " << ErrnoName(errno);
        Commit(f);
        f.fd = RawFd::Open(PathOf(f), O_RDWR);
        ASSERT_TRUE(f.fd.ok()) << "reopen " << f.name;
      }
    } else if (kind < 85) {  // punch (PUNCH_HOLE | KEEP_SIZE)
      if (!f.direct) Fsync(f);
      auto [off, len] = RandomRange(rng, 512 * kKiB);
      ASSERT_TRUE(Succeeds(::fallocate(f.fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                       static_cast<off_t>(off), static_cast<off_t>(len))))
          << "punch " << f.name << " " << len << " at " << off;
      f.acked.Zero(off, len, /*keep_size=*/true);
    } else {  // truncate, grow or shrink, aligned or not
      if (!f.direct) Fsync(f);
      uint64_t size = rng() % (kSpan + 1);
      if (rng() % 2) size &= ~(kBlock - 1);
      ASSERT_TRUE(Succeeds(::ftruncate(f.fd.get(), static_cast<off_t>(size)))) << "truncate " << f.name << " " << size;
      f.acked.Truncate(size);
    }
  }

  // Compares a file with its model and adopts what was read (within what the
  // model allows) as the new acknowledged state. `alt`: the state had the one
  // in-doubt O_DIRECT write landed.
  void VerifyAndAdopt(CrashFile& f, const FileModel* alt) {
    std::vector<uint8_t> actual;
    ASSERT_TRUE(ReadFile(PathOf(f), &actual, /*direct=*/true));
    const auto& a = f.acked.bytes();
    if (alt) {
      ASSERT_TRUE(actual == a || actual == alt->bytes())
          << f.name << ": matches neither the state without the in-flight write (" << Describe(actual, a)
          << ") nor with it (" << Describe(actual, alt->bytes()) << ")";
    } else if (f.pending.empty()) {
      ASSERT_TRUE(actual == a) << f.name << ": " << Describe(actual, a);
    } else {
      uint64_t hi = a.size();
      for (const auto& p : f.pending) hi = std::max<uint64_t>(hi, p.off + p.data.size());
      ASSERT_GE(actual.size(), a.size()) << f.name << ": lost acknowledged size";
      ASSERT_LE(actual.size(), hi) << f.name << ": larger than any unacknowledged write could make it";
      for (uint64_t i = 0; i < actual.size(); ++i) {
        const uint8_t base = i < a.size() ? a[i] : 0;
        if (actual[i] == base) continue;
        bool allowed = false;
        for (const auto& p : f.pending)
          if (i >= p.off && i < p.off + p.data.size() && p.data[i - p.off] == actual[i]) allowed = true;
        ASSERT_TRUE(allowed) << f.name << ": byte " << i << " is 0x" << std::hex << int{actual[i]} << ", acknowledged 0x"
                             << int{base} << std::dec << ", and no unacknowledged write put that value there";
      }
    }
    f.acked = ModelOf(actual);
    f.pending.clear();
  }

  static std::string Describe(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want) {
    return extra::DescribeDiff(got, want);
  }

  void VerifyAll(int in_doubt_file, const std::optional<FileModel>& alt) {
    for (size_t i = 0; i < files_.size(); ++i) {
      VerifyAndAdopt(files_[i], static_cast<int>(i) == in_doubt_file && alt ? &*alt : nullptr);
      if (HasFatalFailure()) return;
    }
  }

  std::vector<CrashFile> files_;
  AlignedBuf buf_{kMaxWrite + kBlock};
};

TEST_F(CrashTest, KillDashNineCyclesLoseNoAcknowledgedWrite) {
  const uint64_t seed = extra::TestSeed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (CHAINSWAP_TEST_SEED=" + std::to_string(seed) + " repeats this run)");
  RecordProperty("seed", std::to_string(seed));
  std::fprintf(stderr, "[ info ] CrashTest seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);

  files_.resize(3);
  files_[0].name = "d0.vswp";
  files_[0].direct = true;
  files_[1].name = "d1.vswp";
  files_[1].direct = true;
  files_[2].name = "b0.vswp";
  files_[2].direct = false;

  ASSERT_TRUE(daemon().Start({}));
  ASSERT_TRUE(fs().MakeChain("pool"));

  int in_doubt_file = -1;
  std::optional<FileModel> alt;
  int mid_stream_kills = 0, in_doubt_ops = 0;
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    SCOPED_TRACE("cycle " + std::to_string(cycle));
    const auto opts = OptionsFor(cycle);
    if (cycle > 0) {
      ASSERT_TRUE(daemon().Start(opts));
      if (cycle == kKillAfterRemountCycle) {
        // Killed again at once: replay is done (it precedes the mount), the
        // destagers are working through the replayed journal.
        ASSERT_TRUE(daemon().Kill9());
        ASSERT_TRUE(daemon().Start(opts));
      }
      VerifyAll(in_doubt_file, alt);
      ASSERT_FALSE(HasFatalFailure());
      EXPECT_TRUE(fs().CatalogInvariantsHold());
      in_doubt_file = -1;
      alt.reset();
    }
    OpenAll();
    ASSERT_FALSE(HasFatalFailure());

    const int ops = 10 + static_cast<int>(rng() % 60);
    for (int i = 0; i < ops; ++i) {
      RandomOp(rng);
      ASSERT_FALSE(HasFatalFailure()) << "op " << i;
    }
    if (cycle == kKillAfterRemountCycle - 1) {
      // A large journal for the next cycle to replay and destage.
      for (auto* f : {&files_[0], &files_[1]}) {
        for (uint64_t off = 0; off < kSpan; off += kMaxWrite / 2) {
          auto data = RandomBytes(rng, kMaxWrite / 2);
          std::memcpy(buf_.data(), data.data(), data.size());
          ASSERT_EQ(::pwrite(f->fd.get(), buf_.data(), data.size(), static_cast<off_t>(off)),
                    static_cast<ssize_t>(data.size()));
          f->acked.Write(off, data);
        }
      }
    }

    const bool mid_stream = cycle != kKillAfterRemountCycle - 1 && rng() % 2 == 0;
    if (!mid_stream) {
      // Between ops: the destagers may be anywhere in the journal.
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 40));
      ASSERT_TRUE(daemon().Kill9());
    } else {
      ++mid_stream_kills;
      struct Op {
        int file;
        uint64_t off;
        std::vector<uint8_t> data;
      };
      std::vector<Op> done;
      std::optional<Op> inflight_failed;
      std::string writer_error;
      const uint64_t wseed = rng();
      std::thread writer([&] {
        std::mt19937_64 wr(wseed);
        AlignedBuf wbuf(kMaxWrite + kBlock);
        for (int k = 0; k < 200000; ++k) {
          const int fi = static_cast<int>(wr() % 2);  // the O_DIRECT files
          auto [off, len] = RandomRange(wr, kMaxWrite);
          auto data = RandomBytes(wr, len);
          std::memcpy(wbuf.data(), data.data(), len);
          ssize_t n = ::pwrite(files_[fi].fd.get(), wbuf.data(), len, static_cast<off_t>(off));
          if (n == static_cast<ssize_t>(len)) {
            done.push_back({fi, off, std::move(data)});
            continue;
          }
          if (n < 0) inflight_failed = Op{fi, off, std::move(data)};
          else writer_error = "short O_DIRECT write: " + std::to_string(n) + " of " + std::to_string(len);
          return;
        }
        writer_error = "the writer ran out of ops before the kill";
      });
      std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 150));
      auto killed = daemon().Kill9();
      writer.join();
      ASSERT_TRUE(killed);
      ASSERT_TRUE(writer_error.empty()) << writer_error;
      for (auto& op : done) files_[op.file].acked.Write(op.off, op.data);
      if (inflight_failed) {
        ++in_doubt_ops;
        in_doubt_file = inflight_failed->file;
        alt = files_[in_doubt_file].acked;
        alt->Write(inflight_failed->off, inflight_failed->data);
      }
    }
    for (auto& f : files_) f.fd.Reset();  // the mount is gone; close errors do not matter
  }

  // Last check after a crash, then a clean unmount and an offline fsck.
  ASSERT_TRUE(daemon().Start({}));
  VerifyAll(in_doubt_file, alt);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(WaitUntil([&] { return extra::DestageIdle(fs().mnt()); }))
      << extra::DestageSummary(fs().mnt());
  int64_t lat_expected = 0;
  for (const auto& f : files_) lat_expected += static_cast<int64_t>(f.acked.NonZeroBlocks());
  EXPECT_EQ(fs().TotalLatRows(), lat_expected);
  EXPECT_TRUE(fs().CatalogInvariantsHold());
  ASSERT_TRUE(daemon().Stop());
  CommandResult r = extra::Cli({"fsck", fs().backing()});
  EXPECT_EQ(r.status, 0) << extra::Describe(r);
  // And the data is still there after the clean cycle.
  ASSERT_TRUE(daemon().Start({}));
  VerifyAll(-1, std::nullopt);
  std::fprintf(stderr, "[ info ] %d cycles, %d killed mid-stream, %d in-flight write(s) in doubt\n", kCycles,
               mid_stream_kills, in_doubt_ops);
}

}  // namespace
}  // namespace chainswap::mounttest
