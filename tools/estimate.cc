#include "tools/estimate.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <queue>
#include <thread>

#include "catalog/block.h"
#include "catalog/compression.h"
#include "catalog/mutex.h"
#include "tools/format_table.h"

namespace chainswap {
namespace {

// One read of a worker: small enough to stay in the CPU cache between the
// copy out of the page cache and the hash (4 MiB reads spent 41 % of the
// CPU in that copy), large enough for few syscalls.
constexpr uint64_t kChunkBytes = 256ull << 10;
// Reads are announced (POSIX_FADV_WILLNEED) this many chunks ahead, so the
// disk is busy while the workers hash and compress.
constexpr uint64_t kReadAheadChunks = 32;
constexpr size_t kShards = 256;
constexpr size_t kMinShardSlots = 16;
constexpr uint64_t kMergeBufferBytes = 8ull << 20;  // all run readers together
constexpr uint64_t kProcessBytes = 8ull << 20;      // the process before any of the above
constexpr uint64_t kMinTableBytes = 1ull << 20;

// One distinct block. 24 bytes; refs == 0 marks an empty slot.
struct Entry {
  uint64_t h0 = 0, h1 = 0;
  uint32_t refs = 0;
  uint16_t lz4_bytes = 0;  // 0: stored raw
  uint8_t sectors = 0;
  uint8_t ideal_sectors = 0;  // LZ4 alone rounded up to 512 B, 8 above 3584 B (the ideal)
};
static_assert(sizeof(Entry) == 24);

bool HashLess(const Entry& a, const Entry& b) { return a.h0 != b.h0 ? a.h0 < b.h0 : a.h1 < b.h1; }

Entry KeyOf(const BlockHash& h) {
  Entry e;
  std::memcpy(&e.h0, h.bytes.data(), 8);
  std::memcpy(&e.h1, h.bytes.data() + 8, 8);
  return e;
}

// The table of distinct blocks: kShards open-addressing (linear probing)
// hash tables, each under its own mutex, each growing by doubling up to a
// cap that keeps the whole table within its memory bound. Full() says when
// a shard at its cap passed 85 % load: the caller then spills (Drain).
class DistinctTable {
 public:
  explicit DistinctTable(uint64_t budget_bytes) {
    uint64_t per_shard = std::max<uint64_t>(kMinShardSlots, budget_bytes / (kShards * sizeof(Entry)));
    cap_slots_ = std::bit_floor(per_shard);
    for (Shard& s : shards_) {
      MutexLock l(&s.mu);
      s.slots.assign(kMinShardSlots, Entry{});
    }
  }

  // Adds a reference to `key`'s block if the table has it.
  bool AddRef(const Entry& key) {
    Shard& s = ShardOf(key);
    MutexLock l(&s.mu);
    Entry* e = Find(s, key);
    if (e->refs == 0) return false;
    ++e->refs;
    return true;
  }

  // Adds a reference to `e`'s block, inserting it with e's sizes if absent.
  void Insert(const Entry& e) {
    Shard& s = ShardOf(e);
    MutexLock l(&s.mu);
    Entry* slot = Find(s, e);
    if (slot->refs != 0) {
      ++slot->refs;
      return;
    }
    *slot = e;
    slot->refs = 1;
    ++s.used;
    if (s.used * 4 >= s.slots.size() * 3) {
      if (s.slots.size() < cap_slots_ || s.used * 16 >= s.slots.size() * 15) {
        Grow(s);  // past the cap only when the caller did not spill in time
      } else {
        full_.store(true, std::memory_order_relaxed);
      }
    }
    if (s.slots.size() >= cap_slots_ && s.used * 20 >= s.slots.size() * 17) full_.store(true, std::memory_order_relaxed);
  }

  bool Full() const { return full_.load(std::memory_order_relaxed); }

