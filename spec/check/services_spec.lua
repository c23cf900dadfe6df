-- parley check for ftp://, http:// and telnet:// against parley's own
-- servers (in process, port 0).
local H = require "helper"
local check = require "parley.check"
local ftp = require "parley.ftp"
local http = require "parley.http"
local telnet = require "parley.telnet"

describe("check ftp://", function()
  local dir, data
  before_each(function()
    H.fd_snapshot()
    dir = H.tmpdir()
    os.execute("mkdir -p " .. dir .. "/pub")
    data = H.random_bytes(100000, 7)
    H.write(dir .. "/pub/blob.bin", data)
    H.write(dir .. "/pub/tea.txt", "tea\n")
  end)
  after_each(function()
    H.rmdir(dir)
    H.fd_check()
  end)

  local function with_server(fn)
    H.run(function()
      local srv = assert(ftp.server.serve{ listen = "127.0.0.1:0", root = dir, anonymous = true,
        signals = false, login_delay = 0,
        users = require("parley.mail.users").from_table{ alice = "pw" } })
      local ok, err = pcall(fn, "127.0.0.1:" .. srv.port)
      srv:close(0)
      if not ok then error(err, 0) end
    end)
  end

  it("logs in anonymously and lists a directory", function()
    with_server(function(addr)
      local root = check.run("ftp://" .. addr .. "/")
      local pub = check.run("ftp://" .. addr .. "/pub")
      assert.equal("OK", root.state, root.line)
      assert.equal(1, root.perfdata.entries.value)
      assert.equal("OK", pub.state, pub.line)
      assert.equal(2, pub.perfdata.entries.value)
      assert.matches("2 entries in pub", pub.summary)
    end)
  end)

  it("describes a file by SIZE and downloads it, comparing size and SHA-256", function()
    local sha = H.sha256(dir .. "/pub/blob.bin")
    with_server(function(addr)
      local r = check.run("ftp://" .. addr .. "/pub/blob.bin", { download = true, sha256 = sha:upper(),
                                                                 size = #data })
      assert.equal("OK", r.state, r.line)
      assert.equal(#data, r.perfdata.size.value)
      assert.is_number(r.perfdata.download.value)
      assert.matches("SHA%-256 matches", r.summary)
    end)
  end)

  it("is CRITICAL when the SHA-256 or the size differs", function()
    with_server(function(addr)
      local bad_sha = check.run("ftp://" .. addr .. "/pub/tea.txt", { sha256 = ("0"):rep(64) })
      local bad_size = check.run("ftp://" .. addr .. "/pub/tea.txt", { size = 5 })
      assert.equal("CRITICAL", bad_sha.state)
      assert.matches("SHA%-256 %x+, expected 0+", bad_sha.summary)
      assert.equal("CRITICAL", bad_size.state)
      assert.matches("size 4, expected 5", bad_size.summary)
    end)
  end)

  it("is CRITICAL for a path that is neither file nor directory, and for a wrong password", function()
    with_server(function(addr)
      local none = check.run("ftp://" .. addr .. "/pub/nothing.txt")
      local bad = check.run("ftp://alice:wrong@" .. addr .. "/")
      local good = check.run("ftp://alice:pw@" .. addr .. "/")
      assert.equal("CRITICAL", none.state)
      assert.matches("size: 550", none.summary)
      assert.equal("CRITICAL", bad.state)
      assert.matches("login: 530", bad.summary)
      assert.equal("OK", good.state, good.line)
    end)
  end)

  it("is UNKNOWN for a bad SHA-256 or a download without a file", function()
    assert.equal(3, check.run("ftp://127.0.0.1:1/x", { sha256 = "abc" }).status)
    assert.equal(3, check.run("ftp://127.0.0.1:1/pub/", { download = true }).status)
  end)
end)

describe("check http://", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  local function with_server(fn)
    H.run(function()
      local app = http.server.new{}
      app:get("/", function() return 200, "<h1>hello world</h1>\n" end)
      app:get("/moved", function(_, res) res:header("Location", "/") return 301, "" end)
      app:get("/boom", function() return 503, "down\n" end)
      local srv = assert(app:serve{ listen = "127.0.0.1:0", signals = false })
      local ok, err = pcall(fn, "http://127.0.0.1:" .. srv.port)
      srv:close(0)
      if not ok then error(err, 0) end
    end)
  end

  it("judges 2xx and 3xx OK, 4xx WARNING and 5xx CRITICAL by default", function()
    with_server(function(base)
      local ok = check.run(base .. "/")
      assert.equal("OK", ok.state, ok.line)
      assert.matches("HTTP/1%.1 200 OK, 21 bytes", ok.summary)
      assert.equal(21, ok.perfdata.size.value)
      assert.equal("OK", check.run(base .. "/moved").state)
      assert.equal("WARNING", check.run(base .. "/missing").state)
      assert.equal("CRITICAL", check.run(base .. "/boom").state)
    end)
  end)

  it("takes only the codes given with --status", function()
    with_server(function(base)
      assert.equal("OK", check.run(base .. "/missing", { status = { 404 } }).state)
      local r = check.run(base .. "/", { status = { 301, 302 } })
      assert.equal("CRITICAL", r.state)
      assert.matches("expected 301,302", r.summary)
    end)
  end)

  it("looks for --expect text in the body", function()
    with_server(function(base)
      assert.equal("OK", check.run(base .. "/", { expect = "o w" }).state)
      local r = check.run(base .. "/", { expect = "goodbye" })
      assert.equal("CRITICAL", r.state)
      assert.matches('the body lacks "goodbye"', r.summary)
    end)
  end)
end)

describe("check telnet://", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  local function with_server(fn)
    H.run(function()
      local srv = assert(telnet.server.serve{ listen = "127.0.0.1:0", app = "menu", signals = false })
      local ok, err = pcall(fn, "telnet://127.0.0.1:" .. srv.port)
      srv:close(0)
      if not ok then error(err, 0) end
    end)
  end

  it("answers the negotiation and finds --expect text in the first output", function()
    with_server(function(u)
      local r = check.run(u, { expect = "telnet menu" })
      assert.equal("OK", r.state, r.line)
      assert.matches("parley telnet menu", r.summary)
      local plain = check.run(u)
      assert.equal("OK", plain.state)
      assert.matches("connected: .*parley telnet menu", plain.summary)
    end)
  end)

  it("is CRITICAL when the text does not come before the deadline, saying what came", function()
    with_server(function(u)
      local r = check.run(u, { expect = "no such banner", timeout = 1 })
      assert.equal("CRITICAL", r.state)
      assert.matches('no "no such banner" in the output %(timeout after', r.summary)
      assert.matches("got: .*parley telnet menu", r.summary)
    end)
  end)
end)
