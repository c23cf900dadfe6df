--- parley.http.server: an HTTP/1.1 server (RFC 9110, RFC 9112) with routing.
--
--     local http = require "parley.http"
--     local app = http.server.new{ access_log = io.stdout }
--     app:get("/hello/:name", function(req, res)
--       res:header("Content-Type", "text/plain")
--       return res:send("hello " .. req.params.name .. "\n")
--     end)
--     app:static("/", "www")                   -- files, index.html, 304, 206
--     app:serve{ listen = "127.0.0.1:8080" }
--
-- One task per connection reads request heads with `core.http.parse_request`
-- from its own buffer, answers every request of a pipelined batch before it
-- reads again (the driver writes the batch's replies in one go), keeps the
-- connection alive (HTTP/1.1 default, HTTP/1.0 with `Connection:
-- keep-alive`), and closes it after a protocol error, a timeout, or
-- `max_requests` requests.
--
-- Handlers are `function(req, res)`; see `request` and `response` below.
-- A handler may also just return `status, body [, headers]`.
-- @module parley.http.server
local parley = require "parley"
local core = require "parley.core"
local body = require "parley.http.body"

local http = core.http
local parse_request = http.parse_request
local response_head = http.response_head
local reply = http.reply
local response_done = http.response_done
local response_usual, response_mark_sent = http.response_usual, http.response_mark_sent
local http_date = http.date
local chunk = http.chunk
local now = core.now
local find, sub, lower, match = string.find, string.sub, string.lower, string.match
local concat = table.concat

local M = {}

--- Defaults for `new` (every limit has a name).
M.defaults = {
  max_request_line = 8192,   -- bytes; longer -> 414
  max_head = 32768,          -- bytes of request line + fields; more -> 431
  max_headers = 100,         -- header fields; more -> 431
  max_body = 16 * 1024 * 1024, -- request body bytes; more -> 413
  header_timeout = 20,       -- seconds to receive a whole head -> 408
  body_timeout = 60,         -- seconds per body read -> 408
  send_timeout = 60,         -- seconds per response write
  keepalive_timeout = 75,    -- idle seconds between requests -> close
  max_requests = 1000,       -- requests per connection, then close
  discard_limit = 65536,     -- unread body bytes skipped to keep a connection
  server_name = "parley",    -- Server header (false: none)
  lenient = false,           -- accept bare LF line ends in heads
}

-- --------------------------------------------------------------------------
-- Small helpers
-- --------------------------------------------------------------------------

-- does a comma-separated header value hold `token` (case-insensitively)?
local function has_token(value, token)
  if value == token then return true end
  for t in lower(value):gmatch("[^,%s]+") do
    if t == token then return true end
  end
  return false
end
M.has_token = has_token

local function unhex(h) return string.char(tonumber(h, 16)) end

--- Percent-decodes a string (`%41` -> `A`; `+` is left alone).
function M.unescape(s)
  if not find(s, "%", 1, true) then return s end
  return (s:gsub("%%(%x%x)", unhex))
end

local function html_escape(s)
  return (s:gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                               ['"'] = "&quot;", ["'"] = "&#39;" }))
end
M.html_escape = html_escape

local BODILESS = { [204] = true, [304] = true }

-- access log time, cached per second
local log_sec, log_time = -1, nil
local function log_date()
  local t = os.time()
  if t ~= log_sec then
    log_sec, log_time = t, os.date("!%d/%b/%Y:%H:%M:%S +0000", t)
  end
  return log_time
end

-- --------------------------------------------------------------------------
-- Request
-- --------------------------------------------------------------------------

--- The request a handler gets.
-- Fields: `method`, `target` (as sent), `path` (percent-decoded, without
-- the query), `query` (raw, or nil), `minor` (HTTP/1.minor), `headers`
-- (lowercased names: `req.headers["content-type"]`, and the fields in order
-- as `headers[2i-1], headers[2i]`), `params` (route captures), `peer` (ip),
-- `conn` (the stream).
-- @type request
local request = {}
-- A request's own table holds just its head's bytes (req[1]): `headers`
-- is made from them on first use and kept, the request line's fields on
-- each use (a handler that reads none costs no table or string of them);
-- methods and defaults come from here. Each connection's requests get a
-- metatable of their own (see request_meta), which also gives `peer` and
-- `conn`; this one serves a request table made by hand.
request.__index = http.request_index(request)
request.__name = "parley.http.request"
-- defaults read through __index
local NOPARAMS = setmetatable({}, { __newindex = function() error("params are read-only", 2) end })
request.params = NOPARAMS
request._body = false
request._continue = false

