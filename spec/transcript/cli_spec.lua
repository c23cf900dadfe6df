-- `--transcript FILE` on `parley serve smtp` and `parley send`, and the
-- option parser every command shares.
local U = require "smtp.support.util"
local H = U.H
local tcli = require "parley.transcript.cli"

describe("transcript options", function()
  it("takes --transcript alone, with a file, with =FILE, and the full/secrets flags", function()
    local rest, o = tcli.take{ "--listen", "x", "--transcript", "--sink" }
    assert.same({ "--listen", "x", "--sink" }, rest)
    assert.same({ transcript = true }, o)
    rest, o = tcli.take{ "HOST", "--transcript", "t.log", "--transcript-full" }
    assert.same({ "HOST" }, rest)
    assert.same({ transcript = "t.log", transcript_full = true }, o)
    rest, o = tcli.take{ "--transcript=a.log", "--transcript-secrets", "23" }
    assert.same({ "23" }, rest)
    assert.same({ transcript = "a.log", transcript_secrets = true }, o)
    assert.same({ transcript_full = true, transcript = true }, select(2, tcli.take{ "--transcript-full" }))
  end)
end)

describe("parley serve smtp --transcript FILE and parley send --transcript FILE", function()
  local root, srv
  before_each(function()
    root = U.tmpdir("tcli")
    U.write(root .. "/users", "alice:{PLAIN}pw\n")
    srv = U.child_server(("--maildir %s --domain example.org --users %s --auth-delay 0 --transcript %s")
      :format(U.q(root .. "/md"), U.q(root .. "/users"), U.q(root .. "/server.log")))
  end)
  after_each(function()
    srv:stop()
    U.rmrf(root)
  end)

  it("writes both sides' dialogue to the files, secrets masked, the message summarised", function()
    local out, ok = U.sh(("cd %s && lua5.4 bin/parley send --server 127.0.0.1:%d --from alice@example.org " ..
      "--to alice@example.org --subject hi --body 'hello' --auth alice:pw --quiet --transcript %s")
      :format(U.q(H.root), srv.port, U.q(root .. "/client.log")))
    assert.truthy(ok, out)
    local plain = require("parley.smtp.sasl").plain("alice", "pw")
    for _, name in ipairs{ "client.log", "server.log" } do
      local log = U.slurp(root .. "/" .. name)
      assert.matches("%[1%] %+%d+%.%d%d%ds %* ", log)
      assert.truthy(log:find("C: AUTH PLAIN ****", 1, true), name .. ":\n" .. log)
      assert.matches("C: %[[%d,]+ bytes%]\n", log)
      assert.truthy(log:find("S: 221 ", 1, true), log)
      assert.is_nil(log:find(plain, 1, true), "no credentials in " .. name)
      assert.is_nil(log:find("\27[", 1, true), "no colour in a file")
    end
  end)
end)
