// chainswap: the admin CLI (SPEC §6). Subcommands: format, stats, clone,
// fsck, chain, prune, estimate, bench, rados-check, and the migration of a
// swap file between hosts on one RADOS pool: export, import, migrate.
#include <spdlog/spdlog.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "catalog/backing_dir.h"
#include "fs/figures.h"
#include "fs/metrics.h"
#include "tools/format_table.h"
#include "tools/bench.h"
#include "tools/estimate.h"
#include "tools/fsck.h"
#include "tools/fsck_rados.h"
#include "tools/rados_check.h"
#include "fs/migration.h"

using namespace chainswap;

namespace {

int Fail(const Status& st) {
  std::fprintf(stderr, "chainswap: %s\n", st.ToString().c_str());
  return 1;
}

// `store_spec`: "local" or "rados:POOL" (with `rados`'s conf and user).
int CmdFormat(const std::string& backing, bool compress, const std::string& store_spec, RadosTarget rados) {
  if (store_spec != "local") {
    auto pool = ParseRadosStoreSpec(store_spec);
    if (!pool.ok()) {
      std::fprintf(stderr, "chainswap format: --store %s: %s\n", store_spec.c_str(), pool.status().message().c_str());
      return 2;
    }
    if (compress) {
      std::fprintf(stderr, "chainswap format: --compress lz4 is not supported with --store rados:POOL (blocks are "
                           "stored raw in RADOS)\n");
      return 2;
    }
    rados.pool = *pool;
    // The daemon may run from another directory: the conf file by its
    // absolute path.
    if (!rados.conf_path.empty() && rados.conf_path[0] != '/') {
      char* abs = ::realpath(rados.conf_path.c_str(), nullptr);
      if (!abs) return Fail(Status::FromErrno("--ceph-conf " + rados.conf_path));
      rados.conf_path = abs;
      std::free(abs);
    }
    Status st = BackingDir::Format(backing, false, &rados);
    if (!st.ok()) return Fail(st);
    std::printf("formatted %s (catalog.db, journal/; blocks in RADOS pool %s as client.%s%s%s)\n", backing.c_str(),
                rados.pool.c_str(), rados.client_id.c_str(), rados.conf_path.empty() ? "" : ", conf ",
                rados.conf_path.c_str());
    return 0;
  }
  Status st = BackingDir::Format(backing, compress);
  if (!st.ok()) return Fail(st);
  std::printf("formatted %s (catalog.db, store.dat, journal/; compress=%s)\n", backing.c_str(),
              compress ? "lz4" : "off");
  return 0;
}

// ---- Migration (RADOS mode; fs/migration.h): through the daemons' control
// xattrs.

std::string AbsPath(const std::string& p) {
  if (!p.empty() && p[0] == '/') return p;
  char cwd[PATH_MAX];
  if (!::getcwd(cwd, sizeof cwd)) return p;
  return std::string(cwd) + "/" + p;
}

// What an errno of the control xattrs means to the operator.
std::string MigrationError(int e, bool exporting) {
  switch (e) {
    case EOPNOTSUPP:
      return "not supported: the file is not on a chainswap mount whose backing directory is on RADOS (chainswap "
             "format --store rados:POOL), or a block of it is stored under a private name";
    case EPERM: return "only root may export or import";
    case EXDEV: return "the destination's chain is another chain (a chain of the same name, in the same pool)";
    case ENOTEMPTY: return "the destination file is not empty";
    case ENOENT: return exporting ? "no such file" : "a block's object is gone from the pool (the source no "
                                                      "longer references it)";
    case EEXIST: return "the manifest file already exists";
    case EINVAL: return "not a chainswap manifest (see the daemon's log)";
    default: return std::strerror(e);
  }
}

int CmdExport(const std::string& file, const std::string& manifest) {
  const std::string path = AbsPath(manifest);
  if (::setxattr(file.c_str(), kExportXattr, path.data(), path.size(), 0) != 0) {
    const int e = errno;
    std::fprintf(stderr, "chainswap export: %s: %s\n", file.c_str(), MigrationError(e, true).c_str());
    return 1;
  }
  std::printf("exported %s to %s\n", file.c_str(), path.c_str());
  return 0;
}

int CmdImport(const std::string& manifest, const std::string& file) {
  const std::string path = AbsPath(manifest);
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int e = errno;
    std::fprintf(stderr, "chainswap import: create %s: %s\n", file.c_str(),
                 e == EEXIST ? "it exists (import makes a new file)" : std::strerror(e));
    return 1;
  }
  ::close(fd);
  if (::setxattr(file.c_str(), kImportXattr, path.data(), path.size(), 0) != 0) {
    const int e = errno;
    std::fprintf(stderr, "chainswap import: %s: %s\n", file.c_str(), MigrationError(e, false).c_str());
    ::unlink(file.c_str());
    return 1;
  }
  std::printf("imported %s into %s\n", path.c_str(), file.c_str());
  return 0;
}

// Both mounts visible here: export, import, then unlink the source (which
// drops the source host's references once its reclaim runs).
int CmdMigrate(const std::string& src, const std::string& dst, bool keep_source) {
  char tmpl[] = "/tmp/chainswap-migrate-XXXXXX";
  if (!::mkdtemp(tmpl)) return Fail(Status::FromErrno("mkdtemp"));
  const std::string manifest = std::string(tmpl) + "/manifest.json";
  int rc = CmdExport(src, manifest);
  if (rc == 0) rc = CmdImport(manifest, dst);
  ::unlink(manifest.c_str());
  ::rmdir(tmpl);
  if (rc != 0) return rc;
  if (!keep_source && ::unlink(src.c_str()) != 0) {
    std::fprintf(stderr, "chainswap migrate: %s is on the destination, but unlinking the source failed: %s\n",
                 dst.c_str(), std::strerror(errno));
    return 1;
  }
  std::printf("migrated %s to %s%s\n", src.c_str(), dst.c_str(), keep_source ? " (source kept)" : "");
  return 0;
}

