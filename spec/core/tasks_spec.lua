-- Tasks: run, spawn, sleep, now, join, cancel, cond, current, on_signal,
-- coroutine.yield, and blocking calls outside parley.run (doc/driver-api.md).
local parley = require "parley"
local H = require "helper"

describe("parley tasks", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  describe("run", function()
    it("runs a function as a task with the arguments given", function()
      local got
      parley.run(function(a, b)
        got = {a, b, parley.current() ~= nil}
      end, 1, "two")
      assert.same({1, "two", true}, got)
    end)

    it("returns only after every spawned task has finished", function()
      local done = {}
      parley.run(function()
        for i = 1, 3 do
          parley.spawn(function()
            parley.sleep(0.01 * i)
            done[#done + 1] = i
          end)
        end
      end)
      assert.same({1, 2, 3}, done)
    end)

    it("re-raises a string error with the task's traceback appended", function()
      local ok, err = pcall(parley.run, function()
        local function deep_inside_the_task() error("boom in task") end
        deep_inside_the_task()
      end)
      assert.is_false(ok)
      assert.is_string(err)
      assert.matches("boom in task", err, 1, true)
      assert.matches("traceback", err, 1, true)
      assert.matches("deep_inside_the_task", err, 1, true)
    end)

    it("passes a non-string error value through untouched", function()
      local e = {code = 42}
      local ok, err = pcall(parley.run, function() error(e) end)
      assert.is_false(ok)
      assert.equal(e, err)
    end)

    it("re-raises an error that comes after the task has waited", function()
      local ok, err = pcall(parley.run, function()
        parley.sleep(0.01)
        error("late boom")
      end)
      assert.is_false(ok)
      assert.matches("late boom", err, 1, true)
    end)

    it("runs normally again after a run that raised while tasks were waiting", function()
      local ok = pcall(parley.run, function()
        parley.spawn(function() parley.sleep(0.2) end)
        error("raised with a sleeper pending")
      end)
      assert.is_false(ok)
      local got
      local dt = H.timed(parley.run, function()
        parley.sleep(0.01)
        got = "second run"
      end)
      assert.equal("second run", got)
      assert.is_true(dt < 1, "second run took " .. dt)
    end)

    it("just calls the function when already inside a task", function()
      local outer, inner
      parley.run(function()
        outer = parley.current()
        parley.run(function() inner = parley.current() end)
      end)
      assert.is_not_nil(outer)
      assert.equal(outer, inner)
    end)

    it("has no current task outside run", function()
      assert.is_nil(parley.current())
    end)

    it("logs an error of a task nobody joins and keeps the loop running", function()
      local out, how, code = H.script("unjoined_error.lua")
      assert.matches("unjoined boom", out, 1, true)
      assert.matches("traceback", out, 1, true)
      assert.matches("still running after the error", out, 1, true)
      assert.same({"exit", 0}, {how, code}, out)
    end)
  end)

  describe("sleep and now", function()
    it("gives a monotonic clock that advances by the time slept", function()
      H.run(function()
        local t0 = parley.now()
        assert.is_number(t0)
        parley.sleep(0.05)
        local dt = parley.now() - t0
        assert.is_true(dt >= 0.045, "slept only " .. dt)
        assert.is_true(dt < 1, "slept " .. dt)
      end)
    end)

    it("wakes sleeping tasks in the order of their deadlines", function()
      local order = {}
      H.run(function()
        local ts = {}
        for _, v in ipairs{{"a", 0.06}, {"b", 0.02}, {"c", 0.04}} do
          ts[#ts + 1] = H.go(function()
            parley.sleep(v[2])
            order[#order + 1] = v[1]
          end)
        end
        H.join_all(ts)
      end)
      assert.same({"b", "c", "a"}, order)
    end)

    it("lets the other tasks run on sleep(0)", function()
      local log = {}
      H.run(function()
        local t = H.go(function() log[#log + 1] = "other" end)
        log[#log + 1] = "before"
        parley.sleep(0)
        log[#log + 1] = "after"
        H.join(t)
      end)
      local pos = {}
      for i, v in ipairs(log) do pos[v] = i end
      assert.is_true(pos.other < pos.after, table.concat(log, ","))
    end)

    it("lets the other tasks run on coroutine.yield()", function()
      local log = {}
      H.run(function()
        local t = H.go(function()
          for i = 1, 3 do
            log[#log + 1] = "b" .. i
            coroutine.yield()
          end
        end)
        for i = 1, 3 do
          log[#log + 1] = "a" .. i
          coroutine.yield()
        end
        H.join(t)
      end)
      -- both tasks progressed in turns: b1 comes before a3, a1 before b3
      local pos = {}
      for i, v in ipairs(log) do pos[v] = i end
      assert.equal(6, #log, table.concat(log, ","))
      assert.is_true(pos.b1 < pos.a3, table.concat(log, ","))
      assert.is_true(pos.a1 < pos.b3, table.concat(log, ","))
    end)

    it("wakes 1,000 sleepers in deadline order, also when some are cancelled", function()
      math.randomseed(20240611)
      local woke, early, cancelled_woke = {}, {}, {}
      H.run(function()
        local start = parley.cond()
        local ts = {}
        for i = 1, 1000 do
          local d = math.random(1, 100) / 1000  -- a timer: sleep(0) only yields
          ts[i] = parley.spawn(function()
            -- all start together, so no sleeper's wake-up waits on a slow spawn
            start:wait(5)
            local deadline = parley.now() + d
            local r = table.pack(parley.sleep(d))
            if r[2] == "cancelled" then return end
            if parley.now() < deadline - 0.001 then early[#early + 1] = i end
            woke[#woke + 1] = deadline
          end)
        end
        parley.sleep(0)
        start:broadcast()
        parley.sleep(0)
        for i = 3, 1000, 3 do ts[i]:cancel() end  -- removes from the middle of the timers
        for i = 1, 1000 do
          local ok = ts[i]:join(5)
          if not ok then cancelled_woke[#cancelled_woke + 1] = i end
        end
      end)
      assert.same({}, cancelled_woke)
      assert.same({}, early)
      assert.equal(1000 - 333, #woke)
      for k = 2, #woke do
        -- the loop measures the deadline just after we do (a busy machine may
        -- preempt us in between)
        assert.is_true(woke[k] >= woke[k - 1] - 0.01,
                       ("wake-up %d came before an earlier deadline (%.6f < %.6f)")
                       :format(k, woke[k], woke[k - 1]))
      end
    end)

    it("sleeps outside parley.run by running the loop right there", function()
      local t0 = parley.now()
      parley.sleep(0.02)
      local dt = parley.now() - t0
      assert.is_true(dt >= 0.015 and dt < 1, "slept " .. dt)
    end)
  end)

  describe("join", function()
    it("returns true and the task's results", function()
      H.run(function()
        local t = parley.spawn(function(a, b)
          parley.sleep(0.01)
          return a + b, "sum", nil, "after nil"
        end, 2, 3)
        local r = table.pack(t:join(5))
        assert.equal(5, r.n)
        assert.same({true, 5, "sum", nil, "after nil"}, {table.unpack(r, 1, r.n)})
      end)
    end)

    it("returns false and the error when the task raised", function()
      H.run(function()
        local t = parley.spawn(function()
          parley.sleep(0.01)
          error("bad thing happened")
        end)
        local ok, err = t:join(5)
        assert.is_false(ok)
        assert.matches("bad thing happened", tostring(err), 1, true)
      end)
    end)

    it("passes a table error to the joiner untouched", function()
      H.run(function()
        local e = {reason = "table error"}
        local t = parley.spawn(function() error(e) end)
        local ok, err = t:join(5)
        assert.is_false(ok)
        assert.equal(e, err)
      end)
    end)

    it("returns nil, timeout when the task outlives the timeout", function()
      H.run(function()
        local t = parley.spawn(function() parley.sleep(5) end)
        local dt, ok, err = H.timed(t.join, t, 0.05)
        assert.is_nil(ok)
        assert.equal("timeout", err)
        assert.is_true(dt >= 0.04 and dt < 1, "join waited " .. dt)
        t:cancel()
        assert.is_true((t:join(5)))
      end)
    end)

    it("joins a task that has already finished", function()
      H.run(function()
        local t = parley.spawn(function() return "early" end)
        parley.sleep(0.02)
        assert.same({true, "early"}, {t:join(1)})
      end)
    end)

    it("waits for a task outside parley.run", function()
      local t = parley.spawn(function()
        parley.sleep(0.01)
        return 7
      end)
      assert.same({true, 7}, {t:join(5)})
    end)

    it("lets several tasks join the same task", function()
      H.run(function()
        local t = parley.spawn(function()
          parley.sleep(0.02)
          return "shared"
        end)
        local js = {}
        for i = 1, 3 do js[i] = parley.spawn(function() return t:join(2) end) end
        for i = 1, 3 do assert.same({true, true, "shared"}, {js[i]:join(2)}) end
      end)
    end)

    it("keeps running a task whose handle was dropped", function()
      local finished = false
      H.run(function()
        parley.spawn(function()
          parley.sleep(0.02)
          finished = true
        end)
        collectgarbage()
        collectgarbage()
      end)
      assert.is_true(finished)
    end)

    it("gives a task handle a name and a string form", function()
      H.run(function()
        local t = parley.spawn(function() end)
        local mt = getmetatable(t)
        assert.is_table(mt)
        assert.matches("^parley", tostring(mt.__name))
        assert.is_string(tostring(t))
        assert.matches("parley", tostring(t), 1, true)
        H.join(t)
      end)
    end)
  end)

  describe("cancel", function()
    it("cancels a task held in a <close> variable when its scope ends", function()
      H.run(function()
        local got
        do
          local t <close> = parley.spawn(function() got = table.pack(parley.sleep(10)) end)
          parley.sleep(0.01)
          assert.equal("waiting", t:status())
        end
        parley.sleep(0.01)
        assert.same({n = 2, nil, "cancelled"}, got)
      end)
    end)

    it("makes a pending sleep return nil, cancelled at once", function()
      H.run(function()
        local t = parley.spawn(function()
          local t0 = parley.now()
          local r = table.pack(parley.sleep(5))
          return parley.now() - t0, r[1], r[2]
        end)
        parley.sleep(0.01)
        t:cancel()
        local ok, dt, a, b = t:join(2)
        assert.is_true(ok)
        assert.is_nil(a)
        assert.equal("cancelled", b)
        assert.is_true(dt < 1, "sleep lasted " .. tostring(dt))
      end)
    end)

    it("makes the next wait return cancelled when the task is not waiting", function()
      H.run(function()
        parley.current():cancel()
        local dt, a, b = H.timed(parley.sleep, 5)
        assert.is_nil(a)
        assert.equal("cancelled", b)
        assert.is_true(dt < 1)
      end)
    end)

    it("cancels one wait only: the wait after it works again", function()
      H.run(function()
        parley.current():cancel()
        assert.same({nil, "cancelled"}, {parley.sleep(5)})
        local dt = H.timed(parley.sleep, 0.02)
        assert.is_true(dt >= 0.015, "second sleep lasted " .. dt)
      end)
    end)

    it("interrupts a cond wait", function()
      H.run(function()
        local c = parley.cond()
        local t = parley.spawn(function() return c:wait(5) end)
        parley.sleep(0.01)
        t:cancel()
        assert.same({true, nil, "cancelled"}, {t:join(2)})
      end)
    end)

    it("interrupts a join", function()
      H.run(function()
        local sleeper = parley.spawn(function() parley.sleep(5) end)
        local joiner = parley.spawn(function() return sleeper:join(5) end)
        parley.sleep(0.01)
        joiner:cancel()
        assert.same({true, nil, "cancelled"}, {joiner:join(2)})
        sleeper:cancel()
        H.join(sleeper, 2)
      end)
    end)

    it("interrupts a blocked receive with nil, cancelled", function()
      H.run(function()
        local c, s = H.pair()
        local t = parley.spawn(function() return c:receive() end)
        parley.sleep(0.01)
        t:cancel()
        local ok, line, err = t:join(2)
        assert.is_true(ok)
        assert.is_nil(line)
        assert.equal("cancelled", err)
        c:close()
        s:close()
      end)
    end)

    it("interrupts a send blocked on a peer that never reads", function()
      H.run(function()
        local c, s = H.pair({timeout = 5})
        local w = parley.spawn(function()
          local chunk = string.rep("x", 65536)
          for _ = 1, 2000 do
            local r, e = c:send(chunk)
            if not r then return e end
          end
          return "never blocked"
        end)
        parley.sleep(0.2)
        w:cancel()
        assert.same({true, "cancelled"}, {w:join(2)})
        c:settimeout(0.1)
        c:close()
        s:close()
      end)
    end)

    it("interrupts a blocked accept with nil, cancelled", function()
      H.run(function()
        local l = assert(parley.listen("127.0.0.1:0"))
        local t = parley.spawn(function() return l:accept(5) end)
        parley.sleep(0.01)
        t:cancel()
        assert.same({true, nil, "cancelled"}, {t:join(2)})
        l:close()
      end)
    end)
  end)

  describe("cond", function()
    it("times out a wait with nil, timeout", function()
      H.run(function()
        local c = parley.cond()
        local dt, a, b = H.timed(c.wait, c, 0.03)
        assert.is_nil(a)
        assert.equal("timeout", b)
        assert.is_true(dt >= 0.025 and dt < 1, "waited " .. dt)
      end)
    end)

    it("wakes exactly one waiter on signal", function()
      H.run(function()
        local c = parley.cond()
        local woken = 0
        local ts = {}
        for i = 1, 3 do
          ts[i] = H.go(function()
            local ok = c:wait(0.3)
            if ok then woken = woken + 1 end
            return ok
          end)
        end
        parley.sleep(0.01)
        c:signal()
        parley.sleep(0.05)
        assert.equal(1, woken)
        H.join_all(ts, 2)
        assert.equal(1, woken)
      end)
    end)

    it("wakes every waiter on broadcast", function()
      H.run(function()
        local c = parley.cond()
        local ts = {}
        for i = 1, 5 do ts[i] = parley.spawn(function() return c:wait(2) end) end
        parley.sleep(0.01)
        local t0 = parley.now()
        c:broadcast()
        for i = 1, 5 do assert.same({true, true}, {ts[i]:join(2)}) end
        assert.is_true(parley.now() - t0 < 1)
      end)
    end)

    it("returns true from a wait without a timeout once signalled", function()
      H.run(function()
        local c = parley.cond()
        local t = parley.spawn(function() return c:wait() end)
        parley.sleep(0.01)
        c:signal()
        assert.same({true, true}, {t:join(2)})
      end)
    end)
  end)

  describe("plain-script use", function()
    it("connects, sends and receives outside parley.run", function()
      local l = assert(parley.listen("127.0.0.1:0"))
      local server = parley.spawn(function()
        local s = assert(l:accept(5))
        s:settimeout(5)
        local line = s:receive()
        s:send("echo " .. tostring(line) .. "\r\n")
        s:close()
      end)
      local c = assert(parley.connect("127.0.0.1", l:port(), {timeout = 5}))
      assert.equal(6, c:send("ping\r\n"))
      assert.equal("echo ping", c:receive())
      c:close()
      assert.is_true((server:join(5)))
      l:close()
    end)
  end)

  describe("on_signal", function()
    it("runs a Lua function as a task when the process gets the signal", function()
      local child = H.child("signal_child.lua")
      finally(function() child:cleanup() end)
      child:kill("USR1")
      assert.equal("got USR1", child:line())
      local out, how, code = child:finish()
      assert.same({"exit", 0}, {how, code}, out)
    end)

    it("restores the default action when given nil", function()
      local child = H.child("signal_child.lua", "restore")
      finally(function() child:cleanup() end)
      assert.equal("restored", child:line())
      child:kill("USR1")
      local out, how, code = child:finish()
      -- killed by SIGUSR1 (10): `timeout` re-raises it or exits 128+10
      assert.is_true((how == "signal" and code == 10) or
                     (how == "exit" and code == 138),
                     "child ended with " .. tostring(how) .. " " ..
                     tostring(code) .. ": " .. out)
    end)
  end)
end)
