-- `parley serve pop3`, `parley serve mail` and examples/mailserver.lua as
-- child processes: they print where they listen, serve, and stop on TERM.
local U = require "pop3.support.util"
local H = U.H
local client = require "parley.pop3.client"
local smtp_client = require "parley.smtp.client"

local MSG = "From: x@ext.org\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\n.first line starts with a dot\r\nbye\r\n"

-- the message without the trace headers the SMTP server adds
local function strip_trace(m)
  m = m:gsub("^Return%-Path:[^\r\n]*\r\n", "")
  while m:match("^Received:") do
    m = m:gsub("^[^\r\n]*\r\n", "", 1)
    while m:match("^[ \t]") do m = m:gsub("^[^\r\n]*\r\n", "", 1) end
  end
  return m
end

local function imap_available()
  local ok, m = pcall(require, "parley.imap.server")
  return ok and type(m) == "table" and type(m.serve) == "function"
end

describe("parley serve pop3", function()
  local root, child
  before_each(function() root = U.tmpdir("cli") end)
  after_each(function()
    if child then child.stop() child = nil end
    U.rmrf(root)
  end)

  it("prints its address, serves the Maildir and stops on TERM", function()
    local store = U.store(root .. "/md")
    store:deliver("alice", MSG)
    U.users_file(root .. "/users")
    child = U.child(("bin/parley serve pop3 --listen 127.0.0.1:0 --maildir %s --users %s")
      :format(U.q(root .. "/md"), U.q(root .. "/users")))
    assert.is_number(child.ports.pop3)
    H.run(function()
      local c = assert(client.connect("127.0.0.1", child.port))
      assert(c:login("alice", "wonderland"))
      assert.are.equal(MSG, (c:retr(1)))
      c:quit()
    end)
    local out = child.stop()
    -- nothing on stderr but the shutdown notice
    assert.are.equal("", (out:gsub("[^\n]*: TERM received, shutting down\n", "")))
  end)

  it("exits with status 2 and a message when --users is missing", function()
    local out, ok = U.sh(("cd %s && lua5.4 bin/parley serve pop3 --maildir %s; echo status=$?")
      :format(U.q(H.root), U.q(root .. "/md")))
    assert.truthy(out:find("--users FILE is required", 1, true), out)
    assert.truthy(out:find("status=2", 1, true), out)
    assert.is_true(ok)
  end)

  it("prints its options with --help", function()
    local out = U.sh(("cd %s && lua5.4 bin/parley serve pop3 --help"):format(U.q(H.root)))
    assert.truthy(out:find("--listen ADDR", 1, true), out)
  end)
end)

