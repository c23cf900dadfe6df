-- The HTTP server's response object (csrc/response.c) on its own: made by
-- core.http.responder with a send function that records what res:send
-- hands the connection, as stream:send_http_reply would get it.
local core = require "parley.core"
local parley = require "parley"
local H = require "helper"
local http = core.http

-- a methods table as the server's, a connection table and its constructor
local function harness(send_result)
  local sent = {}
  local methods = {
    header = http.response_header,
    get_header = http.response_get_header,
    send = http.response_send,
    _send_source = function(res, src) return "source", res, src end,
  }
  local st = { broken = false }
  local conn = {}
  local function send(c, ...)
    sent[#sent + 1] = { c, ... }
    if send_result then return send_result() end
    return true
  end
  local new = http.responder({ st, conn, send, "parley" }, http.response_meta(methods))
  return new, sent, st, conn
end

-- a listener, a client stream and the server's end of it (inside H.run)
local function stream_pair()
  local l = assert(parley.listen("127.0.0.1:0"))
  local client = assert(parley.connect("127.0.0.1", l:port()))
  return l, client, assert(l:accept(2))
end

describe("http response object", function()
  it("starts at 200, not sent, not closing, with the request's facts", function()
    local new = harness()
    local res = new(true, 0, true)
    assert.same({ 200, false, false }, { res.status, res.sent, res.close })
    assert.same({ true, 0, true, 0, false }, { res._keep, res._minor, res._head, res._bytes, res._fields })
    assert.equal("userdata", type(res))
    assert.matches("^parley.http.response: 0x%x+ %(200%)$", tostring(res))
    assert.equal("parley.http.response", getmetatable(res))   -- the metamethods stay ours
  end)

  it("takes the request's method in place of head", function()
    local new = harness()
    assert.same({ true, false, false }, { new(true, 1, "HEAD")._head, new(true, 1, "GET")._head,
                                          new(true, 1, "HEADER")._head })
  end)

  it("hands send the status, fields, reason, body, server and the request's facts", function()
    local new, sent, _, conn = harness()
    local res = new(true, 1, false)
    res.status = 201
    res.reason = "Made"
    assert.equal(res, res:header("Content-Type", "text/plain"))
    assert.is_true(res:send("body"))
    assert.same({ conn, 201, { "Content-Type", "text/plain" }, "Made", "body", "parley", true, 1, false },
                sent[1])
    assert.same({ true, 4 }, { res.sent, res._bytes })
    assert.is_true(http.response_done(res))
    assert.matches("%(201, sent%)$", tostring(res))
  end)

  it("sends nil as an empty body, a number as its text, and sets the status given", function()
    local new, sent = harness()
    new(true, 1, false):send()
    new(true, 1, false):send(42, 404)
    assert.same({ 200, false, "" }, { sent[1][2], sent[1][3], sent[1][5] })
    assert.same({ 404, "42" }, { sent[2][2], sent[2][5] })
  end)

  it("closes the connection after a reply with close set", function()
    local new, sent = harness()
    local res = new(true, 1, false)
    res.close = true
    res:send("x")
    assert.is_false(sent[1][7])
    assert.is_false(res._keep)
    assert.is_false(http.response_done(res))
  end)

  it("passes an ltn12 source to the Lua method _send_source", function()
    local new = harness()
    local res = new(true, 1, false)
    local src = function() end
    local a, b, c = res:send(src, 202)
    assert.same({ "source", res, src, 202 }, { a, b, c, res.status })
  end)

  it("refuses a second send, a body of another type and a status out of range", function()
    local new = harness()
    local res = new(true, 1, false)
    res:send("once")
    assert.has_error(function() res:send("twice") end, "response already sent")
    local err = select(2, pcall(res.send, new(true, 1, false), {}))
    assert.matches("response body must be a string or an ltn12 source", err)
    assert.has_error(function() new(true, 1, false).status = 99 end,
                     "response status must be an integer from 100 to 999")
    assert.has_error(function() new(true, 1, false).status = "abc" end,
                     "response status must be an integer from 100 to 999")
  end)

  it("stays unsent when making the reply raises, so the server can still answer 500", function()
    local new = harness(function() error("header injection: CR in value", 0) end)
    local res = new(true, 1, false)
    assert.has_error(function() res:send("x") end, "header injection: CR in value")
    assert.is_false(res.sent)
  end)

  it("marks the connection broken when the write fails", function()
    local new, _, st = harness(function() return nil, "closed" end)
    local res = new(true, 1, false)
    assert.same({ nil, "closed" }, { res:send("x") })
    assert.same({ true, false, true, 1 }, { res.sent, res._keep, st.broken, res._bytes })
  end)

  it("sets, replaces (any case), repeats and removes fields", function()
    local new, sent = harness()
    local res = new(true, 1, false)
    res:header("A", "1"):header("B", "2"):header("C", "3"):header("a", "4")
    res:header("Set-Cookie", { "x=1", "y=2" })
    assert.same({ "4", "2", nil }, { res:get_header("A"), res:get_header("b"), res:get_header("D") })
    res:header("b", nil)
    res:header("nope", nil)
    assert.same({ "A", "4", "C", "3", "Set-Cookie", { "x=1", "y=2" } }, res._fields)
    res:header("A", nil):header("Set-Cookie", nil):header("C", nil)
    assert.same({}, res._fields)
    res:header("D", "5")
    res:send("")
    assert.same({ "D", "5" }, sent[1][3])
    assert.is_nil(new(true, 1, false):header("X", nil):get_header("X"))
  end)

  it("keeps a handler's own keys apart from its state, and methods before them", function()
    local new = harness()
    local res = new(true, 1, false)
    res.user, res[1] = "alice", "one"
    res.header = "shadow"
    assert.same({ "alice", "one", http.response_header }, { res.user, res[1], res.header })
    assert.is_nil(res.other)
  end)

  it("refuses to set the request's facts and anything but false as _fields", function()
    local new = harness()
    local res = new(true, 1, false)
    for _, k in ipairs { "_minor", "_head", "_st" } do
      assert.has_error(function() res[k] = 1 end, k .. " is the request's, not the response's to set")
    end
    assert.has_error(function() res._fields = {} end, "_fields can only be set to false")
    res:header("A", "1")
    res._fields = false
    assert.is_false(res._fields)
  end)

  it("tells the usual reply for send_memo, and marks one sent", function()
    local new, _, st = harness()
    local res = new(true, 1, false)
    assert.equal(st, http.response_usual(res))
    assert.equal(st, res._st)
    for _, r in ipairs {
      new(false, 1, false), new(true, 0, false), new(true, 1, true),
      (function() local x = new(true, 1, false); x.status = 404; return x end)(),
      (function() local x = new(true, 1, false); x.close = true; return x end)(),
      (function() local x = new(true, 1, false); x:header("A", "1"); return x end)(),
    } do
      assert.is_nil(http.response_usual(r))
    end
    http.response_mark_sent(res, 10)
    assert.same({ true, 10 }, { res.sent, res._bytes })
    assert.is_nil(http.response_usual(res))
  end)

  it("queues the reply straight into a driver stream, and reports a closed one", function()
    H.run(function()
      local l, client, conn = stream_pair()
      local st = { broken = false }
      local never = function() error("the Lua send must not be called for a driver stream") end
      local methods = { header = http.response_header, send = http.response_send }
      local new = http.responder({ st, conn, never, "parley" }, http.response_meta(methods))
      local res = new(true, 1, "GET")
      res:header("Content-Type", "text/plain")
      assert.is_true(res:send("hi"))
      assert.is_true(conn:flush())
      client:settimeout(2)
      local head = assert(client:receive_until("\r\n\r\n"))
      assert.matches("^HTTP/1.1 200 OK\r\nContent%-Type: text/plain\r\nServer: parley\r\n"
                     .. "Content%-Length: 2\r\nDate: ", head)
      assert.equal("hi", client:receive(2))
      conn:close()
      res = new(true, 1, "GET")
      assert.same({ nil, "closed" }, { res:send("late") })
      assert.same({ true, false, true }, { res.sent, res._keep, st.broken })
      client:close()
      l:close()
    end)
  end)

  it("waits for a slow reader past the high-water mark, then answers true", function()
    H.run(function()
      local l, client, conn = stream_pair()
      conn:settimeout(10)
      local new = http.responder({ {}, conn, false, false },
                                 http.response_meta({ send = http.response_send }))
      local body = string.rep("0123456789abcdef", 4 * 65536)   -- 4 MiB
      local got = H.go(function()
        client:settimeout(10)
        local head = assert(client:receive_until("\r\n\r\n"))
        local n = tonumber(head:match("Content%-Length: (%d+)"))
        local parts, left = {}, n
        while left > 0 do
          parley.sleep(0.001)   -- slower than the server writes
          local p = assert(client:receive_some(math.min(left, 65536)))
          parts[#parts + 1] = p
          left = left - #p
        end
        return table.concat(parts)
      end)
      local res = new(true, 1, "GET")
      assert.is_true(res:send(body))
      assert.is_true(conn:flush())
      local ok, data = got:join(20)
      assert.is_true(ok)
      assert.equal(#body, #data)
      assert.is_true(data == body)
      assert.equal(#body, res._bytes)
      for _, s in ipairs { conn, client, l } do s:close() end
    end)
  end)

  it("refuses another value in place of a response", function()
    for _, f in ipairs { http.response_header, http.response_get_header, http.response_send,
                         http.response_done, http.response_usual, http.response_mark_sent } do
      local ok, err = pcall(f, {}, "x", "y")
      assert.is_false(ok)
      assert.matches("parley.http.response expected", err)
      ok, err = pcall(f, io.stdout, "x")   -- a userdata of another kind
      assert.is_false(ok)
      assert.matches("parley.http.response expected", err)
    end
  end)
end)
