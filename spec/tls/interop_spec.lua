-- #interop: third-party TLS stacks against ours. openssl s_client and
-- python3's ssl module talk to our server (in a child process, since
-- they block); our client talks to openssl s_server.
local parley = require "parley"
local tls = require "parley.tls"
local H = require "helper"
local C = require "support.child"
local certs = require "tls.support.certs"

local c

setup(function() c = certs.make() end)
teardown(function() certs.remove(c) end)

before_each(H.fd_snapshot)
after_each(H.fd_check)

local q = C.quote

local function run(cmd)
  local fh = assert(io.popen("timeout 30 " .. cmd .. " 2>&1", "r"))
  local out = fh:read("a")
  local _, how, code = fh:close()
  return out, how, code
end

describe("#interop openssl s_client against our server", function()
  it("verifies our certificate, negotiates ALPN and gets its line echoed", function()
    local srv = H.child("../tls/support/echo_server.lua", c.cert, c.key)
    local out = run(("sh -c %s"):format(q(
      ("(echo hello-over-tls; sleep 0.5) | openssl s_client -connect 127.0.0.1:%d -servername localhost " ..
       "-CAfile %s -verify_return_error -verify_hostname localhost -alpn http/1.1")
       :format(srv.port, q(c.cert)))))
    srv:kill()
    srv:cleanup()
    assert.matches("Verify return code: 0 %(ok%)", out)
    assert.matches("ALPN protocol: http/1.1", out)
    assert.matches("\nhello%-over%-tls\n", out)
  end)

  it("presents a client certificate our server verifies", function()
    local srv = H.child("../tls/support/echo_server.lua", c.cert, c.key, c.client_cert)
    local out = run(("sh -c %s"):format(q(
      ("(printf 'tlsinfo\\n'; sleep 0.5) | openssl s_client -connect 127.0.0.1:%d -servername localhost " ..
       "-CAfile %s -cert %s -key %s")
       :format(srv.port, q(c.cert), q(c.client_cert), q(c.client_key)))))
    local refused = run(("sh -c %s"):format(q(
      ("(printf 'tlsinfo\\n'; sleep 0.5) | openssl s_client -connect 127.0.0.1:%d -CAfile %s")
       :format(srv.port, q(c.cert)))))
    srv:kill()
    srv:cleanup()
    assert.matches("TLSv1.3 localhost false CN=client", out, 1, true)
    assert.matches("certificate required", refused)
  end)
end)

describe("#interop python3 ssl against our server", function()
  it("echoes 2 MB intact and resumes a session", function()
    local srv = H.child("../tls/support/echo_server.lua", c.cert, c.key)
    local script = [[
import hashlib, os, socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
def connect(session=None):
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    return ctx.wrap_socket(raw, server_hostname="localhost", session=session)
s = connect()
data = os.urandom(2 * 1024 * 1024)
s.sendall(data)
got = bytearray()
while len(got) < len(data):
    chunk = s.recv(65536)
    if not chunk: break
    got += chunk
print("echo", hashlib.sha256(data).hexdigest() == hashlib.sha256(got).hexdigest(), s.version())
s2 = connect(session=s.session)
s2.sendall(b"tlsinfo\n")
print("reuse", s2.session_reused, s2.recv(200).decode().strip())
s2.close(); s.close()
]]
    local path = H.write(c.dir .. "/client.py", script)
    local out = run(("python3 %s %d %s"):format(q(path), srv.port, q(c.cert)))
    srv:kill()
    srv:cleanup()
    assert.matches("echo True TLSv1.3", out, 1, true)
    assert.matches("reuse True TLSv1.3 localhost true -", out, 1, true)
  end)
end)

describe("#interop our client against openssl s_server", function()
  it("verifies it, agrees on ALPN and exchanges lines", function()
    local srv = C.spawn(("openssl s_server -accept 127.0.0.1:0 -cert %s -key %s -rev -naccept 1 -alpn http/1.1")
      :format(q(c.rsa_cert), q(c.rsa_key)))
    local ok, err = pcall(H.run, function()
      local ctx = assert(tls.context{ ca = c.rsa_cert, alpn = { "http/1.1" } })
      local s = assert(parley.connect("localhost", srv.port, { tls = ctx, timeout = 10 }))
      local info = s:tlsinfo()
      assert.is_true(info.verified)
      assert.equal("http/1.1", info.alpn)
      s:send("parley\n")
      local line = assert(s:receive_until("\n"))
      assert.equal("yelrap", line)
      s:close()
    end)
    srv:stop()
    assert(ok, err)
  end)

  it("refuses it unverified when the ca is not given", function()
    local srv = C.spawn(("openssl s_server -accept 127.0.0.1:0 -cert %s -key %s -rev -naccept 1")
      :format(q(c.rsa_cert), q(c.rsa_key)))
    local ok, err = pcall(H.run, function()
      local s, cerr = parley.connect("localhost", srv.port, { tls = true, timeout = 10 })
      assert.is_nil(s)
      assert.equal("certificate verify failed: self-signed certificate", cerr)
    end)
    srv:stop()
    assert(ok, err)
  end)
end)
