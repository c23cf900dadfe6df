--- TLS pieces the mail protocols share (SMTP STARTTLS, RFC 3207; POP3
-- STLS, RFC 2595 4; implicit TLS, RFC 8314): the client's policy and
-- context, the upgrade of a stream with its transcript event, and the
-- servers' rule for cleartext passwords.
--
--     local starttls = require "parley.smtp.starttls"
--     local policy = starttls.policy(opts.tls)        -- "starttls", ...
--     local ctx = assert(starttls.client_context(opts))
--     local info, err = starttls.upgrade(conn, ctx, { servername = host })
-- @module parley.smtp.starttls
local parley = require "parley"
local transcript = require "parley.transcript"

local M = {}

local POLICIES = { starttls = true, required = true, implicit = true }

--- A client's `tls` option, checked: `"starttls"` (upgrade when the
-- server offers it, else go on in cleartext), `"required"` (upgrade or
-- fail: a missing or stripped capability is an error), `"implicit"` (TLS
-- from the first byte), or `false`/nil (cleartext). `true` means
-- `"required"`.
-- @param v the option
-- @treturn ?string the policy, or nil for cleartext
function M.policy(v)
  if v == nil or v == false then return nil end
  if v == true then return "required" end
  if not POLICIES[v] then
    error('tls must be "starttls", "required", "implicit" or false', 3)
  end
  return v
end

--- The client context for a client's options: `tls_ctx` as it is, else
-- one trusting `ca` (a PEM file or hashed directory), else the shared
-- default (the system store; `insecure = true`: not verifying).
-- @tparam table opts
-- @return a client context, or `nil, err`
function M.client_context(opts)
  local tls = parley.tls
  if opts.tls_ctx ~= nil then
    if not (tls.is_context(opts.tls_ctx) and opts.tls_ctx:mode() == "client") then
      error("tls_ctx must be a client tls context", 3)
    end
    return opts.tls_ctx
  end
  if opts.ca ~= nil then
    if type(opts.ca) ~= "string" then error("ca must be a file or directory name", 3) end
    return tls.context{ mode = "client", ca = opts.ca, verify = not opts.insecure }
  end
  return tls.client(opts.insecure and true or false)
end

--- The context a client's STARTTLS/STLS uses: the one `connect` made
-- (`current`), unless the call's `opts` ask for another (`tls_ctx`, `ca`
-- or `insecure`).
-- @param current the client's context, or nil
-- @tparam table opts the call's options
-- @return a client context, or nil, err
function M.context_for(current, opts)
  if current and opts.tls_ctx == nil and opts.ca == nil and opts.insecure == nil then
    return current
  end
  return M.client_context(opts)
end

--- Turns a stream into TLS after the protocol's go-ahead, and records
-- `TLS started (<version>, <cipher>)` on its transcript if it has one.
-- (`TLS failed: <err>` when it fails). Queued output is flushed first.
-- Fails with `"data after starttls"`
-- when the peer already sent bytes past the command or its go-ahead
-- (RFC 3207 4.2, CVE-2011-0411): the caller closes the session.
-- @param conn a stream (or a transcript wrapper)
-- @param ctx a parley.tls context (client or server)
-- @tparam[opt] table opts passed to `stream:starttls` (`servername`, `timeout`)
-- @return the stream's `tlsinfo()`, or `nil, err`
function M.upgrade(conn, ctx, opts)
  local ok, err = conn:flush()
  if not ok then return nil, err end
  ok, err = conn:starttls(ctx, opts)
  if not ok then
    local rec, id = transcript.recorder_of(conn)
    if rec then rec:event(id, "TLS failed: " .. tostring(err)) end
    return nil, err
  end
  local info = conn:tlsinfo()
  M.record(conn, info)
  return info
end

--- Records `TLS started (<version>, <cipher>)` on a stream's transcript
-- (nothing when it has none).
-- @param conn a stream
-- @tparam[opt] table info its `tlsinfo()`
function M.record(conn, info)
  local rec, id = transcript.recorder_of(conn)
  info = info or conn:tlsinfo()
  if rec and info then
    rec:event(id, ("TLS started (%s, %s)"):format(info.version, info.cipher))
  end
end

local function is_loopback(ip)
  return ip == "::1" or ip:match("^127%.") ~= nil or ip:match("^::ffff:127%.") ~= nil
end
M.is_loopback = is_loopback

--- A server's `allow_plaintext_auth` option, checked: `true` (always),
-- `false` (only over TLS) or `"loopback"` (the default: over TLS, or in
-- cleartext from a loopback peer).
-- @param v the option
-- @return the policy
function M.plaintext_policy(v)
  if v == nil then return "loopback" end
  if v ~= true and v ~= false and v ~= "loopback" then
    error('allow_plaintext_auth must be true, false or "loopback"', 3)
  end
  return v
end

--- Whether a session may send a password: over TLS always; in
-- cleartext as the policy says.
-- @param policy what `plaintext_policy` returned (nil: `"loopback"`)
-- @tparam string ip the peer's address
-- @tparam boolean secure the session runs over TLS
-- @treturn boolean
function M.plaintext_allowed(policy, ip, secure)
  if secure or policy == true then return true end
  return policy ~= false and is_loopback(ip)
end

--- Help lines for the server TLS options of `parley serve smtp|pop3`.
M.SERVER_HELP = [[
  --tls-cert FILE  --tls-key FILE   PEM certificate and key: STARTTLS/STLS
                           offered on the plain port
  --listen-tls ADDR        also listen with implicit TLS (465/995 form)
  --allow-plaintext-auth   accept passwords in cleartext from any client
                           (default: over TLS, or in cleartext from loopback)
]]

--- The parley.cli spec entries of the server TLS options.
M.SERVER_SPEC = { tls_cert = "string", tls_key = "string", listen_tls = "string",
  allow_plaintext_auth = "flag" }

--- Copies parsed server TLS options into a server's options.
-- @tparam table o parsed options (`tls_cert`, `tls_key`, `listen_tls`,
-- `allow_plaintext_auth`)
-- @tparam table into the server's options
-- @return into, or `nil, err` for an incomplete set
function M.server_options(o, into)
  if (o.tls_cert == nil) ~= (o.tls_key == nil) then
    return nil, "--tls-cert and --tls-key go together"
  end
  if o.listen_tls and not o.tls_cert then return nil, "--listen-tls needs --tls-cert and --tls-key" end
  if o.tls_cert then into.tls = { cert = o.tls_cert, key = o.tls_key } end
  into.listen_tls = o.listen_tls
  if o.allow_plaintext_auth then into.allow_plaintext_auth = true end
  return into
end

return M
