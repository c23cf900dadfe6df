--- parley.scenario.report: scenario reports as text.
--
-- Three formats, each written for a list of reports (one per scenario):
--
-- * `human`: per scenario its name, each step with ✓ (passed), ✗
--   (failed) or - (not run), its number, name and time; under a failed
--   step the reason, the reply and the transcript of the dialogue that
--   led to it; then a summary line (`ok` / `FAILED`, counts).
-- * `tap`: TAP version 13 — `1..N` for all steps of all scenarios, one
--   `ok N - scenario: step` line each, `# SKIP not run` for steps that did
--   not run, and under a failed step a YAML block (`---` ... `...`) with
--   `message`, `severity`, `duration_ms`, `reply` and `transcript`.
-- * `json`: one object `{ ok, passed, failed, not_run, scenarios = [
--   { name, path, ok, passed, failed, not_run, time, error, vars,
--   steps = [ { n, name, status, time, t, error, reply, captures, ops,
--   transcript } ], transcript = [ { conn, dir, t, text, bytes } ] } ] }`,
--   then a newline. Times are in seconds.
-- @module parley.scenario.report
local json = require "parley.scenario.json"
local transcript = require "parley.transcript"

local M = {}

--- Totals over several reports: `{ ok, passed, failed, not_run }`.
-- @tparam table reports
-- @treturn table
function M.totals(reports)
  local t = { ok = true, passed = 0, failed = 0, not_run = 0 }
  for _, r in ipairs(reports) do
    t.passed, t.failed, t.not_run = t.passed + r.passed, t.failed + r.failed, t.not_run + r.not_run
    t.ok = t.ok and r.ok
  end
  return t
end

local function reply_lines(reply)
  if type(reply) ~= "table" then return {} end
  if reply.raw then return reply.raw end
  if reply.line then return { reply.line } end
  if reply.code then return { tostring(reply.code) .. " " .. tostring(reply.text or "") } end
  return {}
end

-- --------------------------------------------------------------------------
-- human
-- --------------------------------------------------------------------------

local MARK = { pass = "✓", fail = "✗", ["not run"] = "-" }

local function human(reports, out)
  for _, r in ipairs(reports) do
    out:write(r.name, r.path and r.path ~= r.name and (" (" .. r.path .. ")") or "", "\n")
    for _, st in ipairs(r.steps) do
      local when = st.status == "not run" and "not run" or ("%.3f s"):format(st.time)
      out:write(("  %s %3d %-52s %s\n"):format(MARK[st.status], st.n, st.name, when))
      if st.status == "fail" then
        for line in tostring(st.error):gmatch("[^\n]+") do out:write("        ", line, "\n") end
        for _, l in ipairs(reply_lines(st.reply)) do out:write("        reply: ", l, "\n") end
        if #st.transcript > 0 then
          out:write("        transcript:\n")
          for _, e in ipairs(st.transcript) do out:write("          ", transcript.format(e), "\n") end
        end
      end
    end
    out:write(("%s: %d passed, %d failed, %d not run (%.3f s)\n\n"):format(
      r.ok and "ok" or "FAILED", r.passed, r.failed, r.not_run, r.time))
  end
  if #reports > 1 then out:write(M.summary(reports)) end
end

--- The human report's closing line for several reports.
-- @tparam table reports
-- @treturn string `"ok: 3 scenarios, 12 passed, 0 failed, 0 not run\n"`
function M.summary(reports)
  local t = M.totals(reports)
  return ("%s: %d scenarios, %d passed, %d failed, %d not run\n"):format(
    t.ok and "ok" or "FAILED", #reports, t.passed, t.failed, t.not_run)
end

-- --------------------------------------------------------------------------
-- TAP 13
-- --------------------------------------------------------------------------

-- A TAP description: one line, and "#" escaped (it starts a directive).
local function description(s)
  return (s:gsub("[\r\n]+", " "):gsub("\\", "\\\\"):gsub("#", "\\#"))
end

local function tap(reports, out)
  local total = 0
  for _, r in ipairs(reports) do total = total + #r.steps end
  out:write("TAP version 13\n1..", total, "\n")
  local n = 0
  for _, r in ipairs(reports) do
    local from = r.path and r.path ~= r.name and (" (" .. description(r.path) .. ")") or ""
    out:write("# ", description(r.name), from, "\n")
    for _, st in ipairs(r.steps) do
      n = n + 1
      local desc = description(r.name .. ": " .. st.name)
      if st.status == "pass" then
        out:write("ok ", n, " - ", desc, "\n")
      elseif st.status == "not run" then
        out:write("ok ", n, " - ", desc, " # SKIP not run\n")
      else
        out:write("not ok ", n, " - ", desc, "\n  ---\n")
        -- JSON strings are YAML scalars too (YAML 1.2)
        out:write("  message: ", json.quote(tostring(st.error)), "\n")
        out:write("  severity: fail\n")
        out:write(("  duration_ms: %.3f\n"):format(st.time * 1000))
        local lines = reply_lines(st.reply)
        if #lines > 0 then
          out:write("  reply:\n")
          for _, l in ipairs(lines) do out:write("    - ", json.quote(l), "\n") end
        end
        if #st.transcript > 0 then
          out:write("  transcript:\n")
          for _, e in ipairs(st.transcript) do out:write("    - ", json.quote(transcript.format(e)), "\n") end
        end
        out:write("  ...\n")
      end
    end
  end
end

-- --------------------------------------------------------------------------
-- JSON
-- --------------------------------------------------------------------------

-- seconds to the microsecond: shorter, and as exact as the clock's use
local function sec(x)
  return x and math.floor(x * 1e6 + 0.5) / 1e6
end

local function entries(list)
  local a = json.array({})
  for i, e in ipairs(list) do
    a[i] = { conn = e.conn, dir = e.dir, t = sec(e.t), text = e.text, bytes = e.bytes }
  end
  return a
end

local function step_json(st)
  local ops
  if st.ops then
    ops = json.array({})
    for i, o in ipairs(st.ops) do
      ops[i] = { name = o.name, status = o.status, time = sec(o.time), error = o.error, reply = o.reply }
    end
  end
  return { n = st.n, name = st.name, status = st.status, time = sec(st.time), t = sec(st.t),
    error = st.error, reply = st.reply, captures = st.captures and json.array(st.captures),
    ops = ops, transcript = entries(st.transcript) }
end

local function report_json(r)
  local steps = json.array({})
  for i, st in ipairs(r.steps) do steps[i] = step_json(st) end
  return { name = r.name, path = r.path, ok = r.ok, passed = r.passed, failed = r.failed,
    not_run = r.not_run, time = sec(r.time), error = r.error, vars = r.vars,
    steps = steps, transcript = entries(r.transcript) }
end

local function json_format(reports, out)
  local t = M.totals(reports)
  local list = json.array({})
  for i, r in ipairs(reports) do list[i] = report_json(r) end
  t.scenarios = list
  out:write(json.encode(t), "\n")
end

--- The formats by name: `human`, `tap`, `json`; each `fn(reports, out)`.
M.formats = { human = human, tap = tap, json = json_format }

--- Writes reports in a format.
-- @tparam table reports a list of reports from `parley.scenario.run`
-- @tparam string format "human", "tap" or "json"
-- @param out a file handle (anything with `write`)
function M.write(reports, format, out)
  local f = M.formats[format]
  if not f then error("unknown report format: " .. tostring(format), 2) end
  f(reports, out)
  if out.flush then out:flush() end
end

return M
