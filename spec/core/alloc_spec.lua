-- csrc/alloc.c: small Lua objects from size-class free lists under the
-- state's own allocator (off under the sanitizers and with PARLEY_ALLOC=libc).
local H = require "helper"
local core = require "parley.core"

local sanitized = os.getenv("PARLEY_SANITIZE") ~= nil

-- objects of every size the pool serves and beyond, kept and checked
local function churn(rounds, n)
  local sum = 0
  for r = 1, rounds do
    local keep = {}
    for i = 1, n do
      local len = (i * 7 + r) % 300
      local s = string.rep(string.char(65 + i % 26), len) .. i   -- strings of 1..306 bytes
      local t = {}
      for k = 1, i % 40 do t[k] = k end                          -- array parts grow, move classes
      for k = 1, i % 9 do t["k" .. k] = s end                    -- hash parts grow
      keep[i] = { s = s, t = t }
    end
    for i = 1, n, 3 do keep[i] = nil end                         -- holes, then a collection
    collectgarbage()
    for i = 1, n do
      local e = keep[i]
      if e then
        assert(e.s:sub(-#tostring(i)) == tostring(i), "string changed")
        assert(#e.t == i % 40, "array changed")
        for k = 1, i % 9 do assert(e.t["k" .. k] == e.s, "hash changed") end
        sum = sum + #e.s
        for k = #e.t, 1, -1 do e.t[k] = nil end                  -- shrink
      end
    end
  end
  return sum
end

describe("the Lua state's allocator", function()
  it("serves small objects from the pool, unless under a sanitizer", function()
    local kind, chunks, bytes = core.allocator()
    if sanitized then
      assert.equal("libc", kind)
    else
      assert.equal("pool", kind)
      assert.is_true(chunks >= 1)
      assert.equal(chunks * 65536, bytes)
    end
  end)

  it("keeps every object's bytes through growth, shrinking and collections", function()
    assert.is_true(churn(3, 3000) > 0)
  end)

  it("reuses freed blocks: the same work twice needs no new chunks the second time", function()
    if sanitized then return end
    churn(2, 2000)
    collectgarbage()
    local _, before = core.allocator()
    churn(2, 2000)
    collectgarbage()
    local _, after = core.allocator()
    assert.is_true(after <= before + 2, ("chunks %d -> %d"):format(before, after))
  end)

  it("keeps coroutines' stacks whole as they grow and shrink", function()
    local function deep(n) if n == 0 then return coroutine.yield(1) end return deep(n - 1) + 1 end
    local cos = {}
    for i = 1, 200 do
      cos[i] = coroutine.wrap(function() return deep(i) end)
      assert.equal(1, cos[i]())
    end
    collectgarbage()
    for i = 1, 200 do assert.equal(i + 1, cos[i](1)) end
  end)

  it("leaves a host's own allocator in place", function()
    local dir = H.tmpdir("alloc-host")
    local exe = dir .. "/host"
    assert(os.execute(("cc -std=c99 -I/usr/include/lua5.4 -o %s spec/support/alloc_host.c -llua5.4 2>&1")
      :format(exe)))
    local fh = assert(io.popen(("cd %s && LUA_CPATH='%s/build/?.so' timeout 60 %s 2>&1"):format(H.root, H.root, exe)))
    local out = fh:read("a")
    fh:close()
    H.rmdir(dir)
    assert.equal("libc\ncounted\n", out)
  end)

  it("is libc with PARLEY_ALLOC=libc, and a process exits cleanly with either", function()
    local c = H.child_with("env PARLEY_ALLOC=libc ", "alloc_child.lua")
    local out, how, code = c:finish()
    assert.are.same({ "exit", 0 }, { how, code })
    assert.matches("^libc\nok\n$", out)
    c = H.child_with("", "alloc_child.lua")
    out, how, code = c:finish()
    assert.are.same({ "exit", 0 }, { how, code })
    -- (a child loads build/, the plain build, under `make sanitize` too)
    assert.matches("^pool %d+ %d+\nok\n$", out)
  end)
end)
