"""The data plane's own checks of docs/consistency.md on real nodes and etcd: what a copy
holds after overwrites across restarts, and what rebalance does with copies at different
versions (test_nemesis_scenarios.py replays each defect of issue 15 through the nemesis)."""
import os
import time

import requests

from .test_objects import _set_mirror

STAMP = "user.getbatch.stamp"


def _put(url, bucket, name, data):
    return requests.put(f"{url}/v1/objects/{bucket}/{name}", data=data, timeout=30)


def _get(url, bucket, name):
    return requests.get(f"{url}/v1/objects/{bucket}/{name}", timeout=30)


def _mkbucket(url, bucket, copies):
    r = requests.post(f"{url}/v1/buckets/{bucket}", json={"action": "create-bck"}, timeout=10)
    assert r.status_code == 200, r.text
    _set_mirror(url, bucket, copies)


def _owner(c, bucket, name):
    from getbatch.cluster.smap import NodeInfo, Smap
    smap = Smap(1, [NodeInfo(n.id, n.url) for n in c.live()], "")
    first = smap.owner("ais", bucket, name).id
    return next(i for i, n in enumerate(c.nodes) if n.id == first)


def _copies_on_disk(c, bucket, name):
    """{node index: (bytes, stamp)} of every node holding the object in its data dir."""
    out = {}
    for i, n in enumerate(c.nodes):
        path = os.path.join(n.data_dir, "ais", bucket, name)
        try:
            with open(path, "rb") as f:
                out[i] = (f.read(), os.getxattr(path, STAMP).decode())
        except FileNotFoundError:
            pass
    return out


def _eventually(check, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_overwrite_survives_the_owner_restarting(make_cluster):
    """Defect 1: v1 written while the first owner was away is what every node serves once
    it is back, and rebalance keeps it."""
    c = make_cluster(3)
    _mkbucket(c.urls[0], "ow", 2)
    assert _put(c.urls[0], "ow", "obj", b"v0").status_code == 200
    o = _owner(c, "ow", "obj")
    c.stop(o)
    c.wait_members(2)
    other = (o + 1) % 3
    assert _put(c.urls[other], "ow", "obj", b"v1").status_code == 200
    c.restart(o)
    c.wait_members(3)
    for u in c.urls:
        r = _get(u, "ow", "obj")
        assert r.status_code == 200 and r.content == b"v1", u
    r = requests.post(c.urls[0] + "/v1/rebalance", timeout=10)
    assert r.status_code == 200
    _eventually(lambda: _rebalanced(c.urls[0]))
    held = _copies_on_disk(c, "ow", "obj")
    assert len(held) >= 2 and {v for v, _ in held.values()} == {b"v1"}, held
    for u in c.urls:
        assert _get(u, "ow", "obj").content == b"v1"


def _rebalanced(url):
    st = requests.get(url + "/v1/rebalance", timeout=10).json()
    assert st["state"] == "done", st
    return st
