-- Helpers for the SMTP specs: temp dirs, an in-process server, a raw
-- client that speaks bytes, child-process servers, Maildir readers.
local parley = require "parley"
local H = require "helper"
local child = require "support.child"

local U = { H = H }

function U.tmpdir(tag) return H.tmpdir("smtp-" .. (tag or "x")) end

U.rmrf = H.rmdir

function U.slurp(path) return (assert(H.read(path), "cannot read " .. path)) end
U.write = H.write

-- files (full paths) in dir, sorted; [] when dir is missing
function U.files(dir)
  local out = H.names(dir)
  for i, n in ipairs(out) do out[i] = dir .. "/" .. n end
  return out
end

-- the messages delivered to a user (contents, in name order)
function U.delivered(root, user)
  local out = {}
  for _, f in ipairs(U.files(root .. "/" .. user .. "/new")) do out[#out + 1] = U.slurp(f) end
  return out
end

-- removes the trace headers the server adds (Return-Path, Received)
function U.strip_trace(msg)
  msg = msg:gsub("^Return%-Path: [^\r\n]*\r\n", "")
  while true do
    local rest = msg:match("^Received: [^\r\n]*\r\n(.*)$")
    if not rest then break end
    while rest:match("^[ \t]") do rest = rest:match("^[^\n]*\n(.*)$") end
    msg = rest
  end
  return msg
end

function U.store(root)
  return require("parley.mail.maildir").open(root, { fsync = false })
end

function U.users(t)
  return require("parley.mail.users").from_table(t)
end

-- an in-process server with a temp Maildir; returns srv, root
function U.server(opts)
  local server = require "parley.smtp.server"
  opts = opts or {}
  local root = opts.root or U.tmpdir("md")
  local o = { listen = "127.0.0.1:0", domains = { "example.org" }, signals = false,
    auth_delay = 0, error_delay = 0 }
  if not opts.sink and not opts.on_message then o.store = U.store(root) end
  for k, v in pairs(opts) do o[k] = v end
  local srv = assert(server.serve(o))
  return srv, root
end

-- A raw client: send bytes, read replies (multi-line joined).
local Raw = {}
Raw.__index = Raw
function U.raw(port, timeout)
  local c = assert(parley.connect("127.0.0.1", port, { timeout = timeout or 5 }))
  return setmetatable({ c = c }, Raw)
end
function Raw:send(s) assert(self.c:send(s)) self.c:flush() return self end
-- one reply: code (number), full text (lines joined by \n)
function Raw:reply()
  local lines = {}
  for _ = 1, 100 do
    local l, err = self.c:receive("l")
    if not l then return nil, err end
    lines[#lines + 1] = l
    if l:sub(4, 4) ~= "-" then break end
  end
  return tonumber(lines[#lines]:sub(1, 3)), table.concat(lines, "\n")
end
function Raw:cmd(line)
  self:send(line .. "\r\n")
  return self:reply()
end
function Raw:close() self.c:close() end
function Raw:greet()
  assert(self:reply() == 220)
  assert(self:cmd("EHLO test") == 250)
  return self
end

-- shell quoting
U.q = child.quote

-- A child `parley serve smtp` process (spec/support/child.lua):
-- `port`, `:kill(sig)`, `:stop()` -> its output.
function U.child_server(args)
  return child.serve("smtp", "--listen 127.0.0.1:0 " .. args)
end

-- A temp dir holding `users` (a passwd-file) and a child `parley serve
-- smtp` for example.org delivering into root/md; returns root, srv.
function U.child_with_users(tag, users)
  local root = U.tmpdir(tag)
  U.write(root .. "/users", users)
  return root, U.child_server(("--maildir %s --domain example.org --users %s --auth-delay 0")
    :format(U.q(root .. "/md"), U.q(root .. "/users")))
end

-- runs fn(srv, root) against a fresh in-process server (U.server)
function U.with_server(opts, fn)
  local root
  H.run(function()
    local srv
    srv, root = U.server(opts)
    local ok, err = pcall(fn, srv, root)
    srv:close(0)
    if not ok then error(err, 0) end
  end, 30)
  U.rmrf(root)
end

-- runs a shell command (under timeout 60), returns output, ok
function U.sh(cmd)
  local fh = assert(io.popen("timeout 60 sh -c " .. U.q(cmd) .. " 2>&1", "r"))
  local out = fh:read("a")
  local ok, _, code = fh:close()
  return out, ok, code
end

U.have = H.have

return U
