#include "catalog/rados_backend.h"

#include <spdlog/fmt/fmt.h>

#include <cerrno>
#include <map>

#include "catalog/catalog_sql.h"

namespace chainswap {

bool IsStoreUnreachable(const Status& st) {
  switch (st.code()) {
    case ETIMEDOUT:
    case ENOTCONN:
    case ECONNREFUSED:
    case ECONNRESET:
    case ESHUTDOWN:
    case EHOSTUNREACH:
    case ENETUNREACH:
      return true;
    default:
      return false;
  }
}

std::string NewRadosHostId() {
  const HashSeed r = NewHashSeed();  // getrandom
  std::string id;
  for (size_t i = 0; i < 8; ++i) id += fmt::format("{:02x}", r[i]);
  return id;
}

Result<std::optional<RadosConfig>> ReadRadosConfig(const sql::Db& db) {
  auto rows = sql::QueryAll(db, catalog_sql::kMetaRados,
                            [](const sql::Stmt& row) { return std::make_pair(row.Text(0), row.Text(1)); });
  if (!rows.ok()) return rows.status();
  std::map<std::string, std::string> meta(rows->begin(), rows->end());
  auto store = meta.find("store");
  if (store == meta.end() || store->second == "local") return std::optional<RadosConfig>();
  if (store->second != "rados")
    return Status::Error(EUCLEAN, "catalog meta store is '" + store->second + "' (expected 'local' or 'rados')");
  RadosConfig c;
  for (const char* key : {"rados_pool", "rados_user", "rados_host"}) {
    auto it = meta.find(key);
    if (it == meta.end() || it->second.empty())
      return Status::Error(EUCLEAN, std::string("catalog of a RADOS store lacks meta ") + key);
  }
  c.target.pool = meta["rados_pool"];
  c.target.client_id = meta["rados_user"];
  c.target.conf_path = meta["rados_conf"];
  c.host = meta["rados_host"];
  return std::optional<RadosConfig>(std::move(c));
}

Status WriteRadosConfig(sql::Db& db, const RadosConfig& config) {
  auto put = sql::Stmt::Prepare(db, catalog_sql::kMetaPut);
  if (!put.ok()) return put.status();
  const std::pair<const char*, std::string> rows[] = {
      {"store", "rados"},
      {"rados_pool", config.target.pool},
      {"rados_conf", config.target.conf_path},
      {"rados_user", config.target.client_id},
      {"rados_host", config.host},
      {"rados_next_holder", "1"},
  };
  for (const auto& [key, value] : rows) {
    put->Reset().Bind(1, std::string_view(key)).Bind(2, std::string_view(value));
    CS_RETURN_IF_ERROR(put->Run());
  }
  return Status::Ok();
}

Result<std::unique_ptr<RadosBackend>> RadosBackend::Connect(const RadosConfig& config) {
  auto store = RadosStore::Connect(config.target);
  if (!store.ok()) return store.status();
  return std::unique_ptr<RadosBackend>(new RadosBackend(config, std::move(*store)));
}

std::string RadosBackend::ObjectName(const std::string& chain_id, const BlockHash& h, bool private_name,
                                     int64_t pblock) const {
  std::string name = RadosStore::BlockObjectName(chain_id, h);
  if (private_name) name += "." + config_.host + "." + std::to_string(pblock);
  return name;
}

}  // namespace chainswap
