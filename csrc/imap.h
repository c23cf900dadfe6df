/*
** imap codec: the pure C core shared by the Lua binding (imap.c) and the
** fuzz target.  No Lua types here.
*/
#ifndef PARLEY_IMAP_H
#define PARLEY_IMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  char *p;
  size_t n, cap;
} imap_buf;

void imap_buf_free(imap_buf *b);
void imap_init(void);   /* character tables; call once before parsing */

/* token types */
enum {
  IMAP_T_ATOM = 'a',    /* off/len: bytes in buf */
  IMAP_T_QUOTED = 'q',  /* off/len: inside the quotes, escapes kept */
  IMAP_T_LITERAL = 'l', /* off/len: literal bytes in buf */
  IMAP_T_LITERAL8 = 'b',
  IMAP_T_EXT = 'x',     /* literal held outside: len = its index (1..) */
  IMAP_T_OPEN = '(',    /* off = index of its CLOSE, len = children */
  IMAP_T_CLOSE = ')'
};

typedef struct {
  unsigned char type;
  unsigned char esc;    /* quoted holds backslash escapes; ext: literal8 */
  size_t off, len;
} imap_tok;

/* feed results */
enum { IMAP_ERROR = -1, IMAP_DONE = 0, IMAP_NEED_LITERAL = 1, IMAP_NEED_LINE = 2 };

typedef struct {
  int response;         /* 0: command parser, 1: response parser */
  /* limits */
  size_t max_line, max_depth, max_tokens;
  uint64_t max_literal, max_literal_unauth, max_nonsync, max_command;
  int authenticated, allow_8bit;
  /* state of the current command / response */
  int state;            /* 0 idle, 1 waiting for a literal, 2 after one */
  uint64_t lit_n;
  int lit_nonsync, lit_binary, lit_refused;
  imap_buf buf;         /* every byte of the command: lines and literals */
  imap_tok *tok;
  size_t ntok, captok;
  size_t *stack;        /* token index of each open "(" */
  size_t *count;        /* children counted per level; [0] = top level */
  size_t depth, capstack;
  uint64_t total;
  size_t next;          /* ext literals so far */
  /* head */
  size_t tag_off, tag_len;
  int tag_ok;
  size_t name_off, name_len;  /* command name; response: first atom */
  int uid;
  int text_mode;        /* response: status or continuation, text below */
  size_t code_off, code_len, arg_off, arg_len, text_off, text_len;
  int has_code, has_arg;
  size_t first_tok;     /* response data: first token after the head */
  const char *err;
} imap_parser;

void imap_parser_init(imap_parser *p, int response);
void imap_parser_free(imap_parser *p);
void imap_parser_reset(imap_parser *p);
/* each returns IMAP_DONE, IMAP_NEED_LITERAL (lit_n, lit_nonsync,
   lit_binary set) or IMAP_ERROR (err set, parser reset except the tag) */
int imap_feed_line(imap_parser *p, const char *line, size_t n);
int imap_feed_literal(imap_parser *p, const char *data, size_t n);
int imap_feed_literal_ext(imap_parser *p);

/* sequence sets: emit(ud, lo, hi) per part, 0 standing for "*";
   returns NULL or an error reason */
const char *imap_sequence_set(const char *s, size_t n,
                              void (*emit)(void *, uint32_t, uint32_t),
                              void *ud);

/* modified UTF-7; return NULL or an error reason; append to out */
const char *imap_utf7_encode(const char *s, size_t n, imap_buf *out);
const char *imap_utf7_decode(const char *s, size_t n, imap_buf *out);

/* one FETCH attribute atom (RFC 3501 fetch-att, RFC 9051 BINARY) */
#define IMAP_MAX_PART 32
typedef struct {
  const char *name;     /* canonical name: "BODY", "BINARY", "FLAGS" ... */
  size_t name_len;
  int section;          /* has [...] */
  int peek;
  uint32_t part[IMAP_MAX_PART];
  int nparts;
  const char *text;     /* "HEADER", "HEADER.FIELDS", ..., or NULL */
  const char *fields;   /* raw header-list contents (inside the parens) */
  size_t fields_len;
  int partial;
  uint32_t origin, length;
} imap_fetch_att;

const char *imap_parse_fetch_att(const char *s, size_t n, imap_fetch_att *a);
/* header-list item i: returns next offset, 0 at the end, -1 on error;
   *esc set when the item is a quoted string holding escapes */
long imap_next_field(const char *s, size_t n, size_t pos, size_t *off,
                     size_t *len, int *quoted);

#endif
