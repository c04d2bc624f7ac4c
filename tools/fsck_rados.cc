#include "tools/fsck_rados.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "catalog/catalog_sql.h"
#include "catalog/rados_backend.h"
#include "catalog/rados_store.h"

namespace chainswap {

namespace {

constexpr size_t kWindow = 64;           // RADOS operations in flight
constexpr size_t kReadChunk = 1024;      // objects read (and hashed) per batch
constexpr unsigned kHolderThreads = 16;  // synchronous Holders() calls at once
constexpr size_t kListedPerKind = 20;    // leaks listed one by one, then counted

// A put is done when it dropped the reference (OK), when the holder held
// none (ENOLINK), or when the object is gone (ENOENT).
bool PutDone(const Status& st) { return st.ok() || st.code() == ENOLINK || st.code() == ENOENT; }

std::string Str(int64_t v) { return std::to_string(v); }

std::string HolderName(const RadosRef& r) { return "ref." + r.host + "." + Str(r.local); }

// An error of the cluster itself (it did not answer, or refused us): the
// check stops. The code is kept (IsStoreUnreachable tells a timeout).
Status PoolError(const RadosBackend& r, const Status& st) {
  const RadosTarget& t = r.config().target;
  return Status::Error(st.code(), "RADOS pool '" + t.pool + "' (conf " +
                                      (t.conf_path.empty() ? std::string("librados's default") : t.conf_path) +
                                      ", client." + t.client_id + "): " + st.message());
}

bool ParseHex(std::string_view hex, uint8_t* out, size_t n) {
  if (hex.size() != 2 * n) return false;
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < n; ++i) {
    const int hi = nib(hex[2 * i]), lo = nib(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

bool IsHexId(std::string_view s) {
  if (s.size() != 32) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// A block object's name: blk.ID.HASH (shared) or blk.ID.HASH.HOST.PBLOCK
// (private to HOST's block PBLOCK).
struct ObjectId {
  std::string chain_id;
  BlockHash hash;
  bool priv = false;
  std::string host;
  int64_t pblock = 0;
};

std::optional<ObjectId> ParseObjectName(const std::string& name) {
  if (!name.starts_with("blk.")) return std::nullopt;
  std::vector<std::string_view> parts;
  std::string_view rest(name);
  rest.remove_prefix(4);
  for (;;) {
    const size_t dot = rest.find('.');
    parts.push_back(rest.substr(0, dot));
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  if (parts.size() != 2 && parts.size() != 4) return std::nullopt;
  ObjectId id;
  if (!IsHexId(parts[0])) return std::nullopt;
  id.chain_id = std::string(parts[0]);
  if (!ParseHex(parts[1], id.hash.bytes.data(), id.hash.bytes.size())) return std::nullopt;
  if (parts.size() == 4) {
    id.priv = true;
    id.host = std::string(parts[2]);
    try {
      size_t used = 0;
      id.pblock = std::stoll(std::string(parts[3]), &used);
      if (used != parts[3].size()) return std::nullopt;
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  return id;
}

// One PAT row, with its rados_block row.
struct Block {
  int64_t dedup_id = 0;
  bool has_key = false;
  int64_t key = 0;
  bool has_row = false;  // a rados_block row
  bool bad_row = false;  // ... whose hash is not 16 bytes
  BlockHash hash;
  bool priv = false;
  std::string object;  // the object the row names ("" without a row, or when the chain has no ID)
};

// A rados_block row of no PAT row.
struct Orphan {
  BlockHash hash;
  bool priv = false;
};

// The catalog's rows, in one read snapshot.
struct Snapshot {
  std::map<int64_t, std::string> chain_ids;  // dedup_id -> rados_id (chains that have one)
  std::set<int64_t> chains_without_id;
  std::map<int64_t, Block> blocks;
  std::map<int64_t, Orphan> orphans;
  std::map<int64_t, std::string> intents, unrefs;  // holder -> object
  int64_t next_holder = 0;
};

template <typename Fn>
Status ForEach(sql::Db& db, std::string_view q, Fn&& fn) {
  auto st = sql::Stmt::Prepare(db, q);
  if (!st.ok()) return st.status();
  return st->ForEachRow(fn);
}

Status Exec(sql::Db& db, std::string_view q, int64_t a) {
  auto st = sql::Stmt::Prepare(db, q);
  if (!st.ok()) return st.status();
  st->Bind(1, a);
  return st->Run();
}

Result<int64_t> NextHolder(sql::Db& db) {
  auto q = sql::Stmt::Prepare(db, catalog_sql::kRadosNextHolder);
  if (!q.ok()) return q.status();
  auto r = q->Step();
  if (!r.ok()) return r.status();
  if (!*r || q->IsNull(0)) return Status::Error(EUCLEAN, "catalog meta rados_next_holder is missing");
  return q->Int(0);
}

Status ReadSnapshot(sql::Db& db, const RadosBackend& rados, Snapshot& s) {
  sql::Transaction txn(db);
  CS_RETURN_IF_ERROR(txn.BeginRead());
  CS_RETURN_IF_ERROR(ForEach(db, "SELECT dedup_id, rados_id FROM chain", [&](const sql::Stmt& r) {
    if (r.IsNull(1) || r.Text(1).empty()) s.chains_without_id.insert(r.Int(0));
    else s.chain_ids[r.Int(0)] = r.Text(1);
  }));
  CS_RETURN_IF_ERROR(ForEach(db, "SELECT pblock, dedup_id, hash_key FROM pat", [&](const sql::Stmt& r) {
    Block& b = s.blocks[r.Int(0)];
    b.dedup_id = r.Int(1);
    b.has_key = !r.IsNull(2);
    b.key = b.has_key ? r.Int(2) : 0;
  }));
  CS_RETURN_IF_ERROR(ForEach(db, "SELECT pblock, hash, private FROM rados_block", [&](const sql::Stmt& r) {
    const int64_t pb = r.Int(0);
    BlockHash h;
    const auto blob = r.Blob(1);
    const bool ok = blob.size() == h.bytes.size();
    if (ok) std::memcpy(h.bytes.data(), blob.data(), h.bytes.size());
    const bool priv = r.Int(2) != 0;
    auto b = s.blocks.find(pb);
    if (b == s.blocks.end()) {
      s.orphans[pb] = Orphan{h, priv};
      return;
    }
    if (!ok) {
      b->second.bad_row = true;
      return;
    }
    b->second.has_row = true;
    b->second.hash = h;
    b->second.priv = priv;
  }));
  CS_RETURN_IF_ERROR(ForEach(db, "SELECT holder, object FROM rados_intent",
                             [&](const sql::Stmt& r) { s.intents[r.Int(0)] = r.Text(1); }));
  CS_RETURN_IF_ERROR(ForEach(db, "SELECT holder, object FROM rados_unref",
                             [&](const sql::Stmt& r) { s.unrefs[r.Int(0)] = r.Text(1); }));
  auto next = NextHolder(db);
  if (!next.ok()) return next.status();
  s.next_holder = *next;
  CS_RETURN_IF_ERROR(txn.Commit());
  for (auto& [pb, b] : s.blocks) {
    auto id = s.chain_ids.find(b.dedup_id);
    if (b.has_row && id != s.chain_ids.end()) b.object = rados.ObjectName(id->second, b.hash, b.priv, pb);
  }
  return Status::Ok();
}

// The holders of one object, as fsck reads them.
struct Holders {
  bool present = true;     // false: the object does not exist
  bool unreadable = false;  // its cas references do not decode (detail in st)
  Status st;
  std::vector<RadosRef> refs;
};

// Holders(object), with the outcomes fsck tells apart. An error of the
// cluster itself is returned.
Result<Holders> ReadHolders(RadosStore& store, const std::string& object) {
  Holders h;
  auto r = store.Holders(object);
  if (r.ok()) {
    h.refs = std::move(*r);
    return h;
  }
  const Status& st = r.status();
  if (st.code() == ENOENT) {
    h.present = false;
  } else if (st.code() == ENODATA) {
    // No cas references at all (an object not made by cas, or emptied).
  } else if (st.code() == EPROTO) {
    h.unreadable = true;
    h.st = st;
  } else {
    return st;
  }
  return h;
}

size_t CountRef(const std::vector<RadosRef>& refs, const RadosRef& ref) {
  return static_cast<size_t>(std::count(refs.begin(), refs.end(), ref));
}

// A repair made in the pool.
struct Action {
  enum class Kind { kRef, kUnref } kind;
  std::string object;
  RadosRef ref;
  size_t issue;  // index into rep.issues
};

}  // namespace

Status RadosFsckFreeBlock(sql::Db& db, const RadosBackend& rados, int64_t pblock, int64_t dedup_id) {
  auto get = sql::Stmt::Prepare(db, catalog_sql::kRadosBlockGet);
  if (!get.ok()) return get.status();
  get->Bind(1, pblock);
  auto r = get->Step();
  if (!r.ok()) return r.status();
  if (!*r) return Status::Ok();
  BlockHash h;
  const auto blob = get->Blob(0);
  const bool ok = blob.size() == h.bytes.size();
  if (ok) std::memcpy(h.bytes.data(), blob.data(), h.bytes.size());
  const bool priv = get->Int(1) != 0;
  get->Reset();
  CS_RETURN_IF_ERROR(Exec(db, catalog_sql::kRadosBlockDelete, pblock));
  if (!ok) return Status::Ok();  // no object to name: a reference of it is a leak RunRadosFsck finds
  auto id = sql::Stmt::Prepare(db, catalog_sql::kChainRadosId);
  if (!id.ok()) return id.status();
  id->Bind(1, dedup_id);
  auto ir = id->Step();
  if (!ir.ok()) return ir.status();
  if (!*ir || id->IsNull(0)) return Status::Ok();  // likewise
  const std::string object = rados.ObjectName(id->Text(0), h, priv, pblock);
  id->Reset();
  auto ins = sql::Stmt::Prepare(db, catalog_sql::kRadosUnrefInsert);
  if (!ins.ok()) return ins.status();
  ins->Bind(1, pblock).Bind(2, std::string_view(object));
  return ins->Run();
}

Result<std::pair<uint64_t, uint64_t>> RadosPendingRows(sql::Db& db) {
  uint64_t intents = 0, unrefs = 0;
  CS_RETURN_IF_ERROR(ForEach(db, "SELECT (SELECT count(*) FROM rados_intent), (SELECT count(*) FROM rados_unref)",
                             [&](const sql::Stmt& r) {
                               intents = static_cast<uint64_t>(r.Int(0));
                               unrefs = static_cast<uint64_t>(r.Int(1));
                             }));
  return std::make_pair(intents, unrefs);
}

Status RunRadosFsck(BackingDir& backing, const FsckOptions& opts,
                    const std::map<int64_t, std::shared_ptr<const BlockHasher>>& hashers, FsckReport& rep) {
  RadosBackend* rados = backing.rados();
  if (!rados) return Status::Error(ENOTCONN, "the catalog's blocks are in RADOS, but fsck is not connected to the pool");
  RadosStore& store = rados->store();
  sql::Db& db = backing.catalog().db_for_tools();
  const std::string& host = rados->host();
  const bool live = opts.journal_live;
  auto add = [&](std::string kind, std::string detail, bool repaired = false) {
    rep.issues.push_back({std::move(kind), std::move(detail), repaired});
    return rep.issues.size() - 1;
  };
  auto progress = [&](const char* phase, uint64_t done, uint64_t total) {
    if (!opts.progress) return;
    std::fprintf(stderr, "\r%-28s %llu/%llu", phase, (unsigned long long)done, (unsigned long long)total);
    if (done == total) std::fprintf(stderr, "\n");
  };
  rep.rados = true;
  rep.rados_pool = rados->config().target.pool;
  rep.rados_host = host;

  // ---- Pending references (rados_intent, rados_unref): information. A
  // row whose holder a block uses is damage: its put would drop the
  // block's reference (with the object's last reference, its data).
  {
    std::vector<std::pair<const char*, int64_t>> conflicts;
    CS_RETURN_IF_ERROR(ForEach(db,
                               "SELECT 'rados_intent', holder FROM rados_intent WHERE holder IN (SELECT pblock FROM pat) "
                               "UNION ALL SELECT 'rados_unref', holder FROM rados_unref WHERE holder IN "
                               "(SELECT pblock FROM pat)",
                               [&](const sql::Stmt& r) {
                                 conflicts.emplace_back(r.Text(0) == "rados_intent" ? "rados_intent" : "rados_unref",
                                                        r.Int(1));
                               }));
    if (!conflicts.empty() && opts.repair) {
      // The row goes without its put: the block holds the reference.
      sql::Transaction txn(db);
      CS_RETURN_IF_ERROR(txn.Begin());
      for (const auto& [table, holder] : conflicts)
        CS_RETURN_IF_ERROR(Exec(db, std::string("DELETE FROM ") + table + " WHERE holder = ?1", holder));
      CS_RETURN_IF_ERROR(txn.Commit());
    }
    for (const auto& [table, holder] : conflicts)
      add("rados_queue_conflict",
          std::string(table) + " row of holder " + Str(holder) + " names the reference that block " + Str(holder) +
              " of the PAT holds: its put (at the next mount) would drop it" +
              (opts.repair ? "; the row is deleted without its put" : ""),
          opts.repair);
    auto pending = RadosPendingRows(db);
    if (!pending.ok()) return pending.status();
    rep.rados_intents += pending->first + opts.rados_intents_resolved_at_open;
    rep.rados_unrefs += pending->second + opts.rados_unrefs_resolved_at_open;
    if (opts.repair) {
      // As a mount resolves them: every intent becomes an unref (whether
      // its reference was taken is unknown), then every unref is put.
      {
        sql::Transaction txn(db);
        CS_RETURN_IF_ERROR(txn.Begin());
        CS_RETURN_IF_ERROR(db.Exec("INSERT OR REPLACE INTO rados_unref(holder, object) "
                                   "SELECT holder, object FROM rados_intent; DELETE FROM rados_intent"));
        CS_RETURN_IF_ERROR(txn.Commit());
      }
      std::vector<std::pair<int64_t, std::string>> rows;
      CS_RETURN_IF_ERROR(ForEach(db, "SELECT holder, object FROM rados_unref ORDER BY holder",
                                 [&](const sql::Stmt& r) { rows.emplace_back(r.Int(0), r.Text(1)); }));
      bool all_done = true;
      if (!rows.empty()) {
        std::vector<Status> sts;
        {
          RadosBatch batch(store, kWindow);
          for (const auto& [holder, object] : rows) batch.Unref(object, rados->Holder(holder));
          sts = batch.Wait();
        }
        sql::Transaction txn(db);
        CS_RETURN_IF_ERROR(txn.Begin());
        for (size_t i = 0; i < rows.size(); ++i) {
          if (PutDone(sts[i])) {
            CS_RETURN_IF_ERROR(Exec(db, catalog_sql::kRadosUnrefDelete, rows[i].first));
          } else {
            if (IsStoreUnreachable(sts[i])) return PoolError(*rados, sts[i]);
            all_done = false;
            add("rados_unref", "the reference " + HolderName(rados->Holder(rows[i].first)) + " on " + rows[i].second +
                                   " could not be dropped: " + sts[i].ToString() + " (its rados_unref row stays)");
          }
        }
        CS_RETURN_IF_ERROR(txn.Commit());
      }
      rep.rados_pending_resolved = all_done;
    }
  }

  // ---- The catalog, in one snapshot.
  Snapshot snap;
  CS_RETURN_IF_ERROR(ReadSnapshot(db, *rados, snap));
  for (int64_t d : snap.chains_without_id)
    add("chain_rados_id", "chain " + Str(d) + " has no cluster-wide ID (chain.rados_id): its blocks' objects cannot "
                                              "be named (not repairable)");

  // ---- The pool: the objects of this host's chains and their holders.
  std::map<std::string, Holders> objs;
  {
    auto names = store.List("blk.");
    if (!names.ok()) return PoolError(*rados, names.status());
    std::set<std::string> prefixes;
    for (const auto& [d, id] : snap.chain_ids) prefixes.insert("blk." + id + ".");
    std::vector<std::string> ours;
    for (std::string& n : *names) {
      // "blk." + 32 hex digits + "."
      if (n.size() > 37 && prefixes.count(n.substr(0, 37))) ours.push_back(std::move(n));
    }
    std::vector<Result<Holders>> got(ours.size(), Status::Error(EIO, "not read"));
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t i; (i = next.fetch_add(1)) < ours.size();) got[i] = ReadHolders(store, ours[i]);
    };
    const unsigned n_threads = static_cast<unsigned>(std::min<size_t>(kHolderThreads, ours.size()));
    std::vector<std::thread> threads;
    for (unsigned t = 1; t < n_threads; ++t) threads.emplace_back(work);
    if (n_threads > 0) work();
    for (auto& t : threads) t.join();
    for (size_t i = 0; i < ours.size(); ++i) {
      if (!got[i].ok()) return PoolError(*rados, got[i].status());
      if (!got[i]->present) continue;  // gone since the listing
      objs.emplace(std::move(ours[i]), std::move(*got[i]));
    }
    progress("reading RADOS references", ours.size(), ours.size());
  }
  rep.rados_objects = objs.size();
  // This host's references: holder number -> objects (one entry per
  // reference: a holder listed twice on an object appears twice).
  std::map<int64_t, std::vector<std::string>> mine;
  for (const auto& [name, h] : objs) {
    if (h.unreadable) {
      add("rados_refs_unreadable", h.st.message() + " (not repairable by fsck: its references cannot be checked)");
      continue;
    }
    for (const RadosRef& r : h.refs) {
      if (r.host != host) continue;
      mine[r.local].push_back(name);
      ++rep.rados_refs;
    }
  }
  auto holders_of = [&](int64_t n) -> const std::vector<std::string>& {
    static const std::vector<std::string> kNone;
    auto it = mine.find(n);
    return it == mine.end() ? kNone : it->second;
  };

  // Live: whether the catalog, as it is now, still has block `pb`'s row
  // with this hash (else a finding about it is the daemon's work in
  // progress, not damage).
  auto row_still = [&](int64_t pb, const BlockHash& h) -> bool {
    auto q = sql::Stmt::Prepare(db, catalog_sql::kRadosBlockGet);
    if (!q.ok()) return true;
    q->Bind(1, pb);
    auto r = q->Step();
    if (!r.ok()) return true;
    if (!*r) return false;
    const auto blob = q->Blob(0);
    return blob.size() == h.bytes.size() && std::memcmp(blob.data(), h.bytes.data(), blob.size()) == 0;
  };
  // Live: whether the catalog, as it is now, accounts for holder `n`.
  auto accounted_now = [&](int64_t n) -> bool {
    bool found = false;
    auto q = sql::Stmt::Prepare(db,
                                "SELECT EXISTS(SELECT 1 FROM pat WHERE pblock = ?1) OR "
                                "EXISTS(SELECT 1 FROM rados_block WHERE pblock = ?1) OR "
                                "EXISTS(SELECT 1 FROM rados_intent WHERE holder = ?1) OR "
                                "EXISTS(SELECT 1 FROM rados_unref WHERE holder = ?1) OR "
                                "?1 >= (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'rados_next_holder')");
    if (!q.ok()) return true;
    q->Bind(1, n);
    auto r = q->Step();
    if (!r.ok()) return true;
    found = *r && q->Int(0) != 0;
    return found;
  };

  std::vector<Action> actions;
  // The catalog's repairs, in one transaction before the pool's.
  std::vector<std::pair<int64_t, ObjectId>> rebuild;  // block -> its row
  std::vector<int64_t> orphan_rows;                   // rados_block rows to delete
  std::vector<std::pair<int64_t, std::string>> orphan_unrefs;  // ... and their rados_unref rows
  std::map<size_t, int64_t> orphan_issue;             // issue -> holder whose unref row goes when done
  // Holders whose references are accounted for (not leaks).
  std::set<std::pair<int64_t, std::string>> accounted;  // (holder, object)

  struct ToRead {
    int64_t pblock;
    const Block* block;
  };
  std::vector<ToRead> to_read;
  std::vector<std::pair<int64_t, ObjectId>> rebuild_candidates;  // verified by reading before the rebuild

  // ---- Every block: its row, its object, its one reference.
  for (const auto& [pb, b] : snap.blocks) {
    const std::string where = "block " + Str(pb) + " (chain " + Str(b.dedup_id) + ")";
    const RadosRef ref = rados->Holder(pb);
    if (!snap.chain_ids.count(b.dedup_id)) {
      // Reported above (chain_rados_id), or the chain row is missing: its
      // references cannot be told apart, so none counts as a leak.
      for (const std::string& o : holders_of(pb)) accounted.insert({pb, o});
      continue;
    }
    const std::string& chain_id = snap.chain_ids.at(b.dedup_id);
    if (!b.has_row) {
      // Rebuildable when the block's one reference is found on one object
      // of its chain whose name fits the block (checked by reading below).
      const auto& on = holders_of(pb);
      std::set<std::string> distinct(on.begin(), on.end());
      std::optional<ObjectId> id;
      std::string why;
      if (on.empty()) {
        why = "no object of the pool lists its reference " + HolderName(ref) +
              ": which object holds its data is unknown (not repairable: its data is lost)";
      } else if (distinct.size() > 1 || on.size() > 1) {
        why = "its reference " + HolderName(ref) + " is listed " + Str(static_cast<int64_t>(on.size())) +
              " times, on " + *distinct.begin() + (distinct.size() > 1 ? " and others" : "") +
              " (not repairable by fsck)";
      } else {
        id = ParseObjectName(on.front());
        if (!id || id->chain_id != chain_id || (id->priv && (id->host != host || id->pblock != pb)) ||
            (b.has_key && HashKey(id->hash) != b.key)) {
          why = "its reference " + HolderName(ref) + " is on " + on.front() +
                ", whose name does not fit the block (not repairable by fsck)";
          id.reset();
        }
      }
      for (const std::string& o : on) accounted.insert({pb, o});
      if (id) {
        rebuild_candidates.emplace_back(pb, *id);
      } else {
        add("rados_block_missing", where + " has " + (b.bad_row ? "a malformed" : "no") + " rados_block row; " + why);
      }
      continue;
    }
    ++rep.rados_blocks;
    if (b.has_key && HashKey(b.hash) != b.key)
      add("hash", where + ": its rados_block hash does not give its PAT hash key " + Str(b.key) +
                      " (not repairable: the catalog is inconsistent)");
    // The object and its holders (read now if the listing did not see it).
    Holders direct;
    const Holders* h = nullptr;
    if (auto it = objs.find(b.object); it != objs.end()) {
      h = &it->second;
    } else {
      auto r = ReadHolders(store, b.object);
      if (!r.ok()) return PoolError(*rados, r.status());
      direct = std::move(*r);
      h = &direct;
    }
    accounted.insert({pb, b.object});
    if (!h->present) {
      if (live && !row_still(pb, b.hash)) continue;
      add("rados_object_missing", where + ": its object " + b.object + " is gone (not repairable: its data is lost)");
      continue;
    }
    if (h->unreadable) {
      if (h == &direct) add("rados_refs_unreadable", h->st.message() + " (not repairable by fsck)");
    } else {
      const size_t n = CountRef(h->refs, ref);
      if (n == 0) {
        if (!live || row_still(pb, b.hash)) {
          const size_t i = add("rados_ref_missing", where + ": its object " + b.object +
                                                        " does not list this host's reference " + HolderName(ref) +
                                                        (opts.repair ? ": taken again" : ""),
                               opts.repair);
          if (opts.repair) actions.push_back({Action::Kind::kRef, b.object, ref, i});
        }
      } else if (n > 1) {
        const size_t i = add("rados_ref_duplicate", where + ": its object " + b.object + " lists " + HolderName(ref) +
                                                            " " + Str(static_cast<int64_t>(n)) + " times" +
                                                            (opts.repair ? ": the extra ones are dropped" : ""),
                             opts.repair);
        if (opts.repair)
          for (size_t k = 1; k < n; ++k) actions.push_back({Action::Kind::kUnref, b.object, ref, i});
      }
    }
    if (opts.verify_hashes) to_read.push_back({pb, &b});
  }

  // ---- rados_block rows of no block.
  for (const auto& [pb, o] : snap.orphans) {
    const RadosRef ref = rados->Holder(pb);
    const auto& on = holders_of(pb);
    std::string detail = "rados_block row of block " + Str(pb) + ", which the PAT does not have";
    if (on.empty()) {
      detail += "; no object lists its reference " + HolderName(ref) + (opts.repair ? ": the row is deleted" : "");
    } else {
      detail += "; its reference " + HolderName(ref) + " is on " + on.front() +
                (on.size() > 1 ? " (and " + Str(static_cast<int64_t>(on.size() - 1)) + " more)" : "") +
                (opts.repair ? ": the row goes to rados_unref and the reference is dropped" : "");
    }
    const size_t i = add("rados_block_orphan", detail, opts.repair);
    for (const std::string& obj : on) accounted.insert({pb, obj});
    if (!opts.repair) continue;
    orphan_rows.push_back(pb);
    if (!on.empty()) {
      orphan_unrefs.emplace_back(pb, on.front());
      orphan_issue[i] = pb;
      for (const std::string& obj : on) actions.push_back({Action::Kind::kUnref, obj, ref, i});
    }
  }

  // ---- Hashes (and the rebuild candidates, always): every object's bytes
  // against the hash its row (or its name) gives.
  {
    struct Item {
      int64_t pblock;
      int64_t dedup_id;
      std::string object;
      BlockHash hash;
      const ObjectId* candidate;  // a rebuild candidate (else a row's block)
    };
    std::vector<Item> items;
    for (const ToRead& t : to_read) items.push_back({t.pblock, t.block->dedup_id, t.block->object, t.block->hash, nullptr});
    for (const auto& [pb, id] : rebuild_candidates) {
      const Block& b = snap.blocks.at(pb);
      items.push_back({pb, b.dedup_id, rados->ObjectName(id.chain_id, id.hash, id.priv, pb), id.hash, &id});
    }
    std::vector<uint8_t> buf;
    for (size_t first = 0; first < items.size(); first += kReadChunk) {
      const size_t n = std::min(kReadChunk, items.size() - first);
      buf.assign(n * kBlockSize, 0);
      std::vector<Status> sts;
      {
        RadosBatch batch(store, kWindow);
        for (size_t k = 0; k < n; ++k)
          batch.Read(items[first + k].object, std::span<uint8_t>(buf.data() + k * kBlockSize, kBlockSize));
        sts = batch.Wait();
      }
      for (size_t k = 0; k < n; ++k) {
        const Item& it = items[first + k];
        const std::string where = "block " + Str(it.pblock) + " (chain " + Str(it.dedup_id) + ")";
        auto hasher = hashers.find(it.dedup_id);
        const Status& st = sts[k];
        if (!st.ok() && IsStoreUnreachable(st)) return PoolError(*rados, st);
        if (it.candidate) {
          // Rebuilt only when the bytes are the name's.
          const bool good = st.ok() && hasher != hashers.end() &&
                            hasher->second->Hash(buf.data() + k * kBlockSize) == it.hash;
          if (good) {
            add("rados_block_missing", where + " has no rados_block row; its reference " +
                                           HolderName(rados->Holder(it.pblock)) + " is on " + it.object +
                                           ", whose bytes match its name's hash" +
                                           (opts.repair ? ": the row is rebuilt" : " (repairable)"),
                opts.repair);
            if (opts.repair) rebuild.emplace_back(it.pblock, *it.candidate);
          } else {
            add("rados_block_missing", where + " has no rados_block row; its reference " +
                                           HolderName(rados->Holder(it.pblock)) + " is on " + it.object + ", " +
                                           (st.ok() ? std::string("whose bytes do not match its name's hash")
                                                    : "which cannot be read: " + st.ToString()) +
                                           " (not repairable: its data is lost)");
          }
          continue;
        }
        if (hasher == hashers.end()) continue;  // a missing chain: file_chain / chain_rados_id
        if (!st.ok()) {
          if (live && !row_still(it.pblock, it.hash)) continue;
          if (st.code() == ENOENT) {
            add("rados_object_missing", where + ": its object " + it.object + " is gone (not repairable: its data is lost)");
          } else {
            add("hash", where + ": object " + it.object + ": " + st.message() + " (not repairable: the data is wrong)");
          }
          continue;
        }
        ++rep.blocks_checked;
        if (hasher->second->Hash(buf.data() + k * kBlockSize) != it.hash) {
          if (live && !row_still(it.pblock, it.hash)) continue;
          add("hash", where + ": the bytes of object " + it.object +
                          " do not match its hash (not repairable: the data is wrong)");
        }
      }
      progress("verifying RADOS block hashes", first + n, items.size());
    }
  }

  // ---- Leaks: this host's references that nothing accounts for: a holder
  // of no block, intent or unref row, or a block's holder on another object
  // than its own (an intent's or unref's holder counts on its row's object).
  {
    for (const auto& [n, objects] : snap.intents) accounted.insert({n, objects});
    for (const auto& [n, objects] : snap.unrefs) accounted.insert({n, objects});
    uint64_t leaked = 0, unlisted = 0;
    size_t summary = SIZE_MAX;
    for (const auto& [n, objects] : mine) {
      for (const std::string& obj : objects) {
        if (accounted.count({n, obj})) continue;
        const RadosRef ref = rados->Holder(n);
        if (live) {
          // The daemon may have planned (or dropped) it since the snapshot.
          if (accounted_now(n)) continue;
          auto again = ReadHolders(store, obj);
          if (!again.ok()) return PoolError(*rados, again.status());
          if (!again->present || CountRef(again->refs, ref) == 0) continue;
        }
        ++leaked;
        size_t i;
        if (leaked <= kListedPerKind) {
          const bool of_block = snap.blocks.count(n) != 0;
          i = add("rados_ref_leaked",
                  "object " + obj + " lists this host's reference " + HolderName(ref) + ", which " +
                      (of_block ? "belongs to block " + Str(n) + "'s own object, not this one"
                                : std::string("no block, rados_intent or rados_unref row of this catalog accounts for")) +
                      (opts.repair ? ": dropped" : ""),
                  opts.repair);
        } else {
          ++unlisted;
          if (summary == SIZE_MAX) summary = add("rados_ref_leaked", "", opts.repair);
          i = summary;
        }
        if (opts.repair) actions.push_back({Action::Kind::kUnref, obj, ref, i});
      }
    }
    if (summary != SIZE_MAX)
      rep.issues[summary].detail = Str(static_cast<int64_t>(unlisted)) +
                                   " more reference(s) of this host that the catalog does not account for" +
                                   (opts.repair ? ": dropped" : "");
  }

  if (!opts.repair) return Status::Ok();

  // ---- Repairs: the catalog's rows first (a rebuilt row, an orphan moved
  // to rados_unref: a crash before the puts leaves them for the next
  // mount), then the pool's references.
  if (!rebuild.empty() || !orphan_rows.empty()) {
    sql::Transaction txn(db);
    CS_RETURN_IF_ERROR(txn.Begin());
    auto ins = sql::Stmt::Prepare(db, "INSERT OR REPLACE INTO rados_block(pblock, hash, private) VALUES (?1, ?2, ?3)");
    if (!ins.ok()) return ins.status();
    for (const auto& [pb, id] : rebuild) {
      ins->Reset().Bind(1, pb).BindBlob(2, id.hash.bytes).Bind(3, id.priv ? 1 : 0);
      CS_RETURN_IF_ERROR(ins->Run());
    }
    auto unref = sql::Stmt::Prepare(db, catalog_sql::kRadosUnrefInsert);
    if (!unref.ok()) return unref.status();
    for (int64_t pb : orphan_rows) CS_RETURN_IF_ERROR(Exec(db, catalog_sql::kRadosBlockDelete, pb));
    for (const auto& [pb, obj] : orphan_unrefs) {
      unref->Reset().Bind(1, pb).Bind(2, std::string_view(obj));
      CS_RETURN_IF_ERROR(unref->Run());
    }
    CS_RETURN_IF_ERROR(txn.Commit());
  }
  if (actions.empty()) return Status::Ok();
  std::vector<Status> sts;
  {
    RadosBatch batch(store, kWindow);
    for (const Action& a : actions) {
      if (a.kind == Action::Kind::kRef) batch.Ref(a.object, a.ref);
      else batch.Unref(a.object, a.ref);
    }
    sts = batch.Wait();
  }
  std::set<size_t> failed;
  Status unreachable = Status::Ok();
  for (size_t k = 0; k < actions.size(); ++k) {
    const Action& a = actions[k];
    const Status& st = sts[k];
    const bool done = a.kind == Action::Kind::kRef ? st.ok() : PutDone(st);
    if (done) continue;
    if (IsStoreUnreachable(st) && unreachable.ok()) unreachable = st;
    FsckIssue& issue = rep.issues[a.issue];
    if (!failed.insert(a.issue).second) continue;
    issue.repaired = false;
    if (a.kind == Action::Kind::kRef && st.code() == ENOENT)
      issue.detail += " -- not repaired: the object is gone (its data is lost)";
    else
      issue.detail += std::string(" -- not repaired: ") + (a.kind == Action::Kind::kRef ? "Ref" : "Unref") + " of " +
                      HolderName(a.ref) + " on " + a.object + ": " + st.ToString();
  }
  // The unref rows of orphans whose puts are all done.
  {
    sql::Transaction txn(db);
    CS_RETURN_IF_ERROR(txn.Begin());
    for (const auto& [i, pb] : orphan_issue)
      if (!failed.count(i)) CS_RETURN_IF_ERROR(Exec(db, catalog_sql::kRadosUnrefDelete, pb));
    CS_RETURN_IF_ERROR(txn.Commit());
  }
  if (!unreachable.ok()) return PoolError(*rados, unreachable);
  return Status::Ok();
}

}  // namespace chainswap
