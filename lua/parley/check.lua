--- parley.check: service checks in the Monitoring Plugins style, for
-- scripts, the lab and `parley check`.
--
--     local check = require "parley.check"
--     local r = check.run("imap://alice:pw@127.0.0.1:1143/INBOX",
--                         { warning = 1, critical = 2, subject = "nightly report", wait = 30 })
--     print(r.line)        --> IMAP OK - 127.0.0.1:1143 INBOX: 12 messages ... | time=...
--     os.exit(r.status)    -- 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
--     local rt = check.roundtrip{ smtp = "smtp://127.0.0.1:2525",
--                                 imap = "imap://alice:pw@127.0.0.1:1143/INBOX" }
--
-- Schemes: smtp, pop3, imap, ftp, http, telnet (one module each in
-- `parley.check.<scheme>`), and with implicit TLS smtps, submissions,
-- pop3s, imaps, ftps, https (see `TLS_SCHEMES`). Every check runs as its own task under one
-- deadline (`timeout`, plus `wait` when it waits for a message): past it
-- the check is CRITICAL, "timeout after 10 s in <phase>", and whatever it
-- had open is closed. `warning` / `critical` are seconds the whole check
-- (the round trip, for `roundtrip`) may take before it is WARNING /
-- CRITICAL. A bad URL or option is UNKNOWN; so is an error inside a check
-- (a bug: `error` in the result holds its traceback). The client
-- libraries' own failures are CRITICAL with the phase and the reply.
-- @module parley.check
local parley = require "parley"
local url = require "socket.url"
local plugin = require "parley.check.plugin"
local transcript = require "parley.transcript"

local M = {}

--- Defaults of the options `run` and `roundtrip` take.
-- @table DEFAULTS
M.DEFAULTS = {
  timeout = 10,      -- seconds for the whole check (a --wait comes on top)
  wait = 0,          -- seconds to wait for a message matching `subject`
}

--- The schemes `run` knows, each a module `parley.check.<scheme>`.
M.SCHEMES = { "smtp", "pop3", "imap", "ftp", "http", "telnet" }
local KNOWN = {}
for _, s in ipairs(M.SCHEMES) do KNOWN[s] = true end

--- URL schemes that mean implicit TLS (RFC 8314 for mail), each with
-- the check it runs; the default port is that module's `TLS_PORT`.
M.TLS_SCHEMES = { smtps = "smtp", submissions = "smtp", pop3s = "pop3", imaps = "imap",
                  ftps = "ftp", https = "http" }

-- After the deadline the check's task is cancelled (one wait at a time)
-- and joined again: at most this many times, this long each.
local ABORT_TRIES, ABORT_GRACE = 5, 0.2
-- The deadline of the whole check comes this much after the one its
-- clients are given, so that their own "timeout" reaches the check first.
local JOIN_GRACE = 0.25

local TLS_OPTIONS = { "tls", "tls_implicit", "insecure", "ca", "cert_days" }

-- --------------------------------------------------------------------------
-- URLs
-- --------------------------------------------------------------------------