-- the metatable of one connection's requests
local function request_meta(peer, conn)
  return { __index = http.request_index(request, peer, conn), __name = request.__name }
end

--- A header's value by name (any case), repeated fields joined by ", "
-- (`req.headers[name:lower()]`, read from the head without making that
-- table when nothing made it yet).
-- @function request:header
request.header = http.request_header

-- sends "100 Continue" the first time a body read is attempted (RFC 9110 §10.1.1)
local function reader_of(req)
  local r = req._body
  if not r then
    r = body.reader(nil, "none")
    req._body = r
  end
  if req._continue then
    req._continue = false
    if not req._res.sent then
      req.conn:send("HTTP/1.1 100 Continue\r\n\r\n")
      req.conn:flush()
    end
  end
  return r
end

--- The whole body as a string (`""` when there is none), or
-- `nil, err, status` (`"body too large"` 413 over `max` or the server's
-- `max_body`, a timeout 408, a malformed or short body 400).
-- @tparam[opt] integer max a smaller limit for this call
function request:body(max)
  local r = self._body
  if r and max and (r.max == nil or max < r.max) then r.max = max end
  if r and r.kind == "length" and r.max and r.left > r.max then
    -- refused before any "100 Continue": the client need not send it
    return r:fail("body too large", 413)
  end
  r = reader_of(self)
  local data, err, status = r:all()
  if not data then return nil, err, status end
  return data
end

--- The next piece of the body (streaming), `nil` at its end, or
-- `nil, err, status`.
function request:read(max)
  return reader_of(self):read(max)
end

--- Streams the body into an ltn12 sink; returns the byte count or
-- `nil, err, status`.
function request:body_to(sink)
  return reader_of(self):to(sink)
end

--- An ltn12 source over the body.
function request:source()
  return reader_of(self):source()
end

--- The connection's TLS state (`version`, `cipher`, `alpn`,
-- `servername` ...) when the request came over HTTPS, else nil.
function request:tlsinfo()
  return self.conn:tlsinfo()
end

--- The trailer fields that ended a chunked body (RFC 9112 §7.1.2), kept
-- apart from `headers` (RFC 9110 §6.5.1): a table shaped like `headers`
-- once the body has been read to its end (empty when there were none), or
-- nil before then and for a body that was not chunked.
function request:trailers()
  local r = self._body
  return r and r:trailers() or nil
end

-- --------------------------------------------------------------------------
-- Response
-- --------------------------------------------------------------------------

--- The response a handler fills in.
-- Fields: `status` (default 200), `sent` (true once the head went out),
-- `close` (set true to close the connection after this response),
-- `reason` (a reason phrase other than the status's usual one); a
-- handler may keep keys of its own on it too (a key named like a method
-- still reads the method). Setting `status` to anything but an integer
-- from 100 to 999 raises. A response is a userdata (csrc/response.c): its
-- state lies in C, its field array and other keys in user values; `pairs`
-- and `rawget` do not see them.
-- @type response
local response = {}
local response_mt = http.response_meta(response)

--- Sets a response header, replacing one of the same name (any case);
-- nil removes it. A value may be an array of values (one field line
-- each). Raises on CR, LF or NUL in name or value (when the head is built).
-- @function response:header
-- @tparam string name
-- @param value
-- @return the response (chainable)
response.header = http.response_header

--- A response header's value as set so far (any case), or nil.
-- @function response:get_header
response.get_header = http.response_get_header

-- the private keys the Lua methods below read and set (see response.c):
-- _st the connection's state, _fields the field array (or false), _keep
-- the connection stays open, _minor and _head the request's HTTP/1.minor
-- and whether it was a HEAD, _bytes the body bytes sent (access log)

-- sends the head and `data` (a small body, or nil): on a driver stream
-- straight into its output buffer (no Lua string of the head). The
-- server's own fields (Server, Content-Length or Transfer-Encoding,
-- Connection, Date) are added in C; `framing` is a length (number),
-- "chunked", "close" or false (no body fields).
local function send_head(self, framing, data)
  local st = self._st
  if framing == "close" then
    self.close, framing = true, false
  end
  local connection
  if self.close or not self._keep then
    self._keep, connection = false, "close"
  elseif self._minor == 0 then
    connection = "keep-alive"
  end
  local send_response = st.send_response
  if send_response then
    return send_response(st.conn, self.status, self._fields, self.reason, nil, data, true,
                         st.server, framing, connection)
  end
  return st.conn:send(response_head(self.status, self._fields, self.reason, nil, data, true,
                                    st.server, framing, connection))
