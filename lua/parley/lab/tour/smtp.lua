-- The tour's SMTP session: a message typed by hand (RFC 5321 3.3), then
-- found in strategos's Maildir.
local scenario = require "parley.scenario"

local SUBJECT = "Typed by hand"

local sc = scenario("SMTP by hand: HELO, MAIL FROM, RCPT TO, DATA, QUIT", function(s)
  local v = s.vars
  local before = #(v.store:mailbox(v.user):scan() or {})
  local c = s:connect(v.smtp)
  c:expect(220)
  c:send("HELO client.lab.example")
  c:expect(250)
  -- the envelope: where the message goes, whatever its header says
  c:send("MAIL FROM:<xenophon@" .. v.domain .. ">")
  c:expect(250)
  c:send("RCPT TO:<" .. v.user .. "@" .. v.domain .. ">")
  c:expect(250)
  c:send("DATA")
  c:expect(354)
  c:send("From: Xenophon <xenophon@" .. v.domain .. ">")
  c:send("To: Strategos <" .. v.user .. "@" .. v.domain .. ">")
  c:send("Subject: " .. SUBJECT)
  c:send("Date: " .. os.date("!%a, %d %b %Y %H:%M:%S +0000"))
  c:send("")
  c:send("Every line of this message crossed the wire as you see it.")
  c:send("A line holding only a dot ends it:")
  c:send(".")
  c:expect(250)
  c:send("QUIT")
  c:expect(221)
  c:close()

  s:step("the message is in strategos's Maildir", function()
    local msgs = assert(v.store:mailbox(v.user):scan())
    assert(#msgs == before + 1, ("%d messages, expected %d"):format(#msgs, before + 1))
    local fh = assert(io.open(msgs[#msgs].path, "rb"))
    local text = fh:read("a")
    fh:close()
    assert(text:find("Subject: " .. SUBJECT, 1, true), "the newest message is not the one sent")
  end)
end)

sc.full = true   -- show the message as typed, not "[239 bytes]"
sc.about = "A mail client hides this dialogue behind its Send button: the envelope "
  .. "(MAIL FROM, RCPT TO) decides where a message goes, whatever its From: and To: lines say."
return sc
