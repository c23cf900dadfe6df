/*
** core.imap: the IMAP4 codec (RFC 3501 section 9 formal syntax, RFC 7888
** LITERAL+ / LITERAL-, RFC 9051 where it tightens things, modified
** UTF-7 from RFC 3501 section 5.1.3).  Pure: bytes in, Lua values out.
**
** Framing protocol shared by both parsers.  The caller reads one line
** (without its CRLF) and calls feed_line.  When the line ends with a
** literal announcement "{n}", "{n+}" (RFC 7888) or "~{n}" (RFC 9051
** literal8), feed_line returns "literal", n, nonsync, binary; the caller
** checks n, sends "+ ..." unless nonsync (server side), reads exactly n
** bytes and calls feed_literal, then feeds the next line.  Once the
** command or response is complete feed_line returns "done", value.
**
** imap.command_parser([limits]) -> parser                (server side)
**   limits (all optional):
**     max_line = 65536        bytes in one line without CRLF
**     max_literal = 64 MiB    any literal, checked before "+" is sent
**     max_literal_unauth = 4096  any literal while not authenticated
**                             (RFC 7888 section 4/5: a {4097+} before
**                             login must be refused)
**     max_nonsync = max_literal  non-synchronizing literals (4096 for
**                             a server that advertises LITERAL-)
**     max_command = 68 MiB    lines plus literals of one command
**     max_depth = 64          nested parentheses (at most 1000)
**     max_tokens = 10000      arguments, list brackets included
**     authenticated = false
**     allow_8bit = false      accept any 8-bit byte in quoted strings
**                             (otherwise only valid UTF-8, RFC 9051)
**   parser:feed_line(line) ->
**     "literal", n, nonsync, binary
**     "done", cmd     cmd = {tag=, name=UPPER, uid=true|nil, args=list}
**     nil, reason, tag [, n, nonsync]   syntax error or refused limit;
**                     tag is "*" when no valid tag was read; n/nonsync
**                     come with a refused literal (a refused nonsync
**                     literal is on its way: skip n bytes or send BYE).
**                     The parser is reset: the next line starts anew.
**   parser:feed_literal(value) -> "line" (now feed the next line, which
**     may be empty), or nil, reason, tag.  value is the
**     string of exactly n bytes, or any non-string Lua value (e.g. a
**     file the server streamed the literal into) stored as is.
**   parser:set_authenticated(bool), parser:reset(),
**   parser:pending() -> n when a literal is awaited, else nil
**   A list (args included) is a Lua array; list.kinds is a string with
**   one char per element: "a" atom (also numbers, sequence sets, flags,
**   NIL, BODY[...]<...> sections kept whole), "q" quoted string, "l"
**   literal, "b" literal8, "(" list.  The parser accepts any atom as a
**   command name: knowing commands is the server's job.  "UID FETCH"
**   gives name="FETCH", uid=true.  AUTHENTICATE continuation lines and
**   IDLE's DONE are raw lines, not fed here.
**
** imap.response_parser([limits]) -> parser                (client side)
**   limits: max_line = 8 MiB, max_literal = 64 MiB, max_command (total)
**   = 1 GiB, max_depth = 64 (at most 1000), max_tokens = 1000000.
**   parser:feed_line / feed_literal / reset / pending as above;
**   "done", resp with resp.tag = "*", "+" or the command tag and:
**     "+" continuation: type = "CONTINUE", text
**     OK/NO/BAD/BYE/PREAUTH: type, text, code (UPPER name) and code_data:
**       UIDVALIDITY/UIDNEXT/UNSEEN/HIGHESTMODSEQ... number,
**       PERMANENTFLAGS/CAPABILITY/BADCHARSET list,
**       APPENDUID {uidvalidity=, uid=(single uid) , uids=set string},
**       COPYUID {uidvalidity=, source=set, dest=set},
**       other codes: the raw text after the name (or nil).
**     CAPABILITY/ENABLED: list = {atoms}; FLAGS: flags
**     LIST/LSUB: flags, delimiter (string or false), name (raw modified
**       UTF-7), extended (extra data, generic) when present
**     STATUS: mailbox, items = {MESSAGES=n, ...}
**     SEARCH/SORT: numbers = {n...} (modseq = n for "(MODSEQ n)")
**     n EXISTS/RECENT/EXPUNGE: number
**     n FETCH: number, items = {UID=n, FLAGS={...}, INTERNALDATE=s,
**       ["RFC822.SIZE"]=n, ENVELOPE={...}, BODYSTRUCTURE=tree,
**       BODY=tree, ["BODY[1.2]<0>"]=string|false, MODSEQ=n, other=generic}
**       Item keys are upper-cased as the server sent them.
**     other untagged data: type = UPPER atom, data = generic list.
**   NIL is false everywhere.  Generic values: atoms and strings are
**   strings, lists are arrays.  envelope = {date, subject, from, sender,
**   reply_to, to, cc, bcc, in_reply_to, message_id}, address lists are
**   arrays of {name=, adl=, mailbox=, host=} (or false).  body tree:
**   multipart {type="multipart", subtype, parts={...}, params,
**   disposition, language, location, extension}; single part {type,
**   subtype, params, id, description, encoding, size, lines, envelope,
**   body (message/rfc822), md5, disposition, language, location,
**   extension}.  type, subtype, parameter names and the disposition
**   type are lower-cased; params = {name=value}; disposition =
**   {type=, params=}; language is a string or an array.
**
** imap.parse_fetch_atts(args, i) -> atts, next | nil, reason
**   args[i] is an atom (one attribute or ALL/FAST/FULL) or a list.
**   Each att: {name=UPPER, key=response item name, peek=bool,
**   part={1,2}, text="HEADER"|"HEADER.FIELDS"|"HEADER.FIELDS.NOT"|
**   "TEXT"|"MIME", fields={UPPER...}, section=string inside [], partial=
**   {origin, length}} for BODY[...], BODY.PEEK[...], BINARY[...],
**   BINARY.PEEK[...], BINARY.SIZE[...]; {name=, key=} otherwise.
**   Unknown plain names pass through (the server decides).
** imap.parse_sequence_set(s [, max]) -> {{lo, hi}...} | nil, reason
**   "*" stays the string "*" unless max is given (then substituted and
**   each pair ordered lo <= hi).  Rejects 0, empty parts, non-numbers,
**   numbers past 4294967295.
** imap.quote(s [, opts]) -> text, is_literal
**   s = nil/false gives "NIL".  By default (atom = true) s goes out
**   bare when it is an atom (non-empty, ATOM-CHARs only: fine wherever
**   an astring is expected, e.g. a mailbox name or a LOGIN argument);
**   "NIL" in any case is never bare (always quoted).  Pass atom = false
**   to quote every string (for a "string"/"nstring" slot, e.g. ID or
**   server replies).  Other opts: nonsync = false ({n+}), utf8 = false
**   (allow UTF-8 in quoted), max_quoted = 1024.  A literal comes back as
**   "{n}\r\n" .. s with is_literal = true (a client must wait for "+"
**   after the CRLF unless nonsync).
** imap.format_list(list [, atoms]) -> "(...)"  numbers as numbers, false
**   as NIL, tables nested, strings quoted (as atoms/flags when atoms).
** imap.fetch_response(seq, items) -> "* seq FETCH (...)\r\n"
**   items = {name1, value1, name2, value2, ...}; FLAGS values are
**   written as atoms, other strings as strings, {raw="..."} verbatim.
** imap.utf7_encode(utf8) -> mutf7 | nil, reason
** imap.utf7_decode(mutf7) -> utf8 | nil, reason  (strict: rejects
**   unterminated "&", superfluous shifts, bad base64, non-zero or
**   excess padding bits, unpaired surrogates, encoded printable ASCII)
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley.h"
#include "imap.h"

/* ================================================================
** Pure C core: no Lua below this line until the binding section.
** ================================================================ */

/* ---- character classes (RFC 3501 section 9) ---- */

#define C_ATOM   0x01u   /* ATOM-CHAR */
#define C_TOKEN  0x02u   /* bare token: ATOM-CHAR, "%", "*", "]", "\" */
#define C_TAG    0x04u   /* tag: ASTRING-CHAR except "+" */
#define C_B64    0x08u   /* modified BASE64 alphabet (RFC 3501 5.1.3) */

/* generated from the RFC's exclusion lists: atom-specials = "(" / ")" /
   "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials */
static const unsigned char cls[256] = {
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 7, 0, 7, 7, 2, 7, 7, 0, 0, 2, 11, 15, 7, 7, 7,
  15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 7, 7, 7, 7, 7, 7,
  7, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
  15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 7, 2, 6, 7, 7,
  7, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
  15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 0, 7, 7, 7, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

#define IS(c, k) (cls[(unsigned char)(c)] & (k))

void imap_init(void) {}  /* kept for callers: the tables are constant */

/* ---- growable byte buffer ---- */

static int ibuf_reserve(imap_buf *b, size_t extra) {
  if (b->cap - b->n < extra) {
    size_t cap = b->cap ? b->cap : 256;
    char *np;
    while (cap - b->n < extra) {
      if (cap > ((size_t)-1) / 2) return 0;
      cap *= 2;
    }
    np = (char *)realloc(b->p, cap);
    if (!np) return 0;
    b->p = np;
    b->cap = cap;
  }
  return 1;
}

static int ibuf_add(imap_buf *b, const void *s, size_t n) {
  if (!ibuf_reserve(b, n)) return 0;
  if (n) memcpy(b->p + b->n, s, n);
  b->n += n;
  return 1;
}

void imap_buf_free(imap_buf *b) {
  free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}

/* ---- numbers ---- */

/* 1*DIGIT at s[0..n) up to max: returns digits read; *ov set past max */
static size_t parse_digits(const char *s, size_t n, uint64_t max,
                           uint64_t *out, int *ov) {
  size_t i = 0;
  uint64_t v = 0;
  *ov = 0;
  while (i < n && s[i] >= '0' && s[i] <= '9') {
    unsigned d = (unsigned)(s[i] - '0');
    if (*ov || v > (max - d) / 10) *ov = 1;
    else v = v * 10 + d;
    i++;
  }
  *out = v;
  return i;
}

static int parse_number(const char *s, size_t n, uint64_t max, uint64_t *out) {
  int ov;
  return n > 0 && parse_digits(s, n, max, out, &ov) == n && !ov;
}

/* ---- UTF-8 ---- */

/* one scalar at s[0..n): its length, or 0 when invalid (overlong,
   surrogate, past U+10FFFF, truncated) */
static size_t utf8_get(const unsigned char *s, size_t n, uint32_t *cp) {
  uint32_t c = s[0];
  size_t len, i;
  if (c < 0x80) { *cp = c; return 1; }
  if (c >= 0xc2 && c <= 0xdf) { len = 2; c &= 0x1f; }
  else if (c >= 0xe0 && c <= 0xef) { len = 3; c &= 0x0f; }
  else if (c >= 0xf0 && c <= 0xf4) { len = 4; c &= 0x07; }
  else return 0;
  if (n < len) return 0;
  for (i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    c = (c << 6) | (s[i] & 0x3fu);
  }
  if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10ffff)) ||
      (c >= 0xd800 && c <= 0xdfff))
    return 0;
  *cp = c;
  return len;
}

