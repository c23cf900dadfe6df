-- A private Dovecot imapd for the IMAP interop specs and the benchmark:
-- foreground master on a free loopback port, config and state in a scratch
-- directory, passwd-file users whose home is a Maildir under `mail_root`.
-- (The same configuration spec/mail/dovecot_spec.lua uses.)
--
--   local D = require "imap.support.dovecot"
--   if not D.available() then pending(D.why) return end
--   local d = D.start(dir, dir .. "/mail", { alice = "pw" })
--   ... IMAP on 127.0.0.1:d.port ...
--   D.stop(d)
local D = {}

local NOBODY = 65534

local CONF = [[
protocols = imap
listen = 127.0.0.1
base_dir = %s/run
state_dir = %s/state
log_path = %s/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = scheme=PLAIN %s/passwd
}
userdb {
  driver = passwd-file
  args = %s/passwd
}
service imap-login {
  chroot =
  inet_listener imap {
    port = %d
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
]]

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end
D.sh = sh

--- Whether Dovecot can run here; D.why says why not.
function D.available()
  if sh("command -v dovecot") == "" then
    D.why = "dovecot is not installed (apt-get install dovecot-imapd)"
    return false
  end
  if tonumber((sh("id -u"))) ~= 0 then
    D.why = "needs root: Dovecot's mail user must own the Maildir (chown)"
    return false
  end
  return true
end

local function free_port()
  local parley = require "parley"
  local l = assert(parley.listen("127.0.0.1:0"))
  local port = l:port()
  l:close()
  return port
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

--- Starts Dovecot in `dir` (its config, state and log) serving the users
-- in `users` (name -> password) whose Maildirs are `mail_root/<name>`.
-- Waits until it accepts connections. Returns { pid =, port =, dir = }.
function D.start(dir, mail_root, users)
  local lines = {}
  for name, pw in pairs(users) do
    lines[#lines + 1] = string.format("%s:{PLAIN}%s:%d:%d::%s/%s\n", name, pw, NOBODY, NOBODY,
                                      mail_root, name)
  end
  write(dir .. "/passwd", table.concat(lines))
  os.execute("chown -R " .. NOBODY .. ":" .. NOBODY .. " '" .. mail_root .. "'")
  os.execute("mkdir -p '" .. dir .. "/run' '" .. dir .. "/state'")
  os.execute("chmod 755 '" .. dir .. "'")
  local port = free_port()
  write(dir .. "/dovecot.conf", string.format(CONF, dir, dir, dir, dir, dir, port))
  local pid = tonumber((sh(string.format(
    "timeout 300 dovecot -c '%s/dovecot.conf' -F >'%s/dovecot.out' 2>&1 & echo $!", dir, dir))))
  assert(pid, "dovecot did not start")
  -- wait for the listener
  local parley = require "parley"
  for _ = 1, 100 do
    local c = parley.connect("127.0.0.1", port, { timeout = 1 })
    if c then c:close(); break end
    os.execute("sleep 0.05")
  end
  return { pid = pid, port = port, dir = dir }
end

--- Stops a Dovecot started by D.start (and waits a moment for its children).
function D.stop(d)
  if d and d.pid then
    os.execute("kill " .. d.pid .. " 2>/dev/null")
    os.execute("sleep 0.3")
    d.pid = nil
  end
end

return D
