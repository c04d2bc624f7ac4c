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
// - File data is durable only as of the file's last fsync/fdatasync that
//   *returned 0*, and then as of the moment that call *started*: when the
//   call starts, the file's full current content (read through the
//   descriptor, holes kept) is copied aside under one lock; only once the
//   real call has returned 0 does that copy replace the file's copy in the
//   shadow (atomically: rename). So exactly the bytes written before the
//   sync was called, in program order, are covered, and only once it
//   returned: a power cut while an fsync is still running keeps nothing of
//   it, and writes racing with the call are not covered (the pessimistic
//   side). Two syncs of one file that overlap: the one that started later
//   wins, whichever returns first (an older copy never replaces a newer
//   one). Everything written after the last covered point is lost: data,
//   size changes (ftruncate, O_TRUNC), punched holes.
// - A sync that fails (-1) makes nothing durable. As Linux does after a
//   failed writeback (the dirty pages are marked clean and their contents
//   never reach the disk unless rewritten), a later sync of that file that
//   returns 0 makes durable only the 4 KiB pages that changed since the
//   failed attempt (compared with the content as of the failed attempt,
//   kept in SHADOW/.failed; a page rewritten with the same bytes counts as
//   unchanged, the pessimistic side); the other pages keep what the shadow
//   had. Overlapping syncs of a file that has failed before are resolved in
//   the order they return.
// - Names: a directory fsync that returns 0 makes durable the entries the
//   directory had when it was called (those still there when it returns);
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
//   name (the pessimistic choice). A file sync that returns after its file
//   was unlinked makes nothing durable; after a rename, it applies to the
//   new name.
// - sync_file_range does not make anything durable (no metadata, no disk
//   cache flush): not modelled, passed through. sync/syncfs and O_SYNC/O_DSYNC
//   opens are not used by chainswapfs and not modelled (a warning is printed
//   once if sync/syncfs is called).
//
// Fault and timing injection, for regular files under BACKING/journal/ only
// (the journal segments of chainswapfs):
//   CHAINSWAP_SHADOW_SYNC_DELAY_US=N  every fsync/fdatasync sleeps N µs
//       after its content is copied aside and before the real call, so a
//       second sync overlaps it (and a power cut can land inside it).
//   CHAINSWAP_SHADOW_FAIL_FILE=PATH   while PATH exists, fsync/fdatasync
//       return -1 with errno EIO without calling the real function, and the
//       shadow is not updated (the failed-sync model above applies).
//
// Thread safety: one mutex around every shadow update (the real call and the
// delay run outside it). The shim is built without sanitizer instrumentation
// (see tests/CMakeLists.txt) and only calls libc, so it can be preloaded into
// ASan/TSan builds of the daemon.
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
#include <time.h>
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
long sync_delay_us = 0;    // CHAINSWAP_SHADOW_SYNC_DELAY_US
char fail_file[PATH_MAX];  // CHAINSWAP_SHADOW_FAIL_FILE ("" = none)

// A file sync between its start (content copied aside) and its end; on the
// stack of the syncing thread, linked under mu.
struct InFlight {
  dev_t dev;
  ino_t ino;
  unsigned long long seq;  // start order
  bool superseded;         // a sync of the same file that started later has returned 0
  InFlight* next;
};
InFlight* inflight = nullptr;
unsigned long long sync_seq = 0;

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
  if (const char* d = getenv("CHAINSWAP_SHADOW_SYNC_DELAY_US"); d && *d) sync_delay_us = atol(d);
  fail_file[0] = '\0';
  if (const char* f = getenv("CHAINSWAP_SHADOW_FAIL_FILE"); f && *f) snprintf(fail_file, sizeof fail_file, "%s", f);
  enabled = true;
  Log("watching %s, shadow %s, names %s, journal sync delay %ld us, fail file %s", backing, shadow,
      strict_names ? "strict" : "linux", sync_delay_us, fail_file[0] ? fail_file : "(none)");
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

// SHADOW/<dir>/<rel with '/' as '%'>.
void FlatPath(const char* dir, const char* rel, char* out) {
  char flat[PATH_MAX];
  snprintf(flat, sizeof flat, "%s", rel);
  for (char* c = flat; *c; ++c)
    if (*c == '/') *c = '%';
  snprintf(out, PATH_MAX, "%s/%s/%s", shadow, dir, flat);
}
// SHADOW/.pending/<flat rel>: synced data of a not yet named file.
void PendingPath(const char* rel, char* out) { FlatPath(".pending", rel, out); }
// SHADOW/.failed/<flat rel>: the file's content as of its last sync attempt,
// kept once a sync of it failed (see the model above).
void FailedPath(const char* rel, char* out) { FlatPath(".failed", rel, out); }

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

