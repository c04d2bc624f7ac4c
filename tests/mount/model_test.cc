// A seeded, model-based random test of the whole file interface (SPEC §3,
// §5): "reads always return the latest acknowledged data, whether destaged
// yet or not", across several chains, with every kind of operation mixed.
//
// A generator driven by one seed picks operations over 2-3 chains of 2-4
// swap files each and applies every operation both to the mounted
// filesystem and to an in-memory model (the bytes of each file, plus the
// namespace: chain -> names -> file). The destagers run at their own pace
// underneath; nothing waits for them except the catalog checks at clean
// unmounts. The operations:
//
//   write         pwrite on a buffered fd, 1 byte..256 KiB, aligned or not,
//                 near EOF or anywhere; data: random, zeros, sparse (zero
//                 blocks and single non-zero bytes), blocks from a pattern
//                 pool shared by all chains, or bytes copied from another
//                 file of the same chain at the same in-block alignment (so
//                 that blocks deduplicate within a chain and must not across)
//   direct write  pwrite on a separate O_DIRECT fd, aligned buffer/offset/size
//   read          pread on the buffered fd or on the O_DIRECT fd, compared
//   punch         fallocate(PUNCH_HOLE|KEEP_SIZE), aligned or not, past EOF
//   zero range    fallocate(ZERO_RANGE) with and without KEEP_SIZE
//   truncate      ftruncate grow and shrink, aligned or not
//   fallocate     mode 0 (grows the size, stores nothing), also KEEP_SIZE only
//   copy range    copy_file_range within a chain: block-aligned (a clone),
//                 aligned up to an unaligned source EOF (the tail clone),
//                 unaligned (a byte copy), past the source EOF; the copied
//                 range is read back at once
//   rename        within a chain, to a new name or replacing a file (whose
//                 open fds keep reading its old content)
//   rename xdev   across chains: EXDEV, nothing changes
//   unlink        sometimes while open: the fd still reads and writes the
//                 old content (checked through the fd and through an O_DIRECT
//                 reopen of /proc/self/fd/N) until it is closed
//   create        a new empty swap file
//   fsync         fsync or fdatasync on a buffered or O_DIRECT fd
//   mmap          writes through a MAP_SHARED mapping + msync(MS_SYNC), reads
//                 through a mapping
//   lseek         SEEK_DATA never skips a non-zero byte, SEEK_HOLE never lands
//                 on one, ENXIO at EOF
//   close         closing fds (release; files are reopened lazily)
//   compare all   periodically: the namespace (readdir), every file's size
//                 (stat and fstat) and bytes through a fresh O_DIRECT fd, a
//                 fresh buffered fd, or the long-lived fds
//   remount       every 1,000 ops and at random: close everything, clean unmount, catalog
//                 invariants, exact LAT/PAT counts against the model
//                 (non-zero blocks per file, distinct blocks per chain),
//                 `chainswap fsck` exit 0, mount again with other options
//                 (bucket size, idle seal, dedup_verify, queue slots,
//                 threads), st_blocks = non-zero blocks x 8, compare everything
//
// At the end: compare all, clean unmount, the catalog checks and fsck.
//
// The seed is CHAINSWAP_TEST_SEED (decimal or 0x hex) or a fixed default; the
// op count CHAINSWAP_TEST_OPS or 3,000 (2-10 s on two cores, under 40 s with
// TSan or ASan; CHAINSWAP_TEST_OPS=50000 is a soak of a minute or two). The op
// sequence depends on the seed only (the destagers' timing does not steer
// it), so a failure replays with the command the failure message prints;
// CHAINSWAP_TEST_VERBOSE=1 prints every op. A failure names the seed, the op
// index, the last ops and, for a byte or size mismatch, the earlier ops that
// touched that byte (or that file).
#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/mount/extra_util.h"
#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

using extra::RawFd;

constexpr uint64_t kDefaultSeed = 20261124;
constexpr uint64_t kDefaultOps = 3000;
constexpr uint64_t kSpan = 1536 * kKiB;     // write offsets stay below this
constexpr uint64_t kMaxIo = 256 * kKiB;     // longest write / read
constexpr uint64_t kMaxDelete = 512 * kKiB;  // longest punch / zero range
constexpr size_t kMaxFiles = 4;              // per chain
constexpr size_t kMaxZombies = 3;            // unlinked files kept open
constexpr uint64_t kCompareEvery = 200;      // ops between full compares
constexpr uint64_t kRemountEvery = 1000;     // ops between forced remounts (plus random ones)
constexpr size_t kPatterns = 12;             // shared block patterns
constexpr uint64_t kPatternSeed = 0x9A77E2000000ull;
constexpr size_t kLogTail = 40;              // ops shown on a failure

uint64_t EnvU64(const char* name, uint64_t fallback) {
  const char* s = std::getenv(name);
  if (!s || !*s) return fallback;
  return std::strtoull(s, nullptr, 0);
}

uint64_t RoundUp(uint64_t v) { return (v + kBlock - 1) & ~(kBlock - 1); }
uint64_t RoundDown(uint64_t v) { return v & ~(kBlock - 1); }

// Mount option sets the daemon is (re)started with.
const std::vector<std::vector<std::string>>& OptionSets() {
  static const std::vector<std::vector<std::string>> sets = {
      {},
      {"bucket_size=8M", "journal_limit=16M"},
      {"idle_seal_ms=1", "bucket_size=8M"},
      {"idle_seal_ms=60000", "bucket_size=32M"},  // the journal stays: reads come from the staging index
      {"no_dedup_verify"},
      {"queue_slots=4", "delete_slots_min=1"},
      {"threads=2", "idle_seal_ms=5"},
  };
  return sets;
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out.empty() ? "(defaults)" : out;
}

class ModelTest : public extra::DaemonTest {
 protected:
  // One change to a file's bytes or size, for failure reports.
  struct Mutation {
    uint64_t op;
    uint64_t off, end;  // bytes [off, end) may have changed
    std::string what;
  };
  struct File {
    int id = 0;
    size_t chain = 0;
    std::string name;  // empty once unlinked (or replaced by a rename)
    FileModel m;
    RawFd buf;  // O_RDWR, buffered; the only fd of an unlinked file
    RawFd dio;  // O_RDWR | O_DIRECT
    std::vector<Mutation> history;
  };
  using FilePtr = std::shared_ptr<File>;
  struct Chain {
    std::string name;
    std::vector<FilePtr> files;
  };

  void TearDown() override {
    // Every fd on the mount is closed before the fixture unmounts (an open
    // fd would keep `fusermount3 -u` busy).
    for (auto& c : chains_)
      for (auto& f : c.files) {
        f->buf.Reset();
        f->dio.Reset();
      }
    for (auto& z : zombies_) z->buf.Reset();
    zombies_.clear();
    extra::DaemonTest::TearDown();
  }

