#include "catalog/reader_pool.h"

#include <utility>

#include "catalog/catalog_sql.h"

namespace chainswap {

ReaderPool::Reader::Reader() = default;
ReaderPool::Reader::~Reader() = default;

ReaderPool::~ReaderPool() = default;

void ReaderPool::GiveBack::operator()(Reader* r) const {
  MutexLock lock(&pool_->mu_);
  pool_->idle_.emplace_back(r);
}

ReaderPool::Lease ReaderPool::Acquire() {
  {
    MutexLock lock(&mu_);
    if (!idle_.empty()) {
      Reader* r = idle_.back().release();
      idle_.pop_back();
      return Lease(r, GiveBack(this));
    }
  }
  // Opened outside the lock: other readers need not wait for it.
  auto db = sql::Db::Open(path_, SQLITE_OPEN_READWRITE);
  if (!db.ok() || !db->Exec(pragmas_).ok()) return Lease(nullptr, GiveBack(this));
  auto r = std::make_unique<Reader>();
  r->db = std::move(*db);
  auto st = catalog_sql::ReaderStatements::Prepare(r->db);
  if (!st.ok()) return Lease(nullptr, GiveBack(this));
  r->st = std::move(*st);
  return Lease(r.release(), GiveBack(this));
}

}  // namespace chainswap
