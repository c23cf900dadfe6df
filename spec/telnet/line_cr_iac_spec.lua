-- A found by fuzz/binding_fuzz (fuzz/crashes/binding-telnet-line-cr-iac):
-- an IAC command between a line's CR (or CR NUL) and its LF.  The codec
-- path reads CR <command> LF as one line end (the command is no data);
-- the line taken from the stream's buffer must end the same way, not
-- leave the LF behind as an extra empty line.
local parley = require "parley"
local H = require "helper"
local T = require "telnet.support.th"
local session = require "parley.telnet.session"

-- a stream of the app's own: the session cannot take the stream's C paths
local function wrapped(conn)
  return setmetatable({}, { __index = function(_, k)
    return function(_, ...) return conn[k](conn, ...) end
  end })
end

-- the lines read_line gives for bytes sent at once (then the client
-- closes): lines, and "!err" for errors
local function read_lines(bytes, direct)
  local got = {}
  H.run(function()
    local c, s = H.pair()
    local sess = session.new(direct and s or wrapped(s), { negotiate = false })
    assert.equal(direct, sess.direct)
    sess:settimeout(5)
    local reader = H.go(function()
      for _ = 1, 20 do
        local line, err = sess:read_line()
        got[#got + 1] = line or "!" .. err
        if err then break end
      end
    end)
    c:send(bytes)
    c:flush()
    parley.sleep(0.02)
    c:close()
    H.join(reader)
    sess:close()
  end)
  return got
end

local function reads(bytes, want)
  assert.same(want, read_lines(bytes, true))
  assert.same(want, read_lines(bytes, false))
end

describe("telnet session lines with a command inside the line end", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("reads CR, IAC NOP, LF as one line end", function()
    reads("one\r" .. T.IAC .. "\241\ntwo\r\n", { "one", "two", "!closed" })
  end)

  it("reads CR NUL, IAC NOP, LF as one line end", function()
    reads("one\r\0" .. T.IAC .. "\241\ntwo\r\n", { "one", "two", "!closed" })
  end)

  it("reads the fuzzer's input: CR, IAC NUL, LF", function()
    reads("\r" .. T.IAC .. "\0\nx\r\n", { "", "x", "!closed" })
  end)
end)
