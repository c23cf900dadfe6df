-- #interop: third-party mail clients over TLS against `parley serve mail
-- --tls-cert --tls-key --smtps --pop3s` (a child process, since they
-- block): swaks, curl --ssl-reqd, python3 smtplib/poplib with a context
-- trusting the test certificate, openssl s_client -starttls; `parley
-- send --tls`; and our POP3 client against Dovecot with TLS.
local H = require "helper"
local U = require "pop3.support.util"
local certs = require "tls.support.certs"
local DT = require "tls_mail.support.dovecot_tls"

local q = U.q

local c, root, srv, ports

local MSG = "From: bob@example.org\r\nTo: alice@example.org\r\nSubject: seeded\r\n\r\nfirst message\r\n"

setup(function()
  c = certs.make()
  root = U.tmpdir("tlsmail")
  U.users_file(root .. "/users", { alice = "pw" })
  U.write(root .. "/msg.eml", MSG)
  U.store(root .. "/md"):deliver("alice", MSG)
  srv = U.child(("bin/parley serve mail --maildir %s --users %s --domain example.org --auth-delay 0 " ..
    "--smtp 127.0.0.1:0 --submission 127.0.0.1:0 --smtps 127.0.0.1:0 --pop3 127.0.0.1:0 " ..
    "--pop3s 127.0.0.1:0 --tls-cert %s --tls-key %s --transcript %s")
    :format(q(root .. "/md"), q(root .. "/users"), q(c.cert), q(c.key), q(root .. "/transcript")), 5)
  ports = srv.ports
end)

teardown(function()
  if srv then srv.stop() end
  U.rmrf(root)
  certs.remove(c)
end)

before_each(H.fd_snapshot)
after_each(H.fd_check)

local function sh(cmd) return U.sh(cmd) end

local function delivered()
  return #U.files(root .. "/md/alice/new")
end

describe("#interop swaks against parley serve mail", function()
  it("delivers with --tls, verifying the certificate, and authenticates on submission", function()
    local n = delivered()
    local out, ok = sh(("swaks --server 127.0.0.1 --port %d --tls --tls-verify --tls-ca-path %s " ..
      "--auth PLAIN --auth-user alice --auth-password pw --from bob@example.org --to alice@example.org")
      :format(ports.submission, q(c.cert)))
    assert.is_true(ok, out)
    assert.matches("<%-%s+220 2%.0%.0 Ready to start TLS", out)
    assert.matches("=== TLS started with cipher TLSv1%.3", out)
    assert.matches("~> EHLO", out)
    assert.matches("235 2%.7%.0 authentication successful", out)
    assert.are.equal(n + 1, delivered())
  end)

  it("delivers with --tls-on-connect to the submissions port", function()
    local n = delivered()
    local out, ok = sh(("swaks --server 127.0.0.1 --port %d --tls-on-connect --tls-verify " ..
      "--tls-ca-path %s --auth PLAIN --auth-user alice --auth-password pw " ..
      "--from bob@example.org --to alice@example.org"):format(ports.submissions, q(c.cert)))
    assert.is_true(ok, out)
    assert.falsy(out:find("STARTTLS", 1, true))
    assert.are.equal(n + 1, delivered())
  end)
end)

describe("#interop curl --ssl-reqd against parley serve mail", function()
  it("sends by SMTP with STARTTLS and by smtps://", function()
    local n = delivered()
    for _, url in ipairs { "smtp://127.0.0.1:" .. ports.submission, "smtps://127.0.0.1:" .. ports.submissions } do
      local out, ok = sh(("curl -sS --ssl-reqd --cacert %s --url %s -u alice:pw --mail-from bob@example.org " ..
        "--mail-rcpt alice@example.org -T %s"):format(q(c.cert), q(url), q(root .. "/msg.eml")))
      assert.is_true(ok, url .. ": " .. out)
    end
    assert.are.equal(n + 2, delivered())
  end)

  it("reads a message by POP3 with STLS and by pop3s://", function()
    for _, url in ipairs { "pop3://127.0.0.1:" .. ports.pop3 .. "/1", "pop3s://127.0.0.1:" .. ports.pop3s .. "/1" } do
      local out, ok = sh(("curl -sS --ssl-reqd --cacert %s -u alice:pw %s"):format(q(c.cert), q(url)))
      assert.is_true(ok, url .. ": " .. out)
      assert.matches("Subject: seeded", out)
    end
  end)

  it("refuses our certificate without the test CA", function()
    local out, ok = sh(("curl -sS --ssl-reqd -u alice:pw pop3://127.0.0.1:%d/1"):format(ports.pop3))
    assert.is_falsy(ok)
    assert.matches("certificate", out)
  end)
end)

describe("#interop python3 smtplib and poplib against parley serve mail", function()
  it("uses starttls/stls and the implicit-TLS classes with a context trusting the test CA", function()
    local script = ([[
import ssl, smtplib, poplib
ctx = ssl.create_default_context(cafile=%q)
s = smtplib.SMTP("127.0.0.1", %d)
s.ehlo()
assert s.has_extn("starttls")
s.starttls(context=ctx)
s.ehlo()
assert not s.has_extn("starttls")
s.login("alice", "pw")
s.sendmail("bob@example.org", ["alice@example.org"], "Subject: smtplib\r\n\r\nhi\r\n")
s.quit()
s = smtplib.SMTP_SSL("127.0.0.1", %d, context=ctx)
s.login("alice", "pw")
s.sendmail("bob@example.org", ["alice@example.org"], "Subject: smtp_ssl\r\n\r\nhi\r\n")
s.quit()
p = poplib.POP3("127.0.0.1", %d)
assert "STLS" in p.capa()
p.stls(context=ctx)
assert "STLS" not in p.capa()
p.user("alice"); p.pass_("pw")
print("stls", p.stat()[0])
p.quit()
p = poplib.POP3_SSL("127.0.0.1", %d, context=ctx)
p.user("alice"); p.pass_("pw")
print("pop3_ssl", b"\r\n".join(p.retr(1)[1]).decode())
p.quit()
]]):format(c.cert, ports.submission, ports.submissions, ports.pop3, ports.pop3s)
    local n = delivered()
    U.write(root .. "/t.py", script)
    local out, ok = sh("/usr/bin/python3 " .. q(root .. "/t.py"))
    assert.is_true(ok, out)
    assert.matches("stls %d+", out)
    assert.matches("pop3_ssl .*Subject: seeded", out)
    assert.are.equal(n + 2, delivered())
  end)
end)

describe("#interop openssl s_client -starttls against parley serve mail", function()
  local function s_client(proto, port, input)
    return sh(("(printf %s; sleep 1) | openssl s_client -starttls %s -connect 127.0.0.1:%d -CAfile %s " ..
      "-verify_return_error -verify_hostname localhost"):format(q(input), proto, port, q(c.cert)))
  end

  it("verifies the certificate after SMTP STARTTLS and gets EHLO without STARTTLS", function()
    local out = s_client("smtp", ports.smtp, "EHLO x\r\nQUIT\r\n")
    assert.matches("Verify return code: 0 %(ok%)", out)
    assert.matches("250%-SMTPUTF8", out)
    assert.matches("221 2%.0%.0", out)
  end)

  it("verifies the certificate after POP3 STLS and logs in", function()
    local out = s_client("pop3", ports.pop3, "USER alice\r\nPASS pw\r\nSTAT\r\nQUIT\r\n")
    assert.matches("Verify return code: 0 %(ok%)", out)
    assert.matches("%+OK alice has %d+ messages", out)
  end)

  it("left TLS events on the shared transcript", function()
    local tr = U.slurp(root .. "/transcript")
    assert.matches("TLS started %(TLSv1%.3, ", tr)
    assert.matches("C: PASS %*%*%*%*", tr)
  end)
end)

describe("#interop parley send --tls against parley serve mail", function()
  local function send(args)
    return sh(("lua5.4 %s/bin/parley send --server 127.0.0.1:%d --from bob@example.org " ..
      "--to alice@example.org --subject s --body b --auth alice:pw %s"):format(q(H.root), ports.submission, args))
  end

  it("sends over STARTTLS with --ca and over implicit TLS", function()
    local out, ok = send("--tls --ca " .. q(c.cert))
    assert.is_true(ok, out)
    assert.matches("%* TLS started", out)
    out, ok = sh(("lua5.4 %s/bin/parley send --server 127.0.0.1:%d --from bob@example.org " ..
      "--to alice@example.org --subject s --body b --auth alice:pw --tls-implicit --ca %s")
      :format(q(H.root), ports.submissions, q(c.cert)))
    assert.is_true(ok, out)
  end)

  it("fails to verify without --ca and warns with --insecure", function()
    local out, ok = send("--tls")
    assert.is_falsy(ok)
    assert.matches("certificate verify failed: self%-signed certificate", out)
    out, ok = send("--tls --insecure")
    assert.is_true(ok, out)
    assert.matches("warning: %-%-insecure", out)
  end)
end)

describe("#interop our POP3 client against Dovecot with TLS", function()
  it("logs in after STLS and on POP3S, verifying Dovecot's certificate", function()
    if not DT.available() then pending(DT.why) return end
    local dir = U.tmpdir("dovecot-tls")
    local dv = DT.start(dir, { alice = "pw" }, c.cert, c.key)
    local ok, err = pcall(H.run, function()
      local client = require "parley.pop3.client"
      local cl = assert(client.connect("127.0.0.1", dv.port, { tls = "required", ca = c.cert }))
      assert.is_true(cl:tlsinfo().verified)
      assert.is_nil(cl.caps.STLS)
      assert(cl:login("alice", "pw"))
      assert(cl:quit())
      cl = assert(client.connect("127.0.0.1", dv.tls_port, { tls = "implicit", ca = c.cert }))
      assert(cl:login("alice", "pw"))
      assert(cl:quit())
    end, 30)
    dv.stop()
    U.rmrf(dir)
    assert(ok, err)
  end)
end)
