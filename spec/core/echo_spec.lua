-- An echo server with many concurrent clients, all parley tasks in this
-- process, over real loopback sockets.
local parley = require "parley"
local H = require "helper"

local function echo(conn)
  for line in conn:lines() do conn:send(line .. "\r\n") end
end

-- Starts `n` clients against `srv`; each connects, waits until all `n` are
-- connected at once, then sends `lines` lines and checks its own echoes.
local function crowd(srv, host, n, lines)
  local connected, failed = 0, {}
  local go = parley.cond()
  local clients = {}
  for i = 1, n do
    clients[i] = H.go(function()
      -- connect in bursts of n/20 so the listen backlog never overflows
      parley.sleep((i % 20) * 0.005)
      local c, err = parley.connect(host, srv.port, {timeout = 10})
      if not c then
        failed[#failed + 1] = err
        error("client " .. i .. " could not connect: " .. tostring(err))
      end
      connected = connected + 1
      assert(go:wait(20), "client " .. i .. " was never released")
      for k = 1, lines do
        local msg = ("client %d line %d"):format(i, k)
        assert(c:send(msg .. "\r\n"))
        local got, rerr = c:receive()
        assert.equal(msg, got, rerr)
      end
      c:close()
      return i
    end)
  end
  -- wait until every client is connected and has its handler on the server
  local t0 = parley.now()
  while connected + #failed < n and parley.now() - t0 < 15 do parley.sleep(0.01) end
  assert.same({}, failed)
  assert.equal(n, connected)
  while srv:connections() < n and parley.now() - t0 < 20 do parley.sleep(0.01) end
  assert.equal(n, srv:connections())
  go:broadcast()
  H.join_all(clients, 20)
end

describe("echo server", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("echoes for 1,000 concurrent clients, each checking its own lines", function()
    H.run(function()
      local srv = parley.serve{listen = "127.0.0.1:0", handler = echo,
                               timeout = 10, signals = false}
      finally(function() srv:close(1) end)
      crowd(srv, "127.0.0.1", 1000, 3)
      local t0 = parley.now()
      while srv:connections() > 0 and parley.now() - t0 < 5 do parley.sleep(0.01) end
      assert.equal(0, srv:connections())
      srv:close(1)
    end, 40)
  end)

  it("echoes for 100 concurrent clients over IPv6", function()
    H.run(function()
      local srv = parley.serve{listen = "[::1]:0", handler = echo,
                               timeout = 10, signals = false}
      finally(function() srv:close(1) end)
      assert.equal("::1", srv.host)
      assert.equal("[::1]:" .. srv.port, srv.address)
      crowd(srv, "::1", 100, 3)
      srv:close(1)
    end, 30)
  end)
end)
