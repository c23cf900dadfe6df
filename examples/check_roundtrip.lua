-- How long does mail take from SMTP to the mailbox? Sends a message with
-- a unique Subject and waits for IMAP (IDLE) or POP3 (polling) to see it.
--
--   lua5.4 examples/check_roundtrip.lua smtp://127.0.0.1:2525 \
--       imap://strategos:PASSWORD@127.0.0.1:1143/INBOX [SECONDS]
--
-- Prints one Monitoring Plugins line; the exit status is its state
-- (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN). The test message is deleted
-- once seen.
local check = require "parley.check"

local smtp_url, mailbox_url, limit = arg[1], arg[2], tonumber(arg[3] or "10")
if not (smtp_url and mailbox_url and limit) then
  io.stderr:write("usage: check_roundtrip.lua SMTP_URL (IMAP_URL | POP3_URL) [SECONDS]\n")
  os.exit(3)
end

local receiver = mailbox_url:match("^(%a+)://")   -- "imap" or "pop3"
local result = check.roundtrip{
  smtp = smtp_url,
  [receiver] = mailbox_url,
  timeout = limit,           -- CRITICAL when not seen by then
  warning = limit / 2,       -- WARNING when the round trip took over half of it
}

print(result.line)
local rt = result.perfdata.roundtrip
if rt then print(("delivered and seen in %.0f ms"):format(rt.value * 1000)) end
os.exit(result.status)
