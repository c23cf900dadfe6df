-- `parley check` as a monitoring system runs it: a child process, one
-- line on stdout, the state in the exit status; the mail round trip
-- against `parley serve mail` in another child; examples/check_roundtrip.lua.
local H = require "helper"
local E = require "check.support.env"
local check = require "parley.check"

describe("parley check (command line)", function()
  local m
  setup(function() m = E.mail_child() end)
  teardown(function() if m then m.stop() end end)

  it("exits 0 with one OK line", function()
    local out, _, code = E.parley_check(("smtp://127.0.0.1:%d"):format(m.smtp), "-w", "30", "-c", "60")
    assert.equal(0, code)
    assert.matches("^SMTP OK %- 127%.0%.0%.1:%d+ .* | time=%d+%.%d+s;30%.000;60%.000;0;\n$", out)
  end)

  it("exits 1 for WARNING and 2 for CRITICAL", function()
    local _, _, w = E.parley_check(("imap://alice:pw@127.0.0.1:%d/INBOX"):format(m.imap), "--warning", "0")
    local out, _, c = E.parley_check(("pop3://alice:pw@127.0.0.1:%d"):format(m.pop3), "--subject", "absent")
    assert.equal(1, w)
    assert.equal(2, c)
    assert.matches("^POP3 CRITICAL %- ", out)
  end)

  it("exits 2 with the phase after -t", function()
    local l = E.silent()
    local out, _, code = E.parley_check(("smtp://127.0.0.1:%d"):format(l:port()), "-t", "0.5")
    l:close()
    assert.equal(2, code)
    assert.matches("^SMTP CRITICAL %- timeout after 0%.5 s in greeting |", out)
  end)

  it("exits 3 for a bad URL, an unknown option, a bad threshold and misused TLS options", function()
    local cases = {
      { { "nonsense" }, "CHECK UNKNOWN - bad URL" },
      { { "smtp://h", "--bogus" }, "CHECK UNKNOWN - unknown option --bogus" },
      { { "smtp://h", "-w", "soon" }, "CHECK UNKNOWN - bad threshold" },
      { {}, "CHECK UNKNOWN - a URL is needed" },
      { { "telnet://h", "--tls" }, "TELNET UNKNOWN - telnet has no TLS" },
      { { "smtp://h", "-D", "30,7" }, "SMTP UNKNOWN - --insecure, --ca and -D need --tls" },
      { { "smtps://h", "--tls" }, "SMTP UNKNOWN - --tls (STARTTLS) with the implicit-TLS URL" },
      { { "smtp://h", "-D", "soon" }, "CHECK UNKNOWN - -D needs WARN,CRIT" },
      { { "http://h/", "--status", "2xx" }, "CHECK UNKNOWN - --status needs codes" },
    }
    for _, case in ipairs(cases) do
      local out, _, code = E.parley_check(table.unpack(case[1]))
      assert.equal(3, code, out)
      assert.equal(case[2], out:sub(1, #case[2]))
    end
  end)

  it("prints the dialogue on stderr with -v, passwords masked", function()
    local out, err, code = E.parley_check(("imap://alice:pw@127.0.0.1:%d/INBOX"):format(m.imap), "-v")
    assert.equal(0, code)
    assert.matches("^IMAP OK", out)
    assert.matches("C: p1 LOGIN \"alice\" %*%*%*%*", err)
    assert.not_matches("\"pw\"", err)
  end)

  it("explains itself with --help and lists check in parley help", function()
    local out, _, code = E.parley_check("--help")
    assert.equal(0, code)
    assert.matches("usage: parley check URL", out)
    local help = E.sh("lua5.4 bin/parley help")
    assert.matches("check URL", help)
  end)

  for _, rx in ipairs { "imap", "pop3" } do
    it("times the round trip from SMTP to " .. rx .. " and deletes the message", function()
      local before = E.count(m.dir .. "/md")
      local rx_url = ("%s://alice:pw@127.0.0.1:%d%s"):format(rx, m[rx], rx == "imap" and "/INBOX" or "")
      local out, _, code = E.parley_check("--roundtrip", "--smtp", ("smtp://127.0.0.1:%d"):format(m.smtp),
        "--" .. rx, rx_url, "-c", "30")
      assert.equal(0, code, out)
      assert.matches("^ROUNDTRIP OK %- SMTP 127%.0%.0%.1:%d+ to " .. rx:upper() .. " .*: seen after", out)
      assert.matches("roundtrip=%d+%.%d+s;;30%.000;0;", out)
      assert.equal(before, E.count(m.dir .. "/md"))
    end)
  end

  it("keeps the round-trip message with --keep", function()
    local before = E.count(m.dir .. "/md")
    local out, _, code = E.parley_check("--roundtrip", "--smtp", ("smtp://127.0.0.1:%d"):format(m.smtp),
      "--imap", ("imap://alice:pw@127.0.0.1:%d"):format(m.imap), "--keep")
    assert.equal(0, code, out)
    assert.matches("kept%)", out)
    assert.equal(before + 1, E.count(m.dir .. "/md"))
  end)

  it("is UNKNOWN for a round trip without its URLs", function()
    local out, _, code = E.parley_check("--roundtrip", "--smtp", "smtp://127.0.0.1:1")
    assert.equal(3, code)
    assert.matches("^ROUNDTRIP UNKNOWN %- give one of the IMAP or POP3 URLs", out)
  end)

  it("runs examples/check_roundtrip.lua against the same server", function()
    local out, err, code = E.sh(("lua5.4 examples/check_roundtrip.lua smtp://127.0.0.1:%d %s 10")
      :format(m.smtp, ("imap://alice:pw@127.0.0.1:%d/INBOX"):format(m.imap)))
    assert.equal(0, code, out .. err)
    assert.matches("^ROUNDTRIP OK", out)
    assert.matches("delivered and seen in %d+ ms", out)
  end)
end)

describe("parley.check.roundtrip (library)", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("is CRITICAL when the message never reaches the mailbox watched", function()
    H.run(function()
      local a, b = E.mail(), E.mail()   -- sent to one server, watched on another
      local r = check.roundtrip{ smtp = ("smtp://127.0.0.1:%d"):format(a.smtp),
        pop3 = ("pop3://alice:pw@127.0.0.1:%d"):format(b.pop3), timeout = 1.2 }
      a.close()
      b.close()
      assert.equal("CRITICAL", r.state, r.line)
      assert.matches("not seen by POP3 127%.0%.0%.1:%d+ within 1%.2 s", r.summary)
    end)
  end)

  it("is CRITICAL naming the SMTP phase when SMTP refuses", function()
    H.run(function()
      local m = E.mail()
      local r = check.roundtrip{ smtp = ("smtp://127.0.0.1:%d"):format(E.closed_port()),
        imap = ("imap://alice:pw@127.0.0.1:%d"):format(m.imap) }
      m.close()
      assert.equal("CRITICAL", r.state)
      assert.matches(": smtp connect: connection refused", r.summary)
    end)
  end)
end)
