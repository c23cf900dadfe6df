/*
** loop: the epoll loop, the timer heap, tasks and conditions.
**
** Lua functions (core.*): run, spawn, sleep, now, current, cond,
** on_signal, set_logger; task methods join, cancel, status.
*/
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"

#define MAX_EVENTS 256

typedef struct tslot {
  double key;              /* no later than w's deadline while it waits */
  waiter *w;
} tslot;

typedef struct loop {
  int epfd;
  pollable **fdtab;        /* descriptor -> pollable */
  size_t fdcap;
  tslot *heap;             /* timer min-heap by key, 1-based */
  size_t nheap, heapcap;
  task **ready;            /* ring of tasks to resume */
  size_t rhead, rcount, rcap;
  pollable **dirty;        /* streams with queued output, 1-based */
  size_t ndirty, dirtycap;
  task *current;           /* task being resumed, or NULL */
  size_t ntasks;           /* spawned and not finished */
  size_t nio;              /* waiters parked on descriptors */
  int main_failed;         /* run()'s task raised: stop turning */
  int sigpipe[2];          /* self-pipe for signals */
  int nsignals;            /* handlers installed */
  lua_State *L;            /* the state that loaded us */
} loop;

/* One loop per process (see DESIGN.md); it lives as long as the process. */
static loop *LP;

static const char TASKS_KEY = 't';    /* registry: lightuserdata -> task ud */
static const char SIGNALS_KEY = 's';  /* registry: signum -> handler */
static const char LOGGER_KEY = 'l';   /* registry: function(msg) */

/* ---------------------------------------------------------------- clock */

double parley_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double parley_deadline(double timeout) {
  return timeout < 0 ? -1 : parley_now() + timeout;
}

/* ----------------------------------------------------------- timer heap */

/*
** Timers are lazy, as in nginx and Go: a waiter keeps its slot in the
** heap across waits, keyed by a deadline no later than its real one.  A
** stream that waits again with the same timeout only moves its real
** deadline later (no heap work per request); when a slot's key comes due
** the loop looks at the waiter: due for real, it times out; waiting with
** a later deadline, the slot is re-keyed; not waiting, the slot goes.
** The key sits in the array so that sifting touches no waiter.
*/

static int heap_less(size_t a, size_t b) {
  return LP->heap[a].key < LP->heap[b].key;
}

static void heap_swap(size_t a, size_t b) {
  tslot t = LP->heap[a];
  LP->heap[a] = LP->heap[b];
  LP->heap[b] = t;
  LP->heap[a].w->heap_idx = a;
  LP->heap[b].w->heap_idx = b;
}

static void heap_up(size_t i) {
  while (i > 1 && heap_less(i, i / 2)) {
    heap_swap(i, i / 2);
    i /= 2;
  }
}

static void heap_down(size_t i) {
  for (;;) {
    size_t l = 2 * i, r = l + 1, m = i;
    if (l <= LP->nheap && heap_less(l, m)) m = l;
    if (r <= LP->nheap && heap_less(r, m)) m = r;
    if (m == i) return;
    heap_swap(i, m);
    i = m;
  }
}

static int heap_push(waiter *w, double key) {
  if (LP->nheap + 1 >= LP->heapcap) {
    size_t cap = LP->heapcap ? LP->heapcap * 2 : 64;
    tslot *h = realloc(LP->heap, cap * sizeof *h);
    if (!h) return -1;
    LP->heap = h;
    LP->heapcap = cap;
  }
  LP->nheap++;
  LP->heap[LP->nheap].key = key;
  LP->heap[LP->nheap].w = w;
  w->heap_idx = LP->nheap;
  heap_up(LP->nheap);
  return 0;
}

/* gives up w's slot: needed only before w's memory goes away */
static void heap_remove(waiter *w) {
  size_t i = w->heap_idx;
  if (i == 0) return;
  w->heap_idx = 0;
  if (i != LP->nheap) {
    LP->heap[i] = LP->heap[LP->nheap];
    LP->heap[i].w->heap_idx = i;
    LP->nheap--;
    heap_up(i);
    heap_down(i);
  } else {
    LP->nheap--;
  }
}

