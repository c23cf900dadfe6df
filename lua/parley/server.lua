--- parley.server: a listener plus one task per connection.
--
--     local srv = parley.serve{ listen = "127.0.0.1:0",
--       handler = function(conn)
--         for line in conn:lines() do conn:send(line .. "\r\n") end
--       end }
--
-- Inside a task `serve` returns at once; in a plain script it runs the loop
-- until the server is closed (SIGINT/SIGTERM, or `srv:close()` from a task).
-- @module parley.server
local core = require "parley.core"

local M = {}

local server = {}
server.__index = server
server.__name = "parley.server"

local DEFAULTS = {
  max_connections = 10000,
  grace = 5,
  timeout = 300,     -- seconds a connection may sit in one I/O call
  max_line = 8192,   -- bytes per line, CRLF included
}

local function log(msg)
  require("parley").log(msg)
end

-- An implicit-TLS connection's handshake runs here, in its own task
-- under the connection's timeout: a client that fails it or stalls
-- costs a log line, never the accept loop.
-- (A wrapper of the handler, so that plain connections run theirs from
-- a frame no larger than before: an idle task's Lua stack then stays
-- within its first allocation, ~700 bytes less per idle connection.)
local function with_tls_handshake(srv, handler)
  return function(conn)
    local ip, port = conn:getpeername()   -- before a failing peer is gone
    local ok, err = conn:handshake()
    if ok then return handler(conn) end
    log(("%s: tls handshake with %s:%s failed: %s"):format(srv.address,
        tostring(ip), tostring(port), err))
  end
end

local function handle(srv, conn)
  srv.conns[conn] = true
  local ok, err = xpcall(srv.handler, debug.traceback, conn)
  if not ok then
    local report = srv.on_error
    local rok, rerr = pcall(report, err, conn)
    if not rok then log("on_error failed: " .. tostring(rerr)) end
  end
  conn:close()
  srv.conns[conn] = nil
  srv.n = srv.n - 1
  srv.room:signal()
  if srv.n == 0 then srv.idle:broadcast() end
end

local function accept_loop(srv)
  local listener, opts = srv.listener, srv.opts
  local max = opts.max_connections or DEFAULTS.max_connections
  while not srv.closing do
    if srv.n >= max then
      srv.room:wait()   -- further clients wait in the kernel's backlog
    else
      local conn, err = listener:accept()
      if conn then
        srv.n = srv.n + 1
        conn:settimeout(opts.timeout or DEFAULTS.timeout)
        conn:setoption("max-line", opts.max_line or DEFAULTS.max_line)
        if opts.lenient then conn:setoption("lenient", true) end
        if srv.transcript then
          conn = require("parley.transcript").wrap(conn, srv.transcript,
            { protocol = opts.transcript_protocol, side = "server" })
        end
        core.spawn(handle, srv, conn)
      elseif err == "closed" or err == "cancelled" then
        break
      else
        -- e.g. out of descriptors: say so, and give handlers time to end
        log(("%s: accept failed: %s"):format(srv.address, err))
        core.sleep(0.1)
      end
    end
  end
end

-- servers that SIGINT/SIGTERM shut down
local signalled = setmetatable({}, { __mode = "k" })

local function on_stop_signal(name)
  -- a second Ctrl-C during the grace period kills at once
  core.on_signal("INT", nil)
  core.on_signal("TERM", nil)
  for srv in pairs(signalled) do
    log(("%s: %s received, shutting down"):format(srv.address, name))
    local target = srv.owner or srv
    core.spawn(target.close, target)
  end
end

