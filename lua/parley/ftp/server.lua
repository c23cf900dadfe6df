--- parley.ftp.server: an FTP server (RFC 959, 2389, 2428, 3659; TLS:
-- RFC 4217).
--
--     local ftp = require "parley.ftp"
--     local srv = ftp.server.serve{ listen = "127.0.0.1:2121",
--       root = "/srv/ftp", anonymous = true,
--       tls = { cert = "ftp.crt", key = "ftp.key" },   -- AUTH TLS, PBSZ, PROT
--       listen_tls = "127.0.0.1:9990" }                 -- implicit FTPS (990 form)
--
-- TLS (RFC 4217): with `tls` (or `tls_ctx`) the plain port offers `AUTH
-- TLS` (`AUTH TLS-C` and `AUTH SSL` are taken as the same) and FEAT lists
-- AUTH TLS, PBSZ and PROT; after the handshake the session starts again
-- as after REIN (logged out, TYPE A, cwd /, PROT C: RFC 4217 section 4.2).
-- `PBSZ 0` then `PROT P` puts data connections in TLS, and by default a
-- data connection must resume the control connection's TLS session
-- (`require_session_reuse`, like vsftpd's require_ssl_reuse): one that
-- does not is closed and the transfer answered 522. A command pipelined
-- behind AUTH TLS in the same segment is never answered: the connection
-- is closed (CVE-2011-0411 class). CCC is refused (534; 533 without TLS).
-- USER/PASS in cleartext are refused (530) except from loopback peers
-- (`allow_plaintext_auth`); anonymous logins stay allowed when configured.
--
-- One task per control connection reads commands; each transfer runs in
-- a task of its own so that ABOR, STAT and QUIT are answered while it runs.
-- Replies keep their order: any other command that arrives during a
-- transfer waits until the transfer's final reply has been sent; ABOR gets
-- 426 (from the transfer) and then 226; QUIT waits for the transfer, then
-- 221.
--
-- Security: every path goes through `parley.ftp.vfs` (normalized, links
-- followed, confined to the user's root); PORT/EPRT may only name the
-- control connection's own IP and a port >= 1024 (RFC 2577 section 3, FTP
-- bounce); a passive data connection from another IP is closed and the
-- server keeps waiting for the client's own; failed logins are delayed and
-- a session is closed after `max_login_failures`.
--
-- Partial uploads: when a STOR or STOU without REST fails (disk full: 452,
-- data connection lost: 426, ABOR), the partial file is removed so that a
-- truncated file is never mistaken for a complete one; after APPE or a
-- STOR resumed with REST the bytes written so far stay (a client resumes
-- from SIZE). `keep_partial = true` keeps them always.
--
-- A command line longer than `max_line` (default 4096) is answered
-- `500 Command line too long` and discarded; the connection stays usable.
-- @module parley.ftp.server
local parley = require "parley"
local core = require "parley.core"
local vfs = require "parley.ftp.vfs"
local users_mod = require "parley.mail.users"
local starttls = require "parley.smtp.starttls"
local authdelay = require "parley.authdelay"
local serving = require "parley.server"
local ftp = core.ftp

local M = {}

--- Default options (each may be set in the table given to `serve`).
-- @table DEFAULTS
M.DEFAULTS = {
  listen = "127.0.0.1:2121",
  banner = "parley FTP server ready",
  anonymous = false,          -- allow USER anonymous / ftp
  anonymous_perms = "r",      -- letters: r read, w write, d delete, m mkdir, n rename
  max_line = 4096,            -- command line limit, CRLF included
  idle_timeout = 300,         -- seconds without a command (no transfer running)
  data_timeout = 60,          -- seconds per data-connection I/O call (one slice)
  accept_timeout = 30,        -- seconds to wait for the data connection
  max_connections = 1000,
  max_per_ip = 20,
  login_delay = 1,            -- seconds before answering a failed PASS
  max_login_failures = 3,     -- then 421 and close
  rate = nil,                 -- bytes per second per session (nil: unlimited)
  -- RETR sendfile slice (progress for STAT). The driver's timeout bounds a
  -- whole call, not a wait for progress, so a slice must go out within
  -- data_timeout: 1 MiB fails only a client slower than ~17 KB/s.
  chunk = 1024 * 1024,
  keep_partial = false,
  pasv_ports = nil,           -- {min, max} or "min-max"; nil: any free port
  pasv_address = nil,         -- string, or function(client_ip, server_ip) -> ip
  xferlog = nil,              -- path, file handle, or function(line)
  -- TLS (RFC 4217): `tls = {cert =, key =}` or `tls_ctx`, `listen_tls`
  allow_plaintext_auth = "loopback", -- true | false | "loopback": USER/PASS in cleartext
  require_session_reuse = true,      -- PROT P data connections must resume the control session
  require_data_tls = false,          -- true: PROT C refused (534), clear transfers 521
  tls_timeout = 30,                  -- seconds for a TLS handshake (control or data)
}

local PERMS = { r = "read", w = "write", d = "delete", m = "mkdir", n = "rename" }

--- Turns permission letters ("rwdmn") into a set.
function M.perms(letters)
  local p = {}
  for c in (letters or ""):gmatch(".") do
    if not PERMS[c] then error("unknown permission letter '" .. c .. "' (use r w d m n)", 2) end
    p[PERMS[c]] = true
  end
  return p
end

--- The FTP accounts of a `parley.mail.users` object (the passwd-file
-- every parley server shares, `name:{PLAIN}secret:uid:gid::home::extra`):
-- the root is the user's `home` (taken under `base` when relative, `base`
-- itself when empty); the permissions are the extra field
-- `ftp_perms=LETTERS` (default "rwdmn": a real user may change files).
-- @param users a `parley.mail.users` object
-- @tparam[opt] string base the server's root
-- @treturn table name -> {root=, perms=}, or nil, err
function M.accounts(users, base)
  local out = {}
  for _, name in ipairs(users:names()) do
    local u = users:get(name)
    local root = u.home
    if root == nil then root = base
    elseif root:sub(1, 1) ~= "/" and base then root = base .. "/" .. root
    elseif root:sub(1, 1) ~= "/" then root = nil end
    if not root then return nil, "user " .. name .. ": no root (a relative or empty home needs the server's root)" end
    local perms = u.extra and u.extra.ftp_perms
    if perms == nil then perms = "rwdmn"
    elseif type(perms) ~= "string" or not perms:match("^[rwdmn]*$") then
      return nil, "user " .. name .. ": ftp_perms wants letters of rwdmn"
    end
    out[name] = { root = root, perms = perms }
  end
  return out
end

--- Reads the shared users file (a Dovecot passwd-file, see
-- `parley.mail.users` and `accounts`).
-- @tparam string path
-- @tparam[opt] string base the server's root
-- @return accounts (name -> {root=, perms=}) and the users object (for
-- password checks), or nil, err
function M.read_users(path, base)
  local users, err = users_mod.load(path)
  if not users then return nil, err end
  local accounts, aerr = M.accounts(users, base)
  if not accounts then return nil, path .. ": " .. aerr end
  return accounts, users
