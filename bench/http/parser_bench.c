/*
** parley's HTTP/1.1 request parser (csrc/http.c, pure C core) against
** Debian's libhttp-parser (nodejs/http-parser) on one 703-byte browser
** GET with 9 header fields.  Build and run: see bench/http/README.md.
**
** Both parsers record where every field name and value starts and ends
** (http-parser through its callbacks), so both do the work a server needs.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <http_parser.h>

#include "http.h"

/* csrc/http.c carries the Lua binding too; the bench never calls it, but
** it references these two helpers of csrc/core.c. */
#include "parley.h"
void parley_newclass(lua_State *L, const char *name, const luaL_Reg *methods,
                     const luaL_Reg *meta) {
  (void)L; (void)name; (void)methods; (void)meta;
}
int parley_tostring(lua_State *L, const char *detail) {
  (void)L; (void)detail;
  return 0;
}

static const char REQ[] =
  "GET /wp-content/uploads/2010/03/hello-kitty-darth-vader-pink.jpg HTTP/1.1\r\n"
  "Host: www.kittyhell.com\r\n"
  "User-Agent: Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10.6; ja-JP-mac; "
  "rv:1.9.2.3) Gecko/20100401 Firefox/3.6.3 Pathtraq/0.9\r\n"
  "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
  "Accept-Language: ja,en-us;q=0.7,en;q=0.3\r\n"
  "Accept-Encoding: gzip,deflate\r\n"
  "Accept-Charset: Shift_JIS,utf-8;q=0.7,*;q=0.7\r\n"
  "Keep-Alive: 115\r\n"
  "Connection: keep-alive\r\n"
  "Cookie: wp_ozh_wsa_visits=2; wp_ozh_wsa_visit_lasttime=xxxxxxxxxx; "
  "__utma=xxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.x; "
  "__utmz=xxxxxxxxx.xxxxxxxxxx.x.x.utmccn=(referral)|utmcsr=reader.livedoor.com"
  "|utmcct=/reader/|utmcmd=referral\r\n"
  "\r\n";

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- http-parser: callbacks record spans, like a server would ---- */
typedef struct span { const char *p; size_t n; } span;
typedef struct rec {
  span url, names[64], values[64];
  int nnames, nvalues, complete;
} rec;

static int on_url(http_parser *p, const char *at, size_t n) {
  rec *r = p->data;
  r->url.p = at; r->url.n = n;
  return 0;
}
static int on_field(http_parser *p, const char *at, size_t n) {
  rec *r = p->data;
  if (r->nnames < 64) { r->names[r->nnames].p = at; r->names[r->nnames++].n = n; }
  return 0;
}
static int on_value(http_parser *p, const char *at, size_t n) {
  rec *r = p->data;
  if (r->nvalues < 64) { r->values[r->nvalues].p = at; r->values[r->nvalues++].n = n; }
  return 0;
}
static int on_headers_complete(http_parser *p) {
  ((rec *)p->data)->complete = 1;
  return 0;
}

int main(int argc, char **argv) {
  long iters = argc > 1 ? atol(argv[1]) : 3000000, i;
  size_t len = sizeof REQ - 1;
  double t0, t_parley, t_hp;
  volatile size_t sink = 0;
  http_limits lim;
  http_field fields[100];
  http_parser_settings settings;
  rec r;

  if (len != 703) { fprintf(stderr, "request is %zu bytes\n", len); return 1; }

  /* parley */
  http_default_limits(&lim);
  t0 = now();
  for (i = 0; i < iters; i++) {
    http_head h;
    long n;
    h.fields = fields;
    h.fields_cap = 100;
    n = http_parse_request(REQ, len, &lim, &h);
    if (n != (long)len || h.nfields != 9) { fprintf(stderr, "parley failed\n"); return 1; }
    sink += h.fields[8].value_len;
  }
  t_parley = now() - t0;

  /* http-parser */
  memset(&settings, 0, sizeof settings);
  settings.on_url = on_url;
  settings.on_header_field = on_field;
  settings.on_header_value = on_value;
  settings.on_headers_complete = on_headers_complete;
  t0 = now();
  for (i = 0; i < iters; i++) {
    http_parser p;
    size_t n;
    http_parser_init(&p, HTTP_REQUEST);
    r.nnames = r.nvalues = r.complete = 0;
    p.data = &r;
    n = http_parser_execute(&p, &settings, REQ, len);
    if (n != len || !r.complete || r.nnames != 9 || HTTP_PARSER_ERRNO(&p) != HPE_OK) {
      fprintf(stderr, "http-parser failed\n");
      return 1;
    }
    sink += r.values[8].n;
  }
  t_hp = now() - t0;

  printf("request: %zu bytes, %ld iterations (sink %zu)\n", len, iters, (size_t)sink);
  printf("parley      %8.1f ns/request  %6.2f GB/s\n", t_parley / iters * 1e9,
         (double)len * iters / t_parley / 1e9);
  printf("http-parser %8.1f ns/request  %6.2f GB/s  (version %lu.%lu.%lu)\n",
         t_hp / iters * 1e9, (double)len * iters / t_hp / 1e9,
         (http_parser_version() >> 16) & 255, (http_parser_version() >> 8) & 255,
         http_parser_version() & 255);
  printf("ratio       %8.2fx (http-parser time / parley time)\n", t_hp / t_parley);
  return 0;
}
