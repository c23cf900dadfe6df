--- parley.telnet.client: a scriptable Telnet client (and the engine of
-- the interactive `parley telnet HOST PORT`).
--
--     local telnet = require "parley.telnet"
--     local c = assert(telnet.client.connect("127.0.0.1", 2323,
--                      { naws = { 100, 30 }, ttype = "xterm", timeout = 10 }))
--     assert(c:login("alice", "secret", { prompt = "%$ $" }))
--     c:send("uname -a")
--     local match, before = c:expect("%$ $")
--     c:close()
--
-- It never starts a negotiation unless asked (`offer = true` or
-- `c:enable`): against an SMTP, POP3 or HTTP server it is byte-exact (only
-- IAC, which those never send, and CR NUL are interpreted).  When the peer
-- negotiates, it answers by RFC 1143 (no loops, at most one reply per
-- request), agrees to the local options it was given (NAWS, TTYPE,
-- NEW-ENVIRON, BINARY) and to the server's ECHO, SGA and BINARY, sends the
-- window size as soon as NAWS is on, and answers TTYPE SEND (cycling
-- through `ttype` when it is a list, RFC 1091) and NEW-ENVIRON SEND.
--
-- I/O failures return `nil, err` (`"timeout"`, `"closed"` ...); a timeout
-- in `expect` / `read_until` also returns what was buffered, unconsumed.
-- @module parley.telnet.client
local parley = require "parley"
local core = require "parley.core"
local transcript = require "parley.transcript"

local telnet = core.telnet
local OPT = telnet.options

local M = {}

local client = {}
client.__index = client
client.__name = "parley.telnet.client"
M.client = client

--- Defaults of `connect`'s options.
-- @table defaults
M.defaults = {
  timeout = 30,          -- seconds for each expect / read call
  connect_timeout = 30,
  max_buffer = 1048576,  -- bytes expect may hold while searching
  max_subneg = 4096,
}

local function check_text(s, what)
  if type(s) ~= "string" then error(what .. " must be a string", 3) end
  if s:find("[\r\n%z]") then error(what .. " must not contain CR, LF or NUL", 3) end
end

