--- FETCH for the IMAP server (RFC 3501 §6.4.5, §7.4.2): message bytes,
-- sections, ENVELOPE and BODYSTRUCTURE written in IMAP syntax.
--
-- Messages stored with bare LF line ends are served with CRLF (sizes then
-- match the `,W=` field of the name, as Dovecot serves them). Only what a
-- FETCH needs is read: FLAGS, UID and RFC822.SIZE come from the name;
-- `BODY.PEEK[HEADER]` and `HEADER.FIELDS` read the head of the file only;
-- anything inside the MIME tree parses the message once per command.
-- @module parley.imap.fetch
local core = require "parley.core"
local message = require "parley.mail.message"
local V = require "parley.imap.view"
local maildir = require "parley.mail.maildir"

local imap = core.imap
local quote = imap.quote
local concat = table.concat
local find, byte, gsub = string.find, string.byte, string.gsub

local M = {}

local QOPT = { atom = false }

local HEAD_CHUNK = 4096

-- CRLF line ends for a message read from disk (plain searches for LF:
-- a pattern test of every byte cost more than reading the file).
local function crlf(s)
  local i = find(s, "\n", 1, true)
  while i do
    if i == 1 or byte(s, i - 1) ~= 13 then return (gsub(s, "\r?\n", "\r\n")) end
    i = find(s, "\n", i + 1, true)
  end
  return s
end
M.crlf = crlf

local function nstring(s)
  if s == nil or s == false then return "NIL" end
  return (quote(s, QOPT))
end

--- Reads a message: the whole of it, or (head_only) its header block
-- (with the blank line). CRLF line ends either way.
-- @return string, or nil, err
function M.read(view, m, head_only)
  local data, err
  if head_only then
    data, err = view.idx:read_head(m, HEAD_CHUNK)
    if not data then return nil, err end
  else
    local fh
    fh, err = view:open_file(m)
    if not fh then return nil, err end
    data = fh:read("a") or ""
    fh:close()
  end
  -- ",W=" equal to ",S=" in the name: no bare LF anywhere (store.deliver)
  if m.size and m.vsize == m.size then return data end
  return crlf(data)
end

--- The header block of a message (CRLF, blank line included), from the
-- header cache when the view has one (`view.hcache`), else from the file
-- (and then added to the cache).
function M.head(view, m)
  local hc = view.hcache
  local h = hc and hc:get(m.name)
  if h then return h end
  h = M.read(view, m, true)
  if h and hc then hc:put(m.name, h) end
  return h
end

--- Loads the header cache of the view's Maildir (once per command).
function M.use_cache(view)
  local hc = view.hcache
  if not hc then
    hc = require("parley.imap.cache").for_dir(view.dir)
    view.hcache = hc
  end
  hc:refresh()
  return hc
end

