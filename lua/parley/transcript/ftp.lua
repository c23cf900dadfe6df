--- parley.transcript.ftp: the FTP control connection.
--
-- Masks `PASS` and `ACCT` (RFC 959 4.1.1), except the e-mail address an
-- anonymous user gives as a password.
-- @module parley.transcript.ftp
local W = {}

local ANONYMOUS = { anonymous = true, ftp = true }

function W.new()
  return { anonymous = false }
end

function W.line(st, flow, dir, text)
  if dir ~= "C" then return text end
  local verb, rest = text:match("^(%a+)%s?(.*)$")
  verb = verb and verb:upper()
  if verb == "USER" then
    st.anonymous = ANONYMOUS[rest:lower()] or false
  elseif (verb == "PASS" and not st.anonymous or verb == "ACCT") and not flow:secrets() then
    return text:sub(1, #verb) .. " ****"
  end
  return text
end

return W
