--- parley.telnet.users: the users file (Dovecot passwd-file style).
--
-- One user a line, `name:password[:uid:gid:gecos:home:shell]`; `#` starts
-- a comment line.  The password is `{PLAIN}secret`, `{CRYPT}hash`, or a
-- bare crypt(3) hash (`$6$...`, `$y$...`), checked with `core.fs.crypt`
-- when the build has it.  The same file serves every parley server.
-- @module parley.telnet.users
local core = require "parley.core"

local M = {}

--- Parses a users file's text.
-- @tparam string text
-- @return table name -> {name=, password=, home=, shell=}, or `nil, err`
function M.parse(text)
  local users, n = {}, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = line:gsub("\r$", "")
    if line:find("%S") and not line:find("^%s*#") then
      local fields = {}
      for f in (line .. ":"):gmatch("([^:]*):") do fields[#fields + 1] = f end
      local name, pass = fields[1], fields[2]
      if not name or name == "" or not pass then
        return nil, ("users file line %d: want name:password"):format(n)
      end
      users[name] = { name = name, password = pass, home = fields[6] ~= "" and fields[6] or nil,
                      shell = fields[7] ~= "" and fields[7] or nil }
    end
  end
  return users
end

--- Reads and parses a users file.
-- @tparam string path
-- @return users table, or `nil, err`
function M.load(path)
  local f, err = io.open(path, "r")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  return M.parse(text)
end

-- constant-time comparison of two strings of equal length
local function same(a, b)
  if #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do
    if a:byte(i) ~= b:byte(i) then diff = diff + 1 end
  end
  return diff == 0
end

--- Checks a password against a users table.
-- @return the user's entry, or `nil, "bad credentials"`
function M.check(users, name, password)
  local u = type(users) == "table" and users[name]
  local stored = u and u.password or "{PLAIN}\0no such user"
  local ok
  local plain = stored:match("^{PLAIN}(.*)$")
  if plain then
    ok = same(plain, password)
  else
    local hash = stored:match("^{CRYPT}(.*)$") or stored
    local crypt = core.fs and core.fs.crypt
    if crypt and hash:find("^%$") then
      local got = crypt(password, hash)
      ok = type(got) == "string" and same(got, hash)
    else
      ok = false
    end
  end
  if ok and u then return u end
  return nil, "bad credentials"
end

return M
