#include "tools/bench_data.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <utility>

namespace chainswap::bench {

namespace {

namespace fs = std::filesystem;

constexpr uint64_t kKindZero = 0, kKindFile = 1, kKindRecord = 2;
constexpr uint64_t kPayloadMask = (uint64_t{1} << 62) - 1;
constexpr size_t kRwPages = 256;             // real pages kept in memory for random writes
constexpr uint64_t kMaxPagesPerFile = 1024;  // 4 MiB from one source file at most: variety
constexpr size_t kFdCache = 32;

uint64_t Desc(uint64_t kind, uint64_t payload) { return (kind << 62) | (payload & kPayloadMask); }

// Overwrites the first 64 bytes of a page with a text tag (padded, newline).
void Tag(uint8_t* out, const char* text) {
  char buf[64];
  std::memset(buf, ' ', sizeof buf);
  size_t n = std::min(std::strlen(text), sizeof buf - 1);
  std::memcpy(buf, text, n);
  buf[63] = '\n';
  std::memcpy(out, buf, sizeof buf);
}


}  // namespace

bool IsZero(const uint8_t* page) {
  uint64_t acc = 0;
  for (size_t i = 0; i < kPage; i += 64) {
    uint64_t w[8];
    std::memcpy(w, page + i, sizeof w);
    acc |= w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7];
    if (acc) return false;
  }
  return true;
}

bool Workload::Mutated(unsigned clone, uint64_t page) const {
  return clone > 0 && NonZeroSlot(page) && Unit(Mix(spec_.seed ^ 0xc10e5eedULL, clone, page)) < spec_.mutation;
}

