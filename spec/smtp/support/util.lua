-- Helpers for the SMTP specs: temp dirs, an in-process server, a raw
-- client that speaks bytes, child-process servers, Maildir readers.
package.path = package.path .. ";spec/smtp/support/stub/?.lua"
local parley = require "parley"
local lfs = require "lfs"
local H = require "helper"

local U = { H = H }

function U.tmpdir(tag)
  local p = os.tmpname()
  os.remove(p)
  p = p .. "-smtp-" .. (tag or "x")
  assert(lfs.mkdir(p))
  return p
end

function U.rmrf(p)
  if p and p:match("^/tmp/") then os.execute("rm -rf '" .. p .. "'") end
end

function U.slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function U.write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- files (full paths) in dir, sorted; [] when dir is missing
function U.files(dir)
  local out = {}
  if not lfs.attributes(dir) then return out end
  for n in lfs.dir(dir) do
    if n ~= "." and n ~= ".." then out[#out + 1] = dir .. "/" .. n end
  end
  table.sort(out)
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
function U.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- A child `parley serve smtp` process. Returns { port, pid, fh, stop() }.
function U.child_server(args)
  local root = H.root
  local cmd = ("cd %s && LUA_PATH=%s exec timeout 60 lua5.4 bin/parley serve smtp --listen 127.0.0.1:0 %s 2>&1 & echo PID $!")
    :format(U.q(root), U.q(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/spec/smtp/support/stub/?.lua;;"), args)
  local fh = assert(io.popen("sh -c " .. U.q(cmd .. "; wait"), "r"))
  local pid = tonumber((fh:read("l") or ""):match("PID (%d+)"))
  local line = fh:read("l") or ""
  local port = tonumber(line:match(":(%d+)"))
  if not port then
    local rest = fh:read("a")
    fh:close()
    error("server did not start: " .. line .. "\n" .. tostring(rest))
  end
  local child = { port = port, pid = pid, fh = fh }
  -- pid is `timeout`'s; the server is its child
  function child.kill(sig)
    os.execute(("pkill -%s -P %d 2>/dev/null; kill -%s %d 2>/dev/null"):format(sig or "TERM", pid, sig or "TERM", pid))
  end
  function child.stop()
    if child.stopped then return child.out end
    child.stopped = true
    child.kill("TERM")
    child.out = fh:read("a")
    fh:close()
    return child.out
  end
  return child
end

-- runs a shell command (under timeout 60), returns output, ok
function U.sh(cmd)
  local fh = assert(io.popen("timeout 60 sh -c " .. U.q(cmd) .. " 2>&1", "r"))
  local out = fh:read("a")
  local ok, _, code = fh:close()
  return out, ok, code
end

function U.have(prog)
  local out = U.sh("command -v " .. prog)
  return out ~= ""
end

return U
