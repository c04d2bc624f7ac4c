// fio --verify under load (SPEC §7 "fio with --verify under load"): fio, an
// external checker that knows nothing of chainswap, writes swap files
// through the mount with crc32c-checked blocks and reads every block back —
// sequential and random, buffered and O_DIRECT (psync and libaio), several
// jobs at once — while a thread of this test mixes discards into the same
// files: in ranges that no fio job owns ("gaps") it writes non-zero data
// (O_DIRECT), punches part or all of it out again (PUNCH_HOLE|KEEP_SIZE,
// ZERO_RANGE with and without KEEP_SIZE, block-aligned or not) and reads the
// range back through O_DIRECT (from the daemon, not the page cache) after
// every step, comparing with its own model. fio exits non-zero on the first
// verify failure (verify_fatal=1, exitall_on_error=1).
//
// Once fio is done and the discard thread stopped, every gap is punched whole
// and must read back as zeros; fio re-reads all of its data with
// --verify_only (the same job file: fio regenerates the same offsets from
// the same randseed) while destage may still be running, then again after a
// clean remount (from the content store); the gaps are zeros again, the
// catalog maps exactly the non-zero blocks of every file, the catalog
// invariants hold, and `chainswap fsck` finds the unmounted store clean.
//
// Cases:
//   JobsSharingOneFile...   four jobs at disjoint offsets of one swap file
//                           (seq buffered with 6 KiB writes = read-modify-
//                           write in the daemon, random buffered with mixed
//                           sizes, seq O_DIRECT 1 MiB libaio, random O_DIRECT
//                           4 KiB libaio iodepth 16), gaps between them.
//   OneFilePerJob...        numjobs=2 of two job sections, one file per job
//                           in one chain, verify_backlog (verify while
//                           writing), a gap after each job's range.
//   DedupedBlocks...        two files of one chain written with
//                           verify_pattern=%o and 64 KiB writes: besides
//                           fio's verify header block, every 4 KiB block of
//                           a write holds the write's offset, so blocks
//                           repeat within a write and across the two files.
//                           The chain must store each distinct block once
//                           while crc32c verify passes. (fio 3.33 fills the
//                           buffers of a verified job itself — random per
//                           I/O, or the verify_pattern — so
//                           dedupe_percentage= has no effect under --verify;
//                           verify_pattern is what makes fio's verified data
//                           deduplicable.)
//
// fio is looked up in PATH and is required (scripts/install-deps.sh installs
// it): without it these tests fail, they never skip. Every fio command line
// and job file is printed, with the bytes each job wrote and verified, so a
// failing run can be repeated by hand against a mount; fio's output and the
// daemon log are printed on failure.
//
// Environment:
//   CHAINSWAP_FIO_SIZE_MIB  MiB each fio job writes (default 16; the gaps have
//                           the same size). E.g. 1024 for a soak.
//   CHAINSWAP_TEST_SEED     fio's randseed and the discard thread's seed
//                           (printed; random by default).
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "tests/mount/extra_util.h"
#include "tests/mount/mount_fixture.h"

