// sync_shadow: an LD_PRELOAD shim that keeps, next to a backing directory, a
// "shadow" copy holding only what a power cut would leave of it. Used by
// tests/mount/powercut_test.cc; loaded into chainswapfs through the
// environment only, never linked into anything.
//
//   CHAINSWAP_SHADOW_BACKING  the backing directory to watch (absolute)
//   CHAINSWAP_SHADOW_DIR      the shadow (absolute; outside the backing dir;
//                             starts as a copy of the backing directory)
//   CHAINSWAP_SHADOW_NAMES    "linux" (default) or "strict", see below
//   CHAINSWAP_SHADOW_VERBOSE  set: one stderr line per modelled event
//
// Without both paths set every call is passed through untouched.
//
// The model (what survives a power cut, Linux with a journaling filesystem):
// - File data is durable only as of the file's last fsync/fdatasync: at each
//   such call on a regular file under BACKING, the file's full current
//   content (as read through the descriptor, holes kept) replaces its copy in
//   the shadow, atomically (temp file + rename). The copy is taken *before*
//   the real call, under one lock: exactly the bytes written before fsync was
//   called, in program order, are covered (writes racing with the call are
//   not, which is the pessimistic side). Everything written after the last
//   sync is lost: data, size changes (ftruncate, O_TRUNC), punched holes.
// - Names: a directory fsync makes the directory's current entries durable;
//   an entry new to the shadow gets the content of its last file sync, or is
//   empty. With CHAINSWAP_SHADOW_NAMES=linux (default) a file fsync also makes
//   the file's own name durable, as ext4, XFS and btrfs do for a newly
//   created file (the inode and its directory entry commit in one journal
//   transaction). With "strict" (POSIX), a file whose name was never fsynced
//   in its directory does not exist after the cut even if its data was
//   synced (that data is kept aside in SHADOW/.pending until a directory
//   fsync names it).
// - unlink/unlinkat/rename/renameat/renameat2 of paths under BACKING take
//   effect in the shadow at once (the pessimistic direction for deletions: a
//   journal segment deleted before the data it protected was synced is gone).
//   A rename whose source name is not durable removes the durable target
//   name (the pessimistic choice).
// - sync_file_range does not make anything durable (no metadata, no disk
//   cache flush): not modelled, passed through. sync/syncfs and O_SYNC/O_DSYNC
//   opens are not used by chainswapfs and not modelled (a warning is printed
//   once if sync/syncfs is called).
// - If a real fsync fails, the shadow has already been updated (optimistic);
//   a warning is printed. The tests never make fsync fail.
//
// Thread safety: one mutex around every shadow update. The shim is built
// without sanitizer instrumentation (see tests/CMakeLists.txt) and only calls
// libc, so it can be preloaded into ASan/TSan builds of the daemon.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

