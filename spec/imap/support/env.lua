-- Helpers for the IMAP specs: a scratch Maildir store, an in-process
-- server, a raw line-level IMAP talker, and a child-process server for the
-- third-party clients.
--
--   local E = require "imap.support.env"
--   local dir, store = E.store()              -- /tmp/parley-mail-imap.XXXX
--   H.run(function()
--     local srv = E.server(store)              -- alice/pw, bob/pw
--     local c = E.raw(srv.port)                -- greeting read
--     local lines, tagged = c:cmd("a LOGIN alice pw")
--     c:close(); srv:close(0)
--   end)
--   E.cleanup()                                 -- in after_each
local parley = require "parley"
local T = require "mail.support.tmpdir"
local maildir = require "parley.mail.maildir"
local users = require "parley.mail.users"

local E = {}

E.T = T

function E.root()
  return require("helper").root
end

--- A scratch directory with a store in `dir/mail`.
function E.store()
  local dir = T.new("imap")
  local store = assert(maildir.open(dir .. "/mail", { fsync = false }))
  return dir, store
end

function E.users()
  return users.from_table { alice = "pw", bob = "pw" }
end

--- An in-process server on 127.0.0.1:0 (call inside a task).
function E.server(store, opts)
  local o = { listen = "127.0.0.1:0", store = store, users = E.users(), auth_delay = 0,
              signals = false }
  for k, v in pairs(opts or {}) do o[k] = v end
  return assert(require("parley.imap.server").serve(o))
end

local raw_methods = {}
raw_methods.__index = raw_methods

--- A raw client: c:cmd(line) sends the line and returns the untagged
-- responses (literals inlined) and the tagged line. c:line() reads one
-- response line (with its literals), c:send(bytes) sends as is.
function E.raw(port, noread)
  local conn = assert(parley.connect("127.0.0.1", port, { timeout = 10 }))
  conn:setoption("max-line", 1 << 24)
  local c = setmetatable({ conn = conn }, raw_methods)
  if not noread then c.greeting = c:line() end
  return c
end

function raw_methods:line()
  local line, err = self.conn:receive("l")
  if not line then return nil, err end
  local out = { line }
  while true do
    local n = line:match("{(%d+)}$")
    if not n then break end
    local data = assert(self.conn:receive(tonumber(n)))
    out[#out + 1] = "\r\n" .. data
    line = assert(self.conn:receive("l"))
    out[#out + 1] = line
  end
  return table.concat(out)
end

function raw_methods:send(data)
  assert(self.conn:send(data))
  assert(self.conn:flush())
end

function raw_methods:cmd(line)
  local tag = line:match("^(%S+)")
  self:send(line .. "\r\n")
  return self:until_tag(tag)
end

function raw_methods:until_tag(tag)
  local lines = {}
  for _ = 1, 100000 do
    local l, err = self:line()
    if not l then return lines, nil, err end
    if l:sub(1, #tag + 1) == tag .. " " then return lines, l end
    lines[#lines + 1] = l
  end
  error("too many lines")
end

function raw_methods:close()
  self.conn:close()
end

--- Logs in as alice (or `user`) and selects `box` (default INBOX).
function raw_methods:login_select(box, user)
  local _, t = self:cmd("L1 LOGIN " .. (user or "alice") .. " pw")
  assert(t and t:match("^L1 OK"), t)
  if box ~= false then
    local lines
    lines, t = self:cmd("L2 SELECT " .. (box or "INBOX"))
    assert(t and t:match("^L2 OK"), t)
    return lines
  end
end

--- Finds the first line matching a pattern, or nil.
function E.find(lines, pat)
  for _, l in ipairs(lines) do
    if l:match(pat) then return l end
  end
  return nil
end

---------------------------------------------------------------------------
-- Child-process server (for blocking third-party clients)
---------------------------------------------------------------------------

--- Starts `bin/parley serve imap` on a free port over `dir/mail`, with a
-- users file alice:pw, bob:pw. Returns port, pid.
function E.child_server(dir)
  T.write(dir .. "/users", "alice:{PLAIN}pw\nbob:{PLAIN}pw\n")
  local root = E.root()
  local out = dir .. "/server.out"
  local pid = T.sh(string.format(
    "cd '%s' && (timeout 120 lua5.4 bin/parley serve imap --listen 127.0.0.1:0 --maildir '%s/mail' --users '%s/users' --auth-delay 0 >'%s' 2>'%s.err' & echo $!)",
    root, dir, dir, out, out))
  pid = assert(tonumber(pid), "no pid")
  local port
  for _ = 1, 100 do
    local text = T.read(out) or ""
    port = text:match("127%.0%.0%.1:(%d+)")
    if port then break end
    os.execute("sleep 0.05")
  end
  assert(port, "server did not start: " .. (T.read(out .. ".err") or ""))
  return tonumber(port), pid
end

--- Stops a child server started by child_server (its timeout wrapper and
-- the server under it).
function E.kill(pid)
  if pid then
    os.execute("pkill -TERM -P " .. pid .. " 2>/dev/null; kill " .. pid .. " 2>/dev/null")
  end
end

function E.cleanup()
  os.execute("sleep 0.05")
  T.cleanup()
end

-- A before_each and an after_each for a describe block: a fresh store
-- with three messages for alice ("Subject: m<i>"), handed to
-- ready(store, mailbox); then the cleanup and the fd check.
function E.three_messages(ready)
  local H = require "helper"
  return function()
    H.fd_snapshot()
    local _, store = E.store()
    for i = 1, 3 do assert(store:deliver("alice", "Subject: m" .. i .. "\r\n\r\nbody " .. i .. "\r\n")) end
    ready(store, assert(store:mailbox("alice")))
  end, function()
    E.cleanup()
    H.fd_check()
  end
end

-- Runs fn(raw_client, server) against a fresh server over `store`.
function E.with_raw(store, fn)
  require("helper").run(function()
    local srv = E.server(store)
    local c = E.raw(srv.port)
    fn(c, srv)
    c:close()
    srv:close(0)
  end, 20)
end

return E
