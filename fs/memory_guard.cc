#include "fs/memory_guard.h"

#include <fcntl.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

namespace chainswap {

Status ProtectFromOomKiller(int adj) {
  const int fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open /proc/self/oom_score_adj");
  const std::string v = std::to_string(adj);
  const ssize_t n = ::write(fd, v.data(), v.size());
  const int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(v.size())) {
    // EACCES: lowering the score needs CAP_SYS_RESOURCE.
    return Status::FromErrno(err, "set oom_score_adj to " + v +
                                      (err == EACCES ? " (needs CAP_SYS_RESOURCE; the systemd unit sets "
                                                       "OOMScoreAdjust= instead)"
                                                     : ""));
  }
  return Status::Ok();
}

void BoundAllocatorRetention() {
  (void)::mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  (void)::mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
  (void)::mallopt(M_ARENA_MAX, 4);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

namespace {

Status MemlockError(int err, const std::string& what) {
  struct rlimit rl {};
  ::getrlimit(RLIMIT_MEMLOCK, &rl);
  std::string why = std::strerror(err);
  if (err == ENOMEM || err == EPERM)
    why += "; RLIMIT_MEMLOCK is " + (rl.rlim_cur == RLIM_INFINITY ? std::string("unlimited")
                                                                    : std::to_string(rl.rlim_cur >> 10) + " KiB") +
           " (raise it: LimitMEMLOCK=infinity in the systemd unit, or run as root)";
  return Status::Error(err, what + ": " + why);
}

// One "Key:  N kB" field of a /proc file (status, smaps_rollup).
std::optional<uint64_t> ProcField(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) != 0 || line.size() <= key.size() || line[key.size()] != ':') continue;
    try {
      return std::stoull(line.substr(key.size() + 1));
    } catch (...) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

}  // namespace

Result<LockedMemory> LockMemory() {
  // A sanitizer's shadow memory is terabytes of address space: locking it
  // would fault it all in.
  if (kSanitized) return Status::Error(ENOTSUP, "not in a sanitizer build (its shadow memory cannot be locked)");
  // Every mapping, now and later, is locked as its pages are touched: an
  // anonymous mapping nobody touches costs nothing. (mlockall(MCL_CURRENT)
  // alone would fault in every page mapped now: libceph-common's 130 MiB of
  // zeroed .bss, which a local-store daemon never touches, and in RADOS mode
  // every librados thread's whole stack.)
  if (::mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0) {
    const int err = errno;
    ::munlockall();
    return MemlockError(err, "mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)");
  }
  // The program's and its libraries' file mappings (code, read-only data)
  // are read in and locked now: serving a swap-out under memory pressure
  // must never wait for a page-in of the daemon's code from the disk that
  // is busy swapping.
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    // "start-end perms offset dev inode   pathname"
    unsigned long start = 0, end = 0;
    char perms[5] = {};
    unsigned long long inode = 0;
    int path_at = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx %4s %*s %*s %llu %n", &start, &end, perms, &inode, &path_at) < 4) continue;
    if (inode == 0 || path_at <= 0 || static_cast<size_t>(path_at) >= line.size() || line[path_at] != '/') continue;
    // Guard pages, and shared mappings (a memory-mapped catalog, SQLite's
    // WAL index: file data, not the program) are left to MCL_ONFAULT.
    if (perms[0] != 'r' || perms[3] != 'p') continue;
    if (::mlock(reinterpret_cast<void*>(start), end - start) != 0) {
      const int err = errno;
      if (err != ENOMEM && err != EPERM && err != EAGAIN) continue;  // a mapping that cannot be locked
      ::munlockall();
      return MemlockError(err, "mlock " + line.substr(static_cast<size_t>(path_at)));
    }
  }
  LockedMemory m;
  m.locked_kib = ProcField("/proc/self/smaps_rollup", "Locked").value_or(0);
  return m;
}

std::optional<uint64_t> ProcStatusField(int pid, const std::string& key) {
  return ProcField(pid == 0 ? std::string("/proc/self/status") : "/proc/" + std::to_string(pid) + "/status", key);
}

}  // namespace chainswap
