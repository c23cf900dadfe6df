-- The IMAP specs' Dovecot imapd: spec/support/dovecot.lua with the
-- arguments these specs (and the benchmark) pass.
--   local D = require "imap.support.dovecot"
--   if not D.available() then pending(D.why) return end
--   local d = D.start(dir, dir .. "/mail", { alice = "pw" })
--   ... IMAP on 127.0.0.1:d.port ...
--   D.stop(d)
local base = require "support.dovecot"

local D = setmetatable({}, { __index = base })

function D.start(dir, mail_root, users)
  return base.start{ protocol = "imap", dir = dir, mail_root = mail_root, users = users }
end

return D
