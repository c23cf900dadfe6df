-- telnet_chat.lua: a Telnet chat room in a few lines, plus a scripted
-- visitor.  Run it, then `telnet 127.0.0.1 2323` (or `bin/parley telnet
-- 127.0.0.1 2323`) from other terminals and talk.
--
--   lua5.4 examples/telnet_chat.lua [ADDR] [--once]
--
-- --once: a scripted visitor joins, says hello, lists who is there and
-- leaves; then the server stops (this is what spec/telnet/example_spec.lua
-- runs).
local parley = require "parley"
local telnet = require "parley.telnet"

local addr, once = "127.0.0.1:2323", false
for _, a in ipairs(arg) do
  if a == "--once" then once = true else addr = a end
end

parley.run(function()
  -- the bundled chat app; any function(sess) would do as well
  local srv = assert(telnet.server.serve{
    listen = addr, app = "chat", idle_timeout = 900,
    app_opts = { motd = "be nice" },
    banner = "parley chat: say something",
  })
  print("chat on " .. srv.address)
  if not once then return end   -- serve until Ctrl-C

  local bot = assert(telnet.client.connect(srv.host, srv.port, { timeout = 5 }))
  bot:expect("nickname: ")
  bot:send("bot")
  local _, before = bot:expect("be nice\r\n")
  print((before:gsub("\r", "")) .. "be nice")
  bot:send("hello, room")
  bot:send("/who")
  local line = bot:expect("here: [^\r]*")
  print(line)
  bot:send("/quit")
  bot:expect("bye")
  bot:close()
  srv:close()
end)
