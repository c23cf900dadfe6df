/*
** listener: a listening TCP socket whose accept() yields.
**
** Lua: core.listen(host, port, backlog, reuseport) -> listener
** methods: accept([timeout]), close(), getsockname(), port(), getfd(),
** settimeout(t), settls(ctx).
*/
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "driver.h"
#include "tls.h"

typedef struct listener {
  pollable p;
  double timeout;
  int closed;
} listener;

static listener *check_listener(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, PARLEY_LISTENER);
}

static int accept_k(lua_State *L, int status, lua_KContext ctx);

static int accept_loop(lua_State *L, listener *l, double deadline) {
  for (;;) {
    int fd, r;
    if (l->closed) {
      lua_pushnil(L);
      lua_pushliteral(L, "closed");
      return 2;
    }
    fd = accept4(l->p.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      struct stream *s = parley_stream_new(L, fd);
      if (lua_getiuservalue(L, 1, 1) == LUA_TUSERDATA) {
        const char *err;
        lua_insert(L, -2);   /* stream on top, context below it */
        if ((err = parley_stream_tls_accept(L, s, -2)) != NULL) {
          lua_pushnil(L);
          lua_pushstring(L, err);
          return 2;   /* the stream is collected (and closed) */
        }
      } else {
        lua_pop(L, 1);
      }
      return 1;
    }
    switch (errno) {
      case EINTR: case ECONNABORTED: case EPROTO:
        continue;   /* that client gave up; the next may be there */
      case EAGAIN:
        break;
      default:
        lua_pushnil(L);
        lua_pushstring(L, parley_strerror(errno));
        return 2;
    }
    r = parley_wait(L, &l->p, P_READ, NULL, deadline, 0, accept_k);
    if (r != WAKE_READY) {
      lua_pushnil(L);
      lua_pushstring(L, parley_wake_message(r));
      return 2;
    }
  }
}

static int accept_k(lua_State *L, int status, lua_KContext ctx) {
  listener *l = check_listener(L, 1);
  waiter *w = parley_waited(L);
  (void)status; (void)ctx;
  if (w->result != WAKE_READY) {
    lua_pushnil(L);
    lua_pushstring(L, parley_wake_message(w->result));
    return 2;
  }
  return accept_loop(L, l, w->deadline);
}

static int l_accept(lua_State *L) {
  listener *l = check_listener(L, 1);
  double timeout = luaL_optnumber(L, 2, l->timeout);
  lua_settop(L, 1);
  return accept_loop(L, l, parley_deadline(timeout));
}

static void release(listener *l) {
  if (l->p.fd >= 0) {
    parley_unwatch(&l->p);
    close(l->p.fd);
    l->p.fd = -1;
  }
  l->closed = 1;
}

static int l_close(lua_State *L) {
  listener *l = check_listener(L, 1);
  if (!l->closed) {
    parley_wake_all(&l->p, WAKE_CLOSED);
    release(l);
  }
  lua_pushinteger(L, 1);
  return 1;
}

static int l_gc(lua_State *L) {
  listener *l = check_listener(L, 1);
  if (!l->closed) {
    parley_forget(&l->p);
    release(l);
  }
  return 0;
}

static int l_getsockname(lua_State *L) {
  listener *l = check_listener(L, 1);
  if (l->closed) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  return parley_push_sockname(L, l->p.fd, 0);
}

static int l_port(lua_State *L) {
  int n = l_getsockname(L);
  if (n == 3) {
    lua_pop(L, 1);
    return 1;
  }
  return n;
}

static int l_getfd(lua_State *L) {
  lua_pushinteger(L, check_listener(L, 1)->p.fd);
  return 1;
}

static int l_settimeout(lua_State *L) {
  listener *l = check_listener(L, 1);
  l->timeout = lua_isnoneornil(L, 2) ? -1 : luaL_checknumber(L, 2);
  lua_pushinteger(L, 1);
  return 1;
}

/* settls(ctx | nil): accepted streams become TLS server streams of ctx */
static int l_settls(lua_State *L) {
  check_listener(L, 1);
  if (!lua_isnil(L, 2)) luaL_checkudata(L, 2, PARLEY_TLS_CONTEXT);
  lua_settop(L, 2);
  lua_setiuservalue(L, 1, 1);
  lua_pushinteger(L, 1);
  return 1;
}

static int l_tostring(lua_State *L) {
  listener *l = check_listener(L, 1);
  char detail[32];
  if (l->closed) snprintf(detail, sizeof detail, "(closed)");
  else snprintf(detail, sizeof detail, "(fd %d)", l->p.fd);
  return parley_tostring(L, detail);
}

/* listen(host, port, [backlog], [reuseport]) */
static int l_listen(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  const char *port = luaL_checkstring(L, 2);
  int backlog = (int)luaL_optinteger(L, 3, 511);
  int reuseport = lua_toboolean(L, 4);
  struct addrinfo *res, *ai;
  const char *err;
  int e = 0, one = 1;
  listener *l = lua_newuserdatauv(L, sizeof *l, 1);   /* 1: TLS context */
  memset(l, 0, sizeof *l);
  l->p.fd = -1;
  l->timeout = -1;
  l->closed = 1;
  luaL_setmetatable(L, PARLEY_LISTENER);
  if ((err = parley_resolve(host, port, 1, &res)) != NULL) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  for (ai = res; ai; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0) {
      e = errno;
      continue;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
      e = errno;
      close(fd);
      continue;
    }
    l->p.fd = fd;
    break;
  }
  freeaddrinfo(res);
  if (l->p.fd < 0) {
    lua_pushnil(L);
    lua_pushstring(L, parley_strerror(e ? e : EADDRNOTAVAIL));
    return 2;
  }
  l->closed = 0;
  if ((e = parley_watch(&l->p)) != 0) {
    release(l);
    lua_pushnil(L);
    lua_pushstring(L, parley_strerror(e));
    return 2;
  }
  return 1;
}

int parley_open_listener(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"accept", l_accept}, {"close", l_close}, {"getsockname", l_getsockname},
    {"port", l_port}, {"getfd", l_getfd}, {"settimeout", l_settimeout},
    {"settls", l_settls}, {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", l_gc}, {"__close", l_close}, {"__tostring", l_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {{"listen", l_listen}, {NULL, NULL}};
  parley_newclass(L, PARLEY_LISTENER, methods, meta);
  luaL_setfuncs(L, funcs, 0);
  return 0;
}
