-- `parley run`: exit codes, options and output formats, on scenario files
-- that start their own line server (so the command needs no other peer),
-- and the SMTP example against `parley serve smtp`.
local H = require "helper"
local child = require "support.child"

local q = child.quote

-- A scenario file with its own server: greets "220 hi", answers QUIT
-- with 221 and anything else with "250 <line>". `body` scripts `c`.
local function scenario_file(dir, name, body)
  return H.write(dir .. "/" .. name, ([[
local parley = require "parley"
local scenario = require "parley.scenario"
return scenario(%q, function(s)
  local srv = assert(parley.serve{ listen = "127.0.0.1:0", signals = false, grace = 1,
    handler = function(conn)
      conn:send("220 hi\r\n")
      for line in conn:lines() do
        if line == "QUIT" then conn:send("221 bye\r\n") break end
        conn:send("250 " .. line .. "\r\n")
      end
    end })
  s:defer(srv)
  local c = s:connect("tcp://" .. srv.address)
  %s
end)
]]):format(name, body))
end

-- Runs `parley run ARGS`: stdout, stderr, exit code.
local function run(args)
  local err = os.tmpname()
  local fh = assert(io.popen("cd " .. q(H.root) .. " && timeout 60 lua5.4 bin/parley run " .. args
    .. " 2>" .. q(err)))
  local out = fh:read("a")
  local _, _, code = fh:close()
  local errs = H.read(err)
  os.remove(err)
  return out, errs, code
end

describe("parley run", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rmdir(dir) end)

  it("exits 0 when every step passed and prints the report", function()
    local f = scenario_file(dir, "pass.lua",
      [[c:expect(220) c:send("HELLO") c:expect("^250 HELLO$") c:send("QUIT") c:expect(221)]])
    local out, errs, code = run(q(f))
    assert.equal(0, code, out .. errs)
    assert.truthy(out:find("^pass%.lua %(.-pass%.lua%)\n"), out)
    assert.truthy(out:find("ok: 4 passed, 0 failed, 0 not run", 1, true))
  end)

  it("exits 1 when a step failed and says which and why", function()
    local f = scenario_file(dir, "fail.lua",
      [[c:expect(220) c:send("HELLO") c:expect(354) c:send("QUIT") c:expect(221)]])
    local out, _, code = run(q(f))
    assert.equal(1, code)
    assert.truthy(out:find('✗   3 expect 354 .-\n        expected 354, got "250 HELLO"'))
    assert.truthy(out:find("FAILED: 2 passed, 1 failed, 1 not run", 1, true))
  end)

  it("exits 1 when the scenario raises, with the error in the report", function()
    local f = scenario_file(dir, "raise.lua", [[c:expect(220) error("broken script")]])
    local out, _, code = run(q(f))
    assert.equal(1, code)
    assert.truthy(out:find("✗   3 error", 1, true))
    assert.truthy(out:find("broken script", 1, true))
  end)

  it("exits 2 on a file that does not load, and still runs the others", function()
    H.write(dir .. "/syntax.lua", "return scenario(")
    H.write(dir .. "/nothing.lua", "return 42")
    local good = scenario_file(dir, "good.lua", [[c:expect(220)]])
    local out, errs, code = run(q(dir .. "/syntax.lua") .. " " .. q(dir .. "/nothing.lua") .. " " .. q(good))
    assert.equal(2, code)
    assert.truthy(errs:find("syntax.lua:1:", 1, true))
    assert.truthy(errs:find("does not return a scenario", 1, true))
    assert.truthy(out:find("ok: 2 passed", 1, true))
    assert.truthy(out:find("FAILED: 3 scenarios, 2 passed, 2 failed, 0 not run", 1, true))
  end)

  it("exits 2 on usage errors", function()
    local f = scenario_file(dir, "u.lua", [[c:expect(220)]])
    for _, args in ipairs{ "", "--format xml " .. q(f), "--var novalue " .. q(f), "--timeout -1 " .. q(f),
      "--bogus " .. q(f) } do
      local _, errs, code = run(args)
      assert.equal(2, code, args)
      assert.truthy(errs:find("usage: parley run", 1, true), args)
    end
    local out, _, code = run("--help")
    assert.equal(0, code)
    assert.truthy(out:find("Exit status", 1, true))
  end)

  it("passes --var values and applies --timeout", function()
    local f = scenario_file(dir, "vars.lua", [[
      c:expect(220)
      c:send(s.vars.word)
      c:expect("^250 " .. s.vars.word .. "$")
      s:check(s:timeout_of() == 0.5, "timeout from the command line")]])
    local out, errs, code = run(q(f) .. " --var word=parley --var other=x --timeout 0.5")
    assert.equal(0, code, out .. errs)
  end)

  it("writes TAP and JSON for several files", function()
    local a = scenario_file(dir, "a.lua", [[c:expect(220)]])
    local b = scenario_file(dir, "b.lua", [[c:expect(221)]])
    local out, _, code = run("--format tap " .. q(a) .. " " .. q(b))
    assert.equal(1, code)
    assert.truthy(out:find("^TAP version 13\n1%.%.4\n"))
    assert.truthy(out:find("\nnot ok 4 %- b%.lua: expect 221\n  %-%-%-\n"))
    out, _, code = run("--format json " .. q(a) .. " " .. q(b))
    assert.equal(1, code)
    local path = H.write(dir .. "/out.json", out)
    local fh = assert(io.popen("python3 -c " .. q([=[
import json, sys
d = json.load(open(sys.argv[1]))
print(d["ok"], d["passed"], d["failed"], [s["name"] for s in d["scenarios"]])
]=]) .. " " .. q(path)))
    local got = fh:read("a")
    fh:close()
    assert.equal("False 3 1 ['a.lua', 'b.lua']\n", got)
  end)

  it("writes the dialogue as it happens with --transcript", function()
    local f = scenario_file(dir, "t.lua", [[c:expect(220) c:send("HELLO") c:expect(250)]])
    local tfile = dir .. "/dialogue.txt"
    local out, errs, code = run("--transcript " .. q(tfile) .. " " .. q(f))
    assert.equal(0, code, out .. errs)
    local t = H.read(tfile)
    assert.truthy(t:find("C: HELLO\n", 1, true))
    assert.truthy(t:find("S: 250 HELLO\n", 1, true))
    out, errs, code = run(q(f) .. " --transcript")
    assert.equal(0, code, out .. errs)
    assert.truthy(errs:find("S: 220 hi", 1, true))
  end)

  it("runs examples/scenarios/smtp_by_hand.lua against parley serve smtp", function()
    local srv = child.serve("smtp", { "--listen", "127.0.0.1:0", "--maildir", dir .. "/mail",
      "--domain", "example.org" })
    finally(function() srv:stop() end)
    local out, errs, code = run("examples/scenarios/smtp_by_hand.lua --var host=127.0.0.1:" .. srv.port)
    assert.equal(0, code, out .. errs)
    assert.truthy(out:find("✓   8 message", 1, true))
  end)
end)
