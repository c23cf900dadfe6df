-- parley check over TLS: STARTTLS/STLS (--tls, required), implicit TLS
-- (--tls-implicit and the smtps/pop3s/imaps schemes), --ca, --insecure,
-- the certificate's days left (-D WARN,CRIT, perfdata cert_days) and the
-- certificates a check must refuse.
local parley = require "parley"
local H = require "helper"
local E = require "check.support.env"
local certs = require "tls.support.certs"
local check = require "parley.check"

local c

setup(function() c = certs.make() end)
teardown(function() certs.remove(c) end)

-- SMTP, POP3 and IMAP with STARTTLS on the plain ports and implicit-TLS
-- ports beside them (inside a task).
local function tls_mail(cert, key)
  local dir = H.tmpdir()
  local store = assert(require("parley.mail.maildir").open(dir .. "/md", { fsync = false }))
  local users = require("parley.mail.users").from_table{ [E.USER] = E.PASSWORD }
  local started = assert(require("parley.mail.cli").start{ store = store, users = users,
    smtp = "127.0.0.1:0", pop3 = "127.0.0.1:0", imap = "127.0.0.1:0", smtps = "127.0.0.1:0",
    pop3s = "127.0.0.1:0", imaps = "127.0.0.1:0", auth_delay = 0, domain = { "localhost" },
    tls_cert = cert or c.cert, tls_key = key or c.key })
  local m = {}
  for _, s in ipairs(started) do
    m[s.proto], m[s.proto .. "s"] = s.server.port, s.server.tls_port
  end
  function m.url(scheme, path)
    local cred = scheme:match("^smtp") and "" or (E.USER .. ":" .. E.PASSWORD .. "@")
    return ("%s://%s127.0.0.1:%d%s"):format(scheme, cred, m[scheme], path or "")
  end
  function m.close()
    for _, s in ipairs(started) do s.server:close(0) end
    H.rmdir(dir)
  end
  return m
end

describe("check --tls", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("upgrades SMTP, POP3 and IMAP with STARTTLS/STLS and reports the certificate's days left", function()
    H.run(function()
      local m = tls_mail()
      local rs = {}
      for _, scheme in ipairs { "smtp", "pop3", "imap" } do
        rs[scheme] = check.run(m.url(scheme), { tls = true, ca = c.cert })
      end
      m.close()
      for scheme, r in pairs(rs) do
        assert.equal("OK", r.state, r.line)
        assert.matches("; TLSv1%.%d, certificate CN=localhost expires in 36%d days", r.summary)
        assert.is_true(r.perfdata.cert_days.value >= 364, scheme)
        assert.matches(" cert_days=36%d$", r.line)
      end
    end)
  end)

  it("is CRITICAL when the server does not offer STARTTLS, never going on in cleartext", function()
    H.run(function()
      local m = E.mail()   -- no certificate: no STARTTLS, no STLS
      local s = check.run(("smtp://127.0.0.1:%d"):format(m.smtp), { tls = true })
      local p = check.run(("pop3://alice:pw@127.0.0.1:%d"):format(m.pop3), { tls = true })
      local i = check.run(("imap://alice:pw@127.0.0.1:%d"):format(m.imap), { tls = true })
      m.close()
      assert.equal("SMTP CRITICAL - 127.0.0.1:" .. m.smtp .. ": greeting: server does not offer STARTTLS",
        s.line:match("^[^|]*"):gsub(" $", ""))
      assert.matches("server does not offer STLS", p.summary)
      assert.matches("server does not offer STARTTLS", i.summary)
      assert.equal(2, p.status)
      assert.equal(2, i.status)
    end)
  end)

  it("names the starttls phase when the handshake after the go-ahead stalls", function()
    H.run(function()
      local srv = assert(parley.serve{ listen = "127.0.0.1:0", signals = false, timeout = 5,
        handler = function(conn)
          conn:send("220 fake ESMTP\r\n")
          conn:receive("l")
          conn:send("250-fake\r\n250 STARTTLS\r\n")
          conn:receive("l")
          conn:send("220 2.0.0 Ready to start TLS\r\n")
          conn:flush()
          parley.sleep(1)   -- the ClientHello gets no answer
        end })
      local r = check.run(("smtp://127.0.0.1:%d"):format(srv.port), { tls = true, timeout = 0.4 })
      srv:close(0)
      assert.equal("CRITICAL", r.state)
      assert.equal("timeout after 0.4 s in starttls", r.summary)
    end)
  end)
end)

