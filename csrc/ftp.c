/*
** ftp codec: core.ftp -- pure FTP codecs, no I/O (RFC 959, 2389, 2428,
** 3659).  A pure C core (declared in ftp.h, fuzzed alone) and a thin Lua
** binding at the end of this file.
**
** Conventions: a wrong argument type raises; malformed protocol input
** returns nil, "short reason".
**
** Replies (client side, RFC 959 section 4.2)
**   p = ftp.reply_parser([opts])      opts.max_lines (1000 lines/reply),
**                                     opts.max_bytes (65536 bytes of text)
**   p:feed_line(line) -> nil          reply not complete yet
**                     -> code, text   code integer; text = the text of
**                        every line joined by "\n": the first line after
**                        "123-"/"123 ", inner lines verbatim except that a
**                        leading "123-" (same code) is dropped, the last
**                        line after "123 ".  Only "<code> " (or the bare
**                        code) ends a multi-line reply.
**                     -> nil, reason  "bad reply line" (not "[1-5]dd",
**                        "[1-5]dd ..." or "[1-5]dd-..."), "too many
**                        lines", "reply too long"; the parser is then idle.
**   p:pending() -> boolean            inside a multi-line reply
**   p:reset()                         drop a reply being read
**   ftp.reply(code, text|lines) -> "123 text\r\n" or, for an array of
**        two or more lines, "123-l1\r\n l2\r\n...123 ln\r\n"; inner lines
**        beginning with three digits get a leading space (RFC 959 4.2).
**        Raises on a code outside 100..599 or CR, LF, NUL in a line.
**   ftp.parse_feat(text) -> {FEATURE = "params" or ""}  from a 211 text
**        (RFC 2389 3.2: the lines starting with a space), names uppercased
**
** Host-port (RFC 959 PORT/PASV, RFC 2428 EPRT/EPSV); ports are 1..65535
**   ftp.parse_port("h1,h2,h3,h4,p1,p2") -> ip, port
**   ftp.parse_pasv(text227) -> ip, port   first h1,...,p2 anywhere in text
**   ftp.format_port(ip, port) -> "h1,h2,h3,h4,p1,p2"
**   ftp.format_pasv(ip, port) -> "Entering Passive Mode (h1,...,p2)."
**   ftp.parse_epsv(text229) -> port       "(<d><d><d>port<d>)", d 33..126
**   ftp.format_epsv(port) -> "Entering Extended Passive Mode (|||port|)"
**   ftp.parse_eprt(arg) -> ip, port, family   family 1 or 2, ip in the
**        canonical inet_ntop form; "unsupported network protocol" for a
**        family other than 1 and 2 (answer 522)
**   ftp.format_eprt(ip, port) -> "|1|ip|port|" or "|2|ip|port|"
**   Errors: "bad host-port", "number out of range", "no host-port",
**   "bad port", "no extended port", "bad eprt", "bad delimiter",
**   "bad address".
**
** Times (RFC 3659 2.3 time-val, UTC)
**   ftp.format_time(t) -> "YYYYMMDDHHMMSS" (".sss" when t has a fraction)
**   ftp.parse_time(s) -> t   integer, float with a fraction; years
**        1000..9999, day checked against the month, second 60 allowed.
**
** Listings
**   ftp.format_list_line(entry [, now]) -> ls -l line (no CRLF)
**        entry = {name=, type="file"|"dir"|"link"|"block"|"char"|"fifo"|
**        "socket" (default file), size=0, mtime=now, mode=0644/0755/0777,
**        nlink=1, owner="ftp", group="ftp", target= (links)}.  Dates in
**        UTC with English month names: "Mon DD HH:MM" if now - 180 days <
**        mtime <= now + 1 hour, "Mon DD  YYYY" otherwise (day space-padded
**        like GNU ls).  nil, "bad name" / "bad owner" / "time out of
**        range"; raises on an unknown type.
**   ftp.parse_list_line(line [, now]) -> entry or nil  Unix ls -l (with
**        or without group, numeric owners, devices: major/minor fields,
**        links: name/target split at the first " -> ", names with spaces)
**        and DOS/IIS ("MM-DD-YY  HH:MMAM  <DIR>|size  name").  mtime is
**        UTC; an "HH:MM" date is put in now's year, or the year before
**        when that would be more than a day ahead of now.  nil for lines
**        it does not understand ("total 12").
**
** MLSx (RFC 3659 section 7)
**   ftp.format_facts(entry [, which]) -> "fact=value;...; name"
**        which: fact names (default type, size, modify, create, perm,
**        unique, lang, media-type, charset), each written when the entry
**        has it: type ("link" -> "OS.unix=symlink", default "file"),
**        modify from entry.modify or entry.mtime, create (unix times, or
**        time-val strings), unix.mode from entry.mode (octal),
**        unix.owner/unix.group from owner/group, any other from
**        entry[name].  nil, "bad fact value" (space, ";" or control
**        character), "bad name" (CR, LF, NUL); raises on > 32 facts.
**        MLST lines need the leading space added by the caller.
**   ftp.parse_facts(line) -> entry   every fact under its lowercased
**        name as a string, plus name (all after the first space), size
**        (integer), mtime (from modify), type (file/dir/cdir/pdir
**        lowercased), mode (from unix.mode).  nil, "no pathname" /
**        "bad fact" / "bad size" / "bad modify".  A missing final ";" is
**        tolerated.  MLST callers strip the leading space first.
**
** TYPE A (RFC 959 3.1.1.1)
**   e = ftp.ascii_encoder(); e:feed(s) -> s with every LF as CRLF (a bare
**        CR is sent as is); e:finish() -> ""
**   d = ftp.ascii_decoder(); d:feed(s) -> s with CRLF as LF, other CRs
**        kept; a CR ending a chunk is held for the next; d:finish() ->
**        the held CR or "".  decode(encode(x)) == x for every x.
**
** Commands and numbers (server side)
**   ftp.parse_command(line) -> VERB, arg   verb 1..4 letters uppercased,
**        arg = everything after the single space (spaces kept), nil if
**        none; leading Telnet IAC <cmd> pairs (IP/DM before ABOR, RFC 959
**        4.1.3) are skipped.  nil, "bad command" / "nul in command".
**   ftp.parse_size(s) -> integer   1*DIGIT < 2^63: the 213 text of SIZE
**        (RFC 3659 4), a REST marker in stream mode (RFC 3659 5);
**        nil, "bad number".
**
** Paths
**   ftp.normalize_path(cwd, arg) -> "/abs/path"  "." "..", "//"
**        resolved, never above "/"; nil, "nul in path".
*/
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parley.h"
#include "ftp.h"

/* ====================================================================
** Small helpers
** ==================================================================== */

