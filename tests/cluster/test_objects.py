"""The object and bucket API on a cluster, driven by the SDK against any node: it behaves as
one node; objects live on their HRW owners; mirror copies survive a killed node."""
import os

import pytest
import requests

from aistore.sdk.errors import AISError, ErrBckNotFound, ErrObjNotFound

from tests.support.nodes import make_client
from tests.support.waiting import until

from .nodes import LEASE_TTL


def _local_names(node, bucket):
    """Objects stored in one node's own data dir."""
    root = os.path.join(node.data_dir, "ais", bucket)
    out = set()
    for d, _, files in os.walk(root):
        out |= {os.path.relpath(os.path.join(d, f), root) for f in files}
    return out


def _set_mirror(url, bucket, copies):
    r = requests.patch(f"{url}/v1/buckets/{bucket}", params={"provider": "ais"},
                       json={"action": "set-bprops",
                             "value": {"mirror": {"enabled": copies > 1, "copies": copies}}},
                       timeout=10)
    assert r.status_code == 200, r.text


def test_any_node_serves_every_object(cluster, clients):
    b0 = clients[0].bucket("objs")
    b0.create(exist_ok=True)
    names = [f"d{i % 3}/o{i}" for i in range(60)]
    for i, n in enumerate(names):
        clients[i % 3].bucket("objs").object(n).get_writer().put_content(n.encode() * (i + 1))
    for c in clients:
        b = c.bucket("objs")
        for i, n in enumerate(names[:20]):
            assert b.object(n).get_reader().read_all() == n.encode() * (i + 1)
            assert b.object(n).head().size == len(n) * (i + 1)
    # each object is stored once, spread over the nodes
    held = [_local_names(n, "objs") for n in cluster.nodes]
    assert sum(len(h) for h in held) == len(names)
    assert set().union(*held) == set(names) and all(held)
    # range reads through a non-owner
    obj = clients[1].bucket("objs").object(names[5])
    assert obj.get_reader(byte_range="bytes=2-5").read_all() == (names[5].encode() * 6)[2:6]
    # delete through any node
    clients[2].bucket("objs").object(names[0]).delete()
    with pytest.raises(ErrObjNotFound):
        clients[0].bucket("objs").object(names[0]).get_reader().read_all()


def test_buckets_are_cluster_wide(cluster, clients):
    clients[0].bucket("wide").create()
    # a bucket made through one node is there at once through the others
    clients[1].bucket("wide").head()
    clients[2].bucket("wide").object("x").get_writer().put_content(b"x")
    # the listing of buckets comes from each node's watched table: current within moments
    until(lambda: "wide" in [b.name for b in clients[2].cluster().list_buckets()],
          "a new bucket is not listed by another node")
    with pytest.raises(AISError) as e:
        clients[1].bucket("wide").create()
    assert e.value.status_code == 409
    clients[1].bucket("wide").delete()
    with pytest.raises(ErrBckNotFound):
        clients[0].bucket("wide").delete()
    with pytest.raises(ErrBckNotFound):
        clients[2].bucket("wide").object("x").get_writer().put_content(b"x")
    assert all("wide" not in os.listdir(os.path.join(n.data_dir, "ais")) for n in cluster.nodes)


def test_listing_merges_and_pages(cluster, clients):
    b = clients[0].bucket("lst")
    b.create(exist_ok=True)
    _set_mirror(cluster.urls[0], "lst", 2)
    names = sorted(f"n{i:04d}" for i in range(230))
    for n in names:
        b.object(n).get_writer().put_content(b"z" * 3)
    for c in clients:
        got = [e.name for e in c.bucket("lst").list_all_objects(page_size=50)]
        assert got == names
    it = [e.name for e in clients[1].bucket("lst").list_objects_iter(page_size=7, prefix="n01")]
    assert it == [n for n in names if n.startswith("n01")]
    page = clients[2].bucket("lst").list_objects(page_size=100)
    assert [e.name for e in page.entries] == names[:100] and page.continuation_token


