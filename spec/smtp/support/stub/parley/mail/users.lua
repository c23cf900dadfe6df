-- Stand-in for parley.mail.users (specs only; see maildir.lua here).
local M = {}
local u = {}
u.__index = u
function M.from_table(t) return setmetatable({ t = t }, u) end
function M.load(path)
  local f, err = io.open(path)
  if not f then return nil, err end
  local t = {}
  for line in f:lines() do
    local name, pw = line:match("^([^:#]+):{PLAIN}([^:]*)")
    if name then t[name] = pw end
  end
  f:close()
  return M.from_table(t)
end
function u:check(name, pw) return self.t[name] ~= nil and self.t[name] == pw end
function u:exists(name) return self.t[name] ~= nil end
function u:get(name) return self.t[name] and { name = name } end
return M
