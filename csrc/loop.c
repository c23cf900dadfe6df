/* placeholder: the driver part "loop" lands here */
#include "parley.h"

int parley_open_loop(lua_State *L) {
  (void)L;
  return 0;
}
