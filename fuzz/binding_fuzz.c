/*
** libFuzzer target for the Lua bindings of the smtp, ftp, http and telnet
** codecs (the C glue in csrc/<codec>.c that builds Lua values from what
** the pure cores parse; imap's binding has imap_fuzz) and for the C entry
** points the stream and the Maildir store call.  The first byte picks a
** mode (% 8), the rest is the input, handed to every parse function and
** decoder of that codec through core.so's Lua API, whole and in two
** pieces, under ASan + UBSan.  Round trips checked through the bindings:
** smtp data_encoder -> data_decoder, ftp ascii_encoder -> ascii_decoder,
** http chunk -> chunked_decoder, telnet escape -> feed (BINARY, and a
** printed line: codec:escape(text, true) under BINARY and NVT).  Modes:
**  4  parley_telnet_line (stream:receive_telnet_line's fast path) on a
**     codec primed by a prefix: a line it takes is the line the codec
**     path and read_line's split give, and what it leaves decodes to
**     what the codec path leaves;
**  5  http.parse_request's request object and parley_http_receive_request
**     (stream:receive_http_head): same values as each other and as the
**     plain form; path, query, keep-alive, body framing, the 400 (a
**     %00 in the path, Host) and 417 refusals and _continue against a
**     reference written here;
**  6  http.response_head with the server's own fields and
**     parley_http_response_head give the same head, which parses back
**     to the status and fields given; http.reply and parley_http_reply
**     give the same reply, framed as the request's facts say (length,
**     body, Connection); the server's response object's header and
**     get_header against a field list kept in the driver, and the
**     fields, status and body res:send hands the connection's send;
**  7  fs.maildir_uidlist's text; fs.read_head against a reference at
**     chunk sizes 1-7 and the default; fs.maildir_list on Maildir names made
**     from the input (name, flags, size, vsize, mtime, key against a
**     reference), fs.maildir_sort of them (by key, stable), then
**     fs.maildir_claim of those files into cur/.
** A Lua error that is not a returned `nil, err` aborts only when it says
** "roundtrip" (our own check); argument errors would be our driver's
** (BINDING_FUZZ_VERBOSE=1 prints them).
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "driver.h"

int luaopen_parley_core(lua_State *L);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char driver[] =
    "local core, which, s, cut = ...\n"
    "local function both(f) f(s) f(s:sub(1, cut)) end\n"
    "if which == 0 then\n"
    "  local smtp = core.smtp\n"
    "  both(function(x) smtp.parse_command(x) smtp.parse_path(x) smtp.relay_vector(x)\n"
    "    smtp.parse_reply_line(x) smtp.parse_reply_line(x, 8) smtp.enhanced_valid(x) end)\n"
    "  for _, o in ipairs{ {}, { bare = 'normalize' }, { max_line = 20 } } do\n"
    "    local d = smtp.data_decoder(o)\n"
    "    d:feed(s:sub(1, cut)) d:feed(s:sub(cut + 1)) d:error() d:size() d:done()\n"
    "  end\n"
    "  local e = smtp.data_encoder()\n"
    "  local wire = e:feed(s:sub(1, cut)) .. e:feed(s:sub(cut + 1)) .. e:finish()\n"
    "  local d = smtp.data_decoder({ bare = 'normalize' })\n"
    "  local out, done = d:feed(wire)\n"
    "  if not done then error('roundtrip: smtp encoder output did not end the decoder') end\n"
    "elseif which == 1 then\n"
    "  local ftp = core.ftp\n"
    "  both(function(x) ftp.parse_port(x) ftp.parse_pasv(x) ftp.parse_epsv(x) ftp.parse_eprt(x)\n"
    "    ftp.parse_time(x) ftp.parse_list_line(x) ftp.parse_facts(x) ftp.parse_feat(x)\n"
    "    ftp.parse_command(x) ftp.parse_size(x) ftp.normalize_path('/a/b', x)\n"
    "    ftp.normalize_path(x, '..') end)\n"
    "  local p = ftp.reply_parser({ max_lines = 4, max_line = 64 })\n"
    "  for line in s:gmatch('[^\\n]*') do\n"
    "    local code, text = p:feed_line(line)\n"
    "    if code == nil and text then p:reset() end\n"
    "  end\n"
    "  p:pending() tostring(p)\n"
    "  local e, d = ftp.ascii_encoder(), ftp.ascii_decoder()\n"
    "  local wire = e:feed(s:sub(1, cut)) .. e:feed(s:sub(cut + 1)) .. (e:finish() or '')\n"
    "  local back = d:feed(wire:sub(1, cut)) .. d:feed(wire:sub(cut + 1)) .. (d:finish() or '')\n"
    "  if not s:find('\\r', 1, true) and back ~= s then error('roundtrip: ftp TYPE A') end\n"
    "elseif which == 2 then\n"
    "  local http = core.http\n"
    "  both(function(x)\n"
    "    local h = http.parse_request(x)\n"
    "    if type(h) == 'table' then pcall(http.body_framing, h, false, h.method, 0, h.minor) end\n"
    "    h = http.parse_response(x)\n"
    "    if type(h) == 'table' then pcall(http.body_framing, h, true, 'GET', h.status, h.minor) end\n"
    "    http.parse_request(x, 1, { lenient = true, max_headers = 3, max_request_line = 40 })\n"
    "    http.parse_response(x, 1 + cut % (#x + 1), { max_head = 64 }) end)\n"
    "  http.parse_request(s, 1, nil, cut)\n"
    "  local d = http.chunked_decoder({ max_chunk_size = 100000 })\n"
    "  d:feed(s:sub(1, cut)) d:feed(s:sub(cut + 1)) d:trailers() d:done() tostring(d)\n"
    "  local function piece(x) return x == '' and '' or http.chunk(x) end  -- chunk('') ends the body\n"
    "  local enc = piece(s:sub(1, cut)) .. piece(s:sub(cut + 1)) .. http.chunk('')\n"
    "  local back, done = http.chunked_decoder():feed(enc)\n"
    "  if not done or back ~= s then error('roundtrip: http chunked') end\n"
    "elseif which == 3 then\n"
    "  local telnet = core.telnet\n"
    "  for _, o in ipairs{ {}, { max_subneg = 8 } } do\n"
    "    local t = telnet.new(o)\n"
    "    t:feed(s:sub(1, cut)) t:feed(s:sub(cut + 1))\n"
    "    t:enable('binary', 'us') t:disable('echo', 'him') t:state('naws', 'him') tostring(t)\n"
    "  end\n"
    "  both(function(x) telnet.ttype_is(x) end)\n"
    "  local t = telnet.new({ us = { binary = true }, him = { binary = true } })\n"
    "  local back = t:feed(telnet.escape(s))\n"
    "  if t:enabled('binary', 'him') and back ~= s then error('roundtrip: telnet escape') end\n"
    "  -- a printed line (escape mode 2 under BINARY, NVT else): a bare LF\n"
    "  -- comes back as CR LF, and the line's own CR LF follows\n"
    "  local want = s:gsub('\\r?\\n', '\\r\\n') .. '\\r\\n'\n"
    "  for _, binary in ipairs{ true, false } do\n"
    "    local us = telnet.new({ us = { binary = true } })\n"
    "    local peer = telnet.new({ him = { binary = true } })\n"
    "    if binary then\n"
    "      us:enable('binary', 'us') us:feed('\\255\\253\\0')\n"
    "      peer:feed('\\255\\251\\0')\n"
    "    end\n"
    "    if us:enabled('binary', 'us') ~= binary or peer:enabled('binary', 'him') ~= binary then\n"
    "      error('roundtrip: telnet BINARY not agreed')\n"
    "    end\n"
    "    if peer:feed(us:escape(s, true)) ~= want then error('roundtrip: telnet line escape') end\n"
    "  end\n"
    "elseif which == 4 then\n"
    "  -- a line taken in place (parley_telnet_line), as session:read_line does,\n"
    "  -- against the codec path: codec:feed, then read_line's split\n"
    "  local telnet = core.telnet\n"
    "  local function codec()\n"
    "    local t = telnet.new{ us = { 'echo', 'sga', 'binary' }, newline = 'crlf',\n"
    "      him = { 'naws', 'ttype', 'new_environ', 'binary', 'sga' }, max_subneg = 16 }\n"
    "    t:feed(s:sub(1, cut))\n"
    "    return t\n"
    "  end\n"
    "  local rest = s:sub(cut + 1)\n"
    "  local max = cut % 4 == 0 and math.maxinteger or cut % 61\n"
    "  local t = codec()\n"
    "  local line, used = fz_telnet_line(t, rest, max)\n"
    "  if line then\n"
    "    if #line > max or line:find('[\\r\\n\\3\\255]') or used <= #line or used > #line + 3 then\n"
    "      error('roundtrip: telnet line out of bounds')\n"
    "    end\n"
    "    local d = t:feed(rest)\n"
    "    local i = d:find('[\\r\\n]')\n"
    "    if not i or d:sub(1, i - 1) ~= line then error('roundtrip: telnet line differs from the codec path') end\n"
    "    local after = d:sub(i + 1)\n"
    "    if d:byte(i) == 13 and after:byte(1) == 10 then after = after:sub(2) end\n"
    "    if codec():feed(rest:sub(used + 1)) ~= after then error('roundtrip: telnet line left other bytes') end\n"
    "  elseif used ~= 0 then\n"
    "    error('roundtrip: telnet line refused but consumed')\n"
    "  end\n"
    "end\n"
    "if which == 5 then\n"
    "  -- the server's request object (http.parse_request with a metatable, and\n"
    "  -- parley_http_receive_request as stream:receive_http_head calls it)\n"
    "  -- against the plain form and a reference of what it decides\n"
    "  local http = core.http\n"
    "  local peer, conn = 'peer', {}\n"
    "  local mt = { __index = core.http.request_index({}, peer, conn) }\n"
    "  local function lower_has(v, token)        -- a Connection list names token\n"
    "    for t in v:gsub('[\\r\\n]', ' '):gmatch('[^, \\t]+') do\n"
    "      if t:lower() == token then return true end\n"
    "    end\n"
    "    return false\n"
    "  end\n"
    "  local function ref_path(target)\n"
    "    local p = target:match('^[^?]*')\n"
    "    if p:sub(1, 1) ~= '/' then\n"
    "      local a = p:match('^[Hh][Tt][Tt][Pp][Ss]?://(.*)$')\n"
    "      if a then p = a:match('/.*$') or '/' end\n"
    "    end\n"
    "    return (p:gsub('%%(%x%x)', function(h) return string.char(tonumber(h, 16)) end))\n"
    "  end\n"
    "  for _, lim in ipairs{ false, { lenient = true, max_headers = 4 }, http.limits{ max_head = 96 } } do\n"
    "    lim = lim or nil\n"
    "    local n, method, target, minor, h = http.parse_request(s, 1, lim)\n"
    "    local r = table.pack(http.parse_request(s, 1, lim, nil, mt))\n"
    "    local c = table.pack(fz_receive_request(s, lim, 0, mt))\n"
    "    if r.n ~= c.n then error('roundtrip: http request object: C and Lua forms differ') end\n"
    "    for k = 1, r.n do\n"
    "      if k ~= 2 and r[k] ~= c[k] then error('roundtrip: http request object: C and Lua forms differ') end\n"
    "    end\n"
    "    if type(n) ~= 'number' then\n"
    "      if r[1] ~= n or r[2] ~= method or r[3] ~= target then error('roundtrip: http request object: refusal differs') end\n"
    "    else\n"
    "      local req, keep, kind, len, st = r[2], r[3], r[4], r[5], r[6]\n"
    "      if kind and (r[7] ~= method or r[8] ~= ref_path(target) or r[9] ~= minor) then\n"
    "        error('roundtrip: http request object: method, path, minor returned')\n"
    "      end\n"
    "      if r[1] ~= n or getmetatable(req) ~= mt or req.peer ~= peer or req.conn ~= conn\n"
    "        or req.method ~= method or req.target ~= target or req.minor ~= minor then\n"
    "        error('roundtrip: http request object: head differs from the plain form')\n"
    "      end\n"
    "      local names = {}\n"
    "      for k, v in pairs(h) do\n"
    "        if type(k) == 'string' then\n"
    "          names[#names + 1] = k\n"
    "          if http.request_header(req, k) ~= v then error('roundtrip: http request object: request_header differs') end\n"
    "        end\n"
    "      end\n"
    "      names[#names + 1] = 'x-not-there'\n"
    "      local all = table.pack(http.request_header(req, table.unpack(names)))\n"
    "      if all.n ~= #names then error('roundtrip: http request object: request_header count') end\n"
    "      for k = 1, #names do\n"
    "        if all[k] ~= h[names[k]] then error('roundtrip: http request object: request_header of several differs') end\n"
    "      end\n"
    "      for k, v in pairs(h) do\n"
    "        if req.headers[k] ~= v then error('roundtrip: http request object: headers differ') end\n"
    "      end\n"
    "      if req.path ~= ref_path(target) then error('roundtrip: http request object: path') end\n"
    "      if req.query ~= target:match('%?(.*)$') then error('roundtrip: http request object: query') end\n"
    "      local hosts, hostcomma, expects, close, ka = 0, false, 0, false, false\n"
    "      for k = 1, #h, 2 do\n"
    "        local name, v = h[k], h[k + 1]\n"
    "        if name == 'host' then hosts = hosts + 1 hostcomma = hostcomma or v:find(',', 1, true) ~= nil end\n"
    "        if name == 'expect' then expects = expects + 1 end\n"
    "        if name == 'connection' then close = close or lower_has(v, 'close') ka = ka or lower_has(v, 'keep-alive') end\n"
    "      end\n"
    "      if keep ~= (minor == 1 and not close or minor == 0 and ka) then\n"
    "        error('roundtrip: http request object: keep-alive')\n"
    "      end\n"
    "      local fk, fa, fb = http.body_framing(h, true, nil, nil, minor)\n"
    "      if kind ~= fk or kind == nil and (len ~= fa or st ~= fb) or kind == 'length' and len ~= fa then\n"
    "        error('roundtrip: http request object: body framing')\n"
    "      end\n"
    "      if kind then\n"
    "        local want\n"
    "        if req.path:find('\\0', 1, true) then want = 400\n"
    "        elseif minor == 1 and (hosts ~= 1 or hostcomma) then want = 400\n"
    "        elseif expects > 0 and not (minor == 1 and expects == 1 and h.expect:lower() == '100-continue') then want = 417 end\n"
    "        if st ~= want then error('roundtrip: http request object: refusal status') end\n"
    "        if (req._continue == true) ~= (want == nil and expects > 0 and kind ~= 'none') then\n"
    "          error('roundtrip: http request object: 100-continue')\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "elseif which == 6 then\n"
    "  -- response_head with the server's own fields (and the C form the\n"
    "  -- stream uses) parses back to what was given\n"
    "  local http = core.http\n"
    "  local parts = {}\n"
    "  for p in (s .. '\\0'):gmatch('([^\\0]*)\\0') do parts[#parts + 1] = p end\n"
    "  local status, minor = 100 + cut % 900, cut % 2\n"
    "  local reason, server, conn = parts[1], parts[2], parts[3]\n"
    "  local length = ({ 'chunked', #s, false })[cut % 3 + 1]\n"
    "  local fields = {}\n"
    "  for k = 4, #parts - 1, 2 do fields[#fields + 1] = 'x-' .. parts[k] fields[#fields + 1] = parts[k + 1] end\n"
    "  if cut % 5 == 0 then fields = false end\n"
    "  local ok, head = pcall(http.response_head, status, fields, reason, minor, nil, false, server, length, conn)\n"
    "  local cok, chead = pcall(fz_response_head, status, fields, reason, minor, nil, false, server, length, conn)\n"
    "  if ok ~= cok or ok and head ~= chead then error('roundtrip: http response_head: C and Lua forms differ') end\n"
    "  if ok then\n"
    "    local n, pminor, pstatus, preason, h = http.parse_response(head, 1, { max_head = 1 << 20, max_headers = 1000 })\n"
    "    if n ~= #head or pminor ~= minor or pstatus ~= status then\n"
    "      error('roundtrip: http response_head does not parse back: ' .. tostring(pminor))\n"
    "    end\n"
    "    local function trim(v) return v and (v:gsub('^[ \\t]+', ''):gsub('[ \\t]+$', '')) end\n"
    "    if server and h.server ~= trim(server) or conn and h.connection ~= trim(conn)\n"
    "      or type(length) == 'number' and h['content-length'] ~= tostring(length)\n"
    "      or length == 'chunked' and h['transfer-encoding'] ~= 'chunked' then\n"
    "      error('roundtrip: http response_head own fields')\n"
    "    end\n"
    "  end\n"
    "  -- reply: the framing decided from the request's facts, C form alike\n"
    "  local keep, head = cut % 7 < 4, cut % 11 == 0\n"
    "  local head_\n"
    "  ok, head_ = pcall(http.reply, status, fields, reason, s, server, keep, minor, head)\n"
    "  cok, chead = pcall(fz_reply, status, fields, reason, s, server, keep, minor, head)\n"
    "  -- (each has a Date of now: a second may turn between the two calls)\n"
    "  local function undated(x) return (x:gsub('\\r\\nDate: [^\\r]*', '', 1)) end\n"
    "  if ok ~= cok or ok and undated(head_) ~= undated(chead) then\n"
    "    error('roundtrip: http reply: C and Lua forms differ')\n"
    "  end\n"
    "  if ok then\n"
    "    local n, pminor, pstatus, _, h = http.parse_response(head_, 1, { max_head = 1 << 20, max_headers = 1000 })\n"
    "    local bodiless = status < 200 or status == 204 or status == 304\n"
    "    local want_conn = not keep and 'close' or minor == 0 and 'keep-alive' or nil\n"
    "    if type(n) ~= 'number' or pminor ~= 1 or pstatus ~= status or h.connection ~= want_conn\n"
    "      or h['content-length'] ~= (not bodiless and tostring(#s) or nil) or not h.date\n"
    "      or head_:sub(n + 1) ~= ((bodiless or head) and '' or s) then\n"
    "      error('roundtrip: http reply framing')\n"
    "    end\n"
    "  end\n"
    "  -- the server's response object (csrc/response.c): header and\n"
    "  -- get_header against a field list kept here, then what res:send\n"
    "  -- hands the connection's send\n"
    "  local sent\n"
    "  FZ_RESMETA = FZ_RESMETA or http.response_meta({ header = http.response_header,\n"
    "    get_header = http.response_get_header, send = http.response_send })\n"
    "  local new = http.responder({ {}, {}, function(_, st, f, r, b) sent = { st, f, r, b } return true end,\n"
    "                             false }, FZ_RESMETA)\n"
    "  local res, model = new(keep, minor, head), {}\n"
    "  local names = { 'A', 'a', 'B', 'Set-Cookie', parts[1] or 'x', parts[2] or 'y' }\n"
    "  for i = 1, math.min(#s, 64) do\n"
    "    local b = s:byte(i)\n"
    "    local name = names[b % #names + 1]\n"
    "    local value = (b >> 4) % 3 ~= 0 and tostring(b) or nil\n"
    "    res:header(name, value)\n"
    "    local ln, at = name:lower(), nil\n"
    "    for k = 1, #model, 2 do if model[k]:lower() == ln then at = k break end end\n"
    "    if value == nil then\n"
    "      if at then table.remove(model, at) table.remove(model, at) end\n"
    "    elseif at then model[at + 1] = value\n"
    "    else model[#model + 1] = name model[#model + 1] = value end\n"
    "    if res:get_header(name) ~= value then error('roundtrip: response get_header') end\n"
    "  end\n"
    "  res.status = status\n"
    "  if not res:send(s) or not res.sent or res._bytes ~= #s then error('roundtrip: response send') end\n"
    "  local f = sent[2] or {}\n"
    "  if sent[1] ~= status or sent[4] ~= s or #f ~= #model then error('roundtrip: response fields') end\n"
    "  for k = 1, #model do if f[k] ~= model[k] then error('roundtrip: response fields') end end\n"
    "elseif which == 7 then\n"
    "  -- Maildir names (fs.maildir_list parses them) and the uidlist text\n"
    "  local fs = core.fs\n"
    "  local recs, names, want = {}, {}, {}\n"
    "  for p in s:gmatch('[^/\\0]+') do\n"
    "    if #names < 4 and p:byte(1) ~= 46 and #p <= 255 then names[#names + 1] = p end\n"
    "  end\n"
    "  for k, name in ipairs(names) do\n"
    "    recs[k] = { uid = k * (cut + 1), name = name }\n"
    "    want[#want + 1] = k * (cut + 1) .. ' :' .. name .. '\\n'\n"
    "  end\n"
    "  if fs.maildir_uidlist(s, recs) ~= s .. table.concat(want) then error('roundtrip: fs.maildir_uidlist') end\n"
    "  -- a Maildir of our own (new/ and cur/) under /tmp, reused by the run\n"
    "  if not FZ_DIR then\n"
    "    FZ_DIR = assert(fs.realpath('/tmp')) .. '/parley-fuzz-' .. fs.getpid()\n"
    "    fs.mkdir(FZ_DIR) fs.mkdir(FZ_DIR .. '/new') fs.mkdir(FZ_DIR .. '/cur')\n"
    "  end\n"
    "  -- fs.read_head: the bytes up to the first blank line, read in chunks\n"
    "  do\n"
    "    local hp = FZ_DIR .. '/head'\n"
    "    local f = assert(io.open(hp, 'wb')) f:write(s) f:close()\n"
    "    local want = s\n"
    "    if s:sub(1, 1) == '\\n' then want = '\\n'\n"
    "    elseif s:sub(1, 2) == '\\r\\n' then want = '\\r\\n'\n"
    "    else\n"
    "      for i in s:gmatch('()\\n') do\n"
    "        if s:sub(i + 1, i + 1) == '\\n' then want = s:sub(1, i + 1) break end\n"
    "        if s:sub(i + 1, i + 2) == '\\r\\n' then want = s:sub(1, i + 2) break end\n"
    "      end\n"
    "    end\n"
    "    if fs.read_head(hp, 1 + cut % 7) ~= want or fs.read_head(hp) ~= want then\n"
    "      error('roundtrip: fs.read_head')\n"
    "    end\n"
    "  end\n"
    "  local made = {}\n"
    "  for _, name in ipairs(names) do\n"
    "    local f = io.open(FZ_DIR .. '/new/' .. name, 'w')\n"
    "    if f then f:close() made[name] = true end\n"
    "  end\n"
    "  local out = {}\n"
    "  local count = assert(fs.maildir_list(FZ_DIR .. '/new', cut % 2 == 0, out, 0))\n"
    "  local nmade = 0\n"
    "  for _ in pairs(made) do nmade = nmade + 1 end\n"
    "  if count ~= nmade then error('roundtrip: fs.maildir_list count') end\n"
    "  local function digits(v, at)                -- take_digits: at most 18\n"
    "    local d = v:match('^%d+', at)\n"
    "    if d then d = d:sub(1, 18) return math.tointeger(tonumber(d)), at + #d end\n"
    "  end\n"
    "  local function field(v, tag)\n"
    "    local at = v:find(',' .. tag .. '=', 1, true)\n"
    "    return at and (digits(v, at + 3)) or nil\n"
    "  end\n"
    "  for _, r in ipairs(out) do\n"
    "    local at = r.file:find(':2,', 1, true)\n"
    "    local name = at and r.file:sub(1, at - 1) or r.file\n"
    "    if not made[r.file] or r.name ~= name or r.path ~= FZ_DIR .. '/new/' .. r.file\n"
    "      or r.flags ~= (at and r.file:sub(at + 3) or '') or r.new ~= (cut % 2 == 0) or r.size ~= field(name, 'S') or r.vsize ~= field(name, 'W') then\n"
    "      error('roundtrip: fs.maildir_list record of ' .. r.file)\n"
    "    end\n"
    "    local sec, p = digits(name, 1)\n"
    "    if sec and sec < 4000000000 then\n"
    "      local usec, q = 0, 0\n"
    "      local u, pid, qq = name:match('^%.M(%d+)P(%d+)Q(%d+)%.', p)\n"
    "      if u and #u <= 18 and #pid <= 18 and #qq <= 18 and tonumber(u) < 1000000 then\n"
    "        usec, q = math.tointeger(tonumber(u)), math.tointeger(tonumber(qq))\n"
    "      end\n"
    "      if r.mtime ~= sec or r.key ~= ((sec * 1000000 + usec) << 10 | (q & 1023)) then\n"
    "        error('roundtrip: fs.maildir_list key of ' .. r.file)\n"
    "      end\n"
    "    elseif r.mtime or r.key then\n"
    "      error('roundtrip: fs.maildir_list key without a time in ' .. r.file)\n"
    "    end\n"
    "  end\n"
    "  -- the IMAP index's first listing (fs.maildir_listing) makes the same\n"
    "  -- records, all new, and its tables by name and by file\n"
    "  local recs2, byname, lnew, lcur, fresh = assert(fs.maildir_listing(FZ_DIR))\n"
    "  -- (one record a name: of \"n\" and \"n:2,S\" both in new/, one is listed)\n"
    "  local byfile, unique, nnames = {}, {}, 0\n"
    "  for _, r in ipairs(out) do\n"
    "    byfile[r.file] = r\n"
    "    if not unique[r.name] then nnames = nnames + 1 end\n"
    "    unique[r.name] = (unique[r.name] or 0) + 1\n"
    "  end\n"
    "  if #recs2 ~= nnames or #fresh ~= nnames or next(lcur) then error('roundtrip: fs.maildir_listing count') end\n"
    "  for k, r2 in ipairs(recs2) do\n"
    "    local r = byfile[r2.file]\n"
    "    if not r or r2.name ~= r.name or r2.flags ~= r.flags or r2.path ~= r.path or r2.size ~= r.size\n"
    "      or r2.vsize ~= r.vsize or r2.mtime ~= r.mtime or r2.key ~= r.key or r2.new ~= true\n"
    "      or lnew[r2.file] ~= r2 or fresh[k] ~= r2 or unique[r2.name] == 1 and byname[r2.name] ~= r2 then\n"
    "      error('roundtrip: fs.maildir_listing record of ' .. r2.file)\n"
    "    end\n"
    "  end\n"
    "  -- those with a key in delivery order (fs.maildir_sort: by key, stable)\n"
    "  local keyed = {}\n"
    "  for _, r in ipairs(out) do if r.key then keyed[#keyed + 1] = r end end\n"
    "  local sorted = fs.maildir_sort(keyed)\n"
    "  local pos = {}\n"
    "  for j, r in ipairs(keyed) do pos[r] = j end\n"
    "  for k = 1, #keyed do\n"
    "    if #sorted ~= #keyed or k > 1 and (sorted[k - 1].key > sorted[k].key or sorted[k - 1].key == sorted[k].key\n"
    "      and pos[sorted[k - 1]] > pos[sorted[k]]) then\n"
    "      error('roundtrip: fs.maildir_sort')\n"
    "    end\n"
    "  end\n"
    "  -- claimed into cur/ as <name>:2,<flags> (flags: a piece of the input)\n"
    "  local flags = s:sub(cut + 1, cut + 1 + cut % 7):gsub('[/\\0]', '')\n"
    "  -- (two files of one name, \"n\" and \"n:2,S\", would both become one\n"
    "  -- file in cur/, the second replacing the first: not claimed together)\n"
    "  local known_new, known_cur, files, bases, longest = {}, {}, {}, {}, 0\n"
    "  for k, r in ipairs(out) do\n"
    "    if bases[r.name] then out = {} break end\n"
    "    bases[r.name] = true\n"
    "    r.uid, r.new, r.flags = k, true, flags\n"
    "    known_new[r.file], files[k] = r, r.file\n"
    "    if #r.name > longest then longest = #r.name end\n"
    "  end\n"
    "  local ok, moved, uids = pcall(fs.maildir_claim, FZ_DIR, out, known_new, known_cur)\n"
    "  for _, name in ipairs(names) do fs.unlink(FZ_DIR .. '/new/' .. name) end\n"
    "  for _, r in ipairs(out) do fs.unlink(FZ_DIR .. '/cur/' .. r.file) end\n"
    "  if ok then\n"
    "    local m = 0\n"
    "    for k, r in ipairs(out) do\n"
    "      if r.new == false then\n"
    "        m = m + 1\n"
    "        if r.file ~= r.name .. ':2,' .. flags or r.path ~= FZ_DIR .. '/cur/' .. r.file\n"
    "          or known_cur[r.file] ~= r or known_new[files[k]] ~= nil or not uids[k] then\n"
    "          error('roundtrip: fs.maildir_claim record of ' .. files[k])\n"
    "        end\n"
    "      elseif known_new[r.file] ~= r or uids[k] then\n"
    "        error('roundtrip: fs.maildir_claim left ' .. r.file .. ' half claimed')\n"
    "      end\n"
    "    end\n"
    "    if m ~= moved then error('roundtrip: fs.maildir_claim count') end\n"
    "  elseif #flags + 3 + longest <= 255 then\n"
    "    error('roundtrip: fs.maildir_claim raised: ' .. tostring(moved))\n"
    "  end\n"
    "end\n";

/* fz_telnet_line(codec, buf, max) -> line | false, used: the C entry
   stream:receive_telnet_line calls, on a string instead of a stream */