/* w waits until `deadline`: its slot's key must not be later */
static int heap_arm(waiter *w, double deadline) {
  size_t i = w->heap_idx;
  if (i == 0) return heap_push(w, deadline);
  if (deadline < LP->heap[i].key) {
    LP->heap[i].key = deadline;
    heap_up(i);
  }
  return 0;
}

/* the slot on top came due at `now` */
static void heap_due(double now);

/* ---------------------------------------------------------- ready queue */

static void ready_push(task *t) {
  if (LP->rcount == LP->rcap) {
    size_t cap = LP->rcap ? LP->rcap * 2 : 64, i;
    task **r = malloc(cap * sizeof *r);
    if (!r) abort();   /* cannot lose a task; out of memory here is fatal */
    for (i = 0; i < LP->rcount; i++) r[i] = LP->ready[(LP->rhead + i) % LP->rcap];
    free(LP->ready);
    LP->ready = r;
    LP->rcap = cap;
    LP->rhead = 0;
  }
  LP->ready[(LP->rhead + LP->rcount) % LP->rcap] = t;
  LP->rcount++;
}

static task *ready_pop(void) {
  task *t;
  if (LP->rcount == 0) return NULL;
  t = LP->ready[LP->rhead];
  LP->rhead = (LP->rhead + 1) % LP->rcap;
  LP->rcount--;
  return t;
}

/* ------------------------------------------------------------- waiters */

static void waitq_remove(waiter *w) {
  waitq *q = w->q;
  if (!q) return;
  if (w->qprev) w->qprev->qnext = w->qnext; else q->head = w->qnext;
  if (w->qnext) w->qnext->qprev = w->qprev; else q->tail = w->qprev;
  w->q = NULL;
  w->qnext = w->qprev = NULL;
}

/* takes w off everything it waits on (its timer slot lingers: see above) */
static void waiter_detach(waiter *w) {
  if (w->p) {
    if (w->p->rd == w) w->p->rd = NULL;
    if (w->p->wr == w) w->p->wr = NULL;
    w->p = NULL;
    LP->nio--;
  }
  waitq_remove(w);
}

static void wake(waiter *w, int result) {
  if (w->state != W_WAITING) return;
  waiter_detach(w);
  w->state = W_FIRED;
  w->result = result;
  if (w->task) ready_push(w->task);
}

static void heap_due(double now) {
  waiter *w = LP->heap[1].w;
  if (w->state == W_WAITING && w->deadline >= 0 && w->deadline > now) {
    LP->heap[1].key = w->deadline;   /* waited again since: later */
    heap_down(1);
    return;
  }
  heap_remove(w);
  if (w->state == W_WAITING && w->deadline >= 0) wake(w, WAKE_TIMEOUT);
}

void parley_wake_all(pollable *p, int result) {
  if (p->rd) wake(p->rd, result);
  if (p->wr) wake(p->wr, result);
}

void parley_forget(pollable *p) {
  if (p->rd) waiter_detach(p->rd);
  if (p->wr) waiter_detach(p->wr);
}

int parley_signal(waitq *q, int all) {
  int n = 0;
  while (q->head) {
    wake(q->head, WAKE_READY);
    n++;
    if (!all) break;
  }
  return n;
}

static void arm(lua_State *L, waiter *w, pollable *p, int dir, waitq *q,
                double deadline) {
  w->state = W_WAITING;
  w->result = WAKE_READY;
  w->deadline = deadline;
  if (p) {
    waiter **slot = dir == P_READ ? &p->rd : &p->wr;
    if (*slot) luaL_error(L, "another task is already %s this handle",
                          dir == P_READ ? "reading from" : "writing to");
    *slot = w;
    w->p = p;
    LP->nio++;
  }
  if (q) {
    w->q = q;
    w->qnext = NULL;
    w->qprev = q->tail;
    if (q->tail) q->tail->qnext = w; else q->head = w;
    q->tail = w;
  }
  if (deadline >= 0 && heap_arm(w, deadline) != 0) {
    waiter_detach(w);
    w->state = W_IDLE;
    luaL_error(L, "not enough memory");
  }
}

const char *parley_wake_message(int result) {
  switch (result) {
    case WAKE_TIMEOUT: return "timeout";
    case WAKE_CLOSED: return "closed";
    case WAKE_CANCEL: return "cancelled";
    default: return "ready";
  }
}

