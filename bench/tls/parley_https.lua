-- parley's side of bench/tls/https: one server, /hello and static files
-- from ROOT, plain HTTP on one port and HTTPS (ALPN http/1.1) on another.
--   lua5.4 parley_https.lua ROOT CERT KEY
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local http = require "parley.http"

local root, cert, key = arg[1], arg[2], arg[3]
local app = http.server.new{}
app:get("/hello", function(_, res)
  res:header("Content-Type", "text/plain")
  return res:send("hello world\n")
end)
app:static("/", root)
app:serve{ listen = "127.0.0.1:0", listen_tls = "127.0.0.1:0", tls = { cert = cert, key = key },
  max_connections = 20000, on_start = function(srv)
    io.stdout:write("port=", srv.port, " tls_port=", srv.tls_port,
      " pid=", io.open("/proc/self/stat"):read("l"):match("^%d+"), "\n")
    io.stdout:flush()
  end }
