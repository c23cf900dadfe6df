/*
** core.telnet: Telnet codec (RFC 854, 855, 857 ECHO, 858 SGA, BINARY,
** 1073 NAWS, 1091 TTYPE, 1143 Q method, 1572 NEW-ENVIRON).  Pure: bytes
** in, data / events / replies out, no I/O.  Everything works when any
** sequence is split across feeds at any byte.
**
** telnet.new([opts]) -> codec            one side of a connection
**   opts.us          options we agree to enable on our side when the peer
**                    sends DO: {[1]=true, sga=true} or {1, "sga"}
**   opts.him         options we accept from the peer (WILL), same forms
**   opts.max_subneg  payload bytes kept per subnegotiation (4096); a longer
**                    one gives one "subnegotiation too long" error event
**                    and is discarded up to IAC SE.  0..2^30
**   opts.max_ttypes  TTYPE IS names per round before "last" is forced (16)
**   opts.binary      true: never apply NVT CR rules to input (default:
**                    they apply unless the peer's BINARY is enabled)
**   opts.newline     "crlf" (default): CR LF is delivered as "\r\n";
**                    "lf": CR LF is delivered as "\n".  Either way CR NUL
**                    is delivered as "\r"; a bare CR followed by anything
**                    else is kept as "\r".
**   opts.negotiations true: also report every WILL/WONT/DO/DONT received
**   An option is a number 0..255 or a name of telnet.options.
**   Bad option values raise.
**
** codec:feed(bytes) -> data, events, reply
**   data    the application data of this feed (IAC IAC undoubled, NVT
**           rules applied), "" if none
**   events  array (always a table, often empty) of event tables, in order.
**           A feed without events returns one shared, read-only empty
**           table (no allocation on the common path): do not modify it.
**           Each has type and at = number of bytes of data that came
**           before it in this feed (data:sub(1, at) precedes the event):
**     {type="cmd", name="ayt"|"ip"|"ao"|"brk"|"ec"|"el"|"ga"|"nop"|"dm"|
**        "eor"|"abort"|"susp"|"eof", code=n}
**     {type="enabled"|"disabled"|"refused", option=n, side="us"|"him"}
**        enabled: the option became YES; disabled: the peer turned a YES
**        off; refused: the peer refused our request
**     {type="will"|"wont"|"do"|"dont", option=n}   (opts.negotiations)
**     {type="naws", width=w, height=h}
**     {type="ttype", name=s, index=i, last=bool}  TTYPE IS; last is true
**        when the name repeats the previous one or the first one (RFC
**        1091 end of list) or after max_ttypes names: send no more SEND.
**        The round restarts after a last.
**     {type="ttype_send"}
**     {type="environ", command="is"|"info", vars={NAME=value|false},
**        uservars={...}}     false: variable sent without VALUE
**     {type="environ_send", vars={names}, uservars={names},
**        all_vars=true?, all_uservars=true?}
**     {type="sb", option=n, data=payload}  any other option
**     {type="error", reason=s, option=n?, code=n?}  reasons:
**        "subnegotiation too long", "unterminated subnegotiation",
**        "empty subnegotiation", "se without sb", "unknown command",
**        "bad naws", "bad ttype", "bad environ", "dont answered by will",
**        "wont answered by do", "out of memory".  Parsing goes on.
**   reply   bytes to send back ("" if none): RFC 1143 answers, at most one
**           per WILL/WONT/DO/DONT received
**   Subnegotiations are reported whether or not the option is enabled;
**   check codec:enabled when it matters.
**
** codec:enable(opt, "us"|"him") -> bytes   ask to enable (RFC 1143 Q
**   method with queue); also marks the option as agreed on that side.
**   "" when nothing must be sent (already on, or queued behind a pending
**   negotiation).
** codec:disable(opt, "us"|"him") -> bytes  the same for disabling; also
**   withdraws agreement, so the peer cannot turn it back on.
** codec:allow(opt, "us"|"him", bool)  agree (or not) to future requests,
**   without negotiating now.
** codec:state(opt) -> us, him   "no", "yes", "wantno", "wantyes",
**   "wantno-opposite", "wantyes-opposite" (queue bit set)
** codec:enabled(opt, "us"|"him") -> bool    state is "yes"
** codec:escape(data [, eol]) -> bytes   telnet.escape with binary = our
**   BINARY is enabled; eol true makes data a printed line: CR LF is
**   appended (saving the caller a concatenation per line) and a "\n"
**   inside goes out as CR LF even under BINARY.
**
** telnet.escape(data [, binary]) -> bytes   doubles IAC; unless binary,
**   a bare "\n" becomes CR LF and a "\r" not followed by "\n" becomes
**   CR NUL (RFC 854 p.11).  A "\r" ending data becomes CR NUL: do not
**   split a "\r\n" across two calls.
** telnet.cmd(name | code) -> IAC code      (names as in "cmd" events)
** telnet.negotiate("will"|"wont"|"do"|"dont", opt) -> IAC verb opt
**   (raw, bypasses the Q method: prefer codec:enable/disable)
** telnet.sb(opt, payload) -> IAC SB opt payload IAC SE, IAC doubled
** telnet.naws(w, h) -> NAWS subnegotiation (0..65535 each, 255 doubled)
** telnet.ttype_is(name), telnet.ttype_send()
** telnet.environ_is(vars [, uservars]), telnet.environ_info(...)
**   vars/uservars: {NAME = "value" | false}; written in name order,
**   VAR/VALUE/ESC/USERVAR bytes escaped with ESC, IAC doubled
** telnet.environ_send([vars [, uservars]])  arrays of names, or true for
**   "all of this type"; no arguments asks for everything
** telnet.options    {binary=0, echo=1, sga=3, ttype=24, naws=31,
**   new_environ=39, ...}
*/
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "parley.h"
#include "telnet.h"

/* ===================================================================
** Pure core
** =================================================================== */

enum {
  S_DATA, S_CR, S_IAC, S_NEG, S_SB_OPT, S_SB_OPT_IAC, S_SB_DATA, S_SB_IAC
};

#define QSTATE(x) ((x) & 3)

void tn_init(tn_t *t, tn_alloc alloc, void *ud) {
  memset(t, 0, sizeof *t);
  t->state = S_DATA;
  t->max_subneg = TN_DEFAULT_MAX_SUBNEG;
  t->max_ttypes = TN_DEFAULT_MAX_TTYPES;
  t->alloc = alloc;
  t->alloc_ud = ud;
}

void tn_release(tn_t *t) {
  if (t->sb) t->alloc(t->alloc_ud, t->sb, t->sb_cap, 0);
  t->sb = NULL;
  t->sb_cap = t->sb_len = 0;
}

