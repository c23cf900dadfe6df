-- `bin/parley lab` as a user runs it: a child process, its printed table
-- of commands tried with curl and Python's poplib/imaplib, its tour, its
-- shutdown on SIGTERM, a kept --dir, and `make demo`'s command line.
local H = require "helper"
local child = require "support.child"
local lfs = require "lfs"

local quote = child.quote
local SESSIONS = 8

local function exists(path) return lfs.attributes(path) ~= nil end

-- Runs a command to its end under `timeout 60`: output, exit code.
local function run(cmd)
  local fh = assert(io.popen("cd " .. quote(H.root) .. " && timeout 60 " .. cmd .. " 2>&1"))
  local out = fh:read("a")
  local _, _, code = fh:close()
  return out, code
end

-- Starts `bin/parley lab ARGS` and reads up to its "lab ready" line.
local function start(args)
  return child.spawn("lua5.4 bin/parley lab " .. args, {
    lines = 60,
    port = function(line) if line == "lab ready" then return 0 end end,
  })
end

-- What the table says: rows name -> { port =, command = (the first),
-- commands = {...} }, the password, the lab directory and the certificate.
local function table_of(lines)
  local t = { rows = {} }
  local last
  for _, line in ipairs(lines) do
    local name, port, what = line:match("^  (%l[%w]*)%s+127%.0%.0%.1:(%d+)%s+(.+)$")
    if name then
      last = { port = tonumber(port), what = what, commands = {} }
      t.rows[name] = last
    end
    local cmd = line:match("^%s+%$ (.+)$")
    if cmd and last then
      last.command = last.command or cmd
      last.commands[#last.commands + 1] = cmd
    end
    t.ca = t.ca or line:match("^  TLS       (%S+)")
    t.password = t.password or line:match("^  password  (%S+)$")
    t.dir = t.dir or line:match("^  lab dir   (%S+)")
  end
  return t
end

local function assert_tour(out)
  for _, title in ipairs{ "Anonymous FTP", "SMTP by hand", "SMTP STARTTLS", "POP3: USER, PASS", "IMAP: LOGIN, SELECT",
                          'IMAP: LIST "" "*"', "HTTP/1.1: GET /index.html", "Telnet: a login" } do
    assert.matches("✓ " .. title, out, 1, true)
  end
  assert.matches(("✓ tour: %d of %d sessions passed"):format(SESSIONS, SESSIONS), out, 1, true)
  assert.not_matches("✗", out, 1, true)
end

describe("parley lab --tour --exit", function()
  it("replays every session with its dialogue, each passing, and exits 0", function()
    local out, code = run("lua5.4 bin/parley lab --ports auto --tour --exit")
    assert.equal(0, code, out)
    assert_tour(out)
    -- the dialogue itself, with plain markers when not on a terminal
    assert.matches("C: RETR coffee.txt", out, 1, true)
    assert.matches("S: 227 Entering Passive Mode (", out, 1, true)
    assert.matches("S: Greek coffee, one cup", out, 1, true)           -- the data connection
    assert.matches("C: RCPT TO:<strategos@lab.example>", out, 1, true)
    assert.matches("C: Subject: Typed by hand", out, 1, true)
    assert.matches("C: a3 FETCH 1 BODY[]", out, 1, true)
    assert.matches("C: Host: 127.0.0.1:", out, 1, true)
    assert.matches("S: login: ", out, 1, true)
    assert.not_matches("\27[", out, 1, true)
  end)

  it("runs what make demo runs, with --exit appended", function()
    local mk = assert(io.open(H.root .. "/Makefile")):read("a")
    local recipe = mk:match("\ndemo:[^\n]*\n\t([^\n]+)")
    assert.truthy(recipe, "no demo recipe in the Makefile")
    assert.matches("bin/parley lab --tour", recipe, 1, true)
    local out, code = run(recipe:gsub("%$%(LUA%)", "lua5.4") .. " --ports auto --exit")
    assert.equal(0, code, out)
    assert_tour(out)
  end)

  it("is also what parley demo runs", function()
    local out, code = run("lua5.4 bin/parley demo --ports auto --exit")
    assert.equal(0, code, out)
    assert_tour(out)
  end)

  it("appends the dialogues to --transcript FILE, without colour", function()
    local dir = H.tmpdir()
    local out, code = run("lua5.4 bin/parley lab --ports auto --tour --exit --transcript " .. quote(dir .. "/t.txt"))
    assert.equal(0, code, out)
    local text = assert(H.read(dir .. "/t.txt"))
    H.rmdir(dir)
    assert.matches("C: USER anonymous", text, 1, true)
    assert.matches("C: a4 LOGOUT", text, 1, true)
    assert.not_matches("\27[", text, 1, true)
  end)
end)

describe("parley lab's endpoint table #interop", function()
  local lab, t

  setup(function()
    lab = start("--ports auto")
    t = table_of(lab.seen)
  end)

  teardown(function()
    if lab then lab:stop() end
  end)

  it("names every service, the password and the lab directory", function()
    for _, name in ipairs{ "smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps", "ftp", "ftps",
                           "http", "https", "telnet" } do
      assert.truthy(t.rows[name], name)
      assert.truthy(t.rows[name].command, name)
      assert.matches(tostring(t.rows[name].port), t.rows[name].command, 1, true)
    end
    assert.matches("^%l+%-%l+%-%l+%-%d%d%d$", t.password)
    assert.is_true(exists(t.dir .. "/users"))
  end)

  it("gives curl commands for FTP, HTTP, POP3 and IMAP that work as printed", function()
    local out, code = run(t.rows.ftp.command)
    assert.equal(0, code, out)
    assert.matches("coffee.txt", out, 1, true)
    assert.matches("flag.txt", out, 1, true)
    out, code = run(t.rows.http.command)
    assert.equal(0, code, out)
    assert.matches("Welcome to the parley lab", out, 1, true)
    out, code = run(t.rows.pop3.command)
    assert.equal(0, code, out)
    assert.matches("Subject: Welcome to the lab", out, 1, true)
    out, code = run(t.rows.imap.command)
    assert.equal(0, code, out)
    assert.matches("Subject: Welcome to the lab", out, 1, true)
  end)

  it("gives a submission command that sends with AUTH, seen then by Python's poplib", function()
    local out, code = run(t.rows.submission.command)
    assert.equal(0, code, out)
    local py = ([[
import poplib
p = poplib.POP3("127.0.0.1", %d, timeout=10)
p.user("strategos"); p.pass_(%q)
n, _ = p.stat()
print("count", n)
print("last", b"\n".join(p.retr(n)[1]).decode())
p.quit()
]]):format(t.rows.pop3.port, t.password)
    out, code = run("/usr/bin/python3 -c " .. quote(py))
    assert.equal(0, code, out)
    assert.matches("count 4", out, 1, true)
    assert.matches("Subject: hello", out, 1, true)
  end)

  it("lets Python's imaplib log in as strategos with the printed password", function()
    local py = ([[
import imaplib
m = imaplib.IMAP4("127.0.0.1", %d)
m.login("strategos", %q)
typ, data = m.select("INBOX", readonly=True)
print("select", typ, data[0].decode())
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
print(data[0][1].decode().strip())
m.logout()
]]):format(t.rows.imap.port, t.password)
    local out, code = run("/usr/bin/python3 -c " .. quote(py))
    assert.equal(0, code, out)
    assert.matches("select OK", out, 1, true)
    assert.matches("Subject: Welcome to the lab", out, 1, true)
  end)

  it("gives TLS commands that work as printed: openssl, curl (POP3S, IMAPS, FTP, FTPS, HTTPS), parley send", function()
    assert.is_true(exists(t.ca), tostring(t.ca))
    local starttls = t.rows.smtp.commands[2]
    assert.matches("^openssl s_client %-starttls smtp %-connect ", starttls)
    local out, code = run("sh -c " .. quote("printf 'EHLO me\\nQUIT\\n' | " .. starttls
      .. " -quiet -crlf -verify_return_error 2>&1"))
    assert.equal(0, code, out)
    assert.matches("250-AUTH PLAIN LOGIN", out, 1, true)
    assert.matches("221 ", out, 1, true)
    out, code = run(t.rows.pop3s.command)
    assert.equal(0, code, out)
    assert.matches("Subject: Welcome to the lab", out, 1, true)
    out, code = run(t.rows.imaps.command)
    assert.equal(0, code, out)
    assert.matches("Subject: Welcome to the lab", out, 1, true)
    out, code = run(t.rows.ftp.commands[2])   -- AUTH TLS, then PROT P for the data
    assert.equal(0, code, out)
    assert.matches("Greek coffee, one cup", out, 1, true)
    out, code = run(t.rows.ftps.command)
    assert.equal(0, code, out)
    assert.matches("flag.txt", out, 1, true)
    out, code = run(t.rows.https.command)
    assert.equal(0, code, out)
    assert.matches("Welcome to the parley lab", out, 1, true)
    out, code = run(t.rows.smtps.command)
    assert.equal(0, code, out)
    local py = ([[
import imaplib, ssl
m = imaplib.IMAP4_SSL("127.0.0.1", %d, ssl_context=ssl.create_default_context(cafile=%q))
m.login("strategos", %q)
m.select("INBOX", readonly=True)
typ, data = m.search(None, "SUBJECT", "hello")
print("found", len(data[0].split()))
m.logout()
]]):format(t.rows.imaps.port, t.ca, t.password)
    out, code = run("/usr/bin/python3 -c " .. quote(py))
    assert.equal(0, code, out)
    assert.matches("found [1-9]", out)
  end)
end)

describe("parley lab's shutdown", function()
  it("on SIGTERM says goodbye to idle mail sessions, stops within the grace period and removes its temp dir", function()
    local lab = start("--ports auto")
    local t = table_of(lab.seen)
    local ok, err = pcall(function()
      local socket = require "socket"
      local idle = {}
      for _, name in ipairs{ "smtp", "pop3", "imap" } do
        local s = assert(socket.connect("127.0.0.1", t.rows[name].port))
        s:settimeout(10)
        assert(s:receive("*l"))   -- the greeting
        idle[name] = s
      end
      local t0 = socket.gettime()
      local out, how, code = lab:stop("TERM")
      local took = socket.gettime() - t0
      assert.equal("exit", how)
      assert.equal(0, code, out)
      assert.is_true(took < require("parley.lab").GRACE + 2, ("took %.1f s"):format(took))
      assert.matches("SIGTERM: stopping the lab", out, 1, true)
      assert.matches("lab stopped", out, 1, true)
      assert.matches("^421 ", idle.smtp:receive("*l"))
      assert.matches("^%-ERR ", idle.pop3:receive("*l"))
      assert.matches("^%* BYE ", idle.imap:receive("*l"))
      for _, s in pairs(idle) do s:close() end
      assert.is_false(exists(t.dir), t.dir .. " is still there")
    end)
    lab:stop()
    if t.dir and t.dir:match("^/tmp/parley%-lab%-") then H.rmdir(t.dir) end
    assert(ok, err)
  end)
end)

describe("parley lab --watch FILE #interop", function()
  it("records what outside clients say to every server, as the server sees it, passwords masked", function()
    local dir = H.tmpdir()
    local file = dir .. "/watch.log"
    local lab = start("--ports auto --watch " .. quote(file))
    local t = table_of(lab.seen)
    local ok, err = pcall(function()
      local out, code = run(t.rows.ftp.command)
      assert.equal(0, code, out)
      out, code = run(("curl -s -u strategos:%s pop3://127.0.0.1:%d/1"):format(t.password, t.rows.pop3.port))
      assert.equal(0, code, out)
      -- written as it happens, not when the lab stops
      local text = H.read(file)
      assert.matches("* accepted from 127.0.0.1:", text, 1, true)
      assert.matches("C: USER anonymous", text, 1, true)
      assert.matches("S: 226 ", text, 1, true)
      assert.matches("C: AUTH PLAIN", text, 1, true)   -- curl's login: the payload masked
      assert.matches("C: ****", text, 1, true)
      assert.matches("C: RETR 1", text, 1, true)
      assert.matches("S: %[[%d,]+ bytes%]", text)
      assert.not_matches(t.password, text, 1, true)
      assert.not_matches("\27[", text, 1, true)
    end)
    lab:stop()
    H.rmdir(dir)
    assert(ok, err)
  end)
end)

describe("parley lab --dir", function()
  it("keeps the users, the password and the mail between runs", function()
    local dir = H.tmpdir()
    local out1, code1 = run("lua5.4 bin/parley lab --ports auto --tour --exit --dir " .. quote(dir))
    local out2, code2 = run("lua5.4 bin/parley lab --ports auto --exit --dir " .. quote(dir))
    local count = 0
    for _, sub in ipairs{ "new", "cur" } do
      for f in lfs.dir(dir .. "/mail/strategos/" .. sub) do
        if not f:match("^%.") then count = count + 1 end
      end
    end
    local kept = exists(dir .. "/users")
    H.rmdir(dir)
    assert.equal(0, code1, out1)
    assert.equal(0, code2, out2)
    local p1 = out1:match("\n  password  (%S+)\n")
    assert.truthy(p1, out1)
    assert.equal(p1, out2:match("\n  password  (%S+)\n"))
    assert.equal(4, count)   -- three to start with, one typed over SMTP on the tour
    assert.is_true(kept)
    assert.matches("(kept)", out2, 1, true)
  end)
end)

describe("parley lab's options", function()
  it("refuses a host that is not loopback, with status 2", function()
    local out, code = run("lua5.4 bin/parley lab --host 0.0.0.0 --exit")
    assert.equal(2, code)
    assert.matches("not a loopback address", out, 1, true)
    assert.matches("--public", out, 1, true)
  end)

  it("refuses --ports other than auto and --ports with --port-offset", function()
    local out, code = run("lua5.4 bin/parley lab --ports 1000 --exit")
    assert.equal(2, code, out)
    out, code = run("lua5.4 bin/parley lab --ports auto --port-offset 5 --exit")
    assert.equal(2, code, out)
    assert.matches("exclude each other", out, 1, true)
  end)

  it("describes itself with --help", function()
    local out, code = run("lua5.4 bin/parley lab --help")
    assert.equal(0, code)
    for _, opt in ipairs{ "--tour", "--exit", "--dir", "--host", "--public", "--port-offset", "--ports auto", "--transcript" } do
      assert.matches(opt, out, 1, true)
    end
  end)
end)
