// /dev/fuse I/O hooks (libfuse's fuse_session_custom_io) that let the mount
// take over clearing setuid/setgid bits and file capabilities on write
// (FUSE_HANDLE_KILLPRIV_V2), which libfuse 3.14 cannot negotiate itself.
//
// Why: without it the kernel asks the daemon for "security.capability"
// (a GETXATTR round trip) before every buffered write, doubling the cost of
// a small write. With it the kernel marks the superblock SB_NOSEC and skips
// the check. The duty that comes with it is trivially met: swap files never
// carry setuid/setgid bits (ChainswapFs::kFileModeBits) and have no xattrs.
//
// The hooks pass every request and reply through unchanged, except that the
// reply to FUSE_INIT gets FUSE_HANDLE_KILLPRIV_V2 added to its flags when
// the kernel offered it.
//
// Thread-safety: the hooks are called by every FUSE worker thread; the INIT
// exchange happens once, before any other request, and its state is atomic.
#pragma once

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 314
#endif
#include <fuse_lowlevel.h>

namespace chainswap {

// Installs the hooks on a mounted session, before its loop starts. False
// (nothing changed, the mount works as without) when libfuse refuses.
bool InstallKillPrivV2Hooks(fuse_session* se);

// True once the kernel's INIT offered FUSE_HANDLE_KILLPRIV_V2 and the reply
// accepted it.
bool KillPrivV2Granted();

}  // namespace chainswap
