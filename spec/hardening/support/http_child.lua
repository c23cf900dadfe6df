-- A child HTTP server for the faults lab: parley.http.server with the
-- static files of ROOT at "/", GET /stream (a chunked response: pieces
-- of many sizes from a source function) and POST /echo (reads a chunked or
-- sized request body, sends it back chunked). Prints "http server on
-- ADDR", serves until SIGTERM.
--   lua5.4 spec/hardening/support/http_child.lua ROOT
io.stdout:setvbuf("line")
local http = require "parley.http.server"

local app = http.new{ access_log = false }

local function pieces(list)
  local i = 0
  return function()
    i = i + 1
    return list[i]
  end
end

app:get("/stream", function(_, res)
  local list = {}
  for i = 1, 60 do list[i] = ("%03d:"):format(i) .. ("s"):rep((i * 997) % 9000) .. "\n" end
  return res:send(pieces(list))
end)

app:post("/echo", function(req, res)
  local body = assert(req:body())
  local list = {}
  for i = 1, #body, 4000 do list[#list + 1] = body:sub(i, i + 3999) end
  return res:send(pieces(list))
end)

app:static("/", arg[1], { listing = true })
assert(app:serve{ listen = "127.0.0.1:0",
  on_start = function(srv) io.stdout:write("http server on ", srv.address, "\n") end })
