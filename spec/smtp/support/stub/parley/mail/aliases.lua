-- Stand-in for parley.mail.aliases (specs only): "name: a, b" lines,
-- "@domain: user" catch-all.
local M = {}
local a = {}
a.__index = a
function M.from_table(t) return setmetatable({ t = t }, a) end
function M.load(path)
  local f, err = io.open(path)
  if not f then return nil, err end
  local t = {}
  for line in f:lines() do
    local k, v = line:match("^%s*([^#:%s][^:]*):%s*(.-)%s*$")
    if k then
      local list = {}
      for x in v:gmatch("[^,%s]+") do list[#list + 1] = x end
      t[k:lower()] = list
    end
  end
  f:close()
  return M.from_table(t)
end
function a:expand(addr)
  addr = addr:lower()
  local lp, dom = addr:match("^(.*)@(.*)$")
  return self.t[addr] or (lp and self.t[lp]) or nil
end
function a:catchall(domain) return self.t["@" .. domain:lower()] end
return M
