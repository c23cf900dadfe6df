--- parley.cli: the `parley` command.
--
-- `parley <command> [args]`. Each command lives in a module that exports
-- `main(argv)` returning an exit status; `serve <proto>` loads
-- `parley.<proto>.cli` and calls its `serve(argv)`.
-- @module parley.cli
local M = {}

local commands = {
  { "serve", "serve PROTO [options]", "run a server: echo, smtp, pop3, imap, mail, ftp, http, telnet" },
  { "send", "send --server H:P --from A --to B ...", "send a mail message by SMTP" },
  { "telnet", "telnet HOST [PORT]", "interactive Telnet client" },
  { "run", "run FILE.lua... [--var k=v] [--format F]", "run scenario files (parley.scenario) and report" },
  { "check", "check URL [-w S] [-c S] [-t S] ...", "a monitoring-plugin check (smtp, pop3, imap, ftp, http, telnet)" },
  { "lab", "lab [--tour] [--exit] [--dir DIR] ...", "every server on loopback, ready commands, a tour" },
  { "demo", "demo [lab options]", "the same as: lab --tour (make demo)" },
}

local function usage(out)
  out:write("usage: parley <command> [options]\n\ncommands:\n")
  for _, c in ipairs(commands) do
    out:write(("  %-40s %s\n"):format(c[2], c[3]))
  end
  out:write("\n`parley <command> --help` describes a command's options.\n")
end

--- Parses `--name value`, `--name=value` and `--flag` options; `-h` is
-- `--help` when the spec has `help`. Raises (level 0, a one-line
-- message) on an unknown option, a missing value or a value that is not
-- a number; any other argument starting with `-` is an unknown option
-- (`-` alone is an ordinary argument).
-- @tparam table argv the arguments (from index `first`)
-- @tparam table spec option name (with `_` for `-`) -> "string" |
-- "number" | "flag" | "list" (repeatable)
-- @tparam[opt=1] number first
-- @treturn table options, with positional arguments in array part
function M.parse(argv, spec, first)
  local opts, i = {}, first or 1
  while i <= #argv do
    local a = argv[i]
    local name, inline = a:match("^%-%-([%w%-]+)=(.*)$")
    name = name or a:match("^%-%-([%w%-]+)$")
    if name then
      local key = name:gsub("%-", "_")
      local kind = spec[key]
      if not kind then error(("unknown option --%s"):format(name), 0) end
      if kind == "flag" then
        opts[key] = true
      else
        local v = inline
        if not v then
          i = i + 1
          v = argv[i]
        end
        if v == nil then error(("option --%s needs a value"):format(name), 0) end
        if kind == "number" then
          v = tonumber(v) or error(("option --%s needs a number"):format(name), 0)
        end
        if kind == "list" then
          opts[key] = opts[key] or {}
          table.insert(opts[key], v)
        else
          opts[key] = v
        end
      end
    elseif a == "-h" and spec.help then
      opts.help = true
    elseif a:match("^%-.") then
      error(("unknown option %s"):format(a), 0)
    else
      table.insert(opts, a)
    end
    i = i + 1
  end
  return opts
end

-- A command's errors (a bad option above all) as one line and status 2.
local function run(prefix, fn, ...)
  local ok, res = pcall(fn, ...)
  if ok then return res or 0 end
  io.stderr:write(prefix, tostring(res), "\n")
  return 2
end

local SERVE_USAGE = [[
usage: parley serve PROTO [options]
  PROTO: echo, smtp, pop3, imap, mail, ftp, http, telnet
  `parley serve PROTO --help` describes a server's options.
]]

--- Entry point of `bin/parley`.
-- @tparam table argv the command line (`arg`)
-- @treturn number the process exit status
function M.main(argv)
  local cmd = argv[1]
  local rest = table.move(argv, 2, #argv, 1, {})
  if cmd == nil or cmd == "help" or cmd == "--help" or cmd == "-h" then
    usage(cmd and io.stdout or io.stderr)
    return cmd and 0 or 2
  elseif cmd == "serve" then
    local proto = rest[1]
    if proto == "--help" or proto == "-h" or proto == "help" then
      io.stdout:write(SERVE_USAGE)
      return 0
    end
    if not proto or not proto:match("^[%a%d_]+$") then
      io.stderr:write(SERVE_USAGE)
      return 2
    end
    local ok, mod = pcall(require, "parley." .. proto .. ".cli")
    if not ok or type(mod) ~= "table" or not mod.serve then
      if ok or tostring(mod):find("module 'parley%." .. proto .. "%.cli' not found", 1) then
        io.stderr:write("parley: no server for '", proto, "' (parley serve --help lists them)\n")
        return 2
      end
      error(mod, 0)
    end
    return run("parley: ", mod.serve, table.move(rest, 2, #rest, 1, {}))
  else
    local ok, mod = pcall(require, "parley.cli." .. cmd)
    if not ok then
      if tostring(mod):find("module 'parley%.cli%." .. cmd:gsub("%p", "%%%0") .. "' not found", 1) then
        io.stderr:write("parley: unknown command '", cmd, "' (parley help lists them)\n")
        return 2
      end
      error(mod, 0)
    end
    return run("parley " .. cmd .. ": ", mod.main, rest)
  end
end

return M
