"""Cost of GetBatch jobs (every batch a watched job): the same workloads against two trees.

    python bench/bench_jobs.py SRC_A SRC_B [ROUNDS]

SRC_A, SRC_B: `src` directories of two checkouts (e.g. one before the jobs, one with them),
each with its Cython extensions built in place. For each, a node (`getbatch serve`, 2 workers
x 4 threads) over a fresh data dir runs, alternately with the other tree's, ROUNDS rounds of:
- one 10,000 x 4 KiB batch (streaming, over a fresh connection, body read and dropped);
- 2,000 one-entry batches one after the other over a keep-alive connection.
Printed: the median per tree of each (ms per big batch, us per small batch).
"""
import http.client
import json
import os
import statistics
import sys
import tempfile
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.support.nodes import Node, serve_argv  # noqa: E402

N_BIG, SIZE, N_SMALL = 10_000, 4096, 2000


def _node(src, base):
    env = {"PYTHONPATH": src}
    os.makedirs(base, exist_ok=True)
    return Node(os.path.join(base, "data"), os.path.join(base, "log"),
                serve_argv(workers=2, threads=4), env=env)


def _fill(url):
    s = requests.Session()
    s.post(url + "/v1/buckets/b", json={"action": "create-bck"}).raise_for_status()
    blob = os.urandom(SIZE)
    for i in range(N_BIG):
        s.put(f"{url}/v1/objects/b/o{i:05d}", data=blob).raise_for_status()


def _batch(port, names):
    c = http.client.HTTPConnection("127.0.0.1", port)
    body = json.dumps({"in": [{"objname": n} for n in names], "strm": True})
    c.request("GET", "/v1/ml/moss/b", body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, r.read()
    while r.read(1 << 20):
        pass
    return c


def big(port):
    names = [f"o{i:05d}" for i in range(N_BIG)]
    t = time.perf_counter()
    _batch(port, names).close()
    return (time.perf_counter() - t) * 1e3


def small(port):
    c = http.client.HTTPConnection("127.0.0.1", port)
    body = json.dumps({"in": [{"objname": "o00001"}], "strm": True})
    t = time.perf_counter()
    for _ in range(N_SMALL):
        c.request("GET", "/v1/ml/moss/b", body=body,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        assert r.status == 200
    c.close()
    return (time.perf_counter() - t) / N_SMALL * 1e6


def main():
    srcs = sys.argv[1:3]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    with tempfile.TemporaryDirectory() as tmp:
        nodes = [_node(os.path.abspath(s), os.path.join(tmp, str(i))) for i, s in enumerate(srcs)]
        try:
            for n in nodes:
                _fill(n.url)
                for _ in range(2):   # warm both workers
                    big(n.port)
                    small(n.port)
            res = {s: {"big": [], "small": []} for s in srcs}
            for _ in range(rounds):
                for s, n in zip(srcs, nodes):
                    res[s]["big"].append(big(n.port))
                    res[s]["small"].append(small(n.port))
            for s in srcs:
                print(f"{s}: 10K x 4 KiB batch {statistics.median(res[s]['big']):.1f} ms; "
                      f"1-entry batch {statistics.median(res[s]['small']):.0f} us "
                      f"(runs: {[round(x) for x in res[s]['big']]}, "
                      f"{[round(x) for x in res[s]['small']]})")
        finally:
            for n in nodes:
                n.stop()


if __name__ == "__main__":
    main()
