#include "catalog/content_store.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "catalog/block.h"

namespace chainswap {

namespace {

constexpr uint64_t kSectorBytes = 512;

Status PreadFull(int fd, uint8_t* buf, size_t len, off_t off) {
  while (len > 0) {
    ssize_t n = ::pread(fd, buf, len, off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("content store pread");
    }
    if (n == 0) {
      // Every referenced slot was written, so the file is never shorter
      // than a slot the catalog reads: the store was truncated or replaced.
      return Status::Error(EIO, "content store ends before slot at byte " + std::to_string(off) +
                                    " (truncated or replaced store.dat; run chainswap fsck)");
    }
    buf += n;
    len -= static_cast<size_t>(n);
    off += n;
  }
  return Status::Ok();
}

Status PwriteFull(int fd, const uint8_t* buf, size_t len, off_t off) {
  while (len > 0) {
    ssize_t n = ::pwrite(fd, buf, len, off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("content store pwrite");
    }
    buf += n;
    len -= static_cast<size_t>(n);
    off += n;
  }
  return Status::Ok();
}

}  // namespace

ContentStore::~ContentStore() {
  if (fd_ >= 0) ::close(fd_);
}

Status ContentStore::Create(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno("create " + path);
  ::close(fd);
  return Status::Ok();
}

Result<std::unique_ptr<ContentStore>> ContentStore::Open(const std::string& path, bool read_only) {
  int fd = ::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open content store " + path);
  return std::unique_ptr<ContentStore>(new ContentStore(fd, path));
}

std::unique_ptr<ContentStore> ContentStore::OpenDiscarding() {
  return std::unique_ptr<ContentStore>(new ContentStore(-1, "(discarding store)"));
}

Status ContentStore::ReadSlots(uint64_t slot, uint32_t count, uint8_t* out) const {
  if (fd_ < 0) return Status::Error(EIO, "a discarding store holds no data");
  return PreadFull(fd_, out, size_t{count} * kBlockSize, static_cast<off_t>(slot << kBlockShift));
}

Status ContentStore::WriteSlots(uint64_t slot, uint32_t count, const uint8_t* data) {
  std::vector<const uint8_t*> blocks(count);
  for (uint32_t i = 0; i < count; ++i) blocks[i] = data + size_t{i} * kBlockSize;
  return WriteSlots(slot, blocks);
}

Status ContentStore::WriteSlots(uint64_t slot, std::span<const uint8_t* const> blocks) {
  if (fd_ < 0) {
    uint64_t end = discard_end_.load(std::memory_order_relaxed);
    while (end < slot + blocks.size() &&
           !discard_end_.compare_exchange_weak(end, slot + blocks.size(), std::memory_order_relaxed)) {
    }
    return Status::Ok();
  }
  std::array<iovec, 256> iov;
  off_t off = static_cast<off_t>(slot << kBlockShift);
  size_t i = 0;
  while (i < blocks.size()) {
    const size_t n = std::min(iov.size(), blocks.size() - i);
    for (size_t k = 0; k < n; ++k) iov[k] = {const_cast<uint8_t*>(blocks[i + k]), kBlockSize};
    ssize_t w = ::pwritev(fd_, iov.data(), static_cast<int>(n), off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("content store pwritev");
    }
    // A short write ends inside block i + done: finish that one by hand.
    const size_t done = static_cast<size_t>(w) / kBlockSize;
    const size_t part = static_cast<size_t>(w) % kBlockSize;
    off += static_cast<off_t>(done * kBlockSize);
    i += done;
    if (part != 0) {
      CS_RETURN_IF_ERROR(PwriteFull(fd_, blocks[i] + part, kBlockSize - part, off + static_cast<off_t>(part)));
      off += kBlockSize;
      ++i;
    }
  }
  return Status::Ok();
}

Status ContentStore::ReadSectors(uint64_t first, uint32_t count, uint8_t* out) const {
  if (fd_ < 0) return Status::Error(EIO, "a discarding store holds no data");
  return PreadFull(fd_, out, size_t{count} * kSectorBytes, static_cast<off_t>(first * kSectorBytes));
}

Status ContentStore::WriteSectors(uint64_t first, uint64_t count, const uint8_t* data) {
  if (fd_ < 0) {
    const uint64_t end_slot = (first + count + kBlockSize / kSectorBytes - 1) / (kBlockSize / kSectorBytes);
    uint64_t end = discard_end_.load(std::memory_order_relaxed);
    while (end < end_slot && !discard_end_.compare_exchange_weak(end, end_slot, std::memory_order_relaxed)) {
    }
    return Status::Ok();
  }
  return PwriteFull(fd_, data, count * kSectorBytes, static_cast<off_t>(first * kSectorBytes));
}

Status ContentStore::PunchSlot(uint64_t slot) { return PunchSlots(slot, 1); }

Status ContentStore::PunchSlots(uint64_t slot, uint64_t count) {
  if (fd_ < 0) return Status::Ok();
  if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(slot << kBlockShift),
                  static_cast<off_t>(count << kBlockShift)) != 0) {
    return Status::FromErrno("content store punch slots " + std::to_string(slot) + "+" + std::to_string(count));
  }
  return Status::Ok();
}

Status ContentStore::TruncateToSlots(uint64_t end_slot) {
  if (fd_ < 0) {
    discard_end_.store(end_slot, std::memory_order_relaxed);
    return Status::Ok();
  }
  if (::ftruncate(fd_, static_cast<off_t>(end_slot << kBlockShift)) != 0)
    return Status::FromErrno("content store truncate");
  return Status::Ok();
}

Status ContentStore::Sync() {
  if (fd_ < 0) return Status::Ok();
  if (::fdatasync(fd_) != 0) return Status::FromErrno("content store fdatasync");
  return Status::Ok();
}

Result<uint64_t> ContentStore::AllocatedBytes() const {
  if (fd_ < 0) return uint64_t{0};
  struct stat st;
  if (::fstat(fd_, &st) != 0) return Status::FromErrno("content store fstat");
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

Result<std::vector<std::pair<uint64_t, uint64_t>>> ContentStore::DataSlotRanges() const {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  if (fd_ < 0) return out;
  struct stat st;
  if (::fstat(fd_, &st) != 0) return Status::FromErrno("content store fstat");
  off_t pos = 0;
  while (pos < st.st_size) {
    const off_t data = ::lseek(fd_, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // no data past pos
      return Status::FromErrno("content store SEEK_DATA");
    }
    off_t hole = ::lseek(fd_, data, SEEK_HOLE);
    if (hole < 0) return Status::FromErrno("content store SEEK_HOLE");
    out.emplace_back(static_cast<uint64_t>(data) >> kBlockShift,
                     (static_cast<uint64_t>(hole) + kBlockSize - 1) >> kBlockShift);
    pos = hole;
  }
  return out;
}

Result<uint64_t> ContentStore::LengthSlots() const {
  if (fd_ < 0) return discard_end_.load(std::memory_order_relaxed);
  struct stat st;
  if (::fstat(fd_, &st) != 0) return Status::FromErrno("content store fstat");
  return (static_cast<uint64_t>(st.st_size) + kBlockSize - 1) >> kBlockShift;
}

}  // namespace chainswap