  // Moves every entry into `out`, sorted by hash, and empties the table.
  // The caller excludes concurrent AddRef/Insert.
  void Drain(std::vector<Entry>* out) {
    out->clear();
    for (Shard& s : shards_) {
      MutexLock l(&s.mu);
      for (const Entry& e : s.slots)
        if (e.refs != 0) out->push_back(e);
      s.slots.assign(std::min<size_t>(s.slots.size(), cap_slots_), Entry{});
      s.used = 0;
    }
    full_.store(false, std::memory_order_relaxed);
    std::sort(out->begin(), out->end(), HashLess);
  }

  uint64_t cap_bytes() const { return cap_slots_ * kShards * sizeof(Entry); }

 private:
  struct Shard {
    Mutex mu;
    std::vector<Entry> slots GUARDED_BY(mu);
    size_t used GUARDED_BY(mu) = 0;
  };

  Shard& ShardOf(const Entry& k) { return shards_[k.h0 & (kShards - 1)]; }

  // The slot holding `k`, or the empty slot where it would go.
  static Entry* Find(Shard& s, const Entry& k) REQUIRES(s.mu) {
    const size_t mask = s.slots.size() - 1;
    for (size_t i = (k.h0 >> 8) & mask;; i = (i + 1) & mask) {
      Entry& e = s.slots[i];
      if (e.refs == 0 || (e.h0 == k.h0 && e.h1 == k.h1)) return &e;
    }
  }

  static void Grow(Shard& s) REQUIRES(s.mu) {
    std::vector<Entry> old(s.slots.size() * 2);
    old.swap(s.slots);
    for (const Entry& e : old)
      if (e.refs != 0) *Find(s, e) = e;
  }

  std::array<Shard, kShards> shards_;
  uint64_t cap_slots_ = kMinShardSlots;
  std::atomic<bool> full_{false};
};

// Where row `refs` goes: floor(log2(refs)).
size_t RowOf(uint64_t refs) { return static_cast<size_t>(std::bit_width(refs) - 1); }

void Account(const Entry& e, std::vector<RefcountRow>* rows, EstimateReport* r) {
  const size_t row = RowOf(e.refs);
  if (rows->size() <= row) rows->resize(row + 1);
  RefcountRow& w = (*rows)[row];
  const uint64_t psize = e.lz4_bytes ? e.lz4_bytes : kBlockSize;
  const uint64_t dsize = uint64_t{e.sectors} * kSectorSize;
  w.blocks += 1;
  w.lsize += kBlockSize;
  w.psize += psize;
  w.dsize += dsize;
  w.ref_blocks += e.refs;
  w.ref_lsize += uint64_t{e.refs} * kBlockSize;
  w.ref_psize += e.refs * psize;
  w.ref_dsize += e.refs * dsize;
  r->distinct_blocks += 1;
  r->raw_blocks += e.lz4_bytes == 0 ? 1 : 0;
  r->stored_bytes_off += kBlockSize;
  r->stored_bytes_lz4 += dsize;
  r->lz4_bytes += psize;
  r->ideal_bytes_lz4 += uint64_t{e.ideal_sectors} * kSectorSize;
}

// An unlinked temporary file of sorted runs.
class SpillFile {
 public:
  ~SpillFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  Status Open(const std::string& dir) {
    fd_ = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd_ < 0) {
      std::string templ = dir + "/chainswap-estimate.XXXXXX";
      fd_ = ::mkstemp(templ.data());
      if (fd_ < 0) return Status::FromErrno("temporary file in " + dir);
      ::unlink(templ.c_str());
    }
    return Status::Ok();
  }
  bool open() const { return fd_ >= 0; }
  // Appends one sorted run.
  Status Write(const std::vector<Entry>& run, const std::string& dir) {
    const auto* p = reinterpret_cast<const char*>(run.data());
    size_t left = run.size() * sizeof(Entry);
    const uint64_t begin = end_;
    while (left > 0) {
      ssize_t n = ::pwrite(fd_, p, left, static_cast<off_t>(end_));
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno("spill to a temporary file in " + dir);
      }
      p += n;
      left -= static_cast<size_t>(n);
      end_ += static_cast<uint64_t>(n);
    }
    runs_.push_back({begin, end_});
    return Status::Ok();
  }
  int fd() const { return fd_; }
  const std::vector<std::pair<uint64_t, uint64_t>>& runs() const { return runs_; }

