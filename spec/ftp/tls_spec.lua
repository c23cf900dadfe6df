-- FTP over TLS (RFC 4217): AUTH TLS, PBSZ, PROT, CCC, implicit FTPS,
-- data connections in TLS that must resume the control connection's
-- session, cleartext passwords refused; the client's tls policies; bad
-- input (pipelining behind AUTH TLS, bytes after 234, bad certificates,
-- stalled handshakes); interop with curl, lftp, python3 ftplib, openssl
-- s_client and vsftpd.
local parley = require "parley"
local tls = require "parley.tls"
local H = require "helper"
local F = require "ftp.support.ftp_helper"
local certs = require "tls.support.certs"
local ftp = require "parley.ftp"
local q = F.quote

local c        -- test certificates (spec/tls/support/certs.lua)
setup(function() c = certs.make() end)
teardown(function() certs.remove(c) end)

local function with_tls_server(opts, fn, limit)
  local o = { tls = { cert = c.cert, key = c.key }, users = { alice = { password = "secret", perms = "rwdmn" } } }
  for k, v in pairs(opts or {}) do o[k] = v end
  F.with_server(o, fn, limit)
end

local function client_ctx() return assert(tls.context{ ca = c.cert }) end

-- a raw control connection secured with AUTH TLS
local function raw_tls(port)
  local r = F.raw(port)
  local code = r:cmd("AUTH TLS")
  assert.equal(234, code)
  assert(r.conn:starttls(client_ctx(), { servername = "localhost" }))
  return r
end

-- EPSV on a raw connection: the data port
local function epsv(r)
  local code, text = r:cmd("EPSV")
  assert.equal(229, code, text)
  return require("parley.core").ftp.parse_epsv(text)
end

