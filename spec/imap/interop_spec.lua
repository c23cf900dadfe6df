-- #interop: third-party IMAP clients (python3 imaplib, curl) against
-- `parley serve imap` in a child process, and Dovecot reading a message
-- that `parley serve smtp` delivered into the same Maildir.
local H = require "helper"
local E = require "imap.support.env"
local D = require "imap.support.dovecot"
local T = E.T

local MSG = "From: Ann <ann@example.org>\r\nTo: alice@example.org\r\nSubject: known message\r\n" ..
  "\r\n\xc3\xa4 8bit line\r\n.leading dot\r\nlast line\r\n"

local function unhex(h) return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)) end

local PY = [[
import imaplib, sys, binascii
port = int(sys.argv[1])
m = imaplib.IMAP4("127.0.0.1", port)
print("CAPS", " ".join(sorted(m.capabilities)))
typ, _ = m.login("alice", "pw"); print("LOGIN", typ)
typ, data = m.select("INBOX"); print("SELECT", typ, data[0].decode())
typ, data = m.fetch("1", "(BODY.PEEK[])")
print("BODY", binascii.hexlify(data[0][1]).decode())
typ, data = m.store("1", "+FLAGS", "(\\Flagged)"); print("STORE", typ, data[0].decode())
typ, data = m.search(None, "FLAGGED", "SUBJECT", "known"); print("SEARCH", typ, data[0].decode())
typ, data = m.append("INBOX", "(\\Seen)", imaplib.Time2Internaldate(1600000000), b"Subject: from python\r\n\r\nhi\r\n")
print("APPEND", typ, data[0].decode())
typ, data = m.uid("FETCH", "1:*", "(FLAGS)"); print("UIDFETCH", typ, " | ".join(d.decode() for d in data))
typ, data = m.list(); print("LIST", typ, " | ".join(d.decode() for d in data))
typ, data = m.create("Archive"); print("CREATE", typ)
typ, data = m.uid("COPY", "1", "Archive"); print("COPY", typ)
typ, data = m.status("Archive", "(MESSAGES)"); print("STATUS", typ, data[0].decode())
m.logout()
]]

