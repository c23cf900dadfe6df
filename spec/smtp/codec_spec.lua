-- core.smtp: the SMTP codec (RFC 5321 and its extensions).
local core = require "parley.core"
local smtp = core.smtp

-- asserts a parse_command / parse_path failure and its reply
local function fails(reason, code, enhanced, ok, why, c, e)
  assert.is_nil(ok)
  assert.are.equal(reason, why)
  if code then assert.are.equal(code, c) end
  if enhanced then assert.are.equal(enhanced, e) end
end

describe("smtp.parse_command", function()
  describe("verbs", function()
    it("uppercases the verb", function()
      assert.are.equal("QUIT", (smtp.parse_command("quit")))
      assert.are.equal("NOOP", (smtp.parse_command("NoOp")))
    end)

    it("returns the argument of a verb it does not know", function()
      local v, a = smtp.parse_command("XCLIENT NAME=foo ADDR=1.2.3.4")
      assert.are.equal("XCLIENT", v)
      assert.are.equal("NAME=foo ADDR=1.2.3.4", a)
      assert.are.same({ "XFOO" }, { smtp.parse_command("xfoo") })
    end)

    it("gives DATA, RSET, QUIT and STARTTLS no argument", function()
      for _, v in ipairs { "DATA", "RSET", "QUIT", "STARTTLS" } do
        local r = table.pack(smtp.parse_command(v))
        assert.are.equal(1, r.n)
        assert.are.equal(v, r[1])
      end
    end)

    it("rejects an argument to DATA, RSET, QUIT or STARTTLS", function()
      for _, v in ipairs { "DATA x", "RSET now", "QUIT please", "STARTTLS 1" } do
        fails("unexpected argument", 501, "5.5.4", smtp.parse_command(v))
      end
    end)

    it("ignores trailing spaces", function()
      assert.are.same({ "DATA" }, { smtp.parse_command("DATA   ") })
      assert.are.same({ "EHLO", "a.example" }, { smtp.parse_command("EHLO a.example ") })
    end)

    it("rejects an empty line and a line not starting with a verb", function()
      fails("syntax error", 500, "5.5.2", smtp.parse_command(""))
      fails("syntax error", 500, "5.5.2", smtp.parse_command(" QUIT"))
      fails("syntax error", 500, "5.5.2", smtp.parse_command("QU:T"))
      fails("syntax error", 500, "5.5.2", smtp.parse_command(string.rep("A", 17)))
    end)

    it("passes HELP and NOOP arguments through, optional", function()
      assert.are.same({ "HELP", "MAIL" }, { smtp.parse_command("HELP MAIL") })
      assert.are.same({ "NOOP", nil }, { smtp.parse_command("NOOP") })
      assert.are.same({ "NOOP", "anything goes" }, { smtp.parse_command("NOOP anything goes") })
    end)

    it("requires an argument to VRFY and EXPN", function()
      assert.are.same({ "VRFY", "John Smith" }, { smtp.parse_command("VRFY John Smith") })
      assert.are.same({ "EXPN", "staff" }, { smtp.parse_command("EXPN staff") })
      fails("missing argument", 501, "5.5.4", smtp.parse_command("VRFY"))
      fails("missing argument", 501, "5.5.4", smtp.parse_command("EXPN  "))
    end)
  end)

  describe("line rules", function()
    it("accepts a 510-byte line (512 with its CRLF)", function()
      local line = "NOOP " .. string.rep("x", 505)
      assert.are.equal(510, #line)
      assert.are.equal("NOOP", (smtp.parse_command(line)))
    end)

    it("reports a 511-byte line (513 with CRLF) as too long", function()
      fails("line too long", 500, "5.5.2", smtp.parse_command("NOOP " .. string.rep("x", 506)))
    end)

    it("lets the caller raise the line limit", function()
      local line = "NOOP " .. string.rep("x", 995)
      assert.are.equal("NOOP", (smtp.parse_command(line, { max_line = 1002 })))
      fails("line too long", 500, "5.5.2", smtp.parse_command(line, { max_line = 1001 }))
    end)

    it("rejects a NUL byte", function()
      fails("nul byte in command", 500, "5.5.2", smtp.parse_command("MAIL FROM:<a\0@b>"))
    end)

    it("rejects a bare CR and a bare LF inside a command", function()
      fails("bare cr in command", 500, "5.5.2", smtp.parse_command("RCPT TO:<a@b>\rDATA"))
      fails("bare lf in command", 500, "5.5.2", smtp.parse_command("RCPT TO:<a@b>\nDATA"))
    end)

    it("rejects other control characters and DEL", function()
      fails("control character in command", 500, "5.5.2", smtp.parse_command("NOOP \t"))
      fails("control character in command", 500, "5.5.2", smtp.parse_command("NOOP \27[2J"))
      fails("control character in command", 500, "5.5.2", smtp.parse_command("NOOP \127"))
    end)

    it("rejects 8-bit bytes without smtputf8", function()
      fails("8-bit byte in command", 500, "5.5.2", smtp.parse_command("NOOP caf\195\169"))
      fails("non-ascii address without smtputf8", 550, "5.6.7",
        smtp.parse_command("MAIL FROM:<caf\195\169@x.example> SMTPUTF8"))
      fails("non-ascii address without smtputf8", 553, "5.6.7",
        smtp.parse_command("RCPT TO:<caf\195\169@x.example>"))
    end)

    it("rejects malformed UTF-8 and C1 controls even with smtputf8", function()
      local o = { smtputf8 = true }
      fails("invalid utf-8", 500, "5.5.2", smtp.parse_command("RCPT TO:<a\195@b>", o))
      fails("invalid utf-8", 500, "5.5.2", smtp.parse_command("RCPT TO:<a\192\175@b>", o)) -- overlong "/"
      fails("invalid utf-8", 500, "5.5.2", smtp.parse_command("RCPT TO:<a\237\160\128@b>", o)) -- surrogate
      fails("invalid utf-8", 500, "5.5.2", smtp.parse_command("RCPT TO:<a\194\133@b>", o)) -- U+0085 NEL
      fails("invalid utf-8", 500, "5.5.2", smtp.parse_command("RCPT TO:<a\244\144\128\128@b>", o))
    end)

    it("raises on a non-string line and on bad options", function()
      assert.has_error(function() smtp.parse_command(nil) end)
      assert.has_error(function() smtp.parse_command("QUIT", 5) end)
      assert.has_error(function() smtp.parse_command("QUIT", { max_line = 0 }) end)
      assert.has_error(function() smtp.parse_command("QUIT", { max_path = 5000 }) end)
    end)
  end)

  describe("HELO and EHLO", function()
    it("returns the domain", function()
      assert.are.same({ "EHLO", "mail.example.org" }, { smtp.parse_command("EHLO mail.example.org") })
      assert.are.same({ "HELO", "localhost" }, { smtp.parse_command("helo localhost") })
      assert.are.same({ "EHLO", "a-1.b2" }, { smtp.parse_command("EHLO a-1.b2") })
    end)

    it("accepts IPv4 and IPv6 address literals", function()
      for _, lit in ipairs {
        "[127.0.0.1]", "[0.0.0.0]", "[255.255.255.255]",
        "[IPv6:::1]", "[IPv6:::]", "[IPv6:2001:db8::1]", "[ipv6:2001:DB8:0:0:0:0:0:1]",
        "[IPv6:1:2:3:4:5:6:7:8]", "[IPv6:1::8]", "[IPv6:1:2:3:4:5:6::]",
        "[IPv6:::ffff:192.0.2.1]", "[IPv6:1:2:3:4:5:6:1.2.3.4]", "[IPv6:1:2:3:4::1.2.3.4]",
      } do
        assert.are.same({ "EHLO", lit }, { smtp.parse_command("EHLO " .. lit) }, lit)
      end
    end)

    it("rejects malformed address literals", function()
      for _, lit in ipairs {
        "[256.0.0.1]", "[1.2.3]", "[1.2.3.4.5]", "[1..2.3]", "[1.2.3.4", "1.2.3.4]",
        "[IPv6:1:2:3:4:5:6:7]", "[IPv6:1:2:3:4:5:6:7:8:9]", "[IPv6:1::2::3]",
        "[IPv6:12345::]", "[IPv6:1:2:3:4:5:6:7::]", "[IPv6::1]", "[IPv6:1:]",
        "[IPv6:1:2:3:4:5::1.2.3.4]", "[IPv6:g::1]", "[tag:content]", "[]",
        "[127.0.0.1]x",
      } do
        local ok = smtp.parse_command("EHLO " .. lit)
        assert.is_nil(ok, lit)
      end
      fails("invalid address literal", 501, "5.5.4", smtp.parse_command("EHLO [1.2.3.4"))
    end)

    it("rejects malformed domains", function()
      for _, d in ipairs { "-a.b", "a-.b", "a..b", "a.", ".a", "a_b.example", "a b",
                           string.rep("a", 64) .. ".b" } do
        fails("invalid domain", 501, "5.5.4", smtp.parse_command("EHLO " .. d))
      end
    end)

    it("requires a domain", function()
      fails("missing domain", 501, "5.5.4", smtp.parse_command("EHLO"))
      fails("missing domain", 501, "5.5.4", smtp.parse_command("HELO "))
    end)

    it("limits the domain to 255 bytes unless told otherwise", function()
      local label = string.rep("a", 63)
      local d = table.concat({ label, label, label, label }, ".") -- 255
      assert.are.same({ "EHLO", d }, { smtp.parse_command("EHLO " .. d) })
      fails("domain too long", 501, "5.5.4", smtp.parse_command("EHLO " .. d .. ".b"))
      assert.are.equal("EHLO", (smtp.parse_command("EHLO " .. d .. ".b", { max_domain = 300 })))
    end)

    it("accepts UTF-8 labels only with smtputf8", function()
      assert.is_nil((smtp.parse_command("EHLO b\195\188cher.example")))
      assert.are.same({ "EHLO", "b\195\188cher.example" },
        { smtp.parse_command("EHLO b\195\188cher.example", { smtputf8 = true }) })
    end)
  end)

  describe("MAIL and RCPT", function()
    it("returns the mailbox, parameters and details", function()
      local v, box, params, info = smtp.parse_command("MAIL FROM:<jo@example.org> SIZE=1000 BODY=8BITMIME")
      assert.are.equal("MAIL", v)
      assert.are.equal("jo@example.org", box)
      assert.are.same({ SIZE = "1000", BODY = "8BITMIME" }, params)
      assert.are.same({ ["local"] = "jo", domain = "example.org", quoted = false }, info)
    end)

    it("always returns a parameter table", function()
      local _, _, params = smtp.parse_command("RCPT TO:<a@b>")
      assert.are.same({}, params)
    end)

    it("is case-insensitive for FROM: and TO: and keeps the address case", function()
      local v, box = smtp.parse_command("mail from:<Jo@Example.ORG>")
      assert.are.equal("MAIL", v)
      assert.are.equal("Jo@Example.ORG", box)
      assert.are.equal("Jo@Example.ORG", select(2, smtp.parse_command("rcpt To:<Jo@Example.ORG>")))
    end)

    it("returns the null reverse-path as an empty string", function()
      local v, box, params, info = smtp.parse_command("MAIL FROM:<> BODY=7BIT")
      assert.are.equal("MAIL", v)
      assert.are.equal("", box)
      assert.are.same({ BODY = "7BIT" }, params)
      assert.is_true(info.null)
    end)

    it("refuses the null path in RCPT", function()
      fails("null path not allowed", 501, "5.1.3", smtp.parse_command("RCPT TO:<>"))
    end)

    it("accepts RCPT TO:<Postmaster> without a domain, in any case", function()
      local v, box, _, info = smtp.parse_command("RCPT TO:<Postmaster>")
      assert.are.equal("RCPT", v)
      assert.are.equal("Postmaster", box)
      assert.is_true(info.postmaster)
      assert.are.equal("postmaster", (select(2, smtp.parse_command("RCPT TO:<postmaster>"))))
      fails("missing domain", 501, "5.1.7", smtp.parse_command("MAIL FROM:<Postmaster>"))
      fails("missing domain", 501, "5.1.3", smtp.parse_command("RCPT TO:<someone>"))
    end)

    it("accepts an address literal as the domain", function()
      local _, box, _, info = smtp.parse_command("RCPT TO:<a@[IPv6:2001:db8::1]>")
      assert.are.equal("a@[IPv6:2001:db8::1]", box)
      assert.are.equal("[IPv6:2001:db8::1]", info.domain)
      fails("invalid address literal", 501, "5.1.3", smtp.parse_command("RCPT TO:<a@[1.2.3.999]>"))
    end)

    it("accepts a space after the colon leniently", function()
      -- Not in the RFC 5321 ABNF, but many clients send it and it is not
      -- ambiguous, so it is accepted; a space before the colon is not.
      assert.are.equal("a@b", (select(2, smtp.parse_command("MAIL FROM: <a@b>"))))
      assert.are.equal("a@b", (select(2, smtp.parse_command("RCPT TO:  <a@b>"))))
      fails("syntax error: expected FROM:<path>", 501, "5.5.4", smtp.parse_command("MAIL FROM :<a@b>"))
      fails("syntax error: expected TO:<path>", 501, "5.5.4", smtp.parse_command("RCPT TO <a@b>"))
      fails("syntax error: expected FROM:<path>", 501, "5.5.4", smtp.parse_command("MAIL"))
      fails("syntax error: expected TO:<path>", 501, "5.5.4", smtp.parse_command("RCPT"))
    end)

    it("requires angle brackets around the path", function()
      fails("path must be in angle brackets", 501, "5.1.7", smtp.parse_command("MAIL FROM:a@b"))
      fails("path must be in angle brackets", 501, "5.1.3", smtp.parse_command("RCPT TO:a@b>"))
      fails("missing domain", 501, "5.1.7", smtp.parse_command("MAIL FROM:"))
    end)

    it("rejects unbalanced angle brackets", function()
      fails("missing closing angle bracket", 501, "5.1.7", smtp.parse_command("MAIL FROM:<a@b"))
      fails("invalid local part", 501, "5.1.3", smtp.parse_command("RCPT TO:<<a@b>>"))
      fails("garbage after path", 501, "5.1.3", smtp.parse_command("RCPT TO:<a@b>>"))
      fails("invalid domain", 501, "5.1.3", smtp.parse_command("RCPT TO:<a@b<c>"))
    end)

    it("rejects garbage right after the path", function()
      fails("garbage after path", 501, "5.1.7", smtp.parse_command("MAIL FROM:<a@b>SIZE=1"))
    end)

    it("rejects malformed local parts and domains", function()
      fails("invalid local part", 501, "5.1.3", smtp.parse_command("RCPT TO:<a..b@c>"))
      fails("invalid local part", 501, "5.1.3", smtp.parse_command("RCPT TO:<.a@c>"))
      fails("invalid local part", 501, "5.1.3", smtp.parse_command("RCPT TO:<a.@c>"))
      fails("invalid local part", 501, "5.1.3", smtp.parse_command("RCPT TO:<a b@c>"))
      fails("invalid source route", 501, "5.1.3", smtp.parse_command("RCPT TO:<@c>"))
      fails("missing domain", 501, "5.1.3", smtp.parse_command("RCPT TO:<a@>"))
      fails("invalid domain", 501, "5.1.3", smtp.parse_command("RCPT TO:<a@b..c>"))
      fails("invalid domain", 501, "5.1.3", smtp.parse_command("RCPT TO:<a@b_c.d>"))
      fails("invalid domain", 501, "5.1.3", smtp.parse_command("RCPT TO:<a@b@c>"))
    end)

    it("keeps the atext specials of a dot-string", function()
      local box = select(2, smtp.parse_command("RCPT TO:<a.b+tag-1/x=y?z^_`{|}~#$&'*@c>"))
      assert.are.equal("a.b+tag-1/x=y?z^_`{|}~#$&'*@c", box)
    end)

    it("enforces the RFC 5321 size limits, caller-adjustable", function()
      local l64 = string.rep("l", 64)
      assert.are.equal(l64 .. "@b", (select(2, smtp.parse_command("RCPT TO:<" .. l64 .. "@b>"))))
      fails("local part too long", 501, "5.1.3", smtp.parse_command("RCPT TO:<" .. l64 .. "x@b>"))
      assert.is_not_nil((smtp.parse_command("RCPT TO:<" .. l64 .. "x@b>", { max_local = 65 })))
      local label = string.rep("d", 63)
      local dom = table.concat({ label, label, label, "ddd" }, ".") -- 195 bytes
      local path = "<" .. l64 .. "@" .. dom .. ">"          -- 262 bytes
      assert.are.equal(262, #path)
      fails("path too long", 501, "5.1.3", smtp.parse_command("RCPT TO:" .. path))
      fails("path too long", 501, "5.1.3", smtp.parse_command("RCPT TO:" .. path, { max_path = 261 }))
      assert.is_not_nil((smtp.parse_command("RCPT TO:" .. path, { max_path = 262 })))
      fails("domain too long", 501, "5.1.3",
        smtp.parse_command("RCPT TO:<a@" .. dom .. ">", { max_domain = 100 }))
    end)
  end)

  describe("quoted local parts", function()
    it("returns the canonical mailbox and the unquoted local part", function()
      local _, box, _, info = smtp.parse_command('RCPT TO:<"john doe"@example.org>')
      assert.are.equal('"john doe"@example.org', box)
      assert.are.equal("john doe", info["local"])
      assert.is_true(info.quoted)
    end)

    it("drops quotes that are not needed", function()
      local _, box, _, info = smtp.parse_command('RCPT TO:<"john"@example.org>')
      assert.are.equal("john@example.org", box)
      assert.is_true(info.quoted)
      assert.are.equal("a.b@x", (select(2, smtp.parse_command('RCPT TO:<"a\\.b"@x>'))))
    end)

    it("applies quoted-pairs and re-escapes only quote and backslash", function()
      local _, box, _, info = smtp.parse_command('RCPT TO:<"Joe\\,Smith \\"Jr\\" \\\\ x"@x>')
      assert.are.equal('Joe,Smith "Jr" \\ x', info["local"])
      assert.are.equal('"Joe,Smith \\"Jr\\" \\\\ x"@x', box)
    end)

    it("keeps a quoted-string that is not a dot-string quoted", function()
      assert.are.equal('"a..b"@x', (select(2, smtp.parse_command('RCPT TO:<"a..b"@x>'))))
      assert.are.equal('""@x', (select(2, smtp.parse_command('RCPT TO:<""@x>'))))
      assert.are.equal('"a>b"@x', (select(2, smtp.parse_command('RCPT TO:<"a>b"@x>'))))
    end)

    it("rejects unbalanced quotes and bad quoted-pairs", function()
      fails("unbalanced quotes in local part", 501, "5.1.3", smtp.parse_command('RCPT TO:<"abc@x>'))
      fails("unbalanced quotes in local part", 501, "5.1.3", smtp.parse_command('RCPT TO:<"abc\\"@x>'))
      fails("invalid local part", 501, "5.1.3", smtp.parse_command('RCPT TO:<"a"b@x>'))
      fails("invalid local part", 501, "5.1.3", smtp.parse_command('RCPT TO:<a"b"@x>'))
    end)
  end)

  describe("parameters", function()
    it("uppercases keywords and keeps values", function()
      local _, _, params = smtp.parse_command("MAIL FROM:<a@b> size=12 ret=hdrs ENVID=QQ314159")
      assert.are.same({ SIZE = "12", RET = "hdrs", ENVID = "QQ314159" }, params)
    end)

    it("gives a keyword without a value the value true", function()
      local _, _, params = smtp.parse_command("MAIL FROM:<a@b> SMTPUTF8 X-FOO", { smtputf8 = true })
      assert.are.same({ SMTPUTF8 = true, ["X-FOO"] = true }, params)
    end)

    it("accepts several spaces between parameters", function()
      local _, _, params = smtp.parse_command("MAIL FROM:<a@b>  SIZE=1   BODY=7bit")
      assert.are.same({ SIZE = "1", BODY = "7BIT" }, params)
    end)

    it("passes unknown parameters through for the server to refuse", function()
      local _, _, params = smtp.parse_command("RCPT TO:<a@b> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b")
      assert.are.same({ NOTIFY = "SUCCESS,FAILURE", ORCPT = "rfc822;a@b" }, params)
    end)

    it("rejects a non-numeric or over-long SIZE", function()
      fails("invalid SIZE value", 501, "5.5.4", smtp.parse_command("MAIL FROM:<a@b> SIZE=abc"))
      fails("invalid SIZE value", 501, "5.5.4", smtp.parse_command("MAIL FROM:<a@b> SIZE=-1"))
      fails("invalid SIZE value", 501, "5.5.4", smtp.parse_command("MAIL FROM:<a@b> SIZE"))
      fails("invalid SIZE value", 501, "5.5.4",
        smtp.parse_command("MAIL FROM:<a@b> SIZE=" .. string.rep("9", 21)))
      assert.are.same({ SIZE = string.rep("9", 20) },
        select(3, smtp.parse_command("MAIL FROM:<a@b> SIZE=" .. string.rep("9", 20))))
    end)

    it("rejects an empty parameter value", function()
      fails("empty parameter value", 501, "5.5.4", smtp.parse_command("MAIL FROM:<a@b> SIZE="))
      fails("empty parameter value", 501, "5.5.4", smtp.parse_command("MAIL FROM:<a@b> X= Y=1"))
    end)

    it("rejects duplicate parameters in any case", function()
      fails("duplicate parameter", 501, "5.5.4", smtp.parse_command("MAIL FROM:<a@b> SIZE=1 size=2"))
      fails("duplicate parameter", 501, "5.5.4", smtp.parse_command("RCPT TO:<a@b> X X"))
    end)

    it("rejects malformed keywords and values", function()
      fails("syntax error in parameters", 501, "5.5.4", smtp.parse_command("MAIL FROM:<a@b> -X=1"))
      fails("syntax error in parameters", 501, "5.5.4", smtp.parse_command("MAIL FROM:<a@b> X_Y=1"))
      fails("syntax error in parameters", 501, "5.5.4", smtp.parse_command("MAIL FROM:<a@b> X=1=2"))
      fails("syntax error in parameters", 501, "5.5.4", smtp.parse_command("MAIL FROM:<a@b> =1"))
      fails("syntax error in parameters", 501, "5.5.4", smtp.parse_command("MAIL FROM:<a@b> X==1"))
    end)

    it("refuses more than 32 parameters", function()
      local t = {}
      for i = 1, 33 do t[i] = "P" .. i end
      fails("too many parameters", 501, "5.5.4", smtp.parse_command("MAIL FROM:<a@b> " .. table.concat(t, " ")))
      assert.are.equal("MAIL", (smtp.parse_command("MAIL FROM:<a@b> " .. table.concat(t, " "), { max_params = 33 })))
      t[33] = nil
      assert.are.equal("MAIL", (smtp.parse_command("MAIL FROM:<a@b> " .. table.concat(t, " "))))
      fails("too many parameters", 501, "5.5.4",
        smtp.parse_command("MAIL FROM:<a@b> A B", { max_params = 1 }))
      assert.has_error(function() smtp.parse_command("QUIT", { max_params = 65 }) end)
    end)

    it("checks BODY and uppercases its value", function()
      assert.are.same({ BODY = "BINARYMIME" }, select(3, smtp.parse_command("MAIL FROM:<a@b> BODY=binarymime")))
      fails("invalid BODY value", 501, "5.5.4", smtp.parse_command("MAIL FROM:<a@b> BODY=8BIT"))
      fails("invalid BODY value", 501, "5.5.4", smtp.parse_command("MAIL FROM:<a@b> BODY"))
    end)

    it("checks that SMTPUTF8 has no value", function()
      fails("SMTPUTF8 takes no value", 501, "5.5.4", smtp.parse_command("MAIL FROM:<a@b> SMTPUTF8=yes"))
    end)

    it("checks the AUTH parameter is xtext or <>", function()
      assert.are.same({ AUTH = "<>" }, select(3, smtp.parse_command("MAIL FROM:<a@b> AUTH=<>")))
      assert.are.same({ AUTH = "e+3Dmc2@example.com" },
        select(3, smtp.parse_command("MAIL FROM:<e=mc2@example.com> AUTH=e+3Dmc2@example.com")))
      fails("invalid AUTH value", 501, "5.5.4", smtp.parse_command("MAIL FROM:<a@b> AUTH=a+3"))
      fails("invalid AUTH value", 501, "5.5.4", smtp.parse_command("MAIL FROM:<a@b> AUTH=a+zz"))
      fails("invalid AUTH value", 501, "5.5.4", smtp.parse_command("MAIL FROM:<a@b> AUTH"))
    end)

    it("leaves known MAIL parameters unchecked in RCPT", function()
      assert.are.same({ SIZE = "abc" }, select(3, smtp.parse_command("RCPT TO:<a@b> SIZE=abc")))
    end)
  end)

  describe("SMTPUTF8 addresses", function()
    local box = "d\195\182rte@b\195\188cher.example" -- dörte@bücher.example

    it("are refused without the smtputf8 option", function()
      fails("non-ascii address without smtputf8", 550, "5.6.7",
        smtp.parse_command("MAIL FROM:<" .. box .. "> SMTPUTF8"))
      fails("non-ascii address without smtputf8", 553, "5.6.7",
        smtp.parse_command("RCPT TO:<" .. box .. ">"))
    end)

    it("are accepted with the option", function()
      local o = { smtputf8 = true }
      local _, got, params, info = smtp.parse_command("MAIL FROM:<" .. box .. "> SMTPUTF8", o)
      assert.are.equal(box, got)
      assert.are.same({ SMTPUTF8 = true }, params)
      assert.are.equal("b\195\188cher.example", info.domain)
      assert.are.equal(box, (select(2, smtp.parse_command("RCPT TO:<" .. box .. ">", o))))
      assert.are.equal('"\195\169 \195\169"@x',
        (select(2, smtp.parse_command('RCPT TO:<"\195\169 \195\169"@x>', o))))
    end)

    it("need the SMTPUTF8 parameter on MAIL", function()
      fails("non-ascii address needs the SMTPUTF8 parameter", 550, "5.6.7",
        smtp.parse_command("MAIL FROM:<" .. box .. ">", { smtputf8 = true }))
    end)

    it("count octets, not characters, against the limits", function()
      local l = string.rep("\195\169", 32) -- 32 characters, 64 octets
      assert.is_not_nil((smtp.parse_command("RCPT TO:<" .. l .. "@x>", { smtputf8 = true })))
      fails("local part too long", 501, "5.1.3",
        smtp.parse_command("RCPT TO:<" .. l .. "e@x>", { smtputf8 = true }))
    end)
  end)

  describe("relay vectors", function()
    it("reports a source route, and returns it", function()
      local _, box, _, info = smtp.parse_command("RCPT TO:<@local.example,@hop.example:a@ext.example>")
      assert.are.equal("a@ext.example", box)
      assert.are.equal("@local.example,@hop.example", info.route)
      assert.are.equal("source route", info.relay)
    end)

    it("rejects a malformed source route", function()
      fails("invalid source route", 501, "5.1.3", smtp.parse_command("RCPT TO:<@local a@ext>"))
      fails("invalid source route", 501, "5.1.3", smtp.parse_command("RCPT TO:<@local,a@ext>"))
      fails("invalid source route", 501, "5.1.3", smtp.parse_command("RCPT TO:<@:a@ext>"))
      fails("invalid source route", 501, "5.1.3", smtp.parse_command("RCPT TO:<@[1.2.3.4]:a@ext>"))
    end)

    it("reports a quoted at-sign in the local part", function()
      local _, box, _, info = smtp.parse_command('RCPT TO:<"a@ext"@local>')
      assert.are.equal('"a@ext"@local', box)
      assert.are.equal("a@ext", info["local"])
      assert.are.equal("local", info.domain)
      assert.are.equal("at-sign in local part", info.relay)
    end)

    it("reports the percent hack and bang paths", function()
      assert.are.equal("percent hack in local part",
        select(4, smtp.parse_command("RCPT TO:<a%ext@local>")).relay)
      assert.are.equal("bang path in local part",
        select(4, smtp.parse_command("RCPT TO:<ext!a@local>")).relay)
      assert.are.equal("percent hack in local part",
        select(4, smtp.parse_command('RCPT TO:<"a\\%ext"@local>')).relay)
    end)

    it("reports nothing for a plain address", function()
      assert.is_nil(select(4, smtp.parse_command("RCPT TO:<a.b+c@local>")).relay)
    end)

    it("relay_vector names each of the four forms", function()
      assert.are.equal("source route", smtp.relay_vector("<@local:a@ext>"))
      assert.are.equal("at-sign in local part", smtp.relay_vector('<"a@ext"@local>'))
      assert.are.equal("percent hack in local part", smtp.relay_vector("<a%ext@local>"))
      assert.are.equal("bang path in local part", smtp.relay_vector("<ext!a@local>"))
      assert.are.equal("bang path in local part", smtp.relay_vector("ext!a@local"))
    end)

    it("relay_vector is nil for clean paths and fails closed on garbage", function()
      assert.is_nil(smtp.relay_vector("<a@local>"))
      assert.is_nil(smtp.relay_vector("a@local"))
      assert.is_nil(smtp.relay_vector("<>"))
      assert.is_nil(smtp.relay_vector("<d\195\182rte@local>"))
      assert.are.equal("unparseable path", smtp.relay_vector("ext!a"))
      assert.are.equal("unparseable path", smtp.relay_vector("<a@local"))
      assert.are.equal("unparseable path", smtp.relay_vector("<a@local>\0"))
      assert.has_error(function() smtp.relay_vector() end)
    end)
  end)

  describe("AUTH", function()
    it("returns the mechanism uppercased and the initial response", function()
      assert.are.same({ "AUTH", "PLAIN", "AGpvAHNlY3JldA==" }, { smtp.parse_command("auth plain AGpvAHNlY3JldA==") })
      assert.are.same({ "AUTH", "SCRAM-SHA-256", nil }, { smtp.parse_command("AUTH SCRAM-SHA-256") })
      assert.are.same({ "AUTH", "PLAIN", "=" }, { smtp.parse_command("AUTH PLAIN =") })
    end)

    it("rejects a bad mechanism name", function()
      fails("missing argument", 501, "5.5.4", smtp.parse_command("AUTH"))
      fails("invalid mechanism", 501, "5.5.4", smtp.parse_command("AUTH PL@IN"))
      fails("invalid mechanism", 501, "5.5.4", smtp.parse_command("AUTH " .. string.rep("A", 21)))
    end)

    it("rejects an initial response that is not base64", function()
      fails("invalid initial response", 501, "5.5.2", smtp.parse_command("AUTH PLAIN abc"))
      fails("invalid initial response", 501, "5.5.2", smtp.parse_command("AUTH PLAIN ab=c"))
      fails("invalid initial response", 501, "5.5.2", smtp.parse_command("AUTH PLAIN a=b="))
      fails("invalid initial response", 501, "5.5.2", smtp.parse_command("AUTH PLAIN abcd efgh"))
      fails("invalid initial response", 501, "5.5.2", smtp.parse_command("AUTH PLAIN ab-_"))
    end)
  end)

  describe("BDAT", function()
    it("returns the chunk size and the LAST flag", function()
      assert.are.same({ "BDAT", 86, false }, { smtp.parse_command("BDAT 86") })
      assert.are.same({ "BDAT", 0, true }, { smtp.parse_command("bdat 0 last") })
      assert.are.same({ "BDAT", math.maxinteger, true },
        { smtp.parse_command("BDAT 9223372036854775807 LAST") })
    end)

    it("rejects a missing, negative or overflowing size and other markers", function()
      fails("invalid chunk size", 501, "5.5.4", smtp.parse_command("BDAT"))
      fails("invalid chunk size", 501, "5.5.4", smtp.parse_command("BDAT -1"))
      fails("invalid chunk size", 501, "5.5.4", smtp.parse_command("BDAT 12x"))
      fails("invalid chunk size", 501, "5.5.4", smtp.parse_command("BDAT 9223372036854775808"))
      fails("unexpected argument", 501, "5.5.4", smtp.parse_command("BDAT 1 FIRST"))
      fails("unexpected argument", 501, "5.5.4", smtp.parse_command("BDAT 1 LAST LAST"))
    end)
  end)
end)

describe("smtp.parse_path", function()
  it("parses a bracketed path or a bare mailbox", function()
    local box, info = smtp.parse_path("<a@b.example>")
    assert.are.equal("a@b.example", box)
    assert.are.equal("b.example", info.domain)
    assert.are.equal('"x y"@b', (smtp.parse_path('"x y"@b')))
    assert.are.equal("", (smtp.parse_path("<>")))
  end)

  it("reports what is wrong", function()
    fails("missing domain", 501, "5.1.3", smtp.parse_path("a"))
    fails("garbage after path", 501, "5.1.3", smtp.parse_path("<a@b> x"))
    fails("garbage after path", 501, "5.1.3", smtp.parse_path("a@b x"))
    fails("non-ascii address without smtputf8", 553, "5.6.7", smtp.parse_path("\195\169@b"))
    assert.are.equal("\195\169@b", (smtp.parse_path("\195\169@b", { smtputf8 = true })))
  end)
end)

describe("smtp.enhanced_valid", function()
  it("accepts class.subject.detail with class 2, 4 or 5", function()
    for _, c in ipairs { "2.0.0", "5.1.1", "4.7.0", "5.5.4", "2.1.23", "5.123.999", "4.0.10" } do
      assert.is_true(smtp.enhanced_valid(c), c)
    end
  end)

  it("rejects anything else", function()
    for _, c in ipairs { "", "3.0.0", "1.1.1", "5.1", "5.1.1.1", "5..1", "5.1.", "5.1000.1",
                         "5.01.1", "5.1.00", " 5.1.1", "5.1.1 ", "5.a.1", "55.1.1" } do
      assert.is_false(smtp.enhanced_valid(c), c)
    end
  end)

  it("raises on a non-string", function()
    assert.has_error(function() smtp.enhanced_valid(nil) end)
  end)
end)

describe("smtp.parse_reply_line", function()
  it("parses a final line with an enhanced code", function()
    assert.are.same({ 250, false, "Ok", "2.1.0" }, { smtp.parse_reply_line("250 2.1.0 Ok") })
  end)

  it("parses a continuation line", function()
    assert.are.same({ 250, true, "PIPELINING", nil }, { smtp.parse_reply_line("250-PIPELINING") })
    assert.are.same({ 250, true, "", nil }, { smtp.parse_reply_line("250-") })
  end)

  it("accepts a bare code with or without a space", function()
    assert.are.same({ 354, false, "", nil }, { smtp.parse_reply_line("354") })
    assert.are.same({ 221, false, "", nil }, { smtp.parse_reply_line("221 ") })
  end)

  it("takes the enhanced code only when its class matches the reply", function()
    assert.are.same({ 550, false, "2.1.1 odd", nil }, { smtp.parse_reply_line("550 2.1.1 odd") })
    assert.are.same({ 354, false, "3.0.0 go", nil }, { smtp.parse_reply_line("354 3.0.0 go") })
    assert.are.same({ 550, false, "5.1.1x", nil }, { smtp.parse_reply_line("550 5.1.1x") })
    assert.are.same({ 550, false, "", "5.1.1" }, { smtp.parse_reply_line("550 5.1.1") })
    assert.are.same({ 451, true, "try later", "4.3.0" }, { smtp.parse_reply_line("451-4.3.0   try later") })
  end)

  it("keeps tabs and UTF-8 in the text", function()
    assert.are.same({ 220, false, "mx\tready \195\169", nil }, { smtp.parse_reply_line("220 mx\tready \195\169") })
  end)

  it("rejects invalid codes", function()
    for _, l in ipairs { "", "25", "2500 x", "199 x", "600 x", "260 x", "25a x", "abc", " 250 x", "250x" } do
      local ok, why = smtp.parse_reply_line(l)
      assert.is_nil(ok, l)
      assert.is_string(why)
    end
    assert.are.same({ nil, "invalid reply code" }, { smtp.parse_reply_line("199 x") })
    assert.are.same({ nil, "invalid reply line" }, { smtp.parse_reply_line("250_x") })
  end)

  it("rejects CR, LF, NUL and controls in the text", function()
    assert.are.same({ nil, "bare cr in reply" }, { smtp.parse_reply_line("250 a\rb") })
    assert.are.same({ nil, "bare lf in reply" }, { smtp.parse_reply_line("250 a\nb") })
    assert.are.same({ nil, "nul byte in reply" }, { smtp.parse_reply_line("250 a\0b") })
    assert.are.same({ nil, "control character in reply" }, { smtp.parse_reply_line("250 a\27b") })
  end)

  it("limits the line to 512 bytes with CRLF unless told otherwise", function()
    local l = "250 " .. string.rep("x", 506)
    assert.are.equal(250, (smtp.parse_reply_line(l)))
    assert.are.same({ nil, "reply line too long" }, { smtp.parse_reply_line(l .. "x") })
    assert.are.equal(250, (smtp.parse_reply_line(l .. "x", 1000)))
  end)
end)

describe("smtp.reply", function()
  it("builds a one-line reply", function()
    assert.are.equal("250 2.1.0 Ok\r\n", smtp.reply(250, "2.1.0", "Ok"))
    assert.are.equal("354 go ahead\r\n", smtp.reply(354, nil, "go ahead"))
  end)

  it("builds a multi-line reply with the enhanced code on every line", function()
    assert.are.equal("250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n",
      smtp.reply(250, nil, { "mx.example", "PIPELINING", "SIZE 1000" }))
    assert.are.equal("550-5.1.1 no\r\n550 5.1.1 such user\r\n",
      smtp.reply(550, "5.1.1", { "no", "such user" }))
  end)

  it("writes a bare code when there is no text", function()
    assert.are.equal("250\r\n", smtp.reply(250))
    assert.are.equal("250\r\n", smtp.reply(250, nil, {}))
    assert.are.equal("250 2.0.0\r\n", smtp.reply(250, "2.0.0", ""))
    assert.are.equal("250-\r\n250 x\r\n", smtp.reply(250, nil, { "", "x" }))
  end)

  it("round-trips through parse_reply_line", function()
    local bytes = smtp.reply(451, "4.3.0", { "one", "two" })
    local lines = {}
    for l in bytes:gmatch("(.-)\r\n") do lines[#lines + 1] = { smtp.parse_reply_line(l) } end
    assert.are.same({ { 451, true, "one", "4.3.0" }, { 451, false, "two", "4.3.0" } }, lines)
  end)

  it("raises on CR, LF, NUL or other controls in a text line", function()
    assert.has_error(function() smtp.reply(250, nil, "a\r\n250 b") end)
    assert.has_error(function() smtp.reply(250, nil, { "ok", "a\nb" }) end)
    assert.has_error(function() smtp.reply(250, nil, "a\0") end)
    assert.has_error(function() smtp.reply(250, nil, "a\27") end)
  end)

  it("raises on invalid codes, mismatched enhanced codes and bad lines", function()
    assert.has_error(function() smtp.reply(199, nil, "x") end)
    assert.has_error(function() smtp.reply(260, nil, "x") end)
    assert.has_error(function() smtp.reply(600, nil, "x") end)
    assert.has_error(function() smtp.reply(250, "5.0.0", "x") end)
    assert.has_error(function() smtp.reply(354, "3.0.0", "x") end)
    assert.has_error(function() smtp.reply(250, "2.0", "x") end)
    assert.has_error(function() smtp.reply(250, nil, { "a", 5 }) end)
    assert.has_error(function() smtp.reply(250, nil, 5) end)
    assert.has_error(function() smtp.reply(250, nil, string.rep("x", 507)) end)
    assert.are.equal(512, #smtp.reply(250, nil, string.rep("x", 506)))
  end)
end)

-- feeds `input` to a fresh decoder in pieces cut at `cuts` (sorted positions)
local function decode(input, opts, cuts)
  local d = smtp.data_decoder(opts)
  local out, pos, done, used = {}, 1, false, 0
  local bounds = {}
  for _, c in ipairs(cuts or {}) do bounds[#bounds + 1] = c end
  bounds[#bounds + 1] = #input
  for _, b in ipairs(bounds) do
    if done then break end
    local piece = input:sub(pos, b)
    local o, dn, u = d:feed(piece)
    out[#out + 1] = o
    used = used + u
    done = dn
    pos = b + 1
  end
  return table.concat(out), done, used, d:error(), d
end

describe("smtp.data_decoder", function()
  it("un-stuffs leading dots and stops at CRLF.CRLF", function()
    local out, done, used, err = decode("Subject: x\r\n\r\n..hidden\r\n.\r\n")
    assert.are.equal("Subject: x\r\n\r\n.hidden\r\n", out)
    assert.is_true(done)
    assert.are.equal(27, used)
    assert.is_nil(err)
  end)

  it("treats the start of DATA as after a CRLF", function()
    local out, done, used = decode(".\r\nQUIT\r\n")
    assert.are.equal("", out)
    assert.is_true(done)
    assert.are.equal(3, used)
  end)

  it("leaves the bytes after the terminator to the next command", function()
    local input = "a\r\n.\r\nMAIL FROM:<x@y>\r\n"
    local d = smtp.data_decoder()
    local out, done, used = d:feed(input)
    assert.are.equal("a\r\n", out)
    assert.is_true(done)
    assert.are.equal("MAIL FROM:<x@y>\r\n", input:sub(used + 1))
    assert.are.same({ "", true, 0 }, { d:feed("more") })
    assert.is_true(d:done())
  end)

  it("keeps a dot that is not at the start of a line", function()
    assert.are.equal("a.b\r\n. x\r\n", (decode("a.b\r\n.. x\r\n.\r\n")))
  end)

  it("counts message bytes for SIZE enforcement", function()
    local d = smtp.data_decoder()
    d:feed("abc\r\n..d")
    assert.are.equal(7, d:size())
    d:feed("\r\n.\r\n")
    assert.are.equal(9, d:size())
  end)

  local smuggled = {
    "\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r\n.\r", "\r.\r\n", "\n.\r", "\r\n.\r\r\n",
    "\r\n\r.\r\n", "\n\r\n.\n", "\r\n.\n\r\n", "\r\n. \r\n", "\r\n.\0\r\n",
  }

  for _, ending in ipairs(smuggled) do
    local shown = ending:gsub("\r", "\\r"):gsub("\n", "\\n")
    it("does not end the message at " .. shown .. ", at any split", function()
      local input = "x" .. ending .. "MAIL FROM:<evil@x>"
      for cut = 0, #input do
        local cuts = (cut > 0 and cut < #input) and { cut } or {}
        for _, mode in ipairs { "reject", "normalize" } do
          local out, done, used, err = decode(input, { bare = mode }, cuts)
          assert.is_false(done, shown .. " cut " .. cut)
          assert.are.equal(#input, used)
          assert.is_truthy(out:find("MAIL FROM:<evil@x>", 1, true))
          if mode == "reject" and input:gsub("\r\n", ""):find("[\r\n]") then
            assert.is_truthy(err == "bare lf" or err == "bare cr", shown)
          else
            assert.is_nil(err, shown)
          end
        end
      end
    end)
  end

  it("ends at a CRLF.CRLF that follows a bare CR", function()
    -- "x\r" + "\r\n.\r\n": the bare CR is an error, the end is real
    local out, done, used, err = decode("x\r\r\n.\r\nQUIT\r\n")
    assert.is_true(done)
    assert.are.equal(7, used)
    assert.are.equal("x\r\n\r\n", out)
    assert.are.equal("bare cr", err)
  end)

  it("ends at the real CRLF.CRLF at every split of the input", function()
    local input = "a\r\n..b\r\n.\r\nRSET\r\n"
    for cut1 = 0, #input do
      for cut2 = cut1, #input do
        local out, done, used, err = decode(input, nil, { cut1, cut2 })
        assert.are.equal("a\r\n.b\r\n", out)
        assert.is_true(done)
        assert.are.equal(#input - 6, used)
        assert.is_nil(err)
      end
    end
  end)

  it("finds the real end after a smuggling attempt, at every split", function()
    local input = "x\n.\r\nMAIL FROM:<e@x>\r\n.\r\nQUIT\r\n"
    for cut = 0, #input do
      local out, done, used, err = decode(input, nil, { cut })
      assert.are.equal("x\r\n.\r\nMAIL FROM:<e@x>\r\n", out)
      assert.is_true(done)
      assert.are.equal(#input - 6, used)
      assert.are.equal("bare lf", err)
    end
  end)

  it("records a bare LF before the end-of-data dot and keeps reading", function()
    local out, done, _, err = decode("a\nb\r\n.\r\n")
    assert.is_true(done)
    assert.are.equal("bare lf", err)
    assert.are.equal("a\r\nb\r\n", out)
  end)

  it("records a bare CR and keeps reading", function()
    local out, done, _, err = decode("a\rb\r\n.\r\n")
    assert.is_true(done)
    assert.are.equal("bare cr", err)
    assert.are.equal("a\r\nb\r\n", out)
  end)

  it("normalises bare CR and LF to CRLF on request, without an error", function()
    local out, done, _, err = decode("a\nb\rc\r\r\n\n..d\r\n.\r\n", { bare = "normalize" })
    assert.is_true(done)
    assert.is_nil(err)
    assert.are.equal("a\r\nb\r\nc\r\n\r\n\r\n.d\r\n", out)
  end)

  it("reports the first error only", function()
    local _, _, _, err = decode("a\rb\nc\r\n.\r\n")
    assert.are.equal("bare cr", err)
  end)

  it("reports a text line over 1000 bytes without buffering it", function()
    local long = string.rep("y", 998)
    local _, done, _, err = decode(long .. "\r\n.\r\n")
    assert.is_true(done)
    assert.is_nil(err)
    local d = smtp.data_decoder()
    local out1 = d:feed(long)
    local out2 = d:feed("yy")
    assert.are.equal(998, #out1)
    assert.are.equal(2, #out2)
    assert.are.equal("line too long", d:error())
    local out, done2 = d:feed("\r\n.\r\n")
    assert.are.equal("\r\n", out)
    assert.is_true(done2)
  end)

  it("does not count a stuffing dot against the line limit", function()
    local _, _, _, err = decode("." .. "." .. string.rep("z", 997) .. "\r\n.\r\n")
    assert.is_nil(err)
  end)

  it("takes the line limit from its options", function()
    local _, _, _, err = decode("abcd\r\n.\r\n", { max_line = 5 })
    assert.are.equal("line too long", err)
    local _, _, _, err2 = decode("abc\r\n.\r\n", { max_line = 5 })
    assert.is_nil(err2)
  end)

  it("holds no more than the current feed", function()
    local d = smtp.data_decoder()
    local chunk = string.rep("0123456789abcdef\r\n", 4096)
    local total = 0
    for _ = 1, 64 do
      local out = d:feed(chunk)
      assert.is_true(#out <= #chunk)
      total = total + #out
    end
    assert.are.equal(#chunk * 64, total)
    assert.are.equal(#chunk * 64, d:size())
  end)

  it("raises on bad options and bad arguments", function()
    assert.has_error(function() smtp.data_decoder { bare = "ignore" } end)
    assert.has_error(function() smtp.data_decoder { max_line = -1 } end)
    assert.has_error(function() smtp.data_decoder(5) end)
    assert.has_error(function() smtp.data_decoder():feed(nil) end)
    assert.has_error(function() smtp.data_decoder().feed(io.stdout, "x") end)
  end)

  it("names itself", function()
    local d = smtp.data_decoder()
    assert.truthy(tostring(d):find("^parley.smtp.data_decoder: 0x%x+ %(reading%)$"))
    d:feed(".\r\n")
    assert.truthy(tostring(d):find("%(done%)$"))
  end)
end)

describe("smtp.data_encoder{keep_cr = true} (POP3's message bodies)", function()
  it("turns only bare LFs into CRLF, keeps a CR alone, and stuffs leading dots", function()
    local e = smtp.data_encoder{ keep_cr = true }
    assert.are.equal("a\rb\r\n..c\r\nd\r\n", e:feed("a\rb\n.c\r\nd\r\n"))
    assert.are.equal(".\r\n", e:finish())
  end)

  it("sees a CRLF split across feeds as one line end", function()
    local e = smtp.data_encoder{ keep_cr = true }
    assert.are.equal("x\r", e:feed("x\r"))
    assert.are.equal("\n..y", e:feed("\n.y"))
    assert.are.equal("\r\n.\r\n", e:finish())
  end)

  it("gives the same bytes for any split of random input (fixed seed)", function()
    math.randomseed(1939)
    local alphabet = { "a", ".", "\n", "\r", "\r\n", "\n." }
    for _ = 1, 300 do
      local parts = {}
      for i = 1, math.random(0, 30) do parts[i] = alphabet[math.random(#alphabet)] end
      local msg = table.concat(parts)
      local whole = smtp.data_encoder{ keep_cr = true }
      local want = whole:feed(msg) .. whole:finish()
      local e, got, i = smtp.data_encoder{ keep_cr = true }, {}, 1
      while i <= #msg do
        local k = math.random(1, 5)
        got[#got + 1] = e:feed(msg:sub(i, i + k - 1))
        i = i + k
      end
      got[#got + 1] = e:finish()
      assert.are.equal(want, table.concat(got), ("%q"):format(msg))
      assert.is_nil(want:find("[^\r]\n"), ("bare LF out of %q"):format(msg))
    end
  end)

  it("raises on options that are not a table", function()
    assert.has_error(function() smtp.data_encoder("keep_cr") end)
  end)
end)

describe("smtp.data_encoder", function()
  it("dot-stuffs and terminates", function()
    local e = smtp.data_encoder()
    assert.are.equal("..a\r\nb\r\n...\r\n", e:feed(".a\r\nb\r\n..\r\n"))
    assert.are.equal(".\r\n", e:finish())
  end)

  it("normalises bare LF and bare CR to CRLF", function()
    local e = smtp.data_encoder()
    assert.are.equal("a\r\nb\r\nc\r\n\r\n..d", e:feed("a\nb\rc\r\r\n.d"))
    assert.are.equal("\r\n.\r\n", e:finish())
  end)

  it("joins a CR and an LF split across feeds into one CRLF", function()
    local e = smtp.data_encoder()
    assert.are.equal("a\r\n", e:feed("a\r"))
    assert.are.equal("..b\r\n", e:feed("\n.b\n"))
    assert.are.equal("\r\n", e:feed("\r"))
    assert.are.equal("\r\n", e:feed("\r"))
    assert.are.equal("", e:feed("\n"))
    assert.are.equal(".\r\n", e:finish())
  end)

  it("adds a CRLF before the dot only when the data lacks one", function()
    local e = smtp.data_encoder()
    assert.are.equal("x", e:feed("x"))
    assert.are.equal("\r\n.\r\n", e:finish())
    assert.are.equal(".\r\n", smtp.data_encoder():finish())
  end)

  it("neutralises an embedded end-of-data sequence", function()
    local e = smtp.data_encoder()
    local wire = e:feed("a\r\n.\r\nMAIL FROM:<x@y>\r\n") .. e:finish()
    local out, done, used = decode(wire)
    assert.is_true(done)
    assert.are.equal(#wire, used)
    assert.are.equal("a\r\n.\r\nMAIL FROM:<x@y>\r\n", out)
  end)

  it("raises when fed after finish", function()
    local e = smtp.data_encoder()
    e:finish()
    assert.has_error(function() e:feed("x") end)
    assert.has_error(function() e:finish() end)
    assert.truthy(tostring(e):find("^parley.smtp.data_encoder: 0x%x+ %(finished%)$"))
  end)
end)

describe("DATA round trip", function()
  -- the original with every line ending made CRLF, and a final CRLF added
  -- to non-empty data that lacks one: what encoder + decoder must give
  local function normalise(s)
    s = s:gsub("\r\n?", "\n"):gsub("\n", "\r\n")
    if #s > 0 and s:sub(-2) ~= "\r\n" then s = s .. "\r\n" end
    return s
  end

  local alphabet = { ".", ".", ".", "\r", "\n", "\r\n", "a", "b", " ", "\0", "\255" }

  local function random_cuts(rng_len)
    local cuts, p = {}, 0
    while true do
      p = p + math.random(0, 12)
      if p >= rng_len then break end
      cuts[#cuts + 1] = p
    end
    return cuts
  end

  it("gives back the CRLF-normalised data for 500 random inputs", function()
    math.randomseed(5321)
    for round = 1, 500 do
      local parts = {}
      for i = 1, math.random(0, 60) do parts[i] = alphabet[math.random(#alphabet)] end
      local data = table.concat(parts)
      -- encoder in random pieces
      local e, wire, p = smtp.data_encoder(), {}, 1
      for _, c in ipairs(random_cuts(#data)) do
        wire[#wire + 1] = e:feed(data:sub(p, c))
        p = c + 1
      end
      wire[#wire + 1] = e:feed(data:sub(p))
      wire[#wire + 1] = e:finish()
      wire = table.concat(wire) .. "NEXT"
      -- decoder in random splits
      local out, done, used, err = decode(wire, nil, random_cuts(#wire))
      assert.is_true(done, "round " .. round)
      assert.is_nil(err, "round " .. round)
      assert.are.equal(#wire - 4, used, "round " .. round)
      assert.are.equal(normalise(data), out, "round " .. round)
    end
  end)
end)
