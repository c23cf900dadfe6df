-- core.http: HTTP/1.1 message syntax and framing (RFC 9112, RFC 9110).
local core = require "parley.core"
local http = core.http

local CRLF = "\r\n"

local function req(lines)
  return table.concat(lines, CRLF) .. CRLF .. CRLF
end

-- a parse error: nil, reason, status
local function rejects(status, ...)
  local n, reason, st = ...
  assert.is_nil(n)
  assert.is_string(reason)
  assert.are.equal(status, st)
  return reason
end

describe("http.parse_request", function()
  local get = req{
    "GET /index.html?q=1 HTTP/1.1",
    "Host: example.com",
    "User-Agent:  curl/8.0 ",
    "Accept: */*",
  }

  it("parses the method, target, version and fields of a complete head", function()
    local n, method, target, minor, h = http.parse_request(get)
    assert.are.equal(#get, n)
    assert.are.equal("GET", method)
    assert.are.equal("/index.html?q=1", target)
    assert.are.equal(1, minor)
    assert.are.same({ "host", "example.com", "user-agent", "curl/8.0",
                      "accept", "*/*" }, { table.unpack(h, 1, #h) })
    assert.are.equal("example.com", h.host)
    assert.are.equal("curl/8.0", h["user-agent"])
  end)

  it("returns nil alone while the head is incomplete, at every cut", function()
    for i = 0, #get - 1 do
      local r = table.pack(http.parse_request(get:sub(1, i)))
      assert.are.equal(1, r.n, "cut at " .. i)
      assert.is_nil(r[1])
    end
  end)

  it("gives the same result with the seen hint when fed byte by byte", function()
    local seen = 0
    for i = 1, #get do
      local buf = get:sub(1, i)
      local n = http.parse_request(buf, 1, nil, seen)
      if i < #get then assert.is_nil(n) else assert.are.equal(#get, n) end
      seen = #buf
    end
  end)

  it("reports errors of a complete head even with the seen hint", function()
    local bad = "GET / HTTP/1.1\r\nA b: c\r\n\r\n"
    rejects(400, http.parse_request(bad, 1, nil, #bad - 2))
  end)

  it("starts at init and counts only the bytes of that head", function()
    local buf = "xxxx" .. get .. "tail"
    local n, method = http.parse_request(buf, 5)
    assert.are.equal(#get, n)
    assert.are.equal("GET", method)
  end)

  it("parses requests pipelined back to back in one buffer", function()
    local a = req{ "GET /a HTTP/1.1", "Host: x" }
    local b = req{ "HEAD /b HTTP/1.1", "Host: y" }
    local c = req{ "DELETE /c HTTP/1.0" }
    local buf = a .. b .. c
    local pos, got = 1, {}
    while pos <= #buf do
      local n, method, target, minor = http.parse_request(buf, pos)
      assert.is_number(n)
      got[#got + 1] = method .. " " .. target .. " " .. minor
      pos = pos + n
    end
    assert.are.same({ "GET /a 1", "HEAD /b 1", "DELETE /c 0" }, got)
    assert.are.equal(#buf + 1, pos)
  end)

  it("accepts HTTP/1.0 and reports minor version 0", function()
    local _, _, _, minor = http.parse_request("GET / HTTP/1.0\r\n\r\n")
    assert.are.equal(0, minor)
  end)

  it("treats HTTP/1.2 as the highest supported minor version", function()
    local _, _, _, minor = http.parse_request("GET / HTTP/1.2\r\n\r\n")
    assert.are.equal(1, minor)
  end)

  it("answers 505 to HTTP/2.0 and HTTP/0.9 request lines", function()
    rejects(505, http.parse_request("GET / HTTP/2.0\r\n\r\n"))
    rejects(505, http.parse_request("GET / HTTP/0.9\r\n\r\n"))
  end)

  it("answers 400 to a malformed version", function()
    rejects(400, http.parse_request("GET / HTTP/1.10\r\n\r\n"))
    rejects(400, http.parse_request("GET / http/1.1\r\n\r\n"))
    rejects(400, http.parse_request("GET / HTTP/1\r\n\r\n"))
    rejects(400, http.parse_request("GET / HTTP/a.1\r\n\r\n"))
  end)

  it("rejects a wrong version prefix before the line is complete", function()
    rejects(400, http.parse_request("GET / HTXP"))
  end)

  it("accepts an absolute-form target", function()
    local _, _, target = http.parse_request(
      "GET http://www.example.org/pub/WWW/TheProject.html HTTP/1.1\r\nHost: www.example.org\r\n\r\n")
    assert.are.equal("http://www.example.org/pub/WWW/TheProject.html", target)
  end)

  it("accepts an asterisk-form target", function()
    local _, method, target = http.parse_request("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.are.equal("OPTIONS", method)
    assert.are.equal("*", target)
  end)

  it("accepts an authority-form target", function()
    local _, method, target = http.parse_request(
      "CONNECT www.example.com:80 HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
    assert.are.equal("CONNECT", method)
    assert.are.equal("www.example.com:80", target)
  end)

  it("accepts any method token and leaves 501 to the server", function()
    local _, method = http.parse_request("PROPFIND / HTTP/1.1\r\n\r\n")
    assert.are.equal("PROPFIND", method)
  end)

  it("answers 400 to a method that is not a token", function()
    rejects(400, http.parse_request("G(T / HTTP/1.1\r\n\r\n"))
    rejects(400, http.parse_request(" GET / HTTP/1.1\r\n\r\n"))
    rejects(400, http.parse_request("\22\3\1\0\1\1\0\0"))
  end)

  it("answers 400 to two spaces between the parts of the request line", function()
    rejects(400, http.parse_request("GET  / HTTP/1.1\r\n\r\n"))
    rejects(400, http.parse_request("GET /  HTTP/1.1\r\n\r\n"))
  end)

  it("answers 400 to a request line without a version", function()
    rejects(400, http.parse_request("GET /\r\n\r\n"))
  end)

  it("answers 400 to control characters in the target", function()
    rejects(400, http.parse_request("GET /a\0b HTTP/1.1\r\n\r\n"))
    rejects(400, http.parse_request("GET /a\tb HTTP/1.1\r\n\r\n"))
    rejects(400, http.parse_request("GET /a\127 HTTP/1.1\r\n\r\n"))
  end)

  it("skips empty lines before the request line and counts them", function()
    local buf = "\r\n\r\nGET / HTTP/1.1\r\n\r\n"
    local n, method = http.parse_request(buf)
    assert.are.equal(#buf, n)
    assert.are.equal("GET", method)
  end)

  it("answers 414 to a 9 KiB request line", function()
    local line = "GET /" .. ("a"):rep(9 * 1024) .. " HTTP/1.1\r\n\r\n"
    rejects(414, http.parse_request(line))
  end)

  it("answers 414 to a 9 KiB request line before its LF arrives", function()
    local part = "GET /" .. ("a"):rep(9 * 1024)
    rejects(414, http.parse_request(part))
    rejects(414, http.parse_request(part, 1, nil, #part - 100))
  end)

  it("answers 414 to an over-long request line after empty lines, with the seen hint", function()
    local part = "\r\n3" .. ("^"):rep(100)
    rejects(414, http.parse_request(part, 1, { max_request_line = 18 }, 10))
  end)

  it("answers 414 to a complete over-long request line in an incomplete head, with the seen hint", function()
    local part = "GET /" .. ("a"):rep(9000) .. " HTTP/1.1\r\nHost: x\r\n"
    rejects(414, http.parse_request(part, 1, nil, 20))
    -- one byte over, its bare LF within reach (found by fuzzing)
    rejects(414, http.parse_request("GETTTP / HTTP/1.1\nH: 5\n", 1,
                                    { max_request_line = 16, lenient = true }, 8))
  end)

  it("accepts a request line of exactly max_request_line bytes", function()
    local line = "GET /" .. ("a"):rep(100 - 14) .. " HTTP/1.1"
    assert.are.equal(100, #line)
    assert.is_number(http.parse_request(line .. "\r\n\r\n", 1, { max_request_line = 100 }))
    rejects(414, http.parse_request("GET /a" .. line:sub(6) .. "\r\n\r\n", 1,
                                    { max_request_line = 100 }))
  end)

  it("answers 431 to more than 100 header fields", function()
    local lines = { "GET / HTTP/1.1" }
    for i = 1, 101 do lines[#lines + 1] = "X-" .. i .. ": v" end
    rejects(431, http.parse_request(req(lines)))
    table.remove(lines)
    local n, _, _, _, h = http.parse_request(req(lines))
    assert.is_number(n)
    assert.are.equal(200, #h)
  end)

  it("answers 431 at the 101st field before the head is complete", function()
    local lines = { "GET / HTTP/1.1" }
    for i = 1, 101 do lines[#lines + 1] = "X-" .. i .. ": v" end
    rejects(431, http.parse_request(table.concat(lines, CRLF)))
  end)

  it("honours a larger max_headers", function()
    local lines = { "GET / HTTP/1.1" }
    for i = 1, 300 do lines[#lines + 1] = "X-" .. i .. ": v" .. i end
    local n, _, _, _, h = http.parse_request(req(lines), 1, { max_headers = 300 })
    assert.is_number(n)
    assert.are.equal(600, #h)
    assert.are.equal("v300", h["x-300"])
  end)

  it("answers 431 to a 33 KiB head", function()
    local lines = { "GET / HTTP/1.1" }
    for i = 1, 33 do lines[#lines + 1] = "X-" .. i .. ": " .. ("v"):rep(1000) end
    rejects(431, http.parse_request(req(lines)))
  end)

  it("answers 431 to a 33 KiB head before it is complete", function()
    local lines = { "GET / HTTP/1.1" }
    for i = 1, 33 do lines[#lines + 1] = "X-" .. i .. ": " .. ("v"):rep(1000) end
    local part = table.concat(lines, CRLF)
    rejects(431, http.parse_request(part))
    rejects(431, http.parse_request(part, 1, nil, #part - 10))
  end)

  it("answers 400 to bare LF line endings", function()
    assert.are.equal("bare lf", rejects(400, http.parse_request("GET / HTTP/1.1\nHost: a\n\n")))
    rejects(400, http.parse_request("GET / HTTP/1.1\r\nHost: a\n\r\n"))
    rejects(400, http.parse_request("GET / HTTP/1.1\r\nHost: a\r\n\n"))
  end)

  it("accepts bare LF line endings when lenient", function()
    local buf = "GET / HTTP/1.1\nHost: a\n\n"
    local n, _, _, _, h = http.parse_request(buf, 1, { lenient = true })
    assert.are.equal(#buf, n)
    assert.are.equal("a", h.host)
  end)

  it("answers 400 to a bare CR", function()
    rejects(400, http.parse_request("GET / HTTP/1.1\rHost: a\r\n\r\n"))
    rejects(400, http.parse_request("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"))
  end)

  it("answers 400 to a NUL in a field value", function()
    rejects(400, http.parse_request("GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n"))
  end)

  it("answers 400 to other control characters in a field value", function()
    rejects(400, http.parse_request("GET / HTTP/1.1\r\nX: a\1b\r\n\r\n"))
    rejects(400, http.parse_request("GET / HTTP/1.1\r\nX: a\127b\r\n\r\n"))
    rejects(400, http.parse_request("GET / HTTP/1.1\r\nX: " .. ("a"):rep(40) .. "\27b\r\n\r\n"))
  end)

  it("keeps tabs and obs-text inside field values", function()
    local _, _, _, _, h = http.parse_request("GET / HTTP/1.1\r\nX: a\tb\200\255\r\n\r\n")
    assert.are.equal("a\tb\200\255", h.x)
  end)

  it("answers 400 to a NUL in a field name", function()
    rejects(400, http.parse_request("GET / HTTP/1.1\r\nHo\0st: a\r\n\r\n"))
  end)

  it("answers 400 to whitespace before the colon", function()
    local reason = rejects(400, http.parse_request("GET / HTTP/1.1\r\nHost : a\r\n\r\n"))
    assert.are.equal("whitespace before colon", reason)
    rejects(400, http.parse_request("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"))
  end)

  it("answers 400 to a field line without a colon or with an empty name", function()
    rejects(400, http.parse_request("GET / HTTP/1.1\r\nHost\r\n\r\n"))
    rejects(400, http.parse_request("GET / HTTP/1.1\r\n: a\r\n\r\n"))
  end)

  it("answers 400 to obsolete line folding", function()
    local reason = rejects(400, http.parse_request(
      "GET / HTTP/1.1\r\nX-Long: a\r\n b\r\nHost: x\r\n\r\n"))
    assert.are.equal("obsolete line folding", reason)
    rejects(400, http.parse_request("GET / HTTP/1.1\r\nX-Long: a\r\n\tb\r\n\r\n"))
  end)

  it("answers 400 to whitespace between the request line and the first field", function()
    rejects(400, http.parse_request("GET / HTTP/1.1\r\n Host: x\r\n\r\n"))
  end)

  it("trims optional whitespace around values and keeps empty values", function()
    local _, _, _, _, h = http.parse_request("GET / HTTP/1.1\r\nA:\t x y \t\r\nB:\r\nC: \r\n\r\n")
    assert.are.equal("x y", h.a)
    assert.are.equal("", h.b)
    assert.are.equal("", h.c)
  end)

  it("keeps duplicate fields in order and combines them in the index", function()
    local _, _, _, _, h = http.parse_request(
      "GET / HTTP/1.1\r\nAccept: a\r\nX: 1\r\naccept: b\r\nACCEPT: c\r\n\r\n")
    assert.are.same({ "accept", "a", "x", "1", "accept", "b", "accept", "c" },
                    { table.unpack(h, 1, #h) })
    assert.are.equal("a, b, c", h.accept)
  end)

  it("keeps a long field name lowercased", function()
    local name = ("X-Very-Long-Name-"):rep(10)
    local _, _, _, _, h = http.parse_request("GET / HTTP/1.1\r\n" .. name .. ": v\r\n\r\n")
    assert.are.equal(name:lower(), h[1])
    assert.are.equal("v", h[name:lower()])
  end)

  it("returns nil for an init past the end", function()
    assert.is_nil(http.parse_request("GET / HTTP/1.1\r\n\r\n", 100))
  end)

  it("raises on a bad argument", function()
    assert.has_error(function() http.parse_request(nil) end)
    assert.has_error(function() http.parse_request("x", 0) end)
    assert.has_error(function() http.parse_request("x", 1, { max_head = -1 }) end)
  end)
end)

describe("http.parse_response", function()
  it("parses the status line and fields", function()
    local buf = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\nrest"
    local n, minor, status, reason, h = http.parse_response(buf)
    assert.are.equal(#buf - 4, n)
    assert.are.equal(1, minor)
    assert.are.equal(404, status)
    assert.are.equal("Not Found", reason)
    assert.are.equal("0", h["content-length"])
  end)

  it("accepts an empty reason phrase with or without its space", function()
    local _, _, status, reason = http.parse_response("HTTP/1.1 200 \r\n\r\n")
    assert.are.equal(200, status)
    assert.are.equal("", reason)
    _, _, status, reason = http.parse_response("HTTP/1.0 204\r\n\r\n")
    assert.are.equal(204, status)
    assert.are.equal("", reason)
  end)

  it("returns nil alone at every cut of a response head", function()
    local buf = "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n"
    for i = 0, #buf - 1 do
      local r = table.pack(http.parse_response(buf:sub(1, i)))
      assert.are.equal(1, r.n, "cut at " .. i)
    end
  end)

  it("replaces obs-fold in a response with spaces", function()
    local _, _, _, _, h = http.parse_response("HTTP/1.1 200 OK\r\nX: a\r\n  b\r\nY: c\r\n\r\n")
    assert.are.equal("a    b", h.x)
    assert.are.equal("c", h.y)
  end)

  it("rejects a malformed status line", function()
    rejects(502, http.parse_response("HTTP/1.1 20 OK\r\n\r\n"))
    rejects(502, http.parse_response("HTTP/1.1 2000 OK\r\n\r\n"))
    rejects(502, http.parse_response("HTTP/1.1 099 OK\r\n\r\n"))
    rejects(502, http.parse_response("HTTP/1.1 200 O\0K\r\n\r\n"))
    rejects(502, http.parse_response("HTTP/2 200\r\n\r\n"))
    rejects(502, http.parse_response("ICY 200 OK\r\n\r\n"))
    rejects(502, http.parse_response("HTTP/1.1 2x"))
  end)

  it("rejects an HTTP/2.0 status line", function()
    local reason = rejects(502, http.parse_response("HTTP/2.0 200 OK\r\n\r\n"))
    assert.are.equal("unsupported http version", reason)
  end)

  it("rejects bare LF unless lenient", function()
    rejects(502, http.parse_response("HTTP/1.1 200 OK\nA: b\n\n"))
    local _, _, status = http.parse_response("HTTP/1.1 200 OK\nA: b\n\n", 1, { lenient = true })
    assert.are.equal(200, status)
  end)

  it("rejects a head over max_head", function()
    local buf = "HTTP/1.1 200 OK\r\nX: " .. ("a"):rep(40000) .. "\r\n\r\n"
    rejects(502, http.parse_response(buf))
  end)
end)

describe("http.body_framing", function()
  local function framing(fields, is_request, method, status, minor)
    local lines = { is_request and "POST / HTTP/1.1" or "HTTP/1.1 200 OK" }
    for i = 1, #fields, 2 do lines[#lines + 1] = fields[i] .. ": " .. fields[i + 1] end
    local parse = is_request and http.parse_request or http.parse_response
    local r = table.pack(parse(req(lines)))
    assert.is_number(r[1])
    return http.body_framing(r[5], is_request, method, status, minor)
  end

  it("gives no body to a request without Content-Length or Transfer-Encoding", function()
    assert.are.equal("none", framing({}, true))
  end)

  it("reads a response without framing fields until close", function()
    assert.are.equal("close", framing({}, false, "GET", 200))
  end)

  it("uses Content-Length", function()
    local kind, n = framing({ "Content-Length", "42" }, true)
    assert.are.equal("length", kind)
    assert.are.equal(42, n)
    kind, n = framing({ "Content-Length", "0" }, false, "GET", 200)
    assert.are.equal("length", kind)
    assert.are.equal(0, n)
  end)

  it("accepts identical repeated Content-Length values", function()
    local kind, n = framing({ "Content-Length", "5", "Content-Length", "5" }, true)
    assert.are.equal("length", kind)
    assert.are.equal(5, n)
    kind, n = framing({ "Content-Length", "5, 5" }, true)
    assert.are.equal("length", kind)
    assert.are.equal(5, n)
  end)

  it("answers 400 to differing Content-Length values", function()
    rejects(400, framing({ "Content-Length", "5", "Content-Length", "6" }, true))
    rejects(400, framing({ "Content-Length", "5, 6" }, true))
  end)

  it("answers 400 to a Content-Length that is not digits", function()
    rejects(400, framing({ "Content-Length", "-1" }, true))
    rejects(400, framing({ "Content-Length", "+5" }, true))
    rejects(400, framing({ "Content-Length", "0x10" }, true))
    rejects(400, framing({ "Content-Length", "5 5" }, true))
    rejects(400, framing({ "Content-Length", "" }, true))
  end)

  it("answers 400 to a Content-Length that overflows", function()
    rejects(400, framing({ "Content-Length", "9223372036854775808" }, true))
    rejects(400, framing({ "Content-Length", "99999999999999999999999" }, true))
    local kind, n = framing({ "Content-Length", "9223372036854775807" }, true)
    assert.are.equal("length", kind)
    assert.are.equal(math.maxinteger, n)
  end)

  it("answers 502 to a bad Content-Length in a response", function()
    rejects(502, framing({ "Content-Length", "5, 6" }, false, "GET", 200))
  end)

  it("uses chunked when it is the final coding", function()
    assert.are.equal("chunked", framing({ "Transfer-Encoding", "chunked" }, true))
    assert.are.equal("chunked", framing({ "Transfer-Encoding", "gzip, chunked" }, true))
    assert.are.equal("chunked", framing({ "Transfer-Encoding", "gzip", "Transfer-Encoding", "Chunked" }, true))
    assert.are.equal("chunked", framing({ "Transfer-Encoding", "chunked" }, false, "GET", 200))
  end)

  it("answers 400 to Transfer-Encoding together with Content-Length", function()
    local reason = rejects(400, framing({ "Transfer-Encoding", "chunked", "Content-Length", "5" }, true))
    assert.are.equal("transfer-encoding with content-length", reason)
    rejects(502, framing({ "Content-Length", "5", "Transfer-Encoding", "chunked" }, false, "GET", 200))
  end)

  it("answers 400 to Transfer-Encoding: gzip in a request", function()
    rejects(400, framing({ "Transfer-Encoding", "gzip" }, true))
  end)

  it("answers 400 to Transfer-Encoding: chunked, gzip in a request", function()
    rejects(400, framing({ "Transfer-Encoding", "chunked, gzip" }, true))
  end)

  it("reads a response whose final coding is not chunked until close", function()
    assert.are.equal("close", framing({ "Transfer-Encoding", "gzip" }, false, "GET", 200))
    assert.are.equal("close", framing({ "Transfer-Encoding", "chunked, gzip" }, false, "GET", 200))
  end)

  it("answers 501 to an unknown transfer coding in a request", function()
    rejects(501, framing({ "Transfer-Encoding", "foo" }, true))
    rejects(501, framing({ "Transfer-Encoding", "foo, chunked" }, true))
  end)

  it("answers 400 to chunked applied twice or with parameters", function()
    rejects(400, framing({ "Transfer-Encoding", "chunked, chunked" }, true))
    rejects(400, framing({ "Transfer-Encoding", "chunked;q=1" }, true))
  end)

  it("accepts parameters on other codings", function()
    assert.are.equal("chunked", framing({ "Transfer-Encoding", 'gzip;level="9, x", chunked' }, true))
  end)

  it("answers 400 to an empty or malformed Transfer-Encoding", function()
    rejects(400, framing({ "Transfer-Encoding", "" }, true))
    rejects(400, framing({ "Transfer-Encoding", "chunked, @" }, true))
    rejects(400, framing({ "Transfer-Encoding", 'gzip;a="x' }, true))
  end)

  it("answers 400 to Transfer-Encoding in an HTTP/1.0 message", function()
    rejects(400, framing({ "Transfer-Encoding", "chunked" }, true, nil, nil, 0))
  end)

  it("gives no body to responses to HEAD and to 1xx, 204 and 304", function()
    local cl = { "Content-Length", "10" }
    assert.are.equal("none", framing(cl, false, "HEAD", 200))
    assert.are.equal("none", framing(cl, false, "GET", 100))
    assert.are.equal("none", framing(cl, false, "GET", 101))
    assert.are.equal("none", framing(cl, false, "GET", 204))
    assert.are.equal("none", framing({ "Transfer-Encoding", "chunked" }, false, "GET", 304))
  end)

  it("turns a 2xx answer to CONNECT into a tunnel", function()
    assert.are.equal("tunnel", framing({ "Content-Length", "10" }, false, "CONNECT", 200))
    assert.are.equal("length", (framing({ "Content-Length", "10" }, false, "CONNECT", 407)))
  end)

  it("works on a hand-built index table", function()
    local kind, n = http.body_framing({ ["content-length"] = "7" }, true)
    assert.are.equal("length", kind)
    assert.are.equal(7, n)
  end)
end)

describe("http.chunked_decoder", function()
  local sample = "4\r\nWiki\r\n5;name=val\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n"
              .. "0\r\nExpires: never\r\nX-Sum: 12\r\n\r\n"
  local decoded = "Wikipedia in\r\n\r\nchunks."

  it("decodes a chunked body and its trailers in one feed", function()
    local d = http.chunked_decoder()
    local data, done, used = d:feed(sample .. "GET / HTTP/1.1\r\n")
    assert.are.equal(decoded, data)
    assert.is_true(done)
    assert.are.equal(#sample, used)
    local t = d:trailers()
    assert.are.equal("never", t.expires)
    assert.are.equal("12", t["x-sum"])
    assert.are.same({ "expires", "never", "x-sum", "12" }, { table.unpack(t, 1, #t) })
    assert.is_true(d:done())
    assert.matches("%(done%)", tostring(d))
  end)

  it("decodes the same at every split point of the sample", function()
    for i = 0, #sample do
      local d = http.chunked_decoder()
      local a, done1, used1 = d:feed(sample:sub(1, i))
      assert.is_string(a, "split at " .. i)
      assert.are.equal(i, used1)
      assert.is_false(done1 and i < #sample)
      local b, done2, used2 = d:feed(sample:sub(i + 1))
      assert.are.equal(decoded, a .. b, "split at " .. i)
      assert.is_true(done2, "split at " .. i)
      assert.are.equal(#sample - i, used2)
      assert.are.equal("never", d:trailers().expires)
    end
  end)

  it("decodes the same at every pair of split points", function()
    for i = 0, #sample do
      for j = i, #sample do
        local d = http.chunked_decoder()
        local a = d:feed(sample:sub(1, i))
        local b = d:feed(sample:sub(i + 1, j))
        local c, done = d:feed(sample:sub(j + 1))
        assert.are.equal(decoded, a .. b .. c)
        assert.is_true(done)
      end
    end
  end)

  it("decodes byte by byte", function()
    local d = http.chunked_decoder()
    local out = {}
    for i = 1, #sample do
      local data, done = d:feed(sample:sub(i, i))
      out[#out + 1] = data
      assert.are.equal(i == #sample, done)
    end
    assert.are.equal(decoded, table.concat(out))
  end)

  it("stops at the end of the body and leaves the next message", function()
    local d = http.chunked_decoder()
    local buf = "3\r\nabc\r\n0\r\n\r\nNEXT"
    local data, done, used = d:feed(buf)
    assert.are.equal("abc", data)
    assert.is_true(done)
    assert.are.equal(#buf - 4, used)
    assert.are.same({ "", true, 0 }, { d:feed("more") })
    assert.are.same({}, d:trailers())
  end)

  it("feeds from an init offset", function()
    local d = http.chunked_decoder()
    local data, done, used = d:feed("HEAD3\r\nabc\r\n0\r\n\r\n", 5)
    assert.are.equal("abc", data)
    assert.is_true(done)
    assert.are.equal(13, used)
  end)

  it("accepts uppercase hex and leading zeros", function()
    local d = http.chunked_decoder()
    local data, done = d:feed("00A\r\n0123456789\r\n000\r\n\r\n")
    assert.are.equal("0123456789", data)
    assert.is_true(done)
  end)

  it("ignores chunk extensions, with spaces before the semicolon", function()
    local d = http.chunked_decoder()
    local data, done = d:feed('1 ; a=b ;c="x;y"\r\nz\r\n0;last\r\n\r\n')
    assert.are.equal("z", data)
    assert.is_true(done)
  end)

  local function fails(input, limits)
    local d = http.chunked_decoder(limits)
    local data, reason = d:feed(input)
    assert.is_nil(data, input)
    assert.is_string(reason)
    -- the decoder stays failed
    local again = d:feed("0\r\n\r\n")
    assert.is_nil(again)
    assert.matches("failed", tostring(d))
    return reason
  end

  it("rejects a negative chunk size", function()
    assert.are.equal("invalid chunk size", fails("-1\r\n"))
  end)

  it("rejects a chunk size that overflows", function()
    assert.are.equal("chunk size too large", fails("fffffffffffffffff\r\n"))
    fails("10000000000000000\r\n")
  end)

  it("rejects a chunk size with a 0x prefix", function()
    assert.are.equal("invalid chunk size", fails("0x10\r\n"))
  end)

  it("rejects an empty chunk size", function()
    assert.are.equal("invalid chunk size", fails("\r\nabc\r\n"))
    fails(";ext\r\n")
  end)

  it("rejects a chunk size followed by spaces without an extension", function()
    fails("3 \r\nabc\r\n")
  end)

  it("rejects a chunk size over max_chunk_size", function()
    assert.are.equal("chunk size too large", fails("401\r\n", { max_chunk_size = 1024 }))
    local d = http.chunked_decoder{ max_chunk_size = 1024 }
    assert.is_string(d:feed("400\r\n"))
  end)

  it("rejects chunk data followed by something other than CRLF", function()
    assert.are.equal("missing crlf after chunk data", fails("3\r\nabcd\r\n"))
    fails("3\r\nabc\rx")
    fails("3\r\nabc\n0\r\n\r\n")
  end)

  it("rejects a bare LF unless lenient", function()
    fails("3\nabc\r\n0\r\n\r\n")
    local d = http.chunked_decoder{ lenient = true }
    local data, done = d:feed("3\nabc\n0\n\n")
    assert.are.equal("abc", data)
    assert.is_true(done)
  end)

  it("rejects a bare CR in the size line", function()
    fails("3\rabc")
  end)

  it("rejects chunk extensions over max_chunk_ext", function()
    assert.are.equal("chunk extension too long",
                     fails("1;" .. ("x"):rep(5000) .. "\r\n"))
    assert.are.equal("chunk extension too long",
                     fails("1;" .. ("x"):rep(20) .. "\r\n", { max_chunk_ext = 10 }))
  end)

  it("rejects control characters in a chunk extension", function()
    assert.are.equal("invalid chunk extension", fails("1;a\0b\r\nx\r\n"))
  end)

  it("rejects a trailer section over max_trailer", function()
    assert.are.equal("trailer section too large",
                     fails("0\r\nX: " .. ("a"):rep(9000) .. "\r\n\r\n"))
    fails("0\r\nX: aaaa\r\n\r\n", { max_trailer = 8 })
  end)

  it("rejects a trailer section that crosses max_trailer across feeds", function()
    local d = http.chunked_decoder{ max_trailer = 16 }
    assert.are.same({ "", false, 9 }, { d:feed("0\r\nX: abc") })
    local data, reason = d:feed("defghijklmnop\r\n\r\n")
    assert.is_nil(data)
    assert.are.equal("trailer section too large", reason)
  end)

  it("rejects a malformed trailer section", function()
    fails("0\r\nX : a\r\n\r\n")
    fails("0\r\nX: a\0\r\n\r\n")
    fails("0\r\nX: a\r\n b\r\n\r\n")
    fails("0\r\nX: a\n\r\n")
  end)

  it("rejects too many trailer fields", function()
    local t = {}
    for i = 1, 5 do t[#t + 1] = "T" .. i .. ": v\r\n" end
    fails("0\r\n" .. table.concat(t) .. "\r\n", { max_headers = 4 })
  end)

  it("raises on a bad argument", function()
    assert.has_error(function() http.chunked_decoder("x") end)
    assert.has_error(function() http.chunked_decoder{ max_chunk_size = -1 } end)
    assert.has_error(function() http.chunked_decoder():feed(nil) end)
  end)
end)

describe("http.chunk", function()
  it("frames data as one chunk with a hex size", function()
    assert.are.equal("5\r\nhello\r\n", http.chunk("hello"))
    assert.are.equal("1a\r\n" .. ("x"):rep(26) .. "\r\n", http.chunk(("x"):rep(26)))
  end)

  it("gives the last-chunk for empty data", function()
    assert.are.equal("0\r\n\r\n", http.chunk(""))
  end)

  it("round-trips random data cut in random pieces and fed in random splits", function()
    math.randomseed(9112)
    for _ = 1, 200 do
      local len = math.random(0, 3000)
      local bytes = {}
      for i = 1, len do bytes[i] = string.char(math.random(0, 255)) end
      local data = table.concat(bytes)
      -- encode in random pieces
      local enc, pos = {}, 1
      while pos <= #data do
        local n = math.random(1, 700)
        enc[#enc + 1] = http.chunk(data:sub(pos, pos + n - 1))
        pos = pos + n
      end
      enc[#enc + 1] = http.chunk("")
      local wire = table.concat(enc) .. "NEXT"
      -- decode fed in random splits
      local d = http.chunked_decoder()
      local out, at, done = {}, 1, false
      while not done do
        local n = math.random(1, 64)
        local piece = wire:sub(at, at + n - 1)
        local got, used
        got, done, used = d:feed(piece)
        assert.is_string(got)
        out[#out + 1] = got
        at = at + used
        if not done then assert.are.equal(#piece, used) end
      end
      assert.are.equal(data, table.concat(out))
      assert.are.equal("NEXT", wire:sub(at))
    end
  end)
end)

describe("http.limits", function()
  it("reads a limits table once for parse_request and parse_response", function()
    local lim = http.limits{ max_request_line = 20, max_headers = 1, lenient = true }
    assert.matches("^parley.http.limits: ", tostring(lim))
    local bare = "GET /a HTTP/1.1\nHost: x\n\n"
    assert.equal(#bare, (http.parse_request(bare, 1, lim)))
    local n, err, status = http.parse_request("GET /" .. ("a"):rep(30) .. " HTTP/1.1\r\n\r\n", 1, lim)
    assert.is_nil(n)
    assert.equal(414, status, err)
    n, err, status = http.parse_request("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n", 1, lim)
    assert.is_nil(n)
    assert.equal(431, status, err)
    assert.is_number(http.parse_response("HTTP/1.1 200 OK\nA: 1\n\n", 1, lim))
    assert.has_error(function() http.limits{ max_head = -1 } end)
    assert.has_error(function() http.parse_request("GET / HTTP/1.1\r\n\r\n", 1, io.stdout) end)
  end)
end)

describe("http.parse_request with a request metatable", function()
  local mt = { __name = "test.request" }
  mt.__index = http.request_index(mt)
  -- one connection's metatable: its peer and stream as upvalues
  local conn_mt = { __index = http.request_index(mt, "10.0.0.1", "conn") }
  local function parse_obj(head)
    return http.parse_request(head, 1, nil, nil, conn_mt)
  end

  it("builds the request object a server hands its handler", function()
    local head = "GET /a%20b/c?x=1&y=%41 HTTP/1.1\r\nHost: h\r\nUser-Agent: t\r\n\r\n"
    local r9 = table.pack(parse_obj(head))
    local n, r, keep, kind, len, refuse = table.unpack(r9, 1, 6)
    assert.are.equal(9, r9.n)
    assert.are.same({ "GET", "/a b/c", 1 }, { r9[7], r9[8], r9[9] })   -- for routing
    assert.are.equal(#head, n)
    assert.are.equal(conn_mt, getmetatable(r))
    assert.are.same({ head }, r)   -- the head alone: the rest is made when asked
    assert.are.same({ "GET", "/a%20b/c?x=1&y=%41", 1, "/a b/c", "x=1&y=%41", "10.0.0.1", "conn" },
      { r.method, r.target, r.minor, r.path, r.query, r.peer, r.conn })
    assert.are.same({ "host", "h", "user-agent", "t", host = "h", ["user-agent"] = "t" }, r.headers)
    assert.are.same({ true, "none" }, { keep, kind })
    assert.is_nil(len)
    assert.is_nil(refuse)
    assert.is_nil(rawget(r, "_continue"))
    -- made on each use, not kept; a value set by hand wins
    assert.is_nil(rawget(r, "path"))
    r.path = "/rewritten"
    assert.are.equal("/rewritten", r.path)
    assert.is_nil(setmetatable({ head }, mt).peer)   -- no peer given
  end)

  it("makes the request line's fields from the head, as the parser saw them", function()
    for _, case in ipairs {
      { "OPTIONS * HTTP/1.0\r\n\r\n", "OPTIONS", "*", "*", nil, 0 },
      { "GET http://h:1/x%2e?q HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "http://h:1/x%2e?q", "/x.", "q", 1 },
      { "PROPFIND /d/? HTTP/1.9\r\nHost: h\r\n\r\n", "PROPFIND", "/d/?", "/d/", "", 1 },
      { "\r\nDELETE /a HTTP/1.1\r\nHost: h\r\n\r\n", "DELETE", "/a", "/a", nil, 1 },
      { "GET /l HTTP/1.1\nHost: h\n\n", "GET", "/l", "/l", nil, 1 },
    } do
      local r9 = table.pack(http.parse_request(case[1], 1, { lenient = true }, nil, mt))
      local r = r9[2]
      assert.are.same({ case[2], case[4], case[6] }, { r9[7], r9[8], r9[9] }, case[1])
      assert.are.same({ case[2], case[3], case[4], case[6] }, { r.method, r.target, r.path, r.minor }, case[1])
      assert.are.equal(case[5], r.query, case[1])
    end
    -- a head changed by hand is refused, a table without one has no fields
    for _, key in ipairs { "method", "target", "path", "query", "minor" } do
      assert.is_nil(setmetatable({}, mt)[key])
      assert.has_error(function() return setmetatable({ "GET /x" }, mt)[key] end)
      assert.has_error(function() return setmetatable({ "junk" }, mt)[key] end)
    end
  end)

  it("makes the headers table from the head's bytes on first use, once", function()
    mt.hello = function() return "method" end
    local head = "GET / HTTP/1.1\nHost: h\nX-A: 1\nx-a: 2\nSet-Cookie: a\nSet-Cookie: b\n\n"
    local _, r = http.parse_request(head, 1, { lenient = true }, nil, mt)
    assert.is_nil(rawget(r, "headers"))
    assert.are.equal(head, r[1])
    local h = r.headers
    assert.are.equal(h, rawget(r, "headers"))
    assert.are.equal(h, r.headers)
    assert.are.same({ "host", "h", "x-a", "1", "x-a", "2", "set-cookie", "a", "set-cookie", "b",
                      host = "h", ["x-a"] = "1, 2", ["set-cookie"] = "a" }, h)
    assert.are.equal("method", r:hello())      -- other keys: the methods table
    assert.is_nil(r.nothing)
    mt.hello = nil
    -- a table without a head has no headers; a head changed by hand is refused
    assert.is_nil(setmetatable({}, mt).headers)
    assert.has_error(function() return setmetatable({ "junk" }, mt).headers end)
    -- more fields than fit on the C stack
    local many = { "GET / HTTP/1.1\r\nHost: h\r\n" }
    for i = 1, 300 do many[#many + 1] = "F" .. i .. ": " .. i .. "\r\n" end
    many = table.concat(many) .. "\r\n"
    _, r = http.parse_request(many, 1, { max_headers = 400 }, nil, mt)
    assert.are.equal("300", r.headers.f300)
    assert.are.equal(602, #r.headers)
  end)

  it("reads one header from the head's bytes as the headers table has it", function()
    local heads = {
      "GET / HTTP/1.1\r\nHost: h\r\nX-A:  1 \t\r\nx-a: 2\r\nSet-Cookie: a\r\nSet-Cookie: b\r\nE:\r\n\r\n",
      "GET / HTTP/1.1\nHost: h\nRange: bytes=0-1\nX-A:\t3\n\n",
      "GET / HTTP/1.0\r\n\r\n",
      "\r\n\nGET / HTTP/1.1\r\nHost: after empty lines\r\n\r\n",   -- RFC 9112 §2.2
    }
    local names = { "host", "HOST", "x-a", "X-A", "set-cookie", "e", "range", "missing", "", "x", ("n"):rep(80) }
    for _, head in ipairs(heads) do
      local _, r = http.parse_request(head, 1, { lenient = true }, nil, mt)
      for _, name in ipairs(names) do
        local before = http.request_header(r, name)
        assert.is_nil(rawget(r, "headers"))                 -- nothing made
        assert.are.equal(r.headers[name:lower()], before, name)
        assert.are.equal(before, http.request_header(r, name))   -- from the table now
        r.headers = nil
      end
    end
    assert.is_nil(http.request_header({}, "host"))
    assert.has_error(function() http.request_header("x", "host") end)
    assert.has_error(function() http.request_header({}) end)
    -- several names in one call, from the head and from the table once made
    local _, r = http.parse_request(heads[1], 1, nil, nil, mt)
    local want = { "h", "1, 2", nil, "a", "" }
    assert.are.same(want, { http.request_header(r, "Host", "x-a", "missing", "set-cookie", "e") })
    assert.is_nil(rawget(r, "headers"))
    assert.is_table(r.headers)
    assert.are.same(want, { http.request_header(r, "Host", "x-a", "missing", "set-cookie", "e") })
    assert.are.equal(5, select("#", http.request_header(r, "a", "b", "c", "d", "e")))
    -- one name asked twice, and more names than one scan takes (16)
    for _, n in ipairs { 2, 16, 17, 40 } do
      local asked, wanted = {}, {}
      for i = 1, n do
        asked[i] = ({ "Host", "x-a", "SET-COOKIE", "nope" })[i % 4 + 1]
        wanted[i] = ({ "h", "1, 2", "a", nil })[i % 4 + 1]
      end
      _, r = http.parse_request(heads[1], 1, nil, nil, mt)
      local got = table.pack(http.request_header(r, table.unpack(asked)))
      assert.are.equal(n, got.n)
      for i = 1, n do assert.are.equal(wanted[i], got[i]) end
    end
  end)

  it("decides on repeated Content-Length and Transfer-Encoding fields joined", function()
    local _, _, _, kind, len = parse_obj("POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 7\r\nA: b\r\nContent-Length: 7\r\n\r\n")
    assert.are.same({ "length", 7 }, { kind, len })
    local _, _, _, k2, reason, status = parse_obj("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n")
    assert.is_nil(k2)   -- "chunked, gzip": chunked not last (RFC 9112 §6.3)
    assert.are.same({ "string", 400 }, { type(reason), status })
    -- two fields decide as the one field of both values would
    local two = { select(4, parse_obj("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n")) }
    local one = { select(4, parse_obj("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")) }
    assert.are.same(one, two)
  end)

  it("takes the path of an absolute-form target", function()
    local _, r = parse_obj("GET HTTPS://example.com:8443/p%2fq?z HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert.are.same({ "/p/q", "z" }, { r.path, r.query })
    _, r = parse_obj("GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert.are.equal("/", r.path)
    _, r = parse_obj("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.are.equal("*", r.path)
    _, r = parse_obj("GET /100%25%zz%4 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.are.equal("/100%%zz%4", r.path)
  end)

  it("refuses a path where %00 decodes to a NUL with 400, as nginx does", function()
    local _, r, _, kind, _, refuse = parse_obj("GET /a%00b.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.are.equal("/a\0b.txt", r.path)
    assert.are.equal("none", kind)
    assert.are.equal(400, refuse)
    _, _, _, _, _, refuse = parse_obj("GET /a%01b.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.is_nil(refuse)
  end)

  it("says whether the connection stays open", function()
    local function keep(head) return select(3, parse_obj(head)) end
    assert.is_true(keep("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert.is_false(keep("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, CLOSE\r\n\r\n"))
    assert.is_false(keep("GET / HTTP/1.1\r\nHost: x\r\nConnection: a\r\nConnection: close\r\n\r\n"))
    assert.is_true(keep("GET / HTTP/1.1\r\nHost: x\r\nConnection: closed\r\n\r\n"))
    assert.is_false(keep("GET / HTTP/1.0\r\n\r\n"))
    assert.is_true(keep("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"))
  end)

  it("gives the body's framing, or why it is refused", function()
    local _, _, _, kind, len = parse_obj("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
    assert.are.same({ "length", 5 }, { kind, len })
    _, _, _, kind, len = parse_obj("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
    assert.are.same({ "length", 5 }, { kind, len })
    _, _, _, kind = parse_obj("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert.are.equal("chunked", kind)
    local n, r, keep, reason, status
    n, r, keep, kind, reason, status = parse_obj("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
      .. "Content-Length: 6\r\n\r\n")
    assert.is_number(n)
    assert.are.equal("POST", r.method)
    assert.is_true(keep)
    assert.is_nil(kind)
    assert.is_string(reason)
    assert.are.equal(400, status)
  end)

  it("refuses a missing or repeated Host in HTTP/1.1 and an unknown Expect", function()
    assert.are.equal(400, select(6, parse_obj("GET / HTTP/1.1\r\n\r\n")))
    assert.are.equal(400, select(6, parse_obj("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")))
    assert.are.equal(400, select(6, parse_obj("GET / HTTP/1.1\r\nHost: a,b\r\n\r\n")))
    assert.is_nil((select(6, parse_obj("GET / HTTP/1.0\r\n\r\n"))))
    assert.are.equal(417, select(6, parse_obj("GET / HTTP/1.1\r\nHost: a\r\nExpect: x\r\n\r\n")))
    assert.are.equal(417, select(6, parse_obj("POST / HTTP/1.0\r\nExpect: 100-continue\r\n"
      .. "Content-Length: 1\r\n\r\n")))
  end)

  it("marks an Expect: 100-continue that comes with a body", function()
    local _, r, _, _, _, refuse = parse_obj("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n"
      .. "Content-Length: 1\r\n\r\n")
    assert.is_true(rawget(r, "_continue"))
    assert.is_nil(refuse)
    _, r, _, _, _, refuse = parse_obj("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n")
    assert.is_nil(rawget(r, "_continue"))
    assert.is_nil(refuse)
    -- refused for a %00 in its path (400 wins over 417): no 100 Continue either
    _, r, _, _, _, refuse = parse_obj("POST /a%00 HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
      .. "Content-Length: 1\r\n\r\n")
    assert.is_nil(rawget(r, "_continue"))
    assert.are.equal(400, refuse)
    _, _, _, _, _, refuse = parse_obj("POST /a%00 HTTP/1.1\r\nHost: a\r\nExpect: x\r\n\r\n")
    assert.are.equal(400, refuse)
  end)

  it("gives what the plain form gives for incomplete and malformed heads", function()
    assert.is_nil(parse_obj("GET / HTTP/1.1\r\nHost: a\r\n"))
    assert.are.same({ http.parse_request("GET\r\n\r\n") }, { parse_obj("GET\r\n\r\n") })
    assert.are.equal(400, select(3, parse_obj("GET\r\n\r\n")))
  end)
end)

describe("http.response_head", function()
  it("formats a status line and fields from an array in order", function()
    assert.are.equal("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
      http.response_head(200, { "Content-Type", "text/plain", "Content-Length", 5 }))
  end)

  it("formats fields from a map", function()
    assert.are.equal("HTTP/1.1 404 Not Found\r\nServer: parley\r\n\r\n",
      http.response_head(404, { Server = "parley" }))
  end)

  it("writes one line per element of an array value", function()
    assert.are.equal("HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
      http.response_head(200, { "Set-Cookie", { "a=1", "b=2" } }))
  end)

  it("takes a reason phrase and a minor version", function()
    assert.are.equal("HTTP/1.0 299 Fine\r\n\r\n", http.response_head(299, {}, "Fine", 0))
    assert.are.equal("HTTP/1.1 299 \r\n\r\n", http.response_head(299, {}))
  end)

  it("appends a body after the head in the same string", function()
    assert.are.equal("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
      http.response_head(200, { "Content-Length", 2 }, nil, nil, "hi"))
    local big = ("b"):rep(5000)
    assert.are.equal("HTTP/1.0 200 OK\r\n\r\n" .. big, http.response_head(200, {}, nil, 0, big))
    assert.are.equal("HTTP/1.1 204 No Content\r\n\r\n", http.response_head(204, {}, nil, nil, ""))
  end)

  it("adds the server's own fields after the headers when given", function()
    assert.are.equal("HTTP/1.1 200 OK\r\nA: 1\r\nServer: parley\r\nContent-Length: 2\r\n"
      .. "Connection: close\r\n\r\nhi",
      http.response_head(200, { "A", 1 }, nil, nil, "hi", false, "parley", 2, "close"))
    assert.are.equal("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
      http.response_head(200, nil, nil, 0, nil, nil, false, "chunked", "keep-alive"))
    assert.are.equal("HTTP/1.1 304 Not Modified\r\nContent-Length: 0\r\n\r\n",
      http.response_head(304, false, nil, nil, nil, nil, nil, 0))
    local head = http.response_head(200, nil, nil, nil, nil, true, nil, 12345678901)
    assert.matches("^HTTP/1.1 200 OK\r\nContent%-Length: 12345678901\r\nDate: %a%a%a, .* GMT\r\n\r\n$", head)
  end)

  it("refuses a bad server name, length or connection option", function()
    assert.has_error(function() http.response_head(200, nil, nil, nil, nil, nil, "x\r\ny: z") end)
    assert.has_error(function() http.response_head(200, nil, nil, nil, nil, nil, nil, -1) end)
    assert.has_error(function() http.response_head(200, nil, nil, nil, nil, nil, nil, 1.5) end)
    assert.has_error(function() http.response_head(200, nil, nil, nil, nil, nil, nil, "gzip") end)
    assert.has_error(function() http.response_head(200, nil, nil, nil, nil, nil, nil, nil, "a\nb") end)
  end)

  it("sends a parsed headers table once, in order", function()
    local _, _, _, _, h = http.parse_response("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nA: 3\r\n\r\n")
    assert.are.equal("HTTP/1.1 200 OK\r\na: 1\r\nb: 2\r\na: 3\r\n\r\n", http.response_head(200, h))
  end)

  it("round-trips through parse_response", function()
    local head = http.response_head(201, { "Location", "/x", "X-N", 3 })
    local n, minor, status, reason, h = http.parse_response(head)
    assert.are.equal(#head, n)
    assert.are.same({ 1, 201, "Created", "/x", "3" }, { minor, status, reason, h.location, h["x-n"] })
  end)

  it("builds a large head", function()
    local fields = {}
    for i = 1, 500 do fields[#fields + 1] = "X-" .. i; fields[#fields + 1] = ("v"):rep(50) end
    local head = http.response_head(200, fields)
    local n, _, _, _, h = http.parse_response(head, 1, { max_headers = 500, max_head = 100000 })
    assert.are.equal(#head, n)
    assert.are.equal(1000, #h)
  end)

  it("refuses CR, LF and NUL in values (header injection)", function()
    assert.has_error(function() http.response_head(200, { "X", "a\r\nSet-Cookie: evil" }) end)
    assert.has_error(function() http.response_head(200, { X = "a\nb" }) end)
    assert.has_error(function() http.response_head(200, { X = "a\0b" }) end)
    assert.has_error(function() http.response_head(200, { X = { "ok", "a\rb" } }) end)
  end)

  it("refuses names that are not tokens", function()
    assert.has_error(function() http.response_head(200, { "X\r\nY", "a" }) end)
    assert.has_error(function() http.response_head(200, { "X Y", "a" }) end)
    assert.has_error(function() http.response_head(200, { "X:", "a" }) end)
    assert.has_error(function() http.response_head(200, { "", "a" }) end)
    assert.has_error(function() http.response_head(200, { [true] = "a" }) end)
  end)

  it("refuses CR and LF in the reason phrase", function()
    assert.has_error(function() http.response_head(200, {}, "OK\r\nX: y") end)
  end)

  it("refuses a status out of range and an odd array", function()
    assert.has_error(function() http.response_head(99, {}) end)
    assert.has_error(function() http.response_head(1000, {}) end)
    assert.has_error(function() http.response_head(200, { "X" }) end)
    assert.has_error(function() http.response_head(200, { "X", true }) end)
  end)
end)

describe("http.reply", function()
  -- the head's lines without the Date field (checked apart)
  local function lines(wire)
    local head, body = wire:match("^(.-\r\n)\r\n(.*)$")
    local t = {}
    for line in head:gmatch("(.-)\r\n") do
      if line:find("^Date: ") then
        assert.matches("^Date: %a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", line)
      else
        t[#t + 1] = line
      end
    end
    return t, body
  end

  it("frames a reply with a body: its length, the body, Date last", function()
    local wire = http.reply(200, { "Content-Type", "text/plain" }, nil, "hello\n", "parley", true, 1, false)
    local t, body = lines(wire)
    assert.are.same({ "HTTP/1.1 200 OK", "Content-Type: text/plain", "Server: parley", "Content-Length: 6" }, t)
    assert.are.equal("hello\n", body)
    assert.matches("\r\nDate: [^\r]*\r\n\r\nhello\n$", wire)
  end)

  it("leaves the body out of a reply to HEAD but keeps its length (RFC 9110 §9.3.2)", function()
    local t, body = lines(http.reply(200, nil, nil, "hello\n", false, true, 1, true))
    assert.are.same({ "HTTP/1.1 200 OK", "Content-Length: 6" }, t)
    assert.are.equal("", body)
  end)

  it("gives 1xx, 204 and 304 neither a length nor a body (RFC 9110 §8.6)", function()
    for _, status in ipairs { 101, 204, 304 } do
      local t, body = lines(http.reply(status, false, nil, "ignored", nil, true, 1, false))
      assert.are.same({ ("HTTP/1.1 %d %s"):format(status, http.status_text(status)) }, t)
      assert.are.equal("", body)
    end
  end)

  it("says close when the connection ends, keep-alive to an HTTP/1.0 client that keeps it", function()
    assert.are.same({ "HTTP/1.1 200 OK", "Content-Length: 0", "Connection: close" },
                    (lines(http.reply(200, nil, nil, "", nil, false, 1, false))))
    assert.are.same({ "HTTP/1.1 200 OK", "Content-Length: 0", "Connection: keep-alive" },
                    (lines(http.reply(200, nil, nil, "", nil, true, 0, false))))
    assert.are.same({ "HTTP/1.1 200 OK", "Content-Length: 0", "Connection: close" },
                    (lines(http.reply(200, nil, nil, "", nil, false, 0, false))))
    assert.are.same({ "HTTP/1.1 404 Gone Away", "Content-Length: 0" },
                    (lines(http.reply(404, nil, "Gone Away", "", nil, true, 1, false))))
  end)

  it("refuses what response_head refuses, and a body that is not a string", function()
    assert.has_error(function() http.reply(200, { "X", "a\r\nY: b" }, nil, "", nil, true) end)
    assert.has_error(function() http.reply(200, nil, "OK\r\nX: y", "", nil, true) end)
    assert.has_error(function() http.reply(200, nil, nil, "", "x\ny", true) end)
    assert.has_error(function() http.reply(99, nil, nil, "", nil, true) end)
    assert.has_error(function() http.reply(200, nil, nil, nil, nil, true) end)
    assert.has_error(function() http.reply(200, nil, nil, {}, nil, true) end)
  end)
end)

describe("http.request_head", function()
  it("formats a request line and fields", function()
    assert.are.equal("GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n", http.request_head("GET", "/a?b", { "Host", "x" }))
    assert.are.equal("GET / HTTP/1.0\r\n\r\n", http.request_head("GET", "/", {}, 0))
  end)

  it("refuses a method or target that would inject", function()
    assert.has_error(function() http.request_head("GET /", "/", {}) end)
    assert.has_error(function() http.request_head("GET", "/ HTTP/1.1\r\nX: y", {}) end)
    assert.has_error(function() http.request_head("GET", "", {}) end)
  end)

  it("round-trips through parse_request", function()
    local head = http.request_head("POST", "/form", { "Host", "h", "Content-Length", 3 })
    local n, method, target, minor, h = http.parse_request(head)
    assert.are.same({ #head, "POST", "/form", 1, "3" }, { n, method, target, minor, h["content-length"] })
  end)
end)

describe("http.date", function()
  it("formats an IMF-fixdate", function()
    assert.are.equal("Sun, 06 Nov 1994 08:49:37 GMT", http.date(784111777))
    assert.are.equal("Thu, 01 Jan 1970 00:00:00 GMT", http.date(0))
    assert.are.equal("Wed, 31 Dec 1969 23:59:59 GMT", http.date(-1))
  end)

  it("gives the same string within a second and a new one after", function()
    assert.are.equal(http.date(784111777), http.date(784111777))
    assert.are.equal("Sun, 06 Nov 1994 08:49:38 GMT", http.date(784111778))
  end)

  it("formats the current time by default", function()
    assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", http.date())
    assert.are.equal(http.date(os.time()), http.date())
  end)
end)

describe("http.status_text", function()
  it("knows the reason phrases of RFC 9110", function()
    assert.are.equal("OK", http.status_text(200))
    assert.are.equal("URI Too Long", http.status_text(414))
    assert.are.equal("Request Header Fields Too Large", http.status_text(431))
    assert.are.equal("HTTP Version Not Supported", http.status_text(505))
  end)

  it("returns nil for an unknown code", function()
    assert.is_nil(http.status_text(299))
  end)
end)