static size_t utf8_put(char *out, uint32_t c) {
  if (c < 0x80) { out[0] = (char)c; return 1; }
  if (c < 0x800) {
    out[0] = (char)(0xc0 | (c >> 6));
    out[1] = (char)(0x80 | (c & 0x3f));
    return 2;
  }
  if (c < 0x10000) {
    out[0] = (char)(0xe0 | (c >> 12));
    out[1] = (char)(0x80 | ((c >> 6) & 0x3f));
    out[2] = (char)(0x80 | (c & 0x3f));
    return 3;
  }
  out[0] = (char)(0xf0 | (c >> 18));
  out[1] = (char)(0x80 | ((c >> 12) & 0x3f));
  out[2] = (char)(0x80 | ((c >> 6) & 0x3f));
  out[3] = (char)(0x80 | (c & 0x3f));
  return 4;
}

/* ---- modified UTF-7 (RFC 3501 section 5.1.3, RFC 2152) ---- */

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64val(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == ',') return 63;
  return -1;
}

const char *imap_utf7_encode(const char *s, size_t n, imap_buf *out) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  int in64 = 0, nbits = 0;
  uint32_t bits = 0;
  if (!ibuf_reserve(out, n + 2)) return "out of memory";
  while (i < n) {
    uint32_t cp;
    char tmp[2];
    if (u[i] >= 0x20 && u[i] <= 0x7e) {
      if (in64) {                     /* close the run, zero padding bits */
        if (nbits > 0) {
          tmp[0] = b64chars[(bits << (6 - nbits)) & 0x3f];
          if (!ibuf_add(out, tmp, 1)) return "out of memory";
        }
        if (!ibuf_add(out, "-", 1)) return "out of memory";
        in64 = 0;
        nbits = 0;
        bits = 0;
      }
      if (u[i] == '&') {
        if (!ibuf_add(out, "&-", 2)) return "out of memory";
      } else if (!ibuf_add(out, u + i, 1)) {
        return "out of memory";
      }
      i++;
      continue;
    }
    {
      size_t len = utf8_get(u + i, n - i, &cp);
      if (!len) return "invalid utf-8";
      i += len;
    }
    if (!in64) {
      if (!ibuf_add(out, "&", 1)) return "out of memory";
      in64 = 1;
    }
    {
      uint16_t units[2];
      int k, nu = 0;
      if (cp >= 0x10000) {
        cp -= 0x10000;
        units[nu++] = (uint16_t)(0xd800 | (cp >> 10));
        units[nu++] = (uint16_t)(0xdc00 | (cp & 0x3ff));
      } else {
        units[nu++] = (uint16_t)cp;
      }
      for (k = 0; k < nu; k++) {
        bits = ((bits << 16) | units[k]) & 0xffffffu; /* keep < 24 bits */
        nbits += 16;
        while (nbits >= 6) {
          nbits -= 6;
          tmp[0] = b64chars[(bits >> nbits) & 0x3f];
          if (!ibuf_add(out, tmp, 1)) return "out of memory";
        }
      }
    }
  }
  if (in64) {
    char tmp[1];
    if (nbits > 0) {
      tmp[0] = b64chars[(bits << (6 - nbits)) & 0x3f];
      if (!ibuf_add(out, tmp, 1)) return "out of memory";
    }
    if (!ibuf_add(out, "-", 1)) return "out of memory";
  }
  return NULL;
}

const char *imap_utf7_decode(const char *s, size_t n, imap_buf *out) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  int after_run = 0;  /* the previous byte closed a base64 run */
  if (!ibuf_reserve(out, n)) return "out of memory";
  while (i < n) {
    uint32_t bits = 0, hi = 0;
    int nbits = 0, nunits = 0;
    size_t start;
    if (u[i] < 0x20 || u[i] > 0x7e) return "invalid character";
    if (u[i] != '&') {
      if (!ibuf_add(out, u + i, 1)) return "out of memory";
      i++;
      after_run = 0;
      continue;
    }
    i++;
    if (i < n && u[i] == '-') {       /* "&-" is "&" */
      if (!ibuf_add(out, "&", 1)) return "out of memory";
      i++;
      after_run = 0;
      continue;
    }
    if (after_run) return "superfluous shift";
    start = i;
    while (i < n && u[i] != '-') {
      int v = b64val(u[i]);
      if (v < 0) return "invalid base64";
      bits = ((bits << 6) | (uint32_t)v) & 0xffffffu;
      nbits += 6;
      i++;
      if (nbits >= 16) {
        uint32_t unit;
        char tmp[4];
        nbits -= 16;
        unit = (bits >> nbits) & 0xffff;
        nunits++;
        if (hi) {
          if (unit < 0xdc00 || unit > 0xdfff) return "unpaired surrogate";
          if (!ibuf_add(out, tmp,
                        utf8_put(tmp, 0x10000 + ((hi - 0xd800) << 10) +
                                          (unit - 0xdc00))))
            return "out of memory";
          hi = 0;
        } else if (unit >= 0xd800 && unit <= 0xdbff) {
          hi = unit;
        } else if (unit >= 0xdc00 && unit <= 0xdfff) {
          return "unpaired surrogate";
        } else if (unit >= 0x20 && unit <= 0x7e) {
          return "encoded printable ascii";
        } else if (!ibuf_add(out, tmp, utf8_put(tmp, unit))) {
          return "out of memory";
        }
      }
    }
    if (i >= n) return "unterminated base64";
    if (i == start) return "empty base64";   /* unreachable: "&-" above */
    if (hi) return "unpaired surrogate";
    /* minimal: fewer than 6 leftover bits, all zero (RFC 2152) */
    if (nbits >= 6 || (bits & ((1u << nbits) - 1)) != 0)
      return "non-minimal base64";
    (void)nunits;
    i++;                               /* the "-" */
    after_run = 1;
  }
  return NULL;
}

/* ---- the incremental parser (commands and responses) ---- */

enum { S_ITEM, S_OPEN, S_SEP };

void imap_parser_init(imap_parser *p, int response) {
  memset(p, 0, sizeof *p);
  imap_init();
  p->response = response;
  p->max_depth = 64;
  p->max_literal = 64u << 20;
  p->max_nonsync = UINT64_MAX;
  if (response) {
    p->max_line = 8u << 20;
    p->max_tokens = 1000000;
    p->max_command = (uint64_t)1 << 30;
    p->max_literal_unauth = UINT64_MAX;
    p->authenticated = 1;
  } else {
    p->max_line = 65536;
    p->max_tokens = 10000;
    p->max_command = 68u << 20;
    p->max_literal_unauth = 4096;
  }
}

void imap_parser_free(imap_parser *p) {
  imap_buf_free(&p->buf);
  free(p->tok);
  free(p->stack);
  free(p->count);
  p->tok = NULL;
  p->stack = p->count = NULL;
  p->ntok = p->captok = p->capstack = 0;
}

void imap_parser_reset(imap_parser *p) {
  if (p->buf.cap > (1u << 20)) imap_buf_free(&p->buf);  /* a big literal */
  if (p->captok > 65536) {
    free(p->tok);
    p->tok = NULL;
    p->captok = 0;
  }
  p->buf.n = 0;
  p->state = 0;
  p->ntok = 0;
  p->depth = 0;
  if (p->count) p->count[0] = 0;
  p->total = 0;
  p->next = 0;
  p->tag_ok = 0;
  p->tag_off = p->tag_len = 0;
  p->name_off = p->name_len = 0;
  p->uid = 0;
  p->text_mode = 0;
  p->has_code = p->has_arg = 0;
  p->code_off = p->code_len = p->arg_off = p->arg_len = 0;
  p->text_off = p->text_len = 0;
  p->first_tok = 0;
  p->lit_refused = 0;
  p->err = NULL;
}

static int fail(imap_parser *p, const char *reason) {
  p->err = reason;
  p->state = 0;         /* the next line starts a new command */
  return IMAP_ERROR;
}

static int need_levels(imap_parser *p, size_t levels) {
  if (p->capstack < levels) {
    size_t cap = p->capstack ? p->capstack * 2 : 16, *ns, *nc;
    while (cap < levels) cap *= 2;
    ns = (size_t *)realloc(p->stack, cap * sizeof *ns);
    if (!ns) return 0;
    p->stack = ns;
    nc = (size_t *)realloc(p->count, cap * sizeof *nc);
    if (!nc) return 0;
    p->count = nc;
    p->capstack = cap;
  }
  return 1;
}

static int push_tok(imap_parser *p, int type, size_t off, size_t len, int esc) {
  imap_tok *t;
  if (p->ntok >= p->max_tokens) return fail(p, "too many tokens");
  if (p->ntok == p->captok) {
    size_t cap = p->captok ? p->captok * 2 : 64;
    imap_tok *nt = (imap_tok *)realloc(p->tok, cap * sizeof *nt);
    if (!nt) return fail(p, "out of memory");
    p->tok = nt;
    p->captok = cap;
  }
  t = &p->tok[p->ntok++];
  t->type = (unsigned char)type;
  t->esc = (unsigned char)esc;
  t->off = off;
  t->len = len;
  if (type != IMAP_T_CLOSE) p->count[p->depth]++;
  return 0;
}

/* A bare token (atom, number, flag, sequence set, list-mailbox ...).  A
   "[" opens a section that runs to its "]" across spaces, parentheses
   and quoted strings, so BODY.PEEK[HEADER.FIELDS (A B)]<0.10> stays one
   token; a "[" without its "]" on the line is an ordinary character. */
static size_t scan_bare(const char *b, size_t i, size_t end) {
  while (i < end && IS(b[i], C_TOKEN)) {
    if (b[i] == '[') {
      size_t j = i + 1;
      while (j < end && b[j] != ']') {
        unsigned char c = (unsigned char)b[j];
        if (c == '"') {
          j++;
          while (j < end && b[j] != '"') {
            if (b[j] == '\\' && j + 1 < end) j++;
            if (b[j] == '\r' || b[j] == '\n' || b[j] == 0) break;
            j++;
          }
          if (j >= end || b[j] != '"') break;
          j++;
          continue;
        }
        if (!(IS(c, C_TOKEN) || c == ' ' || c == '(' || c == ')')) break;
        j++;
      }
      if (j < end && b[j] == ']') {
        i = j + 1;
        continue;
      }
    }
    i++;
  }
  return i;
}

/* scan b[i..end) of the buffer: tokens separated by exactly one SP
   (RFC 3501 section 9 note 2) */
