"""The DT's merge over real HTTP peers (three apps in threads, inproc.py): output byte for byte
the single node's, in every format and mode; missing entries, lazy placement, and peers that
die or stall mid-batch."""
import io
import json
import os
import random
import tarfile
import time

import pytest
import requests

from getbatch.batch import plan as batch_plan
from getbatch.batch.assemble import BatchOutput
from getbatch.batch.errors import BatchError
from getbatch.batch.request import parse
from getbatch.cluster.gather import Gather, HoleError
from getbatch.cluster.holes import padded_placeholder
from getbatch.cluster.peerstream import WINDOW
from getbatch.cluster.smap import placement_key
from getbatch.store import LocalStore, Storage
from getbatch.store.attrs import XATTR_CKSUM, XATTR_STAMP

from ..batch.emitting import emit_to_file
from .inproc import MiniCluster
from tests.archive.tarhelp import make_tar


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    c = MiniCluster(root)
    ref = LocalStore(root / "single")   # the same objects on one node: the expected output
    rng = random.Random(5)
    objs = {f"o{i}": rng.randbytes(rng.choice([0, 1, 511, 512, 513, 4096, 70000]))
            for i in range(150)}
    objs["big"] = os.urandom(WINDOW * 2 + 777)   # frames wider than a peer window
    objs["shard.tar"] = make_tar([("a/x.txt", b"x" * 1000), ("y.bin", os.urandom(3000))])
    for b in ("b", "c"):
        c.create_bucket(b)
        ref.create_bucket(b)
        for name, data in objs.items():
            c.put(b, name, data)
            ref.put(b, name, io.BytesIO(data))
    c.objs = objs
    c.ref = Storage({"ais": ref})
    yield c
    c.stop()


def single_node(mini, body, fmt="tar"):
    """What one node holding every object answers (streamed archive, or (meta, archive))."""
    req = parse(json.dumps(body).encode(), "b")
    out = BatchOutput(batch_plan.build(req, mini.ref), req.mime, multipart=not req.strm)
    data = b"".join(out)
    out.close()
    return data


def moss(mini, body, node=0, **params):
    return requests.get(f"{mini.nodes[node].url}/v1/ml/moss/b", json=body, params=params)


def split_multipart(resp_or_bytes, ctype):
    boundary = ctype.split("boundary=")[1].encode()
    parts = resp_or_bytes.split(b"--" + boundary)
    meta = json.loads(parts[1].split(b"\r\n\r\n", 1)[1])
    return meta, parts[2].split(b"\r\n\r\n", 1)[1][:-2]


def mixed_entries(mini):
    names = list(mini.objs)
    random.Random(9).shuffle(names)
    ins = [{"objname": n} for n in names]
    ins += [{"objname": "shard.tar", "archpath": "a/x.txt"}, {"objname": "shard.tar/y.bin"},
            {"objname": "big", "start": WINDOW - 5, "length": 1000},
            {"objname": "o3", "bucket": "c", "opaque": "AAEC"}, {"objname": "o3"}]
    return ins


@pytest.mark.parametrize("strm", [True, False])
@pytest.mark.parametrize("mime", [".tar", ".tgz", ".tar.lz4", ".zip"])
def test_same_bytes_as_one_node(mini, strm, mime):
    body = {"in": mixed_entries(mini), "strm": strm, "mime": mime}
    r = moss(mini, body)
    assert r.status_code == 200, r.text
    want = single_node(mini, body)
    if strm:
        assert r.content == want
    else:
        meta, arch = split_multipart(r.content, r.headers["Content-Type"])
        wmeta, warch = split_multipart(want, r.headers["Content-Type"].replace(
            r.headers["Content-Type"].split("boundary=")[1], want[2:62].decode()))
        assert arch == warch and meta["out"] == wmeta["out"]
        assert len(meta["out"]) == len(body["in"])


