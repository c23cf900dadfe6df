--- parley.scenario.conn: a raw connection in a scenario (`s:connect(url)`).
--
-- Lines go out with CRLF appended; lines come in framed on CRLF (a bare
-- LF fails the step unless the connection is `lenient`). Every call that
-- reads is a step with a timeout. What passes is recorded in the
-- transcript by `parley.transcript.wrap`, with the watcher of the URL's
-- protocol (which masks passwords and summarises message bodies,
-- literals and HTTP bodies); tcp:// records plain lines.
--
-- What `expect` accepts:
--
-- * a reply code (`220`): reads a whole reply — `ddd-` continuation
--   lines (SMTP, RFC 5321 4.2.1; FTP, RFC 959 4.2, where lines between
--   the first and the closing `ddd ` line may be free text) — and returns
--   `{ code, lines, text, raw }`; on http:// the status line and the
--   header fields, plus the body when it has a Content-Length or is
--   chunked (`headers`, `body`);
-- * a Lua pattern: the next line must match (`opts.skip = n` lets up to n
--   lines that do not match pass first); returns the line and the
--   captures. On telnet:// the pattern is searched in the text as it
--   arrives (prompts have no line end), skipping what comes before it;
-- * a predicate `function(line)`: the next line must make it truthy;
--   returns the line and the predicate's value;
-- * a list of those: the first that accepts the next line wins; its
--   index is returned after the results.
--
-- TLS: `smtps://`, `submissions://`, `pop3s://`, `imaps://`, `ftps://`
-- and `https://` connect with implicit TLS (RFC 8314; the transcript
-- reads them as the plain protocol); `c:starttls()` turns a plain
-- connection into TLS after the script has sent STARTTLS (STLS, AUTH
-- TLS) and read the go-ahead. Certificates are verified against the
-- system store unless the options (or `s.vars`, so that `parley run --var
-- ca=FILE` or `--var insecure=1` reach every connection) say `ca` or
-- `insecure`.
-- @module parley.scenario.conn
local parley = require "parley"
local transcript = require "parley.transcript"
local starttls = require "parley.smtp.starttls"
local url = require "socket.url"

local M = {}

--- Default ports by URL scheme (tcp:// needs one).
M.PORTS = { smtp = 25, pop3 = 110, imap = 143, ftp = 21, http = 80, telnet = 23,
            smtps = 465, submissions = 465, pop3s = 995, imaps = 993, ftps = 990, https = 443 }
--- The implicit-TLS schemes and the protocol each speaks.
M.TLS_SCHEMES = { smtps = "smtp", submissions = "smtp", pop3s = "pop3", imaps = "imap",
                  ftps = "ftp", https = "http" }
--- Lines one reply (or one `expect_multiline` / `expect_tagged`) may have.
M.MAX_REPLY_LINES = 100000
--- Lines `opts.skip` may let pass at most.
M.MAX_SKIP = 10000
--- Bytes of an HTTP body `expect` keeps.
M.MAX_BODY = 16 * 1048576

local conn = {}
conn.__index = conn
conn.__name = "parley.scenario.conn"

local function check_line(line)
  if type(line) ~= "string" then error("send expects a string", 3) end
  if line:find("[\r\n]") then error("send: the line must not contain CR or LF (use send_raw)", 3) end
end

-- A line in a message: quoted, control bytes made visible.
local function quoted(s)
  return '"' .. transcript.escape(s) .. '"'
end

local function remaining(deadline)
  return math.max(0, deadline - parley.now())
end

-- `--var` values are strings: "", "0", "false" and "no" say no
local function yes(v)
  if type(v) == "string" then return not (v == "" or v == "0" or v:lower() == "false" or v:lower() == "no") end
  return v and true or false
end

-- The client context for a connection's TLS: its options (`tls_ctx`,
-- `ca`, `insecure`), else the scenario's vars (`ca`, `insecure`).
local function tls_context(run, opts)
  local vars = run.vars
  local o = { tls_ctx = opts.tls_ctx, ca = opts.ca, insecure = opts.insecure }
  if o.tls_ctx == nil and o.ca == nil then o.ca = vars.ca end
  if o.insecure == nil then o.insecure = vars.insecure end
  o.insecure = yes(o.insecure)
  return starttls.client_context(o)
end

