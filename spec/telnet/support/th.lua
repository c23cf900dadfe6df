-- Helpers for the Telnet specs (spec/telnet/*_spec.lua).
local parley = require "parley"
local core = require "parley.core"
local H = require "helper"

local T = {}
T.IAC, T.SB, T.SE, T.WILL, T.WONT, T.DO, T.DONT = "\255", "\250", "\240", "\251", "\252", "\253", "\254"
T.O = core.telnet.options

--- A Telnet server inside the running task; returns the parley server.
function T.server(opts)
  opts.listen = opts.listen or "127.0.0.1:0"
  opts.signals = false
  opts.grace = opts.grace or 0.2
  local telnet = require "parley.telnet"
  return assert(telnet.server.serve(opts))
end

--- Reads from a raw stream until `pattern` (plain) appears; everything read.
function T.read_until(s, needle, limit)
  local got, deadline = "", parley.now() + (limit or 5)
  while not got:find(needle, 1, true) do
    s:settimeout(math.max(0.001, deadline - parley.now()))
    local d, err = s:receive_some()
    if not d then return got, err end
    got = got .. d
  end
  return got
end

--- Everything a raw stream receives within `secs`.
function T.drain(s, secs)
  local got, deadline = "", parley.now() + secs
  while parley.now() < deadline do
    s:settimeout(math.max(0.001, deadline - parley.now()))
    local d = s:receive_some()
    if not d then break end
    got = got .. d
  end
  return got
end

--- A users file in a fresh temp dir: path, dir.
function T.users_file(text)
  local dir = H.tmpdir()
  local path = dir .. "/users"
  local f = assert(io.open(path, "w"))
  f:write(text or "alice:{PLAIN}wonderland\nbob:{PLAIN}builder\n")
  f:close()
  return path, dir
end

--- Counts non-overlapping plain occurrences.
function T.count(s, needle)
  local n, i = 0, 1
  while true do
    local a, b = s:find(needle, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

local child = require "support.child"
T.quote = child.quote

--- Starts `bin/parley serve telnet ARGS...` as a child process
-- (spec/support/child.lua): `port`, `:stop()`.
function T.serve_child(...)
  return child.serve("telnet", { ... })
end

--- Runs a shell command; its output.
function T.sh(cmd)
  local fh = assert(io.popen(cmd .. " 2>&1", "r"))
  local out = fh:read("a") or ""
  fh:close()
  return out
end

return T