--- Parses a check URL.
-- @tparam string s `scheme://[user[:password]@]host[:port][/path]`
-- (user and password percent-decoded)
-- @tparam[opt] number default_port used when the URL has none
-- @return `{ scheme =, host =, port =, user =, password =, path =, query =,
-- address = "host:port", url = s }`, or nil, err
function M.parse_url(s, default_port)
  if type(s) ~= "string" then error("url must be a string", 2) end
  local p = s:match("^%a[%w+.-]*://") and url.parse(s)
  if not p or not p.host or p.host == "" then return nil, ("bad URL %q"):format(s) end
  local port = p.port and tonumber(p.port) or default_port
  if p.port and (not tonumber(p.port) or not p.port:match("^%d+$")) or (port and (port < 1 or port > 65535)) then
    return nil, ("bad port in URL %q"):format(s)
  end
  local host = p.host
  return {
    scheme = p.scheme:lower(), host = host, port = port,
    user = p.user and url.unescape(p.user), password = p.password and url.unescape(p.password),
    path = url.unescape(p.path or ""), query = p.query, url = s,
    address = port and ((host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port),
  }
end

-- --------------------------------------------------------------------------
-- The context a check runs with
-- --------------------------------------------------------------------------

local context = {}
context.__index = context

--- Names the step the check is in (told when the deadline passes),
-- after `ctx.prefix` when a check speaks to several servers.
function context:phase(name) self.phase_name = (self.prefix or "") .. name end

--- Seconds left before the check's deadline (at least a millisecond).
function context:left() return math.max(0.001, self.deadline - parley.now()) end

--- Seconds since the check started.
function context:elapsed() return parley.now() - self.t0 end

--- Registers a stream (a client's connection) to close when the check
-- ends or its deadline passes.
function context:own(stream)
  self.owned[#self.owned + 1] = stream
  return stream
end

--- Adds a performance value (`uom` "s", "B", "c" or none).
function context:perf(label, value, uom, extra)
  local p = { label = label, value = value, uom = uom }
  for k, v in pairs(extra or {}) do p[k] = v end
  self.perfdata[#self.perfdata + 1] = p
  return p
end

--- The TLS options for a client of URL `u` (default the check's URL):
-- `tls = "implicit"` for an implicit-TLS scheme or `tls_implicit`,
-- `"required"` for `tls` (STARTTLS or fail: never a silent fallback to
-- cleartext), with `ca` and `insecure`; an empty table in cleartext.
-- @tparam[opt] table u a parsed URL
-- @treturn table options to add to the client's
function context:tls_options(u)
  u = u or self.url
  local o = self.opts
  local policy = (M.TLS_SCHEMES[u.scheme] or o.tls_implicit) and "implicit" or o.tls and "required"
  if not policy then return {} end
  self.tls_wanted = true
  return { tls = policy, ca = o.ca, insecure = o.insecure or nil }
end

--- Notes the TLS state of a client's connection (its `tlsinfo()`), for
-- the certificate's days left (`cert_days`). A check that asked for TLS
-- and ends without noting any is CRITICAL: never a silent cleartext run.
-- @param c a client or stream with a `tlsinfo` method, or a `tlsinfo()`
-- table (an HTTP response's `tls`)
-- @return the TLS info, or nil in cleartext
function context:tls_seen(c)
  local info = c
  if c and type(c.tlsinfo) == "function" then info = c:tlsinfo() end
  if info and info.peer and (not self.tls or info.peer.days_left < self.tls.peer.days_left) then
    self.tls = info
  end
  return info
end

--- The CRITICAL result for a failure in the current phase: a timeout
-- reads as one of the deadline.
-- @return "CRITICAL", summary
-- @param err the client's error
-- @tparam[opt] string address the peer (default the URL's)
-- @return "CRITICAL", summary
function context:critical(err, address)
  if err == "timeout" then
    return "CRITICAL", ("timeout after %g s in %s"):format(self.limit, self.phase_name)
  end
  return "CRITICAL", ("%s: %s: %s"):format(address or self.url.address, self.phase_name, tostring(err))
end

-- closes what the check left open; a stream already closed is fine
function context:release()
  for i = #self.owned, 1, -1 do
    pcall(self.owned[i].close, self.owned[i])
    self.owned[i] = nil
  end
end

-- the commands that start TLS on a plain connection (IMAP's has a tag)
local STARTTLS_LINES = { STARTTLS = true, STLS = true, ["AUTH TLS"] = true }

local function new_context(opts, u, limit)
  local t0 = parley.now()
  local ctx = setmetatable({ opts = opts, url = u, t0 = t0, limit = limit,
    deadline = t0 + limit, owned = {}, perfdata = {}, phase_name = "start" }, context)
  -- Every client gets a recorder: its "connected" event tells the TCP
  -- connect from the wait for the greeting (the clients do both in one
  -- call); with `verbose` the dialogue goes on to stderr.
  local echo = opts.verbose and transcript.new(true)
  ctx.transcript = transcript.new(function(e)
    if e.dir == "*" and e.text:match("^connected") and ctx.phase_name:match("connect$") then
      ctx:phase("greeting")
    elseif e.dir == "C" and STARTTLS_LINES[e.text:upper():gsub("^%S+ (STARTTLS)$", "%1")] then
      ctx:phase("starttls")
    end
    if echo then echo:emit(e) end
  end)
  return ctx
end

-- --------------------------------------------------------------------------
-- Running a check
-- --------------------------------------------------------------------------

local function result(label, state, summary, perfdata, extra)
  local r = { label = label, state = state, status = plugin.STATUS[state], summary = summary,
              perfdata = perfdata or {} }
  for _, p in ipairs(r.perfdata) do r.perfdata[p.label] = p end
  for k, v in pairs(extra or {}) do r[k] = v end
  r.line = plugin.line(label, state, summary, r.perfdata)
  return r
end

local function unknown(label, msg)
  return result(label, "UNKNOWN", msg)
end

local function check_opts(opts, level)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error("options must be a table", level + 1) end
  for _, k in ipairs { "timeout", "wait", "warning", "critical" } do
    local v = opts[k]
    if v ~= nil and (type(v) ~= "number" or v < 0 or v ~= v) then
      error(("option %s must be a non-negative number"):format(k), level + 1)
    end
  end
  return opts
end

-- The TLS options checked against the URLs and the scheme's module:
-- an error message (UNKNOWN), or nil.
local function tls_misfit(opts, urls, mod)
  if opts.tls and opts.tls_implicit then return "--tls and --tls-implicit exclude each other" end
  local implicit = opts.tls_implicit
  for _, u in ipairs(urls) do
    if M.TLS_SCHEMES[u.scheme] then
      implicit = true
      if opts.tls then return ("--tls (STARTTLS) with the implicit-TLS URL %s"):format(u.url) end
    end
  end
  if mod and opts.tls and not mod.STARTTLS then
    return mod.LABEL:lower() .. (mod.TLS_PORT and " has no STARTTLS: use --tls-implicit or its TLS URL"
      or " has no TLS")
  end
  if mod and implicit and not mod.TLS_PORT then return mod.LABEL:lower() .. " has no TLS" end
  if not (opts.tls or implicit) then
    for _, k in ipairs { "insecure", "ca", "cert_days" } do
      if opts[k] then
        return "--insecure, --ca and -D need --tls, --tls-implicit or a TLS URL"
      end
    end
  end
  if opts.ca ~= nil and (type(opts.ca) ~= "string" or opts.ca == "") then return "ca must be a file name" end
  local d = opts.cert_days
  if d ~= nil and (type(d) ~= "table" or type(d[1]) ~= "number" or type(d[2]) ~= "number"
      or d[1] < 0 or d[2] < 0) then
    return "cert_days must be { warn, crit } (days)"
  end
end

-- The certificate's days left against `cert_days`: an expired
-- certificate (reached only with `insecure`) is CRITICAL even without
-- them. Adds perfdata `cert_days`; returns the state and the summary.
local function judge_certificate(ctx, state, summary)
  local info, days = ctx.tls, ctx.opts.cert_days
  local peer = info.peer
  local left = peer.days_left
  local p = ctx:perf("cert_days", left, nil, { warn = days and days[1], crit = days and days[2] })
  local verdict = "OK"
  if left < 0 then verdict = "CRITICAL"
  elseif days and left < days[2] then verdict = "CRITICAL"
  elseif days and left < days[1] then verdict = "WARNING" end
  local what = left < 0 and ("expired %d days ago"):format(-left)
    or ("expires in %d days"):format(left)
  summary = ("%s; %s, certificate %s %s%s"):format(summary, info.version, peer.subject, what,
    info.verified and "" or " (not verified: --insecure)")
  if verdict ~= "OK" and days and left >= 0 then
    summary = ("%s, under the %s threshold (%d days)"):format(summary, verdict:lower(),
      verdict == "CRITICAL" and days[2] or days[1])
  end
  p.value = left
  return plugin.worst(state, verdict), summary
end

-- options every check takes; a scheme lists its own in OPTIONS
local COMMON = { timeout = true, warning = true, critical = true, verbose = true }
for _, k in ipairs(TLS_OPTIONS) do COMMON[k] = true end

-- an option the scheme does not take (a typo or the wrong URL) is UNKNOWN
local function foreign(opts, mod)
  local bad = {}
  for k, v in pairs(opts) do
    if v ~= nil and v ~= false and not COMMON[k] and not mod.OPTIONS[k] then
      bad[#bad + 1] = k:gsub("_", "-")
    end
  end
  if #bad == 0 then return nil end
  table.sort(bad)
  return ("%s does not take %s"):format(mod.LABEL:lower(), table.concat(bad, ", "))
end

-- Runs `fn(ctx)` -> state, summary as a task under the deadline, and
-- judges `judged` (the perfdata label the thresholds apply to; "time" is
-- added here).
local function execute(label, fn, opts, u, judged)
  local limit = (opts.timeout or M.DEFAULTS.timeout) + (opts.wait or M.DEFAULTS.wait)
  local ctx = new_context(opts, u, limit)
  local task = parley.spawn(function()
    return xpcall(fn, debug.traceback, ctx)
  end)
  local joined, ok, state, summary = task:join(limit + JOIN_GRACE)
  local elapsed = ctx:elapsed()
  local err
  if joined == nil then
    state, summary = "CRITICAL", ("timeout after %g s in %s"):format(limit, ctx.phase_name)
    ctx:release()
    for _ = 1, ABORT_TRIES do
      task:cancel()
      if task:join(ABORT_GRACE) ~= nil then break end
    end
  elseif not joined or not ok then
    err = tostring(not joined and ok or state)
    state, summary = "UNKNOWN", "internal error: " .. err:match("^[^\n]*")
  end
  ctx:release()
  if type(state) ~= "string" or not plugin.STATUS[state] then
    err = "a check returned " .. tostring(state)
    state, summary = "UNKNOWN", "internal error: " .. err
  end
  local perf = ctx.perfdata
  local time = { label = "time", value = elapsed, uom = "s", min = 0 }
  table.insert(perf, 1, time)
  local target = time
  for _, p in ipairs(perf) do if p.label == judged then target = p end end
  if state ~= "UNKNOWN" and target.value then
    target.warn, target.crit = opts.warning, opts.critical
    local verdict = plugin.judge(target.value, opts.warning, opts.critical)
    if verdict ~= "OK" and plugin.worst(state, verdict) == verdict then
      summary = ("%s; %s %.3f s over the %s threshold (%g s)"):format(summary, target.label,
        target.value, verdict:lower(), verdict == "CRITICAL" and opts.critical or opts.warning)
    end
    state = plugin.worst(state, verdict)
  end
  if ctx.tls and state ~= "UNKNOWN" then
    state, summary = judge_certificate(ctx, state, summary)
  elseif ctx.tls_wanted and (state == "OK" or state == "WARNING") then
    state, summary = "CRITICAL", summary .. "; TLS was asked for but the session ran in cleartext"
  end
  return result(label, state, summary, perf, { error = err, phase = ctx.phase_name })
end

--- Checks one service.
-- @tparam string u the URL (see the module description and each scheme)
-- @tparam[opt] table opts `timeout` (10 s), `warning`, `critical` (seconds),
-- `verbose` (a transcript of the dialogue on stderr), TLS (smtp, pop3,
-- imap, ftp, and the implicit-TLS schemes `smtps`/`submissions`, `pop3s`,
-- `imaps`, `ftps`, `https`): `tls` (STARTTLS/STLS/AUTH TLS, required: a
-- server without it is CRITICAL; not for http), `tls_implicit` (TLS from the first byte, as the TLS schemes),
-- `ca` (PEM file of trusted issuers; default the system store),
-- `insecure` (do not verify the certificate), `cert_days` (`{ warn, crit }`:
-- WARNING / CRITICAL when the certificate has fewer days left; perfdata
-- `cert_days`; an expired certificate is CRITICAL, an unverifiable one
-- fails the handshake: CRITICAL with the reason), and the scheme's own
-- options: smtp `expect_cap` (array), `from`, `to` (array), `subject`,
-- `helo`; pop3 and imap `subject`, `wait`, `min_messages`,
-- `max_messages`; ftp `download`, `sha256`, `size`; http `status` (array
-- of codes), `expect`; telnet `expect`
-- @treturn table `{ status = 0..3, state = "OK" | "WARNING" | "CRITICAL" |
-- "UNKNOWN", summary =, perfdata = { {label=, value=, uom=, warn=, crit=,
-- min=, max=} ..., [label] = entry }, line = "SMTP OK - ... | ...",
-- phase = the last step, error = traceback of an internal error }`
function M.run(u, opts)
  if type(u) ~= "string" then error("url must be a string", 2) end
  opts = check_opts(opts, 2)
  local scheme = (u:match("^(%a[%w+.-]*)://") or ""):lower()
  local base = M.TLS_SCHEMES[scheme] or scheme
  if not KNOWN[base] then
    return unknown("CHECK", scheme == "" and ("bad URL %q"):format(u) or ("unknown scheme %q"):format(scheme))
  end
  local mod = require("parley.check." .. base)
  local implicit = M.TLS_SCHEMES[scheme] or opts.tls_implicit
  local parsed, err = M.parse_url(u, implicit and mod.TLS_PORT or mod.PORT)
  if not parsed then return unknown(mod.LABEL, err) end
  err = tls_misfit(opts, { parsed }, mod) or foreign(opts, mod) or (mod.validate and mod.validate(parsed, opts))
  if err then return unknown(mod.LABEL, err) end
  return execute(mod.LABEL, mod.check, opts, parsed)
end

--- Sends a uniquely tagged message by SMTP and measures how long until it
-- is seen by IMAP (IDLE) or POP3 (polling every 0.5 s).
-- @tparam table opts `smtp` (URL, user:password@ for AUTH), `imap` or
-- `pop3` (URL with user:password@; IMAP: the mailbox as path, INBOX by
-- default), `to` (default the receiving user, `@localhost` added when it
-- has no domain), `from` (default `to`), `delete` (default true: the
-- message is removed once seen), `timeout`, `warning`, `critical` (seconds
-- for the round trip), `verbose`
-- @treturn table as `run`'s, label "ROUNDTRIP", perfdata `roundtrip=`
function M.roundtrip(opts)
  if type(opts) ~= "table" then error("roundtrip expects a table", 2) end
  check_opts(opts, 2)
  local label = "ROUNDTRIP"
  if not opts.smtp then return unknown(label, "the SMTP URL is missing") end
  if (opts.imap == nil) == (opts.pop3 == nil) then return unknown(label, "give one of the IMAP or POP3 URLs") end
  local rt = require "parley.check.roundtrip"
  local function parse(s, want)
    local scheme = type(s) == "string" and (s:match("^(%a[%w+.-]*)://") or ""):lower()
    if not scheme or (M.TLS_SCHEMES[scheme] or scheme) ~= want then return nil end
    local mod = require("parley.check." .. want)
    return M.parse_url(s, (M.TLS_SCHEMES[scheme] or opts.tls_implicit) and mod.TLS_PORT or mod.PORT)
  end
  local smtp = parse(opts.smtp, "smtp")
  local rx_scheme = opts.imap and "imap" or "pop3"
  local rx = parse(opts[rx_scheme], rx_scheme)
  if not smtp then return unknown(label, ("bad SMTP URL %q"):format(opts.smtp)) end
  if not rx then
    return unknown(label, ("bad %s URL %q"):format(rx_scheme:upper(), opts[rx_scheme]))
  end
  rx.proto = rx_scheme
  local err = tls_misfit(opts, { smtp, rx }) or rt.validate(smtp, rx, opts)
  if err then return unknown(label, err) end
  rx.smtp = smtp
  return execute(label, rt.check, opts, rx, "roundtrip")
end

return M