/* ---------------------------------------------------------- descriptors */

int parley_watch(pollable *p) {
  struct epoll_event ev;
  if ((size_t)p->fd >= LP->fdcap) {
    size_t cap = LP->fdcap ? LP->fdcap : 1024;
    pollable **t;
    while (cap <= (size_t)p->fd) cap *= 2;
    t = realloc(LP->fdtab, cap * sizeof *t);
    if (!t) return ENOMEM;
    memset(t + LP->fdcap, 0, (cap - LP->fdcap) * sizeof *t);
    LP->fdtab = t;
    LP->fdcap = cap;
  }
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.fd = p->fd;
  if (epoll_ctl(LP->epfd, EPOLL_CTL_ADD, p->fd, &ev) != 0) return errno;
  LP->fdtab[p->fd] = p;
  return 0;
}

/* call before close(p->fd); closing the descriptor leaves the epoll set */
void parley_unwatch(pollable *p) {
  if (p->fd >= 0 && (size_t)p->fd < LP->fdcap && LP->fdtab[p->fd] == p) {
    LP->fdtab[p->fd] = NULL;
  }
  parley_unmark_dirty(p);
}

void parley_mark_dirty(pollable *p) {
  if (p->dirty_idx) return;
  if (LP->ndirty == LP->dirtycap) {
    size_t cap = LP->dirtycap ? LP->dirtycap * 2 : 64;
    pollable **d = realloc(LP->dirty, (cap + 1) * sizeof *d);
    if (!d) return;   /* it is flushed later by its own reads or close */
    LP->dirty = d;
    LP->dirtycap = cap;
  }
  LP->dirty[++LP->ndirty] = p;
  p->dirty_idx = LP->ndirty;
}

void parley_unmark_dirty(pollable *p) {
  size_t i = p->dirty_idx;
  if (!i) return;
  p->dirty_idx = 0;
  if (i != LP->ndirty) {
    LP->dirty[i] = LP->dirty[LP->ndirty];
    LP->dirty[i]->dirty_idx = i;
  }
  LP->ndirty--;
}

/* before the loop sleeps, every stream's queued output goes out */
static void flush_dirty(void) {
  while (LP->ndirty > 0) {
    pollable *p = LP->dirty[LP->ndirty];
    parley_unmark_dirty(p);
    p->flush(p);
  }
}

/* ------------------------------------------------------------- logging */

static void log_message(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &LOGGER_KEY);
  if (lua_isfunction(L, -1)) {
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 0, 0) == LUA_OK) return;
  }
  /* no logger, or it failed: stderr is all we have left */
  fprintf(stderr, "parley: %s\n", luaL_tolstring(L, -1, NULL));
  lua_pop(L, 2);
}

static int l_set_logger(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &LOGGER_KEY);
  return 0;
}

/* --------------------------------------------------------------- tasks */

static task *check_task(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, PARLEY_TASK);
}

task *parley_spawn(lua_State *L, int nargs) {
  int fidx = lua_gettop(L) - nargs;
  task *t;
  luaL_checktype(L, fidx, LUA_TFUNCTION);
  t = lua_newuserdatauv(L, sizeof *t, 2);
  memset(t, 0, sizeof *t);
  luaL_setmetatable(L, PARLEY_TASK);
  t->co = lua_newthread(L);
  t->w.task = t;
  lua_setiuservalue(L, -2, 1);          /* the task anchors its thread */
  lua_insert(L, fidx);                  /* task below function and args */
  lua_xmove(L, t->co, nargs + 1);       /* function and args to the thread */
  t->nargs = nargs;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
  lua_pushvalue(L, fidx);
  lua_rawsetp(L, -2, t);                /* running tasks are anchored */
  lua_pop(L, 1);
  LP->ntasks++;
  ready_push(t);
  return t;                             /* the task is on top of the stack */
}

static void unanchor(lua_State *L, task *t) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
  lua_pushnil(L);
  lua_rawsetp(L, -2, t);
  lua_pop(L, 1);
}

static void push_task(lua_State *L, task *t) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
  lua_rawgetp(L, -1, t);
  lua_remove(L, -2);
}