def test_emit_path_same_bytes(mini, tmp_path):
    """The zero-copy path (what the gunicorn worker runs) gives the same bytes."""
    body = {"in": mixed_entries(mini), "strm": True, "onob": True}
    req = parse(json.dumps(body).encode(), "b")
    n0 = mini.nodes[0]
    out = BatchOutput(Gather(req, n0.cluster.smap, n0.cluster.node, n0.storage, n0.config,
                             n0.cluster.peers, 5.0).plan(), "tar", multipart=False)
    n = emit_to_file(out, tmp_path / "out.tar")
    out.close()
    got = (tmp_path / "out.tar").read_bytes()
    assert n == out.content_length == len(got)
    assert got == single_node(mini, body)


def test_missing(mini):
    ins = [{"objname": "o1"}, {"objname": "nope"}, {"objname": "shard.tar", "archpath": "zz"}]
    r = moss(mini, {"in": ins})
    assert r.status_code == 404 and "ais://b/nope does not exist" in r.json()["message"]
    r = moss(mini, {"in": ins, "coer": True})
    meta, arch = split_multipart(r.content, r.headers["Content-Type"])
    assert [o.get("err_msg") is not None for o in meta["out"]] == [False, True, True]
    with tarfile.open(fileobj=io.BytesIO(arch)) as tf:
        assert tf.getnames() == ["b/o1", "__404__/b/nope", "__404__/b/shard.tar/zz"]
    r = moss(mini, {"in": [{"objname": f"nope{i}"} for i in range(9)], "coer": True})
    assert r.status_code == 400 and "soft-errors limit" in r.json()["message"]


def test_missing_file_in_an_existing_shard_is_a_soft_error(mini, tmp_path):
    """The seed's "a file from every shard, continue on error": nodes holding nothing of the
    bucket are asked for the missing file too, and lack it as a missing object, not as a
    missing bucket; every node answers what one node holding the shard answers."""
    shard = make_tar([("a", b"x" * 10)])
    mini.create_bucket("d6", dirs=False)   # a directory only where an object is stored
    mini.put("d6", "t.tar", shard)
    one = LocalStore(tmp_path / "one")
    one.create_bucket("d6")
    one.put("d6", "t.tar", io.BytesIO(shard))
    ins = [{"objname": "t.tar", "archpath": "a"}, {"objname": "t.tar", "archpath": "zzz"}]
    for strm in (True, False):
        body = {"in": ins, "coer": True, "strm": strm}
        out = BatchOutput(batch_plan.build(parse(json.dumps(body).encode(), "d6"),
                                           Storage({"ais": one})), "tar", multipart=not strm)
        want = b"".join(out)
        out.close()
        for node in mini.nodes:
            r = requests.get(f"{node.url}/v1/ml/moss/d6", json=body)
            assert r.status_code == 200, (node.id, r.text)
            if strm:
                assert r.content == want
            else:
                meta, arch = split_multipart(r.content, r.headers["Content-Type"])
                assert arch == split_multipart(want, out.content_type)[1]
                assert meta["out"][1]["err_msg"] == "zzz in ais://d6/t.tar does not exist"
                with tarfile.open(fileobj=io.BytesIO(arch)) as tf:
                    assert tf.getnames() == ["d6/t.tar/a", "__404__/d6/t.tar/zzz"]


def test_errors_from_owners_are_the_requests(mini):
    r = moss(mini, {"in": [{"objname": f"o{i}"} for i in range(30)]
                    + [{"objname": "o1", "start": 10 ** 9, "length": 1}]})
    assert r.status_code == 416
    r = moss(mini, {"in": [{"objname": "o1", "bucket": "nob"}]})
    assert r.status_code == 404


