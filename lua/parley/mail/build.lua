--- Message builder (RFC 5322, MIME RFC 2045/2046, RFC 2047/2231 headers).
-- Used through `parley.mail.message` (`build`, `source`).
-- @module parley.mail.build
local mime = require "mime"
local H = require "parley.mail.header"

local M = {}

local find, sub, gsub, format, concat, lower =
  string.find, string.sub, string.gsub, string.format, table.concat, string.lower

--- Content types guessed from file name extensions.
M.types = {
  txt = "text/plain", text = "text/plain", log = "text/plain", md = "text/markdown",
  html = "text/html", htm = "text/html", css = "text/css", csv = "text/csv",
  ics = "text/calendar", vcf = "text/vcard", xml = "application/xml",
  json = "application/json", js = "application/javascript",
  pdf = "application/pdf", zip = "application/zip", gz = "application/gzip",
  tgz = "application/gzip", tar = "application/x-tar", bz2 = "application/x-bzip2",
  xz = "application/x-xz", ["7z"] = "application/x-7z-compressed",
  rtf = "application/rtf", doc = "application/msword",
  docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
  xls = "application/vnd.ms-excel",
  xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
  ppt = "application/vnd.ms-powerpoint",
  pptx = "application/vnd.openxmlformats-officedocument.presentationml.presentation",
  odt = "application/vnd.oasis.opendocument.text",
  ods = "application/vnd.oasis.opendocument.spreadsheet",
  png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif",
  svg = "image/svg+xml", webp = "image/webp", bmp = "image/bmp", ico = "image/x-icon",
  tif = "image/tiff", tiff = "image/tiff",
  mp3 = "audio/mpeg", wav = "audio/wav", ogg = "audio/ogg", flac = "audio/flac",
  mp4 = "video/mp4", webm = "video/webm", mov = "video/quicktime",
  eml = "message/rfc822",
}

--- Guess a content type from a file name.
function M.guess_type(name)
  local ext = name and name:match("%.([^./\\]+)$")
  return ext and M.types[lower(ext)] or "application/octet-stream"
end

local counter = 0
local function unique()
  counter = counter + 1
  return format("%x.%x%08x%04x", os.time(), counter,
    math.random(0, 0x7fffffff), math.random(0, 0xffff))
end

local function hostname()
  local f = io.open("/proc/sys/kernel/hostname", "r") or io.open("/etc/hostname", "r")
  local h = f and f:read("l")
  if f then f:close() end
  h = h and h:match("^[%w.%-]+$")
  return h or "localhost"
end

-- Normalise line ends to CRLF. (mime.normalize would read "\n\r" as one
-- line end and lose a line; this does not.)
local function crlf(s)
  return (gsub(gsub(s, "\r\n?", "\n"), "\n", "\r\n"))
end

local function longest_line(s)
  local pos, n, max = 1, #s, 0
  while pos <= n do
    local e = find(s, "\r\n", pos, true) or n + 1
    if e - pos > max then
      max = e - pos
      if max > H.MAX_LINE then return max end
    end
    pos = e + 2
  end
  return max
end

--- Choose a Content-Transfer-Encoding for text (already CRLF): 7bit when
-- possible; 8bit when allowed; quoted-printable for mostly-ASCII text;
-- base64 otherwise (RFC 2045 §6).
function M.choose_encoding(s, allow8)
  local long = longest_line(s) > H.MAX_LINE
  local nul = find(s, "%z")
  local high = find(s, "[\128-\255]")
  if not high and not long and not nul then return "7bit" end
  if allow8 and not long and not nul and utf8.len(s) then return "8bit" end
  local _, k = gsub(s, "[^\t\r\n\32-\60\62-\126]", "")
  if k * 4 <= #s then return "quoted-printable" end
  return "base64"
end

local function b64_lines(s)
  if s == "" then return "" end
  return (mime.wrp(76, (mime.b64(s)), 76))
end