static int fz_telnet_line(lua_State *L) {
  size_t len, used = 1;
  const char *buf;
  luaL_checkudata(L, 1, PARLEY_TELNET_CODEC);
  buf = luaL_checklstring(L, 2, &len);
  parley_telnet_line(L, 1, buf, len, (size_t)luaL_checkinteger(L, 3), &used);
  lua_pushinteger(L, (lua_Integer)used);
  return 2;
}

/* fz_receive_request(buf, limits, seen, mt) -> n, ... as
   http.parse_request(buf, 1, limits, seen, mt): the C entry
   stream:receive_http_head calls */
static int fz_receive_request(lua_State *L) {
  size_t len, used = 0;
  const char *buf = luaL_checklstring(L, 1, &len);
  int n;
  lua_settop(L, 4);
  n = parley_http_receive_request(L, buf, len, 2,
                                  (size_t)luaL_optinteger(L, 3, 0), &used, 4);
  if (n == 0) {
    lua_pushnil(L);
    return 1;
  }
  if (used == 0) return n;
  lua_pushinteger(L, (lua_Integer)used);
  lua_insert(L, -(n + 1));
  return n + 1;
}

/* the head into stack slot 10 (the emitter's own slot is on top) */
static void emit_head(void *ud, const char *p, size_t n) {
  lua_State *L = ud;
  lua_pushlstring(L, p, n);
  lua_replace(L, 10);
}

