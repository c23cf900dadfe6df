--- `parley serve ftp`: an FTP server on a directory.
-- @module parley.ftp.cli
local server = require "parley.ftp.server"
local cli = require "parley.cli"
local tcli = require "parley.transcript.cli"

local M = {}

local HELP = [[
usage: parley serve ftp --listen 127.0.0.1:2121 --root DIR [--anonymous]
                        [--users FILE] [--pasv-ports 40000-40100]
                        [--pasv-address ADDR]
  --root DIR          directory served to anonymous users and to users
                      without a root of their own (required)
  --anonymous         allow USER anonymous (read-only)
  --anonymous-write   let anonymous users upload, delete, mkdir and rename
  --users FILE        the users file every parley server shares (Dovecot
                      passwd-file): name:{PLAIN}secret:uid:gid::home::ftp_perms=rwdmn
                      (or a crypt(3) hash for the password). The FTP root is
                      home: under --root when relative, --root when empty.
                      ftp_perms letters: r read, w write, d delete, m mkdir,
                      n rename (default rwdmn)
  --pasv-ports LO-HI  passive data ports (default: any free port)
  --pasv-address ADDR address announced in 227 replies (NAT)
  --xferlog FILE      append an xferlog(5) line per transfer
  --rate BYTES        bandwidth limit per session, bytes per second
  --max-per-ip N      control connections per client address (20)
  --idle-timeout S    seconds without a command (300)
  --login-delay S     seconds before a failed login is answered (1)
]]

function M.serve(argv)
  local rest, tr = tcli.take(argv)
  local o = cli.parse(rest, { listen = "string", root = "string", anonymous = "flag",
    anonymous_write = "flag", users = "string", pasv_ports = "string", pasv_address = "string",
    xferlog = "string", rate = "number", max_per_ip = "number", idle_timeout = "number",
    login_delay = "number", help = "flag" })
  if o.help then io.stdout:write(HELP, tcli.HELP) return 0 end
  if not o.root then
    io.stderr:write("parley: serve ftp needs --root DIR\n", HELP)
    return 2
  end
  if o.pasv_ports and not o.pasv_ports:match("^%d+%-%d+$") then
    io.stderr:write("parley: --pasv-ports wants LO-HI, e.g. 40000-40100\n")
    return 2
  end
  local srv, err = server.serve{
    listen = o.listen or "127.0.0.1:2121",
    transcript = tr.transcript, transcript_full = tr.transcript_full, transcript_secrets = tr.transcript_secrets,
    root = o.root,
    anonymous = o.anonymous or false,
    anonymous_perms = o.anonymous_write and "rwdmn" or "r",
    users_file = o.users,
    pasv_ports = o.pasv_ports,
    pasv_address = o.pasv_address,
    xferlog = o.xferlog,
    rate = o.rate,
    max_per_ip = o.max_per_ip,
    idle_timeout = o.idle_timeout,
    login_delay = o.login_delay,
    on_start = function(s)
      io.stdout:write("ftp server on ", s.address, "\n")
      io.stdout:flush()
    end,
  }
  if not srv then io.stderr:write("parley: ", tostring(err), "\n") return 1 end
  return 0
end

return M
