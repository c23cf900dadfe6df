--- parley.http.client: an HTTP/1.1 client (RFC 9110, RFC 9112).
--
--     local client = require "parley.http.client"
--     local res = assert(client.request("http://127.0.0.1:8080/"))
--     print(res.status, res.headers["content-type"], #res.body)
--     -- a table gives every option:
--     client.request{ url = "http://127.0.0.1:8080/up", method = "PUT",
--                     body = ltn12.source.file(io.open("big", "rb")), -- chunked
--                     sink = ltn12.sink.file(io.open("reply", "wb")),
--                     timeouts = { connect = 5, head = 10, body = 30 } }
--     -- raw mode: exactly these bytes, then the parsed response
--     client.request{ url = "http://127.0.0.1:8080", raw = "GET / HTTP/1.0\r\n\r\n" }
--     -- HTTPS: the certificate checked against the system store, or `ca`
--     client.request{ url = "https://127.0.0.1:8443/", ca = "test-ca.pem" }
--
-- Connections are kept alive in a pool (per scheme, host, port and, for
-- HTTPS, the TLS context and name checked) and reused; a
-- request on a reused connection that the server had closed is retried
-- once on a new one when its method is idempotent. Redirects (301, 302,
-- 303, 307, 308) are followed up to `max_redirects` times. Every status
-- is a response (a 404 is not an error); I/O and protocol failures return
-- `nil, err`.
-- @module parley.http.client
local parley = require "parley"
local core = require "parley.core"
local body = require "parley.http.body"
local https = require "parley.http.tls"
local url = require "socket.url"

local http = core.http
local parse_response = http.parse_response
local request_head = http.request_head
local body_framing = http.body_framing
local chunk = http.chunk
local now = core.now
local find, lower, sub = string.find, string.lower, string.sub

local M = {}

--- Defaults of `request`'s options.
M.defaults = {
  max_redirects = 5,       -- redirects followed (0: none)
  max_body = 64 * 1024 * 1024, -- response body bytes kept in memory (no sink)
  max_head = 65536,        -- response head bytes
  max_headers = 100,       -- response header fields
  connect_timeout = 30,    -- seconds
  send_timeout = 60,       -- seconds per write
  head_timeout = 60,       -- seconds from the request sent to the whole head
  body_timeout = 60,       -- seconds per body read
  user_agent = "parley/" .. (core.version or "0"),
}

---------------------------------------------------------------------------
-- Connection pool
---------------------------------------------------------------------------

local pool = {}
pool.__index = pool
pool.__name = "parley.http.pool"

--- A keep-alive connection pool.
-- @tparam[opt] table opts `max_idle` (per host:port, default 8),
--   `idle_timeout` (seconds a connection may sit unused, default 30),
--   `transcript` (a parley.transcript recorder or target recording every
--   connection the pool opens; with `transcript_full`, `transcript_secrets`)
function M.pool(opts)
  opts = opts or {}
  local rec = opts.transcript and assert(require("parley.transcript").recorder(opts.transcript,
    { full = opts.transcript_full, secrets = opts.transcript_secrets }))
  return setmetatable({ idle = {}, max_idle = opts.max_idle or 8,
                        idle_timeout = opts.idle_timeout or 30, transcript = rec }, pool)
end

--- Takes an idle connection to `key` (scheme, host, port ...), or nil.
function pool:take(key)
  local list = self.idle[key]
  while list and #list > 0 do
    local e = table.remove(list)
    if now() - e.t < self.idle_timeout and e.conn:buffered() == 0 then
      return e.conn
    end
    e.conn:close()
  end
  return nil
end

--- Gives a connection back for reuse.
function pool:put(key, conn)
  local list = self.idle[key]
  if not list then
    list = {}
    self.idle[key] = list
  end
  if #list >= self.max_idle then
    conn:close()
    return
  end
  list[#list + 1] = { conn = conn, t = now() }
end

--- Closes every idle connection.
function pool:close()
  for key, list in pairs(self.idle) do
    for _, e in ipairs(list) do e.conn:close() end
    self.idle[key] = nil
  end
end

--- How many idle connections the pool holds.
function pool:count()
  local n = 0
  for _, list in pairs(self.idle) do n = n + #list end
  return n
end

--- The pool `request` uses unless given `pool`.
M.default_pool = M.pool()

---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------

local function has_token(value, token)
  for t in lower(value):gmatch("[^,%s]+") do
    if t == token then return true end
  end
  return false
end

local function check_text(what, s)
  if find(s, "[%z\r\n]") then
    error(what .. " holds CR, LF or NUL", 4)
  end
end

local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true,
                     OPTIONS = true, TRACE = true }
local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }

local DEFAULT_PORT = { http = 80, https = 443 }

