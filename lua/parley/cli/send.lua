--- `parley send`: compose a message and send it by SMTP, printing every
-- step of the dialogue; exit status 0 when every recipient accepted it.
-- @module parley.cli.send
local cli = require "parley.cli"
local client = require "parley.smtp.client"

local M = {}

local HELP = [[
usage: parley send --server HOST:PORT --from A --to B [--to C] --subject S
         (--body TEXT | --body-file F) [--attach FILE] [--auth USER:PASS]
  --mech M        AUTH mechanism (PLAIN, LOGIN, CRAM-MD5, XOAUTH2)
  --helo NAME     name for EHLO (default localhost)
  --message-file F   send F as it is (a complete RFC 5322 message)
  --quiet         print only errors
Exit status: 0 sent to every recipient, 1 refused or failed, 2 usage.
]]

local SPEC = { server = "string", from = "string", to = "list", subject = "string",
  body = "string", body_file = "string", attach = "list", auth = "string", mech = "string",
  helo = "string", message_file = "string", quiet = "flag", help = "flag", timeout = "number" }

local function slurp(path)
  local f, err = io.open(path, "rb")
  if not f then error("cannot read " .. path .. ": " .. tostring(err), 0) end
  local s = f:read("a")
  f:close()
  return s
end

-- parley.mail.message when it has landed, else our own small builder
local function build(m)
  local ok, message = pcall(require, "parley.mail.message")
  if ok and type(message) == "table" and message.build then
    return message.build(m)
  end
  return require("parley.smtp.compose").build(m)
end

--- Runs the command; returns the exit status.
function M.main(argv)
  local o = cli.parse(argv, SPEC)
  if o.help then io.stdout:write(HELP) return 0 end
  local missing = (not o.server and "--server") or (not o.from and "--from") or (not o.to and "--to")
    or (not o.message_file and not o.subject and "--subject")
    or (not o.message_file and not o.body and not o.body_file and "--body or --body-file")
  if missing then
    io.stderr:write("parley send: ", missing, " is required\n", HELP)
    return 2
  end
  local msg
  if o.message_file then
    msg = slurp(o.message_file)
  else
    local atts = {}
    for _, path in ipairs(o.attach or {}) do
      local data = slurp(path)
      atts[#atts + 1] = { filename = path:match("([^/]+)$"), data = data, content = data }
    end
    msg = build{ from = o.from, to = o.to, subject = o.subject,
      text = o.body or slurp(o.body_file), attachments = atts }
  end
  local auth
  if o.auth then
    local u, p = o.auth:match("^([^:]*):(.*)$")
    if not u then io.stderr:write("parley send: --auth wants USER:PASS\n") return 2 end
    auth = { user = u, password = p, mech = o.mech }
  end
  local out = io.stdout
  local function trace(line)
    if o.quiet then return end
    if line:match("^C: AUTH ") then line = line:match("^(C: AUTH %S+)") .. " ****"
    elseif auth and line:match("^C: ") and not line:match("^C: [A-Z][A-Z]+") then line = "C: ****" end
    out:write(line, "\n")
  end
  local res, err, reply, partial = client.send{ server = o.server, from = o.from, to = o.to,
    message = msg, auth = auth, helo = o.helo, trace = trace,
    timeouts = o.timeout and { connect = o.timeout, greeting = o.timeout, command = o.timeout,
      data = o.timeout, block = o.timeout, final = o.timeout } }
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
