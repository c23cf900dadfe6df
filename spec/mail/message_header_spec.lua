-- RFC 2047 encoded words, address lists and dates in parley.mail.message.
local message = require "parley.mail.message"

describe("message.header_decode", function()
  -- RFC 2047 §8, the table of encoded-word examples (displayed as)
  local examples = {
    { "(=?ISO-8859-1?Q?a?=)", "(a)" },
    { "(=?ISO-8859-1?Q?a?= b)", "(a b)" },
    { "(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)" },
    { "(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)", "(ab)" },
    { "(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)", "(ab)" },
    { "(=?ISO-8859-1?Q?a_b?=)", "(a b)" },
    { "(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)" },
  }
  for _, e in ipairs(examples) do
    it("decodes the RFC 2047 §8 example " .. e[1]:gsub("\r\n", " "), function()
      assert.equals(e[2], message.header_decode(e[1]))
    end)
  end

  it("decodes the RFC 2047 §8 header examples to UTF-8", function()
    assert.equals("Keith Moore", message.header_decode("=?US-ASCII?Q?Keith_Moore?="))
    assert.equals("Keld Jørn Simonsen", message.header_decode("=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?="))
    assert.equals("André Pirard", message.header_decode("=?ISO-8859-1?Q?Andr=E9?= Pirard"))
    assert.equals("If you can read this you understand the example.", message.header_decode(
      "=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?= =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?="))
    assert.equals("Olle Järnefors", message.header_decode("=?ISO-8859-1?Q?Olle_J=E4rnefors?="))
    assert.equals("Patrik Fältström", message.header_decode("=?ISO-8859-1?Q?Patrik_F=E4ltstr=F6m?="))
  end)

  it("converts iso-8859-2, iso-8859-15 and windows-1252 to UTF-8", function()
    assert.equals("Łódź", message.header_decode("=?iso-8859-2?Q?=A3=F3d=BC?="))
    assert.equals("€", message.header_decode("=?iso-8859-15?Q?=A4?="))
    assert.equals("“quotes” – €", message.header_decode("=?windows-1252?Q?=93quotes=94_=96_=80?="))
    assert.equals("é", message.header_decode("=?utf-8*fr?q?=C3=A9?="))
  end)

  it("tolerates base64 without padding, lower case and odd charsets", function()
    assert.equals("abcd", message.header_decode("=?utf-8?b?YWJjZA?="))
    assert.equals("Café", message.header_decode("=?UTF-8?q?Caf=C3=A9?="))
    assert.equals("x", message.header_decode("=?x-unknown?Q?x?="))
  end)

  it("leaves malformed encoded words and plain text as they are", function()
    assert.equals("=?utf-8?X?abc?=", message.header_decode("=?utf-8?X?abc?="))
    assert.equals("=?utf-8?Q?unterminated", message.header_decode("=?utf-8?Q?unterminated"))
    assert.equals("plain text", message.header_decode("plain text"))
    assert.equals("a =?b", message.header_decode("a =?b"))
  end)

  it("reads raw 8-bit header text as UTF-8, or as iso-8859-1 when it is not UTF-8", function()
    assert.equals("Grüße", message.header_decode("Grüße"))
    assert.equals("Grüße", message.header_decode("Gr\252\223e"))
  end)

  it("replaces invalid UTF-8 inside a utf-8 encoded word", function()
    assert.equals("a\u{FFFD}b", message.header_decode("=?utf-8?Q?a=FFb?="))
  end)

  it("raises on a non-string", function()
    assert.has_error(function() message.header_decode(nil) end)
    assert.has_error(function() message.header_encode(1) end)
  end)
end)

