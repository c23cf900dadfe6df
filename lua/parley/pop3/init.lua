--- parley.pop3: POP3 client and server (RFC 1939, 2449, 5034).
--
--     local pop3 = require "parley.pop3"
--     local c = assert(pop3.client.connect("127.0.0.1:1110"))
--     assert(c:login("alice", "secret"))
--     local count, octets = c:stat()
--     local msg = c:retr(1)
--     c:quit()
--
--     pop3.server.serve{ listen = "127.0.0.1:1110", store = store, users = users }
-- @module parley.pop3
local M = {}
setmetatable(M, { __index = function(t, k)
  if k ~= "client" and k ~= "server" and k ~= "cli" then return nil end
  local mod = require("parley.pop3." .. k)
  rawset(t, k, mod)
  return mod
end })
return M
