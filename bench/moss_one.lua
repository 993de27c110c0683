-- wrk script: a one-item GetBatch, i.e. GET with the MossReq JSON given as the first script
-- argument in the body (the AIS SDK sends GetBatch the same way).
function init(args)
  wrk.method = "GET"
  wrk.body = args[1]
  wrk.headers["Content-Type"] = "application/json"
end
