--- SMTP server (RFC 5321): submission (MSA, RFC 6409), relay (MTA) and
-- final delivery into a Maildir store (MDA), or a sink for load tests.
--
--     local server = require "parley.smtp.server"
--     local srv = server.serve{ listen = "127.0.0.1:2525",
--       domains = { "example.org" }, store = maildir.open("/var/mail"),
--       users = users.load("/etc/parley/users") }
--
-- Extensions: PIPELINING (2920), SIZE (1870), 8BITMIME (6152),
-- ENHANCEDSTATUSCODES (2034/3463), SMTPUTF8 (6531), AUTH PLAIN LOGIN
-- [CRAM-MD5] (4954), CHUNKING/BDAT (3030), STARTTLS (3207) with `tls`,
-- HELP; VRFY/EXPN off by default. `listen_tls` adds an implicit-TLS
-- listener (submissions on 465, RFC 8314 3.3).
--
-- Passwords never cross a cleartext connection unless allowed:
-- `allow_plaintext_auth` (`"loopback"` by default) decides whether AUTH
-- is offered and accepted before STARTTLS; a refusal is
-- `530 5.7.0 Must issue a STARTTLS command first` (RFC 3207 4).
--
-- Hooks (all optional) take the session and return nothing to keep the
-- default decision, `false` to refuse with the default refusal, or
-- `code, text` for a reply of their own (2xx/3xx accept, 4xx/5xx refuse;
-- `text` may start with an enhanced code, "5.7.1 go away"):
--   on_connect(s)            before the greeting (s.ip, s.port)
--   on_helo(s, domain, verb)
--   on_auth(s, mech, user, password)  return true/false to decide alone
--   on_mail(s, from, params)
--   on_rcpt(s, to, params, info)
--   on_message(s, tx)        before 354: return a sink function
--        sink(chunk) ... sink(nil) -> [code, text]   to take the body
--        (streamed, un-stuffed) instead of the store; or nil to deliver
--        normally; or `false`/`code, text` to refuse the DATA
--   on_command(s, verb, arg) for verbs the server does not know
--   on_delivered(s, tx, reply) after the final reply of a transaction
-- @module parley.smtp.server
local parley = require "parley"
local core = require "parley.core"
local sasl = require "parley.smtp.sasl"
local starttls = require "parley.smtp.starttls"
local authdelay = require "parley.authdelay"
local smtp = core.smtp

local M = {}

--- Limits and their defaults (every one can be set in the options).
M.DEFAULTS = {
  max_line = 512,          -- command line, CRLF included (RFC 5321 4.5.3.1.4)
  max_auth_line = 12288,   -- AUTH exchange lines (RFC 4954 4)
  max_text_line = 1000,    -- DATA text line, CRLF included (4.5.3.1.6)
  max_size = 10240000,     -- message bytes (advertised with SIZE)
  max_recipients = 100,    -- per transaction (4.5.3.1.8)
  max_errors = 20,         -- protocol errors before 421 and disconnect
  error_delay = 1,         -- seconds slept before each error reply ...
  error_delay_after = 3,   -- ... once this many errors happened
  auth_delay = 2,          -- seconds before answering a failed AUTH
  max_auth_failures = 3,   -- failed AUTH attempts before disconnect
  idle_timeout = 300,      -- waiting for a command (4.5.3.2.7)
  data_timeout = 600,      -- waiting for DATA/BDAT bytes
    grace = 10,              -- seconds transactions get on shutdown
}

local function split_text(text)
  if type(text) ~= "string" then return nil, tostring(text) end
  local enh, rest = text:match("^(%d%.%d%d?%d?%.%d%d?%d?) (.*)$")
  if enh and smtp.enhanced_valid(enh) then return enh, rest end
  return nil, text
end

local session = {}
session.__index = session

-- Replies ------------------------------------------------------------------

