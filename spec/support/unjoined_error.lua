-- Child for tasks_spec: a task nobody joins raises; the loop goes on.
local parley = require "parley"
parley.run(function()
  parley.spawn(function()
    parley.sleep(0.01)
    error("unjoined boom")
  end)
  parley.sleep(0.05)
  print("still running after the error")
end)
