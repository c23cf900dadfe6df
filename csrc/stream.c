/*
** stream: a buffered non-blocking TCP connection.
**
** Reads fill an input buffer that lines and counts are cut from (lines
** framed strictly on CRLF, capped by max-line).  Writes collect in an
** output buffer flushed once before the task blocks on a read, when the
** loop is about to sleep, past a high-water mark, and on flush/close:
** a pipelined batch of replies costs one write.
**
** Lua: core.connect(host, port, timeout), core.adopt(fd); methods in
** doc/driver-api.md.
*/
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>

#include "buf.h"
#include "driver.h"
#include "tls.h"

#define READ_CHUNK 16384          /* least room for one read(2) */
#define BULK_CHUNK 262144         /* room for reads of bulk transfers */
#define HIGH_WATER 65536          /* queued output that makes send() write */
#define DEFAULT_MAX_LINE 65536

typedef struct stream {
  pollable p;
  buf in, out;
  double timeout;         /* seconds per call; < 0: none */
  size_t max_line;        /* bytes, CRLF included */
  size_t scan;            /* bytes of `in` already searched for LF */
  size_t head_scan;       /* bytes of `in` holding no whole HTTP head */
  int64_t xfer;           /* progress of the bulk call under way */
  int64_t left;           /* bytes still to move in that call; < 0: all */
  int err;                /* errno of a failed write, reported next call */
  int eof, closed, skipping, lenient;
  int oobinline;          /* SO_OOBINLINE set: see fill */
  const char *lasterr;
  int sf_fd, sf_own;      /* file being sent with sendfile(2) */
  off_t sf_off;
  struct addrinfo *ai, *ai_next;   /* addresses left to try in connect */
  /*
  ** TLS (tls.c): once ssl is set every byte goes through it.  A TLS
  ** read may need the socket writable and a write readable; these say
  ** which way the last one that would block must wait.
  */
  SSL *ssl;
  int rd_wants_write, wr_wants_read;
  char *tlserr;           /* why TLS failed, "" until it does: TLS streams
                             only (PARLEY_TLS_ERRLEN bytes, freed by __gc,
                             as lasterr may point into it) */
} stream;

enum { RECV_LINE, RECV_ALL, RECV_COUNT, RECV_SOME, RECV_UNTIL, RECV_TO,
       RECV_HEAD, RECV_TELNET };

static void flush_cb(pollable *p);

/* A stream argument. The usual case is told by what only a stream holds,
** a full userdata of a stream's size whose flush hook is this file's
** (set when it is made, never changed): three API calls, where comparing
** metatables took ~180 instructions, twice per HTTP request. Lua code
** cannot make a userdata's bytes; anything else goes the checked way. */
static stream *check_stream(lua_State *L, int idx) {
  stream *s = parley_stream_at(L, idx);
  return s ? s : luaL_checkudata(L, idx, PARLEY_STREAM);
}

/* the stream of a call resumed after a wait: checked by the call that
** waited, and a suspended C function's stack slots do not change (short
** of debug.setlocal, which can break anything) */
static stream *resumed_stream(lua_State *L, int idx) {
  return lua_touserdata(L, idx);
}

/* the message for a failed read or write: TLS's own reason when it has one */
static const char *io_error(stream *s, int err) {
  return s->tlserr && s->tlserr[0] ? s->tlserr : parley_strerror(err);
}

/* ---------------------------------------------------------------- tls */