void tn_allow(tn_t *t, int opt, int side, int yes) {
  unsigned char bit = (unsigned char)(1u << (opt & 7));
  if (yes) t->ok[side][opt >> 3] |= bit;
  else t->ok[side][opt >> 3] &= (unsigned char)~bit;
}

int tn_allowed(const tn_t *t, int opt, int side) {
  return (t->ok[side][opt >> 3] >> (opt & 7)) & 1;
}

int tn_state(const tn_t *t, int opt, int side) { return t->q[side][opt]; }

int tn_enabled(const tn_t *t, int opt, int side) {
  return t->q[side][opt] == TN_YES;
}

static void emit(const tn_sink *s, const unsigned char *p, size_t n) {
  if (n) s->data(s->ud, p, n);
}

static void send3(const tn_sink *s, int verb, int opt) {
  unsigned char b[3];
  b[0] = TN_IAC; b[1] = (unsigned char)verb; b[2] = (unsigned char)opt;
  s->send(s->ud, b, 3);
}

static void event0(const tn_sink *s, tn_evtype type, int option, int code) {
  tn_event ev;
  memset(&ev, 0, sizeof ev);
  ev.type = type;
  ev.option = option;
  ev.code = code;
  s->event(s->ud, &ev);
}

static void side_event(const tn_sink *s, tn_evtype type, int opt, int side) {
  tn_event ev;
  memset(&ev, 0, sizeof ev);
  ev.type = type;
  ev.option = opt;
  ev.code = -1;
  ev.side = side;
  s->event(s->ud, &ev);
}

static void error_ev(const tn_sink *s, const char *reason, int opt, int code) {
  tn_event ev;
  memset(&ev, 0, sizeof ev);
  ev.type = TN_EV_ERROR;
  ev.reason = reason;
  ev.option = opt;
  ev.code = code;
  s->event(s->ud, &ev);
}

/*
** RFC 1143 section 7: the answer to a WILL/WONT (side him) or DO/DONT
** (side us).  Every case sends at most one message, and a message that
** does not change the status quo is never answered (RFC 1143 section 2),
** so no exchange between two such machines, or with a peer that
** mirrors refusals, can loop.
*/
static void negotiate(tn_t *t, int verb, int opt, const tn_sink *s) {
  int side = (verb == TN_WILL || verb == TN_WONT) ? TN_HIM : TN_US;
  int yes = (verb == TN_WILL || verb == TN_DO);
  int pos = side == TN_HIM ? TN_DO : TN_WILL;
  int neg = side == TN_HIM ? TN_DONT : TN_WONT;
  unsigned char *q = &t->q[side][opt];
  if (t->negotiations) event0(s, TN_EV_NEG, opt, verb);
  if (yes) {
    switch (*q) {
      case TN_NO:
        if (tn_allowed(t, opt, side)) {
          *q = TN_YES;
          send3(s, pos, opt);
          side_event(s, TN_EV_ENABLED, opt, side);
        } else {
          send3(s, neg, opt);
        }
        break;
      case TN_YES:
        break;                              /* no change: no answer */
      case TN_WANTNO:
        *q = TN_NO;
        error_ev(s, side == TN_HIM ? "dont answered by will"
                                   : "wont answered by do", opt, verb);
        break;
      case TN_WANTNO | TN_QUEUED:
        *q = TN_YES;
        error_ev(s, side == TN_HIM ? "dont answered by will"
                                   : "wont answered by do", opt, verb);
        side_event(s, TN_EV_ENABLED, opt, side);
        break;
      case TN_WANTYES:
        *q = TN_YES;
        side_event(s, TN_EV_ENABLED, opt, side);
        break;
      case TN_WANTYES | TN_QUEUED:
        *q = TN_WANTNO;                     /* the queued disable */
        send3(s, neg, opt);
        break;
    }
  } else {
    switch (*q) {
      case TN_NO:
        break;
      case TN_YES:
        *q = TN_NO;
        send3(s, neg, opt);
        side_event(s, TN_EV_DISABLED, opt, side);
        break;
      case TN_WANTNO:
        *q = TN_NO;
        break;
      case TN_WANTNO | TN_QUEUED:
        *q = TN_WANTYES;                    /* the queued enable */
        send3(s, pos, opt);
        break;
      case TN_WANTYES:
      case TN_WANTYES | TN_QUEUED:
        /* refused into the state we want, or refused: no new request */
        *q = TN_NO;
        side_event(s, TN_EV_REFUSED, opt, side);
        break;
    }
  }
}

/* RFC 1143 section 7, "If we decide to ask him to enable/disable" */
size_t tn_request(tn_t *t, int opt, int side, int enable, unsigned char *out) {
  unsigned char *q = &t->q[side][opt];
  int verb = -1;
  tn_allow(t, opt, side, enable);
  if (enable) {
    switch (*q) {
      case TN_NO: *q = TN_WANTYES; verb = side == TN_HIM ? TN_DO : TN_WILL; break;
      case TN_WANTNO: *q = TN_WANTNO | TN_QUEUED; break;
      case TN_WANTYES | TN_QUEUED: *q = TN_WANTYES; break;
      default: break;                /* already enabled / asked / queued */
    }
  } else {
    switch (*q) {
      case TN_YES: *q = TN_WANTNO; verb = side == TN_HIM ? TN_DONT : TN_WONT; break;
      case TN_WANTNO | TN_QUEUED: *q = TN_WANTNO; break;
      case TN_WANTYES: *q = TN_WANTYES | TN_QUEUED; break;
      default: break;
    }
  }
  if (verb < 0) return 0;
  out[0] = TN_IAC; out[1] = (unsigned char)verb; out[2] = (unsigned char)opt;
  return 3;
}

/* ---- subnegotiation ---- */

static void sb_append(tn_t *t, const unsigned char *p, size_t n,
                      const tn_sink *s) {
  if (t->sb_overflow || n == 0) return;
  if (n > t->max_subneg - t->sb_len) {
    t->sb_overflow = 1;
    error_ev(s, "subnegotiation too long", t->sb_opt, -1);
    return;
  }
  if (t->sb_len + n > t->sb_cap) {
    size_t cap = t->sb_cap ? t->sb_cap : 64;
    unsigned char *nb;
    while (cap < t->sb_len + n) cap *= 2;
    if (cap > t->max_subneg) cap = t->max_subneg;
    nb = t->alloc(t->alloc_ud, t->sb, t->sb_cap, cap);
    if (!nb) {
      t->sb_overflow = 1;
      error_ev(s, "out of memory", t->sb_opt, -1);
      return;
    }
    t->sb = nb;
    t->sb_cap = cap;
  }
  memcpy(t->sb + t->sb_len, p, n);
  t->sb_len += n;
}

