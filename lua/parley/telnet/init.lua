--- parley.telnet: Telnet (RFC 854/855 with RFC 1143 negotiation) client
-- and server.
--
--     local telnet = require "parley.telnet"
--     local c = assert(telnet.client.connect("127.0.0.1", 2323, { naws = {80, 24} }))
--     c:expect("login: ") ; c:send("alice")
--
--     telnet.server.serve{ listen = "127.0.0.1:2323", app = "chat" }
--
-- `.client` (parley.telnet.client), `.server` (parley.telnet.server),
-- `.session` (the server's per-connection object), `.users`
-- (`parley.mail.users`, the passwd-file shared by every parley server),
-- `.codec` (`core.telnet`, the C codec).
--
-- Telnet is cleartext by design: there is no TLS here, neither STARTTLS
-- nor an implicit-TLS port (the Telnet START_TLS option never became an
-- RFC and few clients speak it). Every byte, passwords typed at a
-- `login:` prompt included, crosses the network readable by anyone in the
-- path. Serve Telnet on loopback or a lab network; for anything else use
-- SSH, or the TLS the other parley protocols offer (SMTP STARTTLS, POP3
-- STLS, IMAP STARTTLS, FTP AUTH TLS, HTTPS).
-- @module parley.telnet
local M = {}

setmetatable(M, { __index = function(t, k)
  local mods = { client = "parley.telnet.client", server = "parley.telnet.server",
                 session = "parley.telnet.session", users = "parley.mail.users",
                 shell = "parley.telnet.shell" }
  if mods[k] then
    local v = require(mods[k])
    rawset(t, k, v)
    return v
  elseif k == "codec" then
    local v = require("parley.core").telnet
    rawset(t, k, v)
    return v
  end
end })

return M
