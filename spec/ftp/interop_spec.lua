-- Interop: curl, python3 ftplib and lftp against `parley serve ftp` in a
-- child process; the parley client against vsftpd and pyftpdlib.
local parley = require "parley"
local H = require "helper"
local F = require "ftp.support.ftp_helper"
local ftp = require "parley.ftp"
local q = F.quote

local function need(prog)
  if not H.have(prog) then error(prog .. " is not installed (.ci/deps install)", 0) end
end

describe("ftp interop #interop", function()
  local t, child, url, users_file

  setup(function()
    t = F.tree()
    users_file = t.base .. "/users"
    F.write(users_file, "alice:{PLAIN}secret\n")   -- home empty: the root; ftp_perms rwdmn
    child = F.parley_child("--root " .. q(t.root) .. " --anonymous --users " .. q(users_file))
    url = "ftp://127.0.0.1:" .. child.port
  end)

  teardown(function()
    if child then child:stop() end
    F.cleanup(t)
  end)

  it("curl downloads, lists, resumes and uses active mode #interop", function()
    need("curl")
    local out = t.base .. "/curl.bin"
    local _, ok = F.sh(("curl -sS -o %s %s/big.bin"):format(q(out), url))
    assert.is_true(ok)
    assert.equal(H.sha256(t.root .. "/big.bin"), H.sha256(out))
    -- resume: keep the first 1000 bytes, then -C -
    F.sh(("head -c 1000 %s > %s.part && mv %s.part %s"):format(q(out), q(out), q(out), q(out)))
    _, ok = F.sh(("curl -sS -C - -o %s %s/big.bin"):format(q(out), url))
    assert.is_true(ok)
    assert.equal(H.sha256(t.root .. "/big.bin"), H.sha256(out))
    local active = F.sh(("curl -sS -P 127.0.0.1 %s/hello.txt"):format(url))
    assert.equal("hello, world\n", active)
    local list = F.sh(("curl -sS %s/"):format(url))
    assert.matches("hello.txt", list)
    assert.matches("^[d-]", list)
    local names = F.sh(("curl -sS --list-only %s/sub/"):format(url))
    assert.matches("inner.txt", names)
  end)

  it("curl uploads as a user and is refused as anonymous #interop", function()
    need("curl")
    local src = t.base .. "/upload.bin"
    H.random_file(src, 300000)
    local _, ok = F.sh(("curl -sS -T %s ftp://alice:secret@127.0.0.1:%d/up/u.bin"):format(q(src), child.port))
    assert.is_true(ok)
    assert.equal(H.sha256(src), H.sha256(t.root .. "/up/u.bin"))
    local out
    out, ok = F.sh(("curl -sS -T %s %s/up/anon.bin"):format(q(src), url))
    assert.is_falsy(ok)
    assert.matches("550", out)
  end)

  it("python3 ftplib logs in, lists, downloads and uploads #interop", function()
    need("python3")
    local script = ([[
import ftplib, io, hashlib
f = ftplib.FTP()
f.connect("127.0.0.1", %d, timeout=20)
f.login("alice", "secret")
names = f.nlst()
assert "hello.txt" in names, names
lines = []
f.retrlines("LIST", lines.append)
assert any(l.endswith("big.bin") for l in lines), lines
buf = io.BytesIO()
f.retrbinary("RETR big.bin", buf.write)
print(hashlib.sha256(buf.getvalue()).hexdigest())
f.storbinary("STOR up/py.txt", io.BytesIO(b"from python\n"))
print(f.size("up/py.txt"))
facts = dict(f.mlsd())
print(facts["hello.txt"]["type"], facts["hello.txt"]["size"])
text = []
f.retrlines("RETR text.txt", text.append)
print(len(text))
f.quit()
]]):format(child.port)
    local out, ok = F.sh("python3 -c " .. q(script))
    assert.is_true(ok, out)
    local sha, size, ty, sz, nlines = out:match("^(%x+)\n(%d+)\n(%S+) (%d+)\n(%d+)\n$")
    assert.equal(H.sha256(t.root .. "/big.bin"), sha, out)
    assert.equal("12", size)
    assert.equal("file", ty)
    assert.equal("13", sz)
    assert.equal("4", nlines)
    assert.equal("from python\n", F.read(t.root .. "/up/py.txt"))
  end)

  it("python3 ftplib aborts a download with ABOR sent as urgent data #interop", function()
    need("python3")
    -- ftplib's abort() sends "ABOR\r\n" with MSG_OOB: the LF is the urgent
    -- byte, lost to a server without SO_OOBINLINE, which then waits forever
    local script = ([[
import ftplib
f = ftplib.FTP()
f.connect("127.0.0.1", %d, timeout=5)
f.login("alice", "secret")
conn = f.transfercmd("RETR big.bin")
conn.recv(8192)
print(f.abort()[:3])
conn.close()
f.quit()
print("done")
]]):format(child.port)
    local out, ok = F.sh("timeout 30 python3 -c " .. q(script))
    assert.is_true(ok, out)
    local code = out:match("^(%d%d%d)\n")
    assert.truthy(code == "426" or code == "226" or code == "225", out)
    assert.matches("done\n$", out)
  end)

  it("lftp mirrors the tree byte for byte #interop", function()
    need("lftp")
    -- a tree: nested directories, random binary files, an empty file
    local tree = t.root .. "/users"
    os.execute("mkdir -p " .. q(tree .. "/bob/deep/deeper") .. " " .. q(tree .. "/bob/empty"))
    for i = 1, 5 do H.random_file(tree .. "/bob/deep/f" .. i .. ".bin", i * 50000) end
    H.random_file(tree .. "/bob/deep/deeper/last.bin", 123457)
    F.write(tree .. "/bob/zero", "")
    local out, ok
    local dest2 = t.base .. "/mirror2"
    out, ok = F.sh(("lftp -c %s"):format(q(("set net:max-retries 1; set net:timeout 10; " ..
      "open ftp://127.0.0.1:%d; mirror users %s"):format(child.port, dest2))))
    assert.is_true(ok, out)
    local diff
    diff, ok = F.sh(("diff -r %s %s"):format(q(t.root .. "/users"), q(dest2)))
    assert.is_true(ok, diff)
  end)

  -- the parley client against the established servers --------------------

  local function exercise(port, opts)
    local c = assert(ftp.client.connect("127.0.0.1", port, { timeout = 10 }))
    assert(c:login(opts.user, opts.pass))
    local entries = assert(c:list())
    local seen = {}
    for _, e in ipairs(entries) do seen[e.name] = e end
    assert.equal(13, seen["hello.txt"].size)
    assert.equal("dir", seen.sub.type)
    assert.equal("hello, world\n", assert(c:get("hello.txt")))
    assert.equal(1048576, assert(c:size("big.bin")))
    assert.is_number(assert(c:mdtm("hello.txt")))
    local parts = {}
    local n = assert(c:get("big.bin", function(chunk) if chunk then parts[#parts + 1] = chunk end return 1 end))
    assert.equal(1048576, n)
    assert.equal(F.read(t.root .. "/big.bin"), table.concat(parts))
    assert.equal("world\n", assert(c:get("hello.txt", { offset = 7 })))
    assert.is_true(assert(c:cwd("sub")))
    assert.equal("/sub", assert(c:pwd()))
    assert.same({ "evil", "inner.txt" }, (function() local x = assert(c:nlst()) table.sort(x) return x end)())
    if opts.mlsd then
      local m = assert(c:mlsd())
      local names = {}
      for _, e in ipairs(m) do names[e.name] = e.type end
      assert.equal("file", names["inner.txt"])
    end
    if opts.write then
      assert(c:cdup())
      assert.equal(6, assert(c:put("up/p.txt", "parley")))
      assert.equal(6, assert(c:size("up/p.txt")))
      assert(c:rename("up/p.txt", "up/q.txt"))
      assert(c:delete("up/q.txt"))
      assert(c:mkdir("up/newdir"))
      assert(c:rmdir("up/newdir"))
    end
    local ac = assert(ftp.client.connect("127.0.0.1", port, { timeout = 10, active = true }))
    assert(ac:login(opts.user, opts.pass))
    assert.equal("hello, world\n", assert(ac:get("hello.txt")))
    ac:quit()
    c:quit()
  end

  it("the client talks to vsftpd #interop", function()
    if not H.have("vsftpd") and not io.open("/usr/sbin/vsftpd") then error("vsftpd is not installed", 0) end
    local conf = t.base .. "/vsftpd.conf"
    os.execute("mkdir -p /var/run/vsftpd/empty; chmod -R o+rX " .. q(t.base))
    -- a port the kernel just gave out, tried up to three times: a fixed
    -- range collides with other tests' ephemeral ports
    local port, pid, fh
    for _ = 1, 3 do
      H.run(function()
        local probe = assert(parley.listen("127.0.0.1:0"))
        port = probe:port()
        probe:close()
      end)
      F.write(conf, table.concat({
        "listen=YES", "listen_address=127.0.0.1", "listen_port=" .. port, "background=NO",
        "anonymous_enable=YES", "no_anon_password=YES", "anon_root=" .. t.root,
        "local_enable=NO", "write_enable=NO", "pasv_address=127.0.0.1",
        "seccomp_sandbox=NO", "run_as_launching_user=NO",
        "ftp_username=ftp", "secure_chroot_dir=/var/run/vsftpd/empty", "xferlog_enable=NO",
        "port_enable=YES", "connect_from_port_20=NO", "hide_ids=YES", "" }, "\n"))
      fh = assert(io.popen("sh -c " .. q("echo $$; exec timeout 60 /usr/sbin/vsftpd " .. q(conf)) .. " 2>&1", "r"))
      pid = tonumber(fh:read("l"))
      -- ready once it greets: a bare connect can beat vsftpd's set-up
      local greeted
      H.run(function()
        for _ = 1, 50 do
          local s = parley.connect("127.0.0.1", port, { timeout = 2 })
          if s then
            greeted = (s:receive() or ""):match("^220")
            s:close()
            if greeted then break end
          end
          parley.sleep(0.1)
        end
      end, 30)
      if greeted then break end
      os.execute("kill " .. pid .. " 2>/dev/null")
      fh:close()
      fh = nil
    end
    assert(fh, "vsftpd never greeted (three ports tried)")
    local ok, err = pcall(H.run, function() exercise(port, { user = "anonymous" }) end, 30)
    os.execute("kill " .. pid .. " 2>/dev/null")
    local said = fh:read("a")
    fh:close()
    if not ok then error(tostring(err) .. "\nvsftpd said: " .. tostring(said), 0) end
  end)

  it("the client talks to pyftpdlib #interop", function()
    local script = t.base .. "/pyftpd.py"
    F.write(script, ([[
import sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer
a = DummyAuthorizer()
a.add_user("u", "p", sys.argv[1], perm="elradfmw")
FTPHandler.authorizer = a
FTPHandler.passive_ports = range(47000, 47100)
s = FTPServer(("127.0.0.1", 0), FTPHandler)
print("port %d" % s.address[1], flush=True)
s.serve_forever()
]]))
    local ok0 = os.execute("/usr/bin/python3 -c 'import pyftpdlib' 2>/dev/null")
    if not ok0 then error("pyftpdlib is not installed (python3-pyftpdlib)", 0) end
    local c = F.spawn("/usr/bin/python3 " .. q(script) .. " " .. q(t.root), "^port (%d+)")
    local ok, err = pcall(H.run, function()
      exercise(c.port, { user = "u", pass = "p", mlsd = true, write = true })
    end, 30)
    c:stop()
    if not ok then error(err, 0) end
  end)
end)
