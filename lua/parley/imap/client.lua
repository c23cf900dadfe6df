--- IMAP client (RFC 3501 IMAP4rev1, with IDLE, UIDPLUS, MOVE, LITERAL+,
-- NAMESPACE, ENABLE, ID, UNSELECT, SASL-IR when the server has them;
-- STARTTLS, RFC 3501 §6.2.1 and RFC 2595; IMAPS, RFC 8314).
--
--     local client = require "parley.imap.client"
--     local c = assert(client.connect("127.0.0.1:1143", { timeout = 10 }))
--     assert(c:login("alice", "secret"))
--     local box = assert(c:select("INBOX"))          -- box.exists, box.uidvalidity ...
--     for _, m in ipairs(assert(c:fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER])"))) do
--       print(m.seq, m.UID, m["BODY[HEADER]"])
--     end
--     local uids = c:uid_search("UNSEEN", "SUBJECT", "hello")
--     c:idle(function(r) print(r.type, r.number) return r.type == "EXISTS" end, 60)
--     c:logout()
--
--     -- over TLS: STARTTLS or fail; the certificate checked against the
--     -- system store (or `ca`, `tls_ctx`; `insecure = true` skips it)
--     local c = assert(client.connect("mail.example.org:143", { tls = "required" }))
--
-- Results are Lua tables from the response parser of `parley.core.imap`
-- (FETCH items keyed by their upper-cased names, ENVELOPE and
-- BODYSTRUCTURE as trees; NIL is false). Mailbox names are UTF-8 for the
-- caller and modified UTF-7 on the wire, both ways.
--
-- Errors: I/O failures return `nil, err`; a NO or BAD returns
-- `nil, text, reply` where `reply` is the tagged response ({type=, text=,
-- code=, code_data=}) and `reply.untagged` what came before it. CR, LF or
-- NUL in an argument that is not a literal raises before anything is sent;
-- wrong argument types raise.
-- @module parley.imap.client
local parley = require "parley"
local core = require "parley.core"
local starttls = require "parley.smtp.starttls"

local imap = core.imap

local M = {}

--- Defaults.
M.DEFAULTS = { timeout = 60, max_line = 8 * 1048576 }

local client = {}
client.__index = client
client.__name = "parley.imap.client"
M.client = client

local QOPT = { atom = false }

local upgrade   -- connect's STARTTLS policy, below

local function check(s, what, level)
  if type(s) ~= "string" then error(what .. " must be a string", level + 1) end
  if s:find("[\r\n%z]") then error(what .. " must not hold CR, LF or NUL", level + 1) end
  return s
end

-- Argument encoders: each returns a piece for `command`.
--- An atom sent as is (flags, sequence sets, search keys, item lists).
function M.atom(s) return { atom = check(s, "atom", 2) } end
--- A string sent as a quoted string, or a literal when it must be.
function M.string(s)
  if type(s) ~= "string" then error("string expected", 2) end
  return { str = s }
