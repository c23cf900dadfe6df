-- Contexts and handshakes: certificate verification and its failures,
-- SNI, ALPN, session reuse, client certificates, stalled handshakes,
-- and many handshakes at once.
local parley = require "parley"
local tls = require "parley.tls"
local H = require "helper"
local certs = require "tls.support.certs"

local c

setup(function() c = certs.make() end)
teardown(function() certs.remove(c) end)

before_each(H.fd_snapshot)
after_each(H.fd_check)

local function server_ctx(cert, key, extra)
  local o = { mode = "server", cert = cert or c.cert, key = key or c.key }
  for k, v in pairs(extra or {}) do o[k] = v end
  return assert(tls.context(o))
end

-- serves `handler` with TLS; returns the server and the log lines it wrote
local function serve(ctx, handler, opts)
  local logs = {}
  local log = parley.log
  parley.log = function(msg) logs[#logs + 1] = msg end
  local o = { listen = "127.0.0.1:0", tls = ctx, signals = false, handler = handler or function(conn)
    for line in conn:lines() do conn:send(line .. "\r\n") end
  end }
  for k, v in pairs(opts or {}) do o[k] = v end
  local srv = assert(parley.serve(o))
  return srv, logs, function() parley.log = log end
end

-- connects with `cctx` (or opts) and says one line: the stream, or nil, err
local function try(port, copts)
  copts.timeout = copts.timeout or 5
  local s, err = parley.connect(copts.host or "localhost", port, copts)
  if not s then return nil, err end
  s:send("ping\r\n")
  local line, rerr = s:receive()
  if line ~= "ping" then
    s:close()
    return nil, rerr
  end
  return s
end

describe("certificate verification", function()
  it("refuses a self-signed certificate without its ca, and accepts it with verify = false", function()
    H.run(function()
      local srv, _, restore = serve(server_ctx())
      local s, err = parley.connect("localhost", srv.port, { tls = true, timeout = 5 })
      assert.is_nil(s)
      assert.equal("certificate verify failed: self-signed certificate", err)
      local insecure = assert(try(srv.port, { tls = true, insecure = true }))
      assert.is_false(insecure:tlsinfo().verified)
      insecure:close()
      local ctx = assert(tls.context{ verify = false })
      s = assert(try(srv.port, { tls = ctx }))
      s:close()
      srv:close()
      restore()
    end)
  end)

  it("refuses an expired certificate, and accepts it with verify = false", function()
    H.run(function()
      local srv, _, restore = serve(server_ctx(c.expired_cert, c.expired_key))
      local s, err = parley.connect("localhost", srv.port,
        { tls = assert(tls.context{ ca = c.expired_cert }), timeout = 5 })
      assert.is_nil(s)
      assert.equal("certificate verify failed: certificate has expired", err)
      s = assert(try(srv.port, { tls = assert(tls.context{ ca = c.expired_cert, verify = false }) }))
      local peer = s:tlsinfo().peer
      assert.is_true(peer.days_left < 0)
      assert.is_true(peer.not_after < os.time())
      s:close()
      srv:close()
      restore()
    end)
  end)

  it("refuses a certificate for another host, and checks IP addresses too", function()
    H.run(function()
      local srv, _, restore = serve(server_ctx(c.other_cert, c.other_key))
      local ctx = assert(tls.context{ ca = c.other_cert })
      local s, err = parley.connect("localhost", srv.port, { tls = ctx, timeout = 5 })
      assert.is_nil(s)
      assert.equal("certificate verify failed: hostname mismatch", err)
      s, err = parley.connect("127.0.0.1", srv.port, { tls = ctx, timeout = 5 })
      assert.is_nil(s)
      assert.equal("certificate verify failed: IP address mismatch", err)
      s = assert(try(srv.port, { tls = ctx, servername = "other.example" }))
      assert.is_true(s:tlsinfo().verified)
      s:close()
      s = assert(try(srv.port, { tls = assert(tls.context{ ca = c.other_cert, verify = false }) }))
      s:close()
      srv:close()
      restore()
    end)
  end)

  it("verifies a certificate made by the openssl CLI, by IP address", function()
    H.run(function()
      local srv, _, restore = serve(server_ctx(c.rsa_cert, c.rsa_key))
      local s = assert(try(srv.port, { host = "127.0.0.1", tls = assert(tls.context{ ca = c.rsa_cert }) }))
      local info = s:tlsinfo()
      assert.is_true(info.verified)
      assert.is_nil(info.servername)   -- no SNI for an address (RFC 6066 §3)
      s:close()
      srv:close()
      restore()
    end)
  end)
end)

describe("tls.context", function()
  it("names the file it cannot use", function()
    local ctx, err = tls.context{ mode = "server", cert = c.dir .. "/none.crt", key = c.key }
    assert.is_nil(ctx)
    assert.equal("cannot read cert " .. c.dir .. "/none.crt: no such file or directory", err)
    ctx, err = tls.context{ mode = "server", cert = c.cert, key = c.other_key }
    assert.is_nil(ctx)
    assert.matches("does not match", err)
    ctx, err = tls.context{ ca = c.key }
    assert.is_nil(ctx)
    assert.matches("^cannot load ca " .. c.key:gsub("%p", "%%%0"), err)
  end)

  it("raises on unknown options, wrong types and a server without a certificate", function()
    assert.has_error(function() tls.context{ verfy = false } end)
    assert.has_error(function() tls.context{ verify = "no" } end)
    assert.has_error(function() tls.context{ mode = "server" } end)
    assert.has_error(function() tls.context{ min_version = "2" } end)
  end)

  it("closes with <close> and says what it is", function()
    do
      local ctx <close> = assert(tls.context{ ca = c.cert })
      assert.matches("^parley.tls.context: .*%(client%)", tostring(ctx))
    end
    assert.equal("server", server_ctx():mode())
  end)

  it("reads a certificate file's names and dates", function()
    local info = assert(tls.certinfo(c.cert))
    assert.equal("CN=localhost", info.subject)
    assert.same({ "localhost", "127.0.0.1", "::1" }, info.san)
    assert.is_true(info.not_before <= os.time())
    local none, err = tls.certinfo(c.dir .. "/none.crt")
    assert.is_nil(none)
    assert.matches("no such file", err)
  end)

  it("writes the self-signed key readable by its owner only", function()
    local _, key = assert(tls.selfsigned{ dir = c.dir, cn = "mode" })
    local fh = assert(io.popen("stat -c %a " .. key))
    assert.equal("600", fh:read("l"))
    fh:close()
  end)
end)

describe("a TLS server", function()
  it("sees the SNI the client sent and agrees on ALPN", function()
    H.run(function()
      local seen
      local srv, _, restore = serve(server_ctx(nil, nil, { alpn = { "imap", "http/1.1" } }),
        function(conn)
          seen = conn:tlsinfo()
          conn:send("ok\r\n")
        end)
      local ctx = assert(tls.context{ ca = c.cert, alpn = { "h2", "http/1.1" } })
      local s = assert(parley.connect("localhost", srv.port, { tls = ctx, timeout = 5 }))
      assert.equal("ok", s:receive())
      assert.equal("http/1.1", s:tlsinfo().alpn)
      assert.equal("localhost", seen.servername)
      assert.equal("http/1.1", seen.alpn)
      s:close()
      srv:close()
      restore()
    end)
  end)

  it("lets a second connection resume the first one's session (FTP data channels)", function()
    H.run(function()
      local reused = {}
      local srv, _, restore = serve(server_ctx(), function(conn)
        for line in conn:lines() do
          reused[#reused + 1] = conn:tlsinfo().session_reused
          conn:send(line .. "\r\n")
        end
      end)
      local ctx = assert(tls.context{ ca = c.cert })
      local control = assert(try(srv.port, { tls = ctx }))   -- its reply brought the tickets
      assert.is_false(control:tlsinfo().session_reused)
      local plain = assert(parley.connect("localhost", srv.port, { timeout = 5 }))
      assert(plain:starttls(ctx, { session = control }))
      assert.is_true(plain:tlsinfo().session_reused)
      local saved = assert(control:tlssession())
      local third = assert(parley.connect("localhost", srv.port, { timeout = 5 }))
      assert(third:starttls(ctx, { session = saved }))
      assert.is_true(third:tlsinfo().session_reused)
      plain:send("data\r\n")
      assert.equal("data", plain:receive())
      assert.same({ false, true }, reused)
      -- a session from another server's context is not resumed there
      local other, _, restore2 = serve(server_ctx())
      local fresh = assert(parley.connect("localhost", other.port, { timeout = 5 }))
      assert(fresh:starttls(ctx, { session = control }))
      assert.is_false(fresh:tlsinfo().session_reused)
      for _, s in ipairs{ control, plain, third, fresh } do s:close() end
      other:close()
      srv:close()
      restore2()
      restore()
    end)
  end)

  it("asks for a client certificate and knows whose it is", function()
    H.run(function()
      local subject
      local srv, logs, restore = serve(server_ctx(nil, nil, { verify_peer = true, ca = c.client_cert }),
        function(conn)
          local info = conn:tlsinfo()
          subject = info.verified and info.peer.subject
          conn:send("hello\r\n")
        end)
      local ctx = assert(tls.context{ ca = c.cert, cert = c.client_cert, key = c.client_key })
      local s = assert(parley.connect("localhost", srv.port, { tls = ctx, timeout = 5 }))
      assert.equal("hello", s:receive())
      assert.equal("CN=client", subject)
      s:close()
      -- without one: refused (TLS 1.3 tells the client on its first read)
      local anon = parley.connect("localhost", srv.port, { tls = assert(tls.context{ ca = c.cert }), timeout = 5 })
      local line, err
      if anon then
        line, err = anon:receive()
        anon:close()
      end
      assert.is_nil(line)
      assert.matches("certificate required", tostring(err))
      srv:close()
      restore()
      assert.matches("tls handshake with 127%.0%.0%.1:%d+ failed", table.concat(logs, "\n"))
    end)
  end)

  it("closes a stalled handshake at the timeout with a log line, still serving others", function()
    H.run(function()
      local srv, logs, restore = serve(server_ctx(), nil, { timeout = 0.3 })
      local mute = assert(parley.connect("127.0.0.1", srv.port, { timeout = 5 }))   -- never says hello
      local s = assert(try(srv.port, { tls = assert(tls.context{ ca = c.cert }) }))
      s:close()
      local rest, err = mute:receive("a")
      assert.equal("", rest)   -- the server closed it
      assert.is_not_nil(rest, err)
      mute:close()
      srv:close()
      restore()
      assert.matches("failed: timeout", table.concat(logs, "\n"))
    end)
  end)

  it("completes 200 concurrent handshakes", function()
    H.run(function()
      local srv, _, restore = serve(server_ctx(), nil, { timeout = 20 })
      local ctx = assert(tls.context{ ca = c.cert })
      local tasks = {}
      for i = 1, 200 do
        tasks[i] = H.go(function()
          local s = assert(parley.connect("localhost", srv.port, { tls = ctx, timeout = 20 }))
          s:send("n" .. i .. "\r\n")
          assert.equal("n" .. i, s:receive())
          s:close()
        end)
      end
      H.join_all(tasks, 50)
      srv:close()
      restore()
    end, 60)
  end)
end)

describe("a TLS client", function()
  it("gives up on a handshake the server stalls, at the deadline", function()
    H.run(function()
      local l = assert(parley.listen("127.0.0.1:0"))
      local held
      local acceptor = H.go(function() held = assert(l:accept(5)) end)
      local t0 = parley.now()
      local s, err = parley.connect("localhost", l:port(),
        { tls = assert(tls.context{ ca = c.cert }), timeout = 0.3 })
      assert.is_nil(s)
      assert.equal("timeout", err)
      assert.is_true(parley.now() - t0 < 3)
      H.join(acceptor)
      held:close()
      l:close()
    end)
  end)

  it("needs a name to verify against when the stream's host is unknown", function()
    H.run(function()
      local socket = require "socket"
      local l = assert(parley.listen("127.0.0.1:0"))
      local sock = assert(socket.connect("127.0.0.1", l:port()))
      local s = assert(parley.wrap(sock))   -- adopted: no host known
      local peer = assert(l:accept(5))
      local ok, err = s:starttls(assert(tls.context{ ca = c.cert }))
      assert.is_nil(ok)
      assert.equal("no servername to verify the certificate against", err)
      s:close()
      peer:close()
      l:close()
    end)
  end)
end)
