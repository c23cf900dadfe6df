/*
** libFuzzer target for the ftp codec core (csrc/ftp.h).
**
** The first byte picks the part under test, the rest is the input:
**   0 reply parser (input split into lines at LF, tiny limits too)
**   1 host-port parsers (PORT, PASV, EPSV, EPRT), commands, numbers
**   2 list-line parser, then format of what it parsed and parse again
**   3 facts parser, time-val parser
**   4 TYPE A: encode, then decode in random-sized chunks == input
**   5 format_facts -> split/next_fact round trip (name without CR/LF)
**   6 normalize_path: result absolute, no "//", "." or "..", idempotent
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ftp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok) {
  if (!ok) abort();
}

static void fuzz_reply(const char *s, size_t n, int small) {
  ftp_reply_state st;
  const char *p = s, *end = s + n, *err;
  ftp_reply_init(&st, small ? 3 : 1000, small ? 16 : 65536);
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    int r = ftp_reply_feed(&st, p, len, &err);
    if (r == FTP_REPLY_DONE) {
      check(st.code >= 100 && st.code <= 599 && st.len <= st.max_bytes);
    } else if (r == FTP_REPLY_ERROR) {
      check(err != NULL && !st.multiline);
    }
    p += len + (nl ? 1 : 0);
  }
  ftp_reply_free(&st);
}

static void fuzz_hostport(const char *s, size_t n) {
  unsigned char ip[4];
  unsigned port;
  char addr[64];
  int fam;
  const char *err;
  if (ftp_parse_port(s, n, ip, &port, &err)) check(port >= 1 && port <= 65535);
  if (ftp_parse_pasv(s, n, ip, &port, &err)) check(port >= 1 && port <= 65535);
  if (ftp_parse_epsv(s, n, &port, &err)) check(port >= 1 && port <= 65535);
  if (ftp_parse_eprt(s, n, addr, &fam, &port, &err))
    check(port >= 1 && port <= 65535 && (fam == 1 || fam == 2) &&
          strlen(addr) < 64);
  {
    char verb[5];
    size_t vl, al;
    const char *arg;
    long long v;
    if (ftp_parse_command(s, n, verb, &vl, &arg, &al, &err))
      check(vl >= 1 && vl <= 4 && strlen(verb) == vl &&
            (arg == NULL || arg + al == s + n));
    if (ftp_parse_size(s, n, &v)) check(v >= 0);
  }
}

static void fuzz_list(const char *s, size_t n) {
  ftp_list_entry e, back;
  const long long now = 1700839812LL;
  const char *err;
  char *out;
  size_t cap, k;
  if (!ftp_parse_list_line(s, n, now, &e)) return;
  check(e.name_len > 0 && e.name >= s && e.name + e.name_len <= s + n);
  if (e.type == FTP_T_LINK && e.target) check(e.target + e.target_len <= s + n);
  if (e.owner && e.owner_len > 64) e.owner_len = 64;
  if (e.group && e.group_len > 64) e.group_len = 64;
  cap = e.name_len + e.target_len + e.owner_len + e.group_len + 160;
  out = malloc(cap);
  if (out == NULL) return;
  k = ftp_format_list_line(&e, now, out, cap, &err);
  /* whatever it parsed that is printable prints as a line that parses back
  ** to the same name and type */
  if (k > 0 && e.name[0] != ' ' && (e.type != FTP_T_LINK || e.target)) {
    check(k <= cap);
    if (ftp_parse_list_line(out, k, now, &back)) {
      check(back.type == e.type);
    }
  }
  free(out);
}

static void fuzz_facts(const char *s, size_t n) {
  const char *facts, *name, *err, *p;
  size_t fl, nl;
  ftp_fact f;
  long long t;
  double frac;
  int hf, r, count = 0;
  if (ftp_parse_time(s, n, &t, &frac, &hf, &err)) {
    char buf[32];
    check(ftp_format_time(t, -1, buf) == 14);
    check(frac >= 0 && frac < 1);
  }
  if (!ftp_split_facts(s, n, &facts, &fl, &name, &nl, &err)) return;
  check(fl + 1 + nl == n);
  p = facts;
  while ((r = ftp_next_fact(&p, facts + fl, &f)) == 1) {
    check(f.klen > 0 && f.key + f.klen <= facts + fl);
    check(memchr(f.key, ';', f.klen) == NULL && memchr(f.val, ';', f.vlen) == NULL);
    count++;
    check(count <= (int)fl);
  }
}

