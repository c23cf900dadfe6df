--- parley.ftp.client: an FTP client (RFC 959, 2389, 2428, 3659; TLS:
-- RFC 4217).
--
--     local client = require "parley.ftp.client"
--     local c = assert(client.connect("127.0.0.1", 2121))
--     assert(c:login())                       -- anonymous by default
--     for _, e in ipairs(assert(c:list())) do print(e.type, e.size, e.name) end
--     local data = assert(c:get("README"))    -- a string
--     assert(c:get("big.iso", "/tmp/big.iso", { progress = print }))
--     assert(c:put("notes.txt", "some text\n"))
--     c:quit()
--
-- Passive mode by default: EPSV first, PASV when the server refuses it;
-- the address in a 227 reply is ignored and the control connection's peer
-- used instead (a NATed or hostile server cannot point us elsewhere).
-- `active = true` listens on the control connection's local address and
-- sends EPRT (PORT when EPRT is refused).
--
-- TLS: `tls = "explicit"` (AUTH TLS, PBSZ 0, PROT P; in cleartext when the
-- server refuses AUTH), `"required"` (the same, but a refusal ends the
-- session: nothing is ever sent in cleartext after the greeting) or
-- `"implicit"` (TLS from the first byte, port 990):
--
--     local c = assert(client.connect("ftp.example.org", { tls = "required" }))
--
-- The certificate is checked against the system store (or `ca`, or
-- `tls_ctx`); `insecure = true` skips that check, so that anyone in the
-- path can read the session: never the default. With PROT P each data
-- connection runs its own handshake, the client as the TLS client (RFC
-- 4217 section 7), resuming the control connection's session as servers
-- such as vsftpd (require_ssl_reuse) and FileZilla Server demand.
--
-- Errors: I/O failures return `nil, err`; an unexpected reply returns
-- `nil, "<code> <text>", reply` with `reply = {code=, text=}`. CR, LF or
-- NUL in any argument raises before anything is sent.
-- @module parley.ftp.client
local parley = require "parley"
local core = require "parley.core"
local transcript = require "parley.transcript"
local starttls = require "parley.smtp.starttls"
local ftp = core.ftp

local M = {}

--- Default options for `connect`.
-- @table DEFAULTS
M.DEFAULTS = {
  timeout = 60,          -- seconds per control or data I/O call
  connect_timeout = 30,
  passive = true,        -- false (or active = true): PORT/EPRT
  epsv = true,           -- try EPSV before PASV
  max_reply_lines = 1000,
  chunk = 65536,         -- bytes per read/progress step for sinks
  tls = false,           -- "explicit" | "required" | "implicit" | false
  insecure = false,      -- true: do not verify the server's certificate
}

-- `tls` option values; "starttls" is the name the mail clients use
local POLICIES = { explicit = "explicit", starttls = "explicit", required = "required",
                   implicit = "implicit" }

local function tls_policy(v)
  if v == nil or v == false then return nil end
  if v == true then return "required" end
  local p = POLICIES[v]
  if not p then error('tls must be "explicit", "required", "implicit" or false', 3) end
  return p
end

local client = {}
client.__index = client
client.__name = "parley.ftp.client"

local function check(v, what, level)
  if type(v) ~= "string" then
    error(("bad argument '%s' (string expected, got %s)"):format(what, type(v)), level or 3)
  end
  if v:find("[\r\n%z]") then
    error(("bad argument '%s' (CR, LF or NUL not allowed)"):format(what), level or 3)
  end
  return v
end

local function fail(reply)
  return nil, reply.code .. " " .. reply.text, reply
end

