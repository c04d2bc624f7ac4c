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
//   truncate      ftruncate or truncate(path), grow and shrink, aligned or not
//   O_TRUNC       every way of opening with O_TRUNC: open(O_WRONLY|O_TRUNC),
//                 open(O_RDWR|O_TRUNC|O_CREAT) of an existing file and
//                 open(O_RDWR|O_DIRECT|O_TRUNC) (the fd is kept and sometimes
//                 written), cat-style O_TRUNC + write(2) of another file's
//                 bytes, redirect-style O_WRONLY|O_CREAT|O_TRUNC + write(2),
//                 `cp` of another file over it; the model drops every byte
//                 (size 0), the daemon's size and the whole file are checked
//                 at once
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
//   short chains  two slots of short-lived chains, stepped one op at a time
//                 between the others: mkdir (fresh name, or the name just
//                 removed), create + write + read, more writes, unlink (half
//                 the time while open: the zombie lives on), rmdir (must work
//                 with the unlinked file still open, as on ext4)
//   concurrent    2-4 threads at once, each on its own file (writes, reads,
//                 fsync/fdatasync racing each other, punches, truncates), half
//                 the time with a thread making and removing chains (same
//                 name reused, rmdir with the file open); each thread has its
//                 own RNG seeded from the main one, so the ops do not depend
//                 on timing; joined, then the files are compared
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
// Sizes are checked with fstat, stat and statx(AT_STATX_FORCE_SYNC) (the
// daemon's answer, not the kernel's cached one). At the end: compare all,
// clean unmount, the catalog checks (also: no chain row or stored block of
// a removed chain once its files are reclaimed) and fsck.
//
// The seed is CHAINSWAP_TEST_SEED (decimal or 0x hex) or a fixed default; the
// op count CHAINSWAP_TEST_OPS or 3,000 (2-10 s on two cores, under 40 s with
// TSan or ASan; CHAINSWAP_TEST_OPS=50000 is a soak of a minute or two). The op
// sequence depends on the seed only (the destagers' timing does not steer
// it), so a failure replays with the command the failure message prints;
// CHAINSWAP_TEST_VERBOSE=1 prints every op; CHAINSWAP_TEST_MODEL_OFF=otrunc,
// cp,chains,threads leaves op families out (to tell failures apart). A failure names the seed, the op
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
#include <latch>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
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
constexpr size_t kShortSlots = 2;            // short-lived chains alive at once
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
      // Writes destaged at once; new blocks compressed (the backing
      // directory then holds raw and packed blocks, as after a change of
      // compress=).
      {"idle_seal_ms=1", "bucket_size=8M", "destage_delay=0", "compress=lz4"},
      {"idle_seal_ms=60000", "bucket_size=32M"},
      // Writes wait a minute unless the journal is half full (8M) or an
      // fsync by destage or the unmount waits for them.
      {"destage_delay=60000", "bucket_size=8M", "journal_limit=16M", "fsync_destage=64K"},  // the journal stays: reads come from the staging index
      {"no_dedup_verify"},
      {"queue_slots=4", "delete_slots_min=1", "compress=lz4"},
      {"threads=2", "idle_seal_ms=5", "fsync_destage=4K"},  // every fsync waits for destage
      {"idle_seal_ms=60000", "fsync_destage=4K"},         // fsyncs seal the bucket that idles
      {"hash_table_limit=48", "compress=lz4"},  // the quota is reached at once: blocks stored without a hash entry
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
    // Short-lived chain slots (after the stable chains): made, given a
    // file, emptied and removed again by OpShortChain, a step at a time.
    bool transient = false;
    bool active = true;  // the chain exists (always, for stable chains)
    bool emptied = false;  // transient: its file was unlinked; rmdir next
  };

  void TearDown() override {
    // Every fd on the mount is closed before the fixture unmounts (an open
    // fd would keep `fusermount3 -u` busy).
    DropAllFds();
    extra::DaemonTest::TearDown();
  }

  // Closes every fd the model holds without checking the result, and
  // forgets the unlinked files (their last fd is gone).
  void DropAllFds() {
    for (auto& c : chains_)
      for (auto& f : c.files) {
        f->buf.Reset();
        f->dio.Reset();
      }
    for (auto& z : zombies_) z->buf.Reset();
    zombies_.clear();
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
  // fstat and stat (the kernel's view, which may be cached for the 1 s attr
  // timeout), then statx with AT_STATX_FORCE_SYNC: the daemon's own answer,
  // which a kernel-side update (an O_TRUNC open sets the cached size to 0
  // whatever the daemon did) cannot hide.
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
    struct statx stx;
    int rc = -1;
    if (!f.name.empty())
      rc = ::statx(AT_FDCWD, PathOf(f).c_str(), AT_STATX_FORCE_SYNC, STATX_SIZE, &stx);
    else if (f.buf.ok())
      rc = ::statx(f.buf.get(), "", AT_EMPTY_PATH | AT_STATX_FORCE_SYNC, STATX_SIZE, &stx);
    else
      return ::testing::AssertionSuccess();
    if (rc != 0) return ::testing::AssertionFailure() << "statx FORCE_SYNC " << Label(f) << ": " << ErrnoName(errno);
    st.st_size = static_cast<off_t>(stx.stx_size);
    return SizeIs(f, st, "statx(AT_STATX_FORCE_SYNC) (the daemon's answer)");
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
      const File* src_ptr = files.empty() ? &dst : files[R(files.size())].get();  // an unlinked file's chain may be empty
      const File& src = *src_ptr;
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
  // One of the stable chains (short-lived ones only get their own ops).
  size_t PickChain() { return R(stable_chains_); }
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

  // On a random file of a stable chain, or on `target`.
  void OpWrite(bool direct, File* target = nullptr) {
    File& f = target ? *target : PickAnyFile();
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

  void OpRead(bool direct, File* target = nullptr) {
    File& f = target ? *target : PickAnyFile();
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
    const bool by_path = P(30);  // truncate(2) by name, else ftruncate(2)
    const std::string what = std::string(by_path ? "truncate " : "ftruncate ") + Label(f) + " " +
                             std::to_string(f.m.size()) + " -> " + std::to_string(size);
    Log(what);
    Count(std::string(by_path ? "truncate(path) " : "ftruncate ") + (size < f.m.size() ? "shrink" : "grow"));
    if (by_path) {
      ASSERT_TRUE(Succeeds(::truncate(PathOf(f).c_str(), static_cast<off_t>(size)))) << what;
    } else {
      ASSERT_TRUE(OpenBuf(f));
      ASSERT_TRUE(Succeeds(::ftruncate(f.buf.get(), static_cast<off_t>(size)))) << what;
    }
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
  // `keep_open`: kept as a zombie even when there are kMaxZombies already.
  void Detach(const FilePtr& f, bool keep_open = false) {
    f->name.clear();
    ASSERT_TRUE(CloseFd(f->dio, Label(*f) + " O_DIRECT"));
    if (f->buf.ok() && (keep_open || zombies_.size() < kMaxZombies)) {
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
    size_t b = R(stable_chains_ - 1);
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
    if (chains_[ci].files.size() >= kMaxFiles) return OpUnlink();
    CreateIn(ci);
  }
  void CreateIn(size_t ci) {
    Chain& c = chains_[ci];
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

  // ------------------------------------------------ opening with O_TRUNC

  // Any named file of a stable chain other than `f` (a source to copy).
  File& PickOtherFile(const File& f) {
    std::vector<File*> all;
    for (size_t ci = 0; ci < stable_chains_; ++ci)
      for (auto& g : chains_[ci].files)
        if (g.get() != &f) all.push_back(g.get());
    return *all[R(all.size())];  // never empty: 2+ stable chains, 1+ files each
  }

  // Writes all of `data` at offset 0 with write(2) in chunks, as cat or a
  // shell redirect would.
  static ::testing::AssertionResult WriteSequential(int fd, const std::vector<uint8_t>& data) {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(fd, data.data() + done, std::min<size_t>(data.size() - done, 128 * kKiB));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return ::testing::AssertionFailure() << "write at " << done << ": " << ErrnoName(errno);
      done += static_cast<size_t>(n);
    }
    return ::testing::AssertionSuccess();
  }

  // Every way of emptying a file by opening it with O_TRUNC (the kernel
  // hands O_TRUNC to the daemon's open, FUSE atomic_o_trunc, and sets its
  // cached size to 0 whatever the daemon does): the model drops every byte
  // (size 0), then holds what was written after. Checked at once through
  // the daemon's size and a full compare.
  void OpOpenTrunc() {
    File& f = PickAnyFile();
    const unsigned way = static_cast<unsigned>(R(6));
    if (way == 5 && Off("cp")) return OpRead(P(50));
    static const char* const kWays[] = {
        "open(O_WRONLY|O_TRUNC) + close",
        "open(O_RDWR|O_TRUNC|O_CREAT) of the existing file as its buffered fd",
        "open(O_RDWR|O_DIRECT|O_TRUNC) as its O_DIRECT fd",
        "cat-style: open(O_WRONLY|O_TRUNC) + write(2) of another file's bytes + close",
        "redirect-style: open(O_WRONLY|O_CREAT|O_TRUNC) + write(2) + close",
        "cp of another file over it",
    };
    std::vector<uint8_t> data;  // what the file holds afterwards
    std::string detail;
    const File* src = nullptr;
    if (way == 3 || way == 5) {
      src = &PickOtherFile(f);
      data = src->m.bytes();
      detail = " from " + Label(*src) + " (" + std::to_string(data.size()) + " bytes)";
    } else if (way == 4) {
      std::string kind;
      data = GenData(f, 0, 1 + R(P(50) ? 2 * kBlock : 128 * kKiB), &kind);
      detail = " (" + std::to_string(data.size()) + " bytes, " + kind + ")";
    }
    const uint64_t old = f.m.size();
    const std::string what = std::string(kWays[way]) + " " + Label(f) + " (size " + std::to_string(old) + ")" + detail;
    Log(what);
    Count(std::string("O_TRUNC: ") + kWays[way]);
    const std::string path = PathOf(f);
    switch (way) {
      case 0: {
        RawFd t = RawFd::Open(path, O_WRONLY | O_TRUNC);
        ASSERT_TRUE(t.ok()) << what << ": " << ErrnoName(errno);
        f.m.Truncate(0);
        Record(f, 0, old + kBlock, what);
        ASSERT_TRUE(CheckSize(f)) << what << " (the O_TRUNC fd still open)";
        ASSERT_TRUE(CloseFd(t, what));
        break;
      }
      case 1:
        ASSERT_TRUE(CloseFd(f.buf, Label(f)));
        f.buf = RawFd::Open(path, O_RDWR | O_TRUNC | O_CREAT, 0600);
        ASSERT_TRUE(f.buf.ok()) << what << ": " << ErrnoName(errno);
        f.m.Truncate(0);
        Record(f, 0, old + kBlock, what);
        break;
      case 2:
        ASSERT_TRUE(CloseFd(f.dio, Label(f) + " O_DIRECT"));
        f.dio = RawFd::Open(path, O_RDWR | O_DIRECT | O_TRUNC);
        ASSERT_TRUE(f.dio.ok()) << what << ": " << ErrnoName(errno);
        f.m.Truncate(0);
        Record(f, 0, old + kBlock, what);
        break;
      case 3:
      case 4: {
        RawFd t = RawFd::Open(path, O_WRONLY | O_TRUNC | (way == 4 ? O_CREAT : 0), 0600);
        ASSERT_TRUE(t.ok()) << what << ": " << ErrnoName(errno);
        ASSERT_TRUE(WriteSequential(t.get(), data)) << what;
        ASSERT_TRUE(CloseFd(t, what));
        f.m.Truncate(0);
        f.m.Write(0, data);
        Record(f, 0, std::max<uint64_t>(old, data.size()) + kBlock, what);
        break;
      }
      default: {
        CommandResult r = RunCommand({"cp", PathOf(*src), path});
        ASSERT_EQ(r.status, 0) << what << ": " << extra::Describe(r);
        f.m.Truncate(0);
        f.m.Write(0, data);
        Record(f, 0, std::max<uint64_t>(old, data.size()) + kBlock, what);
        break;
      }
    }
    ASSERT_TRUE(CheckSize(f)) << what;
    // The whole file now and then (nothing of the old bytes may show), else
    // its start and its end.
    if (P(30)) {
      CompareFile(f);
    } else {
      ASSERT_TRUE(OpenDio(f));
      ASSERT_TRUE(ReadCompare(f, f.dio.get(), true, 0, 64 * kKiB, "read-back after O_TRUNC (O_DIRECT)"));
      const uint64_t size = f.m.size();
      ASSERT_TRUE(ReadCompare(f, f.dio.get(), true, size > kBlock ? size - kBlock : 0, 3 * kBlock,
                              "read-back of the end after O_TRUNC (O_DIRECT)"));
    }
    ASSERT_FALSE(HasFatalFailure()) << what;
    // Written again through the fd the O_TRUNC open gave (sometimes).
    if (way == 1 && P(50)) OpWrite(false, &f);
    if (way == 2 && P(50)) OpWrite(true, &f);
  }

  // ------------------------------------------------- short-lived chains

  // Steps one short-lived chain slot through its life, one step per call:
  // mkdir (a fresh name, or the name the slot's last chain had) -> create a
  // file, write and read it -> more writes and reads -> unlink the file
  // (half the time while open: it stays as a zombie, read, written and
  // closed later by OpZombie, often after the rmdir) -> rmdir, which must
  // succeed like on ext4 even while the unlinked file is open.
  void OpShortChain() {
    const size_t ci = stable_chains_ + R(kShortSlots);
    Chain& c = chains_[ci];
    if (!c.active) {
      const bool reuse = !c.name.empty() && P(50);
      if (!reuse) c.name = "short" + std::to_string(next_chain_++);
      const std::string what = "mkdir short-lived chain " + c.name + (reuse ? " (the name of a chain just removed)" : "");
      Log(what);
      Count(reuse ? "short chain: mkdir, reused name" : "short chain: mkdir");
      ASSERT_TRUE(Succeeds(::mkdir(fs().Path(c.name).c_str(), 0755))) << what;
      c.active = true;
      c.emptied = false;
      return;
    }
    if (c.emptied) {
      bool open = false;
      for (const auto& z : zombies_) open |= z->chain == ci;
      const std::string what = "rmdir short-lived chain " + c.name + (open ? " (its unlinked file still open)" : "");
      Log(what);
      Count(open ? "short chain: rmdir, unlinked file still open" : "short chain: rmdir");
      ASSERT_TRUE(Succeeds(::rmdir(fs().Path(c.name).c_str()))) << what;
      struct stat st;
      ASSERT_TRUE(FailsWith(::stat(fs().Path(c.name).c_str(), &st), ENOENT)) << what << ": the chain is still there";
      c.active = false;
      return;
    }
    if (c.files.empty()) {
      Count("short chain: create, write, read");
      CreateIn(ci);
      ASSERT_FALSE(HasFatalFailure());
      File& f = *c.files.back();
      OpWrite(P(30), &f);
      ASSERT_FALSE(HasFatalFailure());
      OpRead(P(50), &f);
      return;
    }
    if (P(40)) {
      Count("short chain: write, read");
      File& f = *c.files[0];
      OpWrite(P(30), &f);
      ASSERT_FALSE(HasFatalFailure());
      OpRead(P(50), &f);
      return;
    }
    FilePtr f = c.files[0];
    const bool open = P(50);
    if (open) {
      ASSERT_TRUE(OpenBuf(*f));
    } else {
      ASSERT_TRUE(CloseFd(f->buf, Label(*f)));
      ASSERT_TRUE(CloseFd(f->dio, Label(*f) + " O_DIRECT"));
    }
    const std::string what = "unlink " + Label(*f) + (open ? " (open)" : "") + ", the last file of a short-lived chain";
    Log(what);
    Count(open ? "short chain: unlink while open" : "short chain: unlink");
    ASSERT_TRUE(Succeeds(::unlink(PathOf(*f).c_str()))) << what;
    c.files.clear();
    c.emptied = true;
    Record(*f, 0, UINT64_MAX, what);
    Detach(f, /*keep_open=*/true);
  }

  // ------------------------------------------------------- concurrency

  // A thread of OpConcurrent. File workers own one file (its model, its
  // fds, its history) for the phase; the churn worker makes and removes
  // chains of its own. Each has an RNG seeded from the main one, so the
  // ops do not depend on timing. No gtest calls and no shared state but
  // the read-only rest of the model; errors are returned in `error`.
  struct Worker {
    File* f = nullptr;  // nullptr: the chain-churn worker
    std::string churn_name;
    std::mt19937_64 rng;
    int ops = 0;
    std::vector<std::string> log;
    std::map<std::string, uint64_t> counts;
    std::string error;
  };
  static constexpr uint64_t kWorkerIo = 64 * kKiB;

  void RunFileWorker(Worker& w) {
    File& f = *w.f;
    auto r = [&](uint64_t n) { return n ? w.rng() % n : 0; };
    AlignedBuf abuf(kWorkerIo + kBlock);
    const std::string who = "[thread on " + Label(f) + "] ";
    for (int i = 0; i < w.ops && w.error.empty(); ++i) {
      const unsigned k = static_cast<unsigned>(r(100));
      if (k < 50) {  // buffered write, or O_DIRECT write of whole blocks
        const bool direct = k >= 35;
        uint64_t len = direct ? (1 + r(kWorkerIo / kBlock)) * kBlock : 1 + r(r(2) ? 2 * kBlock : kWorkerIo);
        uint64_t off = r(kSpan);
        if (direct) off = RoundDown(off);
        std::vector<uint8_t> data(len, 0);
        if (r(10) != 0)
          for (auto& b : data) b = static_cast<uint8_t>(w.rng() | 1);
        const std::string what = who + (direct ? "O_DIRECT pwrite " : "pwrite ") + std::to_string(len) + " at " +
                                 std::to_string(off);
        w.log.push_back(what);
        ++w.counts[direct ? "concurrent: O_DIRECT write" : "concurrent: write"];
        ::testing::AssertionResult res = ::testing::AssertionSuccess();
        if (direct) {
          std::memcpy(abuf.data(), data.data(), len);
          ssize_t n = ::pwrite(f.dio.get(), abuf.data(), len, static_cast<off_t>(off));
          if (n != static_cast<ssize_t>(len)) res = ::testing::AssertionFailure() << (n < 0 ? ErrnoName(errno) : "short write");
        } else {
          res = PwriteAll(f.buf.get(), off, data);
        }
        if (!res) {
          w.error = what + ": " + res.message();
          break;
        }
        f.m.Write(off, data);
        Record(f, off, off + len, what);
      } else if (k < 75) {  // read back, buffered or O_DIRECT
        const bool direct = k >= 62;
        uint64_t off = r(f.m.size() + 2 * kBlock), len = 1 + r(kWorkerIo);
        if (direct) {
          off = RoundDown(off);
          len = RoundUp(len);
        }
        const std::string what = who + (direct ? "O_DIRECT pread " : "pread ") + std::to_string(len) + " at " +
                                 std::to_string(off);
        w.log.push_back(what);
        ++w.counts[direct ? "concurrent: O_DIRECT read" : "concurrent: read"];
        std::vector<uint8_t> plain;
        uint8_t* dst = abuf.data();
        if (!direct) {
          plain.resize(len);
          dst = plain.data();
        }
        uint64_t got = 0;
        while (got < len) {
          ssize_t n = ::pread(direct ? f.dio.get() : f.buf.get(), dst + got, len - got, static_cast<off_t>(off + got));
          if (n < 0) {
            w.error = what + ": " + ErrnoName(errno);
            break;
          }
          if (n == 0) break;
          got += static_cast<uint64_t>(n);
          if (direct && static_cast<uint64_t>(n) % kBlock) break;  // EOF inside a block
        }
        if (!w.error.empty()) break;
        auto res = Compare(f, what, off, len, dst, got);
        if (!res) w.error = res.message();
      } else if (k < 92) {  // fsyncs racing the other threads' fsyncs and writes
        const bool data_only = r(2), direct = r(2);
        const std::string what = who + (data_only ? "fdatasync" : "fsync") + (direct ? " (O_DIRECT fd)" : "");
        w.log.push_back(what);
        ++w.counts[data_only ? "concurrent: fdatasync" : "concurrent: fsync"];
        const int fd = direct ? f.dio.get() : f.buf.get();
        if ((data_only ? ::fdatasync(fd) : ::fsync(fd)) != 0) w.error = what + ": " + ErrnoName(errno);
      } else if (k < 96) {  // punch
        const uint64_t off = r(f.m.size() + kBlock), len = 1 + r(4 * kBlock);
        const std::string what = who + "PUNCH_HOLE|KEEP_SIZE " + std::to_string(len) + " at " + std::to_string(off);
        w.log.push_back(what);
        ++w.counts["concurrent: punch"];
        if (::fallocate(f.buf.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off),
                        static_cast<off_t>(len)) != 0) {
          w.error = what + ": " + ErrnoName(errno);
          break;
        }
        f.m.Zero(off, len, true);
        Record(f, off, off + len, what);
      } else {  // ftruncate
        const uint64_t size = r(kSpan + kWorkerIo), old = f.m.size();
        const std::string what = who + "ftruncate " + std::to_string(old) + " -> " + std::to_string(size);
        w.log.push_back(what);
        ++w.counts["concurrent: ftruncate"];
        if (::ftruncate(f.buf.get(), static_cast<off_t>(size)) != 0) {
          w.error = what + ": " + ErrnoName(errno);
          break;
        }
        f.m.Truncate(size);
        Record(f, std::min(old, size), std::max(old, size) + kBlock, what);
      }
    }
  }

  // Chains made and removed while the other threads write: mkdir (the same
  // name every cycle), create, write, read back, then close + unlink +
  // rmdir, or unlink + rmdir with the file open, read through the fd, close.
  void RunChurnWorker(Worker& w) {
    auto r = [&](uint64_t n) { return n ? w.rng() % n : 0; };
    AlignedBuf wbuf(16 * kBlock), rbuf(16 * kBlock);
    const std::string dir = fs().Path(w.churn_name), file = fs().Path(w.churn_name, "vm.vswp");
    for (int c = 0; c < w.ops && w.error.empty(); ++c) {
      const bool direct = r(2), keep_open = r(2);
      const uint64_t len = (1 + r(16)) * kBlock, off = r(64) * kBlock;
      for (uint64_t i = 0; i < len; i += 8) {
        uint64_t x = w.rng() | 1;
        std::memcpy(wbuf.data() + i, &x, 8);
      }
      const std::string what = "[churn thread] chain " + w.churn_name + " cycle " + std::to_string(c) +
                               ": mkdir, create" + (direct ? " O_DIRECT" : "") + ", pwrite " + std::to_string(len) +
                               " at " + std::to_string(off) + ", pread, " +
                               (keep_open ? "unlink, rmdir with the file open, pread, close" : "close, unlink, rmdir");
      w.log.push_back(what);
      ++w.counts[keep_open ? "concurrent: chain cycle, rmdir with the file open" : "concurrent: chain cycle"];
      auto fail = [&](const std::string& step) { w.error = what + ": " + step + ": " + ErrnoName(errno); };
      if (::mkdir(dir.c_str(), 0755) != 0) return fail("mkdir");
      RawFd fd = RawFd::Open(file, O_CREAT | O_EXCL | O_RDWR | (direct ? O_DIRECT : 0), 0600);
      if (!fd.ok()) return fail("create");
      if (::pwrite(fd.get(), wbuf.data(), len, static_cast<off_t>(off)) != static_cast<ssize_t>(len)) return fail("pwrite");
      auto check = [&](const char* when) {
        ssize_t n = ::pread(fd.get(), rbuf.data(), len, static_cast<off_t>(off));
        if (n != static_cast<ssize_t>(len)) {
          fail(std::string("pread ") + when + (n >= 0 ? " (short: " + std::to_string(n) + ")" : ""));
          return false;
        }
        if (std::memcmp(rbuf.data(), wbuf.data(), len) != 0) {
          w.error = what + ": pread " + when + ": not the bytes written";
          return false;
        }
        return true;
      };
      if (!check("after the write")) return;
      if (!keep_open && fd.Close() != 0) return fail("close");
      if (::unlink(file.c_str()) != 0) return fail("unlink");
      if (::rmdir(dir.c_str()) != 0) return fail(keep_open ? "rmdir (the unlinked file still open)" : "rmdir");
      if (keep_open) {
        if (!check("through the fd after the rmdir")) return;
        if (fd.Close() != 0) return fail("close after the rmdir");
      }
    }
  }

  // 2-4 threads at once, each on its own file (writes, reads, fsyncs racing
  // each other, punches, truncates), and half the time a thread making and
  // removing chains; joined, then every file involved is compared.
  void OpConcurrent() {
    std::vector<File*> all;
    for (size_t ci = 0; ci < stable_chains_; ++ci)
      for (auto& g : chains_[ci].files) all.push_back(g.get());
    const size_t nfiles = std::min<size_t>(2 + R(3), all.size());
    std::vector<Worker> workers(nfiles);
    std::string what = "concurrent phase:";
    for (size_t i = 0; i < nfiles; ++i) {
      std::swap(all[i], all[i + R(all.size() - i)]);
      workers[i].f = all[i];
      what += " " + Label(*all[i]);
    }
    if (!Off("chains") && P(50)) {
      workers.emplace_back();
      workers.back().churn_name = P(50) ? "churn" : "churn" + std::to_string(next_chain_++);
      what += " + chains " + workers.back().churn_name + " made and removed";
    }
    for (auto& w : workers) {
      w.rng.seed(rng_());
      w.ops = w.f ? static_cast<int>(4 + R(12)) : static_cast<int>(1 + R(3));
      if (w.f) {
        ASSERT_TRUE(OpenBuf(*w.f));
        ASSERT_TRUE(OpenDio(*w.f));
      }
    }
    Log(what);
    Count(workers.back().f ? "concurrent phase" : "concurrent phase with chain churn");
    {
      std::latch start(static_cast<std::ptrdiff_t>(workers.size()));
      std::vector<std::thread> threads;
      for (auto& w : workers)
        threads.emplace_back([this, &start, wp = &w] {
          start.arrive_and_wait();
          if (wp->f) RunFileWorker(*wp);
          else RunChurnWorker(*wp);
        });
      for (auto& t : threads) t.join();
    }
    for (auto& w : workers) {
      for (const auto& l : w.log) Log(l);
      for (const auto& [k, n] : w.counts) counts_[k] += n;
    }
    for (auto& w : workers) {
      if (w.error.empty()) continue;
      desc_ = w.error;
      FAIL() << w.error;
    }
    for (auto& w : workers) {
      if (!w.f) {
        struct stat st;
        ASSERT_TRUE(FailsWith(::stat(fs().Path(w.churn_name).c_str(), &st), ENOENT)) << "chain " << w.churn_name;
        continue;
      }
      CompareFile(*w.f);
      ASSERT_FALSE(HasFatalFailure());
    }
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
    for (const auto& c : chains_)
      if (c.active) want.insert(c.name);
    ASSERT_EQ(names, want) << "chains at the mount root";
    for (auto& c : chains_) {
      if (!c.active) continue;
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
    std::set<std::string> active;
    for (const auto& c : chains_) {
      if (!c.active) continue;
      active.insert(c.name);
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
      if (files == static_cast<int64_t>(c.files.size())) {
        // Blocks stored without a hash entry (at the hash_table_limit=
        // quota) are never matched: a content has at most one indexed
        // block, and any number of unindexed ones.
        const int64_t unindexed = fs().QueryInt(
            "SELECT count(*) FROM pat p JOIN chain c ON c.dedup_id = p.dedup_id WHERE p.hash_key IS NULL AND "
            "c.name = ?1",
            {c.name});
        const int64_t distinct = static_cast<int64_t>(DistinctNonZeroBlocks(models));
        if (unindexed == 0) {
          EXPECT_EQ(fs().PatRows(c.name), distinct) << when << ": PAT rows (stored blocks) of chain " << c.name;
        } else {
          Count("catalog: PAT check with blocks stored at the hash table quota");
          EXPECT_GE(fs().PatRows(c.name), distinct) << when << ": PAT rows of chain " << c.name;
          EXPECT_LE(fs().PatRows(c.name), distinct + unindexed)
              << when << ": PAT rows of chain " << c.name << " (" << unindexed << " without a hash entry)";
        }
      } else
        EXPECT_GT(files, static_cast<int64_t>(c.files.size())) << when << ": swap_file rows of chain " << c.name;
    }
    // Removed chains (short-lived ones, the churn thread's) leave nothing
    // once their files are reclaimed: no chain row, no stored block.
    for (const Row& row : fs().Query("SELECT c.name, c.dedup_id, (SELECT count(*) FROM swap_file f WHERE "
                                     "f.dedup_id = c.dedup_id) FROM chain c")) {
      if (row.size() != 3 || !row[0] || active.count(*row[0])) continue;
      EXPECT_NE(row[2].value_or("0"), "0") << when << ": the row of a removed chain (name " << *row[0]
                                           << ", dedup ID " << row[1].value_or("NULL")
                                           << ") outlives its files";
    }
    EXPECT_EQ(fs().QueryInt("SELECT count(*) FROM pat p WHERE NOT EXISTS (SELECT 1 FROM chain c WHERE c.dedup_id = "
                            "p.dedup_id) AND NOT EXISTS (SELECT 1 FROM swap_file f WHERE f.dedup_id = p.dedup_id)"),
              0)
        << when << ": stored blocks (PAT rows) of removed chains with no file left";
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

  // kill -9 of the daemon with files open (no flush, no release), then a
  // mount that replays the journal: every write acknowledged before the
  // kill must read back (a process crash loses nothing the daemon answered;
  // the model's writes are all acknowledged when they return, mmap writes
  // at their msync). Unlinked files still open are gone with their fds.
  void CrashRemount() {
    const auto& opts = OptionSets()[R(OptionSets().size())];
    Log("kill -9 with files open, mount with " + Join(opts) + " (replay)");
    Count("kill -9 and replay");
    ++remounts_;
    ASSERT_TRUE(daemon().Kill9());
    // The fds are dead (ENOTCONN); closing them is all that is left to do.
    DropAllFds();
    ASSERT_TRUE(daemon().Start(opts));
    CompareAll("after kill -9 and replay");
    ASSERT_FALSE(HasFailure());
    // Now and then straight into a clean remount: its offline catalog check
    // and fsck then see what replay and destage made of the crash.
    if (P(30)) Remount();
  }

  // ------------------------------------------------------------- driver

  void Step() {
    const unsigned k = static_cast<unsigned>(R(1000));
    if (k < 185) OpWrite(false);
    else if (k < 250) OpWrite(true);
    else if (k < 330) OpRead(false);
    else if (k < 385) OpRead(true);
    else if (k < 430) OpZero(true);
    else if (k < 475) OpZero(false);
    else if (k < 520) OpTruncate();
    else if (k < 555) Off("otrunc") ? OpRead(P(50)) : OpOpenTrunc();
    else if (k < 580) OpFallocate();
    else if (k < 645) OpCopyRange();
    else if (k < 675) OpRename();
    else if (k < 685) OpRenameAcrossChains();
    else if (k < 708) OpUnlink();
    else if (k < 735) OpCreate();
    else if (k < 770) OpFsync();
    else if (k < 805) OpMmap(true);
    else if (k < 832) OpMmap(false);
    else if (k < 877) OpZombie();
    else if (k < 897) OpClose();
    else if (k < 915) OpLseek();
    else if (k < 960) Off("chains") ? OpRead(P(50)) : OpShortChain();
    else if (k < 966) Off("threads") ? OpRead(P(50)) : OpConcurrent();
    else if (k < 997) OpRead(P(50));
    else if (k < 999 && !Off("crash")) CrashRemount();
    else Remount();
  }

  // CHAINSWAP_TEST_MODEL_OFF: op families left out (a read instead), to
  // tell failures apart: otrunc (O_TRUNC opens, cp), cp, chains
  // (short-lived chains and the churn thread), threads (concurrent phases),
  // crash (kill -9 cycles: clean remounts instead).
  bool Off(const std::string& family) const {
    return (std::string(",") + off_ + ",").find("," + family + ",") != std::string::npos;
  }

  std::string ReplayHint() const {
    return "replay: CHAINSWAP_TEST_SEED=" + std::to_string(seed_) + " CHAINSWAP_TEST_OPS=" + std::to_string(ops_) +
           (off_.empty() ? "" : " CHAINSWAP_TEST_MODEL_OFF=" + off_) +
           " CHAINSWAP_TEST_VERBOSE=1 BUILD/tests/chainswap_mount_tests --gtest_filter='ModelTest.*'";
  }

  void Report() {
    std::string last;
    for (const auto& l : log_) last += "  " + l + "\n";
    ADD_FAILURE() << "ModelTest failed at op " << op_ << " of " << ops_ << " (seed " << seed_ << "): " << desc_
                  << "\nlast ops:\n" << last << ReplayHint();
  }

  uint64_t seed_ = 0, ops_ = 0, op_ = 0, remounts_ = 0;
  size_t stable_chains_ = 0;  // chains_[0, stable_chains_) never go; then kShortSlots short-lived slots
  int next_chain_ = 0;        // for fresh short-lived chain names
  std::string off_;           // CHAINSWAP_TEST_MODEL_OFF
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
  if (const char* off = std::getenv("CHAINSWAP_TEST_MODEL_OFF")) off_ = off;
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
  stable_chains_ = nchains;
  for (size_t s = 0; s < kShortSlots; ++s) {
    chains_.push_back({});
    chains_.back().transient = true;
    chains_.back().active = false;
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
    if (!HasFailure() && (op_ + 1) % kRemountEvery == 0 && op_ + 1 < ops_) {
      if ((op_ + 1) / kRemountEvery % 2 == 0 && !Off("crash")) CrashRemount();
      else Remount();
    }
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
