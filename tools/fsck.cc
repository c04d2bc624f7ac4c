#include "tools/fsck.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include "catalog/block.h"
#include "catalog/catalog_sql.h"
#include "catalog/schema.h"
#include "catalog/stored_block.h"
#include "destage/journal.h"
#include "tools/fsck_rados.h"

namespace chainswap {

namespace {

struct PatRow {
  int64_t dedup_id;
  int64_t key;  // pat.hash_key (0 when has_key is false)
  int64_t refcount;
  bool has_key;  // false: an unindexed block (pruned, or stored at the quota)
  bool indexed = false;  // the chain hash index has (key, pblock)
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
  // RADOS mode (meta store = 'rados'): no slots; the pool is cross-checked
  // (fsck_rados.h).
  bool rados_mode = false;
  {
    auto rc = ReadRadosConfig(db);
    if (!rc.ok()) return rc.status();
    rados_mode = rc->has_value();
    if (rados_mode && !backing.rados())
      return Status::Error(ENOTCONN, "the catalog's blocks are in RADOS pool '" + (*rc)->target.pool +
                                         "': fsck needs a connection to it");
  }

  {
    auto v = sql::Stmt::Prepare(db, "PRAGMA user_version");
    if (!v.ok()) return v.status();
    auto r = v->Step();
    if (!r.ok()) return r.status();
    if (*r && v->Int(0) < kSchemaVersion)
      return Status::Error(EPROTO, "catalog schema version " + std::to_string(v->Int(0)) + " is older than " +
                                       std::to_string(kSchemaVersion) +
                                       ", which fsck checks: mount it once, or run 'chainswap fsck --repair' "
                                       "(which upgrades it first)");
  }
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

  // PAT, store length.
  std::unordered_map<int64_t, PatRow> pat;
  CS_RETURN_IF_ERROR(ForEach(db, "SELECT pblock, dedup_id, hash_key, refcount FROM pat", [&](sql::Stmt& s) {
    const bool has_key = !s.IsNull(2);
    pat[s.Int(0)] = PatRow{s.Int(1), has_key ? s.Int(2) : 0, s.Int(3), has_key};
    if (!has_key) ++rep.unindexed;
  }));
  int64_t store_slots = 0;
  if (!rados_mode) {  // a RADOS catalog's store.dat stays empty: a pblock is a holder number
    auto len = store.LengthSlots();
    if (!len.ok()) return len.status();
    store_slots = static_cast<int64_t>(*len);
  }
  bool rebuild_index = false;
  // Past the store's end (a truncated or replaced store.dat).
  auto outside = [&](int64_t pb) {
    return !rados_mode && StoredBlockEndSlot(pb) > static_cast<uint64_t>(store_slots);
  };

  // Sector extents (docs/FORMAT.md): packed blocks do not overlap each
  // other, and no raw block sits in a pack page. Pages used by blocks are
  // kept for the leak check below.
  std::vector<bool> page_used(static_cast<size_t>(store_slots), false);
  if (!rados_mode) {
    std::vector<SectorExtent> extents;
    for (const auto& [pb, row] : pat) {
      if (IsPacked(pb)) extents.push_back(PackedExtent(pb));
    }
    std::sort(extents.begin(), extents.end(), [](const SectorExtent& a, const SectorExtent& b) {
      return a.first < b.first;
    });
    std::set<uint64_t> pack_pages;
    for (size_t i = 0; i < extents.size(); ++i) {
      const SectorExtent& e = extents[i];
      if (i > 0 && e.first < extents[i - 1].end())
        add("extent_overlap", "packed blocks " + std::to_string(PackedPblock(extents[i - 1])) + " and " +
                                  std::to_string(PackedPblock(e)) + " share sectors (not repairable: one of them "
                                  "holds the other's bytes)");
      for (uint64_t p = e.first / kSectorsPerPage; p <= (e.end() - 1) / kSectorsPerPage; ++p) {
        pack_pages.insert(p);
        if (p < page_used.size()) page_used[p] = true;
      }
    }
    for (const auto& [pb, row] : pat) {
      if (IsPacked(pb)) continue;
      if (pack_pages.count(static_cast<uint64_t>(pb)))
        add("extent_overlap", "raw block " + std::to_string(pb) + " sits in a page that holds packed blocks "
                              "(not repairable)");
      if (static_cast<uint64_t>(pb) < page_used.size()) page_used[static_cast<size_t>(pb)] = true;
    }
  }

