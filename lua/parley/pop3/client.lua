--- parley.pop3.client: a POP3 client (RFC 1939, 2449 CAPA and response
-- codes, 5034 AUTH with SASL PLAIN, APOP, 2595 STLS; POP3S, RFC 8314).
--
--     local client = require "parley.pop3.client"
--     local c = assert(client.connect("127.0.0.1:1110"))
--     assert(c:login("alice", "secret"))       -- or c:apop(...), c:auth_plain(...)
--     local count, octets = assert(c:stat())
--     for n, size in pairs(assert(c:list())) do print(n, size) end
--     local msg = assert(c:retr(1))            -- a string (CRLF line ends)
--     assert(c:retr(2, io.open("/tmp/m2", "wb")))  -- streamed to a sink
--     assert(c:dele(1))
--     assert(c:quit())                          -- deletions happen now
--
--     -- over TLS: STLS or fail; the certificate checked against the system
--     -- store (or `ca`, `tls_ctx`; `insecure = true` skips it, never silently)
--     local c = assert(client.connect("mail.example.org:110", { tls = "required" }))
--
-- Multi-line replies are read in chunks and un-stuffed (a leading "." of a
-- line removed, RFC 1939 3) without building one string per line; a
-- message streamed to a sink never sits whole in memory.
--
-- Errors: I/O failures return `nil, err` ("closed", "timeout" ...); a
-- `-ERR` returns `nil, text, reply` with `reply = { ok = false, code =
-- "IN-USE" | "AUTH" | "SYS/TEMP" ... | nil, text = ..., line = ... }`
-- (RFC 2449 8 response codes; `text` without the code). CR, LF or NUL in
-- any argument raises before anything is sent.
-- @module parley.pop3.client
local parley = require "parley"
local starttls = require "parley.smtp.starttls"
local transcript = require "parley.transcript"

local M = {}

local upgrade   -- connect's STLS policy, below

--- Default options for `connect`.
-- @table DEFAULTS
M.DEFAULTS = {
  timeout = 60,          -- seconds per I/O call
  connect_timeout = 30,
  max_line = 8192,       -- status line (and listing line) length
  max_size = 256 * 1024 * 1024, -- bytes a message read into a string may have
}

local client = {}
client.__index = client
client.__name = "parley.pop3.client"

local function check(v, what, level)
  if type(v) ~= "string" then error(what .. " must be a string", level + 1) end
  if v:find("[\r\n%z]") then error(what .. " must not contain CR, LF or NUL", level + 1) end
  return v
end

--- Parses a status line: `ok, code, text`.
-- @tparam string line "+OK ..." or "-ERR [IN-USE] ..."
-- @return ok (boolean), code (RFC 2449 response code or nil), text; or nil
-- when the line is neither
function M.parse_status(line)
  local st, rest = line:match("^([%+%-]%u+)(.*)$")
  if st ~= "+OK" and st ~= "-ERR" then return nil end
  if rest ~= "" and rest:sub(1, 1) ~= " " then return nil end
  rest = rest:sub(2)
  local code, text = rest:match("^%[([^%]]*)%] ?(.*)$")
  if not code then text = rest end
  return st == "+OK", code, text
end

-- One line from the connection (CRLF removed), through our own buffer so
-- that bytes after a multi-line body stay for the next reply.
local function read_line(self)
  local buf = self.rbuf
  local max = self.opts.max_line
  while true do
    local i = buf:find("\r\n", 1, true)
    if i then
      self.rbuf = buf:sub(i + 2)
      return buf:sub(1, i - 1)
    end
    if #buf > max then return nil, "line too long" end
    local more, err = self.conn:receive_some()
    if not more then self.rbuf = buf; return nil, err end
    buf = buf .. more
  end
end

local function reply_of(line)
  local okk, code, text = M.parse_status(line)
  if okk == nil then return nil end
  return { ok = okk, code = code, text = text, line = line }
end

--- Reads one status line.
-- @return reply table (`ok`, `code`, `text`, `line`), or nil, err
function client:read_reply()
  local line, err = read_line(self)
  if not line then return nil, err end
  local r = reply_of(line)
  if not r then return nil, "malformed reply: " .. line:sub(1, 80) end
  self.last = r
  return r
end

--- Sends a command and reads its status line.
-- @tparam string verb
-- @tparam[opt] string arg
-- @return reply (`+OK`) or nil, text, reply (`-ERR`) or nil, err (I/O)
function client:command(verb, arg)
  check(verb, "verb", 2)
  if arg ~= nil then check(tostring(arg), "argument", 2) end
  local ok, err = self.conn:send(arg ~= nil and (verb .. " " .. arg .. "\r\n") or (verb .. "\r\n"))
  if not ok then return nil, err end
  local r
  r, err = self:read_reply()
  if not r then return nil, err end
  if not r.ok then return nil, r.text, r end
  return r
