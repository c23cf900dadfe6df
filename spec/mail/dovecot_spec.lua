-- #interop: Dovecot reads the Maildir our store writes, and we read the
-- flags Dovecot writes back. A private Dovecot runs in the foreground on a
-- free loopback port (spec/support/dovecot.lua); python3's imaplib is the
-- IMAP client (a child process).
local H = require "helper"
local T = require "mail.support.tmpdir"
local maildir = require "parley.mail.maildir"
local D = require "support.dovecot"

-- The IMAP client: logs in (retrying while Dovecot starts), then for each
-- mailbox named on the command line SELECTs it and prints one line per
-- message: "<mailbox> <seq> <uid> <size> <flags> <hex of the body>".
-- Sets \Flagged on INBOX message 1 at the end, and prints the LIST.
local CLIENT = [[
import imaplib, sys, time, binascii, re
port = int(sys.argv[1])
for _ in range(100):
    try:
        m = imaplib.IMAP4("127.0.0.1", port); break
    except OSError:
        time.sleep(0.1)
m.login("alice", "pw")
for box in sys.argv[2:]:
    typ, data = m.select('"' + box + '"', readonly=(box != "INBOX"))
    assert typ == "OK", data
    typ, data = m.fetch("1:*", "(UID RFC822.SIZE FLAGS BODY.PEEK[])")
    for item in data:
        if isinstance(item, tuple):
            meta, body = item
            meta = meta.decode()
            seq = meta.split()[0]
            uid = re.search(r"UID (\d+)", meta).group(1)
            size = re.search(r"RFC822.SIZE (\d+)", meta).group(1)
            flags = re.search(r"FLAGS \(([^)]*)\)", meta).group(1).replace("\\Recent", "").strip()
            print(box, seq, uid, size, flags.replace(" ", ",") or "-", binascii.hexlify(body).decode())
m.select("INBOX")
m.store("1", "+FLAGS", "(\\Flagged)")
typ, data = m.list()
for line in data:
    print("LIST", line.decode())
m.logout()
]]

local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

describe("Dovecot reads our Maildir #interop", function()
  local dir, dv
  before_each(function()
    H.fd_snapshot()
    dir = T.new("dovecot")
  end)
  after_each(function()
    D.stop(dv); dv = nil   -- waits for the master before rm -rf
    T.cleanup()
    H.fd_check()
  end)

  it("serves three delivered messages byte for byte, with flags and folders #interop", function()
    if not D.available() then pending(D.why) return end
    local store = assert(maildir.open(dir .. "/mail"))
    local msgs = {
      "From: a@example.org\r\nSubject: one\r\n\r\nfirst body\r\n",
      "From: b@example.org\r\nSubject: two\r\n\r\n\xc3\xa4 8bit body\r\n.leading dot\r\n",
      "From: c@example.org\r\nSubject: three\r\n\r\nthird, seen\r\n",
    }
    local lf_only = "From: d@example.org\nSubject: lf\n\nbare LF lines\n"
    assert(store:deliver("alice", msgs[1]))
    assert(store:deliver("alice", msgs[2]))
    assert(store:deliver("alice", msgs[3], nil, "S"))
    assert(store:deliver("alice", lf_only))
    assert(store:deliver("alice", "Subject: draft\r\n\r\nin a folder\r\n", "Entwürfe", "DS"))
    dv = D.start{ protocol = "imap", dir = dir, mail_root = dir .. "/mail", users = { alice = "pw" },
                  timeout = 60 }
    local port = dv.port
    T.write(dir .. "/client.py", CLIENT)
    local out, ok = T.sh(string.format("timeout 30 python3 '%s/client.py' %d INBOX 'Entw&APw-rfe' 2>&1",
                                       dir, port))
    assert.is_true(ok == true, out .. "\n" .. (T.read(dir .. "/dovecot.log") or ""))
    local rows, lists = {}, {}
    for line in out:gmatch("[^\n]+") do
      local box, seq, uidv, size, flags, hex = line:match("^(%S+) (%d+) (%d+) (%d+) (%S+) (%x*)$")
      if box then
        rows[#rows + 1] = { box = box, seq = tonumber(seq), uid = tonumber(uidv),
                            size = tonumber(size), flags = flags, body = unhex(hex) }
      elseif line:match("^LIST ") then
        lists[#lists + 1] = line
      end
    end
    assert.equal(5, #rows, out)
    for i = 1, 3 do
      assert.equal("INBOX", rows[i].box)
      assert.equal(i, rows[i].seq)
      assert.equal(msgs[i], rows[i].body)                 -- byte for byte
      assert.equal(#msgs[i], rows[i].size)
    end
    assert.equal("-", rows[1].flags)
    assert.equal("\\Seen", rows[3].flags)
    -- a message stored with bare LFs comes out with CRLF, and its size is our W=
    assert.equal((lf_only:gsub("\n", "\r\n")), rows[4].body)
    assert.equal(#lf_only + 4, rows[4].size)
    assert.equal("Entw&APw-rfe", rows[5].box)
    assert.equal("Subject: draft\r\n\r\nin a folder\r\n", rows[5].body)
    local fl = {}
    for f in rows[5].flags:gmatch("[^,]+") do fl[#fl + 1] = f end
    table.sort(fl)
    assert.same({ "\\Draft", "\\Seen" }, fl)
    assert.truthy(table.concat(lists, "\n"):find('"." Entw&APw-rfe', 1, true)
                  or table.concat(lists, "\n"):find('"." "Entw&APw-rfe"', 1, true), table.concat(lists, "\n"))
    -- and we read the flag Dovecot wrote back into the file name
    local scanned = assert(store:mailbox("alice"):scan())
    assert.equal(4, #scanned)
    assert.equal("F", scanned[1].flags)
    assert.equal("S", scanned[3].flags)
  end)
end)
