"""A cluster GetBatch when nodes fail, for real: SIGKILL and SIGSTOP of a peer before and in the
middle of a batch, with one copy of each object (placeholders with `coer`, a detectable failure
without) and with two (complete); the DT's client going away; etcd stopped during a batch; a
node restarted. The DT is node 0; node 2 is the one that fails. Each test leaves the cluster
whole again."""
import io
import os
import tarfile
import time

import pytest
import requests
import urllib3

from getbatch.cluster.smap import NodeInfo, Smap
from getbatch.store import LocalStore

from tests.server.test_metrics import parse

from .nodes import Cluster

STAMP = "user.getbatch.stamp"
N = 192
SIZE = 256 << 10   # 16 MiB per peer: more than the sockets between two nodes hold, in items
                   # that fit a peer window (a bigger one cut halfway cannot become a placeholder)
FIRST = 4 << 20    # what the client reads before the fault


def _set_mirror(url, bucket, copies):
    r = requests.patch(f"{url}/v1/buckets/{bucket}", params={"provider": "ais"}, timeout=10,
                       json={"action": "set-bprops",
                             "value": {"mirror": {"enabled": copies > 1, "copies": copies}}})
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def fc(tmp_path_factory):
    """A 3-node cluster with buckets `one` (1 copy) and `two` (2 copies) of the same objects."""
    c = Cluster(tmp_path_factory.mktemp("faults"), n=3, env={"GETBATCH_MAX_SOFT_ERRS": "200"})
    s = requests.Session()
    c.objs = {f"o{i:03d}": os.urandom(SIZE) for i in range(N)}
    for b, copies in (("one", 1), ("two", 2)):
        assert s.post(f"{c.urls[0]}/v1/buckets/{b}", json={"action": "create-bck"},
                      params={"provider": "ais"}, timeout=10).status_code == 200
        _set_mirror(c.urls[0], b, copies)
        for name, data in c.objs.items():
            assert s.put(f"{c.urls[1]}/v1/objects/{b}/{name}", data=data,
                         params={"provider": "ais"}, timeout=30).status_code == 200
    smap = Smap(1, [NodeInfo(n.id, n.url) for n in c.nodes], c.nodes[0].id)
    c.victims = {n for n in c.objs if smap.owner("ais", "one", n).id == c.nodes[2].id}
    assert 20 <= len(c.victims) <= 100
    c.victims_two = {n for n in c.objs if smap.owner("ais", "two", n).id == c.nodes[2].id}
    yield c
    c.close()


def _body(coer=False, strm=True, **kw):
    return dict({"in": [{"objname": n} for n in sorted(_body.objs)], "coer": coer, "strm": strm},
                **kw)


def _get(fc, bucket, stream=False, params=None, **kw):
    _body.objs = fc.objs
    return requests.get(f"{fc.urls[0]}/v1/ml/moss/{bucket}", json=_body(**kw), stream=stream,
                        params=params, timeout=120)


def _members(data):
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tf:
        return [(m.name, tf.extractfile(m).read()) for m in tf]


def _archive_part(resp):
    boundary = resp.headers["Content-Type"].split("boundary=")[1].encode()
    return resp.content.split(b"--" + boundary)[2].split(b"\r\n\r\n", 1)[1][:-2]


def _complete(fc, bucket, data):
    return _members(data) == [(f"{bucket}/{n}", fc.objs[n]) for n in sorted(fc.objs)]


def _read_then(resp, first, action):
    """Read `first` bytes of a streamed answer, run `action`, read the rest."""
    head = resp.raw.read(first)
    action()
    return head + resp.raw.read()


def _whole_again(fc):
    if fc.nodes[2].proc.poll() is not None:
        fc.restart(2)
    fc.wait_members(3)


def _gfn_count(url):
    """The DT's ais_target_getbatch_gfn_count (GET /metrics)."""
    samples, _ = parse(requests.get(url + "/metrics", timeout=10).text)
    node_id = requests.get(url + "/v1/daemon?what=smap", timeout=10).json()["proxy_si"]["daemon_id"]
    values = [v for (name, labels), v in samples.items()
              if name == "ais_target_getbatch_gfn_count" and ("node_id", node_id) in labels]
    assert len(values) == 1, samples   # labelled with the node's id in the cluster map
    return values[0]


