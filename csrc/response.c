/*
** response.c — the HTTP server's response object (the `res` of
** parley.http.server's handlers) and its hot methods.
**
** A response is a userdata: what every reply reads (status, sent, close,
** the request's keep / minor / head, the body bytes for the access log)
** lies in its C struct, and three user values hold the rest: the
** connection's table {st, conn, send, server}, the field array {name,
** value, ...} and a table of any other key (reason, a handler's own).
** A Lua table per request with its methods in Lua cost ~1,500
** instructions to make and sweep and ~2,200 for header + send of a
** hello-world reply (bench/http/README.md); `header`, `get_header` and
** `send` of a string are here, the rarer methods stay in Lua and read the
** state through the private keys _st, _fields, _keep, _minor, _head and
** _bytes.
**
** core.http.response_meta(methods) makes the metatable once;
** core.http.responder(conn_table, meta) gives a connection its
** constructor, new(keep, minor, head).
*/
#include <string.h>

#include "driver.h"
#include "http.h"
#include "parley.h"

enum { UV_CONN = 1, UV_FIELDS, UV_EXTRA, NUV = UV_EXTRA };
/* the connection's table, shared by its responses */
enum { HC_ST = 1, HC_CONN, HC_SEND, HC_SERVER };

typedef struct response {
  const void *brand;
  lua_Integer status;
  lua_Integer bytes;             /* body bytes sent (the access log's) */
  unsigned char sent, close;     /* the handler's */
  unsigned char keep, minor, head;   /* the request's: the connection stays
                                    ** open, HTTP/1.minor, it was a HEAD */
} response;

static const char brand = 0;

/* the keys __index and __newindex know, told by the address of their
** interned strings: short strings are unique while alive, and the key
** set's user value keeps them so (one set per metatable, per Lua state) */
enum { K_STATUS, K_SENT, K_CLOSE, K_KEEP, K_MINOR, K_HEAD, K_BYTES, K_ST,
       K_FIELDS, NKEYS };
static const char *const key_names[NKEYS] = {
  "status", "sent", "close", "_keep", "_minor", "_head", "_bytes", "_st",
  "_fields"
};
typedef struct key_set {
  const char *k[NKEYS];
} key_set;

static response *check_response(lua_State *L, int idx) {
  response *r = lua_touserdata(L, idx);
  if (!r || lua_rawlen(L, idx) != sizeof *r || r->brand != &brand)
    luaL_typeerror(L, idx, "parley.http.response");
  return r;
}

/* which known key the string at idx is (NKEYS: none); upvalue 1: the
** key set */
static int key_of(lua_State *L, int idx) {
  const key_set *ks = lua_touserdata(L, lua_upvalueindex(1));
  const char *k;
  int i;
  if (lua_type(L, idx) != LUA_TSTRING) return NKEYS;
  k = lua_tostring(L, idx);
  for (i = 0; i < NKEYS; i++)
    if (k == ks->k[i]) return i;
  return NKEYS;
}

/* __index(res, key); upvalues: the key set, the methods. A method first
** (the usual lookup: res:header, res:send), then the state, then the
** handler's own keys */
static int r_index(lua_State *L) {
  response *r;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL) return 1;
  r = lua_touserdata(L, 1);   /* this metatable's: a response */
  switch (key_of(L, 2)) {
    case K_STATUS: lua_pushinteger(L, r->status); return 1;
    case K_SENT: lua_pushboolean(L, r->sent); return 1;
    case K_CLOSE: lua_pushboolean(L, r->close); return 1;
    case K_KEEP: lua_pushboolean(L, r->keep); return 1;
    case K_MINOR: lua_pushinteger(L, r->minor); return 1;
    case K_HEAD: lua_pushboolean(L, r->head); return 1;
    case K_BYTES: lua_pushinteger(L, r->bytes); return 1;
    case K_ST:
      lua_getiuservalue(L, 1, UV_CONN);
      lua_rawgeti(L, -1, HC_ST);
      return 1;
    case K_FIELDS:
      if (lua_getiuservalue(L, 1, UV_FIELDS) != LUA_TTABLE) lua_pushboolean(L, 0);
      return 1;
    default: break;
  }
  if (lua_getiuservalue(L, 1, UV_EXTRA) != LUA_TTABLE) return 1;   /* nil */
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

