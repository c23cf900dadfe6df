/*
** core.smtp: the SMTP codec.  Pure: bytes in, Lua values out (and back).
** RFC 5321 (commands 4.1, paths 4.1.2, literals 4.1.3, replies 4.2,
** transparency 4.5.2, limits 4.5.3.1), RFC 1870 SIZE, 6152 BODY, 3030
** BDAT, 4954 AUTH, 6531 SMTPUTF8, 3463/2034 enhanced status codes.
**
** Protocol failures return nil plus a short lowercase reason; where a
** server would answer, also the reply code and enhanced code to use:
**   nil, reason, code, enhanced     e.g. nil, "invalid SIZE value", 501, "5.5.4"
** Misuse (wrong argument types, bad reply() input) raises.
**
** smtp.parse_command(line [, opts])
**   line: one command line WITHOUT its CRLF (the caller frames; a CR or LF
**   inside is an error).  opts (all optional):
**     smtputf8   false  allow UTF-8 in addresses and parameter values
**                       (RFC 6531); without it any byte >= 0x80 fails
**                       (MAIL 550 5.6.7, RCPT 553 5.6.7, others 500 5.5.2)
**     max_line   512    line length counting the CRLF (4.5.3.1.4)
**     max_path   256    "<...>" incl. brackets and source route (at most 4096)
**     max_local  64     local part as written, quotes included
**     max_domain 255    domain or address literal
**     max_params 32     parameters on one MAIL/RCPT line (at most 64)
**   Returns the verb uppercased, then by verb:
**     MAIL, RCPT   verb, mailbox, params, info
**         mailbox  canonical "local@domain" with minimal quoting ("" for the
**                  null path <> of MAIL; "Postmaster" for RCPT <Postmaster>)
**         params   {KEY = "value" | true}, keys uppercased, always a table.
**                  MAIL checks SIZE (1*20DIGIT), BODY (7BIT / 8BITMIME /
**                  BINARYMIME, value uppercased), SMTPUTF8 (no value), AUTH
**                  (xtext or <>); any other keyword only needs the RFC 5321
**                  esmtp-keyword / esmtp-value syntax: whether it is known
**                  (else 555 5.5.4) is the server's decision.  A UTF-8 MAIL
**                  path needs the SMTPUTF8 parameter (550 5.6.7).
**         info     {local = local part unquoted, domain = domain or literal,
**                  quoted = bool, route = "@a,@b" | nil, relay = reason | nil,
**                  postmaster = true | nil, null = true | nil}
**     HELO, EHLO   verb, domain  (a Domain or an address literal such as
**                  "[127.0.0.1]" / "[IPv6:::1]", validated)
**     AUTH         verb, MECHANISM (uppercased), initial_response | nil
**     BDAT         verb, size (integer), last (boolean)
**     DATA RSET QUIT STARTTLS   verb   (an argument is an error)
**     VRFY EXPN    verb, argument (required)
**     anything else (HELP, NOOP, unknown verbs)   verb, argument | nil
**   Trailing spaces are ignored.  "MAIL FROM: <a@b>" (space after the
**   colon) is accepted leniently: many clients send it and it is not
**   ambiguous; a path without angle brackets is refused.
**
** smtp.parse_path(path [, opts]) -> mailbox, info | nil, reason, code, enh
**   "<...>" (also "<>") or a bare mailbox; opts as for parse_command.
**
** smtp.relay_vector(path) -> reason | nil
**   For "<@local:a@ext>" "source route", for "<\"a@ext\"@local>" "at-sign in
**   local part", for "<a%ext@local>" "percent hack in local part", for
**   "<ext!a@local>" "bang path in local part".  Anything that does not parse
**   as a path gives "unparseable path" (fail closed).  UTF-8 is allowed.
**   A server that delivers only for local domains must refuse a RCPT whose
**   relay_vector is not nil (or whose info.relay is set).
**
** smtp.parse_reply_line(line [, max_line=512])
**   -> code, more, text, enhanced | nil, reason
**   code a number (RFC 5321 4.2: first digit 2-5, second 0-5), more true
**   for "250-", text after the code and enhanced code, enhanced "2.1.0" or
**   nil (only when its class matches the code's first digit).
**
** smtp.reply(code, enhanced, text_or_lines) -> bytes
**   enhanced nil or a code whose class matches; text a string or an array
**   of strings (one line each); "code-" on every line but the last.
**   Raises on an invalid code or enhanced code, on a control character
**   (except HT) in a text, and on a line over 512 bytes.
**
** smtp.enhanced_valid(s) -> boolean   (RFC 3463: class.subject.detail)
**
** smtp.data_decoder([opts]) -> d     opts.bare = "reject" | "normalize",
**   opts.max_line = 1000 (text line incl. CRLF, 4.5.3.1.6).
**   d:feed(bytes) -> out, done, used   out: message bytes this feed made
**     (un-stuffed, CRLF endings); done once CRLF.CRLF was seen; used: bytes
**     of input consumed (the rest is the next pipelined command).
**     Only CRLF "." CRLF ends the data (DATA's start counts as after CRLF);
**     a bare CR or LF is written out as CRLF, recorded as an error in
**     "reject" mode, and never ends the message (SMTP smuggling).
**   d:error() -> nil | "bare lf" | "bare cr" | "line too long" (first one)
**   d:size() -> message bytes so far;  d:done() -> boolean
**
** smtp.data_encoder([{keep_cr = bool}]) -> e
**   e:feed(bytes) -> bytes   CR, LF and CRLF become CRLF (also a CR and an
**     LF split across feeds), a "." starting a line is doubled.  With
**     keep_cr a CR alone is data and only a bare LF becomes CRLF (POP3
**     sends a Maildir file so: RFC 1939 octet counts)
**   e:finish() -> bytes      CRLF if the last line is unterminated, then
**     ".\r\n" (empty data gives just ".\r\n").  Feeding after finish raises.
*/
#include <string.h>

#include "parley.h"
#include "smtp.h"

/* ---------------------------------------------------------------------
** errors
** ------------------------------------------------------------------- */

#define ERR(name, reason, code, enh) \
  static const smtp_error name = {reason, code, enh}

ERR(E_TOOLONG, "line too long", 500, "5.5.2");
ERR(E_NUL, "nul byte in command", 500, "5.5.2");
ERR(E_CR, "bare cr in command", 500, "5.5.2");
ERR(E_LF, "bare lf in command", 500, "5.5.2");
ERR(E_CTL, "control character in command", 500, "5.5.2");
ERR(E_UTF8, "invalid utf-8", 500, "5.5.2");
ERR(E_8BIT, "8-bit byte in command", 500, "5.5.2");
ERR(E_8BIT_MAIL, "non-ascii address without smtputf8", 550, "5.6.7");
ERR(E_8BIT_RCPT, "non-ascii address without smtputf8", 553, "5.6.7");
ERR(E_UTF8_NOPARAM, "non-ascii address needs the SMTPUTF8 parameter", 550,
    "5.6.7");
