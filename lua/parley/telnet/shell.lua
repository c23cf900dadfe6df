--- parley.telnet.shell: a login shell on a pseudo-terminal for an
-- authenticated Telnet user (what telnetd does).
--
-- CLEARTEXT: Telnet sends the password and the whole session unencrypted.
-- Off by default; use it only in a lab (loopback, an isolated network).
--
-- The shell runs on the slave side of a pty (`core.pty.spawn`): the pty
-- does the echo and the line editing, so the session is switched to
-- character mode (server ECHO + SGA).  NAWS updates resize the pty
-- (TIOCSWINSZ, which sends the shell SIGWINCH); TERM comes from TTYPE;
-- Telnet IP / BRK / EC / EL / EOF / SUSP arrive as the matching keys.
-- @module parley.telnet.shell
local parley = require "parley"
local core = require "parley.core"

local pty = core.pty
local M = {}

-- environment variables a client may set through NEW-ENVIRON
local PASS_ENV = { LANG = true, LC_ALL = true, LC_CTYPE = true, DISPLAY = true, TZ = true }

--- Runs the user's shell for this session until it exits or the client
-- leaves.
-- @param sess a `parley.telnet.session` with `user` set by the login
-- @tparam table opts `argv` (default: the users file's shell field, else
-- the account's shell, else /bin/sh), `as` ("account", default: run as the
-- system account of the same name, which must exist; "self": run as the
-- server's own user — for labs where the users file names no system
-- accounts), `login` (default true: argv[0] "-sh", a login shell),
-- `env` (more variables)
-- @return true, or `nil, err`
function M.run(sess, opts)
  opts = opts or {}
  local as = opts.as or "account"
  local acct = sess.user and pty.getpwnam(sess.user)
  if as == "account" and not acct then
    sess:print("no system account for " .. tostring(sess.user))
    return nil, "no account"
  end
  local argv = opts.argv or { (sess.account and sess.account.shell) or (acct and acct.shell) or "/bin/sh" }
  local env = { TERM = sess.ttype and sess.ttype:lower() or "vt100" }
  for k, v in pairs(sess.env or {}) do
    if PASS_ENV[k] and type(v) == "string" and v:match("^[%w%.%-_:@/]*$") then env[k] = v end
  end
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local m, pid = pty.spawn(argv, {
    rows = math.max(1, sess.height or 24), cols = math.max(1, sess.width or 80),
    env = env, user = as == "account" and sess.user or nil, login = opts.login ~= false,
  })
  if not m then
    sess:print("cannot start a shell: " .. tostring(pid))
    return nil, pid
  end
  sess:charmode(true)
  local prev = sess.on_resize
  sess.on_resize = function(s, w, h)
    if prev then prev(s, w, h) end
    if w > 0 and h > 0 then pty.resize(m, h, w) end
  end
  local out = parley.spawn(function()
    while true do
      local data = m:receive_some()
      if not data then break end   -- "input/output error": the slave side closed
      if not sess:write(data) then break end
    end
    sess:flush()
    sess:close()
  end)
  local err
  while true do
    local data
    data, err = sess:read()
    if not data then break end
    -- Enter arrives as CR LF or CR NUL: a terminal sends CR (RFC 854 / 1123)
    data = data:gsub("\r\n", "\r")
    local ok = m:send(data)
    if not ok then break end
  end
  -- the client left (or the shell ended and closed the connection)
  pty.kill(pid, "HUP")
  m:close()
  out:join(2)
  local deadline = parley.now() + 2
  local how, code = pty.wait(pid)
  while how == false and parley.now() < deadline do
    parley.sleep(0.05)
    how, code = pty.wait(pid)
  end
  if how == false then
    pty.kill(pid, "KILL")
    how, code = pty.wait(pid, true)
  end
  sess.exit_status = { how, code }
  if err == "timeout" then return nil, err end
  return true
end

return M