  // ------------------------------------------------------------ randomness

  uint64_t R(uint64_t n) { return n ? rng_() % n : 0; }
  bool P(unsigned percent) { return rng_() % 100 < percent; }

  std::string PathOf(const File& f) const { return fs().Path(chains_[f.chain].name, f.name); }
  std::string Label(const File& f) const {
    return "#" + std::to_string(f.id) + "(" + chains_[f.chain].name + "/" + (f.name.empty() ? "<unlinked>" : f.name) +
           ")";
  }
  MountedFs& fs() const { return const_cast<ModelTest*>(this)->DaemonTest::fs(); }

  // ------------------------------------------------------------------ fds

  ::testing::AssertionResult OpenBuf(File& f) {
    if (f.buf.ok()) return ::testing::AssertionSuccess();
    f.buf = RawFd::Open(PathOf(f), O_RDWR);
    if (!f.buf.ok()) return ::testing::AssertionFailure() << "open " << Label(f) << ": " << ErrnoName(errno);
    return ::testing::AssertionSuccess();
  }
  ::testing::AssertionResult OpenDio(File& f) {
    if (f.dio.ok()) return ::testing::AssertionSuccess();
    f.dio = RawFd::Open(PathOf(f), O_RDWR | O_DIRECT);
    if (!f.dio.ok()) return ::testing::AssertionFailure() << "open O_DIRECT " << Label(f) << ": " << ErrnoName(errno);
    return ::testing::AssertionSuccess();
  }
  static ::testing::AssertionResult CloseFd(RawFd& fd, const std::string& what) {
    if (!fd.ok()) return ::testing::AssertionSuccess();
    if (fd.Close() != 0) return ::testing::AssertionFailure() << "close " << what << ": " << ErrnoName(errno);
    return ::testing::AssertionSuccess();
  }

  // ----------------------------------------------------------------- model

  void Record(File& f, uint64_t off, uint64_t end, const std::string& what) {
    f.history.push_back({op_, off, end, what});
  }
  // The earlier ops that may have changed byte `at` of `f`.
  std::string HistoryAt(const File& f, uint64_t at) const {
    std::string out;
    int shown = 0;
    for (auto it = f.history.rbegin(); it != f.history.rend() && shown < 12; ++it) {
      if (at < it->off || at >= it->end) continue;
      out += "\n      op " + std::to_string(it->op) + ": " + it->what;
      ++shown;
    }
    return out.empty() ? " (none: the byte was never written)" : out;
  }
  std::string Mismatch(const File& f, const std::string& via, uint64_t at, int got, int want) const {
    char buf[160];
    std::snprintf(buf, sizeof buf, " via %s: byte %llu (block %llu, +%llu) is 0x%02x, expected 0x%02x (size %llu)",
                  via.c_str(), static_cast<unsigned long long>(at), static_cast<unsigned long long>(at / kBlock),
                  static_cast<unsigned long long>(at % kBlock), got, want,
                  static_cast<unsigned long long>(f.m.size()));
    return Label(f) + buf + "; ops that touched this byte, newest first:" + HistoryAt(f, at);
  }

  // Compares `got` (read at `off`) with the model: `got` must be exactly the
  // model's bytes in [off, off + want_len) clipped at EOF.
  ::testing::AssertionResult Compare(const File& f, const std::string& via, uint64_t off, uint64_t want_len,
                                     const uint8_t* got, uint64_t got_len) const {
    const auto& b = f.m.bytes();
    const uint64_t avail = off < b.size() ? std::min<uint64_t>(want_len, b.size() - off) : 0;
    const uint64_t n = std::min(avail, got_len);
    for (uint64_t i = 0; i < n; ++i)
      if (got[i] != b[off + i])
        return ::testing::AssertionFailure() << Mismatch(f, via, off + i, got[i], b[off + i]);
    if (got_len != avail)
      return ::testing::AssertionFailure() << Label(f) << " via " << via << ": read " << got_len << " bytes at " << off
                                           << ", expected " << avail << " (model size " << b.size() << ")";
    return ::testing::AssertionSuccess();
  }

  // Reads [off, off+len) through `fd` and compares. O_DIRECT reads are
  // widened to whole blocks and use the aligned buffer.
  ::testing::AssertionResult ReadCompare(const File& f, int fd, bool direct, uint64_t off, uint64_t len,
                                         const std::string& via) {
    if (direct) {
      const uint64_t aoff = RoundDown(off), aend = RoundUp(off + len);
      uint64_t pos = aoff;
      while (pos < aend) {
        const uint64_t want = std::min<uint64_t>(aend - pos, abuf_.size());
        ssize_t n = ::pread(fd, abuf_.data(), want, static_cast<off_t>(pos));
        if (n < 0)
          return ::testing::AssertionFailure() << "pread O_DIRECT " << Label(f) << " " << want << " at " << pos
                                               << ": " << ErrnoName(errno);
        auto r = Compare(f, via, pos, want, abuf_.data(), static_cast<uint64_t>(n));
        if (!r) return r;
        if (static_cast<uint64_t>(n) < want) break;  // EOF (Compare checked it is the model's EOF)
        pos += want;
      }
      return ::testing::AssertionSuccess();
    }
    std::vector<uint8_t> got(len);
    uint64_t done = 0;
    while (done < len) {
      ssize_t n = ::pread(fd, got.data() + done, len - done, static_cast<off_t>(off + done));
      if (n < 0)
        return ::testing::AssertionFailure() << "pread " << Label(f) << " " << len - done << " at " << off + done
                                             << ": " << ErrnoName(errno);
      if (n == 0) break;
      done += static_cast<uint64_t>(n);
    }
    return Compare(f, via, off, len, got.data(), done);
  }

  ::testing::AssertionResult SizeIs(const File& f, const struct stat& st, const char* via) const {
    if (static_cast<uint64_t>(st.st_size) == f.m.size()) return ::testing::AssertionSuccess();
    std::string hist;
    for (auto it = f.history.rbegin(); it != f.history.rend() && hist.size() < 2000; ++it)
      hist += "\n      op " + std::to_string(it->op) + ": " + it->what;
    return ::testing::AssertionFailure() << Label(f) << ": " << via << " st_size " << st.st_size << ", expected "
                                         << f.m.size() << "; latest ops on the file:" << hist;
  }
  ::testing::AssertionResult CheckSize(const File& f) const {
    struct stat st;
    if (f.buf.ok()) {
      if (::fstat(f.buf.get(), &st) != 0)
        return ::testing::AssertionFailure() << "fstat " << Label(f) << ": " << ErrnoName(errno);
      if (auto r = SizeIs(f, st, "fstat"); !r) return r;
    }
    if (!f.name.empty()) {
      if (::stat(PathOf(f).c_str(), &st) != 0)
        return ::testing::AssertionFailure() << "stat " << Label(f) << ": " << ErrnoName(errno);
      if (auto r = SizeIs(f, st, "stat"); !r) return r;
    }
    return ::testing::AssertionSuccess();
  }

