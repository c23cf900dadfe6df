-- The tour's Telnet session: the login, then the menu app (RFC 854).
local scenario = require "parley.scenario"

local sc = scenario("Telnet: a login, then the menu app", function(s)
  local v = s.vars
  local c = s:connect(v.telnet, { naws = { 80, 24 }, ttype = "XTERM" })
  c:expect("login: ")
  c:send(v.user)
  c:expect("Password: ")
  c:send(v.password)
  c:expect("parley telnet menu")
  c:send_raw("1")   -- one key (the menu reads keys): the Session page
  c:expect("user:%s+" .. v.user)
  c:expect("window size:%s+80x24")
  c:send_raw("q")
  c:expect("bye")
  c:close()
end)

sc.about = "Telnet is one byte stream: options are negotiated inside it (IAC DO/WILL: "
  .. "terminal type, window size, echo), and the password crosses it in cleartext."
return sc
