--- MIME parser (RFC 5322 header block, RFC 2045/2046 tree), IMAP
-- ENVELOPE and BODYSTRUCTURE (RFC 3501 §7.4.2). Used through
-- `parley.mail.message` (`parse`, `envelope`, `bodystructure`, `section`).
--
-- Tolerant: bare LF line ends, a missing final boundary, a preamble and an
-- epilogue, a header line without a colon, raw 8-bit bytes. Bounded:
-- nesting depth, part count, header count and header block size (each with
-- a default and an option). Problems are listed in `defects` of the root.
-- @module parley.mail.mime
local mime = require "mime"
local H = require "parley.mail.header"

local M = {}

local find, sub, byte, lower, gsub, match =
  string.find, string.sub, string.byte, string.lower, string.gsub, string.match

--- Default limits.
M.defaults = {
  max_depth = 32,            -- nested multiparts and message/rfc822
  max_parts = 1000,          -- parts in the whole message
  max_headers = 1000,        -- fields in one header block
  max_header_size = 262144,  -- octets of one header block
}

-- The raw message each part was parsed from (weak: parts keep nothing alive).
local RAW = setmetatable({}, { __mode = "k" })

local part_methods = {}
local part_mt = { __index = part_methods, __name = "parley.mail.part" }

--- The decoded (RFC 2047, UTF-8) value of the first field named `name`.
function part_methods:header(name)
  local h = self.headers[lower(name)]
  return h and h.decoded
end

