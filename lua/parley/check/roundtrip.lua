--- parley.check.roundtrip: the mail round trip behind
-- `parley.check.roundtrip` and `parley check --roundtrip`.
--
-- With IMAP the mailbox is opened first (SELECT), then a message whose
-- Subject carries a random token goes out by SMTP, then SEARCH and IDLE
-- wait for it. With POP3 the message goes out first and a new session
-- every `POP3_POLL` seconds looks for it. The round trip is measured from
-- the SMTP connection to the moment the message is seen (perfdata
-- `roundtrip=`; `send=` is the SMTP part). Unless `delete` is false the
-- message is removed once seen (IMAP: UID EXPUNGE when the server has
-- UIDPLUS, else it stays flagged \Deleted; POP3: DELE).
-- @module parley.check.roundtrip
local parley = require "parley"
local smtp = require "parley.check.smtp"
local imap = require "parley.check.imap"
local pop3 = require "parley.check.pop3"

local M = {}

--- Seconds between two POP3 sessions while waiting.
M.POP3_POLL = 0.5
--- Bytes of randomness in the token.
M.TOKEN_BYTES = 8

--- Refuses options that cannot work (UNKNOWN before connecting).
function M.validate(s, rx, opts)
  if not rx.user then return "the " .. rx.scheme:upper() .. " URL needs user:password@" end
  for _, k in ipairs { "to", "from" } do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then return k .. " must be an address" end
  end
  return smtp.validate(s, {})
end

--- A random token (hex), from /dev/urandom.
function M.token()
  local f = assert(io.open("/dev/urandom", "rb"))
  local bytes = f:read(M.TOKEN_BYTES)
  f:close()
  return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

--- The address mail for `user` goes to: the user itself when it has a
-- domain, else `user@localhost`.
function M.address_of(user)
  return user:find("@", 1, true) and user or user .. "@localhost"
end

-- sends the tagged message: true, or nil, err
local function send(ctx, s, m)
  ctx.prefix = "smtp "
  local c, err = smtp.open(ctx, s)
  if not c then return nil, err end
  local ok
  ok, err = smtp.send(ctx, c, m)
  if not ok then c:close() return nil, err end
  ctx:phase("quit")
  c:quit()
  return true
end

--- Runs the check (see the module description) in `ctx`, the context
-- `parley.check` gives: `ctx.url`, `ctx.opts`, `ctx:phase`, `ctx:perf`.
-- @return state, summary
function M.check(ctx)
  local rx, o = ctx.url, ctx.opts
  local s = rx.smtp
  local token = M.token()
  local to = o.to or M.address_of(rx.user)
  local m = { from = o.from or to, to = to, subject = "parley roundtrip " .. token }
  local delete = o.delete ~= false
  local where = ("%s %s"):format(rx.scheme:upper(), rx.address)
  local ic, box
  if rx.proto == "imap" then
    ctx.prefix = "imap "
    ic, box = imap.open(ctx, rx, false)
    if not ic then return ctx:critical(box) end
    where = ("%s %s"):format(where, imap.mailbox(rx))
  end
  local t0 = parley.now()
  local ok, err = send(ctx, s, m)
  if not ok then
    if ic then ic:close_connection() end
    return ctx:critical(err, s.address)
  end
  local sent = parley.now()
  ctx:perf("send", sent - t0, "s", { min = 0 })
  ctx.prefix = rx.proto .. " "
  local seen, fate
  if ic then
    local uids
    uids, err = imap.wait_for(ctx, ic, token, ctx.deadline)
    if not uids then ic:close_connection() return ctx:critical(err) end
    if #uids > 0 then
      seen = parley.now()
      fate = "kept"
      if delete then
        fate, err = imap.delete(ctx, ic, uids)
        if not fate then ic:close_connection() return ctx:critical(err) end
      end
    end
    ctx:phase("logout")
    ic:logout()
  else
    local waited
    waited, err = pop3.wait_for(ctx, rx, token, ctx.deadline, M.POP3_POLL, delete)
    if waited == nil then return ctx:critical(err) end
    if waited then seen, fate = sent + waited, delete and "deleted" or "kept" end
  end
  if not seen then
    return "CRITICAL", ("message %s sent by SMTP %s, not seen by %s within %g s"):format(
      token, s.address, where, ctx.limit)
  end
  ctx:perf("roundtrip", seen - t0, "s", { min = 0 })
  return "OK", ("SMTP %s to %s: seen after %.3f s (message %s %s)"):format(s.address, where,
    seen - t0, token, fate)
end

return M
