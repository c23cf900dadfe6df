--- parley.check.telnet: `telnet://host[:port]`.
--
-- Connects; the Telnet client answers the server's option negotiation.
-- `expect`: the first output must hold that text before the deadline
-- (CRITICAL otherwise, with what came). Without it the check is OK once
-- connected, and shows the first line of what the server says within
-- `BANNER_WAIT` seconds.
-- @module parley.check.telnet
local client = require "parley.telnet.client"

local M = { LABEL = "TELNET", PORT = 23 }

--- The options this check takes (besides timeout, warning, critical, verbose).
M.OPTIONS = { expect = true }

--- Seconds to wait for a banner to show when nothing is expected.
M.BANNER_WAIT = 1
--- Characters of the server's output quoted in a summary.
M.QUOTE = 60

--- Refuses options that cannot work (UNKNOWN before connecting).
function M.validate(u, opts)
  if u.user then return "credentials in a telnet URL are not supported" end
  if opts.expect ~= nil and (type(opts.expect) ~= "string" or opts.expect == "") then
    return "expect must be a non-empty string"
  end
end

-- the first non-blank line of some output, shortened
local function first_line(s)
  s = s:gsub("\27%[[%d;?]*[%a@]", "")   -- terminal control sequences (ECMA-48 CSI)
  local line = s:match("[^\r\n]*%S[^\r\n]*") or ""
  line = line:gsub("%c", ""):gsub("%s+", " "):gsub("^ ", "")
  if #line > M.QUOTE then line = line:sub(1, M.QUOTE) .. "..." end
  return line
end

local function plain(s) return (s:gsub("%p", "%%%0")) end

--- Runs the check (see the module description) in `ctx`, the context
-- `parley.check` gives: `ctx.url`, `ctx.opts`, `ctx:phase`, `ctx:perf`.
-- @return state, summary
function M.check(ctx)
  local u, o = ctx.url, ctx.opts
  ctx:phase("connect")
  local left = ctx:left()
  local c, err = client.connect(u.host, u.port, { connect_timeout = left, timeout = left,
    transcript = ctx.transcript })
  if not c then return ctx:critical(err) end
  ctx:own(c.stream)
  ctx:phase("banner")
  local summary
  if o.expect then
    -- a little before the deadline, to say what came instead
    local match, before, got = c:expect(plain(o.expect), math.max(0.001, ctx:left() - 0.05))
    if not match then
      c:close()
      if before == "timeout" or before == "closed" then
        return "CRITICAL", ("%s: no %q in the output (%s after %.1f s%s)"):format(u.address,
          o.expect, before, ctx:elapsed(), got ~= "" and ", got: " .. first_line(got) or "")
      end
      return ctx:critical(before)
    end
    summary = ("%s %s"):format(u.address, first_line(before .. match))
  else
    local data = c:read_some(math.min(M.BANNER_WAIT, ctx:left()))
    summary = ("%s connected%s"):format(u.address, data and ": " .. first_line(data) or "")
  end
  c:close()
  return "OK", summary
end

return M
