/*
** smtp codec (placeholder until the smtp codec lands): core.smtp = {}.
*/
#include "parley.h"

int parley_open_smtp(lua_State *L) {
  lua_newtable(L);
  lua_setfield(L, -2, "smtp");
  return 0;
}
