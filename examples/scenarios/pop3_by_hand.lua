-- A POP3 session typed by hand: USER / PASS / STAT / LIST, then RETR of
-- the first messages (at most three), each body read to its "." line.
--
--   bin/parley run examples/scenarios/pop3_by_hand.lua --var password=PW
--
-- vars: url (default pop3://127.0.0.1:1110, the lab's), user (strategos),
-- password.
local scenario = require "parley.scenario"

return scenario("POP3 by hand", function(s)
  local v = s.vars
  local c = s:connect(v.url or "pop3://127.0.0.1:1110")
  c:expect("^%+OK")
  c:send("USER " .. (v.user or "strategos"))
  c:expect("^%+OK")
  c:send("PASS " .. (v.password or ""))   -- masked in the transcript
  c:expect("^%+OK")
  c:send("STAT")
  local count = tonumber(c:capture("^%+OK (%d+) %d+", { as = "count" }) or 0)
  c:send("LIST")
  local list = c:expect_multiline()
  s:check(list and #list.lines == count, "LIST shows every message STAT counted")
  for i = 1, math.min(count, 3) do
    c:send("RETR " .. i)
    local m = c:expect_multiline{ name = "RETR " .. i }
    s:check(m and m.text:find("\r\n\r\n", 1, true), "message " .. i .. " has a header and a body")
  end
  c:send("QUIT")
  c:expect("^%+OK")
end)