ERR(E_SYNTAX, "syntax error", 500, "5.5.2");
ERR(E_ARG, "unexpected argument", 501, "5.5.4");
ERR(E_NOARG, "missing argument", 501, "5.5.4");
ERR(E_NODOMAIN, "missing domain", 501, "5.5.4");
ERR(E_DOMAIN, "invalid domain", 501, "5.5.4");
ERR(E_LITERAL, "invalid address literal", 501, "5.5.4");
ERR(E_DOMAINLEN, "domain too long", 501, "5.5.4");
ERR(E_FROM, "syntax error: expected FROM:<path>", 501, "5.5.4");
ERR(E_TO, "syntax error: expected TO:<path>", 501, "5.5.4");
ERR(E_PARAMS, "syntax error in parameters", 501, "5.5.4");
ERR(E_PARAMEMPTY, "empty parameter value", 501, "5.5.4");
ERR(E_PARAMDUP, "duplicate parameter", 501, "5.5.4");
ERR(E_PARAMMANY, "too many parameters", 501, "5.5.4");
ERR(E_SIZE, "invalid SIZE value", 501, "5.5.4");
ERR(E_BODY, "invalid BODY value", 501, "5.5.4");
ERR(E_SMTPUTF8, "SMTPUTF8 takes no value", 501, "5.5.4");
ERR(E_AUTHP, "invalid AUTH value", 501, "5.5.4");
ERR(E_BDAT, "invalid chunk size", 501, "5.5.4");
ERR(E_MECH, "invalid mechanism", 501, "5.5.4");
ERR(E_IR, "invalid initial response", 501, "5.5.2");

/* path errors: one row for MAIL (5.1.7 sender), one for RCPT (5.1.3) */
#define PATH_ERRORS(X, e) \
  X("", e) \
  X("path must be in angle brackets", e) \
  X("missing closing angle bracket", e) \
  X("null path not allowed", e) \
  X("invalid source route", e) \
  X("invalid local part", e) \
  X("unbalanced quotes in local part", e) \
  X("missing domain", e) \
  X("invalid domain", e) \
  X("invalid address literal", e) \
  X("path too long", e) \
  X("local part too long", e) \
  X("domain too long", e) \
  X("garbage after path", e)
enum {
  P_OK, P_BRACKET, P_UNBALANCED, P_EMPTY, P_ROUTE, P_LOCAL, P_QUOTE, P_AT,
  P_DOMAIN, P_LITERAL, P_PATHLEN, P_LOCALLEN, P_DOMAINLEN, P_TRAILING,
  P_NPATHERR
};
#define PATH_ERROR(reason, e) {reason, 501, e},
static const smtp_error path_errors[2][P_NPATHERR] = {
  {PATH_ERRORS(PATH_ERROR, "5.1.7")},
  {PATH_ERRORS(PATH_ERROR, "5.1.3")},
};

/* ---------------------------------------------------------------------
** character classes
** ------------------------------------------------------------------- */

static int is_alpha(int c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_alnum(int c) { return is_alpha(c) || is_digit(c); }
static int is_hex(int c) {
  return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}
static int is_high(int c) { return c >= 0x80; }
static int to_upper(int c) { return (c >= 'a' && c <= 'z') ? c - 32 : c; }

/* RFC 5322 3.2.3 atext (ASCII part) */
static int is_atext(int c) {
  if (is_alnum(c)) return 1;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '/': case '=': case '?': case '^': case '_':
    case '`': case '{': case '|': case '}': case '~':
      return 1;
    default:
      return 0;
  }
}

/* RFC 5321 qtextSMTP: %d32-33 / %d35-91 / %d93-126 */
static int is_qtext(int c) {
  return c >= 32 && c <= 126 && c != '"' && c != '\\';
}

/* RFC 5321 esmtp-value: %d33-60 / %d62-126 */
static int is_esmtp_value(int c) { return c >= 33 && c <= 126 && c != '='; }

/* RFC 4954 xchar: %x21-2A / %x2C-3C / %x3E-7E */
static int is_xchar(int c) {
  return c >= 0x21 && c <= 0x7e && c != '+' && c != '=';
}

static int casecmp(const char *a, const char *b, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (to_upper((unsigned char)a[i]) != to_upper((unsigned char)b[i]))
      return 1;
  return 0;
}

/* span [p, p + n) equals the upper-case literal `lit`, ignoring case */
static int span_is(const char *p, size_t n, const char *lit) {
  size_t m = strlen(lit);
  return n == m && casecmp(p, lit, n) == 0;
}

