--- parley.http.mime_types: file extension (lowercase, no dot) -> media type.
-- A built-in table of the common web types (nginx's mime.types core); text
-- types carry `charset=utf-8`. `lookup(path)` falls back to
-- `application/octet-stream`. Add or override entries in `types`.
-- @module parley.http.mime_types
local types = {
  html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8",
  shtml = "text/html; charset=utf-8",
  css = "text/css; charset=utf-8", js = "text/javascript; charset=utf-8",
  mjs = "text/javascript; charset=utf-8",
  txt = "text/plain; charset=utf-8", text = "text/plain; charset=utf-8",
  md = "text/markdown; charset=utf-8", csv = "text/csv; charset=utf-8",
  xml = "text/xml; charset=utf-8", lua = "text/plain; charset=utf-8",
  c = "text/plain; charset=utf-8", h = "text/plain; charset=utf-8",
  json = "application/json", map = "application/json",
  webmanifest = "application/manifest+json",
  wasm = "application/wasm", pdf = "application/pdf", zip = "application/zip",
  gz = "application/gzip", tar = "application/x-tar", bz2 = "application/x-bzip2",
  xz = "application/x-xz", ["7z"] = "application/x-7z-compressed",
  rtf = "application/rtf", doc = "application/msword",
  xhtml = "application/xhtml+xml", atom = "application/atom+xml",
  rss = "application/rss+xml",
  jpg = "image/jpeg", jpeg = "image/jpeg", png = "image/png", gif = "image/gif",
  svg = "image/svg+xml", svgz = "image/svg+xml", webp = "image/webp",
  avif = "image/avif", ico = "image/x-icon", bmp = "image/bmp",
  tif = "image/tiff", tiff = "image/tiff",
  woff = "font/woff", woff2 = "font/woff2", ttf = "font/ttf", otf = "font/otf",
  mp3 = "audio/mpeg", ogg = "audio/ogg", oga = "audio/ogg", wav = "audio/wav",
  m4a = "audio/x-m4a", flac = "audio/flac",
  mp4 = "video/mp4", webm = "video/webm", ogv = "video/ogg", mov = "video/quicktime",
  m4v = "video/x-m4v", avi = "video/x-msvideo", mpeg = "video/mpeg", mpg = "video/mpeg",
}

local M = { types = types, default = "application/octet-stream" }

--- The media type for a file name, by its extension.
-- @tparam string path
-- @treturn string
function M.lookup(path)
  local ext = path:match("%.([%w]+)$")
  if not ext then return M.default end
  return types[ext] or types[ext:lower()] or M.default
end

return M