static int ieq(const unsigned char *a, const unsigned char *b, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x = (unsigned char)(x - 32);
    if (y >= 'a' && y <= 'z') y = (unsigned char)(y - 32);
    if (x != y) return 0;
  }
  return 1;
}

static int same_type(const unsigned char *kept, size_t kept_len,
                     const unsigned char *name, size_t len) {
  size_t k = len < TN_TTYPE_KEEP ? len : TN_TTYPE_KEEP;
  return kept_len == len && ieq(kept, name, k);
}

/*
** RFC 1091 section 6: a client ends its list by repeating the last type;
** an older one may start over at the top.  "last" is set when the name
** equals the previous one, when it is the first one again, or when
** max_ttypes names came without either (a list that never repeats).
** Names are compared without case, over their first TN_TTYPE_KEEP bytes
** and their length.
*/
static void ttype_is(tn_t *t, const tn_sink *s) {
  tn_event ev;
  unsigned char *name = t->sb + 1;
  size_t len = t->sb_len - 1, k = len < TN_TTYPE_KEEP ? len : TN_TTYPE_KEEP;
  int last = 0;
  if (t->ttype_index == 0) {
    memcpy(t->ttype_first, name, k);
    t->ttype_first_len = len;
  } else if (same_type(t->ttype_prev, t->ttype_prev_len, name, len) ||
             same_type(t->ttype_first, t->ttype_first_len, name, len)) {
    last = 1;
  }
  t->ttype_index++;
  if (t->ttype_index >= t->max_ttypes) last = 1;
  memcpy(t->ttype_prev, name, k);
  t->ttype_prev_len = len;
  memset(&ev, 0, sizeof ev);
  ev.type = TN_EV_TTYPE;
  ev.option = TN_OPT_TTYPE;
  ev.code = -1;
  ev.buf = name;
  ev.len = len;
  ev.index = t->ttype_index;
  ev.last = last;
  if (last) t->ttype_index = 0;          /* a new SEND starts a new round */
  s->event(s->ud, &ev);
}

int tn_environ_next(unsigned char *p, size_t n, size_t *pos, int unescape,
                    tn_envtok *tok) {
  size_t i = *pos, w;
  int part;
  if (i >= n) return 0;
  if (p[i] != TN_ENV_VAR && p[i] != TN_ENV_USERVAR) return -1;
  tok->kind = p[i++];
  tok->value = NULL;
  tok->value_len = 0;
  for (part = 0; part < 2; part++) {
    unsigned char *start = p + i;
    w = i;
    while (i < n) {
      unsigned char c = p[i];
      if (c == TN_ENV_ESC) {
        if (++i == n) return -1;               /* ESC must escape a byte */
        c = p[i];
      } else if (c == TN_ENV_VAR || c == TN_ENV_USERVAR) {
        break;
      } else if (c == TN_ENV_VALUE) {
        if (part == 1) return -1;              /* VALUE inside a value */
        break;
      }
      if (unescape) p[w] = c;
      w++;
      i++;
    }
    if (part == 0) {
      tok->name = start;
      tok->name_len = (size_t)(p + w - start);
      if (i < n && p[i] == TN_ENV_VALUE) {
        i++;
        continue;
      }
      break;
    }
    tok->value = start;
    tok->value_len = (size_t)(p + w - start);
  }
  *pos = i;
  return 1;
}

static int environ_valid(unsigned char *p, size_t n, int send) {
  size_t pos = 0;
  tn_envtok tok;
  int r;
  while ((r = tn_environ_next(p, n, &pos, 0, &tok)) == 1) {
    if (send && tok.value) return 0;
  }
  return r == 0;
}

static void sb_finish(tn_t *t, const tn_sink *s) {
  tn_event ev;
  unsigned char *b = t->sb;
  size_t n = t->sb_len;
  if (t->sb_overflow) return;                  /* reported when it began */
  memset(&ev, 0, sizeof ev);
  ev.option = t->sb_opt;
  ev.code = -1;
  switch (t->sb_opt) {
    case TN_OPT_NAWS:
      /* RFC 1073: IAC SB NAWS WIDTH[1] WIDTH[0] HEIGHT[1] HEIGHT[0] IAC SE */
      if (n != 4) { error_ev(s, "bad naws", t->sb_opt, -1); return; }
      ev.type = TN_EV_NAWS;
      ev.width = (unsigned)b[0] << 8 | b[1];
      ev.height = (unsigned)b[2] << 8 | b[3];
      break;
    case TN_OPT_TTYPE:
      /* RFC 1091: IS = 0 followed by the name, SEND = 1 alone */
      if (n >= 1 && b[0] == 0) { ttype_is(t, s); return; }
      if (n != 1 || b[0] != 1) { error_ev(s, "bad ttype", t->sb_opt, -1); return; }
      ev.type = TN_EV_TTYPE_SEND;
      break;
    case TN_OPT_NEW_ENVIRON:
      if (n < 1 || b[0] > TN_ENV_INFO ||
          !environ_valid(b + 1, n - 1, b[0] == TN_ENV_SEND)) {
        error_ev(s, "bad environ", t->sb_opt, -1);
        return;
      }
      ev.type = TN_EV_ENVIRON;
      ev.code = b[0];
      ev.buf = b + 1;
      ev.len = n - 1;
      break;
    default:
      ev.type = TN_EV_SB;
      ev.buf = b;
      ev.len = n;
      break;
  }
  s->event(s->ud, &ev);
}

static void sb_begin(tn_t *t, int opt) {
  t->sb_opt = opt;
  t->sb_len = 0;
  t->sb_overflow = 0;
}

/*
** One run of data up to the next IAC (or the end of the input), with the
** NVT rules of RFC 854 page 11 unless input is binary: CR NUL is a bare
** CR (the NUL is dropped), CR LF is a new line ("\r\n", or "\n" with lf).
** A CR at the end of the input waits for its follower in state S_CR.
** Returns the index where parsing continues.
*/
static size_t data_run(tn_t *t, const unsigned char *p, size_t i, size_t n,
                       const tn_sink *s) {
  const unsigned char *iac = memchr(p + i, TN_IAC, n - i);
  size_t end = iac ? (size_t)(iac - p) : n, start = i, j = i;
  /* BINARY (RFC 856) from him means his data is not NVT */
  if (!t->raw_in && t->q[TN_HIM][TN_OPT_BINARY] != TN_YES) {
    while (j < end) {
      const unsigned char *cr = memchr(p + j, '\r', end - j);
      size_t c;
      if (!cr) break;
      c = (size_t)(cr - p);
      if (c + 1 == n) {                   /* only possible when no IAC */
        emit(s, p + start, c - start);
        t->state = S_CR;
        return n;
      }
      if (p[c + 1] == '\n') {
        if (t->lf) {
          emit(s, p + start, c - start);
          start = c + 1;                  /* the LF starts the next range */
        }
        j = c + 2;
      } else if (p[c + 1] == 0) {
        emit(s, p + start, c + 1 - start);
        start = j = c + 2;
      } else {
        j = c + 1;                        /* bare CR: kept as data */
      }
    }
  }
  emit(s, p + start, end - start);
  if (!iac) return n;
  t->state = S_IAC;
  return end + 1;
}

