// Reader connections to the catalog database, pooled: reads that need not
// wait for the writer (Catalog::ReadBlocks, MappedBlocksWithin) run on
// their own connection, in parallel with each other and with a destager's
// transaction (WAL readers never block and are never blocked). A reader sees
// committed state only: a snapshot taken when its statement (or its BEGIN)
// starts.
//
// Connections are opened on demand, returned to the pool when the lease
// ends, and closed with the pool. Acquire() returns nullptr when a new
// connection cannot be opened or prepared; the caller then reads through
// the writer connection.
//
// Thread-safety: Acquire() and the return of a lease are thread-safe (the
// pool's mutex guards only the idle list and is held for no I/O; it is
// never held together with the catalog's writer mutex). A leased Reader
// belongs to its holder alone. Every lease must end before the pool is
// destroyed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "catalog/mutex.h"
#include "catalog/sqlite.h"
#include "catalog/thread_annotations.h"

namespace chainswap {

namespace catalog_sql {
struct ReaderStatements;
}  // namespace catalog_sql

class ReaderPool {
 public:
  // One reader connection and its statements.
  struct Reader {
    Reader();
    ~Reader();
    sql::Db db;
    std::unique_ptr<catalog_sql::ReaderStatements> st;  // finalized before db closes
  };
  // The deleter of a lease: puts the reader back in the idle list.
  class GiveBack {
   public:
    GiveBack() = default;  // for an empty lease
    explicit GiveBack(ReaderPool* pool) : pool_(pool) {}
    void operator()(Reader* r) const;

   private:
    ReaderPool* pool_ = nullptr;
  };
  using Lease = std::unique_ptr<Reader, GiveBack>;

  // Connections open `path` read-write (read-only opens of a WAL database
  // need the -shm file to exist), run `pragmas` (their page cache size),
  // and only read.
  ReaderPool(std::string path, std::string pragmas) : path_(std::move(path)), pragmas_(std::move(pragmas)) {}
  ~ReaderPool();
  ReaderPool(const ReaderPool&) = delete;
  ReaderPool& operator=(const ReaderPool&) = delete;

  // An idle connection, or a new one; nullptr when none can be had.
  Lease Acquire() EXCLUDES(mu_);

 private:
  // Constant after construction.
  const std::string path_;
  const std::string pragmas_;

  Mutex mu_;
  std::vector<std::unique_ptr<Reader>> idle_ GUARDED_BY(mu_);
};

}  // namespace chainswap