 private:
  int fd_ = -1;
  uint64_t end_ = 0;
  std::vector<std::pair<uint64_t, uint64_t>> runs_;  // [begin, end) byte ranges
};

// Reads one run of a SpillFile through a small buffer.
class RunReader {
 public:
  RunReader(int fd, uint64_t begin, uint64_t end, size_t buffer_entries)
      : fd_(fd), next_(begin), end_(end), buf_(std::max<size_t>(buffer_entries, 16)) {}
  // The current entry, or nullptr at the end; Status errors are sticky.
  const Entry* Peek() {
    if (pos_ == len_ && !Refill()) return nullptr;
    return &buf_[pos_];
  }
  void Pop() { ++pos_; }
  const Status& status() const { return status_; }

 private:
  bool Refill() {
    if (next_ >= end_ || !status_.ok()) return false;
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf_.size() * sizeof(Entry), end_ - next_));
    size_t got = 0;
    while (got < want) {
      ssize_t n = ::pread(fd_, reinterpret_cast<char*>(buf_.data()) + got, want - got, static_cast<off_t>(next_ + got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        status_ = n < 0 ? Status::FromErrno("read back a spill run") : Status::Error(EIO, "spill run truncated");
        return false;
      }
      got += static_cast<size_t>(n);
    }
    next_ += got;
    pos_ = 0;
    len_ = got / sizeof(Entry);
    return len_ > 0;
  }
  int fd_;
  uint64_t next_, end_;
  std::vector<Entry> buf_;
  size_t pos_ = 0, len_ = 0;
  Status status_;
};

struct Image {
  std::string path;
  int fd = -1;
  uint64_t size = 0;
};

struct Chunk {
  size_t image;
  uint64_t offset, length;
};

// The images as one sequence of chunks, kChunkBytes each (an image's last
// one may be shorter), numbered across the images in order.
class ChunkMap {
 public:
  explicit ChunkMap(const std::vector<Image>& images) : images_(images) {
    for (const Image& img : images) {
      first_.push_back(total_);
      total_ += (img.size + kChunkBytes - 1) / kChunkBytes;
    }
  }
  uint64_t size() const { return total_; }
  // REQUIRES: c < size()
  Chunk At(uint64_t c) const {
    const size_t i = static_cast<size_t>(std::upper_bound(first_.begin(), first_.end(), c) - first_.begin()) - 1;
    const uint64_t off = (c - first_[i]) * kChunkBytes;
    return {i, off, std::min(kChunkBytes, images_[i].size - off)};
  }

 private:
  const std::vector<Image>& images_;
  std::vector<uint64_t> first_;  // the first chunk number of each image
  uint64_t total_ = 0;
};

// The shared state of one Estimate() run.
class Run {
 public:
  Run(uint64_t table_bytes, std::string tmpdir) : table_(table_bytes), tmpdir_(std::move(tmpdir)) {}

  std::vector<Image> images;
  std::unique_ptr<ChunkMap> chunks;  // set once the images are open
  std::atomic<uint64_t> next_chunk{0};
  std::atomic<uint64_t> bytes_done{0};