describe("check over implicit TLS", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("speaks TLS from the first byte for smtps://, pop3s:// and imaps://", function()
    H.run(function()
      local m = tls_mail()
      local rs = {}
      for _, scheme in ipairs { "smtps", "pop3s", "imaps" } do
        rs[scheme] = check.run(m.url(scheme), { ca = c.cert })
      end
      -- --tls-implicit on a plain scheme's URL says the same
      local sub = check.run(("submissions://127.0.0.1:%d"):format(m.smtps), { ca = c.cert })
      local flag = check.run(("smtp://127.0.0.1:%d"):format(m.smtps), { tls_implicit = true, ca = c.cert })
      m.close()
      for scheme, r in pairs(rs) do
        assert.equal("OK", r.state, scheme .. ": " .. r.line)
        assert.is_true(r.perfdata.cert_days.value >= 364)
      end
      assert.matches("^IMAP OK %- 127%.0%.0%.1:%d+ INBOX: 0 messages; TLSv1", rs.imaps.line)
      assert.equal("OK", sub.state, sub.line)
      assert.equal("OK", flag.state, flag.line)
    end)
  end)

  it("uses the implicit-TLS ports by default (465, 995, 993)", function()
    local seen = {}
    for scheme, port in pairs { smtps = 465, submissions = 465, pop3s = 995, imaps = 993 } do
      seen[scheme] = assert(check.parse_url(scheme .. "://a:b@h", require("parley.check." ..
        check.TLS_SCHEMES[scheme]).TLS_PORT)).port == port
    end
    assert.same({ smtps = true, submissions = true, pop3s = true, imaps = true }, seen)
  end)
end)

describe("check -D (certificate days)", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("is WARNING or CRITICAL with the days in the status line and the thresholds in perfdata", function()
    H.run(function()
      local m = tls_mail()
      local warn = check.run(m.url("smtps"), { ca = c.cert, cert_days = { 400, 30 } })
      local crit = check.run(m.url("imaps"), { ca = c.cert, cert_days = { 500, 400 } })
      local ok = check.run(m.url("pop3s"), { ca = c.cert, cert_days = { 30, 7 } })
      m.close()
      assert.equal(1, warn.status)
      assert.matches("expires in 36%d days, under the warning threshold %(400 days%)", warn.summary)
      assert.matches(" cert_days=36%d;400;30$", warn.line)
      assert.equal(2, crit.status)
      assert.matches("under the critical threshold %(400 days%)", crit.summary)
      assert.equal(0, ok.status)
      assert.matches(" cert_days=36%d;30;7$", ok.line)
    end)
  end)

  it("is CRITICAL for an expired certificate: refused with the reason, and expired even with --insecure", function()
    H.run(function()
      local m = tls_mail(c.expired_cert, c.expired_key)
      local refused = check.run(m.url("smtps"), { ca = c.expired_cert })
      local starttls = check.run(m.url("pop3"), { tls = true, ca = c.expired_cert })
      local insecure = check.run(m.url("imaps"), { insecure = true })
      m.close()
      assert.equal(2, refused.status)
      assert.matches("connect: certificate verify failed: certificate has expired", refused.summary)
      assert.matches("starttls: certificate verify failed: certificate has expired", starttls.summary)
      assert.equal(2, insecure.status)
      assert.matches("certificate CN=expired expired %d days ago %(not verified: %-%-insecure%)", insecure.summary)
      assert.matches(" cert_days=%-%d$", insecure.line)
    end)
  end)

  it("is CRITICAL for a self-signed certificate not trusted and for one of another host", function()
    H.run(function()
      local m = tls_mail()
      local untrusted = check.run(m.url("imaps"))
      m.close()
      local other = tls_mail(c.other_cert, c.other_key)
      local wrong = check.run(other.url("smtps"), { ca = c.other_cert })   -- made for other.example
      local allowed = check.run(other.url("smtps"), { insecure = true })
      other.close()
      assert.matches("certificate verify failed: self%-signed certificate", untrusted.summary)
      assert.equal(2, untrusted.status)
      assert.matches("certificate verify failed: IP address mismatch", wrong.summary)
      assert.equal("OK", allowed.state, allowed.line)
    end)
  end)
end)

describe("check --roundtrip over TLS", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("sends with STARTTLS and reads by IMAPS or POP3 with STLS", function()
    H.run(function()
      local m = tls_mail()
      local imap = check.roundtrip{ smtp = m.url("smtp"), imap = m.url("imaps"), tls = false, ca = c.cert }
      local pop3 = check.roundtrip{ smtp = m.url("smtp"), pop3 = m.url("pop3"), tls = true, ca = c.cert,
        cert_days = { 30, 7 } }
      local bad = check.roundtrip{ smtp = m.url("smtps"), imap = m.url("imap"), tls = true }
      m.close()
      assert.equal("OK", imap.state, imap.line)
      assert.matches("to IMAPS 127%.0%.0%.1:%d+ INBOX: seen after", imap.summary)
      assert.equal("OK", pop3.state, pop3.line)
      assert.matches(" cert_days=36%d;30;7$", pop3.line)
      assert.equal("ROUNDTRIP UNKNOWN - --tls (STARTTLS) with the implicit-TLS URL " .. m.url("smtps"), bad.line)
    end)
  end)
end)

