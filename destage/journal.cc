#include "destage/journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>

namespace chainswap {

namespace {

std::string SegmentPath(const std::string& dir, uint64_t id) {
  char name[64];
  std::snprintf(name, sizeof name, "/bucket-%020llu.log", static_cast<unsigned long long>(id));
  return dir + name;
}

Status SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open " + dir);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::FromErrno(err, "fsync " + dir);
  return Status::Ok();
}

}  // namespace

Segment::~Segment() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::shared_ptr<Segment>> Segment::Create(const std::string& dir, uint64_t id) {
  std::string path = SegmentPath(dir, id);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno("create journal segment " + path);
  return std::shared_ptr<Segment>(new Segment(fd, id, dir, path, 0, /*name_durable=*/false));
}

Result<std::shared_ptr<Segment>> Segment::OpenExisting(const std::string& dir, uint64_t id, bool read_only) {
  std::string path = SegmentPath(dir, id);
  int fd = ::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open journal segment " + path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return Status::FromErrno("stat " + path);
  }
  return std::shared_ptr<Segment>(
      new Segment(fd, id, dir, path, static_cast<uint64_t>(st.st_size), /*name_durable=*/true));
}

Result<uint64_t> Segment::Append(const uint8_t* header, const uint8_t* payload, size_t payload_len) {
  const iovec parts[2] = {{const_cast<uint8_t*>(header), kRecordHeaderSize},
                          {const_cast<uint8_t*>(payload), payload_len}};
  return Append(std::span<const iovec>(parts, payload_len ? 2 : 1));
}

Result<uint64_t> Segment::Append(std::span<const iovec> parts) {
  size_t total = 0;
  for (const iovec& p : parts) total += p.iov_len;
  std::vector<iovec> cur;
  cur.reserve(std::min<size_t>(parts.size(), IOV_MAX));
  size_t done = 0;
  while (done < total) {
    // The iovecs past what was written, at most IOV_MAX of them.
    cur.clear();
    size_t skip = done;
    for (const iovec& p : parts) {
      if (cur.size() == IOV_MAX) break;
      if (skip >= p.iov_len) {
        skip -= p.iov_len;
        continue;
      }
      cur.push_back({static_cast<uint8_t*>(p.iov_base) + skip, p.iov_len - skip});
      skip = 0;
    }
    ssize_t w = ::pwritev(fd_, cur.data(), static_cast<int>(cur.size()), static_cast<off_t>(end_ + done));
    if (w < 0) {
      if (errno == EINTR) continue;
      Status st = Status::FromErrno("journal append " + path_);
      // Leave no partial record behind: a later append must not follow it.
      (void)::ftruncate(fd_, static_cast<off_t>(end_));
      return st;
    }
    done += static_cast<size_t>(w);
  }
  const uint64_t at = end_;
  end_ += total;
  return at;
}

Status Segment::ReadAt(uint64_t offset, size_t len, uint8_t* out) const {
  size_t got = 0;
  while (got < len) {
    ssize_t n = ::pread(fd_, out + got, len - got, static_cast<off_t>(offset + got));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("read staged block from journal segment " + path_);
    }
    if (n == 0)
      return Status::Error(EIO, "journal segment " + path_ + " is shorter than its records (offset " +
                                    std::to_string(offset + got) + ")");
    got += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Segment::Mapping& Segment::Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), len_);
    data_ = o.data_;
    len_ = o.len_;
    o.data_ = nullptr;
    o.len_ = 0;
  }
  return *this;
}

Segment::Mapping::~Mapping() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), len_);
}

Result<Segment::Mapping> Segment::Map(uint64_t len) const {
  if (len == 0) return Mapping();
  void* p = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) return Status::FromErrno("map journal segment " + path_);
  // mlockall(MCL_FUTURE) (fs/memory_guard.h) would lock these file pages as
  // they are touched: they are the page cache's to reclaim.
  (void)::munlock(p, len);
  (void)::madvise(p, len, MADV_SEQUENTIAL);
  return Mapping(static_cast<const uint8_t*>(p), len);
}

Status Segment::Sync() {
  if (::fdatasync(fd_) != 0) return Status::FromErrno("journal fdatasync " + path_);
  if (!name_durable_.load(std::memory_order_acquire)) {
    CS_RETURN_IF_ERROR(SyncDir(dir_));
    name_durable_.store(true, std::memory_order_release);
  }
  return Status::Ok();
}

