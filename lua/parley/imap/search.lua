--- SEARCH for the IMAP server (RFC 3501 §6.4.4): every search key,
-- CHARSET US-ASCII and UTF-8.
--
-- The key list is compiled once into a tree of Lua closures, then run over
-- the messages. Keys on flags, UIDs, sequence numbers and sizes never read
-- a message; header keys read the header block only; BODY and TEXT read
-- the whole message. String matches are case-insensitive substring matches
-- (ASCII case folding) against the raw text and against header values with
-- RFC 2047 encoded words decoded, and against text parts with their
-- transfer encoding undone and converted to UTF-8.
-- @module parley.imap.search
local message = require "parley.mail.message"
local F = require "parley.imap.fetch"

local M = {}

local MONTHS = { JAN = 1, FEB = 2, MAR = 3, APR = 4, MAY = 5, JUN = 6, JUL = 7, AUG = 8,
                 SEP = 9, OCT = 10, NOV = 11, DEC = 12 }

-- "1-Feb-1994" -> days since the epoch (RFC 3501 date)
local function parse_day(s)
  if type(s) ~= "string" then return nil end
  local d, mon, y = s:match("^(%d%d?)%-(%a%a%a)%-(%d%d%d%d)$")
  mon = mon and MONTHS[mon:upper()]
  if not mon then return nil end
  d, y = tonumber(d), tonumber(y)
  if d < 1 or d > 31 then return nil end
  -- days from civil (Howard Hinnant's algorithm), UTC
  local yy = mon <= 2 and y - 1 or y
  local era = yy // 400
  local yoe = yy - era * 400
  local mp = (mon + 9) % 12
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end
M.parse_day = parse_day

local function lower(s) return s:lower() end

-- the decoded (UTF-8) and raw text of the header fields named `name`
local function header_values(ctx, name)
  local p = ctx.head_parsed
  if not p then
    local head = ctx.head()
    p = message.parse(head, { bodies = false })
    ctx.head_parsed = p
  end
  local vals = {}
  for _, h in ipairs(p.headers) do
    if h.name:lower() == name then
      vals[#vals + 1] = h.value or ""
      if h.decoded and h.decoded ~= h.value then vals[#vals + 1] = h.decoded end
    end
  end
  return vals
end

local function contains(hay, needle)
  return hay:lower():find(needle, 1, true) ~= nil
end

local function body_texts(ctx)
  if ctx.texts then return ctx.texts end
  local raw = ctx.raw()
  local p = ctx.parsed
  if not p then p = message.parse(raw); ctx.parsed = p end
  local texts = { raw:sub(F.head_end(raw) + 1) }
  local function walk(part, depth)
    if depth > 32 then return end
    if part.parts then
      for _, c in ipairs(part.parts) do walk(c, depth + 1) end
    elseif part.message then
      walk(part.message, depth + 1)
    elseif part.type == "text" then
      local ok, t = pcall(part.text, part)
      if ok and type(t) == "string" then texts[#texts + 1] = t end
    end
  end
  walk(p, 0)
  ctx.texts = texts
  return texts
end

local compile

-- one search key starting at args[i]; returns fn(m, ctx), next index
local function key(args, i, view, depth)
  if depth > 64 then return nil, "search nesting too deep" end
  local a, kind = args[i], args.kinds:sub(i, i)
  if a == nil then return nil, "missing search key" end
  if kind == "(" then
    local fn, err = compile(a, 1, view, depth + 1)
    if not fn then return nil, err end
    return fn, i + 1
  end
  if kind ~= "a" then return nil, "search key expected" end
  local k = a:upper()
  local function arg(n)
    local v = args[i + n]
    if v == nil or args.kinds:sub(i + n, i + n) == "(" then return nil end
    return v
  end
  local function flag(letter, want)
    return function(m) return (m.flags:find(letter, 1, true) ~= nil) == want end, i + 1
  end
  if k == "ALL" then return function() return true end, i + 1
  elseif k == "ANSWERED" then return flag("R", true)
  elseif k == "UNANSWERED" then return flag("R", false)
  elseif k == "DELETED" then return flag("T", true)
  elseif k == "UNDELETED" then return flag("T", false)
  elseif k == "DRAFT" then return flag("D", true)
  elseif k == "UNDRAFT" then return flag("D", false)
  elseif k == "FLAGGED" then return flag("F", true)
  elseif k == "UNFLAGGED" then return flag("F", false)
  elseif k == "SEEN" then return flag("S", true)
  elseif k == "UNSEEN" then return flag("S", false)
  elseif k == "RECENT" then return function(m) return view:is_recent(m) end, i + 1
  elseif k == "OLD" then return function(m) return not view:is_recent(m) end, i + 1
  elseif k == "NEW" then
    return function(m) return view:is_recent(m) and not m.flags:find("S", 1, true) end, i + 1
  elseif k == "KEYWORD" or k == "UNKEYWORD" then
    local kw = arg(1)
    if not kw then return nil, k .. " needs a flag" end
    -- the mailbox's keyword letter (a name it never knew: no message has
    -- it); the system flags named as keywords work too
    local letter = require("parley.imap.view").TO_LETTER[kw:upper()]
      or view.kw and view.kw.letter[kw:lower()]
    if letter then return select(1, flag(letter, k == "KEYWORD")), i + 2 end
    return function() return k == "UNKEYWORD" end, i + 2
  elseif k == "LARGER" or k == "SMALLER" then
    local n = tonumber(arg(1) or "")
    if not n or math.type(n) ~= "integer" or n < 0 then return nil, k .. " needs a number" end
    if k == "LARGER" then return function(m) return F.size(view, m) > n end, i + 2 end
    return function(m) return F.size(view, m) < n end, i + 2
  elseif k == "UID" then
    local set = arg(1)
    if not set then return nil, "UID needs a set" end
    local seqs, err = view:resolve(set, true)
    if not seqs then return nil, err end
    local yes = {}
    for _, s in ipairs(seqs) do yes[view.msgs[s].uid] = true end
    return function(m) return yes[m.uid] == true end, i + 2
  elseif k == "BEFORE" or k == "ON" or k == "SINCE" then
    local day = parse_day(arg(1))
    if not day then return nil, k .. " needs a date (1-Feb-1994)" end
    return function(m)
      F.internaldate(view, m)
      local d = math.floor(m.idate) // 86400
      if k == "BEFORE" then return d < day elseif k == "ON" then return d == day end
      return d >= day
    end, i + 2
  elseif k == "SENTBEFORE" or k == "SENTON" or k == "SENTSINCE" then
    local day = parse_day(arg(1))
    if not day then return nil, k .. " needs a date (1-Feb-1994)" end
    return function(m, ctx)
      local v = header_values(ctx, "date")[1]
      local t, zone = message.parse_date(v or "")
      if not t then return false end
      -- the date as written, disregarding time and zone (RFC 3501 §6.4.4)
      local d = (t + (zone or 0) * 60) // 86400
      if k == "SENTBEFORE" then return d < day elseif k == "SENTON" then return d == day end
      return d >= day
    end, i + 2
  elseif k == "BCC" or k == "CC" or k == "FROM" or k == "TO" or k == "SUBJECT" then
    local s = arg(1)
    if not s then return nil, k .. " needs a string" end
    local needle, field = lower(s), k:lower()
    return function(_, ctx)
      for _, v in ipairs(header_values(ctx, field)) do
        if contains(v, needle) then return true end
      end
      return false
    end, i + 2
  elseif k == "HEADER" then
    local f, s = arg(1), arg(2)
    if not f or not s then return nil, "HEADER needs a field name and a string" end
    local needle, field = lower(s), f:lower()
    return function(_, ctx)
      local vals = header_values(ctx, field)
      if needle == "" then return #vals > 0 end
      for _, v in ipairs(vals) do
        if contains(v, needle) then return true end
      end
      return false
    end, i + 3
  elseif k == "BODY" or k == "TEXT" then
    local s = arg(1)
    if not s then return nil, k .. " needs a string" end
    local needle = lower(s)
    return function(_, ctx)
      if k == "TEXT" and contains(ctx.head(), needle) then return true end
      for _, t in ipairs(body_texts(ctx)) do
        if contains(t, needle) then return true end
      end
      if k == "TEXT" then
        for _, h in ipairs(ctx.head_parsed and ctx.head_parsed.headers or {}) do
          if h.decoded and contains(h.decoded, needle) then return true end
        end
      end
      return false
    end, i + 2
  elseif k == "NOT" then
    local fn, nxt = key(args, i + 1, view, depth + 1)
    if not fn then return nil, nxt end
    return function(m, ctx) return not fn(m, ctx) end, nxt
  elseif k == "OR" then
    local f1, n1 = key(args, i + 1, view, depth + 1)
    if not f1 then return nil, n1 end
    local f2, n2 = key(args, n1, view, depth + 1)
    if not f2 then return nil, n2 end
    return function(m, ctx) return f1(m, ctx) or f2(m, ctx) end, n2
  elseif a:match("^[%d*]") then
    local seqs, err = view:resolve(a, false)
    if not seqs then
      -- a set past the end matches nothing rather than failing the search
      if err == "no such message" then seqs = {} else return nil, err end
    end
    local yes = {}
    for _, s in ipairs(seqs) do yes[s] = true end
    return function(_, _, seq) return yes[seq] == true end, i + 1
  end
  return nil, "unknown search key " .. a
end

-- all keys from args[i] to the end (ANDed)
function compile(args, i, view, depth)
  local fns = {}
  while args[i] ~= nil do
    local fn, nxt = key(args, i, view, depth or 0)
    if not fn then return nil, nxt end
    fns[#fns + 1] = fn
    i = nxt
  end
  if #fns == 0 then return nil, "missing search key" end
  if #fns == 1 then
    local f = fns[1]
    return f
  end
  return function(m, ctx, seq)
    for j = 1, #fns do
      if not fns[j](m, ctx, seq) then return false end
    end
    return true
  end
end

-- single fns get (m, ctx, seq); keep the seq argument flowing through
-- NOT/OR/lists by wrapping: every closure above takes (m, ctx, seq).

--- Runs a search.
-- @tparam table view the selected view
-- @tparam table args the command arguments
-- @tparam number i index of the first search argument (after CHARSET)
-- @return array of sequence numbers, or nil, err, code
function M.run(view, args, i)
  local cs = args[i]
  if cs and args.kinds:sub(i, i) == "a" and cs:upper() == "CHARSET" then
    local name = args[i + 1]
    if not name then return nil, "CHARSET needs a name" end
    local u = name:upper()
    if u ~= "UTF-8" and u ~= "US-ASCII" then
      return nil, "unsupported charset", "BADCHARSET (UTF-8 US-ASCII)"
    end
    i = i + 2
  end
  local fn, err = compile(args, i, view, 0)
  if not fn then return nil, err end
  F.use_cache(view)
  local out = {}
  for seq, m in ipairs(view.msgs) do
    local ctx = {}
    ctx.raw = function()
      if not ctx.rawdata then ctx.rawdata = F.read(view, m) or "" end
      return ctx.rawdata
    end
    ctx.head = function()
      if not ctx.headdata then
        ctx.headdata = ctx.rawdata and ctx.rawdata:sub(1, F.head_end(ctx.rawdata))
          or F.head(view, m) or ""
      end
      return ctx.headdata
    end
    if not m.gone and fn(m, ctx, seq) then out[#out + 1] = seq end
  end
  F.save_cache(view)
  return out
end

return M
