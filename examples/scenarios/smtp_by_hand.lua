-- An SMTP session typed by hand, as a scenario: greeting, EHLO, one
-- message through MAIL / RCPT / DATA, QUIT.
--
--   bin/parley run examples/scenarios/smtp_by_hand.lua --var host=127.0.0.1:2525
--
-- vars: url (smtp://HOST:PORT) or host (HOST:PORT), default the lab's
-- 127.0.0.1:2525; from, to (default strategos@example.org, the lab's user).
local scenario = require "parley.scenario"

return scenario("SMTP by hand", function(s)
  local from = s.vars.from or "tourist@example.net"
  local to = s.vars.to or "strategos@example.org"
  local c = s:connect(s.vars.url or ("smtp://" .. (s.vars.host or "127.0.0.1:2525")))
  c:expect(220)
  c:send("EHLO lab.example")
  local r = c:expect(250)
  s:check(r.text:find("PIPELINING"), "server offers PIPELINING")
  c:send("MAIL FROM:<" .. from .. ">")
  c:expect(250)
  c:send("RCPT TO:<" .. to .. ">")
  c:expect(250)
  c:send("DATA")
  c:expect(354)
  s:step("message", function()
    c:send("From: <" .. from .. ">")
    c:send("To: <" .. to .. ">")
    c:send("Subject: typed by hand")
    c:send("")
    c:send("Hello from a parley scenario.")
    c:send("..a line that starts with a dot, stuffed (RFC 5321 4.5.2)")
    c:send(".")
    c:capture("^250 .-([%w.]+)%s*$", { as = "queue_id" })
  end)
  c:send("QUIT")
  c:expect(221)
  c:close()
end)