/* SSL_write as write(2) answers: bytes, or -1 with errno (EAGAIN: wait) */
static ssize_t tls_write(stream *s, const char *p, size_t n) {
  int r;
  ERR_clear_error();
  r = SSL_write(s->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
  s->wr_wants_read = 0;
  if (r > 0) return r;
  switch (parley_tls_result(s->ssl, r, s->tlserr, PARLEY_TLS_ERRLEN)) {
    case TLS_WANT_READ: s->wr_wants_read = 1; errno = EAGAIN; return -1;
    case TLS_WANT_WRITE: s->wr_wants_read = 0; errno = EAGAIN; return -1;
    case TLS_EOF: errno = EPIPE; return -1;
    default: errno = EPROTO; return -1;
  }
}

/* a wait for what the last TLS call asked for; plain streams wait as told */
static int rd_dir(stream *s) { return s->rd_wants_write ? P_WRITE : P_READ; }
static int wr_dir(stream *s) { return s->wr_wants_read ? P_READ : P_WRITE; }

/* ------------------------------------------------------------- output */

/* 0: all written; 1: some left (EAGAIN); -1: failed (s->err set) */
static int write_some(stream *s) {
  while (buf_len(&s->out) > 0) {
    ssize_t n = s->ssl ? tls_write(s, buf_head(&s->out), buf_len(&s->out))
                       : write(s->p.fd, buf_head(&s->out), buf_len(&s->out));
    if (n > 0) {
      buf_consume(&s->out, (size_t)n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      return 1;
    } else {
      s->err = n < 0 ? errno : EPIPE;
      buf_free(&s->out);
      return -1;
    }
  }
  return 0;
}

/* the loop's background flush: no task waits, the socket became writable */
static void flush_cb(pollable *p) {
  stream *s = (stream *)p;
  if (!s->closed && !s->err) write_some(s);
}

/* ------------------------------------------------------------- input */

static void consume(stream *s, size_t n) {
  buf_consume(&s->in, n);
  s->scan = 0;
  s->head_scan = 0;
}

/*
** fill over TLS: records are decrypted until the room is full or the
** socket is empty, so a bulk read costs one pass, not one per record.
** A short read says nothing about the socket here (OpenSSL may hold the
** rest of a record, which epoll cannot see): only WANT_READ clears
** rd_ready, since then the socket itself said EAGAIN.  A failure after
** some data is reported by the next call.
*/
static int tls_fill(stream *s) {
  size_t got = 0;
  if (s->tlserr[0]) {
    s->eof = 1;
    errno = EPROTO;
    return -2;
  }
  s->rd_wants_write = 0;
  for (;;) {
    size_t avail = buf_room(&s->in);
    int n;
    if (avail == 0) return 1;
    ERR_clear_error();
    n = SSL_read(s->ssl, buf_tail(&s->in), avail > INT32_MAX ? INT32_MAX : (int)avail);
    if (n > 0) {
      s->in.end += (size_t)n;
      got += (size_t)n;
      continue;
    }
    switch (parley_tls_result(s->ssl, n, s->tlserr, PARLEY_TLS_ERRLEN)) {
      case TLS_WANT_READ:
        if (!s->p.hup) s->p.rd_ready = 0;
        return got ? 1 : -1;
      case TLS_WANT_WRITE:
        s->rd_wants_write = 1;
        return got ? 1 : -1;
      case TLS_EOF:
        if (got) return 1;
        s->eof = 1;
        return 0;
      default:
        if (got) return 1;
        s->eof = 1;   /* nothing more can be read after a fatal alert */
        errno = EPROTO;
        return -2;
    }
  }
}

/* the next byte to read is the urgent one (SIOCATMARK) */
static int at_mark(stream *s) {
  int mark = 0;
  return ioctl(s->p.fd, SIOCATMARK, &mark) == 0 && mark;
}

/* >0: bytes read; 0: end of stream; -1: would block; -2: error (errno) */
static int fill(stream *s, size_t room) {
  ssize_t n;
  if (s->eof) return 0;
  if (buf_reserve(&s->in, room) != 0) {
    errno = ENOMEM;
    return -2;
  }
  if (s->ssl) return tls_fill(s);
  for (;;) {
    size_t avail = buf_room(&s->in);
    n = read(s->p.fd, buf_tail(&s->in), avail);
    if (n > 0) {
      s->in.end += (size_t)n;
      /* a short read emptied the socket: new data brings a new edge;
      ** but one that stopped at the urgent mark (Linux's read ends there
      ** with the urgent byte waiting) left input no edge announces */
      if ((size_t)n < avail && !s->p.hup && !(s->oobinline && at_mark(s)))
        s->p.rd_ready = 0;
      return 1;
    }
    if (n == 0) {
      s->eof = 1;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      if (!s->p.hup) s->p.rd_ready = 0;
      return -1;
    }
    return -2;
  }
}

/* pushes nil, msg, partial (everything buffered, consumed) */
static int fail_partial(lua_State *L, stream *s, const char *msg, int prefix) {
  luaL_Buffer b;
  lua_pushnil(L);
  lua_pushstring(L, msg);
  luaL_buffinit(L, &b);
  if (prefix && lua_isstring(L, prefix)) {
    lua_pushvalue(L, prefix);
    luaL_addvalue(&b);
  }
  luaL_addlstring(&b, buf_len(&s->in) ? buf_head(&s->in) : "", buf_len(&s->in));
  luaL_pushresult(&b);
  consume(s, buf_len(&s->in));
  s->lasterr = msg;
  return 3;
}

static int fail(lua_State *L, stream *s, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  s->lasterr = msg;
  return 2;
}

/* pushes prefix .. bytes */
static void push_with_prefix(lua_State *L, int prefix, const char *p, size_t n) {
  if (prefix && lua_isstring(L, prefix)) {
    lua_pushvalue(L, prefix);
    lua_pushlstring(L, p, n);
    lua_concat(L, 2);
  } else {
    lua_pushlstring(L, p, n);
  }
}

/*
** Each receive mode tries to complete from the buffer: it returns the
** number of values pushed, or 0 when it needs more input.  `ended` says
** the peer has closed, so nothing more will come.
*/
static int try_line(lua_State *L, stream *s, int ended) {
  for (;;) {
    size_t len = buf_len(&s->in);
    const char *head = buf_head(&s->in);
    const char *nl = len > s->scan ? memchr(head + s->scan, '\n', len - s->scan)
                                   : NULL;
    if (nl) {
      size_t n = (size_t)(nl - head);   /* bytes before the LF */
      if (s->skipping) {
        s->skipping = 0;
        consume(s, n + 1);
        continue;
      }
      if (n + 1 > s->max_line) {
        consume(s, n + 1);
        return fail(L, s, "line too long");
      }
      if (n > 0 && head[n - 1] == '\r') {
        push_with_prefix(L, 3, head, n - 1);
        consume(s, n + 1);
        return 1;
      }
      if (s->lenient) {
        push_with_prefix(L, 3, head, n);
        consume(s, n + 1);
        return 1;
      }
      /* RFC 5321 §2.3.8 and friends: only CRLF ends a line */
      lua_pushnil(L);
      lua_pushliteral(L, "bare lf");
      push_with_prefix(L, 3, head, n);
      consume(s, n + 1);
      s->lasterr = "bare lf";
      return 3;
    }
    s->scan = len;
    if (s->skipping) {
      consume(s, len);
      if (ended) return fail(L, s, "closed");
      return 0;
    }
    if (len >= s->max_line) {
      /* no LF within the cap: drop it all and the rest of the line */
      consume(s, len);
      s->skipping = 1;
      return fail(L, s, "line too long");
    }
    if (ended) {
      int n = fail_partial(L, s, "closed", 3);
      if (len == 0) s->lasterr = NULL;   /* a clean end between lines */
      return n;
    }
    return 0;
  }
}

static int try_all(lua_State *L, stream *s, int ended) {
  if (!ended) return 0;
  push_with_prefix(L, 3, buf_len(&s->in) ? buf_head(&s->in) : "", buf_len(&s->in));
  consume(s, buf_len(&s->in));
  return 1;
}

static int try_count(lua_State *L, stream *s, int ended) {
  size_t want = (size_t)lua_tointeger(L, 2);
  if (buf_len(&s->in) >= want) {
    push_with_prefix(L, 3, want ? buf_head(&s->in) : "", want);
    consume(s, want);
    return 1;
  }
  if (ended) return fail_partial(L, s, "closed", 3);
  return 0;
}

static int try_some(lua_State *L, stream *s, int ended) {
  size_t max = (size_t)luaL_optinteger(L, 2, 65536);
  size_t len = buf_len(&s->in);
  if (len > 0) {
    size_t n = len < max ? len : max;
    lua_pushlstring(L, buf_head(&s->in), n);
    consume(s, n);
    return 1;
  }
  if (ended) return fail(L, s, "closed");
  return 0;
}

static int try_until(lua_State *L, stream *s, int ended) {
  size_t dlen, len = buf_len(&s->in);
  const char *delim = lua_tolstring(L, 2, &dlen);
  lua_Integer max = luaL_optinteger(L, 3, -1);
  const char *hit = len ? memmem(buf_head(&s->in), len, delim, dlen) : NULL;
  if (hit) {
    size_t n = (size_t)(hit - buf_head(&s->in));
    if (max >= 0 && n > (size_t)max) return fail(L, s, "too long");
    lua_pushlstring(L, buf_head(&s->in), n);
    consume(s, n + dlen);
    return 1;
  }
  if (max >= 0 && len >= (size_t)max + dlen) return fail(L, s, "too long");
  if (ended) return fail_partial(L, s, "closed", 0);
  return 0;
}

/* writes all of p to a file descriptor sink (files do not block) */
static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? errno : EIO;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int sink_fd(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) return (int)lua_tointeger(L, idx);
  {
    luaL_Stream *f = luaL_checkudata(L, idx, LUA_FILEHANDLE);
    if (f->closef == NULL) luaL_argerror(L, idx, "attempt to use a closed file");
    return fileno(f->f);
  }
}

static int try_to(lua_State *L, stream *s, int ended) {
  int fd = sink_fd(L, 2);
  size_t len = buf_len(&s->in);
  if (len > 0) {
    size_t n = s->left >= 0 && (int64_t)len > s->left ? (size_t)s->left : len;
    int e = write_all(fd, buf_head(&s->in), n);
    if (e) {
      lua_pushnil(L);
      lua_pushstring(L, parley_strerror(e));
      lua_pushinteger(L, s->xfer);
      return 3;
    }
    consume(s, n);
    s->xfer += (int64_t)n;
    if (s->left > 0) s->left -= (int64_t)n;
  }
  if (s->left == 0 || (ended && s->left < 0)) {
    lua_pushinteger(L, s->xfer);
    return 1;
  }
  if (ended) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    lua_pushinteger(L, s->xfer);
    s->lasterr = "closed";
    return 3;
  }
  return 0;
}

