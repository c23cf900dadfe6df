-- The IMAP server over its Maildir index: changes made behind its back
-- (another program, another process), UIDVALIDITY, warm sessions.
local H = require "helper"
local E = require "imap.support.env"
local maildir = require "parley.mail.maildir"
local index = require "parley.mail.index"
local fs = require("parley.core").fs

describe("imap server index", function()
  local store, mb
  local fresh, done = E.three_messages(function(s, m) store, mb = s, m end)
  before_each(fresh)
  after_each(done)
  local function with_server(fn) E.with_raw(store, fn) end

  -- the current file of message `n` (in delivery order)
  local function file_of(n)
    return assert(mb:scan())[n]
  end

  it("tells a session at NOOP what another program added, removed and flagged", function()
    with_server(function(c)
      c:login_select()
      -- mutt marks message 2 seen and deletes message 1's file; a third
      -- party delivers
      local m2 = file_of(2)
      assert(fs.rename(m2.path, mb.dir .. "/cur/" .. m2.name .. ":2,FS"))
      os.remove(file_of(1).path)
      assert(store:deliver("alice", "Subject: m4\r\n\r\nbody 4\r\n"))
      local lines = c:cmd("n NOOP")
      assert.truthy(E.find(lines, "^%* 2 FETCH %(FLAGS %(\\Flagged \\Seen \\Recent%) UID 2%)$"))
      assert.truthy(E.find(lines, "^%* 1 EXPUNGE$"))
      assert.truthy(E.find(lines, "^%* 3 EXISTS$"))
      lines = c:cmd("f UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
      assert.equal(3, #lines)
      assert.matches("^%* 1 FETCH %(UID 2 FLAGS %(\\Flagged \\Seen \\Recent%)", lines[1])
      assert.matches("^%* 3 FETCH %(UID 4 .*Subject: m4", lines[3])
    end)
  end)

  it("keeps UIDs for a second server process and says BYE when UIDVALIDITY changes", function()
    with_server(function(c)
      local lines = c:login_select()
      local validity = E.find(lines, "UIDVALIDITY (%d+)"):match("UIDVALIDITY (%d+)")
      -- another process (its own index) numbers a new message the same way
      assert(store:deliver("alice", "Subject: m4\r\n\r\nbody 4\r\n"))
      local other = assert(index.new(mb):snapshot())
      assert.equal(4, other.list[4].uid)
      assert.equal(tonumber(validity), other.validity)
      lines = c:cmd("n NOOP")
      assert.truthy(E.find(lines, "^%* 4 EXISTS$"))
      lines = c:cmd("u UID SEARCH ALL")
      assert.truthy(E.find(lines, "^%* SEARCH 1 2 3 4$"))
      -- the uidlist is lost: the UIDs are no longer those the client has
      os.remove(mb.dir .. "/" .. maildir.UIDLIST)
      lines = c:cmd("n2 NOOP")
      assert.truthy(E.find(lines, "^%* BYE %[UNAVAILABLE%] UIDVALIDITY changed"))
    end)
    H.run(function()
      local srv = E.server(store)
      local c = E.raw(srv.port)
      local lines = c:login_select()
      assert.truthy(E.find(lines, "^%* 4 EXISTS$"))
      local v = tonumber(E.find(lines, "UIDVALIDITY (%d+)"):match("UIDVALIDITY (%d+)"))
      assert.equal(assert(maildir.read_uidlist(mb.dir)).validity, v)
      c:close()
      srv:close(0)
    end, 20)
  end)

  it("serves a second session from the shared index with the same answers", function()
    local first, second
    with_server(function(c, srv)
      c:login_select()
      first = c:cmd("f FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER])")
      local d = E.raw(srv.port)
      local lines = d:login_select()
      assert.truthy(E.find(lines, "^%* 3 EXISTS$"))
      assert.truthy(E.find(lines, "^%* 0 RECENT$"))      -- the first session had them
      second = d:cmd("f FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER])")
      d:close()
    end)
    assert.equal(3, #second)
    for i = 1, 3 do
      -- only \Recent differs
      assert.equal(first[i]:gsub(" ?\\Recent", ""), second[i])
    end
  end)

  it("moves new/ to cur/ on SELECT but not on EXAMINE", function()
    with_server(function(c, srv)
      local d = E.raw(srv.port)
      assert.truthy(E.find(d:login_select("INBOX"), "^%* 3 RECENT$"))
      d:close()
      assert.equal(0, #(fs.listdir(mb.dir .. "/new")))
      assert(store:deliver("alice", "Subject: m4\r\n\r\nbody 4\r\n"))
      c:cmd("L1 LOGIN alice pw")
      local lines = c:cmd("e EXAMINE INBOX")
      assert.truthy(E.find(lines, "^%* 1 RECENT$"))
      assert.equal(1, #(fs.listdir(mb.dir .. "/new")))
    end)
  end)
end)