/*
** A finished task keeps its results (or error) in user value 2: a table
** {n = count, ...}.  A failure nobody waits for is logged.
*/
static void finish_task(lua_State *L, task *t, int status, int nres) {
  int i;
  int tbl;
  luaL_checkstack(L, nres + 4, "too many results");
  push_task(L, t);
  lua_createtable(L, nres, 1);
  tbl = lua_gettop(L);
  if (status == LUA_OK) {
    lua_xmove(t->co, L, nres);
    for (i = nres; i >= 1; i--) lua_rawseti(L, tbl, i);
  } else {
    lua_xmove(t->co, L, 1);             /* the error object */
    if (lua_type(L, -1) == LUA_TSTRING) {
      luaL_traceback(L, t->co, lua_tostring(L, -1), 0);
      lua_remove(L, -2);
    }
    lua_rawseti(L, -2, 1);
    nres = 1;
    t->failed = 1;
    if (t->main) LP->main_failed = 1;
  }
  lua_pushinteger(L, nres);
  lua_setfield(L, -2, "n");
  lua_setiuservalue(L, -2, 2);
  t->done = 1;
  LP->ntasks--;
  if (t->failed) {
    if (!t->joiners.head && !t->main) {
      lua_getiuservalue(L, -1, 2);
      lua_rawgeti(L, -1, 1);
      log_message(L, -1);
      lua_pop(L, 2);
    }
    /* closes the task's to-be-closed variables */
    lua_resetthread(t->co);
  }
  parley_signal(&t->joiners, 1);
  unanchor(L, t);
  lua_pop(L, 1);
}

static void resume_task(lua_State *L, task *t) {
  task *prev = LP->current;
  int nres = 0, nargs = t->started ? 0 : t->nargs, status;
  t->started = 1;
  LP->current = t;
  status = lua_resume(t->co, L, nargs, &nres);
  LP->current = prev;
  if (status == LUA_YIELD) {
    lua_pop(t->co, nres);
    /* a plain coroutine.yield(): let the others run, then continue */
    if (t->w.state != W_WAITING) {
      t->w.state = W_FIRED;
      t->w.result = WAKE_READY;
      ready_push(t);
    }
  } else {
    finish_task(L, t, status, nres);
  }
}

/* ---------------------------------------------------------------- loop */

static void handle_signals(lua_State *L);

/*
** One turn: resume what is ready, flush queued output, sleep in
** epoll_wait until a descriptor or the earliest deadline, wake waiters.
** Re-entrant: an inline wait runs turns from inside a task.
*/
static void loop_turn(lua_State *L, waiter *until) {
  struct epoll_event ev[MAX_EVENTS];
  size_t n = LP->rcount;
  int i, nev, ms;
  double now;
  while (n-- > 0) {
    task *t = ready_pop();
    if (!t) break;
    resume_task(L, t);
    if (until && until->state != W_WAITING) return;
  }
  flush_dirty();
  if (until ? until->state != W_WAITING
            : LP->ntasks == 0 || LP->main_failed) return;
  if (LP->rcount > 0) {
    ms = 0;
  } else if (LP->nheap > 0) {
    double dt = LP->heap[1].key - parley_now();
    ms = dt <= 0 ? 0 : (int)ceil(dt * 1000);
  } else if (LP->nio > 0 || LP->nsignals > 0) {
    ms = -1;
  } else {
    if (until) {   /* an inline waiter lives on a C stack we are leaving */
      waiter_detach(until);
      heap_remove(until);
      until->state = W_IDLE;
    }
    luaL_error(L, "deadlock: %d task(s) wait for each other and nothing else "
               "can wake them", (int)LP->ntasks);
    return;
  }
  nev = epoll_wait(LP->epfd, ev, MAX_EVENTS, ms);
  for (i = 0; i < nev; i++) {
    int fd = ev[i].data.fd;
    uint32_t e = ev[i].events;
    pollable *p;
    if (fd == LP->sigpipe[0]) {
      handle_signals(L);
      continue;
    }
    p = (size_t)fd < LP->fdcap ? LP->fdtab[fd] : NULL;
    if (!p) continue;   /* closed since: a stale event */
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      p->rd_ready = 1;  /* even with no reader now: the edge is spent */
      if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) p->hup = 1;
      if (p->rd) wake(p->rd, WAKE_READY);
    }
    if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
      if (p->wr) wake(p->wr, WAKE_READY);
      else if (p->flush) p->flush(p);   /* background flush */
    }
  }
  if (LP->nheap > 0) {
    now = parley_now();
    while (LP->nheap > 0 && LP->heap[1].key <= now) heap_due(now);
  }
}