static int isdig(int c) { return c >= '0' && c <= '9'; }
static int lower(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant) */
static long long days_from_civil(long long y, int m, int d) {
  long long era, yoe, doy, doe;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = y - era * 400;
  doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static void civil_from_days(long long z, long long *y, int *m, int *d) {
  long long era, doe, yoe, doy, mp;
  z += 719468;
  era = (z >= 0 ? z : z - 146096) / 146097;
  doe = z - era * 146097;
  yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

static long long floordiv(long long a, long long b) {
  long long q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static int days_in_month(long long y, int m) {
  static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
  return dm[m - 1];
}

/* parses exactly n digits (n <= 18) */
static long long digits(const char *s, size_t n) {
  long long v = 0;
  size_t i;
  for (i = 0; i < n; i++) v = v * 10 + (s[i] - '0');
  return v;
}

static int alldigits(const char *s, size_t n) {
  size_t i;
  if (n == 0) return 0;
  for (i = 0; i < n; i++)
    if (!isdig((unsigned char)s[i])) return 0;
  return 1;
}

static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static int month_of(const char *s, size_t n) {
  int i;
  if (n != 3) return 0;
  for (i = 0; i < 12; i++)
    if (lower(s[0]) == lower(months[i][0]) && lower(s[1]) == months[i][1] &&
        lower(s[2]) == months[i][2])
      return i + 1;
  return 0;
}

/* ====================================================================
** Replies (RFC 959 section 4.2)
** ==================================================================== */

void ftp_reply_init(ftp_reply_state *st, size_t max_lines, size_t max_bytes) {
  memset(st, 0, sizeof *st);
  st->max_lines = max_lines;
  st->max_bytes = max_bytes;
}

void ftp_reply_free(ftp_reply_state *st) {
  free(st->buf);
  st->buf = NULL;
  st->len = st->cap = 0;
}

void ftp_reply_reset(ftp_reply_state *st) {
  st->code = 0;
  st->multiline = 0;
  st->lines = 0;
  st->len = 0;
}

/* appends [sep] s to the text; -1 when over the limit or out of memory */
static int reply_append(ftp_reply_state *st, int sep, const char *s,
                        size_t n, const char **err) {
  size_t need = st->len + n + (sep ? 1 : 0);
  if (need > st->max_bytes || need < st->len) {
    *err = "reply too long";
    return -1;
  }
  if (need > st->cap) {
    size_t cap = st->cap ? st->cap : 128;
    char *nb;
    while (cap < need) cap *= 2;
    nb = (char *)realloc(st->buf, cap);
    if (nb == NULL) {
      *err = "out of memory";
      return -1;
    }
    st->buf = nb;
    st->cap = cap;
  }
  if (sep) st->buf[st->len++] = '\n';
  if (n) memcpy(st->buf + st->len, s, n);
  st->len += n;
  return 0;
}

static int reply_code(const char *s, size_t n) {
  /* RFC 959 4.2.1: the first digit is 1..5 */
  if (n < 3 || s[0] < '1' || s[0] > '5' || !isdig((unsigned char)s[1]) ||
      !isdig((unsigned char)s[2]))
    return 0;
  return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
}

int ftp_reply_feed(ftp_reply_state *st, const char *line, size_t n,
                   const char **err) {
  if (!st->multiline) {
    int code = reply_code(line, n);
    ftp_reply_reset(st);
    if (code == 0 || (n > 3 && line[3] != ' ' && line[3] != '-')) {
      *err = "bad reply line";
      return FTP_REPLY_ERROR;
    }
    if (reply_append(st, 0, line + (n > 3 ? 4 : 3), n > 3 ? n - 4 : 0,
                     err) < 0) {
      ftp_reply_reset(st);
      return FTP_REPLY_ERROR;
    }
    st->code = code;
    st->lines = 1;
    if (n > 3 && line[3] == '-') {
      st->multiline = 1;
      return FTP_REPLY_MORE;
    }
    return FTP_REPLY_DONE;
  }
  /* inside a multi-line reply: only "<same code> " (or the bare code)
  ** ends it; any other line, even one starting with other digits or with
  ** "<same code>-", is text.  A "<code>-" prefix is dropped from the text
  ** (servers that repeat it on every line). */
  if (++st->lines > st->max_lines) {
    *err = "too many lines";
    ftp_reply_reset(st);
    return FTP_REPLY_ERROR;
  }
  if (n >= 3 && reply_code(line, n) == st->code &&
      (n == 3 || line[3] == ' ' || line[3] == '-')) {
    int last = n == 3 || line[3] == ' ';
    if (reply_append(st, 1, line + (n > 3 ? 4 : 3), n > 3 ? n - 4 : 0,
                     err) < 0) {
      ftp_reply_reset(st);
      return FTP_REPLY_ERROR;
    }
    if (last) {
      st->multiline = 0;
      return FTP_REPLY_DONE;
    }
    return FTP_REPLY_MORE;
  }
  if (reply_append(st, 1, line, n, err) < 0) {
    ftp_reply_reset(st);
    return FTP_REPLY_ERROR;
  }
  return FTP_REPLY_MORE;
}

/* ====================================================================
** Host-port
** ==================================================================== */

/* six comma separated numbers at s; returns the length used, 0 if the
** text there is not a host-port, -1 if it is one with a number > 255 (or
** longer than three digits) */
static long hostport_at(const char *s, const char *end, unsigned char ip[4],
                        unsigned *port) {
  const char *p = s;
  unsigned v[6];
  int i, bad = 0;
  for (i = 0; i < 6; i++) {
    const char *d;
    if (i > 0) {
      if (p >= end || *p != ',') return 0;
      p++;
    }
    d = p;
    while (p < end && isdig((unsigned char)*p)) p++;
    if (p == d) return 0;
    if (p - d > 3 || (v[i] = (unsigned)digits(d, (size_t)(p - d))) > 255)
      bad = 1;
  }
  if (bad) return -1;
  for (i = 0; i < 4; i++) ip[i] = (unsigned char)v[i];
  *port = v[4] * 256 + v[5];
  return (long)(p - s);
}

int ftp_parse_port(const char *s, size_t n, unsigned char ip[4],
                   unsigned *port, const char **err) {
  long k;
  while (n > 0 && s[0] == ' ') s++, n--;
  while (n > 0 && s[n - 1] == ' ') n--;
  k = hostport_at(s, s + n, ip, port);
  if (k < 0) {
    *err = "number out of range";
    return 0;
  }
  if (k == 0 || (size_t)k != n) {
    *err = "bad host-port";
    return 0;
  }
  if (*port == 0) {
    *err = "bad port";
    return 0;
  }
  return 1;
}

int ftp_parse_pasv(const char *s, size_t n, unsigned char ip[4],
                   unsigned *port, const char **err) {
  /* RFC 959 leaves the 227 text loose: take the first h1,...,p2 found
  ** anywhere, with or without parentheses */
  const char *p = s, *end = s + n;
  while (p < end) {
    if (isdig((unsigned char)*p) && (p == s || !isdig((unsigned char)p[-1]))) {
      long k = hostport_at(p, end, ip, port);
      if (k < 0) {
        *err = "number out of range";
        return 0;
      }
      if (k > 0) {
        if (*port == 0) {
          *err = "bad port";
          return 0;
        }
        return 1;
      }
    }
    p++;
  }
  *err = "no host-port";
  return 0;
}

/* decimal TCP port 1..65535, no sign, at most 5 digits */
static int tcp_port(const char *s, size_t n, unsigned *port) {
  long long v;
  if (n == 0 || n > 5 || !alldigits(s, n)) return 0;
  v = digits(s, n);
  if (v < 1 || v > 65535) return 0;
  *port = (unsigned)v;
  return 1;
}

int ftp_parse_epsv(const char *s, size_t n, unsigned *port,
                   const char **err) {
  /* RFC 2428 section 3: "(<d><d><d><tcp-port><d>)", d in 33..126 */
  const char *p = s, *end = s + n;
  while ((p = memchr(p, '(', (size_t)(end - p))) != NULL) {
    const char *q = p + 1, *close;
    unsigned char d;
    if (end - q >= 5 && (d = (unsigned char)q[0]) >= 33 && d <= 126 &&
        q[1] == (char)d && q[2] == (char)d) {
      const char *num = q + 3;
      const char *de = memchr(num, d, (size_t)(end - num));
      if (de != NULL && de + 1 < end && de[1] == ')') {
        close = de + 1;
        (void)close;
        if (!tcp_port(num, (size_t)(de - num), port)) {
          *err = "bad port";
          return 0;
        }
        return 1;
      }
    }
    p++;
  }
  *err = "no extended port";
  return 0;
}

int ftp_parse_eprt(const char *s, size_t n, char *ip, int *family,
                   unsigned *port, const char **err) {
  /* RFC 2428 section 2: <d><net-prt><d><net-addr><d><tcp-port><d> */
  const char *end, *f1, *f2, *f3;
  unsigned char d;
  char addr[64];
  unsigned char bin[16];
  size_t alen;
  while (n > 0 && s[0] == ' ') s++, n--;
  while (n > 0 && s[n - 1] == ' ') n--;
  end = s + n;
  if (n < 7) {
    *err = "bad eprt";
    return 0;
  }
  d = (unsigned char)s[0];
  if (d < 33 || d > 126 || isdig(d) || s[n - 1] != (char)d) {
    *err = "bad delimiter";
    return 0;
  }
  f1 = s + 1;
  f2 = memchr(f1, d, (size_t)(end - f1));
  if (f2 == NULL) goto bad;
  f2++;
  f3 = memchr(f2, d, (size_t)(end - f2));
  if (f3 == NULL) goto bad;
  f3++;
  if (f3 >= end || memchr(f3, d, (size_t)(end - f3)) != end - 1) goto bad;
  if (f2 - f1 - 1 == 1 && f1[0] == '1')
    *family = 1;
  else if (f2 - f1 - 1 == 1 && f1[0] == '2')
    *family = 2;
  else {
    *err = "unsupported network protocol";
    return 0;
  }
  alen = (size_t)(f3 - f2 - 1);
  if (alen == 0 || alen >= sizeof addr) {
    *err = "bad address";
    return 0;
  }
  memcpy(addr, f2, alen);
  addr[alen] = '\0';
  if (inet_pton(*family == 1 ? AF_INET : AF_INET6, addr, bin) != 1) {
    *err = "bad address";
    return 0;
  }
  if (!tcp_port(f3, (size_t)(end - 1 - f3), port)) {
    *err = "bad port";
    return 0;
  }
  if (inet_ntop(*family == 1 ? AF_INET : AF_INET6, bin, ip, 64) == NULL) {
    *err = "bad address";
    return 0;
  }
  return 1;
bad:
  *err = "bad eprt";
  return 0;
}

/* ====================================================================
** time-val (RFC 3659 section 2.3): YYYYMMDDHHMMSS[.sss], UTC
** ==================================================================== */

#define TIME_MIN (-30610224000LL)  /* 1000-01-01T00:00:00Z */
#define TIME_MAX (253402300799LL)  /* 9999-12-31T23:59:59Z */

size_t ftp_format_time(long long t, int ms, char *out) {
  long long days, y;
  int m, d, secs;
  if (t < TIME_MIN || t > TIME_MAX) return 0;
  days = floordiv(t, 86400);
  secs = (int)(t - days * 86400);
  civil_from_days(days, &y, &m, &d);
  if (ms >= 0)
    return (size_t)sprintf(out, "%04lld%02d%02d%02d%02d%02d.%03d", y, m, d,
                           secs / 3600, secs / 60 % 60, secs % 60, ms % 1000);
  return (size_t)sprintf(out, "%04lld%02d%02d%02d%02d%02d", y, m, d,
                         secs / 3600, secs / 60 % 60, secs % 60);
}

int ftp_parse_time(const char *s, size_t n, long long *t, double *frac,
                   int *has_frac, const char **err) {
  long long y;
  int mo, d, h, mi, se;
  if (n < 14 || !alldigits(s, 14)) {
    *err = "bad time";
    return 0;
  }
  *frac = 0;
  *has_frac = 0;
  if (n > 14) {
    /* the "." must be followed by at least one digit */
    double scale = 0.1;
    size_t i;
    if (s[14] != '.' || n == 15 || !alldigits(s + 15, n - 15)) {
      *err = "bad time";
      return 0;
    }
    for (i = 15; i < n && i < 15 + 17; i++, scale /= 10)
      *frac += (s[i] - '0') * scale;
    *has_frac = 1;
  }
  y = digits(s, 4);
  mo = (int)digits(s + 4, 2);
  d = (int)digits(s + 6, 2);
  h = (int)digits(s + 8, 2);
  mi = (int)digits(s + 10, 2);
  se = (int)digits(s + 12, 2);
  if (y < 1000 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) ||
      h > 23 || mi > 59 || se > 60) {
    *err = "time out of range";
    return 0;
  }
  /* a leap second (60) counts as the first second of the next minute */
  *t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
  return 1;
}

/* ====================================================================
** Listings: ls -l lines and the DOS/IIS format
** ==================================================================== */

/* GNU ls prints the time of day for files modified in the last six months
** and the year otherwise (also for the future).  We use 180 days and allow
** one hour of clock skew into the future. */
#define RECENT_PAST (180LL * 86400)
#define RECENT_FUTURE 3600LL

static int type_char(int type) {
  switch (type) {
    case FTP_T_FILE: return '-';
    case FTP_T_DIR: return 'd';
    case FTP_T_LINK: return 'l';
    case FTP_T_BLOCK: return 'b';
    case FTP_T_CHAR: return 'c';
    case FTP_T_FIFO: return 'p';
    case FTP_T_SOCKET: return 's';
    default: return 0;
  }
}

static int type_of_char(int c) {
  switch (c) {
    case '-': return FTP_T_FILE;
    case 'd': return FTP_T_DIR;
    case 'l': return FTP_T_LINK;
    case 'b': return FTP_T_BLOCK;
    case 'c': return FTP_T_CHAR;
    case 'p': return FTP_T_FIFO;
    case 's': return FTP_T_SOCKET;
    default: return FTP_T_NONE;
  }
}

static void mode_string(int mode, char out[10]) {
  static const char rwx[] = "rwx";
  int i;
  for (i = 0; i < 9; i++) out[i] = (mode & (0400 >> i)) ? rwx[i % 3] : '-';
  if (mode & 04000) out[2] = (mode & 0100) ? 's' : 'S';
  if (mode & 02000) out[5] = (mode & 0010) ? 's' : 'S';
  if (mode & 01000) out[8] = (mode & 0001) ? 't' : 'T';
  out[9] = '\0';
}

/* parses "rwxr-xr-x" (with s S t T); -1 if malformed */
static int parse_mode(const char *p) {
  int mode = 0, i;
  for (i = 0; i < 9; i++) {
    int c = p[i], pos = i % 3;
    int bit = 0400 >> i;
    if (c == '-') continue;
    if (pos == 0 && c == 'r') mode |= bit;
    else if (pos == 1 && c == 'w') mode |= bit;
    else if (pos == 2 && c == 'x') mode |= bit;
    else if (pos == 2 && i < 8 && (c == 's' || c == 'S'))
      mode |= (c == 's' ? bit : 0) | (i == 2 ? 04000 : 02000);
    else if (i == 8 && (c == 't' || c == 'T'))
      mode |= (c == 't' ? bit : 0) | 01000;
    else
      return -1;
  }
  return mode;
}

static int bad_text(const char *s, size_t n, int allow_space) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\r' || c == '\n' || c == '\0') return 1;
    if (!allow_space && (c == ' ' || c == '\t')) return 1;
  }
  return 0;
}

