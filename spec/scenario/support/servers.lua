-- The real parley servers for the scenario specs, in this process on
-- free ports over a temp directory: SMTP, POP3 and IMAP over one Maildir
-- (user strategos, password "tour-pw", one message waiting), anonymous
-- FTP (coffee.txt), HTTP (index.html) and Telnet (login, then a "> "
-- prompt that echoes lines).
--
--   local sv = servers.start()     -- inside a task
--   sv.url.smtp, sv.url.pop3 ...   -- "smtp://127.0.0.1:PORT"
--   sv:stop()
local H = require "helper"

local M = {}

M.USER, M.PASSWORD = "strategos", "tour-pw"
M.COFFEE = "Coffee: grind, brew, drink.\r\nRepeat.\r\n"
M.INDEX = "<html><body><h1>parley lab</h1></body></html>\n"
M.MESSAGE = "From: seed@example.net\r\nTo: strategos@example.org\r\nSubject: welcome\r\n\r\n" ..
  "First line.\r\n.a line starting with a dot\r\n"

-- The Telnet app: a greeting and a prompt, then every line echoed.
function M.echo_app(sess)
  sess:print("welcome, " .. tostring(sess.user))
  for _ = 1, 1000 do
    sess:write("> ")
    local line = sess:read_line()
    if not line or line == "quit" then return end
    sess:print("echo: " .. line)
  end
end

local Servers = {}
Servers.__index = Servers

function M.start()
  local dir = H.tmpdir()
  local self = setmetatable({ dir = dir, list = {}, url = {} }, Servers)
  local ok, err = pcall(function()
    local maildir = require "parley.mail.maildir"
    local users = require("parley.mail.users").from_table({ [M.USER] = M.PASSWORD })
    local store = maildir.open(dir .. "/mail", { fsync = false })
    assert(store:deliver(M.USER, M.MESSAGE))
    assert(require("lfs").mkdir(dir .. "/ftp"))
    H.write(dir .. "/ftp/coffee.txt", M.COFFEE)
    assert(require("lfs").mkdir(dir .. "/www"))
    H.write(dir .. "/www/index.html", M.INDEX)
    local common = { listen = "127.0.0.1:0", signals = false }
    local function add(name, srv)
      self.list[#self.list + 1] = assert(srv)
      self.url[name] = name .. "://" .. srv.address
    end
    local function with(t)
      for k, v in pairs(common) do if t[k] == nil then t[k] = v end end
      return t
    end
    add("smtp", require("parley.smtp.server").serve(with{ domains = { "example.org" }, store = store,
      users = users, auth_delay = 0, error_delay = 0 }))
    add("pop3", require("parley.pop3.server").serve(with{ store = store, users = users, auth_delay = 0 }))
    add("imap", require("parley.imap.server").serve(with{ store = store, users = users }))
    add("ftp", require("parley.ftp.server").serve(with{ root = dir .. "/ftp", anonymous = true }))
    add("http", require("parley.http.server").serve(with{ root = dir .. "/www" }))
    add("telnet", require("parley.telnet.server").serve(with{ app = M.echo_app,
      users = { [M.USER] = M.PASSWORD }, login_delay = 0 }))
  end)
  if not ok then
    self:stop()
    error(err, 0)
  end
  return self
end

function Servers:stop()
  for i = #self.list, 1, -1 do self.list[i]:close(0.5) end
  self.list = {}
  H.rmdir(self.dir)
end

return M
