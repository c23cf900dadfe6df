-- examples/telnet_chat.lua runs and its scripted visitor talks to the room.
local H = require "helper"
local T = require "telnet.support.th"

describe("examples/telnet_chat.lua", function()
  it("serves a chat room that a scripted visitor joins, talks in and leaves", function()
    local out = T.sh(("cd %s && LUA_PATH=%s LUA_CPATH=%s timeout 30 lua5.4 examples/telnet_chat.lua 127.0.0.1:0 --once; echo EXIT=$?")
      :format(T.quote(H.root), T.quote(H.root .. "/lua/?.lua;" .. H.root .. "/lua/?/init.lua;;"),
              T.quote(H.root .. "/build/?.so;;")))
    assert.matches("chat on 127%.0%.0%.1:%d+", out)
    assert.matches("welcome, bot", out)
    assert.matches("here: bot", out)
    assert.matches("EXIT=0", out)
  end)
end)
