-- core.imap: RFC 3501 section 9 syntax, RFC 7888 literals, RFC 9051,
-- modified UTF-7 (RFC 3501 section 5.1.3).
local core = require "parley.core"
local imap = core.imap

-- Feed a whole wire text (CRLF lines and literals) the way a server or a
-- client reads it; returns the last results of feed_line as a table.
local function feed(p, wire)
  local i, out = 1
  repeat
    local e = wire:find("\r\n", i, true)
    local line = wire:sub(i, (e or #wire + 1) - 1)
    i = e and e + 2 or #wire + 1
    out = table.pack(p:feed_line(line))
    if out[1] == "literal" then
      assert.equal("line", p:feed_literal(wire:sub(i, i + out[2] - 1)))
      i = i + out[2]
      out = {"fed"}  -- the rest of the command follows, even when empty
    end
  until i > #wire and out[1] ~= "fed"
  return out
end

local function command(wire, limits)
  local p = imap.command_parser(limits)
  local r = feed(p, wire)
  return r[1] == "done" and r[2] or nil, r
end

local function response(wire, limits)
  local p = imap.response_parser(limits)
  local r = feed(p, wire)
  assert.equal("done", r[1], tostring(r[2]))
  return r[2]
end

describe("imap command parser framing", function()
  it("parses a tag, an upper-cased name and atom arguments", function()
    local cmd = command("a1 select INBOX")
    assert.equal("a1", cmd.tag)
    assert.equal("SELECT", cmd.name)
    assert.same({"INBOX", kinds = "a"}, cmd.args)
  end)

  it("accepts a command without arguments", function()
    local cmd = command("A001 CAPABILITY")
    assert.equal("CAPABILITY", cmd.name)
    assert.same({kinds = ""}, cmd.args)
  end)

  it("accepts any atom as the command name, leaving unknown commands to the server", function()
    local cmd = command("x1 XFROBNICATE 1 2")
    assert.equal("XFROBNICATE", cmd.name)
    assert.same({"1", "2", kinds = "aa"}, cmd.args)
  end)

  it("splits UID commands into uid=true and the sub-command name", function()
    local cmd = command("a2 uid fetch 1:* FLAGS")
    assert.equal("FETCH", cmd.name)
    assert.is_true(cmd.uid)
    assert.same({"1:*", "FLAGS", kinds = "aa"}, cmd.args)
  end)

  it("rejects UID without a sub-command", function()
    assert.same({nil, "missing command after uid", "a3", n = 3},
                table.pack(imap.command_parser():feed_line("a3 UID")))
  end)

  it("rejects an empty line with the tag *", function()
    assert.same({nil, "empty command", "*", n = 3},
                table.pack(imap.command_parser():feed_line("")))
  end)

  it("rejects a missing tag", function()
    local r = table.pack(imap.command_parser():feed_line(" NOOP"))
    assert.same({nil, "missing tag", "*", n = 3}, r)
  end)

  it("rejects a tag with a forbidden character and answers with *", function()
    for _, line in ipairs{"a+1 NOOP", "a*1 NOOP", "a%1 NOOP", 'a"1 NOOP', "a(1 NOOP", "a{1 NOOP"} do
      local _, reason, tag = imap.command_parser():feed_line(line)
      assert.equal("invalid tag", reason, line)
      assert.equal("*", tag)
    end
  end)

  it("rejects a tag alone and returns the tag", function()
    assert.same({nil, "missing command", "a1", n = 3},
                table.pack(imap.command_parser():feed_line("a1")))
    assert.same({nil, "missing command", "a1", n = 3},
                table.pack(imap.command_parser():feed_line("a1 ")))
  end)

  it("rejects two spaces between arguments and a trailing space (SP is exactly one space)", function()
    local p = imap.command_parser()
    assert.same({nil, "unexpected space", "a1", n = 3}, table.pack(p:feed_line("a1 LOGIN  u p")))
    assert.same({nil, "trailing space", "a1", n = 3}, table.pack(p:feed_line("a1 LOGIN u p ")))
    assert.same({nil, "missing command", "a1", n = 3}, table.pack(p:feed_line("a1  NOOP")))
  end)

  it("rejects a command name with a non-atom character", function()
    assert.same({nil, "invalid command name", "a1", n = 3},
                table.pack(imap.command_parser():feed_line("a1 NO\"OP")))
  end)

  it("rejects a control character and a NUL byte", function()
    local _, r1 = imap.command_parser():feed_line("a1 LOGIN u\tp")
    assert.equal("control character", r1)
    local _, r2 = imap.command_parser():feed_line("a1 LOGIN u\0 p")
    assert.equal("control character", r2)
  end)

  it("rejects an 8-bit byte in an atom", function()
    local _, r = imap.command_parser():feed_line("a1 SELECT Entw\xc3\xbcrfe")
    assert.equal("8-bit byte in atom", r)
  end)

  it("resets after an error so the next line is a new command", function()
    local p = imap.command_parser()
    assert.is_nil((p:feed_line("a1 LOGIN (")))
    local r, cmd = p:feed_line("a2 NOOP")
    assert.equal("done", r)
    assert.equal("a2", cmd.tag)
  end)

  it("rejects a line of 64 KiB + 1 bytes and keeps the tag", function()
    local line = "a9 LOGIN " .. string.rep("x", 65536 - 9 + 1)
    assert.equal(65537, #line)
    assert.same({nil, "line too long", "a9", n = 3},
                table.pack(imap.command_parser():feed_line(line)))
    local ok = imap.command_parser():feed_line(line:sub(1, 65536))
    assert.equal("done", ok)
  end)

  it("honours a smaller max_line", function()
    local _, r = imap.command_parser{max_line = 10}:feed_line("a1 LOGIN user pass")
    assert.equal("line too long", r)
  end)

  it("raises on misuse: a line while a literal is awaited, a literal of the wrong size", function()
    local p = imap.command_parser()
    assert.equal("literal", (p:feed_line("a1 LOGIN {3}")))
    assert.equal(3, p:pending())
    assert.has_error(function() p:feed_line("x") end)
    assert.has_error(function() p:feed_literal("toolong") end)
    assert.has_error(function() imap.command_parser():feed_literal("x") end)
    assert.has_error(function() imap.command_parser{max_depth = 5000} end)
    assert.has_error(function() imap.command_parser{max_line = -1} end)
  end)

  it("has a __tostring naming the type", function()
    assert.matches("^parley.imap.parser: ", tostring(imap.command_parser()))
  end)
end)

describe("imap command strings", function()
  it("unescapes \\\" and \\\\ in quoted strings", function()
    local cmd = command([[a1 LOGIN "jo\"hn" "back\\slash"]])
    assert.same({'jo"hn', "back\\slash", kinds = "qq"}, cmd.args)
  end)

  it("keeps an empty quoted string", function()
    assert.same({"", "*", kinds = "qa"}, command('a1 LIST "" *').args)
  end)

  it("rejects any other backslash escape", function()
    local _, r = imap.command_parser():feed_line([[a1 LOGIN "a\nb" p]])
    assert.equal("invalid escape in quoted string", r)
  end)

  it("rejects an unterminated quoted string", function()
    local _, r = imap.command_parser():feed_line([[a1 LOGIN "abc]])
    assert.equal("unterminated quoted string", r)
  end)

  it("accepts UTF-8 in quoted strings (RFC 9051) but not other 8-bit bytes", function()
    assert.same({"Entwürfe", kinds = "q"}, command('a1 SELECT "Entwürfe"').args)
    local _, r = imap.command_parser():feed_line('a1 SELECT "caf\xe9"')
    assert.equal("8-bit byte in quoted string", r)
    local ok, cmd = imap.command_parser{allow_8bit = true}:feed_line('a1 SELECT "caf\xe9"')
    assert.equal("done", ok)
    assert.equal("caf\xe9", cmd.args[1])
  end)

  it("keeps atoms with ] and backslash flags: \\Seen, BODY[], [Gmail]/Sent", function()
    local cmd = command("a1 STORE 1 +FLAGS.SILENT (\\Seen \\Deleted)")
    assert.same({"1", "+FLAGS.SILENT", {"\\Seen", "\\Deleted", kinds = "aa"}, kinds = "aa("}, cmd.args)
    assert.same({"1", "BODY[]", kinds = "aa"}, command("a2 FETCH 1 BODY[]").args)
    assert.same({"[Gmail]/Sent", kinds = "a"}, command("a3 SELECT [Gmail]/Sent").args)
  end)

  it("keeps a section with spaces and parentheses as one atom", function()
    local cmd = command("a1 FETCH 1 (BODY.PEEK[HEADER.FIELDS (From \"To\")]<0.100> UID)")
    assert.same({"BODY.PEEK[HEADER.FIELDS (From \"To\")]<0.100>", "UID", kinds = "aa"}, cmd.args[2])
  end)

  it("keeps list wildcards in list-mailbox", function()
    assert.same({"", "INBOX.%", kinds = "qa"}, command('a1 LIST "" INBOX.%').args)
  end)

  it("keeps NIL as an atom: in commands NIL is just an astring", function()
    assert.same({"NIL", "NIL", kinds = "aa"}, command("a1 LOGIN NIL NIL").args)
  end)
end)

describe("imap command lists", function()
  it("nests parenthesised lists as tables with their own kinds", function()
    local cmd = command('a1 SEARCH (OR (FROM "a b") (TO c)) ()')
    assert.same({{"OR", {"FROM", "a b", kinds = "aq"}, {"TO", "c", kinds = "aa"}, kinds = "a(("},
                 {kinds = ""}, kinds = "(("}, cmd.args)
  end)

  it("rejects an unclosed or an unopened parenthesis", function()
    local p = imap.command_parser()
    assert.same({nil, "unclosed parenthesis", "a1", n = 3}, table.pack(p:feed_line("a1 SEARCH (ALL")))
    assert.same({nil, "unexpected ')'", "a1", n = 3}, table.pack(p:feed_line("a1 SEARCH ALL)")))
    assert.same({nil, "unexpected ')'", "a1", n = 3}, table.pack(p:feed_line("a1 SEARCH (ALL )")))
    assert.same({nil, "expected space", "a1", n = 3}, table.pack(p:feed_line("a1 SEARCH (ALL)ALL")))
  end)

  it("refuses 5,000 nested parentheses with a clear error", function()
    local line = "a1 SEARCH " .. string.rep("(", 5000) .. "ALL" .. string.rep(")", 5000)
    assert.same({nil, "too deeply nested", "a1", n = 3},
                table.pack(imap.command_parser():feed_line(line)))
  end)

  it("accepts nesting up to max_depth, even a large one, without recursion", function()
    local line = "a1 SEARCH " .. string.rep("(", 900) .. "ALL" .. string.rep(")", 900)
    local r, cmd = imap.command_parser{max_depth = 1000}:feed_line(line)
    assert.equal("done", r)
    local t, d = cmd.args, 0
    while type(t[1]) == "table" do t, d = t[1], d + 1 end
    assert.equal(900, d)
    assert.equal("ALL", t[1])
  end)

  it("refuses more tokens than max_tokens", function()
    local _, r = imap.command_parser{max_tokens = 3}:feed_line("a1 SEARCH 1 2 3 4")
    assert.equal("too many tokens", r)
  end)
end)

describe("imap command literals", function()
  it("announces a literal, then completes with the next line", function()
    local p = imap.command_parser{authenticated = true}
    assert.same({"literal", 4, false, false, n = 4}, table.pack(p:feed_line("a1 LOGIN {4}")))
    assert.equal("line", p:feed_literal("user"))
    assert.same({"literal", 6, true, false, n = 4}, table.pack(p:feed_line(" {6+}")))
    assert.equal("line", p:feed_literal("pa ss\r"))
    local r, cmd = p:feed_line("")
    assert.equal("done", r)
    assert.same({"user", "pa ss\r", kinds = "ll"}, cmd.args)
  end)

  it("accepts a zero-length literal", function()
    local cmd = command("a1 LOGIN {0}\r\n {0}\r\n")
    assert.same({"", "", kinds = "ll"}, cmd.args)
  end)

  it("accepts a literal8 ~{n} (RFC 9051 APPEND) as kind b", function()
    local p = imap.command_parser{authenticated = true}
    assert.same({"literal", 3, false, true, n = 4}, table.pack(p:feed_line("a1 APPEND INBOX ~{3}")))
    p:feed_literal("\0\1\2")
    local _, cmd = p:feed_line("")
    assert.same({"INBOX", "\0\1\2", kinds = "ab"}, cmd.args)
  end)

  it("closes a list right after a literal", function()
    local cmd = command("a1 SEARCH (SUBJECT {3}\r\nabc) ALL\r\n", {authenticated = true})
    assert.same({{"SUBJECT", "abc", kinds = "al"}, "ALL", kinds = "(a"}, cmd.args)
  end)

  it("rejects bytes after a literal that are not a space, ')' or the end", function()
    local p = imap.command_parser()
    p:feed_line("a1 LOGIN {3}")
    p:feed_literal("abc")
    assert.same({nil, "expected space", "a1", n = 3}, table.pack(p:feed_line("x")))
  end)

  it("rejects a literal announcement that does not end the line", function()
    local _, r = imap.command_parser():feed_line("a1 LOGIN {3} x")
    assert.equal("literal must end the line", r)
    local _, r2 = imap.command_parser():feed_line("a1 LOGIN {3x}")
    assert.equal("invalid literal", r2)
    local _, r3 = imap.command_parser():feed_line("a1 LOGIN {}")
    assert.equal("invalid literal", r3)
  end)

  it("refuses {4294967295} before the client sends it and reports the size", function()
    local p = imap.command_parser{authenticated = true}
    assert.same({nil, "literal too large", "a1", 4294967295, false, n = 5},
                table.pack(p:feed_line("a1 APPEND INBOX {4294967295}")))
  end)

  it("refuses {99999999999999999999} without a size it cannot represent", function()
    local r = table.pack(imap.command_parser{authenticated = true}:feed_line("a1 APPEND INBOX {99999999999999999999}"))
    assert.is_nil(r[1])
    assert.equal("literal too large", r[2])
    assert.equal("a1", r[3])
    assert.is_nil(r[4])
    assert.is_false(r[5])
  end)

  it("refuses a non-synchronizing literal over 4096 bytes before login (RFC 7888)", function()
    local p = imap.command_parser()
    assert.same({nil, "non-synchronizing literal too large", "a1", 4097, true, n = 5},
                table.pack(p:feed_line("a1 LOGIN {4097+}")))
    assert.equal("literal", (p:feed_line("a1 LOGIN {4096+}")))
    p:reset()
    p:set_authenticated(true)
    assert.equal("literal", (p:feed_line("a1 APPEND INBOX {4097+}")))
  end)

  it("refuses nonsync literals above max_nonsync (LITERAL-) after login too", function()
    local p = imap.command_parser{authenticated = true, max_nonsync = 4096}
    assert.equal("non-synchronizing literal too large", select(2, p:feed_line("a1 APPEND INBOX {5000+}")))
    assert.equal("literal", (p:feed_line("a1 APPEND INBOX {5000}")))
  end)

  it("checks max_literal and max_command", function()
    local p = imap.command_parser{authenticated = true, max_literal = 10, max_command = 40}
    assert.equal("literal too large", select(2, p:feed_line("a1 APPEND INBOX {11}")))
    assert.equal("command too long", select(2, p:feed_line("a1 APPEND " .. string.rep("a", 20) .. " {10}")))
    assert.equal("literal", (p:feed_line("a1 APPEND " .. string.rep("a", 10) .. " {10}")))
  end)

  it("stores a non-string literal value as is (a streamed APPEND body)", function()
    local p = imap.command_parser{authenticated = true}
    p:feed_line("a1 APPEND INBOX {100000}")
    local sink = {path = "/tmp/x"}
    assert.equal("line", p:feed_literal(sink))
    local _, cmd = p:feed_line("")
    assert.equal(sink, cmd.args[2])
    assert.equal("al", cmd.args.kinds)
  end)
end)

describe("imap real client commands", function()
  it("parses imaplib's LOGIN, SELECT, STORE and UID SEARCH", function()
    assert.same({"user", "pass word", kinds = "aq"}, command('JNFK1 LOGIN user "pass word"').args)
    assert.same({"INBOX", kinds = "a"}, command("JNFK2 SELECT INBOX").args)
    assert.same({"1:3", "+FLAGS", {"\\Deleted", kinds = "a"}, kinds = "aa("}, command("JNFK3 STORE 1:3 +FLAGS (\\Deleted)").args)
    local cmd = command("JNFK4 UID SEARCH ALL")
    assert.equal("SEARCH", cmd.name)
    assert.is_true(cmd.uid)
  end)

  it("parses curl's FETCH of a whole message", function()
    local cmd = command("A005 FETCH 1 BODY[]")
    local atts = imap.parse_fetch_atts(cmd.args, 2)
    assert.equal("BODY", atts[1].name)
    assert.equal("BODY[]", atts[1].key)
    assert.is_false(atts[1].peek)
  end)

  it("parses Thunderbird's UID FETCH with BODY.PEEK[HEADER.FIELDS (...)]", function()
    local cmd = command("5 UID fetch 3:7 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])")
    assert.equal("FETCH", cmd.name)
    local atts = assert(imap.parse_fetch_atts(cmd.args, 2))
    assert.equal(4, #atts)
    assert.same({"UID", "RFC822.SIZE", "FLAGS"}, {atts[1].key, atts[2].key, atts[3].key})
    assert.is_true(atts[4].peek)
    assert.equal("HEADER.FIELDS", atts[4].text)
    assert.equal(14, #atts[4].fields)
    assert.equal("MESSAGE-ID", atts[4].fields[7])
  end)

  it("parses Thunderbird's APPEND with flags, a date and a literal", function()
    local msg = "From: a@b\r\nSubject: hi\r\n\r\nbody\r\n"
    local cmd = command('8 append "Sent" (\\Seen) "07-Nov-2023 10:00:00 +0100" {' .. #msg .. '}\r\n' .. msg .. "\r\n",
                        {authenticated = true})
    assert.equal("APPEND", cmd.name)
    assert.same({"Sent", {"\\Seen", kinds = "a"}, "07-Nov-2023 10:00:00 +0100", msg, kinds = "q(ql"}, cmd.args)
  end)

  it("parses SEARCH with CHARSET UTF-8 and a literal", function()
    local cmd = command("9 UID SEARCH CHARSET UTF-8 SUBJECT {5}\r\ncaf\xc3\xa9\r\n", {authenticated = true})
    assert.same({"CHARSET", "UTF-8", "SUBJECT", "caf\xc3\xa9", kinds = "aaal"}, cmd.args)
  end)

  it("parses mutt's UID STORE +FLAGS.SILENT and a LIST with wildcards", function()
    assert.same({"1,3:5", "+FLAGS.SILENT", {"\\Deleted", kinds = "a"}, kinds = "aa("},
                command("a0005 UID STORE 1,3:5 +FLAGS.SILENT (\\Deleted)").args)
    assert.same({"", "*", kinds = "qq"}, command('a0006 LIST "" "*"').args)
  end)
end)

describe("imap.parse_fetch_atts", function()
  local function atts(line)
    return imap.parse_fetch_atts(command("a1 FETCH 1 " .. line).args, 2)
  end

  it("expands the ALL, FAST and FULL macros", function()
    local function keys(l) local k = {} for i, a in ipairs(l) do k[i] = a.key end return k end
    assert.same({"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"}, keys(atts("ALL")))
    assert.same({"FLAGS", "INTERNALDATE", "RFC822.SIZE"}, keys(atts("fast")))
    assert.same({"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"}, keys(atts("FULL")))
  end)

  it("returns the index after the attributes", function()
    local _, nxt = atts("(FLAGS)")
    assert.equal(3, nxt)
  end)

  it("parses parts, MIME, TEXT and partials", function()
    local a = atts("(BODY[1.2.MIME] BODY.PEEK[2.TEXT]<10.20> BODY[3] BINARY.PEEK[1.1]<0.5> BINARY.SIZE[2])")
    assert.same({1, 2}, a[1].part)
    assert.equal("MIME", a[1].text)
    assert.equal("BODY[1.2.MIME]", a[1].key)
    assert.same({10, 20}, a[2].partial)
    assert.equal("BODY[2.TEXT]<10>", a[2].key)
    assert.equal("BODY[3]", a[3].key)
    assert.is_nil(a[3].text)
    assert.equal("BINARY", a[4].name)
    assert.is_true(a[4].peek)
    assert.equal("BINARY[1.1]<0>", a[4].key)
    assert.equal("BINARY.SIZE[2]", a[5].key)
  end)

  it("parses HEADER.FIELDS.NOT with quoted names", function()
    local a = atts('BODY[HEADER.FIELDS.NOT ("X-Spam" received)]')
    assert.equal("HEADER.FIELDS.NOT", a[1].text)
    assert.same({"X-SPAM", "RECEIVED"}, a[1].fields)
    assert.equal("BODY[HEADER.FIELDS.NOT (X-SPAM RECEIVED)]", a[1].key)
  end)

  it("rejects malformed attributes", function()
    for _, bad in ipairs{"BODY[", "BODY[0]", "BODY[1.]", "BODY[MIME]", "BODY[HEADER.FIELDS]",
                         "BODY[HEADER.FIELDS ()]", "BODY[TEXTX]", "BODY[]<1>", "BODY[]<1.0>",
                         "BODY[]<x.1>", "BODY.PEEK", "BINARY[TEXT]", "BINARY.SIZE[1]<0.1>",
                         "FOO[1]", "(ALL)", "()", '"FLAGS"'} do
      local r, reason = atts(bad)
      assert.is_nil(r, bad)
      assert.is_string(reason)
    end
  end)

  it("passes unknown plain attributes through for the server to judge", function()
    assert.equal("MODSEQ", atts("(modseq)")[1].name)
  end)
end)

describe("imap.parse_sequence_set", function()
  it("parses numbers, ranges and *", function()
    assert.same({{2, 2}, {4, 7}, {9, 9}, {12, "*"}}, imap.parse_sequence_set("2,4:7,9,12:*"))
  end)

  it("orders ranges and *:n as n:*", function()
    assert.same({{2, 4}, {4, "*"}, {"*", "*"}}, imap.parse_sequence_set("4:2,*:4,*"))
  end)

  it("substitutes max for *", function()
    assert.same({{4, 10}, {5, 7}, {10, 10}}, imap.parse_sequence_set("*:4,5:7,*", 10))
  end)

  it("accepts the largest 32-bit number and refuses one more", function()
    assert.same({{4294967295, 4294967295}}, imap.parse_sequence_set("4294967295"))
    assert.same({nil, "number out of range", n = 2}, table.pack(imap.parse_sequence_set("4294967296")))
    assert.same({nil, "number out of range", n = 2}, table.pack(imap.parse_sequence_set("1:99999999999999999999")))
  end)

  it("rejects 0, *:x, empty parts and stray characters", function()
    for _, bad in ipairs{"0", "1:0", "*:x", "1:", ":1", ",", "1,", ",1", "1,,2", "", "1 2", "a", "1:2:3", "-1", "+1"} do
      local r, reason = imap.parse_sequence_set(bad)
      assert.is_nil(r, bad)
      assert.is_string(reason, bad)
    end
    assert.equal("zero in sequence set", select(2, imap.parse_sequence_set("0")))
  end)
end)

describe("imap response parser: status responses", function()
  it("parses a greeting with a CAPABILITY code", function()
    local r = response("* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ AUTH=PLAIN] Dovecot ready.")
    assert.equal("*", r.tag)
    assert.equal("OK", r.type)
    assert.equal("CAPABILITY", r.code)
    assert.same({"IMAP4rev1", "SASL-IR", "LITERAL+", "AUTH=PLAIN"}, r.code_data)
    assert.equal("Dovecot ready.", r.text)
  end)

  it("parses numeric codes", function()
    local r = response("* OK [UIDVALIDITY 3857529045] UIDs valid")
    assert.equal("UIDVALIDITY", r.code)
    assert.equal(3857529045, r.code_data)
    assert.equal(4, response("* OK [UIDNEXT 4] Predicted next UID").code_data)
  end)

  it("parses APPENDUID and COPYUID", function()
    local r = response("A003 OK [APPENDUID 38505 3955] APPEND completed")
    assert.equal("A003", r.tag)
    assert.same({uidvalidity = 38505, uid = 3955, uids = "3955"}, r.code_data)
    local c = response("A004 OK [COPYUID 38505 304,319:320 3956:3958] Done")
    assert.same({uidvalidity = 38505, source = "304,319:320", dest = "3956:3958"}, c.code_data)
  end)

  it("parses PERMANENTFLAGS with \\*", function()
    local r = response("* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited")
    assert.same({"\\Deleted", "\\Seen", "\\*"}, r.code_data)
  end)

  it("keeps unknown codes as raw text and codes without arguments", function()
    local r = response("a1 NO [TRYCREATE] Mailbox doesn't exist")
    assert.equal("TRYCREATE", r.code)
    assert.is_nil(r.code_data)
    assert.equal("NO", r.type)
    local u = response("* NO [ALERT-X some \"odd] text") -- first ] ends the code
    assert.equal("ALERT-X", u.code)
    assert.equal('some "odd', u.code_data)
  end)

  it("accepts status responses without text", function()
    local r = response("a1 OK [READ-WRITE]")
    assert.equal("READ-WRITE", r.code)
    assert.equal("", r.text)
    assert.equal("", response("a2 OK").text)
  end)

  it("treats a trailing {n} in text as text, not a literal", function()
    assert.equal("hello {5}", response("* BYE hello {5}").text)
  end)

  it("parses continuations", function()
    local r = response("+ idling")
    assert.same({tag = "+", type = "CONTINUE", text = "idling"}, r)
    assert.equal("", response("+").text)
  end)

  it("rejects an unterminated code, a tagged data response and an empty line", function()
    local p = imap.response_parser()
    assert.equal("unterminated response code", select(2, p:feed_line("* OK [ALERT")))
    assert.equal("invalid tagged response", select(2, p:feed_line("a1 FETCH 1")))
    assert.equal("empty response", select(2, p:feed_line("")))
    assert.equal("missing response type", select(2, p:feed_line("* ")))
  end)
end)

describe("imap response parser: mailbox data", function()
  it("parses CAPABILITY, FLAGS, EXISTS, RECENT and EXPUNGE", function()
    assert.same({"IMAP4rev1", "IDLE"}, response("* CAPABILITY IMAP4rev1 IDLE").list)
    assert.same({"\\Answered", "\\Flagged", "$Forwarded"}, response("* FLAGS (\\Answered \\Flagged $Forwarded)").flags)
    assert.same({tag = "*", type = "EXISTS", number = 23}, response("* 23 EXISTS"))
    assert.equal("RECENT", response("* 0 RECENT").type)
    assert.equal(44, response("* 44 EXPUNGE").number)
  end)

  it("parses LIST with \\HasNoChildren, a NIL delimiter and a literal name", function()
    local r = response('* LIST (\\HasNoChildren) "/" "Entw&APw-rfe"')
    assert.same({"\\HasNoChildren"}, r.flags)
    assert.equal("/", r.delimiter)
    assert.equal("Entw&APw-rfe", r.name)
    assert.equal("Entwürfe", imap.utf7_decode(r.name))
    local n = response("* LSUB () NIL {5}\r\na b c\r\n")
    assert.is_false(n.delimiter)
    assert.equal("a b c", n.name)
    assert.equal("LSUB", n.type)
  end)

  it("parses STATUS and SEARCH", function()
    local s = response('* STATUS "blurdybloop" (MESSAGES 231 UIDNEXT 44292)')
    assert.equal("blurdybloop", s.mailbox)
    assert.same({MESSAGES = 231, UIDNEXT = 44292}, s.items)
    assert.same({2, 84, 882}, response("* SEARCH 2 84 882").numbers)
    assert.same({}, response("* SEARCH").numbers)
    local m = response("* SEARCH 2 5 (MODSEQ 917162500)")
    assert.equal(917162500, m.modseq)
    assert.same({2, 5}, m.numbers)
  end)

  it("keeps other untagged data generic with NIL as false", function()
    local r = response('* ID ("name" "Dovecot" "version" NIL)')
    assert.equal("ID", r.type)
    assert.same({{"name", "Dovecot", "version", false}}, r.data)
  end)

  it("rejects a SEARCH with a non-number", function()
    local _, reason = imap.response_parser():feed_line("* SEARCH 1 x")
    assert.equal("invalid number", reason)
  end)
end)

describe("imap response parser: FETCH", function()
  it("parses an ENVELOPE with NIL fields and quoted names", function()
    local r = response([[* 12 FETCH (FLAGS (\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE 4286 ENVELOPE ("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" (("Terry \"TG\" Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) NIL (("ietf" NIL "ietf" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")(NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL "<B27397-0100000@cac.washington.edu>") UID 7)]])
    assert.equal(12, r.number)
    local it = r.items
    assert.same({"\\Seen"}, it.FLAGS)
    assert.equal("17-Jul-1996 02:44:25 -0700", it.INTERNALDATE)
    assert.equal(4286, it["RFC822.SIZE"])
    assert.equal(7, it.UID)
    local e = it.ENVELOPE
    assert.equal("IMAP4rev1 WG mtg summary and minutes", e.subject)
    assert.same({{name = 'Terry "TG" Gray', adl = false, mailbox = "gray", host = "cac.washington.edu"}}, e.from)
    assert.is_false(e.reply_to)
    assert.equal(3, #e.cc)
    assert.is_false(e.cc[1].name)
    assert.is_false(e.bcc)
    assert.is_false(e.in_reply_to)
    assert.equal("<B27397-0100000@cac.washington.edu>", e.message_id)
  end)

  it("parses a Dovecot BODYSTRUCTURE of multipart/alternative with an attachment", function()
    local r = response([[* 1 FETCH (UID 5 BODYSTRUCTURE ((("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 24 1 NIL NIL NIL NIL)("text" "html" ("charset" "utf-8") NIL NIL "quoted-printable" 60 2 NIL NIL NIL NIL) "alternative" ("boundary" "alt") NIL NIL NIL)("application" "pdf" ("name" "report.pdf") NIL "Q3 report" "base64" 4096 NIL ("attachment" ("filename" "report.pdf" "size" "3000")) NIL NIL) "mixed" ("boundary" "mix") NIL ("en" "de") NIL))]])
    local b = r.items.BODYSTRUCTURE
    assert.equal("multipart", b.type)
    assert.equal("mixed", b.subtype)
    assert.same({boundary = "mix"}, b.params)
    assert.same({"en", "de"}, b.language)
    assert.equal(2, #b.parts)
    local alt = b.parts[1]
    assert.equal("alternative", alt.subtype)
    assert.equal(2, #alt.parts)
    local plain = alt.parts[1]
    assert.equal("text", plain.type)
    assert.equal("plain", plain.subtype)
    assert.same({charset = "utf-8"}, plain.params)
    assert.equal("QUOTED-PRINTABLE", plain.encoding)
    assert.equal(24, plain.size)
    assert.equal(1, plain.lines)
    assert.is_false(plain.md5)
    assert.is_false(plain.disposition)
    local pdf = b.parts[2]
    assert.equal("application", pdf.type)
    assert.equal("Q3 report", pdf.description)
    assert.equal("BASE64", pdf.encoding)
    assert.equal(4096, pdf.size)
    assert.is_nil(pdf.lines)
    assert.same({type = "attachment", params = {filename = "report.pdf", size = "3000"}}, pdf.disposition)
  end)

  it("parses a non-extensible BODY and a message/rfc822 part", function()
    local r = response([[* 2 FETCH (BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92) BODYSTRUCTURE ("message" "rfc822" NIL NIL NIL "7bit" 500 (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" NIL NIL NIL "7bit" 10 1) 20 NIL NIL NIL NIL))]])
    local b = r.items.BODY
    assert.equal("text", b.type)
    assert.same({charset = "US-ASCII"}, b.params)
    assert.equal(92, b.lines)
    assert.is_nil(b.md5)
    local m = r.items.BODYSTRUCTURE
    assert.equal("rfc822", m.subtype)
    assert.equal("inner", m.envelope.subject)
    assert.equal("plain", m.body.subtype)
    assert.equal(20, m.lines)
    assert.is_false(m.params)
  end)

  it("accepts literals inside FETCH, in sections and in the envelope", function()
    local hdr = "Subject: hi\r\n\r\n"
    local r = response("* 3 FETCH (UID 7 BODY[HEADER] {" .. #hdr .. "}\r\n" .. hdr ..
                       " ENVELOPE (NIL {4}\r\nsubj NIL NIL NIL NIL NIL NIL NIL NIL) BODY[1.2]<0> NIL)\r\n")
    assert.equal(hdr, r.items["BODY[HEADER]"])
    assert.equal("subj", r.items.ENVELOPE.subject)
    assert.is_false(r.items["BODY[1.2]<0>"])
  end)

  it("keys items with sections upper-cased as the server sent them", function()
    local r = response('* 4 FETCH (body[header.fields (subject)] "Subject: x" MODSEQ (624140003))')
    assert.truthy(r.items["BODY[HEADER.FIELDS (SUBJECT)]"])
    assert.equal(624140003, r.items.MODSEQ)
  end)

  it("rejects a malformed ENVELOPE, BODYSTRUCTURE and UID", function()
    local p = imap.response_parser()
    assert.equal("invalid envelope", select(2, p:feed_line('* 1 FETCH (ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))')))
    assert.equal("invalid number", select(2, p:feed_line('* 1 FETCH (UID x)')))
    assert.equal("invalid number", select(2, p:feed_line('* 1 FETCH (BODYSTRUCTURE ("text" "plain" NIL NIL NIL "7bit" big 1))')))
    assert.equal("missing fetch value", select(2, p:feed_line('* 1 FETCH (UID)')))
    assert.equal("invalid body parameters", select(2, p:feed_line('* 1 FETCH (BODY ("a" "b" ("x") NIL NIL "7bit" 1))')))
  end)

  it("refuses body structures nested past max_depth", function()
    local deep = string.rep("(", 100) .. '"text" "plain" NIL NIL NIL "7bit" 1 1)' .. string.rep(' "mixed")', 99)
    local _, reason = imap.response_parser():feed_line("* 1 FETCH (BODYSTRUCTURE " .. deep .. ")")
    assert.equal("too deeply nested", reason)
    local r, resp = imap.response_parser{max_depth = 200}:feed_line("* 1 FETCH (BODYSTRUCTURE " .. deep .. ")")
    assert.equal("done", r)
    assert.equal("multipart", resp.items.BODYSTRUCTURE.type)
  end)

  it("checks response literal limits", function()
    local p = imap.response_parser{max_literal = 100}
    assert.same({nil, "literal too large", "*", 101, false, n = 5}, table.pack(p:feed_line("* 1 FETCH (BODY[] {101}")))
    assert.same({"literal", 100, false, false, n = 4}, table.pack(p:feed_line("* 1 FETCH (BODY[] {100}")))
  end)
end)

describe("imap encoding", function()
  it("quotes as an atom, a quoted string or a literal", function()
    assert.same({"INBOX", false, n = 2}, table.pack(imap.quote("INBOX")))
    assert.same({'"NIL"', false, n = 2}, table.pack(imap.quote("NIL")))
    assert.same({'"nil"', false, n = 2}, table.pack(imap.quote("nil")))   -- NIL in any case
    assert.same({'"Nil"', false, n = 2}, table.pack(imap.quote("Nil", {atom = true})))
    assert.same({"NILS", false, n = 2}, table.pack(imap.quote("NILS")))
    assert.same({'""', false, n = 2}, table.pack(imap.quote("")))
    assert.same({'"a b"', false, n = 2}, table.pack(imap.quote("a b")))
    assert.same({'"a\\"b\\\\c"', false, n = 2}, table.pack(imap.quote('a"b\\c')))
    assert.same({'"\\\\Seen"', false, n = 2}, table.pack(imap.quote("\\Seen")))
    assert.same({"{4}\r\na\r\nb", true, n = 2}, table.pack(imap.quote("a\r\nb")))
    assert.same({"{5}\r\ncaf\xc3\xa9", true, n = 2}, table.pack(imap.quote("caf\xc3\xa9")))
    assert.same({'"caf\xc3\xa9"', false, n = 2}, table.pack(imap.quote("caf\xc3\xa9", {utf8 = true})))
    assert.same({"{1+}\r\n\0", true, n = 2}, table.pack(imap.quote("\0", {nonsync = true})))
    assert.same({'"INBOX"', false, n = 2}, table.pack(imap.quote("INBOX", {atom = false})))
    assert.same({"NIL", false, n = 2}, table.pack(imap.quote(nil)))
    assert.same({"NIL", false, n = 2}, table.pack(imap.quote(false)))
    assert.is_true(select(2, imap.quote(string.rep("x ", 600))))
  end)

  it("formats lists with numbers, NIL, nested lists and flags", function()
    assert.equal('(1 NIL "a b" ("x"))', imap.format_list({1, false, "a b", {"x"}}))
    assert.equal("(\\Seen $Junk \\*)", imap.format_list({"\\Seen", "$Junk", "\\*"}, true))
    assert.has_error(function() imap.format_list({true}) end)
    assert.has_error(function() imap.format_list({1.5}) end)
  end)

  it("builds FETCH responses the response parser reads back", function()
    local body = "Subject: x\r\n\r\nhello\r\n"
    local wire = imap.fetch_response(3, {"UID", 42, "FLAGS", {"\\Seen", "\\Deleted"},
      "ENVELOPE", {false, "hi \"there\"", {{"Ann", false, "ann", "example.org"}}, false, false, false, false, false, false, "<id@x>"},
      "BODY[]", body, "X-RAW", {raw = "(1 2)"}})
    assert.equal("* 3 FETCH (UID 42 FLAGS (\\Seen \\Deleted) ENVELOPE (NIL \"hi \\\"there\\\"\" ((\"Ann\" NIL \"ann\" \"example.org\")) NIL NIL NIL NIL NIL NIL \"<id@x>\") BODY[] {21}\r\n" .. body .. " X-RAW (1 2))\r\n", wire)
    local r = response(wire)
    assert.equal(42, r.items.UID)
    assert.same({"\\Seen", "\\Deleted"}, r.items.FLAGS)
    assert.equal('hi "there"', r.items.ENVELOPE.subject)
    assert.equal("ann", r.items.ENVELOPE.from[1].mailbox)
    assert.equal(body, r.items["BODY[]"])
  end)

  it("round-trips random strings through quote and the command parser", function()
    math.randomseed(3501)
    for _ = 1, 300 do
      local t = {}
      for i = 1, math.random(0, 40) do
        local c = math.random(1, 10) <= 8 and math.random(32, 126) or math.random(1, 255)
        t[i] = string.char(c)
      end
      local s = table.concat(t)
      local enc = imap.quote(s)
      local cmd = command("t1 LOGIN " .. enc .. " x\r\n", {authenticated = true, allow_8bit = true})
      assert.equal(s, cmd.args[1])
    end
  end)
end)

describe("imap modified UTF-7", function()
  it("encodes the RFC 3501 examples and common names", function()
    assert.equal("Entw&APw-rfe", imap.utf7_encode("Entwürfe"))
    assert.equal("&U,BTFw-", imap.utf7_encode("台北"))
    assert.equal("~peter/mail/&U,BTFw-/&ZeVnLIqe-", imap.utf7_encode("~peter/mail/台北/日本語"))
    assert.equal("&2D3eAA-", imap.utf7_encode("😀"))
    assert.equal("&-", imap.utf7_encode("&"))
    assert.equal("a&-b", imap.utf7_encode("a&b"))
    assert.equal("INBOX", imap.utf7_encode("INBOX"))
    assert.equal("", imap.utf7_encode(""))
  end)

  it("decodes them back", function()
    for _, s in ipairs{"Entwürfe", "台北", "😀", "&", "a&b", "~peter/mail/台北/日本語", "Ünïcödé & more 😀x"} do
      assert.equal(s, imap.utf7_decode(imap.utf7_encode(s)))
    end
  end)

  it("rejects invalid UTF-8 when encoding", function()
    for _, bad in ipairs{"\xff", "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80"} do
      assert.same({nil, "invalid utf-8", n = 2}, table.pack(imap.utf7_encode(bad)))
    end
  end)

  it("rejects invalid modified UTF-7", function()
    local cases = {
      ["&Jjo!"] = "invalid base64",
      ["&Jjo"] = "unterminated base64",
      ["&"] = "unterminated base64",
      ["&U,BTFw-&ZeVnLIqe-"] = "superfluous shift",
      ["&AGE-"] = "encoded printable ascii",
      ["&2D0-"] = "unpaired surrogate",
      ["&3gA-"] = "unpaired surrogate",
      ["&2D3YPQ-"] = "unpaired surrogate",
      ["&APx-"] = "non-minimal base64",
      ["&APwA-"] = "non-minimal base64",
      ["&A-"] = "non-minimal base64",
      ["&Jj/-"] = "invalid base64",
      ["caf\xc3\xa9"] = "invalid character",
      ["a\tb"] = "invalid character",
    }
    for input, reason in pairs(cases) do
      assert.same({nil, reason, n = 2}, table.pack(imap.utf7_decode(input)), input)
    end
  end)

  it("round-trips random Unicode with a fixed seed", function()
    math.randomseed(2152)
    for _ = 1, 500 do
      local t = {}
      for i = 1, math.random(0, 12) do
        local r = math.random(1, 4)
        local cp
        if r == 1 then cp = math.random(0x20, 0x7e)
        elseif r == 2 then cp = math.random(0x80, 0xd7ff)
        elseif r == 3 then cp = math.random(0xe000, 0xfffd)
        else cp = math.random(0x10000, 0x10ffff) end
        t[i] = utf8.char(cp)
      end
      local s = table.concat(t)
      local enc = assert(imap.utf7_encode(s))
      assert.matches("^[\32-\126]*$", enc)
      assert.equal(s, imap.utf7_decode(enc))
      assert.equal(enc, imap.utf7_encode(imap.utf7_decode(enc)))
    end
  end)
end)
