--- Mail aliases from an /etc/aliases-style file, for the SMTP server's
-- local delivery.
--
--   local aliases = require "parley.mail.aliases"
--   local a = assert(aliases.load("/etc/parley/aliases", { users = u }))
--   local targets, err = a:expand("sales@example.org")
--
-- File format (aliases(5)): `name: target1, target2, ...`; a line that
-- starts with a space or tab continues the previous entry; lines whose
-- first non-blank character is `#` are comments. A target in double
-- quotes may hold commas and spaces. Names are case-insensitive. Keys:
--
--   - `name` matches the local part in any local domain;
--   - `name@domain` matches that address only (tried first);
--   - `@domain` is the domain's catch-all: it takes any address of the
--     domain that has no alias entry and is not a known user.
--
-- Targets are local names (`alice`) or addresses (`bob@example.net`).
-- Local targets are expanded again (many-to-one and one-to-many nest);
-- a target naming the alias itself (`alice: alice, archive`) is final, as
-- sendmail does. A loop (`a: b`, `b: a`) or nesting deeper than
-- `max_depth` is an error. Pipes (`"|cmd"`), files (`/path`) and
-- `:include:` are refused at load time with the line number: a mail
-- server written in Lua has no business running them.
--
-- @module parley.mail.aliases
local M = {}

