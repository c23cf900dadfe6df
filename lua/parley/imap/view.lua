--- A session's view of one Maildir mailbox (the IMAP "selected state").
--
-- The view keeps the message list the client knows — sequence number =
-- array index, UIDs ascending (RFC 3501 §2.3.1) — and brings it up to date
-- with the disk at the moments the protocol allows (`sync`): new messages
-- become `* n EXISTS` / `* n RECENT`, removed ones `* n EXPUNGE` (only when
-- the command in progress allows it, RFC 3501 §7.4.1), flags changed by
-- another session `* n FETCH (FLAGS ...)`.
--
-- The messages come from the Maildir's index (`parley.mail.index`): one
-- snapshot shared by every session of the process, checked against the
-- disk (three stats) at each sync and listed again only when something
-- changed. A view shares the snapshot's array until it must differ (its
-- own flag changes, \Recent, expunges not yet announced) and then keeps
-- a copy; records are never changed in place, a view changes private
-- copies. Sessions in one process also share a generation counter per
-- Maildir (`changed(dir)`), bumped by every change a session or an
-- in-process SMTP delivery makes, plus a condition that wakes IDLE
-- sessions at once.
--
-- Flags: IMAP `\Seen \Answered \Flagged \Deleted \Draft` are the Maildir
-- letters `S R F T D`; `\Recent` is per session: messages that were in
-- `new/` when this session first saw them (a read-write SELECT moves them
-- to `cur/`, as Dovecot does, so the next session does not see them as
-- recent), kept as a set of UIDs (`is_recent`).
--
-- Keywords are Dovecot's: the letters `a`-`z` after the system letters,
-- named in the Maildir's `dovecot-keywords` (`maildir` keeps that file);
-- the view holds the names as it last read them (`kw`) and announces new
-- ones with `* FLAGS` and `PERMANENTFLAGS` at the next sync.
-- @module parley.imap.view
local core = require "parley.core"
local index = require "parley.mail.index"
local maildir = require "parley.mail.maildir"

local find = string.find

local M = {}

local TO_LETTER = { ["\\SEEN"] = "S", ["\\ANSWERED"] = "R", ["\\FLAGGED"] = "F",
                    ["\\DELETED"] = "T", ["\\DRAFT"] = "D" }
local FROM_LETTER = { S = "\\Seen", R = "\\Answered", F = "\\Flagged", T = "\\Deleted", D = "\\Draft" }
-- the order FLAGS lists them in
local ORDER = { "R", "F", "T", "S", "D" }
M.TO_LETTER, M.FROM_LETTER = TO_LETTER, FROM_LETTER
local SYSTEM = "\\Answered \\Flagged \\Deleted \\Seen \\Draft"