end
--- A literal (any bytes); `src` may be a string or an ltn12 source with `size`.
function M.literal(s, size)
  if type(s) == "string" then return { lit = s, size = #s } end
  if type(s) == "function" then
    if math.type(size) ~= "integer" then error("a source literal needs its size", 2) end
    return { lit = s, size = size }
  end
  error("literal must be a string or a source function", 2)
end

--- Connects and reads the greeting; with `tls = "starttls"` or
-- `"required"` upgrades the session (see `client:starttls`).
-- @tparam string address "host:port" (without a port: 143, or 993 with
-- `tls = "implicit"`)
-- @tparam[opt] table opts `timeout` (seconds per I/O call, 60),
-- `max_line`, `literal_plus` (use LITERAL+ when offered, default true),
-- `transcript` (a parley.transcript recorder or target; with
-- `transcript_full`, `transcript_secrets`), `tls` (`"starttls"`:
-- STARTTLS when the server lists it, else cleartext; `"required"` (or
-- `true`): STARTTLS or fail, so a stripped capability, a refused
-- STARTTLS or a PREAUTH greeting in cleartext ends the session;
-- `"implicit"`: IMAPS, TLS from the first byte; default cleartext),
-- `tls_ctx` (a client context: client certificate, own trust), `ca` (PEM
-- file or directory of trusted issuers), `insecure` (true: do not verify
-- the certificate — anyone in the path can then read the session; never
-- the default), `servername` (the name checked and sent as SNI; default
-- the host)
-- @return client, or nil, err (nil, text, reply for a BYE greeting or a
-- refused STARTTLS with `tls = "required"`)
function M.connect(address, opts)
  check(address, "address", 2)
  opts = opts or {}
  local policy = starttls.policy(opts.tls)
  if opts.servername ~= nil then check(opts.servername, "servername", 2) end
  local ctx, err
  if policy then
    ctx, err = starttls.client_context(opts)
    if not ctx then return nil, err end
  end
  if not address:find(":%d+$") then address = address .. (policy == "implicit" and ":993" or ":143") end
  local conn
  conn, err = parley.connect(address, { timeout = opts.timeout or M.DEFAULTS.timeout,
    tls = policy == "implicit" and ctx or nil, servername = opts.servername })
  conn, err = require("parley.transcript").attach(conn, opts, "imap", "client", err)
  if not conn then return nil, err end
  if policy == "implicit" then starttls.record(conn) end
  conn:setoption("max-line", (opts.max_line or M.DEFAULTS.max_line) + 2)
  local self = setmetatable({ conn = conn, opts = opts, n = 0, tls_ctx = ctx,
    parser = imap.response_parser{ max_line = opts.max_line or M.DEFAULTS.max_line },
    caps = {}, timeout = opts.timeout or M.DEFAULTS.timeout }, client)
  local g, gerr = self:read()
  if not g then conn:close(); return nil, gerr end
  self.greeting = g
  if g.type == "BYE" then conn:close(); return nil, g.text, g end
  if g.code == "CAPABILITY" then self:_caps(g.code_data) end
  self.state = g.type == "PREAUTH" and "auth" or "notauth"
  if policy == "starttls" or policy == "required" then
    local ok, e, r = upgrade(self, policy)
    if not ok then return nil, e, r end
  end
  return self
end

--- STARTTLS (RFC 3501 §6.2.1): the tagged OK, the handshake (the
-- certificate checked as `connect` was told), then CAPABILITY again:
-- what the server said in cleartext is forgotten. A server that sends
-- bytes after its OK before the handshake is refused (`"data after
-- starttls"`) and the connection closed.
-- @tparam[opt] table opts `tls_ctx`, `ca`, `insecure`, `servername` (as
-- for `connect`; default what `connect` was given)
-- @return the new capabilities (as `capability`), or nil, text, reply (a
-- NO or BAD: the session stays in cleartext), or nil, err (any other
-- failure closes the connection)
function client:starttls(opts)
  opts = opts or {}
  if self.conn:tlsinfo() then return nil, "tls already active" end
  local ctx, cerr = starttls.context_for(self.tls_ctx, opts)
  if not ctx then return nil, cerr end
  local u, text, reply = self:command("STARTTLS")
  if not u then
    if not reply then self.conn:close() end
    return nil, text, reply
  end
  local info, err = starttls.upgrade(self.conn, ctx,
    { servername = opts.servername or self.opts.servername })
  if not info then
    self.conn:close()
    return nil, err
  end
  self.caps = {}
  return self:capability()
end

-- connect's STARTTLS policy: STARTTLS when listed (asking CAPABILITY when
-- the greeting did not say), else cleartext or failure as `policy` says
upgrade = function(self, policy)
  if self.state ~= "notauth" then
    -- PREAUTH: STARTTLS is a not-authenticated command, too late now
    if policy == "starttls" then return true end
    self.conn:close()
    return nil, "PREAUTH greeting on a cleartext connection"
  end
  if not self.caps.IMAP4REV1 then
    local caps, err, rep = self:capability()
    if not caps and not rep then self.conn:close() return nil, err end
  end
  if not self.caps.STARTTLS then
    if policy == "starttls" then return true end
    self:logout()
    return nil, "server does not offer STARTTLS"
  end
  local ok, err, rep = self:starttls()
  if ok then return true end
  if rep and policy == "starttls" then return true end
  self.conn:close()
  return nil, err, rep
