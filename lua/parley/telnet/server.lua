--- parley.telnet.server: a Telnet server hosting terminal apps written in
-- Lua, with an optional login and an opt-in real shell.
--
--     local telnet = require "parley.telnet"
--     telnet.server.serve{ listen = "127.0.0.1:2323", app = "chat" }
--     telnet.server.serve{ listen = "127.0.0.1:2323", users = "users.txt",
--                          app = function(sess) sess:print("hi " .. sess.user) end }
--
-- Each connection gets a `parley.telnet.session`: the server asks for
-- NAWS, TTYPE and NEW-ENVIRON, optionally prompts for a login (the
-- password is never echoed, a failed login costs `login_delay` seconds),
-- then runs the app.  Apps are modules `parley.telnet.apps.<name>`
-- returning `{ description = s, new = function(opts) return run end }`,
-- or a table with `new`, or a plain function(sess).
--
-- `shell = true` gives an authenticated user a login shell on a
-- pseudo-terminal, as telnetd does.  Telnet is cleartext: passwords and
-- everything typed cross the network readable by anyone on the path.
-- Use shell mode only in a lab, on loopback or an isolated network.
-- @module parley.telnet.server
local parley = require "parley"
local session = require "parley.telnet.session"
local users_mod = require "parley.mail.users"
local authdelay = require "parley.authdelay"

local M = {}

--- Defaults of `serve`'s options.
-- @table defaults
M.defaults = {
  idle_timeout = 600,     -- seconds without input before the server hangs up
  login_timeout = 60,     -- seconds to complete the login
  login_delay = 2,        -- seconds a failed login costs
  max_login_attempts = 3, -- then the connection closes
  max_connections = 1000,
  app = "menu",
  linger = 0.2,           -- seconds spent reading stray input before closing
  shutdown_message = "the server is shutting down",   -- told to every session on close
}

--- Resolves an app: a name, a table with `new`, or a function(sess).
-- @return run function(sess), or raises
function M.load_app(app, opts)
  if type(app) == "function" then return app end
  if type(app) == "string" then
    if not app:match("^[%w_]+$") then error("bad app name: " .. app, 2) end
    local ok, mod = pcall(require, "parley.telnet.apps." .. app)
    if not ok then error("no telnet app named '" .. app .. "'", 2) end
    app = mod
  end
  if type(app) == "table" and type(app.new) == "function" then return app.new(opts) end
  if type(app) == "table" and type(app.run) == "function" then return app.run end
  error("app must be a name, a function or a table with new()", 2)
end

--- The bundled apps: name -> description.
function M.apps()
  local t = {}
  for _, name in ipairs{ "menu", "chat", "echo" } do
    t[name] = require("parley.telnet.apps." .. name).description
  end
  return t
end

-- The login dialogue: the user's name, or nil when they gave up.
local function login(sess, cfg)
  local deadline = parley.now() + cfg.login_timeout
  for attempt = 1, cfg.max_login_attempts do
    local function left()
      return math.max(0.001, deadline - parley.now())
    end
    sess.conn:settimeout(left())
    sess:write("login: ")
    local name, err = sess:read_line{ max = 256 }
    if not name then return nil, err end
    sess.conn:settimeout(left())
    sess:write("Password: ")
    local pass
    pass, err = sess:read_password()
    if not pass then return nil, err end
    local ok
    if cfg.on_auth then
      ok = cfg.on_auth(name, pass, sess)
    else
      ok = cfg.users:check(name, pass)
    end
    if ok then
      authdelay.of(cfg):succeeded(sess.conn:getpeername())
      sess.user = name
      sess.account = type(ok) == "table" and ok or (cfg.users and cfg.users:get(name)) or nil
      return name
    end
    -- every failure costs the same time, whether the name exists or not,
    -- and more as failures from the address add up
    authdelay.of(cfg):failed(sess.conn:getpeername(), cfg.login_delay)
    sess:print("Login incorrect")
    if attempt == cfg.max_login_attempts then break end
  end
  sess:print("too many failures; bye")
  sess:flush()
  return nil, "login failed"
end

