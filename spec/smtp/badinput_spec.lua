-- The SMTP server facing bad input and faults: smuggling, limits, order,
-- unknown commands, vanished and slow clients.
local U = require "smtp.support.util"
local H = U.H
local parley = require "parley"

local with_server = U.with_server

local function start_data(r, to)
  assert.are.equal(250, (r:cmd("MAIL FROM:<a@ext.org>")))
  assert.are.equal(250, (r:cmd("RCPT TO:<" .. (to or "u") .. "@example.org>")))
  assert.are.equal(354, (r:cmd("DATA")))
end

describe("smtp server against SMTP smuggling", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  -- each ending a lenient server might take for the end of data, followed
  -- by a smuggled second transaction; only CRLF.CRLF ends DATA
  local endings = {
    ["\\n.\\n"] = "\n.\n", ["\\r.\\r"] = "\r.\r", ["\\n.\\r\\n"] = "\n.\r\n",
    ["\\r\\n.\\n"] = "\r\n.\n", ["\\r.\\r\\n"] = "\r.\r\n", ["\\r\\n.\\r"] = "\r\n.\r",
    ["\\n.\\r"] = "\n.\r", ["\\r.\\n"] = "\r.\n", ["\\r\\n\\x00.\\r\\n"] = "\r\n\0.\r\n",
  }
  for name, ending in pairs(endings) do
    it("does not end DATA at " .. name .. " and refuses the message with 550 5.6.0", function()
      with_server({}, function(srv, root)
        local r = U.raw(srv.port):greet()
        start_data(r, "victim")
        r:send("Subject: real\r\n\r\nhello" .. ending ..
          "MAIL FROM:<admin@example.org>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n")
        local code, text = r:reply()
        r:close()
        if ending:find("%z") then
          -- a NUL is no line-ending trick: the message is one message
          assert.are.equal(250, code, text)
          local got = U.delivered(root, "victim")
          assert.are.equal(1, #got)
          assert.truthy(got[1]:find("smuggled", 1, true))
        else
          assert.are.equal(550, code, text)
          assert.truthy(text:find("5.6.0", 1, true))
          assert.are.same({}, U.delivered(root, "victim"))
        end
      end)
    end)
  end

  it("normalises bare line endings to CRLF when configured", function()
    with_server({ bare = "normalize" }, function(srv, root)
      local r = U.raw(srv.port):greet()
      start_data(r)
      assert.are.equal(250, (r:cmd("a\nb\rc\r\n.")))
      r:close()
      assert.are.equal("a\r\nb\r\nc\r\n", U.strip_trace(U.delivered(root, "u")[1]))
    end)
  end)
end)

describe("smtp server limits", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("refuses a message with a 1001-byte text line", function()
    with_server({}, function(srv, root)
      local r = U.raw(srv.port):greet()
      start_data(r)
      local code, text = r:cmd(("x"):rep(999) .. "\r\n.")
      assert.are.equal(550, code, text)
      start_data(r)
      assert.are.equal(250, (r:cmd(("x"):rep(998) .. "\r\n.")))
      r:close()
      assert.are.equal(1, #U.delivered(root, "u"))
    end)
  end)

  it("refuses a 513-byte command line with 500 and goes on", function()
    with_server({}, function(srv)
      local r = U.raw(srv.port):greet()
      local code = r:cmd("MAIL FROM:<" .. ("a"):rep(60) .. "@" .. ("b"):rep(500) .. ".org>")
      assert.are.equal(500, code)
      assert.are.equal(250, (r:cmd("NOOP")))
      r:close()
    end)
  end)

  it("answers the 101st RCPT with 452 4.5.3 and delivers to the first 100", function()
    with_server({ sink = true }, function(srv)
      local r = U.raw(srv.port):greet()
      r:cmd("MAIL FROM:<a@ext.org>")
      for i = 1, 100 do assert.are.equal(250, (r:cmd("RCPT TO:<r" .. i .. "@example.org>"))) end
      local code, text = r:cmd("RCPT TO:<r101@example.org>")
      assert.are.equal(452, code)
      assert.truthy(text:find("4.5.3", 1, true))
      assert.are.equal(354, (r:cmd("DATA")))
      assert.are.equal(250, (r:cmd("x\r\n.")))
      r:close()
    end)
  end)

  it("refuses an oversize message declared with SIZE before any data", function()
    with_server({ max_size = 1000 }, function(srv)
      local r = U.raw(srv.port):greet()
      local code, text = r:cmd("MAIL FROM:<a@ext.org> SIZE=1001")
      assert.are.equal(552, code)
      assert.truthy(text:find("5.3.4", 1, true))
      assert.are.equal(250, (r:cmd("MAIL FROM:<a@ext.org> SIZE=1000")))
      r:close()
    end)
  end)

  it("refuses an oversize message that lied about its size and stores nothing", function()
    with_server({ max_size = 1000 }, function(srv, root)
      local r = U.raw(srv.port):greet()
      start_data(r)
      local code, text = r:cmd(("y"):rep(100) .. ("\r\n" .. ("z"):rep(98)):rep(20) .. "\r\n.")
      assert.are.equal(552, code, text)
      assert.are.equal(250, (r:cmd("NOOP")))
      r:close()
      assert.are.same({}, U.delivered(root, "u"))
      assert.are.same({}, U.files(root .. "/u/tmp"))
    end)
  end)

  it("refuses an oversize BDAT message", function()
    with_server({ max_size = 100 }, function(srv, root)
      local r = U.raw(srv.port):greet()
      r:cmd("MAIL FROM:<a@ext.org>")
      r:cmd("RCPT TO:<u@example.org>")
      r:send("BDAT 200 LAST\r\n" .. ("b"):rep(198) .. "\r\n")
      assert.are.equal(552, (r:reply()))
      assert.are.equal(250, (r:cmd("NOOP")))
      r:close()
      assert.are.same({}, U.delivered(root, "u"))
    end)
  end)

  it("closes with 421 after too many errors, slowing down before that", function()
    with_server({ max_errors = 5, error_delay = 0.1, error_delay_after = 2 }, function(srv)
      local r = U.raw(srv.port):greet()
      local t0 = parley.now()
      for _ = 1, 4 do assert.are.equal(500, (r:cmd("BOGUS"))) end
      assert.is_true(parley.now() - t0 >= 0.18, "errors 3 and 4 were delayed")
      assert.are.equal(421, (r:cmd("BOGUS")))
      assert.is_nil((r:reply()))
      r:close()
    end)
  end)
end)

describe("smtp server command order", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("answers commands out of order with 503", function()
    with_server({}, function(srv)
      local r = U.raw(srv.port)
      r:reply()
      assert.are.equal(503, (r:cmd("MAIL FROM:<a@ext.org>")), "MAIL before EHLO")
      r:cmd("EHLO x")
      assert.are.equal(503, (r:cmd("RCPT TO:<u@example.org>")), "RCPT before MAIL")
      assert.are.equal(503, (r:cmd("DATA")), "DATA before MAIL")
      r:cmd("MAIL FROM:<a@ext.org>")
      assert.are.equal(503, (r:cmd("MAIL FROM:<a@ext.org>")), "nested MAIL")
      assert.are.equal(554, (r:cmd("DATA")), "DATA without a valid RCPT")
      r:close()
    end)
  end)

  it("answers unknown commands with 500 5.5.2 and bad syntax with 501", function()
    with_server({}, function(srv)
      local r = U.raw(srv.port):greet()
      local code, text = r:cmd("XYZZY plugh")
      assert.are.equal(500, code)
      assert.truthy(text:find("5.5.2", 1, true))
      assert.are.equal(501, (r:cmd("MAIL FROM:a@ext.org")))
      assert.are.equal(501, (r:cmd("EHLO")))
      assert.are.equal(555, (r:cmd("MAIL FROM:<a@ext.org> FOO=BAR")))
      assert.are.equal(502, (r:cmd("STARTTLS")))
      r:close()
    end)
  end)

  it("answers a bare LF command line with 500", function()
    with_server({}, function(srv)
      local r = U.raw(srv.port):greet()
      r:send("NOOP\n")
      assert.are.equal(500, (r:reply()))
      assert.are.equal(250, (r:cmd("NOOP")))
      r:close()
    end)
  end)
end)

describe("smtp server faults", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("delivers nothing and leaves nothing in tmp/ when the client vanishes mid-DATA", function()
    with_server({}, function(srv, root)
      local r = U.raw(srv.port):greet()
      start_data(r, "gone")
      r:send(("partial line\r\n"):rep(1000))
      parley.sleep(0.1)
      r:close()
      for _ = 1, 50 do
        if srv:connections() == 0 then break end
        parley.sleep(0.02)
      end
      assert.are.equal(0, srv:connections())
      assert.are.same({}, U.files(root .. "/gone/new"))
      assert.are.same({}, U.files(root .. "/gone/tmp"))
    end)
  end)

  it("ends the session without a misleading reply when the client vanishes inside AUTH", function()
    local said = {}
    local users = U.users{ u = { password = "pw" } }
    with_server({ users = users, transcript = function(e) said[#said + 1] = e end },
      function(srv)
        local r = U.raw(srv.port):greet()
        r:send("AUTH PLAIN\r\n")
        assert.are.equal(334, (r:reply()))
        r:close()
        for _ = 1, 50 do
          if srv:connections() == 0 then break end
          parley.sleep(0.02)
        end
        assert.are.equal(0, srv:connections())
        for _, e in ipairs(said) do
          assert.is_nil((e.text or ""):match("^5%d%d"), "replied to a client that was gone: " .. tostring(e.text))
        end
        -- and the next client logs in
        local r2 = U.raw(srv.port):greet()
        assert.are.equal(235, (r2:cmd("AUTH PLAIN " .. require("parley.smtp.sasl").b64("\0u\0pw"))))
        r2:close()
      end)
  end)

  it("gives a slow client 421 when the idle timeout passes", function()
    with_server({ idle_timeout = 0.3 }, function(srv)
      local r = U.raw(srv.port):greet()
      local t, code, text = H.timed(r.reply, r)
      assert.are.equal(421, code, text)
      assert.is_true(t >= 0.25 and t < 3)
      r:close()
    end)
  end)

  it("gives up on a client that stalls inside DATA and delivers nothing", function()
    with_server({ data_timeout = 0.3 }, function(srv, root)
      local r = U.raw(srv.port):greet()
      start_data(r, "slow")
      r:send("Subject: x\r\n\r\nstarted")
      local code = r:reply()
      assert.are.equal(421, code)
      r:close()
      assert.are.same({}, U.files(root .. "/slow/new"))
      assert.are.same({}, U.files(root .. "/slow/tmp"))
    end)
  end)
end)