-- parsed URL -> host, port, target, key (and `tls`, the client context,
-- for https: a connection is reused only for the same trust and name)
local function endpoint(u, o)
  local parsed = url.parse(u)
  if not parsed or not parsed.host then return nil, "bad url: " .. u end
  local scheme = lower(parsed.scheme or "http")
  local default = DEFAULT_PORT[scheme]
  if not default then return nil, "unsupported scheme: " .. scheme end
  local port = tonumber(parsed.port or default)
  if not port then return nil, "bad port in url: " .. u end
  local target = parsed.path or "/"
  if target == "" then target = "/" end
  if parsed.params then target = target .. ";" .. parsed.params end
  if parsed.query then target = target .. "?" .. parsed.query end
  local host = parsed.host
  local hosthdr = (find(host, ":", 1, true) and "[" .. host .. "]" or host)
                  .. (port ~= default and ":" .. port or "")
  local key, ctx = scheme .. "|" .. host .. "|" .. port, nil
  if scheme == "https" then
    local err
    ctx, err = https.client_context(o)
    if not ctx then return nil, err end
    key = key .. "|" .. tostring(ctx) .. "|" .. (o.servername or "")
  end
  return { host = host, port = port, target = target, hosthdr = hosthdr,
           key = key, userinfo = parsed.userinfo, tls = ctx }
end

local function opt(o, name)
  local v = o[name]
  if v == nil then
    local t = o.timeouts
    local phase = name:match("^(.*)_timeout$")
    if t and phase then v = t[phase] end
    if v == nil and phase then v = o.timeout end
    if v == nil then v = M.defaults[name] end
  end
  return v
end

-- a new connection to an endpoint (implicit TLS for https)
local function connect(ep, o)
  return parley.connect(ep.host, ep.port, { connect_timeout = opt(o, "connect_timeout"),
    tls = ep.tls, servername = ep.tls and o.servername or nil })
end

-- reads a response head into st: n, minor, status, reason, headers or nil, err
local function read_head(st, o)
  local conn = st.conn
  local limits = { max_head = opt(o, "max_head"), max_headers = opt(o, "max_headers"),
                   max_request_line = 8192 }
  local deadline = now() + opt(o, "head_timeout")
  local buf, pos = st.buf, st.pos
  local seen
  for _ = 1, 1e9 do
    if pos <= #buf then
      local n, minor, status, reason, headers = parse_response(buf, pos, limits, seen)
      if n then
        st.buf, st.pos = buf, pos + n
        return minor, status, reason, headers
      end
      if minor then return nil, "bad response: " .. minor end
      if pos > 1 then buf, pos = sub(buf, pos), 1 end
      seen = #buf
    end
    local wait = deadline - now()
    if wait <= 0 then return nil, "timeout" end
    conn:settimeout(wait)
    local more, err = conn:receive_some(65536)
    if not more then
      st.buf, st.pos = buf, pos
      if err == "closed" and #buf >= pos then err = "closed in the response head" end
      return nil, err, pos > #buf
    end
    if pos <= #buf then buf = buf .. more else buf, pos = more, 1 end
  end
end

-- sends the head and the body; true or nil, err
local function send_request(conn, head, data, framing, o)
  conn:settimeout(opt(o, "send_timeout"))
  local ok, err = conn:send(head)
  if not ok then return nil, err end
  if type(data) == "string" then
    if #data > 0 then
      ok, err = conn:send(data)
      if not ok then return nil, err end
    end
  elseif data then
    for _ = 1, math.huge do
      local piece, serr = data()
      if piece == nil then
        if serr then return nil, "body source failed: " .. tostring(serr), "source" end
        break
      end
      if #piece > 0 then
        ok, err = conn:send(framing == "chunked" and chunk(piece) or piece)
        if not ok then return nil, err end
      end
    end
    if framing == "chunked" then
      ok, err = conn:send("0\r\n\r\n")
      if not ok then return nil, err end
    end
  end
  return conn:flush()
end

local function discard_sink() return 1 end

