/*
** The driver's internals, shared by loop.c, stream.c and listener.c.
**
** One epoll loop per process.  Every descriptor is registered once,
** edge-triggered, for both directions; a task that meets EAGAIN parks a
** waiter on the descriptor (and on the timer heap when it has a
** deadline) and yields from C.  The loop wakes the waiter and resumes
** the task, which retries the system call.  Since a task only waits
** after EAGAIN, edge-triggering never loses a wake-up.
*/
#ifndef PARLEY_DRIVER_H
#define PARLEY_DRIVER_H

#include "parley.h"

#define PARLEY_TASK "parley.task"
#define PARLEY_STREAM "parley.stream"
#define PARLEY_LISTENER "parley.listener"
#define PARLEY_COND "parley.cond"

enum { W_IDLE, W_WAITING, W_FIRED };
enum { WAKE_READY, WAKE_TIMEOUT, WAKE_CLOSED, WAKE_CANCEL };
enum { P_READ, P_WRITE };

struct task;
struct pollable;
struct waitq;

typedef struct waiter {
  struct task *task;      /* task to resume; NULL for an inline wait */
  int state;              /* W_* */
  int result;             /* WAKE_* once fired */
  double deadline;        /* monotonic seconds; < 0: none */
  size_t heap_idx;        /* 1-based slot in the timer heap; 0: not there */
  struct pollable *p;     /* descriptor waited on, or NULL */
  struct waitq *q;        /* queue waited in, or NULL */
  struct waiter *qnext, *qprev;
} waiter;

/* a FIFO of waiters: conditions, joins */
typedef struct waitq {
  waiter *head, *tail;
} waitq;

typedef struct pollable {
  int fd;
  /*
  ** Read readiness as nginx keeps it: rd_ready says input may be
  ** waiting (an edge came since the last short read), so a receive
  ** that needs more data waits at once instead of probing for EAGAIN;
  ** hup says the peer's FIN (or an error) was seen, after which every
  ** read is tried, since no further edge will come.
  */
  int rd_ready, hup;
  waiter *rd, *wr;
  size_t dirty_idx;                   /* 1-based slot in the dirty list */
  void (*flush)(struct pollable *);   /* writes queued output, no wait */
} pollable;

typedef struct task {
  lua_State *co;
  waiter w;
  waitq joiners;
  int nargs;              /* arguments waiting for the first resume */
  int started, done, failed, cancel, main;
} task;

/* monotonic clock, seconds */
double parley_now(void);

/* deadline for a timeout in seconds (< 0: none) */
double parley_deadline(double timeout);

/*
** Registers and forgets descriptors.  parley_watch adds fd to epoll
** (both directions, edge-triggered) and maps it to p.
*/
int parley_watch(pollable *p);
void parley_unwatch(pollable *p);

/* wakes every waiter of p with `result` (used when p is closed) */
void parley_wake_all(pollable *p, int result);

/* detaches p's waiters without waking them (p is being collected) */
void parley_forget(pollable *p);

/* queues p for a flush before the loop next sleeps */
void parley_mark_dirty(pollable *p);
void parley_unmark_dirty(pollable *p);

/*
** Waits for p to be ready in direction dir (or for q to be signalled, or
** just for the deadline when both are NULL).  In a task it yields and the
** task continues in k(L, LUA_YIELD, ctx), where parley_waited(L) gives the
** waiter (its result and deadline).  Anywhere else (main thread, a
** coroutine of the user's, a metamethod) it runs the loop right here
** until the wait is over and returns the WAKE_* result.
*/
int parley_wait(lua_State *L, pollable *p, int dir, waitq *q,
                double deadline, lua_KContext ctx, lua_KFunction k);
waiter *parley_waited(lua_State *L);

/* wakes the first waiter of q (or all); returns how many were woken */
int parley_signal(waitq *q, int all);

/* pushes the Lua error message for a WAKE_* result other than READY */
const char *parley_wake_message(int result);

/* short lowercase text for an errno, LuaSocket's wording where it has one */
const char *parley_strerror(int err);

/* spawns a task running the function at `idx` (with nargs arguments above it); pops them */
task *parley_spawn(lua_State *L, int nargs);

