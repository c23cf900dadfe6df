local core = require "parley.core"
local telnet = core.telnet

local IAC, SE, SB, WILL, WONT, DO, DONT = 255, 240, 250, 251, 252, 253, 254
local B = string.char

-- Feeds the chunks one after the other and gathers the results as if the
-- whole had come at once: events get a global `at`.
local function feed_chunks(t, chunks)
  local data, events, reply = {}, {}, {}
  local total = 0
  for _, chunk in ipairs(chunks) do
    local d, evs, r = t:feed(chunk)
    assert(type(d) == "string" and type(evs) == "table" and type(r) == "string")
    for _, ev in ipairs(evs) do
      ev.at = ev.at + total
      events[#events + 1] = ev
    end
    total = total + #d
    data[#data + 1] = d
    reply[#reply + 1] = r
  end
  return table.concat(data), events, table.concat(reply)
end

local function types(events)
  local out = {}
  for i, ev in ipairs(events) do out[i] = ev.type end
  return out
end

local function neg(verb, opt) return B(IAC, verb, opt) end

describe("telnet data", function()
  it("passes plain data through unchanged", function()
    local t = telnet.new()
    local d, evs, r = t:feed("hello world")
    assert.equal("hello world", d)
    assert.same({}, evs)
    assert.equal("", r)
  end)

  it("returns empty data and no events for an empty read", function()
    local d, evs, r = telnet.new():feed("")
    assert.equal("", d)
    assert.same({}, evs)
    assert.equal("", r)
  end)

  it("turns IAC IAC into one 255 byte", function()
    local d = telnet.new():feed("a" .. B(IAC, IAC) .. "b" .. B(IAC, IAC))
    assert.equal("a" .. B(255) .. "b" .. B(255), d)
  end)

  it("keeps CR LF as \\r\\n by default", function()
    assert.equal("one\r\ntwo\r\n", (telnet.new():feed("one\r\ntwo\r\n")))
  end)

  it("delivers CR LF as \\n with newline = lf", function()
    local t = telnet.new{newline = "lf"}
    assert.equal("one\ntwo\n", (t:feed("one\r\ntwo\r\n")))
  end)

  it("turns CR NUL into a bare CR", function()
    assert.equal("a\rb", (telnet.new():feed("a\r\0b")))
    assert.equal("a\rb", (telnet.new{newline = "lf"}:feed("a\r\0b")))
  end)

  it("keeps a bare CR followed by another byte", function()
    assert.equal("a\rb\r" .. B(255), (telnet.new():feed("a\rb\r" .. B(IAC, IAC))))
    assert.equal("a\rb", (telnet.new{newline = "lf"}:feed("a\rb")))
  end)

  it("keeps a NUL that does not follow a CR", function()
    assert.equal("a\0b", (telnet.new():feed("a\0b")))
  end)

  it("waits for the byte after a CR that ends a read", function()
    for _, case in ipairs{
      {"\n", "x\r\ny", "x\ny"}, {"\0", "x\ry", "x\ry"}, {"z", "x\rzy", "x\rzy"},
    } do
      local follower, want_crlf, want_lf = case[1], case[2], case[3]
      for _, lf in ipairs{false, true} do
        local t = telnet.new{newline = lf and "lf" or "crlf"}
        local d1 = t:feed("x\r")
        assert.equal("x", d1)
        local d2 = t:feed(follower .. "y")
        assert.equal(lf and want_lf or want_crlf, d1 .. d2)
      end
    end
  end)

  it("keeps a CR followed by a command and parses the command", function()
    local t = telnet.new()
    assert.equal("x", (t:feed("x\r")))
    local d, evs = t:feed(B(IAC, 246) .. "y")
    assert.equal("\ry", d)
    assert.equal("ayt", evs[1].name)
    assert.equal(1, evs[1].at)
  end)

  it("applies no CR rules when binary input is forced", function()
    local t = telnet.new{binary = true}
    assert.equal("a\r\0b\r\n", (t:feed("a\r\0b\r\n")))
    assert.equal("c\r", (t:feed("c\r")))
    assert.equal("\0", (t:feed("\0")))
  end)

  it("applies no CR rules while the peer's BINARY is enabled", function()
    local t = telnet.new{him = {binary = true}}
    local d, evs, r = t:feed(neg(WILL, 0) .. "a\r\0b")
    assert.equal("a\r\0b", d)
    assert.equal(neg(DO, 0), r)
    assert.equal("enabled", evs[1].type)
    d = t:feed(neg(WONT, 0) .. "a\r\0b")
    assert.equal("a\rb", d)
  end)

  it("rejects a newline mode it does not know", function()
    assert.has_error(function() telnet.new{newline = "cr"} end)
  end)
end)

describe("telnet commands", function()
  it("reports each command with its name and code", function()
    local names = {[241] = "nop", [242] = "dm", [243] = "brk", [244] = "ip",
      [245] = "ao", [246] = "ayt", [247] = "ec", [248] = "el", [249] = "ga",
      [239] = "eor", [238] = "abort", [237] = "susp", [236] = "eof"}
    for code, name in pairs(names) do
      local d, evs = telnet.new():feed("a" .. B(IAC, code) .. "b")
      assert.equal("ab", d)
      assert.same({{type = "cmd", name = name, code = code, at = 1}}, evs)
      assert.equal(B(IAC, code), telnet.cmd(name))
      assert.equal(B(IAC, code), telnet.cmd(code))
    end
  end)

  it("places events at their position in the data", function()
    local d, evs = telnet.new():feed("ab" .. B(IAC, 241) .. "cd" .. B(IAC, 249))
    assert.equal("abcd", d)
    assert.equal(2, evs[1].at)
    assert.equal(4, evs[2].at)
  end)

  it("waits when a lone IAC ends a read", function()
    local t = telnet.new()
    local d, evs = t:feed("abc" .. B(IAC))
    assert.equal("abc", d)
    assert.same({}, evs)
    d, evs = t:feed(B(246) .. "x")
    assert.equal("x", d)
    assert.equal("ayt", evs[1].name)
    d = t:feed(B(IAC))
    assert.equal("", d)
    d = t:feed(B(IAC))
    assert.equal(B(255), d)
  end)

  it("reports IAC SE without SB as an error and keeps parsing", function()
    local t = telnet.new()
    local d, evs = t:feed("a" .. B(IAC, SE) .. "b" .. B(IAC, 246))
    assert.equal("ab", d)
    assert.same({"error", "cmd"}, types(evs))
    assert.equal("se without sb", evs[1].reason)
    assert.equal("a\r\n", (t:feed("a\r\n")))
  end)

  it("reports an unknown command byte as an error and drops it", function()
    local d, evs = telnet.new():feed("a" .. B(IAC, 65) .. "b")
    assert.equal("ab", d)
    assert.equal("unknown command", evs[1].reason)
    assert.equal(65, evs[1].code)
  end)

  it("refuses to build SE or an unknown command", function()
    assert.has_error(function() telnet.cmd("se") end)
    assert.has_error(function() telnet.cmd("nope") end)
    assert.has_error(function() telnet.cmd(240) end)
    assert.has_error(function() telnet.cmd(100) end)
    assert.has_error(function() telnet.cmd({}) end)
  end)
end)

describe("telnet negotiation (RFC 1143 Q method)", function()
  it("refuses options nobody agreed to", function()
    local t = telnet.new()
    local _, evs, r = t:feed(neg(WILL, 31) .. neg(DO, 1))
    assert.equal(neg(DONT, 31) .. neg(WONT, 1), r)
    assert.same({}, evs)
    assert.same({"no", "no"}, {t:state(31)})
  end)

  it("accepts an agreed option and reports it enabled", function()
    local t = telnet.new{us = {[1] = true, [3] = true}, him = {"naws", 24}}
    local _, evs, r = t:feed(neg(DO, 1) .. neg(WILL, 31) .. neg(WILL, 24) .. neg(DO, 3))
    assert.equal(neg(WILL, 1) .. neg(DO, 31) .. neg(DO, 24) .. neg(WILL, 3), r)
    assert.same({"enabled", "enabled", "enabled", "enabled"}, types(evs))
    assert.equal("us", evs[1].side)
    assert.equal("him", evs[2].side)
    assert.is_true(t:enabled("echo", "us"))
    assert.is_true(t:enabled(31, "him"))
    assert.is_false(t:enabled(31, "us"))
  end)

  it("answers a peer repeating WILL thousands of times only once", function()
    local t = telnet.new{him = {naws = true}}
    local _, evs, r = t:feed(string.rep(neg(WILL, 31), 5000))
    assert.equal(neg(DO, 31), r)
    assert.equal(1, #evs)
  end)

  it("never sends more replies than requests to a peer repeating DO and WILL", function()
    local t = telnet.new{us = {echo = true}}
    local input = {}
    for i = 1, 4000 do
      input[#input + 1] = neg(i % 2 == 0 and DO or WILL, (i // 2) % 256)
    end
    local _, _, r = t:feed(table.concat(input))
    assert.is_true(#r / 3 <= 4000)
    -- after the first round every option is settled: the same again
    -- gets no answer for the agreed option and a refusal for the others
    _, _, r = t:feed(table.concat(input))
    assert.is_true(#r / 3 < 4000)
    for i = 1, #r, 3 do
      local verb, opt = r:byte(i + 1, i + 2)
      assert.is_true(verb == DONT or verb == WONT)
      assert.is_false(verb == WONT and opt == 1)
    end
  end)

  it("does not answer a WONT or DONT for a disabled option", function()
    local _, evs, r = telnet.new():feed(neg(WONT, 1) .. neg(DONT, 3))
    assert.equal("", r)
    assert.same({}, evs)
  end)

  it("answers DONT and reports disabled when the peer turns an option off", function()
    local t = telnet.new{him = {naws = true}}
    t:feed(neg(WILL, 31))
    local _, evs, r = t:feed(neg(WONT, 31))
    assert.equal(neg(DONT, 31), r)
    assert.same({type = "disabled", option = 31, side = "him", at = 0}, evs[1])
    assert.same({"no", "no"}, {t:state(31)})
  end)

  it("sends one request on enable and completes on the answer", function()
    local t = telnet.new()
    assert.equal(neg(WILL, 1), t:enable("echo", "us"))
    assert.equal("", t:enable("echo", "us"))
    assert.same({"wantyes", "no"}, {t:state(1)})
    local _, evs, r = t:feed(neg(DO, 1))
    assert.equal("", r)
    assert.same({type = "enabled", option = 1, side = "us", at = 0}, evs[1])
    assert.equal("", t:enable("echo", "us"))
    assert.equal(neg(WONT, 1), t:disable("echo", "us"))
    assert.same({"wantno", "no"}, {t:state(1)})
    _, evs, r = t:feed(neg(DONT, 1))
    assert.equal("", r)
    assert.same({}, evs)
    assert.same({"no", "no"}, {t:state(1)})
    assert.equal("", t:disable("echo", "us"))
  end)

  it("reports refused when the peer refuses a request and does not ask again", function()
    local t = telnet.new()
    assert.equal(neg(DO, 31), t:enable("naws", "him"))
    local _, evs, r = t:feed(neg(WONT, 31))
    assert.equal("", r)
    assert.same({type = "refused", option = 31, side = "him", at = 0}, evs[1])
    assert.same({"no", "no"}, {t:state(31)})
  end)

  it("queues an enable asked while a disable is pending", function()
    local t = telnet.new()
    t:enable("sga", "us")
    t:feed(neg(DO, 3))
    assert.equal(neg(WONT, 3), t:disable("sga", "us"))
    assert.equal("", t:enable("sga", "us"))
    assert.same({"wantno-opposite", "no"}, {t:state(3)})
    local _, evs, r = t:feed(neg(DONT, 3))
    assert.equal(neg(WILL, 3), r)
    assert.same({}, evs)
    assert.same({"wantyes", "no"}, {t:state(3)})
    _, evs = t:feed(neg(DO, 3))
    assert.equal("enabled", evs[1].type)
  end)

  it("forgets a queued request that is asked back", function()
    local t = telnet.new()
    assert.equal(neg(DO, 24), t:enable("ttype", "him"))
    assert.equal("", t:disable("ttype", "him"))
    assert.same({"no", "wantyes-opposite"}, {t:state(24)})
    assert.equal("", t:enable("ttype", "him"))
    assert.same({"no", "wantyes"}, {t:state(24)})
  end)

  it("sends the queued disable when the enable it waited for arrives", function()
    local t = telnet.new()
    t:enable("ttype", "him")
    t:disable("ttype", "him")
    local _, evs, r = t:feed(neg(WILL, 24))
    assert.equal(neg(DONT, 24), r)
    assert.same({}, evs)
    assert.same({"no", "wantno"}, {t:state(24)})
    _, _, r = t:feed(neg(WONT, 24))
    assert.equal("", r)
    assert.same({"no", "no"}, {t:state(24)})
  end)

  it("reports a DONT answered by WILL and sends nothing", function()
    local t = telnet.new{him = {naws = true}}
    t:feed(neg(WILL, 31))
    t:disable("naws", "him")
    local _, evs, r = t:feed(neg(WILL, 31))
    assert.equal("", r)
    assert.equal("dont answered by will", evs[1].reason)
    assert.same({"no", "no"}, {t:state(31)})
  end)

  it("lets allow change agreement without negotiating", function()
    local t = telnet.new()
    t:allow("naws", "him", true)
    local _, _, r = t:feed(neg(WILL, 31))
    assert.equal(neg(DO, 31), r)
    t:allow("echo", "us", false)
    _, _, r = t:feed(neg(DO, 1))
    assert.equal(neg(WONT, 1), r)
  end)

  it("withdraws agreement on disable so the peer cannot turn it back on", function()
    local t = telnet.new{us = {echo = true}}
    t:feed(neg(DO, 1))
    t:disable("echo", "us")
    t:feed(neg(DONT, 1))
    local _, _, r = t:feed(neg(DO, 1))
    assert.equal(neg(WONT, 1), r)
  end)

  it("reports every negotiation received when asked to", function()
    local t = telnet.new{negotiations = true}
    local _, evs = t:feed(neg(WILL, 5) .. neg(DONT, 6))
    assert.same({"will", "dont"}, types(evs))
    assert.equal(5, evs[1].option)
  end)

  it("accepts option 255 in a negotiation", function()
    local _, _, r = telnet.new():feed(neg(WILL, 255))
    assert.equal(neg(DONT, 255), r)
  end)

  it("raises on a bad option or side", function()
    local t = telnet.new()
    assert.has_error(function() t:enable(256, "us") end)
    assert.has_error(function() t:enable(-1, "us") end)
    assert.has_error(function() t:enable("nosuch", "us") end)
    assert.has_error(function() t:enable(1, "them") end)
    assert.has_error(function() t:state({}) end)
    assert.has_error(function() telnet.new{us = {nosuch = true}} end)
    assert.has_error(function() telnet.new{him = "naws"} end)
    assert.has_error(function() telnet.new("x") end)
    assert.has_error(function() telnet.negotiate("maybe", 1) end)
  end)

  it("builds raw negotiations", function()
    assert.equal(neg(WILL, 1), telnet.negotiate("will", "echo"))
    assert.equal(neg(DONT, 31), telnet.negotiate("dont", 31))
  end)

  -- Plays the two byte streams between a and b until neither has anything
  -- to say; returns the number of rounds.
  local function exchange(a, b, first, limit)
    local to_b, rounds = first, 0
    while #to_b > 0 do
      rounds = rounds + 1
      assert.is_true(rounds <= limit, "negotiation did not end")
      local _, _, to_a = b:feed(to_b)
      if #to_a == 0 then break end
      _, _, to_b = a:feed(to_a)
    end
    return rounds
  end

  it("settles between a server and a client in a couple of rounds", function()
    local server = telnet.new{us = {"echo", "sga"}, him = {"naws", "ttype", "new_environ"}}
    local client = telnet.new{us = {"naws", "ttype", "new_environ"}, him = {"echo", "sga"}}
    local hello = server:enable("echo", "us") .. server:enable("sga", "us") ..
      server:enable("naws", "him") .. server:enable("ttype", "him") ..
      server:enable("new_environ", "him") .. server:enable("linemode", "him")
    assert.is_true(exchange(server, client, hello, 4) <= 2)
    assert.is_true(server:enabled("echo", "us") and client:enabled("echo", "him"))
    assert.is_true(server:enabled("naws", "him") and client:enabled("naws", "us"))
    assert.is_false(server:enabled("linemode", "him"))
    assert.same({"no", "no"}, {server:state("linemode")})
  end)

  it("ends the exchange when both sides ask for the same options at once", function()
    local a = telnet.new{us = {1, 3}, him = {1, 3}}
    local b = telnet.new{us = {1, 3}, him = {1, 3}}
    local from_a = a:enable(1, "us") .. a:enable(3, "him")
    local from_b = b:enable(1, "him") .. b:enable(3, "us") .. b:enable(1, "us")
    local _, _, ra = a:feed(from_b)
    local _, _, rb = b:feed(from_a)
    local rounds = 0
    while #ra + #rb > 0 do
      rounds = rounds + 1
      assert.is_true(rounds < 10)
      local _, _, na = a:feed(rb)
      local _, _, nb = b:feed(ra)
      ra, rb = na, nb
    end
    assert.is_true(a:enabled(1, "us") and b:enabled(1, "him"))
    assert.is_true(b:enabled(1, "us") and a:enabled(1, "him"))
    assert.is_true(b:enabled(3, "us") and a:enabled(3, "him"))
  end)

  it("never loops with a peer that mirrors every refusal", function()
    -- RFC 1143 section 2: many old peers answer DONT with WONT and WONT
    -- with DONT, and agree to every DO/WILL.  Our side refuses and asks
    -- at random; the total traffic must stay bounded by our requests.
    local function mirror(bytes)
      local out = {}
      for i = 1, #bytes - 2, 3 do
        local verb, opt = bytes:byte(i + 1), bytes:byte(i + 2)
        local answer = ({[WILL] = DO, [WONT] = DONT, [DO] = WILL, [DONT] = WONT})[verb]
        out[#out + 1] = neg(answer, opt)
      end
      return table.concat(out)
    end
    math.randomseed(1143)
    local t = telnet.new{us = {1}, him = {31}}
    local total, requests = 0, 0
    for _ = 1, 3000 do
      local opt = math.random(0, 40)
      local side = math.random(2) == 1 and "us" or "him"
      local req = math.random(2) == 1 and t:enable(opt, side) or t:disable(opt, side)
      if #req > 0 then requests = requests + 1 end
      local to_peer, rounds = req, 0
      while #to_peer > 0 do
        rounds = rounds + 1
        assert.is_true(rounds <= 3, "negotiation loop")
        local _, _, r = t:feed(mirror(to_peer))
        total = total + #r / 3
        to_peer = r
      end
    end
    assert.is_true(requests > 100)
    assert.is_true(total <= requests)
  end)

  it("never loops with a peer that refuses everything and mirrors refusals", function()
    local t = telnet.new()
    for opt = 0, 255 do
      local req = t:enable(opt, "him") .. t:enable(opt, "us")
      -- the refusing peer answers DONT/WONT, then mirrors our silence
      local _, _, r = t:feed(neg(WONT, opt) .. neg(DONT, opt))
      assert.equal(6, #req)
      assert.equal("", r)
    end
  end)

  it("settles and agrees for any interleaving of requests and deliveries", function()
    -- what the fuzz target checks, with a fixed seed: requests on both
    -- sides while bytes are in flight, then the traffic dies out and both
    -- sides hold the same view of every option
    math.randomseed(1990)
    for _ = 1, 300 do
      local a = telnet.new{us = {1, 3}, him = {24, 31}}
      local b = telnet.new{us = {24, 31, 0}, him = {1, 3, 0}}
      local ab, ba = {}, {}
      local function deliver(dst, q, back)
        local _, _, r = dst:feed(table.concat(q))
        for k in pairs(q) do q[k] = nil end
        if #r > 0 then back[#back + 1] = r end
      end
      for _ = 1, math.random(1, 40) do
        local op = math.random(4)
        local opt = ({0, 1, 3, 24, 31})[math.random(5)]
        local side = math.random(2) == 1 and "us" or "him"
        local on = math.random(2) == 1
        if op == 1 then
          ab[#ab + 1] = on and a:enable(opt, side) or a:disable(opt, side)
        elseif op == 2 then
          ba[#ba + 1] = on and b:enable(opt, side) or b:disable(opt, side)
        elseif op == 3 then
          deliver(b, ab, ba)
        else
          deliver(a, ba, ab)
        end
      end
      local rounds = 0
      while #ab > 0 or #ba > 0 do
        rounds = rounds + 1
        assert.is_true(rounds <= 8, "negotiation loop")
        deliver(b, ab, ba)
        deliver(a, ba, ab)
      end
      for _, opt in ipairs{0, 1, 3, 24, 31} do
        local aus, ahim = a:state(opt)
        local bus, bhim = b:state(opt)
        assert.equal(aus, bhim)
        assert.equal(ahim, bus)
        assert.is_true(aus == "yes" or aus == "no")
        assert.is_true(ahim == "yes" or ahim == "no")
      end
    end
  end)

  it("stays bounded between two codecs for thousands of random requests", function()
    math.randomseed(854)
    local a = telnet.new{us = {1, 3}, him = {24, 31}}
    local b = telnet.new{us = {24, 31}, him = {1, 3}}
    for _ = 1, 2000 do
      local who = math.random(2) == 1 and a or b
      local other = who == a and b or a
      local opt = ({1, 3, 24, 31, 0})[math.random(5)]
      local side = math.random(2) == 1 and "us" or "him"
      local req = math.random(2) == 1 and who:enable(opt, side) or who:disable(opt, side)
      assert.is_true(exchange(who, other, req, 4) <= 4)
    end
  end)
end)

describe("telnet NAWS (RFC 1073)", function()
  it("parses a window size", function()
    local t = telnet.new{him = {naws = true}}
    local d, evs = t:feed("x" .. B(IAC, SB, 31, 0, 80, 0, 24, IAC, SE) .. "y")
    assert.equal("xy", d)
    assert.same({type = "naws", width = 80, height = 24, at = 1}, evs[1])
  end)

  it("parses 255 doubled in width and height", function()
    local _, evs = telnet.new():feed(B(IAC, SB, 31, 0, 255, 255, 255, 255, 1, IAC, SE))
    assert.same({type = "naws", width = 255, height = 65281, at = 0}, evs[1])
  end)

  it("builds window sizes doubling 255 and parses them back", function()
    assert.equal(B(IAC, SB, 31, 0, 80, 0, 24, IAC, SE), telnet.naws(80, 24))
    assert.equal(B(IAC, SB, 31, 0, 255, 255, 255, 255, 255, 255, IAC, SE), telnet.naws(255, 65535))
    for _, wh in ipairs{{0, 0}, {255, 255}, {65535, 65535}, {256, 511}, {65280, 1}} do
      local _, evs = telnet.new():feed(telnet.naws(wh[1], wh[2]))
      assert.equal(wh[1], evs[1].width)
      assert.equal(wh[2], evs[1].height)
    end
  end)

  it("reports a NAWS of the wrong length as an error", function()
    local d, evs = telnet.new():feed(B(IAC, SB, 31, 0, 80, 0, IAC, SE) .. "ok")
    assert.equal("ok", d)
    assert.same({type = "error", reason = "bad naws", option = 31, at = 0}, evs[1])
    evs = select(2, telnet.new():feed(B(IAC, SB, 31, 0, 80, 0, 24, 1, IAC, SE)))
    assert.equal("bad naws", evs[1].reason)
  end)

  it("rejects window sizes out of range", function()
    assert.has_error(function() telnet.naws(65536, 1) end)
    assert.has_error(function() telnet.naws(1, -1) end)
    assert.has_error(function() telnet.naws("x", 1) end)
  end)
end)

describe("telnet TTYPE (RFC 1091)", function()
  it("parses TERMINAL-TYPE IS and SEND", function()
    local t = telnet.new()
    local _, evs = t:feed(telnet.ttype_is("XTERM-256COLOR") .. telnet.ttype_send())
    assert.equal("ttype", evs[1].type)
    assert.equal("XTERM-256COLOR", evs[1].name)
    assert.equal(1, evs[1].index)
    assert.is_false(evs[1].last)
    assert.equal("ttype_send", evs[2].type)
  end)

  it("builds IS and SEND per RFC 1091", function()
    assert.equal(B(IAC, SB, 24, 0) .. "VT100" .. B(IAC, SE), telnet.ttype_is("VT100"))
    assert.equal(B(IAC, SB, 24, 1, IAC, SE), telnet.ttype_send())
    assert.equal(B(IAC, SB, 24, 0, 255, 255, IAC, SE), telnet.ttype_is(B(255)))
  end)

  it("marks the end of the list when the client repeats the last type", function()
    local t = telnet.new()
    local lasts = {}
    for _, name in ipairs{"DEC-VT220", "DEC-VT100", "dec-vt100"} do
      local _, evs = t:feed(telnet.ttype_is(name))
      lasts[#lasts + 1] = evs[1].last
    end
    assert.same({false, false, true}, lasts)
    -- a new round starts after the end
    local _, evs = t:feed(telnet.ttype_is("DEC-VT220"))
    assert.equal(1, evs[1].index)
  end)

  it("marks the end of the list when the client starts over", function()
    local t = telnet.new()
    local lasts = {}
    for _, name in ipairs{"A", "B", "C", "A"} do
      local _, evs = t:feed(telnet.ttype_is(name))
      lasts[#lasts + 1] = evs[1].last
    end
    assert.same({false, false, false, true}, lasts)
  end)

  it("caps a list that never repeats", function()
    local t = telnet.new{max_ttypes = 5}
    local sends = 0
    for i = 1, 100 do
      local _, evs = t:feed(telnet.ttype_is("TYPE-" .. i))
      if evs[1].last then break end
      sends = sends + 1
    end
    assert.equal(4, sends)
    local t2 = telnet.new()
    for i = 1, 16 do
      local _, evs = t2:feed(telnet.ttype_is("T" .. i))
      assert.equal(i == 16, evs[1].last)
    end
    assert.has_error(function() telnet.new{max_ttypes = 0} end)
  end)

  it("compares long type names by length too", function()
    local long = string.rep("X", 100)
    local t = telnet.new()
    t:feed(telnet.ttype_is(long .. "1"))
    local _, evs = t:feed(telnet.ttype_is(long .. "1"))
    assert.is_true(evs[1].last)
    t:feed(telnet.ttype_is(long))
    _, evs = t:feed(telnet.ttype_is(long .. "22"))
    assert.is_false(evs[1].last)
  end)

  it("reports a malformed TTYPE as an error", function()
    for _, payload in ipairs{B(), B(1, 65), B(2), B(7, 65)} do
      local _, evs = telnet.new():feed(B(IAC, SB, 24) .. payload .. B(IAC, SE))
      assert.equal("bad ttype", evs[1].reason)
    end
  end)
end)

describe("telnet NEW-ENVIRON (RFC 1572)", function()
  it("parses IS with values, undefined variables and user variables", function()
    local payload = B(IAC, SB, 39, 0, 0) .. "USER" .. B(1) .. "bob" ..
      B(0) .. "DISPLAY" .. B(3) .. "LANG" .. B(1) .. "C" ..
      B(0) .. "EMPTY" .. B(1) .. B(IAC, SE)
    local _, evs = telnet.new():feed(payload)
    assert.same({type = "environ", command = "is", at = 0,
      vars = {USER = "bob", DISPLAY = false, EMPTY = ""},
      uservars = {LANG = "C"}}, evs[1])
  end)

  it("undoes ESC and doubled IAC in names and values", function()
    local payload = B(IAC, SB, 39, 2, 0) .. "A" .. B(2, 1) .. "B" .. B(1) ..
      B(2, 0, 2, 2, 2, 3) .. "x" .. B(255, 255) .. B(IAC, SE)
    local _, evs = telnet.new():feed(payload)
    assert.equal("info", evs[1].command)
    assert.same({["A\1B"] = "\0\2\3x\255"}, evs[1].vars)
  end)

  it("parses SEND with names and with bare types", function()
    local _, evs = telnet.new():feed(B(IAC, SB, 39, 1, 0) .. "USER" .. B(3) .. "X" .. B(3, IAC, SE))
    assert.same({type = "environ_send", at = 0, vars = {"USER"}, uservars = {"X"},
      all_uservars = true}, evs[1])
    _, evs = telnet.new():feed(B(IAC, SB, 39, 1, IAC, SE))
    assert.same({type = "environ_send", at = 0, vars = {}, uservars = {},
      all_vars = true, all_uservars = true}, evs[1])
  end)

  it("builds IS, INFO and SEND and parses them back", function()
    local vars = {USER = "b\0b\1\2\3" .. B(255), TERM = false, [""] = "empty name"}
    local uservars = {["K\255"] = "v"}
    for _, build in ipairs{telnet.environ_is, telnet.environ_info} do
      local bytes = build(vars, uservars)
      local _, evs = telnet.new():feed(bytes)
      assert.same(vars, evs[1].vars)
      assert.same(uservars, evs[1].uservars)
    end
    assert.equal(B(IAC, SB, 39, 0, 0) .. "A" .. B(1) .. "1" .. B(0) .. "B" .. B(IAC, SE),
      telnet.environ_is({B = false, A = "1"}))
    assert.equal(B(IAC, SB, 39, 1, IAC, SE), telnet.environ_send())
    local _, evs = telnet.new():feed(telnet.environ_send({"USER", "LANG"}, true))
    assert.same({"USER", "LANG"}, evs[1].vars)
    assert.is_true(evs[1].all_uservars)
    assert.is_nil(evs[1].all_vars)
    _, evs = telnet.new():feed(telnet.environ_send({"Z", "A", "M", ""}))
    assert.same({"Z", "A", "M"}, evs[1].vars)
    assert.is_true(evs[1].all_vars)
  end)

  it("reports a malformed NEW-ENVIRON as an error", function()
    for _, payload in ipairs{
      B(), B(3), B(0, 65), B(0, 0, 65, 2), B(0, 0, 65, 1, 66, 1, 67), B(1, 0, 65, 1, 66),
    } do
      local d, evs = telnet.new():feed(B(IAC, SB, 39) .. payload .. B(IAC, SE) .. "z")
      assert.equal("z", d)
      assert.equal("bad environ", evs[1].reason)
    end
  end)

  it("rejects builder arguments of the wrong type", function()
    assert.has_error(function() telnet.environ_is({USER = 1}) end)
    assert.has_error(function() telnet.environ_is({USER = true}) end)
    assert.has_error(function() telnet.environ_is({[1] = "x"}) end)
    assert.has_error(function() telnet.environ_send({1}) end)
    assert.has_error(function() telnet.environ_is("x") end)
  end)
end)

describe("telnet subnegotiation framing", function()
  it("reports other options as raw payloads with IAC undoubled", function()
    local _, evs = telnet.new():feed(B(IAC, SB, 42, 1, IAC, IAC, 2, IAC, SE))
    assert.same({type = "sb", option = 42, data = B(1, 255, 2), at = 0}, evs[1])
    assert.equal(B(IAC, SB, 42, 1, IAC, IAC, 2, IAC, SE), telnet.sb(42, B(1, 255, 2)))
    assert.equal(B(IAC, SB, 255, 255, 7, IAC, SE), telnet.sb(255, B(7)))
    local _, evs2 = telnet.new():feed(telnet.sb(255, B(7)))
    assert.same({type = "sb", option = 255, data = B(7), at = 0}, evs2[1])
  end)

  it("gives one error for a 1 MiB subnegotiation, stays bounded and resumes", function()
    local t = telnet.new()
    collectgarbage()
    local before = collectgarbage("count")
    local chunk = string.rep("A", 65536)
    local errors = 0
    t:feed(B(IAC, SB, 42))
    for _ = 1, 16 do
      local d, e = t:feed(chunk)
      assert.equal("", d)
      for _, ev in ipairs(e) do
        assert.equal("subnegotiation too long", ev.reason)
        assert.equal(42, ev.option)
        errors = errors + 1
      end
    end
    chunk = nil -- luacheck: ignore 311 (let the collector take it)
    collectgarbage()
    assert.is_true(collectgarbage("count") - before < 64, "memory grew")
    local d, evs = t:feed(B(IAC, SE) .. "after" .. telnet.naws(80, 24))
    assert.equal(1, errors)
    assert.equal("after", d)
    assert.same({"naws"}, types(evs))
  end)

  it("lets the caller set the subnegotiation limit", function()
    local t = telnet.new{max_subneg = 3}
    local _, evs = t:feed(telnet.sb(42, "abc") .. telnet.sb(42, "abcd"))
    assert.same({"sb", "error"}, types(evs))
    local big = telnet.new{max_subneg = 100000}
    _, evs = big:feed(telnet.sb(42, string.rep("x", 100000)))
    assert.equal(100000, #evs[1].data)
    assert.has_error(function() telnet.new{max_subneg = -1} end)
    assert.has_error(function() telnet.new{max_subneg = "big"} end)
  end)

  it("ends a subnegotiation cut by another command and parses that command", function()
    local d, evs = telnet.new():feed(B(IAC, SB, 31, 0, 80, IAC, 246) .. "x")
    assert.equal("x", d)
    assert.same({"error", "cmd"}, types(evs))
    assert.equal("unterminated subnegotiation", evs[1].reason)
    assert.equal("ayt", evs[2].name)
    local _, evs2, r = telnet.new():feed(B(IAC, SB, 31, 1, IAC, WILL, 1))
    assert.same({"error"}, types(evs2))
    assert.equal(neg(DONT, 1), r)
  end)

  it("reports an empty subnegotiation", function()
    local d, evs = telnet.new():feed(B(IAC, SB, IAC, SE) .. "x")
    assert.equal("x", d)
    assert.equal("empty subnegotiation", evs[1].reason)
    d, evs = telnet.new():feed(B(IAC, SB, IAC, 246) .. "x")
    assert.equal("x", d)
    assert.same({"error", "cmd"}, types(evs))
  end)

  it("does not treat CR or data rules inside a subnegotiation", function()
    local _, evs = telnet.new():feed(telnet.sb(42, "a\r\0b\r"))
    assert.equal("a\r\0b\r", evs[1].data)
  end)
end)

describe("telnet reads split anywhere", function()
  local sample = "Hi\r\n" .. B(IAC, IAC) .. "x\r\0y" .. neg(WILL, 31) .. neg(DO, 1) ..
    B(IAC, SB, 31, 0, 255, 255, 1, 0, 24, IAC, SE) .. "\r" .. B(IAC, 246) ..
    telnet.ttype_is("VT" .. B(255)) .. B(IAC, SE) .. neg(WILL, 0) .. "a\r\0" ..
    neg(WONT, 0) .. "b\r\0c" .. telnet.environ_is({USER = "\1\255"}) ..
    B(IAC, SB, 42, 1, IAC, 241) .. "\r\n" .. B(IAC, SB, 42) .. string.rep("z", 40) ..
    B(IAC, IAC, IAC, SE, IAC)

  local function opts()
    return {us = {echo = true}, him = {naws = true, binary = true}, max_subneg = 20}
  end

  it("gives the same results for every single split point", function()
    local wd, we, wr = feed_chunks(telnet.new(opts()), {sample})
    assert.is_true(#we > 8)
    for i = 0, #sample do
      local d, e, r = feed_chunks(telnet.new(opts()), {sample:sub(1, i), sample:sub(i + 1)})
      assert.equal(wd, d)
      assert.same(we, e)
      assert.equal(wr, r)
    end
  end)

  it("gives the same results byte by byte and for every pair of split points", function()
    local wd, we, wr = feed_chunks(telnet.new(opts()), {sample})
    local bytes = {}
    for i = 1, #sample do bytes[i] = sample:sub(i, i) end
    local d, e, r = feed_chunks(telnet.new(opts()), bytes)
    assert.equal(wd, d)
    assert.same(we, e)
    assert.equal(wr, r)
    for i = 0, #sample, 3 do
      for j = i, #sample, 2 do
        d, e, r = feed_chunks(telnet.new(opts()), {sample:sub(1, i), sample:sub(i + 1, j), sample:sub(j + 1)})
        assert.equal(wd, d)
        assert.same(we, e)
        assert.equal(wr, r)
      end
    end
  end)

  it("gives the same results for both newline modes under random splits", function()
    math.randomseed(855)
    for _, nl in ipairs{"crlf", "lf"} do
      local o = opts()
      o.newline = nl
      local wd, we, wr = feed_chunks(telnet.new(o), {sample})
      for _ = 1, 200 do
        local chunks, i = {}, 1
        while i <= #sample do
          local n = math.random(0, 7)
          chunks[#chunks + 1] = sample:sub(i, i + n - 1)
          i = i + n
        end
        local d, e, r = feed_chunks(telnet.new(o), chunks)
        assert.equal(wd, d)
        assert.same(we, e)
        assert.equal(wr, r)
      end
    end
  end)
end)

describe("telnet escape", function()
  it("doubles IAC and applies NVT line endings", function()
    assert.equal("a" .. B(255, 255) .. "b", telnet.escape("a" .. B(255) .. "b"))
    assert.equal("a\r\nb\r\n", telnet.escape("a\nb\r\n"))
    assert.equal("a\r\0b\r\0", telnet.escape("a\rb\r"))
    assert.equal("\r\0\r\n", telnet.escape("\r\r\n"))
    assert.equal("\r\n\r\n", telnet.escape("\n\r\n"))
    assert.equal("\r\0" .. B(255, 255), telnet.escape("\r" .. B(255)))
  end)

  it("only doubles IAC in binary mode", function()
    assert.equal("a\r\n\r" .. B(255, 255) .. "\n", telnet.escape("a\r\n\r" .. B(255) .. "\n", true))
  end)

  it("returns data that needs no change as it is", function()
    local s = "plain text"
    assert.equal(s, telnet.escape(s))
    assert.equal("", telnet.escape(""))
    assert.has_error(function() telnet.escape({}) end)
  end)

  it("follows our BINARY state in codec:escape", function()
    local t = telnet.new{us = {binary = true}}
    assert.equal("\r\n", t:escape("\n"))
    t:feed(neg(DO, 0))
    assert.is_true(t:enabled("binary", "us"))
    assert.equal("\n", t:escape("\n"))
  end)

  it("appends CR LF after escaping when codec:escape is asked for a line end", function()
    local t = telnet.new()
    assert.equal("a\r\0b" .. B(255, 255) .. "\r\n", t:escape("a\rb" .. B(255), true))
    assert.equal("plain\r\n", t:escape("plain", true))
    assert.equal("\r\n", t:escape("", true))
  end)

  it("still sends a line's LF as CR LF under BINARY when codec:escape is asked for a line end", function()
    local t = telnet.new{us = {binary = true}}
    t:feed(neg(DO, 0))
    assert.equal("a\r\nb\r\nc\r" .. B(255, 255) .. "\r\n", t:escape("a\nb\r\nc\r" .. B(255), true))
    assert.equal("\r\r\n\r\n\r\n", t:escape("\r\r\n\n", true))
    assert.equal("a\nb\r", t:escape("a\nb\r"))
  end)

  it("returns one shared read-only events table from feeds without events", function()
    local t = telnet.new()
    local _, e1 = t:feed("abc")
    local _, e2 = t:feed("def")
    assert.equal(e1, e2)
    assert.is_nil(e1[1])
    assert.has_error(function() table.insert(e1, {}) end)
    assert.has_error(function() e1.x = 1 end)
    local _, e3 = t:feed(B(255, 241))   -- IAC NOP: an event, in a table of its own
    assert.are_not.equal(e1, e3)
    assert.equal("nop", e3[1].name)
    e3[2] = true                        -- the caller's to keep or change
    local _, e4 = t:feed("ghi")
    assert.is_nil(e4[1])
  end)

  it("round-trips every byte value in BINARY mode", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = B(i) end
    all = table.concat(all)
    all = all .. all:reverse() .. "\r\r\n\n\r\0\255\255\r"
    local t = telnet.new{him = {binary = true}}
    local _, _, r = t:feed(neg(WILL, 0))
    assert.equal(neg(DO, 0), r)
    assert.equal(all, (t:feed(telnet.escape(all, true))))
    assert.equal(all, (telnet.new{binary = true}:feed(telnet.escape(all, true))))
  end)

  it("round-trips random bytes in random splits (fixed seed)", function()
    math.randomseed(1073)
    for round = 1, 300 do
      local n = math.random(0, 300)
      local bytes = {}
      for i = 1, n do
        -- bias towards the interesting bytes
        local r = math.random(10)
        bytes[i] = r == 1 and 255 or r == 2 and 13 or r == 3 and 10 or r == 4 and 0 or math.random(0, 255)
      end
      local data = B(table.unpack(bytes))
      local binary = round % 3 == 0
      local wire = telnet.escape(data, binary)
      local chunks, i = {}, 1
      while i <= #wire do
        local k = math.random(1, 12)
        chunks[#chunks + 1] = wire:sub(i, i + k - 1)
        i = i + k
      end
      if binary then
        assert.equal(data, (feed_chunks(telnet.new{binary = true}, chunks)))
      else
        -- NVT: a bare "\n" and "\r\n" both travel as CR LF, so the lf
        -- mode gives the data back with every "\r\n" read as "\n"
        local want = data:gsub("\r\n", "\n")
        assert.equal(want, (feed_chunks(telnet.new{newline = "lf"}, chunks)))
        -- and the crlf mode gives it back with every bare "\n" as "\r\n"
        local want_crlf = data:gsub("()\n", function(at)
          return data:sub(at - 1, at - 1) == "\r" and "\n" or "\r\n"
        end)
        assert.equal(want_crlf, (feed_chunks(telnet.new(), chunks)))
      end
    end
  end)
end)

describe("telnet codec handle", function()
  it("has a name, a tostring and can be closed", function()
    local t = telnet.new()
    assert.matches("^parley%.telnet%.codec: ", tostring(t))
    assert.matches("data$", tostring(t))
    do
      local c <close> = telnet.new()
      c:feed(B(IAC, SB, 42) .. "abc")
    end
    assert.equal(0, telnet.options.binary)
    assert.equal(31, telnet.options.naws)
    assert.equal(39, telnet.options.new_environ)
  end)

  it("stays usable after close", function()
    local t = telnet.new()
    t:feed(B(IAC, SB, 42) .. "abc")
    getmetatable(t).__close(t)
    local _, evs = t:feed("def" .. B(IAC, SE))
    assert.equal("def", evs[1].data)
  end)

  it("raises when feed gets no string", function()
    assert.has_error(function() telnet.new():feed({}) end)
    assert.has_error(function() telnet.new().feed("x", "y") end)
  end)
end)
