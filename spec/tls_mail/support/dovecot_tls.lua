-- A private Dovecot pop3d with TLS for the mail TLS interop specs: STLS on
-- its plain port and POP3S on a second one, with our test certificate.
-- spec/support/dovecot.lua runs Dovecot with `ssl = no` and is not ours
-- to change, so this one writes its own configuration (the same layout)
-- and reuses that file's pieces.
--
--   local DT = require "tls_mail.support.dovecot_tls"
--   if not DT.available() then pending(DT.why) return end
--   local dv = DT.start(dir, { alice = "pw" }, cert, key)
--   ... dv.port (STLS), dv.tls_port (POP3S) ...
--   dv.stop()
local D = require "support.dovecot"
local socket = require "socket"

local M = setmetatable({}, { __index = D })

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

local function conf(dir, port, tls_port, cert, key)
  return table.concat {
    "protocols = pop3\nlisten = 127.0.0.1\n",
    "base_dir = ", dir, "/run\nstate_dir = ", dir, "/state\nlog_path = ", dir, "/dovecot.log\n",
    "ssl = yes\nssl_cert = <", cert, "\nssl_key = <", key, "\n",
    "disable_plaintext_auth = yes\nauth_mechanisms = plain\n",
    "mail_location = maildir:~\nfirst_valid_uid = 1\n",
    "passdb {\n  driver = passwd-file\n  args = scheme=PLAIN ", dir, "/passwd\n}\n",
    "userdb {\n  driver = passwd-file\n  args = ", dir, "/passwd\n}\n",
    "service pop3-login {\n  chroot =\n",
    "  inet_listener pop3 {\n    port = ", port, "\n  }\n",
    "  inet_listener pop3s {\n    port = ", tls_port, "\n    ssl = yes\n  }\n}\n",
    "service anvil {\n  chroot =\n}\n",
  }
end

-- waits (bounded) until the plain port greets
local function ready(port)
  for _ = 1, 100 do
    local c = socket.tcp()
    c:settimeout(1)
    if c:connect("127.0.0.1", port) then
      local l = c:receive("*l")
      c:close()
      if l and l:match("^%+OK") then return true end
    else
      c:close()
    end
    socket.sleep(0.05)
  end
  return false
end

--- Starts Dovecot's pop3d over `dir` (each user's Maildir is dir/<name>)
-- with `cert` and `key` (readable by Dovecot: they are copied into dir).
-- @return { pid, port, tls_port, stop() }
function M.start(dir, users, cert, key)
  local lines = {}
  for name, pw in pairs(users) do lines[#lines + 1] = D.passwd_line(name, pw, dir .. "/" .. name) end
  write(dir .. "/passwd", table.concat(lines))
  os.execute(("cp %s %s/tls.crt && cp %s %s/tls.key && mkdir -p %s %s && chmod 755 %s && chown -R %d:%d %s")
    :format(q(cert), q(dir), q(key), q(dir), q(dir .. "/run"), q(dir .. "/state"), q(dir),
      D.NOBODY, D.NOBODY, q(dir)))
  local port, tls_port = free_port(), free_port()
  write(dir .. "/dovecot.conf", conf(dir, port, tls_port, dir .. "/tls.crt", dir .. "/tls.key"))
  local pid = tonumber((D.sh(("timeout 120 dovecot -c %s -F >%s 2>&1 & echo $!")
    :format(q(dir .. "/dovecot.conf"), q(dir .. "/stdout")))))
  assert(pid, "dovecot did not start")
  local dv = { pid = pid, port = port, tls_port = tls_port }
  function dv.stop()
    if dv.pid then
      os.execute("kill " .. dv.pid .. " 2>/dev/null")
      for _ = 1, 50 do
        if D.sh("kill -0 " .. dv.pid .. " 2>&1") ~= "" then break end
        socket.sleep(0.05)
      end
      dv.pid = nil
    end
  end
  if not ready(port) then
    local log = D.sh("cat " .. q(dir .. "/dovecot.log") .. " " .. q(dir .. "/stdout") .. " 2>&1")
    dv.stop()
    error("dovecot did not start:\n" .. log, 2)
  end
  return dv
end

return M