static int scan(imap_parser *p, size_t i, size_t end, int st) {
  const char *b = p->buf.p;
  while (i < end) {
    unsigned char c = (unsigned char)b[i];
    if (st == S_SEP) {
      if (c == ' ') {
        st = S_ITEM;
        i++;
      } else if (c == ')') {
        goto close;
      } else if (c == '(' && p->response && i > 0 && b[i - 1] == ')' &&
                 p->ntok && p->tok[p->ntok - 1].type == IMAP_T_CLOSE) {
        st = S_ITEM;   /* 1*address, 1*body: lists follow without SP */
      } else if (c >= 0x80) {
        return fail(p, "8-bit byte in atom");
      } else if (c < 0x20 || c == 0x7f) {
        return fail(p, "control character");
      } else {
        return fail(p, "expected space");
      }
      continue;
    }
    if (c == '(') {
      size_t idx = p->ntok;
      if (p->depth >= p->max_depth) return fail(p, "too deeply nested");
      if (push_tok(p, IMAP_T_OPEN, 0, 0, 0)) return IMAP_ERROR;
      if (!need_levels(p, p->depth + 2)) return fail(p, "out of memory");
      p->depth++;
      p->stack[p->depth] = idx;
      p->count[p->depth] = 0;
      st = S_OPEN;
      i++;
      continue;
    }
    if (c == ')') {
      if (st != S_OPEN) return fail(p, "unexpected ')'");
      goto close;
    }
    if (c == ' ') return fail(p, "unexpected space");
    if (c == '"') {
      size_t start = ++i;
      int esc = 0;
      for (;;) {
        if (i >= end) return fail(p, "unterminated quoted string");
        c = (unsigned char)b[i];
        if (c == '"') break;
        if (c == '\\') {
          if (i + 1 >= end || (b[i + 1] != '"' && b[i + 1] != '\\'))
            return fail(p, "invalid escape in quoted string");
          esc = 1;
          i += 2;
          continue;
        }
        if (c == 0 || c == '\r' || c == '\n')
          return fail(p, "control character in quoted string");
        if (c >= 0x80 && !p->response && !p->allow_8bit) {
          uint32_t cp;  /* RFC 9051 QUOTED-CHAR: UTF8-2 / UTF8-3 / UTF8-4 */
          size_t len = utf8_get((const unsigned char *)b + i, end - i, &cp);
          if (!len) return fail(p, "8-bit byte in quoted string");
          i += len;
          continue;
        }
        i++;
      }
      if (push_tok(p, IMAP_T_QUOTED, start, i - start, esc)) return IMAP_ERROR;
      i++;
      st = S_SEP;
      continue;
    }
    if (c == '{' || (c == '~' && i + 1 < end && b[i + 1] == '{')) {
      /* literal = "{" number64 ["+"] "}" CRLF (RFC 9051, RFC 7888) */
      int binary = c == '~', nonsync = 0, ov;
      size_t j = i + 1 + (size_t)binary, nd;
      uint64_t v;
      if (p->text_mode) return fail(p, "literal in response code");
      nd = parse_digits(b + j, end - j, UINT64_MAX, &v, &ov);
      if (nd == 0) return fail(p, "invalid literal");
      j += nd;
      if (j < end && b[j] == '+') {
        nonsync = 1;
        j++;
      }
      if (j >= end || b[j] != '}') return fail(p, "invalid literal");
      if (j + 1 != end) return fail(p, "literal must end the line");
      p->lit_n = ov ? UINT64_MAX : v;
      p->lit_nonsync = nonsync;
      p->lit_binary = binary;
      p->lit_refused = 1;
      if (ov || v > p->max_literal) return fail(p, "literal too large");
      if (nonsync && (v > p->max_nonsync ||
                      (!p->authenticated && v > p->max_literal_unauth)))
        return fail(p, "non-synchronizing literal too large");
      if (!p->authenticated && v > p->max_literal_unauth)
        return fail(p, "literal too large");
      if (p->total + v > p->max_command)
        return fail(p, p->response ? "response too long" : "command too long");
      if (p->ntok >= p->max_tokens) return fail(p, "too many tokens");
      p->lit_refused = 0;
      p->state = 1;
      return IMAP_NEED_LITERAL;
    }
    if (IS(c, C_TOKEN)) {
      size_t start = i;
      i = scan_bare(b, i, end);
      if (push_tok(p, IMAP_T_ATOM, start, i - start, 0)) return IMAP_ERROR;
      st = S_SEP;
      continue;
    }
    if (c >= 0x80) return fail(p, "8-bit byte in atom");
    if (c < 0x20 || c == 0x7f) return fail(p, "control character");
    return fail(p, "unexpected character");
  close:
    if (p->depth == 0) return fail(p, "unexpected ')'");
    {
      imap_tok *o = &p->tok[p->stack[p->depth]];
      o->off = p->ntok;
      o->len = p->count[p->depth];
    }
    p->depth--;
    if (push_tok(p, IMAP_T_CLOSE, 0, 0, 0)) return IMAP_ERROR;
    st = S_SEP;
    i++;
  }
  if (st == S_ITEM && i > 0 && b[i - 1] == ' ') return fail(p, "trailing space");
  if (st != S_SEP) return fail(p, "unexpected end of line");
  if (p->depth) return fail(p, "unclosed parenthesis");
  return IMAP_DONE;
}

static int ci_eq(const char *s, size_t n, const char *lit) {
  size_t i;
  for (i = 0; i < n && lit[i]; i++) {
    char c = s[i];
    if (c >= 'a' && c <= 'z') c = (char)(c - 32);
    if (c != lit[i]) return 0;
  }
  return i == n && lit[i] == 0;
}

static size_t atom_len(const char *s, size_t i, size_t n) {
  size_t j = i;
  while (j < n && IS(s[j], C_ATOM)) j++;
  return j - i;
}

static int is_status(const char *s, size_t n) {
  return ci_eq(s, n, "OK") || ci_eq(s, n, "NO") || ci_eq(s, n, "BAD") ||
         ci_eq(s, n, "BYE") || ci_eq(s, n, "PREAUTH");
}

/* resp-text = ["[" resp-text-code "]" SP] text, from b[i..n) */
static int resp_text(imap_parser *p, size_t i, size_t n) {
  const char *b = p->buf.p;
  p->text_mode = 1;
  if (i < n && b[i] == '[') {
    const char *close = (const char *)memchr(b + i, ']', n - i);
    size_t c0 = i + 1, cl, ce;
    if (!close) return fail(p, "unterminated response code");
    ce = (size_t)(close - b);
    cl = atom_len(b, c0, ce);
    if (cl == 0) return fail(p, "invalid response code");
    p->has_code = 1;
    p->code_off = c0;
    p->code_len = cl;
    if (c0 + cl < ce) {
      if (b[c0 + cl] != ' ') return fail(p, "invalid response code");
      p->arg_off = c0 + cl + 1;
      p->arg_len = ce - p->arg_off;
      /* structured arguments where they tokenize; raw text otherwise */
      p->first_tok = p->ntok;
      if (p->arg_len && scan(p, p->arg_off, ce, S_ITEM) == IMAP_DONE) {
        p->has_arg = 1;
      } else {
        p->ntok = 0;
        p->depth = 0;
        p->count[0] = 0;
        p->err = NULL;
        p->state = 0;
      }
    }
    i = ce + 1;
    if (i < n && b[i] == ' ') i++;
  }
  p->text_off = i;
  p->text_len = n - i;
  return IMAP_DONE;
}

static int head(imap_parser *p, size_t n) {
  const char *b = p->buf.p;
  size_t t = 0, i, al;
  if (n == 0) return fail(p, p->response ? "empty response" : "empty command");
  while (t < n && b[t] != ' ') t++;
  if (p->response && t == 1 && b[0] == '+') {
    p->tag_ok = 1;
    p->tag_len = 1;
    p->text_mode = 1;
    p->text_off = n > 1 ? 2 : 1;
    p->text_len = n - p->text_off;
    return IMAP_DONE;
  }
  if (t == 0) return fail(p, "missing tag");
  if (!(p->response && t == 1 && b[0] == '*')) {
    for (i = 0; i < t; i++)
      if (!IS(b[i], C_TAG)) return fail(p, "invalid tag");
  }
  p->tag_ok = 1;
  p->tag_len = t;
  if (t == n || t + 1 == n)
    return fail(p, p->response ? "missing response type" : "missing command");
  i = t + 1;
  al = atom_len(b, i, n);
  if (!p->response) {
    if (al == 0) return fail(p, "missing command");
    if (i + al < n && b[i + al] != ' ') return fail(p, "invalid command name");
    p->name_off = i;
    p->name_len = al;
    i += al;
    if (ci_eq(b + p->name_off, al, "UID")) {
      if (i >= n) return fail(p, "missing command after uid");
      i++;
      al = atom_len(b, i, n);
      if (al == 0 || (i + al < n && b[i + al] != ' '))
        return fail(p, "missing command after uid");
      p->uid = 1;
      p->name_off = i;
      p->name_len = al;
      i += al;
    }
    if (i == n) return IMAP_DONE;
    return scan(p, i + 1, n, S_ITEM);
  }
  p->name_off = i;
  p->name_len = al;
  if (is_status(b + i, al) && (i + al == n || b[i + al] == ' '))
    return resp_text(p, i + al + (i + al < n), n);
  if (b[0] != '*') return fail(p, "invalid tagged response");
  p->first_tok = 0;
  return scan(p, i, n, S_ITEM);
}

int imap_feed_line(imap_parser *p, const char *line, size_t n) {
  size_t base;
  if (p->state == 1) return fail(p, "literal expected");
  if (p->state == 0) {
    imap_parser_reset(p);
    if (!need_levels(p, 2)) return fail(p, "out of memory");
    p->count[0] = 0;
    if (n > p->max_line) {
      /* keep a valid tag so that the reply can carry it */
      size_t t = 0, i;
      while (t < n && t < 256 && line[t] != ' ') t++;
      for (i = 0; i < t && IS(line[i], C_TAG); i++) {}
      if (t > 0 && t < n && i == t && ibuf_add(&p->buf, line, t)) {
        p->tag_ok = 1;
        p->tag_len = t;
      }
      return fail(p, "line too long");
    }
    if (!ibuf_add(&p->buf, line, n)) return fail(p, "out of memory");
    p->total = n;
    return head(p, n);
  }
  /* the line after a literal continues the same command */
  if (n > p->max_line) return fail(p, "line too long");
  if (p->total + n > p->max_command)
    return fail(p, p->response ? "response too long" : "command too long");
  base = p->buf.n;
  if (!ibuf_add(&p->buf, line, n)) return fail(p, "out of memory");
  p->total += n;
  p->state = 0;
  return scan(p, base, base + n, S_SEP);
}

static int literal_done(imap_parser *p) {
  p->state = 2;
  return IMAP_NEED_LINE;
}

int imap_feed_literal(imap_parser *p, const char *data, size_t n) {
  size_t base = p->buf.n;
  if (p->state != 1 || n != p->lit_n) return fail(p, "unexpected literal");
  if (!ibuf_add(&p->buf, data, n)) return fail(p, "out of memory");
  p->total += n;
  if (push_tok(p, p->lit_binary ? IMAP_T_LITERAL8 : IMAP_T_LITERAL, base, n, 0))
    return IMAP_ERROR;
  return literal_done(p);
}

