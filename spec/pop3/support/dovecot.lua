-- The POP3 specs' Dovecot pop3d (and bench/pop3's): spec/support/dovecot.lua
-- over `dir` holding one Maildir per user, dir/<user>/.
--   local D = require "pop3.support.dovecot"
--   local dv = D.start(dir, { alice = "wonderland" } [, "taskset -c 1 "])
--   ... dv.port, dv.pid, dv.master ...
--   dv.stop()
local base = require "support.dovecot"

local D = setmetatable({}, { __index = base })

function D.start(dir, users, prefix)
  return base.start{ protocol = "pop3", dir = dir, users = users, prefix = prefix, timeout = 600 }
end

return D
