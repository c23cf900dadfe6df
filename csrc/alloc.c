/*
** alloc.c — small Lua objects from size-class free lists.
**
** A server makes and drops a few small tables and strings per request
** (the request and response objects, their hash parts, a head string),
** and the collector frees them hundreds at a time: through libc's malloc
** that is ~1,500 instructions per HTTP request, most in _int_malloc and
** _int_free sorting the bulk frees into bins.  Here a block up to POOL_MAX
** bytes comes from the free list of its 16-byte class (LIFO: the block
** just freed, still in cache), carved from 64 KiB chunks that are never
** returned; anything bigger, and every block the state had before, goes
** to the allocator the state had (lua_getallocf), which Lua tells by the
** size it passes back (lua_Alloc's osize).  Only under the stock allocator
** of luaL_newstate: a host with its own keeps it.
**
** Off under AddressSanitizer (it must see every block) and with
** PARLEY_ALLOC=libc in the environment (for valgrind's memcheck).
*/
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parley.h"

#if defined(__SANITIZE_ADDRESS__)
#define POOL_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_OFF 1
#endif
#endif

#define POOL_STEP 16
#define POOL_MAX 256                 /* larger blocks: the old allocator */
#define NCLASS (POOL_MAX / POOL_STEP)
#define CHUNK ((size_t)64 * 1024)    /* carved into blocks; aligned to CHUNK */

typedef struct pool {
  lua_Alloc orig;                    /* the state's allocator before */
  void *orig_ud;
  void *free[NCLASS];                /* per class: next pointer in the block */
  char *cur;                         /* the newest chunk's uncarved rest */
  size_t left;
  uintptr_t *chunks;                 /* open-addressing set of chunk bases */
  size_t nchunks, cap;
} pool;

static size_t class_of(size_t n) { return (n - 1) / POOL_STEP; }

static size_t slot_of(const pool *P, uintptr_t base) {
  return (size_t)((base / CHUNK) * 0x9E3779B97F4A7C15u) & (P->cap - 1);
}

/* is p inside one of the pool's chunks? */
static int ours(const pool *P, const void *p) {
  uintptr_t base = (uintptr_t)p & ~(uintptr_t)(CHUNK - 1);
  size_t i;
  if (P->cap == 0) return 0;
  for (i = slot_of(P, base); P->chunks[i]; i = (i + 1) & (P->cap - 1))
    if (P->chunks[i] == base) return 1;
  return 0;
}

static int remember(pool *P, uintptr_t base) {
  size_t i;
  if (2 * (P->nchunks + 1) > P->cap) {            /* keep it half empty */
    size_t cap = P->cap ? P->cap * 2 : 64, k;
    uintptr_t *old = P->chunks, *t = calloc(cap, sizeof *t);
    if (!t) return 0;
    P->chunks = t;
    P->cap = cap;
    for (k = 0; old && k < cap / 2; k++) {
      if (!old[k]) continue;
      for (i = slot_of(P, old[k]); t[i]; i = (i + 1) & (cap - 1)) {}
      t[i] = old[k];
    }
    free(old);
  }
  for (i = slot_of(P, base); P->chunks[i]; i = (i + 1) & (P->cap - 1)) {}
  P->chunks[i] = base;
  P->nchunks++;
  return 1;
}

static void *take(pool *P, size_t c) {
  size_t size = (c + 1) * POOL_STEP;
  void *b = P->free[c];
  if (b) {
    memcpy(&P->free[c], b, sizeof b);
    return b;
  }
  if (P->left < size) {
    void *chunk;
    if (posix_memalign(&chunk, CHUNK, CHUNK) != 0) return NULL;
    if (!remember(P, (uintptr_t)chunk)) {
      free(chunk);
      return NULL;
    }
    P->cur = chunk;
    P->left = CHUNK;
  }
  b = P->cur;
  P->cur += size;
  P->left -= size;
  return b;
}

static void put(pool *P, void *b, size_t c) {
  memcpy(b, &P->free[c], sizeof b);
  P->free[c] = b;
}

/* lua_Alloc (when ptr is NULL, osize is the object's type, not a size) */
static void *pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  pool *P = ud;
  void *n;
  if (!ptr) {
    if (nsize == 0) return NULL;
    if (nsize <= POOL_MAX) return take(P, class_of(nsize));
    return P->orig(P->orig_ud, NULL, osize, nsize);
  }
  if (!ours(P, ptr)) return P->orig(P->orig_ud, ptr, osize, nsize);
  if (nsize == 0) {
    put(P, ptr, class_of(osize));
    return NULL;
  }
  if (nsize <= POOL_MAX && class_of(nsize) == class_of(osize)) return ptr;
  n = nsize <= POOL_MAX ? take(P, class_of(nsize))
                        : P->orig(P->orig_ud, NULL, 0, nsize);
  if (!n) return nsize < osize ? ptr : NULL;  /* a shrink keeps its block */
  memcpy(n, ptr, osize < nsize ? osize : nsize);
  put(P, ptr, class_of(osize));
  return n;
}

/* core.allocator() -> "pool", chunk count, bytes in chunks | "libc" */
static int l_allocator(lua_State *L) {
  void *ud;
  if (lua_getallocf(L, &ud) == pool_alloc) {
    const pool *P = ud;
    lua_pushliteral(L, "pool");
    lua_pushinteger(L, (lua_Integer)P->nchunks);
    lua_pushinteger(L, (lua_Integer)(P->nchunks * CHUNK));
    return 3;
  }
  lua_pushliteral(L, "libc");
  return 1;
}

#ifndef POOL_OFF
/* the library stays mapped until the process ends: lua_close unloads C
** libraries before it frees the last objects, which come back here */
static const char anchor = 0;

static int pin_library(void) {
  Dl_info info;
  if (!dladdr(&anchor, &info) || !info.dli_fname) return 0;
  return dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE) != NULL;
}

/* is f the allocator luaL_newstate gives?  A host that set its own (to
** count or limit memory) keeps it: the pool would go round it */
static int stock_allocator(lua_Alloc f) {
  static lua_Alloc stock;
  if (!stock) {
    lua_State *t = luaL_newstate();
    if (!t) return 0;
    stock = lua_getallocf(t, NULL);
    lua_close(t);
  }
  return f == stock;
}

static void install(lua_State *L) {
  void *ud;
  const char *env = getenv("PARLEY_ALLOC");
  pool *P;
  lua_Alloc f = lua_getallocf(L, &ud);
  if (env && strcmp(env, "libc") == 0) return;
  if (f == pool_alloc || !stock_allocator(f)) return;   /* ours already, or the host's */
  if (!pin_library()) return;
  P = calloc(1, sizeof *P);
  if (!P) return;
  P->orig = lua_getallocf(L, &P->orig_ud);
  lua_setallocf(L, pool_alloc, P);
}
#else
static void install(lua_State *L) { (void)L; }
#endif

/* installs the pool under the state (first of the parts: the others'
** objects come from it) and adds core.allocator */
int parley_open_alloc(lua_State *L) {
  install(L);
  lua_pushcfunction(L, l_allocator);
  lua_setfield(L, 1, "allocator");
  return 0;
}
