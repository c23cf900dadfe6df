--- parley.ftp: FTP client and server (RFC 959, 2389, 2428, 3659; TLS:
-- RFC 4217).
--
--     local ftp = require "parley.ftp"
--     local c = assert(ftp.client.connect("127.0.0.1", 2121))
--     assert(c:login())                 -- anonymous by default
--     local text = assert(c:get("README"))
--     c:quit()
--
--     ftp.server.serve{ listen = "127.0.0.1:2121", root = "/srv/ftp", anonymous = true }
--
-- Over TLS: `ftp.client.connect(host, { tls = "required" })` (AUTH TLS,
-- PBSZ 0, PROT P; `"implicit"` for port 990), and a server with
-- `tls = {cert =, key =}` (and `listen_tls` for implicit FTPS).
--
-- `client` is parley.ftp.client, `server` parley.ftp.server, `vfs` the
-- jailed file-system view the server uses.
-- @module parley.ftp
local M = {}
setmetatable(M, { __index = function(t, k)
  local ok, mod
  if k == "client" or k == "server" or k == "vfs" then
    mod = require("parley.ftp." .. k)
    ok = true
  end
  if ok then rawset(t, k, mod) end
  return mod
end })
return M
