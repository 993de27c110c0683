-- wrk script: GetBatch requests (GET with a MossReq JSON body) cycling through pregenerated
-- bodies, one per line of the file named by the first script argument; the URL path is the
-- second argument. Each thread starts at its own offset so threads do not send the same
-- batches in lockstep.
local reqs, i, threads = {}, 0, 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  local headers = {["Content-Type"] = "application/json"}
  for line in io.lines(args[1]) do
    reqs[#reqs + 1] = wrk.format("GET", args[2], headers, line)
  end
  i = (id * 7919) % #reqs
end

function request()
  i = i % #reqs + 1
  return reqs[i]
end
