/*
** pty (placeholder until it lands): core.pty = {}.
*/
#include "parley.h"

int parley_open_pty(lua_State *L) {
  lua_newtable(L);
  lua_setfield(L, -2, "pty");
  return 0;
}
