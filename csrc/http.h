/*
** http codec: the pure C core of core.http (no Lua, no I/O), usable from a
** fuzz target or a benchmark.  See csrc/http.c for the Lua API.
**
** Parsers work over a byte range and return the number of bytes the head
** used (> 0), HTTP_INCOMPLETE when more input is needed, or HTTP_ERROR with
** h->err (short lowercase reason) and h->err_status (HTTP status to answer)
** set.  Parsed strings point into the caller's buffer; nothing is copied.
*/
#ifndef PARLEY_HTTP_H
#define PARLEY_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_INCOMPLETE (-2L)
#define HTTP_ERROR      (-1L)

typedef struct http_field {
  const char *name;  size_t name_len;
  const char *value; size_t value_len;   /* OWS trimmed */
  int folded;        /* value spans obs-folds: CR/LF inside must become SP */
} http_field;

typedef struct http_limits {
  size_t max_line;      /* request-line / status-line, without CRLF */
  size_t max_head;      /* start line + fields + empty line */
  size_t max_fields;    /* field lines */
  int lenient;          /* accept a bare LF as a line end */
  int unfold;           /* accept obs-fold (RFC 9112 §5.2), else 400 */
} http_limits;

typedef struct http_head {
  const char *method; size_t method_len;   /* requests */
  const char *target; size_t target_len;
  int status;                              /* responses */
  const char *reason; size_t reason_len;
  int minor;                               /* 0 or 1 */
  http_field *fields;   /* caller's array of fields_cap entries, or NULL */
  size_t fields_cap;    /* must be >= max_fields when fields != NULL */
  size_t nfields;
  const char *err; int err_status;
} http_head;

void http_default_limits(http_limits *lim);
/* a[0, n) and b[0, n) equal but for ASCII case (field names; not
** strncasecmp: it follows the locale, and a Turkish one lowercases "I" to
** a dotless i) */
int http_same_name(const char *a, const char *b, size_t n);
long http_parse_request(const char *buf, size_t len, const http_limits *lim,
                        http_head *h);
long http_parse_response(const char *buf, size_t len,
                         const http_limits *lim, http_head *h);
/* With buf[start, from) known to hold no complete head (a previous call
** returned HTTP_INCOMPLETE on it): 1 when buf[start, len) still holds none
** and is within the limits (no need to parse), 0 when a parse is due. */
int http_head_incomplete(const char *buf, size_t start, size_t len,
                         size_t from, const http_limits *lim);
/* A field section alone (trailers): lines up to and including the empty
** line.  Same return convention. */
long http_parse_fields(const char *buf, size_t len, const http_limits *lim,
                       http_head *h);

/* Message framing (RFC 9112 §6.3) from the combined field values of
** Transfer-Encoding and Content-Length (NULL when absent). */
enum { HTTP_BODY_NONE, HTTP_BODY_LENGTH, HTTP_BODY_CHUNKED, HTTP_BODY_CLOSE,
       HTTP_BODY_TUNNEL, HTTP_BODY_ERROR };
int http_body_framing(const char *te, size_t te_len, const char *cl,
                      size_t cl_len, int is_request, const char *method,
                      int status, int minor, int64_t *length,
                      const char **err, int *err_status);

/* Incremental chunked decoder (RFC 9112 §7.1). */
typedef struct http_chunked {
  int state;
  uint64_t size;            /* chunk size being read / data left */
  size_t ext;               /* bytes of chunk-ext seen on this line */
  uint64_t max_chunk;
  size_t max_ext, max_trailer, max_fields;
  int lenient;
  char *trailer; size_t tlen, tcap, tline;   /* raw trailer section */
  const char *err;
} http_chunked;

enum { HTTP_CHUNK_NEED, HTTP_CHUNK_DATA, HTTP_CHUNK_DONE, HTTP_CHUNK_ERROR };

void http_chunked_init(http_chunked *d);
/* Consume from in[0..len): stops after producing one data span (returned
** in *data and *data_len, pointing into in), at the end of input, at the end of
** the chunked body, or at an error.  *used is set to the bytes consumed. */
int http_chunked_step(http_chunked *d, const char *in, size_t len,
                      size_t *used, const char **data, size_t *data_len);
void http_chunked_free(http_chunked *d);

#endif
