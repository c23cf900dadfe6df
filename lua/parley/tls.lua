--- parley.tls: TLS contexts, self-signed certificates and certificate info.
--
--     local tls = require "parley.tls"
--     local ctx = assert(tls.context{ mode = "server", cert = c, key = k })
--     parley.serve{ listen = "127.0.0.1:0", tls = ctx, handler = ... }
--     local s = parley.connect("example.org", 443, { tls = true })
--     conn:starttls(client_ctx)          -- SMTP STARTTLS, POP3 STLS ...
--
-- It also adds `starttls` to every stream (the C part does the rest:
-- `handshake`, `tlsinfo`, `tlssession`). See doc/driver-api.md, "TLS".
-- @module parley.tls
local core = require "parley.core"

local M = {}

local CONTEXT = "parley.tls.context"

-- the host each stream was connected to, so that starttls checks the
-- certificate against it without being told
local hosts = setmetatable({}, { __mode = "k" })

local function is_context(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__name == CONTEXT
end
M.is_context = is_context

local FIELDS = {
  mode = "string", cert = "string", key = "string", ca = "string",
  verify = "boolean", verify_peer = "boolean", servername = "string",
  alpn = "table", min_version = "string", ciphers = "string",
  ciphersuites = "string",
}

--- Makes a TLS context: what the connections made with it share.
-- @tparam table opts `mode` (`"client"` (default) or `"server"`), `cert`
-- and `key` (PEM files; a server needs them, a client sends them as its
-- certificate), `ca` (PEM file or hashed directory of trusted issuers;
-- client default: the system store), `verify` (client: check the
-- server's certificate and name, default `true`; `false` must be said),
-- `verify_peer` (server: require a client certificate issued by `ca`,
-- default `false`), `servername` (client: SNI and the name to check, by
-- default the host connected to), `alpn` (`{"http/1.1"}`), `min_version`
-- (`"1.2"`), `ciphers` (TLS ≤ 1.2 cipher list), `ciphersuites` (TLS 1.3)
-- @return a context (`__gc`, `__close`, `__tostring`, `mode()`), or
-- `nil, err` naming the file that could not be used
function M.context(opts)
  if type(opts) ~= "table" then error("tls.context expects an options table", 2) end
  for k, v in pairs(opts) do
    local want = FIELDS[k]
    if not want then error("tls.context: unknown option " .. tostring(k), 2) end
    if type(v) ~= want then
      error(("tls.context: %s must be a %s"):format(k, want), 2)
    end
  end
  return core.tls_context(opts)
end

local defaults = {}

--- The shared default client context: the system store, verifying
-- (`insecure = true`: one that does not verify; say so only on purpose).
-- @tparam[opt] boolean insecure
-- @return a client context, or `nil, err`
function M.client(insecure)
  local key = insecure and "insecure" or "verify"
  if not defaults[key] then
    local ctx, err = M.context{ mode = "client", verify = not insecure }
    if not ctx then return nil, err end
    defaults[key] = ctx
  end
  return defaults[key]
end

--- Makes a self-signed certificate and its key (ECDSA P-256).
-- @tparam[opt] table opts `cn` (`"localhost"`), `san` (names and addresses,
-- default `{"localhost", "127.0.0.1", "::1"}`), `days` (365; a negative
-- count makes one that expired that many days ago, for tests), `dir`
-- (where the files go; default a fresh private directory under /tmp)
-- @treturn string the certificate's path (`<dir>/<cn>.crt`)
-- @treturn string the key's path (`<dir>/<cn>.key`, mode 0600)
-- @return or `nil, err`
function M.selfsigned(opts)
  opts = opts or {}
  local cn = opts.cn or "localhost"
  local san = opts.san or { "localhost", "127.0.0.1", "::1" }
  local days = opts.days or 365
  if type(cn) ~= "string" or cn == "" then error("tls.selfsigned: cn must be a string", 2) end
  if type(san) ~= "table" then error("tls.selfsigned: san must be a table", 2) end
  if math.type(days) ~= "integer" or days == 0 then
    error("tls.selfsigned: days must be a non-zero integer", 2)
  end
  local dir = opts.dir
  if not dir then
    dir = os.tmpname()
    os.remove(dir)
    local ok, err = core.fs.mkdir(dir, 448)   -- 0700
    if not ok then return nil, err end
  end
  local parts = {}
  for i, name in ipairs(san) do
    if type(name) ~= "string" or name:find("[,%s]") then
      error("tls.selfsigned: bad san entry " .. tostring(name), 2)
    end
    local ip = name:match("^[%d.]+$") or name:find(":", 1, true)
    parts[i] = (ip and "IP:" or "DNS:") .. name
  end
  local base = dir .. "/" .. cn:gsub("[^%w.-]", "_")
  local cert, key = base .. ".crt", base .. ".key"
  local ok, err = core.tls_selfsigned(cn, table.concat(parts, ","), days, cert, key)
  if not ok then return nil, err end
  return cert, key
end

--- Reads a PEM certificate file.
-- @tparam string path
-- @return `{subject=, issuer=, not_before=, not_after=, days_left=, san={}}`
-- (times in seconds since the epoch), or `nil, err`
M.certinfo = core.tls_certinfo

--- Remembers the host a stream was connected to (parley.connect does
-- this), the name `starttls` checks when not told another.
-- @param s a stream
-- @tparam string host
function M.remember_host(s, host)
  hosts[s] = host
end

local stream = core.stream_methods

--- Starts TLS on an open stream (STARTTLS, STLS, AUTH TLS) and runs the
-- handshake under the stream's timeout. Queued output is flushed first;
-- bytes the peer already sent in cleartext make it fail with
-- `"data after starttls"` and nothing else happens (RFC 3207 §4.2).
-- A failed handshake closes the stream.
-- @param ctx a context from `tls.context`
-- @tparam[opt] table opts `servername` (client: SNI and the name to
-- check; default the context's, else the host connected to), `session`
-- (a TLS stream whose session to resume, or one from `s:tlssession()`),
-- `timeout` (seconds for the handshake; default the stream's), `tickets`
-- (server: TLS 1.3 session tickets sent after the handshake, default
-- OpenSSL's 2; 0 for a connection whose peer only writes and then closes,
-- like an FTP upload: unread tickets make its close a reset that can
-- destroy the end of what it sent)
-- @return `true`, or `nil, err` (`"certificate verify failed: ..."`,
-- `"timeout"`, `"tls: ..."`)
function stream:starttls(ctx, opts)
  if not is_context(ctx) then error("bad argument #1 to 'starttls' (tls context expected)", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("bad argument #2 to 'starttls' (table expected)", 2) end
  local ok, err = self:flush()
  if not ok then return nil, err end
  local name = opts.servername
  if name == nil and ctx:mode() == "client" and not ctx:servername() then
    name = hosts[self]
  end
  ok, err = self:tls_attach(ctx, name, opts.session, opts.tickets)
  if not ok then return nil, err end
  ok, err = self:handshake(opts.timeout)
  if not ok then
    self:close()
    return nil, err
  end
  return true
end

return M
