-- Transcripts of POP3 and IMAP sessions, client side and server side.
local H = require "helper"
local C = require "transcript.support.collect"
local pop3 = require "parley.pop3"
local E = require "imap.support.env"

local MSG = "Subject: t\r\n\r\n" .. ("y"):rep(60) .. "\r\n.leading dot\r\n"

-- a POP3 or IMAP server over one store with one message for alice
local function with(proto, fn)
  local dir, store = E.store()
  H.run(function()
    assert(store:deliver("alice", MSG))
    local srec, sentries = C.recorder()
    local srv
    if proto == "imap" then
      srv = E.server(store, { transcript = srec })
    else
      srv = assert(pop3.server.serve{ listen = "127.0.0.1:0", store = store, users = E.users(),
        signals = false, auth_delay = 0, transcript = srec })
    end
    local ok, err = pcall(fn, srv, sentries)
    srv:close(0)
    if not ok then error(err, 0) end
  end, 30)
  H.rmdir(dir)
end

describe("pop3 transcript", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("masks PASS, summarises RETR and shows LIST line by line", function()
    with("pop3", function(srv, sentries)
      local rec, entries = C.recorder()
      local c = assert(pop3.client.connect(srv.address, { transcript = rec }))
      assert(c:login("alice", "pw"))
      assert(c:list())
      local m = assert(c:retr(1))
      c:quit()
      C.well_formed(entries)
      for _, lines in ipairs{ C.lines(entries), C.lines(sentries) } do
        C.in_order(lines, { "^S: %+OK", "^C: USER alice$", "^C: PASS %*%*%*%*$", "^S: %+OK",
          "^C: LIST$", "^S: %+OK", "^S: 1 %d+$", "^S: %.$", "^C: RETR 1$", "^S: %+OK",
          "^S: %[[%d,]+ bytes%]$", "^S: %.$", "^C: QUIT$", "^S: %+OK" })
        C.absent(lines, "C: PASS pw")
      end
      assert.truthy(#m > 0)
    end)
  end)

  it("masks the APOP digest and AUTH PLAIN payload", function()
    with("pop3", function(srv, sentries)
      local rec, entries = C.recorder()
      local c = assert(pop3.client.connect(srv.address, { transcript = rec }))
      assert(c:apop("alice", "pw"))
      c:quit()
      c = assert(pop3.client.connect(srv.address, { transcript = rec }))
      assert(c:auth_plain("alice", "pw"))
      c:quit()
      for _, lines in ipairs{ C.lines(entries), C.lines(sentries) } do
        C.in_order(lines, { "^C: APOP alice %*%*%*%*$", "^S: %+OK" })
        C.in_order(lines, { "^C: AUTH PLAIN %*%*%*%*$", "^S: %+OK" })
        C.absent(lines, "AGFsaWNlAHB3")
      end
    end)
  end)

  it("shows every line of the message when full", function()
    with("pop3", function(srv)
      local rec, entries = C.recorder{ full = true }
      local c = assert(pop3.client.connect(srv.address, { transcript = rec }))
      assert(c:login("alice", "pw"))
      assert(c:retr(1))
      c:quit()
      C.in_order(C.lines(entries), { "^C: RETR 1$", "^S: %+OK", "^S: Subject: t$", "^S: y+$",
        "^S: %.%.leading dot$", "^S: %.$", "^C: QUIT$" })
    end)
  end)
end)

describe("imap transcript", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("masks the LOGIN password and summarises literals in FETCH", function()
    with("imap", function(srv, sentries)
      local rec, entries = C.recorder()
      local c = assert(require("parley.imap.client").connect(srv.address, { transcript = rec }))
      assert(c:login("alice", "pw"))
      assert(c:select("INBOX"))
      assert(c:fetch("1", "BODY[]"))
      c:logout()
      C.well_formed(entries)
      for _, lines in ipairs{ C.lines(entries), C.lines(sentries) } do
        C.in_order(lines, { "^S: %* OK", "^C: %S+ LOGIN %S+ %*%*%*%*$", "^S: %S+ OK",
          "^C: %S+ FETCH 1 ", "^S: %* 1 FETCH .*{" .. #MSG .. "}$", "^S: " .. C.bytes(#MSG) .. "$",
          "^S: %S+ OK", "^C: %S+ LOGOUT" })
      end
    end)
  end)

  it("masks a quoted password, a literal password and the AUTHENTICATE exchange", function()
    with("imap", function(srv, sentries)
      local conn = assert(require("parley").connect(srv.address))
      assert(conn:receive())
      conn:send('a1 LOGIN "alice" "p\\"w"\r\n')
      assert(conn:receive())
      conn:send("a2 LOGIN {5}\r\n")
      assert(conn:receive())
      conn:send("alice {2}\r\n")
      assert(conn:receive())
      conn:send("pw\r\n")
      assert(conn:receive())
      conn:close()
      conn = assert(require("parley").connect(srv.address))
      assert(conn:receive())
      conn:send("a3 AUTHENTICATE PLAIN\r\n")
      assert(conn:receive())
      conn:send(require("mime").b64("\0alice\0pw") .. "\r\n")
      assert(conn:receive())
      conn:close()
      local lines = C.lines(sentries)
      C.in_order(lines, { '^C: a1 LOGIN "alice" %*%*%*%*$', "^C: a2 LOGIN {5}$", "^C: %[5 bytes%]$",
        "^C:  {2}$", "^C: %[2 bytes%]$", "^C: a3 AUTHENTICATE PLAIN$", "^S: %+", "^C: %*%*%*%*$", "^S: a3 OK" })
      C.absent(lines, 'p\\"w')
      C.absent(lines, "AGFsaWNlAHB3")
    end)
  end)
end)
