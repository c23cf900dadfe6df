-- bench/ftp/logins.lua PORT USER PASS CLIENTS ROUNDS
-- CLIENTS parley tasks log in at once (connect, 220, USER, PASS, QUIT),
-- ROUNDS times; prints "logins N seconds S failures F".
local parley = require "parley"
local ftp = require "parley.ftp"
local port, user, pass = tonumber(arg[1]), arg[2], arg[3]
local clients, rounds = tonumber(arg[4] or 100), tonumber(arg[5] or 10)
local ok, fails = 0, 0
local t0, first
parley.run(function()
  t0 = parley.now()
  for _ = 1, rounds do
    local tasks = {}
    for i = 1, clients do
      tasks[i] = parley.spawn(function()
        local c, err = ftp.client.connect("127.0.0.1", port, { timeout = 30 })
        if not c then fails = fails + 1 first = first or err return end
        local lok, lerr = c:login(user, pass)
        if lok then ok = ok + 1 else fails = fails + 1 first = first or lerr end
        c:quit()
      end)
    end
    for _, t in ipairs(tasks) do t:join(60) end
  end
end)
print(("logins %d seconds %.3f failures %d%s"):format(ok, parley.now() - t0, fails,
  first and (" (first: " .. tostring(first) .. ")") or ""))