--- Starts a Telnet server (on `parley.serve`).
-- @tparam table opts
-- `listen` (required), `app` (name, table or function; default "menu"),
-- `app_opts` (passed to the app's `new`), `users` (a users-file path, a
-- `parley.mail.users` object, or a table for `parley.mail.users.from_table`:
-- the one passwd-file every parley server reads; the `shell` field picks a
-- shell-mode user's shell), `login` (default: true when `users`,
-- `on_auth` or `shell` is set), `on_auth` (function(name, password, sess)
-- -> truthy; replaces the users check), `on_connect` (function(sess) ->
-- false to hang up at once, after the negotiation), `banner` (printed
-- first), `shell` (true or {argv=, as="account"|"self"}: see
-- `parley.telnet.shell`), `idle_timeout` (600), `login_timeout` (60),
-- `login_delay` (2), `max_login_attempts` (3), `max_connections` (1000),
-- `negotiate` (true), `max_subneg` (4096), `max_line` (4096),
-- `negotiation_wait` (1), `linger` (0.2), `on_start`, `signals`, `on_error`.
-- @return a parley server (`port`, `address`, `close()`), or `nil, err`
function M.serve(opts)
  if type(opts) ~= "table" then error("telnet.server.serve expects an options table", 2) end
  local d = M.defaults
  local cfg = {}
  for k, v in pairs(d) do cfg[k] = v end
  for k, v in pairs(opts) do cfg[k] = v end
  if type(cfg.users) == "string" then
    local u, err = users_mod.load(cfg.users)
    if not u then return nil, "users file: " .. tostring(err) end
    cfg.users = u
  elseif type(cfg.users) == "table" and type(cfg.users.check) ~= "function" then
    cfg.users = users_mod.from_table(cfg.users)
  elseif cfg.users ~= nil and type(cfg.users) ~= "table" then
    error("users must be a path, a parley.mail.users object or a table", 2)
  end
  if cfg.login == nil then cfg.login = cfg.users ~= nil or cfg.on_auth ~= nil or not not cfg.shell end
  if cfg.shell and not cfg.login then error("shell mode needs a login (users or on_auth)", 2) end
  if cfg.login and not cfg.users and not cfg.on_auth then error("login needs users or on_auth", 2) end
  local run
  if cfg.shell then
    local shell = require "parley.telnet.shell"
    local sopts = type(cfg.shell) == "table" and cfg.shell or {}
    run = function(sess) return shell.run(sess, sopts) end
  else
    run = M.load_app(cfg.app, cfg.app_opts)
  end

  local function converse(conn, sess)
    sess:settimeout(cfg.idle_timeout)
    if not sess:start() then return end
    if cfg.on_connect and cfg.on_connect(sess) == false then return end
    if cfg.banner then sess:print(cfg.banner) end
    if cfg.login then
      local name, err = login(sess, cfg)
      sess:settimeout(cfg.idle_timeout)
      if not name then
        if err == "timeout" then sess:print("\r\nlogin timed out") end
        return
      end
    end
    local r, err = run(sess)
    if r == nil and err == "timeout" then
      sess:print("\r\nidle timeout; bye")
    end
  end

  local sessions = setmetatable({}, { __mode = "k" })   -- a failed handler leaves no entry

  -- shutdown: every session is told why the line drops
  local function goodbye()
    for sess in pairs(sessions) do
      if not sess.closed then
        sess:print("\r\n*** " .. cfg.shutdown_message .. " ***")
        sess:flush()
        sess:close()
      end
    end
  end

  local function handler(conn)
    local sess = session.new(conn, cfg)
    sessions[sess] = true
    converse(conn, sess)
    sessions[sess] = nil
    if not sess.closed then
      -- Negotiation answers may still be in flight: closing with unread
      -- input makes the kernel send RST, which can destroy our last words
      -- at the client.  Read (and drop) them for up to `linger` seconds.
      sess:flush()
      local deadline = parley.now() + cfg.linger
      while true do
        local left = deadline - parley.now()
        if left <= 0 then break end
        conn:settimeout(left)
        if not conn:receive_some() then break end
      end
    end
  end

  return parley.serve{
    listen = cfg.listen,
    handler = handler,
    max_connections = cfg.max_connections,
    on_start = cfg.on_start,
    on_close = goodbye,
    on_error = cfg.on_error,
    signals = cfg.signals,
    grace = cfg.grace,
    backlog = cfg.backlog,
    transcript = cfg.transcript,
    transcript_full = cfg.transcript_full,
    transcript_secrets = cfg.transcript_secrets,
    transcript_protocol = "telnet",
  }
end

M.session = session
return M