int imap_feed_literal_ext(imap_parser *p) {
  if (p->state != 1) return fail(p, "unexpected literal");
  p->total += p->lit_n;
  if (push_tok(p, IMAP_T_EXT, 0, ++p->next, p->lit_binary)) return IMAP_ERROR;
  return literal_done(p);
}

/* ---- sequence sets (RFC 3501 section 9: sequence-set) ---- */

static const char *seq_number(const char *s, size_t n, size_t *i,
                              uint32_t *out) {
  uint64_t v;
  int ov;
  size_t nd;
  if (*i < n && s[*i] == '*') {
    (*i)++;
    *out = 0;
    return NULL;
  }
  nd = parse_digits(s + *i, n - *i, 0xffffffffu, &v, &ov);
  if (nd == 0) return "invalid sequence set";
  if (ov) return "number out of range";
  if (v == 0) return "zero in sequence set";
  *i += nd;
  *out = (uint32_t)v;
  return NULL;
}

const char *imap_sequence_set(const char *s, size_t n,
                              void (*emit)(void *, uint32_t, uint32_t),
                              void *ud) {
  size_t i = 0;
  if (n == 0) return "invalid sequence set";
  for (;;) {
    uint32_t lo, hi;
    const char *e = seq_number(s, n, &i, &lo);
    if (e) return e;
    hi = lo;
    if (i < n && s[i] == ':') {
      i++;
      if ((e = seq_number(s, n, &i, &hi)) != NULL) return e;
    }
    emit(ud, lo, hi);
    if (i == n) return NULL;
    if (s[i] != ',') return "invalid sequence set";
    i++;
  }
}

/* ---- FETCH attributes (RFC 3501 fetch-att, RFC 9051 BINARY) ---- */

/* header-list item at s[pos..n): astring without literals */
long imap_next_field(const char *s, size_t n, size_t pos, size_t *off,
                     size_t *len, int *quoted) {
  size_t i = pos;
  if (i >= n) return 0;
  if (i > 0) {
    if (s[i] != ' ') return -1;
    i++;
  }
  if (i < n && s[i] == '"') {
    size_t start = ++i;
    while (i < n && s[i] != '"') {
      if (s[i] == '\\') {
        if (i + 1 >= n || (s[i + 1] != '"' && s[i + 1] != '\\')) return -1;
        i++;
      } else if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f) {
        return -1;
      }
      i++;
    }
    if (i >= n || i == start) return -1;
    *off = start;
    *len = i - start;
    *quoted = 1;
    return (long)(i + 1);
  }
  *off = i;
  while (i < n && (IS(s[i], C_ATOM) || s[i] == ']')) i++;
  if (i == *off) return -1;
  *len = i - *off;
  *quoted = 0;
  return (long)i;
}

static int prefix_ci(const char *s, size_t n, const char *lit) {
  size_t k = strlen(lit);
  return n >= k && ci_eq(s, k, lit);
}

const char *imap_parse_fetch_att(const char *s, size_t n, imap_fetch_att *a) {
  size_t i = 0, nl;
  int binary = 0;
  memset(a, 0, sizeof *a);
  while (i < n && s[i] != '[') i++;
  nl = i;
  if (nl == 0) return "invalid fetch attribute";
  for (i = 0; i < nl; i++)
    if (!IS(s[i], C_ATOM)) return "invalid fetch attribute";
  if (nl == n) {                     /* no section */
    a->name = s;
    a->name_len = n;
    if (ci_eq(s, n, "BODY.PEEK") || ci_eq(s, n, "BINARY") ||
        ci_eq(s, n, "BINARY.PEEK") || ci_eq(s, n, "BINARY.SIZE"))
      return "missing section";
    return NULL;
  }
  a->section = 1;
  if (ci_eq(s, nl, "BODY")) a->name = "BODY";
  else if (ci_eq(s, nl, "BODY.PEEK")) a->name = "BODY", a->peek = 1;
  else if (ci_eq(s, nl, "BINARY")) a->name = "BINARY", binary = 1;
  else if (ci_eq(s, nl, "BINARY.PEEK")) a->name = "BINARY", a->peek = 1, binary = 1;
  else if (ci_eq(s, nl, "BINARY.SIZE")) a->name = "BINARY.SIZE", binary = 2;
  else return "invalid fetch attribute";
  a->name_len = strlen(a->name);
  i = nl + 1;
  /* section-part = nz-number *("." nz-number) */
  while (i < n && s[i] >= '0' && s[i] <= '9') {
    uint64_t v;
    int ov;
    size_t nd = parse_digits(s + i, n - i, 0xffffffffu, &v, &ov);
    if (ov || v == 0) return "invalid section";
    if (a->nparts == IMAP_MAX_PART) return "section nested too deeply";
    a->part[a->nparts++] = (uint32_t)v;
    i += nd;
    if (i < n && s[i] == '.') {
      i++;
      if (i >= n || s[i] < '0' || s[i] > '9') break;   /* section-text */
    } else if (i < n && s[i] != ']') {
      return "invalid section";
    }
  }
  if (i < n && s[i] != ']') {
    const char *t = s + i;
    size_t rest = n - i;
    if (binary) return "invalid section";
    if (i > nl + 1 && s[i - 1] != '.') return "invalid section";
    if (prefix_ci(t, rest, "HEADER.FIELDS.NOT")) a->text = "HEADER.FIELDS.NOT";
    else if (prefix_ci(t, rest, "HEADER.FIELDS")) a->text = "HEADER.FIELDS";
    else if (prefix_ci(t, rest, "HEADER")) a->text = "HEADER";
    else if (prefix_ci(t, rest, "TEXT")) a->text = "TEXT";
    else if (prefix_ci(t, rest, "MIME") && a->nparts) a->text = "MIME";
    else return "invalid section";
    i += strlen(a->text);
    if (strncmp(a->text, "HEADER.", 7) == 0) {  /* needs a header-list */
      const char *close;
      size_t pos, off, len;
      long r;
      int q, nf = 0;
      if (i + 1 >= n || s[i] != ' ' || s[i + 1] != '(')
        return "missing header list";
      i += 2;
      close = (const char *)memchr(s + i, ')', n - i);
      if (!close) return "missing header list";
      a->fields = s + i;
      a->fields_len = (size_t)(close - (s + i));
      pos = 0;
      while ((r = imap_next_field(a->fields, a->fields_len, pos, &off, &len,
                                  &q)) > 0) {
        pos = (size_t)r;
        nf++;
      }
      if (r < 0 || nf == 0) return "invalid header list";
      i = (size_t)(close - s) + 1;
    }
  } else if (i > nl + 1 && s[i - 1] == '.') {
    return "invalid section";
  }
  if (i >= n || s[i] != ']') return "invalid section";
  i++;
  if (i < n) {
    /* partial = "<" number "." nz-number ">" */
    uint64_t v;
    int ov;
    size_t nd;
    if (s[i] != '<' || binary == 2) return "invalid fetch attribute";
    i++;
    nd = parse_digits(s + i, n - i, 0xffffffffu, &v, &ov);
    if (nd == 0 || ov) return "invalid partial";
    a->origin = (uint32_t)v;
    i += nd;
    if (i >= n || s[i] != '.') return "invalid partial";
    i++;
    nd = parse_digits(s + i, n - i, 0xffffffffu, &v, &ov);
    if (nd == 0 || ov || v == 0) return "invalid partial";
    a->length = (uint32_t)v;
    i += nd;
    if (i + 1 != n || s[i] != '>') return "invalid partial";
    a->partial = 1;
  }
  return NULL;
}

/* ================================================================
** Lua binding
** ================================================================ */

#define PARSER "parley.imap.parser"

static imap_parser *check_parser(lua_State *L) {
  return (imap_parser *)luaL_checkudata(L, 1, PARSER);
}

static uint64_t opt_limit(lua_State *L, int t, const char *k, uint64_t d) {
  uint64_t v = d;
  if (lua_getfield(L, t, k) != LUA_TNIL) {
    int ok;
    lua_Integer i = lua_tointegerx(L, -1, &ok);
    if (!ok || i < 0) luaL_error(L, "limit %s must be a non-negative integer", k);
    v = (uint64_t)i;
  }
  lua_pop(L, 1);
  return v;
}