namespace {

using FdFn = int (*)(int);
using UnlinkFn = int (*)(const char*);
using UnlinkatFn = int (*)(int, const char*, int);
using RenameFn = int (*)(const char*, const char*);
using RenameatFn = int (*)(int, const char*, int, const char*);
using Renameat2Fn = int (*)(int, const char*, int, const char*, unsigned);
using SyncFn = void (*)(void);

FdFn real_fsync, real_fdatasync, real_syncfs;
UnlinkFn real_unlink;
UnlinkatFn real_unlinkat;
RenameFn real_rename;
RenameatFn real_renameat;
Renameat2Fn real_renameat2;
SyncFn real_sync;

pthread_once_t once = PTHREAD_ONCE_INIT;
pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
bool enabled = false;
bool strict_names = false;
bool verbose = false;
char backing[PATH_MAX];  // normalized, no trailing slash
size_t backing_len = 0;
char shadow[PATH_MAX];
unsigned long long tmp_seq = 0;

template <typename F>
F Next(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

void Log(const char* fmt, ...) {
  if (!verbose) return;
  char line[PATH_MAX * 3];
  int n = snprintf(line, sizeof line, "sync_shadow[%d]: ", static_cast<int>(getpid()));
  va_list ap;
  va_start(ap, fmt);
  n += vsnprintf(line + n, sizeof line - static_cast<size_t>(n) - 2, fmt, ap);
  va_end(ap);
  if (n > static_cast<int>(sizeof line) - 2) n = static_cast<int>(sizeof line) - 2;
  line[n++] = '\n';
  (void)!write(2, line, static_cast<size_t>(n));
}

void Warn(const char* msg) {
  (void)!write(2, "sync_shadow: ", 13);
  (void)!write(2, msg, strlen(msg));
  (void)!write(2, "\n", 1);
}

// Lexical normalization of an absolute path: collapses "//", "/./", "/x/..";
// drops a trailing slash.
void Normalize(const char* in, char* out) {
  size_t o = 0;
  const char* p = in;
  out[0] = '\0';
  while (*p) {
    while (*p == '/') ++p;
    if (!*p) break;
    const char* s = p;
    while (*p && *p != '/') ++p;
    size_t len = static_cast<size_t>(p - s);
    if (len == 1 && s[0] == '.') continue;
    if (len == 2 && s[0] == '.' && s[1] == '.') {
      while (o > 0 && out[o - 1] != '/') --o;
      if (o > 0) --o;
      out[o] = '\0';
      continue;
    }
    if (o + 1 + len >= PATH_MAX) break;
    out[o++] = '/';
    memcpy(out + o, s, len);
    o += len;
    out[o] = '\0';
  }
  if (o == 0) {
    out[0] = '/';
    out[1] = '\0';
  }
}

void Init() {
  real_fsync = Next<FdFn>("fsync");
  real_fdatasync = Next<FdFn>("fdatasync");
  real_syncfs = Next<FdFn>("syncfs");
  real_sync = Next<SyncFn>("sync");
  real_unlink = Next<UnlinkFn>("unlink");
  real_unlinkat = Next<UnlinkatFn>("unlinkat");
  real_rename = Next<RenameFn>("rename");
  real_renameat = Next<RenameatFn>("renameat");
  real_renameat2 = Next<Renameat2Fn>("renameat2");
  const char* b = getenv("CHAINSWAP_SHADOW_BACKING");
  const char* s = getenv("CHAINSWAP_SHADOW_DIR");
  if (!b || !s || b[0] != '/' || s[0] != '/') return;
  char rb[PATH_MAX];
  // The kernel reports descriptors' paths resolved (/proc/self/fd).
  if (!realpath(b, rb)) snprintf(rb, sizeof rb, "%s", b);
  Normalize(rb, backing);
  backing_len = strlen(backing);
  Normalize(s, shadow);
  const char* names = getenv("CHAINSWAP_SHADOW_NAMES");
  strict_names = names && strcmp(names, "strict") == 0;
  verbose = getenv("CHAINSWAP_SHADOW_VERBOSE") != nullptr;
  enabled = true;
  Log("watching %s, shadow %s, names %s", backing, shadow, strict_names ? "strict" : "linux");
}

bool On() {
  pthread_once(&once, Init);
  return enabled;
}

// If `abs` (normalized) is strictly under BACKING, its relative path.
bool RelOf(const char* abs, char* rel) {
  if (strncmp(abs, backing, backing_len) != 0 || abs[backing_len] != '/') return false;
  snprintf(rel, PATH_MAX, "%s", abs + backing_len + 1);
  return rel[0] != '\0';
}

// Absolute normalized form of `path` relative to `dirfd`.
bool AbsAt(int dirfd, const char* path, char* out) {
  char raw[PATH_MAX * 2];
  if (path[0] == '/') {
    snprintf(raw, sizeof raw, "%s", path);
  } else {
    char base[PATH_MAX];
    if (dirfd == AT_FDCWD) {
      if (!getcwd(base, sizeof base)) return false;
    } else {
      char link[64];
      snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
      ssize_t n = readlink(link, base, sizeof base - 1);
      if (n <= 0) return false;
      base[n] = '\0';
    }
    snprintf(raw, sizeof raw, "%s/%s", base, path);
  }
  if (strlen(raw) >= PATH_MAX) return false;
  Normalize(raw, out);
  return true;
}

// The relative path (under BACKING) of what `fd` refers to; false when it is
// elsewhere or deleted.
bool RelOfFd(int fd, char* rel) {
  char link[64], target[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n <= 0) return false;
  target[n] = '\0';
  if (target[0] != '/') return false;
  static const char kDeleted[] = " (deleted)";
  size_t dl = sizeof kDeleted - 1;
  if (static_cast<size_t>(n) > dl && strcmp(target + n - dl, kDeleted) == 0) return false;
  char norm[PATH_MAX];
  Normalize(target, norm);
  return RelOf(norm, rel);
}

void ShadowPath(const char* rel, char* out) { snprintf(out, PATH_MAX, "%s/%s", shadow, rel); }

// SHADOW/.pending/<rel with '/' as '%'>: synced data of a not yet named file.
void PendingPath(const char* rel, char* out) {
  char flat[PATH_MAX];
  snprintf(flat, sizeof flat, "%s", rel);
  for (char* c = flat; *c; ++c)
    if (*c == '/') *c = '%';
  snprintf(out, PATH_MAX, "%s/.pending/%s", shadow, flat);
}

bool Exists(const char* p) {
  struct stat st;
  return lstat(p, &st) == 0;
}

// Copies everything `src` holds into a new file `dst` (holes stay holes).
bool CopyFd(int src, const char* dst) {
  struct stat st;
  if (fstat(src, &st) != 0) return false;
  int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) return false;
  bool ok = ftruncate(out, st.st_size) == 0;
  const size_t kBuf = 1 << 20;
  char* buf = static_cast<char*>(malloc(kBuf));
  off_t pos = 0;
  while (ok && buf && pos < st.st_size) {
    off_t data = lseek(src, pos, SEEK_DATA);
    if (data < 0) break;  // ENXIO: only a hole is left
    off_t hole = lseek(src, data, SEEK_HOLE);
    if (hole < 0) hole = st.st_size;
    for (off_t p = data; ok && p < hole;) {
      size_t want = static_cast<size_t>(hole - p < static_cast<off_t>(kBuf) ? hole - p : static_cast<off_t>(kBuf));
      ssize_t r = pread(src, buf, want, p);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        ok = r == 0;
        hole = p;  // the file shrank under us: keep what was read
        break;
      }
      for (ssize_t w = 0; w < r;) {
        ssize_t k = pwrite(out, buf + w, static_cast<size_t>(r - w), p + w);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
          ok = false;
          break;
        }
        w += k;
      }
      p += r;
    }
    pos = hole;
  }
  free(buf);
  if (!buf) ok = false;
  close(out);
  return ok;
}

