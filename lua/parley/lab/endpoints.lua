--- parley.lab.endpoints: the table the lab prints when it starts, one
-- row per server with a command that talks to it right away.
--
--     service     address         what it is, then a command to try
--     smtp        127.0.0.1:2525  mail in (MTA): type HELO, MAIL FROM, RCPT TO, DATA
--                 $ telnet 127.0.0.1 2525
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

-- name -> what the server is, and the command to try
local ROWS = {
  smtp = function(lab)
    return "mail in (MTA): type HELO, MAIL FROM, RCPT TO, DATA",
      ("telnet %s %d"):format(lab.host, lab.ports.smtp)
  end,
  submission = function(lab, prog)
    return "mail from users (AUTH required)",
      ("%s send --server %s --auth %s --from %s@%s --to %s@%s --subject hello --body 'hi there'"):format(
        prog, hostport(lab, "submission"), quote(lab.user .. ":" .. (lab.password or "PASSWORD")),
        lab.user, lab.domain, lab.user, lab.domain)
  end,
  pop3 = function(lab)
    return "the Maildir by POP3",
      ("curl -u %s pop3://%s/1"):format(quote(lab.user .. ":" .. (lab.password or "PASSWORD")),
        hostport(lab, "pop3"))
  end,
  imap = function(lab)
    return "the Maildir by IMAP",
      ("curl -u %s 'imap://%s/INBOX;MAILINDEX=1'"):format(
        quote(lab.user .. ":" .. (lab.password or "PASSWORD")), hostport(lab, "imap"))
  end,
  ftp = function(lab)
    return "anonymous: coffee.txt, tea.txt, flag.txt",
      ("curl ftp://%s/"):format(hostport(lab, "ftp"))
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

--- The rows: `{ name =, address =, what =, command = }` for each running
-- service, in the lab's order.
-- @tparam table lab a started `parley.lab`
-- @tparam[opt="parley"] string prog how to call parley in the commands
-- @treturn table
function M.rows(lab, prog)
  prog = prog or "parley"
  local out = {}
  for _, name in ipairs(require("parley.lab").SERVICES) do
    if lab.ports[name] then
      local what, cmd = ROWS[name](lab, prog)
      out[#out + 1] = { name = name, address = hostport(lab, name), what = what, command = cmd }
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
    t[#t + 1] = ("  %-11s $ %s\n"):format("", r.command)
  end
  t[#t + 1] = "\n"
  t[#t + 1] = ("  user      %s (one users file for mail, FTP and Telnet)\n"):format(lab.user)
  t[#t + 1] = ("  password  %s\n"):format(lab.password or "(a hash in the users file: as you set it)")
  t[#t + 1] = ("  mail to   %s@%s\n"):format(lab.user, lab.domain)
  t[#t + 1] = ("  lab dir   %s%s\n"):format(lab.dir, lab.temp and " (removed when the lab stops)" or " (kept)")
  return table.concat(t)
end

return M
