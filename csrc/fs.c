/*
** fs: the system calls Lua lacks, for the mail store, the FTP server and
** the CLI.  `require("parley.core").fs`.  Not a codec: every function here
** does I/O, none keeps global state (the fsync workers' pool is an upvalue
** of the calls that use it, joined by its __gc).
**
** Errors: a failed system call returns `nil, message, errno` where message
** is strerror(errno) in lower case ("no space left on device", "file
** exists", "no such file or directory").  Wrong argument types raise.
**
** Files:
** fs.open(path [, flags [, mode]]) -> file | nil, err, errno
**   flags: a string of letters, default "wcx": r read-only, w write-only,
**   + read-write, c O_CREAT, x O_EXCL, t O_TRUNC, a O_APPEND.  mode
**   (default 0600) applies when the file is created.  Always O_CLOEXEC.
** file:write(s, ...) -> true | nil, err, errno   strings or numbers.
**   Small writes collect in a 64 KiB buffer (allocated on first use);
**   larger ones go straight to write(2).  A failed write loses the
**   unwritten data: the file is then only good for close and unlink.
** file:flush() -> true | nil, err, errno   writes the buffer out.
** file:fsync() -> true | nil, err, errno   flush, then fsync(2).
** file:size() -> bytes written through this handle (buffer included).
** file:lfs() -> number of LF bytes not preceded by CR written through
**   this handle (so size + lfs is the size with CRLF line ends).
** file:fd() -> the descriptor (flush first if you write to it directly).
** file:lock([how [, nonblock]]) -> true | nil, err, errno   flock(2):
**   how = "ex" (default), "sh" or "un"; nonblock: fail with
**   "resource temporarily unavailable" instead of waiting.
** file:read([n]) -> string (n bytes at most, default 65536; "" at end)
**   | nil, err, errno   (for handles opened with "r" or "+").
** file:close() -> true | nil, err, errno   flushes, closes; idempotent.
**   __gc and __close close too (without reporting errors).
** fs.read_head(path [, chunk]) -> string | nil, err, errno   a mail
**   message's bytes up to and including its first blank line ("\n\n" or
**   "\n\r\n"; the whole file when it has none), read `chunk` (4096)
**   bytes at a time; O_NOATIME when the file is ours.
**
** fs.fsync(f) -> true | nil, err, errno   f: a Lua file (flushed first),
**   a parley.fs.file or an integer descriptor.
** fs.fsync_dir(path) -> true | nil, err, errno
** fs.fsync_async(f), fs.fsync_dir_async(path): the same calls with the
**   same results, but inside a task fsync(2) runs on a worker thread
**   (fsync_pool.c: FSYNC_WORKERS, at most FSYNC_MAX_JOBS in flight, more
**   wait their turn) and only the calling task waits, as for any I/O.
**   Outside a task (or where it cannot yield) they sync right there.
**   The worker syncs its own descriptor (a dup, or the directory it was
**   given open), so f may be closed meanwhile; a task cancelled while it
**   waits gets nil, "cancelled" and the worker finishes and closes alone.
** fs.fsync_stats() -> {workers=, jobs= (in flight), max_jobs=, completed=}
**
** Names:
** fs.rename(old, new [, noreplace]) -> true | nil, err, errno
**   noreplace: renameat2(RENAME_NOREPLACE), fails with "file exists".
** fs.link(old, new), fs.unlink(path), fs.rmdir(path) -> true | nil, ...
** fs.mkdir(path [, mode = 0700]) -> true | nil, err, errno
** fs.listdir(path) -> array of names (no "." and "..", unsorted)
**   | nil, err, errno
** fs.maildir_list(dir, isnew, out, n) -> n' | nil, err, errno
**   Lists a Maildir's new/ or cur/ (dir is its path) for the store's
**   scan: appends one table per file not starting with "." to the array
**   out after index n, returns the new count.  Each table: name (file
**   name without ":2,<flags>"), file, path (dir .. "/" .. file), flags,
**   new (= isnew), and when the name tells them: size (",S="), vsize
**   (",W="), mtime (leading seconds) and key, an integer that sorts in
**   delivery order: ((sec * 10^6 + usec) << 10 | counter & 1023) for
**   "<sec>.M<usec>P<pid>Q<counter>." names, (sec * 10^6) << 10 else.
** fs.maildir_listing(dir) -> recs, byname, known_new, known_cur, fresh
**   | nil, err, errno
**   A Maildir's first listing for the IMAP index: new/ then cur/ (a
**   missing one is empty), records as maildir_list makes them, in tables
**   made at their final sizes: recs (a name in both directories once, the
**   new/ one), byname (name -> record), known_new and known_cur (file ->
**   record; known_cur with room for every file to move there) and fresh
**   (the records of recs from new/).
** fs.maildir_sort(recs) -> a new array of recs' tables in delivery
**   order: by their integer field key, equal keys in array order (raises
**   if one has none).  For the first numbering of a large Maildir, where
**   table.sort would call back into Lua for every comparison.
** fs.maildir_claim(dir, recs, known_new, known_cur) -> count, uids
**   Moves the records' files from <dir>/new/ to <dir>/cur/ as
**   "<name>:2,<flags>" (renameat on the two directories: no path walk per
**   file), and for each one moved sets its file, path and new (false) in
**   place, drops known_new[old file], sets known_cur[new file] = record
**   and uids[record.uid] = true (uids: a new table, sized for recs).  A
**   file that is gone is skipped, and so is one whose new name is taken
**   in cur/ (it stays in new/: nothing is replaced).  Returns how many moved and uids, or
**   nil, err, errno if a directory cannot be opened.
** fs.maildir_uidlist(header, recs) -> string   the text of a uidlist
**   (dovecot-uidlist version 3): header, then "<uid> :<name>\n" for each
**   record of the array recs (integer field uid, string field name), in
**   array order.  One buffer, no string per number.
** fs.stat(path) / fs.lstat(path) -> {size=, mtime=, atime=, ctime=,
**   mode= (permission bits), type= ("file", "directory", "link", "fifo",
**   "socket", "char", "block"), ino=, nlink=, uid=, gid=, dev=}
**   | nil, err, errno
** fs.realpath(path) -> absolute path with no symlinks | nil, err, errno
** fs.utime(path, atime, mtime) -> true | nil, err, errno  (seconds,
**   may be fractional)
** fs.statvfs(path) -> {avail=, free=, size=} (bytes) | nil, err, errno
**
** Process and time:
** fs.getpid() -> integer; fs.gethostname() -> string
** fs.alive(pid) -> boolean   kill(pid, 0) succeeds or fails with EPERM
** fs.time() -> seconds, microseconds   (gettimeofday: wall clock)
**
** Passwords:
** fs.crypt(password, setting) -> hash | nil, err   crypt_r(3) from
**   libxcrypt ($y$, $6$, $5$, $2b$, $1$ ...); an unsupported or
**   malformed setting gives nil, "invalid salt".
** fs.gensalt(prefix [, rounds]) -> setting | nil, err   crypt_gensalt_rn
**   with random bytes from the system ("$y$", "$6$", "$2b$" ...).
** fs.equal(a, b) -> boolean   compares in time that depends only on the
**   lengths, never on where the strings differ.
*/
#include <ctype.h>
#include <crypt.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#include "driver.h"
#include "fsync_pool.h"