// Makes SHADOW/<rel>'s parent directories exist.
void MakeParents(const char* path) {
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s", path);
  for (char* c = p + 1; *c; ++c) {
    if (*c != '/') continue;
    *c = '\0';
    mkdir(p, 0700);
    *c = '/';
  }
}

// Under mu. The file `fd` (regular, at BACKING/rel) was synced.
void SyncFile(int fd, const char* rel) {
  char target[PATH_MAX], tmp[PATH_MAX + 64];
  ShadowPath(rel, target);
  const bool named = !strict_names || Exists(target);
  if (!named) PendingPath(rel, target);
  MakeParents(target);
  snprintf(tmp, sizeof tmp, "%s/.tmp-%d-%llu", shadow, static_cast<int>(getpid()), ++tmp_seq);
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  int src = open(link, O_RDONLY | O_CLOEXEC);  // independent of fd's flags and offset
  if (src < 0 || !CopyFd(src, tmp) || real_rename(tmp, target) != 0) {
    Warn("cannot copy a synced file into the shadow; the simulation is incomplete");
    real_unlink(tmp);
  } else {
    Log("sync %s -> %s", rel, named ? "shadow" : ".pending");
  }
  if (src >= 0) close(src);
  if (named && strict_names) {
    char pending[PATH_MAX];
    PendingPath(rel, pending);
    real_unlink(pending);
  }
}

