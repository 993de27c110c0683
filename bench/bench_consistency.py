"""What the consistency mechanisms cost (docs/consistency.md): 4 KiB PUT, GET and DELETE through
a non-owner with copies=2, objects/s, for two source trees side by side; and catch-up.

    PYTHONPATH=src:. python bench/bench_consistency.py BEFORE_SRC AFTER_SRC   # ~6 min, 2 cores
    PYTHONPATH=src:. python bench/bench_consistency.py catchup                # catch-up alone
    PYTHONPATH=src:. python bench/bench_consistency.py stamps                 # the store alone
    PYTHONPATH=src:. python bench/bench_consistency.py getbatch BEFORE_SRC AFTER_SRC  # ~2 min

Each side is a real etcd and 3 nodes (tests/cluster/nodes.py, 1 worker x 4 threads) running the
code of its source tree (BEFORE_SRC: a worktree of main before the stamps, e.g. made with `git
worktree add`; AFTER_SRC: this tree's src). The sides run alternately, ROUNDS times, each round
on a fresh bucket: PUT of N objects, GET of them, DELETE of them, every request sent by
CLIENTS threads (one keep-alive session each) to a node that is not among the object's two
owners, so each request is forwarded; figures are medians of the rounds. `GET copies=1` is the
control: one holder, nothing to compare.

stamps: the local store alone (no HTTP), 4 KiB PUT, stat and DELETE with and without a clock
(what a cluster node pays for stamping, the newest-wins check and tombstones, against a single
node), microseconds per operation, median of ROUNDS alternating rounds.

getbatch: one GetBatch (.tar) of N_BATCH x 4 KiB objects sent to node 0, copies=2 (on 3 nodes
node 0 is among the two holders of about 2/3 of them) and copies=1 (the control: nothing to
compare), for the two source trees side by side; milliseconds, median of ROUNDS alternating
rounds.

catchup: 3 nodes, one bucket with copies=2 and N_CATCHUP objects; one node is stopped, every
object is overwritten, the node is started again; the figure is the time from its start until
it is back in the map (boot + catch-up), against a restart with nothing to take.
"""
import io
import os
import statistics
import sys
import tempfile
import threading
import time

import requests

from getbatch.cluster.smap import NodeInfo, Smap
from tests.cluster.nodes import Cluster

ROUNDS = 5
N = 1500
CLIENTS = 4
N_CATCHUP = 2000
N_BATCH = 1000
BODY = os.urandom(4096)


def _bucket(url, name, copies):
    requests.post(f"{url}/v1/buckets/{name}", json={"action": "create-bck"},
                  timeout=30).raise_for_status()
    requests.patch(f"{url}/v1/buckets/{name}", params={"provider": "ais"},
                   json={"action": "set-bprops", "value": {"mirror": {
                       "enabled": copies > 1, "copies": copies}}}, timeout=30).raise_for_status()


def _non_owner(cluster, bucket, names, copies):
    smap = Smap(1, [NodeInfo(n.id, n.url) for n in cluster.nodes], "")
    out = []
    for name in names:
        owners = {n.id for n in smap.owners("ais", bucket, name, copies)}
        out.append((name, next(n.url for n in cluster.nodes if n.id not in owners)))
    return out


def _run(method, bucket, jobs):
    """objects/s of `method` over jobs [(name, url)], CLIENTS threads."""
    parts = [jobs[i::CLIENTS] for i in range(CLIENTS)]
    errors = []

    def client(part):
        s = requests.Session()
        for name, url in part:
            r = s.request(method, f"{url}/v1/objects/{bucket}/{name}",
                          data=BODY if method == "PUT" else None, timeout=60)
            if r.status_code != 200:
                errors.append(f"{method} {name}: {r.status_code} {r.text[:100]}")
    threads = [threading.Thread(target=client, args=(p,)) for p in parts]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} errors, first: {errors[0]}")
    return len(jobs) / dt


