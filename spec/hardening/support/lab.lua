-- The hardening lab: parley servers as child processes (optionally under
-- an LD_PRELOAD shim from hardening/), a users file, and one scripted
-- session per protocol spoken by LuaSocket (an independent, blocking
-- peer). Each session returns everything the server sent, so two runs can
-- be compared byte for byte.
--
--   local lab = require "hardening.support.lab"
--   local shim = lab.shim("faultnet")            -- builds build/hardening/faultnet.so
--   local dir = lab.tree()                        -- users file, Maildir, FTP and HTTP roots
--   local srv = lab.serve_mail(dir, { env = { LD_PRELOAD = shim } })
--   local bytes = lab.sessions.smtp(srv.ports.smtp, "message text")
--   srv:stop(); lab.rmdir(dir)
local socket = require "socket"
local H = require "helper"
local child = require "support.child"

local L = { H = H, q = child.quote, rmdir = H.rmdir }

L.USER, L.PASS = "hoplite", "xiphos"

--- Builds build/hardening/<name>.so (hardening/<name>.c) and returns its
-- absolute path.
function L.shim(name)
  local so = "build/hardening/" .. name .. ".so"
  local ok = os.execute("cd " .. L.q(H.root) .. " && make -s " .. so .. " >/dev/null")
  assert(ok, "cannot build " .. so)
  return H.root .. "/" .. so
end

--- A fresh lab directory: users (passwd-file), md/ (Maildir root), ftp/
-- (FTP root, writable by the user), www/ (HTTP root with a few files).
function L.tree()
  local dir = H.tmpdir()
  os.execute("mkdir -p " .. L.q(dir .. "/md") .. " " .. L.q(dir .. "/ftp") .. " " .. L.q(dir .. "/www/sub"))
  H.write(dir .. "/users", ("%s:{PLAIN}%s:1000:1000::::ftp_perms=rwdmn\n"):format(L.USER, L.PASS))
  H.write(dir .. "/www/big.bin", H.random_bytes(300000, 7))
  H.write(dir .. "/www/index.html", "<html><body>lab</body></html>\n")
  H.write(dir .. "/www/sub/a.txt", "a\n")
  H.write(dir .. "/ftp/text.txt", ("line of text\n"):rep(5000))
  return dir
end

