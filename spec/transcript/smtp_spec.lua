-- Transcripts of SMTP sessions, client side and server side.
local parley = require "parley"
local H = require "helper"
local C = require "transcript.support.collect"
local smtp = require "parley.smtp"
local U = require "smtp.support.util"

local BODY = ("x"):rep(70) .. "\r\n"
local MESSAGE = "Subject: t\r\n\r\n" .. BODY:rep(50)

-- an SMTP server with a user, recorded; fn(srv, server_entries)
local function with_server(opts, fn)
  local root = U.tmpdir("transcript")
  H.run(function()
    local rec, entries = C.recorder(opts.server_transcript)
    local o = { listen = "127.0.0.1:0", store = U.store(root), users = U.users{ alice = "s3cret" },
      signals = false, transcript = rec }
    for k, v in pairs(opts) do if k ~= "server_transcript" then o[k] = v end end
    local srv = assert(smtp.server.serve(o))
    local ok, err = pcall(fn, srv, entries)
    srv:close(0)
    if not ok then error(err, 0) end
  end, 30)
  H.rmdir(root)
end

describe("smtp transcript", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("records the client's dialogue with directions in order, AUTH PLAIN masked and DATA summarised", function()
    with_server({}, function(srv, sentries)
      local rec, entries = C.recorder()
      assert(smtp.client.send{ server = srv.address, from = "a@example.org", to = "alice@localhost",
        message = MESSAGE, auth = "alice:s3cret", chunking = false, transcript = rec })
      C.well_formed(entries)
      local lines = C.lines(entries)
      C.in_order(lines, { "^%* connected to 127%.0%.0%.1:%d+$", "^S: 220 ", "^C: EHLO ", "^S: 250 ",
        "^C: AUTH PLAIN %*%*%*%*$", "^S: 235 ", "^C: MAIL FROM:<a@example.org>", "^C: DATA$",
        "^S: 354 ", "^C: " .. C.bytes(#MESSAGE) .. "$", "^C: %.$", "^S: 250 ", "^C: QUIT$",
        "^S: 221 ", "^%* closed$" })
      C.absent(lines, "AGFsaWNlAHMzY3JldA")   -- base64 of \0alice\0s3cret
      -- the server saw the same dialogue from its side
      local slines = C.lines(sentries)
      C.in_order(slines, { "^%* accepted from 127%.0%.0%.1:%d+$", "^S: 220 ", "^C: EHLO ",
        "^C: AUTH PLAIN %*%*%*%*$", "^C: DATA$", "^S: 354 ", "^C: " .. C.bytes(#MESSAGE) .. "$",
        "^C: %.$", "^S: 250 ", "^C: QUIT$", "^S: 221 " })
      C.absent(slines, "AGFsaWNlAHMzY3JldA")
    end)
  end)

  it("masks every AUTH LOGIN continuation line after a 334, on both sides", function()
    with_server({}, function(srv, sentries)
      local rec, entries = C.recorder()
      local c = assert(smtp.client.connect(srv.address, { transcript = rec }))
      assert(c:auth("alice", "s3cret", "LOGIN"))
      c:quit()
      for _, lines in ipairs{ C.lines(entries), C.lines(sentries) } do
        C.in_order(lines, { "^C: AUTH LOGIN$", "^S: 334 ", "^C: %*%*%*%*$", "^S: 334 ", "^C: %*%*%*%*$", "^S: 235 " })
        C.absent(lines, "YWxpY2U")   -- base64 of alice
        C.absent(lines, "czNjcmV0")  -- base64 of s3cret
      end
    end)
  end)

  it("shows secrets and every line of the message when asked", function()
    with_server({ server_transcript = { full = true, secrets = true } }, function(srv, sentries)
      local rec, entries = C.recorder{ full = true, secrets = true }
      assert(smtp.client.send{ server = srv.address, from = "a@example.org", to = "alice@localhost",
        message = MESSAGE, auth = "alice:s3cret", chunking = false, transcript = rec })
      for _, lines in ipairs{ C.lines(entries), C.lines(sentries) } do
        C.in_order(lines, { "^C: AUTH PLAIN AGFsaWNlAHMzY3JldA==$", "^S: 354 ", "^C: Subject: t$", "^C: $",
          "^C: " .. ("x"):rep(70) .. "$", "^C: %.$", "^S: 250 " })
        assert.is_nil(C.find(lines, "bytes%]"))
      end
    end)
  end)

  it("summarises each BDAT chunk", function()
    with_server({}, function(srv, sentries)
      local rec, entries = C.recorder()
      assert(smtp.client.send{ server = srv.address, from = "a@example.org", to = "alice@localhost",
        message = MESSAGE, transcript = rec })
      for _, lines in ipairs{ C.lines(entries), C.lines(sentries) } do
        C.in_order(lines, { "^C: BDAT " .. #MESSAGE .. " LAST$", "^C: " .. C.bytes(#MESSAGE) .. "$", "^S: 250 " })
      end
    end)
  end)

  it("shows a bare LF and a NUL the client sent, escaped", function()
    with_server({}, function(srv, sentries)
      local conn = assert(parley.connect(srv.address))
      assert(conn:receive())
      conn:send("NOOP\0x\r\nNOOP\nRSET\r\nQUIT\r\n")
      repeat local l = conn:receive() until not l or l:match("^221")
      conn:close()
      local shown = {}
      for _, e in ipairs(sentries) do shown[#shown + 1] = require("parley.transcript").format(e) end
      local all = table.concat(shown, "\n")
      assert.truthy(all:find("C: NOOP\\x00x", 1, true), all)
      assert.truthy(all:find("C: NOOP\\n", 1, true), all)
    end)
  end)

  it("numbers two concurrent connections of one server apart", function()
    with_server({}, function(srv, sentries)
      local a = assert(smtp.client.connect(srv.address))
      local b = assert(smtp.client.connect(srv.address))
      assert(a:noop()) assert(b:noop())
      a:quit() b:quit()
      local ids = {}
      for _, e in ipairs(sentries) do ids[e.conn] = true end
      assert.same({ [1] = true, [2] = true }, ids)
      C.well_formed(sentries)
    end)
  end)
end)