  // The chain hash index: hash_index with hash_log's changes applied (the
  // last change of a pair wins), one entry per PAT row under its key.
  {
    std::map<std::pair<int64_t, int64_t>, bool> log;  // (key, pblock) -> present
    CS_RETURN_IF_ERROR(ForEach(db, "SELECT hash_key, pblock, op FROM hash_log ORDER BY seq", [&](sql::Stmt& s) {
      log[{s.Int(0), s.Int(1)}] = s.Int(2) != 0;
    }));
    uint64_t dangling = 0;
    std::string example;
    auto entry = [&](int64_t key, int64_t pb) {
      auto p = pat.find(pb);
      if (p != pat.end() && p->second.has_key && p->second.key == key && !p->second.indexed) {
        p->second.indexed = true;
        return;
      }
      if (dangling++ == 0)
        example = "key " + std::to_string(key) + " -> block " + std::to_string(pb) +
                  (p == pat.end()         ? " (no such block)"
                   : !p->second.has_key ? " (the block has no hash entry)"
                                        : " (the block's key is " + std::to_string(p->second.key) + ")");
    };
    CS_RETURN_IF_ERROR(ForEach(db, "SELECT hash_key, pblock FROM hash_index", [&](sql::Stmt& s) {
      const std::pair<int64_t, int64_t> kp{s.Int(0), s.Int(1)};
      auto l = log.find(kp);
      if (l == log.end()) {
        entry(kp.first, kp.second);
      } else if (l->second) {
        entry(kp.first, kp.second);
        log.erase(l);  // counted once
      }
    }));
    for (const auto& [kp, present] : log)
      if (present) entry(kp.first, kp.second);
    if (dangling) {
      add("index_dangling", std::to_string(dangling) + " chain hash index entr" + (dangling == 1 ? "y" : "ies") +
                                " name no block under that key, e.g. " + example, opts.repair);
      rebuild_index = true;
    }
    uint64_t missing = 0;
    for (const auto& [pb, row] : pat) {
      if (row.indexed || !row.has_key) continue;  // an unindexed block is valid without an entry
      if (missing++ < 3)
        add("index_missing", "block " + std::to_string(pb) + " (key " + std::to_string(row.key) +
                                 ") is not in the chain hash index: it cannot be deduplicated against", opts.repair);
    }
    if (missing > 3)
      add("index_missing", std::to_string(missing - 3) + " more block(s) are not in the chain hash index", opts.repair);
    if (missing) rebuild_index = true;
  }
  std::map<int64_t, BlockHash> whole_hashes;  // block_hash
  uint64_t orphan_hashes = 0;
  CS_RETURN_IF_ERROR(ForEach(db, "SELECT pblock, hash FROM block_hash", [&](sql::Stmt& s) {
    if (!pat.count(s.Int(0))) {
      ++orphan_hashes;
      return;
    }
    BlockHash h;
    auto b = s.Blob(1);
    if (b.size() == h.bytes.size()) std::memcpy(h.bytes.data(), b.data(), b.size());
    whole_hashes[s.Int(0)] = h;
  }));
  if (orphan_hashes) {
    add("block_hash_orphan", std::to_string(orphan_hashes) + " block_hash row(s) of no stored block", opts.repair);
    if (opts.repair) CS_RETURN_IF_ERROR(db.Exec("DELETE FROM block_hash WHERE pblock NOT IN (SELECT pblock FROM pat)"));
  }

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
    } else if (outside(pb)) {
      add("outside_store", where + " points at block " + std::to_string(pb) + " (up to slot " +
                               std::to_string(StoredBlockEndSlot(pb) - 1) + ") beyond the store's " +
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

  // Refcounts.
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
          CS_RETURN_IF_ERROR(Exec1(db, "DELETE FROM block_hash WHERE pblock = ?1", {pb}));
          // RADOS: its reference is dropped by the pool's check below.
          if (rados_mode) CS_RETURN_IF_ERROR(RadosFsckFreeBlock(db, *backing.rados(), pb, row.dedup_id));
          else to_free.push_back(pb);
          rebuild_index = true;
        } else {
          CS_RETURN_IF_ERROR(Exec1(db, "UPDATE pat SET refcount = ?2 WHERE pblock = ?1", {pb, actual}));
        }
      }
    }
  }
  if (opts.repair && rebuild_index) {
    // The index from the PAT as it is now, sorted (its pages full); no
    // change is left to merge.
    CS_RETURN_IF_ERROR(db.Exec("DELETE FROM hash_log; DELETE FROM hash_index; "
                               "INSERT INTO hash_index(hash_key, pblock) SELECT hash_key, pblock FROM pat "
                               "WHERE hash_key IS NOT NULL ORDER BY hash_key, pblock"));
  }
  // The hash table's counters (meta) against the PAT as it is now.
  {
    uint64_t entries = 0, unindexed = 0;
    for (const auto& [pb, row] : pat) {
      if (freed_pblocks.count(pb)) continue;
      ++(row.has_key ? entries : unindexed);
    }
    auto f = QueryHashTableFigures(db);
    if (!f.ok()) return f.status();
    if (!f->known || f->entries != entries || f->unindexed != unindexed) {
      add("hash_counters",
          "the catalog counts " + (f->known ? std::to_string(f->entries) + " hash entries and " +
                                                  std::to_string(f->unindexed) + " unindexed blocks"
                                            : std::string("no hash entries (counters missing)")) +
              " but the PAT has " + std::to_string(entries) + " and " + std::to_string(unindexed),
          opts.repair);
      if (opts.repair) CS_RETURN_IF_ERROR(db.Exec(catalog_sql::kInitHashCounters));
    }
  }

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
  // A packed block shares its pages: its sectors are just free (the next
  // mount's allocator finds them as gaps).
  for (int64_t s : to_free) {
    if (!IsPacked(s)) (void)store.PunchSlot(static_cast<uint64_t>(s));
  }
  for (int64_t pb : freed_pblocks) pat.erase(pb);

  // Leaks (offline only: a live daemon keeps freed slots unpunched for
  // reuse): store pages the filesystem holds data for that no block uses.
  // (RADOS: the pool's leaked references, below.)
  if (!opts.journal_live && !rados_mode) {
    auto ranges = store.DataSlotRanges();
    if (!ranges.ok()) return ranges.status();
    uint64_t leaked = 0;
    for (auto [first, end] : *ranges) {
      for (uint64_t p = first; p < end; ++p) {
        if (p < page_used.size() && page_used[p]) continue;
        ++leaked;
        if (opts.repair) (void)store.PunchSlot(p);
      }
    }
    // Not damage: space a crash left behind (the next mount punches it).
    rep.leaked_pages = leaked;
    rep.leaked_pages_punched = opts.repair;
  }

  // Hashes: every referenced block's bytes against its keyed hash.
  // (RADOS: every object's, in the pool's check.)
  if (rados_mode) {
    CS_RETURN_IF_ERROR(RunRadosFsck(backing, opts, hashers, rep));
  } else if (opts.verify_hashes) {
    alignas(64) uint8_t buf[kBlockSize];
    uint64_t n = 0;
    for (auto& [pb, row] : pat) {
      if (++n % 4096 == 0 || n == pat.size()) Progress(opts, "verifying block hashes", n, pat.size());
      if (outside(pb) || !row.has_key) continue;  // an unindexed block has no hash to check
      auto h = hashers.find(row.dedup_id);
      if (h == hashers.end()) continue;
      if (Status rs = ReadStoredBlock(store, pb, buf); !rs.ok()) {
        if (rs.code() != EIO) return rs;
        add("hash", "block " + std::to_string(pb) + " of chain " + std::to_string(row.dedup_id) + ": " +
                        rs.message() + " (not repairable: the data is wrong)");
        continue;
      }
      ++rep.blocks_checked;
      auto whole = whole_hashes.find(pb);
      const int64_t key = row.key;  // lambdas cannot capture structured bindings before clang 16
      auto matches = [&](const uint8_t* bytes) {
        const BlockHash got = h->second->Hash(bytes);
        return HashKey(got) == key && (whole == whole_hashes.end() || got == whole->second);
      };
      if (!matches(buf) && opts.journal_live) {
        // A live daemon may have freed and reused the slot since the
        // snapshot: judge it again against the catalog as it is now.
        bool still = false;
        auto q = sql::Stmt::Prepare(db, "SELECT hash_key FROM pat WHERE pblock = ?1");
        if (q.ok()) {
          q->Bind(1, pb);
          auto r = q->Step();
          if (r.ok() && *r && q->Int(0) == row.key) {
            still = !ReadStoredBlock(store, pb, buf).ok() || !matches(buf);
          }
        }
        if (!still) continue;
      }
      if (!matches(buf))
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
