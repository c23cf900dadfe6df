local core = require "parley.core"
local ftp = core.ftp

-- 2023-11-24 15:30:12 UTC, the "now" of every listing spec
local NOW = 1700839812
local DAY = 86400

local function feed_all(p, lines)
  local code, text
  for i, line in ipairs(lines) do
    code, text = p:feed_line(line)
    if i < #lines then assert.is_nil(code, "reply ended early at line " .. i) end
  end
  return code, text
end

describe("ftp reply parser", function()
  it("parses a single-line reply", function()
    local p = ftp.reply_parser()
    local code, text = p:feed_line("220 parley ready")
    assert.equal(220, code)
    assert.equal("parley ready", text)
  end)

  it("parses a reply without text, with or without the space", function()
    local p = ftp.reply_parser()
    assert.same({200, ""}, {p:feed_line("200 ")})
    assert.same({200, ""}, {p:feed_line("200")})
  end)

  it("waits for the last line of a multi-line reply", function()
    local p = ftp.reply_parser()
    assert.is_nil(p:feed_line("123-First line"))
    assert.is_true(p:pending())
    assert.is_nil(p:feed_line("Second line"))
    assert.is_nil(p:feed_line("  234 A line beginning with numbers"))
    local code, text = p:feed_line("123 The last line")
    assert.equal(123, code)
    assert.equal("First line\nSecond line\n  234 A line beginning with numbers\nThe last line", text)
    assert.is_false(p:pending())
  end)

  it("treats lines starting with other codes as text", function()
    local p = ftp.reply_parser()
    local code, text = feed_all(p, {"230-Welcome", "220 not the end", "530 still not", "230 Done"})
    assert.equal(230, code)
    assert.equal("Welcome\n220 not the end\n530 still not\nDone", text)
  end)

  it("treats the same code followed by a hyphen as text and drops the prefix", function()
    local p = ftp.reply_parser()
    local code, text = feed_all(p, {"230-line one", "230-line two", "230 last"})
    assert.equal(230, code)
    assert.equal("line one\nline two\nlast", text)
  end)

  it("ends a multi-line reply on the bare code", function()
    local p = ftp.reply_parser()
    assert.same({211, "Features:\n MDTM\n"}, {feed_all(p, {"211-Features:", " MDTM", "211"})})
  end)

  it("keeps empty inner lines", function()
    local p = ftp.reply_parser()
    assert.same({250, "a\n\nb"}, {feed_all(p, {"250-a", "", "250 b"})})
  end)

  it("reads consecutive replies with one parser", function()
    local p = ftp.reply_parser()
    assert.same({331, "pass?"}, {p:feed_line("331 pass?")})
    assert.is_nil(p:feed_line("230-hi"))
    assert.same({230, "hi\nok"}, {p:feed_line("230 ok")})
    assert.same({221, "bye"}, {p:feed_line("221 bye")})
  end)

  it("rejects lines that cannot start a reply", function()
    local bad = {"", "hello", "22 short", "22", "2200 text", "220x", "600 bad first digit",
                 "099 zero", "abc def", " 220 indented", "22a ok"}
    for _, line in ipairs(bad) do
      local p = ftp.reply_parser()
      local code, err = p:feed_line(line)
      assert.is_nil(code, line)
      assert.equal("bad reply line", err, line)
    end
  end)

  it("is idle again after a bad line", function()
    local p = ftp.reply_parser()
    assert.is_nil((p:feed_line("garbage")))
    assert.same({200, "ok"}, {p:feed_line("200 ok")})
  end)

  it("limits the lines of a reply", function()
    local p = ftp.reply_parser{max_lines = 3}
    assert.is_nil(p:feed_line("211-a"))
    assert.is_nil(p:feed_line("b"))
    assert.is_nil(p:feed_line("c"))
    assert.same({nil, "too many lines"}, {p:feed_line("d")})
    assert.is_false(p:pending())
    assert.same({200, "x"}, {p:feed_line("200 x")})
  end)

  it("limits the bytes of a reply", function()
    local p = ftp.reply_parser{max_bytes = 10}
    assert.same({nil, "reply too long"}, {p:feed_line("200 " .. ("x"):rep(11))})
    assert.is_nil(p:feed_line("211-12345"))
    assert.same({nil, "reply too long"}, {p:feed_line("678901")})
    assert.same({200, ("x"):rep(10)}, {p:feed_line("200 " .. ("x"):rep(10))})
  end)

  it("drops a reply being read on reset", function()
    local p = ftp.reply_parser()
    assert.is_nil(p:feed_line("211-a"))
    p:reset()
    assert.is_false(p:pending())
    assert.same({200, "b"}, {p:feed_line("200 b")})
  end)

  it("raises on bad options and arguments", function()
    assert.has_error(function() ftp.reply_parser{max_lines = 0} end)
    assert.has_error(function() ftp.reply_parser("x") end)
    assert.has_error(function() ftp.reply_parser():feed_line({}) end)
  end)

  it("has a name and a description", function()
    local p = ftp.reply_parser()
    assert.matches("^parley.ftp.reply_parser: ", tostring(p))
    p:feed_line("211-x")
    assert.matches("in 211 reply", tostring(p))
  end)
end)

