-- python3's email package as an independent peer: parley builds and python
-- parses, python builds and parley parses. #interop
local message = require "parley.mail.message"
local H = require "helper"

local function have_python()
  local ok = os.execute("python3 -c 'import email' >/dev/null 2>&1")
  return ok == true or ok == 0
end

local write, random_bytes = H.write, H.random_bytes
local function read(path) return (assert(H.read(path), "cannot read " .. path)) end

-- python reads the message in `path` and prints key=value lines (values
-- hex-encoded); attachment payloads are written next to it.
local READER = [[
import email, sys
from email import policy
path = sys.argv[1]
msg = email.message_from_binary_file(open(path, 'rb'), policy=policy.default)
def out(k, v): print(k + '=' + v.encode('utf-8').hex())
out('subject', str(msg['subject']))
for a in msg['from'].addresses: out('from_name', a.display_name); out('from_addr', a.addr_spec)
for a in msg['to'].addresses: out('to_name', a.display_name); out('to_addr', a.addr_spec)
out('bcc', str(msg['bcc'] is None))
out('defects', str(len(msg.defects)))
body = msg.get_body(preferencelist=('plain',))
out('text', body.get_content() if body else '')
html = msg.get_body(preferencelist=('html',))
out('html', html.get_content() if html else '')
for i, part in enumerate(msg.iter_attachments()):
    data = part.get_payload(decode=True)
    p = path + '.att%d' % i
    open(p, 'wb').write(data)
    out('att', (part.get_filename() or '') + '\t' + p + '\t' + part.get_content_type())
]]

