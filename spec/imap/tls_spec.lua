-- IMAP over TLS: STARTTLS (RFC 3501 §6.2.1, RFC 2595) and IMAPS (RFC
-- 8314) in our server and client, LOGINDISABLED / PRIVACYREQUIRED in
-- cleartext, and the bad inputs of issue 10 (pipelined STARTTLS, a server
-- that talks past its OK, a stripped capability, PREAUTH in cleartext,
-- bad certificates, a stalled handshake); interop with imaplib, curl,
-- openssl s_client and Dovecot with TLS.
local parley = require "parley"
local tls = require "parley.tls"
local H = require "helper"
local E = require "imap.support.env"
local TS = require "imap.support.tls"
local certs = require "tls.support.certs"
local client = require "parley.imap.client"

local c, ca

setup(function()
  c = certs.make()
  ca = assert(tls.context{ ca = c.cert })
end)
teardown(function() certs.remove(c) end)

local store
before_each(function()
  H.fd_snapshot()
  local _
  _, store = E.store()
  assert(store:deliver("alice", "Subject: one\r\n\r\nfirst\r\n"))
end)
after_each(function()
  E.cleanup()
  H.fd_check()
end)

local function with_server(extra, fn)
  local o = { tls = { cert = c.cert, key = c.key } }
  for k, v in pairs(extra or {}) do o[k] = v end
  if o.tls == false then o.tls = nil end
  H.run(function()
    local srv = E.server(store, o)
    local ok, err = pcall(fn, srv)
    srv:close(0)
    if not ok then error(err, 0) end
  end, 30)
end

local fake = H.fake_server   -- a scripted server (a fake, or one that misbehaves)

local function caps_of(r)
  local lines, t = r:cmd("c CAPABILITY")
  assert.matches("^c OK", t)
  return " " .. assert(E.find(lines, "^%* CAPABILITY ")):sub(14) .. " "
end

local function addr(port) return "127.0.0.1:" .. port end