  // Reads a range back right after a change (sometimes), through the
  // O_DIRECT fd (the daemon's answer) or the buffered fd (the page cache).
  void MaybeReadBack(File& f, uint64_t off, uint64_t len) {
    if (!P(30) || len == 0) return;
    const uint64_t lo = off > 100 ? off - 100 : 0;
    len = std::min<uint64_t>(len + (off - lo) + 100, 2 * kMaxIo);
    if (f.name.empty() || P(50)) {
      ASSERT_TRUE(OpenBufOrUnlinked(f));
      ASSERT_TRUE(ReadCompare(f, f.buf.get(), false, lo, len, "read-back on the buffered fd"));
    } else {
      ASSERT_TRUE(OpenDio(f));
      ASSERT_TRUE(ReadCompare(f, f.dio.get(), true, lo, len, "read-back on the O_DIRECT fd"));
    }
    ASSERT_TRUE(CheckSize(f));
  }
  ::testing::AssertionResult OpenBufOrUnlinked(File& f) {
    if (f.name.empty()) {
      if (f.buf.ok()) return ::testing::AssertionSuccess();
      return ::testing::AssertionFailure() << Label(f) << " is unlinked and has no fd";
    }
    return OpenBuf(f);
  }

  // ------------------------------------------------------------ generators

  // Offset and length of a write: aligned or not, short or long, near the
  // file's EOF or anywhere below kSpan.
  std::pair<uint64_t, uint64_t> WriteRange(const File& f, bool aligned) {
    uint64_t len;
    if (aligned) {
      len = (1 + R(kMaxIo / kBlock)) * kBlock;
      if (P(40)) len = (1 + R(4)) * kBlock;
    } else {
      switch (R(4)) {
        case 0: len = 1 + R(64); break;
        case 1: len = 1 + R(2 * kBlock); break;
        case 2: len = 1 + R(64 * kKiB); break;
        default: len = 1 + R(kMaxIo); break;
      }
    }
    uint64_t off;
    if (P(20) && f.m.size() > 0) {  // around EOF: partial last blocks, appends
      const uint64_t base = f.m.size();
      off = base > 2 * kBlock ? base - 2 * kBlock + R(4 * kBlock) : R(base + 2 * kBlock);
    } else {
      off = R(kSpan);
    }
    if (aligned) off = RoundDown(off);
    return {off, len};
  }

  // Bytes for a write to `dst` at `off` (see the file comment).
  std::vector<uint8_t> GenData(const File& dst, uint64_t off, uint64_t len, std::string* kind) {
    std::vector<uint8_t> v(len, 0);
    const unsigned k = static_cast<unsigned>(R(100));
    if (k < 35) {
      *kind = "random";
      for (uint64_t i = 0; i < len; i += 8) {
        uint64_t x = rng_() | 1;
        std::memcpy(v.data() + i, &x, std::min<uint64_t>(8, len - i));
      }
    } else if (k < 45) {
      *kind = "zeros";
    } else if (k < 55) {
      *kind = "sparse";
      for (uint64_t b = RoundDown(off); b < off + len; b += kBlock) {
        if (P(50)) continue;  // a zero block
        uint64_t at = P(30) ? b + kBlock - 1 : b + R(kBlock);
        if (at >= off && at < off + len) v[at - off] = static_cast<uint8_t>(1 + R(255));
      }
    } else if (k < 75) {
      *kind = "patterns";
      uint8_t block[kBlock];
      for (uint64_t b = RoundDown(off); b < off + len; b += kBlock) {
        FillBlock(kPatternSeed, R(kPatterns), block);
        for (uint64_t i = std::max(b, off); i < std::min(b + kBlock, off + len); ++i) v[i - off] = block[i - b];
      }
    } else {
      // Bytes of a file of the same chain, at the same in-block alignment,
      // so that whole blocks match and deduplicate.
      const auto& files = chains_[dst.chain].files;
      const File& src = *files[R(files.size())];
      const auto& sb = src.m.bytes();
      if (sb.empty()) {
        *kind = "random (copy source empty)";
        for (uint64_t i = 0; i < len; ++i) v[i] = static_cast<uint8_t>(rng_() | 1);
      } else {
        const uint64_t soff = RoundDown(R(sb.size())) + off % kBlock;
        *kind = "copy of " + Label(src) + "@" + std::to_string(soff);
        for (uint64_t i = 0; i < len && soff + i < sb.size(); ++i) v[i] = sb[soff + i];
      }
    }
    return v;
  }

  File& PickFile(size_t chain) { return *chains_[chain].files[R(chains_[chain].files.size())]; }
  size_t PickChain() { return R(chains_.size()); }
  // A chain with at least one file (every chain keeps one).
  File& PickAnyFile() { return PickFile(PickChain()); }

  std::string NewName() { return "vm" + std::to_string(next_name_++) + ".vswp"; }

  void Count(const std::string& kind) { ++counts_[kind]; }

  void Log(const std::string& what) {
    desc_ = what;
    log_.push_back("op " + std::to_string(op_) + ": " + what);
    if (log_.size() > kLogTail) log_.pop_front();
    if (verbose_) std::fprintf(stderr, "[ model ] op %llu: %s\n", static_cast<unsigned long long>(op_), what.c_str());
  }

  // ------------------------------------------------------------------ ops

  void OpWrite(bool direct) {
    File& f = PickAnyFile();
    auto [off, len] = WriteRange(f, direct || P(30));
    std::string kind;
    auto data = GenData(f, off, len, &kind);
    const std::string what = std::string(direct ? "O_DIRECT " : "") + "pwrite " + Label(f) + " " +
                             std::to_string(len) + " bytes at " + std::to_string(off) + " (" + kind + ")";
    Log(what);
    Count(std::string(direct ? "O_DIRECT write " : "write ") + kind.substr(0, kind.find(' ')));
    if (direct) {
      ASSERT_TRUE(OpenDio(f));
      std::memcpy(abuf_.data(), data.data(), len);
      ssize_t n = ::pwrite(f.dio.get(), abuf_.data(), len, static_cast<off_t>(off));
      ASSERT_EQ(n, static_cast<ssize_t>(len)) << what << ": " << ErrnoName(errno);
    } else {
      ASSERT_TRUE(OpenBuf(f));
      ASSERT_TRUE(PwriteAll(f.buf.get(), off, data)) << what;
    }
    f.m.Write(off, data);
    Record(f, off, off + len, what);
    MaybeReadBack(f, off, len);
  }

