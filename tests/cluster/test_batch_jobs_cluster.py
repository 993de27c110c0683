"""GetBatch jobs across 3 real nodes: any node lists every node's jobs (`cluster=true`), each
under its DT, running ones with progress; `getbatch show job` against any node shows them."""
import os

import requests

from tests.server.test_batch_jobs import MiB, jobs, show, slow_batch, wait_job

N = 24


def _put(url, name, data):
    r = requests.put(f"{url}/v1/objects/cj/{name}", data=data, timeout=30)
    assert r.status_code == 200, r.text


def test_cluster_listing_shows_each_job_under_its_dt(cluster):
    urls = cluster.urls
    r = requests.post(urls[0] + "/v1/buckets/cj", json={"action": "create-bck"}, timeout=30)
    assert r.status_code == 200, r.text
    blob = os.urandom(MiB)
    for i in range(N):
        _put(urls[i % 3], f"o{i:02d}", blob)   # stored on their owners, wherever PUT
    # a finished batch on node 0, seen from node 1
    r = requests.get(urls[0] + "/v1/ml/moss/cj", json={"in": [{"objname": "o00"},
                                                             {"objname": "o01"}]}, timeout=30)
    assert r.status_code == 200
    dt0 = cluster.nodes[0].id
    done = wait_job(urls[1], lambda j: j["node"] == dt0 and j["total"] == 2
                    and j["state"] == "done")
    assert done["entries"] == 2
    # without cluster=true a node lists its own jobs only
    assert done["id"] not in {j["id"] for j in jobs(urls[1], cluster=False)}

    # a running batch on node 2 (items from every node), seen from node 0 and in the table
    s, length = slow_batch(cluster.nodes[2].port, [f"o{i:02d}" for i in range(N)], "cj")
    dt2 = cluster.nodes[2].id
    try:
        job = wait_job(urls[0], lambda j: j["node"] == dt2 and j["state"] == "streaming"
                       and j["total"] == N, finished=False)
        out = show(urls[1])
        assert out.returncode == 0, out.stderr
        row = next(line for line in out.stdout.splitlines() if job["id"] in line.split())
        assert row.split()[0] == dt2 and f"/{N}" in row and "streaming" in row
        got = 0
        while got < length:
            chunk = s.recv(MiB)
            assert chunk
            got += len(chunk)
    finally:
        s.close()
    fin = wait_job(urls[0], lambda j: j["id"] == job["id"] and j["state"] == "done")
    assert (fin["node"], fin["entries"], fin["bytes"]) == (dt2, N, length)
    # every node answers the same listing
    ids = [{j["id"] for j in jobs(u)} for u in urls]
    assert ids[0] == ids[1] == ids[2] and {done["id"], job["id"]} <= ids[0]