end

-- The `users` option as a users object and accounts: a `parley.mail.users`
-- object, or a table name -> {password=, root=, perms=} (password: plain
-- text, or a crypt(3) hash "$y$...", "$6$..."; perms default "r").
local function table_users(t, base)
  if type(t.check) == "function" then
    local accounts, err = M.accounts(t, base)
    if not accounts then return nil, err end
    return t, accounts
  end
  local entries, accounts = {}, {}
  for name, u in pairs(t) do
    if type(name) ~= "string" or type(u) ~= "table" then
      error("ftp server: users wants name -> {password=, root=, perms=}", 3)
    end
    local pw = u.password
    if type(pw) == "string" and pw:match("^%$[%w]+%$") then entries[name] = { hash = pw }
    else entries[name] = { password = pw } end
    accounts[name] = { root = u.root or base, perms = u.perms or "r" }
  end
  return users_mod.from_table(entries), accounts
end

local function unmap(ip)
  if ip and ip:sub(1, 7) == "::ffff:" and ip:find(".", 8, true) then return ip:sub(8) end
  return ip
end

local function quote_path(p) return '"' .. p:gsub('"', '""') .. '"' end

-- ------------------------------------------------------------------------
-- Sessions
-- ------------------------------------------------------------------------

local session = {}
session.__index = session

function session:reply(code, text)
  local ok, err = self.conn:send(ftp.reply(code, text))
  if not ok then self.dead = err end
end

function session:log_xfer(kind, path, bytes, secs, ok)
  local out = self.srv.xferlog
  if not out then return end
  -- wu-ftpd xferlog(5): current-time transfer-time remote-host file-size
  -- filename transfer-type special-action direction access-mode username
  -- service-name authentication-method authenticated-user-id completion
  local acct = self.account
  local line = ("%s %d %s %d %s %s _ %s %s %s ftp 0 * %s"):format(
    os.date("%a %b %d %H:%M:%S %Y"), math.max(1, math.floor(secs + 0.5)), self.ip, bytes,
    (path:gsub("%s", "_")), self.type == "A" and "a" or "b", kind,
    acct.anonymous and "a" or "r",
    acct.anonymous and (self.anon_pass ~= "" and self.anon_pass:gsub("%s", "_") or "anonymous") or self.user,
    ok and "c" or "i")
  if type(out) == "function" then
    out(line)
  else
    out:write(line, "\n")
    out:flush()
  end
end

-- resolve a path argument; replies 550 on failure
function session:path(arg, leaf)
  local view = self.account.view
  local v, real, exists
  if leaf then v, real, exists = view:resolve_leaf(self.cwd, arg)
  else v, real, exists = view:resolve(self.cwd, arg) end
  if not v then
    self:reply(550, (arg or "") .. ": " .. (real or "no such file or directory"))
    return nil
  end
  return v, real, exists
end

-- 550 for a path that is not a regular file: says whether it is missing
-- (`a` nil) or something else, such as a directory
function session:not_a_file(arg, a)
  self:reply(550, arg .. (a and ": not a regular file." or ": no such file or directory."))
end

function session:can(perm)
  if self.account.perms[perm] then return true end
  self:reply(550, "Permission denied.")
  return false
end

function session:close_pasv()
  if self.pasv then self.pasv:close() end
  self.pasv = nil
end

-- throttle: sleep so that `done` bytes since `t0` stay under the rate
function session:throttle(t0, done)
  local rate = self.srv.opts.rate
  if not rate then return end
  local ahead = done / rate - (parley.now() - t0)
  if ahead > 0 then parley.sleep(ahead) end
end

-- ------------------------------------------------------------------------
-- Data connections
-- ------------------------------------------------------------------------

local function listen_pasv(s, ip)
  local o = s.srv.opts
  local host = ip:find(":", 1, true) and "[" .. ip .. "]" or ip
  local range = s.srv.pasv_range
  if not range then return parley.listen(host .. ":0", { backlog = 4 }) end
  local lo, hi = range[1], range[2]
  local n = hi - lo + 1
  local start = math.random(0, n - 1)
  local l, err
  for i = 0, n - 1 do
    l, err = parley.listen(host .. ":" .. (lo + (start + i) % n), { backlog = 4 })
    if l then return l end
  end
  return nil, err or ("no free port in " .. lo .. "-" .. hi .. (o and "" or ""))
end

-- PROT P: the data connection's handshake (the FTP server is always the
-- TLS server, RFC 4217 section 7), and the session reuse that proves the
-- data connection comes from the client of the control connection
-- (section 10.2: a refusal for this reason is a 522 that says so).
-- Returns true, or nil, err, code, text.
local function secure_data(s, data)
  local o = s.srv.opts
  -- no session tickets: a client that only uploads never reads them, and
  -- its close with unread bytes is a reset that can lose the upload's end
  local ok, err = data:starttls(s.srv.tls_ctx, { timeout = o.tls_timeout, tickets = 0 })
  if not ok then
    return nil, err, 522, "Data connection TLS negotiation failed: " .. tostring(err) .. "."
  end
  if o.require_session_reuse and not data:tlsinfo().session_reused then
    return nil, "no session reuse", 522, "Data connection refused: TLS session reuse required " ..
      "(resume the control connection's TLS session)."
  end
  return true
end

-- In the transfer task: sends 150 then opens the data connection.
-- Returns the data stream, or nil, err[, code, text] (the reply to send).
local function open_data(s, x, mark)
  s:reply(150, mark)
  s.conn:flush()
  local o = s.srv.opts
  local data, err
  if x.listener then
    local deadline = parley.now() + o.accept_timeout
    while true do
      local left = deadline - parley.now()
      if left <= 0 then err = "timeout" break end
      data, err = x.listener:accept(left)
      if not data then break end
      local ip = unmap((data:getpeername()))
      if ip == s.ip then break end
      -- RFC 2577 section 5 / vsftpd's pasv_promiscuous=NO: only the client
      parley.log(("ftp: refused passive data connection from %s (control from %s)"):format(ip, s.ip))
      data:close()
      data = nil
    end
    x.listener:close()
    if s.pasv == x.listener then s.pasv = nil end
  else
    data, err = parley.connect(x.port_ip, x.port_port, { connect_timeout = o.accept_timeout })
  end
  if not data then return nil, err end
  data:settimeout(o.data_timeout)
  x.data = data
  if s.prot == "P" then
    local ok, code, text
    ok, err, code, text = secure_data(s, data)
    if not ok then
      data:close()
      x.data = nil
      parley.log(("ftp: data connection from %s: %s"):format(s.ip, err))
      if x.aborted then return nil, "aborted" end
      return nil, err, code, text
    end
  end
  data = require("parley.transcript").follow(data, s.conn, "ftp-data", "server")
  if s.prot == "P" then starttls.record(data) end
  x.data = data
  if x.aborted then data:close() return nil, "aborted" end
  return data
end

local function end_data(x)
  if x.data then
    x.data:close()
    x.data = nil
  end
end