// Clone through the mount: copy_file_range between two swap files of one
// chain is an O(metadata) LAT copy in the daemon.
int CmdClone(const std::string& src, const std::string& dst, bool force) {
  // The kernel would quietly fall back to a byte copy across chains; refuse.
  auto dir_of = [](const std::string& p) {
    std::string d = p.substr(0, p.find_last_of('/') == std::string::npos ? 0 : p.find_last_of('/'));
    return d.empty() ? std::string(".") : d;
  };
  struct stat sd, dd;
  if (::stat(dir_of(src).c_str(), &sd) == 0 && ::stat(dir_of(dst).c_str(), &dd) == 0 &&
      (sd.st_dev != dd.st_dev || sd.st_ino != dd.st_ino)) {
    return Fail(Status::Error(EXDEV, src + " and " + dst + " are not in the same chain directory: "
                                     "clone works only within one chain (dedup domain)"));
  }
  int in = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return Fail(Status::FromErrno("open " + src));
  struct stat st;
  if (::fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(in);
    return Fail(Status::Error(EINVAL, src + " is not a swap file"));
  }
  int out = ::open(dst.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL), st.st_mode & 07777);
  if (out < 0) {
    int err = errno;
    ::close(in);
    if (err == EEXIST) return Fail(Status::Error(EEXIST, dst + " exists (use --force to replace it)"));
    return Fail(Status::FromErrno(err, "create " + dst));
  }
  off_t off_in = 0, off_out = 0;
  uint64_t left = static_cast<uint64_t>(st.st_size);
  int rc = 0;
  while (left > 0) {
    ssize_t n = ::copy_file_range(in, &off_in, out, &off_out, left, 0);
    if (n < 0) {
      int err = errno;
      if (err == EXDEV) {
        Fail(Status::Error(EXDEV, src + " and " + dst + " are in different chains (dedup domains): "
                                  "clone works only within one chain"));
      } else {
        Fail(Status::FromErrno(err, "clone " + src + " -> " + dst));
      }
      ::unlink(dst.c_str());
      rc = 1;
      break;
    }
    if (n == 0) break;
    left -= static_cast<uint64_t>(n);
  }
  if (rc == 0 && ::fsync(out) != 0) rc = Fail(Status::FromErrno("fsync " + dst));
  ::close(in);
  ::close(out);
  if (rc == 0) std::printf("cloned %s -> %s (%s)\n", src.c_str(), dst.c_str(), HumanBytes(st.st_size).c_str());
  return rc;
}

// Prints a report (text or JSON) and returns fsck's exit code: 0 clean, 1
// problems found and all repaired, 4 problems left.
int PrintFsckReport(const std::string& backing, const FsckReport& rep, bool repair, bool json) {
  if (json) {
    nlohmann::json j;
    j["clean"] = rep.clean();
    j["chains"] = rep.chains;
    j["files"] = rep.files;
    j["lat_entries"] = rep.lat_entries;
    j["blocks_hash_checked"] = rep.blocks_checked;
    j["unindexed_blocks"] = rep.unindexed;
    j["journal_segments"] = rep.segments;
    j["leaked_pages"] = rep.leaked_pages;
    j["leaked_pages_punched"] = rep.leaked_pages_punched;
    if (rep.rados) {
      j["rados"] = {{"pool", rep.rados_pool},
                    {"host", rep.rados_host},
                    {"blocks", rep.rados_blocks},
                    {"objects", rep.rados_objects},
                    {"references", rep.rados_refs},
                    {"pending_intents", rep.rados_intents},
                    {"pending_unrefs", rep.rados_unrefs},
                    {"pending_resolved", rep.rados_pending_resolved}};
    }
    j["issues"] = nlohmann::json::array();
    for (const auto& i : rep.issues) j["issues"].push_back({{"kind", i.kind}, {"detail", i.detail}, {"repaired", i.repaired}});
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    for (const auto& i : rep.issues)
      std::printf("%-16s %s%s\n", i.kind.c_str(), i.detail.c_str(), i.repaired ? " [repaired]" : (repair ? " [NOT repaired]" : ""));
    std::printf("%s: %llu chain(s), %llu file(s), %llu LAT entries, %llu block hash(es) verified, %llu block(s) "
                "without a hash entry, %llu journal segment(s): ",
                backing.c_str(), (unsigned long long)rep.chains, (unsigned long long)rep.files,
                (unsigned long long)rep.lat_entries, (unsigned long long)rep.blocks_checked,
                (unsigned long long)rep.unindexed, (unsigned long long)rep.segments);
    if (rep.leaked_pages)
      std::printf("(%llu store page(s) hold data no block uses, left by a crash: %s) ",
                  (unsigned long long)rep.leaked_pages,
                  rep.leaked_pages_punched ? "punched" : "the next mount or --repair punches them");
    if (rep.rados) {
      std::printf("RADOS pool %s (host %s): %llu block(s) checked against %llu object(s) of this host's chains, "
                  "%llu reference(s) of this host; ",
                  rep.rados_pool.c_str(), rep.rados_host.c_str(), (unsigned long long)rep.rados_blocks,
                  (unsigned long long)rep.rados_objects, (unsigned long long)rep.rados_refs);
      if (rep.rados_intents || rep.rados_unrefs)
        std::printf("(%llu reference(s) being taken and %llu to drop were pending, not damage: %s) ",
                    (unsigned long long)rep.rados_intents, (unsigned long long)rep.rados_unrefs,
                    rep.rados_pending_resolved ? "resolved" : "the next mount or --repair resolves them");
    }
    if (rep.clean()) std::printf("clean\n");
    else std::printf("%zu problem(s)%s\n", rep.issues.size(),
                     repair ? (rep.all_repaired() ? ", all repaired" : ", some NOT repaired") : "; run with --repair to fix what is safely fixable");
  }
  if (rep.clean()) return 0;
  return repair && rep.all_repaired() ? 1 : 4;
}