/*
** Length of the well-formed UTF-8 sequence at p (2 to 4), or 0: no
** overlongs, surrogates, code points past U+10FFFF, nor C1 controls
** (U+0080..U+009F are controls too: they are refused like C0).
*/
static size_t utf8_seq(const unsigned char *p, const unsigned char *e) {
  unsigned c = p[0];
  if (c < 0xc2 || c > 0xf4) return 0;
  if (c < 0xe0) {
    if (e - p < 2 || (p[1] & 0xc0) != 0x80) return 0;
    if (c == 0xc2 && p[1] < 0xa0) return 0;
    return 2;
  }
  if (c < 0xf0) {
    if (e - p < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
      return 0;
    if (c == 0xe0 && p[1] < 0xa0) return 0;
    if (c == 0xed && p[1] >= 0xa0) return 0;
    return 3;
  }
  if (e - p < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
      (p[3] & 0xc0) != 0x80)
    return 0;
  if (c == 0xf0 && p[1] < 0x90) return 0;
  if (c == 0xf4 && p[1] >= 0x90) return 0;
  return 4;
}

/*
** Every byte of a command: no C0 control, no DEL (RFC 5321 4.1.2 and 2.3.8:
** CR and LF only as the line ending, which the caller removed).  8-bit
** bytes must be well-formed UTF-8 when `utf8`, else they set *has8.
*/
static const smtp_error *scan_bytes(const char *s, size_t n, int utf8,
                                    int *has8) {
  const unsigned char *p = (const unsigned char *)s, *e = p + n;
  *has8 = 0;
  while (p < e) {
    unsigned c = *p;
    if (c >= 0x20 && c < 0x7f) {
      p++;
    } else if (c >= 0x80) {
      size_t k = utf8_seq(p, e);
      if (k == 0) {
        if (utf8) return &E_UTF8;
        k = 1;
      }
      *has8 = 1;
      p += k;
    } else if (c == 0) {
      return &E_NUL;
    } else if (c == '\r') {
      return &E_CR;
    } else if (c == '\n') {
      return &E_LF;
    } else {
      return &E_CTL;
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------------
** domains and address literals (RFC 5321 4.1.2, 4.1.3)
** ------------------------------------------------------------------- */

/*
** Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str],
** at most 63 octets; with `utf8` a label may hold UTF-8 (RFC 6531 U-label,
** not checked against IDNA).  Returns the end, or NULL.
*/
static const char *parse_domain(const char *p, const char *e, int utf8) {
  for (;;) {
    const char *lab = p;
    unsigned c;
    if (p == e) return NULL;
    c = (unsigned char)*p;
    if (!(is_alnum(c) || (utf8 && is_high(c)))) return NULL;
    p++;
    while (p < e) {
      c = (unsigned char)*p;
      if (!(is_alnum(c) || c == '-' || (utf8 && is_high(c)))) break;
      p++;
    }
    if (p[-1] == '-' || p - lab > 63) return NULL;
    if (p < e && *p == '.') {
      p++;
      continue;
    }
    return p;
  }
}

/* Snum 3("." Snum), Snum = 1*3DIGIT in 0..255; exactly [p, e) */
static int ipv4_valid(const char *p, const char *e) {
  int i;
  for (i = 0; i < 4; i++) {
    int v = 0, k = 0;
    if (i > 0) {
      if (p == e || *p != '.') return 0;
      p++;
    }
    while (p < e && is_digit((unsigned char)*p) && k < 3) {
      v = v * 10 + (*p - '0');
      p++;
      k++;
    }
    if (k == 0 || v > 255) return 0;
  }
  return p == e;
}

/*
** IPv6-addr exactly as RFC 5321 4.1.3 writes it: 8 groups, or "::" with
** at most 6 others; with a trailing IPv4 literal, 6 groups, or "::" with
** at most 4 others.  "::" stands for at least 2 groups.
*/
static int ipv6_valid(const char *p, const char *e) {
  int groups = 0, dc = 0, v4 = 0;
  if (e - p >= 2 && p[0] == ':' && p[1] == ':') {
    dc = 1;
    p += 2;
  }
  while (p < e) {
    const char *t = p, *q = p;
    int dot = 0;
    while (q < e && *q != ':') {
      if (*q == '.') dot = 1;
      q++;
    }
    if (dot) {
      if (q != e || !ipv4_valid(t, q)) return 0;
      v4 = 1;
      p = q;
      break;
    }
    if (q == t || q - t > 4) return 0;
    for (; t < q; t++)
      if (!is_hex((unsigned char)*t)) return 0;
    groups++;
    p = q;
    if (p == e) break;
    if (e - p >= 2 && p[1] == ':') {
      if (dc) return 0;
      dc = 1;
      p += 2;
    } else {
      p++;
      if (p == e) return 0; /* trailing single colon */
    }
  }
  if (groups > 8) return 0;
  if (v4) return dc ? groups <= 4 : groups == 6;
  return dc ? groups <= 6 : groups == 8;
}

/* "[" (IPv4 / "IPv6:" IPv6) "]" at p; returns the end, or NULL.  A
** General-address-literal (tag ":" dcontent) has no registered tag and
** no route: it is refused. */
static const char *parse_literal(const char *p, const char *e) {
  const char *q = memchr(p, ']', e - p), *in = p + 1;
  if (q == NULL) return NULL;
  if (q - in >= 5 && casecmp(in, "IPv6:", 5) == 0) {
    if (!ipv6_valid(in + 5, q)) return NULL;
  } else if (!ipv4_valid(in, q)) {
    return NULL;
  }
  return q + 1;
}

/* ---------------------------------------------------------------------
** paths (RFC 5321 4.1.2; RFC 6531 3.3)
** ------------------------------------------------------------------- */

/* Dot-string = Atom *("." Atom), UTF-8 counting as atext when `utf8` */
static const char *parse_dotstring(const char *p, const char *e, int utf8) {
  for (;;) {
    const char *a = p;
    while (p < e && (is_atext((unsigned char)*p) ||
                     (utf8 && is_high((unsigned char)*p))))
      p++;
    if (p == a) return NULL;
    if (p < e && *p == '.') {
      p++;
      continue;
    }
    return p;
  }
}

static int dotstring_valid(const char *p, size_t n) {
  const char *e = p + n;
  return n > 0 && parse_dotstring(p, e, 1) == e;
}

/* Quoted-string at p (on the DQUOTE); returns the end or NULL.  Inside:
** qtextSMTP (plus UTF-8 when `utf8`) or quoted-pairSMTP "\" %d32-126. */
static const char *parse_quoted(const char *p, const char *e, int utf8) {
  p++;
  while (p < e) {
    unsigned c = (unsigned char)*p;
    if (c == '"') return p + 1;
    if (c == '\\') {
      if (e - p < 2 || (unsigned char)p[1] < 32 || (unsigned char)p[1] > 126)
        return NULL;
      p += 2;
    } else if (is_qtext(c) || (utf8 && is_high(c))) {
      p++;
    } else {
      return NULL;
    }
  }
  return NULL;
}

static int has_high(const char *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if ((unsigned char)p[i] >= 0x80) return 1;
  return 0;
}

/* returns a P_* code; on P_OK fills `path` and *endp */
static int path_at(const char *s, const char *e, const smtp_limits *lim,
                   int flags, smtp_path *path, const char **endp) {
  const char *p = s, *q;
  int bracket = 0, utf8 = lim->utf8;
  memset(path, 0, sizeof *path);
  if (p < e && *p == '<') {
    bracket = 1;
    p++;
    if (p < e && *p == '>') {
      if (!(flags & SMTP_PATH_NULL)) return P_EMPTY;
      path->null = 1;
      path->local.p = path->domain.p = p;
      path->len = 2;
      *endp = p + 1;
      return P_OK;
    }
    /* A-d-l ":" -- the source route: MUST be accepted, SHOULD be ignored
    ** (4.1.2, Appendix C); it is reported so a server can refuse it. */
    if (p < e && *p == '@') {
      const char *r = p;
      for (;;) {
        if (p == e || *p != '@') return P_ROUTE;
        p = parse_domain(p + 1, e, utf8);
        if (p == NULL) return P_ROUTE;
        if (p < e && *p == ',') {
          p++;
          continue;
        }
        if (p < e && *p == ':') break;
        return P_ROUTE;
      }
      path->route.p = r;
      path->route.n = (size_t)(p - r);
      p++;
    }
  }
  path->local.p = p;
  if (p < e && *p == '"') {
    q = parse_quoted(p, e, utf8);
    if (q == NULL) return P_QUOTE;
    path->quoted = 1;
  } else {
    q = parse_dotstring(p, e, utf8);
    if (q == NULL) return P_LOCAL;
  }
  path->local.n = (size_t)(q - p);
  p = q;
  if (bracket && (flags & SMTP_PATH_POSTMASTER) && !path->quoted &&
      path->route.n == 0 && p < e && *p == '>' &&
      span_is(path->local.p, path->local.n, "POSTMASTER")) {
    /* RCPT TO:<Postmaster> (4.1.1.3) */
    path->postmaster = 1;
    path->domain.p = p;
  } else {
    if (p == e || *p != '@') return (p == e || *p == '>') ? P_AT : P_LOCAL;
    p++;
    path->domain.p = p;
    if (p == e || *p == '>') return P_AT;
    if (*p == '[') q = parse_literal(p, e);
    else q = parse_domain(p, e, utf8);
    if (q == NULL) return (p < e && *p == '[') ? P_LITERAL : P_DOMAIN;
    path->domain.n = (size_t)(q - p);
    p = q;
  }
  if (bracket) {
    if (p == e) return P_UNBALANCED;
    if (*p != '>') return path->domain.n ? P_DOMAIN : P_LOCAL;
    p++;
  }
  path->len = (size_t)(p - s);
  if (path->len > lim->max_path || path->len > SMTP_PATH_HARDMAX)
    return P_PATHLEN;
  if (path->local.n > lim->max_local) return P_LOCALLEN;
  if (path->domain.n > lim->max_domain) return P_DOMAINLEN;
  path->nonascii = has_high(path->local.p, path->local.n) ||
                   has_high(path->domain.p, path->domain.n) ||
                   (path->route.n && has_high(path->route.p, path->route.n));
  *endp = p;
  return P_OK;
}

const smtp_error *smtp_parse_path(const char *s, size_t n,
                                  const smtp_limits *lim, int flags,
                                  smtp_path *path) {
  const char *end = NULL;
  int has8, rc;
  const smtp_error *err = scan_bytes(s, n, lim->utf8, &has8);
  if (err) return err;
  if (has8 && !lim->utf8) return &E_8BIT_RCPT;
  rc = path_at(s, s + n, lim, flags, path, &end);
  if (rc == P_OK && end != s + n) rc = P_TRAILING;
  if (rc != P_OK) return &path_errors[1][rc];
  return NULL;
}

size_t smtp_local_decode(const smtp_path *path, char *out) {
  const char *p = path->local.p, *e = p + path->local.n;
  char *o = out;
  if (!path->quoted) {
    memcpy(out, p, path->local.n);
    return path->local.n;
  }
  for (p++, e--; p < e; p++) {
    if (*p == '\\') p++;
    *o++ = *p;
  }
  return (size_t)(o - out);
}

size_t smtp_mailbox_canon(const smtp_path *path, const char *decoded,
                          size_t dlen, char *out) {
  char *o = out;
  size_t i;
  if (path->null) return 0;
  if (dotstring_valid(decoded, dlen) || path->postmaster) {
    memcpy(o, decoded, dlen);
    o += dlen;
  } else {
    /* the minimal quoting: only '"' and '\' need a backslash */
    *o++ = '"';
    for (i = 0; i < dlen; i++) {
      if (decoded[i] == '"' || decoded[i] == '\\') *o++ = '\\';
      *o++ = decoded[i];
    }
    *o++ = '"';
  }
  if (!path->postmaster) {
    *o++ = '@';
    memcpy(o, path->domain.p, path->domain.n);
    o += path->domain.n;
  }
  return (size_t)(o - out);
}

/*
** The forms by which a server that accepts mail only for its own domains
** could still be made to relay: a source route (RFC 5321 Appendix C), and
** local parts that older MTAs re-route: "a@ext"@local, a%ext@local (the
** "percent hack", Appendix C) and ext!a@local (UUCP bang paths).  Quoting
** never creates one of these characters, so the raw local part suffices.
*/
const char *smtp_relay_vector(const smtp_path *path) {
  const char *p = path->local.p;
  size_t n = path->local.n;
  if (path->route.n) return "source route";
  if (n && memchr(p, '@', n)) return "at-sign in local part";
  if (n && memchr(p, '%', n)) return "percent hack in local part";
  if (n && memchr(p, '!', n)) return "bang path in local part";
  return NULL;
}

/* ---------------------------------------------------------------------
** commands (RFC 5321 4.1)
** ------------------------------------------------------------------- */

void smtp_limits_default(smtp_limits *lim) {
  lim->max_line = 512;
  lim->max_path = 256;
  lim->max_local = 64;
  lim->max_domain = 255;
  lim->max_params = 32;
  lim->utf8 = 0;
}

static const struct {
  const char *name;
  int kind;
} verbs[] = {
  {"HELO", SMTP_HELO}, {"EHLO", SMTP_EHLO}, {"MAIL", SMTP_MAIL},
  {"RCPT", SMTP_RCPT}, {"DATA", SMTP_DATA}, {"BDAT", SMTP_BDAT},
  {"AUTH", SMTP_AUTH}, {"RSET", SMTP_RSET}, {"QUIT", SMTP_QUIT},
  {"NOOP", SMTP_NOOP}, {"HELP", SMTP_HELP}, {"VRFY", SMTP_VRFY},
  {"EXPN", SMTP_EXPN}, {"STARTTLS", SMTP_STARTTLS},
};

static const char *skip_sp(const char *p, const char *e) {
  while (p < e && *p == ' ') p++;
  return p;
}

/* RFC 4954 initial-response = base64 / "=" */
static int base64_valid(const char *p, size_t n) {
  size_t i, pad = 0;
  if (n == 1 && p[0] == '=') return 1;
  if (n == 0 || n % 4 != 0) return 0;
  if (p[n - 1] == '=') pad = (p[n - 2] == '=') ? 2 : 1;
  for (i = 0; i < n - pad; i++) {
    int c = (unsigned char)p[i];
    if (!(is_alnum(c) || c == '+' || c == '/')) return 0;
  }
  return 1;
}

/* RFC 4954 5: AUTH=<> or AUTH=xtext (xchar / "+" 2HEXDIG) */
static int xtext_valid(const char *p, size_t n) {
  size_t i;
  if (n == 2 && p[0] == '<' && p[1] == '>') return 1;
  for (i = 0; i < n; i++) {
    int c = (unsigned char)p[i];
    if (c == '+') {
      if (n - i < 3 || !is_hex((unsigned char)p[i + 1]) ||
          !is_hex((unsigned char)p[i + 2]))
        return 0;
      i += 2;
    } else if (!is_xchar(c)) {
      return 0;
    }
  }
  return 1;
}

/* Mail-parameters / Rcpt-parameters (4.1.2): esmtp-param *(SP esmtp-param) */
static const smtp_error *parse_params(const char *p, const char *e,
                                      const smtp_limits *lim,
                                      smtp_command *cmd) {
  int utf8 = lim->utf8;
  cmd->nparams = 0;
  while (p < e) {
    smtp_param *pm;
    const char *k = p;
    int i;
    if (!is_alnum((unsigned char)*p)) return &E_PARAMS;
    while (p < e && (is_alnum((unsigned char)*p) || *p == '-')) p++;
    if (cmd->nparams >= lim->max_params || cmd->nparams >= SMTP_MAX_PARAMS)
      return &E_PARAMMANY;
    pm = &cmd->params[cmd->nparams];
    pm->key.p = k;
    pm->key.n = (size_t)(p - k);
    pm->value.p = NULL;
    pm->value.n = 0;
    if (p < e && *p == '=') {
      const char *v = ++p;
      while (p < e && (is_esmtp_value((unsigned char)*p) ||
                       (utf8 && is_high((unsigned char)*p))))
        p++;
      if (p == v) return (p == e || *p == ' ') ? &E_PARAMEMPTY : &E_PARAMS;
      pm->value.p = v;
      pm->value.n = (size_t)(p - v);
    }
    if (p < e && *p != ' ') return &E_PARAMS;
    for (i = 0; i < cmd->nparams; i++) {
      const smtp_span *o = &cmd->params[i].key;
      if (o->n == pm->key.n && casecmp(o->p, pm->key.p, o->n) == 0)
        return &E_PARAMDUP;
    }
    cmd->nparams++;
    p = skip_sp(p, e);
  }
  return NULL;
}

/* the MAIL parameters whose values this codec knows how to check */
static const smtp_error *check_mail_params(const smtp_command *cmd,
                                           int *smtputf8) {
  int i;
  *smtputf8 = 0;
  for (i = 0; i < cmd->nparams; i++) {
    const smtp_param *pm = &cmd->params[i];
    const char *v = pm->value.p;
    size_t n = pm->value.n, j;
    if (span_is(pm->key.p, pm->key.n, "SIZE")) {
      /* RFC 1870: size-value ::= 1*20DIGIT */
      if (v == NULL || n > 20) return &E_SIZE;
      for (j = 0; j < n; j++)
        if (!is_digit((unsigned char)v[j])) return &E_SIZE;
    } else if (span_is(pm->key.p, pm->key.n, "BODY")) {
      /* RFC 6152, RFC 3030: 7BIT / 8BITMIME / BINARYMIME */
      if (v == NULL || !(span_is(v, n, "7BIT") || span_is(v, n, "8BITMIME") ||
                         span_is(v, n, "BINARYMIME")))
        return &E_BODY;
    } else if (span_is(pm->key.p, pm->key.n, "SMTPUTF8")) {
      /* RFC 6531 3.4: "it MUST not accept a value" */
      if (v != NULL) return &E_SMTPUTF8;
      *smtputf8 = 1;
    } else if (span_is(pm->key.p, pm->key.n, "AUTH")) {
      if (v == NULL || !xtext_valid(v, n)) return &E_AUTHP;
    }
  }
  return NULL;
}

static const smtp_error *parse_mail_rcpt(const char *p, const char *e,
                                         const smtp_limits *lim,
                                         smtp_command *cmd) {
  int mail = cmd->kind == SMTP_MAIL, rc, smtputf8;
  const char *word = mail ? "FROM:" : "TO:";
  size_t wl = mail ? 5 : 3;
  const smtp_error *err;
  const char *end = NULL;
  if ((size_t)(e - p) < wl || casecmp(p, word, wl) != 0)
    return mail ? &E_FROM : &E_TO;
  /* lenient: "MAIL FROM: <a@b>" -- not in the ABNF but widely sent */
  p = skip_sp(p + wl, e);
  if (p == e || *p != '<')
    return &path_errors[!mail][p == e ? P_AT : P_BRACKET];
  rc = path_at(p, e, lim, mail ? SMTP_PATH_NULL : SMTP_PATH_POSTMASTER,
               &cmd->path, &end);
  if (rc != P_OK) return &path_errors[!mail][rc];
  if (end < e && *end != ' ') return &path_errors[!mail][P_TRAILING];
  err = parse_params(skip_sp(end, e), e, lim, cmd);
  if (err) return err;
  if (mail) {
    err = check_mail_params(cmd, &smtputf8);
    if (err) return err;
    /* RFC 6531 3.4: a UTF-8 envelope needs the SMTPUTF8 parameter */
    if (cmd->path.nonascii && !smtputf8) return &E_UTF8_NOPARAM;
  }
  return NULL;
}

const smtp_error *smtp_parse_command(const char *s, size_t n,
                                     const smtp_limits *lim,
                                     smtp_command *cmd) {
  const char *p = s, *e = s + n, *q;
  const smtp_error *err;
  size_t i;
  int has8;
  memset(cmd, 0, offsetof(smtp_command, params));
  cmd->nparams = 0;
  cmd->size = 0;
  cmd->last = 0;
  if (n > lim->max_line || lim->max_line - n < 2) return &E_TOOLONG;
  err = scan_bytes(s, n, lim->utf8, &has8);
  if (err) return err;
  while (p < e && is_alnum((unsigned char)*p)) p++;
  if (p == s || p - s > SMTP_MAX_VERB || (p < e && *p != ' '))
    return &E_SYNTAX;
  cmd->verb_len = (size_t)(p - s);
  for (i = 0; i < cmd->verb_len; i++)
    cmd->verb[i] = (char)to_upper((unsigned char)s[i]);
  cmd->verb[i] = '\0';
  cmd->kind = SMTP_OTHER;
  for (i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
    if (strcmp(cmd->verb, verbs[i].name) == 0) {
      cmd->kind = verbs[i].kind;
      break;
    }
  }
  if (has8 && !lim->utf8) {
    if (cmd->kind == SMTP_MAIL) return &E_8BIT_MAIL;
    if (cmd->kind == SMTP_RCPT) return &E_8BIT_RCPT;
    return &E_8BIT;
  }
  while (e > p && e[-1] == ' ') e--; /* trailing spaces are ignored */
  p = skip_sp(p, e);
  cmd->arg.p = p;
  cmd->arg.n = (size_t)(e - p);
  switch (cmd->kind) {
    case SMTP_HELO:
    case SMTP_EHLO:
      /* ehlo = "EHLO" SP ( Domain / address-literal ); HELO takes a
      ** literal too, as clients without a name send one */
      if (p == e) return &E_NODOMAIN;
      if (*p == '[') {
        q = parse_literal(p, e);
        if (q != e) return &E_LITERAL;
      } else {
        q = parse_domain(p, e, lim->utf8);
        if (q != e) return &E_DOMAIN;
      }
      if (cmd->arg.n > lim->max_domain) return &E_DOMAINLEN;
      return NULL;
    case SMTP_MAIL:
    case SMTP_RCPT:
      if (p == s + cmd->verb_len) return cmd->kind == SMTP_MAIL ? &E_FROM
                                                                 : &E_TO;
      return parse_mail_rcpt(p, e, lim, cmd);
    case SMTP_DATA:
    case SMTP_RSET:
    case SMTP_QUIT:
    case SMTP_STARTTLS:
      return p == e ? NULL : &E_ARG;
    case SMTP_BDAT: {
      /* RFC 3030: "BDAT" SP chunk-size [ SP end-marker ] */
      uint64_t v = 0;
      q = p;
      while (q < e && is_digit((unsigned char)*q)) {
        uint64_t digit = (uint64_t)(*q - '0');
        /* at most 2^63 - 1: it becomes a Lua integer */
        if (v > (UINT64_C(0x7fffffffffffffff) - digit) / 10) return &E_BDAT;
        v = v * 10 + digit;
        q++;
      }
      if (q == p || (q < e && *q != ' ')) return &E_BDAT;
      cmd->size = v;
      q = skip_sp(q, e);
      if (q < e) {
        if (!span_is(q, (size_t)(e - q), "LAST")) return &E_ARG;
        cmd->last = 1;
      }
      return NULL;
    }
    case SMTP_AUTH: {
      /* RFC 4954: "AUTH" SP sasl-mech [SP initial-response]; RFC 4422:
      ** sasl-mech = 1*20 (A-Z / DIGIT / "-" / "_"), case-insensitive */
      q = p;
      while (q < e && *q != ' ') {
        int c = (unsigned char)*q;
        if (!(is_alnum(c) || c == '-' || c == '_')) return &E_MECH;
        q++;
      }
      if (q == p) return &E_NOARG;
      if (q - p > 20) return &E_MECH;
      cmd->arg.n = (size_t)(q - p);
      q = skip_sp(q, e);
      if (q < e) {
        if (memchr(q, ' ', (size_t)(e - q)) || !base64_valid(q, (size_t)(e - q)))
          return &E_IR;
        cmd->arg2.p = q;
        cmd->arg2.n = (size_t)(e - q);
      }
      return NULL;
    }
    case SMTP_VRFY:
    case SMTP_EXPN:
      return p == e ? &E_NOARG : NULL;
    default:
      return NULL;
  }
}

/* ---------------------------------------------------------------------
** enhanced status codes (RFC 3463 2, RFC 2034 4)
** ------------------------------------------------------------------- */

/* 1*3digit without leading zeros; returns the digits used, 0 if none */
static size_t subcode(const char *p, const char *e) {
  size_t k = 0;
  while (p + k < e && is_digit((unsigned char)p[k])) {
    if (++k > 3) return 0;
  }
  if (k > 1 && p[0] == '0') return 0;
  return k;
}

/* length of a status-code at the start of [p, e), or 0 */
static size_t enhanced_at(const char *p, const char *e) {
  const char *q = p;
  size_t k;
  if (q == e || !(*q == '2' || *q == '4' || *q == '5')) return 0;
  q++;
  if (q == e || *q != '.') return 0;
  q++;
  if ((k = subcode(q, e)) == 0) return 0;
  q += k;
  if (q == e || *q != '.') return 0;
  q++;
  if ((k = subcode(q, e)) == 0) return 0;
  q += k;
  return (size_t)(q - p);
}

int smtp_enhanced_valid(const char *s, size_t n) {
  return n > 0 && enhanced_at(s, s + n) == n;
}

/* ---------------------------------------------------------------------
** replies (RFC 5321 4.2)
** ------------------------------------------------------------------- */

static int reply_code_valid(const char *p) {
  /* Reply-code = %x32-35 %x30-35 %x30-39 */
  return p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '5' &&
         is_digit((unsigned char)p[2]);
}

const char *smtp_parse_reply_line(const char *s, size_t n, size_t max_line,
                                  smtp_reply *r) {
  const char *p, *e = s + n;
  size_t k;
  memset(r, 0, sizeof *r);
  if (n > max_line || max_line - n < 2) return "reply line too long";
  if (n < 3 || !reply_code_valid(s)) return "invalid reply code";
  if (n > 3 && s[3] != ' ' && s[3] != '-') return "invalid reply line";
  r->code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
  r->more = n > 3 && s[3] == '-';
  p = n > 3 ? s + 4 : e;
  /* textstring = 1*(%d09 / %d32-126); UTF-8 is let through (RFC 6531) */
  for (k = (size_t)(p - s); k < n; k++) {
    unsigned c = (unsigned char)s[k];
    if ((c < 32 && c != 9) || c == 127) {
      if (c == 0) return "nul byte in reply";
      if (c == '\r') return "bare cr in reply";
      if (c == '\n') return "bare lf in reply";
      return "control character in reply";
    }
  }
  /* RFC 2034 4: the enhanced code leads the text, its class agrees */
  if (p < e && *p == s[0] && (k = enhanced_at(p, e)) > 0 &&
      (p + k == e || p[k] == ' ')) {
    r->enhanced.p = p;
    r->enhanced.n = k;
    p += k;
    while (p < e && *p == ' ') p++;
  }
  r->text.p = p;
  r->text.n = (size_t)(e - p);
  return NULL;
}

/* ---------------------------------------------------------------------
** DATA, receiving side (RFC 5321 4.5.2, 2.3.8)
**
** Only CRLF "." CRLF ends the message; the start of the data counts as
** following a CRLF.  A bare CR or LF is written as CRLF (so later lines
** still un-stuff), is recorded as an error unless normalising, and a line
** begun after one can never be the terminator: "\n.\n", "\r.\r",
** "\n.\r\n", "\r\n.\n", "\r\n.\r\r\n" ... all stay message text.  This is
** what closes SMTP smuggling: no other MTA can see a different end.
** ------------------------------------------------------------------- */

enum { D_BOL, D_DOT, D_DOTCR, D_MID, D_CR, D_DONE };

void smtp_dd_init(smtp_data_decoder *d, int normalize, size_t max_line) {
  memset(d, 0, sizeof *d);
  d->state = D_BOL;
  d->bol_real = 1;
  d->normalize = normalize;
  d->max_line = max_line;
}

static void dd_bare(smtp_data_decoder *d, const char *what) {
  if (!d->normalize && d->error == NULL) d->error = what;
}

size_t smtp_dd_feed(smtp_data_decoder *d, const char *in, size_t n,
                    char *out, size_t *outlen) {
  const char *p = in, *e = in + n, *lf = NULL;
  char *o = out;
  if (d->state == D_DONE) {
    *outlen = 0;
    return 0;
  }
  while (p < e) {
    switch (d->state) {
      case D_BOL:
        d->linelen = 0;
        if (*p == '.') {
          d->state = D_DOT; /* held until the next byte says what it is */
          p++;
        } else {
          d->state = D_MID;
        }
        break;
      case D_DOT:
        if (*p == '\r') {
          d->state = D_DOTCR;
          p++;
        } else if (*p == '\n') {
          /* "." ended by a bare LF: a line holding ".", not the end */
          dd_bare(d, "bare lf");
          memcpy(o, ".\r\n", 3);
          o += 3;
          p++;
          d->state = D_BOL;
          d->bol_real = 0;
        } else {
          d->state = D_MID; /* a stuffed dot: dropped */
          d->linelen = 0;
        }
        break;
      case D_DOTCR:
        if (*p == '\n' && d->bol_real) {
          p++;
          d->state = D_DONE;
          goto done;
        }
        if (*p == '\n') {
          p++; /* a "." line after a bare ending: text, ended by CRLF */
          d->bol_real = 1;
        } else {
          dd_bare(d, "bare cr"); /* ".\r" then not LF */
          d->bol_real = 0;
        }
        memcpy(o, ".\r\n", 3);
        o += 3;
        d->state = D_BOL;
        break;
      case D_CR:
        *o++ = '\r';
        *o++ = '\n';
        if (*p == '\n') {
          p++;
          d->bol_real = 1;
        } else {
          dd_bare(d, "bare cr");
          d->bol_real = 0;
        }
        d->state = D_BOL;
        break;
      case D_MID: {
        const char *q;
        size_t k;
        if (lf == NULL || lf < p) { /* the next LF, searched once per line */
          lf = memchr(p, '\n', (size_t)(e - p));
          if (lf == NULL) lf = e;
        }
        q = memchr(p, '\r', (size_t)(lf - p));
        if (q == NULL) q = lf;
        k = (size_t)(q - p);
        memcpy(o, p, k);
        o += k;
        d->linelen += k;
        if (d->linelen + 2 > d->max_line && d->error == NULL)
          d->error = "line too long";
        p = q;
        if (p == e) break;
        if (*p == '\r') {
          d->state = D_CR;
        } else {
          dd_bare(d, "bare lf");
          *o++ = '\r';
          *o++ = '\n';
          d->state = D_BOL;
          d->bol_real = 0;
        }
        p++;
        break;
      }
      default:
        break;
    }
  }
done:
  *outlen = (size_t)(o - out);
  d->size += *outlen;
  if (d->state == D_DONE) d->done = 1;
  return (size_t)(p - in);
}

/* ---------------------------------------------------------------------
** DATA, sending side
** ------------------------------------------------------------------- */

void smtp_de_init(smtp_data_encoder *e, int keep_cr) {
  e->bol = 1;
  e->skip_lf = 0;
  e->keep_cr = keep_cr;
  e->prev_cr = 0;
  e->finished = 0;
}

/* keep_cr: a bare LF becomes CRLF, every CR is copied as it is */
static size_t de_feed_keep_cr(smtp_data_encoder *en, const char *in,
                              size_t n, char *out) {
  const char *p = in, *e = in + n;
  char *o = out;
  while (p < e) {
    const char *lf;
    size_t k;
    if (en->bol && *p == '.') *o++ = '.'; /* 4.5.2: double a leading dot */
    lf = memchr(p, '\n', (size_t)(e - p));
    if (lf == NULL) {
      k = (size_t)(e - p);
      memcpy(o, p, k);
      o += k;
      en->prev_cr = p[k - 1] == '\r';
      en->bol = 0;
      break;
    }
    k = (size_t)(lf - p);
    memcpy(o, p, k);
    o += k;
    /* the CR of a CRLF may have ended the previous feed */
    if (!(k ? p[k - 1] == '\r' : en->prev_cr)) *o++ = '\r';
    *o++ = '\n';
    en->bol = 1;
    en->prev_cr = 0;
    p = lf + 1;
  }
  return (size_t)(o - out);
}

size_t smtp_de_feed(smtp_data_encoder *en, const char *in, size_t n,
                    char *out) {
  const char *p = in, *e = in + n, *lf = NULL;
  char *o = out;
  if (en->keep_cr) return de_feed_keep_cr(en, in, n, out);
  while (p < e) {
    const char *q;
    size_t k;
    if (en->skip_lf) {
      en->skip_lf = 0;
      if (*p == '\n') {
        p++;
        continue;
      }
    }
    if (en->bol && *p == '.') *o++ = '.'; /* 4.5.2: double a leading dot */
    if (lf == NULL || lf < p) {
      lf = memchr(p, '\n', (size_t)(e - p));
      if (lf == NULL) lf = e;
    }
    q = memchr(p, '\r', (size_t)(lf - p));
    if (q == NULL) q = lf;
    k = (size_t)(q - p);
    if (k) {
      memcpy(o, p, k);
      o += k;
      en->bol = 0;
    }
    p = q;
    if (p == e) break;
    *o++ = '\r';
    *o++ = '\n';
    en->bol = 1;
    if (*p == '\r') en->skip_lf = 1;
    p++;
  }
  return (size_t)(o - out);
}

size_t smtp_de_finish(smtp_data_encoder *en, char *out) {
  char *o = out;
  if (!en->bol) {
    *o++ = '\r';
    *o++ = '\n';
  }
  memcpy(o, ".\r\n", 3);
  o += 3;
  en->finished = 1;
  en->bol = 1;
  en->skip_lf = 0;
  en->prev_cr = 0;
  return (size_t)(o - out);
}

/* ---------------------------------------------------------------------
** Lua binding
** ------------------------------------------------------------------- */

#define DD_CLASS "parley.smtp.data_decoder"
#define DE_CLASS "parley.smtp.data_encoder"

static size_t opt_size(lua_State *L, int idx, const char *key, size_t def) {
  lua_Integer v;
  int isnum;
  if (lua_getfield(L, idx, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  v = lua_tointegerx(L, -1, &isnum);
  if (!isnum || v < 1) luaL_error(L, "opts.%s must be a positive integer", key);
  lua_pop(L, 1);
  return (size_t)v;
}

static void read_limits(lua_State *L, int idx, smtp_limits *lim) {
  size_t mp;
  smtp_limits_default(lim);
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "smtputf8");
  lim->utf8 = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lim->max_line = opt_size(L, idx, "max_line", lim->max_line);
  lim->max_path = opt_size(L, idx, "max_path", lim->max_path);
  lim->max_local = opt_size(L, idx, "max_local", lim->max_local);
  lim->max_domain = opt_size(L, idx, "max_domain", lim->max_domain);
  mp = opt_size(L, idx, "max_params", (size_t)lim->max_params);
  if (lim->max_path > SMTP_PATH_HARDMAX)
    luaL_error(L, "opts.max_path must be at most %d", SMTP_PATH_HARDMAX);
  if (mp > SMTP_MAX_PARAMS)
    luaL_error(L, "opts.max_params must be at most %d", SMTP_MAX_PARAMS);
  lim->max_params = (int)mp;
}

static int push_error(lua_State *L, const smtp_error *err) {
  lua_pushnil(L);
  lua_pushstring(L, err->reason);
  lua_pushinteger(L, err->code);
  lua_pushstring(L, err->enhanced);
  return 4;
}

static void set_span(lua_State *L, const char *key, smtp_span sp) {
  lua_pushlstring(L, sp.p ? sp.p : "", sp.n);
  lua_setfield(L, -2, key);
}

/* pushes mailbox, info */
static void push_path(lua_State *L, const smtp_path *path) {
  char buf[2 * SMTP_PATH_HARDMAX + 8];
  size_t dl = smtp_local_decode(path, buf);
  size_t cl = smtp_mailbox_canon(path, buf, dl, buf + dl);
  const char *relay = smtp_relay_vector(path);
  lua_pushlstring(L, buf + dl, cl);
  lua_createtable(L, 0, 5);
  lua_pushlstring(L, buf, dl);
  lua_setfield(L, -2, "local");
  set_span(L, "domain", path->domain);
  lua_pushboolean(L, path->quoted);
  lua_setfield(L, -2, "quoted");
  if (path->route.n) set_span(L, "route", path->route);
  if (relay) {
    lua_pushstring(L, relay);
    lua_setfield(L, -2, "relay");
  }
  if (path->postmaster) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "postmaster");
  }
  if (path->null) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "null");
  }
}

static void push_upper(lua_State *L, smtp_span sp) {
  luaL_Buffer b;
  char *o = luaL_buffinitsize(L, &b, sp.n);
  size_t i;
  for (i = 0; i < sp.n; i++) o[i] = (char)to_upper((unsigned char)sp.p[i]);
  luaL_pushresultsize(&b, sp.n);
}

static int l_parse_command(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  smtp_limits lim;
  smtp_command cmd;
  const smtp_error *err;
  int i;
  read_limits(L, 2, &lim);
  err = smtp_parse_command(s, n, &lim, &cmd);
  if (err) return push_error(L, err);
  lua_pushlstring(L, cmd.verb, cmd.verb_len);
  switch (cmd.kind) {
    case SMTP_MAIL:
    case SMTP_RCPT:
      push_path(L, &cmd.path);
      lua_createtable(L, 0, cmd.nparams);
      for (i = 0; i < cmd.nparams; i++) {
        const smtp_param *pm = &cmd.params[i];
        push_upper(L, pm->key);
        if (pm->value.p == NULL) lua_pushboolean(L, 1);
        else if (cmd.kind == SMTP_MAIL && span_is(pm->key.p, pm->key.n, "BODY"))
          push_upper(L, pm->value);
        else lua_pushlstring(L, pm->value.p, pm->value.n);
        lua_rawset(L, -3);
      }
      lua_insert(L, -2); /* verb, mailbox, params, info */
      return 4;
    case SMTP_BDAT:
      lua_pushinteger(L, (lua_Integer)cmd.size);
      lua_pushboolean(L, cmd.last);
      return 3;
    case SMTP_AUTH:
      push_upper(L, cmd.arg);
      if (cmd.arg2.p) lua_pushlstring(L, cmd.arg2.p, cmd.arg2.n);
      else lua_pushnil(L);
      return 3;
    case SMTP_DATA:
    case SMTP_RSET:
    case SMTP_QUIT:
    case SMTP_STARTTLS:
      return 1;
    default:
      if (cmd.arg.n) lua_pushlstring(L, cmd.arg.p, cmd.arg.n);
      else lua_pushnil(L);
      return 2;
  }
}

static int l_parse_path(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  smtp_limits lim;
  smtp_path path;
  const smtp_error *err;
  read_limits(L, 2, &lim);
  err = smtp_parse_path(s, n, &lim, SMTP_PATH_NULL, &path);
  if (err) return push_error(L, err);
  push_path(L, &path);
  return 2;
}

static int l_relay_vector(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  smtp_limits lim;
  smtp_path path;
  const char *why;
  smtp_limits_default(&lim);
  lim.utf8 = 1;
  lim.max_path = lim.max_local = lim.max_domain = SMTP_PATH_HARDMAX;
  if (smtp_parse_path(s, n, &lim, SMTP_PATH_NULL, &path) != NULL) {
    lua_pushliteral(L, "unparseable path");
    return 1;
  }
  why = smtp_relay_vector(&path);
  if (why) lua_pushstring(L, why);
  else lua_pushnil(L);
  return 1;
}

static int l_enhanced_valid(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_pushboolean(L, smtp_enhanced_valid(s, n));
  return 1;
}

static int l_parse_reply_line(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_Integer max = luaL_optinteger(L, 2, 512);
  smtp_reply r;
  const char *why;
  luaL_argcheck(L, max >= 1, 2, "must be a positive integer");
  why = smtp_parse_reply_line(s, n, (size_t)max, &r);
  if (why) {
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  lua_pushinteger(L, r.code);
  lua_pushboolean(L, r.more);
  lua_pushlstring(L, r.text.p, r.text.n);
  if (r.enhanced.n) lua_pushlstring(L, r.enhanced.p, r.enhanced.n);
  else lua_pushnil(L);
  return 4;
}

/* one reply line: code sep [enhanced] [SP text] CRLF; text on the stack
** top is added (and popped) by luaL_addvalue */
static void reply_line(lua_State *L, luaL_Buffer *b, int code, int last,
                       const char *enh, size_t el) {
  size_t tn, i;
  const char *t;
  char head[24];
  size_t hn;
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_argerror(L, 3, "reply lines must be strings");
  t = lua_tolstring(L, -1, &tn);
  for (i = 0; i < tn; i++) {
    unsigned c = (unsigned char)t[i];
    if ((c < 32 && c != 9) || c == 127)
      luaL_argerror(L, 3, "control character in reply text");
  }
  head[0] = (char)('0' + code / 100);
  head[1] = (char)('0' + code / 10 % 10);
  head[2] = (char)('0' + code % 10);
  head[3] = last ? ' ' : '-';
  hn = 4;
  if (el) {
    memcpy(head + hn, enh, el);
    hn += el;
    if (tn) head[hn++] = ' ';
  } else if (last && tn == 0) {
    hn = 3; /* "250" CRLF rather than a trailing space */
  }
  if (hn + tn + 2 > 512) luaL_argerror(L, 3, "reply line too long");
  luaL_addlstring(b, head, hn);
  luaL_addvalue(b);
  luaL_addlstring(b, "\r\n", 2);
}

static int l_reply(lua_State *L) {
  lua_Integer code = luaL_checkinteger(L, 1);
  size_t el = 0;
  const char *enh = luaL_optlstring(L, 2, NULL, &el);
  int t = lua_type(L, 3);
  luaL_Buffer b;
  char digits[3];
  luaL_argcheck(L, code >= 200 && code <= 599, 1, "invalid reply code");
  digits[0] = (char)('0' + code / 100);
  digits[1] = (char)('0' + code / 10 % 10);
  digits[2] = (char)('0' + code % 10);
  luaL_argcheck(L, reply_code_valid(digits), 1, "invalid reply code");
  if (enh) {
    luaL_argcheck(L, smtp_enhanced_valid(enh, el) && enh[0] == digits[0], 2,
                  "invalid enhanced status code");
  }
  luaL_argcheck(L, t == LUA_TNONE || t == LUA_TNIL || t == LUA_TSTRING ||
                t == LUA_TTABLE, 3, "string or table of lines expected");
  luaL_buffinit(L, &b);
  if (t == LUA_TTABLE) {
    lua_Integer i, n = luaL_len(L, 3);
    if (n == 0) {
      lua_pushliteral(L, "");
      reply_line(L, &b, (int)code, 1, enh, el);
    }
    for (i = 1; i <= n; i++) {
      lua_geti(L, 3, i);
      reply_line(L, &b, (int)code, i == n, enh, el);
    }
  } else {
    if (t == LUA_TSTRING) lua_pushvalue(L, 3);
    else lua_pushliteral(L, "");
    reply_line(L, &b, (int)code, 1, enh, el);
  }
  luaL_pushresult(&b);
  return 1;
}

/* data decoder */

static int l_data_decoder(lua_State *L) {
  int normalize = 0;
  size_t max_line = 1000;
  smtp_data_decoder *d;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getfield(L, 1, "bare") != LUA_TNIL) {
      const char *m = lua_tostring(L, -1);
      if (m && strcmp(m, "normalize") == 0) normalize = 1;
      else if (!m || strcmp(m, "reject") != 0)
        luaL_error(L, "opts.bare must be \"reject\" or \"normalize\"");
    }
    lua_pop(L, 1);
    max_line = opt_size(L, 1, "max_line", max_line);
  }
  d = lua_newuserdatauv(L, sizeof *d, 0);
  smtp_dd_init(d, normalize, max_line);
  luaL_setmetatable(L, DD_CLASS);
  return 1;
}