-- Runs `body(data, x)` in a task of its own; body returns ok, code, text.
local function start_transfer(s, mark, body, after)
  local x = { bytes = 0, started = parley.now(), mark = mark }
  if s.pasv then
    x.listener = s.pasv
    s.pasv = nil
  elseif s.port_ip then
    x.port_ip, x.port_port = s.port_ip, s.port_port
    s.port_ip, s.port_port = nil, nil
  else
    s:reply(425, "Use PORT, PASV, EPRT or EPSV first.")
    if after then after(false) end
    return
  end
  if s.prot ~= "P" and s.srv.opts.require_data_tls then
    -- RFC 4217 section 10.2: refused before any 1xx
    if x.listener then x.listener:close() end
    s:reply(521, "Data connection cannot be opened with this PROT setting: use PBSZ 0 and PROT P.")
    if after then after(false) end
    return
  end
  s.rest = 0
  s.xfer = x
  x.task = parley.spawn(function()
    local ok, code, text
    local data, err, ecode, etext = open_data(s, x, mark)
    if not data then
      if x.aborted then
        ok, code, text = false, 426, "Connection closed; transfer aborted."
      elseif ecode then
        ok, code, text = false, ecode, etext
      else
        ok, code, text = false, 425, "Can't open data connection: " .. tostring(err) .. "."
      end
    else
      local pok, a, b, c = pcall(body, data, x)
      if not pok then
        parley.log("ftp: transfer failed: " .. tostring(a))
        ok, code, text = false, 451, "Local error in processing."
      else
        ok, code, text = a, b, c
      end
      if x.aborted then ok, code, text = false, 426, "Connection closed; transfer aborted." end
    end
    end_data(x)
    if after then after(ok, x) end
    s:reply(code, text)
    s.xfer = nil
    s.xfer_done:broadcast()
  end)
end

-- wait for a running transfer to end (its final reply is then queued)
local function wait_transfer(s)
  while s.xfer do s.xfer_done:wait() end
end

local function abort_transfer(s)
  local x = s.xfer
  x.aborted = true
  if x.listener then x.listener:close() end
  if x.data then
    x.data:settimeout(0)
    x.data:close()
  end
  wait_transfer(s)
end

-- ------------------------------------------------------------------------
-- Transfers
-- ------------------------------------------------------------------------

local function send_file(s, data, x, fh, offset, size)
  local o = s.srv.opts
  if s.type == "A" then
    local enc = ftp.ascii_encoder()
    fh:seek("set", offset)
    while true do
      local chunk = fh:read(65536)
      if not chunk then break end
      local ok, err = data:send(enc:feed(chunk))
      if not ok then return nil, err end
      x.bytes = x.bytes + #chunk
      s:throttle(x.started, x.bytes)
      if x.aborted then return nil, "aborted" end
    end
    return true
  end
  local slice = o.chunk
  if o.rate then slice = math.max(4096, math.min(slice, math.floor(o.rate / 10))) end
  local pos, left = offset, size - offset
  while left > 0 do
    local n = math.min(slice, left)
    local sent, err, part = data:sendfile(fh, pos, n)
    if not sent then
      x.bytes = x.bytes + (part or 0)
      return nil, err
    end
    pos, left = pos + sent, left - sent
    x.bytes = x.bytes + sent
    if sent < n then break end
    s:throttle(x.started, x.bytes)
  end
  return true
end

local STOR_SLICE = 262144   -- one driver read buffer; ~4.4 KB/s at data_timeout 60

local function recv_file(s, data, x, fh)
  local o = s.srv.opts
  if s.type == "A" then
    local dec = ftp.ascii_decoder()
    local werr
    local n, err = data:receive_to(function(chunk)
      if chunk == nil then
        local tail = dec:finish()
        if tail ~= "" then
          local ok, e = fh:write(tail)
          if not ok then werr = e return nil end
        end
        return true
      end
      x.bytes = x.bytes + #chunk
      local ok, e = fh:write(dec:feed(chunk))
      if not ok then werr = e return nil, e end
      s:throttle(x.started, x.bytes)
      return true
    end)
    if not n then return nil, werr or err end
    local ok, e = fh:flush()
    if not ok then return nil, e end
    return true
  end
  -- TYPE I: the driver moves socket bytes to the file descriptor, no Lua
  -- strings. Slices of STOR_SLICE (or a tenth of a second at the rate):
  -- the data timeout bounds one receive_to call, so one call for the whole
  -- upload would fail any upload longer than data_timeout.
  local slice = o.rate and math.max(4096, math.min(STOR_SLICE, math.floor(o.rate / 10))) or STOR_SLICE
  while true do
    local n, err, part = data:receive_to(fh, slice)
    if not n then
      x.bytes = x.bytes + (part or 0)
      if err == "closed" then return true end
      return nil, err
    end
    x.bytes = x.bytes + n
    s:throttle(x.started, x.bytes)
  end
end

local function io_failure(err)
  err = tostring(err)
  if err:find("space", 1, true) or err:find("quota", 1, true) or err:find("too large", 1, true) then
    return 452, "Insufficient storage space: " .. err .. "."
  elseif err == "aborted" then
    return 426, "Connection closed; transfer aborted."
  elseif err == "closed" or err:find("reset", 1, true) or err:find("pipe", 1, true)
      or err == "timeout" then
    return 426, "Connection closed; transfer aborted (" .. err .. ")."
  end
  return 451, "Local error: " .. err .. "."
end

-- ------------------------------------------------------------------------
-- Commands
-- ------------------------------------------------------------------------

local C = {}          -- verb -> function(s, arg)
local NO_LOGIN = { USER = true, PASS = true, QUIT = true, FEAT = true, HELP = true,
                   NOOP = true, SYST = true, OPTS = true, AUTH = true, PBSZ = true,
                   PROT = true, CCC = true }
local NEEDS_ARG = { USER = true, PASS = false, CWD = true, MKD = true, RMD = true,
                    DELE = true, RNFR = true, RNTO = true, RETR = true, STOR = true,
                    APPE = true, REST = true, SIZE = true, MDTM = true, TYPE = true,
                    MODE = true, STRU = true, PORT = true, EPRT = true, OPTS = true,
                    AUTH = true, PBSZ = true, PROT = true }

local function is_anonymous(name) return name == "anonymous" or name == "ftp" end

function C.USER(s, arg)
  s.user, s.account, s.anon_pass = nil, nil, nil
  local o = s.srv.opts
  local anon = is_anonymous(arg:lower()) and o.anonymous
  if not anon and not starttls.plaintext_allowed(o.allow_plaintext_auth, s.ip, s.tls ~= nil) then
    -- RFC 4217 section 10.1: a server may deny USER before TLS
    if s.srv.tls_ctx then
      return s:reply(530, "Login in cleartext refused: use AUTH TLS first (the password would travel unencrypted).")
    end
    return s:reply(530, "Login in cleartext refused and this server has no TLS (allow_plaintext_auth).")
  end
  s.user = arg
  if anon then
    s:reply(331, "Anonymous login ok, send your e-mail address as password.")
  else
    s:reply(331, "Password required for " .. arg .. ".")
  end
end