-- one exchange on one connection: response or nil, err, retryable
local function exchange(conn, head, data, framing, method, o, sink, follow)
  local ok, err, why = send_request(conn, head, data, framing, o)
  if not ok then return nil, err, why ~= "source" end
  local st = { conn = conn, buf = "", pos = 1 }
  local minor, status, reason, headers
  for _ = 1, 100 do   -- skip interim 1xx responses (RFC 9110 §15.2)
    minor, status, reason, headers = read_head(st, o)
    if not minor then
      return nil, status, reason   -- reason: true when no response byte came
    end
    if status >= 200 or status == 101 then break end
  end
  if status < 200 and status ~= 101 then return nil, "too many interim responses" end
  local kind, len, fstatus = body_framing(headers, false, method, status, minor)
  if not kind then return nil, "bad response framing: " .. tostring(len), false, fstatus end
  local res = { status = status, reason = reason, minor = minor, headers = headers }
  local redirect = follow and REDIRECT[status] and headers.location
  local r = body.reader(st, kind == "tunnel" and "close" or kind, len, {
    timeout = opt(o, "body_timeout"),
    max = not (sink and not redirect) and opt(o, "max_body") or nil,
    limits = { max_headers = opt(o, "max_headers") },
  })
  if sink and not redirect then
    local n, berr = r:to(sink)
    if not n then return nil, berr end
    res.bytes = n
  elseif redirect then
    local n, berr = r:to(discard_sink)
    if not n then return nil, berr end
  else
    local b, berr = r:all()
    if not b then return nil, berr end
    res.body = b
  end
  if kind ~= "none" and kind ~= "length" and kind ~= "chunked" then
    res.reusable = false
  else
    local ch = headers.connection
    if minor == 1 then res.reusable = not (ch and has_token(ch, "close"))
    else res.reusable = ch ~= nil and has_token(ch, "keep-alive") end
    if st.pos <= #st.buf then res.reusable = false end  -- extra bytes: unsafe
  end
  if headers.trailer or kind == "chunked" then res.trailers = r.dec and r.dec:trailers() end
  return res
end

---------------------------------------------------------------------------
-- request
---------------------------------------------------------------------------

