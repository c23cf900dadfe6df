-- POP3 over TLS: STLS (RFC 2595 4) in our server and client, POP3S
-- (RFC 8314), the cleartext password policy, and the bad inputs of issue
-- 10 (pipelined STLS, a server that talks past its +OK, a stripped
-- capability, bad certificates).
local parley = require "parley"
local tls = require "parley.tls"
local H = require "helper"
local U = require "pop3.support.util"
local certs = require "tls.support.certs"
local client = require "parley.pop3.client"

local c, ca

setup(function()
  c = certs.make()
  ca = assert(tls.context{ ca = c.cert })
end)
teardown(function() certs.remove(c) end)

before_each(H.fd_snapshot)
after_each(H.fd_check)

local function with_server(extra, fn)
  local o = { tls = { cert = c.cert, key = c.key } }
  for k, v in pairs(extra or {}) do o[k] = v end
  local root
  H.run(function()
    local srv, _
    srv, _, root = U.server(o)
    local ok, err = pcall(fn, srv)
    srv:close(0)
    if not ok then error(err, 0) end
  end, 30)
  U.rmrf(root)
end

local function fake(script, fn)
  H.run(function()
    local srv = assert(parley.serve{ listen = "127.0.0.1:0", signals = false, timeout = 5,
      handler = script })
    local ok, err = pcall(fn, srv)
    srv:close(0)
    if not ok then error(err, 0) end
  end, 30)
end

local function capa(r)
  assert.matches("^%+OK", r:cmd("CAPA"))
  return r:body()
end

describe("POP3 server STLS", function()
  it("lists STLS but not USER or SASL in cleartext when passwords need TLS, and both after STLS", function()
    with_server({ allow_plaintext_auth = false }, function(srv)
      local r = U.raw(srv.port)
      local before = capa(r)
      assert.truthy(before:find("STLS\r\n", 1, true))
      assert.falsy(before:find("USER\r\n", 1, true))
      assert.falsy(before:find("SASL", 1, true))
      assert.are.equal("+OK Begin TLS negotiation", r:cmd("STLS"))
      assert(r.c:starttls(ca, { servername = "localhost" }))
      local after = capa(r)
      assert.falsy(after:find("STLS", 1, true))
      assert.truthy(after:find("USER\r\n", 1, true))
      assert.truthy(after:find("SASL PLAIN\r\n", 1, true))
      assert.matches("^%-ERR command not permitted when TLS active", r:cmd("STLS"))
      assert.matches("^%+OK alice has 0 messages", r:login())
      assert.matches("^%-ERR .*already logged in", r:cmd("STLS"))
      r:close()
    end)
  end)

  it("refuses USER, PASS and AUTH PLAIN in cleartext with -ERR [AUTH] and still takes APOP", function()
    with_server({ allow_plaintext_auth = false }, function(srv)
      local r = U.raw(srv.port)
      assert.matches("^%-ERR %[AUTH%] Plaintext authentication disallowed", r:cmd("USER alice"))
      assert.matches("^%-ERR %[AUTH%]", r:cmd("PASS wonderland"))
      assert.matches("^%-ERR %[AUTH%]", r:cmd("AUTH PLAIN AGFsaWNlAHdvbmRlcmxhbmQ="))
      local ts = r.greeting:match("(<.*>)")
      local digest = require("parley.pop3.server").apop_digest(ts, "wonderland")
      assert.matches("^%+OK alice has", r:cmd("APOP alice " .. digest))
      r:close()
    end)
  end)

  it("answers STLS with -ERR when it has no certificate", function()
    with_server({ tls = false }, function(srv)
      local r = U.raw(srv.port)
      assert.falsy(capa(r):find("STLS", 1, true))
      assert.are.equal("-ERR STLS not available", r:cmd("STLS"))
      r:close()
    end)
  end)

  it("closes without answering a command pipelined after STLS in the same segment", function()
    with_server({}, function(srv)
      local r = U.raw(srv.port)
      r:send("STLS\r\nUSER alice\r\n")
      assert.are.equal("+OK Begin TLS negotiation", r:line())
      local line, err = r:line()
      assert.is_nil(line)
      assert.are.equal("closed", err)
      r:close()
    end)
  end)

  it("serves POP3S on its implicit-TLS listener", function()
    with_server({ listen_tls = "127.0.0.1:0", allow_plaintext_auth = false }, function(srv)
      local cl = assert(client.connect("127.0.0.1", srv.tls_port, { tls = "implicit", tls_ctx = ca }))
      assert.is_true(cl:tlsinfo().verified)
      assert(cl:login("alice", "wonderland"))
      assert.are.same({ 0, 0 }, { cl:stat() })
      assert(cl:quit())
    end)
  end)
end)

