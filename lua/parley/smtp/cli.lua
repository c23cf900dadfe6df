--- `parley serve smtp`: the SMTP server from the command line.
-- @module parley.smtp.cli
local parley = require "parley"
local cli = require "parley.cli"
local tcli = require "parley.transcript.cli"
local server = require "parley.smtp.server"
local starttls = require "parley.smtp.starttls"

local M = {}

local HELP = [[
usage: parley serve smtp --listen 127.0.0.1:2525 --maildir DIR --domain D
         [--users FILE] [--aliases FILE] [--route DOMAIN=HOST:PORT] [--sink]
  --listen ADDR            where to listen (default 127.0.0.1:2525)
  --maildir DIR            deliver to DIR/<user>/ (Maildir)
  --domain D               a local domain (repeatable; the first is the hostname)
  --hostname NAME          name in the greeting (default: the first domain)
  --users FILE             passwd-file users (AUTH and local mailboxes)
  --aliases FILE           /etc/aliases-style file
  --route DOMAIN=HOST:PORT relay mail for DOMAIN there (repeatable)
  --smarthost HOST:PORT    relay mail for every other remote domain there
  --queue DIR              relay queue directory (default DIR/.parley-queue)
  --relay-net CIDR         clients allowed to relay without AUTH (repeatable)
  --submission             require AUTH before MAIL (MSA, RFC 6409)
  --sink                   accept and discard every message (load tests)
  --max-size N  --max-recipients N  --max-errors N  --max-connections N  --timeout S
  --data-timeout S  --normalize-bare (turn bare CR/LF into CRLF instead of 550)
  --vrfy  --expn  --auth-delay S
]]

local SPEC = {
  listen = "string", maildir = "string", domain = "list", hostname = "string",
  users = "string", aliases = "string", route = "list", smarthost = "string",
  queue = "string", relay_net = "list", submission = "flag",
  sink = "flag", max_size = "number", max_recipients = "number", max_errors = "number",
  timeout = "number", data_timeout = "number", normalize_bare = "flag", vrfy = "flag",
  expn = "flag", auth_delay = "number", help = "flag", max_connections = "number",
}
for k, v in pairs(starttls.SERVER_SPEC) do SPEC[k] = v end

--- Builds the server options from parsed command-line options.
-- @return opts, or nil, err
function M.options(o)
  local opts = {
    listen = o.listen or "127.0.0.1:2525",
    domains = o.domain, hostname = o.hostname, sink = o.sink,
    submission = o.submission,
    relay_networks = o.relay_net, max_size = o.max_size, max_recipients = o.max_recipients,
    max_errors = o.max_errors, idle_timeout = o.timeout, data_timeout = o.data_timeout,
    bare = o.normalize_bare and "normalize" or "reject", vrfy = o.vrfy, expn = o.expn,
    auth_delay = o.auth_delay, max_connections = o.max_connections,
  }
  if not o.sink and not o.maildir then return nil, "--maildir DIR (or --sink) is required" end
  local _, terr = starttls.server_options(o, opts)
  if terr then return nil, terr end
  if not o.sink and not o.domain then return nil, "--domain D is required" end
  if o.users then
    local u, err = require("parley.mail.users").load(o.users)
    if not u then return nil, "users file: " .. tostring(err) end
    opts.users = u
  end
  if o.aliases then
    local a, err = require("parley.mail.aliases").load(o.aliases,
      { users = opts.users, domains = o.domain })
    if not a then return nil, "aliases file: " .. tostring(err) end
    opts.aliases = a
  end
  if o.maildir then
    local maildir = require "parley.mail.maildir"
    local store, err = maildir.open(o.maildir)
    if not store then return nil, "maildir: " .. tostring(err) end
    if store.clean_tmp then store:clean_tmp() end
    opts.store = store
  end
  local route
  for _, r in ipairs(o.route or {}) do
    local d, hp = r:match("^([^=]+)=(.+:%d+)$")
    if not d then return nil, "--route wants DOMAIN=HOST:PORT, got " .. r end
    route = route or {}
    route[d:lower()] = hp
  end
  if (route or o.smarthost or o.queue) and not o.sink then
    local queue = require "parley.smtp.queue"
    local dset = {}
    for _, d in ipairs(o.domain or {}) do dset[d:lower()] = true end
    opts.queue = queue.open(o.queue or (o.maildir .. "/.parley-queue"), {
      route = route, smarthost = o.smarthost, hostname = o.hostname or (o.domain and o.domain[1]),
      is_local = function(d) return dset[d:lower()] end,
      deliver_local = function(addr, msg)
        local user = addr:match("^(.*)@") or addr
        if opts.users and not opts.users:exists(user) and opts.users:exists(addr) then user = addr end
        return opts.store:deliver(user, msg)
      end,
    })
  end
  return opts
end

function M.serve(argv)
  local rest, tr = tcli.take(argv)
  local o = cli.parse(rest, SPEC)
  if o.help then io.stdout:write(HELP, starttls.SERVER_HELP, tcli.HELP) return 0 end
  local opts, err = M.options(o)
  if not opts then io.stderr:write("parley: ", err, "\n") return 2 end
  tcli.merge(opts, tr)
  opts.on_start = function(s)
    if opts.queue then opts.queue:start() end
    io.stdout:write("smtp server on ", s.address, opts.sink and " (sink)" or "", "\n")
    if s.tls_address then io.stdout:write("smtps server on ", s.tls_address, "\n") end
    io.stdout:flush()
  end
  local srv, serr
  parley.run(function()
    srv, serr = server.serve(opts)
    if srv then
      srv.inner:wait()
      if opts.queue then opts.queue:stop() end
    end
  end)
  if not srv then io.stderr:write("parley: ", tostring(serr), "\n") return 1 end
  return 0
end

return M
