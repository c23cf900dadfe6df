--- `parley lab`: every parley server on loopback over one lab directory,
-- a table of ready commands, and (`--tour`) a replay of the sessions a
-- GUI client hides. Serves until Ctrl-C unless `--exit`.
-- @module parley.cli.lab
local parley = require "parley"
local cli = require "parley.cli"
local lab = require "parley.lab"

local M = {}

local HELP = [=[
usage: parley lab [--tour] [--exit] [--dir DIR] [--host ADDR]
                  [--port-offset N | --ports auto] [--transcript FILE]
                  [--watch [FILE]]
  Starts SMTP (2525), submission (2587, AUTH required), POP3 (1110),
  IMAP (1143), FTP (2121), HTTP (8080) and Telnet (2323) on loopback over
  a lab directory, prints a ready command for each and the password of
  the user strategos, and serves until Ctrl-C. TLS both ways, with a
  self-signed certificate made in LABDIR/tls/: STARTTLS/STLS/AUTH TLS on
  the mail and FTP ports, and implicit TLS on smtps (2465), pop3s (2995),
  imaps (2993), ftps (2990) and https (8443). Cleartext passwords stay
  accepted from loopback.
  --tour               replay each protocol's sessions with their dialogue
  --exit               stop after the tour (exit status 0 only if every
                       session passed); without --tour, right after starting
  --dir DIR            keep the lab in DIR between runs (default: a fresh
                       temporary directory, removed when the lab stops)
  --host ADDR          listen there (default 127.0.0.1; loopback only)
  --public             allow a non-loopback --host (the plain ports are cleartext)
  --port-offset N      add N to every port, TLS ones too (e.g. 10000: SMTP
                       on 12525)
  --ports auto         let the kernel pick every port (the table shows them)
  --transcript FILE    also append the tour's dialogues to FILE
  --watch [FILE]       show every connection to every lab server as the
                       server sees it (point a GUI mail or FTP client at the
                       lab and read what it says); on stdout, or appended
                       to FILE; passwords masked, bodies summarised
]=]

local SPEC = { tour = "flag", exit = "flag", dir = "string", host = "string", public = "flag",
  port_offset = "number", ports = "string", transcript = "string", help = "flag" }

-- How to call parley in the printed commands: as it was called from a
-- checkout (bin/parley), by its name when found on $PATH.
local function program()
  local a0 = arg and arg[0] or "parley"
  local dir, base = a0:match("^(.*)/([^/]*)$")
  if not dir then return a0 end
  for p in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    if p == dir then return base end
  end
  return a0
end

local function usage_error(msg)
  io.stderr:write("parley lab: ", msg, "\n")
  return 2
end

-- `--watch [FILE]`: the next argument is FILE unless it is an option
local function take_watch(argv)
  local rest, watch, i = {}, nil, 1
  while i <= #argv do
    local a = argv[i]
    if a == "--watch" then
      local nxt = argv[i + 1]
      if nxt and nxt:sub(1, 1) ~= "-" then watch, i = nxt, i + 1 else watch = io.stdout end
    else
      rest[#rest + 1] = a
    end
    i = i + 1
  end
  return rest, watch
end

function M.main(argv)
  local watch
  argv, watch = take_watch(argv)
  local o = cli.parse(argv, SPEC)
  if o.help then io.stdout:write(HELP) return 0 end
  if o[1] then return usage_error("unexpected argument '" .. o[1] .. "'") end
  if o.ports and o.ports ~= "auto" then return usage_error("--ports takes only 'auto'") end
  if o.ports and o.port_offset then return usage_error("--ports auto and --port-offset exclude each other") end
  if o.port_offset and math.type(o.port_offset) ~= "integer" then
    return usage_error("--port-offset wants a whole number")
  end
  if o.transcript and not o.tour then return usage_error("--transcript records the tour: give --tour too") end
  local host = o.host or "127.0.0.1"
  if not lab.is_loopback(host) and not o.public then
    return usage_error(host .. " is not a loopback address: the lab's plain ports speak cleartext, "
      .. "FTP and Telnet passwords included (--public to listen there anyway)")
  end
  local out = io.stdout
  local status = 0
  parley.run(function()
    local l, err = lab.start{ dir = o.dir, host = host, public = o.public,
      port_offset = o.port_offset and math.tointeger(o.port_offset), ports = o.ports, watch = watch }
    if not l then
      io.stderr:write("parley: lab: ", tostring(err), "\n")
      status = 1
      return
    end
    local stopping, done, stopped = false, false, parley.cond()
    local function stop(why)
      if stopping then return end
      stopping = true
      -- a second Ctrl-C during the grace period kills at once
      parley.on_signal("INT", nil)
      parley.on_signal("TERM", nil)
      if why then
        out:write("\n", why, ": stopping the lab (sessions get ", lab.GRACE, " s to finish)\n")
        out:flush()
      end
      l:close()
      if l.temp then out:write("removed ", l.dir, "\n") end
      out:write("lab stopped\n")
      out:flush()
      done = true
      stopped:broadcast()
    end
    parley.on_signal("INT", function() stop("SIGINT") end)
    parley.on_signal("TERM", function() stop("SIGTERM") end)

    out:write(("parley %s lab: every server on %s\n\n"):format(parley.version, host))
    out:write(require("parley.lab.endpoints").format(l, program()))
    out:write("\nlab ready\n")
    out:flush()
    if o.tour then
      -- whatever the tour does, the lab still stops cleanly afterwards
      local ran, ok, terr = pcall(require("parley.lab.tour").run, l, { out = out, transcript = o.transcript })
      if not ran or ok == nil then io.stderr:write("parley: tour: ", tostring(ran and terr or ok), "\n") end
      if not (ran and ok) then status = 1 end
    end
    if o.exit then
      stop()
    elseif not stopping then
      out:write("\nserving until Ctrl-C\n")
      out:flush()
    end
    while not done do stopped:wait() end
  end)
  return status
end

return M
