--- The relay queue: accepted mail for remote recipients waits on disk and
-- is delivered to a route or smarthost with retries and backoff; after
-- its maximum age it bounces to the sender with a DSN (RFC 3464).
--
--     local queue = require "parley.smtp.queue"
--     local q = queue.open("/var/spool/parley", {
--       route = { ["example.org"] = "127.0.0.1:2526" },
--       smarthost = "10.0.0.1:25" })        -- for every other domain
--     q:start()                               -- a task running q:run()
--
-- On disk: `msg/<id>` holds the message, `env/<id>` the envelope (the
-- commit point: written to `tmp/`, flushed, renamed). An envelope names
-- only the recipients still pending, rewritten atomically after each
-- attempt, so a crash at any point loses nothing; it may at worst send a
-- message twice to a recipient whose 250 was not yet recorded.
--
-- Envelope file lines: `created T`, `next T`, `attempts N`, `from ADDR`,
-- `to ADDR` (one per pending recipient), `error TEXT`.
-- @module parley.smtp.queue
local parley = require "parley"
local core = require "parley.core"
local lfs = require "lfs"

local M = {}

--- Defaults: retry delays in seconds (the last repeats), maximum age,
-- the interval between queue runs.
-- @table DEFAULTS
-- @field retry delays in seconds between attempts; the last one repeats
-- @field max_age seconds after which a message bounces (5 days)
-- @field interval seconds between queue runs
-- @field hostname the name given in HELO/EHLO and bounces
M.DEFAULTS = {
  retry = { 60, 300, 900, 1800, 3600, 7200 },
  max_age = 5 * 86400,
  interval = 30,
  hostname = "localhost",
}

local queue = {}
queue.__index = queue
queue.__name = "parley.smtp.queue"

local fs = core.fs

-- A queued message is on disk before the 250 that accepts it: file, then
-- the directory that names it. Inside a task the fsyncs run on the
-- driver's worker threads, so other sessions are not held up.
-- @return true, or nil, err
local function sync_file(f)
  local ok, err = f:flush()
  if not ok then return nil, err end
  return fs.fsync_async(f)
end
local function sync_dir(path)
  return fs.fsync_dir_async(path)
end

local function mkdir(p) lfs.mkdir(p) end

