-- A private Dovecot (imapd or pop3d) for the interop specs and benchmarks:
-- the master in the foreground on a free loopback port, config, state and
-- log in a scratch directory, passwd-file users (PLAIN passwords) whose
-- home is a Maildir `mail_root/<name>`. Needs root: the mail user
-- (nobody) must own the Maildirs.
--
--   local D = require "support.dovecot"
--   if not D.available() then pending(D.why) return end
--   local dv = D.start{ protocol = "imap", dir = dir, mail_root = dir .. "/mail",
--                       users = { alice = "pw" } }
--   ... dv.port, dv.pid (of timeout), dv.master (dovecot's master) ...
--   dv.stop()
local D = {}

local NOBODY = 65534
D.NOBODY = NOBODY

-- the protocol-specific lines (pop3: UIDLs as Dovecot's default for
-- Maildir, uid and uidvalidity in hex)
local EXTRA = {
  imap = "auth_mechanisms = plain login\n",
  pop3 = "auth_mechanisms = plain\npop3_uidl_format = %08Xu%08Xv\n",
}

local function conf(protocol, dir, port)
  return table.concat {
    "protocols = ", protocol, "\n",
    "listen = 127.0.0.1\n",
    "base_dir = ", dir, "/run\n",
    "state_dir = ", dir, "/state\n",
    "log_path = ", dir, "/dovecot.log\n",
    "ssl = no\n",
    "disable_plaintext_auth = no\n",
    EXTRA[protocol],
    "mail_location = maildir:~\n",
    "first_valid_uid = 1\n",
    "passdb {\n  driver = passwd-file\n  args = scheme=PLAIN ", dir, "/passwd\n}\n",
    "userdb {\n  driver = passwd-file\n  args = ", dir, "/passwd\n}\n",
    "service ", protocol, "-login {\n  chroot =\n",
    "  inet_listener ", protocol, " {\n    port = ", tostring(port), "\n  }\n",
    "  inet_listener ", protocol, "s {\n    port = 0\n  }\n}\n",
    "service anvil {\n  chroot =\n}\n",
  }
end

local function sh(cmd)
  local fh = io.popen(cmd, "r")
  local out = fh:read("a")
  local ok = fh:close()
  return out, ok
end
D.sh = sh

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

--- Whether Dovecot can run here; D.why says why not.
function D.available()
  if sh("command -v dovecot") == "" then
    D.why = "dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d)"
    return false
  end
  if tonumber((sh("id -u"))) ~= 0 then
    D.why = "needs root: Dovecot's mail user must own the Maildir (chown)"
    return false
  end
  return true
end

--- The passwd-file line for `name` (mail user nobody, home its Maildir).
function D.passwd_line(name, password, home)
  return ("%s:{PLAIN}%s:%d:%d::%s\n"):format(name, password, NOBODY, NOBODY, home)
end

local function free_port()
  local parley = require "parley"
  local l = assert(parley.listen("127.0.0.1:0"))
  local port = l:port()
  l:close()
  return port
end

-- waits (bounded) until the port answers with a greeting
local function wait_ready(port)
  local socket = require "socket"
  for _ = 1, 100 do
    local c = socket.tcp()
    c:settimeout(1)
    if c:connect("127.0.0.1", port) then
      local l = c:receive("*l")
      c:close()
      if l and (l:match("^%+OK") or l:match("^%* OK")) then return true end
    else
      c:close()
    end
    socket.sleep(0.05)
  end
  return false
end

--- Starts Dovecot. `o`: `protocol` ("imap" or "pop3"), `dir` (scratch
-- directory: config, state, log), `mail_root` (default `dir`), `users`
-- (name -> password), `prefix` (command prefix, e.g. "taskset -c 1 "),
-- `timeout` (seconds the master may live, 300). Waits until it greets;
-- raises with its log when it does not.
-- @return { pid, master, port, dir, stop() }
function D.start(o)
  local dir, mail_root = o.dir, o.mail_root or o.dir
  local lines = {}
  for name, pw in pairs(o.users) do
    lines[#lines + 1] = D.passwd_line(name, pw, mail_root .. "/" .. name)
  end
  table.sort(lines)
  write(dir .. "/passwd", table.concat(lines))
  os.execute(("mkdir -p %s %s && chmod 755 %s && chown -R %d:%d %s 2>/dev/null")
    :format(q(dir .. "/run"), q(dir .. "/state"), q(dir), NOBODY, NOBODY, q(mail_root)))
  local port = free_port()
  write(dir .. "/dovecot.conf", conf(o.protocol, dir, port))
  local pid = tonumber((sh(("%stimeout %d dovecot -c %s -F >%s 2>&1 & echo $!")
    :format(o.prefix or "", o.timeout or 300, q(dir .. "/dovecot.conf"), q(dir .. "/stdout")))))
  assert(pid, "dovecot did not start")
  local dv = { pid = pid, port = port, dir = dir }
  function dv.stop()
    if dv.pid then
      os.execute("kill " .. dv.pid .. " 2>/dev/null")
      -- give the master a moment to stop its children
      for _ = 1, 50 do
        if sh("kill -0 " .. dv.pid .. " 2>&1") ~= "" then break end
        os.execute("sleep 0.05")
      end
      dv.pid = nil
    end
  end
  if not wait_ready(port) then
    local log = sh("cat " .. q(dir .. "/dovecot.log") .. " " .. q(dir .. "/stdout") .. " 2>&1")
    dv.stop()
    error("dovecot did not start:\n" .. log, 2)
  end
  -- the pid of dovecot's master, for CPU accounting (timeout's child)
  dv.master = tonumber((sh("pgrep -P " .. pid .. " -x dovecot")))
  return dv
end

--- Stops a Dovecot started by D.start.
function D.stop(dv) if dv and dv.stop then dv.stop() end end

return D
