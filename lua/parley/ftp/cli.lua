--- `parley serve ftp`: an FTP server on a directory.
-- @module parley.ftp.cli
local server = require "parley.ftp.server"
local cli = require "parley.cli"
local tcli = require "parley.transcript.cli"
local starttls = require "parley.smtp.starttls"

local M = {}

local HELP = [[
usage: parley serve ftp --listen 127.0.0.1:2121 --root DIR [--anonymous]
                        [--users FILE] [--pasv-ports 40000-40100]
                        [--pasv-address ADDR] [--tls-cert FILE --tls-key FILE]
                        [--listen-tls ADDR]
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
  --tls-cert FILE  --tls-key FILE
                      PEM certificate and key: AUTH TLS, PBSZ and PROT offered
                      (RFC 4217); PROT P data connections must resume the
                      control connection's TLS session
  --listen-tls ADDR   also listen with implicit TLS (the port 990 form)
  --allow-plaintext-auth
                      accept USER/PASS in cleartext from any client (default:
                      over TLS, or in cleartext from loopback; anonymous
                      logins are always allowed with --anonymous)
  --no-session-reuse  accept PROT P data connections that do not resume the
                      control connection's TLS session
]]

function M.serve(argv)
  local rest, tr = tcli.take(argv)
  local spec = { listen = "string", root = "string", anonymous = "flag",
    anonymous_write = "flag", users = "string", pasv_ports = "string", pasv_address = "string",
    xferlog = "string", rate = "number", max_per_ip = "number", idle_timeout = "number",
    login_delay = "number", no_session_reuse = "flag", help = "flag" }
  for k, v in pairs(starttls.SERVER_SPEC) do spec[k] = v end
  local o = cli.parse(rest, spec)
  if o.help then io.stdout:write(HELP, tcli.HELP) return 0 end
  if not o.root then
    io.stderr:write("parley: serve ftp needs --root DIR (parley serve ftp --help)\n")
    return 2
  end
  if o.pasv_ports and not o.pasv_ports:match("^%d+%-%d+$") then
    io.stderr:write("parley: --pasv-ports wants LO-HI, e.g. 40000-40100\n")
    return 2
  end
  local opts, terr = starttls.server_options(o, {
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
    require_session_reuse = not o.no_session_reuse,
    on_start = function(s)
      io.stdout:write("ftp server on ", s.address, "\n")
      if s.tls_address then io.stdout:write("ftps server on ", s.tls_address, "\n") end
      io.stdout:flush()
    end,
  })
  if not opts then io.stderr:write("parley: ", terr, "\n") return 2 end
  local srv, err = server.serve(opts)
  if not srv then io.stderr:write("parley: ", tostring(err), "\n") return 1 end
  return 0
end

return M