--- Writes what the command added to the header cache.
function M.save_cache(view)
  if view.hcache then view.hcache:flush(view.snap.byname, #view.snap.list) end
end

--- RFC822.SIZE: the size with CRLF line ends.
function M.size(view, m)
  if m.vsize then return m.vsize end
  if m.size and m.csize then return m.csize end
  local raw = M.read(view, m)
  m.csize = raw and #raw or m.size or 0
  m.vsize = m.csize
  return m.csize
end

--- INTERNALDATE: the file's mtime (as Dovecot), else the delivery time.
function M.internaldate(view, m)
  local t = m.idate
  if not t then
    local path = view:path(m)
    local st = path and core.fs.stat(path)
    t = st and st.mtime or 0
    m.idate = t
  end
  return os.date("!%d-%b-%Y %H:%M:%S +0000", math.floor(t))
end

-- --------------------------------------------------------------------------
-- ENVELOPE and BODYSTRUCTURE
-- --------------------------------------------------------------------------

local function addresses(list)
  if not list or #list == 0 then return "NIL" end
  local out = {}
  for i, a in ipairs(list) do
    out[i] = "(" .. nstring(a.name) .. " " .. nstring(a.adl) .. " " ..
             nstring(a.mailbox) .. " " .. nstring(a.host) .. ")"
  end
  return "(" .. concat(out) .. ")"
end

--- ENVELOPE text for a parsed message.
function M.envelope(p)
  local e = message.envelope(p)
  return "(" .. nstring(e.date) .. " " .. nstring(e.subject) .. " " ..
    addresses(e.from) .. " " .. addresses(e.sender) .. " " .. addresses(e.reply_to) .. " " ..
    addresses(e.to) .. " " .. addresses(e.cc) .. " " .. addresses(e.bcc) .. " " ..
    nstring(e.in_reply_to) .. " " .. nstring(e.message_id) .. ")"
end

local function params(list)
  if not list or #list == 0 then return "NIL" end
  local out = {}
  for _, kv in ipairs(list) do
    out[#out + 1] = nstring(kv[1])
    out[#out + 1] = nstring(kv[2])
  end
  return "(" .. concat(out, " ") .. ")"
end

local function ext(t)
  local disp = "NIL"
  if t.disposition then
    disp = "(" .. nstring(t.disposition.type) .. " " .. params(t.disposition.params) .. ")"
  end
  local lang = "NIL"
  if t.language then
    if #t.language == 1 then lang = nstring(t.language[1])
    elseif #t.language > 1 then
      local l = {}
      for i, x in ipairs(t.language) do l[i] = nstring(x) end
      lang = "(" .. concat(l, " ") .. ")"
    end
  end
  return disp .. " " .. lang .. " " .. nstring(t.location)
end

local function body_text(t, extended, env_of)
  if t.type == "multipart" then
    local out = {}
    for i, c in ipairs(t.parts) do out[i] = body_text(c, extended, env_of) end
    local s = "(" .. concat(out) .. " " .. nstring(t.subtype)
    if extended then s = s .. " " .. params(t.params) .. " " .. ext(t) end
    return s .. ")"
  end
  local s = "(" .. nstring(t.type) .. " " .. nstring(t.subtype) .. " " .. params(t.params) ..
    " " .. nstring(t.id) .. " " .. nstring(t.description) .. " " ..
    nstring(t.encoding and t.encoding:upper() or "7BIT") .. " " .. (t.size or 0)
  if t.type == "message" and t.subtype == "rfc822" and t.body then
    local e = t.envelope
    local env = "(" .. nstring(e.date) .. " " .. nstring(e.subject) .. " " ..
      addresses(e.from) .. " " .. addresses(e.sender) .. " " .. addresses(e.reply_to) .. " " ..
      addresses(e.to) .. " " .. addresses(e.cc) .. " " .. addresses(e.bcc) .. " " ..
      nstring(e.in_reply_to) .. " " .. nstring(e.message_id) .. ")"
    s = s .. " " .. env .. " " .. body_text(t.body, extended, env_of) .. " " .. (t.lines or 0)
  elseif t.type == "text" then
    s = s .. " " .. (t.lines or 0)
  end
  if extended then s = s .. " " .. nstring(t.md5) .. " " .. ext(t) end
  return s .. ")"
end

--- BODYSTRUCTURE (extended) or BODY text for a parsed message.
function M.bodystructure(p, extended)
  return body_text(message.bodystructure(p), extended)
end

-- --------------------------------------------------------------------------
-- Sections
-- --------------------------------------------------------------------------

-- The fields of a header block named in `names` (or not, with `invert`),
-- followed by the blank line (RFC 3501 §6.4.5 HEADER.FIELDS).
local function header_fields(block, names, invert)
  local want = {}
  for _, n in ipairs(names) do want[n:upper()] = true end
  local out, keep = {}, false
  for line in block:gmatch("[^\n]*\n") do
    if line == "\r\n" or line == "\n" then break end
    local c = line:byte(1)
    if c == 32 or c == 9 then
      if keep then out[#out + 1] = line end
    else
      local name = line:match("^([^:]+):")
      keep = name ~= nil and (want[name:upper()] == true) ~= (invert == true)
      if keep then out[#out + 1] = line end
    end
  end
  out[#out + 1] = "\r\n"
  return concat(out)
end

--- Where the header block of a CRLF message ends (its blank line
-- included): 2 for a message with no header fields (RFC 5322 §3.5), the
-- whole length when there is no blank line.
-- @tparam string raw
-- @treturn integer
function M.head_end(raw)
  if raw:sub(1, 2) == "\r\n" then return 2 end
  local _, e = raw:find("\r\n\r\n", 1, true)
  return e or #raw
end
local head_end = M.head_end

--- The bytes of a BODY[section] (no partial applied), or nil, err.
-- `ctx` caches the raw message and its parse for this message.
function M.section_bytes(view, m, att, ctx)
  local part = att.part
  local text = att.text
  local simple = (part == nil or #part == 0)
  if simple and (text == "HEADER" or text == "HEADER.FIELDS" or text == "HEADER.FIELDS.NOT") then
    local head = ctx.raw or ctx.head
    if not head then
      head = M.head(view, m)
      if not head then return nil, "cannot read message" end
      ctx.head = head
    end
    -- a head read alone (M.head) ends at its blank line (or is the whole
    -- message): it is the block itself, no copy needed
    local block = ctx.raw and head:sub(1, head_end(head)) or head
    if text == "HEADER" then return block end
    return header_fields(block, att.fields or {}, text == "HEADER.FIELDS.NOT")
  end
  local raw = ctx.raw
  if not raw then
    raw = M.read(view, m)
    if not raw then return nil, "cannot read message" end
    ctx.raw = raw
  end
  if simple and text == nil then return raw end
  if simple and text == "TEXT" then return raw:sub(head_end(raw) + 1) end
  local p = ctx.parsed
  if not p then p = message.parse(raw); ctx.parsed = p end
  local spec = part and concat(part, ".") or ""
  if text == "HEADER.FIELDS" or text == "HEADER.FIELDS.NOT" then
    local off, size = message.section(p, spec == "" and "HEADER" or spec .. ".HEADER")
    if not off then return "" end
    return header_fields(raw:sub(off + 1, off + size), att.fields or {}, text == "HEADER.FIELDS.NOT")
  end
  if text then spec = spec == "" and text or spec .. "." .. text end
  local off, size = message.section(p, spec)
  if not off then return "" end   -- a part that does not exist is empty (Dovecot: NIL)
  return raw:sub(off + 1, off + size)
end

local RFC822_ATT, HEADER_ATT, TEXT_ATT = {}, { text = "HEADER" }, { text = "TEXT" }

-- "(\\Seen \\Recent)" for Maildir letters, memoised per keyword table
local flag_texts = setmetatable({}, { __mode = "k" })
local NO_KEYWORDS = {}
local function flags_text(letters, recent, kw)
  local memo = flag_texts[kw or NO_KEYWORDS]
  if not memo then memo = {}; flag_texts[kw or NO_KEYWORDS] = memo end
  local k = recent and letters .. "+" or letters
  local t = memo[k]
  if not t then
    t = "(" .. concat(V.imap_flags(letters, recent, kw), " ") .. ")"
    memo[k] = t
  end
  return t
end

-- Appends "key text" to a FETCH response being built in out[1..n]
-- (out[3] is " FETCH ("); returns the new n.
local function add(out, n, key, text)
  if n > 3 then n = n + 1; out[n] = " " end
  out[n + 1], out[n + 2], out[n + 3] = key, " ", text
  return n + 3
end

--- Runs a FETCH: sends one `* n FETCH` per message.
-- @tparam table s the session (`s.conn`, `s.view`)
-- @tparam table seqs ascending sequence numbers
-- @tparam table atts from `imap.parse_fetch_atts`
-- @tparam boolean uid a UID FETCH (UID is always included)
-- @return true, or nil, err
function M.run(s, seqs, atts, uid)
  local view, conn = s.view, s.conn
  local want_uid, want_flags = uid, false
  local sets_seen = false
  for _, a in ipairs(atts) do
    if a.name == "UID" then want_uid = true end
    if a.name == "FLAGS" then want_flags = true end
    if (a.name == "BODY" and a.section and not a.peek) or a.name == "RFC822"
        or a.name == "RFC822.TEXT" then
      sets_seen = true
    end
    if a.name == "BINARY" or a.name == "BINARY.SIZE" then return nil, "BINARY is not supported" end
  end
  if view.readonly then sets_seen = false end
  local heads = false
  for _, a in ipairs(atts) do
    if a.name == "RFC822.HEADER" or (a.name == "BODY" and a.section and (a.part == nil or #a.part == 0)
        and (a.text == "HEADER" or a.text == "HEADER.FIELDS" or a.text == "HEADER.FIELDS.NOT")) then
      heads = true
    end
  end
  if heads and #seqs > 1 then M.use_cache(view) end
  local msgs, recent = view.msgs, view.recent
  local out = {}
  local ctx = {}
  -- a stream writes the pieces straight into its output buffer (no Lua
  -- string of each response: it would copy every header block once more);
  -- a transcript's wrapper (a table) gets the joined string it records
  local send_list = type(conn) == "userdata" and conn.send_list
  local missing = false
  for _, i in ipairs(seqs) do
    local m = msgs[i]
    ctx.raw, ctx.head, ctx.parsed = nil, nil, nil
    local flags_changed = false
    if sets_seen and not find(m.flags, "S", 1, true) then
      local letters = maildir.flags(m.flags .. "S")
      local nm = view:set_flags(m, letters)
      if nm then m = nm; flags_changed = true end
    end
    local n = 3
    out[1], out[2], out[3] = "* ", i, " FETCH ("
    if want_uid then n = add(out, n, "UID", m.uid) end
    local ok = true
    for _, a in ipairs(atts) do
      local name = a.name
      if name == "UID" then
        -- written first
      elseif name == "FLAGS" then
        n = add(out, n, "FLAGS", flags_text(m.flags, recent[m.uid], view.kw))
      elseif name == "RFC822.SIZE" then
        n = add(out, n, "RFC822.SIZE", M.size(view, m))
      elseif name == "INTERNALDATE" then
        n = add(out, n, "INTERNALDATE", '"' .. M.internaldate(view, m) .. '"')
      elseif name == "ENVELOPE" or name == "BODYSTRUCTURE" or (name == "BODY" and not a.section) then
        local raw = ctx.raw
        if not raw then raw = M.read(view, m); ctx.raw = raw end
        if not raw then ok = false; break end
        local p = ctx.parsed
        if not p then p = message.parse(raw); ctx.parsed = p end
        if name == "ENVELOPE" then n = add(out, n, name, M.envelope(p))
        else n = add(out, n, name, M.bodystructure(p, name == "BODYSTRUCTURE")) end
      elseif name == "RFC822" or name == "RFC822.HEADER" or name == "RFC822.TEXT" or name == "BODY" then
        local att = a
        if name == "RFC822" then att = RFC822_ATT
        elseif name == "RFC822.HEADER" then att = HEADER_ATT
        elseif name == "RFC822.TEXT" then att = TEXT_ATT end
        local data = M.section_bytes(view, m, att, ctx)
        if not data then ok = false; break end
        if a.partial then
          local origin, len = a.partial[1], a.partial[2]
          if origin >= #data then data = ""
          else data = data:sub(origin + 1, len and origin + len or #data) end
        end
        n = add(out, n, a.key or name, "{")
        out[n + 1], out[n + 2], out[n + 3] = #data, "}\r\n", data
        n = n + 3
      else
        return nil, "unknown fetch item " .. tostring(name)
      end
    end
    if ok then
      if flags_changed and not want_flags then n = add(out, n, "FLAGS", flags_text(m.flags, recent[m.uid], view.kw)) end
      n = n + 1; out[n] = ")\r\n"
      if send_list then send_list(conn, out, 1, n) else conn:send(concat(out, "", 1, n)) end
    else
      missing = true
    end
  end
  if heads then M.save_cache(view) end
  if missing then return nil, "some messages could not be read (expunged?)" end
  return true
end

return M
