-- SMTP over TLS: STARTTLS (RFC 3207) in our server and client, the
-- implicit-TLS listener (RFC 8314), cleartext AUTH policy, and the bad
-- inputs of issue 10 (pipelined STARTTLS, a server that talks past its
-- go-ahead, a stripped capability, bad certificates, a stalled handshake).
local parley = require "parley"
local tls = require "parley.tls"
local H = require "helper"
local U = require "smtp.support.util"
local certs = require "tls.support.certs"
local client = require "parley.smtp.client"
local transcript = require "parley.transcript"

local c, ca

setup(function()
  c = certs.make()
  ca = assert(tls.context{ ca = c.cert })
end)
teardown(function() certs.remove(c) end)

before_each(H.fd_snapshot)
after_each(H.fd_check)

local MSG = "Subject: over tls\r\n\r\nhello\r\n"

local function tls_server(extra, fn)
  local o = { tls = { cert = c.cert, key = c.key }, users = U.users{ alice = "pw" } }
  for k, v in pairs(extra or {}) do o[k] = v end
  U.with_server(o, fn)
end

local fake = H.fake_server

local function send_to(port, o)
  local m = { server = "127.0.0.1:" .. port, from = "bob@example.org", to = "alice@example.org",
    message = MSG, timeouts = { command = 5, greeting = 5 } }
  for k, v in pairs(o) do m[k] = v end
  return client.send(m)
end

