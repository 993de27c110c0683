"""The data plane's own checks of docs/consistency.md on real nodes and etcd: a rolling
restart under overwrites and deletes, what rebalance then keeps, and read repair
(test_nemesis_scenarios.py replays each defect of issue 15 through the nemesis)."""
import io
import os
import shutil
import signal
import tarfile
import time

import pytest
import requests

from getbatch.cluster.peers import SECRET_HEADER, STAMP_HEADER
from getbatch.store.tombs import Tombs
from tests.support.nodes import make_client

from .nodes import LEASE_TTL, Cluster
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


@pytest.fixture(scope="module")
def c3(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("consistency"), n=3)
    yield c
    c.close()


def test_rolling_restart_keeps_every_write(c3):
    """Each node in turn restarts while names it owns are overwritten and deleted through
    the others (defects 1 and 4 as a rolling restart makes them): every node then serves
    the last write, deletes stay deleted, and rebalance keeps the newest copies only."""
    c = c3
    _mkbucket(c.urls[0], "roll", 2)
    names = [f"k{i}" for i in range(9)]
    last = {}
    for n in names:
        assert _put(c.urls[0], "roll", n, b"v0-" + n.encode()).status_code == 200
        last[n] = b"v0-" + n.encode()
    for i in range(3):
        c.stop(i)
        c.wait_members(2)
        via = c.urls[(i + 1) % 3]
        for n in names:
            if last[n] is not None:
                data = f"v{i + 1}-{n}".encode()
                assert _put(via, "roll", n, data).status_code == 200
                last[n] = data
        gone = names[i]
        assert requests.delete(f"{via}/v1/objects/roll/{gone}", timeout=30).status_code == 200
        last[gone] = None
        c.restart(i)
        c.wait_members(3)
    _check_served(c, "roll", last)
    assert requests.post(c.urls[0] + "/v1/rebalance", timeout=10).status_code == 200
    _eventually(lambda: _rebalanced(c.urls[0]))
    for n, data in last.items():
        held = _copies_on_disk(c, "roll", n)
        if data is None:
            assert held == {}, n
        else:
            assert len(held) == 2 and {v for v, _ in held.values()} == {data}, (n, held)
            assert len({s for _, s in held.values()}) == 1  # one stamp: one version
    _check_served(c, "roll", last)


def _check_served(c, bucket, last):
    for u in c.urls:
        for n, data in last.items():
            r = _get(u, bucket, n)
            assert (r.status_code, r.content if data else None) == \
                ((200, data) if data else (404, None)), (u, n)
        listed = {e.name for e in make_client(u).bucket(bucket).list_all_objects()}
        assert listed == {n for n, d in last.items() if d is not None}, u


def test_read_repair(c3):
    """A GET that meets an older copy (or none) on an owner serves the newest and brings
    that owner up to date in the background."""
    c = c3
    _mkbucket(c.urls[0], "rr", 2)
    names = ["stale", "missing"]
    for n in names:
        assert _put(c.urls[0], "rr", n, n.encode() * 100).status_code == 200
    for n in names:
        first, second = (_index(c, node.id) for node in _owners(c, "rr", n, 2))
        third = ({0, 1, 2} - {first, second}).pop()
        path = os.path.join(c.nodes[second].data_dir, "ais", "rr", n)
        if n == "stale":
            with open(path, "r+b") as f:
                f.write(b"old")
            os.setxattr(path, STAMP, b"0000000000000001.gone")
        else:
            os.unlink(path)
        r = _get(c.urls[third], "rr", n)
        assert r.status_code == 200 and r.content == n.encode() * 100
        _eventually(lambda: _assert_copy(path, n.encode() * 100))


def test_rebalance_alone_repairs_stale_copies_and_drops_older_ones(c3):
    """Anti-entropy with no read first (a read would repair): an owner holding an older copy
    or none gets the newest, and a non-owner's leftover older copy is dropped, never copied
    over the owners' newer one."""
    c = c3
    _mkbucket(c.urls[0], "ae", 2)
    names = ["stale", "missing", "leftover"]
    for n in names:
        assert _put(c.urls[0], "ae", n, n.encode() * 100).status_code == 200
    for n in names:
        owners = [_index(c, node.id) for node in _owners(c, "ae", n, 2)]
        third = ({0, 1, 2} - set(owners)).pop()
        where = {"stale": owners[1], "missing": owners[0], "leftover": third}[n]
        path = os.path.join(c.nodes[where].data_dir, "ais", "ae", n)
        if n == "missing":
            os.unlink(path)
            continue
        if n == "leftover":   # a copy as a node keeps it (xattrs and all), then made older
            os.makedirs(os.path.dirname(path), exist_ok=True)
            shutil.copy2(os.path.join(c.nodes[owners[0]].data_dir, "ais", "ae", n), path)
        with open(path, "r+b") as f:
            f.write(b"old")
        os.setxattr(path, STAMP, b"0000000000000001.gone")
    assert requests.post(c.urls[0] + "/v1/rebalance", timeout=10).status_code == 200
    _eventually(lambda: _rebalanced(c.urls[0]), timeout=60)
    for n in names:
        held = _copies_on_disk(c, "ae", n)
        owners = {_index(c, node.id) for node in _owners(c, "ae", n, 2)}
        assert set(held) == owners, (n, held)
        assert {v for v, _ in held.values()} == {n.encode() * 100}, (n, held)
        assert len({s for _, s in held.values()}) == 1, (n, held)


