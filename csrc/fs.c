/*
** fs (placeholder until it lands): core.fs = {}.
*/
#include "parley.h"

int parley_open_fs(lua_State *L) {
  lua_newtable(L);
  lua_setfield(L, -2, "fs");
  return 0;
}
