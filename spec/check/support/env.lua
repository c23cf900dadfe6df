-- Helpers for the check specs: in-process mail servers over a scratch
-- Maildir, a listener that never answers, `bin/parley` and
-- `parley serve mail` as child processes.
--
--   local E = require "check.support.env"
--   H.run(function()
--     local m = E.mail()                 -- m.smtp, m.pop3, m.imap (ports), m.deliver(subject)
--     ... check.run(("pop3://alice:pw@127.0.0.1:%d"):format(m.pop3)) ...
--     m.close()
--   end)
local parley = require "parley"
local H = require "helper"
local child = require "support.child"

local E = {}

E.USER, E.PASSWORD = "alice", "pw"

--- SMTP, POP3 and IMAP servers on port 0 over one scratch Maildir (inside
-- a task). `deliver(subject)` sends a message to alice by SMTP; `close()`
-- stops the servers and removes the directory.
function E.mail()
  local dir = H.tmpdir()
  local store = assert(require("parley.mail.maildir").open(dir .. "/md", { fsync = false }))
  local users = require("parley.mail.users").from_table{ [E.USER] = E.PASSWORD }
  local started = assert(require("parley.mail.cli").start{ store = store, users = users,
    smtp = "127.0.0.1:0", pop3 = "127.0.0.1:0", imap = "127.0.0.1:0", auth_delay = 0,
    domain = { "localhost" } })
  local m = { dir = dir, store = store }
  for _, s in ipairs(started) do m[s.proto] = s.server.port end
  function m.deliver(subject)
    return assert(require("parley.smtp.client").send{ server = "127.0.0.1:" .. m.smtp,
      from = "bob@localhost", to = "alice@localhost",
      message = "Subject: " .. subject .. "\r\n\r\nhello\r\n" })
  end
  function m.close()
    for _, s in ipairs(started) do s.server:close(0) end
    H.rmdir(dir)
  end
  return m
end

--- A listener that accepts nothing and says nothing: the kernel completes
-- the TCP handshake, the greeting never comes.
function E.silent()
  return assert(parley.listen("127.0.0.1:0"))
end

--- A port nothing listens on (refused).
function E.closed_port()
  local l = assert(parley.listen("127.0.0.1:0"))
  local port = l:port()
  l:close()
  return port
end

local function env_prefix()
  return ("LUA_PATH=%s LUA_CPATH=%s"):format(
    child.quote(H.root .. "/lua/?.lua;" .. H.root .. "/lua/?/init.lua;;"),
    child.quote(H.root .. "/build/?.so;;"))
end

--- Runs a command from the repository root (under `timeout 60`): its
-- stdout, its stderr and its exit code.
function E.sh(cmd)
  local err = os.tmpname()
  local fh = assert(io.popen(("cd %s && %s timeout 60 %s 2>%s"):format(
    child.quote(H.root), env_prefix(), cmd, child.quote(err)), "r"))
  local out = fh:read("a")
  local _, _, code = fh:close()
  local stderr = H.read(err) or ""
  os.remove(err)
  return out, stderr, code
end

--- `bin/parley check ARGS...` in a child: stdout, stderr, exit code.
function E.parley_check(...)
  return E.sh("lua5.4 bin/parley check " .. child.words({ ... }))
end

--- `parley serve mail` (SMTP, POP3, IMAP on port 0) in a child over a
-- scratch Maildir with alice/pw: `smtp`, `pop3`, `imap` (ports), `dir`,
-- `stop()`.
function E.mail_child()
  local dir = H.tmpdir()
  H.write(dir .. "/users", ("%s:{PLAIN}%s:1000:1000::%s\n"):format(E.USER, E.PASSWORD, E.USER))
  local ports = {}
  local c = child.serve("mail", { "--maildir", dir .. "/md", "--users", dir .. "/users",
    "--smtp", "127.0.0.1:0", "--pop3", "127.0.0.1:0", "--imap", "127.0.0.1:0",
    "--auth-delay", "0" }, { port = function(line)
      local proto, port = line:match("^(%w+) server on [^:]+:(%d+)")
      if proto then ports[proto] = tonumber(port) end
      return ports.smtp and ports.pop3 and ports.imap and ports.imap
    end })
  return { smtp = ports.smtp, pop3 = ports.pop3, imap = ports.imap, dir = dir,
    stop = function() c:stop() H.rmdir(dir) end }
end

--- The messages in alice's INBOX of a Maildir (new/ and cur/).
function E.count(md)
  local n = 0
  for _, sub in ipairs { "new", "cur" } do
    local fh = io.popen("ls " .. child.quote(md .. "/" .. E.USER .. "/" .. sub) .. " 2>/dev/null")
    for _ in fh:lines() do n = n + 1 end
    fh:close()
  end
  return n
end

return E
