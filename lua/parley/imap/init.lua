--- IMAP4rev1 (RFC 3501) for parley: `require("parley.imap").server` and
-- `.client` (loaded on first use).
-- @module parley.imap
return setmetatable({}, { __index = function(t, k)
  if k == "server" or k == "client" then
    local m = require("parley.imap." .. k)
    rawset(t, k, m)
    return m
  end
end })
