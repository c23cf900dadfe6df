-- Parsing real-world (messy) messages, ENVELOPE, BODYSTRUCTURE and sections.
local message = require "parley.mail.message"

local function crlf(s) return (s:gsub("\r?\n", "\r\n")) end

-- Hand-counted layout (offsets are 0-based octets):
--   0   From: a@x.org\r\n                                   15
--   15  Subject: t\r\n                                      12
--   27  MIME-Version: 1.0\r\n                               19
--   46  Content-Type: multipart/mixed; boundary="b1"\r\n    46
--   92  \r\n                                                 2  -> header 94
--   94  preamble\r\n                                        10
--   104 --b1\r\n                                             6
--   110 Content-Type: text/plain; charset=us-ascii\r\n      44
--   154 \r\n                                                 2  -> header 46
--   156 line one\r\nline two                                18  (1 line end)
--   174 \r\n--b1\r\n                                         8
--   182 Content-Type: application/octet-stream\r\n          40
--   222 Content-Transfer-Encoding: base64\r\n               35
--   257 \r\n                                                 2  -> header 77
--   259 AAEC                                                 4
--   263 \r\n--b1--\r\nepilogue\r\n                          20  -> 283
local SIMPLE = table.concat({
  "From: a@x.org\r\n", "Subject: t\r\n", "MIME-Version: 1.0\r\n",
  'Content-Type: multipart/mixed; boundary="b1"\r\n', "\r\n",
  "preamble\r\n", "--b1\r\n",
  "Content-Type: text/plain; charset=us-ascii\r\n", "\r\n",
  "line one\r\nline two", "\r\n--b1\r\n",
  "Content-Type: application/octet-stream\r\n", "Content-Transfer-Encoding: base64\r\n", "\r\n",
  "AAEC", "\r\n--b1--\r\n", "epilogue\r\n",
})

