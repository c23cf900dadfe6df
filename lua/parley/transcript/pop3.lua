--- parley.transcript.pop3: what a POP3 transcript hides and summarises.
--
-- Masks `PASS`, the `APOP` digest, `AUTH` initial responses and the
-- client lines of an AUTH exchange (RFC 5034); summarises the message
-- after `+OK` to `RETR` and `TOP` (RFC 1939 3: up to the lone "."). Other
-- multi-line replies (LIST, UIDL, CAPA) are shown line by line. Commands
-- are queued, so a pipelined batch (RFC 2449 PIPELINING) pairs each reply
-- with its command.
-- @module parley.transcript.pop3
local W = {}

function W.new()
  return { queue = {}, head = 1, tail = 0, listing = false, sasl = false }
end

-- commands whose +OK starts a multi-line reply when they have no argument
local LISTS = { LIST = true, UIDL = true, CAPA = true, AUTH = true }

local function client_line(st, flow, text)
  if st.sasl then
    if text == "*" or flow:secrets() then return text end
    return "****"
  end
  local verb, rest = text:match("^(%a+)%s*(.-)%s*$")
  if not verb then return text end
  verb = verb:upper()
  st.tail = st.tail + 1
  st.queue[st.tail] = { verb = verb, arg = rest ~= "" }
  if flow:secrets() then return text end
  local head = text:sub(1, #verb)
  if verb == "PASS" then
    return head .. " ****"
  elseif verb == "APOP" then
    local user = rest:match("^(%S+)%s+%S")
    if user then return head .. " " .. user .. " ****" end
  elseif verb == "AUTH" then
    local mech = rest:match("^(%S+)%s+%S")
    if mech then return head .. " " .. mech .. " ****" end
  end
  return text
end

local function server_line(st, flow, text)
  if text == "." then
    st.listing = false      -- the end of a listing, or of a message summarised
    return text
  end
  if st.listing then return text end
  if st.sasl then
    if text:sub(1, 1) == "+" and text:sub(1, 3) ~= "+OK" then return text end
    st.sasl = false
    return text
  end
  local cmd = st.queue[st.head]
  if not cmd then return text end      -- the greeting
  st.queue[st.head] = nil
  st.head = st.head + 1
  if text:sub(1, 3) == "+OK" then
    if cmd.verb == "RETR" or cmd.verb == "TOP" then
      flow:bulk("S", "dot")
    elseif LISTS[cmd.verb] and not cmd.arg then
      st.listing = true
    end
  elseif cmd.verb == "AUTH" and text:sub(1, 1) == "+" then
    st.sasl = true                       -- "+ challenge": the client answers
  end
  return text
end

function W.line(st, flow, dir, text)
  if dir == "C" then return client_line(st, flow, text) end
  return server_line(st, flow, text)
end

return W
