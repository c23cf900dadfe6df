-- Transcripts of FTP, HTTP and Telnet sessions, and the line format.
local parley = require "parley"
local H = require "helper"
local C = require "transcript.support.collect"
local transcript = require "parley.transcript"
local F = require "ftp.support.ftp_helper"
local ftp = require "parley.ftp"

describe("line format", function()
  it("writes [conn] +time C: text with control bytes escaped", function()
    assert.equal("[3] +1.250s C: a\\rb\\x00c\\n",
      transcript.format{ conn = 3, dir = "C", t = 1.25, text = "a\rb\0c\n" })
    assert.equal("[1] +0.000s * closed", transcript.format{ conn = 1, dir = "*", t = 0, text = "closed" })
    assert.equal("4,096", transcript.commas(4096))
  end)

  it("keeps UTF-8 letters and backslashes readable, and shows other high bytes as \\xNN", function()
    assert.equal("* 1 FETCH (FLAGS (\\Seen))", transcript.escape("* 1 FETCH (FLAGS (\\Seen))"))
    assert.equal("Subject: Καλημέρα\\t\\x7f", transcript.escape("Subject: Καλημέρα\t\127"))
    assert.equal("caf\\xe9 \\xce\\x9a", transcript.escape("caf\233 \206\154"))
  end)

  it("colours client lines red and server lines blue only when asked", function()
    assert.equal("\27[31m[1] +0.000s C: x\27[0m", transcript.format({ conn = 1, dir = "C", t = 0, text = "x" }, true))
    assert.equal("\27[34m[1] +0.000s S: x\27[0m", transcript.format({ conn = 1, dir = "S", t = 0, text = "x" }, true))
    local path = os.tmpname()
    local rec = assert(transcript.new(path))
    assert.is_false(rec.color)     -- a file is no terminal
    rec:line(1, "C", "x")
    rec:close()
    local fh = assert(io.open(path)) local text = fh:read("a") fh:close() os.remove(path)
    assert.matches("^%[1%] %+%d%.%d%d%ds C: x\n$", text)
  end)
end)

describe("ftp transcript", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("masks PASS, keeps an anonymous e-mail and summarises data connections", function()
    local srec, sentries = C.recorder()
    F.with_server({ transcript = srec,
      users = function(t) return { alice = { password = "wonderland", root = t.root, perms = "r" } } end },
      function(srv)
      local rec, entries = C.recorder()
      local c = assert(ftp.client.connect("127.0.0.1", srv.port, { transcript = rec }))
      assert(c:login("alice", "wonderland"))
      assert.equal("hello, world\n", assert(c:get("hello.txt")))
      c:quit()
      local lines = C.lines(entries)
      C.in_order(lines, { "^C: USER alice$", "^C: PASS %*%*%*%*$", "^S: 230",
        "^%* data connection to 127%.0%.0%.1:%d+ %(control %[1%]%)$", "^C: RETR hello.txt$",
        "^S: %[13 bytes%]$", "^S: 226" })
      C.absent(lines, "wonderland")
      local slines = C.lines(sentries)
      C.in_order(slines, { "^C: PASS %*%*%*%*$", "^C: RETR hello.txt$",
        "^%* data connection from 127%.0%.0%.1:%d+ %(control %[1%]%)$", "^S: %[13 bytes%]$", "^S: 226" })
      C.absent(slines, "wonderland")
      local ids = {}
      for _, e in ipairs(entries) do ids[e.conn] = true end
      assert.truthy(ids[1] and ids[2])
      rec, entries = C.recorder()
      c = assert(ftp.client.connect("127.0.0.1", srv.port, { transcript = rec }))
      assert(c:login("anonymous", "guest@example.org"))
      c:quit()
      C.in_order(C.lines(entries), { "^C: PASS guest@example%.org$" })
    end)
  end)
end)

describe("http transcript", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("masks Authorization and Cookie and summarises bodies on both sides", function()
    H.run(function()
      local srec, sentries = C.recorder()
      local srv = assert(require("parley.http.server").serve{ listen = "127.0.0.1:0", signals = false,
        transcript = srec, handler = function(req, res) res:send(("z"):rep(5000)) end })
      local rec, entries = C.recorder()
      local r = assert(require("parley.http.client").request{ url = "http://" .. srv.address .. "/x",
        method = "POST", body = "hello", headers = { Authorization = "Basic dXNlcjpwdw==", Cookie = "sid=42" },
        transcript = rec })
      assert.equal(200, r.status)
      srv:close(0)
      for _, lines in ipairs{ C.lines(entries), C.lines(sentries) } do
        C.in_order(lines, { "^C: POST /x HTTP/1%.1$", "^C: $", "^C: %[5 bytes%]$", "^S: HTTP/1%.1 200",
          "^S: $", "^S: %[5,000 bytes%]$" })
        assert.truthy(C.find(lines, "^C: Authorization: Basic %*%*%*%*$"))
        assert.truthy(C.find(lines, "^C: Cookie: %*%*%*%*$"))
        C.absent(lines, "dXNlcjpwdw")
        C.absent(lines, "sid=42")
      end
    end, 20)
  end)
end)

describe("telnet transcript", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("names commands and masks what is typed after a Password: prompt", function()
    H.run(function()
      local srec, sentries = C.recorder()
      local srv = assert(parley.serve{ listen = "127.0.0.1:0", signals = false, transcript = srec,
        transcript_protocol = "telnet", handler = function(conn)
          conn:send("\255\251\1login: ")
          conn:receive()
          conn:send("Password: ")
          conn:receive()
          conn:send("welcome\r\n")
        end })
      local conn = assert(parley.connect(srv.address))
      local rec, entries = C.recorder()
      conn = transcript.wrap(conn, rec, { protocol = "telnet" })
      assert(conn:receive_some())
      conn:send("alice\r\n")
      assert(conn:receive_some())
      conn:send("s3cret\r\n")
      assert(conn:receive())
      conn:close()
      srv:close(0)
      for _, lines in ipairs{ C.lines(entries), C.lines(sentries) } do
        C.in_order(lines, { "^S: <IAC WILL ECHO>login: $", "^C: alice$", "^S: Password: $", "^C: %*%*%*%*$", "^S: welcome$" })
        C.absent(lines, "s3cret")
      end
      C.well_formed(entries)
    end, 20)
  end)
end)
