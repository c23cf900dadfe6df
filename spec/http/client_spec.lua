-- parley.http.client against parley's own server: pool, bodies both ways,
-- redirects, sinks, timeouts, raw mode, argument checks.
local parley = require "parley"
local H = require "helper"
local U = require "http.support.util"
local http = require "parley.http"
local client = http.client
local ltn12 = require "ltn12"

local function app(a)
  a:get("/conn", function(req) return 200, tostring(req.conn) end)
  a:post("/echo", function(req, res)
    local b, err, status = req:body()
    if not b then return res:error(status, err) end
    res:header("X-TE", req.headers["transfer-encoding"] or "none")
    return res:send(b)
  end)
  a:get("/chunked", function(_, res)
    local i = 0
    return res:send(function()
      i = i + 1
      if i > 100 then return nil end
      return ("%05d\n"):format(i)
    end)
  end)
  a:get("/loop", function(_, res) return res:redirect("/loop") end)
  a:get("/r/:n", function(req, res)
    local n = tonumber(req.params.n)
    if n == 0 then return 200, "landed" end
    return res:redirect("/r/" .. (n - 1), 307)
  end)
  a:post("/see-other", function(req, res)
    req:body()
    return res:redirect("/method", 303)
  end)
  a:route("*", "/method", function(req) return 200, req.method .. " " .. (req:body() or "") end)
  a:get("/slow", function()
    parley.sleep(1)
    return 200, "late"
  end)
  a:get("/head", function(_, res)
    res:header("X-Seen", "yes")
    return res:send("twelve bytes")
  end)
end

