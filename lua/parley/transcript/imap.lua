--- parley.transcript.imap: what an IMAP transcript hides and summarises.
--
-- Literals (`{n}`, `{n+}`, `~{n}`, RFC 9051 4.3) in either direction are
-- bulk: `[n bytes]`. Masks the password of `LOGIN` (atom, quoted string or
-- literal), the initial response of `AUTHENTICATE` and the client lines
-- of its exchange after a `+` continuation (RFC 9051 6.2.2).
-- @module parley.transcript.imap
local W = {}

function W.new()
  -- login: arguments of a LOGIN seen so far, while it goes on after a literal
  return { cont = false, login = nil, auth_tag = nil, sasl = false }
end

local function literal_at_end(text)
  return tonumber(text:match("~?{(%d+)%+?}$"))
end

-- Masks the password (second argument) in a piece of a LOGIN command.
-- Returns the shown piece and the count of arguments seen (a literal at
-- the end counts: its bytes follow).
local function login_args(rest, argi, mask)
  local out, pos, n = {}, 1, #rest
  while pos <= n do
    if rest:sub(pos, pos) == " " then
      out[#out + 1] = " "
      pos = pos + 1
    elseif rest:find("^~?{%d+%+?}$", pos) then
      out[#out + 1] = rest:sub(pos)
      return table.concat(out), argi + 1
    else
      local stop
      if rest:sub(pos, pos) == '"' then
        stop = pos + 1
        while stop <= n do
          local c = rest:sub(stop, stop)
          if c == "\\" then stop = stop + 2
          elseif c == '"' then break
          else stop = stop + 1 end
        end
        stop = math.min(stop, n)
      else
        stop = (rest:find(" ", pos, true) or n + 1) - 1
      end
      argi = argi + 1
      out[#out + 1] = (argi == 2 and mask) and "****" or rest:sub(pos, stop)
      pos = stop + 1
    end
  end
  return table.concat(out), argi
end

local function client_line(st, flow, text)
  local mask = not flow:secrets()
  local shown = text
  if st.sasl then
    if text ~= "*" and mask then shown = "****" end
  elseif st.cont then
    if st.login then shown, st.login = login_args(text, st.login, mask) end
  else
    st.login = nil
    local tag, verb, rest = text:match("^(%S+) (%a+) ?(.*)$")
    verb = verb and verb:upper()
    if verb == "LOGIN" then
      local args
      args, st.login = login_args(rest, 0, mask)
      shown = text:sub(1, #text - #rest) .. args
    elseif verb == "AUTHENTICATE" then
      st.auth_tag = tag
      local mech = rest:match("^(%S+) %S+$")
      if mech and mask then shown = text:sub(1, #text - #rest) .. mech .. " ****" end
    end
  end
  local n = literal_at_end(text)
  st.cont = n ~= nil
  if n then flow:bulk("C", "count", n, st.login == 2) end
  return shown
end

local function server_line(st, flow, text)
  if st.auth_tag then
    if text:sub(1, 1) == "+" then
      st.sasl = true
    elseif text:match("^(%S+)") == st.auth_tag then
      st.auth_tag, st.sasl = nil, false
    end
  end
  local n = literal_at_end(text)
  if n then flow:bulk("S", "count", n) end
  return text
end

function W.line(st, flow, dir, text)
  if dir == "C" then return client_line(st, flow, text) end
  return server_line(st, flow, text)
end

return W
