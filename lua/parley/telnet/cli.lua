--- `parley serve telnet`: the Telnet server from the command line.
-- @module parley.telnet.cli
local cli = require "parley.cli"
local tcli = require "parley.transcript.cli"
local server = require "parley.telnet.server"

local M = {}

local HELP = [[
usage: parley serve telnet --listen 127.0.0.1:2323 [--users FILE] [--app NAME | --shell]
  --listen ADDR        where to listen (default 127.0.0.1:2323)
  --users FILE         ask for a login checked against FILE (name:{PLAIN}secret
                       or name:$6$crypt-hash, Dovecot passwd-file style)
  --app NAME           the terminal app to run: %s (default menu)
  --shell              give each authenticated user a login shell on a pty, as
                       the system account of the same name (needs --users).
                       CLEARTEXT: Telnet sends passwords and the session
                       unencrypted. Use it only in a lab (loopback, isolated net).
  --shell-as-self      with --shell: run shells as the server's own user instead
  --idle-timeout S     hang up after S seconds without input (default 600)
  --login-delay S      seconds a failed login costs (default 2)
  --max-connections N  (default 1000)
  --banner TEXT        a line shown to every client first
]]

function M.serve(argv)
  local rest, tr = tcli.take(argv)
  local o = cli.parse(rest, {
    listen = "string", users = "string", app = "string", shell = "flag",
    shell_as_self = "flag", idle_timeout = "number", login_delay = "number",
    max_connections = "number", banner = "string", help = "flag",
  })
  if o.help then
    local names = {}
    for name in pairs(server.apps()) do names[#names + 1] = name end
    table.sort(names)
    io.stdout:write(HELP:format(table.concat(names, ", ")), tcli.HELP)
    return 0
  end
  if o.shell and o.app then
    io.stderr:write("parley: --app and --shell exclude each other\n")
    return 2
  end
  if o.shell and not o.users then
    io.stderr:write("parley: --shell needs --users FILE (a login)\n")
    return 2
  end
  if o[1] then
    io.stderr:write("parley: unexpected argument '", o[1], "'\n")
    return 2
  end
  local ok, srv, err = pcall(server.serve, {
    listen = o.listen or "127.0.0.1:2323",
    transcript = tr.transcript, transcript_full = tr.transcript_full, transcript_secrets = tr.transcript_secrets,
    users = o.users,
    app = o.app or "menu",
    shell = o.shell and { as = o.shell_as_self and "self" or "account" } or nil,
    idle_timeout = o.idle_timeout,
    login_delay = o.login_delay,
    max_connections = o.max_connections,
    banner = o.banner,
    on_start = function(s)
      local what = o.shell and "shell (cleartext: lab use only)" or ("app " .. (o.app or "menu"))
      io.stdout:write("telnet server on ", s.address, " (", what, ")\n")
      io.stdout:flush()
    end,
  })
  if not ok then
    io.stderr:write("parley: ", (tostring(srv):gsub("^[^:]*%.lua:%d+: ", "")), "\n")
    return 2
  end
  if not srv then
    io.stderr:write("parley: ", tostring(err), "\n")
    return 1
  end
  return 0
end

return M
