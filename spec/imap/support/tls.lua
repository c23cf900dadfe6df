-- TLS helpers for the IMAP specs: `parley serve imap` in a child process
-- with STARTTLS and an IMAPS listener (for the blocking third-party
-- clients), and a private Dovecot with TLS (spec/support/dovecot.lua
-- runs it without; this one writes its own config beside it).
--
--   local TS = require "imap.support.tls"
--   local port, tls_port, pid = TS.child(dir, c.cert, c.key)   ... E.kill(pid)
--   local dv = TS.dovecot(dir, c.cert, c.key, { alice = "pw" })  ... dv.stop()
local base = require "support.dovecot"
local T = require "mail.support.tmpdir"

local TS = {}

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- Starts `bin/parley serve imap` over `dir/mail` (users alice:pw,
-- bob:pw) with `--tls-cert`, `--tls-key` and `--listen-tls`; `extra`:
-- more arguments (a string). Returns the STARTTLS port, the IMAPS port
-- and the pid (of `timeout`: stop it with E.kill).
function TS.child(dir, cert, key, extra)
  T.write(dir .. "/users", "alice:{PLAIN}pw\nbob:{PLAIN}pw\n")
  local out = dir .. "/server.out"
  local pid = T.sh(("cd %s && (timeout 120 lua5.4 bin/parley serve imap --listen 127.0.0.1:0 " ..
    "--listen-tls 127.0.0.1:0 --tls-cert %s --tls-key %s --maildir %s --users %s --auth-delay 0 %s" ..
    " >%s 2>%s & echo $!)"):format(q(require("helper").root), q(cert), q(key), q(dir .. "/mail"),
    q(dir .. "/users"), extra or "", q(out), q(out .. ".err")))
  pid = assert(tonumber(pid), "no pid")
  local port, tls_port
  for _ = 1, 200 do
    local text = T.read(out) or ""
    port = text:match("imap server on 127%.0%.0%.1:(%d+)")
    tls_port = text:match("imaps server on 127%.0%.0%.1:(%d+)")
    if port and tls_port then break end
    os.execute("sleep 0.05")
  end
  assert(port and tls_port, "server did not start: " .. (T.read(out .. ".err") or ""))
  return tonumber(port), tonumber(tls_port), pid
end

local function conf(dir, port, tls_port, cert, key)
  return table.concat {
    "protocols = imap\n",
    "listen = 127.0.0.1\n",
    "base_dir = ", dir, "/run\n",
    "state_dir = ", dir, "/state\n",
    "log_path = ", dir, "/dovecot.log\n",
    "ssl = yes\n",
    "ssl_cert = <", cert, "\n",
    "ssl_key = <", key, "\n",
    "disable_plaintext_auth = yes\n",
    "auth_mechanisms = plain login\n",
    "mail_location = maildir:~\n",
    "first_valid_uid = 1\n",
    "passdb {\n  driver = passwd-file\n  args = scheme=PLAIN ", dir, "/passwd\n}\n",
    "userdb {\n  driver = passwd-file\n  args = ", dir, "/passwd\n}\n",
    "service imap-login {\n  chroot =\n",
    "  inet_listener imap {\n    port = ", tostring(port), "\n  }\n",
    "  inet_listener imaps {\n    port = ", tostring(tls_port), "\n    ssl = yes\n  }\n}\n",
    "service anvil {\n  chroot =\n}\n",
  }
end

local function free_port()
  local l = assert(require("parley").listen("127.0.0.1:0"))
  local port = l:port()
  l:close()
  return port
end

--- Starts Dovecot imapd with TLS: STARTTLS on `port`, IMAPS on
-- `tls_port`, `disable_plaintext_auth = yes` (Dovecot counts a peer on
-- its own address as secure, so loopback clients may still LOGIN in
-- cleartext). Users' Maildirs under `dir/mail`.
-- Waits until it greets; raises with its log when it does not.
-- @return { port, tls_port, pid, stop() }
function TS.dovecot(dir, cert, key, users)
  local mail_root = dir .. "/mail"
  local lines = {}
  for name, pw in pairs(users) do
    lines[#lines + 1] = base.passwd_line(name, pw, mail_root .. "/" .. name)
  end
  table.sort(lines)
  T.write(dir .. "/passwd", table.concat(lines))
  os.execute(("mkdir -p %s %s %s && chmod 755 %s && chown -R %d:%d %s 2>/dev/null")
    :format(q(dir .. "/run"), q(dir .. "/state"), q(mail_root), q(dir), base.NOBODY, base.NOBODY,
      q(mail_root)))
  local port, tls_port = free_port(), free_port()
  T.write(dir .. "/dovecot.conf", conf(dir, port, tls_port, cert, key))
  local pid = tonumber((base.sh(("timeout 120 dovecot -c %s -F >%s 2>&1 & echo $!")
    :format(q(dir .. "/dovecot.conf"), q(dir .. "/stdout")))))
  assert(pid, "dovecot did not start")
  local dv = { pid = pid, port = port, tls_port = tls_port }
  function dv.stop()
    if dv.pid then
      os.execute("kill " .. dv.pid .. " 2>/dev/null")
      for _ = 1, 50 do
        if base.sh("kill -0 " .. dv.pid .. " 2>&1") ~= "" then break end
        os.execute("sleep 0.05")
      end
      dv.pid = nil
    end
  end
  local socket = require "socket"
  local ready = false
  for _ = 1, 100 do
    local c = socket.tcp()
    c:settimeout(1)
    if c:connect("127.0.0.1", port) then
      local l = c:receive("*l")
      c:close()
      if l and l:match("^%* OK") then ready = true break end
    else
      c:close()
    end
    socket.sleep(0.05)
  end
  if not ready then
    local log = base.sh("cat " .. q(dir .. "/dovecot.log") .. " " .. q(dir .. "/stdout") .. " 2>&1")
    dv.stop()
    error("dovecot did not start:\n" .. log, 2)
  end
  return dv
end

return TS