local function env_words(env)
  local w = {}
  for k, v in pairs(env or {}) do w[#w + 1] = k .. "=" .. L.q(v) end
  table.sort(w)
  return #w > 0 and ("env " .. table.concat(w, " ") .. " ") or ""
end

--- Starts `bin/parley serve PROTO ARGS` (a list) with `opts.env` set and
-- `opts.prefix` (shell words, e.g. "prlimit --nofile=30000") before it;
-- returns the child (support.child): .port, :stop(sig), :kill(sig).
function L.serve(proto, args, opts)
  opts = opts or {}
  local q = {}
  for i, a in ipairs(args) do q[i] = L.q(a) end
  return child.spawn(env_words(opts.env) .. (opts.prefix or "") .. " lua5.4 bin/parley serve " .. proto .. " " .. table.concat(q, " "), opts)
end

--- Starts spec/hardening/support/<script> ARGS (a list) with the repo's
-- Lua paths and `opts.env`; it prints "<proto> server on ADDR".
function L.child(script, args, opts)
  opts = opts or {}
  local q = {}
  for i, a in ipairs(args) do q[i] = L.q(a) end
  local env = { LUA_PATH = "lua/?.lua;lua/?/init.lua;;", LUA_CPATH = "build/?.so;;" }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  return child.spawn(env_words(env) .. "lua5.4 spec/hardening/support/" .. script .. " " ..
    table.concat(q, " "), opts)
end

--- `parley serve mail` (SMTP, POP3, IMAP on free ports) over dir/md and
-- dir/users; the child gets .ports = { smtp =, pop3 =, imap = }.
function L.serve_mail(dir, opts)
  opts = opts or {}
  local ports = {}
  local o = { env = opts.env, lines = 40, port = function(line)
    local proto, port = line:match("^(%w+) server on .-:(%d+)$")
    if proto then ports[proto:lower()] = tonumber(port) end
    if ports.smtp and ports.pop3 and ports.imap then return ports.smtp end
  end }
  local srv = L.serve("mail", { "--maildir", dir .. "/md", "--users", dir .. "/users",
    "--domain", "example.org", "--auth-delay", opts.auth_delay or "0",
    "--smtp", "127.0.0.1:0", "--pop3", "127.0.0.1:0", "--imap", "127.0.0.1:0" }, o)
  srv.ports = ports
  return srv
end

--- The files (names) in a directory, sorted; {} when it is missing.
function L.ls(path)
  local out = {}
  local p = io.popen("ls -A " .. L.q(path) .. " 2>/dev/null")
  for n in p:lines() do out[#out + 1] = n end
  p:close()
  return out
end

--- Descriptors a process has open (counted from /proc/PID/fd).
function L.fd_count(pid)
  local n = 0
  local p = io.popen("ls /proc/" .. pid .. "/fd 2>/dev/null")
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

--- The pid of the lua5.4 process under a child's `timeout`.
function L.server_pid(srv)
  local p = io.popen("pgrep -P " .. srv.pid)
  local pid = tonumber(p:read("l"))
  p:close()
  return pid
end

--- A transcript with what legitimately differs between two runs masked:
-- dates and times, long hex or decimal ids (message ids, UIDs,
-- UIDVALIDITY, ETags, APOP stamps), passive-mode ports.
function L.mask(s)
  s = s:gsub("%a%a%a, %d%d? %a%a%a %d%d%d%d %d%d:%d%d:%d%d", "<date>")
  s = s:gsub("%d%d:%d%d:%d%d", "<time>")
  s = s:gsub("%(127,0,0,1,%d+,%d+%)", "(<pasv>)")
  s = s:gsub("<[%d.]+@[^>]*>", "<stamp>")
  s = s:gsub("%x%x%x%x%x%x%x%x+", "<id>")
  s = s:gsub("UIDVALIDITY %d+", "UIDVALIDITY <n>")
  return s
end

--- Every message file under a Maildir user (new/ and cur/), trace
-- headers removed, sorted: what the store holds, whatever the names.
function L.mailbox(dir)
  local out = {}
  for _, sub in ipairs{ "new", "cur" } do
    for _, n in ipairs(L.ls(dir .. "/" .. sub)) do
      local m = assert(H.read(dir .. "/" .. sub .. "/" .. n))
      m = m:gsub("^Return%-Path: [^\r\n]*\r\n", "")
      m = m:gsub("^Received: .-\r\n(%S)", "%1")
      out[#out + 1] = m
    end
  end
  table.sort(out)
  return out
end

---------------------------------------------------------------------------
-- A transcript client: every byte the server sends is kept.
---------------------------------------------------------------------------

local T = {}
T.__index = T

--- Connects to 127.0.0.1:port (timeout seconds per call, default 10).
function L.connect(port, timeout)
  local c = assert(socket.tcp())
  c:settimeout(timeout or 10)
  assert(c:connect("127.0.0.1", port))
  return setmetatable({ c = c, got = {} }, T)
end

function T:send(s)
  assert(self.c:send(s))
  return self
end

--- One line (CRLF kept out of the return value, kept in the transcript).
function T:line()
  local l, err = self.c:receive("*l")
  assert(l, "receive: " .. tostring(err) .. " after " .. table.concat(self.got):sub(-300))
  self.got[#self.got + 1] = l .. "\n"
  return l
end

--- Lines until one matches `pat`; returns that line.
function T:upto(pat)
  for _ = 1, 100000 do
    local l = self:line()
    if l:match(pat) then return l end
  end
  error("no line matched " .. pat)
end

--- Exactly n bytes.
function T:bytes(n)
  local s, err = self.c:receive(n)
  assert(s, "receive: " .. tostring(err))
  self.got[#self.got + 1] = s
  return s
end

--- Everything until the peer closes.
function T:rest()
  local s, err, part = self.c:receive("*a")
  s = s or part
  assert(s, "receive: " .. tostring(err))
  self.got[#self.got + 1] = s
  return s
end

function T:close() self.c:close() end
function T:transcript() return table.concat(self.got) end

---------------------------------------------------------------------------
-- One session per protocol; each returns the transcript.
---------------------------------------------------------------------------

local S = {}
L.sessions = S

--- A message body that exercises dot-stuffing and long lines.
function L.message(i, size)
  local parts, n = { ("Subject: lab %d\r\n\r\n"):format(i), ".leading dot\r\n", "..two dots\r\n" }, 0
  while n < (size or 100000) do
    local l = ("%d:%06d "):format(i, n) .. ("x"):rep(n % 97) .. (n % 5 == 0 and "\r\n." or "") .. "\r\n"
    parts[#parts + 1] = l
    n = n + #l
  end
  return table.concat(parts)
end

--- A message dot-stuffed for DATA (RFC 5321 4.5.2), without the final ".".
function L.stuff(m)
  return (m:gsub("\r\n%.", "\r\n.."):gsub("^%.", ".."))
end

function S.smtp(port, messages)
  local c = L.connect(port)
  c:upto("^220 ")
  c:send("EHLO lab.example\r\n"):upto("^250 ")
  for _, m in ipairs(messages) do
    c:send("MAIL FROM:<a@lab.example>\r\n"):upto("^250 ")
    c:send("RCPT TO:<" .. L.USER .. "@example.org>\r\n"):upto("^250 ")
    c:send("DATA\r\n"):upto("^354 ")
    c:send(L.stuff(m) .. ".\r\n"):upto("^250 ")
  end
  c:send("QUIT\r\n"):upto("^221 ")
  c:close()
  return c:transcript()
end

-- a POP3 multi-line answer, dot-unstuffing left to the reader (bytes kept)
local function pop3_multi(c)
  assert(c:line():match("^%+OK"))
  c:upto("^%.$")
end

function S.pop3(port, n)
  local c = L.connect(port)
  c:upto("^%+OK")
  c:send("USER " .. L.USER .. "\r\n"):upto("^%+OK")
  c:send("PASS " .. L.PASS .. "\r\n"):upto("^%+OK")
  c:send("STAT\r\n"):upto("^%+OK")
  c:send("LIST\r\n"); pop3_multi(c)
  c:send("UIDL\r\n"); pop3_multi(c)
  for i = 1, n do
    c:send("RETR " .. i .. "\r\n"); pop3_multi(c)
    c:send("TOP " .. i .. " 3\r\n"); pop3_multi(c)
  end
  c:send("QUIT\r\n"):upto("^%+OK")
  c:close()
  return c:transcript()
end

-- an IMAP tagged command; literals in responses are read by their size
local function imap_cmd(c, tag, cmd)
  c:send(tag .. " " .. cmd .. "\r\n")
  for _ = 1, 100000 do
    local l = c:line()
    local size = l:match("{(%d+)}$")
    while size do
      c:bytes(tonumber(size))
      l = c:line()
      size = l:match("{(%d+)}$")
    end
    if l:sub(1, #tag + 1) == tag .. " " then
      assert(l:match("^%S+ OK"), l)
      return
    end
  end
end

function S.imap(port)
  local c = L.connect(port)
  c:upto("^%* OK")
  imap_cmd(c, "a1", "LOGIN " .. L.USER .. " " .. L.PASS)
  imap_cmd(c, "a2", "SELECT INBOX")
  imap_cmd(c, "a3", "FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[])")
  imap_cmd(c, "a4", "STORE 1 +FLAGS (\\Flagged)")
  imap_cmd(c, "a5", "UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
  imap_cmd(c, "a6", "LOGOUT")
  c:close()
  return c:transcript()
end

-- FTP: the data connection's bytes are appended to the transcript
local function ftp_data(c, cmd, upload)
  local l = c:send("PASV\r\n"):upto("^227 ")
  local h1, h2, h3, h4, p1, p2 = l:match("(%d+),(%d+),(%d+),(%d+),(%d+),(%d+)")
  local d = L.connect(tonumber(p1) * 256 + tonumber(p2))
  assert(h1 and h2 and h3 and h4)
  c:send(cmd .. "\r\n"):upto("^1%d%d ")
  if upload then
    assert(d.c:send(upload))
    d:close()
  else
    d:rest()
    d:close()
    c.got[#c.got + 1] = d:transcript()
  end
  c:upto("^2%d%d ")
end

function S.ftp(port, upload)
  local c = L.connect(port)
  c:upto("^220 ")
  c:send("USER " .. L.USER .. "\r\n"):upto("^331 ")
  c:send("PASS " .. L.PASS .. "\r\n"):upto("^230 ")
  c:send("TYPE I\r\n"):upto("^200 ")
  ftp_data(c, "STOR up.bin", upload)
  ftp_data(c, "RETR up.bin")
  c:send("TYPE A\r\n"):upto("^200 ")
  ftp_data(c, "RETR text.txt")
  ftp_data(c, "STOR up.txt", ("ascii line\r\n"):rep(3000))
  c:send("TYPE I\r\n"):upto("^200 ")
  ftp_data(c, "RETR up.txt")
  c:send("SIZE up.bin\r\n"):upto("^213 ")
  c:send("QUIT\r\n"):upto("^221 ")
  c:close()
  return c:transcript()
end

-- one HTTP response: head lines, then a Content-Length or chunked body
local function http_response(c, head_only)
  local len, chunked
  c:upto("^HTTP/1%.1 ")
  for _ = 1, 200 do
    local l = c:line():gsub("\r$", "")
    if l == "" then break end
    local k, v = l:match("^([^:]+):%s*(.*)$")
    k = k and k:lower()
    if k == "content-length" then len = tonumber(v) end
    if k == "transfer-encoding" and v:lower():match("chunked") then chunked = true end
  end
  if head_only then return end
  if chunked then
    for _ = 1, 100000 do
      local size = tonumber(c:line():match("^(%x+)"), 16)
      if size == 0 then
        while c:line():gsub("\r$", "") ~= "" do end
        return
      end
      c:bytes(size + 2)
    end
  elseif len then
    c:bytes(len)
  end
end

function S.http(port)
  local c = L.connect(port)
  local host = "Host: lab\r\n"
  c:send("GET /big.bin HTTP/1.1\r\n" .. host .. "\r\n"); http_response(c)
  c:send("HEAD /index.html HTTP/1.1\r\n" .. host .. "\r\n"); http_response(c, true)
  c:send("GET /sub/ HTTP/1.1\r\n" .. host .. "\r\n"); http_response(c)
  c:send("GET /big.bin HTTP/1.1\r\n" .. host .. "Range: bytes=1000-65999\r\n\r\n"); http_response(c)
  -- a chunked request body the server must read past (static: 405)
  c:send("POST /index.html HTTP/1.1\r\n" .. host .. "Transfer-Encoding: chunked\r\n\r\n" ..
    "5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n"); http_response(c)
  c:send("GET /index.html HTTP/1.1\r\n" .. host .. "Connection: close\r\n\r\n"); http_response(c)
  c:close()
  return c:transcript()
end

--- The application routes of support/http_child.lua: a chunked response
-- and a chunked request body echoed back chunked.
function S.http_app(port)
  local c = L.connect(port)
  local host = "Host: lab\r\n"
  c:send("GET /stream HTTP/1.1\r\n" .. host .. "\r\n"); http_response(c)
  local body = L.message(5, 100000)
  local parts = {}
  for i = 1, #body, 7777 do
    local p = body:sub(i, i + 7776)
    parts[#parts + 1] = ("%x\r\n%s\r\n"):format(#p, p)
  end
  c:send("POST /echo HTTP/1.1\r\n" .. host .. "Transfer-Encoding: chunked\r\n\r\n" ..
    table.concat(parts) .. "0\r\n\r\n"); http_response(c)
  c:send("GET /sub/a.txt HTTP/1.1\r\n" .. host .. "Connection: close\r\n\r\n"); http_response(c)
  c:close()
  return c:transcript()
end

function S.telnet(port)
  local c = L.connect(port)
  -- our side: WILL NAWS with the window size, DO SGA; then lines to echo,
  -- each awaited (an IAC IP would discard input not yet read)
  c:send("\255\251\31\255\250\31\0\80\0\24\255\240\255\253\3")
  for i = 1, 100 do
    local line = ("echo line %d %s"):format(i, ("t"):rep(i))
    c:send(line .. "\r\n")
    c:upto(line)
  end
  -- IAC IP ends the line it is on (the session reads "interrupted"); the
  -- next line is echoed again
  c:send("\255\244\r\nafter the interrupt\r\n")
  c:upto("after the interrupt")
  c:close()
  return c:transcript()
end

return L
