-- The tour's STARTTLS session (RFC 3207): the cleartext dialogue up to
-- the server's go-ahead, the handshake, then EHLO again over TLS.
local scenario = require "parley.scenario"

local sc = scenario("SMTP STARTTLS: EHLO, STARTTLS, the handshake, EHLO again", function(s)
  local v = s.vars
  local c = s:connect(v.smtp)
  c:expect(220)
  c:send("EHLO client.lab.example")
  local r = c:expect(250)
  if r then s:check(r.text:find("STARTTLS", 1, true), "the server offers STARTTLS") end
  c:send("STARTTLS")
  c:expect("^220 2%.0%.0 Ready to start TLS")
  -- from here on the bytes on the wire are encrypted; the lab's
  -- self-signed certificate is the one to trust
  c:starttls{ ca = v.ca }
  -- RFC 3207 4.2: what was said before TLS is forgotten, so EHLO again
  c:send("EHLO client.lab.example")
  r = c:expect(250)
  if r then s:check(not r.text:find("STARTTLS", 1, true), "STARTTLS is not offered twice") end
  c:send("QUIT")
  c:expect(221)
  c:close()
end)

sc.about = "A mail client says STARTTLS and shows a padlock: before it the dialogue is "
  .. "cleartext, after the handshake the server forgets it and EHLO starts over, encrypted."
return sc
