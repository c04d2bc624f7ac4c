#include "catalog/backing_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include <spdlog/spdlog.h>

#include "catalog/sqlite.h"

namespace chainswap {

BackingPaths::BackingPaths(std::string r)
    : root(std::move(r)),
      catalog(root + "/catalog.db"),
      store(root + "/store.dat"),
      journal(root + "/journal") {}

BackingDir::~BackingDir() {
  catalog_.reset();
  rados_.reset();
  store_.reset();
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

Status BackingDir::Format(const std::string& root, bool compress, const RadosTarget* rados) {
  BackingPaths p(root);
  struct stat st;
  if (::stat(root.c_str(), &st) != 0) {
    if (errno != ENOENT) return Status::FromErrno(root);
    if (::mkdir(root.c_str(), 0700) != 0) return Status::FromErrno("mkdir " + root);
  } else if (!S_ISDIR(st.st_mode)) {
    return Status::Error(ENOTDIR, root + " is not a directory");
  }
  if (::access(p.catalog.c_str(), F_OK) == 0)
    return Status::Error(EEXIST, root + " already holds a chainswap catalog");
  if (::access(p.store.c_str(), F_OK) == 0)
    return Status::Error(EEXIST, root + " already holds a content store (store.dat)");
  std::optional<RadosConfig> rc;
  if (rados) {
    // The pool must answer now: a typo in the pool or the conf is found at
    // format time, not at the first mount.
    rc = RadosConfig{*rados, NewRadosHostId()};
    auto conn = RadosBackend::Connect(*rc);
    if (!conn.ok()) return conn.status();
  }
  if (::mkdir(p.journal.c_str(), 0700) != 0 && errno != EEXIST)
    return Status::FromErrno("mkdir " + p.journal);
  CS_RETURN_IF_ERROR(ContentStore::Create(p.store));
  return Catalog::Create(p.catalog, compress, rc ? &*rc : nullptr);
}

bool BackingDir::IsLocked(const std::string& root) {
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  bool locked = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return locked;
}

Result<std::unique_ptr<BackingDir>> BackingDir::Open(const std::string& root, LockMode lock,
                                                     const CatalogOptions& options) {
  std::unique_ptr<BackingDir> b(new BackingDir(BackingPaths(root)));
  const BackingPaths& p = b->paths_;
  struct stat st;
  if (::stat(root.c_str(), &st) != 0) return Status::FromErrno("backing directory " + root);
  if (!S_ISDIR(st.st_mode)) return Status::Error(ENOTDIR, root + " is not a directory");
  if (::access(p.catalog.c_str(), F_OK) != 0)
    return Status::Error(ENOENT, root + " is not a chainswap backing directory (no catalog.db; "
                                        "run 'chainswap format " + root + "')");
  if (lock == LockMode::kExclusive) {
    // The lock is an flock on the directory itself: nothing is created in a
    // directory that turns out not to be a chainswap one (SQLite's own locks
    // are fcntl locks on its files and do not interact with it).
    b->lock_fd_ = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (b->lock_fd_ < 0) return Status::FromErrno("open " + root);
    if (::flock(b->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK)
        return Status::Error(EBUSY, root + " is in use by another chainswap daemon or tool");
      return Status::FromErrno("lock " + root);
    }
  }
  auto store = ContentStore::Open(p.store, options.read_only);
  if (!store.ok()) return store.status();
  b->store_ = std::move(*store);
  CatalogOptions copts = options;
  if (options.rados_connect) {
    // The catalog's RADOS settings, read before the catalog is opened (a
    // read-write open resolves leftover references through the connection).
    auto db = sql::Db::Open(p.catalog, SQLITE_OPEN_READONLY);
    if (!db.ok()) return db.status();
    auto rc = ReadRadosConfig(*db);
    if (rc.ok() && rc->has_value()) {
      (*rc)->target.timeout_seconds = options.rados_timeout_seconds;
      auto conn = RadosBackend::Connect(**rc);
      if (!conn.ok()) return conn.status();
      b->rados_ = std::move(*conn);
      copts.rados = b->rados_.get();
      spdlog::info("connected to RADOS pool '{}' as client.{} (host {})", (*rc)->target.pool,
                   (*rc)->target.client_id, (*rc)->host);
    }
    // (Errors reading the settings, say of a file that is no catalog, are
    // the catalog's open's to report.)
  }
  auto cat = Catalog::Open(p.catalog, b->store_.get(), copts);
  if (!cat.ok()) return cat.status();
  b->catalog_ = std::move(*cat);
  return b;
}

}  // namespace chainswap
