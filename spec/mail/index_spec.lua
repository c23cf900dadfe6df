-- The in-memory Maildir index (parley.mail.index): UIDs, stale detection
-- by directory stamps, a lost or corrupt uidlist, two processes.
local H = require "helper"
local T = require "mail.support.tmpdir"
local maildir = require "parley.mail.maildir"
local index = require "parley.mail.index"
local fs = require("parley.core").fs

describe("maildir index", function()
  local dir, store, mb, margin, coarse
  before_each(function()
    H.fd_snapshot()
    dir = T.new("index")
    store = assert(maildir.open(dir, { fsync = false }))
    for i = 1, 3 do assert(store:deliver("alice", "Subject: m" .. i .. "\r\n\r\nbody\r\n")) end
    mb = assert(store:mailbox("alice"))
    margin, coarse = index.MARGIN, index.COARSE_MARGIN
  end)
  after_each(function()
    index.MARGIN, index.COARSE_MARGIN = margin, coarse
    T.cleanup()
    H.fd_check()
  end)

  -- trust every stamp (as if the last change were long ago)
  local function trust_all() index.MARGIN, index.COARSE_MARGIN = -1, -1 end
  local function uids(s)
    local out = {}
    for i, m in ipairs(s.list) do out[i] = m.uid end
    return out
  end
  local function uidlist()
    return T.read(mb.dir .. "/" .. maildir.UIDLIST)
  end

  describe("UIDs", function()
    it("numbers messages in delivery order and writes them to the uidlist", function()
      local s = assert(index.new(mb):snapshot())
      assert.same({ 1, 2, 3 }, uids(s))
      assert.equal(4, s.nextuid)
      assert.equal(3, s.nnew)
      assert.equal(3, s.unseen)
      assert.equal(1, s.first_unseen)
      assert.matches("^3 V" .. s.validity .. " N4\n1 :", uidlist())
      assert.equal(s.list[2], s.byname[s.list[2].name])
    end)

    it("numbers names of one microsecond by their counter, then in listing order", function()
      local cur = mb.dir .. "/cur/"
      for _, f in ipairs({ "1700000000.M5P9Q12.h:2,S", "1700000000.M5P9Q3.h:2,", "1699999999.x",
                           "1700000000.M5P8Q3.h" }) do
        T.write(cur .. f, "Subject: x\r\n\r\n")
      end
      local s = assert(index.new(mb):snapshot())
      local names = {}
      for i = 1, 4 do names[i] = s.list[i].name end
      assert.equal("1699999999.x", names[1])
      assert.equal("1700000000.M5P9Q12.h", names[4])
      -- the same key (pid aside): both, in the order the directory lists them
      local a, b = names[2], names[3]
      assert.same({ "1700000000.M5P8Q3.h", "1700000000.M5P9Q3.h" },
                  a < b and { a, b } or { b, a })
      assert.equal(8, s.nextuid)   -- and the three delivered now
    end)

    it("sorts records by delivery key in C, equal keys keeping their order", function()
      local r1, r2, r3 = { key = 5 }, { key = 1 }, { key = 5 }
      local sorted = fs.maildir_sort({ r1, r2, r3 })
      assert.same(3, #sorted)
      assert.equal(r2, sorted[1]); assert.equal(r1, sorted[2]); assert.equal(r3, sorted[3])
      assert.same({}, fs.maildir_sort({}))
      -- many keys, negative and equal ones among them: as a stable sort
      local recs = {}
      for i = 1, 2000 do recs[i] = { key = ((i * 7919) % 613 - 300) << (i % 3 * 20), i = i } end
      local want = table.move(recs, 1, #recs, 1, {})
      table.sort(want, function(a, b) if a.key ~= b.key then return a.key < b.key end return a.i < b.i end)
      assert.same(want, fs.maildir_sort(recs))
      assert.has_error(function() fs.maildir_sort({ { key = "x" } }) end)
      assert.has_error(function() fs.maildir_sort({ 1 }) end)
    end)

    it("writes the uidlist text in C, one line per record in array order", function()
      local text = fs.maildir_uidlist("3 V7 N13\n", { { uid = 12, name = "b" }, { uid = 3, name = "a,S=1" } })
      assert.equal("3 V7 N13\n12 :b\n3 :a,S=1\n", text)
      assert.equal("3 V1 N1\n", fs.maildir_uidlist("3 V1 N1\n", {}))
      assert.has_error(function() fs.maildir_uidlist("h", { { name = "a" } }) end)
      assert.has_error(function() fs.maildir_uidlist("h", { { uid = 1 } }) end)
      assert.has_error(function() fs.maildir_uidlist("h", { 1 }) end)
    end)

    it("gives the same UIDs to another process and to maildir's uids()", function()
      local s1 = assert(index.new(mb):snapshot())
      local s2 = assert(index.new(mb):snapshot())
      assert.same(uids(s1), uids(s2))
      assert.equal(s1.validity, s2.validity)
      local map, validity = assert(mb:uids())
      assert.equal(s1.validity, validity)
      for _, m in ipairs(s1.list) do assert.equal(m.uid, map[m.name]) end
    end)

    it("keeps UIDs and UIDVALIDITY when messages are added and removed", function()
      local x = index.new(mb)
      local s = assert(x:snapshot())
      local validity = s.validity
      os.remove(s.list[1].path)
      assert(store:deliver("alice", "Subject: m4\r\n\r\nbody\r\n"))
      local s2 = assert(x:snapshot())
      assert.same({ 2, 3, 4 }, uids(s2))
      assert.equal(validity, s2.validity)
      assert.equal(5, s2.nextuid)
      -- the expunged name is dropped from the file
      assert.falsy(uidlist():find(s.list[1].name, 1, true))
    end)

    it("hands out UIDs once when two processes see a new message", function()
      local a, b = index.new(mb), index.new(mb)
      a:snapshot(); b:snapshot()
      assert(store:deliver("alice", "Subject: m4\r\n\r\nbody\r\n"))
      local sb = assert(b:snapshot())
      local sa = assert(a:snapshot())
      assert.same({ 1, 2, 3, 4 }, uids(sa))
      assert.same(uids(sa), uids(sb))
      assert.equal(sa.list[4].name, sb.list[4].name)
    end)
  end)

  describe("stale detection", function()
    it("returns the same snapshot while nothing changed", function()
      trust_all()
      local x = index.new(mb)
      local s = assert(x:snapshot())
      assert.equal(s, x:snapshot())
    end)

    it("sees a message added, removed or renamed behind its back", function()
      trust_all()
      local x = index.new(mb)
      local s = assert(x:snapshot())
      local first = s.list[1]
      -- renamed by another program (mutt marks it seen)
      assert(fs.rename(first.path, mb.dir .. "/cur/" .. first.name .. ":2,S"))
      local s2 = assert(x:snapshot())
      assert.are_not.equal(s, s2)
      assert.equal("S", s2.list[1].flags)
      assert.equal(1, s2.list[1].uid)
      assert.equal(2, s2.unseen)
      -- removed
      os.remove(s2.list[2].path)
      local s3 = assert(x:snapshot())
      assert.same({ 1, 3 }, uids(s3))
      -- added
      assert(store:deliver("alice", "Subject: m4\r\n\r\nbody\r\n"))
      assert.same({ 1, 3, 4 }, uids(assert(x:snapshot())))
    end)

    it("does not trust a directory stamp from the same clock tick as a change", function()
      trust_all()
      local x = index.new(mb)
      assert(x:snapshot())
      local st = assert(fs.stat(mb.dir .. "/new"))
      -- a delivery that leaves new/ with the very same mtime: believed
      -- unchanged when the stamp is old enough ...
      assert(store:deliver("alice", "Subject: m4\r\n\r\nbody\r\n"))
      assert(fs.utime(mb.dir .. "/new", st.atime, st.mtime))
      assert.same({ 1, 2, 3 }, uids(assert(x:snapshot())))
      -- ... which is why a stamp as fresh as "now" is listed again
      index.MARGIN, index.COARSE_MARGIN = 3600, 3600
      x = index.new(mb)
      assert.same({ 1, 2, 3, 4 }, uids(assert(x:snapshot())))
      assert(store:deliver("alice", "Subject: m5\r\n\r\nbody\r\n"))
      assert(fs.utime(mb.dir .. "/new", st.atime, st.mtime))
      assert.same({ 1, 2, 3, 4, 5 }, uids(assert(x:snapshot())))
    end)

    it("reads a uidlist another process rewrote", function()
      trust_all()
      local x, other = index.new(mb), index.new(mb)
      assert(x:snapshot())
      -- the other process numbers a new message; then the file is renamed
      -- back into the same mtime for new/ (only the uidlist tells)
      local st = assert(fs.stat(mb.dir .. "/new"))
      assert(store:deliver("alice", "Subject: m4\r\n\r\nbody\r\n"))
      assert(other:snapshot())
      assert(fs.utime(mb.dir .. "/new", st.atime, st.mtime))
      local s = assert(x:snapshot())
      assert.same({ 1, 2, 3, 4 }, uids(s))
      assert.equal(5, s.nextuid)
    end)
  end)

  describe("a damaged uidlist", function()
    it("is renumbered under a new UIDVALIDITY when it is lost or garbage", function()
      local x = index.new(mb)
      local s = assert(x:snapshot())
      os.remove(mb.dir .. "/" .. maildir.UIDLIST)
      local s2 = assert(x:snapshot())
      assert.is_true(s2.validity > s.validity)
      assert.same({ 1, 2, 3 }, uids(s2))
      T.write(mb.dir .. "/" .. maildir.UIDLIST, "\0\0garbage\n")
      local s3 = assert(x:snapshot())
      assert.is_true(s3.validity > s2.validity)
      assert.same({ 1, 2, 3 }, uids(s3))
    end)

    it("keeps UIDVALIDITY when it is truncated, numbering the lost lines anew", function()
      local x = index.new(mb)
      local s = assert(x:snapshot())
      local text = uidlist()
      T.write(mb.dir .. "/" .. maildir.UIDLIST, text:match("^[^\n]*\n[^\n]*\n"))   -- header + UID 1
      local s2 = assert(index.new(mb):snapshot())
      assert.equal(s.validity, s2.validity)
      assert.same({ 1, 4, 5 }, uids(s2))
      assert.equal(s.list[1].name, s2.list[1].name)
    end)

    it("is renumbered under a new UIDVALIDITY when two names share a UID", function()
      local x = index.new(mb)
      local s = assert(x:snapshot())
      local lines = {}
      for i, m in ipairs(s.list) do lines[i] = "1 :" .. m.name end
      T.write(mb.dir .. "/" .. maildir.UIDLIST, "3 V" .. s.validity .. " N4\n" .. table.concat(lines, "\n") .. "\n")
      local s2 = assert(index.new(mb):snapshot())
      assert.is_true(s2.validity > s.validity)
      assert.same({ 1, 2, 3 }, uids(s2))
    end)
  end)

  describe("files", function()
    it("follows a message whose file moved when setting flags, opening or reading it", function()
      local x = index.new(mb)
      local s = assert(x:snapshot())
      local m = s.list[1]
      local r = assert(x:set_flags(m, "S"))
      assert.equal("S", r.flags)
      assert.is_false(r.new)
      assert.equal(m.uid, r.uid)
      -- the old record now names a file that is gone: found again by name
      local h = assert(x:read_head(m))
      assert.equal("Subject: m1\r\n\r\n", h)
      local f = assert(x:open(m))
      assert.equal("Subject: m1\r\n\r\nbody\r\n", f:read("a"))
      f:close()
      assert.equal(r.path, x:path(m))
      assert.truthy(x:remove(m))
      assert.same({ nil, "no such message" }, { x:path(m) })
    end)

    it("reads a header longer than one read, and a message with no blank line", function()
      local long = "Subject: " .. ("x"):rep(10000) .. "\r\n\r\nbody\r\n"
      assert(store:deliver("alice", long))
      assert(store:deliver("alice", "Subject: no body"))
      local x = index.new(mb)
      local s = assert(x:snapshot())
      assert.equal(long:sub(1, #long - 6), x:read_head(s.list[4], 4096))
      assert.equal("Subject: no body", x:read_head(s.list[5], 4096))
    end)

    it("finds the blank line wherever the reads split it, LF or CRLF", function()
      local path = dir .. "/head-split"
      local function head(text, chunk)
        local f = assert(io.open(path, "wb")); f:write(text); f:close()
        return fs.read_head(path, chunk)
      end
      for chunk = 1, 5 do
        assert.equal("A: 1\r\nB: 2\r\n\r\n", head("A: 1\r\nB: 2\r\n\r\nbody\r\n\r\n", chunk))
        assert.equal("A: 1\n\n", head("A: 1\n\nbody\n", chunk))
        assert.equal("A: 1\n\r", head("A: 1\n\r", chunk))
        assert.equal("", head("", chunk))
        -- no header fields: the first line is the blank one (RFC 5322 §3.5)
        assert.equal("\r\n", head("\r\nbody\r\n\r\nmore\r\n", chunk))
        assert.equal("\n", head("\nbody\n\nmore\n", chunk))
      end
      os.remove(path)
      local none, err = fs.read_head(path)
      assert.is_nil(none)
      assert.equal("no such file or directory", err)
    end)

    it("moves what it lists in new/ for the first time to cur/ when asked to claim it", function()
      local x = index.new(mb)
      local s, recent, n = assert(x:snapshot(true))
      assert.equal(3, n)
      assert.same({ [1] = true, [2] = true, [3] = true }, recent)
      assert.equal(0, s.nnew)
      assert.equal(0, #fs.listdir(mb.dir .. "/new"))
      for _, r in ipairs(s.list) do
        assert.is_false(r.new)
        assert.equal(r.name .. ":2,", r.file)
        assert.equal(mb.dir .. "/cur/" .. r.file, r.path)
        assert.truthy(fs.stat(r.path))
      end
      -- a message an earlier snapshot already holds is left to the caller
      assert(store:deliver("alice", "Subject: m4\r\n\r\nbody\r\n"))
      local s2 = assert(x:snapshot())
      assert.equal(1, s2.nnew)
      local s3, recent3, n3 = x:snapshot(true)
      assert.equal(s2, s3)
      assert.is_nil(recent3)
      assert.equal(0, n3)
      assert.equal(1, #fs.listdir(mb.dir .. "/new"))
      -- a second process lists the moved files as they are now
      local other = assert(index.new(mb):snapshot())
      assert.same(uids(s2), uids(other))
      assert.equal(1, other.nnew)
    end)

    it("lists new/ and cur/ in one C call, a name in both once (the new/ one)", function()
      local d = mb.dir
      local inew = fs.listdir(d .. "/new")
      table.sort(inew)
      T.write(d .. "/cur/" .. inew[1] .. ":2,S", "dup")
      T.write(d .. "/cur/1700000000.M1P1Q1.h,S=9:2,RS", "old")
      T.write(d .. "/cur/.hidden", "")
      local recs, byname, knew, kcur, fresh = fs.maildir_listing(d)
      assert.equal(4, #recs)
      assert.equal(3, #fresh)
      for i = 1, 3 do assert.is_true(recs[i].new); assert.equal(recs[i], fresh[i]) end
      assert.equal(recs[4], byname["1700000000.M1P1Q1.h,S=9"])
      assert.equal("RS", recs[4].flags)
      assert.equal(9, recs[4].size)
      assert.is_true(byname[inew[1]].new)
      local function count(t) local n = 0; for _ in pairs(t) do n = n + 1 end; return n end
      assert.equal(3, count(knew))
      assert.equal(2, count(kcur))                       -- the duplicate too
      assert.equal(byname[inew[1]], knew[inew[1]])
      assert.is_false(kcur[inew[1] .. ":2,S"].new)
      -- a Maildir with no new/ or cur/ lists as empty
      local r2 = fs.maildir_listing(d .. "/nowhere")
      assert.same({}, r2)
    end)

    it("claims files in C by name, flags and UID, skipping a file that is gone", function()
      local d = mb.dir
      for _, f in ipairs(fs.listdir(d .. "/new")) do os.remove(d .. "/new/" .. f) end
      local long, short = "1700000000.M1P1Q1.a-long-host-name,S=4", "1700000000.M2P1Q2.h"
      T.write(d .. "/new/" .. long, "x\n"); T.write(d .. "/new/" .. short, "y\n")
      local r1 = { name = long, file = long, flags = "", uid = 7, path = d .. "/new/" .. long }
      local r2 = { name = short, file = short, flags = "S", uid = 9, path = d .. "/new/" .. short }
      local r3 = { name = "gone", file = "gone", flags = "", uid = 11 }
      local knew, kcur = { [long] = r1, [short] = r2 }, {}
      local n, moved_uids = fs.maildir_claim(d, { r1, r2, r3 }, knew, kcur)
      assert.equal(2, n)
      local cur = fs.listdir(d .. "/cur")
      table.sort(cur)
      assert.same({ long .. ":2,", short .. ":2,S" }, cur)
      assert.same({ [7] = true, [9] = true }, moved_uids)
      assert.same({}, knew)
      assert.equal(r2, kcur[short .. ":2,S"])
      assert.equal(d .. "/cur/" .. short .. ":2,S", r2.path)
      assert.is_false(r1.new)
      assert.equal("gone", r3.file)
      assert.has_error(function() fs.maildir_claim(d, { { name = "x" } }, {}, {}) end)
      assert.is_nil(fs.maildir_claim(d .. "/nowhere", {}, {}, {}))
    end)

    it("never claims a file over another: two copies of one unique name both stay", function()
      local d = mb.dir
      for _, f in ipairs(fs.listdir(d .. "/new")) do os.remove(d .. "/new/" .. f) end
      local name = "1700000001.M1P1Q1.h"
      T.write(d .. "/new/" .. name, "first\n")
      T.write(d .. "/new/" .. name .. ":2,S", "second\n")
      local r1 = { name = name, file = name, flags = "S", uid = 1 }
      local r2 = { name = name, file = name .. ":2,S", flags = "S", uid = 2 }
      local n = fs.maildir_claim(d, { r1, r2 }, {}, {})
      assert.equal(1, n)
      assert.same({ name .. ":2,S" }, fs.listdir(d .. "/cur"))
      assert.same({ name .. ":2,S" }, fs.listdir(d .. "/new"))   -- the second one, kept
      assert.equal("first\n", T.read(d .. "/cur/" .. name .. ":2,S"))
      assert.equal("second\n", T.read(d .. "/new/" .. name .. ":2,S"))
      os.remove(d .. "/cur/" .. name .. ":2,S")
      os.remove(d .. "/new/" .. name .. ":2,S")
    end)

    it("shares one index per Maildir in a process", function()
      assert.equal(index.of(mb), index.of(store:mailbox("alice")))
      assert.are_not.equal(index.of(mb), index.new(mb))
      assert.has_error(function() index.of("alice") end)
    end)
  end)
end)
