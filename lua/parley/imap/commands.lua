--- IMAP server commands (RFC 3501 §6 and the extensions the server
-- advertises). `dispatch(s, cmd)` checks the state, runs the handler and
-- brings the selected mailbox up to date before the tagged reply.
-- @module parley.imap.commands
local parley = require "parley"
local core = require "parley.core"
local V = require "parley.imap.view"
local index = require "parley.mail.index"
local maildir = require "parley.mail.maildir"
local F = require "parley.imap.fetch"
local S = require "parley.imap.search"
local mailbox = require "parley.imap.mailbox"
local starttls = require "parley.smtp.starttls"
local authdelay = require "parley.authdelay"

local imap = core.imap
local fs = core.fs

local M = {}

local QOPT = { atom = false }

-- commands by state: 1 any, 2 authenticated or selected, 3 selected
local STATE = {
  CAPABILITY = 1, NOOP = 1, LOGOUT = 1, ID = 1,
  LOGIN = 0, AUTHENTICATE = 0, STARTTLS = 0,
  SELECT = 2, EXAMINE = 2, CREATE = 2, DELETE = 2, RENAME = 2, SUBSCRIBE = 2,
  UNSUBSCRIBE = 2, LIST = 2, LSUB = 2, STATUS = 2, APPEND = 2, NAMESPACE = 2,
  ENABLE = 2, IDLE = 2,
  CHECK = 3, CLOSE = 3, UNSELECT = 3, EXPUNGE = 3, SEARCH = 3, FETCH = 3,
  STORE = 3, COPY = 3, MOVE = 3,
}
local UID_OK = { FETCH = true, STORE = true, SEARCH = true, COPY = true, MOVE = true, EXPUNGE = true }
-- no EXPUNGE responses after these (RFC 3501 §7.4.1; the UID forms may)
local NO_EXPUNGE = { FETCH = true, STORE = true, SEARCH = true }

local H = {}
M.handlers = H

-- astring argument i (atom, quoted or literal), or nil
local function astr(args, i)
  local k = args.kinds:sub(i, i)
  if k == "a" or k == "q" or k == "l" then
    local v = args[i]
    if type(v) == "string" then return v end
  end
  return nil
end

local function nargs(args, n, tag, s, usage)
  if #args ~= n then
    s:bad(tag, usage and ("expected: " .. usage) or "wrong number of arguments")
    return false
  end
  return true
end

function M.dispatch(s, cmd)
  local tag, name = cmd.tag, cmd.name
  local o = s.opts
  if o.on_command and o.on_command(s, cmd) then return end
  local st = STATE[name]
  if not st then return s:bad(tag, "unknown command " .. name) end
  if cmd.uid and not UID_OK[name] then return s:bad(tag, "UID " .. name .. " is not a command") end
  if st == 0 and s.user then return s:bad(tag, "already authenticated") end
  if st >= 2 and not s.user then return s:bad(tag, name .. " needs a login first") end
  if st == 3 and not s.view then return s:bad(tag, name .. " needs a selected mailbox") end
  local kind, text, code = H[name](s, cmd, cmd.args, tag)
  if not kind then return end          -- the handler replied itself
  -- (no news after LOGOUT: its BYE is the last thing the client hears)
  if s.view and kind ~= "BAD" and name ~= "LOGOUT" then
    s:sync(not NO_EXPUNGE[name] or cmd.uid)
  end
  if kind == "BAD" then return s:bad(tag, text) end
  s:reply(tag, kind, text, code)
end

---------------------------------------------------------------------------
-- Any state
---------------------------------------------------------------------------

function H.CAPABILITY(s, cmd, args)
  if #args > 0 then return "BAD", "CAPABILITY takes no arguments" end
  s:send("* CAPABILITY " .. s:capabilities() .. "\r\n")
  return "OK", "CAPABILITY completed"
end

function H.NOOP(s)
  return "OK", "NOOP completed"
end

function H.LOGOUT(s)
  s:send("* BYE logging out\r\n")
  s.done = true
  return "OK", "LOGOUT completed"
end

function H.ID(s, cmd, args)
  -- RFC 2971: the client's list (or NIL) is read and ignored
  if #args ~= 1 then return "BAD", "ID needs a list or NIL" end
  s:send('* ID ("name" "parley" "vendor" "parley")\r\n')
  return "OK", "ID completed"
end

---------------------------------------------------------------------------
-- Not authenticated
---------------------------------------------------------------------------