static const unsigned char CR_LF[2] = {'\r', '\n'};

void tn_feed(tn_t *t, const unsigned char *p, size_t n, const tn_sink *s) {
  size_t i = 0;
  while (i < n) {
    unsigned char b;
    switch (t->state) {
      case S_DATA:
        i = data_run(t, p, i, n, s);
        break;
      case S_CR:                          /* a CR ended the previous feed */
        b = p[i];
        t->state = S_DATA;
        if (b == '\n') {
          if (t->lf) emit(s, CR_LF + 1, 1);
          else emit(s, CR_LF, 2);
          i++;
        } else {
          emit(s, CR_LF, 1);
          if (b == 0) i++;                /* else: bare CR, b is parsed anew */
        }
        break;
      case S_IAC:
        b = p[i++];
        t->state = S_DATA;
        if (b == TN_IAC) {
          emit(s, p + i - 1, 1);          /* IAC IAC: one 255 data byte */
        } else if (b >= TN_WILL) {
          t->verb = b;
          t->state = S_NEG;
        } else if (b == TN_SB) {
          t->state = S_SB_OPT;
        } else if (b == TN_SE) {
          error_ev(s, "se without sb", -1, b);
        } else if (b >= 236) {
          /* 236..239: EOF, SUSP, ABORT (RFC 1184), EOR (RFC 885) */
          event0(s, TN_EV_CMD, -1, b);
        } else {
          error_ev(s, "unknown command", -1, b);
        }
        break;
      case S_NEG:
        t->state = S_DATA;
        negotiate(t, t->verb, p[i++], s);
        break;
      case S_SB_OPT:
        b = p[i++];
        if (b == TN_IAC) {
          t->state = S_SB_OPT_IAC;
        } else {
          sb_begin(t, b);
          t->state = S_SB_DATA;
        }
        break;
      case S_SB_OPT_IAC:
        b = p[i];
        if (b == TN_IAC) {                /* option 255 (EXOPL) */
          i++;
          sb_begin(t, TN_IAC);
          t->state = S_SB_DATA;
        } else if (b == TN_SE) {
          i++;
          t->state = S_DATA;
          error_ev(s, "empty subnegotiation", -1, -1);
        } else {
          t->state = S_IAC;               /* IAC <b> is parsed as a command */
          error_ev(s, "unterminated subnegotiation", -1, -1);
        }
        break;
      case S_SB_DATA: {
        const unsigned char *iac = memchr(p + i, TN_IAC, n - i);
        size_t end = iac ? (size_t)(iac - p) : n;
        sb_append(t, p + i, end - i, s);
        i = end;
        if (iac) {
          i++;
          t->state = S_SB_IAC;
        }
        break;
      }
      case S_SB_IAC:
        b = p[i];
        if (b == TN_SE) {
          i++;
          t->state = S_DATA;
          sb_finish(t, s);
        } else if (b == TN_IAC) {
          i++;
          t->state = S_SB_DATA;
          sb_append(t, p + i - 1, 1, s);
        } else {
          /*
          ** RFC 855 ends a subnegotiation only with IAC SE; any other
          ** command means the peer lost its way.  Drop the payload and
          ** parse IAC <b> as a command, as libtelnet does.
          */
          t->state = S_IAC;
          error_ev(s, "unterminated subnegotiation", t->sb_opt, -1);
        }
        break;
    }
  }
}

/* bytes that escaping changes: IAC always, CR and LF under NVT rules;
** under BINARY with line ends (binary 2) IAC and LF */
static const unsigned char nvt_special[256] = {
  ['\r'] = 1, ['\n'] = 1, [TN_IAC] = 1
};
static const unsigned char lines_special[256] = {
  ['\n'] = 1, [TN_IAC] = 1
};

size_t tn_escape(const unsigned char *p, size_t n, int binary,
                 unsigned char *out) {
  const unsigned char *special = binary ? lines_special : nvt_special;
  size_t i = 0, w = 0;
  while (i < n) {
    /* copy the run of bytes that need no change */
    size_t j = i;
    unsigned char c;
    if (binary == 1) {
      const unsigned char *iac = memchr(p + i, TN_IAC, n - i);
      j = iac ? (size_t)(iac - p) : n;
    } else {
      while (j < n && !special[p[j]]) j++;
    }
    if (out && j > i) memcpy(out + w, p + i, j - i);
    w += j - i;
    if (j == n) break;
    c = p[j];
    i = j + 1;
    if (c == '\n' && binary && j > 0 && p[j - 1] == '\r') {
      if (out) out[w] = '\n';          /* binary 2: its CR went with the run */
      w++;
      continue;
    }
    if (out) {
      if (c == TN_IAC) {
        out[w] = TN_IAC; out[w + 1] = TN_IAC;
      } else if (c == '\n') {
        out[w] = '\r'; out[w + 1] = '\n';
      } else if (i < n && p[i] == '\n') {      /* CR LF stays */
        out[w] = '\r'; out[w + 1] = '\n';
      } else {
        /* RFC 854 p.11: a CR not followed by LF is sent as CR NUL */
        out[w] = '\r'; out[w + 1] = 0;
      }
    }
    if (c == '\r' && i < n && p[i] == '\n') i++;
    w += 2;
  }
  return w;
}

/* ===================================================================
** Lua binding
** =================================================================== */

#define CODEC PARLEY_TELNET_CODEC
#define MAX_SUBNEG_LIMIT ((lua_Integer)1 << 30)
#define KEEP_SCRATCH 65536      /* scratch buffers above this are freed */

typedef struct gbuf {
  unsigned char *p;
  size_t n, cap;
} gbuf;

typedef struct ltn {
  tn_t tn;
  /* scratch of one feed call */
  lua_State *L;
  int nevents;
  size_t at;                    /* data bytes produced so far in this feed */
  const unsigned char *one;     /* the data, while it is a single range */
  size_t one_n;
  gbuf data, reply;
} ltn;

static const struct { const char *name; int code; } option_names[] = {
  {"binary", 0}, {"echo", 1}, {"sga", 3}, {"status", 5},
  {"timing_mark", 6}, {"logout", 18}, {"ttype", 24}, {"eor", 25},
  {"naws", 31}, {"tspeed", 32}, {"lflow", 33}, {"linemode", 34},
  {"xdisploc", 35}, {"environ", 36}, {"authentication", 37},
  {"encrypt", 38}, {"new_environ", 39}, {"charset", 42},
  {"msdp", 69}, {"mssp", 70}, {"mccp2", 86}, {"gmcp", 201},
};

