"""Intra-cluster control calls: the node's peer client (cluster/peers.py) against a `requests`
session (what peers.py used before it became one client with the GetBatch streams).

    PYTHONPATH=src:. python bench/bench_peer_calls.py        # under a minute on 2 cores

A real etcd and one node (tests/cluster/nodes.py, 1 worker x 4 threads) holding 100 objects of
4 KiB. From this process, over one kept-alive connection each, alternately ROUNDS times: CALLS x
GET /v1/_peer/ping, CALLS x HEAD of a peer object (a forwarded stat), and CALLS / 10 x POST
/v1/_peer/states for the 100 names (what a cluster GetBatch asks each holder). Figures:
microseconds per call, median of the rounds, for both clients.
"""
import statistics
import sys
import tempfile
import time

import msgpack
import requests

from getbatch.cluster.peers import PEER_PREFIX, SECRET_HEADER, Peers
from getbatch.cluster.smap import NodeInfo
from tests.cluster.nodes import Cluster

ROUNDS = 7
CALLS = 300


def _calls(send, n):
    t = time.perf_counter()
    for _ in range(n):
        send()
    return (time.perf_counter() - t) / n * 1e6


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    with Cluster(tempfile.mkdtemp(prefix="bench-peer-calls-"), n=1, workers=1, threads=4) as c:
        url = c.urls[0]
        node = NodeInfo("n0", url)
        secret = c.secret()
        requests.post(url + "/v1/buckets/b", json={"action": "create-bck"}).raise_for_status()
        names = [f"o{i:03d}" for i in range(100)]
        for name in names:
            requests.put(f"{url}/v1/objects/b/{name}", data=bytes(4096)).raise_for_status()
        peers = Peers(secret)
        session = requests.Session()
        session.headers[SECRET_HEADER] = secret
        pairs = msgpack.packb([("b", name) for name in names])
        mp = {"Content-Type": "application/msgpack"}
        obj = PEER_PREFIX + "/objects/b/o000"
        cases = {
            "ping": (CALLS, lambda: peers.request(node, "GET", PEER_PREFIX + "/ping").content,
                     lambda: session.get(url + PEER_PREFIX + "/ping").content),
            "HEAD": (CALLS, lambda: peers.request(node, "HEAD", obj).headers["Ais-Version"],
                     lambda: session.head(url + obj).headers["Ais-Version"]),
            "states x100": (CALLS // 10,
                            lambda: peers.request(node, "POST", PEER_PREFIX + "/states",
                                                  data=pairs, headers=mp).content,
                            lambda: session.post(url + PEER_PREFIX + "/states", data=pairs,
                                                 headers=mp).content),
        }
        for name, (n, ours, theirs) in cases.items():
            assert ours() == theirs(), name
            got = {"Peers": [], "requests": []}
            for _ in range(rounds):
                got["Peers"].append(_calls(ours, n))
                got["requests"].append(_calls(theirs, n))
            a, b = statistics.median(got["Peers"]), statistics.median(got["requests"])
            print(f"{name:12} Peers {a:7.0f} us   requests {b:7.0f} us   ({b / a:.2f}x)")
        peers.close()
        session.close()


if __name__ == "__main__":
    main()
