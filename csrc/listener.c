/* placeholder: the driver part "listener" lands here */
#include "parley.h"

int parley_open_listener(lua_State *L) {
  (void)L;
  return 0;
}
