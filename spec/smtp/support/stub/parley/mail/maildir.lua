-- Stand-in for parley.mail.maildir (the real one is another engineer's):
-- only what the SMTP specs use, following /tmp/store-api.md. Used only
-- when the real module is absent (this dir comes last on the path).
-- No fsync from plain Lua: not crash-safe, specs only.
local lfs = require "lfs"
local M = {}
local store = {}
store.__index = store
local counter = 0

local function mkdirs(p)
  local acc = ""
  for part in p:gmatch("[^/]+") do
    acc = acc .. "/" .. part
    lfs.mkdir(acc)
  end
end

function M.open(root, opts)
  mkdirs(root)
  return setmetatable({ root = root, opts = opts or {} }, store)
end

local delivery = {}
delivery.__index = delivery

function store:delivery(user, folder)
  if user:find("/") or user:sub(1, 1) == "." then return nil, "invalid user" end
  local dir = self.root .. "/" .. user .. (folder and ("/." .. folder) or "")
  for _, sub in ipairs { "", "/tmp", "/new", "/cur" } do mkdirs(dir .. sub) end
  counter = counter + 1
  local name = ("%d.M%dP%dQ%d.stub"):format(os.time(), math.random(0, 999999), 0, counter)
  local path = dir .. "/tmp/" .. name
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  return setmetatable({ f = f, dir = dir, name = name, path = path, n = 0 }, delivery)
end

function delivery:write(chunk)
  local ok, err = self.f:write(chunk)
  if not ok then return nil, err end
  self.n = self.n + #chunk
  return true
end
function delivery:size() return self.n end
function delivery:commit()
  self.f:close()
  local final = self.name .. ",S=" .. self.n
  local ok, err = os.rename(self.path, self.dir .. "/new/" .. final)
  if not ok then return nil, err end
  self.done = true
  return final
end
function delivery:abort()
  if self.done then return end
  self.done = true
  self.f:close()
  os.remove(self.path)
end
function store:deliver(user, msg, folder)
  local d, err = self:delivery(user, folder)
  if not d then return nil, err end
  d:write(msg)
  return d:commit()
end
function store:clean_tmp() end
return M
