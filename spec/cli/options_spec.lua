-- What every `parley` command does with its command line: help on
-- --help and -h, a one-line error and status 2 for a bad option.
local function parley(args)
  local p = assert(io.popen("timeout 20 lua5.4 bin/parley " .. args .. " 2>&1"))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end

local COMMANDS = { "serve echo", "serve smtp", "serve pop3", "serve imap", "serve mail",
  "serve ftp", "serve http", "serve telnet", "send", "telnet", "run", "lab", "demo" }

local function one_line(out)
  return select(2, out:gsub("\n", "")) == 1
end

describe("parley's command line", function()
  it("prints each command's help for --help and for -h", function()
    for _, cmd in ipairs(COMMANDS) do
      for _, flag in ipairs { "--help", "-h" } do
        local out, code = parley(cmd .. " " .. flag)
        assert.equal(0, code, cmd .. " " .. flag .. ": " .. out)
        assert.matches("^usage: parley ", out)
      end
    end
  end)

  it("refuses an unknown option with one line and status 2", function()
    for _, cmd in ipairs(COMMANDS) do
      for _, bad in ipairs { "--frobnicate", "-x" } do
        local out, code = parley(cmd .. " " .. bad)
        assert.equal(2, code, cmd .. " " .. bad .. ": " .. out)
        assert.is_true(one_line(out), cmd .. " " .. bad .. ": " .. out)
        assert.matches("unknown option " .. bad, out, 1, true)
      end
    end
  end)

  it("refuses an option without its value with one line and status 2", function()
    for _, c in ipairs { "serve echo --listen", "serve smtp --maildir", "serve ftp --root",
                         "serve http --root", "serve telnet --app", "send --server",
                         "telnet --escape", "run --format", "lab --dir" } do
      local out, code = parley(c)
      assert.equal(2, code, c .. ": " .. out)
      assert.is_true(one_line(out), c .. ": " .. out)
      assert.matches("needs a value", out, 1, true)
    end
  end)

  it("lists the servers for serve --help and names an unknown one", function()
    local out, code = parley("serve --help")
    assert.equal(0, code)
    assert.matches("echo, smtp, pop3, imap, mail, ftp, http, telnet", out, 1, true)
    out, code = parley("serve gopher")
    assert.equal(2, code)
    assert.is_true(one_line(out), out)
  end)

  it("says what is wrong with a telnet port", function()
    local out, code = parley("telnet 127.0.0.1 notaport")
    assert.equal(2, code)
    assert.equal("parley telnet: not a port number: notaport\n", out)
  end)

  it("names the file parley send cannot read, once", function()
    local out, code = parley("send --server 127.0.0.1:1 --from a@example.org --to b@example.org"
      .. " --subject s --body-file /nonexistent/body.txt")
    assert.equal(2, code)
    assert.equal("parley send: cannot read /nonexistent/body.txt: No such file or directory\n", out)
  end)

  it("refuses a malformed address in parley send without a traceback", function()
    local out, code = parley("send --server 127.0.0.1:1 --from 'a b' --to b@example.org"
      .. " --subject s --body x")
    assert.equal(2, code)
    assert.equal('parley send: cannot build the message: bad address "a b"\n', out)
  end)

  it("says a users file that is a directory cannot be read", function()
    for _, c in ipairs { "serve pop3 --maildir /tmp/parley-spec-unused --users /tmp",
                         "serve telnet --users /tmp", "serve ftp --root /tmp --users /tmp" } do
      local out, code = parley(c)
      assert.is_true(code == 1 or code == 2, c .. ": " .. out)
      assert.matches("/tmp: Is a directory", out, 1, true)
      assert.is_nil(out:find("%.lua:%d+:"), out)
    end
  end)
end)
