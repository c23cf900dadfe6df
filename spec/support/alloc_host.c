/* spec/core/alloc_spec.lua's host: a Lua state with its own counting
** allocator requires parley.core, which must leave that allocator in
** place (the pool only goes under luaL_newstate's).  Prints the
** allocator core.allocator() names and whether the host's own saw the
** blocks of a table made after the require. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>

static size_t calls;

static void *counting(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  calls++;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

int main(void) {
  lua_State *L = lua_newstate(counting, NULL);
  size_t before;
  luaL_openlibs(L);
  if (luaL_dostring(L, "core = require 'parley.core'") != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    return 1;
  }
  before = calls;
  if (luaL_dostring(L, "local t = {} for i = 1, 100 do t[i] = {i} end "
                       "io.write(core.allocator(), '\\n')") != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    return 1;
  }
  printf("%s\n", calls - before >= 100 ? "counted" : "not counted");
  lua_close(L);
  return 0;
}