  void OpRead(bool direct) {
    File& f = PickAnyFile();
    uint64_t off = R(f.m.size() + 8 * kBlock);
    uint64_t len = 1 + (P(50) ? R(8 * kBlock) : R(kMaxIo));
    if (direct) {
      off = RoundDown(off);
      len = RoundUp(len);
    }
    Log(std::string(direct ? "O_DIRECT " : "") + "pread " + Label(f) + " " + std::to_string(len) + " at " +
        std::to_string(off));
    Count(direct ? "O_DIRECT read" : "read");
    if (direct) {
      ASSERT_TRUE(OpenDio(f));
      ASSERT_TRUE(ReadCompare(f, f.dio.get(), true, off, len, "pread on the O_DIRECT fd"));
    } else {
      ASSERT_TRUE(OpenBuf(f));
      ASSERT_TRUE(ReadCompare(f, f.buf.get(), false, off, len, "pread on the buffered fd"));
    }
  }

  // PUNCH_HOLE|KEEP_SIZE, or ZERO_RANGE with or without KEEP_SIZE.
  void OpZero(bool punch) {
    File& f = PickAnyFile();
    const bool keep = punch || P(50);
    uint64_t off, len;
    if (P(40)) {
      len = (1 + R(kMaxDelete / kBlock)) * kBlock;
      off = RoundDown(R(std::max<uint64_t>(f.m.size(), kBlock) + 4 * kBlock));
    } else {
      len = 1 + (P(50) ? R(2 * kBlock) : R(kMaxDelete));
      off = R(f.m.size() + 4 * kBlock);
    }
    const int mode = (punch ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) | (keep ? FALLOC_FL_KEEP_SIZE : 0);
    const char* name = punch ? "PUNCH_HOLE|KEEP_SIZE " : keep ? "ZERO_RANGE|KEEP_SIZE " : "ZERO_RANGE ";
    const std::string what = name + Label(f) + " " + std::to_string(len) + " at " + std::to_string(off);
    Log(what);
    Count(punch ? "punch" : keep ? "zero range keep_size" : "zero range");
    ASSERT_TRUE(OpenBuf(f));
    ASSERT_TRUE(Succeeds(::fallocate(f.buf.get(), mode, static_cast<off_t>(off), static_cast<off_t>(len)))) << what;
    f.m.Zero(off, len, keep);
    Record(f, off, off + len, what);
    ASSERT_TRUE(CheckSize(f)) << what;
    MaybeReadBack(f, off, len);
  }

  void OpTruncate() {
    File& f = PickAnyFile();
    uint64_t size;
    switch (R(4)) {
      case 0: size = f.m.size() > 0 ? R(f.m.size()) : R(kBlock); break;              // shrink
      case 1: size = f.m.size() + 1 + R(4 * kBlock); break;                          // grow a little
      case 2: size = R(kSpan + kMaxIo); break;                                       // anywhere
      default: size = f.m.size() > 0 ? f.m.size() - 1 - R(std::min<uint64_t>(f.m.size(), 100)) + 1 : 0; break;
    }
    if (P(40)) size = RoundDown(size);
    const std::string what = "ftruncate " + Label(f) + " " + std::to_string(f.m.size()) + " -> " + std::to_string(size);
    Log(what);
    Count(size < f.m.size() ? "truncate shrink" : "truncate grow");
    ASSERT_TRUE(OpenBuf(f));
    ASSERT_TRUE(Succeeds(::ftruncate(f.buf.get(), static_cast<off_t>(size)))) << what;
    const uint64_t old = f.m.size();
    f.m.Truncate(size);
    Record(f, std::min(old, size), std::max<uint64_t>(old, size) + kBlock, what);
    ASSERT_TRUE(CheckSize(f)) << what;
    MaybeReadBack(f, size > kBlock ? size - kBlock : 0, 2 * kBlock);
  }

  // fallocate mode 0: thin, the size grows, nothing stored; or KEEP_SIZE only.
  void OpFallocate() {
    File& f = PickAnyFile();
    const bool keep = P(20);
    const uint64_t off = R(f.m.size() + 8 * kBlock);
    const uint64_t len = 1 + R(kMaxIo);
    const std::string what = std::string("fallocate(") + (keep ? "KEEP_SIZE" : "0") + ") " + Label(f) + " " +
                             std::to_string(len) + " at " + std::to_string(off);
    Log(what);
    Count(keep ? "fallocate keep_size" : "fallocate 0");
    ASSERT_TRUE(OpenBuf(f));
    ASSERT_TRUE(Succeeds(::fallocate(f.buf.get(), keep ? FALLOC_FL_KEEP_SIZE : 0, static_cast<off_t>(off),
                                     static_cast<off_t>(len))))
        << what;
    if (!keep && off + len > f.m.size()) {
      Record(f, f.m.size(), off + len, what);
      f.m.Truncate(off + len);
    }
    ASSERT_TRUE(CheckSize(f)) << what;
  }

