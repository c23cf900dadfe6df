-- Found by the faults lab (issue 11): in line mode, what a user typed
-- after Ctrl-C / Telnet IP (RFC 854: IP interrupts the process; what
-- follows is new input) was dropped with the interrupted line, so the
-- first command after an interrupt was lost.
local lab = require "hardening.support.lab"

describe("telnet line mode after an interrupt", function()
  before_each(lab.H.fd_snapshot)
  after_each(lab.H.fd_check)

  local srv
  setup(function() srv = lab.serve("telnet", { "--listen", "127.0.0.1:0", "--app", "echo" }) end)
  teardown(function() srv:stop() end)

  local function after(bytes, want)
    local c = lab.connect(srv.port, 5)
    c:send("one\r\n"):upto("one$")
    c:send(bytes)
    local ok, err = pcall(c.upto, c, "^" .. want .. "$")
    c:close()
    assert(ok, "the line typed after the interrupt was not echoed: " .. tostring(err))
  end

  it("keeps a line typed right after IAC IP in the same segment", function()
    after("\255\244two\r\n", "two\r?")
  end)

  it("keeps a line typed after Ctrl-C", function()
    after("abc\3three\r\n", "three\r?")
  end)

  it("reads the next line normally when IAC IP ends a line", function()
    after("\255\244\r\nfour\r\n", "four\r?")
  end)
end)
