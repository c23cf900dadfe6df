/*
** A growable byte buffer with a read offset: bytes are appended at the
** end and consumed from the front.  Storage is released whenever the
** buffer empties, so an idle connection holds no buffer memory.
*/
#ifndef PARLEY_BUF_H
#define PARLEY_BUF_H

#include <stddef.h>

typedef struct buf {
  char *data;
  size_t start;   /* first unconsumed byte */
  size_t end;     /* one past the last byte */
  size_t cap;
} buf;

#define buf_len(b)  ((b)->end - (b)->start)
/* an empty buffer has no storage: its head is a valid empty string */
#define buf_head(b) ((b)->data ? (b)->data + (b)->start : (char *)"")
#define buf_tail(b) ((b)->data + (b)->end)
#define buf_room(b) ((b)->cap - (b)->end)

/* make room for at least n more bytes at the tail; 0 on success, -1 on ENOMEM */
int buf_reserve(buf *b, size_t n);
int buf_append(buf *b, const char *p, size_t n);
void buf_consume(buf *b, size_t n);
void buf_free(buf *b);

#endif