local methods = {}
local mt = { __name = "parley.mail.aliases", __index = methods }

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- Splits "a, \"b, c\", d" on commas outside double quotes.
local function split_targets(s)
  local out, cur, inq, i, n = {}, {}, false, 1, #s
  while i <= n do
    local c = s:sub(i, i)
    if c == "\\" and inq and i < n then
      cur[#cur + 1] = s:sub(i, i + 1); i = i + 1
    elseif c == '"' then
      inq = not inq; cur[#cur + 1] = c
    elseif c == "," and not inq then
      out[#out + 1] = trim(table.concat(cur)); cur = {}
    else
      cur[#cur + 1] = c
    end
    i = i + 1
  end
  if inq then return nil, "unterminated quote" end
  out[#out + 1] = trim(table.concat(cur))
  return out
end

-- A target as written -> the target to keep, or nil, err.
local function check_target(t)
  if t:gsub('"[^"]*"', ""):find("%s") then
    return nil, "space in target " .. t .. " (a missing comma?)"
  end
  local inner = t:match('^"(.*)"$')
  if inner then t = inner:gsub("\\(.)", "%1") end
  if t:sub(1, 9):lower() == ":include:" then
    return nil, ":include: is not supported"
  end
  local c = t:sub(1, 1)
  if c == "|" or c == "/" then
    return nil, "pipe and file targets are not supported: " .. t
  end
  if t:find("[%z\r\n]") then return nil, "control character in target" end
  return t
end

-- "Local@Dom" -> "local", "dom"; "local" -> "local", nil
local function split_addr(s)
  local l, d = s:match("^(.*)@([^@]*)$")
  if l then return l, d:lower() end
  return s, nil
end

local function new(entries, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("opts must be a table", 3) end
  local self = setmetatable({
    entries = entries,             -- lowercased key -> array of targets
    domains = {},                  -- domains named in the keys or opts
    users = opts.users,
    max_depth = opts.max_depth or 10,
    max_targets = opts.max_targets or 1000,
    warnings = {},
  }, mt)
  for k in pairs(entries) do
    local _, d = split_addr(k)
    if d and d ~= "" then self.domains[d] = true end
  end
  for k, v in pairs(opts.domains or {}) do
    local d = type(k) == "number" and v or k
    self.domains[tostring(d):lower()] = true
  end
  return self
end

local function parse(text, source)
  local entries, lines_of, warnings = {}, {}, {}
  local logical = {}            -- { lineno, text }
  local lineno = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    line = line:gsub("\r$", "")
    if line:match("^%s*#") or line:match("^%s*$") then
      -- comment or blank: skip (a blank line also ends nothing: aliases(5))
    elseif line:match("^%s") then
      local last = logical[#logical]
      if not last then
        return nil, string.format("%s:%d: continuation line with no entry", source, lineno)
      end
      last[2] = last[2] .. " " .. trim(line)
    else
      logical[#logical + 1] = { lineno, line }
    end
  end
  for _, l in ipairs(logical) do
    local no, s = l[1], l[2]
    local key, rest = s:match('^("[^"]*")%s*:(.*)$')
    if key then key = key:sub(2, -2) else key, rest = s:match("^([^:%s]+)%s*:(.*)$") end
    if not key or key == "" then
      return nil, string.format("%s:%d: expected name: targets", source, no)
    end
    key = key:lower()
    local targets, err = split_targets(rest)
    if not targets then return nil, string.format("%s:%d: %s", source, no, err) end
    local list = {}
    for _, t in ipairs(targets) do
      if t ~= "" then
        local ok, terr = check_target(t)
        if not ok then return nil, string.format("%s:%d: %s", source, no, terr) end
        list[#list + 1] = ok
      end
    end
    if #list == 0 then
      return nil, string.format("%s:%d: alias %s has no targets", source, no, key)
    end
    if entries[key] then
      warnings[#warnings + 1] = string.format("%s:%d: duplicate alias %s (line %d kept)",
                                              source, no, key, lines_of[key])
    else
      entries[key], lines_of[key] = list, no
    end
  end
  return entries, warnings
end

--- Reads an aliases file.
-- @tparam string path
-- @tparam[opt] table opts `users` (a `parley.mail.users` object, or a
-- function `(localpart, domain) -> boolean`, telling which names are real
-- users: the catch-all never takes those — without it the catch-all takes
-- every name with no alias), `domains` (local domains besides those named
-- in the file), `max_depth` (nesting, 10), `max_targets` (1000)
-- @return aliases object `a` (its `warnings` array lists duplicates), or
-- nil, err ("FILE:LINE: reason")
function M.load(path, opts)
  if type(path) ~= "string" then error("path must be a string", 2) end
  local fh, err = io.open(path, "rb")
  if not fh then return nil, err end
  local text, rerr = fh:read("a")   -- nil for a directory
  fh:close()
  if not text then return nil, path .. ": " .. tostring(rerr) end
  local entries, warnings = parse(text, path)
  if not entries then return nil, warnings end
  local a = new(entries, opts)
  a.warnings = warnings
  return a
end

--- Aliases from a table: `{ sales = { "alice", "bob@example.net" },
-- postmaster = "root", ["@example.org"] = "catchall" }`.
-- @tparam table t
-- @tparam[opt] table opts as for `load`
-- @return aliases object, or nil, err (a refused target)
function M.from_table(t, opts)
  if type(t) ~= "table" then error("from_table expects a table", 2) end
  local entries = {}
  for k, v in pairs(t) do
    if type(k) ~= "string" or k == "" then error("alias names must be non-empty strings", 2) end
    if type(v) == "string" then v = { v } end
    if type(v) ~= "table" or #v == 0 then error("alias " .. k .. ": expected targets", 2) end
    local list = {}
    for i, target in ipairs(v) do
      if type(target) ~= "string" then error("alias " .. k .. ": targets must be strings", 2) end
      local ok, err = check_target(target)
      if not ok then return nil, "alias " .. k .. ": " .. err end
      list[i] = ok
    end
    entries[k:lower()] = list
  end
  return new(entries, opts)
end

local function is_user(self, lp, dom)
  local u = self.users
  if u == nil then return false end
  if type(u) == "function" then return u(lp, dom) and true or false end
  if u:exists(lp) then return true end
  return dom ~= nil and u:exists(lp .. "@" .. dom)
end

-- The alias entry for lp[@dom]: key, targets (or nil).
local function lookup(self, lp, dom)
  local l = lp:lower()
  if dom then
    local k = l .. "@" .. dom
    if self.entries[k] then return k, self.entries[k] end
  end
  if self.entries[l] then return l, self.entries[l] end
  return nil
end

--- Expands an address (or a local part and its domain) to its final
-- targets: local names and addresses, each once, in first-seen order.
-- Names with no alias come back as given.
-- @tparam string address `"sales@example.org"` or `"sales"`
-- @tparam[opt] string domain the domain of a bare local part
-- @return array of targets, or nil, err ("alias loop: a -> b -> a",
-- "alias expansion too deep", "too many alias targets")
function methods:expand(address, domain)
  if type(address) ~= "string" then error("address must be a string", 2) end
  if domain ~= nil and type(domain) ~= "string" then error("domain must be a string", 2) end
  local lp, dom = split_addr(address)
  dom = dom or (domain and domain:lower())
  local out, seen, path, onpath = {}, {}, {}, {}

  local function add(t)
    if not seen[t] then
      seen[t] = true
      out[#out + 1] = t
      if #out > self.max_targets then return nil, "too many alias targets" end
    end
    return true
  end

  local function walk(target, l, d, depth, top)
    local key, list = lookup(self, l, d)
    if not key and top and d and self.entries["@" .. d] and not is_user(self, l, d) then
      key, list = "@" .. d, self.entries["@" .. d]
    end
    if not key then return add(target) end
    if onpath[key] then
      path[#path + 1] = key
      return nil, "alias loop: " .. table.concat(path, " -> ")
    end
    if depth >= self.max_depth then return nil, "alias expansion too deep" end
    path[#path + 1] = key
    onpath[key] = true
    for _, t in ipairs(list) do
      local tl, td = split_addr(t)
      local local_target = td == nil or td == d or self.domains[td]
      local ok, err
      if not local_target then
        ok, err = add(t)                               -- external address
      else
        local tkey = lookup(self, tl, td or d)
        if tkey == key then
          ok, err = add(t)                             -- "alice: alice, ..."
        else
          ok, err = walk(t, tl, td or d, depth + 1, false)
        end
      end
      if not ok then return nil, err end
    end
    path[#path] = nil
    onpath[key] = nil
    return true
  end

  local ok, err = walk(address, lp, dom, 0, true)
  if not ok then return nil, err end
  return out
end

--- Whether an address (or local part) has an alias entry of its own (the
-- catch-all not counted).
function methods:has(address, domain)
  if type(address) ~= "string" then error("address must be a string", 2) end
  local lp, dom = split_addr(address)
  return lookup(self, lp, dom or (domain and domain:lower())) ~= nil
end

return M
