--- POP3 server (RFC 1939, RFC 2449 CAPA and response codes, RFC 5034
-- SASL AUTH with PLAIN, RFC 4616, RFC 2595 STLS) over the shared Maildir
-- store; `listen_tls` adds the implicit-TLS port (POP3S, RFC 8314).
--
--     local server = require "parley.pop3.server"
--     local srv = server.serve{ listen = "127.0.0.1:1110",
--       store = require("parley.mail.maildir").open("/var/mail"),
--       users = require("parley.mail.users").load("/etc/parley/users") }
--
-- Passwords (USER/PASS, AUTH PLAIN) cross a cleartext connection only as
-- `allow_plaintext_auth` says (default: from loopback peers); otherwise
-- they are refused with `-ERR [AUTH]` and not listed in CAPA until STLS.
-- APOP sends no password and stays available.
--
-- Sessions (RFC 1939 3): AUTHORIZATION (USER/PASS, APOP, AUTH PLAIN, STLS),
-- TRANSACTION (STAT LIST RETR DELE NOOP RSET TOP UIDL), UPDATE (QUIT
-- removes the messages marked deleted; a connection lost before QUIT
-- removes nothing). CAPA in every state.
--
-- The maildrop: the user's Maildir `store:mailbox(user)`, scanned once at
-- login (messages arriving later show up in the next session, RFC 1939 5).
-- One session per maildrop at a time: an flock(2) on `parley-pop3.lock` in
-- the Maildir, a second login gets `-ERR [IN-USE]` (RFC 2449 8.1.1).
-- Octet counts are the size with CRLF line ends (`,W=` in the file name,
-- computed once by reading the file when a name lacks it), and RETR/TOP
-- send exactly that form: bare LF becomes CRLF, a leading "." is doubled,
-- the file is read and sent in 64 KiB chunks (never one big string). A
-- file without a final line end gets CRLF before the terminating dot (the
-- terminator needs it); its count stays the stored size, as Dovecot's.
-- RETR sets the Maildir `S` (seen) flag at once, the way IMAP sees it.
-- UIDL: `%08X%08X` of the message's IMAP UID and the UIDVALIDITY from the
-- store's uidlist (Dovecot's default format), so POP3 and IMAP agree and
-- the values stay the same across sessions; `uidl = "name"` uses the
-- Maildir base name instead (no uidlist file is written).
--
-- Hooks (all optional):
--   on_connect(s)                 false or a string: refuse with -ERR text
--   on_auth(s, mech, user, pass)  true/false to decide alone, nil: default
--                                 (mech "USER", "APOP" (pass = digest,
--                                 s.timestamp) or "PLAIN")
--   on_login(s, user)             after the maildrop is open
--   on_command(s, verb, arg)      verbs the server does not know: return
--                                 true, text (+OK) or false, text (-ERR)
--   on_quit(s, removed)           after the UPDATE state
-- @module parley.pop3.server
local core = require "parley.core"
local starttls = require "parley.smtp.starttls"
local authdelay = require "parley.authdelay"
local fs = core.fs
local smtp_codec = core.smtp
local KEEP_CR = { keep_cr = true }

local M = {}

local EAGAIN = 11

--- Limits and their defaults (every one can be set in the options).
M.DEFAULTS = {
  max_line = 255,            -- command line incl. CRLF (RFC 2449 4)
  max_auth_line = 4096,      -- AUTH initial/continuation response lines
  max_commands_before_login = 30, -- commands in AUTHORIZATION before we hang up
  max_errors = 20,           -- -ERR replies before we hang up
  auth_delay = 2,            -- seconds before answering a failed login
  max_auth_failures = 3,     -- failed logins before we hang up
  idle_timeout = 600,        -- RFC 1939 3: an autologout timer of at least 10 min
  login_timeout = 60,        -- waiting for a command before login
  grace = 5,                 -- seconds sessions get on shutdown
  chunk = 65536,             -- bytes read from a message file at a time
}

local CAPA = { "TOP", "UIDL", "USER", "RESP-CODES", "PIPELINING",
               "AUTH-RESP-CODE", "SASL PLAIN", "STLS", "IMPLEMENTATION parley" }

local session = {}
session.__index = session