--- Opens a connection (`s:connect`).
-- @param run the scenario context
-- @tparam string u a URL
-- @tparam[opt] table opts
-- @return a connection, or `nil, err`
function M.open(run, u, opts)
  if type(u) ~= "string" then error("connect expects a URL string", 3) end
  local timeout = run:timeout_of(opts)
  opts = opts or {}
  local p = url.parse(u)
  local scheme = p and p.scheme and p.scheme:lower()
  if not scheme or not (M.PORTS[scheme] or scheme == "tcp") or not p.host then
    error("connect: want scheme://host[:port] with a scheme among tcp, smtp, pop3, imap, ftp, http, "
      .. "telnet (or smtps, submissions, pop3s, imaps, ftps, https): " .. u, 3)
  end
  local port = tonumber(p.port) or M.PORTS[scheme]
  if not port then error("connect: tcp:// needs a port: " .. u, 3) end
  local implicit = M.TLS_SCHEMES[scheme]
  local self = setmetatable({ run = run, scheme = implicit or scheme, url = u, opts = opts,
    host = p.host, port = port }, conn)
  return run:op("connect " .. u, function()
    local ctx, err
    if implicit then
      ctx, err = tls_context(run, opts)
      if not ctx then return false, err end
    end
    local s
    s, err = parley.connect(p.host, port, { connect_timeout = timeout,
      max_line = opts.max_line, lenient = opts.lenient, tls = ctx, servername = opts.servername })
    if not s then return false, err end
    s = transcript.wrap(s, run.recorder, { protocol = self.scheme ~= "tcp" and self.scheme or nil })
    if implicit then starttls.record(s) end
    self.stream = s
    if scheme == "telnet" then
      local copts = {}
      for k, v in pairs(opts) do copts[k] = v end
      copts.timeout = timeout
      local tc, terr = require("parley.telnet.client").wrap(s, copts)
      if not tc then s:close() return false, terr end
      self.telnet = tc
    end
    run:defer(self)
    return true, self
  end)
end

--- A connection opened by `s:connect`: the methods a scenario calls
-- (`send`, `expect`, `capture` ...).
-- @type conn

-- Reading ------------------------------------------------------------------

-- One line (without its line end) before `deadline`.
function conn:_line(deadline)
  if not self.stream then return false, "closed" end
  local line, err, partial
  if self.telnet then
    line, err, partial = self.telnet:read_line(remaining(deadline))
  else
    self.stream:settimeout(remaining(deadline))
    line, err, partial = self.stream:receive("l")
  end
  if not line then
    if err == "bare lf" then return false, "bare lf (a line ended without CR): " .. tostring(partial) end
    return false, err
  end
  self.last = line
  return line
end

-- Exactly n bytes (an IMAP literal, an HTTP body).
function conn:_bytes(n, deadline)
  if self.telnet then error("byte counts are not read on telnet:// connections", 4) end
  if not self.stream then return false, "closed" end
  self.stream:settimeout(remaining(deadline))
  local data, err = self.stream:receive(n)
  if not data then return false, err end
  return data
end

local function parse_code_line(line)
  local code, sep, text = line:match("^(%d%d%d)([ %-]?)(.*)$")
  return tonumber(code), sep, text
end

