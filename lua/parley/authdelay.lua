--- parley.authdelay: failed-login delays that grow per client address.
--
-- Every parley server that checks passwords (SMTP AUTH, POP3, IMAP, FTP,
-- Telnet) waits before it answers a failed login, whether the user
-- exists or not. The first failures from an address cost the server's
-- base delay; the cost doubles every `step` further failures from that
-- address within `window` seconds, up to `factor` times the base. A
-- successful login forgets the address. A server keeps one tracker for
-- all its connections (option `auth_tracker` to share one between
-- servers), so a brute force spread over many connections pays the same.
-- Only the failing session waits; the others go on.
--
--     local authdelay = require "parley.authdelay"
--     if not ok then authdelay.of(opts):failed(s.ip, opts.auth_delay) ... end
--     if ok then authdelay.of(opts):succeeded(s.ip) end
--
-- @module parley.authdelay
local parley = require "parley"

local M = {}

--- Defaults of `new`'s options.
-- @table defaults
M.defaults = {
  step = 5,               -- failures per doubling
  factor = 16,            -- the delay is at most factor * base
  window = 600,           -- seconds after which an address's failures are forgotten
  max_addresses = 10000,  -- addresses remembered at most (memory bound)
}

local tracker = {}
tracker.__index = tracker
tracker.__name = "parley.authdelay"

--- Makes a tracker: one per server, or one shared by several (`parley
-- serve mail` shares one between SMTP, POP3 and IMAP).
-- @tparam[opt] table opts overrides of `defaults`
-- @return a tracker
function M.new(opts)
  local self = setmetatable({ failures = {}, count = 0 }, tracker)
  for k, v in pairs(M.defaults) do self[k] = (opts and opts[k]) or v end
  return self
end

--- The tracker of a server's options: `opts.auth_tracker`, made on first
-- use (so every connection of the server, and every server built from
-- the same options table, counts together).
-- @tparam table opts a server's options
-- @return a tracker
function M.of(opts)
  local t = opts.auth_tracker
  if not t then
    t = M.new()
    opts.auth_tracker = t
  end
  return t
end

-- makes room: first the stale entries, then everything if still full
local function prune(self, now)
  for ip, f in pairs(self.failures) do
    if now - f.last > self.window then
      self.failures[ip] = nil
      self.count = self.count - 1
    end
  end
  if self.count >= self.max_addresses then self.failures, self.count = {}, 0 end
end

--- The delay the next failed login from `ip` costs, without counting it.
-- @tparam ?string ip the client's address (nil: no history, the base)
-- @tparam number base the server's delay for one failure, seconds
-- @treturn number seconds
function tracker:cost(ip, base)
  local f = ip and self.failures[ip]
  local n = 1
  if f and parley.now() - f.last <= self.window then n = f.n + 1 end
  return base * math.min(2 ^ ((n - 1) // self.step), self.factor)
end

--- Counts a failed login from `ip` and waits what it costs (only the
-- calling task waits).
-- @tparam ?string ip
-- @tparam number base seconds (0 or less: no delay, nothing counted)
-- @treturn number the seconds waited
function tracker:failed(ip, base)
  if not base or base <= 0 then return 0 end
  local d = self:cost(ip, base)
  if ip then
    local now = parley.now()
    local f = self.failures[ip]
    if f and now - f.last > self.window then f.n = 0 end
    if not f then
      if self.count >= self.max_addresses then prune(self, now) end
      f = { n = 0 }
      self.failures[ip] = f
      self.count = self.count + 1
    end
    f.n, f.last = f.n + 1, now
  end
  parley.sleep(d)
  return d
end

--- Forgets the failures of `ip` (after a successful login).
-- @tparam ?string ip
function tracker:succeeded(ip)
  if ip and self.failures[ip] then
    self.failures[ip] = nil
    self.count = self.count - 1
  end
end

return M
