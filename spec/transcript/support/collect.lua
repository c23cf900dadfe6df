-- Shared by the transcript specs: a recorder that collects its entries,
-- and ways to look at them.
local transcript = require "parley.transcript"

local C = {}

--- A recorder collecting into `entries`; opts as for transcript.new.
function C.recorder(opts)
  local entries = {}
  local rec = transcript.new(function(e) entries[#entries + 1] = e end, opts)
  return rec, entries
end

--- The entries as "C: text" / "S: text" / "* text" strings (optionally of
-- one connection only).
function C.lines(entries, conn)
  local out = {}
  for _, e in ipairs(entries) do
    if conn == nil or e.conn == conn then
      out[#out + 1] = (e.dir == "*" and "* " or e.dir .. ": ") .. e.text
    end
  end
  return out
end

--- The index of the first line matching a Lua pattern at or after `from`.
function C.find(lines, pattern, from)
  for i = from or 1, #lines do
    if lines[i]:find(pattern) then return i end
  end
end

--- Asserts that the patterns match lines in this order.
function C.in_order(lines, patterns)
  local at = 0
  for _, p in ipairs(patterns) do
    local i = C.find(lines, p, at + 1)
    assert(i, ("no line matching %q after line %d in:\n%s"):format(p, at, table.concat(lines, "\n")))
    at = i
  end
end

--- Asserts that no line holds `s` (plain text).
function C.absent(lines, s)
  for _, l in ipairs(lines) do
    assert(not l:find(s, 1, true), ("%q shown in line %q"):format(s, l))
  end
end

--- Asserts that times never go back and that every entry has its fields.
function C.well_formed(entries)
  local last = 0
  for _, e in ipairs(entries) do
    assert(type(e.conn) == "number" and type(e.text) == "string", "entry fields")
    assert(e.dir == "C" or e.dir == "S" or e.dir == "*", "entry dir")
    assert(e.t >= last, "time went back")
    last = e.t
  end
end

--- A pattern for a bulk summary of n bytes: "%[3,614 bytes%]".
function C.bytes(n)
  return "%[" .. transcript.commas(n) .. " bytes%]"
end

--- The sum of bulk bytes in a direction.
function C.bulk(entries, dir)
  local n = 0
  for _, e in ipairs(entries) do
    if e.dir == dir and e.bytes then n = n + e.bytes end
  end
  return n
end

return C