describe("ftp reply builder", function()
  it("builds a single-line reply", function()
    assert.equal("200 Command okay.\r\n", ftp.reply(200, "Command okay."))
    assert.equal("200 \r\n", ftp.reply(200))
    assert.equal("226 done\r\n", ftp.reply(226, {"done"}))
  end)

  it("builds a multi-line reply and pads inner lines starting with digits", function()
    assert.equal("211-Features:\r\n MDTM\r\n 123 x\r\n211 End\r\n",
                 ftp.reply(211, {"Features:", " MDTM", "123 x", "End"}))
  end)

  it("round-trips through the parser", function()
    local lines = {"first", "211 looks like an end", "211-also", "", "last"}
    local wire = ftp.reply(211, lines)
    local p = ftp.reply_parser()
    local code, text
    for line in wire:gmatch("(.-)\r\n") do code, text = p:feed_line(line) end
    assert.equal(211, code)
    assert.equal("first\n 211 looks like an end\n 211-also\n\nlast", text)
  end)

  it("raises on CR, LF or NUL inside a line", function()
    assert.has_error(function() ftp.reply(200, "a\r\n500 injected") end)
    assert.has_error(function() ftp.reply(200, "a\nb") end)
    assert.has_error(function() ftp.reply(200, {"a", "b\0", "c"}) end)
    assert.has_error(function() ftp.reply(200, {"a\r"}) end)
  end)

  it("raises on a bad code", function()
    assert.has_error(function() ftp.reply(99, "x") end)
    assert.has_error(function() ftp.reply(600, "x") end)
    assert.has_error(function() ftp.reply("abc", "x") end)
    assert.has_error(function() ftp.reply(200, {"a", {}}) end)
  end)
end)

describe("ftp FEAT", function()
  it("reads features and their parameters", function()
    local p = ftp.reply_parser()
    local _, text = feed_all(p, {"211-Extensions supported:", " MLST size*;create;modify*;",
                                 " SIZE", " rest STREAM", " UTF8", "211 END"})
    local f = ftp.parse_feat(text)
    assert.same({MLST = "size*;create;modify*;", SIZE = "", REST = "STREAM", UTF8 = ""}, f)
  end)

  it("gives no features for a single-line reply", function()
    assert.same({}, ftp.parse_feat("No features"))
  end)

  it("ignores lines that do not start with a space", function()
    assert.same({EPSV = ""}, ftp.parse_feat("Features:\nbogus\n EPSV\n \nEnd"))
  end)
end)

describe("ftp PASV and PORT", function()
  it("parses 227 texts of common servers", function()
    local texts = {
      ["Entering Passive Mode (192,168,1,10,195,80)."] = {"192.168.1.10", 195 * 256 + 80}, -- vsftpd
      ["Entering passive mode (127,0,0,1,204,173)."] = {"127.0.0.1", 204 * 256 + 173},     -- pyftpdlib
      ["Entering Passive Mode (10,0,0,5,19,137)."] = {"10.0.0.5", 19 * 256 + 137},         -- IIS
      ["Entering Passive Mode 10,0,0,5,19,137"] = {"10.0.0.5", 19 * 256 + 137},
      ["=127,0,0,1,4,1"] = {"127.0.0.1", 1025},
      ["Passive 2 go (1,2,3,4,0,21)"] = {"1.2.3.4", 21},
      ["v 300,1 then 1000,2,3,4,5 then (1,2,3,4,0,21)"] = {"1.2.3.4", 21},
    }
    for text, want in pairs(texts) do
      assert.same(want, {ftp.parse_pasv(text)}, text)
    end
  end)

  it("rejects 227 texts without a host-port or with numbers over 255", function()
    assert.same({nil, "no host-port"}, {ftp.parse_pasv("Entering Passive Mode")})
    assert.same({nil, "no host-port"}, {ftp.parse_pasv("(1,2,3,4,5)")})
    assert.same({nil, "no host-port"}, {ftp.parse_pasv("")})
    assert.same({nil, "number out of range"}, {ftp.parse_pasv("(256,0,0,1,4,1)")})
    assert.same({nil, "number out of range"}, {ftp.parse_pasv("(127,0,0,1,4,300)")})
    assert.same({nil, "number out of range"}, {ftp.parse_pasv("(127,0,0,1,4,0001)")})
    assert.same({nil, "bad port"}, {ftp.parse_pasv("(127,0,0,1,0,0)")})
  end)

  it("parses PORT arguments", function()
    assert.same({"132.235.1.2", 6275}, {ftp.parse_port("132,235,1,2,24,131")})
    assert.same({"10.0.0.1", 21}, {ftp.parse_port(" 10,0,0,1,0,21 ")})
  end)

  it("rejects bad PORT arguments", function()
    local bad = {
      ["1,2,3,4,5"] = "bad host-port", ["1,2,3,4,5,6,7"] = "bad host-port",
      ["1,2,3,4,5,x"] = "bad host-port", ["(1,2,3,4,5,6)"] = "bad host-port",
      [""] = "bad host-port", ["1, 2,3,4,5,6"] = "bad host-port",
      ["-1,2,3,4,5,6"] = "bad host-port",
      ["256,2,3,4,5,6"] = "number out of range", ["1,2,3,4,5,256"] = "number out of range",
      ["1,2,3,4,1000,6"] = "number out of range",
      ["1,2,3,4,0,0"] = "bad port",
    }
    for arg, err in pairs(bad) do
      assert.same({nil, err}, {ftp.parse_port(arg)}, arg)
    end
  end)

  it("formats PORT and PASV and parses them back", function()
    assert.equal("132,235,1,2,24,131", ftp.format_port("132.235.1.2", 6275))
    local text = ftp.format_pasv("127.0.0.1", 65535)
    assert.equal("Entering Passive Mode (127,0,0,1,255,255).", text)
    assert.same({"127.0.0.1", 65535}, {ftp.parse_pasv(text)})
    math.randomseed(959)
    for _ = 1, 200 do
      local ip = ("%d.%d.%d.%d"):format(math.random(0, 255), math.random(0, 255),
                                        math.random(0, 255), math.random(0, 255))
      local port = math.random(1, 65535)
      assert.same({ip, port}, {ftp.parse_port(ftp.format_port(ip, port))})
    end
  end)

  it("refuses to format a bad address or port", function()
    assert.same({nil, "bad address"}, {ftp.format_pasv("::1", 21)})
    assert.same({nil, "bad address"}, {ftp.format_port("1.2.3", 21)})
    assert.same({nil, "bad port"}, {ftp.format_port("1.2.3.4", 0)})
    assert.same({nil, "bad port"}, {ftp.format_pasv("1.2.3.4", 65536)})
  end)
end)

