// The backing directory (SPEC §3): the catalog, the content store and the
// journal of one chainswap installation, and the lock that keeps a second
// daemon (or an offline tool that writes) away while one holds it.
//
//   BACKING/catalog.db      SQLite catalog (WAL mode; -wal and -shm beside it)
//   BACKING/store.dat       content store, 4 KiB slots (empty when the
//                           blocks are in RADOS: rados_backend.h)
//   BACKING/journal/        write-back journal segments (buckets)
//   BACKING itself          flock()ed exclusively by the daemon (the lock)
//
// Thread-safety: a BackingDir is immutable after Open(); the Catalog and
// ContentStore it owns are thread-safe themselves.
#pragma once

#include <memory>
#include <string>

#include "catalog/catalog.h"
#include "catalog/content_store.h"
#include "catalog/rados_backend.h"

namespace chainswap {

struct BackingPaths {
  explicit BackingPaths(std::string root);
  std::string root, catalog, store, journal;
};

enum class LockMode { kExclusive, kNone };

class BackingDir {
 public:
  ~BackingDir();
  BackingDir(const BackingDir&) = delete;
  BackingDir& operator=(const BackingDir&) = delete;

  // Creates a new installation in `root` (created 0700 if missing; must be
  // empty of chainswap files). EEXIST if it already holds a catalog.
  // `compress`: new unique blocks are stored LZ4-compressed (mount option
  // compress= overrides it).
  // `rados`: the blocks go to a RADOS pool (format checks that it connects;
  // compression is then off); its host ID is made here.
  static Status Format(const std::string& root, bool compress = false, const RadosTarget* rados = nullptr);

  // Opens an installation. With kExclusive, takes the lock without waiting:
  // EBUSY with a message naming the holder when another process has it.
  // ENOENT when `root` is not a chainswap backing directory. A catalog whose
  // blocks are in RADOS is connected to its pool first (unless
  // options.rados_connect is false), with options.rados_timeout_seconds:
  // the error of RadosBackend::Connect when the cluster does not answer.
  static Result<std::unique_ptr<BackingDir>> Open(const std::string& root, LockMode lock,
                                                  const CatalogOptions& options);

  // True when some process holds the daemon lock on `root`.
  static bool IsLocked(const std::string& root);

  const BackingPaths& paths() const { return paths_; }
  Catalog& catalog() { return *catalog_; }
  ContentStore& store() { return *store_; }
  // The RADOS connection (null for a local store, or when not connected).
  RadosBackend* rados() { return rados_.get(); }

 private:
  explicit BackingDir(BackingPaths p) : paths_(std::move(p)) {}
  BackingPaths paths_;
  int lock_fd_ = -1;
  std::unique_ptr<ContentStore> store_;
  std::unique_ptr<RadosBackend> rados_;
  std::unique_ptr<Catalog> catalog_;  // declared after store_ and rados_: destroyed first
};

}  // namespace chainswap