// Exit codes follow e2fsck: 0 clean, 1 problems found and all repaired,
// 4 problems left, 8 operational error (nothing could be checked).
int CmdFsck(const std::string& backing, bool repair, bool read_only, bool no_hash, bool json, int rados_timeout) {
  const bool mounted = BackingDir::IsLocked(backing);
  if (mounted && !read_only) {
    std::fprintf(stderr, "chainswap: %s is mounted (a daemon holds its lock); unmount it first, or use "
                         "--read-only to check without repairing\n", backing.c_str());
    return 8;
  }
  if (repair && read_only) {
    std::fprintf(stderr, "chainswap: --repair and --read-only exclude each other\n");
    return 8;
  }
  const BackingPaths paths(backing);
  // RADOS mode: the catalog's settings (to name the pool if it does not
  // answer), and the pending reference rows a read-write open resolves
  // before the check runs (for the report).
  std::optional<RadosConfig> rados;
  FsckOptions fo;
  std::vector<FsckIssue> pre_issues;
  if (::access(paths.catalog.c_str(), F_OK) == 0) {
    auto db = sql::Db::Open(paths.catalog, SQLITE_OPEN_READONLY);
    if (db.ok()) {
      auto rc = ReadRadosConfig(*db);
      if (rc.ok() && rc->has_value()) {
        rados = **rc;
        if (repair) {
          auto pending = RadosPendingRows(*db);
          if (pending.ok()) {
            fo.rados_intents_resolved_at_open = pending->first;
            fo.rados_unrefs_resolved_at_open = pending->second;
          }
        }
      }
    }
  }
  struct stat sst;
  if (rados && ::stat(paths.store.c_str(), &sst) != 0 && errno == ENOENT) {
    // In RADOS mode store.dat holds nothing: nothing is lost. The open
    // needs the (empty) file.
    if (!repair) {
      FsckReport rep;
      rep.issues.push_back({"store", "content store " + paths.store + " is missing (in RADOS mode it holds nothing: "
                                     "no data is lost; run with --repair to recreate it, then check)", false});
      return PrintFsckReport(backing, rep, repair, json);
    }
    Status cs = ContentStore::Create(paths.store);
    if (!cs.ok()) {
      Fail(cs);
      return 8;
    }
    pre_issues.push_back({"store", "content store " + paths.store + " was missing (in RADOS mode it holds nothing: "
                                   "no data is lost); recreated empty", true});
  }
  if (!rados && ::access(paths.catalog.c_str(), F_OK) == 0 && ::stat(paths.store.c_str(), &sst) != 0 && errno == ENOENT) {
    // A catalog without its content store: every stored block is gone. That
    // is a finding about the installation, not a failure to check it.
    FsckReport rep;
    rep.issues.push_back({"store", "content store " + paths.store +
                                       " is missing: every stored block is lost (not repairable; restore it "
                                       "from a backup, the catalog is intact)", false});
    return PrintFsckReport(backing, rep, repair, json);
  }
  CatalogOptions o;
  o.read_only = !repair;
  o.rados_timeout_seconds = rados_timeout;
  auto b = BackingDir::Open(backing, repair ? LockMode::kExclusive : LockMode::kNone, o);
  if (!b.ok()) {
    if (rados) {
      std::fprintf(stderr, "chainswap: fsck %s: its blocks are in RADOS pool '%s' (conf %s, client.%s), which fsck "
                           "needs and could not use%s: %s; nothing was checked\n",
                   backing.c_str(), rados->target.pool.c_str(),
                   rados->target.conf_path.empty() ? "librados's default" : rados->target.conf_path.c_str(),
                   rados->target.client_id.c_str(),
                   IsStoreUnreachable(b.status()) ? (" (no answer within " + std::to_string(rados_timeout) + " s)").c_str()
                                                  : "",
                   b.status().ToString().c_str());
      return 8;
    }
    Fail(b.status());
    return 8;
  }
  fo.repair = repair;
  fo.verify_hashes = !no_hash;
  fo.progress = !json && ::isatty(2);
  fo.journal_live = mounted;
  auto rep = RunFsck(**b, fo);
  if (!rep.ok()) {
    if (rados && IsStoreUnreachable(rep.status())) {
      std::fprintf(stderr, "chainswap: fsck %s: the cluster stopped answering (no answer within %d s): %s; the check "
                           "is incomplete\n",
                   backing.c_str(), rados_timeout, rep.status().ToString().c_str());
      return 8;
    }
    Fail(rep.status());
    return 8;
  }
  rep->issues.insert(rep->issues.begin(), pre_issues.begin(), pre_issues.end());
  return PrintFsckReport(backing, *rep, repair, json);
}

// Parses a duration ("30d", "12h", "2w", "90m", "3600s"; a bare number is
// days) into whole days, rounded up (the unit of pat.born); false on junk.
bool ParseDays(const std::string& text, int64_t* days) {
  size_t pos = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(text, &pos, 10);
  } catch (...) {
    return false;
  }
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0])) || v > (1ull << 40)) return false;
  const std::string unit = text.substr(pos);
  uint64_t seconds;
  if (unit.empty() || unit == "d") seconds = v * 86400;
  else if (unit == "w") seconds = v * 7 * 86400;
  else if (unit == "h") seconds = v * 3600;
  else if (unit == "m") seconds = v * 60;
  else if (unit == "s") seconds = v;
  else return false;
  *days = static_cast<int64_t>((seconds + 86399) / 86400);
  return true;
}

