-- parley's SMTP sink for the benchmark: accepts everything and hands the
-- streamed body to a Lua on_message handler that counts bytes.
-- usage: lua5.4 bench/smtp/parley_sink.lua PORT
local server = require "parley.smtp.server"
local bytes, msgs = 0, 0
server.serve{
  listen = "127.0.0.1:" .. (arg[1] or "2525"), sink = true, hostname = "bench.parley",
  max_connections = 20000, max_errors = 1000000,
  on_message = function()
    return function(chunk)
      if chunk then bytes = bytes + #chunk return true end
      msgs = msgs + 1
    end
  end,
  on_start = function(s) io.stdout:write("listening ", s.address, "\n") io.stdout:flush() end,
}
