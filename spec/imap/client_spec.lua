-- The IMAP client against our server (in-process) and against Dovecot
-- imapd on a copy of the same Maildir (#interop).
local parley = require "parley"
local H = require "helper"
local E = require "imap.support.env"
local D = require "imap.support.dovecot"
local client = require "parley.imap.client"

local MSG1 = "From: \"Ann Example\" <ann@example.org>\r\nTo: bob@example.com\r\n" ..
  "Subject: hello world\r\nDate: Tue, 1 Feb 1994 10:00:00 -0500\r\nMessage-ID: <1@x>\r\n\r\n" ..
  "first body line\r\nsecond line\r\n"
local MULTI = "From: d@example.org\r\nSubject: parts\r\nMIME-Version: 1.0\r\n" ..
  "Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\n" ..
  "Content-Type: text/plain; charset=utf-8\r\n\r\nplain part\r\n--XX\r\n" ..
  "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--XX--\r\n"

-- The same conversation against any server: returns nothing, asserts.
local function conversation(port, opts)
  opts = opts or {}
  local c = assert(client.connect("127.0.0.1:" .. port, { timeout = 10 }))
  assert.is_true(c:has("IMAP4rev1"))
  assert(c:login("alice", "pw"))
  local box = assert(c:select("INBOX"))
  assert.equal(2, box.exists)
  assert.is_number(box.uidvalidity)
  assert.is_number(box.uidnext)
  assert.is_false(box.readonly)
  -- FETCH with parsed items
  local msgs = assert(c:fetch("1:*", "(UID FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[])"))
  assert.equal(2, #msgs)
  assert.equal(1, msgs[1].seq)
  assert.equal(MSG1, msgs[1]["BODY[]"])
  assert.equal(#MSG1, msgs[1]["RFC822.SIZE"])
  assert.equal("hello world", msgs[1].ENVELOPE.subject)
  assert.equal("ann", msgs[1].ENVELOPE.from[1].mailbox)
  assert.equal("Ann Example", msgs[1].ENVELOPE.from[1].name)
  local bs = msgs[2].BODYSTRUCTURE
  assert.equal("multipart", bs.type)
  assert.equal("mixed", bs.subtype)
  assert.equal(2, #bs.parts)
  assert.equal("plain", bs.parts[1].subtype)
  assert.equal(10, bs.parts[1].size)
  assert.equal("base64", bs.parts[2].encoding:lower())
  -- partial and header fields
  local part = assert(c:fetch(1, { "BODY.PEEK[TEXT]<0.5>", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]" }))
  assert.equal("first", part[1]["BODY[TEXT]<0>"])
  assert.equal("Subject: hello world\r\n\r\n", part[1]["BODY[HEADER.FIELDS (SUBJECT)]"])
  -- STORE and SEARCH
  local st = assert(c:store(1, "+FLAGS", { "\\Flagged" }))
  assert.equal(1, st[1].seq)
  assert.same({ 1 }, assert(c:search("FLAGGED")))
  assert.same({ 1 }, assert(c:search("SUBJECT", "hello world")))
  assert.same({ 2 }, assert(c:search("NOT", "FLAGGED")))
  local uids = assert(c:uid_search("ALL"))
  assert.equal(2, #uids)
  -- UID FETCH
  local u = assert(c:uid_fetch(uids[2], "(FLAGS)"))
  assert.equal(uids[2], u[1].UID)
  -- mailboxes with non-ASCII names, encoded for the user
  assert(c:create("Entwürfe"))
  local names = {}
  for _, e in ipairs(assert(c:list("", "*"))) do names[e.name] = e end
  assert.truthy(names["Entwürfe"])
  assert.equal("Entw&APw-rfe", names["Entwürfe"].raw)
  assert.equal(".", names.INBOX.delimiter)
  assert.truthy(names.INBOX.flags["\\HasNoChildren"])
  -- APPEND from a string (sync literal unless LITERAL+) and from a source
  local msg = "Subject: appended\r\n\r\nbody\r\n"
  local a = assert(c:append("Entwürfe", msg, { flags = { "\\Seen" }, date = 1600000000 }))
  if c:has("UIDPLUS") then assert.equal(1, a.uid) end
  local chunks = { "Subject: source\r\n", "\r\n", "from a source\r\n" }
  local i = 0
  local src = function() i = i + 1; return chunks[i] end
  assert(c:append("Entwürfe", src, { size = #table.concat(chunks) }))
  local status = assert(c:status("Entwürfe"))
  assert.equal(2, status.MESSAGES)
  assert.equal(1, status.UNSEEN)
  -- COPY / MOVE / EXPUNGE
  local cu = assert(c:copy(1, "Entwürfe"))
  if c:has("UIDPLUS") then assert.equal(status.UIDNEXT, tonumber(cu.dest)) end
  assert(c:store(2, "+FLAGS", { "\\Deleted" }, true))
  assert.same({ 2 }, assert(c:expunge()))
  if c:has("MOVE") then
    assert(c:move(1, "Entwürfe"))
    assert.equal(3 + 1, assert(c:status("Entwürfe")).MESSAGES)
  end
  -- errors carry the tagged reply
  local ok, text, reply = c:select("Nope")
  assert.is_nil(ok)
  assert.is_string(text)
  assert.equal("NO", reply.type)
  -- IDLE with a callback: a message appended by a second client
  assert(c:select("INBOX"))
  if c:has("IDLE") then
    local writer = parley.spawn(function()
      parley.sleep(0.3)
      local c2 = assert(client.connect("127.0.0.1:" .. port, { timeout = 10 }))
      assert(c2:login("alice", "pw"))
      assert(c2:append("INBOX", "Subject: during idle\r\n\r\nx\r\n"))
      c2:logout()
    end)
    local seen = {}
    local t0 = parley.now()
    local iok, stopped = c:idle(function(r)
      seen[#seen + 1] = r
      return r.type == "EXISTS"
    end, opts.idle_timeout or 5)
    assert.is_true(iok)
    assert.is_true(stopped)
    assert.is_true(parley.now() - t0 < (opts.idle_limit or 2))
    H.join(writer)
    -- a timeout with nothing happening ends the IDLE too
    local iok2, stopped2 = c:idle(function() return false end, 0.3)
    assert.is_true(iok2)
    assert.is_false(stopped2)
  end
  assert.is_true(c:logout())
end

describe("imap client", function()
  local dir, store
  before_each(function()
    H.fd_snapshot()
    dir, store = E.store()
    assert(store:deliver("alice", MSG1))
    assert(store:deliver("alice", MULTI))
  end)
  after_each(function()
    D.stop(_G.__imap_dovecot_c); _G.__imap_dovecot_c = nil
    E.cleanup()
    H.fd_check()
  end)

  it("speaks every command with parsed results against our server", function()
    H.run(function()
      local srv = E.server(store)
      conversation(srv.port)
      srv:close(0)
    end, 30)
  end)

  it("waits for + before a synchronising literal when LITERAL+ is off", function()
    H.run(function()
      local srv = E.server(store)
      local c = assert(client.connect("127.0.0.1:" .. srv.port, { timeout = 5, literal_plus = false }))
      assert(c:login("alice", "pw\r\nwith newline" == nil and "" or "pw"))
      local r = assert(c:append("INBOX", "Subject: sync\r\n\r\nbody\r\n"))
      assert.equal(3, r.uid)
      -- a password with a space and a quote goes as a quoted string
      c:logout()
      srv:close(0)
    end, 10)
  end)

  it("raises on CR, LF or NUL in arguments before sending", function()
    H.run(function()
      local srv = E.server(store)
      local c = assert(client.connect("127.0.0.1:" .. srv.port, { timeout = 5 }))
      assert.has_error(function() c:login("alice\r\n", "pw") end)
      assert.has_error(function() c:select("IN\nBOX") end)
      assert.has_error(function() c:search("SUBJECT", "a\0b") end)
      assert.has_error(function() c:fetch("1:*", "(FLAGS)\r\nx LOGOUT") end)
      assert.has_error(function() c:store("1", "+FLAGS", { "\\Seen)" }) end)
      -- still in sync
      assert(c:login("alice", "pw"))
      c:logout()
      srv:close(0)
    end, 10)
  end)

  it("speaks every command against Dovecot imapd on a copy of the Maildir #interop", function()
    if not D.available() then pending(D.why) return end
    os.execute("cp -a '" .. dir .. "/mail' '" .. dir .. "/dmail'")
    local d = D.start(dir, dir .. "/dmail", { alice = "pw" })
    _G.__imap_dovecot_c = d
    H.run(function()
      conversation(d.port, { idle_limit = 4 })
    end, 60)
  end)
end)
