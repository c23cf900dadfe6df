-- The tour's FTP session: anonymous login, a listing, TYPE A and a
-- download, each transfer on its own PASV data connection (RFC 959).
local scenario = require "parley.scenario"

-- The data connection for the next transfer. "227 Entering Passive Mode
-- (h1,h2,h3,h4,p1,p2)": port = p1 * 256 + p2 (RFC 959 4.1.2). PASV is
-- IPv4 only: over IPv6, "229 Entering Extended Passive Mode (|||port|)"
-- (EPSV, RFC 2428 3).
local function passive(s, c)
  local host = s.vars.host
  if host:find(":", 1, true) then
    c:send("EPSV")
    local port = c:capture("^229 .*%(|||(%d+)|%)")
    return port and s:connect(("tcp://[%s]:%s"):format(host, port))
  end
  c:send("PASV")
  local h1, h2, h3, h4, p1, p2 = c:capture("^227 .*%((%d+),(%d+),(%d+),(%d+),(%d+),(%d+)%)")
  if not h1 then return nil end
  return s:connect(("tcp://%s.%s.%s.%s:%d"):format(h1, h2, h3, h4, tonumber(p1) * 256 + tonumber(p2)))
end

local sc = scenario("Anonymous FTP: ls, type ascii, get coffee.txt", function(s)
  local c = s:connect(s.vars.ftp)
  c:expect(220)
  c:send("USER anonymous")
  c:expect(331)
  c:send("PASS guest@lab.example")   -- by custom, an e-mail address
  c:expect(230)

  -- ls: the listing comes over a second connection
  local d = passive(s, c)
  c:send("LIST")
  c:expect(150)
  if d then d:expect_closed{ skip = 50, name = "read the listing until the server closes" } end
  c:expect(226)

  c:send("TYPE A")   -- ASCII: line ends become CRLF on the wire
  c:expect(200)

  d = passive(s, c)
  c:send("RETR coffee.txt")
  c:expect(150)
  if d then d:expect_closed{ skip = 50, name = "read coffee.txt until the server closes" } end
  c:expect(226)

  c:send("QUIT")
  c:expect(221)
  c:close()
end)

sc.about = "FTP talks on one connection and moves every listing and file over a second one, "
  .. "opened anew for each transfer: the PASV reply says where (port = p1 * 256 + p2)."
return sc
