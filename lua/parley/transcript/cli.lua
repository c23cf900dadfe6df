--- parley.transcript.cli: the `--transcript [FILE]` options every
-- `parley serve <proto>`, `parley send` and `parley telnet` take.
--
-- `--transcript` alone writes to stderr; `--transcript FILE` or
-- `--transcript=FILE` appends to FILE (the next argument is taken as
-- FILE unless it starts with "-"); `--transcript-full` shows bulk data
-- line by line; `--transcript-secrets` shows passwords and AUTH payloads.
-- @module parley.transcript.cli
local M = {}

--- Help lines for the options, to append to a command's usage.
M.HELP = [[
  --transcript [FILE]  record the dialogue (C:/S: lines) on stderr or to FILE
  --transcript-full    ... with message bodies and data in full
  --transcript-secrets ... with passwords and AUTH payloads unmasked
]]

--- Takes the transcript options out of an argument list.
-- @tparam table argv
-- @treturn table the other arguments, in order
-- @treturn table `{ transcript = true | FILE, transcript_full = true,
-- transcript_secrets = true }` (only those given)
function M.take(argv)
  local rest, opts, i = {}, {}, 1
  while i <= #argv do
    local a = argv[i]
    local file = a:match("^%-%-transcript=(.*)$")
    if file then
      if file == "" then error("option --transcript= needs a file name", 0) end
      opts.transcript = file
    elseif a == "--transcript" then
      local nxt = argv[i + 1]
      if nxt and nxt:sub(1, 1) ~= "-" then
        opts.transcript = nxt
        i = i + 1
      else
        opts.transcript = true
      end
    elseif a == "--transcript-full" then
      opts.transcript_full = true
    elseif a == "--transcript-secrets" then
      opts.transcript_secrets = true
    else
      rest[#rest + 1] = a
    end
    i = i + 1
  end
  if (opts.transcript_full or opts.transcript_secrets) and not opts.transcript then
    opts.transcript = true
  end
  return rest, opts
end

--- Copies the options `take` found into a client's or server's options.
-- @tparam table into
-- @tparam table from what `take` returned second
-- @treturn table into
function M.merge(into, from)
  for k, v in pairs(from) do into[k] = v end
  return into
end

return M