-- Replies ------------------------------------------------------------------

local function ok(s, text)
  s.conn:send(text and ("+OK " .. text .. "\r\n") or "+OK\r\n")
end

-- a -ERR reply; counts errors and hangs up after max_errors
local function err(s, text)
  s.errors = s.errors + 1
  if s.errors >= s.opts.max_errors then
    s.conn:send("-ERR too many errors, closing connection\r\n")
    s.quit = true
    return
  end
  s.conn:send("-ERR " .. text .. "\r\n")
end

local function multiline(s, first, lines)
  local out = { "+OK ", first, "\r\n" }
  for i = 1, #lines do
    local l = lines[i]
    if l:sub(1, 1) == "." then l = "." .. l end
    out[#out + 1] = l
    out[#out + 1] = "\r\n"
  end
  out[#out + 1] = ".\r\n"
  s.conn:send(table.concat(out))
end

-- Message bytes on the wire -------------------------------------------------

--- Octets of a message file in CRLF form: its size plus the LFs not
-- preceded by CR (what `,W=` records), read in `chunk`-sized pieces.
-- @return octets, or nil when the file cannot be opened
local function crlf_size(path, chunk)
  local fh = io.open(path, "rb")
  if not fh then return nil end
  local size, lfs, prev_cr = 0, 0, false
  while true do
    local data = fh:read(chunk)
    if not data then break end
    size = size + #data
    local _, all = data:gsub("\n", "")
    local _, crlf = data:gsub("\r\n", "")
    lfs = lfs + all - crlf
    if prev_cr and data:byte(1) == 10 then lfs = lfs - 1 end
    prev_cr = data:byte(-1) == 13
  end
  fh:close()
  return size + lfs
end
M.crlf_size = crlf_size

--- Streams a whole message file to `conn` as a POP3 multi-line body:
-- bare LF sent as CRLF, lines starting with "." get one more (RFC 1939
-- 3), then the terminating "." (after a CRLF if the file does not end
-- in a line end). A CR alone is sent as it is, so the octet count of
-- `crlf_size` holds. Bytes never sit in Lua memory beyond one chunk.
-- @param conn a stream (anything with `send`)
-- @param fh the open file: a Lua file or a core.fs file (`read(n)`)
-- @tparam[opt=65536] integer chunk bytes read at a time
-- @return true, or `nil, err`
function M.send_message(conn, fh, chunk)
  chunk = chunk or 65536
  local enc = smtp_codec.data_encoder(KEEP_CR)   -- the stuffing is SMTP's
  while true do
    local data = fh:read(chunk)
    if not data or data == "" then break end
    local okk, e = conn:send(enc:feed(data))
    if not okk then return nil, e end
    -- a short read is the end of a regular file (saves one read call)
    if #data < chunk then break end
  end
  return conn:send(enc:finish())
end

-- Pieces of a file: lines (with their LF) and, for lines longer than
-- `cap`, cap-sized parts; `whole` tells whether the piece ends a line.
local function pieces(fh, cap)
  local buf, pos = "", 1
  return function()
    while true do
      local i = buf:find("\n", pos, true)
      if i then
        local p = buf:sub(pos, i)
        pos = i + 1
        return p, true
      end
      if #buf - pos + 1 >= cap then
        local p = buf:sub(pos, pos + cap - 1)
        pos = pos + cap
        return p, false
      end
      local more = fh:read(cap)
      if not more or more == "" then
        if pos > #buf then return nil end
        local p = buf:sub(pos)
        buf, pos = "", 1
        return p, false
      end
      buf = buf:sub(pos) .. more
      pos = 1
    end
  end
end

--- Streams the headers, the blank line and the first `n` body lines of a
-- message (TOP, RFC 1939 7) as a multi-line body. Returns true or nil, err.
function M.send_top(conn, fh, n, chunk)
  local inhead, bol, left, last = true, true, n, 10
  for p, whole in pieces(fh, chunk or 65536) do
    if not inhead and bol and left <= 0 then break end
    local sep = inhead and bol and whole and (p == "\n" or p == "\r\n")
    if whole and p:byte(-2) ~= 13 then p = p:sub(1, -2) .. "\r\n" end
    if bol and p:byte(1) == 46 then p = "." .. p end
    local okk, e = conn:send(p)
    if not okk then return nil, e end
    last = p:byte(-1)
    if whole and not inhead then left = left - 1 end   -- a body line ended
    if sep then inhead = false end
    bol = whole
  end
  local okk, e = conn:send(last == 10 and ".\r\n" or "\r\n.\r\n")
  if not okk then return nil, e end
  return true
end

-- Sessions --------------------------------------------------------------------

local function valid_number(s, arg)
  local n = arg and arg:match("^%d+$") and #arg <= 9 and tonumber(arg)
  if not n then return nil end
  local m = s.msgs[n]
  if not m then return nil end
  return n, m
end

-- the message a command names, or nil after an -ERR
local function message(s, arg)
  if not arg or arg == "" then err(s, "message number required") return nil end
  if not arg:match("^%d+$") then err(s, "invalid message number") return nil end
  local n, m = valid_number(s, arg)
  if not n then err(s, "no such message") return nil end
  if m.deleted then err(s, "message " .. n .. " already deleted") return nil end
  return n, m
end

function session:octets(m)
  local v = m.vsize
  if not v then
    v = crlf_size(m.path, self.opts.chunk)
    if not v then
      -- the file moved (flags changed by another reader): look it up again
      local p = self.mb:path(m.name)
      v = p and crlf_size(p, self.opts.chunk) or m.size or 0
    end
    m.vsize = v
  end
  return v
end

function session:uidl(m)
  if self.opts.uidl == "name" then return m.name end
  return string.format("%08X%08X", m.uid or 0, self.uidvalidity or 0)
end

-- Opens the maildrop for `user` after a successful authentication.
-- Returns true, or nil after replying -ERR.
local function open_maildrop(s, user)
  local o = s.opts
  local mb, e = o.store:mailbox(user)
  local dir = mb and o.store:path(user)
  if not mb then err(s, "[SYS/PERM] " .. tostring(e)) return nil end
  -- the Maildir exists before anyone locks it (a user without mail yet)
  for _, d in ipairs { dir, dir .. "/cur", dir .. "/new", dir .. "/tmp" } do
    fs.mkdir(d, 448)
  end
  local lock, lerr = fs.open(dir .. "/parley-pop3.lock", "wc", 384)
  if not lock then err(s, "[SYS/TEMP] cannot open maildrop: " .. tostring(lerr)) return nil end
  local okk, _, errno = lock:lock("ex", true)
  if not okk then
    lock:close()
    if errno == EAGAIN then
      err(s, "[IN-USE] maildrop already in use by another session")
    else
      err(s, "[SYS/TEMP] cannot lock maildrop")
    end
    return nil
  end
  -- one listing of the Maildir: uids() scans under the uidlist lock
  local msgs, serr
  if o.uidl ~= "name" then
    local map, validity, _, listed = mb:uids()
    if map then msgs, s.uidvalidity = listed, validity else serr = validity end
  else
    msgs, serr = mb:scan()
  end
  if not msgs then lock:close() err(s, "[SYS/TEMP] cannot read maildrop: " .. tostring(serr)) return nil end
  s.lock, s.mb, s.msgs, s.user, s.state = lock, mb, msgs, user, "transaction"
  local total = 0
  for i = 1, #msgs do total = total + s:octets(msgs[i]) end
  s.count, s.total = #msgs, total
  if o.on_login then o.on_login(s, user) end
  ok(s, string.format("%s has %d messages (%d octets)", user, #msgs, total))
  return true
end

-- after a failed authentication: the delay, the same reply for every cause
local function auth_failed(s, text)
  local o = s.opts
  s.auth_failures = s.auth_failures + 1
  s.conn:flush()
  authdelay.of(o):failed(s.ip, o.auth_delay)   -- grows with the address's failures
  if s.auth_failures >= o.max_auth_failures then
    s.conn:send("-ERR [AUTH] too many failed logins, closing connection\r\n")
    s.quit = true
    return
  end
  err(s, text or "[AUTH] invalid user name or password")
end

local function login(s, mech, user, secret)
  local o = s.opts
  local r
  if o.on_auth then r = o.on_auth(s, mech, user, secret) end
  if r == nil then
    if not o.users then
      r = false
    elseif mech == "APOP" then
      local pw = o.users:secret(user)
      local want = pw and M.apop_digest(s.timestamp, pw) or "0123456789abcdef0123456789abcdef"
      r = fs.equal(secret:lower(), want) and pw ~= nil
    else
      r = o.users:check(user, secret)
    end
  end
  if not r then return auth_failed(s) end
  authdelay.of(o):succeeded(s.ip)
  local rec = o.users and o.users:get(user)
  user = rec and rec.name or user
  return open_maildrop(s, user)
end

--- The APOP digest (RFC 1939 7): lowercase hex MD5 of timestamp .. secret.
function M.apop_digest(timestamp, secret)
  local sasl = require "parley.smtp.sasl"
  return sasl.hex(sasl.md5(timestamp .. secret))
end

local auth_cmds, trans_cmds, any_cmds = {}, {}, {}

function session:plaintext_allowed()
  return starttls.plaintext_allowed(self.opts.allow_plaintext_auth, self.ip, self.tls ~= nil)
end

-- what CAPA lists in this session's state (RFC 2449 5, RFC 2595 4)
local function offered(s, c)
  if c == "STLS" then return s.state == "authorization" and s.opts.tls_ctx and not s.tls end
  if c == "USER" or c:sub(1, 4) == "SASL" then
    return s.state == "authorization" and s:plaintext_allowed()
  end
  return true
end

any_cmds.CAPA = function(s)
  local lines = {}
  for _, c in ipairs(CAPA) do
    if offered(s, c) then lines[#lines + 1] = c end
  end
  multiline(s, "Capability list follows", lines)
end

any_cmds.QUIT = function(s)
  if s.state ~= "transaction" then
    ok(s, s.opts.hostname .. " POP3 server signing off")
    s.quit = true
    return
  end
  -- UPDATE state (RFC 1939 6)
  s.state = "update"
  local removed, failed = 0, 0
  for i = 1, #s.msgs do
    local m = s.msgs[i]
    if m.deleted then
      local okk, e = s.mb:remove(m.name)
      if okk or e == "no such message" then removed = removed + 1 else failed = failed + 1 end
    end
  end
  if s.opts.on_quit then s.opts.on_quit(s, removed) end
  if failed > 0 then
    s.conn:send("-ERR [SYS/TEMP] some deleted messages not removed\r\n")
  else
    ok(s, string.format("%s POP3 server signing off (%d messages deleted)", s.opts.hostname, removed))
  end
  s.quit = true
end

any_cmds.NOOP = function(s)
  if s.state ~= "transaction" then return err(s, "command not valid in this state") end
  ok(s)
end

local CLEARTEXT = "[AUTH] Plaintext authentication disallowed on non-secure connections: use STLS"

auth_cmds.USER = function(s, arg)
  if not s:plaintext_allowed() then return err(s, CLEARTEXT) end
  if not arg or arg == "" then return err(s, "user name required") end
  s.pending_user = arg
  ok(s)
end

auth_cmds.PASS = function(s, arg)
  local user = s.pending_user
  s.pending_user = nil
  if not s:plaintext_allowed() then return err(s, CLEARTEXT) end
  if not user then return err(s, "USER first") end
  -- RFC 1939 7: the password may contain spaces: arg is the whole rest
  return login(s, "USER", user, arg or "")
end

auth_cmds.APOP = function(s, arg)
  s.pending_user = nil
  if not s.timestamp then return err(s, "APOP not available") end
  local user, digest = (arg or ""):match("^(%S+) (%x+)$")
  if not user or #digest ~= 32 then return err(s, "APOP needs a name and a 32-digit hex digest") end
  return login(s, "APOP", user, digest)
end

local function unb64(x)
  local sasl = require "parley.smtp.sasl"
  return sasl.unb64(x)
end

-- AUTH (RFC 5034)
auth_cmds.AUTH = function(s, arg)
  s.pending_user = nil
  if not arg or arg == "" then
    -- the list of mechanisms (as Dovecot and many clients expect)
    return multiline(s, "Supported mechanisms follow", s:plaintext_allowed() and { "PLAIN" } or {})
  end
  if not s:plaintext_allowed() then return err(s, CLEARTEXT) end
  local mech, ir = arg:match("^(%S+) ?(%S*)$")
  if not mech then return err(s, "syntax error") end
  if mech:upper() ~= "PLAIN" then return err(s, "unrecognized authentication type") end
  if ir == "" then
    s.conn:send("+ \r\n")
    local line, e = s.conn:receive("l")
    if not line then
      if e == "line too long" then return err(s, "authentication line too long") end
      s.quit = true
      return
    end
    if line == "*" then return err(s, "authentication cancelled") end
    ir = line
  end
  if ir == "=" then ir = "" end
  local dec = unb64(ir)
  local z, u, p
  if dec then z, u, p = dec:match("^([^%z]*)%z([^%z]*)%z([^%z]*)$") end
  if not u then return err(s, "cannot decode the PLAIN response") end
  if z ~= "" and z ~= u then return auth_failed(s) end
  return login(s, "PLAIN", u, p)
end

-- RFC 2595 4: +OK, the handshake, and a session that forgets what the
-- client said before (a USER waiting for its PASS)
auth_cmds.STLS = function(s, arg)
  s.pending_user = nil
  local ctx = s.opts.tls_ctx
  if not ctx then return err(s, "STLS not available") end
  if s.tls then return err(s, "command not permitted when TLS active") end
  if arg then return err(s, "STLS takes no argument") end
  ok(s, "Begin TLS negotiation")
  local info, e = starttls.upgrade(s.conn, ctx)
  if not info then
    -- a command pipelined after STLS is never answered
    s.quit, s.gone = true, e
    return
  end
  s.tls = info
end

trans_cmds.STAT = function(s, arg)
  if arg then return err(s, "STAT takes no argument") end
  local n, total = 0, 0
  for i = 1, #s.msgs do
    local m = s.msgs[i]
    if not m.deleted then n = n + 1; total = total + s:octets(m) end
  end
  ok(s, n .. " " .. total)
end

local function listing(s, arg, what, title)
  if arg then
    local n, m = message(s, arg)
    if n then ok(s, n .. " " .. what(s, m)) end
    return
  end
  local out, k = { "+OK ", title, "\r\n" }, 3
  for i = 1, #s.msgs do
    local m = s.msgs[i]
    if not m.deleted then
      out[k + 1] = i
      out[k + 2] = " "
      out[k + 3] = what(s, m)
      out[k + 4] = "\r\n"
      k = k + 4
    end
  end
  out[k + 1] = ".\r\n"
  s.conn:send(table.concat(out))
end

trans_cmds.LIST = function(s, arg)
  return listing(s, arg, session.octets, "scan listing follows")
end

trans_cmds.UIDL = function(s, arg)
  return listing(s, arg, session.uidl, "unique-id listing follows")
end

local function open_message(s, m)
  local fh = fs.open(m.path, "r")
  if not fh then
    local e
    fh, e = s.mb:open(m.name)
    if not fh then
      err(s, "[SYS/TEMP] message is gone: " .. tostring(e))
      return nil
    end
  end
  return fh
end

trans_cmds.RETR = function(s, arg)
  local n, m = message(s, arg)
  if not n then return end
  local fh = open_message(s, m)
  if not fh then return end
  s.conn:send("+OK " .. s:octets(m) .. " octets\r\n")
  -- one read of size + 1 bytes sees a message whole and its end at once
  local chunk = m.size and math.min(s.opts.chunk, m.size + 1) or s.opts.chunk
  local okk, e = M.send_message(s.conn, fh, chunk)
  fh:close()
  if not okk then s.quit = true; s.gone = e; return end
  if not m.flags:find("S", 1, true) then
    -- seen, as IMAP will show it (RFC 3501 \Seen = Maildir "S")
    s.mb:set_flags(m.name, m.flags .. "S")
  end
end

trans_cmds.TOP = function(s, arg)
  local a, b = (arg or ""):match("^(%S+) (%S+)$")
  if not a then return err(s, "TOP needs a message number and a line count") end
  if not b:match("^%d+$") then return err(s, "invalid line count") end
  local n, m = message(s, a)
  if not n then return end
  local fh = open_message(s, m)
  if not fh then return end
  s.conn:send("+OK top of message follows\r\n")
  local okk, e = M.send_top(s.conn, fh, #b > 9 and math.maxinteger or tonumber(b), s.opts.chunk)
  fh:close()
  if not okk then s.quit = true; s.gone = e end
end

trans_cmds.DELE = function(s, arg)
  local n, m = message(s, arg)
  if not n then return end
  m.deleted = true
  ok(s, "message " .. n .. " deleted")
end

trans_cmds.RSET = function(s, arg)
  if arg then return err(s, "RSET takes no argument") end
  local n, total = 0, 0
  for i = 1, #s.msgs do
    local m = s.msgs[i]
    m.deleted = nil
    n = n + 1
    total = total + s:octets(m)
  end
  ok(s, string.format("maildrop has %d messages (%d octets)", n, total))
end

local function dispatch(s, line)
  local o = s.opts
  if line:find("[%z\1-\31\127]") then return err(s, "invalid characters in command") end
  local verb, arg = line:match("^(%a+) (.*)$")
  if not verb then verb = line:match("^%a+$") end
  if not verb then return err(s, "syntax error") end
  verb = verb:upper()
  if #verb > 4 then
    if o.on_command then
      local r, text = o.on_command(s, verb, arg)
      if r ~= nil then
        if r then ok(s, text) else err(s, text or "command refused") end
        return
      end
    end
    return err(s, "unknown command")
  end
  if verb ~= "AUTH" and #line + 2 > o.max_line then return err(s, "line too long") end
  if verb ~= "PASS" and verb ~= "AUTH" and arg then
    -- RFC 1939 3: arguments are separated by single spaces; trailing
    -- spaces are tolerated (many clients send them)
    arg = arg:gsub(" +$", "")
    if arg == "" then arg = nil end
  end
  local h = any_cmds[verb]
  if not h then
    if s.state == "authorization" then
      h = auth_cmds[verb]
      if not h and trans_cmds[verb] then return err(s, "command not valid in this state: log in first") end
    else
      h = trans_cmds[verb]
      if not h and auth_cmds[verb] then return err(s, "command not valid in this state: already logged in") end
    end
  end
  if h then return h(s, arg) end
  if o.on_command then
    local r, text = o.on_command(s, verb, arg)
    if r ~= nil then
      if r then ok(s, text) else err(s, text or "command refused") end
      return
    end
  end
  err(s, "unknown command")
end

local pid = fs.getpid()
local stamp_counter = 0

local function run_session(srv, conn)
  local o = srv.opts
  local ip, port = conn:getpeername()
  local s = setmetatable({ conn = conn, opts = o, server = srv, ip = ip or "?", port = port,
    errors = 0, auth_failures = 0, commands = 0, state = "authorization" }, session)
  conn:setoption("max-line", math.max(o.max_line, o.max_auth_line))
  s.tls = conn:tlsinfo()   -- the POP3S listener
  if s.tls then starttls.record(conn, s.tls) end
  srv.sessions[s] = true
  local function finish()
    srv.sessions[s] = nil
    if s.lock then s.lock:close(); s.lock = nil end
  end
  if o.on_connect then
    local r = o.on_connect(s)
    if r == false or type(r) == "string" then
      conn:send("-ERR " .. (type(r) == "string" and r or "[SYS/PERM] no service for you") .. "\r\n")
      return finish()
    end
  end
  if srv.closing then
    conn:send("-ERR [SYS/TEMP] server shutting down\r\n")
    return finish()
  end
  if o.apop and o.users and o.users.secret then
    stamp_counter = stamp_counter + 1
    local sec, usec = fs.time()
    s.timestamp = string.format("<%d.%d.%d.%d@%s>", pid, stamp_counter, sec, usec, o.hostname)
    conn:send("+OK POP3 server ready " .. s.timestamp .. "\r\n")
  else
    conn:send("+OK POP3 server ready\r\n")
  end
  local ok_, e = pcall(function()
    while not s.quit do
      if srv.closing then
        conn:send("-ERR [SYS/TEMP] server shutting down\r\n")
        break
      end
      local t = s.state == "authorization" and o.login_timeout or o.idle_timeout
      if t ~= s.timeout then conn:settimeout(t); s.timeout = t end
      s.idle = true
      local line, rerr = conn:receive("l")
      s.idle = false
      if line then
        if s.state == "authorization" then
          s.commands = s.commands + 1
          if s.commands > o.max_commands_before_login then
            conn:send("-ERR too many commands before login, closing connection\r\n")
            break
          end
        end
        dispatch(s, line)
      elseif rerr == "line too long" then
        err(s, "line too long")
      elseif rerr == "bare lf" then
        err(s, "bare LF in command: lines end with CRLF")
      elseif rerr == "timeout" then
        conn:send("-ERR autologout: idle for too long\r\n")
        break
      else
        -- lost before QUIT: nothing is deleted (RFC 1939 6)
        s.gone = rerr
        break
      end
    end
  end)
  finish()
  if not ok_ then error(e, 0) end
end

-- Options ---------------------------------------------------------------

local function setup(opts)
  if type(opts) ~= "table" then error("serve expects an options table", 3) end
  local o = {}
  for k, v in pairs(M.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  if not o.store then error("serve needs a store (parley.mail.maildir)", 3) end
  if not (o.users or o.on_auth) then error("serve needs users (parley.mail.users) or an on_auth hook", 3) end
  if o.apop == nil then o.apop = true end
  if o.uidl ~= nil and o.uidl ~= "uid" and o.uidl ~= "name" then error('uidl must be "uid" or "name"', 3) end
  o.hostname = o.hostname or fs.gethostname() or "localhost"
  o.allow_plaintext_auth = starttls.plaintext_policy(o.allow_plaintext_auth)
  for _, h in ipairs { "on_connect", "on_auth", "on_login", "on_command", "on_quit" } do
    if o[h] ~= nil and type(o[h]) ~= "function" then error(h .. " must be a function", 3) end
  end
  return o
end

local srv_methods = {}
srv_methods.__index = srv_methods

local function is_idle(s) return s.idle end

--- Stops the server: idle sessions get `-ERR [SYS/TEMP]` at once and are
-- closed without entering UPDATE (nothing deleted); busy ones get `grace`
-- seconds.
function srv_methods:close(grace)
  return require("parley.server").close_for(self,
    "-ERR [SYS/TEMP] server shutting down\r\n", is_idle, grace)
end

--- Number of sessions running (on both listeners).
function srv_methods:connections() return require("parley.server").connections_for(self) end

--- Waits until the server has stopped.
function srv_methods:wait(timeout) return self.inner:wait(timeout) end

--- Starts a POP3 server.
-- @tparam table opts `listen` ("127.0.0.1:1110"), `store` (a
-- parley.mail.maildir store, required), `users` (a parley.mail.users
-- object; or an `on_auth` hook deciding alone), `hostname` (greeting and
-- APOP timestamp; default the host name), `apop` (true: offer APOP with a
-- timestamp in the greeting, for `{PLAIN}` users), `uidl` ("uid" or
-- "name"), `tls` (`{cert = FILE, key = FILE}`: STLS offered, RFC 2595)
-- or `tls_ctx` (a server context), `listen_tls` (address of an
-- implicit-TLS listener, POP3S: `tls_port`, `tls_address` once started),
-- `allow_plaintext_auth` (`"loopback"` (default): USER/PASS and AUTH PLAIN
-- over TLS, and in cleartext from loopback peers; `true`: everywhere;
-- `false`: only over TLS), the hooks, the limits of `DEFAULTS`; plus parley.serve's
-- `max_connections`, `on_start`, `on_error`, `signals` (true: SIGINT and
-- SIGTERM close the server), `backlog`, `reuseport`.
-- @return server (`port`, `host`, `address`, `close([grace])`,
-- `connections()`, `wait()`), or `nil, err`
function M.serve(opts)
  local o = setup(opts)
  local ctx, cerr = require("parley.server").tls_context(o)
  if cerr then return nil, cerr end
  o.tls_ctx = ctx
  local srv = setmetatable({ opts = o, sessions = setmetatable({}, { __mode = "k" }) }, srv_methods)
  return require("parley.server").serve_for(srv, o, "127.0.0.1:1110", run_session,
    { transcript_protocol = "pop3" })
end

M.session = session
return M
