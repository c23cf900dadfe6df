-- Allocation failure in the C module (issue 11, Faults): the driver and
-- codec specs run with hardening/allocfail.so failing the Nth allocation
-- core.so makes, for N = 1..k. Specs may fail (that is the error
-- surfacing); the process must never crash. The long run (#slow) uses
-- core.so built with ASan + UBSan: they must stay silent, and
-- LeakSanitizer must find no more leaked allocations than the run without
-- a failure (core.so's few process-lifetime globals, reported once Lua
-- unloads it). The short run uses the ordinary build (no clang needed).
local lab = require "hardening.support.lab"
local H = lab.H

local ASAN_BUILD = "build/asan"

local function build_asan()
  local ok = os.execute("cd " .. lab.q(H.root) .. " && make -s BUILD=" .. ASAN_BUILD ..
    " CC=clang CFLAGS='-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined" ..
    " -fno-sanitize-recover=undefined' LDFLAGS='-fsanitize=address,undefined' all >/dev/null")
  assert(ok, "cannot build the ASan core.so")
end

local asan_rt
local function runtime()
  if not asan_rt then
    local p = io.popen("clang -print-file-name=libclang_rt.asan-x86_64.so")
    asan_rt = p:read("l")
    p:close()
  end
  return asan_rt
end

-- busted on one spec file with the Nth core.so allocation failing (0:
-- none), under ASan or not; returns { count =, leaks =, out =, how =, code = }
local function run(spec, n, asan)
  local log = os.tmpname()
  local env = ("ALLOCFAIL_N=%d ALLOCFAIL_LOG=%s LD_PRELOAD=%s "):format(n, lab.q(log), lab.q(lab.shim("allocfail")))
  if asan then
    env = ("PARLEY_SANITIZE=1 ALLOCFAIL_N=%d ALLOCFAIL_LOG=%s LD_PRELOAD=%s " ..
      "ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=1:abort_on_error=1 " ..
      "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "):format(n, lab.q(log),
      lab.q(lab.shim("allocfail") .. " " .. runtime() .. " libcrypt.so.1"))
  end
  local cmd = ("cd %s && %s timeout 120 busted --lua=lua5.4 --cpath=%s %s 2>&1")
    :format(lab.q(H.root), env, lab.q((asan and ASAN_BUILD or "build") .. "/?.so"), lab.q(spec))
  local p = io.popen(cmd)
  local out = p:read("a")
  local _, how, code = p:close()
  local r = { out = out, how = how, code = code, count = 0,
              leaks = tonumber(out:match("leaked in (%d+) allocation")) or 0 }
  for line in io.lines(log) do
    -- the busted process is the one that loaded core.so and counted
    local c = tonumber(line:match("count=(%d+)"))
    if c and c > r.count then r.count = c end
  end
  os.remove(log)
  return r
end

local function healthy(r, what, baseline)
  baseline = math.tointeger(baseline) or baseline
  local bad = r.out:match("ERROR: AddressSanitizer[^\n]*") or r.out:match("runtime error:[^\n]*")
    or r.out:match("Segmentation fault[^\n]*")
  assert(not bad, what .. ": " .. tostring(bad) .. "\n" .. r.out:sub(-3000))
  assert(r.how == "exit" and r.code < 124, what .. ": busted ended by " .. r.how .. " " .. r.code ..
    "\n" .. r.out:sub(-3000))
  assert(r.leaks <= baseline, ("%s: %d leaked allocations (%d without a failure)\n%s")
    :format(what, r.leaks, baseline, r.out:sub(-3000)))
end

-- the failure points for a spec with k core.so allocations: when `all`,
-- each of the first 50 (set-up paths) and 50 spread evenly over the rest
-- (some specs make thousands); else the first and one in the middle
local function points(k, all)
  local t = {}
  if all then
    for n = 1, math.min(k, 50) do t[#t + 1] = n end
    for i = 1, k > 50 and 50 or 0 do
      local n = 50 + (k - 50) * i // 50
      if n > t[#t] then t[#t + 1] = n end
    end
  else
    for _, n in ipairs{ 1, k // 2 } do
      if n >= 1 and n ~= t[#t] then t[#t + 1] = n end
    end
  end
  return t
end

local function sweep(specs, all)
  if all then build_asan() end
  local runs, surfaced = 0, 0
  for _, spec in ipairs(specs) do
    local clean = run(spec, 0, all)
    healthy(clean, spec .. " without failures", 1e9)
    assert.is_true(clean.count > 0, spec .. ": no allocation from core.so was seen")
    for _, n in ipairs(points(clean.count, all)) do
      local r = run(spec, n, all)
      healthy(r, ("%s, allocation %d of %d failing"):format(spec, n, clean.count), clean.leaks)
      runs = runs + 1
      -- the failure surfaced as an error (a spec's, or busted's own when
      -- it hit loading); else it was absorbed
      -- (busted's progress line: "-" a failure, "*" an error; its summary
      -- may be lost when LeakSanitizer ends the process)
      local progress = r.out:match("^[%+%-%*]+") or ""
      if progress:find("[%-%*]") or r.out:find("not enough memory", 1, true) then
        surfaced = surfaced + 1
      end
    end
    if os.getenv("HARDENING_VERBOSE") then
      io.stderr:write(("allocfail: %s: %d core.so allocations; so far %d failure runs, %d of them seen by a spec " ..
        "as an error; %d baseline leaks\n"):format(spec, clean.count, runs, surfaced, clean.leaks))
    end
  end
end

describe("allocation failure in core.so", function()
  before_each(lab.H.fd_snapshot)
  after_each(lab.H.fd_check)

  it("gives errors, never crashes or leaks, in the driver", function()
    sweep({ "spec/core/stream_spec.lua" }, false)
  end)

  it("gives errors, never crashes or leaks, at every allocation of the driver and codec specs #slow", function()
    local specs = { "spec/core/stream_spec.lua", "spec/core/serve_spec.lua", "spec/core/tasks_spec.lua",
      "spec/core/bulk_spec.lua", "spec/smtp/codec_spec.lua", "spec/http/codec_spec.lua",
      "spec/ftp/codec_spec.lua", "spec/imap/codec_spec.lua", "spec/telnet/codec_spec.lua" }
    local only = os.getenv("HARDENING_ALLOC_SPECS")   -- e.g. "spec/core/tasks_spec.lua ..."
    if only then
      specs = {}
      for s in only:gmatch("%S+") do specs[#specs + 1] = s end
    end
    sweep(specs, true)
  end)
end)
