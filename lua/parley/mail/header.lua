--- Mail header helpers: RFC 5322 folding and unfolding, RFC 2047 encoded
-- words, RFC 2045/2231 parameters, address lists and dates.
--
-- Used by `parley.mail.message` (which re-exports the public helpers) and
-- by `parley.mail.mime`. All functions are pure. Decoded text is UTF-8:
-- utf-8, us-ascii, iso-8859-1/-2/-15 and windows-1252 are converted;
-- text in another charset that is not valid UTF-8 is read as iso-8859-1
-- (a guess that never fails, like most mail readers).
-- @module parley.mail.header
local mime = require "mime"

local M = {}

local byte, char, find, sub, gsub, format, lower, concat =
  string.byte, string.char, string.find, string.sub, string.gsub,
  string.format, string.lower, table.concat

--- Maximum header line length we aim for (RFC 5322 §2.1.1 "SHOULD").
M.FOLD = 78
--- Limit of a line holding an encoded word (RFC 2047 §2).
M.ENCODED_FOLD = 76
--- Hard limit of a line (RFC 5322 §2.1.1 "MUST"), without CRLF.
M.MAX_LINE = 998

-- ------------------------------------------------------------------------
-- Charsets
-- ------------------------------------------------------------------------

-- byte -> UTF-8 string tables for gsub, built once (constant data).
local function single_byte_table(high)
  local t = {}
  for b = 128, 255 do
    local cp = high and high[b] or b
    t[char(b)] = utf8.char(cp)
  end
  return t
end

local latin1 = single_byte_table(nil)

local cp1252 = {
  [0x80] = 0x20AC, [0x82] = 0x201A, [0x83] = 0x0192, [0x84] = 0x201E,
  [0x85] = 0x2026, [0x86] = 0x2020, [0x87] = 0x2021, [0x88] = 0x02C6,
  [0x89] = 0x2030, [0x8A] = 0x0160, [0x8B] = 0x2039, [0x8C] = 0x0152,
  [0x8E] = 0x017D, [0x91] = 0x2018, [0x92] = 0x2019, [0x93] = 0x201C,
  [0x94] = 0x201D, [0x95] = 0x2022, [0x96] = 0x2013, [0x97] = 0x2014,
  [0x98] = 0x02DC, [0x99] = 0x2122, [0x9A] = 0x0161, [0x9B] = 0x203A,
  [0x9C] = 0x0153, [0x9E] = 0x017E, [0x9F] = 0x0178,
}
local latin9 = {
  [0xA4] = 0x20AC, [0xA6] = 0x0160, [0xA8] = 0x0161, [0xB4] = 0x017D,
  [0xB8] = 0x017E, [0xBC] = 0x0152, [0xBD] = 0x0153, [0xBE] = 0x0178,
}
local latin2 = {}
do
  local cps = { 160,260,728,321,164,317,346,167,168,352,350,356,377,173,381,
    379,176,261,731,322,180,318,347,711,184,353,351,357,378,733,382,380,340,
    193,194,258,196,313,262,199,268,201,280,203,282,205,206,270,272,323,327,
    211,212,336,214,215,344,366,218,368,220,221,354,223,341,225,226,259,228,
    314,263,231,269,233,281,235,283,237,238,271,273,324,328,243,244,337,246,
    247,345,367,250,369,252,253,355,729 }
  for i, cp in ipairs(cps) do latin2[159 + i] = cp end
end

local tables = {
  ["iso-8859-1"] = latin1,
  ["windows-1252"] = single_byte_table(cp1252),
  ["iso-8859-15"] = single_byte_table(latin9),
  ["iso-8859-2"] = single_byte_table(latin2),
}
local aliases = {
  ["latin1"] = "iso-8859-1", ["iso8859-1"] = "iso-8859-1",
  ["iso_8859-1"] = "iso-8859-1", ["l1"] = "iso-8859-1",
  ["cp1252"] = "windows-1252", ["latin9"] = "iso-8859-15",
  ["iso8859-15"] = "iso-8859-15", ["latin2"] = "iso-8859-2",
  ["iso8859-2"] = "iso-8859-2", ["cp819"] = "iso-8859-1",
}
local utf8ish = { ["utf-8"] = true, ["utf8"] = true, ["us-ascii"] = true,
  ["ascii"] = true, [""] = true }

