--- parley.transcript.http: HTTP/1.1 messages.
--
-- Bodies are bulk, framed as RFC 9112 6.3 says: chunked, Content-Length,
-- or (a response only) until the connection closes; none for HEAD, 1xx,
-- 204 and 304. Masks the values of `Authorization` and
-- `Proxy-Authorization` (the scheme stays visible), `Cookie` and
-- `Set-Cookie`.
-- @module parley.transcript.http
local W = {}

local SECRET = { authorization = "scheme", ["proxy-authorization"] = "scheme",
  cookie = true, ["set-cookie"] = true }

local function message()
  return { head = false, length = nil, chunked = false }
end

function W.new()
  -- methods: requests waiting for their response (pipelining)
  return { C = message(), S = message(), methods = {}, first = 1, last = 0 }
end

-- what follows the head of a message
local function body(st, flow, dir, m)
  if dir == "S" then
    local code = m.code
    if code >= 100 and code < 200 and code ~= 101 then return end   -- interim
    local method = st.methods[st.first]
    st.methods[st.first] = nil
    st.first = st.first + 1
    if method == "HEAD" or code == 204 or code == 304
      or (method == "CONNECT" and code // 100 == 2) then return end
    if code == 101 then flow:bulk(dir, "close") return end
  end
  if m.chunked then
    flow:bulk(dir, "chunked")
  elseif m.length then
    if m.length > 0 then flow:bulk(dir, "count", m.length) end
  elseif dir == "S" then
    flow:bulk(dir, "close")
  end
end

local function header(flow, m, text)
  local name, value = text:match("^([^:%s]+):%s*(.-)%s*$")
  if not name then return text end
  local lname = name:lower()
  if lname == "content-length" then
    m.length = math.tointeger(tonumber(value))
  elseif lname == "transfer-encoding" then
    m.chunked = value:lower():find("chunked%s*$") ~= nil
  end
  local secret = SECRET[lname]
  if secret and not flow:secrets() then
    local scheme = secret == "scheme" and value:match("^(%S+)%s+%S")
    return text:sub(1, #name + 1) .. " " .. (scheme and scheme .. " " or "") .. "****"
  end
  return text
end

function W.line(st, flow, dir, text)
  local m = st[dir]
  if not m.head then
    if text == "" then return text end   -- stray CRLF between messages
    m.head = true
    if dir == "C" then
      st.last = st.last + 1
      st.methods[st.last] = text:match("^(%S+)")
    else
      m.code = tonumber(text:match("^HTTP/%d%.%d (%d%d%d)")) or 200
    end
    return text
  end
  if text == "" then
    st[dir] = message()
    body(st, flow, dir, m)
    return text
  end
  return header(flow, m, text)
end

return W
