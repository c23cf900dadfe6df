-- The command line: `parley serve telnet` and `parley telnet` without a terminal.
local H = require "helper"
local T = require "telnet.support.th"

local function parley_cmd(args, stdin)
  return T.sh(("cd %s && timeout 20 lua5.4 bin/parley %s < %s 2>&1; echo EXIT=$?"):format(T.quote(H.root), args, stdin or "/dev/null"))
end

describe("telnet command line", function()
  it("serve telnet --help names the bundled apps and the shell warning", function()
    local out = parley_cmd("serve telnet --help")
    assert.matches("%-%-listen", out)
    assert.matches("chat, echo, menu", out)
    assert.matches("CLEARTEXT", out)
    assert.matches("EXIT=0", out)
  end)

  it("refuses --shell without --users, and --app with --shell", function()
    assert.matches("needs %-%-users.*EXIT=2", parley_cmd("serve telnet --listen 127.0.0.1:0 --shell"))
    assert.matches("exclude.*EXIT=2", parley_cmd("serve telnet --listen 127.0.0.1:0 --shell --users /dev/null --app chat"))
  end)

  it("refuses an unknown app", function()
    assert.matches("no telnet app named 'nosuch'.*EXIT=2", parley_cmd("serve telnet --listen 127.0.0.1:0 --app nosuch"))
  end)

  it("parley telnet sends a file given as standard input and prints the replies", function()
    local srv = T.serve_child("--listen", "127.0.0.1:0", "--app", "echo")
    local dir = H.tmpdir()
    finally(function()
      srv:stop()
      H.rmdir(dir)
    end)
    local f = assert(io.open(dir .. "/in.txt", "w"))
    f:write("first line\nsecond \255 line\n")
    f:close()
    local out = T.sh(("cd %s && timeout 20 lua5.4 bin/parley telnet --wait 0.5 127.0.0.1 %d < %s 2>/dev/null; echo EXIT=$?")
      :format(T.quote(H.root), srv.port, T.quote(dir .. "/in.txt")))
    assert.equal("first line\r\nsecond \255 line\r\nEXIT=0\n", out)
  end)

  it("parley telnet reports a refused connection with status 1", function()
    local out = parley_cmd("telnet 127.0.0.1 1")
    assert.matches("connection refused", out)
    assert.matches("EXIT=1", out)
  end)
end)
