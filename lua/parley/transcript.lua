--- parley.transcript: record the dialogue on a connection.
--
-- A recorder collects entries `{ conn = id, dir = "C" | "S" | "*",
-- t = seconds since the recorder started, text = line without its CRLF,
-- bytes = n (bulk summaries only) }`; `dir = "*"` is an event (connected,
-- accepted, closed, timeout ...). `wrap` puts a recorder on a stream: the
-- object it returns has the stream's methods and records what passes.
--
--     local transcript = require "parley.transcript"
--     local rec = transcript.new(true)            -- stderr
--     local conn = transcript.wrap(parley.connect("127.0.0.1:25"), rec,
--       { protocol = "smtp", side = "client" })
--
-- Written out, an entry is one line: `[1] +0.123s C: EHLO x` (on a colour
-- terminal client lines red, server lines blue), with control bytes
-- escaped (`\r`, `\x00`) so a bare LF or a NUL is visible.
-- Secrets (passwords, AUTH payloads, credentials in HTTP headers) are
-- masked as `****` and bulk data (message bodies, literals, FTP data, HTTP
-- bodies) is summarised as `[4,096 bytes]` unless the recorder was made
-- with `secrets = true` / `full = true`.
-- @module parley.transcript
local core = require "parley.core"
local Flow = require "parley.transcript.flow"

local M = {}

-- ---------------------------------------------------------------------
-- Formatting

local ESCAPES = { ["\r"] = "\\r", ["\n"] = "\\n", ["\t"] = "\\t" }

local function hex(c) return ESCAPES[c] or ("\\x%02x"):format(c:byte()) end

--- Escapes control bytes so that every byte is visible: `\r`, `\n`, `\t`,
-- `\x00`.  Text that is valid UTF-8 keeps its letters (Greek stays Greek);
-- in text that is not, every byte above 126 is shown as `\xNN`.  A
-- backslash is shown as itself: IMAP's `\Seen` reads as `\Seen`.
-- @tparam string text
-- @treturn string
function M.escape(text)
  if utf8.len(text) then return (text:gsub("[%c\127]", hex)) end
  return (text:gsub("[%c\127-\255]", hex))
end

--- Writes a number with thousands separators: `4096` -> `"4,096"`.
-- @tparam integer n
-- @treturn string
function M.commas(n)
  local s = tostring(math.tointeger(n) or n)
  local sign, digits = s:match("^(-?)(%d+)$")
  if not digits then return s end
  return sign .. digits:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
end

local COLORS = { C = "\27[31m", S = "\27[34m", ["*"] = "\27[2m" }

--- Formats one entry as a line (without newline).
-- @tparam table entry
-- @tparam[opt] boolean color ANSI colours: client red, server blue, events dim
-- @treturn string `[conn] +0.123s C: text`
function M.format(entry, color)
  local marker = entry.dir == "*" and "* " or entry.dir .. ": "
  local line = ("[%s] +%.3fs %s%s"):format(tostring(entry.conn), entry.t, marker,
    entry.bytes and entry.text or M.escape(entry.text))
  if color then return COLORS[entry.dir] .. line .. "\27[0m" end
  return line
end

-- ---------------------------------------------------------------------
-- Recorders

local recorder = {}
recorder.__index = recorder
recorder.__name = "parley.transcript.recorder"

