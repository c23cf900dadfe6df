-- The tour's second IMAP session: LIST "" "*" and EXAMINE INBOX (RFC 3501
-- 6.3.8, 6.3.2).
local scenario = require "parley.scenario"

local sc = scenario('IMAP: LIST "" "*", EXAMINE INBOX', function(s)
  local v = s.vars
  local c = s:connect(v.imap)
  c:expect("^%* OK")
  c:send(('b1 LOGIN %s "%s"'):format(v.user, v.password))
  c:expect_tagged("b1")
  c:send('b2 LIST "" "*"')
  local list = c:expect_tagged("b2")
  if list then
    local inbox = false
    for _, u in ipairs(list.untagged) do inbox = inbox or u:match('^%* LIST .*"?INBOX"?$') ~= nil end
    s:check(inbox, "LIST names INBOX")
  end
  c:send("b3 EXAMINE INBOX")
  local ex = c:expect_tagged("b3")
  if ex then s:check(ex.text:find("[READ-ONLY]", 1, true), "EXAMINE opens INBOX read-only") end
  c:send("b4 LOGOUT")
  c:expect_tagged("b4")
  c:close()
end)

sc.about = "A client's folder pane is one LIST; EXAMINE opens a mailbox read-only, "
  .. "so looking leaves every \\Seen flag as it was."
return sc
