--- parley.scenario.protocols: steps that use parley's protocol clients.
--
-- `s:smtp(...)`, `s:pop3(...)`, `s:imap(...)`, `s:ftp(...)`,
-- `s:telnet(...)` connect (and log in when the URL or the options carry a
-- user) as one step and return the client wrapped so that every method
-- call is a step of its own: timed, recorded, named after the method and
-- its arguments (passwords hidden). A call that returns `nil, err
-- [, reply]` fails its step with that error and reply and ends the
-- scenario. The wrapped client's `client` field is the bare client (its
-- calls are not steps). `s:smtp_send{...}` and `s:http{...}` /
-- `s:http_get(url)` are single steps. Every client is closed when the
-- scenario ends; each call's timeout is the step's (see `parley.scenario`).
-- @module parley.scenario.protocols
local url = require "socket.url"

local M = {}

-- Method names whose arguments after the first are secrets.
local SECRET = { login = true, auth = true, apop = true, auth_plain = true, authenticate = true }

local function show(v)
  if type(v) == "string" then
    if #v > 40 then v = v:sub(1, 37) .. "..." end
    return (("%q"):format(v):gsub("\\\n", "\\n"))
  end
  if type(v) == "table" then return "{...}" end
  return tostring(v)
end

local function call_name(label, method, args)
  local shown = {}
  for i = 1, args.n do
    shown[i] = (SECRET[method] and i > 1) and "****" or show(args[i])
  end
  return label .. " " .. method .. (args.n > 0 and " " .. table.concat(shown, " ") or "")
end

-- A client whose method calls are steps.
local function wrap(run, label, client)
  return setmetatable({ client = client }, {
    __name = "parley.scenario." .. label,
    __index = function(_, k)
      local v = client[k]
      if type(v) ~= "function" then return v end
      return function(_, ...)
        local args = table.pack(...)
        return run:op(call_name(label, k, args), function()
          local r = table.pack(v(client, table.unpack(args, 1, args.n)))
          if r[1] == nil and r[2] ~= nil then return false, tostring(r[2]), r[3] end
          return true, table.unpack(r, 1, r.n)
        end)
      end
    end,
  })
end

-- url_or_opts -> a table: host, port, user, password and the options.
local function target(what, scheme, v, default_port, level)
  local o = {}
  if type(v) == "string" then
    o.url = v
  elseif type(v) == "table" then
    for k, x in pairs(v) do o[k] = x end
  else
    error(what .. " expects a URL or an options table", level)
  end
  if o.url then
    local p = url.parse(o.url)
    if not p or (p.scheme or ""):lower() ~= scheme or not p.host then
      error(what .. ": want " .. scheme .. "://[user:password@]host[:port]: " .. tostring(o.url), level)
    end
    o.host, o.port = o.host or p.host, o.port or tonumber(p.port)
    o.user = o.user or (p.user and url.unescape(p.user))
    o.password = o.password or (p.password and url.unescape(p.password))
    o.path = p.path and url.unescape(p.path)
  end
  if o.server and not o.host then
    o.host, o.port = o.server:match("^%[?(.-)%]?:(%d+)$")
    o.port = tonumber(o.port)
  end
  if type(o.host) ~= "string" then error(what .. " needs a host (url = or host =)", level) end
  o.port = o.port or default_port
  o.address = (o.host:find(":", 1, true) and "[" .. o.host .. "]" or o.host) .. ":" .. o.port
  return o
end

-- Connects (and logs in) as one step; the client is closed at the end.
local function session(run, label, o, connect, login, closer)
  local name = label .. " " .. o.address .. (o.user and (" as " .. o.user) or "")
  local c, err, reply = run:op("connect " .. name, function()
    local client, cerr, creply = connect(o)
    if not client then return false, tostring(cerr), creply end
    run:defer({ close = function() closer(client) end })
    if o.user and login then
      local ok, lerr, lreply = login(client, o)
      if not ok then return false, tostring(lerr), lreply end
    end
    return true, client
  end)
  if not c then return nil, err, reply end
  return wrap(run, label, c)
end

