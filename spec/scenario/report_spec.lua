-- parley.scenario.report and .json: the human report, TAP 13 and JSON,
-- the last two checked by independent parsers (python3's json and yaml).
local H = require "helper"
local S = require "scenario.support.line_server"
local scenario = require "parley.scenario"
local report = require "parley.scenario.report"
local json = require "parley.scenario.json"

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Runs python3 with `code` on `input` (a file): its output and exit status.
local function python(code, input)
  local path = os.tmpname()
  H.write(path, input)
  local fh = assert(io.popen("python3 -c " .. quote(code) .. " < " .. path .. " 2>&1"))
  local out = fh:read("a")
  local ok = fh:close()
  os.remove(path)
  return out, ok
end

-- A report with a pass, a failure (after a dialogue) and a step not run.
local function sample()
  local rep
  S.with(S.smtpish, function(srv)
    rep = scenario.run(scenario('mixed "report" #1', function(s)
      local c = s:connect("tcp://" .. srv.address)
      c:expect(220)
      c:send("EHLO \1\2 tab\there")
      c:expect(251)
      c:send("QUIT")
      c:expect(221)
    end))
  end)
  return rep
end

local function render(reports, format)
  local path = os.tmpname()
  local fh = assert(io.open(path, "w"))
  report.write(reports, format, fh)
  fh:close()
  local text = H.read(path)
  os.remove(path)
  return text
end

describe("scenario reports", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("shows each step with a mark and a time, then the transcript of the failed one", function()
    local text = render({ sample() }, "human")
    assert.truthy(text:find('^mixed "report" #1\n'))
    assert.truthy(text:find("  ✓   2 expect 220 +%d+%.%d+ s\n"))
    assert.truthy(text:find("  ✗   3 expect 251 +%d+%.%d+ s\n        expected 251, got \"250%-lab%.example"))
    assert.truthy(text:find("        reply: 250 PIPELINING\n", 1, true))
    assert.truthy(text:find("C: EHLO \\x01\\x02 tab\\there", 1, true), text)
    assert.truthy(text:find("  %-   4 expect 221 +not run\n"))
    assert.truthy(text:find("FAILED: 2 passed, 1 failed, 1 not run", 1, true))
  end)

  it("writes TAP 13 that a TAP reader and a YAML parser accept", function()
    local rep = sample()
    local text = render({ rep, rep }, "tap")
    local lines = {}
    for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("TAP version 13", lines[1])
    assert.equal("1..8", lines[2])
    local n, yaml = 0, {}
    local inside
    for _, l in ipairs(lines) do
      local num = l:match("^ok (%d+) %- ") or l:match("^not ok (%d+) %- ")
      if num then
        n = n + 1
        assert.equal(n, tonumber(num))
        local desc = l:gsub(" # SKIP not run$", "")
        assert.is_nil(desc:find("[^\\]#"), "an unescaped # in " .. l)
      end
      if l == "  ---" then inside = {}
      elseif l == "  ..." then yaml[#yaml + 1] = table.concat(inside, "\n"); inside = nil
      elseif inside then inside[#inside + 1] = l end
    end
    assert.equal(8, n)
    assert.truthy(text:find("ok 4 - mixed \"report\" \\#1: expect 221 # SKIP not run\n", 1, true))
    assert.truthy(text:find("not ok 3 - mixed \"report\" \\#1: expect 251\n", 1, true))
    assert.equal(2, #yaml)
    local out, ok = python([[
import sys, yaml
doc = yaml.safe_load(sys.stdin.read())
assert doc["severity"] == "fail", doc
assert doc["message"].startswith("expected 251, got"), doc
assert doc["reply"] == ["250-lab.example", "250-SIZE 1000", "250 PIPELINING"], doc["reply"]
assert any("EHLO \\x01\\x02" in t for t in doc["transcript"]), doc["transcript"]
assert doc["duration_ms"] >= 0
print("yaml ok")
]], (yaml[1]:gsub("\n  ", "\n"):gsub("^  ", "")))
    assert.is_true(ok, out)
    assert.equal("yaml ok\n", out)
  end)

  it("writes one JSON object that python's json module reads back", function()
    local rep = sample()
    local text = render({ rep }, "json")
    local out, ok = python([[
import sys, json
d = json.load(sys.stdin)
assert d["ok"] is False and d["passed"] == 2 and d["failed"] == 1 and d["not_run"] == 1, d
sc = d["scenarios"][0]
assert sc["name"] == 'mixed "report" #1'
steps = sc["steps"]
assert [s["status"] for s in steps] == ["pass", "pass", "fail", "not run"]
assert steps[2]["reply"]["code"] == 250 and steps[2]["reply"]["lines"][2] == "PIPELINING"
e = steps[2]["transcript"][0]
assert (e["conn"], e["dir"], e["text"]) == (1, "C", "EHLO \x01\x02 tab\there") and e["t"] >= 0, e
assert isinstance(sc["transcript"], list) and sc["transcript"][0]["dir"] == "*"
assert sc["vars"] == {}
print("json ok")
]], text)
    assert.is_true(ok, out)
    assert.equal("json ok\n", out)
  end)
end)

describe("the JSON encoder", function()
  it("escapes quotes, backslashes and every control character", function()
    assert.equal([["a\"b\\c\n\r\t\b\f\u0001\u001f\u007f"]], json.encode("a\"b\\c\n\r\t\b\f\1\31\127"))
  end)

  it("writes bytes that are not UTF-8 as \\u00XX and keeps UTF-8 as it is", function()
    assert.equal('"caf\195\169 \\u00ff\\u00fe x"', json.encode("caf\195\169 \255\254 x"))
    local out, ok = python("import sys, json; print(json.load(sys.stdin))", json.encode("\255ok\192"))
    assert.is_true(ok, out)
    assert.equal("\195\191ok\195\128\n", out)
  end)

  it("tells arrays from objects, empty arrays included", function()
    assert.equal('{"a":[1,2,3],"b":{},"c":[],"d":{"1":"x","k":true}}',
      json.encode({ a = { 1, 2, 3 }, b = {}, c = json.array({}), d = { "x", k = true } }))
  end)

  it("writes numbers JSON can read, and null for NaN and infinities", function()
    assert.equal("[1,0.5,-3,null,null,null]", json.encode({ 1, 0.5, -3, 0 / 0, math.huge, -math.huge }))
    assert.equal(0.1, tonumber(json.encode(0.1)))
    assert.equal(1 / 3, tonumber(json.encode(1 / 3)))
  end)

  it("raises on a table that contains itself", function()
    local t = {}
    t.self = t
    assert.has_error(function() json.encode(t) end, "json: a table refers to itself")
  end)
end)
