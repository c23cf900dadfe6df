-- A tiny inetd for the interop specs: listens on 127.0.0.1:0, prints
-- "PORT PID", and runs COMMAND ARGS... for each connection with the socket
-- as its stdin and stdout (core.pty.spawn_with_fd), as inetd(8) does.
-- Children are reaped as they end; SIGTERM stops it and kills them.
local parley = require "parley"
local core = require "parley.core"

local argv = { ... }
assert(#argv >= 1, "usage: inetd.lua COMMAND [ARGS...]")
local children = {}

parley.run(function()
  local srv = assert(parley.serve{
    listen = "127.0.0.1:0", signals = false, grace = 0,
    handler = function(conn)
      local pid, err = core.pty.spawn_with_fd(conn:getfd(), argv)
      if pid then children[pid] = true else io.stderr:write("inetd: ", err, "\n") end
      -- our copy of the socket closes when the handler returns
    end,
  })
  io.stdout:write(srv.port, " ", io.open("/proc/self/stat"):read("l"):match("^(%d+)"), "\n")
  io.stdout:flush()
  local stop = false
  parley.on_signal("TERM", function() stop = true end)
  while not stop do
    parley.sleep(0.1)
    for pid in pairs(children) do
      if core.pty.wait(pid) then children[pid] = nil end
    end
  end
  for pid in pairs(children) do
    core.pty.kill(pid, "KILL")
    core.pty.wait(pid, true)
  end
  srv:close(0)
end)