--- Every field named `name`, in order (entries of `headers`).
function part_methods:header_all(name)
  name = lower(name)
  local out = {}
  for _, h in ipairs(self.headers) do
    if h.lname == name then out[#out + 1] = h end
  end
  return out
end

--- The body with its transfer encoding undone (base64, quoted-printable),
-- as bytes. Multiparts have no content (nil).
function part_methods:content()
  local body = self.body
  if body == nil then
    local s = RAW[self]
    if not s or self.parts then return nil end
    body = sub(s, self.body_offset + 1, self.body_offset + self.body_size)
  end
  local te = self.transfer_encoding
  if te == "base64" then
    return H.unb64(body)
  elseif te == "quoted-printable" then
    if find(body, "[^\r]\n") or find(body, "^\n") then body = gsub(gsub(body, "\r\n", "\n"), "\n", "\r\n") end
    return (mime.unqp(body)) or ""
  end
  return body
end

--- The content converted from its charset to UTF-8 (text parts).
function part_methods:text()
  local c = self:content()
  return c and (H.to_utf8(c, self.charset or "us-ascii"))
end

-- Header block: fields from `i`; returns the list and the body start.
local function parse_headers(s, i, stop, o, defects)
  local headers = {}
  local pos, first = i, true
  local limited = false
  local blank_ahead -- computed once, lazily
  while pos <= stop do
    local eol = find(s, "\n", pos, true)
    local next_pos, line_end
    if not eol or eol > stop then
      next_pos, line_end = stop + 1, stop
    else
      next_pos, line_end = eol + 1, eol - 1
      if line_end >= pos and byte(s, line_end) == 13 then line_end = line_end - 1 end
    end
    if line_end < pos then return headers, next_pos end -- empty line
    if not limited and (#headers >= o.max_headers or next_pos - i > o.max_header_size) then
      limited = true
      defects[#defects + 1] = "header limit reached"
    end
    local b = byte(s, pos)
    if limited then
      -- skip to the end of the header block without keeping fields
      local e = find(s, "\n\r?\n", pos)
      if not e or e > stop then return headers, stop + 1 end
      local nl = find(s, "\n", e + 1, true)
      return headers, nl + 1
    elseif (b == 32 or b == 9) and #headers > 0 then
      headers[#headers].stop = next_pos - 1
    else
      local name = match(s, "^([!-9;-~]+)[ \t]*:", pos)
      if name then
        headers[#headers + 1] = { name = name, start = pos, stop = next_pos - 1,
          vstart = pos + #match(s, "^[^:]*:", pos) }
      elseif first and find(s, "^From ", pos) then -- mbox separator
      else
        if blank_ahead == nil then
          local e = find(s, "\n\r?\n", pos)
          blank_ahead = (e ~= nil and e <= stop and e - i <= o.max_header_size)
        end
        if not blank_ahead then
          defects[#defects + 1] = "missing header/body separator"
          return headers, pos
        end
        defects[#defects + 1] = "header line without colon"
      end
    end
    first = false
    pos = next_pos
  end
  return headers, stop + 1
end

local function materialise(s, list)
  for _, h in ipairs(list) do
    h.raw = sub(s, h.start, h.stop)
    local v = sub(s, h.vstart, h.stop)
    v = gsub(v, "\r?\n", "")          -- unfold (RFC 5322 §2.2.3)
    v = match(v, "^[ \t]*(.-)[ \t\r]*$")
    h.value = v
    h.decoded = H.decode(v)
    h.lname = lower(h.name)
    h.offset = h.start - 1
    h.start, h.stop, h.vstart = nil, nil, nil
    if list[h.lname] == nil then list[h.lname] = h end
  end
  return list
end

local function find_delimiter(s, pos, bstart, bstop, delim)
  while true do
    local a, b = find(s, delim, pos, true)
    if not a or b > bstop then return nil end
    if a == bstart or byte(s, a - 1) == 10 then
      local q = b + 1
      local close = false
      if sub(s, q, q + 1) == "--" and q + 1 <= bstop then close = true; q = q + 2 end
      local e = find(s, "[^ \t]", q)
      local c = e and e <= bstop and byte(s, e)
      if close or not c or c == 13 or c == 10 then
        local nl = find(s, "\n", b + 1, true)
        local after = (nl and nl <= bstop) and nl + 1 or bstop + 1
        return a, after, close
      end
    end
    pos = b + 1
  end
end

local parse_entity

-- Split a multipart body into parts (RFC 2046 §5.1.1: the CRLF before a
-- delimiter belongs to the delimiter).
local function parse_multipart(s, p, bstart, bstop, depth, o, ctx)
  local boundary = p.params.boundary
  p.parts = {}
  if not boundary or boundary == "" or #boundary > 200 then
    ctx.defects[#ctx.defects + 1] = "multipart without boundary"
    return
  end
  local delim = "--" .. boundary
  local lower_bound = bstart
  local cur, pos = nil, bstart
  local closed = false
  local function part_end(a)
    local e = a - 1
    if e >= lower_bound and byte(s, e) == 10 then
      e = e - 1
      if e >= lower_bound and byte(s, e) == 13 then e = e - 1 end
    end
    return e
  end
  while true do
    local a, after, close = find_delimiter(s, pos, bstart, bstop, delim)
    if not a then break end
    local e = part_end(a)
    if cur then
      if ctx.parts >= o.max_parts then
        ctx.defects[#ctx.defects + 1] = "part limit reached"
        cur = nil
        break
      end
      ctx.parts = ctx.parts + 1
      p.parts[#p.parts + 1] = parse_entity(s, cur, e, depth + 1, o, ctx, p)
    else
      p.preamble = sub(s, bstart, e)
    end
    if close then
      closed = true
      p.epilogue = sub(s, after, bstop)
      break
    end
    cur = after
    lower_bound = after
    pos = after
  end
  if not closed then
    if cur and ctx.parts < o.max_parts then
      ctx.defects[#ctx.defects + 1] = "missing final boundary"
      ctx.parts = ctx.parts + 1
      p.parts[#p.parts + 1] = parse_entity(s, cur, bstop, depth + 1, o, ctx, p)
    elseif #p.parts == 0 and not cur then
      ctx.defects[#ctx.defects + 1] = "no boundary found"
      p.preamble = sub(s, bstart, bstop)
    end
  end
end

function parse_entity(s, start, stop, depth, o, ctx, parent)
  local p = setmetatable({}, part_mt)
  RAW[p] = s
  local list, body_start = parse_headers(s, start, stop, o, ctx.defects)
  p.headers = materialise(s, list)
  p.offset = start - 1
  p.header_size = body_start - start
  p.body_offset = body_start - 1
  p.body_size = stop >= body_start and stop - body_start + 1 or 0

  local ct = list["content-type"]
  local mtype, subtype, params, plist
  if ct then
    local v
    v, params, plist = H.params(ct.value)
    mtype, subtype = match(v, "^([^/%s]+)%s*/%s*([^/%s]+)$")
    if not mtype then ctx.defects[#ctx.defects + 1] = "bad content-type" end
  end
  if not mtype then
    if parent and parent.subtype == "digest" and parent.type == "multipart" then
      mtype, subtype = "message", "rfc822"
    else
      mtype, subtype = "text", "plain"
    end
    if not params or not next(params) then
      params, plist = {}, {}
      if mtype == "text" then params.charset = "us-ascii"; plist = { { "charset", "us-ascii" } } end
    end
  end
  p.type, p.subtype = mtype, subtype
  p.content_type = mtype .. "/" .. subtype
  p.params, p.param_list = params, plist
  if mtype == "text" then p.charset = lower(params.charset or "us-ascii") end
  local cte = list["content-transfer-encoding"]
  p.transfer_encoding = cte and lower(match(cte.value, "^%s*([^%s;(]*)")) or "7bit"
  if p.transfer_encoding == "" then p.transfer_encoding = "7bit" end
  local cd = list["content-disposition"]
  if cd then
    local v, dp, dl = H.params(cd.value)
    if v ~= "" then p.disposition = v end
    p.disposition_params, p.disposition_param_list = dp, dl
    if dp.filename then p.filename = H.decode(dp.filename) end
  end
  if not p.filename and params.name then p.filename = H.decode(params.name) end

  local bstart, bstop = body_start, stop
  if mtype == "multipart" then
    if depth >= o.max_depth then
      ctx.defects[#ctx.defects + 1] = "nesting limit reached"
      p.parts = {}
      p.preamble = sub(s, bstart, bstop)
    else
      parse_multipart(s, p, bstart, bstop, depth, o, ctx)
    end
  else
    if o.bodies ~= false then p.body = sub(s, bstart, bstop) end
    if mtype == "message" and (subtype == "rfc822" or subtype == "global")
       and (p.transfer_encoding == "7bit" or p.transfer_encoding == "8bit"
            or p.transfer_encoding == "binary") then
      if depth >= o.max_depth then
        ctx.defects[#ctx.defects + 1] = "nesting limit reached"
      else
        p.message = parse_entity(s, bstart, bstop, depth + 1, o, ctx, nil)
      end
    end
  end
  return p
end

--- Parse a message.
-- @tparam string s the raw message
-- @tparam[opt] table opts limits (see `defaults`) and `bodies` (default
--   true: keep each leaf body as a string in `part.body`)
-- @treturn table the root part
function M.parse(s, opts)
  if type(s) ~= "string" then error("parse: string expected, got " .. type(s), 2) end
  if opts ~= nil and type(opts) ~= "table" then error("parse: options table expected", 2) end
  local o = {}
  for k, v in pairs(M.defaults) do o[k] = v end
  for k, v in pairs(opts or {}) do
    if M.defaults[k] ~= nil and (math.type(v) ~= "integer" or v < 0) then
      error("parse: option " .. k .. " must be a non-negative integer", 2)
    end
    o[k] = v
  end
  local ctx = { parts = 0, defects = {} }
  local root = parse_entity(s, 1, #s, 0, o, ctx, nil)
  root.defects = ctx.defects
  root.size = #s
  return root
end

-- ------------------------------------------------------------------------
-- IMAP views (RFC 3501 §7.4.2)
-- ------------------------------------------------------------------------

local function hval(p, name)
  local h = p.headers[name]
  return h and h.value or nil
end

local function addr_list(p, name)
  local v = hval(p, name)
  if not v then return nil end
  local l = H.envelope_addresses(v)
  for _, a in ipairs(l) do a.group = nil end
  return #l > 0 and l or nil
end

--- The ENVELOPE of a parsed message: raw (undecoded) strings and address
-- lists of {name=, adl=, mailbox=, host=}; a group is framed by
-- {mailbox=name} and {}. Missing fields are nil; sender and reply_to
-- default to from (RFC 3501 §7.4.2).
function M.envelope(p)
  local from = addr_list(p, "from")
  return {
    date = hval(p, "date"),
    subject = hval(p, "subject"),
    from = from,
    sender = addr_list(p, "sender") or from,
    reply_to = addr_list(p, "reply-to") or from,
    to = addr_list(p, "to"),
    cc = addr_list(p, "cc"),
    bcc = addr_list(p, "bcc"),
    in_reply_to = hval(p, "in-reply-to"),
    message_id = hval(p, "message-id"),
  }
end

local function count_lines(s, off, size)
  if size == 0 then return 0 end
  local n, pos, stop = 0, off + 1, off + size
  while true do
    local e = find(s, "\n", pos, true)
    if not e or e > stop then break end
    n = n + 1
    pos = e + 1
  end
  -- a last line without a line end is not counted: what Dovecot answers
  -- (checked against dovecot-imapd 2.3), RFC 3501 does not say
  return n
end
M.count_lines = count_lines

local function ext_fields(p, t)
  if p.disposition then
    t.disposition = { type = p.disposition, params = p.disposition_param_list }
  end
  local lang = hval(p, "content-language")
  if lang then
    local l = {}
    for tag in lang:gmatch("[^%s,]+") do l[#l + 1] = tag end
    t.language = l
  end
  t.location = hval(p, "content-location")
end

--- The BODYSTRUCTURE of a parsed message (or part) as Lua tables.
-- Leaf: {type, subtype, params = {{name, value}...}, id, description,
-- encoding, size, lines (text and message/rfc822), md5, disposition =
-- {type, params}, language = {tags}, location}; message/rfc822 adds
-- envelope and body. Multipart: {type = "multipart", subtype, parts,
-- params, disposition, language, location}. Sizes are octets of the
-- encoded body in the raw message; lines count line ends (LF), as
-- Dovecot does.
function M.bodystructure(p)
  local s = RAW[p]
  if p.type == "multipart" then
    local t = { type = "multipart", subtype = p.subtype, parts = {}, params = p.param_list }
    for i, c in ipairs(p.parts or {}) do t.parts[i] = M.bodystructure(c) end
    if #t.parts == 0 then
      -- RFC 3501 needs at least one part: an empty text/plain stands in
      t.parts[1] = { type = "text", subtype = "plain", params = { { "charset", "us-ascii" } },
        encoding = "7bit", size = 0, lines = 0 }
    end
    ext_fields(p, t)
    return t
  end
  local t = { type = p.type, subtype = p.subtype, params = p.param_list,
    id = hval(p, "content-id"), description = hval(p, "content-description"),
    encoding = p.transfer_encoding, size = p.body_size, md5 = hval(p, "content-md5") }
  if p.type == "text" then
    t.lines = count_lines(s, p.body_offset, p.body_size)
  elseif p.message then
    t.envelope = M.envelope(p.message)
    t.body = M.bodystructure(p.message)
    t.lines = count_lines(s, p.body_offset, p.body_size)
  end
  ext_fields(p, t)
  return t
end

--- Find the part for an IMAP section number ("1", "2.1", "" = the whole
-- message) following RFC 3501 §6.4.5: a non-multipart message has part 1
-- (its body); the parts of a message/rfc822 are those of its message.
-- @treturn table the part, or nil when there is no such part
function M.find_part(root, spec)
  if spec == "" then return root end
  local p, first = root, true
  for n in (spec .. "."):gmatch("([^.]*)%.") do
    local i = tonumber(n)
    if not i or math.type(i) ~= "integer" or i < 1 then return nil end
    if not first and p.message then p = p.message end
    first = false
    if p.type == "multipart" then
      p = p.parts and p.parts[i]
      if not p then return nil end
    elseif i ~= 1 then
      return nil
    end
  end
  return p
end

--- Byte range of an IMAP section: "" (whole), "HEADER", "TEXT", "1.2",
-- "1.2.MIME", "1.HEADER", "1.TEXT" (the latter two for message/rfc822
-- parts). Returns a 0-based offset and a size into the raw message.
function M.section(root, spec)
  if type(spec) ~= "string" then error("section: string expected", 2) end
  local up = spec:upper()
  local nums, what = up:match("^([%d.]-)%.?(%a*)$")
  if not nums then return nil, "bad section" end
  if what ~= "" and what ~= "HEADER" and what ~= "TEXT" and what ~= "MIME" then
    return nil, "bad section"
  end
  local p = M.find_part(root, nums)
  if not p then return nil, "no such part" end
  if what == "" then
    if nums == "" then return 0, root.size end
    return p.body_offset, p.body_size
  end
  if what == "MIME" then
    if nums == "" then return nil, "bad section" end
    return p.offset, p.header_size
  end
  local m = p
  if nums ~= "" then
    m = p.message
    if not m then return nil, "not a message part" end
  end
  if what == "HEADER" then return m.offset, m.header_size end
  return m.body_offset, m.body_size
end

return M
