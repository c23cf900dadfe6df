/*
** addr: name resolution, socket addresses to Lua, errno to messages.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "driver.h"

const char *parley_resolve(const char *host, const char *port, int passive,
                           struct addrinfo **res) {
  struct addrinfo hints;
  int r;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  if (passive && (host[0] == '\0' || strcmp(host, "*") == 0)) {
    host = NULL;
    hints.ai_family = AF_INET;
  }
  r = getaddrinfo(host, port, &hints, res);
  switch (r) {
    case 0: return NULL;
    case EAI_NONAME: return "host not found";
    case EAI_AGAIN: return "temporary failure in name resolution";
    case EAI_SERVICE: return "invalid port";
    case EAI_MEMORY: return "not enough memory";
    case EAI_SYSTEM: return parley_strerror(errno);
    default: return gai_strerror(r);
  }
}

int parley_push_sockname(lua_State *L, int fd, int peer) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char ip[INET6_ADDRSTRLEN];
  int port;
  if ((peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
            : getsockname(fd, (struct sockaddr *)&ss, &len)) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, parley_strerror(errno));
    return 2;
  }
  if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    port = ntohs(a->sin6_port);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    port = ntohs(a->sin_port);
  }
  lua_pushstring(L, ip);
  lua_pushinteger(L, port);
  lua_pushstring(L, ss.ss_family == AF_INET6 ? "inet6" : "inet");
  return 3;
}

/* LuaSocket's wording where it has one; the C library's otherwise */
const char *parley_strerror(int err) {
  switch (err) {
    case EPIPE: return "closed";
    case ECONNRESET: return "connection reset";
    case ECONNREFUSED: return "connection refused";
    case ECONNABORTED: return "connection aborted";
    case ETIMEDOUT: return "timeout";
    case EADDRINUSE: return "address already in use";
    case EADDRNOTAVAIL: return "address not available";
    case EACCES: return "permission denied";
    case EPERM: return "operation not permitted";
    case ENETUNREACH: return "network unreachable";
    case EHOSTUNREACH: return "host unreachable";
    case EMFILE: case ENFILE: return "too many open files";
    case ENOMEM: case ENOBUFS: return "not enough memory";
    case ENOSPC: return "no space left on device";
    case EISCONN: return "already connected";
    case ENOENT: return "no such file or directory";
    case EISDIR: return "is a directory";
    default: return strerror(err);
  }
}
