-- nginx serving HTTPS (and plain HTTP beside it) from a scratch directory,
-- for the HTTPS interop specs: one worker, in the foreground under
-- `timeout`, certificate and key given.
--
--   local N = require "http.support.nginx_tls"
--   local ng = N.start(dir, www, cert, key)   -- ng.port (http), ng.tls_port
--   ng.stop()
local parley = require "parley"
local H = require "helper"

local N = {}

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function free_port()
  local l = assert(parley.listen("127.0.0.1:0"))
  local port = l:port()
  l:close()
  return port
end

--- Starts nginx; waits (bounded) until its HTTPS port accepts.
-- @return { port, tls_port, pid, stop() }
function N.start(dir, www, cert, key)
  local port, tls_port = free_port(), free_port()
  H.write(dir .. "/nginx.conf", ([[
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %s/body; proxy_temp_path %s/proxy; fastcgi_temp_path %s/fcgi;
  uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;
  types { text/plain txt; }
  server {
    listen 127.0.0.1:%d;
    listen 127.0.0.1:%d ssl;
    ssl_certificate %s;
    ssl_certificate_key %s;
    root %s;
    location = /to-https { return 301 https://localhost:%d/1k.txt; }
  }
}
]]):format(dir, dir, dir, dir, dir, dir, dir, port, tls_port, cert, key, www, tls_port))
  local fh = io.popen(("sh -c 'echo $$; exec timeout 60 nginx -p %s -c %s/nginx.conf -g \"daemon off;\"' 2>&1 &")
    :format(q(dir), q(dir)))
  local pid = tonumber(fh:read("l"))
  fh:close()
  local ng = { port = port, tls_port = tls_port, pid = pid }
  function ng.stop()
    if ng.pid then os.execute("kill " .. ng.pid .. " 2>/dev/null") end
    ng.pid = nil
  end
  for _ = 1, 100 do
    local c = parley.connect("127.0.0.1", tls_port, { timeout = 1 })
    if c then c:close() return ng end
    parley.sleep(0.05)
  end
  ng.stop()
  error("nginx did not start: " .. (H.read(dir .. "/error.log") or ""))
end

return N
