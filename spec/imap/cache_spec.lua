-- The header cache the IMAP server keeps beside each Maildir.
local H = require "helper"
local E = require "imap.support.env"
local cache = require "parley.imap.cache"

describe("imap header cache", function()
  local dir, store
  before_each(function()
    H.fd_snapshot()
    dir, store = E.store()
    for i = 1, 3 do
      assert(store:deliver("alice", "Subject: m" .. i .. "\nX-N: " .. i .. "\n\nbody " .. i .. "\n"))
    end
  end)
  after_each(function()
    E.cleanup()
    H.fd_check()
  end)

  local function fetch_heads()
    local out
    H.run(function()
      local srv = E.server(store)
      local c = E.raw(srv.port)
      c:login_select()
      out = c:cmd("a FETCH 1:* (BODY.PEEK[HEADER])")
      c:close()
      srv:close(0)
    end, 10)
    return out
  end

  local expect = {}
  for i = 1, 3 do
    local h = "Subject: m" .. i .. "\r\nX-N: " .. i .. "\r\n\r\n"
    expect[i] = "* " .. i .. " FETCH (BODY[HEADER] {" .. #h .. "}\r\n" .. h .. ")"
  end

  it("is filled by a header FETCH and then serves the same bytes", function()
    assert.same(expect, fetch_heads())
    local path = dir .. "/mail/alice/" .. cache.FILE
    local text = E.T.read(path)
    local n = 0
    for _ in text:gmatch("H [^ \n]+ %d+\n") do n = n + 1 end
    assert.equal(3, n)
    assert.same(expect, fetch_heads())
  end)

  it("ignores a torn tail and survives being deleted", function()
    fetch_heads()
    local path = dir .. "/mail/alice/" .. cache.FILE
    local f = assert(io.open(path, "ab"))
    f:write("H 123.torn 999\nSubject: tr")
    f:close()
    assert.same(expect, fetch_heads())
    os.remove(path)
    assert.same(expect, fetch_heads())
    assert.truthy(E.T.read(path))
  end)

  it("never serves a wrong header for a name (names are immutable), even from a stale file", function()
    fetch_heads()
    -- a message expunged and another delivered: the new one is read from disk
    local mb = store:mailbox("alice")
    local msgs = mb:scan()
    assert(mb:remove(msgs[1].name))
    assert(store:deliver("alice", "Subject: new\r\n\r\nx\r\n"))
    local out = fetch_heads()
    assert.equal(3, #out)
    assert.matches("Subject: new\r\n\r\n%)$", out[3])
  end)
end)