--- Connects to an FTP server and reads its greeting; with `tls =
-- "explicit"` or `"required"` it then secures the session (see
-- `client:auth_tls`).
-- @tparam string host
-- @tparam number port (default 21; 990 with `tls = "implicit"`)
-- @tparam[opt] table opts see `DEFAULTS`; and `transcript` (a
-- parley.transcript recorder or target: the control connection and, as
-- bulk, every data connection; with `transcript_full`,
-- `transcript_secrets`); TLS: `tls` (`"explicit"` (or `"starttls"`):
-- AUTH TLS, PBSZ 0 and PROT P, going on in cleartext when the server
-- refuses AUTH, and with cleartext data connections when it refuses
-- PBSZ or PROT P; `"required"` (or `true`): the same, but any refusal or a
-- failed handshake fails the connect; `"implicit"`: TLS from the first
-- byte; default `false`, cleartext), `ca` (PEM file or directory of
-- trusted issuers), `tls_ctx` (a client context: client certificate, own
-- trust), `insecure` (true: the certificate is not checked — anyone in
-- the path can then read and change the session), `servername` (the name
-- the certificate must carry and the SNI sent; default `host`)
-- @return a client, or `nil, err [, reply]`
function M.connect(host, port, opts)
  check(host, "host")
  if type(port) == "table" then opts, port = port, nil end
  opts = opts or {}
  local o = {}
  for k, v in pairs(M.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  if o.active then o.passive = false end
  local policy = tls_policy(o.tls)
  if o.servername ~= nil then check(o.servername, "servername") end
  local ctx, err
  if policy then
    ctx, err = starttls.client_context(o)
    if not ctx then return nil, err end
  end
  local conn
  conn, err = parley.connect(host, port or (policy == "implicit" and 990 or 21), { timeout = o.timeout,
    connect_timeout = o.connect_timeout, tls = policy == "implicit" and ctx or nil,
    servername = o.servername })
  conn, err = transcript.attach(conn, o, "ftp", "client", err)
  if not conn then return nil, err end
  if policy == "implicit" then starttls.record(conn) end
  local c = setmetatable({ conn = conn, opts = o, parser = ftp.reply_parser{ max_lines = o.max_reply_lines },
    type = nil, epsv_ok = o.epsv, tls_ctx = ctx, servername = o.servername or host, data_prot = "C" }, client)
  c.peer_ip = (conn:getpeername())
  c.local_ip = (conn:getsockname())
  local r, rerr = c:read_reply()
  if not r then conn:close() return nil, rerr end
  c.greeting = r
  if r.code ~= 220 then
    conn:close()
    return fail(r)
  end
  local ok, rep
  if policy == "implicit" then
    ok, err, rep = c:prot("P")
  elseif policy then
    ok, err, rep = c:auth_tls()
    -- a refused AUTH (cleartext) or PROT P (clear data): explicit goes on
    if not ok and rep and policy == "explicit" then ok = true end
  end
  if policy and not ok then
    if rep and policy ~= "explicit" then c:quit() else conn:close() end
    return nil, err, rep
  end
  return c
end

--- Reads one (possibly multi-line) reply.
-- @return `{code=, text=}`, or `nil, err`
function client:read_reply()
  while true do
    local line, err
    if self.pending then
      line, self.pending = self.pending, nil
    else
      line, err = self.conn:receive("l", self.partial)
      self.partial = nil
    end
    if not line then return nil, err end
    local code, text = self.parser:feed_line(line)
    if code then
      local r = { code = code, text = text }
      self.last = r
      return r
    elseif text then
      return nil, text
    end
  end
end

--- Sends a command and reads its reply.
-- @tparam string verb
-- @tparam[opt] string arg
-- @return `{code=, text=}`, or `nil, err` (I/O)
function client:command(verb, arg)
  check(verb, "verb")
  if arg ~= nil then check(arg, "argument") end
  local ok, err = self.conn:send(arg and (verb .. " " .. arg .. "\r\n") or (verb .. "\r\n"))
  if not ok then return nil, err end
  return self:read_reply()
end

-- command expecting a reply of class `want` (2, 3) or the exact code
local function expect(self, want, verb, arg)
  local r, err = self:command(verb, arg)
  if not r then return nil, err end
  if (want < 10 and r.code // 100 ~= want) or (want >= 100 and r.code ~= want) then
    return fail(r)
  end
  return r
end

--- Logs in (anonymous by default).
-- @tparam[opt="anonymous"] string user
-- @tparam[opt="anonymous@"] string password
-- @return true, or `nil, err, reply`
function client:login(user, password)
  user = user or "anonymous"
  password = password or (user == "anonymous" and "anonymous@" or "")
  check(user, "user")
  check(password, "password")
  local r, err = self:command("USER", user)
  if not r then return nil, err end
  if r.code == 331 or r.code == 332 then
    r, err = self:command("PASS", password)
    if not r then return nil, err end
  end
  if r.code ~= 230 and r.code ~= 202 then return fail(r) end
  self.user = user
  return true
end

--- Secures the session (RFC 4217): AUTH TLS, the handshake (the
-- certificate checked as `connect` was told), then PBSZ 0 and PROT P so
-- that data connections run in TLS too. What the client knew before is
-- forgotten (TYPE, EPSV/EPRT support, the login: log in after this). A
-- server that sends bytes after its 234 before the handshake is refused
-- (`"data after starttls"`) and the connection closed.
-- @tparam[opt] table opts `prot` (`"P"` (default) or `"C"`: data
-- connections in cleartext)
-- @return true, or `nil, err, reply` (a refused AUTH (the session is
-- still in cleartext) or PBSZ/PROT), or `nil, err` (the connection is
-- then closed)
function client:auth_tls(opts)
  opts = opts or {}
  if self.conn:tlsinfo() then return nil, "tls already active" end
  if not self.tls_ctx then
    local ctx, err = starttls.client_context(self.opts)
    if not ctx then return nil, err end
    self.tls_ctx = ctx
  end
  local r, err = self:command("AUTH", "TLS")
  if not r then return nil, err end
  if r.code ~= 234 then return fail(r) end
  local info
  info, err = starttls.upgrade(self.conn, self.tls_ctx, { servername = self.servername })
  if not info then
    self.conn:close()
    return nil, err
  end
  -- RFC 4217 section 4.2: a new session, as after REIN
  self.type, self.want_type, self.user, self.data_prot, self.pbsz = nil, nil, nil, "C", nil
  self.epsv_ok, self.eprt_ok = self.opts.epsv, nil
  return self:prot(opts.prot or "P")
end

--- Sets the data connections' protection (RFC 4217 section 9): PBSZ 0
-- first when not yet sent, then PROT `level`. Needs TLS on the control
-- connection.
-- @tparam string level `"P"` (data connections in TLS) or `"C"` (cleartext)
-- @return true, or `nil, err, reply`
function client:prot(level)
  if level ~= "P" and level ~= "C" then error('bad argument \'level\' ("P" or "C" expected)', 2) end
  if not self.pbsz then
    local r, err, rr = expect(self, 2, "PBSZ", "0")
    if not r then return nil, err, rr end
    self.pbsz = true
  end
  local r, err, rr = expect(self, 2, "PROT", level)
  if not r then return nil, err, rr end
  self.data_prot = level
  return true
end

--- The TLS state of the control connection: the stream's `tlsinfo()`
-- (`version`, `cipher`, `verified`, `peer` ...), or nil in cleartext.
function client:tlsinfo()
  return self.conn:tlsinfo()
end

--- The server's features (FEAT), a table NAME -> params, or `nil, err, reply`.
function client:features()
  local r, err = self:command("FEAT")
  if not r then return nil, err end
  if r.code ~= 211 then return fail(r) end
  return ftp.parse_feat(r.text)
end

--- The current directory (PWD).
-- @return string, or `nil, err, reply`
function client:pwd()
  local r, err, rr = expect(self, 257, "PWD")
  if not r then return nil, err, rr end
  -- "path" with inner quotes doubled (RFC 959 appendix II)
  local t = r.text
  if t:sub(1, 1) ~= '"' then return nil, "bad pwd reply", r end
  local i, out = 2, {}
  while i <= #t do
    local ch = t:sub(i, i)
    if ch == '"' then
      if t:sub(i + 1, i + 1) ~= '"' then return table.concat(out) end
      i = i + 1
    end
    out[#out + 1] = ch
    i = i + 1
  end
  return nil, "bad pwd reply", r
end

--- Changes directory (CWD). @return true or `nil, err, reply`
function client:cwd(path)
  check(path, "path")
  local r, err, rr = expect(self, 2, "CWD", path)
  if not r then return nil, err, rr end
  return true
end

--- Goes to the parent directory (CDUP).
function client:cdup()
  local r, err, rr = expect(self, 2, "CDUP")
  if not r then return nil, err, rr end
  return true
end

--- Creates a directory (MKD). @return the created path (from 257) or true
function client:mkdir(path)
  check(path, "path")
  local r, err, rr = expect(self, 2, "MKD", path)
  if not r then return nil, err, rr end
  return r.text:match('^"(.-)"') or true
end

--- Removes a directory (RMD).
function client:rmdir(path)
  check(path, "path")
  local r, err, rr = expect(self, 2, "RMD", path)
  if not r then return nil, err, rr end
  return true
end

--- Deletes a file (DELE).
function client:delete(path)
  check(path, "path")
  local r, err, rr = expect(self, 2, "DELE", path)
  if not r then return nil, err, rr end
  return true
end

--- Renames (RNFR then RNTO).
function client:rename(from, to)
  check(from, "from")
  check(to, "to")
  local r, err, rr = expect(self, 350, "RNFR", from)
  if not r then return nil, err, rr end
  r, err, rr = expect(self, 2, "RNTO", to)
  if not r then return nil, err, rr end
  return true
end

--- The size of a file in bytes (SIZE, RFC 3659 section 4).
function client:size(path)
  check(path, "path")
  local r, err, rr = expect(self, 213, "SIZE", path)
  if not r then return nil, err, rr end
  local n = ftp.parse_size(r.text:match("^%s*(%S+)") or "")
  if not n then return nil, "bad size reply", r end
  return n
end

--- The modification time of a file, Unix seconds UTC (MDTM, RFC 3659 3).
function client:mdtm(path)
  check(path, "path")
  local r, err, rr = expect(self, 213, "MDTM", path)
  if not r then return nil, err, rr end
  local t = ftp.parse_time(r.text:match("^%s*(%S+)") or "")
  if not t then return nil, "bad mdtm reply", r end
  return t
end

--- Server status (STAT [path]): the reply text.
function client:stat(path)
  if path ~= nil then check(path, "path") end
  local r, err = self:command("STAT", path)
  if not r then return nil, err end
  if r.code // 100 ~= 2 then return fail(r) end
  return r.text
end

--- NOOP. @return true or `nil, err, reply`
function client:noop()
  local r, err, rr = expect(self, 2, "NOOP")
  if not r then return nil, err, rr end
  return true
end

local function set_type(self, t)
  if self.type == t then return true end
  local r, err, rr = expect(self, 2, "TYPE", t)
  if not r then return nil, err, rr end
  self.type = t
  return true
end

--- TYPE A for the following transfers (line ends converted).
function client:ascii() self.want_type = "A" return set_type(self, "A") end
--- TYPE I for the following transfers (the default).
function client:binary() self.want_type = "I" return set_type(self, "I") end

-- ------------------------------------------------------------------------
-- Data connections
-- ------------------------------------------------------------------------

-- A data connection, after the server's 1xx: with PROT P its TLS
-- handshake (the FTP client is the TLS client whoever connected, RFC 4217
-- section 7), offering the control connection's session.
local function secure_data(self, data)
  if self.data_prot ~= "P" then return data end
  local info, err = starttls.upgrade(data, self.tls_ctx, { session = transcript.unwrap(self.conn),
    servername = self.servername })
  if not info then
    data:close()
    return nil, "data connection: " .. tostring(err)
  end
  return data
end

-- prepares a data connection: returns an opener `function() -> stream`
local function prepare_data(self)
  local o = self.opts
  if o.passive then
    local port
    if self.epsv_ok then
      local r, err = self:command("EPSV")
      if not r then return nil, err end
      if r.code == 229 then
        port = ftp.parse_epsv(r.text)
        if not port then return nil, "bad epsv reply", r end
      elseif r.code // 100 == 5 then
        self.epsv_ok = false
      else
        return fail(r)
      end
    end
    if not port then
      local r, err = self:command("PASV")
      if not r then return nil, err end
      if r.code ~= 227 then return fail(r) end
      local _, p = ftp.parse_pasv(r.text)
      -- the IP in 227 is ignored: connect to the control connection's peer
      if not p then return nil, "bad pasv reply", r end
      port = p
    end
    local data, err = parley.connect(self.peer_ip, port, { timeout = o.timeout,
      connect_timeout = o.connect_timeout })
    if not data then return nil, "data connection: " .. tostring(err) end
    data = transcript.follow(data, self.conn, "ftp-data", "client")
    return function() return secure_data(self, data) end, data
  end
  local host = self.local_ip:find(":", 1, true) and "[" .. self.local_ip .. "]" or self.local_ip
  local l, err = parley.listen(host .. ":0", { backlog = 1 })
  if not l then return nil, err end
  local r
  if self.eprt_ok ~= false then
    r, err = self:command("EPRT", ftp.format_eprt(self.local_ip, l:port()))
    if not r then l:close() return nil, err end
    if r.code // 100 == 5 and not self.local_ip:find(":", 1, true) then self.eprt_ok = false end
  end
  if self.eprt_ok == false then
    r, err = self:command("PORT", ftp.format_port(self.local_ip, l:port()))
    if not r then l:close() return nil, err end
  end
  if r.code // 100 ~= 2 then l:close() return fail(r) end
  return function()
    local d, aerr = l:accept(o.connect_timeout)
    l:close()
    if not d then return nil, "data connection: " .. tostring(aerr) end
    d:settimeout(o.timeout)
    return secure_data(self, transcript.follow(d, self.conn, "ftp-data", "client"))
  end, l
end

-- Closes a data connection. A TLS 1.3 server sends session tickets after
-- the handshake, which an upload never reads; closing a socket with
-- unread bytes makes the kernel send RST and drop what it still had to
-- send, so read them first (bounded: they are a few hundred bytes).
local MAX_DRAIN = 64

local function close_data(data)
  if data:tlsinfo() then
    data:settimeout(0)
    for _ = 1, MAX_DRAIN do
      if not data:receive_some() then break end
    end
  end
  data:close()
end

-- Runs one transfer: verb/arg, `pump(data)` moves the bytes.
-- Returns the final reply, or nil, err, reply.
local function transfer(self, verb, arg, offset, pump)
  local open, handle, rr = prepare_data(self)
  if not open then return nil, handle, rr end
  local function drop()
    if handle then handle:close() end
  end
  if offset and offset > 0 then
    local r, err = self:command("REST", tostring(offset))
    if not r then drop() return nil, err end
    if r.code ~= 350 then drop() return fail(r) end
  end
  self.aborting = false
  local r, err = self:command(verb, arg)
  if not r then drop() return nil, err end
  self.last_mark = r.text
  if r.code // 100 ~= 1 then
    drop()
    if r.code // 100 == 2 then return r end   -- nothing to transfer
    return fail(r)
  end
  local data, derr = open()
  if not data then
    drop()
    -- the server answers 425 (or 522) once it gives up
    return nil, derr, self:read_reply()
  end
  self.data = data
  local ok, perr = pump(data)
  self.data = nil
  close_data(data)
  if self.aborting or ok == "abort" then
    -- ABOR: the transfer's reply (426 or 226), then ABOR's own (226/225)
    local r1 = self:read_reply()
    if r1 then self:read_reply() end
    self.aborting = false
    return nil, "aborted", r1
  end
  local fin, ferr = self:read_reply()
  if not fin then return nil, ferr end
  if not ok then return nil, perr, fin end
  if fin.code // 100 ~= 2 then return fail(fin) end
  return fin
end

-- sends ABOR with the Telnet IP/Synch prefix (RFC 959 4.1.3)
local function send_abor(self)
  self.aborting = true
  self.conn:send("\255\244\255\242ABOR\r\n")
  self.conn:flush()
  if self.data then
    self.data:close()
  end
end

--- Aborts the transfer running in another task (ABOR): that call then
-- returns `nil, "aborted"`. Without a transfer, sends ABOR and returns
-- its reply.
function client:abort()
  if self.data then
    send_abor(self)
    return true
  end
  local r, err = self:command("ABOR")
  if not r then return nil, err end
  return r
end

-- Reads the next chunk of a data connection.
-- Works around a driver bug (reported): when the last bytes and the FIN
-- are read in one short read, the FIN's edge is lost and the next receive
-- waits for nothing. So wait in short slices, and when the final reply
-- has come on the control connection the server has closed the data
-- connection: report "closed".
local function data_read(self, data, max)
  local limit = parley.now() + self.opts.timeout
  while true do
    data:settimeout(0.2)
    local chunk, err = data:receive_some(max)
    if chunk or err ~= "timeout" then return chunk, err end
    if not self.pending then
      self.conn:settimeout(0)
      local line, lerr, part = self.conn:receive("l", self.partial)
      self.conn:settimeout(self.opts.timeout)
      if line then
        self.pending = line
      elseif lerr == "timeout" then
        self.partial = part ~= "" and part or nil
      else
        return nil, lerr
      end
    end
    if self.pending then return nil, "closed" end
    if parley.now() >= limit then return nil, "timeout" end
  end
end

local function want_type(self, opts)
  local t = (opts and opts.type) or self.want_type or "I"
  t = t == "ascii" and "A" or t == "binary" and "I" or t
  return set_type(self, t)
end

-- drains a data stream into sink(chunk) with progress and TYPE A decoding
local function pump_in(self, sink, opts, total)
  local progress = opts and opts.progress
  local dec = self.type == "A" and ftp.ascii_decoder() or nil
  local chunk_size = self.opts.chunk
  return function(data)
    local got = opts and opts.offset or 0
    while true do
      local chunk, err = data_read(self, data, chunk_size)
      if not chunk then
        if err == "closed" then break end
        if self.aborting then return "abort" end
        return nil, err
      end
      got = got + #chunk
      if dec then chunk = dec:feed(chunk) end
      if chunk ~= "" then
        local ok, serr = sink(chunk)
        if not ok then return nil, serr or "sink failed" end
      end
      if progress and progress(got, total) == false then
        send_abor(self)
        return "abort"
      end
    end
    if dec then
      local tail = dec:finish()
      if tail ~= "" then sink(tail) end
    end
    sink(nil)
    return true
  end
end

local function pump_out(self, source, opts, total)
  local progress = opts and opts.progress
  local enc = self.type == "A" and ftp.ascii_encoder() or nil
  return function(data)
    local sent = opts and opts.offset or 0
    while true do
      local chunk, err = source()
      if chunk == nil then
        if err then return nil, err end
        break
      end
      if #chunk > 0 then
        local ok, serr = data:send(enc and enc:feed(chunk) or chunk)
        if not ok then
          if self.aborting then return "abort" end
          return nil, serr
        end
        sent = sent + #chunk
        if progress and progress(sent, total) == false then
          send_abor(self)
          return "abort"
        end
      end
    end
    local ok, ferr = data:flush()
    if not ok then return nil, ferr end
    return true
  end
end

local function size_from(text)
  return tonumber(text:match("%((%d+) bytes%)"))
end

--- Downloads a file (RETR).
-- @tparam string remote
-- @param[opt] to nil (the data is returned as a string), a local path
-- (string), an ltn12 sink (function), or a Lua file handle
-- @tparam[opt] table opts `progress(bytes, total_or_nil)` (return false to
-- abort), `offset` (REST: start there), `resume` (with a path: continue
-- a partial local file), `type` ("A"/"I", default binary)
-- @return the string (to = nil) or the byte count, or `nil, err, reply`
function client:get(remote, to, opts)
  check(remote, "remote")
  if type(to) == "table" and opts == nil then opts, to = to, nil end
  opts = opts or {}
  local ok, err, rr = want_type(self, opts)
  if not ok then return nil, err, rr end
  local sink, result, fh
  local count = 0
  if to == nil then
    local parts = {}
    sink = function(c) if c then parts[#parts + 1] = c end return 1 end
    result = function() return table.concat(parts) end
  elseif type(to) == "string" then
    local mode = "wb"
    if opts.resume then
      local f = io.open(to, "rb")
      if f then
        opts.offset = f:seek("end")
        f:close()
        mode = "ab"
      end
    end
    local ferr
    fh, ferr = io.open(to, mode)
    if not fh then return nil, ferr end
  elseif io.type(to) == "file" then
    fh = to
  elseif type(to) == "function" then
    sink = to
  else
    error("bad argument 'to' (nil, path, sink function or file expected)", 2)
  end
  if fh then
    sink = function(c)
      if c then return fh:write(c) end
      return 1
    end
  end
  local counting = sink
  sink = function(c)
    if c then count = count + #c end
    return counting(c)
  end
  local r, terr
  r, terr, rr = transfer(self, "RETR", remote, opts.offset, function(data)
    return pump_in(self, sink, opts, size_from(self.last_mark or ""))(data)
  end)
  if fh and type(to) == "string" then fh:close() end
  if not r then return nil, terr, rr end
  if result then return result() end
  return count
end

--- Uploads (STOR, or APPE with `opts.append`).
-- @tparam string remote
-- @param from the data (string), an ltn12 source (function) or a Lua file
-- handle; see `put_file` for a local path
-- @tparam[opt] table opts `progress(bytes, total_or_nil)`, `append`,
-- `offset` (REST then STOR: the source must start at that offset), `type`,
-- `unique` (STOU: returns the name the server chose)
-- @return the byte count (and the name for `unique`), or `nil, err, reply`
function client:put(remote, from, opts)
  if not (opts and opts.unique and remote == nil) then check(remote, "remote") end
  opts = opts or {}
  local ok, err, rr = want_type(self, opts)
  if not ok then return nil, err, rr end
  local source, total
  if type(from) == "string" then
    total = #from
    local done = false
    local step = 1
    source = function()
      if done or step > #from then done = true return nil end
      local c = from:sub(step, step + 1048575)
      step = step + 1048576
      return c
    end
  elseif io.type(from) == "file" then
    local here = from:seek()
    total = from:seek("end")
    from:seek("set", here)
    source = function() return from:read(self.opts.chunk) end
  elseif type(from) == "function" then
    source = from
  else
    error("bad argument 'from' (string, source function or file expected)", 2)
  end
  local verb = opts.unique and "STOU" or opts.append and "APPE" or "STOR"
  local count = 0
  local counting = source
  source = function()
    local c, e = counting()
    if c then count = count + #c end
    return c, e
  end
  local name
  local r, terr
  r, terr, rr = transfer(self, verb, remote, opts.offset, pump_out(self, source, opts, total))
  if not r then return nil, terr, rr end
  if opts.unique then
    name = r.text:match("unique file name: ([^%)]+)") or (self.last_mark or ""):match("FILE: (.+)")
    return count, name
  end
  return count
end

--- Uploads a local file (STOR); `opts.resume` continues from the remote
-- SIZE (REST then STOR from that offset).
function client:put_file(remote, path, opts)
  check(remote, "remote")
  check(path, "path")
  opts = opts or {}
  local fh, err = io.open(path, "rb")
  if not fh then return nil, err end
  if opts.resume then
    local n = self:size(remote)
    if n then
      opts.offset = n
      fh:seek("set", n)
    end
  end
  local r, e, rr = self:put(remote, fh, opts)
  fh:close()
  return r, e, rr
end

--- Downloads to a local file; same as `get(remote, path, opts)`.
function client:get_file(remote, path, opts)
  check(path, "path")
  return self:get(remote, path, opts)
end

local function lines_of(text)
  local out = {}
  for line in text:gmatch("[^\r\n]+") do out[#out + 1] = line end
  return out
end

local function listing(self, verb, path)
  if path ~= nil then check(path, "path") end
  local parts = {}
  local saved = self.want_type
  -- listings go in TYPE A per RFC 959; most servers ignore it, so keep
  -- the current type and accept either line end
  local r, err, rr = transfer(self, verb, path, nil, function(data)
    while true do
      local c, e = data_read(self, data, 65536)
      if not c then
        if e == "closed" then return true end
        return nil, e
      end
      parts[#parts + 1] = c
    end
  end)
  self.want_type = saved
  if not r then return nil, err, rr end
  return lines_of(table.concat(parts))
end

--- Lists a directory (LIST), parsed with core.ftp.parse_list_line.
-- @return array of entries `{name=, type=, size=, mtime=, mode=, target=}`
-- (lines the parser does not understand, such as "total 12", are left
-- out), then the raw lines; or `nil, err, reply`
function client:list(path)
  local lines, err, rr = listing(self, "LIST", path)
  if not lines then return nil, err, rr end
  local now = os.time()
  local out = {}
  for _, l in ipairs(lines) do
    local e = ftp.parse_list_line(l, now)
    if e then out[#out + 1] = e end
  end
  return out, lines
end

--- Names in a directory (NLST).
function client:nlst(path)
  return listing(self, "NLST", path)
end

--- Lists a directory with MLSD (RFC 3659 section 7): entries with
-- `name`, `type` ("file", "dir", "cdir", "pdir", ...), `size`, `mtime`,
-- `perm`, and every other fact by its lowercased name.
function client:mlsd(path)
  local lines, err, rr = listing(self, "MLSD", path)
  if not lines then return nil, err, rr end
  local out = {}
  for _, l in ipairs(lines) do
    local e = ftp.parse_facts(l)
    if e then out[#out + 1] = e end
  end
  return out
end

--- Facts of one path (MLST).
function client:mlst(path)
  if path ~= nil then check(path, "path") end
  local r, err, rr = expect(self, 250, "MLST", path)
  if not r then return nil, err, rr end
  for line in r.text:gmatch("[^\n]+") do
    if line:sub(1, 1) == " " then return ftp.parse_facts(line:sub(2)) end
  end
  return nil, "no facts in reply", r
end

--- Says goodbye (QUIT) and closes the connection.
-- @return `true, reply` on a 2xx reply, else `nil, err, reply`
function client:quit()
  local r, err = self:command("QUIT")
  self.conn:close()
  if not r then return nil, err end
  if r.code // 100 ~= 2 then return fail(r) end
  return true, r
end

--- Closes the connection without QUIT.
function client:close()
  self.conn:close()
  return true
end

function client:__close() self.conn:close() end
function client:__tostring()
  return ("parley.ftp.client: %s"):format(self.peer_ip or "?")
end

M.client = client
return M
