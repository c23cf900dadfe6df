--- `parley serve http`: a static file server (plus the server's limits).
-- @module parley.http.cli
local cli = require "parley.cli"
local tcli = require "parley.transcript.cli"

local M = {}

local HELP = [[
usage: parley serve http [--listen ADDR] [--root DIR] [options]
  Serves the files under DIR (index.html for directories) over HTTP/1.1.
  --listen ADDR            default 127.0.0.1:8080 (port 0: any free port)
  --root DIR               default . (the current directory)
  --listing                list directories that have no index.html
  --access-log FILE|-|off  combined-format access log (default -: stdout)
  --max-body BYTES         request body limit (413), default 16 MiB
  --header-timeout S       seconds for a whole request head (408), default 20
  --keepalive-timeout S    idle seconds between requests, default 75
  --max-requests N         requests per connection, default 1000
  --max-connections N      default 10000
  --reuseport              SO_REUSEPORT (run several processes on one port)
  --tls-cert FILE --tls-key FILE   PEM certificate and key (ALPN http/1.1):
                           alone, --listen serves HTTPS; with --listen-tls,
                           --listen stays HTTP
  --listen-tls ADDR        also serve HTTPS on ADDR
]]

function M.serve(argv)
  local rest, tr = tcli.take(argv)
  local o = cli.parse(rest, {
    listen = "string", root = "string", listing = "flag", access_log = "string",
    max_body = "number", header_timeout = "number", keepalive_timeout = "number",
    max_requests = "number", max_connections = "number", reuseport = "flag",
    tls_cert = "string", tls_key = "string", listen_tls = "string",
    help = "flag",
  })
  if o.help then io.stdout:write(HELP, tcli.HELP) return 0 end
  if o[1] then io.stderr:write("parley: unexpected argument: ", o[1], "\n", HELP) return 2 end
  if (o.tls_cert == nil) ~= (o.tls_key == nil) then
    io.stderr:write("parley: --tls-cert and --tls-key go together\n")
    return 2
  end
  if o.listen_tls and not o.tls_cert then
    io.stderr:write("parley: --listen-tls needs --tls-cert and --tls-key\n")
    return 2
  end
  local root = o.root or "."
  local st = require("parley.http.static").stat(root)
  if not st or st.mode ~= "directory" then
    io.stderr:write("parley: --root is not a directory: ", root, "\n")
    return 2
  end
  local log
  local where = o.access_log or "-"
  if where == "-" then
    io.stdout:setvbuf("line")
    log = io.stdout
  elseif where ~= "off" then
    local fh, err = io.open(where, "a")
    if not fh then io.stderr:write("parley: ", err, "\n") return 1 end
    fh:setvbuf("line")
    log = fh
  end
  local server = require "parley.http.server"
  local app = server.new{
    access_log = log,
    max_body = o.max_body, header_timeout = o.header_timeout,
    keepalive_timeout = o.keepalive_timeout, max_requests = o.max_requests,
  }
  app:static("/", root, { listing = o.listing })
  local srv, err = app:serve{
    listen = o.listen or "127.0.0.1:8080",
    transcript = tr.transcript, transcript_full = tr.transcript_full, transcript_secrets = tr.transcript_secrets,
    max_connections = o.max_connections,
    reuseport = o.reuseport,
    tls = o.tls_cert and { cert = o.tls_cert, key = o.tls_key } or nil,
    listen_tls = o.listen_tls,
    on_start = function(s)
      local plain = not o.tls_cert or o.listen_tls
      io.stdout:write(plain and "http" or "https", " server on ", s.address, " serving ", root, "\n")
      if s.tls_address then io.stdout:write("https server on ", s.tls_address, " serving ", root, "\n") end
      io.stdout:flush()
    end,
  }
  if not srv then io.stderr:write("parley: ", err, "\n") return 1 end
  return 0
end

return M
