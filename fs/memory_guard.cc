#include "fs/memory_guard.h"

#include <fcntl.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

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

Result<LockedMemory> LockMemory() {
  // A sanitizer's shadow memory is terabytes of address space: locking it
  // would fault it all in.
  if (kSanitized) return Status::Error(ENOTSUP, "not in a sanitizer build (its shadow memory cannot be locked)");
  if (::mlockall(MCL_CURRENT) != 0) {
    const int err = errno;
    struct rlimit rl {};
    ::getrlimit(RLIMIT_MEMLOCK, &rl);
    std::string why = std::strerror(err);
    if (err == ENOMEM || err == EPERM)
      why += "; RLIMIT_MEMLOCK is " + (rl.rlim_cur == RLIM_INFINITY ? std::string("unlimited")
                                                                      : std::to_string(rl.rlim_cur >> 10) + " KiB") +
             " (raise it: LimitMEMLOCK=infinity in the systemd unit, or run as root)";
    ::munlockall();
    return Status::Error(err, "mlockall: " + why);
  }
  if (::mlockall(MCL_FUTURE | MCL_ONFAULT) != 0) {
    const int err = errno;
    ::munlockall();
    return Status::FromErrno(err, "mlockall(MCL_FUTURE | MCL_ONFAULT)");
  }
  LockedMemory m;
  m.locked_kib = ProcStatusField(0, "VmLck").value_or(0);
  return m;
}

std::optional<uint64_t> ProcStatusField(int pid, const std::string& key) {
  std::ifstream in(pid == 0 ? std::string("/proc/self/status") : "/proc/" + std::to_string(pid) + "/status");
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

}  // namespace chainswap
