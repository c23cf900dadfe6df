-- bench/telnet codec throughput: core.telnet feed over 100 MB of mixed
-- data (text lines with CR LF, doubled IAC, IAC NOP / AYT, CR NUL, NAWS
-- subnegotiations, WILL/DO already agreed) in 64 KiB reads, and escape
-- over 100 MB of text with IAC and bare LF.  Prints "feed_mbs=X escape_mbs=Y".
local root = os.getenv("PARLEY_ROOT") or "."
package.cpath = root .. "/build/?.so;" .. package.cpath
local tn = require("parley.core").telnet
local total = tonumber(arg[1]) or 100 * 1000 * 1000

-- one 64 KiB block of mixed traffic
local parts, n, i = {}, 0, 0
while n < 65536 do
  i = i + 1
  local p
  if i % 50 == 0 then p = tn.naws(80 + i % 200, 24 + i % 50)
  elseif i % 17 == 0 then p = "\255\241"          -- IAC NOP
  elseif i % 29 == 0 then p = "\255\251\31"       -- WILL NAWS (already on: no reply)
  elseif i % 7 == 0 then p = "bin\255\255ary\r\0text\r\n"
  else p = ("line %06d of ordinary terminal text, some words and numbers\r\n"):format(i) end
  parts[#parts + 1] = p
  n = n + #p
end
local block = table.concat(parts)
local c = tn.new{ him = { "naws" }, us = { "echo" } }
c:feed("\255\251\31")   -- NAWS on, as in a real session
local t0, fed = os.clock(), 0
while fed < total do
  c:feed(block)
  fed = fed + #block
end
local feed_s = os.clock() - t0

local text = ("plain text line with an \255 byte and a bare\nLF and more words here\r\n"):rep(800)
local t1, esc = os.clock(), 0
while esc < total do
  tn.escape(text)
  esc = esc + #text
end
local esc_s = os.clock() - t1
io.write(("feed_mbs=%.0f escape_mbs=%.0f bytes=%d\n"):format(fed / 1e6 / feed_s, esc / 1e6 / esc_s, fed))