/*
** Addresses (addr.c).  parley_resolve fills an addrinfo list for a host
** ("*" or "" for any IPv4 address when passive) and a numeric port; the
** caller frees it with freeaddrinfo.  Returns NULL or a message.
*/
struct addrinfo;
const char *parley_resolve(const char *host, const char *port, int passive,
                           struct addrinfo **res);
/* pushes ip, port, family ("inet" / "inet6") of a socket's address */
int parley_push_sockname(lua_State *L, int fd, int peer);

/* creates a stream on a connected non-blocking descriptor */
struct stream;
struct stream *parley_stream_new(lua_State *L, int fd);

/*
** Makes the stream on top of the stack the server end of a TLS
** connection with the context at ctxidx; its handshake runs on its
** first I/O or stream:handshake().  NULL, or why it failed.
*/
const char *parley_stream_tls_accept(lua_State *L, struct stream *s, int ctxidx);

/*
** A reply queued on a stream from C (response.c's res:send), without a
** call through Lua: parley_stream_at is the driver stream at idx or NULL;
** parley_stream_queue_reply writes the reply core.http.reply makes of the
** arguments at arg..arg+7 into s's output buffer (raising on header
** injection before anything is queued): 1, or 0 when s has failed and
** nothing was queued; parley_stream_queued then gives what
** stream:send_http_reply returns (true, or nil, err), past the high-water
** mark after waiting for the peer to read (the stream found at sidx again
** on resuming).
*/
struct stream *parley_stream_at(lua_State *L, int idx);
int parley_stream_queue_reply(lua_State *L, struct stream *s, int arg);
int parley_stream_queued(lua_State *L, struct stream *s, int sidx);

/*
** HTTP heads straight from and into a stream's buffers (http.c), for
** stream:receive_http_head and stream:send_http_response.
** parley_http_receive_request parses a request head at buf[0, len) with
** the limits at stack index `limits` (a table, core.http.limits
** userdata or nil) and pushes what core.http.parse_request returns after
** its byte count: 4 values (method, target, minor, headers; *used = the
** head's bytes), 3 (nil, reason, status) or 0 (incomplete).  With `obj`
** (stack index of a request metatable) a parsed head gives the server's
** request object instead (8 values, or 5 for bad framing: see
** push_request in http.c; *used set).
** parley_http_response_head checks status, fields [, reason [, minor]]
** at arg..arg+3 as core.http.response_head does (raising on header
** injection), adds the server's own fields from server, length and
** connection at arg+6..arg+8 and a Date field of now when `date` is set,
** and hands the head to emit.
** parley_http_reply hands emit the reply core.http.reply makes of the
** arguments at arg..arg+7: its head, then its body when it has one.
*/
int parley_http_receive_request(lua_State *L, const char *buf, size_t len,
                                int limits, size_t seen, size_t *used,
                                int obj);
void parley_http_response_head(lua_State *L, int arg, int date,
                               void (*emit)(void *, const char *, size_t),
                               void *ud);
void parley_http_reply(lua_State *L, int arg,
                       void (*emit)(void *, const char *, size_t), void *ud);

/*
** Telnet lines straight from and into a stream's buffers (telnet.c), for
** stream:receive_telnet_line and stream:send_telnet.  The codec is the
** core.telnet codec (a PARLEY_TELNET_CODEC userdata, checked by the
** caller) at stack index `codec`.
** parley_telnet_line pushes the line at the head of buf[0, len) and sets
** *used to its bytes with its end, when the codec is between sequences in
** NVT line mode and the line is whole, at most `max` bytes and holds no
** IAC and no ^C; else it pushes false (*used = 0): the caller feeds the
** codec instead.  parley_telnet_escape writes text escaped as
** codec:escape(p, eol) does into out, which has room for 2 n + 2 bytes,
** and returns the bytes written.
*/
#define PARLEY_TELNET_CODEC "parley.telnet.codec"
int parley_telnet_line(lua_State *L, int codec, const char *buf, size_t len,
                       size_t max, size_t *used);
size_t parley_telnet_escape(lua_State *L, int codec, const char *p, size_t n,
                            int eol, char *out);

#endif
