--- Mailbox-level work for the IMAP server: names (modified UTF-7 on the
-- wire, UTF-8 in the store), LIST/LSUB with CHILDREN and SPECIAL-USE
-- attributes, subscriptions, STATUS, COPY/MOVE and RENAME INBOX.
--
-- The hierarchy delimiter is "." (Maildir++, as Dovecot's maildir
-- layout). Subscriptions are kept in `<maildir>/subscriptions`, one
-- mailbox name a line, a format Dovecot also reads.
-- @module parley.imap.mailbox
local core = require "parley.core"
local V = require "parley.imap.view"
local index = require "parley.mail.index"

local imap = core.imap
local fs = core.fs
local find = string.find

local M = {}

local QOPT = { atom = false }

--- A wire mailbox name (modified UTF-7) -> the store's UTF-8 name
-- ("INBOX" in any case is the inbox), or nil, err.
function M.name(raw)
  if type(raw) ~= "string" or raw == "" then return nil, "invalid mailbox name" end
  if raw:upper() == "INBOX" then return "INBOX" end
  if #raw > 512 or raw:find("[%z%c/]") or raw:find("..", 1, true) or raw:sub(1, 1) == "."
      or raw:sub(-1) == "." or raw:find("[*%%]") then
    return nil, "invalid mailbox name"
  end
  local name = imap.utf7_decode(raw)
  if not name then return nil, "invalid mailbox name (modified UTF-7 expected)" end
  if name:upper():sub(1, 6) == "INBOX." then name = "INBOX" .. name:sub(6) end
  return name
end

--- The wire name of a store name.
function M.wire(name)
  return imap.utf7_encode(name) or name
end

--- Whether a mailbox exists (the inbox always does).
function M.exists(s, name)
  if name == "INBOX" then return true end
  local dir = s.store:path(s.user, name)
  local st = dir and fs.stat(dir .. "/cur")
  return st ~= nil and st.type == "directory"
end

local SPECIAL = {
  sent = "\\Sent", ["sent items"] = "\\Sent", ["sent messages"] = "\\Sent",
  drafts = "\\Drafts", trash = "\\Trash", ["deleted items"] = "\\Trash",
  ["deleted messages"] = "\\Trash", junk = "\\Junk", spam = "\\Junk",
  archive = "\\Archive", archives = "\\Archive",
}
M.SPECIAL = SPECIAL

-- subscriptions ----------------------------------------------------------

local function subs_path(s)
  return s.store:path(s.user) .. "/subscriptions"
end

