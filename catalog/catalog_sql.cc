#include "catalog/catalog_sql.h"

#include <initializer_list>
#include <utility>

namespace chainswap::catalog_sql {

namespace {

// Prepares every listed member of `set` from its text.
template <typename Set>
Status PrepareInto(const sql::Db& db, Set& set,
                   std::initializer_list<std::pair<sql::Stmt Set::*, std::string_view>> items) {
  for (const auto& [member, text] : items) {
    auto s = sql::Stmt::Prepare(db, text);
    if (!s.ok()) return s.status();
    set.*member = std::move(*s);
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<WriterStatements>> WriterStatements::Prepare(const sql::Db& db, bool reads_only) {
  using S = WriterStatements;
  auto set = std::make_unique<S>();
  CS_RETURN_IF_ERROR(PrepareInto<S>(db, *set,
                                    {
                                        {&S::lat_range, kLatRange},
                                        {&S::lat_next, kLatNext},
                                        {&S::file_mapped, kFileMapped},
                                    }));
  if (reads_only) return set;
  CS_RETURN_IF_ERROR(PrepareInto<S>(db, *set,
                                    {
                                        {&S::lat_get, kLatGet},
                                        {&S::lat_put, kLatPut},
                                        {&S::lat_delete_range, kLatDeleteRange},
                                        {&S::hash_index_find, kHashIndexFind},
                                        {&S::pat_get, kPatGet},
                                        {&S::pat_insert, kPatInsert},
                                        {&S::pat_add_ref, kPatAddRef},
                                        {&S::pat_delete, kPatDelete},
                                        {&S::hash_log_append, kHashLogAppend},
                                        {&S::hash_log_truncate, kHashLogTruncate},
                                        {&S::hash_index_add, kHashIndexAdd},
                                        {&S::hash_index_remove, kHashIndexRemove},
                                        {&S::block_hash_insert, kBlockHashInsert},
                                        {&S::block_hash_get, kBlockHashGet},
                                        {&S::block_hash_delete, kBlockHashDelete},
                                        {&S::file_add_mapped, kFileAddMapped},
                                        {&S::file_set_meta, kFileSetMeta},
                                        {&S::set_hash_counters, kSetHashCounters},
                                        {&S::set_journal_retired_through, kSetJournalRetiredThrough},
                                        {&S::rados_intent_insert, kRadosIntentInsert},
                                        {&S::rados_intent_delete, kRadosIntentDelete},
                                        {&S::rados_unref_insert, kRadosUnrefInsert},
                                        {&S::rados_block_insert, kRadosBlockInsert},
                                        {&S::rados_block_get, kRadosBlockGet},
                                        {&S::rados_block_delete, kRadosBlockDelete},
                                        {&S::set_rados_next_holder, kSetRadosNextHolder},
                                    }));
  return set;
}

Result<std::unique_ptr<ReaderStatements>> ReaderStatements::Prepare(const sql::Db& db) {
  using S = ReaderStatements;
  auto set = std::make_unique<S>();
  CS_RETURN_IF_ERROR(PrepareInto<S>(db, *set,
                                    {
                                        {&S::lat_range, kLatRange},
                                        {&S::file_mapped, kFileMapped},
                                        {&S::lat_count, kLatCount},
                                        {&S::lat_range_rados, kLatRangeRados},
                                    }));
  return set;
}

}  // namespace chainswap::catalog_sql
