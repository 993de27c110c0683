-- wrk script: GET the URL paths listed one per line in the file named by the first script
-- argument, cycling; each thread starts at its own offset so threads do not move in lockstep.
local paths, i, threads = {}, 0, 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  i = (id * 3571) % #paths
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
