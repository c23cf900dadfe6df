-- parley.lab.tour in process: sections, ticks and crosses, colours.
local H = require "helper"
local lab = require "parley.lab"
local tour = require "parley.lab.tour"

local function output(fh)
  fh:seek("set")
  local text = fh:read("a")
  fh:close()
  return text
end

describe("the lab's tour", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("marks a session whose server is gone with a cross, says which step failed, and goes on", function()
    local ok, reports, text
    H.run(function()
      local l = assert(lab.start{ ports = "auto" })
      l.servers.ftp:close(0)
      local out = io.tmpfile()
      ok, reports = tour.run(l, { out = out, color = false, timeout = 2, sessions = { "ftp", "http" } })
      text = output(out)
      l:close(0)
    end)
    assert.is_false(ok)
    assert.is_false(reports[1].ok)
    assert.is_true(reports[2].ok)
    assert.equal("http", reports[2].session)
    assert.matches("✗ Anonymous FTP", text, 1, true)
    assert.matches("step 1, connect ftp://127.0.0.1:", text, 1, true)
    assert.matches("✓ HTTP/1.1", text, 1, true)
    assert.matches("✗ tour: 1 of 2 sessions passed", text, 1, true)
  end)

  it("paints client lines red and server lines blue when asked for colour", function()
    local text
    H.run(function()
      local l = assert(lab.start{ ports = "auto" })
      local out = io.tmpfile()
      assert.is_true((tour.run(l, { out = out, color = true, sessions = { "http" } })))
      text = output(out)
      l:close(0)
    end)
    assert.matches("\27[31m[1] +", text, 1, true)
    assert.matches("C: GET /index.html HTTP/1.1\27[0m", text, 1, true)
    assert.matches("\27[34m[1] +", text, 1, true)
    assert.matches("S: HTTP/1.1 200 OK\27[0m", text, 1, true)
  end)

  it("opens FTP's data connections with EPSV on an IPv6 lab, where PASV cannot say the address", function()
    local ok, text
    H.run(function()
      local l = assert(lab.start{ host = "::1", ports = "auto" })
      local out = io.tmpfile()
      ok = tour.run(l, { out = out, color = false, sessions = { "ftp" } })
      text = output(out)
      l:close(0)
    end)
    assert.is_true(ok, text)
    assert.matches("C: EPSV", text, 1, true)
    assert.matches("S: 229 Entering Extended Passive Mode (|||", text, 1, true)
    assert.matches("S: Greek coffee, one cup", text, 1, true)
  end)

  it("has a title and a sentence for every session", function()
    for _, name in ipairs(tour.SESSIONS) do
      local sc = require("parley.lab.tour." .. name)
      assert.is_true(require("parley.scenario").is_scenario(sc), name)
      assert.matches("^%u", sc.name)
      assert.matches("^%u.+%.$", sc.about)
    end
  end)
end)