static const char *const cmd_names[] = {     /* codes 236..249 */
  "eof", "susp", "abort", "eor", "se", "nop", "dm", "brk", "ip", "ao",
  "ayt", "ec", "el", "ga"
};

static const char *const state_names[] = {
  "no", "yes", "wantno", "wantyes", "no", "yes", "wantno-opposite",
  "wantyes-opposite"
};

static int opt_from(lua_State *L, int idx, int arg) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *s = lua_tostring(L, idx);
    size_t i;
    for (i = 0; i < sizeof option_names / sizeof option_names[0]; i++) {
      if (strcmp(s, option_names[i].name) == 0) return option_names[i].code;
    }
    return luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s'", s));
  } else {
    int isnum;
    lua_Integer v = lua_tointegerx(L, idx, &isnum);
    if (!isnum || v < 0 || v > 255) {
      return luaL_argerror(L, arg, "option must be 0..255 or a name");
    }
    return (int)v;
  }
}

static int side_from(lua_State *L, int arg) {
  static const char *const sides[] = {"us", "him", NULL};
  return luaL_checkoption(L, arg, NULL, sides) == 0 ? TN_US : TN_HIM;
}

static void *gbuf_reserve(lua_State *L, gbuf *b, size_t extra) {
  if (b->cap - b->n < extra) {
    void *ud;
    lua_Alloc f = lua_getallocf(L, &ud);
    size_t cap = b->cap ? b->cap : 256;
    unsigned char *np;
    if (extra > ((size_t)-1) / 2 - b->n) luaL_error(L, "not enough memory");
    while (cap - b->n < extra) cap *= 2;
    np = f(ud, b->p, b->cap, cap);
    if (!np) luaL_error(L, "not enough memory");
    b->p = np;
    b->cap = cap;
  }
  return b->p + b->n;
}

static void gbuf_add(lua_State *L, gbuf *b, const unsigned char *p, size_t n) {
  memcpy(gbuf_reserve(L, b, n), p, n);
  b->n += n;
}

static void gbuf_free(lua_State *L, gbuf *b) {
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  if (b->p) f(ud, b->p, b->cap, 0);
  b->p = NULL;
  b->n = b->cap = 0;
}

/* ---- sink callbacks: data, replies and event tables ---- */

static void on_data(void *ud, const unsigned char *p, size_t n) {
  ltn *c = ud;
  if (c->data.n == 0 && c->one == NULL) {
    c->one = p;                  /* usually the only range: no copy */
    c->one_n = n;
  } else {
    if (c->one) {
      gbuf_add(c->L, &c->data, c->one, c->one_n);
      c->one = NULL;
    }
    gbuf_add(c->L, &c->data, p, n);
  }
  c->at += n;
}

static void on_send(void *ud, const unsigned char *p, size_t n) {
  ltn *c = ud;
  gbuf_add(c->L, &c->reply, p, n);
}

static void set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static void set_lstr(lua_State *L, const char *k, const unsigned char *p,
                     size_t n) {
  lua_pushlstring(L, (const char *)p, n);
  lua_setfield(L, -2, k);
}

/* NEW-ENVIRON IS/INFO: vars / uservars maps name -> value or false */
static void push_environ(lua_State *L, tn_event *ev) {
  size_t pos = 0;
  tn_envtok tok;
  int send = ev->code == TN_ENV_SEND, nv = 0, nu = 0, bare = 0;
  set_str(L, "type", send ? "environ_send" : "environ");
  if (!send) set_str(L, "command", ev->code == TN_ENV_IS ? "is" : "info");
  lua_newtable(L);                          /* vars */
  lua_newtable(L);                          /* uservars */
  while (tn_environ_next(ev->buf, ev->len, &pos, 1, &tok) == 1) {
    int t = tok.kind == TN_ENV_VAR ? -2 : -1;
    if (send) {
      if (tok.name_len == 0) {
        /* RFC 1572: a type with no name asks for every variable of it */
        lua_pushboolean(L, 1);
        lua_setfield(L, -4, tok.kind == TN_ENV_VAR ? "all_vars" : "all_uservars");
        bare = 1;
        continue;
      }
      lua_pushlstring(L, (const char *)tok.name, tok.name_len);
      lua_rawseti(L, t - 1, tok.kind == TN_ENV_VAR ? ++nv : ++nu);
    } else {
      lua_pushlstring(L, (const char *)tok.name, tok.name_len);
      if (tok.value) lua_pushlstring(L, (const char *)tok.value, tok.value_len);
      else lua_pushboolean(L, 0);          /* RFC 1572: VAR without VALUE */
      lua_rawset(L, t - 2);
    }
  }
  lua_setfield(L, -3, "uservars");
  lua_setfield(L, -2, "vars");
  if (send && pos == 0 && !bare) {
    /* an empty SEND asks for everything */
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "all_vars");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "all_uservars");
  }
}

static void on_event(void *ud, tn_event *ev) {
  ltn *c = ud;
  lua_State *L = c->L;
  if (c->nevents == 0) {          /* the first event: a table of our own */
    lua_newtable(L);
    lua_replace(L, 3);
  }
  lua_createtable(L, 0, 4);
  switch (ev->type) {
    case TN_EV_CMD:
      set_str(L, "type", "cmd");
      set_str(L, "name", cmd_names[ev->code - 236]);
      set_int(L, "code", ev->code);
      break;
    case TN_EV_NEG:
      set_str(L, "type", ev->code == TN_WILL ? "will" : ev->code == TN_WONT
                         ? "wont" : ev->code == TN_DO ? "do" : "dont");
      set_int(L, "option", ev->option);
      break;
    case TN_EV_ENABLED:
    case TN_EV_DISABLED:
    case TN_EV_REFUSED:
      set_str(L, "type", ev->type == TN_EV_ENABLED ? "enabled"
                         : ev->type == TN_EV_DISABLED ? "disabled" : "refused");
      set_int(L, "option", ev->option);
      set_str(L, "side", ev->side == TN_US ? "us" : "him");
      break;
    case TN_EV_SB:
      set_str(L, "type", "sb");
      set_int(L, "option", ev->option);
      set_lstr(L, "data", ev->buf, ev->len);
      break;
    case TN_EV_NAWS:
      set_str(L, "type", "naws");
      set_int(L, "width", ev->width);
      set_int(L, "height", ev->height);
      break;
    case TN_EV_TTYPE:
      set_str(L, "type", "ttype");
      set_lstr(L, "name", ev->buf, ev->len);
      set_int(L, "index", (lua_Integer)ev->index);
      lua_pushboolean(L, ev->last);
      lua_setfield(L, -2, "last");
      break;
    case TN_EV_TTYPE_SEND:
      set_str(L, "type", "ttype_send");
      break;
    case TN_EV_ENVIRON:
      push_environ(L, ev);
      break;
    case TN_EV_ERROR:
      set_str(L, "type", "error");
      set_str(L, "reason", ev->reason);
      if (ev->option >= 0) set_int(L, "option", ev->option);
      if (ev->code >= 0) set_int(L, "code", ev->code);
      break;
  }
  set_int(L, "at", (lua_Integer)c->at);
  lua_rawseti(L, 3, ++c->nevents);
}