describe("ftp EPSV and EPRT", function()
  it("parses 229 texts with any delimiter", function()
    assert.equal(6446, ftp.parse_epsv("Entering Extended Passive Mode (|||6446|)"))
    assert.equal(6446, ftp.parse_epsv("Entering Extended Passive Mode (!!!6446!)"))
    assert.equal(1, ftp.parse_epsv("(###1#)"))
    assert.equal(65535, ftp.parse_epsv("ok (x) then (~~~65535~)."))
  end)

  it("rejects malformed 229 texts", function()
    assert.same({nil, "no extended port"}, {ftp.parse_epsv("Entering Extended Passive Mode")})
    assert.same({nil, "no extended port"}, {ftp.parse_epsv("(||6446|)")})
    assert.same({nil, "no extended port"}, {ftp.parse_epsv("(|!|6446|)")})
    assert.same({nil, "no extended port"}, {ftp.parse_epsv("(|||6446)")})
    assert.same({nil, "no extended port"}, {ftp.parse_epsv("(   6446 )")})
    assert.same({nil, "bad port"}, {ftp.parse_epsv("(|||0|)")})
    assert.same({nil, "bad port"}, {ftp.parse_epsv("(|||65536|)")})
    assert.same({nil, "bad port"}, {ftp.parse_epsv("(||||)")})
    assert.same({nil, "bad port"}, {ftp.parse_epsv("(|||+80|)")})
  end)

  it("formats a 229 text that parses back", function()
    assert.equal("Entering Extended Passive Mode (|||6446|)", ftp.format_epsv(6446))
    assert.equal(6446, ftp.parse_epsv(ftp.format_epsv(6446)))
    assert.same({nil, "bad port"}, {ftp.format_epsv(0)})
  end)

  it("parses the RFC 2428 EPRT examples", function()
    assert.same({"132.235.1.2", 6275, 1}, {ftp.parse_eprt("|1|132.235.1.2|6275|")})
    assert.same({"1080::8:800:200c:417a", 5282, 2}, {ftp.parse_eprt("|2|1080::8:800:200C:417A|5282|")})
    assert.same({"::1", 21, 2}, {ftp.parse_eprt("!2!::1!21!")})
  end)

  it("rejects malformed EPRT arguments", function()
    local bad = {
      ["|3|1.2.3.4|21|"] = "unsupported network protocol",
      ["||1.2.3.4|21|"] = "unsupported network protocol",
      ["|1|::1|21|"] = "bad address",
      ["|2|1.2.3.4|21|"] = "bad address",
      ["|2|1080:::8|21|"] = "bad address",
      ["|2|12345::1|21|"] = "bad address",
      ["|1|1.2.3|21|"] = "bad address",
      ["|1|256.1.1.1|21|"] = "bad address",
      ["|1||21|"] = "bad address",
      ["|1|1.2.3.4|0|"] = "bad port",
      ["|1|1.2.3.4|65536|"] = "bad port",
      ["|1|1.2.3.4||"] = "bad port",
      ["|1|1.2.3.4|21x|"] = "bad port",
      ["|1|1.2.3.4|21"] = "bad delimiter",
      ["1|1|1.2.3.4|21|1"] = "bad delimiter",
      [" 1 1.2.3.4 21 "] = "bad delimiter", ["| 1 1.2.3.4 21 |"] = "bad eprt",
      ["|1|1.2.3.4|21|5|"] = "bad eprt",
      ["|1|"] = "bad eprt",
    }
    for arg, err in pairs(bad) do
      assert.same({nil, err}, {ftp.parse_eprt(arg)}, arg)
    end
  end)

  it("formats EPRT for both families", function()
    assert.equal("|1|132.235.1.2|6275|", ftp.format_eprt("132.235.1.2", 6275))
    assert.equal("|2|1080::8:800:200c:417a|5282|", ftp.format_eprt("1080::8:800:200C:417A", 5282))
    assert.same({"1080::8:800:200c:417a", 5282, 2}, {ftp.parse_eprt(ftp.format_eprt("1080::8:800:200C:417A", 5282))})
    assert.same({nil, "bad address"}, {ftp.format_eprt("host", 21)})
    assert.same({nil, "bad port"}, {ftp.format_eprt("::1", 70000)})
  end)
end)

