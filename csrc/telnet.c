/*
** telnet codec (placeholder until the telnet codec lands): core.telnet = {}.
*/
#include "parley.h"

int parley_open_telnet(lua_State *L) {
  lua_newtable(L);
  lua_setfield(L, -2, "telnet");
  return 0;
}
