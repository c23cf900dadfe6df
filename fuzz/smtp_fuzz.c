/*
** libFuzzer target for the SMTP codec's pure core (csrc/smtp.h).
**
** - parse_command and parse_reply_line on the input as one line (ASCII and
**   SMTPUTF8 limits); a parsed MAIL/RCPT mailbox must re-parse to itself
**   (canonical form is a fixed point);
** - the DATA decoder fed the input whole and in two pieces must give the
**   same bytes, done, used, error and size;
** - encoder (two pieces) then decoder gives the CRLF-normalised input.
** Any mismatch abort()s.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_path(const smtp_path *path, const smtp_limits *lim) {
  char dec[2 * SMTP_PATH_HARDMAX + 8], canon[SMTP_PATH_HARDMAX + 8];
  char dec2[2 * SMTP_PATH_HARDMAX + 8], canon2[SMTP_PATH_HARDMAX + 8];
  char wrapped[SMTP_PATH_HARDMAX + 8];
  size_t dl, cl, dl2, cl2;
  smtp_path again;
  smtp_limits l2 = *lim;
  if (path->len > SMTP_PATH_HARDMAX) abort();
  dl = smtp_local_decode(path, dec);
  if (dl > path->local.n) abort();
  cl = smtp_mailbox_canon(path, dec, dl, canon);
  if (cl > path->len) abort();
  (void)smtp_relay_vector(path);
  if (path->null || path->postmaster) return;
  /* the canonical form must parse back to itself */
  wrapped[0] = '<';
  memcpy(wrapped + 1, canon, cl);
  wrapped[cl + 1] = '>';
  l2.max_path = l2.max_local = l2.max_domain = SMTP_PATH_HARDMAX;
  if (smtp_parse_path(wrapped, cl + 2, &l2, 0, &again) != NULL) abort();
  dl2 = smtp_local_decode(&again, dec2);
  cl2 = smtp_mailbox_canon(&again, dec2, dl2, canon2);
  if (dl2 != dl || memcmp(dec, dec2, dl) != 0) abort();
  if (cl2 != cl || memcmp(canon, canon2, cl) != 0) abort();
  if ((smtp_relay_vector(path) == NULL) != (smtp_relay_vector(&again) == NULL) &&
      path->route.n == 0)
    abort();
}

static void check_command(const char *s, size_t n, int utf8) {
  smtp_limits lim;
  smtp_command cmd;
  const smtp_error *err;
  smtp_limits_default(&lim);
  lim.utf8 = utf8;
  if (utf8) lim.max_line = 1 << 20;
  err = smtp_parse_command(s, n, &lim, &cmd);
  if (err) {
    if (err->reason == NULL || err->code < 500 || err->code > 559) abort();
    return;
  }
  if (cmd.verb_len == 0 || cmd.verb_len > SMTP_MAX_VERB) abort();
  if (cmd.kind == SMTP_MAIL || cmd.kind == SMTP_RCPT) check_path(&cmd.path, &lim);
  if (cmd.nparams < 0 || cmd.nparams > SMTP_MAX_PARAMS) abort();
}

/* the decoder run over [s, s+n) in pieces split at `cut` */
static void run_decoder(const char *s, size_t n, size_t cut, int normalize,
                        char *out, size_t *outlen, size_t *used,
                        smtp_data_decoder *d) {
  size_t o1 = 0, o2 = 0, u;
  smtp_dd_init(d, normalize, 20);
  u = smtp_dd_feed(d, s, cut, out, &o1);
  if (u > cut) abort();
  if (!d->done) {
    size_t u2 = smtp_dd_feed(d, s + cut, n - cut, out + o1, &o2);
    if (u2 > n - cut) abort();
    if (!d->done && u2 != n - cut) abort();
    u += u2;
  } else if (u == cut && cut < n) {
    /* nothing: the terminator ended exactly at the cut */
  }
  *outlen = o1 + o2;
  *used = u;
  if (d->size != *outlen) abort();
}