describe("ftp time-val", function()
  it("formats and parses MDTM times", function()
    assert.equal("20231124153012", ftp.format_time(NOW))
    assert.equal(NOW, ftp.parse_time("20231124153012"))
    assert.equal(0, ftp.parse_time("19700101000000"))
    assert.equal("19700101000000", ftp.format_time(0))
    assert.equal("19691231235959", ftp.format_time(-1))
    assert.equal("10000101000000", ftp.format_time(-30610224000))
    assert.equal("99991231235959", ftp.format_time(253402300799))
  end)

  it("keeps fractions of a second", function()
    assert.near(NOW + 0.123, ftp.parse_time("20231124153012.123"), 1e-6)
    assert.near(NOW + 0.5, ftp.parse_time("20231124153012.5"), 1e-9)
    assert.equal("20231124153012.250", ftp.format_time(NOW + 0.25))
    assert.is_true(math.type(ftp.parse_time("20231124153012")) == "integer")
  end)

  it("checks the day against the month, leap years included", function()
    assert.equal(951782400, ftp.parse_time("20000229000000"))
    assert.same({nil, "time out of range"}, {ftp.parse_time("19000229000000")})
    assert.same({nil, "time out of range"}, {ftp.parse_time("20230431000000")})
  end)

  it("accepts a leap second", function()
    assert.equal(ftp.parse_time("20170101000000"), ftp.parse_time("20161231235960"))
  end)

  it("rejects malformed times", function()
    local bad = {
      ["2023112415301"] = "bad time", ["20231124153012."] = "bad time",
      ["20231124153012.x"] = "bad time", ["20231124153012 "] = "bad time",
      ["2023-11-24 15:30"] = "bad time", [""] = "bad time",
      ["+2023112415301"] = "bad time",
      ["09991124153012"] = "time out of range", ["20231324153012"] = "time out of range",
      ["20231100153012"] = "time out of range", ["20231124243012"] = "time out of range",
      ["20231124156012"] = "time out of range", ["20231124153061"] = "time out of range",
    }
    for s, err in pairs(bad) do
      assert.same({nil, err}, {ftp.parse_time(s)}, s)
    end
  end)

  it("refuses to format times outside years 1000..9999", function()
    assert.same({nil, "time out of range"}, {ftp.format_time(253402300800)})
    assert.same({nil, "time out of range"}, {ftp.format_time(-30610224001)})
    assert.same({nil, "time out of range"}, {ftp.format_time(1e300)})
    assert.same({nil, "time out of range"}, {ftp.format_time(0/0)})
  end)

  it("round-trips random times", function()
    math.randomseed(3659)
    for _ = 1, 500 do
      local t = math.random(-30610224000, 253402300799)
      assert.equal(t, ftp.parse_time(ftp.format_time(t)))
    end
  end)
end)

