-- Output batching: queued sends reach the kernel in one write when the task
-- blocks on a read. Counted with strace on a child process.
local H = require "helper"

local have_strace = H.have("strace")
local it_strace = have_strace and it or function(name)
  pending(name .. " (strace is not installed: cannot count write calls)")
end

-- Counts write-family system calls per descriptor in an strace -f log.
local function writes_per_fd(log)
  local per, lines = {}, {}
  for line in io.lines(log) do
    local call, fd = line:match("^%d+%s+(%w+)%((%d+),")
    if call and (call == "write" or call == "writev" or call == "sendto"
                 or call == "sendmsg" or call == "send") then
      fd = tonumber(fd)
      per[fd] = (per[fd] or 0) + 1
      lines[fd] = lines[fd] or {}
      table.insert(lines[fd], line:sub(1, 120))
    end
  end
  return per, lines
end

describe("output batching", function()
  before_each(H.fd_snapshot)
  after_each(H.fd_check)

  it_strace("sends 100 queued sends followed by a read with one write, and answers 100 pipelined lines with one write", function()
    local dir = H.tmpdir()
    finally(function() H.rmdir(dir) end)
    local log = dir .. "/strace.log"
    local child = H.child_with(
      "strace -f -qq -e trace=write,writev,sendto,sendmsg -o '" .. log .. "' ",
      "batch_child.lua")
    local out, how, code = child:finish()
    assert.same({"exit", 0}, {how, code}, out)
    local cfd, sfd, n = out:match("client_fd (%d+) server_fd (%d+) echoes (%d+)")
    assert.is_not_nil(cfd, out)
    assert.equal("100", n, out)
    local per, lines = writes_per_fd(log)
    cfd, sfd = tonumber(cfd), tonumber(sfd)
    assert.equal(1, per[cfd], "client writes:\n" .. table.concat(lines[cfd] or {}, "\n"))
    assert.equal(1, per[sfd], "server writes:\n" .. table.concat(lines[sfd] or {}, "\n"))
  end)
end)
