--- parley.telnet.apps.menu: a full-screen menu (character mode) that
-- shows what the session negotiated: terminal types, window size (redrawn
-- on every NAWS update), environment, option states; plus a line-mode
-- echo test.  Keys: arrows or j/k, digits, Enter, q.
-- @module parley.telnet.apps.menu
local M = { description = "menu: the session's terminal, window size and negotiated options" }

local ITEMS = {
  { key = "1", label = "Session" },
  { key = "2", label = "Telnet options" },
  { key = "3", label = "Echo test (line mode)" },
  { key = "q", label = "Quit" },
}

local function center(text, width)
  local pad = math.max(0, (width - #text) // 2)
  return (" "):rep(pad) .. text
end

local function session_lines(sess)
  local ip, port = sess.conn:getpeername()
  local env = {}
  for k, v in pairs(sess.env) do env[#env + 1] = k .. "=" .. tostring(v) end
  table.sort(env)
  return {
    "user:          " .. (sess.user or "(no login)"),
    "peer:          " .. tostring(ip) .. ":" .. tostring(port),
    "terminal type: " .. (sess.ttype or "(not sent)"),
    "all types:     " .. (#sess.ttypes > 0 and table.concat(sess.ttypes, ", ") or "-"),
    "window size:   " .. (sess.width and (sess.width .. "x" .. sess.height) or "(no NAWS)"),
    "environment:   " .. (#env > 0 and table.concat(env, " ") or "-"),
    "mode:          " .. (sess:is_charmode() and "character" or "line"),
  }
end

local function option_lines(sess)
  local rows = {}
  for name, st in pairs(sess:options()) do
    rows[#rows + 1] = ("%-14s us=%-9s him=%s"):format(name, st.us, st.him)
  end
  table.sort(rows)
  if #rows == 0 then rows[1] = "(no option negotiated)" end
  return rows
end

--- Returns the per-connection function.
function M.new()
  return function(sess)
    sess:charmode(true)
    local sel, info = 1, nil

    local function draw()
      local w = sess.width or 80
      local out = { "\27[H\27[2J", center("parley telnet menu", w), "\r\n\r\n" }
      for i, it in ipairs(ITEMS) do
        local line = ("  %s  %s"):format(it.key, it.label)
        if i == sel then line = "\27[7m" .. line .. "\27[0m" end
        out[#out + 1] = line .. "\r\n"
      end
      out[#out + 1] = "\r\n"
      for _, l in ipairs(info or {}) do out[#out + 1] = "  " .. l .. "\r\n" end
      out[#out + 1] = ("\r\n  [%dx%s] arrows/j/k, digits, Enter, q\r\n"):format(w, sess.height or "?")
      sess:write(table.concat(out))
    end

    local function echo_test()
      sess:charmode(false)
      sess:write("\27[H\27[2J")
      sess:print("echo test: each line comes back; a lone . returns to the menu")
      while true do
        local line, err = sess:read_line()
        if not line then
          if err ~= "interrupted" and err ~= "line too long" then return nil, err end
          break
        end
        if line == "." then break end
        sess:print("echo: " .. line)
      end
      sess:charmode(true)
      return true
    end

    local function choose(i)
      local key = ITEMS[i].key
      if key == "1" then info = session_lines(sess)
      elseif key == "2" then info = option_lines(sess)
      elseif key == "3" then
        local ok, err = echo_test()
        if not ok then return nil, err end
        info = nil
      elseif key == "q" then return "quit" end
      return true
    end

    local prev = sess.on_resize
    sess.on_resize = function(s, w, h)
      if prev then prev(s, w, h) end
      if s:is_charmode() then draw() end
    end
    draw()
    while true do
      local key, err = sess:read_key()
      if not key then return nil, err end
      local r = true
      if key == "\27[A" or key == "k" then sel = (sel - 2) % #ITEMS + 1
      elseif key == "\27[B" or key == "j" then sel = sel % #ITEMS + 1
      elseif key == "\r" then r, err = choose(sel)
      elseif key == "\3" or key == "\4" then r = "quit"
      else
        for i, it in ipairs(ITEMS) do
          if it.key == key:lower() then sel = i r, err = choose(i) end
        end
      end
      if r == "quit" then
        sess:write("\27[H\27[2J")
        sess:print("bye")
        return true
      end
      if not r then return nil, err end
      draw()
    end
  end
end

return M