// Drops the hash entries of blocks with refcount 1, oldest first (after
// OpenZFS's `zpool ddtprune`), on an unmounted backing directory: those
// blocks keep their data and refcounts and are no longer deduplicated
// against. `older_than_days` or `percent` (of the refcount-1 entries).
int CmdPrune(const std::string& backing, std::optional<int64_t> older_than_days, std::optional<double> percent,
             bool json) {
  if (BackingDir::IsLocked(backing)) {
    std::fprintf(stderr, "chainswap: %s is mounted (a daemon holds its lock); unmount it first: prune rewrites the "
                         "catalog's hash index offline\n", backing.c_str());
    return 1;
  }
  auto b = BackingDir::Open(backing, LockMode::kExclusive, CatalogOptions{});
  if (!b.ok()) return Fail(b.status());
  Catalog& cat = (*b)->catalog();
  int64_t last_born_day = INT64_MAX;
  uint64_t max_entries = UINT64_MAX;
  uint64_t unique = 0;
  if (older_than_days) {
    last_born_day = DayNumberNow() - *older_than_days;
  } else {
    auto u = cat.UniqueHashEntries();
    if (!u.ok()) return Fail(u.status());
    unique = *u;
    max_entries = static_cast<uint64_t>(static_cast<double>(unique) * *percent / 100.0);
  }
  auto r = cat.PruneHashIndex(last_born_day, max_entries);
  if (!r.ok()) return Fail(r.status());
  if (json) {
    nlohmann::json j = {{"pruned", r->pruned}, {"hash_entries", r->entries_left}, {"unindexed_blocks", r->unindexed}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("pruned %llu hash entr%s of blocks with refcount 1; %llu entr%s left, %llu block(s) without one\n",
                (unsigned long long)r->pruned, r->pruned == 1 ? "y" : "ies", (unsigned long long)r->entries_left,
                r->entries_left == 1 ? "y" : "ies", (unsigned long long)r->unindexed);
  }
  return 0;
}

// The mountpoint of a mounted backing directory (from /proc/self/mounts:
// the daemon mounts with fsname=<absolute backing path>), or "".
std::string FindMountpoint(const std::string& backing) {
  char* real = ::realpath(backing.c_str(), nullptr);
  if (!real) return "";
  std::string abs = real;
  std::free(real);
  std::ifstream in("/proc/self/mounts");
  std::string dev, dir, type, rest;
  while (in >> dev >> dir >> type && std::getline(in, rest)) {
    if (type == "fuse.chainswapfs" && dev == abs) return dir;
  }
  return "";
}

// chain list|create|rm: through the mount when mounted (the daemon owns the
// namespace), on the catalog directly otherwise.
int CmdChain(const std::string& action, const std::string& backing, const std::string& name, bool json) {
  const std::string mnt = FindMountpoint(backing);
  if (action == "list") {
    CatalogOptions o;
    o.read_only = true;
    auto b = BackingDir::Open(backing, LockMode::kNone, o);
    if (!b.ok()) return Fail(b.status());
    auto stats = (*b)->catalog().Stats();
    if (!stats.ok()) return Fail(stats.status());
    if (json) {
      nlohmann::json j = nlohmann::json::array();
      for (const auto& s : *stats) j.push_back({{"dedup_id", s.dedup_id}, {"name", s.name}, {"files", s.files},
                                                {"path", mnt.empty() ? "" : mnt + "/" + s.name}});
      std::printf("%s\n", j.dump(2).c_str());
      return 0;
    }
    Table t({"dedup_id", "chain", "files", "logical", "path"});
    for (const auto& s : *stats)
      t.Add({std::to_string(s.dedup_id), s.name, std::to_string(s.files), HumanBytes(s.logical_bytes),
             mnt.empty() ? "(not mounted)" : mnt + "/" + s.name});
    std::printf("%s", t.Render().c_str());
    return 0;
  }
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
    return Fail(Status::Error(EINVAL, "a chain name is one path component"));
  if (!mnt.empty()) {
    std::string path = mnt + "/" + name;
    if (action == "create") {
      if (::mkdir(path.c_str(), 0700) != 0) return Fail(Status::FromErrno("create chain " + path));
      std::printf("created chain %s\n", path.c_str());
    } else {
      if (::rmdir(path.c_str()) != 0) return Fail(Status::FromErrno("remove chain " + path));
      std::printf("removed chain %s\n", path.c_str());
    }
    return 0;
  }
  auto b = BackingDir::Open(backing, LockMode::kExclusive, CatalogOptions{});
  if (!b.ok()) return Fail(b.status());
  Catalog& cat = (*b)->catalog();
  if (action == "create") {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    auto c = cat.CreateChain(name, 0700, ::getuid(), ::getgid(), int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec);
    if (!c.ok()) return Fail(c.status());
    std::printf("created chain %s (dedup ID %lld)\n", name.c_str(), (long long)c->dedup_id);
    return 0;
  }
  auto chains = cat.ListChains();
  if (!chains.ok()) return Fail(chains.status());
  for (const auto& c : *chains) {
    if (c.name != name) continue;
    auto removed = cat.RemoveChain(c.dedup_id);
    if (!removed.ok()) return Fail(removed.status());
    std::printf("removed chain %s\n", name.c_str());
    return 0;
  }
  return Fail(Status::Error(ENOENT, "no chain named '" + name + "'"));
}

// The backing directory as an absolute path (the `backing` label of the
// metrics, as the daemon, which mounts with the real path, writes it).
std::string AbsolutePath(const std::string& path) {
  char* real = ::realpath(path.c_str(), nullptr);
  if (!real) return path;
  std::string abs = real;
  std::free(real);
  return abs;
}

// The figures come from fs/figures.h, the code the daemon's metrics file
// uses too: the catalog (readable while mounted: WAL readers never block the
// daemon) and, while mounted, the destage figures the daemon publishes in
// BACKING/destage.json every second.
// RADOS mode: the cluster-wide side of `chainswap stats` (issue 15): per
// chain, the objects the pool holds for it (every host's), from one listing
// of the pool; nullopt and a reason when the cluster does not answer.
struct ClusterFigures {
  RadosConfig config;
  std::optional<std::string> unreachable;   // why there are no counts
  std::map<int64_t, uint64_t> objects;      // by dedup ID
  Catalog::RadosQueues queues;
};

std::optional<ClusterFigures> GatherClusterFigures(BackingDir& b) {
  auto rc = ReadRadosConfig(b.catalog().db_for_tools());
  if (!rc.ok() || !rc->has_value()) return std::nullopt;
  ClusterFigures cf;
  cf.config = **rc;
  if (auto q = b.catalog().RadosQueueRows(); q.ok()) cf.queues = *q;
  auto ids = b.catalog().RadosChainIds();
  RadosConfig c = cf.config;
  c.target.timeout_seconds = 10;
  auto conn = RadosBackend::Connect(c);
  if (!conn.ok() || !ids.ok()) {
    cf.unreachable = conn.ok() ? ids.status().ToString() : conn.status().ToString();
    return cf;
  }
  auto names = (*conn)->store().List("blk.");
  if (!names.ok()) {
    cf.unreachable = names.status().ToString();
    return cf;
  }
  std::map<std::string, int64_t> by_id;
  for (const auto& [dedup, id] : *ids) {
    by_id[id] = dedup;
    cf.objects[dedup] = 0;
  }
  for (const std::string& n : *names) {  // blk.ID.HASH[.HOST.N]
    const size_t dot = n.find('.', 4);
    if (dot == std::string::npos) continue;
    auto it = by_id.find(n.substr(4, dot - 4));
    if (it != by_id.end()) ++cf.objects[it->second];
  }
  return cf;
}

int CmdStats(const std::string& backing, bool json, bool per_file, bool prometheus) {
  CatalogOptions o;
  o.read_only = true;
  o.rados_connect = false;  // the cluster's figures are gathered apart: local ones show without it
  auto b = BackingDir::Open(backing, LockMode::kNone, o);
  if (!b.ok()) return Fail(b.status());
  const std::optional<ClusterFigures> cluster = prometheus ? std::nullopt : GatherClusterFigures(**b);
  Figures fig;
  fig.backing = AbsolutePath(backing);
  fig.mounted = BackingDir::IsLocked(backing);
  if (fig.mounted) ReadPublishedStats(backing + "/destage.json", &fig);
  // The chain statistics on the catalog's own connection: this process is
  // its only user.
  if (Status st = GatherCatalogFigures(**b, (*b)->catalog().db_for_tools(), &fig); !st.ok()) return Fail(st);
  if (prometheus) {
    std::string text;
    auto problems = RenderMetrics(fig, &text);
    if (!problems.empty()) return Fail(Status::Error(EINVAL, "metrics text: " + problems.front()));
    std::fwrite(text.data(), 1, text.size(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;
  }
  // A file's "stored" is its fair share: each block counts 4 KiB / refcount
  // (reads all its LAT entries; not in the metrics).
  auto files = (*b)->catalog().PerFileStats();
  if (!files.ok()) return Fail(files.status());
  auto ratio_of = [](uint64_t nonzero, uint64_t stored) { return stored ? double(nonzero) / double(stored) : 1.0; };
  const StoreUsage& usage = fig.usage;
  const uint64_t store_alloc = fig.store_allocated_bytes;
  // Published figures, fresh or not (stale: the daemon stopped publishing).
  const std::optional<PublishedStats>& published = fig.destage ? fig.destage : fig.stale_destage;
  if (json) {
    nlohmann::json j;
    j["backing"] = backing;
    j["mounted"] = fig.mounted;
    j["up"] = fig.live();
    j["destage"] = published ? nlohmann::json::parse(StatsToJson(*published)) : nlohmann::json(nullptr);
    j["hash_table"] = {{"entries", fig.hash_table.entries},
                       {"unindexed_blocks", fig.hash_table.unindexed},
                       {"limit_entries", fig.hash_table.limit_entries}};
    j["store"] = {{"used_slots", usage.used_slots},
                  {"free_slots", usage.free_slots},
                  {"high_water_slots", usage.high_water},
                  {"pack_pages", usage.pack_pages},
                  {"packed_sectors", usage.packed_sectors},
                  {"free_sectors", usage.free_sectors},
                  {"allocated_bytes", store_alloc}};
    if (cluster) {
      j["rados"] = {{"pool", cluster->config.target.pool},
                    {"user", cluster->config.target.client_id},
                    {"host", cluster->config.host},
                    {"reachable", !cluster->unreachable},
                    {"error", cluster->unreachable ? nlohmann::json(*cluster->unreachable) : nlohmann::json(nullptr)},
                    {"references_being_taken", cluster->queues.intents},
                    {"references_to_drop", cluster->queues.unrefs}};
    }
    j["chains"] = nlohmann::json::array();
    for (const ChainStats& s : fig.chains) {
      uint64_t saved = s.nonzero_bytes > s.stored_bytes ? s.nonzero_bytes - s.stored_bytes : 0;
      nlohmann::json pool_figures = nullptr;
      if (cluster && !cluster->unreachable && cluster->objects.count(s.dedup_id)) {
        const uint64_t n = cluster->objects.at(s.dedup_id);
        // This host's references: one per block (PAT row) it stores.
        pool_figures = {{"objects", n}, {"bytes", n * kBlockSize}, {"this_host_references", s.blocks}};
      }
      j["chains"].push_back({{"dedup_id", s.dedup_id},
                             {"rados", pool_figures},
                             {"name", s.name},
                             {"files", s.files},
                             {"logical_bytes", s.logical_bytes},
                             {"nonzero_bytes", s.nonzero_bytes},
                             {"zero_blocks", s.zero_blocks},
                             {"stored_bytes", s.stored_bytes},
                             {"saved_bytes", saved},
                             {"blocks", s.blocks},
                             {"compressed_blocks", s.compressed_blocks},
                             {"stored_sectors", s.stored_bytes / kSectorSize},
                             // dedup: references per stored block; compress:
                             // 4 KiB per stored block over its bytes; total:
                             // their product.
                             {"dedup_ratio", ratio_of(s.nonzero_bytes, s.blocks * kBlockSize)},
                             {"compress_ratio", ratio_of(s.blocks * kBlockSize, s.stored_bytes)},
                             {"total_ratio", ratio_of(s.nonzero_bytes, s.stored_bytes)}});
    }
    j["files"] = nlohmann::json::array();
    for (const FileStats& f : *files) {
      j["files"].push_back({{"file_id", f.file_id}, {"dedup_id", f.dedup_id}, {"chain", f.chain}, {"name", f.name},
                            {"logical_bytes", f.logical_bytes}, {"nonzero_bytes", f.nonzero_bytes},
                            {"zero_blocks", f.zero_blocks}, {"stored_bytes", f.stored_bytes},
                            {"saved_bytes", f.nonzero_bytes > f.stored_bytes ? f.nonzero_bytes - f.stored_bytes : 0},
                            {"uncompressed_bytes", f.uncompressed_bytes},
                            {"dedup_ratio", ratio_of(f.nonzero_bytes, f.uncompressed_bytes)},
                            {"compress_ratio", ratio_of(f.uncompressed_bytes, f.stored_bytes)},
                            {"total_ratio", ratio_of(f.nonzero_bytes, f.stored_bytes)}});
    }
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  auto times = [](double r) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2fx", r);
    return std::string(buf);
  };
  // ratio = dedup x compress (compress 1.00x for raw blocks).
  Table t({"dedup_id", "chain", "files", "logical", "nonzero", "stored", "saved", "dedup", "compress", "ratio"});
  for (const ChainStats& s : fig.chains) {
    uint64_t saved = s.nonzero_bytes > s.stored_bytes ? s.nonzero_bytes - s.stored_bytes : 0;
    t.Add({std::to_string(s.dedup_id), s.name, std::to_string(s.files), HumanBytes(s.logical_bytes),
           HumanBytes(s.nonzero_bytes), HumanBytes(s.stored_bytes), HumanBytes(saved),
           times(ratio_of(s.nonzero_bytes, s.blocks * kBlockSize)), times(ratio_of(s.blocks * kBlockSize, s.stored_bytes)),
           times(ratio_of(s.nonzero_bytes, s.stored_bytes))});
  }
  std::printf("%s", t.Render().c_str());
  if (per_file) {
    Table ft({"chain", "file", "logical", "nonzero", "zero blocks", "stored (share)", "saved", "compress", "ratio"});
    for (const FileStats& f : *files) {
      ft.Add({f.chain, f.name, HumanBytes(f.logical_bytes), HumanBytes(f.nonzero_bytes), std::to_string(f.zero_blocks),
              HumanBytes(f.stored_bytes), HumanBytes(f.nonzero_bytes > f.stored_bytes ? f.nonzero_bytes - f.stored_bytes : 0),
              times(ratio_of(f.uncompressed_bytes, f.stored_bytes)), times(ratio_of(f.nonzero_bytes, f.stored_bytes))});
    }
    std::printf("\n%s", ft.Render().c_str());
  }
  if (cluster) {
    std::printf("content store: RADOS pool %s as client.%s (host %s)", cluster->config.target.pool.c_str(),
                cluster->config.target.client_id.c_str(), cluster->config.host.c_str());
    if (cluster->queues.intents || cluster->queues.unrefs)
      std::printf(", %llu reference(s) being taken, %llu to drop", (unsigned long long)cluster->queues.intents,
                  (unsigned long long)cluster->queues.unrefs);
    std::printf("\n");
    if (cluster->unreachable) {
      std::printf("cluster: unreachable (%s): the figures above are this host's\n", cluster->unreachable->c_str());
    } else {
      Table ct({"dedup_id", "chain", "this host's blocks", "pool objects (all hosts)", "pool bytes"});
      for (const ChainStats& s : fig.chains) {
        auto it = cluster->objects.find(s.dedup_id);
        const uint64_t n = it == cluster->objects.end() ? 0 : it->second;
        ct.Add({std::to_string(s.dedup_id), s.name, std::to_string(s.blocks), std::to_string(n),
                HumanBytes(n * kBlockSize)});
      }
      std::printf("\n%s", ct.Render().c_str());
    }
  } else {
  std::printf("content store: %s in use (%llu slots), %llu free slots, %s allocated on disk\n",
              HumanBytes(usage.used_slots * kBlockSize).c_str(),
              static_cast<unsigned long long>(usage.used_slots),
              static_cast<unsigned long long>(usage.free_slots), HumanBytes(store_alloc).c_str());
  }
  if (usage.pack_pages)
    std::printf("compressed blocks: %llu pack page(s), %s in sectors, %llu free sector(s) inside them\n",
                static_cast<unsigned long long>(usage.pack_pages), HumanBytes(usage.packed_sectors * kSectorSize).c_str(),
                static_cast<unsigned long long>(usage.free_sectors));
  if (fig.hash_table.known) {
    const HashTableFigures& h = fig.hash_table;
    std::printf("hash table: %llu entries, %llu block(s) without one (pruned or stored at the quota), quota: %s\n",
                (unsigned long long)h.entries, (unsigned long long)h.unindexed,
                h.limit_entries ? (std::to_string(h.limit_entries) + " entries").c_str() : "none");
  }
  if (published) {
    const EngineStats& s = published->engine;
    std::printf("destage: W=%llu X=%llu D=%llu/%llu journal %s of %s, %llu pending record(s), "
                "%llu write block(s) absorbed, %.0f ops/s%s%s",
                (unsigned long long)s.w_bucket, (unsigned long long)s.x_bucket, (unsigned long long)s.d,
                (unsigned long long)s.n, HumanBytes(s.journal_bytes).c_str(), HumanBytes(s.journal_limit).c_str(),
                (unsigned long long)s.pending_records, (unsigned long long)s.writes_absorbed, published->ops_per_sec,
                s.error.empty() ? "" : ", ERROR: ", s.error.c_str());
    if (!fig.live())
      std::printf(" (published %.0f s ago: the daemon is not publishing)", fig.destage_age_seconds);
    std::printf("\n");
  } else {
    std::printf("destage: %s\n", fig.mounted ? "figures not yet published" : "not mounted (journal replays at next mount)");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  CLI::App app{"chainswap: administer a chainswap backing directory"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("chainswap ") + CHAINSWAP_VERSION);

  std::string backing;
  bool json = false;
  auto* fmt = app.add_subcommand("format", "create an empty backing directory");
  fmt->add_option("BACKING", backing, "backing directory (created if missing)")->required();
  std::string compress = "off";
  fmt->add_option("--compress", compress,
                  "compression of new unique blocks: lz4 (LZ4 in 512-byte sectors) or off (default; the mount "
                  "option compress= overrides it)")
      ->check(CLI::IsMember({"lz4", "off"}));
  std::string format_store = "local";
  RadosTarget format_rados;
  fmt->add_option("--store", format_store,
                  "where blocks are stored: local (BACKING/store.dat, default) or rados:POOL (a Ceph pool shared by "
                  "the hosts that run a chain's clones; docs/RADOS.md)");
  fmt->add_option("--ceph-conf", format_rados.conf_path, "with --store rados:POOL: the Ceph conf file (default: "
                                                         "librados's search)");
  fmt->add_option("--ceph-id", format_rados.client_id, "with --store rados:POOL: the cephx user, without 'client.' "
                                                       "(default: admin)");
  fmt->add_option("--timeout", format_rados.timeout_seconds,
                  "with --store rados:POOL: seconds before an unanswered cluster is an error (default 30)")
      ->check(CLI::Range(1, 600));
  auto* stats = app.add_subcommand("stats", "per-chain logical, stored and saved bytes");
  stats->add_option("BACKING", backing, "backing directory")->required();
  stats->add_flag("--json", json, "machine-readable output (always includes files)");
  bool per_file = false;
  stats->add_flag("--files", per_file, "also a table per swap file");
  bool prometheus = false;
  stats->add_flag("--prometheus", prometheus,
                  "the figures in the Prometheus text exposition format (0.0.4), as the daemon's metrics_file= "
                  "writes them")
      ->excludes("--json");

  std::string src, dst;
  bool force = false;
  auto* clone = app.add_subcommand("clone", "O(metadata) copy of a swap file within its chain (through the mount)");
  clone->add_option("SRC", src, "swap file on a chainswap mount")->required();
  clone->add_option("DST", dst, "new swap file in the same chain directory")->required();
  clone->add_flag("--force", force, "replace DST if it exists");

  bool repair = false, read_only = false, no_hash = false;
  auto* fsck = app.add_subcommand("fsck", "check the catalog's invariants against the store and the journal");
  fsck->add_option("BACKING", backing, "backing directory")->required();
  fsck->add_flag("--repair", repair, "fix what is safely fixable (needs the backing directory unmounted)");
  fsck->add_flag("--read-only", read_only, "check a mounted backing directory without changing it");
  fsck->add_flag("--no-hash", no_hash, "skip reading every block to verify its hash");
  fsck->add_flag("--json", json, "machine-readable output");
  int fsck_rados_timeout = 30;
  fsck->add_option("--rados-timeout", fsck_rados_timeout,
                   "a catalog whose blocks are in RADOS: seconds before an unanswered cluster is an error (default 30)")
      ->check(CLI::Range(1, 600));
  fsck->footer("Exit status: 0 clean, 1 problems found and all repaired, 4 problems left, 8 could not check.");

  std::string chain_name;
  auto* chain = app.add_subcommand("chain", "list, create or remove chains (dedup domains)");
  chain->require_subcommand(1);
  auto* chain_list = chain->add_subcommand("list", "chains with their dedup IDs");
  chain_list->add_option("BACKING", backing, "backing directory")->required();
  chain_list->add_flag("--json", json, "machine-readable output");
  auto* chain_create = chain->add_subcommand("create", "a new chain (new dedup ID and hash seed)");
  chain_create->add_option("BACKING", backing, "backing directory")->required();
  chain_create->add_option("NAME", chain_name, "chain name")->required();
  auto* chain_rm = chain->add_subcommand("rm", "remove an empty chain");
  chain_rm->add_option("BACKING", backing, "backing directory")->required();
  chain_rm->add_option("NAME", chain_name, "chain name")->required();

  std::string older_than;
  double percent = 0;
  auto* prune = app.add_subcommand(
      "prune", "drop the hash entries of blocks with refcount 1, oldest first (unmounted backing directory only)");
  prune->add_option("BACKING", backing, "backing directory")->required();
  auto* older_opt = prune->add_option("--older-than", older_than,
                                      "entries of blocks stored at least this long ago: 30d, 2w, 12h (whole days, "
                                      "rounded up; a bare number is days)");
  auto* percent_opt = prune->add_option("--percent", percent, "this percentage of the refcount-1 entries, oldest first")
                          ->check(CLI::Range(0.0, 100.0));
  older_opt->excludes(percent_opt);
  prune->add_flag("--json", json, "machine-readable output");
  prune->footer("Pruned blocks keep their data and refcounts; only their future deduplication is lost.");

  EstimateOptions eopts;
  bool no_progress = false;
  auto* estimate = app.add_subcommand(
      "estimate", "what chainswap would store for a chain of these swap or memory images (dedup and lz4), before adoption");
  estimate->add_option("IMAGES", eopts.images, "images of one chain: files or block devices")->required();
  estimate->add_flag("--json", json, "machine-readable output");
  estimate->add_option("--memory", eopts.memory_bytes,
                       "bound on the estimate's memory (default 256M); past it, distinct blocks spill to a "
                       "temporary file")
      ->transform(CLI::AsSizeValue(false));
  estimate->add_option("--threads", eopts.threads, "worker threads (default: one per CPU)");
  estimate->add_option("--tmpdir", eopts.tmpdir, "directory for the spill file (default: $TMPDIR or /tmp)");
  estimate->add_flag("--no-progress", no_progress, "no progress line on stderr (shown only on a terminal anyway)");
  estimate->footer(
      "Rows by reference count as in zdb -S: LSIZE logical, PSIZE LZ4 (raw blocks 4K), DSIZE in 512-byte sectors. "
      "Exit status: 0, 1 when an image cannot be read, 2 on bad arguments (including an image that is not a "
      "file or a block device).");

  RadosTarget rados;
  std::string store_spec;
  auto* rados_check = app.add_subcommand(
      "rados-check", "can this host use a Ceph pool as a content store? connect, probe the cas class, list chains");
  rados_check->add_option("STORE", store_spec, "rados:POOL")->required();
  rados_check->add_option("--ceph-conf", rados.conf_path, "Ceph conf file (default: librados's search)");
  rados_check->add_option("--ceph-id", rados.client_id, "cephx user, without 'client.' (default: admin)");
  rados_check->add_option("--timeout", rados.timeout_seconds, "seconds before an unanswered cluster is an error")
      ->check(CLI::Range(1, 3600));
  rados_check->add_flag("--json", json, "machine-readable output");
  rados_check->footer("Exit status: 0 usable, 1 not usable (the reason on stderr), 2 bad arguments.");

  std::string mig_file, mig_manifest, mig_src, mig_dst;
  bool keep_source = false;
  auto* export_cmd = app.add_subcommand("export", "write a swap file's manifest for another host (RADOS mode)");
  export_cmd->add_option("FILE", mig_file, "swap file on a chainswap mount on RADOS")->required();
  export_cmd->add_option("MANIFEST", mig_manifest, "manifest to create (the daemon writes it; root only)")->required();
  auto* import_cmd = app.add_subcommand("import", "create a swap file from another host's manifest, no data copied");
  import_cmd->add_option("MANIFEST", mig_manifest, "manifest written by chainswap export")->required();
  import_cmd->add_option("FILE", mig_file, "new swap file in the chain of the same name on this host")->required();
  auto* migrate = app.add_subcommand("migrate", "move a swap file between two mounts on one pool in O(metadata): "
                                                "export, import, unlink the source");
  migrate->add_option("SRC", mig_src, "swap file on the source host's mount")->required();
  migrate->add_option("DST", mig_dst, "new swap file on the destination host's mount")->required();
  migrate->add_flag("--keep-source", keep_source, "do not unlink SRC");
  migrate->footer("Both mounts must be visible here (otherwise run chainswap export on the source host and chainswap "
                  "import on the destination, then remove the source file). Exit status: 0, 1 on failure.");

  BenchOptions bopts;
  auto* bench = app.add_subcommand("bench", "realistic clone-chain swap workload: speed, dedup vs ideal, destage, reclaim");
  AddBenchOptions(bench, &bopts);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);  // prints the message (or the help)
    if (rc != 0)
      std::fprintf(stderr, "Usage: chainswap {format|stats|clone|fsck|chain|prune|estimate|bench|rados-check|export|import|migrate} ARGS...  "
                           "(chainswap SUBCOMMAND --help for each)\n");
    return rc == 0 ? 0 : 2;
  }
  if (*fmt) return CmdFormat(backing, compress == "lz4", format_store, format_rados);
  if (*stats) return CmdStats(backing, json, per_file, prometheus);
  if (*clone) return CmdClone(src, dst, force);
  if (*fsck) return CmdFsck(backing, repair, read_only, no_hash, json, fsck_rados_timeout);
  if (*chain_list) return CmdChain("list", backing, "", json);
  if (*chain_create) return CmdChain("create", backing, chain_name, json);
  if (*chain_rm) return CmdChain("rm", backing, chain_name, json);
  if (*prune) {
    if (!*older_opt && !*percent_opt) {
      std::fprintf(stderr, "chainswap prune: give --older-than DURATION or --percent P\n");
      return 2;
    }
    std::optional<int64_t> days;
    if (*older_opt) {
      int64_t d = 0;
      if (!ParseDays(older_than, &d)) {
        std::fprintf(stderr, "chainswap prune: --older-than %s: expected a duration such as 30d, 2w or 12h\n",
                     older_than.c_str());
        return 2;
      }
      days = d;
    }
    return CmdPrune(backing, days, *percent_opt ? std::optional<double>(percent) : std::nullopt, json);
  }
  if (*estimate) {
    eopts.progress = !no_progress && ::isatty(STDERR_FILENO);
    Result<EstimateReport> r = Estimate(eopts);
    if (!r.ok()) {
      std::fprintf(stderr, "chainswap estimate: %s\n", r.status().ToString().c_str());
      return r.status().code() == EINVAL ? 2 : 1;  // EINVAL: an argument (memory bound, image type)
    }
    std::printf("%s%s", json ? EstimateJson(*r).c_str() : RenderEstimate(*r).c_str(), json ? "\n" : "");
    return 0;
  }
  if (*bench) return RunBench(bopts);
  if (*export_cmd) return CmdExport(mig_file, mig_manifest);
  if (*import_cmd) return CmdImport(mig_manifest, mig_file);
  if (*migrate) return CmdMigrate(mig_src, mig_dst, keep_source);
  if (*rados_check) {
    auto pool = ParseRadosStoreSpec(store_spec);
    if (!pool.ok()) {
      std::fprintf(stderr, "chainswap rados-check: %s\n", pool.status().message().c_str());
      return 2;
    }
    rados.pool = *pool;
    auto r = RadosCheck(rados);
    if (!r.ok()) {
      std::fprintf(stderr, "chainswap rados-check: %s\n", r.status().ToString().c_str());
      return 1;
    }
    std::printf("%s%s", json ? RadosCheckJson(*r).c_str() : RenderRadosCheck(*r).c_str(), json ? "\n" : "");
    return 0;
  }
  return 2;
}