static int opt_flag(lua_State *L, int t, const char *k, int d) {
  int v = d;
  if (lua_getfield(L, t, k) != LUA_TNIL) v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static int new_parser(lua_State *L, int response) {
  imap_parser *p;
  int has = !lua_isnoneornil(L, 1);
  if (has) luaL_checktype(L, 1, LUA_TTABLE);
  p = (imap_parser *)lua_newuserdatauv(L, sizeof *p, 1);
  imap_parser_init(p, response);
  luaL_setmetatable(L, PARSER);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  if (has) {
    p->max_line = (size_t)opt_limit(L, 1, "max_line", p->max_line);
    p->max_literal = opt_limit(L, 1, "max_literal", p->max_literal);
    p->max_literal_unauth =
        opt_limit(L, 1, "max_literal_unauth", p->max_literal_unauth);
    p->max_nonsync = opt_limit(L, 1, "max_nonsync", p->max_nonsync);
    p->max_command = opt_limit(L, 1, "max_command", p->max_command);
    p->max_depth = (size_t)opt_limit(L, 1, "max_depth", p->max_depth);
    p->max_tokens = (size_t)opt_limit(L, 1, "max_tokens", p->max_tokens);
    p->authenticated = opt_flag(L, 1, "authenticated", p->authenticated);
    p->allow_8bit = opt_flag(L, 1, "allow_8bit", p->allow_8bit);
    if (p->max_depth > 1000) luaL_argerror(L, 1, "max_depth above 1000");
  }
  return 1;
}

static int l_command_parser(lua_State *L) { return new_parser(L, 0); }
static int l_response_parser(lua_State *L) { return new_parser(L, 1); }

static int p_gc(lua_State *L) {
  imap_parser_free(check_parser(L));
  return 0;
}

static int p_tostring(lua_State *L) {
  imap_parser *p = check_parser(L);
  const char *d = p->response ? "response" : "command";
  if (p->state == 1) d = p->response ? "response, literal pending"
                                     : "command, literal pending";
  return parley_tostring(L, d);
}

static int p_reset(lua_State *L) {
  imap_parser *p = check_parser(L);
  imap_parser_reset(p);
  lua_newtable(L);
  lua_setiuservalue(L, 1, 1);
  return 0;
}

static int p_set_authenticated(lua_State *L) {
  imap_parser *p = check_parser(L);
  p->authenticated = lua_isnone(L, 2) ? 1 : lua_toboolean(L, 2);
  return 0;
}

static int p_pending(lua_State *L) {
  imap_parser *p = check_parser(L);
  if (p->state != 1) return 0;
  lua_pushinteger(L, (lua_Integer)p->lit_n);
  return 1;
}

/* ---- tokens to Lua values ---- */

/* push a string token, unescaping quoted; case: 0 keep, 1 lower, 2 upper */
static void push_text(lua_State *L, const char *s, size_t n, int esc, int cs) {
  luaL_Buffer b;
  size_t i;
  if (!esc && !cs) {
    lua_pushlstring(L, s, n);
    return;
  }
  luaL_buffinitsize(L, &b, n);
  for (i = 0; i < n; i++) {
    char c = s[i];
    if (esc && c == '\\' && i + 1 < n) c = s[++i];
    if (cs == 1 && c >= 'A' && c <= 'Z') c = (char)(c + 32);
    else if (cs == 2 && c >= 'a' && c <= 'z') c = (char)(c - 32);
    luaL_addchar(&b, c);
  }
  luaL_pushresult(&b);
}

static void push_ext(lua_State *L, int pidx, size_t k) {
  lua_getiuservalue(L, pidx, 1);
  lua_rawgeti(L, -1, (lua_Integer)k);
  lua_remove(L, -2);
}

/* one scalar token; nil_false turns the atom NIL into false */
static void push_scalar(lua_State *L, imap_parser *p, int pidx,
                        const imap_tok *t, int nil_false, int cs) {
  const char *s = p->buf.p + t->off;
  switch (t->type) {
    case IMAP_T_ATOM:
      if (nil_false && ci_eq(s, t->len, "NIL")) lua_pushboolean(L, 0);
      else push_text(L, s, t->len, 0, cs);
      break;
    case IMAP_T_QUOTED:
      push_text(L, s, t->len, t->esc, cs);
      break;
    case IMAP_T_EXT:
      push_ext(L, pidx, t->len);
      break;
    default:
      push_text(L, s, t->len, 0, cs);
  }
}

static size_t tok_skip(const imap_parser *p, size_t i) {
  return p->tok[i].type == IMAP_T_OPEN ? p->tok[i].off + 1 : i + 1;
}

static char kind_of(const imap_tok *t) {
  if (t->type == IMAP_T_EXT) return t->esc ? 'b' : 'l';
  return (char)t->type;
}

/* array of the values in tokens [from, to) with its kinds string */
static void push_kinds(lua_State *L, imap_parser *p, size_t from, size_t to) {
  luaL_Buffer b;
  size_t i;
  luaL_buffinit(L, &b);
  for (i = from; i < to; i = tok_skip(p, i)) luaL_addchar(&b, kind_of(&p->tok[i]));
  luaL_pushresult(&b);
  lua_setfield(L, -2, "kinds");
}

static void push_range(lua_State *L, imap_parser *p, int pidx, size_t from,
                       size_t to, int nil_false) {
  size_t i, level = 0, n = 0, *idx = p->count;
  for (i = from; i < to; i = tok_skip(p, i)) n++;
  luaL_checkstack(L, (int)p->max_depth + 8, "imap nesting");
  lua_createtable(L, (int)n, 1);
  if (!p->response) push_kinds(L, p, from, to);
  idx[0] = 0;
  for (i = from; i < to; i++) {
    const imap_tok *t = &p->tok[i];
    if (t->type == IMAP_T_OPEN) {
      lua_createtable(L, (int)t->len, !p->response);
      if (!p->response) push_kinds(L, p, i + 1, t->off);
      lua_pushvalue(L, -1);
      lua_rawseti(L, -3, (lua_Integer)++idx[level]);
      idx[++level] = 0;
    } else if (t->type == IMAP_T_CLOSE) {
      lua_pop(L, 1);
      level--;
    } else {
      push_scalar(L, p, pidx, t, nil_false, 0);
      lua_rawseti(L, -2, (lua_Integer)++idx[level]);
    }
  }
}

/* one value at *i (scalar or list), advancing *i */
static void push_value(lua_State *L, imap_parser *p, int pidx, size_t *i) {
  const imap_tok *t = &p->tok[*i];
  if (t->type == IMAP_T_OPEN) {
    push_range(L, p, pidx, *i + 1, t->off, 1);
    *i = t->off + 1;
  } else {
    push_scalar(L, p, pidx, t, 1, 0);
    (*i)++;
  }
}

static void push_tag(lua_State *L, imap_parser *p) {
  if (p->tag_ok) lua_pushlstring(L, p->buf.p + p->tag_off, p->tag_len);
  else lua_pushliteral(L, "*");
}

static void clear_ext(lua_State *L, imap_parser *p) {
  if (p->next) {
    lua_newtable(L);
    lua_setiuservalue(L, 1, 1);
    p->next = 0;
  }
}

static int build_command(lua_State *L, imap_parser *p) {
  lua_createtable(L, 0, 4);
  push_tag(L, p);
  lua_setfield(L, -2, "tag");
  push_text(L, p->buf.p + p->name_off, p->name_len, 0, 2);
  lua_setfield(L, -2, "name");
  if (p->uid) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "uid");
  }
  push_range(L, p, 1, 0, p->ntok, 0);
  lua_setfield(L, -2, "args");
  return 0;
}

/* ---- typed response data ---- */

#define TK(i) (&p->tok[(i)])
#define IS_STR(t) ((t)->type == IMAP_T_QUOTED || (t)->type == IMAP_T_LITERAL || \
                   (t)->type == IMAP_T_LITERAL8 || (t)->type == IMAP_T_EXT)
#define IS_NIL(t) ((t)->type == IMAP_T_ATOM && ci_eq(p->buf.p + (t)->off, (t)->len, "NIL"))

typedef struct {
  lua_State *L;
  imap_parser *p;
  int pidx;
  size_t end;           /* index past the last token of the current list */
  const char *err;
} rctx;

static int tok_num(imap_parser *p, size_t i, uint64_t *v) {
  const imap_tok *t = TK(i);
  return t->type == IMAP_T_ATOM &&
         parse_number(p->buf.p + t->off, t->len, (uint64_t)INT64_MAX, v);
}

/* nstring (atoms accepted as strings, NIL as false) */
static int r_nstring(rctx *c, size_t *i, size_t end, int cs) {
  const imap_tok *t;
  if (*i >= end) return c->err = "missing field", 0;
  t = &c->p->tok[*i];
  if (t->type == IMAP_T_OPEN || t->type == IMAP_T_CLOSE)
    return c->err = "list where a string was expected", 0;
  push_scalar(c->L, c->p, c->pidx, t, 1, cs);
  (*i)++;
  return 1;
}

static int r_number(rctx *c, size_t *i, size_t end) {
  uint64_t v;
  if (*i >= end || !tok_num(c->p, *i, &v)) return c->err = "invalid number", 0;
  lua_pushinteger(c->L, (lua_Integer)v);
  (*i)++;
  return 1;
}

static int r_open(rctx *c, size_t i, size_t end) {
  if (i >= end || c->p->tok[i].type != IMAP_T_OPEN)
    return c->err = "list expected", 0;
  return 1;
}

/* address list: NIL or "(" 1*address ")" */
static int r_addresses(rctx *c, size_t *i, size_t end) {
  lua_State *L = c->L;
  imap_parser *p = c->p;
  size_t j, close, n = 0;
  static const char *const names[] = {"name", "adl", "mailbox", "host"};
  if (*i < end && IS_NIL(TK(*i))) {
    lua_pushboolean(L, 0);
    (*i)++;
    return 1;
  }
  if (!r_open(c, *i, end)) return 0;
  close = TK(*i)->off;
  lua_createtable(L, (int)TK(*i)->len, 0);
  for (j = *i + 1; j < close;) {
    size_t aclose, k;
    int f;
    if (!r_open(c, j, close)) return 0;
    aclose = TK(j)->off;
    k = j + 1;
    lua_createtable(L, 0, 4);
    for (f = 0; f < 4; f++) {
      if (!r_nstring(c, &k, aclose, 0)) return 0;
      lua_setfield(L, -2, names[f]);
    }
    if (k != aclose) return c->err = "invalid address", 0;
    lua_rawseti(L, -2, (lua_Integer)++n);
    j = aclose + 1;
  }
  *i = close + 1;
  return 1;
}

static int r_envelope(rctx *c, size_t *i, size_t end) {
  lua_State *L = c->L;
  size_t close, k;
  int f;
  static const char *const names[] = {"date", "subject", "from", "sender",
                                      "reply_to", "to", "cc", "bcc",
                                      "in_reply_to", "message_id"};
  if (!r_open(c, *i, end)) return 0;
  close = c->p->tok[*i].off;
  k = *i + 1;
  lua_createtable(L, 0, 10);
  for (f = 0; f < 10; f++) {
    if (f >= 2 && f <= 7) {
      if (!r_addresses(c, &k, close)) return 0;
    } else if (!r_nstring(c, &k, close, 0)) {
      return 0;
    }
    lua_setfield(L, -2, names[f]);
  }
  if (k != close) return c->err = "invalid envelope", 0;
  *i = close + 1;
  return 1;
}

/* body-fld-param: NIL or "(" string SP string *(SP string SP string) ")" */
static int r_params(rctx *c, size_t *i, size_t end) {
  lua_State *L = c->L;
  imap_parser *p = c->p;
  size_t j, close;
  if (*i < end && IS_NIL(TK(*i))) {
    lua_pushboolean(L, 0);
    (*i)++;
    return 1;
  }
  if (!r_open(c, *i, end)) return 0;
  close = TK(*i)->off;
  if (TK(*i)->len % 2) return c->err = "invalid body parameters", 0;
  lua_createtable(L, 0, (int)(TK(*i)->len / 2));
  for (j = *i + 1; j < close;) {
    if (TK(j)->type == IMAP_T_OPEN) return c->err = "invalid body parameters", 0;
    if (!r_nstring(c, &j, close, 1)) return 0;
    if (!r_nstring(c, &j, close, 0)) return 0;
    if (lua_type(L, -2) == LUA_TSTRING) lua_rawset(L, -3);
    else lua_pop(L, 2);
  }
  *i = close + 1;
  return 1;
}

/* the optional extension fields shared by both kinds of part */
static int r_body_ext(rctx *c, size_t *i, size_t close) {
  lua_State *L = c->L;
  imap_parser *p = c->p;
  /* body-fld-dsp */
  if (*i >= close) return 1;
  if (IS_NIL(TK(*i))) {
    lua_pushboolean(L, 0);
    (*i)++;
  } else {
    size_t k, dclose;
    if (!r_open(c, *i, close)) return 0;
    dclose = TK(*i)->off;
    k = *i + 1;
    lua_createtable(L, 0, 2);
    if (!r_nstring(c, &k, dclose, 1)) return 0;
    lua_setfield(L, -2, "type");
    if (!r_params(c, &k, dclose)) return 0;
    lua_setfield(L, -2, "params");
    if (k != dclose) return c->err = "invalid disposition", 0;
    *i = dclose + 1;
  }
  lua_setfield(L, -2, "disposition");
  /* body-fld-lang */
  if (*i >= close) return 1;
  if (TK(*i)->type == IMAP_T_OPEN) push_value(L, p, c->pidx, i);
  else if (!r_nstring(c, i, close, 0)) return 0;
  lua_setfield(L, -2, "language");
  /* body-fld-loc */
  if (*i >= close) return 1;
  if (!r_nstring(c, i, close, 0)) return 0;
  lua_setfield(L, -2, "location");
  /* body-extension: kept generic */
  if (*i >= close) return 1;
  push_range(L, p, c->pidx, *i, close, 1);
  lua_setfield(L, -2, "extension");
  *i = close;
  return 1;
}

