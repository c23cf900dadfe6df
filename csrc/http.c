/*
** http codec: HTTP/1.1 message syntax (RFC 9112) and framing, core.http.
**
** Lua API (offsets are 1-based byte positions, like string.find):
**
** http.parse_request(buf [, init [, limits [, seen]]])
**   Parses the request head starting at byte `init` (default 1) of buf.
**   -> n, method, target, minor, headers    n = bytes the head used
**                                            (buf:sub(init, init+n-1))
**   -> nil                 the head is incomplete: read more, call again
**   -> nil, reason, status malformed: answer `status` and close
**        400 bad syntax (bare LF unless limits.lenient, bare CR, NUL or
**            another control char, space before colon, obs-fold, bad
**            method token, bad target, bad version syntax)
**        414 request line over limits.max_request_line
**        431 head over limits.max_head or over limits.max_headers fields
**        505 version other than HTTP/1.x
**   Over-limit cases are reported from partial input as soon as they are
**   certain.  Empty lines before the request line are skipped (RFC 9112
**   §2.2) and counted in n.  Any method token is accepted (the server
**   answers 501 for methods it does not implement).  minor is 0 or 1
**   (HTTP/1.2..1.9 count as 1, RFC 9110 §2.5).
**   `seen` (optional): #buf at the previous call that returned nil for
**   this same head.  With it the call first looks for the end of the head
**   from there on and returns nil at once when it is still missing, so
**   feeding a head in many small reads costs O(n), not O(n^2); syntax
**   errors and the max_headers 431 are then reported when the head
**   completes (the 414 and the max_head 431 still come at once).
**   Without it every call parses from init (errors are seen early).
**
** http.parse_request(buf, init, limits, seen, mt)
**   A server's form: a parsed head gives
**     n, req, keep, kind, len, status, method, path, minor
**   where req = setmetatable({the head's bytes from its request line
**   [, _continue = true]}, mt), whose other fields mt.__index makes from
**   req[1] when asked (http.request_index).  method, path and minor
**   are what req.method, req.path and req.minor will give, returned so
**   that the server can route without making them: path is the target
**   without its query, scheme and authority (absolute-form), %XX
**   decoded.  keep: the connection may stay open (HTTP/1.1 without
**   Connection: close, HTTP/1.0 with keep-alive; RFC 9112 §9.3).  kind,
**   len: as http.body_framing(headers, true), or nil, reason, status for
**   bad framing (and then no more).  status (nil, or the head is to be
**   refused): 400 for a path with %00, or for no Host or more than one
**   in HTTP/1.1 (RFC 9112 §3.2), 417 for an Expect other than
**   100-continue (RFC 9110 §10.1.1); _continue marks an Expect:
**   100-continue with a body.  Incomplete and malformed heads give what
**   the plain form gives.  stream:receive_http_head(limits, wait, mt)
**   returns the same after n.
**
** http.request_index(methods [, peer [, conn]]) -> an __index for request
**   objects: from req[1] it makes req.headers (the table below) and
**   the request line's method, target, path, query (the raw text after
**   "?", or nil) and minor, each made on use (headers is kept); req.peer and
**   req.conn are the values given (one metatable per connection); any
**   other key is methods[key] (raw).
** http.request_header(req, name, ...) -> for each name
**   req.headers[name:lower()], read from req[1] without making that
**   table (or from it, once made).
**
** http.parse_response(buf [, init [, limits [, seen]]])
**   -> n, minor, status, reason, headers | nil | nil, reason, 502
**   The status line needs 3 digits (100..999); a missing reason phrase
**   (with or without its SP) is accepted.  obs-fold in a response is
**   replaced by SP (RFC 9112 §5.2, user agents); limits.max_request_line
**   applies to the status line.
**
** headers (both parsers and d:trailers()): one table per message,
**   h[2i-1] = field name lowercased, h[2i] = value (OWS trimmed), in
**   order, duplicates kept; #h // 2 fields.  Plus an index by lowercased
**   name: h[name] = value, repeated fields combined with ", " (RFC 9110
**   §5.3) except set-cookie, whose index holds the first (read the array).
**
** limits (all optional): max_request_line = 8192, max_head = 32768,
**   max_headers = 100, lenient = false (true: bare LF ends a line).  A
**   table, or the same read once by http.limits(t) (parley.http.limits),
**   which a server passing the same limits per request should prefer: the
**   table's four lookups cost about a third of parsing a short head.
**
** http.body_framing(headers, is_request [, method [, status [, minor]]])
**   RFC 9112 §6.3 from headers["transfer-encoding"] and
**   headers["content-length"].  For a response, method is the request's
**   method and status the response status; minor (default 1) is the
**   message's HTTP minor version.
**   -> "none" | "length", n | "chunked" | "close" | "tunnel"
**      ("close": response read until close; "tunnel": 2xx to CONNECT)
**   -> nil, reason, status: TE with CL (400; close after answering), TE in
**      HTTP/1.0 (400), chunked applied twice or with parameters (400),
**      unknown coding in a request (501), last coding of a request not
**      chunked (400), Content-Length not a list of equal decimal values or
**      over 2^63-1 (400).  For responses status is 502.
**
** http.chunked_decoder([limits]) -> d          (parley.http.chunked)
**   limits: max_chunk_size = 2^53-1, max_chunk_ext = 4096 (bytes after the
**   size digits on one size line), max_trailer = 8192 (bytes),
**   max_headers = 100 (trailer fields), lenient = false (bare LF).
**   d:feed(bytes [, init]) -> data, done, used
**      data: the decoded bytes of this feed (possibly ""); done: true once
**      the last-chunk and trailer section are complete; used: bytes of
**      `bytes` (from init) consumed: after done the rest is the next
**      message.  Every split of the input across feeds is handled.
**   -> nil, reason   invalid chunk size (not hex, overflow, over the
**      limit), missing CRLF after chunk data, bare LF, chunk extension
**      over the limit or invalid, trailer section over the limit or
**      malformed.  The decoder stays failed.
**   d:trailers() -> headers table (empty until done)
**   d:done() -> boolean
**
** http.chunk(data) -> one chunk ("" gives the last-chunk "0\r\n\r\n")
** http.response_head(status, headers [, reason [, minor [, body [, date
**                    [, server [, length [, connection]]]]]]]) -> string
**   "HTTP/1.<minor> <status> <reason>\r\n" fields "\r\n"; minor defaults
**   to 1, reason to http.status_text(status) or "".  A body string is
**   appended (a small reply leaves as one string, built with one copy).
**   After the headers come the server's own fields, each when given:
**   "Server: <server>", "Content-Length: <length>" (an integer) or
**   "Transfer-Encoding: chunked" (length "chunked"), "Connection:
**   <connection>", and a Date field of now when `date` is true.  headers
**   (nil or false: none): either an
**   array {name1, value1, name2, value2 ...} sent in order (a table from
**   parse_* goes out once: its index keys are then ignored), or a map
**   {["Content-Type"] = "text/plain"} (pairs order); a value may be a
**   string, a number or an array of those (one field line each).  Raises
**   on a name that is not a token or a value/reason holding CR, LF, NUL or
**   another control char (header injection), or a status outside
**   100..999.
** http.reply(status, headers, reason, body, server, keep [, minor
**            [, head]]) -> string
**   A whole HTTP/1.1 reply to a request, framed here from the request's
**   facts (see reply_head): the head as response_head builds it with
**   Server (when given), Content-Length (not for 1xx, 204, 304),
**   Connection (close unless keep; keep-alive to HTTP/1.0, minor 0) and
**   Date, then the body (not for those statuses nor for head = true).
** http.request_head(method, target, headers [, minor]) -> string
**   the same for "METHOD target HTTP/1.<minor>\r\n" (raises on a method
**   that is not a token or a target with controls or spaces).
** http.date([t]) -> IMF-fixdate of t (default now), RFC 9110 §5.6.7;
**   the last second's string is cached (per module instance).
** http.status_text(code) -> reason phrase of RFC 9110 §15, or nil.
*/
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "driver.h"
#include "http.h"

/* ====================================================================
** Character classes
** ==================================================================== */

/* tchar (RFC 9110 §5.6.2) */
static const unsigned char tchar[256] = {
  ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
  ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
  ['`'] = 1, ['|'] = 1, ['~'] = 1,
  ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
  ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
  ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
  ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
  ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
  ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
  ['Y'] = 1, ['Z'] = 1,
  ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
  ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
  ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
  ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
  ['y'] = 1, ['z'] = 1,
};

#define is_ctl_text(c) ((unsigned char)(c) < 0x20 ? (c) != '\t' \
                                                  : (unsigned char)(c) == 0x7f)

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 0x20;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* First byte in [p, end) that is a control char other than HTAB (field
** values, reason phrases: HTAB / SP / VCHAR / obs-text pass). */
static const char *scan_text(const char *p, const char *end) {
#ifdef __SSE2__
  const __m128i sp = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7f);
  const __m128i tab = _mm_set1_epi8(0x09);
  while (end - p >= 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i ge = _mm_cmpeq_epi8(_mm_max_epu8(v, sp), v);      /* v >= SP */
    __m128i ok = _mm_or_si128(ge, _mm_cmpeq_epi8(v, tab));
    ok = _mm_andnot_si128(_mm_cmpeq_epi8(v, del), ok);
    unsigned m = (unsigned)_mm_movemask_epi8(ok) ^ 0xffffu;
    if (m) return p + __builtin_ctz(m);
    p += 16;
  }
#endif
  while (p < end && !is_ctl_text(*p)) p++;
  return p;
}

/* First byte in [p, end) that is SP, a control char or DEL (targets). */
static const char *scan_target(const char *p, const char *end) {
#ifdef __SSE2__
  const __m128i lo = _mm_set1_epi8(0x21), del = _mm_set1_epi8(0x7f);
  while (end - p >= 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i ok = _mm_cmpeq_epi8(_mm_max_epu8(v, lo), v);      /* v > SP */
    ok = _mm_andnot_si128(_mm_cmpeq_epi8(v, del), ok);
    unsigned m = (unsigned)_mm_movemask_epi8(ok) ^ 0xffffu;
    if (m) return p + __builtin_ctz(m);
    p += 16;
  }
#endif
  while (p < end && (unsigned char)*p > 0x20 && (unsigned char)*p != 0x7f)
    p++;
  return p;
}

/* ====================================================================
** Head parsing (RFC 9112 §2-5)
** ==================================================================== */

void http_default_limits(http_limits *lim) {
  lim->max_line = 8192;
  lim->max_head = 32768;
  lim->max_fields = 100;
  lim->lenient = 0;
  lim->unfold = 0;
}

static long fail(http_head *h, const char *err, int status) {
  h->err = err;
  h->err_status = status;
  return HTTP_ERROR;
}

