#include "catalog/catalog_sql.h"

#include <initializer_list>
#include <utility>

namespace chainswap::catalog_sql {

namespace {

// A statement set with every member prepared from its text.
template <typename Set>
Result<std::unique_ptr<Set>> PrepareSet(const sql::Db& db,
                                        std::initializer_list<std::pair<sql::Stmt Set::*, std::string_view>> items) {
  auto set = std::make_unique<Set>();
  for (const auto& [member, text] : items) {
    auto s = sql::Stmt::Prepare(db, text);
    if (!s.ok()) return s.status();
    (*set).*member = std::move(*s);
  }
  return set;
}

}  // namespace

Result<std::unique_ptr<WriterStatements>> WriterStatements::Prepare(const sql::Db& db) {
  using S = WriterStatements;
  return PrepareSet<S>(db, {
                               {&S::lat_get, kLatGet},
                               {&S::lat_put, kLatPut},
                               {&S::lat_delete_range, kLatDeleteRange},
                               {&S::lat_range, kLatRange},
                               {&S::lat_next, kLatNext},
                               {&S::hash_find, kHashFind},
                               {&S::pat_insert, kPatInsert},
                               {&S::pat_add_ref, kPatAddRef},
                               {&S::pat_refcount, kPatRefcount},
                               {&S::pat_delete, kPatDelete},
                               {&S::free_slot_insert, kFreeSlotInsert},
                               {&S::free_slot_delete, kFreeSlotDelete},
                               {&S::file_add_mapped, kFileAddMapped},
                               {&S::file_mapped, kFileMapped},
                               {&S::file_set_meta, kFileSetMeta},
                           });
}

Result<std::unique_ptr<ReaderStatements>> ReaderStatements::Prepare(const sql::Db& db) {
  using S = ReaderStatements;
  return PrepareSet<S>(db, {
                               {&S::lat_range, kLatRange},
                               {&S::file_mapped, kFileMapped},
                               {&S::lat_count, kLatCount},
                           });
}

}  // namespace chainswap::catalog_sql
