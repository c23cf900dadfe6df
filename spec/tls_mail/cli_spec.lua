-- The TLS flags of `parley serve smtp|pop3|mail` and `parley send`: what
-- each listener announces, and the usage errors of incomplete sets.
local H = require "helper"
local U = require "pop3.support.util"
local certs = require "tls.support.certs"
local client = require "parley.smtp.client"
local pop3 = require "parley.pop3.client"

local q = U.q
local c, root

setup(function()
  c = certs.make()
  root = U.tmpdir("tlscli")
  U.users_file(root .. "/users", { alice = "pw" })
end)
teardown(function()
  U.rmrf(root)
  certs.remove(c)
end)

before_each(H.fd_snapshot)
after_each(H.fd_check)

local function parley(args)
  return U.sh(("cd %s && lua5.4 bin/parley %s"):format(q(H.root), args))
end

describe("parley serve with TLS flags", function()
  it("announces the implicit-TLS ports of smtp and pop3 and serves TLS on them", function()
    local tlsargs = ("--tls-cert %s --tls-key %s --listen-tls 127.0.0.1:0"):format(q(c.cert), q(c.key))
    local smtp = U.child(("bin/parley serve smtp --listen 127.0.0.1:0 --sink %s"):format(tlsargs), 2)
    local pop = U.child(("bin/parley serve pop3 --listen 127.0.0.1:0 --maildir %s --users %s %s")
      :format(q(root .. "/md"), q(root .. "/users"), tlsargs), 2)
    local ok, err = pcall(H.run, function()
      local r = assert(client.send{ server = "127.0.0.1:" .. smtp.ports.smtps, tls = "implicit",
        ca = c.cert, from = "a@example.org", to = "b@example.org", message = "Subject: x\r\n\r\ny\r\n" })
      assert.are.same({ "b@example.org" }, r.accepted)
      local p = assert(pop3.connect("127.0.0.1", pop.ports.pop3, { tls = "required", ca = c.cert }))
      assert(p:login("alice", "pw"))
      assert(p:quit())
      p = assert(pop3.connect("127.0.0.1", pop.ports.pop3s, { tls = "implicit", ca = c.cert }))
      assert(p:quit())
    end)
    smtp.stop()
    pop.stop()
    assert(ok, err)
  end)

  it("refuses incomplete TLS options with a usage error", function()
    local out, ok = parley(("serve smtp --sink --listen 127.0.0.1:0 --tls-cert %s"):format(q(c.cert)))
    assert.is_falsy(ok)
    assert.matches("%-%-tls%-cert and %-%-tls%-key go together", out)
    out, ok = parley(("serve pop3 --maildir %s --users %s --listen-tls 127.0.0.1:0")
      :format(q(root .. "/md"), q(root .. "/users")))
    assert.is_falsy(ok)
    assert.matches("%-%-listen%-tls needs %-%-tls%-cert and %-%-tls%-key", out)
    out, ok = parley(("serve mail --maildir %s --users %s --pop3s 127.0.0.1:0")
      :format(q(root .. "/md"), q(root .. "/users")))
    assert.is_falsy(ok)
    assert.matches("%-%-pop3s needs %-%-tls%-cert and %-%-tls%-key", out)
    out, ok = parley(("serve mail --maildir %s --users %s --tls-cert %s --tls-key %s --imaps 127.0.0.1:0")
      :format(q(root .. "/md"), q(root .. "/users"), q(c.cert), q(c.key)))
    assert.is_falsy(ok)
    assert.matches("%-%-imaps needs %-%-imap ADDR", out)
    out, ok = parley(("serve smtp --sink --listen 127.0.0.1:0 --tls-cert %s --tls-key %s")
      :format(q(root .. "/missing.crt"), q(c.key)))
    assert.is_falsy(ok)
    assert.matches("cannot read cert .*missing%.crt", out)
  end)

  it("refuses --ca and --insecure without --tls in parley send", function()
    local out, ok = parley("send --server 127.0.0.1:1 --from a@b --to c@d --subject s --body b --insecure")
    assert.is_falsy(ok)
    assert.matches("%-%-ca and %-%-insecure need %-%-tls or %-%-tls%-implicit", out)
    out, ok = parley("send --server 127.0.0.1:1 --from a@b --to c@d --subject s --body b --tls --tls-implicit")
    assert.is_falsy(ok)
    assert.matches("exclude each other", out)
  end)
end)
