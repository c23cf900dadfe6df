--- `parley serve mail`: SMTP, submission, POP3 (and IMAP when
-- parley.imap.server is installed) in one process over one Maildir store
-- and one users file.
-- @module parley.mail.cli
local parley = require "parley"
local cli = require "parley.cli"

local M = {}

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
With none of --smtp/--submission/--pop3/--imap: SMTP on 127.0.0.1:2525 and
POP3 on 127.0.0.1:1110. Each server prints "<proto> server on ADDR".
]]

local SPEC = {
  maildir = "string", users = "string", smtp = "string", submission = "string",
  pop3 = "string", imap = "string", domain = "list", aliases = "string",
  hostname = "string", auth_delay = "number", help = "flag",
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
-- `domain` (array), `aliases`, `hostname`, `auth_delay`, `on_start`
-- (function(proto, server) for each server once it listens)
-- @return array of `{ proto =, server = }`, or nil, err (servers already
-- started are closed again)
function M.start(o)
  local store, users = o.store, o.users
  if type(users) == "string" or type(store) ~= "table" then
    store, users = require("parley.pop3.cli").open(o)
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
  local want = { smtp = o.smtp, submission = o.submission, pop3 = o.pop3, imap = o.imap }
  if not (o.smtp or o.submission or o.pop3 or o.imap) then
    want.smtp, want.pop3 = "127.0.0.1:2525", "127.0.0.1:1110"
  end
  local started = {}
  local function fail(err)
    for _, s in ipairs(started) do s.server:close(0) end
    return nil, err
  end
  local function announce(proto)
    return function(srv) if o.on_start then o.on_start(proto, srv) end end
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
        srv, err = require("parley.smtp.server").serve{
          listen = addr, domains = domains, hostname = o.hostname, store = store,
          users = users, aliases = aliases, submission = proto == "submission",
          auth_delay = o.auth_delay, signals = false, on_start = announce(proto),
          on_delivered = want.imap and on_delivered or nil,
        }
      elseif proto == "pop3" then
        srv, err = require("parley.pop3.server").serve{
          listen = addr, store = store, users = users, hostname = o.hostname,
          auth_delay = o.auth_delay, signals = false, on_start = announce(proto),
        }
      else
        local ok, imap = pcall(require, "parley.imap.server")
        if not ok or type(imap) ~= "table" or type(imap.serve) ~= "function" then
          return fail("--imap: the IMAP server (parley.imap.server) is not available"
            .. (ok and "" or ": " .. tostring(imap):match("^[^\n]*")))
        end
        srv, err = imap.serve{
          listen = addr, store = store, users = users, hostname = o.hostname,
          auth_delay = o.auth_delay, signals = false, on_start = announce(proto),
        }
        imapsrv = srv
      end
      if not srv then return fail(proto .. " on " .. addr .. ": " .. tostring(err)) end
      started[#started + 1] = { proto = proto, server = srv }
    end
  end
  return started
end

function M.serve(argv)
  local o = cli.parse(argv, SPEC)
  if o.help then io.stdout:write(HELP) return 0 end
  if not o.maildir or not o.users then
    io.stderr:write("parley: --maildir DIR and --users FILE are required\n")
    return 2
  end
  o.on_start = function(proto, srv)
    io.stdout:write(proto, " server on ", srv.address, "\n")
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
  if not started then io.stderr:write("parley: ", tostring(err), "\n") return 1 end
  return 0
end

return M