/* ---- methods ---- */

static ltn *check_codec(lua_State *L) {
  return luaL_checkudata(L, 1, CODEC);
}

static void shrink(lua_State *L, gbuf *b) {
  if (b->cap > KEEP_SCRATCH) gbuf_free(L, b);
  b->n = 0;
}

/* registry key of the shared read-only empty events table */
static const char no_events = 0;

static int refuse_write(lua_State *L) {
  return luaL_error(L, "the empty events table of a telnet feed is read-only");
}

static void make_no_events(lua_State *L) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, refuse_write);
  lua_setfield(L, -2, "__newindex");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &no_events);
}

static int l_feed(lua_State *L) {
  ltn *c = check_codec(L);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  tn_sink s;
  lua_settop(L, 2);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &no_events);   /* 3: events */
  c->L = L;
  c->nevents = 0;
  c->at = 0;
  c->one = NULL;
  c->data.n = c->reply.n = 0;
  s.data = on_data;
  s.event = on_event;
  s.send = on_send;
  s.ud = c;
  tn_feed(&c->tn, (const unsigned char *)p, n, &s);
  if (c->one == (const unsigned char *)p && c->one_n == n)
    lua_pushvalue(L, 2);         /* all data, untouched: the same string */
  else if (c->one) lua_pushlstring(L, (const char *)c->one, c->one_n);
  else lua_pushlstring(L, (const char *)c->data.p, c->data.n);
  lua_pushvalue(L, 3);
  lua_pushlstring(L, (const char *)c->reply.p, c->reply.n);
  c->one = NULL;
  shrink(L, &c->data);
  shrink(L, &c->reply);
  return 3;
}

static int request(lua_State *L, int enable) {
  ltn *c = check_codec(L);
  int opt = opt_from(L, 2, 2);
  int side = side_from(L, 3);
  unsigned char out[3];
  size_t k = tn_request(&c->tn, opt, side, enable, out);
  lua_pushlstring(L, (const char *)out, k);
  return 1;
}

static int l_enable(lua_State *L) { return request(L, 1); }
static int l_disable(lua_State *L) { return request(L, 0); }

static int l_allow(lua_State *L) {
  ltn *c = check_codec(L);
  int opt = opt_from(L, 2, 2);
  int side = side_from(L, 3);
  luaL_checkany(L, 4);
  tn_allow(&c->tn, opt, side, lua_toboolean(L, 4));
  return 0;
}

static int l_state(lua_State *L) {
  ltn *c = check_codec(L);
  int opt = opt_from(L, 2, 2);
  lua_pushstring(L, state_names[tn_state(&c->tn, opt, TN_US)]);
  lua_pushstring(L, state_names[tn_state(&c->tn, opt, TN_HIM)]);
  return 2;
}

static int l_enabled(lua_State *L) {
  ltn *c = check_codec(L);
  int opt = opt_from(L, 2, 2);
  int side = side_from(L, 3);
  lua_pushboolean(L, tn_enabled(&c->tn, opt, side));
  return 1;
}

static int push_escaped(lua_State *L, int idx, int binary, int eol) {
  size_t n, m;
  const unsigned char *p = (const unsigned char *)luaL_checklstring(L, idx, &n);
  m = tn_escape(p, n, binary, NULL);
  if (m == n && !eol) {
    /* no byte to change: hand the string back (same size means same
    ** bytes, as every change grows the output) */
    lua_pushvalue(L, idx);
  } else {
    luaL_Buffer b;
    unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, m + 2);
    tn_escape(p, n, binary, out);
    if (eol) { out[m++] = '\r'; out[m++] = '\n'; }
    luaL_pushresultsize(&b, m);
  }
  return 1;
}

/* tn_escape's binary argument for text to the codec's peer */
static int escape_mode(const ltn *c, int eol) {
  if (!tn_enabled(&c->tn, TN_OPT_BINARY, TN_US)) return 0;
  return eol ? 2 : 1;
}

static int l_codec_escape(lua_State *L) {
  ltn *c = check_codec(L);
  int eol = lua_toboolean(L, 3);
  return push_escaped(L, 2, escape_mode(c, eol), eol);
}

/* ---- straight from and into a stream's buffers (driver.h) ---- */

/* bytes that end the plain part of a line: its end, IAC, and ^C (an
** interrupt the session handles) */
static const unsigned char line_stop[256] = {
  [3] = 1, ['\n'] = 1, ['\r'] = 1, [TN_IAC] = 1
};

int parley_telnet_line(lua_State *L, int codec, const char *buf, size_t len,
                       size_t max, size_t *used) {
  const tn_t *t = &((ltn *)lua_touserdata(L, codec))->tn;
  const unsigned char *p = (const unsigned char *)buf;
  size_t i = 0, end;
  *used = 0;
  /* between sequences, NVT input, line mode (no ECHO of ours) */
  if (t->state != S_DATA || t->raw_in || tn_enabled(t, TN_OPT_BINARY, TN_HIM)
      || tn_enabled(t, TN_OPT_ECHO, TN_US)) {
    goto general;
  }
  while (i < len && !line_stop[p[i]]) i++;
  if (i == len || i > max) goto general;
  /*
  ** RFC 854 p.11 as the codec and session:read_line read it: CR LF and
  ** LF end a line; CR NUL is a CR, which ends the line and takes an LF
  ** right after it along; a bare CR ends the line, what follows is data.
  ** A CR (or CR NUL) whose follower has not come yet waits for the
  ** general path, as do IAC and ^C, and so does an IAC right after the CR
  ** or CR NUL (the codec reads CR <command> LF as one line end).
  */
  if (p[i] == '\n') end = i + 1;
  else if (p[i] != '\r' || i + 1 == len || p[i + 1] == TN_IAC) goto general;
  else if (p[i + 1] == '\n') end = i + 2;
  else if (p[i + 1] != 0) end = i + 1;
  else if (i + 2 == len || p[i + 2] == TN_IAC) goto general;
  else end = p[i + 2] == '\n' ? i + 3 : i + 2;
  lua_pushlstring(L, buf, i);
  *used = end;
  return 1;
general:
  lua_pushboolean(L, 0);
  return 1;
}

