-- Interop: curl, python3 http.client, wrk and headless Chromium against
-- parley's server in a child process; parley's client against nginx.
local parley = require "parley"
local H = require "helper"
local U = require "http.support.util"
local client = require "parley.http.client"
local ltn12 = require "ltn12"

local function sh(cmd)
  local fh = assert(io.popen(cmd .. " 2>&1", "r"))
  local out = fh:read("a")
  local ok, _, code = fh:close()
  return out, ok and 0 or code
end

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- the support server (static ROOT plus /echo) as a child process
local function start_server(root, ...)
  return H.child("../http/support/server.lua", root, ...)
end

-- `parley serve http` itself, as the issue spells it (port 0 here)
local function start_cli(root)
  local fh = assert(io.popen(("cd %s && sh -c 'echo $$; exec timeout 60 lua5.4 bin/parley serve http "
    .. "--listen 127.0.0.1:0 --root %s --access-log off' 2>&1"):format(quote(H.root), quote(root)), "r"))
  local pid = tonumber(fh:read("l"))
  local line = fh:read("l") or ""
  local port = tonumber(line:match("^http server on 127%.0%.0%.1:(%d+) serving "))
  if not port then
    os.execute("kill " .. pid .. " 2>/dev/null")
    local rest = fh:read("a")
    fh:close()
    error("serve http did not start: " .. line .. rest)
  end
  return { port = port, pid = pid, fh = fh, cleanup = function(self)
    if self.fh then
      os.execute("kill " .. self.pid .. " 2>/dev/null")
      self.fh:read("a")
      self.fh:close()
      self.fh = nil
    end
  end }
end

local function need(program)
  if not H.have(program) then
    pending(program .. " is not installed: skipped")
    return false
  end
  return true
end