  // copy_file_range within a chain; the destination range is read back.
  void OpCopyRange() {
    const size_t c = PickChain();
    const auto& files = chains_[c].files;
    const size_t si = R(files.size());
    size_t di = si;
    if (files.size() > 1 && !P(15)) {  // mostly another file; sometimes the same one
      di = R(files.size() - 1);
      if (di >= si) ++di;
    }
    File& src = *files[si];
    File& dst = *files[di];
    const uint64_t ssize = src.m.size(), dsize = dst.m.size();
    uint64_t off_in, off_out, len;
    std::string kind;
    const unsigned pick = static_cast<unsigned>(R(100));
    switch (pick < 35 ? 0 : pick < 60 ? 1 : pick < 90 ? 2 : 3) {
      case 0:  // whole blocks: a clone
        kind = "aligned";
        off_in = RoundDown(R(ssize + kBlock));
        off_out = RoundDown(R(kSpan));
        len = (1 + R(kMaxIo / kBlock)) * kBlock;
        break;
      case 1: {  // aligned start up to the source's EOF, covering the destination's EOF (tail clone)
        kind = "aligned to EOF";
        off_in = ssize > 0 ? RoundDown(R(ssize)) : 0;
        len = ssize - off_in;
        const uint64_t min_out = dsize > len ? RoundUp(dsize - len) : 0;
        off_out = min_out + RoundDown(R(4 * kBlock));
        break;
      }
      case 2:  // unaligned: a byte copy
        kind = "unaligned";
        off_in = R(ssize + 100);
        off_out = R(kSpan);
        len = 1 + R(P(50) ? 2 * kBlock : kMaxIo);
        break;
      default:  // past the source's EOF
        kind = "past EOF";
        off_in = ssize + R(2 * kBlock);
        off_out = R(kSpan);
        len = 1 + R(kMaxIo);
        break;
    }
    const uint64_t n = off_in < ssize ? std::min(len, ssize - off_in) : 0;
    if (&src == &dst && n > 0 && off_in < off_out + n && off_out < off_in + n) {
      // The same file: ranges must not overlap (EINVAL). Move the target.
      off_out = off_in + n + (kind == "unaligned" ? R(100) : 0);
      if (kind != "unaligned") off_out = RoundUp(off_out);
    }
    const std::string what = "copy_file_range (" + kind + ") " + Label(src) + "@" + std::to_string(off_in) + " -> " +
                             Label(dst) + "@" + std::to_string(off_out) + " len " + std::to_string(len) +
                             " (expect " + std::to_string(n) + ")";
    Log(what);
    Count("copy_file_range " + kind + (n == 0 ? " (0 bytes)" : &src == &dst ? " (same file)" : ""));
    ASSERT_TRUE(OpenBuf(src));
    ASSERT_TRUE(OpenBuf(dst));
    loff_t i = static_cast<loff_t>(off_in), o = static_cast<loff_t>(off_out);
    uint64_t copied = 0;
    // The first call asks for `len` (the daemon clips it at the source's
    // EOF); a short copy is continued for the rest of `n` only, since a copy
    // within one file may have moved the source's EOF.
    for (uint64_t ask = len;;) {
      ssize_t r = ::copy_file_range(src.buf.get(), &i, dst.buf.get(), &o, ask, 0);
      ASSERT_GE(r, 0) << what << ": " << ErrnoName(errno);
      copied += static_cast<uint64_t>(r);
      if (r == 0 || copied >= n) break;
      ask = n - copied;
    }
    ASSERT_EQ(copied, n) << what;
    if (n == 0) return;
    std::vector<uint8_t> piece(src.m.bytes().begin() + static_cast<ptrdiff_t>(off_in),
                               src.m.bytes().begin() + static_cast<ptrdiff_t>(off_in + n));
    dst.m.Write(off_out, piece);
    Record(dst, off_out, off_out + n, what);
    ASSERT_TRUE(CheckSize(dst)) << what;
    if (P(50)) {
      ASSERT_TRUE(OpenDio(dst));
      ASSERT_TRUE(ReadCompare(dst, dst.dio.get(), true, off_out, n, "copy_file_range check (O_DIRECT)"));
    } else {
      ASSERT_TRUE(ReadCompare(dst, dst.buf.get(), false, off_out, n, "copy_file_range check (buffered)"));
    }
  }

  // A file leaves the namespace (unlink or replaced by rename): kept open
  // as a zombie when it has a buffered fd and there is room, else closed.
  void Detach(const FilePtr& f) {
    f->name.clear();
    ASSERT_TRUE(CloseFd(f->dio, Label(*f) + " O_DIRECT"));
    if (f->buf.ok() && zombies_.size() < kMaxZombies) {
      zombies_.push_back(f);
      return;
    }
    ASSERT_TRUE(CloseFd(f->buf, Label(*f)));
  }

  void OpRename() {
    Chain& c = chains_[PickChain()];
    const size_t si = R(c.files.size());
    FilePtr src = c.files[si];
    std::string newname;
    FilePtr replaced;
    if (c.files.size() > 1 && P(50)) {
      size_t ti = R(c.files.size() - 1);
      if (ti >= si) ++ti;
      replaced = c.files[ti];
      newname = replaced->name;
      if (P(50)) {
        ASSERT_TRUE(OpenBuf(*replaced));  // replaced while open
      } else {
        ASSERT_TRUE(CloseFd(replaced->buf, Label(*replaced)));
        ASSERT_TRUE(CloseFd(replaced->dio, Label(*replaced) + " O_DIRECT"));
      }
    } else {
      newname = NewName();
    }
    const std::string what = "rename " + Label(*src) + " -> " + newname +
                             (replaced ? " replacing " + Label(*replaced) + (replaced->buf.ok() ? " (open)" : "") : "");
    Log(what);
    Count(replaced ? (replaced->buf.ok() ? "rename replacing an open file" : "rename replacing a file") : "rename");
    ASSERT_TRUE(Succeeds(::rename(PathOf(*src).c_str(), fs().Path(c.name, newname).c_str()))) << what;
    if (replaced) {
      c.files.erase(std::find(c.files.begin(), c.files.end(), replaced));
      Record(*replaced, 0, UINT64_MAX, what);
      Detach(replaced);
      ASSERT_FALSE(HasFatalFailure());
    }
    const std::string old_path = PathOf(*src);
    src->name = newname;
    Record(*src, 0, 0, what);
    struct stat st;
    ASSERT_TRUE(FailsWith(::stat(old_path.c_str(), &st), ENOENT)) << what << ": the old name";
    ASSERT_TRUE(CheckSize(*src)) << what;
  }

  void OpRenameAcrossChains() {
    const size_t a = PickChain();
    size_t b = R(chains_.size() - 1);
    if (b >= a) ++b;
    File& f = PickFile(a);
    const std::string target = P(50) ? PickFile(b).name : NewName();
    const std::string what = "rename " + Label(f) + " -> " + chains_[b].name + "/" + target + " (expect EXDEV)";
    Log(what);
    Count("rename across chains (EXDEV)");
    ASSERT_TRUE(FailsWith(::rename(PathOf(f).c_str(), fs().Path(chains_[b].name, target).c_str()), EXDEV)) << what;
    ASSERT_TRUE(CheckSize(f)) << what;
  }

  void OpUnlink() {
    Chain& c = chains_[PickChain()];
    if (c.files.size() < 2) return OpCreate();
    const size_t i = R(c.files.size());
    FilePtr f = c.files[i];
    if (P(60)) {
      ASSERT_TRUE(OpenBuf(*f));  // unlink while open
    } else {
      ASSERT_TRUE(CloseFd(f->buf, Label(*f)));
      ASSERT_TRUE(CloseFd(f->dio, Label(*f) + " O_DIRECT"));
    }
    const std::string what = "unlink " + Label(*f) + (f->buf.ok() ? " (open)" : "");
    Log(what);
    Count(f->buf.ok() ? "unlink while open" : "unlink");
    ASSERT_TRUE(Succeeds(::unlink(PathOf(*f).c_str()))) << what;
    c.files.erase(c.files.begin() + static_cast<ptrdiff_t>(i));
    Record(*f, 0, UINT64_MAX, what);
    Detach(f);
  }

