--- `parley telnet HOST [PORT]`: the interactive Telnet client.
--
-- The terminal is put in raw mode while the server echoes (character at a
-- time, as telnet(1) does) and left cooked otherwise (the terminal edits
-- lines and echoes them locally).  The window size goes out by NAWS when
-- the server wants it, and again on every resize (SIGWINCH).  The escape
-- key (Ctrl-] by default) quits.  `--transcript [FILE]` records the
-- dialogue (parley.transcript: C:/S: lines, what is typed after a
-- Password: prompt masked) on stderr or in FILE.
-- @module parley.cli.telnet
local parley = require "parley"
local core = require "parley.core"
local cli = require "parley.cli"
local tcli = require "parley.transcript.cli"
local tclient = require "parley.telnet.client"

local pty = core.pty
local M = {}

local HELP = [[
usage: parley telnet [options] HOST [PORT]
  PORT defaults to 23.
  --escape C          quit key, as ^] (default) or ^X
  --binary            agree to BINARY both ways (8-bit clean)
  --offer             offer NAWS, TTYPE and NEW-ENVIRON at once
  --wait S            after standard input ends, seconds to keep showing
                      the server's output (default 2)
]]

local function escape_byte(spec)
  if not spec then return 0x1d end
  local c = spec:match("^%^(.)$")
  if c then return string.byte(c:upper()) ~ 0x40 end
  if #spec == 1 then return spec:byte() end
  error("--escape wants a key like ^] or ^X", 0)
end

function M.main(argv)
  local rest, tr = tcli.take(argv)
  local o = cli.parse(rest, { escape = "string", binary = "flag",
                              offer = "flag", wait = "number", help = "flag" })
  if o.help then io.stdout:write(HELP, tcli.HELP) return 0 end
  local host, port = o[1], math.tointeger(tonumber(o[2] or "23"))
  if not host or o[3] then
    io.stderr:write("parley telnet: usage: parley telnet [options] HOST [PORT]\n")
    return 2
  end
  if not port or port < 1 or port > 65535 then
    io.stderr:write("parley telnet: not a port number: ", o[2], "\n")
    return 2
  end
  local esc = escape_byte(o.escape)
  local tty = pty.isatty(0) and pty.isatty(1)
  local status = 0
  local saved          -- the terminal's settings on entry
  local mode = "cooked"
  local stdin, stdout

  local function set_mode(want)
    if not tty or want == mode then return end
    if want == "raw" then pty.raw(0) else pty.restore(0, saved, esc) end
    mode = want
  end

  local function restore()
    if tty and saved then pty.restore(0, saved) end
    if stdin and stdin.close then stdin:close() pty.set_blocking(0, true) end
    if stdout and stdout.getfd then stdout:flush() stdout:close() pty.set_blocking(1, true) end
  end

  local ok, err = pcall(parley.run, function()
    local rows, cols
    if tty then rows, cols = pty.winsize(1) end
    local term = os.getenv("TERM")
    local c, cerr = tclient.connect(host, port, {
      naws = cols and { cols, rows } or nil,
      ttype = term and term ~= "" and not term:find("[\r\n%z]") and { term:upper() } or nil,
      environ = os.getenv("USER") and { USER = os.getenv("USER") } or nil,
      binary = o.binary, offer = o.offer,
      transcript = tr.transcript, transcript_full = tr.transcript_full, transcript_secrets = tr.transcript_secrets,
      on_option = function(cl, ev)
        if ev.option == core.telnet.options.echo then
          set_mode(cl:enabled("echo", "him") and "raw" or "cooked")
        end
      end,
    })
    if not c then
      io.stderr:write("parley telnet: ", host, ":", port, ": ", tostring(cerr), "\n")
      status = 1
      return
    end
    if tty then
      saved = assert(pty.raw(0))
      pty.restore(0, saved, esc)   -- cooked, with the escape key ending a line
    end
    -- a regular file or /dev/null cannot be polled: read or write those
    -- with plain blocking calls (they never block for long)
    local sok, sin = pcall(pty.stream, 0)
    stdin = sok and sin or { receive_some = function() return io.stdin:read(65536) end, close = false }
    local ook, sout = pcall(pty.stream, 1)
    stdout = ook and sout or { send = function(_, d) return io.stdout:write(d) end,
                               flush = function() return io.stdout:flush() end }
    local keyname = esc < 32 and ("^" .. string.char(esc + 64)) or string.char(esc)
    io.stderr:write(("Connected to %s:%d. Escape key is %s.\r\n"):format(host, port, keyname))
    if tty then
      parley.on_signal("WINCH", function()
        local r, k = pty.winsize(1)
        if r then c:naws(k, r) end
      end)
    end
    local done = false
    local function finish()
      done = true
      c:close()
      if stdin.close then stdin:close() end
    end
    local net = parley.spawn(function()
      while true do
        local data, rerr = c:read_some(-1)
        if not data then
          if not done then
            stdout:send("\r\nConnection closed by foreign host.\r\n")
            if rerr ~= "closed" then status = 1 end
          end
          break
        end
        stdout:send(data)
        stdout:flush()
      end
      finish()
    end)
    while not done do
      local data = stdin:receive_some()
      if not data then
        -- end of standard input: show what the server still says, then leave
        local deadline = parley.now() + (o.wait or 2)
        while not done and parley.now() < deadline do parley.sleep(0.05) end
        break
      end
      local cut = data:find(string.char(esc), 1, true)
      if cut then data = data:sub(1, cut - 1) end
      -- raw: keys as typed; cooked: lines ending in "\n", which
      -- client:write sends as CR LF (RFC 854)
      if data ~= "" then c:write(data) end
      if cut then
        stdout:send("\r\n")
        break
      end
    end
    if tty then parley.on_signal("WINCH", nil) end
    finish()
    net:join(2)
  end)
  restore()
  if not ok then
    io.stderr:write("parley telnet: ", tostring(err), "\n")
    return 1
  end
  return status
end

return M
