--- HTTPS pieces of the HTTP server and client: the server context (ALPN
-- `http/1.1`), a plain and an HTTPS listener serving one app, and the
-- client's context for a request's options.
--
--     local app = require("parley.http.server").new()
--     app:serve{ listen = "127.0.0.1:8080", listen_tls = "127.0.0.1:8443",
--                tls = { cert = "site.crt", key = "site.key" } }
--
-- HTTP has no STARTTLS in use (RFC 2817 is not): a server with `tls` and
-- no `listen_tls` serves HTTPS on `listen` itself; with `listen_tls` it
-- serves HTTP on `listen` and HTTPS on `listen_tls`.
-- @module parley.http.tls
local parley = require "parley"
local pserver = require "parley.server"

local M = {}

--- ALPN protocols the server accepts and the client offers.
M.ALPN = { "http/1.1" }

--- The server context for an app's serve options: `tls_ctx` (or a
-- context given as `tls`) as it is, or one made from `tls = {cert =
-- FILE, key = FILE, ...}` (any parley.tls.context option) with ALPN
-- `http/1.1` unless `tls.alpn` says otherwise.
-- @tparam table o the serve options
-- @return a server context, or nil (no TLS), or `nil, err` (a file that
-- cannot be used)
function M.server_context(o)
  local tls = parley.tls
  if tls.is_context(o.tls) then return pserver.tls_context{ tls_ctx = o.tls } end
  if o.tls_ctx ~= nil then return pserver.tls_context{ tls_ctx = o.tls_ctx } end
  if not o.tls then return nil end
  if type(o.tls) ~= "table" then error("tls must be a table {cert = FILE, key = FILE}", 3) end
  local t = { alpn = M.ALPN }
  for k, v in pairs(o.tls) do t[k] = v end
  return pserver.tls_context{ tls = t }
end

local both = {}
both.__index = both
both.__name = "parley.http.listeners"

--- Closes both listeners: their connections get `grace` seconds.
function both:close(grace)
  return pserver.close_for(self, "", function() return false end, grace)
end

--- Connections open on both listeners.
function both:connections() return pserver.connections_for(self) end

--- Waits until both listeners have stopped.
function both:wait(timeout)
  local ok = self.inner:wait(timeout)
  if ok then ok = self.inner_tls:wait(timeout) end
  return ok
end

--- Serves one handler on `o.listen` (plain) and `o.listen_tls` (HTTPS,
-- context `ctx`). `o` holds parley.serve's options.
-- @return an object with `port`, `address`, `tls_port`, `tls_address`,
-- `inner`, `inner_tls`, `close([grace])`, `connections()`, `wait()`; or
-- `nil, err`
function M.serve_both(o, ctx)
  local srv = setmetatable({ sessions = {}, opts = { grace = o.grace } }, both)
  local extra = {}
  for k, v in pairs(o) do extra[k] = v end
  extra.handler, extra.listen, extra.listen_tls, extra.tls, extra.tls_ctx = nil, nil, nil, nil, nil
  local handler = o.handler
  local t = { listen = o.listen, listen_tls = o.listen_tls, tls_ctx = ctx }
  for _, k in ipairs { "max_connections", "grace", "signals", "backlog", "reuseport", "on_error",
                       "on_start", "transcript", "transcript_full", "transcript_secrets" } do
    t[k] = o[k]
    extra[k] = nil
  end
  return pserver.serve_for(srv, t, "127.0.0.1:8080", function(_, conn) return handler(conn) end, extra)
end

local contexts = setmetatable({}, { __mode = "v" })

--- The client context for a request's options: `tls_ctx` as it is, else
-- one trusting `ca` (made once per `ca` and `insecure`), else the shared
-- default (the system store; `insecure = true`: not verifying).
-- @tparam table o the request's options
-- @return a client context, or `nil, err`
function M.client_context(o)
  local tls = parley.tls
  if o.tls_ctx ~= nil then
    if not (tls.is_context(o.tls_ctx) and o.tls_ctx:mode() == "client") then
      error("tls_ctx must be a client tls context", 4)
    end
    return o.tls_ctx
  end
  if o.ca == nil then return tls.client(o.insecure and true or false) end
  if type(o.ca) ~= "string" then error("ca must be a file or directory name", 4) end
  local key = (o.insecure and "i|" or "v|") .. o.ca
  local ctx = contexts[key]
  if ctx then return ctx end
  local err
  ctx, err = tls.context{ mode = "client", ca = o.ca, verify = not o.insecure, alpn = M.ALPN }
  if not ctx then return nil, err end
  contexts[key] = ctx
  return ctx
end

return M
