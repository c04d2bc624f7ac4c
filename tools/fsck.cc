#include "tools/fsck.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>

#include "catalog/block.h"
#include "destage/journal.h"

namespace chainswap {

namespace {

struct PatRow {
  int64_t dedup_id;
  BlockHash hash;
  int64_t refcount;
};

// Runs a query and calls fn for every row.
template <typename Fn>
Status ForEach(sql::Db& db, const std::string& q, Fn&& fn) {
  auto st = sql::Stmt::Prepare(db, q);
  if (!st.ok()) return st.status();
  for (;;) {
    auto r = st->Step();
    if (!r.ok()) return r.status();
    if (!*r) return Status::Ok();
    fn(*st);
  }
}

Status Exec1(sql::Db& db, const std::string& q, std::initializer_list<int64_t> args) {
  auto st = sql::Stmt::Prepare(db, q);
  if (!st.ok()) return st.status();
  int i = 1;
  for (int64_t a : args) st->Bind(i++, a);
  return st->Run();
}

void Progress(const FsckOptions& o, const char* phase, uint64_t done, uint64_t total) {
  if (!o.progress) return;
  std::fprintf(stderr, "\r%-28s %llu/%llu", phase, (unsigned long long)done, (unsigned long long)total);
  if (done == total) std::fprintf(stderr, "\n");
}

}  // namespace

bool FsckReport::all_repaired() const {
  for (const auto& i : issues)
    if (!i.repaired) return false;
  return true;
}

Result<FsckReport> RunFsck(BackingDir& backing, const FsckOptions& opts) {
  FsckReport rep;
  sql::Db& db = backing.catalog().db_for_tools();
  ContentStore& store = backing.store();
  auto add = [&](std::string kind, std::string detail, bool repaired = false) {
    rep.issues.push_back({std::move(kind), std::move(detail), repaired});
  };

  // One transaction over every read: a consistent snapshot even while a
  // daemon destages (WAL), and the write lock from the start when repairing.
  sql::Transaction txn(db);
  if (opts.repair) {
    CS_RETURN_IF_ERROR(txn.Begin());
  } else {
    CS_RETURN_IF_ERROR(db.Exec("BEGIN"));
  }
  struct EndRead {
    sql::Db& db;
    bool on;
    ~EndRead() { if (on) (void)db.Exec("COMMIT"); }
  } end_read{db, !opts.repair};

  // Chains, files.
  std::map<int64_t, std::shared_ptr<const BlockHasher>> hashers;
  CS_RETURN_IF_ERROR(ForEach(db, "SELECT dedup_id, hash_seed FROM chain", [&](sql::Stmt& s) {
    HashSeed seed{};
    auto b = s.Blob(1);
    if (b.size() == seed.size()) std::memcpy(seed.data(), b.data(), seed.size());
    else add("chain_seed", "chain " + std::to_string(s.Int(0)) + " has a malformed hash seed");
    hashers[s.Int(0)] = std::make_shared<const BlockHasher>(seed);
  }));
  rep.chains = hashers.size();
  std::map<int64_t, std::pair<int64_t, int64_t>> files;  // file -> (dedup_id, mapped_blocks)
  CS_RETURN_IF_ERROR(ForEach(db, "SELECT file_id, dedup_id, mapped_blocks FROM swap_file", [&](sql::Stmt& s) {
    files[s.Int(0)] = {s.Int(1), s.Int(2)};
    if (!hashers.count(s.Int(1)))
      add("file_chain", "swap file " + std::to_string(s.Int(0)) + " belongs to missing chain " + std::to_string(s.Int(1)));
  }));
  rep.files = files.size();

  // PAT, free list, store length.
  std::unordered_map<int64_t, PatRow> pat;
  CS_RETURN_IF_ERROR(ForEach(db, "SELECT pblock, dedup_id, hash, refcount FROM pat", [&](sql::Stmt& s) {
    PatRow p{s.Int(1), {}, s.Int(3)};
    auto h = s.Blob(2);
    if (h.size() == p.hash.bytes.size()) std::memcpy(p.hash.bytes.data(), h.data(), h.size());
    pat[s.Int(0)] = p;
  }));
  std::set<int64_t> free_slots;
  CS_RETURN_IF_ERROR(ForEach(db, "SELECT slot FROM free_slot", [&](sql::Stmt& s) { free_slots.insert(s.Int(0)); }));
  auto len = store.LengthSlots();
  if (!len.ok()) return len.status();
  const int64_t store_slots = static_cast<int64_t>(*len);

  // LAT: references per block, entries that point nowhere or across chains.
  std::unordered_map<int64_t, int64_t> refs;
  std::map<int64_t, int64_t> mapped;
  std::vector<std::pair<int64_t, int64_t>> bad_lat;  // (file, lba)
  CS_RETURN_IF_ERROR(ForEach(db, "SELECT file_id, lba, pblock FROM lat", [&](sql::Stmt& s) {
    ++rep.lat_entries;
    int64_t file = s.Int(0), lba = s.Int(1), pb = s.Int(2);
    auto f = files.find(file);
    auto p = pat.find(pb);
    std::string where = "file " + std::to_string(file) + " LBA " + std::to_string(lba);
    if (f == files.end()) {
      add("lat_orphan_file", where + " belongs to no swap file", opts.repair);
    } else if (p == pat.end()) {
      add("dangling", where + " points at block " + std::to_string(pb) + " which the PAT does not know", opts.repair);
    } else if (p->second.dedup_id != f->second.first) {
      add("cross_chain", where + " (chain " + std::to_string(f->second.first) + ") points at block " +
                             std::to_string(pb) + " of chain " + std::to_string(p->second.dedup_id), opts.repair);
    } else if (pb >= store_slots) {
      add("outside_store", where + " points at slot " + std::to_string(pb) + " beyond the store's " +
                               std::to_string(store_slots) + " slots", opts.repair);
    } else {
      ++refs[pb];
      ++mapped[file];
      return;
    }
    bad_lat.emplace_back(file, lba);
  }));
  if (opts.repair) {
    for (auto [file, lba] : bad_lat)
      CS_RETURN_IF_ERROR(Exec1(db, "DELETE FROM lat WHERE file_id = ?1 AND lba = ?2", {file, lba}));
  }

  // Refcounts, free list.
  std::vector<int64_t> to_free;
  std::set<int64_t> freed_pblocks;  // dropped by the repair: no hash to check
  for (auto& [pb, row] : pat) {
    int64_t actual = refs.count(pb) ? refs[pb] : 0;
    if (actual != row.refcount) {
      add("refcount", "block " + std::to_string(pb) + " has refcount " + std::to_string(row.refcount) + " but " +
                          std::to_string(actual) + " LAT reference(s)", opts.repair);
      if (opts.repair) {
        if (actual == 0) {
          freed_pblocks.insert(pb);
          CS_RETURN_IF_ERROR(Exec1(db, "DELETE FROM pat WHERE pblock = ?1", {pb}));
          CS_RETURN_IF_ERROR(Exec1(db, "INSERT OR IGNORE INTO free_slot(slot) VALUES (?1)", {pb}));
          to_free.push_back(pb);
        } else {
          CS_RETURN_IF_ERROR(Exec1(db, "UPDATE pat SET refcount = ?2 WHERE pblock = ?1", {pb, actual}));
        }
      }
    }
    if (free_slots.count(pb) && actual > 0) {
      add("free_and_used", "slot " + std::to_string(pb) + " is on the free list and referenced", opts.repair);
      if (opts.repair) CS_RETURN_IF_ERROR(Exec1(db, "DELETE FROM free_slot WHERE slot = ?1", {pb}));
    }
  }
  int64_t high = 0;
  for (auto& [pb, row] : pat) high = std::max(high, pb + 1);
  for (int64_t s : free_slots) high = std::max(high, s + 1);
  uint64_t leaked = 0;
  for (int64_t s = 0; s < high; ++s) {
    if (!pat.count(s) && !free_slots.count(s)) {
      ++leaked;
      if (opts.repair) {
        CS_RETURN_IF_ERROR(Exec1(db, "INSERT OR IGNORE INTO free_slot(slot) VALUES (?1)", {s}));
        to_free.push_back(s);
      }
    }
  }
  if (leaked) add("leaked_slot", std::to_string(leaked) + " slot(s) below the high-water mark are neither used nor free", opts.repair);

  // mapped_blocks per file.
  for (auto& [file, fm] : files) {
    int64_t actual = mapped.count(file) ? mapped[file] : 0;
    if (actual != fm.second) {
      add("mapped_blocks", "swap file " + std::to_string(file) + " records " + std::to_string(fm.second) +
                               " mapped blocks but has " + std::to_string(actual) + " LAT entries", opts.repair);
      if (opts.repair)
        CS_RETURN_IF_ERROR(Exec1(db, "UPDATE swap_file SET mapped_blocks = ?2 WHERE file_id = ?1", {file, actual}));
    }
  }
  if (opts.repair) CS_RETURN_IF_ERROR(txn.Commit());
  if (end_read.on) {  // the snapshot ends here; the hash pass re-checks live
    end_read.on = false;
    CS_RETURN_IF_ERROR(db.Exec("COMMIT"));
  }
  for (int64_t s : to_free) (void)store.PunchSlot(static_cast<uint64_t>(s));
  for (int64_t pb : freed_pblocks) pat.erase(pb);

  // Hashes: every referenced block's bytes against its keyed hash.
  if (opts.verify_hashes) {
    alignas(64) uint8_t buf[kBlockSize];
    uint64_t n = 0;
    for (auto& [pb, row] : pat) {
      if (++n % 4096 == 0 || n == pat.size()) Progress(opts, "verifying block hashes", n, pat.size());
      if (pb >= store_slots) continue;
      auto h = hashers.find(row.dedup_id);
      if (h == hashers.end()) continue;
      CS_RETURN_IF_ERROR(store.ReadSlots(static_cast<uint64_t>(pb), 1, buf));
      ++rep.blocks_checked;
      if (!(h->second->Hash(buf) == row.hash) && opts.journal_live) {
        // A live daemon may have freed and reused the slot since the
        // snapshot: judge it again against the catalog as it is now.
        bool still = false;
        auto q = sql::Stmt::Prepare(db, "SELECT hash FROM pat WHERE pblock = ?1");
        if (q.ok()) {
          q->Bind(1, pb);
          auto r = q->Step();
          if (r.ok() && *r && q->Blob(0).size() == row.hash.bytes.size() &&
              std::memcmp(q->Blob(0).data(), row.hash.bytes.data(), row.hash.bytes.size()) == 0) {
            CS_RETURN_IF_ERROR(store.ReadSlots(static_cast<uint64_t>(pb), 1, buf));
            still = !(h->second->Hash(buf) == row.hash);
          }
        }
        if (!still) continue;
      }
      if (!(h->second->Hash(buf) == row.hash))
        add("hash", "block " + std::to_string(pb) + " of chain " + std::to_string(row.dedup_id) +
                        ": content does not match its hash (not repairable: the data is wrong)");
    }
  }

  // Journal: every segment decodes (a live tail may be mid-append).
  auto ids = ListSegments(backing.paths().journal);
  if (!ids.ok()) {
    add("journal", ids.status().ToString());
  } else {
    for (size_t i = 0; i < ids->size(); ++i) {
      ++rep.segments;
      auto seg = Segment::OpenExisting(backing.paths().journal, (*ids)[i], /*read_only=*/true);
      if (!seg.ok()) {
        // A live daemon retires (deletes) segments at any moment.
        if (opts.journal_live && seg.status().code() == ENOENT) continue;
        add("journal", seg.status().ToString());
        continue;
      }
      std::vector<Record> recs;
      bool torn = false;
      Status st = (*seg)->ReadAll(&recs, &torn, /*cut_torn=*/false);
      if (!st.ok()) add("journal", st.message() + " (not repairable by fsck)");
      else if (torn && i + 1 < ids->size()) add("journal", (*seg)->path() + " is damaged and newer segments follow");
      else if (torn && !opts.journal_live)
        add("journal", (*seg)->path() + " ends in a torn record (cut off at the next mount)", true);
    }
  }
  return rep;
}

}  // namespace chainswap