static int r_body(rctx *c, size_t *i, size_t end, size_t level) {
  lua_State *L = c->L;
  imap_parser *p = c->p;
  size_t close, k, n = 0;
  int text = 0, msg = 0;
  if (level > p->max_depth || !lua_checkstack(L, 16))
    return c->err = "body structure too deep", 0;
  if (!r_open(c, *i, end)) return 0;
  close = TK(*i)->off;
  k = *i + 1;
  if (k < close && TK(k)->type == IMAP_T_OPEN) {
    /* body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart] */
    lua_createtable(L, 0, 8);
    lua_pushliteral(L, "multipart");
    lua_setfield(L, -2, "type");
    lua_newtable(L);
    while (k < close && TK(k)->type == IMAP_T_OPEN) {
      if (!r_body(c, &k, close, level + 1)) return 0;
      lua_rawseti(L, -2, (lua_Integer)++n);
    }
    lua_setfield(L, -2, "parts");
    if (!r_nstring(c, &k, close, 1)) return 0;
    lua_setfield(L, -2, "subtype");
    if (k < close) {
      if (!r_params(c, &k, close)) return 0;
      lua_setfield(L, -2, "params");
      if (!r_body_ext(c, &k, close)) return 0;
    }
  } else {
    const char *ty;
    size_t tyl;
    lua_createtable(L, 0, 16);
    if (!r_nstring(c, &k, close, 1)) return 0;
    ty = lua_tolstring(L, -1, &tyl);
    text = ty && tyl == 4 && memcmp(ty, "text", 4) == 0;
    msg = ty && tyl == 7 && memcmp(ty, "message", 7) == 0;
    lua_setfield(L, -2, "type");
    if (!r_nstring(c, &k, close, 1)) return 0;
    ty = lua_tolstring(L, -1, &tyl);
    msg = msg && ty && ((tyl == 6 && memcmp(ty, "rfc822", 6) == 0) ||
                        (tyl == 6 && memcmp(ty, "global", 6) == 0));
    lua_setfield(L, -2, "subtype");
    if (!r_params(c, &k, close)) return 0;
    lua_setfield(L, -2, "params");
    if (!r_nstring(c, &k, close, 0)) return 0;
    lua_setfield(L, -2, "id");
    if (!r_nstring(c, &k, close, 0)) return 0;
    lua_setfield(L, -2, "description");
    if (!r_nstring(c, &k, close, 2)) return 0;
    lua_setfield(L, -2, "encoding");
    if (!r_number(c, &k, close)) return 0;
    lua_setfield(L, -2, "size");
    if (msg && k < close && TK(k)->type == IMAP_T_OPEN) {
      /* body-type-msg: ... SP envelope SP body SP body-fld-lines */
      if (!r_envelope(c, &k, close)) return 0;
      lua_setfield(L, -2, "envelope");
      if (!r_body(c, &k, close, level + 1)) return 0;
      lua_setfield(L, -2, "body");
      text = 1;
    }
    if (text) {
      if (!r_number(c, &k, close)) return 0;
      lua_setfield(L, -2, "lines");
    }
    if (k < close) {
      if (!r_nstring(c, &k, close, 0)) return 0;
      lua_setfield(L, -2, "md5");
      if (!r_body_ext(c, &k, close)) return 0;
    }
  }
  if (k != close) return c->err = "invalid body structure", 0;
  *i = close + 1;
  return 1;
}

static int r_fetch(rctx *c, size_t *i, size_t end) {
  lua_State *L = c->L;
  imap_parser *p = c->p;
  size_t close, k;
  if (!r_open(c, *i, end)) return 0;
  close = TK(*i)->off;
  lua_createtable(L, 0, (int)(TK(*i)->len / 2));
  for (k = *i + 1; k < close;) {
    const imap_tok *t = TK(k);
    const char *s = p->buf.p + t->off;
    if (t->type != IMAP_T_ATOM) return c->err = "invalid fetch item", 0;
    push_text(L, s, t->len, 0, 2);
    k++;
    if (k >= close) return c->err = "missing fetch value", 0;
    if (ci_eq(s, t->len, "UID") || ci_eq(s, t->len, "RFC822.SIZE")) {
      if (!r_number(c, &k, close)) return 0;
    } else if (ci_eq(s, t->len, "ENVELOPE")) {
      if (!r_envelope(c, &k, close)) return 0;
    } else if ((ci_eq(s, t->len, "BODY") || ci_eq(s, t->len, "BODYSTRUCTURE")) &&
               TK(k)->type == IMAP_T_OPEN) {
      if (!r_body(c, &k, close, 1)) return 0;
    } else if (ci_eq(s, t->len, "MODSEQ") && TK(k)->type == IMAP_T_OPEN &&
               TK(k)->len == 1) {
      k++;
      if (!r_number(c, &k, close)) return 0;
      if (k >= close || TK(k)->type != IMAP_T_CLOSE)
        return c->err = "invalid modseq", 0;
      k++;
    } else {
      push_value(L, p, c->pidx, &k);
    }
    lua_rawset(L, -3);
  }
  *i = close + 1;
  return 1;
}

static const char *const numeric_codes[] = {
    "UIDVALIDITY", "UIDNEXT", "UNSEEN", "HIGHESTMODSEQ", "APPENDLIMIT", NULL};

static void build_code(rctx *c) {
  lua_State *L = c->L;
  imap_parser *p = c->p;
  const char *s = p->buf.p + p->code_off;
  size_t n = p->code_len, nt = p->ntok;
  uint64_t v;
  int k;
  push_text(L, s, n, 0, 2);
  lua_setfield(L, -2, "code");
  if (p->has_arg) {
    for (k = 0; numeric_codes[k]; k++) {
      if (ci_eq(s, n, numeric_codes[k]) && nt == 1 && tok_num(p, 0, &v)) {
        lua_pushinteger(L, (lua_Integer)v);
        goto set;
      }
    }
    if (ci_eq(s, n, "APPENDUID") && nt == 2 && tok_num(p, 0, &v) &&
        TK(1)->type == IMAP_T_ATOM) {
      lua_createtable(L, 0, 3);
      lua_pushinteger(L, (lua_Integer)v);
      lua_setfield(L, -2, "uidvalidity");
      push_scalar(L, p, c->pidx, TK(1), 0, 0);
      lua_setfield(L, -2, "uids");
      if (tok_num(p, 1, &v)) {
        lua_pushinteger(L, (lua_Integer)v);
        lua_setfield(L, -2, "uid");
      }
      goto set;
    }
    if (ci_eq(s, n, "COPYUID") && nt == 3 && tok_num(p, 0, &v) &&
        TK(1)->type == IMAP_T_ATOM && TK(2)->type == IMAP_T_ATOM) {
      lua_createtable(L, 0, 3);
      lua_pushinteger(L, (lua_Integer)v);
      lua_setfield(L, -2, "uidvalidity");
      push_scalar(L, p, c->pidx, TK(1), 0, 0);
      lua_setfield(L, -2, "source");
      push_scalar(L, p, c->pidx, TK(2), 0, 0);
      lua_setfield(L, -2, "dest");
      goto set;
    }
    if ((ci_eq(s, n, "PERMANENTFLAGS") || ci_eq(s, n, "BADCHARSET")) &&
        TK(0)->type == IMAP_T_OPEN && TK(0)->off + 1 == nt) {
      push_range(L, p, c->pidx, 1, TK(0)->off, 1);
      goto set;
    }
    if (ci_eq(s, n, "CAPABILITY")) {
      push_range(L, p, c->pidx, 0, nt, 0);
      goto set;
    }
  }
  if (p->arg_len == 0) return;
  lua_pushlstring(L, p->buf.p + p->arg_off, p->arg_len);
set:
  lua_setfield(L, -2, "code_data");
}

static const char *build_response(lua_State *L, imap_parser *p) {
  rctx c;
  const char *s;
  size_t i = 0, n = p->ntok, tl;
  uint64_t num;
  c.L = L;
  c.p = p;
  c.pidx = 1;
  c.err = NULL;
  lua_createtable(L, 0, 6);
  push_tag(L, p);
  lua_setfield(L, -2, "tag");
  if (p->text_mode) {
    if (p->buf.p[0] == '+' && p->tag_len == 1) lua_pushliteral(L, "CONTINUE");
    else push_text(L, p->buf.p + p->name_off, p->name_len, 0, 2);
    lua_setfield(L, -2, "type");
    lua_pushlstring(L, p->buf.p + p->text_off, p->text_len);
    lua_setfield(L, -2, "text");
    if (p->has_code) build_code(&c);
    return NULL;
  }
  if (n == 0 || TK(0)->type != IMAP_T_ATOM) return "invalid response";
  if (tok_num(p, 0, &num)) {
    lua_pushinteger(L, (lua_Integer)num);
    lua_setfield(L, -2, "number");
    i = 1;
    if (i >= n || TK(i)->type != IMAP_T_ATOM) return "invalid response";
  }
  s = p->buf.p + TK(i)->off;
  tl = TK(i)->len;
  push_text(L, s, tl, 0, 2);
  lua_setfield(L, -2, "type");
  i++;
  if (i == 2) {
    if (ci_eq(s, tl, "FETCH")) {
      if (!r_fetch(&c, &i, n)) return c.err;
      lua_setfield(L, -2, "items");
    } else if (i < n) {
      push_range(L, p, 1, i, n, 1);
      lua_setfield(L, -2, "data");
      i = n;
    }
  } else if (ci_eq(s, tl, "CAPABILITY") || ci_eq(s, tl, "ENABLED")) {
    push_range(L, p, 1, i, n, 0);
    lua_setfield(L, -2, "list");
    i = n;
  } else if (ci_eq(s, tl, "FLAGS")) {
    if (!r_open(&c, i, n)) return c.err;
    push_value(L, p, 1, &i);
    lua_setfield(L, -2, "flags");
  } else if (ci_eq(s, tl, "LIST") || ci_eq(s, tl, "LSUB")) {
    /* mailbox-list = "(" [mbx-list-flags] ")" SP (DQUOTE QUOTED-CHAR DQUOTE / nil) SP mailbox */
    if (!r_open(&c, i, n)) return c.err;
    push_value(L, p, 1, &i);
    lua_setfield(L, -2, "flags");
    if (!r_nstring(&c, &i, n, 0)) return c.err;
    lua_setfield(L, -2, "delimiter");
    if (i >= n || TK(i)->type == IMAP_T_OPEN) return "missing mailbox";
    push_scalar(L, p, 1, TK(i), 0, 0);
    lua_setfield(L, -2, "name");
    i++;
    if (i < n) {
      push_range(L, p, 1, i, n, 1);
      lua_setfield(L, -2, "extended");
      i = n;
    }
  } else if (ci_eq(s, tl, "STATUS")) {
    size_t close;
    if (i >= n || TK(i)->type == IMAP_T_OPEN) return "missing mailbox";
    push_scalar(L, p, 1, TK(i), 0, 0);
    lua_setfield(L, -2, "mailbox");
    i++;
    if (!r_open(&c, i, n)) return c.err;
    close = TK(i)->off;
    lua_createtable(L, 0, 5);
    for (i++; i < close;) {
      if (TK(i)->type != IMAP_T_ATOM) return "invalid status item";
      push_text(L, p->buf.p + TK(i)->off, TK(i)->len, 0, 2);
      i++;
      if (!r_number(&c, &i, close)) return c.err;
      lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "items");
    i = close + 1;
  } else if (ci_eq(s, tl, "SEARCH") || ci_eq(s, tl, "SORT")) {
    lua_Integer k = 0;
    lua_createtable(L, (int)(n - i), 0);
    for (; i < n; i++) {
      if (TK(i)->type == IMAP_T_OPEN) {  /* RFC 7162: (MODSEQ n) */
        size_t j = i + 1;
        if (TK(i)->len != 2 || TK(j)->type != IMAP_T_ATOM ||
            !ci_eq(p->buf.p + TK(j)->off, TK(j)->len, "MODSEQ") ||
            !tok_num(p, j + 1, &num))
          return "invalid search response";
        lua_pushinteger(L, (lua_Integer)num);
        lua_setfield(L, -3, "modseq");
        i = TK(i)->off;
        continue;
      }
      if (!tok_num(p, i, &num)) return "invalid number";
      lua_pushinteger(L, (lua_Integer)num);
      lua_rawseti(L, -2, ++k);
    }
    lua_setfield(L, -2, "numbers");
  } else if (i < n) {
    push_range(L, p, 1, i, n, 1);
    lua_setfield(L, -2, "data");
    i = n;
  }
  if (i != n) return "unexpected data after response";
  return NULL;
}

