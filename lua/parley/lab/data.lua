--- parley.lab.data: the lab directory and what the servers serve from it.
--
--     DIR/users              the one passwd-file: strategos, for mail, FTP, Telnet
--     DIR/ftp/               anonymous FTP: coffee.txt, tea.txt, flag.txt
--     DIR/home/strategos/    strategos's own FTP root (read-write)
--     DIR/www/               index.html, logo.jpg
--     DIR/mail/strategos/    strategos's Maildir, three messages to start with
--     DIR/log/               http access log, FTP xferlog
--     DIR/tls/               localhost.crt and .key: the self-signed
--                            certificate of the TLS ports (`certificate`)
--
-- Each piece is written only when missing, so a kept lab directory keeps
-- its password, its mail and whatever was changed in it.
-- @module parley.lab.data
local fs = require("parley.core").fs
local message = require "parley.mail.message"
local maildir = require "parley.mail.maildir"
local users_mod = require "parley.mail.users"
local jpeg = require "parley.lab.jpeg"

local M = {}

--- The lab's user.
M.USER = "strategos"
--- The lab's mail domain (RFC 2606: reserved for examples).
M.DOMAIN = "lab.example"

local FILES = {
  ["ftp/coffee.txt"] = [[
Greek coffee, one cup
=====================
Put one heaped teaspoon of finely ground coffee, one teaspoon of sugar
("metrios", medium sweet) and one demitasse of cold water in a briki.
Stir once, then never again. Heat it slowly; take it off the moment
the foam (the kaimaki) rises to the rim. Pour, wait a minute for the
grounds to settle, and do not drink the last sip.
]],
  ["ftp/tea.txt"] = [[
Mountain tea (tsai tou vounou)
==============================
Sideritis grows on Greek mountains above a thousand metres. Simmer a
small bunch of dried stems and flowers in half a litre of water for
five minutes, let it stand for five more, strain, and add honey and a
slice of lemon. Shepherds drank it against the cold long before anyone
called it a herbal tea.
]],
  ["ftp/flag.txt"] = [[
FLAG{cleartext-is-a-postcard}

You fetched this over FTP: the file, the command that asked for it and
the password (had there been one) crossed the wire as plain text.
Anyone on the path reads them like a postcard. That is why the lab
listens on loopback only.
]],
  ["home/strategos/orders.txt"] = [[
To all hoplites: hold the pass at dawn. Bring coffee.
-- Strategos
]],
}