local function python_read(raw)
  local path = os.tmpname()
  local script = os.tmpname()
  write(path, raw)
  write(script, READER)
  local p = assert(io.popen("timeout 60 python3 " .. script .. " " .. path .. " 2>&1"))
  local res = { att = {} }
  for line in p:lines() do
    local k, hex = line:match("^([%w_]+)=(%x*)$")
    assert(k, "python said: " .. line)
    local v = hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
    if k == "att" then
      local name, file, ctype = v:match("^(.-)\t(.-)\t(.*)$")
      res.att[#res.att + 1] = { name = name, data = read(file), type = ctype }
      os.remove(file)
    else
      res[k] = v
    end
  end
  p:close()
  os.remove(path); os.remove(script)
  return res
end

describe("python3 email reads what parley builds #interop", function()
  setup(function()
    if not have_python() then error("python3 with the email package is required") end
  end)

  it("agrees on subject, addresses, bodies and attachment bytes #interop", function()
    local bin = random_bytes(30000, 99)
    local binpath = os.tmpname()
    write(binpath, bin)
    finally(function() os.remove(binpath) end)
    local cases = {
      { subject = "Plain subject", from = { name = "Ann Lee", address = "ann@example.org" } },
      { subject = "Grüße aus Köln — ☕ and 🎉", from = { name = "Zoë Ünal", address = "zoe@example.org" } },
      { subject = ("Ein sehr langer Betreff mit Umlauten äöü "):rep(6), from = { name = "Doe, John", address = "john@example.org" } },
      { subject = "日本語の件名です", from = { name = "山田太郎", address = "taro@example.jp" } },
    }
    for _, c in ipairs(cases) do
      local raw = assert(message.build{
        from = c.from, to = { { name = "Bob", address = "bob@example.com" } }, bcc = "hidden@example.com",
        subject = c.subject, text = "Hello Bob,\nGrüße.\n", html = "<p>Hello <b>Bob</b> ☕</p>",
        attachments = { { path = binpath, filename = "blob.bin" },
                        { data = "résumé data", filename = "résumé final.txt" } } })
      local r = python_read(raw)
      assert.equals((c.subject:gsub("%s+$", "")), r.subject)
      assert.equals(c.from.name, r.from_name)
      assert.equals(c.from.address, r.from_addr)
      assert.equals("Bob", r.to_name)
      assert.equals("True", r.bcc)
      assert.equals("0", r.defects)
      assert.equals("Hello Bob,\nGrüße.\n", r.text)
      assert.equals("<p>Hello <b>Bob</b> ☕</p>\n", r.html)
      assert.equals(2, #r.att)
      assert.equals("blob.bin", r.att[1].name)
      assert.equals(bin, r.att[1].data)
      assert.equals("application/octet-stream", r.att[1].type)
      assert.equals("résumé final.txt", r.att[2].name)
      assert.equals("résumé data", r.att[2].data)
    end
  end)

  it("reads a streamed message with a long quoted-printable line #interop", function()
    local long = ("abcdefghij é "):rep(200)
    local out = {}
    local src = assert(message.source{ from = "a@x.org", to = "b@x.org", subject = "qp", text = long })
    while true do local c = src(); if not c then break end; out[#out + 1] = c end
    local r = python_read(table.concat(out))
    assert.equals(long .. "\n", r.text)
  end)
end)

-- python builds with the modern API (policy=SMTP, CRLF) and the legacy
-- email.mime classes; parley parses.
local WRITER = [[
import sys, os
from email.message import EmailMessage
from email import policy
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.mime.application import MIMEApplication
from email.header import Header
from email.utils import formataddr
out, blob = sys.argv[1], open(sys.argv[2], 'rb').read()
m = EmailMessage()
m['From'] = formataddr(('Zoë Ünal', 'zoe@example.org'))
m['To'] = 'Bob <bob@example.com>, "Doe, John" <john@example.org>'
m['Subject'] = 'Grüße aus Köln — ☕ ' * 4
m.set_content('Hello Bob,\nGrüße.\n')
m.add_alternative('<p>Hello ☕</p>\n', subtype='html')
m.add_attachment(blob, maintype='application', subtype='octet-stream', filename='blob.bin')
m.add_attachment('naïve text\n', filename='fïlé name.txt')
inner = EmailMessage(); inner['Subject'] = 'inner'; inner.set_content('inner body\n')
m.add_attachment(inner)
open(out + '.modern', 'wb').write(m.as_bytes(policy=policy.SMTP))
l = MIMEMultipart()
l['From'] = formataddr((str(Header('Jürgen Müller', 'iso-8859-1')), 'jm@example.de'))
l['To'] = 'x@example.com'
l['Subject'] = Header('Übergrößenträger', 'iso-8859-1')
l.attach(MIMEText('Ä latin-1 body\n', 'plain', 'iso-8859-1'))
a = MIMEApplication(blob, Name='blob.bin')
a['Content-Disposition'] = 'attachment; filename="blob.bin"'
l.attach(a)
open(out + '.legacy', 'wb').write(l.as_bytes())
]]

describe("parley reads what python3 email builds #interop", function()
  it("agrees on subject, addresses, bodies and attachments #interop", function()
    if not have_python() then error("python3 with the email package is required") end
    local bin = random_bytes(20000, 5)
    local base, script, blob = os.tmpname(), os.tmpname(), os.tmpname()
    write(script, WRITER)
    write(blob, bin)
    finally(function()
      for _, p in ipairs({ base, script, blob, base .. ".modern", base .. ".legacy" }) do os.remove(p) end
    end)
    local p = assert(io.popen("timeout 60 python3 " .. script .. " " .. base .. " " .. blob .. " 2>&1"))
    local said = p:read("a"); p:close()
    assert.equals("", said)

    local raw = read(base .. ".modern")
    local m = message.parse(raw)
    assert.same({}, m.defects)
    assert.equals(("Grüße aus Köln — ☕ "):rep(4):gsub("%s+$", ""), m:header("subject"))
    assert.same({ { name = "Zoë Ünal", address = "zoe@example.org" } }, message.address_list(m.headers.from.value))
    assert.same({ { name = "Bob", address = "bob@example.com" }, { name = "Doe, John", address = "john@example.org" } },
      message.address_list(m.headers.to.value))
    assert.equals("multipart/mixed", m.content_type)
    local alt = m.parts[1]
    assert.equals("multipart/alternative", alt.content_type)
    assert.equals("Hello Bob,\r\nGrüße.\r\n", alt.parts[1]:text())
    assert.equals("<p>Hello ☕</p>\r\n", alt.parts[2]:text())
    assert.equals("blob.bin", m.parts[2].filename)
    assert.equals(bin, m.parts[2]:content())
    assert.equals("fïlé name.txt", m.parts[3].filename)
    assert.equals("naïve text\r\n", m.parts[3]:text())
    assert.equals("message/rfc822", m.parts[4].content_type)
    assert.equals("inner", m.parts[4].message:header("subject"))
    local bs = message.bodystructure(m)
    assert.equals(4, #bs.parts)
    -- every leaf size is the exact octet count of its encoded body
    local sections = { "1.1", "1.2", "2", "3", "4" }
    for _, sec in ipairs(sections) do
      local part = message.find_part(m, sec)
      local off, size = message.section(m, sec)
      assert.equals(part.body, raw:sub(off + 1, off + size))
    end

    local legacy = message.parse(read(base .. ".legacy"))
    assert.equals("Übergrößenträger", legacy:header("subject"))
    assert.equals("Jürgen Müller", message.address_list(legacy.headers.from.value)[1].name)
    assert.equals("iso-8859-1", legacy.parts[1].charset)
    assert.equals("Ä latin-1 body\r\n", legacy.parts[1]:text()) -- QP line breaks are CRLF (RFC 2045 §6.7)
    assert.equals(bin, legacy.parts[2]:content())
    assert.equals("blob.bin", legacy.parts[2].filename)
  end)
end)