waiter *parley_waited(lua_State *L) {
  (void)L;
  return &LP->current->w;
}

int parley_wait(lua_State *L, pollable *p, int dir, waitq *q,
                double deadline, lua_KContext ctx, lua_KFunction k) {
  task *t = LP->current;
  waiter w;
  if (t && t->co == L && lua_isyieldable(L)) {
    if (t->cancel) {
      t->cancel = 0;
      return WAKE_CANCEL;
    }
    arm(L, &t->w, p, dir, q, deadline);
    return lua_yieldk(L, 0, ctx, k);
  }
  /* not a task (or not yieldable here): run the loop until w is done */
  memset(&w, 0, sizeof w);
  arm(L, &w, p, dir, q, deadline);
  while (w.state == W_WAITING) loop_turn(L, &w);
  heap_remove(&w);   /* w lives on this C stack */
  return w.result;
}

/* ---------------------------------------------------------- Lua: tasks */

/* pushes ok, results... of a finished task; returns how many */
static int push_results(lua_State *L, task *t, int idx) {
  int n, i, tbl;
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, idx, 2);
  tbl = lua_gettop(L);
  lua_getfield(L, tbl, "n");
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n + 1, "too many results");
  lua_pushboolean(L, !t->failed);
  for (i = 1; i <= n; i++) lua_rawgeti(L, tbl, i);
  return n + 1;
}


static int l_spawn(lua_State *L) {
  parley_spawn(L, lua_gettop(L) - 1);
  return 1;
}

/* forgets every task: after run() failed, nothing may resume them */
static void abandon_all(lua_State *L) {
  while (ready_pop()) {}
  lua_rawgetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    task *t = lua_touserdata(L, -1);
    waiter_detach(&t->w);
    heap_remove(&t->w);
    t->w.state = W_IDLE;
    t->done = 1;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
  LP->ntasks = 0;
}

/* run(fn, ...): runs fn as a task and the loop until every task ended */
static int l_run(lua_State *L) {
  task *t;

  if (LP->current && LP->current->co == L) {
    return luaL_error(L, "run() inside a task: call the function directly");
  }
  t = parley_spawn(L, lua_gettop(L) - 1);
  t->main = 1;   /* its error is raised by run, not logged */
  LP->main_failed = 0;
  while (LP->ntasks > 0 && !(t->done && t->failed)) {
    int top = lua_gettop(L);
    loop_turn(L, NULL);
    lua_settop(L, top);
  }
  if (t->failed) {
    lua_getiuservalue(L, -1, 2);
    abandon_all(L);
    lua_rawgeti(L, -1, 1);
    return lua_error(L);
  }
  return push_results(L, t, -1) - 1;   /* without the leading true */
}

static int sleep_k(lua_State *L, int status, lua_KContext ctx) {
  int r = status == LUA_YIELD ? parley_waited(L)->result : (int)ctx;
  if (r == WAKE_CANCEL) {
    lua_pushnil(L);
    lua_pushstring(L, "cancelled");
    return 2;
  }
  return 0;
}

static int yield_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L; (void)status; (void)ctx;
  return 0;
}

static int l_sleep(lua_State *L) {
  double s = luaL_optnumber(L, 1, 0);
  lua_settop(L, 0);
  if (s <= 0 && LP->current && LP->current->co == L && lua_isyieldable(L)) {
    /* let the others run: a plain yield */
    if (LP->current->cancel) {
      LP->current->cancel = 0;
      return sleep_k(L, LUA_OK, WAKE_CANCEL);
    }
    return lua_yieldk(L, 0, 0, yield_k);
  }
  return sleep_k(L, LUA_OK, parley_wait(L, NULL, P_READ, NULL,
                                        parley_now() + (s > 0 ? s : 0), 0,
                                        sleep_k));
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, parley_now());
  return 1;
}

static int l_current(lua_State *L) {
  if (!LP->current) {
    lua_pushnil(L);
  } else {
    push_task(L, LP->current);
  }
  return 1;
}

