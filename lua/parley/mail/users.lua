--- Users from a Dovecot passwd-file: the one users file behind every
-- parley server's logins (SMTP AUTH, POP3, IMAP, FTP, Telnet).
--
--   local users = require "parley.mail.users"
--   local u = assert(users.load("/etc/parley/users"))
--   if u:check(name, password) then ... end
--
-- File format (Dovecot passwd-file): one user a line,
-- `name:password[:uid:gid:gecos:home:shell:extra]`; only the first two
-- fields are required. `extra` (the rest of the line) holds Dovecot's
-- extra fields, space-separated `key=value` (a bare `key` is true), e.g.
-- `ftp_perms=r` for the FTP server; `shell` is a Telnet shell-mode
-- user's shell. `#` comment lines and blank lines are ignored. The
-- password is `{PLAIN}secret` (or `{CLEARTEXT}`), a crypt(3) hash (`$y$`,
-- `$6$`, `$5$`, `$2b$`, `$1$`, optionally written `{CRYPT}$6$...`,
-- `{SHA512-CRYPT}...`, `{BLF-CRYPT}...`), or empty (the user cannot log
-- in). A password without a `{SCHEME}` prefix and not starting with `$`
-- uses `opts.default_scheme` ("CRYPT", as Dovecot).
--
-- Names compare case-sensitively, except the domain part of
-- `user@domain`. A check for an unknown user does the same work as one
-- for a known user (a crypt of a dummy with the file's first hash
-- setting, or a constant-time compare), so timing does not tell which.
--
-- @module parley.mail.users
local fs = require("parley.core").fs

local M = {}

local methods = {}
local mt = { __name = "parley.mail.users", __index = methods }

local PLAIN = { PLAIN = true, CLEARTEXT = true }
local CRYPT = { CRYPT = true, ["SHA512-CRYPT"] = true, ["SHA256-CRYPT"] = true,
                ["MD5-CRYPT"] = true, ["BLF-CRYPT"] = true, ["DES-CRYPT"] = true }

-- "Alice@Example.ORG" -> "Alice@example.org"
local function norm(name)
  local l, d = name:match("^(.*)@([^@]*)$")
  if l then return l .. "@" .. d:lower() end
  return name
end

-- password field -> entry fields (kind, secret), or nil, err
local function parse_password(pw, default_scheme)
  if pw == "" then return "none" end
  local scheme, rest = pw:match("^{([%w%-%.]+)}(.*)$")
  if not scheme then
    if pw:sub(1, 1) == "$" then return "crypt", pw end
    scheme, rest = default_scheme, pw
  end
  scheme = scheme:upper()
  if PLAIN[scheme] then return "plain", rest end
  if CRYPT[scheme] then
    if rest == "" then return "none" end
    return "crypt", rest
  end
  return nil, "unsupported password scheme {" .. scheme .. "}"
end

-- Dovecot extra fields ("k=v k2 ..." -> {k = "v", k2 = true}), or nil
local function extra_fields(s)
  local t
  for item in s:gmatch("%S+") do
    local k, v = item:match("^([^=]+)=(.*)$")
    t = t or {}
    if k then t[k] = v else t[item] = true end
  end
  return t
end

local function new(entries, order, dummy)
  return setmetatable({ map = entries, order = order,
                        dummy = dummy }, mt)
end

