-- Copas echo/line server for bench/echo: the same handler as
-- parley_echo.lua, on Debian's lua-copas (LuaSocket + select()).
-- Run with LUA_PATH starting "/usr/share/lua/5.2/?.lua;" (Debian ships
-- copas.lua for Lua 5.1/5.2 only; it runs unchanged under 5.4).
-- Prints "port=N pid=P" on stdout, then serves until killed.
local copas = require "copas"
local socket = require "socket"

-- backlog 511 like parley's listener default (LuaSocket's default is 32)
local server = assert(socket.bind("127.0.0.1", tonumber(arg[1]) or 0, 511))

-- accept timeout 0 (Copas' default 0.1 s would only matter if select()
-- reported a listener readable with no connection left to take)
copas.addserver(server, function(skt)
  while true do
    local line = copas.receive(skt, "*l")
    if not line then break end
    copas.send(skt, line .. "\r\n")
  end
end, 0)

local _, port = server:getsockname()
local f = io.open("/proc/self/stat")
local pid = f:read("l"):match("^(%d+)")
f:close()
io.stdout:write(("port=%d pid=%s copas=%s\n"):format(port, pid, copas._VERSION))
io.stdout:flush()
copas.loop()