describe("SMTP server STARTTLS", function()
  it("offers STARTTLS, then after the handshake forgets EHLO and stops offering it", function()
    tls_server({ allow_plaintext_auth = false }, function(srv)
      local r = U.raw(srv.port)
      assert.are.equal(220, (r:reply()))
      local code, text = r:cmd("EHLO test")
      assert.are.equal(250, code)
      assert.truthy(text:find("250-STARTTLS", 1, true))
      assert.falsy(text:find("AUTH", 1, true))
      assert.are.same({ 220, "220 2.0.0 Ready to start TLS" }, { r:cmd("STARTTLS") })
      assert(r.c:starttls(ca, { servername = "localhost" }))
      -- RFC 3207 4.2: the EHLO before TLS is forgotten
      assert.are.equal(503, (r:cmd("MAIL FROM:<bob@example.org>")))
      code, text = r:cmd("EHLO test")
      assert.are.equal(250, code)
      assert.falsy(text:find("STARTTLS", 1, true))
      assert.truthy(text:find("AUTH PLAIN LOGIN", 1, true))
      assert.are.equal(503, (r:cmd("STARTTLS")))
      assert.are.equal(235, (r:cmd("AUTH PLAIN AGFsaWNlAHB3")))
      r:close()
    end)
  end)

  it("refuses AUTH before STARTTLS with 530 5.7.0 when cleartext passwords are not allowed", function()
    tls_server({ allow_plaintext_auth = false }, function(srv)
      local r = U.raw(srv.port):greet()
      local code, text = r:cmd("AUTH PLAIN AGFsaWNlAHB3")
      assert.are.equal(530, code)
      assert.are.equal("530 5.7.0 Must issue a STARTTLS command first", text)
      r:close()
    end)
  end)

  it("answers STARTTLS with 502 when it has no certificate and 501 when given an argument", function()
    U.with_server({}, function(srv)
      local r = U.raw(srv.port):greet()
      assert.are.equal(502, (r:cmd("STARTTLS")))
      r:close()
    end)
    tls_server({}, function(srv)
      local r = U.raw(srv.port):greet()
      assert.are.equal(501, (r:cmd("STARTTLS now")))
      r:close()
    end)
  end)

  it("closes without answering a command pipelined after STARTTLS in the same segment", function()
    tls_server({}, function(srv)
      local r = U.raw(srv.port):greet()
      r:send("STARTTLS\r\nNOOP\r\n")
      assert.are.equal(220, (r:reply()))
      local line, err = r.c:receive("l")
      assert.is_nil(line)
      assert.are.equal("closed", err)
      r:close()
    end)
  end)

  it("records the upgrade on the transcript", function()
    local lines = {}
    tls_server({ transcript = function(e) lines[#lines + 1] = transcript.format(e) end }, function(srv)
      assert(send_to(srv.port, { tls = "required", tls_ctx = ca }))
    end)
    local all = table.concat(lines, "\n")
    assert.matches("S: 220 2.0.0 Ready to start TLS\n[^\n]*TLS started %(TLSv1%.[23], [%w_%-]+%)", all)
  end)

  it("serves the same sessions on an implicit-TLS listener and marks Received with ESMTPSA", function()
    tls_server({ listen_tls = "127.0.0.1:0", allow_plaintext_auth = false }, function(srv, root)
      assert.is_number(srv.tls_port)
      local res = assert(send_to(srv.tls_port, { tls = "implicit", tls_ctx = ca, auth = "alice:pw" }))
      assert.are.same({ "alice@example.org" }, res.accepted)
      assert.truthy(U.delivered(root, "alice")[1]:find(" with ESMTPSA id ", 1, true))
      assert.are.equal(0, srv:connections())
    end)
  end)
end)

describe("SMTP client tls option", function()
  it("upgrades with STARTTLS, asks EHLO again and authenticates over TLS", function()
    tls_server({ allow_plaintext_auth = false }, function(srv, root)
      local cl = assert(client.connect("127.0.0.1:" .. srv.port, { tls = "required", tls_ctx = ca }))
      local info = cl:tlsinfo()
      assert.is_true(info.verified)
      assert.are.equal("CN=localhost", info.peer.subject)
      assert.is_nil(cl.caps.STARTTLS)
      assert.is_true(cl.caps.AUTH.PLAIN)
      assert(cl:auth("alice", "pw"))
      assert(cl:send{ from = "bob@example.org", to = "alice@example.org", message = MSG })
      cl:quit()
      assert.truthy(U.delivered(root, "alice")[1]:find(" with ESMTPSA id ", 1, true))
    end)
  end)

  it("goes on in cleartext with tls = \"starttls\" when the server offers no STARTTLS", function()
    U.with_server({}, function(srv)
      local cl = assert(client.connect("127.0.0.1:" .. srv.port, { tls = "starttls", tls_ctx = ca }))
      assert.is_nil(cl:tlsinfo())
      cl:quit()
    end)
  end)

  it("fails with tls = \"required\" when the STARTTLS capability is stripped", function()
    U.with_server({}, function(srv)
      local res, err = send_to(srv.port, { tls = "required", tls_ctx = ca })
      assert.is_nil(res)
      assert.are.equal("server does not offer STARTTLS", err)
    end)
  end)

  it("fails with tls = \"required\" when STARTTLS is advertised but refused", function()
    fake(function(conn)
      conn:send("220 fake ESMTP\r\n")
      assert(conn:receive("l"))
      conn:send("250-fake\r\n250 STARTTLS\r\n")
      assert(conn:receive("l"))
      conn:send("454 4.7.0 TLS not available due to temporary reason\r\n")
      conn:receive("l")
      conn:send("221 bye\r\n")
    end, function(srv)
      local res, err, reply = send_to(srv.port, { tls = "required", tls_ctx = ca })
      assert.is_nil(res)
      assert.matches("^454", err)
      assert.are.equal(454, reply.code)
    end)
  end)

  it("aborts when the server sends bytes after its 220 go-ahead", function()
    fake(function(conn)
      conn:send("220 fake ESMTP\r\n")
      assert(conn:receive("l"))
      conn:send("250-fake\r\n250 STARTTLS\r\n")
      assert(conn:receive("l"))
      conn:send("220 go ahead\r\n250-injected\r\n250 AUTH PLAIN\r\n")
      conn:flush()
      conn:receive("l")
    end, function(srv)
      local res, err = send_to(srv.port, { tls = "required", tls_ctx = ca })
      assert.is_nil(res)
      assert.are.equal("data after starttls", err)
    end)
  end)

  it("times out on a handshake that stalls", function()
    fake(function(conn)
      conn:send("220 fake ESMTP\r\n")
      assert(conn:receive("l"))
      conn:send("250-fake\r\n250 STARTTLS\r\n")
      assert(conn:receive("l"))
      conn:send("220 go ahead\r\n")
      conn:flush()
      parley.sleep(2)   -- never answers the ClientHello
    end, function(srv)
      local res, err = send_to(srv.port, { tls = "required", tls_ctx = ca,
        timeouts = { command = 0.3, greeting = 5 } })
      assert.is_nil(res)
      assert.are.equal("timeout", err)
    end)
  end)

  it("refuses self-signed, expired and wrong-host certificates unless told otherwise", function()
    local cases = {
      { cert = c.cert, key = c.key, opts = {}, err = "self%-signed certificate" },
      { cert = c.expired_cert, key = c.expired_key, opts = { ca = c.expired_cert }, err = "certificate has expired" },
      { cert = c.other_cert, key = c.other_key, opts = { ca = c.other_cert, servername = "localhost" },
        err = "hostname mismatch" },
    }
    for _, k in ipairs(cases) do
      U.with_server({ tls = { cert = k.cert, key = k.key } }, function(srv)
        local o = { tls = "required" }
        for f, v in pairs(k.opts) do o[f] = v end
        local res, err = send_to(srv.port, o)
        assert.is_nil(res)
        assert.matches("certificate verify failed: " .. k.err, err)
        o.insecure = true
        assert(send_to(srv.port, o))
      end)
    end
  end)

  it("checks the certificate against servername when it is given", function()
    tls_server({}, function(srv)
      local res, err = send_to(srv.port, { tls = "required", tls_ctx = ca, servername = "mail.example.net" })
      assert.is_nil(res)
      assert.matches("hostname mismatch", err)
      assert(send_to(srv.port, { tls = "required", tls_ctx = ca, servername = "localhost" }))
    end)
  end)

  it("raises on a tls option it does not know", function()
    assert.has_error(function() client.connect("127.0.0.1:1", { tls = "maybe" }) end,
      'tls must be "starttls", "required", "implicit" or false')
  end)
end)
