--- parley.transcript.telnet: Telnet (RFC 854).
--
-- Commands are shown by name (`<IAC WILL ECHO>`, `<IAC SB NAWS 00 50 00
-- 18 IAC SE>`), CR NUL ends a line as CR LF does, and what the client
-- types after a server's `Password:` prompt is masked.
-- @module parley.transcript.telnet
local W = { eol_nul = true }

local COMMANDS = { [240] = "SE", [241] = "NOP", [242] = "DM", [243] = "BRK", [244] = "IP",
  [245] = "AO", [246] = "AYT", [247] = "EC", [248] = "EL", [249] = "GA", [250] = "SB",
  [251] = "WILL", [252] = "WONT", [253] = "DO", [254] = "DONT" }
local OPTIONS = { [0] = "BINARY", [1] = "ECHO", [3] = "SGA", [5] = "STATUS",
  [6] = "TIMING-MARK", [24] = "TTYPE", [31] = "NAWS", [32] = "TSPEED", [33] = "LFLOW",
  [34] = "LINEMODE", [35] = "XDISPLOC", [36] = "ENVIRON", [39] = "NEW-ENVIRON" }

local function option(b)
  return OPTIONS[b] or tostring(b)
end

-- Splits text into data and commands: returns the data bytes (IAC IAC
-- made one 0xFF) and the text shown (commands by name).
local function render(text)
  if not text:find("\255", 1, true) then return text, text end
  local data, shown, pos, n = {}, {}, 1, #text
  while pos <= n do
    local iac = text:find("\255", pos, true)
    if not iac then
      data[#data + 1] = text:sub(pos)
      shown[#shown + 1] = text:sub(pos)
      break
    end
    local piece = text:sub(pos, iac - 1)
    data[#data + 1], shown[#shown + 1] = piece, piece
    local cmd = text:byte(iac + 1)
    if cmd == 255 then
      data[#data + 1], shown[#shown + 1] = "\255", "\255"
      pos = iac + 2
    elseif cmd == 250 then
      local se = text:find("\255\240", iac + 2, true) or n + 1
      local bytes = {}
      for i = iac + 3, se - 1 do bytes[#bytes + 1] = ("%02x"):format(text:byte(i)) end
      shown[#shown + 1] = ("<IAC SB %s%s IAC SE>"):format(option(text:byte(iac + 2) or 0),
        #bytes > 0 and " " .. table.concat(bytes, " ") or "")
      pos = se + 2
    elseif cmd and cmd >= 251 then
      shown[#shown + 1] = ("<IAC %s %s>"):format(COMMANDS[cmd], option(text:byte(iac + 2) or 0))
      pos = iac + 3
    else
      shown[#shown + 1] = ("<IAC %s>"):format(cmd and (COMMANDS[cmd] or tostring(cmd)) or "")
      pos = iac + 2
    end
  end
  return table.concat(data), table.concat(shown)
end

function W.new()
  return { password = false }
end

function W.line(st, flow, dir, text, partial)
  local data, shown = render(text)
  if dir == "S" then
    if data:find("[Pp]assword:%s*$") then st.password = true end
    return shown
  end
  if st.password and data ~= "" then
    if not partial then st.password = false end
    if not flow:secrets() then
      -- keep the commands visible, hide what was typed
      local cmds = {}
      for c in shown:gmatch("<IAC [^>]*>") do cmds[#cmds + 1] = c end
      return "****" .. table.concat(cmds)
    end
  end
  return shown
end

return W
