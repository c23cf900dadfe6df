--- SMTP client (RFC 5321) with ESMTP: PIPELINING (RFC 2920), SIZE (1870),
-- 8BITMIME (6152), SMTPUTF8 (6531), CHUNKING/BDAT (3030), AUTH (4954:
-- PLAIN, LOGIN, CRAM-MD5, XOAUTH2), enhanced status codes (2034),
-- STARTTLS (3207) and implicit TLS (8314) with `tls = "starttls" |
-- "required" | "implicit"`. Certificates are verified against the system
-- store unless `insecure = true` is said (or `ca`/`tls_ctx` say whom to
-- trust).
--
--     local client = require "parley.smtp.client"
--     local r, err, reply = client.send{ server = "127.0.0.1:2525",
--       from = "a@example.org", to = { "b@example.org" },
--       message = "Subject: hi\r\n\r\nhello\r\n" }
--     -- r.accepted = { "b@example.org" }, r.rejected = { [addr] = reply },
--     -- r.reply = the final reply { code = 250, enhanced = "2.0.0", text = ... }
--
-- Replies are tables `{ code = 250, enhanced = "2.0.0" | nil, text = "...",
-- lines = { ... } }` (text: the lines joined with "\n", enhanced code
-- removed). I/O failures return `nil, err`; protocol failures
-- `nil, err, reply`. Wrong argument types and CR, LF or NUL in any
-- argument raise before anything is sent.
-- @module parley.smtp.client
local parley = require "parley"
local core = require "parley.core"
local sasl = require "parley.smtp.sasl"
local starttls = require "parley.smtp.starttls"
local transcript = require "parley.transcript"
local smtp = core.smtp

local M = {}

--- Default timeouts in seconds (RFC 5321 4.5.3.2).
M.TIMEOUTS = {
  connect = 30,
  greeting = 300,  -- 4.5.3.2.1 initial 220 message: 5 minutes
  command = 300,   -- 4.5.3.2.2/3 MAIL, RCPT: 5 minutes (EHLO, AUTH ... too)
  data = 120,      -- 4.5.3.2.4 DATA initiation: 2 minutes
  block = 180,     -- 4.5.3.2.5 data block: 3 minutes
  final = 600,     -- 4.5.3.2.6 DATA termination: 10 minutes
}

local client = {}
client.__index = client
client.__name = "parley.smtp.client"

-- Argument checks ------------------------------------------------------

local function check(v, what, level)
  if type(v) ~= "string" then
    error(("%s must be a string, got %s"):format(what, type(v)), level or 3)
  end
  if v:find("[\r\n%z]") then
    error(("%s contains CR, LF or NUL"):format(what), level or 3)
  end
  return v
end
M.check = check

