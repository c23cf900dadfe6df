-- A test SMTP server that misbehaves on purpose, for testing SMTP clients.
-- It takes every message and throws it away, but delays a share of its
-- replies, tempfails (451) a share of RCPTs and drops a share of
-- connections mid-dialogue (closed, no reply), printing each fault.
--
--   lua5.4 examples/smtp_sink_with_faults.lua --listen 127.0.0.1:2525 --seed 7 \
--     --delay 2 --delay-rate 0.1 --tempfail-rate 0.2 --drop-rate 0.05
--
-- Faults are drawn from the seed: connection n has its own generator
-- seeded with (seed, n), so a client that connects one at a time meets
-- the same faults on every run. SIGTERM or Ctrl-C prints the totals.
local parley = require "parley"
local server = require "parley.smtp.server"

local o = require("parley.cli").parse(arg, { listen = "string", seed = "number", delay = "number",
  delay_rate = "number", tempfail_rate = "number", drop_rate = "number" })
local seed = math.tointeger(o.seed) or os.time()
local delay, delay_rate = o.delay or 1, o.delay_rate or 0
local tempfail_rate, drop_rate = o.tempfail_rate or 0, o.drop_rate or 0
io.stdout:setvbuf("line")

-- splitmix64 (integers wrap in Lua 5.4): numbers in [0, 1)
local function generator(n)
  local x = seed * 0x9E3779B97F4A7C15 + n
  return function()
    x = x + 0x9E3779B97F4A7C15
    local z = (x ~ (x >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    return ((z ~ (z >> 31)) >> 11) / 2.0 ^ 53
  end
end

local count = { connections = 0, replies = 0, rcpts = 0, delay = 0, tempfail = 0, drop = 0 }
local function fault(s, what, kind)
  count[kind] = count[kind] + 1
  print(("fault %d %s %s"):format(s.fault_n, what, kind))
end

-- Before a reply: maybe wait, maybe hang up. True when the connection is gone.
-- Every call draws the same numbers, whatever happens, so runs stay in step.
local function misbehave(s, what)
  count.replies = count.replies + 1
  local slow, gone = s.rand() < delay_rate, s.rand() < drop_rate
  if slow then fault(s, what, "delay") s.conn:flush() parley.sleep(delay) end
  if gone then fault(s, what, "drop") s.conn:close() end
  return gone
end

parley.run(function()
  assert(server.serve{
    listen = o.listen or "127.0.0.1:2525", sink = true,
    on_connect = function(s)
      count.connections = count.connections + 1
      s.fault_n, s.rand = count.connections, generator(count.connections)
    end,
    on_mail = function(s) misbehave(s, "mail") end,
    on_rcpt = function(s, to)
      count.rcpts = count.rcpts + 1
      local tempfail = s.rand() < tempfail_rate
      if misbehave(s, "rcpt " .. to) then return end
      if tempfail then fault(s, "rcpt " .. to, "tempfail") return 451, "4.3.0 try again later (a planned fault)" end
    end,
    on_message = function(s)      -- end of DATA: the body is discarded
      return function(chunk) if chunk == nil then misbehave(s, "data") end return true end
    end,
    on_start = function(srv) print(("smtp sink with faults on %s (seed %d)"):format(srv.address, seed)) end,
  })
end)
print(("totals: %d connections, %d replies, %d rcpts, %d delays, %d tempfails, %d drops"):format(
  count.connections, count.replies, count.rcpts, count.delay, count.tempfail, count.drop))
