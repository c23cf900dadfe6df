--- `parley demo`: the same as `parley lab --tour` (what `make demo` runs);
-- any further arguments are the lab's (`--exit`, `--dir DIR` ...).
-- @module parley.cli.demo
local M = {}

function M.main(argv)
  local args = { "--tour" }
  for _, a in ipairs(argv) do args[#args + 1] = a end
  return require("parley.cli.lab").main(args)
end

return M