end

-- the stream's timeout, set only when it changes (st.tmo: the last value)
local function timeout(st, t)
  if st.tmo ~= t then
    st.conn:settimeout(t)
    st.tmo = t
  end
end

-- streamed bodies and files wait on the client under send_timeout; a
-- buffered string reply is written when the task next reads, under that
-- read's timeout
local function send_timeout(self)
  local st = self._st
  timeout(st, st.opts.send_timeout)
end

local function write_failed(self, err)
  self._keep = false
  self._st.broken = true
  return nil, err
end

-- response:send of an ltn12 source: chunked, or as is when a
-- Content-Length header was set, or delimited by closing the connection
local function send_source(self, data)
  local conn = self._st.conn
  local code = self.status
  local nobody = self._head or BODILESS[code] or code < 200
  local given = self:get_header("content-length")
  local framing = false
  if not given then framing = (nobody or self._minor == 1) and "chunked" or "close" end
  send_timeout(self)
  local sent_ok = send_head(self, framing)   -- raises on header injection
  self.sent = true
  if not sent_ok then return write_failed(self, "closed") end
  if nobody then return true end
  local sent = 0
  for _ = 1, math.huge do
    local piece, err = data()
    if piece == nil then
      if err then
        -- the body cannot be finished: the client must see it cut short
        parley.log("http: response source failed: " .. tostring(err))
        return write_failed(self, err)
      end
      break
    end
    if #piece > 0 then
      sent = sent + #piece
      local ok, werr = conn:send(framing == "chunked" and chunk(piece) or piece)
      if not ok then return write_failed(self, werr) end
    end
  end
  self._bytes = sent
  if framing == "chunked" then
    local ok, werr = conn:send("0\r\n\r\n")
    if not ok then return write_failed(self, werr) end
  end
  return true
end

--- Sends the response.
-- `data`: a string (sent with Content-Length), an ltn12 source function
-- (sent chunked, or as is when a Content-Length header was set; to an
-- HTTP/1.0 client, delimited by closing the connection), or nil (empty).
-- HEAD requests and 204/304 get the head only.
-- @tparam[opt] string|function data
-- @tparam[opt] integer status sets `res.status` first
-- @return true, or `nil, err` when the client went away
-- @function response:send
--
-- (In C, response.c: framed from the request's facts by core.http.reply,
-- head and body in one call, straight into a driver stream's output
-- buffer; an ltn12 source goes to _send_source.)
response.send = http.response_send
response._send_source = send_source

