-- spec/core/alloc_spec.lua's child: the allocator in use, a churn of small
-- objects, then a normal exit (lua5.4 closes the state: objects freed after
-- the C libraries are unloaded must still find the pool's code mapped)
local core = require "parley.core"
local function churn()
  local t, n = {}, 0
  for i = 1, 20000 do t[i] = { i, tostring(i) .. "x", { n = i } } end
  for i = 1, #t do n = n + t[i][3].n end
  return n
end
assert(churn() == 20000 * 20001 / 2)
collectgarbage()
io.stdout:write(table.concat({ core.allocator() }, " "), "\n")
io.stdout:write("ok\n")
