#include "catalog/catalog_sql.h"

#include <initializer_list>
#include <utility>

namespace chainswap::catalog_sql {

namespace {

struct Item {
  sql::Stmt* stmt;
  std::string_view text;
};

Status PrepareAll(const sql::Db& db, std::initializer_list<Item> items) {
  for (const Item& it : items) {
    auto s = sql::Stmt::Prepare(db, it.text);
    if (!s.ok()) return s.status();
    *it.stmt = std::move(*s);
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<WriterStatements>> WriterStatements::Prepare(const sql::Db& db) {
  auto s = std::make_unique<WriterStatements>();
  CS_RETURN_IF_ERROR(PrepareAll(db, {
                                        {&s->lat_get, kLatGet},
                                        {&s->lat_put, kLatPut},
                                        {&s->lat_delete_range, kLatDeleteRange},
                                        {&s->lat_range, kLatRange},
                                        {&s->lat_next, kLatNext},
                                        {&s->hash_find, kHashFind},
                                        {&s->pat_insert, kPatInsert},
                                        {&s->pat_add_ref, kPatAddRef},
                                        {&s->pat_refcount, kPatRefcount},
                                        {&s->pat_delete, kPatDelete},
                                        {&s->free_slot_insert, kFreeSlotInsert},
                                        {&s->free_slot_delete, kFreeSlotDelete},
                                        {&s->file_add_mapped, kFileAddMapped},
                                        {&s->file_mapped, kFileMapped},
                                        {&s->file_set_meta, kFileSetMeta},
                                    }));
  return s;
}

Result<std::unique_ptr<ReaderStatements>> ReaderStatements::Prepare(const sql::Db& db) {
  auto s = std::make_unique<ReaderStatements>();
  CS_RETURN_IF_ERROR(PrepareAll(db, {
                                        {&s->lat_range, kLatRange},
                                        {&s->file_mapped, kFileMapped},
                                        {&s->lat_count, kLatCount},
                                    }));
  return s;
}

}  // namespace chainswap::catalog_sql
