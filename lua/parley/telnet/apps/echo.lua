--- parley.telnet.apps.echo: sends every line back (line mode).  When the
-- client has turned BINARY on (RFC 856), it echoes raw bytes instead, so
-- any byte value makes the round trip.
-- @module parley.telnet.apps.echo
local M = { description = "echo: every line comes back; raw bytes in BINARY mode" }

--- Returns the per-connection function.
function M.new()
  return function(sess)
    while true do
      if sess:enabled("binary", "him") then
        local data, err = sess:read()
        if not data then return nil, err end
        sess:write(data)
      else
        local line, err = sess:read_line()
        if not line then
          if err == "line too long" then
            sess:print("error: line too long")
          elseif err ~= "interrupted" then
            return nil, err
          end
        else
          sess:print(line)
        end
      end
    end
  end
end

return M
