-- The driver's HTTP head methods (doc/driver-api.md): request heads parsed
-- in the stream's input buffer, response heads written into its output
-- buffer. Real loopback sockets.
local parley = require "parley"
local core = require "parley.core"
local H = require "helper"

-- runs fn(client, server_end) over a fresh loopback pair
local function pair(fn)
  H.run(function()
    local l = assert(parley.listen("127.0.0.1:0"))
    local c = assert(parley.connect("127.0.0.1", l:port(), { timeout = 2 }))
    local s = assert(l:accept(2))
    s:settimeout(2)
    local ok, err = pcall(fn, c, s)
    c:close(); s:close(); l:close()
    if not ok then error(err, 0) end
  end)
end

local function put(w, data)
  assert(w:send(data))
  assert(w:flush())
end

local limits = core.http.limits{ max_request_line = 64, max_head = 256, max_headers = 4 }

describe("stream:receive_http_head", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("parses pipelined heads one per call and leaves a body buffered", function()
    pair(function(c, s)
      put(c, "POST /a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
             .. "GET /b HTTP/1.0\r\nX-One: 1\r\nX-One: 2\r\n\r\n")
      local method, target, minor, headers = s:receive_http_head(limits)
      assert.same({ "POST", "/a?x=1", 1 }, { method, target, minor })
      assert.equal("h", headers.host)
      assert.same({ "host", "h", "content-length", "3" }, { table.unpack(headers, 1, 4) })
      assert.equal("abc", s:receive(3))
      method, target, minor, headers = s:receive_http_head(limits)
      assert.same({ "GET", "/b", 0, "1, 2" }, { method, target, minor, headers["x-one"] })
      assert.equal(0, s:buffered())
    end)
  end)

  it("builds the server's request object when given its metatable", function()
    pair(function(c, s)
      local methods = {}
      local mt = { __index = core.http.request_index(methods, "peer", s) }
      put(c, "POST /a%2Fb?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
             .. "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
      local req, keep, kind, len, refuse, method, path, minor = s:receive_http_head(limits, nil, mt)
      assert.equal(mt, getmetatable(req))
      assert.same({ "POST", "/a/b", 1 }, { method, path, minor })
      assert.same({ "POST", "/a%2Fb?x=1", "/a/b", "x=1", 1, "h", "peer" },
                  { req.method, req.target, req.path, req.query, req.minor, req.headers.host, req.peer })
      assert.equal(s, req.conn)
      assert.same({ true, "length", 3 }, { keep, kind, len })
      assert.is_nil(refuse)
      assert.equal("abc", s:receive(3))
      req, keep, kind = s:receive_http_head(limits, true, mt)
      assert.same({ "/", false, "none" }, { req.path, keep, kind })
      assert.equal(0, s:buffered())
    end)
  end)

  it("says false for a partial head, then waits for the whole one when asked", function()
    pair(function(c, s)
      put(c, "GET / HTTP/1.1\r\nHo")
      assert.is_false(s:receive_http_head(limits))
      assert.is_false(s:receive_http_head(limits))   -- buffered: no wait
      H.go(function()
        for _, piece in ipairs { "st: x", "\r\n", "\r\n" } do
          parley.sleep(0.02)
          put(c, piece)
        end
      end)
      local method, target, minor, headers = s:receive_http_head(limits, true)
      assert.same({ "GET", "/", 1, "x" }, { method, target, minor, headers.host })
    end)
  end)

  it("reports heads over the limits or malformed with the status to answer", function()
    for _, case in ipairs {
      { "GET /" .. ("a"):rep(100) .. " HTTP/1.1\r\n\r\n", 414 },
      { "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n", 431 },
      { "GET / HTTP/1.1\r\nBad Name: 1\r\n\r\n", 400 },
      { "GET / HTTP/1.1\nHost: x\n\n", 400 },
    } do
      pair(function(c, s)
        put(c, case[1])
        local method, reason, status = s:receive_http_head(limits, true)
        assert.is_nil(method)
        assert.is_string(reason)
        assert.equal(case[2], status)
      end)
    end
  end)

  it("returns closed or timeout when no whole head comes", function()
    pair(function(c, s)
      s:settimeout(0.05)
      assert.same({ nil, "timeout" }, { s:receive_http_head(limits) })
      put(c, "GET / HTTP/1.1\r\n")
      assert.is_false(s:receive_http_head(limits))
      assert.same({ nil, "timeout" }, { s:receive_http_head(limits, true) })
      c:close()
      assert.same({ nil, "closed" }, { s:receive_http_head(limits, true) })
    end)
  end)
end)

describe("stream:send_http_response", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("queues the head and body as response_head would build them", function()
    pair(function(c, s)
      local fields = { "Content-Type", "text/plain", "Content-Length", 5 }
      assert.is_true(s:send_http_response(200, fields, nil, nil, "hello"))
      assert.is_true(s:send_http_response(404, { "Content-Length", "0" }, "Gone Fishing", 0))
      assert(s:flush())
      local want = core.http.response_head(200, fields, nil, nil, "hello")
                   .. core.http.response_head(404, { "Content-Length", "0" }, "Gone Fishing", 0)
      assert.equal(want, c:receive(#want))
    end)
  end)

  it("adds the server's own fields as response_head does", function()
    pair(function(c, s)
      assert.is_true(s:send_http_response(200, false, nil, 0, "ok", false, "parley", 2, "keep-alive"))
      assert(s:flush())
      local want = core.http.response_head(200, nil, nil, 0, "ok", false, "parley", 2, "keep-alive")
      assert.equal("HTTP/1.0 200 OK\r\nServer: parley\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
                   want)
      assert.equal(want, c:receive(#want))
    end)
  end)

  it("adds a Date field of now, last, when asked", function()
    pair(function(c, s)
      assert.is_true(s:send_http_response(200, { "Content-Length", 2 }, nil, nil, "ok", true))
      assert(s:flush())
      assert.equal("HTTP/1.1 200 OK", c:receive())
      assert.equal("Content-Length: 2", c:receive())
      local date = c:receive()
      assert.matches("^Date: %a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", date)
      local now = core.http.date()
      -- the second may have turned between the two
      assert.is_true(date == "Date: " .. now or date == "Date: " .. core.http.date(os.time() - 1))
      assert.equal("", c:receive())
      assert.equal("ok", c:receive(2))
    end)
  end)

  it("queues a whole reply as core.http.reply frames it", function()
    pair(function(c, s)
      local args = {
        { 200, { "Content-Type", "text/plain" }, nil, "hello", "parley", true, 1, false },
        { 200, nil, nil, "hidden", nil, true, 1, true },       -- HEAD: length, no body
        { 304, false, nil, "x", nil, true, 0, false },          -- no body, keep-alive
        { 404, nil, "Nope", ("z"):rep(70000), nil, false, 1, false },   -- past the high-water mark
      }
      H.go(function()
        for _, a in ipairs(args) do assert.is_true(s:send_http_reply(table.unpack(a, 1, 8))) end
        assert(s:flush())
      end)
      for _, a in ipairs(args) do
        local want = core.http.reply(table.unpack(a, 1, 8))
        local got = c:receive(#want)
        -- the Date field may have turned a second between the two
        assert.equal(want:gsub("Date: [^\r]*", "Date"), (got:gsub("Date: [^\r]*", "Date")))
      end
    end)
  end)

  it("raises on header injection and queues nothing", function()
    pair(function(c, s)
      assert.has_error(function()
        s:send_http_response(200, { "X-Evil", "a\r\nSet-Cookie: x" }, nil, nil, "body")
      end)
      assert.has_error(function()
        s:send_http_reply(200, { "X-Evil", "a\r\nSet-Cookie: x" }, nil, "body", nil, true, 1)
      end)
      assert.is_true(s:send_http_response(204, {}))   -- the first bytes out
      assert(s:flush())
      assert.equal("HTTP/1.1 204 No Content", c:receive())
      assert.equal("", c:receive())
    end)
  end)

  it("reports a connection the peer has reset", function()
    pair(function(c, s)
      c:setoption("linger", { on = true, timeout = 0 })
      c:close()
      parley.sleep(0.05)
      local ok, err
      for _ = 1, 50 do
        ok, err = s:send_http_response(200, { "Content-Length", 65536 }, nil, nil, ("x"):rep(65536))
        if not ok then break end
        s:flush()
      end
      assert.is_nil(ok)
      assert.is_string(err)
    end)
  end)
end)
