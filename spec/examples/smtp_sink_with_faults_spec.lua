-- examples/smtp_sink_with_faults.lua as a child process, driven by
-- parley's SMTP client one connection at a time: every fault it prints is
-- one the client met, the faults come at the configured rates, and the
-- same seed gives the same faults again.
local H = require "helper"
local child = require "support.child"
local parley = require "parley"
local client = require "parley.smtp.client"

local DELAY = 0.1
local RATES = { delay = 0.1, tempfail = 0.25, drop = 0.05 }
local RCPTS = { "a@example.org", "b@example.org", "c@example.org" }

local function start(seed)
  return child.spawn(("env LUA_PATH=%s LUA_CPATH=%s lua5.4 examples/smtp_sink_with_faults.lua " ..
    "--listen 127.0.0.1:0 --seed %d --delay %g --delay-rate %g --tempfail-rate %g --drop-rate %g"):format(
    child.quote(H.root .. "/lua/?.lua;" .. H.root .. "/lua/?/init.lua;;"), child.quote(H.root .. "/build/?.so;;"),
    seed, DELAY, RATES.delay, RATES.tempfail, RATES.drop))
end

-- n messages, one connection each: what the client saw for each
local function drive(port, n)
  local seen = {}
  H.run(function()
    for i = 1, n do
      local t0 = parley.now()
      local res, err, reply, partial = client.send{ server = "127.0.0.1:" .. port, from = "tester@example.net",
        to = RCPTS, message = "Subject: fault test " .. i .. "\r\n\r\nbody\r\n",
        timeouts = { connect = 5, greeting = 5, command = 5, data = 5, block = 5, final = 5 } }
      local got = { dropped = res == nil and reply == nil, err = err, tempfail = {}, time = parley.now() - t0 }
      for addr, r in pairs((res or partial or {}).rejected or {}) do
        assert.equal(451, r.code)
        got.tempfail[addr] = true
      end
      seen[i] = got
    end
  end, 60)
  return seen
end

-- the server's output: its fault lines, per connection, and its totals
local function parse(out)
  local lines, per, totals = {}, {}, nil
  for line in out:gmatch("[^\n]+") do
    local n, what, kind = line:match("^fault (%d+) (.-) (%a+)$")
    if n then
      lines[#lines + 1] = line
      n = tonumber(n)
      local p = per[n] or { delay = 0, tempfail = {} }
      per[n] = p
      if kind == "delay" then p.delay = p.delay + 1
      elseif kind == "drop" then p.drop = true
      elseif kind == "tempfail" then p.tempfail[what:match("^rcpt (.*)$")] = true end
    end
    local c, r, rc, d, t, x = line:match("^totals: (%d+) connections, (%d+) replies, (%d+) rcpts, " ..
      "(%d+) delays, (%d+) tempfails, (%d+) drops$")
    if c then
      totals = { connections = tonumber(c), replies = tonumber(r), rcpts = tonumber(rc),
                 delay = tonumber(d), tempfail = tonumber(t), drop = tonumber(x) }
    end
  end
  return lines, per, totals
end

-- a share k/n close to p: within four standard deviations
local function near(p, k, n, what)
  local sd = math.sqrt(p * (1 - p) / n)
  assert(math.abs(k / n - p) <= 4 * sd + 1 / n,
    ("%s: %d of %d (%.3f), configured %.3f"):format(what, k, n, k / n, p))
end

-- one run: the server started on a seed, n connections, its output parsed
local function run(seed, n)
  local srv = start(seed)
  local ok, seen = pcall(drive, srv.port, n)
  local out = srv:stop()
  if not ok then error(seen, 0) end
  local lines, per, totals = parse(out)
  return { seen = seen, out = out, lines = lines, per = per, totals = totals }
end

describe("examples/smtp_sink_with_faults.lua", function()
  local N = 40
  local first

  setup(function() first = run(2026, N) end)

  it("delays, tempfails and drops at the seeded rates, each fault one the client met", function()
    local seen, per, totals, out = first.seen, first.per, first.totals, first.out
    assert.truthy(totals, out)
    assert.equal(N, totals.connections)
    for i, got in ipairs(seen) do
      local p = per[i] or { delay = 0, tempfail = {} }
      assert.equal(p.drop == true, got.dropped, ("connection %d: %s"):format(i, tostring(got.err)))
      if not got.dropped then assert.same(p.tempfail, got.tempfail, "connection " .. i) end
      assert.is_true(got.time >= p.delay * DELAY * 0.95, ("connection %d: %.3f s for %d delays"):format(i, got.time, p.delay))
    end
    near(RATES.delay, totals.delay, totals.replies, "delays")
    near(RATES.drop, totals.drop, totals.replies, "drops")
    near(RATES.tempfail, totals.tempfail, totals.rcpts, "tempfails")
    -- the seed chosen makes every kind of fault happen
    assert.is_true(totals.delay > 0 and totals.tempfail > 0 and totals.drop > 0, out)
  end)

  it("gives the same faults for the same seed and others for another", function()
    assert.is_true(#first.lines > 0, first.out)
    assert.same(first.lines, run(2026, N).lines)
    assert.are_not.same(first.lines, run(2027, N).lines)
  end)
end)