def test_peer_killed_before_the_batch(fc):
    gfn_before = _gfn_count(fc.urls[0])
    fc.kill(2)
    try:
        # its lease has not expired yet: the DT finds it dead itself
        r = _get(fc, "two")
        assert r.status_code == 200 and _complete(fc, "two", r.content)
        # the dead node's entries were read from their next owners: counted as AIS counts GFN
        assert _gfn_count(fc.urls[0]) - gfn_before == len(fc.victims_two)
        # an entry only the dead node may hold: not "no such object" but "try again"
        r = _get(fc, "one")
        assert r.status_code == 503 and "try again" in r.json()["message"], r.text
        assert "Retry-After" in r.headers
        r = _get(fc, "one", coer=True)
        got = _members(r.content)
        assert [n for n, _ in got] == [(f"__404__/one/{n}" if n in fc.victims else f"one/{n}")
                                       for n in sorted(fc.objs)]
        # once the map has dropped it, the copies are found on the new owners' neighbours
        fc.wait_members(2)
        r = _get(fc, "two", strm=False)
        assert r.status_code == 200 and _complete(fc, "two", _archive_part(r))
    finally:
        _whole_again(fc)
    # the restarted node (same id, same data) serves its objects again
    r = _get(fc, "one")
    assert r.status_code == 200 and _complete(fc, "one", r.content)


def test_peer_killed_mid_batch_two_copies_complete(fc):
    r = _get(fc, "two", stream=True)
    try:
        data = _read_then(r, FIRST, lambda: fc.kill(2))
        assert len(data) == int(r.headers["Content-Length"])
        assert _complete(fc, "two", data)
    finally:
        _whole_again(fc)


def test_peer_killed_mid_batch_one_copy(fc):
    # with coer: placeholders where its items were, the announced length kept
    r = _get(fc, "one", stream=True, coer=True)
    try:
        data = _read_then(r, FIRST, lambda: fc.kill(2))
    finally:
        _whole_again(fc)
    assert len(data) == int(r.headers["Content-Length"])
    got = _members(data)
    assert len(got) == N
    holes = 0
    for (name, blob), n in zip(got, sorted(fc.objs)):
        if name.startswith("__404__/"):
            assert n in fc.victims and name == f"__404__/one/{n}" and blob == b""
            holes += 1
        else:
            assert (name, blob) == (f"one/{n}", fc.objs[n])
    assert holes > 0
    # without: the connection is cut, the client cannot take the answer for a whole one
    r = _get(fc, "one", stream=True)
    try:
        data = _read_then(r, FIRST, lambda: fc.kill(2))
        cut = len(data) < int(r.headers["Content-Length"])
    except (urllib3.exceptions.ProtocolError, requests.RequestException):
        cut = True
    finally:
        _whole_again(fc)
    assert cut


def test_peer_stalled_past_max_wait(fc):
    fc.pause(2)
    try:
        t0 = time.monotonic()
        r = _get(fc, "two", params={"max_wait": "1s"})
        assert r.status_code == 200 and _complete(fc, "two", r.content)
        # the paused peer is never waited out (until the request's own 120 s timeout)
        assert time.monotonic() - t0 < 60
    finally:
        fc.resume(2)
    _whole_again(fc)
    r = _get(fc, "two", stream=True, params={"max_wait": "1s"})
    try:
        data = _read_then(r, FIRST, lambda: fc.pause(2))
        assert _complete(fc, "two", data)
    finally:
        fc.resume(2)
        _whole_again(fc)