static size_t normalise(const char *s, size_t n, char *out) {
  size_t i, o = 0;
  for (i = 0; i < n; i++) {
    if (s[i] == '\r' || s[i] == '\n') {
      if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') i++;
      out[o++] = '\r';
      out[o++] = '\n';
    } else {
      out[o++] = s[i];
    }
  }
  if (o > 0 && !(o >= 2 && out[o - 2] == '\r' && out[o - 1] == '\n')) {
    out[o++] = '\r';
    out[o++] = '\n';
  }
  return o;
}

/* the keep_cr encoder (POP3): whole and split feeds agree, no bare LF
** leaves it, every input byte does, and only LFs and leading dots grow */
static void check_keep_cr(const char *s, size_t size, size_t cut) {
  smtp_data_encoder e1, e2;
  size_t l1, l2, i, lfs = 0;
  char *w1 = malloc(2 * size + 8), *w2 = malloc(2 * size + 8);
  if (!w1 || !w2) abort();
  smtp_de_init(&e1, 1);
  smtp_de_init(&e2, 1);
  l1 = smtp_de_feed(&e1, s, size, w1);
  l1 += smtp_de_finish(&e1, w1 + l1);
  l2 = smtp_de_feed(&e2, s, cut, w2);
  l2 += smtp_de_feed(&e2, s + cut, size - cut, w2 + l2);
  l2 += smtp_de_finish(&e2, w2 + l2);
  if (l1 != l2 || memcmp(w1, w2, l1) != 0) abort();
  for (i = 0; i < l1; i++)
    if (w1[i] == '\n' && (i == 0 || w1[i - 1] != '\r')) abort();
  for (i = 0; i < size; i++)
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) lfs++;
  if (l1 < size + lfs + 3) abort();
  free(w1);
  free(w2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  size_t cut = size ? (size_t)data[0] % (size + 1) : 0;
  smtp_reply r;
  char *a, *b, *wire, *norm, *back;
  size_t al, bl, ua, ub, wl, nl, backl, used;
  smtp_data_decoder d1, d2;
  smtp_data_encoder e;

  check_command(s, size, 0);
  check_command(s, size, 1);
  if (smtp_parse_reply_line(s, size, 1 << 20, &r) == NULL) {
    if (r.code < 200 || r.code > 559) abort();
    if (r.enhanced.n && !smtp_enhanced_valid(r.enhanced.p, r.enhanced.n)) abort();
  }
  (void)smtp_enhanced_valid(s, size);

  /* decoder: whole vs. two pieces, both modes */
  a = malloc(2 * size + 8);
  b = malloc(2 * size + 8);
  if (!a || !b) abort();
  {
    int normalize = size && (data[size - 1] & 1);
    smtp_dd_init(&d1, normalize, 20);
    ua = smtp_dd_feed(&d1, s, size, a, &al);
    run_decoder(s, size, cut, normalize, b, &bl, &ub, &d2);
    if (al != bl || memcmp(a, b, al) != 0) abort();
    if (ua != ub || d1.done != d2.done) abort();
    if ((d1.error == NULL) != (d2.error == NULL)) abort();
    if (d1.error && strcmp(d1.error, d2.error) != 0) abort();
    if (!d1.done && ua != size) abort();
  }
  free(a);
  free(b);

  /* encoder in two pieces, then decoder: the normalised input comes back */
  wire = malloc(2 * size + 8);
  norm = malloc(2 * size + 8);
  back = malloc(2 * (2 * size + 8) + 8);
  if (!wire || !norm || !back) abort();
  smtp_de_init(&e, 0);
  wl = smtp_de_feed(&e, s, cut, wire);
  wl += smtp_de_feed(&e, s + cut, size - cut, wire + wl);
  wl += smtp_de_finish(&e, wire + wl);
  if (wl > 2 * size + 5) abort();
  nl = normalise(s, size, norm);
  smtp_dd_init(&d1, 0, (size_t)-1);
  used = smtp_dd_feed(&d1, wire, wl, back, &backl);
  if (!d1.done || used != wl || d1.error != NULL) abort();
  if (backl != nl || memcmp(back, norm, nl) != 0) abort();
  free(wire);
  free(norm);
  free(back);
  check_keep_cr(s, size, cut);
  return 0;
}
