-- An FTP server in a few lines: anonymous read-only access to a directory,
-- plus one user who may upload. Run: lua5.4 examples/ftpserver.lua [DIR] [ADDR]
local ftp = require "parley.ftp"

local dir = arg[1] or "."
ftp.server.serve{
  listen = arg[2] or "127.0.0.1:2121",
  root = dir,
  anonymous = true,                                         -- read-only
  users = { editor = { password = "change me", perms = "rwdmn" } },
  pasv_ports = "40000-40100",
  on_start = function(srv) print("ftp server on " .. srv.address) io.stdout:flush() end,
}