describe("imap interop #interop", function()
  local dir, store, pid
  before_each(function()
    H.fd_snapshot()
    dir, store = E.store()
  end)
  after_each(function()
    E.kill(pid); pid = nil
    D.stop(_G.__imap_dovecot); _G.__imap_dovecot = nil
    E.cleanup()
    H.fd_check()
  end)

  it("python3 imaplib logs in, fetches byte for byte, stores, searches, appends and copies #interop", function()
    assert(store:deliver("alice", MSG))
    local port
    port, pid = E.child_server(dir)
    T.write(dir .. "/client.py", PY)
    local out, ok = T.sh(string.format("timeout 30 python3 '%s/client.py' %d 2>&1", dir, port))
    assert.is_true(ok == true, out)
    local r = {}
    for line in out:gmatch("[^\n]+") do
      local k, v = line:match("^(%S+) ?(.*)$")
      r[k] = v
    end
    assert.matches("IDLE", r.CAPS)
    assert.equal("OK", r.LOGIN)
    assert.equal("OK 1", r.SELECT)
    assert.equal(MSG, unhex(r.BODY))
    assert.matches("^OK 1 %(FLAGS %(\\Flagged", r.STORE)
    assert.equal("OK 1", r.SEARCH)
    assert.matches("^OK %[APPENDUID %d+ 2%]", r.APPEND)
    assert.matches("UID 2 FLAGS %(\\Seen%)", r.UIDFETCH)
    assert.matches('"INBOX"', r.LIST)
    assert.equal("OK", r.CREATE)
    assert.equal("OK", r.COPY)
    assert.matches("MESSAGES 1", r.STATUS)
  end)

  it("curl fetches a message byte for byte, searches, lists and uploads #interop", function()
    if T.sh("command -v curl") == "" then pending("curl is not installed") return end
    assert(store:deliver("alice", MSG))
    assert(store:deliver("alice", "Subject: second\r\n\r\ntwo\r\n"))
    local port
    port, pid = E.child_server(dir)
    local base = ("imap://127.0.0.1:%d"):format(port)
    local body, ok = T.sh(("timeout 20 curl -s -u alice:pw '%s/INBOX;UID=1'"):format(base))
    assert.is_true(ok == true)
    assert.equal(MSG, body)
    local search = T.sh(("timeout 20 curl -s -u alice:pw '%s/INBOX?SUBJECT%%20second'"):format(base))
    assert.matches("%* SEARCH 2", search)
    local list = T.sh(("timeout 20 curl -s -u alice:pw '%s/'"):format(base))
    assert.matches('%* LIST %(\\HasNoChildren%) "%." "INBOX"', list)
    T.write(dir .. "/up.eml", "Subject: uploaded\r\n\r\nby curl\r\n")
    local _, ok2 = T.sh(("timeout 20 curl -s -u alice:pw -T '%s/up.eml' '%s/INBOX'"):format(dir, base))
    assert.is_true(ok2 == true)
    local up = T.sh(("timeout 20 curl -s -u alice:pw '%s/INBOX;UID=3'"):format(base))
    assert.equal("Subject: uploaded\r\n\r\nby curl\r\n", up)
    local _, bad = T.sh(("timeout 20 curl -s -u alice:wrong '%s/INBOX;UID=1'"):format(base))
    assert.is_not_true(bad == true)
  end)

  it("Dovecot sees the keywords parley stored, and parley those Dovecot stored #interop", function()
    if not D.available() then pending(D.why) return end
    assert(store:deliver("alice", MSG))
    assert(store:deliver("alice", "Subject: second\r\n\r\nx\r\n"))
    local port
    port, pid = E.child_server(dir)
    local function imaplib(p, body)
      T.write(dir .. "/kw.py", "import imaplib, sys\nm = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))\n" ..
        "m.login('alice', 'pw')\ntyp, data = m.select('INBOX')\n" .. body ..
        "typ, data = m.fetch('1:*', '(FLAGS)')\nfor d in data: print(d.decode())\n" ..
        "print('PERM', m.untagged_responses.get('PERMANENTFLAGS', [b''])[-1].decode())\nm.logout()\n")
      local out, ok = T.sh(string.format("timeout 30 python3 '%s/kw.py' %d 2>&1", dir, p))
      assert.is_true(ok == true, out .. (T.read(dir .. "/dovecot.log") or ""))
      return out
    end
    -- parley (python3 imaplib) stores two keywords
    local out = imaplib(port, "m.store('1', '+FLAGS', '(Junk $Label1)')\n")
    assert.matches("1 %(FLAGS %(Junk %$Label1 \\Recent%)", out)
    assert.matches("PERM %(.*Junk %$Label1 \\%*%)", out)
    -- Dovecot reads the same Maildir and sets one of its own
    local d = D.start(dir, dir .. "/mail", { alice = "pw" })
    _G.__imap_dovecot = d
    out = imaplib(d.port, "m.store('2', '+FLAGS', '(FromDovecot)')\n")
    assert.matches("1 %(FLAGS %([^)]*Junk[^)]*%)", out)
    assert.matches("1 %(FLAGS %([^)]*%$Label1[^)]*%)", out)
    assert.matches("2 %(FLAGS %([^)]*FromDovecot[^)]*%)", out)
    -- parley sees Dovecot's keyword (Dovecot wrote its letter and name)
    out = imaplib(port, "")
    assert.matches("2 %(FLAGS %(FromDovecot%)", out)
    assert.matches("1 %(FLAGS %(Junk %$Label1%)", out)
    assert.matches("PERM %(.*FromDovecot \\%*%)", out)
  end)

  it("Dovecot reads a message parley SMTP delivered, with the UIDs parley gave #interop", function()
    if not D.available() then pending(D.why) return end
    -- SMTP delivery by the parley server, in a child process
    T.write(dir .. "/users", "alice:{PLAIN}pw\n")
    local root = E.root()
    local spid = T.sh(string.format(
      "cd '%s' && (timeout 60 lua5.4 bin/parley serve smtp --listen 127.0.0.1:0 --maildir '%s/mail' --domain example.org --users '%s/users' >'%s/smtp.out' 2>&1 & echo $!)",
      root, dir, dir, dir))
    local sport
    for _ = 1, 100 do
      sport = (T.read(dir .. "/smtp.out") or ""):match("127%.0%.0%.1:(%d+)")
      if sport then break end
      os.execute("sleep 0.05")
    end
    assert.truthy(sport)
    local ok = select(2, T.sh(string.format(
      [[timeout 20 python3 -c 'import smtplib,sys; s=smtplib.SMTP("127.0.0.1",%s); s.sendmail("x@example.net",["alice@example.org"],open(sys.argv[1],"rb").read()); s.quit()' '%s/msg.eml']],
      sport, (function() T.write(dir .. "/msg.eml", MSG) return dir end)())))
    E.kill(tonumber(spid))
    assert.is_true(ok == true)
    -- parley IMAP gives it UID 1 (writes parley-uidlist)
    local mb = store:mailbox("alice")
    local map = assert(mb:uids())
    local name = next(map)
    assert.equal(1, map[name])
    -- Dovecot reads the same Maildir
    local d = D.start(dir, dir .. "/mail", { alice = "pw" })
    _G.__imap_dovecot = d
    local out, pok = T.sh(string.format([[timeout 20 python3 -c '
import imaplib, binascii
m = imaplib.IMAP4("127.0.0.1", %d)
m.login("alice", "pw")
m.select("INBOX")
typ, data = m.fetch("1", "(BODY.PEEK[])")
print(binascii.hexlify(data[0][1]).decode())
m.logout()' 2>&1]], d.port))
    assert.is_true(pok == true, out .. (T.read(dir .. "/dovecot.log") or ""))
    local got = unhex(out:match("^(%x+)"))
    -- what SMTP stored: trace headers, then the message as sent
    assert.equal(MSG, got:sub(-#MSG))
    assert.matches("^Return%-Path: <x@example%.net>\r\nReceived: ", got)
  end)
end)