describe("IMAP server STARTTLS", function()
  it("lists STARTTLS and LOGINDISABLED in cleartext when passwords need TLS, and AUTH=PLAIN after", function()
    with_server({ allow_plaintext_auth = false }, function(srv)
      local r = E.raw(srv.port)
      assert.matches("STARTTLS LOGINDISABLED%]", r.greeting)
      local before = caps_of(r)
      assert.truthy(before:find(" STARTTLS ", 1, true))
      assert.truthy(before:find(" LOGINDISABLED ", 1, true))
      assert.falsy(before:find("AUTH=", 1, true))
      local lines, t = r:cmd("s STARTTLS")
      assert.same({}, lines)
      assert.equal("s OK begin TLS negotiation now", t)
      assert(r.conn:starttls(ca, { servername = "localhost" }))
      local after = caps_of(r)
      assert.falsy(after:find("STARTTLS", 1, true))
      assert.falsy(after:find("LOGINDISABLED", 1, true))
      assert.truthy(after:find(" AUTH=PLAIN ", 1, true))
      lines, t = r:cmd("s2 STARTTLS")
      assert.same({}, lines)
      assert.equal("s2 BAD TLS already active", t)
      r:login_select()
      r:close()
    end)
  end)

  it("refuses LOGIN and AUTHENTICATE PLAIN in cleartext with NO [PRIVACYREQUIRED]", function()
    with_server({ allow_plaintext_auth = false }, function(srv)
      local r = E.raw(srv.port)
      local _, t = r:cmd("a LOGIN alice pw")
      assert.matches("^a NO %[PRIVACYREQUIRED%] plaintext authentication disallowed", t)
      -- refused before the continuation: the password is never asked for
      _, t = r:cmd("b AUTHENTICATE PLAIN")
      assert.matches("^b NO %[PRIVACYREQUIRED%]", t)
      _, t = r:cmd("c AUTHENTICATE PLAIN AGFsaWNlAHB3")
      assert.matches("^c NO %[PRIVACYREQUIRED%]", t)
      r:close()
    end)
  end)

  it("keeps AUTH=PLAIN for a loopback peer in cleartext by default, beside STARTTLS", function()
    with_server({}, function(srv)
      local r = E.raw(srv.port)
      assert.matches("STARTTLS AUTH=PLAIN%]", r.greeting)
      r:login_select()
      -- STARTTLS is a not-authenticated command (RFC 3501 §6.2.1)
      assert.falsy(caps_of(r):find("STARTTLS", 1, true))
      local _, t = r:cmd("s STARTTLS")
      assert.matches("^s BAD already authenticated", t)
      r:close()
    end)
  end)

  it("answers STARTTLS with BAD when it has no certificate", function()
    with_server({ tls = false }, function(srv)
      local r = E.raw(srv.port)
      assert.falsy(caps_of(r):find("STARTTLS", 1, true))
      local _, t = r:cmd("s STARTTLS")
      assert.equal("s BAD STARTTLS not available", t)
      r:close()
    end)
  end)

  it("closes without answering a command pipelined after STARTTLS in the same segment", function()
    with_server({}, function(srv)
      local r = E.raw(srv.port)
      r:send("s STARTTLS\r\nn NOOP\r\n")
      assert.equal("s OK begin TLS negotiation now", r:line())
      local line, err = r:line()
      assert.is_nil(line)
      assert.equal("closed", err)
      r:close()
    end)
  end)

  it("records TLS started on the transcript after STARTTLS", function()
    local lines = {}
    with_server({ transcript = function(l) lines[#lines + 1] = l end }, function(srv)
      local cl = assert(client.connect(addr(srv.port), { tls = "required", tls_ctx = ca }))
      assert(cl:logout())
    end)
    local events = {}
    for _, e in ipairs(lines) do
      if e.dir == "*" then events[#events + 1] = e.text end
    end
    local text = table.concat(events, "\n")
    assert.matches("TLS started %(TLSv1%.3, [%w_-]+%)", text)
  end)

  it("serves IMAPS on its implicit-TLS listener", function()
    with_server({ listen_tls = "127.0.0.1:0", allow_plaintext_auth = false }, function(srv)
      assert.is_number(srv.tls_port)
      assert.are_not.equal(srv.port, srv.tls_port)
      local cl = assert(client.connect(addr(srv.tls_port), { tls = "implicit", tls_ctx = ca }))
      assert.is_true(cl:tlsinfo().verified)
      assert.is_nil(cl.caps.STARTTLS)
      assert.is_true(cl.caps["AUTH=PLAIN"])
      assert(cl:login("alice", "pw"))
      local box = assert(cl:select("INBOX"))
      assert.equal(1, box.exists)
      assert(cl:logout())
    end)
  end)
end)

describe("IMAP client tls option", function()
  it("upgrades with STARTTLS, forgets the cleartext capabilities and asks again", function()
    with_server({ allow_plaintext_auth = false }, function(srv)
      local cl = assert(client.connect(addr(srv.port), { tls = "required", tls_ctx = ca }))
      assert.equal("TLSv1.3", cl:tlsinfo().version)
      assert.is_true(cl:tlsinfo().verified)
      assert.is_nil(cl.caps.STARTTLS)
      assert.is_nil(cl.caps.LOGINDISABLED)
      assert.is_true(cl.caps["AUTH=PLAIN"])
      assert(cl:login("alice", "pw"))
      assert.equal(1, assert(cl:select("INBOX")).exists)
      assert(cl:logout())
    end)
  end)

  it("does not send LOGIN to a server that lists LOGINDISABLED", function()
    with_server({ allow_plaintext_auth = false }, function(srv)
      local cl = assert(client.connect(addr(srv.port)))
      local ok, err = cl:login("alice", "pw")
      assert.is_nil(ok)
      assert.matches("LOGINDISABLED", err)
      assert.equal(0, cl.n)   -- nothing was sent
      assert(cl:logout())
    end)
  end)

  it("goes on in cleartext with tls = \"starttls\" and fails with \"required\" when STARTTLS is missing", function()
    with_server({ tls = false }, function(srv)
      local cl = assert(client.connect(addr(srv.port), { tls = "starttls", tls_ctx = ca }))
      assert.is_nil(cl:tlsinfo())
      assert(cl:login("alice", "pw"))
      assert(cl:logout())
      local none, err = client.connect(addr(srv.port), { tls = "required", tls_ctx = ca })
      assert.is_nil(none)
      assert.equal("server does not offer STARTTLS", err)
    end)
  end)

  it("fails with tls = \"required\" when a man in the middle strips STARTTLS from the capabilities", function()
    fake(function(conn)
      conn:send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] stripped\r\n")
      local line = conn:receive("l")
      if line then conn:send("* BYE\r\n" .. line:match("^(%S+)") .. " OK bye\r\n") end
      conn:flush()
    end, function(srv)
      local cl, err = client.connect(addr(srv.port), { tls = "required", tls_ctx = ca, timeout = 5 })
      assert.is_nil(cl)
      assert.equal("server does not offer STARTTLS", err)
    end)
  end)

  it("refuses a PREAUTH greeting on a cleartext connection with tls = \"required\"", function()
    with_server({ preauth = "alice" }, function(srv)
      local cl, err = client.connect(addr(srv.port), { tls = "required", tls_ctx = ca })
      assert.is_nil(cl)
      assert.equal("PREAUTH greeting on a cleartext connection", err)
      cl = assert(client.connect(addr(srv.port), { tls = "starttls", tls_ctx = ca }))
      assert.is_nil(cl:tlsinfo())
      assert.equal("auth", cl.state)
      assert(cl:logout())
    end)
  end)

  it("aborts when the server sends bytes after its STARTTLS go-ahead", function()
    fake(function(conn)
      conn:send("* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] fake\r\n")
      local line = assert(conn:receive("l"))
      conn:send(line:match("^(%S+)") .. " OK begin\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n")
      conn:flush()
      conn:receive("l")
    end, function(srv)
      local cl, err = client.connect(addr(srv.port), { tls = "required", tls_ctx = ca, timeout = 5 })
      assert.is_nil(cl)
      assert.equal("data after starttls", err)
    end)
  end)

  it("refuses self-signed, expired and wrong-host certificates unless told otherwise", function()
    with_server({}, function(srv)
      local cl, err = client.connect(addr(srv.port), { tls = "required" })
      assert.is_nil(cl)
      assert.matches("certificate verify failed: self%-signed certificate", err)
      cl = assert(client.connect(addr(srv.port), { tls = "required", insecure = true }))
      assert.is_false(cl:tlsinfo().verified)
      assert(cl:logout())
      cl = assert(client.connect(addr(srv.port), { tls = "required", ca = c.cert }))
      assert.is_true(cl:tlsinfo().verified)
      assert(cl:logout())
    end)
    with_server({ tls = { cert = c.expired_cert, key = c.expired_key } }, function(srv)
      local cl, err = client.connect(addr(srv.port), { tls = "required", ca = c.expired_cert })
      assert.is_nil(cl)
      assert.matches("certificate has expired", err)
    end)
    with_server({ tls = { cert = c.other_cert, key = c.other_key } }, function(srv)
      local cl, err = client.connect(addr(srv.port), { tls = "required", ca = c.other_cert })
      assert.is_nil(cl)
      assert.matches("certificate verify failed", err)
      cl = assert(client.connect(addr(srv.port), { tls = "required", ca = c.other_cert,
        servername = "other.example" }))
      assert.is_true(cl:tlsinfo().verified)
      assert(cl:logout())
    end)
  end)

  it("times out on a handshake that stalls", function()
    fake(function(conn)
      conn:send("* OK [CAPABILITY IMAP4rev1 STARTTLS] fake\r\n")
      local line = assert(conn:receive("l"))
      conn:send(line:match("^(%S+)") .. " OK begin\r\n")
      conn:flush()
      parley.sleep(2)
    end, function(srv)
      local t0 = parley.now()
      local cl, err = client.connect(addr(srv.port), { tls = "required", tls_ctx = ca, timeout = 0.3 })
      assert.is_nil(cl)
      assert.equal("timeout", err)
      assert.is_true(parley.now() - t0 < 1.5)
    end)
  end)
end)

describe("IMAP over TLS with other programs #interop", function()
  local dir, port, tls_port, pid
  before_each(function()
    dir = E.T.new("imaptls")
  end)
  after_each(function()
    E.kill(pid)
    pid = nil
  end)

  local function start()
    port, tls_port, pid = TS.child(dir, c.cert, c.key)
    local s = require("parley.mail.maildir").open(dir .. "/mail")
    assert(s:deliver("alice", "Subject: interop\r\n\r\nhello over tls\r\n"))
  end

  local function py(code)
    local f = dir .. "/t.py"
    H.write(f, code)
    local fh = io.popen("timeout 60 python3 " .. f .. " 2>&1")
    local out = fh:read("a")
    local _, _, rc = fh:close()
    return out, rc
  end

  it("python3 imaplib: IMAP4_SSL and IMAP4.starttls with a context trusting the test CA", function()
    start()
    local out, rc = py(([[
import imaplib, ssl
ctx = ssl.create_default_context(cafile=%q)
m = imaplib.IMAP4_SSL("127.0.0.1", %d, ssl_context=ctx)
m.login("alice", "pw")
typ, data = m.select("INBOX")
print("ssl", typ, data[0].decode())
typ, data = m.fetch("1", "(BODY[TEXT])")
print("body", data[0][1].decode().strip())
m.logout()
m = imaplib.IMAP4("127.0.0.1", %d)
print("before", "STARTTLS" in m.capabilities)
m.starttls(ssl_context=ctx)
print("after", "STARTTLS" in m.capabilities, "AUTH=PLAIN" in m.capabilities)
m.login("alice", "pw")
print("starttls", m.select("INBOX")[0])
m.logout()
]]):format(c.cert, tls_port, port))
    assert.equal(0, rc, out)
    assert.matches("ssl OK 1", out)
    assert.matches("body hello over tls", out)
    assert.matches("before True", out)
    assert.matches("after False True", out)
    assert.matches("starttls OK", out)
  end)

  it("curl --ssl-reqd fetches a message over STARTTLS, and over imaps://", function()
    if not H.have("curl") then pending("curl is not installed") return end
    start()
    local fh = io.popen(("timeout 60 curl -s --ssl-reqd --cacert %s --user alice:pw " ..
      "'imap://localhost:%d/INBOX;UID=1' 2>&1"):format(c.cert, port))
    local out = fh:read("a")
    fh:close()
    assert.matches("hello over tls", out)
    fh = io.popen(("timeout 60 curl -s --cacert %s --user alice:pw " ..
      "'imaps://localhost:%d/INBOX;UID=1' 2>&1"):format(c.cert, tls_port))
    out = fh:read("a")
    fh:close()
    assert.matches("hello over tls", out)
  end)

  it("openssl s_client -starttls imap verifies the certificate and logs in", function()
    start()
    local fh = io.popen(("(printf 'a LOGIN alice pw\\r\\nb LOGOUT\\r\\n'; sleep 1) | timeout 60 " ..
      "openssl s_client -starttls imap -connect 127.0.0.1:%d -CAfile %s -verify_return_error " ..
      "-verify_hostname localhost -quiet 2>&1"):format(port, c.cert))
    local out = fh:read("a")
    fh:close()
    assert.matches("a OK %[CAPABILITY", out)
    assert.matches("b OK LOGOUT completed", out)
  end)

  it("our client against Dovecot with TLS: STARTTLS required, and IMAPS", function()
    local D = require "support.dovecot"
    if not D.available() then pending(D.why) return end
    local dv = TS.dovecot(dir, c.cert, c.key, { alice = "pw" })
    local ok, err = pcall(function()
      H.run(function()
        local cl = assert(client.connect(addr(dv.port), { tls = "required", ca = c.cert }))
        assert.is_true(cl:tlsinfo().verified)
        assert.is_nil(cl.caps.STARTTLS)
        assert(cl:login("alice", "pw"))
        assert(cl:select("INBOX"))
        assert(cl:logout())
        cl = assert(client.connect(addr(dv.tls_port), { tls = "implicit", ca = c.cert }))
        assert.is_true(cl:tlsinfo().verified)
        assert(cl:login("alice", "pw"))
        assert(cl:logout())
        local none, cerr = client.connect(addr(dv.port), { tls = "required" })
        assert.is_nil(none)
        assert.matches("certificate verify failed", cerr)
      end, 30)
    end)
    dv.stop()
    if not ok then error(err, 0) end
  end)
end)
