-- luacheck configuration (`make lint`): Lua 5.4; busted's globals in spec/.
std = "lua54"
-- long lines are mostly literal protocol data and messages in specs
max_line_length = false
-- handlers and callbacks keep the whole signature (conn, req, ...)
unused_args = false
-- an empty branch that holds a comment says "nothing to do here" on purpose
ignore = { "542" }
exclude_files = { "build/", "fuzz/", ".luarocks/", "lua_modules/" }
files["spec/"] = { std = "+busted" }
-- a bench script hands its argument list on to the script it runs
files["bench/"] = { globals = { "arg" } }