typedef int (*tryfn)(lua_State *L, stream *s, int ended);
/*
** An HTTP request head, parsed where it lies in `in` (arg 2: limits):
** the values of core.http.parse_request after its count (the request
** object's form when arg 4 is its metatable), or false for an incomplete
** head when arg 3 (wait for a whole one) is not true.
*/
static int try_head(lua_State *L, stream *s, int ended) {
  size_t used = 0, len = buf_len(&s->in);
  if (len > 0) {
    int obj = lua_type(L, 4) == LUA_TTABLE ? 4 : 0;
    int n = parley_http_receive_request(L, buf_head(&s->in), len, 2,
                                        s->head_scan, &used, obj);
    if (used > 0) consume(s, used);
    if (n) return n;
    s->head_scan = len;
  }
  if (ended) return fail(L, s, "closed");
  if (len > 0 && !lua_toboolean(L, 3)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  return 0;
}

/*
** A Telnet line taken where it lies in `in` when it needs nothing of the
** codec's state machine (arg 2: max, arg 3: the codec), else false so the
** caller feeds the codec; waits for input only when none is buffered.
*/
static int try_telnet_line(lua_State *L, stream *s, int ended) {
  size_t used = 0, len = buf_len(&s->in);
  if (len > 0) {
    parley_telnet_line(L, 3, buf_head(&s->in), len,
                       (size_t)lua_tointeger(L, 2), &used);
    if (used) consume(s, used);
    return 1;
  }
  if (ended) return fail(L, s, "closed");
  return 0;
}

static const tryfn tries[] = {try_line, try_all, try_count, try_some,
                              try_until, try_to, try_head, try_telnet_line};

static size_t room_for(lua_State *L, stream *s, int mode) {
  if (mode == RECV_COUNT) {
    size_t want = (size_t)lua_tointeger(L, 2) - buf_len(&s->in);
    if (want > BULK_CHUNK * 4) want = BULK_CHUNK * 4;
    return want > READ_CHUNK ? want : READ_CHUNK;
  }
  if (mode == RECV_ALL || mode == RECV_TO) return BULK_CHUNK;
  return READ_CHUNK;
}

/* before sleeping on a read: replies go out, an empty buffer is freed */
static void before_read_wait(stream *s) {
  if (buf_len(&s->out) > 0 && !s->err) write_some(s);
  if (buf_len(&s->in) == 0) buf_free(&s->in);
}

static int recv_k(lua_State *L, int status, lua_KContext ctx);

static int wait_failed(lua_State *L, stream *s, int mode, int result) {
  const char *msg = parley_wake_message(result);
  if (mode == RECV_TO) {
    lua_pushnil(L);
    lua_pushstring(L, msg);
    lua_pushinteger(L, s->xfer);
    s->lasterr = msg;
    return 3;
  }
  if (mode == RECV_SOME || mode == RECV_HEAD) return fail(L, s, msg);
  if (result == WAKE_CLOSED) return fail(L, s, msg);
  return fail_partial(L, s, msg, mode == RECV_UNTIL ? 0 : 3);
}

static int recv_loop(lua_State *L, stream *s, int mode, double deadline) {
  for (;;) {
    int n, r;
    if (s->closed) return fail(L, s, "closed");
    n = tries[mode](L, s, s->eof);
    if (n) return n;
    r = s->p.rd_ready || s->rd_wants_write || (s->ssl && SSL_pending(s->ssl))
        ? fill(s, room_for(L, s, mode)) : -1;
    /* a bulk transfer's timeout bounds each wait for progress */
    if (r > 0 && mode == RECV_TO) deadline = parley_deadline(s->timeout);
    if (r > 0 || r == 0) continue;   /* more data, or the end: try again */
    if (r == -2) {
      const char *msg = io_error(s, errno);
      if (mode == RECV_TO) {
        lua_pushnil(L);
        lua_pushstring(L, msg);
        lua_pushinteger(L, s->xfer);
        s->lasterr = msg;
        return 3;
      }
      return fail_partial(L, s, msg, mode == RECV_UNTIL ? 0 : 3);
    }
    before_read_wait(s);
    r = parley_wait(L, &s->p, rd_dir(s), NULL, deadline, mode, recv_k);
    if (r != WAKE_READY) return wait_failed(L, s, mode, r);
  }
}

static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  stream *s = resumed_stream(L, 1);
  waiter *w = parley_waited(L);
  (void)status;
  if (w->result != WAKE_READY) return wait_failed(L, s, (int)ctx, w->result);
  return recv_loop(L, s, (int)ctx, w->deadline);
}

static int s_receive(lua_State *L) {
  stream *s = check_stream(L, 1);
  int mode;
  lua_settop(L, 3);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Integer n = lua_tointeger(L, 2);
    luaL_argcheck(L, n >= 0, 2, "negative count");
    mode = RECV_COUNT;
  } else {
    const char *pat = luaL_optstring(L, 2, "l");
    if (*pat == '*') pat++;
    if (*pat == 'l') mode = RECV_LINE;
    else if (*pat == 'a') mode = RECV_ALL;
    else return luaL_argerror(L, 2, "invalid receive pattern");
  }
  return recv_loop(L, s, mode, parley_deadline(s->timeout));
}

static int s_receive_some(lua_State *L) {
  stream *s = check_stream(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, 65536);
  luaL_argcheck(L, max > 0, 2, "must be positive");
  lua_settop(L, 2);
  return recv_loop(L, s, RECV_SOME, parley_deadline(s->timeout));
}

static int s_receive_http_head(lua_State *L) {
  stream *s = check_stream(L, 1);
  if (lua_isnoneornil(L, 4)) {
    lua_settop(L, 3);
  } else {
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_settop(L, 4);
  }
  return recv_loop(L, s, RECV_HEAD, parley_deadline(s->timeout));
}

static int s_receive_until(lua_State *L) {
  stream *s = check_stream(L, 1);
  size_t dlen;
  luaL_checklstring(L, 2, &dlen);
  luaL_argcheck(L, dlen > 0, 2, "empty delimiter");
  luaL_optinteger(L, 3, -1);
  lua_settop(L, 3);
  return recv_loop(L, s, RECV_UNTIL, parley_deadline(s->timeout));
}

/* receive_to(fd | file, [count]): the C part of s:receive_to */
static int s_receive_to(lua_State *L) {
  stream *s = check_stream(L, 1);
  lua_Integer count = luaL_optinteger(L, 3, -1);
  if (lua_type(L, 2) != LUA_TNUMBER) {
    luaL_Stream *f = luaL_checkudata(L, 2, LUA_FILEHANDLE);
    if (f->closef) fflush(f->f);   /* keep what Lua wrote before ours */
  }
  sink_fd(L, 2);
  lua_settop(L, 3);
  s->xfer = 0;
  s->left = count;
  return recv_loop(L, s, RECV_TO, parley_deadline(s->timeout));
}

