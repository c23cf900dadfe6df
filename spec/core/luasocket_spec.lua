-- LuaSocket as an independent peer (in a child process, since LuaSocket
-- blocks), and parley.wrap adopting a LuaSocket connection.
local parley = require "parley"
local socket = require "socket"
local H = require "helper"

describe("LuaSocket interop", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("serves a LuaSocket client from a parley server in another process", function()
    local child = H.child("echo_server.lua")
    finally(function() child:cleanup() end)
    local c = assert(socket.connect("127.0.0.1", child.port))
    finally(function() c:close() end)
    c:settimeout(5)
    for i = 1, 5 do
      assert(c:send("hello " .. i .. "\r\n"))
      assert.equal("hello " .. i, c:receive("*l"))
    end
    local batch = {}
    for i = 1, 100 do batch[i] = "pipelined " .. i .. "\r\n" end
    assert(c:send(table.concat(batch)))
    for i = 1, 100 do assert.equal("pipelined " .. i, c:receive("*l")) end
    assert(c:send("quit\r\n"))
    assert.equal("bye", c:receive("*l"))
    assert.same({nil, "closed", ""}, {c:receive("*l")})
    c:close()
    child:kill("TERM")
    local out, how, code = child:finish()
    assert.same({"exit", 0}, {how, code}, out)
    assert.matches("server stopped", out, 1, true)
  end)

  it("talks as a parley client to a LuaSocket server in another process", function()
    local child = H.child("luasocket_server.lua")
    finally(function() child:cleanup() end)
    H.run(function()
      local c = assert(parley.connect("127.0.0.1", child.port, {timeout = 5}))
      for i = 1, 5 do
        c:send("line " .. i .. "\r\n")
        assert.equal("ls: line " .. i, c:receive())
      end
      c:send("quit\r\n")
      assert.equal("bye", c:receive())
      assert.equal("tail without newline", c:receive("a"))
      c:close()
    end)
    local out, how, code = child:finish()
    assert.same({"exit", 0}, {how, code}, out)
    assert.matches("luasocket server done", out, 1, true)
  end)

  it("adopts a connected LuaSocket object with parley.wrap", function()
    H.run(function()
      local l = assert(parley.listen("127.0.0.1:0"))
      -- the kernel completes the handshake: this blocking connect returns
      local tcp = assert(socket.connect("127.0.0.1", l:port()))
      local _, lport = tcp:getsockname()
      lport = tonumber(lport)  -- LuaSocket gives the port as a string
      local s = parley.wrap(tcp)
      assert.is_not_nil(s)
      -- the LuaSocket object no longer owns the descriptor: closing it
      -- (or collecting it) must leave the stream working
      assert.is_true(tcp:getfd() == -1 or
                     tostring(tcp):find("closed", 1, true) ~= nil,
                     tostring(tcp) .. " still holds fd " .. tostring(tcp:getfd()))
      tcp:close()
      local peer = assert(l:accept(2))
      l:close()
      local ip, port = s:getsockname()
      assert.same({"127.0.0.1", lport}, {ip, port})
      s:settimeout(2)
      peer:settimeout(2)
      s:send("through the wrapped socket\r\n")
      assert.equal("through the wrapped socket", peer:receive())
      peer:send("and back\r\n")
      assert.equal("and back", s:receive())
      s:close()
      assert.same({nil, "closed", ""}, {peer:receive()})
      peer:close()
    end)
  end)
end)