local function parse(text, opts, source)
  local entries, order, dummy = {}, {}, nil
  local default_scheme = (opts and opts.default_scheme) or "CRYPT"
  local lineno = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    line = line:gsub("\r$", "")
    if not (line:match("^%s*$") or line:match("^%s*#")) then
      local f = {}
      for field in (line .. ":"):gmatch("([^:]*):") do f[#f + 1] = field end
      local name = f[1]
      if name == "" or #f < 2 then
        return nil, string.format("%s:%d: expected name:password", source, lineno)
      end
      local kind, secret = parse_password(f[2], default_scheme)
      if not kind then
        return nil, string.format("%s:%d: %s", source, lineno, secret)
      end
      if kind == "crypt" and not dummy then
        -- unknown users pay for a crypt with the first hash's method
        -- and cost (the hash is its own setting; the answer is false)
        dummy = secret
      end
      local key = norm(name)
      if not entries[key] then        -- the first line for a name wins
        entries[key] = { name = name, kind = kind, secret = secret,
                         uid = tonumber(f[3]), gid = tonumber(f[4]),
                         home = (f[6] ~= nil and f[6] ~= "") and f[6] or nil,
                         shell = (f[7] ~= nil and f[7] ~= "") and f[7] or nil,
                         extra = extra_fields(table.concat(f, ":", 8)) }
        order[#order + 1] = name
      end
    end
  end
  return entries, order, dummy
end

--- Reads a passwd-file.
-- @tparam string path
-- @tparam[opt] table opts `default_scheme` ("CRYPT") for passwords with
-- no `{SCHEME}` prefix
-- @return users object `u`, or nil, err
function M.load(path, opts)
  if type(path) ~= "string" then error("path must be a string", 2) end
  local st, serr = fs.stat(path)
  if not st then return nil, path .. ": " .. serr end
  local fh, err = io.open(path, "rb")
  if not fh then return nil, err end
  local text, rerr = fh:read("a")   -- nil for a directory
  fh:close()
  if not text then return nil, path .. ": " .. tostring(rerr) end
  local entries, order, dummy = parse(text, opts, path)
  if not entries then return nil, order end
  local u = new(entries, order, dummy)
  u.path, u.opts, u.mtime, u.size = path, opts, st.mtime, st.size
  return u
end

--- Users from a table: `{ name = "plaintext password", name2 = { password
-- = "...", hash = "$6$...", home = "...", uid = n, gid = n, shell = "...",
-- extra = { key = "value" } } }`. A string
-- value is always a plaintext password (never parsed as a hash).
-- @return users object `u`
function M.from_table(t)
  if type(t) ~= "table" then error("from_table expects a table", 2) end
  local entries, order, dummy = {}, {}, nil
  for name, v in pairs(t) do
    if type(name) ~= "string" then error("user names must be strings", 2) end
    local e = { name = name }
    if type(v) == "string" then
      e.kind, e.secret = "plain", v
    elseif type(v) == "table" then
      if v.hash then
        e.kind, e.secret = "crypt", v.hash
        dummy = dummy or v.hash
      elseif v.password then
        e.kind, e.secret = "plain", v.password
      else
        e.kind = "none"
      end
      e.home, e.uid, e.gid, e.shell = v.home, v.uid, v.gid, v.shell
      if v.extra ~= nil then
        if type(v.extra) ~= "table" then error("user " .. name .. ": extra must be a table", 2) end
        e.extra = {}
        for k, x in pairs(v.extra) do e.extra[k] = x end
      end
    else
      error("user " .. name .. ": expected a password string or a table", 2)
    end
    entries[norm(name)] = e
    order[#order + 1] = name
  end
  return new(entries, order, dummy)
end

--- Makes a crypt(3) hash of a password for a users file.
-- @tparam string password
-- @tparam[opt] string method "$y$" (yescrypt, default), "$6$", "$2b$" ...
-- @return the hash, or nil, err
function M.hash(password, method)
  if type(password) ~= "string" then error("password must be a string", 2) end
  local salt, err = fs.gensalt(method or "$y$")
  if not salt then return nil, err end
  return fs.crypt(password, salt)
end

--- Checks a password. Unknown users and wrong passwords both give false,
-- after the same work.
-- @tparam string name
-- @tparam string password
-- @treturn boolean
function methods:check(name, password)
  if type(name) ~= "string" then error("name must be a string", 2) end
  if type(password) ~= "string" then error("password must be a string", 2) end
  local e = self.map[norm(name)]
  if e and e.kind == "plain" then
    return fs.equal(password, e.secret)
  elseif e and e.kind == "crypt" then
    local h = fs.crypt(password, e.secret)
    return h ~= nil and fs.equal(h, e.secret)
  end
  -- unknown user, or one who cannot log in: same cost, same answer
  -- (no hash in the file: the users are PLAIN, so a compare is the cost)
  if self.dummy then
    local h = fs.crypt(password, self.dummy)
    fs.equal(h or password, self.dummy)
  else
    fs.equal(password, "parley-no-such-user")
  end
  return false
end

--- The plaintext secret of a `{PLAIN}` user, for mechanisms that need it
-- (POP3 APOP, CRAM-MD5); nil for hashed entries and unknown users.
-- @tparam string name
-- @treturn string|nil
function methods:secret(name)
  if type(name) ~= "string" then error("name must be a string", 2) end
  local e = self.map[norm(name)]
  if e and e.kind == "plain" then return e.secret end
  return nil
end

--- Whether a user exists.
function methods:exists(name)
  if type(name) ~= "string" then error("name must be a string", 2) end
  return self.map[norm(name)] ~= nil
end

--- A user's record `{name=, home=, uid=, gid=, shell=, extra=}` (fields
-- that are empty in the file are nil; `extra` is a fresh copy), or nil.
function methods:get(name)
  if type(name) ~= "string" then error("name must be a string", 2) end
  local e = self.map[norm(name)]
  if not e then return nil end
  local extra
  if e.extra then
    extra = {}
    for k, v in pairs(e.extra) do extra[k] = v end
  end
  return { name = e.name, home = e.home, uid = e.uid, gid = e.gid, shell = e.shell, extra = extra }
end

--- All user names, sorted.
function methods:names()
  local out = {}
  for i, n in ipairs(self.order) do out[i] = n end
  table.sort(out)
  return out
end

--- Re-reads the file if it changed (mtime or size). On a read or parse
-- error the old users stay in force.
-- @return true if re-read, false if unchanged (or not from a file), or
-- nil, err
function methods:reload()
  if not self.path then return false end
  local st, serr = fs.stat(self.path)
  if not st then return nil, self.path .. ": " .. serr end
  if st.mtime == self.mtime and st.size == self.size then return false end
  local fresh, err = M.load(self.path, self.opts)
  if not fresh then return nil, err end
  self.map, self.order, self.dummy = fresh.map, fresh.order, fresh.dummy
  self.mtime, self.size = fresh.mtime, fresh.size
  return true
end

return M