describe("ftp ls -l lines", function()
  local function line(e, now) return (ftp.format_list_line(e, now or NOW)) end

  it("formats a recent file with the time of day", function()
    assert.equal("-rw-r--r--    1 alice    staff        1234 Nov 24 15:30 notes.txt",
                 line{name = "notes.txt", size = 1234, mtime = NOW - 12, owner = "alice", group = "staff"})
  end)

  it("formats an old file with the year and a space-padded day", function()
    assert.equal("drwxr-xr-x    2 ftp      ftp          4096 Jan  5  2021 old dir",
                 line{name = "old dir", type = "dir", size = 4096, nlink = 2,
                      mtime = ftp.parse_time("20210105120000")})
  end)

  it("switches to the year at 180 days", function()
    local e = {name = "f", mtime = NOW - 180 * DAY + 1}
    assert.matches("%d%d:%d%d f$", line(e))
    e.mtime = NOW - 180 * DAY
    assert.matches("  2023 f$", line(e))
  end)

  it("shows the year for dates in the future beyond one hour", function()
    assert.matches("%d%d:%d%d f$", line{name = "f", mtime = NOW + 3600})
    assert.matches("Nov 24  2023 f$", line{name = "f", mtime = NOW + 3601})
    assert.matches("Nov 24  2024 f$", line{name = "f", mtime = NOW + 366 * DAY})
  end)

  it("uses English month names and UTC", function()
    for m = 1, 12 do
      local t = ftp.parse_time(("2023%02d15000000"):format(m))
      local want = ({"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"})[m]
      assert.matches(" " .. want .. " 15 ", line({name = "f", mtime = t}, t))
    end
  end)

  it("formats links, modes and special bits", function()
    assert.equal("lrwxrwxrwx    1 ftp      ftp             7 Nov 24 15:30 link -> target",
                 line{name = "link", type = "link", target = "target", size = 7, mtime = NOW})
    assert.matches("^%-rwsr%-sr%-t ", line{name = "f", mode = tonumber("7755", 8), mtime = NOW})
    assert.matches("^%-rwSr%-Sr%-T ", line{name = "f", mode = tonumber("7644", 8), mtime = NOW})
    assert.matches("^prw%-%-%-%-%-%-%- ", line{name = "f", type = "fifo", mode = tonumber("600", 8), mtime = NOW})
  end)

  it("refuses names with CR, LF or NUL and owners with spaces", function()
    assert.same({nil, "bad name"}, {ftp.format_list_line({name = "a\r\nb"}, NOW)})
    assert.same({nil, "bad name"}, {ftp.format_list_line({name = "a\0b"}, NOW)})
    assert.same({nil, "bad name"}, {ftp.format_list_line({name = ""}, NOW)})
    assert.same({nil, "bad name"}, {ftp.format_list_line({name = "l", type = "link", target = "x\ny"}, NOW)})
    assert.same({nil, "bad owner"}, {ftp.format_list_line({name = "a", owner = "a b"}, NOW)})
    assert.same({nil, "bad owner"}, {ftp.format_list_line({name = "a", group = ""}, NOW)})
    assert.same({nil, "time out of range"}, {ftp.format_list_line({name = "a", mtime = 2^60}, NOW)})
  end)

  it("raises on a bad entry", function()
    assert.has_error(function() ftp.format_list_line({name = "a", type = "pipe"}, NOW) end)
    assert.has_error(function() ftp.format_list_line({}, NOW) end)
    assert.has_error(function() ftp.format_list_line({name = 5}, NOW) end)
    assert.has_error(function() ftp.format_list_line({name = "a", size = "big"}, NOW) end)
    assert.has_error(function() ftp.format_list_line("a") end)
  end)

  local T1530 = ftp.parse_time("20231124153000")

  it("parses GNU ls lines", function()
    assert.same({name = "notes.txt", type = "file", size = 1234, mtime = T1530, mode = tonumber("644", 8),
                 nlink = 1, owner = "alice", group = "staff"},
                ftp.parse_list_line("-rw-r--r-- 1 alice staff 1234 Nov 24 15:30 notes.txt", NOW))
    assert.same({name = "old dir", type = "dir", size = 4096, mtime = ftp.parse_time("20210105000000"),
                 mode = tonumber("755", 8), nlink = 2, owner = "root", group = "root"},
                ftp.parse_list_line("drwxr-xr-x  2 root root 4096 Jan  5  2021 old dir", NOW))
    assert.equal(tonumber("1777", 8), ftp.parse_list_line("drwxrwxrwt. 9 root root 4096 Nov 24 15:30 tmp", NOW).mode)
    assert.equal("acl", ftp.parse_list_line("-rw-r--r--+ 1 a b 0 Nov 24 15:30 acl", NOW).name)
  end)

  it("parses vsftpd and busybox lines with numeric owners", function()
    local e = ftp.parse_list_line("-rw-r--r--    1 1000     1000         1234 Nov 24 15:30 file.txt", NOW)
    assert.same({"file.txt", 1234, "1000", "1000", 1}, {e.name, e.size, e.owner, e.group, e.nlink})
    e = ftp.parse_list_line("-rw-r--r--    1 0        0               12 Nov 24 15:30 a.txt", NOW)
    assert.same({"a.txt", 12, "0", "0"}, {e.name, e.size, e.owner, e.group})
  end)

  it("parses pyftpdlib lines", function()
    local e = ftp.parse_list_line("-rw-r--r--   1 giampaolo staff     6 Nov 24 15:30 setup.py", NOW)
    assert.same({"setup.py", 6, "giampaolo", "staff"}, {e.name, e.size, e.owner, e.group})
  end)

  it("parses lines without a group", function()
    local e = ftp.parse_list_line("-rw-r--r-- 1 ftp 1234 Nov 24 15:30 f", NOW)
    assert.same({"f", 1234, "ftp", 1}, {e.name, e.size, e.owner, e.nlink})
    assert.is_nil(e.group)
  end)

  it("parses device files", function()
    local e = ftp.parse_list_line("crw-rw-rw- 1 root root 1, 3 Nov 24 15:30 null", NOW)
    assert.same({"char", "null", 1, 3}, {e.type, e.name, e.major, e.minor})
    assert.is_nil(e.size)
    e = ftp.parse_list_line("brw-rw----    1 0        6          8,   0 Nov 24 15:30 sda", NOW)
    assert.same({"block", "sda", 8, 0}, {e.type, e.name, e.major, e.minor})
    e = ftp.parse_list_line("crw-rw-rw- 1 root root 1,3 Nov 24 15:30 null", NOW)
    assert.same({1, 3}, {e.major, e.minor})
  end)

  it("parses links and names with spaces and arrows", function()
    local e = ftp.parse_list_line("lrwxrwxrwx 1 root root 7 Nov 24 15:30 my link -> some target", NOW)
    assert.same({"link", "my link", "some target"}, {e.type, e.name, e.target})
    e = ftp.parse_list_line("lrwxrwxrwx 1 root root 7 Nov 24 15:30 a -> b -> c", NOW)
    assert.same({"a", "b -> c"}, {e.name, e.target})
    e = ftp.parse_list_line("-rw-r--r-- 1 root root 7 Nov 24 15:30 not -> a link", NOW)
    assert.same({"file", "not -> a link"}, {e.type, e.name})
    assert.is_nil(e.target)
    e = ftp.parse_list_line("-rw-r--r-- 1 root root 7 Nov 24 15:30  leading space", NOW)
    assert.equal(" leading space", e.name)
  end)

  it("puts a year-less date in the past year when it would be in the future", function()
    local e = ftp.parse_list_line("-rw-r--r-- 1 a b 1 Dec 24 10:00 f", NOW)
    assert.equal(ftp.parse_time("20221224100000"), e.mtime)
    e = ftp.parse_list_line("-rw-r--r-- 1 a b 1 Nov 25 10:00 f", NOW)
    assert.equal(ftp.parse_time("20231125100000"), e.mtime)
  end)

  it("parses IIS DOS-style lines", function()
    assert.same({name = "my folder", type = "dir", mtime = ftp.parse_time("20230102101500")},
                ftp.parse_list_line("01-02-23  10:15AM       <DIR>          my folder", NOW))
    assert.same({name = "report 2023.txt", type = "file", size = 1234, mtime = ftp.parse_time("20231124150400")},
                ftp.parse_list_line("11-24-23  03:04PM                 1234 report 2023.txt", NOW))
    assert.equal(ftp.parse_time("19991231000500"),
                 ftp.parse_list_line("12-31-99  12:05AM  1 a", NOW).mtime)
    assert.equal(ftp.parse_time("20231124120500"),
                 ftp.parse_list_line("11-24-2023  12:05PM  1 a", NOW).mtime)
    assert.equal(ftp.parse_time("20231124170500"),
                 ftp.parse_list_line("11-24-2023  17:05  1 a", NOW).mtime)
  end)

  it("returns nil for lines it does not understand", function()
    local bad = {"total 12", "", "-", "drwxr-xr-x", "-rw-r--r-- 1 a b 12 Nov 24 15:30",
                 "-rw-r--r-- 1 a b 12 Nov 24 15:30 ", "-rw-r--r-- 1 a b xx Nov 24 15:30 f",
                 "-rw-r--r-- 1 a b 12 Foo 24 15:30 f", "-rw-r--r-- 1 a b 12 Nov 32 15:30 f",
                 "-rw-r--r-- 1 a b 12 Nov 24 25:30 f", "-rw-r--r-- 1 a b 12 Feb 30  2023 f",
                 "-rwxrwxrwq 1 a b 12 Nov 24 15:30 f", "zrw-r--r-- 1 a b 12 Nov 24 15:30 f",
                 "-rw-r--r-- 1 a b c d 12 Nov 24 15:30 f", "crw-r--r-- 1 a b 12 Nov 24 15:30 f",
                 "13-01-23  10:15AM  <DIR>  x", "01-02-23  13:15PM  <DIR>  x", "01-02-23  10:15AM  <DIR>",
                 "01-02-23  10:15AM  <FILE>  x", "250 ok",
                 "lrwxrwxrwx 1 a b 1 Nov 24 15:30  -> t"}
    for _, l in ipairs(bad) do
      assert.is_nil(ftp.parse_list_line(l, NOW), l)
    end
  end)

  it("round-trips formatted lines", function()
    math.randomseed(1985)
    local types = {"file", "dir", "link"}
    for i = 1, 300 do
      local e = {
        name = ("name %d; with -- spaces"):format(i), type = types[math.random(3)],
        size = math.random(0, 2^40), mode = math.random(0, tonumber("7777", 8)),
        nlink = math.random(1, 99), owner = "u" .. i, group = "g" .. i,
        mtime = (NOW - math.random(0, 400 * DAY)) // 60 * 60,
      }
      if e.type == "link" then e.target = "../t " .. i end
      local l = assert(ftp.format_list_line(e, NOW))
      local back = ftp.parse_list_line(l, NOW)
      if NOW - e.mtime >= 180 * DAY then e.mtime = e.mtime // DAY * DAY end -- only the day is shown
      assert.same(e, back, l)
    end
  end)
end)

