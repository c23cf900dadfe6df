/*
** core.pty: pseudo-terminals, child processes and the controlling
** terminal, for the Telnet server's --shell mode and the interactive
** `parley telnet` client.  Not a codec: this part does I/O.
**
** pty.spawn(argv [, opts]) -> stream, pid | nil, err
**   Opens a pseudo-terminal pair (forkpty) and runs argv[1] (searched in
**   PATH) with argv as its arguments on the slave side, as a session
**   leader with the slave as controlling terminal and as fds 0, 1, 2.
**   Returns the master side as a parley stream (non-blocking; reading it
**   gives the program's output, writing it types into the program) and
**   the child's pid.  When the program and everything holding the slave
**   have exited, reading the master fails ("input/output error").
**   opts.rows, opts.cols   initial window size (24, 80; 1..65535)
**   opts.env    {NAME = "value" | false}: set (or, false, unset) in the
**               child's environment before exec
**   opts.user   a system account name: the child takes its uid, gid and
**               groups (initgroups), changes to its home directory and
**               gets HOME, USER, LOGNAME and SHELL; fails with
**               "no such account" when getpwnam finds none
**   opts.cwd    directory to change to (after opts.user's home)
**   opts.login  true: argv[0] gets a leading "-" (a login shell)
**   Errors: "fork failed: ...", "exec failed: <strerror>" (the child's
**   exec error is passed back through a close-on-exec pipe), "no such
**   account", "setuid failed: ..." ...
** pty.spawn_with_fd(fd, argv [, opts]) -> pid | nil, err
**   Runs argv with fd as its stdin and stdout (inetd style: fd is a
**   connected socket); stderr goes to /dev/null unless opts.stderr is
**   true (then it is inherited).  The child runs in a new session with
**   fd made blocking.  The caller then closes its own copy of fd.
** pty.resize(stream | fd, rows, cols) -> true | nil, err   TIOCSWINSZ
** pty.winsize(fd) -> rows, cols | nil, err                 TIOCGWINSZ
** pty.wait(pid [, block]) -> "exit", code | "signal", signo
**   | false (still running, non-blocking) | nil, err
** pty.kill(pid [, sig]) -> true | nil, err  sig: a number or "TERM",
**   "KILL", "HUP", "INT", "QUIT", "WINCH", "USR1", "USR2" (default TERM)
** pty.isatty(fd) -> bool
** pty.raw(fd) -> saved | nil, err   puts the terminal on fd in raw mode
**   (cfmakeraw, keeping output post-processing so "\n" still returns the
**   carriage); saved is the previous termios as an opaque string
** pty.restore(fd, saved [, eol]) -> true | nil, err   puts saved back;
**   eol (a byte value) also becomes VEOL, so that key ends a line at once
**   in canonical mode (the interactive client's escape key)
** pty.stream(fd) -> stream   a parley stream on dup(fd) made non-blocking
**   (e.g. 0 for stdin, 1 for stdout).  O_NONBLOCK belongs to the open
**   file description, which fd shares: call pty.set_blocking(fd, true)
**   when done.
** pty.set_blocking(fd, bool) -> true | nil, err
** pty.getpwnam(name) -> {uid=, gid=, home=, shell=, name=} | nil
*/
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pty.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "driver.h"

#define MAX_ARGS 256

/* argv table -> NULL-terminated array in a userdata-free Lua buffer */
static const char **check_argv(lua_State *L, int idx) {
  lua_Integer n, i;
  const char **av;
  luaL_checktype(L, idx, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, idx);
  if (n < 1) luaL_argerror(L, idx, "argv must hold at least the program");
  if (n > MAX_ARGS) luaL_argerror(L, idx, "too many arguments");
  av = (const char **)lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 2), 0);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, idx, "argv items must be strings");
    av[i - 1] = lua_tostring(L, -1);
    lua_pop(L, 1);   /* still referenced by the table */
  }
  av[n] = NULL;
  return av;
}

static int fail(lua_State *L, const char *what, int err) {
  lua_pushnil(L);
  if (what) lua_pushfstring(L, "%s: %s", what, parley_strerror(err));
  else lua_pushstring(L, parley_strerror(err));
  return 2;
}

static int opt_int(lua_State *L, int idx, const char *k, int def, int lo, int hi) {
  lua_Integer v = def;
  if (lua_istable(L, idx)) {
    lua_getfield(L, idx, k);
    if (!lua_isnil(L, -1)) {
      if (!lua_isinteger(L, -1)) luaL_error(L, "option %s must be an integer", k);
      v = lua_tointeger(L, -1);
      if (v < lo || v > hi) luaL_error(L, "option %s out of range", k);
    }
    lua_pop(L, 1);
  }
  return (int)v;
}

