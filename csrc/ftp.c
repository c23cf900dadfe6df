/*
** ftp codec (placeholder until the ftp codec lands): core.ftp = {}.
*/
#include "parley.h"

int parley_open_ftp(lua_State *L) {
  lua_newtable(L);
  lua_setfield(L, -2, "ftp");
  return 0;
}
