/*
** smtp codec: the pure C core (no Lua, no I/O, no allocation), shared by
** the Lua binding in smtp.c and by fuzz/smtp_fuzz.c.  See smtp.c for the
** Lua API and the RFC references.
*/
#ifndef PARLEY_SMTP_H
#define PARLEY_SMTP_H

#include <stddef.h>
#include <stdint.h>

/* a protocol failure: short reason, reply code and enhanced code to send */
typedef struct smtp_error {
  const char *reason;
  int code;
  const char *enhanced;
} smtp_error;

typedef struct smtp_limits {
  size_t max_line;    /* command line incl. CRLF (512, RFC 5321 4.5.3.1.4) */
  size_t max_path;    /* "<...>" incl. brackets (256, 4.5.3.1.3) */
  size_t max_local;   /* local part as written (64, 4.5.3.1.1) */
  size_t max_domain;  /* domain or address literal (255, 4.5.3.1.2) */
  int max_params;     /* esmtp-params on one line (32, at most SMTP_MAX_PARAMS) */
  int utf8;           /* RFC 6531 SMTPUTF8: UTF-8 allowed in addresses */
} smtp_limits;

#define SMTP_MAX_PARAMS 64    /* ceiling of smtp_limits.max_params */
#define SMTP_MAX_VERB 16      /* longest command verb accepted */
#define SMTP_PATH_HARDMAX 4096 /* max_path can not be raised past this */

typedef struct smtp_span {
  const char *p;
  size_t n;
} smtp_span;

typedef struct smtp_path {
  smtp_span route;    /* "@a,@b" (without the ':') or n == 0 */
  smtp_span local;    /* local part as written, quotes included */
  smtp_span domain;   /* domain, or address literal with its brackets */
  size_t len;         /* bytes of the path ("<" to ">", or bare mailbox) */
  int quoted;         /* local part was a Quoted-string */
  int null;           /* "<>" */
  int postmaster;     /* "<Postmaster>" (RCPT only) */
  int nonascii;       /* some byte >= 0x80 in local part or domain */
} smtp_path;

enum {
  SMTP_OTHER, SMTP_HELO, SMTP_EHLO, SMTP_MAIL, SMTP_RCPT, SMTP_DATA,
  SMTP_BDAT, SMTP_AUTH, SMTP_RSET, SMTP_QUIT, SMTP_NOOP, SMTP_HELP,
  SMTP_VRFY, SMTP_EXPN, SMTP_STARTTLS
};

typedef struct smtp_param {
  smtp_span key;      /* as written (compare case-insensitively) */
  smtp_span value;    /* value.p == NULL: keyword without "=" */
} smtp_param;

typedef struct smtp_command {
  int kind;
  char verb[SMTP_MAX_VERB + 1];  /* uppercased, NUL-terminated */
  size_t verb_len;
  smtp_span arg;      /* HELO/EHLO domain, AUTH mechanism, other argument */
  smtp_span arg2;     /* AUTH initial response (p == NULL: none) */
  smtp_path path;     /* MAIL/RCPT */
  int nparams;
  smtp_param params[SMTP_MAX_PARAMS];
  uint64_t size;      /* BDAT chunk size */
  int last;           /* BDAT ... LAST */
} smtp_command;

void smtp_limits_default(smtp_limits *lim);

/* `s` is a command line without its CRLF; NULL on success */
const smtp_error *smtp_parse_command(const char *s, size_t n,
                                     const smtp_limits *lim,
                                     smtp_command *cmd);

/* a path "<...>" or a bare mailbox; flags: SMTP_PATH_* */
#define SMTP_PATH_NULL 1        /* "<>" allowed (MAIL) */
#define SMTP_PATH_POSTMASTER 2  /* "<Postmaster>" allowed (RCPT) */
const smtp_error *smtp_parse_path(const char *s, size_t n,
                                  const smtp_limits *lim, int flags,
                                  smtp_path *path);

/* the local part without its quoting; `out` holds path->local.n bytes */
size_t smtp_local_decode(const smtp_path *path, char *out);
/* the canonical mailbox (minimal quoting, RFC 5321 4.1.2); `out` holds
** path->len bytes; `decoded` is what smtp_local_decode gave */
size_t smtp_mailbox_canon(const smtp_path *path, const char *decoded,
                          size_t dlen, char *out);
/* "source route", "at-sign in local part", ... or NULL */
const char *smtp_relay_vector(const smtp_path *path);

int smtp_enhanced_valid(const char *s, size_t n);

typedef struct smtp_reply {
  int code;
  int more;           /* "250-" */
  smtp_span text;     /* after the code and the enhanced code */
  smtp_span enhanced; /* n == 0: none */
} smtp_reply;

/* `s` is one reply line without its CRLF; NULL on success, else a reason */
const char *smtp_parse_reply_line(const char *s, size_t n, size_t max_line,
                                  smtp_reply *r);

/* DATA (RFC 5321 4.5.2): un-stuffing, only CRLF.CRLF ends the message */
typedef struct smtp_data_decoder {
  int state;
  int bol_real;       /* the current line began after a real CRLF */
  int normalize;      /* bare CR / LF become CRLF without an error */
  int done;
  size_t max_line;    /* text line incl. CRLF (1000, 4.5.3.1.6) */
  size_t linelen;
  uint64_t size;      /* message bytes produced */
  const char *error;  /* first error: "bare lf", "bare cr", "line too long" */
} smtp_data_decoder;

void smtp_dd_init(smtp_data_decoder *d, int normalize, size_t max_line);
/* `out` must hold 2 * n + 4 bytes; returns the input bytes consumed (all
** of them unless the terminator was seen) and sets *outlen */
size_t smtp_dd_feed(smtp_data_decoder *d, const char *in, size_t n,
                    char *out, size_t *outlen);

/* sending side: CRLF normalisation and dot-stuffing */
typedef struct smtp_data_encoder {
  int bol;            /* at the start of a line */
  int skip_lf;        /* a CR was just turned into CRLF: drop an LF next */
  int keep_cr;        /* a CR alone is data: only LF becomes CRLF */
  int prev_cr;        /* keep_cr: the last byte fed was a CR */
  int finished;
} smtp_data_encoder;

/* keep_cr: POP3 sends a Maildir file as it is (its octet count counts
** only bare LFs as growing); SMTP turns a lone CR into CRLF as well */
void smtp_de_init(smtp_data_encoder *e, int keep_cr);
/* `out` must hold 2 * n bytes; returns the bytes written */
size_t smtp_de_feed(smtp_data_encoder *e, const char *in, size_t n,
                    char *out);
/* `out` must hold 5 bytes: [CRLF] "." CRLF */
size_t smtp_de_finish(smtp_data_encoder *e, char *out);

#endif
