--- parley.check.ftp: `ftp://[user:password@]host[:port][/path]`
-- (`ftps://`: implicit TLS, port 990).
--
-- Logs in (after AUTH TLS, PBSZ 0 and PROT P with `tls`: listings and
-- downloads then go over TLS too; anonymous without a user), switches to TYPE I, then looks at
-- the path, relative to the login directory as in RFC 1738 3.2.2:
-- nothing or a trailing "/" lists that directory (perfdata `entries=N`);
-- otherwise SIZE and MDTM describe the file (perfdata `size=NB`), and a
-- path SIZE refuses but CWD accepts is listed as a directory.
-- `download` fetches the file (perfdata `download=Xs`, throughput in the
-- summary); `sha256` (hex, implies `download`) and `size` (bytes) are
-- compared with what came: a mismatch is CRITICAL.
-- @module parley.check.ftp
local parley = require "parley"
local client = require "parley.ftp.client"

local M = { LABEL = "FTP", PORT = 21, TLS_PORT = 990, STARTTLS = true }

--- The options this check takes (besides timeout, warning, critical, verbose).
M.OPTIONS = { download = true, sha256 = true, size = true }

--- Refuses options that cannot work (UNKNOWN before connecting).
function M.validate(u, opts)
  if opts.sha256 ~= nil and not (type(opts.sha256) == "string" and opts.sha256:match("^%x+$")
      and #opts.sha256 == 64) then
    return "sha256 must be 64 hex digits"
  end
  if opts.size ~= nil and (math.type(opts.size) ~= "integer" or opts.size < 0) then
    return "size must be a non-negative integer"
  end
  if opts.sha256 and not pcall(require, "openssl.digest") then
    return "--sha256 needs openssl.digest (Debian: lua-luaossl)"
  end
  local path = u.path:gsub("^/", "")
  if (opts.download or opts.sha256 or opts.size) and (path == "" or path:sub(-1) == "/") then
    return "--download, --sha256 and --size need a file in the URL"
  end
end

local function hex(s)
  return (s:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end))
end

-- the sink for a download: counts bytes and, when asked, hashes them
local function sink_for(want_sha)
  local st = { bytes = 0 }
  local digest = want_sha and require("openssl.digest").new("sha256")
  st.sink = function(chunk)
    if chunk then
      st.bytes = st.bytes + #chunk
      if digest then digest:update(chunk) end
    elseif digest and not st.sha256 then   -- the end may be told twice
      st.sha256 = hex(digest:final())
    end
    return 1
  end
  return st
end

-- a directory (listed here, or the current one when `path` is nil, with
-- its `name` for the summary): state, summary
local function directory(ctx, c, path, name, summary)
  ctx:phase("list")
  local entries, err = c:list(path)
  if not entries then return ctx:critical(err) end
  ctx:perf("entries", #entries, nil, { min = 0 })
  return "OK", ("%s; %d entries in %s"):format(summary, #entries, name == "" and "." or name)
end

-- a file: SIZE, MDTM, the download and the comparisons; state, summary
local function file(ctx, c, path, size, summary)
  local o = ctx.opts
  ctx:phase("mdtm")
  local mtime = c:mdtm(path)
  summary = ("%s; %s %d bytes%s"):format(summary, path, size,
    mtime and os.date("!, modified %Y-%m-%d %H:%M:%S UTC", mtime) or "")
  local got, sha = size, nil
  if o.download or o.sha256 then
    ctx:phase("download")
    local st, t0 = sink_for(o.sha256), parley.now()
    local n, err = c:get(path, st.sink)
    if not n then return ctx:critical(err) end
    st.sink(nil)
    local secs = parley.now() - t0
    got, sha = st.bytes, st.sha256
    ctx:perf("download", secs, "s", { min = 0 })
    summary = ("%s; downloaded %d bytes in %.3f s (%.0f KiB/s)"):format(summary, got, secs,
      got / 1024 / math.max(secs, 1e-6))
  end
  ctx:perf("size", got, "B", { min = 0 })
  if o.size and got ~= o.size then
    return "CRITICAL", ("%s; size %d, expected %d"):format(summary, got, o.size)
  end
  if o.sha256 and sha ~= o.sha256:lower() then
    return "CRITICAL", ("%s; SHA-256 %s, expected %s"):format(summary, sha, o.sha256:lower())
  end
  return "OK", summary .. (sha and "; SHA-256 matches" or "")
end

--- Runs the check (see the module description) in `ctx`, the context
-- `parley.check` gives: `ctx.url`, `ctx.opts`, `ctx:phase`, `ctx:perf`.
-- @return state, summary
function M.check(ctx)
  local u = ctx.url
  ctx:phase("connect")
  local left = ctx:left()
  local o = ctx:tls_options(u)
  o.timeout, o.connect_timeout, o.transcript = left, left, ctx.transcript
  local c, err = client.connect(u.host, u.port, o)
  if not c then return ctx:critical(err) end
  ctx:own(c.conn)
  ctx:tls_seen(c)
  local summary = ("%s %s"):format(u.address, c.greeting.text:match("^[^\n]*"))
  ctx:phase("login")
  local ok
  ok, err = c:login(u.user, u.password)
  if not ok then c:close() return ctx:critical(err) end
  ctx:phase("type")
  ok, err = c:binary()
  if not ok then c:close() return ctx:critical(err) end
  local path = u.path:gsub("^/", "")
  local state
  if path == "" or path:sub(-1) == "/" then
    state, summary = directory(ctx, c, path ~= "" and path or nil, path, summary)
  else
    ctx:phase("size")
    local size, serr = c:size(path)
    if size then
      state, summary = file(ctx, c, path, size, summary)
    else
      ctx:phase("cwd")
      if not c:cwd(path) then
        c:close()
        ctx:phase("size")   -- neither a file nor a directory: SIZE said why
        return ctx:critical(serr)
      end
      state, summary = directory(ctx, c, nil, path, summary)
    end
  end
  ctx:phase("quit")
  c:quit()
  return state, summary
end

return M
