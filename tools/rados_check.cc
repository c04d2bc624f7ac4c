#include "tools/rados_check.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>

namespace chainswap {

namespace {

// One cas call through a batch of one.
Status One(RadosStore& store, const std::function<void(RadosBatch&)>& submit) {
  RadosBatch b(store, 1);
  submit(b);
  return b.Wait().at(0);
}

Status ProbeCas(RadosStore& store) {
  const auto now = std::chrono::system_clock::now().time_since_epoch().count();
  const std::string object = "chainswap-check." + std::to_string(::getpid()) + "." + std::to_string(now);
  const RadosRef first{"check", 1}, second{"check", 2};
  std::vector<uint8_t> block(kBlockSize), other(kBlockSize);
  for (size_t i = 0; i < block.size(); ++i) {
    block[i] = static_cast<uint8_t>(i * 31 + 7);
    other[i] = static_cast<uint8_t>(i * 17 + 3);
  }
  Status st = One(store, [&](RadosBatch& b) { b.CreateOrRef(object, first, block, true); });
  if (st.code() == EOPNOTSUPP || st.code() == ENOSYS) {
    return Status::Error(EOPNOTSUPP, "the OSDs do not load Ceph's `cas` object class (" + st.message() +
                                         "): set `osd class load list` and `osd class default list` to include "
                                         "cas (or *) on every OSD");
  }
  if (st.code() == EPERM) {
    return Status::Error(EPERM, st.message() + ": the user may not call object classes in the pool; its caps "
                                               "need osd 'allow rwx pool=POOL' (the x), and mon 'allow r'");
  }
  if (!st.ok()) return st;
  st = One(store, [&](RadosBatch& b) { b.CreateOrRef(object, second, block, true); });
  if (!st.ok()) return st;
  st = One(store, [&](RadosBatch& b) { b.CreateOrRef(object, RadosRef{"check", 3}, other, true); });
  if (st.code() != ENOMSG) {
    return Status::Error(EPROTO, "cas probe: other bytes under the same name were not refused (" +
                                     (st.ok() ? std::string("accepted") : st.ToString()) +
                                     "): this cas class does not verify, so blocks cannot be shared safely");
  }
  for (const RadosRef& r : {first, second}) {
    st = One(store, [&](RadosBatch& b) { b.Unref(object, r); });
    if (!st.ok()) return st;
  }
  auto gone = store.Stat(object);
  if (gone.ok())
    return Status::Error(EPROTO, "cas probe: " + object + " is still there after its last reference was dropped");
  if (gone.status().code() != ENOENT) return gone.status();
  return Status::Ok();
}

}  // namespace

Result<RadosCheckReport> RadosCheck(const RadosTarget& target) {
  auto store = RadosStore::Connect(target);
  if (!store.ok()) return store.status();
  RadosCheckReport r;
  r.pool = target.pool;
  r.pool_id = (*store)->pool_id();
  CS_RETURN_IF_ERROR(ProbeCas(**store));
  r.cas_ok = true;
  auto all = (*store)->List("");
  if (!all.ok()) return all.status();
  r.objects = all->size();
  std::map<std::string, uint64_t> blocks_by_id;
  std::vector<std::string> chain_names;
  for (const std::string& oid : *all) {
    if (oid.starts_with("chain.")) {
      chain_names.push_back(oid.substr(6));
    } else if (oid.starts_with("blk.")) {
      const size_t dot = oid.find('.', 4);
      if (dot != std::string::npos) ++blocks_by_id[oid.substr(4, dot - 4)];
    }
  }
  std::sort(chain_names.begin(), chain_names.end());
  for (const std::string& name : chain_names) {
    auto rec = (*store)->ReadChain(name);
    if (!rec.ok()) return rec.status();
    r.chains.push_back(RadosChainSummary{name, rec->id, blocks_by_id[rec->id]});
  }
  return r;
}

std::string RenderRadosCheck(const RadosCheckReport& r) {
  std::string out = "pool '" + r.pool + "' (id " + std::to_string(r.pool_id) + "): reachable, " +
                    std::to_string(r.objects) + " object(s)\n";
  out += "cas object class: ok (create, verified reference, other bytes refused, freed with the last reference)\n";
  if (r.chains.empty()) {
    out += "chains: none yet\n";
    return out;
  }
  out += "chains:\n";
  char line[512];
  for (const RadosChainSummary& c : r.chains) {
    std::snprintf(line, sizeof line, "  %-24s id %s  %llu block object(s)\n", c.name.c_str(), c.id.c_str(),
                  static_cast<unsigned long long>(c.block_objects));
    out += line;
  }
  return out;
}

std::string RadosCheckJson(const RadosCheckReport& r) {
  nlohmann::json j;
  j["pool"] = r.pool;
  j["pool_id"] = r.pool_id;
  j["objects"] = r.objects;
  j["cas_ok"] = r.cas_ok;
  j["chains"] = nlohmann::json::array();
  for (const RadosChainSummary& c : r.chains)
    j["chains"].push_back({{"name", c.name}, {"id", c.id}, {"block_objects", c.block_objects}});
  return j.dump();
}

}  // namespace chainswap
