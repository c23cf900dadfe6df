--- parley.telnet.session: the server's side of one Telnet connection.
--
-- Wraps a parley stream and a `core.telnet` codec: negotiation replies go
-- out as they are due, NAWS / TTYPE / NEW-ENVIRON answers are recorded,
-- and the application reads plain data, lines (with server-side line
-- editing and echo when the session is in character mode) or keys.
--
--     local sess = session.new(conn, { idle_timeout = 600 })
--     sess:start()                       -- DO NAWS, DO TTYPE, DO NEW-ENVIRON
--     sess:print("hello, " .. (sess.ttype or "terminal"))
--     local line = sess:read_line()      -- nil, err on close / timeout
--
-- Applications write text with `write` / `print`; both escape IAC and
-- apply the NVT end-of-line rules (RFC 854), so "\n" reaches the terminal
-- as CR LF.  Writes from other tasks (a chat room's broadcasts) are safe:
-- they are serialized, and a peer that stops reading is dropped once
-- `max_queue` bytes wait for it.
-- @module parley.telnet.session
local parley = require "parley"
local core = require "parley.core"

local telnet = core.telnet
local OPT = telnet.options
local find, sub = string.find, string.sub
local OPT_ECHO = OPT.echo

local M = {}

local session = {}
session.__index = session
session.__name = "parley.telnet.session"
M.session = session

--- Defaults for `new`'s options.
-- @table defaults
M.defaults = {
  max_subneg = 4096,       -- payload bytes kept per subnegotiation
  max_line = 4096,         -- longest line read_line accepts
  max_queue = 1048576,     -- bytes queued for a peer that does not read
  negotiation_wait = 1,    -- seconds start() waits for the first answers
  negotiate = true,        -- start() asks for NAWS, TTYPE, NEW-ENVIRON
  max_ttypes = 16,         -- terminal types collected per TTYPE round
}

-- Telnet commands that stand for a key (RFC 854 "The NVT printer and
-- keyboard"): inserted into the data where they arrived.
local CMD_KEYS = { ip = "\3", brk = "\3", ec = "\127", el = "\21", eof = "\4",
                   susp = "\26", abort = "\28" }

--- Wraps a connected stream.
-- @param conn a parley stream
-- @tparam[opt] table opts `max_subneg`, `max_line`, `max_queue`,
-- `negotiation_wait`, `negotiate` (see `defaults`), `binary` (false: agree
-- to BINARY when the peer asks), `on_resize`, `on_ttype`, `on_cmd`
-- (functions, also settable as fields of the session later)
-- @return a session
function M.new(conn, opts)
  opts = opts or {}
  local d = M.defaults
  local self = setmetatable({
    conn = conn,
    opts = opts,
    max_line = opts.max_line or d.max_line,
    max_queue = opts.max_queue or d.max_queue,
    buf = "",          -- data read but not consumed
    wq = "",           -- output waiting while another task writes
    writing = false,
    closed = false,    -- present, so checks never reach the metatable
    cache = false,     -- option states asked for, until the next negotiation
    skip_lf = false,   -- the last line ended with a lone "\r"
    ttypes = {},       -- every terminal type the client named, in order
    env = {},          -- NEW-ENVIRON variables (VAR and USERVAR together)
    on_resize = opts.on_resize,
    on_ttype = opts.on_ttype,
    on_cmd = opts.on_cmd,
    errors = 0,        -- protocol errors the peer caused
    -- parley's own stream (not a transcript's wrapper): common lines go
    -- straight from its input buffer and into its output buffer in C
    direct = type(conn) == "userdata" and conn.receive_telnet_line ~= nil,
  }, session)
  self.codec = telnet.new{
    us = { "echo", "sga", "binary" },
    him = { "naws", "ttype", "new_environ", "binary", "sga" },
    max_subneg = opts.max_subneg or d.max_subneg,
    max_ttypes = opts.max_ttypes or d.max_ttypes,
    newline = "crlf",
  }
  return self
end

-- ---------------------------------------------------------------------
-- Output

-- Sends bytes on the stream as they are or, when `eol` is not nil, text
-- escaped as `codec:escape(text, eol)` does (in C, straight into the
-- stream's output buffer, when the stream is direct).  A task that finds
-- another one writing (blocked on a slow peer) queues its bytes for that
-- task to send.
local function send(self, bytes, eol)
  if eol ~= nil and (self.writing or not self.direct) then
    bytes, eol = self.codec:escape(bytes, eol), nil
  end
  if bytes == "" and not eol then return true end
  if self.closed then return nil, "closed" end
  if self.writing then
    if #self.wq + #bytes > self.max_queue then
      self:close()
      return nil, "peer too slow"
    end
    self.wq = self.wq .. bytes
    return true
  end
  self.writing = true
  local ok, err
  if eol == nil then
    ok, err = self.conn:send(bytes)
  else
    ok, err = self.conn:send_telnet(self.codec, bytes, eol)
  end
  while ok and self.wq ~= "" do
    local q = self.wq
    self.wq = ""
    ok, err = self.conn:send(q)
  end
  self.writing = false
  if not ok then return nil, err end
  return true
end

--- Writes text: IAC doubled, and unless our BINARY is on, "\n" sent as
-- CR LF and a lone "\r" as CR NUL (RFC 854).
-- @tparam string text
-- @return true, or `nil, err`
function session:write(text)
  local t = type(text)
  -- checked before send marks the session as writing
  if t ~= "string" and t ~= "number" then error("bad argument #1 to 'write' (string expected, got " .. t .. ")", 2) end
  return send(self, text, false)
end

--- Writes text followed by a line end; "\n" inside becomes CR LF even in
-- BINARY mode.
function session:print(text)
  if type(text) ~= "string" then text = tostring(text or "") end
  return send(self, text, true)
end

--- Sends queued output now.
function session:flush()
  if self.closed then return nil, "closed" end
  if self.writing then return true end   -- the writing task flushes
  return self.conn:flush()
end

--- Sends raw protocol bytes (already escaped), e.g. a `core.telnet` builder's.
function session:send_raw(bytes)
  return send(self, bytes)
end

-- ---------------------------------------------------------------------
-- Options

local function optnum(opt)
  if type(opt) == "number" then return opt end
  return OPT[opt] or error("unknown telnet option: " .. tostring(opt), 3)
end

--- Asks to enable an option on our side (`"us"`, WILL) or the client's
-- (`"him"`, DO), RFC 1143.
function session:enable(opt, side)
  self.cache = false
  return send(self, self.codec:enable(optnum(opt), side or "us"))
end

--- Asks to disable an option.
function session:disable(opt, side)
  self.cache = false
  return send(self, self.codec:disable(optnum(opt), side or "us"))
end

--- Whether an option is on: `sess:enabled("naws", "him")`.
function session:enabled(opt, side)
  side = side or "us"
  -- cached until the next negotiation, by the name or number asked for:
  -- apps ask on every line
  local cache = self.cache
  if not cache then
    cache = { us = {}, him = {} }
    self.cache = cache
  end
  local v = cache[side][opt]
  if v == nil then
    v = self.codec:enabled(optnum(opt), side)
    cache[side][opt] = v
  end
  return v
end

--- The RFC 1143 states of an option: us, him.
function session:state(opt)
  return self.codec:state(optnum(opt))
end

--- Character mode (server ECHO and SGA on: the client sends each key as
-- it is typed and shows only what we echo) or, `false`, line mode (the
-- client edits and echoes lines itself).
function session:charmode(on)
  if on == false then
    self:disable("echo", "us")
    return self:disable("sga", "us")
  end
  self:enable("sga", "us")
  return self:enable("echo", "us")
end

--- True when the session is in character mode (our ECHO is on or asked).
function session:is_charmode()
  local us = self.codec:state(OPT.echo)
  return us == "yes" or us == "wantyes" or us == "wantyes-opposite"
end

--- Negotiated facts, for display: a table option name -> {us=, him=}.
function session:options()
  local t = {}
  for name, n in pairs(OPT) do
    local us, him = self.codec:state(n)
    if us ~= "no" or him ~= "no" then t[name] = { us = us, him = him } end
  end
  return t
end

-- ---------------------------------------------------------------------
-- Input

local function fire(self, name, ...)
  local fn = self[name]
  if fn then
    local ok, err = pcall(fn, self, ...)
    if not ok then parley.log("telnet session " .. name .. ": " .. tostring(err)) end
  end
end

-- Applies one codec event; returns text to insert into the data, if any.
function session:_event(ev)
  local t = ev.type
  if t == "enabled" then
    if ev.side == "him" then
      if ev.option == OPT.ttype then
        send(self, telnet.ttype_send())
      elseif ev.option == OPT.new_environ then
        send(self, telnet.environ_send())
      end
    end
  elseif t == "naws" then
    self.width, self.height = ev.width, ev.height
    fire(self, "on_resize", ev.width, ev.height)
  elseif t == "ttype" then
    local n = #self.ttypes
    if ev.index == 1 then self.ttypes = {} n = 0 end
    -- the repeated name that ends a round (RFC 1091) is not a new type
    if n < 64 and not (ev.last and self.ttypes[n] == ev.name) then self.ttypes[n + 1] = ev.name end
    self.ttype = self.ttype or ev.name
    if ev.index == 1 then self.ttype = ev.name end
    if not ev.last then
      send(self, telnet.ttype_send())   -- RFC 1091: cycle to the next name
    else
      self.ttypes_done = true
      fire(self, "on_ttype", self.ttype, self.ttypes)
    end
  elseif t == "environ" then
    for k, v in pairs(ev.vars or {}) do self.env[k] = v end
    for k, v in pairs(ev.uservars or {}) do self.env[k] = v end
  elseif t == "cmd" then
    if self.on_cmd and self:on_cmd(ev.name) == false then return nil end
    if ev.name == "ayt" then
      send(self, telnet.escape("\r\n[parley: yes]\r\n"))
    else
      return CMD_KEYS[ev.name]
    end
  elseif t == "error" then
    self.errors = self.errors + 1
    self.last_error = ev.reason
  end
  return nil
end

--- Reads what the peer sends next, answers negotiation, and appends the
-- data to the session's buffer.
-- @return true, or `nil, err` (`"closed"`, `"timeout"` ...)
function session:fill()
  if self.closed then return nil, "closed" end
  local chunk, err = self.conn:receive_some()
  if not chunk then return nil, err end
  local data, events, reply = self.codec:feed(chunk)
  if reply ~= "" then send(self, reply) end
  if events[1] then
    self.cache = false
    local parts, pos = {}, 0
    for _, ev in ipairs(events) do
      local ins = self:_event(ev)
      if ins then
        parts[#parts + 1] = data:sub(pos + 1, ev.at)
        parts[#parts + 1] = ins
        pos = ev.at
      end
    end
    if pos > 0 or #parts > 0 then
      parts[#parts + 1] = data:sub(pos + 1)
      data = table.concat(parts)
    end
  end
  if data ~= "" then
    self.buf = self.buf == "" and data or self.buf .. data
  end
  return true
end

--- Sends our opening requests (DO NAWS, DO TTYPE, DO NEW-ENVIRON unless
-- `opts.negotiate` is false) and waits up to `negotiation_wait` seconds for
-- the answers, so the first prompt knows the terminal.  Data typed
-- meanwhile is kept.
function session:start()
  local d = M.defaults
  if self.opts.negotiate == false then return true end
  self:enable("naws", "him")
  self:enable("ttype", "him")
  self:enable("new_environ", "him")
  self:flush()
  local deadline = parley.now() + (self.opts.negotiation_wait or d.negotiation_wait)
  local function pending()
    for _, o in ipairs{ OPT.naws, OPT.ttype, OPT.new_environ } do
      local _, him = self.codec:state(o)
      if him ~= "no" and him ~= "yes" then return true end
    end
    if self.codec:enabled(OPT.ttype, "him") and not self.ttypes_done then return true end
    if self.codec:enabled(OPT.naws, "him") and not self.width then return true end
    return false
  end
  local saved = self.timeout
  while pending() do
    local left = deadline - parley.now()
    if left <= 0 then break end
    self.conn:settimeout(left)
    local ok, err = self:fill()
    if not ok and err ~= "timeout" then
      self.conn:settimeout(saved)
      return nil, err
    end
  end
  self.conn:settimeout(saved)
  return true
end

--- Sets the timeout (seconds) of every later read; `nil`: none.
function session:settimeout(t)
  self.timeout = t
  self.conn:settimeout(t)
end

--- Reads the next chunk of data, whatever it is (raw keys, partial lines).
-- @return data, or `nil, err`
function session:read()
  while self.buf == "" do
    local ok, err = self:fill()
    if not ok then return nil, err end
  end
  local d = self.buf
  self.buf = ""
  return d
end

-- skips a "\n" that completes the "\r" which ended the previous line
local function skip_lf(self)
  if self.skip_lf and self.buf ~= "" then
    if self.buf:byte(1) == 10 then self.buf = self.buf:sub(2) end
    self.skip_lf = false
  end
end

--- Reads one line (without its end: CR LF, CR NUL, CR or LF).
-- In line mode the client has edited the line; in character mode (our
-- ECHO on) this does the editing: printable characters are echoed (or not,
-- with `opts.echo = false`), Backspace / DEL erase, Ctrl-U erases the line,
-- escape sequences (arrow keys) are ignored.
-- @tparam[opt] table opts `echo` (default true), `max` (default max_line)
-- @return line, or `nil, err` (`"closed"`, `"timeout"`, `"line too long"`,
-- `"interrupted"` for Ctrl-C / Telnet IP, `"eof"` for Ctrl-D on an empty
-- line in character mode)
local NOOPTS = {}

-- RFC 854 IP interrupts what came before it; what was typed after it (in
-- the same line) is the start of the next line, put back with its end.
-- With the LF of a CR LF still to come, buf is empty and that LF ends it.
local function interrupted(self, line)
  local rest = line:match("\3([^\3]*)$")
  if rest ~= "" then
    if self.skip_lf then
      self.buf, self.skip_lf = rest .. "\r", false
    else
      self.buf = rest .. "\r\n" .. self.buf
    end
  end
  return nil, "interrupted"
end

function session:read_line(opts)
  opts = opts or NOOPTS
  local max = opts.max or self.max_line
  if self.direct and self.buf == "" and not self.skip_lf then
    -- the common case: a plain line waiting in the stream's buffer, taken
    -- there in C; false: it needs the codec (or more input), read below
    local line, err = self.conn:receive_telnet_line(self.codec, max)
    if line then return line end
    if line == nil then return nil, err end
  end
  local acc
  local len, toolong = 0, false
  while true do
    while self.buf == "" do
      local ok, err = self:fill()
      if not ok then return nil, err end
      if self.skip_lf then skip_lf(self) end
    end
    if self.skip_lf then skip_lf(self) end
    local buf = self.buf
    if not self:enabled(OPT_ECHO, "us") then
      -- the common case first: a whole line waiting, nothing accumulated
      if len == 0 then
        local j = find(buf, "\n", 1, true)
        local r = j and find(buf, "\r", 1, true)
        local i = (r == nil or r == j - 1) and r or j
        if j and (r == nil or r == j - 1) and i - 1 <= max then
          local line = sub(buf, 1, i - 1)
          self.buf = j == #buf and "" or sub(buf, j + 1)
          if not find(line, "\3", 1, true) then return line end
          return interrupted(self, line)
        end
      end
      -- line mode: the client edited the line; find its end
      acc = acc or {}
      local i = buf:find("[\r\n]")
      if not i then
        if len + #buf > max then toolong = true else acc[#acc + 1] = buf len = len + #buf end
        self.buf = ""
      else
        if len + i - 1 > max then toolong = true else acc[#acc + 1] = buf:sub(1, i - 1) end
        self.skip_lf = buf:byte(i) == 13
        self.buf = buf:sub(i + 1)
        skip_lf(self)
        if toolong then return nil, "line too long" end
        local line = table.concat(acc)
        if line:find("\3", 1, true) then return interrupted(self, line) end
        return line
      end
    else
      -- character mode: edit and echo here
      acc = acc or {}
      local echo = opts.echo ~= false
      local out = {}
      local i, n = 1, #buf
      while i <= n do
        local c = buf:byte(i)
        if c == 13 or c == 10 then
          self.skip_lf = c == 13
          self.buf = buf:sub(i + 1)
          out[#out + 1] = "\r\n"
          send(self, telnet.escape(table.concat(out)))
          skip_lf(self)
          if toolong then return nil, "line too long" end
          return table.concat(acc)
        elseif c == 8 or c == 127 then
          if #acc > 0 then
            acc[#acc] = nil
            if echo then out[#out + 1] = "\b \b" end
          end
        elseif c == 21 then
          if echo then out[#out + 1] = ("\b \b"):rep(#acc) end
          acc = {}
        elseif c == 3 then
          self.buf = buf:sub(i + 1)
          send(self, telnet.escape(table.concat(out) .. "^C\r\n"))
          return nil, "interrupted"
        elseif c == 4 and #acc == 0 then
          self.buf = buf:sub(i + 1)
          send(self, telnet.escape(table.concat(out)))
          return nil, "eof"
        elseif c == 27 then
          local s, e = buf:find("^\27[%[O][%d;]*[%a~]", i)
          if s then i = e end
        elseif c >= 32 or c == 9 then
          if #acc >= max then
            toolong = true
          else
            acc[#acc + 1] = string.char(c)
            if echo then out[#out + 1] = string.char(c) end
          end
        end
        i = i + 1
      end
      self.buf = ""
      if #out > 0 then send(self, telnet.escape(table.concat(out))) end
    end
  end
end

--- Reads a line without echoing it (a password): in line mode it first
-- turns the client's local echo off by offering ECHO (RFC 857), and
-- gives ECHO back afterwards.
function session:read_password()
  local was = self:is_charmode()
  if not was then self:enable("echo", "us") end
  local line, err = self:read_line{ echo = false }
  if not was then self:disable("echo", "us") end
  if line and not was then self:write("\r\n") end
  return line, err
end

--- Iterates over lines (`read_line`) until an error; `sess.lasterror`
-- tells which.
function session:lines()
  return function()
    local line, err = self:read_line()
    self.lasterror = err
    return line
  end
end

--- Reads one key in character mode: a character, an escape sequence
-- ("\27[A" for Up ...), "\r" for Enter (CR LF, CR NUL or LF), "\3" for
-- Ctrl-C or Telnet IP.
-- @return key, or `nil, err`
function session:read_key()
  while self.buf == "" do
    local ok, err = self:fill()
    if not ok then return nil, err end
    skip_lf(self)
  end
  local buf = self.buf
  local key
  local s, e = buf:find("^\27[%[O][%d;]*[%a~]")
  if s then
    key = buf:sub(1, e)
  elseif buf:find("^\r\n") then
    key, e = "\r", 2
  elseif buf:byte(1) == 10 then
    key, e = "\r", 1
  else
    e = buf:find("^[\xC2-\xF4][\x80-\xBF]+") and select(2, buf:find("^[\xC2-\xF4][\x80-\xBF]+")) or 1
    key = buf:sub(1, e)
    if key == "\r" then self.skip_lf = true end
  end
  self.buf = buf:sub(e + 1)
  skip_lf(self)
  return key
end

--- Closes the connection.
function session:close()
  if self.closed then return end
  self.closed = true
  self.conn:close()
end

function session:__tostring()
  return ("parley.telnet.session: %s %dx%s"):format(self.ttype or "?", self.width or 0, self.height or "?")
end

return M
