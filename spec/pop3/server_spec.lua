-- The POP3 server in-process: sessions, octet counts, dot-stuffing,
-- deletion at QUIT, seen flags, UIDL shared with the IMAP uidlist, APOP,
-- AUTH PLAIN, CAPA, locking, streaming of large messages.
local U = require "pop3.support.util"
local H = U.H
local client = require "parley.pop3.client"
local server = require "parley.pop3.server"

local M1 = "Subject: one\nFrom: x@example.org\n\nline1\n.dot line\nline3\n"
local M1_CRLF = "Subject: one\r\nFrom: x@example.org\r\n\r\nline1\r\n.dot line\r\nline3\r\n"
local M2 = "Subject: two\r\n\r\nbody\r\n"
local M3 = "no newline at end"

describe("pop3 server", function()
  local srv, store
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  -- a server over a fresh Maildir with these messages for alice
  local function with_server(fn, opts)
    U.serving({ M1, M2, M3 }, opts,
      function(s, st) srv, store = s, st fn() end)
  end

  describe("greeting and CAPA", function()
    it("greets with +OK and an APOP timestamp", function()
      with_server(function()
        local r = U.raw(srv.port)
        assert.matches("^%+OK POP3 server ready <[%d%.]+@pop%.test>$", r.greeting)
        r:close()
      end)
    end)

    it("lists TOP, UIDL, USER, RESP-CODES, PIPELINING, AUTH-RESP-CODE and SASL PLAIN", function()
      with_server(function()
        local r = U.raw(srv.port)
        assert.matches("^%+OK", r:cmd("CAPA"))
        local body = r:body()
        for _, c in ipairs { "TOP", "UIDL", "USER", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE", "SASL PLAIN" } do
          assert.truthy(body:find("\r\n" .. c .. "\r\n", 1, true) or body:find("^" .. c .. "\r\n"), c)
        end
        r:close()
      end)
    end)
  end)

  describe("transaction", function()
    it("answers STAT with the count and the octets of the CRLF form", function()
      with_server(function()
        local r = U.raw(srv.port)
        assert.matches("^%+OK alice has 3 messages %(" .. (#M1_CRLF + #M2 + #M3) .. " octets%)", r:login())
        assert.are.equal("+OK 3 " .. (#M1_CRLF + #M2 + #M3), r:cmd("STAT"))
        r:close()
      end)
    end)

    it("lists sizes for all messages and for one", function()
      with_server(function()
        local r = U.raw(srv.port)
        r:login()
        assert.are.equal("+OK scan listing follows", r:cmd("LIST"))
        assert.are.equal(("1 %d\r\n2 %d\r\n3 %d\r\n"):format(#M1_CRLF, #M2, #M3), r:body())
        assert.are.equal("+OK 2 " .. #M2, r:cmd("LIST 2"))
        r:close()
      end)
    end)

    it("sends a message with CRLF line ends, dot-stuffed, in exactly the octets LIST gave", function()
      with_server(function()
        local r = U.raw(srv.port)
        r:login()
        assert.are.equal("+OK " .. #M1_CRLF .. " octets", r:cmd("RETR 1"))
        local body = r:body()
        assert.are.equal((M1_CRLF:gsub("\r\n%.", "\r\n..")), body)
        assert.are.equal(#M1_CRLF, #body - 1)      -- one stuffed dot
        r:close()
      end)
    end)

    it("ends a message without a final line end with CRLF before the dot", function()
      with_server(function()
        local r = U.raw(srv.port)
        r:login()
        assert.are.equal("+OK " .. #M3 .. " octets", r:cmd("RETR 3"))
        assert.are.equal(M3 .. "\r\n", r:body())
        r:close()
      end)
    end)

    it("sends the headers and n body lines for TOP", function()
      with_server(function()
        local r = U.raw(srv.port)
        r:login()
        assert.matches("^%+OK", r:cmd("TOP 1 0"))
        assert.are.equal("Subject: one\r\nFrom: x@example.org\r\n\r\n", r:body())
        assert.matches("^%+OK", r:cmd("TOP 1 2"))
        assert.are.equal("Subject: one\r\nFrom: x@example.org\r\n\r\nline1\r\n..dot line\r\n", r:body())
        assert.matches("^%+OK", r:cmd("TOP 1 100"))
        assert.are.equal((M1_CRLF:gsub("\r\n%.", "\r\n..")), r:body())
        r:close()
      end)
    end)

    it("answers NOOP", function()
      with_server(function()
        local r = U.raw(srv.port)
        r:login()
        assert.are.equal("+OK", r:cmd("NOOP"))
        r:close()
      end)
    end)
  end)

  describe("deletion", function()
    it("removes messages marked with DELE only at QUIT", function()
      with_server(function()
        local r = U.raw(srv.port)
        r:login()
        assert.are.equal("+OK message 2 deleted", r:cmd("DELE 2"))
        assert.are.equal("+OK 2 " .. (#M1_CRLF + #M3), r:cmd("STAT"))
        assert.are.equal(3, #assert(store:mailbox("alice"):scan()))
        assert.matches("^%+OK .*1 messages deleted", r:cmd("QUIT"))
        r:close()
        local left = assert(store:mailbox("alice"):scan())
        assert.are.equal(2, #left)
      end)
    end)

    it("unmarks deletions with RSET", function()
      with_server(function()
        local r = U.raw(srv.port)
        r:login()
        r:cmd("DELE 1")
        r:cmd("DELE 3")
        assert.matches("^%+OK maildrop has 3 messages", r:cmd("RSET"))
        assert.matches("^%+OK", r:cmd("RETR 1"))
        r:body()
        r:cmd("QUIT")
        r:close()
        assert.are.equal(3, #assert(store:mailbox("alice"):scan()))
      end)
    end)

    it("deletes nothing when the connection is lost before QUIT", function()
      with_server(function()
        local r = U.raw(srv.port)
        r:login()
        r:cmd("DELE 1")
        r:cmd("DELE 2")
        r:close()
        -- the next session sees all three (and can lock the maildrop again)
        local c = assert(client.connect("127.0.0.1:" .. srv.port))
        assert(c:login("alice", "wonderland"))
        assert.are.equal(3, (c:stat()))
        c:quit()
      end)
    end)
  end)

  describe("the Maildir as IMAP sees it", function()
    it("marks a retrieved message seen (Maildir flag S in cur/)", function()
      with_server(function()
        local r = U.raw(srv.port)
        r:login()
        r:cmd("RETR 2")
        r:body()
        r:cmd("TOP 1 0")       -- TOP does not mark seen
        r:body()
        r:cmd("QUIT")
        r:close()
        local msgs = assert(store:mailbox("alice"):scan())
        assert.are.equal("", msgs[1].flags)
        assert.are.equal("S", msgs[2].flags)
        assert.is_false(msgs[2].new)
        assert.are.equal("", msgs[3].flags)
      end)
    end)

    it("gives UIDL values from the shared uidlist, the same in every session", function()
      with_server(function()
        local function uidls()
          local c = assert(client.connect("127.0.0.1:" .. srv.port))
          assert(c:login("alice", "wonderland"))
          local u = assert(c:uidl())
          assert.are.equal(u[2], (c:uidl(2)))
          c:quit()
          return u
        end
        local first = uidls()
        local mb = store:mailbox("alice")
        local msgs = assert(mb:scan())
        local map, validity = assert(mb:uids())
        for i, m in ipairs(msgs) do
          assert.are.equal(("%08X%08X"):format(map[m.name], validity), first[i])
        end
        store:deliver("alice", "Subject: four\r\n\r\n4\r\n")
        local second = uidls()
        assert.are.equal(4, #second)
        for i = 1, 3 do assert.are.equal(first[i], second[i]) end
        assert.are_not.equal(second[3], second[4])
      end)
    end)

    it("can use the Maildir base names for UIDL", function()
      with_server(function()
        local c = assert(client.connect("127.0.0.1:" .. srv.port))
        assert(c:login("alice", "wonderland"))
        local u = assert(c:uidl())
        local msgs = assert(store:mailbox("alice"):scan())
        for i, m in ipairs(msgs) do assert.are.equal(m.name, u[i]) end
        c:quit()
      end, { uidl = "name" })
    end)

    it("counts octets of a message whose name has no ,W= by reading it", function()
      with_server(function()
        local d = assert(store:delivery("alice"))
        local fd = d:fd()
        local msg = "A: b\n\nx\ny\r\nz\n"
        local f = io.open("/proc/self/fd/" .. fd, "wb")   -- write behind the delivery's back
        f:write(msg) f:close()
        assert(d:commit())
        local c = assert(client.connect("127.0.0.1:" .. srv.port))
        assert(c:login("alice", "wonderland"))
        local want = "A: b\r\n\r\nx\r\ny\r\nz\r\n"
        assert.are.equal(#want, (c:list(4)))
        assert.are.equal(want, (c:retr(4)))
        c:quit()
      end)
    end)
  end)

  describe("logins", function()
    it("takes APOP with the digest of the greeting's timestamp", function()
      with_server(function()
        local c = assert(client.connect("127.0.0.1:" .. srv.port))
        assert.truthy(c.timestamp)
        assert(c:apop("alice", "wonderland"))
        assert.are.equal(3, (c:stat()))
        c:quit()
        c = assert(client.connect("127.0.0.1:" .. srv.port))
        local ok, err, rep = c:apop("alice", "wrong")
        assert.is_nil(ok)
        assert.are.equal("AUTH", rep.code, err)
        c:close()
      end)
    end)

    it("offers no APOP for hashed passwords: APOP then fails like a wrong password", function()
      local hash = require("parley.mail.users").hash("hashed", "$6$")
      with_server(function()
        local c = assert(client.connect("127.0.0.1:" .. srv.port))
        local _, _, rep = c:apop("carol", "hashed")
        assert.are.equal("AUTH", rep.code)
        assert(c:login("carol", "hashed"))
        c:quit()
      end, { users = require("parley.mail.users").from_table { carol = { hash = hash } } })
    end)

    it("takes AUTH PLAIN with an initial response and in two steps", function()
      with_server(function()
        local c = assert(client.connect("127.0.0.1:" .. srv.port))
        assert(c:auth_plain("alice", "wonderland"))
        c:quit()
        local r = U.raw(srv.port)
        local sasl = require "parley.smtp.sasl"
        assert.are.equal("+ ", r:cmd("AUTH PLAIN"))
        assert.matches("^%+OK alice has 3", r:cmd(sasl.plain("alice", "wonderland")))
        r:close()
      end)
    end)

    it("refuses AUTH PLAIN with another authzid, a cancelled exchange and other mechanisms", function()
      with_server(function()
        local r = U.raw(srv.port)
        local sasl = require "parley.smtp.sasl"
        assert.are.equal("-ERR [AUTH] invalid user name or password", r:cmd("AUTH PLAIN " .. sasl.plain("alice", "wonderland", "bob")))
        assert.are.equal("+ ", r:cmd("AUTH PLAIN"))
        assert.are.equal("-ERR authentication cancelled", r:cmd("*"))
        assert.are.equal("-ERR unrecognized authentication type", r:cmd("AUTH CRAM-MD5"))
        assert.are.equal("-ERR cannot decode the PLAIN response", r:cmd("AUTH PLAIN !!!!"))
        assert.are.equal("+OK Supported mechanisms follow", r:cmd("AUTH"))
        assert.are.equal("PLAIN\r\n", r:body())
        r:close()
      end, { max_auth_failures = 10 })
    end)

    it("lets an on_auth hook decide", function()
      with_server(function()
        local c = assert(client.connect("127.0.0.1:" .. srv.port))
        assert(c:login("alice", "open sesame"))
        c:quit()
      end, { on_auth = function(_, mech, user, pass) return mech == "USER" and user == "alice" and pass == "open sesame" end })
    end)
  end)

  describe("one session per maildrop", function()
    it("answers -ERR [IN-USE] to a second session and lets it in once the first quits", function()
      with_server(function()
        local a = assert(client.connect("127.0.0.1:" .. srv.port))
        assert(a:login("alice", "wonderland"))
        local b = assert(client.connect("127.0.0.1:" .. srv.port))
        local ok, err, rep = b:login("alice", "wonderland")
        assert.is_nil(ok)
        assert.are.equal("IN-USE", rep.code, err)
        -- other users are not affected
        local c = assert(client.connect("127.0.0.1:" .. srv.port))
        assert(c:login("bob", "builder"))
        c:quit()
        a:quit()
        -- still in AUTHORIZATION: the same connection may try again
        assert(b:login("alice", "wonderland"))
        b:quit()
      end)
    end)
  end)

  describe("large messages", function()
    it("streams a 50 MB message without holding it in memory", function()
      with_server(function()
        local line = string.rep("x", 99) .. "\n"
        local d = assert(store:delivery("bob"))
        local chunk = string.rep(line, 10000)         -- 1 MB
        for _ = 1, 50 do assert(d:write(chunk)) end
        assert(d:commit())
        chunk = nil -- luacheck: ignore 311 (let the collector take it)
        collectgarbage() collectgarbage()
        local base = collectgarbage("count")
        local peak = base
        local c = assert(client.connect("127.0.0.1:" .. srv.port))
        assert(c:login("bob", "builder"))
        local size = assert(c:list(1))
        assert.are.equal(50 * 10000 * 101, size)
        local got = 0
        local n = assert(c:retr(1, function(piece)
          if piece then
            got = got + #piece
            local kb = collectgarbage("count")
            if kb > peak then peak = kb end
          end
          return true
        end))
        assert.are.equal(size, n)
        assert.are.equal(size, got)
        -- server and client share this Lua state: neither held the message
        assert.is_true(peak - base < 24 * 1024, ("peak grew by %.0f KB"):format(peak - base))
        c:quit()
      end)
    end)
  end)

  describe("helpers", function()
    it("gets the APOP secret of PLAIN users only (users:secret)", function()
      local users = require "parley.mail.users"
      local hash = users.hash("pw", "$6$")
      local u = users.from_table { plain = "s3cret", hashed = { hash = hash } }
      assert.are.equal("s3cret", u:secret("plain"))
      assert.is_nil(u:secret("hashed"))
      assert.is_nil(u:secret("nobody"))
      -- RFC 1939 7's example
      assert.are.equal("c4c9334bac560ecc979e58001b3e22fb",
        server.apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf"))
    end)

    it("counts CRLF octets across read chunks", function()
      local root2 = U.tmpdir("sz")
      local p = root2 .. "/m"
      U.write(p, "a\r\nb\nc\r\n\r\n\n")
      assert.are.equal(#"a\r\nb\r\nc\r\n\r\n\r\n", server.crlf_size(p, 3))
      assert.are.equal(#"a\r\nb\r\nc\r\n\r\n\r\n", server.crlf_size(p, 2))
      U.rmrf(root2)
    end)

    it("streams with CRLF and stuffing whatever the chunk size (randomized, fixed seed)", function()
      local root2 = U.tmpdir("rnd")
      math.randomseed(4)
      local alphabet = { "a", ".", "\n", "\r", "\r\n", "..", "\n." }
      for _ = 1, 200 do
        local parts = {}
        for i = 1, math.random(0, 40) do parts[i] = alphabet[math.random(#alphabet)] end
        local msg = table.concat(parts)
        U.write(root2 .. "/m", msg)
        local sent = {}
        local conn = { send = function(_, s) sent[#sent + 1] = s return #s end }
        local fh = io.open(root2 .. "/m", "rb")
        assert(server.send_message(conn, fh, math.random(1, 8)))
        fh:close()
        local wire = table.concat(sent)
        -- expected: LF not after CR -> CRLF; dots at line starts doubled
        local crlf = msg:gsub("\r?\n", "\r\n")
        if crlf ~= "" and crlf:sub(-1) ~= "\n" then crlf = crlf .. "\r\n" end
        local want = ("\n" .. crlf):gsub("\n%.", "\n.."):sub(2) .. ".\r\n"
        assert.are.equal(want, wire, ("%q"):format(msg))
        -- the octet count matches what went out before stuffing
        local size = server.crlf_size(root2 .. "/m", math.random(1, 8))
        local unstuffed = crlf
        if msg ~= "" and msg:sub(-1) ~= "\n" then unstuffed = crlf:sub(1, -3) end
        assert.are.equal(#unstuffed, size, ("%q"):format(msg))
      end
      U.rmrf(root2)
    end)
  end)
end)
