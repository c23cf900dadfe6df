-- The HTTP server against malformed, oversized, slow and vanishing clients.
local parley = require "parley"
local H = require "helper"
local U = require "http.support.util"

local seen_err
local function app(a)
  a:post("/echo", function(req, res)
    local b, err, status = req:body()
    if not b then
      seen_err = err
      return res:error(status, err)
    end
    return res:send(b)
  end)
  a:get("/hello", function() return 200, "hello\n" end)
  a:get("/big", function(_, res)
    local block, n = ("z"):rep(65536), 0
    return res:send(function()
      n = n + 1
      if n > 800 then return nil end   -- 50 MiB
      return block
    end)
  end)
end

-- sends `bytes`, returns the status of the reply and whether the server closed
local function answer(srv, bytes, opts)
  local c <close> = U.connect(srv)
  local text, err = U.exchange(c, bytes, opts and opts.wait)
  return tonumber(text:match("^HTTP/1%.1 (%d%d%d)")), err == "closed", text
end

local function still_serving(srv)
  local c <close> = U.connect(srv)
  c:send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
  return U.read_responses(c, 1)[1].status == 200
end

describe("http server bad input", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("answers 400 and closes on Content-Length with Transfer-Encoding", function()
    U.with_app(app, function(srv)
      local status, closed = answer(srv, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        .. "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
      assert.equal(400, status)
      assert.is_true(closed)
    end)
  end)

  it("answers 400 to two differing Content-Length values", function()
    U.with_app(app, function(srv)
      local status, closed = answer(srv, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        .. "Content-Length: 4\r\n\r\nabcd")
      assert.equal(400, status)
      assert.is_true(closed)
      -- equal repeated values are one length (RFC 9110 §8.6)
      local c <close> = U.connect(srv)
      c:send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc")
      assert.equal("abc", U.read_responses(c, 1)[1].body)
    end)
  end)

  it("refuses Transfer-Encoding: gzip without chunked", function()
    U.with_app(app, function(srv)
      local status, closed = answer(srv, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nxxxx")
      assert.is_true(status == 400 or status == 501, tostring(status))
      assert.is_true(closed)
    end)
  end)

  it("answers 414 to a 9 KiB request line", function()
    U.with_app(app, function(srv)
      local status, closed = answer(srv, "GET /" .. ("a"):rep(9 * 1024) .. " HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.equal(414, status)
      assert.is_true(closed)
    end)
  end)

  it("answers 431 to 101 header fields and to a 33 KiB head", function()
    U.with_app(app, function(srv)
      local many = {}
      for i = 1, 101 do many[i] = "X-F" .. i .. ": v\r\n" end
      local status, closed = answer(srv, "GET /hello HTTP/1.1\r\nHost: x\r\n" .. table.concat(many) .. "\r\n")
      assert.equal(431, status)
      assert.is_true(closed)
      status = answer(srv, "GET /hello HTTP/1.1\r\nHost: x\r\n"
        .. ("X-Big: " .. ("b"):rep(1000) .. "\r\n"):rep(34) .. "\r\n")
      assert.equal(431, status)
    end)
  end)

  it("answers 400 to bare LF line endings", function()
    U.with_app(app, function(srv)
      local status, closed = answer(srv, "GET /hello HTTP/1.1\nHost: x\n\n")
      assert.equal(400, status)
      assert.is_true(closed)
    end)
  end)

  it("answers 400 to a NUL in a header and to obs-fold", function()
    U.with_app(app, function(srv)
      assert.equal(400, (answer(srv, "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n")))
      assert.equal(400, (answer(srv, "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n")))
    end)
  end)

  it("answers 505 to HTTP/2.0 in a request line", function()
    U.with_app(app, function(srv)
      assert.equal(505, (answer(srv, "GET /hello HTTP/2.0\r\nHost: x\r\n\r\n")))
    end)
  end)

  it("answers 400 to invalid chunk sizes", function()
    U.with_app(app, function(srv)
      for _, size in ipairs { "zz", "-1", "ffffffffffffffffffff", " 3", "3 4" } do
        seen_err = nil
        local status, closed = answer(srv, "POST /echo HTTP/1.1\r\nHost: x\r\n"
          .. "Transfer-Encoding: chunked\r\n\r\n" .. size .. "\r\nabc\r\n0\r\n\r\n")
        assert.equal(400, status, size)
        assert.is_true(closed, size)
        assert.matches("bad chunked body", seen_err)
      end
    end)
  end)

  it("gives the handler an error when the client closes inside the body", function()
    U.with_app(app, function(srv)
      seen_err = nil
      local c = U.connect(srv)
      c:send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
      c:flush()
      parley.sleep(0.05)
      c:close()
      for _ = 1, 100 do
        if seen_err then break end
        parley.sleep(0.01)
      end
      assert.equal("body shorter than declared", seen_err)
      assert.is_true(still_serving(srv))
    end)
  end)

  it("answers 408 to a client sending its head one byte at a time (slowloris)", function()
    U.with_app(app, function(srv)
      local c <close> = U.connect(srv)
      local req = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
      local t0 = parley.now()
      local sent, saw408 = 0, false
      for i = 1, #req do
        if not c:send(req:sub(i, i)) or not c:flush() then break end
        sent = i
        parley.sleep(0.1)
        if c:buffered() > 0 or parley.now() - t0 > 3 then break end
        -- stop as soon as the server answered
        c:settimeout(0)
        local got = c:receive_some(1) -- nil, "timeout" while nothing came
        if got then
          local rest = U.exchange(c, nil, 1)
          local text = got .. rest
          assert.matches("^HTTP/1%.1 408 ", text)
          saw408 = true
          break
        end
        c:settimeout(3)
      end
      local took = parley.now() - t0
      assert.is_true(saw408, "no 408")
      assert.is_true(sent < #req, "the whole request went through")
      assert.is_true(took >= 0.9 and took < 2.5, "408 after " .. took .. " s")
      assert.is_true(still_serving(srv))
    end, { header_timeout = 1 })
  end)

  it("stays up when a client closes in the middle of a large response", function()
    U.with_app(app, function(srv)
      for _ = 1, 3 do
        local c = U.connect(srv)
        c:send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        local got = 0
        while got < 300000 do
          local chunk = assert(c:receive_some(65536))
          got = got + #chunk
        end
        c:close()
      end
      for _ = 1, 200 do
        if srv:connections() == 0 then break end
        parley.sleep(0.01)
      end
      assert.equal(0, srv:connections())
      assert.is_true(still_serving(srv))
    end, { send_timeout = 2 })
  end)

  it("says nothing and closes when a fresh connection stays silent past the head deadline", function()
    U.with_app(app, function(srv)
      local c <close> = U.connect(srv)
      local t0 = parley.now()
      local text, err = U.exchange(c, nil, 3)
      assert.equal("", text)
      assert.equal("closed", err)
      assert.is_true(parley.now() - t0 < 2)
    end, { header_timeout = 0.5 })
  end)
end)