  void OpCreate() {
    const size_t ci = PickChain();
    Chain& c = chains_[ci];
    if (c.files.size() >= kMaxFiles) return OpUnlink();
    auto f = std::make_shared<File>();
    f->id = next_id_++;
    f->chain = ci;
    f->name = NewName();
    const std::string what = "create " + Label(*f);
    Log(what);
    Count("create");
    f->buf = RawFd::Open(PathOf(*f), O_CREAT | O_EXCL | O_RDWR, 0600);
    ASSERT_TRUE(f->buf.ok()) << what << ": " << ErrnoName(errno);
    Record(*f, 0, 0, what);
    c.files.push_back(f);
    ASSERT_TRUE(CheckSize(*f)) << what;
  }

  void OpFsync() {
    File& f = PickAnyFile();
    const bool direct = P(30);
    const bool data_only = P(50);
    Log(std::string(data_only ? "fdatasync " : "fsync ") + (direct ? "O_DIRECT fd of " : "") + Label(f));
    Count(data_only ? "fdatasync" : "fsync");
    if (direct) {
      ASSERT_TRUE(OpenDio(f));
      ASSERT_TRUE(Succeeds(data_only ? ::fdatasync(f.dio.get()) : ::fsync(f.dio.get()))) << desc_;
    } else {
      ASSERT_TRUE(OpenBuf(f));
      ASSERT_TRUE(Succeeds(data_only ? ::fdatasync(f.buf.get()) : ::fsync(f.buf.get()))) << desc_;
    }
  }

  // Writes through (or reads through) a shared mapping of part of the file.
  void OpMmap(bool write) {
    File& f = PickAnyFile();
    if (f.m.size() == 0) return OpWrite(false);
    const uint64_t size = f.m.size();
    const uint64_t off = P(20) && size > kBlock ? size - 1 - R(kBlock) : R(size);
    const uint64_t len = 1 + R(std::min<uint64_t>(size - off, P(50) ? 2 * kBlock : 64 * kKiB) );
    const uint64_t moff = RoundDown(off), mlen = off + len - moff;
    std::vector<uint8_t> data;
    std::string kind;
    if (write) data = GenData(f, off, len, &kind);
    const std::string what = std::string(write ? "mmap write + msync " : "mmap read ") + Label(f) + " " +
                             std::to_string(len) + " at " + std::to_string(off) + (write ? " (" + kind + ")" : "");
    Log(what);
    Count(write ? "mmap write" : "mmap read");
    ASSERT_TRUE(OpenBuf(f));
    void* p = ::mmap(nullptr, mlen, PROT_READ | (write ? PROT_WRITE : 0), MAP_SHARED, f.buf.get(),
                     static_cast<off_t>(moff));
    ASSERT_NE(p, MAP_FAILED) << what << ": " << ErrnoName(errno);
    auto* base = static_cast<uint8_t*>(p) + (off - moff);
    ::testing::AssertionResult r = ::testing::AssertionSuccess();
    if (write) {
      std::memcpy(base, data.data(), len);
      if (::msync(p, mlen, MS_SYNC) != 0) r = ::testing::AssertionFailure() << "msync: " << ErrnoName(errno);
    } else {
      r = Compare(f, "mmap read", off, len, base, len);
    }
    ::munmap(p, mlen);
    ASSERT_TRUE(r) << what;
    if (write) {
      f.m.Write(off, data);
      Record(f, off, off + len, what);
      ASSERT_TRUE(CheckSize(f)) << what;
      MaybeReadBack(f, off, len);
    }
  }

  // An unlinked file still open: read through its fd (or an O_DIRECT reopen
  // of /proc/self/fd/N), write through it, or close it.
  void OpZombie() {
    if (zombies_.empty()) return OpUnlink();
    const size_t i = R(zombies_.size());
    FilePtr z = zombies_[i];
    const unsigned k = static_cast<unsigned>(R(100));
    if (k < 35) {
      Log("read all of unlinked " + Label(*z) + " through its fd");
      Count("unlinked file: read through its fd");
      ASSERT_TRUE(CheckSize(*z));
      ASSERT_TRUE(ReadCompare(*z, z->buf.get(), false, 0, z->m.size() + kBlock, "the fd of the unlinked file"));
    } else if (k < 55) {
      Log("read all of unlinked " + Label(*z) + " through an O_DIRECT reopen of /proc/self/fd");
      Count("unlinked file: O_DIRECT reopen");
      RawFd d = RawFd::Open("/proc/self/fd/" + std::to_string(z->buf.get()), O_RDONLY | O_DIRECT);
      ASSERT_TRUE(d.ok()) << desc_ << ": " << ErrnoName(errno);
      ASSERT_TRUE(ReadCompare(*z, d.get(), true, 0, z->m.size() + kBlock, "O_DIRECT reopen of the unlinked file"));
      ASSERT_TRUE(CloseFd(d, "O_DIRECT reopen"));
    } else if (k < 75) {
      auto [off, len] = WriteRange(*z, P(30));
      std::string kind;
      auto data = GenData(*z, off, len, &kind);
      const std::string what = "pwrite unlinked " + Label(*z) + " " + std::to_string(len) + " at " +
                               std::to_string(off) + " (" + kind + ")";
      Log(what);
      Count("unlinked file: write");
      ASSERT_TRUE(PwriteAll(z->buf.get(), off, data)) << what;
      z->m.Write(off, data);
      Record(*z, off, off + len, what);
      MaybeReadBack(*z, off, len);
    } else {
      Log("close unlinked " + Label(*z));
      Count("unlinked file: close");
      ASSERT_TRUE(CloseFd(z->buf, Label(*z)));
      zombies_.erase(zombies_.begin() + static_cast<ptrdiff_t>(i));
    }
  }

