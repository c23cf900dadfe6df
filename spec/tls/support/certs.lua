-- Test certificates for the TLS specs, made at spec time in a fresh
-- directory (no private key is ever committed): a good localhost one, an
-- expired one, one for another host, a client certificate, and an RSA
-- one made by the `openssl` CLI (so a context loads what others make).
--
--   local certs = require "tls.support.certs"
--   local c = certs.make()   ... c.cert, c.key, c.expired_cert ...
--   certs.remove(c)
local H = require "helper"
local tls = require "parley.tls"

local M = {}

local function pair(c, prefix, opts)
  opts.dir = c.dir
  local cert, key = assert(tls.selfsigned(opts))
  c[prefix .. "cert"], c[prefix .. "key"] = cert, key
end

function M.make()
  local c = { dir = H.tmpdir() }
  pair(c, "", { cn = "localhost" })
  pair(c, "expired_", { cn = "expired", san = { "localhost", "127.0.0.1" }, days = -2 })
  pair(c, "other_", { cn = "other.example", san = { "other.example" } })
  pair(c, "client_", { cn = "client", san = {} })
  c.rsa_cert, c.rsa_key = c.dir .. "/rsa.crt", c.dir .. "/rsa.key"
  local ok = os.execute(("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost " ..
    "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout %s -out %s >/dev/null 2>&1")
    :format(c.rsa_key, c.rsa_cert))
  assert(ok, "openssl req failed")
  return c
end

function M.remove(c)
  if c then H.rmdir(c.dir) end
end

return M
