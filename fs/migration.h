// Migration of a swap file between hosts that share a RADOS pool (SPEC §8,
// docs/RADOS.md "Migration"): the manifest the source daemon writes and the
// destination daemon reads, and the two control xattrs that ask for them.
//
//   setxattr(FILE, "user.chainswap.export", "/abs/path/manifest")
//       the daemon drains FILE's writes into its catalog and writes the
//       manifest (0600, created exclusively) at that path;
//   setxattr(EMPTY_FILE, "user.chainswap.import", "/abs/path/manifest")
//       the daemon takes a reference on each block's object it does not
//       reference yet and maps the file onto them; no block is read or
//       written (Catalog::ImportFile).
// Both are refused to anyone but root (EPERM): the daemon reads and writes
// the path it is given. `chainswap export|import|migrate` call them.
//
// The manifest is JSON: {"format": "chainswap-manifest 1", "pool", "chain",
// "chain_id", "size", "mode", "blocks": [[LBA, HASH32HEX], ...]}.
//
// Thread-safety: pure functions.
#pragma once

#include <string>

#include "catalog/catalog.h"
#include "catalog/status.h"

namespace chainswap {

inline constexpr const char* kExportXattr = "user.chainswap.export";
inline constexpr const char* kImportXattr = "user.chainswap.import";

struct Manifest {
  FileExport file;
  uint64_t size = 0;  // the file's size in bytes
  uint32_t mode = 0600;
};

// Writes `m` to `path` (absolute; created 0600 with O_EXCL, then fsynced).
// EEXIST when the path exists.
Status WriteManifest(const std::string& path, const Manifest& m);
// Reads a manifest. EINVAL (naming the path) for a file that is not one.
Result<Manifest> ReadManifest(const std::string& path);

}  // namespace chainswap