size_t ftp_format_list_line(const ftp_list_entry *e, long long now,
                            char *out, size_t cap, const char **err) {
  char perms[10];
  long long days, y;
  int m, d, secs, tc = type_char(e->type), len;
  long long mt = e->has_mtime ? e->mtime : now;
  int mode = e->has_mode ? e->mode
                         : (e->type == FTP_T_DIR ? 0755
                            : e->type == FTP_T_LINK ? 0777 : 0644);
  size_t k;
  const char *owner = e->owner ? e->owner : "ftp";
  const char *group = e->group ? e->group : "ftp";
  int olen = e->owner ? (int)e->owner_len : 3;
  int glen = e->group ? (int)e->group_len : 3;
  if (tc == 0) {
    *err = "bad type";
    return 0;
  }
  if (e->name_len == 0 || bad_text(e->name, e->name_len, 1) ||
      (e->target && bad_text(e->target, e->target_len, 1))) {
    *err = "bad name";
    return 0;
  }
  if (olen == 0 || glen == 0 || e->owner_len > 64 || e->group_len > 64 ||
      bad_text(owner, (size_t)olen, 0) || bad_text(group, (size_t)glen, 0)) {
    *err = "bad owner";
    return 0;
  }
  if (mt < TIME_MIN || mt > TIME_MAX) {
    *err = "time out of range";
    return 0;
  }
  /* fixed part: at most 10+1+20+1+8+1+8+1+20+1+3+1+2+7+4 bytes */
  if (cap < e->name_len + (e->target ? e->target_len : 0) + 160 +
                (e->owner ? e->owner_len : 0) + (e->group ? e->group_len : 0)) {
    *err = "buffer too small";
    return 0;
  }
  mode_string(mode, perms);
  days = floordiv(mt, 86400);
  secs = (int)(mt - days * 86400);
  civil_from_days(days, &y, &m, &d);
  len = sprintf(out, "%c%s %4lld %-8.*s %-8.*s %8lld %s %2d ", tc, perms,
                e->has_nlink ? e->nlink : 1, olen, owner, glen, group,
                e->has_size ? e->size : 0LL, months[m - 1], d);
  if (mt > now - RECENT_PAST && mt <= now + RECENT_FUTURE)
    len += sprintf(out + len, "%02d:%02d ", secs / 3600, secs / 60 % 60);
  else
    len += sprintf(out + len, " %04lld ", y);
  k = (size_t)len;
  memcpy(out + k, e->name, e->name_len);
  k += e->name_len;
  if (e->type == FTP_T_LINK && e->target) {
    memcpy(out + k, " -> ", 4);
    memcpy(out + k + 4, e->target, e->target_len);
    k += 4 + e->target_len;
  }
  return k;
}

typedef struct { const char *p; size_t n; } tok;

static const char *skip_sp(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t')) p++;
  return p;
}

static const char *next_tok(const char *p, const char *end, tok *t) {
  p = skip_sp(p, end);
  t->p = p;
  while (p < end && *p != ' ' && *p != '\t') p++;
  t->n = (size_t)(p - t->p);
  return p;
}

/* "HH:MM" / "H:MM" -> minutes of the day, -1 otherwise */
static int clock_of(const char *s, size_t n) {
  int h, m;
  if (n == 4 && isdig((unsigned char)s[0]) && s[1] == ':' &&
      alldigits(s + 2, 2)) {
    h = s[0] - '0';
    m = (int)digits(s + 2, 2);
  } else if (n == 5 && alldigits(s, 2) && s[2] == ':' && alldigits(s + 3, 2)) {
    h = (int)digits(s, 2);
    m = (int)digits(s + 3, 2);
  } else
    return -1;
  if (h > 23 || m > 59) return -1;
  return h * 60 + m;
}

