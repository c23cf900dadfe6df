--- Maildir store with Maildir++ folders, shared by the SMTP, POP3 and IMAP
-- servers. Readable by Dovecot and mutt: messages in `cur/` and `new/`,
-- flags in the `:2,` suffix, sizes in the name (`,S=<bytes>,W=<bytes with
-- CRLF line ends>`, as Dovecot writes them), folders as `.Name` directories
-- with `.` as the hierarchy delimiter and modified UTF-7 for non-ASCII.
--
--   local maildir = require "parley.mail.maildir"
--   local store = maildir.open("/var/mail/parley")
--   local d = assert(store:delivery("alice"))
--   assert(d:write(message))
--   local name = assert(d:commit())      -- on disk: only now answer 250
--
-- Delivery (Maildir, as qmail documents it): the message is written to
-- `tmp/<unique>` (opened O_CREAT|O_EXCL), fsync'ed, renamed into `new/`
-- (or `cur/` with flags), and the directory is fsync'ed. A failed write
-- (disk full) removes the tmp file at once and returns the error. Inside
-- a task both fsyncs run on the driver's worker threads (`fs.fsync_async`)
-- and only that task waits for the disk; the order stays write, fsync,
-- link into `new/`, fsync of `new/`. A task cancelled meanwhile gets
-- `nil, "cancelled"` and leaves nothing in `new/`.
--
-- Unique names: `<sec>.M<usec>P<pid>Q<counter>.<host>` with a
-- per-process counter; the pid and the counter keep concurrent deliveries
-- in one process and across processes apart, O_EXCL catches anything else.
--
-- Message names: a message is known by its name without the `:2,<flags>`
-- suffix (the part Dovecot keeps in its uidlist); it does not change when
-- the flags change. Readers (`store:mailbox`) look the current file up.
--
-- Errors: I/O failures return `nil, err` (short lowercase text such as
-- `"no space left on device"`); wrong argument types raise.
--
-- @module parley.mail.maildir
local core = require "parley.core"
local fs = core.fs

local M = {}

local EEXIST, ENOENT = 17, 2

--- How old (seconds) a tmp/ file must be before clean_tmp removes it when
-- its writer cannot be shown dead: 36 hours, as the Maildir spec says.
M.TMP_MAX_AGE = 36 * 3600

local store_methods = {}
local store_mt = { __name = "parley.mail.maildir", __index = store_methods }
local delivery_methods = {}
local delivery_mt = { __name = "parley.mail.maildir.delivery", __index = delivery_methods }
local mailbox_methods = {}
local mailbox_mt = { __name = "parley.mail.maildir.mailbox", __index = mailbox_methods }

-- --------------------------------------------------------------------------
-- Names
-- --------------------------------------------------------------------------

-- The Maildir spec: "/" and ":" in the host name become \057 and \072;
-- Dovecot does the same. "," would confuse the ",S=" fields: \054.
local function safe_host()
  local h = fs.gethostname() or "localhost"
  return (h:gsub("[/:,]", function(c) return string.format("\\%03o", c:byte()) end))
end
local HOST = safe_host()

local counter = 0

-- tmp/ files this process is writing right now: clean_tmp leaves them.
local inflight = {}

local function unique_base()
  counter = counter + 1
  local sec, usec = fs.time()
  return string.format("%d.M%dP%dQ%d.%s", sec, usec, fs.getpid(), counter, HOST)
end

local FLAG_OK = "^[A-Za-z]*$"

