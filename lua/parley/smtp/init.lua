--- parley.smtp: SMTP client, server and relay queue.
--
--     local smtp = require "parley.smtp"
--     smtp.client.send{ server = "127.0.0.1:2525", from = "a@x", to = "b@y",
--                       message = "Subject: hi\r\n\r\nhello\r\n" }
--     smtp.server.serve{ listen = "127.0.0.1:2525", sink = true }
-- @module parley.smtp
local M = {}
setmetatable(M, { __index = function(t, k)
  local ok, mod = pcall(require, "parley.smtp." .. k)
  if ok then rawset(t, k, mod) return mod end
  if k == "client" or k == "server" or k == "queue" then error(mod, 2) end
  return nil
end })
return M
