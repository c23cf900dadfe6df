-- parley.serve: handlers per connection, limits, timeouts, shutdown, errors,
-- and SIGTERM to a child process running a server.
local parley = require "parley"
local H = require "helper"

-- A server for in-process specs: never touches this process's signals.
local function serve(opts)
  opts.listen = opts.listen or "127.0.0.1:0"
  opts.signals = false
  return assert(parley.serve(opts))
end

local function connect(srv, opts)
  return assert(parley.connect("127.0.0.1", srv.port, opts or {timeout = 2}))
end

-- Polls `pred` every 10 ms for up to `limit` seconds.
local function eventually(pred, limit)
  local t0 = parley.now()
  while not pred() and parley.now() - t0 < (limit or 2) do parley.sleep(0.01) end
  return pred()
end

describe("parley.serve", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("tells the port, host and address it listens on", function()
    H.run(function()
      local srv = serve{handler = function() end}
      assert.is_number(srv.port)
      assert.is_true(srv.port > 0)
      assert.equal("127.0.0.1", srv.host)
      assert.equal("127.0.0.1:" .. srv.port, srv.address)
      srv:close()
    end)
  end)

  it("runs one handler task per connection", function()
    H.run(function()
      local tasks = {}
      local srv = serve{handler = function(conn)
        tasks[#tasks + 1] = parley.current()
        local _, port = conn:getpeername()
        conn:send("you are " .. port .. "\r\n")
        conn:receive()
      end}
      local cs = {}
      for i = 1, 3 do
        cs[i] = connect(srv)
        local _, port = cs[i]:getsockname()
        assert.equal("you are " .. port, cs[i]:receive())
      end
      assert.equal(3, srv:connections())
      assert.equal(3, #tasks)
      assert.is_true(tasks[1] ~= tasks[2] and tasks[2] ~= tasks[3])
      for _, c in ipairs(cs) do c:close() end
      assert.is_true(eventually(function() return srv:connections() == 0 end))
      srv:close()
    end)
  end)

  it("keeps the 11th client waiting until one of 10 leaves", function()
    H.run(function()
      local srv = serve{max_connections = 10, timeout = 5, handler = function(conn)
        conn:send("hello\r\n")
        conn:receive()
      end}
      local cs = {}
      for i = 1, 10 do
        cs[i] = connect(srv)
        assert.equal("hello", cs[i]:receive())
      end
      assert.equal(10, srv:connections())
      local eleventh = connect(srv, {timeout = 0.2})
      assert.same({nil, "timeout", ""}, {eleventh:receive()})
      assert.equal(10, srv:connections())
      cs[1]:send("bye\r\n")
      cs[1]:close()
      eleventh:settimeout(2)
      assert.equal("hello", eleventh:receive())
      eleventh:close()
      for i = 2, 10 do cs[i]:close() end
      srv:close(1)
    end)
  end)

  it("applies its timeout to every connection", function()
    H.run(function()
      local srv = serve{timeout = 0.1, handler = function(conn)
        local t0 = parley.now()
        local _, err = conn:receive()
        conn:settimeout(2)
        conn:send(("%s %.3f\r\n"):format(tostring(err), parley.now() - t0))
      end}
      local c = connect(srv)
      local line = c:receive()
      local err, dt = line:match("^(%S+) ([%d.]+)$")
      assert.equal("timeout", err, line)
      assert.is_true(tonumber(dt) >= 0.08 and tonumber(dt) < 1, line)
      c:close()
      srv:close()
    end)
  end)

  it("gives every connection its max_line and lenient options", function()
    H.run(function()
      local srv = serve{max_line = 10, lenient = true, handler = function(conn)
        for _ = 1, 3 do
          local line, err = conn:receive()
          conn:send(tostring(line) .. " " .. tostring(err) .. "\r\n")
        end
      end}
      local c = connect(srv)
      c:send("short\r\nmuch too long\r\nbare\n")
      assert.equal("short nil", c:receive())
      assert.equal("nil line too long", c:receive())
      assert.equal("bare nil", c:receive())
      c:close()
      srv:close()
    end)
  end)

  it("limits lines on its connections to 8192 bytes by default", function()
    H.run(function()
      local srv = serve{handler = function(conn)
        for _ = 1, 2 do
          local line, err = conn:receive()
          conn:send((line and #line or "nil") .. " " .. tostring(err) .. "\r\n")
        end
      end}
      local c = connect(srv)
      -- 8190 bytes + CRLF = 8192 pass; 8191 + CRLF = 8193 do not
      c:send(string.rep("a", 8190) .. "\r\n" .. string.rep("b", 8191) .. "\r\n")
      assert.equal("8190 nil", c:receive())
      assert.equal("nil line too long", c:receive())
      c:close()
      srv:close()
    end)
  end)

  it("gives its connections a 300 s I/O timeout by default", function()
    H.run(function()
      local srv = serve{handler = function(conn)
        -- getoption is the only way to see a 300 s timeout without waiting
        conn:send(tostring(conn.getoption and conn:getoption("timeout")) .. "\r\n")
      end}
      local c = connect(srv)
      assert.equal(300, tonumber(c:receive()))
      c:close()
      srv:close()
    end)
  end)

  it("counts the handlers running with connections()", function()
    H.run(function()
      local srv = serve{handler = function(conn) conn:receive() end}
      assert.equal(0, srv:connections())
      local a, b = connect(srv), connect(srv)
      assert.is_true(eventually(function() return srv:connections() == 2 end))
      a:send("done\r\n")
      assert.is_true(eventually(function() return srv:connections() == 1 end))
      b:close()
      assert.is_true(eventually(function() return srv:connections() == 0 end))
      a:close()
      srv:close()
    end)
  end)

  it("closes a connection whose handler raised, logs it, and serves the others", function()
    H.run(function()
      local errors = {}
      local srv = serve{
        on_error = function(err, conn)
          errors[#errors + 1] = {err = tostring(err), conn = conn}
        end,
        handler = function(conn)
          for line in conn:lines() do
            if line == "boom" then error("handler exploded") end
            conn:send("ok " .. line .. "\r\n")
          end
        end,
      }
      local a, b = connect(srv), connect(srv)
      a:send("one\r\n")
      b:send("two\r\n")
      assert.equal("ok one", a:receive())
      assert.equal("ok two", b:receive())
      a:send("boom\r\n")
      local line, err = a:receive()
      assert.is_nil(line)
      assert.is_true(err == "closed" or err == "connection reset", tostring(err))
      b:send("still there\r\n")
      assert.equal("ok still there", b:receive())
      local c = connect(srv)
      c:send("new\r\n")
      assert.equal("ok new", c:receive())
      assert.equal(1, #errors)
      assert.matches("handler exploded", errors[1].err, 1, true)
      assert.matches("traceback", errors[1].err, 1, true)
      assert.is_not_nil(errors[1].conn)
      a:close(); b:close(); c:close()
      srv:close()
    end)
  end)

  it("ends lingering handlers by closing their streams after the grace time", function()
    H.run(function()
      local results = {}
      local srv = serve{timeout = 30, handler = function(conn)
        conn:send("in\r\n")
        local line, err = conn:receive()  -- the client never sends
        results[#results + 1] = {line, err}
      end}
      local c = connect(srv, {timeout = 5})
      assert.equal("in", c:receive())
      local dt = H.timed(srv.close, srv, 0.2)
      assert.is_true(dt >= 0.15 and dt < 2, "close took " .. dt)
      assert.equal(0, srv:connections())
      assert.same({{nil, "closed"}}, results)
      assert.same({nil, "closed", ""}, {c:receive()})
      c:close()
      local refused, err = parley.connect("127.0.0.1", srv.port)
      assert.is_nil(refused)
      assert.equal("connection refused", err)
    end)
  end)

  it("returns from close as soon as the handlers finish within the grace time", function()
    H.run(function()
      local finished = false
      local srv = serve{handler = function(conn)
        conn:send("in\r\n")
        conn:flush()
        parley.sleep(0.1)
        conn:send("finished\r\n")
        finished = true
      end}
      local c = connect(srv, {timeout = 5})
      assert.equal("in", c:receive())
      local dt = H.timed(srv.close, srv, 5)
      assert.is_true(finished)
      assert.is_true(dt < 2, "close took " .. dt)
      assert.equal("finished", c:receive())
      c:close()
    end)
  end)

  describe("in a child process", function()
    it("stops accepting on SIGTERM, lets a running handler finish and exits 0", function()
      local child = H.child("serve_child.lua")
      finally(function() child:cleanup() end)
      H.run(function()
        local c = assert(parley.connect("127.0.0.1", child.port, {timeout = 5}))
        c:send("slow\r\n")
        assert.equal("started", c:receive())
        child:kill("TERM")
        parley.sleep(0.15)  -- the handler is in its 0.5 s pause
        local c2, err = parley.connect("127.0.0.1", child.port, {connect_timeout = 1})
        if c2 then c2:close() end
        assert.is_nil(c2, "the server still accepts after SIGTERM")
        assert.equal("connection refused", err)
        assert.equal("done", c:receive())
        c:close()
      end)
      local out, how, code = child:finish()
      assert.same({"exit", 0}, {how, code}, out)
      assert.matches("serve returned", out, 1, true)
    end)

    it("gives SIGTERM its default action back once the server is closed", function()
      local child = H.child("serve_child.lua", "close-then-wait")
      finally(function() child:cleanup() end)
      assert.equal("closed, waiting", child:line())
      child:kill("TERM")
      local out, how, code = child:finish()
      assert.is_nil(out:find("survived SIGTERM", 1, true), out)
      -- killed by SIGTERM (15): `timeout` re-raises it or exits 128+15
      assert.is_true((how == "signal" and code == 15) or
                     (how == "exit" and code == 143),
                     "child ended with " .. tostring(how) .. " " ..
                     tostring(code) .. ": " .. out)
    end)

    it("runs the loop in a plain script until SIGTERM, then returns", function()
      local port
      do
        local l = assert(parley.listen("127.0.0.1:0"))
        port = l:port()
        l:close()
      end
      local child = H.child("serve_child.lua", port)
      finally(function() child:cleanup() end)
      H.run(function()
        local c
        for _ = 1, 250 do  -- up to 5 s for the child to listen
          c = parley.connect("127.0.0.1", port, {timeout = 5})
          if c then break end
          parley.sleep(0.02)
        end
        assert.is_not_nil(c, "the plain-script server never listened")
        c:send("hi\r\n")
        assert.equal("echo hi", c:receive())
        c:close()
      end)
      child:kill("TERM")
      local out, how, code = child:finish()
      assert.same({"exit", 0}, {how, code}, out)
      assert.matches("serve returned", out, 1, true)
    end)

    it("logs a handler's error with its traceback on stderr by default", function()
      local child = H.child("serve_child.lua")
      finally(function() child:cleanup() end)
      H.run(function()
        local a = assert(parley.connect("127.0.0.1", child.port, {timeout = 5}))
        a:send("boom\r\n")
        local line, err = a:receive()
        assert.is_nil(line)
        assert.is_true(err == "closed" or err == "connection reset", tostring(err))
        a:close()
        local b = assert(parley.connect("127.0.0.1", child.port, {timeout = 5}))
        b:send("after\r\n")
        assert.equal("echo after", b:receive())
        b:close()
      end)
      child:kill("TERM")
      local out, how, code = child:finish()
      assert.matches("handler exploded", out, 1, true)
      assert.matches("traceback", out, 1, true)
      assert.same({"exit", 0}, {how, code}, out)
    end)
  end)
end)