static int feed_result(lua_State *L, imap_parser *p, int r) {
  int top = lua_gettop(L);
  switch (r) {
    case IMAP_NEED_LITERAL:
      lua_pushliteral(L, "literal");
      lua_pushinteger(L, (lua_Integer)p->lit_n);
      lua_pushboolean(L, p->lit_nonsync);
      lua_pushboolean(L, p->lit_binary);
      return 4;
    case IMAP_NEED_LINE:
      lua_pushliteral(L, "line");
      return 1;
    case IMAP_DONE: {
      const char *err = NULL;
      lua_pushliteral(L, "done");
      if (p->response) {
        err = build_response(L, p);
      } else {
        build_command(L, p);
      }
      clear_ext(L, p);
      if (!err) return 2;
      lua_settop(L, top);
      p->err = err;
      break;
    }
    default:
      break;
  }
  clear_ext(L, p);
  lua_pushnil(L);
  lua_pushstring(L, p->err ? p->err : "syntax error");
  push_tag(L, p);
  if (p->lit_refused) {
    if (p->lit_n != UINT64_MAX) lua_pushinteger(L, (lua_Integer)p->lit_n);
    else lua_pushnil(L);
    lua_pushboolean(L, p->lit_nonsync);
    return 5;
  }
  return 3;
}

static int p_feed_line(lua_State *L) {
  imap_parser *p = check_parser(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  if (p->state == 1)
    return luaL_error(L, "a literal of %I bytes is expected before the next line",
                      (lua_Integer)p->lit_n);
  return feed_result(L, p, imap_feed_line(p, s, n));
}

static int p_feed_literal(lua_State *L) {
  imap_parser *p = check_parser(L);
  luaL_checkany(L, 2);
  if (p->state != 1) return luaL_error(L, "no literal is expected");
  if (lua_type(L, 2) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, 2, &n);
    if (n != p->lit_n) return luaL_argerror(L, 2, "literal has the wrong length");
    return feed_result(L, p, imap_feed_literal(p, s, n));
  }
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, (lua_Integer)p->next + 1);
  lua_pop(L, 1);
  return feed_result(L, p, imap_feed_literal_ext(p));
}

/* ---- encoding ---- */

typedef struct {
  int atom, nonsync, utf8;
  size_t max_quoted;
} quote_opts;

static int is_atom(const char *s, size_t n) {
  size_t i;
  if (n == 0 || ci_eq(s, n, "NIL")) return 0;
  for (i = 0; i < n; i++)
    if (!IS(s[i], C_ATOM)) return 0;
  return 1;
}

/* flag = "\" atom, or "\*" (flag-perm) */
static int is_flag(const char *s, size_t n) {
  if (n >= 2 && s[0] == '\\') {
    size_t i;
    if (n == 2 && s[1] == '*') return 1;
    for (i = 1; i < n; i++)
      if (!IS(s[i], C_ATOM)) return 0;
    return 1;
  }
  return is_atom(s, n);
}

static int quotable(const char *s, size_t n, const quote_opts *o) {
  size_t i;
  if (n > o->max_quoted) return 0;
  for (i = 0; i < n;) {
    unsigned char c = (unsigned char)s[i];
    if (c == 0 || c == '\r' || c == '\n') return 0;
    if (c >= 0x80) {
      uint32_t cp;
      size_t len;
      if (!o->utf8) return 0;
      len = utf8_get((const unsigned char *)s + i, n - i, &cp);
      if (!len) return 0;
      i += len;
      continue;
    }
    i++;
  }
  return 1;
}

/* append s as atom / quoted / literal; returns 1 for a literal, -1 OOM */
static int put_string(imap_buf *b, const char *s, size_t n,
                      const quote_opts *o) {
  if (o->atom && is_atom(s, n)) return ibuf_add(b, s, n) ? 0 : -1;
  if (quotable(s, n, o)) {
    size_t i, start = 0;
    if (!ibuf_reserve(b, n + 2) || !ibuf_add(b, "\"", 1)) return -1;
    for (i = 0; i < n; i++) {
      if (s[i] == '"' || s[i] == '\\') {
        if (!ibuf_add(b, s + start, i - start) || !ibuf_add(b, "\\", 1))
          return -1;
        start = i;
      }
    }
    if (!ibuf_add(b, s + start, n - start) || !ibuf_add(b, "\"", 1)) return -1;
    return 0;
  } else {
    char head[40];
    int hl = snprintf(head, sizeof head, "{%lu%s}\r\n", (unsigned long)n,
                      o->nonsync ? "+" : "");
    if (!ibuf_add(b, head, (size_t)hl) || !ibuf_add(b, s, n)) return -1;
    return 1;
  }
}

static int l_quote(lua_State *L) {
  quote_opts o = {1, 0, 0, 1024};
  imap_buf b = {NULL, 0, 0};
  size_t n;
  const char *s;
  int r;
  if (lua_isnoneornil(L, 1) ||
      (lua_type(L, 1) == LUA_TBOOLEAN && !lua_toboolean(L, 1))) {
    lua_pushliteral(L, "NIL");
    lua_pushboolean(L, 0);
    return 2;
  }
  s = luaL_checklstring(L, 1, &n);
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    o.atom = opt_flag(L, 2, "atom", 1);
    o.nonsync = opt_flag(L, 2, "nonsync", 0);
    o.utf8 = opt_flag(L, 2, "utf8", 0);
    o.max_quoted = (size_t)opt_limit(L, 2, "max_quoted", 1024);
  }
  r = put_string(&b, s, n, &o);
  if (r < 0) {
    imap_buf_free(&b);
    return luaL_error(L, "out of memory");
  }
  lua_pushlstring(L, b.p, b.n);
  imap_buf_free(&b);
  lua_pushboolean(L, r == 1);
  return 2;
}

/* value at idx: number, false (NIL), string, {raw=...} or a list */
static const char *fmt_value(lua_State *L, int idx, imap_buf *b, int atoms,
                             int depth) {
  static const quote_opts so = {0, 0, 0, 1024};
  switch (lua_type(L, idx)) {
    case LUA_TNUMBER: {
      char tmp[32];
      int ok, k;
      lua_Integer v = lua_tointegerx(L, idx, &ok);
      if (!ok || v < 0) return "numbers must be non-negative integers";
      k = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
      return ibuf_add(b, tmp, (size_t)k) ? NULL : "out of memory";
    }
    case LUA_TBOOLEAN:
      if (lua_toboolean(L, idx)) return "true has no IMAP form";
      return ibuf_add(b, "NIL", 3) ? NULL : "out of memory";
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      if (atoms && is_flag(s, n)) return ibuf_add(b, s, n) ? NULL : "out of memory";
      return put_string(b, s, n, &so) < 0 ? "out of memory" : NULL;
    }
    case LUA_TTABLE: {
      lua_Integer i, len;
      if (depth > 100) return "list nested too deeply";
      if (lua_getfield(L, idx, "raw") == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        int ok = ibuf_add(b, s, n);
        lua_pop(L, 1);
        return ok ? NULL : "out of memory";
      }
      lua_pop(L, 1);
      if (!lua_checkstack(L, 4)) return "list nested too deeply";
      len = (lua_Integer)lua_rawlen(L, idx);
      if (!ibuf_add(b, "(", 1)) return "out of memory";
      for (i = 1; i <= len; i++) {
        const char *e;
        if (i > 1 && !ibuf_add(b, " ", 1)) return "out of memory";
        lua_rawgeti(L, idx, i);
        e = fmt_value(L, lua_gettop(L), b, atoms, depth + 1);
        lua_pop(L, 1);
        if (e) return e;
      }
      return ibuf_add(b, ")", 1) ? NULL : "out of memory";
    }
    default:
      return "value has no IMAP form";
  }
}

static int l_format_list(lua_State *L) {
  imap_buf b = {NULL, 0, 0};
  const char *e;
  luaL_checktype(L, 1, LUA_TTABLE);
  e = fmt_value(L, 1, &b, lua_toboolean(L, 2), 0);
  if (e) {
    imap_buf_free(&b);
    return luaL_argerror(L, 1, e);
  }
  lua_pushlstring(L, b.p, b.n);
  imap_buf_free(&b);
  return 1;
}