/* fz_reply(status, fields, reason, body, server, keep, minor, head) -> the
   reply parley_http_reply emits (stream:send_http_reply's C entry) */
static void emit_append(void *ud, const char *p, size_t n) {
  lua_State *L = ud;
  lua_pushvalue(L, 9);
  lua_pushlstring(L, p, n);
  lua_concat(L, 2);
  lua_replace(L, 9);
}

static int fz_reply(lua_State *L) {
  lua_settop(L, 8);
  lua_pushliteral(L, "");             /* slot 9: what was emitted so far */
  parley_http_reply(L, 1, emit_append, L);
  lua_settop(L, 9);
  return 1;
}

/* fz_response_head(status, fields, reason, minor, body, date, server,
   length, connection) -> the head parley_http_response_head emits (the
   C entry of stream:send_http_response; body and date unused) */
static int fz_response_head(lua_State *L) {
  lua_settop(L, 10);
  parley_http_response_head(L, 1, 0, emit_head, L);
  lua_settop(L, 10);
  return 1;
}

/* rmdir the run's own Maildir (FZ_DIR of the driver) when libFuzzer exits */
static lua_State *the_state;
static void remove_maildir(void) {
  const char *dir;
  char sub[4096];
  if (!the_state || lua_getglobal(the_state, "FZ_DIR") != LUA_TSTRING) return;
  dir = lua_tostring(the_state, -1);
  snprintf(sub, sizeof sub, "%s/new", dir);
  rmdir(sub);
  snprintf(sub, sizeof sub, "%s/cur", dir);
  rmdir(sub);
  rmdir(dir);
}