bool CopyPath(const char* src, const char* dst) {
  int fd = open(src, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = CopyFd(fd, dst);
  close(fd);
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

void TmpPath(char* out) {
  snprintf(out, PATH_MAX, "%s/.tmp-%d-%llu", shadow, static_cast<int>(getpid()), ++tmp_seq);
}

// Under mu, at the start of a sync of the regular file `fd`: its content,
// copied into a new temp file `tmp` in the shadow.
bool Snapshot(int fd, char* tmp) {
  TmpPath(tmp);
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  int src = open(link, O_RDONLY | O_CLOEXEC);  // independent of fd's flags and offset
  bool ok = src >= 0 && CopyFd(src, tmp);
  if (src >= 0) close(src);
  if (!ok) {
    Warn("cannot copy a file being synced; the simulation is incomplete");
    real_unlink(tmp);
  }
  return ok;
}

// Reads 4 KiB page `page` of `fd` into `out`; zeros past its end.
void ReadPage(int fd, off_t page, char* out) {
  memset(out, 0, 4096);
  if (fd < 0) return;
  size_t got = 0;
  while (got < 4096) {
    ssize_t r = pread(fd, out + got, 4096 - got, page * 4096 + static_cast<off_t>(got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
}

// Under mu. A sync of a file that failed before returned 0: in `snap` (its
// content at this sync's start), every page equal to the same page of
// `image` (the content at the failed attempt: not rewritten since, so its
// data was dropped by the failed writeback) gets the durable page back
// (`durable`, the shadow's copy; zeros where it has none).
bool MergeAfterFailure(const char* snap, const char* image, const char* durable) {
  int s = open(snap, O_RDWR | O_CLOEXEC);
  if (s < 0) return false;
  int im = open(image, O_RDONLY | O_CLOEXEC);
  int d = open(durable, O_RDONLY | O_CLOEXEC);
  struct stat st;
  bool ok = fstat(s, &st) == 0;
  char* a = static_cast<char*>(malloc(3 * 4096));
  ok = ok && a;
  unsigned long long kept = 0;
  for (off_t p = 0; ok && p * 4096 < st.st_size; ++p) {
    char *cur = a, *old = a + 4096, *dur = a + 8192;
    ReadPage(s, p, cur);
    ReadPage(im, p, old);
    if (memcmp(cur, old, 4096) != 0) continue;  // rewritten since the failure: dirty, written now
    ReadPage(d, p, dur);
    if (memcmp(cur, dur, 4096) == 0) continue;
    size_t len = static_cast<size_t>(st.st_size - p * 4096 < 4096 ? st.st_size - p * 4096 : 4096);
    if (pwrite(s, dur, len, p * 4096) != static_cast<ssize_t>(len)) ok = false;
    ++kept;
  }
  free(a);
  if (d >= 0) close(d);
  if (im >= 0) close(im);
  close(s);
  Log("after a failed sync: %llu page(s) dropped by it stay as they were durable", kept);
  return ok;
}

// Under mu. A sync of the regular file `fd` that started with `node` and
// copied its content into `tmp` returned 0.
void CommitFile(int fd, InFlight* node, const char* tmp) {
  if (node->superseded) {  // a sync that started later has already returned 0
    real_unlink(tmp);
    Log("sync returned after a later one of the same file: nothing more durable");
    return;
  }
  for (InFlight* n = inflight; n; n = n->next)
    if (n->dev == node->dev && n->ino == node->ino && n->seq < node->seq) n->superseded = true;
  char rel[PATH_MAX];
  if (!RelOfFd(fd, rel)) {  // unlinked (or moved out of BACKING) meanwhile
    real_unlink(tmp);
    Log("sync returned after its file was unlinked: nothing durable");
    return;
  }
  char target[PATH_MAX], pending[PATH_MAX], failed[PATH_MAX];
  ShadowPath(rel, target);
  PendingPath(rel, pending);
  FailedPath(rel, failed);
  const bool named = !strict_names || Exists(target);
  if (Exists(failed)) {
    // The new "last attempt" image is this sync's content, before the merge.
    char img[PATH_MAX];
    TmpPath(img);
    const char* durable = Exists(target) ? target : pending;
    if (!CopyPath(tmp, img) || !MergeAfterFailure(tmp, failed, durable) || real_rename(img, failed) != 0) {
      Warn("cannot model a sync after a failed one; the simulation is incomplete");
      real_unlink(img);
    }
  }
  if (!named) snprintf(target, sizeof target, "%s", pending);
  MakeParents(target);
  if (real_rename(tmp, target) != 0) {
    Warn("cannot move a synced file into the shadow; the simulation is incomplete");
    real_unlink(tmp);
  } else {
    Log("sync %s -> %s", rel, named ? "shadow" : ".pending");
  }
  if (named && strict_names) real_unlink(pending);
}

// Under mu. A sync of the regular file `fd` that copied its content into
// `tmp` failed: nothing durable; that content is what the failed writeback
// dropped (see the model above).
void FailedFile(int fd, const char* tmp) {
  char rel[PATH_MAX], failed[PATH_MAX];
  if (!RelOfFd(fd, rel)) {
    real_unlink(tmp);
    return;
  }
  FailedPath(rel, failed);
  MakeParents(failed);
  if (real_rename(tmp, failed) != 0) {
    Warn("cannot keep the content of a failed sync; the simulation is incomplete");
    real_unlink(tmp);
  }
}

// Under mu: the names in directory BACKING/rel (rel "" = BACKING), as
// "a\0b\0...\0" (malloc'ed; nullptr when it cannot be read).
char* ListNames(const char* rel) {
  char live[PATH_MAX];
  if (rel[0]) snprintf(live, sizeof live, "%s/%s", backing, rel);
  else snprintf(live, sizeof live, "%s", backing);
  DIR* d = opendir(live);
  if (!d) return nullptr;
  size_t cap = 4096, len = 0;
  char* out = static_cast<char*>(malloc(cap));
  while (out) {
    struct dirent* e = readdir(d);
    if (!e) break;
    size_t n = strlen(e->d_name) + 1;
    if (len + n + 1 > cap) {
      char* bigger = static_cast<char*>(realloc(out, cap * 2 + n));
      if (!bigger) {
        free(out);
        out = nullptr;
        break;
      }
      out = bigger;
      cap = cap * 2 + n;
    }
    memcpy(out + len, e->d_name, n);
    len += n;
  }
  if (out) out[len] = '\0';
  closedir(d);
  return out;
}

bool Listed(const char* names, const char* name) {
  for (const char* p = names; *p; p += strlen(p) + 1)
    if (strcmp(p, name) == 0) return true;
  return false;
}

// Under mu. A sync of the directory BACKING/rel (rel "" = BACKING) that
// started when it held `names` returned 0: those of its entries still there
// are durable names now.
void SyncDir(const char* rel, const char* names) {
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
    if (!Listed(names, e->d_name)) continue;  // created after the sync started
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
    if (e->d_name[0] == '.') continue;  // ., .., .pending, .failed, .tmp-*
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

bool InJournal(const char* rel) { return strncmp(rel, "journal/", 8) == 0; }

int DoSync(int fd, FdFn real, const char* what) {
  if (!On()) return real(fd);
  struct stat st;
  if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) return real(fd);
  const bool is_dir = S_ISDIR(st.st_mode);
  char rel[PATH_MAX], tmp[PATH_MAX];
  bool ours = false, snapped = false;
  char* names = nullptr;  // a directory's entries at the start
  InFlight node = {st.st_dev, st.st_ino, 0, false, nullptr};
  // The path is resolved and the content copied under the lock, so that an
  // unlink or rename racing with this sync is applied to the shadow before
  // or after that step as a whole.
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
    node.seq = ++sync_seq;
    if (is_dir) {
      names = ListNames(rel);
    } else {
      snapped = Snapshot(fd, tmp);
      node.next = inflight;
      inflight = &node;
    }
  }
  pthread_mutex_unlock(&mu);
  if (!ours) return real(fd);

  const bool journal = !is_dir && InJournal(rel);
  if (journal && sync_delay_us > 0) {
    struct timespec ts = {sync_delay_us / 1000000, (sync_delay_us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
  int rc, err;
  if (journal && fail_file[0] && Exists(fail_file)) {
    rc = -1;
    err = EIO;
    Log("%s %s: failure injected (EIO)", what, rel);
  } else {
    rc = real(fd);
    err = errno;
    if (rc != 0) {
      Warn("a real fsync/fdatasync failed (not injected): nothing made durable");
      Log("%s %s failed: %s", what, rel, strerror(err));
    }
  }

  pthread_mutex_lock(&mu);
  if (!is_dir) {
    for (InFlight** p = &inflight; *p; p = &(*p)->next)
      if (*p == &node) {
        *p = node.next;
        break;
      }
    if (snapped) {
      if (rc == 0) CommitFile(fd, &node, tmp);
      else FailedFile(fd, tmp);
    }
  } else if (rc == 0) {
    if (names) SyncDir(rel, names);
    else Warn("cannot list a directory being synced; the simulation is incomplete");
  }
  pthread_mutex_unlock(&mu);
  free(names);
  errno = err;
  return rc;
}

// Under mu: BACKING/rel no longer exists.
void DropName(const char* rel) {
  char p[PATH_MAX];
  ShadowPath(rel, p);
  if (real_unlink(p) == 0) Log("unlink %s", rel);
  PendingPath(rel, p);
  real_unlink(p);
  FailedPath(rel, p);
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
    FailedPath(orel, op);
    FailedPath(nrel, np);
    if (Exists(op)) real_rename(op, np);
    else real_unlink(np);
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
