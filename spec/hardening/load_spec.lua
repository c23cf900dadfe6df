-- Load (issue 11): idle connections beside a normal client, slowloris
-- dropped at the deadline, many concurrent SMTP sessions into one Maildir,
-- IMAP clients racing on flags and expunges, login brute force. The peers
-- are hardening/load.py (Python asyncio) and LuaSocket. Figures are printed
-- with HARDENING_VERBOSE=1; `make hardening` runs the full sizes (#slow).
local socket = require "socket"
local lab = require "hardening.support.lab"

local function verbose(fmt, ...)
  if os.getenv("HARDENING_VERBOSE") then io.stderr:write(("load: " .. fmt .. "\n"):format(...)) end
end

local function py(mode, port, n, extra)
  local p = io.popen(("timeout 300 /usr/bin/python3 %s/hardening/load.py %s %d %d %s 2>&1")
    :format(lab.q(lab.H.root), mode, port, n, extra or ""))
  local out = p:read("a")
  p:close()
  local t = {}
  for k, v in out:gmatch("([%w_]+)=([%d.]+)") do t[k] = tonumber(v) end
  assert(next(t), "load.py " .. mode .. ": " .. out)
  return t, out
end

local function idle(n)
  local dir = lab.tree()
  local srv = lab.serve("smtp", { "--listen", "127.0.0.1:0", "--maildir", dir .. "/md",
    "--domain", "example.org", "--max-connections", tostring(n + 100) },
    { prefix = "prlimit --nofile=" .. (n + 1000) })
  local ok, r = pcall(py, "idle", srv.port, n)
  local out = srv:stop()
  lab.rmdir(dir)
  assert(ok, tostring(r) .. "\n" .. out)
  verbose("%d idle connections (%d still open), a normal SMTP session took %.3f s", n, r.alive, r.normal_session)
  assert.equal(n, r.alive)
  assert.is_true(r.normal_session < 1, ("the normal session took %.3f s"):format(r.normal_session))
end

local function slowloris(n)
  local dir = lab.tree()
  local srv = lab.serve("http", { "--listen", "127.0.0.1:0", "--root", dir .. "/www",
    "--access-log", "off", "--header-timeout", "2" })
  local ok, r = pcall(py, "slowloris", srv.port, n)
  local out = srv:stop()
  lab.rmdir(dir)
  assert(ok, tostring(r) .. "\n" .. out)
  verbose("%d slowloris clients (a byte per 0.3 s) dropped after %.2f..%.2f s (header timeout 2 s)",
    n, r.dropped_min, r.dropped_max)
  assert.is_true(r.dropped_min >= 1.9 and r.dropped_max < 4, "not dropped at the 2 s deadline")
end

-- `nofile`: the server's RLIMIT_NOFILE (a session in DATA holds a socket
-- and a tmp/ file: two descriptors)
local function concurrent_smtp(n, nofile)
  local dir = lab.tree()
  local srv = lab.serve("smtp", { "--listen", "127.0.0.1:0", "--maildir", dir .. "/md",
    "--domain", "example.org", "--max-connections", tostring(n + 100) },
    { prefix = "prlimit --nofile=" .. nofile })
  local ok, r, raw = pcall(py, "smtp", srv.port, n, "k@example.org")
  local out = srv:stop()
  local names = lab.ls(dir .. "/md/k/new")
  local unique = {}
  for _, name in ipairs(names) do unique[name] = true end
  local tmp = lab.ls(dir .. "/md/k/tmp")
  lab.rmdir(dir)
  assert(ok, tostring(r) .. "\n" .. out)
  local count = 0
  for _ in pairs(unique) do count = count + 1 end
  verbose("%d concurrent SMTP sessions: %d got 250, %d files in new/, %d unique names; %s", n, r.ok250, #names,
    count, raw:match("others: ([^\n]*)") or "")
  assert.equal(r.ok250, #names)
  assert.equal(#names, count)
  assert.same({}, tmp)
  assert.is_true(r.ok250 > 0)
end

-- an IMAP connection: cmd(line) -> untagged lines, tagged line
local function imap(port)
  local c = lab.connect(port)
  c:upto("^%* OK")
  local n = 0
  local function cmd(line)
    n = n + 1
    local tag = "t" .. n
    c:send(tag .. " " .. line .. "\r\n")
    local untagged = {}
    for _ = 1, 100000 do
      local l = c:line()
      if l:sub(1, #tag + 1) == tag .. " " then return untagged, l end
      untagged[#untagged + 1] = l
    end
  end
  assert(select(2, cmd("LOGIN " .. lab.USER .. " " .. lab.PASS)):match(" OK"))
  assert(select(2, cmd("SELECT INBOX")):match(" OK"))
  return { cmd = cmd, close = function() cmd("LOGOUT") c:close() end }
end

-- the mailbox as a session sees it: uid -> sorted flags
local function view(s)
  local lines = s.cmd("UID FETCH 1:* (FLAGS)")
  local t = {}
  for _, l in ipairs(lines) do
    local uid = l:match("UID (%d+)")
    local flags = l:match("FLAGS %(([^)]*)%)")
    if uid and flags then
      local f = {}
      for w in flags:gmatch("%S+") do if w ~= "\\Recent" then f[#f + 1] = w end end
      table.sort(f)
      t[tonumber(uid)] = table.concat(f, " ")
    end
  end
  return t
end

local function imap_race(clients, rounds)
  math.randomseed(11)
  local dir = lab.tree()
  local srv = lab.serve_mail(dir)
  local ok, err = pcall(function()
    local msgs = {}
    for i = 1, 100 do msgs[i] = ("Subject: m%d\r\n\r\nbody %d\r\n"):format(i, i) end
    lab.sessions.smtp(srv.ports.smtp, msgs)
    local ss = {}
    for i = 1, clients do ss[i] = imap(srv.ports.imap) end
    -- system flags only: PERMANENTFLAGS has no \* (keywords are not kept)
    local flags = { "\\Seen", "\\Flagged", "\\Answered", "\\Draft" }
    -- the operations are applied one at a time, so the end state is known:
    -- model[uid] = set of flags (nil once expunged)
    local model = {}
    for uid = 1, 100 do model[uid] = {} end
    for _ = 1, rounds do
      for i, s in ipairs(ss) do
        local uid = math.random(1, 100)
        local op = math.random(1, 25)
        local flag = flags[1 + i % #flags]
        if op == 1 then
          s.cmd(("UID STORE %d +FLAGS (\\Deleted)"):format(uid))
          s.cmd("EXPUNGE")
          model[uid] = nil
        else
          s.cmd(("UID STORE %d %sFLAGS (%s)"):format(uid, op % 2 == 0 and "+" or "-", flag))
          if model[uid] then model[uid][flag] = op % 2 == 0 or nil end
        end
      end
    end
    for _, s in ipairs(ss) do s.cmd("NOOP") end
    local fresh = imap(srv.ports.imap)
    local truth = view(fresh)
    fresh.close()
    local want = {}
    for uid, set in pairs(model) do
      local f = {}
      for flag in pairs(set) do f[#f + 1] = flag end
      table.sort(f)
      want[uid] = table.concat(f, " ")
    end
    assert.same(want, truth, "the mailbox lost or invented a flag update or an expunge")
    local n = 0
    for _ in pairs(truth) do n = n + 1 end
    for i, s in ipairs(ss) do
      assert.same(truth, view(s), "session " .. i .. " does not see what a new session sees")
      s.close()
    end
    verbose("imap: %d clients x %d rounds of STORE/EXPUNGE: every view equals a fresh session's (%d messages left)",
      clients, rounds, n)
  end)
  local out = srv:stop()
  lab.rmdir(dir)
  assert(ok, tostring(err) .. "\n" .. out)
end

-- seconds one failed LOGIN takes (IMAP), for `user`
local function failed_login(port, user)
  local c = lab.connect(port, 60)
  c:upto("^%* OK")
  local t0 = socket.gettime()
  c:send("a LOGIN " .. user .. " wrong\r\n")
  local l = c:upto("^a ")
  local took = socket.gettime() - t0
  c:close()
  assert(l:match("^a NO"), l)
  return took
end

-- `base`: the server's --auth-delay; the delay doubles every 5 failures
-- from one address up to 16 times the base (parley.authdelay), so 1,000
-- attempts fit the child's 60 s only with a small base
local function brute_force(attempts, base)
  local dir = lab.tree()
  -- a crypt(3) password, so that a wrong password costs a crypt; an
  -- unknown user must pay the same (users.lua runs a dummy one)
  lab.H.write(dir .. "/users", ("%s:{SHA512-CRYPT}%s:1000:1000::::\n")
    :format(lab.USER, assert(require("parley.mail.users").hash(lab.PASS, "$6$"))))
  local srv = lab.serve_mail(dir, { auth_delay = tostring(base) })
  local ok, err = pcall(function()
    local first, last, known, unknown = nil, nil, 0, 0
    for i = 1, attempts do
      local user = i % 2 == 0 and lab.USER or "nobody" .. i
      local t = failed_login(srv.ports.imap, user)
      if i <= 2 then first = (first or 0) + t / 2 end
      if i > attempts - 2 then last = (last or 0) + t / 2 end
      if user == lab.USER then known = known + t else unknown = unknown + t end
    end
    local ratio = known / unknown
    verbose("brute force: %d failed logins from one address: first %.3f s, last %.3f s; wrong password / unknown user time = %.3f",
      attempts, first, last, ratio)
    assert.is_true(first >= 0.8 * base, "a failed login is answered without a delay")
    if attempts >= 100 then
      assert.is_true(last > 8 * first, ("the delay does not grow: first %.3f s, last %.3f s"):format(first, last))
      assert.is_true(math.abs(ratio - 1) <= 0.05, ("unknown user and wrong password differ: %.3f"):format(ratio))
    end
  end)
  local out = srv:stop()
  lab.rmdir(dir)
  assert(ok, tostring(err) .. "\n" .. out)
end

describe("under load", function()
  before_each(lab.H.fd_snapshot)
  after_each(lab.H.fd_check)

  it("serves a normal client beside 1,000 idle connections", function() idle(1000) end)
  it("serves a normal client in under a second beside 10,000 idle connections #slow", function() idle(10000) end)
  it("drops slowloris clients at the header deadline", function() slowloris(20) end)
  it("drops 500 slowloris clients at the header deadline #slow", function() slowloris(500) end)
  it("stores exactly the messages that got 250 from 100 concurrent SMTP sessions", function()
    concurrent_smtp(100, 1000)
  end)
  it("stores exactly the messages that got 250 from 1,000 concurrent SMTP sessions #slow", function()
    concurrent_smtp(1000, 3000)
  end)
  it("answers 451 when descriptors run out and still stores exactly the 250'd messages #slow", function()
    concurrent_smtp(1000, 1200)
  end)
  it("lets 3 IMAP clients racing on flags and expunges converge", function() imap_race(3, 10) end)
  it("lets 10 IMAP clients racing on flags and expunges converge #slow", function() imap_race(10, 100) end)
  it("answers a failed login only after a delay", function() brute_force(4, 0.05) end)
  it("grows the delay over 1,000 wrong passwords and times unknown users the same #slow", function()
    brute_force(1000, 0.002)
  end)
end)
