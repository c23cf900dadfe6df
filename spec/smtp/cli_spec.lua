-- `parley serve smtp` and `parley send` from the command line.
local U = require "smtp.support.util"
local H = U.H

local function send(args)
  local out, ok, code = U.sh(("cd %s && lua5.4 bin/parley send %s"):format(U.q(H.root), args))
  return out, ok and 0 or code
end

describe("parley send and parley serve smtp", function()
  local root, srv
  before_each(function()
    root, srv = U.child_with_users("cli", "alice:{PLAIN}pw\n")
  end)
  after_each(function()
    srv:stop()
    U.rmrf(root)
  end)

  it("sends a message with an attachment, printing each step, and exits 0", function()
    U.write(root .. "/notes.txt", "attached text\n")
    local out, code = send(("--server 127.0.0.1:%d --from alice@example.org --to alice@example.org " ..
      "--subject 'Grüße' --body 'hello there' --attach %s --auth alice:pw"):format(srv.port, U.q(root .. "/notes.txt")))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("S: 235 2.7.0", 1, true), out)
    assert.truthy(out:find("C: AUTH PLAIN ****", 1, true), out)
    assert.is_nil(out:find(require("parley.smtp.sasl").plain("alice", "pw"), 1, true), "no credentials printed")
    local msg = U.delivered(root .. "/md", "alice")[1]
    assert.truthy(msg:find("Subject: =?UTF-8?B?", 1, true), msg)
    assert.truthy(msg:find("hello there", 1, true))
    assert.truthy(msg:find('filename="notes.txt"', 1, true))
    assert.truthy(msg:find(require("mime").b64("attached text\n"), 1, true))
  end)

  it("streams a large attachment and announces the message's exact SIZE", function()
    local data = {}
    for i = 1, 3 * 1048576 // 4096 do data[i] = string.pack(">I4", i):rep(1024) end
    data = table.concat(data)
    U.write(root .. "/big.bin", data)
    local out, code = send(("--server 127.0.0.1:%d --from alice@example.org --to alice@example.org " ..
      "--subject big --body 'see attached' --attach %s --auth alice:pw"):format(srv.port, U.q(root .. "/big.bin")))
    assert.are.equal(0, code, out)
    local size = tonumber(out:match("C: MAIL FROM:<alice@example.org> SIZE=(%d+)"))
    assert.truthy(size, out)
    local msg = U.strip_trace(U.delivered(root .. "/md", "alice")[1])
    assert.are.equal(size, #msg)
    local m = require("parley.mail.message").parse(msg)
    assert.are.equal("big.bin", m.parts[2].filename)
    assert.are.equal(data, m.parts[2]:content())
  end)

  it("sends --message-file as it is", function()
    local raw = "From: alice@example.org\r\nTo: alice@example.org\r\nSubject: as is\r\n\r\n.dot line\r\nend\r\n"
    U.write(root .. "/msg.eml", raw)
    local out, code = send(("--server 127.0.0.1:%d --from alice@example.org --to alice@example.org " ..
      "--message-file %s --auth alice:pw --quiet"):format(srv.port, U.q(root .. "/msg.eml")))
    assert.are.equal(0, code, out)
    assert.are.equal("", out)
    assert.are.equal(raw, U.strip_trace(U.delivered(root .. "/md", "alice")[1]))
  end)

  it("exits 2 and names the file when an attachment cannot be read", function()
    local out, code = send(("--server 127.0.0.1:%d --from a@ext.org --to alice@example.org --subject s --body b " ..
      "--attach %s"):format(srv.port, U.q(root .. "/missing.txt")))
    assert.are.equal(2, code, out)
    assert.truthy(out:find("cannot read " .. root .. "/missing.txt", 1, true), out)
  end)

  it("exits 1 and says why when a recipient is refused", function()
    local out, code = send(("--server 127.0.0.1:%d --from a@ext.org --to nobody@example.org --subject s --body b")
      :format(srv.port))
    assert.are.equal(1, code, out)
    assert.truthy(out:find("550 5.1.1", 1, true), out)
  end)

  it("takes --to a,b as two recipients, as swaks does", function()
    local out, code = send(("--server 127.0.0.1:%d --from a@ext.org --to 'alice@example.org, nobody@example.org' " ..
      "--subject s --body b"):format(srv.port))
    assert.are.equal(1, code, out)   -- nobody is refused
    assert.truthy(out:find("C: RCPT TO:<alice@example.org>", 1, true), out)
    assert.truthy(out:find("C: RCPT TO:<nobody@example.org>", 1, true), out)
    assert.are.equal(1, #U.delivered(root .. "/md", "alice"))
  end)

  it("exits 2 on a missing option", function()
    local out, code = send("--server 127.0.0.1:1 --from a@b.c --subject s --body b")
    assert.are.equal(2, code, out)
    assert.truthy(out:find("--to is required", 1, true), out)
  end)

  it("answers 421 to a connected client when the server gets SIGTERM", function()
    H.run(function()
      local r = U.raw(srv.port):greet()
      srv:kill("TERM")
      local code = r:reply()
      assert.are.equal(421, code)
      r:close()
    end)
  end)
end)