def _held_under(root):
    """Files under `root` this process holds open."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue   # the listing's own fd, closed meanwhile
        if target.startswith(f"{root}/"):
            held.append(target)
    return held


def test_dt_plan_closes_this_nodes_files(mini):
    """The DT's own objects move from its local plan into the merged items: closing the plan
    unsent, or a peer's error after the local plan opened them, leaves none open."""
    n0 = mini.nodes[0]
    root = n0.store.root
    theirs = next(f"o{i}" for i in range(150) if mini.smap.owner("ais", "b", f"o{i}").id != "n0")
    ins = [{"objname": f"o{i}"} for i in range(150)]
    assert _held_under(root) == []
    for extra, status in (([], None), ([{"objname": theirs, "start": 10 ** 9, "length": 1}], 416)):
        req = parse(json.dumps({"in": ins + extra}).encode(), "b")
        g = Gather(req, n0.cluster.smap, n0.cluster.node, n0.storage, n0.config, n0.cluster.peers, 5.0)
        if status is None:
            p = g.plan()
            assert len(p.items) == len(ins)
            p.close()
        else:
            with pytest.raises(BatchError) as exc:
                g.plan()
            assert exc.value.status == status
        assert _held_under(root) == []


def test_object_off_its_owner_is_found(mini):
    """Written under another membership: not on its HRW owner (a peer), found on another
    node; the owner's answer, a placeholder frame nobody takes, is read past."""
    name = next(f"stray{i}" for i in range(20)
                if mini.smap.owner("ais", "b", f"stray{i}").id != "n0")
    owner = mini.smap.owner("ais", "b", name).id
    other = next(n for n in mini.nodes if n.id not in (owner, "n0"))
    other.put("b", name, b"stray bytes")
    try:
        for _ in range(2):
            r = moss(mini, {"in": [{"objname": "o1"}, {"objname": name}, {"objname": "o2"}],
                            "strm": True})
            with tarfile.open(fileobj=io.BytesIO(r.content)) as tf:
                assert [(m.name, tf.extractfile(m).read()) for m in tf] == [
                    ("b/o1", mini.objs["o1"]), (f"b/{name}", b"stray bytes"),
                    ("b/o2", mini.objs["o2"])]
    finally:
        other.store.delete("b", name)


def test_each_node_indexes_only_the_shards_it_holds(mini):
    """Per-node state in one process: whichever node is the DT, only the owner of shard.tar
    opens it and finds its index in its own ShardMemory; the others' stay untouched."""
    owner = mini.smap.owner("ais", "b", "shard.tar").id
    body = {"in": [{"objname": "shard.tar", "archpath": "a/x.txt"}], "strm": True}

    def used():
        return {n.id: sum(n.store.shard_memory.stats[k] for k in ("hits", "loads", "builds"))
                for n in mini.nodes}
    before = used()
    for dt in range(len(mini.nodes)):
        r = moss(mini, body, dt)
        assert r.status_code == 200 and r.content[512:1512] == b"x" * 1000
    after = used()
    assert {i: after[i] - before[i] for i in after} == {
        n.id: 3 if n.id == owner else 0 for n in mini.nodes}


def test_peer_without_secret_refused(mini):
    r = requests.post(f"{mini.nodes[1].url}/v1/_peer/batch", data=b'{"in":[{"objname":"o1"}]}')
    assert r.status_code == 403


# -- a peer failing in the middle of a batch


