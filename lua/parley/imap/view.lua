--- A session's view of one Maildir mailbox (the IMAP "selected state").
--
-- The view keeps the message list the client knows — sequence number =
-- array index, UIDs ascending (RFC 3501 §2.3.1) — and brings it up to date
-- with the disk at the moments the protocol allows (`sync`): new messages
-- become `* n EXISTS` / `* n RECENT`, removed ones `* n EXPUNGE` (only when
-- the command in progress allows it, RFC 3501 §7.4.1), flags changed by
-- another session `* n FETCH (FLAGS ...)`.
--
-- Cheap when nothing changed: one stat of `new/` and one of `cur/`; the
-- directory mtimes change on every delivery, flag change (a rename in
-- `cur/`) and removal. A stamp taken less than two seconds after the last
-- change is not trusted (timestamps are coarse; a change in the same tick
-- would be missed), so a busy mailbox is rescanned until it settles.
-- Sessions in one process also share a generation counter per Maildir
-- (`changed(dir)`), bumped by every change a session or an in-process
-- SMTP delivery makes, plus a condition that wakes IDLE sessions at once.
--
-- Flags: IMAP `\Seen \Answered \Flagged \Deleted \Draft` are the Maildir
-- letters `S R F T D`; `\Recent` is per session: messages that were in
-- `new/` when this session first saw them (a read-write SELECT moves them
-- to `cur/`, as Dovecot does, so the next session does not see them as
-- recent).
-- @module parley.imap.view
local core = require "parley.core"
local fs = core.fs

local M = {}

local TO_LETTER = { ["\\SEEN"] = "S", ["\\ANSWERED"] = "R", ["\\FLAGGED"] = "F",
                    ["\\DELETED"] = "T", ["\\DRAFT"] = "D" }
local FROM_LETTER = { S = "\\Seen", R = "\\Answered", F = "\\Flagged", T = "\\Deleted", D = "\\Draft" }
-- the order FLAGS lists them in
local ORDER = { "R", "F", "T", "S", "D" }
M.TO_LETTER, M.FROM_LETTER = TO_LETTER, FROM_LETTER
M.FLAGS = "(\\Answered \\Flagged \\Deleted \\Seen \\Draft)"
M.PERMANENTFLAGS = "(\\Answered \\Flagged \\Deleted \\Seen \\Draft)"

-- Per-process sharing: dir -> { gen = n, cond = parley.cond }
local shared = {}

local function share(dir)
  local s = shared[dir]
  if not s then
    s = { gen = 0, cond = core.cond(), users = 0 }
    shared[dir] = s
  end
  return s
end

--- Tells the sessions of this process that a Maildir changed (wakes IDLE).
-- @tparam string dir the Maildir path
function M.changed(dir)
  local s = shared[dir]
  if s then
    s.gen = s.gen + 1
    s.cond:broadcast()
  end
end

--- The condition IDLE sessions on `dir` wait on.
function M.cond(dir) return share(dir).cond end

