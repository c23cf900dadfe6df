--- `parley serve echo`: a line echo server (RFC 862 style, line by line).
-- @module parley.echo.cli
local parley = require "parley"
local cli = require "parley.cli"
local tcli = require "parley.transcript.cli"

local M = {}

local HELP = [[
usage: parley serve echo [--listen ADDR] [--max-line N] [--timeout S]
  Echoes every CRLF-terminated line back. --listen defaults to 127.0.0.1:7007.
]]

--- The echo handler: each line back as it came, until the client leaves.
function M.handler(conn)
  for line in conn:lines() do conn:send(line .. "\r\n") end
  local err = conn:lasterror()
  if err and err ~= "closed" then conn:send("error: " .. err .. "\r\n") end
end

function M.serve(argv)
  local rest, tr = tcli.take(argv)
  local o = cli.parse(rest, { listen = "string", max_line = "number", timeout = "number", help = "flag" })
  if o.help then io.stdout:write(HELP, tcli.HELP) return 0 end
  local srv, err = parley.serve{
    listen = o.listen or "127.0.0.1:7007",
    handler = M.handler,
    max_line = o.max_line,
    timeout = o.timeout or 300,
    transcript = tr.transcript, transcript_full = tr.transcript_full, transcript_secrets = tr.transcript_secrets,
    on_start = function(s) io.stdout:write("echo server on ", s.address, "\n") io.stdout:flush() end,
  }
  if not srv then io.stderr:write("parley: ", err, "\n") return 1 end
  return 0
end

return M
