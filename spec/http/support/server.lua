-- A child-process HTTP server for the interop specs: static files from
-- ROOT plus /echo (any method: the request body back, with the framing it
-- came with in X-Request-Framing). Prints "PORT PID" first.
--   lua5.4 spec/http/support/server.lua ROOT [header_timeout]
local http = require "parley.http"
local posix_pid = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
local root, header_timeout = arg[1], tonumber(arg[2])
local app = http.server.new{ header_timeout = header_timeout }
app:route("*", "/echo", function(req, res)
  local body, err, status = req:body()
  if not body then return res:error(status, err) end
  res:header("X-Request-Framing", req.headers["transfer-encoding"] and "chunked"
    or (req.headers["content-length"] and "length" or "none"))
  res:header("Content-Type", "application/octet-stream")
  return res:send(body)
end)
app:static("/", root)
app:serve{ listen = "127.0.0.1:0", on_start = function(srv)
  io.stdout:write(srv.port, " ", posix_pid, "\n")
  io.stdout:flush()
end }
