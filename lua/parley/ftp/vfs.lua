--- parley.ftp.vfs: a user's view of the file system, jailed in a root.
--
-- Every FTP path argument goes through `vfs:resolve`: the virtual path is
-- normalized against the current directory (core.ftp.normalize_path, never
-- above "/"), mapped under the user's root, and every symbolic link on the
-- way is followed (at most 40 hops) so that the real path it names is known;
-- a path whose resolution leaves the root is refused ("outside root") on
-- every command. A leaf that does not exist yet (STOR, MKD, RNTO) is
-- allowed: its parent is resolved and checked, and a dangling link is
-- followed to where it would create a file.
--
-- What remains: a race between the check and the open (a local user
-- swapping a directory for a link in between) is not closed; the server
-- runs for FTP users, not against local users sharing the tree.
--
-- The file-system calls go through a small backend: core.fs (realpath(3)
-- resolves links) when it offers them, LuaFileSystem (lfs, links followed
-- component by component here) otherwise. A link whose target does not
-- exist is refused with core.fs (a STOR through it would create a file
-- wherever it points).
-- @module parley.ftp.vfs
local core = require "parley.core"
local ftp = core.ftp

local M = {}

-- ------------------------------------------------------------------------
-- Backend: lstat/stat/listdir/mkdir/rmdir/unlink/rename
-- ------------------------------------------------------------------------

local B = {}

local TYPES = {
  file = "file", directory = "dir", link = "link", socket = "socket",
  ["named pipe"] = "fifo", ["char device"] = "char", ["block device"] = "block",
  dir = "dir", fifo = "fifo", char = "char", block = "block", symlink = "link",
  reg = "file", regular = "file",
}

local function perm_bits(p)
  if type(p) == "number" then return p & 4095 end
  if type(p) ~= "string" or #p < 9 then return 420 end
  local n = 0
  for i = 1, 9 do
    n = n << 1
    if p:sub(i, i) ~= "-" then n = n | 1 end
  end
  return n
end

local function norm_attr(a)
  if not a then return nil end
  return {
    type = TYPES[a.type or a.mode] or "file",
    size = a.size or 0,
    mtime = a.mtime or a.modification or 0,
    mode = perm_bits(a.perm or a.permissions or a.mode),
    nlink = a.nlink or 1,
    uid = a.uid, gid = a.gid,
    target = a.target,
  }
end

local has_lfs, lfs = pcall(require, "lfs")

local cfs = core.fs
if cfs and cfs.lstat and cfs.listdir and cfs.stat and cfs.realpath then
  -- core.fs (csrc/fs.c)
  function B.lstat(p) local a, e = cfs.lstat(p) if not a then return nil, e end return norm_attr(a) end
  function B.stat(p) local a, e = cfs.stat(p) if not a then return nil, e end return norm_attr(a) end
  -- core.fs has no readlink: link targets (only shown in LIST) come from
  -- lfs when it is installed
  B.readlink = cfs.readlink or (has_lfs and function(p) return lfs.symlinkattributes(p, "target") end)
    or function() return nil end
  B.listdir = cfs.listdir
  B.realpath = cfs.realpath
  B.mkdir = function(p) return cfs.mkdir(p, 493) end
  B.rmdir, B.unlink, B.rename = cfs.rmdir, cfs.unlink, cfs.rename
  B.name = "core.fs"
