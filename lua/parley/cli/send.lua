--- `parley send`: compose a message and send it by SMTP, printing every
-- step of the dialogue; exit status 0 when every recipient accepted it.
-- @module parley.cli.send
local cli = require "parley.cli"
local tcli = require "parley.transcript.cli"
local client = require "parley.smtp.client"
local message = require "parley.mail.message"

local M = {}

local HELP = [[
usage: parley send --server HOST:PORT --from A --to B[,C] [--to D] --subject S
         (--body TEXT | --body-file F) [--attach FILE] [--auth USER:PASS]
  --mech M        AUTH mechanism (PLAIN, LOGIN, CRAM-MD5, XOAUTH2)
  --helo NAME     name for EHLO (default localhost)
  --message-file F   send F as it is (a complete RFC 5322 message)
  --quiet         print only errors
  --timeout S     seconds for the connection and for each reply
  --tls           STARTTLS (RFC 3207) before anything else, or fail
  --tls-implicit  TLS from the first byte (port 465, RFC 8314)
  --ca FILE       trust the issuers in FILE (PEM) instead of the system store
  --insecure      do not verify the server's certificate (says so on stderr)
Exit status: 0 sent to every recipient, 1 refused or failed, 2 usage.
]]

local SPEC = { server = "string", from = "string", to = "list", subject = "string",
  body = "string", body_file = "string", attach = "list", auth = "string", mech = "string",
  helo = "string", message_file = "string", quiet = "flag", help = "flag", timeout = "number",
  tls = "flag", tls_implicit = "flag", ca = "string", insecure = "flag" }

-- io.open's message names the file already ("F: No such file ...")
local function readable(path)
  local f, err = io.open(path, "rb")
  if not f then error("cannot read " .. tostring(err), 0) end
  return f
end

local function slurp(path)
  local f = readable(path)
  local s, err = f:read("a")
  f:close()
  if not s then error("cannot read " .. path .. ": " .. tostring(err), 0) end
  return s
end

-- The message as a file handle, for client.send: it streams it and
-- announces its exact size (RFC 1870 SIZE), so a server can refuse a
-- message too large before any of it is sent. parley.mail.message.source
-- encodes attachments 57 KiB at a time, read from their files; the
-- result is spooled to an anonymous temporary file, never held whole.
local function compose(o)
  local atts = {}
  for i, path in ipairs(o.attach or {}) do
    readable(path):close()
    atts[i] = { path = path }
  end
  -- a bad address raises (a wrong argument to the library): say which
  local ok, src, err = pcall(message.source, { from = o.from, to = o.to, subject = o.subject,
    text = o.body or slurp(o.body_file), attachments = atts })
  if not ok then err = tostring(src):gsub("^[^\n]-%.lua:%d+: ", "") src = nil end
  if not src then error("cannot build the message: " .. tostring(err), 0) end
  local spool = assert(io.tmpfile())
  while true do
    local chunk, serr = src()
    if not chunk then
      if serr then spool:close() error("cannot build the message: " .. tostring(serr), 0) end
      break
    end
    local wrote, werr = spool:write(chunk)
    if not wrote then spool:close() error("cannot spool the message: " .. tostring(werr), 0) end
  end
  return spool
end

--- Runs the command; returns the exit status.
-- --to a,b as swaks takes it: split at commas, white space around them
-- dropped; a value with a quote (a quoted local part may hold a comma)
-- is taken whole
local function split_recipients(list)
  local out = {}
  for _, v in ipairs(list) do
    if v:find('"', 1, true) then
      out[#out + 1] = v
    else
      for a in v:gmatch("[^,]+") do
        a = a:match("^%s*(.-)%s*$")
        if a ~= "" then out[#out + 1] = a end
      end
    end
  end
  return #out > 0 and out or nil
end

function M.main(argv)
  local rest, tr = tcli.take(argv)
  local o = cli.parse(rest, SPEC)
  if o.help then io.stdout:write(HELP, tcli.HELP) return 0 end
  if o.to then o.to = split_recipients(o.to) end
  local missing = (not o.server and "--server") or (not o.from and "--from") or (not o.to and "--to")
    or (not o.message_file and not o.subject and "--subject")
    or (not o.message_file and not o.body and not o.body_file and "--body or --body-file")
  if missing then
    io.stderr:write("parley send: ", missing, " is required (parley send --help)\n")
    return 2
  end
  if o.tls and o.tls_implicit then
    io.stderr:write("parley send: --tls and --tls-implicit exclude each other\n")
    return 2
  end
  local tls = o.tls_implicit and "implicit" or o.tls and "required" or nil
  if (o.ca or o.insecure) and not tls then
    io.stderr:write("parley send: --ca and --insecure need --tls or --tls-implicit\n")
    return 2
  end
  if o.insecure then
    io.stderr:write("parley send: warning: --insecure: the server's certificate is not verified\n")
  end
  local msg
  if o.message_file then
    msg = readable(o.message_file)
  else
    msg = compose(o)
  end
  local auth
  if o.auth then
    local u, p = o.auth:match("^([^:]*):(.*)$")
    if not u then msg:close() io.stderr:write("parley send: --auth wants USER:PASS\n") return 2 end
    auth = { user = u, password = p, mech = o.mech }
  end
  local out = io.stdout
  local function trace(line)
    if o.quiet then return end
    if line:match("^C: AUTH ") then line = line:match("^(C: AUTH %S+)") .. " ****"
    elseif auth and line:match("^C: ") and not line:match("^C: [A-Z][A-Z]+") then line = "C: ****" end
    out:write(line, "\n")
  end
  local res, err, _, partial = client.send{ server = o.server, from = o.from, to = o.to,
    message = msg, auth = auth, helo = o.helo, trace = trace,
    tls = tls, ca = o.ca, insecure = o.insecure,
    transcript = tr.transcript, transcript_full = tr.transcript_full, transcript_secrets = tr.transcript_secrets,
    timeouts = o.timeout and { connect = o.timeout, greeting = o.timeout, command = o.timeout,
      data = o.timeout, block = o.timeout, final = o.timeout } }
  msg:close()
  local r = res or partial
  if r and r.rejected then
    for addr, rr in pairs(r.rejected) do
      io.stderr:write("parley send: refused <", addr, ">: ", client.reply_string(rr), "\n")
    end
  end
  if not res then
    io.stderr:write("parley send: ", tostring(err), "\n")
    return 1
  end
  if next(res.rejected) then return 1 end
  if not o.quiet then out:write("sent to ", #res.accepted, " recipient(s)\n") end
  return 0
end

return M