static int dd_feed(lua_State *L) {
  smtp_data_decoder *d = luaL_checkudata(L, 1, DD_CLASS);
  size_t n, outlen, used;
  const char *s = luaL_checklstring(L, 2, &n);
  luaL_Buffer b;
  char *o = luaL_buffinitsize(L, &b, 2 * n + 4);
  used = smtp_dd_feed(d, s, n, o, &outlen);
  luaL_pushresultsize(&b, outlen);
  lua_pushboolean(L, d->done);
  lua_pushinteger(L, (lua_Integer)used);
  return 3;
}

static int dd_error(lua_State *L) {
  smtp_data_decoder *d = luaL_checkudata(L, 1, DD_CLASS);
  if (d->error) lua_pushstring(L, d->error);
  else lua_pushnil(L);
  return 1;
}

static int dd_size(lua_State *L) {
  smtp_data_decoder *d = luaL_checkudata(L, 1, DD_CLASS);
  lua_pushinteger(L, (lua_Integer)d->size);
  return 1;
}

static int dd_done(lua_State *L) {
  smtp_data_decoder *d = luaL_checkudata(L, 1, DD_CLASS);
  lua_pushboolean(L, d->done);
  return 1;
}

static int dd_tostring(lua_State *L) {
  smtp_data_decoder *d = luaL_checkudata(L, 1, DD_CLASS);
  return parley_tostring(L, d->done ? "(done)" : "(reading)");
}