local function encode_body(s, cte)
  if cte == "base64" then return b64_lines(s) end
  if cte == "quoted-printable" then
    local q = mime.qp(s)
    return (mime.qpwrp(76, q, 76))
  end
  return s
end

-- An entity: { header = "formatted fields", body = string or nil,
--   file = path or nil, parts = {entities} or nil, boundary = string }
local function text_entity(s, subtype, opts)
  if type(s) ~= "string" then error(subtype .. ": string expected", 4) end
  s = crlf(s)
  if s ~= "" and sub(s, -2) ~= "\r\n" then s = s .. "\r\n" end
  local cte = M.choose_encoding(s, opts.utf8 or opts.eightbit)
  local ctype = "text/" .. subtype .. '; charset="utf-8"'
  local hdr = H.fold("Content-Type", { { " ", "text/" .. subtype .. ";" }, { " ", 'charset="utf-8"' } }) ..
    "Content-Transfer-Encoding: " .. cte .. "\r\n"
  return { header = hdr, body = encode_body(s, cte), type = ctype, raw = cte ~= "base64" and cte ~= "quoted-printable" }
end

local TOKEN = "^[%w!#$%%&'*+%-.^_`{|}~]+$"

local function attachment_entity(a, opts, i)
  if type(a) ~= "table" then error("attachments[" .. i .. "]: table expected", 4) end
  local what = "attachments[" .. i .. "]"
  if a.path ~= nil and type(a.path) ~= "string" then error(what .. ".path: string expected", 4) end
  if a.data ~= nil and type(a.data) ~= "string" then error(what .. ".data: string expected", 4) end
  if (a.path == nil) == (a.data == nil) then error(what .. ": give path or data", 4) end
  local filename = a.filename
  if filename == nil and a.path then filename = a.path:match("([^/\\]+)$") end
  if filename ~= nil then H.check(filename, what .. ".filename", 4) end
  local ctype = a.content_type or M.guess_type(filename)
  H.check(ctype, what .. ".content_type", 4)
  local mt, st = ctype:match("^%s*([^/%s]+)/([^/%s;]+)%s*$")
  if not mt or not find(mt, TOKEN) or not find(st, TOKEN) then
    error(what .. ".content_type: bad media type " .. format("%q", ctype), 4)
  end
  ctype = lower(mt .. "/" .. st)
  local e = { type = ctype }
  local cte = "base64"
  if ctype == "message/rfc822" and a.data then
    -- RFC 2046 §5.2.1: no encoding other than 7bit, 8bit or binary
    e.body = crlf(a.data)
    cte = M.choose_encoding(e.body, true)
    if cte ~= "7bit" then cte = "8bit" end
    if longest_line(e.body) > H.MAX_LINE then error(what .. ": message/rfc822 line over 998 octets", 4) end
    e.raw = true
  elseif a.data then
    e.body = b64_lines(a.data)
  else
    local f, err = io.open(a.path, "rb")
    if not f then return nil, err end
    f:close()
    e.file = a.path
  end
  local ct = { { " ", ctype .. ";" } }
  local fnp = filename and H.param_pieces({ { "name", filename, "2047" } }, opts.utf8) or {}
  if #fnp == 0 then ct[1][2] = ctype end
  for _, p in ipairs(fnp) do ct[#ct + 1] = p end
  local disp = a.inline and "inline" or "attachment"
  local cd = { { " ", disp .. (filename and ";" or "") } }
  if filename then
    for _, p in ipairs(H.param_pieces({ { "filename", filename, true } }, opts.utf8)) do cd[#cd + 1] = p end
  end
  local hdr = H.fold("Content-Type", ct) .. H.fold("Content-Disposition", cd) ..
    "Content-Transfer-Encoding: " .. cte .. "\r\n"
  if a.content_id ~= nil then
    H.check(a.content_id, what .. ".content_id", 4)
    local cid = a.content_id:match("^<(.*)>$") or a.content_id
    if find(cid, "[<>%s]") then error(what .. ".content_id: bad id", 4) end
    hdr = hdr .. "Content-ID: <" .. cid .. ">\r\n"
    e.cid = cid
  end
  if a.description ~= nil then hdr = hdr .. H.unstructured("Content-Description", a.description, opts.utf8) end
  e.header = hdr
  e.inline = a.inline
  return e
end

local function multipart(subtype, parts, extra)
  local e = { parts = parts, subtype = subtype, type = "multipart/" .. subtype }
  local ct = { { " ", "multipart/" .. subtype .. ";" }, { " ", "boundary=@B@" } }
  if extra then ct[2][2] = ct[2][2] .. ";"; ct[3] = { " ", extra } end
  e.ct = ct
  return e
end

-- Choose boundaries: "=_" never occurs in base64 or quoted-printable text
-- (RFC 2045 §6.7 and §6.8); raw parts are checked.
local function set_boundaries(e, raws)
  if e.parts then
    for _, p in ipairs(e.parts) do set_boundaries(p, raws) end
    local b
    for _ = 1, 100 do
      b = "=_parley_" .. unique()
      local clash = false
      for _, r in ipairs(raws) do
        if find(r, b, 1, true) then clash = true; break end
      end
      if not clash then break end
    end
    e.boundary = b
    local ct = {}
    for i, p in ipairs(e.ct) do ct[i] = { p[1], (p[2]:gsub("@B@", '"' .. b .. '"')) } end
    e.header = H.fold("Content-Type", ct)
  end
end

local function collect_raw(e, raws)
  if e.parts then for _, p in ipairs(e.parts) do collect_raw(p, raws) end
  elseif e.raw and e.body then raws[#raws + 1] = e.body end
end

local READ = 57 * 1024 -- a multiple of 3 and of 57 (one 76-column line)

local function emit_entity(e, emit)
  emit(e.header)
  emit("\r\n")
  if e.parts then
    for i, p in ipairs(e.parts) do
      emit((i == 1 and "--" or "\r\n--") .. e.boundary .. "\r\n")
      emit_entity(p, emit)
    end
    emit("\r\n--" .. e.boundary .. "--\r\n")
  elseif e.file then
    local f, err = io.open(e.file, "rb")
    if not f then error({ err = err }) end
    local left, carry = 76, ""
    while true do
      local chunk = f:read(READ)
      if not chunk then break end
      local data = carry .. chunk
      local k = #data - #data % 3
      carry = sub(data, k + 1)
      if k > 0 then
        local w
        w, left = mime.wrp(left, (mime.b64(sub(data, 1, k))), 76)
        emit(w)
      end
    end
    f:close()
    if carry ~= "" then emit((mime.wrp(left, (mime.b64(carry)), 76))) end
  else
    emit(e.body)
  end
end

local function addrs(t, key, utf8mode)
  local v = t[key]
  if v == nil then return {} end
  return H.addresses(v, key, utf8mode)
end

-- Validate everything and prepare the header block and the entity tree.
-- Raises on misuse and header injection; returns nil, err on I/O errors.
function M.compile(t)
  if type(t) ~= "table" then error("message: table expected", 3) end
  local opts = { utf8 = t.utf8 and true or false, eightbit = t.eightbit and true or false }
  local u8 = opts.utf8
  local from = addrs(t, "from", u8)
  local to, cc, bcc = addrs(t, "to", u8), addrs(t, "cc", u8), addrs(t, "bcc", u8)
  local reply_to, sender = addrs(t, "reply_to", u8), addrs(t, "sender", u8)
  local hdr = {}
  local date = t.date
  if date == nil then date = H.date()
  elseif type(date) == "number" then date = H.date(date)
  else H.check(date, "date", 3) end
  hdr[#hdr + 1] = "Date: " .. date .. "\r\n"
  if #from > 0 then hdr[#hdr + 1] = H.address_header("From", from, u8) end
  if #sender > 0 then hdr[#hdr + 1] = H.address_header("Sender", sender, u8) end
  if #reply_to > 0 then hdr[#hdr + 1] = H.address_header("Reply-To", reply_to, u8) end
  if #to > 0 then hdr[#hdr + 1] = H.address_header("To", to, u8) end
  if #cc > 0 then hdr[#hdr + 1] = H.address_header("Cc", cc, u8) end
  if t.subject ~= nil then hdr[#hdr + 1] = H.unstructured("Subject", t.subject, u8) end
  local mid = t.message_id
  if mid == nil then
    mid = "<" .. unique() .. "@" .. (t.host or hostname()) .. ">"
  end
  if mid ~= false then
    H.check(mid, "message_id", 3)
    if not mid:find("^<[^<>%s]+@[^<>%s]+>$") then
      if mid:find("^[^<>%s]+@[^<>%s]+$") then mid = "<" .. mid .. ">"
      else error("message_id: bad id " .. format("%q", mid), 3) end
    end
    hdr[#hdr + 1] = "Message-ID: " .. mid .. "\r\n"
  end
  for _, k in ipairs({ { "in_reply_to", "In-Reply-To" }, { "references", "References" } }) do
    local v = t[k[1]]
    if v ~= nil then
      H.check(v, k[1], 3)
      hdr[#hdr + 1] = H.unstructured(k[2], v, u8)
    end
  end
  local reserved = { ["mime-version"] = true, ["content-type"] = true,
    ["content-transfer-encoding"] = true, bcc = true }
  if t.headers ~= nil then
    if type(t.headers) ~= "table" then error("headers: table expected", 3) end
    local list = {}
    if #t.headers > 0 or next(t.headers) == nil then
      for i, h in ipairs(t.headers) do
        if type(h) ~= "table" then error("headers[" .. i .. "]: {name, value} expected", 3) end
        list[#list + 1] = { h.name or h[1], h.value or h[2] }
      end
    else
      for k, v in pairs(t.headers) do list[#list + 1] = { k, v } end
      table.sort(list, function(a, b) return tostring(a[1]) < tostring(b[1]) end)
    end
    for _, h in ipairs(list) do
      local name, value = h[1], h[2]
      H.check_name(name, 3)
      if type(value) == "number" then value = tostring(value) end
      H.check(value, "header " .. name, 3)
      if reserved[lower(name)] then error("header " .. name .. " is generated (use the fields)", 3) end
      hdr[#hdr + 1] = H.unstructured(name, value, u8)
    end
  end
  hdr[#hdr + 1] = "MIME-Version: 1.0\r\n"

  -- body tree
  local body
  if t.text ~= nil and t.html ~= nil then
    body = multipart("alternative", { text_entity(t.text, "plain", opts), text_entity(t.html, "html", opts) })
  elseif t.html ~= nil then
    body = text_entity(t.html, "html", opts)
  else
    body = text_entity(t.text or "", "plain", opts)
  end
  local related, mixed = {}, {}
  if t.attachments ~= nil then
    if type(t.attachments) ~= "table" then error("attachments: table expected", 3) end
    for i, a in ipairs(t.attachments) do
      local e, err = attachment_entity(a, opts, i)
      if not e then return nil, err end
      if e.inline and e.cid and t.html ~= nil then related[#related + 1] = e
      else mixed[#mixed + 1] = e end
    end
  end
  if #related > 0 then
    local parts = { body }
    for _, e in ipairs(related) do parts[#parts + 1] = e end
    body = multipart("related", parts, 'type="' .. body.type .. '"')
  end
  if #mixed > 0 then
    local parts = { body }
    for _, e in ipairs(mixed) do parts[#parts + 1] = e end
    body = multipart("mixed", parts)
  end
  local raws = {}
  collect_raw(body, raws)
  set_boundaries(body, raws)
  local rcpt = {}
  for _, l in ipairs({ to, cc, bcc }) do
    for _, a in ipairs(l) do rcpt[#rcpt + 1] = a.address end
  end
  return { header = concat(hdr), body = body, recipients = rcpt }
end

function M.emit(c, emit)
  emit(c.header)
  emit_entity(c.body, emit)
end

return M