local function check_params(params, level)
  if params == nil then return "" end
  if type(params) ~= "table" then error("params must be a table", level) end
  local out = {}
  for k, v in pairs(params) do
    check(k, "parameter name", level + 1)
    if not k:match("^[%w][%w%-]*$") then error("invalid parameter name: " .. k, level) end
    if v == true then out[#out + 1] = k:upper()
    elseif v ~= false and v ~= nil then
      v = tostring(v)
      check(v, "parameter " .. k, level + 1)
      if v:find("[%s=]") then error("invalid value for parameter " .. k, level) end
      out[#out + 1] = k:upper() .. "=" .. v
    end
  end
  table.sort(out)
  return #out > 0 and " " .. table.concat(out, " ") or ""
end

-- Replies --------------------------------------------------------------

-- Reads one (possibly multi-line) reply. RFC 5321 4.2.1: every line of a
-- multi-line reply carries the same code, "code-" on all but the last.
local function read_reply(self, timeout)
  local conn = self.conn
  conn:settimeout(timeout or self.timeouts.command)
  local lines, code, enhanced
  for _ = 1, self.max_reply_lines do
    local line, err = conn:receive("l")
    if not line then
      self.broken = err
      return nil, err
    end
    if self.trace then self.trace("S: " .. line) end
    local c, more, text, enh = smtp.parse_reply_line(line)
    if not c then self.broken = "protocol error"; return nil, "bad reply: " .. more end
    if code and c ~= code then self.broken = "protocol error"; return nil, "bad reply: code changed inside a multi-line reply" end
    code = c
    enhanced = enhanced or enh
    lines = lines or {}
    lines[#lines + 1] = text
    if not more then
      return { code = code, enhanced = enhanced, text = table.concat(lines, "\n"), lines = lines }
    end
  end
  self.broken = "protocol error"
  return nil, "bad reply: too many lines"
end

local function reply_error(r)
  return ("%d %s%s"):format(r.code, r.enhanced and r.enhanced .. " " or "", r.text)
end
M.reply_string = reply_error

local function send(self, line)
  if self.trace then self.trace("C: " .. line) end
  local ok, err = self.conn:send(line .. "\r\n")
  if not ok then self.broken = err return nil, err end
  return true
end

-- one command, one reply; `ok` is the class of success (2 or 3)
local function command(self, line, timeout, ok_class)
  if self.broken then return nil, self.broken end
  local sent, err = send(self, line)
  if not sent then return nil, err end
  local r, rerr = read_reply(self, timeout)
  if not r then return nil, rerr end
  if r.code // 100 ~= (ok_class or 2) then return nil, reply_error(r), r end
  return r
end

--- Connects and reads the greeting; then says EHLO (HELO when EHLO is
-- refused) unless `opts.ehlo == false`, and with `tls = "starttls"` or
-- `"required"` upgrades the connection (see `client:starttls`).
-- @tparam string address `"host:port"`
-- @tparam[opt] table opts `helo` (name to announce, default "localhost"),
-- `timeouts` (overrides of `TIMEOUTS`), `trace` (function(line) seeing
-- every line), `ehlo` (false: do not greet; ignored with STARTTLS),
-- `max_reply_lines` (100), `transcript` (a parley.transcript recorder or
-- target; with `transcript_full`, `transcript_secrets`), `tls`
-- (`"starttls"`: STARTTLS when offered, else cleartext; `"required"` (or
-- `true`): STARTTLS or fail, so a stripped capability or a refused
-- STARTTLS ends the session; `"implicit"`: TLS from the first byte, the
-- 465 form; default cleartext), `tls_ctx` (a client context: client
-- certificate, own trust), `ca` (PEM file or directory of trusted
-- issuers), `insecure` (true: do not verify the certificate — anyone in
-- the path can then read the session; never the default), `servername`
-- (the name checked and sent as SNI; default the host of `address`)
-- @return a client, or `nil, err [, reply]`
function M.connect(address, opts)
  opts = opts or {}
  check(address, "server address")
  local helo = check(opts.helo or "localhost", "helo name")
  local policy = starttls.policy(opts.tls)
  if opts.servername ~= nil then check(opts.servername, "servername") end
  local timeouts = setmetatable({}, { __index = M.TIMEOUTS })
  for k, v in pairs(opts.timeouts or {}) do timeouts[k] = v end
  local ctx, err
  if policy then
    ctx, err = starttls.client_context(opts)
    if not ctx then return nil, err end
  end
  local conn
  conn, err = parley.connect(address, { connect_timeout = timeouts.connect, max_line = 4096,
    tls = policy == "implicit" and ctx or nil, servername = opts.servername })
  conn, err = transcript.attach(conn, opts, "smtp", "client", err)
  if not conn then return nil, err end
  if policy == "implicit" then starttls.record(conn) end
  local self = setmetatable({ conn = conn, timeouts = timeouts, trace = opts.trace,
    max_reply_lines = opts.max_reply_lines or 100, caps = {}, helo_name = helo,
    tls_ctx = ctx, servername = opts.servername }, client)
  local r, rerr = read_reply(self, timeouts.greeting)
  if not r then conn:close() return nil, rerr end
  self.greeting = r
  if r.code ~= 220 then
    conn:close()
    return nil, reply_error(r), r
  end
  local upgrade = policy == "starttls" or policy == "required"
  if opts.ehlo ~= false or upgrade then
    local ok, e, er = self:ehlo(helo)
    if not ok then self:close() return nil, e, er end
  end
  if upgrade and (self.caps.STARTTLS or policy == "required") then
    local ok, e, er = self:starttls()
    if not ok and (policy == "required" or not er) then self:quit() return nil, e, er end
  end
  return self
end

--- Upgrades the session with STARTTLS (RFC 3207): the 220 go-ahead, the
-- handshake (the certificate checked as `connect` was told), then EHLO
-- again: every capability learned in cleartext is forgotten (4.2). A
-- server that sends bytes after its 220 before the handshake is refused
-- (`"data after starttls"`) and the connection closed.
-- @tparam[opt] table opts `tls_ctx`, `ca`, `insecure`, `servername` (as
-- for `connect`; default what `connect` was given)
-- @return the new EHLO reply, or `nil, err [, reply]` (a 4xx/5xx reply
-- leaves the session in cleartext; any other failure closes it)
function client:starttls(opts)
  opts = opts or {}
  if self.broken then return nil, self.broken end
  if self.conn:tlsinfo() then return nil, "tls already active" end
  local ctx, cerr = starttls.context_for(self.tls_ctx, opts)
  if not ctx then return nil, cerr end
  if not self.caps.STARTTLS then
    return nil, "server does not offer STARTTLS"
  end
  local r, err, er = command(self, "STARTTLS")
  if not r then return nil, err, er end
  if r.code ~= 220 then return nil, reply_error(r), r end
  local info
  info, err = starttls.upgrade(self.conn, ctx, { servername = opts.servername or self.servername,
    timeout = self.timeouts.command })
  if not info then
    self.broken = err
    self.conn:close()
    return nil, err
  end
  if self.trace then self.trace(("* TLS started (%s, %s)"):format(info.version, info.cipher)) end
  self.caps, self.esmtp = {}, nil
  return self:ehlo()
end

--- The TLS state of the connection: the stream's `tlsinfo()` (`version`,
-- `cipher`, `verified`, `peer` ...), or nil in cleartext.
function client:tlsinfo()
  return self.conn:tlsinfo()
end

-- EHLO keywords into a table: PIPELINING = true, SIZE = 10240000 (or
-- true), AUTH = { PLAIN = true, ... }, others = their parameter string.
local function parse_caps(lines)
  local caps = {}
  for i = 2, #lines do
    local kw, rest = lines[i]:match("^([%w][%w%-]*)%s*(.*)$")
    if kw then
      kw = kw:upper()
      if kw == "AUTH" then
        local t = caps.AUTH or {}
        for m in rest:gmatch("%S+") do t[m:upper()] = true end
        caps.AUTH = t
      elseif kw == "SIZE" then
        caps.SIZE = tonumber(rest) or true
      else
        caps[kw] = rest ~= "" and rest or true
      end
    end
  end
  return caps
end
M.parse_caps = parse_caps

--- Sends EHLO, falling back to HELO when the server refuses EHLO (5xx).
-- Fills `c.caps`.
-- @return the reply, or `nil, err, reply`
function client:ehlo(name)
  name = check(name or self.helo_name, "helo name")
  local r, err, er = command(self, "EHLO " .. name)
  if r then
    self.caps = parse_caps(r.lines)
    self.esmtp = true
    return r
  end
  if er and er.code >= 500 then
    r, err, er = command(self, "HELO " .. name)
    if r then self.caps = {}; self.esmtp = false; return r end
  end
  return nil, err, er
end

--- Sends HELO (no extensions).
function client:helo(name)
  name = check(name or self.helo_name, "helo name")
  local r, err, er = command(self, "HELO " .. name)
  if r then self.caps = {}; self.esmtp = false end
  return r, err, er
end

--- Authenticates (RFC 4954).
-- @tparam string user
-- @tparam string secret password (or the OAuth token for XOAUTH2)
-- @tparam[opt] string mech "PLAIN", "LOGIN", "CRAM-MD5" or "XOAUTH2";
-- default: the first the server offers of CRAM-MD5, PLAIN, LOGIN
-- @return the 235 reply, or `nil, err, reply`
function client:auth(user, secret, mech)
  check(user, "user")
  check(secret, "password")
  if mech ~= nil then check(mech, "mechanism"); mech = mech:upper() end
  local offered = type(self.caps.AUTH) == "table" and self.caps.AUTH or {}
  if not mech then
    for _, m in ipairs { "CRAM-MD5", "PLAIN", "LOGIN" } do
      if offered[m] then mech = m break end
    end
    if not mech then return nil, "server offers no usable AUTH mechanism" end
  end
  if mech == "PLAIN" then
    return command(self, "AUTH PLAIN " .. sasl.plain(user, secret), nil, 2)
  elseif mech == "XOAUTH2" then
    local r, err, er = command(self, "AUTH XOAUTH2 " .. sasl.xoauth2(user, secret), nil, 2)
    if not r and er and er.code == 334 then
      -- the server sent an error challenge: an empty line ends the exchange
      r, err, er = command(self, "", nil, 2)
      if r then return nil, "xoauth2 failed", r end
    end
    return r, err, er
  elseif mech == "LOGIN" then
    local r, err, er = command(self, "AUTH LOGIN", nil, 3)
    if not r then return nil, err, er end
    r, err, er = command(self, sasl.b64(user), nil, 3)
    if not r then return nil, err, er end
    return command(self, sasl.b64(secret), nil, 2)
  elseif mech == "CRAM-MD5" then
    local r, err, er = command(self, "AUTH CRAM-MD5", nil, 3)
    if not r then return nil, err, er end
    return command(self, sasl.cram_md5(user, secret, r.text), nil, 2)
  end
  error("unsupported AUTH mechanism: " .. mech, 2)
end

local function path(addr, what)
  check(addr, what, 4)
  if addr == "" then return "<>" end
  if addr:sub(1, 1) == "<" then return addr end
  return "<" .. addr .. ">"
end

--- MAIL FROM. `params` e.g. `{ SIZE = 1234, BODY = "8BITMIME" }`.
function client:mail(from, params)
  return command(self, "MAIL FROM:" .. path(from, "sender") .. check_params(params, 3))
end

--- RCPT TO.
function client:rcpt(to, params)
  return command(self, "RCPT TO:" .. path(to, "recipient") .. check_params(params, 3))
end

--- RSET.
function client:rset() return command(self, "RSET") end
--- NOOP.
function client:noop() return command(self, "NOOP") end
--- VRFY (the reply text holds the answer).
function client:vrfy(s) return command(self, "VRFY " .. check(s, "argument")) end
--- EXPN.
function client:expn(s) return command(self, "EXPN " .. check(s, "argument")) end
--- HELP.
function client:help(s)
  return command(self, s and "HELP " .. check(s, "argument") or "HELP", nil, 2)
end

--- Sends any command line and reads its reply (no class check).
-- @return reply, or `nil, err`
function client:command(line)
  check(line, "command")
  if self.broken then return nil, self.broken end
  local ok, err = send(self, line)
  if not ok then return nil, err end
  return read_reply(self)
end

--- QUIT and close.
function client:quit()
  local r, err, er
  if not self.broken then r, err, er = command(self, "QUIT") end
  self:close()
  return r, err, er
end

--- Closes the connection without QUIT.
function client:close()
  if self.conn then self.conn:close() end
  self.broken = self.broken or "closed"
end

-- Message sources: a string, a Lua file handle, or an ltn12-style source
-- function returning chunks then nil.
local function source_of(message)
  local t = type(message)
  if t == "string" then
    local done = false
    return function()
      if done then return nil end
      done = true
      return message
    end, #message
  elseif t == "function" then
    return message
  elseif io.type(message) == "file" then
    local size = message:seek("end")
    local pos = 0
    message:seek("set", 0)
    return function()
      local s = message:read(65536)
      if s then pos = pos + #s end
      return s
    end, size and size - pos
  end
  error("message must be a string, a file or a source function", 4)
end

-- Writes the message body after a 354: dot-stuffed, CRLF-normalised.
local function write_data(self, src)
  local conn = self.conn
  conn:settimeout(self.timeouts.block)
  local enc = smtp.data_encoder()
  while true do
    local chunk, serr = src()
    if chunk == nil then
      if serr then return nil, "message source failed: " .. tostring(serr) end
      break
    end
    if #chunk > 0 then
      local ok, err = conn:send(enc:feed(chunk))
      if not ok then self.broken = err return nil, err end
    end
  end
  local ok, err = conn:send(enc:finish())
  if not ok then self.broken = err return nil, err end
  return true
end

-- BDAT chunks (RFC 3030): CRLF-normalised, not dot-stuffed. A CR at the
-- end of a chunk is held back until we know whether an LF follows.
local function write_bdat(self, src, chunk_size)
  local conn = self.conn
  conn:settimeout(self.timeouts.block)
  local held, nreplies = "", 0
  local function flush_chunk(data, last)
    local line = ("BDAT %d%s"):format(#data, last and " LAST" or "")
    if self.trace then self.trace("C: " .. line .. " (+" .. #data .. " bytes)") end
    local ok, err = conn:send(line .. "\r\n")
    if ok then ok, err = conn:send(data) end
    if not ok then self.broken = err return nil, err end
    nreplies = nreplies + 1
    return true
  end
  local buf, nbuf = {}, 0
  while true do
    local chunk, serr = src()
    if chunk == nil then
      if serr then return nil, "message source failed: " .. tostring(serr) end
      break
    end
    chunk = held .. chunk
    held = ""
    if chunk:sub(-1) == "\r" then held = "\r"; chunk = chunk:sub(1, -2) end
    chunk = chunk:gsub("\r\n", "\n"):gsub("\r", "\n"):gsub("\n", "\r\n")
    buf[#buf + 1] = chunk
    nbuf = nbuf + #chunk
    if nbuf >= chunk_size then
      local ok, err = flush_chunk(table.concat(buf), false)
      if not ok then return nil, err end
      buf, nbuf = {}, 0
    end
  end
  if held ~= "" then buf[#buf + 1] = "\r\n" end
  local ok, err = flush_chunk(table.concat(buf), true)
  if not ok then return nil, err end
  -- replies to every chunk; the last one is the message's
  local final
  for i = 1, nreplies do
    local r, rerr = read_reply(self, i == nreplies and self.timeouts.final or self.timeouts.block)
    if not r then return nil, rerr end
    final = r
    if r.code ~= 250 then break end
  end
  return final
end

--- Sends one message: MAIL, RCPT for each recipient, DATA (or BDAT).
-- Uses PIPELINING, SIZE, 8BITMIME/SMTPUTF8 (when asked) and CHUNKING when
-- the server offers them.
-- @tparam table m `from` (string, "" for the null path), `to` (string or
-- array), `message` (string, file, or source function), `size` (bytes, for
-- SIZE when the message is a function), `body` ("8BITMIME"), `smtputf8`
-- (bool), `mail_params`, `rcpt_params` (tables), `chunking` (false: never
-- BDAT), `chunk_size` (BDAT chunk, default 1 MiB)
-- @return result `{ accepted = {addr...}, rejected = {[addr] = reply},
-- reply = final reply }`, or `nil, err, reply` (all recipients refused,
-- MAIL or DATA refused, I/O failure)
function client:send(m)
  if type(m) ~= "table" then error("send expects a table", 2) end
  local from = m.from
  check(from, "from", 2)
  local to = type(m.to) == "string" and { m.to } or m.to
  if type(to) ~= "table" or #to == 0 then error("to must be an address or a non-empty array", 2) end
  for i, a in ipairs(to) do check(a, "recipient #" .. i, 2) end
  local src, size = source_of(m.message)
  size = m.size or size
  local caps = self.caps
  local mp = {}
  for k, v in pairs(m.mail_params or {}) do mp[k] = v end
  if caps.SIZE and size then mp.SIZE = size end
  if m.body then mp.BODY = m.body end
  if m.smtputf8 then
    if not caps.SMTPUTF8 then return nil, "server does not offer SMTPUTF8" end
    mp.SMTPUTF8 = true
  end
  local mline = "MAIL FROM:" .. path(from, "sender") .. check_params(mp, 3)
  local rlines = {}
  for i, a in ipairs(to) do
    rlines[i] = "RCPT TO:" .. path(a, "recipient") .. check_params(m.rcpt_params, 3)
  end
  if self.broken then return nil, self.broken end
  local bdat = caps.CHUNKING and m.chunking ~= false
  local result = { accepted = {}, rejected = {} }
  local pipelining = caps.PIPELINING
  -- RFC 2920 3.1: MAIL, RCPTs and (as the last command of the group) DATA
  -- go out together; the replies are then read in order.
  local ok, err = send(self, mline)
  if not ok then return nil, err end
  local function rcpt_reply(i, r)
    if r.code // 100 == 2 then result.accepted[#result.accepted + 1] = to[i]
    else result.rejected[to[i]] = r end
  end
  local mreply, merr
  if pipelining then
    for _, l in ipairs(rlines) do
      ok, err = send(self, l)
      if not ok then return nil, err end
    end
    if not bdat then
      ok, err = send(self, "DATA")
      if not ok then return nil, err end
    end
    mreply, merr = read_reply(self)
    if not mreply then return nil, merr end
    for i = 1, #rlines do
      local r, rerr = read_reply(self)
      if not r then return nil, rerr end
      rcpt_reply(i, r)
    end
  else
    mreply, merr = read_reply(self)
    if not mreply then return nil, merr end
    if mreply.code // 100 == 2 then
      for i, l in ipairs(rlines) do
        ok, err = send(self, l)
        if not ok then return nil, err end
        local r, rerr = read_reply(self)
        if not r then return nil, rerr end
        rcpt_reply(i, r)
      end
    end
  end
  local mail_ok = mreply.code // 100 == 2
  local any = #result.accepted > 0 and mail_ok
  if bdat then
    if not any then
      command(self, "RSET")
      if not mail_ok then return nil, reply_error(mreply), mreply end
      local _, r1 = next(result.rejected)
      return nil, "all recipients refused", r1, result
    end
    local r, rerr = write_bdat(self, src, m.chunk_size or 1048576)
    if not r then return nil, rerr end
    result.reply = r
    if r.code ~= 250 then return nil, reply_error(r), r, result end
    return result
  end
  local dreply
  if pipelining then
    local derr
    dreply, derr = read_reply(self, self.timeouts.data)
    if not dreply then return nil, derr end
    if dreply.code == 354 and not any then
      -- RFC 2920 3.1: the server must not 354 then; if it does, send an
      -- empty message so that nothing is delivered... and reset.
      send(self, ".")
      read_reply(self, self.timeouts.final)
    end
  elseif any then
    local derr
    ok, derr = send(self, "DATA")
    if not ok then return nil, derr end
    dreply, derr = read_reply(self, self.timeouts.data)
    if not dreply then return nil, derr end
  end
  if not mail_ok then
    if pipelining then command(self, "RSET") end
    return nil, reply_error(mreply), mreply
  end
  if not any then
    command(self, "RSET")
    local _, r1 = next(result.rejected)
    return nil, "all recipients refused", r1, result
  end
  if dreply.code ~= 354 then return nil, reply_error(dreply), dreply, result end
  ok, err = write_data(self, src)
  if not ok then return nil, err end
  local r, rerr = read_reply(self, self.timeouts.final)
  if not r then return nil, rerr end
  result.reply = r
  if r.code // 100 ~= 2 then return nil, reply_error(r), r, result end
  return result
end

--- One call: connect, EHLO, AUTH (if asked), send, QUIT.
-- @tparam table m as for `client:send`, plus `server` ("host:port"),
-- `auth` (`{ user =, password = [, mech =] }` or `"user:password"`),
-- `helo`, `timeouts`, `trace`, `transcript`, `transcript_full`,
-- `transcript_secrets`, and the TLS options of `connect` (`tls`,
-- `tls_ctx`, `ca`, `insecure`, `servername`)
-- @return result (see `client:send`), or `nil, err, reply`
function M.send(m)
  if type(m) ~= "table" then error("send expects a table", 2) end
  check(m.server, "server", 2)
  check(m.from, "from", 2)
  local to = type(m.to) == "string" and { m.to } or m.to
  if type(to) ~= "table" or #to == 0 then error("to must be an address or a non-empty array", 2) end
  for i, a in ipairs(to) do check(a, "recipient #" .. i, 2) end
  local auth = m.auth
  if type(auth) == "string" then
    check(auth, "auth", 2)
    local u, p = auth:match("^([^:]*):(.*)$")
    if not u then error("auth must be \"user:password\"", 2) end
    auth = { user = u, password = p }
  end
  if auth ~= nil then
    if type(auth) ~= "table" then error("auth must be a table or \"user:password\"", 2) end
    check(auth.user, "auth user", 2)
    check(auth.password or auth.token, "auth password", 2)
    if auth.mech ~= nil then check(auth.mech, "auth mechanism", 2) end
  end
  if m.helo ~= nil then check(m.helo, "helo", 2) end
  local c, err, r = M.connect(m.server, { helo = m.helo, timeouts = m.timeouts, trace = m.trace,
    transcript = m.transcript, transcript_full = m.transcript_full,
    transcript_secrets = m.transcript_secrets, tls = m.tls, tls_ctx = m.tls_ctx, ca = m.ca,
    insecure = m.insecure, servername = m.servername })
  if not c then return nil, err, r end
  if auth then
    local ok, aerr, ar = c:auth(auth.user, auth.password or auth.token, auth.mech or (auth.token and "XOAUTH2"))
    if not ok then c:quit() return nil, aerr, ar end
  end
  local res, serr, sr, partial = c:send(m)
  c:quit()
  if not res then return nil, serr, sr, partial end
  return res
end

M.client = client
return M