--- Starts a server.
-- @tparam table opts
-- `listen` (address, required), `handler` (function(conn), required),
-- `max_connections` (10000), `timeout` (seconds per I/O call on each
-- connection, 300), `max_line` (8192), `lenient`, `grace` (5 s on
-- shutdown), `on_error` (function(err, conn); default logs), `signals`
-- (true: SIGINT/SIGTERM close the server), `backlog`, `reuseport`,
-- `on_start` (function(server), called once listening: useful in plain
-- scripts, where `serve` returns only when the server has stopped; if it
-- raises, the server is closed and the error passed on), `on_close`
-- (function(server), called once when closing starts, after the listener
-- has closed and before the grace period: say goodbye to sessions here),
-- `owner` (a protocol server wrapping this one: it gets `inner`, `port`,
-- `host` and `address`, is what `on_start` receives, and its `close` is
-- what SIGINT/SIGTERM call, so its own shutdown — a 421, a BYE — runs),
-- `transcript` (a parley.transcript recorder or target: every connection
-- is recorded; with `transcript_full`, `transcript_secrets`, and
-- `transcript_protocol` naming what the lines are, e.g. `"smtp"`).
-- @return server, or `nil, err`
function M.serve(opts)
  if type(opts) ~= "table" then error("serve expects an options table", 2) end
  if type(opts.handler) ~= "function" then error("serve: handler must be a function", 2) end
  local parley = require "parley"
  local listener, err = parley.listen(opts.listen or error("serve: listen address missing", 2), opts)
  if not listener then return nil, err end
  local host, port = listener:getsockname()
  local rec, own
  if opts.transcript then
    rec, own = require("parley.transcript").recorder(opts.transcript,
      { full = opts.transcript_full, secrets = opts.transcript_secrets })
    if not rec then listener:close() return nil, "transcript: " .. tostring(own) end
  end
  local srv = setmetatable({
    listener = listener,
    host = host,
    port = port,
    address = (host:find(":") and "[" .. host .. "]" or host) .. ":" .. port,
    handler = opts.handler,
    on_error = opts.on_error or function(e) log(e) end,
    opts = opts,
    conns = {},
    n = 0,
    room = core.cond(),    -- a connection ended (room under max_connections)
    idle = core.cond(),    -- the last connection ended
    closed = core.cond(),  -- close() finished
    transcript = rec,
    transcript_own = own,  -- made here from a target: closed with the server
  }, server)
  if opts.tls then srv.handler = with_tls_handshake(srv, opts.handler) end
  local owner = opts.owner
  if owner then
    srv.owner = owner
    owner.inner = srv
    owner.port, owner.host, owner.address = srv.port, srv.host, srv.address
  end
  srv.task = core.spawn(accept_loop, srv)
  if opts.signals ~= false then
    signalled[srv] = true
    core.on_signal("INT", on_stop_signal)
    core.on_signal("TERM", on_stop_signal)
  end
  if opts.on_start then
    -- a start hook that fails leaves nothing listening
    local ok, serr = pcall(opts.on_start, owner or srv)
    if not ok then
      srv:close(0)
      error(serr, 0)
    end
  end
  if not core.current() then
    -- a plain script: serve until closed, then return
    core.run(function() srv:wait() end)
  end
  return srv
end

-- `listen_tls`: a second listener, implicit TLS with `o.tls_ctx`, for
-- the same sessions (RFC 8314: submission on 465, POP3S, IMAPS); one
-- transcript recorder and one on_start for both.
local function serve_both(srv, o, t)
  if not o.tls_ctx then error("listen_tls needs tls = {cert =, key =} or tls_ctx", 4) end
  if t.transcript then
    local rec, own = require("parley.transcript").recorder(t.transcript,
      { full = t.transcript_full, secrets = t.transcript_secrets })
    if not rec then return nil, "transcript: " .. tostring(own) end
    t.transcript, srv.transcript_own = rec, own and rec or nil
  end
  local on_start = t.on_start
  t.on_start = nil
  local inner, err = M.serve(t)
  if not inner then return nil, err end
  local tt = {}
  for k, v in pairs(t) do tt[k] = v end
  tt.listen, tt.tls, tt.owner, tt.signals = o.listen_tls, o.tls_ctx, nil, false
  local tinner, terr = M.serve(tt)
  if not tinner then
    inner:close(0)
    return nil, terr
  end
  srv.inner_tls, srv.tls_port, srv.tls_address = tinner, tinner.port, tinner.address
  if on_start then on_start(srv) end
  return srv
end

--- The server TLS context a protocol server's options ask for: `tls_ctx`
-- (a server context) as it is, or one made from `tls` (`{cert = FILE,
-- key = FILE}` plus any other parley.tls.context option); nil without
-- either (then no STARTTLS and no `listen_tls`).
-- @tparam table o the protocol's options
-- @return a server context, or nil, or `nil, err` when a file cannot be used
function M.tls_context(o)
  local tls = require("parley").tls
  if o.tls_ctx ~= nil then
    if not (tls.is_context(o.tls_ctx) and o.tls_ctx:mode() == "server") then
      error("tls_ctx must be a server tls context", 3)
    end
    return o.tls_ctx
  end
  if not o.tls then return nil end
  if type(o.tls) ~= "table" or type(o.tls.cert) ~= "string" or type(o.tls.key) ~= "string" then
    error("tls must be a table {cert = FILE, key = FILE}", 3)
  end
  local t = { mode = "server" }
  for k, v in pairs(o.tls) do t[k] = v end
  return tls.context(t)
end

