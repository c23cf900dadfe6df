-- Interop with third-party Telnet programs: Debian's telnet(1) against our
-- server (driven in tmux), our client against inetutils-telnetd (started
-- by our own inetd-style listener, spec/telnet/support/inetd.lua), and our
-- interactive client in a real terminal.
local H = require "helper"
local T = require "telnet.support.th"
local telnet = require "parley.telnet"

local TELNETD = "/usr/sbin/telnetd"   -- inetutils-telnetd (dpkg -L inetutils-telnetd)

local have = H.have

-- a private tmux server; every call bounded by `timeout`
local Tmux = {}
Tmux.__index = Tmux
local function tmux(cmd, w, h)
  local self = setmetatable({ sock = "parley-telnet-spec-" .. os.time() .. "-" .. math.random(1e6) }, Tmux)
  T.sh(("timeout 10 tmux -L %s new-session -d -x %d -y %d %s"):format(self.sock, w or 100, h or 30, T.quote(cmd)))
  T.sh(("timeout 5 tmux -L %s set-option -g remain-on-exit on"):format(self.sock))
  return self
end
function Tmux:keys(...)
  local k = {}
  for i, a in ipairs{ ... } do k[i] = T.quote(a) end
  T.sh(("timeout 5 tmux -L %s send-keys %s"):format(self.sock, table.concat(k, " ")))
end
function Tmux:screen()
  return T.sh(("timeout 5 tmux -L %s capture-pane -p"):format(self.sock))
end
-- waits until the screen shows `needle` (plain); the screen
function Tmux:wait_for(needle, limit)
  local deadline = os.time() + (limit or 8)
  local s
  repeat
    s = self:screen()
    if s:find(needle, 1, true) then return s end
    os.execute("sleep 0.1")
  until os.time() > deadline
  return s
end
function Tmux:resize(w, h)
  T.sh(("timeout 5 tmux -L %s resize-window -x %d -y %d"):format(self.sock, w, h))
end
function Tmux:kill()
  T.sh(("timeout 5 tmux -L %s kill-server"):format(self.sock))
end

describe("telnet interop #interop", function()
  it("Debian telnet logs in to our server, runs a menu command and sees the output #interop", function()
    assert.truthy(have("telnet"), "telnet is not installed (apt-get install telnet)")
    assert.truthy(have("tmux"), "tmux is not installed (apt-get install tmux)")
    local path, dir = T.users_file()
    local srv = T.serve_child("--listen", "127.0.0.1:0", "--users", path, "--app", "menu")
    local tm
    finally(function()
      if tm then tm:kill() end
      srv:stop()
      H.rmdir(dir)
    end)
    tm = tmux("telnet 127.0.0.1 " .. srv.port, 100, 30)
    assert.matches("login:", tm:wait_for("login:"))
    tm:keys("alice", "Enter")
    assert.matches("Password:", tm:wait_for("Password:"))
    tm:keys("wonderland", "Enter")
    assert.matches("parley telnet menu", tm:wait_for("parley telnet menu"))
    tm:keys("1")
    local screen = tm:wait_for("window size:")
    assert.matches("user:%s+alice", screen)
    assert.matches("window size:%s+100x30", screen)
    assert.matches("terminal type:%s+%S+", screen)
    assert.matches("mode:%s+character", screen)
    assert.falsy(screen:find("wonderland", 1, true))
    tm:keys("q")
    assert.matches("Connection closed by foreign host", tm:wait_for("Connection closed"))
  end)

  it("Debian telnet stays in line mode with the echo app and gets each line back #interop", function()
    assert.truthy(have("telnet") and have("tmux"), "telnet and tmux are needed")
    local srv = T.serve_child("--listen", "127.0.0.1:0", "--app", "echo")
    local tm
    finally(function()
      if tm then tm:kill() end
      srv:stop()
    end)
    tm = tmux("telnet 127.0.0.1 " .. srv.port, 80, 24)
    tm:wait_for("Escape character")
    os.execute("sleep 0.5")
    tm:keys("hello parley", "Enter")
    local screen = tm:wait_for("hello parley\nhello parley")
    -- the terminal echoed the line locally, the server sent it back once
    assert.equal(2, T.count(screen, "hello parley"))
  end)

  it("our client reaches inetutils-telnetd's login prompt through our inetd #interop", function()
    assert.truthy(io.open(TELNETD) and true, TELNETD .. " is missing (apt-get install inetutils-telnetd)")
    local inetd = H.child("../telnet/support/inetd.lua", TELNETD, "-h")
    finally(function()
      inetd:kill("TERM")
      inetd:finish()
    end)
    H.run(function()
      local c = assert(telnet.client.connect("127.0.0.1", inetd.port,
        { naws = { 80, 24 }, ttype = "XTERM", timeout = 10 }))
      local m = c:expect("login: ?$")
      assert.truthy(m, "no login prompt; got: " .. c:buffered())
      -- telnetd negotiated with us: it echoes, and it asked for our terminal
      assert.is_true(c:enabled("echo", "him"))
      assert.is_true(c:enabled("ttype", "us"))
      assert.is_true(c:enabled("naws", "us"))
      c:close()
    end)
  end)

  it("parley telnet goes raw when the server echoes, sends resizes, quits on Ctrl-] and keeps a transcript #interop", function()
    assert.truthy(have("tmux"), "tmux is not installed")
    local srv = T.serve_child("--listen", "127.0.0.1:0", "--app", "menu")
    local dir = H.tmpdir()
    local tr = dir .. "/transcript.txt"
    local tm
    finally(function()
      if tm then tm:kill() end
      srv:stop()
      H.rmdir(dir)
    end)
    tm = tmux(("cd %s && lua5.4 bin/parley telnet --transcript %s 127.0.0.1 %d; echo EXIT=$?")
      :format(T.quote(H.root), T.quote(tr), srv.port), 100, 30)
    assert.matches("parley telnet menu", tm:wait_for("[100x30]"))
    tm:keys("2")     -- one key, no Enter: the terminal is raw
    assert.matches("naws%s+us=no%s+him=yes", tm:wait_for("naws "))
    tm:resize(90, 25)
    assert.matches("%[90x25%]", tm:wait_for("[90x25]"))
    tm:keys("C-]")
    assert.matches("EXIT=0", tm:wait_for("EXIT="))
    local f = assert(io.open(tr))
    local text = f:read("a")
    f:close()
    assert.matches("parley telnet menu", text)
  end)

  it("parley telnet stays cooked against a line server and quits on Ctrl-] #interop", function()
    assert.truthy(have("tmux"), "tmux is not installed")
    local srv = T.serve_child("--listen", "127.0.0.1:0", "--app", "echo")
    local tm
    finally(function()
      if tm then tm:kill() end
      srv:stop()
    end)
    tm = tmux(("cd %s && lua5.4 bin/parley telnet 127.0.0.1 %d; echo EXIT=$?"):format(T.quote(H.root), srv.port), 80, 24)
    tm:wait_for("Escape key")
    os.execute("sleep 0.3")
    tm:keys("abc", "BSpace", "d", "Enter")   -- the terminal edits the line
    assert.matches("abd\nabd", tm:wait_for("abd\nabd"))
    tm:keys("C-]")
    assert.matches("EXIT=0", tm:wait_for("EXIT="))
  end)
end)
