-- IMAP keywords stored as Dovecot stores them: letters a-z after the
-- `:2,` flags, named in the Maildir's `dovecot-keywords`.
local E = require "imap.support.env"
local maildir = require "parley.mail.maildir"
local fs = require("parley.core").fs
local T = E.T

describe("imap keywords", function()
  local store, mb
  local fresh, done = E.three_messages(function(s, m) store, mb = s, m end)
  before_each(fresh)
  after_each(done)
  local function with_server(fn) E.with_raw(store, fn) end

  local function files(dir)
    local out = fs.listdir((dir or mb.dir) .. "/cur")
    table.sort(out)
    return out
  end

  it("stores a keyword in the file name and dovecot-keywords, and lists it in FLAGS", function()
    with_server(function(c)
      local lines = c:login_select()
      assert.truthy(E.find(lines, "^%* OK %[PERMANENTFLAGS %(.*\\Draft \\%*%)%]"))
      lines = c:cmd("s STORE 2 +FLAGS ($Forwarded \\Seen)")
      assert.truthy(E.find(lines, "^%* FLAGS %(\\Answered \\Flagged \\Deleted \\Seen \\Draft %$Forwarded%)$"))
      assert.truthy(E.find(lines, "^%* OK %[PERMANENTFLAGS %(.*\\Draft %$Forwarded \\%*%)%]"))
      assert.truthy(E.find(lines, "^%* 2 FETCH %(FLAGS %(\\Seen %$Forwarded \\Recent%)%)$"))
      assert.equal("0 $Forwarded\n", T.read(mb.dir .. "/" .. maildir.KEYWORDS))
      assert.matches(":2,Sa$", files()[2])
      lines = c:cmd("f FETCH 1:* (FLAGS)")
      assert.equal("* 2 FETCH (FLAGS (\\Seen $Forwarded \\Recent))", lines[2])
      -- keywords are case-insensitive: the first spelling is kept
      c:cmd("s2 STORE 1 +FLAGS ($forwarded Junk)")
      assert.matches(":2,ab$", files()[1])
      assert.equal("0 $Forwarded\n1 Junk\n", T.read(mb.dir .. "/" .. maildir.KEYWORDS))
      assert.equal("* SEARCH 1 2", c:cmd("k SEARCH KEYWORD $FORWARDED")[1])
      assert.equal("* SEARCH 2 3", c:cmd("k2 SEARCH UNKEYWORD junk")[1])
      assert.equal("* SEARCH", c:cmd("k3 SEARCH KEYWORD never")[1])
      lines = c:cmd("s3 STORE 1 -FLAGS ($Forwarded never)")
      assert.equal("* 1 FETCH (FLAGS (Junk \\Recent))", lines[1])
      lines = c:cmd("s4 STORE 1 FLAGS (\\Flagged)")
      assert.equal("* 1 FETCH (FLAGS (\\Flagged \\Recent))", lines[1])
      assert.matches(":2,F$", files()[1])
      local _, t = c:cmd("s5 STORE 1 +FLAGS (\\Bogus)")
      assert.matches("^s5 BAD", t)
    end)
  end)

  it("refuses a 27th keyword with NO [LIMIT] and drops \\* from PERMANENTFLAGS", function()
    local names = {}
    for i = 1, 26 do names[i] = "k" .. i end
    assert(mb:keyword_letters(names))
    with_server(function(c)
      local lines = c:login_select()
      assert.truthy(E.find(lines, "^%* OK %[PERMANENTFLAGS %(.* k26%)%]"))
      assert.truthy(E.find(lines, "^%* FLAGS %(.* k1 k2 .* k26%)$"))
      local _, t = c:cmd("s STORE 1 +FLAGS (k27)")
      assert.matches("^s NO %[LIMIT%]", t)
      lines = c:cmd("s2 STORE 1 +FLAGS (K26)")
      assert.equal("* 1 FETCH (FLAGS (k26 \\Recent))", lines[1])
      assert.matches(":2,z$", files()[1])
    end)
  end)

  it("appends with keywords and copies and moves them under the target's own letters", function()
    assert(store:create_folder("alice", "Archive"))
    local arch = assert(store:mailbox("alice", "Archive"))
    assert(arch:keyword_letters({ "Other", "Junk" }))      -- Junk is "b" there
    with_server(function(c)
      c:login_select()
      local msg = "Subject: kw\r\n\r\nx\r\n"
      local lines, t = c:cmd("a APPEND INBOX (\\Seen Junk) {" .. #msg .. "+}\r\n" .. msg)
      assert.matches("^a OK %[APPENDUID %d+ 4%]", t)
      assert.equal("0 Junk\n", T.read(mb.dir .. "/" .. maildir.KEYWORDS))
      -- the selected mailbox has a new keyword: told before the tagged OK
      assert.truthy(E.find(lines, "^%* FLAGS %(.*\\Draft Junk%)$"))
      assert.equal("* 4 FETCH (FLAGS (\\Seen Junk))", c:cmd("f FETCH 4 (FLAGS)")[1])
      t = select(2, c:cmd("c COPY 4 Archive"))
      assert.matches("^c OK", t)
      assert.matches(":2,Sb$", files(arch.dir)[1])
      c:cmd("s STORE 1 +FLAGS (Fresh)")
      t = select(2, c:cmd("m MOVE 1 Archive"))
      assert.matches("^m OK", t)
      assert.equal("0 Other\n1 Junk\n2 Fresh\n", T.read(arch.dir .. "/" .. maildir.KEYWORDS))
      c:cmd("x SELECT Archive")
      lines = c:cmd("f2 FETCH 1:* (FLAGS)")
      assert.equal("* 1 FETCH (FLAGS (\\Seen Junk))", lines[1])   -- copied first
      assert.equal("* 2 FETCH (FLAGS (Fresh))", lines[2])
    end)
  end)
end)