--- Serves a protocol server object: one task per connection runs
-- `session(srv, conn)`. parley.serve's own options come from the
-- protocol's options `o` (`listen`, `max_connections`, `grace`, `signals`,
-- `backlog`, `reuseport`, `on_error`, `on_start`); `extra` adds stream
-- options such as `timeout` and `max_line`. `srv` becomes the owner: it
-- gets `inner`, `port`, `host`, `address`, and SIGINT/SIGTERM call its
-- `close`. With `o.listen_tls` (and `o.tls_ctx`, see `tls_context`) a
-- second, implicit-TLS listener serves the same sessions: `srv` then also
-- gets `inner_tls`, `tls_port` and `tls_address`.
-- @tparam table srv the protocol server (with a `close` method)
-- @tparam table o the protocol's options
-- @tparam string default_listen address when `o.listen` is absent
-- @tparam function session function(srv, conn)
-- @tparam[opt] table extra more options for parley.serve
-- @return srv, or `nil, err`
function M.serve_for(srv, o, default_listen, session, extra)
  if o.listen_tls and not core.current() then
    -- a plain script: both listeners share one loop until closed
    local r, e
    core.run(function()
      r, e = M.serve_for(srv, o, default_listen, session, extra)
      if r then srv.inner:wait() srv.inner_tls:wait() end
    end)
    return r, e
  end
  local t = {
    listen = o.listen or default_listen,
    handler = function(conn) return session(srv, conn) end,
    max_connections = o.max_connections,
    grace = o.grace,
    signals = o.signals,
    backlog = o.backlog,
    reuseport = o.reuseport,
    on_error = o.on_error,
    on_start = o.on_start,
    transcript = o.transcript,
    transcript_full = o.transcript_full,
    transcript_secrets = o.transcript_secrets,
    owner = srv,   -- signals close srv, which says goodbye first
  }
  for k, v in pairs(extra or {}) do t[k] = v end
  if not o.listen_tls then
    local inner, err = M.serve(t)
    if not inner then return nil, err end
    return srv
  end
  return serve_both(srv, o, t)
end

--- Closes a protocol server started with `serve_for`: every session in
-- `srv.sessions` for which `idle(s)` holds gets `goodbye` (a 421, a BYE)
-- and is closed at once; the others get `grace` seconds (default
-- `srv.opts.grace`) to finish their transaction.
-- @tparam table srv the protocol server
-- @tparam string goodbye the bytes an idle session is sent
-- @tparam function idle function(session) -> boolean
-- @tparam[opt] number grace
function M.close_for(srv, goodbye, idle, grace)
  srv.closing = true
  for s in pairs(srv.sessions) do
    if idle(s) then
      s.conn:send(goodbye)
      s.conn:flush()
      s.conn:close()
    end
  end
  grace = grace or srv.opts.grace
  local tinner = srv.inner_tls
  if tinner then core.spawn(tinner.close, tinner, grace) end
  local ok = srv.inner:close(grace)
  if tinner then
    tinner:wait()
    if srv.transcript_own then srv.transcript_own:close() end
  end
  return ok
end

--- Sessions running on a protocol server started with `serve_for`
-- (both listeners when it has `listen_tls`).
-- @tparam table srv the protocol server
-- @treturn integer
function M.connections_for(srv)
  return srv.inner:connections() + (srv.inner_tls and srv.inner_tls:connections() or 0)
end

--- How many handlers are running.
function server:connections()
  return self.n
end

--- Waits until the server has been closed and its handlers have ended.
function server:wait(timeout)
  if self.done then return true end
  return self.closed:wait(timeout)
end

--- Stops accepting, gives running handlers `grace` seconds to finish,
-- then closes their connections (their pending calls return
-- `nil, "closed"`). Returns when every handler has ended.
-- @tparam[opt] number grace seconds (default `opts.grace`, 5)
function server:close(grace)
  if self.done then return true end
  if not self.closing then
    self.closing = true
    signalled[self] = nil
    if next(signalled) == nil then
      core.on_signal("INT", nil)
      core.on_signal("TERM", nil)
    end
    self.listener:close()
    self.room:broadcast()
    if self.opts.on_close then
      local ok, err = pcall(self.opts.on_close, self)
      if not ok then log(("%s: on_close failed: %s"):format(self.address, tostring(err))) end
    end
  end
  grace = grace or self.opts.grace or DEFAULTS.grace
  if self.n > 0 and grace > 0 then self.idle:wait(grace) end
  if self.n > 0 then
    for conn in pairs(self.conns) do conn:close() end
    -- handlers now see "closed"; let them run to their end
    if self.n > 0 then self.idle:wait(1) end
  end
  self.done = true
  if self.transcript_own then self.transcript:close() end
  self.closed:broadcast()
  return true
end

function server:__tostring()
  return ("parley.server: %s (%d connections)"):format(self.address, self.n)
end

M.server = server
return M
