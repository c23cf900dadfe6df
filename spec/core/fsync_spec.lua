-- core.fs.fsync_async / fsync_dir_async: fsync(2) on the driver's worker
-- threads, so that only the calling task waits for the disk.
local parley = require "parley"
local core = require "parley.core"
local H = require "helper"
local T = require "mail.support.tmpdir"
local fs = core.fs

-- every job handed to the workers has ended (a cancelled task's job ends
-- on its worker, later): bounded in count and time
local function drained()
  for _ = 1, 500 do
    if fs.fsync_stats().jobs == 0 then return true end
    parley.sleep(0.01)
  end
  return false
end

-- a file of `size` bytes not yet on disk
local function dirty(path, size)
  local f = assert(fs.open(path, "wct"))
  assert(f:write(string.rep("x", size)))
  return f
end

describe("fs.fsync_async", function()
  local dir
  before_each(function()
    H.fd_snapshot()
    dir = T.new("fsync")
  end)
  after_each(function()
    parley.run(drained)
    T.cleanup()
    H.fd_check()
  end)

  describe("results", function()
    it("syncs a parley file, a Lua file and a descriptor in a task, on a worker", function()
      parley.run(function()
        local before = fs.fsync_stats().completed
        local f = dirty(dir .. "/a", 100000)
        assert.is_true(fs.fsync_async(f))
        local lf = assert(io.open(dir .. "/b", "w"))
        lf:write("buffered by stdio")
        assert.is_true(fs.fsync_async(lf))
        assert.is_true(fs.fsync_async(f:fd()))
        assert.is_true(fs.fsync_dir_async(dir))
        assert.equal(before + 4, fs.fsync_stats().completed)
        assert.equal(100000, fs.stat(dir .. "/a").size)
        assert.equal("buffered by stdio", T.read(dir .. "/b"))
        f:close()
        lf:close()
      end)
    end)

    it("gives the same errors as fs.fsync: a pipe, a closed descriptor, a missing directory", function()
      parley.run(function()
        local p = assert(io.popen("true"))
        assert.same({ fs.fsync(p) }, { fs.fsync_async(p) })
        assert.same({ nil, "invalid argument", 22 }, { fs.fsync_async(p) })
        p:close()
        local f = dirty(dir .. "/c", 10)
        local fd = f:fd()
        f:close()
        assert.same({ fs.fsync(fd) }, { fs.fsync_async(fd) })
        assert.same({ nil, "bad file descriptor", 9 }, { fs.fsync_async(fd) })
        assert.same({ fs.fsync_dir(dir .. "/none") }, { fs.fsync_dir_async(dir .. "/none") })
        assert.same({ nil, "not a directory", 20 }, { fs.fsync_dir_async(dir .. "/c") })
        -- a read-only descriptor: Linux syncs it like any other
        local ro = assert(io.open(dir .. "/c"))
        assert.same({ fs.fsync(ro) }, { fs.fsync_async(ro) })
        ro:close()
      end)
    end)

    it("raises on what is not a file or a descriptor, and on a closed file", function()
      parley.run(function()
        assert.has_error(function() fs.fsync_async("x") end)
        assert.has_error(function() fs.fsync_async({}) end)
        assert.has_error(function() fs.fsync_dir_async(nil) end)
        local f = dirty(dir .. "/d", 1)
        f:close()
        assert.has_error(function() fs.fsync_async(f) end, "attempt to use a closed file")
      end)
    end)

    it("syncs right here, on the calling thread, outside a task", function()
      local before = fs.fsync_stats().completed
      local f = dirty(dir .. "/e", 1000)
      assert.is_true(fs.fsync_async(f))
      assert.is_true(fs.fsync_dir_async(dir))
      assert.equal(before, fs.fsync_stats().completed)
      f:close()
    end)
  end)

  describe("concurrency", function()
    it("keeps the loop turning while 50 fsyncs are in flight", function()
      parley.run(function()
        local files = {}
        for i = 1, 50 do
          files[i] = dirty(dir .. "/t" .. i, 200000)
          assert(files[i]:flush())
        end
        local running, ticks_in_flight, max_gap = true, 0, 0
        local ticker = parley.spawn(function()
          local last = parley.now()
          while running do
            parley.sleep(0.001)
            local now = parley.now()
            if now - last > max_gap then max_gap = now - last end
            last = now
            if fs.fsync_stats().jobs > 0 then ticks_in_flight = ticks_in_flight + 1 end
          end
        end)
        local tasks = {}
        for i = 1, 50 do
          tasks[i] = parley.spawn(function()
            local f = files[i]
            local ok, err = fs.fsync_async(f)
            f:close()
            return ok, err
          end)
        end
        for i = 1, 50 do assert.same({ true, true }, { tasks[i]:join(30) }) end
        running = false
        ticker:join(5)
        assert.is_true(ticks_in_flight > 0)
        print(string.format("\n[fsync] 50 fsyncs of 200 kB: %d ticks while in flight, "
          .. "longest gap between 1 ms ticks %.1f ms", ticks_in_flight, max_gap * 1000))
      end)
    end)

    it("takes 400 fsyncs from 400 tasks at once, past the queue's bound", function()
      parley.run(function()
        local stats = fs.fsync_stats()
        assert.is_true(stats.max_jobs < 400)
        local tasks = {}
        for i = 1, 400 do
          tasks[i] = parley.spawn(function()
            local f = dirty(dir .. "/m" .. i, 100)
            local ok, err = fs.fsync_async(f)
            f:close()
            return ok, err
          end)
        end
        for i = 1, 400 do assert.same({ true, true }, { tasks[i]:join(60) }) end
        assert.equal(stats.completed + 400, fs.fsync_stats().completed)
        assert.is_true(fs.fsync_stats().workers >= 1)
      end)
    end)

    it("finishes the fsync of a file another task closes meanwhile", function()
      parley.run(function()
        local f = dirty(dir .. "/g", 500000)
        local t = parley.spawn(function() return fs.fsync_async(f) end)
        parley.sleep(0)                 -- t waits for its worker now
        assert.is_true(f:close())
        assert.same({ true, true }, { t:join(30) })
      end)
    end)
  end)

  describe("cancellation", function()
    it("answers cancelled, and the descriptor closes once the worker is done", function()
      parley.run(function()
        local n0 = H.fd_count()
        local files, tasks = {}, {}
        for i = 1, 20 do
          files[i] = dirty(dir .. "/k" .. i, 1000000)
          tasks[i] = parley.spawn(function() return fs.fsync_async(files[i]) end)
        end
        parley.sleep(0)                 -- all 20 wait for the workers
        for i = 1, 20 do tasks[i]:cancel() end
        local cancelled = 0
        for i = 1, 20 do
          local _, ok, err = tasks[i]:join(30)
          if ok == nil then
            assert.equal("cancelled", err)
            cancelled = cancelled + 1
          else
            assert.is_true(ok)
          end
          files[i]:close()
        end
        assert.is_true(cancelled > 0)
        assert.is_true(drained())
        assert.equal(n0, H.fd_count())
      end)
    end)

    it("answers cancelled to a task cancelled before it asks", function()
      parley.run(function()
        local f = dirty(dir .. "/l", 10)
        local t = parley.spawn(function()
          coroutine.yield()
          return fs.fsync_async(f)
        end)
        t:cancel()
        assert.same({ true, nil, "cancelled" }, { t:join(5) })
        f:close()
      end)
    end)
  end)
end)
