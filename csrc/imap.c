/*
** imap codec (placeholder until the imap codec lands): core.imap = {}.
*/
#include "parley.h"

int parley_open_imap(lua_State *L) {
  lua_newtable(L);
  lua_setfield(L, -2, "imap");
  return 0;
}
