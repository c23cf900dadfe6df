--- parley.check.plugin: the Monitoring Plugins output every check shares.
--
-- One status line, `LABEL STATE - summary | perfdata`, and an exit status
-- 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Monitoring Plugins Development
-- Guidelines, "Plugin Return Codes" and "Performance data").
--
--     local plugin = require "parley.check.plugin"
--     plugin.over(2.5, 2)                    --> true (2 s itself is fine)
--     plugin.perfdata{ { label = "time", value = 0.004, uom = "s", warn = 1, crit = 2, min = 0 } }
--     --> "time=0.004000s;1.000;2.000;0;"
-- @module parley.check.plugin
local M = {}

--- Exit status of each state.
-- @table STATUS
M.STATUS = { OK = 0, WARNING = 1, CRITICAL = 2, UNKNOWN = 3 }

--- State of each exit status.
M.STATE = { [0] = "OK", "WARNING", "CRITICAL", "UNKNOWN" }

-- how bad a state is when two are combined: UNKNOWN means the check could
-- not judge, so a CRITICAL or WARNING it did find still wins
local RANK = { OK = 0, UNKNOWN = 1, WARNING = 2, CRITICAL = 3 }

--- The worse of two states.
-- @tparam string a "OK", "WARNING", "CRITICAL" or "UNKNOWN"
-- @tparam string b
-- @treturn string
function M.worst(a, b)
  if not RANK[a] or not RANK[b] then error("unknown state: " .. tostring(RANK[a] and b or a), 2) end
  return RANK[b] > RANK[a] and b or a
end

--- Whether `value` is past a threshold. A threshold of N seconds means
-- "alert when above N" (the guidelines' range `0:N`): N itself is fine.
-- @tparam number value
-- @tparam[opt] number threshold nil: never
-- @treturn boolean
function M.over(value, threshold)
  return threshold ~= nil and value > threshold
end

--- The state for a measured time against `-w` / `-c` thresholds.
-- @tparam number value seconds
-- @tparam[opt] number warn
-- @tparam[opt] number crit
-- @treturn string "OK", "WARNING" or "CRITICAL"
function M.judge(value, warn, crit)
  if M.over(value, crit) then return "CRITICAL" end
  if M.over(value, warn) then return "WARNING" end
  return "OK"
end

--- Parses a threshold given on the command line: a number of seconds.
-- @tparam string s
-- @return the number, or nil, err
function M.threshold(s)
  local n = tonumber(s)
  if not n or n < 0 or n ~= n or n == math.huge then
    return nil, ("bad threshold %q (seconds expected)"):format(tostring(s))
  end
  return n
end

local function number(v, uom)
  if v == nil then return "" end
  if uom == "s" then return ("%.3f"):format(v) end
  if math.type(v) == "integer" or v == math.floor(v) and math.abs(v) < 2^53 then
    return ("%d"):format(v)
  end
  return ("%.3f"):format(v)
end

-- labels with spaces, "=" or quotes are quoted, a quote doubled
local function label(s)
  if s:find("[%s='|]") then return "'" .. s:gsub("'", "''") .. "'" end
  return s
end

--- Formats performance data: `label=value[uom];[warn];[crit];[min];[max]`
-- for each entry, separated by spaces (trailing empty fields dropped).
-- @tparam table list array of `{ label =, value =, uom =, warn =, crit =, min =, max = }`
-- @treturn string
function M.perfdata(list)
  local out = {}
  for i, p in ipairs(list) do
    local value = p.uom == "s" and ("%.6f"):format(p.value) or number(p.value, p.uom)
    local fields = { label(p.label) .. "=" .. value .. (p.uom or ""),
      number(p.warn, p.uom), number(p.crit, p.uom), number(p.min), number(p.max) }
    local n = #fields
    while n > 1 and fields[n] == "" do n = n - 1 end
    -- keep one trailing ";" after min, as check_* plugins print it
    out[i] = table.concat(fields, ";", 1, n) .. (n == 4 and ";" or "")
  end
  return table.concat(out, " ")
end

--- The status line.
-- @tparam string name the plugin's label ("SMTP")
-- @tparam string state
-- @tparam string summary
-- @tparam[opt] table perf as for `perfdata`
-- @treturn string `SMTP OK - summary | perfdata` (no newline)
function M.line(name, state, summary, perf)
  -- "|" separates perfdata: it must not appear in the text
  local text = ("%s %s - %s"):format(name, state, (summary:gsub("|", "/"):gsub("[\r\n]+", " ")))
  local pd = perf and M.perfdata(perf) or ""
  if pd ~= "" then text = text .. " | " .. pd end
  return text
end

return M
