/*
 * load.c — load generator for the echo/line benchmark (bench/echo).
 *
 * One thread, epoll, non-blocking sockets, so that it costs far less CPU
 * per request than the servers it drives (pin it to its own CPU).
 *
 *   load -a 127.0.0.1:PORT -m pingpong|connect|idle [options]
 *
 *   -a ADDR   target, IPv4 "a.b.c.d:port" (only 127.0.0.0/8 is accepted)
 *   -m MODE   pingpong: -c connections, each sends a line and waits for
 *                       its echo, again and again (one request in flight
 *                       per connection);
 *             connect:  -c workers, each connects, sends one line, reads
 *                       the echo, closes, and starts over;
 *             idle:     opens -c connections, does one echo on each (so
 *                       the server has accepted and served it), prints
 *                       "ready ..." and holds them for -d seconds.
 *   -c N      connections / workers (default 50)
 *   -d S      measured seconds (default 5); idle: seconds to hold
 *   -w S      warm-up seconds after every connection is up, not counted
 *             (default 1; pingpong and connect only)
 *   -n N      stop the measurement after N requests (default: no limit)
 *   -s N      line length in bytes including CRLF (default 32, >= 3)
 *   -k N      at most N connects in flight while ramping up (default 128)
 *   -S N      spread the connections over N source addresses 127.0.0.2 ..
 *             127.0.0.(N+1) (IP_BIND_ADDRESS_NO_PORT), so connect mode is
 *             not limited by the ~28k ephemeral ports of one address
 *             while closed ones sit in TIME_WAIT (default 1: no bind)
 *   -p PID    server pid: read its utime+stime from /proc/PID/stat at the
 *             start and end of the measured window
 *   -T S      hard limit on the whole run in seconds (default 120)
 *
 * Output: one line on stdout,
 *   requests=N seconds=S errors=E rate=R [server_cpu=S cpu_per_req_us=U]
 *   load_cpu=S connected=C setup_seconds=S
 *   load_cpu=S other_cpu=S kthread_cpu=S softirq=S steal=S
 *   (load_cpu: this generator's own CPU seconds in the measured window;
 *   other_cpu: busy CPU seconds of the whole machine in that window minus
 *   the server's, the generator's and kernel threads', i.e. interference
 *   from other processes; kthread_cpu: kernel threads (ksoftirqd, kworker:
 *   deferred network work, part of the cost being measured); softirq: irq + softirq time of the
 *   machine, mostly the loopback TCP work of both ends; steal: hypervisor
 *   steal time)
 * plus, in idle mode, a line "ready connected=C" (flushed) once every
 * connection has echoed once.  Exit status 0 when errors=0, 1 otherwise,
 * 2 on bad usage.  Errors are counted, never retried silently: a connect
 * that fails, a reset, EOF before the echo, or an echo that differs from
 * the line sent.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { PINGPONG, CONNECT, IDLE };
enum st { FREE, CONNECTING, WAITING, DONE };

struct conn {
    int fd;
    enum st st;
    int got;              /* bytes of the current echo received */
};

static struct sockaddr_in target;
static enum mode mode = PINGPONG;
static long nconn = 50, max_req = -1, inflight_max = 128;
static double duration = 5, warmup = 1, hard_limit = 120;
static int linelen = 32, server_pid = -1, nsrc = 1;
static unsigned long connects;
static char *line;
static int ep;

static struct conn *conns;       /* one per worker slot */
static long active, connecting, errors, requests, ok_total;
static char errbuf[256];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double server_cpu(void)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", server_pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');      /* comm may hold spaces */
    if (!p) return -1;
    unsigned long ut = 0, st = 0;
    /* after ") ": state(3) ... utime is field 14, stime 15 */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
               &ut, &st) != 2) return -1;
    return (double)(ut + st) / sysconf(_SC_CLK_TCK);
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* all CPUs from /proc/stat, seconds: task time (user nice system), irq +
   softirq time (with IRQ time accounting the kernel charges loopback TCP
   receive work done in softirq there, not to the task it interrupted),
   and steal (time the hypervisor gave to someone else) */
static void system_cpu(double *task, double *irq, double *steal)
{
    unsigned long long v[8] = {0};
    *task = *irq = *steal = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu",
               &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
        double hz = sysconf(_SC_CLK_TCK);
        *task = (v[0] + v[1] + v[2]) / hz;
        *irq = (v[5] + v[6]) / hz;
        *steal = v[7] / hz;
    }
    fclose(f);
}

/* CPU seconds of all kernel threads (PF_KTHREAD): ksoftirqd and kworkers
   do part of the loopback TCP work when softirqs are deferred, so they
   are not counted as interference from other processes */
#define PF_KTHREAD_FLAG 0x00200000u
static double kthread_cpu(void)
{
    DIR *d = opendir("/proc");
    if (!d) return 0;
    struct dirent *e;
    double total = 0, hz = sysconf(_SC_CLK_TCK);
    char path[300], buf[1024];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        if (!p) continue;
        unsigned flags = 0;
        unsigned long ut = 0, st = 0;
        if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %u %*u %*u %*u %*u %lu %lu",
                   &flags, &ut, &st) != 3) continue;
        if (flags & PF_KTHREAD_FLAG) total += (ut + st) / hz;
    }
    closedir(d);
    return total;
}