static int join_k(lua_State *L, int status, lua_KContext ctx) {
  task *t = check_task(L, 1);
  int r = status == LUA_YIELD ? parley_waited(L)->result : (int)ctx;
  if (t->done) return push_results(L, t, 1);
  lua_pushnil(L);
  lua_pushstring(L, parley_wake_message(r == WAKE_READY ? WAKE_TIMEOUT : r));
  return 2;
}

static int t_join(lua_State *L) {
  task *t = check_task(L, 1);
  double timeout = luaL_optnumber(L, 2, -1);
  int r;
  lua_settop(L, 1);
  if (t->done) return push_results(L, t, 1);
  if (LP->current == t) return luaL_error(L, "a task cannot join itself");
  r = parley_wait(L, NULL, P_READ, &t->joiners, parley_deadline(timeout), 0,
                  join_k);
  return join_k(L, LUA_OK, r);
}

static int t_cancel(lua_State *L) {
  task *t = check_task(L, 1);
  if (t->done) return 0;
  if (t->w.state == W_WAITING) wake(&t->w, WAKE_CANCEL);
  else t->cancel = 1;
  return 0;
}

static int t_status(lua_State *L) {
  task *t = check_task(L, 1);
  lua_pushstring(L, t->done ? (t->failed ? "failed" : "done")
                 : LP->current == t ? "running"
                 : t->w.state == W_WAITING ? "waiting" : "ready");
  return 1;
}

static int t_tostring(lua_State *L) {
  lua_pushcfunction(L, t_status);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return parley_tostring(L, lua_tostring(L, -1));
}

static int t_gc(lua_State *L) {
  task *t = check_task(L, 1);
  waiter_detach(&t->w);
  heap_remove(&t->w);
  return 0;
}

/* ----------------------------------------------------------- conditions */

static int c_wait_k(lua_State *L, int status, lua_KContext ctx) {
  int r = status == LUA_YIELD ? parley_waited(L)->result : (int)ctx;
  if (r == WAKE_READY) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, parley_wake_message(r));
  return 2;
}

static int c_wait(lua_State *L) {
  waitq *q = luaL_checkudata(L, 1, PARLEY_COND);
  double timeout = luaL_optnumber(L, 2, -1);
  int r = parley_wait(L, NULL, P_READ, q, parley_deadline(timeout), 0,
                      c_wait_k);
  return c_wait_k(L, LUA_OK, r);
}

static int c_signal(lua_State *L) {
  waitq *q = luaL_checkudata(L, 1, PARLEY_COND);
  lua_pushinteger(L, parley_signal(q, 0));
  return 1;
}

static int c_broadcast(lua_State *L) {
  waitq *q = luaL_checkudata(L, 1, PARLEY_COND);
  lua_pushinteger(L, parley_signal(q, 1));
  return 1;
}

static int c_gc(lua_State *L) {
  waitq *q = luaL_checkudata(L, 1, PARLEY_COND);
  /* waiters hold their task, which holds the cond: nobody waits here */
  while (q->head) waitq_remove(q->head);
  return 0;
}

static int c_tostring(lua_State *L) {
  return parley_tostring(L, NULL);
}

static int l_cond(lua_State *L) {
  waitq *q = lua_newuserdatauv(L, sizeof *q, 0);
  q->head = q->tail = NULL;
  luaL_setmetatable(L, PARLEY_COND);
  return 1;
}

/* -------------------------------------------------------------- signals */

static const struct { const char *name; int num; } signames[] = {
  {"INT", SIGINT}, {"TERM", SIGTERM}, {"HUP", SIGHUP}, {"QUIT", SIGQUIT},
  {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"WINCH", SIGWINCH},
  {"CHLD", SIGCHLD}, {NULL, 0}
};

static void on_signal(int sig) {
  unsigned char b = (unsigned char)sig;
  int saved = errno;
  ssize_t r = write(LP->sigpipe[1], &b, 1);
  (void)r;   /* a full pipe already holds a wake-up */
  errno = saved;
}

