--- parley.http.body: message bodies read from a connection (server and client).
--
-- Both sides keep what they read in a small state table
-- `st = { conn = stream, buf = string, pos = integer }`: `buf:sub(pos)` are
-- bytes received but not consumed yet (the rest of a pipelined batch, or
-- the first bytes of a body that came with its head). A body reader takes
-- its bytes from there first, then straight from the stream (no copy into
-- `buf`), and leaves whatever follows the body in `st` for the next message.
-- @module parley.http.body
local core = require "parley.core"

local chunked_decoder = core.http.chunked_decoder
local min = math.min

local M = {}

local reader = {}
reader.__index = reader
reader.__name = "parley.http.body"

--- A body reader.
-- @tparam table st the connection state `{conn, buf, pos}`
-- @tparam string kind `"none"`, `"length"`, `"chunked"` or `"close"`
--   (from `core.http.body_framing`)
-- @tparam[opt] integer len the length for `"length"`
-- @tparam[opt] table opts `max` (bytes; over it the read fails with
--   `"body too large"`, 413), `timeout` (seconds per read), `limits` for
--   the chunked decoder, `short` (error text when the peer closes early)
-- @return a reader with `read`, `all`, `to`, `source`, `drain`
function M.reader(st, kind, len, opts)
  opts = opts or {}
  local r = setmetatable({
    st = st, kind = kind, left = len or 0, total = 0,
    max = opts.max, timeout = opts.timeout,
    done = kind == "none" or (kind == "length" and (len or 0) == 0),
  }, reader)
  if kind == "chunked" then r.dec = chunked_decoder(opts.limits) end
  return r
end

function reader:fail(err, status)
  self.err, self.status = err, status
  return nil, err, status
end

local function count(self, piece)
  local total = self.total + #piece
  self.total = total
  if self.max and total > self.max then
    return self:fail("body too large", 413)
  end
  return piece
end

--- The next piece of the body (a non-empty string), `nil` at its end, or
-- `nil, err, status` (`"body too large"` 413, `"bad chunked body: ..."` 400,
-- `"timeout"` 408, `"body shorter than declared"`, `"closed"` ...).
-- @tparam[opt=65536] integer max the largest piece wanted
function reader:read(max)
  if self.done then return nil end
  if self.err then return nil, self.err, self.status end
  max = max or 65536
  local st = self.st
  local buf, pos = st.buf, st.pos
  local kind = self.kind
  if kind == "length" then
    local avail = #buf - pos + 1
    local piece
    if avail > 0 then
      local take = min(avail, self.left, max)
      if pos == 1 and take == avail then piece = buf
      else piece = buf:sub(pos, pos + take - 1) end
      st.pos = pos + take
    else
      local conn = st.conn
      if self.timeout then conn:settimeout(self.timeout) st.tmo = self.timeout end
      local err
      piece, err = conn:receive_some(min(self.left, max))
      if not piece then
        if err == "closed" then err = "body shorter than declared" end
        return self:fail(err, err == "timeout" and 408 or 400)
      end
    end
    self.left = self.left - #piece
    if self.left == 0 then self.done = true end
    return count(self, piece)
  elseif kind == "chunked" then
    local dec = self.dec
    for _ = 1, 1e9 do
      if pos <= #buf then
        local data, done, used = dec:feed(buf, pos)
        if not data then return self:fail("bad chunked body: " .. done, 400) end
        pos = pos + used
        st.pos = pos
        if done then self.done = true end
        if data ~= "" then return count(self, data) end
        if done then return nil end
      end
      local conn = st.conn
      if self.timeout then conn:settimeout(self.timeout) st.tmo = self.timeout end
      local chunk, err = conn:receive_some(65536)
      if not chunk then
        if err == "closed" then err = "body shorter than declared" end
        return self:fail(err, err == "timeout" and 408 or 400)
      end
      -- the decoder consumed everything it was given (it keeps partial state)
      buf, pos = chunk, 1
      st.buf, st.pos = buf, pos
    end
  else -- "close": everything until the peer closes (responses only)
    local piece
    if pos <= #buf then
      piece = pos == 1 and buf or buf:sub(pos)
      st.buf, st.pos = "", 1
    else
      local conn = st.conn
      if self.timeout then conn:settimeout(self.timeout) st.tmo = self.timeout end
      local err
      piece, err = conn:receive_some(max)
      if not piece then
        if err == "closed" then self.done = true return nil end
        return self:fail(err)
      end
    end
    return count(self, piece)
  end
end

--- The whole (rest of the) body as one string, or `nil, err, status`.
function reader:all()
  local parts, n = {}, 0
  while true do
    local piece, err, status = self:read()
    if not piece then
      if err then return nil, err, status end
      break
    end
    n = n + 1
    parts[n] = piece
  end
  if n == 1 then return parts[1] end
  return table.concat(parts)
end

--- Streams the body to an ltn12 sink (called with each piece, then `nil`).
-- @return bytes written, or `nil, err, status`
function reader:to(sink)
  local before = self.total
  while true do
    local piece, err, status = self:read()
    if not piece then
      if err then return nil, err, status end
      break
    end
    local ok, serr = sink(piece)
    if not ok then return self:fail(serr or "sink failed") end
  end
  sink(nil)
  return self.total - before
end

--- An ltn12 source over the body (raises nothing; `nil, err` on failure).
function reader:source()
  return function()
    local piece, err = self:read()
    if piece then return piece end
    return nil, err
  end
end

--- Reads and discards the rest of the body, at most `limit` bytes.
-- @return true when the body ended (the connection can carry on)
function reader:drain(limit)
  if self.done then return true end
  if self.err then return false end
  if self.kind == "length" and self.left > limit then return false end
  local got = 0
  while got <= limit do
    local piece = self:read()
    if not piece then return self.done and not self.err end
    got = got + #piece
  end
  return false
end

--- Whether the body has been read to its end.
function reader:finished()
  return self.done
end

--- The trailer fields of a chunked body once it has been read to its end
-- (a table shaped like a parsed head's headers, empty when there were
-- none); `nil` before the end or for a body that is not chunked.
function reader:trailers()
  if not (self.done and self.dec) then return nil end
  return self.dec:trailers()
end

return M