// Under mu. The directory BACKING/rel (rel "" = BACKING) was synced: its
// current entries are durable names now.
void SyncDir(const char* rel) {
  char live[PATH_MAX], sdir[PATH_MAX];
  if (rel[0]) {
    snprintf(live, sizeof live, "%s/%s", backing, rel);
    ShadowPath(rel, sdir);
  } else {
    snprintf(live, sizeof live, "%s", backing);
    snprintf(sdir, sizeof sdir, "%s", shadow);
  }
  mkdir(sdir, 0700);
  DIR* d = opendir(live);
  if (!d) return;
  while (struct dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    char erel[PATH_MAX], lpath[PATH_MAX * 2], spath[PATH_MAX];
    snprintf(erel, sizeof erel, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
    snprintf(lpath, sizeof lpath, "%s/%s", backing, erel);
    ShadowPath(erel, spath);
    struct stat st;
    if (lstat(lpath, &st) != 0 || Exists(spath)) continue;
    if (S_ISDIR(st.st_mode)) {
      mkdir(spath, 0700);
      Log("dir sync: new directory %s", erel);
    } else if (S_ISREG(st.st_mode)) {
      char pending[PATH_MAX];
      PendingPath(erel, pending);
      if (Exists(pending) && real_rename(pending, spath) == 0) {
        Log("dir sync: %s named (synced data)", erel);
      } else {
        int fd = open(spath, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0) close(fd);
        Log("dir sync: %s named (empty: its data was never synced)", erel);
      }
    }
  }
  closedir(d);
  // Shadow entries gone from the live directory (unlinks already applied).
  DIR* sd = opendir(sdir);
  if (!sd) return;
  while (struct dirent* e = readdir(sd)) {
    if (e->d_name[0] == '.') continue;  // ., .., .pending, .tmp-*
    char lpath[PATH_MAX * 2], spath[PATH_MAX * 2];
    snprintf(lpath, sizeof lpath, "%s/%s", live, e->d_name);
    snprintf(spath, sizeof spath, "%s/%s", sdir, e->d_name);
    struct stat st;
    if (lstat(lpath, &st) != 0 && errno == ENOENT && lstat(spath, &st) == 0 && S_ISREG(st.st_mode)) {
      real_unlink(spath);
      Log("dir sync: %s/%s gone", rel, e->d_name);
    }
  }
  closedir(sd);
}

int DoSync(int fd, FdFn real, const char* what) {
  if (!On()) return real(fd);
  char rel[PATH_MAX];
  struct stat st;
  bool ours = false;
  if (fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
    const bool is_dir = S_ISDIR(st.st_mode);
    // The path is resolved under the lock, so that an unlink or rename
    // racing with this sync is applied to the shadow before or after it as
    // a whole.
    pthread_mutex_lock(&mu);
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n > 0) {
      target[n] = '\0';
      char norm[PATH_MAX];
      Normalize(target, norm);
      if (is_dir && strcmp(norm, backing) == 0) {
        rel[0] = '\0';
        ours = true;
      } else {
        ours = RelOfFd(fd, rel);
      }
    }
    if (ours) {
      if (is_dir) SyncDir(rel);
      else SyncFile(fd, rel);
    }
    pthread_mutex_unlock(&mu);
  }
  int rc = real(fd);
  if (ours && rc != 0) {
    int e = errno;
    Warn("a real fsync/fdatasync failed after the shadow was updated (optimistic)");
    Log("%s %s failed: %s", what, rel, strerror(e));
    errno = e;
  }
  return rc;
}

// Under mu: BACKING/rel no longer exists.
void DropName(const char* rel) {
  char p[PATH_MAX];
  ShadowPath(rel, p);
  if (real_unlink(p) == 0) Log("unlink %s", rel);
  PendingPath(rel, p);
  real_unlink(p);
}

void AfterUnlink(int dirfd, const char* path) {
  char abs[PATH_MAX], rel[PATH_MAX];
  if (!AbsAt(dirfd, path, abs) || !RelOf(abs, rel)) return;
  pthread_mutex_lock(&mu);
  DropName(rel);
  pthread_mutex_unlock(&mu);
}

