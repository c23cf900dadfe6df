/*
** faultnet: an LD_PRELOAD shim that makes the network flaky in the ways
** the kernel is allowed to: on non-blocking sockets, at a seeded rate,
** read/recv return fewer bytes than asked (1, or a few), write/send/
** writev/sendfile write fewer bytes than asked, and any of them (and
** accept/accept4) fail with EAGAIN.
**
** The driver's epoll set is edge-triggered, so after a real short read or
** EAGAIN the kernel owes it a new edge when more data or room comes.  A
** made-up fault must keep that promise or the session would hang for a
** reason no kernel gives: after each injected fault the shim re-arms the
** descriptor (EPOLL_CTL_MOD with the events the program registered),
** which queues an edge at once if it is still ready.
**
** Environment:
**   FAULTNET_RATE  percent of eligible calls that get a fault (default 30)
**   FAULTNET_SEED  seed of the fault sequence (default 1)
**   FAULTNET_LOG   a file where the shim appends its counts at exit
**
** A test tool (hardening/), never linked into parley.
*/
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FDS 65536 /* descriptors above this are never faulted */
#define FEW 16        /* "a few bytes": a short count is 1..FEW */

typedef struct {
  int epfd; /* epoll set the fd was added to, -1 if none */
  struct epoll_event ev;
} reg;

static reg regs[MAX_FDS];
static int ready;
static unsigned rate = 30;
static uint64_t rng = 1;
static unsigned long calls, eagains, shorts;

static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_recv)(int, void *, size_t, int);
static ssize_t (*real_send)(int, const void *, size_t, int);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_sendfile)(int, int, off_t *, size_t);
static int (*real_accept)(int, struct sockaddr *, socklen_t *);
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
static int (*real_epoll_ctl)(int, int, int, struct epoll_event *);

static void report(void) {
  const char *log = getenv("FAULTNET_LOG");
  FILE *f;
  if (!log || !(f = fopen(log, "a"))) return;
  fprintf(f, "faultnet pid=%ld calls=%lu eagain=%lu short=%lu\n", (long)getpid(),
          calls, eagains, shorts);
  fclose(f);
}

static void init(void) {
  const char *s;
  int i;
  if (ready) return;
  real_read = (ssize_t(*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
  real_write = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
  real_recv = (ssize_t(*)(int, void *, size_t, int))dlsym(RTLD_NEXT, "recv");
  real_send = (ssize_t(*)(int, const void *, size_t, int))dlsym(RTLD_NEXT, "send");
  real_writev = (ssize_t(*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "writev");
  real_sendfile = (ssize_t(*)(int, int, off_t *, size_t))dlsym(RTLD_NEXT, "sendfile");
  real_accept = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
  real_accept4 =
      (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
  real_epoll_ctl =
      (int (*)(int, int, int, struct epoll_event *))dlsym(RTLD_NEXT, "epoll_ctl");
  for (i = 0; i < MAX_FDS; i++) regs[i].epfd = -1;
  if ((s = getenv("FAULTNET_RATE"))) rate = (unsigned)atoi(s);
  rng = (uint64_t)((s = getenv("FAULTNET_SEED")) ? strtoull(s, NULL, 10) : 1) * 2654435761u + 1;
  ready = 1;
  atexit(report);
}

static unsigned next(unsigned n) { /* xorshift64*, uniform enough for tests */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (unsigned)((rng * 2685821657736338717ull) >> 33) % n;
}

/* a non-blocking socket the program watches: the only kind we fault */
static int eligible(int fd) {
  struct stat st;
  int fl;
  init();
  if (fd < 0 || fd >= MAX_FDS || regs[fd].epfd < 0) return 0;
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return 0;
  fl = fcntl(fd, F_GETFL);
  return fl >= 0 && (fl & O_NONBLOCK);
}

/* the edge the kernel would owe after a short count or EAGAIN */
static void rearm(int fd) {
  struct epoll_event ev = regs[fd].ev;
  int saved = errno;
  real_epoll_ctl(regs[fd].epfd, EPOLL_CTL_MOD, fd, &ev);
  errno = saved;
}

/* 0: no fault; -1: EAGAIN now; else the (smaller) count to pass on */
static size_t fault(int fd, size_t n) {
  size_t k;
  calls++;
  if (n == 0 || next(100) >= rate) return 0;
  switch (next(3)) {
  case 0:
    k = (size_t)-1;
    break;
  case 1:
    k = 1;
    break;
  default:
    k = 1 + next(n < FEW ? (unsigned)n : FEW);
  }
  if (k != (size_t)-1 && k >= n) return 0; /* not shorter: no fault */
  if (k == (size_t)-1) eagains++; else shorts++;
  rearm(fd);
  return k;
}

#define FAULTED(fd, n, call)                                                   \
  do {                                                                         \
    size_t k_ = eligible(fd) ? fault(fd, n) : 0;                               \
    if (k_ == (size_t)-1) {                                                    \
      errno = EAGAIN;                                                          \
      return -1;                                                               \
    }                                                                          \
    if (k_ && k_ < (n)) (n) = k_;                                              \
    return call;                                                               \
  } while (0)

ssize_t read(int fd, void *buf, size_t n) {
  FAULTED(fd, n, real_read(fd, buf, n));
}

ssize_t write(int fd, const void *buf, size_t n) {
  FAULTED(fd, n, real_write(fd, buf, n));
}

ssize_t recv(int fd, void *buf, size_t n, int flags) {
  FAULTED(fd, n, real_recv(fd, buf, n, flags));
}

ssize_t send(int fd, const void *buf, size_t n, int flags) {
  FAULTED(fd, n, real_send(fd, buf, n, flags));
}

ssize_t sendfile(int out, int in, off_t *off, size_t n) {
  FAULTED(out, n, real_sendfile(out, in, off, n));
}

/* a short writev writes a prefix of the first buffer */
ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  size_t k;
  init();
  if (cnt <= 0 || !eligible(fd)) return real_writev(fd, iov, cnt);
  k = fault(fd, iov[0].iov_len);
  if (k == (size_t)-1) {
    errno = EAGAIN;
    return -1;
  }
  if (k) return real_write(fd, iov[0].iov_base, k);
  return real_writev(fd, iov, cnt);
}

int accept(int fd, struct sockaddr *a, socklen_t *l) {
  init();
  if (eligible(fd) && fault(fd, 1) == (size_t)-1) {
    errno = EAGAIN;
    return -1;
  }
  return real_accept(fd, a, l);
}

int accept4(int fd, struct sockaddr *a, socklen_t *l, int flags) {
  init();
  if (eligible(fd) && fault(fd, 1) == (size_t)-1) {
    errno = EAGAIN;
    return -1;
  }
  return real_accept4(fd, a, l, flags);
}

/* a closed descriptor left the epoll set; its number may come back */
int close(int fd) {
  static int (*real_close)(int);
  if (!real_close) real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
  if (fd >= 0 && fd < MAX_FDS) regs[fd].epfd = -1;
  return real_close(fd);
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
  int r;
  init();
  r = real_epoll_ctl(epfd, op, fd, ev);
  if (r == 0 && fd >= 0 && fd < MAX_FDS) {
    if (op == EPOLL_CTL_DEL) {
      regs[fd].epfd = -1;
    } else if (ev && (ev->events & EPOLLET)) {
      regs[fd].epfd = epfd;
      regs[fd].ev = *ev;
    }
  }
  return r;
}
