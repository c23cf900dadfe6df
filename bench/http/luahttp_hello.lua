-- lua-http (Debian lua-http, pure Lua for 5.3, run under 5.4 with the 5.3
-- paths) hello-world and 1 KiB file server for bench/http/run.
--   LUA_PATH="/usr/share/lua/5.3/?.lua;/usr/share/lua/5.3/?/init.lua;;" lua5.4 luahttp_hello.lua FILE
local http_server = require "http.server"
local http_headers = require "http.headers"

local file = arg[1]
local fh = assert(io.open(file, "rb"))
local filedata = fh:read("a")
fh:close()

local server = assert(http_server.listen {
  host = "127.0.0.1", port = 0,
  onstream = function(_, stream)
    local req = assert(stream:get_headers())
    local path = req:get(":path")
    local h = http_headers.new()
    h:append(":status", "200")
    if path == "/1k.txt" then
      h:append("content-type", "text/plain")
      h:append("content-length", tostring(#filedata))
      assert(stream:write_headers(h, false))
      assert(stream:write_chunk(filedata, true))
    else
      h:append("content-type", "text/plain")
      h:append("content-length", "12")
      assert(stream:write_headers(h, false))
      assert(stream:write_chunk("hello world\n", true))
    end
  end,
  onerror = function() end,
})
assert(server:listen())
local _, _, port = server:localname()
io.stdout:write("port=", port, " pid=", io.open("/proc/self/stat"):read("l"):match("^%d+"), "\n")
io.stdout:flush()
assert(server:loop())