/* receive_telnet_line(codec, max): max goes to index 2 and the codec to
** 3, where a failed wait looks for a string prefix */
static int s_receive_telnet_line(lua_State *L) {
  stream *s = check_stream(L, 1);
  lua_Number max = luaL_checknumber(L, 3);     /* math.huge: no limit */
  luaL_argcheck(L, max >= 0, 3, "negative length");
  luaL_checkudata(L, 2, PARLEY_TELNET_CODEC);
  lua_settop(L, 3);
  lua_pushinteger(L, max < (lua_Number)LUA_MAXINTEGER ? (lua_Integer)max
                                                       : LUA_MAXINTEGER);
  lua_replace(L, 3);
  lua_insert(L, 2);
  return recv_loop(L, s, RECV_TELNET, parley_deadline(s->timeout));
}

/* ------------------------------------------------------------ writing */

static int send_k(lua_State *L, int status, lua_KContext ctx);
static int flush_k(lua_State *L, int status, lua_KContext ctx);

static int write_failed(lua_State *L, stream *s) {
  lua_pushnil(L);
  lua_pushstring(L, s->closed ? "closed" : io_error(s, s->err));
  return 2;
}

/*
** Writes until at most `limit` bytes remain queued, waiting for the
** socket as needed; then `done` pushes the results.
*/
static int drain(lua_State *L, stream *s, size_t limit, double deadline,
                 lua_KContext ctx, lua_KFunction k) {
  while (buf_len(&s->out) > limit) {
    size_t before = buf_len(&s->out);
    int r;
    if (s->closed || s->err) return -1;
    r = write_some(s);
    if (r < 0) return -1;
    if (r == 0) break;
    /* the timeout bounds each wait for progress, not a big send as a whole */
    if (buf_len(&s->out) < before) deadline = parley_deadline(s->timeout);
    r = parley_wait(L, &s->p, wr_dir(s), NULL, deadline, ctx, k);
    if (r != WAKE_READY) return r;
  }
  return s->err || s->closed ? -1 : WAKE_READY;
}

static lua_Integer send_range(lua_State *L, size_t len, lua_Integer *i) {
  lua_Integer j = luaL_optinteger(L, 4, -1);
  *i = luaL_optinteger(L, 3, 1);
  if (*i < 0) *i = (lua_Integer)len + *i + 1;
  if (*i < 1) *i = 1;
  if (j < 0) j = (lua_Integer)len + j + 1;
  if (j > (lua_Integer)len) j = (lua_Integer)len;
  return j;
}

static int send_done(lua_State *L, stream *s, int r) {
  size_t len;
  lua_Integer i, j;
  luaL_checklstring(L, 2, &len);
  j = send_range(L, len, &i);
  if (r == WAKE_READY) {
    lua_pushinteger(L, j < i ? i - 1 : j);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, r < 0 ? (s->closed ? "closed" : io_error(s, s->err))
                          : parley_wake_message(r));
  lua_pushinteger(L, i - 1);
  return 3;
}

static int send_k(lua_State *L, int status, lua_KContext ctx) {
  stream *s = resumed_stream(L, 1);
  waiter *w = parley_waited(L);
  int r = w->result;
  (void)status; (void)ctx;
  if (r == WAKE_READY) r = drain(L, s, HIGH_WATER, w->deadline, 0, send_k);
  return send_done(L, s, r);
}

static int s_send(lua_State *L) {
  stream *s = check_stream(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  lua_Integer i, j;
  size_t n;
  lua_settop(L, 4);
  j = send_range(L, len, &i);
  if (s->closed || s->err) {
    lua_pushnil(L);
    lua_pushstring(L, s->closed ? "closed" : io_error(s, s->err));
    lua_pushinteger(L, i - 1);
    return 3;
  }
  if (j < i) {
    lua_pushinteger(L, i - 1);
    return 1;
  }
  data += i - 1;
  n = (size_t)(j - i + 1);
  if (buf_len(&s->out) == 0 && n >= HIGH_WATER && !s->ssl) {
    /* a big write goes straight out; only the rest is copied */
    ssize_t w = write(s->p.fd, data, n);
    if (w > 0) {
      data += w;
      n -= (size_t)w;
    } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
      s->err = errno;
      return send_done(L, s, -1);
    }
  }
  if (n > 0) {
    if (buf_append(&s->out, data, n) != 0) return luaL_error(L, "not enough memory");
    parley_mark_dirty(&s->p);
  }
  if (buf_len(&s->out) > HIGH_WATER) {
    return send_done(L, s, drain(L, s, HIGH_WATER, parley_deadline(s->timeout),
                                 0, send_k));
  }
  lua_pushinteger(L, j);
  return 1;
}

static int flush_done(lua_State *L, stream *s, int r) {
  if (r == WAKE_READY) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (r < 0) return write_failed(L, s);
  lua_pushnil(L);
  lua_pushstring(L, parley_wake_message(r));
  return 2;
}

static int flush_k(lua_State *L, int status, lua_KContext ctx) {
  stream *s = resumed_stream(L, 1);
  waiter *w = parley_waited(L);
  int r = w->result;
  (void)status; (void)ctx;
  if (r == WAKE_READY) r = drain(L, s, 0, w->deadline, 0, flush_k);
  return flush_done(L, s, r);
}

static int s_flush(lua_State *L) {
  stream *s = check_stream(L, 1);
  lua_settop(L, 1);
  if (s->closed) return write_failed(L, s);
  return flush_done(L, s, drain(L, s, 0, parley_deadline(s->timeout), 0, flush_k));
}

static int queued(lua_State *L, stream *s);

/* send_telnet(codec, text [, eol]): codec:escape(text, eol) queued as
** send queues it, escaped straight into the output buffer */
static int s_send_telnet(lua_State *L) {
  stream *s = check_stream(L, 1);
  size_t n;
  const char *text = luaL_checklstring(L, 3, &n);
  int eol = lua_toboolean(L, 4);
  size_t w;
  luaL_checkudata(L, 2, PARLEY_TELNET_CODEC);
  lua_settop(L, 4);
  if (s->closed || s->err) return write_failed(L, s);
  if (n > ((size_t)-1 - 2) / 2 || buf_reserve(&s->out, 2 * n + 2) != 0) {
    return luaL_error(L, "not enough memory");
  }
  w = parley_telnet_escape(L, 2, text, n, eol, buf_tail(&s->out));
  s->out.end += w;
  if (w) parley_mark_dirty(&s->p);
  return queued(L, s);
}

typedef struct head_sink {
  lua_State *L;
  stream *s;
} head_sink;

static void append_head(void *ud, const char *p, size_t n) {
  head_sink *h = ud;
  if (buf_append(&h->s->out, p, n) != 0) luaL_error(h->L, "not enough memory");
}

