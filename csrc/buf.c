/*
** buf: see buf.h.
*/
#include <stdlib.h>
#include <string.h>

#include "buf.h"

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
  free(b->data);
  b->data = NULL;
  b->start = b->end = b->cap = 0;
}
