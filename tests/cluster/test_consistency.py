"""The consistency model of docs/consistency.md under real faults (real etcd, real nodes):
each test is one of the defects of issue 15 as a scripted scenario (overwrites across an
owner's restart, etcd paused past the lease, deletes while a holder is away, racing PUTs,
a bucket destroyed while a node is paused, a duplicate advertise URL, a rolling restart)."""
import os
import signal
import subprocess
import threading
import time

import requests

from tests.server.conftest import free_port, serve_argv

from .nodes import LEASE_TTL
from .test_objects import _local_names, _set_mirror

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


def test_etcd_paused_past_the_lease_acknowledges_only_full_copies(make_cluster):
    """Defect 3: while etcd is paused past the lease (and while the nodes register again),
    a PUT is a 503 naming the copies it could reach, never a 200 with one copy."""
    c = make_cluster(3)
    _mkbucket(c.urls[0], "ep", 2)
    answers = {}
    os.kill(c.etcd.proc.pid, signal.SIGSTOP)
    try:
        end = time.monotonic() + LEASE_TTL * 2
        i = 0
        while time.monotonic() < end:
            name = f"o{i}"
            r = _put(c.urls[i % 3], "ep", name, name.encode())
            answers[name] = r
            i += 1
            time.sleep(0.1)
    finally:
        os.kill(c.etcd.proc.pid, signal.SIGCONT)
    c.wait_members(3)
    refused = [r for r in answers.values() if r.status_code == 503]
    assert refused, "no PUT was refused while the leases were stale"
    assert all(r.status_code in (200, 503) for r in answers.values())
    assert all(r.headers.get("Retry-After") for r in refused)
    assert any("cannot accept writes" in r.json()["message"] or "needed" in r.json()["message"]
               for r in refused)
    for name, r in answers.items():
        if r.status_code == 200:
            held = _copies_on_disk(c, "ep", name)
            assert len(held) >= 2, (name, held)


def test_racing_puts_converge(make_cluster):
    """Defect 5a: concurrent PUTs of one name through different nodes leave every copy at
    one winner, the same bytes and stamp everywhere."""
    c = make_cluster(3)
    _mkbucket(c.urls[0], "race", 3)
    for round_ in range(3):
        name = f"r{round_}"
        threads = [threading.Thread(target=_put, args=(c.urls[i % 3], "race", name,
                                                       f"{name}-{i}".encode() * 1000))
                   for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        held = _copies_on_disk(c, "race", name)
        assert len(held) == 3 and len(set(held.values())) == 1, held
        bodies = {_get(u, "race", name).content for u in c.urls}
        assert bodies == {next(iter(held.values()))[0]}


def test_duplicate_advertise_is_refused(make_cluster, tmp_path):
    """Defect 5c: a node started with a live node's --advertise URL does not join."""
    c = make_cluster(2)
    port = free_port()
    argv = [a.format(port=port, data=str(tmp_path / "dup")) for a in serve_argv(1, 2)]
    out = subprocess.run(argv + ["--etcd", c.etcd.url, "--advertise", c.urls[0]],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "already live in the cluster" in out.stderr + out.stdout
    assert len(c.wait_members(2)) == 2