  void Work() {
    const BlockHasher hasher(HashSeed{});
    std::unique_ptr<uint8_t[]> buf(new uint8_t[kChunkBytes]);
    std::array<uint8_t, kMaxCompressedBytes> scratch;
    struct Pending {
      Entry key;
      uint64_t offset;  // of the block in buf
    };
    std::vector<Pending> keys;
    keys.reserve(kChunkBytes / kBlockSize);
    uint64_t zero = 0, nonzero = 0;
    for (uint64_t c; (c = next_chunk.fetch_add(1)) < chunks->size() && !failed_.load();) {
      const Chunk ch = chunks->At(c);
      const Image& img = images[ch.image];
      if (c + kReadAheadChunks < chunks->size()) {
        const Chunk ahead = chunks->At(c + kReadAheadChunks);
        ::posix_fadvise(images[ahead.image].fd, static_cast<off_t>(ahead.offset), static_cast<off_t>(ahead.length),
                        POSIX_FADV_WILLNEED);
      }
      Status st = ReadChunk(img, ch, buf.get());
      if (!st.ok()) {
        Fail(std::move(st));
        break;
      }
      const uint64_t padded = (ch.length + kBlockSize - 1) / kBlockSize * kBlockSize;
      std::memset(buf.get() + ch.length, 0, padded - ch.length);
      keys.clear();
      for (uint64_t off = 0; off < padded; off += kBlockSize) {
        const uint8_t* b = buf.get() + off;
        if (IsZeroBlock(b)) {
          ++zero;
          continue;
        }
        ++nonzero;
        keys.push_back({KeyOf(hasher.Hash(b)), off});
      }
      {
        ReaderLock tables(&spill_mu_);
        for (auto [k, off] : keys) {
          if (table_.AddRef(k)) continue;
          // First sight of this block (in this run of the table): compress
          // it outside every shard lock.
          const CompressedBlock cb = BlockCompressor::Compress(buf.get() + off, scratch);
          k.lz4_bytes = static_cast<uint16_t>(cb.bytes);
          k.sectors = static_cast<uint8_t>(cb.sectors);
          // Without the stored form's header: LZ4's own size, also for a
          // block the header pushes past 3584 bytes.
          const uint32_t n = cb.raw() ? BlockCompressor::Lz4Bytes(buf.get() + off, scratch) : cb.bytes;
          k.ideal_sectors = static_cast<uint8_t>(n ? (n + kSectorSize - 1) / kSectorSize : kSectorsPerBlock);
          table_.Insert(k);
        }
      }
      bytes_done.fetch_add(ch.length, std::memory_order_relaxed);
      if (table_.Full()) {
        WriterLock spill(&spill_mu_);
        if (table_.Full()) {
          Status sp = SpillLocked();
          if (!sp.ok()) {
            Fail(std::move(sp));
            break;
          }
        }
      }
    }
    zero_blocks_.fetch_add(zero);
    nonzero_blocks_.fetch_add(nonzero);
  }

  // After the workers: merges the table and the runs into `r`.
  Status Finish(EstimateReport* r) {
    {
      MutexLock l(&fail_mu_);
      if (!failed_status_.ok()) return failed_status_;
    }
    WriterLock spill(&spill_mu_);
    r->zero_blocks = zero_blocks_.load();
    r->nonzero_blocks = nonzero_blocks_.load();
    r->table_bytes = table_.cap_bytes();
    std::vector<Entry> rest;
    table_.Drain(&rest);
    std::vector<RefcountRow> rows;
    if (!spill_.open()) {
      for (const Entry& e : rest) Account(e, &rows, r);
    } else {
      CS_RETURN_IF_ERROR(spill_.Write(rest, tmpdir_));
      ++spills_;
      rest.clear();
      rest.shrink_to_fit();
      CS_RETURN_IF_ERROR(Merge(&rows, r));
    }
    r->spill_runs = spills_;
    for (size_t i = 0; i < rows.size(); ++i) {
      rows[i].min_refs = uint64_t{1} << i;
      if (rows[i].blocks) r->rows.push_back(rows[i]);
    }
    return Status::Ok();
  }

