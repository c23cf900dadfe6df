/*
** libFuzzer target for the Lua bindings of the smtp, ftp, http and telnet
** codecs (the C glue in csrc/<codec>.c that builds Lua values from what
** the pure cores parse; imap's binding has imap_fuzz).  The first byte
** picks a codec, the rest is the input, handed to every parse function
** and decoder of that codec through core.so's Lua API, whole and in two
** pieces, under ASan + UBSan.  Round trips checked through the bindings:
** smtp data_encoder -> data_decoder, ftp ascii_encoder -> ascii_decoder,
** http chunk -> chunked_decoder, telnet escape -> feed (BINARY).  A Lua
** error that is not a returned `nil, err` aborts only when it says
** "roundtrip" (our own check); argument errors would be our driver's.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int luaopen_parley_core(lua_State *L);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char driver[] =
    "local core, which, s, cut = ...\n"
    "local function both(f) f(s) f(s:sub(1, cut)) end\n"
    "if which == 0 then\n"
    "  local smtp = core.smtp\n"
    "  both(function(x) smtp.parse_command(x) smtp.parse_path(x) smtp.relay_vector(x)\n"
    "    smtp.parse_reply_line(x) smtp.parse_reply_line(x, 8) smtp.enhanced_valid(x) end)\n"
    "  for _, o in ipairs{ {}, { bare = 'normalize' }, { max_line = 20 } } do\n"
    "    local d = smtp.data_decoder(o)\n"
    "    d:feed(s:sub(1, cut)) d:feed(s:sub(cut + 1)) d:error() d:size() d:done()\n"
    "  end\n"
    "  local e = smtp.data_encoder()\n"
    "  local wire = e:feed(s:sub(1, cut)) .. e:feed(s:sub(cut + 1)) .. e:finish()\n"
    "  local d = smtp.data_decoder({ bare = 'normalize' })\n"
    "  local out, done = d:feed(wire)\n"
    "  if not done then error('roundtrip: smtp encoder output did not end the decoder') end\n"
    "elseif which == 1 then\n"
    "  local ftp = core.ftp\n"
    "  both(function(x) ftp.parse_port(x) ftp.parse_pasv(x) ftp.parse_epsv(x) ftp.parse_eprt(x)\n"
    "    ftp.parse_time(x) ftp.parse_list_line(x) ftp.parse_facts(x) ftp.parse_feat(x)\n"
    "    ftp.parse_command(x) ftp.parse_size(x) ftp.normalize_path('/a/b', x)\n"
    "    ftp.normalize_path(x, '..') end)\n"
    "  local p = ftp.reply_parser({ max_lines = 4, max_line = 64 })\n"
    "  for line in s:gmatch('[^\\n]*') do\n"
    "    local code, text = p:feed_line(line)\n"
    "    if code == nil and text then p:reset() end\n"
    "  end\n"
    "  p:pending() tostring(p)\n"
    "  local e, d = ftp.ascii_encoder(), ftp.ascii_decoder()\n"
    "  local wire = e:feed(s:sub(1, cut)) .. e:feed(s:sub(cut + 1)) .. (e:finish() or '')\n"
    "  local back = d:feed(wire:sub(1, cut)) .. d:feed(wire:sub(cut + 1)) .. (d:finish() or '')\n"
    "  if not s:find('\\r', 1, true) and back ~= s then error('roundtrip: ftp TYPE A') end\n"
    "elseif which == 2 then\n"
    "  local http = core.http\n"
    "  both(function(x)\n"
    "    local h = http.parse_request(x)\n"
    "    if type(h) == 'table' then pcall(http.body_framing, h, false, h.method, 0, h.minor) end\n"
    "    h = http.parse_response(x)\n"
    "    if type(h) == 'table' then pcall(http.body_framing, h, true, 'GET', h.status, h.minor) end\n"
    "    http.parse_request(x, 1, { lenient = true, max_headers = 3, max_request_line = 40 })\n"
    "    http.parse_response(x, 1 + cut % (#x + 1), { max_head = 64 }) end)\n"
    "  http.parse_request(s, 1, nil, cut)\n"
    "  local d = http.chunked_decoder({ max_chunk_size = 100000 })\n"
    "  d:feed(s:sub(1, cut)) d:feed(s:sub(cut + 1)) d:trailers() d:done() tostring(d)\n"
    "  local function piece(x) return x == '' and '' or http.chunk(x) end  -- chunk('') ends the body\n"
    "  local enc = piece(s:sub(1, cut)) .. piece(s:sub(cut + 1)) .. http.chunk('')\n"
    "  local back, done = http.chunked_decoder():feed(enc)\n"
    "  if not done or back ~= s then error('roundtrip: http chunked') end\n"
    "else\n"
    "  local telnet = core.telnet\n"
    "  for _, o in ipairs{ {}, { max_subneg = 8 } } do\n"
    "    local t = telnet.new(o)\n"
    "    t:feed(s:sub(1, cut)) t:feed(s:sub(cut + 1))\n"
    "    t:enable('binary', 'us') t:disable('echo', 'him') t:state('naws', 'him') tostring(t)\n"
    "  end\n"
    "  both(function(x) telnet.ttype_is(x) end)\n"
    "  local t = telnet.new({ us = { binary = true }, him = { binary = true } })\n"
    "  local back = t:feed(telnet.escape(s))\n"
    "  if t:enabled('binary', 'him') and back ~= s then error('roundtrip: telnet escape') end\n"
    "end\n";

/* one Lua state for the whole run (a new one per input would cost more
   than the input); the driver function stays on its stack at index 1 */
static lua_State *state(void) {
  static lua_State *L;
  if (L) return L;
  L = luaL_newstate();
  if (!L) abort();
  luaL_openlibs(L);
  if (luaL_loadbuffer(L, driver, sizeof driver - 1, "binding_fuzz") != LUA_OK) abort();
  luaL_requiref(L, "parley.core", luaopen_parley_core, 0);
  lua_pop(L, 1);
  return L;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = state();
  size_t cut;
  if (size < 1) return 0;
  lua_pushvalue(L, 1);
  luaL_requiref(L, "parley.core", luaopen_parley_core, 0);
  lua_pushinteger(L, data[0] % 4);
  lua_pushlstring(L, (const char *)data + 1, size - 1);
  cut = size > 1 ? (size_t)data[size - 1] % size : 0;
  lua_pushinteger(L, (lua_Integer)cut);
  if (lua_pcall(L, 4, 0, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg && strstr(msg, "roundtrip")) {
      fprintf(stderr, "%s\n", msg);
      abort();
    }
    lua_pop(L, 1);
  }
  return 0;
}
