-- The small parts the checks are built from.
local check = require "parley.check"

describe("check URLs", function()
  it("parses credentials (percent-decoded), the port and the path", function()
    local u = check.parse_url("imap://us%40er:p%3Ass@127.0.0.1:1143/Sent%20Items", 143)
    assert.equal("us@er", u.user)
    assert.equal("p:ss", u.password)
    assert.equal(1143, u.port)
    assert.equal("/Sent Items", u.path)
    assert.equal("127.0.0.1:1143", u.address)
    assert.equal("[::1]:25", check.parse_url("smtp://[::1]", 25).address)
    assert.is_nil(check.parse_url("smtp:host"))
    assert.is_nil(check.parse_url("smtp://h:0"))
  end)

  it("names the mailbox from the path, INBOX by default", function()
    local imap = require "parley.check.imap"
    assert.equal("INBOX", imap.mailbox(check.parse_url("imap://h")))
    assert.equal("Sent Items", imap.mailbox(check.parse_url("imap://h/Sent%20Items")))
  end)
end)

describe("check details", function()
  it("documents the default HTTP status classes", function()
    local http = require "parley.check.http"
    assert.equal("OK", http.judge_status(204))
    assert.equal("OK", http.judge_status(302))
    assert.equal("WARNING", http.judge_status(404))
    assert.equal("CRITICAL", http.judge_status(500))
    assert.equal("CRITICAL", http.judge_status(200, { 301 }))
  end)

  it("reads a folded, RFC 2047 encoded Subject from a POP3 TOP head", function()
    local pop3 = require "parley.check.pop3"
    assert.equal("Café report 7", pop3.subject_of("From: a@b\r\nSubject: =?UTF-8?Q?Caf=C3=A9?=\r\n report 7\r\n\r\n"))
    assert.equal("", pop3.subject_of("From: a@b\r\n\r\n"))
  end)

  it("makes a fresh token for each round trip and an address for a bare user", function()
    local rt = require "parley.check.roundtrip"
    local a, b = rt.token(), rt.token()
    assert.matches("^%x+$", a)
    assert.equal(rt.TOKEN_BYTES * 2, #a)
    assert.not_equal(a, b)
    assert.equal("alice@localhost", rt.address_of("alice"))
    assert.equal("alice@example.org", rt.address_of("alice@example.org"))
  end)
end)
