--- parley.check.imap: `imap://user:password@host[:port][/MAILBOX]`
-- (`imaps://`: implicit TLS, port 993).
--
-- Logs in (after STARTTLS with `tls`), opens the mailbox read-only (EXAMINE; INBOX when the URL has
-- no path) and counts its messages (perfdata `messages=N`);
-- `min_messages` / `max_messages` make a count outside them CRITICAL.
-- `subject`: OK only when SEARCH SUBJECT finds a message, at once or
-- within `wait` seconds: the check waits in IDLE (RFC 2177) and searches
-- again whenever the server says EXISTS (or every `POLL` seconds when
-- the server has no IDLE).
-- @module parley.check.imap
local parley = require "parley"
local client = require "parley.imap.client"
local pop3 = require "parley.check.pop3"   -- options, count and subject results shared

local M = { LABEL = "IMAP", PORT = 143, TLS_PORT = 993, STARTTLS = true }

--- The options this check takes (those of the POP3 check).
M.OPTIONS = pop3.OPTIONS

--- Seconds between two NOOPs while waiting on a server without IDLE.
M.POLL = 1
--- Longest IDLE before searching again: a message that arrived between
-- a SEARCH and the IDLE is found by the next SEARCH at the latest.
M.IDLE_SLICE = 5

--- Refuses options that cannot work (UNKNOWN before connecting).
M.validate = pop3.validate

--- The mailbox a URL names (INBOX by default).
function M.mailbox(u)
  local box = u.path:gsub("^/", "")
  return box ~= "" and box or "INBOX"
end

--- Connects, logs in and opens the mailbox (`readonly`: EXAMINE).
-- @return the client and the mailbox info, or nil, err
function M.open(ctx, u, readonly)
  ctx:phase("connect")
  local o = ctx:tls_options(u)
  o.timeout, o.transcript = ctx:left(), ctx.transcript
  local c, err = client.connect(u.address, o)
  if not c then return nil, err end
  ctx:own(c.conn)
  ctx:tls_seen(c)
  ctx:phase("login")
  local ok
  ok, err = c:login(u.user, u.password or "")
  if not ok then c:close_connection() return nil, err end
  ctx:phase(readonly and "examine" or "select")
  local box
  if readonly then box, err = c:examine(M.mailbox(u)) else box, err = c:select(M.mailbox(u)) end
  if not box then c:close_connection() return nil, err end
  return c, box
end

--- Searches for messages whose Subject holds `text` until `deadline`
-- (parley.now() seconds), waiting in IDLE between searches.
-- @return the UIDs found (an empty list when none came), or nil, err
function M.wait_for(ctx, c, text, deadline)
  while true do
    -- a command lets the server announce new messages (RFC 3501 7.3.1);
    -- SEARCH sees only those announced
    ctx:phase("noop")
    local ok, err = c:noop()
    if not ok then return nil, err end
    ctx:phase("search")
    local uids
    uids, err = c:uid_search("SUBJECT", text)
    if not uids then return nil, err end
    local left = deadline - parley.now()
    if #uids > 0 or left <= 0 then return uids end
    if c:has("IDLE") then
      ctx:phase("idle")
      ok, err = c:idle(function(r) return r.type == "EXISTS" end, math.min(left, M.IDLE_SLICE))
      if not ok then return nil, err end
    else
      ctx:phase("wait")
      parley.sleep(math.min(left, M.POLL))
    end
  end
end

--- Deletes messages by UID: flags them \Deleted and, when the server has
-- UIDPLUS, expunges just those (UID EXPUNGE). Without UIDPLUS they stay
-- flagged: a plain EXPUNGE would remove every \Deleted message of the box.
-- @return "expunged" or "flagged \\Deleted", or nil, err
function M.delete(ctx, c, uids)
  ctx:phase("delete")
  local ok, err = c:uid_store(uids, "+FLAGS", { "\\Deleted" }, true)
  if not ok then return nil, err end
  if not c:has("UIDPLUS") then return "flagged \\Deleted" end
  ok, err = c:uid_expunge(uids)
  if not ok then return nil, err end
  return "expunged"
end

--- Runs the check (see the module description) in `ctx`, the context
-- `parley.check` gives: `ctx.url`, `ctx.opts`, `ctx:phase`, `ctx:perf`.
-- @return state, summary
function M.check(ctx)
  local u, o = ctx.url, ctx.opts
  local c, box = M.open(ctx, u, true)
  if not c then return ctx:critical(box) end
  local count = box.exists or 0
  ctx:perf("messages", count, nil, { min = 0 })
  local summary = ("%s %s: %d messages"):format(u.address, M.mailbox(u), count)
  local state
  state, summary = pop3.count_state(o, count, summary)
  if o.subject then
    local wait, t0 = o.wait or 0, parley.now()
    local uids, err = M.wait_for(ctx, c, o.subject, t0 + wait)
    if not uids then c:close_connection() return ctx:critical(err) end
    local waited = parley.now() - t0
    ctx:phase("logout")
    c:logout()
    return pop3.subject_result(ctx, state, summary, #uids > 0 and waited)
  end
  ctx:phase("logout")
  c:logout()
  return state, summary
end

return M