--- The FLAGS and PERMANENTFLAGS lists of a mailbox with keywords `kw`
-- (`maildir` mailbox:keywords()): the system flags, the keywords, and
-- `\*` (new keywords can be made) while fewer than 26 are named.
-- @treturn string "(\\Answered ... Junk)"
-- @treturn string "(\\Answered ... Junk \\*)"
function M.flag_lists(kw)
  local t = { SYSTEM }
  for i = 1, 26 do
    if kw and kw.names[i] then t[#t + 1] = kw.names[i] end
  end
  local flags = "(" .. table.concat(t, " ") .. ")"
  if not kw or kw.count < 26 then t[#t + 1] = "\\*" end
  return flags, "(" .. table.concat(t, " ") .. ")"
end

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

-- A view's private copy of a record (the index's records are shared by
-- every session of the process and never change).
local function own(m)
  local c = {}
  for k, v in pairs(m) do c[k] = v end
  return c
end

--- IMAP flag atoms for a Maildir flag string (and \Recent): the system
-- flags, then the keywords `kw` names (a letter it does not name is left
-- out).
-- @treturn table array of flag atoms
function M.imap_flags(letters, recent, kw)
  local t = {}
  for i = 1, 5 do
    local c = ORDER[i]
    if find(letters, c, 1, true) then t[#t + 1] = FROM_LETTER[c] end
  end
  if kw and find(letters, "%l") then
    for c in letters:gmatch("%l") do
      local name = kw.names[c:byte() - 96]
      if name then t[#t + 1] = name end
    end
  end
  if recent then t[#t + 1] = "\\Recent" end
  return t
end

--- Maildir letters for the system flags of a list of IMAP flags, and the
-- keywords in it (an array, or nil). \Recent is left out (no client sets
-- it); nil, err for another flag starting with "\".
function M.letters(list)
  local out, keywords = {}, nil
  for _, f in ipairs(list) do
    local u = f:upper()
    local l = TO_LETTER[u]
    if l then out[#out + 1] = l
    elseif u ~= "\\RECENT" then
      if f:sub(1, 1) == "\\" then return nil, "unknown system flag " .. f end
      keywords = keywords or {}
      keywords[#keywords + 1] = f
    end
  end
  table.sort(out)
  return table.concat(out), keywords
end

--- Maildir letters for a list of IMAP flags in mailbox `mb`, keywords
-- included: names it does not know yet are added to its
-- `dovecot-keywords` unless `lookup` (then they are left out).
-- @return letters, or nil, err ("too many keywords", "unknown system flag")
function M.mailbox_letters(mb, list, lookup)
  local sys, keywords = M.letters(list)
  if not sys then return nil, keywords end
  if not keywords then return sys end
  local kl, err = mb:keyword_letters(keywords, lookup)
  if not kl then return nil, err end
  return maildir.flags(sys .. kl)
end

local methods = {}
local mt = { __index = methods, __name = "parley.imap.view" }

--- Opens a view.
-- @tparam table store a parley.mail.maildir store
-- @tparam string user
-- @tparam string folder UTF-8 folder name ("INBOX" for the inbox)
-- @tparam boolean readonly EXAMINE
-- @return view, or nil, err
function M.open(store, user, folder, readonly)
  local mb, err = store:mailbox(user, folder)
  if not mb then return nil, err end
  local idx = index.of(mb)
  -- read-write: what the index lists in new/ for the first time it moves
  -- to cur/ itself, before any other session can see it
  local snap, claimed, nrecent = idx:snapshot(not readonly)
  if not snap then return nil, claimed end
  local self = setmetatable({ mb = mb, idx = idx, dir = mb.dir, store = store, user = user,
    folder = folder, readonly = readonly, snap = snap, msgs = snap.list,
    recent = claimed or {}, kw = mb:keywords() }, mt)
  idx.users = idx.users + 1
  self.shared = share(mb.dir)
  self.shared.users = self.shared.users + 1
  if snap.nnew > 0 then
    -- messages in new/ are \Recent for this session only
    local msgs = not readonly and self:writable()
    local list, recent = snap.list, self.recent
    for i = 1, #list do
      local m = list[i]
      if m.new then
        if msgs then
          -- Dovecot moves new/ to cur/ on SELECT: the message is no longer
          -- "recent" for the next session (RFC 3501 §2.3.2)
          msgs[i] = idx:set_flags(m, m.flags) or m
        end
        recent[m.uid] = true
        nrecent = nrecent + 1
      end
    end
  end
  -- moving to cur/ changed no flags: the snapshot's counts hold
  self.counted = { nrecent, snap.first_unseen, snap.unseen }
  self.uidvalidity, self.uidnext = snap.validity, snap.nextuid
  self.gen = self.shared.gen
  -- the disk was just read: the sync closing the SELECT can skip it (what
  -- changed meanwhile is told at the next command)
  self.fresh = true
  return self
end

--- Releases the view.
function methods:close()
  if self.shared then
    self.shared.users = self.shared.users - 1
    self.idx.users = self.idx.users - 1
    self.shared = nil
  end
end

--- The view's own message array (a copy of the snapshot's the first
-- time), to change.
function methods:writable()
  self.counted = nil
  if self.msgs == self.snap.list then self.msgs = table.move(self.msgs, 1, #self.msgs, 1, {}) end
  return self.msgs
end

--- Number of messages.
function methods:count() return #self.msgs end

--- Counts for SELECT/STATUS: recent, first unseen seq, unseen count.
function methods:counts()
  local c = self.counted
  if c then return c[1], c[2], c[3] end
  local recent, first, unseen = 0, nil, 0
  local rec = self.recent
  for i, m in ipairs(self.msgs) do
    if rec[m.uid] then recent = recent + 1 end
    if not find(m.flags, "S", 1, true) then
      unseen = unseen + 1
      first = first or i
    end
  end
  return recent, first, unseen
end

--- Whether a message is \Recent in this session.
function methods:is_recent(m) return self.recent[m.uid] == true end

--- Opens a message's file ("rb"), wherever it moved: file, or nil, err.
function methods:open_file(m) return self.idx:open(m) end

--- The current path of a message's file, or nil, err.
function methods:path(m) return self.idx:path(m) end

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
  -- ranges in ascending order that do not overlap (the usual `1:*`) need
  -- neither sorting nor removing duplicates
  local out, k, ordered = {}, 0, true
  for _, r in ipairs(ranges) do
    local lo, hi = r[1], r[2]
    if uid then
      lo = self:lower_bound(lo)
      hi = math.min(self:lower_bound(hi + 1) - 1, n)
    elseif n == 0 or hi > n then
      return nil, "no such message"
    end
    if lo <= hi then
      if k > 0 and lo <= out[k] then ordered = false end
      for i = lo, hi do k = k + 1; out[k] = i end
    end
  end
  if not ordered then
    table.sort(out)
    local j = 0
    for i = 1, k do
      if j == 0 or out[i] ~= out[j] then j = j + 1; out[j] = out[i] end
    end
    for i = k, j + 1, -1 do out[i] = nil end
  end
  return out
end

--- Brings the view up to date with the disk.
-- @tparam function send called with each untagged response line
-- @tparam boolean expunge_ok whether `* n EXPUNGE` may be sent now
-- @tparam[opt] boolean force compare with the disk even if this process
-- saw no change
-- @treturn boolean whether anything was sent
function methods:sync(send, expunge_ok, force)
  if self.fresh and not force then self.fresh = nil; return false end
  self.fresh = nil
  local sh = self.shared
  local snap = self.idx:snapshot()
  if not snap then return false end
  local sent_flags = self:sync_keywords(send)
  if snap == self.snap and not force and (not sh or sh.gen == self.gen)
      and not (expunge_ok and self.pending) then
    return sent_flags
  end
  if sh then self.gen = sh.gen end
  if snap.validity ~= self.uidvalidity then
    -- the uidlist was lost and made anew: the client must resync
    send("* BYE [UNAVAILABLE] UIDVALIDITY changed, select the mailbox again\r\n")
    self.broken = true
    return true
  end
  self.uidnext = snap.nextuid
  local old, fresh = self.msgs, snap.list
  self.snap = snap
  if old == fresh then return sent_flags end
  self.counted = nil
  local rec = self.recent
  -- walk both lists (ascending UIDs): gone, flags changed, kept
  local msgs, sent, gone = {}, sent_flags, false
  local j, nf = 1, #fresh
  for i = 1, #old do
    local m = old[i]
    while j <= nf and fresh[j].uid < m.uid do j = j + 1 end
    local f = fresh[j]
    if not f or f.uid ~= m.uid or m.gone then
      if not m.gone then m = own(m); m.gone = true end
      gone = true
    elseif f ~= m and f.path ~= m.path then
      if f.flags ~= m.flags then
        send(core.imap.fetch_response(i, { "FLAGS", M.imap_flags(f.flags, rec[m.uid], self.kw), "UID", m.uid }))
        sent = true
      end
      m = f
    end
    msgs[i] = m
  end
  -- new messages (UIDs above the last one we know)
  local last = #old > 0 and old[#old].uid or 0
  local k, added = #msgs, 0
  for i = j, nf do
    local m = fresh[i]
    if m.uid > last then
      if m.new then
        if not self.readonly then m = self.idx:set_flags(m, m.flags) or m end
        rec[m.uid] = true
      end
      k = k + 1
      msgs[k] = m
      added = added + 1
    end
  end
  self.msgs = msgs
  self.pending = nil
  if gone then
    if expunge_ok then self:drop(send); sent = true
    else self.pending = true end
  end
  if added > 0 then
    local recent = 0
    for i = 1, #self.msgs do if rec[self.msgs[i].uid] then recent = recent + 1 end end
    send("* " .. #self.msgs .. " EXISTS\r\n")
    send("* " .. recent .. " RECENT\r\n")
    sent = true
  end
  return sent
end

--- Sends `* FLAGS` and `* OK [PERMANENTFLAGS]` when the mailbox's
-- keywords changed since the view last looked (RFC 3501 §7.2.6).
-- @treturn boolean whether anything was sent
function methods:sync_keywords(send)
  local kw = self.mb:keywords()
  if kw == self.kw then return false end
  local old = self.kw
  self.kw = kw
  if old and old.count == kw.count then
    local same = true
    for i = 1, 26 do if old.names[i] ~= kw.names[i] then same = false; break end end
    if same then return false end
  end
  local flags, permanent = M.flag_lists(kw)
  send("* FLAGS " .. flags .. "\r\n")
  send("* OK [PERMANENTFLAGS " .. (self.readonly and "()" or permanent) .. "] flags permitted\r\n")
  return true
end

--- Sets a message's flags on disk (Maildir letters) and in the view.
-- @tparam table m a message of `view.msgs`
-- @return the message's new record (replacing `m` in `view.msgs`), or
-- nil, err
--- The message's record as the Maildir has it now (its flags may have
-- been changed by another session or program since this view last
-- synced), with this view's UID and sequence; `m` itself when unchanged.
function methods:current(m)
  local cur = self.idx:current(m.name)
  if not cur or cur.flags == m.flags then return m end
  return cur
end

function methods:set_flags(m, letters)
  if letters == m.flags then return m end
  local i = self:seq_of(m.uid)
  local nr, err = self.idx:set_flags(m, letters)
  if not nr then return nil, err end
  if i then self:writable()[i] = nr end
  M.changed(self.dir)
  self.gen = self.shared and self.shared.gen or self.gen
  return nr
end

--- Marks message `i` gone from the disk (EXPUNGE or MOVE); `drop` takes
-- it out of the view.
function methods:mark_gone(i)
  local msgs = self:writable()
  local m = own(msgs[i])
  m.gone = true
  msgs[i] = m
end

--- Removes a message's file (wherever it moved).
-- @return true, or nil, err
function methods:remove(m) return self.idx:remove(m) end

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
  for i = #msgs, 1, -1 do
    local m = msgs[i]
    if find(m.flags, "T", 1, true) and (not set or set[i]) and not m.gone then
      if self.idx:remove(m) or not self.idx:current(m.name) then self:mark_gone(i) end
    end
  end
  return self:drop(send)
end

--- Takes the messages marked `gone` out of the view, sending
-- `* n EXPUNGE` for each (highest first, so every number is right when
-- sent). @return array of their UIDs
function methods:drop(send, uids)
  uids = uids or {}
  local msgs = self.msgs
  local keep, any = {}, false
  for i = #msgs, 1, -1 do
    if msgs[i].gone then
      if send then send("* " .. i .. " EXPUNGE\r\n") end
      table.insert(uids, 1, msgs[i].uid)
      any = true
    end
  end
  if any then
    for i = 1, #msgs do if not msgs[i].gone then keep[#keep + 1] = msgs[i] end end
    self.msgs = keep
    M.changed(self.dir)
  end
  self.gen = self.shared and self.shared.gen or self.gen
  return uids
end

return M
