-- parley.check.plugin: the status line, perfdata and thresholds of the
-- Monitoring Plugins guidelines.
local plugin = require "parley.check.plugin"

describe("plugin output", function()
  it("formats perfdata as label=value[uom];warn;crit;min;max", function()
    assert.equal("time=0.004000s;1.000;2.000;0;",
      plugin.perfdata{ { label = "time", value = 0.004, uom = "s", warn = 1, crit = 2, min = 0 } })
    assert.equal("messages=12 size=4096B;;;0;", plugin.perfdata{
      { label = "messages", value = 12 }, { label = "size", value = 4096, uom = "B", min = 0 } })
  end)

  it("quotes a label with spaces and doubles its quotes", function()
    assert.equal("'it''s here'=1", plugin.perfdata{ { label = "it's here", value = 1 } })
  end)

  it("writes one line: LABEL STATE - summary | perfdata, with no | in the text", function()
    assert.equal("SMTP OK - a/b c | time=0.500000s;;;0;",
      plugin.line("SMTP", "OK", "a|b\r\nc", { { label = "time", value = 0.5, uom = "s", min = 0 } }))
    assert.equal("HTTP CRITICAL - down", plugin.line("HTTP", "CRITICAL", "down"))
  end)

  it("maps states to exit codes 0 to 3", function()
    assert.same({ OK = 0, WARNING = 1, CRITICAL = 2, UNKNOWN = 3 }, plugin.STATUS)
    assert.equal("CRITICAL", plugin.STATE[2])
  end)
end)

describe("thresholds", function()
  it("lets a time equal to the threshold pass and alerts just above it", function()
    assert.equal("OK", plugin.judge(1.0, 1.0, 2.0))
    assert.equal("WARNING", plugin.judge(1.0001, 1.0, 2.0))
    assert.equal("WARNING", plugin.judge(2.0, 1.0, 2.0))
    assert.equal("CRITICAL", plugin.judge(2.0001, 1.0, 2.0))
    assert.equal("OK", plugin.judge(99, nil, nil))
    assert.equal("CRITICAL", plugin.judge(0.5, nil, 0))
  end)

  it("keeps the worse state, a finding over UNKNOWN", function()
    assert.equal("CRITICAL", plugin.worst("WARNING", "CRITICAL"))
    assert.equal("WARNING", plugin.worst("WARNING", "OK"))
    assert.equal("WARNING", plugin.worst("UNKNOWN", "WARNING"))
    assert.equal("UNKNOWN", plugin.worst("OK", "UNKNOWN"))
    assert.has_error(function() plugin.worst("OK", "BAD") end)
  end)

  it("parses seconds and refuses anything else", function()
    assert.equal(1.5, plugin.threshold("1.5"))
    assert.equal(0, plugin.threshold("0"))
    assert.is_nil(plugin.threshold("-1"))
    assert.is_nil(plugin.threshold("abc"))
    assert.is_nil(plugin.threshold("inf"))
  end)
end)