end

--- Connects and reads the greeting; with `tls = "starttls"` or
-- `"required"` asks CAPA and upgrades the session (see `client:stls`).
-- @tparam string host "host:port", or a host with `port` next
-- @tparam[opt] number port (110; 995 with `tls = "implicit"`)
-- @tparam[opt] table opts `timeout`, `connect_timeout`, `max_line`, `max_size`,
-- `transcript` (a parley.transcript recorder or target; with
-- `transcript_full`, `transcript_secrets`), `tls` (`"starttls"`: STLS
-- when CAPA lists it, else cleartext; `"required"` (or `true`): STLS or
-- fail, so a stripped capability or a refused STLS ends the session;
-- `"implicit"`: POP3S, TLS from the first byte; default cleartext),
-- `tls_ctx` (a client context: client certificate, own trust), `ca` (PEM
-- file or directory of trusted issuers), `insecure` (true: do not verify
-- the certificate — anyone in the path can then read the session; never
-- the default), `servername` (the name checked and sent as SNI; default
-- the host)
-- @return client (`greeting`, `timestamp` (APOP, or nil), `caps` after
-- STLS), or nil, err (nil, text, reply on a -ERR greeting)
function M.connect(host, port, opts)
  if type(port) == "table" then opts, port = port, nil end
  if type(host) ~= "string" then error("host must be a string", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("opts must be a table", 2) end
  local o = {}
  for k, v in pairs(M.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  local policy = starttls.policy(o.tls)
  if o.servername ~= nil then check(o.servername, "servername", 2) end
  if not port and not host:match(":%d+$") then port = policy == "implicit" and 995 or 110 end
  local ctx, err
  if policy then
    ctx, err = starttls.client_context(o)
    if not ctx then return nil, err end
  end
  local copts = { timeout = o.timeout, connect_timeout = o.connect_timeout,
    tls = policy == "implicit" and ctx or nil, servername = o.servername }
  local conn
  if port then
    conn, err = parley.connect(host, port, copts)
  else
    conn, err = parley.connect(host, copts)
  end
  conn, err = transcript.attach(conn, o, "pop3", "client", err)
  if not conn then return nil, err end
  if policy == "implicit" then starttls.record(conn) end
  local self = setmetatable({ conn = conn, opts = o, rbuf = "", tls_ctx = ctx }, client)
  local r
  r, err = self:read_reply()
  if not r then conn:close() return nil, err end
  if not r.ok then conn:close() return nil, r.text, r end
  self.greeting = r.text
  self.timestamp = r.text:match("(<[^<>]*@[^<>]*>)")
  if policy == "starttls" or policy == "required" then
    local ok, e, rep = upgrade(self, policy)
    if not ok then return nil, e, rep end
  end
  return self
end

-- Reads a multi-line body up to the terminating ".", un-stuffing it, and
-- hands it to emit(chunk) in pieces. Returns bytes, or nil, err.
local function read_body(self, emit)
  -- a virtual CRLF in front makes the first line like every other
  local buf, skip, total = "\r\n" .. self.rbuf, true, 0
  self.rbuf = ""
  local emit_err
  local function out(piece)
    piece = piece:gsub("\r\n%.", "\r\n")
    if skip then piece = piece:sub(3); skip = false end
    if piece ~= "" then
      total = total + #piece
      if not emit_err then
        local ok, e = emit(piece)
        if not ok then emit_err = e or "sink failed" end
      end
    end
  end
  while true do
    local e = buf:find("\r\n.\r\n", 1, true)
    if e then
      out(buf:sub(1, e + 1))
      self.rbuf = buf:sub(e + 5)
      if emit_err then return nil, emit_err end
      return total
    end
    -- keep back what may begin the terminator or a stuffed dot
    local n, cut = #buf, #buf + 1
    for i = math.max(1, n - 3), n do
      if buf:byte(i) == 13 then cut = i break end
    end
    if cut > 1 then
      out(buf:sub(1, cut - 1))
      buf = buf:sub(cut)
    end
    local more, err = self.conn:receive_some()
    if not more then return nil, err end
    buf = buf .. more
  end
end

-- A multi-line command: status, then the body to `emit`.
local function multi(self, verb, arg, emit)
  local r, err, rep = self:command(verb, arg)
  if not r then return nil, err, rep end
  local n
  n, err = read_body(self, emit)
  if not n then return nil, err end
  return r, n
end

-- Collects a multi-line body into lines.
local function lines_of(self, verb, arg)
  local parts = {}
  local r, err, rep = multi(self, verb, arg, function(c) parts[#parts + 1] = c return true end)
  if not r then return nil, err, rep end
  local text = table.concat(parts)
  local out = {}
  for l in text:gmatch("([^\r\n]*)\r\n") do out[#out + 1] = l end
  return out, r
end

--- CAPA (RFC 2449): the server's capabilities.
-- @return table `{ TOP = true, UIDL = true, SASL = {"PLAIN"}, ... }`
-- (name -> array of arguments, or true), plus `lines` (the raw lines); or
-- nil, text, reply
function client:capa()
  local lines, err, rep = lines_of(self, "CAPA")
  if not lines then return nil, err, rep end
  local caps = { lines = lines }
  for _, l in ipairs(lines) do
    local name, rest = l:match("^(%S+)%s*(.*)$")
    if name then
      name = name:upper()
      if rest == "" then caps[name] = true
      else
        local args = {}
        for a in rest:gmatch("%S+") do args[#args + 1] = a end
        caps[name] = args
      end
    end
  end
  self.caps = caps
  return caps
end

--- STLS (RFC 2595 4): the go-ahead, the handshake (the certificate
-- checked as `connect` was told), then CAPA again: what the server said
-- in cleartext is forgotten. A server that sends bytes after its `+OK`
-- before the handshake is refused (`"data after starttls"`) and the
-- connection closed.
-- @tparam[opt] table opts `tls_ctx`, `ca`, `insecure`, `servername` (as
-- for `connect`; default what `connect` was given)
-- @return the new capabilities (as `capa`; `{}` when the server has no
-- CAPA), or nil, text, reply (a -ERR: the session stays in cleartext),
-- or nil, err (any other failure closes the connection)
function client:stls(opts)
  opts = opts or {}
  if self.conn:tlsinfo() then return nil, "tls already active" end
  local ctx, xerr = starttls.context_for(self.tls_ctx, opts)
  if not ctx then return nil, xerr end
  local r, err, rep = self:command("STLS")
  if not r then return nil, err, rep end
  if self.rbuf ~= "" then
    -- bytes past the go-ahead would be read as if they came over TLS
    self.conn:close()
    return nil, "data after starttls"
  end
  local info
  info, err = starttls.upgrade(self.conn, ctx, { servername = opts.servername or self.opts.servername })
  if not info then
    self.conn:close()
    return nil, err
  end
  self.caps = nil
  local caps, cerr, crep = self:capa()
  if not caps then
    if not crep then return nil, cerr end
    caps = {}
  end
  return caps
end

-- connect's STARTTLS policy: CAPA, then STLS when offered (or when the
-- server has no CAPA: an old server may still know STLS)
upgrade = function(self, policy)
  local caps, err, rep = self:capa()
  if not caps and not rep then self.conn:close() return nil, err end
  if caps and not caps.STLS then
    if policy == "starttls" then return true end
    self:quit()
    return nil, "server does not offer STLS"
  end
  local ok
  ok, err, rep = self:stls()
  if ok then return true end
  if rep and policy == "starttls" then return true end
  self.conn:close()
  return nil, err, rep
end

--- The TLS state of the connection: the stream's `tlsinfo()` (`version`,
-- `cipher`, `verified`, `peer` ...), or nil in cleartext.
function client:tlsinfo()
  return self.conn:tlsinfo()
end

--- USER/PASS login.
-- @return true, or nil, text, reply (e.g. code "AUTH" or "IN-USE")
function client:login(user, password)
  check(user, "user", 2)
  check(password, "password", 2)
  local r, err, rep = self:command("USER", user)
  if not r then return nil, err, rep end
  r, err, rep = self:command("PASS", password)
  if not r then return nil, err, rep end
  return true
end

--- APOP login (RFC 1939 7): needs the timestamp from the greeting.
-- @return true, or nil, text, reply
function client:apop(user, password)
  check(user, "user", 2)
  check(password, "password", 2)
  if not self.timestamp then return nil, "server offers no APOP timestamp" end
  local digest = require("parley.pop3.server").apop_digest(self.timestamp, password)
  local r, err, rep = self:command("APOP", user .. " " .. digest)
  if not r then return nil, err, rep end
  return true
end

--- AUTH PLAIN (RFC 5034, RFC 4616), with the initial response.
-- @tparam string user
-- @tparam string password
-- @tparam[opt] string authzid
-- @return true, or nil, text, reply
function client:auth_plain(user, password, authzid)
  check(user, "user", 2)
  check(password, "password", 2)
  if authzid ~= nil then check(authzid, "authzid", 2) end
  local sasl = require "parley.smtp.sasl"
  local r, err, rep = self:command("AUTH", "PLAIN " .. sasl.plain(user, password, authzid))
  if not r then return nil, err, rep end
  return true
end

--- STAT: message count and total octets.
-- @return count, octets; or nil, text, reply
function client:stat()
  local r, err, rep = self:command("STAT")
  if not r then return nil, err, rep end
  local n, size = r.text:match("^(%d+) (%d+)")
  if not n then return nil, "malformed STAT reply: " .. r.line end
  return tonumber(n), tonumber(size)
end

local function number(n, level)
  if math.type(n) ~= "integer" or n < 1 then error("message number must be a positive integer", level + 1) end
  return n
end

local function scan(self, verb, n, conv)
  if n ~= nil then
    local r, err, rep = self:command(verb, number(n, 3))
    if not r then return nil, err, rep end
    local num, v = r.text:match("^(%d+) (%S+)")
    if not num then return nil, "malformed " .. verb .. " reply: " .. r.line end
    return conv(v)
  end
  local lines, err, rep = lines_of(self, verb)
  if not lines then return nil, err, rep end
  local out = {}
  for _, l in ipairs(lines) do
    local num, v = l:match("^(%d+) (%S+)")
    if num then out[tonumber(num)] = conv(v) end
  end
  return out
end

--- LIST: message sizes in octets.
-- @tparam[opt] integer n one message
-- @return size (with n), or a table message number -> size; or nil, text, reply
function client:list(n)
  return scan(self, "LIST", n, tonumber)
end

--- UIDL: unique ids.
-- @tparam[opt] integer n one message
-- @return id (with n), or a table message number -> id; or nil, text, reply
function client:uidl(n)
  return scan(self, "UIDL", n, function(v) return v end)
end

-- a sink: ltn12-style function, Lua file, or nil for a string
local function to_sink(sink)
  if sink == nil then return nil end
  if type(sink) == "function" then return sink end
  if io.type(sink) == "file" then
    return function(chunk)
      if chunk == nil then return true end
      return sink:write(chunk)
    end
  end
  error("sink must be a function or a Lua file", 3)
end

local function fetch(self, verb, arg, sink)
  local fn = to_sink(sink)
  if fn then
    local r, n, rep = multi(self, verb, arg, fn)
    if not r then return nil, n, rep end
    local ok, err = fn(nil)
    if ok == nil and err then return nil, err end
    return n
  end
  local parts, size, max = {}, 0, self.opts.max_size
  local r, err, rep = multi(self, verb, arg, function(c)
    size = size + #c
    if size > max then return nil, "message too large" end
    parts[#parts + 1] = c
    return true
  end)
  if not r then return nil, err, rep end
  return table.concat(parts)
end

--- RETR: a message, un-stuffed, with CRLF line ends.
-- @tparam integer n
-- @param[opt] sink an ltn12-style function `sink(chunk)` (called with nil
-- at the end) or a Lua file: the message is streamed there
-- @return the message string (no sink) or the byte count (sink); or
-- nil, text, reply
function client:retr(n, sink)
  return fetch(self, "RETR", number(n, 2), sink)
end

--- TOP: headers and the first `lines` body lines.
-- @return as `retr`
function client:top(n, lines, sink)
  number(n, 2)
  if math.type(lines) ~= "integer" or lines < 0 then error("lines must be a non-negative integer", 2) end
  return fetch(self, "TOP", n .. " " .. lines, sink)
end

local function simple(verb)
  return function(self, n)
    local r, err, rep = self:command(verb, n ~= nil and number(n, 2) or nil)
    if not r then return nil, err, rep end
    return true, r
  end
end

--- DELE n: marks a message deleted (removed at QUIT). true or nil, text, reply
client.dele = simple("DELE")
--- RSET: unmarks deletions. true or nil, text, reply
client.rset = simple("RSET")
--- NOOP. true or nil, text, reply
client.noop = simple("NOOP")

--- QUIT: ends the session (the server removes deleted messages now) and
-- closes the connection.
-- @return true, or nil, text, reply (e.g. "some deleted messages not removed")
function client:quit()
  local r, err, rep = self:command("QUIT")
  self.conn:close()
  if not r then return nil, err, rep end
  return true
end

--- Closes the connection without QUIT (the server deletes nothing).
function client:close()
  self.conn:close()
  return true
end

client.__close = client.close
client.__tostring = function(self) return "parley.pop3.client: " .. tostring(self.conn) end

return M