describe("http client", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("reuses a kept-alive connection from its pool", function()
    U.with_app(app, function(srv)
      local base = "http://127.0.0.1:" .. srv.port
      local a = assert(client.request(base .. "/conn")).body
      local b = assert(client.request(base .. "/conn")).body
      assert.equal(a, b)
      assert.equal(1, client.default_pool:count())
      -- keepalive = false: a new connection, closed after
      local c = assert(client.request{ url = base .. "/conn", keepalive = false }).body
      assert.not_equal(a, c)
      local own = client.pool()
      local d = assert(client.request{ url = base .. "/conn", pool = own }).body
      assert.not_equal(a, d)
      assert.equal(1, own:count())
      own:close()
      assert.equal(0, own:count())
    end)
  end)

  it("retries once when the server closed the idle connection it reuses", function()
    U.with_app(app, function(srv)
      local base = "http://127.0.0.1:" .. srv.port
      local a = assert(client.request(base .. "/conn")).body
      parley.sleep(0.4)   -- the server's keepalive_timeout passes
      local r = assert(client.request(base .. "/conn"))
      assert.equal(200, r.status)
      assert.not_equal(a, r.body)
    end, { keepalive_timeout = 0.2 })
  end)

  it("sends a string body with Content-Length and a source chunked", function()
    U.with_app(app, function(srv)
      local base = "http://127.0.0.1:" .. srv.port
      local r = assert(client.request{ url = base .. "/echo", body = "payload" })
      assert.equal("payload", r.body)
      assert.equal("none", r.headers["x-te"])
      local parts = {}
      for i = 1, 200 do parts[i] = ("line %d\n"):format(i) end
      r = assert(client.request{ url = base .. "/echo",
        body = ltn12.source.string(table.concat(parts)) })
      assert.equal("chunked", r.headers["x-te"])
      assert.equal(table.concat(parts), r.body)
    end)
  end)

  it("reads a chunked response, into a string or a sink", function()
    U.with_app(app, function(srv)
      local url = "http://127.0.0.1:" .. srv.port .. "/chunked"
      local r = assert(client.request(url))
      assert.equal("chunked", r.headers["transfer-encoding"])
      assert.equal(600, #r.body)
      assert.matches("^00001\n00002\n", r.body)
      local got = {}
      r = assert(client.request{ url = url, sink = ltn12.sink.table(got) })
      assert.is_nil(r.body)
      assert.equal(600, r.bytes)
      assert.equal(600, #table.concat(got))
    end)
  end)

  it("follows redirects up to max_redirects", function()
    U.with_app(app, function(srv)
      local base = "http://127.0.0.1:" .. srv.port
      local r = assert(client.request(base .. "/r/3"))
      assert.equal("landed", r.body)
      assert.equal(3, #r.redirects)
      local res, err, last = client.request{ url = base .. "/r/3", max_redirects = 2 }
      assert.is_nil(res)
      assert.equal("too many redirects", err)
      assert.equal(307, last.status)
      res, err = client.request(base .. "/loop")
      assert.is_nil(res)
      assert.equal("too many redirects", err)
      r = assert(client.request{ url = base .. "/r/1", max_redirects = 0 })
      assert.equal(307, r.status)
    end)
  end)

  it("keeps credentials given as an ordered header list from another origin on a redirect", function()
    U.with_app(function(a)
      a:get("/seen", function(req)
        return 200, (req.headers.authorization or "-") .. " " .. (req.headers.cookie or "-")
          .. " " .. (req.headers["x-keep"] or "-")
      end)
    end, function(other)
      U.with_app(function(a)
        a:get("/away", function(_, res) return res:redirect("http://127.0.0.1:" .. other.port .. "/seen") end)
      end, function(srv)
        for _, headers in ipairs{
          { "Authorization", "Bearer secret", "Cookie", "c=1", "X-Keep", "yes" },
          { Authorization = "Bearer secret", cookie = "c=1", ["X-Keep"] = "yes" } } do
          local r = assert(client.request{ url = "http://127.0.0.1:" .. srv.port .. "/away",
            headers = headers })
          assert.equal("- - yes", r.body)
        end
      end)
    end)
  end)

  it("turns a POST into a GET after 303", function()
    U.with_app(app, function(srv)
      local r = assert(client.request{ url = "http://127.0.0.1:" .. srv.port .. "/see-other", body = "x" })
      assert.equal("GET ", r.body)
    end)
  end)

  it("gives up after the head timeout", function()
    U.with_app(app, function(srv)
      local t0 = parley.now()
      local r, err = client.request{ url = "http://127.0.0.1:" .. srv.port .. "/slow",
                                     timeouts = { head = 0.2 } }
      assert.is_nil(r)
      assert.equal("timeout", err)
      assert.is_true(parley.now() - t0 < 0.9)
    end)
  end)

  it("reads a HEAD response without a body", function()
    U.with_app(app, function(srv)
      local r = assert(client.request{ url = "http://127.0.0.1:" .. srv.port .. "/head", method = "HEAD" })
      assert.equal("12", r.headers["content-length"])
      assert.equal("", r.body)
      assert.equal("yes", r.headers["x-seen"])
    end)
  end)

  it("sends raw bytes exactly and parses the reply", function()
    U.with_app(app, function(srv)
      local r = assert(client.raw("127.0.0.1:" .. srv.port, "GET /head HTTP/1.0\r\n\r\n"))
      assert.equal(200, r.status)
      assert.equal("twelve bytes", r.body)
      r = assert(client.request{ url = "http://127.0.0.1:" .. srv.port,
                                 raw = "GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" })
      assert.equal(404, r.status)
      -- malformed on purpose: the server's 400 comes back parsed
      r = assert(client.raw("127.0.0.1:" .. srv.port, "GET / HTTP/1.1\nHost: x\n\n"))
      assert.equal(400, r.status)
    end)
  end)

  it("raises on CR, LF or NUL in a URL or header before sending", function()
    assert.has_error(function() client.request("http://127.0.0.1:1/a\r\nX: y") end)
    assert.has_error(function() client.request{ url = "http://127.0.0.1:1/", headers = { X = "a\r\nb" } } end)
    assert.has_error(function() client.request{ url = "http://127.0.0.1:1/", headers = { ["X\0"] = "a" } } end)
    assert.has_error(function() client.request{ url = "http://127.0.0.1:1/", body = 42 } end)
  end)

  it("returns nil and an error when nobody listens", function()
    local l = assert(parley.listen("127.0.0.1:0"))
    local port = l:port()
    l:close()
    local r, err = client.request("http://127.0.0.1:" .. port .. "/")
    assert.is_nil(r)
    assert.equal("connection refused", err)
    local r2, err2 = client.request("ftp://127.0.0.1/")   -- https: spec/http/tls_spec.lua
    assert.is_nil(r2)
    assert.matches("unsupported scheme", err2)
  end)
end)