static void handle_signals(lua_State *L) {
  unsigned char sigs[64];
  ssize_t n, i;
  while ((n = read(LP->sigpipe[0], sigs, sizeof sigs)) > 0) {
    for (i = 0; i < n; i++) {
      int j;
      lua_rawgetp(L, LUA_REGISTRYINDEX, &SIGNALS_KEY);
      lua_rawgeti(L, -1, sigs[i]);
      lua_remove(L, -2);
      if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        continue;
      }
      for (j = 0; signames[j].name; j++) {
        if (signames[j].num == sigs[i]) lua_pushstring(L, signames[j].name);
      }
      parley_spawn(L, 1);
      lua_pop(L, 1);
    }
  }
}

static int ensure_sigpipe(void) {
  struct epoll_event ev;
  if (LP->sigpipe[0] >= 0) return 0;
  if (pipe2(LP->sigpipe, O_NONBLOCK | O_CLOEXEC) != 0) return errno;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.fd = LP->sigpipe[0];
  if (epoll_ctl(LP->epfd, EPOLL_CTL_ADD, LP->sigpipe[0], &ev) != 0) return errno;
  return 0;
}

/* on_signal(name, fn | nil) */
static int l_on_signal(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  struct sigaction sa;
  int i, num = 0, had;
  for (i = 0; signames[i].name; i++) {
    if (strcmp(signames[i].name, name) == 0) num = signames[i].num;
  }
  if (!num) return luaL_argerror(L, 1, "unknown signal name");
  if (!lua_isnil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
  if (ensure_sigpipe() != 0) return luaL_error(L, "cannot create signal pipe");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &SIGNALS_KEY);
  had = lua_rawgeti(L, -1, num) != LUA_TNIL;
  lua_pop(L, 1);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, num);
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sa.sa_handler = lua_isnil(L, 2) ? SIG_DFL : on_signal;
  sigaction(num, &sa, NULL);
  if (lua_isnil(L, 2) && had) LP->nsignals--;
  if (!lua_isnil(L, 2) && !had) LP->nsignals++;
  return 0;
}

/* ---------------------------------------------------------------- open */

static int l_stats(lua_State *L) {
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)LP->ntasks);
  lua_setfield(L, -2, "tasks");
  lua_pushinteger(L, (lua_Integer)LP->nio);
  lua_setfield(L, -2, "io_waits");
  lua_pushinteger(L, (lua_Integer)LP->nheap);
  lua_setfield(L, -2, "timers");
  lua_pushinteger(L, (lua_Integer)LP->rcount);
  lua_setfield(L, -2, "ready");
  return 1;
}

int parley_open_loop(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"run", l_run}, {"spawn", l_spawn}, {"sleep", l_sleep}, {"now", l_now},
    {"current", l_current}, {"cond", l_cond}, {"on_signal", l_on_signal},
    {"set_logger", l_set_logger}, {"stats", l_stats}, {NULL, NULL}
  };
  static const luaL_Reg task_methods[] = {
    {"join", t_join}, {"cancel", t_cancel}, {"status", t_status},
    {NULL, NULL}
  };
  /* `local t <close> = spawn(...)`: leaving the scope cancels the task */
  static const luaL_Reg task_meta[] = {
    {"__gc", t_gc}, {"__close", t_cancel}, {"__tostring", t_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg cond_methods[] = {
    {"wait", c_wait}, {"signal", c_signal}, {"broadcast", c_broadcast},
    {NULL, NULL}
  };
  static const luaL_Reg cond_meta[] = {
    {"__gc", c_gc}, {"__tostring", c_tostring}, {NULL, NULL}
  };
  if (!LP) {
    LP = calloc(1, sizeof *LP);
    if (!LP) return luaL_error(L, "not enough memory");
    LP->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (LP->epfd < 0) {
      free(LP);
      LP = NULL;
      return luaL_error(L, "epoll_create1: %s", strerror(errno));
    }
    LP->sigpipe[0] = LP->sigpipe[1] = -1;
    LP->L = L;
    /* made now, not at the first on_signal, so descriptors stay put */
    if (ensure_sigpipe() != 0) return luaL_error(L, "cannot create signal pipe");
  }
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &SIGNALS_KEY);
  parley_newclass(L, PARLEY_TASK, task_methods, task_meta);
  parley_newclass(L, PARLEY_COND, cond_methods, cond_meta);
  luaL_setfuncs(L, funcs, 0);
  return 0;
}