  // SEEK_DATA / SEEK_HOLE (QEMU maps raw images with them): SEEK_DATA may
  // report a zero range as data (block granularity) but never skip a
  // non-zero byte; SEEK_HOLE never reports a non-zero byte as a hole; both
  // fail with ENXIO at or past EOF.
  void OpLseek() {
    File& f = PickAnyFile();
    const bool data = P(70);
    const uint64_t size = f.m.size();
    const uint64_t off = R(size + 2 * kBlock);
    const std::string what = std::string("lseek ") + (data ? "SEEK_DATA " : "SEEK_HOLE ") + Label(f) + " from " +
                             std::to_string(off) + " (size " + std::to_string(size) + ")";
    Log(what);
    Count(data ? "lseek SEEK_DATA" : "lseek SEEK_HOLE");
    ASSERT_TRUE(OpenBuf(f));
    const off_t r = ::lseek(f.buf.get(), static_cast<off_t>(off), data ? SEEK_DATA : SEEK_HOLE);
    if (off >= size) {
      ASSERT_TRUE(FailsWith(r, ENXIO)) << what;
      return;
    }
    const auto& b = f.m.bytes();
    uint64_t first = off;  // the first non-zero byte at or after off
    while (first < size && b[first] == 0) ++first;
    if (data) {
      if (first == size && r < 0) {
        ASSERT_TRUE(FailsWith(r, ENXIO)) << what;  // no data after off
        return;
      }
      ASSERT_GE(r, 0) << what << ": " << ErrnoName(errno) << "; first non-zero byte at " << first;
      ASSERT_GE(static_cast<uint64_t>(r), off) << what;
      ASSERT_LE(static_cast<uint64_t>(r), std::min(first, size - 1))
          << what << ": skipped data; first non-zero byte at "
                                                                     << first;
    } else {
      ASSERT_GE(r, 0) << what << ": " << ErrnoName(errno);
      ASSERT_GE(static_cast<uint64_t>(r), off) << what;
      ASSERT_LE(static_cast<uint64_t>(r), size) << what;
      if (static_cast<uint64_t>(r) < size) {
        ASSERT_EQ(b[r], 0) << what << ": a hole at a non-zero byte";
      }
    }
  }

  void OpClose() {
    File& f = PickAnyFile();
    Log("close the fds of " + Label(f));
    Count("close");
    ASSERT_TRUE(CloseFd(f.buf, Label(f)));
    ASSERT_TRUE(CloseFd(f.dio, Label(f) + " O_DIRECT"));
  }

  // ------------------------------------------------------- whole-fs checks

  ::testing::AssertionResult ListDir(const std::string& path, std::set<std::string>* out) {
    out->clear();
    DIR* d = ::opendir(path.c_str());
    if (!d) return ::testing::AssertionFailure() << "opendir " << path << ": " << ErrnoName(errno);
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") out->insert(n);
    }
    ::closedir(d);
    return ::testing::AssertionSuccess();
  }

  void CompareFile(File& f) {
    ASSERT_TRUE(CheckSize(f));
    const uint64_t len = f.m.size() + kBlock;  // and nothing past EOF
    switch (R(4)) {
      case 0: {
        RawFd d = RawFd::Open(PathOf(f), O_RDONLY | O_DIRECT);
        ASSERT_TRUE(d.ok()) << "open O_DIRECT " << Label(f) << ": " << ErrnoName(errno);
        ASSERT_TRUE(ReadCompare(f, d.get(), true, 0, len, "full compare, new O_DIRECT fd"));
        ASSERT_TRUE(CloseFd(d, Label(f)));
        break;
      }
      case 1: {
        RawFd d = RawFd::Open(PathOf(f), O_RDONLY);
        ASSERT_TRUE(d.ok()) << "open " << Label(f) << ": " << ErrnoName(errno);
        ASSERT_TRUE(ReadCompare(f, d.get(), false, 0, len, "full compare, new buffered fd"));
        ASSERT_TRUE(CloseFd(d, Label(f)));
        break;
      }
      case 2:
        ASSERT_TRUE(OpenBuf(f));
        ASSERT_TRUE(ReadCompare(f, f.buf.get(), false, 0, len, "full compare, long-lived buffered fd"));
        break;
      default:
        ASSERT_TRUE(OpenDio(f));
        ASSERT_TRUE(ReadCompare(f, f.dio.get(), true, 0, len, "full compare, long-lived O_DIRECT fd"));
        break;
    }
  }

  void CompareAll(const std::string& why) {
    Log("compare everything (" + why + ")");
    Count("compare everything");
    std::set<std::string> names, want;
    ASSERT_TRUE(ListDir(fs().mnt(), &names));
    for (const auto& c : chains_) want.insert(c.name);
    ASSERT_EQ(names, want) << "chains at the mount root";
    for (auto& c : chains_) {
      ASSERT_TRUE(ListDir(fs().Path(c.name), &names));
      want.clear();
      for (const auto& f : c.files) want.insert(f->name);
      ASSERT_EQ(names, want) << "files of chain " << c.name;
      for (auto& f : c.files) {
        CompareFile(*f);
        ASSERT_FALSE(HasFatalFailure());
      }
    }
    for (auto& z : zombies_) {
      ASSERT_TRUE(CheckSize(*z));
      ASSERT_TRUE(ReadCompare(*z, z->buf.get(), false, 0, z->m.size() + kBlock, "full compare, unlinked file's fd"));
    }
  }

  void CloseAll() {
    for (auto& c : chains_)
      for (auto& f : c.files) {
        ASSERT_TRUE(CloseFd(f->buf, Label(*f)));
        ASSERT_TRUE(CloseFd(f->dio, Label(*f) + " O_DIRECT"));
      }
    for (auto& z : zombies_) ASSERT_TRUE(CloseFd(z->buf, Label(*z)));
    zombies_.clear();
  }

  // With the daemon stopped after a clean unmount (journal destaged): LAT
  // rows per file = its non-zero blocks, PAT rows per chain = its distinct
  // non-zero blocks (dedup within, never across chains), invariants, fsck.
  void CheckCatalogOffline(const std::string& when) {
    for (const auto& c : chains_) {
      std::vector<const FileModel*> models;
      for (const auto& f : c.files) {
        models.push_back(&f->m);
        EXPECT_EQ(fs().LatRows(c.name, f->name), static_cast<int64_t>(f->m.NonZeroBlocks()))
            << when << ": LAT rows of " << Label(*f);
      }
      const int64_t files = fs().FileRows(c.name);
      // Files unlinked but not reclaimed yet keep their blocks; the exact
      // PAT count holds once only live files remain.
      Count(files == static_cast<int64_t>(c.files.size()) ? "catalog: exact PAT check"
                                                          : "catalog: PAT check skipped (reclaim pending)");
      if (files == static_cast<int64_t>(c.files.size()))
        EXPECT_EQ(fs().PatRows(c.name), static_cast<int64_t>(DistinctNonZeroBlocks(models)))
            << when << ": PAT rows (stored blocks) of chain " << c.name;
      else
        EXPECT_GT(files, static_cast<int64_t>(c.files.size())) << when << ": swap_file rows of chain " << c.name;
    }
    EXPECT_TRUE(fs().CatalogInvariantsHold()) << when;
    CommandResult r = extra::Cli({"fsck", fs().backing()});
    EXPECT_EQ(r.status, 0) << when << ": chainswap fsck " << fs().backing() << ": " << extra::Describe(r);
  }

  void Remount() {
    const auto& opts = OptionSets()[R(OptionSets().size())];
    Log("clean unmount, catalog checks, fsck, mount with " + Join(opts));
    Count("remount");
    ++remounts_;
    CloseAll();
    ASSERT_FALSE(HasFatalFailure());
    ASSERT_TRUE(daemon().Stop());
    CheckCatalogOffline("after a clean unmount");
    ASSERT_FALSE(HasFailure());
    ASSERT_TRUE(daemon().Start(opts));
    // Nothing is staged after a clean remount: st_blocks is the mapped
    // blocks exactly (statx FORCE_SYNC: the daemon's answer, not a cache).
    for (const auto& c : chains_)
      for (const auto& f : c.files) {
        struct statx stx;
        ASSERT_EQ(::statx(AT_FDCWD, PathOf(*f).c_str(), AT_STATX_FORCE_SYNC, STATX_BLOCKS | STATX_SIZE, &stx), 0)
            << "statx " << Label(*f) << ": " << ErrnoName(errno);
        EXPECT_EQ(stx.stx_blocks, f->m.NonZeroBlocks() * (kBlock / 512))
            << "st_blocks of " << Label(*f) << " after remount";
        EXPECT_EQ(stx.stx_size, f->m.size()) << "st_size of " << Label(*f) << " after remount";
      }
    ASSERT_FALSE(HasFailure());
    CompareAll("after remount");
  }

  // ------------------------------------------------------------- driver

  void Step() {
    const unsigned k = static_cast<unsigned>(R(1000));
    if (k < 200) OpWrite(false);
    else if (k < 270) OpWrite(true);
    else if (k < 360) OpRead(false);
    else if (k < 420) OpRead(true);
    else if (k < 470) OpZero(true);
    else if (k < 520) OpZero(false);
    else if (k < 570) OpTruncate();
    else if (k < 600) OpFallocate();
    else if (k < 670) OpCopyRange();
    else if (k < 700) OpRename();
    else if (k < 710) OpRenameAcrossChains();
    else if (k < 735) OpUnlink();
    else if (k < 765) OpCreate();
    else if (k < 800) OpFsync();
    else if (k < 840) OpMmap(true);
    else if (k < 870) OpMmap(false);
    else if (k < 920) OpZombie();
    else if (k < 945) OpClose();
    else if (k < 965) OpLseek();
    else if (k < 999) OpRead(P(50));
    else Remount();
  }

  std::string ReplayHint() const {
    return "replay: CHAINSWAP_TEST_SEED=" + std::to_string(seed_) + " CHAINSWAP_TEST_OPS=" + std::to_string(ops_) +
           " CHAINSWAP_TEST_VERBOSE=1 BUILD/tests/chainswap_mount_tests --gtest_filter='ModelTest.*'";
  }

  void Report() {
    std::string last;
    for (const auto& l : log_) last += "  " + l + "\n";
    ADD_FAILURE() << "ModelTest failed at op " << op_ << " of " << ops_ << " (seed " << seed_ << "): " << desc_
                  << "\nlast ops:\n" << last << ReplayHint();
  }

  uint64_t seed_ = 0, ops_ = 0, op_ = 0, remounts_ = 0;
  bool verbose_ = false;
  std::mt19937_64 rng_;
  std::vector<Chain> chains_;
  std::vector<FilePtr> zombies_;
  int next_id_ = 0, next_name_ = 0;
  std::string desc_;
  std::deque<std::string> log_;
  std::map<std::string, uint64_t> counts_;  // what ran, for the summary
  AlignedBuf abuf_{kMaxIo + kBlock};
};

