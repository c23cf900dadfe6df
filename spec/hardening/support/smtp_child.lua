-- A child SMTP server for the wire fuzzer: parley.smtp.server over a
-- Maildir with the tarpit off (error_delay = 0, auth_delay = 0), so that a
-- fuzzing connection full of errors is answered at full speed; the tarpit
-- has its own specs (spec/smtp). Prints "smtp server on ADDR", serves
-- until SIGTERM.
--   lua5.4 spec/hardening/support/smtp_child.lua MAILDIR USERS
io.stdout:setvbuf("line")
local server = require "parley.smtp.server"
assert(server.serve{ listen = "127.0.0.1:0", domains = { "example.org" },
  store = assert(require("parley.mail.maildir").open(arg[1])),
  users = assert(require("parley.mail.users").load(arg[2])), error_delay = 0, auth_delay = 0,
  on_start = function(srv) io.stdout:write("smtp server on ", srv.address, "\n") end })