std::shared_ptr<const Workload> Workload::Build(const WorkloadSpec& spec,
                                                const std::function<void(const std::string&)>& progress) {
  auto w = std::shared_ptr<Workload>(new Workload());
  w->spec_ = spec;
  const uint64_t pages = spec.image_pages;
  w->layout_.assign(pages, 0);

  // 1. The layout, in runs of 1..16 pages of one kind (runs of every kind
  // have the same length distribution, so the page shares follow the options).
  uint64_t rng = Mix(spec.seed, 0x1a7047);
  auto next = [&rng] { return Mix(rng += 0x9e3779b97f4a7c15ULL); };
  std::vector<uint64_t> nonzero;  // indices of non-zero pages laid out so far
  nonzero.reserve(static_cast<size_t>(pages * (1.0 - spec.zero_share)) + 16);
  uint64_t file_pages = 0;
  LayoutStats& ls = w->layout_stats_;
  for (uint64_t p = 0; p < pages;) {
    uint64_t run = std::min<uint64_t>(1 + next() % 16, pages - p);
    double u = Unit(next()), v = Unit(next());
    if (u < spec.zero_share) {
      ls.zero_pages += run;
      p += run;  // layout_ is zero already
      continue;
    }
    if (v < spec.record_share) {
      for (uint64_t i = 0; i < run; ++i, ++p) {
        w->layout_[p] = Desc(kKindRecord, p);
        nonzero.push_back(p);
      }
      ls.record_pages += run;
    } else if (v < spec.record_share + spec.shared_share && !nonzero.empty()) {
      uint64_t q = nonzero[next() % nonzero.size()];
      for (uint64_t i = 0; i < run; ++i, ++p, ++q) {
        if (q >= p || !w->NonZeroSlot(q)) q = nonzero[next() % nonzero.size()];
        w->layout_[p] = w->layout_[q];
        nonzero.push_back(p);
      }
      ls.repeat_pages += run;
    } else {
      for (uint64_t i = 0; i < run; ++i, ++p) {
        w->layout_[p] = Desc(kKindFile, file_pages++);
        nonzero.push_back(p);
      }
      ls.file_pages += run;
    }
  }
  std::vector<uint64_t>().swap(nonzero);

  // 2. The source pages: regular files under the source directories, sorted
  // by path then shuffled with the seed, read page by page (all-zero pages
  // skipped) until there are as many as the layout takes.
  SourceStats& ss = w->sources_;
  std::vector<std::pair<std::string, uint64_t>> found;  // path, size
  std::set<std::pair<dev_t, ino_t>> seen;
  for (const std::string& dir : spec.source_dirs) {
    std::error_code ec;
    fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      std::error_code e2;
      fs::file_status fst = it->symlink_status(e2);
      if (e2 || !fs::is_regular_file(fst)) continue;  // no symlinks: each file once
      struct stat st;
      if (::lstat(it->path().c_str(), &st) != 0 || st.st_size <= 0) continue;
      if (!seen.insert({st.st_dev, st.st_ino}).second) continue;  // hard links
      found.emplace_back(it->path().string(), static_cast<uint64_t>(st.st_size));
      if (progress && found.size() % 2000 == 0) progress("listing source files: " + std::to_string(found.size()));
    }
  }
  ss.files_seen = found.size();
  std::sort(found.begin(), found.end());
  uint64_t srng = Mix(spec.seed, 0x50ace);
  for (size_t i = found.size(); i > 1; --i) {
    size_t j = Mix(srng += 0x9e3779b97f4a7c15ULL) % i;
    std::swap(found[i - 1], found[j]);
  }
  std::vector<uint8_t> chunk(256 * kPage);
  for (const auto& [path, size] : found) {
    if (w->pool_.size() >= file_pages) break;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) continue;
    const uint32_t file_no = static_cast<uint32_t>(w->files_.size());
    uint64_t taken = 0;
    off_t off = 0;
    while (taken < kMaxPagesPerFile && w->pool_.size() < file_pages) {
      ssize_t n = PreadFull(fd, chunk.data(), chunk.size(), off);
      if (n <= 0) break;
      size_t np = (static_cast<size_t>(n) + kPage - 1) / kPage;
      if (static_cast<size_t>(n) % kPage) std::memset(chunk.data() + n, 0, np * kPage - static_cast<size_t>(n));
      for (size_t i = 0; i < np && taken < kMaxPagesPerFile && w->pool_.size() < file_pages; ++i) {
        if (IsZero(chunk.data() + i * kPage)) {
          ++ss.zero_skipped;
          continue;
        }
        w->pool_.push_back({file_no, static_cast<uint32_t>(off / kPage + i)});
        ++taken;
      }
      if (static_cast<size_t>(n) < chunk.size()) break;
      off += n;
    }
    ::close(fd);
    if (taken) {
      w->files_.push_back(path);
      if (progress && w->files_.size() % 50 == 0)
        progress("reading source pages: " + std::to_string(w->pool_.size()) + "/" + std::to_string(file_pages));
    }
  }
  ss.files_used = w->files_.size();
  ss.pages = w->pool_.size();
  if (!w->pool_.empty() && file_pages > w->pool_.size()) ss.wraps = file_pages - w->pool_.size();

  // 3. A few real pages in memory: the bases of random writes.
  PageGen gen(w);
  w->rw_pages_ = kRwPages;
  w->rw_pool_.assign(kRwPages * kPage, 0);
  for (size_t i = 0; i < kRwPages; ++i) {
    uint8_t* out = w->rw_pool_.data() + i * kPage;
    if (!w->pool_.empty()) gen.SourcePage((i * w->pool_.size()) / kRwPages, out);
    if (w->pool_.empty() || IsZero(out)) gen.RecordPage(Mix(spec.seed, 0x5a4d, i), out);
  }
  return w;
}

PageGen::PageGen(std::shared_ptr<const Workload> w) : w_(std::move(w)) {}

PageGen::~PageGen() {
  for (const Open& o : fds_) ::close(o.fd);
}

