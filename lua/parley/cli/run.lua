--- `parley run`: run scenario files (`parley.scenario`) and report.
--
-- Exit status: 0 when every step of every file passed, 1 when a step
-- failed (a Lua error inside a scenario included), 2 on a usage error or
-- a file that does not load (the other files still run and are reported).
-- @module parley.cli.run
local cli = require "parley.cli"
local scenario = require "parley.scenario"
local report = require "parley.scenario.report"
local transcript = require "parley.transcript"

local M = {}

local HELP = [==[
usage: parley run FILE.lua [FILE ...] [--var k=v ...] [--format human|tap|json]
                  [--transcript [FILE]] [--timeout S]
  --var k=v          s.vars.k = "v" in every scenario (repeatable)
  --format F         human (default), tap (TAP version 13) or json
  --transcript [F]   show the dialogue as it happens, on stderr or
                     appended to F (F must not end in .lua; "-" is stderr)
  --transcript-full  bulk data (message bodies ...) line by line
  --transcript-secrets  passwords unmasked
  --timeout S        default seconds per step (10)
A scenario file returns scenario(name, function(s) ... end): see
`parley.scenario` and examples/scenarios/.
Exit status: 0 every step passed, 1 a step failed, 2 usage or a file
that does not load.
]==]

local SPEC = { var = "list", format = "string", transcript = "string", timeout = "number",
  transcript_full = "flag", transcript_secrets = "flag", help = "flag" }

-- `--transcript` takes the next argument as its file only when it looks
-- like one (not an option, not a scenario): otherwise it means stderr.
local function normalize(argv)
  local out = {}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--transcript" then
      local nxt = argv[i + 1]
      if nxt and not nxt:match("^%-.") and not nxt:match("%.lua$") then
        out[#out + 1] = "--transcript=" .. nxt
        i = i + 1
      else
        out[#out + 1] = "--transcript=-"
      end
    else
      out[#out + 1] = a
    end
    i = i + 1
  end
  return out
end

local function usage_error(msg)
  io.stderr:write("parley run: ", msg, "; usage: parley run FILE.lua... [options] (--help)\n")
  return 2
end

--- Runs the command; returns the exit status.
function M.main(argv)
  local ok, o = pcall(cli.parse, normalize(argv), SPEC)
  if not ok then return usage_error(tostring(o)) end
  if o.help then io.stdout:write(HELP) return 0 end
  if #o == 0 then return usage_error("no scenario file given") end
  local format = o.format or "human"
  if not report.formats[format] then return usage_error("--format must be human, tap or json") end
  if o.timeout and o.timeout <= 0 then return usage_error("--timeout must be positive") end
  local vars = {}
  for _, kv in ipairs(o.var or {}) do
    local k, v = kv:match("^([%w_]+)=(.*)$")
    if not k then return usage_error("--var wants NAME=VALUE, got " .. kv) end
    vars[k] = v
  end
  local live
  if o.transcript then
    local err
    live, err = transcript.new(o.transcript == "-" or o.transcript,
      { full = o.transcript_full, secrets = o.transcript_secrets })
    if not live then return usage_error("cannot open " .. o.transcript .. ": " .. tostring(err)) end
  end
  local reports, status = {}, 0
  for i, path in ipairs(o) do
    local sc, err = scenario.load(path)
    local rep
    if sc then
      rep = scenario.run(sc, { vars = vars, timeout = o.timeout, transcript = live,
        transcript_full = o.transcript_full, transcript_secrets = o.transcript_secrets })
    else
      io.stderr:write("parley run: ", err, "\n")
      rep = scenario.load_failure(path, err)
      status = 2
    end
    reports[i] = rep
    if not rep.ok and status == 0 then status = 1 end
    if format == "human" then report.write({ rep }, "human", io.stdout) end
  end
  if live then live:close() end
  if format ~= "human" then report.write(reports, format, io.stdout)
  elseif #reports > 1 then io.stdout:write(report.summary(reports)) end
  return status
end

return M
