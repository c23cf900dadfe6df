-- Users from a Dovecot passwd-file: PLAIN and crypt(3) hashes.
local core = require "parley.core"
local H = require "helper"
local T = require "mail.support.tmpdir"
local users = require "parley.mail.users"
local fs = core.fs

-- A hash made by another program (python3's crypt module), so the spec
-- does not only check our binding against itself.
local function python_sha512(pw)
  local out = T.sh("python3 -W ignore -c 'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_SHA512)))' "
                   .. pw .. " 2>/dev/null")
  return out:match("^(%$6%$%S+)")
end

describe("users", function()
  local dir
  before_each(function()
    H.fd_snapshot()
    dir = T.new("users")
  end)
  after_each(function()
    T.cleanup()
    H.fd_check()
  end)

  describe("load", function()
    it("checks PLAIN, $6$ and $y$ passwords; wrong password and unknown user are both false", function()
      local sha = python_sha512("sixpw") or assert(fs.crypt("sixpw", fs.gensalt("$6$")))
      local yes = assert(users.hash("ypw", "$y$"))
      assert.equal("$y$", yes:sub(1, 3))
      T.write(dir .. "/passwd", table.concat({
        "# users for the spec",
        "",
        "alice:{PLAIN}alicepw:1000:1000::/home/alice::",
        "bob:" .. sha,
        "carol:{CRYPT}" .. yes .. ":1002:1002::/home/carol",
        "dave:" .. yes,
        "  # indented comment",
      }, "\n") .. "\n")
      local u = assert(users.load(dir .. "/passwd"))
      assert.is_true(u:check("alice", "alicepw"))
      assert.is_true(u:check("bob", "sixpw"))
      assert.is_true(u:check("carol", "ypw"))
      assert.is_true(u:check("dave", "ypw"))
      assert.is_false(u:check("alice", "alicepw "))
      assert.is_false(u:check("alice", ""))
      assert.is_false(u:check("bob", "SIXPW"))
      assert.is_false(u:check("carol", "wrong"))
      assert.is_false(u:check("mallory", "alicepw"))
      assert.is_false(u:check("mallory", ""))
      assert.is_false(u:check("Alice", "alicepw"))        -- names are case-sensitive
    end)

    it("gives each user's record, existence and the sorted names", function()
      T.write(dir .. "/passwd", "zed:{PLAIN}z\nalice:{PLAIN}a:1000:100::/home/alice::\n")
      local u = assert(users.load(dir .. "/passwd"))
      assert.same({ name = "alice", uid = 1000, gid = 100, home = "/home/alice" }, u:get("alice"))
      assert.same({ name = "zed" }, u:get("zed"))
      assert.is_nil(u:get("nobody"))
      assert.is_true(u:exists("zed"))
      assert.is_false(u:exists("Zed"))
      assert.same({ "alice", "zed" }, u:names())
    end)

    it("gives the shell and Dovecot's extra fields (the rest of the line)", function()
      T.write(dir .. "/passwd", "strategos:{PLAIN}pw:1000:1000::/srv/lab:/bin/bash:ftp_perms=rl nodelay " ..
        "userdb_mail=maildir:~/Maildir\nplain:{PLAIN}p:::::\n")
      local u = assert(users.load(dir .. "/passwd"))
      assert.same({ name = "strategos", uid = 1000, gid = 1000, home = "/srv/lab", shell = "/bin/bash",
                    extra = { ftp_perms = "rl", nodelay = true, userdb_mail = "maildir:~/Maildir" } },
                  u:get("strategos"))
      assert.same({ name = "plain" }, u:get("plain"))
      -- a copy: changing it changes nothing inside
      u:get("strategos").extra.ftp_perms = "rwdmn"
      assert.equal("rl", u:get("strategos").extra.ftp_perms)
      assert.is_true(u:check("strategos", "pw"))
      local t = users.from_table { a = { password = "x", shell = "/bin/sh", extra = { ftp_perms = "r" } } }
      assert.same({ name = "a", shell = "/bin/sh", extra = { ftp_perms = "r" } }, t:get("a"))
      assert.has_error(function() users.from_table { a = { password = "x", extra = "ftp_perms=r" } } end)
    end)

    it("compares the domain part of user@domain without regard to case", function()
      T.write(dir .. "/passwd", "Ann@Example.ORG:{PLAIN}pw\n")
      local u = assert(users.load(dir .. "/passwd"))
      assert.is_true(u:check("Ann@example.org", "pw"))
      assert.is_true(u:check("Ann@EXAMPLE.org", "pw"))
      assert.is_false(u:check("ann@example.org", "pw"))
      assert.is_true(u:exists("Ann@example.ORG"))
    end)

    it("keeps the first line for a repeated name and treats an empty password as no login", function()
      T.write(dir .. "/passwd", "a:{PLAIN}first\na:{PLAIN}second\nb:\nc:{PLAIN}\n")
      local u = assert(users.load(dir .. "/passwd"))
      assert.is_true(u:check("a", "first"))
      assert.is_false(u:check("a", "second"))
      assert.is_false(u:check("b", ""))
      assert.is_true(u:check("c", ""))        -- {PLAIN} with an empty secret is a real (empty) password
      assert.is_true(u:exists("b"))
    end)

    it("uses the default scheme for passwords with no prefix", function()
      T.write(dir .. "/passwd", "a:secret\n")
      local crypt_default = assert(users.load(dir .. "/passwd"))
      assert.is_false(crypt_default:check("a", "secret"))      -- CRYPT, as Dovecot
      local plain = assert(users.load(dir .. "/passwd", { default_scheme = "PLAIN" }))
      assert.is_true(plain:check("a", "secret"))
    end)

    it("refuses unsupported schemes and malformed lines with the line number", function()
      T.write(dir .. "/passwd", "a:{PLAIN}x\nb:{SSHA}abc\n")
      local u, err = users.load(dir .. "/passwd")
      assert.is_nil(u)
      assert.matches("passwd:2: unsupported password scheme {SSHA}", err, 1, true)
      T.write(dir .. "/passwd", "a:{PLAIN}x\n:{PLAIN}nobody\n")
      u, err = users.load(dir .. "/passwd")
      assert.is_nil(u)
      assert.matches("passwd:2: expected name:password", err, 1, true)
      u, err = users.load(dir .. "/missing")
      assert.is_nil(u)
      assert.matches("no such file", err)
    end)

    it("re-reads the file when it changes", function()
      T.write(dir .. "/passwd", "a:{PLAIN}one\n")
      local u = assert(users.load(dir .. "/passwd"))
      assert.is_false(u:reload())
      T.write(dir .. "/passwd", "a:{PLAIN}two\nb:{PLAIN}bee\n")
      fs.utime(dir .. "/passwd", os.time() + 5, os.time() + 5)
      assert.is_true(u:reload())
      assert.is_true(u:check("a", "two"))
      assert.is_true(u:check("b", "bee"))
      -- a broken file keeps the old users in force
      T.write(dir .. "/passwd", "a:{NOPE}x\n")
      fs.utime(dir .. "/passwd", os.time() + 10, os.time() + 10)
      local ok, err = u:reload()
      assert.is_nil(ok); assert.is_string(err)
      assert.is_true(u:check("a", "two"))
    end)
  end)

  describe("from_table", function()
    it("takes plaintext strings and tables with hashes", function()
      local u = users.from_table {
        alice = "pw",
        bob = { hash = assert(fs.crypt("bobpw", fs.gensalt("$6$"))), home = "/h/bob", uid = 5 },
        carol = { password = "$notahash" },
      }
      assert.is_true(u:check("alice", "pw"))
      assert.is_true(u:check("bob", "bobpw"))
      assert.is_true(u:check("carol", "$notahash"))
      assert.is_false(u:check("bob", "pw"))
      assert.is_false(u:check("zed", "pw"))
      assert.same({ name = "bob", home = "/h/bob", uid = 5 }, u:get("bob"))
      assert.same({ "alice", "bob", "carol" }, u:names())
    end)

    it("raises on wrong argument types", function()
      assert.has_error(function() users.from_table("x") end)
      assert.has_error(function() users.from_table { a = 1 } end)
      local u = users.from_table { a = "b" }
      assert.has_error(function() u:check("a", nil) end)
      assert.has_error(function() u:check(nil, "b") end)
      assert.has_error(function() users.load(nil) end)
    end)
  end)

  describe("timing", function()
    it("spends about as long on an unknown user as on a known one", function()
      local h = assert(fs.crypt("pw", fs.gensalt("$6$", 20000)))
      local u = users.from_table { alice = { hash = h } }
      local function cost(name)
        local t0 = os.clock()
        for _ = 1, 5 do u:check(name, "wrong") end
        return os.clock() - t0
      end
      cost("alice")
      local known, unknown = cost("alice"), cost("nobody")
      -- crypt with 20000 rounds dominates both; a skipped hash would be ~100x faster
      assert.is_true(unknown > known / 3, string.format("known %.4f s, unknown %.4f s", known, unknown))
    end)
  end)
end)