/*
** After a method that wrote straight into the output buffer
** (send_http_response, send_telnet, send_list): true at once, or past
** the high-water mark the wait for the peer to read, as send waits.
*/
static int queued_k(lua_State *L, int status, lua_KContext ctx) {
  stream *s = resumed_stream(L, (int)ctx);   /* its stack slot */
  waiter *w = parley_waited(L);
  int r = w->result;
  (void)status;
  if (r == WAKE_READY) r = drain(L, s, HIGH_WATER, w->deadline, ctx, queued_k);
  return flush_done(L, s, r);
}

/* the stream at stack slot sidx */
static int queued_at(lua_State *L, stream *s, int sidx) {
  if (buf_len(&s->out) <= HIGH_WATER) return flush_done(L, s, WAKE_READY);
  return flush_done(L, s, drain(L, s, HIGH_WATER, parley_deadline(s->timeout),
                                sidx, queued_k));
}

static int queued(lua_State *L, stream *s) { return queued_at(L, s, 1); }

/* stream:send_http_response(status, fields [, reason [, minor [, body
** [, date [, server [, length [, connection]]]]]]]): the head of
** core.http.response_head with the same arguments, and the body, written
** straight into the output buffer */
static int s_send_http_response(lua_State *L) {
  stream *s = check_stream(L, 1);
  size_t bl = 0;
  const char *body = luaL_optlstring(L, 6, NULL, &bl);
  head_sink h;
  int date = lua_toboolean(L, 7);
  lua_settop(L, 10);
  if (s->closed || s->err) return write_failed(L, s);
  h.L = L;
  h.s = s;
  parley_http_response_head(L, 2, date, append_head, &h);
  if (bl > 0 && buf_append(&s->out, body, bl) != 0)
    return luaL_error(L, "not enough memory");
  parley_mark_dirty(&s->p);
  return queued(L, s);
}

/* stream:send_http_reply(status, fields, reason, body, server, keep,
** minor, head): the reply core.http.reply makes of the same arguments
** (head and body, framed from the request's facts), written straight into
** the output buffer */
int parley_stream_queue_reply(lua_State *L, stream *s, int arg) {
  head_sink h;
  if (s->closed || s->err) return 0;
  h.L = L;
  h.s = s;
  parley_http_reply(L, arg, append_head, &h);
  parley_mark_dirty(&s->p);
  return 1;
}

int parley_stream_queued(lua_State *L, stream *s, int sidx) {
  if (s->closed || s->err) return write_failed(L, s);
  return queued_at(L, s, sidx);
}

stream *parley_stream_at(lua_State *L, int idx) {
  stream *s = lua_touserdata(L, idx);
  return s && lua_rawlen(L, idx) == sizeof *s && s->p.flush == flush_cb ? s : NULL;
}

static int s_send_http_reply(lua_State *L) {
  stream *s = check_stream(L, 1);
  lua_settop(L, 9);
  if (!parley_stream_queue_reply(L, s, 2)) return write_failed(L, s);
  return queued(L, s);
}

/* ----------------------------------------------------------- sendfile */

static void sendfile_end(stream *s) {
  if (s->sf_own && s->sf_fd >= 0) close(s->sf_fd);
  s->sf_fd = -1;
  s->sf_own = 0;
}

static int sendfile_k(lua_State *L, int status, lua_KContext ctx);

static int sendfile_result(lua_State *L, stream *s, const char *err) {
  sendfile_end(s);
  if (!err) {
    lua_pushinteger(L, s->xfer);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, err);
  lua_pushinteger(L, s->xfer);
  return 3;
}

/*
** Over TLS the file goes through the output buffer in slices (read(2),
** then SSL_write): the kernel cannot encrypt for us without kTLS.
** >0: bytes queued; 0: the file ended; -1: failed (errno).
*/
static ssize_t queue_file_slice(stream *s) {
  size_t want = s->left > BULK_CHUNK ? BULK_CHUNK : (size_t)s->left;
  ssize_t n;
  if (buf_reserve(&s->out, want) != 0) {
    errno = ENOMEM;
    return -1;
  }
  do n = pread(s->sf_fd, buf_tail(&s->out), want, s->sf_off);
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    s->out.end += (size_t)n;
    s->sf_off += n;
    s->xfer += n;
    s->left -= n;
  }
  return n;
}

static int sendfile_loop(lua_State *L, stream *s, double deadline) {
  int r;
  for (;;) {
    ssize_t n;
    r = drain(L, s, 0, deadline, 0, sendfile_k);
    if (r != WAKE_READY) {
      return sendfile_result(L, s, r < 0 ? (s->closed ? "closed" : io_error(s, s->err))
                                         : parley_wake_message(r));
    }
    if (!s->ssl || s->left == 0) break;
    n = queue_file_slice(s);
    if (n == 0) return sendfile_result(L, s, "file ended early");
    if (n < 0) return sendfile_result(L, s, parley_strerror(errno));
    deadline = parley_deadline(s->timeout);
  }
  while (s->left > 0) {
    size_t chunk = s->left > (1 << 30) ? (size_t)1 << 30 : (size_t)s->left;
    ssize_t n = sendfile(s->p.fd, s->sf_fd, &s->sf_off, chunk);
    if (n > 0) {
      deadline = parley_deadline(s->timeout);   /* progress: a fresh wait */
      s->xfer += n;
      s->left -= n;
    } else if (n == 0) {
      return sendfile_result(L, s, "file ended early");
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN) {
      r = parley_wait(L, &s->p, P_WRITE, NULL, deadline, 1, sendfile_k);
      if (r != WAKE_READY) return sendfile_result(L, s, parley_wake_message(r));
    } else {
      s->err = errno;
      return sendfile_result(L, s, parley_strerror(errno));
    }
  }
  return sendfile_result(L, s, NULL);
}

static int sendfile_k(lua_State *L, int status, lua_KContext ctx) {
  stream *s = resumed_stream(L, 1);
  waiter *w = parley_waited(L);
  (void)status; (void)ctx;
  if (w->result != WAKE_READY) {
    return sendfile_result(L, s, parley_wake_message(w->result));
  }
  return sendfile_loop(L, s, w->deadline);
}

/* sendfile(path | file | fd, [offset], [count]) */
static int s_sendfile(lua_State *L) {
  stream *s = check_stream(L, 1);
  lua_Integer off = luaL_optinteger(L, 3, 0);
  lua_Integer count = luaL_optinteger(L, 4, -1);
  struct stat st;
  int fd;
  luaL_argcheck(L, off >= 0, 3, "negative offset");
  lua_settop(L, 4);
  if (s->closed) return write_failed(L, s);
  sendfile_end(s);
  if (lua_type(L, 2) == LUA_TSTRING) {
    fd = open(lua_tostring(L, 2), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      lua_pushnil(L);
      lua_pushstring(L, parley_strerror(errno));
      lua_pushinteger(L, 0);
      return 3;
    }
    s->sf_own = 1;
  } else {
    fd = sink_fd(L, 2);
  }
  s->sf_fd = fd;
  s->xfer = 0;
  if (fstat(fd, &st) != 0) return sendfile_result(L, s, parley_strerror(errno));
  if (count < 0) count = st.st_size > off ? (lua_Integer)st.st_size - off : 0;
  s->sf_off = (off_t)off;
  s->left = count;
  return sendfile_loop(L, s, parley_deadline(s->timeout));
}