int PageGen::Fd(uint32_t file) {
  for (const Open& o : fds_)
    if (o.file == file) return o.fd;
  int fd = ::open(w_->files_[file].c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return -1;
  if (fds_.size() < kFdCache) {
    fds_.push_back({file, fd});
  } else {
    Open& victim = fds_[next_evict_++ % kFdCache];
    ::close(victim.fd);
    victim = {file, fd};
  }
  return fd;
}

void PageGen::SourcePage(uint64_t index, uint8_t* out) {
  const auto& pool = w_->pool_;
  if (pool.empty()) {  // no readable source files: synthesized pages only
    RecordPage(index | (uint64_t{1} << 61), out);
    return;
  }
  const Workload::SourcePage& sp = pool[index % pool.size()];
  int fd = Fd(sp.file);
  ssize_t n = fd < 0 ? -1 : PreadFull(fd, out, kPage, static_cast<off_t>(sp.page) * kPage);
  if (n < 0) n = 0;  // the source vanished: a zero page (the bytes decide; counted as zero)
  if (static_cast<size_t>(n) < kPage) std::memset(out + n, 0, kPage - static_cast<size_t>(n));
  if (index >= pool.size()) {  // fewer source pages than the image takes: a tagged variant
    char t[64];
    std::snprintf(t, sizeof t, "chainswap bench source generation %" PRIu64, index / pool.size());
    Tag(out, t);
  }
}

void PageGen::RecordPage(uint64_t ordinal, uint8_t* out) const {
  static const char* const kNames[] = {"alvarez", "baker",    "chen",    "dubois", "eriksen",  "fischer",
                                       "garcia",  "hansen",   "ivanova", "jensen", "kowalski", "larsen",
                                       "moreau",  "nakamura", "okafor",  "petrov"};
  static const char* const kCities[] = {"Lyon", "Oslo", "Porto", "Kyoto", "Austin", "Gdansk", "Turku", "Quito"};
  const uint64_t seed = w_->spec_.seed;
  for (unsigned j = 0; j < kPage / 64; ++j) {
    uint64_t r = Mix(seed ^ 0x7ec0dULL, ordinal, j);
    char rec[96];
    int n = std::snprintf(rec, sizeof rec, "%010" PRIu64 "|%-10s|%-8s|%+013" PRId64 "|%08" PRIx64 "|%05u|",
                          static_cast<uint64_t>((ordinal & 0xffffffffffULL) * 64 + j), kNames[r & 15],
                          kCities[(r >> 4) & 7], static_cast<int64_t>((r >> 8) % 200000000) - 100000000,
                          (r >> 40) & 0xffffff, static_cast<unsigned>((ordinal + j) % 100000));
    if (n < 0) n = 0;
    if (n > 63) n = 63;
    std::memset(rec + n, ' ', 63 - static_cast<size_t>(n));
    rec[63] = '\n';
    std::memcpy(out + j * 64, rec, 64);
  }
}

void PageGen::ParentSlot(uint64_t desc, uint64_t /*page*/, uint8_t* out) {
  switch (desc >> 62) {
    case kKindFile:
      SourcePage(desc & kPayloadMask, out);
      return;
    case kKindRecord:
      RecordPage(desc & kPayloadMask, out);
      return;
    case kKindZero:
    default:
      std::memset(out, 0, kPage);
  }
}

void PageGen::Ingested(unsigned file, uint64_t page, uint8_t* out) {
  ParentSlot(w_->layout_[page], page, out);
  if (file > 0 && w_->Mutated(file, page)) {
    char t[64];
    std::snprintf(t, sizeof t, "chainswap bench clone %u page %" PRIu64, file, page);
    Tag(out, t);
  }
}

void PageGen::RandomWrite(uint64_t op, uint8_t* out) const {
  const uint64_t r = Mix(w_->spec_.seed ^ 0x4a1dULL, op);
  std::memcpy(out, w_->rw_pool_.data() + (r % w_->rw_pages_) * kPage, kPage);
  char t[64];
  std::snprintf(t, sizeof t, "chainswap bench random write %" PRIu64 " %016" PRIx64, op, r);
  Tag(out, t);
}

// Reads up to `len` bytes at `off`; returns bytes read (short at EOF), -1 on error.
ssize_t PreadFull(int fd, uint8_t* buf, size_t len, off_t off) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, buf + done, len - done, off + static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

}  // namespace chainswap::bench