else
  lfs = lfs or require "lfs"
  function B.lstat(p)
    local a, e = lfs.symlinkattributes(p)
    if not a then return nil, e end
    return norm_attr(a)
  end
  function B.stat(p)
    local a, e = lfs.attributes(p)
    if not a then return nil, e end
    return norm_attr(a)
  end
  function B.readlink(p) return lfs.symlinkattributes(p, "target") end
  function B.listdir(p)
    local ok, it, st = pcall(lfs.dir, p)
    if not ok then return nil, (tostring(it):gsub("^.-: ", "")) end
    local out = {}
    for name in it, st do
      if name ~= "." and name ~= ".." then out[#out + 1] = name end
    end
    return out
  end
  function B.mkdir(p) return lfs.mkdir(p) end
  function B.rmdir(p) return lfs.rmdir(p) end
  function B.unlink(p) return os.remove(p) end
  function B.rename(a, b) return os.rename(a, b) end
  B.name = "lfs"
end
M.backend = B

-- ------------------------------------------------------------------------
-- Real paths
-- ------------------------------------------------------------------------

local MAX_LINKS = 40

local function split(path)
  local t = {}
  for c in path:gmatch("[^/]+") do t[#t + 1] = c end
  return t
end

--- Resolves an absolute path, following every symbolic link.
-- A missing last component is allowed (its name is appended); a missing
-- component before it is an error.
-- @tparam string path absolute
-- @treturn string the real path
-- @treturn boolean whether it exists
-- @return or nil, err
function M.realpath(path)
  if B.realpath then
    local r, err = B.realpath(path)
    if r then return r, true end
    local parent, leaf = path:match("^(.*)/([^/]+)/*$")
    if not parent or leaf == "." or leaf == ".." then return nil, err end
    -- a link whose target is missing: refused rather than followed
    if B.lstat(path) then return nil, "dangling symbolic link" end
    local pr, perr = B.realpath(parent == "" and "/" or parent)
    if not pr then return nil, perr end
    return (pr == "/" and "" or pr) .. "/" .. leaf, false
  end
  local todo = split(path)
  local out = {}
  local hops = 0
  local i = 1
  while i <= #todo do
    local c = todo[i]
    if c == "." then
      i = i + 1
    elseif c == ".." then
      out[#out] = nil
      i = i + 1
    else
      local cand = "/" .. table.concat(out, "/") .. (#out > 0 and "/" or "") .. c
      local a = B.lstat(cand)
      if not a then
        if i < #todo then return nil, "no such file or directory" end
        out[#out + 1] = c
        return "/" .. table.concat(out, "/"), false
      end
      if a.type == "link" then
        hops = hops + 1
        if hops > MAX_LINKS then return nil, "too many levels of symbolic links" end
        local target = a.target or B.readlink(cand)
        if not target then return nil, "unreadable link" end
        local rest = table.move(todo, i + 1, #todo, 1, {})
        local t = split(target)
        if target:sub(1, 1) == "/" then out = {} end
        todo = table.move(rest, 1, #rest, #t + 1, t)
        i = 1
      else
        out[#out + 1] = c
        i = i + 1
      end
    end
  end
  return "/" .. table.concat(out, "/"), true
end

-- ------------------------------------------------------------------------
-- A jailed view
-- ------------------------------------------------------------------------

local view = {}
view.__index = view
view.__name = "parley.ftp.vfs"

--- Opens a view of `root`.
-- @tparam string root a directory (made absolute and resolved)
-- @return a view, or nil, err
function M.new(root)
  if type(root) ~= "string" then error("vfs root must be a string", 2) end
  if root:sub(1, 1) ~= "/" then
    local pwd = os.getenv("PWD")
    if not pwd then
      local lfs_ok, lfs_mod = pcall(require, "lfs")
      pwd = lfs_ok and lfs_mod.currentdir() or "/"
    end
    root = pwd .. "/" .. root
  end
  local real, exists = M.realpath(root)
  if not real then return nil, exists end
  local a = exists and B.stat(real)
  if not a or a.type ~= "dir" then return nil, "root is not a directory: " .. root end
  return setmetatable({ root = real }, view)
end

--- Is real path `p` the root or under it?
function view:inside(p)
  local r = self.root
  if r == "/" then return true end
  return p == r or (p:sub(1, #r + 1) == r .. "/")
end

--- Maps an FTP argument to a virtual and a real path.
-- @tparam string cwd the virtual current directory
-- @tparam string arg the argument ("" means cwd)
-- @treturn string virtual path ("/a/b")
-- @treturn string real path (links resolved, inside the root)
-- @treturn boolean whether it exists
-- @return or nil, err ("outside root", "no such file or directory", ...)
function view:resolve(cwd, arg)
  local v, err = ftp.normalize_path(cwd, arg or "")
  if not v then return nil, err end
  local r = self.root == "/" and "" or self.root
  local real, exists = M.realpath(r .. v)
  if not real then return nil, exists end
  if not self:inside(real) then return nil, "outside root" end
  return v, real, exists
end

--- Like `resolve`, but the last component is not followed when it is a
-- link: for DELE, RMD, MKD, RNFR and RNTO, which act on the name itself.
-- The parent is resolved and must be inside the root; the root itself
-- cannot be named.
function view:resolve_leaf(cwd, arg)
  local v, err = ftp.normalize_path(cwd, arg or "")
  if not v then return nil, err end
  if v == "/" then return nil, "permission denied" end
  local parent, leaf = v:match("^(.*)/([^/]+)$")
  local r = self.root == "/" and "" or self.root
  local real, exists = M.realpath(r .. parent)
  if not real then return nil, exists end
  if not exists then return nil, "no such file or directory" end
  if not self:inside(real) then return nil, "outside root" end
  local full = (real == "/" and "" or real) .. "/" .. leaf
  return v, full, B.lstat(full) ~= nil
end

--- The virtual path of a real path inside the root (for PWD after links).
function view:virtual(real)
  if self.root == "/" then return real end
  local v = real:sub(#self.root + 1)
  return v == "" and "/" or v
end

--- Attributes of a real path (links followed), normalized:
-- `{type=, size=, mtime=, mode=, nlink=}`.
function view:stat(real) return B.stat(real) end
function view:lstat(real) return B.lstat(real) end

--- Directory entries of a real directory with their attributes (links not
-- followed, as ls -l shows them), sorted by name.
-- @treturn table array of `{name=, type=, size=, mtime=, mode=, nlink=, target=}`
function view:list(real)
  local names, err = B.listdir(real)
  if not names then return nil, err end
  table.sort(names)
  local out = {}
  for _, name in ipairs(names) do
    local a = B.lstat(real .. (real == "/" and "" or "/") .. name)
    if a then
      a.name = name
      if a.type == "link" and not a.target then a.target = B.readlink(real .. "/" .. name) end
      out[#out + 1] = a
    end
  end
  return out
end

function view:mkdir(real) return B.mkdir(real) end
function view:rmdir(real) return B.rmdir(real) end
function view:unlink(real) return B.unlink(real) end
function view:rename(a, b) return B.rename(a, b) end

M.view = view
return M
