-- Aliases: /etc/aliases-style files, nesting, loops, catch-all.
local H = require "helper"
local T = require "mail.support.tmpdir"
local aliases = require "parley.mail.aliases"
local users = require "parley.mail.users"

describe("aliases", function()
  local dir
  before_each(function()
    H.fd_snapshot()
    dir = T.new("aliases")
  end)
  after_each(function()
    T.cleanup()
    H.fd_check()
  end)

  local function load(text, opts)
    T.write(dir .. "/aliases", text)
    return aliases.load(dir .. "/aliases", opts)
  end

  describe("file format", function()
    it("reads one-to-many entries, continuation lines, comments and quoted targets", function()
      local a = assert(load(table.concat({
        "# team lists",
        "sales: alice, bob,",
        "   carol,",
        "\tdave@example.net",
        "",
        "  # a comment between entries",
        'odd: "john, smith", "x y"@example.net',
        "Upper: alice",
      }, "\n")))
      assert.same({ "alice", "bob", "carol", "dave@example.net" }, a:expand("sales"))
      assert.same({ "john, smith", '"x y"@example.net' }, a:expand("odd"))
      assert.same({ "alice" }, a:expand("UPPER"))          -- names are case-insensitive
      assert.same({ "alice" }, a:expand("upper@example.org"))
    end)

    it("returns a name without an alias as given", function()
      local a = assert(load("sales: alice\n"))
      assert.same({ "zed" }, a:expand("zed"))
      assert.same({ "zed@example.org" }, a:expand("zed@example.org"))
      assert.is_false(a:has("zed"))
      assert.is_true(a:has("Sales"))
    end)

    it("refuses :include:, pipes and files with the line number", function()
      local a, err = load("ok: alice\nlist: :include:/etc/list\n")
      assert.is_nil(a)
      assert.matches("aliases:2: :include: is not supported", err, 1, true)
      a, err = load('run: "|/usr/bin/evil"\n')
      assert.is_nil(a)
      assert.matches("aliases:1: pipe and file targets are not supported", err, 1, true)
      a, err = load("log: /var/log/mail\n")
      assert.is_nil(a)
      assert.matches("aliases:1: pipe and file targets", err, 1, true)
    end)

    it("refuses malformed lines", function()
      local cases = {
        { "  leading: continuation\n", "continuation line with no entry" },
        { "no colon here\n", "expected name: targets" },
        { "empty:\n", "has no targets" },
        { 'q: "unterminated\n', "unterminated quote" },
        { "m: carol dave\n", "space in target carol dave (a missing comma?)" },
      }
      for _, c in ipairs(cases) do
        local a, err = load(c[1])
        assert.is_nil(a)
        assert.matches(c[2], err, 1, true)
      end
    end)

    it("keeps the first of two entries for one name and warns", function()
      local a = assert(load("x: one\ny: two\nX: three\n"))
      assert.same({ "one" }, a:expand("x"))
      assert.equal(1, #a.warnings)
      assert.matches("aliases:3: duplicate alias x %(line 1 kept%)", a.warnings[1])
    end)
  end)

  describe("expansion", function()
    it("expands nested aliases and removes duplicates (many-to-one)", function()
      local a = assert(aliases.from_table {
        all = { "sales", "support", "boss" },
        sales = { "alice", "bob" },
        support = { "bob", "carol", "helpdesk@example.net" },
        boss = "alice",
      })
      assert.same({ "alice", "bob", "carol", "helpdesk@example.net" }, a:expand("all"))
    end)

    it("lets an alias name itself as a final target, as sendmail does", function()
      local a = assert(aliases.from_table { alice = { "alice", "archive@example.net" } })
      assert.same({ "alice", "archive@example.net" }, a:expand("alice"))
    end)

    it("reports a loop with its path", function()
      local a = assert(aliases.from_table { a = "b", b = { "x", "c" }, c = "a" })
      local t, err = a:expand("a")
      assert.is_nil(t)
      assert.equal("alias loop: a -> b -> c -> a", err)
    end)

    it("stops at the depth limit", function()
      local t = {}
      for i = 1, 20 do t["n" .. i] = "n" .. (i + 1) end
      local a = assert(aliases.from_table(t))
      local r, err = a:expand("n1")
      assert.is_nil(r)
      assert.equal("alias expansion too deep", err)
      local deep = assert(aliases.from_table(t, { max_depth = 30 }))
      assert.same({ "n21" }, deep:expand("n1"))
    end)

    it("stops at the target limit", function()
      local list = {}
      for i = 1, 50 do list[i] = "u" .. i end
      local a = assert(aliases.from_table({ big = list }, { max_targets = 10 }))
      local r, err = a:expand("big")
      assert.is_nil(r)
      assert.equal("too many alias targets", err)
    end)

    it("prefers name@domain over name, and expands targets in local domains", function()
      local a = assert(load(table.concat({
        "info: generic",
        "info@example.org: org-info",
        "org-info@example.org: alice, bob@example.com",
        "bob@example.com: robert",
      }, "\n")))
      assert.same({ "alice", "robert" }, a:expand("info@example.org"))
      assert.same({ "alice", "robert" }, a:expand("info", "Example.ORG"))
      assert.same({ "generic" }, a:expand("info@example.net"))
      assert.same({ "generic" }, a:expand("info"))
    end)

    it("leaves targets in other domains alone", function()
      local a = assert(aliases.from_table { fwd = "postmaster@elsewhere.example", postmaster = "root" })
      assert.same({ "postmaster@elsewhere.example" }, a:expand("fwd@example.org"))
    end)
  end)

  describe("catch-all", function()
    it("takes unknown names of its domain but not users or aliases", function()
      local u = users.from_table { alice = "pw", ["bob@example.org"] = "pw" }
      local a = assert(load(table.concat({
        "@example.org: catchall",
        "sales: alice",
      }, "\n"), { users = u }))
      assert.same({ "catchall" }, a:expand("nobody@example.org"))
      assert.same({ "catchall" }, a:expand("nobody", "example.org"))
      assert.same({ "alice@example.org" }, a:expand("alice@example.org"))
      assert.same({ "bob@example.org" }, a:expand("bob@example.org"))
      assert.same({ "alice" }, a:expand("sales@example.org"))
      assert.same({ "nobody@example.net" }, a:expand("nobody@example.net"))
      assert.same({ "nobody" }, a:expand("nobody"))                -- no domain, no catch-all
    end)

    it("asks a function which names are users", function()
      local asked = {}
      local a = assert(aliases.from_table({ ["@example.org"] = { "ops", "audit@example.net" } }, {
        users = function(lp, dom) asked[#asked + 1] = lp .. "@" .. dom; return lp == "real" end,
      }))
      assert.same({ "real@example.org" }, a:expand("real@example.org"))
      assert.same({ "ops", "audit@example.net" }, a:expand("ghost@Example.Org"))
      assert.same({ "real@example.org", "ghost@example.org" }, asked)
    end)

    it("applies to the address asked about, not to the targets it leads to", function()
      local a = assert(aliases.from_table({ ["@example.org"] = "nobody-here", list = "gone" },
                                          { users = function() return false end }))
      assert.same({ "nobody-here" }, a:expand("x@example.org"))
      assert.same({ "gone" }, a:expand("list@example.org"))
    end)
  end)

  describe("arguments", function()
    it("raises on wrong types and refuses bad targets in tables", function()
      assert.has_error(function() aliases.load(1) end)
      assert.has_error(function() aliases.from_table { x = {} } end)
      assert.has_error(function() aliases.from_table { x = { 1 } } end)
      local a = assert(aliases.from_table { x = "y" })
      assert.has_error(function() a:expand(nil) end)
      assert.has_error(function() a:expand("x", 5) end)
      local r, err = aliases.from_table { x = "|/bin/sh" }
      assert.is_nil(r)
      assert.matches("pipe and file targets", err)
    end)
  end)
end)
