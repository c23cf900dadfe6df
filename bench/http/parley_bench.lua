-- parley's side of bench/http/run: static files from ROOT and /hello.
--   lua5.4 parley_bench.lua ROOT
local root = os.getenv("PARLEY_ROOT") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/?.so;" .. package.cpath
local http = require "parley.http"

-- a connection serves as many requests as the nginx sides' keepalive_requests
-- (the default, 1000, would reconnect every connection a dozen times a run)
local app = http.server.new{ max_requests = 1000000 }
app:get("/hello", function(_, res)
  res:header("Content-Type", "text/plain")
  return res:send("hello world\n")
end)
app:static("/", arg[1])
app:serve{ listen = "127.0.0.1:0", max_connections = 20000, on_start = function(srv)
  io.stdout:write("port=", srv.port, " pid=", io.open("/proc/self/stat"):read("l"):match("^%d+"), "\n")
  io.stdout:flush()
end }
