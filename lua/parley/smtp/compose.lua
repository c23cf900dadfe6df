--- A small RFC 5322 / MIME message builder for `parley send`, used while
-- (or where) parley.mail.message is not available: Date, Message-ID,
-- From, To, Subject (RFC 2047 encoded words when not ASCII), a text part
-- (quoted-printable when needed, RFC 2045) and attachments as
-- multipart/mixed with base64 (RFC 2046).
-- @module parley.smtp.compose
local mime = require "mime"

local M = {}

local function encoded_word(s)
  if not s:find("[\128-\255]") and not s:find("=%?") then return s end
  -- RFC 2047 2: at most 75 characters per encoded word; split on
  -- character boundaries (UTF-8 lead bytes)
  local words, cur = {}, ""
  for ch in s:gmatch("[%z\1-\127\194-\244][\128-\191]*") do
    if #mime.b64(cur .. ch) > 60 then words[#words + 1] = cur; cur = "" end
    cur = cur .. ch
  end
  words[#words + 1] = cur
  for i, w in ipairs(words) do words[i] = "=?UTF-8?B?" .. (mime.b64(w)) .. "?=" end
  return table.concat(words, "\r\n ")
end
M.encoded_word = encoded_word

local function b64_lines(data)
  local b = mime.b64(data) or ""
  local out = {}
  for i = 1, #b, 76 do out[#out + 1] = b:sub(i, i + 75) end
  return table.concat(out, "\r\n")
end

local function crlf(s) return (s:gsub("\r\n", "\n"):gsub("\r", "\n"):gsub("\n", "\r\n")) end

local function text_part(text)
  text = crlf(text)
  local long = false
  for line in text:gmatch("[^\n]*") do if #line > 900 then long = true break end end
  if text:find("[\128-\255]") or long then
    local qp = mime.qp(text, "\r\n")
    return "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
      .. (mime.qpwrp(76, qp) or "")
  end
  return "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" .. text
end

local TYPES = { txt = "text/plain", html = "text/html", pdf = "application/pdf", png = "image/png",
  jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif", zip = "application/zip",
  csv = "text/csv", json = "application/json" }

--- Builds a message.
-- @tparam table m `from`, `to` (array), `subject`, `text`, `attachments`
-- (array of `{ filename =, data =, content_type = }`), `headers` (extra
-- `{ {name, value}, ... }`), `date`, `message_id`, `hostname`
-- @treturn string the message, CRLF line endings
function M.build(m)
  local host = m.hostname or (m.from:match("@([%w%.%-]+)$")) or "localhost"
  local h = {
    "Date: " .. (m.date or os.date("!%a, %d %b %Y %H:%M:%S +0000")),
    "From: " .. m.from,
    "To: " .. table.concat(m.to, ", "),
    "Subject: " .. encoded_word(m.subject or ""),
    "Message-ID: " .. (m.message_id or ("<%d.%06d@%s>"):format(os.time(), math.random(0, 999999), host)),
    "MIME-Version: 1.0",
  }
  for _, x in ipairs(m.headers or {}) do h[#h + 1] = x[1] .. ": " .. x[2] end
  local text = m.text or ""
  if not m.attachments or #m.attachments == 0 then
    return table.concat(h, "\r\n") .. "\r\n" .. text_part(text)
  end
  local boundary = ("=_parley_%d_%06d"):format(os.time(), math.random(0, 999999))
  h[#h + 1] = 'Content-Type: multipart/mixed; boundary="' .. boundary .. '"'
  local parts = { table.concat(h, "\r\n"), "", "This is a multi-part message in MIME format.", "" }
  parts[#parts + 1] = "--" .. boundary .. "\r\n" .. text_part(text)
  for _, a in ipairs(m.attachments) do
    local name = (a.filename or "attachment"):gsub('[\r\n"\\]', "_")
    local ctype = a.content_type or TYPES[(name:match("%.(%w+)$") or ""):lower()] or "application/octet-stream"
    local qname = name:find("[\128-\255]") and encoded_word(name) or name
    parts[#parts + 1] = "--" .. boundary .. "\r\nContent-Type: " .. ctype .. '; name="' .. qname ..
      '"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="' .. qname ..
      '"\r\n\r\n' .. b64_lines(a.data)
  end
  parts[#parts + 1] = "--" .. boundary .. "--\r\n"
  return table.concat(parts, "\r\n")
end

return M