/* data encoder */

static int l_data_encoder(lua_State *L) {
  int keep_cr = 0;
  smtp_data_encoder *e;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "keep_cr");
    keep_cr = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  e = lua_newuserdatauv(L, sizeof *e, 0);
  smtp_de_init(e, keep_cr);
  luaL_setmetatable(L, DE_CLASS);
  return 1;
}

static int de_feed(lua_State *L) {
  smtp_data_encoder *e = luaL_checkudata(L, 1, DE_CLASS);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  luaL_Buffer b;
  char *o;
  if (e->finished) return luaL_error(L, "data encoder already finished");
  o = luaL_buffinitsize(L, &b, 2 * n);
  luaL_pushresultsize(&b, smtp_de_feed(e, s, n, o));
  return 1;
}

static int de_finish(lua_State *L) {
  smtp_data_encoder *e = luaL_checkudata(L, 1, DE_CLASS);
  char out[8];
  if (e->finished) return luaL_error(L, "data encoder already finished");
  lua_pushlstring(L, out, smtp_de_finish(e, out));
  return 1;
}

static int de_tostring(lua_State *L) {
  smtp_data_encoder *e = luaL_checkudata(L, 1, DE_CLASS);
  return parley_tostring(L, e->finished ? "(finished)" : "(open)");
}