--- Opens (creating) a queue directory.
-- @tparam string dir
-- @tparam[opt] table opts `route` ({domain = "host:port"}), `smarthost`
-- ("host:port" for domains without a route; default: the domain itself on
-- port 25, no MX lookup), `clock` (function returning seconds; default
-- os.time), `retry`, `max_age`, `interval`, `hostname`, `helo`,
-- `timeouts` (for the client), `is_local` (function(domain) -> bool) and
-- `deliver_local` (function(address, message) -> ok, err) for bounces to
-- local senders
-- @return queue
function M.open(dir, opts)
  if type(dir) ~= "string" then error("queue directory must be a string", 2) end
  opts = opts or {}
  local o = {}
  for k, v in pairs(M.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  o.clock = o.clock or os.time
  o.route = o.route or {}
  local acc = dir:sub(1, 1) == "/" and "" or "."
  for part in dir:gmatch("[^/]+") do acc = acc .. "/" .. part; mkdir(acc) end
  for _, sub in ipairs { "tmp", "msg", "env" } do mkdir(dir .. "/" .. sub) end
  local q = setmetatable({ dir = dir, opts = o, counter = 0, wake = parley.cond() }, queue)
  q:clean()
  return q
end

-- Leftovers of a crash: tmp files, and messages without an envelope.
function queue:clean()
  for name in lfs.dir(self.dir .. "/tmp") do
    if name ~= "." and name ~= ".." then os.remove(self.dir .. "/tmp/" .. name) end
  end
  for name in lfs.dir(self.dir .. "/msg") do
    if name ~= "." and name ~= ".." and not lfs.attributes(self.dir .. "/env/" .. name) then
      os.remove(self.dir .. "/msg/" .. name)
    end
  end
end

function queue:new_id()
  self.counter = self.counter + 1
  return ("%d.%d.%d.%d"):format(os.time(), math.random(0, 0xffffff), self.counter,
    math.floor(parley.now() * 1e6) % 1000000)
end

local function write_env(q, id, env)
  local lines = { "created " .. math.floor(env.created), "next " .. math.floor(env.next),
    "attempts " .. env.attempts, "from " .. env.from }
  for _, t in ipairs(env.to) do lines[#lines + 1] = "to " .. t end
  if env.error then lines[#lines + 1] = "error " .. env.error:gsub("[\r\n]", " ") end
  local tmp = q.dir .. "/tmp/" .. id .. ".env"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(table.concat(lines, "\n"), "\n")
  if not ok then f:close() os.remove(tmp) return nil, werr end
  local sok, serr = sync_file(f)
  f:close()
  if not sok then os.remove(tmp) return nil, serr end
  local rok, rerr = os.rename(tmp, q.dir .. "/env/" .. id)
  if not rok then os.remove(tmp) return nil, rerr end
  local dok, derr = sync_dir(q.dir .. "/env")
  if not dok then os.remove(q.dir .. "/env/" .. id) return nil, derr end
  return true
end

local function read_env(q, id)
  local f = io.open(q.dir .. "/env/" .. id, "rb")
  if not f then return nil end
  local env = { id = id, to = {} }
  for line in f:lines() do
    local k, v = line:match("^(%a+) (.*)$")
    if k == "to" then env.to[#env.to + 1] = v
    elseif k == "created" or k == "next" or k == "attempts" then env[k] = tonumber(v)
    elseif k == "from" or k == "error" then env[k] = v end
  end
  f:close()
  env.from = env.from or ""
  if not env.created or not env.next or not env.attempts then return nil end
  return env
end

local entry = {}
entry.__index = entry

--- Starts a queued message: returns an entry with `write(chunk)`,
-- `commit()` (on disk, then `true`) and `abort()`.
-- @tparam table env `from` (string, "" for the null sender), `to` (array)
function queue:enqueue(env)
  if type(env) ~= "table" or type(env.from) ~= "string" or type(env.to) ~= "table" or #env.to == 0 then
    error("enqueue expects { from = string, to = { addresses } }", 2)
  end
  local id = self:new_id()
  local path = self.dir .. "/tmp/" .. id
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  return setmetatable({ q = self, id = id, f = f, path = path, from = env.from, to = env.to, n = 0 }, entry)
end

function entry:write(chunk)
  local ok, err = self.f:write(chunk)
  if not ok then return nil, err end
  self.n = self.n + #chunk
  return true
end

function entry:size() return self.n end

function entry:commit()
  if self.done then error("entry already finished", 2) end
  self.done = true
  local q = self.q
  local ok, err = sync_file(self.f)
  self.f:close()
  if not ok then os.remove(self.path) return nil, err end
  ok, err = os.rename(self.path, q.dir .. "/msg/" .. self.id)
  if not ok then os.remove(self.path) return nil, err end
  ok, err = sync_dir(q.dir .. "/msg")
  if not ok then os.remove(q.dir .. "/msg/" .. self.id) return nil, err end
  local now = q.opts.clock()
  ok, err = write_env(q, self.id, { created = now, next = now, attempts = 0, from = self.from, to = self.to })
  if not ok then os.remove(q.dir .. "/msg/" .. self.id) return nil, err end
  q.wake:signal()
  return self.id
end

function entry:abort()
  if self.done then return end
  self.done = true
  self.f:close()
  os.remove(self.path)
end

--- One call: queues a whole message string.
function queue:add(from, to, message)
  local e, err = self:enqueue{ from = from, to = type(to) == "string" and { to } or to }
  if not e then return nil, err end
  local ok, werr = e:write(message)
  if not ok then e:abort() return nil, werr end
  return e:commit()
end

--- The queued messages: array of envelopes `{ id, from, to, created,
-- next, attempts, error }`, oldest first.
function queue:list()
  local out = {}
  for name in lfs.dir(self.dir .. "/env") do
    if name ~= "." and name ~= ".." then
      local env = read_env(self, name)
      if env then out[#out + 1] = env end
    end
  end
  table.sort(out, function(a, b)
    if a.created ~= b.created then return a.created < b.created end
    return a.id < b.id
  end)
  return out
end

function queue:route_for(addr)
  local dom = (addr:match("@([^@]+)$") or ""):lower()
  local r = self.opts.route[dom]
  if not r then
    for k, v in pairs(self.opts.route) do
      if k:lower() == dom then r = v break end
    end
  end
  return r or self.opts.smarthost or (dom ~= "" and dom .. ":25") or nil
end

-- The DSN (RFC 3464) telling the sender which recipients failed.
function queue:dsn(env, failed)
  local o = self.opts
  local boundary = "=_parley_" .. env.id
  local date = os.date("!%a, %d %b %Y %H:%M:%S +0000")
  local human, status = {}, {}
  for _, f in ipairs(failed) do
    human[#human + 1] = ("<%s>: %s"):format(f.to, f.why)
    status[#status + 1] = ("Final-Recipient: rfc822; %s\r\nAction: failed\r\nStatus: %s\r\nDiagnostic-Code: smtp; %s\r\n")
      :format(f.to, f.status, f.why)
  end
  local head = {}
  local mf = io.open(self.dir .. "/msg/" .. env.id, "rb")
  if mf then
    for line in mf:lines() do
      if line == "\r" or line == "" then break end
      head[#head + 1] = line:gsub("\r$", "")
      if #head > 200 then break end
    end
    mf:close()
  end
  return table.concat({
    "From: Mail Delivery System <MAILER-DAEMON@" .. o.hostname .. ">",
    "To: <" .. env.from .. ">",
    "Subject: Undelivered Mail Returned to Sender",
    "Date: " .. date,
    "Message-ID: <" .. env.id .. ".dsn@" .. o.hostname .. ">",
    "Auto-Submitted: auto-replied",
    "MIME-Version: 1.0",
    "Content-Type: multipart/report; report-type=delivery-status; boundary=\"" .. boundary .. "\"",
    "",
    "--" .. boundary,
    "Content-Type: text/plain; charset=us-ascii",
    "",
    "This is the mail system at " .. o.hostname .. ".",
    "Your message could not be delivered to one or more recipients:",
    "",
    table.concat(human, "\r\n"),
    "",
    "--" .. boundary,
    "Content-Type: message/delivery-status",
    "",
    "Reporting-MTA: dns; " .. o.hostname,
    "Arrival-Date: " .. os.date("!%a, %d %b %Y %H:%M:%S +0000", math.floor(env.created)),
    "",
    table.concat(status, "\r\n"),
    "--" .. boundary,
    "Content-Type: text/rfc822-headers",
    "",
    table.concat(head, "\r\n"),
    "",
    "--" .. boundary .. "--",
    "",
  }, "\r\n")
end

function queue:bounce(env, failed)
  if #failed == 0 then return end
  if env.from == "" then
    -- RFC 5321 6.1: never bounce a bounce
    parley.log(("queue: dropping bounce %s for %d recipient(s)"):format(env.id, #failed))
    return
  end
  local o = self.opts
  local msg = self:dsn(env, failed)
  local dom = env.from:match("@([^@]+)$") or ""
  if o.deliver_local and o.is_local and o.is_local(dom) then
    local ok, err = o.deliver_local(env.from, msg)
    if ok then return end
    parley.log("queue: local bounce delivery failed: " .. tostring(err))
  end
  self:add("", { env.from }, msg)
end

-- One attempt at one message. Returns "sent", "deferred" or "bounced".
function queue:attempt(env)
  local o = self.opts
  local client = require "parley.smtp.client"
  local groups, order = {}, {}
  for _, t in ipairs(env.to) do
    local r = self:route_for(t) or "?"
    if not groups[r] then groups[r] = {} order[#order + 1] = r end
    table.insert(groups[r], t)
  end
  local pending, failed, lasterr = {}, {}, nil
  for _, host in ipairs(order) do
    local rcpts = groups[host]
    local f = io.open(self.dir .. "/msg/" .. env.id, "rb")
    local res, err, rep, partial
    if not f then
      res, err = nil, "message file missing"
    else
      local ok, e = pcall(function()
        res, err, rep, partial = client.send{ server = host, from = env.from, to = rcpts, message = f,
          helo = o.helo or o.hostname, timeouts = o.timeouts }
      end)
      if not ok then res, err = nil, tostring(e) end
      f:close()
    end
    res = res or partial
    if res then
      local accepted = {}
      for _, a in ipairs(res.accepted or {}) do accepted[a] = true end
      local final_ok = res.reply and res.reply.code // 100 == 2
      for _, t in ipairs(rcpts) do
        local rj = res.rejected and res.rejected[t]
        if accepted[t] and final_ok then -- delivered
        elseif rj and rj.code >= 500 then
          failed[#failed + 1] = { to = t, status = rj.enhanced or "5.0.0", why = client.reply_string(rj) }
        elseif accepted[t] and res.reply and res.reply.code >= 500 then
          failed[#failed + 1] = { to = t, status = res.reply.enhanced or "5.0.0", why = client.reply_string(res.reply) }
        else
          pending[#pending + 1] = t
          lasterr = rj and client.reply_string(rj) or err or "deferred"
        end
      end
    elseif rep and rep.code >= 500 then
      for _, t in ipairs(rcpts) do
        failed[#failed + 1] = { to = t, status = rep.enhanced or "5.0.0", why = client.reply_string(rep) }
      end
    else
      for _, t in ipairs(rcpts) do pending[#pending + 1] = t end
      lasterr = (host .. ": " .. tostring(err))
    end
  end
  local now = o.clock()
  if #pending > 0 and now - env.created >= o.max_age then
    for _, t in ipairs(pending) do
      failed[#failed + 1] = { to = t, status = "4.4.7",
        why = "delivery time expired; last error: " .. tostring(lasterr) }
    end
    pending = {}
  end
  self:bounce(env, failed)
  if #pending == 0 then
    os.remove(self.dir .. "/env/" .. env.id)
    os.remove(self.dir .. "/msg/" .. env.id)
    return #failed > 0 and "bounced" or "sent"
  end
  env.to = pending
  env.attempts = env.attempts + 1
  local delays = o.retry
  env.next = now + delays[math.min(env.attempts, #delays)]
  env.error = lasterr
  write_env(self, env.id, env)
  return "deferred"
end

--- Tries every message that is due now (by the queue's clock).
-- @treturn table counts `{ sent =, deferred =, bounced = }`
function queue:run()
  local counts = { sent = 0, deferred = 0, bounced = 0 }
  local now = self.opts.clock()
  for _, env in ipairs(self:list()) do
    if env.next <= now then
      local r = self:attempt(env)
      counts[r] = counts[r] + 1
    end
  end
  return counts
end

--- Starts a task that runs the queue every `interval` seconds (and soon
-- after each new message). `q:stop()` ends it.
function queue:start(interval)
  interval = interval or self.opts.interval
  self.running = true
  self.task = parley.spawn(function()
    while self.running do
      local ok, err = pcall(self.run, self)
      if not ok then parley.log("queue run failed: " .. tostring(err)) end
      if not self.running then break end
      self.wake:wait(interval)
      parley.sleep(0.05)
    end
  end)
  return self.task
end

--- Stops the task started by `start`.
function queue:stop()
  self.running = false
  self.wake:broadcast()
  if self.task then self.task:join(5) end
end

return M
