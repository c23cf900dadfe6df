--- `parley demo`: starts a server on loopback, tours it with a scripted
-- client while printing the dialogue, then keeps serving until Ctrl-C.
-- (The full protocol lab replaces this as the protocols land.)
-- @module parley.cli.demo
local parley = require "parley"
local cli = require "parley.cli"
local echo = require "parley.echo.cli"

local M = {}

local function say(dir, line)
  local tty = os.getenv("TERM") and os.getenv("TERM") ~= "dumb" and os.execute("test -t 1")
  if tty then
    local color = dir == "C:" and "\27[31m" or "\27[34m"
    io.stdout:write(color, dir, " ", line, "\27[0m\n")
  else
    io.stdout:write(dir, " ", line, "\n")
  end
end

local function tour(srv)
  local c = assert(parley.connect(srv.host, srv.port, { timeout = 5 }))
  for _, line in ipairs{ "HELO demo", "hello, parley", "every line comes back" } do
    say("C:", line)
    c:send(line .. "\r\n")
    say("S:", assert(c:receive()))
  end
  -- a bare LF is reported, not silently accepted
  say("C:", "a line ended by a bare LF\\n")
  c:send("a line ended by a bare LF\n")
  say("S:", assert(c:receive()))
  c:close()
end

function M.main(argv)
  local o = cli.parse(argv, { listen = "string", exit = "flag", help = "flag" })
  if o.help then
    io.stdout:write("usage: parley demo [--listen ADDR] [--exit]\n")
    return 0
  end
  local status = 0
  parley.run(function()
    local srv = assert(parley.serve{ listen = o.listen or "127.0.0.1:7007", handler = echo.handler, timeout = 300 })
    io.stdout:write(("parley %s demo\n\n  %-8s %-22s %s\n  %-8s %-22s %s\n\n"):format(
      parley.version, "service", "address", "try it", "echo", srv.address,
      ("telnet %s %d"):format(srv.host, srv.port)))
    io.stdout:write("tour: a scripted client talks to it\n")
    local ok, err = pcall(tour, srv)
    if not ok then
      io.stderr:write("tour failed: ", tostring(err), "\n")
      status = 1
    end
    if o.exit then
      srv:close()
    else
      io.stdout:write("\nserving until Ctrl-C\n")
      io.stdout:flush()
    end
  end)
  return status
end

return M
