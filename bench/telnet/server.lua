-- bench/telnet server: the same line echo served two ways.
--   lua5.4 bench/telnet/server.lua telnet   the Telnet server's echo app
--                                           (codec, session, read_line, print)
--   lua5.4 bench/telnet/server.lua plain    a plain parley line handler:
--                                           bench/echo/parley_echo.lua itself
-- The Telnet side starts no negotiation (negotiate = false), so a plain
-- load generator sees exactly its lines come back; every byte still goes
-- through the codec both ways.  Prints "port=N pid=P", serves until TERM.
local root = os.getenv("PARLEY_ROOT") or "."
local side = arg[1] or "telnet"
if side == "plain" then
  arg[1] = nil   -- parley_echo.lua reads a port there; 0: any free port
  return dofile(root .. "/bench/echo/parley_echo.lua")
end
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/?.so;" .. package.cpath

local parley = require "parley"
local telnet = require "parley.telnet"

parley.run(function()
  local srv = assert(telnet.server.serve{ listen = "127.0.0.1:0", app = "echo", negotiate = false,
                                          max_connections = 20000, linger = 0 })
  local f = io.open("/proc/self/stat")
  local pid = f:read("l"):match("^(%d+)")
  f:close()
  io.stdout:write(("port=%d pid=%s\n"):format(srv.port, pid))
  io.stdout:flush()
end)
