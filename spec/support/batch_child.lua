-- Child for batching_spec, run under strace: a client queues 100 sends and
-- then reads; an echo handler answers 100 pipelined lines. Prints
-- "client_fd C server_fd S echoes N" for the spec to count writes per fd.
io.stdout:setvbuf("line")
local parley = require "parley"

parley.run(function()
  local l = assert(parley.listen("127.0.0.1:0"))
  local server_fd
  local server = parley.spawn(function()
    local s = assert(l:accept(5))
    server_fd = s:getfd()
    s:settimeout(5)
    for line in s:lines() do s:send(line .. "\r\n") end
    s:close()
  end)
  local c = assert(parley.connect("127.0.0.1", l:port(), {timeout = 5}))
  for i = 1, 100 do c:send("line " .. i .. "\r\n") end
  local n = 0
  for i = 1, 100 do
    local line = c:receive()
    if line ~= "line " .. i then break end
    n = i
  end
  local cfd = c:getfd()
  c:close()
  assert(server:join(5))
  l:close()
  print(("client_fd %d server_fd %d echoes %d"):format(cfd, server_fd or -1, n))
end)
