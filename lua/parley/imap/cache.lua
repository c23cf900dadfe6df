--- The IMAP server's header cache, kept beside each Maildir in
-- `parley-cache`: the header block (CRLF line ends, blank line included)
-- of every message a client asked headers of, so that a
-- `FETCH 1:* (BODY.PEEK[HEADER])` reads one file instead of thousands.
--
-- Safe by construction: a Maildir message never changes under its name
-- (the part before `:2,`), so an entry is never stale; it can only be
-- dead (the message was expunged), which costs space, not correctness.
-- Records are `H <name> <length>\n<bytes>\n`, appended with one write(2)
-- on an O_APPEND descriptor (whole records, so several processes can
-- append at once). A torn or garbled tail (a crash mid-write) ends the
-- parse: later records are ignored and the file is rewritten from the
-- good part on the next append. When dead entries outweigh live ones
-- the file is rewritten (tmp file + rename). Deleting the file is always
-- safe: it is rebuilt as clients fetch headers.
--
-- One cache object per Maildir per process, shared by its sessions; each
-- use reads only what other processes appended since (by file size).
-- @module parley.imap.cache
local core = require "parley.core"
local fs = core.fs
local find = string.find

local M = {}

M.FILE = "parley-cache"
M.MAX_ENTRY = 262144   -- header blocks larger than this are not cached

local caches = setmetatable({}, { __mode = "v" })

local methods = {}
local mt = { __index = methods, __name = "parley.imap.cache" }

--- The cache for a Maildir directory.
function M.for_dir(dir)
  local c = caches[dir]
  if not c then
    c = setmetatable({ dir = dir, path = dir .. "/" .. M.FILE, map = {}, loaded = 0,
                       count = 0, pending = {}, npending = 0, bad = false }, mt)
    caches[dir] = c
  end
  return c
end

-- parses records from text starting at pos; returns the position after
-- the last whole record
local function parse(self, text, pos)
  local map, n = self.map, self.count
  local sub = string.sub
  local len = #text
  while pos <= len do
    local s, e, name, size = find(text, "^H ([^ \n]+) (%d+)\n", pos)
    if not s then self.bad = true; break end
    size = tonumber(size)
    local stop = e + size
    if stop + 1 > len or sub(text, stop + 1, stop + 1) ~= "\n" then self.bad = true; break end
    if not map[name] then n = n + 1 end
    map[name] = sub(text, e + 1, stop)
    pos = stop + 2
  end
  self.count = n
  return pos
end

--- Reads what was appended since the last look (all of it the first time,
-- or after the file was rewritten).
function methods:refresh()
  local st = fs.stat(self.path)
  if not st then
    if self.loaded > 0 then self.map, self.count, self.loaded = {}, 0, 0 end
    return
  end
  if st.size == self.loaded and st.ino == self.ino then return end
  if st.ino ~= self.ino or st.size < self.loaded then
    self.map, self.count, self.loaded, self.bad = {}, 0, 0, false
    self.ino = st.ino
  end
  local fh = io.open(self.path, "rb")
  if not fh then return end
  fh:seek("set", self.loaded)
  local text = fh:read("a") or ""
  fh:close()
  local pos = parse(self, text, 1)
  self.loaded = self.loaded + pos - 1
end

--- The cached header block of a message, or nil.
function methods:get(name)
  return self.map[name]
end

--- Queues a header block for the next `flush`.
function methods:put(name, header)
  if #header > M.MAX_ENTRY or self.map[name] or find(name, " ", 1, true)
      or find(name, "\n", 1, true) then
    return
  end
  self.map[name] = header
  self.count = self.count + 1
  -- pieces, joined once by flush
  local p, n = self.pending, self.npending
  p[n + 1], p[n + 2], p[n + 3], p[n + 4], p[n + 5], p[n + 6] = "H ", name, " ", #header, "\n", header
  p[n + 7] = "\n"
  self.npending = n + 7
end

-- rewrites the file with the live entries (`live`: name -> true)
local function rewrite(self, live)
  local out = {}
  for name, h in pairs(self.map) do
    if not live or live[name] then
      out[#out + 1] = "H " .. name .. " " .. #h .. "\n" .. h .. "\n"
    end
  end
  local tmp = self.path .. ".tmp." .. fs.getpid()
  local f = fs.open(tmp, "wct", 384)
  if not f then return end
  local data = table.concat(out)
  local ok = f:write(data)
  if ok then ok = f:close() else f:close() end
  if ok and fs.rename(tmp, self.path) then
    local st = fs.stat(self.path)
    self.ino, self.loaded, self.bad = st and st.ino, #data, false
    if live then
      for name in pairs(self.map) do if not live[name] then self.map[name] = nil end end
    end
  else
    fs.unlink(tmp)
  end
end

--- Appends the queued entries (one write). `live` (optional, name ->
-- true for the messages on disk) lets it drop dead entries when they
-- outnumber the live ones.
function methods:flush(live, nlive)
  local p = self.pending
  if self.npending == 0 and not self.bad then return end
  self.pending, self.npending = {}, 0
  if self.bad or (live and nlive and self.count > 2 * nlive + 100) then
    return rewrite(self, live)
  end
  local f = fs.open(self.path, "wca", 384)
  if not f then return end
  local data = table.concat(p)
  local ok = f:write(data)
  f:close()
  if ok then
    local st = fs.stat(self.path)
    -- only what we wrote since our last look: keep `loaded` exact
    if st and st.size == self.loaded + #data then self.loaded = st.size; self.ino = st.ino end
  end
end

return M
