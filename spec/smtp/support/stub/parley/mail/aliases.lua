-- Stand-in for parley.mail.aliases (specs only, used when the real module
-- is absent): "name: a, b" lines, "@domain: user" catch-all; expand()
-- gives the final targets (the address itself when it has no alias).
local M = {}
local a = {}
a.__index = a
function M.from_table(t, opts) return setmetatable({ t = t, users = (opts or {}).users }, a) end
function M.load(path, opts)
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
  return M.from_table(t, opts)
end
function a:expand(addr, depth)
  depth = depth or 0
  if depth > 10 then return nil, "alias loop" end
  local lp, dom = addr:lower():match("^(.*)@(.*)$")
  local list = self.t[addr:lower()] or self.t[lp or addr:lower()]
  if not list and dom and depth == 0 and not (self.users and self.users:exists(lp)) then
    list = self.t["@" .. dom]
  end
  if not list then return { addr } end
  local out = {}
  for _, x in ipairs(list) do
    if x:lower() == (lp or addr):lower() then out[#out + 1] = x
    else
      local sub, err = self:expand(x, depth + 1)
      if not sub then return nil, err end
      for _, y in ipairs(sub) do out[#out + 1] = y end
    end
  end
  return out
end
return M