size_t parley_telnet_escape(lua_State *L, int codec, const char *p, size_t n,
                            int eol, char *out) {
  const ltn *c = lua_touserdata(L, codec);
  unsigned char *o = (unsigned char *)out;
  size_t w = tn_escape((const unsigned char *)p, n, escape_mode(c, eol), o);
  if (eol) { o[w++] = '\r'; o[w++] = '\n'; }
  return w;
}

static int l_gc(lua_State *L) {
  ltn *c = check_codec(L);
  tn_release(&c->tn);
  gbuf_free(L, &c->data);
  gbuf_free(L, &c->reply);
  return 0;
}

static int l_tostring(lua_State *L) {
  ltn *c = check_codec(L);
  static const char *const sn[] = {
    "data", "cr", "iac", "negotiation", "sb", "sb", "sb", "sb"
  };
  return parley_tostring(L, sn[c->tn.state]);
}

static void options_from(lua_State *L, int idx, ltn *c, int side) {
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    /* {[1] = true} or {echo = true} name the option by the key,
    ** {1, "sga"} by the value */
    int v = lua_type(L, -1) == LUA_TBOOLEAN;
    int opt = opt_from(L, v ? -2 : -1, 1);
    if (!v || lua_toboolean(L, -1)) tn_allow(&c->tn, opt, side, 1);
    lua_pop(L, 1);
  }
}

static int l_new(lua_State *L) {
  ltn *c;
  int top;
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  c = lua_newuserdatauv(L, sizeof *c, 0);   /* 2 */
  memset(c, 0, sizeof *c);
  {
    void *aud;
    lua_Alloc f = lua_getallocf(L, &aud);   /* same contract as tn_alloc */
    tn_init(&c->tn, f, aud);
  }
  luaL_setmetatable(L, CODEC);
  if (lua_isnil(L, 1)) return 1;
  top = lua_gettop(L);
  lua_getfield(L, 1, "us");
  options_from(L, top + 1, c, TN_US);
  lua_getfield(L, 1, "him");
  options_from(L, top + 2, c, TN_HIM);
  lua_getfield(L, 1, "max_subneg");
  if (!lua_isnil(L, -1)) {
    lua_Integer v = luaL_checkinteger(L, -1);
    if (v < 0 || v > MAX_SUBNEG_LIMIT) luaL_argerror(L, 1, "max_subneg out of range");
    c->tn.max_subneg = (size_t)v;
  }
  lua_getfield(L, 1, "max_ttypes");
  if (!lua_isnil(L, -1)) {
    lua_Integer v = luaL_checkinteger(L, -1);
    if (v < 1) luaL_argerror(L, 1, "max_ttypes must be positive");
    c->tn.max_ttypes = (size_t)v;
  }
  lua_getfield(L, 1, "binary");
  c->tn.raw_in = lua_toboolean(L, -1);
  lua_getfield(L, 1, "negotiations");
  c->tn.negotiations = lua_toboolean(L, -1);
  lua_getfield(L, 1, "newline");
  if (!lua_isnil(L, -1)) {
    const char *nl = luaL_checkstring(L, -1);
    if (strcmp(nl, "lf") == 0) c->tn.lf = 1;
    else if (strcmp(nl, "crlf") != 0) luaL_argerror(L, 1, "newline must be \"crlf\" or \"lf\"");
  }
  lua_settop(L, 2);
  return 1;
}

/* ---- builders ---- */

/* append bytes doubling IAC (RFC 855: 255 inside SB parameters) */
static void add_sb_bytes(luaL_Buffer *b, const unsigned char *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    const unsigned char *iac = memchr(p + i, TN_IAC, n - i);
    size_t end = iac ? (size_t)(iac - p) + 1 : n;
    luaL_addlstring(b, (const char *)p + i, end - i);
    if (iac) luaL_addchar(b, (char)TN_IAC);
    i = end;
  }
}

static void sb_open(luaL_Buffer *b, int opt) {
  luaL_addchar(b, (char)TN_IAC);
  luaL_addchar(b, (char)TN_SB);
  luaL_addchar(b, (char)opt);
  if (opt == TN_IAC) luaL_addchar(b, (char)TN_IAC);
}

static void sb_close(luaL_Buffer *b) {
  luaL_addchar(b, (char)TN_IAC);
  luaL_addchar(b, (char)TN_SE);
}

static int l_escape(lua_State *L) {
  return push_escaped(L, 1, lua_toboolean(L, 2), 0);
}

static int l_cmd(lua_State *L) {
  char out[2];
  int code = -1;
  if (lua_type(L, 1) == LUA_TSTRING) {
    const char *s = lua_tostring(L, 1);
    int i;
    for (i = 0; i < 14; i++) {
      if (i != TN_SE - 236 && strcmp(s, cmd_names[i]) == 0) code = 236 + i;
    }
    if (code < 0) return luaL_argerror(L, 1, lua_pushfstring(L, "unknown command '%s'", s));
  } else {
    lua_Integer v = luaL_checkinteger(L, 1);
    if (v < 236 || v > 249 || v == TN_SE) return luaL_argerror(L, 1, "command must be 236..249 but not SE");
    code = (int)v;
  }
  out[0] = (char)TN_IAC;
  out[1] = (char)code;
  lua_pushlstring(L, out, 2);
  return 1;
}

static int l_negotiate(lua_State *L) {
  static const char *const verbs[] = {"will", "wont", "do", "dont", NULL};
  char out[3];
  int v = luaL_checkoption(L, 1, NULL, verbs);
  out[0] = (char)TN_IAC;
  out[1] = (char)(TN_WILL + v);
  out[2] = (char)opt_from(L, 2, 2);
  lua_pushlstring(L, out, 3);
  return 1;
}

static int l_sb(lua_State *L) {
  int opt = opt_from(L, 1, 1);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  sb_open(&b, opt);
  add_sb_bytes(&b, (const unsigned char *)p, n);
  sb_close(&b);
  luaL_pushresult(&b);
  return 1;
}

static int l_naws(lua_State *L) {
  lua_Integer w = luaL_checkinteger(L, 1), h = luaL_checkinteger(L, 2);
  unsigned char v[4];
  luaL_Buffer b;
  luaL_argcheck(L, w >= 0 && w <= 65535, 1, "width must be 0..65535");
  luaL_argcheck(L, h >= 0 && h <= 65535, 2, "height must be 0..65535");
  v[0] = (unsigned char)(w >> 8); v[1] = (unsigned char)w;
  v[2] = (unsigned char)(h >> 8); v[3] = (unsigned char)h;
  luaL_buffinit(L, &b);
  sb_open(&b, TN_OPT_NAWS);
  add_sb_bytes(&b, v, 4);                  /* RFC 1073: 255 is doubled */
  sb_close(&b);
  luaL_pushresult(&b);
  return 1;
}

