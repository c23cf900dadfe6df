/*
** http codec (placeholder until the http codec lands): core.http = {}.
*/
#include "parley.h"

int parley_open_http(lua_State *L) {
  lua_newtable(L);
  lua_setfield(L, -2, "http");
  return 0;
}
