// The FUSE operation table: thin handlers over ChainswapFs, one reply each.
#pragma once

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 314
#endif
#include <fuse_lowlevel.h>

namespace chainswap {

// Fills the low-level operation table. userdata passed to fuse_session_new
// must be a ChainswapFs** that points at the filesystem before the session
// loop starts.
void AssignOperations(fuse_lowlevel_ops& ops);

}  // namespace chainswap
