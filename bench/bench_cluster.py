"""Cluster GetBatch (C1) beside one node, in one run, as ratios; DT peak RSS; time to first byte.

    PYTHONPATH=src:. python bench/bench_cluster.py        # about 3 minutes on 2 cores
    PYTHONPATH=src:. python bench/bench_cluster.py rss    # the RSS figures alone

Servers: a real etcd and 3 nodes (tests/cluster/nodes.py, 1 worker x 2 threads each), and one
lone node with the same settings. Objects are written straight into each node's own data dir
(the share HRW gives it), so set-up does not time PUTs. Every request lands on node 0 (the DT),
so about two thirds of the items come from its peers. The two sides of a figure run alternately,
ROUNDS times; each figure is the median, from a fresh connection per batch whose body this
process discards with recv_into.

- C1: one batch of 10,000 x 4 KiB objects; 2,000 x 64 KiB objects; 10,000 x 4 KiB members of
  100 .tar shards: plain .tar streamed.
- TTFB: seconds to the first body byte of the 10,000 x 4 KiB batch (all planning happens
  before the status line, on every node).
- RSS: the DT worker's VmHWM after a 10,000-entry batch, then after a 100,000-entry one (the
  same objects repeated), on a fresh cluster and a fresh lone node.

All processes share the machine's two cores (the DT, two peers and this client), so the cluster
figure is a lower bound of what separate hosts give; see bench/RESULTS-cluster.md.
"""
import io
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import time

import requests

from getbatch.cluster.smap import NodeInfo, Smap
from getbatch.store import LocalStore
from tests.cluster.nodes import Cluster
from tests.support.nodes import Node, serve_argv
from tests.archive.tarhelp import make_tar as _tar

ROUNDS = 5
MiB = 1 << 20


def _put_local(node, bucket, name, data):
    store = LocalStore(node.data_dir)
    if not store.has_bucket(bucket):
        store.create_bucket(bucket)
    store.put(bucket, name, io.BytesIO(data))


def dataset():
    rng = random.Random(11)
    sets = {
        "f4k": {f"o{i:05d}": rng.randbytes(4096) for i in range(10_000)},
        "f64k": {f"o{i:04d}": rng.randbytes(64 << 10) for i in range(2_000)},
    }
    members = [(f"m{j:03d}.bin", rng.randbytes(4096)) for j in range(100)]
    sets["shards"] = {f"s{i:03d}.tar": _tar(members) for i in range(100)}
    bodies = {
        "4KiB x 10K": ("f4k", [{"objname": n} for n in sets["f4k"]]),
        "64KiB x 2K": ("f64k", [{"objname": n} for n in sets["f64k"]]),
        ".tar members 4KiB x 10K": ("shards", [{"objname": s, "archpath": m}
                                               for s in sets["shards"] for m, _ in members]),
    }
    return sets, bodies


def _create(url, buckets):
    for bucket in buckets:
        r = requests.post(f"{url}/v1/buckets/{bucket}", json={"action": "create-bck"},
                          params={"provider": "ais"}, timeout=10)
        assert r.status_code == 200, r.text


def place_lone(sets, node):
    _create(node.url, sets)
    for bucket, objs in sets.items():
        for name, data in objs.items():
            _put_local(node, bucket, name, data)


def place_cluster(sets, cluster):
    """Each object into its HRW owner's own data dir, as a PUT through the cluster would."""
    _create(cluster.urls[0], sets)
    smap = Smap(1, [NodeInfo(n.id, n.url) for n in cluster.nodes], cluster.nodes[0].id)
    by_id = {n.id: n for n in cluster.nodes}
    for bucket, objs in sets.items():
        for name, data in objs.items():
            _put_local(by_id[smap.owner("ais", bucket, name).id], bucket, name, data)