local function login(s, tag, user, password)
  local o = s.opts
  local ok
  if o.on_auth then ok = o.on_auth(s, user, password) end
  if ok == nil then
    ok = s.users ~= nil and s.users:check(user, password)
  end
  if ok and not s.store:path(user) then ok = false end
  if not ok then
    s.auth_failures = s.auth_failures + 1
    if o.auth_delay > 0 then
      s.conn:flush()
      authdelay.of(o):failed(s.ip, o.auth_delay)   -- grows with the address's failures
    end
    if s.auth_failures >= o.max_auth_failures then
      s:reply(tag, "NO", "authentication failed", "AUTHENTICATIONFAILED")
      s:send("* BYE too many failed logins\r\n")
      s.done = true
      return
    end
    return "NO", "authentication failed", "AUTHENTICATIONFAILED"
  end
  authdelay.of(o):succeeded(s.ip)
  s:set_state(user)
  return "OK", "logged in", "CAPABILITY " .. s:capabilities()
end

-- RFC 3501 §6.2.3, RFC 5530: no password over cleartext unless allowed
local CLEARTEXT = "plaintext authentication disallowed on non-secure connections: use STARTTLS"

function H.LOGIN(s, cmd, args, tag)
  if not nargs(args, 2, tag, s, "LOGIN user password") then return end
  if not s:plaintext_allowed() then return "NO", CLEARTEXT, "PRIVACYREQUIRED" end
  local user, pw = astr(args, 1), astr(args, 2)
  if not user or not pw then return "BAD", "LOGIN user password" end
  return login(s, tag, user, pw)
end

function H.AUTHENTICATE(s, cmd, args, tag)
  local mech = astr(args, 1)
  if not mech or #args > 2 then return "BAD", "AUTHENTICATE mechanism [initial-response]" end
  if mech:upper() ~= "PLAIN" then return "NO", "unsupported mechanism" end
  if not s:plaintext_allowed() then return "NO", CLEARTEXT, "PRIVACYREQUIRED" end
  local resp = args[2]
  if resp == nil then
    s:send("+ \r\n")
    s.conn:flush()
    local line, err = s.conn:receive("l")
    if not line then
      if err ~= "line too long" then s.done = true; return end
      return "BAD", "line too long"
    end
    resp = line
  end
  if resp == "*" then return "BAD", "authentication cancelled" end
  local decoded = ""
  if resp ~= "=" then
    if not resp:match("^[%w+/]*=?=?$") or #resp % 4 ~= 0 then return "BAD", "invalid base64" end
    decoded = require("mime").unb64(resp) or ""
  end
  local authz, user, pw = decoded:match("^([^%z]*)%z([^%z]*)%z([^%z]*)$")
  if not user then return "BAD", "invalid PLAIN response" end
  if authz ~= "" and authz ~= user then
    return "NO", "authorization identity must match", "AUTHORIZATIONFAILED"
  end
  return login(s, tag, user, pw)
end

-- RFC 3501 §6.2.1, RFC 2595 §3.1: the tagged OK, then the handshake. A
-- command pipelined behind STARTTLS is never answered: the driver refuses
-- the upgrade ("data after starttls") and the session ends.
function H.STARTTLS(s, cmd, args, tag)
  if #args > 0 then return "BAD", "STARTTLS takes no arguments" end
  local ctx = s.opts.tls_ctx
  if not ctx then return "BAD", "STARTTLS not available" end
  if s.tls then return "BAD", "TLS already active" end
  s:reply(tag, "OK", "begin TLS negotiation now")
  local info = starttls.upgrade(s.conn, ctx)
  if not info then
    s.done = true
    return
  end
  s.tls = info
end

---------------------------------------------------------------------------
-- Authenticated
---------------------------------------------------------------------------

local function close_view(s)
  if s.view then s.view:close(); s.view = nil end
end

