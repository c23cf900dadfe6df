-- parley.http.static: index.html, media types, validators and 304, ranges,
-- traversal, listings.
local H = require "helper"
local U = require "http.support.util"
local http = require "parley.http"
local static = require "parley.http.static"

local root

local function site(opts)
  return function(app) app:static("/", root, opts) end
end

-- the raw reply to "GET target" as sent (no client normalising the target)
local function raw_get(srv, target)
  local c <close> = U.connect(srv)
  return U.exchange(c, "GET " .. target .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
end

local function get(srv, path, headers, method)
  return assert(http.client.request{ url = "http://127.0.0.1:" .. srv.port .. path,
                                     headers = headers, method = method })
end

describe("http static files", function()
  before_each(function()
    H.fd_snapshot()
    root = U.webroot()
  end)
  after_each(function()
    H.rmdir(root)
    H.fd_check()
  end)

  it("serves index.html for / with its media type and validators", function()
    U.with_app(site(), function(srv)
      local r = get(srv, "/")
      assert.equal(200, r.status)
      assert.matches("hello", r.body)
      assert.equal("text/html; charset=utf-8", r.headers["content-type"])
      assert.matches('^"%x+%-%x+"$', r.headers.etag)
      assert.is_number(static.parse_date(r.headers["last-modified"]))
      assert.equal("bytes", r.headers["accept-ranges"])
      assert.equal("text/css; charset=utf-8", get(srv, "/style.css").headers["content-type"])
      assert.equal(1024, #get(srv, "/1k.txt").body)
    end)
  end)

  it("answers 304 to a matching If-None-Match and If-Modified-Since", function()
    U.with_app(site(), function(srv)
      local r = get(srv, "/1k.txt")
      local etag, lm = r.headers.etag, r.headers["last-modified"]
      local r2 = get(srv, "/1k.txt", { ["If-None-Match"] = 'W/"nope", ' .. etag })
      assert.equal(304, r2.status)
      assert.equal("", r2.body)
      assert.equal(etag, r2.headers.etag)
      assert.equal(304, get(srv, "/1k.txt", { ["If-Modified-Since"] = lm }).status)
      assert.equal(304, get(srv, "/1k.txt", { ["If-None-Match"] = "*" }).status)
      -- If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2)
      assert.equal(200, get(srv, "/1k.txt", { ["If-None-Match"] = '"other"',
                                             ["If-Modified-Since"] = lm }).status)
      assert.equal(200, get(srv, "/1k.txt", { ["If-Modified-Since"] = "Thu, 01 Jan 1970 00:00:00 GMT" }).status)
    end)
  end)

  it("answers 412 when If-Match or If-Unmodified-Since fails, and serves when they hold", function()
    U.with_app(site(), function(srv)
      local r = get(srv, "/1k.txt")
      local etag, lm = r.headers.etag, r.headers["last-modified"]
      local function status(h, method) return get(srv, "/1k.txt", h, method).status end
      assert.equal(200, status{ ["If-Match"] = '"other", ' .. etag })
      assert.equal(200, status{ ["If-Match"] = "*" })
      assert.equal(412, status{ ["If-Match"] = '"other"' })
      assert.equal(412, status({ ["If-Match"] = '"other"' }, "HEAD"))
      -- If-Match compares strongly (RFC 9110 §13.1.1): a weak tag never matches
      assert.equal(412, status{ ["If-Match"] = "W/" .. etag })
      assert.equal(200, status{ ["If-Unmodified-Since"] = lm })
      assert.equal(412, status{ ["If-Unmodified-Since"] = "Thu, 01 Jan 1970 00:00:00 GMT" })
      assert.equal(200, status{ ["If-Unmodified-Since"] = "not a date" })
      -- If-Unmodified-Since is ignored beside If-Match (§13.1.4)
      assert.equal(200, status{ ["If-Match"] = etag, ["If-Unmodified-Since"] = "Thu, 01 Jan 1970 00:00:00 GMT" })
      -- the precondition comes before If-None-Match and Range (§13.2.2)
      assert.equal(412, status{ ["If-Match"] = '"other"', ["If-None-Match"] = etag })
      assert.equal(412, status{ ["If-Match"] = '"other"', Range = "bytes=0-1" })
      assert.equal(206, status{ ["If-Match"] = etag, Range = "bytes=0-1" })
    end)
  end)

  it("answers a single Range with 206 and Content-Range", function()
    U.with_app(site(), function(srv)
      local r = get(srv, "/1k.txt", { Range = "bytes=0-9" })
      assert.equal(206, r.status)
      assert.equal("ABCDEFGHIJ", r.body)
      assert.equal("bytes 0-9/1024", r.headers["content-range"])
      r = get(srv, "/1k.txt", { Range = "bytes=-4" })
      assert.equal("bytes 1020-1023/1024", r.headers["content-range"])
      assert.equal(4, #r.body)
      r = get(srv, "/1k.txt", { Range = "bytes=1000-" })
      assert.equal(24, #r.body)
      r = get(srv, "/1k.txt", { Range = "bytes=5000-" })
      assert.equal(416, r.status)
      assert.equal("bytes */1024", r.headers["content-range"])
    end)
  end)

  -- the parts of a multipart/byteranges body: {content-type, content-range, data}
  local function parts(r)
    local boundary = r.headers["content-type"]:match("^multipart/byteranges; boundary=(%S+)$")
    assert.is_string(boundary)
    local list, pos = {}, 1
    for _ = 1, 100 do
      local s, e = r.body:find("--" .. boundary, pos, true)
      assert.is_number(s)
      if r.body:sub(e + 1, e + 4) == "--\r\n" then
        assert.equal(#r.body, e + 4)
        return list
      end
      local head_end = assert(r.body:find("\r\n\r\n", e, true))
      local head = r.body:sub(e + 3, head_end + 1)
      local next_s = assert(r.body:find("\r\n--" .. boundary, head_end, true))
      list[#list + 1] = { head:match("Content%-Type: ([^\r]+)"), head:match("Content%-Range: ([^\r]+)"),
                          r.body:sub(head_end + 4, next_s - 1) }
      pos = next_s + 2
    end
    error("too many parts")
  end

  it("answers several ranges with one multipart/byteranges 206, from memory or from the file", function()
    for _, opts in ipairs { {}, { cache_max_file = 0 } } do
      U.with_app(site(opts), function(srv)
        local r = get(srv, "/1k.txt", { Range = "bytes=0-1, 5-6,,-3, 5000-6000" })
        assert.equal(206, r.status)
        assert.equal(tostring(#r.body), r.headers["content-length"])
        assert.same({ { "text/plain; charset=utf-8", "bytes 0-1/1024", "AB" },
                      { "text/plain; charset=utf-8", "bytes 5-6/1024", "FG" },
                      { "text/plain; charset=utf-8", "bytes 1021-1023/1024", "HIJ" } },
                    parts(r))
        -- one satisfiable range of several: a plain 206
        r = get(srv, "/1k.txt", { Range = "bytes=0-0,5000-" })
        assert.equal("bytes 0-0/1024", r.headers["content-range"])
        assert.equal("A", r.body)
        assert.equal(416, get(srv, "/1k.txt", { Range = "bytes=5000-,6000-" }).status)
        -- more ranges than max_ranges: the whole file (RFC 9110 §14.2)
        r = get(srv, "/1k.txt", { Range = "bytes=" .. ("0-0,"):rep(16) .. "1-1" })
        assert.equal(200, r.status)
        assert.equal(1024, #r.body)
      end)
    end
  end)

  it("ignores Range when If-Range does not match", function()
    U.with_app(site(), function(srv)
      local etag = get(srv, "/1k.txt").headers.etag
      assert.equal(206, get(srv, "/1k.txt", { Range = "bytes=0-1", ["If-Range"] = etag }).status)
      assert.equal(200, get(srv, "/1k.txt", { Range = "bytes=0-1", ["If-Range"] = '"old"' }).status)
    end)
  end)

  it("answers HEAD with the file's length and no body", function()
    U.with_app(site(), function(srv)
      local r = get(srv, "/1k.txt", nil, "HEAD")
      assert.equal("1024", r.headers["content-length"])
      assert.equal("", r.body)
    end)
  end)

  it("refuses .. segments, encoded or not, and NUL", function()
    U.with_app(site(), function(srv)
      -- each twice: a refusal is never kept in the path cache
      for _, target in ipairs { "/../etc/passwd", "/%2e%2e/etc/passwd", "/sub/..%2f..%2fetc/passwd",
                                "/sub/%2E%2E/%2e%2e/etc/passwd", "/../etc/passwd" } do
        local text = raw_get(srv, target)
        assert.matches("^HTTP/1%.1 403 ", text, nil, target)
        assert.not_matches("root:", text)
      end
      assert.matches("^HTTP/1%.1 400 ", raw_get(srv, "/1k.txt%00.html"))
    end)
  end)

  it("resolves dot-segments that stay inside the root, as nginx does", function()
    U.with_app(site(), function(srv)
      for _, target in ipairs { "/sub/../1k.txt", "/sub/./../1k.txt", "/./1k.txt", "/sub/%2e%2e/1k.txt",
                                "/1k.txt", "/sub/../1k.txt" } do
        local text = raw_get(srv, target)
        assert.matches("^HTTP/1%.1 200 ", text, nil, target)
        assert.matches("\r\nContent%-Length: 1024\r\n", text, nil, target)
      end
      assert.matches("^HTTP/1%.1 403 ", raw_get(srv, "/sub/../../1k.txt"))
    end)
  end)

  it("refuses a symlink that leads out of the root and follows one that stays in", function()
    assert.is_function(require("parley.core").fs.realpath, "core.fs.realpath is missing")
    assert(os.execute("ln -s /etc " .. root .. "/etc-link && ln -s 1k.txt " .. root .. "/inside-link"))
    U.with_app(site(), function(srv)
      local r = get(srv, "/etc-link/hostname")
      assert.equal(404, r.status)
      r = get(srv, "/inside-link")
      assert.equal(200, r.status)
      assert.equal(1024, #r.body)
    end)
  end)

  it("answers 404 for a missing file and redirects a directory without its slash", function()
    U.with_app(site(), function(srv)
      assert.equal(404, get(srv, "/missing.txt").status)
      local r = get(srv, "/sub", nil, nil)
      -- the client follows the 301 to /sub/, which has no index: 403
      assert.equal(403, r.status)
      assert.equal(1, #r.redirects)
      r = http.client.request{ url = "http://127.0.0.1:" .. srv.port .. "/sub?x=1", max_redirects = 0 }
      assert.equal(301, r.status)
      assert.equal("/sub/?x=1", r.headers.location)
    end)
  end)

  it("lists a directory without index.html when asked, names escaped", function()
    U.with_app(site{ listing = true }, function(srv)
      local r = get(srv, "/sub/")
      assert.equal(200, r.status)
      assert.matches('<a href="a%%20b%.txt">a b%.txt</a>', r.body)
      assert.matches("&lt;x&gt;%.txt", r.body)
      assert.not_matches("<x>", r.body, 1, true)
      assert.equal("spaced\n", get(srv, "/sub/a%20b.txt").body)
    end)
  end)

  it("sees a changed file once cache_valid has passed, at once with 0", function()
    local function write(data)
      local f = assert(io.open(root .. "/changing.txt", "wb"))
      f:write(data)
      f:close()
    end
    write("first")
    U.with_app(function(app)
      app:static("/c/", root, { cache_valid = 0.2 })
      app:static("/n/", root, { cache_valid = 0 })
      app:static("/big/", root, { cache_max_file = 100 })
    end, function(srv)
      assert.equal("first", get(srv, "/c/changing.txt").body)
      assert.equal("first", get(srv, "/n/changing.txt").body)
      write("second!")
      assert.equal("second!", get(srv, "/n/changing.txt").body)
      require("parley").sleep(0.3)
      assert.equal("second!", get(srv, "/c/changing.txt").body)
      -- over cache_max_file: sent from the file each time (sendfile)
      local r = get(srv, "/big/1k.txt", { Range = "bytes=1020-" })
      assert.equal("GHIJ", r.body)
      assert.equal(1024, #get(srv, "/big/1k.txt").body)
    end)
  end)

  it("serves under a prefix, under a handler's own * route and as a whole handler", function()
    U.with_app(function(app)
      app:get("/docs/private/*", function(_, res) return res:send("mine") end)   -- added first: wins
      app:static("/docs", root)
      app:get("/files/*", static.handler(root))
      app:get("/one", static.handler(root))          -- req.path itself: /one is no file
    end, function(srv)
      assert.equal(1024, #get(srv, "/docs/1k.txt").body)
      assert.equal("mine", get(srv, "/docs/private/1k.txt").body)
      local r = assert(http.client.request{ url = "http://127.0.0.1:" .. srv.port .. "/docs?x=1",
                                            method = "HEAD", max_redirects = 0 })
      assert.equal(301, r.status)
      assert.equal("/docs/?x=1", r.headers.location)
      assert.equal(1024, #get(srv, "/files/1k.txt").body)
      assert.equal(404, get(srv, "/one").status)
      r = get(srv, "/docs/1k.txt", nil, "POST")
      assert.equal(405, r.status)
      assert.equal("GET, HEAD", r.headers.allow)
      assert.equal(404, get(srv, "/doc/1k.txt").status)
    end)
  end)

  it("parses the three HTTP date formats", function()
    local t = 784111777
    assert.equal(t, static.parse_date("Sun, 06 Nov 1994 08:49:37 GMT"))
    assert.equal(t, static.parse_date("Sunday, 06-Nov-94 08:49:37 GMT"))
    assert.equal(t, static.parse_date("Sun Nov  6 08:49:37 1994"))
    assert.is_nil(static.parse_date("yesterday"))
  end)

  it("parses byte ranges against a size", function()
    assert.same({ 0, 99 }, { static.parse_range("bytes=0-99", 1000) })
    assert.same({ 900, 999 }, { static.parse_range("bytes=-100", 1000) })
    assert.same({ 10, 999 }, { static.parse_range("bytes=10-5000", 1000) })
    assert.is_false(static.parse_range("bytes=1000-", 1000))
    assert.is_nil(static.parse_range("bytes=5-1", 1000))
    assert.is_nil(static.parse_range("items=0-1", 1000))
    assert.is_nil(static.parse_range("bytes=0-1,3-4", 1000))
  end)

  it("parses a set of byte ranges against a size", function()
    assert.same({ { 0, 1 }, { 3, 4 } }, static.parse_ranges("bytes=0-1,3-4", 1000))
    assert.same({ { 0, 1 }, { 990, 999 } }, static.parse_ranges("bytes= 0-1 , , -10, 2000-", 1000))
    assert.same({ { 5, 999 } }, static.parse_ranges("bytes=5-", 1000))
    assert.is_false(static.parse_ranges("bytes=1000-,2000-3000", 1000))
    assert.is_nil(static.parse_ranges("bytes=0-1,x", 1000))
    assert.is_nil(static.parse_ranges("bytes=,", 1000))
    assert.is_nil(static.parse_ranges("bytes=0-0,1-1,2-2", 1000, 2))
  end)
end)
