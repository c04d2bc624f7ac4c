#include "fs/fuse_io.h"

#include <linux/fuse.h>
#include <spdlog/spdlog.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace chainswap {
namespace {

std::atomic<uint64_t> g_init_unique{0};  // the INIT request awaiting its reply
std::atomic<bool> g_granted{false};

ssize_t HookRead(int fd, void* buf, size_t len, void* /*userdata*/) {
  const ssize_t n = ::read(fd, buf, len);
  constexpr size_t kNeed = sizeof(fuse_in_header) + offsetof(fuse_init_in, flags) + sizeof(uint32_t);
  if (n >= static_cast<ssize_t>(kNeed)) {
    const auto* h = static_cast<const fuse_in_header*>(buf);
    if (h->opcode == FUSE_INIT) {
      const auto* in = reinterpret_cast<const fuse_init_in*>(h + 1);
      if (in->major == FUSE_KERNEL_VERSION && in->minor >= 33 && (in->flags & FUSE_HANDLE_KILLPRIV_V2))
        g_init_unique.store(h->unique);
    }
  }
  return n;
}

ssize_t HookWritev(int fd, struct iovec* iov, int count, void* /*userdata*/) {
  const uint64_t init = g_init_unique.load(std::memory_order_relaxed);
  if (init != 0 && count >= 2 && iov[0].iov_len >= sizeof(fuse_out_header) &&
      iov[1].iov_len >= offsetof(fuse_init_out, flags) + sizeof(uint32_t)) {
    auto* oh = static_cast<fuse_out_header*>(iov[0].iov_base);
    if (oh->unique == init && oh->error == 0) {
      auto* out = static_cast<fuse_init_out*>(iov[1].iov_base);
      out->flags |= FUSE_HANDLE_KILLPRIV_V2;
      g_init_unique.store(0);
      g_granted.store(true);
      spdlog::debug("FUSE init: handle_killpriv_v2 on (no security.capability lookup per write)");
    }
  }
  return ::writev(fd, iov, count);
}

}  // namespace

bool InstallKillPrivV2Hooks(fuse_session* se) {
  fuse_custom_io io{};
  io.read = HookRead;
  io.writev = HookWritev;
  const int rc = fuse_session_custom_io(se, &io, fuse_session_fd(se));
  if (rc != 0) spdlog::debug("FUSE: custom I/O not installed ({}); killpriv stays with the kernel", rc);
  return rc == 0;
}

bool KillPrivV2Granted() { return g_granted.load(); }

}  // namespace chainswap