/* -------------------------------------------------------------- close */

/*
** close_notify goes out without waiting for the peer's (RFC 8446 §6.1
** lets us close at once); a connection that failed gets no alert.
*/
static void tls_end(stream *s) {
  if (!s->ssl) return;
  if (!s->err && !s->tlserr[0] && SSL_is_init_finished(s->ssl)) {
    ERR_clear_error();
    SSL_shutdown(s->ssl);
    ERR_clear_error();
  }
  SSL_free(s->ssl);
  s->ssl = NULL;
}

static void release(stream *s) {
  tls_end(s);
  if (s->p.fd >= 0) {
    parley_unwatch(&s->p);
    close(s->p.fd);
    s->p.fd = -1;
  }
  s->closed = 1;
  buf_free(&s->in);
  buf_free(&s->out);
  sendfile_end(s);
  if (s->ai) {
    freeaddrinfo(s->ai);
    s->ai = s->ai_next = NULL;
  }
}

static int close_k(lua_State *L, int status, lua_KContext ctx) {
  stream *s = resumed_stream(L, 1);
  waiter *w = parley_waited(L);
  int r = w->result;
  (void)status; (void)ctx;
  if (r == WAKE_READY) r = drain(L, s, 0, w->deadline, 0, close_k);
  parley_wake_all(&s->p, WAKE_CLOSED);
  release(s);
  lua_pushinteger(L, 1);
  return 1;
}

/* queued output goes out first (within the timeout), then the socket closes */
static int s_close(lua_State *L) {
  stream *s = check_stream(L, 1);
  lua_settop(L, 1);
  if (!s->closed && !s->err && buf_len(&s->out) > 0) {
    drain(L, s, 0, parley_deadline(s->timeout), 0, close_k);
  }
  if (!s->closed) {
    parley_wake_all(&s->p, WAKE_CLOSED);
    release(s);
  }
  lua_pushinteger(L, 1);
  return 1;
}

static int s_gc(lua_State *L) {
  stream *s = check_stream(L, 1);
  if (!s->closed) {
    if (!s->err && buf_len(&s->out) > 0) write_some(s);   /* best effort */
    parley_forget(&s->p);
    release(s);
  }
  free(s->tlserr);
  s->tlserr = NULL;
  s->lasterr = NULL;
  return 0;
}

/* --------------------------------------------------------- handshake */

static int handshake_k(lua_State *L, int status, lua_KContext ctx);

/* runs the handshake under the deadline: true | nil, err */
static int handshake_loop(lua_State *L, stream *s, double deadline) {
  for (;;) {
    int r, dir = P_READ;
    if (s->closed) return fail(L, s, "closed");
    if (!s->ssl) return fail(L, s, "not a tls stream");
    if (s->tlserr[0]) return fail(L, s, s->tlserr);
    ERR_clear_error();
    r = SSL_do_handshake(s->ssl);
    if (r == 1) {
      s->p.rd_ready = 1;   /* records may already wait inside OpenSSL */
      lua_pushboolean(L, 1);
      return 1;
    }
    switch (parley_tls_result(s->ssl, r, s->tlserr, PARLEY_TLS_ERRLEN)) {
      case TLS_WANT_READ:
        if (!s->p.hup) s->p.rd_ready = 0;
        break;
      case TLS_WANT_WRITE:
        dir = P_WRITE;
        break;
      case TLS_EOF:
        snprintf(s->tlserr, PARLEY_TLS_ERRLEN, "closed");
        return fail(L, s, s->tlserr);
      default:
        return fail(L, s, s->tlserr);
    }
    r = parley_wait(L, &s->p, dir, NULL, deadline, 0, handshake_k);
    if (r != WAKE_READY) return fail(L, s, parley_wake_message(r));
  }
}

static int handshake_k(lua_State *L, int status, lua_KContext ctx) {
  stream *s = resumed_stream(L, 1);
  waiter *w = parley_waited(L);
  (void)status; (void)ctx;
  if (w->result != WAKE_READY) return fail(L, s, parley_wake_message(w->result));
  return handshake_loop(L, s, w->deadline);
}

/* handshake([timeout]): completes the TLS handshake now (else the first I/O does) */
static int s_handshake(lua_State *L) {
  stream *s = check_stream(L, 1);
  double timeout = luaL_optnumber(L, 2, s->timeout);
  lua_settop(L, 1);
  return handshake_loop(L, s, parley_deadline(timeout));
}

/* makes s a TLS stream of the context at ctxidx; NULL or a message in msg */
static const char *tls_attach(lua_State *L, stream *s, int ctxidx,
                              const char *servername, SSL_SESSION *sess,
                              char *msg, size_t msglen) {
  ctxidx = lua_absindex(L, ctxidx);
  if (!s->tlserr && !(s->tlserr = malloc(PARLEY_TLS_ERRLEN))) return "out of memory";
  s->tlserr[0] = 0;
  s->ssl = parley_tls_new(L, ctxidx, s->p.fd, servername, sess, msg, msglen);
  if (!s->ssl) return msg;
  /* the stream is on top of the stack: keep its context alive with it */
  lua_pushvalue(L, ctxidx);
  lua_setiuservalue(L, -2, 1);
  return NULL;
}

const char *parley_stream_tls_accept(lua_State *L, struct stream *s, int ctxidx) {
  static char msg[PARLEY_TLS_ERRLEN];   /* read at once by the caller */
  return tls_attach(L, s, ctxidx, NULL, NULL, msg, sizeof msg);
}

/*
** tls_attach(ctx, [servername], [session], [tickets]): the Lua part of
** starttls, after it flushed.  Bytes already read in cleartext are
** refused, never carried into TLS (RFC 3207 §4.2, CVE-2011-0411).
** session: another TLS stream (its current session is offered) or a
** saved session.  tickets: how many TLS 1.3 session tickets a server
** sends after the handshake (OpenSSL's default is 2).
*/
static int s_tls_attach(lua_State *L) {
  stream *s = check_stream(L, 1);
  const char *sn = luaL_optstring(L, 3, NULL);
  SSL_SESSION *sess = NULL;
  stream *other;
  char msg[PARLEY_TLS_ERRLEN];
  lua_Integer tickets = luaL_optinteger(L, 5, -1);
  luaL_checkudata(L, 2, PARLEY_TLS_CONTEXT);
  lua_settop(L, 4);
  if (s->closed) return fail(L, s, "closed");
  if (s->ssl) return fail(L, s, "already tls");
  if (buf_len(&s->in) > 0) return fail(L, s, "data after starttls");
  if (buf_len(&s->out) > 0) return fail(L, s, "output not flushed");
  if ((other = luaL_testudata(L, 4, PARLEY_STREAM)) != NULL) {
    if (other->ssl) sess = SSL_get1_session(other->ssl);
  } else if (!lua_isnil(L, 4)) {
    sess = parley_tls_tosession(L, 4);
    if (!sess) return luaL_argerror(L, 4, "tls stream or session expected");
    SSL_SESSION_up_ref(sess);
  }
  lua_pushvalue(L, 1);   /* tls_attach wants the stream on top */
  if (tls_attach(L, s, 2, sn, sess, msg, sizeof msg)) {
    if (sess) SSL_SESSION_free(sess);
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
  }
  if (sess) SSL_SESSION_free(sess);
  if (tickets >= 0) SSL_set_num_tickets(s->ssl, (size_t)tickets);
  lua_pushboolean(L, 1);
  return 1;
}