-- Whether output to this target may be coloured: a terminal, and NO_COLOR
-- unset (https://no-color.org).
local function auto_color(fh)
  local v = os.getenv("NO_COLOR")
  if v and v ~= "" then return false end
  local fd = (fh == io.stderr and 2) or (fh == io.stdout and 1)
  return fd and core.pty.isatty(fd) or false
end

--- Makes a recorder.
-- @param target a file name (appended to), a Lua file handle (set to
-- line buffering), a function
-- receiving each entry table, or `true` (stderr)
-- @tparam[opt] table opts `full` (false: bulk data summarised as
-- `[4,096 bytes]`; true: every line), `secrets` (false: masked as `****`),
-- `color` (default: only when the target is a terminal and NO_COLOR is
-- unset)
-- @return a recorder, or `nil, err` when the file cannot be opened
function M.new(target, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("transcript options must be a table", 2) end
  local self = setmetatable({ full = opts.full and true or false,
    secrets = opts.secrets and true or false, t0 = core.now(), last = 0, ids = 0 }, recorder)
  local tt = type(target)
  if target == true then
    self.out = io.stderr
  elseif tt == "function" then
    self.fn = target
  elseif tt == "string" then
    local fh, err = io.open(target, "a")
    if not fh then return nil, err end
    fh:setvbuf("line")
    self.out, self.owns_out = fh, true
  elseif io.type(target) == "file" then
    -- a transcript is read as it happens (a lab's stdout piped to less)
    target:setvbuf("line")
    self.out = target
  else
    error("transcript target must be a file name, a file, a function or true", 2)
  end
  if self.out then
    if opts.color == nil then self.color = auto_color(self.out) else self.color = opts.color and true or false end
  end
  return self
end

--- Whether `x` is a recorder.
function M.is_recorder(x)
  return getmetatable(x) == recorder
end

--- A recorder for an option value: a recorder as it is, anything else
-- through `new` with `opts`.
-- @return recorder, whether it was made here (the caller closes it), or `nil, err`
function M.recorder(value, opts)
  if M.is_recorder(value) then return value, false end
  local rec, err = M.new(value, opts)
  if not rec then return nil, err end
  return rec, true
end

--- The next connection id of this recorder (1, 2, ...).
function recorder:next_id()
  self.ids = self.ids + 1
  return self.ids
end

--- Records one entry table (`t` is filled in). Entries after `close` are dropped.
function recorder:emit(e)
  if self.closed then return end
  -- monotonic even if the clock were to step back
  local t = core.now() - self.t0
  if t < self.last then t = self.last end
  self.last = t
  e.t = t
  if self.fn then
    self.fn(e)
  else
    self.out:write(M.format(e, self.color), "\n")
  end
end

--- Records a line.
-- @param conn connection id
-- @tparam string dir `"C"` or `"S"`
-- @tparam string text the line without its CRLF
function recorder:line(conn, dir, text)
  self:emit{ conn = conn, dir = dir, text = text }
end

--- Records a bulk summary: `[4,096 bytes]`.
-- @param conn connection id
-- @tparam string dir `"C"` or `"S"`
-- @tparam integer n bytes
function recorder:bulk(conn, dir, n)
  self:emit{ conn = conn, dir = dir, text = "[" .. M.commas(n) .. " bytes]", bytes = n }
end

--- Records an event (`dir = "*"`): "connected to 127.0.0.1:25", "closed" ...
-- @param conn connection id
-- @tparam string text
function recorder:event(conn, text)
  self:emit{ conn = conn, dir = "*", text = text }
end

--- Stops recording; closes the file it opened (never stderr or a handle
-- it was given).
function recorder:close()
  if self.closed then return end
  self.closed = true
  if self.owns_out then self.out:close() end
end

recorder.__close = recorder.close

function recorder:__tostring()
  return ("parley.transcript.recorder (%d connections)"):format(self.ids)
end

-- ---------------------------------------------------------------------
-- Wrapped streams

local wrapped = {}   -- the recording methods; the rest pass through

local forwarders = {}
local function forwarder(name)
  local f = forwarders[name]
  if not f then
    f = function(self, ...)
      local inner = self.inner
      return inner[name](inner, ...)
    end
    forwarders[name] = f
  end
  return f
end

local wrapper_mt = {
  __name = "parley.transcript.stream",
  __index = function(self, k)
    local m = wrapped[k]
    if m then return m end
    if type(self.inner[k]) == "function" then return forwarder(k) end
    return nil
  end,
  __close = function(self) self:close() end,
  __tostring = function(self) return "transcript: " .. tostring(self.inner) end,
}

local function peer(stream, fn)
  local ok, ip, port = pcall(stream[fn], stream)
  if not ok or not ip then return "?" end
  return (tostring(ip):find(":") and "[" .. ip .. "]" or ip) .. ":" .. tostring(port)
end

local WATCHERS = { smtp = true, pop3 = true, imap = true, ftp = true, http = true,
  telnet = true, ["ftp-data"] = true }

--- Records what passes on a stream.
-- @param stream a parley stream (or anything with its methods)
-- @param rec a recorder
-- @tparam[opt] table opts `protocol` (`"smtp"`, `"pop3"`, `"imap"`, `"ftp"`,
-- `"ftp-data"` (every byte is bulk), `"http"`, `"telnet"` or nil: plain
-- lines), `side` (`"client"` (default): what is sent is `C`; `"server"`),
-- `conn` (id; default the recorder's next), `event` (the first event;
-- default "connected to ADDR" / "accepted from ADDR"), `own` (true:
-- closing the stream closes the recorder)
-- @return an object with the stream's methods
function M.wrap(stream, rec, opts)
  if not M.is_recorder(rec) then error("wrap: a recorder expected", 2) end
  opts = opts or {}
  local protocol = opts.protocol
  if protocol ~= nil and not WATCHERS[protocol] then error("wrap: unknown protocol " .. tostring(protocol), 2) end
  local side = opts.side or "client"
  if side ~= "client" and side ~= "server" then error("wrap: side must be \"client\" or \"server\"", 2) end
  local conn = opts.conn or rec:next_id()
  local out = side == "client" and "C" or "S"
  local self = setmetatable({
    inner = stream, rec = rec, conn = conn, own = opts.own,
    out = out, inn = out == "C" and "S" or "C",
    flow = Flow.new(rec, conn, protocol and require("parley.transcript." .. protocol:gsub("%-", "_")), side),
  }, wrapper_mt)
  rec:event(conn, opts.event or (side == "client" and "connected to " .. peer(stream, "getpeername")
    or "accepted from " .. peer(stream, "getpeername")))
  return self
end

--- Wraps a client's or server's new connection when `opts.transcript`
-- asks for one; otherwise returns `stream` untouched (no cost).
-- `opts.transcript` is a recorder or a target for `new` (then
-- `opts.transcript_full` and `opts.transcript_secrets` apply, and the
-- recorder is closed with the stream).
-- @param stream a stream (or nil: returned as is with the rest)
-- @tparam table opts the client's or server's options
-- @tparam ?string protocol
-- @tparam string side `"client"` or `"server"`
-- @return the stream or its wrapper (or `nil, err` if the transcript file
-- cannot be opened)
function M.attach(stream, opts, protocol, side, ...)
  if not stream or not opts or not opts.transcript then return stream, ... end
  local rec, own = M.recorder(opts.transcript,
    { full = opts.transcript_full, secrets = opts.transcript_secrets })
  if not rec then
    stream:close()
    return nil, "transcript: " .. tostring(own)
  end
  return M.wrap(stream, rec, { protocol = protocol, side = side, own = own })
end

-- an I/O failure worth a line of its own ("closed" by the peer included)
local function failed(self, err)
  if err and err ~= self.last_err then
    self.last_err = err
    self.flow:finish_pending()
    self.rec:event(self.conn, err == "closed" and "closed by peer" or err)
  end
end

function wrapped:send(data, i, j)
  local r, err, last = self.inner:send(data, i, j)
  local upto = r or last
  data = tostring(data)
  i = i or 1
  if i < 0 then i = math.max(#data + i + 1, 1) end
  if upto and upto >= i then self.flow:feed(self.out, data:sub(i, upto)) end
  if not r then failed(self, err) end
  return r, err, last
end

function wrapped:flush()
  self.flow:flush_pending(self.out)
  local ok, err = self.inner:flush()
  if not ok then failed(self, err) end
  return ok, err
end

function wrapped:receive(pattern, prefix)
  self.flow:flush_pending(self.out)
  local r, err, partial = self.inner:receive(pattern, prefix)
  local skip = prefix and #prefix or 0
  if r then
    self.last_err = nil
    local p = pattern or "l"
    self.flow:feed(self.inn, r:sub(skip + 1) .. ((p == "l" or p == "*l") and "\r\n" or ""))
  else
    if err == "bare lf" then
      self.flow:feed(self.inn, partial:sub(skip + 1) .. "\n")
    elseif partial and #partial > skip then
      self.flow:feed(self.inn, partial:sub(skip + 1))
    end
    failed(self, err)
  end
  return r, err, partial
end

function wrapped:receive_some(max)
  self.flow:flush_pending(self.out)
  local r, err = self.inner:receive_some(max)
  if r then self.last_err = nil self.flow:feed(self.inn, r) else failed(self, err) end
  return r, err
end

function wrapped:receive_until(delim, max)
  self.flow:flush_pending(self.out)
  local r, err, x = self.inner:receive_until(delim, max)
  if r then self.last_err = nil self.flow:feed(self.inn, r .. delim) else failed(self, err) end
  return r, err, x
end

function wrapped:receive_to(sink, count)
  self.flow:flush_pending(self.out)
  local n, err, so_far
  if type(sink) == "function" then
    local flow, dir = self.flow, self.inn
    n, err, so_far = self.inner:receive_to(function(chunk)
      if chunk then flow:feed(dir, chunk) end
      return sink(chunk)
    end, count)
  else
    n, err, so_far = self.inner:receive_to(sink, count)
    self.flow:opaque(self.inn, n or so_far or 0)
  end
  if not n then failed(self, err) end
  return n, err, so_far
end

function wrapped:sendfile(file, offset, count)
  self.flow:flush_pending(self.out)
  local n, err, sent = self.inner:sendfile(file, offset, count)
  self.flow:opaque(self.out, n or sent or 0)
  if not n then failed(self, err) end
  return n, err, sent
end

function wrapped:lines()
  return function()
    return (self:receive("l"))
  end
end

function wrapped:close()
  if not self.closed then
    self.closed = true
    self.flow:finish()
    self.rec:event(self.conn, "closed")
    if self.own then self.rec:close() end
  end
  return self.inner:close()
end

--- Records a second connection of the same session (an FTP data
-- connection) on the recorder of `parent`, if `parent` is recorded.
-- @param stream the new stream (or nil: returned as is with the rest)
-- @param parent a stream, wrapped or not
-- @tparam string protocol e.g. `"ftp-data"`
-- @tparam string side `"client"` or `"server"`
-- @return the stream or its wrapper
function M.follow(stream, parent, protocol, side, ...)
  if not stream or getmetatable(parent) ~= wrapper_mt then return stream, ... end
  local how = side == "client" and "to " or "from "
  return M.wrap(stream, parent.rec, { protocol = protocol, side = side,
    event = ("data connection %s%s (control [%s])"):format(how, peer(stream, "getpeername"),
      tostring(parent.conn)) })
end

--- The stream under a wrapper (or the stream itself).
function M.unwrap(stream)
  if getmetatable(stream) == wrapper_mt then return stream.inner end
  return stream
end

--- The recorder and connection id of a wrapped stream (nil for a plain one).
function M.recorder_of(stream)
  if getmetatable(stream) == wrapper_mt then return stream.rec, stream.conn end
end

return M
