--- parley.http.static: files from a directory, the way a web server serves them.
--
-- `index.html` for directories (optional listing otherwise), media types by
-- extension, `ETag` and `Last-Modified` with `If-None-Match` /
-- `If-Modified-Since` -> 304 and `If-Match` / `If-Unmodified-Since` -> 412
-- (RFC 9110 §13), `Range` -> 206 (several ranges as multipart/byteranges) or
-- 416 with `If-Range` (RFC 9110 §14), bodies by sendfile(2). Paths never
-- leave the root: after percent-decoding, a NUL is refused (400),
-- dot-segments are resolved (RFC 3986 §5.2.4) and a `..` above the root
-- is refused (403), and the resolved path (`core.fs.realpath`, symlinks
-- followed) must stay under the resolved root (else 404). Stat and listing
-- use `core.fs` (LuaFileSystem when an older core lacks them).
-- @module parley.http.static
local core = require "parley.core"
local mime = require "parley.http.mime_types"

-- stat and directory listing: core.fs when it has them, else LuaFileSystem
local fs = core.fs or {}
local stat, listdir
if fs.stat and fs.listdir then
  local floor = math.floor
  -- follows symlinks; the fields the handler uses, with whole-second mtimes
  stat = function(path)
    local st = fs.stat(path)
    if not st then return nil end
    return { mode = st.type, size = st.size, modification = floor(st.mtime) }
  end
  listdir = function(dir) return fs.listdir(dir) or {} end