def test_max_gfn_limits_reads_from_neighbours(mini):
    """An object off its owner is found by asking the next candidates (each ask counted in
    gfn) unless max_gfn is spent; then it is missing, and the message names the limit."""
    name = next(f"gfn{i}" for i in range(20)
                if mini.smap.owner("ais", "b", f"gfn{i}").id != "n0")
    ranked = [n.id for n in mini.smap.ranked(placement_key("ais", "b", name))]
    other = mini.by_id[ranked[-1]] if ranked[-1] != "n0" else mini.by_id[ranked[1]]
    asks = ranked.index(other.id)      # candidates asked after the first owner
    other.put("b", name, b"neighbour bytes")
    n0 = mini.nodes[0]
    body = json.dumps({"in": [{"objname": "o1"}, {"objname": name}], "coer": True}).encode()

    def plan(max_gfn, max_soft_errs=8):
        g = Gather(parse(body, "b"), n0.cluster.smap, n0.cluster.node, n0.storage,
                   n0.config.replace(max_gfn=max_gfn, max_soft_errs=max_soft_errs),
                   n0.cluster.peers, 5.0)
        p = g.plan()
        p.close()
        return p
    try:
        # AIS's meaning: 0 is min(5, max_soft_errs), any other number is itself
        for limit, soft in ((100_000, 8), (asks, 8), (0, 8), (0, asks)):
            p = plan(limit, soft)
            assert [it.err for it in p.items] == [None, None] and p.gfn == asks
        # -1 turns get from neighbour off, as in AIS (here it meant "no limit" once)
        p = plan(-1)
        assert p.items[0].err is None and "get from neighbour is off" in p.items[1].err
    finally:
        other.store.delete("b", name)


def _remote_node(mini, names):
    """The peer (not n0) owning the most of `names`."""
    counts = {}
    for n in names:
        owner = mini.smap.owner("ais", "b", n).id
        counts[owner] = counts.get(owner, 0) + 1
    return mini.by_id[max((k for k in counts if k != "n0"), key=counts.get)]


@pytest.fixture
def failing(mini):
    names = [f"o{i}" for i in range(150)] + ["big"]
    node = _remote_node(mini, names)
    yield names, node
    node.faults.cut_after = node.faults.stall = None


def _emit(mini, body, tmp_path, max_wait=5.0):
    req = parse(json.dumps(body).encode(), "b")
    n0 = mini.nodes[0]
    out = BatchOutput(Gather(req, n0.cluster.smap, n0.cluster.node, n0.storage, n0.config,
                             n0.cluster.peers, max_wait).plan(), req.mime, multipart=not req.strm)
    try:
        emit_to_file(out, tmp_path / "out")
    finally:
        out.close()
    return out, (tmp_path / "out").read_bytes()


def _with_replicas(mini, names, node):
    """Copy what `node` holds of `names` to the next HRW candidate (a second copy)."""
    placed = []
    for n in names:
        owners = mini.smap.owners("ais", "b", n, 2)
        if owners[0].id == node.id:
            mini.by_id[owners[1].id].put("b", n, mini.objs[n])
            placed.append((owners[1].id, n))
    return placed


@pytest.mark.parametrize("cut", [600, 100_000, WINDOW + 5000])
def test_peer_dies_with_replicas_complete(mini, failing, tmp_path, cut):
    names, node = failing
    placed = _with_replicas(mini, names, node)
    node.faults.cut_after = cut
    try:
        body = {"in": [{"objname": n} for n in names], "strm": True}
        out, got = _emit(mini, body, tmp_path)
        assert got == single_node(mini, body)
        r = moss(mini, dict(body, mime=".tgz"))
        assert r.content == single_node(mini, dict(body, mime=".tgz"))
    finally:
        for nid, n in placed:
            mini.by_id[nid].store.delete("b", n)


def test_peer_dies_no_replica_placeholders_keep_length(mini, failing, tmp_path):
    names, node = failing
    node.faults.cut_after = 20_000
    body = {"in": [{"objname": n} for n in names], "strm": True, "coer": True}
    with pytest.raises(HoleError, match="soft-errors limit"):
        _emit(mini, body, tmp_path)
    mine = [n for n in names if mini.smap.owner("ais", "b", n).id == node.id]
    few = [n for n in names if n not in mine[6:]]  # 6 of its items: at most 6 holes
    body["in"] = [{"objname": n} for n in few]
    node.faults.cut_after = 400   # just past its plan frame
    out, got = _emit(mini, body, tmp_path)
    assert len(got) == out.content_length
    with tarfile.open(fileobj=io.BytesIO(got)) as tf:
        members = [(m.name, tf.extractfile(m).read()) for m in tf]
    assert len(members) == len(few)
    holes = 0
    for (name, data), want in zip(members, few):
        if name.startswith("__404__/"):
            assert name == f"__404__/b/{want}" and data == b""
            holes += 1
        else:
            assert (name, data) == (f"b/{want}", mini.objs[want])
    assert 0 < holes <= 6


