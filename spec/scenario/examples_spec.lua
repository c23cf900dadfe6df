-- examples/scenarios/*.lua: each one passes against the real parley
-- servers, and none is left without a run here.
local H = require "helper"
local lfs = require "lfs"
local servers = require "scenario.support.servers"
local scenario = require "parley.scenario"

-- Each example with the vars it needs from the servers.
local EXAMPLES = {
  smtp_by_hand = function(sv) return { url = sv.url.smtp } end,
  pop3_by_hand = function(sv) return { url = sv.url.pop3, password = servers.PASSWORD } end,
  imap_by_hand = function(sv) return { url = sv.url.imap, password = servers.PASSWORD } end,
  mail_roundtrip = function(sv)
    return { smtp = sv.url.smtp, imap = sv.url.imap, password = servers.PASSWORD, wait = "5" }
  end,
}

local function failures(rep)
  local t = {}
  for _, st in ipairs(rep.steps) do
    if st.status ~= "pass" then t[#t + 1] = st.n .. " " .. st.status .. " " .. st.name .. ": " .. tostring(st.error) end
  end
  return table.concat(t, "\n")
end

describe("examples/scenarios", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("has a run here for every file", function()
    for name in lfs.dir(H.root .. "/examples/scenarios") do
      local base = name:match("^(.*)%.lua$")
      if base then assert.is_function(EXAMPLES[base], "no spec runs examples/scenarios/" .. name) end
    end
  end)

  for name, vars in pairs(EXAMPLES) do
    it(name .. ".lua passes against the parley servers", function()
      H.run(function()
        local sv = servers.start()
        local ok, rep = pcall(scenario.run, H.root .. "/examples/scenarios/" .. name .. ".lua", { vars = vars(sv) })
        sv:stop()
        assert(ok, rep)
        assert.is_true(rep.ok, failures(rep))
        assert.is_true(rep.passed >= 5)
      end, 30)
    end)
  end

  it("smtp_by_hand.lua delivers its dot-stuffed line un-stuffed and keeps the queue id", function()
    H.run(function()
      local sv = servers.start()
      local rep = scenario.run(H.root .. "/examples/scenarios/smtp_by_hand.lua", { vars = { url = sv.url.smtp } })
      local m = require("parley.mail.maildir").open(sv.dir .. "/mail"):mailbox(servers.USER)
      local found
      for _, msg in ipairs(assert(m:scan())) do
        local f = assert(m:open(msg.name))
        local text = f:read("a")
        f:close()
        if text:find("typed by hand", 1, true) then found = text end
      end
      sv:stop()
      assert.is_true(rep.ok, failures(rep))
      assert.truthy(found and found:find("\r\n.a line that starts with a dot", 1, true))
      assert.is_string(rep.vars.queue_id)
    end)
  end)
end)
