--- `parley serve mail`: SMTP, submission, POP3 (and IMAP when
-- parley.imap.server is installed) in one process over one Maildir store
-- and one users file.
-- @module parley.mail.cli
local parley = require "parley"
local cli = require "parley.cli"
local tcli = require "parley.transcript.cli"

local M = {}

--- Opens the store and the users file that `--maildir` and `--users`
-- name (every mail server's CLI: smtp, pop3, imap, mail).
-- @tparam table o parsed options with `maildir` and `users`
-- @return store, users; or nil, err (a message for the command line)
function M.open(o)
  if not o.maildir then return nil, "--maildir DIR is required" end
  if not o.users then return nil, "--users FILE is required" end
  local users, err = require("parley.mail.users").load(o.users)
  if not users then return nil, "users file: " .. tostring(err) end
  local store
  store, err = require("parley.mail.maildir").open(o.maildir)
  if not store then return nil, "maildir: " .. tostring(err) end
  return store, users
end

local HELP = [[
usage: parley serve mail --maildir DIR --users FILE [--smtp ADDR]
         [--submission ADDR] [--pop3 ADDR] [--imap ADDR]
  --maildir DIR        the store: DIR/<user>/ is each user's Maildir
  --users FILE         passwd-file users (logins and local mailboxes)
  --smtp ADDR          SMTP (MTA: mail for local users) on ADDR
  --submission ADDR    SMTP submission (AUTH required, RFC 6409) on ADDR
  --pop3 ADDR          POP3 on ADDR
  --imap ADDR          IMAP on ADDR (needs parley.imap.server)
  --domain D           a local domain (repeatable; default: the host name,
                       localhost and the domains of user@domain users)
  --aliases FILE       /etc/aliases-style file for SMTP
  --hostname NAME      name in greetings
  --auth-delay S       seconds before answering a failed login (2)
  --tls-cert FILE --tls-key FILE
                       PEM certificate and key: STARTTLS (SMTP, IMAP) and
                       STLS (POP3) offered on the plain ports
  --smtps ADDR         implicit TLS for submission (465 form, RFC 8314) on
                       the submission server (or the SMTP one without it)
  --pop3s ADDR         POP3S (995 form) on the POP3 server
  --imaps ADDR         IMAPS (993 form) on the IMAP server
  --allow-plaintext-auth  accept passwords in cleartext from any client
                       (default: over TLS, or in cleartext from loopback)
With none of --smtp/--submission/--pop3/--imap: SMTP on 127.0.0.1:2525 and
POP3 on 127.0.0.1:1110. Each server prints "<proto> server on ADDR" (and
"<proto>s server on ADDR" for its implicit-TLS port).
]]

local SPEC = {
  maildir = "string", users = "string", smtp = "string", submission = "string",
  pop3 = "string", imap = "string", domain = "list", aliases = "string",
  hostname = "string", auth_delay = "number", help = "flag",
  tls_cert = "string", tls_key = "string", smtps = "string", pop3s = "string",
  imaps = "string", allow_plaintext_auth = "flag",
}

-- the local domains when none are given
local function default_domains(users, hostname)
  local seen, out = {}, {}
  local function add(d)
    d = d:lower()
    if not seen[d] then seen[d] = true; out[#out + 1] = d end
  end
  if hostname then add(hostname) end
  add("localhost")
  for _, n in ipairs(users:names()) do
    local d = n:match("@([^@]+)$")
    if d then add(d) end
  end
  return out
end

--- Starts the servers inside a running task (parley.run).
-- @tparam table o parsed options: `maildir`, `users` (paths) or `store`,
-- `users` (objects), `smtp`, `submission`, `pop3`, `imap` (addresses),
-- `domain` (array), `aliases`, `hostname`, `auth_delay`, `auth_tracker`
-- (a parley.authdelay tracker; default one shared by the servers), `tls_cert` and
-- `tls_key` (STARTTLS/STLS on every server), `smtps`, `pop3s`, `imaps`
-- (implicit-TLS addresses: `listen_tls` of the submission (else SMTP),
-- POP3 and IMAP servers), `allow_plaintext_auth`, `transcript` (a
-- parley.transcript recorder shared by every server), `on_start`
-- (function(proto, server) for each server once it listens)
-- @return array of `{ proto =, server = }`, or nil, err (servers already
-- started are closed again)
function M.start(o)
  local store, users = o.store, o.users
  if type(users) == "string" or type(store) ~= "table" then
    store, users = M.open(o)
    if not store then return nil, users end
  end
  store:clean_tmp()
  local hostname = o.hostname or require("parley.core").fs.gethostname()
  local domains = o.domain or default_domains(users, hostname)
  local aliases
  if o.aliases then
    local a, err = require("parley.mail.aliases").load(o.aliases, { users = users, domains = domains })
    if not a then return nil, "aliases file: " .. tostring(err) end
    aliases = a
  end
  local function announce(proto)
    return function(srv) if o.on_start then o.on_start(proto, srv) end end
  end
  local want = { smtp = o.smtp, submission = o.submission, pop3 = o.pop3, imap = o.imap }
  if not (o.smtp or o.submission or o.pop3 or o.imap) then
    want.smtp, want.pop3 = "127.0.0.1:2525", "127.0.0.1:1110"
  end
  if (o.tls_cert == nil) ~= (o.tls_key == nil) then return nil, "--tls-cert and --tls-key go together" end
  local tls = o.tls_cert and { cert = o.tls_cert, key = o.tls_key } or nil
  -- the implicit-TLS port each server also listens on
  local listen_tls = { submission = o.submission and o.smtps, smtp = not o.submission and o.smtps or nil,
    pop3 = o.pop3s, imap = o.imaps }
  for proto, flag in pairs { smtp = "smtps", pop3 = "pop3s", imap = "imaps" } do
    if o[flag] and not tls then return nil, "--" .. flag .. " needs --tls-cert and --tls-key" end
    if o[flag] and not want[proto] and not (proto == "smtp" and want.submission) then
      return nil, "--" .. flag .. " needs --" .. proto .. " ADDR"
    end
  end
  -- options every server takes the same way
  local common = { hostname = o.hostname, store = store, users = users, auth_delay = o.auth_delay,
    signals = false, tls = tls, allow_plaintext_auth = o.allow_plaintext_auth or nil,
    transcript = o.transcript,
    -- one count of failed logins per address for SMTP AUTH, POP3 and IMAP
    auth_tracker = o.auth_tracker or require("parley.authdelay").new() }
  local function with(t, proto)
    for k, v in pairs(common) do t[k] = v end
    t.listen, t.listen_tls, t.on_start = want[proto], listen_tls[proto] or nil, announce(proto)
    return t
  end
  local started = {}
  local function fail(err)
    for _, s in ipairs(started) do s.server:close(0) end
    return nil, err
  end
  -- IMAP starts after SMTP: the hook finds it through this upvalue. Mail
  -- delivered here wakes this process's IDLE sessions at once instead of
  -- at their next Maildir poll.
  local imapsrv
  local function on_delivered(_, tx, reply)
    if imapsrv and reply.code // 100 == 2 then
      for user in pairs(tx.locals) do imapsrv:changed(user) end
    end
  end
  for _, proto in ipairs { "smtp", "submission", "pop3", "imap" } do
    local addr = want[proto]
    if addr then
      local srv, err
      if proto == "smtp" or proto == "submission" then
        srv, err = require("parley.smtp.server").serve(with({
          domains = domains, aliases = aliases, submission = proto == "submission",
          on_delivered = want.imap and on_delivered or nil,
        }, proto))
      elseif proto == "pop3" then
        srv, err = require("parley.pop3.server").serve(with({}, proto))
      else
        local ok, imap = pcall(require, "parley.imap.server")
        if not ok or type(imap) ~= "table" or type(imap.serve) ~= "function" then
          return fail("--imap: the IMAP server (parley.imap.server) is not available"
            .. (ok and "" or ": " .. tostring(imap):match("^[^\n]*")))
        end
        srv, err = imap.serve(with({}, proto))
        imapsrv = srv
      end
      if not srv then return fail(proto .. " on " .. addr .. ": " .. tostring(err)) end
      started[#started + 1] = { proto = proto, server = srv }
    end
  end
  return started
end

function M.serve(argv)
  local rest, tr = tcli.take(argv)
  local o = cli.parse(rest, SPEC)
  if o.help then io.stdout:write(HELP, tcli.HELP) return 0 end
  if not o.maildir or not o.users then
    io.stderr:write("parley: --maildir DIR and --users FILE are required\n")
    return 2
  end
  if tr.transcript then
    -- one recorder: connection numbers run across every server
    local rec, rerr = require("parley.transcript").new(tr.transcript,
      { full = tr.transcript_full, secrets = tr.transcript_secrets })
    if not rec then io.stderr:write("parley: transcript: ", tostring(rerr), "\n") return 1 end
    o.transcript = rec
  end
  o.on_start = function(proto, srv)
    io.stdout:write(proto, " server on ", srv.address, "\n")
    if srv.tls_address then io.stdout:write(proto, "s server on ", srv.tls_address, "\n") end
    io.stdout:flush()
  end
  local started, err
  parley.run(function()
    started, err = M.start(o)
    if not started then return end
    local done = parley.cond()
    local function stop()
      parley.on_signal("INT", nil)
      parley.on_signal("TERM", nil)
      for _, s in ipairs(started) do s.server:close() end
      done:broadcast()
    end
    parley.on_signal("INT", stop)
    parley.on_signal("TERM", stop)
    done:wait()
  end)
  if o.transcript then o.transcript:close() end
  if not started then io.stderr:write("parley: ", tostring(err), "\n") return 1 end
  return 0
end

return M
