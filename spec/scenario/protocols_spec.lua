-- parley.scenario against the real parley servers: protocol steps
-- through the clients, and the POP3 / IMAP / HTTP / Telnet helpers on
-- raw connections.
local H = require "helper"
local servers = require "scenario.support.servers"
local scenario = require "parley.scenario"

local U, P = servers.USER, servers.PASSWORD

-- scheme://user:password@host:port
local function login_url(u, user, password)
  return (u:gsub("//", "//" .. user .. ":" .. password .. "@"))
end

local function with_servers(fn)
  H.run(function()
    local sv = servers.start()
    local ok, err = pcall(fn, sv)
    sv:stop()
    if not ok then error(err, 0) end
  end, 40)
end

local function failures(rep)
  local t = {}
  for _, st in ipairs(rep.steps) do
    if st.status ~= "pass" then t[#t + 1] = st.n .. " " .. st.status .. " " .. st.name .. ": " .. tostring(st.error) end
  end
  return table.concat(t, "\n")
end

local function texts(entries)
  local t = {}
  for i, e in ipairs(entries) do t[i] = e.text end
  return table.concat(t, "\n")
end

describe("scenario protocol steps", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("sends mail by SMTP and reads it by POP3 and IMAP, each call a step", function()
    with_servers(function(sv)
      local rep = scenario.run(scenario("mail", function(s)
        local r = s:smtp_send{ server = sv.url.smtp:match("//(.*)"), from = "a@example.net",
          to = "strategos@example.org", message = "Subject: hi\r\n\r\nhello\r\n" }
        s:check(r.accepted[1] == "strategos@example.org", "accepted")
        local m = s:smtp(sv.url.smtp)
        s:check(m:noop().code == 250, "NOOP answered")
        local p = s:pop3(login_url(sv.url.pop3, U, P))
        s:check(p:stat() == 2, "POP3 sees two messages")
        s:check(p:retr(1) == servers.MESSAGE, "POP3 RETR gives the message un-stuffed")
        p:quit()
        local i = s:imap(login_url(sv.url.imap, U, P))
        s:check(i:select("INBOX").exists == 2, "IMAP sees two messages")
      end))
      assert.is_true(rep.ok, failures(rep))
      local names = {}
      for k, st in ipairs(rep.steps) do names[k] = st.name end
      assert.same({ "smtp send to strategos@example.org", "accepted", "connect smtp " .. sv.url.smtp:match("//(.*)"),
        "smtp noop", "NOOP answered", "connect pop3 " .. sv.url.pop3:match("//(.*)") .. " as strategos",
        "pop3 stat", "POP3 sees two messages", "pop3 retr 1", "POP3 RETR gives the message un-stuffed",
        "pop3 quit", "connect imap " .. sv.url.imap:match("//(.*)") .. " as strategos",
        'imap select "INBOX"', "IMAP sees two messages" }, names)
      -- the clients' dialogue is in the transcript
      local all = texts(rep.transcript)
      assert.truthy(all:find("MAIL FROM:<a@example.net>", 1, true))
      assert.truthy(all:find("STAT", 1, true))
      assert.truthy(all:find("SELECT", 1, true), all)
    end)
  end)

  it("downloads by FTP, gets a page by HTTP and logs in by Telnet", function()
    with_servers(function(sv)
      local rep = scenario.run(scenario("ftp http telnet", function(s)
        local f = s:ftp(sv.url.ftp)
        s:check(f:get("coffee.txt") == servers.COFFEE, "coffee.txt downloaded")
        local res = s:http_get(sv.url.http .. "/index.html", { expect = 200 })
        s:check(res.body == servers.INDEX, "index.html served")
        local t = s:telnet(login_url(sv.url.telnet, U, P))
        t:send("hello")
        t:expect("echo: hello")
      end))
      assert.is_true(rep.ok, failures(rep))
    end)
  end)

  it("fails a protocol step with the client's error and reply, and hides the password", function()
    with_servers(function(sv)
      local rep = scenario.run(scenario("wrong password", function(s)
        local p = s:pop3(login_url(sv.url.pop3, U, "not-the-password"))
        p:stat()
      end))
      assert.is_false(rep.ok)
      local st = rep.steps[1]
      assert.equal("fail", st.status)
      assert.is_table(st.reply)
      assert.is_false(st.reply.ok)
      assert.equal(1, #rep.steps, "p:stat() on nil ends the dry run")
      local all = texts(rep.transcript)
      assert.is_nil(all:find("not-the-password", 1, true))
      assert.truthy(all:find("PASS ****", 1, true))
    end)
  end)

  it("fails an SMTP call refused by the server with its reply", function()
    with_servers(function(sv)
      local rep = scenario.run(scenario("refused", function(s)
        local m = s:smtp(sv.url.smtp)
        m:mail("a@example.net")
        m:rcpt("nobody@example.org")
      end))
      local st = rep.steps[3]
      assert.equal('smtp rcpt "nobody@example.org"', st.name)
      assert.equal(550, st.reply.code)
      assert.truthy(st.error:find("^550"))
    end)
  end)

  it("fails an HTTP step on another status than expected", function()
    with_servers(function(sv)
      local rep = scenario.run(scenario("404", function(s)
        s:http_get(sv.url.http .. "/nothing-here", { expect = 200 })
      end))
      assert.equal("expected status 200, got 404 Not Found", rep.steps[1].error)
      assert.equal(404, rep.steps[1].reply.code)
    end)
  end)
end)

describe("scenario raw connections to the real servers", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it("reads a POP3 multi-line body to the dot, un-stuffed", function()
    with_servers(function(sv)
      local body
      local rep = scenario.run(scenario("pop3 by hand", function(s)
        local c = s:connect(sv.url.pop3)
        c:expect("^%+OK")
        c:send("USER " .. U); c:expect("^%+OK")
        c:send("PASS " .. P); c:expect("^%+OK")
        c:send("LIST"); local list = c:expect_multiline()
        s:check(#list.lines == 1 and list.lines[1]:match("^1 %d+$"), "one message listed")
        c:send("RETR 1"); body = c:expect_multiline()
        c:send("RETR 9"); c:expect_multiline()
      end))
      assert.equal(servers.MESSAGE, body.text)
      local st = rep.steps[#rep.steps]
      assert.equal("fail", st.status)
      assert.truthy(st.error:find('^expected %+OK, got "%-ERR'))
      assert.truthy(texts(rep.transcript):find("PASS ****", 1, true))
    end)
  end)

  it("collects IMAP untagged responses with their literals and checks the tagged status", function()
    with_servers(function(sv)
      local fetched, listed
      local rep = scenario.run(scenario("imap by hand", function(s)
        local c = s:connect(sv.url.imap)
        c:expect("^%* OK")
        c:send("a1 LOGIN " .. U .. " " .. P); c:expect_tagged("a1")
        c:send('a2 LIST "" "*"'); listed = c:expect_tagged("a2")
        c:send("a3 SELECT INBOX"); c:expect_tagged("a3", "OK")
        c:send("a4 FETCH 1 BODY[]"); fetched = c:expect_tagged("a4")
        c:send("a5 FETCH 99 BODY[]"); c:expect_tagged("a5", "OK")
      end))
      assert.truthy(listed.untagged[1]:find("^%* LIST"))
      assert.equal(1, #fetched.untagged)
      assert.truthy(fetched.untagged[1]:find(servers.MESSAGE, 1, true))
      local st = rep.steps[#rep.steps]
      assert.equal("expect a5 OK", st.name)
      assert.equal("fail", st.status)
      assert.truthy(st.reply.status == "BAD" or st.reply.status == "NO")
    end)
  end)

  it("reads an HTTP response head and its body", function()
    with_servers(function(sv)
      local r
      local rep = scenario.run(scenario("http by hand", function(s)
        local c = s:connect(sv.url.http)
        c:send("GET /index.html HTTP/1.1"); c:send("Host: lab.example"); c:send("")
        r = c:expect(200)
        c:send("GET /nothing HTTP/1.1"); c:send("Host: lab.example"); c:send("")
        c:expect(404)
      end))
      assert.is_true(rep.ok, failures(rep))
      assert.equal(servers.INDEX, r.body)
      assert.equal(tostring(#servers.INDEX), r.headers["content-length"])
    end)
  end)

  it("negotiates on telnet:// and finds prompts that have no line end", function()
    with_servers(function(sv)
      local rep = scenario.run(scenario("telnet by hand", function(s)
        local c = s:connect(sv.url.telnet)
        c:expect("[Ll]ogin: ?$")
        c:send(U)
        c:expect("[Pp]assword: ?$")
        c:send(P)
        c:expect("welcome, (%w+)")
        c:expect("> $")
        c:send("quit")
        c:expect_closed()
      end))
      assert.is_true(rep.ok, failures(rep))
      local all = texts(rep.transcript)
      assert.truthy(all:find("IAC DO", 1, true))
      assert.is_nil(all:find(P, 1, true))
    end)
  end)
end)