static void note_error(const char *what, int err)
{
    errors++;
    if (!errbuf[0])
        snprintf(errbuf, sizeof errbuf, "%s: %s", what, err ? strerror(err) : "unexpected");
}

static void drop(struct conn *c)
{
    if (c->fd >= 0) {
        close(c->fd);            /* also removes it from the epoll set */
        c->fd = -1;
        active--;
        if (c->st == CONNECTING) connecting--;
    }
    c->st = FREE;
    c->got = 0;
}

static int start_connect(struct conn *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { note_error("socket", errno); return -1; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (nsrc > 1) {
        struct sockaddr_in src;
        memset(&src, 0, sizeof src);
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(connects % nsrc));
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            note_error("bind", errno);
            close(fd);
            return -1;
        }
    }
    connects++;
    c->fd = fd;
    c->got = 0;
    active++;
    int r = connect(fd, (struct sockaddr *)&target, sizeof target);
    if (r < 0 && errno != EINPROGRESS) {
        note_error("connect", errno);
        c->st = FREE;
        close(fd); c->fd = -1; active--;
        return -1;
    }
    c->st = CONNECTING;
    connecting++;
    struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        note_error("epoll_ctl", errno);
        drop(c);
        return -1;
    }
    return 0;
}

static int send_line(struct conn *c)
{
    ssize_t w = send(c->fd, line, linelen, MSG_NOSIGNAL);
    if (w != linelen) {        /* 32 bytes into an empty socket: all or error */
        note_error("send", w < 0 ? errno : 0);
        drop(c);
        return -1;
    }
    c->got = 0;
    return 0;
}

/* The connect finished (EPOLLOUT): check it, switch to reading, send. */
static void connected(struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    connecting--;
    if (err) { c->st = FREE; note_error("connect", err); close(c->fd); c->fd = -1; active--; return; }
    c->st = WAITING;
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    send_line(c);
}

/* Readable: consume echo bytes; returns 1 when a full echo arrived. */
static int readable(struct conn *c)
{
    char buf[4096];
    for (;;) {
        ssize_t r = recv(c->fd, buf, sizeof buf, 0);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            if (errno == EINTR) continue;
            note_error("recv", errno);
            drop(c);
            return -1;
        }
        if (r == 0) { note_error("recv: eof before echo", 0); drop(c); return -1; }
        if (c->got + r > linelen || memcmp(buf, line + c->got, r) != 0) {
            note_error("echo differs from the line sent", 0);
            drop(c);
            return -1;
        }
        c->got += r;
        if (c->got == linelen) return 1;
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: load -a 127.0.0.1:PORT [-m pingpong|connect|idle] [-c N] "
                    "[-d S] [-w S] [-n N] [-s N] [-k N] [-S N] [-p PID] [-T S]\n");
    exit(2);
}

static volatile sig_atomic_t stop_flag;
static void on_signal(int s) { (void)s; stop_flag = 1; }

