-- Helpers for the POP3 specs: temp Maildirs, in-process servers, a raw
-- client that speaks bytes, child-process servers (spec/support/child.lua),
-- shell commands.
local parley = require "parley"
local H = require "helper"
local child = require "support.child"

local U = { H = H }

function U.tmpdir(tag) return H.tmpdir("pop3-" .. (tag or "x")) end

U.rmrf = H.rmdir

function U.slurp(path) return (assert(H.read(path), "cannot read " .. path)) end
U.write = H.write

-- file names in dir, sorted ({} when missing)
U.files = H.names

function U.store(root)
  return assert(require("parley.mail.maildir").open(root, { fsync = false }))
end

function U.users(t)
  return require("parley.mail.users").from_table(t or { alice = "wonderland", bob = "builder" })
end

-- an in-process server over a temp Maildir: srv, store, root
function U.server(opts)
  opts = opts or {}
  local root = opts.root or U.tmpdir("md")
  local store = opts.store or U.store(root)
  local o = { listen = "127.0.0.1:0", store = store, users = U.users(), signals = false,
              auth_delay = 0, hostname = "pop.test" }
  for k, v in pairs(opts) do if k ~= "root" then o[k] = v end end
  local srv = assert(require("parley.pop3.server").serve(o))
  return srv, store, root
end

-- Runs fn(srv, store, root) in a task beside a server (U.server(opts))
-- whose Maildir holds `messages` for alice; the server is closed and the
-- Maildir removed afterwards, even when fn fails.
function U.serving(messages, opts, fn)
  local root
  H.run(function()
    local srv, store
    srv, store, root = U.server(opts)
    for _, m in ipairs(messages) do store:deliver("alice", m) end
    local ok, err = pcall(fn, srv, store, root)
    srv:close(0)
    if not ok then error(err, 0) end
  end, 30)
  if not (opts and opts.root) then U.rmrf(root) end
end

-- A raw client: bytes out, status lines and multi-line bodies in.
local Raw = {}
Raw.__index = Raw
function U.raw(port, timeout)
  local c = assert(parley.connect("127.0.0.1", port, { timeout = timeout or 5 }))
  local self = setmetatable({ c = c }, Raw)
  self.greeting = c:receive("l")
  return self
end
function Raw:send(s) assert(self.c:send(s)) self.c:flush() return self end
function Raw:line() return self.c:receive("l") end
function Raw:cmd(line)
  self:send(line .. "\r\n")
  return self:line()
end
-- the body of a multi-line reply, as sent (still stuffed), lines joined by CRLF
function Raw:body()
  local lines = {}
  for _ = 1, 100000 do
    local l, err = self.c:receive("l")
    if not l then return nil, err end
    if l == "." then return table.concat(lines) end
    lines[#lines + 1] = l .. "\r\n"
  end
end
function Raw:login(user, pass)
  assert(self:cmd("USER " .. (user or "alice")):match("^%+OK"))
  local r = self:cmd("PASS " .. (pass or "wonderland"))
  return r
end
function Raw:close() self.c:close() end

-- shell quoting
U.q = child.quote

-- runs a shell command (under timeout 60): output, ok
function U.sh(cmd)
  local fh = assert(io.popen("timeout 60 sh -c " .. U.q(cmd) .. " 2>&1", "r"))
  local out = fh:read("a")
  local ok = fh:close()
  return out, ok
end

U.have = H.have

-- "<proto> server on HOST:PORT" (or "... on [::1]:PORT"): proto, port
local function server_line(line)
  local proto, port = line:match("^(%S+) .* on [^%s]*:(%d+)")
  return proto, tonumber(port)
end

-- A child process `lua5.4 <args>` from the repository root, under
-- `timeout 60` (spec/support/child.lua), with the repository's lua/ and
-- build/ first on its paths. It must print lines "<proto> server on
-- HOST:PORT"; `nlines` such lines are read (default 1).
-- Returns { pid, ports = {proto = port}, port (first), stop() -> output }.
function U.child(args, nlines)
  local root = H.root
  local c = child.spawn(("env LUA_PATH=%s LUA_CPATH=%s lua5.4 %s")
    :format(U.q(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;"),
            U.q(root .. "/build/?.so;;"), args),
    { lines = 1, port = function(line) return (select(2, server_line(line))) end })
  c.ports = {}
  local function note(line)
    local proto, port = server_line(line or "")
    if not port then
      local out = c:stop()
      error("server did not start: " .. tostring(line) .. "\n" .. out, 3)
    end
    c.ports[proto] = port
  end
  note(c.seen[#c.seen])
  for _ = 2, nlines or 1 do note(c.fh:read("l")) end
  local stop = c.stop
  -- called as child.stop(): TERM, then the output
  function c.stop() return (stop(c)) end
  return c
end

-- a users file with PLAIN users
function U.users_file(path, t)
  local lines = {}
  for name, pw in pairs(t or { alice = "wonderland", bob = "builder" }) do
    lines[#lines + 1] = name .. ":{PLAIN}" .. pw
  end
  table.sort(lines)
  U.write(path, table.concat(lines, "\n") .. "\n")
  return path
end

return U
