/*
** allocfail: an LD_PRELOAD shim that makes the Nth malloc/calloc/realloc
** called *from parley's core.so* fail (return NULL, errno ENOMEM), and
** lets every other allocation through.  The caller is told apart by its
** return address, checked against core.so's mapping (found with
** dl_iterate_phdr once core.so is loaded: on the first dlopen of it).
**
** Environment:
**   ALLOCFAIL_N       the allocation from core.so that fails (1-based);
**                     0 or unset: count only
**   ALLOCFAIL_EVERY   with N: also fail every later allocation (a heap
**                     that stays exhausted), not only the Nth
**   ALLOCFAIL_MODULE  path suffix of the module (default parley/core.so)
**   ALLOCFAIL_LOG     a file where the shim appends its count at exit
**
** It passes allocations on with dlsym(RTLD_NEXT), so it stacks in front
** of ASan's runtime (ASAN_OPTIONS=verify_asan_link_order=0) for leak
** checks.  A test tool (hardening/), never linked into parley.
*/
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *(*next_malloc)(size_t);
static void *(*next_calloc)(size_t, size_t);
static void *(*next_realloc)(void *, size_t);
static void *(*next_dlopen)(const char *, int);
static void (*next_free)(void *);

static uintptr_t lo, hi;          /* core.so's mapped range, once known */
static unsigned long count, fail_at, failed;
static int every, resolving;

/* dlsym may allocate before the real calloc is known: a little static
   room that is never freed (free() of it is ignored below) */
static char boot[4096];
static size_t boot_used;

static void *boot_alloc(size_t n) {
  void *p;
  n = (n + 15) & ~(size_t)15;
  if (boot_used + n > sizeof boot) return NULL;
  p = boot + boot_used;
  boot_used += n;
  return p;
}

/* a destructor, not atexit(): ASan's atexit refuses calls made while it
   initialises, which is when the first malloc may reach us */
__attribute__((destructor)) static void report(void) {
  const char *log = getenv("ALLOCFAIL_LOG");
  FILE *f;
  if (!log || !(f = fopen(log, "a"))) return;
  fprintf(f, "allocfail count=%lu fail_at=%lu failed=%lu\n", count, fail_at, failed);
  fclose(f);
}

static void resolve(void) {
  const char *s;
  if (next_malloc || resolving) return;
  resolving = 1;
  next_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
  next_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
  next_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
  next_dlopen = (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen");
  next_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
  if ((s = getenv("ALLOCFAIL_N"))) fail_at = strtoul(s, NULL, 10);
  every = getenv("ALLOCFAIL_EVERY") != NULL;
  resolving = 0;
}

static int find_module(struct dl_phdr_info *info, size_t size, void *data) {
  const char *suffix = data;
  size_t n = strlen(info->dlpi_name), m = strlen(suffix);
  int i;
  (void)size;
  if (n < m || strcmp(info->dlpi_name + n - m, suffix) != 0) return 0;
  for (i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t a = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type != PT_LOAD) continue;
    if (!lo || a < lo) lo = a;
    if (a + ph->p_memsz > hi) hi = a + ph->p_memsz;
  }
  return 1;
}

void *dlopen(const char *file, int mode) {
  void *h;
  resolve();
  h = next_dlopen(file, mode);
  if (h && !lo) {
    const char *m = getenv("ALLOCFAIL_MODULE");
    dl_iterate_phdr(find_module, (void *)(m ? m : "parley/core.so"));
  }
  return h;
}

/* 1 when this allocation, called from `caller`, is to fail */
static int should_fail(void *caller) {
  uintptr_t a = (uintptr_t)caller;
  if (!lo || a < lo || a >= hi) return 0;
  count++;
  if (!fail_at || count < fail_at || (count > fail_at && !every)) return 0;
  failed++;
  return 1;
}

void *malloc(size_t n) {
  if (!next_malloc) {
    resolve();
    if (!next_malloc) return boot_alloc(n);
  }
  if (should_fail(__builtin_return_address(0))) {
    errno = ENOMEM;
    return NULL;
  }
  return next_malloc(n);
}

void *calloc(size_t k, size_t n) {
  if (!next_calloc) {
    void *p;
    resolve();
    if (!next_calloc) return (p = boot_alloc(k * n)) ? memset(p, 0, k * n) : NULL;
  }
  if (should_fail(__builtin_return_address(0))) {
    errno = ENOMEM;
    return NULL;
  }
  return next_calloc(k, n);
}

void *realloc(void *p, size_t n) {
  resolve();
  if (should_fail(__builtin_return_address(0))) {
    errno = ENOMEM;
    return NULL;
  }
  return next_realloc(p, n);
}

/* what dlsym frees while we resolve is leaked: a few bytes, once */
void free(void *p) {
  if ((char *)p >= boot && (char *)p < boot + sizeof boot) return;
  if (!next_free) resolve();
  if (next_free) next_free(p);
}
