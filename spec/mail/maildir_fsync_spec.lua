-- Maildir delivery with fsync on, from tasks: the fsyncs run on the
-- driver's worker threads (fs.fsync_async), the order and the outcome stay.
local parley = require "parley"
local core = require "parley.core"
local maildir = require "parley.mail.maildir"
local H = require "helper"
local T = require "mail.support.tmpdir"
local fs = core.fs

local function names(path)
  local out = fs.listdir(path) or {}
  table.sort(out)
  return out
end

local function drained()
  for _ = 1, 500 do
    if fs.fsync_stats().jobs == 0 then return true end
    parley.sleep(0.01)
  end
  return false
end

describe("maildir delivery from tasks with fsync on", function()
  local root, store
  before_each(function()
    H.fd_snapshot()
    root = T.new("fsync")
    store = assert(maildir.open(root))
  end)
  after_each(function()
    parley.run(drained)
    T.cleanup()
    H.fd_check()
  end)

  it("delivers 100 messages from 100 tasks at once, each synced off the loop", function()
    parley.run(function()
      local before = fs.fsync_stats().completed
      local tasks = {}
      for i = 1, 100 do
        tasks[i] = parley.spawn(function()
          return store:deliver("alice", "Subject: " .. i .. "\r\n\r\nbody " .. i .. "\r\n")
        end)
      end
      local got = {}
      for i = 1, 100 do
        local ok, name = tasks[i]:join(60)
        assert.is_true(ok)
        assert.is_string(name)
        got[#got + 1] = name
      end
      table.sort(got)
      assert.same(got, names(root .. "/alice/new"))
      assert.same({}, names(root .. "/alice/tmp"))
      -- the file and new/ for each message
      assert.equal(before + 200, fs.fsync_stats().completed)
    end)
  end)

  it("gives the same names and bytes as a delivery outside a task", function()
    local msg = "Subject: x\r\n\r\n" .. string.rep("line\n", 1000)
    local a = assert(store:deliver("bob", msg))
    local b = parley.run(function() return assert(store:deliver("bob", msg)) end)
    assert.equal(a:match(",S=.*$"), b:match(",S=.*$"))
    assert.equal(msg, T.read(root .. "/bob/new/" .. b))
  end)

  it("leaves nothing in new/ or tmp/ when the delivering task is cancelled", function()
    parley.run(function()
      local tasks, go = {}, parley.cond()
      for i = 1, 10 do
        tasks[i] = parley.spawn(function()
          local d = assert(store:delivery("carol"))
          assert(d:write(string.rep("x", 1000000) .. i))
          go:wait()
          return d:commit()
        end)
      end
      parley.sleep(0)                 -- every one has written its message
      go:broadcast()
      parley.sleep(0)                 -- every one waits for its fsync
      for i = 1, 10 do tasks[i]:cancel() end
      local kept = 0
      for i = 1, 10 do
        local ok, name, err = tasks[i]:join(60)
        assert.is_true(ok)
        if name then kept = kept + 1 else assert.equal("cancelled", err) end
      end
      assert.is_true(kept < 10)
      assert.equal(kept, #names(root .. "/carol/new"))
      assert.same({}, names(root .. "/carol/tmp"))
      assert.is_true(drained())
    end)
  end)
end)
