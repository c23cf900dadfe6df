--- parley.check.pop3: `pop3://user:password@host[:port]` (`pop3s://`:
-- implicit TLS, port 995).
--
-- Logs in (after STLS with `tls`) (USER/PASS), counts the messages (STAT: perfdata `messages=N`
-- and `size=NB`); `min_messages` / `max_messages` make a count outside
-- them CRITICAL. `subject`: OK only when a message whose Subject holds
-- that text is there, or arrives within `wait` seconds. A POP3 session
-- sees the maildrop as it was at login (RFC 1939 section 4), so waiting
-- means a new session every `POLL` seconds; each looks at the headers
-- (TOP n 0) of messages it has not seen before (by UIDL).
-- @module parley.check.pop3
local parley = require "parley"
local client = require "parley.pop3.client"
local message = require "parley.mail.message"

local M = { LABEL = "POP3", PORT = 110, TLS_PORT = 995, STARTTLS = true }

--- The options this check takes (besides timeout, warning, critical, verbose).
M.OPTIONS = { subject = true, wait = true, min_messages = true, max_messages = true }

--- Seconds between two sessions while waiting for a message.
M.POLL = 1

--- Refuses options that cannot work (UNKNOWN before connecting).
function M.validate(u, opts)
  if not u.user then return "the URL needs user:password@" end
  for _, k in ipairs { "min_messages", "max_messages" } do
    if opts[k] ~= nil and math.type(opts[k]) ~= "integer" then return k .. " must be an integer" end
  end
  if opts.subject ~= nil and (type(opts.subject) ~= "string" or opts.subject == "") then
    return "subject must be a non-empty string"
  end
end

--- The state a message count gives (shared with the IMAP check):
-- CRITICAL outside `min_messages` / `max_messages`, said in the summary.
-- @return state, summary
function M.count_state(o, count, summary)
  if o.min_messages and count < o.min_messages then
    return "CRITICAL", ("%s, fewer than %d"):format(summary, o.min_messages)
  elseif o.max_messages and count > o.max_messages then
    return "CRITICAL", ("%s, more than %d"):format(summary, o.max_messages)
  end
  return "OK", summary
end

--- The result of waiting for `ctx.opts.subject` (shared with the IMAP
-- check): CRITICAL when `waited` (seconds) is false, else `state` with
-- the wait in the summary and the perfdata.
-- @return state, summary
function M.subject_result(ctx, state, summary, waited)
  local o = ctx.opts
  if not waited then
    return "CRITICAL", ("%s; no message with %q in its Subject after %g s"):format(summary, o.subject, o.wait or 0)
  end
  ctx:perf("wait", waited, "s", { min = 0 })
  return state, ("%s; Subject %q found after %.3f s"):format(summary, o.subject, waited)
end

--- Connects and logs in.
-- @return the client, or nil, err
function M.open(ctx, u)
  ctx:phase("connect")
  local left = ctx:left()
  local o = ctx:tls_options(u)
  o.timeout, o.connect_timeout, o.transcript = left, left, ctx.transcript
  local c, err = client.connect(u.address, o)
  if not c then return nil, err end
  ctx:own(c.conn)
  ctx:tls_seen(c)
  ctx:phase("login")
  local ok
  ok, err = c:login(u.user, u.password or "")
  if not ok then c:close() return nil, err end
  return c
end

--- The decoded Subject of a message head, or "".
function M.subject_of(head)
  local unfolded = ("\r\n" .. head):gsub("\r?\n[ \t]+", " ")
  local s = unfolded:match("\n[Ss][Uu][Bb][Jj][Ee][Cc][Tt]:[ \t]*([^\r\n]*)")
  if not s then return "" end
  return message.header_decode(s) or s
end

-- The numbers of messages whose Subject holds `text`, among those whose
-- UIDL is not in `seen` (which learns them).
local function matching(c, text, seen)
  local ids = c:uidl() or {}
  local count = c:stat()
  local found = {}
  for n = 1, count or 0 do
    local id = ids[n]
    if not (id and seen[id]) then
      local head, err = c:top(n, 0)
      if not head then return nil, err end
      if id then seen[id] = true end
      if M.subject_of(head):find(text, 1, true) then found[#found + 1] = n end
    end
  end
  return found
end

--- Looks for a message whose Subject holds `text` until `deadline`
-- (parley.now() seconds), one session every `poll` seconds. With
-- `delete`, the messages found are deleted.
-- @return seconds waited when found (nil otherwise), or nil, err
function M.wait_for(ctx, u, text, deadline, poll, delete, c)
  local seen, t0 = {}, parley.now()
  while true do
    local err
    if not c then
      c, err = M.open(ctx, u)
      if not c then return nil, err end
    end
    ctx:phase("search")
    local found
    found, err = matching(c, text, seen)
    if not found then c:close() return nil, err end
    if #found > 0 then
      local waited = parley.now() - t0
      if delete then
        ctx:phase("delete")
        for _, n in ipairs(found) do
          local ok, derr = c:dele(n)
          if not ok then c:close() return nil, derr end
        end
      end
      ctx:phase("quit")
      local ok, qerr = c:quit()
      if not ok and delete then return nil, qerr end
      return waited
    end
    c:quit()
    c = nil
    local left = deadline - parley.now()
    if left <= 0 then return false end
    ctx:phase("wait")
    parley.sleep(math.min(poll, left))
  end
end

--- Runs the check (see the module description) in `ctx`, the context
-- `parley.check` gives: `ctx.url`, `ctx.opts`, `ctx:phase`, `ctx:perf`.
-- @return state, summary
function M.check(ctx)
  local u, o = ctx.url, ctx.opts
  local c, err = M.open(ctx, u)
  if not c then return ctx:critical(err) end
  ctx:phase("stat")
  local count, octets = c:stat()
  if not count then c:close() return ctx:critical(octets) end
  ctx:perf("messages", count, nil, { min = 0 })
  ctx:perf("size", octets, "B", { min = 0 })
  local summary = ("%s %d messages (%d bytes)"):format(u.address, count, octets)
  local state
  state, summary = M.count_state(o, count, summary)
  if o.subject then
    local wait = o.wait or 0
    local waited
    waited, err = M.wait_for(ctx, u, o.subject, parley.now() + wait, M.POLL, false, c)
    if waited == nil then return ctx:critical(err) end
    return M.subject_result(ctx, state, summary, waited)
  end
  ctx:phase("quit")
  c:quit()
  return state, summary
end

return M