/* the year of a "Mon DD HH:MM" date: this year, or the last one when that
** would put it more than a day into the future */
static long long guess_time(long long now, int mo, int d, int minutes) {
  long long y, t;
  int nm, nd;
  civil_from_days(floordiv(now, 86400), &y, &nm, &nd);
  t = days_from_civil(y, mo, d) * 86400 + minutes * 60LL;
  if (t > now + 86400) t = days_from_civil(y - 1, mo, d) * 86400 + minutes * 60LL;
  return t;
}

static int parse_dos_line(const char *line, size_t n, ftp_list_entry *e) {
  /* IIS: "01-02-23  10:15AM       <DIR>          name"
  **      "11-24-2023  03:04PM            1234 name" */
  const char *p = line, *end = line + n;
  tok t;
  long long y;
  int mo, d, h, mi;
  size_t yl;
  if (n < 8 || !alldigits(p, 2) || p[2] != '-' || !alldigits(p + 3, 2) ||
      p[5] != '-')
    return 0;
  mo = (int)digits(p, 2);
  d = (int)digits(p + 3, 2);
  p += 6;
  for (yl = 0; p + yl < end && isdig((unsigned char)p[yl]); yl++) {}
  if (yl != 2 && yl != 4) return 0;
  y = digits(p, yl);
  if (yl == 2) y += y < 70 ? 2000 : 1900;
  p += yl;
  if (p >= end || *p != ' ') return 0;
  p = next_tok(p, end, &t);
  if (t.n < 4) return 0;
  if (t.n >= 6 && (lower(t.p[t.n - 2]) == 'a' || lower(t.p[t.n - 2]) == 'p') &&
      lower(t.p[t.n - 1]) == 'm') {
    int c = clock_of(t.p, t.n - 2);
    if (c < 0) return 0;
    h = c / 60;
    mi = c % 60;
    if (h < 1 || h > 12) return 0;
    if (h == 12) h = 0;
    if (lower(t.p[t.n - 2]) == 'p') h += 12;
  } else {
    int c = clock_of(t.p, t.n);
    if (c < 0) return 0;
    h = c / 60;
    mi = c % 60;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return 0;
  p = next_tok(p, end, &t);
  if (t.n == 5 && memcmp(t.p, "<DIR>", 5) == 0) {
    e->type = FTP_T_DIR;
  } else if (t.n > 0 && t.n <= 18 && alldigits(t.p, t.n)) {
    e->type = FTP_T_FILE;
    e->size = digits(t.p, t.n);
    e->has_size = 1;
  } else
    return 0;
  if (p >= end || *p != ' ') return 0;
  p = skip_sp(p, end);
  if (p >= end) return 0;
  e->name = p;
  e->name_len = (size_t)(end - p);
  e->mtime = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60;
  e->has_mtime = 1;
  return 1;
}

#define LIST_MAX_TOKENS 6

int ftp_parse_list_line(const char *line, size_t n, long long now,
                        ftp_list_entry *e) {
  const char *p, *end = line + n;
  tok tk[LIST_MAX_TOKENS], t, dt, tm;
  int nt = 0, mode, mo = 0, day = 0;
  memset(e, 0, sizeof *e);
  if (n > 0 && isdig((unsigned char)line[0])) return parse_dos_line(line, n, e);
  if (n < 11 || (e->type = type_of_char(line[0])) == FTP_T_NONE) return 0;
  if ((mode = parse_mode(line + 1)) < 0) return 0;
  e->mode = mode;
  e->has_mode = 1;
  p = line + 10;
  /* ACL / SELinux / extended attribute markers after the mode */
  if (*p == '+' || *p == '.' || *p == '@') p++;
  if (p >= end || (*p != ' ' && *p != '\t')) return 0;
  /* fields up to the date "Mon DD HH:MM" or "Mon DD  YYYY" */
  for (;;) {
    const char *q;
    p = next_tok(p, end, &t);
    if (t.n == 0) return 0;
    if ((mo = month_of(t.p, t.n)) != 0) {
      q = next_tok(p, end, &dt);
      if (dt.n >= 1 && dt.n <= 2 && alldigits(dt.p, dt.n)) {
        q = next_tok(q, end, &tm);
        if (tm.n > 0 && (clock_of(tm.p, tm.n) >= 0 ||
                         (tm.n == 4 && alldigits(tm.p, 4)))) {
          day = (int)digits(dt.p, dt.n);
          p = q;
          break;
        }
      }
    }
    if (nt == LIST_MAX_TOKENS) return 0;
    tk[nt++] = t;
  }
  if (day < 1 || day > 31) return 0;
  if (tm.n == 4 && alldigits(tm.p, 4)) {
    long long y = digits(tm.p, 4);
    if (day > days_in_month(y, mo)) return 0;
    e->mtime = days_from_civil(y, mo, day) * 86400;
  } else {
    e->mtime = guess_time(now, mo, day, clock_of(tm.p, tm.n));
  }
  e->has_mtime = 1;
  /* the name follows the date after one space (GNU ls, busybox) */
  if (p >= end || *p != ' ' || p + 1 >= end) return 0;
  p++;
  e->name = p;
  e->name_len = (size_t)(end - p);
  if (e->type == FTP_T_LINK) {
    const char *a = p;
    while ((a = memchr(a, '-', (size_t)(end - a))) != NULL) {
      if (a > p && a[-1] == ' ' && end - a >= 3 && a[1] == '>' && a[2] == ' ') {
        e->name_len = (size_t)(a - 1 - p);
        e->target = a + 3;
        e->target_len = (size_t)(end - a - 3);
        break;
      }
      a++;
    }
    if (e->name_len == 0) return 0;
  }
  /* size, or "major, minor" for devices */
  if (nt == 0) return 0;
  t = tk[nt - 1];
  if (e->type == FTP_T_BLOCK || e->type == FTP_T_CHAR) {
    const char *c = memchr(t.p, ',', t.n);
    if (c != NULL && c + 1 < t.p + t.n) { /* "1,3" */
      size_t a = (size_t)(c - t.p), b = t.n - a - 1;
      if (a == 0 || a > 9 || b > 9 || !alldigits(t.p, a) || !alldigits(c + 1, b))
        return 0;
      e->major = digits(t.p, a);
      e->minor = digits(c + 1, b);
      nt--;
    } else {
      tok mj;
      if (nt < 2 || t.n > 9 || !alldigits(t.p, t.n)) return 0;
      mj = tk[nt - 2];
      if (mj.n < 2 || mj.n > 10 || mj.p[mj.n - 1] != ',' ||
          !alldigits(mj.p, mj.n - 1))
        return 0;
      e->major = digits(mj.p, mj.n - 1);
      e->minor = digits(t.p, t.n);
      nt -= 2;
    }
    e->has_dev = 1;
  } else {
    if (t.n > 18 || !alldigits(t.p, t.n)) return 0;
    e->size = digits(t.p, t.n);
    e->has_size = 1;
    nt--;
  }
  /* what is left: [nlink] owner [group] */
  if (nt > 3) return 0;
  {
    int i = 0;
    if (nt == 3 || (nt == 2 && alldigits(tk[0].p, tk[0].n))) {
      if (tk[0].n > 9 || !alldigits(tk[0].p, tk[0].n)) return 0;
      e->nlink = digits(tk[0].p, tk[0].n);
      e->has_nlink = 1;
      i = 1;
    }
    if (i < nt) {
      e->owner = tk[i].p;
      e->owner_len = tk[i].n;
      i++;
    }
    if (i < nt) {
      e->group = tk[i].p;
      e->group_len = tk[i].n;
    }
  }
  return 1;
}

/* ====================================================================
** MLSx facts (RFC 3659 section 7)
** ==================================================================== */

size_t ftp_format_facts(const ftp_fact *f, size_t nf, const char *name,
                        size_t name_len, char *out, const char **err) {
  size_t i, k = 0, j;
  for (i = 0; i < nf; i++) {
    if (f[i].klen == 0) {
      *err = "bad fact name";
      return 0;
    }
    for (j = 0; j < f[i].klen; j++) {
      unsigned char c = (unsigned char)f[i].key[j];
      if (c <= 32 || c >= 127 || c == ';' || c == '=') {
        *err = "bad fact name";
        return 0;
      }
    }
    for (j = 0; j < f[i].vlen; j++) {
      unsigned char c = (unsigned char)f[i].val[j];
      if (c < 32 || c == ' ' || c == ';' || c == 127) {
        *err = "bad fact value";
        return 0;
      }
    }
  }
  if (bad_text(name, name_len, 1)) {
    *err = "bad name";
    return 0;
  }
  for (i = 0; i < nf; i++) {
    memcpy(out + k, f[i].key, f[i].klen);
    k += f[i].klen;
    out[k++] = '=';
    memcpy(out + k, f[i].val, f[i].vlen);
    k += f[i].vlen;
    out[k++] = ';';
  }
  out[k++] = ' ';
  memcpy(out + k, name, name_len);
  return k + name_len;
}

int ftp_split_facts(const char *line, size_t n, const char **facts,
                    size_t *facts_len, const char **name, size_t *name_len,
                    const char **err) {
  /* exactly one space ends the facts (which hold none); the rest, spaces
  ** and semicolons included, is the pathname */
  const char *sp = memchr(line, ' ', n);
  if (sp == NULL) {
    *err = "no pathname";
    return 0;
  }
  *facts = line;
  *facts_len = (size_t)(sp - line);
  *name = sp + 1;
  *name_len = n - *facts_len - 1;
  return 1;
}

int ftp_next_fact(const char **pp, const char *end, ftp_fact *f) {
  const char *p = *pp, *semi, *eq;
  if (p >= end) return 0;
  semi = memchr(p, ';', (size_t)(end - p));
  if (semi == NULL) semi = end; /* tolerate a missing final ";" */
  eq = memchr(p, '=', (size_t)(semi - p));
  if (eq == NULL || eq == p) return -1;
  f->key = p;
  f->klen = (size_t)(eq - p);
  f->val = eq + 1;
  f->vlen = (size_t)(semi - eq - 1);
  *pp = semi < end ? semi + 1 : end;
  return 1;
}

/* ====================================================================
** TYPE A (RFC 959 section 3.1.1.1)
**
** The wire carries NVT-ASCII lines ended by CRLF.  Sending, each local
** LF becomes CRLF and every other byte, a bare CR included, is sent as is
** (as vsftpd does; NVT's CR NUL is not used by FTP servers).  Receiving,
** CRLF becomes LF and a CR not followed by LF is kept.  The two are exact
** inverses: a local "\r\n" travels as "\r\r\n" and comes back "\r\n".
** ==================================================================== */

size_t ftp_ascii_encode(const char *in, size_t n, char *out) {
  const char *p = in, *end = in + n, *lf;
  size_t k = 0;
  while ((lf = memchr(p, '\n', (size_t)(end - p))) != NULL) {
    size_t run = (size_t)(lf - p);
    memcpy(out + k, p, run);
    k += run;
    out[k++] = '\r';
    out[k++] = '\n';
    p = lf + 1;
  }
  memcpy(out + k, p, (size_t)(end - p));
  return k + (size_t)(end - p);
}

size_t ftp_ascii_decode(int *pending_cr, const char *in, size_t n,
                        char *out) {
  const char *p = in, *end = in + n, *cr;
  size_t k = 0;
  if (*pending_cr && n > 0) {
    *pending_cr = 0;
    if (*p == '\n') {
      out[k++] = '\n';
      p++;
    } else {
      out[k++] = '\r';
    }
  }
  while ((cr = memchr(p, '\r', (size_t)(end - p))) != NULL) {
    size_t run = (size_t)(cr - p);
    memcpy(out + k, p, run);
    k += run;
    if (cr + 1 == end) { /* hold it: the next chunk says if LF follows */
      *pending_cr = 1;
      return k;
    }
    if (cr[1] == '\n') {
      out[k++] = '\n';
      p = cr + 2;
    } else {
      out[k++] = '\r';
      p = cr + 1;
    }
  }
  memcpy(out + k, p, (size_t)(end - p));
  return k + (size_t)(end - p);
}

/* ====================================================================
** Commands (server side, RFC 959 section 5.3)
** ==================================================================== */

int ftp_parse_command(const char *s, size_t n, char verb[5], size_t *verb_len,
                      const char **arg, size_t *arg_len, const char **err) {
  /* an ABOR may come behind Telnet IP and Synch (IAC IP IAC DM, RFC 959
  ** 4.1.3): skip IAC <command> pairs before the verb */
  size_t i = 0, k = 0;
  while (i + 1 < n && (unsigned char)s[i] == 255) i += 2;
  while (i < n && k < 5 && ((s[i] >= 'A' && s[i] <= 'Z') ||
                            (s[i] >= 'a' && s[i] <= 'z'))) {
    if (k < 4) verb[k] = (char)(s[i] >= 'a' ? s[i] - 32 : s[i]);
    k++;
    i++;
  }
  if (k == 0 || k > 4 || (i < n && s[i] != ' ')) {
    *err = "bad command";
    return 0;
  }
  if (memchr(s, '\0', n) != NULL) {
    *err = "nul in command";
    return 0;
  }
  verb[k] = '\0';
  *verb_len = k;
  *arg = i < n ? s + i + 1 : NULL;
  *arg_len = i < n ? n - i - 1 : 0;
  return 1;
}

/* 1*DIGIT as a non-negative 64-bit integer (SIZE reply, REST marker) */
int ftp_parse_size(const char *s, size_t n, long long *v) {
  size_t i;
  unsigned long long x = 0;
  if (n == 0 || n > 19) return 0;
  for (i = 0; i < n; i++) {
    if (!isdig((unsigned char)s[i])) return 0;
    x = x * 10 + (unsigned)(s[i] - '0');
  }
  if (x > 9223372036854775807ULL) return 0;
  *v = (long long)x;
  return 1;
}

/* ====================================================================
** Virtual paths
** ==================================================================== */

static size_t path_walk(const char *s, size_t n, char *out, size_t k) {
  const char *p = s, *end = s + n;
  while (p < end) {
    const char *c = p, *e = memchr(p, '/', (size_t)(end - p));
    size_t cl;
    if (e == NULL) e = end;
    cl = (size_t)(e - c);
    p = e < end ? e + 1 : end;
    if (cl == 0 || (cl == 1 && c[0] == '.')) continue;
    if (cl == 2 && c[0] == '.' && c[1] == '.') {
      while (k > 0 && out[k - 1] != '/') k--;
      if (k > 0) k--; /* drop the slash; never above "/" */
      continue;
    }
    out[k++] = '/';
    memcpy(out + k, c, cl);
    k += cl;
  }
  return k;
}

size_t ftp_normalize_path(const char *cwd, size_t cwd_len, const char *arg,
                          size_t arg_len, char *out) {
  size_t k = 0;
  if (memchr(cwd, '\0', cwd_len) || memchr(arg, '\0', arg_len)) return 0;
  if (arg_len == 0 || arg[0] != '/') k = path_walk(cwd, cwd_len, out, k);
  k = path_walk(arg, arg_len, out, k);
  if (k == 0) out[k++] = '/';
  return k;
}

/* ====================================================================
** Lua binding
** ==================================================================== */

#define REPLY_MT "parley.ftp.reply_parser"
#define ENC_MT "parley.ftp.ascii_encoder"
#define DEC_MT "parley.ftp.ascii_decoder"

static size_t opt_size(lua_State *L, int idx, const char *k, size_t def) {
  lua_Integer v;
  int isnum;
  if (lua_isnoneornil(L, idx)) return def;
  lua_getfield(L, idx, k);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return def;
  }
  v = lua_tointegerx(L, -1, &isnum);
  if (!isnum || v < 1) luaL_error(L, "option '%s' must be a positive integer", k);
  lua_pop(L, 1);
  return (size_t)v;
}

