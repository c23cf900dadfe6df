-- A whole mail server: SMTP in, POP3 (and IMAP, when parley.imap.server
-- is installed) out, over one Maildir.
--   lua5.4 examples/mailserver.lua [MAILDIR] [SMTP] [POP3] [IMAP]
--     (defaults: ./mail 127.0.0.1:2525 127.0.0.1:1110 127.0.0.1:1143)
-- Then: swaks --server 127.0.0.1:2525 --to alice@example.org
--  and: curl -u alice:wonderland pop3://127.0.0.1:1110/1
-- STARTTLS and STLS are offered too, with a self-signed certificate made
-- at start (so clients must be told not to verify it, or to trust it):
--       swaks --server 127.0.0.1:2525 --tls --to alice@example.org
--       curl --ssl-reqd -k -u alice:wonderland pop3://127.0.0.1:1110/1
local parley = require "parley"
local pop3, smtp = require "parley.pop3", require "parley.smtp"

local store = assert(require("parley.mail.maildir").open(arg[1] or "mail"))
local users = require("parley.mail.users").from_table{ alice = "wonderland", bob = "builder" }
local cert, key = assert(parley.tls.selfsigned{ cn = "localhost" })
local tls = { cert = cert, key = key }

local function started(proto)
  return function(srv) print(proto .. " server on " .. srv.address) io.stdout:flush() end
end

parley.run(function()
  local servers = {
    smtp.server.serve{ listen = arg[2] or "127.0.0.1:2525", domains = { "example.org" },
      store = store, users = users, tls = tls, signals = false, on_start = started("smtp") },
    pop3.server.serve{ listen = arg[3] or "127.0.0.1:1110",
      store = store, users = users, tls = tls, signals = false, on_start = started("pop3") },
  }
  local has_imap, imap = pcall(require, "parley.imap.server")
  if has_imap then
    servers[3] = imap.serve{ listen = arg[4] or "127.0.0.1:1143",
      store = store, users = users, tls = tls, signals = false, on_start = started("imap") }
  end
  -- one Ctrl-C (or SIGTERM) stops them all
  local function stop() for _, srv in ipairs(servers) do srv:close() end end
  parley.on_signal("INT", stop)
  parley.on_signal("TERM", stop)
end)
-- the certificate was only for this run
os.remove(cert)
os.remove(key)
os.remove((cert:match("^(.*)/")))