describe("message.parse", function()
  it("keeps headers in order, unfolded, raw and decoded, indexed by lowercased name", function()
    local m = message.parse(crlf([[
Received: from a
 by b; Fri, 27 Nov 2026 10:00:00 +0000
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=
	from Köln
X-Dup: 1
x-dup: 2

body
]]))
    assert.equals(4, #m.headers)
    assert.equals("Received", m.headers[1].name)
    assert.equals("from a by b; Fri, 27 Nov 2026 10:00:00 +0000", m.headers[1].value)
    assert.equals("Received: from a\r\n by b; Fri, 27 Nov 2026 10:00:00 +0000\r\n", m.headers[1].raw)
    assert.equals("Grüße\tfrom Köln", m:header("SUBJECT"))
    assert.equals(m.headers[2], m.headers.subject)
    assert.equals("1", m.headers["x-dup"].value)
    assert.equals(2, #m:header_all("X-DUP"))
    assert.equals("body\r\n", m.body)
    assert.equals("text/plain", m.content_type)
    assert.equals("us-ascii", m.charset)
    assert.equals("7bit", m.transfer_encoding)
  end)

  it("records byte offsets that match the hand-counted layout", function()
    local m = message.parse(SIMPLE)
    assert.equals(283, #SIMPLE)
    assert.same({ 0, 94, 94, 189 }, { m.offset, m.header_size, m.body_offset, m.body_size })
    local p1, p2 = m.parts[1], m.parts[2]
    assert.same({ 110, 46, 156, 18 }, { p1.offset, p1.header_size, p1.body_offset, p1.body_size })
    assert.same({ 182, 77, 259, 4 }, { p2.offset, p2.header_size, p2.body_offset, p2.body_size })
    assert.equals("line one\r\nline two", SIMPLE:sub(p1.body_offset + 1, p1.body_offset + p1.body_size))
    assert.equals("preamble", m.preamble)
    assert.equals("epilogue\r\n", m.epilogue)
    assert.equals("\0\1\2", p2:content())
    assert.same({}, m.defects)
  end)

  it("reads a message with bare LF line ends", function()
    local s = "From: a@x.org\nSubject: bare\n  folded\nContent-Type: multipart/alternative; boundary=zz\n\n--zz\nContent-Type: text/plain\n\nplain\n--zz\nContent-Type: text/html\nContent-Transfer-Encoding: quoted-printable\n\n<p>caf=C3=A9 soft=\nbreak</p>\n--zz--\n"
    local m = message.parse(s)
    assert.equals("bare  folded", m:header("subject"))
    assert.equals(2, #m.parts)
    assert.equals("plain", m.parts[1].body)
    assert.equals("<p>café softbreak</p>", m.parts[2]:text())
    assert.same({}, m.defects)
  end)

  it("accepts a missing final boundary and reports it", function()
    local m = message.parse(crlf([[
Content-Type: multipart/mixed; boundary="x"

--x
Content-Type: text/plain

one
--x
Content-Type: text/plain

two, cut off
]]))
    assert.equals(2, #m.parts)
    assert.equals("one", m.parts[1].body)
    assert.equals("two, cut off\r\n", m.parts[2].body)
    assert.same({ "missing final boundary" }, m.defects)
  end)

  it("reads nested multipart/mixed inside multipart/alternative", function()
    local m = message.parse(crlf([[
Content-Type: multipart/alternative; boundary=outer

--outer
Content-Type: text/plain

plain
--outer
Content-Type: multipart/mixed; boundary=inner

--inner
Content-Type: text/html

<p>html</p>
--inner
Content-Type: image/png; name=dot.png
Content-Transfer-Encoding: base64
Content-Disposition: inline; filename=dot.png

iVBORw0KGgo=
--inner--

--outer--
]]))
    assert.equals("multipart/alternative", m.content_type)
    assert.equals(2, #m.parts)
    local mixed = m.parts[2]
    assert.equals("multipart/mixed", mixed.content_type)
    assert.equals("inner", mixed.params.boundary)
    assert.equals(2, #mixed.parts)
    assert.equals("<p>html</p>", mixed.parts[1].body)
    assert.equals("dot.png", mixed.parts[2].filename)
    assert.equals("inline", mixed.parts[2].disposition)
    assert.equals("\137PNG\r\n\26\n", mixed.parts[2]:content())
    assert.equals(mixed.parts[2], message.find_part(m, "2.2"))
  end)

  it("parses a message/rfc822 attachment as a message", function()
    local m = message.parse(crlf([[
From: outer@x.org
Content-Type: multipart/mixed; boundary=b

--b

see below
--b
Content-Type: message/rfc822

From: Inner Person <inner@x.org>
Subject: =?utf-8?q?inn=C3=A9r?=
Content-Type: multipart/alternative; boundary=c

--c
Content-Type: text/plain

inner text
--c--
--b--
]]))
    assert.equals(2, #m.parts)
    assert.equals("see below", m.parts[1].body)
    local inner = m.parts[2].message
    assert.equals("innér", inner:header("subject"))
    assert.equals("inner text", inner.parts[1].body)
    assert.equals(inner.parts[1], message.find_part(m, "2.1"))
    local bs = message.bodystructure(m)
    assert.equals("message", bs.parts[2].type)
    assert.equals("rfc822", bs.parts[2].subtype)
    assert.equals("=?utf-8?q?inn=C3=A9r?=", bs.parts[2].envelope.subject)
    assert.same({ { name = "Inner Person", mailbox = "inner", host = "x.org" } }, bs.parts[2].envelope.from)
    assert.equals("multipart", bs.parts[2].body.type)
    assert.equals(8, bs.parts[2].lines)
  end)

  it("skips a header line without a colon and an mbox From line", function()
    local m = message.parse(crlf([[
From someone@x.org Fri Nov 27 10:00:00 2026
Subject: ok
this line has no colon
X-After: still a header

body
]]))
    assert.equals("ok", m:header("subject"))
    assert.equals("still a header", m:header("x-after"))
    assert.equals("body\r\n", m.body)
    assert.same({ "header line without colon" }, m.defects)
  end)

  it("starts the body at a non-header line when no blank line follows", function()
    local m = message.parse("Subject: x\r\nthis is body text\r\nmore\r\n")
    assert.equals("x", m:header("subject"))
    assert.equals("this is body text\r\nmore\r\n", m.body)
    assert.same({ "missing header/body separator" }, m.defects)
  end)

  it("reads raw 8-bit headers and converts declared charsets in bodies", function()
    local m = message.parse("Subject: Gr\252\223e\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nK\246ln\r\n")
    assert.equals("Grüße", m:header("subject"))
    assert.equals("iso-8859-1", m.charset)
    assert.equals("Köln\r\n", m:text())
    assert.equals("K\246ln\r\n", m:content())
  end)

  it("joins RFC 2231 parameter continuations with charsets", function()
    local m = message.parse(crlf([[
Content-Type: application/x-stuff;
 title*0*=us-ascii'en'This%20is%20even%20more%20;
 title*1*=%2A%2A%2Afun%2A%2A%2A%20;
 title*2="isn't it!"
Content-Disposition: attachment; filename*=iso-8859-1''K%F6ln.txt

x
]]))
    assert.equals("This is even more ***fun*** isn't it!", m.params.title)
    assert.equals("Köln.txt", m.filename)
  end)

  it("defaults to text/plain for a bad Content-Type and message/rfc822 in a digest", function()
    local m = message.parse("Content-Type: garbage\r\n\r\nx")
    assert.equals("text/plain", m.content_type)
    local d = message.parse(crlf([[
Content-Type: multipart/digest; boundary=d

--d

Subject: one

first
--d--
]]))
    assert.equals("message/rfc822", d.parts[1].content_type)
    assert.equals("one", d.parts[1].message:header("subject"))
  end)

  it("treats a multipart without any boundary line as a preamble only", function()
    local m = message.parse("Content-Type: multipart/mixed; boundary=q\r\n\r\njust text\r\n")
    assert.same({}, m.parts)
    assert.same({ "no boundary found" }, m.defects)
    assert.equals(1, #message.bodystructure(m).parts)
  end)

  it("does not take a longer boundary for a shorter one", function()
    local m = message.parse(crlf([[
Content-Type: multipart/mixed; boundary=ab

--ab
Content-Type: text/plain

--abc is not a boundary
--ab--
]]))
    assert.equals(1, #m.parts)
    assert.equals("--abc is not a boundary", m.parts[1].body)
  end)

  describe("limits", function()
    it("bounds nesting depth", function()
      local t = {}
      for i = 1, 200 do t[#t + 1] = "Content-Type: multipart/mixed; boundary=b" .. i .. "\r\n\r\n--b" .. i .. "\r\n" end
      t[#t + 1] = "\r\nleaf\r\n"
      local m = message.parse(table.concat(t))
      local function depth_of(p)
        local d = 0
        while p.parts and p.parts[1] do p = p.parts[1]; d = d + 1 end
        return d
      end
      assert.equals(32, depth_of(m))
      assert.truthy(table.concat(m.defects, ","):find("nesting limit reached", 1, true))
      assert.equals(3, depth_of(message.parse(table.concat(t), { max_depth = 3 })))
    end)

    it("bounds the number of parts", function()
      local t = { "Content-Type: multipart/mixed; boundary=p\r\n\r\n" }
      for i = 1, 1500 do t[#t + 1] = "--p\r\n\r\npart " .. i .. "\r\n" end
      t[#t + 1] = "--p--\r\n"
      local m = message.parse(table.concat(t))
      assert.equals(1000, #m.parts)
      assert.same({ "part limit reached" }, m.defects)
      assert.equals(10, #message.parse(table.concat(t), { max_parts = 10 }).parts)
    end)

    it("bounds the number and size of header fields", function()
      local t = {}
      for i = 1, 3000 do t[#t + 1] = "X-H" .. i .. ": v\r\n" end
      local s = table.concat(t) .. "\r\nbody\r\n"
      local m = message.parse(s)
      assert.equals(1000, #m.headers)
      assert.equals("body\r\n", m.body)
      assert.same({ "header limit reached" }, m.defects)
      local big = "Subject: " .. ("x"):rep(300000) .. "\r\n\r\nbody"
      local m2 = message.parse(big)
      assert.equals("body", m2.body)
      assert.same({ "header limit reached" }, m2.defects)
      assert.equals(5, #message.parse(s, { max_headers = 5 }).headers)
    end)

    it("raises on bad arguments", function()
      assert.has_error(function() message.parse(nil) end)
      assert.has_error(function() message.parse("x", "y") end)
      assert.has_error(function() message.parse("x", { max_depth = -1 }) end)
      assert.has_error(function() message.parse("x", { max_parts = 1.5 }) end)
    end)
  end)

  it("never raises on random mutations and keeps every range inside the message", function()
    local seeds = { SIMPLE, (message.build{ from = "Zoë <z@x.org>", to = "a@b.c", subject = "Grüße",
      text = "t", html = "<p>h</p>", attachments = { { data = "abc", filename = "é.txt" } } }) }
    local noise = { "\r\n", "\n", "--", "--b1", "--b1--", ":", "=?utf-8?q?", "?=", "\0", "\255", ";", '"', "(", "*0*=" }
    math.randomseed(1234)
    local function check(p, n, depth)
      assert.is_true(p.offset >= 0 and p.body_offset >= p.offset)
      assert.is_true(p.body_offset + p.body_size <= n)
      assert.is_true(depth < 40)
      for _, c in ipairs(p.parts or {}) do check(c, n, depth + 1) end
      if p.message then check(p.message, n, depth + 1) end
    end
    for _ = 1, 1500 do
      local s = seeds[math.random(#seeds)]
      for _ = 1, math.random(1, 8) do
        local pos = math.random(1, #s)
        local op = math.random(3)
        if op == 1 then s = s:sub(1, pos - 1) .. noise[math.random(#noise)] .. s:sub(pos)
        elseif op == 2 then s = s:sub(1, pos - 1) .. s:sub(pos + math.random(1, 20))
        else s = s:sub(1, pos - 1) .. string.char(math.random(0, 255)) .. s:sub(pos + 1) end
      end
      local m = message.parse(s)
      check(m, #s, 0)
      message.bodystructure(m)
      message.envelope(m)
      for _, spec in ipairs({ "", "1", "2", "1.1", "HEADER", "TEXT", "1.MIME", "2.HEADER" }) do message.section(m, spec) end
      for _, p in ipairs(m.parts or {}) do p:content(); p:text() end
      m:text()
    end
  end)
end)

describe("message.bodystructure", function()
  it("gives the hand-counted sizes and line counts", function()
    local bs = message.bodystructure(message.parse(SIMPLE))
    assert.equals("multipart", bs.type)
    assert.equals("mixed", bs.subtype)
    assert.same({ { "boundary", "b1" } }, bs.params)
    assert.equals(2, #bs.parts)
    assert.same({ type = "text", subtype = "plain", params = { { "charset", "us-ascii" } },
      encoding = "7bit", size = 18, lines = 1 }, bs.parts[1])
    assert.same({ type = "application", subtype = "octet-stream", params = {},
      encoding = "base64", size = 4 }, bs.parts[2])
  end)

  it("gives the extension fields: id, description, md5, disposition, language, location", function()
    local m = message.parse(crlf([[
Content-Type: TEXT/Plain; CHARSET="UTF-8"; format=flowed
Content-ID: <id1@x>
Content-Description: a description
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==
Content-Disposition: inline; filename="a.txt"
Content-Language: en, de
Content-Location: http://example.org/a.txt

one
two
]]))
    local bs = message.bodystructure(m)
    assert.equals("text", bs.type)
    assert.equals("plain", bs.subtype)
    assert.same({ { "CHARSET", "UTF-8" }, { "format", "flowed" } }, bs.params)
    assert.equals("utf-8", m.charset)
    assert.equals("<id1@x>", bs.id)
    assert.equals("a description", bs.description)
    assert.equals("Q2hlY2sgSW50ZWdyaXR5IQ==", bs.md5)
    assert.same({ type = "inline", params = { { "filename", "a.txt" } } }, bs.disposition)
    assert.same({ "en", "de" }, bs.language)
    assert.equals("http://example.org/a.txt", bs.location)
    assert.equals(10, bs.size)
    assert.equals(2, bs.lines)
  end)

  it("counts line ends, not a last line without one, as Dovecot does", function()
    -- dovecot-imapd 2.3 answers ("text" "plain" ... "7bit" 4 1 ...) here
    local bs = message.bodystructure(message.parse("Subject: x\r\n\r\na\r\nb"))
    assert.equals(4, bs.size)
    assert.equals(1, bs.lines)
    assert.equals(0, message.bodystructure(message.parse("Subject: x\r\n\r\n")).lines)
  end)
end)

describe("message.envelope", function()
  it("gives raw fields and address structures, sender and reply-to defaulting to from", function()
    local m = message.parse(crlf([[
Date: Fri, 27 Nov 2026 10:00:00 +0100
Subject: =?utf-8?q?caf=C3=A9?=
From: "Doe, John" <john@example.org>
To: A Group:Ed <ed@a.test>,joe@b.test;, Mary <@r1,@r2:mary@c.test>
Cc: Undisclosed recipients:;
In-Reply-To: <prev@x>
Message-ID: <id@x>

x
]]))
    local e = message.envelope(m)
    assert.equals("Fri, 27 Nov 2026 10:00:00 +0100", e.date)
    assert.equals("=?utf-8?q?caf=C3=A9?=", e.subject)
    assert.same({ { name = "Doe, John", mailbox = "john", host = "example.org" } }, e.from)
    assert.same(e.from, e.sender)
    assert.same(e.from, e.reply_to)
    assert.same({ { mailbox = "A Group" }, { name = "Ed", mailbox = "ed", host = "a.test" },
      { mailbox = "joe", host = "b.test" }, {},
      { name = "Mary", adl = "@r1,@r2", mailbox = "mary", host = "c.test" } }, e.to)
    assert.same({ { mailbox = "Undisclosed recipients" }, {} }, e.cc)
    assert.is_nil(e.bcc)
    assert.equals("<prev@x>", e.in_reply_to)
    assert.equals("<id@x>", e.message_id)
  end)
end)

describe("message.section", function()
  it("gives byte ranges for IMAP sections", function()
    local m = message.parse(SIMPLE)
    assert.same({ 0, 283 }, { message.section(m, "") })
    assert.same({ 0, 94 }, { message.section(m, "HEADER") })
    assert.same({ 94, 189 }, { message.section(m, "TEXT") })
    assert.same({ 156, 18 }, { message.section(m, "1") })
    assert.same({ 110, 46 }, { message.section(m, "1.MIME") })
    assert.same({ 259, 4 }, { message.section(m, "2") })
    assert.same({ 182, 77 }, { message.section(m, "2.mime") })
    assert.is_nil((message.section(m, "3")))
    assert.is_nil((message.section(m, "1.HEADER")))
    assert.is_nil((message.section(m, "x.y")))
    assert.is_nil((message.section(m, "MIME")))
  end)

  it("treats the body of a single-part message as part 1", function()
    local s = "Subject: x\r\n\r\nhello\r\n"
    local m = message.parse(s)
    assert.same({ 14, 7 }, { message.section(m, "1") })
    assert.is_nil((message.section(m, "2")))
  end)

  it("gives HEADER and TEXT of an attached message", function()
    local s = crlf([[
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: message/rfc822

Subject: inner

inner body
--b--
]])
    local m = message.parse(s)
    local off, size = message.section(m, "1.HEADER")
    assert.equals("Subject: inner\r\n\r\n", s:sub(off + 1, off + size))
    off, size = message.section(m, "1.TEXT")
    assert.equals("inner body", s:sub(off + 1, off + size))
    off, size = message.section(m, "1.1")
    assert.equals("inner body", s:sub(off + 1, off + size))
  end)
end)
