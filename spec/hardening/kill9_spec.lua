-- kill -9 of `parley serve mail` at random points during delivery (issue
-- 11, Faults). A LuaSocket client (it knows exactly which messages got
-- their 250) delivers unique messages of random size over SMTP, and
-- Postfix's smtp-source (when installed) delivers beside it on 3 more
-- connections, until a background `kill -9` lands; the server is then
-- started again on the same Maildir. smtp-source does not say which of its
-- messages got 250, so its messages are only checked to be whole (the
-- body it always sends). Every 250'd message must be in new/ byte for byte; nothing
-- partial or unknown in new/ or cur/; tmp/ empty once the next server is up
-- (mail/cli.lua runs clean_tmp at start; a dead writer's file goes at once).
local socket = require "socket"
local lab = require "hardening.support.lab"

local function message(round, i, size)
  local head = ("Subject: round %d message %d\r\n\r\n"):format(round, i)
  local line = ("r%03d-m%04d "):format(round, i) .. ("k"):rep(60) .. "\r\n"
  return head .. line:rep(math.max(1, size // #line))
end

-- delivers until the connection dies; returns the messages that got 250
local function deliver(port, round, sent)
  local acked = {}
  local c = socket.tcp()
  c:settimeout(5)
  if not c:connect("127.0.0.1", port) then return acked end
  local function reply(pat)
    for _ = 1, 50 do
      local l = c:receive("*l")
      if not l then return nil end
      if l:match("^%d%d%d ") then return l:match(pat) and l end
    end
  end
  if not reply("^220") or not c:send("EHLO lab\r\n") or not reply("^250") then c:close() return acked end
  for i = 1, 100000 do
    local m = message(round, i, math.random(200, 120000))
    sent[m] = true
    if not (c:send("MAIL FROM:<a@lab>\r\n") and reply("^250") and
            c:send("RCPT TO:<" .. lab.USER .. "@example.org>\r\n") and reply("^250") and
            c:send("DATA\r\n") and reply("^354") and c:send(m .. ".\r\n") and reply("^250")) then
      break
    end
    acked[#acked + 1] = m
  end
  c:close()
  return acked
end

local SOURCE = "timeout 20 smtp-source -s %d -m %d -l 20000 -f source@lab -t " .. lab.USER ..
  "@example.org 127.0.0.1:%d >/dev/null 2>&1"

-- the body smtp-source sends (from one clean delivery), or nil without it
local function source_body(srv, md)
  if not lab.H.have("smtp-source") then return nil end
  os.execute(SOURCE:format(1, 1, srv.ports.smtp))
  for _, m in ipairs(lab.mailbox(md)) do
    if m:match("^From: <source@lab>") then return (m:match("\r\n\r\n(.*)$")) end
  end
  error("smtp-source delivered nothing")
end

local function rounds(n)
  math.randomseed(tonumber(os.getenv("HARDENING_SEED")) or 20261127)
  local dir = lab.tree()
  local md = dir .. "/md/" .. lab.USER
  local srv = lab.serve_mail(dir)
  local sent, acked_all, stats = {}, {}, { acked = 0, partial_tmp = 0, source = 0 }
  local ok, err = pcall(function()
    local body = source_body(srv, md)
    for round = 1, n do
      local pid = assert(lab.server_pid(srv))
      if body then os.execute("(" .. SOURCE:format(3, 100000, srv.ports.smtp) .. ") &") end
      -- the kill lands at a random point in the next 20..400 ms
      os.execute(("(sleep %.3f; kill -9 %d) >/dev/null 2>&1 &"):format(math.random(20, 400) / 1000, pid))
      for _, m in ipairs(deliver(srv.ports.smtp, round, sent)) do acked_all[#acked_all + 1] = m end
      srv:finish()
      stats.partial_tmp = stats.partial_tmp + #lab.ls(md .. "/tmp")
      srv = lab.serve_mail(dir)
      assert.same({}, lab.ls(md .. "/tmp"), "round " .. round .. ": tmp/ not cleaned at start")
      local stored = {}
      stats.source = 0
      for _, m in ipairs(lab.mailbox(md)) do
        if body and m:match("^From: <source@lab>") then
          assert.equal(body, m:match("\r\n\r\n(.*)$"), "round " .. round .. ": a partial smtp-source message")
          stats.source = stats.source + 1
        else
          assert.is_true(sent[m] ~= nil, ("round %d: a partial or unknown message (%d bytes) in new/ or cur/")
            :format(round, #m))
        end
        stored[m] = true
      end
      for _, m in ipairs(acked_all) do
        assert.is_true(stored[m] ~= nil, "round " .. round .. ": a message that got 250 is missing")
      end
    end
    stats.acked = #acked_all
  end)
  srv:stop()
  lab.rmdir(dir)
  assert(ok, err)
  if os.getenv("HARDENING_VERBOSE") then
    io.stderr:write(("kill9: %d rounds, %d messages 250'd and found whole, %d whole smtp-source messages, " ..
      "%d tmp/ files left by kills and cleaned\n"):format(n, stats.acked, stats.source, stats.partial_tmp))
  end
  assert.is_true(stats.acked > 0, "no delivery finished before a kill")
end

describe("kill -9 of parley serve mail during delivery", function()
  before_each(lab.H.fd_snapshot)
  after_each(lab.H.fd_check)

  it("keeps every 250'd message whole and cleans tmp/ at the next start (10 rounds)", function()
    rounds(10)
  end)
  it("keeps every 250'd message whole over 200 rounds #slow", function()
    rounds(200)
  end)
end)
