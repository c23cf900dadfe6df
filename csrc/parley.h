/*
** parley.core: shared declarations.
**
** Each part of the module has one opener, `parley_open_<part>`, called by
** luaopen_parley_core with the module table on top of the stack.  A part
** adds its functions to that table (the driver) or a subtable named after
** it (the codecs: core.http, core.smtp ...).  An opener leaves the stack
** as it found it.
*/
#ifndef PARLEY_H
#define PARLEY_H

#include <lua.h>
#include <lauxlib.h>

/* one helper registers a type; every handle type uses it */
void parley_newclass(lua_State *L, const char *name,
                     const luaL_Reg *methods, const luaL_Reg *meta);

/* small Lua objects from size-class free lists (alloc.c) */
int parley_open_alloc(lua_State *L);

/* __tostring shared by the handle types: "<name>: 0x..." plus a detail */
int parley_tostring(lua_State *L, const char *detail);

/* driver */
int parley_open_loop(lua_State *L);
int parley_open_stream(lua_State *L);
int parley_open_listener(lua_State *L);
int parley_open_tls(lua_State *L);

/* codecs: pure functions, no I/O */
int parley_open_http(lua_State *L);
int parley_open_http_response(lua_State *L);   /* adds to core.http */
int parley_open_telnet(lua_State *L);
int parley_open_smtp(lua_State *L);
int parley_open_ftp(lua_State *L);
int parley_open_imap(lua_State *L);

/* system helpers Lua lacks: files and directories (fsync, listing,
   crypt(3)), pseudo-terminals */
int parley_open_fs(lua_State *L);
int parley_open_pty(lua_State *L);

#endif
