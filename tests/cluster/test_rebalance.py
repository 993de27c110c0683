"""`rebalance` after a join: misplaced objects move to their owners, copies are completed,
a rerun moves nothing; the CLI drives it. (`getbatch cluster` itself: test_devcluster.py.)"""
import os
import subprocess
import sys

import requests

from tests.support.nodes import make_client

from .nemesis import wait_rebalance
from .test_objects import _local_names, _set_mirror


def _owners(c, bucket, name, copies):
    from getbatch.cluster.smap import NodeInfo, Smap
    smap = Smap(1, [NodeInfo(n.id, n.url) for n in c.live()], "")
    return {n.id for n in smap.owners("ais", bucket, name, copies)}


def test_rebalance_moves_then_rerun_moves_nothing(make_cluster):
    c = make_cluster(2)
    cl = make_client(c.urls[0])
    b = cl.bucket("rb")
    b.create()
    _set_mirror(c.urls[0], "rb", 2)
    data = {f"r{i}": os.urandom(64 + i) for i in range(80)}
    for n, v in data.items():
        b.object(n).get_writer().put_content(v)
    c.add()
    c.wait_members(3)
    # a slow run (1 object/s) stopped through the CLI: the nodes end it, and it can rerun
    r = requests.post(c.urls[1] + "/v1/rebalance", params={"rate": 1}, timeout=10)
    assert r.status_code == 200 and all(s["started"] for s in r.json()["nodes"].values())
    out = subprocess.run([sys.executable, "-m", "getbatch.cli", "rebalance", "--stop", "--url",
                          c.urls[2]], capture_output=True, text=True, timeout=60)
    # (the new node holds nothing: its run is done at once, most likely before the stop)
    assert out.returncode == 0 and out.stdout.count(": stopped") >= 2, out.stdout + out.stderr
    st = wait_rebalance(c.urls[0])
    states = sorted(s["state"] for s in st["nodes"].values())
    assert st["state"] == "incomplete" and states in (["done", "stopped", "stopped"],
                                                      ["stopped"] * 3), st
    assert sum(s["checked"] for s in st["nodes"].values()) < len(data)
    r = requests.post(c.urls[1] + "/v1/rebalance", timeout=10)
    assert r.status_code == 200 and all(s["started"] for s in r.json()["nodes"].values())
    st = wait_rebalance(c.urls[2])
    assert st["state"] == "done", st
    assert st["copied"] > 0 and st["moved"] > 0
    # every object now exactly on its two owners
    by_id = {n.id: _local_names(n, "rb") for n in c.nodes}
    for n in data:
        assert {i for i, held in by_id.items() if n in held} == _owners(c, "rb", n, 2), n
    # a rerun (through the CLI) finds nothing to do
    out = subprocess.run([sys.executable, "-m", "getbatch.cli", "rebalance", "--url", c.urls[0]],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    st = wait_rebalance(c.urls[0])
    assert st["state"] == "done" and st["moved"] == 0 and st["copied"] == 0
    assert sum(s["checked"] for s in st["nodes"].values()) == 2 * len(data)
    for n, v in data.items():
        assert make_client(c.urls[2]).bucket("rb").object(n).get_reader().read_all() == v