-- The rest of a reply whose first line is `first` (RFC 5321 4.2.1,
-- RFC 959 4.2).
function conn:_reply(first, deadline)
  local code, sep, text = parse_code_line(first)
  local r = { code = code, lines = { text }, raw = { first } }
  for _ = 1, M.MAX_REPLY_LINES do
    if sep ~= "-" then
      r.text = table.concat(r.lines, "\n")
      return r
    end
    local line, err = self:_line(deadline)
    if not line then return false, err end
    r.raw[#r.raw + 1] = line
    local c2, s2, t2 = parse_code_line(line)
    if c2 == code then sep = s2; r.lines[#r.lines + 1] = t2
    else r.lines[#r.lines + 1] = line end
  end
  return false, "reply too long (over " .. M.MAX_REPLY_LINES .. " lines)"
end

-- An HTTP response head (and body, when framed) after its status line.
function conn:_http(first, deadline)
  local code, reason = first:match("^HTTP/%d%.%d (%d%d%d) ?(.*)$")
  local r = { code = tonumber(code), text = reason, lines = {}, raw = { first }, headers = {} }
  for _ = 1, M.MAX_REPLY_LINES do
    local line, err = self:_line(deadline)
    if not line then return false, err end
    if line == "" then break end
    r.lines[#r.lines + 1] = line
    local name, value = line:match("^([^:%s]+):%s*(.-)%s*$")
    if name then r.headers[name:lower()] = value end
  end
  local len = tonumber(r.headers["content-length"] or "")
  if len then
    if len > M.MAX_BODY then return false, "body too large: " .. len .. " bytes" end
    local body, err = "", nil
    if len > 0 then body, err = self:_bytes(len, deadline) end
    if not body then return false, err end
    r.body = body
  elseif (r.headers["transfer-encoding"] or ""):lower():find("chunked", 1, true) then
    -- RFC 9112 7.1: size line (hex, maybe extensions), data, CRLF; 0 ends
    local parts, total = {}, 0
    while true do
      local line, err = self:_line(deadline)
      if not line then return false, err end
      local size = tonumber(line:match("^(%x+)") or "", 16)
      if not size then return false, "bad chunk size line: " .. line end
      if size == 0 then break end
      total = total + size
      if total > M.MAX_BODY then return false, "body too large" end
      local data
      data, err = self:_bytes(size + 2, deadline)
      if not data then return false, err end
      parts[#parts + 1] = data:sub(1, size)
    end
    repeat  -- trailer fields up to the empty line
      local line, err = self:_line(deadline)
      if not line then return false, err end
    until line == ""
    r.body = table.concat(parts)
  end
  return r
end

-- Does `want` accept `line`? Returns the results to hand back, or nil.
function conn:_accepts(want, line, deadline)
  local t = type(want)
  if t == "number" then
    if self.scheme == "http" then
      if tonumber(line:match("^HTTP/%d%.%d (%d%d%d)") or "") ~= want then return nil end
      local r, err = self:_http(line, deadline)
      return table.pack(r and true, r or err)
    end
    if parse_code_line(line) ~= want then return nil end
    local r, err = self:_reply(line, deadline)
    return table.pack(r and true, r or err)
  elseif t == "string" then
    local caps = table.pack(line:find(want))
    if not caps[1] then return nil end
    return table.pack(true, line, table.unpack(caps, 3, caps.n))
  else
    local v = want(line)
    if not v then return nil end
    return table.pack(true, line, v)
  end
end

local function describe(want)
  if type(want) == "number" then return tostring(want) end
  if type(want) == "string" then return quoted(want) end
  if type(want) == "function" then return "a line the predicate accepts" end
  local d = {}
  for i, w in ipairs(want) do d[i] = describe(w) end
  return "one of " .. table.concat(d, ", ")
end

local function check_want(want, level)
  local t = type(want)
  if t == "table" then
    if #want == 0 then error("expect: an empty list of alternatives", level + 1) end
    for _, w in ipairs(want) do
      if type(w) == "table" then error("expect: alternatives must be codes, patterns or functions", level + 1) end
      check_want(w, level + 1)
    end
  elseif t ~= "number" and t ~= "string" and t ~= "function" then
    error("expect wants a reply code, a pattern, a function or a list of them", level + 1)
  end
end

-- Telnet: wait for pattern(s) in the text as it arrives.
function conn:_telnet_expect(list, deadline, with_index)
  if not self.stream then return false, "closed" end
  local match, before, idx = self.telnet:expect(list, remaining(deadline))
  if not match then return false, before end
  local r = table.pack(true, match, select(3, match:find(list[idx])))
  if with_index then r.n = r.n + 1; r[r.n] = idx end
  return table.unpack(r, 1, r.n)
end

-- The work of expect: true, results..., or false, err, reply.
function conn:_expect(want, opts)
  local deadline = parley.now() + self.run:timeout_of(opts)
  local list = type(want) == "table" and want or { want }
  if self.telnet then
    local strings = true
    for _, w in ipairs(list) do strings = strings and type(w) == "string" end
    if strings then return self:_telnet_expect(list, deadline, type(want) == "table") end
  end
  local skip = opts and opts.skip or 0
  if type(skip) ~= "number" or skip < 0 or skip > M.MAX_SKIP then
    error("skip must be a number from 0 to " .. M.MAX_SKIP, 4)
  end
  for _ = 0, skip do
    local line, err = self:_line(deadline)
    if not line then return false, err end
    for i, w in ipairs(list) do
      local r = self:_accepts(w, line, deadline)
      if r then
        if r[1] == false then return false, r[2] end
        if type(want) == "table" then r.n = r.n + 1; r[r.n] = i end
        return table.unpack(r, 1, r.n)
      end
    end
  end
  local got = self.last
  local code = parse_code_line(got)
  local reply
  if code and self.scheme ~= "http" then
    local r = self:_reply(got, deadline)
    if r then reply = r; got = table.concat(r.raw, "\n") end
  end
  return false, ("expected %s, got %s"):format(describe(want), quoted(got)), reply or { line = got }
end

-- The methods a scenario calls ---------------------------------------------

--- Sends a line, CRLF appended (not a step; a failure to send is).
-- @tparam string line (no CR or LF: raises)
-- @return true, or `nil, err` (the scenario ends)
function conn:send(line)
  check_line(line)
  if self.run.dry then return nil, "not run" end
  if not self.stream then return self.run:op("send " .. line, function() return false, "closed" end) end
  local ok, err
  if self.telnet then ok, err = self.telnet:send(line)
  else ok, err = self.stream:send(line .. "\r\n") end
  if ok then return true end
  return self.run:op("send " .. line, function() return false, err end)
end

--- Sends bytes exactly as given.
-- @tparam string bytes
-- @return true, or `nil, err`
function conn:send_raw(bytes)
  if type(bytes) ~= "string" then error("send_raw expects a string", 2) end
  if self.run.dry then return nil, "not run" end
  if not self.stream then return self.run:op("send bytes", function() return false, "closed" end) end
  local ok, err
  if self.telnet then ok, err = self.telnet:send_raw(bytes)
  else ok, err = self.stream:send(bytes) end
  if ok then return true end
  return self.run:op("send " .. #bytes .. " bytes", function() return false, err end)
end

--- Reads and checks what the peer says next (see the module's summary).
-- @param want a reply code, a Lua pattern, a predicate, or a list of them
-- @tparam[opt] table opts `timeout` (seconds), `skip` (lines that may
-- pass unmatched first), `name` (the step's name in the report)
-- @return the reply (code) or the line and captures (pattern) or the
-- line and the predicate's value, and the index of the alternative for
-- a list; `nil, err, reply` when it failed (the scenario ends)
function conn:expect(want, opts)
  check_want(want, 2)
  local name = opts and opts.name or ("expect " .. describe(want))
  return self.run:op(name, self._expect, self, want, opts)
end

--- Expects a line matching `pattern` and returns its captures (the whole
-- match when the pattern has none).
-- @tparam string pattern
-- @tparam[opt] table opts as `expect`, and `as` (a name, or a list of
-- names: the captures are also stored in `s.vars`)
-- @return the captures, or `nil, err, reply`
function conn:capture(pattern, opts)
  if type(pattern) ~= "string" then error("capture expects a pattern string", 2) end
  local as = opts and opts.as
  if as ~= nil and type(as) ~= "string" and type(as) ~= "table" then
    error("as must be a name or a list of names", 2)
  end
  local run = self.run
  return run:op(opts and opts.name or ("capture " .. quoted(pattern)), function()
    local r = table.pack(self:_expect(pattern, opts))
    if not r[1] then return table.unpack(r, 1, r.n) end
    local caps = table.pack(r[2]:match(pattern))
    local names = type(as) == "string" and { as } or as or {}
    local shown = {}
    for i = 1, caps.n do
      shown[i] = caps[i]
      if names[i] then run.vars[names[i]] = caps[i] end
    end
    run.note = { captures = shown }
    return true, table.unpack(caps, 1, caps.n)
  end)
end

--- POP3: expects `+OK` and then a multi-line body up to the `.` line,
-- un-stuffed (RFC 1939 3).
-- @tparam[opt] table opts `timeout`, `name`
-- @return `{ status = "+OK ...", lines = {...}, text = "..." (lines
-- joined with CRLF, ending with one) }`, or `nil, err, reply`
function conn:expect_multiline(opts)
  return self.run:op(opts and opts.name or "expect +OK and a multi-line body", function()
    local deadline = parley.now() + self.run:timeout_of(opts)
    local status, err = self:_line(deadline)
    if not status then return false, err end
    if not status:match("^%+OK") then
      return false, ("expected +OK, got %s"):format(quoted(status)), { line = status }
    end
    local lines = {}
    for _ = 1, M.MAX_REPLY_LINES do
      local line
      line, err = self:_line(deadline)
      if not line then break end
      if line == "." then
        return true, { status = status, lines = lines,
          text = #lines > 0 and table.concat(lines, "\r\n") .. "\r\n" or "" }
      end
      if line:sub(1, 1) == "." then line = line:sub(2) end
      lines[#lines + 1] = line
    end
    return false, err or "body too long"
  end)
end

--- IMAP: reads responses up to the one tagged `tag`, collecting the
-- untagged ones (literals `{n}` read whole, RFC 3501 4.3), and expects
-- its status (`"OK"` by default).
-- @tparam string tag
-- @tparam[opt="OK"] string status "OK", "NO" or "BAD"
-- @tparam[opt] table opts `timeout`, `name`
-- @return `{ tag, status, text, line, untagged = { "* ..." } }` (an
-- untagged response with literals holds them inline), or `nil, err, reply`
function conn:expect_tagged(tag, status, opts)
  if type(tag) ~= "string" or tag == "" then error("expect_tagged needs a tag", 2) end
  if type(status) == "table" then opts, status = status, nil end
  status = (status or "OK"):upper()
  return self.run:op(opts and opts.name or ("expect " .. tag .. " " .. status), function()
    local deadline = parley.now() + self.run:timeout_of(opts)
    local untagged = {}
    for _ = 1, M.MAX_REPLY_LINES do
      local line, err = self:_line(deadline)
      if not line then return false, err end
      local parts = { line }
      while true do  -- a line ending in a literal goes on after it
        local n = tonumber(line:match("{(%d+)%+?}$") or "")
        if not n then break end
        local lit
        lit, err = self:_bytes(n, deadline)
        if not lit then return false, err end
        line, err = self:_line(deadline)
        if not line then return false, err end
        parts[#parts + 1] = lit .. line
      end
      local whole = table.concat(parts, "\r\n")
      if whole:sub(1, #tag + 1) == tag .. " " then
        local st, text = whole:match("^%S+ (%a+) ?(.*)$")
        local r = { tag = tag, status = st and st:upper(), text = text, line = whole, untagged = untagged }
        if r.status ~= status then
          return false, ("expected %s %s, got %s"):format(tag, status, quoted(whole)), r
        end
        return true, r
      end
      untagged[#untagged + 1] = whole
    end
    return false, "too many responses before " .. tag
  end)
end

--- Expects the peer to close the connection (lines before are recorded;
-- at most `opts.skip` of them, default none).
-- @tparam[opt] table opts `timeout`, `skip`, `name`
-- @return true, or `nil, err`
function conn:expect_closed(opts)
  return self.run:op(opts and opts.name or "expect the peer to close", function()
    local deadline = parley.now() + self.run:timeout_of(opts)
    for _ = 0, opts and opts.skip or 0 do
      local line, err = self:_line(deadline)
      if not line then
        if err == "closed" then return true, true end
        return false, err
      end
    end
    return false, "still open (got " .. quoted(self.last or "") .. ")"
  end)
end

--- Turns the connection into TLS (a step), once the script has sent
-- STARTTLS (STLS, AUTH TLS) and read the server's go-ahead; the
-- transcript notes `TLS started (<version>, <cipher>)`. Bytes the server
-- sent past its go-ahead fail the step (`"data after starttls"`,
-- RFC 3207 4.2); so does a certificate that does not verify.
-- @tparam[opt] table opts `ca` (PEM file of trusted issuers), `insecure`
-- (do not verify), `tls_ctx` (a client context), `servername` (the name
-- checked and sent as SNI; default the URL's host), `timeout`, `name`;
-- `ca` and `insecure` default to `s.vars.ca` and `s.vars.insecure`
-- @return the stream's `tlsinfo()` (`version`, `cipher`, `peer` ...),
-- or `nil, err` (the scenario ends)
function conn:starttls(opts)
  if opts ~= nil and type(opts) ~= "table" then error("starttls options must be a table", 2) end
  if self.telnet then error("starttls: telnet:// stays cleartext", 2) end
  opts = opts or {}
  return self.run:op(opts.name or "starttls", function()
    if not self.stream then return false, "closed" end
    local ctx, err = tls_context(self.run, opts)
    if not ctx then return false, err end
    local info
    info, err = starttls.upgrade(self.stream, ctx, { servername = opts.servername,
      timeout = self.run:timeout_of(opts) })
    if not info then return false, err end
    return true, info
  end)
end

--- The TLS state of the connection (not a step): its `tlsinfo()`, or nil
-- in cleartext.
function conn:tlsinfo()
  return self.stream and self.stream:tlsinfo()
end

--- Closes the connection (also done when the scenario ends).
function conn:close()
  if not self.stream then return end
  local s = self.stream
  self.stream = nil
  if self.telnet then self.telnet:close() else s:close() end
end

return M