describe("ftp server: AUTH TLS (RFC 4217)", function()
  before_each(function() H.fd_snapshot() end)
  after_each(function() H.fd_check() end)

  it("lists AUTH TLS, PBSZ and PROT in FEAT only when it has a certificate", function()
    with_tls_server({}, function(srv)
      local r = F.raw(srv.port)
      local code, text = r:cmd("FEAT")
      assert.equal(211, code)
      assert.matches("\n AUTH TLS\n PBSZ\n PROT\n", text, 1, true)
      r:close()
    end)
    F.with_server({}, function(srv)
      local r = F.raw(srv.port)
      local _, text = r:cmd("FEAT")
      assert.is_nil(text:find("AUTH", 1, true))
      assert.same({ 502, "AUTH not available: this server has no TLS certificate." }, { r:cmd("AUTH TLS") })
      r:close()
    end)
  end)

  it("fails to start, naming the file, when the certificate cannot be read", function()
    H.run(function()
      local srv, err = ftp.server.serve{ listen = "127.0.0.1:0", root = "/tmp", signals = false,
        tls = { cert = c.dir .. "/missing.crt", key = c.key } }
      assert.is_nil(srv)
      assert.matches("missing.crt", err, 1, true)
      local ok, why = pcall(ftp.server.serve, { listen = "127.0.0.1:0", root = "/tmp", listen_tls = "127.0.0.1:0" })
      assert.is_false(ok)
      assert.matches("listen_tls needs tls = {cert =, key =} or tls_ctx", why, 1, true)
    end)
  end)

  it("answers AUTH TLS with 234 and starts the session over, as after REIN", function()
    with_tls_server({}, function(srv)
      local r = F.raw(srv.port)
      assert.equal(230, (r:login("alice", "secret")))
      assert.equal(250, (r:cmd("CWD sub")))
      assert.equal(200, (r:cmd("TYPE I")))
      assert.same({ 234, "Proceed with TLS negotiation (AUTH TLS)." }, { r:cmd("AUTH TLS") })
      assert(r.conn:starttls(client_ctx(), { servername = "localhost" }))
      assert.equal(530, (r:cmd("PWD")))   -- logged out (RFC 4217 section 4.2)
      assert.equal(230, (r:login("alice", "secret")))
      assert.same({ 257, '"/" is the current directory.' }, { r:cmd("PWD") })
      local _, status = r:cmd("STAT")
      assert.matches("TYPE: ASCII", status, 1, true)
      assert.matches("Control connection: TLS (TLSv1.", status, 1, true)
      assert.matches("data connections: cleartext (PROT C)", status, 1, true)
      assert.same({ 503, "TLS already active." }, { r:cmd("AUTH TLS") })
      r:close()
    end)
  end)

  it("takes AUTH SSL and AUTH TLS-C as AUTH TLS and refuses other mechanisms", function()
    with_tls_server({}, function(srv)
      for _, mech in ipairs{ "SSL", "tls-c" } do
        local r = F.raw(srv.port)
        assert.equal(234, (r:cmd("AUTH " .. mech)))
        assert(r.conn:starttls(client_ctx(), { servername = "localhost" }))
        assert.equal(200, (r:cmd("NOOP")))
        r:close()
      end
      local r = F.raw(srv.port)
      assert.same({ 504, "AUTH GSSAPI not supported: use AUTH TLS." }, { r:cmd("AUTH GSSAPI") })
      assert.equal(501, (r:cmd("AUTH")))
      r:close()
    end)
  end)

  it("follows RFC 4217 section 9 for PBSZ and PROT", function()
    with_tls_server({}, function(srv)
      local r = F.raw(srv.port)
      assert.same({ 503, "PBSZ needs AUTH TLS first." }, { r:cmd("PBSZ 0") })
      assert.same({ 503, "PROT needs AUTH TLS first." }, { r:cmd("PROT P") })
      r:close()
      r = raw_tls(srv.port)
      assert.same({ 503, "PROT needs PBSZ 0 first." }, { r:cmd("PROT P") })
      assert.equal(501, (r:cmd("PBSZ lots")))
      assert.same({ 200, "PBSZ=0" }, { r:cmd("PBSZ 1024") })   -- TLS is a stream: always 0
      assert.same({ 536, "PROT S not supported with TLS: use P or C." }, { r:cmd("PROT S") })
      assert.equal(536, (r:cmd("PROT E")))
      assert.same({ 504, "Unknown protection level X." }, { r:cmd("PROT X") })
      assert.equal(200, (r:cmd("PROT P")))
      assert.equal(200, (r:cmd("prot c")))
      r:close()
    end)
  end)

  it("refuses PROT C (534) and clear transfers (521) with require_data_tls", function()
    with_tls_server({ require_data_tls = true }, function(srv)
      local r = raw_tls(srv.port)
      assert.equal(230, (r:login("alice", "secret")))
      assert.equal(200, (r:cmd("PBSZ 0")))
      assert.same({ 534, "PROT C refused by policy: data connections must use TLS (PROT P)." },
        { r:cmd("PROT C") })
      epsv(r)
      local code, text = r:cmd("RETR hello.txt")
      assert.equal(521, code)
      assert.matches("PROT P", text, 1, true)
      r:close()
    end)
  end)

  it("refuses CCC: 533 in cleartext, 534 over TLS", function()
    with_tls_server({}, function(srv)
      local r = F.raw(srv.port)
      assert.same({ 533, "Control connection is not protected." }, { r:cmd("CCC") })
      r:close()
      r = raw_tls(srv.port)
      assert.same({ 534, "CCC refused: the control connection stays encrypted." }, { r:cmd("CCC") })
      assert.equal(200, (r:cmd("NOOP")))   -- still over TLS
      r:close()
    end)
  end)

  it("closes without answering a command pipelined behind AUTH TLS", function()
    with_tls_server({}, function(srv)
      local r = F.raw(srv.port)
      r.conn:send("AUTH TLS\r\nNOOP\r\n")
      assert.equal(234, (r:reply()))
      local line, err = r.conn:receive("l")
      assert.is_nil(line)
      assert.equal("closed", err)
      r:close()
    end)
  end)

  it("closes a connection whose handshake stalls, after tls_timeout", function()
    with_tls_server({ tls_timeout = 0.3, listen_tls = "127.0.0.1:0" }, function(srv)
      local r = F.raw(srv.port)
      assert.equal(234, (r:cmd("AUTH TLS")))
      local t0 = parley.now()
      assert.is_nil((r.conn:receive("l")))   -- closed by the server, not by our timeout of 10 s
      assert.is_true(parley.now() - t0 < 5)
      r:close()
      local s = assert(parley.connect("127.0.0.1", srv.tls_port, { timeout = 10 }))
      t0 = parley.now()
      assert.is_nil((s:receive("l")))
      assert.is_true(parley.now() - t0 < 5)
      s:close()
    end)
  end)

  it("serves implicit FTPS on listen_tls, the same sessions as the plain port", function()
    with_tls_server({ listen_tls = "127.0.0.1:0" }, function(srv, t)
      assert.is_number(srv.tls_port)
      assert.equal("127.0.0.1:" .. srv.tls_port, srv.tls_address)
      local s = assert(parley.connect("localhost", srv.tls_port, { tls = client_ctx(), timeout = 10 }))
      assert.equal("220 parley FTP server ready", s:receive("l"))
      s:send("USER alice\r\nPASS secret\r\n")
      assert.equal("331 Password required for alice.", s:receive("l"))
      assert.equal("230 User alice logged in.", s:receive("l"))
      s:close()
      local cl = assert(ftp.client.connect("localhost", srv.tls_port, { tls = "implicit", ca = c.cert, timeout = 10 }))
      assert(cl:login("alice", "secret"))
      assert.equal(F.read(t.root .. "/big.bin"), assert(cl:get("big.bin")))
      assert.equal(1, srv:connections())
      cl:quit()
    end)
  end)
end)