describe("http interop #interop", function()
  local root, srv
  setup(function()
    root = U.webroot()
    srv = start_server(root)
  end)
  teardown(function()
    if srv then srv:cleanup() end
    H.rmdir(root)
  end)

  local function url(path) return "http://127.0.0.1:" .. srv.port .. path end

  it("curl reuses the kept-alive connection for a second request", function()
    if not need("curl") then return end
    local out = sh("timeout 20 curl -sv " .. url("/1k.txt") .. " " .. url("/style.css") .. " -o /dev/null -o /dev/null")
    assert.matches("Re%-using existing connection", out)
    assert.not_matches("Closing connection", out)
  end)

  it("curl HEAD gets the length and no body", function()
    if not need("curl") then return end
    local out = sh("timeout 20 curl -sI " .. url("/1k.txt"))
    assert.matches("^HTTP/1%.1 200 OK\r\n", out)
    assert.matches("Content%-Length: 1024\r\n", out)
    assert.matches("\r\n\r\n$", out)
  end)

  it("curl gets a Range with 206", function()
    if not need("curl") then return end
    local out = sh("timeout 20 curl -s -r 10-19 -w ' %{http_code}' " .. url("/1k.txt"))
    assert.equal("KLMNOPQRST 206", out)
  end)

  it("curl gets several ranges as multipart/byteranges that python's email parser reads", function()
    if not need("curl") or not need("python3") then return end
    local script = [==[
import email, subprocess, sys
out = subprocess.run(["curl", "-s", "-i", "-r", "0-1,10-19,-2", sys.argv[1]], capture_output=True, timeout=20).stdout
head, body = out.split(b"\r\n\r\n", 1)
status = head.split(b" ")[1].decode()
ctype = [l.split(b": ", 1)[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-type:")][0]
msg = email.message_from_bytes(b"Content-Type: " + ctype + b"\r\n\r\n" + body)
print(status, msg.get_content_type(), ";".join(p["Content-Range"] + "=" + p.get_payload() for p in msg.get_payload()))
]==]
    local out = sh("timeout 30 python3 -c " .. quote(script) .. " " .. url("/1k.txt"))
    assert.equal("206 multipart/byteranges bytes 0-1/1024=AB;bytes 10-19/1024=KLMNOPQRST;bytes 1022-1023/1024=IJ\n", out)
  end)

  it("curl gets 304 with If-None-Match", function()
    if not need("curl") then return end
    local head = sh("timeout 20 curl -sI " .. url("/1k.txt"))
    local etag = head:match("ETag: (\"[^\"]+\")")
    assert.is_string(etag)
    local out = sh("timeout 20 curl -s -o /dev/null -w '%{http_code}' -H " .. quote("If-None-Match: " .. etag) .. " " .. url("/1k.txt"))
    assert.equal("304", out)
  end)

  it("curl uploads a chunked body", function()
    if not need("curl") then return end
    local file = root .. "/upload.bin"
    H.random_file(file, 300000)
    local back = root .. "/back.bin"
    local out = sh("timeout 20 curl -s -D - -o " .. quote(back) .. " -H 'Transfer-Encoding: chunked' --data-binary @"
      .. quote(file) .. " " .. url("/echo"))
    assert.matches("X%-Request%-Framing: chunked", out)
    assert.equal(H.sha256(file), H.sha256(back))
  end)

  it("python3 http.client keeps one connection for GET, HEAD and POST", function()
    if not need("python3") then return end
    local py = ([[
import http.client
c = http.client.HTTPConnection("127.0.0.1", %d, timeout=10)
c.request("GET", "/1k.txt"); r = c.getresponse(); b = r.read(); print(r.status, len(b))
sock = c.sock
c.request("HEAD", "/1k.txt"); r = c.getresponse(); b = r.read(); print(r.status, r.getheader("Content-Length"), len(b))
c.request("POST", "/echo", body=b"x" * 5000); r = c.getresponse(); b = r.read(); print(r.status, len(b))
c.request("GET", "/missing"); r = c.getresponse(); r.read(); print(r.status)
print("same", c.sock is sock)
]]):format(srv.port)
    local out, code = sh("timeout 20 python3 -c " .. quote(py))
    assert.equal(0, code, out)
    assert.equal("200 1024\n200 1024 0\n200 5000\n404\nsame True\n", out)
  end)

  it("wrk runs 2 seconds with no socket errors and only 2xx", function()
    if not need("wrk") then return end
    local out = sh("timeout 30 wrk -t1 -c20 -d2s " .. url("/1k.txt"))
    local n = tonumber(out:match("(%d+) requests in"))
    assert.is_true(n and n > 1000, out)
    assert.not_matches("Socket errors", out)
    assert.not_matches("Non%-2xx", out)
  end)

  it("headless Chromium renders a page with an image from parley serve http", function()
    if not need("chromium") then return end
    local site = H.tmpdir()
    local shot = site .. "/shot.png"
    -- a 200x100 red PNG on a white page, written with python3's zlib
    local gen = ([[
import zlib, struct
def png(w, h, rgb):
    raw = b"".join(b"\0" + bytes(rgb) * w for _ in range(h))
    def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open(%q + "/red.png", "wb").write(png(200, 100, (255, 0, 0)))
open(%q + "/index.html", "w").write('<!DOCTYPE html><html><body style="margin:0;background:#fff"><img src="red.png" width="200" height="100"></body></html>')
]]):format(site, site)
    assert.equal(0, select(2, sh("python3 -c " .. quote(gen))))
    local cli = start_cli(site)
    local ok, err = pcall(function()
      local prof = H.tmpdir()
      local out = sh(("timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
        .. "--disable-background-networking --disable-component-update --disable-sync --user-data-dir=%s "
        .. "--screenshot=%s --window-size=400,300 http://127.0.0.1:%d/"):format(quote(prof), quote(shot), cli.port))
      H.rmdir(prof)
      local f = io.open(shot, "rb")
      assert(f, "no screenshot: " .. out)
      f:close()
      -- read the screenshot back: size and two pixels
      local check = ([[
import zlib, struct
d = open(%q, "rb").read()
assert d[:8] == b"\x89PNG\r\n\x1a\n"
pos, idat = 8, b""
while pos < len(d):
    n, t = struct.unpack(">I4s", d[pos:pos+8]); body = d[pos+8:pos+8+n]; pos += 12 + n
    if t == b"IHDR": w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
    if t == b"IDAT": idat += body
bpp = {2: 3, 6: 4}[ctype]
raw = zlib.decompress(idat); stride = w * bpp; rows = []; prev = bytearray(stride); i = 0
for y in range(h):
    f = raw[i]; line = bytearray(raw[i+1:i+1+stride]); i += 1 + stride
    for x in range(stride):
        a = line[x-bpp] if x >= bpp else 0; b = prev[x]; c = prev[x-bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p-a), abs(p-b), abs(p-c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(line); prev = line
px = lambda x, y: tuple(rows[y][x*bpp:x*bpp+3])
print(w, h, px(100, 50), px(300, 200))
]]):format(shot)
      local res = sh("python3 -c " .. quote(check))
      assert.equal("400 300 (255, 0, 0) (255, 255, 255)\n", res)
    end)
    cli:cleanup()
    H.rmdir(site)
    assert(ok, err)
  end)
end)

describe("http client against nginx #interop", function()
  local dir, port, pid
  setup(function()
    if not H.have("nginx") then return end
    dir = H.tmpdir()
    local www = dir .. "/www"
    os.execute("mkdir -p " .. quote(www))
    local f = assert(io.open(www .. "/1k.txt", "wb"))
    f:write(("0123456789abcdef"):rep(64))
    f:close()
    local l = assert(parley.listen("127.0.0.1:0"))
    port = l:port()
    l:close()
    f = assert(io.open(dir .. "/nginx.conf", "w"))
    f:write(([[
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %s/body; proxy_temp_path %s/proxy; fastcgi_temp_path %s/fcgi;
  uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;
  keepalive_requests 1000;
  gzip on; gzip_min_length 1; gzip_types text/plain;
  types { text/plain txt; }
  server {
    listen 127.0.0.1:%d;
    root %s;
    location = /moved { return 301 /1k.txt; }
    location = /upload { client_max_body_size 10m; return 201 "stored\n"; }
  }
}
]]):format(dir, dir, dir, dir, dir, dir, dir, port, www))
    f:close()
    local fh = io.popen(("sh -c 'echo $$; exec timeout 60 nginx -p %s -c %s/nginx.conf -g \"daemon off;\"' 2>&1 &")
      :format(quote(dir), quote(dir)))
    pid = tonumber(fh:read("l"))
    fh:close()
    -- wait until it listens
    for _ = 1, 100 do
      local c = parley.connect("127.0.0.1", port, { timeout = 1 })
      if c then c:close() break end
      parley.sleep(0.05)
    end
  end)
  teardown(function()
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    client.default_pool:close()
    if dir then
      parley.sleep(0.2)
      H.rmdir(dir)
    end
  end)

  local function url(path) return "http://127.0.0.1:" .. port .. path end

  it("gets a file, reusing the connection, and HEAD, Range, 304", function()
    if not need("nginx") then return end
    local own = client.pool()
    local r = assert(client.request{ url = url("/1k.txt"), pool = own })
    assert.equal(200, r.status)
    assert.equal(1024, #r.body)
    assert.equal(1, own:count())
    r = assert(client.request{ url = url("/1k.txt"), pool = own, method = "HEAD" })
    assert.equal("1024", r.headers["content-length"])
    assert.equal("", r.body)
    r = assert(client.request{ url = url("/1k.txt"), pool = own, headers = { Range = "bytes=0-3" } })
    assert.equal(206, r.status)
    assert.equal("0123", r.body)
    r = assert(client.request{ url = url("/1k.txt"), pool = own, headers = { ["If-None-Match"] = r.headers.etag } })
    assert.equal(304, r.status)
    assert.equal(1, own:count())
    own:close()
  end)

  it("follows nginx's redirect and reads its chunked gzip response", function()
    if not need("nginx") then return end
    local r = assert(client.request{ url = url("/moved"), headers = { ["Accept-Encoding"] = "gzip" } })
    assert.equal(200, r.status)
    assert.equal(1, #r.redirects)
    assert.equal("chunked", r.headers["transfer-encoding"])
    assert.equal("gzip", r.headers["content-encoding"])
    assert.equal("\31\139", r.body:sub(1, 2))
  end)

  it("uploads a chunked body to nginx", function()
    if not need("nginx") then return end
    local r = assert(client.request{ url = url("/upload"), method = "POST",
      body = ltn12.source.string(("u"):rep(200000)) })
    assert.equal(201, r.status)
    assert.equal("stored\n", r.body)
  end)

  it("sends raw bytes to nginx and parses its 400", function()
    if not need("nginx") then return end
    local r = assert(client.raw("127.0.0.1:" .. port, "GET /1k.txt HTTP/1.1\r\n\r\n"))
    assert.equal(400, r.status)   -- no Host
  end)
end)
