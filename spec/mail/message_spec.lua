-- Building messages with parley.mail.message (and parsing them back).
local message = require "parley.mail.message"
local H = require "helper"

local function lines_of(raw)
  local out = {}
  for line in raw:gmatch("(.-)\r\n") do out[#out + 1] = line end
  return out
end

local function header_block(raw)
  return raw:match("^(.-\r\n)\r\n")
end

local function assert_wellformed(raw)
  -- CRLF only, and no line over 998 octets (RFC 5322 §2.1.1)
  assert.is_nil(raw:find("[^\r]\n"), "bare LF")
  assert.is_nil(raw:find("\r[^\n]"), "bare CR")
  for _, l in ipairs(lines_of(raw)) do assert.is_true(#l <= 998) end
end

local function tmpfile(data) return H.write(os.tmpname(), data) end
local random_bytes = H.random_bytes

describe("message.build", function()
  it("writes a plain text message with CRLF line ends and the usual fields", function()
    local raw, rcpt = message.build{ from = "a@example.org", to = "b@example.com",
      subject = "Hello", text = "one\ntwo\n" }
    assert_wellformed(raw)
    local h = header_block(raw)
    assert.matches("\r\nFrom: a@example.org\r\n", "\r\n" .. h, 1, true)
    assert.matches("\r\nTo: b@example.com\r\n", "\r\n" .. h, 1, true)
    assert.matches("^Date: %a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d [+-]%d%d%d%d\r\n", h)
    assert.matches("\r\nMessage%-ID: <[%w.]+@[%w.%-]+>\r\n", h)
    assert.matches("MIME-Version: 1.0\r\n", h, 1, true)
    assert.matches('Content-Type: text/plain; charset="utf-8"\r\n', h, 1, true)
    assert.matches("Content-Transfer-Encoding: 7bit\r\n", h, 1, true)
    assert.equals("one\r\ntwo\r\n", raw:match("\r\n\r\n(.*)$"))
    assert.same({ "b@example.com" }, rcpt)
  end)

  it("formats a given date in seconds with RFC 5322 day and month names", function()
    local raw = message.build{ from = "a@x.org", date = 0, text = "" }
    assert.matches("^Date: Thu, 01 Jan 1970 %d%d:%d%d:00 [+-]%d%d%d%d\r\n", raw)
    assert.equals("Fri, 27 Nov 2026 14:03:07 +0100", message.date(1795784587, 60))
    assert.equals("Fri, 27 Nov 2026 09:33:07 -0330", message.date(1795784587, -210))
  end)

  it("generates a different Message-ID each time and takes a given one", function()
    local a = message.parse(message.build{ from = "a@x.org", text = "" })
    local b = message.parse(message.build{ from = "a@x.org", text = "", host = "mx.example" })
    assert.are_not.equal(a:header("message-id"), b:header("message-id"))
    assert.matches("@mx%.example>$", b:header("message-id"))
    local c = message.parse(message.build{ from = "a@x.org", text = "", message_id = "id1@example" })
    assert.equals("<id1@example>", c:header("message-id"))
    local d = message.parse(message.build{ from = "a@x.org", text = "", message_id = false })
    assert.is_nil(d:header("message-id"))
  end)

  it("never writes Bcc but returns it among the envelope recipients", function()
    local raw, rcpt = message.build{ from = "a@x.org", to = { "b@x.org", "c@x.org" },
      cc = "d@x.org", bcc = "secret@x.org", text = "hi" }
    assert.is_nil(raw:lower():find("bcc"))
    assert.is_nil(raw:find("secret"))
    assert.same({ "b@x.org", "c@x.org", "d@x.org", "secret@x.org" }, rcpt)
  end)

  it("quotes display names with specials and encodes non-ASCII names", function()
    local raw = message.build{
      from = { name = "Doe, John", address = "j@x.org" },
      to = { { name = 'Ann "The Boss" Lee', address = "ann@x.org" },
             { name = "Jürgen Müller", address = "jm@x.org" }, "Plain Name <p@x.org>" },
      reply_to = { name = "Zoë", address = "z@x.org" }, text = "" }
    local h = header_block(raw)
    assert.matches('From: "Doe, John" <j@x.org>\r\n', h, 1, true)
    assert.matches('"Ann \\"The Boss\\" Lee" <ann@x.org>', h, 1, true)
    assert.is_nil(h:find("[\128-\255]"))
    local m = message.parse(raw)
    assert.same({ { name = "Doe, John", address = "j@x.org" } }, message.address_list(m:header("from")))
    assert.same({ { name = 'Ann "The Boss" Lee', address = "ann@x.org" },
      { name = "Jürgen Müller", address = "jm@x.org" }, { name = "Plain Name", address = "p@x.org" } },
      message.address_list(m.headers.to.value))
    assert.same({ { name = "Zoë", address = "z@x.org" } }, message.address_list(m.headers["reply-to"].value))
  end)

  it("encodes a non-ASCII subject in encoded words and decodes it back", function()
    for _, s in ipairs({ "Café", "Re: Grüße aus Köln", "日本語の件名", "☕ emoji 🎉 mix",
                         "=?not an encoded word?=", "tab\tand  two spaces" }) do
      local raw = message.build{ from = "a@x.org", subject = s, text = "" }
      assert.is_nil(header_block(raw):find("[\128-\255]"))
      assert.equals(s, message.parse(raw):header("subject"))
    end
  end)

  it("folds long subjects: header lines within 78 octets, encoded words within 75", function()
    local subjects = {
      ("Ünïcödé wörds "):rep(20),
      ("plain ascii words "):rep(30),
      ("x"):rep(300),
      ("日本語"):rep(60),
    }
    for _, s in ipairs(subjects) do
      local raw = message.build{ from = "a@x.org", subject = s, text = "" }
      local h = header_block(raw)
      local subj = h:match("\r\n(Subject:.-\r\n)%S")
      for line in subj:gmatch("(.-)\r\n") do
        assert.is_true(#line <= 78, "line of " .. #line)
        for w in line:gmatch("=%?[^?]+%?[BQ]%?[^?]*%?=") do assert.is_true(#w <= 75) end
      end
      local want = s:gsub("^%s+", ""):gsub("%s+$", "")
      assert.equals(want, message.parse(raw):header("subject"))
    end
  end)

  it("writes extra headers in the given order, and a map in name order", function()
    local raw = message.build{ from = "a@x.org", text = "", headers = {
      { "X-Zeta", "1" }, { name = "X-Alpha", value = "2" }, { "Auto-Submitted", "auto-generated" } } }
    local a, b, c = raw:find("X-Zeta: 1", 1, true), raw:find("X-Alpha: 2", 1, true), raw:find("Auto-Submitted", 1, true)
    assert.is_true(a < b and b < c)
    raw = message.build{ from = "a@x.org", text = "", headers = { ["X-B"] = "b", ["X-A"] = "a" } }
    assert.is_true(raw:find("X-A: a", 1, true) < raw:find("X-B: b", 1, true))
  end)

  it("writes UTF-8 headers raw in utf8 (SMTPUTF8) mode and 8bit bodies", function()
    local raw = message.build{ utf8 = true, from = { name = "Zoë", address = "zoë@exämple.org" },
      to = "bob@x.org", subject = "Grüße", text = "Grüße aus Köln" }
    local h = header_block(raw)
    assert.matches("Subject: Grüße\r\n", h, 1, true)
    assert.matches("From: Zoë <zoë@exämple.org>\r\n", h, 1, true)
    assert.matches("Content-Transfer-Encoding: 8bit\r\n", h, 1, true)
    local m = message.parse(raw)
    assert.equals("Grüße", m:header("subject"))
    assert.equals("Grüße aus Köln\r\n", m:text())
    assert.equals("zoë@exämple.org", message.address_list(m.headers.from.value)[1].address)
    assert.has_error(function() message.build{ from = "zoë@exämple.org", text = "" } end)
  end)

  describe("transfer encoding", function()
    local function cte(text, extra)
      local t = { from = "a@x.org", text = text }
      for k, v in pairs(extra or {}) do t[k] = v end
      local raw = message.build(t)
      assert_wellformed(raw)
      local m = message.parse(raw)
      return m.transfer_encoding, m, raw
    end

    it("uses 7bit for short ASCII lines", function()
      assert.equals("7bit", (cte("hello\nworld")))
    end)

    it("uses quoted-printable for mostly-ASCII text with 8-bit bytes and gives it back", function()
      local enc, m = cte("Grüße aus Köln, the café is open.\n")
      assert.equals("quoted-printable", enc)
      assert.equals("Grüße aus Köln, the café is open.\r\n", m:text())
    end)

    it("uses quoted-printable for ASCII lines over 998 octets, wrapped at 76", function()
      local long = ("0123456789"):rep(250)
      local enc, m, raw = cte(long)
      assert.equals("quoted-printable", enc)
      assert.equals(long .. "\r\n", m:text())
      for _, l in ipairs(lines_of(raw:match("\r\n\r\n(.*)$"))) do assert.is_true(#l <= 76) end
    end)

    it("uses base64 for mostly non-ASCII text", function()
      local s = ("日本語のテキスト。"):rep(20)
      local enc, m = cte(s)
      assert.equals("base64", enc)
      assert.equals(s .. "\r\n", m:text())
    end)

    it("uses 8bit when eightbit is allowed and lines are short", function()
      local enc, m = cte("Grüße\n", { eightbit = true })
      assert.equals("8bit", enc)
      assert.equals("Grüße\r\n", m:text())
    end)
  end)

  it("puts text and html in multipart/alternative, text first", function()
    local m = message.parse(message.build{ from = "a@x.org", text = "plain", html = "<b>html</b>" })
    assert.equals("multipart/alternative", m.content_type)
    assert.equals(2, #m.parts)
    assert.equals("text/plain", m.parts[1].content_type)
    assert.equals("utf-8", m.parts[1].charset)
    assert.equals("plain\r\n", m.parts[1]:text())
    assert.equals("text/html", m.parts[2].content_type)
    assert.equals("<b>html</b>\r\n", m.parts[2]:text())
    assert.same({}, m.defects)
  end)

  describe("attachments", function()
    it("gives attachments back byte-identical, from a path and from data", function()
      local bin = random_bytes(200000, 42)
      local path = tmpfile(bin)
      finally(function() os.remove(path) end)
      local raw = assert(message.build{ from = "a@x.org", text = "see attached",
        attachments = { { path = path, filename = "data.bin" },
                        { data = "\0\1\2 tiny\r\n\n", filename = "t.dat" },
                        { data = "", filename = "empty.txt" } } })
      assert_wellformed(raw)
      local m = message.parse(raw)
      assert.equals("multipart/mixed", m.content_type)
      assert.equals(4, #m.parts)
      assert.equals("text/plain", m.parts[1].content_type)
      assert.equals("data.bin", m.parts[2].filename)
      assert.equals("base64", m.parts[2].transfer_encoding)
      assert.equals("attachment", m.parts[2].disposition)
      assert.equals(bin, m.parts[2]:content())
      assert.equals("\0\1\2 tiny\r\n\n", m.parts[3]:content())
      assert.equals("", m.parts[4]:content())
      for _, l in ipairs(lines_of(m.parts[2].body .. "\r\n")) do assert.is_true(#l <= 76) end
    end)

    it("guesses the content type from the extension", function()
      local m = message.parse(message.build{ from = "a@x.org", attachments = {
        { data = "%PDF", filename = "Report.PDF" }, { data = "x", filename = "photo.jpeg" },
        { data = "x", filename = "noext" }, { data = "x", filename = "a.txt", content_type = "text/x-custom" } } })
      assert.equals("application/pdf", m.parts[2].content_type)
      assert.equals("image/jpeg", m.parts[3].content_type)
      assert.equals("application/octet-stream", m.parts[4].content_type)
      assert.equals("text/x-custom", m.parts[5].content_type)
      assert.equals("image/png", message.guess_type("x.png"))
    end)

    it("writes non-ASCII file names as RFC 2231 filename* and RFC 2047, read back as UTF-8", function()
      for _, name in ipairs({ "résumé.pdf", ("Überraschung-"):rep(8) .. ".txt", "日本語.doc", 'a "quoted" name.txt' }) do
        local raw = message.build{ from = "a@x.org", attachments = { { data = "x", filename = name } } }
        assert_wellformed(raw)
        local m = message.parse(raw)
        assert.equals(name, m.parts[2].filename)
        if name:find("[\128-\255]") then
          assert.matches("filename%*[%d*]*=UTF%-8''", raw)
          assert.is_nil(header_block(raw .. "\r\n\r\n"):find("[\128-\255]"))
        end
      end
    end)

    it("puts inline images with a Content-ID next to html in multipart/related", function()
      local m = message.parse(message.build{ from = "a@x.org", text = "t", html = '<img src="cid:logo@x">',
        attachments = { { data = "PNG", filename = "logo.png", inline = true, content_id = "logo@x" },
                        { data = "doc", filename = "doc.pdf" } } })
      assert.equals("multipart/mixed", m.content_type)
      assert.equals("multipart/related", m.parts[1].content_type)
      assert.equals("multipart/alternative", m.parts[1].params.type)
      assert.equals("multipart/alternative", m.parts[1].parts[1].content_type)
      local img = m.parts[1].parts[2]
      assert.equals("inline", img.disposition)
      assert.equals("<logo@x>", img:header("content-id"))
      assert.equals("PNG", img:content())
      assert.equals("application/pdf", m.parts[2].content_type)
    end)

    it("keeps a message/rfc822 attachment unencoded and parses the inner message", function()
      local inner = message.build{ from = "in@x.org", subject = "Inner", text = "inner body" }
      local m = message.parse(message.build{ from = "a@x.org", text = "fwd",
        attachments = { { data = inner, content_type = "message/rfc822", filename = "fwd.eml" } } })
      local p = m.parts[2]
      assert.equals("message/rfc822", p.content_type)
      assert.equals("7bit", p.transfer_encoding)
      assert.equals("Inner", p.message:header("subject"))
      assert.equals("inner body\r\n", p.message:text())
    end)

    it("chooses boundaries that occur nowhere in the content", function()
      local inner = "--=_parley_\r\n--=_parley_x\r\nbody\r\n"
      local raw = message.build{ from = "a@x.org", text = inner, html = inner,
        attachments = { { data = inner, content_type = "message/rfc822" } } }
      local m = message.parse(raw)
      local b1, b2 = m.params.boundary, m.parts[1].params.boundary
      assert.are_not.equal(b1, b2)
      for _, b in ipairs({ b1, b2 }) do
        local count = 0
        for _ in raw:gmatch("\n%-%-" .. b:gsub("%p", "%%%0")) do count = count + 1 end
        assert.is_true(count >= 2)
        assert.is_nil(inner:find(b, 1, true))
      end
      assert.equals(inner, m.parts[1].parts[1]:text())
      assert.equals(inner, m.parts[2].body)
    end)

    it("returns nil and an error for an attachment file that cannot be read", function()
      local raw, err = message.build{ from = "a@x.org", attachments = { { path = "/nonexistent/x.bin" } } }
      assert.is_nil(raw)
      assert.matches("nonexistent", err)
    end)
  end)

  describe("message.source", function()
    it("streams a large attachment in bounded chunks and gives the same bytes as build", function()
      local bin = random_bytes(1024 * 1024 + 7, 7)
      local path = tmpfile(bin)
      finally(function() os.remove(path) end)
      local t = { from = "a@x.org", to = "b@x.org", date = 0, message_id = "fixed@x",
        subject = "big", text = "see attached", attachments = { { path = path } } }
      local src, rcpt = assert(message.source(t))
      assert.same({ "b@x.org" }, rcpt)
      local chunks, biggest = {}, 0
      while true do
        local c, err = src()
        assert.is_nil(err)
        if not c then break end
        chunks[#chunks + 1] = c
        if #c > biggest then biggest = #c end
      end
      assert.is_nil(src())
      assert.is_true(#chunks > 10)
      assert.is_true(biggest < 100000, "chunk of " .. biggest)
      local streamed = table.concat(chunks)
      assert_wellformed(streamed)
      local m = message.parse(streamed)
      assert.equals(bin, m.parts[2]:content())
      -- same bytes as build, boundaries aside
      local built = message.build(t)
      local function strip(s) return (s:gsub("=_parley_[%w.]+", "B")) end
      assert.equals(strip(built), strip(streamed))
    end)

    it("works as an ltn12 source pumped into a sink", function()
      local ltn12 = require "ltn12"
      local out = {}
      local src = assert(message.source{ from = "a@x.org", subject = "pump", text = "body" })
      assert.is_truthy(ltn12.pump.all(src, (ltn12.sink.table(out))))
      assert.equals("pump", message.parse(table.concat(out)):header("subject"))
    end)

    it("reports a file that vanished before streaming as a source error", function()
      local path = tmpfile("data")
      local src = assert(message.source{ from = "a@x.org", attachments = { { path = path } } })
      os.remove(path)
      local err
      for _ = 1, 100 do
        local c, e = src()
        if not c then err = e; break end
      end
      assert.is_string(err)
    end)
  end)
end)

describe("message.build refuses header injection", function()
  local base = { from = "a@x.org", to = "b@x.org", text = "body" }
  local function with(k, v)
    local t = {}
    for a, b in pairs(base) do t[a] = b end
    t[k] = v
    return t
  end
  local attempts = {
    { "subject", "hi\r\nBcc: victim@x.org" },
    { "subject", "hi\nX-Evil: 1" },
    { "subject", "hi\rX-Evil: 1" },
    { "subject", "nul\0byte" },
    { "from", "a@x.org\r\nBcc: v@x.org" },
    { "from", { name = "Eve\r\nBcc: v@x.org", address = "e@x.org" } },
    { "to", { "b@x.org", "c@x.org\nBcc: v@x.org" } },
    { "cc", { { name = "x", address = "c@x.org\r\n" } } },
    { "bcc", "v@x.org\r\nX: y" },
    { "reply_to", "r@x.org\0" },
    { "date", "Thu, 1 Jan 1970\r\nX: y" },
    { "message_id", "<a@b>\r\nX: y" },
    { "in_reply_to", "<a@b>\nX: y" },
    { "headers", { { "X-Ok\r\nBcc", "v" } } },
    { "headers", { { "X-Ok", "v\r\nBcc: v@x.org" } } },
    { "headers", { { "X Space", "v" } } },
    { "headers", { { "X-Colon:", "v" } } },
    { "headers", { { "", "v" } } },
    { "headers", { { "Content-Type", "text/html" } } },
    { "headers", { { "Bcc", "v@x.org" } } },
    { "attachments", { { data = "x", filename = "a.txt\r\nX: y" } } },
    { "attachments", { { data = "x", filename = "a.txt", content_type = "text/plain\r\nX: y" } } },
    { "attachments", { { data = "x", content_type = "text/plain; x=1" } } },
    { "attachments", { { data = "x", content_id = "id\r\nX: y" } } },
    { "attachments", { { data = "x", description = "d\nX: y" } } },
    { "to", "no-domain" },
    { "to", "a b@x.org" },
    { "to", "<a@x.org>>" },
  }
  for i, a in ipairs(attempts) do
    it("raises on attempt " .. i .. " (" .. a[1] .. ")", function()
      assert.has_error(function() message.build(with(a[1], a[2])) end)
      assert.has_error(function() message.source(with(a[1], a[2])) end)
    end)
  end

  it("raises on wrong argument types", function()
    assert.has_error(function() message.build("x") end)
    assert.has_error(function() message.build{ subject = 42 } end)
    assert.has_error(function() message.build{ text = {} } end)
    assert.has_error(function() message.build{ attachments = { { filename = "no data" } } } end)
    assert.has_error(function() message.build{ attachments = { { data = "x", path = "/etc/hostname" } } } end)
  end)
end)