static int s_tlsinfo(lua_State *L) {
  stream *s = check_stream(L, 1);
  if (!s->ssl) lua_pushnil(L);
  else parley_tls_pushinfo(L, s->ssl);
  return 1;
}

/* the session to offer when resuming (nil before the handshake or on a plain stream) */
static int s_tlssession(lua_State *L) {
  stream *s = check_stream(L, 1);
  SSL_SESSION *sess = s->ssl ? SSL_get1_session(s->ssl) : NULL;
  if (!sess) {
    lua_pushnil(L);
    return 1;
  }
  parley_tls_pushsession(L, sess);
  SSL_SESSION_free(sess);
  return 1;
}

/* ------------------------------------------------------------ options */

static int s_settimeout(lua_State *L) {
  stream *s = check_stream(L, 1);
  s->timeout = lua_isnoneornil(L, 2) ? -1 : luaL_checknumber(L, 2);
  lua_pushinteger(L, 1);
  return 1;
}

static int setsockopt_bool(lua_State *L, stream *s, int level, int opt) {
  int v = lua_toboolean(L, 3);
  if (setsockopt(s->p.fd, level, opt, &v, sizeof v) != 0) {
    return fail(L, s, parley_strerror(errno));
  }
  lua_pushinteger(L, 1);
  return 1;
}

static int s_setoption(lua_State *L) {
  stream *s = check_stream(L, 1);
  const char *name = luaL_checkstring(L, 2);
  if (strcmp(name, "max-line") == 0) {
    lua_Integer n = luaL_checkinteger(L, 3);
    luaL_argcheck(L, n >= 3, 3, "max-line must be at least 3");
    s->max_line = (size_t)n;
  } else if (strcmp(name, "lenient") == 0) {
    s->lenient = lua_toboolean(L, 3);
  } else if (s->closed) {
    return fail(L, s, "closed");
  } else if (strcmp(name, "tcp-nodelay") == 0) {
    return setsockopt_bool(L, s, IPPROTO_TCP, TCP_NODELAY);
  } else if (strcmp(name, "keepalive") == 0) {
    return setsockopt_bool(L, s, SOL_SOCKET, SO_KEEPALIVE);
  } else if (strcmp(name, "oobinline") == 0) {
    /* urgent data stays in the byte stream: an FTP client's ABOR sent
       with MSG_OOB (RFC 959 4.1.3's Synch) would otherwise lose its
       last byte, the LF, and the line would never end */
    s->oobinline = lua_toboolean(L, 3);
    return setsockopt_bool(L, s, SOL_SOCKET, SO_OOBINLINE);
  } else if (strcmp(name, "linger") == 0) {
    struct linger li;
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "on");
    li.l_onoff = lua_toboolean(L, -1);
    lua_getfield(L, 3, "timeout");
    li.l_linger = (int)luaL_optinteger(L, -1, 0);
    if (setsockopt(s->p.fd, SOL_SOCKET, SO_LINGER, &li, sizeof li) != 0) {
      return fail(L, s, parley_strerror(errno));
    }
  } else {
    return luaL_argerror(L, 2, "unknown option");
  }
  lua_pushinteger(L, 1);
  return 1;
}

static int s_getoption(lua_State *L) {
  stream *s = check_stream(L, 1);
  const char *name = luaL_checkstring(L, 2);
  if (strcmp(name, "max-line") == 0) lua_pushinteger(L, (lua_Integer)s->max_line);
  else if (strcmp(name, "lenient") == 0) lua_pushboolean(L, s->lenient);
  else if (strcmp(name, "timeout") == 0) {
    if (s->timeout < 0) lua_pushnil(L); else lua_pushnumber(L, s->timeout);
  } else return luaL_argerror(L, 2, "unknown option");
  return 1;
}

static int s_getpeername(lua_State *L) {
  stream *s = check_stream(L, 1);
  if (s->closed) return fail(L, s, "closed");
  return parley_push_sockname(L, s->p.fd, 1);
}

static int s_getsockname(lua_State *L) {
  stream *s = check_stream(L, 1);
  if (s->closed) return fail(L, s, "closed");
  return parley_push_sockname(L, s->p.fd, 0);
}

static int s_getfd(lua_State *L) {
  lua_pushinteger(L, check_stream(L, 1)->p.fd);
  return 1;
}

static int s_buffered(lua_State *L) {
  stream *s = check_stream(L, 1);
  lua_pushinteger(L, (lua_Integer)buf_len(&s->in));
  lua_pushinteger(L, (lua_Integer)buf_len(&s->out));
  return 2;
}

static int s_lasterror(lua_State *L) {
  stream *s = check_stream(L, 1);
  if (s->lasterr) lua_pushstring(L, s->lasterr); else lua_pushnil(L);
  return 1;
}

static int s_tostring(lua_State *L) {
  stream *s = check_stream(L, 1);
  char detail[32];
  if (s->closed) snprintf(detail, sizeof detail, "(closed)");
  else snprintf(detail, sizeof detail, "(fd %d)", s->p.fd);
  return parley_tostring(L, detail);
}

/* -------------------------------------------------------- constructors */

static stream *new_stream(lua_State *L) {
  /* the user value keeps a TLS stream's context alive */
  stream *s = lua_newuserdatauv(L, sizeof *s, 1);
  memset(s, 0, sizeof *s);
  s->p.fd = -1;
  s->p.rd_ready = 1;
  s->p.flush = flush_cb;
  s->timeout = -1;
  s->max_line = DEFAULT_MAX_LINE;
  s->sf_fd = -1;
  luaL_setmetatable(L, PARLEY_STREAM);
  return s;
}

static void nodelay(int fd) {
  int one = 1;
  /* we coalesce writes ourselves; Nagle would only add latency */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

stream *parley_stream_new(lua_State *L, int fd) {
  stream *s = new_stream(L);
  int e;
  s->p.fd = fd;
  nodelay(fd);
  if ((e = parley_watch(&s->p)) != 0) {
    release(s);
    luaL_error(L, "cannot watch descriptor: %s", parley_strerror(e));
  }
  return s;
}

/* adopt(fd): a connected socket (e.g. from LuaSocket) becomes a stream */
static int l_adopt(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) {
    lua_pushnil(L);
    lua_pushstring(L, parley_strerror(errno));
    return 2;
  }
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  parley_stream_new(L, fd);
  return 1;
}

static int connect_k(lua_State *L, int status, lua_KContext ctx);