local function make_account(s, name, acct)
  local view, err = acct.view
  if not view then
    view, err = vfs.new(acct.root)
    if not view then return nil, err end
  end
  local perms = acct.perms
  if type(perms) ~= "table" then perms = M.perms(perms or "r") end
  return { name = name, view = view, perms = perms, anonymous = acct.anonymous }
end

function C.PASS(s, arg)
  if not s.user then return s:reply(503, "Login with USER first.") end
  if s.account then return s:reply(230, "Already logged in.") end
  local srv, o = s.srv, s.srv.opts
  arg = arg or ""
  local acct
  if o.on_auth then
    acct = o.on_auth(s.user, arg, s)
  else
    if is_anonymous(s.user:lower()) and o.anonymous then
      acct = { root = o.anonymous_root or o.root, perms = o.anonymous_perms, anonymous = true }
      s.anon_pass = arg
    elseif srv.users and srv.users:check(s.user, arg) then
      -- the record's own spelling of the name (user@Domain compares caseless)
      acct = srv.accounts[srv.users:get(s.user).name]
    end
  end
  local account, err
  if acct then account, err = make_account(s, s.user, acct) end
  if not account then
    if err then parley.log("ftp: login of " .. s.user .. " failed: " .. err) end
    s.failures = s.failures + 1
    s.user = nil
    s.conn:flush()
    authdelay.of(o):failed(s.ip, o.login_delay)   -- grows with the address's failures
    if s.failures >= o.max_login_failures then
      s:reply(421, "Too many failed logins, closing control connection.")
      s.quit = true
      return
    end
    return s:reply(530, "Login incorrect.")
  end
  if not account.anonymous then authdelay.of(o):succeeded(s.ip) end
  s.account = account
  s.cwd = "/"
  s:reply(230, account.anonymous and "Anonymous access granted, restrictions apply."
                 or ("User " .. s.user .. " logged in."))
end

function C.QUIT(s)
  s:reply(221, "Goodbye.")
  s.quit = true
end

function C.NOOP(s) s:reply(200, "NOOP ok.") end
function C.SYST(s) s:reply(215, "UNIX Type: L8") end
function C.ALLO(s) s:reply(202, "ALLO command ignored.") end
function C.ACCT(s) s:reply(202, "ACCT command ignored.") end
-- TLS (RFC 4217) ------------------------------------------------------------

-- what AUTH resets "almost as if a REIN command was issued" (RFC 4217 4.2)
function session:reset()
  self.user, self.account, self.anon_pass, self.rnfr, self.facts = nil, nil, nil, nil, nil
  self.cwd, self.type, self.rest, self.epsv_all = "/", "A", 0, nil
  self.prot, self.pbsz = "C", false
  self:close_pasv()
  self.port_ip, self.port_port = nil, nil
end

local AUTH_TLS = { TLS = true, ["TLS-C"] = true, SSL = true }

function C.AUTH(s, arg)
  local ctx = s.srv.tls_ctx
  if not ctx then return s:reply(502, "AUTH not available: this server has no TLS certificate.") end
  local mech = arg:upper()
  if not AUTH_TLS[mech] then return s:reply(504, "AUTH " .. arg .. " not supported: use AUTH TLS.") end
  if s.tls then return s:reply(503, "TLS already active.") end
  s:reply(234, "Proceed with TLS negotiation (AUTH " .. mech .. ").")
  local info, err = starttls.upgrade(s.conn, ctx, { timeout = s.srv.opts.tls_timeout })
  if not info then
    -- "data after starttls": a command pipelined behind AUTH is never
    -- answered; a failed handshake leaves the connection in an unknown state
    parley.log(("ftp: AUTH TLS from %s: %s; closing"):format(s.ip, err))
    s.dead = err
    return
  end
  s.tls = info
  s:reset()
end

function C.PBSZ(s, arg)
  if not s.tls then return s:reply(503, "PBSZ needs AUTH TLS first.") end
  if not ftp.parse_size(arg) then return s:reply(501, "PBSZ needs a decimal number.") end
  s.pbsz = true
  -- TLS is a stream: the buffer size is always 0 (RFC 4217 section 9)
  s:reply(200, "PBSZ=0")
end

function C.PROT(s, arg)
  if not s.tls then return s:reply(503, "PROT needs AUTH TLS first.") end
  if not s.pbsz then return s:reply(503, "PROT needs PBSZ 0 first.") end
  local level = arg:upper()
  if level == "P" then
    s.prot = "P"
    return s:reply(200, "Protection level set to P (data connections in TLS).")
  elseif level == "C" then
    if s.srv.opts.require_data_tls then
      return s:reply(534, "PROT C refused by policy: data connections must use TLS (PROT P).")
    end
    s.prot = "C"
    return s:reply(200, "Protection level set to C (data connections in cleartext).")
  elseif level == "S" or level == "E" then
    return s:reply(536, "PROT " .. level .. " not supported with TLS: use P or C.")
  end
  s:reply(504, "Unknown protection level " .. arg .. ".")
end

function C.CCC(s)
  -- RFC 4217 section 15.3: clearing the control connection lets anyone
  -- in the path inject commands; never allowed here
  if not s.tls then return s:reply(533, "Control connection is not protected.") end
  s:reply(534, "CCC refused: the control connection stays encrypted.")
end

local FEATURES = { " EPRT", " EPSV", " MDTM", " MLST type*;size*;modify*;perm*;unix.mode*;",
                   " PASV", " REST STREAM", " SIZE", " TVFS", " UTF8" }
local TLS_FEATURES = { " AUTH TLS", " PBSZ", " PROT" }   -- RFC 4217 section 6