/* The parsers look only at [start, hend), hend = start + max_head clipped
** to the data; running into hend means "incomplete" when the data ends
** there and "head too large" when it goes on. */
typedef struct scan {
  const char *start, *hend, *end;
  const http_limits *lim;
  http_head *h;
  int err_status;       /* status for syntax errors: 400, 502 */
} scan;

static long ran_out(scan *s) {
  if (s->hend < s->end) return fail(s->h, "head too large", s->err_status == 400 ? 431 : 502);
  return HTTP_INCOMPLETE;
}

/* Ran out while in the start line that began at line (lend is where the
** line scan was cut): 414 once the line is certainly over max_line. */
static long ran_out_line(scan *s, const char *line, const char *lend) {
  if ((size_t)(lend - line) >= s->lim->max_line + 2)
    return fail(s->h, s->err_status == 400 ? "request line too long"
                                          : "status line too long",
                s->err_status == 400 ? 414 : 502);
  return ran_out(s);
}

static const char *line_limit(scan *s, const char *line) {
  size_t room = (size_t)(s->hend - line);
  return room > s->lim->max_line + 2 ? line + s->lim->max_line + 2 : s->hend;
}

/* At p (in [line, lend)) the start line must end: CRLF (or LF when
** lenient).  Returns the next line's start, or NULL with *r set. */
static const char *end_start_line(scan *s, const char *line, const char *p,
                                  const char *lend, long *r) {
  const char *next;
  if (p >= lend) { *r = ran_out_line(s, line, lend); return NULL; }
  if (*p == '\r') {
    if (p + 1 >= lend) { *r = ran_out_line(s, line, lend); return NULL; }
    if (p[1] != '\n') { *r = fail(s->h, "bare cr", s->err_status); return NULL; }
    next = p + 2;
  } else if (*p == '\n') {
    if (!s->lim->lenient) { *r = fail(s->h, "bare lf", s->err_status); return NULL; }
    next = p + 1;
  } else {
    *r = fail(s->h, s->err_status == 400 ? "invalid request line"
                                         : "invalid status line", s->err_status);
    return NULL;
  }
  if ((size_t)(p - line) > s->lim->max_line) {
    *r = ran_out_line(s, line, line + s->lim->max_line + 2);
    return NULL;
  }
  return next;
}

/* "HTTP/1.x" at p; 8 bytes available before lend is checked by caller
** only partially: returns 1 ok, 0 incomplete (prefix matches), -1 error. */
static int parse_version(scan *s, const char *p, const char *lend, int *minor) {
  static const char name[] = "HTTP/";
  size_t avail = (size_t)(lend - p), i;
  for (i = 0; i < 5 && i < avail; i++)
    if (p[i] != name[i]) {
      fail(s->h, "invalid http version", s->err_status);
      return -1;
    }
  if (avail >= 6 && (p[5] < '0' || p[5] > '9')) goto bad;
  if (avail >= 7 && p[6] != '.') goto bad;
  if (avail >= 8 && (p[7] < '0' || p[7] > '9')) goto bad;
  if (avail < 8) return 0;
  if (p[5] != '1') {
    fail(s->h, "unsupported http version", s->err_status == 400 ? 505 : 502);
    return -1;
  }
  *minor = p[7] == '0' ? 0 : 1;
  return 1;
bad:
  fail(s->h, "invalid http version", s->err_status);
  return -1;
}

/* Field lines from p to the empty line (RFC 9112 §5). */
static long parse_fields(scan *s, const char *p) {
  http_head *h = s->h;
  const http_limits *lim = s->lim;
  const char *hend = s->hend;
  h->nfields = 0;
  for (;;) {
    const char *q, *v, *ve, *next;
    if (p >= hend) return ran_out(s);
    if (*p == '\r') {
      if (p + 1 >= hend) return ran_out(s);
      if (p[1] != '\n') return fail(h, "bare cr", s->err_status);
      return (long)(p + 2 - s->start);
    }
    if (*p == '\n') {
      if (!lim->lenient) return fail(h, "bare lf", s->err_status);
      return (long)(p + 1 - s->start);
    }
    if (*p == ' ' || *p == '\t') {
      /* obs-fold, or whitespace between the start line and the first
      ** field: both refused unless unfolding (RFC 9112 §2.2, §5.2) */
      if (!lim->unfold || h->nfields == 0)
        return fail(h, h->nfields ? "obsolete line folding"
                                  : "whitespace before first field",
                    s->err_status);
      for (v = p; v < hend && (*v == ' ' || *v == '\t'); v++) {}
      ve = scan_text(v, hend);
      q = NULL;
    } else {
      if (h->nfields >= lim->max_fields ||
          (h->fields && h->nfields >= h->fields_cap))
        return fail(h, "too many header fields",
                    s->err_status == 400 ? 431 : 502);
      for (q = p; q < hend && tchar[(unsigned char)*q]; q++) {}
      if (q >= hend) return ran_out(s);
      if (*q != ':') {
        if (q > p && (*q == ' ' || *q == '\t'))
          return fail(h, "whitespace before colon", s->err_status);
        return fail(h, "invalid field name", s->err_status);
      }
      if (q == p) return fail(h, "empty field name", s->err_status);
      for (v = q + 1; v < hend && (*v == ' ' || *v == '\t'); v++) {}
      ve = scan_text(v, hend);
    }
    if (ve >= hend) return ran_out(s);
    if (*ve == '\r') {
      if (ve + 1 >= hend) return ran_out(s);
      if (ve[1] != '\n') return fail(h, "bare cr", s->err_status);
      next = ve + 2;
    } else if (*ve == '\n') {
      if (!lim->lenient) return fail(h, "bare lf", s->err_status);
      next = ve + 1;
    } else {
      return fail(h, "invalid character in field value", s->err_status);
    }
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    if (q) {
      if (h->fields) {
        http_field *f = &h->fields[h->nfields];
        f->name = p; f->name_len = (size_t)(q - p);
        f->value = v; f->value_len = (size_t)(ve - v);
        f->folded = 0;
      }
      h->nfields++;
    } else if (h->fields && ve > v) {          /* continuation line */
      http_field *f = &h->fields[h->nfields - 1];
      if (f->value_len == 0) f->value = v;
      else f->folded = 1;
      f->value_len = (size_t)(ve - f->value);
    }
    p = next;
  }
}

static void scan_init(scan *s, const char *buf, size_t len,
                      const http_limits *lim, http_head *h, int err_status) {
  s->start = buf;
  s->end = buf + len;
  s->hend = len > lim->max_head ? buf + lim->max_head : buf + len;
  s->lim = lim;
  s->h = h;
  s->err_status = err_status;
  h->nfields = 0;
  h->err = NULL;
  h->err_status = 0;
}

long http_parse_request(const char *buf, size_t len, const http_limits *lim,
                        http_head *h) {
  scan s;
  const char *p, *q, *line, *lend;
  long r = 0;
  int v;
  scan_init(&s, buf, len, lim, h, 400);
  p = buf;
  /* RFC 9112 §2.2: ignore empty lines before the request line */
  for (;;) {
    if (p >= s.hend) return ran_out(&s);
    if (*p == '\r') {
      if (p + 1 >= s.hend) return ran_out(&s);
      if (p[1] != '\n') return fail(h, "bare cr", 400);
      p += 2;
    } else if (*p == '\n' && lim->lenient) {
      p++;
    } else break;
  }
  line = p;
  lend = line_limit(&s, line);
  /* method = token (RFC 9112 §3.1) */
  for (q = p; q < lend && tchar[(unsigned char)*q]; q++) {}
  if (q >= lend) return ran_out_line(&s, line, lend);
  if (*q != ' ' || q == p) return fail(h, "invalid method", 400);
  h->method = p; h->method_len = (size_t)(q - p);
  /* request-target: origin-, absolute-, authority- or asterisk-form; the
  ** form is the caller's business, here only its octets are checked */
  p = q + 1;
  q = scan_target(p, lend);
  if (q >= lend) return ran_out_line(&s, line, lend);
  if (*q != ' ' || q == p)
    return fail(h, q == p ? "invalid request target"
                          : (*q == '\r' || *q == '\n') ? "missing http version"
                          : "invalid request target", 400);
  h->target = p; h->target_len = (size_t)(q - p);
  p = q + 1;
  v = parse_version(&s, p, lend, &h->minor);
  if (v < 0) return HTTP_ERROR;
  if (v == 0) return ran_out_line(&s, line, lend);
  p = end_start_line(&s, line, p + 8, lend, &r);
  if (!p) return r;
  return parse_fields(&s, p);
}

