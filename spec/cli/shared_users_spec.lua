-- One users file for every parley server (issue 9's lab: `strategos` logs
-- in everywhere with one password). The same Dovecot passwd-file goes to
-- `parley serve ftp`, `telnet`, `smtp`, `pop3` and `imap`, each a child
-- process; parley's own clients log in to all five.
local H = require "helper"
local child = require "support.child"
local ftp = require "parley.ftp"
local telnet = require "parley.telnet"
local smtp = require "parley.smtp"
local pop3 = require "parley.pop3"
local imap = require "parley.imap"
local users = require "parley.mail.users"

local write, read = H.write, H.read

describe("one shared users file", function()
  local dir, root, servers

  setup(function()
    dir = H.tmpdir()
    root = dir .. "/ftp"
    os.execute("mkdir -p " .. child.quote(root .. "/pub") .. " " .. child.quote(root .. "/strategos"))
    write(root .. "/pub/coffee.txt", "coffee\n")
    local path = dir .. "/users"
    -- name:password:uid:gid:gecos:home:shell:extra (Dovecot passwd-file)
    write(path, "# one passwd-file for every protocol\n" ..
      "strategos:{SHA512-CRYPT}" .. assert(users.hash("hoplite", "$6$")) ..
        ":1000:1000:Strategos:strategos::ftp_perms=rwdmn\n" ..
      "guest:{PLAIN}guestpw:1001:1001::pub::ftp_perms=r\n")
    servers = {
      ftp = child.serve("ftp", { "--listen", "127.0.0.1:0", "--root", root, "--users", path,
                                 "--login-delay", "0.05" }),
      telnet = child.serve("telnet", { "--listen", "127.0.0.1:0", "--users", path, "--app", "menu",
                                       "--login-delay", "0.05" }),
      smtp = child.serve("smtp", { "--listen", "127.0.0.1:0", "--maildir", dir .. "/md",
                                   "--domain", "example.org", "--users", path, "--auth-delay", "0" }),
      pop3 = child.serve("pop3", { "--listen", "127.0.0.1:0", "--maildir", dir .. "/md",
                                   "--users", path, "--auth-delay", "0" }),
      imap = child.serve("imap", { "--listen", "127.0.0.1:0", "--maildir", dir .. "/md",
                                   "--users", path, "--auth-delay", "0" }),
    }
  end)

  teardown(function()
    for _, s in pairs(servers or {}) do s:stop() end
    H.rmdir(dir)
  end)

  it("lets strategos log in to FTP, Telnet, SMTP AUTH, POP3 and IMAP with one password", function()
    H.run(function()
      local f = assert(ftp.client.connect("127.0.0.1", servers.ftp.port, { timeout = 10 }))
      assert(f:login("strategos", "hoplite"))
      assert.equal(6, assert(f:put("report.txt", "ready\n")))   -- ftp_perms w
      assert.equal("/", (f:pwd()))
      f:quit()

      local t = assert(telnet.client.connect("127.0.0.1", servers.telnet.port, { timeout = 10 }))
      assert.truthy(t:login("strategos", "hoplite", { prompt = "parley telnet menu" }))
      t:send("1")
      assert.truthy(t:expect("user:%s+strategos"))
      t:close()

      local s = assert(smtp.client.connect("127.0.0.1:" .. servers.smtp.port, { timeouts = { greeting = 10, command = 10 } }))
      local r = assert(s:auth("strategos", "hoplite", "PLAIN"))
      assert.equal(235, r.code)
      assert(s:send{ from = "strategos@example.org", to = { "strategos@example.org" },
                     message = "Subject: orders\r\n\r\nhold the pass\r\n" })
      s:quit()

      -- the message SMTP stored is in the Maildir POP3 and IMAP read
      local p = assert(pop3.client.connect("127.0.0.1", servers.pop3.port, { timeout = 10 }))
      assert(p:login("strategos", "hoplite"))
      assert.equal(1, (assert(p:stat())))
      assert(p:quit())

      local i = assert(imap.client.connect("127.0.0.1:" .. servers.imap.port, { timeout = 10 }))
      assert(i:login("strategos", "hoplite"))
      local sel = assert(i:select("INBOX"))
      assert.equal(1, sel.exists)
      assert(i:logout())
    end, 30)
    -- the FTP root is the home field, under --root
    assert.equal("ready\n", read(root .. "/strategos/report.txt"))
  end)

  it("refuses a wrong password everywhere and keeps guest to ftp_perms=r", function()
    H.run(function()
      local f = assert(ftp.client.connect("127.0.0.1", servers.ftp.port, { timeout = 10 }))
      local ok, _, reply = f:login("strategos", "guestpw")
      assert.is_nil(ok)
      assert.equal(530, reply and reply.code)
      f:close()
      local g = assert(ftp.client.connect("127.0.0.1", servers.ftp.port, { timeout = 10 }))
      assert(g:login("guest", "guestpw"))
      assert.equal("coffee\n", assert(g:get("coffee.txt")))
      local _, perr, preply = g:put("x.txt", "no")
      assert.equal(550, preply and preply.code, perr)
      g:quit()

      local t = assert(telnet.client.connect("127.0.0.1", servers.telnet.port, { timeout = 10 }))
      local tok, terr = t:login("strategos", "guestpw", { prompt = "parley telnet menu" })
      assert.is_nil(tok)
      assert.equal("login failed", terr)
      t:close()

      local s = assert(smtp.client.connect("127.0.0.1:" .. servers.smtp.port, { timeouts = { greeting = 10, command = 10 } }))
      local sok, _, sreply = s:auth("strategos", "guestpw", "PLAIN")
      assert.is_nil(sok)
      assert.equal(535, sreply and sreply.code)
      s:quit()

      local p = assert(pop3.client.connect("127.0.0.1", servers.pop3.port, { timeout = 10 }))
      local pok, perr2 = p:login("strategos", "guestpw")
      assert.is_nil(pok)
      assert.truthy(perr2)
      p:close()

      local i = assert(imap.client.connect("127.0.0.1:" .. servers.imap.port, { timeout = 10 }))
      local iok, ierr, ireply = i:login("strategos", "guestpw")
      assert.is_nil(iok, ierr)
      assert.equal("NO", ireply and ireply.type, ierr)
      i:close_connection()
    end, 30)
    assert.is_nil(read(root .. "/pub/x.txt"))
  end)
end)
