-- spec/core/alloc_spec.lua's child: the allocator in use, a churn of small
-- objects, then a normal exit (lua5.4 closes the state: objects freed after
-- the C libraries are unloaded must still find the pool's code mapped)
local core = require "parley.core"
local t = {}
for i = 1, 20000 do t[i] = { i, tostring(i) .. "x", { n = i } } end
t = nil
collectgarbage()
io.stdout:write(table.concat({ core.allocator() }, " "), "\n")
io.stdout:write("ok\n")
