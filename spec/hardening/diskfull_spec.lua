-- Disk full (issue 11, Faults): the Maildir and the FTP root on a 1 MiB
-- tmpfs. An SMTP message, an FTP upload and an IMAP APPEND too big for it
-- get a temporary failure (SMTP 452/4xx, FTP 452/4xx, IMAP NO), never a
-- success; nothing partial stays; and the server goes on serving: a small
-- message or file right after is accepted. Needs mount(2) (root); pending
-- when it is not permitted.
local lab = require "hardening.support.lab"
local H = lab.H

local SIZE = "1m"
local BIG = lab.message(9, 3 * 1024 * 1024)

local function mount(dir)
  return os.execute(("mount -t tmpfs -o size=%s parley-hardening %s 2>/dev/null"):format(SIZE, lab.q(dir)))
end

local function with_tmpfs(fn)
  local dir = lab.tree()
  local mnt = dir .. "/full"
  os.execute("mkdir -p " .. lab.q(mnt))
  if not mount(mnt) then
    lab.rmdir(dir)
    return pending("mount -t tmpfs is not permitted here (needs root): disk-full specs skipped")
  end
  local ok, err = pcall(fn, dir, mnt)
  os.execute("umount " .. lab.q(mnt))
  lab.rmdir(dir)
  assert(ok, err)
end

-- the status line of a reply to `cmd` (multi-line replies: the last line)
local function code(c, pat) return c:upto(pat or "^%d%d%d ") end

describe("a full disk", function()
  before_each(lab.H.fd_snapshot)
  after_each(lab.H.fd_check)

  it("gets SMTP 452 and IMAP NO instead of a success, and the mail server keeps serving", function()
    with_tmpfs(function(dir, mnt)
      os.execute("mkdir -p " .. lab.q(mnt .. "/md") .. " && cp " .. lab.q(dir .. "/users") .. " " .. lab.q(mnt))
      local srv = lab.serve_mail(mnt)
      local ok, err = pcall(function()
        local c = lab.connect(srv.ports.smtp)
        code(c)
        c:send("EHLO lab\r\n"); code(c)
        local function deliver(m)
          c:send("MAIL FROM:<a@lab>\r\n"); code(c)
          c:send("RCPT TO:<" .. lab.USER .. "@example.org>\r\n"); code(c)
          c:send("DATA\r\n"); code(c)
          c:send(lab.stuff(m) .. ".\r\n")
          return code(c)
        end
        local r = deliver(BIG)
        assert.truthy(r:match("^452 4%.3%.1 "), "a message bigger than the disk got: " .. r)
        assert.truthy(deliver("Subject: small\r\n\r\nfits\r\n"):match("^250 "))
        c:send("QUIT\r\n"); code(c)
        c:close()
        local md = mnt .. "/md/" .. lab.USER
        assert.same({}, lab.ls(md .. "/tmp"))
        assert.equal(1, #lab.mailbox(md))

        local i = lab.connect(srv.ports.imap)
        i:upto("^%* OK")
        i:send("a LOGIN " .. lab.USER .. " " .. lab.PASS .. "\r\n"); i:upto("^a ")
        i:send("b APPEND INBOX {" .. #BIG .. "+}\r\n" .. BIG .. "\r\n")
        local a = i:upto("^b ")
        assert.truthy(a:match("^b NO"), "APPEND bigger than the disk got: " .. a)
        i:send("c APPEND INBOX {5+}\r\nsmall\r\n")
        assert.truthy(i:upto("^c "):match("^c OK"))
        i:send("d LOGOUT\r\n"); i:upto("^d ")
        i:close()
        assert.same({}, lab.ls(md .. "/tmp"))
        assert.equal(2, #lab.mailbox(md))
      end)
      local out = srv:stop()
      assert(ok, tostring(err) .. "\nserver output:\n" .. out)
    end)
  end)

  it("gets FTP 452 for an upload bigger than the disk, removes the partial file and keeps serving", function()
    with_tmpfs(function(dir, mnt)
      local srv = lab.serve("ftp", { "--listen", "127.0.0.1:0", "--root", mnt, "--users", dir .. "/users",
        "--login-delay", "0" })
      local ok, err = pcall(function()
        local c = lab.connect(srv.port)
        code(c)
        c:send("USER " .. lab.USER .. "\r\n"); code(c)
        c:send("PASS " .. lab.PASS .. "\r\n"); code(c)
        c:send("TYPE I\r\n"); code(c)
        local function stor(name, data)
          c:send("PASV\r\n")
          local p1, p2 = code(c):match("(%d+),(%d+)%)")
          local d = lab.connect(tonumber(p1) * 256 + tonumber(p2))
          c:send("STOR " .. name .. "\r\n")
          assert.truthy(code(c):match("^150 "))
          d.c:send(data)   -- may fail part-way once the server gives up
          d:close()
          return code(c)
        end
        local r = stor("big.bin", H.random_bytes(3 * 1024 * 1024, 5))
        assert.truthy(r:match("^4%d%d "), "an upload bigger than the disk got: " .. r)
        assert.is_nil(H.read(mnt .. "/big.bin"), "the partial upload was left")
        assert.truthy(stor("small.bin", "small"):match("^226 "))
        assert.equal("small", H.read(mnt .. "/small.bin"))
        c:send("QUIT\r\n"); code(c)
        c:close()
      end)
      local out = srv:stop()
      assert(ok, tostring(err) .. "\nserver output:\n" .. out)
    end)
  end)
end)
