--- `parley check`: a Monitoring Plugins compatible check of one service
-- (or of the mail round trip): one status line on stdout, exit status 0
-- OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (bad usage included).
-- @module parley.cli.check
local cli = require "parley.cli"
local check = require "parley.check"

local M = {}

local HELP = [[
usage: parley check URL [options]
       parley check --roundtrip --smtp URL (--imap URL | --pop3 URL) [options]
URLs: smtp://[user:pass@]host[:port]  pop3://user:pass@host[:port]
      imap://user:pass@host[:port][/MAILBOX]  ftp://[user:pass@]host[:port][/path]
      http://host[:port][/path]  telnet://host[:port]
      implicit TLS: smtps:// submissions:// (465)  pop3s:// (995)  imaps:// (993)
                    ftps:// (990)  https:// (443)
  -w, --warning S      WARNING when the check takes more than S seconds
  -c, --critical S     CRITICAL when it takes more than S seconds
  -t, --timeout S      CRITICAL "timeout after S s in <phase>" (default 10)
  -v, --verbose        the dialogue on stderr
 smtp:   --expect-cap CAP (repeatable)  --helo NAME
         --from A --to B [--to C] [--subject S]   send a test message (250 or CRITICAL)
 pop3, imap: --subject TEXT [--wait S]   a message whose Subject holds TEXT
         must be there, or arrive within S seconds (-t counts on top of S)
         --min-messages N  --max-messages N   CRITICAL outside
 ftp:    --download  --sha256 HEX  --size BYTES   CRITICAL on a mismatch
 http:   --status 200[,301]   the codes that are OK (default 2xx, 3xx OK,
         4xx WARNING, 5xx CRITICAL)   --expect TEXT   in the body
 telnet: --expect TEXT   in the first output
 --roundtrip: send a message with a unique Subject by --smtp and time how
         long until --imap (IDLE) or --pop3 (polling) sees it; -w/-c apply
         to that time; --to/--from (default the receiving user@localhost);
         the message is deleted once seen (--delete, the default) unless --keep
 TLS:    --tls            STARTTLS (smtp, imap), STLS (pop3), AUTH TLS (ftp): a server
                          without it is CRITICAL, never a cleartext fallback
         --tls-implicit   TLS from the first byte (as the TLS URL schemes)
         --ca FILE        trust the issuers in FILE (PEM) instead of the system store
         --insecure       do not verify the certificate (says so on stderr)
         -D, --cert-days WARN,CRIT   WARNING / CRITICAL when the certificate
                          has fewer days left (perfdata cert_days); an expired
                          or unverifiable certificate is CRITICAL
Exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
]]

local SPEC = {
  warning = "string", critical = "string", timeout = "string", verbose = "flag", help = "flag",
  expect_cap = "list", helo = "string", from = "string", to = "list", subject = "string",
  wait = "string", min_messages = "string", max_messages = "string",
  download = "flag", sha256 = "string", size = "string", status = "list", expect = "string",
  roundtrip = "flag", smtp = "string", imap = "string", pop3 = "string", delete = "flag", keep = "flag",
  tls = "flag", tls_implicit = "flag", insecure = "flag", ca = "string", cert_days = "string",
}

-- short options of the Monitoring Plugins guidelines
local SHORT = { ["-w"] = "--warning", ["-c"] = "--critical", ["-t"] = "--timeout",
  ["-v"] = "--verbose", ["-h"] = "--help", ["-D"] = "--cert-days" }

local function usage_error(msg)
  error({ usage = msg }, 0)
end

local function number(o, key, integer)
  local v = o[key]
  if v == nil then return nil end
  local n = tonumber(v)
  if not n or n < 0 or (integer and math.type(n) ~= "integer") then
    usage_error(("--%s needs a%s number, not %q"):format(key:gsub("_", "-"),
      integer and " whole" or "", v))
  end
  return n
end

-- argv -> url (or nil for --roundtrip), options for parley.check
local function options(argv)
  local args = {}
  for i, a in ipairs(argv) do args[i] = SHORT[a] or a end
  local ok, o = pcall(cli.parse, args, SPEC)
  if not ok then usage_error(o) end
  if o.help then return nil, nil, true end
  local opts = {
    timeout = number(o, "timeout"), wait = number(o, "wait"),
    min_messages = number(o, "min_messages", true), max_messages = number(o, "max_messages", true),
    size = number(o, "size", true), verbose = o.verbose, helo = o.helo, from = o.from,
    subject = o.subject, download = o.download, sha256 = o.sha256, expect = o.expect,
    expect_cap = o.expect_cap, tls = o.tls, tls_implicit = o.tls_implicit, insecure = o.insecure,
    ca = o.ca,
  }
  for _, k in ipairs { "warning", "critical" } do
    if o[k] then
      local plugin = require "parley.check.plugin"
      local n, err = plugin.threshold(o[k])
      if not n then usage_error(err) end
      opts[k] = n
    end
  end
  if o.cert_days then
    local w, c = o.cert_days:match("^(%d+),(%d+)$")
    if not w then usage_error("-D needs WARN,CRIT (days)") end
    opts.cert_days = { tonumber(w), tonumber(c) }
  end
  if o.status then
    opts.status = {}
    for _, s in ipairs(o.status) do
      for code in s:gmatch("[^,]+") do
        local n = math.tointeger(tonumber(code))
        if not n then usage_error(("--status needs codes such as 200,301, not %q"):format(s)) end
        opts.status[#opts.status + 1] = n
      end
    end
  end
  if o.roundtrip then
    if #o > 0 then usage_error("--roundtrip takes no URL (use --smtp and --imap or --pop3)") end
    if o.delete and o.keep then usage_error("--delete and --keep exclude each other") end
    if o.to and #o.to > 1 then usage_error("--roundtrip sends to one --to") end
    opts.smtp, opts.imap, opts.pop3 = o.smtp, o.imap, o.pop3
    opts.to, opts.delete = o.to and o.to[1], not o.keep
    return nil, opts
  end
  if #o ~= 1 then usage_error(#o == 0 and "a URL is needed" or "one URL at a time") end
  opts.to = o.to
  return o[1], opts
end

local function unknown(msg)
  io.stdout:write("CHECK UNKNOWN - ", msg, "\n")
  return 3
end

--- Runs the command; returns the exit status (0..3).
function M.main(argv)
  local ok, url, opts, help = pcall(options, argv)
  if not ok then
    if type(url) == "table" and url.usage then
      io.stderr:write("usage: parley check URL [options]  (parley check --help)\n")
      return unknown(url.usage)
    end
    return unknown("internal error: " .. tostring(url))
  end
  if help then io.stdout:write(HELP) return 0 end
  if opts.insecure then
    io.stderr:write("parley check: warning: --insecure: the server's certificate is not verified\n")
  end
  local rok, r = pcall(function()
    if url then return check.run(url, opts) end
    return check.roundtrip(opts)
  end)
  if not rok then return unknown("internal error: " .. tostring(r)) end
  if opts.verbose and r.error then io.stderr:write(r.error, "\n") end
  io.stdout:write(r.line, "\n")
  return r.status
end

return M