def test_getbatch_reads_the_newest_copy(c3):
    """A GetBatch whose entries' first owners hold an older copy, or the object where the
    second owner holds its newer tombstone, serves the newest version (a 404 for the
    deleted one, a placeholder under coer), and repairs the first owners."""
    c = c3
    _mkbucket(c.urls[0], "gbv", 2)
    data = {n: n.encode() * 100 for n in ("stale", "deleted")}
    for n, d in data.items():
        assert _put(c.urls[0], "gbv", n, d).status_code == 200
    first = {n: _index(c, _owners(c, "gbv", n, 2)[0].id) for n in data}
    stale = os.path.join(c.nodes[first["stale"]].data_dir, "ais", "gbv", "stale")
    with open(stale, "r+b") as f:
        f.write(b"old")
    os.setxattr(stale, STAMP, b"0000000000000001.gone")
    gone = os.path.join(c.nodes[first["deleted"]].data_dir, "ais", "gbv", "deleted")
    with open(gone, "rb") as f:
        kept = f.read(), os.getxattr(gone, STAMP)
    assert requests.delete(f"{c.urls[0]}/v1/objects/gbv/deleted", timeout=30).status_code == 200
    # the first owner missed the delete: its object is back, its tombstone gone
    tombs = Tombs(os.path.join(c.nodes[first["deleted"]].data_dir, ".sys", "tombs"))
    os.unlink(tombs._path("gbv", "deleted"))
    with open(gone, "wb") as f:
        f.write(kept[0])
    os.setxattr(gone, STAMP, kept[1])

    def batch(names, coer=False):
        return requests.get(f"{c.urls[0]}/v1/ml/moss/gbv", timeout=30, json={
            "in": [{"objname": n} for n in names], "coer": coer, "onob": True, "strm": True})
    r = batch(["stale"])
    assert r.status_code == 200 and _members(r.content) == [("stale", data["stale"])]
    r = batch(["stale", "deleted"])
    assert r.status_code == 404 and "deleted" in r.json()["message"], r.text
    r = batch(["deleted", "stale"], coer=True)
    assert r.status_code == 200, r.text
    assert [m for m in _members(r.content) if m[1]] == [("stale", data["stale"])]
    _eventually(lambda: _assert_copy(stale, data["stale"]))
    _eventually(lambda: _assert_gone(gone))


