--- `parley serve imap`: the IMAP server from the command line.
-- @module parley.imap.cli
local parley = require "parley"
local cli = require "parley.cli"
local tcli = require "parley.transcript.cli"
local starttls = require "parley.smtp.starttls"

local M = {}

local HELP = [[
usage: parley serve imap --listen 127.0.0.1:1143 --maildir DIR --users FILE
  --listen ADDR        where to listen (default 127.0.0.1:1143)
  --maildir DIR        the store: DIR/<user>/ is each user's Maildir
  --users FILE         passwd-file users (name:{PLAIN}secret or crypt hashes)
  --max-connections N  --timeout S (idle, default 1800)  --auth-delay S
  --max-errors N  --max-literal BYTES
  --tls-cert FILE --tls-key FILE   PEM certificate and key: STARTTLS offered
  --listen-tls ADDR    also listen with implicit TLS (IMAPS, the 993 form)
  --allow-plaintext-auth   accept LOGIN in cleartext from any client
                       (default: over TLS, or in cleartext from loopback;
                       others see LOGINDISABLED)
]]

local SPEC = {
  listen = "string", maildir = "string", users = "string", help = "flag",
  max_connections = "number", timeout = "number", auth_delay = "number",
  max_errors = "number", max_literal = "number",
}
for k, v in pairs(starttls.SERVER_SPEC) do SPEC[k] = v end

--- Builds the server options from parsed command-line options.
-- @return opts, or nil, err
function M.options(o)
  local store, u = require("parley.mail.cli").open(o)
  if not store then return nil, u end
  return starttls.server_options(o, {
    listen = o.listen or "127.0.0.1:1143", store = store, users = u,
    max_connections = o.max_connections, idle_timeout = o.timeout,
    auth_delay = o.auth_delay, max_errors = o.max_errors, max_literal = o.max_literal,
  })
end

function M.serve(argv)
  local rest, tr = tcli.take(argv)
  local o = cli.parse(rest, SPEC)
  if o.help then io.stdout:write(HELP, tcli.HELP) return 0 end
  local opts, err = M.options(o)
  if not opts then io.stderr:write("parley: ", err, "\n") return 2 end
  tcli.merge(opts, tr)
  opts.on_start = function(s)
    io.stdout:write("imap server on ", s.address, "\n")
    if s.tls_address then io.stdout:write("imaps server on ", s.tls_address, "\n") end
    io.stdout:flush()
  end
  local srv, serr
  parley.run(function()
    srv, serr = require("parley.imap.server").serve(opts)
    if srv then
      srv.inner:wait()
      if srv.inner_tls then srv.inner_tls:wait() end
    end
  end)
  if not srv then io.stderr:write("parley: ", tostring(serr), "\n") return 1 end
  return 0
end

return M