static int l_fetch_response(lua_State *L) {
  imap_buf b = {NULL, 0, 0};
  lua_Integer seq = luaL_checkinteger(L, 1), i, len;
  const char *e = NULL;
  char head[48];
  int k;
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_argcheck(L, seq > 0, 1, "sequence number must be positive");
  len = (lua_Integer)lua_rawlen(L, 2);
  luaL_argcheck(L, len % 2 == 0, 2, "items must be name, value pairs");
  k = snprintf(head, sizeof head, "* %lld FETCH (", (long long)seq);
  if (!ibuf_add(&b, head, (size_t)k)) e = "out of memory";
  for (i = 1; i <= len && !e; i += 2) {
    size_t n, j;
    const char *name;
    lua_rawgeti(L, 2, i);
    name = lua_tolstring(L, -1, &n);
    if (!name || n == 0) e = "item name must be a string";
    for (j = 0; !e && j < n; j++)
      if (name[j] == '\r' || name[j] == '\n' || name[j] == 0) e = "invalid item name";
    if (!e && ((i > 1 && !ibuf_add(&b, " ", 1)) || !ibuf_add(&b, name, n) ||
               !ibuf_add(&b, " ", 1)))
      e = "out of memory";
    if (!e) {
      lua_rawgeti(L, 2, i + 1);
      e = fmt_value(L, lua_gettop(L), &b, ci_eq(name, n, "FLAGS"), 0);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  if (!e && !ibuf_add(&b, ")\r\n", 3)) e = "out of memory";
  if (e) {
    imap_buf_free(&b);
    return luaL_argerror(L, 2, e);
  }
  lua_pushlstring(L, b.p, b.n);
  imap_buf_free(&b);
  return 1;
}

/* ---- modified UTF-7 ---- */

static int utf7(lua_State *L, int encode) {
  imap_buf b = {NULL, 0, 0};
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  const char *e = encode ? imap_utf7_encode(s, n, &b) : imap_utf7_decode(s, n, &b);
  if (e) {
    imap_buf_free(&b);
    lua_pushnil(L);
    lua_pushstring(L, e);
    return 2;
  }
  lua_pushlstring(L, b.p ? b.p : "", b.n);
  imap_buf_free(&b);
  return 1;
}

static int l_utf7_encode(lua_State *L) { return utf7(L, 1); }
static int l_utf7_decode(lua_State *L) { return utf7(L, 0); }

/* ---- sequence sets ---- */

typedef struct {
  lua_State *L;
  lua_Integer n;
  int has_max;
  uint32_t max;
} seq_ctx;

static void seq_emit(void *ud, uint32_t lo, uint32_t hi) {
  seq_ctx *c = (seq_ctx *)ud;
  lua_State *L = c->L;
  if (c->has_max) {
    if (lo == 0) lo = c->max;
    if (hi == 0) hi = c->max;
  }
  if ((lo == 0 && hi != 0) || (lo && hi && lo > hi)) {   /* "*:4" is "4:*" */
    uint32_t t = lo;
    lo = hi;
    hi = t;
  }
  lua_createtable(L, 2, 0);
  if (lo) lua_pushinteger(L, lo); else lua_pushliteral(L, "*");
  lua_rawseti(L, -2, 1);
  if (hi) lua_pushinteger(L, hi); else lua_pushliteral(L, "*");
  lua_rawseti(L, -2, 2);
  lua_rawseti(L, -2, ++c->n);
}

static int l_parse_sequence_set(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  const char *e;
  seq_ctx c;
  c.L = L;
  c.n = 0;
  c.has_max = !lua_isnoneornil(L, 2);
  c.max = 0;
  if (c.has_max) {
    lua_Integer m = luaL_checkinteger(L, 2);
    luaL_argcheck(L, m >= 0 && m <= 0xffffffffLL, 2, "max out of range");
    c.max = (uint32_t)m;
  }
  lua_settop(L, 2);
  lua_newtable(L);
  e = imap_sequence_set(s, n, seq_emit, &c);
  if (e) {
    lua_pushnil(L);
    lua_pushstring(L, e);
    return 2;
  }
  return 1;
}

/* ---- FETCH attributes ---- */

static void push_att(lua_State *L, const imap_fetch_att *a) {
  luaL_Buffer key;
  int k;
  lua_createtable(L, 0, 8);
  push_text(L, a->name, a->name_len, 0, 2);
  lua_setfield(L, -2, "name");
  if (!a->section) {
    push_text(L, a->name, a->name_len, 0, 2);
    lua_setfield(L, -2, "key");
    return;
  }
  lua_pushboolean(L, a->peek);
  lua_setfield(L, -2, "peek");
  if (a->nparts) {
    lua_createtable(L, a->nparts, 0);
    for (k = 0; k < a->nparts; k++) {
      lua_pushinteger(L, a->part[k]);
      lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "part");
  }
  if (a->text) {
    lua_pushstring(L, a->text);
    lua_setfield(L, -2, "text");
  }
  if (a->fields) {
    size_t pos = 0, off, len;
    long r;
    int q;
    lua_Integer nf = 0;
    lua_newtable(L);
    while ((r = imap_next_field(a->fields, a->fields_len, pos, &off, &len, &q)) > 0) {
      push_text(L, a->fields + off, len, q, 2);
      lua_rawseti(L, -2, ++nf);
      pos = (size_t)r;
    }
    lua_setfield(L, -2, "fields");
  }
  if (a->partial) {
    lua_createtable(L, 2, 0);
    lua_pushinteger(L, a->origin);
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, a->length);
    lua_rawseti(L, -2, 2);
    lua_setfield(L, -2, "partial");
  }
  /* section text as the server echoes it: parts, text, header list */
  luaL_buffinit(L, &key);
  for (k = 0; k < a->nparts; k++) {
    if (k) luaL_addchar(&key, '.');
    lua_pushinteger(L, a->part[k]);
    luaL_addvalue(&key);
  }
  if (a->text) {
    if (a->nparts) luaL_addchar(&key, '.');
    luaL_addstring(&key, a->text);
  }
  luaL_pushresult(&key);
  if (a->fields) {
    /* " (" fields ")" with each field upper-cased */
    lua_getfield(L, -2, "fields");
    lua_pushliteral(L, " (");
    {
      lua_Integer j, nf = (lua_Integer)lua_rawlen(L, -2);
      for (j = 1; j <= nf; j++) {
        size_t fl;
        const char *f;
        lua_rawgeti(L, -2, j);
        f = lua_tolstring(L, -1, &fl);
        if (!is_atom(f, fl)) {
          imap_buf qb = {NULL, 0, 0};
          static const quote_opts qo = {0, 0, 0, (size_t)-1};
          if (put_string(&qb, f, fl, &qo) < 0) {
            imap_buf_free(&qb);
            luaL_error(L, "out of memory");
          }
          lua_pop(L, 1);
          lua_pushlstring(L, qb.p, qb.n);
          imap_buf_free(&qb);
        }
        if (j > 1) {
          lua_pushliteral(L, " ");
          lua_insert(L, -2);
          lua_concat(L, 3);
        } else {
          lua_concat(L, 2);
        }
      }
    }
    lua_pushliteral(L, ")");
    lua_concat(L, 2);
    lua_remove(L, -2);        /* the fields table */
    lua_concat(L, 2);
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "section");
  /* key: NAME[section]<origin> */
  push_text(L, a->name, a->name_len, 0, 2);
  lua_pushliteral(L, "[");
  lua_pushvalue(L, -3);
  lua_pushliteral(L, "]");
  lua_concat(L, 4);
  if (a->partial) {
    lua_pushfstring(L, "<%I>", (lua_Integer)a->origin);
    lua_concat(L, 2);
  }
  lua_setfield(L, -3, "key");
  lua_pop(L, 1);
}

static int att_kind_ok(lua_State *L, int kinds_idx, lua_Integer i) {
  size_t n;
  const char *k;
  if (lua_type(L, kinds_idx) != LUA_TSTRING) return 1;
  k = lua_tolstring(L, kinds_idx, &n);
  return i >= 1 && (size_t)i <= n && k[i - 1] == 'a';
}

static int l_parse_fetch_atts(lua_State *L) {
  lua_Integer i = luaL_checkinteger(L, 2), n = 0;
  imap_fetch_att a;
  const char *e;
  size_t len;
  const char *s;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  lua_getfield(L, 1, "kinds");      /* 3 */
  lua_rawgeti(L, 1, i);             /* 4 */
  lua_newtable(L);                  /* 5: result */
  if (lua_type(L, 4) == LUA_TSTRING) {
    static const char *const all[] = {"FLAGS", "INTERNALDATE", "RFC822.SIZE",
                                      "ENVELOPE", "BODY"};
    int count = 0, k;
    if (!att_kind_ok(L, 3, i)) goto bad;
    s = lua_tolstring(L, 4, &len);
    if (ci_eq(s, len, "ALL")) count = 4;
    else if (ci_eq(s, len, "FAST")) count = 3;
    else if (ci_eq(s, len, "FULL")) count = 5;
    if (count) {
      for (k = 0; k < count; k++) {
        imap_parse_fetch_att(all[k], strlen(all[k]), &a);
        push_att(L, &a);
        lua_rawseti(L, 5, ++n);
      }
    } else {
      if ((e = imap_parse_fetch_att(s, len, &a)) != NULL) goto fail;
      push_att(L, &a);
      lua_rawseti(L, 5, ++n);
    }
  } else if (lua_type(L, 4) == LUA_TTABLE) {
    lua_Integer j, m = (lua_Integer)lua_rawlen(L, 4);
    lua_getfield(L, 4, "kinds");    /* 6 */
    if (m == 0) {
      e = "empty fetch attribute list";
      goto fail;
    }
    for (j = 1; j <= m; j++) {
      lua_rawgeti(L, 4, j);
      if (lua_type(L, -1) != LUA_TSTRING || !att_kind_ok(L, 6, j)) goto bad;
      s = lua_tolstring(L, -1, &len);
      if (ci_eq(s, len, "ALL") || ci_eq(s, len, "FAST") || ci_eq(s, len, "FULL")) {
        e = "fetch macro inside a list";
        goto fail;
      }
      if ((e = imap_parse_fetch_att(s, len, &a)) != NULL) goto fail;
      push_att(L, &a);
      lua_rawseti(L, 5, ++n);
      lua_pop(L, 1);
    }
    lua_settop(L, 5);
  } else {
    e = "missing fetch attributes";
    goto fail;
  }
  lua_pushinteger(L, i + 1);
  return 2;
bad:
  e = "invalid fetch attribute";
fail:
  lua_pushnil(L);
  lua_pushstring(L, e);
  return 2;
}

/* ---- opener ---- */

int parley_open_imap(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"feed_line", p_feed_line},
      {"feed_literal", p_feed_literal},
      {"reset", p_reset},
      {"set_authenticated", p_set_authenticated},
      {"pending", p_pending},
      {NULL, NULL}};
  static const luaL_Reg meta[] = {
      {"__gc", p_gc}, {"__close", p_gc}, {"__tostring", p_tostring}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {
      {"command_parser", l_command_parser},
      {"response_parser", l_response_parser},
      {"parse_fetch_atts", l_parse_fetch_atts},
      {"parse_sequence_set", l_parse_sequence_set},
      {"quote", l_quote},
      {"format_list", l_format_list},
      {"fetch_response", l_fetch_response},
      {"utf7_encode", l_utf7_encode},
      {"utf7_decode", l_utf7_decode},
      {NULL, NULL}};
  imap_init();
  parley_newclass(L, PARSER, methods, meta);
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "imap");
  return 0;
}
