rockspec_format = "3.0"
package = "parley"
version = "scm-1"
source = {
  url = "git+file:///dev/null",   -- built from a checkout: luarocks make
}
description = {
  summary = "Telnet, HTTP/1.1, FTP, SMTP, POP3 and IMAP clients and servers for Lua 5.4",
  detailed = [[
parley speaks the classic cleartext internet protocols from Lua 5.4, as
clients and as servers, on one epoll loop with coroutine tasks: a C core
(fast codecs, buffered non-blocking streams) and Lua modules on top.
]],
  license = "MIT",
  labels = { "network", "smtp", "imap", "ftp", "http", "telnet", "epoll" },
}
supported_platforms = { "linux" }
dependencies = {
  "lua >= 5.4",
  "luasocket >= 3.0",
}
build = {
  type = "builtin",
  modules = {
    ["parley.core"] = {
      sources = {
        -- every csrc/*.c; .ci/rock-check fails when this list is stale
        "csrc/addr.c",
        "csrc/alloc.c",
        "csrc/buf.c",
        "csrc/core.c",
        "csrc/fs.c",
        "csrc/fsync_pool.c",
        "csrc/ftp.c",
        "csrc/http.c",
        "csrc/response.c",
        "csrc/imap.c",
        "csrc/listener.c",
        "csrc/loop.c",
        "csrc/pty.c",
        "csrc/smtp.c",
        "csrc/stream.c",
        "csrc/telnet.c",
        "csrc/tls.c",
      },
      defines = { "_GNU_SOURCE" },
      libraries = { "crypt", "util", "ssl", "crypto", "pthread" },
      incdirs = { "csrc" },
    },
  },
  install = {
    bin = { parley = "bin/parley" },
  },
  copy_directories = {},
}