static lua_Integer check_status(lua_State *L, int idx) {
  int ok;
  lua_Integer s = lua_tointegerx(L, idx, &ok);
  if (!ok || s < 100 || s > 999)
    luaL_error(L, "response status must be an integer from 100 to 999");
  return s;
}

/* __newindex(res, key, value); upvalue: the key set */
static int r_newindex(lua_State *L) {
  response *r = lua_touserdata(L, 1);
  switch (key_of(L, 2)) {
    case K_STATUS: r->status = check_status(L, 3); return 0;
    case K_SENT: r->sent = (unsigned char)lua_toboolean(L, 3); return 0;
    case K_CLOSE: r->close = (unsigned char)lua_toboolean(L, 3); return 0;
    case K_KEEP: r->keep = (unsigned char)lua_toboolean(L, 3); return 0;
    case K_BYTES: r->bytes = luaL_checkinteger(L, 3); return 0;
    case K_FIELDS:   /* only cleared: header makes the arrays */
      if (lua_toboolean(L, 3))
        return luaL_error(L, "_fields can only be set to false");
      lua_pushnil(L);
      lua_setiuservalue(L, 1, UV_FIELDS);
      return 0;
    case K_MINOR: case K_HEAD: case K_ST:
      return luaL_error(L, "%s is the request's, not the response's to set",
                        lua_tostring(L, 2));
    default: break;
  }
  if (lua_getiuservalue(L, 1, UV_EXTRA) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, UV_EXTRA);
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, -3);
  return 0;
}

static int r_tostring(lua_State *L) {
  response *r = lua_touserdata(L, 1);
  lua_pushfstring(L, "parley.http.response: %p (%d%s)", (void *)r,
                  (int)r->status, r->sent ? ", sent" : "");
  return 1;
}

/* the index of the field named name (any case) in the array at t, or the
** index just past the array's last field (where none is: nil there) */
static lua_Integer find_field(lua_State *L, int t, const char *name,
                              size_t nl, int *found) {
  lua_Integer i;
  for (i = 1; lua_rawgeti(L, t, i) != LUA_TNIL; i += 2) {
    size_t fl;
    const char *f = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &fl)
                                                   : NULL;
    lua_pop(L, 1);
    if (f && fl == nl && http_same_name(f, name, nl)) {
      *found = 1;
      return i;
    }
  }
  lua_pop(L, 1);
  *found = 0;
  return i;
}

/* res:header(name, value): sets a field, replacing one of the same name
** (any case); nil removes it; a value may be an array of values (one
** field line each). Names and values are checked when the head is built.
** Returns res. */
static int r_header(lua_State *L) {
  size_t nl;
  const char *name;
  int found, vt;
  lua_Integer i;
  check_response(L, 1);
  name = luaL_checklstring(L, 2, &nl);
  if (lua_gettop(L) != 3) lua_settop(L, 3);
  vt = lua_type(L, 3);
  if (lua_getiuservalue(L, 1, UV_FIELDS) != LUA_TTABLE) {   /* 4 */
    if (vt == LUA_TNIL) {
      lua_pushvalue(L, 1);
      return 1;
    }
    /* a new array per response: recycling the last one's measured dearer
    ** (bench/http/README.md) */
    lua_createtable(L, 4, 0);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, 3);
    lua_rawseti(L, -2, 2);
    lua_setiuservalue(L, 1, UV_FIELDS);
    lua_pushvalue(L, 1);
    return 1;
  }
  i = find_field(L, 4, name, nl, &found);
  if (vt != LUA_TNIL) {
    if (!found) {
      lua_pushvalue(L, 2);
      lua_rawseti(L, 4, i);
    }
    lua_pushvalue(L, 3);
    lua_rawseti(L, 4, i + 1);
  } else if (found) {
    /* close the gap: the fields after it move down one pair */
    for (; lua_rawgeti(L, 4, i + 2) != LUA_TNIL; i += 2) {
      lua_rawseti(L, 4, i);
      lua_rawgeti(L, 4, i + 3);
      lua_rawseti(L, 4, i + 1);
    }
    lua_rawseti(L, 4, i);      /* the nil */
    lua_pushnil(L);
    lua_rawseti(L, 4, i + 1);
  }
  lua_pushvalue(L, 1);
  return 1;
}

