-- #interop: python3 poplib and curl pop3:// against `parley serve pop3`,
-- and our client against Dovecot's pop3d on a copy of the same Maildir.
local U = require "pop3.support.util"
local D = require "pop3.support.dovecot"
local H = U.H
local client = require "parley.pop3.client"

-- the messages every interop spec serves: CRLF, bare LF, dot lines, no
-- final line end, 8-bit, an empty body, a larger one
local MSGS = {
  "From: a@example.org\r\nSubject: one\r\n\r\nfirst body\r\n",
  "From: b@example.org\nSubject: lf only\n\n.leading dot\n..two dots\nend\n",
  "From: c@example.org\r\nSubject: 8bit\r\n\r\n\xc3\xa4\xc3\xb6\r\n.\r\n",
  "Subject: empty body\r\n\r\n",
  "Subject: no final line end\r\n\r\nlast line",
  "Subject: big\r\n\r\n" .. string.rep("0123456789abcdefghijklmnopqrstuvwxyz\r\n.x\r\n", 3000),
}
local function crlf(m) return (m:gsub("\r?\n", "\r\n")) end
-- what a client receives: the CRLF form, plus the line end the server adds
-- before the terminating dot when the file has no final line end (as
-- Dovecot does; the octet count stays the stored CRLF size)
local function wire(m)
  m = crlf(m)
  if m ~= "" and m:sub(-2) ~= "\r\n" then m = m .. "\r\n" end
  return m
end

local function fill(root)
  local store = U.store(root)
  for _, m in ipairs(MSGS) do assert(store:deliver("alice", m)) end
  return store
end

local function need(prog)
  if not U.have(prog) then pending(prog .. " is not installed") return false end
  return true
end

