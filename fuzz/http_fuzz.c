/*
** libFuzzer target for the http codec core (csrc/http.c).
**
** Input: byte 0 picks options (lenient, small limits), byte 1 a split
** point; the rest is parsed as a request head, a response head, a chunked
** body and framing field values.  Checks (abort on failure):
**  - a prefix of the input parses to "incomplete" or to exactly the result
**    of the whole input (same length or same error);
**  - http_head_incomplete never says "incomplete" where a parse finds more;
**  - the chunked decoder gives the same data, end, consumed count and
**    error whether the input is fed whole, in two pieces or in three;
**  - data chunk-encoded then decoded comes back unchanged.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define NFIELDS 64

typedef long (*parser)(const char *, size_t, const http_limits *,
                       http_head *);

static long parse(parser f, const char *buf, size_t len,
                  const http_limits *lim, http_head *h, http_field *fields) {
  memset(h, 0, sizeof *h);
  h->fields = fields;
  h->fields_cap = NFIELDS;
  return f(buf, len, lim, h);
}

static void check_head(parser f, const char *buf, size_t len, size_t split,
                       const http_limits *lim) {
  http_field fa[NFIELDS], fb[NFIELDS];
  http_head a, b;
  long ra = parse(f, buf, len, lim, &a, fa), rb;
  size_t i;
  if (ra > 0) {
    if ((size_t)ra > len) abort();
    for (i = 0; i < a.nfields; i++) {
      const http_field *x = &fa[i];
      if (x->name < buf || x->name + x->name_len > buf + ra) abort();
      if (x->value < buf || x->value + x->value_len > buf + ra) abort();
      if (x->name_len == 0) abort();
    }
  } else if (ra == HTTP_ERROR) {
    if (!a.err || a.err_status < 400) abort();
  } else if (ra != HTTP_INCOMPLETE) {
    abort();
  }
  if (split > len) split = len;
  rb = parse(f, buf, split, lim, &b, fb);
  if (rb != HTTP_INCOMPLETE) {
    if (rb != ra) abort();
    if (rb == HTTP_ERROR && (strcmp(a.err, b.err) != 0
                             || a.err_status != b.err_status))
      abort();
    if (rb > 0 && a.nfields != b.nfields) abort();
  } else if (f == http_parse_request && split < len &&
             http_head_incomplete(buf, 0, len, split, lim)) {
    /* the seen-hint shortcut may delay syntax errors to the end of the
    ** head, but must not hide a complete head or a size limit */
    if (ra > 0) abort();
    if (ra == HTTP_ERROR && (a.err_status == 414 ||
                             strcmp(a.err, "head too large") == 0))
      abort();
  }
}

typedef struct decoded {
  char *data; size_t len;
  int rc; size_t used;
  const char *err;
  char *trailer; size_t tlen;
} decoded;

/* Feed in[0..len) in pieces cut at cuts[0..ncut) (ascending). */
static void decode(const char *in, size_t len, const size_t *cuts, int ncut,
                   int lenient, decoded *out) {
  http_chunked d;
  size_t from = 0;
  int k;
  http_chunked_init(&d);
  d.lenient = lenient;
  d.max_chunk = 1u << 20;
  d.max_ext = 64;
  d.max_trailer = 512;
  d.max_fields = 8;
  out->data = malloc(len + 1);
  out->len = 0;
  out->used = 0;
  out->rc = HTTP_CHUNK_NEED;
  for (k = 0; k <= ncut; k++) {
    size_t to = k < ncut ? cuts[k] : len, off = from;
    while (off < to) {
      const char *data;
      size_t dlen, used;
      int rc = http_chunked_step(&d, in + off, to - off, &used, &data,
                                 &dlen);
      if (used > to - off) abort();
      off += used;
      if (rc == HTTP_CHUNK_DATA) {
        if (data < in || data + dlen > in + len) abort();
        memcpy(out->data + out->len, data, dlen);
        out->len += dlen;
        continue;
      }
      if (rc == HTTP_CHUNK_NEED) {
        if (off != to) abort();
        break;
      }
      out->rc = rc;
      out->used = off;
      goto finish;
    }
    from = to;
  }
  out->used = len;
finish:
  out->err = d.err;
  out->trailer = NULL;
  out->tlen = 0;
  if (out->rc == HTTP_CHUNK_DONE) {
    out->trailer = malloc(d.tlen + 1);
    memcpy(out->trailer, d.trailer ? d.trailer : "", d.tlen);
    out->tlen = d.tlen;
  }
  http_chunked_free(&d);
}

