-- The Telnet server: negotiation, login, apps, idle timeout, shell mode.
local parley = require "parley"
local H = require "helper"
local T = require "telnet.support.th"
local telnet = require "parley.telnet"

describe("telnet server", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  describe("negotiation", function()
    it("learns the window size, the terminal types and the environment", function()
      H.run(function()
        local seen
        local srv = T.server{ app = function(sess)
          seen = { w = sess.width, h = sess.height, tt = sess.ttype, all = table.concat(sess.ttypes, ","),
                   user = sess.env.USER }
          sess:print("ready")
        end }
        local c = assert(telnet.client.connect("127.0.0.1", srv.port, {
          naws = { 132, 43 }, ttype = { "XTERM-256COLOR", "XTERM", "VT100" },
          environ = { USER = "zoe" }, timeout = 5 }))
        assert.truthy(c:expect("ready"))
        assert.same({ w = 132, h = 43, tt = "XTERM-256COLOR", all = "XTERM-256COLOR,XTERM,VT100", user = "zoe" }, seen)
        c:close()
        srv:close()
      end)
    end)

    it("reports a window resize to the app", function()
      H.run(function()
        local sizes = {}
        local srv = T.server{ app = function(sess)
          sess.on_resize = function(_, w, h) sizes[#sizes + 1] = w .. "x" .. h end
          sess:print("go")
          sess:read_line()
          sess:print("done")
        end }
        local c = assert(telnet.client.connect("127.0.0.1", srv.port, { naws = { 80, 24 }, timeout = 5 }))
        assert.truthy(c:expect("go\r\n"))
        assert.truthy(c:naws(100, 50))
        c:send("x")
        assert.truthy(c:expect("done"))
        assert.same({ "100x50" }, sizes)
        c:close()
        srv:close()
      end)
    end)

    it("sends nothing a plain client did not ask for when negotiate is false", function()
      H.run(function()
        local srv = T.server{ app = "echo", negotiate = false }
        local s = assert(parley.connect("127.0.0.1", srv.port, { timeout = 5 }))
        s:send("abc\r\n")
        assert.equal("abc\r\n", T.read_until(s, "\r\n"))
        s:close()
        srv:close()
      end)
    end)
  end)

  describe("login", function()
    it("logs a user in from the users file and runs the app", function()
      local path, dir = T.users_file()
      finally(function() H.rmdir(dir) end)
      H.run(function()
        local srv = T.server{ users = path, app = function(sess) sess:write("welcome " .. sess.user .. " $ ") sess:read_line() end }
        local c = assert(telnet.client.connect("127.0.0.1", srv.port, { timeout = 5 }))
        local ok, text = c:login("alice", "wonderland", { prompt = "%$ $" })
        assert.truthy(ok)
        assert.matches("welcome alice", text)
        c:close()
        srv:close()
      end)
    end)

    it("never echoes the password and turns echo off only for it", function()
      local path, dir = T.users_file()
      finally(function() H.rmdir(dir) end)
      H.run(function()
        local srv = T.server{ users = path, app = function(sess) sess:print("in") end }
        local s = assert(parley.connect("127.0.0.1", srv.port, { timeout = 5 }))
        T.read_until(s, "login: ")
        s:send("alice\r\n")
        local got = T.read_until(s, "Password: ")
        -- WILL ECHO before the password prompt: the client stops echoing
        assert.truthy(got:find(T.IAC .. T.WILL .. "\1", 1, true))
        s:send(T.IAC .. T.DO .. "\1")
        s:send("wonderland\r\n")
        got = T.read_until(s, "in\r\n")
        assert.falsy(got:find("wonderland", 1, true))
        assert.truthy(got:find(T.IAC .. T.WONT .. "\1", 1, true))
        s:close()
        srv:close()
      end)
    end)

    it("delays a failed login and says Login incorrect", function()
      local path, dir = T.users_file()
      finally(function() H.rmdir(dir) end)
      H.run(function()
        local srv = T.server{ users = path, login_delay = 0.4, app = function(sess) sess:write("in $ ") sess:read_line() end }
        local c = assert(telnet.client.connect("127.0.0.1", srv.port, { timeout = 5 }))
        local t0 = parley.now()
        local ok, err = c:login("alice", "wrong", { prompt = "%$ $" })
        assert.is_nil(ok)
        assert.equal("login failed", err)
        assert.is_true(parley.now() - t0 >= 0.4)
        -- a second try on the same connection works
        c:send("bob")
        assert.truthy(c:expect("Password: "))
        c:send("builder")
        assert.truthy(c:expect("in %$ $"))
        c:close()
        srv:close()
      end)
    end)

    it("hangs up after max_login_attempts failures", function()
      local path, dir = T.users_file()
      finally(function() H.rmdir(dir) end)
      H.run(function()
        local srv = T.server{ users = path, login_delay = 0.05, max_login_attempts = 2, app = "echo" }
        local c = assert(telnet.client.connect("127.0.0.1", srv.port, { timeout = 5 }))
        for _ = 1, 2 do
          assert.truthy(c:expect("login: $"))
          c:send("alice")
          assert.truthy(c:expect("Password: $"))
          c:send("nope")
        end
        assert.truthy(c:expect("too many failures; bye\r\n"))
        local d, err = c:read_some(3)
        assert.is_nil(d)
        assert.equal("closed", err)
        c:close()
        srv:close()
      end)
    end)

    it("takes users as a parley.mail.users object or a plain table", function()
      H.run(function()
        for _, u in ipairs{ require("parley.mail.users").from_table{ alice = "wonderland" },
                            { alice = "wonderland" } } do
          local srv = T.server{ users = u, login_delay = 0.05, app = function(sess) sess:write("hi " .. sess.user .. " $ ") sess:read_line() end }
          local c = assert(telnet.client.connect("127.0.0.1", srv.port, { timeout = 5 }))
          assert.is_nil(c:login("alice", "wrong", { prompt = "%$ $" }))
          c:send("alice")
          assert.truthy(c:expect("Password: "))
          c:send("wonderland")
          assert.truthy(c:expect("hi alice %$ $"))
          c:close()
          srv:close()
        end
      end)
    end)

    it("accepts an on_auth hook instead of a users file", function()
      H.run(function()
        local srv = T.server{ on_auth = function(u, p) return u == "x" and p == "y" end,
                              app = function(sess) sess:write("hello " .. sess.user .. " $ ") sess:read_line() end }
        local c = assert(telnet.client.connect("127.0.0.1", srv.port, { timeout = 5 }))
        assert.truthy(c:login("x", "y", { prompt = "%$ $" }))
        c:close()
        srv:close()
      end)
    end)
  end)

  describe("idle timeout", function()
    it("hangs up on a client that sends nothing", function()
      H.run(function()
        local srv = T.server{ app = "echo", idle_timeout = 0.3, negotiate = false }
        local s = assert(parley.connect("127.0.0.1", srv.port, { timeout = 5 }))
        local got, err = T.read_until(s, "never", 3)
        assert.matches("idle timeout", got)
        assert.equal("closed", err)
        s:close()
        srv:close()
      end)
    end)
  end)

  describe("shutdown", function()
    it("tells every session the server is shutting down before the line drops", function()
      H.run(function()
        local srv = T.server{ app = "echo", negotiate = false, grace = 5 }
        local s1 = assert(parley.connect("127.0.0.1", srv.port, { timeout = 5 }))
        local s2 = assert(parley.connect("127.0.0.1", srv.port, { timeout = 5 }))
        s1:send("ping\r\n")
        assert.equal("ping", s1:receive())
        s2:send("ping\r\n")
        assert.equal("ping", s2:receive())
        local t0 = parley.now()
        srv:close()
        assert.is_true(parley.now() - t0 < 2, "idle sessions do not hold the shutdown for the grace period")
        for _, s in ipairs{ s1, s2 } do
          local got, err = T.read_until(s, "never", 3)
          assert.matches("the server is shutting down", got)
          assert.equal("closed", err)
          s:close()
        end
      end)
    end)

    it("closes a server whose on_start raises, and passes the error on", function()
      H.run(function()
        local port
        local ok, err = pcall(T.server, { app = "echo", on_start = function(srv)
          port = srv.port
          error("start hook failed")
        end })
        assert.is_false(ok)
        assert.matches("start hook failed", err)
        assert.is_nil(parley.connect("127.0.0.1", port, { timeout = 1 }))
      end)
    end)
  end)

  describe("character mode", function()
    it("echoes typed keys, erases with backspace and hides a password", function()
      H.run(function()
        local lines = {}
        local srv = T.server{ negotiate = false, app = function(sess)
          sess:charmode(true)
          lines[1] = sess:read_line()
          lines[2] = sess:read_line{ echo = false }
          sess:print("ok")
        end }
        local s = assert(parley.connect("127.0.0.1", srv.port, { timeout = 5 }))
        T.read_until(s, T.IAC .. T.WILL .. "\1")
        s:send(T.IAC .. T.DO .. "\1" .. T.IAC .. T.DO .. "\3")
        s:send("ab")
        s:send("x\127c\r\0")
        s:send("secret\r\n")
        local got = T.read_until(s, "ok\r\n")
        assert.same({ "abc", "secret" }, lines)
        assert.truthy(got:find("abx\b \bc\r\n", 1, true))
        assert.falsy(got:find("secret", 1, true))
        s:close()
        srv:close()
      end)
    end)
  end)

  describe("bundled apps", function()
    it("menu shows the terminal type, the window size and the option states", function()
      H.run(function()
        local srv = T.server{ app = "menu" }
        local c = assert(telnet.client.connect("127.0.0.1", srv.port,
          { naws = { 90, 30 }, ttype = "VT220", timeout = 5 }))
        assert.truthy(c:expect("arrows.-q\r\n"))
        assert.is_true(c:enabled("echo", "him"))
        c:write("1")
        local _, before = c:expect("arrows")
        assert.matches("terminal type: VT220", before)
        assert.matches("window size:   90x30", before)
        c:write("2")
        _, before = c:expect("arrows")
        assert.matches("naws%s+us=no%s+him=yes", before)
        assert.matches("echo%s+us=yes", before)
        c:naws(100, 40)
        assert.truthy(c:expect("%[100x40%]"))
        c:write("q")
        assert.truthy(c:expect("bye"))
        c:close()
        srv:close()
      end)
    end)

    it("chat passes lines between two users and lists them", function()
      H.run(function()
        local srv = T.server{ app = "chat" }
        local a = assert(telnet.client.connect("127.0.0.1", srv.port, { timeout = 5 }))
        local b = assert(telnet.client.connect("127.0.0.1", srv.port, { timeout = 5 }))
        assert.truthy(a:expect("nickname: "))
        a:send("ann")
        assert.truthy(a:expect("welcome, ann"))
        assert.truthy(b:expect("nickname: "))
        b:send("ann")
        assert.truthy(b:expect("ann is taken"))
        assert.truthy(b:expect("nickname: "))
        b:send("ben")
        assert.truthy(a:expect("%* ben joined"))
        b:send("hello all")
        assert.truthy(a:expect("<ben> hello all\r\n"))
        a:send("/who")
        assert.truthy(a:expect("here: ann, ben"))
        b:send("/quit")
        assert.truthy(a:expect("ben left"))
        a:close()
        b:close()
        srv:close()
      end)
    end)

    it("echo sends each line back", function()
      H.run(function()
        local srv = T.server{ app = "echo" }
        local c = assert(telnet.client.connect("127.0.0.1", srv.port, { timeout = 5 }))
        c:send("one")
        c:send("two \255 three")
        assert.equal("one", c:read_line())
        assert.equal("two \255 three", c:read_line())
        c:close()
        srv:close()
      end)
    end)

    it("refuses an unknown app name", function()
      assert.has_error(function() telnet.server.load_app("no_such_app") end)
    end)
  end)

  describe("shell mode", function()
    it("gives a logged-in user a shell on a pty sized by NAWS", function()
      H.run(function()
        local srv = T.server{ on_auth = function(u, p) return u == "lab" and p == "pw" end,
                              shell = { argv = { "/bin/sh" }, as = "self", login = false, env = { PS1 = "lab$ " } } }
        local c = assert(telnet.client.connect("127.0.0.1", srv.port,
          { naws = { 77, 22 }, ttype = "XTERM", timeout = 5 }))
        assert.truthy(c:login("lab", "pw", { prompt = "lab%$ $" }))
        c:send("echo $((6*7)) $TERM; stty size")
        assert.truthy(c:expect("42 xterm\r\n22 77\r\n"))
        c:naws(120, 33)
        c:send("stty size")
        assert.truthy(c:expect("33 120\r\n"))
        c:send("exit")
        local d, err
        for _ = 1, 20 do
          d, err = c:read_some(3)
          if not d then break end
        end
        assert.equal("closed", err)
        c:close()
        srv:close()
      end)
    end)

    it("runs the shell named in the users file's shell field", function()
      local dir = H.tmpdir()
      finally(function() H.rmdir(dir) end)
      local sh = dir .. "/labsh"
      local f = assert(io.open(sh, "w"))
      f:write("#!/bin/sh\necho \"users-file shell $((6*7))\"\n")
      f:close()
      os.execute("chmod +x " .. T.quote(sh))
      local path, udir = T.users_file("lab:{PLAIN}pw:::::" .. sh .. "\n")
      finally(function() H.rmdir(udir) end)
      H.run(function()
        local srv = T.server{ users = path, shell = { as = "self", login = false } }
        local c = assert(telnet.client.connect("127.0.0.1", srv.port, { timeout = 5 }))
        local ok, err, text = c:login("lab", "pw", { prompt = "users%-file shell 42" })
        assert.truthy(ok, tostring(err) .. tostring(text))
        c:close()
        srv:close()
      end)
    end)

    it("refuses to start without a login", function()
      assert.has_error(function()
        telnet.server.serve{ listen = "127.0.0.1:0", shell = true, signals = false }
      end)
    end)

    it("refuses a user with no system account in account mode", function()
      H.run(function()
        local srv = T.server{ on_auth = function() return true end, shell = true }
        local c = assert(telnet.client.connect("127.0.0.1", srv.port, { timeout = 5 }))
        local ok, err, text = c:login("no-such-account-xyz", "pw", { prompt = "no system account" })
        assert.truthy(ok, tostring(err) .. tostring(text))
        c:close()
        srv:close()
      end)
    end)
  end)
end)
