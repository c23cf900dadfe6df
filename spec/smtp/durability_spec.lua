-- kill -9 of a child `parley serve smtp` at random points during DATA,
-- repeated: every message that got its 250 is in new/ byte for byte, and
-- nothing partial is ever visible in new/.
local U = require "smtp.support.util"
local H = U.H
local parley = require "parley"
local client = require "parley.smtp.client"

local ROUNDS = 20

local function message(round, i, rng)
  local size = rng(2000, 150000)
  local line = ("r%02d-m%03d "):format(round, i)
  local body = {}
  local n = 0
  while n < size do
    local l = line .. ("%x"):format(n) .. (" ."):rep(rng(0, 30))
    body[#body + 1] = l
    n = n + #l + 2
  end
  return ("Subject: round %d message %d\r\n\r\n"):format(round, i) .. table.concat(body, "\r\n") .. "\r\n"
end

describe("smtp server durability", function()
  it("keeps every 250'd message whole across kill -9 during DATA (" .. ROUNDS .. " rounds)", function()
    local root = U.tmpdir("kill")
    math.randomseed(20261127)
    local rng = math.random
    local acked_total, seen_total = 0, 0
    for round = 1, ROUNDS do
      local md = root .. "/md" .. round
      local srv = U.child_server(("--maildir %s --domain example.org"):format(U.q(md)))
      local sent, acked = {}, {}
      H.run(function()
        local killer = parley.spawn(function()
          parley.sleep(rng(5, 250) / 1000)
          srv:kill("KILL")
        end)
        local c = client.connect("127.0.0.1:" .. srv.port)
        for i = 1, 200 do
          if not c then break end
          local m = message(round, i, rng)
          sent[m] = true
          local res = c:send{ from = "a@ext.org", to = "k@example.org", message = m, chunking = (i % 2 == 0) }
          if not res then break end
          acked[#acked + 1] = m
        end
        if c then c:close() end
        killer:join(5)
      end)
      srv:stop()
      local got = {}
      for _, f in ipairs(U.files(md .. "/k/new")) do
        local m = U.strip_trace(U.slurp(f))
        assert.is_true(sent[m] ~= nil, "round " .. round .. ": partial or unknown message in new/: " .. f)
        got[m] = true
      end
      for _, m in ipairs(acked) do
        assert.is_true(got[m] == true, "round " .. round .. ": a 250'd message is missing from new/")
      end
      acked_total = acked_total + #acked
      for _ in pairs(got) do seen_total = seen_total + 1 end
    end
    U.rmrf(root)
    if os.getenv("SMTP_SPEC_VERBOSE") then
      io.stderr:write(("durability: %d acked, %d in new/\n"):format(acked_total, seen_total))
    end
    -- the kills must have hit transactions, not only idle time
    assert.is_true(acked_total > 0)
    assert.is_true(seen_total >= acked_total)
  end)
end)
