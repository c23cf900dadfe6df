-- Protocol fuzzing on the wire (issue 11, Fuzzing: the parts in Lua, POP3
-- whole, and every server's session logic above the C codecs). A seeded
-- mutator turns valid client lines into broken ones (bytes flipped,
-- truncated, CR/LF/NUL/0xFF/IAC inserted, repeated, 8 KiB long, literals
-- and counts gone wrong) and streams them into each server, a batch per
-- connection. Every line the server sends must be well-formed for its
-- protocol, no handler may die with a Lua error (the server logs
-- "stack traceback"), descriptors settle back, and a valid session still
-- works afterwards.
local socket = require "socket"
local lab = require "hardening.support.lab"

local SEEDS = {
  smtp = { "EHLO lab", "HELO lab", "MAIL FROM:<a@lab> SIZE=100 BODY=8BITMIME", "RCPT TO:<hoplite@example.org>",
    "RCPT TO:<\"q uo\"@example.org> NOTIFY=NEVER", "DATA", "Subject: x", ".", "BDAT 5 LAST", "RSET", "NOOP x",
    "VRFY hoplite", "AUTH PLAIN AGhvcGxpdGUAeGlwaG9z", "AUTH LOGIN", "STARTTLS", "HELP", "QUIT" },
  pop3 = { "USER hoplite", "PASS xiphos", "APOP hoplite 0123456789abcdef0123456789abcdef", "STAT", "LIST",
    "LIST 1", "UIDL", "UIDL 1", "RETR 1", "TOP 1 0", "TOP 1 99999999999999999999", "DELE 1", "RSET", "NOOP",
    "CAPA", "AUTH PLAIN", "AGhvcGxpdGUAeGlwaG9z", "STLS", "UTF8", "QUIT" },
  imap = { "a LOGIN hoplite xiphos", "b SELECT INBOX", "c FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
    "d UID FETCH 1:* (BODYSTRUCTURE ENVELOPE)", "e STORE 1 +FLAGS (\\Seen)", "f SEARCH OR SEEN FROM \"a\" LARGER 10",
    "g APPEND INBOX (\\Seen) {5+}", "hello", "h LIST \"\" *", "i STATUS INBOX (MESSAGES UIDNEXT)", "j EXPUNGE",
    "k COPY 1 INBOX", "l IDLE", "DONE", "m CREATE x&AKM-", "n NOOP", "o AUTHENTICATE PLAIN", "p LOGOUT" },
  ftp = { "USER hoplite", "PASS xiphos", "SYST", "FEAT", "TYPE A", "TYPE I", "MODE S", "STRU F", "PWD", "CWD /",
    "CDUP", "PORT 127,0,0,1,4,1", "EPRT |1|127.0.0.1|1025|", "EPSV", "SIZE text.txt", "MDTM text.txt",
    "MLST text.txt", "REST 10", "RNFR text.txt", "RNTO b.txt", "OPTS UTF8 ON", "NOOP", "HELP", "QUIT" },
  http = { "GET / HTTP/1.1", "Host: lab", "HEAD /index.html HTTP/1.1", "Range: bytes=0-10,20-", "",
    "Transfer-Encoding: chunked", "Content-Length: 5", "5", "hello", "0", "Connection: keep-alive",
    "If-None-Match: \"x\"", "GET /%2e%2e/etc/passwd HTTP/1.1", "OPTIONS * HTTP/1.1", "Expect: 100-continue" },
  telnet = { "hello", "\255\251\31", "\255\250\31\0\80\0\24\255\240", "\255\253\1", "\255\244", "\255\246",
    "\255\250\39\0\0USER\1hoplite\255\240", "\255\255", "\r\0", "quit" },
}

-- the syntax of what a server may send, line by line
local REPLY = {
  smtp = function(l) return l:match("^[2-5]%d%d[ -]") or l:match("^[2-5]%d%d$") end,
  pop3 = nil,   -- multi-line answers carry arbitrary message lines
  imap = nil,   -- literals carry arbitrary bytes
  ftp = function(l) return l:match("^%d%d%d[ -]") or l:match("^ ") or l:match("^%d%d%d$") end,
  http = nil,   -- bodies are arbitrary
  telnet = nil, -- echoes whatever came
}

local INSERTS = { "\r", "\n", "\0", "\255", " ", "{99999999}", "{5}\r\n", "\"", "(", ")", "%", "\r\n.\r\n", "\255\250" }

local function mutate(line, rnd)
  local op = rnd(9)
  if op == 1 then
    local i = rnd(#line + 1)
    return line:sub(1, i - 1) .. string.char(rnd(256) - 1) .. line:sub(i + 1)
  elseif op == 2 then
    return line:sub(1, rnd(#line + 1) - 1)
  elseif op == 3 then
    local i = rnd(#line + 1)
    return line:sub(1, i - 1) .. INSERTS[rnd(#INSERTS)] .. line:sub(i)
  elseif op == 4 then
    return line:rep(rnd(4))
  elseif op == 5 then
    return line .. ("A"):rep(rnd(8192))
  elseif op == 6 then
    local t = {}
    for i = 1, rnd(64) do t[i] = string.char(rnd(256) - 1) end
    return table.concat(t)
  elseif op == 7 then
    return (line:gsub("%d+", function() return tostring(rnd(2 ^ 31) * rnd(1000)) end))
  elseif op == 8 then
    return line:lower()
  end
  return line
end

local function start(proto, dir)
  if proto == "smtp" then
    local srv = lab.child("smtp_child.lua", { dir .. "/md", dir .. "/users" })
    return srv, srv.port
  elseif proto == "pop3" or proto == "imap" then
    local srv = lab.serve_mail(dir)
    lab.sessions.smtp(srv.ports.smtp, { lab.message(1, 2000), lab.message(2, 500) })
    return srv, srv.ports[proto]
  end
  local a = {
    ftp = { "--root", dir .. "/ftp", "--users", dir .. "/users", "--login-delay", "0" },
    http = { "--root", dir .. "/www", "--access-log", "off", "--header-timeout", "2" },
    telnet = { "--app", "echo", "--idle-timeout", "5" },
  }
  local args = { "--listen", "127.0.0.1:0" }
  for _, v in ipairs(a[proto]) do args[#args + 1] = v end
  local srv = lab.serve(proto, args)
  return srv, srv.port
end

-- one connection: `n` mutated lines, then half-close and read it all
local function batch(port, proto, n, rnd)
  local c = assert(socket.tcp())
  c:settimeout(3)
  assert(c:connect("127.0.0.1", port))
  local seeds = SEEDS[proto]
  local out = {}
  for _ = 1, n do
    local line = seeds[rnd(#seeds)]
    if rnd(3) > 1 then line = mutate(line, rnd) end
    out[#out + 1] = line .. (rnd(10) == 1 and "\n" or "\r\n")
  end
  c:send(table.concat(out))   -- may fail once the server has had enough
  c:shutdown("send")
  local got, _, part = c:receive("*a")
  c:close()
  return got or part or ""
end

local function campaign(proto, batches, lines)
  math.randomseed(tonumber(os.getenv("HARDENING_SEED")) or 1127)
  local rnd = math.random
  local dir = lab.tree()
  local srv, port = start(proto, dir)
  local ok, err = pcall(function()
    local pid = assert(lab.server_pid(srv))
    batch(port, proto, 5, rnd)
    socket.sleep(0.1)
    local base = lab.fd_count(pid)
    local bytes = 0
    for b = 1, batches do
      local got = batch(port, proto, lines, rnd)
      bytes = bytes + #got
      local check = REPLY[proto]
      if check then
        for l in got:gmatch("([^\n]*)\n") do
          assert(check(l:gsub("\r$", "")), ("%s batch %d: a malformed reply line: %q"):format(proto, b, l))
        end
      end
    end
    for _ = 1, 100 do
      if lab.fd_count(pid) <= base then break end
      socket.sleep(0.05)
    end
    assert.is_true(lab.fd_count(pid) <= base, proto .. ": descriptors did not settle")
    if os.getenv("HARDENING_VERBOSE") then
      io.stderr:write(("wirefuzz: %s: %d connections x %d mutated lines, %d bytes of replies\n")
        :format(proto, batches, lines, bytes))
    end
  end)
  -- and a valid session still works
  local ok2, err2 = true, nil
  if ok then
    ok2, err2 = pcall(function()
      if proto == "smtp" then lab.sessions.smtp(port, { "Subject: after\r\n\r\nfine\r\n" })
      elseif proto == "pop3" then lab.sessions.pop3(port, 1)
      elseif proto == "imap" then lab.sessions.imap(port)
      elseif proto == "http" then lab.sessions.http(port)
      elseif proto == "telnet" then lab.sessions.telnet(port)
      else
        -- the fuzzed commands may have renamed, deleted or made a
        -- directory of the session's file: put it back first
        os.execute("rm -rf " .. lab.q(dir .. "/ftp/text.txt"))
        lab.H.write(dir .. "/ftp/text.txt", "text\n")
        lab.sessions.ftp(port, "after")
      end
    end)
  end
  local out = srv:stop()
  lab.rmdir(dir)
  assert(ok, tostring(err) .. "\nserver output:\n" .. out)
  assert(ok2, "a valid session failed after fuzzing: " .. tostring(err2) .. "\nserver output:\n" .. out)
  assert.is_nil(out:match("stack traceback"), proto .. " died with a Lua error:\n" .. out)
end

describe("mutated client lines on the wire", function()
  before_each(lab.H.fd_snapshot)
  after_each(lab.H.fd_check)

  for _, proto in ipairs{ "smtp", "pop3", "imap", "ftp", "http", "telnet" } do
    it("leave the " .. proto .. " server answering well-formed and serving", function()
      campaign(proto, 10, 30)
    end)
    it("leave the " .. proto .. " server answering well-formed over thousands of lines #slow", function()
      campaign(proto, tonumber(os.getenv("HARDENING_WIRE_BATCHES")) or 400, 50)
    end)
  end
end)
