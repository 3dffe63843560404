std = "max"
max_line_length = 120
codes = true

files["spec"] = { std = "+busted" }
files["fake"] = { globals = { "ngx" } }
files["examples/openresty"] = { globals = { "ngx" } }
exclude_files = { "build/**" }
