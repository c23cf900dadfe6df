-- The tour's POP3 session: USER / PASS / STAT / LIST / RETR (RFC 1939).
local scenario = require "parley.scenario"

local sc = scenario("POP3: USER, PASS, STAT, LIST, RETR", function(s)
  local v = s.vars
  local c = s:connect(v.pop3)
  c:expect("^%+OK")
  c:send("USER " .. v.user)
  c:expect("^%+OK")
  c:send("PASS " .. v.password)
  c:expect("^%+OK")
  c:send("STAT")
  local count = c:capture("^%+OK (%d+) %d+")
  c:send("LIST")
  local list = c:expect_multiline()
  if list then s:check(#list.lines == tonumber(count), "LIST shows as many messages as STAT counts") end
  c:send("RETR " .. (count or 1))   -- the newest: the one typed over SMTP
  local msg = c:expect_multiline()
  if msg then s:check(msg.text:find("Subject: Typed by hand", 1, true), "RETR gives the message typed over SMTP") end
  c:send("QUIT")
  c:expect("^%+OK")
  c:close()
end)

sc.about = "POP3 downloads mail: how many messages (STAT), how large each (LIST), one "
  .. "whole message (RETR); a line holding only a dot ends every multi-line answer."
return sc