void AfterRename(int olddirfd, const char* oldpath, int newdirfd, const char* newpath) {
  char oabs[PATH_MAX], nabs[PATH_MAX], orel[PATH_MAX], nrel[PATH_MAX];
  bool o_ok = AbsAt(olddirfd, oldpath, oabs) && RelOf(oabs, orel);
  bool n_ok = AbsAt(newdirfd, newpath, nabs) && RelOf(nabs, nrel);
  if (!o_ok && !n_ok) return;
  pthread_mutex_lock(&mu);
  if (o_ok && n_ok) {
    char os[PATH_MAX], ns[PATH_MAX];
    ShadowPath(orel, os);
    ShadowPath(nrel, ns);
    if (Exists(os)) {
      MakeParents(ns);
      real_rename(os, ns);
      Log("rename %s -> %s", orel, nrel);
    } else {
      DropName(nrel);  // the durable target is replaced by a name that is not durable
    }
    char op[PATH_MAX], np[PATH_MAX];
    PendingPath(orel, op);
    PendingPath(nrel, np);
    if (Exists(op)) real_rename(op, np);
  } else if (o_ok) {
    DropName(orel);  // moved out of BACKING
  } else {
    DropName(nrel);  // replaced by a file from elsewhere, not durable here
  }
  pthread_mutex_unlock(&mu);
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int fsync(int fd) {
  pthread_once(&once, Init);
  return DoSync(fd, real_fsync, "fsync");
}

__attribute__((visibility("default"))) int fdatasync(int fd) {
  pthread_once(&once, Init);
  return DoSync(fd, real_fdatasync, "fdatasync");
}

__attribute__((visibility("default"))) int syncfs(int fd) {
  if (On()) Warn("syncfs is not modelled (nothing made durable in the shadow)");
  return real_syncfs(fd);
}

__attribute__((visibility("default"))) void sync(void) {
  if (On()) Warn("sync is not modelled (nothing made durable in the shadow)");
  real_sync();
}

__attribute__((visibility("default"))) int unlink(const char* path) {
  pthread_once(&once, Init);
  int rc = real_unlink(path);
  if (rc == 0 && enabled) {
    int e = errno;
    AfterUnlink(AT_FDCWD, path);
    errno = e;
  }
  return rc;
}

__attribute__((visibility("default"))) int unlinkat(int dirfd, const char* path, int flags) {
  pthread_once(&once, Init);
  int rc = real_unlinkat(dirfd, path, flags);
  if (rc == 0 && enabled && !(flags & AT_REMOVEDIR)) {
    int e = errno;
    AfterUnlink(dirfd, path);
    errno = e;
  }
  return rc;
}

__attribute__((visibility("default"))) int rename(const char* oldpath, const char* newpath) {
  pthread_once(&once, Init);
  int rc = real_rename(oldpath, newpath);
  if (rc == 0 && enabled) {
    int e = errno;
    AfterRename(AT_FDCWD, oldpath, AT_FDCWD, newpath);
    errno = e;
  }
  return rc;
}

__attribute__((visibility("default"))) int renameat(int olddirfd, const char* oldpath, int newdirfd,
                                                    const char* newpath) {
  pthread_once(&once, Init);
  int rc = real_renameat(olddirfd, oldpath, newdirfd, newpath);
  if (rc == 0 && enabled) {
    int e = errno;
    AfterRename(olddirfd, oldpath, newdirfd, newpath);
    errno = e;
  }
  return rc;
}

__attribute__((visibility("default"))) int renameat2(int olddirfd, const char* oldpath, int newdirfd,
                                                     const char* newpath, unsigned flags) {
  pthread_once(&once, Init);
  int rc = real_renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
  if (rc == 0 && enabled) {
    int e = errno;
    AfterRename(olddirfd, oldpath, newdirfd, newpath);  // RENAME_EXCHANGE is not used by chainswapfs
    errno = e;
  }
  return rc;
}

}  // extern "C"