describe("parley serve mail", function()
  local root, child
  before_each(function()
    root = U.tmpdir("mail")
    U.users_file(root .. "/users")
  end)
  after_each(function()
    if child then child.stop() child = nil end
    U.rmrf(root)
  end)

  it("delivers mail taken by SMTP to POP3 at once, over one store", function()
    child = U.child(("bin/parley serve mail --maildir %s --users %s --domain example.org --smtp 127.0.0.1:0 --pop3 127.0.0.1:0")
      :format(U.q(root .. "/md"), U.q(root .. "/users")), 2)
    H.run(function()
      assert(smtp_client.send{ server = "127.0.0.1:" .. child.ports.smtp, from = "x@ext.org",
                               to = "alice@example.org", message = MSG })
      local c = assert(client.connect("127.0.0.1", child.ports.pop3))
      assert(c:login("alice", "wonderland"))
      local n, octets = c:stat()
      assert.are.equal(1, n)
      local got = assert(c:retr(1))
      assert.are.equal(octets, #got)
      assert.are.equal(MSG, strip_trace(got))
      assert(c:dele(1))
      assert(c:quit())
    end)
    assert.are.same({}, U.files(root .. "/md/alice/new"))
    assert.are.same({}, U.files(root .. "/md/alice/cur"))
  end)

  it("runs submission with AUTH required", function()
    child = U.child(("bin/parley serve mail --maildir %s --users %s --domain example.org --submission 127.0.0.1:0 --pop3 127.0.0.1:0")
      :format(U.q(root .. "/md"), U.q(root .. "/users")), 2)
    H.run(function()
      local r, err = smtp_client.send{ server = "127.0.0.1:" .. child.ports.submission,
                                       from = "bob@example.org", to = "alice@example.org", message = MSG }
      assert.is_nil(r, "submission without AUTH was accepted")
      assert.truthy(err)
      assert(smtp_client.send{ server = "127.0.0.1:" .. child.ports.submission, auth = "bob:builder",
                               from = "bob@example.org", to = "alice@example.org", message = MSG })
      local c = assert(client.connect("127.0.0.1", child.ports.pop3))
      assert(c:auth_plain("alice", "wonderland"))
      assert.are.equal(1, (c:stat()))
      c:quit()
    end)
  end)

  it("serves IMAP with --imap when parley.imap.server exists, else says why and exits 1", function()
    local cmd = ("bin/parley serve mail --maildir %s --users %s --pop3 127.0.0.1:0 --imap 127.0.0.1:0")
      :format(U.q(root .. "/md"), U.q(root .. "/users"))
    if imap_available() then
      child = U.child(cmd, 2)
      assert.is_number(child.ports.imap)
      H.run(function()
        local s = assert(require("parley").connect("127.0.0.1", child.ports.imap, { timeout = 5 }))
        assert.matches("^%* OK", s:receive("l"))
        s:close()
      end)
    else
      local out = U.sh(("cd %s && lua5.4 %s; echo status=$?"):format(U.q(H.root), cmd))
      assert.truthy(out:find("IMAP server (parley.imap.server) is not available", 1, true), out)
      assert.truthy(out:find("status=1", 1, true), out)
    end
  end)
end)

describe("parley serve mail with SMTP and IMAP", function()
  local root, child
  before_each(function()
    root = U.tmpdir("idle")
    U.users_file(root .. "/users")
  end)
  after_each(function()
    if child then child.stop() child = nil end
    U.rmrf(root)
  end)

  it("tells an IMAP IDLE client of SMTP-delivered mail within 0.2 s, every time", function()
    if not imap_available() then pending("parley.imap.server is not installed") return end
    child = U.child(("bin/parley serve mail --maildir %s --users %s --domain example.org --smtp 127.0.0.1:0 --imap 127.0.0.1:0")
      :format(U.q(root .. "/md"), U.q(root .. "/users")), 2)
    H.run(function()
      local parley = require "parley"
      local c = assert(require("parley.imap.client").connect("127.0.0.1:" .. child.ports.imap, { timeout = 5 }))
      assert(c:login("alice", "wonderland"))
      assert(c:select("INBOX"))
      -- The IDLE poll alone (every 0.25 s) would meet 0.2 s now and then
      -- by luck; five deliveries in a row need the on_delivered hook.
      for n = 1, 5 do
        local sent_at
        local got = {}
        parley.spawn(function()
          parley.sleep(0.05)
          sent_at = parley.now()
          assert(smtp_client.send{ server = "127.0.0.1:" .. child.ports.smtp, from = "x@ext.org",
                                   to = "alice@example.org", message = MSG })
        end)
        assert(c:idle(function(r)
          if r.type == "EXISTS" then got.number, got.at = r.number, parley.now() return true end
        end, 5))
        assert.are.equal(n, got.number)
        assert.is_truthy(sent_at)
        assert.is_true(got.at - sent_at < 0.2, ("delivery %d seen after %.3f s"):format(n, got.at - sent_at))
      end
      c:logout()
    end)
  end)
end)

describe("examples/mailserver.lua", function()
  it("takes mail by SMTP that POP3 hands out at once", function()
    local root = U.tmpdir("example")
    local n = imap_available() and 3 or 2
    local child = U.child(("examples/mailserver.lua %s 127.0.0.1:0 127.0.0.1:0 127.0.0.1:0")
      :format(U.q(root .. "/md")), n)
    local ok, err = pcall(H.run, function()
      -- its certificate is self-signed and made at start: not verified here
      assert(smtp_client.send{ server = "127.0.0.1:" .. child.ports.smtp, from = "x@ext.org",
                               to = "alice@example.org", message = MSG, tls = "required", insecure = true })
      local c = assert(client.connect("127.0.0.1", child.ports.pop3, { tls = "required", insecure = true }))
      assert.is_false(c:tlsinfo().verified)
      assert(c:login("alice", "wonderland"))
      assert.are.equal(MSG, strip_trace(assert(c:retr(1))))
      assert.are.equal(#assert(c:retr(1)), (c:list(1)))
      c:quit()
    end)
    local out = child.stop()
    U.rmrf(root)
    assert(ok, err)
    assert.are.equal("", out)   -- TERM stopped every server cleanly
  end)
end)
