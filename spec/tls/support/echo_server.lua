-- A TLS echo server in a child process, for third-party clients (which
-- block): echoes whatever arrives, byte for byte.
-- usage: echo_server.lua CERT KEY [CLIENT_CA]; prints "PORT PID".
local parley = require "parley"
local tls = require "parley.tls"
local core = require "parley.core"

local cert, key, ca = arg[1], arg[2], arg[3]
local ctx = assert(tls.context{ mode = "server", cert = cert, key = key,
  alpn = { "http/1.1" }, verify_peer = ca and true or nil, ca = ca })

parley.serve{
  listen = "127.0.0.1:0", tls = ctx, timeout = 20,
  on_start = function(srv)
    io.stdout:write(srv.port, " ", core.fs.getpid(), "\n")
    io.stdout:flush()
  end,
  handler = function(conn)
    for _ = 1, 1e6 do
      local chunk = conn:receive_some(65536)
      if not chunk then break end
      if chunk:find("^tlsinfo\n") then
        local i = conn:tlsinfo()
        chunk = ("%s %s %s %s\n"):format(i.version, tostring(i.servername),
          tostring(i.session_reused), i.peer and i.peer.subject or "-")
      end
      conn:send(chunk)
    end
  end,
}
