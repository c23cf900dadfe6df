-- #interop: parley check against Dovecot (imapd and pop3d) over a
-- Maildir written here; a message dropped into new/ during --wait is
-- found through Dovecot's IDLE.
local parley = require "parley"
local H = require "helper"
local D = require "support.dovecot"
local check = require "parley.check"

local function message(subject)
  return ("From: bob@example.org\r\nTo: alice@example.org\r\nSubject: %s\r\n\r\nhello\r\n"):format(subject)
end

-- a message file in new/, owned by Dovecot's mail user
local function drop(box, name, subject)
  H.write(box .. "/tmp/" .. name, message(subject))
  os.execute(("chown %d:%d %s/tmp/%s && mv %s/tmp/%s %s/new/%s"):format(D.NOBODY, D.NOBODY, box, name,
    box, name, box, name))
end

for _, protocol in ipairs { "imap", "pop3" } do
  describe("parley check against Dovecot " .. protocol .. " #interop", function()
    local dir, dv, box
    setup(function()
      if not D.available() then return end
      dir = H.tmpdir()
      box = dir .. "/mail/alice"
      os.execute(("mkdir -p %s/new %s/cur %s/tmp"):format(box, box, box))
      H.write(box .. "/cur/1000.1.seed:2,S", message("seeded one"))
      H.write(box .. "/cur/1000.2.seed:2,S", message("quarterly numbers"))
      dv = D.start{ protocol = protocol, dir = dir, mail_root = dir .. "/mail", users = { alice = "pw" } }
    end)
    teardown(function()
      if dv then dv.stop() end
      H.rmdir(dir)
    end)

    local function url(password)
      return ("%s://alice:%s@127.0.0.1:%d%s"):format(protocol, password or "pw", dv.port,
        protocol == "imap" and "/INBOX" or "")
    end

    it("counts the messages and finds one by Subject", function()
      if not dv then pending(D.why) return end
      H.run(function()
        local r = check.run(url(), { subject = "quarterly" })
        assert.equal("OK", r.state, r.line)
        assert.is_true(r.perfdata.messages.value >= 2)
        local bad = check.run(url("wrong"))
        assert.equal("CRITICAL", bad.state)
        assert.equal("login", bad.phase)
      end)
    end)

    it("finds a message that arrives during --wait", function()
      if not dv then pending(D.why) return end
      H.run(function()
        check.run(url())   -- Dovecot's first session builds its index: slow
        local t = H.go(function()
          parley.sleep(0.5)
          drop(box, "2000.1." .. protocol, "arrived late " .. protocol)
        end)
        local r = check.run(url(), { subject = "arrived late " .. protocol, wait = 8 })
        H.join(t)
        assert.equal("OK", r.state, r.line)
        assert.is_true(r.perfdata.wait.value >= 0.3, r.line)
      end, 30)
    end)
  end)
end