-- Replace invalid UTF-8 sequences with U+FFFD (bounded by #s iterations).
local function repair_utf8(s)
  local n, bad = utf8.len(s)
  if n then return s end
  local out, i = {}, 1
  while true do
    out[#out + 1] = sub(s, i, bad - 1)
    out[#out + 1] = "\u{FFFD}"
    i = bad + 1
    if i > #s then break end
    n, bad = utf8.len(s, i)
    if n then out[#out + 1] = sub(s, i); break end
  end
  return concat(out)
end

--- Convert bytes in `charset` to UTF-8.
-- @tparam string s bytes
-- @tparam[opt="us-ascii"] string charset
-- @treturn string UTF-8 text
-- @treturn boolean true when the charset was known
function M.to_utf8(s, charset)
  charset = lower(charset or "us-ascii"):gsub("^%s+", ""):gsub("[%s*].*$", "")
  if not find(s, "[\128-\255]") then return s, true end
  if utf8ish[charset] then return repair_utf8(s), true end
  local t = tables[aliases[charset] or charset]
  if t then return (gsub(s, "[\128-\255]", t)), true end
  if utf8.len(s) then return s, false end
  return (gsub(s, "[\128-\255]", latin1)), false
end

-- Raw 8-bit header text (RFC 6532, or just broken mail): keep it if it is
-- UTF-8, otherwise read it as iso-8859-1.
local function raw8(s)
  if not find(s, "[\128-\255]") or utf8.len(s) then return s end
  return (gsub(s, "[\128-\255]", latin1))
end
M.raw_to_utf8 = raw8

-- ------------------------------------------------------------------------
-- RFC 2047 encoded words
-- ------------------------------------------------------------------------

local function unb64(text)
  text = gsub(text, "[^%w+/]", "")
  local r = #text % 4
  if r == 1 then text = sub(text, 1, -2); r = 0 end
  if r > 0 then text = text .. string.rep("=", 4 - r) end
  return (mime.unb64(text)) or ""
end
M.unb64 = unb64

local function decode_word(charset, enc, text)
  local bytes
  if enc == "B" or enc == "b" then
    bytes = unb64(text)
  else
    -- Q: "_" is a space (RFC 2047 §4.2); the =XX escapes are QP's.
    bytes = mime.unqp((gsub(text, "_", " "))) or ""
  end
  return (M.to_utf8(bytes, charset))
end

local EW = "=%?([^?%s]+)%?([BbQq])%?([^?%s]*)%?="

--- Decode RFC 2047 encoded words in a header value to UTF-8.
-- White space between adjacent encoded words is dropped (RFC 2047 §6.2);
-- encoded words glued to other text are decoded too, as mail readers do.
-- Raw 8-bit text that is not UTF-8 is read as iso-8859-1.
-- @tparam string s header value (unfolded)
-- @treturn string UTF-8 text
function M.decode(s)
  if type(s) ~= "string" then error("header_decode: string expected", 2) end
  if not find(s, "=?", 1, true) then return raw8(s) end
  local out, pos, last_word = {}, 1, false
  while true do
    local a, b, cs, enc, txt = find(s, EW, pos)
    if not a then break end
    local between = sub(s, pos, a - 1)
    if not (last_word and not find(between, "[^ \t\r\n]")) then
      out[#out + 1] = raw8(between)
    end
    out[#out + 1] = decode_word(cs, enc, txt)
    last_word = true
    pos = b + 1
  end
  out[#out + 1] = raw8(sub(s, pos))
  return concat(out)
end

-- Q encoding with the most restrictive set (RFC 2047 §5 (3), usable in a
-- phrase, a comment and unstructured text alike).
local qmap = {}
for b = 0, 255 do
  local c = char(b)
  if c == " " then qmap[c] = "_"
  elseif find(c, "[%w!*+/%-]") then qmap[c] = c
  else qmap[c] = format("=%02X", b) end
end

local function q_len(s)
  local _, n = gsub(s, "[^%w!*+/%- ]", "")
  return #s + 2 * n
end

-- Split UTF-8 `s` into encoded words, whole characters in each
-- (RFC 2047 §5), none longer than 75 octets; the first no longer than
-- `first` octets when that is at least 16.
local function encode_words(s, enc, first)
  local prefix = "=?UTF-8?" .. enc .. "?"
  local overhead = #prefix + 2
  local words = {}
  local limit = (first and first >= 16 and first < 75) and first or 75
  local start, i, n, cost = 1, 1, #s, 0
  local function flush(stop)
    local bytes = sub(s, start, stop)
    local body = enc == "Q" and gsub(bytes, ".", qmap) or mime.b64(bytes)
    words[#words + 1] = prefix .. body .. "?="
    start = stop + 1
    limit = 75
  end
  while i <= n do
    local b = byte(s, i)
    local clen = b < 0x80 and 1 or b >= 0xF0 and 4 or b >= 0xE0 and 3 or
      b >= 0xC0 and 2 or 1
    if i + clen - 1 > n then clen = n - i + 1 end
    local chunk = i + clen - 1 - start + 1
    local len
    if enc == "Q" then
      len = cost + q_len(sub(s, i, i + clen - 1))
    else
      len = ((chunk + 2) // 3) * 4
    end
    if overhead + len > limit and i > start then
      flush(i - 1)
      len = enc == "Q" and q_len(sub(s, i, i + clen - 1)) or ((clen + 2) // 3) * 4
    end
    cost = len
    i = i + clen
  end
  if start <= n or #words == 0 then flush(n) end
  return words
end

local function needs_encoding(w)
  return find(w, "[^\32-\126]") or find(w, "=?", 1, true)
end

--- Encode text as RFC 2047 encoded words when it needs it.
-- ASCII text without "=?" comes back unchanged. Otherwise the result is
-- one or more `=?UTF-8?Q?...?=` or `=?UTF-8?B?...?=` words (whichever is
-- shorter), separated by single spaces, each at most 75 octets.
-- @tparam string s UTF-8 text
-- @tparam[opt] table opts `encoding` = "Q" or "B" (default: shorter);
--   `first` = room left on the first line
-- @treturn string
function M.encode(s, opts)
  if type(s) ~= "string" then error("header_encode: string expected", 2) end
  if not needs_encoding(s) then return s end
  return concat(M.encode_words(s, opts), " ")
end

--- Like `encode` but always encodes, returning the list of words.
function M.encode_words(s, opts)
  opts = opts or {}
  local enc = opts.encoding
  if not enc then
    enc = q_len(s) <= ((#s + 2) // 3) * 4 and "Q" or "B"
  end
  enc = enc:upper()
  if enc ~= "Q" and enc ~= "B" then error("encoding must be Q or B", 2) end
  return encode_words(s, enc, opts.first)
end

-- ------------------------------------------------------------------------
-- Injection checks and folding
-- ------------------------------------------------------------------------

--- Raise when `s` holds CR, LF or NUL (header injection).
function M.check(s, what, level)
  if type(s) ~= "string" then
    error((what or "value") .. ": string expected, got " .. type(s), (level or 1) + 1)
  end
  if find(s, "[\r\n%z]") then
    error((what or "value") .. ": CR, LF or NUL in a header (header injection)",
      (level or 1) + 1)
  end
  return s
end

--- Raise unless `name` is a valid field name (RFC 5322 §3.6.8 ftext).
function M.check_name(name, level)
  if type(name) ~= "string" then error("header name: string expected", (level or 1) + 1) end
  if not find(name, "^[!-9;-~]+$") then
    error("bad header name " .. format("%q", name) .. " (header injection?)", (level or 1) + 1)
  end
  return name
end

--- Fold a header field. `pieces` is a list of {sep, word}: `sep` is the
-- white space before `word` (may be empty: no fold point there). Lines
-- are broken before a white space when they would pass 78 octets (76 in
-- a field with encoded words, RFC 2047 §2).
-- @treturn string the field with CRLF line ends (ending in CRLF)
function M.fold(name, pieces)
  local lines, cur = {}, name .. ":"
  local has_word = false
  local limit = M.FOLD
  for i = 1, #pieces do
    if find(pieces[i][2], "=?", 1, true) then limit = M.ENCODED_FOLD break end
  end
  for i = 1, #pieces do
    local sep, word = pieces[i][1], pieces[i][2]
    if has_word and sep ~= "" and #cur + #sep + #word > limit then
      lines[#lines + 1] = cur
      cur = sep .. word
    else
      cur = cur .. sep .. word
    end
    has_word = true
  end
  lines[#lines + 1] = cur
  for i = 1, #lines do
    if #lines[i] > M.MAX_LINE then
      error("header " .. name .. ": a line would exceed 998 octets", 3)
    end
  end
  return concat(lines, "\r\n") .. "\r\n"
end

-- Split text into {sep, word} pieces at runs of white space (leading and
-- trailing white space dropped: unfolding would lose it anyway).
local function split_ws(s)
  local pieces, sep = {}, " "
  local pos = #s:match("^[ \t]*") + 1
  while pos <= #s do
    local word = s:match("^[^ \t]+", pos)
    pos = pos + #word
    local ws = s:match("^[ \t]*", pos)
    pos = pos + #ws
    pieces[#pieces + 1] = { sep, word }
    sep = ws
  end
  if #pieces == 0 then pieces[1] = { " ", "" } end
  return pieces
end

--- Format an unstructured field (Subject, Comments, X-...) folded, with
-- RFC 2047 encoding for non-ASCII text unless `utf8` (RFC 6532).
function M.unstructured(name, value, utf8mode)
  M.check(value, name, 2)
  local pieces = split_ws(value)
  if utf8mode then
    if not utf8.len(value) then error(name .. ": not valid UTF-8", 2) end
    return M.fold(name, pieces)
  end
  -- encode from the first to the last word that needs it (whole range, so
  -- the spaces inside survive: white space between encoded words is
  -- dropped by decoders); long words are encoded too, so they can break.
  local lo, hi
  for i, p in ipairs(pieces) do
    if needs_encoding(p[2]) or #p[2] > M.FOLD - #name - 2 then
      lo = lo or i; hi = i
    end
  end
  if not lo then return M.fold(name, pieces) end
  local text = { pieces[lo][2] }
  for i = lo + 1, hi do text[#text + 1] = pieces[i][1] .. pieces[i][2] end
  local col = #name + 1
  for i = 1, lo - 1 do col = col + #pieces[i][1] + #pieces[i][2] end
  local words = M.encode_words(concat(text), { first = M.ENCODED_FOLD - col - 1 })
  local out = {}
  for i = 1, lo - 1 do out[#out + 1] = pieces[i] end
  for i, w in ipairs(words) do out[#out + 1] = { i == 1 and pieces[lo][1] or " ", w } end
  for i = hi + 1, #pieces do out[#out + 1] = pieces[i] end
  return M.fold(name, out)
end

-- ------------------------------------------------------------------------
-- Addresses
-- ------------------------------------------------------------------------

local ATEXT_PHRASE = "^[%w!#$%%&'*+/=?^_`{|}~%- ]+$"

--- Format a display name as an RFC 5322 phrase: raw atoms, a quoted
-- string when it holds specials, encoded words when non-ASCII.
-- `first`: room for the first encoded word on its line (see encode).
-- @treturn table list of words (fold points between them)
function M.phrase_words(name, utf8mode, first)
  if find(name, "[\128-\255]") and not utf8mode then
    return M.encode_words(name, { first = first })
  end
  if (find(name, ATEXT_PHRASE) or utf8mode and find(gsub(name, "[\128-\255]", "a"), ATEXT_PHRASE)) and not find(name, "^ ") and not find(name, " $")
     and not find(name, "  ") and not find(name, "=?", 1, true) then
    local words = {}
    for w in name:gmatch("%S+") do words[#words + 1] = w end
    return words
  end
  return { '"' .. gsub(name, '(["\\])', "\\%1") .. '"' }
end

local function check_addr(addr, utf8mode)
  M.check(addr, "address", 3)
  if addr == "" or find(addr, "[<>,;%s]") and not find(addr, '^".*"@[^"]+$') then
    error("bad address " .. format("%q", addr), 3)
  end
  if not find(addr, "@", 1, true) then error("address without domain: " .. addr, 3) end
  if find(addr, "[\128-\255]") and not utf8mode then
    error("non-ASCII address needs utf8 (SMTPUTF8) mode: " .. addr, 3)
  end
  return addr
end

--- Normalise an address argument: "a@x", "Name <a@x>", "a@x, b@y",
-- {name=, address=} or a list of those. Returns a list of {name=, address=}.
function M.addresses(v, what, utf8mode)
  local out = {}
  local function add(a)
    if type(a) == "string" then
      M.check(a, what, 4)
      if find(a, "[<,]") then
        local list = M.address_list(a)
        if #list == 0 then error(what .. ": no address in " .. format("%q", a), 4) end
        -- strict for building: every < and > must frame one of the addresses
        local bare = gsub(gsub(a, '"[^"]*"', ""), "%b()", "")
        local _, lt = gsub(bare, "<", "")
        local _, gt = gsub(bare, ">", "")
        if lt ~= gt or lt > #list or find(bare, ">[^,]*[^%s,]") then
          error(what .. ": bad address list " .. format("%q", a), 4)
        end
        for _, x in ipairs(list) do add({ name = x.name, address = x.address }) end
        return
      end
      a = { address = (a:gsub("^%s+", ""):gsub("%s+$", "")) }
    end
    if type(a) ~= "table" then error(what .. ": address string or table expected", 4) end
    local name = a.name or a[2]
    local addr = a.address or a[1]
    if name ~= nil then M.check(name, what .. " name", 4) end
    check_addr(addr, utf8mode)
    out[#out + 1] = { name = name ~= "" and name or nil, address = addr }
  end
  if type(v) == "table" and v.address == nil then
    for _, a in ipairs(v) do add(a) end
  else
    add(v)
  end
  return out
end

--- Format an address list header (From, To, Cc, Reply-To), folded.
function M.address_header(name, list, utf8mode)
  local pieces = {}
  for i, a in ipairs(list) do
    local words = {}
    if a.name then
      -- an encoded word opening the field must fit after "Name: "
      for _, w in ipairs(M.phrase_words(a.name, utf8mode, M.ENCODED_FOLD - #name - 2)) do
        words[#words + 1] = w
      end
      words[#words + 1] = "<" .. a.address .. ">"
    else
      words[1] = a.address
    end
    if i < #list then words[#words] = words[#words] .. "," end
    for _, w in ipairs(words) do pieces[#pieces + 1] = { " ", w } end
  end
  return M.fold(name, pieces)
end

-- The quoted-string whose opening quote is at s[i] (RFC 5322 §3.2.4):
-- its content with quoted-pairs undone, and the index after the closing
-- quote (n + 1 when it is missing).
local function quoted_string(s, i, n)
  local j, buf = i + 1, {}
  while j <= n do
    local k = find(s, '["\\]', j)
    if not k then buf[#buf + 1] = sub(s, j); j = n + 1; break end
    if sub(s, k, k) == "\\" then
      buf[#buf + 1] = sub(s, j, k - 1) .. sub(s, k + 1, k + 1); j = k + 2
    else
      buf[#buf + 1] = sub(s, j, k - 1); j = k + 1; break
    end
  end
  return concat(buf), j
end

-- Tokenizer for structured fields (RFC 5322 §3.2). Every byte is covered:
-- white space, comments, quoted strings, domain literals, the specials
-- < > @ , ; : ) and atoms (anything else, dots included: obs-phrase).
local function tokenize(s)
  local toks, i, n = {}, 1, #s
  while i <= n do
    local c = sub(s, i, i)
    if c == " " or c == "\t" or c == "\r" or c == "\n" then
      i = find(s, "[^ \t\r\n]", i) or n + 1
    elseif c == "(" then
      local depth, j, buf = 1, i + 1, {}
      while j <= n do
        local k = find(s, "[()\\]", j)
        if not k then buf[#buf + 1] = sub(s, j); j = n + 1; break end
        local ch = sub(s, k, k)
        if ch == "\\" then
          buf[#buf + 1] = sub(s, j, k - 1) .. sub(s, k + 1, k + 1); j = k + 2
        elseif ch == "(" then
          depth = depth + 1; buf[#buf + 1] = sub(s, j, k); j = k + 1
        else
          depth = depth - 1
          buf[#buf + 1] = sub(s, j, depth > 0 and k or k - 1); j = k + 1
          if depth == 0 then break end
        end
      end
      toks[#toks + 1] = { t = "comment", v = concat(buf) }
      i = j
    elseif c == '"' then
      local v
      v, i = quoted_string(s, i, n)
      -- folding inside a quoted string is not part of it (RFC 5322 §3.2.4)
      toks[#toks + 1] = { t = "qs", v = gsub(v, "\r?\n", "") }
    elseif c == "[" then
      local k = find(s, "]", i, true) or n
      toks[#toks + 1] = { t = "atom", v = sub(s, i, k) }
      i = k + 1
    elseif find(c, "[<>@,;:)]") then
      toks[#toks + 1] = { t = c }
      i = i + 1
    else
      local _, k = find(s, '^[^ \t\r\n()<>@,;:"%[]+', i)
      toks[#toks + 1] = { t = "atom", v = sub(s, i, k) }
      i = k + 1
    end
  end
  return toks
end

local function quote_local(v)
  if find(v, "^[%w!#$%%&'*+/=?^_`{|}~%-]+[%w!#$%%&'*+/=?^_`{|}~%-.]*$") and not find(v, "%.%.") and not find(v, "%.$") then
    return v
  end
  return '"' .. gsub(v, '(["\\])', "\\%1") .. '"'
end

local function join_phrase(toks, a, b)
  local w = {}
  for i = a, b do
    local t = toks[i]
    if t.t == "atom" or t.t == "qs" then w[#w + 1] = t.v end
  end
  if #w == 0 then return nil end
  return concat(w, " ")
end

-- Parse the tokens of one mailbox into {name_raw, adl, mailbox, host}.
local function mailbox(toks)
  local lt
  for i, t in ipairs(toks) do if t.t == "<" then lt = i; break end end
  local spec_a, spec_b, name
  local adl
  if lt then
    name = join_phrase(toks, 1, lt - 1)
    local gt = #toks
    for i = lt + 1, #toks do if toks[i].t == ">" then gt = i - 1; break end end
    spec_a, spec_b = lt + 1, gt
    -- obsolete source route "@a,@b:" (RFC 5322 §4.4)
    if toks[spec_a] and toks[spec_a].t == "@" then
      for i = spec_a, spec_b do
        if toks[i].t == ":" then
          local r = {}
          for j = spec_a, i - 1 do r[#r + 1] = toks[j].v or toks[j].t end
          adl = concat(r)
          spec_a = i + 1
          break
        end
      end
    end
  else
    spec_a, spec_b = 1, #toks
    for i = #toks, 1, -1 do
      if toks[i].t == "comment" and toks[i].v:find("%S") then name = toks[i].v; break end
    end
  end
  local at
  for i = spec_b, spec_a, -1 do if toks[i].t == "@" then at = i; break end end
  local loc, dom = {}, {}
  for i = spec_a, (at or spec_b + 1) - 1 do
    local t = toks[i]
    if t.t == "qs" then loc[#loc + 1] = t.v; loc.q = true
    elseif t.t == "atom" then loc[#loc + 1] = t.v
    elseif t.t == "@" then loc[#loc + 1] = "@" end
  end
  if at then
    for i = at + 1, spec_b do
      local t = toks[i]
      if t.t == "atom" or t.t == "qs" then dom[#dom + 1] = t.v end
    end
  end
  local l = concat(loc)
  if l == "" and #dom == 0 and not name then return nil end
  return { name = name, adl = adl, mailbox = l ~= "" and (loc.q and quote_local(l) or l) or nil,
    host = at and concat(dom) or nil }
end

--- Parse an address list into RFC 3501 ENVELOPE address structures:
-- {name=, adl=, mailbox=, host=} per mailbox (name raw, not decoded);
-- a group is framed by {mailbox=group name, group=true} and {} (host nil).
function M.envelope_addresses(s)
  local toks = tokenize(s)
  local out, item, in_angle, group = {}, {}, false, nil
  local function flush()
    local has = false
    for _, t in ipairs(item) do if t.t ~= "comment" then has = true; break end end
    if has then
      local m = mailbox(item)
      if m then out[#out + 1] = m end
    end
    item = {}
  end
  for _, t in ipairs(toks) do
    local k = t.t
    if k == "<" then in_angle = true; item[#item + 1] = t
    elseif k == ">" then in_angle = false; item[#item + 1] = t
    elseif in_angle then item[#item + 1] = t
    elseif k == "," then flush()
    elseif k == ":" and not group then
      local plain = true
      for _, x in ipairs(item) do if x.t == "@" then plain = false end end
      if plain then
        group = join_phrase(item, 1, #item) or ""
        out[#out + 1] = { mailbox = group, group = true }
        item = {}
      else
        item[#item + 1] = t
      end
    elseif k == ";" and group then
      flush(); out[#out + 1] = {}; group = nil
    elseif k == ")" or k == ";" then -- stray: ignore
    else item[#item + 1] = t end
  end
  flush()
  if group then out[#out + 1] = {} end
  return out
end

--- Parse an address list (RFC 5322 §3.4) into {name=, address=, group=}.
-- Names are decoded (RFC 2047) to UTF-8; quoted strings are unquoted;
-- comments serve as the name of a bare address ("a@x (Ann)"); members of a
-- group carry the group's name in `group`; empty groups give nothing.
-- @tparam string s header value
-- @treturn table array
function M.address_list(s)
  if type(s) ~= "string" then error("address_list: string expected", 2) end
  local out, group = {}, nil
  for _, a in ipairs(M.envelope_addresses(s)) do
    if a.group then group = M.decode(a.mailbox)
    elseif not a.mailbox and not a.host and not a.name then group = nil
    else
      local addr = a.mailbox or ""
      if a.host then addr = addr .. "@" .. a.host end
      out[#out + 1] = { name = a.name and M.decode(a.name) or nil,
        address = raw8(addr), group = group }
    end
  end
  return out
end

-- ------------------------------------------------------------------------
-- Parameters (RFC 2045 §5.1, RFC 2231)
-- ------------------------------------------------------------------------

local function pct_decode(s)
  return (gsub(s, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

--- Parse "value; a=b; c="d"" into value (lowercased), a map of decoded
-- parameters (lowercase names, RFC 2231 continuations joined and charset
-- decoded to UTF-8) and the raw ordered list {{name, value}, ...}.
function M.params(s)
  local semi = find(s, ";", 1, true)
  local value = semi and sub(s, 1, semi - 1) or s
  value = lower(gsub(gsub(value, "%b()", ""), "^%s*(.-)%s*$", "%1"))
  local map, list, pieces = {}, {}, {}
  local pos, n = semi and semi + 1 or #s + 1, #s
  local count = 0
  while pos <= n and count < 1000 do
    count = count + 1
    local a, b = find(s, "^[%s;]+", pos)
    if a then pos = b + 1 end
    if pos > n then break end
    local name
    a, b, name = find(s, "^([^=;%s]+)%s*", pos)
    if not a then pos = pos + 1; goto continue end
    pos = b + 1
    if sub(s, pos, pos) ~= "=" then goto continue end
    pos = pos + 1
    a, b = find(s, "^%s+", pos)
    if a then pos = b + 1 end
    local val
    if sub(s, pos, pos) == '"' then
      val, pos = quoted_string(s, pos, n)
    else
      local k = find(s, ";", pos, true) or n + 1
      val = gsub(sub(s, pos, k - 1), "%s+$", "")
      pos = k
    end
    list[#list + 1] = { name, val }
    do
      local lname = lower(name)
      local base, idx, star = lname:match("^(.-)%*(%d+)(%*?)$")
      if not base then
        base, star = lname:match("^(.-)(%*)$")
        idx = base and "0"
      end
      if base and base ~= "" then
        local p = pieces[base]
        if not p then p = {}; pieces[base] = p; pieces[#pieces + 1] = base end
        p[tonumber(idx) + 1] = { v = val, enc = star == "*" }
      elseif map[lname] == nil then
        map[lname] = val
      end
    end
    ::continue::
  end
  -- join RFC 2231 continuations; they win over a plain parameter
  for _, base in ipairs(pieces) do
    local p, buf, charset = pieces[base], {}, nil
    for i = 1, math.min(#p, 1000) do
      local seg = p[i]
      if not seg then break end
      local v = seg.v
      if seg.enc then
        if i == 1 then
          local cs, rest = v:match("^([^']*)'[^']*'(.*)$")
          if cs then charset = cs; v = rest end
        end
        v = pct_decode(v)
      end
      buf[#buf + 1] = v
    end
    map[base] = (M.to_utf8(concat(buf), charset ~= "" and charset or "utf-8"))
  end
  return value, map, list
end

-- attr-char (RFC 2231 §7) kept, everything else %XX.
local pctmap = {}
for b = 0, 255 do
  local c = char(b)
  pctmap[c] = find(c, "[%w!#$&+%-.^_`|~]") and c or format("%%%02X", b)
end

local function quote(v)
  return '"' .. gsub(v, '(["\\])', "\\%1") .. '"'
end
M.quote = quote

--- Format parameters for a Content-Type or Content-Disposition field as
-- fold pieces. `params` is a list {{name, value}, ...}. Non-ASCII values
-- get RFC 2231 `name*=UTF-8''...` (with continuations when long) plus a
-- quoted RFC 2047 form when the third field is true (what older clients
-- read), or only that form when it is "2047".
function M.param_pieces(params, utf8mode)
  local pieces = {}
  for _, p in ipairs(params) do
    local name, v, also = p[1], p[2], p[3]
    M.check(v, name, 3)
    if not find(v, "[\128-\255]") or utf8mode then
      pieces[#pieces + 1] = { " ", name .. "=" .. quote(v) .. ";" }
    else
      if also then
        pieces[#pieces + 1] = { " ", name .. "=" .. quote(concat(M.encode_words(v, { encoding = "B" }), " ")) .. ";" }
      end
      local enc = "UTF-8''" .. gsub(v, ".", pctmap)
      if also == "2047" then
        -- only the RFC 2047 form (Content-Type "name", read by old clients)
      elseif #enc + #name + 2 <= 76 then
        pieces[#pieces + 1] = { " ", name .. "*=" .. enc .. ";" }
      else
        local i, k, pos = 0, #enc, 1
        while pos <= k do
          local stop = math.min(pos + 59, k)
          -- never split a %XX escape
          local pc = enc:sub(stop - 1, stop):find("%%")
          if pc then stop = stop - 3 + pc end
          pieces[#pieces + 1] = { " ", format("%s*%d*=%s;", name, i, enc:sub(pos, stop)) }
          pos = stop + 1
          i = i + 1
        end
      end
    end
  end
  if #pieces > 0 then
    local last = pieces[#pieces]
    last[2] = last[2]:sub(1, -2)
  end
  return pieces
end

-- ------------------------------------------------------------------------
-- Dates (RFC 5322 §3.3, obsolete forms §4.3)
-- ------------------------------------------------------------------------

local DAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
  "Sep", "Oct", "Nov", "Dec" }
local MONTH_NUM = {}
for i, m in ipairs(MONTHS) do MONTH_NUM[lower(m)] = i end

-- days since 1970-01-01 of a civil date (H. Hinnant's algorithm)
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = (z >= 0 and z or z - 146096) // 146097
  local doe = z - era * 146097
  local yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
  local mp = (5 * doy + 2) // 153
  local d = doy - (153 * mp + 2) // 5 + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local function local_offset(t)
  local l = os.date("*t", t)
  local as_utc = days_from_civil(l.year, l.month, l.day) * 86400 +
    l.hour * 3600 + l.min * 60 + l.sec
  return (as_utc - t) // 60
end

--- Format a date as RFC 5322 §3.3 "Fri, 27 Nov 2026 14:03:07 +0100".
-- @tparam[opt=now] number t seconds since the epoch
-- @tparam[opt=local] number zone offset east of UTC in minutes
function M.date(t, zone)
  t = math.floor(t or os.time())
  zone = zone or local_offset(t)
  if type(zone) ~= "number" or zone <= -24 * 60 or zone >= 24 * 60 then
    error("date: zone must be minutes east of UTC", 2)
  end
  zone = math.floor(zone)
  local lt = t + zone * 60
  local days = lt // 86400
  local secs = lt % 86400
  local y, m, d = civil_from_days(days)
  local az = math.abs(zone)
  return format("%s, %02d %s %04d %02d:%02d:%02d %s%02d%02d",
    DAYS[(days + 4) % 7 + 1], d, MONTHS[m], y, secs // 3600, secs % 3600 // 60,
    secs % 60, zone < 0 and "-" or "+", az // 60, az % 60)
end

local ZONES = { ut = 0, gmt = 0, utc = 0, z = 0, est = -300, edt = -240,
  cst = -360, cdt = -300, mst = -420, mdt = -360, pst = -480, pdt = -420 }

--- Parse an RFC 5322 date (and the obsolete forms of §4.3: two-digit
-- years, named zones, missing seconds or day name, comments).
-- @treturn number seconds since the epoch (UTC)
-- @treturn number zone offset east of UTC in minutes
-- @return or nil, "bad date"
function M.parse_date(s)
  if type(s) ~= "string" then error("parse_date: string expected", 2) end
  if #s > 200 then return nil, "bad date" end
  s = lower(gsub(s, "%b()", " "))
  local d, mon, y, rest = s:match("^[%s%a]*,?%s*(%d%d?)[%s%-]+(%a%a%a)%a*[%s%-]+(%d%d%d?%d?)%s+(.*)$")
  if not d then return nil, "bad date" end
  local m = MONTH_NUM[mon]
  if not m then return nil, "bad date" end
  d, y = tonumber(d), tonumber(y)
  if y < 50 and #tostring(y) <= 2 then y = y + 2000
  elseif y < 1000 then y = y + 1900 end
  local hh, mm, ss, zone = rest:match("^(%d%d?)%s*:%s*(%d%d)%s*:?%s*(%d?%d?)%s*(.-)%s*$")
  if not hh then return nil, "bad date" end
  hh, mm, ss = tonumber(hh), tonumber(mm), tonumber(ss) or 0
  if d < 1 or d > 31 or hh > 23 or mm > 59 or ss > 60 then return nil, "bad date" end
  local off
  local sign, zh, zm = zone:match("^([+-])(%d%d)(%d%d)")
  if sign then
    off = tonumber(zh) * 60 + tonumber(zm)
    if sign == "-" then off = -off end
  else
    local name = zone:match("^(%a+)")
    off = name and ZONES[name] or 0 -- military and unknown zones: -0000
  end
  local t = days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss - off * 60
  return t, off
end

return M
