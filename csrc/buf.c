/*
** buf: see buf.h.
*/
#include <stdlib.h>
#include <string.h>

#include "buf.h"

/*
** Storage of the two usual sizes (4 KiB: an output buffer's first
** allocation; 16 KiB: a read's room) is kept on a short free list when
** a buffer empties, so a ping-pong connection does not go to malloc
** twice per request for the same blocks (callgrind: malloc/free and
** their consolidation were ~15 % of an HTTP hello).  An idle connection
** still holds nothing; the lists hold at most POOL_KEEP blocks each.
** Per thread: a process may run Lua states in several threads.
*/
#define POOL_KEEP 16
typedef struct pool { char *blk[POOL_KEEP]; int n; } pool;
static __thread pool pools[2];   /* [0]: 4 KiB, [1]: 16 KiB */

/* AddressSanitizer builds skip the lists: a reused block would hide a
   use after free from it */
#if defined(__SANITIZE_ADDRESS__)
#define POOLING 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOLING 0
#endif
#endif
#ifndef POOLING
#define POOLING 1
#endif

static pool *pool_of(size_t cap) {
  if (!POOLING) return NULL;
  return cap == 4096 ? &pools[0] : cap == 16384 ? &pools[1] : NULL;
}

int buf_reserve(buf *b, size_t n) {
  size_t len = buf_len(b);
  size_t cap;
  char *p;
  if (buf_room(b) >= n) return 0;
  if (b->start > 0 && b->cap - len >= n) {
    /* enough space once the consumed front is reclaimed */
    memmove(b->data, buf_head(b), len);
    b->start = 0;
    b->end = len;
    return 0;
  }
  cap = b->cap ? b->cap : 4096;
  while (cap - len < n) {
    if (cap > ((size_t)-1) / 2) return -1;
    cap *= 2;
  }
  if (!b->data) {
    pool *pl = pool_of(cap);
    if (pl && pl->n > 0) {
      b->data = pl->blk[--pl->n];
      b->cap = cap;
      b->start = b->end = 0;
      return 0;
    }
  }
  if (b->start > 0) {
    /* compact into fresh storage rather than realloc'ing the dead front */
    p = malloc(cap);
    if (!p) return -1;
    memcpy(p, buf_head(b), len);
    free(b->data);
  } else {
    p = realloc(b->data, cap);
    if (!p) return -1;
  }
  b->data = p;
  b->cap = cap;
  b->start = 0;
  b->end = len;
  return 0;
}

int buf_append(buf *b, const char *p, size_t n) {
  if (buf_reserve(b, n) != 0) return -1;
  memcpy(buf_tail(b), p, n);
  b->end += n;
  return 0;
}

void buf_consume(buf *b, size_t n) {
  b->start += n;
  if (b->start >= b->end) {
    /* empty: give the memory back; a busy stream re-allocates cheaply */
    buf_free(b);
  }
}

void buf_free(buf *b) {
  pool *pl = b->data ? pool_of(b->cap) : NULL;
  if (pl && pl->n < POOL_KEEP) pl->blk[pl->n++] = b->data;
  else free(b->data);
  b->data = NULL;
  b->start = b->end = b->cap = 0;
}
