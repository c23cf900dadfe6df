-- parley.smtp.client: dialogue, capabilities, AUTH, argument checks.
local U = require "smtp.support.util"
local H = U.H
local parley = require "parley"
local client = require "parley.smtp.client"
local sasl = require "parley.smtp.sasl"

-- A scripted server: `script` is a list of { expect_pattern, reply } run
-- in order; returns the listener port and a task giving the lines seen.
local function scripted(greeting, script)
  local l = assert(parley.listen("127.0.0.1:0"))
  local task = H.go(function()
    local c = assert(l:accept(5))
    l:close()
    c:settimeout(5)
    local seen = {}
    c:send(greeting .. "\r\n")
    for _, step in ipairs(script) do
      local line = c:receive("l")
      if not line then break end
      seen[#seen + 1] = line
      assert.truthy(line:match(step[1]), "expected " .. step[1] .. ", got " .. line)
      if step[2] then c:send(step[2] .. "\r\n") end
    end
    c:close()
    return seen
  end)
  return l:port(), task
end

describe("smtp client", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("reads multi-line EHLO replies into a capabilities table", function()
    H.run(function()
      local port, t = scripted("220-first\r\n220 second", {
        { "^EHLO me$", "250-srv\r\n250-PIPELINING\r\n250-SIZE 5000\r\n250-AUTH PLAIN login XOAUTH2\r\n250-X-CUSTOM a b\r\n250 8BITMIME" },
        { "^QUIT$", "221 bye" } })
      local c = assert(client.connect("127.0.0.1:" .. port, { helo = "me" }))
      assert.are.equal("first\nsecond", c.greeting.text)
      assert.are.same({ PIPELINING = true, SIZE = 5000, AUTH = { PLAIN = true, LOGIN = true, XOAUTH2 = true },
        ["X-CUSTOM"] = "a b", ["8BITMIME"] = true }, c.caps)
      c:quit()
      H.join(t)
    end)
  end)

  it("falls back to HELO when EHLO is refused", function()
    H.run(function()
      local port, t = scripted("220 old", { { "^EHLO", "502 5.5.1 what?" }, { "^HELO localhost$", "250 ok" },
        { "^QUIT", "221 bye" } })
      local c = assert(client.connect("127.0.0.1:" .. port))
      assert.is_false(c.esmtp)
      assert.are.same({}, c.caps)
      c:quit()
      H.join(t)
    end)
  end)

  it("sends MAIL, RCPT and DATA one by one without PIPELINING and reports each recipient", function()
    H.run(function()
      local port, t = scripted("220 x", {
        { "^EHLO", "250 x" },
        { "^MAIL FROM:<a@b%.org>$", "250 ok" },
        { "^RCPT TO:<c@d%.org>$", "250 ok" },
        { "^RCPT TO:<e@f%.org>$", "550 5.1.1 unknown" },
        { "^DATA$", "354 go" },
        { "^hello$" }, { "^%.%.dot$" }, { "^%.$", "250 2.0.0 queued" },
        { "^QUIT$", "221 bye" } })
      local res = assert(client.send{ server = "127.0.0.1:" .. port, from = "a@b.org",
        to = { "c@d.org", "e@f.org" }, message = "hello\n.dot\n" })
      assert.are.same({ "c@d.org" }, res.accepted)
      assert.are.equal(550, res.rejected["e@f.org"].code)
      assert.are.equal("5.1.1", res.rejected["e@f.org"].enhanced)
      assert.are.equal("queued", res.reply.text)
      H.join(t)
    end)
  end)

  it("returns nil, err, reply when every recipient is refused, and sends no data", function()
    H.run(function()
      local port, t = scripted("220 x", {
        { "^EHLO", "250 x" }, { "^MAIL", "250 ok" }, { "^RCPT", "550 5.1.1 no" },
        { "^RSET$", "250 ok" }, { "^QUIT$", "221 bye" } })
      local res, err, rep = client.send{ server = "127.0.0.1:" .. port, from = "a@b.org", to = "c@d.org", message = "x" }
      assert.is_nil(res)
      assert.are.equal("all recipients refused", err)
      assert.are.equal(550, rep.code)
      H.join(t)
    end)
  end)

  it("authenticates with CRAM-MD5 (RFC 2195 example) and XOAUTH2", function()
    H.run(function()
      local ch = sasl.b64("<1896.697170952@postoffice.reston.mci.net>")
      local port, t = scripted("220 x", {
        { "^EHLO", "250-x\r\n250 AUTH CRAM-MD5 XOAUTH2" },
        { "^AUTH CRAM%-MD5$", "334 " .. ch },
        { "^" .. sasl.b64("tim b913a602c7eda7a495b4e6e7334d3890"):gsub("%p", "%%%0") .. "$", "235 ok" },
        { "^QUIT", "221 bye" } })
      local c = assert(client.connect("127.0.0.1:" .. port))
      assert(c:auth("tim", "tanstaaftanstaaf"))
      c:quit()
      H.join(t)
      port, t = scripted("220 x", {
        { "^EHLO", "250-x\r\n250 AUTH XOAUTH2" },
        { "^AUTH XOAUTH2 " .. sasl.b64("user=u@x.org\1auth=Bearer tok\1\1"):gsub("%p", "%%%0") .. "$", "235 ok" },
        { "^QUIT", "221 bye" } })
      c = assert(client.connect("127.0.0.1:" .. port))
      assert(c:auth("u@x.org", "tok", "XOAUTH2"))
      c:quit()
      H.join(t)
    end)
  end)

  it("raises on CR, LF or NUL in any argument before sending anything", function()
    H.run(function()
      local srv, root = U.server{ sink = true }
      local seen = 0
      srv.opts.on_mail = function() seen = seen + 1 end
      local c = assert(client.connect(srv.address))
      for _, bad in ipairs { "a@b.org\r\nRCPT TO:<x@y>", "a@b.org\n", "a\0@b.org" } do
        assert.has_error(function() c:mail(bad) end)
        assert.has_error(function() c:rcpt(bad) end)
        assert.has_error(function() c:send{ from = bad, to = "x@y.org", message = "m" } end)
        assert.has_error(function() c:send{ from = "a@b.org", to = { "ok@y.org", bad }, message = "m" } end)
        assert.has_error(function() c:auth(bad, "pw", "PLAIN") end)
        assert.has_error(function() c:auth("user", bad, "PLAIN") end)
        assert.has_error(function() c:mail("a@b.org", { SIZE = bad }) end)
        assert.has_error(function() c:vrfy(bad) end)
        assert.has_error(function()
          client.send{ server = srv.address, from = "a@b.org", to = "c@d.org", message = "m", auth = { user = bad, password = "x" } }
        end)
        assert.has_error(function() client.send{ server = srv.address, from = "a@b.org", to = "c@d.org", message = "m", helo = bad } end)
      end
      assert.has_error(function() c:mail(42) end)
      assert.is_truthy(c:noop())
      c:quit()
      assert.are.equal(0, seen)
      srv:close(0)
      U.rmrf(root)
    end)
  end)

  it("times out on a server that never greets", function()
    H.run(function()
      local l = assert(parley.listen("127.0.0.1:0"))
      local t0 = parley.now()
      local c, err = client.connect("127.0.0.1:" .. l:port(), { timeouts = { greeting = 0.2 } })
      assert.is_nil(c)
      assert.are.equal("timeout", err)
      assert.is_true(parley.now() - t0 < 2)
      l:close()
    end)
  end)

  it("has the RFC 5321 4.5.3.2 timeouts by default", function()
    assert.are.same({ 300, 300, 120, 180, 600 }, { client.TIMEOUTS.greeting, client.TIMEOUTS.command,
      client.TIMEOUTS.data, client.TIMEOUTS.block, client.TIMEOUTS.final })
  end)

  it("streams a message from a file and from a source function", function()
    H.run(function()
      local srv, root = U.server{}
      local path = root .. "/../smtp-msg-" .. os.time()
      U.write(path, "Subject: f\r\n\r\n" .. ("line\r\n"):rep(20000))
      local f = assert(io.open(path, "rb"))
      assert(client.send{ server = srv.address, from = "a@b.org", to = "f@example.org", message = f })
      f:close()
      local n = 0
      assert(client.send{ server = srv.address, from = "a@b.org", to = "g@example.org", chunking = false,
        message = function() n = n + 1; if n <= 3 then return "part" .. n .. "\n" end end })
      srv:close(0)
      assert.are.equal(U.slurp(path), U.strip_trace(U.delivered(root, "f")[1]))
      assert.are.equal("part1\r\npart2\r\npart3\r\n", U.strip_trace(U.delivered(root, "g")[1]))
      os.remove(path)
      U.rmrf(root)
    end)
  end)
end)

describe("smtp sasl helpers", function()
  it("computes MD5 and HMAC-MD5 like RFC 1321 and RFC 2195", function()
    assert.are.equal("d41d8cd98f00b204e9800998ecf8427e", sasl.hex(sasl.md5("")))
    assert.are.equal("9e107d9d372bb6826bd81d3542a419d6", sasl.hex(sasl.md5("The quick brown fox jumps over the lazy dog")))
    assert.are.equal("b913a602c7eda7a495b4e6e7334d3890",
      sasl.hmac_md5("tanstaaftanstaaf", "<1896.697170952@postoffice.reston.mci.net>"))
  end)

  it("round-trips PLAIN and refuses bad base64", function()
    assert.are.same({ "", "user", "pass" }, { sasl.parse_plain(sasl.plain("user", "pass")) })
    assert.is_nil(sasl.unb64("not base64!"))
  end)
end)
