-- Helpers for the FTP specs: a file tree, an in-process server, a raw
-- control connection, a server in a child process, third-party peers.
local parley = require "parley"
local core = require "parley.core"
local H = require "helper"
local ftp = require "parley.ftp"

local F = {}

local child = require "support.child"
local quote = child.quote
F.quote = quote

local write = H.write
F.write = write
F.read = H.read

--- A temporary tree: root/{hello.txt, text.txt (LF lines), big.bin (1 MiB),
-- sub/inner.txt, up/} plus an "outside" directory next to root with a
-- secret, and symlinks: root/escape -> outside, root/sub/evil ->
-- ../../outside/secret.txt, root/inlink -> sub (stays inside).
function F.tree()
  local base = H.tmpdir()
  local root = base .. "/root"
  os.execute("mkdir -p " .. quote(root .. "/sub") .. " " .. quote(root .. "/up") .. " " ..
             quote(base .. "/outside") .. " " .. quote(root .. "/users/alice") .. " " ..
             quote(root .. "/users/bob"))
  write(root .. "/hello.txt", "hello, world\n")
  write(root .. "/text.txt", "line one\nline two\n\nline four\n")
  H.random_file(root .. "/big.bin", 1048576)
  write(root .. "/sub/inner.txt", "inner\n")
  write(base .. "/outside/secret.txt", "secret\n")
  write(root .. "/users/alice/a.txt", "alice\n")
  os.execute("ln -s " .. quote(base .. "/outside") .. " " .. quote(root .. "/escape"))
  os.execute("ln -s ../../outside/secret.txt " .. quote(root .. "/sub/evil"))
  os.execute("ln -s sub " .. quote(root .. "/inlink"))
  return { base = base, root = root }
end

function F.cleanup(t) if t then H.rmdir(t.base) end end

--- Runs fn(srv, tree) with an in-process server (login_delay small).
function F.with_server(opts, fn, limit)
  local t = F.tree()
  local ok, err = pcall(H.run, function()
    local o = { listen = "127.0.0.1:0", root = t.root, anonymous = true, signals = false,
                login_delay = 0.05 }
    for k, v in pairs(opts or {}) do o[k] = v end
    if type(o.users) == "function" then o.users = o.users(t) end
    local srv = assert(ftp.server.serve(o))
    local fok, ferr = pcall(fn, srv, t)
    srv:close(0)
    if not fok then error(ferr, 0) end
  end, limit or 20)
  F.cleanup(t)
  if not ok then error(err, 0) end
end

--- A logged-in parley client (anonymous unless user given).
function F.client(srv, user, pass, opts)
  local c = assert(ftp.client.connect("127.0.0.1", srv.port, opts or { timeout = 10 }))
  assert(c:login(user, pass))
  return c
end

---------------------------------------------------------------------------
-- Raw control connection
---------------------------------------------------------------------------

local Raw = {}
Raw.__index = Raw

function F.raw(port, host)
  local conn = assert(parley.connect(host or "127.0.0.1", port, { timeout = 10 }))
  local r = setmetatable({ conn = conn, p = core.ftp.reply_parser() }, Raw)
  r.greeting = r:reply()
  return r
end

--- Reads one reply: code, text.
function Raw:reply()
  while true do
    local line, err = self.conn:receive("l")
    if not line then return nil, err end
    local code, text = self.p:feed_line(line)
    if code then return code, text end
    if text then return nil, text end
  end
end

--- Sends a line, returns the reply.
function Raw:cmd(line)
  self.conn:send(line .. "\r\n")
  return self:reply()
end

function Raw:login(user, pass)
  self:cmd("USER " .. (user or "anonymous"))
  return self:cmd("PASS " .. (pass or "x@"))
end

--- PASV then connect the data connection: returns the data stream.
function Raw:pasv()
  local code, text = self:cmd("EPSV")
  assert(code == 229, text)
  local port = core.ftp.parse_epsv(text)
  return assert(parley.connect("127.0.0.1", port, { timeout = 10 })), port
end

function Raw:close() self.conn:close() end

---------------------------------------------------------------------------
-- Child processes (spec/support/child.lua: `port`, `:stop()`)
---------------------------------------------------------------------------

--- Starts `cmd` (a shell command printing a line with ":PORT" first, or
-- one matching `pattern`, whose capture is the port) under timeout 60.
function F.spawn(cmd, pattern)
  return child.spawn(cmd, pattern and { port = function(line) return tonumber(line:match(pattern)) end })
end

--- `parley serve ftp` in a child process.
function F.parley_child(args)
  return child.serve("ftp", "--listen 127.0.0.1:0 " .. args)
end

--- Runs a shell command (under timeout 60): output, ok.
function F.sh(cmd)
  local fh = assert(io.popen("timeout 60 sh -c " .. quote(cmd) .. " 2>&1", "r"))
  local out = fh:read("a")
  local ok = fh:close()
  return out, ok
end

return F