-- Built replies, per enhanced-codes flag, then text, code and enhanced
-- code (interned-string lookups: no key string built per reply). Bounded:
-- texts made per message (a hook's, an id) would otherwise pile up.
local reply_cache = { [true] = {}, [false] = {} }
local cached, MAX_CACHED = 0, 512

local function reply(s, code, enh, text)
  if type(text) ~= "string" then
    s.conn:send(smtp.reply(code, s.enhanced and enh or nil, text))
    return
  end
  local e = s.enhanced
  local by_text = reply_cache[e][text]
  local by_code = by_text and by_text[code]
  local r = by_code and by_code[enh or false]
  if not r then
    r = smtp.reply(code, e and enh or nil, text)
    if cached < MAX_CACHED then
      cached = cached + 1
      if not by_text then by_text = {} reply_cache[e][text] = by_text end
      if not by_code then by_code = {} by_text[code] = by_code end
      by_code[enh or false] = r
    end
  end
  s.conn:send(r)
end
session.reply = reply

-- a hook's custom reply: code, text
local function hook_reply(s, code, text, def_enh)
  local enh, t = split_text(text or "")
  if not enh and code >= 400 then enh = def_enh end
  if enh and tostring(code):sub(1, 1) ~= enh:sub(1, 1) then enh = nil end
  reply(s, code, enh, t ~= "" and t or (code < 400 and "OK" or "refused"))
end

-- an error reply, counting errors and slowing a client that makes many
local function err_reply(s, code, enh, text)
  s.errors = s.errors + 1
  local o = s.opts
  if s.errors >= o.max_errors then
    reply(s, 421, "4.7.0", "too many errors, closing connection")
    s.quit = true
    return
  end
  if s.errors > o.error_delay_after and o.error_delay > 0 then
    s.conn:flush()
    parley.sleep(o.error_delay)
  end
  reply(s, code, enh, text)
end

-- Helpers ------------------------------------------------------------------

local function ip_in(ip, nets)
  for _, n in ipairs(nets or {}) do
    local base, bits = n:match("^(.-)/(%d+)$")
    base = base or n
    bits = tonumber(bits)
    if not ip:find(":", 1, true) and not base:find(":", 1, true) then
      local a = { ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$") }
      local b = { base:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$") }
      if #a == 4 and #b == 4 then
        local x = ((a[1] * 256 + a[2]) * 256 + a[3]) * 256 + a[4]
        local y = ((b[1] * 256 + b[2]) * 256 + b[3]) * 256 + b[4]
        bits = bits or 32
        local shift = 32 - bits
        if (x >> shift) == (y >> shift) then return true end
      end
    elseif ip:lower() == base:lower() then
      return true
    end
  end
  return false
end
M.ip_in = ip_in

local NONE = setmetatable({}, { __newindex = function() error("read-only table", 2) end })

-- a sink never resolves recipients: its locals/remotes stay one shared empty table
local function new_tx(o, from, params, info)
    return { from = from, params = params, info = info, rcpts = {},
           locals = o.sink and NONE or {}, remotes = o.sink and NONE or {},
           smtputf8 = params.SMTPUTF8 == true }
end

-- Message ids: the time and a random part (redone once a second) then a
-- counter; one number formatting per message.
local id_counter, id_time, id_stamp = 0, nil, nil
local function new_id()
  id_counter = id_counter + 1
  local t = os.time()
  if t ~= id_time then
    id_time, id_stamp = t, ("%X%03X"):format(t, math.random(0, 0xfff))
  end
  return ("%s%05X"):format(id_stamp, id_counter % 0x100000)
end

-- Recipients -----------------------------------------------------------

-- Resolves a local address through the aliases (parley.mail.aliases:
-- `a:expand(addr)` gives the final targets, catch-all and nesting done)
-- to local users and remote addresses. Fills locals (user -> true) and
-- remotes (array); returns true or nil, why.
local function local_user(o, lp, dom)
  local users = o.users
  if users then
    local full = dom and (lp .. "@" .. dom) or nil
    if full and users:exists(full) then return full end
    if users:exists(lp) then return lp end
    if lp:lower() == "postmaster" and o.postmaster and users:exists(o.postmaster) then
      return o.postmaster
    end
    return nil
  end
  -- no users file: any plain local part is a mailbox
  if lp:match("^[%w][%w%.%+_%-]*$") and not lp:find("..", 1, true) then return lp:lower() end
  return nil
end

local function expand(o, addr, locals, remotes)
  local targets = { addr }
  if o.aliases then
    local t, err = o.aliases:expand(addr)
    if not t then return nil, err and err:match("loop") and "alias loop" or (err or "alias error") end
    targets = t
  end
  local dom0 = addr:match("@([^@]*)$")
  for _, t in ipairs(targets) do
    local lp, dom = t:match("^(.*)@([^@]*)$")
    if not lp then lp, dom = t, dom0 end
    if dom and not o.domain_set[dom:lower()] then
      remotes[#remotes + 1] = t
    else
      local u = local_user(o, lp, dom)
      if not u then return nil, "no such user" end
      locals[u] = true
    end
  end
  return true
end

local function relay_allowed(s)
  local o = s.opts
  return s.user ~= nil or ip_in(s.ip, o.relay_networks)
end

-- Commands -----------------------------------------------------------------

local handlers = {}

local function ehlo_lines(s)
  local o = s.opts
  local lines = { o.hostname .. " greets " .. (s.helo or "you") }
  if o.pipelining ~= false then lines[#lines + 1] = "PIPELINING" end
  lines[#lines + 1] = "SIZE " .. math.tointeger(o.max_size)
  lines[#lines + 1] = "8BITMIME"
  lines[#lines + 1] = "ENHANCEDSTATUSCODES"
  lines[#lines + 1] = "SMTPUTF8"
  if o.chunking ~= false then lines[#lines + 1] = "CHUNKING" end
  -- RFC 3207 4.2: not offered again once TLS runs
  if o.tls_ctx and not s.tls then lines[#lines + 1] = "STARTTLS" end
  if s:auth_offered() then
    lines[#lines + 1] = "AUTH " .. table.concat(o.auth_mechs, " ")
  end
  if o.vrfy then lines[#lines + 1] = "VRFY" end
  if o.expn then lines[#lines + 1] = "EXPN" end
  lines[#lines + 1] = "HELP"
  return lines
end

function session:auth_offered()
  local o = self.opts
  if not (o.users or o.on_auth) or #o.auth_mechs == 0 then return false end
  return starttls.plaintext_allowed(o.allow_plaintext_auth, self.ip, self.tls ~= nil)
end

local function greet(s, verb, domain)
  local o = s.opts
  if o.on_helo then
    local c, t = o.on_helo(s, domain, verb)
    if c == false then return err_reply(s, 550, "5.7.1", "greeting refused") end
    if type(c) == "number" then
      if c >= 400 then s.errors = s.errors + 1 return hook_reply(s, c, t, "5.7.1") end
      s.helo, s.esmtp, s.tx = domain, verb == "EHLO", nil
      return hook_reply(s, c, t)
    end
  end
  s.helo = domain
  s.esmtp = verb == "EHLO"
  s.enhanced = s.esmtp
  s.tx = nil
  if verb == "EHLO" then
    reply(s, 250, nil, ehlo_lines(s))
  else
    reply(s, 250, nil, o.hostname)
  end
end

handlers.EHLO = function(s, domain) return greet(s, "EHLO", domain) end
handlers.HELO = function(s, domain) return greet(s, "HELO", domain) end

handlers.NOOP = function(s) reply(s, 250, "2.0.0", "OK") end

handlers.RSET = function(s)
  s.tx = nil
  reply(s, 250, "2.0.0", "OK")
end

handlers.QUIT = function(s)
  reply(s, 221, "2.0.0", s.opts.hostname .. " closing connection")
  s.quit = true
end

handlers.HELP = function(s)
  reply(s, 214, "2.0.0", { "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP AUTH VRFY EXPN",
    "See RFC 5321" })
end

handlers.VRFY = function(s, arg)
  local o = s.opts
  if not o.vrfy then
    -- RFC 5321 3.5.3: 252 when not verifying
    return reply(s, 252, "2.5.0", "cannot VRFY user, but will accept message and attempt delivery")
  end
  local addr = arg:match("^<(.*)>$") or arg
  local locals, remotes = {}, {}
  if not addr:find("@") then addr = addr .. "@" .. o.domains[1] end
  local ok = o.domain_set[(addr:match("@([^@]*)$") or ""):lower()] and expand(o, addr, locals, remotes)
  if ok then return reply(s, 250, "2.1.5", "<" .. addr .. ">") end
  err_reply(s, 550, "5.1.1", "no such user")
end

handlers.EXPN = function(s, arg)
  local o = s.opts
  if not o.expn then return err_reply(s, 502, "5.5.1", "EXPN not available") end
  local locals, remotes = {}, {}
  local addr = arg:match("^<(.*)>$") or arg
  if not addr:find("@") then addr = addr .. "@" .. o.domains[1] end
  if not expand(o, addr, locals, remotes) then return err_reply(s, 550, "5.1.1", "no such list") end
  local out = {}
  for u in pairs(locals) do out[#out + 1] = "<" .. (u:find("@") and u or u .. "@" .. o.domains[1]) .. ">" end
  for _, r in ipairs(remotes) do out[#out + 1] = "<" .. r .. ">" end
  table.sort(out)
  reply(s, 250, "2.1.5", out)
end

-- RFC 3207 4: 220, the handshake, then the session starts over: the
-- client's EHLO and anything else it said before are forgotten (4.2).
handlers.STARTTLS = function(s)
  local o = s.opts
  if not o.tls_ctx then return err_reply(s, 502, "5.5.1", "STARTTLS not available") end
  if s.tls then return err_reply(s, 503, "5.5.1", "TLS already active") end
  if s.tx then return err_reply(s, 503, "5.5.1", "STARTTLS not allowed during a mail transaction") end
  if s.pending then
    -- pipelined past STARTTLS after a DATA (4.2, CVE-2011-0411)
    s.quit, s.gone = true, "data after starttls"
    return
  end
  reply(s, 220, "2.0.0", "Ready to start TLS")
  local info, err = starttls.upgrade(s.conn, o.tls_ctx)
  if not info then
    -- pipelined commands are never answered: the session ends here
    s.quit, s.gone = true, err
    return
  end
  s.tls, s.helo, s.esmtp, s.tx, s.user = info, nil, false, nil, nil
end

-- AUTH (RFC 4954) -----------------------------------------------------------

local function read_auth_line(s)
  local line, err = s:read_line(s.opts.max_auth_line)
  if not line then return nil, err end
  if line == "*" then return nil, "cancelled" end
  return line
end

-- A read in an AUTH exchange that failed: "*" cancels (RFC 4954 4), an
-- over-long line is answered, anything else means the client is gone.
local function auth_read_failed(s, err)
  if err == "cancelled" then return err_reply(s, 501, "5.0.0", "authentication cancelled") end
  if err == "line too long" then return err_reply(s, 500, "5.5.6", "authentication exchange line is too long") end
  s.quit, s.gone = true, err
end

-- The reply to a store that failed: a full disk is 452 4.3.1 (RFC 5321
-- 4.2.2 "insufficient system storage", RFC 3463 "mail system full"),
-- anything else a local error; both temporary, so the client retries.
local function store_failure(what, err)
  err = tostring(err)
  if err:find("no space left", 1, true) or err:find("quota", 1, true) then
    return 452, "4.3.1", "insufficient system storage: " .. err
  end
  return 451, "4.3.0", what .. ": " .. err
end

local function check_credentials(s, mech, user, pass)
  local o = s.opts
  if o.on_auth then
    local r = o.on_auth(s, mech, user, pass)
    if r ~= nil then return r == true end
  end
  if not o.users then return false end
  return o.users:check(user, pass) == true
end

handlers.AUTH = function(s, mech, ir)
  local o = s.opts
  if s.user then return err_reply(s, 503, "5.5.1", "already authenticated") end
  if s.tx then return err_reply(s, 503, "5.5.1", "AUTH not allowed during a mail transaction") end
  if not s.esmtp then return err_reply(s, 503, "5.5.1", "say EHLO first") end
  if not (o.users or o.on_auth) then return err_reply(s, 502, "5.5.1", "AUTH not available") end
  if not starttls.plaintext_allowed(o.allow_plaintext_auth, s.ip, s.tls ~= nil) then
    if o.tls_ctx then return err_reply(s, 530, "5.7.0", "Must issue a STARTTLS command first") end
    -- RFC 4954 6: 538 encryption required; we have no TLS to offer
    return err_reply(s, 538, "5.7.11", "encryption required for requested authentication mechanism")
  end
  if not o.auth_mech_set[mech] then return err_reply(s, 504, "5.5.4", "unrecognized authentication type") end
  local user, pass, err
  if mech == "PLAIN" then
    if not ir then
      reply(s, 334, nil, "")
      ir, err = read_auth_line(s)
      if not ir then return auth_read_failed(s, err) end
    end
    local _
    _, user, pass = sasl.parse_plain(ir == "=" and "" or ir)
    if not user then return err_reply(s, 501, "5.5.2", "cannot decode response") end
  elseif mech == "LOGIN" then
    if ir then
      user = sasl.unb64(ir)
    else
      reply(s, 334, nil, "VXNlcm5hbWU6")
      local l, e = read_auth_line(s)
      if not l then return auth_read_failed(s, e) end
      user = sasl.unb64(l)
    end
    if not user then return err_reply(s, 501, "5.5.2", "cannot decode response") end
    reply(s, 334, nil, "UGFzc3dvcmQ6")
    local l, e = read_auth_line(s)
    if not l then return auth_read_failed(s, e) end
    pass = sasl.unb64(l)
    if not pass then return err_reply(s, 501, "5.5.2", "cannot decode response") end
  elseif mech == "CRAM-MD5" then
    if ir then return err_reply(s, 501, "5.5.2", "CRAM-MD5 takes no initial response") end
    local challenge = ("<%d.%d@%s>"):format(math.random(1, 1e9), os.time(), o.hostname)
    reply(s, 334, nil, sasl.b64(challenge))
    local l, e = read_auth_line(s)
    if not l then return auth_read_failed(s, e) end
    local resp = sasl.unb64(l) or ""
    local u, digest = resp:match("^(.+) (%x+)$")
    local secret = u and o.cram_secret(u)
    if secret and sasl.hmac_md5(secret, challenge) == digest:lower() then
      user, pass = u, true
    else
      user, pass = u or "", false
    end
  end
  local ok
  if pass == true then ok = true
  elseif pass == false then ok = false
  else ok = check_credentials(s, mech, user, pass) end
  if ok then
    s.user = user
    s.auth_failures = 0
    authdelay.of(o):succeeded(s.ip)
    return reply(s, 235, "2.7.0", "authentication successful")
  end
  s.auth_failures = s.auth_failures + 1
  s.conn:flush()
  authdelay.of(o):failed(s.ip, o.auth_delay)   -- grows with the address's failures
  if s.auth_failures >= o.max_auth_failures then
    reply(s, 421, "4.7.0", "too many failed authentication attempts")
    s.quit = true
    return
  end
  err_reply(s, 535, "5.7.8", "authentication credentials invalid")
end

-- Transactions ----------------------------------------------------------

handlers.MAIL = function(s, from, params, info)
  local o = s.opts
  if not s.helo then return err_reply(s, 503, "5.5.1", "say HELO/EHLO first") end
  if s.tx then return err_reply(s, 503, "5.5.1", "nested MAIL command") end
  if o.submission and not s.user then
    return err_reply(s, 530, "5.7.0", "authentication required")
  end
  if not s.esmtp and next(params) then
    return err_reply(s, 555, "5.5.4", "parameters need EHLO")
  end
  for k in pairs(params) do
    if k ~= "SIZE" and k ~= "BODY" and k ~= "SMTPUTF8" and k ~= "AUTH" then
      return err_reply(s, 555, "5.5.4", "unsupported parameter " .. k)
    end
  end
  if params.BODY == "BINARYMIME" then
    return err_reply(s, 555, "5.5.4", "BINARYMIME not supported")
  end
  local declared = params.SIZE and tonumber(params.SIZE)
  if declared and declared > o.max_size then
    return err_reply(s, 552, "5.3.4", "message size exceeds fixed maximum message size")
  end
  if o.on_mail then
    local c, t = o.on_mail(s, from, params, info)
    if c == false then return err_reply(s, 550, "5.7.1", "sender refused") end
    if type(c) == "number" and c >= 400 then s.errors = s.errors + 1 return hook_reply(s, c, t, "5.7.1") end
    s.tx = new_tx(o, from, params, info)
    if type(c) == "number" then return hook_reply(s, c, t) end
    return reply(s, 250, "2.1.0", "OK")
  end
  s.tx = new_tx(o, from, params, info)
  reply(s, 250, "2.1.0", "OK")
end

handlers.RCPT = function(s, to, params, info)
  local o = s.opts
  local tx = s.tx
  if not tx then return err_reply(s, 503, "5.5.1", "need MAIL before RCPT") end
  if next(params) then
    local k = next(params)
    return err_reply(s, 555, "5.5.4", "unsupported parameter " .. k)
  end
  if #tx.rcpts >= o.max_recipients then
    -- RFC 5321 4.5.3.1.10: 452 lets the client send the rest later
    return reply(s, 452, "4.5.3", "too many recipients")
  end
  local rec = { address = to, params = params, info = info }
  if o.on_rcpt then
    local c, t = o.on_rcpt(s, to, params, info)
    if c == false then return err_reply(s, 550, "5.7.1", "recipient refused") end
    if type(c) == "number" then
      if c >= 400 then s.errors = s.errors + 1 return hook_reply(s, c, t, "5.7.1") end
      rec.hooked = true
      tx.rcpts[#tx.rcpts + 1] = rec
      return hook_reply(s, c, t)
    end
  end
  if o.sink then
    tx.rcpts[#tx.rcpts + 1] = rec
    return reply(s, 250, "2.1.5", "OK")
  end
  local dom = info.postmaster and o.domains[1] or info.domain
  local is_local = dom and (o.domain_set[dom:lower()] or (dom == "[" .. s.localip .. "]"))
  if is_local then
    -- RFC 5321 3.6.1 / smtpsmug: a local domain with a relay path in the
    -- local part ("a@ext"@local, a%ext@local, ext!a@local, @local:a@ext)
    if info.relay then
      return err_reply(s, 550, "5.7.1", "relaying denied (" .. info.relay .. ")")
    end
    local addr = info.postmaster and "postmaster@" .. dom or to
    local locals, remotes = {}, {}
    local ok, why = expand(o, addr, locals, remotes)
    if not ok then
      if why == "alias loop" then return err_reply(s, 554, "5.4.6", "alias loop") end
      return err_reply(s, 550, "5.1.1", "no such user here")
    end
    if #remotes > 0 and not o.queue then
      return err_reply(s, 550, "5.7.1", "alias points outside and no relay queue is configured")
    end
    for u in pairs(locals) do tx.locals[u] = tx.locals[u] or addr end
    for _, r in ipairs(remotes) do tx.remotes[#tx.remotes + 1] = r end
    tx.rcpts[#tx.rcpts + 1] = rec
    return reply(s, 250, "2.1.5", "OK")
  end
  if not relay_allowed(s) then
    return err_reply(s, 550, "5.7.1", "relaying denied")
  end
  if not o.queue then
    return err_reply(s, 550, "5.7.1", "relaying not configured")
  end
  tx.remotes[#tx.remotes + 1] = to
  tx.rcpts[#tx.rcpts + 1] = rec
  reply(s, 250, "2.1.5", "OK")
end

-- Message delivery ----------------------------------------------------------

-- The RFC 5321 4.4 trace header, and Return-Path for final delivery.
local function trace_header(s, tx, rcpt)
  local o = s.opts
  -- RFC 3848 (S: TLS, A: authenticated) and RFC 6531 3.7.3 (UTF8SMTP)
  local with = (tx.smtputf8 and "UTF8SMTP" or s.esmtp and "ESMTP" or "SMTP")
    .. (s.tls and "S" or "") .. (s.user and "A" or "")
  return ("Received: from %s (%s [%s])\r\n\tby %s (parley) with %s id %s%s;\r\n\t%s\r\n"):format(
    s.helo or "unknown", s.ip, s.ip, o.hostname, with, tx.id,
    rcpt and ("\r\n\tfor <" .. rcpt .. ">") or "", os.date("!%a, %d %b %Y %H:%M:%S +0000"))
end

-- Opens every destination of a transaction: store deliveries for the
-- local users, one queue entry for the remote recipients, or the hook's
-- sink. Returns a writer `{ write(chunk), commit() -> ok, err, abort() }`.
local function open_targets(s, tx)
  local o = s.opts
  local parts = {}
  local n1 = next(tx.locals)
  local single = n1 and next(tx.locals, n1) == nil and #tx.remotes == 0
  for user, addr in pairs(tx.locals) do
    local d, err = o.store:delivery(user)
    if not d then
      for _, p in ipairs(parts) do p:abort() end
      return nil, err
    end
    parts[#parts + 1] = d
    if o.trace ~= false then
      local ok, werr = d:write("Return-Path: <" .. tx.from .. ">\r\n" ..
        trace_header(s, tx, single and addr or nil))
      if not ok then
        for _, p in ipairs(parts) do p:abort() end
        return nil, werr
      end
    end
  end
  if #tx.remotes > 0 then
    local e, err = o.queue:enqueue{ from = tx.from, to = tx.remotes }
    if not e then
      for _, p in ipairs(parts) do p:abort() end
      return nil, err
    end
    parts[#parts + 1] = e
    if o.trace ~= false then e:write(trace_header(s, tx, nil)) end
  end
  local w = {}
  function w.write(_, chunk)
    for _, p in ipairs(parts) do
      local ok, err = p:write(chunk)
      if not ok then return nil, err end
    end
    return true
  end
  function w.commit(_)
    -- every part must reach the disk before the one 250; a failure after
    -- some commits leaves those delivered (the client will retry: a
    -- duplicate is better than a loss)
    for _, p in ipairs(parts) do
      local ok, err = p:commit()
      if not ok then return nil, err end
    end
    return true
  end
  function w.abort(_)
    for _, p in ipairs(parts) do pcall(p.abort, p) end
  end
  return w
end

-- Writers (w:write(chunk) -> true | nil, err; w:commit() -> ok, err
-- [, hook code, hook text]; w:abort()): one table per message for a
-- hook's sink, none for the sink mode.
local hook_writer = {}
hook_writer.__index = hook_writer
function hook_writer:write(chunk)
  if self.failed then return true end
  local ok, e = self.sink(chunk)
  if ok == false then self.failed = e or "refused" end
  return true
end
function hook_writer:commit()
  if self.failed then return nil, self.failed end
  return true, nil, self.sink(nil)
end
function hook_writer:abort()
  if not self.failed then pcall(self.sink, nil, "aborted") end
end
hook_writer.hook = true

local sink_writer = {
  write = function() return true end,
  commit = function() return true end,
  abort = function() end,
}

-- What receives the body: the hook's sink, the store/queue, or nothing.
-- Returns writer, or nil, code, enh, text when DATA is refused.
local function body_target(s, tx)
  local o = s.opts
  if o.on_message then
    local sink, t = o.on_message(s, tx)
    if sink == false then return nil, 554, "5.7.1", "message refused" end
    if type(sink) == "number" then
      local enh, text = split_text(t or "refused")
      return nil, sink, enh or "5.7.1", text
    end
    if type(sink) == "function" then return setmetatable({ sink = sink }, hook_writer) end
  end
  if o.sink then return sink_writer end
  local w, err = open_targets(s, tx)
  if not w then return nil, store_failure("cannot open mailbox", err) end
  return w
end

local function finish_tx(s, tx, w, derr, size)
  local o = s.opts
  local code, enh, text
  if derr then
    w:abort()
    if derr == "line too long" then
      code, enh, text = 550, "5.6.0", "message has a line longer than " .. o.max_text_line .. " bytes"
    else
      -- RFC 5321 2.3.8 / smtpsmug: bare CR or LF are not line endings
      code, enh, text = 550, "5.6.0", "message contains a " .. derr .. " (SMTP smuggling?)"
    end
    s.errors = s.errors + 1
  elseif size > o.max_size then
    w:abort()
    code, enh, text = 552, "5.3.4", "message size exceeds fixed maximum message size"
    s.errors = s.errors + 1
  else
    local ok, err, hc, ht = w:commit()
    if not ok then
      w:abort()
      code, enh, text = store_failure("local error in processing", err)
    elseif type(hc) == "number" then
      local e2, t2 = split_text(ht or "")
      code, enh, text = hc, e2 or (hc < 400 and "2.0.0" or "5.7.1"), t2 ~= "" and t2 or "OK"
    else
      code, enh, text = 250, "2.0.0", nil
    end
  end
  s.tx = nil
  s.messages = s.messages + 1
  if not text then
    -- the usual 250: its id makes it unique, so no cache (an id is [0-9A-F])
    text = "OK id=" .. tx.id
    s.conn:send(s.enhanced and "250 2.0.0 " .. text .. "\r\n" or "250 " .. text .. "\r\n")
  elseif code // 100 == 2 or not enh or enh:sub(1, 1) == tostring(code // 100) then
    reply(s, code, enh, text)
  else
    reply(s, code, nil, text)
  end
  if o.on_delivered then o.on_delivered(s, tx, { code = code, enhanced = enh, text = text }) end
end

handlers.DATA = function(s)
  local o = s.opts
  local tx = s.tx
  if not tx then return err_reply(s, 503, "5.5.1", "need MAIL command") end
  if #tx.rcpts == 0 then return err_reply(s, 554, "5.5.1", "no valid recipients") end
  if tx.bdat then return err_reply(s, 503, "5.5.1", "DATA not allowed after BDAT") end
  tx.id = new_id()
  local w, code, enh, text = body_target(s, tx)
  if not w then
    s.tx = nil
    return err_reply(s, code, enh, text)
  end
  reply(s, 354, nil, "end data with <CR><LF>.<CR><LF>")
  local conn = s.conn
  conn:settimeout(o.data_timeout)
  s.data_timeout = true
  local dec = smtp.data_decoder(o.decoder_opts)
  local max, werr = o.max_size, nil
  local pending = s.pending
  s.pending = nil
  while true do
    local chunk, err
    if pending then chunk, pending = pending, nil
    else chunk, err = conn:receive_some(65536) end
    if not chunk then
      w:abort()
      s.tx = nil
      s.quit = true
      if err == "timeout" then
        reply(s, 421, "4.4.2", o.hostname .. " timeout while receiving data")
      end
      s.gone = err
      return
    end
    local out, done, used = dec:feed(chunk)
    if #out > 0 and not werr and dec:size() <= max then
      local ok, e = w:write(out)
      if not ok then werr = e end
    end
    if done then
      if used < #chunk then s.pending = chunk:sub(used + 1) end
      break
    end
  end
  if werr then
    w:abort()
    s.tx = nil
    return reply(s, store_failure("local error in processing", werr))
  end
  finish_tx(s, tx, w, dec:error(), dec:size())
end

-- RFC 3030: BDAT size [LAST]; the chunk is read in full even when refused.
handlers.BDAT = function(s, size, last)
  local o = s.opts
  local conn = s.conn
  conn:settimeout(o.data_timeout)
  s.data_timeout = true
  local tx = s.tx
  local refuse
  if o.chunking == false then refuse = { 502, "5.5.1", "BDAT not available" }
  elseif not tx then refuse = { 503, "5.5.1", "need MAIL command" }
  elseif #tx.rcpts == 0 then refuse = { 554, "5.5.1", "no valid recipients" }
  end
  local w
  if not refuse and tx then
    if not tx.bdat then
      tx.id = new_id()
      local c, e, t
      w, c, e, t = body_target(s, tx)
      if not w then refuse = { c, e, t }; s.tx = nil; tx = nil
      else tx.bdat = { w = w, size = 0 } end
    else
      w = tx.bdat.w
    end
  end
  -- read exactly `size` bytes
  local left = size
  local werr
  while left > 0 do
    local chunk, err
    if s.pending then
      chunk = s.pending
      if #chunk > left then s.pending = chunk:sub(left + 1); chunk = chunk:sub(1, left)
      else s.pending = nil end
    else
      chunk, err = conn:receive_some(math.min(left, 65536))
    end
    if not chunk then
      if w then w:abort() end
      s.tx = nil
      s.quit = true
      if err == "timeout" then reply(s, 421, "4.4.2", o.hostname .. " timeout while receiving data") end
      s.gone = err
      return
    end
    left = left - #chunk
    if w and not werr then
      local b = tx.bdat
      b.size = b.size + #chunk
      if b.size <= o.max_size then
        local ok, e = w:write(chunk)
        if not ok then werr = e end
      end
    end
  end
  if refuse then return err_reply(s, refuse[1], refuse[2], refuse[3]) end
  if werr then
    w:abort()
    s.tx = nil
    return reply(s, store_failure("local error in processing", werr))
  end
  if tx.bdat.size > o.max_size then
    -- keep the transaction refusing until LAST; answer now (RFC 3030 2)
    w:abort()
    s.tx = nil
    return err_reply(s, 552, "5.3.4", "message size exceeds fixed maximum message size")
  end
  if not last then
    return reply(s, 250, "2.0.0", size .. " octets received")
  end
  finish_tx(s, tx, w, nil, tx.bdat.size)
end

-- The session loop ---------------------------------------------------------

-- One command line: from what DATA read ahead, else from the stream.
function session:read_line(max)
  local p = self.pending
  if p then
    local i = p:find("\r\n", 1, true)
    if i then
      local line = p:sub(1, i - 1)
      self.pending = i + 1 < #p and p:sub(i + 2) or nil
      if #line + 2 > (max or self.opts.max_line) then return nil, "line too long" end
      return line
    end
    self.pending = nil
    if #p > (max or self.opts.max_line) then
      -- the rest of an over-long line: discard it through its end
      local _, err = self.conn:receive("l")
      return nil, err or "line too long"
    end
    return self.conn:receive("l", p)
  end
  return self.conn:receive("l")
end

local function dispatch(s, line)
  local o = s.opts
  local tx = s.tx
  local verb, a, b, c = smtp.parse_command(line, tx and tx.smtputf8 and o.parse_utf8 or o.parse_ascii)
  if not verb then
    -- a malformed MAIL may still carry SMTPUTF8: retry with it allowed
    if b == 550 and a:find("smtputf8") and line:upper():find("SMTPUTF8", 1, true) then
      verb, a, b, c = smtp.parse_command(line, o.parse_utf8)
    end
    if not verb then
      return err_reply(s, b or 500, c or "5.5.2", a)
    end
  end
  local h = handlers[verb]
  if h then return h(s, a, b, c) end
  if o.on_command then
    local code, text = o.on_command(s, verb, a)
    if type(code) == "number" then return hook_reply(s, code, text, "5.5.1") end
  end
  err_reply(s, 500, "5.5.2", "command not recognized")
end

local function run_session(srv, conn)
  local o = srv.opts
  local ip, port = conn:getpeername()
  local lip = conn:getsockname()
  local s = setmetatable({ conn = conn, opts = o, server = srv, ip = ip or "?", port = port,
    localip = lip or "?", errors = 0, auth_failures = 0, messages = 0, enhanced = true }, session)
  conn:setoption("max-line", math.max(o.max_line, o.max_auth_line))
  s.tls = conn:tlsinfo()   -- the implicit-TLS listener (RFC 8314)
  if s.tls then starttls.record(conn, s.tls) end
  srv.sessions[s] = true
  if o.on_connect then
    local c, t = o.on_connect(s)
    if c == false then c, t = 554, "5.7.1 no service for you" end
    if type(c) == "number" and c >= 400 then
      s.enhanced = true
      hook_reply(s, c == 554 and 554 or c, t, "5.7.1")
      srv.sessions[s] = nil
      return
    end
  end
  if srv.closing then
    reply(s, 421, "4.3.2", o.hostname .. " shutting down")
    srv.sessions[s] = nil
    return
  end
  reply(s, 220, nil, o.hostname .. " ESMTP parley")
  while not s.quit do
    if srv.closing and not s.tx then
      reply(s, 421, "4.3.2", o.hostname .. " shutting down")
      break
    end
    if s.data_timeout ~= false then
      conn:settimeout(o.idle_timeout)
      s.data_timeout = false
    end
    s.idle = true
    local line, err
    if s.pending then line, err = s:read_line() else line, err = conn:receive("l") end
    s.idle = false
    if line then
      dispatch(s, line)
    elseif err == "line too long" then
      err_reply(s, 500, "5.5.2", "line too long")
    elseif err == "bare lf" then
      err_reply(s, 500, "5.5.2", "bare LF in command")
    elseif err == "timeout" then
      reply(s, 421, "4.4.2", o.hostname .. " idle timeout, closing connection")
      break
    else
      s.gone = err
      break
    end
  end
  srv.sessions[s] = nil
end

-- Options ---------------------------------------------------------------

local function setup(opts)
  if type(opts) ~= "table" then error("serve expects an options table", 3) end
  local o = {}
  for k, v in pairs(M.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  o.hostname = o.hostname or (o.domains and o.domains[1]) or o.domain or "localhost"
  if type(o.domains) == "string" then o.domains = { o.domains } end
  o.domains = o.domains or { o.domain or o.hostname }
  o.domain_set = {}
  for _, d in ipairs(o.domains) do o.domain_set[d:lower()] = true end
  if o.relay_networks == nil then o.relay_networks = {} end
  o.allow_plaintext_auth = starttls.plaintext_policy(o.allow_plaintext_auth)
  o.auth_mechs = o.auth_mechs or { "PLAIN", "LOGIN" }
  if o.cram_secret and not opts.auth_mechs then
    table.insert(o.auth_mechs, 1, "CRAM-MD5")
  end
  o.auth_mech_set = {}
  for _, m in ipairs(o.auth_mechs) do
    if m == "CRAM-MD5" and not o.cram_secret then error("CRAM-MD5 needs opts.cram_secret", 3) end
    o.auth_mech_set[m] = true
  end
  -- option tables for the codec, made once
  o.parse_ascii = { smtputf8 = false, max_line = o.max_line }
  o.parse_utf8 = { smtputf8 = true, max_line = o.max_line }
  o.decoder_opts = { bare = o.bare or "reject", max_line = o.max_text_line }
  if not o.sink and not o.store and not o.on_message then
    error("serve needs a store (maildir), a sink or an on_message hook", 3)
  end
  for _, h in ipairs { "on_connect", "on_helo", "on_auth", "on_mail", "on_rcpt", "on_message",
                       "on_command", "on_delivered", "cram_secret" } do
    if o[h] ~= nil and type(o[h]) ~= "function" then error(h .. " must be a function", 3) end
  end
  return o
end

local srv_methods = {}
srv_methods.__index = srv_methods

local function is_idle(s) return s.idle end

--- Stops the server: idle sessions get `421` at once; sessions inside a
-- transaction get `grace` seconds to finish, then 421 too.
function srv_methods:close(grace)
  return require("parley.server").close_for(self,
    smtp.reply(421, "4.3.2", self.opts.hostname .. " shutting down"), is_idle, grace)
end

--- Number of sessions running (on both listeners).
function srv_methods:connections() return require("parley.server").connections_for(self) end

--- Starts an SMTP server.
-- @tparam table opts `listen` (address), `hostname`, `domains` (array of
-- local domains), `store` (a parley.mail.maildir store), `users` (a
-- parley.mail.users object: AUTH and local recipients; without it any
-- plain local part of a local domain is a mailbox), `aliases` (object
-- with `expand(addr)` -> array), `queue` (a parley.smtp.queue for remote
-- recipients), `relay_networks` ({"10.0.0.0/8", ...}; default none),
-- `submission` (true: AUTH required before MAIL), `sink` (accept and
-- discard), `tls` (`{cert = FILE, key = FILE}`: STARTTLS offered, RFC
-- 3207) or `tls_ctx` (a server context from parley.tls.context),
-- `listen_tls` (address of an implicit-TLS listener for the same server,
-- RFC 8314: `tls_port`, `tls_address` once started),
-- `allow_plaintext_auth` (`"loopback"`: AUTH offered over TLS, and in
-- cleartext only to loopback clients; `true`: everywhere; `false`: only
-- over TLS),
-- `auth_mechs` ({"PLAIN","LOGIN"}), `cram_secret` (function(user) ->
-- plaintext secret, enables CRAM-MD5), `vrfy`, `expn` (false), `bare`
-- ("reject" or "normalize" bare CR/LF in DATA), `chunking`, `pipelining`
-- (true), `trace` (true: add Return-Path and Received), the hooks, and the
-- limits of `DEFAULTS`; plus parley.serve's `max_connections`, `on_start`,
-- `signals`, `backlog`, `reuseport`.
-- @return server (`port`, `address`, `close([grace])`, `connections()`),
-- or `nil, err`
function M.serve(opts)
  local o = setup(opts)
  local ctx, err = require("parley.server").tls_context(o)
  if err then return nil, err end
  o.tls_ctx = ctx
  local srv = setmetatable({ opts = o, sessions = setmetatable({}, { __mode = "k" }) }, srv_methods)
  return require("parley.server").serve_for(srv, o, "127.0.0.1:2525", run_session,
    { transcript_protocol = "smtp" })
end

M.session = session
M.handlers = handlers
return M
