#include "catalog/sector_allocator.h"

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <string>

namespace chainswap {

namespace {

uint64_t PageOf(uint64_t sector) { return sector / kSectorsPerPage; }

std::string Describe(const SectorExtent& e) {
  return "sectors [" + std::to_string(e.first) + ", " + std::to_string(e.end()) + ")";
}

}  // namespace

SectorAllocator::SectorAllocator(AcquirePageFn acquire, ReleasePageFn release)
    : acquire_(std::move(acquire)), release_(std::move(release)) {}

void SectorAllocator::AddFree(uint64_t first, uint64_t count) {
  if (count == 0) return;
  uint64_t start = first, len = count;
  auto next = runs_.lower_bound(first);
  if (next != runs_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == first) {
      start = prev->first;
      len += prev->second;
      by_len_.erase({prev->second, prev->first});
      runs_.erase(prev);
    }
  }
  if (next != runs_.end() && next->first == first + count) {
    len += next->second;
    by_len_.erase({next->second, next->first});
    runs_.erase(next);
  }
  runs_[start] = len;
  by_len_.insert({len, start});
  for (uint64_t s = first; s < first + count;) {
    const uint64_t page = PageOf(s);
    const uint64_t page_end = (page + 1) * kSectorsPerPage;
    const uint64_t n = std::min(page_end, first + count) - s;
    page_free_[page] += static_cast<uint32_t>(n);
    s += n;
  }
  free_ += count;
}

void SectorAllocator::TakeFree(uint64_t first, uint64_t count) {
  if (count == 0) return;
  auto it = runs_.upper_bound(first);
  --it;  // the run holding `first` (REQUIRES: it is free)
  const uint64_t run_first = it->first, run_len = it->second;
  by_len_.erase({run_len, run_first});
  runs_.erase(it);
  if (first > run_first) {
    runs_[run_first] = first - run_first;
    by_len_.insert({first - run_first, run_first});
  }
  const uint64_t run_end = run_first + run_len, end = first + count;
  if (end < run_end) {
    runs_[end] = run_end - end;
    by_len_.insert({run_end - end, end});
  }
  for (uint64_t s = first; s < end;) {
    const uint64_t page = PageOf(s);
    const uint64_t page_end = (page + 1) * kSectorsPerPage;
    const uint64_t n = std::min(page_end, end) - s;
    auto pf = page_free_.find(page);
    pf->second -= static_cast<uint32_t>(n);
    if (pf->second == 0) page_free_.erase(pf);
    s += n;
  }
  free_ -= count;
}

void SectorAllocator::AddPage(uint64_t page) {
  ++pages_;
  AddFree(page * kSectorsPerPage, kSectorsPerPage);
}

void SectorAllocator::DropPage(uint64_t page) {
  TakeFree(page * kSectorsPerPage, kSectorsPerPage);
  --pages_;
}

Status SectorAllocator::Load(std::span<const SectorExtent> extents) {
  for (const SectorExtent& e : extents) CS_RETURN_IF_ERROR(LoadExtent(e));
  LoadDone();
  return Status::Ok();
}

Status SectorAllocator::LoadExtent(SectorExtent e) {
  MutexLock lock(&mu_);
  // The pages the extents touch are pack pages; what no extent covers in
  // them is free.
  if (e.count == 0 || e.count > kSectorsPerPage)
    return Status::Error(EUCLEAN, "compressed block at " + Describe(e) + " has an invalid length");
  if (load_prev_ && e.first < load_prev_->end())
    return Status::Error(EUCLEAN, "compressed blocks overlap or are out of order: " + Describe(*load_prev_) +
                                      " and " + Describe(e));
  const uint64_t first_page = PageOf(e.first), last = PageOf(e.end() - 1);
  // A page new to the walk: the tail of the previous pack page is free, and
  // so are this page's sectors before the extent.
  if (!last_page_ || first_page > *last_page_) {
    if (last_page_) {
      const uint64_t tail_end = (*last_page_ + 1) * kSectorsPerPage;
      if (load_covered_to_ < tail_end) AddFree(load_covered_to_, tail_end - load_covered_to_);
    }
    load_covered_to_ = first_page * kSectorsPerPage;
  }
  if (e.first > load_covered_to_) AddFree(load_covered_to_, e.first - load_covered_to_);
  for (uint64_t p = last_page_ && first_page <= *last_page_ ? *last_page_ + 1 : first_page; p <= last; ++p)
    ++pages_;
  last_page_ = std::max(last_page_.value_or(0), last);
  load_covered_to_ = e.end();
  used_ += e.count;
  load_prev_ = e;
  return Status::Ok();
}

void SectorAllocator::LoadDone() {
  MutexLock lock(&mu_);
  if (last_page_) {
    const uint64_t tail_end = (*last_page_ + 1) * kSectorsPerPage;
    if (load_covered_to_ < tail_end) AddFree(load_covered_to_, tail_end - load_covered_to_);
  }
  load_prev_.reset();
  Publish();
}

void SectorAllocator::Begin() {
  MutexLock lock(&mu_);
  in_txn_ = true;
  txn_allocated_.clear();
  txn_freed_.clear();
  txn_pages_.clear();
  txn_saved_last_page_ = last_page_;
  fresh_first_ = fresh_end_ = 0;
}

