-- parley.authdelay: the failed-login delay grows per address and is
-- forgotten after a success or the window.
local parley = require "parley"
local H = require "helper"
local authdelay = require "parley.authdelay"

describe("failed-login delays", function()
  it("cost the base at first, then double every step failures, up to factor times the base", function()
    H.run(function()
      local t = authdelay.new()
      local ip = "192.0.2.1"
      local seen = {}
      for i = 1, 30 do seen[i] = t:failed(ip, 0.001) end
      assert.equal(0.001, seen[1])
      assert.equal(0.001, seen[t.step])
      assert.equal(0.002, seen[t.step + 1])
      assert.equal(0.004, seen[2 * t.step + 1])
      assert.equal(0.001 * t.factor, seen[30])
    end)
  end)

  it("are kept apart per address and forgotten after a success", function()
    H.run(function()
      local t = authdelay.new()
      for _ = 1, 12 do t:failed("192.0.2.2", 0.001) end
      assert.is_true(t:cost("192.0.2.2", 1) > 1)
      assert.equal(1, t:cost("192.0.2.3", 1))
      t:succeeded("192.0.2.2")
      assert.equal(1, t:cost("192.0.2.2", 1))
    end)
  end)

  it("forget an address after the window", function()
    H.run(function()
      local t = authdelay.new{ window = 0.05 }
      for _ = 1, 12 do t:failed("192.0.2.4", 0.001) end
      assert.is_true(t:cost("192.0.2.4", 1) > 1)
      parley.sleep(0.1)
      assert.equal(1, t:cost("192.0.2.4", 1))
      assert.equal(0.001, t:failed("192.0.2.4", 0.001))
    end)
  end)

  it("wait nothing and count nothing with a base of 0", function()
    local t = authdelay.new()
    assert.equal(0, t:failed("192.0.2.5", 0))
    assert.equal(1, t:cost("192.0.2.5", 1))
  end)

  it("forget the oldest addresses when more than max_addresses failed", function()
    H.run(function()
      local t = authdelay.new{ max_addresses = 3, window = 0.02 }
      for i = 1, 3 do t:failed("192.0.2." .. (10 + i), 0.001) end
      parley.sleep(0.05)
      t:failed("192.0.2.20", 0.001)
      assert.equal(1, t.count)
    end)
  end)

  it("grow over the wire: a POP3 brute force from one address pays more and more", function()
    H.run(function()
      local dir = H.tmpdir()
      H.write(dir .. "/users", "alice:{PLAIN}secret\n")
      local store = assert(require("parley.mail.maildir").open(dir .. "/mail"))
      local users = assert(require("parley.mail.users").load(dir .. "/users"))
      local tracker = authdelay.new()
      local srv = assert(require("parley.pop3.server").serve{ listen = "127.0.0.1:0", store = store,
        users = users, auth_delay = 0.01, max_auth_failures = 100, signals = false,
        auth_tracker = tracker })
      local c = assert(parley.connect("127.0.0.1", srv.port, { timeout = 10 }))
      assert.matches("^%+OK", c:receive())
      local times = {}
      for i = 1, 2 * tracker.step + 1 do
        local t0 = parley.now()
        c:send("USER alice\r\nPASS wrong\r\n")
        assert.matches("^%+OK", c:receive())
        assert.matches("^%-ERR", c:receive())
        times[i] = parley.now() - t0
      end
      assert.is_true(times[#times] > 3 * times[1], ("first %.3f s, last %.3f s"):format(times[1], times[#times]))
      assert.equal(0.04, tracker:cost("127.0.0.1", 0.01))
      c:send("USER alice\r\nPASS secret\r\n")
      assert.matches("^%+OK", c:receive())
      assert.matches("^%+OK", c:receive())
      c:send("QUIT\r\n")
      assert.matches("^%+OK", c:receive())
      c:close()
      assert.equal(0.01, tracker:cost("127.0.0.1", 0.01))   -- the success forgot the failures
      srv:close()
      H.rmdir(dir)
    end)
  end)
end)