def test_peer_dies_no_coer_aborts(mini, failing, tmp_path):
    names, node = failing
    node.faults.cut_after = 20_000
    with pytest.raises(HoleError):
        _emit(mini, {"in": [{"objname": n} for n in names], "strm": True}, tmp_path)
    r = moss(mini, {"in": [{"objname": n} for n in names], "strm": True})  # iterated path
    with pytest.raises(requests.RequestException):
        r.raise_for_status()
        tarfile.open(fileobj=io.BytesIO(r.content)).getmembers()
        if len(r.content) != int(r.headers.get("Content-Length", -1)):
            raise requests.RequestException("short")


def test_peer_stalls_past_max_wait(mini, failing, tmp_path):
    names, node = failing
    placed = _with_replicas(mini, names, node)
    # a stall far longer than any loaded machine takes for the batch: elapsed time tells
    node.faults.cut_after, node.faults.stall = 50_000, 40.0
    try:
        body = {"in": [{"objname": n} for n in names], "strm": True}
        t0 = time.monotonic()
        out, got = _emit(mini, body, tmp_path, max_wait=0.5)
        assert time.monotonic() - t0 < 30   # (the stall is 40 s: it was not waited out)
        assert got == single_node(mini, body)
    finally:
        for nid, n in placed:
            mini.by_id[nid].store.delete("b", n)


@pytest.mark.parametrize("name", ["b/o1", "b/" + "d" * 90 + "/o", "b/" + "x" * 95])
@pytest.mark.parametrize("size", [0, 1, 600, 5000])
def test_padded_placeholder(name, size):
    from getbatch.archive import tar_entry_size
    n = tar_entry_size(name, size)
    frame = padded_placeholder("__404__/" + name, n)
    if frame is None:
        assert len(("__404__/" + name)) > 100
        return
    assert len(frame) == n
    with tarfile.open(fileobj=io.BytesIO(frame + bytes(1024))) as tf:
        (m,) = tf.getmembers()
    assert m.name == "__404__/" + name and m.size == 0


# -- failover inside an item: only to a copy of the same version

BIG = 8 << 20


@pytest.fixture
def versions(mini):
    """An 8 MiB object owned by a peer (`owner`), its second copy on the other peer; the
    DT n0 holds none. Yields (name, owner, second); the test writes the copies."""
    name = next(f"ver{i}" for i in range(50)
                if "n0" not in [n.id for n in mini.smap.owners("ais", "b", f"ver{i}", 2)])
    owner, second = [mini.by_id[n.id] for n in mini.smap.owners("ais", "b", name, 2)]
    yield name, owner, second
    owner.faults.cut_after = owner.faults.stall = None
    for n in (owner, second):
        n.store.delete("b", name)


def _elsewhere(mini, node, k=2):
    """`k` small objects `node` does not own."""
    return [n for n in (f"o{i}" for i in range(150))
            if mini.smap.owner("ais", "b", n).id != node.id][:k]


def _cut_mid_item(mini, name, owner, tmp_path, strm=True):
    """The batch [a, name, b] through n0 with `name`'s owner dying 3 MiB into it: the emit
    path's outcome (bytes, or the HoleError) and the HTTP answer's bytes and headers."""
    owner.faults.cut_after = 3 << 20
    a, b = _elsewhere(mini, owner)
    body = {"in": [{"objname": a}, {"objname": name}, {"objname": b}], "strm": strm}
    try:
        emitted = _emit(mini, body, tmp_path)[1]
    except HoleError as exc:
        emitted = exc
    r = requests.get(f"{mini.nodes[0].url}/v1/ml/moss/b", json=body, stream=True)
    assert r.status_code == 200
    got = b""
    try:
        for chunk in r.iter_content(1 << 20):
            got += chunk
    except requests.RequestException:
        pass
    return emitted, got, r.headers