Result<SectorExtent> SectorAllocator::Allocate(uint32_t count) {
  MutexLock lock(&mu_);
  if (count == 0 || count > kSectorsPerPage) return Status::Error(EINVAL, "extent of " + std::to_string(count) + " sectors");
  auto fit = by_len_.lower_bound({count, 0});
  if (fit == by_len_.end()) {
    // No run fits: a new page, preferably the one after the last acquired
    // (its free tail then merges with the new page).
    std::optional<uint64_t> want;
    if (last_page_) want = *last_page_ + 1;
    auto page = acquire_(want);
    if (!page.ok()) return page.status();
    AddPage(*page);
    txn_pages_.push_back(*page);
    last_page_ = *page;
    fit = by_len_.lower_bound({count, 0});
  }
  const SectorExtent e{fit->second, count};
  TakeFree(e.first, e.count);
  used_ += count;
  txn_allocated_.push_back(e);
  return e;
}

Result<SectorExtent> SectorAllocator::AllocateFresh(uint32_t count) {
  MutexLock lock(&mu_);
  if (count == 0 || count > kSectorsPerPage) return Status::Error(EINVAL, "extent of " + std::to_string(count) + " sectors");
  if (fresh_end_ - fresh_first_ < count) {
    // The page after the run when it can be had (the run continues), else
    // any: the run starts over there (the old tail stays a free run).
    std::optional<uint64_t> want;
    if (fresh_end_ > 0) want = fresh_end_ / kSectorsPerPage;
    auto page = acquire_(want);
    if (!page.ok()) return page.status();
    AddPage(*page);
    txn_pages_.push_back(*page);
    last_page_ = *page;
    if (fresh_end_ > 0 && *page * kSectorsPerPage == fresh_end_) {
      fresh_end_ += kSectorsPerPage;
    } else {
      fresh_first_ = *page * kSectorsPerPage;
      fresh_end_ = fresh_first_ + kSectorsPerPage;
    }
  }
  const SectorExtent e{fresh_first_, count};
  TakeFree(e.first, e.count);
  fresh_first_ += count;
  used_ += count;
  txn_allocated_.push_back(e);
  return e;
}

std::vector<uint64_t> SectorAllocator::SparsePages(uint32_t min_free, size_t max_pages) {
  MutexLock lock(&mu_);
  std::vector<std::pair<uint32_t, uint64_t>> c;  // (free, page)
  for (auto [page, free] : page_free_)
    if (free >= min_free && free < kSectorsPerPage) c.emplace_back(free, page);
  std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  std::vector<uint64_t> out;
  for (size_t i = 0; i < c.size() && i < max_pages; ++i) out.push_back(c[i].second);
  return out;
}

void SectorAllocator::Free(SectorExtent e) {
  MutexLock lock(&mu_);
  txn_freed_.push_back(e);
}

void SectorAllocator::Commit() {
  MutexLock lock(&mu_);
  in_txn_ = false;
  for (const SectorExtent& e : txn_freed_) pending_sectors_ += e.count;
  pending_.insert(pending_.end(), txn_freed_.begin(), txn_freed_.end());
  txn_allocated_.clear();
  txn_freed_.clear();
  txn_pages_.clear();
  Publish();
}

void SectorAllocator::Abort() {
  MutexLock lock(&mu_);
  in_txn_ = false;
  for (const SectorExtent& e : txn_allocated_) {
    AddFree(e.first, e.count);
    used_ -= e.count;
  }
  // Every sector of a page the transaction acquired is free again.
  for (uint64_t page : txn_pages_) {
    DropPage(page);
    releasable_.erase(page);
  }
  last_page_ = txn_saved_last_page_;
  txn_allocated_.clear();
  txn_freed_.clear();
  txn_pages_.clear();
  Publish();
}

void SectorAllocator::Synced() {
  MutexLock lock(&mu_);
  std::set<uint64_t> touched;
  for (const SectorExtent& e : pending_) {
    AddFree(e.first, e.count);
    used_ -= e.count;
    for (uint64_t p = PageOf(e.first); p <= PageOf(e.end() - 1); ++p) touched.insert(p);
  }
  pending_.clear();
  pending_sectors_ = 0;
  // Pages wholly free go back to the slot allocator, outside a
  // transaction only (a Synced() inside one, to recycle frees at capacity,
  // keeps them, with their sectors free, for the next).
  releasable_.insert(touched.begin(), touched.end());
  if (in_txn_) {
    Publish();
    return;
  }
  for (uint64_t page : releasable_) {
    auto pf = page_free_.find(page);
    if (pf == page_free_.end() || pf->second != kSectorsPerPage) continue;
    DropPage(page);
    if (last_page_ == page) last_page_.reset();
    release_(page);
  }
  releasable_.clear();
  Publish();
}

void SectorAllocator::Publish() {
  pub_used_.store(used_, std::memory_order_relaxed);
  pub_free_.store(free_, std::memory_order_relaxed);
  pub_pending_.store(pending_sectors_, std::memory_order_relaxed);
  pub_pages_.store(pages_, std::memory_order_relaxed);
  has_pending_.store(!pending_.empty(), std::memory_order_relaxed);
}

SectorAllocator::Usage SectorAllocator::usage() const {
  return Usage{pub_used_.load(std::memory_order_relaxed), pub_free_.load(std::memory_order_relaxed),
               pub_pending_.load(std::memory_order_relaxed), pub_pages_.load(std::memory_order_relaxed)};
}

}  // namespace chainswap