describe("ftp server: passwords in cleartext", function()
  before_each(function() H.fd_snapshot() end)
  after_each(function() H.fd_check() end)

  it("refuses USER in cleartext by policy and takes it over TLS", function()
    with_tls_server({ allow_plaintext_auth = false, anonymous = true }, function(srv)
      local r = F.raw(srv.port)
      assert.same({ 530, "Login in cleartext refused: use AUTH TLS first (the password would travel unencrypted)." },
        { r:cmd("USER alice") })
      assert.same({ 503, "Login with USER first." }, { r:cmd("PASS secret") })
      assert.equal(230, (r:login("anonymous", "me@")))   -- anonymous needs no secret
      r:close()
      r = raw_tls(srv.port)
      assert.equal(230, (r:login("alice", "secret")))
      r:close()
    end)
  end)

  it("says so when a server without TLS refuses a cleartext login", function()
    F.with_server({ allow_plaintext_auth = false, users = { bob = { password = "pw" } } }, function(srv)
      local r = F.raw(srv.port)
      assert.same({ 530, "Login in cleartext refused and this server has no TLS (allow_plaintext_auth)." },
        { r:cmd("USER bob") })
      r:close()
    end)
  end)

  it("accepts a cleartext login from a loopback peer by default", function()
    with_tls_server({}, function(srv)
      local r = F.raw(srv.port)
      assert.equal(230, (r:login("alice", "secret")))
      r:close()
    end)
  end)

  it("raises on a bad allow_plaintext_auth", function()
    assert.has_error(function()
      ftp.server.serve{ listen = "127.0.0.1:0", root = "/tmp", allow_plaintext_auth = "sometimes" }
    end, 'allow_plaintext_auth must be true, false or "loopback"')
  end)
end)

