--- parley.transcript.smtp: what an SMTP transcript hides and summarises.
--
-- Masks `AUTH <mech> <initial-response>` and every client line of an AUTH
-- exchange after a 334 (RFC 4954 4); summarises the DATA content after a
-- 354 (up to the lone ".") and the bytes of each `BDAT n` (RFC 3030).
-- @module parley.transcript.smtp
local W = {}

function W.new()
  return { data = false, auth = false, sasl = false }
end

local function client_line(st, flow, text)
  if st.sasl then
    if text == "*" or flow:secrets() then return text end   -- "*" cancels
    return "****"
  end
  local verb, rest = text:match("^(%a+)%s*(.*)$")
  verb = verb and verb:upper()
  if verb == "AUTH" then
    st.auth = true
    local mech = rest:match("^(%S+)%s+%S")
    if mech and not flow:secrets() then return text:sub(1, #text - #rest) .. mech .. " ****" end
  elseif verb == "DATA" and rest == "" then
    st.data = true
  elseif verb == "BDAT" then
    local n = tonumber(rest:match("^(%d+)"))
    if n then flow:bulk("C", "count", n) end
  end
  return text
end

local function server_line(st, flow, text)
  local code, sep = text:match("^(%d%d%d)([ -]?)")
  if not code then return text end
  if code == "334" and st.auth then
    st.sasl = true
  elseif sep ~= "-" then
    if st.auth then st.auth, st.sasl = false, false end
    if code == "354" and st.data then
      st.data = false
      flow:bulk("C", "dot")
    end
  end
  return text
end

function W.line(st, flow, dir, text)
  if dir == "C" then return client_line(st, flow, text) end
  return server_line(st, flow, text)
end

return W