describe("ftp MLSx facts", function()
  it("formats the default facts of an entry", function()
    assert.equal("type=file;size=123;modify=20231124153012;perm=r; name",
                 ftp.format_facts{name = "name", type = "file", size = 123, mtime = NOW, perm = "r"})
    assert.equal("type=dir;modify=20231124153012.500; d",
                 ftp.format_facts{name = "d", type = "dir", modify = NOW + 0.5})
    assert.equal("type=OS.unix=symlink; l", ftp.format_facts{name = "l", type = "link"})
  end)

  it("formats the facts asked for, in that order", function()
    local e = {name = "a b;c", type = "file", size = 5, mtime = NOW, mode = tonumber("644", 8),
               owner = "alice", group = "staff", unique = "801g4", ["x.ver"] = "2"}
    assert.equal("size=5;type=file;unix.mode=0644;unix.owner=alice;unix.group=staff;x.ver=2; a b;c",
                 ftp.format_facts(e, {"Size", "TYPE", "unix.mode", "unix.owner", "unix.group", "x.ver", "create", "lang"}))
    assert.equal(" name", ftp.format_facts({name = "name"}, {}))
  end)

  it("refuses fact values and names that would break the line", function()
    assert.same({nil, "bad fact value"}, {ftp.format_facts{name = "a", perm = "r w"}})
    assert.same({nil, "bad fact value"}, {ftp.format_facts{name = "a", perm = "r;w"}})
    assert.same({nil, "bad fact value"}, {ftp.format_facts{name = "a", unique = "x\n"}})
    assert.same({nil, "bad name"}, {ftp.format_facts{name = "a\r\nb"}})
    assert.same({nil, "bad fact name"}, {ftp.format_facts({name = "a", ["x=y"] = "1"}, {"x=y"})})
    assert.has_error(function() ftp.format_facts{} end)
    assert.has_error(function() ftp.format_facts({name = "a"}, {{}}) end)
    assert.has_error(function() ftp.format_facts{name = "a", modify = {}} end)
    assert.has_error(function() ftp.format_facts{name = "a", modify = 2^60} end)
  end)

  it("parses an MLSD line with semicolons and spaces in the name", function()
    local e = ftp.parse_facts("Type=file;Size=4161;Modify=19970214165800;Perm=adfr; my file;v2 .txt")
    assert.same({name = "my file;v2 .txt", type = "file", size = 4161, modify = "19970214165800",
                 mtime = ftp.parse_time("19970214165800"), perm = "adfr"}, e)
  end)

  it("keeps unknown facts and OS types as they are", function()
    local e = ftp.parse_facts("type=OS.unix=slink:/x;UNIX.mode=0755;x.myfact=foo,bar;unique=AB12; l")
    assert.same({name = "l", type = "OS.unix=slink:/x", ["unix.mode"] = "0755", mode = tonumber("755", 8),
                 ["x.myfact"] = "foo,bar", unique = "AB12"}, e)
  end)

  it("lowercases the standard types", function()
    assert.equal("cdir", ftp.parse_facts("type=CDir; .").type)
    assert.equal("pdir", ftp.parse_facts("type=PDIR; ..").type)
  end)

  it("parses lines without facts and without the final semicolon", function()
    assert.same({name = "only name"}, ftp.parse_facts(" only name"))
    assert.same({name = "n", size = 1}, ftp.parse_facts("size=1 n"))
    assert.same({name = "", type = "dir"}, ftp.parse_facts("type=dir; "))
    assert.same({name = "n", perm = ""}, ftp.parse_facts("perm=; n"))
  end)

  it("rejects malformed facts", function()
    local bad = {
      ["type=file;size=12"] = "no pathname", [""] = "no pathname",
      ["type;size=1; n"] = "bad fact", ["=x; n"] = "bad fact", [";; n"] = "bad fact",
      ["size=12a; n"] = "bad size", ["size=; n"] = "bad size", ["size=-1; n"] = "bad size",
      ["modify=2023; n"] = "bad modify", ["modify=20231399000000; n"] = "bad modify",
    }
    for line, err in pairs(bad) do
      assert.same({nil, err}, {ftp.parse_facts(line)}, line)
    end
  end)

  it("round-trips random entries", function()
    math.randomseed(7)
    local types = {"file", "dir", "cdir", "pdir"}
    for i = 1, 300 do
      local name = {}
      for j = 1, math.random(0, 20) do
        local c
        repeat c = math.random(1, 255) until c ~= 10 and c ~= 13
        name[j] = string.char(c)
      end
      local e = {name = table.concat(name), type = types[math.random(4)], size = math.random(0, 2^50),
                 mtime = math.random(0, 2^32), perm = ("adfr"):sub(1, math.random(0, 4)),
                 unique = ("u%x"):format(i)}
      local back = assert(ftp.parse_facts(assert(ftp.format_facts(e))))
      back.modify = nil
      assert.same(e, back)
    end
  end)
end)

