-- 100 MB through one connection: sendfile and receive_to (file handle and
-- function sinks), checked with SHA-256.
local parley = require "parley"
local H = require "helper"

local SIZE = 100 * 1024 * 1024

describe("bulk transfer", function()
  local dir, src, src_sum

  setup(function()
    dir = H.tmpdir()
    src = dir .. "/source.bin"
    H.random_file(src, SIZE)
    src_sum = H.sha256(src)
  end)

  teardown(function() H.rmdir(dir) end)

  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("sends 100 MB with sendfile and receives it intact into a file", function()
    local dst = dir .. "/into-file.bin"
    H.run(function()
      local c, s = H.pair({timeout = 20})
      s:settimeout(20)
      local sender = H.go(function()
        local n = assert(s:sendfile(src))
        s:close()
        return n
      end)
      local out = assert(io.open(dst, "wb"))
      local n, err = c:receive_to(out, SIZE)
      out:close()
      assert.equal(SIZE, n, err)
      assert.equal(SIZE, H.join(sender, 30))
      assert.same({nil, "closed", ""}, {c:receive(1)})
      c:close()
    end, 60)
    assert.equal(src_sum, H.sha256(dst))
    os.remove(dst)
  end)

  it("streams 100 MB sent from Lua into a function sink until close", function()
    local sumfile = dir .. "/sink.sha256"
    local calls, ended = 0, false
    H.run(function()
      local c, s = H.pair({timeout = 20})
      s:settimeout(20)
      local sender = H.go(function()
        local f = assert(io.open(src, "rb"))
        local sent = 0
        for _ = 1, SIZE // 65536 + 1 do
          local chunk = f:read(256 * 1024)
          if not chunk then break end
          assert(s:send(chunk))
          sent = sent + #chunk
        end
        f:close()
        s:close()
        return sent
      end)
      local hash = assert(io.popen("sha256sum > '" .. sumfile .. "'", "w"))
      local n, err = c:receive_to(function(chunk)
        if chunk == nil then
          ended = true
        else
          calls = calls + 1
          hash:write(chunk)
        end
        return 1
      end)
      hash:close()
      assert.equal(SIZE, n, err)
      assert.equal(SIZE, H.join(sender, 30))
      c:close()
    end, 60)
    assert.is_true(ended, "the sink was not called with nil at the end")
    assert.is_true(calls > 1)
    local f = assert(io.open(sumfile))
    local got = f:read("a"):match("^(%x+)")
    f:close()
    assert.equal(src_sum, got)
  end)

  it("sends part of a file handle from an offset, count bytes", function()
    local path = dir .. "/small.txt"
    local content = {}
    for i = 1, 100 do content[i] = ("%09d\n"):format(i) end
    content = table.concat(content)  -- 1000 bytes
    local f = assert(io.open(path, "wb"))
    f:write(content)
    f:close()
    H.run(function()
      local c, s = H.pair({timeout = 5})
      local fh = assert(io.open(path, "rb"))
      -- offset as in sendfile(2): bytes skipped from the start
      assert.equal(50, s:sendfile(fh, 100, 50))
      fh:close()
      assert.equal(10, s:sendfile(path, 0, 10))
      assert.equal(1000, s:sendfile(path))
      assert.equal(content:sub(101, 150), c:receive(50))
      assert.equal(content:sub(1, 10), c:receive(10))
      assert.equal(content, c:receive(1000))
      c:close(); s:close()
    end)
    os.remove(path)
  end)

  it("returns nil and a message for a file that does not exist", function()
    H.run(function()
      local c, s = H.pair({timeout = 5})
      local n, err = s:sendfile(dir .. "/no-such-file")
      assert.is_nil(n)
      assert.is_string(err)
      c:close(); s:close()
    end)
  end)
  it("times a long receive_to by its progress, not as a whole", function()
    local path = dir .. "/slow.bin"
    H.run(function()
      local c, s = H.pair({timeout = 0.3})
      -- 8 pieces, 0.1 s apart: 0.8 s in all, more than the 0.3 s timeout,
      -- but never 0.3 s without a byte
      local sender = H.go(function()
        for i = 1, 8 do
          s:send(string.rep(string.char(64 + i), 1000))
          s:flush()
          parley.sleep(0.1)
        end
      end)
      local f = assert(io.open(path, "wb"))
      assert.equal(8000, c:receive_to(f, 8000))
      f:close()
      H.join(sender)
      -- a stall longer than the timeout still ends the call
      local g = assert(io.open(path .. ".2", "wb"))
      local n, err, got = c:receive_to(g, 10)
      g:close()
      assert.same({nil, "timeout", 0}, {n, err, got})
      c:close(); s:close()
    end)
    assert.equal(8000, #H.read(path))
    os.remove(path)
    os.remove(path .. ".2")
  end)
end)
