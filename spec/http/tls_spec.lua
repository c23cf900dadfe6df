-- HTTPS: the server's `tls` / `tls_ctx` / `listen_tls` (ALPN http/1.1),
-- the client's https:// URLs (verification by default, `ca`, `insecure`,
-- `servername`, `tls_ctx`), the pool keyed by scheme, host, port and
-- trust, redirects across http and https, bad certificates and a stalled
-- handshake; interop with curl, python3 and nginx.
local parley = require "parley"
local tls = require "parley.tls"
local H = require "helper"
local certs = require "tls.support.certs"
local client = require "parley.http.client"
local server = require "parley.http.server"

local c

setup(function() c = certs.make() end)
teardown(function() certs.remove(c) end)

-- failed handshakes are logged by the server: kept here, and checked
local logs, log = {}, parley.log
before_each(function()
  H.fd_snapshot()
  logs = {}
  parley.log = function(msg) logs[#logs + 1] = msg end
end)
after_each(function()
  parley.log = log
  client.default_pool:close()
  H.fd_check()
end)

-- an app answering /hello with the scheme it was reached by, and
-- redirects between its two listeners
local function app_for(ports)
  local app = server.new()
  app:get("/hello", function(req, res)
    local info = req:tlsinfo()
    res:header("Content-Type", "text/plain")
    return res:send(info and ("https " .. tostring(info.alpn)) or "http")
  end)
  app:get("/peer", function(req, res)
    local _, port = req.conn:getpeername()
    return res:send(tostring(port))
  end)
  app:get("/to-https", function(_, res)
    return res:redirect("https://localhost:" .. ports.tls .. "/hello", 301)
  end)
  app:get("/to-http", function(_, res)
    return res:redirect("http://127.0.0.1:" .. ports.plain .. "/hello", 302)
  end)
  return app
end

local function with_server(extra, fn)
  H.run(function()
    local ports = {}
    local o = { listen = "127.0.0.1:0", signals = false, tls = { cert = c.cert, key = c.key } }
    for k, v in pairs(extra or {}) do o[k] = v end
    local srv = assert(app_for(ports):serve(o))
    ports.plain, ports.tls = srv.port, srv.tls_port or srv.port
    local ok, err = pcall(fn, srv)
    client.default_pool:close()
    srv:close(0)
    if not ok then error(err, 0) end
  end, 30)
end

describe("HTTPS server", function()
  it("serves HTTP on listen and HTTPS with ALPN http/1.1 on listen_tls, one app", function()
    with_server({ listen_tls = "127.0.0.1:0" }, function(srv)
      local r = assert(client.request{ url = "https://localhost:" .. srv.tls_port .. "/hello", ca = c.cert })
      assert.equal(200, r.status)
      assert.equal("https http/1.1", r.body)
      r = assert(client.request("http://127.0.0.1:" .. srv.port .. "/hello"))
      assert.equal("http", r.body)
      assert.equal(srv.address:gsub("%d+$", "") .. srv.tls_port, srv.tls_address)
    end)
  end)

  it("serves HTTPS on listen itself when given tls without listen_tls", function()
    with_server({}, function(srv)
      local r = assert(client.request{ url = "https://127.0.0.1:" .. srv.port .. "/hello", ca = c.cert })
      assert.equal("https http/1.1", r.body)
      -- plain HTTP to the TLS port: the handshake fails, no response
      local none, err = client.request{ url = "http://127.0.0.1:" .. srv.port .. "/hello", timeout = 2 }
      assert.is_nil(none)
      assert.is_string(err)
      assert.matches("tls handshake with 127%.0%.0%.1:%d+ failed: tls: http request", logs[#logs])
    end)
  end)

  it("takes a prebuilt context as tls_ctx", function()
    local ctx = assert(tls.context{ mode = "server", cert = c.rsa_cert, key = c.rsa_key })
    with_server({ tls = false, tls_ctx = ctx }, function(srv)
      local r = assert(client.request{ url = "https://localhost:" .. srv.port .. "/hello", ca = c.rsa_cert })
      assert.equal("https nil", r.body)   -- this context offers no ALPN
    end)
  end)

  it("refuses a certificate file it cannot read, and listen_tls without a certificate", function()
    local srv, err = server.new():serve{ listen = "127.0.0.1:0", tls = { cert = "/nonexistent.crt", key = c.key } }
    assert.is_nil(srv)
    assert.matches("/nonexistent.crt", err)
    assert.has_error(function()
      server.new():serve{ listen = "127.0.0.1:0", listen_tls = "127.0.0.1:0" }
    end, "listen_tls needs tls = {cert =, key =} or tls_ctx")
  end)
end)

describe("HTTPS client", function()
  it("verifies by default: refuses a self-signed certificate, takes it with ca or insecure", function()
    with_server({}, function(srv)
      local u = "https://localhost:" .. srv.port .. "/hello"
      local r, err = client.request(u)
      assert.is_nil(r)
      assert.matches("certificate verify failed: self%-signed certificate", err)
      r = assert(client.request{ url = u, insecure = true })
      assert.equal(200, r.status)
      r = assert(client.request{ url = u, tls_ctx = assert(tls.context{ ca = c.cert }) })
      assert.equal(200, r.status)
    end)
  end)

  it("refuses an expired certificate and one for another host", function()
    with_server({ tls = { cert = c.expired_cert, key = c.expired_key } }, function(srv)
      local r, err = client.request{ url = "https://localhost:" .. srv.port .. "/hello", ca = c.expired_cert }
      assert.is_nil(r)
      assert.matches("certificate has expired", err)
    end)
    with_server({ tls = { cert = c.other_cert, key = c.other_key } }, function(srv)
      local u = "https://127.0.0.1:" .. srv.port .. "/hello"
      local r, err = client.request{ url = u, ca = c.other_cert }
      assert.is_nil(r)
      assert.matches("certificate verify failed", err)
      r = assert(client.request{ url = u, ca = c.other_cert, servername = "other.example" })
      assert.equal(200, r.status)
    end)
  end)

  it("keeps HTTPS connections alive in the pool, apart from other trust and from http", function()
    with_server({ listen_tls = "127.0.0.1:0" }, function(srv)
      local pool = client.pool()
      local u = "https://localhost:" .. srv.tls_port .. "/peer"
      local first = assert(client.request{ url = u, ca = c.cert, pool = pool }).body
      assert.equal(first, assert(client.request{ url = u, ca = c.cert, pool = pool }).body)
      assert.equal(1, pool:count())
      -- a non-verifying request never borrows a verified connection (nor
      -- the reverse): a connection of its own
      local other = assert(client.request{ url = u, insecure = true, pool = pool }).body
      assert.are_not.equal(first, other)
      assert.equal(2, pool:count())
      assert(client.request{ url = "http://127.0.0.1:" .. srv.port .. "/peer", pool = pool })
      assert.equal(3, pool:count())
      pool:close()
    end)
  end)

  it("follows redirects from http to https and back", function()
    with_server({ listen_tls = "127.0.0.1:0" }, function(srv)
      local r = assert(client.request{ url = "http://127.0.0.1:" .. srv.port .. "/to-https", ca = c.cert })
      assert.equal(200, r.status)
      assert.equal("https http/1.1", r.body)
      assert.equal("https://localhost:" .. srv.tls_port .. "/hello", r.url)
      r = assert(client.request{ url = "https://localhost:" .. srv.tls_port .. "/to-http", ca = c.cert })
      assert.equal("http", r.body)
      assert.equal(1, #r.redirects)
    end)
  end)

  it("does not carry credentials from https to http on a redirect", function()
    H.run(function()
      local app_seen
      local echo = server.new()
      echo:get("/hello", function(req, res)
        app_seen = req.headers.authorization or "none"
        return res:send("ok")
      end)
      local plain = assert(echo:serve{ listen = "127.0.0.1:0", signals = false })
      local back = server.new()
      back:get("/go", function(_, res) return res:redirect("http://localhost:" .. plain.port .. "/hello") end)
      local tsrv = assert(back:serve{ listen = "127.0.0.1:0", signals = false, tls = { cert = c.cert, key = c.key } })
      local r = assert(client.request{ url = "https://localhost:" .. tsrv.port .. "/go", ca = c.cert,
        headers = { Authorization = "Bearer secret" } })
      assert.equal("ok", r.body)
      assert.equal("none", app_seen)
      client.default_pool:close()
      plain:close(0)
      tsrv:close(0)
    end, 20)
  end)

  it("times out on a server that accepts and never answers the handshake", function()
    H.run(function()
      local stall = assert(parley.serve{ listen = "127.0.0.1:0", signals = false,
        handler = function() parley.sleep(3) end })
      local t0 = parley.now()
      local r, err = client.request{ url = "https://127.0.0.1:" .. stall.port .. "/", ca = c.cert,
        timeouts = { connect = 0.3 } }
      assert.is_nil(r)
      assert.equal("timeout", err)
      assert.is_true(parley.now() - t0 < 2)
      stall:close(0)
    end, 20)
  end)
end)

describe("HTTPS with other programs #interop", function()
  local dir
  before_each(function()
    dir = H.tmpdir()
    os.execute("mkdir -p " .. dir .. "/www")
    H.write(dir .. "/www/1k.txt", ("0123456789abcdef"):rep(64))
  end)
  after_each(function() H.rmdir(dir) end)

  -- `parley serve http` with --tls-cert/--tls-key/--listen-tls, as the issue spells it
  local function start_cli()
    local fh = assert(io.popen(("cd %s && sh -c 'echo $$; exec timeout 60 lua5.4 bin/parley serve http " ..
      "--listen 127.0.0.1:0 --listen-tls 127.0.0.1:0 --tls-cert %s --tls-key %s --root %s " ..
      "--access-log off' 2>&1"):format(H.root, c.cert, c.key, dir .. "/www"), "r"))
    local pid = tonumber(fh:read("l"))
    local port = tonumber((fh:read("l") or ""):match("^http server on 127%.0%.0%.1:(%d+)"))
    local tls_port = tonumber((fh:read("l") or ""):match("^https server on 127%.0%.0%.1:(%d+)"))
    assert(port and tls_port, "serve http did not start")
    return { port = port, tls_port = tls_port, stop = function()
      os.execute("kill " .. pid .. " 2>/dev/null")
      fh:read("a")
      fh:close()
    end }
  end

  local function sh(cmd)
    local fh = io.popen(cmd .. " 2>&1")
    local out = fh:read("a")
    local _, _, rc = fh:close()
    return out, rc
  end

  it("curl --ssl-reqd with --cacert gets files over keep-alive HTTPS with ALPN http/1.1", function()
    local s = start_cli()
    local u = "https://localhost:" .. s.tls_port .. "/1k.txt"
    local out, rc = sh(("timeout 30 curl -sv --ssl-reqd --cacert %s -o /dev/null -o /dev/null " ..
      "-w '%%{http_code} %%{size_download} %%{num_connects}\\n' %s %s"):format(c.cert, u, u))
    local out2 = sh(("timeout 30 curl -s -o /dev/null -w '%%{http_code}\\n' https://localhost:%d/1k.txt")
      :format(s.tls_port))
    s.stop()
    assert.equal(0, rc, out)
    assert.matches("ALPN: server accepted http/1.1", out)
    assert.matches("200 1024 1\n200 1024 0", out)   -- the second on the same connection
    assert.matches("^000", out2)   -- no --cacert: the self-signed certificate is refused
  end)

  it("python3 http.client over HTTPS with a context trusting the test CA", function()
    local s = start_cli()
    H.write(dir .. "/t.py", ([[
import http.client, ssl
ctx = ssl.create_default_context(cafile=%q)
c = http.client.HTTPSConnection("localhost", %d, context=ctx)
for _ in range(2):
    c.request("GET", "/1k.txt")
    r = c.getresponse()
    print(r.status, len(r.read()))
print(c.sock.version(), c.sock.selected_alpn_protocol())
]]):format(c.cert, s.tls_port))
    local out, rc = sh("timeout 30 python3 " .. dir .. "/t.py")
    s.stop()
    assert.equal(0, rc, out)
    assert.matches("200 1024\n200 1024\nTLSv1.3", out)
  end)

  it("our client against nginx with TLS: verified, kept alive, redirected from http", function()
    if not H.have("nginx") then pending("nginx is not installed") return end
    local N = require "http.support.nginx_tls"
    local ng = N.start(dir, dir .. "/www", c.cert, c.key)
    local ok, err = pcall(function()
      local pool = client.pool()
      local u = "https://localhost:" .. ng.tls_port .. "/1k.txt"
      local r = assert(client.request{ url = u, ca = c.cert, pool = pool })
      assert.equal(200, r.status)
      assert.equal(1024, #r.body)
      assert(client.request{ url = u, ca = c.cert, pool = pool })
      assert.equal(1, pool:count())
      r = assert(client.request{ url = "http://127.0.0.1:" .. ng.port .. "/to-https", ca = c.cert, pool = pool })
      assert.equal(200, r.status)
      assert.equal(1, #r.redirects)
      assert.equal(2, pool:count())   -- the http one beside the https one
      local none, verr = client.request("https://localhost:" .. ng.tls_port .. "/1k.txt")
      assert.is_nil(none)
      assert.matches("certificate verify failed", verr)
      pool:close()
    end)
    ng.stop()
    if not ok then error(err, 0) end
  end)
end)