describe("message.header_encode", function()
  it("leaves plain ASCII alone", function()
    assert.equals("Hello there", message.header_encode("Hello there"))
  end)

  it("round-trips random UTF-8 text through encoded words of at most 75 octets", function()
    math.randomseed(2047)
    local pool = { "a", "b", " ", "é", "ß", "€", "日", "本", "🎉", "_", "=", "?", "\t", "." }
    for _ = 1, 300 do
      local t = {}
      for i = 1, math.random(1, 120) do t[i] = pool[math.random(#pool)] end
      local s = table.concat(t)
      if s:find("[\128-\255]") then
        local e = message.header_encode(s)
        assert.is_nil(e:find("[\128-\255]"))
        for w in e:gmatch("%S+") do assert.is_true(#w <= 75) end
        assert.equals(s, message.header_decode(e))
        assert.equals(s, message.header_decode(message.header_encode(s, { encoding = "B" })))
        assert.equals(s, message.header_decode(message.header_encode(s, { encoding = "Q" })))
      end
    end
  end)

  it("never splits a UTF-8 character across encoded words", function()
    local e = message.header_encode(("日本語"):rep(30), { encoding = "B" })
    for w in e:gmatch("%S+") do
      local text = w:match("^=%?UTF%-8%?B%?(.*)%?=$")
      assert.is_truthy(utf8.len((require("mime").unb64(text))))
    end
  end)
end)

describe("header lines holding encoded words", function()
  local H = require "parley.mail.header"
  local function lines(field)
    local out = {}
    for l in field:gmatch("([^\r\n]*)\r\n") do out[#out + 1] = l end
    return out
  end

  it("stay within 76 characters, the first line included (RFC 2047 §2)", function()
    local subject = "Café au lait pour tout le monde, et un très long sujet qui passe la ligne"
    local from = { { name = "Jérôme Ünïcödé Lôngnämé Wïth Mäny Äccënts Änd Mörë Wördß", address = "j@example.org" },
                   { name = "Zoë", address = "z@example.org" } }
    for _, field in ipairs { H.unstructured("Subject", subject), H.address_header("From", from),
                             H.address_header("Resent-From", from) } do
      for _, l in ipairs(lines(field)) do assert.is_true(#l <= 76, #l .. ": " .. l) end
    end
    local unfolded = H.unstructured("Subject", subject):gsub("\r\n([ \t])", "%1")
    assert.equal(subject, message.header_decode(unfolded:match("^Subject: (.*)\r\n$")))
  end)

  it("leave fields without encoded words folded at 78", function()
    local words = ("abcdef "):rep(30)   -- "Subject:" and ten of them: 78
    for _, l in ipairs(lines(H.unstructured("Subject", words))) do assert.is_true(#l <= 78) end
    assert.is_true(#lines(H.unstructured("Subject", words))[1] > 76)
  end)
end)

describe("message.address_list", function()
  local function parse(s)
    local out = {}
    for i, a in ipairs(message.address_list(s)) do
      out[i] = { a.name or false, a.address, a.group }
    end
    return out
  end

  it("parses the RFC 5322 A.1.2 examples", function()
    assert.same({ { "Mary Smith: Personal Account", "mary@x.test" } },
      parse('"Mary Smith: Personal Account" <mary@x.test>'))
    assert.same({ { "Joe Q. Public", "john.q.public@example.com" } },
      parse('"Joe Q. Public" <john.q.public@example.com>'))
    assert.same({ { "Mary Smith", "mary@x.test" }, { false, "jdoe@example.org" }, { "Who?", "one@y.test" } },
      parse("Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>"))
    assert.same({ { false, "boss@nil.test" }, { 'Giant; "Big" Box', "sysservices@example.net" } },
      parse('<boss@nil.test>, "Giant; \\"Big\\" Box" <sysservices@example.net>'))
  end)

  it("parses groups, including an empty one (RFC 5322 A.1.3)", function()
    assert.same({ { "Ed Jones", "c@a.test", "A Group" }, { false, "joe@where.test", "A Group" },
      { "John", "jdoe@one.test", "A Group" } },
      parse("A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;"))
    assert.same({}, parse("Undisclosed recipients:;"))
    assert.same({ { false, "a@b.c", "G" }, { false, "after@x.y" } }, parse("G: a@b.c;, after@x.y"))
  end)

  it("skips comments everywhere (RFC 5322 A.5)", function()
    assert.same({ { "Pete", "pete@silly.test" } },
      parse("Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>"))
    assert.same({ { "Chris Jones", "c@public.example", "A Group" }, { false, "joe@example.org", "A Group" },
      { "John", "jdoe@one.test", "A Group" } },
      parse("A Group(Some people):Chris Jones <c@(Chris's host.)public.example>, joe@example.org, John <jdoe@one.test> (my dear friend); (the end of the group)"))
  end)

  it("takes the comment as the name of a bare address", function()
    assert.same({ { "Ann Lee", "ann@x.org" } }, parse("ann@x.org (Ann Lee)"))
  end)

  it("reads obsolete forms: routes, empty list members, spaced dots (RFC 5322 A.6.1)", function()
    assert.same({ { "Mary Smith", "mary@example.net" }, { false, "jdoe@test.example" } },
      parse("Mary Smith <@node.test:mary@example.net>, , jdoe@test  . example"))
  end)

  it("keeps quoted local parts quoted and unescapes quoted names", function()
    assert.same({ { 'a\\b "c"', '"john doe"@x.org' } }, parse('"a\\\\b \\"c\\"" <"john doe"@x.org>'))
    assert.same({ { false, "john.doe@x.org" } }, parse('"john.doe"@x.org'))
  end)

  it("decodes encoded-word names", function()
    assert.same({ { "André Pirard", "PIRARD@vm1.ulg.ac.be" } },
      parse("=?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>"))
    assert.same({ { "Keld Jørn Simonsen", "keld@dkuug.dk" } },
      parse("=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?= <keld@dkuug.dk>"))
  end)

  it("survives garbage without raising", function()
    for _, s in ipairs({ "", ",,,", "<", ">", "@", ":;", '"unterminated', "(unterminated", "a@", "@b",
                         "<<a@b>>", "g:g:a@b;;", "\\", "[", "a@[1.2.3.4]", "(((((", '"\\' }) do
      assert.is_table(message.address_list(s))
    end
    assert.same({ { false, "a@[1.2.3.4]" } }, parse("a@[1.2.3.4]"))
  end)
end)

describe("message.date and message.parse_date", function()
  it("formats with a numeric zone and parses back", function()
    math.randomseed(5322)
    for _ = 1, 200 do
      local t = math.random(0, 4102444800)
      local zone = math.random(-719, 719)
      local s = message.date(t, zone)
      assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d [+-]%d%d%d%d$", s)
      local back, z = message.parse_date(s)
      assert.equals(t, back)
      assert.equals(zone, z)
    end
  end)

  it("uses the local zone by default", function()
    local s = message.date()
    assert.is_true(math.abs(message.parse_date(s) - os.time()) <= 2)
  end)

  it("reads obsolete dates: two-digit years, named zones, no seconds, comments", function()
    assert.same({ -27723480, -210 }, { message.parse_date("Thu, 13 Feb 69 23:32 -0330 (Newfoundland Time)") })
    assert.same({ 1000000000, -240 }, { message.parse_date("Sat, 8 Sep 2001 21:46:40 EDT") })
    assert.equals(1000000000, (message.parse_date("9 Sep 01 01:46:40 GMT")))
    assert.equals(1000000000, (message.parse_date("  sunday,  9   sep   2001   01:46:40  +0000  ")))
    assert.equals(1000000000, (message.parse_date("Sun, 09 Sep 2001 01:46:40")))
    assert.equals(1000000000 - 3600, (message.parse_date("Sun, 9 Sep 2001 01:46:40 +0100")))
  end)

  it("returns nil for dates it cannot read", function()
    for _, s in ipairs({ "", "yesterday", "32 Jan 2020 00:00:00 +0000", "1 Foo 2020 00:00 +0000",
                         "1 Jan 2020 25:00 +0000", "1 Jan 2020", ("1"):rep(300) }) do
      assert.is_nil((message.parse_date(s)))
    end
    assert.has_error(function() message.parse_date(5) end)
  end)
end)