namespace chainswap::mounttest {
namespace {

using extra::Cli;
using extra::Describe;
using extra::DestageIdle;
using extra::DestageSummary;

// MiB each fio job writes: $CHAINSWAP_FIO_SIZE_MIB or 16.
uint64_t FioMib() {
  if (const char* s = std::getenv("CHAINSWAP_FIO_SIZE_MIB"); s && *s) {
    unsigned long long v = std::strtoull(s, nullptr, 10);
    if (v > 0) return v;
  }
  return 16;
}

// The first executable `name` in $PATH, or "".
std::string FindInPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    std::string p = dir + "/" + name;
    struct stat st;
    if (::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// ------------------------------------------------------------------- fio

// One job section. `size` bytes per clone from `offset`; without a filename
// each of the `numjobs` clones writes its own file NAME.CLONE.0 in the chain
// directory (fio's default file name).
struct FioJob {
  std::string name;
  std::string filename;  // relative to the chain directory, or ""
  uint64_t offset = 0;
  uint64_t size = 0;
  int numjobs = 1;
  std::vector<std::string> options;  // "rw=write", "bs=6k", ...

  std::vector<std::string> Files() const {
    if (!filename.empty()) return {filename};
    std::vector<std::string> v;
    for (int i = 0; i < numjobs; ++i) v.push_back(name + "." + std::to_string(i) + ".0");
    return v;
  }
};

std::string JobFileText(const std::string& directory, uint64_t seed, const std::vector<FioJob>& jobs) {
  std::string t =
      "[global]\n"
      "directory=" + directory + "\n"
      "ioengine=psync\n"
      "verify=crc32c\n"
      "do_verify=1\n"
      "verify_fatal=1\n"
      "exitall_on_error=1\n"
      "verify_state_save=0\n"
      "verify_dump=0\n"
      "fallocate=none\n"       // the files are made by the test (thin), never laid out
      "fsync_on_close=1\n"
      "randrepeat=1\n"
      "randseed=" + std::to_string(seed & 0xffffffffu) + "\n";  // fio takes a signed 64-bit value
  for (const auto& j : jobs) {
    t += "\n[" + j.name + "]\n";
    if (!j.filename.empty()) t += "filename=" + j.filename + "\n";
    t += "offset=" + std::to_string(j.offset) + "\n";
    t += "size=" + std::to_string(j.size) + "\n";
    if (j.numjobs != 1) t += "numjobs=" + std::to_string(j.numjobs) + "\n";
    for (const auto& o : j.options) t += o + "\n";
  }
  return t;
}

struct FioResult {
  std::string command;
  CommandResult run;
  std::string json_text;
  // Per job section: bytes written (simulated under --verify_only) and read
  // (= verified: every read of a verify job checks the block), summed over
  // the section's clones; fio's error codes.
  std::map<std::string, uint64_t> written, verified;
  std::map<std::string, int> errors;
  uint64_t TotalVerified() const {
    uint64_t n = 0;
    for (const auto& [k, v] : verified) n += v;
    return n;
  }
};

// Strings fio prints on a verify failure (verify.c) or another I/O error.
const char* const kFioErrorMarks[] = {"verify failed", "bad magic", "bad header", "Expected CRC",
                                      "verify type mismatch", "io_u error"};

class FioRunner {
 public:
  FioRunner(std::string fio, std::string dir) : fio_(std::move(fio)), dir_(std::move(dir)) {}

  // Runs `fio [--verify_only] JOBFILE` (JSON to a file next to the job file).
  FioResult Run(const std::string& label, const std::string& job_file, bool verify_only) {
    FioResult r;
    const std::string json = dir_ + "/" + label + ".json";
    std::vector<std::string> argv = {fio_, "--output-format=json", "--output=" + json};
    if (verify_only) argv.push_back("--verify_only");
    argv.push_back(job_file);
    for (const auto& a : argv) r.command += (r.command.empty() ? "" : " ") + a;
    std::fprintf(stderr, "[ fio ] %s: %s\n", label.c_str(), r.command.c_str());
    r.run = RunCommand(argv, std::chrono::seconds(300 + 10 * FioMib()));
    r.json_text = ReadText(json);
    auto j = nlohmann::json::parse(r.json_text, nullptr, false);
    if (!j.is_discarded() && j.contains("jobs")) {
      for (const auto& job : j["jobs"]) {
        const std::string name = job.value("jobname", "?");
        r.written[name] += job["write"].value("io_bytes", uint64_t{0});
        r.verified[name] += job["read"].value("io_bytes", uint64_t{0});
        r.errors[name] = std::max(r.errors[name], job.value("error", 0));
      }
    }
    for (const auto& [name, v] : r.verified)
      std::fprintf(stderr, "[ fio ] %s: job %s wrote %llu bytes, verified %llu bytes, error %d\n", label.c_str(),
                   name.c_str(), static_cast<unsigned long long>(r.written[name]),
                   static_cast<unsigned long long>(v), r.errors[name]);
    return r;
  }

 private:
  std::string fio_, dir_;
};

// fio exited 0, printed none of its error marks, and every job section wrote
// (or under --verify_only walked) and verified exactly its bytes.
::testing::AssertionResult FioClean(const FioResult& r, const std::vector<FioJob>& jobs) {
  std::string why;
  if (r.run.timed_out) why += "fio timed out (killed); ";
  if (r.run.status != 0) why += "fio exit status " + std::to_string(r.run.status) + "; ";
  for (const char* m : kFioErrorMarks)
    if (r.run.output.find(m) != std::string::npos || r.json_text.find(m) != std::string::npos)
      why += std::string("fio reports \"") + m + "\"; ";
  if (r.verified.empty()) why += "no job results in fio's JSON output; ";
  for (const auto& j : jobs) {
    const uint64_t want = j.size * static_cast<uint64_t>(j.numjobs);
    auto w = r.written.find(j.name);
    auto v = r.verified.find(j.name);
    auto e = r.errors.find(j.name);
    if (w == r.written.end() || w->second != want)
      why += "job " + j.name + " wrote " + (w == r.written.end() ? "?" : std::to_string(w->second)) +
             " bytes, expected " + std::to_string(want) + "; ";
    if (v == r.verified.end() || v->second != want)
      why += "job " + j.name + " verified " + (v == r.verified.end() ? "?" : std::to_string(v->second)) +
             " bytes, expected " + std::to_string(want) + "; ";
    if (e != r.errors.end() && e->second != 0)
      why += "job " + j.name + " error " + std::to_string(e->second) + " (" + std::strerror(e->second) + "); ";
  }
  if (why.empty()) return ::testing::AssertionSuccess();
  std::string json = r.json_text.size() > 12000 ? "[...]\n" + r.json_text.substr(r.json_text.size() - 12000)
                                                 : r.json_text;
  return ::testing::AssertionFailure() << why << "\ncommand: " << r.command << "\nfio output (stdout+stderr):\n"
                                       << r.run.output << "\nfio JSON output:\n" << json;
}

// --------------------------------------------------------------- discards

// A range of a swap file that no fio job touches.
struct Gap {
  std::string path;
  uint64_t off = 0;
  uint64_t len = 0;  // a multiple of kBlock
};

const char* ModeName(int mode) {
  switch (mode) {
    case FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE: return "PUNCH_HOLE|KEEP_SIZE";
    case FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE: return "ZERO_RANGE|KEEP_SIZE";
    case FALLOC_FL_ZERO_RANGE: return "ZERO_RANGE";
    default: return "?";
  }
}
constexpr int kModes[] = {FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                          FALLOC_FL_ZERO_RANGE};

// Writes and discards in the gaps on its own thread, checking each gap
// against a byte model after every step through O_DIRECT reads. Uses only
// syscalls (no MountedFs, which is single-threaded). The first problem stops
// the thread and is kept in error().
class Discarder {
 public:
  Discarder(std::vector<Gap> gaps, uint64_t seed) : gaps_(std::move(gaps)), seed_(seed), buf_(1 * kMiB) {
    for (const auto& g : gaps_) model_.emplace_back(g.len, uint8_t{0});  // the files start thin
  }
  ~Discarder() { Stop(); }

  ::testing::AssertionResult Open() {
    for (const auto& g : gaps_) {
      int fd = ::open(g.path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
      if (fd < 0) return ::testing::AssertionFailure() << "open " << g.path << ": " << ErrnoName(errno);
      fds_.emplace_back(fd);
    }
    return ::testing::AssertionSuccess();
  }
  void Start() {
    thread_ = std::thread([this] { Loop(); });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // After Stop(): discards every gap whole (the modes in turn) and checks it
  // reads back as zeros.
  ::testing::AssertionResult DiscardAllAndCheck() {
    for (size_t i = 0; i < gaps_.size() && error_.empty(); ++i) {
      const int mode = kModes[i % 3];
      if (!Discard(i, mode, 0, gaps_[i].len)) break;
      Check(i, 0, gaps_[i].len);
    }
    if (!error_.empty()) return ::testing::AssertionFailure() << error_;
    return ::testing::AssertionSuccess();
  }
  // Every gap reads back as its model (zeros after DiscardAllAndCheck) through
  // fresh O_DIRECT descriptors (e.g. after a remount).
  ::testing::AssertionResult Recheck() {
    fds_.clear();
    auto o = Open();
    if (!o) return o;
    for (size_t i = 0; i < gaps_.size() && error_.empty(); ++i) Check(i, 0, gaps_[i].len);
    if (!error_.empty()) return ::testing::AssertionFailure() << error_;
    return ::testing::AssertionSuccess();
  }
  void CloseAll() { fds_.clear(); }

  const std::string& error() const { return error_; }  // after Stop()
  uint64_t steps() const { return steps_; }
  std::string Summary() const {
    std::string s = std::to_string(steps_.load()) + " write+discard steps, " +
                    std::to_string(bytes_written_.load() / kKiB) + " KiB written, ";
    for (size_t m = 0; m < 3; ++m)
      s += std::to_string(by_mode_[m].load()) + " x " + ModeName(kModes[m]) + ", ";
    s += std::to_string(bytes_discarded_.load() / kKiB) + " KiB discarded, " +
         std::to_string(bytes_checked_.load() / kKiB) + " KiB read back (O_DIRECT) and checked";
    return s;
  }

 private:
  // Owns an fd; -1 after a move.
  struct OwnedFd {
    explicit OwnedFd(int f) : fd(f) {}
    OwnedFd(OwnedFd&& o) noexcept : fd(o.fd) { o.fd = -1; }
    OwnedFd& operator=(OwnedFd&&) = delete;
    ~OwnedFd() {
      if (fd >= 0) ::close(fd);
    }
    int fd;
  };

  void Loop() {
    std::mt19937_64 rng(seed_);
    size_t gi = 0;
    while (!stop_ && error_.empty()) {
      Step(gi, rng);
      gi = (gi + 1) % gaps_.size();
      ++steps_;
    }
  }

  // Writes 1-64 fresh blocks at an aligned place in gap `gi`, discards a
  // random part of them (aligned or not) or, one time in eight, the whole
  // gap, then reads the written range (or the whole gap) back.
  void Step(size_t gi, std::mt19937_64& rng) {
    const Gap& g = gaps_[gi];
    const uint64_t blocks = g.len / kBlock;
    const uint64_t nb = 1 + rng() % std::min<uint64_t>(64, blocks);
    const uint64_t wb = rng() % (blocks - nb + 1);
    const uint64_t ws = wb * kBlock, wl = nb * kBlock;
    for (uint64_t b = 0; b < nb; ++b) FillBlock(seed_ ^ 0xD15CA4D000000000ull, block_seq_++, buf_.data() + b * kBlock);
    ssize_t n = ::pwrite(fds_[gi].fd, buf_.data(), wl, static_cast<off_t>(g.off + ws));
    if (n != static_cast<ssize_t>(wl)) {
      Fail("O_DIRECT pwrite of " + std::to_string(wl) + " bytes at " + std::to_string(g.off + ws) + " of " + g.path +
           " returned " + std::to_string(n) + ": " + ErrnoName(errno));
      return;
    }
    std::memcpy(model_[gi].data() + ws, buf_.data(), wl);
    bytes_written_ += wl;
    Remember("write " + std::to_string(wl) + " at " + std::to_string(g.off + ws) + " of " + g.path);

    uint64_t ps, pl;
    const unsigned shape = rng() % 8;
    if (shape == 0) {  // the whole gap
      ps = 0;
      pl = g.len;
    } else if (shape < 5) {  // whole blocks of the written range
      const uint64_t pb = wb + rng() % nb;
      ps = pb * kBlock;
      pl = (1 + rng() % (wb + nb - pb)) * kBlock;
    } else {  // any bytes of the written range
      ps = ws + rng() % wl;
      pl = 1 + rng() % (ws + wl - ps);
    }
    const int mode = kModes[rng() % 3];
    if (!Discard(gi, mode, ps, pl)) return;
    if (shape == 0) Check(gi, 0, g.len);
    else Check(gi, ws, wl);
  }

  bool Discard(size_t gi, int mode, uint64_t ps, uint64_t pl) {
    const Gap& g = gaps_[gi];
    const std::string what = std::string(ModeName(mode)) + " " + std::to_string(pl) + " at " +
                             std::to_string(g.off + ps) + " of " + g.path;
    if (::fallocate(fds_[gi].fd, mode, static_cast<off_t>(g.off + ps), static_cast<off_t>(pl)) != 0) {
      Fail("fallocate " + what + ": " + ErrnoName(errno));
      return false;
    }
    std::memset(model_[gi].data() + ps, 0, pl);
    for (size_t m = 0; m < 3; ++m)
      if (kModes[m] == mode) ++by_mode_[m];
    bytes_discarded_ += pl;
    Remember(what);
    return true;
  }

  // Reads [off, off+len) of gap `gi` (block-aligned) with O_DIRECT and
  // compares it with the model.
  void Check(size_t gi, uint64_t off, uint64_t len) {
    const Gap& g = gaps_[gi];
    for (uint64_t done = 0; done < len && error_.empty();) {
      const uint64_t chunk = std::min<uint64_t>(buf_.size(), len - done);
      ssize_t n = ::pread(fds_[gi].fd, buf_.data(), chunk, static_cast<off_t>(g.off + off + done));
      if (n != static_cast<ssize_t>(chunk)) {
        Fail("O_DIRECT pread of " + std::to_string(chunk) + " bytes at " + std::to_string(g.off + off + done) +
             " of " + g.path + " returned " + std::to_string(n) + ": " + ErrnoName(errno));
        return;
      }
      const uint8_t* want = model_[gi].data() + off + done;
      if (std::memcmp(buf_.data(), want, chunk) != 0) {
        uint64_t i = 0;
        while (buf_.data()[i] == want[i]) ++i;
        uint64_t zeros_expected = 0;
        for (uint64_t k = i & ~(kBlock - 1); k < std::min<uint64_t>(chunk, (i | (kBlock - 1)) + 1); ++k)
          zeros_expected += want[k] == 0;
        Fail("gap " + g.path + " [" + std::to_string(g.off) + ", +" + std::to_string(g.len) + "): byte " +
             std::to_string(g.off + off + done + i) + " reads " + Hex(buf_.data()[i]) + ", expected " + Hex(want[i]) +
             " (" + std::to_string(zeros_expected) + " of the 4096 bytes of its block should be zero)");
        return;
      }
      bytes_checked_ += chunk;
      done += chunk;
    }
  }

  void Remember(std::string what) {
    recent_.push_back(std::move(what));
    if (recent_.size() > 8) recent_.pop_front();
  }
  void Fail(const std::string& what) {
    std::string s = "discard thread (seed " + std::to_string(seed_) + "): " + what + "; last ops, oldest first:";
    for (const auto& r : recent_) s += "\n    " + r;
    error_ = s;
  }

  std::vector<Gap> gaps_;
  uint64_t seed_;
  AlignedBuf buf_;
  std::vector<std::vector<uint8_t>> model_;  // per gap, gap-relative
  std::vector<OwnedFd> fds_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::string error_;  // written by the thread only until it is joined
  std::deque<std::string> recent_;
  uint64_t block_seq_ = 0;
  std::atomic<uint64_t> steps_{0}, bytes_written_{0}, bytes_discarded_{0}, bytes_checked_{0};
  std::atomic<uint64_t> by_mode_[3] = {};
};

// Calls `fn(block)` for each 4 KiB block of `path`, read with O_DIRECT.
::testing::AssertionResult ForEachBlock(const std::string& path, const std::function<void(const uint8_t*)>& fn) {
  Fd fd = Fd::Open(path, O_RDONLY | O_DIRECT);
  if (!fd.ok()) return ::testing::AssertionFailure() << "open " << path << ": " << ErrnoName(errno);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ::testing::AssertionFailure() << "fstat " << path << ": " << ErrnoName(errno);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size % kBlock) return ::testing::AssertionFailure() << path << ": size " << size << " is not whole blocks";
  AlignedBuf buf(1 * kMiB);
  for (uint64_t off = 0; off < size;) {
    const uint64_t chunk = std::min<uint64_t>(buf.size(), size - off);
    ssize_t n = ::pread(fd.get(), buf.data(), chunk, static_cast<off_t>(off));
    if (n != static_cast<ssize_t>(chunk))
      return ::testing::AssertionFailure() << "pread " << path << " at " << off << ": " << n << " "
                                           << ErrnoName(errno);
    for (uint64_t b = 0; b < chunk; b += kBlock) fn(buf.data() + b);
    off += chunk;
  }
  return ::testing::AssertionSuccess();
}

bool IsZero(const uint8_t* p) {
  static const uint8_t zeros[kBlock] = {};
  return std::memcmp(p, zeros, kBlock) == 0;
}

// ------------------------------------------------------------------ test

class FioTest : public MountTest {
 protected:
  static constexpr const char* kChain = "pool";

  void SetUp() override {
    MountTest::SetUp();
    if (HasFatalFailure()) return;
    fio_ = FindInPath("fio");
    ASSERT_FALSE(fio_.empty()) << "fio is not installed (not found in PATH=" << (std::getenv("PATH") ? std::getenv("PATH") : "")
                               << "); scripts/install-deps.sh installs it (Debian package fio)";
    ASSERT_TRUE(fs().MakeChain(kChain));
    seed_ = extra::TestSeed();
    size_ = FioMib() * kMiB;
    std::fprintf(stderr, "[ info ] FioTest seed %llu (CHAINSWAP_TEST_SEED=%llu repeats it), %llu MiB per job\n",
                 static_cast<unsigned long long>(seed_), static_cast<unsigned long long>(seed_),
                 static_cast<unsigned long long>(FioMib()));
  }

  // Makes each swap file thin at its size (fio never lays them out).
  void CreateFiles(const std::map<std::string, uint64_t>& sizes) {
    for (const auto& [name, size] : sizes) {
      Fd fd = Fd::Open(fs().Path(kChain, name), O_CREAT | O_EXCL | O_RDWR);
      ASSERT_TRUE(fd.ok()) << "create " << name << ": " << ErrnoName(errno);
      ASSERT_TRUE(Succeeds(::ftruncate(fd.get(), static_cast<off_t>(size)))) << name;
      files_.push_back(name);
    }
  }

  // The whole check: fio writes and verifies while the discard thread works
  // in the gaps; then the gaps are discarded whole; fio --verify_only while
  // mounted; destage drains; the catalog maps exactly the non-zero blocks
  // (`after_destage` may check more); remount; fio --verify_only again and
  // the gaps are zeros; unmount; fsck clean.
  void RunScenario(const std::string& label, const std::vector<FioJob>& jobs, const std::vector<Gap>& gaps,
                   const std::function<void()>& after_destage = nullptr) {
    const std::string job_file = fs().dir() + "/" + label + ".fio";
    const std::string text = JobFileText(fs().Path(kChain), seed_, jobs);
    {
      std::ofstream out(job_file);
      out << text;
      ASSERT_TRUE(out.good()) << "writing " << job_file;
    }
    std::fprintf(stderr, "[ fio ] job file %s:\n%s", job_file.c_str(), text.c_str());
    FioRunner fio(fio_, fs().dir());

    Discarder discarder(gaps, seed_);
    ASSERT_TRUE(discarder.Open());
    discarder.Start();
    FioResult write = fio.Run(label + "-write", job_file, /*verify_only=*/false);
    const uint64_t steps_during_fio = discarder.steps();
    discarder.Stop();
    EXPECT_TRUE(FioClean(write, jobs)) << "fio write+verify with discards in the gaps";
    EXPECT_EQ(discarder.error(), "");
    std::fprintf(stderr, "[ info ] %s: discard thread: %s; %llu steps while fio ran\n", label.c_str(),
                 discarder.Summary().c_str(), static_cast<unsigned long long>(steps_during_fio));
    ASSERT_FALSE(HasFailure());

    ASSERT_TRUE(discarder.DiscardAllAndCheck()) << "the gaps must read back as zeros once discarded";
    discarder.CloseAll();
    FioResult mounted = fio.Run(label + "-verify-mounted", job_file, /*verify_only=*/true);
    ASSERT_TRUE(FioClean(mounted, jobs)) << "fio --verify_only after the discards, same mount";

    ASSERT_TRUE(WaitUntil([&] { return DestageIdle(fs().mnt()); })) << DestageSummary(fs().mnt());
    int64_t nonzero_total = 0;
    for (const auto& f : files_) {
      int64_t nonzero = 0;
      ASSERT_TRUE(ForEachBlock(fs().Path(kChain, f), [&](const uint8_t* b) { nonzero += !IsZero(b); }));
      EXPECT_TRUE(WaitUntil([&] { return fs().LatRows(kChain, f) == nonzero; }))
          << f << ": LAT rows " << fs().LatRows(kChain, f) << ", non-zero blocks " << nonzero;
      nonzero_total += nonzero;
    }
    EXPECT_TRUE(fs().CatalogInvariantsHold());
    if (after_destage) after_destage();
    ASSERT_FALSE(HasFailure());

    ASSERT_TRUE(fs().Remount());
    FioResult remounted = fio.Run(label + "-verify-remounted", job_file, /*verify_only=*/true);
    EXPECT_TRUE(FioClean(remounted, jobs)) << "fio --verify_only after a clean remount";
    EXPECT_TRUE(discarder.Recheck()) << "the gaps after a clean remount";
    discarder.CloseAll();
    EXPECT_TRUE(fs().CatalogInvariantsHold());

    ASSERT_TRUE(fs().Unmount());
    CommandResult r = Cli({"fsck", fs().backing()});
    EXPECT_EQ(r.status, 0) << "chainswap fsck " << fs().backing() << ": " << Describe(r);
    EXPECT_NE(r.output.find("clean"), std::string::npos) << Describe(r);
    ASSERT_TRUE(fs().Mount());
    if (HasFailure()) return;

    std::fprintf(stderr,
                 "[ info ] %s: %d fio jobs, %llu bytes verified by fio (%llu while writing, %llu + %llu with "
                 "--verify_only before/after the remount), %lld non-zero blocks mapped at the end, fsck clean; passed\n",
                 label.c_str(), Jobs(jobs),
                 static_cast<unsigned long long>(write.TotalVerified() + mounted.TotalVerified() +
                                                 remounted.TotalVerified()),
                 static_cast<unsigned long long>(write.TotalVerified()),
                 static_cast<unsigned long long>(mounted.TotalVerified()),
                 static_cast<unsigned long long>(remounted.TotalVerified()), static_cast<long long>(nonzero_total));
  }

  static int Jobs(const std::vector<FioJob>& jobs) {
    int n = 0;
    for (const auto& j : jobs) n += j.numjobs;
    return n;
  }

  // fio's size for a job of block size `bs`: the per-job size rounded down
  // to whole writes, so that no write crosses into a neighbour's range.
  uint64_t SizeFor(uint64_t bs) const { return size_ - size_ % bs; }

  std::string fio_;
  uint64_t seed_ = 0;
  uint64_t size_ = 0;
  std::vector<std::string> files_;
};

// Four jobs at disjoint offsets of one swap file, a gap between each two:
//   [seq-buffered-6k][gap][rand-buffered][gap][seq-direct-1m][gap][rand-direct-4k][gap]
TEST_F(FioTest, JobsSharingOneFileVerifyWhileTheGapsBetweenThemArePunched) {
  const std::string file = "shared.vswp";
  const uint64_t S = size_;
  std::vector<FioJob> jobs = {
      {"seq-buffered-6k", file, 0 * S, SizeFor(6 * kKiB), 1, {"rw=write", "bs=6k", "direct=0"}},
      {"rand-buffered", file, 2 * S, S, 1, {"rw=randwrite", "bssplit=4k/60:16k/30:64k/10", "direct=0"}},
      {"seq-direct-1m", file, 4 * S, S, 1, {"rw=write", "bs=1m", "direct=1", "ioengine=libaio", "iodepth=4"}},
      {"rand-direct-4k", file, 6 * S, S, 1, {"rw=randwrite", "bs=4k", "direct=1", "ioengine=libaio", "iodepth=16"}},
  };
  CreateFiles({{file, 8 * S}});
  ASSERT_FALSE(HasFatalFailure());
  std::vector<Gap> gaps;
  for (uint64_t k = 0; k < 4; ++k) gaps.push_back({fs().Path(kChain, file), (2 * k + 1) * S, S});
  RunScenario("shared-file", jobs, gaps);
}

// One file per job (numjobs=2 of two sections) in one chain, verifying while
// writing (verify_backlog); each file has a gap after the job's range.
TEST_F(FioTest, OneFilePerJobInOneChainVerifiesWhileWritingWithPunchesAfterEachRange) {
  const uint64_t S = size_;
  std::vector<FioJob> jobs = {
      {"rand-aio", "", 0, S, 2,
       {"rw=randwrite", "bs=4k", "direct=1", "ioengine=libaio", "iodepth=16", "verify_backlog=256"}},
      {"seq-buf", "", 0, S, 2, {"rw=write", "bs=128k", "direct=0", "verify_backlog=32"}},
  };
  std::map<std::string, uint64_t> sizes;
  std::vector<Gap> gaps;
  for (const auto& j : jobs)
    for (const auto& f : j.Files()) {
      sizes[f] = 2 * S;
      gaps.push_back({fs().Path(kChain, f), S, S});
    }
  CreateFiles(sizes);
  ASSERT_FALSE(HasFatalFailure());
  RunScenario("file-per-job", jobs, gaps);
}

// verify_pattern=%o: each 64 KiB write is fio's header block plus 15 blocks
// holding the write's offset, the same in both files at the same offset, so
// the chain dedups them; the store must hold each distinct block once.
TEST_F(FioTest, DedupedBlocksVerifyAcrossFilesOfAChain) {
  const uint64_t S = size_;
  const std::vector<std::string> pattern = {"bs=64k", "verify_pattern=%o"};
  auto with = [&](std::vector<std::string> v) {
    v.insert(v.end(), pattern.begin(), pattern.end());
    return v;
  };
  std::vector<FioJob> jobs = {
      {"dedup-seq-buffered", "a.vswp", 0, SizeFor(64 * kKiB), 1, with({"rw=write", "direct=0"})},
      {"dedup-rand-direct", "b.vswp", 0, SizeFor(64 * kKiB), 1,
       with({"rw=randwrite", "direct=1", "ioengine=libaio", "iodepth=8"})},
  };
  CreateFiles({{"a.vswp", 2 * S}, {"b.vswp", 2 * S}});
  ASSERT_FALSE(HasFatalFailure());
  std::vector<Gap> gaps = {{fs().Path(kChain, "a.vswp"), S, S}, {fs().Path(kChain, "b.vswp"), S, S}};
  RunScenario("dedup", jobs, gaps, [&] {
    std::unordered_set<std::string> distinct;
    int64_t nonzero = 0;
    for (const auto& f : files_)
      ASSERT_TRUE(ForEachBlock(fs().Path(kChain, f), [&](const uint8_t* b) {
        if (IsZero(b)) return;
        ++nonzero;
        distinct.emplace(reinterpret_cast<const char*>(b), kBlock);
      }));
    const auto want = static_cast<int64_t>(distinct.size());
    EXPECT_TRUE(WaitUntil([&] { return fs().PatRows(kChain) == want; }))
        << "stored blocks " << fs().PatRows(kChain) << ", distinct non-zero blocks " << want;
    EXPECT_LT(want * 2, nonzero) << "the workload should have deduplicated most blocks";
    std::fprintf(stderr, "[ info ] dedup: %lld non-zero blocks, %lld distinct, %lld stored\n",
                 static_cast<long long>(nonzero), static_cast<long long>(want),
                 static_cast<long long>(fs().PatRows(kChain)));
  });
}

}  // namespace
}  // namespace chainswap::mounttest