describe("ftp server: PROT P data connections", function()
  before_each(function() H.fd_snapshot() end)
  after_each(function() H.fd_check() end)

  -- logged in over TLS with PROT P; RETR on a fresh data connection
  local function retr_over(srv, session)
    local r = raw_tls(srv.port)
    assert.equal(230, (r:login("alice", "secret")))
    assert.equal(200, (r:cmd("PBSZ 0")))
    assert.equal(200, (r:cmd("PROT P")))
    assert.equal(200, (r:cmd("TYPE I")))
    local port = epsv(r)
    local d = assert(parley.connect("127.0.0.1", port, { timeout = 10 }))
    assert.equal(150, (r:cmd("RETR hello.txt")))
    assert(d:starttls(client_ctx(), { servername = "localhost", session = session and r.conn or nil }))
    local body = d:receive("a")
    local reused = d:tlsinfo().session_reused
    d:close()
    local code, text = r:reply()
    r:close()
    return code, text, body, reused
  end

  it("sends a file over a data connection that resumes the control session", function()
    with_tls_server({}, function(srv)
      local code, text, body, reused = retr_over(srv, true)
      assert.equal(226, code, text)
      assert.equal("hello, world\n", body)
      assert.is_true(reused)
    end)
  end)

  it("refuses a data connection that does not resume the control session with 522", function()
    with_tls_server({}, function(srv)
      local code, text, body = retr_over(srv, false)
      assert.equal(522, code)
      assert.equal("Data connection refused: TLS session reuse required "
        .. "(resume the control connection's TLS session).", text)
      assert.equal("", body)
    end)
  end)

  it("accepts a fresh data handshake with require_session_reuse = false", function()
    with_tls_server({ require_session_reuse = false }, function(srv)
      local code, _, body, reused = retr_over(srv, false)
      assert.equal(226, code)
      assert.equal("hello, world\n", body)
      assert.is_false(reused)
    end)
  end)

  it("answers 522 when the data connection speaks no TLS", function()
    with_tls_server({}, function(srv)
      local r = raw_tls(srv.port)
      assert.equal(230, (r:login("alice", "secret")))
      r:cmd("PBSZ 0")
      r:cmd("PROT P")
      local d = assert(parley.connect("127.0.0.1", epsv(r), { timeout = 10 }))
      assert.equal(150, (r:cmd("RETR hello.txt")))
      d:send("this is not a ClientHello\r\n")
      d:flush()
      local code, text = r:reply()
      assert.equal(522, code)
      assert.matches("^Data connection TLS negotiation failed: tls: ", text)
      d:close()
      r:close()
    end)
  end)

  it("answers 522 when the data connection never starts its handshake", function()
    with_tls_server({ tls_timeout = 0.3 }, function(srv)
      local r = raw_tls(srv.port)
      assert.equal(230, (r:login("alice", "secret")))
      r:cmd("PBSZ 0")
      r:cmd("PROT P")
      local d = assert(parley.connect("127.0.0.1", epsv(r), { timeout = 10 }))
      assert.equal(150, (r:cmd("RETR hello.txt")))
      assert.same({ 522, "Data connection TLS negotiation failed: timeout." }, { r:reply() })
      d:close()
      r:close()
    end)
  end)

  it("aborts a PROT P download on ABOR and keeps serving", function()
    with_tls_server({ rate = 200000 }, function(srv)
      local cl = assert(ftp.client.connect("localhost", srv.port, { tls = "required", ca = c.cert, timeout = 10 }))
      assert(cl:login("alice", "secret"))
      local got = 0
      local n, err = cl:get("big.bin", function(chunk) if chunk then got = got + #chunk end return 1 end,
        { progress = function(bytes) if bytes >= 65536 then return false end end })
      assert.is_nil(n)
      assert.equal("aborted", err)
      assert.is_true(got < 1048576)
      assert.equal("hello, world\n", assert(cl:get("hello.txt")))
      cl:quit()
    end)
  end)

  it("records TLS started on the control and data connections of a transcript", function()
    local events = {}
    with_tls_server({ transcript = function(e) if e.dir == "*" then events[#events + 1] = e.text end end },
      function(srv)
        local cl = assert(ftp.client.connect("localhost", srv.port, { tls = "required", ca = c.cert, timeout = 10 }))
        assert(cl:login("alice", "secret"))
        assert(cl:get("hello.txt"))
        cl:quit()
      end)
    local started = {}
    for _, e in ipairs(events) do
      if e:match("^TLS started %(TLSv1%.[23], [%w_-]+%)$") then started[#started + 1] = e end
    end
    assert.equal(2, #started, table.concat(events, "\n"))
  end)
end)

describe("ftp client: TLS", function()
  before_each(function() H.fd_snapshot() end)
  after_each(function() H.fd_check() end)

  it("secures the session with AUTH TLS, PBSZ 0 and PROT P, passive and active", function()
    local seen = {}
    with_tls_server({ allow_plaintext_auth = false,
      on_command = function(s, verb) seen[#seen + 1] = verb .. (s.tls and "+tls" or "") end },
      function(srv, t)
        for _, active in ipairs{ false, true } do
          local cl = assert(ftp.client.connect("localhost", srv.port,
            { tls = "explicit", ca = c.cert, timeout = 10, active = active }))
          local info = assert(cl:tlsinfo())
          assert.is_true(info.verified)
          assert(cl:login("alice", "secret"))
          assert.equal(F.read(t.root .. "/big.bin"), assert(cl:get("big.bin")))
          assert.equal(300000, assert(cl:put("up/tls.bin", H.random_bytes(300000, 7))))
          assert.equal(H.random_bytes(300000, 7), F.read(t.root .. "/up/tls.bin"))
          local names = {}
          for _, e in ipairs(assert(cl:mlsd())) do names[e.name] = true end
          assert.is_true(names["hello.txt"])
          assert.matches("data connections: TLS %(PROT P%)", assert(cl:stat()))
          cl:quit()
        end
      end)
    assert.same({ "AUTH", "PBSZ+tls", "PROT+tls", "USER+tls", "PASS+tls" }, { table.unpack(seen, 1, 5) })
  end)

  it("switches the data connections' protection with prot", function()
    with_tls_server({}, function(srv)
      local cl = assert(ftp.client.connect("localhost", srv.port, { tls = "required", ca = c.cert, timeout = 10 }))
      assert(cl:login("alice", "secret"))
      assert(cl:prot("C"))
      assert.matches("data connections: cleartext %(PROT C%)", assert(cl:stat()))
      assert.equal("hello, world\n", assert(cl:get("hello.txt")))
      assert(cl:prot("P"))
      assert.equal("hello, world\n", assert(cl:get("hello.txt")))
      assert.has_error(function() cl:prot("S") end, 'bad argument \'level\' ("P" or "C" expected)')
      cl:quit()
    end)
  end)

  it("goes on in cleartext with tls = explicit when the server has no TLS", function()
    F.with_server({}, function(srv)
      local cl = assert(ftp.client.connect("127.0.0.1", srv.port, { tls = "explicit", ca = c.cert, timeout = 10 }))
      assert.is_nil(cl:tlsinfo())
      assert(cl:login())
      assert.equal("hello, world\n", assert(cl:get("hello.txt")))
      cl:quit()
    end)
  end)

  it("keeps data connections clear with tls = explicit when PROT P is refused; required fails", function()
    local opts = { on_command = function(s, verb, arg)
      if verb == "PROT" and arg == "P" then s:reply(534, "PROT P refused by policy.") return true end
    end }
    with_tls_server(opts, function(srv)
      local cl = assert(ftp.client.connect("localhost", srv.port, { tls = "explicit", ca = c.cert, timeout = 10 }))
      assert.truthy(cl:tlsinfo())
      assert(cl:login("alice", "secret"))
      assert.matches("data connections: cleartext %(PROT C%)", assert(cl:stat()))
      assert.equal("hello, world\n", assert(cl:get("hello.txt")))
      cl:quit()
      local none, err, reply = ftp.client.connect("localhost", srv.port,
        { tls = "required", ca = c.cert, timeout = 10 })
      assert.is_nil(none)
      assert.equal("534 PROT P refused by policy.", err)
      assert.equal(534, reply.code)
    end)
  end)

  it("fails with tls = required when AUTH TLS is refused (stripped)", function()
    F.with_server({}, function(srv)
      local cl, err, reply = ftp.client.connect("127.0.0.1", srv.port, { tls = "required", ca = c.cert, timeout = 10 })
      assert.is_nil(cl)
      assert.equal("502 AUTH not available: this server has no TLS certificate.", err)
      assert.equal(502, reply.code)
    end)
  end)

  it("raises on a bad tls option", function()
    assert.has_error(function() ftp.client.connect("127.0.0.1", 21, { tls = "sometimes" }) end,
      'tls must be "explicit", "required", "implicit" or false')
  end)

  -- a fake server: greets, then answers AUTH with `after_auth(conn)`
  local function fake(after_auth, fn)
    H.run(function()
      local srv = assert(parley.serve{ listen = "127.0.0.1:0", signals = false, handler = function(conn)
        conn:send("220 fake\r\n")
        local line = conn:receive("l")
        if line == "AUTH TLS" then after_auth(conn) end
      end })
      local ok, err = pcall(fn, srv.port)
      srv:close(0)
      if not ok then error(err, 0) end
    end, 20)
  end

  it("aborts when the server sends bytes after its 234 in the same segment", function()
    fake(function(conn)
      conn:send("234 go ahead\r\n230 injected before the handshake\r\n")
      conn:flush()
      conn:receive("l")
    end, function(port)
      assert.same({ nil, "data after starttls" },
        { ftp.client.connect("localhost", port, { tls = "required", ca = c.cert, timeout = 5 }) })
    end)
  end)

  it("times out when the server stalls the handshake", function()
    fake(function(conn)
      conn:send("234 go ahead\r\n")
      conn:flush()
      repeat until not conn:receive_some()   -- the ClientHello, unanswered
    end, function(port)
      local t0 = parley.now()
      assert.same({ nil, "timeout" },
        { ftp.client.connect("localhost", port, { tls = "required", ca = c.cert, timeout = 0.3 }) })
      assert.is_true(parley.now() - t0 < 4)
    end)
  end)

  it("refuses expired, self-signed and wrong-host certificates unless insecure", function()
    local cases = {
      { cert = c.expired_cert, key = c.expired_key, ca = c.expired_cert, err = "certificate has expired" },
      { cert = c.cert, key = c.key, err = "self-signed certificate" },
      { cert = c.other_cert, key = c.other_key, ca = c.other_cert, err = "hostname mismatch" },
    }
    for _, k in ipairs(cases) do
      with_tls_server({ tls = { cert = k.cert, key = k.key } }, function(srv)
        local cl, err = ftp.client.connect("localhost", srv.port, { tls = "required", ca = k.ca, timeout = 10 })
        assert.is_nil(cl)
        assert.equal("certificate verify failed: " .. k.err, err)
        cl = assert(ftp.client.connect("localhost", srv.port, { tls = "required", insecure = true, timeout = 10 }))
        assert.is_false(cl:tlsinfo().verified)
        assert(cl:login("alice", "secret"))
        assert.equal("hello, world\n", assert(cl:get("hello.txt")))
        cl:quit()
      end)
    end
  end)
end)

describe("parley serve ftp with TLS", function()
  it("refuses --listen-tls without a certificate and --tls-cert without a key", function()
    local out, ok = F.sh("cd " .. q(H.root) .. " && lua5.4 bin/parley serve ftp --root /tmp --listen-tls 127.0.0.1:0")
    assert.is_falsy(ok)
    assert.matches("--listen-tls needs --tls-cert and --tls-key", out, 1, true)
    out, ok = F.sh("cd " .. q(H.root) .. " && lua5.4 bin/parley serve ftp --root /tmp --tls-cert " .. q(c.cert))
    assert.is_falsy(ok)
    assert.matches("--tls-cert and --tls-key go together", out, 1, true)
  end)
end)

---------------------------------------------------------------------------
-- Interop
---------------------------------------------------------------------------

local function need(prog)
  if not H.have(prog) then error(prog .. " is not installed (.ci/deps install)", 0) end
end

describe("ftp over TLS interop #interop", function()
  local t, child, port, tls_port

  setup(function()
    t = F.tree()
    F.write(t.base .. "/users", "alice:{PLAIN}secret\n")
    child = F.parley_child(("--root %s --users %s --tls-cert %s --tls-key %s --listen-tls 127.0.0.1:0")
      :format(q(t.root), q(t.base .. "/users"), q(c.cert), q(c.key)))
    port = child.port
    local line = child.fh:read("l")
    tls_port = tonumber(line and line:match("^ftps server on 127%.0%.0%.1:(%d+)$"))
    assert(tls_port, "no ftps line: " .. tostring(line))
  end)

  teardown(function()
    if child then child:stop() end
    F.cleanup(t)
  end)

  it("curl --ssl-reqd downloads, uploads and lists; ftps:// uses the implicit port #interop", function()
    need("curl")
    local base = ("curl -sS --ssl-reqd --cacert %s ftp://alice:secret@localhost:%d"):format(q(c.cert), port)
    local out = t.base .. "/curl.bin"
    local said, ok = F.sh(("%s/big.bin -o %s"):format(base, q(out)))
    assert.is_true(ok, said)
    assert.equal(H.sha256(t.root .. "/big.bin"), H.sha256(out))
    -- TLS 1.3 uploads, again and again: curl 7.88 closes a data connection
    -- without reading what the server sent, so session tickets there would
    -- make its kernel reset the connection and drop the upload's tail (426;
    -- vsftpd fails 11 times in 20 so). The server sends none on data
    -- connections.
    for i = 1, 20 do
      said, ok = F.sh(("%s/up/c%d.bin --tlsv1.3 -T %s"):format(base, i, q(out)))
      assert.is_true(ok, said)
      assert.equal(H.sha256(out), H.sha256(t.root .. "/up/c" .. i .. ".bin"))
    end
    local list
    list, ok = F.sh(base .. "/")
    assert.is_true(ok, list)
    assert.matches("hello.txt", list)
    local implicit
    implicit, ok = F.sh(("curl -sS --cacert %s ftps://alice:secret@localhost:%d/hello.txt"):format(q(c.cert), tls_port))
    assert.is_true(ok, implicit)
    assert.equal("hello, world\n", implicit)
    -- and the certificate is checked
    said, ok = F.sh(("curl -sS --ssl-reqd ftp://alice:secret@localhost:%d/hello.txt"):format(port))
    assert.is_falsy(ok)
    assert.matches("certificate", said)
  end)

  it("lftp with ftp:ssl-force mirrors over TLS #interop", function()
    need("lftp")
    local dest = t.base .. "/lftp"
    os.execute("mkdir -p " .. q(t.root .. "/tree/deep"))
    for i = 1, 3 do H.random_file(t.root .. "/tree/f" .. i .. ".bin", i * 70000) end
    H.random_file(t.root .. "/tree/deep/last.bin", 123457)
    local out, ok = F.sh(("lftp -c %s"):format(q(("set ftp:ssl-force true; set ftp:ssl-protect-data true; " ..
      "set ssl:ca-file %s; set net:max-retries 1; set net:timeout 10; " ..
      "open -u alice,secret ftp://localhost:%d; mirror tree %s"):format(c.cert, port, dest))))
    assert.is_true(ok, out)
    local diff
    diff, ok = F.sh(("diff -r %s %s"):format(q(t.root .. "/tree"), q(dest)))
    assert.is_true(ok, diff)
  end)

  it("python3 ftplib.FTP_TLS with prot_p resumes the session; without reuse it is told 522 #interop", function()
    need("python3")
    local script = ([[
import ftplib, ssl, hashlib, io
ctx = ssl.create_default_context(cafile=%q)
class Reuse(ftplib.FTP_TLS):
    # ftplib does not resume the control session on data connections
    # (the usual subclass, as for vsftpd's require_ssl_reuse)
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size
f = Reuse(context=ctx)
f.connect("localhost", %d, timeout=20)
f.login("alice", "secret")
f.prot_p()
buf = io.BytesIO()
f.retrbinary("RETR big.bin", buf.write)
print(hashlib.sha256(buf.getvalue()).hexdigest())
f.storbinary("STOR up/py.txt", io.BytesIO(b"over tls\n"))
print(sorted(f.nlst("sub")))
f.quit()
g = ftplib.FTP_TLS(context=ctx)
g.connect("localhost", %d, timeout=20)
g.login("alice", "secret")
g.prot_p()
try:
    g.nlst()
except ftplib.error_perm as e:
    print(e)
g.quit()
]]):format(c.cert, port, port)
    local out, ok = F.sh("/usr/bin/python3 -c " .. q(script))
    assert.is_true(ok, out)
    local sha, names, refusal = out:match("^(%x+)\n(%b[])\n(.-)\n$")
    assert.equal(H.sha256(t.root .. "/big.bin"), sha, out)
    assert.equal("['evil', 'inner.txt']", names)
    assert.equal("522 Data connection refused: TLS session reuse required "
      .. "(resume the control connection's TLS session).", refusal)
    assert.equal("over tls\n", F.read(t.root .. "/up/py.txt"))
  end)

  it("openssl s_client -starttls ftp verifies the certificate and sees FEAT #interop", function()
    need("openssl")
    local out = F.sh(("(printf 'FEAT\\r\\nQUIT\\r\\n'; sleep 1) | openssl s_client -starttls ftp " ..
      "-connect 127.0.0.1:%d -CAfile %s -verify_hostname localhost -verify_return_error -quiet")
      :format(port, q(c.cert)))
    assert.matches("verify return:1", out, 1, true)
    assert.matches(" AUTH TLS\r?\n PBSZ\r?\n PROT\r?\n", out)
    assert.matches("221 Goodbye.", out, 1, true)
  end)

  -- vsftpd on a port the kernel just gave out (a fixed range collides
  -- with other tests' ephemeral ports): pid, port, output handle; or nil
  local function start_vsftpd(conf_lines)
    for _ = 1, 3 do
      local probe = assert(parley.listen("127.0.0.1:0"))
      local vport = probe:port()
      probe:close()
      local conf = t.base .. "/vsftpd-tls.conf"
      F.write(conf, table.concat(conf_lines, "\n") .. "\nlisten_port=" .. vport .. "\n")
      local cmd = "sh -c " .. q("echo $$; exec timeout 60 /usr/sbin/vsftpd " .. q(conf)) .. " 2>&1"
      local fh = assert(io.popen(cmd, "r"))
      local pid = tonumber(fh:read("l"))
      for _ = 1, 50 do
        local s = parley.connect("127.0.0.1", vport, { timeout = 2 })
        if s then
          local greeting = s:receive() or ""
          s:close()
          if greeting:match("^220 %(vsFTPd") then return pid, vport, fh end
        end
        parley.sleep(0.1)
      end
      os.execute("kill " .. pid .. " 2>/dev/null")
      fh:close()
    end
  end

  it("the client talks to vsftpd with ssl_enable and require_ssl_reuse #interop", function()
    if not io.open("/usr/sbin/vsftpd") then error("vsftpd is not installed", 0) end
    os.execute("mkdir -p /var/run/vsftpd/empty; chmod -R o+rX " .. q(t.base))
    local pid, fh
    local ok, err = pcall(H.run, function()
      local vport
      pid, vport, fh = start_vsftpd{
        "listen=YES", "listen_address=127.0.0.1", "background=NO",
        "anonymous_enable=YES", "no_anon_password=YES", "anon_root=" .. t.root,
        "local_enable=NO", "write_enable=NO", "pasv_address=127.0.0.1", "seccomp_sandbox=NO",
        "run_as_launching_user=NO", "ftp_username=ftp", "secure_chroot_dir=/var/run/vsftpd/empty",
        "xferlog_enable=NO", "port_enable=YES", "connect_from_port_20=NO", "hide_ids=YES",
        "ssl_enable=YES", "allow_anon_ssl=YES", "force_anon_logins_ssl=YES", "force_anon_data_ssl=YES",
        "require_ssl_reuse=YES", "rsa_cert_file=" .. c.rsa_cert, "rsa_private_key_file=" .. c.rsa_key }
      assert(pid, "vsftpd did not start")
      -- it refuses cleartext anonymous logins (force_anon_logins_ssl)
      local plain = assert(ftp.client.connect("127.0.0.1", vport, { timeout = 10 }))
      assert.is_nil(plain:login())
      plain:close()
      for _, active in ipairs{ false, true } do
        local cl = assert(ftp.client.connect("localhost", vport,
          { tls = "required", ca = c.rsa_cert, timeout = 10, active = active }))
        assert(cl:login())
        assert.equal(F.read(t.root .. "/big.bin"), assert(cl:get("big.bin")))
        local names = {}
        for _, e in ipairs(assert(cl:list())) do names[e.name] = true end
        assert.is_true(names["hello.txt"])
        cl:quit()
      end
    end, 40)
    if pid then
      os.execute("kill " .. pid .. " 2>/dev/null")
      fh:close()
    end
    if not ok then error(err, 0) end
  end)
end)
