#include "fs/figures.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "catalog/catalog_sql.h"

namespace chainswap {

namespace {

double NowSeconds() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

double MtimeSeconds(const struct stat& st) {
  return double(st.st_mtim.tv_sec) + double(st.st_mtim.tv_nsec) / 1e9;
}

uint64_t FileBytes(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// "bucket-<20 digits>.log" (docs/FORMAT.md, destage/journal.h).
bool IsSegmentName(const char* name) {
  constexpr size_t kDigits = 20;
  const size_t len = std::strlen(name);
  if (len != 7 + kDigits + 4 || std::strncmp(name, "bucket-", 7) != 0 || std::strcmp(name + 7 + kDigits, ".log") != 0)
    return false;
  for (size_t i = 7; i < 7 + kDigits; ++i)
    if (name[i] < '0' || name[i] > '9') return false;
  return true;
}

}  // namespace

std::string StatsToJson(const PublishedStats& p) {
  const EngineStats& s = p.engine;
  nlohmann::json j = {{"w_bucket", s.w_bucket},
                      {"x_bucket", s.x_bucket},
                      {"queue_slots", s.n},
                      {"delete_slots", s.d},
                      {"journal_bytes", s.journal_bytes},
                      {"journal_limit", s.journal_limit},
                      {"buckets", s.buckets},
                      {"pending_records", s.pending_records},
                      {"staged_write_blocks", s.staged_write_blocks},
                      {"staged_delete_ranges", s.staged_delete_ranges},
                      {"writes_absorbed", s.writes_absorbed},
                      {"ops_destaged", s.ops_destaged},
                      {"ops_per_sec", p.ops_per_sec},
                      {"blocks_stored", s.blocks_stored},
                      {"blocks_deduped", s.blocks_deduped},
                      {"blocks_freed", s.blocks_freed},
                      {"enospc", s.enospc},
                      {"policy_changes", s.policy_changes},
                      {"journal_syncs", s.journal_syncs},
                      {"fsyncs_destaged", s.fsyncs_destaged},
                      {"store_usage", s.store_usage},
                      {"error", s.error}};
  return j.dump(2);
}

std::optional<PublishedStats> StatsFromJson(std::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  PublishedStats p;
  EngineStats& s = p.engine;
  auto u = [&](const char* k) {
    const auto it = j.find(k);
    return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : uint64_t{0};
  };
  auto d = [&](const char* k) {
    const auto it = j.find(k);
    return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
  };
  s.w_bucket = u("w_bucket");
  s.x_bucket = u("x_bucket");
  s.n = static_cast<uint32_t>(u("queue_slots"));
  s.d = static_cast<uint32_t>(u("delete_slots"));
  s.journal_bytes = u("journal_bytes");
  s.journal_limit = u("journal_limit");
  s.buckets = u("buckets");
  s.pending_records = u("pending_records");
  s.staged_write_blocks = u("staged_write_blocks");
  s.staged_delete_ranges = u("staged_delete_ranges");
  s.writes_absorbed = u("writes_absorbed");
  s.ops_destaged = u("ops_destaged");
  s.blocks_stored = u("blocks_stored");
  s.blocks_deduped = u("blocks_deduped");
  s.blocks_freed = u("blocks_freed");
  s.enospc = u("enospc");
  s.policy_changes = u("policy_changes");
  s.journal_syncs = u("journal_syncs");
  s.fsyncs_destaged = u("fsyncs_destaged");
  s.store_usage = d("store_usage");
  p.ops_per_sec = d("ops_per_sec");
  const auto e = j.find("error");
  if (e != j.end() && e->is_string()) s.error = e->get<std::string>();
  return p;
}

Result<sql::Db> OpenStatsReader(const std::string& catalog_path) {
  auto db = sql::Db::Open(catalog_path, SQLITE_OPEN_READWRITE);
  if (!db.ok()) return db.status();
  CS_RETURN_IF_ERROR(db->Exec("PRAGMA query_only=ON; PRAGMA cache_size=-2048; PRAGMA mmap_size=0;"));
  return db;
}

void ScanJournal(const std::string& journal_dir, uint64_t* segments, double* oldest_age_seconds) {
  *segments = 0;
  *oldest_age_seconds = 0;
  DIR* d = ::opendir(journal_dir.c_str());
  if (!d) return;
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d))
    if (IsSegmentName(e->d_name)) names.emplace_back(e->d_name);
  // Zero-padded IDs: name order is bucket order. A segment may retire (be
  // deleted) between readdir and stat: the next one is then the oldest.
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) {
    struct stat st;
    if (::fstatat(::dirfd(d), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    *oldest_age_seconds = std::max(0.0, NowSeconds() - MtimeSeconds(st));
    break;
  }
  ::closedir(d);
  *segments = names.size();
}

Status GatherCatalogFigures(BackingDir& backing, const sql::Db& db, Figures* out) {
  auto chains = QueryChainStats(db);
  if (!chains.ok()) return chains.status();
  out->chains = std::move(*chains);
  auto hash_table = QueryHashTableFigures(db);
  if (!hash_table.ok()) return hash_table.status();
  out->hash_table = *hash_table;
  auto files = backing.catalog().ListFiles();
  if (!files.ok()) return files.status();
  std::map<int64_t, const std::string*> chain_names;
  for (const ChainStats& c : out->chains) chain_names[c.dedup_id] = &c.name;
  out->files.clear();
  for (const FileInfo& f : *files) {
    const auto c = chain_names.find(f.dedup_id);
    if (f.unlinked || c == chain_names.end()) continue;  // being reclaimed, or of a removed chain
    out->files.push_back({f.file_id, f.dedup_id, *c->second, f.name, f.size, f.mapped_blocks * kBlockSize});
  }
  std::sort(out->files.begin(), out->files.end(), [](const FileFigures& a, const FileFigures& b) {
    return a.chain != b.chain ? a.chain < b.chain : a.name < b.name;
  });
  out->usage = backing.catalog().Usage();
  auto alloc = backing.store().AllocatedBytes();
  out->store_allocated_bytes = alloc.ok() ? *alloc : 0;
  const BackingPaths& p = backing.paths();
  out->catalog_wal_bytes = FileBytes(p.catalog + "-wal");
  out->catalog_bytes = FileBytes(p.catalog) + out->catalog_wal_bytes;
  ScanJournal(p.journal, &out->journal_segments, &out->oldest_bucket_age_seconds);
  return Status::Ok();
}

void ReadPublishedStats(const std::string& path, Figures* out) {
  std::ifstream in(path);
  if (!in) return;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return;
  std::ostringstream text;
  text << in.rdbuf();
  auto p = StatsFromJson(text.str());
  if (!p) return;
  out->destage_age_seconds = std::max(0.0, NowSeconds() - MtimeSeconds(st));
  if (out->destage_age_seconds <= kPublishedLiveSeconds) out->destage = std::move(*p);
  else out->stale_destage = std::move(*p);
}

}  // namespace chainswap