describe("parley check TLS options", function()
  it("checks an implicit-TLS port with --ca and -D, and warns on stderr about --insecure", function()
    local dir = H.tmpdir()
    H.write(dir .. "/users", ("%s:{PLAIN}%s:1000:1000::%s\n"):format(E.USER, E.PASSWORD, E.USER))
    local ports = {}
    local srv = require("support.child").serve("mail", { "--maildir", dir .. "/md", "--users", dir .. "/users",
      "--smtp", "127.0.0.1:0", "--imap", "127.0.0.1:0", "--smtps", "127.0.0.1:0",
      "--tls-cert", c.cert, "--tls-key", c.key }, { port = function(line)
        local proto, port = line:match("^(%w+) server on [^:]+:(%d+)")
        if proto then ports[proto] = tonumber(port) end
        return ports.smtp and ports.imap and ports.smtps
      end })
    local out, err, code = E.parley_check(("smtps://127.0.0.1:%d"):format(ports.smtps), "--ca", c.cert, "-D", "30,7")
    local out2, err2, code2 = E.parley_check(("imap://alice:pw@127.0.0.1:%d"):format(ports.imap), "--tls",
      "--insecure", "--cert-days", "400,7")
    srv:stop()
    H.rmdir(dir)
    assert.equal(0, code, out .. err)
    assert.matches("^SMTP OK %- .*; TLSv1%.%d, certificate CN=localhost expires in 36%d days |", out)
    assert.matches(" cert_days=36%d;30;7\n$", out)
    assert.equal("", err)
    assert.equal(1, code2, out2 .. err2)
    assert.matches("^IMAP WARNING %- .*%(not verified: %-%-insecure%), under the warning threshold", out2)
    assert.matches("warning: %-%-insecure: the server's certificate is not verified", err2)
  end)
end)

describe("check ftp and http over TLS", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  -- an FTP server with AUTH TLS and an FTPS port, and an HTTP server
  -- with an HTTPS port, over one scratch directory
  local function with_servers(fn)
    H.run(function()
      local dir = H.tmpdir()
      H.write(dir .. "/hello.txt", "hello over tls\n")
      local ftp = assert(require("parley.ftp.server").serve{ listen = "127.0.0.1:0",
        listen_tls = "127.0.0.1:0", root = dir, anonymous = true, anonymous_root = dir,
        signals = false, tls = { cert = c.cert, key = c.key } })
      local app = require("parley.http.server").new{}
      app:static("/", dir)
      local web = assert(app:serve{ listen = "127.0.0.1:0", listen_tls = "127.0.0.1:0", signals = false,
        tls = { cert = c.cert, key = c.key } })
      local ok, err = pcall(fn, ftp, web)
      ftp:close(0)
      web:close(0)
      H.rmdir(dir)
      if not ok then error(err, 0) end
    end, 30)
  end

  it("checks FTP with AUTH TLS (--tls) and FTPS, downloading over a protected data connection", function()
    with_servers(function(ftp)
      local explicit = check.run(("ftp://127.0.0.1:%d/hello.txt"):format(ftp.port),
        { tls = true, ca = c.cert, download = true, size = 15 })
      local implicit = check.run(("ftps://127.0.0.1:%d/"):format(ftp.tls_port), { ca = c.cert, cert_days = { 30, 7 } })
      local untrusted = check.run(("ftps://127.0.0.1:%d/"):format(ftp.tls_port))
      assert.equal("OK", explicit.state, explicit.line)
      assert.matches("downloaded 15 bytes", explicit.summary)
      assert.matches("TLSv1%.%d, certificate CN=localhost", explicit.summary)
      assert.equal("OK", implicit.state, implicit.line)
      assert.matches("1 entries in %.", implicit.summary)
      assert.matches(" cert_days=36%d;30;7$", implicit.line)
      assert.equal("CRITICAL", untrusted.state)
      assert.matches("certificate verify failed: self%-signed certificate", untrusted.summary)
    end)
  end)

  it("checks https:// (and http:// with --tls-implicit), and refuses --tls for http", function()
    with_servers(function(_, web)
      local r = check.run(("https://localhost:%d/hello.txt"):format(web.tls_port),
        { ca = c.cert, expect = "over tls", cert_days = { 400, 7 } })
      local implicit = check.run(("http://localhost:%d/hello.txt"):format(web.tls_port),
        { tls_implicit = true, ca = c.cert })
      local plain = check.run(("http://127.0.0.1:%d/hello.txt"):format(web.port))
      assert.equal("WARNING", r.state, r.line)
      assert.matches("^HTTP WARNING %- localhost:%d+ HTTP/1%.1 200 OK, 15 bytes; TLSv1%.%d, certificate CN=localhost "
        .. "expires in 36%d days, under the warning threshold %(400 days%)", r.line)
      assert.equal("OK", implicit.state, implicit.line)
      assert.is_nil(plain.perfdata.cert_days)
      assert.equal("HTTP UNKNOWN - http has no STARTTLS: use --tls-implicit or its TLS URL",
        check.run("http://h/", { tls = true }).line)
    end)
  end)
end)
