--- parley.lab: every parley server at once, on loopback, over one lab
-- directory: SMTP, submission, POP3, IMAP, FTP, HTTP and Telnet, and
-- TLS in both forms with a self-signed certificate made in the lab
-- directory: STARTTLS/STLS/AUTH TLS on the plain mail and FTP ports, and
-- implicit-TLS ports beside them (smtps, pop3s, imaps, ftps, https).
-- Cleartext passwords stay accepted from loopback, so the tour's
-- sessions by hand still work.
--
--     local lab = require "parley.lab"
--     parley.run(function()
--       local l = assert(lab.start{ ports = "auto" })
--       print(l.user, l.password, l.urls.smtp)   --> strategos  ...  smtp://127.0.0.1:40123
--       l:close()                                -- goodbyes, then the temp dir goes
--     end)
--
-- The servers are the ones `parley serve mail|ftp|http|telnet` start
-- (`parley.mail.cli.start`, `parley.ftp.server`, `parley.http.server`,
-- `parley.telnet.server`), on the data `parley.lab.data` prepares: one
-- users file for all of them, one Maildir for SMTP, POP3 and IMAP.
-- @module parley.lab
local parley = require "parley"
local fs = require("parley.core").fs
local data = require "parley.lab.data"
local users_mod = require "parley.mail.users"
local maildir = require "parley.mail.maildir"

local M = {}

--- The services in the order they start and are listed.
M.SERVICES = { "smtp", "submission", "pop3", "imap", "ftp", "http", "telnet" }

--- Each service's port: the well-known one moved above 1024 (25 -> 2525,
-- 587 -> 2587, 110 -> 1110, 143 -> 1143, 21 -> 2121, 80 -> 8080,
-- 23 -> 2323).
M.PORTS = { smtp = 2525, submission = 2587, pop3 = 1110, imap = 1143, ftp = 2121,
            http = 8080, telnet = 2323 }

--- The implicit-TLS ports (RFC 8314, RFC 4217), each a second listener
-- of a plain service's server: smtps (465 -> 2465, on submission), pop3s
-- (995 -> 2995), imaps (993 -> 2993), ftps (990 -> 2990), https (443 -> 8443).
M.TLS_SERVICES = { "smtps", "pop3s", "imaps", "ftps", "https" }
M.TLS_PORTS = { smtps = 2465, pop3s = 2995, imaps = 2993, ftps = 2990, https = 8443 }
-- the plain service whose server also listens on each TLS port
local TLS_OF = { submission = "smtps", pop3 = "pop3s", imap = "imaps", ftp = "ftps", http = "https" }

-- The URL scheme of each service (submission is SMTP).
local SCHEME = { smtp = "smtp", submission = "smtp", pop3 = "pop3", imap = "imap", ftp = "ftp",
                 http = "http", telnet = "telnet", smtps = "smtps", pop3s = "pop3s", imaps = "imaps",
                 ftps = "ftps", https = "https" }

--- Seconds sessions get to finish when the lab stops.
M.GRACE = 3

local Lab = {}
Lab.__index = Lab
Lab.__name = "parley.lab"

--- Whether `host` is a loopback address (127.0.0.0/8, ::1, localhost).
-- @tparam string host
-- @treturn boolean
function M.is_loopback(host)
  if type(host) ~= "string" then error("host must be a string", 2) end
  return host == "localhost" or host == "::1" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- A fresh private directory under $TMPDIR (or /tmp).
local function tempdir()
  local base = os.getenv("TMPDIR") or "/tmp"
  local alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
  local fh = assert(io.open("/dev/urandom", "rb"))
  for _ = 1, 10 do
    local bytes = fh:read(8)
    local name = bytes:gsub(".", function(c)
      local i = c:byte() % #alphabet + 1
      return alphabet:sub(i, i)
    end)
    local path = base .. "/parley-lab-" .. name
    if fs.mkdir(path, tonumber("700", 8)) then
      fh:close()
      return path
    end
  end
  fh:close()
  return nil, "could not create a directory under " .. base
end

-- Removes a directory tree, never following a symbolic link.
local function remove_tree(path)
  local st = fs.lstat(path)
  if not st then return end
  if st.type == "directory" then
    for _, name in ipairs(fs.listdir(path) or {}) do remove_tree(path .. "/" .. name) end
    fs.rmdir(path)
  else
    fs.unlink(path)
  end