static int l_ttype_is(lua_State *L) {
  size_t n;
  const char *p = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  sb_open(&b, TN_OPT_TTYPE);
  luaL_addchar(&b, 0);
  add_sb_bytes(&b, (const unsigned char *)p, n);
  sb_close(&b);
  luaL_pushresult(&b);
  return 1;
}

static int l_ttype_send(lua_State *L) {
  static const char s[] = {(char)TN_IAC, (char)TN_SB, TN_OPT_TTYPE, 1,
                           (char)TN_IAC, (char)TN_SE};
  lua_pushlstring(L, s, sizeof s);
  return 1;
}

/* a NEW-ENVIRON name or value: VAR, VALUE, ESC, USERVAR get ESC before
** them (RFC 1572), IAC is doubled */
static void add_env_bytes(luaL_Buffer *b, const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= TN_ENV_USERVAR) luaL_addchar(b, TN_ENV_ESC);
    luaL_addchar(b, (char)c);
    if (c == TN_IAC) luaL_addchar(b, (char)TN_IAC);
  }
}

typedef struct envent {
  int kind;
  const char *k, *v;         /* v NULL: variable not defined */
  size_t kn, vn;
} envent;

static int cmp_env(const void *a, const void *b) {
  const envent *x = a, *y = b;
  size_t n = x->kn < y->kn ? x->kn : y->kn;
  int r;
  if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
  r = memcmp(x->k, y->k, n);
  if (r) return r;
  return x->kn < y->kn ? -1 : x->kn > y->kn;
}

/*
** Collects {name = value | false} (IS/INFO) or {name, ...} (SEND) of one
** kind into e (NULL: only count).  Strings stay anchored by the tables.
*/
static size_t env_collect(lua_State *L, int idx, int kind, int send,
                          envent *e) {
  size_t count = 0;
  if (lua_isnoneornil(L, idx)) return 0;
  if (send && lua_type(L, idx) == LUA_TBOOLEAN) {
    if (!lua_toboolean(L, idx)) return 0;
    if (e) { e->kind = kind; e->k = ""; e->kn = 0; e->v = NULL; e->vn = 0; }
    return 1;                            /* true: the bare type, "all" */
  }
  luaL_checktype(L, idx, LUA_TTABLE);
  if (send) {                            /* an array, sent in its order */
    lua_Unsigned j, len = lua_rawlen(L, idx);
    for (j = 1; j <= len; j++) {
      if (lua_rawgeti(L, idx, (lua_Integer)j) != LUA_TSTRING) {
        luaL_argerror(L, idx, "variable names must be strings");
      }
      if (e) {
        envent *x = e + count;
        x->kind = kind;
        x->k = lua_tolstring(L, -1, &x->kn);   /* anchored by the table */
        x->v = NULL;
        x->vn = 0;
      }
      count++;
      lua_pop(L, 1);
    }
    return count;
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int ki = -2;
    if (lua_type(L, ki) != LUA_TSTRING) {
      luaL_argerror(L, idx, "variable names must be strings");
    }
    if (lua_type(L, -1) != LUA_TSTRING &&
        !(lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
      luaL_argerror(L, idx, "variable values must be strings or false");
    }
    if (e) {
      envent *x = e + count;
      x->kind = kind;
      x->k = lua_tolstring(L, ki, &x->kn);
      x->v = NULL;
      x->vn = 0;
      if (lua_type(L, -1) == LUA_TSTRING) x->v = lua_tolstring(L, -1, &x->vn);
    }
    count++;
    lua_pop(L, 1);
  }
  return count;
}

static int environ_build(lua_State *L, int cmd) {
  int send = cmd == TN_ENV_SEND;
  size_t nv, nu, i;
  envent *e;
  luaL_Buffer b;
  lua_settop(L, 2);
  nv = env_collect(L, 1, TN_ENV_VAR, send, NULL);
  nu = env_collect(L, 2, TN_ENV_USERVAR, send, NULL);
  e = lua_newuserdatauv(L, (nv + nu + 1) * sizeof *e, 0);   /* 3 */
  env_collect(L, 1, TN_ENV_VAR, send, e);
  env_collect(L, 2, TN_ENV_USERVAR, send, e + nv);
  /* name order, so the bytes do not depend on table traversal order */
  if (!send) qsort(e, nv + nu, sizeof *e, cmp_env);
  luaL_buffinit(L, &b);
  sb_open(&b, TN_OPT_NEW_ENVIRON);
  luaL_addchar(&b, (char)cmd);
  for (i = 0; i < nv + nu; i++) {
    luaL_addchar(&b, (char)e[i].kind);
    add_env_bytes(&b, e[i].k, e[i].kn);
    if (e[i].v) {
      luaL_addchar(&b, TN_ENV_VALUE);
      add_env_bytes(&b, e[i].v, e[i].vn);
    }
  }
  sb_close(&b);
  luaL_pushresult(&b);
  return 1;
}

static int l_environ_is(lua_State *L) { return environ_build(L, TN_ENV_IS); }
static int l_environ_info(lua_State *L) { return environ_build(L, TN_ENV_INFO); }
static int l_environ_send(lua_State *L) { return environ_build(L, TN_ENV_SEND); }

int parley_open_telnet(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"feed", l_feed},
    {"enable", l_enable},
    {"disable", l_disable},
    {"allow", l_allow},
    {"state", l_state},
    {"enabled", l_enabled},
    {"escape", l_codec_escape},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", l_gc},
    {"__close", l_gc},
    {"__tostring", l_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"new", l_new},
    {"escape", l_escape},
    {"cmd", l_cmd},
    {"negotiate", l_negotiate},
    {"sb", l_sb},
    {"naws", l_naws},
    {"ttype_is", l_ttype_is},
    {"ttype_send", l_ttype_send},
    {"environ_is", l_environ_is},
    {"environ_info", l_environ_info},
    {"environ_send", l_environ_send},
    {NULL, NULL}
  };
  size_t i;
  parley_newclass(L, CODEC, methods, meta);
  make_no_events(L);
  lua_newtable(L);
  luaL_setfuncs(L, funcs, 0);
  lua_createtable(L, 0, (int)(sizeof option_names / sizeof option_names[0]));
  for (i = 0; i < sizeof option_names / sizeof option_names[0]; i++) {
    lua_pushinteger(L, option_names[i].code);
    lua_setfield(L, -2, option_names[i].name);
  }
  lua_setfield(L, -2, "options");
  lua_setfield(L, 1, "telnet");
  return 0;
}
