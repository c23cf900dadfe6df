/*
** libFuzzer target for the imap codec's pure C core.  The first byte
** picks what the rest feeds: the command parser or the response parser
** (split into CRLF lines and literals of exactly the announced size, as
** a server or client would read them), a sequence set, a FETCH
** attribute, or a modified UTF-7 name (decode, then encode must give
** the input back).  Parser input also runs through the Lua binding.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "imap.h"

int luaopen_parley_core(lua_State *L);

/* The same stream through the Lua binding, which builds the tables
   (envelopes, body structures, lists) from the tokens. */
static const char lua_driver[] =
    "local imap, response, s, auth = ...\n"
    "local p = response and imap.response_parser{max_literal = 65536}\n"
    "  or imap.command_parser{authenticated = auth}\n"
    "local i = 1\n"
    "while i <= #s do\n"
    "  local e = s:find('\\n', i, true)\n"
    "  local line = s:sub(i, (e or #s + 1) - 1):gsub('\\r$', '')\n"
    "  i = e and e + 1 or #s + 1\n"
    "  local r, v = p:feed_line(line)\n"
    "  if r == 'literal' then\n"
    "    if v > #s - i + 1 then return end\n"
    "    p:feed_literal(s:sub(i, i + v - 1)); i = i + v\n"
    "  elseif r == 'done' and not response then\n"
    "    for k = 1, #v.args do imap.parse_fetch_atts(v.args, k) end\n"
    "  end\n"
    "end\n";

static void feed_lua(int response, const char *s, size_t n, int auth) {
  static lua_State *L;
  if (!L) {
    L = luaL_newstate();
    luaL_openlibs(L);
    luaopen_parley_core(L);
    lua_getfield(L, -1, "imap");
    lua_setfield(L, LUA_REGISTRYINDEX, "imap");
    lua_settop(L, 0);
  }
  if (luaL_loadbuffer(L, lua_driver, sizeof lua_driver - 1, "driver")) abort();
  lua_getfield(L, LUA_REGISTRYINDEX, "imap");
  lua_pushboolean(L, response);
  lua_pushlstring(L, s, n);
  lua_pushboolean(L, auth);
  if (lua_pcall(L, 4, 0, 0) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    abort();
  }
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void feed_stream(int response, const char *s, size_t n, int flags) {
  imap_parser p;
  size_t i = 0;
  imap_parser_init(&p, response);
  p.max_literal = 1u << 16;
  p.max_depth = (flags & 1) ? 8 : 64;
  p.authenticated = (flags & 2) != 0;
  p.allow_8bit = (flags & 4) != 0;
  while (i < n) {
    const char *e = memchr(s + i, '\n', n - i);
    size_t len = e ? (size_t)(e - (s + i)) : n - i;
    size_t ll = len;
    int r;
    if (ll > 0 && s[i + ll - 1] == '\r') ll--;
    r = imap_feed_line(&p, s + i, ll);
    i += len + (e ? 1 : 0);
    while (r == IMAP_NEED_LITERAL) {
      if (p.lit_n > n - i) goto out;
      if (flags & 8) r = imap_feed_literal_ext(&p);
      else r = imap_feed_literal(&p, s + i, (size_t)p.lit_n);
      i += (size_t)p.lit_n;
      if (r != IMAP_NEED_LINE) abort();
      break;
    }
    if (r == IMAP_DONE) {
      size_t k;
      /* every list bracket is matched and counts its children */
      for (k = 0; k < p.ntok; k++) {
        if (p.tok[k].type == IMAP_T_OPEN &&
            (p.tok[k].off >= p.ntok || p.tok[p.tok[k].off].type != IMAP_T_CLOSE))
          abort();
      }
    }
  }
out:
  imap_parser_free(&p);
}

static void seq_emit(void *ud, uint32_t lo, uint32_t hi) {
  (void)lo;
  (void)hi;
  (*(size_t *)ud)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data + 1;
  size_t n;
  if (size < 1) return 0;
  n = size - 1;
  imap_init();
  switch (data[0] % 5) {
    case 0:
      feed_stream(0, s, n, data[0] >> 3);
      feed_lua(0, s, n, (data[0] >> 4) & 1);
      break;
    case 1:
      feed_stream(1, s, n, data[0] >> 3);
      feed_lua(1, s, n, 1);
      break;
    case 2: {
      size_t count = 0;
      const char *e = imap_sequence_set(s, n, seq_emit, &count);
      if (!e && count == 0) abort();
      break;
    }
    case 3: {
      imap_fetch_att a;
      if (!imap_parse_fetch_att(s, n, &a) && a.nparts > IMAP_MAX_PART) abort();
      break;
    }
    case 4: {
      imap_buf dec = {NULL, 0, 0}, enc = {NULL, 0, 0};
      if (!imap_utf7_decode(s, n, &dec)) {
        if (imap_utf7_encode(dec.p ? dec.p : "", dec.n, &enc)) abort();
        if (enc.n != n || (n && memcmp(enc.p, s, n) != 0)) abort();
      }
      imap_buf_free(&dec);
      imap_buf_free(&enc);
      break;
    }
  }
  return 0;
}
