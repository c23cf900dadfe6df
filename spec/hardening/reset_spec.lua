-- Peer reset at every step (issue 11, Faults): each protocol's session is
-- a list of client lines; for k = 0..#lines the client sends the first k
-- (each after the previous reply) and then resets the connection (RST:
-- SO_LINGER 0). Afterwards the server process holds no more descriptors
-- than before, nothing is half-written (Maildir tmp/ empty, every file in
-- new/ and cur/ a whole message; an FTP upload cut short removed, as
-- parley.ftp.server documents: keep_partial = false), and it still serves.
local socket = require "socket"
local lab = require "hardening.support.lab"
local H = lab.H

local BODY = lab.message(1, 20000)
local UPLOAD = H.random_bytes(200000, 3)

-- a step: { line to send, pattern of the reply that ends it (nil: none) }
local function body_steps(steps, text)
  for line in text:gmatch("([^\r\n]*)\r\n") do
    steps[#steps + 1] = { (line:sub(1, 1) == "." and "." or "") .. line }
  end
  return steps
end

local SESSIONS = {
  smtp = body_steps({ { nil, "^220 " }, { "EHLO lab", "^250 " }, { "MAIL FROM:<a@lab>", "^250 " },
    { "RCPT TO:<" .. lab.USER .. "@example.org>", "^250 " }, { "DATA", "^354 " } }, BODY),
  pop3 = { { nil, "^%+OK" }, { "USER " .. lab.USER, "^%+OK" }, { "PASS " .. lab.PASS, "^%+OK" },
    { "STAT", "^%+OK" }, { "RETR 1", "^%.$" }, { "DELE 1", "^%+OK" }, { "RSET", "^%+OK" },
    { "QUIT", "^%+OK" } },
  imap = { { nil, "^%* OK" }, { "a LOGIN " .. lab.USER .. " " .. lab.PASS, "^a OK" },
    { "b SELECT INBOX", "^b OK" }, { "c FETCH 1 (BODY.PEEK[])", "^c OK" },
    -- the literal in three pieces, so that resets cut it part-way
    { "d APPEND INBOX {31}", "^%+" }, { "Subject: appended" }, { "" }, { "body...." },
    { "", "^d OK" }, { "e STORE 1 +FLAGS (\\Seen)", "^e OK" }, { "f LOGOUT", "^f OK" } },
  http = { { "GET /sub/a.txt HTTP/1.1" }, { "Host: lab" }, { "", "^HTTP/1.1 200" },
    { "GET /index.html HTTP/1.1" }, { "Host: lab" }, { "Connection: close" }, { "", "^HTTP/1.1 200" } },
  telnet = { { "\255\251\31" }, { "line one", "line one" }, { "line two", "line two" },
    { "\255\244", nil }, { "line three", "line three" } },
  ftp = { { nil, "^220 " }, { "USER " .. lab.USER, "^331 " }, { "PASS " .. lab.PASS, "^230 " },
    { "TYPE I", "^200 " }, { "PASV", "^227 " }, { "STOR up.bin", "^150 ", upload = true },
    { "PASV", "^227 " }, { "RETR up.bin", "^150 ", download = true }, { "QUIT", "^221 " } },
}

local function reset(c)
  c:setoption("linger", { on = true, timeout = 0 })
  c:close()
end

local function expect(c, pat)
  for _ = 1, 100000 do
    local l, err = c:receive("*l")
    assert(l, "receive: " .. tostring(err) .. " waiting for " .. pat)
    if l:match(pat) then return l end
  end
end

-- FTP data: the upload is sent whole or (cut) half and reset
local function ftp_data(pasv, step, cut)
  local p1, p2 = pasv:match("(%d+),(%d+)%)")
  local d = assert(socket.connect("127.0.0.1", tonumber(p1) * 256 + tonumber(p2)))
  d:settimeout(10)
  return d
end

-- the first k steps of a session, then RST
local function partial(port, steps, k)
  local c = assert(socket.tcp())
  c:settimeout(10)
  assert(c:connect("127.0.0.1", port))
  local pasv, data
  for i = 1, k do
    local s = steps[i]
    if s[1] then assert(c:send(s[1] .. "\r\n")) end
    if s[2] then
      local l = expect(c, s[2])
      if l:match("^227 ") then pasv = l end
    end
    if s.upload or s.download then
      data = ftp_data(pasv)
      if s.upload then
        -- the last step cuts the upload in half and resets both connections
        if i == k then
          assert(data:send(UPLOAD:sub(1, #UPLOAD // 2)))
          reset(data)
        else
          assert(data:send(UPLOAD))
          data:close()
          expect(c, "^226 ")
        end
      else
        if i == k then reset(data) else data:receive("*a") data:close() expect(c, "^226 ") end
      end
    end
  end
  reset(c)
end

-- waits (bounded) until the process has at most `n` descriptors
local function fds_settle(pid, n)
  local got
  for _ = 1, 100 do
    got = lab.fd_count(pid)
    if got <= n then return got end
    socket.sleep(0.02)
  end
  return got
end

local function maildir_whole(dir, msgs)
  assert.same({}, lab.ls(dir .. "/tmp"), "tmp/ is not empty")
  for _, m in ipairs(lab.mailbox(dir)) do
    assert.is_true(msgs[m] ~= nil, "a partial or unknown message in new/ or cur/: " .. #m .. " bytes")
  end
end

local function start(proto, dir)
  if proto == "smtp" or proto == "pop3" or proto == "imap" then
    local srv = lab.serve_mail(dir)
    return srv, srv.ports[proto]
  end
  local args = {
    ftp = { "--root", dir .. "/ftp", "--users", dir .. "/users", "--login-delay", "0" },
    http = { "--root", dir .. "/www", "--access-log", "off" },
    telnet = { "--app", "echo" },
  }
  local a = { "--listen", "127.0.0.1:0" }
  for _, v in ipairs(args[proto]) do a[#a + 1] = v end
  local srv = lab.serve(proto, a)
  return srv, srv.port
end

local function sweep(proto, stride)
  local dir = lab.tree()
  local srv, port = start(proto, dir)
  local ok, err = pcall(function()
    local steps = SESSIONS[proto]
    local msgs = { [BODY] = true, ["Subject: appended\r\n\r\nbody....\r\n"] = true }
    -- a mailbox with one message, one full session: lazily opened files
    -- (indexes, caches) are then part of the baseline
    if proto == "pop3" or proto == "imap" then lab.sessions.smtp(srv.ports.smtp, { BODY }) end
    if proto == "ftp" then partial(port, steps, #steps) end
    local pid = assert(lab.server_pid(srv))
    partial(port, steps, #steps)
    socket.sleep(0.1)
    local base = lab.fd_count(pid)
    local resets = 0
    for k = 0, #steps, stride do
      partial(port, steps, k)
      resets = resets + 1
      local n = fds_settle(pid, base)
      assert(n <= base, ("%s: %d descriptors after a reset at step %d (%d before)"):format(proto, n, k, base))
      if proto == "smtp" or proto == "pop3" or proto == "imap" then
        maildir_whole(dir .. "/md/" .. lab.USER, msgs)
        -- POP3 deletes only in the UPDATE state (RFC 1939 6): a DELE cut
        -- off by a reset (and the RSET before QUIT) deletes nothing
        if proto == "pop3" then
          assert.equal(1, #lab.mailbox(dir .. "/md/" .. lab.USER), "a reset POP3 session deleted a message")
        end
      elseif proto == "ftp" then
        local up = H.read(dir .. "/ftp/up.bin")
        assert.is_true(up == nil or up == UPLOAD, "a partial upload was left: " .. (up and #up or 0) .. " bytes")
      end
    end
    -- and it still serves a whole session
    partial(port, steps, #steps)
    if os.getenv("HARDENING_VERBOSE") then
      io.stderr:write(("reset: %s: %d resets over %d steps, %d fds throughout\n"):format(proto, resets, #steps, base))
    end
  end)
  local out = srv:stop()
  lab.rmdir(dir)
  assert(ok, tostring(err) .. "\nserver output:\n" .. out)
end

describe("a peer reset at every step of a session", function()
  before_each(lab.H.fd_snapshot)
  after_each(lab.H.fd_check)

  for _, proto in ipairs{ "smtp", "pop3", "imap", "ftp", "http", "telnet" } do
    it("leaves " .. proto .. " without leaked descriptors or half-written files", function()
      sweep(proto, proto == "smtp" and 37 or 1)
    end)
    it("leaves " .. proto .. " whole at every single step #slow", function()
      sweep(proto, 1)
    end)
  end
end)
