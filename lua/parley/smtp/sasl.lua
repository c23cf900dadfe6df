--- SASL helpers for SMTP AUTH (RFC 4954): PLAIN (RFC 4616), LOGIN,
-- CRAM-MD5 (RFC 2195, HMAC-MD5 per RFC 2104) and XOAUTH2, plus base64.
-- Pure Lua; MD5 follows RFC 1321.
-- @module parley.smtp.sasl
local mime = require "mime"

local M = {}

--- Base64-encodes a string (no line breaks).
function M.b64(s)
  if s == "" then return "" end
  return (mime.b64(s))
end

--- Decodes base64; `nil` when the input is not valid base64.
function M.unb64(s)
  if s == "" then return "" end
  if #s % 4 ~= 0 or s:find("[^%w%+/=]") or s:find("=[^=]") then return nil end
  return (mime.unb64(s))
end

-- MD5 (RFC 1321) -------------------------------------------------------

local K, S = {}, {
  7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
  5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
  4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
  6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
}
for i = 0, 63 do K[i + 1] = math.floor(math.abs(math.sin(i + 1)) * 2 ^ 32) & 0xffffffff end

local function rotl(x, n) return ((x << n) | (x >> (32 - n))) & 0xffffffff end

--- MD5 digest of `s` as 16 raw bytes.
function M.md5(s)
  local len = #s
  s = s .. "\128" .. string.rep("\0", (55 - len) % 64) .. string.pack("<I8", (len * 8) & 0xffffffffffffffff)
  local a0, b0, c0, d0 = 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476
  local X = {}
  for off = 1, #s, 64 do
    for i = 0, 15 do X[i] = string.unpack("<I4", s, off + i * 4) end
    local a, b, c, d = a0, b0, c0, d0
    for i = 0, 63 do
      local f, g
      if i < 16 then f = (b & c) | (~b & d); g = i
      elseif i < 32 then f = (d & b) | (~d & c); g = (5 * i + 1) % 16
      elseif i < 48 then f = b ~ c ~ d; g = (3 * i + 5) % 16
      else f = c ~ (b | (~d & 0xffffffff)); g = (7 * i) % 16 end
      f = (f + a + K[i + 1] + X[g]) & 0xffffffff
      a, d, c = d, c, b
      b = (b + rotl(f, S[i + 1])) & 0xffffffff
    end
    a0 = (a0 + a) & 0xffffffff; b0 = (b0 + b) & 0xffffffff
    c0 = (c0 + c) & 0xffffffff; d0 = (d0 + d) & 0xffffffff
  end
  return string.pack("<I4I4I4I4", a0, b0, c0, d0)
end

local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
M.hex = hex

--- HMAC-MD5 (RFC 2104) as lowercase hex.
function M.hmac_md5(key, msg)
  if #key > 64 then key = M.md5(key) end
  key = key .. string.rep("\0", 64 - #key)
  local ipad = key:gsub(".", function(c) return string.char(c:byte() ~ 0x36) end)
  local opad = key:gsub(".", function(c) return string.char(c:byte() ~ 0x5c) end)
  return hex(M.md5(opad .. M.md5(ipad .. msg)))
end

-- Client responses ------------------------------------------------------

--- PLAIN initial response (RFC 4616): base64(authzid NUL user NUL pass).
function M.plain(user, pass, authzid)
  return M.b64((authzid or "") .. "\0" .. user .. "\0" .. pass)
end

--- CRAM-MD5 response to a base64 challenge (RFC 2195).
function M.cram_md5(user, pass, challenge_b64)
  local ch = M.unb64(challenge_b64) or ""
  return M.b64(user .. " " .. M.hmac_md5(pass, ch))
end

--- XOAUTH2 initial response (Google/Microsoft): user and bearer token.
function M.xoauth2(user, token)
  return M.b64("user=" .. user .. "\1auth=Bearer " .. token .. "\1\1")
end

--- Decodes a PLAIN response: `authzid, user, pass` or `nil`.
function M.parse_plain(b64)
  local s = M.unb64(b64)
  if not s then return nil end
  local z, u, p = s:match("^([^%z]*)%z([^%z]*)%z([^%z]*)$")
  if not z then return nil end
  return z, u, p
end

return M
