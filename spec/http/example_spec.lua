-- examples/webserver.lua runs and serves its route and its files.
local H = require "helper"
local U = require "http.support.util"

describe("examples/webserver.lua", function()
  it("serves the Lua route and the static files", function()
    local root = U.webroot()
    local fh = assert(io.popen(("cd %s && sh -c 'echo $$; LUA_PATH=\"lua/?.lua;lua/?/init.lua;;\" "
      .. "LUA_CPATH=\"build/?.so;;\" exec timeout 60 lua5.4 examples/webserver.lua %s 127.0.0.1:0' 2>/dev/null")
      :format(H.root, root), "r"))
    local pid = tonumber(fh:read("l"))
    local line = fh:read("l") or ""
    local port = line:match("^serving .- on http://127%.0%.0%.1:(%d+)/$")
    local ok, err = pcall(function()
      assert(port, "example did not start: " .. line)
      local client = require "parley.http.client"
      local r = assert(client.request("http://127.0.0.1:" .. port .. "/hello/world"))
      assert.equal("hello, world\n", r.body)
      r = assert(client.request("http://127.0.0.1:" .. port .. "/"))
      assert.matches("hello</body>", r.body)
      assert.equal("text/html; charset=utf-8", r.headers["content-type"])
      client.default_pool:close()
    end)
    os.execute("kill " .. pid .. " 2>/dev/null")
    fh:read("a")
    fh:close()
    H.rmdir(root)
    assert(ok, err)
  end)
end)
