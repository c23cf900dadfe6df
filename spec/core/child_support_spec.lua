-- spec/support/child.lua, which the protocol specs start servers with:
-- a server that dies at start-up must read as one, not as a port.
local child = require "support.child"

describe("spec support: child processes", function()
  it("takes the port from a server's announce line", function()
    local c = child.spawn([[sh -c 'echo "x server on 127.0.0.1:4321"; exec sleep 5']])
    assert.equal(4321, c.port)
    c:stop()
  end)

  it("takes no line number of a Lua error or its traceback for a port", function()
    local ok, err = pcall(child.spawn, [[lua5.4 -e 'error("boom")']])
    assert.is_false(ok)
    assert.matches("child did not start", err)
    assert.matches("boom", err)
  end)
end)
