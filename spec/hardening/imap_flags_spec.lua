-- Found by the IMAP race of load_spec (issue 11: "no lost flag update").
-- Two sessions on one mailbox: A sets \Draft, B removes it, A sets \Seen.
-- The message must end with \Seen only; parley's server ended with \Seen
-- \Draft: A's STORE wrote A's cached flags back (B's removal was lost).
-- STORE now applies +FLAGS/-FLAGS to the flags the message has now.
local lab = require "hardening.support.lab"

-- a logged-in session with INBOX selected: cmd(line) -> untagged, tagged
local function session(port)
  local c = lab.connect(port)
  c:upto("^%* OK")
  local n = 0
  local function cmd(line)
    n = n + 1
    local tag = "t" .. n
    c:send(tag .. " " .. line .. "\r\n")
    local untagged = {}
    for _ = 1, 1000 do
      local l = c:line()
      if l:sub(1, #tag + 1) == tag .. " " then
        assert(l:match("^%S+ OK"), line .. " -> " .. l)
        return untagged, l
      end
      untagged[#untagged + 1] = l
    end
  end
  cmd("LOGIN " .. lab.USER .. " " .. lab.PASS)
  cmd("SELECT INBOX")
  return { cmd = cmd, close = function() cmd("LOGOUT") c:close() end }
end

describe("IMAP flags changed by two sessions", function()
  before_each(lab.H.fd_snapshot)
  after_each(lab.H.fd_check)

  it("keeps another session's flag removal when a session adds a flag", function()
    local dir = lab.tree()
    local srv = lab.serve_mail(dir)
    local ok, err = pcall(function()
      lab.sessions.smtp(srv.ports.smtp, { "Subject: one\r\n\r\none\r\n" })
      local a, b = session(srv.ports.imap), session(srv.ports.imap)
      a.cmd("UID STORE 1 +FLAGS (\\Draft)")
      b.cmd("UID STORE 1 -FLAGS (\\Draft)")
      a.cmd("UID STORE 1 +FLAGS (\\Seen)")
      a.close()
      b.close()
      local fresh = session(srv.ports.imap)
      local lines = fresh.cmd("UID FETCH 1 (FLAGS)")
      fresh.close()
      local flags = table.concat(lines, " "):match("FLAGS %(([^)]*)%)")
      flags = flags:gsub("\\Recent", ""):gsub("^%s+", ""):gsub("%s+$", "")
      assert.equal("\\Seen", flags)
    end)
    local out = srv:stop()
    lab.rmdir(dir)
    assert(ok, tostring(err) .. "\n" .. out)
  end)
end)