/* ---- reply parser ---- */

static ftp_reply_state *check_reply(lua_State *L) {
  return (ftp_reply_state *)luaL_checkudata(L, 1, REPLY_MT);
}

static int l_reply_parser(lua_State *L) {
  ftp_reply_state *st;
  size_t max_lines, max_bytes;
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
  max_lines = opt_size(L, 1, "max_lines", 1000);
  max_bytes = opt_size(L, 1, "max_bytes", 65536);
  st = (ftp_reply_state *)lua_newuserdatauv(L, sizeof *st, 0);
  ftp_reply_init(st, max_lines, max_bytes);
  luaL_setmetatable(L, REPLY_MT);
  return 1;
}

static int l_reply_feed_line(lua_State *L) {
  ftp_reply_state *st = check_reply(L);
  size_t n;
  const char *line = luaL_checklstring(L, 2, &n);
  const char *err = NULL;
  int r = ftp_reply_feed(st, line, n, &err);
  if (r == FTP_REPLY_MORE) {
    lua_pushnil(L);
    return 1;
  }
  if (r == FTP_REPLY_ERROR) {
    if (strcmp(err, "out of memory") == 0) return luaL_error(L, "%s", err);
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushinteger(L, st->code);
  lua_pushlstring(L, st->buf ? st->buf : "", st->len);
  ftp_reply_reset(st);
  return 2;
}

static int l_reply_reset(lua_State *L) {
  ftp_reply_reset(check_reply(L));
  return 0;
}

static int l_reply_pending(lua_State *L) {
  lua_pushboolean(L, check_reply(L)->multiline);
  return 1;
}

static int l_reply_gc(lua_State *L) {
  ftp_reply_free(check_reply(L));
  return 0;
}

static int l_reply_tostring(lua_State *L) {
  ftp_reply_state *st = check_reply(L);
  char detail[48];
  if (st->multiline)
    snprintf(detail, sizeof detail, "(in %d reply, %zu lines)", st->code,
             st->lines);
  else
    snprintf(detail, sizeof detail, "(idle)");
  return parley_tostring(L, detail);
}

/* ---- building replies ---- */

static void add_reply_line(lua_State *L, luaL_Buffer *b, const char *s,
                           size_t n) {
  if (memchr(s, '\r', n) || memchr(s, '\n', n) || memchr(s, '\0', n))
    luaL_error(L, "reply line contains CR, LF or NUL");
  luaL_addlstring(b, s, n);
}

static int l_reply(lua_State *L) {
  lua_Integer code = luaL_checkinteger(L, 1);
  char c[4];
  luaL_Buffer b;
  luaL_argcheck(L, code >= 100 && code <= 599, 1, "reply code out of range");
  snprintf(c, sizeof c, "%03d", (int)code);
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_Integer i, nl = luaL_len(L, 2);
    luaL_buffinit(L, &b);
    if (nl <= 1) {
      luaL_addlstring(&b, c, 3);
      luaL_addchar(&b, ' ');
      if (nl == 1) {
        size_t n;
        const char *s;
        lua_geti(L, 2, 1);
        s = lua_tolstring(L, -1, &n);
        if (s == NULL) return luaL_error(L, "reply line 1 is not a string");
        lua_pop(L, 1);
        add_reply_line(L, &b, s, n);
      }
      luaL_addlstring(&b, "\r\n", 2);
      luaL_pushresult(&b);
      return 1;
    }
    for (i = 1; i <= nl; i++) {
      size_t n;
      const char *s;
      lua_geti(L, 2, i);
      s = lua_tolstring(L, -1, &n);
      if (s == NULL)
        return luaL_error(L, "reply line %d is not a string", (int)i);
      lua_pop(L, 1); /* the table still holds the string */
      if (i == 1) {
        luaL_addlstring(&b, c, 3);
        luaL_addchar(&b, '-');
      } else if (i == nl) {
        luaL_addlstring(&b, c, 3);
        luaL_addchar(&b, ' ');
      } else if (n >= 3 && isdig((unsigned char)s[0]) &&
                 isdig((unsigned char)s[1]) && isdig((unsigned char)s[2])) {
        /* RFC 959 4.2: pad an inner line that begins with a number */
        luaL_addchar(&b, ' ');
      }
      add_reply_line(L, &b, s, n);
      luaL_addlstring(&b, "\r\n", 2);
    }
    luaL_pushresult(&b);
    return 1;
  } else {
    size_t n = 0;
    const char *s = lua_isnoneornil(L, 2) ? "" : luaL_checklstring(L, 2, &n);
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, c, 3);
    luaL_addchar(&b, ' ');
    add_reply_line(L, &b, s, n);
    luaL_addlstring(&b, "\r\n", 2);
    luaL_pushresult(&b);
    return 1;
  }
}