function C.FEAT(s)
  local lines = { "Features:" }
  if s.srv.tls_ctx then table.move(TLS_FEATURES, 1, #TLS_FEATURES, 2, lines) end
  table.move(FEATURES, 1, #FEATURES, #lines + 1, lines)
  lines[#lines + 1] = "End"
  s:reply(211, lines)
end

function C.HELP(s)
  local verbs = {}
  for v in pairs(C) do verbs[#verbs + 1] = v end
  table.sort(verbs)
  local lines = { "The following commands are recognized:" }
  for i = 1, #verbs, 8 do
    lines[#lines + 1] = " " .. table.concat(verbs, " ", i, math.min(i + 7, #verbs))
  end
  lines[#lines + 1] = "Help OK."
  s:reply(214, lines)
end

function C.OPTS(s, arg)
  local name, rest = arg:match("^(%S+)%s*(.*)$")
  name = (name or ""):upper()
  if name == "UTF8" then
    if rest:upper() == "ON" or rest == "" then return s:reply(200, "Always in UTF8 mode.") end
    return s:reply(504, "UTF8 cannot be turned off.")
  elseif name == "MLST" then
    local facts = {}
    for f in rest:gmatch("([^;]+);") do
      f = f:lower()
      if f == "type" or f == "size" or f == "modify" or f == "perm" or f == "unix.mode" then
        facts[#facts + 1] = f
      end
    end
    s.facts = facts
    return s:reply(200, "MLST OPTS " .. table.concat(facts, ";") .. (#facts > 0 and ";" or ""))
  end
  s:reply(501, "Option not understood.")
end

function C.PWD(s) s:reply(257, quote_path(s.cwd) .. " is the current directory.") end
C.XPWD = C.PWD

function C.CWD(s, arg)
  local v, real, exists = s:path(arg)
  if not v then return end
  local a = exists and s.account.view:stat(real)
  if not a or a.type ~= "dir" then return s:reply(550, arg .. ": not a directory.") end
  s.cwd = v
  s:reply(250, "Directory successfully changed.")
end
C.XCWD = C.CWD

function C.CDUP(s) C.CWD(s, "..") end
C.XCUP = C.CDUP

function C.MKD(s, arg)
  if not s:can("mkdir") then return end
  local v, real, exists = s:path(arg, true)
  if not v then return end
  if exists then return s:reply(550, arg .. ": file exists.") end
  local ok, err = s.account.view:mkdir(real)
  if not ok then return s:reply(550, arg .. ": " .. tostring(err)) end
  s:reply(257, quote_path(v) .. " created.")
end
C.XMKD = C.MKD

function C.RMD(s, arg)
  if not s:can("delete") then return end
  local v, real, exists = s:path(arg, true)
  if not v then return end
  local a = exists and s.account.view:lstat(real)
  if not a or a.type ~= "dir" then return s:reply(550, arg .. ": not a directory.") end
  local ok, err = s.account.view:rmdir(real)
  if not ok then return s:reply(550, arg .. ": " .. tostring(err)) end
  s:reply(250, "Directory removed.")
end
C.XRMD = C.RMD

function C.DELE(s, arg)
  if not s:can("delete") then return end
  local v, real, exists = s:path(arg, true)
  if not v then return end
  local a = exists and s.account.view:lstat(real)
  if not a then return s:reply(550, arg .. ": no such file.") end
  if a.type == "dir" then return s:reply(550, arg .. ": is a directory.") end
  local ok, err = s.account.view:unlink(real)
  if not ok then return s:reply(550, arg .. ": " .. tostring(err)) end
  s:log_xfer("d", v, a.size or 0, 0, true)
  s:reply(250, "File deleted.")
end

function C.RNFR(s, arg)
  if not s:can("rename") then return end
  local v, real, exists = s:path(arg, true)
  if not v then return end
  if not exists then return s:reply(550, arg .. ": no such file or directory.") end
  s.rnfr = real
  s:reply(350, "Ready for RNTO.")
end

function C.RNTO(s, arg)
  local from = s.rnfr
  s.rnfr = nil
  if not from then return s:reply(503, "RNFR required first.") end
  if not s:can("rename") then return end
  local v, real = s:path(arg, true)
  if not v then return end
  local ok, err = s.account.view:rename(from, real)
  if not ok then return s:reply(550, arg .. ": " .. tostring(err)) end
  s:reply(250, "Rename successful.")
end

function C.TYPE(s, arg)
  local t = arg:upper():gsub("%s+", " ")
  if t == "I" or t == "L 8" or t == "L8" then
    s.type = "I"
    return s:reply(200, "Switching to Binary mode.")
  elseif t == "A" or t == "A N" then
    s.type = "A"
    return s:reply(200, "Switching to ASCII mode.")
  elseif t:match("^[AEIL]") then
    return s:reply(504, "Type not supported.")
  end
  s:reply(501, "Unrecognised TYPE.")
end

function C.MODE(s, arg)
  if arg:upper() == "S" then return s:reply(200, "Mode set to S.") end
  s:reply(504, "Only MODE S is supported.")
end

function C.STRU(s, arg)
  if arg:upper() == "F" then return s:reply(200, "Structure set to F.") end
  s:reply(504, "Only STRU F is supported.")
end

function C.REST(s, arg)
  local n = ftp.parse_size(arg)
  if not n then return s:reply(501, "REST needs a non-negative number.") end
  s.rest = n
  s:reply(350, "Restarting at " .. n .. ". Send STOR or RETR.")
end

function C.SIZE(s, arg)
  local v, real, exists = s:path(arg)
  if not v then return end
  local a = exists and s.account.view:stat(real)
  if not a or a.type ~= "file" then return s:not_a_file(arg, a) end
  s:reply(213, tostring(a.size))
end

function C.MDTM(s, arg)
  local v, real, exists = s:path(arg)
  if not v then return end
  local a = exists and s.account.view:stat(real)
  if not a or a.type ~= "file" then return s:not_a_file(arg, a) end
  s:reply(213, ftp.format_time(math.floor(a.mtime)))
end

-- data connection setup ----------------------------------------------------

function C.PASV(s)
  if s.epsv_all then return s:reply(501, "PASV not allowed after EPSV ALL.") end
  if s.local_ip:find(":", 1, true) then return s:reply(425, "Use EPSV with IPv6.") end
  s:close_pasv()
  s.port_ip = nil
  local l, err = listen_pasv(s, s.local_ip)
  if not l then return s:reply(425, "Can't open passive connection: " .. tostring(err) .. ".") end
  s.pasv = l
  local announce = s.srv.opts.pasv_address
  if type(announce) == "function" then announce = announce(s.ip, s.local_ip) end
  local text, ferr = ftp.format_pasv(announce or s.local_ip, l:port())
  if not text then
    s:close_pasv()
    return s:reply(425, "Bad passive address: " .. tostring(ferr) .. ".")
  end
  s:reply(227, text)
end

function C.EPSV(s, arg)
  if arg then
    local a = arg:upper()
    if a == "ALL" then
      s.epsv_all = true
      return s:reply(200, "EPSV ALL ok.")
    end
    local fam = s.local_ip:find(":", 1, true) and "2" or "1"
    if a ~= "1" and a ~= "2" then return s:reply(522, "Network protocol not supported, use (1,2)") end
    if a ~= fam then return s:reply(522, "Network protocol not supported, use (" .. fam .. ")") end
  end
  s:close_pasv()
  s.port_ip = nil
  local l, err = listen_pasv(s, s.local_ip)
  if not l then return s:reply(425, "Can't open passive connection: " .. tostring(err) .. ".") end
  s.pasv = l
  s:reply(229, ftp.format_epsv(l:port()))
end

local function set_port(s, ip, port)
  -- RFC 2577 section 3 (FTP bounce): only back to the client, and never to
  -- a privileged port
  if unmap(ip) ~= s.ip then return s:reply(504, "Data connection only to the client's own address.") end
  if port < 1024 then return s:reply(504, "Data connection to a privileged port refused.") end
  s:close_pasv()
  s.port_ip, s.port_port = ip, port
  s:reply(200, "PORT command successful. Consider using PASV.")
end

function C.PORT(s, arg)
  if s.epsv_all then return s:reply(501, "PORT not allowed after EPSV ALL.") end
  local ip, port = ftp.parse_port(arg)
  if not ip then return s:reply(501, "Illegal PORT command: " .. port .. ".") end
  set_port(s, ip, port)
end

function C.EPRT(s, arg)
  if s.epsv_all then return s:reply(501, "EPRT not allowed after EPSV ALL.") end
  local ip, port = ftp.parse_eprt(arg)
  if not ip then
    if port == "unsupported network protocol" then
      return s:reply(522, "Network protocol not supported, use (1,2)")
    end
    return s:reply(501, "Illegal EPRT command: " .. port .. ".")
  end
  set_port(s, ip, port)
end

-- transfers -----------------------------------------------------------------

function C.RETR(s, arg)
  if not s:can("read") then return end
  local v, real, exists = s:path(arg)
  if not v then return end
  local a = exists and s.account.view:stat(real)
  if not a or a.type ~= "file" then return s:not_a_file(arg, a) end
  local offset = s.rest
  if offset > a.size then
    s.rest = 0
    return s:reply(554, "Restart position " .. offset .. " beyond the end of file (" .. a.size .. ").")
  end
  local fh, err = io.open(real, "rb")
  if not fh then return s:reply(550, arg .. ": " .. tostring(err)) end
  local mark = ("Opening %s mode data connection for %s (%d bytes)."):format(
    s.type == "A" and "ASCII" or "BINARY", arg, a.size)
  start_transfer(s, mark, function(data, x)
    local ok, e = send_file(s, data, x, fh, offset, a.size)
    if not ok then return false, io_failure(e) end
    return true, 226, "Transfer complete."
  end, function(ok, x)
    fh:close()
    if x then s:log_xfer("o", v, x.bytes, parley.now() - x.started, ok) end
  end)
end

local function store(s, arg, how)
  if not s:can("write") then return end
  local v, real, exists
  if how == "unique" then
    local base = arg and arg ~= "" and arg or "ftp"
    for i = 0, 99 do
      local name = i == 0 and base or (base .. "." .. i)
      v, real, exists = s:path(name)
      if not v then return end
      if not exists then arg = name break end
    end
    if exists then return s:reply(550, "Cannot find a unique name.") end
  else
    v, real, exists = s:path(arg)
    if not v then return end
  end
  local a = exists and s.account.view:stat(real)
  if a and a.type ~= "file" then return s:not_a_file(arg, a) end
  local offset = s.rest
  local fh, err
  if how == "append" then
    fh, err = io.open(real, "ab")
  elseif offset > 0 then
    if not a or offset > a.size then
      s.rest = 0
      return s:reply(554, "Restart position " .. offset .. " beyond the end of file (" .. (a and a.size or 0) .. ").")
    end
    fh, err = io.open(real, "r+b")
    if fh then fh:seek("set", offset) end
  else
    fh, err = io.open(real, "wb")
  end
  if not fh then return s:reply(550, arg .. ": " .. tostring(err)) end
  local keep = s.srv.opts.keep_partial or how == "append" or offset > 0
  local mark = how == "unique" and ("FILE: " .. arg)
    or ("Ok to send data (%s mode)."):format(s.type == "A" and "ASCII" or "BINARY")
  start_transfer(s, mark, function(data, x)
    local ok, e = recv_file(s, data, x, fh)
    if ok then
      ok, e = fh:close()
      fh = nil
    end
    if not ok then return false, io_failure(e) end
    return true, 226, how == "unique" and ("Transfer complete (unique file name: " .. arg .. ").")
                                        or "Transfer complete."
  end, function(ok, x)
    if fh then fh:close() end
    if not ok and not keep then os.remove(real) end
    if x then s:log_xfer("i", v, x.bytes, parley.now() - x.started, ok) end
  end)
end

function C.STOR(s, arg) store(s, arg, "write") end
function C.APPE(s, arg) store(s, arg, "append") end
function C.STOU(s, arg) store(s, arg, "unique") end

-- listings ------------------------------------------------------------------

local function strip_ls_opts(arg)
  if not arg then return nil end
  -- "LIST -la dir": ls options some clients send (vsftpd accepts them too)
  while true do
    local rest = arg:match("^%-%a+%s*(.*)$")
    if not rest then break end
    arg = rest
  end
  if arg == "" then return nil end
  return arg
end

local function perm_fact(acct, e)
  local p = acct.perms
  if e.type == "dir" or e.type == "cdir" or e.type == "pdir" then
    return "el" .. (p.write and "c" or "") .. (p.delete and "d" or "") ..
           (p.rename and "f" or "") .. (p.mkdir and "m" or "") .. (p.delete and "p" or "")
  end
  return (p.write and "a" or "") .. (p.delete and "d" or "") .. (p.rename and "f" or "") ..
         (p.read and "r" or "") .. (p.write and "w" or "")
end

local function facts_line(s, e, name)
  local entry = { name = name or e.name, type = e.type, size = e.type == "file" and e.size or nil,
                  modify = math.floor(e.mtime), perm = perm_fact(s.account, e),
                  mode = e.mode }
  if entry.type == "link" then entry.type = "file" end
  local which = s.facts or { "type", "size", "modify", "perm", "unix.mode" }
  return ftp.format_facts(entry, which)
end

-- A shell wildcard of one path component as a Lua pattern: * and ? never
-- match "/"; [set] and [!set] as sh has them.
local function glob_pattern(g)
  local out, i = { "^" }, 1
  while i <= #g do
    local c = g:sub(i, i)
    local set = c == "[" and g:match("^%[(!?%]?[^%]]*)%]", i)
    if c == "*" then out[#out + 1] = "[^/]*"
    elseif c == "?" then out[#out + 1] = "[^/]"
    elseif set then
      local neg = set:sub(1, 1) == "!"
      if neg then set = set:sub(2) end
      out[#out + 1] = "[" .. (neg and "^" or "") .. set:gsub("[%%%^]", "%%%0") .. "]"
      i = i + #set + (neg and 1 or 0) + 1
    else out[#out + 1] = c:gsub("%W", "%%%0") end
    i = i + 1
  end
  out[#out + 1] = "$"
  return table.concat(out)
end

-- entries of the directory `dir` matching the wildcard `leaf`, named
-- `prefix` .. name as `ls dir/*.txt` names them (vsftpd expands LIST and
-- NLST arguments this way too: the classic client's mget relies on it)
local function glob_entries(s, dir, prefix, leaf)
  local view = s.account.view
  local v, real, exists = s:path(dir)
  if not v then return nil end
  local a = exists and view:stat(real)
  if not (a and a.type == "dir") then
    s:reply(550, prefix .. leaf .. ": no such file or directory.")
    return nil
  end
  local entries, err = view:list(real)
  if not entries then s:reply(550, dir .. ": " .. tostring(err)) return nil end
  local pat, out = glob_pattern(leaf), {}
  local dots = leaf:sub(1, 1) == "."   -- a leading dot is matched only by one (sh)
  for _, e in ipairs(entries) do
    if e.name:find(pat) and (dots or e.name:sub(1, 1) ~= ".") then
      e.name = prefix .. e.name
      out[#out + 1] = e
    end
  end
  if #out == 0 then s:reply(550, prefix .. leaf .. ": no such file or directory.") return nil end
  table.sort(out, function(x, y) return x.name < y.name end)
  return out
end

-- listing entries for a directory, a single file or a wildcard in the
-- last component of a path that does not exist: entries, "dir" | "file" |
-- "glob", the virtual path
local function listing(s, arg)
  local view = s.account.view
  local v, real, exists = s:path(arg)
  if not v then return nil end
  if not exists then
    local prefix, leaf = (arg or ""):match("^(.-)([^/]*)$")
    if leaf:find("[*?[]") then
      local entries = glob_entries(s, prefix == "" and "." or prefix, prefix, leaf)
      return entries, "glob", v
    end
    s:reply(550, (arg or v) .. ": no such file or directory.")
    return nil
  end
  local a = view:stat(real)
  if a and a.type == "dir" then
    local entries, err = view:list(real)
    if not entries then s:reply(550, (arg or v) .. ": " .. tostring(err)) return nil end
    return entries, "dir", v
  end
  local e = view:lstat(real) or a
  e.name = arg or v:match("[^/]*$")
  return { e }, "file", v
end

local function send_lines(lines)
  return function(data, x)
    local text = #lines > 0 and (table.concat(lines, "\r\n") .. "\r\n") or ""
    local ok, err = data:send(text)
    if ok then ok, err = data:flush() end
    if not ok then return false, io_failure(err) end
    x.bytes = #text
    return true, 226, "Directory send OK."
  end
end

function C.LIST(s, arg)
  if not s:can("read") then return end
  local entries = listing(s, strip_ls_opts(arg))
  if not entries then return end
  local now, lines = os.time(), {}
  for _, e in ipairs(entries) do
    local line = ftp.format_list_line({ name = e.name, type = e.type, size = e.size,
      mtime = math.floor(e.mtime), mode = e.mode, nlink = e.nlink, target = e.target }, now)
    if line then lines[#lines + 1] = line end
  end
  start_transfer(s, "Here comes the directory listing.", send_lines(lines))
end

function C.NLST(s, arg)
  if not s:can("read") then return end
  arg = strip_ls_opts(arg)
  local entries, kind = listing(s, arg)
  if not entries then return end
  local lines = {}
  for _, e in ipairs(entries) do
    if not e.name:find("[\r\n]") then lines[#lines + 1] = e.name end
  end
  if kind == "file" then lines = { arg } end
  start_transfer(s, "Here comes the directory listing.", send_lines(lines))
end

function C.MLSD(s, arg)
  if not s:can("read") then return end
  local entries, kind, v = listing(s, arg)
  if not entries then return end
  if kind ~= "dir" then return s:reply(501, (arg or v) .. ": not a directory.") end
  local lines = {}
  local view = s.account.view
  local _, real = view:resolve(s.cwd, arg or "")
  local self_e = view:stat(real)
  if self_e then
    self_e.type = "cdir"
    local l = facts_line(s, self_e, ".")
    if l then lines[1] = l end
    self_e.type = "dir"
  end
  for _, e in ipairs(entries) do
    if e.type == "link" then
      local t = view:stat(real .. "/" .. e.name)
      if t then t.name = e.name e = t end
    end
    local l = facts_line(s, e)
    if l then lines[#lines + 1] = l end
  end
  start_transfer(s, "Here comes the directory listing.", send_lines(lines))
end

function C.MLST(s, arg)
  if not s:can("read") then return end
  local v, real, exists = s:path(arg)
  if not v then return end
  local a = exists and s.account.view:stat(real)
  if not a then return s:reply(550, (arg or v) .. ": no such file or directory.") end
  local line = facts_line(s, a, v)
  if not line then return s:reply(550, "Cannot list that name.") end
  s:reply(250, { "Listing " .. v, " " .. line, "End" })
end

function C.STAT(s, arg)
  if not arg then
    local o = s.srv.opts
    return s:reply(211, {
      "FTP server status:",
      "     Connected to " .. s.ip,
      "     Logged in as " .. (s.account and s.user or "(nobody)"),
      "     TYPE: " .. (s.type == "A" and "ASCII" or "BINARY"),
      "     Idle timeout: " .. o.idle_timeout .. " s; data timeout: " .. o.data_timeout .. " s",
      "     Rate limit: " .. (o.rate and (o.rate .. " bytes/s") or "none"),
      "     Control connection: " .. (s.tls and ("TLS (" .. s.tls.version .. ", " .. s.tls.cipher .. ")")
        or "cleartext") .. "; data connections: " .. (s.prot == "P" and "TLS (PROT P)" or "cleartext (PROT C)"),
      "End of status",
    })
  end
  if not s.account then return s:reply(530, "Please login with USER and PASS.") end
  if not s.account.perms.read then return s:reply(550, "Permission denied.") end
  local entries = listing(s, strip_ls_opts(arg))
  if not entries then return end
  local lines, now = { "Status of " .. arg .. ":" }, os.time()
  for _, e in ipairs(entries) do
    local l = ftp.format_list_line({ name = e.name, type = e.type, size = e.size,
      mtime = math.floor(e.mtime), mode = e.mode, nlink = e.nlink, target = e.target }, now)
    if l then lines[#lines + 1] = l end
  end
  lines[#lines + 1] = "End of status"
  s:reply(213, lines)
end

function C.ABOR(s)
  -- no transfer running (the running case is handled in the command loop)
  s:close_pasv()
  s:reply(225, "No transfer to abort.")
end

M.commands = C

-- ------------------------------------------------------------------------
-- The control connection
-- ------------------------------------------------------------------------

local function dispatch(s, verb, arg)
  local o = s.srv.opts
  if o.on_command and o.on_command(s, verb, arg) then return end
  local fn = C[verb]
  if not fn then return s:reply(502, verb .. " not implemented.") end
  if not s.account and not NO_LOGIN[verb] then
    return s:reply(530, "Please login with USER and PASS.")
  end
  if NEEDS_ARG[verb] and not arg then return s:reply(501, verb .. " needs an argument.") end
  if verb ~= "RNTO" then s.rnfr = s.rnfr and (verb == "RNFR" and s.rnfr or nil) end
  fn(s, arg)
  if verb ~= "REST" and verb ~= "RETR" and verb ~= "STOR" and verb ~= "APPE" then
    -- REST applies to the command right after it (RFC 959 4.1.3)
    if not s.xfer then s.rest = 0 end
  end
end

local function control(srv, conn)
  local o = srv.opts
  local ip = unmap((conn:getpeername()))
  local local_ip = unmap((conn:getsockname()))
  local s = setmetatable({ srv = srv, conn = conn, ip = ip, local_ip = local_ip,
    cwd = "/", type = "A", rest = 0, failures = 0, xfer_done = parley.cond(),
    prot = "C", pbsz = false, tls = conn:tlsinfo() }, session)   -- tls: the implicit listener
  if s.tls then starttls.record(conn, s.tls) end
  conn:setoption("lenient", true)   -- some clients end commands with a bare LF
  -- ABOR sent as urgent data (Python's ftplib) keeps its LF in the stream
  conn:setoption("oobinline", true)
  conn:settimeout(o.idle_timeout)
  srv.sessions[s] = true
  local count = (srv.per_ip[ip] or 0) + 1
  srv.per_ip[ip] = count
  local function finish()
    srv.sessions[s] = nil
    if s.xfer then abort_transfer(s) end
    s:close_pasv()
    srv.per_ip[ip] = (srv.per_ip[ip] or 1) - 1
    if srv.per_ip[ip] <= 0 then srv.per_ip[ip] = nil end
  end
  if count > o.max_per_ip then
    s:reply(421, "Too many connections from your address.")
    conn:flush()
    return finish()
  end
  if o.on_connect then
    local ok, why = o.on_connect(s)
    if ok == false then
      s:reply(421, why or "Service not available.")
      conn:flush()
      return finish()
    end
  end
  s:reply(220, o.banner)
  while not s.quit and not s.dead do
    local line, err = conn:receive("l")
    if not line then
      if err == "timeout" then
        if not s.xfer then
          s:reply(421, "Timeout (" .. o.idle_timeout .. " s): closing control connection.")
          break
        end
      elseif err == "line too long" then
        s:reply(500, "Command line too long.")
      else
        break
      end
    else
      -- Telnet IP / Synch before ABOR (RFC 959 4.1.3): a client using
      -- urgent data leaves IAC IP IAC in the stream (the DM went out of band)
      line = line:gsub("^[\242\244\255]+", "")
      local verb, arg = ftp.parse_command(line)
      if not verb then
        s:reply(500, "Syntax error, command unrecognized.")
      elseif s.xfer and verb == "ABOR" then
        abort_transfer(s)
        s:reply(226, "ABOR successful.")
      elseif s.xfer and verb == "STAT" and not arg then
        local x = s.xfer
        s:reply(213, ("Status: %d bytes transferred (%s)"):format(x.bytes, x.mark))
      else
        if s.xfer then wait_transfer(s) end
        dispatch(s, verb, arg)
      end
    end
  end
  finish()
  conn:flush()
end

-- ------------------------------------------------------------------------
-- Serving
-- ------------------------------------------------------------------------

local ftpserver = {}
ftpserver.__index = ftpserver
ftpserver.__name = "parley.ftp.server"

--- Starts an FTP server.
-- @tparam table opts `listen`, `root` (directory for users without one and
-- for anonymous), `anonymous` (false), `anonymous_root` (root),
-- `anonymous_perms` ("r"), `users` (table name -> {password=, root=,
-- perms="rwdmn"} with perms default "r", or a `parley.mail.users` object)
-- or `users_file` (the shared passwd-file: see `read_users`), and every
-- field of `DEFAULTS`;
-- hooks `on_connect(session)` (return false, reason to refuse with 421),
-- `on_auth(user, pass, session)` (return {root=, perms=} or nil),
-- `on_command(session, verb, arg)` (return true when it replied itself).
--
-- TLS (RFC 4217): `tls` (`{cert = FILE, key = FILE}` plus any other
-- parley.tls.context option) or `tls_ctx` (a server context) offers AUTH
-- TLS on the plain port; `listen_tls` (address) adds an implicit-TLS
-- listener (the port 990 form: TLS from the first byte, then the same
-- session; `tls_port`, `tls_address` once started); `allow_plaintext_auth`
-- (`"loopback"` (default): USER/PASS over TLS, or in cleartext from a
-- loopback peer; `true`: everywhere; `false`: only over TLS; anonymous
-- logins are always allowed when `anonymous` is on); `require_session_reuse`
-- (true: a PROT P data connection that does not resume the control
-- connection's TLS session is closed and the transfer answered 522);
-- `require_data_tls` (false; true: PROT C is refused with 534 and a
-- transfer without PROT P with 521); `tls_timeout` (30 s per handshake).
-- @return server (`.port`, `.address`, `:close()`, `:connections()`), or nil, err
function M.serve(opts)
  if type(opts) ~= "table" then error("ftp server options must be a table", 2) end
  local o = {}
  for k, v in pairs(M.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  if o.root == nil and o.anonymous_root == nil and o.on_auth == nil and o.users == nil
      and o.users_file == nil then
    error("ftp server: root is required", 2)
  end
  o.allow_plaintext_auth = starttls.plaintext_policy(o.allow_plaintext_auth)
  local srv = setmetatable({ opts = o, per_ip = {}, sessions = {} }, ftpserver)
  local ctx, cerr = serving.tls_context(o)
  if cerr then return nil, cerr end
  srv.tls_ctx = ctx
  o.tls_ctx = ctx
  if o.root then
    local view, err = vfs.new(o.root)
    if not view then return nil, err end
    o.root = view.root
  end
  if o.users ~= nil and o.users_file ~= nil then
    error("ftp server: give users or users_file, not both", 2)
  end
  if o.users ~= nil and type(o.users) ~= "table" then
    error("ftp server: users must be a table or a parley.mail.users object", 2)
  end
  local users, accounts
  if o.users_file then
    accounts, users = M.read_users(o.users_file, o.root)
    if not accounts then return nil, users end
  elseif o.users then
    users, accounts = table_users(o.users, o.root)
    if not users then return nil, accounts end
  end
  srv.users, srv.accounts = users, accounts
  for name, u in pairs(accounts or {}) do
    if not u.root then error("ftp server: user " .. name .. " has no root", 2) end
    local ok, perms = pcall(M.perms, u.perms)
    if not ok then error("ftp server: user " .. name .. ": " .. perms, 2) end
    local view, err = vfs.new(u.root)
    if not view then return nil, "user " .. name .. ": " .. err end
    u.view, u.perms = view, perms
  end
  if o.pasv_ports then
    local lo, hi
    if type(o.pasv_ports) == "string" then
      lo, hi = o.pasv_ports:match("^(%d+)%-(%d+)$")
      lo, hi = tonumber(lo), tonumber(hi)
    else
      lo, hi = o.pasv_ports[1], o.pasv_ports[2]
    end
    if not lo or not hi or lo < 1 or hi > 65535 or lo > hi then
      error("ftp server: pasv_ports must be \"min-max\" within 1-65535", 2)
    end
    srv.pasv_range = { lo, hi }
  end
  if type(o.xferlog) == "string" then
    local fh, err = io.open(o.xferlog, "a")
    if not fh then return nil, "xferlog: " .. tostring(err) end
    srv.xferlog = fh
  else
    srv.xferlog = o.xferlog
  end
  -- timeout: what an implicit-TLS handshake may take; a session then
  -- waits idle_timeout for each command
  return serving.serve_for(srv, o, M.DEFAULTS.listen, control,
    { max_line = o.max_line, timeout = o.tls_timeout, transcript_protocol = "ftp" })
end

--- Stops accepting and ends the sessions: an idle one is told 421 at
-- once; one with a transfer running gets `grace` seconds to finish it.
function ftpserver:close(grace)
  local r = serving.close_for(self, ftp.reply(421, "Server shutting down."),
    function(s) return not s.xfer end, grace)
  if type(self.xferlog) == "userdata" and self.opts.xferlog ~= self.xferlog then
    pcall(self.xferlog.close, self.xferlog)
  end
  return r
end

--- How many control connections are open.
function ftpserver:connections() return serving.connections_for(self) end

M.server = ftpserver
return M
