-- A static web server with one Lua route.
--   lua5.4 examples/webserver.lua [ROOT] [ADDR]     (defaults: . 127.0.0.1:8080)
-- Then: curl http://127.0.0.1:8080/hello/world  and  curl http://127.0.0.1:8080/
local http = require "parley.http"

local root, addr = arg[1] or ".", arg[2] or "127.0.0.1:8080"
local app = http.server.new{ access_log = io.stderr }

app:get("/hello/:name", function(req, res)
  res:header("Content-Type", "text/plain; charset=utf-8")
  return res:send("hello, " .. req.params.name .. "\n")
end)

app:static("/", root)   -- index.html, MIME types, ETag/304, Range

app:serve{ listen = addr, on_start = function(srv)
  print("serving " .. root .. " on http://" .. srv.address .. "/")
  io.stdout:flush()
end }
