-- Child for luasocket_spec: a blocking LuaSocket server (the independent
-- peer for a parley client). Prints "PORT PID", serves one connection:
-- answers "ls: LINE" per line; on "quit" sends "bye" and a tail without a
-- line end, then closes and exits 0.
io.stdout:setvbuf("line")
local socket = require "socket"
local pid = io.open("/proc/self/stat"):read("l"):match("^(%d+)")

local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
print(port .. " " .. pid)
server:settimeout(30)
local conn = assert(server:accept())
conn:settimeout(30)
for _ = 1, 10000 do
  local line, err = conn:receive("*l")
  if not line then
    print("client went away: " .. tostring(err))
    break
  end
  if line == "quit" then
    conn:send("bye\r\ntail without newline")
    break
  end
  conn:send("ls: " .. line .. "\r\n")
end
conn:close()
server:close()
print("luasocket server done")
