-- #interop: third-party SMTP clients against our server (python smtplib,
-- swaks, curl), and our client against aiosmtpd and Postfix smtp-sink.
-- Each checks the delivered bytes, not just a reply code.
local U = require "smtp.support.util"
local H = U.H
local client = require "parley.smtp.client"

local function need(prog)
  if not U.have(prog) then
    pending(prog .. " is not installed")
    return false
  end
  return true
end

describe("#interop third-party clients against parley serve smtp", function()
  local root, srv
  before_each(function()
    root, srv = U.child_with_users("interop", "alice:{PLAIN}wonderland\nbob:{PLAIN}builder\n")
  end)
  after_each(function()
    srv:stop()
    U.rmrf(root)
  end)

  it("#interop takes mail from python smtplib, plain and with AUTH", function()
    local py = [[
import smtplib, sys
port = int(sys.argv[1])
msg = b"From: a@ext.org\r\nTo: alice@example.org\r\nSubject: py\r\n\r\nplain one\r\n.starts with a dot\r\n"
with smtplib.SMTP("127.0.0.1", port) as s:
    s.sendmail("a@ext.org", ["alice@example.org"], msg)
with smtplib.SMTP("127.0.0.1", port) as s:
    s.login("bob", "builder")
    s.sendmail("bob@example.org", ["alice@example.org", "bob@example.org"], msg.replace(b"plain one", b"with auth"))
try:
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.login("bob", "wrong")
except smtplib.SMTPAuthenticationError as e:
    print("AUTHFAIL", e.smtp_code)
print("OK")
]]
    U.write(root .. "/t.py", py)
    local out = U.sh(("python3 %s %d"):format(U.q(root .. "/t.py"), srv.port))
    assert.truthy(out:find("AUTHFAIL 535", 1, true), out)
    assert.truthy(out:find("OK", 1, true), out)
    local got = U.delivered(root .. "/md", "alice")
    table.sort(got, function(a, b) return a:find("plain one", 1, true) ~= nil and b:find("with auth", 1, true) ~= nil end)
    assert.are.equal(2, #got)
    local want = "From: a@ext.org\r\nTo: alice@example.org\r\nSubject: py\r\n\r\nplain one\r\n.starts with a dot\r\n"
    local bodies = { U.strip_trace(got[1]), U.strip_trace(got[2]) }
    table.sort(bodies)
    assert.are.same({ want, (want:gsub("plain one", "with auth")) }, bodies)
    assert.are.equal(1, #U.delivered(root .. "/md", "bob"))
  end)

  it("#interop takes a pipelined message with an attachment from swaks", function()
    if not need("swaks") then return end
    local att = root .. "/att.bin"
    local data = {}
    for i = 0, 2999 do data[#data + 1] = string.char(i % 256) end
    U.write(att, table.concat(data))
    local out = U.sh(("swaks --server 127.0.0.1:%d --from a@ext.org --to alice@example.org --pipeline " ..
      "--auth PLAIN --auth-user alice --auth-password wonderland --body 'see attached' --attach %s")
      :format(srv.port, U.q(att)))
    assert.truthy(out:find("250 2.0.0 OK", 1, true), out)
    assert.truthy(out:find("PIPELINING", 1, true), out)
    local msg = U.delivered(root .. "/md", "alice")[1]
    assert.truthy(msg, out)
    local at = msg:lower():find("content-transfer-encoding: base64", 1, true)
    local b64 = at and msg:match("\r\n\r\n([%w%+/=\r\n]+)", at)
    assert.truthy(b64, msg)
    assert.are.equal(table.concat(data), (require("mime").unb64((b64:gsub("[\r\n]", "")))))
  end)

  it("#interop takes mail from curl smtp:// byte for byte", function()
    if not need("curl") then return end
    local body = "From: a@ext.org\r\nTo: bob@example.org\r\nSubject: curl\r\n\r\nline one\r\n.dot line\r\n..two dots\r\n"
    U.write(root .. "/mail.txt", body)
    local out = U.sh(("curl -sS --mail-from a@ext.org --mail-rcpt bob@example.org --upload-file %s smtp://127.0.0.1:%d/client.example && echo CURLOK")
      :format(U.q(root .. "/mail.txt"), srv.port))
    assert.truthy(out:find("CURLOK", 1, true), out)
    local got = U.delivered(root .. "/md", "bob")
    assert.are.equal(1, #got)
    assert.are.equal(body, U.strip_trace(got[1]))
    -- and with AUTH
    out = U.sh(("curl -sS --user alice:wonderland --mail-from alice@example.org --mail-rcpt bob@example.org --upload-file %s smtp://127.0.0.1:%d/ && echo CURLOK")
      :format(U.q(root .. "/mail.txt"), srv.port))
    assert.truthy(out:find("CURLOK", 1, true), out)
    assert.are.equal(2, #U.delivered(root .. "/md", "bob"))
  end)
end)

describe("#interop parley client against third-party servers", function()
  local MSG = "From: a@ext.org\r\nTo: x@y.org\r\nSubject: to a peer\r\n\r\nbody\r\n.dotted\r\nlast\r\n"

  it("#interop sends to aiosmtpd, which receives the same bytes", function()
    local dir = U.tmpdir("aio")
    local cmd = ("exec timeout 60 /usr/bin/python3 %s %s 2>&1 & echo PID $!")
      :format(U.q(H.root .. "/spec/smtp/support/aiosmtpd_save.py"), U.q(dir))
    local fh = assert(io.popen("sh -c " .. U.q(cmd .. "; wait"), "r"))
    local pid = tonumber(fh:read("l"):match("PID (%d+)"))
    local port = tonumber((fh:read("l") or ""):match("PORT (%d+)"))
    assert.truthy(port, "aiosmtpd did not start")
    local res, err, rep = H.run(function()
      return client.send{ server = "127.0.0.1:" .. port, from = "a@ext.org", to = { "x@y.org", "z@y.org" }, message = MSG }
    end)
    os.execute("kill " .. pid .. " 2>/dev/null")
    fh:close()
    assert.truthy(res, tostring(err) .. " " .. tostring(rep and rep.text))
    assert.are.same({ "x@y.org", "z@y.org" }, res.accepted)
    assert.are.equal(MSG, U.slurp(dir .. "/001.eml"))
    assert.are.equal("a@ext.org\nx@y.org\nz@y.org\n", U.slurp(dir .. "/001.env"))
    U.rmrf(dir)
  end)

  it("#interop sends to Postfix smtp-sink, which dumps the same bytes", function()
    if not need("/usr/sbin/smtp-sink") then return end
    local dir = U.tmpdir("sink")
    os.execute("chmod 777 " .. U.q(dir))
    -- find a free port, then start smtp-sink on it
    local port = H.run(function()
      local l = assert(require("parley").listen("127.0.0.1:0"))
      local p = l:port()
      l:close()
      return p
    end)
    local fh = assert(io.popen(("exec timeout 30 /usr/sbin/smtp-sink -u nobody -d %s/%%H%%M%%S. 127.0.0.1:%d 10 2>&1 & echo PID $!")
      :format(U.q(dir), port), "r"))
    local pid = tonumber(fh:read("l"):match("PID (%d+)"))
    local res, err
    H.run(function()
      for _ = 1, 50 do
        res, err = client.send{ server = "127.0.0.1:" .. port, from = "a@ext.org", to = "x@y.org", message = MSG }
        if res or err ~= "connection refused" then break end
        require("parley").sleep(0.05)
      end
    end)
    require("parley").run(function() require("parley").sleep(0.2) end)
    os.execute("kill " .. pid .. " 2>/dev/null")
    fh:close()
    assert.truthy(res, tostring(err))
    local files = U.files(dir)
    assert.are.equal(1, #files)
    local dump = U.slurp(files[1])
    -- smtp-sink writes its dumps with LF line ends
    assert.truthy(dump:find((MSG:gsub("\r\n", "\n")), 1, true), dump)
    U.rmrf(dir)
  end)
end)
