-- The tour's HTTP session: GET /index.html HTTP/1.1 with a Host header,
-- then the logo on the same connection (RFC 9112).
local scenario = require "parley.scenario"

local sc = scenario("HTTP/1.1: GET /index.html with a Host header", function(s)
  local v = s.vars
  local host = v.http:match("^http://(.*)$")
  local c = s:connect(v.http)
  c:send("GET /index.html HTTP/1.1")
  c:send("Host: " .. host)
  c:send("")
  local r = c:expect(200)
  if r then
    s:check((r.headers["content-type"] or ""):find("text/html", 1, true), "the page is text/html")
    s:check(r.body:find("parley lab", 1, true), "the body is the lab's index.html")
  end
  -- HTTP/1.1 keeps the connection open: the picture comes over it too
  c:send("GET /logo.jpg HTTP/1.1")
  c:send("Host: " .. host)
  c:send("Connection: close")
  c:send("")
  r = c:expect(200)
  if r then s:check(r.body:sub(1, 2) == "\xFF\xD8", "logo.jpg is a JPEG") end
  c:expect_closed()
end)

sc.about = "A browser sends this for every page and picture: a request line, header "
  .. "fields, an empty line; Host names the site, and the connection stays open for the next request."
return sc
