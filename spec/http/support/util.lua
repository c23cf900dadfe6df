-- Helpers for the HTTP specs (spec/http/*_spec.lua).
--
--   local U = require "http.support.util"
--   U.with_app(app_or_setup, function(srv) ... end [, limit])
--   local c = U.connect(srv); U.exchange(c, bytes) -> text until close/timeout
--   U.read_responses(conn, n [, head]) -> list of {status, headers, body}
--   U.statuses(text) -> {200, 404, ...}; U.webroot() -> a temporary site
local parley = require "parley"
local H = require "helper"
local http = require "parley.http"
local core = require "parley.core"

local U = {}

--- Runs `fn(srv, app)` in a task with an app serving on 127.0.0.1:0 (no
-- signals); closes the server afterwards, even when `fn` fails.
-- `setup` is an app, or a function(app) adding routes, with `opts` for new.
function U.with_app(setup, fn, opts, limit)
  return H.run(function()
    local app = setup
    if type(setup) == "function" or setup == nil then
      app = http.server.new(opts)
      if setup then setup(app) end
    end
    local srv = assert(app:serve{ listen = "127.0.0.1:0", signals = false, grace = 0 })
    local ok, err = xpcall(fn, function(e)
      if type(e) == "string" then return debug.traceback(e, 2) end
      return e
    end, srv, app)
    srv:close(0)
    http.client.default_pool:close()
    if not ok then error(err, 0) end
  end, limit)
end

function U.connect(srv, timeout)
  return assert(parley.connect("127.0.0.1", srv.port, { timeout = timeout or 3 }))
end

--- Sends `bytes` (unless nil), then reads until the peer closes or `wait`
-- seconds pass without data; returns everything read and the last error.
function U.exchange(conn, bytes, wait)
  if bytes then assert(conn:send(bytes)) assert(conn:flush()) end
  local parts = {}
  conn:settimeout(wait or 2)
  for _ = 1, 100000 do
    local chunk, err = conn:receive_some(65536)
    if not chunk then return table.concat(parts), err end
    parts[#parts + 1] = chunk
  end
  return table.concat(parts), "too much"
end

--- Reads exactly the responses for `n` requests (by parsing heads and
-- Content-Length / chunked bodies) from `conn`; for HEAD set `head`.
function U.read_responses(conn, n, head)
  local st = { conn = conn, buf = "", pos = 1 }
  local out = {}
  for i = 1, n do
    while true do
      local used, minor, status, reason, headers = core.http.parse_response(st.buf, st.pos)
      if used then
        st.pos = st.pos + used
        local kind, len = core.http.body_framing(headers, false, head and "HEAD" or "GET", status, minor)
        local r = http.body.reader(st, kind, len, {})
        local body = assert(r:all())
        out[i] = { status = status, reason = reason, headers = headers, body = body, minor = minor }
        break
      end
      assert(not minor, minor)
      local more, err = conn:receive_some()
      if not more then return out, err end
      st.buf = st.buf:sub(st.pos) .. more
      st.pos = 1
    end
  end
  return out
end

--- The status codes of every status line in raw response text, in order.
function U.statuses(text)
  local list = {}
  for code in text:gmatch("HTTP/1%.%d (%d%d%d)") do list[#list + 1] = tonumber(code) end
  return list
end

--- A temporary web root with index.html, a 1 KiB file, an image, a
-- subdirectory without index; returns the path (remove with H.rmdir).
function U.webroot()
  local dir = H.tmpdir()
  local function write(name, data)
    local f = assert(io.open(dir .. "/" .. name, "wb"))
    f:write(data)
    f:close()
  end
  write("index.html", "<!DOCTYPE html><html><body>hello</body></html>\n")
  local k = {}
  for i = 0, 1023 do k[#k + 1] = string.char(65 + i % 26) end
  write("1k.txt", table.concat(k))
  write("style.css", "body{}\n")
  assert(require("lfs").mkdir(dir .. "/sub"))
  write("sub/a b.txt", "spaced\n")
  write("sub/<x>.txt", "angle\n")
  return dir
end

return U
