-- parley.scenario over TLS: c:starttls() after the script's STARTTLS,
-- implicit-TLS URL schemes in s:connect, ca / insecure from the options
-- or from s.vars (what `parley run --var` sets).
local parley = require "parley"
local H = require "helper"
local certs = require "tls.support.certs"
local scenario = require "parley.scenario"

local c

setup(function() c = certs.make() end)
teardown(function() certs.remove(c) end)

-- parley's SMTP and POP3 servers with STARTTLS/STLS and implicit-TLS ports
local function with_mail(fn)
  H.run(function()
    local dir = H.tmpdir()
    local store = assert(require("parley.mail.maildir").open(dir .. "/md", { fsync = false }))
    local started = assert(require("parley.mail.cli").start{ store = store,
      users = require("parley.mail.users").from_table{ alice = "pw" }, auth_delay = 0,
      smtp = "127.0.0.1:0", pop3 = "127.0.0.1:0", smtps = "127.0.0.1:0", pop3s = "127.0.0.1:0",
      domain = { "localhost" }, tls_cert = c.cert, tls_key = c.key })
    local m = {}
    for _, s in ipairs(started) do m[s.proto], m[s.proto .. "s"] = s.server.port, s.server.tls_port end
    local ok, err = pcall(fn, m)
    for _, s in ipairs(started) do s.server:close(0) end
    H.rmdir(dir)
    if not ok then error(err, 0) end
  end, 30)
end

local function failures(rep)
  local t = {}
  for _, st in ipairs(rep.steps) do
    if st.status ~= "pass" then t[#t + 1] = st.status .. " " .. st.name .. ": " .. tostring(st.error) end
  end
  return table.concat(t, "\n")
end

local function events(rep)
  local t = {}
  for _, e in ipairs(rep.transcript) do if e.dir == "*" then t[#t + 1] = e.text end end
  return table.concat(t, "\n")
end

describe("a scenario's c:starttls()", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("upgrades after STARTTLS and its 220, then EHLO starts over", function()
    with_mail(function(m)
      local info, auth
      local rep = scenario.run(scenario("smtp starttls", function(s)
        local conn = s:connect("smtp://127.0.0.1:" .. m.smtp)
        conn:expect(220)
        conn:send("EHLO client.example")
        local r = conn:expect(250)
        s:check(r and r.text:find("STARTTLS", 1, true), "STARTTLS offered")
        conn:send("STARTTLS")
        conn:expect("^220 2%.0%.0 Ready to start TLS")
        info = conn:starttls{ ca = c.cert }
        conn:send("EHLO client.example")
        r = conn:expect(250)
        auth = r and r.text:find("AUTH PLAIN", 1, true)
        conn:send("QUIT")
        conn:expect(221)
        conn:close()
      end))
      assert.is_true(rep.ok, failures(rep))
      assert.matches("^TLSv1", info.version)
      assert.equal("CN=localhost", info.peer.subject)
      assert.truthy(auth)
      assert.matches("TLS started (TLSv1.", events(rep), 1, true)
      local names = {}
      for _, st in ipairs(rep.steps) do names[#names + 1] = st.name end
      assert.truthy(table.concat(names, ","):find('expect "^220 2%.0%.0 Ready to start TLS",starttls,', 1, true))
    end)
  end)

  it("fails the step when the server sends bytes past its go-ahead", function()
    H.run(function()
      local srv = assert(parley.serve{ listen = "127.0.0.1:0", signals = false, timeout = 5,
        handler = function(conn)
          conn:send("220 fake\r\n")
          conn:receive("l")
          conn:send("220 go ahead\r\n250 injected\r\n")   -- CVE-2011-0411 the other way round
          conn:flush()
          conn:settimeout(2)
          conn:receive("l")
        end })
      local rep = scenario.run(scenario("pipelined go-ahead", function(s)
        local conn = s:connect("tcp://127.0.0.1:" .. srv.port)
        conn:expect(220)
        conn:send("STARTTLS")
        conn:expect("^220 go ahead")
        conn:starttls{ insecure = true }
      end))
      srv:close(0)
      assert.is_false(rep.ok)
      local last = rep.steps[#rep.steps]
      assert.equal("starttls", last.name)
      assert.equal("data after starttls", last.error)
    end)
  end)

  it("refuses a certificate it cannot verify, unless told insecure", function()
    with_mail(function(m)
      local function attempt(opts, vars)
        return scenario.run(scenario("pop3 stls", function(s)
          local conn = s:connect("pop3://127.0.0.1:" .. m.pop3)
          conn:expect("^%+OK")
          conn:send("STLS")
          conn:expect("^%+OK")
          conn:starttls(opts)
          conn:send("CAPA")
          conn:expect_multiline()
          conn:send("QUIT")
          conn:expect("^%+OK")
        end), { vars = vars })
      end
      local refused = attempt()
      local insecure = attempt(nil, { insecure = "1" })
      assert.is_false(refused.ok)
      assert.matches("certificate verify failed: self%-signed certificate", failures(refused))
      assert.is_true(insecure.ok, failures(insecure))
    end)
  end)
end)

describe("a scenario's implicit-TLS URLs", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("speaks TLS from the first byte on smtps:// and pop3s://, trusting --var ca", function()
    with_mail(function(m)
      local infos = {}
      local rep = scenario.run(scenario("implicit", function(s)
        local sm = s:connect("smtps://127.0.0.1:" .. m.smtps)
        sm:expect(220)
        sm:send("EHLO client.example")
        local r = sm:expect(250)
        s:check(r and r.text:find("AUTH PLAIN", 1, true), "AUTH offered over TLS")
        s:check(r and not r.text:find("STARTTLS", 1, true), "no STARTTLS inside TLS")
        infos.smtp = sm:tlsinfo()
        local p = s:connect("pop3s://127.0.0.1:" .. m.pop3s)
        p:expect("^%+OK")
        p:send("USER alice")
        p:expect("^%+OK")
        p:send("PASS pw")
        p:expect("^%+OK")
        infos.pop3 = p:tlsinfo()
      end), { vars = { ca = c.cert } })
      assert.is_true(rep.ok, failures(rep))
      assert.is_true(infos.smtp.verified)
      assert.is_true(infos.pop3.verified)
      assert.matches("TLS started (TLSv1.", events(rep), 1, true)
      -- the transcript still reads POP3: the password is masked
      local all = {}
      for _, e in ipairs(rep.transcript) do all[#all + 1] = e.text end
      assert.truthy(table.concat(all, "\n"):find("PASS ****", 1, true))
    end)
  end)

  it("fails the connect step on a certificate that does not verify, and knows the default ports", function()
    with_mail(function(m)
      local rep = scenario.run(scenario("untrusted", function(s)
        s:connect("smtps://127.0.0.1:" .. m.smtps)
      end))
      assert.is_false(rep.ok)
      assert.matches("^fail connect smtps://.*certificate verify failed: self%-signed certificate", failures(rep))
    end)
    local ports = require("parley.scenario.conn").PORTS
    assert.same({ 465, 465, 995, 993, 990, 443 },
      { ports.smtps, ports.submissions, ports.pop3s, ports.imaps, ports.ftps, ports.https })
  end)
end)
