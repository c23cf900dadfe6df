-- What every check says when the service is not there: a server that
-- never answers (the deadline, with the phase), a refused connection, a
-- bad URL; and the -w / -c thresholds on the whole check.
local H = require "helper"
local E = require "check.support.env"
local check = require "parley.check"

local URLS = {
  smtp = "smtp://127.0.0.1:%d", pop3 = "pop3://a:b@127.0.0.1:%d", imap = "imap://a:b@127.0.0.1:%d/INBOX",
  ftp = "ftp://127.0.0.1:%d/", http = "http://127.0.0.1:%d/", telnet = "telnet://127.0.0.1:%d",
}
local SILENT_PHASE = { smtp = "greeting", pop3 = "greeting", imap = "greeting", ftp = "greeting",
  http = "request" }

describe("a check against a server that never answers", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  for _, scheme in ipairs { "smtp", "pop3", "imap", "ftp", "http" } do
    it("is CRITICAL for " .. scheme .. " after the timeout, naming the phase", function()
      H.run(function()
        local l = E.silent()
        local r = check.run(URLS[scheme]:format(l:port()), { timeout = 0.3 })
        l:close()
        assert.equal(2, r.status)
        assert.equal(("%s CRITICAL - timeout after 0.3 s in %s"):format(scheme:upper(), SILENT_PHASE[scheme]),
          r.line:match("^[^|]*"):gsub(" $", ""))
        assert.is_true(r.perfdata.time.value >= 0.3)
      end)
    end)
  end

  it("is CRITICAL for telnet --expect, and OK without it (connected is enough)", function()
    H.run(function()
      local l = E.silent()
      local r = check.run(URLS.telnet:format(l:port()), { timeout = 0.3, expect = "login:" })
      local plain = check.run(URLS.telnet:format(l:port()), { timeout = 0.3 })
      l:close()
      assert.equal("CRITICAL", r.state)
      assert.matches('no "login:" in the output %(timeout', r.summary)
      assert.equal("OK", plain.state)
    end)
  end)

  it("is CRITICAL when the server stops answering in the middle (phase ehlo)", function()
    H.run(function()
      local parley = require "parley"
      local srv = parley.serve{ listen = "127.0.0.1:0", signals = false, handler = function(conn)
        conn:send("220 slow ESMTP\r\n")
        conn:receive()          -- EHLO, never answered
        conn:receive()
      end }
      local r = check.run(URLS.smtp:format(srv.port), { timeout = 0.3 })
      srv:close(0)
      assert.equal("SMTP CRITICAL - timeout after 0.3 s in ehlo", r.line:match("^(.-) |"))
    end)
  end)
end)

describe("a check against a closed port", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  for _, scheme in ipairs { "smtp", "pop3", "imap", "ftp", "http", "telnet" } do
    it("is CRITICAL for " .. scheme .. ": connection refused", function()
      H.run(function()
        local port = E.closed_port()
        local r = check.run(URLS[scheme]:format(port))
        assert.equal(2, r.status)
        assert.matches("connection refused", r.summary)
      end)
    end)
  end
end)

describe("a bad URL or option", function()
  it("is UNKNOWN (exit 3) and says why", function()
    assert.equal("CHECK UNKNOWN - bad URL \"nonsense\"", check.run("nonsense").line)
    assert.equal("CHECK UNKNOWN - unknown scheme \"gopher\"", check.run("gopher://h").line)
    assert.equal("SMTP UNKNOWN - bad URL \"smtp://\"", check.run("smtp://").line)
    assert.equal("HTTP UNKNOWN - bad port in URL \"http://h:99999/\"", check.run("http://h:99999/").line)
    assert.equal(3, check.run("pop3://h").status)
    assert.equal("SMTP UNKNOWN - --tls and --tls-implicit exclude each other",
      check.run("smtp://h", { tls = true, tls_implicit = true }).line)
  end)

  it("raises on wrong argument types", function()
    assert.has_error(function() check.run(42) end, "url must be a string")
    assert.has_error(function() check.run("smtp://h", { timeout = "10" }) end)
    assert.has_error(function() check.roundtrip("smtp://h") end, "roundtrip expects a table")
  end)
end)

describe("the -w and -c thresholds", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("turn a check that took longer into WARNING or CRITICAL, and print them in perfdata", function()
    H.run(function()
      local m = E.mail()
      local u = ("smtp://127.0.0.1:%d"):format(m.smtp)
      local fine = check.run(u, { warning = 30, critical = 60 })
      local warn = check.run(u, { warning = 0, critical = 60 })
      local crit = check.run(u, { warning = 0, critical = 0 })
      m.close()
      assert.equal("OK", fine.state)
      assert.matches("| time=%d+%.%d+s;30%.000;60%.000;0;$", fine.line)
      assert.equal(1, warn.status)
      assert.matches("time %d+%.%d+ s over the warning threshold %(0 s%)", warn.summary)
      assert.equal(2, crit.status)
      assert.matches("over the critical threshold", crit.summary)
    end)
  end)

  it("do not hide a CRITICAL finding", function()
    H.run(function()
      local r = check.run(("smtp://127.0.0.1:%d"):format(E.closed_port()), { warning = 100 })
      assert.equal("CRITICAL", r.state)
    end)
  end)
end)
