--- parley.transcript.ftp_data: an FTP data connection, every byte bulk
-- (one `[n bytes]` entry a direction when it closes, or every line when
-- the recorder is full).
-- @module parley.transcript.ftp_data
local W = {}

function W.start(flow)
  flow:bulk("C", "close")
  flow:bulk("S", "close")
end

function W.line(_, _, _, text)
  return text
end

return W