describe("ftp TYPE A", function()
  local function encode(s) return ftp.ascii_encoder():feed(s) end
  local function decode(chunks)
    local d, out = ftp.ascii_decoder(), {}
    for _, c in ipairs(chunks) do out[#out + 1] = d:feed(c) end
    out[#out + 1] = d:finish()
    return table.concat(out)
  end

  it("sends LF as CRLF and a bare CR as is", function()
    local e = ftp.ascii_encoder()
    assert.equal("a\r\nb\r\n", e:feed("a\nb\n"))
    assert.equal("\r\n\r\n", e:feed("\n\n"))
    assert.equal("x\ry", e:feed("x\ry"))
    assert.equal("\r\r\n", e:feed("\r\n"))
    assert.equal("", e:feed(""))
    assert.equal("", e:finish())
  end)

  it("receives CRLF as LF and keeps other CRs", function()
    assert.equal("a\nb\n", decode{"a\r\nb\r\n"})
    assert.equal("a\rb\n\r", decode{"a\rb\r\n\r"})
    assert.equal("\r\n", decode{"\r\r\n"})
    assert.equal("\n", decode{"\n"})
  end)

  it("holds a CR that ends a chunk until the next chunk", function()
    local d = ftp.ascii_decoder()
    assert.equal("a", d:feed("a\r"))
    assert.matches("CR held", tostring(d))
    assert.equal("\nb", d:feed("\nb"))
    assert.equal("", d:feed("\r"))
    assert.equal("\rc", d:feed("c"))
    assert.equal("", d:feed("\r"))
    assert.equal("", d:feed(""))
    assert.equal("\r", d:finish())
    assert.equal("", d:finish())
  end)

  it("decodes a CR split at every position", function()
    local wire = "ab\r\ncd\r\r\nef\rg\r\n\r"
    local want = "ab\ncd\r\nef\rg\n\r"
    for i = 0, #wire do
      for j = i, #wire do
        assert.equal(want, decode{wire:sub(1, i), wire:sub(i + 1, j), wire:sub(j + 1)}, i .. "," .. j)
      end
    end
  end)

  it("round-trips random bytes split at random points", function()
    math.randomseed(1959)
    local alphabet = {"\r", "\n", "a", "\0", "\255", "\r\n"}
    for _ = 1, 300 do
      local parts = {}
      for j = 1, math.random(0, 40) do parts[j] = alphabet[math.random(#alphabet)] end
      local input = table.concat(parts)
      local wire = encode(input)
      local chunks, pos = {}, 1
      while pos <= #wire do
        local n = math.random(1, 5)
        chunks[#chunks + 1] = wire:sub(pos, pos + n - 1)
        pos = pos + n
      end
      assert.equal(input, decode(chunks))
    end
  end)

  it("round-trips a sample split at every point", function()
    local input = "line 1\nline 2\r\n\rbare\r\r\nend\r"
    local wire = encode(input)
    for i = 0, #wire do
      assert.equal(input, decode{wire:sub(1, i), wire:sub(i + 1)})
    end
  end)

  it("raises on a wrong argument", function()
    assert.has_error(function() ftp.ascii_encoder():feed({}) end)
    assert.has_error(function() ftp.ascii_decoder():feed() end)
    assert.has_error(function() ftp.ascii_decoder().feed(ftp.ascii_encoder(), "x") end)
  end)
end)

describe("ftp commands", function()
  it("splits a command into its uppercased verb and argument", function()
    assert.same({"RETR", "my file.txt"}, {ftp.parse_command("retr my file.txt")})
    assert.same({"CWD", " spaced dir "}, {ftp.parse_command("CWD  spaced dir ")})
    assert.same({"SITE", "CHMOD 644 f"}, {ftp.parse_command("Site CHMOD 644 f")})
    assert.same({"PWD", ""}, {ftp.parse_command("PWD ")})
    local verb, arg = ftp.parse_command("NOOP")
    assert.equal("NOOP", verb)
    assert.is_nil(arg)
  end)

  it("skips Telnet IP and Synch before ABOR", function()
    assert.equal("ABOR", (ftp.parse_command("\255\244\255\242ABOR")))
  end)

  it("rejects malformed commands", function()
    for _, line in ipairs{"", " RETR x", "RETRX x", "RE1R", "RETR\tx", "\255\244", "PASS a\0b", "2RETR"} do
      local verb, err = ftp.parse_command(line)
      assert.is_nil(verb, line)
      assert.truthy(err == "bad command" or err == "nul in command", line)
    end
    assert.same({nil, "nul in command"}, {ftp.parse_command("PASS a\0b")})
  end)
end)

describe("ftp SIZE and REST numbers", function()
  it("parses decimal numbers", function()
    assert.equal(1234, ftp.parse_size("1234"))
    assert.equal(0, ftp.parse_size("0"))
    assert.equal(math.maxinteger, ftp.parse_size("9223372036854775807"))
  end)

  it("rejects anything else", function()
    for _, s in ipairs{"", "-1", "+1", "1 ", " 1", "1e3", "0x10", "9223372036854775808", "99999999999999999999"} do
      assert.same({nil, "bad number"}, {ftp.parse_size(s)}, s)
    end
  end)
end)

describe("ftp virtual paths", function()
  it("resolves relative paths against the working directory", function()
    assert.equal("/home/u/docs", ftp.normalize_path("/home/u", "docs"))
    assert.equal("/home/u/docs/a", ftp.normalize_path("/home/u/", "./docs//a/."))
    assert.equal("/home", ftp.normalize_path("/home/u", ".."))
    assert.equal("/home/u", ftp.normalize_path("/home/u", ""))
    assert.equal("/home/u", ftp.normalize_path("/home/u"))
  end)

  it("takes absolute paths as they are", function()
    assert.equal("/etc", ftp.normalize_path("/home/u", "/etc"))
    assert.equal("/", ftp.normalize_path("/home/u", "/"))
    assert.equal("/a/b", ftp.normalize_path("/x", "///a//b//"))
  end)

  it("never goes above the root", function()
    assert.equal("/etc/passwd", ftp.normalize_path("/", "../../etc/passwd"))
    assert.equal("/etc/passwd", ftp.normalize_path("/pub", "../../../../etc/passwd"))
    assert.equal("/", ftp.normalize_path("/a/b", "../../../.."))
    assert.equal("/", ftp.normalize_path("", ".."))
    assert.equal("/x", ftp.normalize_path("relative/..", "x"))
  end)

  it("keeps names that only look like dots", function()
    assert.equal("/a/.../..b/.c", ftp.normalize_path("/a", ".../..b/.c"))
  end)

  it("rejects NUL", function()
    assert.same({nil, "nul in path"}, {ftp.normalize_path("/", "a\0b")})
    assert.same({nil, "nul in path"}, {ftp.normalize_path("/\0", "a")})
    assert.has_error(function() ftp.normalize_path(nil, "a") end)
  end)

  it("never escapes the root for random inputs", function()
    math.randomseed(2428)
    local pieces = {"..", ".", "a", "/", "//", "b c", "..."}
    for _ = 1, 500 do
      local parts = {}
      for j = 1, math.random(0, 12) do parts[j] = pieces[math.random(#pieces)] end
      local p = ftp.normalize_path("/r", table.concat(parts))
      assert.equal("/", p:sub(1, 1))
      assert.is_nil(p:find("//", 1, true), p)
      assert.is_nil(p:find("/%.%.?/") or p:find("/%.%.?$"), p)
      assert.equal(p, ftp.normalize_path("/", p))
    end
  end)
end)
