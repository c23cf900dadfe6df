-- Scratch directories for the mail store specs: made with mktemp -d,
-- removed (rm -rf) by T.cleanup, which every spec file calls in
-- after_each / teardown.
local T = {}

local made = {}

--- A new empty directory under /tmp.
function T.new(tag)
  local p = io.popen("mktemp -d /tmp/parley-mail-" .. (tag or "spec") .. ".XXXXXX")
  local dir = p:read("l")
  p:close()
  assert(dir and dir:match("^/tmp/parley%-mail%-"), "mktemp failed")
  made[#made + 1] = dir
  return dir
end

--- Removes every directory T.new made.
function T.cleanup()
  for i = #made, 1, -1 do
    local dir = made[i]
    -- only ever our own scratch directories
    assert(dir:match("^/tmp/parley%-mail%-[%w%-]+%.%w+$"))
    os.execute("rm -rf '" .. dir .. "'")
    made[i] = nil
  end
end

--- Writes a file in one go; reads a whole file, or nil (spec/helper.lua).
local H = require "helper"
T.write, T.read = H.write, H.read

--- Runs a shell command, returns its stdout and whether it succeeded.
function T.sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end

return T
