-- The tour's first IMAP session: LOGIN / SELECT / FETCH 1 BODY[] /
-- LOGOUT (RFC 3501).
local scenario = require "parley.scenario"

local sc = scenario("IMAP: LOGIN, SELECT, FETCH 1 BODY[], LOGOUT", function(s)
  local v = s.vars
  local c = s:connect(v.imap)
  c:expect("^%* OK")
  c:send(('a1 LOGIN %s "%s"'):format(v.user, v.password))
  c:expect_tagged("a1")
  c:send("a2 SELECT INBOX")
  local sel = c:expect_tagged("a2")
  if sel then
    local exists = false
    for _, u in ipairs(sel.untagged) do exists = exists or u:match("^%* %d+ EXISTS") ~= nil end
    s:check(exists, "SELECT says how many messages exist")
  end
  c:send("a3 FETCH 1 BODY[]")
  local f = c:expect_tagged("a3")
  if f then
    s:check(f.untagged[1] and f.untagged[1]:find("Subject: Welcome to the lab", 1, true),
      "the message arrives whole, as a literal")
  end
  c:send("a4 LOGOUT")
  c:expect_tagged("a4")
  c:close()
end)

sc.about = "IMAP keeps mail on the server: each command carries a tag (a1, a2 ...) that "
  .. "its answer repeats, and a message's bytes come as a literal, {n} then exactly n bytes."
return sc