describe("#interop third-party clients against parley serve pop3", function()
  local root, child
  before_each(function()
    root = U.tmpdir("interop")
    fill(root .. "/md")
    U.users_file(root .. "/users")
    child = U.child(("bin/parley serve pop3 --listen 127.0.0.1:0 --maildir %s --users %s --auth-delay 0")
      :format(U.q(root .. "/md"), U.q(root .. "/users")))
  end)
  after_each(function()
    child.stop()
    U.rmrf(root)
  end)

  it("#interop serves python poplib: stat, list, uidl, retr, top, apop, dele, quit", function()
    local py = [[
import poplib, sys, binascii
port = int(sys.argv[1])
p = poplib.POP3("127.0.0.1", port)
caps = p.capa()
print("CAPA", " ".join(sorted(caps)))
p.apop("alice", "wonderland")
n, size = p.stat()
print("STAT", n, size)
resp, lst, _ = p.list()
for l in lst: print("LIST", l.decode())
resp, ids, _ = p.uidl()
for l in ids: print("UIDL", l.decode())
for i in range(1, n + 1):
    resp, lines, octets = p.retr(i)
    print("RETR", i, resp.decode(), octets, binascii.hexlify(b"\r\n".join(lines) + b"\r\n").decode())
resp, lines, _ = p.top(2, 1)
print("TOP", binascii.hexlify(b"\r\n".join(lines) + b"\r\n").decode())
p.dele(1)
try:
    p.retr(1)
except poplib.error_proto as e:
    print("ERR", e)
print("QUIT", p.quit().decode())
p = poplib.POP3("127.0.0.1", port)
p.user("alice")
try:
    p.pass_("wrong")
except poplib.error_proto as e:
    print("BADPASS", e)
p.user("alice")
p.pass_("wonderland")
print("STAT2", p.stat()[0])
p.quit()
]]
    U.write(root .. "/t.py", py)
    local out, ok = U.sh(("python3 %s %d"):format(U.q(root .. "/t.py"), child.port))
    assert.is_true(ok, out)
    assert.truthy(out:find("CAPA AUTH-RESP-CODE IMPLEMENTATION PIPELINING RESP-CODES SASL TOP UIDL USER", 1, true), out)
    local total = 0
    for _, m in ipairs(MSGS) do total = total + #crlf(m) end
    assert.truthy(out:find("STAT 6 " .. total, 1, true), out)
    for i, m in ipairs(MSGS) do
      assert.truthy(out:find("LIST " .. i .. " " .. #crlf(m) .. "\n", 1, true), out)
      local octets, hex = out:match("RETR " .. i .. " %+OK (%d+) octets %d+ (%x*)")
      assert.truthy(hex, out)
      assert.are.equal(#crlf(m), tonumber(octets))
      local body = hex:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)
      -- poplib un-stuffs; an empty last line shows as one more CRLF pair
      assert.are.equal(crlf(m), body:sub(1, #crlf(m)))
    end
    local ids = {}
    for id in out:gmatch("UIDL %d+ (%x+)") do ids[#ids + 1] = id end
    assert.are.equal(6, #ids)
    assert.truthy(out:find("TOP " .. ("From: b@example.org\r\nSubject: lf only\r\n\r\n.leading dot\r\n")
      :gsub(".", function(c) return ("%02x"):format(c:byte()) end), 1, true), out)
    assert.truthy(out:find("ERR b'-ERR message 1 already deleted'", 1, true), out)
    assert.truthy(out:find("BADPASS b'-ERR [AUTH] invalid user name or password'", 1, true), out)
    assert.truthy(out:find("STAT2 5", 1, true), out)
  end)

  it("#interop serves curl pop3://: LIST, RETR byte for byte, AUTH PLAIN, DELE", function()
    if not need("curl") then return end
    local base = ("pop3://127.0.0.1:%d/"):format(child.port)
    local out = U.sh(("curl -s -u alice:wonderland %s"):format(base))
    local want = {}
    for i, m in ipairs(MSGS) do want[i] = i .. " " .. #crlf(m) .. "\r\n" end
    assert.are.equal(table.concat(want), out)
    for i, m in ipairs(MSGS) do
      local path = root .. "/got" .. i
      U.sh(("curl -s -u alice:wonderland -o %s %s%d"):format(U.q(path), base, i))
      assert.are.equal(wire(m), U.slurp(path), "message " .. i)
    end
    -- SASL PLAIN explicitly, with the initial response
    local path = root .. "/plain"
    U.sh(("curl -s --sasl-ir --login-options AUTH=PLAIN -u alice:wonderland -o %s %s1"):format(U.q(path), base))
    assert.are.equal(crlf(MSGS[1]), U.slurp(path))
    out = U.sh(("curl -s -u alice:wonderland -X 'DELE' %s2 -I"):format(base))
    local n = #assert(U.store(root .. "/md"):mailbox("alice"):scan())
    assert.are.equal(5, n, out)
    -- a wrong password: curl reports a login failure (exit 67)
    local _, okk = U.sh(("curl -s -u alice:nope %s"):format(base))
    assert.is_false(okk == true)
  end)
end)

describe("#interop parley client against Dovecot pop3d", function()
  it("#interop reads the same messages and octet counts from Dovecot as from parley on a copy of one Maildir", function()
    if not D.available() then
      pending("needs dovecot-pop3d and root (the Maildir is chowned to nobody)")
      return
    end
    local root = U.tmpdir("dovecot")
    fill(root .. "/ours")
    assert(os.execute(("mkdir -p %s/dv && cp -a %s/ours/alice %s/dv/alice")
      :format(U.q(root), U.q(root), U.q(root))))
    U.users_file(root .. "/users")
    local ours = U.child(("bin/parley serve pop3 --listen 127.0.0.1:0 --maildir %s --users %s --auth-delay 0")
      :format(U.q(root .. "/ours"), U.q(root .. "/users")))
    local dv
    local ok, err = pcall(function()
      dv = D.start(root .. "/dv", { alice = "wonderland" })
      local function session(port)
        local r = {}
        H.run(function()
          local c = assert(client.connect("127.0.0.1", port, { timeout = 10 }))
          assert(c:login("alice", "wonderland"))
          r.count, r.octets = c:stat()
          r.list = assert(c:list())
          r.msgs = {}
          for i = 1, r.count do r.msgs[i] = assert(c:retr(i)) end
          r.top = assert(c:top(2, 1))
          r.uidl = assert(c:uidl())
          r.caps = assert(c:capa())
          assert(c:quit())
        end, 30)
        return r
      end
      local a, b = session(ours.port), session(dv.port)
      assert.are.equal(6, b.count)
      assert.are.equal(b.count, a.count)
      assert.are.equal(b.octets, a.octets)
      assert.are.same(b.list, a.list)
      for i = 1, 6 do
        assert.are.equal(b.msgs[i], a.msgs[i], "message " .. i)
        assert.are.equal(#crlf(MSGS[i]), a.list[i], "octets of message " .. i)
        assert.are.equal(wire(MSGS[i]), a.msgs[i])
      end
      assert.are.equal(b.top, a.top)
      -- both hand out unique, same-shaped ids (uid + uidvalidity in hex)
      for i = 1, 6 do
        assert.matches("^%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x$", a.uidl[i])
        assert.matches("^%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x$", b.uidl[i])
      end
      assert.is_true(b.caps.TOP and a.caps.TOP)
      assert.is_true(b.caps.UIDL and a.caps.UIDL)
    end)
    if dv then dv.stop() end
    ours.stop()
    U.rmrf(root)
    assert(ok, err)
  end)
end)