--- Sends a 200 response that stays the same from one request to the next
-- (a small file, say) with the bytes kept from the last time: `memo` holds
-- what went on the wire, sent again as one string while the second of the
-- Date field, the server's options and the connection's framing are
-- unchanged (else rebuilt). Fields already set on `res`, a HEAD request,
-- another status or a connection that closes take the plain `send` way.
-- @tparam table memo the caller's, one per unchanging response
-- @tparam table fields `{name, value, ...}`, the same for one memo
-- @tparam string data the body, the same for one memo
-- @return true, or `nil, err` when the client went away
function response:send_memo(memo, fields, data)
  local st = response_usual(self)
  if not st then
    if self.sent then error("response already sent", 2) end
    for i = 1, #fields, 2 do self:header(fields[i], fields[i + 1]) end
    return self:send(data)
  end
  local date, wire = http_date(), memo.wire
  if not wire or memo.date ~= date or memo.opts ~= st.opts then
    wire = response_head(200, fields, nil, nil, data, true, st.server, #data)
    memo.wire, memo.date, memo.opts = wire, date, st.opts
  end
  response_mark_sent(self, #data)
  local ok, err = st.send(st.conn, wire)
  if not ok then return write_failed(self, err) end
  return true
end

--- Sends a file with sendfile(2).
-- @tparam string path
-- @tparam[opt=0] integer offset
-- @tparam[opt] integer count bytes (default: to the end of the file)
-- @tparam[opt] integer size the file's size, if known (saves a stat)
-- @return true, or `nil, err`
function response:sendfile(path, offset, count, size)
  offset = offset or 0
  if not count then
    if not size then
      local f = io.open(path, "rb")
      if not f then return nil, "cannot open " .. path end
      size = f:seek("end")
      f:close()
    end
    count = size - offset
  end
  if self.sent then error("response already sent", 2) end
  local conn = self._st.conn
  send_timeout(self)
  local ok, err = send_head(self, count)
  self.sent = true
  if not ok then return write_failed(self, err) end
  if self._head or count == 0 then return true end
  local n
  n, err = conn:sendfile(path, offset, count)
  if not n then return write_failed(self, err) end
  self._bytes = n
  return true
end

--- Sends a redirect (302 unless `status` says otherwise).
function response:redirect(location, status)
  self:header("Location", location)
  self:header("Content-Type", "text/html; charset=utf-8")
  local s = status or 302
  return self:send(("<a href=\"%s\">%d %s</a>\n"):format(
    html_escape(location), s, http.status_text(s) or ""), s)
end

--- Sends a short plain-text error page for `status`.
function response:error(status, text)
  self:header("Content-Type", "text/plain; charset=utf-8")
  return self:send(("%d %s\n"):format(status, text or http.status_text(status) or ""), status)
end

-- --------------------------------------------------------------------------
-- Routing
-- --------------------------------------------------------------------------

--- An application: routes plus options.
-- @type app
local app = {}
app.__index = app
app.__name = "parley.http.app"

--- Creates an application.
-- @tparam[opt] table opts the limits of `M.defaults`, plus `access_log`
--   (a file handle, or `function(line)`; default none), `on_error`
--   (`function(err, req)`; default `parley.log`), `not_found`
--   (`function(req, res)`)
-- @treturn app
function M.new(opts)
  local o = {}
  for k, v in pairs(M.defaults) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  local self = setmetatable({
    opts = o,
    exact = {},      -- method -> path -> route
    patterns = {},   -- ordered list of {method, lua pattern, names, fn}
    hits = {},       -- GET path -> the route a pattern lookup found (see route)
    nhits = 0,
    limits = http.limits{ max_request_line = o.max_request_line, max_head = o.max_head,
                          max_headers = o.max_headers, lenient = o.lenient },
    body_opts = { max = o.max_body, timeout = o.body_timeout,
                  limits = { max_chunk_ext = 4096, max_trailer = 8192,
                             max_headers = o.max_headers, lenient = o.lenient } },
  }, app)
  local log = o.access_log
  if log and type(log) ~= "function" then
    local fh = log
    self.log = function(line) fh:write(line) end
  else
    self.log = log or false   -- a field of its own: read per request, not via app
  end
  return self
end

-- "/users/:id/*" -> "^/users/([^/]+)/(.*)$", {"id", "*"}
local function compile(path)
  local names = {}
  local pat = path:gsub("[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0")
  pat = pat:gsub(":([%a_][%w_]*)", function(name)
    names[#names + 1] = name
    return "([^/]+)"
  end)
  if pat:sub(-1) == "*" then
    names[#names + 1] = "*"
    pat = pat:sub(1, -2) .. "(.*)"
  end
  return "^" .. pat .. "$", names
end

--- Adds a route.
-- `path` is exact (`"/hello"`), has `:name` segments (`"/users/:id"`,
-- captured into `req.params.id`) and/or ends in `*` (the rest of the path
-- into `req.params["*"]`). `method` is a method name or `"*"` (any); a
-- GET route also answers HEAD. Routes are tried in the order added; exact
-- paths first.
-- @tparam string method
-- @tparam string path
-- @tparam function fn `function(req, res)`
-- @return the app (chainable)
function app:route(method, path, fn)
  if type(method) ~= "string" or type(path) ~= "string" or type(fn) ~= "function" then
    error("route(method, path, function(req, res))", 2)
  end
  return self:_route(method:upper(), path, fn)
end

-- app:route after its checks; `prefix`: the route is `prefix .. "*"`,
-- matched by a plain comparison and with no req.params (app:static)
function app:_route(method, path, fn, prefix)
  self.hits, self.nhits = {}, 0   -- a new route may win for a path seen
  if not find(path, "[:*]") then
    local t = self.exact[method]
    if not t then
      t = {}
      self.exact[method] = t
    end
    if t[path] == nil then t[path] = fn end
  else
    local pat, names = compile(path)
    self.patterns[#self.patterns + 1] = { method, pat, names, fn, prefix }
  end
  return self
end

for _, m in ipairs { "get", "post", "put", "delete", "patch", "options" } do
  app[m] = function(self, path, fn) return self:route(m:upper(), path, fn) end
end

--- Serves the files under `root` at URL prefix `prefix` (see
-- `parley.http.static`); `opts.listing` turns on directory listings.
function app:static(prefix, root, opts)
  if prefix:sub(-1) ~= "/" then prefix = prefix .. "/" end
  local handler = require("parley.http.static").handler(root, opts, #prefix)
  self:_route("GET", prefix .. "*", handler, prefix)
  if prefix ~= "/" then
    -- "/docs" -> "/docs/"
    self:route("GET", prefix:sub(1, -2), function(req, res)
      return res:redirect(prefix .. (req.query and "?" .. req.query or ""), 301)
    end)
  end
  return self
end


-- the route's function and params, or nil, allowed-methods-string
local function lookup(self, method, path)
  local exact = self.exact
  local t = exact[method]
  local fn = t and t[path]
  if fn then return fn, NOPARAMS end
  if method == "HEAD" then
    t = exact.GET
    fn = t and t[path]
    if fn then return fn, NOPARAMS end
  end
  t = exact["*"]
  fn = t and t[path]
  if fn then return fn, NOPARAMS end
  local allowed
  local patterns = self.patterns
  for i = 1, #patterns do
    local r = patterns[i]
    local m, prefix = r[1], r[5]
    local c1
    if prefix then
      c1 = find(path, prefix, 1, true) == 1
    else
      c1 = match(path, r[2])
    end
    if c1 then
      if m == method or m == "*" or (method == "HEAD" and m == "GET") then
        if prefix then return r[4], NOPARAMS end
        local names = r[3]
        if #names == 1 then return r[4], { [names[1]] = c1 } end
        local caps, params = { match(path, r[2]) }, {}
        for k = 1, #names do params[names[k]] = caps[k] end
        return r[4], params
      end
      allowed = allowed or {}
      allowed[m] = true
    end
  end
  for m, paths in pairs(exact) do
    if paths[path] then
      allowed = allowed or {}
      allowed[m] = true
    end
  end
  if allowed then
    if allowed.GET then allowed.HEAD = true end
    local list = {}
    for m in pairs(allowed) do list[#list + 1] = m end
    table.sort(list)
    return nil, concat(list, ", ")
  end
  return nil
end

local HITS_MAX = 1024

-- the handler of req's route (its captures set as req.params), or nil
-- after answering 405 or 404 (or the app's not_found) itself
local function route(self, req, res, method, path)
  -- a GET path that a route without captures took (a static prefix, say)
  -- is looked up once: the same path finds the same route until routes
  -- change. Bounded: short paths only, at most HITS_MAX of them.
  local get = method == "GET"
  local fn = get and self.hits[path]
  if fn then return fn end
  local params
  fn, params = lookup(self, method, path)
  if fn then
    if params ~= NOPARAMS then
      req.params = params
    elseif get and #path <= 256 then
      if self.nhits >= HITS_MAX then self.hits, self.nhits = {}, 0 end
      self.hits[path] = fn
      self.nhits = self.nhits + 1
    end
    return fn
  end
  if params then
    res:header("Allow", params)
    res:error(405)
  elseif self.opts.not_found then
    self.opts.not_found(req, res)
  else
    res:error(404)
  end
end

-- a handler's `return status, body [, headers]`, when it sent nothing itself
local function send_returned(res, status, data, headers)
  if type(status) ~= "number" then
    error("a handler returns status, body [, headers] (got " .. type(status) .. ")", 0)
  end
  if headers then
    for k, v in pairs(headers) do res:header(k, v) end
  end
  return res:send(data, status)
end

-- --------------------------------------------------------------------------
-- The connection loop
-- --------------------------------------------------------------------------

-- a header value for the log: quotes, backslashes, controls escaped (as nginx)
local function log_escape(v)
  if not v then return "-" end
  return (v:gsub('[%c"\\]', function(c)
    if c == '"' or c == "\\" then return "\\" .. c end
    return ("\\x%02X"):format(c:byte())
  end))
end

local function log_request(self, st, req, res, status)
  local h = req and req.headers or {}
  local bytes = 0
  if res and not (res._head or BODILESS[status] or status < 200) then bytes = res._bytes end
  local line = ('%s - - [%s] "%s" %d %d "%s" "%s"\n'):format(
    st.peer or "-", log_date(),
    req and ("%s %s HTTP/1.%d"):format(req.method, req.target, req.minor) or "-",
    status, bytes, log_escape(h.referer), log_escape(h["user-agent"]))
  self.log(line)
end

-- answers a request we could not take (`req`: its head, when it parsed)
-- and closes: status, short text
local function reject(self, st, status, reason, req)
  if self.log then log_request(self, st, req, nil, status) end
  local conn = st.conn
  local text = ("%d %s\n"):format(status, http.status_text(status) or reason or "")
  timeout(st, st.opts.send_timeout)
  conn:send(response_head(status, { "Content-Type", "text/plain; charset=utf-8" }, nil, nil,
                          text, true, nil, #text, "close"))
  conn:flush()
  -- linger a little: closing with unread input would send a reset that
  -- can destroy the reply before the client reads it (RFC 9112 §9.6)
  timeout(st, 0.05)
  for _ = 1, 16 do
    if not conn:receive_some(65536) then break end
  end
  return status
end

-- The next request parsed from st.buf (bytes received but not consumed:
-- what a body reader read past its body), reading more with receive_some:
-- the request object and what the server decides from its head (req,
-- keep, kind, len, refuse, method, path, minor: see
-- core.http.parse_request with a metatable);
-- or nil and what `handle` returns (a refusal's status, or nothing for a
-- quiet close). For streams wrapped in Lua (a transcript).
local function buffered_head(self, st, nreq, idle_deadline)
  local conn, opts, limits = st.conn, st.opts, self.limits
  local n, req, keep, kind, len, refuse, method, path, minor
  local buf, pos = st.buf, st.pos
  local seen, deadline
  while true do
    if pos <= #buf then
      n, req, keep, kind, len, refuse, method, path, minor = parse_request(buf, pos, limits, seen, st.reqmt)
      if n then break end
      if req then return nil, reject(self, st, keep, req) end   -- nil, reason, status
      -- the head is incomplete: keep it at the start of buf
      if pos > 1 then buf, pos = sub(buf, pos), 1 end
      seen = #buf
      deadline = deadline or now() + opts.header_timeout
    end
    local wait
    if deadline then
      wait = deadline - now()
    elseif nreq == 0 then
      wait = idle_deadline - now()
    else
      wait = opts.keepalive_timeout
    end
    if wait <= 0 then
      if deadline then return nil, reject(self, st, 408) end
      return nil
    end
    timeout(st, wait)
    local more, err = conn:receive_some(65536)
    if not more then
      if err == "timeout" and deadline then return nil, reject(self, st, 408) end
      return nil   -- closed, reset, or idle too long: nothing to say
    end
    if pos <= #buf then buf = buf .. more else buf, pos = more, 1 end
  end
  st.buf, st.pos = buf, pos + n
  return req, keep, kind, len, refuse, method, path, minor
end

-- What stream:receive_http_head gave when it gave no request: false (part
-- of a head came: the rest within header_timeout, else 408), a refusal
-- (nil, reason, status) or nothing (closed, reset, idle too long); the
-- same as stream_head returns.
local function no_head(self, st, req, keep, kind)
  if req == false then
    timeout(st, st.opts.header_timeout)
    local len, refuse, method, path, minor
    req, keep, kind, len, refuse, method, path, minor = st.conn:receive_http_head(self.limits, true, st.reqmt)
    if req then return req, keep, kind, len, refuse, method, path, minor end
    if req == nil and keep == "timeout" then return nil, reject(self, st, 408) end
  end
  if kind then return nil, reject(self, st, kind, keep) end   -- nil, reason, status
  return nil   -- closed, reset, or idle too long: nothing to say
end

-- The same from a driver stream: the head parsed where it lies in the
-- stream's own buffer (no Lua string of it), once st.buf is used up.
-- (serve_requests has the keep-alive case of this inline.)
local function stream_head(self, st, nreq, idle_deadline)
  if st.pos <= #st.buf then return buffered_head(self, st, nreq, idle_deadline) end
  local wait = st.opts.keepalive_timeout
  if nreq == 0 then
    wait = idle_deadline - now()   -- first request: from accept
    if wait <= 0 then return nil end
  end
  if st.tmo ~= wait then timeout(st, wait) end
  local req, keep, kind, len, refuse, method, path, minor = st.conn:receive_http_head(self.limits, nil, st.reqmt)
  if req then return req, keep, kind, len, refuse, method, path, minor end
  return no_head(self, st, req, keep, kind)
end

local function traceback(e)
  if type(e) == "string" then return debug.traceback(e, 2) end
  return e
end

-- after a request that was logged, left a body unread, or ends the
-- connection (serve_requests skips it for the rest): true when the
-- connection goes on to the next
local function finish(self, st, req, res)
  if self.log then log_request(self, st, req, res, res.status) end
  if st.broken then return false end
  local r = req._body
  if r and not r.done then
    -- an unread body: skip a little of it, else close (RFC 9112 §9.3)
    if req._continue or r.err or not r:drain(st.opts.discard_limit) then
      st.conn:flush()
      return false
    end
  end
  if not res._keep then
    st.conn:flush()
    return false
  end
  return true
end

-- a handler raised (st.req, st.res: its request): 500 unless the head
-- went out, and the connection closes
local function handler_failed(self, st, err)
  local req, res = st.req, st.res
  local report = self.opts.on_error
  if report then pcall(report, err, req) else parley.log("http: " .. tostring(err)) end
  if res.sent then return end   -- cannot tell the client: cut it short
  res._keep = false
  res.status = 500
  res._fields = false
  res:error(500)
  finish(self, st, req, res)
end

-- res:send's way to a stream wrapped in Lua: the reply as one string
local function send_wrapped(conn, ...)
  return conn:send(reply(...))
end

-- the requests of one connection, in turn
local function serve_requests(self, st)
  local opts = self.opts
  local conn, reqmt, direct = st.conn, st.reqmt, st.direct
  local read_head = direct and stream_head or buffered_head
  -- the stream's method, looked up once rather than per request
  local receive_http_head = direct and conn.receive_http_head
  local limits, exact, new_res = self.limits, self.exact, st.new_res
  local keepalive_timeout = opts.keepalive_timeout
  local max_requests, max_body = opts.max_requests, opts.max_body
  local nreq = 0
  local idle_deadline = now() + opts.header_timeout  -- first request: from accept
  local usual = false   -- the next head is the usual case (set at the end)
  while true do
    -- -------------------------------------------------------------- head
    -- parsed, and checked for keep-alive, framing, Host and Expect, in C
    local req, keep, kind, len, refuse, method, path, minor
    if usual then
      -- stream_head's keep-alive case, inline: the usual request
      if st.tmo ~= keepalive_timeout then timeout(st, keepalive_timeout) end
      req, keep, kind, len, refuse, method, path, minor = receive_http_head(conn, limits, nil, reqmt)
      if not req then
        req, keep, kind, len, refuse, method, path, minor = no_head(self, st, req, keep, kind)
      end
    else
      req, keep, kind, len, refuse, method, path, minor = read_head(self, st, nreq, idle_deadline)
    end
    if not req then return keep end
    nreq = nreq + 1
    if nreq >= max_requests then keep = false end
    local r = false   -- the body's reader
    local has_body = kind ~= "none"
    if has_body then
      -- RFC 9112 §6.1: bad framing -> answer and close
      if not kind then return reject(self, st, refuse, len, req) end
      if kind == "length" and len > max_body then return reject(self, st, 413, nil, req) end
    end
    if refuse then return reject(self, st, refuse, nil, req) end   -- Host 400, Expect 417
    local res = new_res(keep, minor, method)
    if has_body then
      r = body.reader(st, kind, len, self.body_opts)
      req._body = r
      if req._continue then req._res = res end
    end
    -- -------------------------------------------------------------- handler
    -- an error raised here is caught by handle's xpcall (one per
    -- connection, not per request): st.res tells it a handler was running
    st.req, st.res = req, res
    local t = exact[method]
    local fn = t and t[path] or route(self, req, res, method, path)
    if fn then
      local status, data, headers = fn(req, res)
      if status ~= true and status ~= nil and not res.sent then
        send_returned(res, status, data, headers)
      end
    end
    st.res = false
    -- -------------------------------------------------------------- next
    -- the usual case: the response went out and the connection stays open
    -- (a broken connection does not), nothing to log, no body to finish
    if not response_done(res) or self.log or r then
      if not res.sent then
        if r and r.err == "body too large" then
          res._keep = false
          res:error(413)
        else
          res:send("")
        end
      end
      if not finish(self, st, req, res) then return end
    end
    -- the next head comes from the stream's own buffer (stream_head's
    -- keep-alive case, inline above) unless a body reader left bytes in st.buf
    if r then usual = direct and st.pos > #st.buf else usual = direct end
  end
end

--- Serves one connection (the handler given to `parley.serve`).
-- @tparam stream conn
function app:handle(conn)
  -- direct: a driver stream (userdata), whose buffers the codec reads and
  -- writes; a stream wrapped in Lua (a transcript) must see every byte
  local direct = type(conn) == "userdata" and conn.receive_http_head ~= nil
  local peer = conn:getpeername() or false
  local server = self.opts.server_name
  local st = { conn = conn, buf = "", pos = 1, opts = self.opts, tmo = false,
                broken = false, peer = peer, direct = direct, req = false, res = false,
                server = server, new_res = false,
                send_response = direct and conn.send_http_response,
                send = conn.send,   -- looked up once (send_memo)
                reqmt = request_meta(peer, conn) }
  -- the responses' constructor: res:send calls send(conn, status, fields,
  -- reason, body, server, keep, minor, head)
  st.new_res = http.responder({ st, conn, direct and conn.send_http_reply or send_wrapped,
                                server }, response_mt)
  local ok, err = xpcall(serve_requests, traceback, self, st)
  if ok then return err end
  if not st.res then error(err, 0) end   -- the server's own failure
  handler_failed(self, st, err)
end

--- Serves the app: `parley.serve` with this app as the handler.
-- @tparam table|string opts `listen` and the options of `parley.serve`
-- (or just the address), plus HTTPS: `tls` (`{cert = FILE, key = FILE}`
-- and any other parley.tls.context option; ALPN `http/1.1` by default)
-- or `tls_ctx` (a server context). Without `listen_tls`, `listen` itself
-- is then HTTPS; with `listen_tls = ADDR`, `listen` stays plain HTTP and
-- ADDR serves HTTPS (see parley.http.tls).
-- @return the parley server (with `listen_tls`: an object with `port`,
-- `address`, `tls_port`, `tls_address`, `close`, `connections`, `wait`),
-- or `nil, err` (also a certificate or key that cannot be used)
function app:serve(opts)
  if type(opts) == "string" then opts = { listen = opts } end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.handler = function(conn) return self:handle(conn) end
  o.transcript_protocol = "http"   -- for a `transcript` option
  if o.tls == nil and o.tls_ctx == nil and o.listen_tls == nil then return parley.serve(o) end
  local https = require "parley.http.tls"
  local ctx, err = https.server_context(o)
  if err then return nil, err end
  if o.listen_tls then
    if not ctx then error("listen_tls needs tls = {cert =, key =} or tls_ctx", 2) end
    return https.serve_both(o, ctx)
  end
  o.tls, o.tls_ctx = ctx, nil
  return parley.serve(o)
end

--- Shortcut: `serve{listen = ..., handler = function(req, res) ... end}`
-- (one handler for every request) or `serve{listen = ..., root = DIR}`
-- (static files), plus the options of `new` and `parley.serve`.
function M.serve(opts)
  local a = M.new(opts)
  if opts.root then a:static("/", opts.root, opts) end
  if opts.handler then a:route("*", "/*", opts.handler) end
  if opts.routes then
    for _, r in ipairs(opts.routes) do a:route(r[1], r[2], r[3]) end
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.handler, o.root, o.routes = nil, nil, nil
  return a:serve(o)
end

M.request = request
M.response = response
M.app = app
return M
