-- parley.smtp.queue: on-disk relay queue, retries, backoff, DSN bounces.
local U = require "smtp.support.util"
local H = U.H
local queue = require "parley.smtp.queue"

local MSG = "From: a@example.org\r\nTo: r@remote.net\r\nSubject: q\r\n\r\nqueued body\r\n"

describe("smtp relay queue", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("delivers through the route, retrying with backoff on the queue's clock", function()
    local qdir = U.tmpdir("q")
    H.run(function()
      local now = 1000
      local tries = 0
      -- the next hop tempfails twice, then accepts
      local hop, hroot = U.server{ domains = { "remote.net" }, on_rcpt = function()
        tries = tries + 1
        if tries <= 2 then return 451, "4.3.0 try later" end
      end }
      local q = queue.open(qdir, { route = { ["remote.net"] = hop.address }, clock = function() return now end,
        retry = { 60, 300 } })
      assert(q:add("a@example.org", { "r@remote.net" }, MSG))
      assert.are.same({ sent = 0, deferred = 1, bounced = 0 }, q:run())
      local e = q:list()[1]
      assert.are.equal(1, e.attempts)
      assert.are.equal(1060, e.next)
      assert.truthy(e.error:find("451", 1, true))
      now = 1059
      assert.are.same({ sent = 0, deferred = 0, bounced = 0 }, q:run(), "not due yet")
      now = 1060
      assert.are.same({ sent = 0, deferred = 1, bounced = 0 }, q:run())
      assert.are.equal(1360, q:list()[1].next)
      now = 1360
      assert.are.same({ sent = 1, deferred = 0, bounced = 0 }, q:run())
      assert.are.same({}, q:list())
      assert.are.same({}, U.files(qdir .. "/msg"))
      hop:close(0)
      assert.are.equal(MSG, U.strip_trace(U.delivered(hroot, "r")[1]))
      U.rmrf(hroot)
    end)
    U.rmrf(qdir)
  end)

  it("bounces to the sender with a DSN after the maximum age", function()
    local qdir = U.tmpdir("q")
    H.run(function()
      local now = 5000
      local bounces = {}
      local q = queue.open(qdir, { route = { ["remote.net"] = "127.0.0.1:1" }, clock = function() return now end,
        max_age = 3600, hostname = "mx.example.org",
        is_local = function(d) return d == "example.org" end,
        deliver_local = function(addr, msg) bounces[#bounces + 1] = { addr, msg } return true end })
      assert(q:add("a@example.org", { "r@remote.net" }, MSG))
      assert.are.equal(1, q:run().deferred)
      assert.are.equal(0, #bounces)
      now = 5000 + 3600
      assert.are.equal(1, q:run().bounced)
      assert.are.same({}, q:list())
      assert.are.equal(1, #bounces)
      assert.are.equal("a@example.org", bounces[1][1])
      local dsn = bounces[1][2]
      assert.truthy(dsn:find("Content-Type: multipart/report; report-type=delivery-status", 1, true))
      assert.truthy(dsn:find("Final-Recipient: rfc822; r@remote.net", 1, true))
      assert.truthy(dsn:find("Status: 4.4.7", 1, true))
      assert.truthy(dsn:find("Subject: q", 1, true), "the original headers are attached")
    end)
    U.rmrf(qdir)
  end)

  it("bounces at once on a permanent refusal and never bounces a bounce", function()
    local qdir = U.tmpdir("q")
    H.run(function()
      local hop, hroot = U.server{ domains = { "remote.net" }, users = U.users{ someone = "x" } }
      local bounces = {}
      local q = queue.open(qdir, { route = { ["remote.net"] = hop.address },
        is_local = function() return true end,
        deliver_local = function(addr, msg) bounces[#bounces + 1] = addr return true end })
      assert(q:add("a@example.org", { "nobody@remote.net" }, MSG))
      assert(q:add("", { "nobody@remote.net" }, MSG))
      assert.are.equal(2, q:run().bounced)
      assert.are.same({ "a@example.org" }, bounces)
      hop:close(0)
      U.rmrf(hroot)
    end)
    U.rmrf(qdir)
  end)

  it("survives a restart: a committed message is still queued, a half-written one is gone", function()
    local qdir = U.tmpdir("q")
    local q = queue.open(qdir)
    assert(q:add("a@example.org", { "r@remote.net" }, MSG))
    local e = q:enqueue{ from = "a@example.org", to = { "r@remote.net" } }
    e:write("half a mess")
    e.f:close() -- a crash: neither commit nor abort
    local q2 = queue.open(qdir)
    local list = q2:list()
    assert.are.equal(1, #list)
    assert.are.equal(MSG, U.slurp(qdir .. "/msg/" .. list[1].id))
    assert.are.same({}, U.files(qdir .. "/tmp"))
    U.rmrf(qdir)
  end)
end)
