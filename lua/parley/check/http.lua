--- parley.check.http: `http://host[:port][/path]` (`https://`, or
-- `tls_implicit`: HTTPS, port 443; HTTP has no STARTTLS).
--
-- One GET on a new connection, redirects not followed. The status
-- decides: with `status` (a list of codes) any of them is OK and any
-- other CRITICAL; without it 2xx and 3xx are OK, 4xx WARNING, 5xx (and
-- anything else) CRITICAL. `expect`: the body must hold that text
-- (CRITICAL otherwise); the body is searched as it streams, never kept.
-- Perfdata `size=NB`, the body's length.
-- @module parley.check.http
local client = require "parley.http.client"

local M = { LABEL = "HTTP", PORT = 80, TLS_PORT = 443 }

--- The options this check takes (besides timeout, warning, critical, verbose).
M.OPTIONS = { status = true, expect = true }

--- Refuses options that cannot work (UNKNOWN before connecting).
function M.validate(u, opts)
  if u.user then return "credentials in an http URL are not supported" end
  for i, code in ipairs(opts.status or {}) do
    if math.type(code) ~= "integer" or code < 100 or code > 999 then
      return ("status #%d must be a three-digit code"):format(i)
    end
  end
  if opts.expect ~= nil and (type(opts.expect) ~= "string" or opts.expect == "") then
    return "expect must be a non-empty string"
  end
end

--- The state of a status code (see the module description).
-- @tparam integer code
-- @tparam[opt] table expected list of codes
-- @treturn string
function M.judge_status(code, expected)
  if expected and #expected > 0 then
    for _, c in ipairs(expected) do if c == code then return "OK" end end
    return "CRITICAL"
  end
  local class = code // 100
  if class == 2 or class == 3 then return "OK" end
  if class == 4 then return "WARNING" end
  return "CRITICAL"
end

-- An ltn12 sink that looks for `text` across chunk boundaries: it keeps
-- only the last #text - 1 bytes between chunks.
local function searching_sink(text)
  local st = { found = text == nil }
  local tail = ""
  st.sink = function(chunk)
    if chunk and not st.found then
      local s = tail .. chunk
      if s:find(text, 1, true) then st.found = true
      elseif #text > 1 then tail = s:sub(-(#text - 1)) end
    end
    return 1
  end
  return st
end

--- Runs the check (see the module description) in `ctx`, the context
-- `parley.check` gives: `ctx.url`, `ctx.opts`, `ctx:phase`, `ctx:perf`.
-- @return state, summary
function M.check(ctx)
  local u, o = ctx.url, ctx.opts
  ctx:phase("request")
  local st = searching_sink(o.expect)
  local t = ctx:tls_options(u)
  -- --tls-implicit on an http:// URL: the same URL over HTTPS
  local target = t.tls and u.url:gsub("^[Hh][Tt][Tt][Pp]:", "https:") or u.url
  local res, err = client.request{ url = target, max_redirects = 0, keepalive = false,
    timeout = ctx:left(), sink = st.sink, transcript = ctx.transcript, ca = t.ca, insecure = t.insecure }
  if not res then return ctx:critical(err) end
  ctx:tls_seen(res.tls)
  ctx:perf("size", res.bytes or 0, "B", { min = 0 })
  local state = M.judge_status(res.status, o.status)
  local summary = ("%s HTTP/1.%d %d %s, %d bytes"):format(u.address, res.minor, res.status,
    res.reason or "", res.bytes or 0)
  if not st.found then
    return "CRITICAL", ("%s; the body lacks %q"):format(summary, o.expect)
  end
  if o.status and state == "CRITICAL" then
    local want = {}
    for i, c in ipairs(o.status) do want[i] = tostring(c) end
    summary = ("%s; expected %s"):format(summary, table.concat(want, ","))
  end
  return state, summary
end

return M