local INDEX = [[
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>parley lab</title>
<style>
body { font-family: sans-serif; max-width: 40em; margin: 2em auto; background: #faf4e3; color: #222; }
code { background: #fff; padding: 0 .2em; }
.c { color: #c82828; } .s { color: #1e46aa; }
</style>
</head>
<body>
<img src="logo.jpg" alt="parley" width="200" height="56">
<h1>Welcome to the parley lab</h1>
<p>This page came to you over HTTP/1.1 from parley's own server. Every
server in the lab speaks plain text: watch a dialogue with
<code>parley lab --tour</code>, where <span class="c">client lines are
red</span> and <span class="s">server lines are blue</span>.</p>
<p>Try it by hand:</p>
<pre>
telnet 127.0.0.1 8080
GET /index.html HTTP/1.1
Host: 127.0.0.1

</pre>
<p>Log in as <code>strategos</code> (the password is printed when the lab
starts) to the mail, FTP and Telnet servers.</p>
</body>
</html>
]]

-- "PARLEY" in a 3x5 font: client red, server blue, on cream
local LOGO = {
  ".........................",
  ".ccc.ccc.cc..s...sss.s.s.",
  ".c.c.c.c.c.c.s...s...s.s.",
  ".ccc.ccc.cc..s...ss...s..",
  ".c...c.c.c.c.s...s....s..",
  ".c...c.c.c.c.sss.sss..s..",
  ".........................",
}
local PALETTE = { ["."] = { 250, 244, 227 }, c = { 200, 40, 40 }, s = { 30, 70, 170 } }

local WORDS = {
  "hoplite", "phalanx", "trireme", "agora", "olive", "amphora", "laurel", "helot",
  "ephor", "stoa", "kylix", "aulos", "pnyx", "thetes", "obol", "drachma",
  "psiloi", "peltast", "hydria", "krater", "lyre", "sparta", "athena", "delos",
  "naxos", "argos", "corinth", "thebes", "megara", "chios", "samos", "rhodes",
}

--- A fresh password: three words and three digits (about 25 bits from
-- /dev/urandom: enough for a loopback lab, easy to type).
-- @treturn string
function M.password()
  local fh = assert(io.open("/dev/urandom", "rb"))
  local b = fh:read(5)
  fh:close()
  local w = {}
  for i = 1, 3 do w[i] = WORDS[b:byte(i) % #WORDS + 1] end
  return ("%s-%s-%s-%03d"):format(w[1], w[2], w[3], (b:byte(4) * 256 + b:byte(5)) % 1000)
end

local function exists(path)
  return fs.stat(path) ~= nil
end

local function mkdirs(path)
  local sofar = path:sub(1, 1) == "/" and "" or "."
  for part in path:gmatch("[^/]+") do
    sofar = sofar .. "/" .. part
    if not exists(sofar) then
      local ok, err = fs.mkdir(sofar, tonumber("755", 8))
      if not ok and not exists(sofar) then return nil, sofar .. ": " .. err end
    end
  end
  return true
end

local function write_new(path, data)
  if exists(path) then return true end
  local dir = path:match("^(.*)/[^/]*$")
  local ok, err = mkdirs(dir)
  if not ok then return nil, err end
  local fh
  fh, err = io.open(path, "wb")
  if not fh then return nil, err end
  fh:write(data)
  fh:close()
  return true
end

-- The first mail: a welcome, a ferry booking and one with an attachment.
local function seed_messages(now)
  local to = { name = "Strategos", address = M.USER .. "@" .. M.DOMAIN }
  local common = { to = to, host = M.DOMAIN }
  local list = {
    { from = "Xenophon <xenophon@lab.example>", subject = "Welcome to the lab",
      date = now - 7200, text = table.concat({
        "Strategos,",
        "",
        "this Maildir is served by parley's SMTP, POP3 and IMAP servers at once.",
        "Mail you send to strategos@lab.example on the SMTP port lands here, and",
        "POP3 and IMAP see it at the same moment.",
        "",
        "Xenophon",
      }, "\n") },
    { from = "Piraeus Ferries <bookings@ferries.example>", subject = "Your crossing to Naxos",
      date = now - 3600, text = table.concat({
        "Booking NX-4821: Piraeus -> Naxos, deck class, one passenger.",
        "Boarding closes 30 minutes before departure. Coffee is served on deck.",
      }, "\n") },
    { from = "Herodotus <herodotus@lab.example>", subject = "The map of the pass (attached)",
      date = now - 600, text = "The map is attached, as you asked. Keep it dry.\n\nHerodotus",
      attachments = { { filename = "pass.txt", content_type = "text/plain", data = table.concat({
        "        /\\        /\\",
        "   /\\  /  \\  /\\  /  \\     N",
        "  /  \\/    \\/  \\/    \\    ^",
        " ~~~~~~~~[ the pass ]~~~~~~~~",
        "   sea                 hoplites: XXXX",
        "",
      }, "\r\n") } } },
  }
  for _, m in ipairs(list) do
    for k, v in pairs(common) do m[k] = v end
  end
  return list
end

--- Creates whatever is missing of a lab directory.
-- @tparam string dir the lab directory (created when missing)
-- @return a table `{ dir =, users =, password =, ftp =, home =, www =,
-- mail =, log = }` (paths; `password` is nil when the users file holds a
-- hash), or nil, err
function M.prepare(dir)
  if type(dir) ~= "string" then error("dir must be a string", 2) end
  local ok, err = mkdirs(dir)
  if not ok then return nil, err end
  local d = {
    dir = dir, users = dir .. "/users", ftp = dir .. "/ftp", home = dir .. "/home",
    www = dir .. "/www", mail = dir .. "/mail", log = dir .. "/log",
  }
  if not exists(d.users) then
    ok, err = write_new(d.users, ("# the lab's users (Dovecot passwd-file), shared by mail, FTP and Telnet\n"
      .. "%s:{PLAIN}%s:1000:1000:Strategos:%s::ftp_perms=rwdmn\n"):format(M.USER, M.password(), M.USER))
    if not ok then return nil, err end
  end
  for name, text in pairs(FILES) do
    ok, err = write_new(dir .. "/" .. name, text)
    if not ok then return nil, err end
  end
  for _, piece in ipairs{ { "www/index.html", INDEX }, { "www/logo.jpg", jpeg.encode(LOGO, PALETTE) } } do
    ok, err = write_new(dir .. "/" .. piece[1], piece[2])
    if not ok then return nil, err end
  end
  ok, err = mkdirs(d.log)
  if not ok then return nil, err end
  local store
  store, err = maildir.open(d.mail)
  if not store then return nil, err end
  if not store:mailbox(M.USER):exists() then
    for _, m in ipairs(seed_messages(os.time())) do
      local raw = assert(message.build(m))
      ok, err = store:deliver(M.USER, raw)
      if not ok then return nil, err end
    end
  end
  local users
  users, err = users_mod.load(d.users)
  if not users then return nil, err end
  d.password = users:secret(M.USER)
  return d
end

--- Days a lab certificate is made for.
M.CERT_DAYS = 365

--- The lab's self-signed certificate, `DIR/tls/localhost.crt` and its
-- key (made by `parley.tls.selfsigned`, ECDSA P-256): kept while it is
-- valid for more than a day and names `host`, made again otherwise.
-- @tparam string dir the lab directory
-- @tparam string host the address the lab listens on
-- @return the certificate's path and the key's, or `nil, err`
function M.certificate(dir, host)
  if type(dir) ~= "string" or type(host) ~= "string" then error("certificate(dir, host) wants two strings", 2) end
  local tlsdir = dir .. "/tls"
  local ok, err = mkdirs(tlsdir)
  if not ok then return nil, err end
  local tls = require "parley.tls"
  local cert, key = tlsdir .. "/localhost.crt", tlsdir .. "/localhost.key"
  local info = exists(key) and tls.certinfo(cert)
  if info and info.days_left >= 1 then
    for _, name in ipairs(info.san or {}) do
      if name == host then return cert, key end
    end
  end
  local san = { "localhost", "127.0.0.1", "::1" }
  if host ~= "localhost" and host ~= "127.0.0.1" and host ~= "::1" then san[#san + 1] = host end
  return tls.selfsigned{ cn = "localhost", san = san, days = M.CERT_DAYS, dir = tlsdir }
end

return M
