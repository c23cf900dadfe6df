-- Child for serve_spec: a parley.serve server with signals on (the default).
--   serve_child.lua          serve is called inside parley.run; prints
--                            "PORT PID" once it listens
--   serve_child.lua close-then-wait  serve, close at once, print "closed,
--                            waiting", sleep 3 s (SIGTERM should kill it)
--   serve_child.lua PORT     plain-script use: prints "PORT PID" and calls
--                            parley.serve outside any task (the spec retries
--                            its connect until the server listens)
-- Handler: "slow" -> "started", 0.5 s pause, "done", handler ends;
--          "boom" -> raises "handler exploded"; anything else -> "echo ...".
-- Prints "serve returned" when serve/run returns, then exits 0.
io.stdout:setvbuf("line")
local parley = require "parley"
local pid = io.open("/proc/self/stat"):read("l"):match("^(%d+)")

local function handler(conn)
  for line in conn:lines() do
    if line == "slow" then
      conn:send("started\r\n")
      conn:flush()
      parley.sleep(0.5)
      conn:send("done\r\n")
      return
    elseif line == "boom" then
      error("handler exploded")
    else
      conn:send("echo " .. line .. "\r\n")
    end
  end
end

if arg[1] == "close-then-wait" then
  -- a server that is closed at once; SIGTERM must then act as by default
  parley.run(function()
    local srv = parley.serve{listen = "127.0.0.1:0", handler = handler}
    srv:close()
    print(srv.port .. " " .. pid)
  end)
  print("closed, waiting")
  parley.sleep(3)
  print("survived SIGTERM")
  os.exit(0)
elseif arg[1] then
  print(arg[1] .. " " .. pid)
  parley.serve{listen = "127.0.0.1:" .. arg[1], handler = handler,
               grace = 3, timeout = 10}
else
  parley.run(function()
    local srv = parley.serve{listen = "127.0.0.1:0", handler = handler,
                             grace = 3, timeout = 10}
    print(srv.port .. " " .. pid)
  end)
end
print("serve returned")