end

--- The TLS state of the connection: the stream's `tlsinfo()` (`version`,
-- `cipher`, `verified`, `peer` ...), or nil in cleartext.
function client:tlsinfo()
  return self.conn:tlsinfo()
end

function client:_caps(list)
  self.caps = {}
  for _, c in ipairs(list or {}) do self.caps[tostring(c):upper()] = true end
end

--- Whether the server announced a capability (upper case name).
function client:has(cap)
  return self.caps[cap:upper()] == true
end

--- Reads one response (with its literals).
-- @return response table, or nil, err
function client:read()
  local conn, p = self.conn, self.parser
  local line, err = conn:receive("l")
  while true do
    if not line then return nil, err end
    local r, a, b = p:feed_line(line)
    if r == "done" then return a end
    if r == nil then p:reset(); return nil, "bad response: " .. tostring(a) end
    local data
    data, err = conn:receive(a)
    if not data then return nil, err end
    r, a = p:feed_literal(data)
    if not r then p:reset(); return nil, "bad response: " .. tostring(a) end
    line, err = conn:receive("l")
    if not line and b then return nil, err end
  end
end

-- Untagged responses that update what the client knows.
function client:_untagged(r)
  if r.type == "CAPABILITY" then self:_caps(r.list)
  elseif r.code == "CAPABILITY" then self:_caps(r.code_data) end
  if self.on_untagged then self.on_untagged(r) end
end