#define FS_FILE "parley.fs.file"
#define FS_BUFSIZE 65536

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

/* ---------------------------------------------------------------- errors */

static int push_errno(lua_State *L, int e) {
  char msg[128];
  const char *s = strerror(e);
  size_t i;
  for (i = 0; s[i] && i < sizeof msg - 1; i++) {
    msg[i] = (char)tolower((unsigned char)s[i]);
  }
  msg[i] = '\0';
  lua_pushnil(L);
  lua_pushstring(L, msg);
  lua_pushinteger(L, e);
  return 3;
}

static int push_result(lua_State *L, int rc) {
  if (rc != 0) return push_errno(L, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* write all of [p, p+n) to fd, retrying on EINTR and short writes */
static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* ----------------------------------------------------------------- files */

typedef struct {
  int fd;
  int last_cr;            /* last byte written was CR */
  char *buf;              /* FS_BUFSIZE bytes, lazily allocated */
  size_t used;
  lua_Integer size;       /* bytes accepted by write */
  lua_Integer lfs;        /* LF bytes not preceded by CR */
} fs_file;

static fs_file *checkfile(lua_State *L, int i) {
  return (fs_file *)luaL_checkudata(L, i, FS_FILE);
}

static fs_file *checkopen(lua_State *L, int i) {
  fs_file *f = checkfile(L, i);
  if (f->fd < 0) luaL_error(L, "attempt to use a closed file");
  return f;
}

static int file_flushbuf(fs_file *f) {
  if (f->used == 0) return 0;
  if (write_all(f->fd, f->buf, f->used) != 0) {
    f->used = 0;           /* what failed is lost; do not retry it */
    return -1;
  }
  f->used = 0;
  return 0;
}

static void file_release(fs_file *f) {
  if (f->fd >= 0) {
    close(f->fd);
    f->fd = -1;
  }
  free(f->buf);
  f->buf = NULL;
  f->used = 0;
}

static int l_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const char *how = luaL_optstring(L, 2, "wcx");
  lua_Integer mode = luaL_optinteger(L, 3, 0600);
  int flags = O_CLOEXEC, acc = O_WRONLY, fd;
  fs_file *f;
  const char *p;
  for (p = how; *p; p++) {
    switch (*p) {
      case 'r': acc = O_RDONLY; break;
      case 'w': acc = O_WRONLY; break;
      case '+': acc = O_RDWR; break;
      case 'c': flags |= O_CREAT; break;
      case 'x': flags |= O_EXCL; break;
      case 't': flags |= O_TRUNC; break;
      case 'a': flags |= O_APPEND; break;
      default: return luaL_argerror(L, 2, "flags are letters of \"rw+cxta\"");
    }
  }
  if (mode < 0 || mode > 07777) return luaL_argerror(L, 3, "bad mode");
  f = (fs_file *)lua_newuserdatauv(L, sizeof *f, 0);
  f->fd = -1;
  f->buf = NULL;
  f->used = 0;
  f->size = f->lfs = 0;
  f->last_cr = 0;
  luaL_setmetatable(L, FS_FILE);
  do {
    fd = open(path, flags | acc, (mode_t)mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return push_errno(L, errno);
  f->fd = fd;
  return 1;
}

/* count LF bytes not preceded by CR in [p, p+n), given the byte before */
static lua_Integer bare_lfs(const char *p, size_t n, int last_cr) {
  lua_Integer c = 0;
  const char *end = p + n, *q = p;
  while (q < end && (q = memchr(q, '\n', (size_t)(end - q))) != NULL) {
    if (q == p ? !last_cr : q[-1] != '\r') c++;
    q++;
  }
  return c;
}

static int l_file_write(lua_State *L) {
  fs_file *f = checkopen(L, 1);
  int i, top = lua_gettop(L);
  for (i = 2; i <= top; i++) {
    size_t n;
    const char *s = luaL_checklstring(L, i, &n);
    if (n == 0) continue;
    f->lfs += bare_lfs(s, n, f->last_cr);
    f->last_cr = s[n - 1] == '\r';
    f->size += (lua_Integer)n;
    if (f->used + n <= FS_BUFSIZE && n < FS_BUFSIZE / 2) {
      if (f->buf == NULL) {
        f->buf = (char *)malloc(FS_BUFSIZE);
        if (f->buf == NULL) return push_errno(L, ENOMEM);
      }
      memcpy(f->buf + f->used, s, n);
      f->used += n;
      continue;
    }
    if (file_flushbuf(f) != 0) return push_errno(L, errno);
    if (n < FS_BUFSIZE / 2) {
      memcpy(f->buf + f->used, s, n);   /* buf exists: used was > 0 */
      f->used += n;
    } else if (write_all(f->fd, s, n) != 0) {
      return push_errno(L, errno);
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_file_flush(lua_State *L) {
  fs_file *f = checkopen(L, 1);
  return push_result(L, file_flushbuf(f));
}

static int l_file_fsync(lua_State *L) {
  fs_file *f = checkopen(L, 1);
  if (file_flushbuf(f) != 0) return push_errno(L, errno);
  return push_result(L, fsync(f->fd));
}

static int l_file_size(lua_State *L) {
  lua_pushinteger(L, checkfile(L, 1)->size);
  return 1;
}

static int l_file_lfs(lua_State *L) {
  lua_pushinteger(L, checkfile(L, 1)->lfs);
  return 1;
}

static int l_file_fd(lua_State *L) {
  lua_pushinteger(L, checkopen(L, 1)->fd);
  return 1;
}

static int l_file_lock(lua_State *L) {
  static const char *const hows[] = {"ex", "sh", "un", NULL};
  static const int ops[] = {LOCK_EX, LOCK_SH, LOCK_UN};
  fs_file *f = checkopen(L, 1);
  int op = ops[luaL_checkoption(L, 2, "ex", hows)];
  int rc;
  if (lua_toboolean(L, 3)) op |= LOCK_NB;
  do {
    rc = flock(f->fd, op);
  } while (rc != 0 && errno == EINTR);
  return push_result(L, rc);
}

#define READ_ON_STACK 16384

static int l_file_read(lua_State *L) {
  fs_file *f = checkopen(L, 1);
  lua_Integer n = luaL_optinteger(L, 2, 65536);
  luaL_Buffer b;
  ssize_t r;
  char *p;
  luaL_argcheck(L, n >= 0 && n <= (1 << 30), 2, "bad count");
  if (file_flushbuf(f) != 0) return push_errno(L, errno);
  if (n <= READ_ON_STACK) {
    /* small reads (a mail message read whole) need no buffer allocation */
    char small[READ_ON_STACK];
    do {
      r = read(f->fd, small, (size_t)n);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return push_errno(L, errno);
    lua_pushlstring(L, small, (size_t)r);
    return 1;
  }
  p = luaL_buffinitsize(L, &b, (size_t)n);
  do {
    r = read(f->fd, p, (size_t)n);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return push_errno(L, errno);
  luaL_pushresultsize(&b, (size_t)r);
  return 1;
}

/* the end (last byte) of the first blank line in p[from..n): a "\n" then
** "\n" or "\r\n", or at the very start a message with no header fields
** (RFC 5322 §3.5: its first line is the blank one); NULL when there is
** none yet */
static const char *blank_line(const char *p, size_t n, size_t from) {
  const char *end = p + n, *q = p + from;
  if (from == 0 && n > 0 && p[0] == '\n') return p;
  if (from == 0 && n > 1 && p[0] == '\r' && p[1] == '\n') return p + 1;
  while (q < end && (q = memchr(q, '\n', (size_t)(end - q))) != NULL) {
    if (q + 1 < end && q[1] == '\n') return q + 1;
    if (q + 2 < end && q[1] == '\r' && q[2] == '\n') return q + 2;
    q++;
  }
  return NULL;
}

/* read_head(path [, chunk]): a message's header block, its bytes up to and
** including the first blank line (the whole file when it has none), read
** `chunk` bytes at a time (4096): one open and, for a header under a
** chunk, one read and one string; the file's atime is left alone when we
** own it. nil, err, errno when it cannot open. */
static int l_read_head(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Integer chunk = luaL_optinteger(L, 2, READ_ON_STACK);
  char small[READ_ON_STACK];
  const char *e;
  luaL_Buffer b;
  ssize_t r;
  size_t from;
  int fd;
  luaL_argcheck(L, chunk > 0 && chunk <= (1 << 30), 2, "bad chunk size");
  /* no atime update: the first read of a newly delivered message would
  ** otherwise dirty its inode (a journal write per message); refused
  ** (EPERM) unless we own the file, then read as usual */
  do {
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOATIME);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0 && errno == EPERM) {
    do {
      fd = open(path, O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
  }
  if (fd < 0) return push_errno(L, errno);
  do {
    r = read(fd, small, chunk < READ_ON_STACK ? (size_t)chunk : READ_ON_STACK);
  } while (r < 0 && errno == EINTR);
  if (r < 0) goto fail;
  e = blank_line(small, (size_t)r, 0);
  if (e || r == 0) {
    close(fd);
    lua_pushlstring(L, small, e ? (size_t)(e - small) + 1 : 0);
    return 1;
  }
  /* a header longer than one chunk: read on into a growing buffer */
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, small, (size_t)r);
  for (;;) {
    from = luaL_bufflen(&b) >= 2 ? luaL_bufflen(&b) - 2 : 0;
    do {
      r = read(fd, luaL_prepbuffsize(&b, (size_t)chunk), (size_t)chunk);
    } while (r < 0 && errno == EINTR);
    if (r < 0) goto fail;
    if (r == 0) break;
    luaL_addsize(&b, (size_t)r);
    e = blank_line(luaL_buffaddr(&b), luaL_bufflen(&b), from);
    if (e) {
      luaL_buffsub(&b, luaL_bufflen(&b) - (size_t)(e - luaL_buffaddr(&b)) - 1);
      break;
    }
  }
  close(fd);
  luaL_pushresult(&b);
  return 1;
fail:
  {
    int err = errno;
    close(fd);
    return push_errno(L, err);
  }
}

static int l_file_close(lua_State *L) {
  fs_file *f = checkfile(L, 1);
  int rc = 0, e = 0;
  if (f->fd < 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (file_flushbuf(f) != 0) {
    rc = -1;
    e = errno;
  }
  if (close(f->fd) != 0 && rc == 0) {
    rc = -1;
    e = errno;
  }
  f->fd = -1;
  file_release(f);
  if (rc != 0) return push_errno(L, e);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_file_gc(lua_State *L) {
  file_release(checkfile(L, 1));
  return 0;
}

static int l_file_tostring(lua_State *L) {
  fs_file *f = checkfile(L, 1);
  char detail[32];
  if (f->fd < 0) return parley_tostring(L, "(closed)");
  snprintf(detail, sizeof detail, "(fd %d)", f->fd);
  return parley_tostring(L, detail);
}

/* ------------------------------------------------------------- syncing */

/*
** The descriptor to sync for fs.fsync's argument (a Lua file, a
** parley.fs.file or an integer), its buffered output written first:
** the descriptor, or -1 with errno set.
*/
static int sync_target(lua_State *L, int i) {
  if (lua_isinteger(L, i)) return (int)lua_tointeger(L, i);
  if (luaL_testudata(L, i, FS_FILE)) {
    fs_file *f = checkopen(L, i);
    return file_flushbuf(f) != 0 ? -1 : f->fd;
  } else {
    luaL_Stream *s = (luaL_Stream *)luaL_testudata(L, i, LUA_FILEHANDLE);
    if (s == NULL) return luaL_typeerror(L, i, "file or descriptor");
    if (s->closef == NULL) return luaL_error(L, "attempt to use a closed file");
    return fflush(s->f) != 0 ? -1 : fileno(s->f);
  }
}

static int l_fsync(lua_State *L) {
  int fd = sync_target(L, 1);
  if (fd < 0 && !lua_isinteger(L, 1)) return push_errno(L, errno);
  return push_result(L, fsync(fd));
}

static int open_dir(const char *path) {
  return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* fsync(fd), then close it: true | nil, err, errno */
static int sync_and_close(lua_State *L, int fd) {
  int rc = fsync(fd), e = errno;
  close(fd);
  if (rc != 0) return push_errno(L, e);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_fsync_dir(lua_State *L) {
  int fd = open_dir(luaL_checkstring(L, 1));
  if (fd < 0) return push_errno(L, errno);
  return sync_and_close(L, fd);
}

/* ----------------------------------------------------- fsync off the loop */

/*
** The pool behind fs.fsync_async and fs.fsync_dir_async: an upvalue of
** both, joined by its __gc.  A task that finds max_jobs in flight waits
** in `space`; a job that ends lets one in, and since a job whose task
** was cancelled ends on a worker that cannot wake anyone, the wait also
** looks again every FSYNC_SPACE_RECHECK seconds.
*/
#define FS_POOL "parley.fs.fsync_pool"
#define FSYNC_WORKERS 4           /* concurrent fsyncs share journal commits */
#define FSYNC_MAX_JOBS 256        /* in flight, each one holding 2 descriptors */
#define FSYNC_SPACE_RECHECK 0.01

typedef struct {
  fsync_pool *pool;
  waitq space;
} fs_async;

static void set_int(lua_State *L, const char *k, lua_Integer v);

static int async_k(lua_State *L, int status, lua_KContext ctx);

static int async_wait_job(lua_State *L, fsync_job *j) {
  int r = parley_wait(L, &j->p, P_READ, NULL, -1, 0, async_k);
  return async_k(L, LUA_OK, r);
}

/*
** Submits the descriptor on top of the stack (it belongs to us), or waits
** for room; the top slot then holds the job as a light userdata.
*/
static int async_submit(lua_State *L, fs_async *a) {
  int fd = (int)lua_tointeger(L, -1), rc, r;
  fsync_job *j;
  rc = fsync_pool_submit(a->pool, fd, &j);
  if (rc == EAGAIN) {
    r = parley_wait(L, NULL, P_READ, &a->space,
                    parley_deadline(FSYNC_SPACE_RECHECK), 0, async_k);
    return async_k(L, LUA_OK, r);
  }
  if (rc != 0) return sync_and_close(L, fd);   /* no thread: block, but sync */
  lua_pop(L, 1);
  lua_pushlightuserdata(L, j);
  return async_wait_job(L, j);
}

static int async_k(lua_State *L, int status, lua_KContext ctx) {
  fs_async *a = (fs_async *)lua_touserdata(L, lua_upvalueindex(1));
  int r = status == LUA_YIELD ? parley_waited(L)->result : (int)ctx, err;
  if (lua_islightuserdata(L, -1)) {
    fsync_job *j = (fsync_job *)lua_touserdata(L, -1);
    int done = fsync_pool_done(a->pool, j, &err);
    if (!done && r == WAKE_READY) return async_wait_job(L, j);
    fsync_pool_release(a->pool, j);
    parley_signal(&a->space, 0);
    if (!done) {
      lua_pushnil(L);
      lua_pushstring(L, parley_wake_message(r));
      return 2;
    }
    if (err != 0) return push_errno(L, err);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (r == WAKE_READY || r == WAKE_TIMEOUT) return async_submit(L, a);
  close((int)lua_tointeger(L, -1));            /* cancelled waiting for room */
  lua_pushnil(L);
  lua_pushstring(L, parley_wake_message(r));
  return 2;
}

/* fd is ours: sync it off the loop in a task, right here elsewhere */
static int async_run(lua_State *L, int fd) {
  fs_async *a = (fs_async *)lua_touserdata(L, lua_upvalueindex(1));
  if (!lua_isyieldable(L) || a->pool == NULL) return sync_and_close(L, fd);
  lua_pushinteger(L, fd);
  return async_submit(L, a);
}

static int l_fsync_async(lua_State *L) {
  int fd = sync_target(L, 1), dup;
  if (fd < 0 && !lua_isinteger(L, 1)) return push_errno(L, errno);
  if (!lua_isyieldable(L)) return push_result(L, fsync(fd));
  /* the job's own descriptor: closing f meanwhile cannot pull it away */
  dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return errno == EBADF ? push_errno(L, EBADF) : push_result(L, fsync(fd));
  return async_run(L, dup);
}

static int l_fsync_dir_async(lua_State *L) {
  int fd = open_dir(luaL_checkstring(L, 1));
  if (fd < 0) return push_errno(L, errno);
  return async_run(L, fd);
}

static int l_fsync_stats(lua_State *L) {
  fs_async *a = (fs_async *)lua_touserdata(L, lua_upvalueindex(1));
  fsync_stats st;
  memset(&st, 0, sizeof st);
  st.max_jobs = FSYNC_MAX_JOBS;
  if (a->pool) fsync_pool_stats(a->pool, &st);
  lua_createtable(L, 0, 4);
  set_int(L, "workers", st.workers);
  set_int(L, "jobs", st.jobs);
  set_int(L, "max_jobs", st.max_jobs);
  set_int(L, "completed", (lua_Integer)st.completed);
  return 1;
}

static int pool_tostring(lua_State *L) {
  return parley_tostring(L, NULL);
}

static int pool_gc(lua_State *L) {
  fs_async *a = (fs_async *)luaL_checkudata(L, 1, FS_POOL);
  parley_signal(&a->space, 1);     /* no waiter may point into us */
  if (a->pool) fsync_pool_free(a->pool);
  a->pool = NULL;
  return 0;
}

/* --------------------------------------------------------------- names */

static int l_rename(lua_State *L) {
  const char *a = luaL_checkstring(L, 1), *b = luaL_checkstring(L, 2);
  if (lua_toboolean(L, 3)) {
    return push_result(L, renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_NOREPLACE));
  }
  return push_result(L, rename(a, b));
}

static int l_link(lua_State *L) {
  const char *a = luaL_checkstring(L, 1), *b = luaL_checkstring(L, 2);
  return push_result(L, link(a, b));
}

static int l_unlink(lua_State *L) {
  return push_result(L, unlink(luaL_checkstring(L, 1)));
}

static int l_rmdir(lua_State *L) {
  return push_result(L, rmdir(luaL_checkstring(L, 1)));
}

static int l_mkdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Integer mode = luaL_optinteger(L, 2, 0700);
  luaL_argcheck(L, mode >= 0 && mode <= 07777, 2, "bad mode");
  return push_result(L, mkdir(path, (mode_t)mode));
}

static int l_listdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  struct dirent *de;
  lua_Integer n = 0;
  if (d == NULL) return push_errno(L, errno);
  lua_newtable(L);
  for (;;) {
    errno = 0;
    de = readdir(d);
    if (de == NULL) break;
    if (de->d_name[0] == '.' &&
        (de->d_name[1] == '\0' || (de->d_name[1] == '.' && de->d_name[2] == '\0')))
      continue;
    lua_pushstring(L, de->d_name);
    lua_rawseti(L, -2, ++n);
  }
  if (errno != 0) {
    int e = errno;
    closedir(d);
    return push_errno(L, e);
  }
  closedir(d);
  return 1;
}

/* digits at *p (at most 18): value, advancing *p; -1 if none */
static long long take_digits(const char **p, const char *end) {
  long long v = 0;
  int n = 0;
  while (*p < end && **p >= '0' && **p <= '9' && n < 18) {
    v = v * 10 + (**p - '0');
    (*p)++;
    n++;
  }
  return n ? v : -1;
}

/* the number after the field tag (",S=" or ",W=") in [s, end), or -1 */
static long long field_value(const char *s, const char *end, char tag) {
  const char *p = s;
  while (p + 3 <= end && (p = memchr(p, ',', (size_t)(end - p))) != NULL) {
    if (p + 3 <= end && p[1] == tag && p[2] == '=') {
      const char *q = p + 3;
      return take_digits(&q, end);
    }
    p++;
  }
  return -1;
}

/* the record fields, pushed once on the stack (K_ offsets from the first)
** and set with lua_rawset: no interning of the names for every record */
enum { K_NAME, K_FILE, K_PATH, K_FLAGS, K_NEW, K_SIZE, K_VSIZE, K_MTIME, K_KEY, K_COUNT };
static const char *const record_keys[K_COUNT] = {
  "name", "file", "path", "flags", "new", "size", "vsize", "mtime", "key"
};

static int push_keys(lua_State *L) {
  int k, first = lua_gettop(L) + 1;
  for (k = 0; k < K_COUNT; k++) lua_pushstring(L, record_keys[k]);
  return first;
}

/* key k, then its value, then SET: the record is just below the two */
#define KEY(k) lua_pushvalue(L, keys + (k))
#define SET() lua_rawset(L, -3)

/* pushes the record of file f (path holds "<dir>/" in its first plen
** bytes, and room for a name); keys: the stack index of push_keys' first */
static void push_record(lua_State *L, int keys, char *path, size_t plen,
                        const char *f, int isnew) {
  size_t flen = strlen(f);
  const char *end = f + flen, *base_end = end, *p, *c;
  long long sec, usec = 0, q = 0, size, vsize;
  for (c = f; (c = memchr(c, ':', (size_t)(end - c))) != NULL; c++) {
    if (c + 3 <= end && c[1] == '2' && c[2] == ',') {
      base_end = c;
      break;
    }
  }
  lua_createtable(L, 0, K_COUNT);
  KEY(K_NAME);
  lua_pushlstring(L, f, (size_t)(base_end - f));
  SET();
  KEY(K_FILE);
  if (base_end == end) {                    /* no flags: file == name */
    KEY(K_NAME);
    lua_rawget(L, -3);
  } else {
    lua_pushlstring(L, f, flen);
  }
  SET();
  KEY(K_PATH);
  memcpy(path + plen, f, flen);
  lua_pushlstring(L, path, plen + flen);
  SET();
  KEY(K_FLAGS);
  if (base_end < end) {
    lua_pushlstring(L, base_end + 3, (size_t)(end - base_end - 3));
  } else {
    lua_pushliteral(L, "");
  }
  SET();
  KEY(K_NEW);
  lua_pushboolean(L, isnew);
  SET();
  size = field_value(f, base_end, 'S');
  vsize = field_value(f, base_end, 'W');
  if (size >= 0) {
    KEY(K_SIZE);
    lua_pushinteger(L, (lua_Integer)size);
    SET();
  }
  if (vsize >= 0) {
    KEY(K_VSIZE);
    lua_pushinteger(L, (lua_Integer)vsize);
    SET();
  }
  p = f;
  sec = take_digits(&p, base_end);
  if (sec >= 0 && sec < 4000000000LL) {    /* the key fits in 63 bits */
    /* "<sec>.M<usec>P<pid>Q<n>." */
    const char *r = p;
    if (r + 1 < base_end && r[0] == '.' && r[1] == 'M') {
      long long u, pid, qq;
      r += 2;
      u = take_digits(&r, base_end);
      if (u >= 0 && u < 1000000 && r < base_end && *r == 'P') {
        r++;
        pid = take_digits(&r, base_end);
        if (pid >= 0 && r < base_end && *r == 'Q') {
          r++;
          qq = take_digits(&r, base_end);
          if (qq >= 0 && r < base_end && *r == '.') {
            usec = u;
            q = qq;
          }
        }
      }
    }
    KEY(K_MTIME);
    lua_pushinteger(L, (lua_Integer)sec);
    SET();
    KEY(K_KEY);
    lua_pushinteger(L, (lua_Integer)(((sec * 1000000 + usec) << 10) | (q & 1023)));
    SET();
  }
}
#undef KEY
#undef SET

static int l_maildir_list(lua_State *L) {
  size_t dlen;
  const char *dir = luaL_checklstring(L, 1, &dlen);
  int isnew = lua_toboolean(L, 2), keys;
  lua_Integer n;
  char *path;
  DIR *d;
  struct dirent *de;
  luaL_checktype(L, 3, LUA_TTABLE);
  n = luaL_checkinteger(L, 4);
  lua_settop(L, 4);
  keys = push_keys(L);
  /* "<dir>/" then each file name (d_name holds at most 255 bytes) */
  path = lua_newuserdatauv(L, dlen + 1 + sizeof de->d_name, 0);
  memcpy(path, dir, dlen);
  path[dlen] = '/';
  d = opendir(dir);
  if (d == NULL) return push_errno(L, errno);
  for (;;) {
    errno = 0;
    de = readdir(d);
    if (de == NULL) break;
    if (de->d_name[0] == '.') continue;
    push_record(L, keys, path, dlen + 1, de->d_name, isnew);
    lua_rawseti(L, 3, ++n);
  }
  if (errno != 0) {
    int e = errno;
    closedir(d);
    return push_errno(L, e);
  }
  closedir(d);
  lua_pushinteger(L, n);
  return 1;
}

/* the names in <dir>/<sub> not starting with ".", each followed by a NUL,
** added to b; their count, or -1 with errno set (a missing directory
** holds none) */
static lua_Integer read_names(luaL_Buffer *b, const char *path) {
  lua_Integer n = 0;
  struct dirent *de;
  DIR *d = opendir(path);
  if (d == NULL) return errno == ENOENT ? 0 : -1;
  for (;;) {
    errno = 0;
    de = readdir(d);
    if (de == NULL) break;
    if (de->d_name[0] == '.') continue;
    luaL_addlstring(b, de->d_name, strlen(de->d_name) + 1);
    n++;
  }
  if (errno != 0) {
    int e = errno;
    closedir(d);
    errno = e;
    return -1;
  }
  closedir(d);
  return n;
}

static int l_maildir_listing(lua_State *L) {
  size_t dlen;
  const char *dir = luaL_checklstring(L, 1, &dlen), *names;
  lua_Integer nn, nc, i, n = 0, nf = 0;
  char *path;
  int keys, which;
  luaL_Buffer b;
  lua_settop(L, 1);
  keys = push_keys(L);                      /* 2..10 */
  /* "<dir>/new/" or "<dir>/cur/" then each file name */
  path = lua_newuserdatauv(L, dlen + 5 + 256, 0);   /* 11 */
  memcpy(path, dir, dlen);
  memcpy(path + dlen, "/new", 5);
  /* the names first: the tables are then made at their final sizes */
  luaL_buffinit(L, &b);
  nn = read_names(&b, path);
  memcpy(path + dlen, "/cur", 5);
  nc = nn < 0 ? -1 : read_names(&b, path);
  if (nn < 0 || nc < 0) return push_errno(L, errno);
  luaL_pushresult(&b);                      /* 12 */
  names = lua_tostring(L, 12);
  path[dlen + 4] = '/';
  lua_createtable(L, (int)(nn + nc), 0);    /* 13 recs */
  lua_createtable(L, 0, (int)(nn + nc));    /* 14 byname */
  lua_createtable(L, 0, (int)nn);           /* 15 known new */
  lua_createtable(L, 0, (int)(nn + nc));    /* 16 known cur: room for claims */
  lua_createtable(L, (int)nn, 0);           /* 17 fresh */
  for (which = 0; which < 2; which++) {
    lua_Integer count = which == 0 ? nn : nc;
    memcpy(path + dlen + 1, which == 0 ? "new" : "cur", 3);
    for (i = 0; i < count; i++) {
      push_record(L, keys, path, dlen + 5, names, which == 0);   /* 18 */
      lua_pushvalue(L, keys + K_FILE);
      lua_rawget(L, 18);
      lua_pushvalue(L, 18);
      lua_rawset(L, which == 0 ? 15 : 16);  /* known[file] = rec */
      lua_pushvalue(L, keys + K_NAME);
      lua_rawget(L, 18);                    /* 19 name */
      lua_pushvalue(L, 19);
      if (lua_rawget(L, 14) == LUA_TNIL) {  /* a name in both: new/ wins */
        lua_pushvalue(L, 19);
        lua_pushvalue(L, 18);
        lua_rawset(L, 14);
        lua_pushvalue(L, 18);
        lua_rawseti(L, 13, ++n);
        if (which == 0) {
          lua_pushvalue(L, 18);
          lua_rawseti(L, 17, ++nf);
        }
      }
      lua_settop(L, 17);
      names += strlen(names) + 1;
    }
  }
  return 5;
}

typedef struct {
  lua_Integer key, pos;
} sort_entry;

/* a key as an unsigned number that sorts as the signed one does */
#define UKEY(k) ((unsigned long long)(k) ^ (1ULL << 63))

/* Stable LSD radix sort of e[0..n) by key, a byte a pass; a pass where
** every key has the same byte there moves nothing.  tmp holds n entries.
** Returns the array holding the result (e or tmp).  About 10 steps per
** entry and pass where qsort needs a comparison call per step. */
static sort_entry *radix_sort(sort_entry *e, sort_entry *tmp, lua_Integer n) {
  int shift;
  for (shift = 0; shift < 64 && n > 1; shift += 8) {
    size_t count[256] = {0}, pos = 0;
    lua_Integer i;
    int b;
    sort_entry *t;
    for (i = 0; i < n; i++) count[(UKEY(e[i].key) >> shift) & 255]++;
    if (count[(UKEY(e[0].key) >> shift) & 255] == (size_t)n) continue;
    for (b = 0; b < 256; b++) {
      size_t c = count[b];
      count[b] = pos;
      pos += c;
    }
    for (i = 0; i < n; i++) tmp[count[(UKEY(e[i].key) >> shift) & 255]++] = e[i];
    t = e;
    e = tmp;
    tmp = t;
  }
  return e;
}
#undef UKEY

static int l_maildir_sort(lua_State *L) {
  lua_Integer n, i;
  sort_entry *e;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  n = (lua_Integer)lua_rawlen(L, 1);
  /* a userdata, not malloc: freed by the GC if a bad record raises; the
  ** second half is the radix sort's other buffer */
  e = lua_newuserdatauv(L, (size_t)(n > 0 ? 2 * n : 1) * sizeof *e, 0);
  lua_pushliteral(L, "key");
  for (i = 0; i < n; i++) {
    int ok;
    luaL_argcheck(L, lua_rawgeti(L, 1, i + 1) == LUA_TTABLE, 1, "records expected");
    lua_pushvalue(L, 3);
    lua_rawget(L, -2);
    e[i].key = lua_tointegerx(L, -1, &ok);
    luaL_argcheck(L, ok, 1, "record without an integer key");
    e[i].pos = i + 1;
    lua_pop(L, 2);
  }
  if (n > 0) e = radix_sort(e, e + n, n);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, 1, e[i].pos);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/*
** new/old -> cur/file without replacing a file already there: two names
** in new/ with one unique part ("n" and "n:2,S", which no Maildir should
** hold) would otherwise become one, and a message would be lost; the
** second stays in new/.  Plain renameat where the filesystem has no
** RENAME_NOREPLACE.
*/
static int claim_rename(int newfd, const char *old, int curfd, const char *file) {
  int r = renameat2(newfd, old, curfd, file, RENAME_NOREPLACE);
  if (r != 0 && errno == EINVAL) r = renameat(newfd, old, curfd, file);
  return r;
}

static int l_maildir_claim(lua_State *L) {
  size_t dlen;
  const char *dir = luaL_checklstring(L, 1, &dlen);
  lua_Integer n, i, moved = 0;
  int newfd, curfd;
  char *buf, *file;
  size_t cap;
  int k;
  for (k = 2; k <= 4; k++) luaL_checktype(L, k, LUA_TTABLE);
  lua_settop(L, 4);
  n = (lua_Integer)lua_rawlen(L, 2);
  lua_createtable(L, 0, (int)n);            /* 5 uids */
  lua_pushliteral(L, "name");               /* 6 */
  lua_pushliteral(L, "file");               /* 7 */
  lua_pushliteral(L, "path");               /* 8 */
  lua_pushliteral(L, "flags");              /* 9 */
  lua_pushliteral(L, "new");                /* 10 */
  lua_pushliteral(L, "uid");                /* 11 */
  /* "<dir>/cur/" then the new file name (at most 255 bytes) */
  cap = dlen + 5 + 256;
  buf = lua_newuserdatauv(L, cap, 0);       /* 12 */
  memcpy(buf, dir, dlen);
  memcpy(buf + dlen, "/new", 5);
  newfd = open(buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (newfd < 0) return push_errno(L, errno);
  memcpy(buf + dlen, "/cur", 5);
  curfd = open(buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (curfd < 0) {
    int e = errno;
    close(newfd);
    return push_errno(L, e);
  }
  buf[dlen + 4] = '/';
  file = buf + dlen + 5;
  for (i = 1; i <= n; i++) {
    const char *name, *old, *flags;
    size_t nlen, flen;
    if (lua_rawgeti(L, 2, i) != LUA_TTABLE) { lua_pop(L, 1); continue; }   /* 13 */
    lua_pushvalue(L, 6);
    lua_rawget(L, 13);                      /* 14 name */
    lua_pushvalue(L, 7);
    lua_rawget(L, 13);                      /* 15 old file */
    lua_pushvalue(L, 9);
    lua_rawget(L, 13);                      /* 16 flags */
    lua_pushvalue(L, 11);
    lua_rawget(L, 13);                      /* 17 uid */
    name = lua_tolstring(L, 14, &nlen);
    old = lua_tostring(L, 15);
    flags = lua_tolstring(L, 16, &flen);
    if (name == NULL || old == NULL || flags == NULL || nlen + 3 + flen > 255 ||
        lua_type(L, 14) != LUA_TSTRING || lua_type(L, 15) != LUA_TSTRING ||
        lua_isnil(L, 17)) {
      close(newfd);
      close(curfd);
      return luaL_argerror(L, 2, "records with name, file, flags and uid expected");
    }
    memcpy(file, name, nlen);
    memcpy(file + nlen, ":2,", 3);
    memcpy(file + nlen + 3, flags, flen);
    file[nlen + 3 + flen] = '\0';
    if (claim_rename(newfd, old, curfd, file) == 0) {
      lua_pushlstring(L, file, nlen + 3 + flen);   /* 18 new file */
      lua_pushvalue(L, 15);
      lua_pushnil(L);
      lua_rawset(L, 3);                     /* known_new[old] = nil */
      lua_pushvalue(L, 7);
      lua_pushvalue(L, 18);
      lua_rawset(L, 13);                    /* rec.file */
      lua_pushvalue(L, 18);
      lua_pushvalue(L, 13);
      lua_rawset(L, 4);                     /* known_cur[file] = rec */
      lua_pushvalue(L, 8);
      lua_pushlstring(L, buf, dlen + 5 + nlen + 3 + flen);
      lua_rawset(L, 13);                    /* rec.path */
      lua_pushvalue(L, 10);
      lua_pushboolean(L, 0);
      lua_rawset(L, 13);                    /* rec.new */
      lua_pushvalue(L, 17);
      lua_pushboolean(L, 1);
      lua_rawset(L, 5);                     /* uids[rec.uid] = true */
      moved++;
    }
    lua_settop(L, 12);
  }
  close(newfd);
  close(curfd);
  lua_pushinteger(L, moved);
  lua_pushvalue(L, 5);
  return 2;
}

static int l_maildir_uidlist(lua_State *L) {
  lua_Integer n, i;
  luaL_Buffer b;
  luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, 2);
  lua_settop(L, 2);
  lua_pushliteral(L, "uid");                /* 3 */
  lua_pushliteral(L, "name");               /* 4 */
  luaL_buffinit(L, &b);
  lua_pushvalue(L, 1);
  luaL_addvalue(&b);
  for (i = 1; i <= n; i++) {
    char num[24], *d = num + sizeof num;
    const char *name;
    size_t len;
    lua_Integer uid;
    int ok;
    luaL_argcheck(L, lua_rawgeti(L, 2, i) == LUA_TTABLE, 2, "records expected");
    lua_pushvalue(L, 3);
    lua_rawget(L, -2);
    uid = lua_tointegerx(L, -1, &ok);
    luaL_argcheck(L, ok && uid > 0, 2, "record without a positive integer uid");
    lua_pushvalue(L, 4);
    lua_rawget(L, -3);
    name = lua_tolstring(L, -1, &len);
    luaL_argcheck(L, name != NULL && lua_type(L, -1) == LUA_TSTRING, 2, "record without a name");
    /* the buffer wants the stack as it left it; recs keeps name alive */
    lua_pop(L, 3);
    *--d = ' ';
    do { *--d = (char)('0' + uid % 10); uid /= 10; } while (uid > 0);
    luaL_addlstring(&b, d, (size_t)(num + sizeof num - d));
    luaL_addchar(&b, ':');
    luaL_addlstring(&b, name, len);
    luaL_addchar(&b, '\n');
  }
  luaL_pushresult(&b);
  return 1;
}

static const char *type_name(mode_t m) {
  if (S_ISREG(m)) return "file";
  if (S_ISDIR(m)) return "directory";
  if (S_ISLNK(m)) return "link";
  if (S_ISFIFO(m)) return "fifo";
  if (S_ISSOCK(m)) return "socket";
  if (S_ISCHR(m)) return "char";
  if (S_ISBLK(m)) return "block";
  return "other";
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static void set_time(lua_State *L, const char *k, struct timespec ts) {
  if (ts.tv_nsec == 0) {
    lua_pushinteger(L, (lua_Integer)ts.tv_sec);
  } else {
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  }
  lua_setfield(L, -2, k);
}

static int do_stat(lua_State *L, int follow) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if ((follow ? stat(path, &st) : lstat(path, &st)) != 0) {
    return push_errno(L, errno);
  }
  lua_createtable(L, 0, 11);
  set_int(L, "size", (lua_Integer)st.st_size);
  set_time(L, "mtime", st.st_mtim);
  set_time(L, "atime", st.st_atim);
  set_time(L, "ctime", st.st_ctim);
  set_int(L, "mode", (lua_Integer)(st.st_mode & 07777));
  lua_pushstring(L, type_name(st.st_mode));
  lua_setfield(L, -2, "type");
  set_int(L, "ino", (lua_Integer)st.st_ino);
  set_int(L, "nlink", (lua_Integer)st.st_nlink);
  set_int(L, "uid", (lua_Integer)st.st_uid);
  set_int(L, "gid", (lua_Integer)st.st_gid);
  set_int(L, "dev", (lua_Integer)st.st_dev);
  return 1;
}

static int l_stat(lua_State *L) { return do_stat(L, 1); }
static int l_lstat(lua_State *L) { return do_stat(L, 0); }

static int l_realpath(lua_State *L) {
  char *r = realpath(luaL_checkstring(L, 1), NULL);
  if (r == NULL) return push_errno(L, errno);
  lua_pushstring(L, r);
  free(r);
  return 1;
}

static struct timespec to_timespec(lua_Number t) {
  struct timespec ts;
  lua_Number s = t < 0 ? 0 : t;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
  if (ts.tv_nsec < 0 || ts.tv_nsec > 999999999) ts.tv_nsec = 0;
  return ts;
}

static int l_utime(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct timespec ts[2];
  ts[0] = to_timespec(luaL_checknumber(L, 2));
  ts[1] = to_timespec(luaL_checknumber(L, 3));
  return push_result(L, utimensat(AT_FDCWD, path, ts, 0));
}

static int l_statvfs(lua_State *L) {
  struct statvfs v;
  if (statvfs(luaL_checkstring(L, 1), &v) != 0) return push_errno(L, errno);
  lua_createtable(L, 0, 3);
  set_int(L, "avail", (lua_Integer)v.f_bavail * (lua_Integer)v.f_frsize);
  set_int(L, "free", (lua_Integer)v.f_bfree * (lua_Integer)v.f_frsize);
  set_int(L, "size", (lua_Integer)v.f_blocks * (lua_Integer)v.f_frsize);
  return 1;
}

/* ------------------------------------------------------- process, time */

static int l_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

static int l_gethostname(lua_State *L) {
  char name[HOST_NAME_MAX + 1];
  if (gethostname(name, sizeof name) != 0) return push_errno(L, errno);
  name[HOST_NAME_MAX] = '\0';
  lua_pushstring(L, name);
  return 1;
}

static int l_alive(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  luaL_argcheck(L, pid > 0 && pid <= INT_MAX, 1, "bad pid");
  lua_pushboolean(L, kill((pid_t)pid, 0) == 0 || errno == EPERM);
  return 1;
}

static int l_time(lua_State *L) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  lua_pushinteger(L, (lua_Integer)tv.tv_sec);
  lua_pushinteger(L, (lua_Integer)tv.tv_usec);
  return 2;
}

/* ----------------------------------------------------------- passwords */

static int l_crypt(lua_State *L) {
  const char *pw = luaL_checkstring(L, 1);
  const char *setting = luaL_checkstring(L, 2);
  struct crypt_data *cd = (struct crypt_data *)calloc(1, sizeof *cd);
  const char *h;
  if (cd == NULL) return luaL_error(L, "out of memory");
  h = crypt_r(pw, setting, cd);
  /* libxcrypt returns NULL or a "*0"/"*1" failure token */
  if (h == NULL || h[0] == '*') {
    free(cd);
    lua_pushnil(L);
    lua_pushliteral(L, "invalid salt");
    return 2;
  }
  lua_pushstring(L, h);
  explicit_bzero(cd, sizeof *cd);
  free(cd);
  return 1;
}

static int l_gensalt(lua_State *L) {
  const char *prefix = luaL_checkstring(L, 1);
  lua_Integer rounds = luaL_optinteger(L, 2, 0);
  char out[CRYPT_GENSALT_OUTPUT_SIZE];
  luaL_argcheck(L, rounds >= 0 && rounds <= 0x7fffffff, 2, "bad rounds");
  if (crypt_gensalt_rn(prefix, (unsigned long)rounds, NULL, 0, out,
                       (int)sizeof out) == NULL) {
    lua_pushnil(L);
    lua_pushliteral(L, "unsupported hash method");
    return 2;
  }
  lua_pushstring(L, out);
  return 1;
}

static int l_equal(lua_State *L) {
  size_t na, nb, i;
  const unsigned char *a = (const unsigned char *)luaL_checklstring(L, 1, &na);
  const unsigned char *b = (const unsigned char *)luaL_checklstring(L, 2, &nb);
  /* walk the longer string whole; a differing length is a difference */
  size_t n = na > nb ? na : nb;
  volatile unsigned char d = (unsigned char)(na != nb);
  for (i = 0; i < n; i++) {
    unsigned char x = i < na ? a[i] : 0, y = i < nb ? b[i] : 0;
    d |= (unsigned char)(x ^ y);
  }
  lua_pushboolean(L, d == 0);
  return 1;
}

/* -------------------------------------------------------------- opener */

int parley_open_fs(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"write", l_file_write},
    {"flush", l_file_flush},
    {"fsync", l_file_fsync},
    {"size", l_file_size},
    {"lfs", l_file_lfs},
    {"fd", l_file_fd},
    {"lock", l_file_lock},
    {"read", l_file_read},
    {"close", l_file_close},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", l_file_gc},
    {"__close", l_file_gc},
    {"__tostring", l_file_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"open", l_open},
    {"fsync", l_fsync},
    {"fsync_dir", l_fsync_dir},
    {"rename", l_rename},
    {"link", l_link},
    {"unlink", l_unlink},
    {"rmdir", l_rmdir},
    {"mkdir", l_mkdir},
    {"listdir", l_listdir},
    {"read_head", l_read_head},
    {"maildir_list", l_maildir_list},
    {"maildir_listing", l_maildir_listing},
    {"maildir_sort", l_maildir_sort},
    {"maildir_uidlist", l_maildir_uidlist},
    {"maildir_claim", l_maildir_claim},
    {"stat", l_stat},
    {"lstat", l_lstat},
    {"realpath", l_realpath},
    {"utime", l_utime},
    {"statvfs", l_statvfs},
    {"getpid", l_getpid},
    {"gethostname", l_gethostname},
    {"alive", l_alive},
    {"time", l_time},
    {"crypt", l_crypt},
    {"gensalt", l_gensalt},
    {"equal", l_equal},
    {NULL, NULL}
  };
  static const luaL_Reg async_funcs[] = {
    {"fsync_async", l_fsync_async},
    {"fsync_dir_async", l_fsync_dir_async},
    {"fsync_stats", l_fsync_stats},
    {NULL, NULL}
  };
  static const luaL_Reg pool_meta[] = {
    {"__gc", pool_gc},
    {"__tostring", pool_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg no_methods[] = {{NULL, NULL}};
  fs_async *a;
  parley_newclass(L, FS_FILE, methods, meta);
  parley_newclass(L, FS_POOL, no_methods, pool_meta);
  luaL_newlib(L, funcs);
  a = (fs_async *)lua_newuserdatauv(L, sizeof *a, 0);
  memset(a, 0, sizeof *a);
  luaL_setmetatable(L, FS_POOL);
  /* no pool (out of memory): the async calls sync on the loop thread */
  a->pool = fsync_pool_new(FSYNC_WORKERS, FSYNC_MAX_JOBS);
  luaL_setfuncs(L, async_funcs, 1);
  lua_setfield(L, -2, "fs");
  return 0;
}
