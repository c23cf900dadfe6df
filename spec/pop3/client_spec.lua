-- The POP3 client: every command against our server, -ERR with response
-- codes, argument checks, sinks, and un-stuffing whatever way the bytes
-- are split on the wire.
local U = require "pop3.support.util"
local H = U.H
local parley = require "parley"
local client = require "parley.pop3.client"

describe("pop3 client", function()
  local srv, store, root
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  -- a server over a fresh Maildir with these messages for alice
  local function with_server(fn, opts)
    U.serving({ "Subject: a\r\n\r\n.hidden\r\n..two\r\nend\r\n", "Subject: b\n\nbody b\n" }, opts,
      function(...) srv, store, root = ... fn() end)
  end

  local function connect()
    return assert(client.connect("127.0.0.1", srv.port, { timeout = 5 }))
  end

  it("reads CAPA into a table", function()
    with_server(function()
      local c = connect()
      local caps = assert(c:capa())
      assert.is_true(caps.TOP)
      assert.is_true(caps.UIDL)
      assert.is_true(caps["RESP-CODES"])
      assert.are.same({ "PLAIN" }, caps.SASL)
      assert.are.same({ "parley" }, caps.IMPLEMENTATION)
      assert.truthy(#caps.lines >= 7)
      c:close()
    end)
  end)

  it("runs a whole session: stat, list, uidl, retr, top, dele, rset, noop, quit", function()
    with_server(function()
      local c = connect()
      assert(c:login("alice", "wonderland"))
      local n, octets = c:stat()
      assert.are.equal(2, n)
      local sizes = assert(c:list())
      assert.are.equal(octets, sizes[1] + sizes[2])
      assert.are.equal(sizes[2], (c:list(2)))
      local ids = assert(c:uidl())
      assert.are.equal(2, #ids)
      assert.are_not.equal(ids[1], ids[2])
      local m1 = assert(c:retr(1))
      assert.are.equal("Subject: a\r\n\r\n.hidden\r\n..two\r\nend\r\n", m1)
      assert.are.equal(sizes[1], #m1)
      assert.are.equal("Subject: b\r\n\r\nbody b\r\n", (c:retr(2)))
      assert.are.equal("Subject: a\r\n\r\n.hidden\r\n", (c:top(1, 1)))
      assert.are.equal("Subject: b\r\n\r\n", (c:top(2, 0)))
      assert.is_true((c:dele(1)))
      assert.are.equal(1, (c:stat()))
      assert.is_true((c:rset()))
      assert.are.equal(2, (c:stat()))
      assert.is_true((c:noop()))
      assert(c:dele(2))
      assert(c:quit())
      assert.are.equal(1, #assert(store:mailbox("alice"):scan()))
    end)
  end)

  it("streams RETR to a sink function (ltn12 style) and to a Lua file", function()
    with_server(function()
      local c = connect()
      assert(c:login("alice", "wonderland"))
      local parts, ended = {}, false
      local n = assert(c:retr(2, function(chunk)
        if chunk == nil then ended = true else parts[#parts + 1] = chunk end
        return 1
      end))
      assert.is_true(ended)
      assert.are.equal("Subject: b\r\n\r\nbody b\r\n", table.concat(parts))
      assert.are.equal(#"Subject: b\r\n\r\nbody b\r\n", n)
      local path = root .. "/out.eml"
      local f = assert(io.open(path, "wb"))
      assert(c:retr(1, f))
      f:close()
      assert.are.equal("Subject: a\r\n\r\n.hidden\r\n..two\r\nend\r\n", U.slurp(path))
      -- a sink that fails: the error comes back, the session stays in step
      local r, err = c:retr(1, function() return nil, "disk full" end)
      assert.is_nil(r)
      assert.are.equal("disk full", err)
      assert.are.equal(2, (c:stat()))
      c:quit()
    end)
  end)

  it("returns nil, text, reply with the response code on -ERR", function()
    with_server(function()
      local c = connect()
      local ok, err, rep = c:login("alice", "nope")
      assert.is_nil(ok)
      assert.are.equal("invalid user name or password", err)
      assert.are.equal("AUTH", rep.code)
      assert.is_false(rep.ok)
      assert.are.equal("-ERR [AUTH] invalid user name or password", rep.line)
      assert(c:login("alice", "wonderland"))
      local r
      r, err, rep = c:retr(9)
      assert.is_nil(r)
      assert.are.equal("no such message", err)
      assert.is_nil(rep.code)
      c:quit()
    end, { max_auth_failures = 5 })
  end)

  it("logs in with APOP and with AUTH PLAIN", function()
    with_server(function()
      local c = connect()
      assert(c:apop("alice", "wonderland"))
      c:quit()
      c = connect()
      assert(c:auth_plain("bob", "builder"))
      assert.are.equal(0, (c:stat()))
      c:quit()
    end)
  end)

  it("raises on CR, LF or NUL in an argument and on bad numbers, before sending", function()
    with_server(function()
      local c = connect()
      assert.has_error(function() c:login("alice\r\nDELE 1", "x") end)
      assert.has_error(function() c:login("alice", "x\0") end)
      assert.has_error(function() c:apop("a\n", "x") end)
      assert.has_error(function() c:auth_plain("a", "b", "c\r") end)
      assert.has_error(function() c:retr(0) end)
      assert.has_error(function() c:retr("1") end)
      assert.has_error(function() c:top(1, -1) end)
      assert.has_error(function() c:retr(1, 42) end)
      assert.has_error(function() c:command("NOOP\r\nQUIT") end)
      -- nothing reached the server: the session is fresh
      assert(c:login("alice", "wonderland"))
      c:quit()
    end)
  end)

  it("reports a connection refused and an -ERR greeting", function()
    with_server(function()
      local l = assert(parley.listen("127.0.0.1:0"))
      local port = l:port()
      l:close()
      local c, err = client.connect("127.0.0.1", port)
      assert.is_nil(c)
      assert.are.equal("connection refused", err)
      local rep
      c, err, rep = client.connect("127.0.0.1:" .. srv.port)
      assert.is_nil(c)
      assert.are.equal("SYS/TEMP", rep.code, err)
    end, { on_connect = function() return "[SYS/TEMP] busy" end })
  end)

  it("un-stuffs bodies split anywhere on the wire and keeps the bytes that follow (randomized, fixed seed)", function()
    math.randomseed(7)
    local alphabet = { "a", ".", "\r\n", "..", "\r\n.", "\r\n..", "x.\r\n" }
    local cases = {}
    for i = 1, 40 do
      local parts = {}
      for j = 1, math.random(0, 30) do parts[j] = alphabet[math.random(#alphabet)] end
      local msg = table.concat(parts)
      if msg ~= "" and msg:sub(-2) ~= "\r\n" then msg = msg .. "\r\n" end
      cases[i] = msg
    end
    H.run(function()
      local fake = assert(parley.serve{ listen = "127.0.0.1:0", signals = false, handler = function(conn)
        conn:send("+OK fake <1.2@fake>\r\n")
        for i = 1, #cases do
          local line = conn:receive("l")
          if not line then return end
          local wire = "+OK\r\n" .. ("\r\n" .. cases[i]):gsub("\r\n%.", "\r\n.."):sub(3) .. ".\r\n"
          if i % 2 == 0 then wire = wire .. "+OK\r\n" end   -- the NOOP reply rides along
          local pos = 1
          while pos <= #wire do
            local n = math.random(1, 7)
            conn:send(wire:sub(pos, pos + n - 1))
            conn:flush()
            if math.random() < 0.3 then parley.sleep(0.001) end
            pos = pos + n
          end
          if i % 2 == 0 then conn:receive("l") end         -- the NOOP
        end
      end })
      local c = assert(client.connect("127.0.0.1", fake.port, { timeout = 5 }))
      assert.are.equal("<1.2@fake>", c.timestamp)
      for i = 1, #cases do
        assert.are.equal(cases[i], (c:retr(i)), ("%q"):format(cases[i]))
        if i % 2 == 0 then assert(c:noop()) end
      end
      c:close()
      fake:close(0)
    end, 30)
  end)

  it("parses status lines with and without response codes", function()
    assert.are.same({ true, nil, "2 320" }, { client.parse_status("+OK 2 320") })
    assert.are.same({ false, "IN-USE", "locked" }, { client.parse_status("-ERR [IN-USE] locked") })
    assert.are.same({ false, "SYS/TEMP", "" }, { client.parse_status("-ERR [SYS/TEMP]") })
    assert.are.same({ true, nil, "" }, { client.parse_status("+OK") })
    assert.is_nil(client.parse_status("+OKAY"))
    assert.is_nil(client.parse_status("* OK imap"))
  end)
end)