static void fuzz_ascii(const uint8_t *data, size_t n) {
  char *enc, *dec;
  size_t en, dn = 0, pos = 0, i = 0;
  int pending = 0;
  const char *in = (const char *)data;
  enc = malloc(2 * n + 1);
  dec = malloc(2 * n + 2);
  if (!enc || !dec) {
    free(enc);
    free(dec);
    return;
  }
  en = ftp_ascii_encode(in, n, enc);
  check(en >= n && en <= 2 * n);
  /* chunk sizes from the input itself, so every split gets tried */
  while (pos < en) {
    size_t c = n ? (size_t)(data[i % n] % 7) + (i % 3 == 0 ? 0 : 1) : 1;
    i++;
    if (c > en - pos) c = en - pos;
    dn += ftp_ascii_decode(&pending, enc + pos, c, dec + dn);
    pos += c;
  }
  if (pending) dec[dn++] = '\r';
  check(dn == n && memcmp(dec, in, n) == 0);
  free(enc);
  free(dec);
}

static void fuzz_facts_roundtrip(const char *s, size_t n) {
  /* facts from the first half ("key=value" pairs split at bytes that are
  ** not allowed in facts), the name from the rest with CR/LF/NUL removed */
  ftp_fact f[8], g;
  size_t nf = 0, half = n / 2, i, k, fl, nl, cap = n * 3 + 64;
  char *name = malloc(n + 1), *out = malloc(cap), *keys = malloc(n + 1);
  const char *err, *facts, *pname, *p;
  size_t name_len = 0;
  if (!name || !out || !keys) goto done;
  /* keys: "k<i>", values: runs of allowed bytes from the input */
  for (i = 0, k = 0; i < half && nf < 8;) {
    size_t st = i;
    while (i < half) {
      unsigned char c = (unsigned char)s[i];
      if (c < 33 || c == ';' || c == 127) break;
      i++;
    }
    keys[k] = (char)('a' + nf);
    f[nf].key = keys + k;
    f[nf].klen = 1;
    k++;
    f[nf].val = s + st;
    f[nf].vlen = i - st;
    nf++;
    i++;
  }
  for (i = half; i < n; i++)
    if (s[i] != '\r' && s[i] != '\n' && s[i] != '\0') name[name_len++] = s[i];
  k = ftp_format_facts(f, nf, name, name_len, out, &err);
  check(k > 0); /* every input built here is valid */
  check(ftp_split_facts(out, k, &facts, &fl, &pname, &nl, &err));
  check(nl == name_len && memcmp(pname, name, nl) == 0);
  p = facts;
  for (i = 0; i < nf; i++) {
    check(ftp_next_fact(&p, facts + fl, &g) == 1);
    check(g.klen == f[i].klen && memcmp(g.key, f[i].key, g.klen) == 0);
    check(g.vlen == f[i].vlen && memcmp(g.val, f[i].val, g.vlen) == 0);
  }
  check(ftp_next_fact(&p, facts + fl, &g) == 0);
done:
  free(name);
  free(out);
  free(keys);
}

static void fuzz_path(const char *s, size_t n) {
  size_t half = n / 2, k, k2, i;
  char *out = malloc(n + 2), *out2;
  if (out == NULL) return;
  k = ftp_normalize_path(s, half, s + half, n - half, out);
  if (k == 0) {
    check(memchr(s, '\0', n) != NULL);
    free(out);
    return;
  }
  check(k <= n + 2 && out[0] == '/');
  for (i = 0; i + 1 < k; i++) check(!(out[i] == '/' && out[i + 1] == '/'));
  for (i = 0; i < k; i++) {
    if (out[i] == '/' && i + 1 < k && out[i + 1] == '.') {
      size_t j = i + 2;
      if (j < k && out[j] == '.') j++;
      check(!(j == k || out[j] == '/'));
    }
  }
  out2 = malloc(k + 3);
  if (out2) {
    k2 = ftp_normalize_path("/", 1, out, k, out2);
    check(k2 == k && memcmp(out, out2, k) == 0);
    free(out2);
  }
  free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s;
  size_t n;
  if (size < 1) return 0;
  s = (const char *)data + 1;
  n = size - 1;
  switch (data[0] % 7) {
    case 0: fuzz_reply(s, n, data[0] & 0x80); break;
    case 1: fuzz_hostport(s, n); break;
    case 2: fuzz_list(s, n); break;
    case 3: fuzz_facts(s, n); break;
    case 4: fuzz_ascii((const uint8_t *)s, n); break;
    case 5: fuzz_facts_roundtrip(s, n); break;
    default: fuzz_path(s, n); break;
  }
  return 0;
}