static const luaL_Reg dd_methods[] = {
  {"feed", dd_feed}, {"error", dd_error}, {"size", dd_size},
  {"done", dd_done}, {NULL, NULL}
};
static const luaL_Reg dd_meta[] = {{"__tostring", dd_tostring}, {NULL, NULL}};
static const luaL_Reg de_methods[] = {
  {"feed", de_feed}, {"finish", de_finish}, {NULL, NULL}
};
static const luaL_Reg de_meta[] = {{"__tostring", de_tostring}, {NULL, NULL}};

static const luaL_Reg smtp_funcs[] = {
  {"parse_command", l_parse_command},
  {"parse_path", l_parse_path},
  {"relay_vector", l_relay_vector},
  {"parse_reply_line", l_parse_reply_line},
  {"reply", l_reply},
  {"enhanced_valid", l_enhanced_valid},
  {"data_decoder", l_data_decoder},
  {"data_encoder", l_data_encoder},
  {NULL, NULL}
};

int parley_open_smtp(lua_State *L) {
  parley_newclass(L, DD_CLASS, dd_methods, dd_meta);
  parley_newclass(L, DE_CLASS, de_methods, de_meta);
  luaL_newlib(L, smtp_funcs);
  lua_setfield(L, -2, "smtp");
  return 0;
}
