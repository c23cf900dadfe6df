/* placeholder: the driver part "stream" lands here */
#include "parley.h"

int parley_open_stream(lua_State *L) {
  (void)L;
  return 0;
}
