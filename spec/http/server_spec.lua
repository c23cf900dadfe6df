-- parley.http.server: keep-alive, pipelining, HEAD, bodies, 100-continue,
-- routing, response kinds, limits and the access log.
local parley = require "parley"
local H = require "helper"
local U = require "http.support.util"
local http = require "parley.http"
local ltn12 = require "ltn12"

local function hello(app)
  app:get("/hello", function(_, res)
    res:header("Content-Type", "text/plain")
    return res:send("hello world\n")
  end)
  app:post("/echo", function(req, res)
    local b, err, status = req:body()
    if not b then return res:error(status, err) end
    return res:send(b)
  end)
end

describe("http server connections", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("keeps an HTTP/1.1 connection alive across requests", function()
    U.with_app(hello, function(srv)
      local c <close> = U.connect(srv)
      for _ = 1, 3 do
        c:send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        local r = U.read_responses(c, 1)
        assert.equal(200, r[1].status)
        assert.equal("hello world\n", r[1].body)
        assert.equal("12", r[1].headers["content-length"])
        assert.is_nil(r[1].headers.connection)
      end
    end)
  end)

  it("answers a pipelined batch in order and in one write", function()
    U.with_app(hello, function(srv)
      local c <close> = U.connect(srv)
      local req = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
      c:send(req:rep(5) .. "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" .. req)
      c:flush()
      parley.sleep(0.1)
      -- everything came back at once: one receive gets all seven replies
      local first = c:receive_some(65536)
      assert.equal(7, #U.statuses(first))
      local st = { conn = c, buf = first, pos = 1 }
      assert.is_truthy(st.buf:find("abc", 1, true))
    end)
  end)

  it("closes an HTTP/1.0 connection after the response unless asked to keep it", function()
    U.with_app(hello, function(srv)
      local c <close> = U.connect(srv)
      local text, err = U.exchange(c, "GET /hello HTTP/1.0\r\n\r\n")
      assert.equal("closed", err)
      assert.matches("^HTTP/1%.1 200 OK\r\n", text)
      assert.matches("Connection: close\r\n", text)
      local c2 <close> = U.connect(srv)
      c2:send("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
      local r = U.read_responses(c2, 1)
      assert.equal("keep-alive", r[1].headers.connection)
      c2:send("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
      assert.equal(200, U.read_responses(c2, 1)[1].status)
    end)
  end)

  it("closes after 'Connection: close' and says so", function()
    U.with_app(hello, function(srv)
      local c <close> = U.connect(srv)
      local text, err = U.exchange(c, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.equal("closed", err)
      assert.matches("Connection: close", text)
    end)
  end)

  it("answers HEAD with the GET head and no body", function()
    U.with_app(hello, function(srv)
      local c <close> = U.connect(srv)
      c:send("HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
      local r = U.read_responses(c, 2, true)
      assert.equal(200, r[1].status)
      assert.equal("12", r[1].headers["content-length"])
      assert.equal("", r[1].body)
      -- the next response starts right after the head
      assert.equal(200, r[2].status)
    end)
  end)

  it("closes the connection after max_requests requests", function()
    U.with_app(hello, function(srv)
      local c <close> = U.connect(srv)
      local text, err = U.exchange(c, ("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"):rep(4))
      assert.equal("closed", err)
      assert.same({ 200, 200, 200 }, U.statuses(text))
      assert.matches("Connection: close", text)
    end, { max_requests = 3 })
  end)

  it("closes a keep-alive connection idle longer than keepalive_timeout", function()
    U.with_app(hello, function(srv)
      local c <close> = U.connect(srv)
      c:send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
      U.read_responses(c, 1)
      local t0 = parley.now()
      local text, err = U.exchange(c, nil, 3)
      assert.equal("closed", err)
      assert.equal("", text)
      assert.is_true(parley.now() - t0 < 1.5)
    end, { keepalive_timeout = 0.3 })
  end)

  it("requires exactly one Host in HTTP/1.1", function()
    U.with_app(hello, function(srv)
      local c <close> = U.connect(srv)
      local text = U.exchange(c, "GET /hello HTTP/1.1\r\n\r\n")
      assert.matches("^HTTP/1%.1 400 ", text)
      local c2 <close> = U.connect(srv)
      text = U.exchange(c2, "GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
      assert.matches("^HTTP/1%.1 400 ", text)
    end)
  end)

  it("accepts an absolute-form target", function()
    U.with_app(hello, function(srv)
      local c <close> = U.connect(srv)
      c:send("GET http://example.com/hello HTTP/1.1\r\nHost: example.com\r\n\r\n")
      assert.equal("hello world\n", U.read_responses(c, 1)[1].body)
    end)
  end)
end)

describe("http server request bodies", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("reads a body by Content-Length and a chunked body", function()
    U.with_app(hello, function(srv)
      local c <close> = U.connect(srv)
      c:send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
      c:send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             .. "3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n")
      local r = U.read_responses(c, 2)
      assert.equal("hello", r[1].body)
      assert.equal("abcdefg", r[2].body)
    end)
  end)

  it("keeps the trailer fields of a chunked body apart from the headers", function()
    U.with_app(function(app)
      app:post("/trailers", function(req, res)
        local before = req:trailers()
        local b = assert(req:body())
        local t = req:trailers()
        if not t then return res:send("no trailers|" .. b) end
        return res:send(("%s|%s|%s|%s|%s|%s"):format(tostring(before), b, t["x-sum"], t.expires,
                                                 tostring(req.headers["x-sum"]), #t // 2))
      end)
    end, function(srv)
      local c <close> = U.connect(srv)
      c:send("POST /trailers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum, Expires\r\n\r\n"
             .. "3\r\nabc\r\n0\r\nX-Sum: 6\r\nExpires: never\r\n\r\n")
      c:send("POST /trailers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n")
      c:send("POST /trailers HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nq")
      local r = U.read_responses(c, 3)
      assert.equal("nil|abc|6|never|nil|2", r[1].body)
      assert.equal("nil|z|nil|nil|nil|0", r[2].body)
      assert.equal("no trailers|q", r[3].body)
    end)
  end)

  it("streams a large body to the handler piece by piece", function()
    local pieces, total = 0, 0
    U.with_app(function(app)
      app:put("/up", function(req, res)
        for piece in req.source and req:source() do
          pieces = pieces + 1
          total = total + #piece
        end
        return res:send(tostring(total))
      end)
    end, function(srv)
      local size = 5 * 1024 * 1024
      local block = ("x"):rep(65536)
      local n = 0
      local r = assert(http.client.request{
        url = "http://127.0.0.1:" .. srv.port .. "/up", method = "PUT",
        body = function()
          if n >= size then return nil end
          n = n + #block
          return block
        end })
      assert.equal(200, r.status)
      assert.equal(tostring(size), r.body)
      assert.is_true(pieces > 10)
    end)
  end)

  it("sends 100 Continue only when the handler reads the body", function()
    U.with_app(hello, function(srv)
      local c <close> = U.connect(srv)
      c:send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
      c:flush()
      local line = c:receive("l")
      assert.equal("HTTP/1.1 100 Continue", line)
      assert.equal("", c:receive("l"))
      c:send("abc")
      local r = U.read_responses(c, 1)
      assert.equal(200, r[1].status)
      assert.equal("abc", r[1].body)
      -- a handler that does not read: no 100, a final answer, then close
      local c2 <close> = U.connect(srv)
      local text, err = U.exchange(c2, "GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
      assert.not_matches("100 Continue", text)
      assert.matches("^HTTP/1%.1 200", text)
      assert.equal("closed", err)
    end)
  end)

  it("refuses a body over the handler's limit without 100 Continue", function()
    U.with_app(function(app)
      app:post("/small", function(req, res)
        local b, err, status = req:body(10)
        if not b then return res:error(status, err) end
        return res:send(b)
      end)
    end, function(srv)
      local c <close> = U.connect(srv)
      local text, err = U.exchange(c, "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n"
        .. "Expect: 100-continue\r\n\r\n")
      assert.matches("^HTTP/1%.1 413 ", text)
      assert.not_matches("100 Continue", text)
      assert.equal("closed", err)
    end)
  end)

  it("answers 417 to an expectation it does not know", function()
    U.with_app(hello, function(srv)
      local c <close> = U.connect(srv)
      local text = U.exchange(c, "GET /hello HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n")
      assert.matches("^HTTP/1%.1 417 ", text)
    end)
  end)

  it("answers 413 to a declared body over max_body, at once", function()
    U.with_app(hello, function(srv)
      local c <close> = U.connect(srv)
      local text, err = U.exchange(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
      assert.matches("^HTTP/1%.1 413 ", text)
      assert.equal("closed", err)
    end, { max_body = 1000 })
  end)

  it("answers 413 when a chunked body grows over max_body", function()
    U.with_app(hello, function(srv)
      local c <close> = U.connect(srv)
      local text = U.exchange(c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "400\r\n" .. ("y"):rep(1024) .. "\r\n0\r\n\r\n")
      assert.matches("^HTTP/1%.1 413 ", text)
    end, { max_body = 1000 })
  end)

  it("skips a small unread body and keeps the connection", function()
    U.with_app(hello, function(srv)
      local c <close> = U.connect(srv)
      c:send("POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd"
             .. "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
      local r = U.read_responses(c, 2)
      assert.equal(405, r[1].status)
      assert.equal(200, r[2].status)
    end)
  end)
end)

describe("http server routing and responses", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  local function routes(app)
    app:get("/users/:id", function(req) return 200, "user " .. req.params.id end)
    app:get("/files/*", function(req) return 200, "file " .. req.params["*"] end)
    app:route("*", "/any", function(req) return 200, req.method end)
    app:get("/q", function(req) return 200, (req.query or "") .. "|" .. req.path end)
    app:get("/source", function(_, res)
      return res:send(ltn12.source.cat(ltn12.source.string("one "), ltn12.source.string("two "), ltn12.source.string("three")))
    end)
    app:get("/sized", function(_, res)
      res:header("Content-Length", "11")
      return res:send(ltn12.source.string("fixed sized"))
    end)
    app:get("/file", function(_, res) return res:sendfile("/etc/hostname") end)
    app:get("/boom", function() error("kaboom") end)
    app:get("/nothing", function(_, res) res.status = 204 end)
    app:get("/redir", function(_, res) return res:redirect("/hello") end)
    app:get("/headers", function(_, res)
      res:header("X-A", "1"):header("x-a", "2"):header("Set-Cookie", { "a=1", "b=2" })
      return 200, "h", { ["X-B"] = "3" }
    end)
  end

  it("captures :name segments and * tails, decodes the path, keeps the query", function()
    U.with_app(routes, function(srv)
      local base = "http://127.0.0.1:" .. srv.port
      assert.equal("user 42", http.client.request(base .. "/users/42").body)
      assert.equal("file a/b/c.txt", http.client.request(base .. "/files/a/b/c.txt").body)
      assert.equal("x=1&y=%20|/q", http.client.request(base .. "/q?x=1&y=%20").body)
      assert.equal("DELETE", http.client.request{ url = base .. "/any", method = "DELETE" }.body)
    end)
  end)

  it("finds the route of a path again after a route is added, and past the bound of kept paths", function()
    local root = U.webroot()
    U.with_app(function(app) app:static("/", root) end, function(srv, app)
      local c <close> = U.connect(srv)
      local function get(path, method)
        c:send(("%s %s HTTP/1.1\r\nHost: x\r\n\r\n"):format(method or "GET", path))
        return U.read_responses(c, 1, method == "HEAD")[1]
      end
      assert.equal(1024, #get("/1k.txt").body)
      assert.equal(1024, #get("/1k.txt").body)   -- the kept route
      assert.equal("body{}\n", get("/style.css").body)
      app:route("*", "/style.css", function(req) return 200, "any " .. req.method end)
      assert.equal("any GET", get("/style.css").body)
      assert.equal("1024", get("/1k.txt", "HEAD").headers["content-length"])
      -- a route added while serving takes its path from the static prefix
      app:get("/1k.txt", function() return 200, "dynamic" end)
      -- a pattern added later does not: routes are tried in the order added
      app:route("GET", "/sub/*", function(req) return 200, "under " .. req.params["*"] end)
      assert.equal("dynamic", get("/1k.txt").body)
      -- more distinct paths than are kept, then the first again
      for i = 1, 1100 do assert.equal(404, get("/missing-" .. i).status) end
      assert.equal("<!DOCTYPE html>", get("/index.html").body:sub(1, 15))
      assert.equal("spaced\n", get("/sub/a%20b.txt").body)
    end, { max_requests = 5000 })
    H.rmdir(root)
  end)

  it("answers 404 for no route and 405 with Allow for another method", function()
    U.with_app(routes, function(srv)
      local base = "http://127.0.0.1:" .. srv.port
      assert.equal(404, http.client.request(base .. "/nope").status)
      local r = http.client.request{ url = base .. "/users/1", method = "POST", body = "" }
      assert.equal(405, r.status)
      assert.equal("GET, HEAD", r.headers.allow)
    end)
  end)

  it("sends an ltn12 source chunked, or as is when the length is set", function()
    U.with_app(routes, function(srv)
      local c <close> = U.connect(srv)
      c:send("GET /source HTTP/1.1\r\nHost: x\r\n\r\nGET /sized HTTP/1.1\r\nHost: x\r\n\r\n")
      local r = U.read_responses(c, 2)
      assert.equal("chunked", r[1].headers["transfer-encoding"])
      assert.equal("one two three", r[1].body)
      assert.equal("11", r[2].headers["content-length"])
      assert.equal("fixed sized", r[2].body)
      -- HTTP/1.0 gets the source delimited by the close
      local c2 <close> = U.connect(srv)
      local text, err = U.exchange(c2, "GET /source HTTP/1.0\r\n\r\n")
      assert.equal("closed", err)
      assert.matches("\r\n\r\none two three$", text)
    end)
  end)

  it("sends a file with sendfile", function()
    U.with_app(routes, function(srv)
      local f = assert(io.open("/etc/hostname"))
      local want = f:read("a")
      f:close()
      local r = http.client.request("http://127.0.0.1:" .. srv.port .. "/file")
      assert.equal(want, r.body)
    end)
  end)

  it("answers 500 when a handler raises and carries on", function()
    local logged
    U.with_app(routes, function(srv)
      local base = "http://127.0.0.1:" .. srv.port
      assert.equal(500, http.client.request(base .. "/boom").status)
      assert.matches("kaboom", logged)
      assert.equal(200, http.client.request(base .. "/users/1").status)
    end, { on_error = function(e) logged = e end })
  end)

  it("sends res.status with an empty body when the handler sends nothing", function()
    U.with_app(routes, function(srv)
      local r = http.client.request("http://127.0.0.1:" .. srv.port .. "/nothing")
      assert.equal(204, r.status)
      assert.is_nil(r.headers["content-length"])
    end)
  end)

  it("sets, replaces and repeats response headers", function()
    U.with_app(routes, function(srv)
      local r = http.client.request("http://127.0.0.1:" .. srv.port .. "/headers")
      assert.equal("2", r.headers["x-a"])
      assert.equal("3", r.headers["x-b"])
      local cookies = {}
      for i = 1, #r.headers, 2 do
        if r.headers[i] == "set-cookie" then cookies[#cookies + 1] = r.headers[i + 1] end
      end
      assert.same({ "a=1", "b=2" }, cookies)
    end)
  end)

  it("refuses header injection in a response header", function()
    local caught
    U.with_app(function(app)
      app:get("/inject", function(_, res)
        res:header("X-Evil", "a\r\nSet-Cookie: pwned=1")
        return res:send("x")
      end)
    end, function(srv)
      local r = http.client.request("http://127.0.0.1:" .. srv.port .. "/inject")
      assert.equal(500, r.status)
      assert.is_nil(r.headers["set-cookie"])
      assert.is_truthy(caught)
    end, { on_error = function(e) caught = e end })
  end)
end)

describe("http server access log", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("writes one combined-format line per request", function()
    local lines = {}
    U.with_app(hello, function(srv)
      local c <close> = U.connect(srv)
      c:send("GET /hello?a=1 HTTP/1.1\r\nHost: x\r\nReferer: http://r/\r\nUser-Agent: spec \"agent\"\r\n\r\n")
      U.read_responses(c, 1)
    end, { access_log = function(line) lines[#lines + 1] = line end })
    assert.equal(1, #lines)
    assert.matches('^127%.0%.0%.1 %- %- %[%d%d/%a%a%a/%d%d%d%d:%d%d:%d%d:%d%d %+0000%] '
      .. '"GET /hello%?a=1 HTTP/1%.1" 200 12 "http://r/" "spec \\"agent\\""\n$', lines[1])
  end)

  it("applies a log set while a connection is open to its next request", function()
    local lines = {}
    U.with_app(hello, function(srv, app)
      local c <close> = U.connect(srv)
      c:send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
      U.read_responses(c, 1)
      app.log = function(line) lines[#lines + 1] = line end
      c:send("GET /hello?second HTTP/1.1\r\nHost: x\r\n\r\n")
      U.read_responses(c, 1)
    end)
    assert.equal(1, #lines)
    assert.matches('"GET /hello%?second HTTP/1%.1" 200 12 ', lines[1])
  end)

  it("logs refused requests too, with their status", function()
    local lines = {}
    U.with_app(hello, function(srv)
      local c <close> = U.connect(srv)
      U.exchange(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
      local c2 <close> = U.connect(srv)
      U.exchange(c2, "GET /hello HTTP/1.1\nHost: x\n\n")
    end, { access_log = function(line) lines[#lines + 1] = line end, max_body = 100 })
    assert.equal(2, #lines)
    assert.matches('"POST /echo HTTP/1%.1" 413 0 ', lines[1])
    assert.matches('"%-" 400 0 "%-" "%-"\n$', lines[2])
  end)
end)

describe("http server kept responses and per-connection reuse", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  local FIELDS = { "Content-Type", "text/plain", "X-Kept", "yes" }
  local late   -- a response a handler kept after its request ended

  local function routes(app)
    local memo = {}
    app:get("/kept", function(_, res) return res:send_memo(memo, FIELDS, "kept body\n") end)
    app:get("/kept-extra", function(_, res)
      res:header("X-Extra", "1")
      return res:send_memo(memo, FIELDS, "kept body\n")
    end)
    app:get("/keep-res", function(_, res)
      late = res
      res:header("X-First", "1")
      return res:send("first")
    end)
    app:get("/plain", function(_, res) return res:send("plain") end)
    app:get("/three", function(_, res)
      res:header("X-A", "1"):header("X-B", "2"):header("X-C", "3")
      return res:send("three")
    end)
    app:get("/one", function(_, res) return res:header("X-D", "4"):send("one") end)
    app:get("/pair/:a/:b", function(req) return 200, req.params.a .. "+" .. req.params.b end)
  end

  it("sends a kept response again byte for byte on a keep-alive connection", function()
    U.with_app(routes, function(srv)
      local c <close> = U.connect(srv)
      local req = "GET /kept HTTP/1.1\r\nHost: x\r\n\r\n"
      c:send(req .. req)
      local r = U.read_responses(c, 2)
      for i = 1, 2 do
        assert.equal(200, r[i].status)
        assert.equal("kept body\n", r[i].body)
        assert.equal("yes", r[i].headers["x-kept"])
        assert.equal("10", r[i].headers["content-length"])
        assert.is_string(r[i].headers.date)
        assert.is_nil(r[i].headers.connection)
      end
    end)
  end)

  it("gives a kept response the framing of each connection (HTTP/1.0, close, HEAD, extra fields)", function()
    U.with_app(routes, function(srv)
      local c <close> = U.connect(srv)
      c:send("GET /kept HTTP/1.1\r\nHost: x\r\n\r\n")
      local r = U.read_responses(c, 1)
      assert.equal("kept body\n", r[1].body)
      c:send("HEAD /kept HTTP/1.1\r\nHost: x\r\n\r\n")
      r = U.read_responses(c, 1, true)
      assert.equal("", r[1].body)
      assert.equal("10", r[1].headers["content-length"])
      c:send("GET /kept-extra HTTP/1.1\r\nHost: x\r\n\r\n")
      r = U.read_responses(c, 1)
      assert.equal("1", r[1].headers["x-extra"])
      assert.equal("yes", r[1].headers["x-kept"])
      assert.equal("kept body\n", r[1].body)
      c:send("GET /kept HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
      r = U.read_responses(c, 1)
      assert.equal("keep-alive", r[1].headers.connection)
      assert.equal("kept body\n", r[1].body)
      local text = U.exchange(c, "GET /kept HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.matches("Connection: close\r\n", text, 1, true)
      assert.matches("kept body\n$", text)
    end)
  end)

  it("keeps a field set on an old response out of the next one", function()
    U.with_app(routes, function(srv)
      local c <close> = U.connect(srv)
      c:send("GET /keep-res HTTP/1.1\r\nHost: x\r\n\r\n")
      local r = U.read_responses(c, 1)
      assert.equal("1", r[1].headers["x-first"])
      late:header("X-Late", "sneaky")
      c:send("GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
      r = U.read_responses(c, 1)
      assert.equal("plain", r[1].body)
      assert.is_nil(r[1].headers["x-late"])
      assert.is_nil(r[1].headers["x-first"])
    end)
  end)

  it("gives a reply with fewer fields none of the last reply's", function()
    U.with_app(routes, function(srv)
      local c <close> = U.connect(srv)
      c:send("GET /three HTTP/1.1\r\nHost: x\r\n\r\nGET /one HTTP/1.1\r\nHost: x\r\n\r\n"
             .. "GET /three HTTP/1.1\r\nHost: x\r\n\r\n")
      local r = U.read_responses(c, 3)
      assert.same({ "1", "2", "3", "three" }, { r[1].headers["x-a"], r[1].headers["x-b"], r[1].headers["x-c"], r[1].body })
      assert.same({ "4", "one" }, { r[2].headers["x-d"], r[2].body })
      assert.is_nil(r[2].headers["x-a"] or r[2].headers["x-b"] or r[2].headers["x-c"])
      assert.same({ "1", "2", "3" }, { r[3].headers["x-a"], r[3].headers["x-b"], r[3].headers["x-c"] })
      assert.is_nil(r[3].headers["x-d"])
    end)
  end)

  it("captures several :name segments of one route", function()
    U.with_app(routes, function(srv)
      assert.equal("x+y", http.client.request("http://127.0.0.1:" .. srv.port .. "/pair/x/y").body)
    end)
  end)
end)