/* res:get_header(name): a field's value as set so far (any case), or nil */
static int r_get_header(lua_State *L) {
  size_t nl;
  const char *name;
  int found;
  lua_Integer i;
  check_response(L, 1);
  name = luaL_checklstring(L, 2, &nl);
  lua_settop(L, 2);
  if (lua_getiuservalue(L, 1, UV_FIELDS) != LUA_TTABLE) {
    lua_pushnil(L);
    return 1;
  }
  i = find_field(L, 3, name, nl, &found);
  if (!found) lua_pushnil(L);
  else lua_rawgeti(L, 3, i + 1);
  return 1;
}

/* res:send's stack: res, body, status, the connection's table, the
** stream, the reply's arguments */
enum { S_RES = 1, S_BODY, S_STATUS, S_HC, S_CONN, S_ARGS };

/* sent even when the write failed: there is no taking it back (but not
** when making the head raised: the handler's error answers 500); a failed
** write leaves the connection not to be kept (st.broken) */
static void mark_sent(lua_State *L, response *r, int ok) {
  r->sent = 1;
  r->bytes = (lua_Integer)lua_rawlen(L, S_BODY);
  if (ok) return;
  r->keep = 0;
  lua_rawgeti(L, S_HC, HC_ST);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "broken");
  lua_pop(L, 1);
}

/* after the connection's send function: its (true) or (nil, err) */
static int send_done(lua_State *L, int status, lua_KContext ctx) {
  int ok = lua_toboolean(L, S_CONN);
  (void)status; (void)ctx;
  mark_sent(L, lua_touserdata(L, S_RES), ok);
  if (ok) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushvalue(L, S_CONN + 1);
  return 2;
}

static int source_done(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return lua_gettop(L) - (int)ctx;
}

/* res:send([data [, status]]): the reply, framed from the request's facts
** (see core.http.reply) by the connection's send function; data a string
** (nil: empty; a number: its text) or an ltn12 source (the Lua method
** _send_source streams it). true, or nil, err when the client went away */
static int r_send(lua_State *L) {
  response *r = check_response(L, 1);
  struct stream *s;
  int t;
  if (lua_gettop(L) != S_STATUS) lua_settop(L, S_STATUS);
  t = lua_type(L, S_BODY);
  if (r->sent) return luaL_error(L, "response already sent");
  if (!lua_isnoneornil(L, 3)) r->status = check_status(L, 3);
  if (t != LUA_TSTRING) {
    if (t == LUA_TFUNCTION) {
      lua_settop(L, 2);
      lua_getfield(L, 1, "_send_source");
      lua_insert(L, 1);
      lua_callk(L, 2, LUA_MULTRET, 0, source_done);
      return source_done(L, LUA_OK, 0);
    }
    if (t == LUA_TNIL) lua_pushliteral(L, "");
    else if (t == LUA_TNUMBER) luaL_tolstring(L, 2, NULL);
    else return luaL_error(L, "response body must be a string or an ltn12 source");
    lua_replace(L, 2);
  }
  if (r->close) r->keep = 0;
  lua_getiuservalue(L, 1, UV_CONN);
  lua_rawgeti(L, S_HC, HC_CONN);
  lua_pushinteger(L, r->status);
  if (lua_getiuservalue(L, 1, UV_FIELDS) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_pushboolean(L, 0);
  }
  if (lua_getiuservalue(L, 1, UV_EXTRA) == LUA_TTABLE) {
    lua_getfield(L, -1, "reason");
    lua_remove(L, -2);
  }
  lua_pushvalue(L, S_BODY);
  lua_rawgeti(L, S_HC, HC_SERVER);
  lua_pushboolean(L, r->keep);
  lua_pushinteger(L, r->minor);
  lua_pushboolean(L, r->head);
  s = parley_stream_at(L, S_CONN);
  if (s) {                     /* a driver stream: no call through Lua */
    mark_sent(L, r, parley_stream_queue_reply(L, s, S_ARGS));
    return parley_stream_queued(L, s, S_CONN);
  }
  lua_rawgeti(L, S_HC, HC_SEND);
  lua_insert(L, S_CONN);
  lua_callk(L, 9, 2, 0, send_done);
  return send_done(L, LUA_OK, 0);
}