Status Segment::ReadAll(std::vector<Record>* out, bool* torn, bool cut_torn) {
  return Scan(
      [out](Record&& r, std::span<const uint8_t> payload) {
        if (!payload.empty()) {
          std::shared_ptr<uint8_t[]> data(new uint8_t[payload.size()]);
          std::memcpy(data.get(), payload.data(), payload.size());
          r.data = std::move(data);
        }
        out->push_back(std::move(r));
        return Status::Ok();
      },
      torn, cut_torn);
}

Status Segment::Scan(const Visitor& visit, bool* torn, bool cut_torn) {
  *torn = false;
  auto map = Map(end_);
  if (!map.ok()) return map.status();
  const std::span<const uint8_t> buf(map->data(), map->size());
  // The records of the op being read: visited once its last record is in.
  struct Held {
    Record r;
    std::span<const uint8_t> payload;
  };
  std::vector<Held> op;
  size_t op_start = 0;
  size_t off = 0;
  for (;;) {
    Record r;
    size_t used = 0;
    std::span<const uint8_t> payload;
    DecodeStatus ds = DecodeRecordView(buf.subspan(off), &r, &payload, &used);
    if (ds == DecodeStatus::kTorn) {
      // A torn tail is expected after a crash. Intact records after the bad
      // one mean corruption in the middle: refuse rather than drop them.
      // With an intact header the bad record's extent is known, so only the
      // position right after it is looked at (its payload is guest data and
      // may itself look like records); otherwise scan.
      uint32_t declared = 0;
      const bool header_ok = PeekHeader(buf.subspan(off), &declared);
      size_t scan_from = header_ok ? off + declared : ((off + 8) & ~size_t{7});
      size_t scan_to = header_ok ? std::min(buf.size(), scan_from + 1) : buf.size();
      for (size_t p = scan_from; p < scan_to && p + kRecordHeaderSize <= buf.size(); p += 8) {
        Record later;
        size_t later_used = 0;
        std::span<const uint8_t> later_payload;
        if (DecodeRecordView(buf.subspan(p), &later, &later_payload, &later_used) == DecodeStatus::kOk) {
          return Status::Error(EUCLEAN, "journal segment " + path_ + " has a corrupt record at offset " +
                                            std::to_string(off) + " followed by intact records (seq " +
                                            std::to_string(later.seq) +
                                            "); refusing to drop acknowledged writes");
        }
      }
    }
    if (ds != DecodeStatus::kOk) {
      // The end, or a torn record: an op still open is torn with it (its
      // writer was stopped between its records).
      const size_t tail = op.empty() ? off : op_start;
      if (ds == DecodeStatus::kEnd && op.empty()) break;
      *torn = true;
      if (!cut_torn) break;
      spdlog::warn("journal: torn or corrupt record at offset {} of {} ({} bytes ignored)", tail, path_,
                   buf.size() - tail);
      op.clear();
      *map = Mapping();  // unmapped before the file shrinks under it
      if (::ftruncate(fd_, static_cast<off_t>(tail)) != 0) return Status::FromErrno("truncate torn tail of " + path_);
      end_ = tail;
      break;
    }
    if (r.kind == RecordKind::kWrite) r.payload_offset = off + kRecordHeaderSize;
    if (op.empty()) op_start = off;
    off += used;
    if (r.continues) {
      op.push_back({std::move(r), payload});
      continue;
    }
    for (Held& h : op) CS_RETURN_IF_ERROR(visit(std::move(h.r), h.payload));
    op.clear();
    CS_RETURN_IF_ERROR(visit(std::move(r), payload));
  }
  return Status::Ok();
}

Status Segment::Remove() {
  if (::unlink(path_.c_str()) != 0 && errno != ENOENT) return Status::FromErrno("remove " + path_);
  return Status::Ok();
}

Result<std::vector<uint64_t>> ListSegments(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return Status::FromErrno("journal directory " + dir);
  std::vector<uint64_t> ids;
  while (struct dirent* e = ::readdir(d)) {
    unsigned long long id;
    char tail[8];
    if (e->d_name[0] == '.') continue;
    if (std::sscanf(e->d_name, "bucket-%20llu.%4s", &id, tail) == 2 && std::strcmp(tail, "log") == 0) {
      ids.push_back(id);
    } else {
      spdlog::warn("journal: ignoring unexpected file {}/{}", dir, e->d_name);
    }
  }
  ::closedir(d);
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace chainswap
