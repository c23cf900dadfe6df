-- A private Dovecot pop3d in the foreground on a free loopback port, over
-- a Maildir of our own (for interop specs and bench/pop3). Needs root:
-- the mail user (nobody) must own the Maildir.
--   local D = require "pop3.support.dovecot"
--   local dv = D.start(dir, { alice = "wonderland" })  -- dir/<user>/ Maildirs
--   ... dv.port, dv.pid ...
--   dv.stop()
local D = {}

local NOBODY = 65534

local CONF = [[
protocols = pop3
listen = 127.0.0.1
base_dir = %s/run
state_dir = %s/state
log_path = %s/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:~
first_valid_uid = 1
pop3_uidl_format = %%08Xu%%08Xv
passdb {
  driver = passwd-file
  args = scheme=PLAIN %s/passwd
}
userdb {
  driver = passwd-file
  args = %s/passwd
}
service pop3-login {
  chroot =
  inet_listener pop3 {
    port = %d
  }
  inet_listener pop3s {
    port = 0
  }
}
service anvil {
  chroot =
}
]]

local function sh(cmd)
  local fh = io.popen(cmd, "r")
  local out = fh:read("a")
  fh:close()
  return out
end

function D.available()
  return sh("command -v dovecot") ~= "" and tonumber(sh("id -u")) == 0
end

local function free_port()
  local parley = require "parley"
  local l = assert(parley.listen("127.0.0.1:0"))
  local port = l:port()
  l:close()
  return port
end

-- waits until the port answers with a POP3 greeting (bounded)
local function wait_ready(port)
  local socket = require "socket"
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

--- Starts Dovecot over `dir` (holding one Maildir per user, dir/<user>/).
-- @tparam string dir scratch directory (must be under /tmp)
-- @tparam table users name -> password
-- @tparam[opt] string prefix command prefix, e.g. "taskset -c 1 "
function D.start(dir, users, prefix)
  local lines = {}
  for name, pw in pairs(users) do
    lines[#lines + 1] = ("%s:{PLAIN}%s:%d:%d::%s/%s\n"):format(name, pw, NOBODY, NOBODY, dir, name)
  end
  local f = assert(io.open(dir .. "/passwd", "wb"))
  f:write(table.concat(lines))
  f:close()
  os.execute(("mkdir -p '%s/run' '%s/state' && chmod 755 '%s' && chown -R %d:%d '%s'/*")
    :format(dir, dir, dir, NOBODY, NOBODY, dir))
  local port = free_port()
  f = assert(io.open(dir .. "/dovecot.conf", "wb"))
  f:write(CONF:format(dir, dir, dir, dir, dir, port))
  f:close()
  local pid = tonumber((sh(("%stimeout 600 dovecot -c '%s/dovecot.conf' -F >'%s/stdout' 2>&1 & echo $!")
    :format(prefix or "", dir, dir))))
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
    local log = sh("cat '" .. dir .. "/dovecot.log' '" .. dir .. "/stdout' 2>&1")
    dv.stop()
    error("dovecot did not start:\n" .. log, 2)
  end
  -- the pid of dovecot's master, for CPU accounting (timeout's child)
  dv.master = tonumber((sh("pgrep -P " .. pid .. " -x dovecot")))
  return dv
end

return D
