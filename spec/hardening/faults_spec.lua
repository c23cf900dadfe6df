-- Short writes and EAGAIN on every socket call (issue 11, Faults): every
-- protocol server runs its sessions once on a clean network and again
-- under hardening/faultnet.so (LD_PRELOAD) (HTTP twice: `parley serve
-- http` for static files, support/http_child.lua for chunked bodies both
-- ways); the replies, the data
-- connections' bytes and the stored files must be byte-identical (after
-- masking dates and ids, which differ between any two runs).
local lab = require "hardening.support.lab"
local H = lab.H

local UPLOAD = H.random_bytes(400000, 9)
local MESSAGES = { lab.message(1, 150000), lab.message(2, 3000), lab.message(3, 40000) }

-- all sessions against fresh servers; env = nil for the clean network
local function run_all(env)
  local dir = lab.tree()
  local out, servers = {}, {}
  local ok, err = pcall(function()
    servers.mail = lab.serve_mail(dir, { env = env })
    out.smtp = lab.sessions.smtp(servers.mail.ports.smtp, MESSAGES)
    out.pop3 = lab.sessions.pop3(servers.mail.ports.pop3, #MESSAGES)
    out.imap = lab.sessions.imap(servers.mail.ports.imap)
    out.maildir = table.concat(lab.mailbox(dir .. "/md/" .. lab.USER), "\0")
    servers.ftp = lab.serve("ftp", { "--listen", "127.0.0.1:0", "--root", dir .. "/ftp",
      "--users", dir .. "/users", "--login-delay", "0" }, { env = env })
    out.ftp = lab.sessions.ftp(servers.ftp.port, UPLOAD)
    out.ftp_files = H.read(dir .. "/ftp/up.bin") .. "\0" .. H.read(dir .. "/ftp/up.txt")
    servers.http = lab.serve("http", { "--listen", "127.0.0.1:0", "--root", dir .. "/www",
      "--listing", "--access-log", "off" }, { env = env })
    out.http = lab.sessions.http(servers.http.port)
    servers.http_app = lab.child("http_child.lua", { dir .. "/www" }, { env = env })
    out.http_app = lab.sessions.http_app(servers.http_app.port)
    servers.telnet = lab.serve("telnet", { "--listen", "127.0.0.1:0", "--app", "echo" }, { env = env })
    out.telnet = lab.sessions.telnet(servers.telnet.port)
  end)
  local logs = {}
  for name, s in pairs(servers) do logs[#logs + 1] = name .. ": " .. (s:stop()) end
  lab.rmdir(dir)
  assert(ok, tostring(err) .. "\nserver output:\n" .. table.concat(logs, "\n"))
  for k, v in pairs(out) do out[k] = lab.mask(v) end
  return out
end

local function faults(seed, rate, log)
  return { LD_PRELOAD = lab.shim("faultnet"), FAULTNET_SEED = tostring(seed),
           FAULTNET_RATE = tostring(rate), FAULTNET_LOG = log }
end

-- the counts the shim logged: calls, eagain, short (summed over processes)
local function counts(log)
  local t = { calls = 0, eagain = 0, short = 0 }
  for line in io.lines(log) do
    for k, v in line:gmatch("(%a+)=(%d+)") do
      if t[k] then t[k] = t[k] + tonumber(v) end
    end
  end
  os.remove(log)
  return t
end

local function same(clean, got, what)
  for k, v in pairs(clean) do
    assert(got[k] == v, ("%s: %s differs (%d bytes clean, %d under faults)")
      :format(what, k, #v, got[k] and #got[k] or -1))
  end
end

local function campaign(seeds, rates)
  local clean = run_all(nil)
  local total = { calls = 0, eagain = 0, short = 0 }
  for _, rate in ipairs(rates) do
    for seed = 1, seeds do
      local log = os.tmpname()
      same(clean, run_all(faults(seed, rate, log)), ("seed %d rate %d%%"):format(seed, rate))
      local c = counts(log)
      assert.is_true(c.eagain + c.short > 0, "the shim injected no faults")
      for k, v in pairs(c) do total[k] = total[k] + v end
    end
  end
  assert.is_true(total.eagain > 0 and total.short > 0, "the shim injected only one kind of fault")
  if os.getenv("HARDENING_VERBOSE") then
    io.stderr:write(("faultnet: %d runs of the 7 sessions, %d socket calls, %d EAGAIN, %d short\n")
      :format(seeds * #rates, total.calls, total.eagain, total.short))
  end
end

describe("every protocol under short writes and EAGAIN", function()
  before_each(lab.H.fd_snapshot)
  after_each(lab.H.fd_check)

  it("answers byte for byte as on a clean network and stores the same files", function()
    campaign(1, { 30 })
  end)

  it("stays byte-identical over many seeds and fault rates #slow", function()
    campaign(tonumber(os.getenv("HARDENING_FAULT_SEEDS")) or 20, { 5, 30, 70 })
  end)
end)
