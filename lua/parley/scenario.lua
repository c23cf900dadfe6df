--- parley.scenario: script a line-based dialogue and assert on it.
--
--     local scenario = require "parley.scenario"
--     return scenario("SMTP by hand", function(s)
--       local c = s:connect(s.vars.url or "smtp://127.0.0.1:2525")
--       c:expect(220)
--       c:send("EHLO lab.example")
--       local r = c:expect(250)
--       s:check(r.text:find("PIPELINING"), "server offers PIPELINING")
--       c:close()
--     end)
--
-- A scenario is a Lua function run with a context `s`. Every call that
-- talks to a peer (`s:connect`, a connection's `expect`/`capture`/...,
-- `s:smtp`, a protocol client's methods ...), every `s:check` and every
-- named `s:step` is a *step*: timed, recorded with the dialogue it saw
-- (the transcript), passed or failed. Calls inside a named step count
-- toward that step only.
--
-- A failing `expect` (wrong reply, no match, timeout, closed), a failed
-- protocol call and `s:fail` end the scenario: from then on the function
-- goes on as a dry run, in which every such call is recorded as *not run*
-- and returns `nil, "not run"`, so the report lists the steps that were
-- left; a Lua error during the dry run just ends it. `s:check` records a
-- failure and goes on. A Lua error in the scenario is a failed step too.
--
-- Timeouts: `opts.timeout` of a call, else that of the enclosing named
-- step, else `run`'s `timeout` option, else the scenario's own
-- (`scenario(name, { timeout = 5 }, fn)`), else `DEFAULT_TIMEOUT`.
-- @module parley.scenario
local parley = require "parley"
local transcript = require "parley.transcript"
local report = require "parley.scenario.report"

local M = {}

--- Seconds a step may wait for its peer when nothing else says.
M.DEFAULT_TIMEOUT = 10
--- Steps recorded as not run after a failure before the dry run stops
-- (bounds a scenario that loops until a call succeeds).
M.MAX_NOT_RUN = 1000

local Scenario = { __name = "parley.scenario" }
Scenario.__index = Scenario

--- Makes a scenario (the module itself is callable: `scenario(name, fn)`).
-- @tparam string name what the report calls it
-- @tparam[opt] table opts `timeout` (seconds, the default for its steps)
-- @tparam function fn `fn(s)`, run with the context
-- @return a scenario, for `run`
function M.new(name, opts, fn)
  if fn == nil then opts, fn = nil, opts end
  if type(name) ~= "string" then error("scenario name must be a string", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("scenario options must be a table", 2) end
  if type(fn) ~= "function" then error("scenario needs a function(s)", 2) end
  opts = opts or {}
  if opts.timeout ~= nil and type(opts.timeout) ~= "number" then error("timeout must be a number", 2) end
  return setmetatable({ name = name, fn = fn, timeout = opts.timeout }, Scenario)
end

setmetatable(M, { __call = function(_, ...) return M.new(...) end })

--- Whether `v` is a scenario made by `new`.
function M.is_scenario(v)
  return getmetatable(v) == Scenario
end

--- Loads a scenario file (a Lua chunk that returns a scenario).
-- @tparam string path
-- @return the scenario, or `nil, err` (missing file, syntax error, an
-- error while loading, or a chunk that returns something else)
function M.load(path)
  if type(path) ~= "string" then error("path must be a string", 2) end
  local chunk, err = loadfile(path, "t")
  if not chunk then return nil, err end
  local ok, sc = xpcall(chunk, debug.traceback, path)
  if not ok then return nil, tostring(sc) end
  if not M.is_scenario(sc) then
    return nil, path .. ": does not return a scenario (end it with `return scenario(name, function(s) ... end)`)"
  end
  sc.path = path
  return sc
end

--- The context `s` a scenario function gets: `s.vars` (the run's vars
-- and the values `capture` stored), the methods below, and the protocol
-- steps of `parley.scenario.protocols` (`s:smtp`, `s:pop3` ...).
-- @type context
local context = {}
context.__index = context
context.__name = "parley.scenario.context"

-- Raised to stop the dry run after too many not-run steps.
local STOP = setmetatable({}, { __tostring = function() return "dry run stopped" end })
-- Raised to leave a named step at its first failing call.
local LEAVE = setmetatable({}, { __tostring = function() return "step failed" end })

--- The timeout for a call: its own, else the enclosing step's, else the run's.
-- @tparam[opt] table opts a call's options
-- @treturn number seconds
function context:timeout_of(opts)
  if opts ~= nil and type(opts) ~= "table" then error("options must be a table", 3) end
  local t = opts and opts.timeout or (self.group and self.group.timeout) or self.timeout
  if type(t) ~= "number" then error("timeout must be a number", 3) end
  return t
end

local function new_step(self, name, started)
  return { name = name, t = started - self.t0, status = "pass", time = 0 }
end

-- Appends a finished top-level step, with the transcript entries seen
-- since the previous one ended (the sends that led to it included).
local function finish(self, step)
  local tr = self.transcript
  step.transcript = table.move(tr, self.mark + 1, #tr, 1, {})
  self.mark = #tr
  step.n = #self.steps + 1
  self.steps[step.n] = step
end

-- Records an operation's outcome: a step of its own at top level, part
-- of the named step around it otherwise.
local function record(self, name, started, ok, err, reply, extra)
  local g = self.group
  local elapsed = parley.now() - started
  if g then
    g.ops[#g.ops + 1] = { name = name, time = elapsed, status = ok and "pass" or "fail",
      error = err, reply = reply }
    if not ok and g.status == "pass" then g.status, g.error, g.reply = "fail", err, reply end
    return
  end
  local step = new_step(self, name, started)
  step.time = elapsed
  if not ok then step.status, step.error, step.reply = "fail", err, reply end
  if extra then for k, v in pairs(extra) do step[k] = v end end
  finish(self, step)
end

local function not_run(self, name)
  if self.group then return nil, "not run" end
  self.skipped = self.skipped + 1
  if self.skipped > M.MAX_NOT_RUN then error(STOP, 0) end
  local step = new_step(self, name, parley.now())
  step.status = "not run"
  finish(self, step)
  return nil, "not run"
end

--- Runs one operation as a step (used by connections and protocol steps).
-- `fn(...)` returns `true, results...` or `false, err [, reply]`; the
-- results are returned, or `nil, err, reply` after the failure is
-- recorded and the scenario ended. Fields `fn` puts in `s.note` (a table)
-- are copied into the step (e.g. `captures`).
-- @tparam string name the step's name in the report
-- @tparam function fn
-- @return the results of `fn`
function context:op(name, fn, ...)
  if self.dry then return not_run(self, name) end
  local started = parley.now()
  local r = table.pack(fn(...))
  local note = self.note
  self.note = nil
  if r[1] then
    record(self, name, started, true, nil, nil, note)
    return table.unpack(r, 2, r.n)
  end
  record(self, name, started, false, r[2], r[3])
  self.dry = true
  if self.group then error(LEAVE, 0) end
  return nil, r[2], r[3]
end

--- Records `cond` as a step: passed when truthy, failed otherwise; the
-- scenario goes on either way.
-- @param cond
-- @tparam string msg what is checked ("server offers PIPELINING")
-- @return cond
function context:check(cond, msg)
  if type(msg) ~= "string" then error("check needs a message string", 2) end
  if self.dry then not_run(self, msg) return cond end
  record(self, msg, parley.now(), cond and true or false, (not cond) and "check failed" or nil)
  return cond
end

--- Fails the scenario here with `msg` (the rest is a dry run).
-- @tparam string msg
-- @return nil, msg
function context:fail(msg)
  if type(msg) ~= "string" then error("fail needs a message string", 2) end
  return self:op(msg, function() return false, msg end)
end

--- A named step: `fn()` runs with its own timing; every call inside
-- counts toward it. A failing call (or `s:fail`, or a Lua error) inside
-- fails the step, leaves it at once and ends the scenario; a failed
-- `s:check` inside fails the step and lets it go on.
-- @tparam string name
-- @tparam[opt] table opts `timeout`: the default for the calls inside
-- @tparam function fn
-- @return what `fn` returned, or `nil, err` when the step failed
function context:step(name, opts, fn)
  if fn == nil then opts, fn = nil, opts end
  if type(name) ~= "string" then error("step name must be a string", 2) end
  if type(fn) ~= "function" then error("step needs a function", 2) end
  if self.group then  -- nested: part of the enclosing step
    return fn()
  end
  if self.dry then return not_run(self, name) end
  local started = parley.now()
  local g = new_step(self, name, started)
  g.ops, g.timeout = {}, opts and self:timeout_of(opts)
  self.group = g
  local r = table.pack(xpcall(fn, debug.traceback))
  self.group = nil
  g.time = parley.now() - started
  if not r[1] then
    if r[2] == STOP then error(STOP, 0) end
    if r[2] ~= LEAVE then g.status, g.error = "fail", tostring(r[2]) end
    self.dry = true
  end
  finish(self, g)
  if g.status == "fail" then return nil, g.error, g.reply end
  return table.unpack(r, 2, r.n)
end

--- Connects to a URL and returns a connection to script
-- (see `parley.scenario.conn`): `tcp://`, `smtp://`, `pop3://`,
-- `imap://`, `ftp://`, `http://`, `telnet://` (default ports; telnet://
-- negotiates options with `parley.telnet.client`), and with implicit TLS
-- `smtps://`, `submissions://` (465), `pop3s://` (995), `imaps://` (993),
-- `ftps://` (990), `https://` (443). `c:starttls()` upgrades a plain one.
-- @tparam string url
-- @tparam[opt] table opts `timeout` (seconds to connect), `lenient`
-- (accept bare LF line ends), `max_line` (bytes), TLS: `ca` (PEM file of
-- trusted issuers; default `s.vars.ca`, else the system store),
-- `insecure` (do not verify the certificate; default `s.vars.insecure`,
-- where "1", "true" or "yes" from `--var` say yes), `tls_ctx` (a client
-- context), `servername` (default the URL's host); for telnet:// the
-- telnet client's options
-- @return a connection, or `nil, err` (the step failed)
function context:connect(url, opts)
  return require("parley.scenario.conn").open(self, url, opts)
end

--- Sleeps `seconds` (not a step).
function context:sleep(seconds)
  if self.dry then return end
  parley.sleep(seconds)
end

--- Registers `close()` of an object to run when the scenario ends.
function context:defer(obj)
  self.closers[#self.closers + 1] = obj
  return obj
end

require("parley.scenario.protocols").install(context)

--- Running scenarios.
-- @section running

local function tally(rep)
  rep.passed, rep.failed, rep.not_run = 0, 0, 0
  for _, st in ipairs(rep.steps) do
    if st.status == "pass" then rep.passed = rep.passed + 1
    elseif st.status == "fail" then rep.failed = rep.failed + 1
    else rep.not_run = rep.not_run + 1 end
  end
  rep.ok = rep.failed == 0 and rep.error == nil
  return rep
end

--- A report for a scenario file that could not be loaded.
-- @tparam string path
-- @tparam string err
-- @return a failed report with `load_error` set
function M.load_failure(path, err)
  local rep = { name = path, path = path, error = err, load_error = true, time = 0,
    steps = { { n = 1, name = "load " .. path, status = "fail", error = err, time = 0, t = 0,
      transcript = {} } }, transcript = {} }
  return tally(rep)
end

-- The run's recorder keeps every entry for the report and hands a copy
-- to `live` (the transcript the user asked to see as it happens).
local function collector(list, live, o)
  return transcript.new(function(e)
    list[#list + 1] = e
    if live then live:emit{ conn = e.conn, dir = e.dir, text = e.text, bytes = e.bytes } end
  end, { full = o.transcript_full, secrets = o.transcript_secrets })
end

local function execute(sc, o, live)
  local self = setmetatable({ name = sc.name, vars = {}, steps = {}, transcript = {}, mark = 0,
    skipped = 0, dry = false, closers = {},
    timeout = o.timeout or sc.timeout or M.DEFAULT_TIMEOUT }, context)
  for k, v in pairs(o.vars or {}) do self.vars[k] = v end
  self.t0 = parley.now()
  self.recorder = collector(self.transcript, live, o)
  local ok, err = xpcall(sc.fn, debug.traceback, self)
  if not ok and err ~= STOP and not self.dry then
    local step = new_step(self, "error", parley.now())
    step.status, step.error = "fail", tostring(err)
    finish(self, step)
  end
  -- what the closing calls say is in the report's transcript, no step's
  for i = #self.closers, 1, -1 do pcall(self.closers[i].close, self.closers[i]) end
  return tally({ name = sc.name, path = sc.path, vars = self.vars, steps = self.steps,
    transcript = self.transcript, time = parley.now() - self.t0 })
end

--- Runs a scenario (or loads and runs a scenario file).
-- @param sc a scenario, or the path of a scenario file
-- @tparam[opt] table opts `vars` (table: `s.vars` starts as a copy),
-- `timeout` (seconds: the default for every step), `transcript` (the
-- dialogue as it happens: a `parley.transcript` recorder, or a target for
-- `parley.transcript.new`: `true` for stderr, a file name, a file handle,
-- a function(entry); the report keeps it either way), `transcript_full`
-- (bulk data line by line), `transcript_secrets` (passwords unmasked),
-- `format` ("human", "tap" or "json": also write the report), `out`
-- (file handle for it, default `io.stdout`)
-- @return the report `{ ok, passed, failed, not_run, name, path, time,
-- steps = { {n, name, status = "pass"|"fail"|"not run", time, t, error,
-- reply, ops, captures, transcript} ... }, transcript = {entries}, vars }`
-- (`error` and `load_error` set when a file did not load)
function M.run(sc, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("options must be a table", 2) end
  if opts.timeout ~= nil and type(opts.timeout) ~= "number" then error("timeout must be a number", 2) end
  if opts.format ~= nil and not report.formats[opts.format] then
    error("format must be one of human, tap, json", 2)
  end
  local rep
  if type(sc) == "string" then
    local loaded, err = M.load(sc)
    if not loaded then rep = M.load_failure(sc, err) else sc = loaded end
  elseif not M.is_scenario(sc) then
    error("run expects a scenario or a file name", 2)
  end
  if not rep then
    local live, own
    if opts.transcript then
      live, own = transcript.recorder(opts.transcript,
        { full = opts.transcript_full, secrets = opts.transcript_secrets })
      if not live then error("transcript: " .. tostring(own), 2) end
    end
    local ok, r = pcall(parley.run, execute, sc, opts, live)
    if own then live:close() end
    if not ok then error(r, 0) end
    rep = r
  end
  if opts.format then report.write({ rep }, opts.format, opts.out or io.stdout) end
  return rep
end

return M