local function select(s, cmd, args, tag, readonly)
  if #args ~= 1 then return "BAD", cmd.name .. " mailbox" end
  close_view(s)
  local name, err = mailbox.name(astr(args, 1))
  if not name then return "NO", err end
  if not mailbox.exists(s, name) then return "NO", "no such mailbox", "NONEXISTENT" end
  local view
  view, err = V.open(s.store, s.user, name, readonly)
  if not view then return "NO", "cannot open mailbox: " .. tostring(err) end
  s.view = view
  local recent, first = view:counts()
  local flags, permanent = V.flag_lists(view.kw)
  s:send("* FLAGS " .. flags .. "\r\n")
  s:send("* OK [PERMANENTFLAGS " .. (readonly and "()" or permanent) .. "] flags permitted\r\n")
  s:send("* " .. view:count() .. " EXISTS\r\n")
  s:send("* " .. recent .. " RECENT\r\n")
  if first then s:send("* OK [UNSEEN " .. first .. "] first unseen\r\n") end
  s:send("* OK [UIDVALIDITY " .. view.uidvalidity .. "] UIDs valid\r\n")
  s:send("* OK [UIDNEXT " .. view.uidnext .. "] predicted next UID\r\n")
  return "OK", cmd.name .. " completed", readonly and "READ-ONLY" or "READ-WRITE"
end

function H.SELECT(s, cmd, args, tag) return select(s, cmd, args, tag, false) end
function H.EXAMINE(s, cmd, args, tag) return select(s, cmd, args, tag, true) end

function H.CREATE(s, cmd, args)
  if #args ~= 1 then return "BAD", "CREATE mailbox" end
  local raw = astr(args, 1)
  if raw and raw:sub(-1) == "." then raw = raw:sub(1, -2) end   -- "foo." creates foo
  local name, err = mailbox.name(raw)
  if not name then return "NO", err end
  if name == "INBOX" then return "NO", "INBOX exists", "ALREADYEXISTS" end
  local ok, cerr = s.store:create_folder(s.user, name)
  if not ok then
    if cerr == "folder exists" then return "NO", "mailbox exists", "ALREADYEXISTS" end
    return "NO", "cannot create: " .. tostring(cerr), "CANNOT"
  end
  return "OK", "CREATE completed"
end

function H.DELETE(s, cmd, args)
  if #args ~= 1 then return "BAD", "DELETE mailbox" end
  local name, err = mailbox.name(astr(args, 1))
  if not name then return "NO", err end
  if name == "INBOX" then return "NO", "cannot delete INBOX", "CANNOT" end
  if s.view and s.view.folder == name then close_view(s) end
  local ok, derr = s.store:delete_folder(s.user, name)
  if not ok then
    if derr == "no such folder" then return "NO", "no such mailbox", "NONEXISTENT" end
    return "NO", "cannot delete: " .. tostring(derr), "CANNOT"
  end
  mailbox.subscribe(s, name, false)
  return "OK", "DELETE completed"
end

function H.RENAME(s, cmd, args)
  if #args ~= 2 then return "BAD", "RENAME from to" end
  local from, err = mailbox.name(astr(args, 1))
  if not from then return "NO", err end
  local to
  to, err = mailbox.name(astr(args, 2))
  if not to then return "NO", err end
  if to == "INBOX" then return "NO", "INBOX exists", "ALREADYEXISTS" end
  if from == "INBOX" then
    -- RFC 3501 §6.3.5: move every INBOX message into the new mailbox
    return mailbox.rename_inbox(s, to)
  end
  if mailbox.exists(s, to) then return "NO", "mailbox exists", "ALREADYEXISTS" end
  local ok, rerr = s.store:rename_folder(s.user, from, to)
  if not ok then
    if rerr == "no such folder" then return "NO", "no such mailbox", "NONEXISTENT" end
    return "NO", "cannot rename: " .. tostring(rerr), "CANNOT"
  end
  if s.view and s.view.folder == from then close_view(s) end
  return "OK", "RENAME completed"
end

function H.SUBSCRIBE(s, cmd, args)
  if #args ~= 1 then return "BAD", "SUBSCRIBE mailbox" end
  local name, err = mailbox.name(astr(args, 1))
  if not name then return "NO", err end
  local ok, serr = mailbox.subscribe(s, name, true)
  if not ok then return "NO", serr end
  return "OK", "SUBSCRIBE completed"
end

function H.UNSUBSCRIBE(s, cmd, args)
  if #args ~= 1 then return "BAD", "UNSUBSCRIBE mailbox" end
  local name, err = mailbox.name(astr(args, 1))
  if not name then return "NO", err end
  local ok, serr = mailbox.subscribe(s, name, false)
  if not ok then return "NO", serr end
  return "OK", "UNSUBSCRIBE completed"
end

function H.LIST(s, cmd, args)
  return mailbox.list(s, args, false)
end

function H.LSUB(s, cmd, args)
  return mailbox.list(s, args, true)
end

