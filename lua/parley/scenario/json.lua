--- parley.scenario.json: a small JSON encoder (RFC 8259) for reports.
--
-- Tables whose keys are exactly 1..n (n > 0), or marked with `array`,
-- become arrays; other tables become objects with their keys sorted
-- (non-string keys are written with `tostring`). Strings are escaped
-- (`"`, `\`, every control character); bytes that are not valid UTF-8
-- are written as `\u00XX` (their Latin-1 reading) so the output is
-- always valid JSON. NaN and infinities become `null`; functions and
-- other values their `tostring`. Cycles raise.
-- @module parley.scenario.json
local M = {}

--- Deepest nesting `encode` accepts.
M.MAX_DEPTH = 100

local ARRAY = {}

--- Marks `t` as an array (so that an empty one is `[]`, not `{}`).
-- @tparam table t
-- @treturn table t
function M.array(t)
  return setmetatable(t, ARRAY)
end

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function escape_ascii(s)
  return (s:gsub('[%c"\\]', function(c)
    return ESC[c] or ("\\u%04x"):format(c:byte())
  end))
end

local function quote(s)
  if utf8.len(s) then return '"' .. escape_ascii(s) .. '"' end
  -- invalid UTF-8: keep the valid sequences, write stray bytes as \u00XX
  local out, i = {}, 1
  while i <= #s do
    local ok, code = pcall(utf8.codepoint, s, i)
    if ok and code then
      local len = #utf8.char(code)
      out[#out + 1] = escape_ascii(s:sub(i, i + len - 1))
      i = i + len
    else
      out[#out + 1] = ("\\u%04x"):format(s:byte(i))
      i = i + 1
    end
  end
  return '"' .. table.concat(out) .. '"'
end

local function is_array(t)
  if getmetatable(t) == ARRAY then return true end
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n
end

local encode

local function encode_table(t, out, depth, seen)
  if seen[t] then error("json: a table refers to itself", 0) end
  if depth > M.MAX_DEPTH then error("json: nested too deep", 0) end
  seen[t] = true
  if is_array(t) then
    out[#out + 1] = "["
    for i = 1, #t do
      if i > 1 then out[#out + 1] = "," end
      encode(t[i], out, depth + 1, seen)
    end
    out[#out + 1] = "]"
  else
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    local byname = {}
    for k, v in pairs(t) do byname[tostring(k)] = v end
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = quote(k)
      out[#out + 1] = ":"
      encode(byname[k], out, depth + 1, seen)
    end
    out[#out + 1] = "}"
  end
  seen[t] = nil
end

function encode(v, out, depth, seen)
  local t = type(v)
  if v == nil then out[#out + 1] = "null"
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then out[#out + 1] = "null"
    elseif math.type(v) == "integer" then out[#out + 1] = ("%d"):format(v)
    else
      local s = ("%.14g"):format(v)   -- short, unless it would not read back
      if tonumber(s) ~= v then s = ("%.17g"):format(v) end
      out[#out + 1] = s
    end
  elseif t == "string" then out[#out + 1] = quote(v)
  elseif t == "table" then encode_table(v, out, depth, seen)
  else out[#out + 1] = quote(tostring(v)) end
end

--- Encodes a Lua value as JSON text.
-- @param v
-- @treturn string
function M.encode(v)
  local out = {}
  encode(v, out, 0, {})
  return table.concat(out)
end

--- A string as a JSON string literal (also a valid YAML scalar).
-- @tparam string s
-- @treturn string
M.quote = quote

return M