/* res:done(): the response went out and the connection stays open (the
** server's usual case after a handler) */
static int r_done(lua_State *L) {
  response *r = check_response(L, 1);
  lua_pushboolean(L, r->sent && r->keep);
  return 1;
}

/* res:usual(): the connection's state table when res is the usual reply
** to come (nothing sent or set yet, status 200, not a HEAD, HTTP/1.1,
** the connection stays open), else nil: send_memo's test in one call */
static int r_usual(lua_State *L) {
  response *r = check_response(L, 1);
  if (r->sent || r->status != 200 || r->close || !r->keep || r->head ||
      r->minor != 1 || lua_getiuservalue(L, 1, UV_FIELDS) == LUA_TTABLE) {
    lua_pushnil(L);
    return 1;
  }
  lua_getiuservalue(L, 1, UV_CONN);
  lua_rawgeti(L, -1, HC_ST);
  return 1;
}

/* res:mark_sent(bytes): the head went out, with `bytes` of body */
static int r_mark_sent(lua_State *L) {
  response *r = check_response(L, 1);
  r->bytes = luaL_checkinteger(L, 2);
  r->sent = 1;
  return 0;
}

/* new(keep, minor, head); upvalues: the connection's table, the
** metatable. head: true for a HEAD request, or the request's method */
static int r_new(lua_State *L) {
  size_t ml;
  const char *m = lua_type(L, 3) == LUA_TSTRING ? lua_tolstring(L, 3, &ml) : NULL;
  int head = m ? ml == 4 && memcmp(m, "HEAD", 4) == 0 : lua_toboolean(L, 3);
  response *r = lua_newuserdatauv(L, sizeof *r, NUV);
  r->brand = &brand;
  r->status = 200;
  r->bytes = 0;
  r->sent = r->close = 0;
  r->keep = (unsigned char)lua_toboolean(L, 1);
  r->minor = lua_tointeger(L, 2) == 0 ? 0 : 1;
  r->head = (unsigned char)head;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setiuservalue(L, -2, UV_CONN);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_setmetatable(L, -2);
  return 1;
}

/* core.http.responder(conn_table, meta): a connection's constructor.
** conn_table: {st, conn, send, server}, send being called as
** send(conn, status, fields, reason, body, server, keep, minor, head)
** (stream:send_http_reply's arguments) */
static int l_responder(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_pushcclosure(L, r_new, 2);
  return 1;
}

/* core.http.response_meta(methods): the responses' metatable; methods the
** table __index falls back to */
static int l_response_meta(lua_State *L) {
  int i;
  key_set *ks;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_createtable(L, 0, 5);                   /* 2 */
  ks = lua_newuserdatauv(L, sizeof *ks, 1);   /* 3 */
  lua_createtable(L, NKEYS, 0);
  for (i = 0; i < NKEYS; i++) {
    lua_pushstring(L, key_names[i]);
    ks->k[i] = lua_tostring(L, -1);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setiuservalue(L, 3, 1);
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, r_index, 2);
  lua_setfield(L, 2, "__index");
  lua_pushvalue(L, 3);
  lua_pushcclosure(L, r_newindex, 1);
  lua_setfield(L, 2, "__newindex");
  lua_pushcfunction(L, r_tostring);
  lua_setfield(L, 2, "__tostring");
  lua_pushliteral(L, "parley.http.response");
  lua_setfield(L, 2, "__name");
  /* getmetatable(res) gives this name, not the metamethods: they take
  ** their first argument for a response unchecked */
  lua_pushliteral(L, "parley.http.response");
  lua_setfield(L, 2, "__metatable");
  lua_settop(L, 2);
  return 1;
}

int parley_open_http_response(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"response_meta", l_response_meta},
    {"responder", l_responder},
    {"response_header", r_header},
    {"response_get_header", r_get_header},
    {"response_send", r_send},
    {"response_done", r_done},
    {"response_usual", r_usual},
    {"response_mark_sent", r_mark_sent},
    {NULL, NULL}
  };
  lua_getfield(L, -1, "http");
  luaL_setfuncs(L, funcs, 0);
  lua_pop(L, 1);
  return 0;
}
