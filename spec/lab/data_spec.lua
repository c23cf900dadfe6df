-- parley.lab in process: the lab directory, the logo, the server set,
-- the endpoint table and the shutdown.
local H = require "helper"
local parley = require "parley"
local lab = require "parley.lab"
local data = require "parley.lab.data"
local jpeg = require "parley.lab.jpeg"
local endpoints = require "parley.lab.endpoints"
local users = require "parley.mail.users"
local maildir = require "parley.mail.maildir"
local message = require "parley.mail.message"
local lfs = require "lfs"

local function exists(path) return lfs.attributes(path) ~= nil end

describe("the lab directory", function()
  local dir
  before_each(function() H.fd_snapshot() dir = H.tmpdir() end)
  after_each(function() H.rmdir(dir) H.fd_check() end)

  it("holds the users file, the FTP files, the web root and a Maildir with three messages", function()
    local d = assert(data.prepare(dir .. "/lab"))
    for _, f in ipairs{ "users", "ftp/coffee.txt", "ftp/tea.txt", "ftp/flag.txt", "www/index.html",
                        "www/logo.jpg", "home/strategos/orders.txt" } do
      assert.is_true(exists(dir .. "/lab/" .. f), f)
    end
    assert.matches("^FLAG{", H.read(d.ftp .. "/flag.txt"))
    local u = assert(users.load(d.users))
    assert.is_true(u:check("strategos", d.password))
    assert.equal("ftp_perms=rwdmn", "ftp_perms=" .. u:get("strategos").extra.ftp_perms)
    local msgs = assert(assert(maildir.open(d.mail)):mailbox("strategos"):scan())
    assert.equal(3, #msgs)
    local with_attachment = 0
    for _, m in ipairs(msgs) do
      local parsed = message.parse(assert(H.read(m.path)))
      assert.truthy(parsed:header("message-id"))
      assert.truthy(parsed:header("date"))
      for _, p in ipairs(parsed.parts or {}) do
        if p.filename then with_attachment = with_attachment + 1 end
      end
    end
    assert.equal(1, with_attachment)
  end)

  it("keeps the password, the mail and any change when prepared again", function()
    local first = assert(data.prepare(dir))
    H.write(dir .. "/ftp/tea.txt", "changed\n")
    local store = assert(maildir.open(first.mail))
    assert(store:deliver("strategos", "Subject: kept\r\n\r\nkept\r\n"))
    local second = assert(data.prepare(dir))
    assert.equal(first.password, second.password)
    assert.equal("changed\n", H.read(dir .. "/ftp/tea.txt"))
    assert.equal(4, #assert(store:mailbox("strategos"):scan()))
  end)

  it("makes passwords of three words and three digits that differ from run to run", function()
    local seen = {}
    for _ = 1, 5 do
      local p = data.password()
      assert.matches("^%l+%-%l+%-%l+%-%d%d%d$", p)
      seen[p] = true
    end
    assert.is_true(next(seen, next(seen)) ~= nil, "five passwords, all the same")
  end)
end)

describe("the lab's JPEG writer", function()
  local art = { "ab", "ba", "aa" }
  local palette = { a = { 250, 244, 227 }, b = { 30, 70, 170 } }

  it("writes a baseline JFIF file of 8x8 pixels per character", function()
    local bytes = jpeg.encode(art, palette)
    assert.equal("\xFF\xD8\xFF\xE0", bytes:sub(1, 4))
    assert.equal("JFIF\0", bytes:sub(7, 11))
    assert.equal("\xFF\xD9", bytes:sub(-2))
    local sof = bytes:find("\xFF\xC0", 1, true)
    assert.truthy(sof)
    -- SOF0: length, precision, height, width
    assert.equal(3 * 8, bytes:byte(sof + 5) * 256 + bytes:byte(sof + 6))
    assert.equal(2 * 8, bytes:byte(sof + 7) * 256 + bytes:byte(sof + 8))
  end)

  it("refuses rows of different lengths and characters without a colour", function()
    assert.has_error(function() jpeg.encode({ "ab", "a" }, palette) end, "row 2 has 1 blocks, not 2")
    assert.has_error(function() jpeg.encode({ "ax" }, palette) end, 'no colour for "x"')
    assert.has_error(function() jpeg.encode("ab", palette) end, "rows must be a list of strings")
  end)

  it("decodes, with djpeg, to the colours it was given #interop", function()
    if not H.have("djpeg") then
      pending("djpeg is not installed (apt-get install libjpeg-turbo-progs)")
      return
    end
    local dir = H.tmpdir()
    local path = H.write(dir .. "/art.jpg", jpeg.encode(art, palette))
    local fh = assert(io.popen("djpeg -pnm " .. path .. " 2>&1"))
    local ppm = fh:read("a")
    fh:close()
    H.rmdir(dir)
    local w, h, pixels = ppm:match("^P6%s+(%d+)%s+(%d+)%s+255%s(.*)$")
    assert.equal("16", w)
    assert.equal("24", h)
    local function at(x, y)
      local i = (y * 16 + x) * 3 + 1
      return { pixels:byte(i, i + 2) }
    end
    -- flat blocks decode within a step or two of the colour (YCbCr rounding)
    for _, probe in ipairs{ { 3, 3, palette.a }, { 11, 3, palette.b }, { 3, 11, palette.b }, { 12, 20, palette.a } } do
      local got = at(probe[1], probe[2])
      for c = 1, 3 do
        assert.is_true(math.abs(got[c] - probe[3][c]) <= 2,
          ("pixel %d,%d: %d,%d,%d"):format(probe[1], probe[2], got[1], got[2], got[3]))
      end
    end
  end)
end)

describe("lab.start", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("starts every server on kernel-chosen ports and removes its temporary directory on close", function()
    H.run(function()
      local l = assert(lab.start{ ports = "auto" })
      assert.is_true(l.temp)
      for _, name in ipairs(lab.SERVICES) do
        assert.is_true(l.ports[name] > 0, name)
        assert.matches("^%w+://127%.0%.0%.1:%d+$", l.urls[name])
      end
      assert.equal("smtp://127.0.0.1:" .. l.ports.submission, l.urls.submission)
      local v = l:vars()
      assert.equal(l.password, v.password)
      assert.equal(l.dir .. "/mail/strategos", v.maildir)
      -- a real exchange with each of two servers
      local c = assert(parley.connect("127.0.0.1", l.ports.smtp, { timeout = 5 }))
      assert.matches("^220 lab.example", c:receive())
      c:close()
      local http = require "parley.http"
      local r = assert(http.client.request{ url = v.http .. "/logo.jpg", keepalive = false })
      assert.equal(200, r.status)
      assert.equal("\xFF\xD8", r.body:sub(1, 2))
      local dir = l.dir
      assert.is_true(exists(dir .. "/users"))
      l:close()
      assert.is_false(exists(dir))
    end)
  end)

  it("keeps a directory it was given", function()
    local dir = H.tmpdir()
    H.run(function()
      local l = assert(lab.start{ ports = "auto", dir = dir })
      assert.is_false(l.temp)
      l:close()
    end)
    assert.is_true(exists(dir .. "/users"))
    H.rmdir(dir)
  end)

  it("serves TLS both ways with a certificate it made in the lab directory, kept with the directory", function()
    local dir = H.tmpdir()
    local first, second
    H.run(function()
      local l = assert(lab.start{ ports = "auto", dir = dir })
      first = assert(require("parley.tls").certinfo(l.ca))
      assert.equal(dir .. "/tls/localhost.crt", l.ca)
      for _, name in ipairs(lab.TLS_SERVICES) do
        assert.equal(name .. "://127.0.0.1:" .. l.ports[name], l.urls[name])
      end
      local v = l:vars()
      assert.equal(l.ca, v.ca)
      -- STARTTLS on the plain port, then AUTH: the client verifies the lab's certificate
      local smtp = require "parley.smtp.client"
      local c = assert(smtp.connect("127.0.0.1:" .. l.ports.submission, { tls = "required", ca = l.ca }))
      assert.is_true(c:tlsinfo().verified)
      assert(c:auth(l.user, l.password))
      c:quit()
      -- implicit TLS on the POP3S port
      local pop3 = require "parley.pop3.client"
      local p = assert(pop3.connect("127.0.0.1", l.ports.pop3s, { tls = "implicit", ca = l.ca }))
      assert(p:login(l.user, l.password))
      assert.equal(3, (p:stat()))
      p:quit()
      l:close()
      l = assert(lab.start{ ports = "auto", dir = dir })
      second = assert(require("parley.tls").certinfo(l.ca))
      l:close()
    end)
    assert.equal(first.not_after, second.not_after)
    assert.same({ "localhost", "127.0.0.1", "::1" }, first.san)
    H.rmdir(dir)
  end)

  it("says which port is taken and closes what it had started", function()
    H.run(function()
      local taken = assert(parley.listen("127.0.0.1:0"))
      local offset = taken:port() - lab.PORTS.ftp
      local l, err = lab.start{ port_offset = offset }
      taken:close()
      if l then l:close() end   -- the other ports happened to be free after all? then only fail
      assert.is_nil(l)
      assert.matches("address already in use", err, 1, true)
      assert.matches("--ports auto", err, 1, true)
    end)
  end)

  it("stops what it started and removes its directory when starting raises", function()
    local function labs()
      local t = {}
      for f in lfs.dir("/tmp") do if f:match("^parley%-lab%-") then t[f] = true end end
      return t
    end
    local before = labs()
    local http = require "parley.http.server"
    local new, smtp_port = http.new, nil
    http.new = function() error("http server: broken today", 0) end   -- as a bad edit would
    local ok, err = pcall(H.run, function()
      assert.has_error(function()
        lab.start{ ports = "auto", on_start = function(name, srv)
          if name == "smtp" then smtp_port = srv.port end
        end }
      end, "http server: broken today")
      assert.is_nil(parley.connect("127.0.0.1", smtp_port, { connect_timeout = 2 }))
    end)
    http.new = new
    assert(ok, err)
    for f in pairs(labs()) do assert.is_true(before[f], "/tmp/" .. f .. " was left behind") end
  end)

  it("refuses a host that is not loopback unless told it is public", function()
    H.run(function()
      local l, err = lab.start{ host = "0.0.0.0", ports = "auto" }
      assert.is_nil(l)
      assert.matches("not a loopback address", err, 1, true)
    end)
    assert.is_true(lab.is_loopback("127.0.0.1"))
    assert.is_true(lab.is_loopback("127.1.2.3"))
    assert.is_true(lab.is_loopback("::1"))
    assert.is_true(lab.is_loopback("localhost"))
    assert.is_false(lab.is_loopback("0.0.0.0"))
    assert.is_false(lab.is_loopback("192.0.2.7"))
    assert.is_false(lab.is_loopback("127.example.org"))
    assert.has_error(function() lab.start{ ports = "fixed" } end, 'ports must be "auto"')
  end)
end)

describe("the endpoint table", function()
  it("lists each implicit-TLS port after its service, with commands that trust the lab's certificate", function()
    local fake = { host = "127.0.0.1", user = "strategos", password = "pw-1", domain = "lab.example",
      dir = "/tmp/x", ca = "/tmp/x/tls/localhost.crt", ports = { smtp = 1, submission = 2, smtps = 3,
      pop3 = 4, pop3s = 5, imap = 6, imaps = 7 } }
    local rows = endpoints.rows(fake)
    local names = {}
    for i, r in ipairs(rows) do names[i] = r.name end
    assert.same({ "smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps" }, names)
    assert.same({ "telnet 127.0.0.1 1",
      "openssl s_client -starttls smtp -connect 127.0.0.1:1 -CAfile /tmp/x/tls/localhost.crt" }, rows[1].commands)
    assert.matches("^parley send %-%-server 127%.0%.0%.1:3 %-%-tls%-implicit %-%-ca /tmp/x/tls/localhost%.crt ",
      rows[3].command)
    assert.equal("curl --cacert /tmp/x/tls/localhost.crt -u strategos:pw-1 pop3s://127.0.0.1:5/1", rows[5].command)
    assert.equal("curl --cacert /tmp/x/tls/localhost.crt -u strategos:pw-1 'imaps://127.0.0.1:7/INBOX;MAILINDEX=1'",
      rows[7].command)
  end)

  it("has a row per service with its address and a command naming the real port", function()
    local fake = { host = "127.0.0.1", user = "strategos", password = "pw-1", domain = "lab.example",
      dir = "/tmp/x", temp = true, ports = {} }
    for i, name in ipairs(lab.SERVICES) do fake.ports[name] = 40000 + i end
    local rows = endpoints.rows(fake, "bin/parley")
    assert.equal(#lab.SERVICES, #rows)
    for i, r in ipairs(rows) do
      assert.equal(lab.SERVICES[i], r.name)
      assert.equal("127.0.0.1:" .. (40000 + i), r.address)
      assert.matches(tostring(40000 + i), r.command, 1, true)
    end
    assert.equal("telnet 127.0.0.1 40001", rows[1].command)
    assert.equal("curl ftp://127.0.0.1:40005/", rows[5].command)
    assert.equal("bin/parley telnet 127.0.0.1 40007", rows[7].command)
    local text = endpoints.format(fake, "bin/parley")
    assert.matches("password  pw-1", text, 1, true)
    assert.matches("TLS       /tmp/x/tls/localhost.crt (self-signed", text, 1, true)
    assert.matches("lab dir   /tmp/x (removed when the lab stops)", text, 1, true)
  end)
end)
