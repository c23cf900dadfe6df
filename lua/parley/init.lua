--- parley: tasks, connections and servers on one epoll loop.
--
-- Every blocking call (I/O, `sleep`, `join`, a condition's `wait`) suspends
-- only the task that made it; outside any task it runs the loop right there
-- until the call can return, so a plain script can call clients directly.
-- I/O failures return `nil, err` with short lowercase messages (`"timeout"`,
-- `"closed"`); wrong arguments raise. The full contract is in
-- doc/driver-api.md.
--
-- @module parley
local core = require "parley.core"

local parley = { core = core, version = core.version }

--- Runs `fn(...)` as a task and the loop until every task has finished.
-- Re-raises `fn`'s error (a string error carries the task's traceback).
-- Inside a task it simply calls `fn`.
-- @tparam function fn
-- @return what `fn` returned
function parley.run(fn, ...)
  if core.current() then return fn(...) end
  return core.run(fn, ...)
end

--- Starts a task running `fn(...)`.
-- @treturn task a handle with `join([timeout])`, `cancel()` and `status()`
parley.spawn = core.spawn

--- Suspends the running task for `s` seconds (`0`: let the others run).
-- @function sleep
parley.sleep = core.sleep

--- The monotonic clock, in seconds.
-- @function now
parley.now = core.now

--- The running task, or `nil` outside one.
-- @function current
parley.current = core.current

--- A condition variable: `c:wait([timeout])`, `c:signal()`, `c:broadcast()`.
-- @function cond
parley.cond = core.cond

--- Runs `fn(name)` as a task when the process receives a signal.
-- @tparam string name `"INT"`, `"TERM"`, `"HUP"`, `"QUIT"`, `"USR1"`,
-- `"USR2"`, `"WINCH"` or `"CHLD"`
-- @tparam ?function fn `nil` restores the default action
-- @function on_signal
parley.on_signal = core.on_signal

--- Writes one log line to stderr. Replace it to send logs elsewhere;
-- failures of tasks nobody joins and of server handlers come here.
-- @tparam string msg
function parley.log(msg)
  io.stderr:write(os.date("!%Y-%m-%dT%H:%M:%SZ "), "parley: ", tostring(msg), "\n")
end
core.set_logger(function(msg) parley.log(msg) end)

--- Splits an address string into host and port.
-- `"127.0.0.1:25"`, `"[::1]:25"`, `"localhost:25"`, `"*:25"`.
-- @tparam string addr
-- @treturn string host (brackets removed)
-- @treturn string port
function parley.parse_address(addr)
  if type(addr) ~= "string" then
    error("address must be a string like \"127.0.0.1:2525\"", 2)
  end
  local host, port = addr:match("^%[(.*)%]:(%d+)$")
  if not host then host, port = addr:match("^([^%[%]]*):(%d+)$") end
  if not host or tonumber(port) > 65535 then
    return nil, "invalid address (want host:port or [v6]:port): " .. addr
  end
  return host, port
end

local function apply_stream_opts(s, opts)
  if opts.timeout then s:settimeout(opts.timeout) end
  if opts.max_line then s:setoption("max-line", opts.max_line) end
  if opts.lenient then s:setoption("lenient", true) end
  return s
end
parley.apply_stream_opts = apply_stream_opts

--- Connects to a TCP server.
-- `connect(host, port [, opts])` or `connect("host:port" [, opts])`.
-- Every address the name resolves to is tried in order.
-- @tparam string host
-- @tparam number|string port
-- @tparam[opt] table opts `timeout` (I/O, default none), `connect_timeout`
-- (default `timeout` or 30), `max_line`, `lenient`, `bind` (local
-- `"host"` or `"host:port"` to connect from), `tls` (implicit TLS: a
-- client context from `parley.tls.context`, or `true` for the default
-- verifying one), `servername` (name sent and checked; default `host`),
-- `insecure` (with `tls = true`: do not verify the certificate)
-- @return a stream, or `nil, err`
function parley.connect(host, port, opts)
  if type(port) == "table" or (port == nil and type(host) == "string" and host:find(":%d+$")) then
    opts = port
    local h, p = parley.parse_address(host)
    if not h then return nil, p end
    host, port = h, p
  end
  opts = opts or {}
  if type(host) ~= "string" then error("bad argument #1 to 'connect' (string expected)", 2) end
  if tonumber(port) == nil then error("bad argument #2 to 'connect' (port expected)", 2) end
  local bhost, bport
  if opts.bind then
    bhost, bport = parley.parse_address(opts.bind:find(":%d+$") and opts.bind or opts.bind .. ":0")
    if not bhost then return nil, bport end
  end
  local s, err = core.connect(host, tostring(math.tointeger(tonumber(port)) or port),
    opts.connect_timeout or opts.timeout or 30, bhost, bport)
  if not s then return nil, err end
  parley.tls.remember_host(s, host)
  if opts.tls then
    local ok, terr = parley.connect_tls(s, opts)
    if not ok then
      s:close()
      return nil, terr
    end
  end
  return apply_stream_opts(s, opts)
