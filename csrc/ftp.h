/*
** ftp codec: pure C core (no Lua, no I/O), shared by csrc/ftp.c and the
** fuzz target.  See the comment block at the top of csrc/ftp.c for the
** Lua API built on top of it.
*/
#ifndef PARLEY_FTP_H
#define PARLEY_FTP_H

#include <stddef.h>

/* ---- replies (RFC 959 section 4.2) ---- */
typedef struct {
  int code;            /* reply code of the reply being read, 0 when idle */
  int multiline;       /* 1 while inside "123-" ... "123 " */
  size_t lines;        /* lines of the current reply so far */
  size_t max_lines;    /* limits */
  size_t max_bytes;
  char *buf;           /* text of the current reply, lines joined by "\n" */
  size_t len, cap;
} ftp_reply_state;

#define FTP_REPLY_MORE 0
#define FTP_REPLY_DONE 1
#define FTP_REPLY_ERROR (-1)

void ftp_reply_init(ftp_reply_state *st, size_t max_lines, size_t max_bytes);
void ftp_reply_free(ftp_reply_state *st);
void ftp_reply_reset(ftp_reply_state *st);
/* Feeds one line (without CRLF).  DONE: st->code and st->buf/st->len hold
** the reply (valid until the next call); ERROR: *err says why and the
** state is reset. */
int ftp_reply_feed(ftp_reply_state *st, const char *line, size_t n,
                   const char **err);

/* ---- host-port (RFC 959 PORT/PASV, RFC 2428 EPRT/EPSV) ---- */
int ftp_parse_port(const char *s, size_t n, unsigned char ip[4],
                   unsigned *port, const char **err);
int ftp_parse_pasv(const char *s, size_t n, unsigned char ip[4],
                   unsigned *port, const char **err);
int ftp_parse_epsv(const char *s, size_t n, unsigned *port,
                   const char **err);
/* ip receives the canonical text form (inet_ntop), at least 64 bytes */
int ftp_parse_eprt(const char *s, size_t n, char *ip, int *family,
                   unsigned *port, const char **err);

/* ---- time-val (RFC 3659 section 2.3) ---- */
/* out: at least 24 bytes; ms < 0 means no fraction.  0 if out of range. */
size_t ftp_format_time(long long t, int ms, char *out);
/* returns 1 and the seconds (UTC) plus the fraction (0 <= frac < 1) */
int ftp_parse_time(const char *s, size_t n, long long *t, double *frac,
                   int *has_frac, const char **err);

/* ---- listings ---- */
enum { FTP_T_NONE, FTP_T_FILE, FTP_T_DIR, FTP_T_LINK, FTP_T_BLOCK,
       FTP_T_CHAR, FTP_T_FIFO, FTP_T_SOCKET };

typedef struct {
  int type;
  const char *name; size_t name_len;
  const char *target; size_t target_len;  /* links; NULL if none */
  const char *owner; size_t owner_len;    /* NULL if absent */
  const char *group; size_t group_len;    /* NULL if absent */
  long long size; int has_size;
  long long mtime; int has_mtime;
  int mode; int has_mode;                 /* permission bits incl. 07000 */
  long long nlink; int has_nlink;
  long long major, minor; int has_dev;
} ftp_list_entry;

/* 1 and *e filled (pointers into line) for a line understood, 0 if not */
int ftp_parse_list_line(const char *line, size_t n, long long now,
                        ftp_list_entry *e);
/* Writes the ls -l line into out (cap bytes): its length, or 0 with *err.
** cap >= name_len + target_len + owner_len + group_len + 160 suffices. */
size_t ftp_format_list_line(const ftp_list_entry *e, long long now,
                            char *out, size_t cap, const char **err);

/* ---- MLSx facts (RFC 3659 section 7) ---- */
typedef struct {
  const char *key; size_t klen;
  const char *val; size_t vlen;
} ftp_fact;

/* out needs sum(klen + vlen + 2) + name_len + 2 bytes */
size_t ftp_format_facts(const ftp_fact *f, size_t nf, const char *name,
                        size_t name_len, char *out, const char **err);
/* splits "facts SP name"; then ftp_next_fact walks the facts */
int ftp_split_facts(const char *line, size_t n, const char **facts,
                    size_t *facts_len, const char **name, size_t *name_len,
                    const char **err);
/* 1 with the next fact, 0 at the end, -1 on a malformed fact */
int ftp_next_fact(const char **p, const char *end, ftp_fact *f);

/* ---- TYPE A (RFC 959 section 3.1.1.1) ---- */
/* out needs 2 * n bytes; every LF becomes CRLF, CR passes through */
size_t ftp_ascii_encode(const char *in, size_t n, char *out);
/* out needs n + 1 bytes; CRLF becomes LF; *pending_cr carries a CR that
** ended the previous chunk */
size_t ftp_ascii_decode(int *pending_cr, const char *in, size_t n,
                        char *out);

/* ---- commands, numbers ---- */
/* verb (uppercased, 1..4 letters, NUL-terminated) and the argument after
** the single SP (NULL when there is none) */
int ftp_parse_command(const char *s, size_t n, char verb[5], size_t *verb_len,
                      const char **arg, size_t *arg_len, const char **err);
int ftp_parse_size(const char *s, size_t n, long long *v);

/* ---- paths ---- */
/* out needs cwd_len + arg_len + 2 bytes; returns the length, 0 on NUL */
size_t ftp_normalize_path(const char *cwd, size_t cwd_len, const char *arg,
                          size_t arg_len, char *out);

#endif
