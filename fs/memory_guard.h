// Keeps the daemon serving through the memory pressure it exists for
// (docs/OPERATIONS.md): guests swap when the host is short of memory, which
// is when the kernel reclaims pages and picks a process to kill. If the
// daemon were killed, every guest's swap disk would be gone (FUSE cannot
// reattach open descriptors); if its own pages were reclaimed, every
// swap-out would wait on a page-in of the daemon.
//
//   ProtectFromOomKiller  writes /proc/self/oom_score_adj (-1000: never
//                         chosen), unless the operator keeps the inherited
//                         value.
//   LockMemory            mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT):
//                         every mapping, now and later, is locked as it is
//                         touched, so reserved but unused address space (8
//                         MiB thread stacks, the zeroed .bss of libraries a
//                         local-store daemon never uses: 130 MiB of
//                         libceph-common's) costs nothing; then mlock of the
//                         program's and libraries' file mappings, which reads
//                         in and locks the code and read-only data now. The
//                         catalog is not memory-mapped and the page cache is
//                         not the daemon's, so file data stays reclaimable.
//   BoundAllocatorRetention  caps what glibc's malloc keeps of freed memory:
//                         a fixed mmap threshold (256 KiB; glibc otherwise
//                         raises it, and with it the trim threshold, up to
//                         32 MiB after the first large free), a 1 MiB trim
//                         threshold and at most 4 arenas. Freed staging
//                         bookkeeping then goes back to the kernel instead of
//                         staying resident and locked.
//
// Errors are values: the caller logs them and goes on serving (an
// unprotected daemon is better than none).
//
// Thread-safety: call once, from the serving process, before it starts
// threads of its own (the destagers, the FUSE workers).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "catalog/status.h"

namespace chainswap {

Status ProtectFromOomKiller(int adj);

// See above; a no-op under a sanitizer's allocator. Call before threads.
void BoundAllocatorRetention();

// What LockMemory achieved, for the start-up log line. ENOTSUP in an
// AddressSanitizer or ThreadSanitizer build.
struct LockedMemory {
  uint64_t locked_kib = 0;  // resident locked memory after locking (Locked: of smaps_rollup)
};
Result<LockedMemory> LockMemory();

// Reads one "Key:  N kB" (or plain number) field of /proc/PID/status;
// nullopt when absent. pid 0 = self.
std::optional<uint64_t> ProcStatusField(int pid, const std::string& key);

}  // namespace chainswap
