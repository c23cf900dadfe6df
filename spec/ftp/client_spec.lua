-- The FTP client: argument checks, sinks, sources, progress, passive
-- fallback, the 227 address, abort, resume.
local parley = require "parley"
local H = require "helper"
local F = require "ftp.support.ftp_helper"
local ftp = require "parley.ftp"

local function users(t)
  return { w = { password = "w", root = t.root, perms = "rwdmn" } }
end

describe("ftp client", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("raises on CR, LF or NUL in any argument before sending anything", function()
    F.with_server({}, function(srv)
      local c = F.client(srv)
      for _, call in ipairs{
        function() c:cwd("a\r\nDELE x") end,
        function() c:get("x\nDELE y") end,
        function() c:put("a\0b", "data") end,
        function() c:delete("x\r") end,
        function() c:rename("a", "b\nc") end,
        function() c:mkdir("d\0") end,
        function() c:size("s\n") end,
        function() c:login("u\r\n", "p") end,
        function() c:command("NOOP\r\nDELE", nil) end,
        function() c:list("x\ny") end,
      } do
        assert.has_error(call)
      end
      -- nothing went out: the next replies are still in step
      assert.is_true(assert(c:noop()))
      assert.equal("/", assert(c:pwd()))
      assert.equal(0, c.conn:buffered())
      c:quit()
    end)
  end)

  it("gets into a string, a path, an ltn12 sink and a file handle, with progress", function()
    F.with_server({}, function(srv, t)
      local c = F.client(srv)
      local want = F.read(t.root .. "/big.bin")
      local calls, last, total = 0, 0, nil
      local s = assert(c:get("big.bin", nil, { progress = function(n, tot) calls = calls + 1 last = n total = tot end }))
      assert.equal(want, s)
      assert.is_true(calls >= 1)
      assert.equal(#want, last)
      assert.equal(#want, total)
      local path = t.base .. "/got.bin"
      assert.equal(#want, assert(c:get("big.bin", path)))
      assert.equal(want, F.read(path))
      local ltn12 = require "ltn12"
      local parts = {}
      assert.equal(#want, assert(c:get("big.bin", ltn12.sink.table(parts))))
      assert.equal(want, table.concat(parts))
      local fh = assert(io.open(path, "wb"))
      assert.equal(13, assert(c:get("hello.txt", fh)))
      fh:close()
      assert.equal("hello, world\n", F.read(path))
      c:quit()
    end)
  end)

  it("puts a string, an ltn12 source, a file handle and a path, and resumes both ways", function()
    F.with_server({ users = users }, function(srv, t)
      local c = F.client(srv, "w", "w")
      local ltn12 = require "ltn12"
      assert.equal(6, assert(c:put("up/s.txt", "string")))
      assert.equal(9, assert(c:put("up/l.txt", ltn12.source.string("ltn12 src"))))
      assert.equal("ltn12 src", F.read(t.root .. "/up/l.txt"))
      local src = t.root .. "/big.bin"
      local fh = assert(io.open(src, "rb"))
      assert.equal(1048576, assert(c:put("up/f.bin", fh)))
      fh:close()
      assert.equal(F.read(src), F.read(t.root .. "/up/f.bin"))
      -- resume an upload: the server has 1000 bytes
      F.write(t.root .. "/up/r.bin", F.read(src):sub(1, 1000))
      local seen = 0
      assert(c:put_file("up/r.bin", src, { resume = true, progress = function(n) seen = n end }))
      assert.equal(1048576, seen)
      assert.equal(F.read(src), F.read(t.root .. "/up/r.bin"))
      -- resume a download: the local file has 5000 bytes
      local part = t.base .. "/part.bin"
      F.write(part, F.read(src):sub(1, 5000))
      assert.equal(1048576 - 5000, assert(c:get_file("big.bin", part, { resume = true })))
      assert.equal(F.read(src), F.read(part))
      c:quit()
    end)
  end)

  it("aborts a download when progress returns false, and from another task", function()
    F.with_server({ rate = 500000 }, function(srv)
      local c = F.client(srv)
      local n = 0
      local ok, err = c:get("big.bin", nil, { progress = function() n = n + 1 return n < 2 end })
      assert.is_nil(ok)
      assert.equal("aborted", err)
      assert.is_true(assert(c:noop()))
      local getter = H.go(function() return c:get("big.bin") end)
      parley.sleep(0.2)
      assert.is_true(c:abort())
      local r1, r2 = H.join(getter)
      assert.is_nil(r1)
      assert.equal("aborted", r2)
      assert.equal("hello, world\n", assert(c:get("hello.txt")))
      c:quit()
    end)
  end)

  it("falls back from EPSV to PASV and ignores the address in a 227 reply", function()
    H.run(function()
      -- a fake server: refuses EPSV, announces 10.255.255.1 in 227
      local data_l = assert(parley.listen("127.0.0.1:0"))
      local l = assert(parley.listen("127.0.0.1:0"))
      local seen = {}
      local srv = H.go(function()
        local s = assert(l:accept(5))
        s:send("220 fake\r\n")
        for line in s:lines() do
          seen[#seen + 1] = line
          local verb = line:match("^(%u+)")
          if verb == "USER" then s:send("331 pw\r\n")
          elseif verb == "PASS" then s:send("230 ok\r\n")
          elseif verb == "TYPE" then s:send("200 ok\r\n")
          elseif verb == "EPSV" then s:send("500 EPSV not understood\r\n")
          elseif verb == "PASV" then
            s:send("227 Entering Passive Mode (10,255,255,1," .. (data_l:port() >> 8) .. "," .. (data_l:port() & 255) .. ")\r\n")
          elseif verb == "RETR" then
            s:send("150 here\r\n")
            local d = assert(data_l:accept(5))
            d:send("payload")
            d:close()
            s:send("226 done\r\n")
          elseif verb == "QUIT" then s:send("221 bye\r\n") break end
        end
        s:close()
      end)
      local c = assert(ftp.client.connect("127.0.0.1", l:port(), { timeout = 5 }))
      assert(c:login("u", "p"))
      assert.equal("payload", assert(c:get("f")))
      assert.equal("payload", assert(c:get("f")))
      c:quit()
      H.join(srv)
      l:close()
      data_l:close()
      local epsv = 0
      for _, v in ipairs(seen) do if v == "EPSV" then epsv = epsv + 1 end end
      assert.equal(1, epsv)   -- not asked again after the refusal
    end)
  end)

  it("reads multi-line replies and reports failures with the reply", function()
    F.with_server({}, function(srv)
      local c = F.client(srv)
      local feats = assert(c:features())
      assert.truthy(feats.MLST)
      local ok, err, reply = c:cwd("nope")
      assert.is_nil(ok)
      assert.equal(550, reply.code)
      assert.matches("^550 ", err)
      assert.matches("FTP server status", assert(c:stat()))
      c:quit()
    end)
  end)

  it("returns nil and an error when nothing listens", function()
    H.run(function()
      local l = assert(parley.listen("127.0.0.1:0"))
      local port = l:port()
      l:close()
      local c, err = ftp.client.connect("127.0.0.1", port)
      assert.is_nil(c)
      assert.equal("connection refused", err)
    end)
  end)
  it("returns the 221 reply from quit, and nil, err, reply when QUIT is refused", function()
    F.with_server({}, function(srv)
      local c = F.client(srv)
      local ok, r = c:quit()
      assert.is_true(ok)
      assert.equal(221, r.code)
    end)
    H.run(function()
      local srv = assert(parley.serve{ listen = "127.0.0.1:0", handler = function(conn)
        conn:send("220 fake\r\n")
        assert.equal("QUIT", conn:receive())
        conn:send("500 not now\r\n")
      end })
      local c = assert(ftp.client.connect("127.0.0.1", srv.port))
      local ok, err, reply = c:quit()
      assert.is_nil(ok)
      assert.equal("500 not now", err)
      assert.equal(500, reply.code)
      srv:close()
    end)
  end)
end)
