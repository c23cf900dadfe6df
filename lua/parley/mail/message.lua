--- Internet messages: build (RFC 5322, MIME) and parse (MIME tree, IMAP
-- ENVELOPE and BODYSTRUCTURE).
--
--     local message = require "parley.mail.message"
--     local raw = message.build{
--       from = { name = "Zoë", address = "zoe@example.org" },
--       to = "bob@example.com", subject = "Café ☕",
--       text = "Hi Bob", html = "<p>Hi Bob</p>",
--       attachments = { { path = "report.pdf" } },
--     }
--     local m = message.parse(raw)
--     print(m:header("subject"), m.parts[2].filename, #m.parts[2]:content())
--
-- Build fields (all optional): `from`, `sender`, `reply_to`, `to`, `cc`,
-- `bcc` (recipients only, never written) — each an address string
-- ("a@x", "Name <a@x>", "a@x, b@y"), a table {name=, address=} or a list
-- of those; `subject`; `date` (string, or seconds since the epoch;
-- default now, RFC 5322 §3.3 with a numeric zone); `message_id` (default
-- `<time.random@host>`, `false` for none; `host` names the host);
-- `in_reply_to`, `references`; `headers` (extra fields: an ordered list
-- of {name, value} or {name=, value=}, or a map written in name order);
-- `text`, `html` (both: multipart/alternative; charset utf-8;
-- Content-Transfer-Encoding 7bit when possible, else 8bit if allowed,
-- quoted-printable for mostly-ASCII text, base64 otherwise);
-- `attachments` (list of {path= or data=, filename=, content_type=
-- (guessed from the extension), inline=, content_id=, description=}:
-- base64 at 76 columns, multipart/mixed; inline ones with a content_id
-- next to `html` go in multipart/related); `utf8` (RFC 6531/6532: UTF-8
-- header text and addresses written raw, 8bit bodies); `eightbit`
-- (8BITMIME bodies, headers still encoded).
-- CR, LF or NUL in any header text raises (header injection); so do bad
-- field names, addresses and media types. No line exceeds 998 octets;
-- header lines are folded at 78 where white space allows.
-- @module parley.mail.message
local H = require "parley.mail.header"
local B = require "parley.mail.build"
local P = require "parley.mail.mime"

local M = {}

--- Build a message.
-- @tparam table t fields (see the module description)
-- @treturn string the message, CRLF line ends
-- @treturn table envelope recipients (to, cc and bcc addresses)
-- @return or nil, err when an attachment file cannot be read
function M.build(t)
  local c, err = B.compile(t)
  if not c then return nil, err end
  local out = {}
  local ok, e = pcall(B.emit, c, function(chunk) out[#out + 1] = chunk end)
  if not ok then
    if type(e) == "table" then return nil, e.err end
    error(e, 0)
  end
  return table.concat(out), c.recipients
end

--- Build a message as an ltn12 source: attachments given by `path` are
-- read and encoded in 57 KiB chunks, never held whole. Arguments are
-- checked (and files opened once) before this returns.
-- @tparam table t fields
-- @treturn function ltn12 source (returns chunks, then nil; nil, err on
--   a read error)
-- @treturn table envelope recipients
-- @return or nil, err
function M.source(t)
  local c, err = B.compile(t)
  if not c then return nil, err end
  local co = coroutine.create(function()
    B.emit(c, coroutine.yield)
  end)
  local done = false
  return function()
    if done then return nil end
    local ok, chunk = coroutine.resume(co)
    if not ok then
      done = true
      if type(chunk) == "table" then return nil, chunk.err end
      return nil, tostring(chunk)
    end
    if coroutine.status(co) == "dead" then done = true; return nil end
    return chunk
  end, c.recipients
end

--- Parse a message (see `parley.mail.mime`). The result is the root part:
-- `headers` (ordered list of {name, value (unfolded), decoded (RFC 2047,
-- UTF-8), raw (as in the message, with its line end), offset}, indexed
-- by lowercased name for the first of each), `type`, `subtype`,
-- `content_type`, `params` (decoded, lowercase names), `param_list` (raw,
-- ordered), `charset` (text parts), `transfer_encoding`, `disposition`,
-- `disposition_params`, `filename`, `body` (leaf parts: the encoded body
-- string), `parts` (multiparts), `preamble`, `epilogue`, `message`
-- (message/rfc822 parts: the parsed inner message), `offset`,
-- `header_size`, `body_offset`, `body_size` (0-based octets into the raw
-- message), `defects` (root: what was repaired), `size` (root), and the
-- methods `:header(name)` (decoded value), `:header_all(name)`,
-- `:content()` (transfer encoding undone) and `:text()` (UTF-8).
-- @tparam string s raw message (CRLF or bare LF line ends)
-- @tparam[opt] table opts `max_depth` (32), `max_parts` (1000),
--   `max_headers` (1000 per block), `max_header_size` (256 KiB per block),
--   `bodies` (true)
function M.parse(s, opts)
  return P.parse(s, opts)
end

--- IMAP ENVELOPE fields of a parsed message (RFC 3501 §7.4.2).
M.envelope = P.envelope
--- IMAP BODYSTRUCTURE of a parsed message as Lua tables.
M.bodystructure = P.bodystructure
--- Part for an IMAP section number ("1.2").
M.find_part = P.find_part
--- 0-based offset and size of an IMAP section ("1.2.MIME", "HEADER", ...).
M.section = P.section

--- Decode RFC 2047 encoded words to UTF-8.
M.header_decode = H.decode
--- Encode text with RFC 2047 encoded words when needed.
M.header_encode = H.encode
--- Parse an address list into {name=, address=, group=}.
M.address_list = H.address_list
--- Format a date (RFC 5322 §3.3): `date([t [, zone_minutes]])`.
M.date = H.date
--- Parse a date: seconds since the epoch and zone offset in minutes.
M.parse_date = H.parse_date
--- Guess a content type from a file name.
M.guess_type = B.guess_type
--- Convert bytes in a charset to UTF-8.
M.to_utf8 = H.to_utf8

return M
