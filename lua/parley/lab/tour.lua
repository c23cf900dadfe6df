--- parley.lab.tour: replays, against a running lab, the sessions a
-- newcomer walks through, each as a short titled section: one sentence
-- on what a GUI client would hide, the dialogue (client lines red and
-- server lines blue on a terminal, `C:` / `S:` otherwise), then ✓ or ✗.
--
-- Each session is a `parley.scenario` in `parley.lab.tour.<name>`; its
-- `about` field is the sentence; `full = true` shows its bulk data
-- (a message typed by hand) line by line. Its `s.vars` are the lab's (`Lab:vars`).
-- @module parley.lab.tour
local parley = require "parley"
local scenario = require "parley.scenario"
local transcript = require "parley.transcript"

local M = {}

--- The sessions, in the order they run (later ones read what the
-- SMTP session delivered).
M.SESSIONS = { "ftp", "smtp", "smtp_starttls", "pop3", "imap_read", "imap_folders", "http", "telnet" }

-- Hands each entry of a scenario's transcript to every recorder.
local function tee(recorders)
  return function(e)
    for _, r in ipairs(recorders) do
      if e.dir and e.dir ~= "*" and e.bytes then r:bulk(e.conn, e.dir, e.bytes)
      elseif e.dir and e.dir ~= "*" then r:line(e.conn, e.dir, e.text)
      else r:event(e.conn, e.text) end
    end
  end
end

local function paint(color, code, text)
  return color and ("\27[%sm%s\27[0m"):format(code, text) or text
end

-- the steps that failed, one line each
local function failures(rep)
  local t = {}
  for _, st in ipairs(rep.steps) do
    if st.status == "fail" then
      t[#t + 1] = ("      step %d, %s: %s"):format(st.n, st.name, tostring(st.error):match("^[^\n]*"))
    end
  end
  return table.concat(t, "\n")
end

--- Runs the tour.
-- @tparam table lab a started `parley.lab`
-- @tparam[opt] table opts `out` (file handle, default io.stdout), `color`
-- (default: `out` is a terminal and NO_COLOR is unset), `transcript` (a
-- file name: every dialogue is also appended there, plain), `sessions`
-- (names, default `SESSIONS`), `timeout` (seconds per step)
-- @return true when every session passed, and the list of reports
-- (`parley.scenario.run`'s, each with `session` set); or nil, err when
-- the transcript file cannot be opened
function M.run(lab, opts)
  opts = opts or {}
  local out = opts.out or io.stdout
  local color = opts.color
  if color == nil then
    local nc = os.getenv("NO_COLOR")
    color = out == io.stdout and (nc == nil or nc == "") and parley.core.pty.isatty(1) or false
  end
  local recorders = { transcript.new(function(e)
    out:write("    ", transcript.format(e, color), "\n")
  end) }
  local file
  if opts.transcript then
    local err
    file, err = transcript.new(opts.transcript, { color = false })
    if not file then return nil, "transcript: " .. tostring(err) end
    recorders[2] = file
  end
  local names = opts.sessions or M.SESSIONS
  local reports, all = {}, true
  for i, name in ipairs(names) do
    local sc = require("parley.lab.tour." .. name)
    local title = ("%d/%d  %s"):format(i, #names, sc.name)
    out:write("\n", paint(color, "1", "── " .. title), "\n")
    if sc.about then out:write("   ", sc.about, "\n") end
    out:write("\n")
    if file then file:event(0, "── " .. title) end
    local rep = scenario.run(sc, { vars = lab:vars(), transcript = tee(recorders), timeout = opts.timeout,
      transcript_full = sc.full })
    rep.session = name
    reports[i] = rep
    local summary = ("%d steps, %.0f ms"):format(rep.passed + rep.failed + rep.not_run, rep.time * 1000)
    if rep.ok then
      out:write("  ", paint(color, "32", "✓ " .. sc.name), " (", summary, ")\n")
    else
      all = false
      out:write("  ", paint(color, "31", "✗ " .. sc.name), " (", summary, ", ", rep.failed,
        " failed, ", rep.not_run, " not run)\n", failures(rep), "\n")
    end
    out:flush()
  end
  local passed = 0
  for _, rep in ipairs(reports) do if rep.ok then passed = passed + 1 end end
  out:write("\n", paint(color, all and "32" or "31",
    ("%s tour: %d of %d sessions passed"):format(all and "✓" or "✗", passed, #reports)), "\n")
  out:flush()
  if file then file:close() end
  return all, reports
end

return M