function H.STATUS(s, cmd, args)
  if #args ~= 2 or args.kinds:sub(2, 2) ~= "(" then return "BAD", "STATUS mailbox (items)" end
  local raw = astr(args, 1)
  local name, err = mailbox.name(raw)
  if not name then return "NO", err end
  if not mailbox.exists(s, name) then return "NO", "no such mailbox", "NONEXISTENT" end
  local st
  st, err = mailbox.status(s, name)
  if not st then return "NO", tostring(err) end
  local out = {}
  for _, item in ipairs(args[2]) do
    local k = tostring(item):upper()
    if st[k] == nil then return "BAD", "unknown STATUS item " .. tostring(item) end
    out[#out + 1] = k .. " " .. st[k]
  end
  s:send("* STATUS " .. (imap.quote(raw, QOPT)) .. " (" .. table.concat(out, " ") .. ")\r\n")
  return "OK", "STATUS completed"
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8,
                 Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

-- "17-Jul-1996 02:44:25 -0700" -> seconds since the epoch
local function parse_datetime(str)
  local d, mon, y, hh, mm, ss, sign, zh, zm =
    str:match("^ ?(%d%d?)%-(%a%a%a)%-(%d%d%d%d) (%d%d):(%d%d):(%d%d) ([+-])(%d%d)(%d%d)$")
  if not d then return nil end
  local m = MONTHS[mon:sub(1, 1):upper() .. mon:sub(2):lower()]
  if not m then return nil end
  local days = S.parse_day(("%d-%s-%s"):format(tonumber(d), mon, y))
  if not days then return nil end
  local t = days * 86400 + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
  local off = (tonumber(zh) * 60 + tonumber(zm)) * 60
  if sign == "+" then t = t - off else t = t + off end
  return t
end
M.parse_datetime = parse_datetime

function H.APPEND(s, cmd, args)
  local n = #args
  if n < 2 or n > 4 then return "BAD", "APPEND mailbox [(flags)] [date] message" end
  local kinds = args.kinds
  local msg, mk = args[n], kinds:sub(n, n)
  if mk ~= "l" and mk ~= "q" then return "BAD", "APPEND needs the message as a literal" end
  local flags, date
  for i = 2, n - 1 do
    local k = kinds:sub(i, i)
    if k == "(" and not flags and i == 2 then
      flags = args[i]
      if flags.kinds:find("[^a]") then return "BAD", "flags must be atoms" end
    elseif k == "q" and not date then
      date = parse_datetime(args[i])
      if not date then return "BAD", "invalid date-time" end
    else
      return "BAD", "APPEND mailbox [(flags)] [date] message"
    end
  end
  local name, err = mailbox.name(astr(args, 1))
  if not name then return "NO", err end
  if not mailbox.exists(s, name) then return "NO", "no such mailbox", "TRYCREATE" end
  local letters
  if flags then
    for _, f in ipairs(flags) do
      if type(f) ~= "string" or not f:match("^\\?[^%s%(%)%]{%%*\"\\]+$") then
        return "BAD", "invalid flag"
      end
    end
    local sys, kws = V.letters(flags)
    if not sys then return "BAD", kws end
    -- keywords: the target mailbox's letters (made there if new)
    letters, err = V.mailbox_letters(s.store:mailbox(s.user, name), flags)
    if not letters then return "NO", "cannot store keywords: " .. tostring(err), "LIMIT" end
  end
  local d
  d, err = s.store:delivery(s.user, name)
  if not d then return "NO", "cannot store: " .. tostring(err) end
  local ok
  if type(msg) == "string" then
    ok, err = d:write(msg)
  else
    -- a literal spooled to a temporary file
    ok = true
    while true do
      local chunk = msg:read(65536)
      if not chunk then break end
      ok, err = d:write(chunk)
      if not ok then break end
    end
  end
  if not ok then d:abort(); return "NO", "cannot store: " .. tostring(err) end
  local mname, path = d:commit(letters)
  if not mname then return "NO", "cannot store: " .. tostring(path) end
  if date then fs.utime(path, date, date) end
  local mb = s.store:mailbox(s.user, name)
  local snap = index.of(mb):snapshot()
  V.changed(mb.dir)
  local m = snap and snap.byname[mname]
  if m then
    return "OK", "APPEND completed", "APPENDUID " .. snap.validity .. " " .. m.uid
  end
  return "OK", "APPEND completed"
end

function H.NAMESPACE(s, cmd, args)
  if #args > 0 then return "BAD", "NAMESPACE takes no arguments" end
  s:send('* NAMESPACE (("" ".")) NIL NIL\r\n')
  return "OK", "NAMESPACE completed"
end

function H.ENABLE(s, cmd, args)
  if #args == 0 then return "BAD", "ENABLE capability..." end
  -- nothing this server implements needs enabling (no CONDSTORE, UTF8)
  s:send("* ENABLED\r\n")
  return "OK", "ENABLE completed"
end

function H.IDLE(s, cmd, args)
  if #args > 0 then return "BAD", "IDLE takes no arguments" end
  local conn = s.conn
  conn:send("+ idling\r\n")
  conn:flush()
  local view = s.view
  local cond = view and V.cond(view.dir)
  local poll = s.opts.idle_poll
  -- a helper task tells the client about changes while this one waits
  -- for DONE (one task writes, the other reads: allowed by the driver).
  -- It syncs first, before its first wait: a message delivered between
  -- the last command and IDLE is announced at once (RFC 2177 §3), not
  -- after a poll or a wake-up that may never come.
  local watcher = parley.spawn(function()
    while true do
      if s.view then
        s:sync(true)
        local fok, ferr = conn:flush()
        if not fok and ferr == "cancelled" then return end
      end
      if s.done then return end
      local _, err
      if cond then _, err = cond:wait(poll) else _, err = parley.sleep(poll) end
      if err == "cancelled" then return end
    end
  end)
  local line, err = conn:receive("l")
  watcher:cancel()
  watcher:join(1)
  if not line then
    if err == "line too long" then return "BAD", "expected DONE" end
    s.done = true
    if err == "timeout" then conn:send("* BYE autologout, idle for too long\r\n") end
    return
  end
  if line:upper() ~= "DONE" then return "BAD", "expected DONE" end
  return "OK", "IDLE terminated"
end

---------------------------------------------------------------------------
-- Selected
---------------------------------------------------------------------------

function H.CHECK(s)
  return "OK", "CHECK completed"
end

function H.CLOSE(s, cmd, args)
  if #args > 0 then return "BAD", "CLOSE takes no arguments" end
  if not s.view.readonly then s.view:expunge(nil) end
  close_view(s)
  return "OK", "CLOSE completed"
end

function H.UNSELECT(s, cmd, args)
  if #args > 0 then return "BAD", "UNSELECT takes no arguments" end
  close_view(s)
  return "OK", "UNSELECT completed"
end

function H.EXPUNGE(s, cmd, args)
  local view = s.view
  if view.readonly then return "NO", "mailbox is read-only" end
  local only
  if cmd.uid then
    if #args ~= 1 or args.kinds ~= "a" then return "BAD", "UID EXPUNGE set" end
    local err
    only, err = view:resolve(args[1], true)
    if not only then return "BAD", err end
  elseif #args > 0 then
    return "BAD", "EXPUNGE takes no arguments"
  end
  view:expunge(function(l) s:send(l) end, only)
  return "OK", "EXPUNGE completed"
end

local function seqs_arg(s, cmd, args)
  if args.kinds:sub(1, 1) ~= "a" then return nil, "sequence set expected" end
  local seqs, err = s.view:resolve(args[1], cmd.uid)
  if not seqs then
    if err == "no such message" then return nil, "invalid message sequence number" end
    return nil, "invalid sequence set: " .. tostring(err)
  end
  return seqs
end

function H.FETCH(s, cmd, args)
  if #args ~= 2 then return "BAD", "FETCH set items" end
  local seqs, err = seqs_arg(s, cmd, args)
  if not seqs then return "BAD", err end
  local atts
  atts, err = imap.parse_fetch_atts(args, 2)
  if not atts then return "BAD", "invalid fetch items: " .. tostring(err) end
  local ok
  ok, err = F.run(s, seqs, atts, cmd.uid)
  if not ok then
    if err and err:find("not supported") then return "BAD", err end
    return "NO", err
  end
  return "OK", (cmd.uid and "UID " or "") .. "FETCH completed"
end

function H.STORE(s, cmd, args)
  if #args < 3 then return "BAD", "STORE set [+-]FLAGS[.SILENT] (flags)" end
  local seqs, err = seqs_arg(s, cmd, args)
  if not seqs then return "BAD", err end
  local item = args.kinds:sub(2, 2) == "a" and args[2]:upper()
  local op, silent
  if item then op, silent = item:match("^([+-]?)FLAGS(%.?S?I?L?E?N?T?)$") end
  if not op or (silent ~= "" and silent ~= ".SILENT") then return "BAD", "unknown STORE item" end
  local list = {}
  if args.kinds:sub(3, 3) == "(" then
    if #args ~= 3 then return "BAD", "STORE takes one flag list" end
    list = args[3]
    if list.kinds:find("[^a]") then return "BAD", "flags must be atoms" end
  else
    for i = 3, #args do
      if args.kinds:sub(i, i) ~= "a" then return "BAD", "flags expected" end
      list[#list + 1] = args[i]
    end
  end
  for _, f in ipairs(list) do
    if type(f) ~= "string" or not f:match("^\\?[^%s%(%)%]{%%*\"\\]+$") then return "BAD", "invalid flag" end
  end
  local view = s.view
  if view.readonly then return "NO", "mailbox is read-only" end
  local sys, kws = V.letters(list)
  if not sys then return "BAD", kws end
  -- (-FLAGS of a keyword the mailbox never named removes nothing)
  local letters, kerr = V.mailbox_letters(view.mb, list, op == "-")
  if not letters then
    -- RFC 3501 §7.1: without \* in PERMANENTFLAGS no new keyword is kept
    return "NO", "cannot store keywords: " .. tostring(kerr), "LIMIT"
  end
  if kws and op ~= "-" then view:sync_keywords(function(l) s:send(l) end) end
  local failed = false
  for _, i in ipairs(seqs) do
    local m = view.msgs[i]
    if not m.gone then
      -- +FLAGS and -FLAGS change the flags the message has now, not this
      -- session's last look at them: another session may have changed
      -- them meanwhile, and its change must not be undone
      local now = view:current(m)
      local new
      if op == "" then new = letters
      elseif op == "+" then new = maildir.flags(now.flags .. letters)
      else new = (now.flags:gsub("[" .. (letters == "" and "%z" or letters) .. "]", "")) end
      local nm = view:set_flags(now, new)
      if nm then m = nm else failed = true end
      if silent == "" then
        local items = { "FLAGS", V.imap_flags(m.flags, view:is_recent(m), view.kw) }
        if cmd.uid then items[3], items[4] = "UID", m.uid end
        s:send(imap.fetch_response(i, items))
      end
    end
  end
  if failed then return "NO", "some flags could not be stored (expunged?)" end
  return "OK", (cmd.uid and "UID " or "") .. "STORE completed"
end

function H.SEARCH(s, cmd, args)
  if #args < 1 then return "BAD", "SEARCH needs search keys" end
  local res, err, code = S.run(s.view, args, 1)
  if not res then
    if code then return "NO", err, code end
    return "BAD", err
  end
  local out = {}
  if cmd.uid then
    for i, seq in ipairs(res) do out[i] = s.view.msgs[seq].uid end
  else
    out = res
  end
  s:send("* SEARCH" .. (#out > 0 and (" " .. table.concat(out, " ")) or "") .. "\r\n")
  return "OK", (cmd.uid and "UID " or "") .. "SEARCH completed"
end

local function copy_or_move(s, cmd, args, move)
  local verb = move and "MOVE" or "COPY"
  if #args ~= 2 then return "BAD", verb .. " set mailbox" end
  local seqs, err = seqs_arg(s, cmd, args)
  if not seqs then return "BAD", err end
  local name
  name, err = mailbox.name(astr(args, 2))
  if not name then return "NO", err end
  if not mailbox.exists(s, name) then return "NO", "no such mailbox", "TRYCREATE" end
  local view = s.view
  if move and view.readonly then return "NO", "mailbox is read-only" end
  local res, rerr, rcode = mailbox.copy(s, seqs, name, move)
  if not res then return "NO", rerr, rcode end
  local code
  if #res.src > 0 then
    code = "COPYUID " .. res.validity .. " " .. table.concat(res.src, ",") .. " " .. table.concat(res.dst, ",")
  end
  if move then
    if code then s:send("* OK [" .. code .. "] moved\r\n") end
    view:drop(function(l) s:send(l) end)
    return "OK", (cmd.uid and "UID " or "") .. "MOVE completed"
  end
  return "OK", (cmd.uid and "UID " or "") .. "COPY completed", code
end

function H.COPY(s, cmd, args) return copy_or_move(s, cmd, args, false) end
function H.MOVE(s, cmd, args) return copy_or_move(s, cmd, args, true) end

return M
