--- parley.http: HTTP/1.1 server and client (RFC 9110, RFC 9112).
--
--     local http = require "parley.http"
--     http.server.new():get("/", function(req, res) return 200, "hi\n" end)
--       :serve("127.0.0.1:8080")
--     local r = http.client.request("http://127.0.0.1:8080/")
--     print(r.status, r.body)
--
-- Fields load their module on first use: `server`, `client`, `static`,
-- `mime_types`, `body`; and `codec` is `require("parley.core").http`.
-- @module parley.http
local M = {}

local modules = {
  server = "parley.http.server", client = "parley.http.client",
  static = "parley.http.static", mime_types = "parley.http.mime_types",
  body = "parley.http.body",
}

return setmetatable(M, { __index = function(t, k)
  if k == "codec" then
    local c = require("parley.core").http
    rawset(t, k, c)
    return c
  end
  local name = modules[k]
  if not name then return nil end
  local mod = require(name)
  rawset(t, k, mod)
  return mod
end })
