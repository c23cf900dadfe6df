--- parley.lab.jpeg: writes pixel art as a baseline JFIF file (ITU T.81).
--
-- Each character of the art is one flat 8x8 block of colour. A flat
-- block's DCT has only its DC term (F(0,0) = 8 * (v - 128), A.3.3), so the
-- file is the markers, the tables and one DC difference plus an
-- end-of-block per component and block: a real JPEG any decoder opens,
-- written without a DCT.
--
--     local jpeg = require "parley.lab.jpeg"
--     local bytes = jpeg.encode({ ".r.", "rrr" }, { ["."] = { 255, 255, 255 }, r = { 200, 40, 40 } })
-- @module parley.lab.jpeg
local M = {}

local char, concat = string.char, table.concat

-- The DC table is Annex K.3's luminance table (sizes 0-11); the AC table
-- holds only end-of-block (symbol 0x00), coded "00".
local DC_BITS = { 0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0 }
local DC_VALS = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 }
local AC_BITS = { 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }
local AC_VALS = { 0 }
local QUANT = 8   -- every entry: DC = v - 128 exactly

-- symbol -> { code, length } (Annex C.2)
local function huffman(bits, vals)
  local codes, code, k = {}, 0, 1
  for len = 1, 16 do
    for _ = 1, bits[len] do
      codes[vals[k]] = { code, len }
      code, k = code + 1, k + 1
    end
    code = code << 1
  end
  return codes
end

local DC_CODES, AC_CODES = huffman(DC_BITS, DC_VALS), huffman(AC_BITS, AC_VALS)

local function u16(n) return char(n >> 8 & 255, n & 255) end

local function segment(marker, body)
  return char(0xFF, marker) .. u16(#body + 2) .. body
end

local function bytes(list)
  local t = {}
  for i, v in ipairs(list) do t[i] = char(v) end
  return concat(t)
end

-- A bit writer that stuffs a 0x00 after every 0xFF byte (F.1.2.3).
local function bitwriter()
  local out, acc, n = {}, 0, 0
  local w = {}
  function w.put(code, len)
    for i = len - 1, 0, -1 do
      acc = acc << 1 | (code >> i & 1)
      n = n + 1
      if n == 8 then
        out[#out + 1] = char(acc)
        if acc == 0xFF then out[#out + 1] = "\0" end
        acc, n = 0, 0
      end
    end
  end
  function w.finish()
    if n > 0 then w.put((1 << (8 - n)) - 1, 8 - n) end   -- pad with 1 bits
    return concat(out)
  end
  return w
end

-- one block of a component: the DC difference (F.1.2.1), then EOB
local function block(w, diff)
  local size, mag = 0, diff < 0 and -diff or diff
  while mag > 0 do size, mag = size + 1, mag >> 1 end
  local c = DC_CODES[size]
  w.put(c[1], c[2])
  if size > 0 then
    w.put(diff < 0 and diff + (1 << size) - 1 or diff, size)
  end
  local eob = AC_CODES[0]
  w.put(eob[1], eob[2])
end

local function clamp(v)
  v = math.floor(v + 0.5)
  return v < 0 and 0 or v > 255 and 255 or v
end

-- JFIF's YCbCr (JFIF 1.02, "conversion to and from RGB")
local function ycbcr(rgb)
  local r, g, b = rgb[1], rgb[2], rgb[3]
  return clamp(0.299 * r + 0.587 * g + 0.114 * b),
         clamp(128 - 0.168736 * r - 0.331264 * g + 0.5 * b),
         clamp(128 + 0.5 * r - 0.418688 * g - 0.081312 * b)
end

--- Encodes pixel art as a JPEG.
-- @tparam table rows strings of equal length, one character a block
-- @tparam table palette character -> { r, g, b } (0-255)
-- @treturn string the JFIF file; the picture is 8 * #rows[1] pixels wide
-- and 8 * #rows high
function M.encode(rows, palette)
  if type(rows) ~= "table" or type(rows[1]) ~= "string" then error("rows must be a list of strings", 2) end
  if type(palette) ~= "table" then error("palette must be a table", 2) end
  local cols = #rows[1]
  local w, pred = bitwriter(), { 0, 0, 0 }
  for y, row in ipairs(rows) do
    if #row ~= cols then error(("row %d has %d blocks, not %d"):format(y, #row, cols), 2) end
    for x = 1, cols do
      local rgb = palette[row:sub(x, x)] or error(("no colour for %q"):format(row:sub(x, x)), 2)
      local comp = { ycbcr(rgb) }
      for c = 1, 3 do
        local dc = comp[c] - 128
        block(w, dc - pred[c])
        pred[c] = dc
      end
    end
  end
  local width, height = cols * 8, #rows * 8
  local quant = { 0 }
  for i = 2, 65 do quant[i] = QUANT end
  local dht = bytes{ 0x00 } .. bytes(DC_BITS) .. bytes(DC_VALS)
           .. bytes{ 0x10 } .. bytes(AC_BITS) .. bytes(AC_VALS)
  return concat{
    "\xFF\xD8",                                                   -- SOI
    segment(0xE0, "JFIF\0" .. bytes{ 1, 2, 0, 0, 1, 0, 1, 0, 0 }), -- APP0: 1:1 aspect, no thumbnail
    segment(0xDB, bytes(quant)),                                  -- DQT: table 0, 8-bit
    segment(0xC0, bytes{ 8 } .. u16(height) .. u16(width)          -- SOF0: 3 components, 4:4:4
      .. bytes{ 3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0 }),
    segment(0xC4, dht),                                           -- DHT: DC 0 and AC 0
    segment(0xDA, bytes{ 3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0 }), -- SOS: one interleaved scan
    w.finish(),
    "\xFF\xD9",                                                   -- EOI
  }
end

return M