--- IMAP flag atoms for a Maildir flag string (and \Recent).
-- @treturn table array of flag atoms
function M.imap_flags(letters, recent)
  local t = {}
  for i = 1, 5 do
    local c = ORDER[i]
    if letters:find(c, 1, true) then t[#t + 1] = FROM_LETTER[c] end
  end
  if recent then t[#t + 1] = "\\Recent" end
  return t
end

--- Maildir letters for a list of IMAP flags; unknown flags (keywords)
-- are returned in the second value (they cannot be stored permanently).
function M.letters(list)
  local out, other = {}, nil
  for _, f in ipairs(list) do
    local l = TO_LETTER[f:upper()]
    if l then out[#out + 1] = l
    elseif f:upper() ~= "\\RECENT" then other = other or {}; other[#other + 1] = f end
  end
  table.sort(out)
  return table.concat(out), other
end

local function dir_stamp(dir)
  local a = fs.stat(dir .. "/new")
  local b = fs.stat(dir .. "/cur")
  local ma, mb = a and a.mtime or 0, b and b.mtime or 0
  return ma, mb
end

local methods = {}
local mt = { __index = methods, __name = "parley.imap.view" }

-- The current messages on disk with UIDs: array sorted by UID, and the
-- uidvalidity and uidnext. One directory scan (done by `mb:uids`, under
-- the uidlist lock).
local function load(mb)
  local map, validity, nextuid, scanned = mb:uids()
  if not map then return nil, validity end
  local list = table.move(scanned, 1, #scanned, 1, {})   -- each has its .uid
  table.sort(list, function(a, b) return a.uid < b.uid end)
  return list, validity, nextuid
end

--- Opens a view.
-- @tparam table store a parley.mail.maildir store
-- @tparam string user
-- @tparam string folder UTF-8 folder name ("INBOX" for the inbox)
-- @tparam boolean readonly EXAMINE
-- @return view, or nil, err
function M.open(store, user, folder, readonly)
  local mb, err = store:mailbox(user, folder)
  if not mb then return nil, err end
  local self = setmetatable({ mb = mb, dir = mb.dir, store = store, user = user,
    folder = folder, readonly = readonly, msgs = {}, byname = {} }, mt)
  self.shared = share(mb.dir)
  self.shared.users = self.shared.users + 1
  local now = fs.time()
  local sa, sb = dir_stamp(self.dir)
  local list, validity, nextuid = load(mb)
  if not list then return nil, validity end
  self.uidvalidity, self.uidnext = validity, nextuid
  local moved = false
  for i = 1, #list do
    local m = list[i]
    m.recent = m.new     -- the scan's record serves as the view's
    self.msgs[i] = m
    self.byname[m.name] = m
    if m.new and not readonly then
      -- Dovecot moves new/ to cur/ on SELECT: the message is no longer
      -- "recent" for the next session (RFC 3501 §2.3.2)
      if mb:set_flags(m.name, m.flags) then moved = true end
    end
  end
  if moved then sa, sb = dir_stamp(self.dir) end
  self:stamp(sa, sb, now)
  self.gen = self.shared.gen
  return self
end

function methods:stamp(sa, sb, now)
  -- a change within 2 s of the stamp may share its timestamp: rescan
  if now - sa < 2 or now - sb < 2 then self.sa, self.sb = nil, nil
  else self.sa, self.sb = sa, sb end
end

--- Releases the view.
function methods:close()
  if self.shared then
    self.shared.users = self.shared.users - 1
    self.shared = nil
  end
end

--- Number of messages.
function methods:count() return #self.msgs end

--- Counts for SELECT/STATUS: recent, first unseen seq, unseen count.
function methods:counts()
  local recent, first, unseen = 0, nil, 0
  for i, m in ipairs(self.msgs) do
    if m.recent then recent = recent + 1 end
    if not m.flags:find("S", 1, true) then
      unseen = unseen + 1
      first = first or i
    end
  end
  return recent, first, unseen
end

--- Sequence number of a UID (binary search), or nil.
function methods:seq_of(uid)
  local msgs = self.msgs
  local lo, hi = 1, #msgs
  while lo <= hi do
    local mid = (lo + hi) // 2
    local u = msgs[mid].uid
    if u == uid then return mid
    elseif u < uid then lo = mid + 1 else hi = mid - 1 end
  end
  return nil
end

--- First index with uid >= u.
function methods:lower_bound(u)
  local msgs = self.msgs
  local lo, hi = 1, #msgs + 1
  while lo < hi do
    local mid = (lo + hi) // 2
    if msgs[mid].uid < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

--- Resolves a sequence set (string) to an ascending array of sequence
-- numbers. `uid`: the set holds UIDs (`*` = the highest UID; a range
-- matching nothing is not an error, RFC 3501 §6.4.8).
-- @return array, or nil, reason
function methods:resolve(set, uid)
  local n = #self.msgs
  local maxv = uid and (n > 0 and self.msgs[n].uid or 0) or n
  local ranges, err = core.imap.parse_sequence_set(set, math.max(maxv, 1))
  if not ranges then return nil, err end
  local seen, out = {}, {}
  for _, r in ipairs(ranges) do
    local lo, hi = r[1], r[2]
    if uid then
      local i = self:lower_bound(lo)
      while i <= n and self.msgs[i].uid <= hi do
        if not seen[i] then seen[i] = true; out[#out + 1] = i end
        i = i + 1
      end
    else
      if n == 0 or hi > n then return nil, "no such message" end
      for i = lo, hi do
        if not seen[i] then seen[i] = true; out[#out + 1] = i end
      end
    end
  end
  table.sort(out)
  return out
end

--- Brings the view up to date with the disk.
-- @tparam function send called with each untagged response line
-- @tparam boolean expunge_ok whether `* n EXPUNGE` may be sent now
-- @tparam[opt] boolean force rescan even if the stamps say nothing changed
-- @treturn boolean whether anything was sent
function methods:sync(send, expunge_ok, force)
  local now = fs.time()
  local sa, sb = dir_stamp(self.dir)
  local sh = self.shared
  if not force and self.sa == sa and self.sb == sb and (not sh or sh.gen == self.gen)
      and not (expunge_ok and self.pending) then
    return false
  end
  if sh then self.gen = sh.gen end
  local list, validity, nextuid = load(self.mb)
  if not list then return false end
  if validity ~= self.uidvalidity then
    -- the uidlist was lost and made anew: the client must resync
    send("* BYE [UNAVAILABLE] UIDVALIDITY changed, select the mailbox again\r\n")
    self.broken = true
    return true
  end
  self.uidnext = nextuid
  self:stamp(sa, sb, now)
  local fresh = {}
  for i = 1, #list do fresh[list[i].name] = list[i] end
  local msgs, sent = self.msgs, false
  -- removed messages
  local gone = false
  for i = #msgs, 1, -1 do
    if not fresh[msgs[i].name] then
      msgs[i].gone = true
      gone = true
    end
  end
  self.pending = nil
  if gone then
    if expunge_ok then
      local keep = {}
      for i = #msgs, 1, -1 do
        if msgs[i].gone then
          send("* " .. i .. " EXPUNGE\r\n")
          self.byname[msgs[i].name] = nil
          sent = true
        end
      end
      for i = 1, #msgs do
        if not msgs[i].gone then keep[#keep + 1] = msgs[i] end
      end
      self.msgs, msgs = keep, keep
    else
      self.pending = true
    end
  end
  -- flags changed elsewhere
  for i = 1, #msgs do
    local m = msgs[i]
    local f = fresh[m.name]
    if f and f.flags ~= m.flags then
      m.flags = f.flags
      local fl = M.imap_flags(m.flags, m.recent)
      send(core.imap.fetch_response(i, { "FLAGS", fl, "UID", m.uid }))
      sent = true
    end
  end
  -- new messages (UIDs above the last one we know)
  local last = #msgs > 0 and msgs[#msgs].uid or 0
  local added, recent = 0, 0
  for i = 1, #list do
    local m = list[i]
    if m.uid > last and not self.byname[m.name] then
      local rec = { uid = m.uid, name = m.name, flags = m.flags, size = m.size,
                    vsize = m.vsize, recent = m.new }
      msgs[#msgs + 1] = rec
      self.byname[m.name] = rec
      added = added + 1
      if m.new and not self.readonly then self.mb:set_flags(m.name, m.flags) end
    end
  end
  if added > 0 then
    for i = 1, #msgs do if msgs[i].recent then recent = recent + 1 end end
    send("* " .. #msgs .. " EXISTS\r\n")
    send("* " .. recent .. " RECENT\r\n")
    sent = true
  end
  return sent
end

--- Sets a message's flags on disk (Maildir letters) and in the view.
-- @return true, or nil, err
function methods:set_flags(m, letters)
  if letters == m.flags then return true end
  local ok, err = self.mb:set_flags(m.name, letters)
  if not ok then return nil, err end
  m.flags = letters
  M.changed(self.dir)
  self.gen = self.shared and self.shared.gen or self.gen
  return true
end

--- Removes messages marked `\Deleted` (those among `only`, an array of
-- sequence numbers, when given) and sends `* n EXPUNGE` for each.
-- @return array of expunged UIDs
function methods:expunge(send, only)
  local msgs = self.msgs
  local set
  if only then
    set = {}
    for _, i in ipairs(only) do set[i] = true end
  end
  local uids = {}
  for i = #msgs, 1, -1 do
    local m = msgs[i]
    if m.flags:find("T", 1, true) and (not set or set[i]) then
      local ok = self.mb:remove(m.name)
      if ok or not self.mb:path(m.name) then
        m.gone = true
      end
    end
  end
  return self:drop(send, uids)
end

--- Takes the messages marked `gone` out of the view, sending
-- `* n EXPUNGE` for each (highest first, so every number is right when
-- sent). @return array of their UIDs
function methods:drop(send, uids)
  uids = uids or {}
  local msgs = self.msgs
  local keep = {}
  for i = #msgs, 1, -1 do
    if msgs[i].gone then
      if send then send("* " .. i .. " EXPUNGE\r\n") end
      self.byname[msgs[i].name] = nil
      table.insert(uids, 1, msgs[i].uid)
    end
  end
  for i = 1, #msgs do if not msgs[i].gone then keep[#keep + 1] = msgs[i] end end
  self.msgs = keep
  if #uids > 0 then M.changed(self.dir) end
  self.gen = self.shared and self.shared.gen or self.gen
  return uids
end

return M