/* same data, end and error; the consumed count matters (and must match)
** only when the decoder did not fail: a trailer over the limit is noticed
** at the piece that crosses it */
static void same_decoding(const decoded *a, const decoded *b) {
  if (a->rc != b->rc || a->len != b->len) abort();
  if (a->rc != HTTP_CHUNK_ERROR && a->used != b->used) abort();
  if (a->len && memcmp(a->data, b->data, a->len) != 0) abort();
  if (a->rc == HTTP_CHUNK_ERROR && strcmp(a->err, b->err) != 0) abort();
  if (a->tlen != b->tlen ||
      (a->tlen && memcmp(a->trailer, b->trailer, a->tlen) != 0))
    abort();
}

static void drop(decoded *a) {
  free(a->data);
  free(a->trailer);
}

static void check_chunked(const char *in, size_t len, size_t split,
                          int lenient) {
  decoded whole, two, three;
  size_t cuts[2];
  decode(in, len, NULL, 0, lenient, &whole);
  cuts[0] = split % (len + 1);
  decode(in, len, cuts, 1, lenient, &two);
  same_decoding(&whole, &two);
  cuts[0] = split % (len + 1) / 2;
  cuts[1] = split % (len + 1);
  decode(in, len, cuts, 2, lenient, &three);
  same_decoding(&whole, &three);
  drop(&whole); drop(&two); drop(&three);
}

/* chunk-encode in pieces of the given size, decode, compare */
static void check_roundtrip(const char *in, size_t len, size_t piece) {
  char *wire = malloc(len * 2 + 64 + (len / (piece ? piece : 1) + 1) * 24);
  size_t w = 0, off = 0, cut;
  decoded out;
  if (piece == 0) piece = 1;
  while (off < len) {
    size_t n = len - off < piece ? len - off : piece;
    w += (size_t)sprintf(wire + w, "%zx\r\n", n);
    memcpy(wire + w, in + off, n);
    w += n;
    memcpy(wire + w, "\r\n", 2);
    w += 2;
    off += n;
  }
  memcpy(wire + w, "0\r\n\r\nX", 6);
  w += 6;
  cut = w / 3;
  decode(wire, w, &cut, 1, 0, &out);
  if (out.rc != HTTP_CHUNK_DONE || out.len != len || out.used != w - 1 ||
      memcmp(out.data, in, len) != 0)
    abort();
  drop(&out);
  free(wire);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  http_limits lim;
  const char *buf;
  size_t len, split;
  int opt;
  if (size < 2) return 0;
  opt = data[0];
  split = data[1];
  buf = (const char *)data + 2;
  len = size - 2;
  http_default_limits(&lim);
  lim.lenient = opt & 1;
  if (opt & 2) {             /* small limits reach every limit path */
    lim.max_line = 16 + (size_t)(opt >> 4);
    lim.max_head = 64 + (size_t)(opt >> 2) * 4;
    lim.max_fields = (size_t)(opt >> 5);
  }
  if (lim.max_fields > NFIELDS) lim.max_fields = NFIELDS;
  if (split > len) split = len;
  check_head(http_parse_request, buf, len, split, &lim);
  lim.unfold = 1;
  check_head(http_parse_response, buf, len, split, &lim);
  check_chunked(buf, len, split, opt & 1);
  check_roundtrip(buf, len, split + 1);
  {
    /* framing over two field values cut from the input */
    const char *err;
    int st, kind;
    int64_t n;
    size_t cut = split;
    kind = http_body_framing((opt & 4) ? buf : NULL, cut,
                             (opt & 8) ? buf + cut : NULL, len - cut,
                             opt & 16, (opt & 32) ? "HEAD" : "GET",
                             100 + (int)data[1] * 2, (opt >> 6) & 1, &n,
                             &err, &st);
    if (kind == HTTP_BODY_ERROR && (!err || st < 400)) abort();
    if (kind == HTTP_BODY_LENGTH && n < 0) abort();
  }
  return 0;
}
