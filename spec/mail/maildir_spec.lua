-- The Maildir store: crash-safe delivery, unique names, readers, flags,
-- UIDs, Maildir++ folders, crash leftovers, disk full, scan speed.
local parley = require "parley"
local core = require "parley.core"
local H = require "helper"
local T = require "mail.support.tmpdir"
local maildir = require "parley.mail.maildir"
local fs = core.fs

local function ls(dir)
  local t = fs.listdir(dir) or {}
  table.sort(t)
  return t
end

local LUA_PATHS = string.format("package.path=%q..package.path; package.cpath=%q..package.cpath\n",
  H.root .. "/lua/?.lua;" .. H.root .. "/lua/?/init.lua;", H.root .. "/build/?.so;")

-- Runs a Lua script in a child lua5.4 (with parley on its paths); returns
-- the popen handle (read its output, then close it).
local nchild = 0
local function child(code)
  nchild = nchild + 1
  local path = T.new("child") .. "/child" .. nchild .. ".lua"
  T.write(path, LUA_PATHS .. code)
  return io.popen("timeout 60 lua5.4 " .. path .. " 2>&1")
end

describe("maildir", function()
  local root, store
  before_each(function()
    H.fd_snapshot()
    root = T.new("md")
    store = assert(maildir.open(root .. "/mail"))
  end)
  after_each(function()
    store = nil
    collectgarbage(); collectgarbage()
    T.cleanup()
    H.fd_check()
  end)

  describe("delivery", function()
    it("writes into tmp/ and moves the message into new/ only on commit", function()
      local d = assert(store:delivery("alice"))
      assert.is_true(d:write("Subject: hi\r\n\r\n"))
      assert.is_true(d:write("body\r\n"))
      assert.equal(21, d:size())
      assert.equal(1, #ls(root .. "/mail/alice/tmp"))
      assert.same({}, ls(root .. "/mail/alice/new"))
      local name, path = assert(d:commit())
      assert.same({}, ls(root .. "/mail/alice/tmp"))
      assert.same({ name }, ls(root .. "/mail/alice/new"))
      assert.equal(root .. "/mail/alice/new/" .. name, path)
      assert.equal("Subject: hi\r\n\r\nbody\r\n", T.read(path))
    end)

    it("names messages <sec>.M<usec>P<pid>Q<n>.<host>,S=<size>,W=<crlf size>", function()
      local name = assert(store:deliver("alice", "a\nb\r\nc\n"))
      local sec, usec, pid, q, host, s, w =
        name:match("^(%d+)%.M(%d+)P(%d+)Q(%d+)%.([^,]+),S=(%d+),W=(%d+)$")
      assert.truthy(sec, name)
      assert.is_true(math.abs(tonumber(sec) - os.time()) <= 2)
      assert.is_true(tonumber(usec) < 1000000)
      assert.equal(fs.getpid(), tonumber(pid))
      assert.is_true(tonumber(q) >= 1)
      assert.is_false(host:find("[/:]") ~= nil)
      assert.equal(7, tonumber(s))
      assert.equal(9, tonumber(w))
    end)

    it("creates the Maildir with cur/ new/ tmp/ at mode 0700", function()
      assert(store:deliver("bob", "x"))
      for _, sub in ipairs { "", "/cur", "/new", "/tmp" } do
        local st = fs.stat(root .. "/mail/bob" .. sub)
        assert.equal("directory", st.type)
        assert.equal(tonumber("700", 8), st.mode)
      end
      local msg = ls(root .. "/mail/bob/new")[1]
      assert.equal(tonumber("600", 8), fs.stat(root .. "/mail/bob/new/" .. msg).mode)
    end)

    it("stores a message with flags straight into cur/ with sorted flags", function()
      local name = assert(store:deliver("alice", "x", nil, "SR"))
      assert.same({ name .. ":2,RS" }, ls(root .. "/mail/alice/cur"))
      assert.same({}, ls(root .. "/mail/alice/new"))
    end)

    it("removes the tmp file on abort, on <close> and when collected", function()
      local d = assert(store:delivery("alice"))
      d:write("x")
      assert.is_true(d:abort())
      assert.is_true(d:abort())
      do
        local d2 <close> = assert(store:delivery("alice"))
        d2:write("y")
      end
      store:delivery("alice"):write("z")
      collectgarbage(); collectgarbage()
      assert.same({}, ls(root .. "/mail/alice/tmp"))
      assert.same({}, ls(root .. "/mail/alice/new"))
    end)

    it("refuses to be used after commit", function()
      local d = assert(store:delivery("alice"))
      d:write("x")
      assert(d:commit())
      assert.has_error(function() d:write("y") end)
      assert.has_error(function() d:commit() end)
      assert.has_error(function() d:commit("Q1") end)
    end)

    it("takes data from an ltn12-style sink and from its descriptor", function()
      local d = assert(store:delivery("alice"))
      local sink = d:sink()
      assert.equal(1, sink("one\n"))
      assert.equal(1, sink(nil))
      local name = assert(d:commit())
      assert.matches(",S=4,W=5$", name)
      d = assert(store:delivery("alice"))
      d:write("head\n")
      local fd = assert(d:fd())
      local f = io.open("/proc/self/fd/" .. fd, "a")     -- a writer that bypasses d:write
      f:write("tail\n"); f:close()
      name = assert(d:commit())
      assert.matches(",S=10$", name)                      -- size from the file, no W=
      assert.equal("head\ntail\n", T.read(root .. "/mail/alice/new/" .. name))
    end)

    it("rejects user names that would leave the store", function()
      for _, bad in ipairs { "", "../etc", "a/b", ".hidden", "x\0y", "tab\tname" } do
        local d, err = store:delivery(bad)
        assert.is_nil(d)
        assert.equal("invalid user name", err)
      end
      assert.has_error(function() store:delivery(42) end)
      assert.has_error(function() store:deliver("alice", 42) end)
      assert.same({}, ls(root .. "/mail"))
    end)

    it("accepts user@domain names", function()
      assert(store:deliver("carol@example.org", "x"))
      assert.equal(1, #ls(root .. "/mail/carol@example.org/new"))
    end)

    it("writes without fsync when told to (fsync = false)", function()
      local fast = assert(maildir.open(root .. "/mail", { fsync = false }))
      assert(fast:deliver("alice", "quick"))
      assert.equal(1, #ls(root .. "/mail/alice/new"))
    end)
  end)

  describe("concurrent deliveries", function()
    it("gives 300 interleaved deliveries from parley tasks 300 distinct files", function()
      local names = {}
      H.run(function()
        local tasks = {}
        for i = 1, 300 do
          tasks[i] = H.go(function()
            local d = assert(store:delivery("alice"))
            for part = 1, 3 do
              assert(d:write(string.format("message %d part %d\n", i, part)))
              parley.sleep((i * 7 + part) % 5 / 1000)
            end
            names[i] = assert(d:commit())
          end)
        end
        H.join_all(tasks, 30)
      end, 40)
      local seen = {}
      for i = 1, 300 do
        assert.is_nil(seen[names[i]])
        seen[names[i]] = true
        local want = string.format("message %d part 1\nmessage %d part 2\nmessage %d part 3\n", i, i, i)
        assert.equal(want, T.read(root .. "/mail/alice/new/" .. names[i]))
      end
      assert.equal(300, #ls(root .. "/mail/alice/new"))
      assert.same({}, ls(root .. "/mail/alice/tmp"))
    end)

    it("keeps names unique across processes delivering at once", function()
      local procs = {}
      for p = 1, 3 do
        procs[p] = child(string.format([[
          local s = require("parley.mail.maildir").open(%q)
          for i = 1, 100 do assert(s:deliver("alice", "proc %d msg " .. i)) end
          print("done")]], root .. "/mail", p))
      end
      for p = 1, 3 do
        assert.equal("done\n", procs[p]:read("a"))
        procs[p]:close()
      end
      local files = ls(root .. "/mail/alice/new")
      assert.equal(300, #files)
      local bodies, pids = {}, {}
      for _, f in ipairs(files) do
        bodies[T.read(root .. "/mail/alice/new/" .. f)] = true
        pids[f:match("P(%d+)Q")] = true
      end
      local n = 0
      for _ in pairs(bodies) do n = n + 1 end
      assert.equal(300, n)
      n = 0
      for _ in pairs(pids) do n = n + 1 end
      assert.equal(3, n)
    end)
  end)

  describe("disk full", function()
    local mnt, mounted
    before_each(function()
      mnt = root .. "/small"
      assert(fs.mkdir(mnt))
      local _, ok = T.sh("mount -t tmpfs -o size=1m tmpfs '" .. mnt .. "' 2>&1")
      mounted = ok
    end)
    after_each(function()
      if mounted then os.execute("umount '" .. mnt .. "'") end
    end)

    it("returns 'no space left on device' and leaves nothing in tmp/ or new/", function()
      if not mounted then
        pending("cannot mount a 1 MiB tmpfs here (needs root): disk-full spec skipped")
        return
      end
      local small = assert(maildir.open(mnt .. "/mail"))
      -- one big write fails at once
      local name, err = small:deliver("alice", string.rep("x", 2 * 1024 * 1024))
      assert.is_nil(name)
      assert.equal("no space left on device", err)
      assert.same({}, ls(mnt .. "/mail/alice/tmp"))
      assert.same({}, ls(mnt .. "/mail/alice/new"))
      -- small buffered writes fail at a later write or at commit
      local d = assert(small:delivery("alice"))
      local ok, werr
      for _ = 1, 2000 do
        ok, werr = d:write(string.rep("y", 1000) .. "\n")
        if not ok then break end
      end
      if ok then ok, werr = d:commit() end
      assert.is_nil(ok)
      assert.equal("no space left on device", werr)
      assert.same({}, ls(mnt .. "/mail/alice/tmp"))
      assert.same({}, ls(mnt .. "/mail/alice/new"))
      -- and the store works again once there is room
      assert(small:deliver("alice", "fits"))
      assert.equal(1, #ls(mnt .. "/mail/alice/new"))
    end)
  end)

  describe("crash leftovers", function()
    it("clean_tmp removes old files and files of dead writers, and keeps the rest", function()
      local tmp = root .. "/mail/alice/tmp"
      local live = assert(store:delivery("alice"))          -- ours, in flight
      live:write("in flight")
      local host = fs.gethostname()
      T.write(tmp .. "/old-file", "stale")
      fs.utime(tmp .. "/old-file", os.time() - 3 * 86400, os.time() - 3 * 86400)
      T.write(tmp .. "/fresh-file", "someone else's")
      T.write(tmp .. "/1.M1P4194303Q1." .. host, "dead writer here")
      T.write(tmp .. "/1.M1P1Q1." .. host, "writer alive (pid 1)")
      T.write(tmp .. "/1.M1P4194303Q1.otherhost", "writer on another host")
      assert.equal(2, store:clean_tmp())
      assert.same({ "1.M1P1Q1." .. host, "1.M1P4194303Q1.otherhost", live.base, "fresh-file" },
                  ls(tmp))
      assert.equal(3, store:clean_tmp(0))                   -- all but the live one
      assert.same({ live.base }, ls(tmp))
      assert(live:commit())
    end)

    it("cleans what a writer killed with SIGKILL left in tmp/, and nothing reached new/", function()
      local p = child(string.format([[
        local fs = require("parley.core").fs
        local s = require("parley.mail.maildir").open(%q)
        local d = s:delivery("alice")
        d:write(string.rep("partial ", 10000))
        d:fd()   -- flushed: the bytes are in the file
        os.execute("kill -9 " .. fs.getpid())]], root .. "/mail"))
      p:read("a"); p:close()
      assert.equal(1, #ls(root .. "/mail/alice/tmp"))
      assert.same({}, ls(root .. "/mail/alice/new"))
      assert.same({}, store:mailbox("alice"):scan())
      assert.equal(1, store:clean_tmp())
      assert.same({}, ls(root .. "/mail/alice/tmp"))
    end)

    it("cleans the tmp/ of folders too, and only one user's when asked", function()
      assert(store:create_folder("alice", "Sent"))
      assert(store:deliver("bob", "x"))
      T.write(root .. "/mail/alice/.Sent/tmp/junk", "")
      T.write(root .. "/mail/bob/tmp/junk", "")
      assert.equal(1, store:clean_tmp(0, "alice"))
      assert.equal(1, store:clean_tmp(0))
    end)
  end)

  describe("flags", function()
    it("sorts flags in ASCII order and drops repeats", function()
      assert.equal("DFPRST", maildir.flags("TSRPFD"))
      assert.equal("FSab", maildir.flags("bSaFSb"))
      assert.equal("", maildir.flags(""))
      local f, err = maildir.flags("S,1")
      assert.is_nil(f); assert.equal("invalid flags", err)
      assert.has_error(function() maildir.flags(nil) end)
    end)

    it("round-trips flags through set_flags and scan, moving new/ to cur/", function()
      local name = assert(store:deliver("alice", "hello"))
      local mb = store:mailbox("alice")
      local msgs = mb:scan()
      assert.equal(1, #msgs)
      assert.is_true(msgs[1].new)
      assert.equal("", msgs[1].flags)
      for _, fl in ipairs { "S", "RS", "FRST", "", "DT" } do
        assert.is_true(mb:set_flags(name, fl:reverse()))
        msgs = mb:scan()
        assert.equal(name, msgs[1].name)
        assert.equal(fl, msgs[1].flags)
        assert.is_false(msgs[1].new)
        assert.same({ name .. ":2," .. fl }, ls(root .. "/mail/alice/cur"))
        assert.same({}, ls(root .. "/mail/alice/new"))
      end
      assert.equal("hello", mb:open(name):read("a"))
    end)

    it("finds a message whose flags another process changed", function()
      local name = assert(store:deliver("alice", "content"))
      local a, b = store:mailbox("alice"), store:mailbox("alice")
      a:scan(); b:scan()
      assert.is_true(b:set_flags(name, "S"))
      assert.is_true(a:set_flags(name, "FS"))         -- a's index was stale
      local fh = assert(b:open(name))                 -- and now b's is
      assert.equal("content", fh:read("a")); fh:close()
      assert.equal(root .. "/mail/alice/cur/" .. name .. ":2,FS", a:path(name))
    end)

    it("raises on bad flags and says so for an unknown message", function()
      local mb = store:mailbox("alice")
      assert.has_error(function() mb:set_flags("x", "S!") end)
      local ok, err = mb:set_flags("nonexistent", "S")
      assert.is_nil(ok); assert.equal("no such message", err)
    end)
  end)

  describe("reading", function()
    it("scans in delivery order with sizes from the names", function()
      local names = {}
      for i = 1, 12 do names[i] = assert(store:deliver("alice", string.rep("m", i), nil, i % 3 == 0 and "S" or nil)) end
      local msgs = assert(store:mailbox("alice"):scan())
      assert.equal(12, #msgs)
      for i, m in ipairs(msgs) do
        assert.equal(names[i], m.name)
        assert.equal(i, m.size)
        assert.equal(i, m.vsize)
        assert.equal(i % 3 == 0 and "S" or "", m.flags)
        assert.equal(i % 3 ~= 0, m.new)
        assert.is_true(math.abs(m.mtime - os.time()) <= 2)
        assert.equal(m.path, root .. "/mail/alice/" .. (m.new and "new/" or "cur/") .. m.file)
      end
    end)

    it("reads Maildirs written by others: names without sizes, dot files skipped", function()
      assert(store:deliver("alice", "ours"))
      local cur = root .. "/mail/alice/cur/"
      T.write(cur .. "1000000000.12345_1.otherhost:2,S", "qmail style, older")
      T.write(cur .. ".dotfile", "not a message")
      fs.utime(cur .. "1000000000.12345_1.otherhost:2,S", 1000000000, 1000000000)
      local msgs = assert(store:mailbox("alice"):scan())
      assert.equal(2, #msgs)
      assert.equal("1000000000.12345_1.otherhost", msgs[1].name)
      assert.equal(#"qmail style, older", msgs[1].size)
      assert.is_nil(msgs[1].vsize)
      assert.equal("S", msgs[1].flags)
      assert.equal(1000000000, msgs[1].mtime)
    end)

    it("reads a missing Maildir as empty", function()
      local mb = assert(store:mailbox("nobody"))
      assert.same({}, mb:scan())
      assert.is_false(mb:exists())
      assert.is_nil(fs.stat(root .. "/mail/nobody"))
    end)

    it("removes messages", function()
      local a = assert(store:deliver("alice", "a"))
      local b = assert(store:deliver("alice", "b", nil, "S"))
      local mb = store:mailbox("alice")
      assert.is_true(mb:remove(a))
      assert.is_true(mb:remove(b))
      assert.same({}, mb:scan())
      local ok, err = mb:remove(a)
      assert.is_nil(ok); assert.equal("no such message", err)
      local fh, oerr = mb:open(a)
      assert.is_nil(fh); assert.equal("no such message", oerr)
    end)
  end)

  describe("uids", function()
    it("assigns UIDs in delivery order and keeps them across flag changes and sessions", function()
      local names = {}
      for i = 1, 5 do names[i] = assert(store:deliver("alice", "m" .. i)) end
      local mb = store:mailbox("alice")
      local map, validity, nextuid = assert(mb:uids())
      for i = 1, 5 do assert.equal(i, map[names[i]]) end
      assert.equal(6, nextuid)
      assert.is_true(validity > 1700000000)
      mb:set_flags(names[2], "S")
      mb:remove(names[3])
      names[6] = assert(store:deliver("alice", "m6"))
      local again = store:mailbox("alice")                -- a new session
      local map2, validity2, next2 = assert(again:uids())
      assert.equal(validity, validity2)
      assert.equal(2, map2[names[2]])
      assert.is_nil(map2[names[3]])
      assert.equal(6, map2[names[6]])
      assert.equal(7, next2)
      -- an expunged UID is never handed out again
      again:remove(names[6])
      names[7] = assert(store:deliver("alice", "m7"))
      local map3, _, next3 = assert(again:uids())
      assert.equal(7, map3[names[7]])
      assert.equal(8, next3)
    end)

    it("writes a dovecot-uidlist version 3 file atomically", function()
      local n1 = assert(store:deliver("alice", "a"))
      local n2 = assert(store:deliver("alice", "b", nil, "S"))
      local _, validity = assert(store:mailbox("alice"):uids())
      local text = T.read(root .. "/mail/alice/parley-uidlist")
      assert.equal(string.format("3 V%d N3\n1 :%s\n2 :%s\n", validity, n1, n2), text)
      for _, f in ipairs(ls(root .. "/mail/alice")) do
        assert.is_nil(f:match("%.tmp$"))
      end
    end)

    it("numbers a scan result in place", function()
      for i = 1, 3 do assert(store:deliver("alice", "m" .. i)) end
      local mb = store:mailbox("alice")
      local msgs = mb:scan()
      assert(mb:uids(msgs))
      assert.same({ 1, 2, 3 }, { msgs[1].uid, msgs[2].uid, msgs[3].uid })
    end)

    it("returns the scan it made, in delivery order, each message with its UID, flags and size", function()
      local names = {}
      for i = 1, 4 do names[i] = assert(store:deliver("alice", "msg " .. i, nil, i == 2 and "S" or nil)) end
      local mb = store:mailbox("alice")
      assert(mb:uids())                               -- UIDs 1..4 handed out
      assert(mb:remove(names[3]))
      local map, _, nextuid, msgs = assert(mb:uids())
      assert.equal(5, nextuid)
      assert.equal(3, #msgs)
      assert.same({ names[1], names[2], names[4] }, { msgs[1].name, msgs[2].name, msgs[3].name })
      local seen = 0
      for i, m in ipairs(msgs) do
        assert.equal(map[m.name], m.uid)
        assert.equal(#("msg " .. (i == 3 and 4 or i)), m.size)
        seen = seen + 1
      end
      local count = 0
      for _ in pairs(map) do count = count + 1 end
      assert.equal(seen, count)                       -- the map and the list agree
      assert.same({ 1, 2, 4 }, { msgs[1].uid, msgs[2].uid, msgs[3].uid })
      assert.truthy(msgs[2].flags:find("S", 1, true))
      -- an empty mailbox: an empty list, not nil
      local _, _, _, none = assert(store:mailbox("bob"):uids())
      assert.same({}, none)
    end)

    it("agrees with other processes assigning UIDs at the same time", function()
      for i = 1, 20 do assert(store:deliver("alice", "pre " .. i)) end
      local procs = {}
      for p = 1, 2 do
        procs[p] = child(string.format([[
          local s = require("parley.mail.maildir").open(%q)
          for i = 1, 15 do
            assert(s:deliver("alice", "proc %d msg " .. i))
            assert(s:mailbox("alice"):uids())
          end
          print("done")]], root .. "/mail", p))
      end
      for p = 1, 2 do
        assert.equal("done\n", procs[p]:read("a")); procs[p]:close()
      end
      local map, _, nextuid = assert(store:mailbox("alice"):uids())
      local used, n = {}, 0
      for _, uid in pairs(map) do
        assert.is_nil(used[uid]); used[uid] = true; n = n + 1
      end
      assert.equal(50, n)
      assert.equal(51, nextuid)
    end)
  end)

  describe("folders", function()
    it("creates Maildir++ folders with '.' levels and modified UTF-7 names", function()
      assert.is_true(store:create_folder("alice", "Sent"))
      assert.is_true(store:create_folder("alice", "Archive.2024"))
      assert.is_true(store:create_folder("alice", "Entwürfe"))
      assert.is_true(store:create_folder("alice", "R&D"))
      assert.same({ ".Archive.2024", ".Entw&APw-rfe", ".R&-D", ".Sent", "cur", "new", "tmp" },
                  ls(root .. "/mail/alice"))
      assert.truthy(fs.stat(root .. "/mail/alice/.Sent/maildirfolder"))
      assert.same({ "Archive.2024", "Entwürfe", "R&D", "Sent" }, store:folders("alice"))
      local ok, err = store:create_folder("alice", "Sent")
      assert.is_nil(ok); assert.equal("folder exists", err)
    end)

    it("delivers into a folder and reads it back", function()
      local name = assert(store:deliver("alice", "draft", "Entwürfe", "D"))
      local msgs = store:mailbox("alice", "Entwürfe"):scan()
      assert.equal(name, msgs[1].name)
      assert.equal("D", msgs[1].flags)
      assert.same({}, store:mailbox("alice"):scan())
      assert.same({}, store:mailbox("alice", "INBOX"):scan())
    end)

    it("rejects folder names Maildir++ cannot hold", function()
      for _, bad in ipairs { ".x", "x.", "a..b", "a/b", "nl\nx", "\255bad utf8" } do
        local ok, err = store:create_folder("alice", bad)
        assert.is_nil(ok)
        assert.matches("^invalid folder name", err)
      end
    end)

    it("renames a folder with its subfolders and refuses to overwrite", function()
      assert(store:create_folder("alice", "Work"))
      assert(store:create_folder("alice", "Work.2024"))
      assert(store:create_folder("alice", "Home"))
      assert(store:deliver("alice", "w", "Work.2024"))
      assert.is_true(store:rename_folder("alice", "Work", "Old"))
      assert.same({ "Home", "Old", "Old.2024" }, store:folders("alice"))
      assert.equal(1, #store:mailbox("alice", "Old.2024"):scan())
      local ok, err = store:rename_folder("alice", "Old", "Home")
      assert.is_nil(ok); assert.equal("folder exists", err)
      ok, err = store:rename_folder("alice", "Nope", "Other")
      assert.is_nil(ok); assert.equal("no such folder", err)
      ok, err = store:rename_folder("alice", "INBOX", "Other")
      assert.is_nil(ok); assert.equal("cannot rename the inbox", err)
    end)

    it("deletes a folder and its messages but not its subfolders", function()
      assert(store:deliver("alice", "x", "Trash"))
      assert(store:create_folder("alice", "Trash.Old"))
      assert.is_true(store:delete_folder("alice", "Trash"))
      assert.same({ "Trash.Old" }, store:folders("alice"))
      assert.same({ ".Trash.Old", "cur", "new", "tmp" }, ls(root .. "/mail/alice"))
      local ok, err = store:delete_folder("alice", "Trash")
      assert.is_nil(ok); assert.equal("no such folder", err)
      ok, err = store:delete_folder("alice", "INBOX")
      assert.is_nil(ok); assert.equal("cannot delete the inbox", err)
    end)
  end)

  describe("scale", function()
    it("scans 50,000 messages quickly (one listdir per directory, no stat)", function()
      local new, cur = root .. "/mail/big/new/", root .. "/mail/big/cur/"
      assert(store:deliver("big", "seed"))
      local t = os.time()
      for i = 1, 50000 do
        local name = string.format("%d.M%dP%dQ%d.host,S=%d,W=%d", t - 50000 + i, i % 1000000, 4242, i, i, i)
        local f = assert(fs.open((i % 2 == 0) and (cur .. name .. ":2,S") or (new .. name)))
        f:close()
      end
      local mb = store:mailbox("big")
      local t0 = parley.now()
      local msgs = assert(mb:scan())
      local ms = (parley.now() - t0) * 1000
      assert.equal(50001, #msgs)
      for i = 1, 50000, 997 do assert.equal(i, msgs[i].size) end
      t0 = parley.now()
      assert(mb:uids())
      local ums = (parley.now() - t0) * 1000
      t0 = parley.now()
      assert(mb:uids())
      local ums2 = (parley.now() - t0) * 1000
      io.stderr:write(string.format("\n[maildir] scan of 50,001 messages: %.0f ms; "
        .. "uids() first %.0f ms, unchanged %.0f ms\n", ms, ums, ums2))
      assert.is_true(ms < 1500, "scan took " .. ms .. " ms")
    end)
  end)

  describe("keywords (dovecot-keywords)", function()
    local mb
    before_each(function()
      assert(store:deliver("alice", "x"))
      mb = assert(store:mailbox("alice"))
    end)
    local function kwfile() return T.read(mb.dir .. "/" .. maildir.KEYWORDS) end

    it("gives each new name the next free letter and reads Dovecot's file as Dovecot does", function()
      T.write(mb.dir .. "/" .. maildir.KEYWORDS, "0 Junk\nnot a line\n2 $Label1\n30 Far\n")
      assert.equal("abc", mb:keyword_letters({ "Fresh", "junk", "$LABEL1" }))
      assert.equal("0 Junk\n1 Fresh\n2 $Label1\n", kwfile())
      local kw = mb:keywords()
      assert.equal(3, kw.count)
      assert.equal("Fresh", kw.names[2])
      assert.equal(kw, mb:keywords())                    -- unchanged: the same table
      assert.equal("", mb:keyword_letters({ "unknown" }, true))
      assert.equal("0 Junk\n1 Fresh\n2 $Label1\n", kwfile())
      assert.has_error(function() mb:keyword_letters("Junk") end)
    end)

    it("makes the file's mtime grow with every write (Dovecot re-reads it by mtime)", function()
      local path = mb.dir .. "/" .. maildir.KEYWORDS
      assert(mb:keyword_letters({ "a1" }))
      local m1 = fs.stat(path).mtime // 1
      assert(mb:keyword_letters({ "a2" }))
      local m2 = fs.stat(path).mtime // 1
      assert(mb:keyword_letters({ "a3" }))
      assert.is_true(m2 > m1 and fs.stat(path).mtime // 1 > m2)
    end)

    it("waits for Dovecot's dot-lock, takes over a stale one, and refuses the 27th name", function()
      local lock = mb.dir .. "/" .. maildir.KEYWORDS .. ".lock"
      T.write(lock, "")
      local short = assert(maildir.open(root .. "/mail", { lock_timeout = 0 }))
      local mb2 = assert(short:mailbox("alice"))
      assert.same({ nil, "keywords locked" }, { mb2:keyword_letters({ "x" }) })
      local old = os.time() - maildir.KEYWORDS_LOCK_STALE - 10
      assert(fs.utime(lock, old, old))
      assert.equal("a", mb2:keyword_letters({ "x" }))
      assert.is_nil(fs.stat(lock))
      local names = {}
      for i = 1, 26 do names[i] = "k" .. i end
      assert.same({ nil, "too many keywords" }, { mb:keyword_letters(names) })
      assert.equal("0 x\n", kwfile())                   -- all or nothing
      names[26] = nil
      assert.equal(25, #assert(mb:keyword_letters(names)))
      assert.equal(26, mb:keywords().count)
      assert.is_nil(fs.stat(lock))
    end)
  end)
end)