def _tar(name, data):
    """A TAR shard holding a small file, then `name` with `data`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for n, d in (("small.txt", b"x" * 100), (name, data)):
            info = tarfile.TarInfo(n)
            info.size = len(d)
            tf.addfile(info, io.BytesIO(d))
    return buf.getvalue()


@pytest.mark.parametrize("inside", [False, True], ids=["object", "file-in-shard"])
def test_stalled_mid_item_resumes_only_from_the_same_version(fc, inside):
    """A 32 MiB item (an object, or a file inside a shard) whose owner (node 2) is paused
    past max_wait inside it: resumed from its second copy (node 1) when that is the same
    version; when node 1's copy is another version of the same size (a lost overwrite leaves
    such copies; here with the same stamp, so no read repair mends it meanwhile), the answer
    is cut."""
    smap = Smap(1, [NodeInfo(n.id, n.url) for n in fc.nodes], fc.nodes[0].id)
    ids = [n.id for n in fc.nodes]
    name = next(f"big{i}.tar" for i in range(200)
                if [ids.index(n.id) for n in smap.owners("ais", "two", f"big{i}.tar", 2)]
                == [2, 1])
    v0 = os.urandom(32 << 20)
    entry, member = ({"objname": name, "archpath": "big.bin"}, f"two/{name}/big.bin") if inside \
        else ({"objname": name}, f"two/{name}")
    assert requests.put(f"{fc.urls[1]}/v1/objects/two/{name}", timeout=60,
                        data=_tar("big.bin", v0) if inside else v0,
                        params={"provider": "ais"}).status_code == 200

    def batch():
        r = requests.get(f"{fc.urls[0]}/v1/ml/moss/two", params={"max_wait": "1s"},
                         json={"in": [entry], "strm": True}, stream=True, timeout=60)
        try:
            data = _read_then(r, FIRST, lambda: fc.pause(2))
        except (urllib3.exceptions.ProtocolError, requests.RequestException):
            data = None
        finally:
            fc.resume(2)
        return r, data
    try:
        r, data = batch()
        assert data is not None and len(data) == int(r.headers["Content-Length"])
        assert _members(data) == [(member, v0)]
        v1 = os.urandom(32 << 20)
        LocalStore(fc.nodes[1].data_dir).put(
            "two", name, io.BytesIO(_tar("big.bin", v1) if inside else v1))
        copies = [os.path.join(fc.nodes[k].data_dir, "ais", "two", name) for k in (2, 1)]
        os.setxattr(copies[1], STAMP, os.getxattr(copies[0], STAMP))
        r, data = batch()
        assert data is None or len(data) < int(r.headers["Content-Length"])
    finally:
        fc.resume(2)
        requests.delete(f"{fc.urls[0]}/v1/objects/two/{name}", params={"provider": "ais"},
                        timeout=30)
        _whole_again(fc)


def _owned_by(fc, prefix, ranks):
    """The first name `prefix<i>` whose two owners in bucket `two` are nodes `ranks`."""
    smap = Smap(1, [NodeInfo(n.id, n.url) for n in fc.nodes], fc.nodes[0].id)
    ids = [n.id for n in fc.nodes]
    return next(f"{prefix}{i}" for i in range(200)
                if [ids.index(n.id) for n in smap.owners("ais", "two", f"{prefix}{i}", 2)]
                == ranks)


def test_entry_is_not_read_older_after_its_newest_holder_failed(fc):
    """A batch of a 32 MiB item and a small one, both on node 2 (their newest holder) and
    node 1. Node 2 is paused past max_wait inside the big item, after node 1's copy of the
    small one became an older version of the same size: the big item resumes from node 1
    (same version), the small one is not taken from there (a placeholder under coer),
    never the older bytes."""
    big, small = _owned_by(fc, "fbig", [2, 1]), _owned_by(fc, "fsmall", [2, 1])
    v_big, v_small = os.urandom(32 << 20), os.urandom(64 << 10)
    for name, data in ((big, v_big), (small, v_small)):
        assert requests.put(f"{fc.urls[1]}/v1/objects/two/{name}", data=data, timeout=60,
                            params={"provider": "ais"}).status_code == 200
    older = os.urandom(64 << 10)

    def stale_then_pause():
        # after the DT compared the stamps (no read repair mends it): an older copy
        path = os.path.join(fc.nodes[1].data_dir, "ais", "two", small)
        LocalStore(fc.nodes[1].data_dir).put("two", small, io.BytesIO(older))
        os.setxattr(path, STAMP, b"0000000000000001.old")
        fc.pause(2)
    try:
        r = requests.get(f"{fc.urls[0]}/v1/ml/moss/two", params={"max_wait": "1s"},
                         json={"in": [{"objname": big}, {"objname": small}], "strm": True,
                               "coer": True}, stream=True, timeout=60)
        try:
            data = _read_then(r, FIRST, stale_then_pause)
        finally:
            fc.resume(2)
        assert len(data) == int(r.headers["Content-Length"])
        assert _members(data) == [(f"two/{big}", v_big), (f"__404__/two/{small}", b"")]
    finally:
        fc.resume(2)
        for name in (big, small):
            requests.delete(f"{fc.urls[0]}/v1/objects/two/{name}", params={"provider": "ais"},
                            timeout=30)
        _whole_again(fc)


def _fds(node):
    """Open fds of a node's processes (master and workers)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                pgrp = int(f.read().rsplit(")", 1)[1].split()[2])
            if pgrp == node.proc.pid:
                total += len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, ValueError, IndexError):
            continue
    return total


def test_client_disconnect_stops_the_peers(fc):
    before = [_fds(n) for n in fc.nodes]
    for _ in range(3):
        r = _get(fc, "two", stream=True)
        r.raw.read(FIRST)
        r.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        logs = [n.log() for n in fc.nodes[1:]]
        if all(log.count("ABORTED") >= 3 for log in logs):
            break
        time.sleep(0.2)
    assert all(log.count("peer batch") >= 3 and log.count("ABORTED") >= 3 for log in logs)
    # nothing held per aborted batch: at most the idle keep-alive connections of one more
    # (polled: a node closes what it held a little after it logs the abort)
    deadline = time.monotonic() + 20
    while True:
        after = [_fds(n) for n in fc.nodes]
        if all(a <= b + 4 for a, b in zip(after, before)):
            break
        assert time.monotonic() < deadline, (before, after)
        time.sleep(0.2)
    r = _get(fc, "two")
    assert _complete(fc, "two", r.content)


def test_etcd_stopped_during_a_batch(fc):
    r = _get(fc, "one", stream=True)
    try:
        data = _read_then(r, FIRST, fc.etcd.stop)
        assert _complete(fc, "one", data)
    finally:
        fc.etcd.start()
    _whole_again(fc)