/* ---- host-port ---- */

static int fail(lua_State *L, const char *err) {
  luaL_pushfail(L);
  lua_pushstring(L, err);
  return 2;
}

static int push_ip_port(lua_State *L, const unsigned char ip[4],
                        unsigned port) {
  lua_pushfstring(L, "%d.%d.%d.%d", ip[0], ip[1], ip[2], ip[3]);
  lua_pushinteger(L, port);
  return 2;
}

static int l_parse_port(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n), *err;
  unsigned char ip[4];
  unsigned port;
  if (!ftp_parse_port(s, n, ip, &port, &err)) return fail(L, err);
  return push_ip_port(L, ip, port);
}

static int l_parse_pasv(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n), *err;
  unsigned char ip[4];
  unsigned port;
  if (!ftp_parse_pasv(s, n, ip, &port, &err)) return fail(L, err);
  return push_ip_port(L, ip, port);
}

/* checks an IPv4 address and a port for the format functions */
static int ipv4_port(lua_State *L, unsigned char ip[4], unsigned *port,
                     const char **err) {
  const char *s = luaL_checkstring(L, 1);
  lua_Integer p = luaL_checkinteger(L, 2);
  if (inet_pton(AF_INET, s, ip) != 1) {
    *err = "bad address";
    return 0;
  }
  if (p < 1 || p > 65535) {
    *err = "bad port";
    return 0;
  }
  *port = (unsigned)p;
  return 1;
}

static int l_format_port(lua_State *L) {
  unsigned char ip[4];
  unsigned port;
  const char *err;
  if (!ipv4_port(L, ip, &port, &err)) return fail(L, err);
  lua_pushfstring(L, "%d,%d,%d,%d,%d,%d", ip[0], ip[1], ip[2], ip[3],
                  (int)(port >> 8), (int)(port & 255));
  return 1;
}

static int l_format_pasv(lua_State *L) {
  unsigned char ip[4];
  unsigned port;
  const char *err;
  if (!ipv4_port(L, ip, &port, &err)) return fail(L, err);
  lua_pushfstring(L, "Entering Passive Mode (%d,%d,%d,%d,%d,%d).", ip[0],
                  ip[1], ip[2], ip[3], (int)(port >> 8), (int)(port & 255));
  return 1;
}

static int l_parse_epsv(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n), *err;
  unsigned port;
  if (!ftp_parse_epsv(s, n, &port, &err)) return fail(L, err);
  lua_pushinteger(L, port);
  return 1;
}

static int l_format_epsv(lua_State *L) {
  lua_Integer p = luaL_checkinteger(L, 1);
  if (p < 1 || p > 65535) return fail(L, "bad port");
  lua_pushfstring(L, "Entering Extended Passive Mode (|||%d|)", (int)p);
  return 1;
}

static int l_parse_eprt(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n), *err;
  char ip[64];
  int family;
  unsigned port;
  if (!ftp_parse_eprt(s, n, ip, &family, &port, &err)) return fail(L, err);
  lua_pushstring(L, ip);
  lua_pushinteger(L, port);
  lua_pushinteger(L, family);
  return 3;
}

static int l_format_eprt(lua_State *L) {
  const char *s = luaL_checkstring(L, 1);
  lua_Integer p = luaL_checkinteger(L, 2);
  unsigned char bin[16];
  char ip[64];
  int af;
  if (inet_pton(AF_INET, s, bin) == 1)
    af = AF_INET;
  else if (inet_pton(AF_INET6, s, bin) == 1)
    af = AF_INET6;
  else
    return fail(L, "bad address");
  if (p < 1 || p > 65535) return fail(L, "bad port");
  inet_ntop(af, bin, ip, sizeof ip);
  lua_pushfstring(L, "|%d|%s|%d|", af == AF_INET ? 1 : 2, ip, (int)p);
  return 1;
}

/* ---- time-val ---- */

static int push_time(lua_State *L, long long t, double frac, int has_frac) {
  if (has_frac)
    lua_pushnumber(L, (lua_Number)t + frac);
  else
    lua_pushinteger(L, (lua_Integer)t);
  return 1;
}

/* a Lua time (integer, or float with a fraction) -> seconds, ms (-1) */
static int check_time(lua_State *L, int idx, long long *t, int *ms) {
  if (lua_isinteger(L, idx)) {
    *t = (long long)lua_tointeger(L, idx);
    *ms = -1;
  } else {
    lua_Number x = luaL_checknumber(L, idx), fl;
    if (!(x >= (lua_Number)TIME_MIN && x < (lua_Number)TIME_MAX + 1))
      return 0;
    fl = (lua_Number)(long long)x;
    if (fl > x) fl -= 1;
    *t = (long long)fl;
    if (x == fl) {
      *ms = -1;
    } else {
      *ms = (int)((x - fl) * 1000.0);
      if (*ms > 999) *ms = 999;
    }
  }
  return 1;
}

static int l_format_time(lua_State *L) {
  long long t;
  int ms;
  char out[32];
  size_t n;
  if (!check_time(L, 1, &t, &ms) || (n = ftp_format_time(t, ms, out)) == 0)
    return fail(L, "time out of range");
  lua_pushlstring(L, out, n);
  return 1;
}

static int l_parse_time(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n), *err;
  long long t;
  double frac;
  int has_frac;
  if (!ftp_parse_time(s, n, &t, &frac, &has_frac, &err)) return fail(L, err);
  return push_time(L, t, frac, has_frac);
}

/* ---- listings ---- */

static const char *const type_names[] = {NULL,   "file", "dir",  "link",
                                         "block", "char", "fifo", "socket"};

