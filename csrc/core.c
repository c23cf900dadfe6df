/*
** luaopen_parley_core: gathers the driver and the codecs into one table.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "parley.h"

void parley_newclass(lua_State *L, const char *name,
                     const luaL_Reg *methods, const luaL_Reg *meta) {
  luaL_newmetatable(L, name);          /* sets __name too */
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

int parley_tostring(lua_State *L, const char *detail) {
  const char *name = luaL_typename(L, 1);
  if (luaL_getmetafield(L, 1, "__name") == LUA_TSTRING) {
    name = lua_tostring(L, -1);
  }
  lua_pushfstring(L, "%s: %p%s%s", name, lua_topointer(L, 1),
                  detail ? " " : "", detail ? detail : "");
  return 1;
}

/*
** A server holding thousands of sockets needs more descriptors than the
** usual soft limit of 1024; epoll has no FD_SETSIZE wall, so raise the
** soft limit to the hard one, as the Go runtime does.
*/
static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/*
** unsetenv(name): `make sanitize` preloads the ASan runtime into lua5.4;
** the specs' child processes (pkill, python, curl ...) must not inherit
** it (pkill hangs under it), so the spec helper drops it once loaded.
*/
static int l_unsetenv(lua_State *L) {
  lua_pushboolean(L, unsetenv(luaL_checkstring(L, 1)) == 0);
  return 1;
}

static const struct {
  const char *name;
  lua_CFunction open;
} parts[] = {
  {"alloc", parley_open_alloc},
  {"loop", parley_open_loop},
  {"stream", parley_open_stream},
  {"listener", parley_open_listener},
  {"tls", parley_open_tls},
  {"http", parley_open_http},
  {"http_response", parley_open_http_response},
  {"telnet", parley_open_telnet},
  {"smtp", parley_open_smtp},
  {"ftp", parley_open_ftp},
  {"imap", parley_open_imap},
  {"fs", parley_open_fs},
  {"pty", parley_open_pty},
};

int luaopen_parley_core(lua_State *L);

int luaopen_parley_core(lua_State *L) {
  size_t i;
  /* a peer that closes early must give "closed", never kill the process */
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  lua_newtable(L);
  for (i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    lua_pushcfunction(L, parts[i].open);
    lua_pushvalue(L, -2);
    lua_call(L, 1, 0);
  }
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  lua_pushcfunction(L, l_unsetenv);
  lua_setfield(L, -2, "unsetenv");
  return 1;
}