local function build_headers(o, ep, data, method)
  local h, n, have = {}, 0, {}
  local given = o.headers
  if given then
    if given[1] then
      for i = 1, #given, 2 do
        local name, value = given[i], given[i + 1]
        h[n + 1], h[n + 2] = name, value
        n = n + 2
        have[lower(name)] = value
      end
    else
      local names = {}
      for name in pairs(given) do names[#names + 1] = name end
      table.sort(names)  -- a stable order on the wire
      for _, name in ipairs(names) do
        h[n + 1], h[n + 2] = name, given[name]
        n = n + 2
        have[lower(name)] = given[name]
      end
    end
  end
  local function add(name, value)
    h[n + 1], h[n + 2] = name, value
    n = n + 2
  end
  if not have.host then table.insert(h, 1, ep.hosthdr) table.insert(h, 1, "Host") n = n + 2 end
  if not have["user-agent"] and o.user_agent ~= false then add("User-Agent", opt(o, "user_agent")) end
  if ep.userinfo and not have.authorization then
    add("Authorization", "Basic " .. require("mime").b64(url.unescape(ep.userinfo)))
  end
  local framing
  if type(data) == "string" then
    if not have["content-length"] and (#data > 0 or method == "POST" or method == "PUT" or method == "PATCH") then
      add("Content-Length", #data)
    end
  elseif data then
    if have["content-length"] then framing = "length"
    else
      framing = "chunked"
      if not have["transfer-encoding"] then add("Transfer-Encoding", "chunked") end
    end
  end
  if o.keepalive == false and not have.connection then add("Connection", "close") end
  return h, framing
end

local CREDENTIALS = { authorization = true, cookie = true, ["proxy-authorization"] = true }

-- request headers (map or ordered array) minus the credentials, which
-- stay with their origin when a redirect leaves it
local function without_credentials(given)
  local copy = {}
  if given[1] then
    for i = 1, #given, 2 do
      if not CREDENTIALS[lower(given[i])] then
        copy[#copy + 1], copy[#copy + 2] = given[i], given[i + 1]
      end
    end
  else
    for k, v in pairs(given) do
      if not CREDENTIALS[lower(k)] then copy[k] = v end
    end
  end
  return copy
end

local function resolve(base, loc)
  return url.absolute(base, loc)
end

--- Makes a request.
-- @tparam string|table o a URL, or a table: `url` (required), `method`
--   ("GET", or "POST" when there is a body), `headers` (a map, or an array
--   `{name, value, ...}` sent in order), `body` (a string, or an ltn12
--   source sent chunked unless a Content-Length header is given), `sink`
--   (an ltn12 sink for the response body; then `res.body` is nil),
--   `timeout` (every phase), `timeouts` = `{connect, send, head, body}`,
--   `max_redirects` (5; 0 returns the 3xx), `max_body` (64 MiB without a
--   sink), `keepalive` (true), `pool` (a `pool()`, default
--   `default_pool`), `raw` (bytes sent exactly as given on a new
--   connection; the response is parsed and the connection closed),
--   `transcript` (a parley.transcript recorder or target: this request
--   then goes on connections of its own, closed after it; with
--   `transcript_full`, `transcript_secrets`). For `https://` URLs (and
--   redirects to them): `ca` (PEM file or directory of trusted issuers;
--   default the system store), `insecure` (true: do not verify the
--   certificate — anyone in the path can then read and change the
--   exchange; never the default), `tls_ctx` (a client context: client
--   certificate, own trust), `servername` (the name checked and sent as
--   SNI; default the URL's host).
-- @return a response `{status, reason, minor, headers, body, url,
--   redirects, trailers, tls}` (`tls`: the connection's `tlsinfo()` for
--   an https:// response — `version`, `cipher`, `verified`, `peer` ...;
--   nil in cleartext) or `nil, err`
function M.request(o)
  if type(o) == "string" then o = { url = o } end
  if type(o) ~= "table" then error("request expects a URL or an options table", 2) end
  local u = o.url
  if type(u) ~= "string" then error("request: url must be a string", 2) end
  check_text("url", u)
  if find(u, "[%s]") then error("url holds a space", 2) end
  local data = o.body
  if data ~= nil and type(data) ~= "string" and type(data) ~= "function" then
    error("request: body must be a string or an ltn12 source", 2)
  end
  local method = o.method and o.method:upper() or (data and "POST" or "GET")
  local the_pool = o.pool or M.default_pool
  -- a request's own transcript keeps its connections out of the pool
  local function recorded(conn, err)
    if o.transcript then return require("parley.transcript").attach(conn, o, "http", "client", err) end
    if conn and the_pool.transcript then
      return require("parley.transcript").wrap(conn, the_pool.transcript, { protocol = "http" })
    end
    return conn, err
  end
  local pooled = o.keepalive ~= false and not o.transcript
  local max_redirects = opt(o, "max_redirects")
  local redirects = {}

  for _ = 0, max_redirects do
    local ep, err = endpoint(u, o)
    if not ep then return nil, err end
    local res, retryable
    if o.raw then
      local raw = o.raw
      if type(raw) ~= "string" then error("request: raw must be a string", 2) end
      local conn
      conn, err = recorded(connect(ep, o))
      if not conn then return nil, err end
      local rmethod = raw:match("^%s*(%u+)") or "GET"
      res, err = exchange(conn, raw, nil, nil, rmethod, o, o.sink, false)
      if res then res.url, res.tls = u, conn:tlsinfo() end
      conn:close()
      return res, err
    end
    local hdrs, framing = build_headers(o, ep, data, method)
    local head = request_head(method, ep.target, hdrs)   -- raises on injection
    for attempt = 1, 2 do
      local conn = attempt == 1 and pooled and the_pool:take(ep.key)
      local reused = conn and true
      if not conn then
        conn, err = recorded(connect(ep, o))
        if not conn then return nil, err end
      end
      res, err, retryable = exchange(conn, head, data, framing, method, o, o.sink,
                                     max_redirects > #redirects)
      if res then
        res.tls = conn:tlsinfo()
        if res.reusable and pooled then the_pool:put(ep.key, conn)
        else conn:close() end
        break
      end
      conn:close()
      -- a kept-alive connection the server had closed: once more on a new one
      if not (reused and retryable and IDEMPOTENT[method] and type(data) ~= "function") then
        return nil, err
      end
    end
    res.url = u
    res.redirects = redirects
    local loc = res.headers.location
    if not (REDIRECT[res.status] and loc) or #redirects >= max_redirects then
      if REDIRECT[res.status] and loc and max_redirects > 0 then
        return nil, "too many redirects", res
      end
      return res
    end
    redirects[#redirects + 1] = u
    local nu = resolve(u, loc)
    local nep = endpoint(nu, o)
    if not nep then return nil, "bad redirect location: " .. loc, res end
    -- RFC 9110 §15.4: 303 (and POST after 301/302, as browsers do) -> GET
    if res.status == 303 or ((res.status == 301 or res.status == 302) and method == "POST") then
      if method ~= "HEAD" then method = "GET" end
      data = nil
    elseif type(data) == "function" then
      return res   -- a consumed stream cannot be sent again
    end
    if nep.key ~= ep.key and o.headers then
      o = setmetatable({ headers = without_credentials(o.headers) }, { __index = o })
    end
    u = nu
  end
  return nil, "too many redirects"
end

--- Sends `bytes` exactly as given to `u` ("http://host:port" or
-- "host:port") and returns the parsed response (see `request`).
function M.raw(u, bytes, o)
  local t = {}
  for k, v in pairs(o or {}) do t[k] = v end
  if not find(u, "://", 1, true) then u = "http://" .. u end
  t.url, t.raw = u, bytes
  return M.request(t)
end

--- Shortcut: `get(url [, opts])`.
function M.get(u, o)
  local t = {}
  for k, v in pairs(o or {}) do t[k] = v end
  t.url = u
  return M.request(t)
end

return M
