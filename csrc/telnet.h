/*
** Telnet codec, pure C core (no Lua, no I/O): an incremental state
** machine, bytes in, data / events / replies out through a sink.
** csrc/telnet.c holds the core and the Lua binding (core.telnet);
** fuzz/telnet_fuzz.c drives the core alone.
*/
#ifndef PARLEY_TELNET_H
#define PARLEY_TELNET_H

#include <stddef.h>

/* RFC 854 command codes */
enum {
  TN_SE = 240, TN_NOP = 241, TN_DM = 242, TN_BRK = 243, TN_IP = 244,
  TN_AO = 245, TN_AYT = 246, TN_EC = 247, TN_EL = 248, TN_GA = 249,
  TN_SB = 250, TN_WILL = 251, TN_WONT = 252, TN_DO = 253, TN_DONT = 254,
  TN_IAC = 255
};

/* options with a parser or a special meaning here */
enum {
  TN_OPT_BINARY = 0, TN_OPT_ECHO = 1, TN_OPT_SGA = 3, TN_OPT_TTYPE = 24,
  TN_OPT_NAWS = 31, TN_OPT_NEW_ENVIRON = 39
};

/* RFC 1572 NEW-ENVIRON codes */
enum { TN_ENV_IS = 0, TN_ENV_SEND = 1, TN_ENV_INFO = 2 };
enum { TN_ENV_VAR = 0, TN_ENV_VALUE = 1, TN_ENV_ESC = 2, TN_ENV_USERVAR = 3 };

/* sides of an option, and RFC 1143 states (TN_QUEUED is the queue bit) */
enum { TN_US = 0, TN_HIM = 1 };
enum { TN_NO = 0, TN_YES = 1, TN_WANTNO = 2, TN_WANTYES = 3, TN_QUEUED = 4 };

typedef enum {
  TN_EV_CMD,          /* code: 236..249 (IAC <code>) */
  TN_EV_NEG,          /* code: WILL/WONT/DO/DONT received (opt-in) */
  TN_EV_ENABLED,      /* option, side: state became YES */
  TN_EV_DISABLED,     /* option, side: the peer turned a YES off */
  TN_EV_REFUSED,      /* option, side: the peer refused our request */
  TN_EV_SB,           /* option, buf/len: payload of an unparsed SB */
  TN_EV_NAWS,         /* width, height */
  TN_EV_TTYPE,        /* buf/len: name; index (1-based); last */
  TN_EV_TTYPE_SEND,
  TN_EV_ENVIRON,      /* code: IS / SEND / INFO; buf/len: the list */
  TN_EV_ERROR         /* reason; option (-1 if none); code (-1 if none) */
} tn_evtype;

typedef struct tn_event {
  tn_evtype type;
  int option;
  int code;
  int side;
  unsigned width, height;
  unsigned char *buf;         /* owned by the codec, valid during the call */
  size_t len;
  size_t index;
  int last;
  const char *reason;
} tn_event;

/* same contract as lua_Alloc: nsize 0 frees, returns NULL on failure */
typedef void *(*tn_alloc)(void *ud, void *ptr, size_t osize, size_t nsize);

typedef struct tn_sink {
  void (*data)(void *ud, const unsigned char *p, size_t n);
  void (*event)(void *ud, tn_event *ev);
  void (*send)(void *ud, const unsigned char *p, size_t n);
  void *ud;
} tn_sink;

#define TN_TTYPE_KEEP 64     /* bytes of a terminal type kept to compare */

typedef struct tn_t {
  unsigned char q[2][256];   /* RFC 1143 state per side and option */
  unsigned char ok[2][32];   /* bitsets: options we agree to enable */
  int state, verb, sb_opt, sb_overflow;
  unsigned char *sb;
  size_t sb_len, sb_cap, max_subneg;
  int raw_in;                /* 1: never apply NVT CR rules on input */
  int lf;                    /* 1: CR LF is delivered as "\n" */
  int negotiations;          /* 1: report every WILL/WONT/DO/DONT */
  size_t ttype_index, max_ttypes, ttype_first_len, ttype_prev_len;
  unsigned char ttype_first[TN_TTYPE_KEEP], ttype_prev[TN_TTYPE_KEEP];
  tn_alloc alloc;
  void *alloc_ud;
} tn_t;

#define TN_DEFAULT_MAX_SUBNEG 4096
#define TN_DEFAULT_MAX_TTYPES 16

void tn_init(tn_t *t, tn_alloc alloc, void *ud);
void tn_release(tn_t *t);                  /* frees the SB buffer */
void tn_feed(tn_t *t, const unsigned char *p, size_t n, const tn_sink *s);
/* user request to enable/disable; writes 0 or 3 bytes to out, returns count */
size_t tn_request(tn_t *t, int opt, int side, int enable, unsigned char *out);
void tn_allow(tn_t *t, int opt, int side, int yes);
int tn_allowed(const tn_t *t, int opt, int side);
int tn_state(const tn_t *t, int opt, int side);   /* TN_NO.. | TN_QUEUED */
int tn_enabled(const tn_t *t, int opt, int side);
/*
** NVT (binary 0) or BINARY (1) escaping; binary 2 is BINARY for a printed
** line, where "\n" still goes out as CR LF.  out NULL only counts (every
** change grows the data, so the size is n exactly when nothing changes);
** returns the size.
*/
size_t tn_escape(const unsigned char *p, size_t n, int binary,
                 unsigned char *out);

/*
** NEW-ENVIRON list walker (RFC 1572).  Returns 1 with a token, 0 at the
** end, -1 on a malformed list.  With unescape set, ESC sequences are
** removed in place (p is rewritten), so name/value point at plain bytes.
*/
typedef struct tn_envtok {
  int kind;                 /* TN_ENV_VAR or TN_ENV_USERVAR */
  unsigned char *name;
  size_t name_len;
  unsigned char *value;     /* NULL when no VALUE followed */
  size_t value_len;
} tn_envtok;
int tn_environ_next(unsigned char *p, size_t n, size_t *pos, int unescape,
                    tn_envtok *tok);

#endif