local function read_subs(s)
  local list, set = {}, {}
  local fh = io.open(subs_path(s), "rb")
  if fh then
    for line in fh:lines() do
      -- Dovecot 2.3 writes "V\t2" and tab-separated hierarchies
      if line ~= "" and not line:match("^V\t%d") then
        line = line:gsub("\t", ".")
        if not set[line] then set[line] = true; list[#list + 1] = line end
      end
    end
    fh:close()
  end
  return list, set
end

--- Subscribes (on = true) or unsubscribes a mailbox (store name).
function M.subscribe(s, name, on)
  local list, set = read_subs(s)
  local wire = M.wire(name)
  if on == (set[wire] == true) then return true end
  if on then list[#list + 1] = wire
  else
    for i = #list, 1, -1 do if list[i] == wire then table.remove(list, i) end end
  end
  local dir = s.store:path(s.user)
  fs.mkdir(dir, 448)
  local path = subs_path(s)
  local tmp = path .. ".tmp." .. fs.getpid()
  local fh, err = io.open(tmp, "wb")
  if not fh then return nil, "cannot write subscriptions: " .. tostring(err) end
  fh:write(table.concat(list, "\n"), #list > 0 and "\n" or "")
  fh:close()
  local ok, rerr = fs.rename(tmp, path)
  if not ok then fs.unlink(tmp); return nil, rerr end
  return true
end

-- LIST -------------------------------------------------------------------

-- RFC 3501 §6.3.8 wildcards: "*" anything, "%" anything but the delimiter
local function pattern(p)
  local out = {}
  for c in p:gmatch(".") do
    if c == "*" then out[#out + 1] = ".*"
    elseif c == "%" then out[#out + 1] = "[^.]*"
    elseif c:match("%W") then out[#out + 1] = "%" .. c
    else out[#out + 1] = c end
  end
  return "^" .. table.concat(out) .. "$"
end

--- LIST and LSUB (`lsub` true). Replies itself; returns the tagged reply.
function M.list(s, args, lsub)
  local i = 1
  local select_special, select_subscribed = false, false
  if not lsub and args.kinds:sub(1, 1) == "(" then
    -- RFC 5258 selection options as far as RFC 6154 needs them
    for _, opt in ipairs(args[1]) do
      local u = tostring(opt):upper()
      if u == "SPECIAL-USE" then select_special = true
      elseif u == "SUBSCRIBED" then select_subscribed = true
      elseif u ~= "RECURSIVEMATCH" and u ~= "REMOTE" then return "BAD", "unknown selection option" end
    end
    i = 2
  end
  local ref, pat = args[i], args[i + 1]
  local kr, kp = args.kinds:sub(i, i), args.kinds:sub(i + 1, i + 1)
  if ref == nil or pat == nil or kr == "(" or kp == "(" then
    return "BAD", (lsub and "LSUB" or "LIST") .. " reference pattern"
  end
  if args[i + 2] ~= nil then
    -- RETURN (...) options: CHILDREN and SPECIAL-USE are always returned
    if tostring(args[i + 2]):upper() ~= "RETURN" or args.kinds:sub(i + 3, i + 3) ~= "(" then
      return "BAD", "unexpected arguments"
    end
  end
  local cmdname = lsub and "LSUB" or "LIST"
  if pat == "" and not lsub then
    s:send('* LIST (\\Noselect) "." ""\r\n')
    return "OK", "LIST completed"
  end
  local full = ref .. pat
  if full:upper():sub(1, 5) == "INBOX" then full = "INBOX" .. full:sub(6) end
  local lp = pattern(full)
  -- every mailbox (wire names), parents that do not exist included
  local folders, err = s.store:folders(s.user)
  if not folders then return "NO", tostring(err) end
  local exists, names = { INBOX = true }, { "INBOX" }
  for _, f in ipairs(folders) do
    local w = M.wire(f)
    if not exists[w] then exists[w] = true; names[#names + 1] = w end
  end
  local all = {}
  for _, n in ipairs(names) do all[n] = true end
  for _, n in ipairs(names) do
    local p = n
    while true do
      p = p:match("^(.*)%.[^.]*$")
      if not p or all[p] then break end
      all[p] = true
      names[#names + 1] = p
    end
  end
  local haschildren = {}
  for n in pairs(all) do
    local p = n:match("^(.*)%.[^.]*$")
    if p then haschildren[p] = true end
  end
  local subs, subset = {}, {}
  if lsub or select_subscribed then subs, subset = read_subs(s) end
  local candidates = names
  if lsub then candidates = subs end
  table.sort(candidates, function(a, b)
    if a == "INBOX" then return b ~= "INBOX" end
    if b == "INBOX" then return false end
    return a < b
  end)
  for _, n in ipairs(candidates) do
    if n:match(lp) then
      local flags = {}
      if not exists[n] then flags[#flags + 1] = "\\Noselect" end
      if not lsub then
        flags[#flags + 1] = haschildren[n] and "\\HasChildren" or "\\HasNoChildren"
      end
      if select_subscribed and subset[n] then flags[#flags + 1] = "\\Subscribed" end
      local special = exists[n] and not n:find(".", 1, true) and SPECIAL[n:lower()]
      if special and not lsub then flags[#flags + 1] = special end
      if not select_special or special then
        if not (select_subscribed and not subset[n]) then
          s:send("* " .. cmdname .. " (" .. table.concat(flags, " ") .. ') "." ' .. (imap.quote(n, QOPT)) .. "\r\n")
        end
      end
    end
  end
  return "OK", cmdname .. " completed"
end

-- STATUS -----------------------------------------------------------------

--- MESSAGES, RECENT, UIDNEXT, UIDVALIDITY, UNSEEN of a mailbox.
function M.status(s, name)
  local v = s.view
  if v and v.folder == name then
    local recent, _, unseen = v:counts()
    return { MESSAGES = v:count(), RECENT = recent, UIDNEXT = v.uidnext,
             UIDVALIDITY = v.uidvalidity, UNSEEN = unseen }
  end
  local mb, err = s.store:mailbox(s.user, name)
  if not mb then return nil, err end
  local snap
  snap, err = index.of(mb):snapshot()
  if not snap then return nil, err end
  return { MESSAGES = #snap.list, RECENT = snap.nnew, UIDNEXT = snap.nextuid,
           UIDVALIDITY = snap.validity, UNSEEN = snap.unseen }
end

-- COPY / MOVE ------------------------------------------------------------

-- The Maildir letters of `letters` (the source view's) in `target`:
-- each mailbox numbers its keywords itself (its own dovecot-keywords).
local function remap(view, target, letters)
  if not find(letters, "%l") then return letters end
  if view.dir == target.dir then return letters end
  local list = V.imap_flags(letters, false, view.mb:keywords())
  return V.mailbox_letters(target, list)
end

--- Copies (or moves) messages of the selected mailbox into `name`.
-- COPY writes each message anew (a store delivery, fsync'ed); MOVE renames
-- the file into the target's `cur/` (atomic, same file system) and marks
-- it gone in the view. Keywords keep their names (letters are the target
-- mailbox's). @return {validity=, src={uids}, dst={uids}}, or nil, err
-- (code "LIMIT" when the target cannot name one more keyword)
function M.copy(s, seqs, name, move)
  local view = s.view
  local target, err = s.store:mailbox(s.user, name)
  if not target then return nil, err end
  if not target:exists() then
    local _, e = target:uids()   -- makes the Maildir
    if e and not target:exists() then return nil, e end
  end
  -- every keyword the messages carry gets its letter in the target first:
  -- a full target refuses the whole command before anything is copied
  local flags = {}
  for _, i in ipairs(seqs) do
    local m = view.msgs[i]
    if not m.gone and not flags[m.flags] then
      local l, kerr = remap(view, target, m.flags)
      if not l then return nil, "cannot copy keywords: " .. tostring(kerr), "LIMIT" end
      flags[m.flags] = l
    end
  end
  local names, src = {}, {}
  local failed
  for _, i in ipairs(seqs) do
    local m = view.msgs[i]
    if not m.gone then
      if move and view.dir ~= target.dir then
        local path = view:path(m)
        local ok, rerr
        if path then
          ok, rerr = fs.rename(path, target.dir .. "/cur/" .. m.name .. ":2," .. flags[m.flags], true)
        end
        if ok then
          view:mark_gone(i)
          names[#names + 1] = m.name
          src[#src + 1] = m.uid
        else
          failed = rerr or "message vanished"
        end
      else
        local fh = view:open_file(m)
        local raw = fh and fh:read("a")
        if fh then fh:close() end
        if raw then
          local path0 = view:path(m)
          local st = path0 and fs.stat(path0)
          local newname, path = s.store:deliver(s.user, raw, name, flags[m.flags])
          if newname then
            if st then fs.utime(path, st.mtime, st.mtime) end
            names[#names + 1] = newname
            src[#src + 1] = m.uid
            if move then
              view:remove(m)
              view:mark_gone(i)
            end
          else
            failed = path
          end
        else
          failed = "message vanished"
        end
      end
    end
  end
  if failed and #names == 0 then return nil, "cannot copy: " .. tostring(failed) end
  local snap
  snap, err = index.of(target):snapshot()
  if not snap then return nil, err end
  local dst = {}
  for k, n in ipairs(names) do dst[k] = snap.byname[n] and snap.byname[n].uid or 0 end
  V.changed(target.dir)
  if move then V.changed(view.dir) end
  return { validity = snap.validity, src = src, dst = dst }
end

--- RENAME INBOX: moves every INBOX message into a new mailbox (RFC 3501
-- §6.3.5), leaving INBOX empty.
function M.rename_inbox(s, to)
  if M.exists(s, to) then return "NO", "mailbox exists", "ALREADYEXISTS" end
  local ok, err = s.store:create_folder(s.user, to)
  if not ok then return "NO", "cannot create: " .. tostring(err) end
  local inbox = s.store:mailbox(s.user)
  local target = s.store:mailbox(s.user, to)
  local msgs = inbox:scan() or {}
  for _, m in ipairs(msgs) do
    fs.rename(m.path, target.dir .. "/cur/" .. m.name .. ":2," .. m.flags, true)
  end
  V.changed(inbox.dir)
  return "OK", "RENAME completed"
end

return M