-- Sends the pieces of a command; waits for "+" before each synchronising
-- literal. Returns true, or nil, err[, reply].
function client:_send(tag, pieces)
  local conn = self.conn
  local plus = self:has("LITERAL+") and self.opts.literal_plus ~= false
  local buf = { tag }
  local pending_untagged = {}
  local function flush_wait()
    conn:send(table.concat(buf))
    buf = {}
    local ok, err = conn:flush()
    if not ok then return nil, err end
    while true do
      local r, rerr = self:read()
      if not r then return nil, rerr end
      if r.tag == "+" then return true end
      if r.tag == tag then return nil, r.text, r end
      self:_untagged(r)
      pending_untagged[#pending_untagged + 1] = r
    end
  end
  for _, p in ipairs(pieces) do
    buf[#buf + 1] = " "
    if type(p) == "string" then
      buf[#buf + 1] = p
    elseif p.atom then
      buf[#buf + 1] = p.atom
    elseif p.list then
      buf[#buf + 1] = p.list
    elseif p.str then
      local text, lit = imap.quote(p.str, { atom = false, nonsync = plus, utf8 = true })
      if lit then
        local hdr = text:match("^({%d+%+?})\r\n")
        buf[#buf + 1] = hdr .. "\r\n"
        if not plus then
          local ok, err, r = flush_wait()
          if not ok then return nil, err, r end
        end
        buf[#buf + 1] = p.str
      else
        buf[#buf + 1] = text
      end
    elseif p.lit then
      buf[#buf + 1] = "{" .. p.size .. (plus and "+" or "") .. "}\r\n"
      if not plus then
        local ok, err, r = flush_wait()
        if not ok then return nil, err, r end
      end
      if type(p.lit) == "string" then
        buf[#buf + 1] = p.lit
      else
        conn:send(table.concat(buf)); buf = {}
        local sent = 0
        while true do
          local chunk, serr = p.lit()
          if chunk == nil then
            if serr then return nil, serr end
            break
          end
          if sent + #chunk > p.size then return nil, "source longer than its size" end
          sent = sent + #chunk
          local ok, err = conn:send(chunk)
          if not ok then return nil, err end
        end
        if sent ~= p.size then return nil, "source shorter than its size" end
      end
    end
  end
  buf[#buf + 1] = "\r\n"
  conn:send(table.concat(buf))
  local ok, err = conn:flush()
  if not ok then return nil, err end
  return true, pending_untagged
end

--- Sends a command and reads every response up to its tagged reply.
-- @tparam string name the command ("FETCH", "UID FETCH" ...)
-- @param ... arguments: plain strings are sent as they are (atoms you
-- built), or pieces from `client.atom/string/literal`
-- @return array of untagged responses and the tagged reply; or nil,
-- text, reply for NO/BAD; or nil, err for I/O failures
function client:command(name, ...)
  check(name, "command", 2)
  local pieces = { name }
  for i = 1, select("#", ...) do
    local a = select(i, ...)
    if type(a) == "string" then check(a, "argument", 2)
    elseif type(a) ~= "table" then error("argument #" .. i .. " must be a string or a piece", 2) end
    pieces[#pieces + 1] = a
  end
  self.n = self.n + 1
  local tag = "p" .. self.n
  local ok, pre, reply = self:_send(tag, pieces)
  if not ok then
    if reply then reply.untagged = {}; return nil, pre, reply end
    return nil, pre
  end
  local untagged = pre
  while true do
    local r, err = self:read()
    if not r then return nil, err end
    if r.tag == tag then
      r.untagged = untagged
      if r.code == "CAPABILITY" then self:_caps(r.code_data) end
      if r.type ~= "OK" then return nil, r.text, r end
      return untagged, r
    end
    if r.type == "BYE" then self.bye = r end
    self:_untagged(r)
    untagged[#untagged + 1] = r
  end
end

local function mbox(name)
  check(name, "mailbox", 3)
  if name:upper() == "INBOX" then return { str = "INBOX" } end
  local enc, err = imap.utf7_encode(name)
  if not enc then error("mailbox: " .. tostring(err), 3) end
  return { str = enc }
end

local function flag_list(flags)
  if flags == nil then return nil end
  if type(flags) == "string" then flags = { flags } end
  if type(flags) ~= "table" then error("flags must be a string or an array", 3) end
  for _, f in ipairs(flags) do
    check(f, "flag", 4)
    if not f:match("^\\?[^%s%(%)%]{%%*\"\\]+$") then error("invalid flag " .. f, 4) end
  end
  return { list = "(" .. table.concat(flags, " ") .. ")" }
end

-- --------------------------------------------------------------------------
-- Any state
-- --------------------------------------------------------------------------

--- CAPABILITY: the list of capabilities (also cached for `has`).
function client:capability()
  local u, r, reply = self:command("CAPABILITY")
  if not u then return nil, r, reply end
  local out = {}
  for k in pairs(self.caps) do out[#out + 1] = k end
  table.sort(out)
  return out
end

--- NOOP (untagged responses come back as the first result).
function client:noop() return self:command("NOOP") end

--- LOGOUT, then closes the connection.
function client:logout()
  local u, r, reply = self:command("LOGOUT")
  self.conn:close()
  if not u and reply == nil and (r == "closed") then return true end
  if not u then return nil, r, reply end
  return true
end

--- Closes the connection without LOGOUT (also `<close>`).
function client:close_connection() self.conn:close() end
client.__close = function(self) self.conn:close() end

--- ID (RFC 2971): sends `fields` (table or nil), returns the server's.
function client:id(fields)
  local arg = "NIL"
  if fields then
    local parts = {}
    for k, v in pairs(fields) do
      parts[#parts + 1] = (imap.quote(check(k, "id field", 2), QOPT))
      parts[#parts + 1] = (imap.quote(check(v, "id value", 2), QOPT))
    end
    arg = "(" .. table.concat(parts, " ") .. ")"
  end
  local u, r, reply = self:command("ID", { list = arg })
  if not u then return nil, r, reply end
  for _, x in ipairs(u) do
    if x.type == "ID" then
      local out, d = {}, x.data and x.data[1]
      if type(d) == "table" then
        for i = 1, #d - 1, 2 do out[d[i]] = d[i + 1] end
      end
      return out
    end
  end
  return {}
end

-- --------------------------------------------------------------------------
-- Login
-- --------------------------------------------------------------------------

--- LOGIN. Not sent when the server lists LOGINDISABLED (RFC 3501
-- §6.2.3): the password stays here.
-- @return true, or nil, text, reply
function client:login(user, password)
  check(user, "user", 2); check(password, "password", 2)
  if self.caps.LOGINDISABLED then return nil, "server disabled LOGIN (LOGINDISABLED): use STARTTLS" end
  local u, r, reply = self:command("LOGIN", M.string(user), M.string(password))
  if not u then return nil, r, reply end
  self.state = "auth"
  if reply == nil and not self.caps["IMAP4REV1"] then self:capability() end
  return true
end

--- AUTHENTICATE PLAIN (with SASL-IR when the server has it).
function client:authenticate(user, password, authzid)
  check(user, "user", 2); check(password, "password", 2)
  local mime = require "mime"
  local ir = mime.b64((authzid or "") .. "\0" .. user .. "\0" .. password)
  local u, r, reply
  if self:has("SASL-IR") then
    u, r, reply = self:command("AUTHENTICATE", "PLAIN", ir)
  else
    self.n = self.n + 1
    local tag = "p" .. self.n
    self.conn:send(tag .. " AUTHENTICATE PLAIN\r\n")
    local c, err = self:read()
    if not c then return nil, err end
    if c.tag ~= "+" then return nil, c.text, c end
    self.conn:send(ir .. "\r\n")
    repeat
      c, err = self:read()
      if not c then return nil, err end
    until c.tag == tag
    if c.code == "CAPABILITY" then self:_caps(c.code_data) end
    if c.type ~= "OK" then return nil, c.text, c end
    u = {}
  end
  if not u then return nil, r, reply end
  self.state = "auth"
  return true
end

-- --------------------------------------------------------------------------
-- Mailboxes
-- --------------------------------------------------------------------------

local function mailbox_info(untagged, reply)
  local box = { exists = 0, recent = 0, readonly = reply.code == "READ-ONLY" }
  for _, r in ipairs(untagged) do
    if r.type == "EXISTS" then box.exists = r.number
    elseif r.type == "RECENT" then box.recent = r.number
    elseif r.type == "FLAGS" then box.flags = r.flags
    elseif r.type == "OK" and r.code then
      local k = r.code:lower()
      if k == "permanentflags" or k == "uidvalidity" or k == "uidnext" or k == "unseen"
          or k == "highestmodseq" then
        box[k] = r.code_data
      end
    end
  end
  return box
end

--- SELECT: `{exists=, recent=, flags=, permanentflags=, uidvalidity=,
-- uidnext=, unseen= (first unseen seq), readonly=}`.
function client:select(name)
  local u, r, reply = self:command("SELECT", mbox(name))
  if not u then return nil, r, reply end
  self.state = "selected"
  return mailbox_info(u, r)
end

--- EXAMINE (read-only SELECT).
function client:examine(name)
  local u, r, reply = self:command("EXAMINE", mbox(name))
  if not u then return nil, r, reply end
  self.state = "selected"
  return mailbox_info(u, r)
end

local function simple(self, cmd, ...)
  local u, r, reply = self:command(cmd, ...)
  if not u then return nil, r, reply end
  return true, r
end

--- CREATE. @return true, or nil, text, reply
function client:create(name) return simple(self, "CREATE", mbox(name)) end
--- DELETE.
function client:delete(name) return simple(self, "DELETE", mbox(name)) end
--- RENAME.
function client:rename(from, to) return simple(self, "RENAME", mbox(from), mbox(to)) end
--- SUBSCRIBE.
function client:subscribe(name) return simple(self, "SUBSCRIBE", mbox(name)) end
--- UNSUBSCRIBE.
function client:unsubscribe(name) return simple(self, "UNSUBSCRIBE", mbox(name)) end
--- CHECK.
function client:check() return simple(self, "CHECK") end
--- CLOSE (expunges \Deleted messages silently).
function client:close()
  local ok, r, reply = simple(self, "CLOSE")
  if ok then self.state = "auth" end
  return ok, r, reply
end
--- UNSELECT (RFC 3691).
function client:unselect()
  local ok, r, reply = simple(self, "UNSELECT")
  if ok then self.state = "auth" end
  return ok, r, reply
end

local function list_cmd(self, cmd, ref, pattern)
  ref = ref or ""
  pattern = pattern or "*"
  check(ref, "reference", 3); check(pattern, "pattern", 3)
  local u, r, reply = self:command(cmd, { str = imap.utf7_encode(ref) or ref },
                                   { str = imap.utf7_encode(pattern) or pattern })
  if not u then return nil, r, reply end
  local out = {}
  for _, x in ipairs(u) do
    if x.type == cmd then
      local flags = {}
      for _, f in ipairs(x.flags or {}) do flags[f] = true end
      out[#out + 1] = { name = imap.utf7_decode(x.name) or x.name, raw = x.name,
                        delimiter = x.delimiter, flags = flags, flag_list = x.flags }
    end
  end
  return out
end

--- LIST: array of `{name= (UTF-8), raw= (wire name), delimiter=, flags=
-- {["\\HasChildren"]=true ...}, flag_list= {...}}`.
function client:list(ref, pattern) return list_cmd(self, "LIST", ref, pattern) end
--- LSUB, as LIST.
function client:lsub(ref, pattern) return list_cmd(self, "LSUB", ref, pattern) end

--- STATUS: `{MESSAGES=, RECENT=, UIDNEXT=, UIDVALIDITY=, UNSEEN=}` (the
-- items asked for; default all five).
function client:status(name, items)
  items = items or { "MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN" }
  for _, i in ipairs(items) do check(i, "status item", 2) end
  local u, r, reply = self:command("STATUS", mbox(name), { list = "(" .. table.concat(items, " ") .. ")" })
  if not u then return nil, r, reply end
  for _, x in ipairs(u) do
    if x.type == "STATUS" then return x.items end
  end
  return nil, "no STATUS response", r
end

--- NAMESPACE: the raw data (personal, other, shared).
function client:namespace()
  local u, r, reply = self:command("NAMESPACE")
  if not u then return nil, r, reply end
  for _, x in ipairs(u) do
    if x.type == "NAMESPACE" then return x.data end
  end
  return {}
end

--- ENABLE: the list of capabilities the server enabled.
function client:enable(...)
  local caps = {}
  for i = 1, select("#", ...) do caps[i] = check(select(i, ...), "capability", 2) end
  local u, r, reply = self:command("ENABLE", table.unpack(caps))
  if not u then return nil, r, reply end
  for _, x in ipairs(u) do
    if x.type == "ENABLED" then return x.list or {} end
  end
  return {}
end

--- APPEND a message.
-- @tparam string name mailbox
-- @param message a string, or an ltn12 source (then `opts.size` is needed)
-- @tparam[opt] table opts `flags` (array), `date` (seconds since the epoch,
-- or an IMAP date-time string), `size`
-- @return `{uidvalidity=, uid=}` when the server has UIDPLUS (else true),
-- or nil, text, reply
function client:append(name, message, opts)
  opts = opts or {}
  local pieces = { mbox(name) }
  local fl = flag_list(opts.flags)
  if fl then pieces[#pieces + 1] = fl end
  if opts.date then
    local d = opts.date
    if type(d) == "number" then d = os.date("!%d-%b-%Y %H:%M:%S +0000", d) end
    pieces[#pieces + 1] = { str = check(d, "date", 2) }
  end
  if type(message) == "string" then
    pieces[#pieces + 1] = M.literal(message)
  else
    pieces[#pieces + 1] = M.literal(message, opts.size)
  end
  local u, r, reply = self:command("APPEND", table.unpack(pieces))
  if not u then return nil, r, reply end
  if r.code == "APPENDUID" then
    return { uidvalidity = r.code_data.uidvalidity, uid = r.code_data.uid }
  end
  return true
end

-- --------------------------------------------------------------------------
-- Selected
-- --------------------------------------------------------------------------

local function set_arg(set)
  if type(set) == "number" then set = tostring(math.tointeger(set) or error("set must be an integer", 3)) end
  if type(set) == "table" then
    local parts = {}
    for i, v in ipairs(set) do parts[i] = tostring(v) end
    set = table.concat(parts, ",")
  end
  check(set, "sequence set", 3)
  if not set:match("^[%d:,*]+$") then error("invalid sequence set " .. set, 3) end
  return set
end

local function items_arg(items)
  items = items or "(FLAGS)"
  if type(items) == "table" then items = "(" .. table.concat(items, " ") .. ")" end
  check(items, "fetch items", 3)
  return { list = items }
end

local function fetch(self, cmd, set, items)
  local u, r, reply = self:command(cmd, set_arg(set), items_arg(items))
  if not u then return nil, r, reply end
  local out = {}
  for _, x in ipairs(u) do
    if x.type == "FETCH" then
      local m = x.items or {}
      m.seq = x.number
      out[#out + 1] = m
    end
  end
  return out, u
end

--- FETCH: array of item tables (`seq`, `UID`, `FLAGS`, `RFC822.SIZE`,
-- `["BODY[]"]`, `ENVELOPE`, `BODYSTRUCTURE` ...), one per FETCH response
-- in the order received; the second result holds every untagged response.
-- @param set "1:*", a number, or an array of numbers
-- @param items "(FLAGS UID)", "FAST", or an array of item names
function client:fetch(set, items) return fetch(self, "FETCH", set, items) end
--- UID FETCH (the set holds UIDs).
function client:uid_fetch(set, items) return fetch(self, "UID FETCH", set, items) end

local function store(self, cmd, set, mode, flags, silent)
  check(mode, "mode", 3)
  local item = ({ ["+"] = "+FLAGS", ["-"] = "-FLAGS", [""] = "FLAGS", set = "FLAGS",
                  add = "+FLAGS", remove = "-FLAGS" })[mode] or mode
  if not item:upper():match("^[+-]?FLAGS$") then error("mode must be +FLAGS, -FLAGS or FLAGS", 3) end
  if silent then item = item .. ".SILENT" end
  local u, r, reply = self:command(cmd, set_arg(set), item, flag_list(flags or {}))
  if not u then return nil, r, reply end
  local out = {}
  for _, x in ipairs(u) do
    if x.type == "FETCH" and x.items and x.items.FLAGS then
      out[#out + 1] = { seq = x.number, UID = x.items.UID, FLAGS = x.items.FLAGS }
    end
  end
  return out
end

--- STORE: `mode` "+FLAGS", "-FLAGS", "FLAGS" (or "add", "remove", "set");
-- returns the FETCH FLAGS results ({seq=, FLAGS=}).
function client:store(set, mode, flags, silent) return store(self, "STORE", set, mode, flags, silent) end
--- UID STORE.
function client:uid_store(set, mode, flags, silent) return store(self, "UID STORE", set, mode, flags, silent) end

local function search(self, cmd, ...)
  local args = {}
  local utf8 = false
  for i = 1, select("#", ...) do
    local a = select(i, ...)
    if type(a) == "number" then a = tostring(math.tointeger(a) or error("search numbers must be integers", 3)) end
    if type(a) == "table" then
      args[#args + 1] = a
    else
      check(a, "search argument", 3)
      if a:match("^[%w%.%-:,*()\\$]+$") then args[#args + 1] = a
      else
        args[#args + 1] = { str = a }
        if a:find("[\128-\255]") then utf8 = true end
      end
    end
  end
  if utf8 then table.insert(args, 1, "CHARSET"); table.insert(args, 2, "UTF-8") end
  local u, r, reply = self:command(cmd, table.unpack(args))
  if not u then return nil, r, reply end
  local out = {}
  for _, x in ipairs(u) do
    if x.type == "SEARCH" then
      for _, n in ipairs(x.numbers or {}) do out[#out + 1] = n end
    end
  end
  return out
end

--- SEARCH: keys and values as separate arguments (`"SUBJECT", "hello
-- world"`): words that are atoms go as they are, anything else as a
-- string (CHARSET UTF-8 is added for non-ASCII). Returns sequence numbers.
function client:search(...) return search(self, "SEARCH", ...) end
--- UID SEARCH: returns UIDs.
function client:uid_search(...) return search(self, "UID SEARCH", ...) end

local function copyuid(r)
  if r and r.code == "COPYUID" then return r.code_data end
  for _, x in ipairs(r and r.untagged or {}) do
    if x.code == "COPYUID" then return x.code_data end
  end
  return true
end

--- COPY: `{uidvalidity=, source=, dest=}` with UIDPLUS (else true).
function client:copy(set, name)
  local u, r, reply = self:command("COPY", set_arg(set), mbox(name))
  if not u then return nil, r, reply end
  return copyuid(r)
end
--- UID COPY.
function client:uid_copy(set, name)
  local u, r, reply = self:command("UID COPY", set_arg(set), mbox(name))
  if not u then return nil, r, reply end
  return copyuid(r)
end
--- MOVE (RFC 6851): as COPY.
function client:move(set, name)
  local u, r, reply = self:command("MOVE", set_arg(set), mbox(name))
  if not u then return nil, r, reply end
  return copyuid(r)
end
--- UID MOVE.
function client:uid_move(set, name)
  local u, r, reply = self:command("UID MOVE", set_arg(set), mbox(name))
  if not u then return nil, r, reply end
  return copyuid(r)
end

local function expunged(u)
  local out = {}
  for _, x in ipairs(u) do
    if x.type == "EXPUNGE" then out[#out + 1] = x.number end
  end
  return out
end

--- EXPUNGE: the sequence numbers expunged, in the order told.
function client:expunge()
  local u, r, reply = self:command("EXPUNGE")
  if not u then return nil, r, reply end
  return expunged(u)
end
--- UID EXPUNGE (UIDPLUS).
function client:uid_expunge(set)
  local u, r, reply = self:command("UID EXPUNGE", set_arg(set))
  if not u then return nil, r, reply end
  return expunged(u)
end

--- IDLE (RFC 2177): calls `callback(response)` for each untagged response
-- until it returns true or `timeout` seconds pass, then ends the IDLE.
-- @return true (and whether the callback stopped it), or nil, err
function client:idle(callback, timeout)
  if type(callback) ~= "function" then error("idle needs a callback", 2) end
  timeout = timeout or 29 * 60
  self.n = self.n + 1
  local tag = "p" .. self.n
  local conn = self.conn
  conn:send(tag .. " IDLE\r\n")
  local r, err = self:read()
  while r and r.tag == "*" do self:_untagged(r); callback(r); r, err = self:read() end
  if not r then return nil, err end
  if r.tag == tag then return nil, r.text, r end
  local deadline = parley.now() + timeout
  local stopped = false
  while true do
    local left = deadline - parley.now()
    if left <= 0 then break end
    conn:settimeout(left)
    -- wait for data without consuming a partial line
    local ok, perr = conn:receive_until("\n", 1 << 24)
    if ok then
      -- a whole line arrived: hand it to the parser (re-add the LF)
      local line = ok:gsub("\r$", "")
      conn:settimeout(self.timeout)
      local p = self.parser
      local res, a = p:feed_line(line)
      while res == "literal" do
        local data = conn:receive(a)
        if not data then return nil, "closed" end
        p:feed_literal(data)
        local l2 = conn:receive("l")
        if not l2 then return nil, "closed" end
        res, a = p:feed_line(l2)
      end
      if res ~= "done" then p:reset(); return nil, "bad response" end
      self:_untagged(a)
      if a.type == "BYE" then return nil, a.text, a end
      if callback(a) == true then stopped = true; break end
    elseif perr ~= "timeout" then
      conn:settimeout(self.timeout)
      return nil, perr
    end
  end
  conn:settimeout(self.timeout)
  conn:send("DONE\r\n")
  while true do
    r, err = self:read()
    if not r then return nil, err end
    if r.tag == tag then
      if r.type ~= "OK" then return nil, r.text, r end
      return true, stopped
    end
    self:_untagged(r)
    callback(r)
  end
end

return M
