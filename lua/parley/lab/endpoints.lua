--- parley.lab.endpoints: the table the lab prints when it starts, one
-- row per server (and per implicit-TLS port) with commands that talk to
-- it right away.
--
--     service     address         what it is, then a command to try
--     smtp        127.0.0.1:2525  mail in (MTA): type HELO, MAIL FROM, RCPT TO, DATA
--                 $ telnet 127.0.0.1 2525
--                 $ openssl s_client -starttls smtp -connect 127.0.0.1:2525 -CAfile LABDIR/tls/localhost.crt
--     ...
-- @module parley.lab.endpoints
local M = {}

local function quote(s)
  if s:match("^[%w@%%+=:,./_-]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function hostport(lab, name)
  local h = lab.host:find(":", 1, true) and "[" .. lab.host .. "]" or lab.host
  return h .. ":" .. lab.ports[name]
end

-- the certificate a TLS client should trust
local function ca(lab)
  return quote(lab.ca or (lab.dir .. "/tls/localhost.crt"))
end

local function credentials(lab)
  return quote(lab.user .. ":" .. (lab.password or "PASSWORD"))
end

--- The order of the rows: each implicit-TLS port after its plain service.
M.ORDER = { "smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps", "ftp", "ftps", "http", "https",
            "telnet" }

-- name -> what the server is, and the commands to try (the first is
-- the row's `command`)
local ROWS = {
  smtp = function(lab)
    return "mail in (MTA): type HELO, MAIL FROM, RCPT TO, DATA; STARTTLS offered",
      ("telnet %s %d"):format(lab.host, lab.ports.smtp),
      ("openssl s_client -starttls smtp -connect %s -CAfile %s"):format(hostport(lab, "smtp"), ca(lab))
  end,
  smtps = function(lab, prog)
    return "submission over implicit TLS (RFC 8314)",
      ("%s send --server %s --tls-implicit --ca %s --auth %s --from %s@%s --to %s@%s --subject hello --body 'over TLS'")
        :format(prog, hostport(lab, "smtps"), ca(lab), credentials(lab), lab.user, lab.domain, lab.user, lab.domain)
  end,
  pop3s = function(lab)
    return "POP3 over implicit TLS (POP3S)",
      ("curl --cacert %s -u %s pop3s://%s/1"):format(ca(lab), credentials(lab), hostport(lab, "pop3s"))
  end,
  imaps = function(lab)
    return "IMAP over implicit TLS (IMAPS)",
      ("curl --cacert %s -u %s 'imaps://%s/INBOX;MAILINDEX=1'"):format(ca(lab), credentials(lab),
        hostport(lab, "imaps"))
  end,
  submission = function(lab, prog)
    return "mail from users (AUTH required)",
      ("%s send --server %s --auth %s --from %s@%s --to %s@%s --subject hello --body 'hi there'"):format(
        prog, hostport(lab, "submission"), quote(lab.user .. ":" .. (lab.password or "PASSWORD")),
        lab.user, lab.domain, lab.user, lab.domain)
  end,
  pop3 = function(lab)
    return "the Maildir by POP3 (STLS offered)",
      ("curl -u %s pop3://%s/1"):format(quote(lab.user .. ":" .. (lab.password or "PASSWORD")),
        hostport(lab, "pop3"))
  end,
  imap = function(lab)
    return "the Maildir by IMAP (STARTTLS offered)",
      ("curl -u %s 'imap://%s/INBOX;MAILINDEX=1'"):format(
        quote(lab.user .. ":" .. (lab.password or "PASSWORD")), hostport(lab, "imap"))
  end,
  ftp = function(lab)
    return "anonymous: coffee.txt, tea.txt, flag.txt; AUTH TLS offered",
      ("curl ftp://%s/"):format(hostport(lab, "ftp")),
      ("curl --ssl-reqd --cacert %s ftp://%s/coffee.txt"):format(ca(lab), hostport(lab, "ftp"))
  end,
  ftps = function(lab)
    return "FTP over implicit TLS (FTPS)",
      ("curl --cacert %s ftps://%s/"):format(ca(lab), hostport(lab, "ftps"))
  end,
  https = function(lab)
    return "the same site over HTTPS",
      ("curl --cacert %s https://%s/"):format(ca(lab), hostport(lab, "https"))
  end,
  http = function(lab)
    return "index.html and logo.jpg",
      ("curl http://%s/"):format(hostport(lab, "http"))
  end,
  telnet = function(lab, prog)
    return "a login, then the menu app",
      ("%s telnet %s %d"):format(prog, lab.host, lab.ports.telnet)
  end,
}

--- The rows: `{ name =, address =, what =, command =, commands = {...} }`
-- for each running service and TLS port, in the order of `ORDER`
-- (`command` is the first of `commands`).
-- @tparam table lab a started `parley.lab`
-- @tparam[opt="parley"] string prog how to call parley in the commands
-- @treturn table
function M.rows(lab, prog)
  prog = prog or "parley"
  local out = {}
  for _, name in ipairs(M.ORDER) do
    if lab.ports[name] then
      local r = table.pack(ROWS[name](lab, prog))
      local cmds = { table.unpack(r, 2, r.n) }
      out[#out + 1] = { name = name, address = hostport(lab, name), what = r[1], command = cmds[1],
        commands = cmds }
    end
  end
  return out
end

--- The table as text: a header, two lines per service (its address and
-- what it serves, then `$ command`), then the user, the password and the
-- lab directory.
-- @tparam table lab a started `parley.lab`
-- @tparam[opt="parley"] string prog how to call parley in the commands
-- @treturn string
function M.format(lab, prog)
  local rows = M.rows(lab, prog)
  local width = #"address"
  for _, r in ipairs(rows) do width = math.max(width, #r.address) end
  local line = "  %-11s %-" .. width .. "s  %s\n"
  local t = { line:format("service", "address", "what it is, then a command to try") }
  for _, r in ipairs(rows) do
    t[#t + 1] = line:format(r.name, r.address, r.what)
    for _, cmd in ipairs(r.commands) do t[#t + 1] = ("  %-11s $ %s\n"):format("", cmd) end
  end
  t[#t + 1] = "\n"
  t[#t + 1] = ("  user      %s (one users file for mail, FTP and Telnet)\n"):format(lab.user)
  t[#t + 1] = ("  password  %s\n"):format(lab.password or "(a hash in the users file: as you set it)")
  t[#t + 1] = ("  mail to   %s@%s\n"):format(lab.user, lab.domain)
  t[#t + 1] = ("  TLS       %s (self-signed: trust it with --ca, --cacert, -CAfile)\n"):format(ca(lab))
  t[#t + 1] = ("  lab dir   %s%s\n"):format(lab.dir, lab.temp and " (removed when the lab stops)" or " (kept)")
  return table.concat(t)
end

return M
