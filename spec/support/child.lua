-- Child processes for the protocol specs: `bin/parley serve PROTO ...` (or
-- any command) run from the repository root under `timeout 60`, its
-- output read until a line names the port it listens on.
--
--   local child = require "support.child"
--   local srv = child.serve("ftp", { "--listen", "127.0.0.1:0", "--root", dir })
--   ... srv.port ...
--   local out = srv:stop()      -- SIGTERM to the server, then its output
--
-- Signals go to the command itself (the child of `timeout`), once: a
-- parley server closes gracefully on the first SIGTERM and dies at once on
-- a second one, and SIGKILL would not pass through `timeout`.
local H = require "helper"

local C = {}

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
C.quote = quote

-- a list of words, quoted; a string is taken as shell words already
local function words(args)
  if args == nil then return "" end
  if type(args) == "string" then return args end
  local q = {}
  for i, a in ipairs(args) do q[i] = quote(a) end
  return table.concat(q, " ")
end
C.words = words

-- the port in a line such as "ftp server on 127.0.0.1:2121" or "[::1]:25";
-- none in a Lua error or its traceback ("lua5.4: x.lua:12: ...", "\tbin/
-- parley:12: in main chunk"), whose line numbers once passed for a port
-- (a server that died at start-up then looked like one refusing connections)
local function port_of(line)
  if line:find("^lua5%.4: ") or line:find("^%s") or line:find("traceback", 1, true) then
    return nil
  end
  return tonumber(line:match("%]:(%d+)") or line:match(":(%d+)"))
end

local Child = {}
Child.__index = Child

--- Starts `cmd` (a shell command, run from the repository root under
-- `timeout 60`, stderr with stdout) and reads its output until a line
-- gives the port. `opts.port`: function(line) -> port (default: the digits
-- after the first ":"); `opts.lines`: lines read at most (20). Raises,
-- with what the command printed, when no port came.
-- @return a child: `port`, `pid` (of `timeout`), `fh`, `seen` (the lines read)
function C.spawn(cmd, opts)
  opts = opts or {}
  local fh = assert(io.popen("cd " .. quote(H.root) .. " && sh -c " ..
    quote("echo $$; exec timeout 60 " .. cmd) .. " 2>&1", "r"))
  local pid = tonumber(fh:read("l"))
  local find = opts.port or port_of
  local c = setmetatable({ fh = fh, pid = pid, seen = {} }, Child)
  for _ = 1, opts.lines or 20 do
    local line = fh:read("l")
    if not line then break end
    c.seen[#c.seen + 1] = line
    c.port = find(line)
    if c.port then break end
  end
  if not c.port then
    local out = c:stop()
    error("child did not start: " .. cmd .. "\n" .. table.concat(c.seen, "\n") .. "\n" .. out, 2)
  end
  return c
end

--- Starts `lua5.4 bin/parley serve PROTO ARGS...` (args: a list, quoted
-- here, or a string of shell words).
function C.serve(proto, args, opts)
  return C.spawn("lua5.4 bin/parley serve " .. proto .. " " .. words(args), opts)
end

--- Sends a signal (default TERM) to the command (`timeout` itself only
-- when the command is gone).
function Child:kill(sig)
  if not (self.pid and self.fh) then return end
  sig = sig or "TERM"
  os.execute(("pkill -%s -P %d 2>/dev/null || kill -%s %d 2>/dev/null"):format(sig, self.pid, sig, self.pid))
end

--- Waits for the child to end: the rest of its output, how, code.
function Child:finish()
  if not self.fh then return self.out or "" end
  local out = self.fh:read("a") or ""
  local _, how, code = self.fh:close()
  self.fh, self.out, self.how, self.code = nil, out, how, code
  return out, how, code
end

--- Signals the child (default TERM) and waits for it: its remaining
-- output, how, code. A second call gives the same output.
function Child:stop(sig)
  if not self.fh then return self.out or "", self.how, self.code end
  self:kill(sig)
  return self:finish()
end

return C
