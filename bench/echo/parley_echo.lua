-- parley echo/line server for bench/echo: the same handler as
-- copas_echo.lua, on parley's driver.  Run from the checkout root (or
-- set PARLEY_ROOT).  Prints "port=N pid=P" on stdout, then serves until
-- SIGTERM/SIGINT.
local root = os.getenv("PARLEY_ROOT") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/?.so;" .. package.cpath

local parley = require "parley"

parley.run(function()
  -- inside a task serve() returns at once; run() goes on until the
  -- server is closed (SIGTERM/SIGINT: signals = true by default)
  local srv = parley.serve{
    listen = "127.0.0.1:" .. (tonumber(arg[1]) or 0),
    max_connections = 20000,   -- the benchmark holds 10,000 at once
    handler = function(conn)
      for line in conn:lines() do conn:send(line .. "\r\n") end
    end,
  }
  local f = io.open("/proc/self/stat")
  local pid = f:read("l"):match("^(%d+)")
  f:close()
  io.stdout:write(("port=%d pid=%s\n"):format(srv.port, pid))
  io.stdout:flush()
end)