/* one Lua state for the whole run (a new one per input would cost more
   than the input); the driver function stays on its stack at index 1 */
static lua_State *state(void) {
  static lua_State *L;
  if (L) return L;
  L = luaL_newstate();
  if (!L) abort();
  luaL_openlibs(L);
  if (luaL_loadbuffer(L, driver, sizeof driver - 1, "binding_fuzz") != LUA_OK) abort();
  luaL_requiref(L, "parley.core", luaopen_parley_core, 0);
  lua_pop(L, 1);
  lua_register(L, "fz_telnet_line", fz_telnet_line);
  lua_register(L, "fz_receive_request", fz_receive_request);
  lua_register(L, "fz_response_head", fz_response_head);
  lua_register(L, "fz_reply", fz_reply);
  the_state = L;
  atexit(remove_maildir);
  return L;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = state();
  size_t cut;
  if (size < 1) return 0;
  lua_pushvalue(L, 1);
  luaL_requiref(L, "parley.core", luaopen_parley_core, 0);
  lua_pushinteger(L, data[0] % 8);
  lua_pushlstring(L, (const char *)data + 1, size - 1);
  cut = size > 1 ? (size_t)data[size - 1] % size : 0;
  lua_pushinteger(L, (lua_Integer)cut);
  if (lua_pcall(L, 4, 0, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg && strstr(msg, "roundtrip")) {
      fprintf(stderr, "%s\n", msg);
      abort();
    }
    /* BINDING_FUZZ_VERBOSE=1 shows the other errors (a check that raises
       before it checks anything would otherwise pass unseen) */
    if (getenv("BINDING_FUZZ_VERBOSE")) fprintf(stderr, "lua: %s\n", msg);
    lua_pop(L, 1);
  }
  return 0;
}
