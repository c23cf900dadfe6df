-- Shared helpers for the driver specs (spec/core/*_spec.lua).
--
--   local H = require "helper"
--   before_each(H.fd_snapshot); after_each(H.fd_check)   -- in every file
--   H.run(function() ... end [, limit])   -- parley.run with a time limit
--   local c, s = H.pair()                 -- a connected pair (inside a task)
--   local child = H.child("echo_server.lua", ...)  -- a child process
--
-- Every wait a helper does is bounded: a spec that hangs fails instead.
local parley = require "parley"
local lfs = require "lfs"

local H = {}

-- The repository root, absolute, found from this file's own path.
do
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  local dir = src:match("^(.*)/spec/helper%.lua$")
  if not dir or dir == "." then
    dir = lfs.currentdir()
  elseif dir:sub(1, 1) ~= "/" then
    dir = lfs.currentdir() .. "/" .. dir
  end
  H.root = dir
end

---------------------------------------------------------------------------
-- Descriptor accounting: every spec must leave /proc/self/fd as it found it.
---------------------------------------------------------------------------

--- The open descriptors of this process: a table fd -> link target.
function H.fds()
  local t = {}
  for name in lfs.dir("/proc/self/fd") do
    local n = tonumber(name)
    if n then
      local target = lfs.symlinkattributes("/proc/self/fd/" .. name, "target")
      -- the directory lfs.dir is reading right now is not ours to count
      if target and not target:match("^/proc/") then t[n] = target end
    end
  end
  return t
end

--- How many descriptors this process has open (after a full collection).
function H.fd_count()
  collectgarbage()
  collectgarbage()
  local n = 0
  for _ in pairs(H.fds()) do n = n + 1 end
  return n
end

-- The driver's own machinery (an epoll set, a signalfd, an eventfd ...) may
-- be created once, lazily, by the first spec that needs it: a few such
-- anon_inode descriptors appearing are allowed; sockets, pipes and files
-- never.
local INFRA_ALLOWED = 3

--- Descriptors present in `after` but not in `before`, as readable strings.
function H.leaks(before, after)
  local out, infra = {}, {}
  for fd, target in pairs(after) do
    if before[fd] ~= target then
      if target:match("^anon_inode:") then
        infra[#infra + 1] = fd .. " -> " .. target
      else
        out[#out + 1] = fd .. " -> " .. target
      end
    end
  end
  if #infra > INFRA_ALLOWED then
    for _, v in ipairs(infra) do out[#out + 1] = v end
  end
  table.sort(out)
  return out
end

local snapshot

--- before_each: remember the open descriptors.
function H.fd_snapshot()
  collectgarbage()
  collectgarbage()
  snapshot = H.fds()
end

--- after_each: fail when the spec left a descriptor open.
function H.fd_check()
  if not snapshot then return end
  collectgarbage()
  collectgarbage()
  local leaked = H.leaks(snapshot, H.fds())
  snapshot = nil
  if #leaked > 0 then
    error("descriptors leaked by this spec: " .. table.concat(leaked, ", "), 0)
  end
end

---------------------------------------------------------------------------
-- Tasks
---------------------------------------------------------------------------

local function traceback(e)
  if type(e) == "string" then return debug.traceback(e, 2) end
  return e
end

--- Joins a task: its results, or raises its error (assertion failures from
-- luassert pass through unchanged). A task still running after `limit`
-- seconds is cancelled and the spec fails.
function H.join(task, limit)
  limit = limit or 10
  local r = table.pack(task:join(limit))
  if r[1] == nil then
    task:cancel()
    error(string.format("task did not finish within %g s (join gave %s)",
                        limit, tostring(r[2])), 2)
  elseif r[1] == false then
    error(r[2], 0)
  end
  return table.unpack(r, 2, r.n)
end

--- Spawns `fn(...)` so that an error inside it keeps its traceback and
-- reaches whoever joins it with H.join (an assertion inside a task that
-- nobody joins would only be logged).
function H.go(fn, ...)
  local args = table.pack(...)
  return parley.spawn(function()
    local r = table.pack(xpcall(fn, traceback, table.unpack(args, 1, args.n)))
    if not r[1] then error(r[2], 0) end
    return table.unpack(r, 2, r.n)
  end)
end

--- Joins every task in the list, in order; raises the first error.
function H.join_all(tasks, limit)
  local deadline = parley.now() + (limit or 10)
  for _, t in ipairs(tasks) do
    H.join(t, math.max(0.001, deadline - parley.now()))
  end
end

--- parley.run with a time limit: `fn` runs as a task; if it has not
-- finished after `limit` seconds (default 20) it is cancelled and the spec
-- fails (its waits return nil, "cancelled", so it ends soon after).
function H.run(fn, limit)
  limit = limit or 20
  return parley.run(function()
    local t = H.go(fn)
    return H.join(t, limit)
  end)
end

--- A scripted server for client specs (a fake, or one that misbehaves):
-- `script(conn)` runs once per connection; `fn(srv)` runs in a task
-- with the server listening, and the server is closed after it, even
-- when it fails.
function H.fake_server(script, fn, limit)
  H.run(function()
    local srv = assert(parley.serve{ listen = "127.0.0.1:0", signals = false, timeout = 5,
      handler = script })
    local ok, err = pcall(fn, srv)
    srv:close(0)
    if not ok then error(err, 0) end
  end, limit or 30)
end

--- Seconds `fn(...)` took, then its results.
function H.timed(fn, ...)
  local t0 = parley.now()
  local r = table.pack(fn(...))
  return parley.now() - t0, table.unpack(r, 1, r.n)
end

---------------------------------------------------------------------------
-- Sockets
---------------------------------------------------------------------------

--- "host:port" for an address family: "[::1]:0" for IPv6 hosts.
function H.addr(host, port)
  if host:find(":", 1, true) then return "[" .. host .. "]:" .. port end
  return host .. ":" .. port
end

--- A connected pair (client, server) of parley streams over loopback.
-- Call inside a task or at top level. `copts` go to parley.connect.
function H.pair(copts, host)
  host = host or "127.0.0.1"
  local l = assert(parley.listen(H.addr(host, 0)))
  local c, err = parley.connect(host, l:port(), copts)
  if not c then
    l:close()
    error("connect failed: " .. tostring(err), 2)
  end
  local s, aerr = l:accept(5)
  l:close()
  if not s then
    c:close()
    error("accept failed: " .. tostring(aerr), 2)
  end
  return c, s
end

--- Reads from `s` with receive_some until `n` bytes came or an error.
function H.read_n(s, n)
  local parts, got = {}, 0
  for _ = 1, 100000 do
    if got >= n then break end
    local chunk, err = s:receive_some(n - got)
    if not chunk then return table.concat(parts), err end
    parts[#parts + 1] = chunk
    got = got + #chunk
  end
  return table.concat(parts)
end

---------------------------------------------------------------------------
-- Child processes (spec/support/*.lua), always under `timeout 60`
---------------------------------------------------------------------------

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function command(script, args, prefix)
  local q = {}
  for i = 1, args.n do q[i] = quote(args[i]) end
  return string.format(
    "cd %s && LUA_PATH=%s LUA_CPATH=%s exec %stimeout 60 lua5.4 %s %s 2>&1",
    quote(H.root),
    quote(H.root .. "/lua/?.lua;" .. H.root .. "/lua/?/init.lua;;"),
    quote(H.root .. "/build/?.so;;"),
    prefix or "",
    quote("spec/support/" .. script), table.concat(q, " "))
end

local Child = {}
Child.__index = Child

--- Starts spec/support/<script> with `args`; its first line must be
-- "PORT PID". Returns a child object: .port, .pid, :line(), :kill(sig),
-- :finish() -> output, how, code, :cleanup() (kills it if still running).
function H.child(script, ...)
  local fh = assert(io.popen(command(script, table.pack(...)), "r"))
  local first = fh:read("l")
  local port, pid = (first or ""):match("^(%d+) (%d+)")
  if not pid then
    local rest = fh:read("a") or ""
    fh:close()
    error("child " .. script .. " did not start: " .. tostring(first) ..
          "\n" .. rest, 2)
  end
  return setmetatable({fh = fh, port = tonumber(port), pid = tonumber(pid),
                       script = script}, Child)
end

--- Like H.child but with a command prefix (e.g. "strace ... ").
function H.child_with(prefix, script, ...)
  local fh = assert(io.popen(command(script, table.pack(...), prefix), "r"))
  return setmetatable({fh = fh, script = script}, Child)
end

function Child:line()
  return self.fh:read("l")
end

function Child:kill(sig)
  if self.pid and self.fh then
    os.execute("kill -" .. (sig or "TERM") .. " " .. self.pid .. " 2>/dev/null")
  end
end

--- Waits for the child to exit: rest of its output, "exit"/"signal", code.
function Child:finish()
  local rest = self.fh:read("a") or ""
  local _, how, code = self.fh:close()
  self.fh = nil
  return rest, how, code
end

function Child:cleanup()
  if self.fh then
    self:kill("KILL")
    self.fh:read("a")
    self.fh:close()
    self.fh = nil
  end
end

--- Runs spec/support/<script> to completion: output, how, code.
function H.script(script, ...)
  local fh = assert(io.popen(command(script, table.pack(...)), "r"))
  local out = fh:read("a") or ""
  local _, how, code = fh:close()
  return out, how, code
end

---------------------------------------------------------------------------
-- Files
---------------------------------------------------------------------------

--- A fresh temporary directory, its name ending in `-suffix` when given
-- (which spec made it); remove it with H.rmdir.
function H.tmpdir(suffix)
  local name = os.tmpname()
  os.remove(name)
  if suffix then name = name .. "-" .. suffix end
  assert(lfs.mkdir(name))
  return name
end

--- The names in `dir` (without "." and ".."), sorted; `{}` when it is missing.
function H.names(dir)
  local out = {}
  if not lfs.attributes(dir) then return out end
  for n in lfs.dir(dir) do
    if n ~= "." and n ~= ".." then out[#out + 1] = n end
  end
  table.sort(out)
  return out
end

function H.rmdir(dir)
  if dir and dir:match("^/tmp/") then os.execute("rm -rf " .. quote(dir)) end
end

--- Writes `data` to `path` (binary, replacing it).
function H.write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  return path
end

--- The contents of `path` (binary), or nil when it cannot be opened.
function H.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- `n` pseudo-random bytes from `math.randomseed(seed)` (the same for the
-- same seed).
function H.random_bytes(n, seed)
  math.randomseed(seed)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

--- SHA-256 of a file, hex.
function H.sha256(path)
  local fh = assert(io.popen("sha256sum " .. quote(path), "r"))
  local out = fh:read("a")
  fh:close()
  return out:match("^(%x+)")
end

--- Writes `size` pseudo-random bytes to `path` (fast: /dev/urandom).
function H.random_file(path, size)
  local ok = os.execute(string.format(
    "head -c %d /dev/urandom > %s", size, quote(path)))
  assert(ok, "could not write " .. path)
  return path
end

function H.have(program)
  return os.execute("command -v " .. program .. " >/dev/null 2>&1") == true
end

return H