TEST_F(ModelTest, RandomOpsAcrossChainsMatchTheModel) {
  seed_ = EnvU64("CHAINSWAP_TEST_SEED", kDefaultSeed);
  ops_ = EnvU64("CHAINSWAP_TEST_OPS", kDefaultOps);
  verbose_ = EnvU64("CHAINSWAP_TEST_VERBOSE", 0) != 0;
  rng_.seed(seed_);
  RecordProperty("seed", std::to_string(seed_));
  RecordProperty("ops", std::to_string(ops_));
  std::fprintf(stderr, "[ info ] ModelTest seed %llu, %llu ops\n", static_cast<unsigned long long>(seed_),
               static_cast<unsigned long long>(ops_));
  SCOPED_TRACE("seed " + std::to_string(seed_) + "; " + ReplayHint());

  const auto& opts = OptionSets()[R(OptionSets().size())];
  ASSERT_TRUE(daemon().Start(opts));
  const size_t nchains = 2 + R(2);
  for (size_t c = 0; c < nchains; ++c) {
    chains_.push_back({"chain" + std::to_string(c), {}});
    ASSERT_TRUE(fs().MakeChain(chains_.back().name));
  }
  for (size_t c = 0; c < nchains; ++c) {
    const size_t n = 2 + R(3);
    for (size_t i = 0; i < n; ++i) {
      auto f = std::make_shared<File>();
      f->id = next_id_++;
      f->chain = c;
      f->name = NewName();
      f->buf = RawFd::Open(PathOf(*f), O_CREAT | O_EXCL | O_RDWR, 0600);
      ASSERT_TRUE(f->buf.ok()) << "create " << Label(*f) << ": " << ErrnoName(errno);
      chains_[c].files.push_back(f);
    }
  }
  Log("mounted with " + Join(opts) + ", " + std::to_string(nchains) + " chains");

  for (op_ = 0; op_ < ops_; ++op_) {
    SCOPED_TRACE("op " + std::to_string(op_));
    Step();
    if (!HasFailure() && (op_ + 1) % kRemountEvery == 0 && op_ + 1 < ops_) Remount();
    else if (!HasFailure() && (op_ + 1) % kCompareEvery == 0) CompareAll("periodic");
    if (HasFailure()) return Report();
  }
  ++op_;
  CompareAll("final");
  if (HasFailure()) return Report();
  CloseAll();
  ASSERT_TRUE(daemon().Stop());
  CheckCatalogOffline("at the end");
  if (HasFailure()) return Report();
  std::string summary;
  for (const auto& [kind, n] : counts_) summary += "  " + kind + ": " + std::to_string(n) + "\n";
  std::fprintf(stderr, "[ info ] ModelTest seed %llu: %llu ops, %llu remounts, all matched; ran:\n%s",
               static_cast<unsigned long long>(seed_), static_cast<unsigned long long>(ops_),
               static_cast<unsigned long long>(remounts_), summary.c_str());
}

}  // namespace
}  // namespace chainswap::mounttest