end

local function address(host, port)
  return (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port
end

-- The port each service asks for.
local function wanted_ports(o)
  local ports = {}
  for _, list in ipairs { M.SERVICES, M.TLS_SERVICES } do
    for _, name in ipairs(list) do
      if o.ports == "auto" then
        ports[name] = 0
      else
        ports[name] = (M.PORTS[name] or M.TLS_PORTS[name]) + (o.port_offset or 0)
        if ports[name] < 1 or ports[name] > 65535 then
          return nil, ("port offset %d puts %s on port %d"):format(o.port_offset, name, ports[name])
        end
      end
    end
  end
  return ports
end

-- Starts the mail servers the way `parley serve mail` does; then FTP,
-- HTTP and Telnet. Adds each to lab.servers; returns true or nil, err.
local function start_servers(lab, d, ports, announce)
  local host = lab.host
  local watch = lab.watch   -- one recorder for every server, or nil
  local mail, err = require("parley.mail.cli").start{
    store = lab.store, users = lab.users,
    smtp = address(host, ports.smtp), submission = address(host, ports.submission),
    pop3 = address(host, ports.pop3), imap = address(host, ports.imap),
    tls_cert = d.tls_cert, tls_key = d.tls_key, smtps = address(host, ports.smtps),
    pop3s = address(host, ports.pop3s), imaps = address(host, ports.imaps),
    domain = { data.DOMAIN, "localhost" }, hostname = data.DOMAIN,
    on_start = announce, transcript = watch,
  }
  if not mail then return nil, err end
  for _, s in ipairs(mail) do lab.servers[s.proto] = s.server end

  local ftp
  ftp, err = require("parley.ftp.server").serve{
    listen = address(host, ports.ftp), root = d.home, anonymous = true,
    anonymous_root = d.ftp, anonymous_perms = "r", users = lab.users,
    xferlog = d.log .. "/xferlog", signals = false, transcript = watch,
    tls = { cert = d.tls_cert, key = d.tls_key }, listen_tls = address(host, ports.ftps),
    on_start = function(s) announce("ftp", s) end,
  }
  if not ftp then return nil, "ftp on " .. address(host, ports.ftp) .. ": " .. tostring(err) end
  lab.servers.ftp = ftp

  local log
  log, err = io.open(d.log .. "/access.log", "a")
  if not log then return nil, err end
  log:setvbuf("line")
  lab.access_log = log
  local http = require("parley.http.server").new{ access_log = log }
  http:static("/", d.www)
  local web
  web, err = http:serve{ listen = address(host, ports.http), signals = false, transcript = watch,
    tls = { cert = d.tls_cert, key = d.tls_key }, listen_tls = address(host, ports.https),
    on_start = function(s) announce("http", s) end }
  if not web then return nil, "http on " .. address(host, ports.http) .. ": " .. tostring(err) end
  lab.servers.http = web

  local telnet
  telnet, err = require("parley.telnet.server").serve{
    listen = address(host, ports.telnet), users = lab.users, app = "menu",
    banner = "parley lab: log in as " .. data.USER, signals = false, transcript = watch,
    on_start = function(s) announce("telnet", s) end,
  }
  if not telnet then return nil, "telnet on " .. address(host, ports.telnet) .. ": " .. tostring(err) end
  lab.servers.telnet = telnet
  return true
end

--- Prepares the lab directory and starts every server. Call inside a
-- task (`parley.run`).
-- @tparam[opt] table opts `dir` (kept; default a fresh temporary
-- directory, removed by `close`), `host` ("127.0.0.1"), `public` (allow a
-- non-loopback host), `port_offset` (added to each of `PORTS`), `ports`
-- ("auto": the kernel picks each port), `on_start` (function(name,
-- server) as each server listens), `watch` (a parley.transcript recorder
-- or target: every server records every connection there, as the server
-- sees it — what a GUI client really says; secrets masked)
-- @return the lab: `dir`, `temp` (whether `close` removes dir), `host`,
-- `user`, `password` (nil if the users file holds a hash), `domain`,
-- `ca` (the self-signed certificate: what a TLS client should trust),
-- `paths` (see `parley.lab.data.prepare`; `tls_cert`, `tls_key` too),
-- `servers` (name -> server), `ports` and `urls` (name -> the real port,
-- "smtp://127.0.0.1:2525" ..., the TLS ones "smtps://127.0.0.1:2465"),
-- or nil, err
function M.start(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("lab.start expects an options table", 2) end
  if opts.ports ~= nil and opts.ports ~= "auto" then error("ports must be \"auto\"", 2) end
  if opts.port_offset ~= nil and math.type(opts.port_offset) ~= "integer" then
    error("port_offset must be an integer", 2)
  end
  local host = opts.host or "127.0.0.1"
  if not M.is_loopback(host) and not opts.public then
    return nil, host .. " is not a loopback address: the lab's plain ports speak cleartext "
      .. "(FTP and Telnet passwords included); pass --public to listen there anyway"
  end
  local ports, err = wanted_ports(opts)
  if not ports then return nil, err end
  local dir, temp = opts.dir, false
  if not dir then
    dir, err = tempdir()
    if not dir then return nil, err end
    temp = true
  end
  local lab = setmetatable({ dir = dir, temp = temp, host = host, user = data.USER,
    domain = data.DOMAIN, servers = {}, ports = {}, urls = {} }, Lab)
  if opts.watch then
    local rec, own = require("parley.transcript").recorder(opts.watch)
    if not rec then
      if temp then remove_tree(dir) end
      return nil, "watch: " .. tostring(own)
    end
    lab.watch, lab.watch_own = rec, own and rec or nil
  end
  local d
  d, err = data.prepare(dir)
  if d then
    d.tls_cert, d.tls_key = data.certificate(dir, host)
    if not d.tls_cert then d, err = nil, "certificate: " .. tostring(d.tls_key) end
  end
  if d then
    lab.paths, lab.password, lab.ca = d, d.password, d.tls_cert
    lab.users, err = users_mod.load(d.users)
    if lab.users then lab.store, err = maildir.open(d.mail) end
  end
  local ok = lab.store ~= nil
  if ok then
    local function listed(name, port)
      lab.ports[name] = port
      lab.urls[name] = ("%s://%s"):format(SCHEME[name], address(host, port))
    end
    local done, r, rerr = pcall(start_servers, lab, d, ports, function(name, srv)
      listed(name, srv.port)
      if TLS_OF[name] and srv.tls_port then listed(TLS_OF[name], srv.tls_port) end
      if opts.on_start then opts.on_start(name, srv) end
    end)
    if not done then   -- something raised: stop what started, then raise
      lab:close(0)
      error(r, 0)
    end
    ok, err = r, rerr
  end
  if not ok then
    lab:close(0)
    if err and err:find("address already in use", 1, true) then
      err = err .. " (another lab running? try --port-offset 10000 or --ports auto)"
    end
    return nil, err
  end
  return lab
end

--- What a scenario of the tour gets as `s.vars`: the URLs (`smtp`,
-- `submission`, `pop3`, `imap`, `ftp`, `http`, `telnet`, `smtps`,
-- `pop3s`, `imaps`, `ftps`, `https`), `host`, `ports` (name -> port), `user`, `password`,
-- `domain`, `dir`, `ca` (the certificate to trust: `c:starttls()` and
-- the TLS URLs use it), `maildir` (strategos's Maildir) and `store` (the
-- `parley.mail.maildir` store).
-- @treturn table
function Lab:vars()
  local v = { host = self.host, ports = self.ports, user = self.user, password = self.password,
    domain = self.domain, dir = self.dir, store = self.store, ca = self.ca,
    maildir = self.store and self.store:path(self.user) }
  for name, url in pairs(self.urls) do v[name] = url end
  return v
end

--- Stops every server (SMTP, POP3 and IMAP say goodbye to idle
-- sessions: 421, -ERR, BYE), each at the same time, giving busy sessions
-- `grace` seconds; then removes the directory if the lab made it.
-- @tparam[opt] number grace seconds (default `GRACE`)
function Lab:close(grace)
  if self.closed then return true end
  self.closed = true
  grace = grace or M.GRACE
  local tasks = {}
  for _, name in ipairs(M.SERVICES) do
    local srv = self.servers[name]
    if srv then tasks[#tasks + 1] = parley.spawn(srv.close, srv, grace) end
  end
  for _, t in ipairs(tasks) do t:join(grace + 2) end
  if self.access_log then self.access_log:close() end
  if self.watch_own then self.watch_own:close() end
  if self.temp then remove_tree(self.dir) end
  return true
end

return M
