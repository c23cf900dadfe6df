-- A round trip through the protocol clients: send a uniquely tagged
-- message by SMTP, then wait (polling IMAP SEARCH, at most `wait`
-- seconds) until it is in the INBOX, and read it back.
--
--   bin/parley run examples/scenarios/mail_roundtrip.lua --var password=PW
--
-- vars: smtp (default smtp://127.0.0.1:2525), imap (imap://127.0.0.1:1143),
-- user (strategos), password, to (strategos@example.org), wait (10).
local scenario = require "parley.scenario"

return scenario("mail round trip: SMTP in, IMAP out", function(s)
  local v = s.vars
  local user = v.user or "strategos"
  local token = ("roundtrip-%d-%d"):format(os.time(), math.random(1e6))
  s:smtp_send{ server = (v.smtp or "smtp://127.0.0.1:2525"):match("^smtp://(.*)$"),
    from = "roundtrip@example.net", to = v.to or (user .. "@example.org"),
    message = "Subject: " .. token .. "\r\n\r\nsent by a parley scenario\r\n" }
  local m = s:imap{ url = v.imap or "imap://127.0.0.1:1143", user = user, password = v.password or "" }
  local found
  s:step("wait for delivery", function()
    local deadline = os.time() + tonumber(v.wait or 10)
    repeat
      m:select("INBOX")
      found = m:search("SUBJECT", token)
      if found and #found > 0 then return end
      s:sleep(0.2)
    until os.time() > deadline
    s:fail("no message with subject " .. token)
  end)
  if not (found and found[1]) then return end
  local items = m:fetch(found[#found], "BODY.PEEK[]")
  local body = items and items[1] and items[1]["BODY[]"] or ""
  s:check(body:find("sent by a parley scenario", 1, true), "the body arrived intact")
  m:logout()
end)