--- Wraps a connected parley stream (see `connect`).
function M.wrap(stream, opts)
  opts = opts or {}
  local d = M.defaults
  local ttypes = opts.ttype
  if type(ttypes) == "string" then ttypes = { ttypes } end
  if ttypes then
    for _, t in ipairs(ttypes) do check_text(t, "ttype") end
  end
  local naws = opts.naws
  if naws == true then naws = { 80, 24 } end
  local us, him = {}, { "echo", "sga" }
  if naws then us[#us + 1] = "naws" end
  if ttypes then us[#us + 1] = "ttype" end
  if opts.environ then us[#us + 1] = "new_environ" end
  if opts.binary then
    us[#us + 1] = "binary"
    him[#him + 1] = "binary"
  end
  local self = setmetatable({
    stream = stream,
    opts = opts,
    timeout = opts.timeout or d.timeout,
    max_buffer = opts.max_buffer or d.max_buffer,
    buf = "",
    ttypes = ttypes,
    ttype_i = 0,
    width = naws and naws[1], height = naws and naws[2],
    environ = opts.environ,
    on_option = opts.on_option,   -- function(c, event) on enabled/disabled/refused
    on_cmd = opts.on_cmd,         -- function(c, name)
    events = 0,
  }, client)
  self.codec = telnet.new{
    us = us, him = him, newline = "crlf",
    max_subneg = opts.max_subneg or d.max_subneg,
  }
  if opts.offer then
    local out = {}
    for _, o in ipairs(us) do out[#out + 1] = self.codec:enable(o, "us") end
    if opts.binary then out[#out + 1] = self.codec:enable("binary", "him") end
    local bytes = table.concat(out)
    if bytes ~= "" then
      local ok, err = stream:send(bytes)
      if not ok then return nil, err end
    end
  end
  return self
end

--- Connects to a Telnet (or any line-protocol) server.
-- @tparam string host
-- @tparam number|string port
-- @tparam[opt] table opts `timeout` (30 s per call), `connect_timeout`
-- (30), `naws` ({width, height} or true for 80x24: agree to NAWS and send
-- it), `ttype` (a name or a list to cycle through: agree to TTYPE),
-- `environ` ({NAME = value}: agree to NEW-ENVIRON), `binary` (agree to
-- BINARY both ways), `offer` (send WILL for those at once instead of
-- waiting to be asked), `max_buffer` (1 MiB), `max_subneg` (4096),
-- `on_option`, `on_cmd` (callbacks), `bind`, `transcript` (a
-- parley.transcript recorder or target; with `transcript_full`,
-- `transcript_secrets`)
-- @return a client, or `nil, err`
function M.connect(host, port, opts)
  opts = opts or {}
  if type(host) ~= "string" then error("bad argument #1 to 'connect' (host expected)", 2) end
  if not tonumber(port) then error("bad argument #2 to 'connect' (port expected)", 2) end
  local s, err = parley.connect(host, port, {
    connect_timeout = opts.connect_timeout or M.defaults.connect_timeout, bind = opts.bind })
  s, err = transcript.attach(s, opts, "telnet", "client", err)
  if not s then return nil, err end
  local c
  c, err = M.wrap(s, opts)
  if not c then
    s:close()
    return nil, err
  end
  return c
end

-- ---------------------------------------------------------------------
-- Negotiation

function client:_reply(bytes)
  if bytes ~= "" then return self.stream:send(bytes) end
  return true
end

function client:_event(ev)
  local t = ev.type
  self.events = self.events + 1
  if t == "enabled" and ev.side == "us" and ev.option == OPT.naws and self.width then
    self:_reply(telnet.naws(self.width, self.height))
  elseif t == "ttype_send" and self.ttypes and self.codec:enabled(OPT.ttype, "us") then
    -- RFC 1091: names in order, the last one twice, then start over
    local list = self.ttypes
    self.ttype_i = self.ttype_i + 1
    local name = list[math.min(self.ttype_i, #list)]
    if self.ttype_i > #list then self.ttype_i = 0 end
    self:_reply(telnet.ttype_is(name))
  elseif t == "environ_send" and self.environ and self.codec:enabled(OPT.new_environ, "us") then
    local vars = {}
    if ev.all_vars or (#(ev.vars or {}) == 0 and #(ev.uservars or {}) == 0) then
      for k, v in pairs(self.environ) do vars[k] = v end
    else
      for _, k in ipairs(ev.vars or {}) do
        if self.environ[k] ~= nil then vars[k] = self.environ[k] end
      end
    end
    self:_reply(telnet.environ_is(vars))
  elseif t == "cmd" then
    if self.on_cmd then self.on_cmd(self, ev.name) end
  elseif t == "error" then
    self.last_protocol_error = ev.reason
  end
  if (t == "enabled" or t == "disabled" or t == "refused") and self.on_option then
    self.on_option(self, ev)
  end
end

--- Asks to enable an option: `c:enable("naws", "us")` (WILL),
-- `c:enable("echo", "him")` (DO).  RFC 1143 Q method.
-- @return true, or `nil, err`
function client:enable(opt, side)
  return self:_reply(self.codec:enable(opt, side or "us"))
end

--- Asks to disable an option.
function client:disable(opt, side)
  return self:_reply(self.codec:disable(opt, side or "us"))
end

--- Whether an option is on (`side` "us" or "him").
function client:enabled(opt, side)
  return self.codec:enabled(opt, side or "him")
end

--- RFC 1143 states of an option: us, him.
function client:state(opt)
  return self.codec:state(opt)
end

--- Sets the window size; sends it at once when NAWS is on (RFC 1073),
-- else it goes out when the server asks.
-- @tparam number width
-- @tparam number height
function client:naws(width, height)
  self.width, self.height = width, height
  if self.codec:enabled(OPT.naws, "us") then
    local ok, err = self:_reply(telnet.naws(width, height))
    if ok then return self.stream:flush() end
    return nil, err
  end
  return true
end

-- ---------------------------------------------------------------------
-- Reading

-- Reads once (within `deadline`), answers negotiation, appends data.
function client:_fill(deadline)
  local left = deadline and deadline - parley.now()
  if left and left <= 0 then return nil, "timeout" end
  self.stream:settimeout(left)
  local chunk, err = self.stream:receive_some()
  if not chunk then return nil, err end
  local data, events, reply = self.codec:feed(chunk)
  if reply ~= "" then self:_reply(reply) end
  for i = 1, #events do self:_event(events[i]) end
  if data ~= "" then self.buf = self.buf == "" and data or self.buf .. data end
  return true
end

local function deadline_of(self, timeout)
  timeout = timeout or self.timeout
  if timeout and timeout >= 0 then return parley.now() + timeout end
  return nil
end

--- Reads whatever data arrives next (negotiation answered on the way).
-- @tparam[opt] number timeout seconds (default the client's)
-- @return data, or `nil, err`
function client:read_some(timeout)
  local deadline = deadline_of(self, timeout)
  while self.buf == "" do
    local ok, err = self:_fill(deadline)
    if not ok then return nil, err end
  end
  local d = self.buf
  self.buf = ""
  return d
end

--- Reads up to (not including) a plain delimiter, which is consumed.
-- @tparam string delim
-- @tparam[opt] number timeout
-- @return the data before, or `nil, err, buffered` (buffered stays unread)
function client:read_until(delim, timeout)
  if type(delim) ~= "string" or delim == "" then error("read_until: delimiter must be a non-empty string", 2) end
  local deadline = deadline_of(self, timeout)
  local from = 1
  while true do
    local s, e = self.buf:find(delim, from, true)
    if s then
      local before = self.buf:sub(1, s - 1)
      self.buf = self.buf:sub(e + 1)
      return before
    end
    if #self.buf > self.max_buffer then return nil, "too long", self.buf end
    from = math.max(1, #self.buf - #delim + 2)
    local ok, err = self:_fill(deadline)
    if not ok then return nil, err, self.buf end
  end
end

--- Reads one line (up to LF; a CR before it is dropped).
function client:read_line(timeout)
  local line, err, partial = self:read_until("\n", timeout)
  if not line then return nil, err, partial end
  return (line:gsub("\r$", ""))
end

--- Waits until a Lua pattern (or the earliest of a list of patterns)
-- matches the data received so far.
-- @param patterns a pattern string, or a list of them
-- @tparam[opt] number timeout
-- @return the matched text, the text before it (both consumed), and the
-- index of the pattern that matched; or `nil, err, buffered` (`"timeout"`,
-- `"closed"`, `"too long"`; buffered stays unread)
function client:expect(patterns, timeout)
  local list = type(patterns) == "table" and patterns or { patterns }
  for i, p in ipairs(list) do
    if type(p) ~= "string" then error("expect: pattern #" .. i .. " is not a string", 2) end
  end
  if #list == 0 then error("expect: no pattern", 2) end
  local deadline = deadline_of(self, timeout)
  while true do
    local best, bs, be
    for i, p in ipairs(list) do
      local s, e = self.buf:find(p)
      if s and (not bs or s < bs) then best, bs, be = i, s, e end
    end
    if best then
      local match, before = self.buf:sub(bs, be), self.buf:sub(1, bs - 1)
      self.buf = self.buf:sub(be + 1)
      return match, before, best
    end
    if #self.buf > self.max_buffer then return nil, "too long", self.buf end
    local ok, err = self:_fill(deadline)
    if not ok then return nil, err, self.buf end
  end
end

-- ---------------------------------------------------------------------
-- Writing

--- Sends a line followed by CR LF.  The line must not contain CR, LF or
-- NUL (raises); IAC is doubled.
-- @tparam string line
-- @return true, or `nil, err`
function client:send(line)
  check_text(line, "line")
  local ok, err = self.stream:send(self.codec:escape(line .. "\r\n"))
  if not ok then return nil, err end
  return self.stream:flush()
end

--- Sends data as typed: IAC doubled, and unless BINARY is on, "\n" as
-- CR LF and a lone "\r" as CR NUL (RFC 854).
function client:write(data)
  if type(data) ~= "string" then error("write: data must be a string", 2) end
  local ok, err = self.stream:send(self.codec:escape(data))
  if not ok then return nil, err end
  return self.stream:flush()
end

--- Sends bytes exactly as given (no IAC doubling, no end-of-line rules).
function client:send_raw(bytes)
  local ok, err = self.stream:send(bytes)
  if not ok then return nil, err end
  return self.stream:flush()
end

--- Sends a Telnet command: `c:command("ayt")`, "ip", "brk", "ao" ...
function client:command(name)
  return self:send_raw(telnet.cmd(name))
end

--- Logs in at a login prompt: waits for `login_prompt`, sends the name,
-- waits for `password_prompt`, sends the password, then waits for
-- `prompt` (success) or `failure`.
-- @tparam string user
-- @tparam string password
-- @tparam[opt] table opts `login_prompt` ("[Ll]ogin: ?$"),
-- `password_prompt` ("[Pp]assword: ?$"), `prompt` (a pattern or list:
-- what the server shows after a good login; default "[%$#>%%] ?$"),
-- `failure` ("[Ll]ogin incorrect"), `timeout`
-- @return true, text shown before the prompt; or `nil, err, text`
-- (`"login failed"`, `"timeout"` ...)
function client:login(user, password, opts)
  check_text(user, "user")
  check_text(password, "password")
  opts = opts or {}
  local t = opts.timeout
  local m, err, text = self:expect(opts.login_prompt or "[Ll]ogin: ?$", t)
  if not m then return nil, err, text end
  local ok
  ok, err = self:send(user)
  if not ok then return nil, err end
  m, err, text = self:expect(opts.password_prompt or "[Pp]assword: ?$", t)
  if not m then return nil, err, text end
  ok, err = self:send(password)
  if not ok then return nil, err end
  local prompts = opts.prompt or "[%$#>%%] ?$"
  if type(prompts) == "string" then prompts = { prompts } end
  local list = { opts.failure or "[Ll]ogin incorrect" }
  for _, p in ipairs(prompts) do list[#list + 1] = p end
  local before, idx
  m, before, idx = self:expect(list, t)
  if not m then return nil, before, idx end
  if idx == 1 then return nil, "login failed", before .. m end
  return true, before .. m
end

--- Data received but not consumed yet.
function client:buffered()
  return self.buf
end

--- Closes the connection.
function client:close()
  if self.stream then self.stream:close() end
  self.closed = true
  return true
end

client.__close = client.close

function client:__tostring()
  return "parley.telnet.client: " .. tostring(self.stream)
end

return M