end

--- Implicit TLS on a freshly connected stream (parley.connect's `tls`).
-- @local
function parley.connect_tls(s, opts)
  local ctx, err = opts.tls
  if ctx == true then
    ctx, err = parley.tls.client(opts.insecure)
    if not ctx then return nil, err end
  elseif not parley.tls.is_context(ctx) then
    s:close()
    error("connect: tls must be a tls context or true", 3)
  end
  return s:starttls(ctx, { servername = opts.servername,
                           timeout = opts.connect_timeout or opts.timeout or 30 })
end

--- Listens on an address.
-- @tparam string addr `"127.0.0.1:0"` (port 0: any free port)
-- @tparam[opt] table opts `backlog` (511), `reuseport` (false), `tls` (a
-- server context: accepted streams are TLS; each one's handshake runs on
-- its first I/O or `s:handshake()`, in the task that uses it)
-- @return a listener (`accept`, `close`, `getsockname`, `port`), or `nil, err`
function parley.listen(addr, opts)
  opts = opts or {}
  local host, port = parley.parse_address(addr)
  if not host then return nil, port end
  local tls = opts.tls
  if tls and not (parley.tls.is_context(tls) and tls:mode() == "server") then
    error("listen: tls must be a server tls context", 2)
  end
  local l, err = core.listen(host, port, opts.backlog or 511, opts.reuseport)
  if l and tls then l:settls(tls) end
  return l, err
end

--- Adopts a connected LuaSocket TCP object's descriptor as a stream.
-- The LuaSocket object is left without a descriptor.
-- @param sock a connected LuaSocket `tcp{client}`
-- @tparam[opt] table opts as for `connect`
-- @return a stream, or `nil, err`
function parley.wrap(sock, opts)
  local fd = sock:getfd()
  if not fd or fd < 0 then return nil, "closed" end
  sock:setfd(-1)
  local s, err = core.adopt(fd)
  if not s then return nil, err end
  return apply_stream_opts(s, opts or {})
end

--- Serves connections: one task runs `opts.handler(conn)` per client.
-- See `parley.server`.
-- @tparam table opts
-- @return a server object, or `nil, err`
function parley.serve(opts)
  return require("parley.server").serve(opts)
end

--- TLS: contexts, certificates, and `stream:starttls` (`parley.tls`).
parley.tls = require "parley.tls"

-- ---------------------------------------------------------------------
-- Stream methods written in Lua (the rest are C: doc/driver-api.md).

local stream = core.stream_methods

--- Iterates over lines until the stream ends; `s:lasterror()` tells why
-- it ended (`"closed"` for a clean close).
function stream:lines()
  return function()
    return (self:receive("l"))
  end
end

--- Streams `count` bytes (or everything until the peer closes) to a sink
-- without building one big string: a descriptor, a Lua file, or an
-- ltn12-style function (called with each chunk, then with `nil`).
-- @return the byte count, or `nil, err, count_so_far`
function stream:receive_to(sink, count)
  if type(sink) ~= "function" then return self:receive_to_fd(sink, count) end
  local total = 0
  while count == nil or total < count do
    local chunk, err = self:receive_some(count and math.min(count - total, 262144) or 262144)
    if not chunk then
      if err == "closed" and count == nil then break end
      return nil, err, total
    end
    local ok, serr = sink(chunk)
    if not ok then return nil, serr or "sink failed", total end
    total = total + #chunk
  end
  sink(nil)
  return total
end

return parley
