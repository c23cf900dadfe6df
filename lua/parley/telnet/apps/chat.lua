--- parley.telnet.apps.chat: a chat room (line mode).
--
-- Everyone connected to the same server shares one room.  Commands:
-- `/who`, `/nick NAME`, `/me ACTION`, `/quit`; any other line is said to
-- the room.  The nickname is the login name when the server asks for a
-- login, else the user picks one.
-- @module parley.telnet.apps.chat
local M = { description = "chat: a chat room shared by every connection" }

local MAX_NICK = 24

--- Returns the per-connection function; every connection of one server
-- shares the room created here.
-- @tparam[opt] table opts `motd` (a line shown on joining)
function M.new(opts)
  opts = opts or {}
  local room = { members = {}, count = 0 }

  local function nick_taken(nick)
    for _, n in pairs(room.members) do
      if n:lower() == nick:lower() then return true end
    end
    return false
  end

  local function broadcast(from, text)
    for s in pairs(room.members) do
      if s ~= from then s:print(text) end
    end
  end

  local function valid(nick)
    return nick and #nick >= 1 and #nick <= MAX_NICK and nick:match("^[%w_%-%.]+$")
  end

  local function ask_nick(sess)
    for _ = 1, 5 do
      sess:write("nickname: ")
      local nick, err = sess:read_line{ max = 64 }
      if not nick then return nil, err end
      if not valid(nick) then
        sess:print(("* a nickname is 1-%d letters, digits, _ - or ."):format(MAX_NICK))
      elseif nick_taken(nick) then
        sess:print("* " .. nick .. " is taken")
      else
        return nick
      end
    end
    return nil, "no nickname"
  end

  return function(sess)
    local nick = sess.user
    if not valid(nick) or nick_taken(nick) then
      local err
      nick, err = ask_nick(sess)
      if not nick then return nil, err end
    end
    room.members[sess] = nick
    room.count = room.count + 1
    sess:print(("* welcome, %s. %d here. /who /nick NAME /me ACTION /quit"):format(nick, room.count))
    if opts.motd then sess:print("* " .. opts.motd) end
    broadcast(sess, "* " .. nick .. " joined")
    local ok, err = pcall(function()
      for line in sess:lines() do
        line = line:gsub("[%c]", "")
        local cmd, arg = line:match("^/(%a+)%s*(.-)%s*$")
        if cmd == "quit" then
          sess:print("* bye")
          break
        elseif cmd == "who" then
          local names = {}
          for _, n in pairs(room.members) do names[#names + 1] = n end
          table.sort(names)
          sess:print("* here: " .. table.concat(names, ", "))
        elseif cmd == "nick" then
          if not valid(arg) then
            sess:print("* usage: /nick NAME")
          elseif nick_taken(arg) then
            sess:print("* " .. arg .. " is taken")
          else
            broadcast(nil, ("* %s is now %s"):format(nick, arg))
            nick = arg
            room.members[sess] = nick
          end
        elseif cmd == "me" then
          broadcast(nil, ("* %s %s"):format(nick, arg))
        elseif cmd then
          sess:print("* unknown command /" .. cmd)
        elseif line ~= "" then
          broadcast(sess, ("<%s> %s"):format(nick, line))
        end
      end
    end)
    room.members[sess] = nil
    room.count = room.count - 1
    broadcast(sess, "* " .. nick .. " left")
    if not ok then error(err, 0) end
  end
end

return M
