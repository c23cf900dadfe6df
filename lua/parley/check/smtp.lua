--- parley.check.smtp: `smtp://[user:password@]host[:port]` (also
-- `smtps://` and `submissions://`: implicit TLS, port 465).
--
-- The 220 banner (with `tls`: EHLO, STARTTLS, the handshake), EHLO (HELO when refused) and its capabilities
-- (`expect_cap`: each must be announced, else CRITICAL), AUTH when the URL
-- has a user, a test message when `from` and `to` are given (CRITICAL
-- unless the reply after DATA is 250 and every recipient was accepted),
-- QUIT. Summary: the address and the banner.
-- @module parley.check.smtp
local client = require "parley.smtp.client"
local message = require "parley.mail.message"

local M = { LABEL = "SMTP", PORT = 25, TLS_PORT = 465, STARTTLS = true }

--- The options this check takes (besides timeout, warning, critical, verbose).
M.OPTIONS = { expect_cap = true, from = true, to = true, subject = true, helo = true }

--- Text of the test message body.
M.BODY = "This is a test message sent by parley check.\r\n"

--- Refuses options that cannot work (UNKNOWN before connecting).
-- @return an error message, or nil
function M.validate(u, opts)
  if (opts.from == nil) ~= (opts.to == nil) then return "--from and --to go together" end
  if opts.to ~= nil and type(opts.to) ~= "table" and type(opts.to) ~= "string" then
    return "to must be an address or a list"
  end
  if u.password and not u.user then return "a password without a user" end
end

local function timeouts(ctx)
  local t = ctx:left()
  return { connect = t, greeting = t, command = t, data = t, block = t, final = t }
end

--- Connects, reads the banner, says EHLO and authenticates (when `u`
-- has a user), naming each phase.
-- @return the client, or nil, err
function M.open(ctx, u)
  ctx:phase("connect")
  local o = ctx:tls_options(u)
  o.ehlo, o.helo, o.timeouts, o.transcript = false, ctx.opts.helo, timeouts(ctx), ctx.transcript
  local c, err = client.connect(u.address, o)
  if not c then return nil, err end
  ctx:own(c.conn)
  local ok
  -- after STARTTLS the client has said EHLO again already
  if o.tls ~= "required" then
    ctx:phase("ehlo")
    ok, err = c:ehlo()
    if not ok then c:close() return nil, err end
  end
  ctx:tls_seen(c)
  if u.user then
    ctx:phase("auth")
    ok, err = c:auth(u.user, u.password or "")
    if not ok then c:close() return nil, err end
  end
  return c
end

--- Sends a test message on an open client.
-- @param ctx the check's context (phases, timings)
-- @param c a connected `parley.smtp.client`
-- @tparam table m `from`, `to` (address or list), `subject`, `headers`
-- @return the final reply, or nil, err
function M.send(ctx, c, m)
  ctx:phase("mail")
  local raw = assert(message.build{ from = m.from, to = m.to, subject = m.subject,
    headers = m.headers, text = M.BODY })
  local res, err, reply, partial = c:send{ from = m.from, to = m.to, message = raw }
  local refused = {}
  for addr, r in pairs((res or partial or {}).rejected or {}) do
    refused[#refused + 1] = ("<%s> %s"):format(addr, client.reply_string(r))
  end
  table.sort(refused)
  if not res then
    if #refused > 0 then err = err .. ": " .. table.concat(refused, ", ") end
    return nil, err, reply
  end
  if #refused > 0 then return nil, "refused " .. table.concat(refused, ", "), res.reply end
  if res.reply.code ~= 250 then return nil, client.reply_string(res.reply), res.reply end
  return res.reply
end

--- Runs the check (see the module description) in `ctx`, the context
-- `parley.check` gives: `ctx.url`, `ctx.opts`, `ctx:phase`, `ctx:perf`.
-- @return state, summary
function M.check(ctx)
  local u, o = ctx.url, ctx.opts
  local c, err = M.open(ctx, u)
  if not c then return ctx:critical(err) end
  local summary = ("%s %s"):format(u.address, c.greeting.text:match("^[^\n]*"))
  local missing = {}
  for _, cap in ipairs(o.expect_cap or {}) do
    if c.caps[cap:upper()] == nil then missing[#missing + 1] = cap:upper() end
  end
  if #missing > 0 then
    ctx:phase("quit")
    c:quit()
    return "CRITICAL", ("%s; missing capability %s"):format(summary, table.concat(missing, ", "))
  end
  if o.to then
    local reply
    reply, err = M.send(ctx, c, { from = o.from, to = o.to, subject = o.subject or "parley check" })
    if not reply then c:close() return ctx:critical(err) end
    summary = ("%s; message accepted (%s)"):format(summary, client.reply_string(reply))
  end
  ctx:phase("quit")
  c:quit()
  return "OK", summary
end

return M
