#!/usr/bin/env lua5.4
-- bench/tls/smtp.lua — the SMTP part of bench/tls (issue 10): parley's
-- SMTP sink with STARTTLS against the same sink in cleartext, in one run.
--
-- Postfix's smtp-source has no TLS, so the load is parley's own SMTP
-- client: SESSIONS clients as tasks of one process (pinned on CPU 0), the
-- server pinned on CPU 1 (/work/shared/PEERS.md). Two shapes, 1 KiB
-- messages, PIPELINING on:
--   persist  SESSIONS sessions, each sends MESSAGES / SESSIONS messages
--            (one STARTTLS handshake per session: the record layer's cost)
--   conn     one message per connection, SESSIONS at a time
--            (a handshake per message: the handshake's cost)
-- The server (one process, both modes on one port) discards every message
-- in an on_message sink; its own CPU (utime+stime, /proc/PID/stat) per
-- message is the steadier figure on a shared machine. Modes alternate
-- plain tls plain tls ... and the table quotes medians over the rounds.
-- The client verifies the certificate (ECDSA P-256, made by
-- parley.tls.selfsigned) against it as its CA: TLS 1.3 as negotiated.
--
--   lua5.4 bench/tls/smtp.lua            (from anywhere; prints Markdown)
-- Environment: BENCH_ROUNDS (3), BENCH_MESSAGES (persist, 6000),
-- BENCH_SESSIONS (10).
-- Roles (internal): --serve CERT KEY | --load PORT MODE SHAPE COUNT SESSIONS CA
local here = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../.."
package.path = here .. "/lua/?.lua;" .. here .. "/lua/?/init.lua;" .. package.path
package.cpath = here .. "/build/?.so;" .. package.cpath

local MESSAGE = "From: bench@bench.example\r\nTo: sink@bench.example\r\nSubject: bench\r\n\r\n"
  .. ("x"):rep(70) .. "\r\n"
MESSAGE = MESSAGE .. ("y"):rep(1022 - #MESSAGE) .. "\r\n"   -- 1 KiB

local function pid()
  local fh = assert(io.open("/proc/self/stat"))
  local p = fh:read("l"):match("^%d+")
  fh:close()
  return p
end

-- The sink: counts bytes, keeps nothing; STARTTLS offered.
local function serve(cert, key)
  local server = require "parley.smtp.server"
  local bytes = 0
  assert(server.serve{
    listen = "127.0.0.1:0", sink = true, hostname = "bench.parley", tls = { cert = cert, key = key },
    max_connections = 20000, max_errors = 1000000,
    on_message = function()
      return function(chunk)
        if chunk then bytes = bytes + #chunk end
        return true
      end
    end,
    on_start = function(s)
      io.stdout:write("port=", s.port, " pid=", pid(), "\n")
      io.stdout:flush()
    end,
  })
end

-- The load: prints "messages seconds errors".
local function load(port, mode, shape, count, sessions, ca)
  local parley = require "parley"
  local client = require "parley.smtp.client"
  local server = "127.0.0.1:" .. port
  local copts = { tls = mode == "tls" and "required" or nil, ca = ca,
    timeouts = { connect = 30, greeting = 30, command = 30, data = 30, block = 30, final = 30 } }
  local m = { from = "bench@bench.example", to = { "sink@bench.example" }, message = MESSAGE }
  local done, errors, first_err = 0, 0, nil
  local function fail(err)
    errors = errors + 1
    first_err = first_err or tostring(err)
  end
  local t0
  parley.run(function()
    t0 = parley.now()
    local tasks = {}
    for i = 1, sessions do
      local share = count // sessions + (i <= count % sessions and 1 or 0)
      tasks[i] = parley.spawn(function()
        if shape == "persist" then
          local c, err = client.connect(server, copts)
          if not c then return fail(err) end
          for _ = 1, share do
            local r, serr = c:send(m)
            if r then done = done + 1 else fail(serr) break end
          end
          c:quit()
        else
          for _ = 1, share do
            local o = { server = server }
            for k, v in pairs(copts) do o[k] = v end
            for k, v in pairs(m) do o[k] = v end
            local r, err = client.send(o)
            if r then done = done + 1 else fail(err) end
          end
        end
      end)
    end
    for _, t in ipairs(tasks) do t:join() end
  end)
  io.stdout:write(("%d %.6f %d %s\n"):format(done, require("parley").now() - t0, errors, first_err or ""))
end

---------------------------------------------------------------------------
-- The run
---------------------------------------------------------------------------

local function sh(cmd)
  local fh = assert(io.popen(cmd))
  local out = fh:read("a")
  fh:close()
  return out
end

local function cpu_ticks(p)
  local fh = io.open("/proc/" .. p .. "/stat")
  if not fh then return 0 end
  local stat = fh:read("l")
  fh:close()
  -- fields after the command name in parentheses: utime is the 14th, stime the 15th
  local rest = stat:match("%) (.*)$")
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  return tonumber(f[12]) + tonumber(f[13])
end

local function median(t)
  if #t == 0 then return nil end
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end

local function main()
  local rounds = tonumber(os.getenv("BENCH_ROUNDS") or "") or 3
  local messages = tonumber(os.getenv("BENCH_MESSAGES") or "") or 6000
  local sessions = tonumber(os.getenv("BENCH_SESSIONS") or "") or 10
  local self = here .. "/bench/tls/smtp.lua"
  local hz = tonumber(sh("getconf CLK_TCK")) or 100
  local work = sh("mktemp -d /tmp/parley-bench-tls-smtp.XXXXXX"):gsub("%s+$", "")
  local tls = require "parley.tls"
  local cert, key = assert(tls.selfsigned{ dir = work })
  local cmd = ("exec timeout -s KILL 900 taskset -c 1 lua5.4 %s --serve %s %s 2>%s/server.err")
    :format(self, cert, key, work)
  local srv = assert(io.popen(cmd))
  local line = srv:read("l") or ""
  local port, spid = line:match("^port=(%d+) pid=(%d+)")
  if not port then
    io.stderr:write("bench/tls/smtp: the server did not start: ", line, sh("cat " .. work .. "/server.err"))
    os.exit(1)
  end
  local shapes = { persist = messages, conn = messages // 4 }
  local results = {}   -- [shape][mode] = { rate = {...}, cpu = {...}, errors = n }
  for _, shape in ipairs { "persist", "conn" } do
    results[shape] = {}
    for _, mode in ipairs { "plain", "tls" } do results[shape][mode] = { rate = {}, cpu = {}, errors = 0 } end
  end
  local function measure(shape, mode)
    local c0 = cpu_ticks(spid)
    local out = sh(("taskset -c 0 timeout 600 lua5.4 %s --load %s %s %s %d %d %s 2>&1")
      :format(self, port, mode, shape, shapes[shape], sessions, cert))
    local c1 = cpu_ticks(spid)
    local n, secs, errs, first = out:match("^(%d+) ([%d.]+) (%d+) ?([^\n]*)")
    local r = results[shape][mode]
    if not n or tonumber(n) == 0 then
      io.stderr:write("bench/tls/smtp: ", shape, " ", mode, " failed: ", out, "\n")
      r.errors = r.errors + 1
      return
    end
    n, secs, errs = tonumber(n), tonumber(secs), tonumber(errs)
    r.rate[#r.rate + 1] = n / secs
    r.cpu[#r.cpu + 1] = (c1 - c0) / hz * 1e6 / n
    r.errors = r.errors + errs
    if errs > 0 then io.stderr:write("bench/tls/smtp: ", shape, " ", mode, ": ", errs, " errors: ", first, "\n") end
  end
  -- warm-up: one short run of each mode
  sh(("taskset -c 0 lua5.4 %s --load %s tls persist 200 %d %s"):format(self, port, sessions, cert))
  sh(("taskset -c 0 lua5.4 %s --load %s plain persist 200 %d %s"):format(self, port, sessions, cert))
  for round = 1, rounds do
    for _, shape in ipairs { "persist", "conn" } do
      for _, mode in ipairs { "plain", "tls" } do measure(shape, mode) end
    end
    io.stderr:write("bench/tls/smtp: round ", round, " done\n")
  end
  os.execute("kill " .. spid)
  srv:close()
  os.execute("rm -rf " .. work)

  local out = io.stdout
  out:write(("### SMTP sink: STARTTLS vs cleartext, %d sessions, 1 KiB messages, medians of %d rounds\n\n")
    :format(sessions, rounds))
  out:write(("Load: parley's SMTP client, %d tasks in one process on CPU 0 (smtp-source has no TLS); "
    .. "server: the same parley sink on CPU 1 for both modes. persist = %d messages over %d sessions "
    .. "(one handshake each); conn = %d messages, one connection (and handshake) each. "
    .. "Load average at the end: %s (2 cores shared: numbers are noisy; CPU per message is the "
    .. "steadier figure).\n\n"):format(sessions, shapes.persist, sessions, shapes.conn,
      sh("cut -d' ' -f1-3 /proc/loadavg"):gsub("%s+$", "")))
  out:write("| shape | mode | msgs/s | server CPU µs/msg | errors |\n| --- | --- | ---: | ---: | ---: |\n")
  local med = {}
  for _, shape in ipairs { "persist", "conn" } do
    med[shape] = {}
    for _, mode in ipairs { "plain", "tls" } do
      local r = results[shape][mode]
      local rate, cpu = median(r.rate), median(r.cpu)
      med[shape][mode] = { rate = rate, cpu = cpu }
      out:write(("| %s | %s | %s | %s | %d |\n"):format(shape, mode == "tls" and "STARTTLS" or "cleartext",
        rate and ("%.0f"):format(rate) or "-", cpu and ("%.1f"):format(cpu) or "-", r.errors))
    end
  end
  out:write("\n| ratio STARTTLS / cleartext | msgs/s | server CPU/msg |\n| --- | ---: | ---: |\n")
  for _, shape in ipairs { "persist", "conn" } do
    local p, t = med[shape].plain, med[shape].tls
    local function ratio(a, b) return (a and b and b > 0) and ("%.2f×"):format(a / b) or "-" end
    out:write(("| %s | %s | %s |\n"):format(shape, ratio(t.rate, p.rate), ratio(t.cpu, p.cpu)))
  end
  local bad = 0
  for _, shape in pairs(results) do for _, r in pairs(shape) do bad = bad + r.errors end end
  return bad == 0 and 0 or 1
end

if arg[1] == "--serve" then
  serve(arg[2], arg[3])
elseif arg[1] == "--load" then
  load(arg[2], arg[3], arg[4], tonumber(arg[5]), tonumber(arg[6]), arg[7])
else
  os.exit(main())
end