--- Adds the protocol steps to the scenario context's methods.
-- @tparam table context the methods of `parley.scenario`'s context
function M.install(context)
  local function smtp_timeouts(t)
    return { connect = t, greeting = t, command = t, data = t, block = t, final = t }
  end

  --- SMTP: a connected `parley.smtp.client` (EHLO said; AUTH when the
  -- URL or `opts.user`/`opts.password` give a user).
  -- @param u `"smtp://[user:pass@]host[:port]"` or a table (`url` or
  -- `server`/`host`/`port`, `user`, `password`, `mech`, `helo`, `timeout`)
  -- @return the wrapped client, or `nil, err, reply`
  function context:smtp(u)
    local o = target("smtp", "smtp", u, 25, 3)
    local t = self:timeout_of(o)
    return session(self, "smtp", o, function()
      return require("parley.smtp.client").connect(o.address, { helo = o.helo,
        timeouts = smtp_timeouts(t), transcript = self.recorder })
    end, function(c) return c:auth(o.user, o.password or "", o.mech) end,
    function(c) c:quit() end)
  end

  --- SMTP: sends one message with `parley.smtp.client.send` (connect,
  -- EHLO, AUTH, MAIL, RCPT, DATA, QUIT) as one step.
  -- @tparam table m as for `parley.smtp.client.send` (`server`, `from`,
  -- `to`, `message`, `auth` ...), plus `timeout`
  -- @return the result (`accepted`, `rejected`, `reply`), or `nil, err, reply`
  function context:smtp_send(m)
    if type(m) ~= "table" then error("smtp_send expects a table", 2) end
    local t = self:timeout_of(m)
    local a = {}
    for k, v in pairs(m) do a[k] = v end
    a.timeout = nil
    a.timeouts = a.timeouts or smtp_timeouts(t)
    a.transcript = self.recorder
    local to = type(m.to) == "table" and table.concat(m.to, ", ") or tostring(m.to)
    return self:op("smtp send to " .. to, function()
      local r, err, reply = require("parley.smtp.client").send(a)
      if not r then return false, tostring(err), reply end
      return true, r
    end)
  end

  --- POP3: a connected `parley.pop3.client`, logged in (USER/PASS) when
  -- the URL has a user.
  -- @param u `"pop3://[user:pass@]host[:port]"` or a table (`url` or
  -- `host`/`port`, `user`, `password`, `timeout`)
  -- @return the wrapped client, or `nil, err, reply`
  function context:pop3(u)
    local o = target("pop3", "pop3", u, 110, 3)
    local t = self:timeout_of(o)
    return session(self, "pop3", o, function()
      return require("parley.pop3.client").connect(o.host, o.port, { timeout = t,
        connect_timeout = t, transcript = self.recorder })
    end, function(c) return c:login(o.user, o.password or "") end,
    function(c) c:quit() end)
  end

  --- IMAP: a connected `parley.imap.client`, logged in (LOGIN) when the
  -- URL has a user.
  -- @param u `"imap://[user:pass@]host[:port]"` or a table (`url` or
  -- `host`/`port`, `user`, `password`, `timeout`)
  -- @return the wrapped client, or `nil, err, reply`
  function context:imap(u)
    local o = target("imap", "imap", u, 143, 3)
    local t = self:timeout_of(o)
    return session(self, "imap", o, function()
      return require("parley.imap.client").connect(o.address, { timeout = t,
        transcript = self.recorder })
    end, function(c) return c:login(o.user, o.password or "") end,
    function(c) c:logout() end)
  end

  --- FTP: a connected `parley.ftp.client`, logged in (as the URL's user,
  -- anonymous without one).
  -- @param u `"ftp://[user:pass@]host[:port]"` or a table (`url` or
  -- `host`/`port`, `user`, `password`, `timeout`)
  -- @return the wrapped client, or `nil, err, reply`
  function context:ftp(u)
    local o = target("ftp", "ftp", u, 21, 3)
    o.user = o.user or "anonymous"
    local t = self:timeout_of(o)
    return session(self, "ftp", o, function()
      return require("parley.ftp.client").connect(o.host, o.port, { timeout = t,
        connect_timeout = t, transcript = self.recorder })
    end, function(c) return c:login(o.user, o.password) end,
    function(c) c:quit() end)
  end

  --- Telnet: a connected `parley.telnet.client`, logged in at the login
  -- prompt when the URL has a user.
  -- @param u `"telnet://[user:pass@]host[:port]"` or a table (`url` or
  -- `host`/`port`, `user`, `password`, `timeout`, `login` (options of the
  -- client's `login`: `prompt`, `login_prompt` ...), and the client's
  -- options)
  -- @return the wrapped client, or `nil, err`
  function context:telnet(u)
    local o = target("telnet", "telnet", u, 23, 3)
    local t = self:timeout_of(o)
    return session(self, "telnet", o, function()
      local copts = {}
      for k, v in pairs(o) do copts[k] = v end
      copts.timeout, copts.connect_timeout, copts.transcript = t, t, self.recorder
      return require("parley.telnet.client").connect(o.host, o.port, copts)
    end, function(c) return c:login(o.user, o.password or "", o.login) end,
    function(c) c:close() end)
  end

  local function http_pool(run)
    if not run.http_pool then
      run.http_pool = require("parley.http.client").pool()
      run:defer(run.http_pool)
    end
    return run.http_pool
  end

  --- HTTP: one request with `parley.http.client.request` as a step.
  -- @param o a URL or the request's options table, plus `expect` (a
  -- status code: another status fails the step) and `timeout`
  -- @return the response (`status`, `headers`, `body` ...), or `nil, err, response`
  function context:http(o)
    if type(o) == "string" then o = { url = o } end
    if type(o) ~= "table" or type(o.url) ~= "string" then error("http expects a URL or a table with url", 2) end
    local a = {}
    for k, v in pairs(o) do a[k] = v end
    a.expect = nil
    a.timeout = self:timeout_of(o)
    a.pool = a.pool or http_pool(self)
    a.transcript = self.recorder
    local want = o.expect
    if want ~= nil and math.type(want) ~= "integer" then error("expect must be a status code", 2) end
    return self:op("http " .. (o.method or (o.body and "POST" or "GET")) .. " " .. o.url, function()
      local res, err = require("parley.http.client").request(a)
      if not res then return false, tostring(err) end
      if want and res.status ~= want then
        local status = ("HTTP/1.%d %d %s"):format(res.minor or 1, res.status, res.reason or "")
        return false, ("expected status %d, got %d %s"):format(want, res.status, res.reason or ""),
          { code = res.status, text = res.reason, line = status }
      end
      return true, res
    end)
  end

  --- HTTP GET as a step: `s:http_get(url [, opts])`.
  -- @tparam string u
  -- @tparam[opt] table opts as for `http`
  -- @return the response, or `nil, err, response`
  function context:http_get(u, opts)
    if type(u) ~= "string" then error("http_get expects a URL", 2) end
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.url, o.method = u, "GET"
    return self:http(o)
  end
end

return M
