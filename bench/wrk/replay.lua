-- Replays requests made ahead of time (wrk's Lua has no SHA-1 or AES): the file named by
-- $REQUESTS holds one request a line as `path<TAB>body`; an empty body means GET, otherwise
-- POST. Each line is sent once, in order; if the run outlasts the file, `done` says so,
-- because from then on every push would be a retry that dedup answers for free.
local lines = {}
for line in io.lines(os.getenv("REQUESTS")) do
  local tab = line:find("\t", 1, true)
  lines[#lines + 1] = { line:sub(1, tab - 1), line:sub(tab + 1) }
end
local next_line = 0
local headers = { ["Content-Type"] = "text/xml" }

request = function()
  next_line = next_line + 1
  local entry = lines[((next_line - 1) % #lines) + 1]
  if entry[2] == "" then
    return wrk.format("GET", entry[1])
  end
  return wrk.format("POST", entry[1], headers, entry[2])
end

done = function(summary, latency, requests)
  io.write(string.format("replay: %d requests, %d prepared\n", summary.requests, #lines))
  if summary.requests > #lines then
    io.write("replay: WARNING the run outlasted the prepared requests; later ones repeated\n")
  end
end
