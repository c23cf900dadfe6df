-- A new line protocol in a few lines: a tiny key-value server.
--   lua5.4 examples/custom_protocol.lua [127.0.0.1:7070]
--   then: telnet 127.0.0.1 7070  →  SET k v / GET k / DEL k / KEYS / QUIT
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local parley = require "parley"

local store, count = {}, 0
local commands = {
  SET = function(k, v)
    if not v then return "-ERR usage: SET key value" end
    if store[k] == nil then count = count + 1 end
    store[k] = v
    return "+OK"
  end,
  GET = function(k) return store[k] and "+" .. store[k] or "-ERR no such key" end,
  DEL = function(k)
    if store[k] == nil then return "-ERR no such key" end
    store[k], count = nil, count - 1
    return "+OK"
  end,
  KEYS = function() return "+" .. count end,
}

parley.serve{
  listen = arg[1] or "127.0.0.1:7070", max_line = 1024, timeout = 60,
  on_start = function(srv) print("kv server on " .. srv.address) io.stdout:flush() end,
  handler = function(conn)
    conn:send("+READY kv\r\n")
    for line in conn:lines() do
      local verb, key, value = line:match("^(%a+)%s*(%S*)%s*(.*)$")
      verb = verb and verb:upper()
      if verb == "QUIT" then conn:send("+BYE\r\n") return end
      local cmd = commands[verb or ""]
      conn:send((cmd and cmd(key, value ~= "" and value or nil) or "-ERR unknown command") .. "\r\n")
    end
    if conn:lasterror() == "line too long" then conn:send("-ERR line too long\r\n") end
  end,
}