else
  local lfs = require "lfs"
  stat = function(path) return lfs.attributes(path) end
  listdir = function(dir)
    local names = {}
    for name in lfs.dir(dir) do
      if name ~= "." and name ~= ".." then names[#names + 1] = name end
    end
    return names
  end
end

local http = core.http
local http_date = http.date
local header = http.request_header   -- req:header without its method lookup
local find, format, sub = string.find, string.format, string.sub

local M = {}

--- stat(path) -> {mode = "file"|"directory"|..., size, modification} or nil.
M.stat = stat

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6,
                 Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

-- days since 1970-01-01 of a civil date (proleptic Gregorian)
-- RFC 3986 §5.2.4: "a/b/../c" is "a/c" (as nginx resolves them); nil when
-- a ".." would climb above the root. (core.ftp.normalize_path clamps at
-- the root and drops a trailing "/", which decides a directory's redirect
-- here: not the rule for URLs.)
local function without_dot_segments(rel)
  local lead = rel:sub(1, 1) == "/" and "/" or ""
  local stack, trailing = {}, false
  for seg in (rel:sub(#lead + 1) .. "/"):gmatch("([^/]*)/") do
    trailing = false
    if seg == ".." then
      if #stack == 0 then return nil end
      stack[#stack] = nil
      trailing = true
    elseif seg == "." then
      trailing = true
    else
      stack[#stack + 1] = seg
    end
  end
  local out = lead .. table.concat(stack, "/")
  if trailing and #stack > 0 then out = out .. "/" end
  return out
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

--- Parses an HTTP date (IMF-fixdate, RFC 850 or asctime: RFC 9110 §5.6.7)
-- into seconds since the epoch, or nil.
function M.parse_date(s)
  if type(s) ~= "string" then return nil end
  local d, mon, y, h, mi, sec = s:match("^%a+, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d then
    d, mon, y, h, mi, sec = s:match("^%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT$")
    if y then
      y = tonumber(y)
      y = y + (y < 70 and 2000 or 1900)  -- RFC 9110 §5.6.7: 50-year window, near enough
    end
  end
  if not d then
    mon, d, h, mi, sec, y = s:match("^%a%a%a (%a%a%a) ([ %d]%d) (%d%d):(%d%d):(%d%d) (%d%d%d%d)$")
  end
  local m = mon and MONTHS[mon]
  if not m then return nil end
  return days_from_civil(tonumber(y), m, tonumber(d)) * 86400
         + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
end

-- does the list of an If-None-Match (weak comparison) or an If-Match
-- (`strong`: a W/ tag never matches) hold `etag`? RFC 9110 §8.8.3.2
local function etag_matches(list, etag, strong)
  if list == "*" then return true end
  for tag in list:gmatch("[^,]+") do
    tag = tag:match("^%s*(.-)%s*$")
    if not strong then tag = tag:gsub("^W/", "") end
    if tag == etag then return true end
  end
  return false
end

-- one range-spec against a size: first, last; false (unsatisfiable); nil
-- (malformed)
local function range_spec(spec, size)
  local a, b = spec:match("^%s*(%d*)%s*%-%s*(%d*)%s*$")
  if not a or (a == "" and b == "") or #a > 18 or #b > 18 then return nil end
  if a == "" then                       -- suffix: the last b bytes
    local n = tonumber(b)
    if n == 0 or size == 0 then return false end
    return math.max(0, size - n), size - 1
  end
  local first = tonumber(a)
  local last = b ~= "" and tonumber(b) or size - 1
  if b ~= "" and last < first then return nil end
  if first >= size then return false end
  if last >= size then last = size - 1 end
  return first, last
end

local function range_set(value)
  return value:match("^%s*[bB][yY][tT][eE][sS]%s*=%s*(.-)%s*$")
end

--- Parses a Range header against a size: first, last (0-based, inclusive);
-- or false when the range cannot be satisfied (416); or nil when the header
-- is to be ignored (not bytes, several ranges, malformed: RFC 9110 §14.2).
function M.parse_range(value, size)
  local spec = range_set(value)
  if not spec or find(spec, ",", 1, true) then return nil end
  return range_spec(spec, size)
end

--- Parses a Range header of one or more byte ranges against a size (RFC
-- 9110 §14.1.2): a list of `{first, last}` (0-based, inclusive) in the
-- order asked, the unsatisfiable ones left out; false when none can be
-- satisfied (416); nil when the header is to be ignored (not bytes,
-- malformed, or more than `max` ranges, default 16: RFC 9110 §14.2 lets a
-- server ignore a set it finds abusive).
function M.parse_ranges(value, size, max)
  local spec = range_set(value)
  if not spec then return nil end
  max = max or 16
  local list, seen = {}, 0
  for item in (spec .. ","):gmatch("([^,]*),") do
    if find(item, "%S") then            -- empty list elements are allowed
      seen = seen + 1
      if seen > max then return nil end
      local first, last = range_spec(item, size)
      if first == nil then return nil end
      if first then list[#list + 1] = { first, last } end
    end
  end
  if seen == 0 then return nil end
  if #list == 0 then return false end
  return list
end

-- a 206 multipart/byteranges response for several ranges (RFC 9110 §14.6)
local function send_ranges(res, e, ranges)
  local boundary = format("parley-%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
  local heads, total = {}, 0
  for i, r in ipairs(ranges) do
    heads[i] = format("%s--%s\r\nContent-Type: %s\r\nContent-Range: bytes %d-%d/%d\r\n\r\n",
                      i > 1 and "\r\n" or "", boundary, e.ctype, r[1], r[2], e.size)
    total = total + #heads[i] + r[2] - r[1] + 1
  end
  local tail = "\r\n--" .. boundary .. "--\r\n"
  total = total + #tail
  res.status = 206
  res:header("Content-Type", "multipart/byteranges; boundary=" .. boundary)
  if e.data then
    local out = {}
    for i, r in ipairs(ranges) do
      out[#out + 1] = heads[i]
      out[#out + 1] = e.data:sub(r[1] + 1, r[2] + 1)
    end
    out[#out + 1] = tail
    return res:send(table.concat(out))
  end
  local f = io.open(e.file, "rb")
  if not f then return res:error(404) end
  -- a source with the length set: the parts go out as is, file pieces read
  -- in 64 KiB slices
  res:header("Content-Length", total)
  local i, left = 0, 0
  return res:send(function()
    if left > 0 then
      local piece = f:read(math.min(left, 65536))
      if not piece then f:close() return nil, "file shrank" end
      left = left - #piece
      return piece
    end
    i = i + 1
    local r = ranges[i]
    if not r then
      if f then f:close() f = nil return tail end
      return nil
    end
    f:seek("set", r[1])
    left = r[2] - r[1] + 1
    return heads[i]
  end)
end

local function urlescape(s)
  return (s:gsub("[^%w%-%._~/]", function(c) return format("%%%02X", c:byte()) end))
end

local function listing(res, dir, urlpath, head)
  local names = {}
  for _, name in ipairs(listdir(dir)) do
    if name:sub(1, 1) ~= "." then
      local st = stat(dir .. "/" .. name)
      names[#names + 1] = st and st.mode == "directory" and name .. "/" or name
    end
  end
  table.sort(names)
  local esc = require("parley.http.server").html_escape
  local out = { "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of ",
                esc(urlpath), "</title></head>\n<body><h1>Index of ", esc(urlpath),
                "</h1>\n<ul>\n" }
  if urlpath ~= "/" then out[#out + 1] = "<li><a href=\"../\">../</a></li>\n" end
  for _, name in ipairs(names) do
    out[#out + 1] = format("<li><a href=\"%s\">%s</a></li>\n", urlescape(name), esc(name))
  end
  out[#out + 1] = "</ul></body></html>\n"
  res:header("Content-Type", "text/html; charset=utf-8")
  return res:send(table.concat(out))
end

--- A handler serving the files under `root`.
-- The file path is `req.params["*"]` when the route has a `*`, else
-- `req.path`.
-- @tparam string root directory
-- @tparam[opt] table opts `listing` (false: directories without index.html
--   get 403), `index` ("index.html"), `types` (extension -> media type,
--   over `parley.http.mime_types`), `cache_control` (a header value),
--   `cache_valid` (seconds a path's stat result is trusted, default 1;
--   0: stat every request), `max_ranges` (16: a Range asking for more
--   parts is ignored), `cache_max_file` (files up to this size,
--   default 64 KiB, are kept in memory and sent with their head in one
--   write; larger ones go out with sendfile), `cache_max_entries` (4096)
-- @tparam[opt] integer strip the length of the route prefix to take off
-- `req.path` (app:static's routes); else the path is `req.params["*"]`
-- or, for a handler not under a `*` route, `req.path`
-- @treturn function `function(req, res)`
function M.handler(root, opts, strip)
  opts = opts or {}
  if type(root) ~= "string" then error("static: root must be a directory path", 2) end
  root = root:gsub("/+$", "")
  if root == "" then root = "/" end
  local rmode = (stat(root) or {}).mode
  if rmode ~= "directory" then error("static: not a directory: " .. root, 2) end
  local index = opts.index == nil and "index.html" or opts.index
  local types = opts.types or {}
  local realpath = core.fs and core.fs.realpath
  local realroot = realpath and realpath(root)
  local show_listing = opts.listing
  local cache_control = opts.cache_control
  -- what a path resolved to, re-checked with stat at most every cache_valid
  -- seconds; small files keep their bytes (one write with the head, no
  -- open/sendfile/close per request)
  local cache_valid = opts.cache_valid == nil and 1 or opts.cache_valid
  local cache_max_file = opts.cache_max_file or 65536
  local cache_max_entries = opts.cache_max_entries or 4096
  local max_ranges = opts.max_ranges or 16
  local cache, cached = {}, 0
  local now = core.now

  -- the file to serve for `full` (after index resolution), kept under
  -- `key`: an entry, or nil plus the response to give instead
  local function resolve(req, res, key, full)
    local path = req.path
    local attr = stat(full)
    if not attr then return nil, res:error(404) end
    if realroot then
      local real = realpath(full)
      if not real or (real ~= realroot and real:sub(1, #realroot + 1) ~= realroot .. "/") then
        return nil, res:error(404)
      end
    end
    if attr.mode == "directory" then
      if path:sub(-1) ~= "/" then
        local loc = urlescape(path) .. "/" .. (req.query and "?" .. req.query or "")
        return nil, res:redirect(loc, 301)
      end
      local dir = full:gsub("/+$", "")
      local ia = index and stat(dir .. "/" .. index)
      if ia and ia.mode == "file" then
        full, attr = dir .. "/" .. index, ia
      elseif show_listing then
        return nil, listing(res, dir, path, req.method == "HEAD")
      else
        return nil, res:error(403)
      end
    elseif attr.mode ~= "file" then
      return nil, res:error(403)
    end
    local size, mtime = attr.size, attr.modification
    local e = {
      file = full, size = size, mtime = mtime,
      etag = format('"%x-%x"', mtime, size), lastmod = http_date(mtime),
      ctype = types[full:match("%.(%w+)$") or ""] or mime.lookup(full),
      checked = now(),
    }
    e.fields = { "Content-Type", e.ctype, "Last-Modified", e.lastmod, "ETag", e.etag,
                 "Accept-Ranges", "bytes", cache_control and "Cache-Control" or nil, cache_control }
    if cache_valid > 0 and size <= cache_max_file then
      local f = io.open(full, "rb")
      if f then
        e.data = f:read(size)
        f:close()
        if not e.data or #e.data ~= size then e.data = nil end
      end
    end
    if cache_valid > 0 then
      if cached >= cache_max_entries then cache, cached = {}, 0 end
      cache[key] = e
      cached = cached + 1
    end
    return e
  end

  return function(req, res)
    -- the cache's key is the path as asked (the usual request makes no
    -- new string); "dir" (redirected) and "dir/" are different keys
    local key
    if strip then
      key = req.path
    else
      key = req.params["*"] or req.path
    end
    local e = cache[key]
    if not e or now() - e.checked >= cache_valid then
      local rel = strip and sub(key, strip + 1) or key
      -- RFC 9110 §4.2.3/§7.1: refuse what could leave the root (never
      -- cached: checked again for every such request)
      if find(rel, "\0", 1, true) then return res:error(400) end
      if find(rel, "..", 1, true) and find("/" .. rel .. "/", "/%.%./") then
        rel = without_dot_segments(rel)
        if not rel then return res:error(403) end
      end
      local done
      e, done = resolve(req, res, key, root .. "/" .. rel)
      if not e then return done end
    end
    local inm, range, ims, im, ius = header(req, "if-none-match", "range", "if-modified-since",
                                            "if-match", "if-unmodified-since")
    -- the common case: a whole small file, sent as the bytes kept from the
    -- last time (rebuilt once a second)
    if e.data and not (inm or range or ims or im or ius) then
      return res:send_memo(e, e.fields, e.data)
    end
    local size, etag, lastmod = e.size, e.etag, e.lastmod
    local full = e.file
    local fields = e.fields
    for i = 1, #fields, 2 do res:header(fields[i], fields[i + 1]) end
    -- RFC 9110 §13.2.2: If-Match (strong, §13.1.1), else If-Unmodified-Since
    -- (§13.1.4), fail with 412; then If-None-Match, else If-Modified-Since
    if im then
      if not etag_matches(im, etag, true) then return res:error(412) end
    else
      local t = ius and M.parse_date(ius)
      if t and e.mtime > t then return res:error(412) end
    end
    if inm then
      if etag_matches(inm, etag) then return res:send(nil, 304) end
    else
      local t = ims and M.parse_date(ims)
      if t and e.mtime <= t then return res:send(nil, 304) end
    end
    if range and req.method == "GET" then
      local ifr = header(req, "if-range")
      if ifr and ifr ~= etag and ifr ~= lastmod then range = nil end
      if range then
        local ranges = M.parse_ranges(range, size, max_ranges)
        if ranges == false then
          res:header("Content-Range", "bytes */" .. size)
          return res:error(416)
        elseif ranges and #ranges > 1 then
          return send_ranges(res, e, ranges)
        elseif ranges then
          local first, last = ranges[1][1], ranges[1][2]
          res.status = 206
          res:header("Content-Range", format("bytes %d-%d/%d", first, last, size))
          if e.data then return res:send(e.data:sub(first + 1, last + 1)) end
          return res:sendfile(full, first, last - first + 1)
        end
      end
    end
    if e.data then return res:send(e.data) end
    return res:sendfile(full, 0, size)
  end
end

M.etag_matches = etag_matches
return M