def test_mirror_prop_and_validation(cluster, clients):
    b = clients[0].bucket("mprops")
    b.create(exist_ok=True)
    _set_mirror(cluster.urls[1], "mprops", 3)
    props = requests.head(f"{cluster.urls[2]}/v1/buckets/mprops", timeout=5).headers
    assert '"copies":3' in props["Ais-Bucket-Props"]
    for bad in ({"copies": 4}, {"copies": 0}, {"enabled": "yes"}, "x"):
        r = requests.patch(f"{cluster.urls[0]}/v1/buckets/mprops",
                           json={"action": "set-bprops", "value": {"mirror": bad}}, timeout=5)
        assert r.status_code == 400 and "mirror" in r.json()["message"]


def test_two_copies_survive_a_killed_node(make_cluster):
    c = make_cluster(3)
    clients = [make_client(u) for u in c.urls]
    b = clients[0].bucket("safe")
    b.create()
    _set_mirror(c.urls[0], "safe", 2)
    data = {f"k{i}": os.urandom(100 + i * 37) for i in range(40)}
    for i, (n, v) in enumerate(data.items()):
        clients[i % 3].bucket("safe").object(n).get_writer().put_content(v)
    held = [_local_names(n, "safe") for n in c.nodes]
    assert sum(len(h) for h in held) == 2 * len(data)
    c.kill(1)
    for n, v in data.items():  # at once: reads skip the dead node without waiting for the map
        assert clients[0].bucket("safe").object(n).get_reader().read_all() == v
    # writes too: a dead owner is skipped, the copies go to the next nodes
    late = {f"late{i}": os.urandom(70 + i) for i in range(15)}
    for n, v in late.items():
        clients[2].bucket("safe").object(n).get_writer().put_content(v)
    data.update(late)
    assert sum(n in _local_names(c.nodes[0], "safe") and n in _local_names(c.nodes[2], "safe")
               for n in late) == len(late)
    c.wait_members(2, timeout=LEASE_TTL * 3)
    for n, v in data.items():
        assert clients[2].bucket("safe").object(n).get_reader().read_all() == v
    assert sorted(e.name for e in clients[2].bucket("safe").list_all_objects()) == sorted(data)


def test_etcd_away_reads_go_on_metadata_changes_503(make_cluster):
    c = make_cluster(2)
    clients = [make_client(u) for u in c.urls]
    b = clients[0].bucket("keep")
    b.create()
    for i in range(10):
        b.object(f"o{i}").get_writer().put_content(b"v%d" % i)
    c.etcd.stop()
    for cl in clients:
        for i in range(10):
            assert cl.bucket("keep").object(f"o{i}").get_reader().read_all() == b"v%d" % i
    with pytest.raises(AISError) as e:
        clients[1].bucket("new").create()
    assert e.value.status_code == 503 and "etcd" in str(e.value)
    r = requests.patch(f"{c.urls[0]}/v1/buckets/keep", json={
        "action": "set-bprops", "value": {"mirror": {"enabled": True, "copies": 2}}}, timeout=10)
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"
    # objects of known buckets can still be written, and batches read
    clients[1].bucket("keep").object("late").get_writer().put_content(b"late")
    batch = clients[1].batch([f"o{i}" for i in range(10)] + ["late"], bucket=clients[1].bucket("keep"))
    assert [d for _, d in batch.get()] == [b"v%d" % i for i in range(10)] + [b"late"]
    c.etcd.start()
    clients[1].bucket("new").create()
    assert clients[0].bucket("keep").object("late").get_reader().read_all() == b"late"


def test_join_and_leave_keep_everything_readable(make_cluster):
    c = make_cluster(2)
    clients = [make_client(u) for u in c.urls]
    b = clients[0].bucket("move")
    b.create()
    data = {f"m{i}": b"%d" % i * 50 for i in range(60)}
    for n, v in data.items():
        b.object(n).get_writer().put_content(v)
    before = [_local_names(n, "move") for n in c.nodes]
    new = c.add()
    c.wait_members(3)
    cl = make_client(new.url)
    # the new node owns about a third, holds nothing yet: reads find the old copies
    for n, v in data.items():
        assert cl.bucket("move").object(n).get_reader().read_all() == v
    assert _local_names(new, "move") == set()
    # new writes follow the new placement
    for i in range(30):
        cl.bucket("move").object(f"new{i}").get_writer().put_content(b"n")
    assert _local_names(new, "move")
    c.stop(2)
    c.wait_members(2)
    assert _local_names(c.nodes[0], "move") | _local_names(c.nodes[1], "move") >= set().union(*before)
    for n, v in data.items():
        assert clients[1].bucket("move").object(n).get_reader().read_all() == v


