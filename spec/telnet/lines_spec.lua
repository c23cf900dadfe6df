-- session:read_line and session:print straight from and into the stream's
-- buffers (stream:receive_telnet_line, stream:send_telnet), against the
-- general path through codec:feed and codec:escape that a wrapped stream
-- (a transcript's, an app's own) takes: both must read and write exactly
-- the same.
local parley = require "parley"
local H = require "helper"
local T = require "telnet.support.th"
local session = require "parley.telnet.session"

-- a stream of the app's own: every method passed through, so the session
-- cannot take the stream's C paths
local function wrapped(conn)
  return setmetatable({}, { __index = function(_, k)
    return function(_, ...) return conn[k](conn, ...) end
  end })
end

-- what read_line gives for each chunk sent `gap` seconds apart (then the
-- client closes): lines, and "!err" for errors
local function read_lines(chunks, direct, opts)
  local got = {}
  H.run(function()
    local c, s = H.pair()
    local sess = session.new(direct and s or wrapped(s), opts or { negotiate = false })
    assert.equal(direct, sess.direct)
    sess:settimeout(5)
    local reader = H.go(function()
      for _ = 1, 100 do
        local line, err = sess:read_line()
        got[#got + 1] = line or "!" .. err
        if err == "closed" or err == "timeout" then break end
      end
    end)
    for _, chunk in ipairs(chunks) do
      c:send(chunk)
      c:flush()
      parley.sleep(0.02)
    end
    c:close()
    H.join(reader)
    sess:close()
  end)
  return got
end

-- both ways give `want`
local function reads(chunks, want, opts)
  assert.same(want, read_lines(chunks, true, opts))
  assert.same(want, read_lines(chunks, false, opts))
end

describe("telnet session lines taken from the stream's buffer", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("reads lines that arrive whole, several in one read, with any line end", function()
    reads({ "one\r\n", "two\r\nthree\nfour\r\n\r\n" }, { "one", "two", "three", "four", "", "!closed" })
  end)

  it("reads a line split across reads", function()
    reads({ "hel", "lo wor", "ld\r", "\nnext\r\n" }, { "hello world", "next", "!closed" })
  end)

  it("reads a line with an IAC sequence in the middle, and IAC IAC as byte 255", function()
    reads({ "ab" .. T.IAC .. "\241cd\r\n", "x" .. T.IAC .. T.IAC .. "y\r\n", T.IAC .. "\241z\r\n" },
          { "abcd", "x\255y", "z", "!closed" })
  end)

  it("ends a line at CR NUL and takes an LF right after it along", function()
    reads({ "a\r\0b\r\n", "c\r\0\nd\r\n", "e\r\0", "\nf\r\0", "g\r\n" },
          { "a", "b", "c", "d", "e", "f", "g", "!closed" })
  end)

  it("waits for the byte after a CR that ends a read", function()
    reads({ "one\r", "\ntwo\r", "\0three\r\n", "four\r", "five\n" },
          { "one", "two", "three", "four", "five", "!closed" })
  end)

  it("ends a line at a bare CR and keeps what follows", function()
    reads({ "a\rb\r\n", "c\r" .. T.IAC .. "\241d\r\n" }, { "a", "b", "c", "d", "!closed" })
  end)

  it("refuses a line over max_line, whole or split, and reads the next one", function()
    reads({ "0123456789\r\n", "ok\r\n", "01234", "56789\r\n", "12345678\r\n" },
          { "!line too long", "ok", "!line too long", "12345678", "!closed" },
          { negotiate = false, max_line = 8 })
  end)

  it("drops the partial line of a client that vanishes mid-line", function()
    reads({ "whole\r\n", "half a li" }, { "whole", "!closed" })
  end)

  it("keeps what was typed after Ctrl-C or Telnet IP as the next line", function()
    reads({ "abc\3three\r\n", T.IAC .. "\244two\r\n" }, { "!interrupted", "three", "!interrupted", "two", "!closed" })
  end)

  it("reads lines of any length when max_line is math.huge", function()
    local long = ("x"):rep(70000)
    reads({ long .. "\r\n", "short\r\n" }, { long, "short", "!closed" }, { negotiate = false, max_line = math.huge })
  end)

  it("reports a timeout the same way", function()
    for _, direct in ipairs{ true, false } do
      H.run(function()
        local c, s = H.pair()
        local sess = session.new(direct and s or wrapped(s), { negotiate = false })
        sess:settimeout(0.05)
        assert.same({ nil, "timeout" }, { sess:read_line() })
        c:send("late\r\n")
        sess:settimeout(5)
        assert.equal("late", sess:read_line())
        c:close()
        sess:close()
      end)
    end
  end)
end)

describe("telnet session output written into the stream's buffer", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  -- the bytes a client receives for print and write, after the session
  -- has read `first` (negotiation to answer)
  local function wire(direct, first)
    local out
    H.run(function()
      local c, s = H.pair()
      local sess = session.new(direct and s or wrapped(s), { negotiate = false })
      c:send(first .. "go\r\n")
      assert.equal("go", sess:read_line())
      assert.truthy(sess:print("a\nb\r\nc\rd\255"))
      assert.truthy(sess:write("e\nf\r"))
      assert.truthy(sess:print(42))
      assert.truthy(sess:write(""))
      sess:flush()
      out = T.read_until(c, "42\r\n")
      c:close()
      sess:close()
      assert.same({ nil, "closed" }, { sess:print("after close") })
    end)
    return out
  end

  it("escapes IAC and applies the NVT line ends", function()
    local want = "a\r\nb\r\nc\r\0d\255\255\r\n" .. "e\r\nf\r\0" .. "42\r\n"
    assert.equal(want, wire(true, ""))
    assert.equal(want, wire(false, ""))
  end)

  it("raises on a write of a table and goes on writing after it", function()
    for _, direct in ipairs{ true, false } do
      H.run(function()
        local c, s = H.pair()
        local sess = session.new(direct and s or wrapped(s), { negotiate = false })
        assert.has_error(function() sess:write({}) end)
        assert.truthy(sess:print("still here"))
        sess:flush()
        assert.equal("still here\r\n", T.read_until(c, "\r\n"))
        c:close()
        sess:close()
      end)
    end
  end)

  it("under our BINARY still ends printed lines with CR LF", function()
    local will = T.IAC .. T.WILL .. "\0"
    local want = will .. "a\r\nb\r\nc\rd\255\255\r\n" .. "e\nf\r" .. "42\r\n"
    assert.equal(want, wire(true, T.IAC .. T.DO .. "\0"))
    assert.equal(want, wire(false, T.IAC .. T.DO .. "\0"))
  end)
end)

-- found by fuzz/binding_fuzz (fuzz/crashes/binding-telnet-line-cr-iac): an
-- IAC command between a line's CR (or CR NUL) and its LF.  The codec path
-- reads CR <command> LF as one line end (the command is no data); the line
-- taken from the stream's buffer must end the same way, not leave the LF
-- behind as an extra empty line.
describe("telnet session lines with a command inside the line end", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("reads CR, IAC NOP, LF as one line end", function()
    reads({ "one\r" .. T.IAC .. "\241\ntwo\r\n" }, { "one", "two", "!closed" })
  end)

  it("reads CR NUL, IAC NOP, LF as one line end", function()
    reads({ "one\r\0" .. T.IAC .. "\241\ntwo\r\n" }, { "one", "two", "!closed" })
  end)

  it("reads the fuzzer's input: CR, IAC NUL, LF", function()
    reads({ "\r" .. T.IAC .. "\0\nx\r\n" }, { "", "x", "!closed" })
  end)
end)