long http_parse_response(const char *buf, size_t len,
                         const http_limits *lim, http_head *h) {
  scan s;
  const char *p, *line, *lend;
  long r = 0;
  int v;
  scan_init(&s, buf, len, lim, h, 502);
  line = p = buf;
  lend = line_limit(&s, line);
  v = parse_version(&s, p, lend, &h->minor);
  if (v < 0) return HTTP_ERROR;
  if (v == 0) return ran_out_line(&s, line, lend);
  p += 8;
  /* SP 3DIGIT [SP reason] (RFC 9112 §4) */
  if (lend - p < 4) {
    const char *q;
    static const char pat[] = " 000";
    for (q = p; q < lend; q++) {
      int want_digit = q - p > 0;
      if (want_digit ? (*q < '0' || *q > '9') : *q != pat[0])
        return fail(h, "invalid status line", 502);
    }
    return ran_out_line(&s, line, lend);
  }
  if (p[0] != ' ' || p[1] < '1' || p[1] > '9' || p[2] < '0' || p[2] > '9'
      || p[3] < '0' || p[3] > '9')
    return fail(h, "invalid status line", 502);
  h->status = (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
  p += 4;
  h->reason = p; h->reason_len = 0;
  if (p < lend && *p == ' ') {
    const char *q = scan_text(p + 1, lend);
    h->reason = p + 1;
    h->reason_len = (size_t)(q - (p + 1));
    p = q;
  }
  p = end_start_line(&s, line, p, lend, &r);
  if (!p) return r;
  return parse_fields(&s, p);
}

long http_parse_fields(const char *buf, size_t len, const http_limits *lim,
                       http_head *h) {
  scan s;
  scan_init(&s, buf, len, lim, h, 400);
  return parse_fields(&s, buf);
}

/* Given that buf[start, from) held no complete head, is the head in
** buf[start, len) still certainly incomplete and within the limits?  Only
** looks at the bytes past from (the caller's `seen` hint), so a head read
** in many small pieces costs O(n).  Conservative: when unsure, says no. */
int http_head_incomplete(const char *buf, size_t start, size_t len,
                                  size_t from, const http_limits *lim) {
  const char *p, *end = buf + len, *lf;
  size_t lineroom, ls = start;
  if (len - start > lim->max_head) return 0;
  /* the request line starts after the empty lines the parser skips */
  while (ls < len && (buf[ls] == '\n' ||
                      (buf[ls] == '\r' && ls + 1 < len && buf[ls + 1] == '\n')))
    ls += buf[ls] == '\n' ? 1 : 2;
  lineroom = len - ls < lim->max_line + 2 ? len - ls : lim->max_line + 2;
  lf = memchr(buf + ls, '\n', lineroom);
  if (lf) {                             /* a complete line over the limit */
    size_t l = (size_t)(lf - (buf + ls));
    if (l > 0 && lf[-1] == '\r') l--;
    if (l > lim->max_line) return 0;
  } else if (len - ls >= lim->max_line + 2) {
    return 0;
  }
  p = buf + (from > start + 3 ? from - 3 : start);
  while ((lf = memchr(p, '\n', (size_t)(end - p))) != NULL) {
    const char *b = lf - 1;
    if (b >= buf + start && *b == '\r') b--;
    if (b < buf + start || *b == '\n') return 0;
    p = lf + 1;
  }
  return 1;
}

/* ====================================================================
** Message framing (RFC 9112 §6)
** ==================================================================== */

static int ieq(const char *a, size_t n, const char *lit) {
  size_t i;
  for (i = 0; i < n; i++)
    if (lit[i] == '\0' || (a[i] | 0x20) != lit[i]) return 0;
  return lit[n] == '\0';
}

static int framing_error(const char **err, int *st, const char *msg,
                         int status, int is_request) {
  *err = msg;
  *st = is_request ? status : 502;
  return HTTP_BODY_ERROR;
}

#define is_ows(c) ((c) == ' ' || (c) == '\t')

int http_body_framing(const char *te, size_t te_len, const char *cl,
                      size_t cl_len, int is_request, const char *method,
                      int status, int minor, int64_t *length,
                      const char **err, int *err_status) {
  *length = 0;
  if (!is_request) {
    /* §6.3 points 1 and 2 */
    if ((method && strcmp(method, "HEAD") == 0) ||
        (status >= 100 && status < 200) || status == 204 || status == 304)
      return HTTP_BODY_NONE;
    if (method && strcmp(method, "CONNECT") == 0 && status >= 200
        && status < 300)
      return HTTP_BODY_TUNNEL;
  }
  if (te) {
    const char *p = te, *end = te + te_len;
    int chunked_seen = 0, last_chunked = 0, unknown = 0, any = 0;
    /* §6.1: TE with CL may be smuggling; TE in HTTP/1.0 is faulty */
    if (cl)
      return framing_error(err, err_status,
                           "transfer-encoding with content-length", 400,
                           is_request);
    if (minor == 0)
      return framing_error(err, err_status, "transfer-encoding in http/1.0",
                           400, is_request);
    /* #transfer-coding, transfer-coding = token *( OWS ";" OWS param ) */
    while (p < end) {
      const char *t, *te_end;
      int params = 0;
      while (p < end && (is_ows(*p) || *p == ',')) p++;
      if (p >= end) break;
      for (t = p; p < end && tchar[(unsigned char)*p]; p++) {}
      te_end = p;
      if (te_end == t)
        return framing_error(err, err_status, "invalid transfer-encoding",
                             400, is_request);
      while (p < end && *p != ',') {          /* parameters, if any */
        if (*p == '"') {                      /* quoted-string */
          for (p++; p < end && *p != '"'; p++)
            if (*p == '\\' && p + 1 < end) p++;
          if (p >= end)
            return framing_error(err, err_status,
                                 "invalid transfer-encoding", 400,
                                 is_request);
          p++;
          continue;
        }
        if (*p == ';') params = 1;
        else if (!is_ows(*p) && !tchar[(unsigned char)*p] && *p != '=')
          return framing_error(err, err_status, "invalid transfer-encoding",
                               400, is_request);
        p++;
      }
      any = 1;
      if (ieq(t, (size_t)(te_end - t), "chunked")) {
        /* §6.1: chunked at most once; §7.1: it has no parameters */
        if (chunked_seen || params)
          return framing_error(err, err_status, "invalid chunked coding",
                               400, is_request);
        chunked_seen = last_chunked = 1;
      } else {
        last_chunked = 0;
        if (!ieq(t, (size_t)(te_end - t), "gzip") &&
            !ieq(t, (size_t)(te_end - t), "x-gzip") &&
            !ieq(t, (size_t)(te_end - t), "deflate") &&
            !ieq(t, (size_t)(te_end - t), "compress") &&
            !ieq(t, (size_t)(te_end - t), "x-compress") &&
            !ieq(t, (size_t)(te_end - t), "identity"))
          unknown = 1;
      }
    }
    if (!any)
      return framing_error(err, err_status, "invalid transfer-encoding", 400,
                           is_request);
    if (is_request) {
      if (unknown)
        return framing_error(err, err_status, "unknown transfer coding", 501,
                             1);
      /* §6.3 point 4: a request's final coding must be chunked */
      if (!last_chunked)
        return framing_error(err, err_status, "final coding not chunked",
                             400, 1);
      return HTTP_BODY_CHUNKED;
    }
    return last_chunked ? HTTP_BODY_CHUNKED : HTTP_BODY_CLOSE;
  }
  if (cl) {
    /* §6.3 point 5: a list of identical valid values is one value */
    const char *p = cl, *end = cl + cl_len;
    int64_t val = -1;
    while (p < end) {
      int64_t n = 0;
      const char *d;
      while (p < end && is_ows(*p)) p++;
      if (p < end && *p == ',') { p++; continue; }
      if (p >= end) break;
      for (d = p; p < end && *p >= '0' && *p <= '9'; p++) {
        int digit = *p - '0';
        if (n > (INT64_MAX - digit) / 10)
          return framing_error(err, err_status, "content-length overflow",
                               400, is_request);
        n = n * 10 + digit;
      }
      if (p == d)
        return framing_error(err, err_status, "invalid content-length", 400,
                             is_request);
      while (p < end && is_ows(*p)) p++;
      if (p < end && *p != ',')
        return framing_error(err, err_status, "invalid content-length", 400,
                             is_request);
      if (val >= 0 && n != val)
        return framing_error(err, err_status, "conflicting content-length",
                             400, is_request);
      val = n;
    }
    if (val < 0)
      return framing_error(err, err_status, "invalid content-length", 400,
                           is_request);
    *length = val;
    return HTTP_BODY_LENGTH;
  }
  return is_request ? HTTP_BODY_NONE : HTTP_BODY_CLOSE;   /* points 7, 8 */
}

/* ====================================================================
** Chunked decoding (RFC 9112 §7.1)
** ==================================================================== */

enum { C_SIZE0, C_SIZE, C_EXT_WS, C_EXT, C_SIZE_LF, C_DATA, C_DATA_CR,
       C_DATA_LF, C_TRAILER, C_DONE, C_ERROR };

void http_chunked_init(http_chunked *d) {
  memset(d, 0, sizeof *d);
  d->state = C_SIZE0;
  d->max_chunk = ((uint64_t)1 << 53) - 1;
  d->max_ext = 4096;
  d->max_trailer = 8192;
  d->max_fields = 100;
}

void http_chunked_free(http_chunked *d) {
  free(d->trailer);
  d->trailer = NULL;
  d->tlen = d->tcap = 0;
}

static int chunk_fail(http_chunked *d, const char *err) {
  d->state = C_ERROR;
  d->err = err;
  return HTTP_CHUNK_ERROR;
}

/* end of a size line: data follows, or the trailer section */
static void size_line_done(http_chunked *d) {
  d->state = d->size ? C_DATA : C_TRAILER;
  d->tline = 0;
}

static int trailer_append(http_chunked *d, const char *p, size_t n) {
  if (d->tlen + n > d->max_trailer) return 0;
  if (d->tlen + n > d->tcap) {
    size_t cap = d->tcap ? d->tcap : 256;
    char *t;
    while (cap < d->tlen + n) cap *= 2;
    if (cap > d->max_trailer) cap = d->max_trailer;
    t = realloc(d->trailer, cap);
    if (!t) return 0;
    d->trailer = t;
    d->tcap = cap;
  }
  memcpy(d->trailer + d->tlen, p, n);
  d->tlen += n;
  return 1;
}

int http_chunked_step(http_chunked *d, const char *in, size_t len,
                      size_t *used, const char **data, size_t *data_len) {
  const char *p = in, *end = in + len;
  *data = NULL;
  *data_len = 0;
  while (p < end) {
    unsigned char c = (unsigned char)*p;
    switch (d->state) {
    case C_SIZE0: case C_SIZE: {
      int x = hexval(c);
      if (x >= 0) {
        if (d->size > (d->max_chunk - (uint64_t)x) / 16) {
          *used = (size_t)(p - in);
          return chunk_fail(d, "chunk size too large");
        }
        d->size = d->size * 16 + (uint64_t)x;
        d->state = C_SIZE;
        p++;
        continue;
      }
      if (d->state == C_SIZE0) goto bad_size;
      d->ext = 0;
      if (c == '\r') d->state = C_SIZE_LF;
      else if (c == '\n' && d->lenient) size_line_done(d);
      else if (c == ';') d->state = C_EXT;
      else if (is_ows(c)) d->state = C_EXT_WS;        /* BWS ";" */
      else goto bad_size;
      p++;
      continue;
    }
    case C_EXT_WS: case C_EXT:
      if (++d->ext > d->max_ext) {
        *used = (size_t)(p - in);
        return chunk_fail(d, "chunk extension too long");
      }
      if (d->state == C_EXT_WS) {        /* BWS must lead to ";" */
        if (c == ';') d->state = C_EXT;
        else if (!is_ows(c)) goto bad_size;
      } else if (c == '\r') d->state = C_SIZE_LF;
      else if (c == '\n' && d->lenient) size_line_done(d);
      else if (is_ctl_text(c)) {
        *used = (size_t)(p - in);
        return chunk_fail(d, "invalid chunk extension");
      }
      p++;
      continue;
    case C_SIZE_LF:
      if (c != '\n') goto bad_size;
      size_line_done(d);
      p++;
      continue;
    case C_DATA: {
      size_t n = (size_t)(end - p);
      if ((uint64_t)n > d->size) n = (size_t)d->size;
      *data = p;
      *data_len = n;
      d->size -= n;
      if (d->size == 0) d->state = C_DATA_CR;
      *used = (size_t)(p + n - in);
      return HTTP_CHUNK_DATA;
    }
    case C_DATA_CR:
      if (c == '\r') d->state = C_DATA_LF;
      else if (c == '\n' && d->lenient) d->state = C_SIZE0;
      else goto bad_crlf;
      p++;
      continue;
    case C_DATA_LF:
      if (c != '\n') goto bad_crlf;
      d->state = C_SIZE0;
      p++;
      continue;
    case C_TRAILER: {
      /* copy whole lines; the section ends at an empty line */
      const char *lf = memchr(p, '\n', (size_t)(end - p));
      size_t n = lf ? (size_t)(lf + 1 - p) : (size_t)(end - p);
      if (!trailer_append(d, p, n)) {
        *used = (size_t)(p - in);
        return chunk_fail(d, "trailer section too large");
      }
      p += n;
      if (!lf) continue;
      {
        size_t linelen = d->tlen - d->tline - 1;     /* without LF */
        if (linelen == 0 || (linelen == 1 && d->trailer[d->tline] == '\r')) {
          http_limits lim;
          http_head h;
          long r;
          http_default_limits(&lim);
          lim.max_head = d->tlen;
          lim.max_fields = d->max_fields;
          lim.lenient = d->lenient;
          memset(&h, 0, sizeof h);
          r = http_parse_fields(d->trailer, d->tlen, &lim, &h);
          *used = (size_t)(p - in);
          if (r < 0)
            return chunk_fail(d, r == HTTP_ERROR ? h.err : "invalid trailer");
          d->state = C_DONE;
          return HTTP_CHUNK_DONE;
        }
        d->tline = d->tlen;
      }
      continue;
    }
    case C_DONE:
      *used = (size_t)(p - in);
      return HTTP_CHUNK_DONE;
    default:
      *used = (size_t)(p - in);
      return HTTP_CHUNK_ERROR;
    }
  }
  *used = len;
  if (d->state == C_DONE) return HTTP_CHUNK_DONE;
  if (d->state == C_ERROR) return HTTP_CHUNK_ERROR;
  return HTTP_CHUNK_NEED;
bad_size:
  *used = (size_t)(p - in);
  return chunk_fail(d, "invalid chunk size");
bad_crlf:
  *used = (size_t)(p - in);
  return chunk_fail(d, "missing crlf after chunk data");
}

/* ====================================================================
** Lua binding
** ==================================================================== */

#define FIELDS_ON_STACK 128

static size_t opt_size(lua_State *L, int t, const char *k, size_t def) {
  lua_Integer v;
  int isnum;
  lua_getfield(L, t, k);
  if (lua_isnil(L, -1)) { lua_pop(L, 1); return def; }
  v = lua_tointegerx(L, -1, &isnum);
  if (!isnum || v < 0) luaL_error(L, "limits.%s must be a non-negative integer", k);
  lua_pop(L, 1);
  return (size_t)v;
}

static int opt_bool(lua_State *L, int t, const char *k) {
  int b;
  lua_getfield(L, t, k);
  b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

#define LIMITS "parley.http.limits"

/* http.limits' userdata: told from others by its size and its brand, the
** address of a static of this file (a server reads its limits once per
** request; comparing metatables cost ~300 instructions of it). Lua code
** cannot make a userdata's bytes. */
typedef struct limits_ud {
  const void *brand;
  http_limits lim;
} limits_ud;
static const char limits_brand = 0;

static void read_limits(lua_State *L, int arg, http_limits *lim) {
  const limits_ud *u = lua_touserdata(L, arg);
  if (u && lua_rawlen(L, arg) == sizeof *u && u->brand == &limits_brand) {
    *lim = u->lim;
    return;
  }
  http_default_limits(lim);
  if (lua_isnoneornil(L, arg)) return;
  if (lua_type(L, arg) != LUA_TTABLE) luaL_typeerror(L, arg, LIMITS);
  lim->max_line = opt_size(L, arg, "max_request_line", lim->max_line);
  lim->max_head = opt_size(L, arg, "max_head", lim->max_head);
  lim->max_fields = opt_size(L, arg, "max_headers", lim->max_fields);
  lim->lenient = opt_bool(L, arg, "lenient");
}

static const unsigned char lower[256] = {
#define R(b) b, b+1, b+2, b+3, b+4, b+5, b+6, b+7
  R(0), R(8), R(16), R(24), R(32), R(40), R(48), R(56),
  64, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n',
  'o', 'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 91, 92, 93,
  94, 95,
  R(96), R(104), R(112), R(120), R(128), R(136), R(144), R(152), R(160),
  R(168), R(176), R(184), R(192), R(200), R(208), R(216), R(224), R(232),
  R(240), R(248)
#undef R
};

static void push_lower(lua_State *L, const char *s, size_t n) {
  char tmp[64];
  char *b = n <= sizeof tmp ? tmp : NULL;
  luaL_Buffer lb;
  size_t i;
  if (!b) b = luaL_buffinitsize(L, &lb, n);
  for (i = 0; i < n; i++) b[i] = (char)lower[(unsigned char)s[i]];
  if (b == tmp) lua_pushlstring(L, tmp, n);
  else luaL_pushresultsize(&lb, n);
}

static void push_value(lua_State *L, const http_field *f) {
  luaL_Buffer lb;
  char *b;
  size_t i;
  if (!f->folded) { lua_pushlstring(L, f->value, f->value_len); return; }
  b = luaL_buffinitsize(L, &lb, f->value_len);       /* obs-fold -> SP */
  for (i = 0; i < f->value_len; i++)
    b[i] = (f->value[i] == '\r' || f->value[i] == '\n') ? ' ' : f->value[i];
  luaL_pushresultsize(&lb, f->value_len);
}

/* The headers table described at the top of the file. */
static void push_fields(lua_State *L, const http_field *f, size_t n) {
  size_t i;
  int t;
  lua_createtable(L, (int)(2 * n), (int)n);
  t = lua_gettop(L);
  for (i = 0; i < n; i++) {
    push_lower(L, f[i].name, f[i].name_len);          /* name */
    push_value(L, &f[i]);                              /* name value */
    lua_pushvalue(L, -2);
    if (lua_rawget(L, t) == LUA_TNIL) {                /* name value old */
      lua_pop(L, 1);
      lua_pushvalue(L, -2);
      lua_pushvalue(L, -2);
      lua_rawset(L, t);
    } else if (f[i].name_len == 10 && ieq(f[i].name, 10, "set-cookie")) {
      lua_pop(L, 1);
    } else {                                           /* RFC 9110 §5.3 */
      lua_pushliteral(L, ", ");
      lua_pushvalue(L, -3);
      lua_concat(L, 3);
      lua_pushvalue(L, -3);
      lua_insert(L, -2);
      lua_rawset(L, t);
    }
    lua_rawseti(L, t, (lua_Integer)(2 * i + 2));
    lua_rawseti(L, t, (lua_Integer)(2 * i + 1));
  }
}

/* ---- the request object of a server ---- */

/* the fields a server decides on before a handler runs: first of each
** and how many there were */
typedef struct req_facts {
  const http_field *conn, *host, *expect, *cl, *te;
  int nhost, nexpect, ncl, nte;
} req_facts;

static void find_facts(const http_field *f, size_t n, req_facts *r) {
  size_t i;
  memset(r, 0, sizeof *r);
  for (i = 0; i < n; i++) {
    const char *nm = f[i].name;
    switch (f[i].name_len) {
    case 4:
      if (ieq(nm, 4, "host")) { if (!r->nhost++) r->host = &f[i]; }
      break;
    case 6:
      if (ieq(nm, 6, "expect")) { if (!r->nexpect++) r->expect = &f[i]; }
      break;
    case 10:
      if (ieq(nm, 10, "connection") && !r->conn) r->conn = &f[i];
      break;
    case 14:
      if (ieq(nm, 14, "content-length")) { if (!r->ncl++) r->cl = &f[i]; }
      break;
    case 17:
      if (ieq(nm, 17, "transfer-encoding")) { if (!r->nte++) r->te = &f[i]; }
      break;
    default:
      break;
    }
  }
}

/* does any Connection field of f[0, n) list `token` (RFC 9110 §7.6.1:
** comma-separated, case-insensitive)? */
static int has_connection_option(const http_field *f, size_t n,
                                 const char *token, size_t tl) {
  size_t i;
  for (i = 0; i < n; i++) {
    const char *p = f[i].value, *end = p + f[i].value_len;
    if (f[i].name_len != 10 || !ieq(f[i].name, 10, "connection")) continue;
    while (p < end) {
      const char *t;
      while (p < end && (*p == ',' || *p == ' ' || *p == '\t')) p++;
      t = p;
      while (p < end && *p != ',' && *p != ' ' && *p != '\t') p++;
      if ((size_t)(p - t) == tl && ieq(t, tl, token)) return 1;
    }
  }
  return 0;
}

/* the value of a field that may be repeated (`name`: lowercase): the one
** field's own bytes, or the values of all joined by ", " (RFC 9110 §5.3),
** left on the stack for the caller to pop */
static const char *fact_value(lua_State *L, const http_head *h,
                              const http_field *f, int count,
                              const char *name, size_t *n) {
  luaL_Buffer lb;
  size_t i, nl = strlen(name);
  int first = 1;
  if (!f) { *n = 0; return NULL; }
  if (count == 1) { *n = f->value_len; return f->value; }
  luaL_buffinit(L, &lb);
  for (i = (size_t)(f - h->fields); i < h->nfields; i++) {
    const http_field *g = &h->fields[i];
    if (g->name_len != nl || !ieq(g->name, nl, name)) continue;
    if (!first) luaL_addlstring(&lb, ", ", 2);
    luaL_addlstring(&lb, g->value, g->value_len);
    first = 0;
  }
  luaL_pushresult(&lb);
  return lua_tolstring(L, -1, n);
}

/*
** The path of a request target (RFC 9112 §3.2): without the query, the
** scheme and authority of the absolute-form removed, %XX decoded.
** Returns 1 when %00 decoded to a NUL (the request is refused, as nginx
** does: no handler should meet a NUL in a path), else 0.
*/
static int push_path(lua_State *L, const char *t, size_t tl) {
  const char *p = t, *q = memchr(t, '?', tl);
  size_t pl = q ? (size_t)(q - t) : tl, k = 0, i;
  luaL_Buffer lb;
  char *b;
  if (pl > 0 && p[0] != '/' && pl >= 7 && ieq(p, 4, "http")) {
    k = 4;
    if ((p[k] | 0x20) == 's') k++;
    if (pl - k >= 3 && memcmp(p + k, "://", 3) == 0) {
      k += 3;
      while (k < pl && p[k] != '/') k++;
      p += k;
      pl -= k;
      if (pl == 0) { p = "/"; pl = 1; }
    }
  }
  if (!memchr(p, '%', pl)) {
    lua_pushlstring(L, p, pl);
    return 0;
  }
  b = luaL_buffinitsize(L, &lb, pl);
  for (i = k = 0; i < pl; i++) {
    int hi, lo;
    if (p[i] == '%' && i + 2 < pl &&
        (hi = hexval((unsigned char)p[i + 1])) >= 0 &&
        (lo = hexval((unsigned char)p[i + 2])) >= 0) {
      b[k++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      b[k++] = p[i];
    }
  }
  luaL_pushresultsize(&lb, k);
  return memchr(lua_tostring(L, -1), 0, k) != NULL;
}

static const char *const kind_names[] = {"none", "length", "chunked", "close",
                                         "tunnel"};

/* the request object's fields that request_index makes */
enum { REQ_METHOD = 1, REQ_TARGET, REQ_PATH, REQ_MINOR, REQ_QUERY,
       REQ_PEER, REQ_CONN, REQ_HEADERS };

/* A request object keeps its head's bytes in its array part, req[1]: a
** table made per request costs less with no hash key to add, and the
** hash part is made only when a field is (request_index's, a handler's) */
#define REQ_HEAD 1

/* a method's name; "GET" as a literal, which lua_pushstring finds in
** the state's string cache by its address (no hashing of its text) */
static void push_method(lua_State *L, const char *m, size_t ml) {
  if (ml == 3 && memcmp(m, "GET", 3) == 0) lua_pushliteral(L, "GET");
  else lua_pushlstring(L, m, ml);
}

/*
** A parsed request as the server's object (obj: stack index of its
** metatable) and what the server decides from its fields before a
** handler runs.  The head's bytes (head, head_len) are kept as req[1]:
** the headers and the request line's fields are made from them when
** asked (http.request_index), so a handler that reads none costs no
** table or string of them.  Pushes
**   req, keep, kind, len, status, method, path, minor
**   or req, keep, nil, reason, status (bad framing)
** keep: the connection may stay open (RFC 9112 §9.3); kind and len as
** http.body_framing gives them; status nil, or 400 for a path with %00
** or for no Host or more than one in HTTP/1.1 (RFC 9112 §3.2), 417 for
** an Expect other than 100-continue (RFC 9110 §10.1.1); method, path and
** minor what req would give.  req gets _continue = true for an Expect:
** 100-continue with a body.
*/
static int push_request(lua_State *L, const http_head *h, int obj,
                        const char *head, size_t head_len) {
  req_facts r;
  const char *te, *cl, *err = NULL;
  size_t te_len, cl_len;
  int64_t n = 0;
  int kind, st = 0, refuse = 0, keep, req, nul;
  find_facts(h->fields, h->nfields, &r);
  lua_createtable(L, 1, 0);
  req = lua_gettop(L);
  lua_pushlstring(L, head, head_len);
  lua_rawseti(L, req, REQ_HEAD);
  lua_pushvalue(L, obj);
  lua_setmetatable(L, req);
  if (h->minor == 1)
    keep = !r.conn || !has_connection_option(h->fields, h->nfields, "close", 5);
  else
    keep = r.conn && has_connection_option(h->fields, h->nfields,
                                           "keep-alive", 10);
  kind = HTTP_BODY_NONE;
  if (r.cl || r.te) {
    te = fact_value(L, h, r.te, r.nte, "transfer-encoding", &te_len);
    cl = fact_value(L, h, r.cl, r.ncl, "content-length", &cl_len);
    kind = http_body_framing(te, te_len, cl, cl_len, 1, NULL, 0, h->minor,
                             &n, &err, &st);
    lua_settop(L, req);   /* fact_value's joined values */
  }
  /* the results pushed in order (no slot filled twice on the usual way) */
  lua_pushboolean(L, keep);                              /* req + 1 */
  if (kind == HTTP_BODY_ERROR) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    lua_pushinteger(L, st);
    return 5;
  }
  if (h->minor == 1 &&
      (r.nhost != 1 || memchr(r.host->value, ',', r.host->value_len)))
    refuse = 400;
  else if (r.expect) {
    if (h->minor == 1 && r.nexpect == 1 &&
        ieq(r.expect->value, r.expect->value_len, "100-continue")) {
      if (kind != HTTP_BODY_NONE) {
        lua_pushboolean(L, 1);
        lua_setfield(L, req, "_continue");
      }
    } else {
      refuse = 417;
    }
  }
  lua_pushstring(L, kind_names[kind]);                   /* req + 2 */
  if (kind == HTTP_BODY_LENGTH) lua_pushinteger(L, (lua_Integer)n);
  else lua_pushnil(L);                                   /* req + 3 */
  if (refuse) lua_pushinteger(L, refuse);
  else lua_pushnil(L);                                   /* req + 4 */
  push_method(L, h->method, h->method_len);              /* req + 5 */
  nul = push_path(L, h->target, h->target_len);          /* req + 6 */
  if (nul && refuse != 400) {   /* a %00 in the path: refused first */
    lua_pushinteger(L, 400);
    lua_replace(L, req + 4);
    lua_pushnil(L);               /* and no 100 Continue for it */
    lua_setfield(L, req, "_continue");
  }
  lua_pushinteger(L, h->minor);
  return 8;
}

/*
** Parses a head from buf[start, len) and pushes method, target, minor,
** headers (a request) or minor, status, reason, headers (a response):
** returns 4 and sets *used; 3 after pushing nil, reason, status for a
** malformed head; 0 (nothing pushed) when it is incomplete.  `seen` as
** for parse_request (0: none).
*/
static int push_head(lua_State *L, const char *buf, size_t start, size_t len,
                     const http_limits *lim, size_t seen, int is_request,
                     size_t *used, int obj) {
  http_head h;
  http_field stackf[FIELDS_ON_STACK];
  long r;
  int n, ud = 0;    /* ud: stack slot of a fields array too big for the C stack */
  if (seen > start && seen <= len &&
      http_head_incomplete(buf, start, len, seen, lim))
    return 0;
  memset(&h, 0, sizeof h);
  h.fields = stackf;
  h.fields_cap = FIELDS_ON_STACK;
  if (lim->max_fields > FIELDS_ON_STACK) {
    size_t cap = lim->max_fields;
    if (cap > (len - start) / 2 + 1) cap = (len - start) / 2 + 1;
    if (cap > FIELDS_ON_STACK) {
      h.fields = lua_newuserdatauv(L, cap * sizeof(http_field), 0);
      h.fields_cap = cap;
      ud = lua_gettop(L);
    }
  }
  r = is_request ? http_parse_request(buf + start, len - start, lim, &h)
                 : http_parse_response(buf + start, len - start, lim, &h);
  if (r < 0 && ud) lua_pop(L, 1);
  if (r == HTTP_INCOMPLETE) return 0;
  if (r == HTTP_ERROR) {
    lua_pushnil(L);
    lua_pushstring(L, h.err);
    lua_pushinteger(L, h.err_status);
    return 3;
  }
  *used = (size_t)r;
  if (obj) {
    /* the head from its request line: without the empty lines a client
    ** may send before it (RFC 9112 §2.2), which the parser skipped */
    n = push_request(L, &h, obj, h.method,
                     (size_t)(buf + start + r - h.method));
    if (ud) lua_remove(L, ud);
    return n;
  }
  if (is_request) {
    lua_pushlstring(L, h.method, h.method_len);
    lua_pushlstring(L, h.target, h.target_len);
    lua_pushinteger(L, h.minor);
  } else {
    lua_pushinteger(L, h.minor);
    lua_pushinteger(L, h.status);
    lua_pushlstring(L, h.reason, h.reason_len);
  }
  push_fields(L, h.fields, h.nfields);
  if (ud) lua_remove(L, ud);
  return 4;
}

static int parse_head(lua_State *L, int is_request) {
  size_t len, used = 0;
  const char *buf = luaL_checklstring(L, 1, &len);
  lua_Integer init = luaL_optinteger(L, 2, 1);
  http_limits lim;
  int n, obj = 0;
  luaL_argcheck(L, init >= 1, 2, "must be >= 1");
  read_limits(L, 3, &lim);
  if (!is_request) lim.unfold = 1;
  if (is_request && !lua_isnoneornil(L, 5)) {
    luaL_checktype(L, 5, LUA_TTABLE);
    lua_settop(L, 5);
    obj = 5;
  }
  if ((size_t)init > len) { lua_pushnil(L); return 1; }
  n = push_head(L, buf, (size_t)init - 1, len, &lim,
                (size_t)luaL_optinteger(L, 4, 0), is_request, &used, obj);
  if (n == 0) { lua_pushnil(L); return 1; }
  if (used > 0) {
    lua_pushinteger(L, (lua_Integer)used);
    lua_insert(L, -(n + 1));
    return n + 1;
  }
  return n;
}

int parley_http_receive_request(lua_State *L, const char *buf, size_t len,
                                int limits, size_t seen, size_t *used,
                                int obj) {
  http_limits lim;
  read_limits(L, limits, &lim);
  return push_head(L, buf, 0, len, &lim, seen, 1, used, obj);
}

/*
** The headers table of a server's request object (at req), parsed again
** from req[1], whose bytes passed the server's limits once already: so
** no limit here but the room for its fields (one per line at most).  Kept
** in req.headers; nil for a table without a head.
*/
static int push_request_headers(lua_State *L, int req) {
  http_head h;
  http_limits lim;
  http_field stackf[FIELDS_ON_STACK];
  size_t len, cap = 1;
  const char *head, *p;
  lua_rawgeti(L, req, REQ_HEAD);
  head = lua_tolstring(L, -1, &len);
  if (lua_type(L, -1) != LUA_TSTRING) { lua_pushnil(L); return 1; }
  for (p = head; (p = memchr(p, '\n', len - (size_t)(p - head))); p++) cap++;
  memset(&h, 0, sizeof h);
  h.fields = cap <= FIELDS_ON_STACK
                 ? stackf : lua_newuserdatauv(L, cap * sizeof(http_field), 0);
  h.fields_cap = cap;
  http_default_limits(&lim);
  lim.max_line = lim.max_head = len;
  lim.max_fields = cap;
  lim.lenient = 1;
  if (http_parse_request(head, len, &lim, &h) != (long)len)
    return luaL_error(L, "http: a request head that parsed once does not "
                         "parse again");
  push_fields(L, h.fields, h.nfields);
  lua_pushliteral(L, "headers");
  lua_pushvalue(L, -2);
  lua_rawset(L, req);
  return 1;
}

int http_same_name(const char *a, const char *b, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (lower[(unsigned char)a[i]] != lower[(unsigned char)b[i]]) return 0;
  return 1;
}

/* the value of a field line (its colon and end of line given), without
** the OWS around it */
static void field_span(const char *colon, const char *eol, const char **v,
                       const char **ve) {
  const char *a = colon + 1, *b = eol > a && eol[-1] == '\r' ? eol - 1 : eol;
  while (a < b && (*a == ' ' || *a == '\t')) a++;
  while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
  *v = a;
  *ve = b;
}

/* pushes the value of field `name` in a request head (head, hl), read
** where it lies: its lines passed the parser already (field-name ":" OWS
** value OWS, then CRLF or LF; no obs-fold in a request).  Repeated fields
** are joined by ", " (RFC 9110 §5.3), Set-Cookie gives its first, as the
** headers table's index does; nil when there is none. */
static void push_head_field(lua_State *L, const char *head, size_t hl,
                            const char *name, size_t nl) {
  const char *p, *end = head + hl;
  luaL_Buffer lb;
  int found = 0, first_only = nl == 10 && ieq(name, 10, "set-cookie");
  p = memchr(head, '\n', hl);                       /* past the request line */
  while (p && ++p < end && *p != '\r' && *p != '\n') {
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *v, *ve;
    if (!colon || !eol || colon > eol) break;        /* cannot be: parsed */
    if ((size_t)(colon - p) == nl && http_same_name(p, name, nl)) {
      field_span(colon, eol, &v, &ve);
      if (!found) luaL_buffinit(L, &lb);
      else luaL_addlstring(&lb, ", ", 2);
      luaL_addlstring(&lb, v, (size_t)(ve - v));
      found++;
      if (first_only) break;
    }
    p = eol;
  }
  if (!found) lua_pushnil(L);
  else luaL_pushresult(&lb);
}

#define HEAD_NAMES_MAX 16

/* push_head_field for each of the names at stack slots 2..n, from one
** scan of the head (a handler asks for several at once: the static
** handler for five): a field found once is pushed as it lies, one found
** more often is joined by push_head_field */
static void push_head_fields(lua_State *L, const char *head, size_t hl,
                             int n) {
  struct { const char *name, *v, *ve; size_t nl; int count; } f[HEAD_NAMES_MAX];
  const char *p, *end = head + hl;
  int i, k = n - 1;
  for (i = 0; i < k; i++) {
    f[i].name = lua_tolstring(L, i + 2, &f[i].nl);
    f[i].count = 0;
  }
  p = memchr(head, '\n', hl);                       /* past the request line */
  while (p && ++p < end && *p != '\r' && *p != '\n') {
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    size_t ln;
    if (!colon || !eol || colon > eol) break;        /* cannot be: parsed */
    ln = (size_t)(colon - p);
    for (i = 0; i < k; i++)
      if (f[i].nl == ln && http_same_name(p, f[i].name, ln) && f[i].count++ == 0)
        field_span(colon, eol, &f[i].v, &f[i].ve);
    p = eol;
  }
  for (i = 0; i < k; i++) {
    if (f[i].count == 0) lua_pushnil(L);
    else if (f[i].count == 1) lua_pushlstring(L, f[i].v, (size_t)(f[i].ve - f[i].v));
    else push_head_field(L, head, hl, f[i].name, f[i].nl);
  }
}

/*
** http.request_header(req, name, ...): for each name,
** req.headers[name:lower()], without making that table when nothing made
** it yet (read from req[1], see push_head_field).  One call for the
** several fields a handler asks about costs one C call, not several.
*/
static int l_request_header(lua_State *L) {
  int i, n = lua_gettop(L), from;
  size_t nl, hl = 0;
  const char *head = NULL;
  luaL_checktype(L, 1, LUA_TTABLE);
  for (i = 2; i <= n; i++) luaL_checkstring(L, i);
  if (n < 2) luaL_checkstring(L, 2);
  luaL_checkstack(L, n + 4, NULL);
  lua_pushliteral(L, "headers");
  if (lua_rawget(L, 1) != LUA_TTABLE) {             /* not made: the head */
    lua_pop(L, 1);
    lua_rawgeti(L, 1, REQ_HEAD);
    head = lua_tolstring(L, -1, &hl);               /* NULL: not a string */
  }
  from = lua_gettop(L);                             /* headers or head */
  if (head && n - 1 <= HEAD_NAMES_MAX) {
    push_head_fields(L, head, hl, n);
    return n - 1;
  }
  for (i = 2; i <= n; i++) {
    const char *name = lua_tolstring(L, i, &nl);
    if (head) {
      push_head_field(L, head, hl, name, nl);
    } else if (lua_type(L, from) == LUA_TTABLE) {
      push_lower(L, name, nl);
      lua_rawget(L, from);
    } else {
      lua_pushnil(L);
    }
  }
  return n - 1;
}

/* which request field a key names: REQ_METHOD .. REQ_CONN, REQ_HEADERS,
** or 0 for any other (looked up in the methods table) */
static int request_field(const char *k, size_t kl) {
  switch (kl) {
  case 4:
    if (memcmp(k, "path", 4) == 0) return REQ_PATH;
    if (memcmp(k, "peer", 4) == 0) return REQ_PEER;
    if (memcmp(k, "conn", 4) == 0) return REQ_CONN;
    return 0;
  case 5:
    if (memcmp(k, "minor", 5) == 0) return REQ_MINOR;
    if (memcmp(k, "query", 5) == 0) return REQ_QUERY;
    return 0;
  case 6:
    if (memcmp(k, "method", 6) == 0) return REQ_METHOD;
    if (memcmp(k, "target", 6) == 0) return REQ_TARGET;
    return 0;
  case 7:
    return memcmp(k, "headers", 7) == 0 ? REQ_HEADERS : 0;
  }
  return 0;
}

/*
** A field of the request line of req (at 1) read from req[1]: METHOD SP
** request-target SP HTTP/1.d, all the parser lets through (RFC 9112 §3).  Made on each use, not kept in req:
** a few memchr cost less than growing the table's hash part for it, as
** keeping it would on every request that asks.  nil for a table without
** a head.
*/
static int push_line_field(lua_State *L, int field) {
  size_t hl;
  const char *head, *sp1, *sp2 = NULL, *q;
  if (lua_rawgeti(L, 1, REQ_HEAD) != LUA_TSTRING) { lua_pushnil(L); return 1; }
  head = lua_tolstring(L, -1, &hl);
  sp1 = memchr(head, ' ', hl);
  if (sp1) sp2 = memchr(sp1 + 1, ' ', hl - (size_t)(sp1 + 1 - head));
  if (!sp2 || (size_t)(sp2 - head) + 9 > hl)
    return luaL_error(L, "http: a request head that parsed once does not "
                         "parse again");
  switch (field) {
  case REQ_METHOD:
    push_method(L, head, (size_t)(sp1 - head));
    break;
  case REQ_TARGET:
    lua_pushlstring(L, sp1 + 1, (size_t)(sp2 - sp1 - 1));
    break;
  case REQ_PATH:
    push_path(L, sp1 + 1, (size_t)(sp2 - sp1 - 1));
    break;
  case REQ_QUERY:
    q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
    if (!q) { lua_pushnil(L); return 1; }
    lua_pushlstring(L, q + 1, (size_t)(sp2 - q - 1));
    break;
  default:                                          /* REQ_MINOR */
    lua_pushinteger(L, sp2[8] == '0' ? 0 : 1);
    break;
  }
  return 1;
}

/* __index of a server's request objects (upvalue 1: the methods table,
** often the metatable itself; 2 and 3: the peer and the connection):
** `headers` (kept once made) and the request line's fields made from the
** head, `peer` and `conn` from the upvalues, any other key looked up in
** the methods table */
static int request_index(lua_State *L) {
  size_t kl;
  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *k = lua_tolstring(L, 2, &kl);
    int field = request_field(k, kl);
    switch (field) {
    case 0: break;
    case REQ_HEADERS: return push_request_headers(L, 1);
    case REQ_PEER: lua_pushvalue(L, lua_upvalueindex(2)); return 1;
    case REQ_CONN: lua_pushvalue(L, lua_upvalueindex(3)); return 1;
    default: return push_line_field(L, field);
    }
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int l_request_index(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 3);
  lua_pushcclosure(L, request_index, 3);
  return 1;
}

static int l_parse_request(lua_State *L) { return parse_head(L, 1); }

static int l_limits(lua_State *L) {
  limits_ud *u;
  http_limits lim;
  luaL_checktype(L, 1, LUA_TTABLE);
  read_limits(L, 1, &lim);
  u = lua_newuserdatauv(L, sizeof *u, 0);
  u->brand = &limits_brand;
  u->lim = lim;
  luaL_setmetatable(L, LIMITS);
  return 1;
}

static int l_limits_tostring(lua_State *L) {
  return parley_tostring(L, NULL);
}
static int l_parse_response(lua_State *L) { return parse_head(L, 0); }

static int l_body_framing(lua_State *L) {
  size_t te_len = 0, cl_len = 0;
  const char *te, *cl, *method, *err = NULL;
  int is_request, status, minor, st = 0, kind;
  int64_t n;
  luaL_checktype(L, 1, LUA_TTABLE);
  is_request = lua_toboolean(L, 2);
  method = luaL_optstring(L, 3, NULL);
  status = (int)luaL_optinteger(L, 4, 0);
  minor = (int)luaL_optinteger(L, 5, 1);
  lua_getfield(L, 1, "transfer-encoding");
  te = lua_isstring(L, -1) ? lua_tolstring(L, -1, &te_len) : NULL;
  lua_getfield(L, 1, "content-length");
  cl = lua_isstring(L, -1) ? lua_tolstring(L, -1, &cl_len) : NULL;
  kind = http_body_framing(te, te_len, cl, cl_len, is_request, method, status,
                           minor, &n, &err, &st);
  switch (kind) {
  case HTTP_BODY_NONE: lua_pushliteral(L, "none"); return 1;
  case HTTP_BODY_CHUNKED: lua_pushliteral(L, "chunked"); return 1;
  case HTTP_BODY_CLOSE: lua_pushliteral(L, "close"); return 1;
  case HTTP_BODY_TUNNEL: lua_pushliteral(L, "tunnel"); return 1;
  case HTTP_BODY_LENGTH:
    lua_pushliteral(L, "length");
    lua_pushinteger(L, (lua_Integer)n);
    return 2;
  default:
    lua_pushnil(L);
    lua_pushstring(L, err);
    lua_pushinteger(L, st);
    return 3;
  }
}

/* ---- chunked decoder object ---- */

#define DECODER "parley.http.chunked"

static http_chunked *check_decoder(lua_State *L) {
  return luaL_checkudata(L, 1, DECODER);
}

static int l_chunked_decoder(lua_State *L) {
  http_chunked *d;
  int t = 1;
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
  else t = 0;
  d = lua_newuserdatauv(L, sizeof *d, 0);
  http_chunked_init(d);
  if (t) {
    lua_Integer mc;
    int isnum;
    lua_getfield(L, 1, "max_chunk_size");
    if (!lua_isnil(L, -1)) {
      mc = lua_tointegerx(L, -1, &isnum);
      if (!isnum || mc < 0)
        return luaL_error(L, "limits.max_chunk_size must be a non-negative integer");
      d->max_chunk = (uint64_t)mc;
    }
    lua_pop(L, 1);
    d->max_ext = opt_size(L, 1, "max_chunk_ext", d->max_ext);
    d->max_trailer = opt_size(L, 1, "max_trailer", d->max_trailer);
    d->max_fields = opt_size(L, 1, "max_headers", d->max_fields);
    d->lenient = opt_bool(L, 1, "lenient");
  }
  luaL_setmetatable(L, DECODER);
  return 1;
}

static int l_feed(lua_State *L) {
  http_chunked *d = check_decoder(L);
  size_t len, off = 0, used;
  const char *in = luaL_checklstring(L, 2, &len);
  lua_Integer init = luaL_optinteger(L, 3, 1);
  const char *first = NULL, *data;
  size_t first_len = 0, dlen;
  int spans = 0, rc;
  luaL_Buffer lb;
  luaL_argcheck(L, init >= 1, 3, "must be >= 1");
  if ((size_t)init > len + 1) init = (lua_Integer)len + 1;
  in += init - 1;
  len -= (size_t)init - 1;
  if (d->state == C_ERROR) {
    lua_pushnil(L);
    lua_pushstring(L, d->err);
    return 2;
  }
  for (;;) {
    rc = http_chunked_step(d, in + off, len - off, &used, &data, &dlen);
    off += used;
    if (rc != HTTP_CHUNK_DATA) break;
    if (dlen == 0) continue;
    /* one span (the usual case) is pushed straight from the input */
    if (spans == 0) { first = data; first_len = dlen; }
    else {
      if (spans == 1) {
        luaL_buffinit(L, &lb);
        luaL_addlstring(&lb, first, first_len);
      }
      luaL_addlstring(&lb, data, dlen);
    }
    spans++;
  }
  if (rc == HTTP_CHUNK_ERROR) {
    lua_pushnil(L);
    lua_pushstring(L, d->err);
    return 2;
  }
  if (spans > 1) luaL_pushresult(&lb);
  else lua_pushlstring(L, first ? first : "", first_len);
  lua_pushboolean(L, rc == HTTP_CHUNK_DONE);
  lua_pushinteger(L, (lua_Integer)off);
  return 3;
}

static int l_trailers(lua_State *L) {
  http_chunked *d = check_decoder(L);
  http_limits lim;
  http_head h;
  http_field *fields;
  long r;
  if (d->state != C_DONE || d->tlen == 0) { lua_newtable(L); return 1; }
  http_default_limits(&lim);
  lim.max_head = d->tlen;
  lim.max_fields = d->max_fields;
  lim.lenient = d->lenient;
  memset(&h, 0, sizeof h);
  h.fields_cap = d->max_fields < d->tlen / 2 + 1 ? d->max_fields
                                                 : d->tlen / 2 + 1;
  fields = lua_newuserdatauv(L, (h.fields_cap + 1) * sizeof *fields, 0);
  h.fields = fields;
  r = http_parse_fields(d->trailer, d->tlen, &lim, &h);
  if (r < 0) return luaL_error(L, "trailer section changed");  /* cannot */
  push_fields(L, fields, h.nfields);
  return 1;
}

static int l_decoder_done(lua_State *L) {
  lua_pushboolean(L, check_decoder(L)->state == C_DONE);
  return 1;
}

static int l_decoder_gc(lua_State *L) {
  http_chunked_free(check_decoder(L));
  return 0;
}

static int l_decoder_tostring(lua_State *L) {
  http_chunked *d = check_decoder(L);
  return parley_tostring(L, d->state == C_DONE ? "(done)"
                            : d->state == C_ERROR ? "(failed)" : NULL);
}

/* ---- encoding ---- */

static int l_chunk(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char hex[20];
  int k = 0, i;
  size_t v = n;
  luaL_Buffer lb;
  char *b;
  if (n == 0) { lua_pushliteral(L, "0\r\n\r\n"); return 1; }
  while (v) { hex[k++] = "0123456789abcdef"[v & 15]; v >>= 4; }
  b = luaL_buffinitsize(L, &lb, n + (size_t)k + 4);
  for (i = 0; i < k; i++) b[i] = hex[k - 1 - i];
  b[k] = '\r'; b[k + 1] = '\n';
  memcpy(b + k + 2, s, n);
  b[k + 2 + n] = '\r'; b[k + 3 + n] = '\n';
  luaL_pushresultsize(&lb, n + (size_t)k + 4);
  return 1;
}

static const char *status_text(lua_Integer code) {
  switch (code) {             /* RFC 9110 §15 */
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 203: return "Non-Authoritative Information";
  case 204: return "No Content";
  case 205: return "Reset Content";
  case 206: return "Partial Content";
  case 300: return "Multiple Choices";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 305: return "Use Proxy";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 402: return "Payment Required";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 406: return "Not Acceptable";
  case 407: return "Proxy Authentication Required";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 416: return "Range Not Satisfiable";
  case 417: return "Expectation Failed";
  case 421: return "Misdirected Request";
  case 422: return "Unprocessable Content";
  case 426: return "Upgrade Required";
  case 428: return "Precondition Required";      /* RFC 6585 */
  case 429: return "Too Many Requests";          /* RFC 6585 */
  case 431: return "Request Header Fields Too Large";   /* RFC 6585 */
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  default: return NULL;
  }
}

static int l_status_text(lua_State *L) {
  const char *s = status_text(luaL_checkinteger(L, 1));
  if (s) lua_pushstring(L, s);
  else lua_pushnil(L);
  return 1;
}

/* Values on the wire must not carry CR, LF, NUL or other controls
** (RFC 9110 §5.5): that is how header injection happens. */
static void check_text(lua_State *L, const char *s, size_t n,
                       const char *what) {
  if (scan_text(s, s + n) != s + n)
    luaL_error(L, "header injection: control character in %s", what);
}

/*
** Output buffer for the heads: starts in C memory and grows into a
** userdata anchored at a fixed stack slot, so values can be pushed and
** popped freely while it fills (unlike luaL_Buffer).
*/
typedef struct obuf {
  lua_State *L;
  char *b;
  size_t n, cap;
  int slot;
  char local[2048];
} obuf;

static void ob_init(lua_State *L, obuf *o) {
  o->L = L;
  o->b = o->local;
  o->n = 0;
  o->cap = sizeof o->local;
  lua_pushnil(L);
  o->slot = lua_gettop(L);
}

/* room for n more bytes */
static void ob_reserve(obuf *o, size_t n) {
  if (o->cap - o->n < n) {
    size_t cap = o->cap;
    char *nb;
    while (cap - o->n < n) {
      if (cap > ((size_t)-1) / 2) luaL_error(o->L, "head too large");
      cap *= 2;
    }
    nb = lua_newuserdatauv(o->L, cap, 0);
    memcpy(nb, o->b, o->n);
    lua_replace(o->L, o->slot);
    o->b = nb;
    o->cap = cap;
  }
}

static void ob_add(obuf *o, const char *s, size_t n) {
  ob_reserve(o, n);
  memcpy(o->b + o->n, s, n);
  o->n += n;
}

/* "name: value\r\n" with one capacity check (heads are mostly these) */
static void ob_line(obuf *o, const char *name, size_t nl, const char *value,
                    size_t vl) {
  char *p;
  if (nl > ((size_t)-1) / 4 || vl > ((size_t)-1) / 4)
    luaL_error(o->L, "head too large");
  ob_reserve(o, nl + vl + 4);
  p = o->b + o->n;
  memcpy(p, name, nl);
  p += nl;
  *p++ = ':';
  *p++ = ' ';
  memcpy(p, value, vl);
  p += vl;
  *p++ = '\r';
  *p++ = '\n';
  o->n += nl + vl + 4;
}

/* the value at idx, of Lua type t (lua_rawgeti's result, so not asked again) */
static const char *field_value(lua_State *L, int idx, int t, size_t *vl) {
  const char *v;
  if (t != LUA_TSTRING && t != LUA_TNUMBER)
    luaL_error(L, "header value must be a string or number");
  v = lua_tolstring(L, idx, vl);      /* idx is a copy: safe to convert */
  check_text(L, v, *vl, "field value");
  return v;
}

/* One field (name at -2, value at -1, both copies owned by the caller, of
** Lua types nt and vt). */
static void add_field(lua_State *L, obuf *o, int nt, int vt) {
  size_t nl, vl, i;
  const char *name, *value;
  if (nt != LUA_TSTRING)
    luaL_error(L, "header name must be a string");
  name = lua_tolstring(L, -2, &nl);
  for (i = 0; i < nl; i++)
    if (!tchar[(unsigned char)name[i]]) break;
  if (nl == 0 || i < nl)
    luaL_error(L, "header injection: invalid field name");
  if (vt == LUA_TTABLE) {      /* one line per element */
    lua_Integer k, n = (lua_Integer)lua_rawlen(L, -1);
    for (k = 1; k <= n; k++) {
      value = field_value(L, -1, lua_rawgeti(L, -1, k), &vl);
      ob_line(o, name, nl, value, vl);
      lua_pop(L, 1);
    }
    return;
  }
  value = field_value(L, -1, vt, &vl);
  ob_line(o, name, nl, value, vl);
}

/* Header fields of the table at index t: its array part {name, value,
** ...} in order when it has one, else its string keys (so a table from
** parse_* goes out once, in order).  The caller ends the head. */
static void add_fields(lua_State *L, obuf *o, int t) {
  lua_Integer i;
  int nt;
  luaL_checkstack(L, 8, NULL);
  /* up to the first nil (not lua_rawlen: its border search cost more
  ** than the one or two fields of a usual reply) */
  if ((nt = lua_rawgeti(L, t, 1)) != LUA_TNIL) {
    for (i = 1; nt != LUA_TNIL; i += 2) {
      int vt = lua_rawgeti(L, t, i + 1);
      if (vt == LUA_TNIL) luaL_error(L, "header array has a name without a value");
      add_field(L, o, nt, vt);
      lua_pop(L, 2);
      nt = lua_rawgeti(L, t, i + 2);
    }
    lua_pop(L, 1);
  } else {
    lua_pop(L, 1);
    lua_pushnil(L);
    while (lua_next(L, t)) {
      lua_pushvalue(L, -2);
      lua_pushvalue(L, -2);
      add_field(L, o, lua_type(L, -2), lua_type(L, -1));
      lua_pop(L, 3);
    }
  }
}

#define DATE_MAX 64

/* IMF-fixdate of t (RFC 9110 §5.6.7) into b[DATE_MAX]: its length, or 0 when
** t is out of range */
static int format_date(time_t t, char *b) {
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri",
                                  "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May",
                                     "Jun", "Jul", "Aug", "Sep", "Oct",
                                     "Nov", "Dec"};
  struct tm tm;
  if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0)
    return 0;
  return snprintf(b, DATE_MAX, "%s, %02d %s %04d %02d:%02d:%02d GMT",
                  days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
                  tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* "Date: <now>\r\n", formatted once per second (the loop thread's) */
static void add_date(obuf *o) {
  static time_t sec = -1;
  static char b[DATE_MAX];
  static int n;
  time_t t = time(NULL);
  if (t != sec) {
    n = format_date(t, b);
    sec = t;
  }
  ob_line(o, "Date", 4, b, (size_t)n);
}

/* "Content-Length: n\r\n" without snprintf */
static void add_length(lua_State *L, obuf *o, lua_Integer n) {
  char d[24];
  int k = (int)sizeof d;
  if (n < 0) luaL_error(L, "negative content length");
  do { d[--k] = (char)('0' + n % 10); n /= 10; } while (n);
  ob_line(o, "Content-Length", 14, d + k, sizeof d - (size_t)k);
}

/* "Server: <server>" from arg, when it is not nil or false */
static void add_server(lua_State *L, obuf *o, int arg) {
  size_t n;
  const char *v;
  if (!lua_toboolean(L, arg)) return;
  v = luaL_checklstring(L, arg, &n);
  check_text(L, v, n, "server name");
  ob_line(o, "Server", 6, v, n);
}

/*
** The server's own fields from arg (server), arg+1 (length), arg+2
** (connection), each left out when nil or false: "Server: <server>",
** "Content-Length: <length>" (an integer) or "Transfer-Encoding: chunked"
** (length "chunked"), "Connection: <connection>".  Given as values, not
** table slots, so a reply costs no Lua work to frame.
*/
static void add_own_fields(lua_State *L, obuf *o, int arg) {
  size_t n;
  const char *v;
  add_server(L, o, arg);
  if (lua_type(L, arg + 1) == LUA_TNUMBER) {
    int isint;
    lua_Integer len = lua_tointegerx(L, arg + 1, &isint);
    luaL_argcheck(L, isint, arg + 1, "length must be an integer");
    add_length(L, o, len);
  } else if (lua_toboolean(L, arg + 1)) {
    v = luaL_checklstring(L, arg + 1, &n);
    luaL_argcheck(L, n == 7 && memcmp(v, "chunked", 7) == 0, arg + 1,
                  "a length or \"chunked\"");
    ob_line(o, "Transfer-Encoding", 17, "chunked", 7);
  }
  if (lua_toboolean(L, arg + 2)) {
    v = luaL_checklstring(L, arg + 2, &n);
    check_text(L, v, n, "connection option");
    ob_line(o, "Connection", 10, v, n);
  }
}

/* The status line and fields of a head for arguments status, fields [,
** reason] at arg..arg+2 (fields: a table, or nil/false for none; the stack
** above them is the caller's to keep), built into o; HTTP/1.minor, the
** minor read at minor_arg (0: none, 1). */
static void start_head(lua_State *L, int arg, int minor_arg, obuf *o) {
  lua_Integer status = luaL_checkinteger(L, arg);
  const char *reason;
  size_t rl;
  lua_Integer minor = minor_arg ? luaL_optinteger(L, minor_arg, 1) : 1;
  char line[16] = "HTTP/1.x nnn ";
  luaL_argcheck(L, status >= 100 && status <= 999, arg, "status out of range");
  luaL_argcheck(L, minor == 0 || minor == 1, minor_arg, "must be 0 or 1");
  if (lua_toboolean(L, arg + 1)) luaL_checktype(L, arg + 1, LUA_TTABLE);
  if (lua_isnoneornil(L, arg + 2)) {
    reason = status_text(status);
    if (!reason) reason = "";
    rl = strlen(reason);
  } else {
    reason = luaL_checklstring(L, arg + 2, &rl);
    check_text(L, reason, rl, "reason phrase");
  }
  ob_init(L, o);
  line[7] = (char)('0' + minor);         /* no snprintf: it showed in profiles */
  line[9] = (char)('0' + status / 100);
  line[10] = (char)('0' + status / 10 % 10);
  line[11] = (char)('0' + status % 10);
  ob_add(o, line, 13);
  ob_add(o, reason, rl);
  ob_add(o, "\r\n", 2);
  if (lua_toboolean(L, arg + 1)) add_fields(L, o, arg + 1);
}

/* The head for arguments status, fields [, reason [, minor]] at arg..arg+3
** into o (start_head); then the server's own fields from arg+6..arg+8
** (add_own_fields) and a Date field when `date` is set. */
static void response_head(lua_State *L, int arg, int date, obuf *o) {
  start_head(L, arg, arg + 3, o);
  add_own_fields(L, o, arg + 6);
  if (date) add_date(o);
  ob_add(o, "\r\n", 2);
}

/*
** A reply with a string body, its framing decided here from the arguments
** at arg: status, fields, reason, body, server, keep, minor, head (the
** last three of the request: the connection stays open, HTTP/1.minor, it
** was a HEAD). 1xx, 204 and 304 get no Content-Length and no body (RFC
** 9110 §8.6; for a 304 the length of the representation is not known
** here); a HEAD gets the body's Content-Length but not the body (RFC 9110
** §9.3.2); any other reply both. "Connection: close" when the connection
** will not stay open, "keep-alive" to an HTTP/1.0 client whose does (RFC
** 9112 §9.3); Date last. The head goes into o; returns the body's bytes to
** send after it (*body).
*/
static size_t reply_head(lua_State *L, int arg, obuf *o, const char **body) {
  lua_Integer status = luaL_checkinteger(L, arg);
  size_t bl;
  const char *b = luaL_checklstring(L, arg + 3, &bl);
  int bodiless = status < 200 || status == 204 || status == 304;
  int keep = lua_toboolean(L, arg + 5);
  lua_Integer minor = luaL_optinteger(L, arg + 6, 1);
  start_head(L, arg, 0, o);
  add_server(L, o, arg + 4);
  if (!bodiless) add_length(L, o, (lua_Integer)bl);
  if (!keep) ob_line(o, "Connection", 10, "close", 5);
  else if (minor == 0) ob_line(o, "Connection", 10, "keep-alive", 10);
  add_date(o);
  ob_add(o, "\r\n", 2);
  *body = b;
  return bodiless || lua_toboolean(L, arg + 7) ? 0 : bl;
}

void parley_http_response_head(lua_State *L, int arg, int date,
                               void (*emit)(void *, const char *, size_t),
                               void *ud) {
  obuf o;
  response_head(L, arg, date, &o);
  emit(ud, o.b, o.n);
  lua_pop(L, 1);          /* ob_init's slot */
}

void parley_http_reply(lua_State *L, int arg,
                       void (*emit)(void *, const char *, size_t), void *ud) {
  obuf o;
  const char *body;
  size_t bl = reply_head(L, arg, &o, &body);
  emit(ud, o.b, o.n);
  if (bl > 0) emit(ud, body, bl);
  lua_pop(L, 1);          /* ob_init's slot */
}

/* pushes the head in o followed by bl bytes of body as one string */
static int push_message(lua_State *L, const obuf *o, const char *body,
                        size_t bl) {
  if (bl == 0) {
    lua_pushlstring(L, o->b, o->n);
  } else {
    luaL_Buffer lb;
    char *b = luaL_buffinitsize(L, &lb, o->n + bl);
    memcpy(b, o->b, o->n);
    memcpy(b + o->n, body, bl);
    luaL_pushresultsize(&lb, o->n + bl);
  }
  return 1;
}

static int l_reply(lua_State *L) {
  obuf o;
  const char *body;
  size_t bl;
  lua_settop(L, 8);
  bl = reply_head(L, 1, &o, &body);
  return push_message(L, &o, body, bl);
}

static int l_response_head(lua_State *L) {
  const char *body;
  size_t bl = 0;
  obuf o;
  body = luaL_optlstring(L, 5, NULL, &bl);
  lua_settop(L, 9);
  response_head(L, 1, lua_toboolean(L, 6), &o);
  return push_message(L, &o, body, bl);
}

static int l_request_head(lua_State *L) {
  size_t ml, tl, i;
  const char *method = luaL_checklstring(L, 1, &ml);
  const char *target = luaL_checklstring(L, 2, &tl);
  lua_Integer minor = luaL_optinteger(L, 4, 1);
  obuf o;
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_argcheck(L, minor == 0 || minor == 1, 4, "must be 0 or 1");
  for (i = 0; i < ml; i++)
    if (!tchar[(unsigned char)method[i]]) break;
  if (ml == 0 || i < ml) luaL_error(L, "header injection: invalid method");
  if (tl == 0 || scan_target(target, target + tl) != target + tl)
    luaL_error(L, "header injection: invalid request target");
  lua_settop(L, 4);
  ob_init(L, &o);
  ob_add(&o, method, ml);
  ob_add(&o, " ", 1);
  ob_add(&o, target, tl);
  ob_add(&o, minor ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n", 11);
  add_fields(L, &o, 3);
  ob_add(&o, "\r\n", 2);
  lua_pushlstring(L, o.b, o.n);
  return 1;
}

/* http.date([t]); upvalues: last second, its string */
static int l_date(lua_State *L) {
  lua_Integer t = lua_isnoneornil(L, 1) ? (lua_Integer)time(NULL)
                                        : luaL_checkinteger(L, 1);
  char b[DATE_MAX];
  int n;
  if (lua_tointeger(L, lua_upvalueindex(1)) == t &&
      lua_type(L, lua_upvalueindex(2)) == LUA_TSTRING) {
    lua_pushvalue(L, lua_upvalueindex(2));
    return 1;
  }
  n = format_date((time_t)t, b);
  if (n == 0) return luaL_argerror(L, 1, "time out of range");
  lua_pushlstring(L, b, (size_t)n);
  lua_pushinteger(L, t);
  lua_replace(L, lua_upvalueindex(1));
  lua_pushvalue(L, -1);
  lua_replace(L, lua_upvalueindex(2));
  return 1;
}

int parley_open_http(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"parse_request", l_parse_request},
    {"request_index", l_request_index},
    {"request_header", l_request_header},
    {"parse_response", l_parse_response},
    {"limits", l_limits},
    {"body_framing", l_body_framing},
    {"chunked_decoder", l_chunked_decoder},
    {"chunk", l_chunk},
    {"response_head", l_response_head},
    {"reply", l_reply},
    {"request_head", l_request_head},
    {"status_text", l_status_text},
    {NULL, NULL}
  };
  static const luaL_Reg methods[] = {
    {"feed", l_feed},
    {"trailers", l_trailers},
    {"done", l_decoder_done},
    {NULL, NULL}
  };
  static const luaL_Reg no_methods[] = {{NULL, NULL}};
  static const luaL_Reg limits_meta[] = {
    {"__tostring", l_limits_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", l_decoder_gc},
    {"__close", l_decoder_gc},
    {"__tostring", l_decoder_tostring},
    {NULL, NULL}
  };
  parley_newclass(L, DECODER, methods, meta);
  parley_newclass(L, LIMITS, no_methods, limits_meta);
  lua_newtable(L);
  luaL_setfuncs(L, funcs, 0);
  lua_pushinteger(L, -1);
  lua_pushnil(L);
  lua_pushcclosure(L, l_date, 2);
  lua_setfield(L, -2, "date");
  lua_setfield(L, -2, "http");
  return 0;
}