def one_round(cluster, r):
    names = [f"o{i:05d}" for i in range(N)]
    out = {}
    b2 = f"c2r{r}"
    _bucket(cluster.urls[0], b2, 2)
    jobs = _non_owner(cluster, b2, names, 2)
    out["PUT copies=2"] = _run("PUT", b2, jobs)
    out["GET copies=2"] = _run("GET", b2, jobs)
    out["DELETE copies=2"] = _run("DELETE", b2, jobs)
    b1 = f"c1r{r}"
    _bucket(cluster.urls[0], b1, 1)
    jobs = _non_owner(cluster, b1, names[:N // 2], 2)
    _run("PUT", b1, jobs)
    out["GET copies=1"] = _run("GET", b1, jobs)
    return out


def compare(before, after):
    root = tempfile.mkdtemp(prefix="bench-consistency-")
    sides = {}
    for label, src in (("before", before), ("after", after)):
        env = {"PYTHONPATH": f"{os.path.abspath(src)}:{os.getcwd()}"}
        sides[label] = Cluster(f"{root}/{label}", n=3, workers=1, threads=4, env=env)
    rows = {label: [] for label in sides}
    try:
        for r in range(ROUNDS):
            for label, c in sides.items():
                rows[label].append(one_round(c, r))
                print(label, r, {k: round(v) for k, v in rows[label][-1].items()}, flush=True)
    finally:
        for c in sides.values():
            c.close()
    print(f"\n{N} x 4 KiB through a non-owner, {CLIENTS} clients, median of {ROUNDS} rounds "
          "(objects/s)")
    print("| operation | before | after | after/before |\n|---|---|---|---|")
    for k in rows["before"][0]:
        b = statistics.median(x[k] for x in rows["before"])
        a = statistics.median(x[k] for x in rows["after"])
        print(f"| {k} | {b:,.0f} | {a:,.0f} | {a / b:.2f} |")


def _batch_ms(url, bucket, names):
    body = {"in": [{"objname": n} for n in names], "mime": ".tar", "strm": True}
    t0 = time.perf_counter()
    r = requests.get(f"{url}/v1/ml/moss/{bucket}", json=body, timeout=120)
    dt = time.perf_counter() - t0
    if r.status_code != 200 or len(r.content) < len(names) * len(BODY):
        raise RuntimeError(f"GetBatch of {bucket}: {r.status_code} {r.text[:200]}")
    return dt * 1000


def getbatch(before, after):
    root = tempfile.mkdtemp(prefix="bench-consistency-")
    names = [f"o{i:05d}" for i in range(N_BATCH)]
    sides = {}
    try:
        for label, src in (("before", before), ("after", after)):
            env = {"PYTHONPATH": f"{os.path.abspath(src)}:{os.getcwd()}"}
            c = sides[label] = Cluster(f"{root}/{label}", n=3, workers=1, threads=4, env=env)
            for b, copies in (("gb2", 2), ("gb1", 1)):
                _bucket(c.urls[0], b, copies)
                _run("PUT", b, _non_owner(c, b, names, copies))
        rows = {(label, b): [] for label in sides for b in ("gb2", "gb1")}
        for _ in range(ROUNDS):
            for (label, b), ms in rows.items():
                ms.append(_batch_ms(sides[label].urls[0], b, names))
    finally:
        for c in sides.values():
            c.close()
    print(f"\nGetBatch of {N_BATCH} x 4 KiB through node 0, median of {ROUNDS} rounds (ms)")
    print("| bucket | before | after | after/before |\n|---|---|---|---|")
    for b, what in (("gb2", "copies=2"), ("gb1", "copies=1")):
        x = statistics.median(rows[("before", b)])
        y = statistics.median(rows[("after", b)])
        print(f"| {what} | {x:.0f} | {y:.0f} | {y / x:.2f} |")


def _back(c, i):
    """Seconds from starting node i again until every node's map lists it."""
    t0 = time.perf_counter()
    c.restart(i)
    c.wait_members(3, timeout=900)
    return time.perf_counter() - t0


def catchup():
    root = tempfile.mkdtemp(prefix="bench-catchup-")
    c = Cluster(f"{root}/c", n=3, workers=1, threads=4)
    try:
        _bucket(c.urls[0], "cu", 2)
        names = [f"o{i:05d}" for i in range(N_CATCHUP)]
        jobs = [(n, c.urls[1]) for n in names]
        _run("PUT", "cu", jobs)
        idle, busy = [], []
        for _ in range(2):
            c.stop(0)
            c.wait_members(2)
            idle.append(_back(c, 0))
            c.stop(0)
            c.wait_members(2)
            _run("PUT", "cu", jobs)   # every object overwritten while node 0 is away
            busy.append(_back(c, 0))
        held = sum(1 for _ in os.scandir(os.path.join(c.nodes[0].data_dir, "ais", "cu")))
    finally:
        c.close()
    print(f"node 0 holds {held} of {N_CATCHUP} objects (copies=2, 3 nodes), all overwritten "
          f"while it was away")
    print(f"back in the map after a restart: nothing to take {statistics.median(idle):.2f} s, "
          f"every copy to take {statistics.median(busy):.2f} s (median of 2)")


def stamps(n=2000):
    from getbatch.store import LocalStore
    from getbatch.store.stamps import Clock
    root = tempfile.mkdtemp(prefix="bench-stamps-")
    rows = {"single node": [], "cluster node (stamped)": []}
    for r in range(ROUNDS):
        for label in rows:
            store = LocalStore(f"{root}/{label[:6]}{r}", fsync=False)
            if label != "single node":
                store.clock = Clock("n1")
            store.create_bucket("b")
            names = [f"o{i:05d}" for i in range(n)]
            out = {}
            t0 = time.perf_counter()
            for name in names:
                store.put("b", name, io.BytesIO(BODY), len(BODY))
            out["PUT"] = (time.perf_counter() - t0) / n * 1e6
            t0 = time.perf_counter()
            for name in names:
                store.stat("b", name)
            out["stat"] = (time.perf_counter() - t0) / n * 1e6
            t0 = time.perf_counter()
            for name in names:
                store.delete("b", name)
            out["DELETE"] = (time.perf_counter() - t0) / n * 1e6
            rows[label].append(out)
    print(f"local store, {n} x 4 KiB, fsync off, median of {ROUNDS} rounds (us per operation)")
    print("| operation | single node | cluster node (stamped) | difference |\n|---|---|---|---|")
    for k in ("PUT", "stat", "DELETE"):
        a, b = (statistics.median(x[k] for x in rows[label]) for label in rows)
        print(f"| {k} | {a:.1f} | {b:.1f} | {b - a:+.1f} |")


if __name__ == "__main__":
    if sys.argv[1:] == ["catchup"]:
        catchup()
    elif sys.argv[1:] == ["stamps"]:
        stamps()
    elif sys.argv[1:2] == ["getbatch"]:
        getbatch(*sys.argv[2:4])
    else:
        compare(*sys.argv[1:3])
