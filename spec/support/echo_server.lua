-- Child for luasocket_spec: a parley echo server for an independent peer.
-- Prints "PORT PID" once it listens; SIGTERM stops it (exit 0).
io.stdout:setvbuf("line")
local parley = require "parley"
local pid = io.open("/proc/self/stat"):read("l"):match("^(%d+)")

parley.run(function()
  local srv = parley.serve{
    listen = arg[1] or "127.0.0.1:0",
    timeout = 10,
    grace = 1,
    handler = function(conn)
      for line in conn:lines() do
        if line == "quit" then
          conn:send("bye\r\n")
          return
        end
        conn:send(line .. "\r\n")
      end
    end,
  }
  print(srv.port .. " " .. pid)
end)
print("server stopped")
