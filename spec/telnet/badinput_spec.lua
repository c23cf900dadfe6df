-- Hostile and broken peers against the Telnet server.
local parley = require "parley"
local H = require "helper"
local T = require "telnet.support.th"
local core = require "parley.core"
local telnet = require "parley.telnet"

local tn = core.telnet

-- counts IAC WILL/WONT/DO/DONT messages in raw bytes
local function negotiations(bytes)
  local n = 0
  for _ in bytes:gmatch("\255[\251-\254].") do n = n + 1 end
  return n
end

-- a server whose app records its sessions
local function server(opts)
  local sessions = {}
  opts.app = opts.app or function(sess)
    sessions[#sessions + 1] = sess
    while true do
      local line, err = sess:read_line()
      if not line then
        if err ~= "line too long" then return end
      else
        sess:print("echo:" .. line)
      end
    end
  end
  return T.server(opts), sessions
end

describe("telnet server under bad input", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("never answers a WILL/DO flood with more replies than requests, and serves others meanwhile", function()
    H.run(function()
      local srv = server{ negotiation_wait = 0.05 }
      local s = assert(parley.connect("127.0.0.1", srv.port, { timeout = 5 }))
      local got = T.drain(s, 0.2)        -- the server's own opening requests
      local sent = 0
      local reader = H.go(function() return T.drain(s, 1.2) end)
      local flood = H.go(function()
        local t_end = parley.now() + 0.8
        while parley.now() < t_end do
          s:send(T.IAC .. T.WILL .. "\99" .. T.IAC .. T.DO .. "\98" .. T.IAC .. T.WILL .. "\31" .. T.IAC .. T.DO .. "\1")
          sent = sent + 4
          parley.sleep(0.001)
        end
      end)
      -- another client is served while the flood goes on
      parley.sleep(0.2)
      local c = assert(telnet.client.connect("127.0.0.1", srv.port, { timeout = 5 }))
      local t0 = parley.now()
      c:send("still there?")
      assert.truthy(c:expect("echo:still there%?"))
      assert.is_true(parley.now() - t0 < 0.5)
      H.join(flood)
      local replies = H.join(reader, 5)
      assert.is_true(sent > 50)
      assert.is_true(negotiations(replies) <= sent, negotiations(replies) .. " replies to " .. sent)
      -- RFC 1143: each WILL/DO of an unknown option is refused (one reply
      -- each, half the flood); a repeated request for an option already
      -- on (NAWS, ECHO) gets no answer at all
      assert.is_true(negotiations(replies) <= sent / 2 + 4, negotiations(replies) .. " replies to " .. sent)
      c:close()
      s:close()
      assert.truthy(got)
      srv:close()
    end)
  end)

  it("does not loop with a peer that mirrors every refusal", function()
    H.run(function()
      local srv = server{ negotiation_wait = 0.3 }
      local s = assert(parley.connect("127.0.0.1", srv.port, { timeout = 5 }))
      local mirror = { ["\251"] = "\254", ["\252"] = "\254", ["\253"] = "\252", ["\254"] = "\252" }
      local received, sent = 0, 0
      local t_end = parley.now() + 1
      while parley.now() < t_end do
        s:settimeout(math.max(0.001, t_end - parley.now()))
        local d = s:receive_some()
        if not d then break end
        for verb, opt in d:gmatch("\255([\251-\254])(.)") do
          received = received + 1
          s:send(T.IAC .. mirror[verb] .. opt)
          sent = sent + 1
        end
      end
      -- the three opening DOs, then silence
      assert.is_true(received <= 6, received .. " negotiations received")
      s:close()
      srv:close()
    end)
  end)

  it("discards a 1 MiB subnegotiation with one error, bounded memory, and the connection survives", function()
    H.run(function()
      local srv, sessions = server{ negotiate = false }
      local s = assert(parley.connect("127.0.0.1", srv.port, { timeout = 5 }))
      s:send("hi\r\n")
      assert.equal("echo:hi\r\n", T.read_until(s, "\r\n"))
      collectgarbage()
      local before = collectgarbage("count")
      local chunk = ("x"):rep(65536)
      s:send(T.IAC .. T.SB .. "\31")
      for _ = 1, 16 do s:send(chunk) end
      s:send(T.IAC .. T.SE .. "after\r\n")
      assert.equal("echo:after\r\n", T.read_until(s, "\r\n"))
      collectgarbage()
      local growth = collectgarbage("count") - before
      assert.is_true(growth < 1024, ("Lua heap grew %.0f KiB"):format(growth))
      assert.equal(1, sessions[1].errors)
      assert.equal("subnegotiation too long", sessions[1].last_error)
      s:close()
      srv:close()
    end)
  end)

  it("holds a lone IAC at the end of a read until the next byte", function()
    H.run(function()
      local srv = server{ negotiate = false }
      local s = assert(parley.connect("127.0.0.1", srv.port, { timeout = 5 }))
      s:send("ab\255")
      s:flush()
      parley.sleep(0.05)
      s:send("\255cd\255")
      s:flush()
      parley.sleep(0.05)
      s:send("\241e\r\n")     -- IAC NOP split from its IAC
      assert.equal("echo:ab\255\255cde\r\n", T.read_until(s, "\r\n"))
      s:close()
      srv:close()
    end)
  end)

  it("ignores IAC SE without SB and goes on", function()
    H.run(function()
      local srv, sessions = server{ negotiate = false }
      local s = assert(parley.connect("127.0.0.1", srv.port, { timeout = 5 }))
      s:send("x" .. T.IAC .. T.SE .. "y\r\n")
      assert.equal("echo:xy\r\n", T.read_until(s, "\r\n"))
      assert.equal("se without sb", sessions[1].last_error)
      s:close()
      srv:close()
    end)
  end)

  it("reads NAWS values containing 255 (doubled IAC)", function()
    H.run(function()
      local srv, sessions = server{ negotiate = false }
      local s = assert(parley.connect("127.0.0.1", srv.port, { timeout = 5 }))
      s:send(T.IAC .. T.WILL .. "\31")
      s:send(T.IAC .. T.SB .. "\31" .. "\0\255\255" .. "\255\255\255\255" .. T.IAC .. T.SE .. "a\r\n")
      assert.matches("echo:a\r\n", T.read_until(s, "echo:a\r\n"))
      assert.equal(255, sessions[1].width)
      assert.equal(65535, sessions[1].height)
      s:close()
      srv:close()
    end)
  end)

  it("stops asking for terminal types from a client whose list never repeats", function()
    H.run(function()
      local srv, sessions = server{ negotiation_wait = 2 }
      local s = assert(parley.connect("127.0.0.1", srv.port, { timeout = 5 }))
      T.read_until(s, T.IAC .. T.DO .. "\24")
      s:send(T.IAC .. T.WILL .. "\24")
      local sends, n = 0, 0
      local t_end = parley.now() + 1.5
      local pending = ""
      while parley.now() < t_end do
        s:settimeout(math.max(0.001, t_end - parley.now()))
        local d = s:receive_some()
        if not d then break end
        pending = pending .. d
        local k = T.count(pending, tn.ttype_send())
        for _ = 1, k do
          n = n + 1
          s:send(tn.ttype_is("TERM-" .. n))
        end
        sends = sends + k
        pending = pending:gsub(tn.ttype_send():gsub("%p", "%%%0"), "")
        if sends > 100 then break end
      end
      assert.is_true(sends >= 2 and sends <= 17, sends .. " TTYPE SENDs")
      s:send("z\r\n")
      T.read_until(s, "echo:z")
      assert.equal("TERM-1", sessions[1].ttype)
      assert.is_true(#sessions[1].ttypes <= 16)
      s:close()
      srv:close()
    end)
  end)

  it("round-trips every byte value through BINARY mode over a real socket", function()
    H.run(function()
      local srv = T.server{ app = "echo" }
      local c = assert(telnet.client.connect("127.0.0.1", srv.port, { binary = true, timeout = 5 }))
      c:enable("binary", "us")
      c:enable("binary", "him")
      c:send("sync")
      assert.truthy(c:expect("sync\r\n"))
      assert.is_true(c:enabled("binary", "us"))
      assert.is_true(c:enabled("binary", "him"))
      local all = {}
      for i = 0, 255 do all[#all + 1] = string.char(i) end
      local data = table.concat(all)
      data = data .. "\r" .. "\r\n" .. "\255\255" .. "\r\0" .. data:reverse()
      c:write(data)
      local got = ""
      while #got < #data do
        local d = assert(c:read_some(5))
        got = got .. d
      end
      assert.equal(data, got)
      c:close()
      srv:close()
    end)
  end)
end)