--- Normalises a flag string: letters only, each once, in ASCII order (the
-- Maildir spec: "Flags must be stored in ASCII order"; D F P R S T, and
-- Dovecot's keyword letters a-z after them).
-- @tparam string flags e.g. "SR"
-- @treturn string e.g. "RS", or nil, err for anything but letters
function M.flags(flags)
  if type(flags) ~= "string" then error("flags must be a string", 2) end
  if not flags:match(FLAG_OK) then return nil, "invalid flags" end
  if #flags <= 1 then return flags end
  local seen, list = {}, {}
  for c in flags:gmatch(".") do
    if not seen[c] then seen[c] = true; list[#list + 1] = c end
  end
  table.sort(list)
  return table.concat(list)
end

local function check_user(user)
  if type(user) ~= "string" then error("user must be a string", 3) end
  if user == "" or #user > 255 or user:find("[%z%c/]") or user:sub(1, 1) == "." then
    return nil, "invalid user name"
  end
  return true
end

-- A folder name (UTF-8, "." between levels) -> its directory name
-- (".Sent", ".Archive.2024", ".Entw&APw-rfe"), "" for the INBOX.
local function folder_dir(folder)
  if folder == nil or folder == "" then return "" end
  if type(folder) ~= "string" then error("folder must be a string", 3) end
  if folder:upper() == "INBOX" then return "" end
  if #folder > 255 or folder:find("[%z%c/]") or folder:sub(1, 1) == "."
      or folder:sub(-1) == "." or folder:find("..", 1, true) then
    return nil, "invalid folder name"
  end
  local enc, err = core.imap.utf7_encode(folder)
  if not enc then return nil, "invalid folder name (" .. tostring(err) .. ")" end
  return "." .. enc
end

local function decode_folder(dirname)
  local raw = dirname:sub(2)
  return core.imap.utf7_decode(raw) or raw
end

-- --------------------------------------------------------------------------
-- Store
-- --------------------------------------------------------------------------

--- Opens a store rooted at `root` (created, mode 0700, if missing).
-- @tparam string root directory holding one Maildir per user
-- @tparam[opt] table opts `fsync` (default true: fsync files and
-- directories on delivery), `dir_mode` (0700), `file_mode` (0600),
-- `lock_timeout` (seconds to wait for the uidlist lock, 10)
-- @return store, or nil, err
function M.open(root, opts)
  if type(root) ~= "string" or root == "" then error("root must be a non-empty string", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("opts must be a table", 2) end
  root = root:gsub("/+$", "")
  if root == "" then root = "/" end
  local self = setmetatable({
    root = root,
    fsync = opts.fsync ~= false,
    dir_mode = opts.dir_mode or 448,      -- 0700
    file_mode = opts.file_mode or 384,    -- 0600
    lock_timeout = opts.lock_timeout or 10,
    ready = {},                           -- maildir paths known to exist
  }, store_mt)
  -- mkdir -p
  local path = root:sub(1, 1) == "/" and "" or "."
  for part in root:gmatch("[^/]+") do
    path = path .. "/" .. part
    local ok, err, errno = fs.mkdir(path, self.dir_mode)
    if not ok and errno ~= EEXIST then return nil, err end
  end
  local st = fs.stat(root)
  if not st or st.type ~= "directory" then return nil, "not a directory: " .. root end
  return self
end

--- The Maildir directory of a user (and folder), without creating it.
-- @tparam string user
-- @tparam[opt] string folder nil or "INBOX" for the user's inbox
-- @return path, or nil, err
function store_methods:path(user, folder)
  local ok, err = check_user(user)
  if not ok then return nil, err end
  local fdir, ferr = folder_dir(folder)
  if not fdir then return nil, ferr end
  if fdir == "" then return self.root .. "/" .. user end
  return self.root .. "/" .. user .. "/" .. fdir
end

local function mkdir_ok(path, mode)
  local ok, err, errno = fs.mkdir(path, mode)
  if ok or errno == EEXIST then return true end
  return nil, err
end

-- Creates dir (a Maildir) with cur/ new/ tmp/; `folder`: also the
-- Maildir++ "maildirfolder" marker.
local function make_maildir(self, dir, is_folder)
  local ok, err = mkdir_ok(dir, self.dir_mode)
  if not ok then return nil, err end
  for _, sub in ipairs { "cur", "new", "tmp" } do
    ok, err = mkdir_ok(dir .. "/" .. sub, self.dir_mode)
    if not ok then return nil, err end
  end
  if is_folder then
    local f = fs.open(dir .. "/maildirfolder", "wc", self.file_mode)
    if f then f:close() end
  end
  return true
end

-- The Maildir for user/folder, created on first use.
local function ensure(self, user, folder)
  local dir, err = self:path(user, folder)
  if not dir then return nil, err end
  if self.ready[dir] then return dir end
  if folder_dir(folder) ~= "" then
    local ok, e = make_maildir(self, self.root .. "/" .. user, false)
    if not ok then return nil, e end
    ok, e = make_maildir(self, dir, true)
    if not ok then return nil, e end
  else
    local ok, e = make_maildir(self, dir, false)
    if not ok then return nil, e end
  end
  self.ready[dir] = true
  return dir
end

--- Starts a delivery: a new unique file in the Maildir's `tmp/`.
-- @tparam string user
-- @tparam[opt] string folder
-- @return delivery `d`, or nil, err
function store_methods:delivery(user, folder)
  local dir, err = ensure(self, user, folder)
  if not dir then return nil, err end
  local errno
  for _ = 1, 20 do
    local base = unique_base()
    local tmp = dir .. "/tmp/" .. base
    local f
    f, err, errno = fs.open(tmp, "wcx", self.file_mode)
    if f then
      inflight[base] = true
      return setmetatable({ store = self, dir = dir, base = base, tmp = tmp,
                            file = f, state = "open" }, delivery_mt)
    end
    if errno == ENOENT and self.ready[dir] then
      -- the directory went away behind our back: make it again
      self.ready[dir] = nil
      dir, err = ensure(self, user, folder)
      if not dir then return nil, err end
    elseif errno ~= EEXIST then
      return nil, err
    end
  end
  return nil, err
end

--- Delivers a whole message in one call.
-- @tparam string user
-- @tparam string message the bytes, stored as given
-- @tparam[opt] string folder
-- @tparam[opt] string flags store in `cur/` with these flags (IMAP APPEND)
-- @return the message name, or nil, err
function store_methods:deliver(user, message, folder, flags)
  if type(message) ~= "string" then error("message must be a string", 2) end
  local d, err = self:delivery(user, folder)
  if not d then return nil, err end
  local ok
  ok, err = d:write(message)
  if not ok then return nil, err end
  return d:commit(flags)
end

-- --------------------------------------------------------------------------
-- Delivery
-- --------------------------------------------------------------------------

local function finish(d)
  inflight[d.base] = nil
  d.state = "done"
end

--- Appends bytes to the message.
-- @tparam string chunk
-- @return true, or nil, err (the delivery is then aborted: nothing stays
-- on disk, later calls return the same error)
function delivery_methods:write(chunk)
  if self.state ~= "open" then
    if self.err then return nil, self.err end
    error("delivery already finished", 2)
  end
  if type(chunk) ~= "string" then error("chunk must be a string", 2) end
  local ok, err = self.file:write(chunk)
  if not ok then
    self:abort()
    self.err = err
    return nil, err
  end
  return true
end

--- An ltn12-style sink writing into this delivery (for
-- `stream:receive_to(d:sink())`): returns 1, or nil, err.
function delivery_methods:sink()
  return function(chunk)
    if chunk == nil or chunk == "" then return 1 end
    local ok, err = self:write(chunk)
    if not ok then return nil, err end
    return 1
  end
end

--- The file descriptor of the tmp file, for writers that bypass `write`
-- (e.g. `stream:receive_to(d:fd(), n)`). After this the size is taken
-- from the file at commit, and the name has no `,W=` field.
function delivery_methods:fd()
  if self.state ~= "open" then error("delivery already finished", 2) end
  local ok, err = self.file:flush()
  if not ok then
    self:abort(); self.err = err
    return nil, err
  end
  self.raw = true
  return self.file:fd()
end

--- Bytes written so far.
function delivery_methods:size()
  if self.raw and self.state == "open" then
    local st = fs.stat(self.tmp)
    return st and st.size or self.file:size()
  end
  return self.file:size()
end

--- Finishes the delivery: fsync the file, rename it into `new/` (or into
-- `cur/` with `:2,<flags>` when flags are given), fsync the directory.
-- Only when this returns a name is the message safely on disk.
-- @tparam[opt] string flags e.g. "S" (stored sorted, see `maildir.flags`)
-- @return the message name (`<unique>,S=<size>[,W=<vsize>]`) and its
-- path, or nil, err (nothing is left on disk)
function delivery_methods:commit(flags)
  if self.state ~= "open" then
    if self.err then return nil, self.err end
    error("delivery already finished", 2)
  end
  if flags ~= nil then
    local f, ferr = M.flags(flags)
    if not f then error(ferr, 2) end
    flags = f
  end
  local store, file = self.store, self.file
  local ok, err = file:flush()
  if ok and store.fsync then ok, err = fs.fsync_async(file) end
  local size
  if ok then
    if self.raw then
      local st
      st, err = fs.stat(self.tmp)
      ok = st ~= nil
      size = st and st.size
    else
      size = file:size()
    end
  end
  if ok then ok, err = file:close() end
  if not ok then
    self:abort(); self.err = err
    return nil, err
  end
  local name = self.base .. ",S=" .. size
  if not self.raw then name = name .. ",W=" .. (size + file:lfs()) end
  local sub = flags and "cur" or "new"
  local dest = self.dir .. "/" .. sub .. "/" .. name
  if flags then dest = dest .. ":2," .. flags end
  -- link(2) never replaces an existing file (rename would); the names are
  -- unique, so this only matters if something else wrote the same name.
  local errno
  ok, err, errno = fs.link(self.tmp, dest)
  if not ok and errno ~= EEXIST then
    -- no hard links here (some FUSE and network file systems)
    ok, err = fs.rename(self.tmp, dest)
  end
  if not ok then
    self:abort(); self.err = err
    return nil, err
  end
  fs.unlink(self.tmp)
  finish(self)
  if store.fsync then
    ok, err = fs.fsync_dir_async(self.dir .. "/" .. sub)
    if not ok then
      -- not durable: take it back, the client must retry
      fs.unlink(dest)
      self.err = err
      return nil, err
    end
  end
  return name, dest
end

--- Gives up: closes and removes the tmp file. Safe to call twice; called
-- by the garbage collector and by `<close>` for a delivery never committed.
function delivery_methods:abort()
  if self.state ~= "open" then return true end
  self.file:close()
  fs.unlink(self.tmp)
  finish(self)
  return true
end

delivery_mt.__gc = function(d) if d.state == "open" then d:abort() end end
delivery_mt.__close = delivery_mt.__gc
delivery_mt.__tostring = function(d)
  return string.format("parley.mail.maildir.delivery: %s (%s)", d.tmp, d.state)
end

-- --------------------------------------------------------------------------
-- Reading: mailboxes
-- --------------------------------------------------------------------------

--- A mailbox for readers (POP3, IMAP). Creates nothing: a missing Maildir
-- reads as empty.
-- @tparam string user
-- @tparam[opt] string folder
-- @return mailbox `mb`, or nil, err
function store_methods:mailbox(user, folder)
  local dir, err = self:path(user, folder)
  if not dir then return nil, err end
  return setmetatable({ store = self, dir = dir, index = {} }, mailbox_mt)
end

--- Whether the Maildir exists on disk.
function mailbox_methods:exists()
  local st = fs.stat(self.dir .. "/cur")
  return st ~= nil and st.type == "directory"
end

--- Lists the messages, in delivery order, moving nothing. One listdir of
-- `new/` and one of `cur/`, parsed in C (core.fs.maildir_list); sizes
-- come from `,S=` in the name (a stat only for names without it).
-- Delivery order: by (seconds, microseconds, counter) for
-- `<sec>.M<usec>P<pid>Q<n>.` names, by leading seconds for others.
-- @return array of `{name=, file=, path=, size=, vsize=, flags=, new=,
-- mtime=}`: `name` is the message name (no flags), `file` the current
-- file name, `vsize` the size with CRLF line ends when the name says it
-- (`,W=`) or nil, `flags` e.g. "RS", `new` true for messages in `new/`,
-- `mtime` the delivery time (seconds) from the name, or from a stat for
-- names that hold no size or time. Or nil, err.
function mailbox_methods:scan()
  local dir = self.dir
  local all, n = {}, 0
  for _, which in ipairs { "new", "cur" } do
    local count, err, errno = fs.maildir_list(dir .. "/" .. which, which == "new", all, n)
    if not count then
      if errno ~= ENOENT then return nil, err end
    else
      n = count
    end
  end
  local byname, list, nk = {}, {}, 0
  for i = 1, n do
    local m = all[i]
    if not (m.size and m.key) then
      local st = fs.stat(m.path)
      m.size = m.size or (st and st.size) or 0
      m.mtime = m.mtime or (st and st.mtime) or 0
      m.key = m.key or ((m.mtime // 1) * 1000000) << 10
    end
    local name = m.name
    if not byname[name] then           -- a name in both new/ and cur/: once
      byname[name] = m
      nk = nk + 1
      list[nk] = m
    end
  end
  -- delivery order, equal keys as listed, sorted in C (no Lua call per
  -- comparison); the keys are the store's business, not the records'
  local out = fs.maildir_sort(list)
  for i = 1, nk do out[i].key = nil end
  self.index = byname
  return out
end

-- The message record for `name`, looked up again from disk if needed.
local function locate(self, name, fresh)
  if type(name) ~= "string" then error("name must be a string", 3) end
  local m = self.index[name]
  if m and not fresh then return m end
  if not fresh then
    local st = fs.stat(self.dir .. "/new/" .. name)
    if st then
      m = { name = name, file = name, path = self.dir .. "/new/" .. name,
            flags = "", new = true }
      self.index[name] = m
      return m
    end
  end
  local ok, err = self:scan()
  if not ok then return nil, err end
  m = self.index[name]
  if not m then return nil, "no such message" end
  return m
end

-- Runs op(m) on the message, once more after a rescan if its file moved.
local function with_message(self, name, op)
  local m, err = locate(self, name)
  if not m then return nil, err end
  local r1, r2, errno = op(m)
  if r1 == nil and errno == ENOENT then
    m, err = locate(self, name, true)
    if not m then return nil, err end
    r1, r2 = op(m)
  end
  return r1, r2
end

--- Sets a message's flags (replacing them): renames it into `cur/` as
-- `<name>:2,<flags>` (moving it out of `new/` if it is there). Atomic.
-- @tparam string name
-- @tparam string flags e.g. "RS" (any order; stored sorted)
-- @return true, or nil, err
function mailbox_methods:set_flags(name, flags)
  local f, ferr = M.flags(flags)
  if not f then error(ferr, 2) end
  return with_message(self, name, function(m)
    local file = m.name .. ":2," .. f
    local dest = self.dir .. "/cur/" .. file
    if dest == m.path then return true end
    -- never over another file (two copies of one unique name): refuse
    local ok, err, errno = fs.rename(m.path, dest, true)
    if not ok then return nil, err, errno end
    m.file, m.path, m.flags, m.new = file, dest, f, false
    return true
  end)
end

--- Removes a message.
-- @return true, or nil, err ("no such message")
function mailbox_methods:remove(name)
  return with_message(self, name, function(m)
    local ok, err, errno = fs.unlink(m.path)
    if not ok then return nil, err, errno end
    self.index[m.name] = nil
    return true
  end)
end

--- Opens a message for reading.
-- @return a Lua file handle ("rb"), or nil, err
function mailbox_methods:open(name)
  return with_message(self, name, function(m)
    local fh, err, errno = io.open(m.path, "rb")
    if not fh then return nil, err, errno end
    return fh
  end)
end

--- The current path of a message, or nil, err.
function mailbox_methods:path(name)
  local m, err = locate(self, name)
  if not m then return nil, err end
  return m.path
end

-- --------------------------------------------------------------------------
-- UIDs: parley-uidlist, in dovecot-uidlist version 3 format
-- --------------------------------------------------------------------------

local UIDLIST = "parley-uidlist"
M.UIDLIST = UIDLIST

--- Reads a Maildir's `parley-uidlist` (dovecot-uidlist version 3 format).
-- @tparam string dir the Maildir
-- @return `{validity=, nextuid=, map = {name -> uid}}`, or nil when the
-- file is missing or its header is not a version 3 header
function M.read_uidlist(dir)
  local fh = io.open(dir .. "/" .. UIDLIST, "rb")
  if not fh then return nil end
  local text = fh:read("a")
  fh:close()
  local header = text:match("^[^\n]*")
  local validity = tonumber(header:match("^3 .-V(%d+)"))
  local nextuid = tonumber(header:match(" N(%d+)"))
  if not validity then return nil end
  local map, maxuid = {}, 0
  -- "<uid> [<ext fields>] :<name>" lines
  for uid, name in text:gmatch("\n(%d+)[^:\n]*:([^\n]+)") do
    uid = tonumber(uid)
    map[name] = uid
    if uid > maxuid then maxuid = uid end
  end
  return { validity = validity, nextuid = math.max(nextuid or 1, maxuid + 1), map = map }
end

--- Takes the uidlist lock (flock on `parley-uidlist.lock`), waiting up to
-- the store's `lock_timeout`. Close the handle to release it.
-- @return the lock handle, or nil, err
function mailbox_methods:lock_uidlist()
  local store = self.store
  local lock, err = fs.open(self.dir .. "/" .. UIDLIST .. ".lock", "wc", store.file_mode)
  if not lock then return nil, err end
  local deadline = os.time() + store.lock_timeout
  while true do
    local ok, lerr, errno = lock:lock("ex", true)
    if ok then return lock end
    if errno ~= 11 or os.time() > deadline then
      lock:close()
      return nil, errno == 11 and "uidlist locked" or lerr
    end
    core.sleep(0.01)   -- outside a task this runs the loop right here
  end
end

--- Writes the uidlist atomically (tmp file, fsync, rename, fsync of the
-- directory when the store fsyncs). Call it holding `lock_uidlist`.
-- @tparam number validity
-- @tparam number nextuid
-- @tparam table msgs array of `{uid=, name=}`, ascending UIDs
-- @return true, or nil, err
function mailbox_methods:write_uidlist(validity, nextuid, msgs)
  local store, dir = self.store, self.dir
  -- (the text is built in C: one buffer, no string per UID)
  local text = fs.maildir_uidlist(string.format("3 V%d N%d\n", validity, nextuid), msgs)
  local path = dir .. "/" .. UIDLIST
  local tmp = path .. ".tmp"
  fs.unlink(tmp)
  local f, err = fs.open(tmp, "wcx", store.file_mode)
  local ok = f ~= nil
  if ok then ok, err = f:write(text) end
  if ok and store.fsync then ok, err = f:fsync() end
  if f then
    local cok, cerr = f:close()
    if ok and not cok then ok, err = nil, cerr end
  end
  if ok then ok, err = fs.rename(tmp, path) end
  if ok and store.fsync then ok, err = fs.fsync_dir(dir) end
  if not ok then fs.unlink(tmp); return nil, err end
  return true
end

--- UIDs for IMAP: a map message name -> UID, kept in
-- `<maildir>/parley-uidlist` (dovecot-uidlist version 3 format:
-- `3 V<uidvalidity> N<nextuid>` then `<uid> :<name>` lines). Messages not
-- yet listed get the next UIDs in delivery order; names no longer on disk
-- are dropped. Written to a tmp file, fsync'ed and renamed, under an
-- flock on `parley-uidlist.lock`, so concurrent processes agree.
-- @tparam[opt] table msgs a `scan()` result: each entry gets its `.uid`
-- (the list itself always comes from a fresh scan under the lock, so a
-- stale `msgs` never drops another process's entries)
-- @return map, uidvalidity, nextuid, and the fresh `scan()` list made
-- under the lock (delivery order, each entry with its `.uid`); or nil, err
function mailbox_methods:uids(msgs)
  local store, dir = self.store, self.dir
  if not self:exists() then
    local ok, err = make_maildir(store, dir, dir:match("/%.[^/]+$") ~= nil)
    if not ok then return nil, err end
  end
  local lock, err = self:lock_uidlist()
  if not lock then return nil, err end
  local list = M.read_uidlist(dir)
  local changed = false
  if not list then
    list = { validity = os.time(), nextuid = 1, map = {} }
    changed = true
  end
  local given = msgs
  msgs, err = self:scan()
  if not msgs then lock:close(); return nil, err end
  local map, old = {}, list.map
  local present = 0
  for i = 1, #msgs do
    local m = msgs[i]
    local uid = old[m.name]
    if uid then
      present = present + 1
    else
      uid = list.nextuid
      list.nextuid = uid + 1
      changed = true
    end
    map[m.name] = uid
    m.uid = uid
  end
  -- names no longer on disk (expunged) are dropped from the file
  local oldcount = 0
  for _ in pairs(old) do oldcount = oldcount + 1 end
  if oldcount ~= present then changed = true end
  if changed then
    local entries = {}
    for name, uid in pairs(map) do entries[#entries + 1] = { uid, name } end
    table.sort(entries, function(a, b) return a[1] < b[1] end)
    for i = 1, #entries do entries[i] = { uid = entries[i][1], name = entries[i][2] } end
    local ok
    ok, err = self:write_uidlist(list.validity, list.nextuid, entries)
    if not ok then lock:close(); return nil, err end
  end
  lock:close()
  if given then
    for i = 1, #given do given[i].uid = map[given[i].name] end
  end
  return map, list.validity, list.nextuid, msgs
end

-- --------------------------------------------------------------------------
-- Keywords: dovecot-keywords
-- --------------------------------------------------------------------------

local KEYWORDS = "dovecot-keywords"
M.KEYWORDS = KEYWORDS
--- Keywords a Maildir can name: the letters a-z after the `:2,` flags.
M.MAX_KEYWORDS = 26
--- Seconds after which another writer's `dovecot-keywords.lock` is stale
-- (Dovecot's own value: 2 minutes).
M.KEYWORDS_LOCK_STALE = 120

-- path -> parsed file, while its stamp holds (shared by every mailbox
-- object and session of the process)
local kw_cache = {}

local function kw_stamp(st)
  return st and (st.ino .. ":" .. st.size .. ":" .. st.mtime) or ""
end

-- "<n> <name>" lines (Dovecot skips anything else, so do we); names are
-- looked up without regard to case, as Dovecot does
local function parse_keywords(text)
  local kw = { names = {}, letter = {}, count = 0 }
  for idx, name in (text or ""):gmatch("(%d+) ([^\n]+)") do
    idx = tonumber(idx)
    if idx < M.MAX_KEYWORDS and not kw.letter[name:lower()] then
      if not kw.names[idx + 1] then kw.count = kw.count + 1 end
      kw.names[idx + 1] = name
      kw.letter[name:lower()] = string.char(97 + idx)
    end
  end
  return kw
end

--- The Maildir's keywords, as Dovecot keeps them in `dovecot-keywords`
-- (`<n> <name>` lines; keyword n is the letter `a` + n in file names).
-- The same table while the file is unchanged; never modify it.
-- @return `{names = {[n + 1] = name}, letter = {[lowercase name] = letter},
-- count = }`
function mailbox_methods:keywords()
  local path = self.dir .. "/" .. KEYWORDS
  local stamp = kw_stamp(fs.stat(path))
  local kw = kw_cache[path]
  if kw and kw.stamp == stamp then return kw end
  local text
  if stamp ~= "" then
    local fh = io.open(path, "rb")
    if fh then text = fh:read("a"); fh:close() end
  end
  kw = parse_keywords(text)
  kw.stamp = stamp
  kw_cache[path] = kw
  return kw
end

-- Takes dovecot-keywords.lock the way Dovecot does (a dot-lock file made
-- with O_EXCL, replaced over the file when written); one older than
-- KEYWORDS_LOCK_STALE is a dead writer's and is removed.
local function keywords_lock(self)
  local store, lock = self.store, self.dir .. "/" .. KEYWORDS .. ".lock"
  local deadline = os.time() + store.lock_timeout
  while true do
    local f, err, errno = fs.open(lock, "wcx", store.file_mode)
    if f then return f, lock end
    if errno ~= EEXIST then return nil, err end
    local st = fs.stat(lock)
    if st and os.time() - st.mtime > M.KEYWORDS_LOCK_STALE then
      fs.unlink(lock)
    elseif os.time() > deadline then
      return nil, "keywords locked"
    else
      core.sleep(0.01)
    end
  end
end

--- Letters for keyword names in this Maildir, adding the names it does
-- not know yet to `dovecot-keywords` (under Dovecot's dot-lock, written
-- whole and renamed over the file, its mtime always growing: Dovecot
-- re-reads it only when the mtime changes).
-- @tparam table names keyword names (any case)
-- @tparam[opt] boolean lookup only: unknown names get no letter
-- @return the letters (sorted), or nil, err ("too many keywords" when all
-- 26 letters are taken)
function mailbox_methods:keyword_letters(names, lookup)
  if type(names) ~= "table" then error("names must be a table", 2) end
  local kw = self:keywords()
  local out, missing = {}, nil
  for _, name in ipairs(names) do
    local l = kw.letter[name:lower()]
    if l then out[#out + 1] = l
    elseif not lookup then missing = missing or {}; missing[#missing + 1] = name end
  end
  if missing then
    local f, lock = keywords_lock(self)
    if not f then return nil, lock end
    local path = self.dir .. "/" .. KEYWORDS
    local old = fs.stat(path)
    kw_cache[path] = nil
    kw = self:keywords()                   -- as it is now, under the lock
    local list = {}
    for i = 1, M.MAX_KEYWORDS do list[i] = kw.names[i] end
    local added, full = false, false
    for _, name in ipairs(missing) do
      local l = kw.letter[name:lower()]
      if not l then
        local free
        for i = 1, M.MAX_KEYWORDS do if not list[i] then free = i; break end end
        if not free then full = true; break end
        list[free] = name
        kw.letter[name:lower()] = string.char(96 + free)   -- (this copy only)
        added = true
      end
    end
    local ok, err = true, nil
    if added and not full then
      local lines = {}
      for i = 1, M.MAX_KEYWORDS do
        if list[i] then lines[#lines + 1] = (i - 1) .. " " .. list[i] .. "\n" end
      end
      ok, err = f:write(table.concat(lines))
      if ok and self.store.fsync then ok, err = f:fsync() end
    end
    local cok, cerr = f:close()
    if ok and not cok then ok, err = nil, cerr end
    if ok and added and not full then
      local st = fs.stat(lock)
      if old and st and st.mtime // 1 <= old.mtime // 1 then
        fs.utime(lock, st.mtime, old.mtime // 1 + 1)
      end
      ok, err = fs.rename(lock, path)
    end
    if not ok or full or not added then fs.unlink(lock) end
    kw_cache[path] = nil
    if full then return nil, "too many keywords" end
    if not ok then return nil, err end
    kw = self:keywords()
    for _, name in ipairs(missing) do
      local l = kw.letter[name:lower()]
      if not l then return nil, "keyword vanished" end
      out[#out + 1] = l
    end
  end
  table.sort(out)
  return table.concat(out)
end

-- --------------------------------------------------------------------------
-- Folders (Maildir++)
-- --------------------------------------------------------------------------

--- The user's folders (UTF-8 names, "." between levels), sorted; the
-- inbox is not listed.
-- @return array, or nil, err
function store_methods:folders(user)
  local udir, err = self:path(user)
  if not udir then return nil, err end
  local names, lerr, errno = fs.listdir(udir)
  if not names then
    if errno == ENOENT then return {} end
    return nil, lerr
  end
  local out = {}
  for _, n in ipairs(names) do
    if n:sub(1, 1) == "." and n:sub(2, 2) ~= "." and #n > 1 then
      local st = fs.stat(udir .. "/" .. n)
      if st and st.type == "directory" then out[#out + 1] = decode_folder(n) end
    end
  end
  table.sort(out)
  return out
end

--- Creates a folder (its Maildir with the `maildirfolder` marker).
-- @return true, or nil, err ("folder exists", "invalid folder name")
function store_methods:create_folder(user, name)
  if folder_dir(name) == "" then return nil, "folder exists" end
  local dir, err = self:path(user, name)
  if not dir then return nil, err end
  local ok, e = make_maildir(self, self.root .. "/" .. user, false)
  if not ok then return nil, e end
  local errno
  ok, e, errno = fs.mkdir(dir, self.dir_mode)
  if not ok then
    if errno == EEXIST then return nil, "folder exists" end
    return nil, e
  end
  ok, e = make_maildir(self, dir, true)
  if not ok then return nil, e end
  self.ready[dir] = true
  return true
end

-- Removes a directory tree (a Maildir: at most a few levels deep).
local function remove_tree(path, depth)
  if depth > 8 then return nil, "directory too deep" end
  local names = fs.listdir(path) or {}
  for _, n in ipairs(names) do
    local p = path .. "/" .. n
    local st = fs.lstat(p)
    if st and st.type == "directory" then
      local ok, err = remove_tree(p, depth + 1)
      if not ok then return nil, err end
    else
      fs.unlink(p)
    end
  end
  return fs.rmdir(path)
end

--- Deletes a folder and its messages (not its subfolders, which are
-- separate Maildirs in Maildir++). It is first renamed out of sight, so
-- readers never see it half deleted.
-- @return true, or nil, err ("no such folder")
function store_methods:delete_folder(user, name)
  if folder_dir(name) == "" then return nil, "cannot delete the inbox" end
  local dir, err = self:path(user, name)
  if not dir then return nil, err end
  local trash = self.root .. "/" .. user .. "/..deleted." .. unique_base()
  local ok, e, errno = fs.rename(dir, trash, true)
  if not ok then
    if errno == ENOENT then return nil, "no such folder" end
    return nil, e
  end
  self.ready[dir] = nil
  return remove_tree(trash, 0)
end

--- Renames a folder and its subfolders (`A` -> `B` also moves `A.x` to
-- `B.x`), as IMAP RENAME does.
-- @return true, or nil, err ("no such folder", "folder exists")
function store_methods:rename_folder(user, old, new)
  if folder_dir(old) == "" or folder_dir(new) == "" then
    return nil, "cannot rename the inbox"
  end
  local from, err = self:path(user, old)
  if not from then return nil, err end
  local to
  to, err = self:path(user, new)
  if not to then return nil, err end
  if to:sub(1, #from + 1) == from .. "." then return nil, "cannot move a folder into itself" end
  if fs.lstat(to) then return nil, "folder exists" end
  local ok, e, errno = fs.rename(from, to, true)
  local moved = ok
  if not ok then
    if errno == EEXIST or errno == 39 then return nil, "folder exists" end
    -- in Maildir++ a parent need not exist for its children to
    if errno ~= ENOENT then return nil, e end
  end
  self.ready[from] = nil
  local udir = self.root .. "/" .. user .. "/"
  local fprefix = from:sub(#udir + 1) .. "."
  local tprefix = to:sub(#udir + 1) .. "."
  for _, n in ipairs(fs.listdir(udir) or {}) do
    if n:sub(1, #fprefix) == fprefix then
      ok, e = fs.rename(udir .. n, udir .. tprefix .. n:sub(#fprefix + 1), true)
      if not ok then return nil, e end
      self.ready[udir .. n] = nil
      moved = true
    end
  end
  if not moved then return nil, "no such folder" end
  return true
end

-- --------------------------------------------------------------------------
-- Crash leftovers
-- --------------------------------------------------------------------------

local function clean_dir(tmpdir, cutoff)
  local removed = 0
  for _, n in ipairs(fs.listdir(tmpdir) or {}) do
    local p = tmpdir .. "/" .. n
    if not inflight[n] then
      local dead = false
      local pid, host = n:match("^%d+%.M%d+P(%d+)Q%d+%.(.+)$")
      if pid and host == HOST then
        pid = tonumber(pid)
        -- our own pid: not one of our deliveries, so a former process's
        dead = pid == fs.getpid() or not fs.alive(pid)
      end
      local st = fs.lstat(p)
      if st and st.type ~= "directory" and (dead or st.mtime <= cutoff) then
        if fs.unlink(p) then removed = removed + 1 end
      end
    end
  end
  return removed
end

--- Removes stale `tmp/` files: those older than `max_age` seconds and
-- those whose writer (named in the file name, on this host) is no longer
-- running. Call it at server start.
-- @tparam[opt] number max_age seconds, default `maildir.TMP_MAX_AGE` (36 h)
-- @tparam[opt] string user only this user's Maildir and folders
-- @return the number of files removed
function store_methods:clean_tmp(max_age, user)
  max_age = max_age or M.TMP_MAX_AGE
  -- max_age 0: everything not in flight, even files from this second
  local cutoff = max_age <= 0 and math.huge or os.time() - max_age
  local users
  if user then
    local ok, err = check_user(user)
    if not ok then return nil, err end
    users = { user }
  else
    users = fs.listdir(self.root) or {}
  end
  local removed = 0
  for _, u in ipairs(users) do
    if u:sub(1, 1) ~= "." then
      local udir = self.root .. "/" .. u
      removed = removed + clean_dir(udir .. "/tmp", cutoff)
      for _, n in ipairs(fs.listdir(udir) or {}) do
        if n:sub(1, 1) == "." then
          removed = removed + clean_dir(udir .. "/" .. n .. "/tmp", cutoff)
        end
      end
    end
  end
  return removed
end

return M