 private:
  Status ReadChunk(const Image& img, const Chunk& ch, uint8_t* buf) {
    uint64_t got = 0;
    while (got < ch.length) {
      ssize_t n = ::pread(img.fd, buf + got, ch.length - got, static_cast<off_t>(ch.offset + got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::FromErrno("read " + img.path);
      if (n == 0) {
        // The image shrank while being read: count what is left as zero.
        std::memset(buf + got, 0, ch.length - got);
        break;
      }
      got += static_cast<uint64_t>(n);
    }
    return Status::Ok();
  }

  Status SpillLocked() REQUIRES(spill_mu_) {
    if (!spill_.open()) CS_RETURN_IF_ERROR(spill_.Open(tmpdir_));
    std::vector<Entry> run;
    table_.Drain(&run);
    CS_RETURN_IF_ERROR(spill_.Write(run, tmpdir_));
    ++spills_;
    return Status::Ok();
  }

  // K-way merge of the sorted runs, summing the references of equal hashes.
  Status Merge(std::vector<RefcountRow>* rows, EstimateReport* r) REQUIRES(spill_mu_) {
    const auto& runs = spill_.runs();
    const size_t per_reader = kMergeBufferBytes / sizeof(Entry) / std::max<size_t>(runs.size(), 1);
    std::vector<RunReader> readers;
    readers.reserve(runs.size());
    for (const auto& [b, e] : runs) readers.emplace_back(spill_.fd(), b, e, per_reader);
    auto greater = [&](size_t a, size_t b) { return HashLess(*readers[b].Peek(), *readers[a].Peek()); };
    std::priority_queue<size_t, std::vector<size_t>, decltype(greater)> heap(greater);
    for (size_t i = 0; i < readers.size(); ++i)
      if (readers[i].Peek()) heap.push(i);
    bool have = false;
    Entry cur;
    while (!heap.empty()) {
      const size_t i = heap.top();
      heap.pop();
      const Entry e = *readers[i].Peek();
      readers[i].Pop();
      if (readers[i].Peek()) heap.push(i);
      if (have && cur.h0 == e.h0 && cur.h1 == e.h1) {
        cur.refs += e.refs;
        continue;
      }
      if (have) Account(cur, rows, r);
      cur = e;
      have = true;
    }
    if (have) Account(cur, rows, r);
    for (const RunReader& rd : readers) CS_RETURN_IF_ERROR(rd.status());
    return Status::Ok();
  }

  void Fail(Status st) {
    MutexLock l(&fail_mu_);
    if (failed_status_.ok()) failed_status_ = std::move(st);
    failed_.store(true);
  }

  // Shared by the workers while they use the table, exclusive to spill and
  // to Finish. Lock order: spill_mu_, then a shard's mutex.
  SharedMutex spill_mu_;
  DistinctTable table_;
  SpillFile spill_ GUARDED_BY(spill_mu_);
  uint64_t spills_ GUARDED_BY(spill_mu_) = 0;
  const std::string tmpdir_;
  std::atomic<uint64_t> zero_blocks_{0}, nonzero_blocks_{0};
  std::atomic<bool> failed_{false};
  Mutex fail_mu_;
  Status failed_status_ GUARDED_BY(fail_mu_);
};

std::string Compact(uint64_t v) {
  // zdb -S style: 3 significant digits and a binary suffix.
  static const char* kSuffix[] = {"", "K", "M", "G", "T", "P"};
  double d = static_cast<double>(v);
  int i = 0;
  while (d >= 1024 && i < 5) {
    d /= 1024;
    ++i;
  }
  char out[32];
  if (i == 0)
    std::snprintf(out, sizeof out, "%" PRIu64, v);
  else
    std::snprintf(out, sizeof out, d < 10 ? "%.2f%s" : d < 100 ? "%.1f%s" : "%.0f%s", d, kSuffix[i]);
  return out;
}

double Ratio(uint64_t a, uint64_t b) { return b == 0 ? 0.0 : static_cast<double>(a) / static_cast<double>(b); }

}  // namespace

double EstimateReport::dedup_ratio() const { return Ratio(nonzero_blocks * kBlockSize, stored_bytes_off); }
double EstimateReport::compress_ratio() const { return Ratio(stored_bytes_off, stored_bytes_lz4); }
double EstimateReport::total_ratio() const { return Ratio(nonzero_blocks * kBlockSize, stored_bytes_lz4); }

Result<EstimateReport> Estimate(const EstimateOptions& o) {
  if (o.images.empty()) return Status::Error(EINVAL, "no image given");
  const auto start = std::chrono::steady_clock::now();
  unsigned threads = o.threads ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  std::string tmpdir = o.tmpdir;
  if (tmpdir.empty()) {
    const char* t = std::getenv("TMPDIR");
    tmpdir = t && *t ? t : "/tmp";
  }
  uint64_t table_bytes = o.table_bytes_for_testing;
  if (table_bytes == 0) {
    // The process itself (code, libraries, stacks: about 6 MiB resident),
    // each worker's read buffer and the merge's run buffers come first.
    const uint64_t fixed = uint64_t{threads} * kChunkBytes + kMergeBufferBytes + kProcessBytes;
    if (o.memory_bytes < fixed + kMinTableBytes)
      return Status::Error(EINVAL, "memory bound " + HumanBytes(o.memory_bytes) + " is too small: at least " +
                                       HumanBytes(fixed + kMinTableBytes) + " with " + std::to_string(threads) +
                                       " thread(s)");
    table_bytes = o.memory_bytes - fixed;
  }

  Run run(table_bytes, tmpdir);
  EstimateReport report;
  struct Closer {
    std::vector<Image>* v;
    ~Closer() {
      for (Image& i : *v)
        if (i.fd >= 0) ::close(i.fd);
    }
  } closer{&run.images};
  for (const std::string& path : o.images) {
    Image img;
    img.path = path;
    img.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (img.fd < 0) return Status::FromErrno("open " + path);
    struct stat st;
    if (::fstat(img.fd, &st) != 0) {
      ::close(img.fd);
      return Status::FromErrno("stat " + path);
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
      ::close(img.fd);
      return Status::Error(S_ISDIR(st.st_mode) ? EISDIR : EINVAL,
                           path + " is not a regular file or a block device");
    }
    const off_t end = ::lseek(img.fd, 0, SEEK_END);
    if (end < 0) {
      ::close(img.fd);
      return Status::FromErrno("size of " + path);
    }
    img.size = static_cast<uint64_t>(end);
    ::posix_fadvise(img.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    run.images.push_back(img);
    report.image_bytes += img.size;
    report.blocks += (img.size + kBlockSize - 1) / kBlockSize;
  }
  report.images = run.images.size();
  run.chunks = std::make_unique<ChunkMap>(run.images);

  std::vector<std::thread> workers;
  for (unsigned t = 0; t < threads; ++t) workers.emplace_back([&run] { run.Work(); });
  if (o.progress) {
    // The main thread redraws the progress line until the workers are done.
    std::atomic<bool> done{false};
    std::thread waiter([&workers, &done] {
      for (auto& w : workers) w.join();
      done.store(true);
    });
    while (!done.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const uint64_t b = run.bytes_done.load(std::memory_order_relaxed);
      std::fprintf(stderr, "\rchainswap estimate: %s of %s (%.0f %%), %.0f MB/s   ", HumanBytes(b).c_str(),
                   HumanBytes(report.image_bytes).c_str(), report.image_bytes ? 100.0 * double(b) / double(report.image_bytes) : 100.0,
                   secs > 0 ? double(b) / secs / 1e6 : 0.0);
    }
    waiter.join();
    std::fprintf(stderr, "\r\033[K");
  } else {
    for (auto& w : workers) w.join();
  }
  CS_RETURN_IF_ERROR(run.Finish(&report));
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

std::string RenderEstimate(const EstimateReport& r) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%" PRIu64 " image(s), %s, %" PRIu64 " blocks: %" PRIu64 " zero (never stored), %" PRIu64
                " non-zero, %" PRIu64 " distinct\n\n",
                r.images, HumanBytes(r.image_bytes).c_str(), r.blocks, r.zero_blocks, r.nonzero_blocks, r.distinct_blocks);
  out += line;
  out += "bucket              allocated                       referenced          \n";
  out += "______   ______________________________   ______________________________\n";
  out += "refcnt   blocks   LSIZE   PSIZE   DSIZE   blocks   LSIZE   PSIZE   DSIZE\n";
  out += "------   ------   -----   -----   -----   ------   -----   -----   -----\n";
  RefcountRow total;
  auto row = [&](const std::string& label, const RefcountRow& w) {
    std::snprintf(line, sizeof line, "%6s   %6s   %5s   %5s   %5s   %6s   %5s   %5s   %5s\n", label.c_str(),
                  Compact(w.blocks).c_str(), Compact(w.lsize).c_str(), Compact(w.psize).c_str(),
                  Compact(w.dsize).c_str(), Compact(w.ref_blocks).c_str(), Compact(w.ref_lsize).c_str(),
                  Compact(w.ref_psize).c_str(), Compact(w.ref_dsize).c_str());
    out += line;
  };
  for (const RefcountRow& w : r.rows) {
    row(Compact(w.min_refs), w);
    total.blocks += w.blocks;
    total.lsize += w.lsize;
    total.psize += w.psize;
    total.dsize += w.dsize;
    total.ref_blocks += w.ref_blocks;
    total.ref_lsize += w.ref_lsize;
    total.ref_psize += w.ref_psize;
    total.ref_dsize += w.ref_dsize;
  }
  row(" Total", total);
  std::snprintf(line, sizeof line, "\ndedup = %.2f, compress = %.2f, dedup * compress = %.2f\n", r.dedup_ratio(),
                r.compress_ratio(), r.total_ratio());
  out += line;
  std::snprintf(line, sizeof line,
                "chainswap would store %s with compress=off (%" PRIu64 " blocks of 4 KiB) and %s with compress=lz4 "
                "(%" PRIu64 " sectors of 512 B; %" PRIu64 " block(s) stored raw), of %s non-zero\n",
                HumanBytes(r.stored_bytes_off).c_str(), r.distinct_blocks, HumanBytes(r.stored_bytes_lz4).c_str(),
                r.stored_bytes_lz4 / kSectorSize, r.raw_blocks, HumanBytes(r.nonzero_blocks * kBlockSize).c_str());
  out += line;
  return out;
}

std::string EstimateJson(const EstimateReport& r) {
  nlohmann::json j;
  j["images"] = r.images;
  j["image_bytes"] = r.image_bytes;
  j["blocks"] = r.blocks;
  j["zero_blocks"] = r.zero_blocks;
  j["nonzero_blocks"] = r.nonzero_blocks;
  j["nonzero_bytes"] = r.nonzero_blocks * kBlockSize;
  j["distinct_blocks"] = r.distinct_blocks;
  j["raw_blocks"] = r.raw_blocks;
  j["stored_bytes_compress_off"] = r.stored_bytes_off;
  j["stored_bytes_compress_lz4"] = r.stored_bytes_lz4;
  j["lz4_bytes"] = r.lz4_bytes;
  j["ideal_bytes_compress_lz4"] = r.ideal_bytes_lz4;
  j["dedup_ratio"] = r.dedup_ratio();
  j["compress_ratio"] = r.compress_ratio();
  j["total_ratio"] = r.total_ratio();
  j["spill_runs"] = r.spill_runs;
  j["table_bytes"] = r.table_bytes;
  j["seconds"] = r.seconds;
  j["histogram"] = nlohmann::json::array();
  for (const RefcountRow& w : r.rows)
    j["histogram"].push_back({{"min_refs", w.min_refs},
                              {"allocated", {{"blocks", w.blocks}, {"lsize", w.lsize}, {"psize", w.psize}, {"dsize", w.dsize}}},
                              {"referenced",
                               {{"blocks", w.ref_blocks}, {"lsize", w.ref_lsize}, {"psize", w.ref_psize}, {"dsize", w.ref_dsize}}}});
  return j.dump(2);
}

}  // namespace chainswap