def test_reads_right_after_an_etcd_pause(c3):
    """etcd paused past the lease: every node's registration lapses and each registers
    again, so for a moment a reader's map lacks the holders of a name's newest version
    while a node keeps an older copy (it held the name before, off its owners now). Here
    the two owners' lease holders (their gunicorn arbiters; the workers go on serving) stay
    stopped while etcd resumes, which holds that moment open: GET, HEAD and GetBatch through
    every node, the one with the older copy and the owners now outside their own maps,
    serve the newest version (issue 15). One name per node and kind of read, so that no
    read repair of an earlier read helps a later one."""
    c = c3
    _mkbucket(c.urls[0], "ep", 2)
    third = 2
    reads = [(i, kind) for i in (third, 0, 1) for kind in ("GetBatch", "GET", "HEAD")]
    names = [n for n in (f"e{k}" for k in range(200))
             if third not in {_index(c, o.id) for o in _owners(c, "ep", n, 2)}][:len(reads)]
    secret = c.secret()
    for n in names:
        assert _put(c.urls[0], "ep", n, b"v0-" + n.encode()).status_code == 200
        held = requests.get(f"{c.urls[0]}/v1/objects/ep/{n}", timeout=30)
        r = requests.put(f"{c.urls[third]}/v1/_peer/objects/ep/{n}", data=held.content,
                         timeout=30, headers={SECRET_HEADER: secret,
                                              STAMP_HEADER: held.headers[STAMP_HEADER]})
        assert r.status_code == 200, r.text
        assert _put(c.urls[1], "ep", n, _newer(n)).status_code == 200
    assert {n: _copies_on_disk(c, "ep", n)[third][0] for n in names} == \
        {n: b"v0-" + n.encode() for n in names}
    stopped = [c.etcd.proc.pid, c.nodes[0].proc.pid, c.nodes[1].proc.pid]
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    got = []
    try:
        time.sleep(LEASE_TTL + 1.5)
        os.kill(c.etcd.proc.pid, signal.SIGCONT)
        # the third node registers again; the owners' leases are revoked and stay so
        _eventually(lambda: _assert_members(c, third, [c.nodes[third].id]), timeout=20)
        for (i, kind), n in zip(reads, names):
            if kind == "GetBatch":
                r = requests.get(f"{c.urls[i]}/v1/ml/moss/ep", timeout=30, json={
                    "in": [{"objname": n}], "onob": True, "strm": True})
                got.append((i, kind, n, r.status_code,
                            _members(r.content) if r.status_code == 200 else r.text))
            elif kind == "GET":
                r = _get(c.urls[i], "ep", n)
                got.append((i, kind, n, r.status_code, r.content))
            else:
                r = requests.head(f"{c.urls[i]}/v1/objects/ep/{n}", timeout=30)
                got.append((i, kind, n, r.status_code, r.headers.get("Content-Length")))
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    want = [(i, kind, n, 200, {"GetBatch": [(n, _newer(n))], "GET": _newer(n),
                               "HEAD": str(len(_newer(n)))}[kind])
            for (i, kind), n in zip(reads, names)]
    assert got == want
    c.wait_members(3)


def test_a_joining_node_gets_the_delete(c3):
    """A node catching up (joining) is a write target: a delete acknowledged meanwhile reaches
    it too, as a PUT does (its catch-up may already have listed that name: it would go live
    holding the object, and a delete whose other holders are away could not be
    acknowledged at all). The joining node is held so by a third node whose worker is
    frozen (its catch-up waits for that node's listing)."""
    c = c3
    _mkbucket(c.urls[0], "dj", 2)
    name = next(n for n in (f"d{k}" for k in range(200))
                if [_index(c, o.id) for o in _owners(c, "dj", n, 2)] == [0, 1])
    assert _put(c.urls[0], "dj", name, b"doomed").status_code == 200
    joining, frozen = c.nodes[1], _workers(c.nodes[2])
    secret = c.secret()
    try:
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        c.restart(1)
        joining = c.nodes[1]
        # node 0 sends the joining node its writes once it lists its stamps to it
        _eventually(lambda: _assert_status(requests.get(
            f"{c.urls[0]}/v1/_peer/stamps/dj", params={"for": joining.id}, timeout=10,
            headers={SECRET_HEADER: secret}), 200), timeout=20)
        assert '"joining": true' in c.etcd.get("getbatch/nodes/" + joining.id)
        r = requests.delete(f"{c.urls[0]}/v1/objects/dj/{name}", timeout=60)
        assert r.status_code == 200, r.text
        assert '"joining": true' in c.etcd.get("getbatch/nodes/" + joining.id)
        assert Tombs(os.path.join(joining.data_dir, ".sys", "tombs")).get("dj", name)
        assert not os.path.exists(os.path.join(joining.data_dir, "ais", "dj", name))
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    c.wait_members(3)


def _workers(node):
    """The pids of a node's gunicorn workers (children of its arbiter)."""
    with open(f"/proc/{node.proc.pid}/task/{node.proc.pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _assert_status(r, status):
    assert r.status_code == status, r.text


def _newer(name):
    return b"v1-" + name.encode() + b" (newer, longer)"


def _assert_members(c, i, ids):
    assert sorted(c.smap(c.urls[i])["tmap"]) == sorted(ids)


def _members(data):
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tf:
        return [(m.name, tf.extractfile(m).read()) for m in tf]


def _assert_gone(path):
    assert not os.path.exists(path)


def _assert_copy(path, data):
    assert os.path.exists(path)
    with open(path, "rb") as f:
        assert f.read() == data


def _index(c, node_id):
    return next(i for i, n in enumerate(c.nodes) if n.id == node_id)


def _owners(c, bucket, name, copies):
    from getbatch.cluster.smap import NodeInfo, Smap
    return Smap(1, [NodeInfo(n.id, n.url) for n in c.nodes], "").owners("ais", bucket, name,
                                                                         copies)


def _rebalanced(url):
    st = requests.get(url + "/v1/rebalance", timeout=10).json()
    assert st["state"] == "done", st
    return st
