-- Loaded by busted before any spec (.busted: helper).  Under `make
-- sanitize` lua5.4 runs with the ASan runtime preloaded; the processes
-- the specs start (pkill, python3, curl, servers) must not inherit it.
if os.getenv("PARLEY_SANITIZE") then
  require("parley.core").unsetenv("LD_PRELOAD")
end