describe("POP3 client tls option", function()
  it("upgrades with STLS and asks CAPA again", function()
    with_server({ allow_plaintext_auth = false }, function(srv)
      local cl = assert(client.connect("127.0.0.1", srv.port, { tls = "required", tls_ctx = ca }))
      assert.are.equal("TLSv1.3", cl:tlsinfo().version)
      assert.is_nil(cl.caps.STLS)
      assert.is_true(cl.caps.USER)
      assert(cl:login("alice", "wonderland"))
      assert(cl:quit())
    end)
  end)

  it("goes on in cleartext with tls = \"starttls\" and fails with \"required\" when STLS is stripped", function()
    with_server({ tls = false }, function(srv)
      local cl = assert(client.connect("127.0.0.1", srv.port, { tls = "starttls", tls_ctx = ca }))
      assert.is_nil(cl:tlsinfo())
      assert(cl:quit())
      local none, err = client.connect("127.0.0.1", srv.port, { tls = "required", tls_ctx = ca })
      assert.is_nil(none)
      assert.are.equal("server does not offer STLS", err)
    end)
  end)

  it("aborts when the server sends bytes after its +OK go-ahead", function()
    fake(function(conn)
      conn:send("+OK fake\r\n")
      assert(conn:receive("l"))
      conn:send("+OK\r\nSTLS\r\n.\r\n")
      assert(conn:receive("l"))
      conn:send("+OK go ahead\r\n+OK injected\r\n")
      conn:flush()
      conn:receive("l")
    end, function(srv)
      local cl, err = client.connect("127.0.0.1", srv.port, { tls = "required", tls_ctx = ca, timeout = 5 })
      assert.is_nil(cl)
      assert.are.equal("data after starttls", err)
    end)
  end)

  it("refuses a self-signed certificate unless insecure, and an expired one", function()
    with_server({}, function(srv)
      local cl, err = client.connect("127.0.0.1", srv.port, { tls = "required" })
      assert.is_nil(cl)
      assert.matches("certificate verify failed: self%-signed certificate", err)
      cl = assert(client.connect("127.0.0.1", srv.port, { tls = "required", insecure = true }))
      assert.is_false(cl:tlsinfo().verified)
      assert(cl:quit())
    end)
    with_server({ tls = { cert = c.expired_cert, key = c.expired_key } }, function(srv)
      local cl, err = client.connect("127.0.0.1", srv.port, { tls = "required", ca = c.expired_cert })
      assert.is_nil(cl)
      assert.matches("certificate has expired", err)
    end)
  end)

  it("times out on a handshake that stalls", function()
    fake(function(conn)
      conn:send("+OK fake\r\n")
      assert(conn:receive("l"))
      conn:send("+OK\r\nSTLS\r\n.\r\n")
      assert(conn:receive("l"))
      conn:send("+OK go ahead\r\n")
      conn:flush()
      parley.sleep(2)
    end, function(srv)
      local cl, err = client.connect("127.0.0.1", srv.port, { tls = "required", tls_ctx = ca, timeout = 0.3 })
      assert.is_nil(cl)
      assert.are.equal("timeout", err)
    end)
  end)
end)
