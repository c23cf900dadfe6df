--- parley.transcript.flow: turns the bytes a wrapped stream sees into
-- transcript entries.
--
-- Each direction (`"C"`, `"S"`) is in line mode (every line goes through
-- the protocol's watcher, which may mask it and switch a direction to bulk)
-- or in a bulk mode: `"count"` (n bytes: IMAP literals, BDAT chunks, HTTP
-- Content-Length), `"dot"` (until a line holding only ".": SMTP DATA,
-- POP3 RETR), `"chunked"` (HTTP chunked coding) or `"close"` (until the
-- connection ends: FTP data, an HTTP body without length). A bulk run is
-- one `[n bytes]` entry, or every line of it when the recorder is `full`.
--
-- A watcher is a table: `new(flow) -> state`, `line(state, flow, dir,
-- text, partial) -> shown text`, optional `start(flow)`, `eol_nul` (true:
-- CR NUL also ends a line, as in Telnet).
-- @module parley.transcript.flow
local Flow = {}
Flow.__index = Flow

-- An unfinished line is shown anyway once this many bytes are held.
Flow.MAX_PENDING = 65536

local function other(dir) return dir == "C" and "S" or "C" end

--- A flow for one connection.
-- @param rec the recorder
-- @param conn connection id
-- @tparam ?table watcher the protocol's watcher
-- @tparam string side `"client"` or `"server"`
function Flow.new(rec, conn, watcher, side)
  local self = setmetatable({ rec = rec, conn = conn, watcher = watcher, side = side,
    eol_nul = watcher and watcher.eol_nul,
    d = { C = { buf = "", rbuf = "" }, S = { buf = "", rbuf = "" } } }, Flow)
  self.state = watcher and watcher.new and watcher.new(self) or {}
  if watcher and watcher.start then watcher.start(self) end
  return self
end

--- Whether the recorder shows every line of bulk data.
function Flow:full() return self.rec.full end

--- Whether the recorder shows secrets unmasked.
function Flow:secrets() return self.rec.secrets end

--- Switches direction `dir` to a bulk mode from its next byte on.
-- @tparam string dir
-- @tparam string kind `"count"`, `"dot"`, `"chunked"` or `"close"`
-- @tparam[opt] integer n bytes, for `"count"`
-- @tparam[opt] boolean secret shown as `****` even when `full`
function Flow:bulk(dir, kind, n, secret)
  local st = self.d[dir]
  if kind == "count" and n == 0 then
    self.rec:bulk(self.conn, dir, 0)
    return
  end
  st.mode = { kind = kind, left = n, total = 0, cur = "", lbuf = "", phase = "size",
    secret = secret and not self.rec.secrets }
end

--- The bulk mode of a direction (`nil` in line mode).
function Flow:mode(dir)
  local m = self.d[dir].mode
  return m and m.kind
end

-- how a line ended, made visible when it is not CRLF
local function split_eol(line, eol_nul)
  if line:sub(-2) == "\r\n" then return line:sub(1, -3), "" end
  if eol_nul and line:sub(-2) == "\r\0" then return line:sub(1, -3), "" end
  if line:sub(-1) == "\n" then return line:sub(1, -2), "\n" end
  return line, ""
end

-- a protocol line (through the watcher)
function Flow:line(dir, line, partial)
  local body, eol = split_eol(line, self.eol_nul)
  local text = body
  local w = self.watcher
  if w then text = w.line(self.state, self, dir, body, partial) or body end
  self.rec:line(self.conn, dir, text .. eol)
end

-- a line of bulk data, shown only when full
function Flow:raw_line(dir, line, secret)
  local body, eol = split_eol(line, self.eol_nul)
  self.rec:line(self.conn, dir, secret and "****" or body .. eol)
end

-- bulk bytes when full: shown line by line
function Flow:raw(dir, st, piece, secret)
  local pos = 1
  while true do
    local e = piece:find("\n", pos, true)
    if not e then break end
    self:raw_line(dir, st.rbuf .. piece:sub(pos, e), secret)
    st.rbuf = ""
    pos = e + 1
  end
  st.rbuf = st.rbuf .. piece:sub(pos)
  if #st.rbuf >= Flow.MAX_PENDING then self:raw_flush(dir, st, secret) end
end

function Flow:raw_flush(dir, st, secret)
  if #st.rbuf > 0 then
    self:raw_line(dir, st.rbuf, secret)
    st.rbuf = ""
  end
end

-- a bulk run ended: its summary (or the rest of its lines)
function Flow:end_bulk(dir)
  local st = self.d[dir]
  local m = st.mode
  st.mode = nil
  if self.rec.full then
    self:raw_flush(dir, st, m.secret)
  else
    self.rec:bulk(self.conn, dir, m.total)
  end
end

-- ---------------------------------------------------------------------
-- One step of each mode: consume from s at pos, return the next pos.

local step = {}

function step.line(self, dir, st, s, pos)
  local e = s:find("\n", pos, true)
  if self.eol_nul then
    local z = s:find("\r\0", pos, true)
    if z and (not e or z + 1 < e) then e = z + 1 end
    if pos == 1 and st.buf:sub(-1) == "\r" and s:byte(1) == 0 then e = 1 end
  end
  if not e then
    st.buf = st.buf .. s:sub(pos)
    if #st.buf >= Flow.MAX_PENDING then self:flush_pending(dir) end
    return #s + 1
  end
  local line = st.buf .. s:sub(pos, e)
  st.buf = ""
  self:line(dir, line)
  return e + 1
end

function step.count(self, dir, st, m, s, pos)
  local k = math.min(m.left, #s - pos + 1)
  if self.rec.full then self:raw(dir, st, s:sub(pos, pos + k - 1), m.secret) end
  m.left = m.left - k
  m.total = m.total + k
  if m.left == 0 then self:end_bulk(dir) end
  return pos + k
end

-- until a line holding only "." (RFC 5321 4.5.2, RFC 1939 3)
function step.dot(self, dir, st, m, s, pos)
  local e = s:find("\n", pos, true)
  local stop = e or #s
  local len = stop - pos + 1
  if m.cur then
    if #m.cur + len <= 3 then m.cur = m.cur .. s:sub(pos, stop) else m.cur = false end
  end
  if self.rec.full then
    if not e then
      st.rbuf = st.rbuf .. s:sub(pos)
      if #st.rbuf >= Flow.MAX_PENDING then self:raw_flush(dir, st) end
      return stop + 1
    end
    local line = st.rbuf .. s:sub(pos, e)
    st.rbuf = ""
    if m.cur == ".\r\n" or m.cur == ".\n" then
      st.mode = nil
      self:line(dir, line)
    else
      self:raw_line(dir, line)
      m.cur = ""
    end
    return stop + 1
  end
  if e and (m.cur == ".\r\n" or m.cur == ".\n") then
    -- the dot line's first bytes may have been counted in an earlier piece
    m.total = m.total - (#m.cur - len)
    local dot = m.cur
    self:end_bulk(dir)
    self:line(dir, dot)
    return stop + 1
  end
  m.total = m.total + len
  if e then m.cur = "" end
  return stop + 1
end

-- RFC 9112 7.1: size line, data, CRLF ... a zero size, trailers, empty line
function step.chunked(self, dir, st, m, s, pos)
  local full = self.rec.full
  if m.phase == "data" then
    local k = math.min(m.left, #s - pos + 1)
    if full then self:raw(dir, st, s:sub(pos, pos + k - 1)) end
    m.left = m.left - k
    m.total = m.total + k
    if m.left == 0 then
      m.phase = "crlf"
      if full then self:raw_flush(dir, st) end
    end
    return pos + k
  end
  local e = s:find("\n", pos, true)
  if not e then
    m.lbuf = m.lbuf .. s:sub(pos)
    if #m.lbuf >= Flow.MAX_PENDING then m.kind = "close" end   -- not chunked after all
    return #s + 1
  end
  local line = m.lbuf .. s:sub(pos, e)
  m.lbuf = ""
  if full then self:raw_line(dir, line) end
  if m.phase == "size" then
    local size = tonumber(line:match("^%s*(%x+)") or "", 16)
    if not size then
      self:end_bulk(dir)
    elseif size == 0 then
      m.phase = "trailer"
    else
      m.left, m.phase = size, "data"
    end
  elseif m.phase == "crlf" then
    m.phase = "size"
  elseif line == "\r\n" or line == "\n" then
    self:end_bulk(dir)
  end
  return e + 1
end

function step.close(self, dir, st, m, s, pos)
  if self.rec.full then self:raw(dir, st, s:sub(pos)) end
  m.total = m.total + #s - pos + 1
  return #s + 1
end

-- ---------------------------------------------------------------------

--- Takes bytes that went by in direction `dir`.
-- @tparam string dir `"C"` or `"S"`
-- @tparam string s
function Flow:feed(dir, s)
  if #s == 0 then return end
  self:flush_pending(other(dir))   -- the other side's unfinished line came first
  local st = self.d[dir]
  local pos, n = 1, #s
  while pos <= n do
    local m = st.mode
    if m then
      pos = step[m.kind](self, dir, st, m, s, pos)
    else
      pos = step.line(self, dir, st, s, pos)
    end
  end
end

--- Counts `n` bytes that went by unseen (sendfile, a receive into a file).
function Flow:opaque(dir, n)
  if n <= 0 then return end
  self:flush_pending(other(dir))
  local m = self.d[dir].mode
  if not m or self.rec.full then self.rec:bulk(self.conn, dir, n) end
  if not m then return end
  if not self.rec.full then m.total = m.total + n end
  if m.kind == "count" then
    m.left = m.left - n
    if m.left <= 0 then self:end_bulk(dir) end
  end
end

--- Shows the unfinished line of direction `dir` (a prompt, a partial
-- write) as an entry of its own.
function Flow:flush_pending(dir)
  local st = self.d[dir]
  if #st.buf > 0 then
    local line = st.buf
    st.buf = ""
    self:line(dir, line, true)
  end
end

--- Shows both directions' unfinished lines.
function Flow:finish_pending()
  self:flush_pending("C")
  self:flush_pending("S")
end

--- The connection ended: unfinished lines and bulk runs are shown.
function Flow:finish()
  for _, dir in ipairs{ "C", "S" } do
    self:flush_pending(dir)
    local m = self.d[dir].mode
    -- a direction that carried nothing until the close (FTP data) says nothing
    if m and not (m.kind == "close" and m.total == 0 and self.d[dir].rbuf == "") then
      self:end_bulk(dir)
    end
  end
end

return Flow