/* binds fd to the local host and port at stack indices 4 and 5, if any */
static int bind_local(lua_State *L, int fd, int family) {
  struct addrinfo *res, *ai;
  const char *err;
  int e = EADDRNOTAVAIL;
  if (lua_isnoneornil(L, 4)) return 0;
  err = parley_resolve(lua_tostring(L, 4), luaL_optstring(L, 5, "0"), 1, &res);
  if (err) return EADDRNOTAVAIL;
  for (ai = res; ai; ai = ai->ai_next) {
    if (ai->ai_family != family) continue;
    e = bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : errno;
    break;
  }
  freeaddrinfo(res);
  return e;
}

/* tries the remaining addresses in turn; the stream is at index 6 */
static int connect_loop(lua_State *L, stream *s, double deadline, int resumed,
                        int last_err) {
  for (;;) {
    struct addrinfo *ai;
    int e;
    if (resumed) {
      socklen_t len = sizeof e;
      resumed = 0;
      if (getsockopt(s->p.fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) e = errno;
      if (e == 0) goto connected;
      last_err = e;
      parley_unwatch(&s->p);
      close(s->p.fd);
      s->p.fd = -1;
    }
    ai = s->ai_next;
    if (!ai) {
      release(s);
      lua_pushnil(L);
      lua_pushstring(L, parley_strerror(last_err ? last_err : ECONNREFUSED));
      return 2;
    }
    s->ai_next = ai->ai_next;
    s->p.fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                     ai->ai_protocol);
    if (s->p.fd < 0) {
      last_err = errno;
      continue;
    }
    if ((e = bind_local(L, s->p.fd, ai->ai_family)) != 0 ||
        (e = parley_watch(&s->p)) != 0) {
      close(s->p.fd);
      s->p.fd = -1;
      last_err = e;
      continue;
    }
    if (connect(s->p.fd, ai->ai_addr, ai->ai_addrlen) == 0) goto connected;
    if (errno != EINPROGRESS) {
      last_err = errno;
      parley_unwatch(&s->p);
      close(s->p.fd);
      s->p.fd = -1;
      continue;
    }
    e = parley_wait(L, &s->p, P_WRITE, NULL, deadline, 0, connect_k);
    if (e != WAKE_READY) {
      release(s);
      lua_pushnil(L);
      lua_pushstring(L, parley_wake_message(e));
      return 2;
    }
    resumed = 1;
  }
connected:
  freeaddrinfo(s->ai);
  s->ai = s->ai_next = NULL;
  nodelay(s->p.fd);
  lua_settop(L, 6);
  return 1;
}

static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  stream *s = resumed_stream(L, 6);
  waiter *w = parley_waited(L);
  (void)status; (void)ctx;
  if (w->result != WAKE_READY) {
    release(s);
    lua_pushnil(L);
    lua_pushstring(L, parley_wake_message(w->result));
    return 2;
  }
  return connect_loop(L, s, w->deadline, 1, 0);
}

/* v in decimal, written backwards from `end`: its first byte (snprintf
** costs ten times as much, per FETCH line) */
static const char *decimal(char *end, lua_Integer v, size_t *n) {
  char *p = end;
  lua_Unsigned u = v < 0 ? 0u - (lua_Unsigned)v : (lua_Unsigned)v;
  do {
    *--p = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) *--p = '-';
  *n = (size_t)(end - p);
  return p;
}

/* stream:send_list(t [, i [, j]]): t[i..j] (strings and numbers) queued
** as one send of their concatenation, written straight into the output
** buffer: an IMAP FETCH response (numbers, names and a message's header
** block) without building it as a Lua string first */
static int s_send_list(lua_State *L) {
  stream *s = check_stream(L, 1);
  lua_Integer i = luaL_optinteger(L, 3, 1), j, k;
  size_t before;
  luaL_checktype(L, 2, LUA_TTABLE);
  j = luaL_opt(L, luaL_checkinteger, 4, luaL_len(L, 2));
  lua_settop(L, 4);
  if (s->closed || s->err) return write_failed(L, s);
  before = buf_len(&s->out);
  for (k = i; k <= j; k++) {
    char num[24];
    const char *p;
    size_t n;
    int t = lua_geti(L, 2, k);
    if (t == LUA_TNUMBER && lua_isinteger(L, -1)) {
      p = decimal(num + sizeof num, lua_tointeger(L, -1), &n);
    } else if (t == LUA_TSTRING || t == LUA_TNUMBER) {
      p = lua_tolstring(L, -1, &n);   /* a float as table.concat writes it */
    } else {
      s->out.end -= buf_len(&s->out) - before;   /* nothing queued */
      return luaL_error(L, "item %I of the list is a %s, not a string or a number",
                        (LUAI_UACINT)k, luaL_typename(L, -1));
    }
    if (buf_append(&s->out, p, n) != 0) {
      s->out.end -= buf_len(&s->out) - before;   /* nothing queued */
      return luaL_error(L, "not enough memory");
    }
    lua_pop(L, 1);
  }
  if (buf_len(&s->out) != before) parley_mark_dirty(&s->p);
  return queued(L, s);
}

/* connect(host, port, [timeout], [bind_host], [bind_port]) */
static int l_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  const char *port = luaL_checkstring(L, 2);
  double timeout = luaL_optnumber(L, 3, -1);
  const char *err;
  stream *s;
  luaL_optstring(L, 4, NULL);
  luaL_optstring(L, 5, NULL);
  lua_settop(L, 5);
  s = new_stream(L);
  if ((err = parley_resolve(host, port, 0, &s->ai)) != NULL) {
    s->ai = NULL;
    release(s);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  s->ai_next = s->ai;
  return connect_loop(L, s, parley_deadline(timeout), 0, 0);
}

int parley_open_stream(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"receive", s_receive}, {"receive_some", s_receive_some},
    {"receive_until", s_receive_until}, {"receive_to_fd", s_receive_to},
    {"receive_http_head", s_receive_http_head},
    {"receive_telnet_line", s_receive_telnet_line},
    {"send_telnet", s_send_telnet}, {"send_list", s_send_list},
    {"send_http_response", s_send_http_response},
    {"send_http_reply", s_send_http_reply},
    {"send", s_send}, {"flush", s_flush}, {"sendfile", s_sendfile},
    {"close", s_close}, {"settimeout", s_settimeout},
    {"setoption", s_setoption}, {"getoption", s_getoption},
    {"getpeername", s_getpeername}, {"getsockname", s_getsockname},
    {"getfd", s_getfd}, {"buffered", s_buffered}, {"lasterror", s_lasterror},
    {"tls_attach", s_tls_attach}, {"handshake", s_handshake},
    {"tlsinfo", s_tlsinfo}, {"tlssession", s_tlssession},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", s_gc}, {"__close", s_close}, {"__tostring", s_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"connect", l_connect}, {"adopt", l_adopt}, {NULL, NULL}
  };
  parley_newclass(L, PARLEY_STREAM, methods, meta);
  luaL_setfuncs(L, funcs, 0);
  /* Lua adds methods of its own (lines, receive_to with function sinks) */
  luaL_getmetatable(L, PARLEY_STREAM);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "stream_methods");
  lua_pop(L, 1);
  return 0;
}