static const char *field_str(lua_State *L, int idx, const char *k,
                             size_t *n) {
  const char *s;
  int t = lua_getfield(L, idx, k);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return NULL;
  }
  /* a string only: the pointer stays valid through the entry table */
  if (t != LUA_TSTRING) luaL_error(L, "entry field '%s' must be a string", k);
  s = lua_tolstring(L, -1, n);
  lua_pop(L, 1); /* still referenced by the entry table */
  return s;
}

static int field_int(lua_State *L, int idx, const char *k, long long *v) {
  int isnum;
  if (lua_getfield(L, idx, k) == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  *v = (long long)lua_tointegerx(L, -1, &isnum);
  if (!isnum) luaL_error(L, "entry field '%s' must be an integer", k);
  lua_pop(L, 1);
  return 1;
}

static long long now_arg(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return (long long)time(NULL);
  return (long long)luaL_checkinteger(L, idx);
}

static int l_format_list_line(lua_State *L) {
  ftp_list_entry e;
  const char *type, *err;
  long long now, v;
  size_t cap;
  char *out;
  luaL_Buffer b;
  int i;
  luaL_checktype(L, 1, LUA_TTABLE);
  now = now_arg(L, 2);
  memset(&e, 0, sizeof e);
  type = field_str(L, 1, "type", NULL);
  e.type = FTP_T_FILE;
  if (type != NULL) {
    e.type = FTP_T_NONE;
    for (i = 1; i <= FTP_T_SOCKET; i++)
      if (strcmp(type, type_names[i]) == 0) e.type = i;
    if (e.type == FTP_T_NONE) return luaL_error(L, "unknown entry type '%s'", type);
  }
  e.name = field_str(L, 1, "name", &e.name_len);
  if (e.name == NULL) return luaL_error(L, "entry has no name");
  e.target = field_str(L, 1, "target", &e.target_len);
  e.owner = field_str(L, 1, "owner", &e.owner_len);
  e.group = field_str(L, 1, "group", &e.group_len);
  e.has_size = field_int(L, 1, "size", &e.size);
  e.has_mtime = field_int(L, 1, "mtime", &e.mtime);
  e.has_nlink = field_int(L, 1, "nlink", &e.nlink);
  if ((e.has_mode = field_int(L, 1, "mode", &v)) != 0) e.mode = (int)(v & 07777);
  cap = e.name_len + e.target_len + e.owner_len + e.group_len + 160;
  out = luaL_buffinitsize(L, &b, cap);
  cap = ftp_format_list_line(&e, now, out, cap, &err);
  if (cap == 0) return fail(L, err);
  luaL_pushresultsize(&b, cap);
  return 1;
}

static void set_str(lua_State *L, const char *k, const char *s, size_t n) {
  lua_pushlstring(L, s, n);
  lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, long long v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

static int l_parse_list_line(lua_State *L) {
  size_t n;
  const char *line = luaL_checklstring(L, 1, &n);
  long long now = now_arg(L, 2);
  ftp_list_entry e;
  if (!ftp_parse_list_line(line, n, now, &e)) {
    luaL_pushfail(L);
    return 1;
  }
  lua_createtable(L, 0, 10);
  set_str(L, "name", e.name, e.name_len);
  lua_pushstring(L, type_names[e.type]);
  lua_setfield(L, -2, "type");
  if (e.target) set_str(L, "target", e.target, e.target_len);
  if (e.owner) set_str(L, "owner", e.owner, e.owner_len);
  if (e.group) set_str(L, "group", e.group, e.group_len);
  if (e.has_size) set_int(L, "size", e.size);
  if (e.has_mtime) set_int(L, "mtime", e.mtime);
  if (e.has_mode) set_int(L, "mode", e.mode);
  if (e.has_nlink) set_int(L, "nlink", e.nlink);
  if (e.has_dev) {
    set_int(L, "major", e.major);
    set_int(L, "minor", e.minor);
  }
  return 1;
}

/* ---- MLSx facts ---- */

#define MAX_FACTS 32

static const char *const default_facts[] = {
    "type", "size", "modify", "create", "perm", "unique", "lang",
    "media-type", "charset", NULL};

/* pushes the value of fact `key` of the entry at index 1 as a string, or
** nothing (returns 0) when the entry has none */
static int fact_value(lua_State *L, const char *key) {
  long long t;
  int ms;
  char buf[40];
  size_t n = 0;
  if (strcmp(key, "modify") == 0 || strcmp(key, "create") == 0) {
    if (lua_getfield(L, 1, key) == LUA_TNIL && key[0] == 'm') {
      lua_pop(L, 1);
      lua_getfield(L, 1, "mtime");
    }
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      return 0;
    }
    if (lua_type(L, -1) == LUA_TSTRING) return 1; /* already a time-val */
    if (!lua_isnumber(L, -1))
      luaL_error(L, "entry field '%s' must be a number", key);
    if (!check_time(L, -1, &t, &ms) || (n = ftp_format_time(t, ms, buf)) == 0)
      luaL_error(L, "entry field '%s' out of range", key);
    lua_pop(L, 1);
    lua_pushlstring(L, buf, n);
    return 1;
  }
  if (strcmp(key, "type") == 0) {
    if (lua_getfield(L, 1, "type") == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushliteral(L, "file");
    } else if (lua_type(L, -1) == LUA_TSTRING &&
               strcmp(lua_tostring(L, -1), "link") == 0) {
      lua_pop(L, 1);
      lua_pushliteral(L, "OS.unix=symlink");
    }
    return 1;
  }
  if (strcmp(key, "unix.mode") == 0) {
    long long v;
    if (!field_int(L, 1, "mode", &v)) return 0;
    snprintf(buf, sizeof buf, "0%o", (unsigned)(v & 07777));
    lua_pushstring(L, buf);
    return 1;
  }
  if (strcmp(key, "unix.owner") == 0 || strcmp(key, "unix.group") == 0) {
    if (lua_getfield(L, 1, key + 5) == LUA_TNIL) {
      lua_pop(L, 1);
      return 0;
    }
    return 1;
  }
  if (lua_getfield(L, 1, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

static int l_format_facts(lua_State *L) {
  ftp_fact f[MAX_FACTS];
  size_t nf = 0, cap, i, name_len;
  const char *name, *err;
  char *out;
  luaL_Buffer b;
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2); /* index 2 stays the list (or nil) while we push */
  name = field_str(L, 1, "name", &name_len);
  if (name == NULL) return luaL_error(L, "entry has no name");
  luaL_checkstack(L, 2 * MAX_FACTS + 4, "too many facts");
  for (i = 1;; i++) {
    const char *key;
    char lk[64];
    size_t kl, j;
    if (lua_isnoneornil(L, 2)) {
      if (default_facts[i - 1] == NULL) break;
      lua_pushstring(L, default_facts[i - 1]);
    } else if (lua_geti(L, 2, (lua_Integer)i) == LUA_TNIL) {
      lua_pop(L, 1);
      break;
    }
    key = lua_tolstring(L, -1, &kl);
    if (key == NULL || kl == 0 || kl >= sizeof lk)
      return luaL_error(L, "bad fact name at index %d", (int)i);
    for (j = 0; j < kl; j++) lk[j] = (char)lower((unsigned char)key[j]);
    lk[kl] = '\0';
    lua_pop(L, 1);
    if (nf == MAX_FACTS) return luaL_error(L, "too many facts");
    lua_pushlstring(L, lk, kl); /* keep the lowercased key alive */
    if (!fact_value(L, lk)) {
      lua_pop(L, 1);
      continue;
    }
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
      return luaL_error(L, "entry field '%s' must be a string", lk);
    f[nf].val = lua_tolstring(L, -1, &f[nf].vlen);
    f[nf].key = lua_tolstring(L, -2, &f[nf].klen);
    nf++;
  }
  cap = name_len + 2;
  for (i = 0; i < nf; i++) cap += f[i].klen + f[i].vlen + 2;
  luaL_buffinit(L, &b);
  out = luaL_prepbuffsize(&b, cap);
  cap = ftp_format_facts(f, nf, name, name_len, out, &err);
  if (cap == 0) return fail(L, err);
  luaL_addsize(&b, cap);
  luaL_pushresult(&b);
  return 1;
}

static int same_ci(const char *a, const char *b, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return 0;
  return 1;
}

static int l_parse_facts(lua_State *L) {
  size_t n, fl, nl;
  const char *line = luaL_checklstring(L, 1, &n), *facts, *name, *err, *p;
  ftp_fact f;
  int r, nfacts = 0;
  if (!ftp_split_facts(line, n, &facts, &fl, &name, &nl, &err))
    return fail(L, err);
  lua_createtable(L, 0, 8);
  p = facts;
  while ((r = ftp_next_fact(&p, facts + fl, &f)) == 1) {
    char lk[64];
    size_t j;
    if (++nfacts > 64) return fail(L, "too many facts");
    if (f.klen >= sizeof lk) return fail(L, "bad fact");
    for (j = 0; j < f.klen; j++) lk[j] = (char)lower((unsigned char)f.key[j]);
    lua_pushlstring(L, lk, f.klen);
    lua_pushlstring(L, f.val, f.vlen);
    lua_rawset(L, -3);
    if (f.klen == 4 && memcmp(lk, "size", 4) == 0) {
      if (f.vlen == 0 || f.vlen > 18 || !alldigits(f.val, f.vlen))
        return fail(L, "bad size");
      set_int(L, "size", digits(f.val, f.vlen));
    } else if (f.klen == 6 && memcmp(lk, "modify", 6) == 0) {
      long long t;
      double frac;
      int has_frac;
      if (!ftp_parse_time(f.val, f.vlen, &t, &frac, &has_frac, &err))
        return fail(L, "bad modify");
      push_time(L, t, frac, has_frac);
      lua_setfield(L, -2, "mtime");
    } else if (f.klen == 4 && memcmp(lk, "type", 4) == 0) {
      /* the standard values are case-insensitive: hand them lowercased */
      static const char *const std[] = {"file", "dir", "cdir", "pdir"};
      int k;
      for (k = 0; k < 4; k++)
        if (f.vlen == strlen(std[k]) && same_ci(f.val, std[k], f.vlen))
          set_str(L, "type", std[k], f.vlen);
    } else if (f.klen == 9 && memcmp(lk, "unix.mode", 9) == 0) {
      long long m = 0;
      size_t k;
      for (k = 0; k < f.vlen && k < 8 && f.val[k] >= '0' && f.val[k] <= '7'; k++)
        m = m * 8 + (f.val[k] - '0');
      if (k == f.vlen && k > 0) set_int(L, "mode", m);
    }
  }
  if (r < 0) return fail(L, "bad fact");
  set_str(L, "name", name, nl);
  return 1;
}

/* ---- FEAT (RFC 2389 section 3.2) ---- */

static int l_parse_feat(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n), *end = s + n, *p;
  lua_newtable(L);
  /* the first line is free text, features are the lines starting with a
  ** space; the last line ("End") is not one */
  p = memchr(s, '\n', n);
  while (p != NULL && p < end) {
    const char *line = p + 1, *eol = memchr(line, '\n', (size_t)(end - line));
    const char *lend = eol ? eol : end, *w;
    char name[64];
    size_t k = 0;
    p = eol;
    if (line >= lend || line[0] != ' ') continue;
    w = line + 1;
    while (w < lend && *w != ' ' && k < sizeof name) {
      name[k++] = (char)(*w >= 'a' && *w <= 'z' ? *w - 32 : *w);
      w++;
    }
    if (k == 0 || k == sizeof name) continue;
    lua_pushlstring(L, name, k);
    if (w < lend) w++;
    lua_pushlstring(L, w, (size_t)(lend - w));
    lua_rawset(L, -3);
  }
  return 1;
}

/* ---- TYPE A ---- */

static int l_ascii_encoder(lua_State *L) {
  lua_newuserdatauv(L, 1, 0);
  luaL_setmetatable(L, ENC_MT);
  return 1;
}

static int l_enc_feed(lua_State *L) {
  size_t n;
  const char *s;
  luaL_Buffer b;
  char *out;
  luaL_checkudata(L, 1, ENC_MT);
  s = luaL_checklstring(L, 2, &n);
  if (memchr(s, '\n', n) == NULL) {
    lua_settop(L, 2);
    return 1;
  }
  out = luaL_buffinitsize(L, &b, 2 * n);
  luaL_pushresultsize(&b, ftp_ascii_encode(s, n, out));
  return 1;
}

static int l_enc_finish(lua_State *L) {
  luaL_checkudata(L, 1, ENC_MT);
  lua_pushliteral(L, "");
  return 1;
}

static int l_enc_tostring(lua_State *L) {
  luaL_checkudata(L, 1, ENC_MT);
  return parley_tostring(L, NULL);
}

static int l_ascii_decoder(lua_State *L) {
  int *pending = (int *)lua_newuserdatauv(L, sizeof(int), 0);
  *pending = 0;
  luaL_setmetatable(L, DEC_MT);
  return 1;
}

static int l_dec_feed(lua_State *L) {
  int *pending = (int *)luaL_checkudata(L, 1, DEC_MT);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  luaL_Buffer b;
  char *out;
  if (!*pending && memchr(s, '\r', n) == NULL) {
    lua_settop(L, 2);
    return 1;
  }
  out = luaL_buffinitsize(L, &b, n + 1);
  luaL_pushresultsize(&b, ftp_ascii_decode(pending, s, n, out));
  return 1;
}

static int l_dec_finish(lua_State *L) {
  int *pending = (int *)luaL_checkudata(L, 1, DEC_MT);
  if (*pending)
    lua_pushliteral(L, "\r");
  else
    lua_pushliteral(L, "");
  *pending = 0;
  return 1;
}

static int l_dec_tostring(lua_State *L) {
  int *pending = (int *)luaL_checkudata(L, 1, DEC_MT);
  return parley_tostring(L, *pending ? "(CR held)" : NULL);
}

/* ---- commands and numbers ---- */

static int l_parse_command(lua_State *L) {
  size_t n, vl, al;
  const char *s = luaL_checklstring(L, 1, &n), *arg, *err;
  char verb[5];
  if (!ftp_parse_command(s, n, verb, &vl, &arg, &al, &err)) return fail(L, err);
  lua_pushlstring(L, verb, vl);
  if (arg == NULL)
    lua_pushnil(L);
  else
    lua_pushlstring(L, arg, al);
  return 2;
}

static int l_parse_size(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  long long v;
  if (!ftp_parse_size(s, n, &v)) return fail(L, "bad number");
  lua_pushinteger(L, (lua_Integer)v);
  return 1;
}

/* ---- paths ---- */

static int l_normalize_path(lua_State *L) {
  size_t cl, al, k;
  const char *cwd = luaL_checklstring(L, 1, &cl);
  const char *arg = luaL_optlstring(L, 2, "", &al);
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, cl + al + 2);
  k = ftp_normalize_path(cwd, cl, arg, al, out);
  if (k == 0) return fail(L, "nul in path");
  luaL_pushresultsize(&b, k);
  return 1;
}

/* ---- registration ---- */

int parley_open_ftp(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"reply_parser", l_reply_parser},
      {"reply", l_reply},
      {"parse_port", l_parse_port},
      {"format_port", l_format_port},
      {"parse_pasv", l_parse_pasv},
      {"format_pasv", l_format_pasv},
      {"parse_epsv", l_parse_epsv},
      {"format_epsv", l_format_epsv},
      {"parse_eprt", l_parse_eprt},
      {"format_eprt", l_format_eprt},
      {"format_time", l_format_time},
      {"parse_time", l_parse_time},
      {"format_list_line", l_format_list_line},
      {"parse_list_line", l_parse_list_line},
      {"format_facts", l_format_facts},
      {"parse_facts", l_parse_facts},
      {"parse_feat", l_parse_feat},
      {"ascii_encoder", l_ascii_encoder},
      {"ascii_decoder", l_ascii_decoder},
      {"normalize_path", l_normalize_path},
      {"parse_command", l_parse_command},
      {"parse_size", l_parse_size},
      {NULL, NULL}};
  static const luaL_Reg reply_methods[] = {{"feed_line", l_reply_feed_line},
                                           {"reset", l_reply_reset},
                                           {"pending", l_reply_pending},
                                           {NULL, NULL}};
  static const luaL_Reg reply_meta[] = {{"__gc", l_reply_gc},
                                        {"__close", l_reply_gc},
                                        {"__tostring", l_reply_tostring},
                                        {NULL, NULL}};
  static const luaL_Reg enc_methods[] = {
      {"feed", l_enc_feed}, {"finish", l_enc_finish}, {NULL, NULL}};
  static const luaL_Reg enc_meta[] = {{"__tostring", l_enc_tostring},
                                      {NULL, NULL}};
  static const luaL_Reg dec_methods[] = {
      {"feed", l_dec_feed}, {"finish", l_dec_finish}, {NULL, NULL}};
  static const luaL_Reg dec_meta[] = {{"__tostring", l_dec_tostring},
                                      {NULL, NULL}};
  parley_newclass(L, REPLY_MT, reply_methods, reply_meta);
  parley_newclass(L, ENC_MT, enc_methods, enc_meta);
  parley_newclass(L, DEC_MT, dec_methods, dec_meta);
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "ftp");
  return 0;
}
