-- Child for tasks_spec "on_signal": prints "0 PID", then
--   (no argument) waits up to 10 s for SIGUSR1, handled by parley.on_signal,
--                 prints "got USR1" and exits 0;
--   "restore"     installs then removes a handler, prints "restored" and
--                 sleeps: SIGUSR1 must now kill it with the default action.
io.stdout:setvbuf("line")
local parley = require "parley"
local pid = io.open("/proc/self/stat"):read("l"):match("^(%d+)")

if arg[1] == "restore" then
  parley.on_signal("USR1", function() print("handler ran") end)
  parley.on_signal("USR1", nil)
  print("0 " .. pid)
  print("restored")
  parley.sleep(10)
  print("survived USR1")
  os.exit(3)
end

local got
parley.on_signal("USR1", function(name)
  got = name
  print("got " .. tostring(name))
end)
print("0 " .. pid)
parley.run(function()
  for _ = 1, 1000 do
    if got then return end
    parley.sleep(0.01)
  end
  print("no signal within 10 s")
  os.exit(2)
end)
parley.on_signal("USR1", nil)