static const char *opt_str(lua_State *L, int idx, const char *k) {
  const char *s = NULL;
  if (lua_istable(L, idx)) {
    lua_getfield(L, idx, k);
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "option %s must be a string", k);
      s = lua_tostring(L, -1);
    }
    lua_pop(L, 1);   /* the options table keeps it alive */
  }
  return s;
}

static int opt_bool(lua_State *L, int idx, const char *k) {
  int b = 0;
  if (lua_istable(L, idx)) {
    lua_getfield(L, idx, k);
    b = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  return b;
}

/* the parent's signal setup must not leak into the program */
static void child_signals(void) {
  sigset_t none;
  int s;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (s = 1; s < 32; s++) {
    if (s != SIGKILL && s != SIGSTOP) signal(s, SIG_DFL);
  }
}

/* tells the parent why the child could not start, then exits */
static void child_fail(int pfd, const char *what, int err) {
  char msg[200];
  size_t n = strlen(what);
  const char *es = strerror(err);
  if (n > 100) n = 100;
  memcpy(msg, what, n);
  msg[n++] = ':';
  msg[n++] = ' ';
  strncpy(msg + n, es, sizeof msg - n - 1);
  msg[sizeof msg - 1] = '\0';
  if (write(pfd, msg, strlen(msg)) < 0) { /* nothing more to do */ }
  _exit(127);
}

/* reads the child's start-up report: NULL when exec succeeded */
static const char *child_report(lua_State *L, int pfd) {
  char msg[256];
  ssize_t n;
  do n = read(pfd, msg, sizeof msg - 1); while (n < 0 && errno == EINTR);
  close(pfd);
  if (n <= 0) return NULL;
  msg[n] = '\0';
  return lua_pushstring(L, msg);
}

/* env: {NAME = value | false} applied in the child (before exec) */
static void child_env(lua_State *L, int opts) {
  if (!lua_istable(L, opts)) return;
  lua_getfield(L, opts, "env");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) == LUA_TSTRING) {
        const char *k = lua_tostring(L, -2);
        if (lua_toboolean(L, -1) == 0) unsetenv(k);
        else if (lua_type(L, -1) == LUA_TSTRING) setenv(k, lua_tostring(L, -1), 1);
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

/* validated in the parent so the child never raises */
static void check_env(lua_State *L, int opts) {
  if (!lua_istable(L, opts)) return;
  lua_getfield(L, opts, "env");
  if (!lua_isnil(L, -1)) {
    luaL_checktype(L, -1, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      int vt = lua_type(L, -1);
      if (lua_type(L, -2) != LUA_TSTRING || (vt != LUA_TSTRING && !(vt == LUA_TBOOLEAN && !lua_toboolean(L, -1))))
        luaL_error(L, "option env must map names to strings or false");
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

static void child_start(lua_State *L, int opts, const char **av, int pfd,
                        const struct passwd *pw, const char *cwd, int login) {
  child_signals();
  if (pw) {
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 && geteuid() == 0)
      child_fail(pfd, "initgroups failed", errno);
    if (setgid(pw->pw_gid) != 0) child_fail(pfd, "setgid failed", errno);
    if (setuid(pw->pw_uid) != 0) child_fail(pfd, "setuid failed", errno);
    if (chdir(pw->pw_dir) != 0 && chdir("/") != 0) child_fail(pfd, "chdir failed", errno);
    setenv("HOME", pw->pw_dir, 1);
    setenv("USER", pw->pw_name, 1);
    setenv("LOGNAME", pw->pw_name, 1);
    setenv("SHELL", pw->pw_shell, 1);
  }
  if (cwd && chdir(cwd) != 0) child_fail(pfd, "chdir failed", errno);
  child_env(L, opts);
  {
    const char *prog = av[0];
    if (login) {
      /* argv[0] "-name": sh, bash and login(1) read it as "login shell" */
      static char dashed[256];
      const char *base = strrchr(prog, '/');
      base = base ? base + 1 : prog;
      dashed[0] = '-';
      strncpy(dashed + 1, base, sizeof dashed - 2);
      dashed[sizeof dashed - 1] = '\0';
      av[0] = dashed;
    }
    execvp(prog, (char *const *)av);
  }
  child_fail(pfd, "exec failed", errno);
}

/* pty.spawn(argv [, opts]) */
static int l_spawn(lua_State *L) {
  const char **av;
  lua_settop(L, 2);
  av = check_argv(L, 1);
  struct winsize ws;
  struct passwd pwbuf, *pw = NULL;
  char *pwstore = NULL;
  const char *user = opt_str(L, 2, "user"), *cwd = opt_str(L, 2, "cwd");
  const char *report;
  int login = opt_bool(L, 2, "login");
  int master = -1, pfd[2], fl;
  pid_t pid;
  memset(&ws, 0, sizeof ws);
  ws.ws_row = (unsigned short)opt_int(L, 2, "rows", 24, 1, 65535);
  ws.ws_col = (unsigned short)opt_int(L, 2, "cols", 80, 1, 65535);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  check_env(L, 2);
  if (user) {
    long sz = sysconf(_SC_GETPW_R_SIZE_MAX);
    int e;
    if (sz < 4096) sz = 16384;
    pwstore = (char *)lua_newuserdatauv(L, (size_t)sz, 0);
    e = getpwnam_r(user, &pwbuf, pwstore, (size_t)sz, &pw);
    if (!pw) {
      lua_pushnil(L);
      lua_pushstring(L, e ? parley_strerror(e) : "no such account");
      return 2;
    }
  }
  if (pipe2(pfd, O_CLOEXEC) != 0) return fail(L, "pipe failed", errno);
  pid = forkpty(&master, NULL, NULL, &ws);
  if (pid < 0) {
    int e = errno;
    close(pfd[0]);
    close(pfd[1]);
    return fail(L, "forkpty failed", e);
  }
  if (pid == 0) {
    close(pfd[0]);
    child_start(L, 2, av, pfd[1], pw, cwd, login);
  }
  close(pfd[1]);
  report = child_report(L, pfd[0]);
  if (report) {
    close(master);
    waitpid(pid, NULL, 0);
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  fl = fcntl(master, F_GETFL);
  fcntl(master, F_SETFL, fl | O_NONBLOCK);
  fcntl(master, F_SETFD, FD_CLOEXEC);
  parley_stream_new(L, master);
  lua_pushinteger(L, (lua_Integer)pid);
  return 2;
}

/* pty.spawn_with_fd(fd, argv [, opts]) */
static int l_spawn_with_fd(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  const char **av;
  int keep_err;
  lua_settop(L, 3);
  av = check_argv(L, 2);
  keep_err = opt_bool(L, 3, "stderr");
  int pfd[2];
  const char *report;
  pid_t pid;
  if (fd < 0 || fcntl(fd, F_GETFD) < 0) return luaL_argerror(L, 1, "not an open descriptor");
  if (pipe2(pfd, O_CLOEXEC) != 0) return fail(L, "pipe failed", errno);
  pid = fork();
  if (pid < 0) {
    int e = errno;
    close(pfd[0]);
    close(pfd[1]);
    return fail(L, "fork failed", e);
  }
  if (pid == 0) {
    int fl;
    close(pfd[0]);
    child_signals();
    setsid();
    fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    if (dup2(fd, 0) < 0 || dup2(fd, 1) < 0) child_fail(pfd[1], "dup2 failed", errno);
    if (!keep_err) {
      int nul = open("/dev/null", O_WRONLY);
      if (nul >= 0) {
        dup2(nul, 2);
        if (nul > 2) close(nul);
      }
    }
    if (fd > 2) close(fd);
    execvp(av[0], (char *const *)av);
    child_fail(pfd[1], "exec failed", errno);
  }
  close(pfd[1]);
  report = child_report(L, pfd[0]);
  if (report) {
    waitpid(pid, NULL, 0);
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushinteger(L, (lua_Integer)pid);
  return 1;
}

/* a stream (its getfd method) or an integer */
static int check_fd(lua_State *L, int idx) {
  if (lua_isinteger(L, idx)) return (int)lua_tointeger(L, idx);
  if (luaL_getmetafield(L, idx, "__index") != LUA_TNIL) {
    int fd;
    lua_getfield(L, -1, "getfd");
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    fd = (int)luaL_checkinteger(L, -1);
    lua_pop(L, 2);
    return fd;
  }
  return (int)luaL_checkinteger(L, idx);
}

static int l_resize(lua_State *L) {
  int fd = check_fd(L, 1);
  lua_Integer rows = luaL_checkinteger(L, 2), cols = luaL_checkinteger(L, 3);
  struct winsize ws;
  luaL_argcheck(L, rows >= 0 && rows <= 65535, 2, "rows out of range");
  luaL_argcheck(L, cols >= 0 && cols <= 65535, 3, "cols out of range");
  memset(&ws, 0, sizeof ws);
  ws.ws_row = (unsigned short)rows;
  ws.ws_col = (unsigned short)cols;
  if (ioctl(fd, TIOCSWINSZ, &ws) != 0) return fail(L, NULL, errno);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_winsize(lua_State *L) {
  int fd = check_fd(L, 1);
  struct winsize ws;
  if (ioctl(fd, TIOCGWINSZ, &ws) != 0) return fail(L, NULL, errno);
  lua_pushinteger(L, ws.ws_row);
  lua_pushinteger(L, ws.ws_col);
  return 2;
}

static int l_wait(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  int block = lua_toboolean(L, 2), st = 0;
  pid_t r;
  luaL_argcheck(L, pid > 0, 1, "pid must be positive");
  do r = waitpid((pid_t)pid, &st, block ? 0 : WNOHANG); while (r < 0 && errno == EINTR);
  if (r < 0) return fail(L, NULL, errno);
  if (r == 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (WIFSIGNALED(st)) {
    lua_pushliteral(L, "signal");
    lua_pushinteger(L, WTERMSIG(st));
  } else {
    lua_pushliteral(L, "exit");
    lua_pushinteger(L, WEXITSTATUS(st));
  }
  return 2;
}

static const struct { const char *name; int num; } signames[] = {
  {"TERM", SIGTERM}, {"KILL", SIGKILL}, {"HUP", SIGHUP}, {"INT", SIGINT},
  {"QUIT", SIGQUIT}, {"WINCH", SIGWINCH}, {"USR1", SIGUSR1},
  {"USR2", SIGUSR2}, {"CONT", SIGCONT}, {NULL, 0}
};

static int l_kill(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  int sig = SIGTERM, i;
  luaL_argcheck(L, pid > 0, 1, "pid must be positive");
  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *n = lua_tostring(L, 2);
    sig = -1;
    for (i = 0; signames[i].name; i++) {
      if (strcmp(n, signames[i].name) == 0) sig = signames[i].num;
    }
    if (sig < 0) return luaL_argerror(L, 2, "unknown signal name");
  } else if (!lua_isnoneornil(L, 2)) {
    sig = (int)luaL_checkinteger(L, 2);
  }
  if (kill((pid_t)pid, sig) != 0) return fail(L, NULL, errno);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty(check_fd(L, 1)));
  return 1;
}

static int l_raw(lua_State *L) {
  int fd = check_fd(L, 1);
  struct termios old, raw;
  if (tcgetattr(fd, &old) != 0) return fail(L, NULL, errno);
  raw = old;
  cfmakeraw(&raw);
  raw.c_oflag |= OPOST;   /* our own "\n" still returns the carriage */
  if (tcsetattr(fd, TCSAFLUSH, &raw) != 0) return fail(L, NULL, errno);
  lua_pushlstring(L, (const char *)&old, sizeof old);
  return 1;
}

static int l_restore(lua_State *L) {
  int fd = check_fd(L, 1);
  size_t n;
  const char *saved = luaL_checklstring(L, 2, &n);
  struct termios t;
  luaL_argcheck(L, n == sizeof t, 2, "not a saved terminal state");
  memcpy(&t, saved, sizeof t);
  if (!lua_isnoneornil(L, 3)) {
    lua_Integer eol = luaL_checkinteger(L, 3);
    luaL_argcheck(L, eol >= 0 && eol <= 255, 3, "not a byte value");
    t.c_cc[VEOL] = (cc_t)eol;
  }
  if (tcsetattr(fd, TCSAFLUSH, &t) != 0) return fail(L, NULL, errno);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_set_blocking(lua_State *L) {
  int fd = check_fd(L, 1);
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return fail(L, NULL, errno);
  fl = lua_toboolean(L, 2) ? (fl & ~O_NONBLOCK) : (fl | O_NONBLOCK);
  if (fcntl(fd, F_SETFL, fl) != 0) return fail(L, NULL, errno);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_stream(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1), d, fl;
  d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (d < 0) return fail(L, NULL, errno);
  fl = fcntl(d, F_GETFL);
  fcntl(d, F_SETFL, fl | O_NONBLOCK);
  parley_stream_new(L, d);
  return 1;
}

static int l_getpwnam(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  struct passwd *pw = getpwnam(name);
  if (!pw) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 5);
  lua_pushstring(L, pw->pw_name);
  lua_setfield(L, -2, "name");
  lua_pushinteger(L, pw->pw_uid);
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, pw->pw_gid);
  lua_setfield(L, -2, "gid");
  lua_pushstring(L, pw->pw_dir);
  lua_setfield(L, -2, "home");
  lua_pushstring(L, pw->pw_shell);
  lua_setfield(L, -2, "shell");
  return 1;
}

int parley_open_pty(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"spawn", l_spawn}, {"spawn_with_fd", l_spawn_with_fd},
    {"resize", l_resize}, {"winsize", l_winsize}, {"wait", l_wait},
    {"kill", l_kill}, {"isatty", l_isatty}, {"raw", l_raw},
    {"restore", l_restore}, {"set_blocking", l_set_blocking},
    {"stream", l_stream}, {"getpwnam", l_getpwnam}, {NULL, NULL}
  };
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "pty");
  return 0;
}