def test_failover_mid_item_resumes_from_the_same_version(mini, versions, tmp_path):
    name, owner, second = versions
    data = os.urandom(BIG)
    owner.put("b", name, data)
    second.put("b", name, data)
    emitted, got, _ = _cut_mid_item(mini, name, owner, tmp_path)
    a, b = _elsewhere(mini, owner)
    with tarfile.open(fileobj=io.BytesIO(got)) as tf:
        assert [(m.name, tf.extractfile(m).read()) for m in tf] == [
            (f"b/{a}", mini.objs[a]), (f"b/{name}", data), (f"b/{b}", mini.objs[b])]
    assert emitted == got


@pytest.mark.parametrize("strm", [True, False])
def test_failover_mid_item_never_mixes_versions(mini, versions, tmp_path, strm):
    """Copies of the same size at two versions (a lost overwrite makes them): the owner dies
    mid-item, the other copy is another version, so the answer is cut (an incomplete TAR,
    shorter than its Content-Length), never a whole archive with a mixed item."""
    name, owner, second = versions
    owner.put("b", name, os.urandom(BIG))
    second.put("b", name, os.urandom(BIG))
    emitted, got, headers = _cut_mid_item(mini, name, owner, tmp_path, strm)
    assert isinstance(emitted, HoleError) and "same version" in str(emitted)
    if strm:
        assert len(got) < int(headers["Content-Length"])
        with pytest.raises(tarfile.ReadError):
            with tarfile.open(fileobj=io.BytesIO(got)) as tf:
                for m in tf:
                    tf.extractfile(m).read()
    else:
        assert not got.endswith(b"--\r\n")   # the multipart end never came


@pytest.mark.parametrize("change", ["no checksum", "another stamp"])
def test_failover_mid_item_needs_a_proof(mini, versions, tmp_path, change):
    """The same bytes, but one copy has no checksum (nothing proves its version) or another
    version stamp (another PUT of the same bytes): no resume."""
    name, owner, second = versions
    data = os.urandom(BIG)
    owner.put("b", name, data)
    second.put("b", name, data)
    for node, stamp in ((owner, b"stamp-1"), (second, b"stamp-2")):
        os.setxattr(node.store.object_path("b", name), XATTR_STAMP, stamp)
    if change == "no checksum":
        os.setxattr(second.store.object_path("b", name), XATTR_STAMP, b"stamp-1")
        os.removexattr(second.store.object_path("b", name), XATTR_CKSUM)
    emitted, _, _ = _cut_mid_item(mini, name, owner, tmp_path)
    assert isinstance(emitted, HoleError)


def test_failover_before_an_item_takes_the_other_version_whole(mini, versions, tmp_path):
    """Nothing of the item was sent when its owner died: the other copy, of another version
    but the same size, is served whole (one acknowledged version, not a mix)."""
    name, owner, second = versions
    owner.put("b", name, os.urandom(BIG))
    other = os.urandom(BIG)
    second.put("b", name, other)
    owner.faults.cut_after = 600   # past its plan frame, before the item's bytes
    a = _elsewhere(mini, owner, 1)[0]
    body = {"in": [{"objname": a}, {"objname": name}], "strm": True}
    _, got = _emit(mini, body, tmp_path)
    with tarfile.open(fileobj=io.BytesIO(got)) as tf:
        assert [(m.name, tf.extractfile(m).read()) for m in tf] == [
            (f"b/{a}", mini.objs[a]), (f"b/{name}", other)]


