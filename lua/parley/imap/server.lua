--- IMAP server (RFC 3501 IMAP4rev1) over the shared Maildir store.
--
--     local server = require "parley.imap.server"
--     local srv = server.serve{ listen = "127.0.0.1:1143",
--       store = maildir.open("/var/mail"), users = users.load("/etc/parley/users"),
--       tls = { cert = "mail.crt", key = "mail.key" },   -- STARTTLS
--       listen_tls = "127.0.0.1:1993" }                   -- IMAPS (993 form)
--
-- Extensions: IDLE (2177), UIDPLUS (4315), MOVE (6851), LITERAL+ (7888),
-- NAMESPACE (2342), ENABLE (5161), SPECIAL-USE (6154), UNSELECT (3691),
-- CHILDREN (3348), ID (2971), SASL-IR (4959), AUTH=PLAIN (4616),
-- STARTTLS (3501 §6.2.1, 2595) with a certificate, LOGINDISABLED.
-- Not implemented: CONDSTORE/QRESYNC, IMAP4rev2.
--
-- Keywords are stored as Dovecot stores them, so both read the same
-- Maildir: the letters `a`-`z` after the `:2,` system-flag letters, named
-- in each mailbox's `dovecot-keywords` (`<n> <name>` lines, written whole
-- under Dovecot's `dovecot-keywords.lock`). FLAGS and PERMANENTFLAGS list
-- the mailbox's keywords and `\*`; a 27th keyword is refused with
-- `NO [LIMIT]` (and `\*` is no longer offered, RFC 3501 §7.1). COPY and
-- MOVE carry keywords by name (each mailbox numbers its own).
--
-- Passwords (LOGIN, AUTHENTICATE PLAIN) cross a cleartext connection only
-- as `allow_plaintext_auth` says (default: from loopback peers); otherwise
-- CAPABILITY lists LOGINDISABLED instead of AUTH=PLAIN and both commands
-- are answered `NO [PRIVACYREQUIRED]` (RFC 3501 §6.2.3, RFC 5530) until
-- STARTTLS. After STARTTLS the capability list changes (no STARTTLS, the
-- mechanisms back): clients must ask again (RFC 3501 §6.2.1).
--
-- Sessions of one process on one mailbox see each other's changes at the
-- next command (EXISTS, EXPUNGE, FETCH FLAGS, RFC 3501 §7); an IDLE
-- session is told within a quarter second (it polls the Maildir's
-- directory mtimes, and wakes at once for changes made in this process:
-- `srv:changed(user [, folder])` or `server.changed(dir)` from an
-- in-process SMTP server's `on_delivered`).
--
-- Hooks (optional): `on_connect(s)` returns false to refuse (BYE);
-- `on_auth(s, user, password)` returns true/false to decide alone (nil:
-- check `users`); `on_command(s, cmd)` returns true when it handled a
-- command itself (cmd = {tag=, name=, uid=, args=}).
-- @module parley.imap.server
local parley = require "parley"
local core = require "parley.core"
local V = require "parley.imap.view"
local commands = require "parley.imap.commands"
local starttls = require "parley.smtp.starttls"

local imap = core.imap

local M = {}

--- Limits and their defaults.
M.DEFAULTS = {
  max_line = 65536,          -- command line without CRLF
  max_line_unauth = 8192,    -- before login
  max_literal = 64 * 1048576, -- any literal (APPEND message size)
  max_literal_unauth = 4096, -- before login (RFC 7888 §4)
  max_memory_literal = 1048576, -- larger literals are spooled to a temp file
  max_depth = 64,            -- nested parentheses
  max_errors = 10,           -- BAD commands before BYE
  max_errors_unauth = 5,     -- before login
  auth_delay = 2,            -- seconds before answering a failed login
  max_auth_failures = 3,     -- failed logins before BYE
  idle_timeout = 1800,       -- waiting for a command (RFC 3501 §5.4: >= 30 min)
  login_timeout = 60,        -- waiting for a command before login
  idle_poll = 0.25,          -- seconds between Maildir checks while IDLE
  grace = 5,
}

M.CAPABILITIES = "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN SPECIAL-USE"

local session = {}
session.__index = session
M.session = session

--- Whether this session may send a password (LOGIN, AUTHENTICATE
-- PLAIN): over TLS always, in cleartext as `allow_plaintext_auth` says.
function session:plaintext_allowed()
  return starttls.plaintext_allowed(self.opts.allow_plaintext_auth, self.ip or "?", self.tls ~= nil)
end

--- The capability list for the session's state (RFC 3501 §7.2.1):
-- STARTTLS while it can still be used (not authenticated, cleartext, a
-- certificate configured), then AUTH=PLAIN or LOGINDISABLED before login.
-- @treturn string
function session:capabilities()
  local c = M.CAPABILITIES
  if self.user then return c end
  if self.opts.tls_ctx and not self.tls then c = c .. " STARTTLS" end
  if self:plaintext_allowed() then return c .. " AUTH=PLAIN" end
  return c .. " LOGINDISABLED"
end

--- Queues one response line (the CRLF must be included).
function session:send(line) return self.conn:send(line) end

--- Tagged reply: `tag OK|NO|BAD [code] text`.
function session:reply(tag, kind, text, code)
  if code then text = "[" .. code .. "] " .. text end
  self.conn:send(tag .. " " .. kind .. " " .. text .. "\r\n")
end

-- a BAD, counted; BYE after too many
function session:bad(tag, text)
  self.errors = self.errors + 1
  self:reply(tag or "*", "BAD", text)
  local max = self.user and self.opts.max_errors or self.opts.max_errors_unauth
  if self.errors >= max then
    self.conn:send("* BYE too many bad commands\r\n")
    self.done = true
  end
end

function session:set_state(user)
  self.user = user
  self.parser:set_authenticated(user ~= nil)
  self.conn:setoption("max-line", self.opts.max_line + 2)
  self.conn:settimeout(self.opts.idle_timeout)
end

--- Brings the selected mailbox up to date (sends EXISTS/EXPUNGE/FETCH).
function session:sync(expunge_ok, force)
  local v = self.view
  if not v then return end
  v:sync(function(line) self.conn:send(line) end, expunge_ok, force)
  if v.broken then
    self.done = true
  end
end

-- One line; a line ended by a bare LF is taken too (as Dovecot does:
-- people type IMAP with netcat).
local function receive_line(conn)
  local line, err, partial = conn:receive("l")
  if not line and err == "bare lf" then return partial end
  return line, err
end

-- Reads one whole command (lines and literals). Returns cmd, or nil, err
-- ("closed" and other I/O errors end the session; a syntax error is
-- answered here and gives nil, nil).
local function read_command(s)
  local conn, parser = s.conn, s.parser
  local line, err = receive_line(conn)
  if not line then
    if err == "line too long" then
      parser:reset()
      s:bad("*", "line too long")
      return nil, nil
    end
    return nil, err
  end
  local spool = {}
  while true do
    local r, a, b, c, d = parser:feed_line(line)
    if r == "done" then return a, nil, spool end
    if r == nil then
      -- a refused literal: a, b = reason, tag; c = n (when a literal)
      local reason, tag = a, b
      parser:reset()
      if c then
        -- the literal was refused before "+": a synchronising one never
        -- comes; a non-synchronising one is on its way and cannot be
        -- told apart from commands, so the connection ends
        if d then
          s:reply(tag or "*", "BAD", reason)
          conn:send("* BYE literal refused\r\n")
          s.done = true
          return nil, nil
        end
        if tag and tag ~= "*" then s:reply(tag, "NO", reason, "TOOBIG")
        else s:bad("*", reason) end
        s.errors = s.errors + 1
        return nil, nil
      end
      s:bad(tag, reason)
      return nil, nil
    end
    -- r == "literal": a = n, b = nonsync
    local n, nonsync = a, b
    if not nonsync then
      conn:send("+ Ready for literal data\r\n")
      conn:flush()
    end
    local value
    if n > s.opts.max_memory_literal then
      local fh = io.tmpfile()
      local got, rerr = conn:receive_to(fh, n)
      if not got then fh:close(); return nil, rerr end
      fh:seek("set", 0)
      value = fh
      spool[#spool + 1] = fh
    else
      local data, rerr = conn:receive(n)
      if not data then return nil, rerr end
      value = data
    end
    r, a, b = parser:feed_literal(value)
    if r == nil then
      s:bad(b, a)
      return nil, nil
    end
    line, err = receive_line(conn)
    if not line then
      if err == "line too long" then
        parser:reset()
        s:bad("*", "line too long")
        return nil, nil
      end
      return nil, err
    end
  end
end

local function run_session(srv, conn)
  local o = srv.opts
  local ip, port = conn:getpeername()
  local s = setmetatable({ conn = conn, srv = srv, opts = o, store = o.store, users = o.users,
    ip = ip, port = port, errors = 0, auth_failures = 0, enabled = {} }, session)
  s.parser = imap.command_parser{
    max_line = o.max_line, max_literal = o.max_literal,
    max_literal_unauth = o.max_literal_unauth, max_depth = o.max_depth,
  }
  s.tls = conn:tlsinfo()   -- the IMAPS listener
  if s.tls then starttls.record(conn, s.tls) end
  srv.sessions[s] = true
  conn:setoption("max-line", o.max_line_unauth + 2)
  conn:settimeout(o.login_timeout)
  if o.on_connect and o.on_connect(s) == false then
    conn:send("* BYE access refused\r\n")
    conn:flush()
    srv.sessions[s] = nil
    return
  end
  if o.preauth then
    s:set_state(o.preauth)
    conn:send("* PREAUTH [CAPABILITY " .. s:capabilities() .. "] " .. o.greeting .. "\r\n")
  else
    conn:send("* OK [CAPABILITY " .. s:capabilities() .. "] " .. o.greeting .. "\r\n")
  end
  while not s.done and not srv.closing do
    local cmd, err, spool = read_command(s)
    if cmd then
      s.busy = true
      local ok, herr = xpcall(commands.dispatch, debug.traceback, s, cmd)
      s.busy = false
      for _, fh in ipairs(spool or {}) do pcall(fh.close, fh) end
      if not ok then
        parley.log("imap: " .. tostring(herr))
        s:reply(cmd.tag, "NO", "[SERVERBUG] internal error")
      end
    elseif err then
      if err == "timeout" then
        conn:send("* BYE autologout, idle for too long\r\n")
      end
      break
    end
  end
  if srv.closing and not s.done then conn:send("* BYE server shutting down\r\n") end
  if s.view then s.view:close(); s.view = nil end
  conn:flush()
  srv.sessions[s] = nil
end

local srv_methods = {}
srv_methods.__index = srv_methods

local function is_idle(s) return not s.busy end

--- Stops the server: BYE to every session, then close.
function srv_methods:close(grace)
  return require("parley.server").close_for(self, "* BYE server shutting down\r\n",
    is_idle, grace)
end

--- Number of sessions running (on both listeners).
function srv_methods:connections() return require("parley.server").connections_for(self) end

--- Tells IDLE sessions of this process that `user`'s mailbox changed.
function srv_methods:changed(user, folder)
  local dir = self.opts.store:path(user, folder)
  if dir then V.changed(dir) end
end

--- Tells the sessions of this process that the Maildir `dir` changed.
M.changed = V.changed

--- Starts an IMAP server.
-- @tparam table opts `listen` (address, default "127.0.0.1:1143"),
-- `store` (parley.mail.maildir store, required), `users`
-- (parley.mail.users, required unless `on_auth` decides alone),
-- `greeting` ("parley IMAP ready"), `preauth` (a user name: PREAUTH
-- greeting, for tests), `tls` (`{cert = FILE, key = FILE}` plus any other
-- parley.tls.context option: STARTTLS offered) or `tls_ctx` (a server
-- context), `listen_tls` (address of an implicit-TLS listener, IMAPS:
-- `tls_port`, `tls_address` once started; needs `tls` or `tls_ctx`),
-- `allow_plaintext_auth` (`"loopback"` (default): LOGIN and AUTHENTICATE
-- PLAIN over TLS, and in cleartext from loopback peers; `true`:
-- everywhere; `false`: only over TLS), the hooks, and the limits in
-- `DEFAULTS`; plus parley.serve's `max_connections`, `on_start`,
-- `signals`, `backlog`, `reuseport`, `on_error`, `transcript`.
-- @return server (`port`, `address`, `close([grace])`, `connections()`,
-- `changed(user [, folder])`), or nil, err (a certificate or key that
-- cannot be used, an address in use)
function M.serve(opts)
  if type(opts) ~= "table" then error("serve expects an options table", 2) end
  local o = {}
  for k, v in pairs(M.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  if type(o.store) ~= "table" then error("serve needs a store (parley.mail.maildir)", 2) end
  if not o.users and not o.on_auth and not o.preauth then
    error("serve needs users (parley.mail.users) or an on_auth hook", 2)
  end
  for _, h in ipairs { "on_connect", "on_auth", "on_command" } do
    if o[h] ~= nil and type(o[h]) ~= "function" then error(h .. " must be a function", 2) end
  end
  o.greeting = o.greeting or "parley IMAP ready"
  if o.greeting:find("[\r\n%z]") then error("greeting must be one line", 2) end
  o.allow_plaintext_auth = starttls.plaintext_policy(o.allow_plaintext_auth)
  local ctx, err = require("parley.server").tls_context(o)
  if err then return nil, err end
  o.tls_ctx = ctx
  local srv = setmetatable({ opts = o, sessions = setmetatable({}, { __mode = "k" }) }, srv_methods)
  return require("parley.server").serve_for(srv, o, "127.0.0.1:1143", run_session, {
    timeout = o.login_timeout,
    max_line = o.max_line_unauth + 2,
    transcript_protocol = "imap",
  })
end

return M
