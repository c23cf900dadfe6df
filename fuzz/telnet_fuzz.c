/*
** libFuzzer target for the telnet codec core (csrc/telnet.c).
**
** Input: byte 0 picks the options (newline mode, forced binary, a small
** subnegotiation limit, which options are agreed), the rest is a stream
** from the peer.  Checks, with abort() on failure:
**  - the whole stream and the same stream in pseudo-random splits give the
**    same data, events (with positions) and replies;
**  - never more replies than negotiations received; the SB buffer never
**    grows past max_subneg;
**  - the reply of the codec, played against a second codec together with
**    a few enable/disable requests on both, dies out in bounded rounds;
**  - escape then feed gives the data back (binary; binary for a printed
**    line, where a bare "\n" comes back as "\r\n"; and NVT in lf mode
**    with "\r\n" read as "\n"); the escaped size is n only when nothing
**    changed;
**  - the NEW-ENVIRON walker stays in bounds on arbitrary lists.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "telnet.h"

typedef struct obuf {
  unsigned char *p;
  size_t n, cap;
} obuf;

static void put(obuf *b, const void *p, size_t n) {
  if (b->cap - b->n < n) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->n < n) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) abort();
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->n, p, n);
  b->n += n;
}

typedef struct rec {
  obuf data, events, reply;
  size_t negs, replies;
} rec;

static void on_data(void *ud, const unsigned char *p, size_t n) {
  rec *r = ud;
  if (n == 0) abort();
  put(&r->data, p, n);
}

static void on_send(void *ud, const unsigned char *p, size_t n) {
  rec *r = ud;
  if (n != 3 || p[0] != TN_IAC || p[1] < TN_WILL) abort();
  r->replies++;
  put(&r->reply, p, n);
}

static void on_event(void *ud, tn_event *ev) {
  rec *r = ud;
  int v[9];
  size_t at = r->data.n;
  if (ev->type == TN_EV_NEG) r->negs++;
  if (ev->type == TN_EV_ENVIRON) {
    /* the list was validated: walking it with unescape must succeed */
    size_t pos = 0;
    tn_envtok tok;
    int k;
    while ((k = tn_environ_next(ev->buf, ev->len, &pos, 1, &tok)) == 1) {
      if (tok.name + tok.name_len > ev->buf + ev->len) abort();
      if (tok.value && tok.value + tok.value_len > ev->buf + ev->len) abort();
    }
    if (k != 0) abort();
    /* the walk rewrote the buffer: the split run must do the same */
  }
  v[0] = (int)ev->type; v[1] = ev->option; v[2] = ev->code; v[3] = ev->side;
  v[4] = (int)ev->width; v[5] = (int)ev->height; v[6] = (int)ev->index;
  v[7] = ev->last; v[8] = (int)ev->len;
  put(&r->events, v, sizeof v);
  put(&r->events, &at, sizeof at);
  put(&r->events, &ev->reason, sizeof ev->reason);
  put(&r->events, ev->buf, ev->len);
}

static void *fz_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

