-- An IMAP session typed by hand: LOGIN, SELECT INBOX (its EXISTS count
-- captured), FETCH 1 BODY[] (a literal), LOGOUT.
--
--   bin/parley run examples/scenarios/imap_by_hand.lua --var password=PW
--
-- vars: url (default imap://127.0.0.1:1143, the lab's), user (strategos),
-- password.
local scenario = require "parley.scenario"

return scenario("IMAP by hand", function(s)
  local v = s.vars
  local c = s:connect(v.url or "imap://127.0.0.1:1143")
  c:expect("^%* OK")
  c:send(("a1 LOGIN %s %s"):format(v.user or "strategos", v.password or '""'))
  c:expect_tagged("a1", "OK")
  c:send("a2 SELECT INBOX")
  local sel = c:expect_tagged("a2")
  local exists = 0
  for _, u in ipairs(sel and sel.untagged or {}) do
    exists = tonumber(u:match("^%* (%d+) EXISTS")) or exists
  end
  s:check(exists > 0, "INBOX holds mail")
  c:send("a3 FETCH 1 BODY[]")
  local f = c:expect_tagged("a3")
  s:check(f and f.untagged[1] and f.untagged[1]:find("BODY%[%] {%d+}"), "message 1 comes as a literal")
  c:send("a4 LOGOUT")
  local bye = c:expect_tagged("a4")
  s:check(bye and bye.untagged[1] and bye.untagged[1]:find("^%* BYE"), "the server says BYE first")
end)
