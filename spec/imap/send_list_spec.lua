-- stream:send_list, which the IMAP server's FETCH uses to write a response
-- (numbers, names, a header block) straight into the output buffer. Real
-- loopback sockets.
local H = require "helper"

-- runs fn(client, server_end) over a fresh loopback pair
local function pair(fn)
  H.run(function()
    local c, s = H.pair({ timeout = 2 })
    s:settimeout(2)
    local ok, err = pcall(fn, c, s)
    c:close(); s:close()
    if not ok then error(err, 0) end
  end)
end

describe("stream:send_list", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("queues the items as table.concat would join them", function()
    pair(function(c, s)
      local t = { "* ", 12, " FETCH (RFC822.SIZE ", -3, " X ", 2.5, " ", 2^53, " BODY[HEADER] {", 9,
                  "}\r\n", "A: b\r\n\r\n", ")\r\n" }
      assert.is_true(s:send_list(t))
      assert(s:flush())
      local want = table.concat(t)
      assert.equal(want, c:receive(#want))
    end)
  end)

  it("queues only items i to j when given", function()
    pair(function(c, s)
      assert.is_true(s:send_list({ "a", "b", 3, "d", "e" }, 2, 4))
      assert.is_true(s:send_list({ "x", "y" }, 2))
      assert.is_true(s:send_list({ "z" }, 1, 0))
      assert(s:flush())
      assert.equal("b3dy", c:receive(4))
    end)
  end)

  it("writes out a list bigger than the output buffer's high-water mark", function()
    pair(function(c, s)
      local big = ("h"):rep(100000)
      local got
      local want = "{100000}" .. big
      local reader = H.go(function() got = H.read_n(c, #want) end)
      assert.is_true(s:send_list({ "{", 100000, "}", big }))
      assert(s:flush())
      H.join(reader, 5)
      assert.equal(#want, #got)
      assert.is_true(want == got)
    end)
  end)

  it("raises on an item that is neither a string nor a number and queues nothing", function()
    pair(function(c, s)
      assert.has_error(function() s:send_list({ "a", {}, "c" }) end,
                       "item 2 of the list is a table, not a string or a number")
      assert.has_error(function() s:send_list("abc") end)
      assert.is_true(s:send_list({ "ok" }))
      assert(s:flush())
      assert.equal("ok", c:receive(2))
    end)
  end)
end)