static uint32_t rnd(uint32_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

static void setup(tn_t *t, unsigned flags) {
  static const int opts[] = {TN_OPT_BINARY, TN_OPT_ECHO, TN_OPT_SGA,
                             TN_OPT_TTYPE, TN_OPT_NAWS, TN_OPT_NEW_ENVIRON};
  size_t i;
  tn_init(t, fz_alloc, NULL);
  t->lf = flags & 1;
  t->raw_in = (flags >> 1) & 1;
  t->negotiations = 1;
  if (flags & 4) t->max_subneg = 8;
  if (flags & 8) t->max_ttypes = 3;
  for (i = 0; i < sizeof opts / sizeof opts[0]; i++) {
    tn_allow(t, opts[i], (int)(i & 1), (flags >> 4) & 1);
    tn_allow(t, opts[i], (int)!(i & 1), (flags >> 5) & 1);
  }
  if (flags & 0x40) tn_allow(t, TN_OPT_BINARY, TN_HIM, 1);
}

static void rec_free(rec *r) {
  free(r->data.p);
  free(r->events.p);
  free(r->reply.p);
}

static int same(const obuf *a, const obuf *b) {
  return a->n == b->n && (a->n == 0 || memcmp(a->p, b->p, a->n) == 0);
}

static void sink_of(rec *r, tn_sink *s) {
  s->data = on_data;
  s->event = on_event;
  s->send = on_send;
  s->ud = r;
}

/* delivers the bytes queued for dst; dst's replies join back */
static void deliver(tn_t *dst, obuf *in, obuf *back) {
  rec r = {0};
  tn_sink s;
  sink_of(&r, &s);
  tn_feed(dst, in->p, in->n, &s);
  in->n = 0;
  if (r.replies > r.negs) abort();
  put(back, r.reply.p, r.reply.n);
  rec_free(&r);
}

/*
** Two fresh codecs; the script interleaves enable/disable requests on
** either side with deliveries of whatever is in flight.  Once the script
** ends, the in-flight bytes must die out within bounded round trips
** (RFC 1143: no loop), and both sides must agree on every option.
**
** (A codec primed by an arbitrary stream cannot be checked this way: its
** state then reflects a conversation the second codec never had, and two
** Q-method machines with inconsistent histories can loop, WONT WILL one
** way and DONT DO the other, RFC 1143 section 4.  What holds against any
** peer is checked on the main run: at most one reply per message.)
*/
static void exchange(const unsigned char *script, size_t n, unsigned flags) {
  tn_t a, b;
  obuf ab = {0}, ba = {0};
  size_t i;
  int round, opt;
  setup(&a, flags);
  setup(&b, flags ^ 0x30);
  if (n > 256) n = 256;
  for (i = 0; i < n; i++) {
    unsigned x = script[i];
    unsigned char out[3];
    size_t k;
    switch (x & 3) {
      case 0:
      case 1: {
        tn_t *who = (x & 3) == 0 ? &a : &b;
        k = tn_request(who, (int)(x >> 4) % 8, (int)(x >> 2) & 1,
                       (int)(x >> 3) & 1, out);
        put((x & 3) == 0 ? &ab : &ba, out, k);
        break;
      }
      case 2: deliver(&b, &ab, &ba); break;
      case 3: deliver(&a, &ba, &ab); break;
    }
  }
  for (round = 0; ab.n || ba.n; round++) {
    if (round > 8) abort();
    deliver(&b, &ab, &ba);
    deliver(&a, &ba, &ab);
  }
  for (opt = 0; opt < 256; opt++) {
    if (a.q[TN_US][opt] != b.q[TN_HIM][opt]) abort();
    if (a.q[TN_HIM][opt] != b.q[TN_US][opt]) abort();
    if (a.q[TN_US][opt] > TN_YES || a.q[TN_HIM][opt] > TN_YES) abort();
  }
  tn_release(&a);
  tn_release(&b);
  free(ab.p);
  free(ba.p);
}

/* binary 0 (NVT, read back in lf mode), 1 (BINARY) or 2 (BINARY for a
** printed line: a bare "\n" goes out as CR LF, read back raw) */
static void escape_roundtrip(const unsigned char *p, size_t n, int binary) {
  size_t m = tn_escape(p, n, binary, NULL), i, w = 0;
  unsigned char *wire = malloc(m + 1), *want = malloc(2 * n + 1);
  tn_t t;
  rec r = {0};
  tn_sink s;
  if (!wire || !want) abort();
  if (tn_escape(p, n, binary, wire) != m) abort();
  /* every change grows the data (telnet.h): size n means no change */
  if (m < n || (m == n && n && memcmp(wire, p, n) != 0)) abort();
  for (i = 0; i < n; i++) {              /* expected: "\r\n" read as "\n" */
    if (!binary && p[i] == '\r' && i + 1 < n && p[i + 1] == '\n') continue;
    if (binary == 2 && p[i] == '\n' && (i == 0 || p[i - 1] != '\r')) want[w++] = '\r';
    want[w++] = p[i];
  }
  tn_init(&t, fz_alloc, NULL);
  t.lf = binary != 2;
  t.raw_in = binary;
  sink_of(&r, &s);
  tn_feed(&t, wire, m, &s);
  if (r.data.n != w || (w && memcmp(r.data.p, want, w) != 0)) abort();
  if (r.events.n || r.reply.n || t.state != 0) abort();
  tn_release(&t);
  rec_free(&r);
  free(wire);
  free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tn_t whole, split;
  rec rw = {0}, rs = {0};
  tn_sink s;
  unsigned flags;
  uint32_t seed = 2463534242u;
  size_t i;
  unsigned char *copy;
  if (size < 1) return 0;
  flags = data[0];
  data++;
  size--;
  for (i = 0; i < size && i < 16; i++) seed = seed * 31 + data[i] + 1;
  if (!seed) seed = 1;

  setup(&whole, flags);
  setup(&split, flags);
  sink_of(&rw, &s);
  tn_feed(&whole, data, size, &s);
  sink_of(&rs, &s);
  for (i = 0; i < size;) {
    size_t k = rnd(&seed) % 9;
    if (k > size - i) k = size - i;
    /* feed from a copy: the codec must not keep pointers into old input */
    copy = malloc(k + 1);
    if (!copy) abort();
    memcpy(copy, data + i, k);
    tn_feed(&split, copy, k, &s);
    free(copy);
    i += k;
  }
  if (!same(&rw.data, &rs.data) || !same(&rw.events, &rs.events) ||
      !same(&rw.reply, &rs.reply)) {
    abort();
  }
  if (rw.replies > rw.negs) abort();
  if (whole.sb_cap > whole.max_subneg || split.sb_cap > split.max_subneg) abort();
  if (memcmp(whole.q, split.q, sizeof whole.q) != 0 || whole.state != split.state) abort();

  exchange(data, size, flags);

  escape_roundtrip(data, size, 2);
  escape_roundtrip(data, size, 1);
  escape_roundtrip(data, size, 0);

  {                                       /* the environ walker alone */
    unsigned char *buf = malloc(size + 1);
    size_t pos = 0, guard = 0;
    tn_envtok tok;
    if (!buf) abort();
    memcpy(buf, data, size);
    while (tn_environ_next(buf, size, &pos, flags & 1, &tok) == 1) {
      if (pos > size || ++guard > size + 1) abort();
      if (tok.name < buf || tok.name + tok.name_len > buf + size) abort();
    }
    free(buf);
  }

  tn_release(&whole);
  tn_release(&split);
  rec_free(&rw);
  rec_free(&rs);
  return 0;
}
