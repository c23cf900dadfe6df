-- A tiny generic line server for the scenario specs: a greeting, then a
-- table of replies by command (or a function), in the same process.
--
--   S.with(S.smtpish, function(srv) ... scenario.run(...) ... end)
local parley = require "parley"
local H = require "helper"

local S = {}

--- Runs `fn(srv)` inside a task while `handler(conn)` serves
-- 127.0.0.1 on a free port; the server is closed afterwards.
function S.with(handler, fn)
  return H.run(function()
    local srv = assert(parley.serve{ listen = "127.0.0.1:0", handler = handler,
      signals = false, grace = 0.5 })
    local ok, err = pcall(fn, srv)
    srv:close(0.5)
    if not ok then error(err, 0) end
  end, 30)
end

--- An SMTP-like dialogue: 220 banner over two lines, EHLO answered
-- with capabilities, MAIL/RCPT 250, DATA 354 then 250 after the dot,
-- COUNT a POP3-like "+OK 3 messages", SLOW no answer at all, BARE answers with a bare LF, BYE closes without
-- a word, QUIT 221; anything else 500.
function S.smtpish(conn)
  conn:send("220-lab.example ESMTP\r\n220 ready\r\n")
  for line in conn:lines() do
    local verb = line:match("^(%S+)") or ""
    verb = verb:upper()
    if verb == "SLOW" then goto next end   -- no answer: the client's expect times out
    if verb == "EHLO" then conn:send("250-lab.example\r\n250-SIZE 1000\r\n250 PIPELINING\r\n")
    elseif verb == "MAIL" or verb == "RCPT" then conn:send("250 2.1.0 ok\r\n")
    elseif verb == "DATA" then
      conn:send("354 go on\r\n")
      for l in conn:lines() do if l == "." then break end end
      conn:send("250 2.0.0 queued as 42\r\n")
    elseif verb == "COUNT" then
      conn:send("+OK 3 messages 1200 octets\r\n")
    elseif verb == "BARE" then conn:send("250 bare\n")
    elseif verb == "BYE" then break
    elseif verb == "QUIT" then conn:send("221 bye\r\n") break
    else conn:send("500 5.5.1 what is " .. verb .. "\r\n") end
    ::next::
  end
end

return S
