--- An in-memory index of a Maildir for readers that keep mailboxes open
-- (the IMAP server): the messages with their UIDs, sorted by UID, as an
-- immutable snapshot shared by every session of the process.
--
-- Nothing on disk but what Dovecot and mutt read too: flags live in the
-- `:2,` suffix of the file names, UIDs in `parley-uidlist`
-- (dovecot-uidlist version 3, written atomically under a lock by
-- `maildir`). The snapshot is only a cache of the two directories and
-- that file, and is never trusted blindly: each `snapshot()` stats
-- `new/`, `cur/` and the uidlist (Dovecot's check) and lists the
-- directories again when any of them changed. A directory mtime taken
-- within `MARGIN` seconds of "now" (`COARSE_MARGIN` on file systems
-- with whole-second times) may hide a change made in the same clock tick,
-- so such a stamp is used once and checked again by listing next time.
--
-- A new listing reuses the records of files it already knows (by file
-- name), so a rescan of an unchanged 50,000-message Maildir builds no
-- tables and returns the same snapshot. Names without a UID get the next
-- ones in delivery order, under the uidlist lock and after listing
-- again under it, so concurrent processes agree.
--
-- Records are `{uid=, name=, file=, path=, flags=, new=, size=, vsize=}`
-- (`size`/`vsize` from `,S=`/`,W=` when the name has them) and never
-- change once published; a flag change makes a new record.
-- @module parley.mail.index
local core = require "parley.core"
local maildir = require "parley.mail.maildir"
local fs = core.fs

local M = {}

--- Seconds a directory mtime must lie in the past to be trusted alone
-- (file systems with nanosecond times: a few clock ticks).
M.MARGIN = 0.1
--- The same for whole-second times (mtime with no fraction).
M.COARSE_MARGIN = 2
--- Indexes kept per process; past this, those no session uses are dropped.
M.MAX_INDEXES = 256

local ENOENT = 2
local find, sub, byte, tonumber = string.find, string.sub, string.byte, tonumber

local indexes, nindexes = {}, 0

local methods = {}
local mt = { __index = methods, __name = "parley.mail.index" }

--- A private index of a Maildir mailbox, shared with no one (what
-- another process would have; `of` is the one to use).
-- @tparam table mb a `maildir` mailbox (`store:mailbox(user, folder)`)
-- @return the index
function M.new(mb)
  if type(mb) ~= "table" or type(mb.dir) ~= "string" then error("mailbox expected", 2) end
  return setmetatable({ mb = mb, dir = mb.dir, cur = mb.dir .. "/cur/", users = 0,
                        known = { new = {}, cur = {} } }, mt)
end

--- The index of a Maildir mailbox: one per directory per process, kept
-- while the process runs (`MAX_INDEXES`), so later sessions start warm.
-- `users` counts the sessions using it (they keep it from being dropped).
-- @tparam table mb a `maildir` mailbox (`store:mailbox(user, folder)`)
-- @return the index
function M.of(mb)
  if type(mb) ~= "table" or type(mb.dir) ~= "string" then error("mailbox expected", 2) end
  local x = indexes[mb.dir]
  if x then return x end
  if nindexes >= M.MAX_INDEXES then
    for dir, y in pairs(indexes) do
      if y.users == 0 then indexes[dir] = nil; nindexes = nindexes - 1 end
    end
  end
  x = M.new(mb)
  indexes[mb.dir] = x
  nindexes = nindexes + 1
  return x
end

local function now()
  local s, us = fs.time()
  return s + us / 1e6
end

local function trusted(mtime, t)
  if mtime < 0 then return true end    -- missing: its creation will show
  return t - mtime >= (mtime % 1 == 0 and M.COARSE_MARGIN or M.MARGIN)
end

-- mtimes of new/ and cur/ (-1 when missing) and the uidlist's identity
local function stamps(dir)
  local a, b = fs.stat(dir .. "/new"), fs.stat(dir .. "/cur")
  local u = fs.stat(dir .. "/" .. maildir.UIDLIST)
  return a and a.mtime or -1, b and b.mtime or -1,
         u and (u.ino .. ":" .. u.size .. ":" .. u.mtime) or ""
end

-- A record for a file name found in new/ or cur/.
local function parse(dir, which, file, isnew)
  local i = find(file, ":2,", 1, true)
  local name = i and sub(file, 1, i - 1) or file
  local _, _, size = find(name, ",S=(%d+)")
  local _, _, vsize = find(name, ",W=(%d+)")
  return { name = name, file = file, path = dir .. "/" .. which .. "/" .. file,
           flags = i and sub(file, i + 3) or "", new = isnew,
           size = tonumber(size), vsize = tonumber(vsize) }
end

-- Delivery order key of a record (as maildir's scan orders).
local function order_key(r)
  local _, _, sec, usec, q = find(r.name, "^(%d+)%.M(%d+)P%d+Q(%d+)%.")
  if sec then return ((tonumber(sec) * 1000000 + tonumber(usec)) << 10) | (tonumber(q) & 1023) end
  _, _, sec = find(r.name, "^(%d+)")
  if not sec then
    local st = fs.stat(r.path)
    sec = st and st.mtime // 1 or 0
  end
  return (tonumber(sec) * 1000000) << 10
end

-- Lists new/ and cur/: records by name (first seen wins: a name in both
-- is listed once), reusing known ones. Returns byname, count, the records
-- whose name has no UID in `umap` (name -> UID, or name -> record when
-- `umap_recs`), the new `known` tables, and the records of new/ made by
-- this listing (no snapshot holds them yet).
local function list(self, umap, umap_recs)
  local dir, known = self.dir, self.known
  if next(known.new) == nil and next(known.cur) == nil then
    -- nothing known yet: one C call lists both directories into tables
    -- made at their final sizes
    local recs, byname, knew, kcur, fresh = fs.maildir_listing(dir)
    if not recs then return nil, byname end
    local missing = recs
    if umap then
      missing = {}
      for i = 1, #recs do
        local r = recs[i]
        local uid = umap[r.name]
        if uid and umap_recs then uid = uid.uid end
        r.uid = uid
        if not uid then missing[#missing + 1] = r end
      end
    end
    return byname, #recs, missing, { new = knew, cur = kcur }, fresh
  end
  local byname, n, missing, fresh = {}, 0, {}, {}
  local kn = {}
  for pass = 1, 2 do
    local which = pass == 1 and "new" or "cur"
    local old, k = known[which], {}
    kn[which] = k
    local names, recs, err, errno
    if next(old) == nil then
      -- nothing known yet: the C listing makes the records (with `key`)
      recs = {}
      local n0
      n0, err, errno = fs.maildir_list(dir .. "/" .. which, pass == 1, recs, 0)
      names = n0 and recs
    else
      names, err, errno = fs.listdir(dir .. "/" .. which)
    end
    if not names then
      if errno ~= ENOENT then return nil, err end
      names = {}
    end
    for i = 1, #names do
      local f = names[i]
      local r
      if recs then r = f; f = r.file end
      if byte(f, 1) ~= 46 then                -- not a dot file (the C listing skips them)
        local made = r ~= nil
        r = r or old[f]
        if not r then r = parse(dir, which, f, pass == 1); made = true end
        local uid = umap and umap[r.name]
        if uid and umap_recs then uid = uid.uid end
        if uid ~= r.uid then
          if r.uid then                         -- renumbered: a new record
            r = { name = r.name, file = r.file, path = r.path, flags = r.flags,
                  new = r.new, size = r.size, vsize = r.vsize, key = r.key }
          end
          r.uid = uid
        end
        k[f] = r
        if not byname[r.name] then
          byname[r.name] = r
          n = n + 1
          if not uid then missing[#missing + 1] = r end
          if made and pass == 1 then fresh[#fresh + 1] = r end
        end
      end
    end
  end
  return byname, n, missing, kn, fresh
end

-- Gives UIDs to the records that have none, in delivery order, under the
-- lock and listing under it (`reset`: ignore the uidlist, start anew).
-- Returns byname, count and the `known` tables as `list` does, every
-- record numbered, then the records in UID order, the directory stamps
-- taken before the listing, the uidlist's after writing it, the time of
-- the stamps, and `list`'s fresh records of new/.
local function number(self, reset)
  local mb = self.mb
  if not mb:exists() then
    -- a missing Maildir reads as empty but gets its uidlist (validity)
    local ok, err = mb:uids()
    if not ok then return nil, err end
  end
  local lock, err = mb:lock_uidlist()
  if not lock then return nil, err end
  local t = now()
  local sn, sc = stamps(self.dir)
  local ul = not reset and maildir.read_uidlist(self.dir) or nil
  local byname, n, missing, kn, fresh = list(self, ul and ul.map, false)
  if not byname then lock:close(); return nil, n end
  if not ul then
    -- a lost, unreadable or inconsistent uidlist: every UID starts anew,
    -- so must UIDVALIDITY (above any this process handed out before)
    local v = math.max(os.time(), (self.validity or 0) + 1)
    ul = { validity = v, nextuid = 1, map = {} }
  end
  local present = 0
  for _ in pairs(ul.map) do present = present + 1 end
  -- UID order: the numbered records by UID, then the new ones (above)
  local byuid, ordered, maxold = {}, {}, 0
  for _, r in pairs(byname) do
    local u = r.uid
    if u then
      if byuid[u] then
        -- two names share a UID (a uidlist edited by hand): start anew
        lock:close()
        return number(self, true)
      end
      byuid[u] = r
      if u > maxold then maxold = u end
    end
  end
  for uid = 1, maxold do
    local r = byuid[uid]
    if r then ordered[#ordered + 1] = r end
  end
  local nextuid = ul.nextuid
  for i = 1, #missing do
    local r = missing[i]
    if not r.key then r.key = order_key(r) end
  end
  -- (sorted in C: table.sort calls back into Lua for every comparison)
  missing = fs.maildir_sort(missing)
  local k = #ordered
  for i = 1, #missing do
    local r = missing[i]
    r.uid = nextuid
    nextuid = nextuid + 1
    k = k + 1
    ordered[k] = r
  end
  local umap, recs = ul.map, false
  if #missing > 0 or present ~= n - #missing then
    -- the file lists the messages on disk (expunged names dropped): the
    -- listing itself is its lookup table from now on
    local ok
    ok, err = mb:write_uidlist(ul.validity, nextuid, ordered)
    if not ok then lock:close(); return nil, err end
    ul.nextuid = nextuid
    umap, recs = byname, true
  end
  local _, _, su = stamps(self.dir)
  lock:close()
  self.validity, self.nextuid, self.umap, self.umap_recs = ul.validity, ul.nextuid, umap, recs
  return byname, n, kn, ordered, sn, sc, su, t, fresh
end

-- Builds a snapshot from byname (every record numbered; `ordered`, when
-- given, the same records in UID order); nil when two names share a UID
-- (a uidlist edited by hand).
local function build(self, byname, n, ordered)
  if not ordered then
    local byuid, maxuid = {}, 0
    for _, r in pairs(byname) do
      if byuid[r.uid] then return nil end
      byuid[r.uid] = r
      if r.uid > maxuid then maxuid = r.uid end
    end
    ordered = {}
    for uid = 1, maxuid do
      local r = byuid[uid]
      if r then ordered[#ordered + 1] = r end
    end
  end
  if #ordered ~= n then return nil end
  local nnew, unseen, first = 0, 0, nil
  for k = 1, n do
    local r = ordered[k]
    if r.new then nnew = nnew + 1 end
    if not find(r.flags, "S", 1, true) then
      unseen = unseen + 1
      first = first or k
    end
  end
  return { list = ordered, byname = byname, validity = self.validity, nextuid = self.nextuid,
           nnew = nnew, unseen = unseen, first_unseen = first }
end

-- Moves the fresh records of new/ to cur/ (`<name>:2,<flags>`) before
-- their snapshot is published, changing them in place (no copies: no one
-- holds them yet; in C, renameat on the two directories). Returns the set
-- of their UIDs and how many moved; a record whose file is gone stays as
-- it was.
local function claim(self, fresh, s)
  local moved, recent = fs.maildir_claim(self.dir, fresh, self.known.new, self.known.cur)
  if not moved then return nil, 0 end   -- (new/ or cur/ gone: nothing moved)
  s.nnew = s.nnew - moved
  return recent, moved
end

--- The current snapshot: `{list=, byname=, validity=, nextuid=, nnew=,
-- unseen=, first_unseen=}` (`list` sorted by UID, `nnew` messages in
-- `new/`, `first_unseen` an index into `list`). The same table as last
-- time when nothing changed on disk; never modify it.
--
-- `claim_new` (IMAP SELECT, read-write): the messages of `new/` this call
-- lists for the first time are moved to `cur/` before anyone sees them
-- (RFC 3501 §2.3.2: \Recent for one session only); they are returned as
-- a set of UIDs with their count. Messages of `new/` an earlier snapshot
-- already holds stay there (`nnew`): the caller moves them itself.
-- @tparam[opt] boolean claim_new
-- @return snapshot (and with `claim_new`: set of moved UIDs or nil, count),
-- or nil, err
function methods:snapshot(claim_new)
  local t = now()
  local sn, sc, su = stamps(self.dir)
  local s = self.snap
  if s and s.trusted and s.sn == sn and s.sc == sc and s.su == su then return s, nil, 0 end
  if su ~= self.su then
    local ul = maildir.read_uidlist(self.dir)
    self.su = su
    self.umap_recs = false
    if ul then self.validity, self.nextuid, self.umap = ul.validity, ul.nextuid, ul.map
    else self.umap = nil end
  end
  local byname, n, missing, kn, ordered, fresh
  if self.umap then
    byname, n, missing, kn, fresh = list(self, self.umap, self.umap_recs)
    if not byname then return nil, n end
    self.known = kn
  end
  if not self.umap or #missing > 0 then
    -- (no uidlist yet: list once, under the lock)
    local fresh0 = fresh
    byname, n, kn, ordered, sn, sc, su, t, fresh = number(self)
    if not byname then return nil, n end
    self.known, self.su = kn, su
    -- records the first listing made are known now, yet still unpublished
    for i = 1, fresh0 and #fresh0 or 0 do
      local r = fresh0[i]
      if byname[r.name] == r and r.new then fresh[#fresh + 1] = r end
    end
  end
  local reuse = s and s.validity == self.validity and s.nextuid == self.nextuid and #s.list == n
  if reuse then
    for name, r in pairs(byname) do
      if s.byname[name] ~= r then reuse = false; break end
    end
  end
  if not reuse then
    s = build(self, byname, n, ordered)
    if not s then
      byname, n, kn, ordered, sn, sc, su, t, fresh = number(self, true)
      if not byname then return nil, n end
      self.known, self.su = kn, su
      s = assert(build(self, byname, n, ordered))
    end
  end
  local recent, moved
  if claim_new and not reuse and #fresh > 0 then recent, moved = claim(self, fresh, s) end
  s.sn, s.sc, s.su = sn, sc, su
  s.trusted = trusted(sn, t) and trusted(sc, t)
  self.snap = s
  return s, recent, moved or 0
end

--- The current record of a message (after its file moved), or nil.
function methods:current(name)
  local s = self:snapshot()
  return s and s.byname[name]
end

-- Runs op(self, r, x) on the record, once more on its current record if
-- the file moved (ENOENT).
local function on_file(self, r, op, x)
  local a, b, errno = op(self, r, x)
  if a == nil and errno == ENOENT then
    self.snap = nil
    local cur = self:current(r.name)
    if not cur then return nil, "no such message" end
    a, b = op(self, cur, x)
  end
  return a, b
end

local function rename_to(self, m, letters)
  local file = m.name .. ":2," .. letters
  if file == m.file and not m.new then return m end
  local path = self.cur .. file
  -- never over another file (two copies of one unique name): refuse
  local ok, err, errno = fs.rename(m.path, path, true)
  if not ok then return nil, err, errno end
  local nr = { uid = m.uid, name = m.name, file = file, path = path, flags = letters,
               new = false, size = m.size, vsize = m.vsize }
  self.known.cur[file] = nr
  return nr
end

--- Renames a message to carry `letters` (Maildir flags, sorted) in `cur/`.
-- @tparam table r a record of a snapshot
-- @tparam string letters e.g. "RS"
-- @return the new record, or nil, err
function methods:set_flags(r, letters)
  return on_file(self, r, rename_to, letters)
end

local function open_rb(_, m) return io.open(m.path, "rb") end

--- Opens a message's file ("rb").
-- @return a Lua file handle, or nil, err
function methods:open(r)
  return on_file(self, r, open_rb)
end

local function read_head(_, m, chunk) return fs.read_head(m.path, chunk) end

--- The header block of a message: its bytes up to and including the
-- first blank line (the whole message when it has none), as stored.
-- One open and, for headers under `chunk` bytes, one read.
-- @tparam table r a record
-- @tparam[opt] number chunk bytes per read (4096)
-- @return string, or nil, err
function methods:read_head(r, chunk)
  return on_file(self, r, read_head, chunk or 4096)
end

local function existing(_, m)
  if fs.stat(m.path) then return m.path end
  return nil, "no such message", ENOENT
end

--- The current path of a message, or nil, err.
function methods:path(r)
  return on_file(self, r, existing)
end

local function unlink(_, m) return fs.unlink(m.path) end

--- Removes a message's file.
-- @return true, or nil, err
function methods:remove(r)
  return on_file(self, r, unlink)
end

return M
