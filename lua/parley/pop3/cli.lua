--- `parley serve pop3`: the POP3 server from the command line.
-- @module parley.pop3.cli
local parley = require "parley"
local cli = require "parley.cli"
local tcli = require "parley.transcript.cli"
local starttls = require "parley.smtp.starttls"

local M = {}

local HELP = [[
usage: parley serve pop3 --listen 127.0.0.1:1110 --maildir DIR --users FILE
  --listen ADDR        where to listen (default 127.0.0.1:1110)
  --maildir DIR        the store: DIR/<user>/ is each user's Maildir
  --users FILE         passwd-file users ({PLAIN} users can also use APOP)
  --hostname NAME      name in the greeting and APOP timestamp
  --uidl uid|name      UIDL from the IMAP UIDs (default) or Maildir names
  --no-apop            no APOP timestamp in the greeting
  --auth-delay S       seconds before answering a failed login (2)
  --max-auth-failures N  --max-connections N  --timeout S
]]

local SPEC = {
  listen = "string", maildir = "string", users = "string", hostname = "string",
  uidl = "string", no_apop = "flag", auth_delay = "number", max_auth_failures = "number",
  max_connections = "number", timeout = "number", help = "flag",
}
for k, v in pairs(starttls.SERVER_SPEC) do SPEC[k] = v end

--- Server options from parsed command-line options (store and users open).
-- @return opts, or nil, err (an incomplete set of TLS options)
function M.options(o, store, users)
  return starttls.server_options(o, {
    listen = o.listen or "127.0.0.1:1110", store = store, users = users,
    hostname = o.hostname, uidl = o.uidl, apop = not o.no_apop,
    auth_delay = o.auth_delay, max_auth_failures = o.max_auth_failures,
    max_connections = o.max_connections, idle_timeout = o.timeout,
  })
end

function M.serve(argv)
  local rest, tr = tcli.take(argv)
  local o = cli.parse(rest, SPEC)
  if o.help then io.stdout:write(HELP, starttls.SERVER_HELP, tcli.HELP) return 0 end
  if o.uidl and o.uidl ~= "uid" and o.uidl ~= "name" then
    io.stderr:write("parley: --uidl is uid or name\n") return 2
  end
  local store, users = require("parley.mail.cli").open(o)
  if not store then io.stderr:write("parley: ", users, "\n") return 2 end
  local opts, oerr = M.options(o, store, users)
  if not opts then io.stderr:write("parley: ", oerr, "\n") return 2 end
  tcli.merge(opts, tr)
  opts.on_start = function(s)
    io.stdout:write("pop3 server on ", s.address, "\n")
    if s.tls_address then io.stdout:write("pop3s server on ", s.tls_address, "\n") end
    io.stdout:flush()
  end
  local srv, err
  parley.run(function()
    srv, err = require("parley.pop3.server").serve(opts)
    if srv then srv:wait() end
  end)
  if not srv then io.stderr:write("parley: ", tostring(err), "\n") return 1 end
  return 0
end

return M
