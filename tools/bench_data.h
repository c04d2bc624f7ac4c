// The data of `chainswap bench` (SPEC §6): a parent swap image built from
// real bytes, and K clones that each rewrite a share of its pages.
//
// The parent image is a layout of 4 KiB pages in runs, as a swapped-out
// guest looks: zero pages; pages of real files of this machine (libraries,
// binaries, documentation: code, data and text); synthesized pages of
// fixed-width records with counters (an application heap or a database
// buffer); and repeats of earlier non-zero pages of the image (the same page
// swapped out by several processes). Clone k is the parent with a share of
// its non-zero pages replaced by clone-unique variants: the parent page with
// its first 64 bytes overwritten by a (k, page) tag.
//
// Nothing but the layout (8 bytes a page) and the list of source pages
// (8 bytes each) is kept in memory: page contents are regenerated on demand
// from the page index, reading the source files again, so any page can be
// produced again to verify what the filesystem returns. Everything is
// deterministic for a seed and a set of source files.
//
// Thread-safety: a Workload is immutable after Build() and may be shared;
// a PageGen (it caches open source files) belongs to one thread.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace chainswap::bench {

constexpr size_t kPage = 4096;

// An error the bench reports as one line and a non-zero exit.
struct BenchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// splitmix64's finalizer: a good 64-bit mix, used for every seeded decision.
inline uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
inline uint64_t Mix(uint64_t a, uint64_t b) { return Mix(a ^ Mix(b + 0x632be59bd9b4e019ULL)); }
inline uint64_t Mix(uint64_t a, uint64_t b, uint64_t c) { return Mix(Mix(a, b), c); }
// A uniform double in [0, 1) from 64 random bits.
inline double Unit(uint64_t r) { return double(r >> 11) * 0x1.0p-53; }

struct WorkloadSpec {
  uint64_t image_pages = 0;
  unsigned clones = 0;
  double zero_share = 0.30;    // of all parent pages
  double shared_share = 0.10;  // of non-zero parent pages: repeats of other pages of the image
  double record_share = 0.15;  // of non-zero parent pages: synthesized record pages
  double mutation = 0.05;      // of non-zero pages, per clone
  uint64_t seed = 1;
  std::vector<std::string> source_dirs;
};

struct SourceStats {
  uint64_t files_seen = 0;    // regular files found under the source directories
  uint64_t files_used = 0;    // files pages were taken from
  uint64_t pages = 0;         // distinct source pages (all non-zero when read)
  uint64_t zero_skipped = 0;  // all-zero source pages skipped
  uint64_t wraps = 0;         // file pages served again with a generation tag (too few sources)
};

struct LayoutStats {
  uint64_t zero_pages = 0, file_pages = 0, record_pages = 0, repeat_pages = 0;
};

class Workload {
 public:
  // Walks the source directories and lays the parent image out. `progress`
  // (may be empty) is called now and then with a short status text.
  static std::shared_ptr<const Workload> Build(const WorkloadSpec& spec,
                                               const std::function<void(const std::string&)>& progress);

  const WorkloadSpec& spec() const { return spec_; }
  const SourceStats& sources() const { return sources_; }
  const LayoutStats& layout_stats() const { return layout_stats_; }
  uint64_t pages() const { return layout_.size(); }
  // Files of the workload: 0 is the parent, 1..K the clones.
  unsigned files() const { return spec_.clones + 1; }
  // True when the parent page is laid out as non-zero (the clone mutation
  // applies to it). The bytes decide what is really zero.
  bool NonZeroSlot(uint64_t page) const { return (layout_[page] >> 62) != 0; }
  // True when clone k (1..K) rewrites this page with its own variant.
  bool Mutated(unsigned clone, uint64_t page) const;

 private:
  friend class PageGen;
  WorkloadSpec spec_;
  SourceStats sources_;
  LayoutStats layout_stats_;
  std::vector<uint64_t> layout_;  // kind (top 2 bits) | payload
  std::vector<std::string> files_;
  struct SourcePage {
    uint32_t file, page;
  };
  std::vector<SourcePage> pool_;
  std::vector<uint8_t> rw_pool_;  // a few real pages in memory: bases of random writes
  size_t rw_pages_ = 0;
};

// Produces page contents; keeps a small cache of open source files.
class PageGen {
 public:
  explicit PageGen(std::shared_ptr<const Workload> w);
  ~PageGen();
  PageGen(const PageGen&) = delete;
  PageGen& operator=(const PageGen&) = delete;

  // The page as ingested: file 0 is the parent, 1..K the clones.
  void Ingested(unsigned file, uint64_t page, uint8_t* out);
  // The content of random write number `op` (unique per op).
  void RandomWrite(uint64_t op, uint8_t* out) const;

 private:
  friend class Workload;
  void ParentSlot(uint64_t slot_desc, uint64_t page, uint8_t* out);
  void SourcePage(uint64_t index, uint8_t* out);
  void RecordPage(uint64_t ordinal, uint8_t* out) const;
  int Fd(uint32_t file);

  std::shared_ptr<const Workload> w_;
  struct Open {
    uint32_t file;
    int fd;
  };
  std::vector<Open> fds_;
  size_t next_evict_ = 0;
};

bool IsZero(const uint8_t* page);

// Reads up to `len` bytes at `off`, retrying short reads and EINTR; returns
// the bytes read (short at EOF), -1 on error.
ssize_t PreadFull(int fd, uint8_t* buf, size_t len, off_t off);

}  // namespace chainswap::bench