def _plan_answer(size, prefix="b/"):
    """A peer's 200 whose plan frame gives every entry asked for `size` bytes, named
    `prefix` + its object name."""
    def answer(body):
        names = [f"{prefix}{e['objname']}" for e in json.loads(body)["in"]]
        frame = json.dumps({"uuid": "x", "out": [[n, size, None] for n in names]}).encode()
        payload = b"GBP1" + len(frame).to_bytes(4, "big") + frame
        return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload)) + payload
    return answer


@pytest.mark.parametrize("answer", [
    lambda body: b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
    lambda body: b"HTTP/1.1 404 Not Found\r\nContent-Length: 99999999\r\n\r\n",
    _plan_answer(-5),
    _plan_answer(2 ** 70),
    _plan_answer(4096, "../../"),
], ids=["length-abc", "huge-error", "size-minus-5", "size-huge", "misnamed"])
def test_hostile_peer_is_a_failed_owner(mini, answer, tmp_path):
    """A node answering its sub-batch with nonsense is a failed owner: its entries are
    planned on the next candidates, never a 500."""
    from getbatch.cluster.smap import NodeInfo, Smap
    from .inproc import HostilePeer
    evil = HostilePeer(answer)
    try:
        n0 = mini.nodes[0]
        smap = Smap(1, [NodeInfo(n.id, n.url) for n in mini.nodes] + [NodeInfo("evil", evil.url)],
                    "n0")
        names = [n for n in (f"o{i}" for i in range(150))
                 if smap.owner("ais", "b", n).id == "evil"][:5] + ["o1"]
        body = {"in": [{"objname": n} for n in names], "strm": True}
        req = parse(json.dumps(body).encode(), "b")
        g = Gather(req, smap, n0.cluster.node, n0.storage, n0.config, n0.cluster.peers, 5.0)
        out = BatchOutput(g.plan(), "tar", multipart=False)
        try:
            emit_to_file(out, tmp_path / "out")
        finally:
            out.close()
        assert "evil" in g.dead and out.plan.gfn >= 5
        assert (tmp_path / "out").read_bytes() == single_node(mini, body)
    finally:
        evil.close()


def test_missing_while_a_node_that_may_hold_it_failed_is_a_503(mini):
    """Entries no node that answered holds, while a node failed before saying: a 503 to
    retry (also when placeholders would pass the soft-error limit), not a 404; without a
    failed node the same request is a 404."""
    import socket

    from getbatch.cluster.smap import NodeInfo, Smap
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        gone = NodeInfo("gone", f"http://127.0.0.1:{s.getsockname()[1]}")
    n0 = mini.nodes[0]
    live = [NodeInfo(n.id, n.url) for n in mini.nodes]

    def plan(nodes, coer, max_soft_errs=10):
        body = {"in": [{"objname": "nope1"}, {"objname": "nope2"}, {"objname": "o1"}],
                "coer": coer}
        g = Gather(parse(json.dumps(body).encode(), "b"), Smap(1, nodes, "n0"),
                   n0.cluster.node, n0.storage, n0.config.replace(max_soft_errs=max_soft_errs),
                   n0.cluster.peers, 5.0)
        try:
            p = g.plan()
            return [it.name for it in p.items]
        except BatchError as exc:
            return exc.status, exc.message
        finally:
            g.close()
    status, msg = plan(live + [gone], coer=False)
    assert status == 503 and "gone failed" in msg and "try again" in msg
    assert plan(live + [gone], coer=True, max_soft_errs=1)[0] == 503
    assert plan(live + [gone], coer=True) == ["__404__/b/nope1", "__404__/b/nope2", "b/o1"]
    assert plan(live, coer=False)[0] == 404


