-- The README's examples and the demo must keep working as written.
describe("the README", function()
  local function lua_blocks()
    local f = assert(io.open("README.md"))
    local text = f:read("a")
    f:close()
    local blocks = {}
    for code in text:gmatch("```lua\n(.-)```") do blocks[#blocks + 1] = code end
    return blocks
  end

  it("has an example that runs and prints what its comments promise", function()
    local blocks = lua_blocks()
    assert.is_true(#blocks >= 1)
    local tmp = os.tmpname()
    local f = assert(io.open(tmp, "w"))
    f:write('package.path = "lua/?.lua;lua/?/init.lua;" .. package.path\n',
            'package.cpath = "build/?.so;" .. package.cpath\n', blocks[1])
    f:close()
    local p = assert(io.popen("timeout 20 lua5.4 " .. tmp .. " 2>&1"))
    local out = p:read("a")
    local ok = p:close()
    os.remove(tmp)
    assert.is_true(ok, out)
    for expected in blocks[1]:gmatch("%-%->%s*([^\n]+)") do
      assert.matches(expected, out, 1, true)
    end
  end)
end)

describe("parley demo", function()
  it("starts the lab, tours it and exits cleanly with --exit", function()
    local p = assert(io.popen("timeout 20 lua5.4 bin/parley demo --exit --ports auto 2>&1"))
    local out = p:read("a")
    local ok, how, code = p:close()
    assert.is_true(ok, ("demo ended with %s %s:\n%s"):format(how, code, out))
    assert.matches("C: HELO client.lab.example", out, 1, true)
    assert.matches("✓ tour: (%d+) of %1 sessions passed", out)
  end)

  it("lists its commands and refuses unknown ones with status 2", function()
    local p = assert(io.popen("lua5.4 bin/parley help"))
    local out = p:read("a")
    assert.is_true(p:close())
    assert.matches("serve PROTO", out, 1, true)
    p = assert(io.popen("lua5.4 bin/parley frobnicate 2>&1"))
    out = p:read("a")
    local _, _, code = p:close()
    assert.equal(2, code)
    assert.matches("unknown command 'frobnicate'", out, 1, true)
  end)
end)