def batch(url, bucket, entries, strm=True):
    """(seconds, seconds to the first body byte, body bytes) of one GetBatch."""
    body = json.dumps({"in": entries, "strm": strm}).encode()
    host, port = url.split("//")[1].split(":")
    t0 = time.perf_counter()
    s = socket.create_connection((host, int(port)))
    s.sendall(f"GET /v1/ml/moss/{bucket} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    buf = bytearray(MiB)
    total, head, first = 0, b"", None
    while True:
        n = s.recv_into(buf)
        if not n:
            break
        if first is None:
            head += bytes(buf[:n])
            end = head.find(b"\r\n\r\n")
            if end >= 0 and len(head) > end + 4:
                first = time.perf_counter() - t0
                assert head.startswith(b"HTTP/1.1 200"), head[:300]
        total += n
    s.close()
    return time.perf_counter() - t0, first, total


def lone_node(path):
    os.makedirs(path, exist_ok=True)
    return Node(f"{path}/data", f"{path}/server.log", serve_argv(1, 2))


def worker_pid(node):
    with open(f"/proc/{node.proc.pid}/task/{node.proc.pid}/children") as f:
        return int(f.read().split()[0])


def hwm_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def c1(sets, bodies, lone, cluster, rows):
    for label, (bucket, entries) in bodies.items():
        times = {"1 node": [], "3 nodes": []}
        ttfb = {"1 node": [], "3 nodes": []}
        for url in (lone.url, cluster.urls[0]):      # warm-up: page cache, shard indexes
            batch(url, bucket, entries)
        for r in range(ROUNDS):
            sides = [("1 node", lone.url), ("3 nodes", cluster.urls[0])]
            for side, url in (sides if r % 2 == 0 else sides[::-1]):
                t, first, _ = batch(url, bucket, entries)
                times[side].append(t)
                ttfb[side].append(first)
        one, three = statistics.median(times["1 node"]), statistics.median(times["3 nodes"])
        n = len(entries)
        rows.append((f"C1 {label}", f"{n / one:,.0f} items/s", f"{n / three:,.0f} items/s",
                     f"{one / three:.2f}x"))
        rows.append((f"TTFB {label}", f"{statistics.median(ttfb['1 node']) * 1000:.0f} ms",
                     f"{statistics.median(ttfb['3 nodes']) * 1000:.0f} ms", ""))
        print(rows[-2], rows[-1], flush=True)


def rss(sets, root, rows):
    entries = [{"objname": n} for n in sets["f4k"]]
    out = {}
    for side in ("1 node", "3 nodes"):
        if side == "1 node":
            node = lone_node(f"{root}/rss1")
            c = None
        else:
            c = Cluster(f"{root}/rss3", n=3, workers=1, threads=2)
            node = c.nodes[0]
        try:
            if c is None:
                place_lone({"f4k": sets["f4k"]}, node)
            else:
                place_cluster({"f4k": sets["f4k"]}, c)
            pid = worker_pid(node)
            batch(node.url, "f4k", entries[:10])
            idle = hwm_mib(pid)
            batch(node.url, "f4k", entries)
            ten = hwm_mib(pid)
            batch(node.url, "f4k", entries * 10)
            hundred = hwm_mib(pid)
            out[side] = (idle, ten, hundred)
        finally:
            node.stop() if c is None else c.close()
    for side, (idle, ten, hundred) in out.items():
        rows.append((f"DT peak RSS {side}", f"idle {idle:.0f} MiB", f"10K {ten:.0f} / 100K "
                     f"{hundred:.0f} MiB", f"+{hundred - ten:.1f} MiB"))
        print(rows[-1], flush=True)


def main():
    root = tempfile.mkdtemp(prefix="bench-cluster-")
    sets, bodies = dataset()
    rows = []
    if sys.argv[1:] == ["rss"]:
        rss(sets, root, rows)
        return
    lone = lone_node(f"{root}/lone")
    cluster = Cluster(f"{root}/c", n=3, workers=1, threads=2)
    try:
        place_lone(sets, lone)
        place_cluster(sets, cluster)
        c1(sets, bodies, lone, cluster, rows)
    finally:
        lone.stop()
        cluster.close()
    rss(sets, root, rows)
    print()
    print(f"{'figure':32} {'1 node':>22} {'3 nodes (DT = node 0)':>26} {'3 / 1':>10}")
    for r in rows:
        print(f"{r[0]:32} {r[1]:>22} {r[2]:>26} {r[3]:>10}")


if __name__ == "__main__":
    sys.exit(main())