def test_only_an_older_copy_after_the_newest_holder_failed_is_a_503(mini):
    """The node holding an entry's newest version fails before planning it, and the copy the
    others hold is older: a 503 saying so (the request is not wrong), under coer a
    placeholder saying so, never "does not exist"."""
    import socket

    from getbatch.cluster.smap import NodeInfo, Smap
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        gone = NodeInfo("gone", f"http://127.0.0.1:{s.getsockname()[1]}")
    n0 = mini.nodes[0]
    smap = Smap(1, [NodeInfo(n.id, n.url) for n in mini.nodes] + [gone], "n0")

    def plan(coer):
        body = {"in": [{"objname": "o1"}, {"objname": "o2"}], "coer": coer}
        g = Gather(parse(json.dumps(body).encode(), "b"), smap, n0.cluster.node, n0.storage,
                   n0.config, n0.cluster.peers, 5.0,
                   versions=lambda entries: {0: (gone, "9999999999999999.gone")})
        try:
            return [(it.name, it.err) for it in g.plan().items]
        except BatchError as exc:
            return exc.status, exc.message
        finally:
            g.close()
    want = ("ais://b/o1: gone, the node holding its newest version, did not answer; "
            f"{mini.smap.owner('ais', 'b', 'o1').id} holds only an older version")
    status, msg = plan(coer=False)
    assert status == 503 and msg.startswith(want) and msg.endswith("try again")
    (name, err), second = plan(coer=True)
    assert name == "__404__/b/o1" and err.startswith(want) and second == ("b/o2", None)


@pytest.mark.parametrize("status", [500, 503, 403])
def test_a_peer_failing_its_sub_batch_is_a_502_or_503(mini, status):
    """A peer answering its sub-batch with its own error (not one about the entries) is
    the cluster's failure, not the client's: a 502 (503 when the peer said so) naming the
    peer and what it said, never a 500 or the peer's 403."""
    from getbatch.cluster.smap import NodeInfo, Smap
    from .inproc import HostilePeer
    said = json.dumps({"message": "boom", "status": status}).encode()
    evil = HostilePeer(lambda body: b"HTTP/1.1 %d Oops\r\nContent-Length: %d\r\n\r\n%s"
                       % (status, len(said), said))
    try:
        n0 = mini.nodes[0]
        smap = Smap(1, [NodeInfo(n.id, n.url) for n in mini.nodes] + [NodeInfo("evil", evil.url)],
                    "n0")
        name = next(n for n in mini.objs if smap.owner("ais", "b", n).id == "evil")
        g = Gather(parse(json.dumps({"in": [{"objname": name}]}).encode(), "b"), smap,
                   n0.cluster.node, n0.storage, n0.config, n0.cluster.peers, 5.0)
        with pytest.raises(BatchError) as got:
            g.plan()
        assert got.value.status == (503 if status == 503 else 502)
        assert f"peer evil ({evil.url})" in got.value.message
        assert f"{status} boom" in got.value.message
    finally:
        evil.close()


def test_a_peer_without_the_bucket_yet_is_a_503(mini, tmp_path):
    """A peer whose bucket table is not current (started or joined while etcd was away)
    answers its sub-batch 404 "bucket does not exist" while this node knows the bucket: a
    503 to retry, not the 404 the request would get for a bucket that does not exist."""
    from getbatch.cluster.smap import NodeInfo, Smap
    from .inproc import MiniCluster
    lone = MiniCluster(tmp_path, n=1)   # its table: no buckets
    try:
        n0, peer = mini.nodes[0], lone.nodes[0]
        smap = Smap(1, [NodeInfo(n.id, n.url) for n in mini.nodes]
                    + [NodeInfo("lone", peer.url)], "n0")
        name = next(n for n in mini.objs if smap.owner("ais", "b", n).id == "lone")
        g = Gather(parse(json.dumps({"in": [{"objname": name}]}).encode(), "b"), smap,
                   n0.cluster.node, n0.storage, n0.config, n0.cluster.peers, 5.0)
        with pytest.raises(BatchError) as got:
            g.plan()
        assert got.value.status == 503, got.value.message
        assert "peer lone" in got.value.message and "not current yet" in got.value.message
    finally:
        lone.stop()