def test_getbatch_and_archived_reads_across_nodes(cluster, clients):
    """Through the item-by-item fallback (the cluster GetBatch replaces it for speed): every
    node answers a batch whose objects and shards live on all nodes, in order."""
    import io
    import tarfile
    b = clients[0].bucket("gb")
    b.create(exist_ok=True)
    objs = {f"g{i}": os.urandom(10 + i * 100) for i in range(30)}
    for n, v in objs.items():
        b.object(n).get_writer().put_content(v)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("a.txt", b"alpha"), ("d/b.bin", b"beta" * 1000)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    shards = [f"s{i}.tar" for i in range(6)]
    for s in shards:
        b.object(s).get_writer().put_content(buf.getvalue())
    names = list(objs)[::-1]
    for c in clients:
        for strm in (True, False):
            batch = c.batch(bucket=c.bucket("gb"), streaming_get=strm)
            for n in names:
                batch.add(n)
            for s in shards:
                batch.add(s, archpath="d/b.bin")
            got = list(batch.get())
            assert [d for _, d in got] == [objs[n] for n in names] + [b"beta" * 1000] * 6
        # archived file GET through any node (forwarded to a node that holds the shard)
        for s in shards:
            assert c.bucket("gb").object(s).get_reader(archive_config=_arch("a.txt")).read_all() == b"alpha"


def _arch(path):
    from aistore.sdk.archive_config import ArchiveConfig
    return ArchiveConfig(archpath=path)


def test_paused_node_then_restarted_node_serve_again(make_cluster):
    c = make_cluster(3)
    clients = [make_client(u) for u in c.urls]
    b = clients[0].bucket("pz")
    b.create()
    _set_mirror(c.urls[0], "pz", 2)
    data = {f"p{i}": os.urandom(50 + i) for i in range(30)}
    for n, v in data.items():
        b.object(n).get_writer().put_content(v)
    c.pause(2)
    c.wait_members(2, timeout=LEASE_TTL * 3)
    for n, v in data.items():
        assert clients[1].bucket("pz").object(n).get_reader().read_all() == v
    c.resume(2)
    c.wait_members(3)
    held = _local_names(c.nodes[2], "pz")
    assert held
    c.kill(2)
    c.restart(2)
    c.wait_members(3)
    assert _local_names(c.nodes[2], "pz") == held
    cl = make_client(c.nodes[2].url)
    for n, v in data.items():
        assert cl.bucket("pz").object(n).get_reader().read_all() == v


def test_shard_index_build_and_summary_on_every_node(cluster, clients):
    """`getbatch shard-index build` asked of one node starts a job on each, which indexes the
    shards that node holds; the summary adds the nodes up."""
    import json
    import subprocess
    import sys

    from tests.archive.tarhelp import make_tar
    b = clients[0].bucket("idx")
    b.create(exist_ok=True)
    for s in range(9):
        b.object(f"s{s}.tar").get_writer().put_content(make_tar([("a.wav", b"a" * 700),
                                                                 ("b.wav", b"b" * 70)]))

    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "getbatch.cli", "shard-index", *args,
                            "--url", cluster.urls[1], "--bucket", "idx"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r
    r = cli("build", "--wait")
    assert len(r.stdout.split()) == 2 * len(cluster.urls)   # "node id" per node
    assert sum(int(ln.split(": ")[1].split()[0]) for ln in r.stderr.splitlines()) == 9
    doc = json.loads(cli("summary", "--json").stdout)
    assert (doc["shards"], doc["indexed"], doc["members"]) == (9, 9, 18)
    holders = {n for n, d in doc["nodes"].items() if d["shards"]}
    assert len(holders) > 1 and sum(d["shards"] for d in doc["nodes"].values()) == 9