int main(int argc, char **argv)
{
    const char *addr = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "a:m:c:d:w:n:s:k:S:p:T:")) != -1) {
        switch (opt) {
        case 'a': addr = optarg; break;
        case 'm':
            if (!strcmp(optarg, "pingpong")) mode = PINGPONG;
            else if (!strcmp(optarg, "connect")) mode = CONNECT;
            else if (!strcmp(optarg, "idle")) mode = IDLE;
            else usage();
            break;
        case 'c': nconn = atol(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'n': max_req = atol(optarg); break;
        case 's': linelen = atoi(optarg); break;
        case 'k': inflight_max = atol(optarg); break;
        case 'S': nsrc = atoi(optarg); break;
        case 'p': server_pid = atoi(optarg); break;
        case 'T': hard_limit = atof(optarg); break;
        default: usage();
        }
    }
    if (!addr || nconn < 1 || nconn > 1000000 || linelen < 3 || linelen > 4000 ||
        duration <= 0 || warmup < 0 || inflight_max < 1 || nsrc < 1 || nsrc > 250 || hard_limit <= 0) usage();

    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon - addr >= (long)sizeof host) usage();
    memcpy(host, addr, colon - addr);
    host[colon - addr] = 0;
    memset(&target, 0, sizeof target);
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &target.sin_addr) != 1) usage();
    if ((ntohl(target.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "load: only loopback targets (127.0.0.0/8)\n");
        return 2;
    }

    /* the line: "ppppp...p\r\n" with a counter-free fixed payload */
    line = malloc(linelen);
    for (int i = 0; i < linelen - 2; i++) line[i] = 'a' + i % 26;
    line[linelen - 2] = '\r';
    line[linelen - 1] = '\n';

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);

    ep = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc(nconn, sizeof *conns);
    for (long i = 0; i < nconn; i++) { conns[i].fd = -1; conns[i].st = FREE; }

    double t0 = now(), deadline_all = t0 + hard_limit;
    double setup_done = 0, mstart = 0, mend = 0;
    double cpu0 = -1, cpu1 = -1, lcpu0 = 0, lcpu1 = 0;
    double busy0 = 0, busy1 = 0, irq0 = 0, irq1 = 0, steal0 = 0, steal1 = 0;
    double kt0 = 0, kt1 = 0;
    long next_to_open = 0;       /* ramp-up: slots not yet opened */
    long ready = 0;              /* connections that echoed at least once */
    long req_at_start = 0;
    char *echoed = calloc(nconn, 1);
    struct epoll_event evs[1024];

    for (;;) {
        double t = now();
        if (server_pid > 0 && kill(server_pid, 0) < 0 && errno == ESRCH) {
            note_error("the server process exited", 0);
            break;
        }
        if (stop_flag || t > deadline_all) {
            if (!mend) { note_error("hard time limit or signal before the end", 0); }
            break;
        }
        /* ramp up: open slots, at most inflight_max connects at a time */
        while (next_to_open < nconn && connecting < inflight_max) {
            if (start_connect(&conns[next_to_open]) < 0) {
                /* a failed slot is retried on the next turn */
                break;
            }
            next_to_open++;
        }
        if (!setup_done && ready == nconn) {
            setup_done = t;
            if (mode == IDLE) {
                printf("ready connected=%ld setup_seconds=%.3f\n", ready, t - t0);
                fflush(stdout);
                mstart = t;
                lcpu0 = self_cpu();
                system_cpu(&busy0, &irq0, &steal0);
                kt0 = kthread_cpu();
                if (server_pid > 0) cpu0 = server_cpu();
            }
        }
        if (setup_done && !mstart && t >= setup_done + warmup) {
            mstart = t;
            req_at_start = ok_total;
            lcpu0 = self_cpu();
            system_cpu(&busy0, &irq0, &steal0);
            kt0 = kthread_cpu();
            if (server_pid > 0) cpu0 = server_cpu();
        }
        if (mstart && !mend &&
            (t >= mstart + duration ||
             (max_req > 0 && ok_total - req_at_start >= max_req))) {
            mend = t;
            if (server_pid > 0) cpu1 = server_cpu();
            lcpu1 = self_cpu();
            system_cpu(&busy1, &irq1, &steal1);
            kt1 = kthread_cpu();
            requests = ok_total - req_at_start;
            break;
        }

        int n = epoll_wait(ep, evs, sizeof evs / sizeof evs[0], 50);
        if (n < 0) { if (errno == EINTR) continue; note_error("epoll_wait", errno); break; }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->fd < 0) continue;
            if (c->st == CONNECTING) { connected(c); continue; }
            if (c->st == DONE) {       /* idle: the server must not close */
                note_error("server closed an idle connection", 0);
                drop(c);
                continue;
            }
            if (c->st != WAITING) continue;
            int r = readable(c);
            if (r <= 0) {
                if (r < 0 && mode != IDLE && c->st == FREE) {
                    /* reopen a failed slot so the load stays at -c */
                    start_connect(c);
                }
                continue;
            }
            long idx = c - conns;
            if (!echoed[idx]) { echoed[idx] = 1; ready++; }
            ok_total++;
            switch (mode) {
            case PINGPONG:
                send_line(c);
                break;
            case CONNECT:
                drop(c);
                start_connect(c);
                break;
            case IDLE:
                c->st = DONE;    /* hold it, read nothing more */
                break;
            }
        }
    }
    if (mode == IDLE && !mend && !setup_done) {
        printf("ready connected=%ld setup_seconds=%.3f failed\n", ready, now() - t0);
        fflush(stdout);
    }

    double secs = mend ? mend - mstart : 0;
    if (mode == IDLE) requests = ready;
    printf("requests=%ld seconds=%.3f errors=%ld rate=%.1f", requests, secs, errors,
           secs > 0 ? requests / secs : 0.0);
    if (server_pid > 0 && cpu0 >= 0 && cpu1 >= 0) {
        printf(" server_cpu=%.3f cpu_per_req_us=%.2f", cpu1 - cpu0,
               requests > 0 ? (cpu1 - cpu0) * 1e6 / requests : 0.0);
    }
    if (mend) {
        printf(" load_cpu=%.3f", lcpu1 - lcpu0);
        /* CPU the rest of the machine used meanwhile: should be ~0 */
        /* per-task times include the softirq ticks that hit the task,
           /proc/stat books them as softirq: count them on both sides */
        double others = (busy1 - busy0) + (irq1 - irq0) - (lcpu1 - lcpu0) -
                        (cpu1 >= 0 ? cpu1 - cpu0 : 0) - (kt1 - kt0);
        printf(" other_cpu=%.2f kthread_cpu=%.2f softirq=%.2f steal=%.2f", others,
               kt1 - kt0, irq1 - irq0, steal1 - steal0);
    }
    printf(" connected=%ld setup_seconds=%.3f\n", ready,
           setup_done ? setup_done - t0 : now() - t0);
    if (errbuf[0]) fprintf(stderr, "load: first error: %s\n", errbuf);
    for (long i = 0; i < nconn; i++) if (conns[i].fd >= 0) close(conns[i].fd);
    return errors ? 1 : 0;
}
